"""One kernel judged twice on a GPU, the second time by a judge started ahead of it (a spare,
as `avo evolve` keeps them), to show where the evaluation's seconds went in each:

    PYTHONPATH=. python benchmarks/prestart_check.py [KERNEL] [--configs N] [--out DIR]

KERNEL defaults to the lineage's v4. The first evaluation starts its judge cold (and times
the baselines of its configs); the second finds a spare judge whose runner and compile
helpers were started while the first ran. Prints each one's wall seconds and stage clock,
the compile helpers' record and the fused recheck reference's share; writes DIR/prestart.json.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from avo import cascade
from avo.harness import evaluate, runner
from avo.problem import DEFAULT_PROBLEM, load_problem

V4 = Path(__file__).parents[1] / "kernel_src/attention/lineage/cuda/v0004/kernel.py"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("kernel", nargs="?", default=str(V4))
    ap.add_argument("--configs", type=int, default=6, help="suite configs timed (default: the cascade's screen)")
    ap.add_argument("--out", default="/tmp/prestart-check")
    args = ap.parse_args()
    problem = load_problem(Path(DEFAULT_PROBLEM))
    configs = cascade.screen_configs([s.name for s in problem.SUITES["avo"]], args.configs)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runner.SPARES.enable()
    rows = []
    try:
        for label in ("cold judge", "spare judge"):
            if label == "spare judge":  # give the spare the time a run's next candidate would have had
                deadline = time.monotonic() + 120
                while runner.SPARES.count() < 1 and time.monotonic() < deadline:
                    time.sleep(0.5)
                time.sleep(5)
            t0 = time.monotonic()
            r = evaluate(Path(args.kernel), device="cuda", suite="avo", configs=configs)
            row = {"judge": label, "status": r.status, "message": r.message[:200], "wall_s": round(time.monotonic() - t0, 2),
                   "spare": r.env.get("judge_spare"), "stage_s": r.env.get("stage_s"), "kernel_s": r.env.get("kernel_s"),
                   "compile_helpers": r.env.get("compile_helpers"), "gpu_held": r.env.get("gpu_held"),
                   "timing_cpus": r.env.get("timing_cpus"), "geomean": round(r.geomean_tflops, 1),
                   "gpu": r.env.get("gpu"), "torch": r.env.get("torch"), "triton": r.env.get("triton"),
                   "cudnn": r.env.get("cudnn"), "driver": r.env.get("driver")}
            rows.append(row)
            print(json.dumps(row), flush=True)
            if r.status != "ok":
                print(r.log_tail[-3000:])
    finally:
        runner.SPARES.close()
    (out / "prestart.json").write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
