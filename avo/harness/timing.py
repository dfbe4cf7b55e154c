"""Timing and machine facts, inside the evaluation worker (torch + triton only).

GPU: CUDA events through `triton.testing.do_bench`, median after warm-up, on a
rotation of input sets whose total size exceeds L2, with a host-clock cross-check
(device-wide synchronize) that catches work escaping the timed stream. CPU: the
Triton interpreter, timed with the host clock and labelled as such.

The references below are bound when this module is imported, which the worker
does before it imports any candidate: a candidate that patches the modules later
does not change what is called here (and guard.Snapshot reports the attempt).
"""
from __future__ import annotations

import platform
import subprocess
import time

import torch
import triton
from triton.testing import do_bench as _do_bench

_perf_counter = time.perf_counter

def env_info(device: str) -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__,
            "triton": triton.__version__, "device": device}
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, sm_count=props.multi_processor_count,
                    cuda=torch.version.cuda, cudnn=str(torch.backends.cudnn.version()),
                    l2_bytes=getattr(props, "L2_cache_size", 50 * 2**20))
        try:
            info["driver"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader", "-i", "0"],
                capture_output=True, text=True, timeout=20).stdout.strip().splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            info["driver"] = "unknown"
    else:
        info.update(gpu="none (Triton interpreter on CPU)", cpu=platform.processor() or platform.machine())
    return info


def rotation(make_set, total_bytes_wanted: int, set_bytes: int, max_sets: int = 8) -> list:
    """Enough input sets that cycling through them never runs out of L2."""
    n = max(2, min(max_sets, -(-total_bytes_wanted // max(1, set_bytes))))
    return [make_set(i) for i in range(n)]


def median_ms(call, sets, device: str, refresh=None) -> float:
    """Median time of call(*set), cycling through `sets` (one set per call).
    refresh(set, i), CPU only: new values into the set before each timed call,
    outside the timed window, so that no call sees content it has seen before."""
    i = [0]

    def step():
        s = sets[i[0] % len(sets)]
        i[0] += 1
        call(*s)

    if device == "cuda":
        return float(_do_bench(step, warmup=25, rep=100, return_mode="median"))
    step()  # interpreter: no compile, but first-call set-up
    times = []
    for j in range(3):
        if refresh is not None:
            refresh(sets[i[0] % len(sets)], j)
        t0 = _perf_counter()
        step()
        times.append((_perf_counter() - t0) * 1e3)
    return sorted(times)[1]


def wall_ms(call, sets, n: int = 10) -> float:
    """Mean time per call by the host clock, with a device-wide synchronize, so
    work on any stream counts. The event timing must not be far below this."""
    torch.cuda.synchronize()
    t0 = _perf_counter()
    for j in range(n):
        call(*sets[j % len(sets)])
    torch.cuda.synchronize()
    return (_perf_counter() - t0) * 1e3 / n


def fresh_ms(call, make_set, n: int = 3) -> float:
    """Median event time of single calls on input sets the candidate has never
    seen (each drawn just before its call, which also evicts L2). do_bench
    repeats its input sets, so a kernel that replays outputs cached under the
    inputs' values would time near zero there but not here."""
    times = []
    for i in range(n):
        s = make_set(i)
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        call(*s)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
        del s
    return sorted(times)[len(times) // 2]


def sdpa_baseline(backend_name: str):
    """A callable (q, k, v, causal) running PyTorch SDPA pinned to one backend,
    or None if the backend is unavailable. GQA uses enable_gqa where the backend
    supports it, else K/V expanded to the query heads *outside* the timed call."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    import torch.nn.functional as F

    backend = getattr(SDPBackend, backend_name, None)
    if backend is None:
        return None

    def call(q, k, v, causal):
        with sdpa_kernel(backend):
            if q.shape[1] != k.shape[1]:
                return F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal)

    return call
