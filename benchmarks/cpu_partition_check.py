"""Functional check of the CPU partition on a GPU host: one screened evaluation of the seed."""
import json, os, sys, tempfile, time
from pathlib import Path
from avo.harness import cores, sandbox
from avo.evaluator import cpus_for
from avo.harness.runner import Stages, evaluate
from avo.problem import load_problem, DEFAULT_PROBLEM

print("affinity", cores.cpu_list(os.sched_getaffinity(0)), "uid", os.getuid(), "sandbox", sandbox.detect())
print("siblings of 0:", sorted(cores.siblings(0)), "unsupported:", repr(cores.unsupported()))
plan, line = cores.partition_run([0], 2)
print("partition:", line)
print("after pin:", cores.cpu_list(os.sched_getaffinity(0)))
problem = load_problem(Path(DEFAULT_PROBLEM))
names = tuple(s.name for s in problem.SUITES["avo"][:3])
seed = Path("kernel_src/attention/seeds/fa2.py").read_text()
lock = Path(tempfile.mkdtemp()) / "gpu0.timing.lock"
t0 = time.time()
r = evaluate(seed, device="cuda", gpu=0, stages=Stages(screen=names, gate_tflops=1e9, gpu_lock=str(lock), **cpus_for(0)))
print("wall", round(time.time() - t0, 1), "status", r.status, r.message[:300], "sandbox", r.sandbox)
print(json.dumps({k: r.env.get(k) for k in ("timing_cpus", "cpu_pins", "gpu_held", "stage_s", "baseline_errors")}, indent=1))
print([(t.config, round(t.tflops, 1), t.cudnn_tflops) for t in r.timings])
if r.status != "ok":
    print(r.log_tail[-3000:])
