"""Who else ran on this GPU: NVML's per-process SM utilisation, for the judge's timed holds.

The GPU lock keeps other judges' *timing* out of a hold, but not their compile calls,
which run outside it by design, nor anything else on the GPU. On the H100 (session 7)
a candidate whose kernel deadlocked in its compile call kept the GPU busy for the
120 s compile watchdog; every other candidate screened meanwhile read 20-90 TFLOPS
instead of 400-600. Any GPU work outside the hold does this, whoever starts it: a
hung kernel, an autotuner benchmarking in a compile call, another user's job. So the
judge asks NVML which processes had kernels running:

  before a hold   it waits until no process outside its own tree is busy on the GPU
                  (judge_sharing.py await_quiet_gpu; bounded, the wait is recorded);
  after a hold    it records every outside process that was busy during the hold
                  (env.gpu_shared): the evaluator judges the candidate once more and
                  never commits or caches figures taken so;
  hanging         its own runner and helpers may not keep the GPU busy for long in a
                  compile call (which launches nothing) or a shape's first batch (a few
                  small calls): a runner tree busy for COMPILE_BUSY_S in a row is killed
                  as hung.

NVML is read through ctypes from the driver's libnvidia-ml.so.1 (no Python package).
Its samples carry the host's wall clock in microseconds and the pid as this PID
namespace sees it. Where NVML or its per-process figures are missing, `open_gpu`
returns None and the judge says so (env.gpu_sharing_guard); nothing is guarded then.
"""
from __future__ import annotations

import ctypes
import os
import threading
import time
from dataclasses import dataclass

BUSY_SM = 20  # % of a sample period with a kernel of the process on the SMs: above this it ran work
COMPILE_BUSY_S = 15.0  # a compile call or first batch whose own processes keep the GPU this busy this long is hung
QUIET_WINDOW_S = 1.0  # the GPU is quiet when no live outside process was busy in this window ...
QUIET_MAX_S = 150.0  # ... waited for at most this long (a hung kernel's judge kills it at 120 s)
SETTLE_S = 0.2  # a sample may cover the moments before the lock changed hands: ignored after it


@dataclass(frozen=True)
class Sample:
    pid: int
    time_us: int  # the host's wall clock, microseconds (time.time() * 1e6)
    sm: int  # percent


class _NvmlSample(ctypes.Structure):  # nvmlProcessUtilizationSample_t
    _fields_ = [("pid", ctypes.c_uint), ("timeStamp", ctypes.c_ulonglong), ("smUtil", ctypes.c_uint),
                ("memUtil", ctypes.c_uint), ("encUtil", ctypes.c_uint), ("decUtil", ctypes.c_uint)]


NVML_SUCCESS, NVML_ERROR_NOT_FOUND, NVML_ERROR_INSUFFICIENT_SIZE = 0, 6, 7


class NvmlGpu:
    """One GPU's per-process utilisation samples."""

    def __init__(self, lib, handle):
        self.lib, self.handle = lib, handle

    def samples(self, since_us: int) -> list[Sample]:
        """Every sample NVML holds newer than since_us (its buffer covers the last seconds)."""
        size = 64
        while True:
            buf = (_NvmlSample * size)()
            count = ctypes.c_uint(size)
            rc = self.lib.nvmlDeviceGetProcessUtilization(self.handle, buf, ctypes.byref(count),
                                                          ctypes.c_ulonglong(max(0, int(since_us))))
            if rc == NVML_ERROR_NOT_FOUND:  # no process had a non-zero sample since then
                return []
            if rc == NVML_ERROR_INSUFFICIENT_SIZE and size < 65536:
                size *= 4
                continue
            if rc != NVML_SUCCESS:
                raise OSError(f"nvmlDeviceGetProcessUtilization: NVML error {rc}")
            return [Sample(int(s.pid), int(s.timeStamp), int(s.smUtil)) for s in buf[:count.value]]


def open_gpu(uuid: str) -> tuple[NvmlGpu | None, str]:
    """(the GPU, "") or (None, why not). uuid: torch's device uuid (with or without "GPU-"):
    NVML numbers GPUs its own way, not as CUDA_VISIBLE_DEVICES does."""
    try:
        lib = ctypes.CDLL("libnvidia-ml.so.1")
        if lib.nvmlInit_v2() != NVML_SUCCESS:
            return None, "nvmlInit failed"
        handle = ctypes.c_void_p()
        key = uuid if uuid.startswith("GPU-") else "GPU-" + uuid
        rc = lib.nvmlDeviceGetHandleByUUID(key.encode(), ctypes.byref(handle))
        if rc != NVML_SUCCESS:
            return None, f"no NVML handle for GPU {key} (NVML error {rc})"
        gpu = NvmlGpu(lib, handle)
        gpu.samples(int(time.time() * 1e6))  # per-process figures readable here (not on every vGPU/MIG)
        return gpu, ""
    except (OSError, AttributeError) as e:
        return None, f"NVML unavailable: {e}"[:200]


def torch_uuid() -> str:
    """The uuid of the GPU this process's CUDA sees as device 0 (the judge sees only its own)."""
    import torch

    return str(torch.cuda.get_device_properties(0).uuid)


class Watcher:
    """Reads a GPU's samples every `every_s` on a thread of its own and keeps the last
    `keep`: NVML's own buffer holds only the last moments, a hold lasts up to a minute."""

    def __init__(self, gpu, every_s: float = 0.25, keep: int = 50000):
        self.gpu, self.every_s, self.keep = gpu, every_s, keep
        self.kept: list[Sample] = []
        self.error = ""
        self.pids_seen: set[int] = set()
        self.on_new_pids = None  # called with the pids of a read's samples never seen before, at once:
        # a process is looked up while it still lives (a runner started and killed within a hold)
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="avo-gpu-activity", daemon=True)

    def start(self) -> "Watcher":
        self.read()
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        if self.thread.is_alive():
            self.thread.join(timeout=2)

    def _run(self) -> None:
        while not self.stopping.wait(self.every_s):
            self.read()

    def read(self) -> None:
        """Take what NVML has since the newest sample kept (also called to be current)."""
        with self.lock:
            last = self.kept[-1].time_us if self.kept else now_us() - 2_000_000
            recent = {(s.pid, s.time_us) for s in self.kept[-256:]}  # two processes may share a timestamp
            try:
                new = [s for s in self.gpu.samples(last - 1) if (s.pid, s.time_us) not in recent]
            except OSError as e:
                self.error = str(e)[:200]
                return
            self.kept.extend(sorted(new, key=lambda s: s.time_us))
            del self.kept[:-self.keep]
            fresh = {s.pid for s in new} - self.pids_seen
            self.pids_seen |= fresh
        if fresh and self.on_new_pids:
            self.on_new_pids(fresh)

    def since(self, since_us: int) -> list[Sample]:
        self.read()
        with self.lock:
            return [s for s in self.kept if s.time_us >= since_us]


# ----------------------------------------------------------------- whose work
def busy(samples: list[Sample], since_us: int, until_us: int | None = None,
         only: set[int] | None = None, besides: set[int] = frozenset(), min_sm: int = BUSY_SM) -> dict[int, int]:
    """{pid: its highest SM %} of the processes busy (>= min_sm) in [since_us, until_us]:
    only those in `only` (when given), none of those in `besides`."""
    out: dict[int, int] = {}
    for s in samples:
        if s.time_us < since_us or (until_us is not None and s.time_us > until_us) or s.sm < min_sm:
            continue
        if (only is not None and s.pid not in only) or s.pid in besides:
            continue
        out[s.pid] = max(out.get(s.pid, 0), s.sm)
    return out


def describe(pid: int, proc: str = "/proc") -> str:
    """'name (parent pid)' of a live process, '' of a gone one: for the record."""
    try:
        with open(f"{proc}/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
    except OSError:
        return ""
    name = stat[stat.find("(") + 1:stat.rfind(")")]
    return f"{name} (parent {stat.rsplit(')', 1)[1].split()[1]})"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def now_us() -> int:
    return int(time.time() * 1e6)
