"""Where a judge's GPU-lock time goes: one in-process Judge over the cascade's screen
configs of a kernel, under cProfile, with the stage clock and the pure kernel time.

    PYTHONPATH=. python benchmarks/judge_profile.py KERNEL.py [--out DIR] [--configs N]

Prints the stage seconds, the kernel seconds inside timed batches, and the judge's
functions by cumulative and own time (the runner's side is the `receive` wait);
writes DIR/judge_profile.json and DIR/judge_profile.txt.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import secrets
import tempfile
from pathlib import Path

from avo import cascade
from avo.harness.judge import Judge
from avo.problem import DEFAULT_PROBLEM, load_problem


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("kernel")
    ap.add_argument("--out", default="/tmp/judge-profile")
    ap.add_argument("--suite", default="avo")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--configs", type=int, default=None, help="screen size (default: the cascade's)")
    args = ap.parse_args()
    problem = load_problem(Path(DEFAULT_PROBLEM))
    names = [s.name for s in problem.SUITES[args.suite]]
    screen = cascade.screen_configs(names, args.configs)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="avo-profile-") as work:
        workdir = Path(work)
        os.chmod(workdir, 0o777)
        cand = workdir / "candidate.py"
        cand.write_text(Path(args.kernel).read_text())
        job = dict(candidate_path=str(cand), problem_path=str(DEFAULT_PROBLEM), device=args.device,
                   suite=args.suite, configs=screen, quick=False, seeds=[secrets.randbits(31) for _ in range(6)])
        judge = Judge(job, workdir)
        prof = cProfile.Profile()
        prof.enable()
        result = judge.run()
        prof.disable()
    text = io.StringIO()
    stats = pstats.Stats(prof, stream=text)
    stats.sort_stats("cumulative").print_stats(45)
    stats.sort_stats("tottime").print_stats(30)
    summary = {"kernel": args.kernel, "status": result.status, "message": result.message,
               "configs": screen, "stage_s": result.env.get("stage_s"), "kernel_s": result.env.get("kernel_s"),
               "env": {k: result.env.get(k) for k in ("gpu", "driver", "torch", "triton", "cudnn")},
               "timings": [{"config": t.config, "ms": t.ms, "calls": t.calls} for t in result.timings]}
    print(json.dumps(summary, indent=1))
    print(text.getvalue())
    (out / "judge_profile.json").write_text(json.dumps(summary, indent=1))
    (out / "judge_profile.txt").write_text(text.getvalue())


if __name__ == "__main__":
    main()
