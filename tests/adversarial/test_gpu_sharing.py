"""GPU-only: the shared-GPU guard (avo/harness/gpu_activity.py, judge_sharing.py) on a
real device. NVML must see another process's kernels by its pid; a judge must not time
while another process is busy on its GPU; a candidate whose kernel hangs on its first
launch must end in seconds, not at the 120 s compile watchdog; a compile call must launch
nothing (compile_only.py) and leave nothing to compile for the real calls.
Run with `pytest -m gpu tests/adversarial` on a GPU machine (the hung kernel is v4's
Gluon schedule: Hopper)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

import pytest

from avo.harness import evaluate, gpu_activity
from avo.lineage import Lineage
from avo.operators.heuristic import set_knobs
from avo.problem import REPO_ROOT, load_problem
from tests.adversarial.variants import SEED

pytestmark = pytest.mark.gpu

ONE_CONFIG = [load_problem().SUITES["mha"][0].name]
# a foreign process: matmuls back to back for `seconds` (a stand-in for a hung kernel, an
# autotuner benchmarking outside the lock, another user's job)
HOG = """
import sys, time, torch
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
print("busy", flush=True)
end = time.time() + float(sys.argv[1])
while time.time() < end:
    for _ in range(20):
        a @ a
    torch.cuda.synchronize()
"""


def start_hog(seconds: float) -> subprocess.Popen:
    hog = subprocess.Popen([sys.executable, "-c", HOG, str(seconds)], stdout=subprocess.PIPE, text=True)
    assert hog.stdout.readline().strip() == "busy"
    return hog


def test_nvml_sees_another_process_busy_by_its_pid():
    gpu, why = gpu_activity.open_gpu(uuid=gpu_activity.torch_uuid())
    assert gpu is not None, why
    hog = start_hog(6)
    try:
        watcher = gpu_activity.Watcher(gpu).start()
        t0 = gpu_activity.now_us()
        time.sleep(3)
        seen = gpu_activity.busy(watcher.since(t0), t0)
        watcher.stop()
    finally:
        hog.kill()
        hog.wait()
    assert seen.get(hog.pid, 0) >= gpu_activity.BUSY_SM, seen


def test_a_judge_waits_while_another_process_is_busy_on_its_gpu():
    hog = start_hog(25)
    try:
        t0 = time.monotonic()
        r = evaluate(SEED, device="cuda", configs=ONE_CONFIG)
    finally:
        hog.kill()
        hog.wait()
    assert r.status == "ok", r.message
    assert r.env.get("gpu_sharing_guard") == "on"
    waits = r.env.get("gpu_quiet_waits") or []
    assert any(str(hog.pid) in w["pids"] for w in waits), waits
    assert not r.env.get("gpu_shared"), r.env.get("gpu_shared")  # it timed after the hog was done
    assert time.monotonic() - t0 >= 10


def test_a_kernel_that_hangs_on_its_first_launch_ends_in_seconds():
    # (it hung in its compile call until compile calls stopped launching: now in the check stage's
    # first batch, under the GPU lock, where the same watch ends it)
    v4 = Lineage(REPO_ROOT / "kernel_src" / "attention" / "lineage" / "cuda").get(4)
    # H100, 2026-11-26: this move from v4 deadlocks (the non-warp-specialised Gluon kernel with a
    # one-stage K/V ring) and held the GPU for the whole 120 s compile watchdog
    hung = set_knobs(v4.source, {"BLOCK_M": 256, "NUM_STAGES": 1, "WARP_SPECIALIZE": False})
    t0 = time.monotonic()
    r = evaluate(hung, device="cuda", configs=ONE_CONFIG)
    took = time.monotonic() - t0
    assert r.status == "timeout", f"{r.status}: {r.message}"
    assert "kept the GPU busy" in r.message, r.message
    assert took < gpu_activity.COMPILE_BUSY_S + 60, took


# In a fresh process with an empty Triton cache: one call of the kernel inside compile_only(),
# then one real call, each under a CUDA profiler. Prints what each saw as JSON.
COMPILE_ONLY_PROBE = """
import importlib.util, json, sys, time, torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile
from avo.harness import compile_only
from avo.harness.allowlist import kernel_names
assert compile_only.install()
path = sys.argv[1]
spec = importlib.util.spec_from_file_location("candidate", path)
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
names = kernel_names(open(path).read())
q, k, v = (torch.randn(2, 4, 512, 128, device="cuda", dtype=torch.bfloat16) for _ in range(3))
torch.cuda.synchronize()

def seen(step):
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        t0 = time.perf_counter()
        out = step()
        torch.cuda.synchronize()
        took = time.perf_counter() - t0
    return out, took, [e.name for e in prof.events() if e.device_type == DeviceType.CUDA]

def compile_call():
    with compile_only.compile_only():
        return mod.attention(q, k, v, causal=True)

_, compile_s, during_compile = seen(compile_call)
out, run_s, during_run = seen(lambda: mod.attention(q, k, v, causal=True))
ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
print(json.dumps(dict(names=names, compile_s=compile_s, run_s=run_s, during_compile=during_compile,
                      during_run=during_run, err=(out.float() - ref.float()).abs().max().item())))
"""


@pytest.mark.parametrize("which", ["seed", "autotuned", "v4"])
def test_a_compile_only_call_launches_nothing_and_leaves_nothing_to_compile(which, tmp_path):
    from tests.adversarial.test_gpu import AUTOTUNED

    kernel = tmp_path / "kernel.py"
    if which == "v4":
        kernel.write_text(Lineage(REPO_ROOT / "kernel_src" / "attention" / "lineage" / "cuda").get(4).source)
    else:
        kernel.write_text(SEED.read_text() if which == "seed" else AUTOTUNED)
    env = {**os.environ, "TRITON_CACHE_DIR": tempfile.mkdtemp(dir=tmp_path), "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run([sys.executable, "-c", COMPILE_ONLY_PROBE, str(kernel)], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    ours = lambda events: [e for e in events if any(n in e for n in seen["names"])]  # noqa: E731
    assert seen["names"] and not ours(seen["during_compile"]), seen  # compiled, not launched
    assert ours(seen["during_run"]), seen  # the real call launches the kernel ...
    assert seen["err"] < 2e-2, seen  # ... which computes the right thing
    # ... and compiles nothing more: a cold compile takes seconds, this call milliseconds
    # (the autotuned kernel benchmarks its two configs here, on its first real call)
    assert seen["compile_s"] > 1.0 and seen["run_s"] < (2.0 if which == "autotuned" else 0.5), seen
