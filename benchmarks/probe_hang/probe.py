"""Probe (not product code): does a hung candidate kernel keep the GPU busy, and does it
outlive its process? H100 leg of 2026-11-26 (session 7): after a candidate's compile
call hung (a non-warp-specialised Gluon kernel with NUM_STAGES=1), GPU utilisation sat
at 100% and every other candidate's screen read 20-90 TFLOPS instead of 400-600, also
after the judge killed that runner.

  python benchmarks/probe_hang/probe.py OUT_DIR
The hung kernel is v4 with BLOCK_M=256, NUM_STAGES=1, WARP_SPECIALIZE=False (written to
OUT_DIR/hang.py). Part 1: a plain child process calls its attention once; the parent times a bf16
matmul before, during, and after SIGKILL of the child, and lists the GPU's compute apps.
Part 2: the same through the harness (`avo bench`), whose compile watchdog kills
the runner after 120 s; the parent samples the same way during and after.
"""
import json
import os
import signal
import subprocess
import sys
import time

import torch

from avo.lineage import Lineage
from avo.operators.heuristic import set_knobs
from avo.problem import REPO_ROOT

OUT = sys.argv[1]
HANG = os.path.join(OUT, "hang.py")
V4 = Lineage(REPO_ROOT / "kernel_src" / "attention" / "lineage" / "cuda").get(4)
with open(HANG, "w") as f:
    f.write(set_knobs(V4.source, {"BLOCK_M": 256, "NUM_STAGES": 1, "WARP_SPECIALIZE": False}))
A = torch.randn(4096, 4096, device="cuda", dtype=torch.bfloat16)
rows = []


def matmul_ms(n=10):
    torch.cuda.synchronize()
    t = []
    for _ in range(n):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record(); A @ A; e.record(); torch.cuda.synchronize()
        t.append(s.elapsed_time(e))
    return sorted(t)[len(t) // 2]


def apps():
    return subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader"],
                          capture_output=True, text=True).stdout.strip().replace("\n", "; ")


def util():
    return subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader"],
                          capture_output=True, text=True).stdout.strip()


def sample(tag, t0):
    r = {"tag": tag, "t": round(time.time() - t0, 1), "matmul_ms": round(matmul_ms(), 3), "util": util(), "apps": apps()}
    rows.append(r)
    print(json.dumps(r), flush=True)


CHILD = r"""
import importlib.util, sys, torch
spec = importlib.util.spec_from_file_location("cand", sys.argv[1]); m = importlib.util.module_from_spec(spec)
spec.loader.exec_module(m)
q = torch.randn(2, 16, 4096, 128, device="cuda", dtype=torch.bfloat16)
k = torch.randn(2, 2, 4096, 128, device="cuda", dtype=torch.bfloat16); v = torch.randn_like(k)
print("calling", flush=True)
o = m.attention(q, k, v, False)
print("launched", flush=True)
torch.cuda.synchronize()
print("finished", flush=True)
"""

t0 = time.time()
base = matmul_ms(30)
print("idle matmul 4096^3 bf16 ms", base, flush=True)
sample("idle", t0)
# part 1
child = subprocess.Popen([sys.executable, "-c", CHILD, HANG], stdout=subprocess.PIPE,
                         text=True, start_new_session=True)
deadline = time.time() + 90
lines = []
while time.time() < deadline:
    line = child.stdout.readline()
    if not line:
        break
    lines.append(line.strip())
    print("child:", line.strip(), flush=True)
    if line.startswith("launched"):
        break
time.sleep(3)
for _ in range(3):
    sample("child running (hung?)" if child.poll() is None else "child exited", t0)
    time.sleep(2)
tk = time.time()
os.killpg(child.pid, signal.SIGKILL)
child.wait()
reaped_s = round(time.time() - tk, 2)
print("killed and reaped in", reaped_s, "s", flush=True)
for delay in (0.2, 1, 3, 6, 12):
    time.sleep(delay)
    sample(f"after kill (+{delay})", t0)
# part 2
env = dict(os.environ)
bench = subprocess.Popen([sys.executable, "-m", "avo.cli", "bench", HANG, "--suite", "avo"],
                         stdout=open(os.path.join(OUT, "bench_hang.txt"), "w"), stderr=subprocess.STDOUT,
                         env=env, start_new_session=True)
while bench.poll() is None and time.time() - t0 < 400:
    sample("avo bench running", t0)
    time.sleep(8)
print("avo bench rc", bench.poll(), flush=True)
for delay in (1, 3, 6, 12, 20):
    time.sleep(delay)
    sample(f"after avo bench (+{delay})", t0)
json.dump({"idle_matmul_ms": base, "child_lines": lines, "reaped_s": reaped_s, "samples": rows},
          open(os.path.join(OUT, "probe_hang.json"), "w"), indent=1)
