"""python -m avo.profiling KERNEL.py [--parent PARENT.py] [--config NAME] [--out DIR] [--trusted]

Profiles KERNEL (and PARENT) on one config, prints the summary and the delta;
with --out writes the raw CSV and the profile JSON of each. --trusted runs
outside the sandbox (for committed kernels whose driver restricts counters)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from avo.profiling.ncu import diff, summarize
from avo.profiling.run import Profiler


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m avo.profiling")
    ap.add_argument("kernel")
    ap.add_argument("--parent")
    ap.add_argument("--config")
    ap.add_argument("--out")
    ap.add_argument("--trusted", action="store_true")
    args = ap.parse_args(argv)
    profiler = Profiler(sandboxed=not args.trusted)
    config = args.config or profiler.default_config()
    runs = {}
    for label, path in (("kernel", args.kernel), ("parent", args.parent)):
        if not path:
            continue
        run = runs[label] = profiler.profile(Path(path).read_text(), config)
        print(f"== {label}: {path}")
        print(summarize(run.profile) if run.ok else run.error)
        if args.out:
            out = Path(args.out)
            out.mkdir(parents=True, exist_ok=True)
            (out / f"{label}.ncu.csv").write_text(run.raw_csv)
            if run.profile:
                (out / f"{label}.profile.json").write_text(run.profile.to_json())
    if "parent" in runs and runs["kernel"].ok and runs["parent"].ok:
        print(diff(runs["kernel"].profile, runs["parent"].profile))
    return 0 if all(r.ok for r in runs.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
