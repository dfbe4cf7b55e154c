"""cuDNN and the seed timed by the judge on one small config, idle and under 32 busy processes,
with and without the CPU partition (the busy ones stand for compiling judges)."""
import json, os, subprocess, sys, tempfile, time
from pathlib import Path
from avo.harness import cores
from avo.evaluator import cpus_for
from avo.harness.runner import Stages, evaluate

CFG = "mha b8 s4096 d128 causal bf16"
seed = Path("kernel_src/attention/seeds/fa2.py").read_text()
rows = []
for rep in range(int(sys.argv[1]) if len(sys.argv) > 1 else 2):
    for cond in ("idle", "loaded", "loaded+partition"):
        if cond.endswith("partition"):
            cores.partition_run([0], 2)
        else:
            cores.release()
        busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(32 if cond != "idle" else 0)]
        time.sleep(1)
        lock = Path(tempfile.mkdtemp()) / "gpu0.timing.lock"
        t0 = time.time()
        r = evaluate(seed, device="cuda", gpu=0, stages=Stages(screen=(CFG,), gate_tflops=1e9, gpu_lock=str(lock),
                                                             **cpus_for(0)))
        for p in busy:
            p.kill(); p.wait()
        bt = (r.env.get("baselines_timed") or {}).get(CFG, {})
        seedrow = next((t for t in r.timings if t.config == CFG), None)
        row = dict(rep=rep, cond=cond, status=r.status, wall=round(time.time() - t0, 1),
                   cudnn_ms=bt.get("cudnn", {}).get("ms"), cudnn_spread=bt.get("cudnn", {}).get("spread"),
                   fa2_ms=bt.get("fa2", {}).get("ms"), seed_ms=seedrow and seedrow.ms, seed_spread=seedrow and seedrow.spread,
                   timing_cpus=r.env.get("timing_cpus"), refused=(r.env.get("cpu_pins") or {}).get("timing", {}).get("refused"))
        rows.append(row)
        print(json.dumps(row), flush=True)
json.dump(rows, open(os.path.join(os.environ.get("OUT", "/tmp"), "noise.json"), "w"), indent=1)
