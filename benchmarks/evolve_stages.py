"""Throughput of an `avo evolve` run on GPUs, read back from what it left: the lineage's
attempts.jsonl (one line per evaluated candidate, with the judge's stage clock) and the
leg log of benchmarks/gpu_evolve_legs.sh (when each leg started and ended, on how many GPUs).

    python benchmarks/evolve_stages.py LEGS_LOG [--attempts kernel_src/attention/lineage/cuda/attempts.jsonl]
                                       [--json OUT.json]

Prints one row per candidate evaluated inside the legs (GPU, how far it got, wall, GPU-lock
seconds, the stage seconds) and a summary per leg and overall: candidates evaluated per
minute and per GPU-minute, and the median lock seconds of a candidate stopped at the
screen and of one that went on to the full suite, and how many evaluations were in flight
on average per GPU once warm (each attempt's wall, ending at its line's time: at a
generation barrier the slots drain). Counts every attempt whose line was
written inside a leg (between its start and the end of its drain).
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avo.population import no_verdict  # noqa: E402 - the attempts log's meaning has one owner

LEG_START = re.compile(r"== leg start (\d+) gpus=([\d,]+) seconds=(\d+)")
LEG_END = re.compile(r"== leg end (\d+) rc=(-?\d+)")


def read_legs(log: Path) -> list[dict]:
    legs = []
    for line in log.read_text(errors="replace").splitlines():
        if m := LEG_START.search(line):
            legs.append({"start": int(m[1]), "gpus": len(m[2].split(",")), "seconds": int(m[3]), "end": None})
        elif (m := LEG_END.search(line)) and legs and legs[-1]["end"] is None:
            legs[-1]["end"], legs[-1]["rc"] = int(m[1]), int(m[2])
    return [leg for leg in legs if leg["end"] is not None]


def read_attempts(path: Path) -> list[dict]:
    out = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("device") == "cuda" and rec.get("time"):
            rec["epoch"] = datetime.fromisoformat(rec["time"]).timestamp()
            out.append(rec)
    return out


def lock_s(rec: dict) -> float:
    return sum(b - a for a, b in rec.get("gpu_held") or [])


def in_flight(attempts: list[dict]) -> float | None:
    """Evaluations in flight on average from the first one's start to the last one's end."""
    spans = [(a["epoch"] - float(a.get("wall_s") or 0.0), a["epoch"]) for a in attempts]
    if len(spans) < 2:
        return None
    total = max(b for _, b in spans) - min(a for a, _ in spans)
    return sum(b - a for a, b in spans) / total if total > 0 else None


def guard(attempts: list[dict]) -> dict:
    """The shared-GPU guard's record over these attempts (avo/harness/judge_sharing.py): how
    many ran with it on, seconds spent waiting for a quiet GPU, candidates judged again after a
    shared hold, and those still shared (never committed)."""
    return {"guard_on": sum(a.get("gpu_sharing_guard") == "on" for a in attempts),
            "gpu_quiet_s": round(sum((a.get("stage_s") or {}).get("gpu_quiet", 0.0) for a in attempts), 2),
            "waited_for_quiet": sum(bool(a.get("gpu_quiet_waits")) for a in attempts),
            "judged_again": sum(bool(a.get("gpu_shared_first_try")) for a in attempts),
            "still_shared": sum(bool(a.get("gpu_shared")) for a in attempts),
            # candidates whose own processes were busy on the GPU outside their holds, by stage
            "busy_unlocked_by_stage": dict(Counter(stage for a in attempts
                                                   for stage in {part_of(r["stage"]) for r in a.get("gpu_busy_unlocked") or []})),
            # the judges' seconds staging inputs, running batches and verifying them, summed per phase
            "batch_s": batch_seconds(attempts)}


def part_of(stage: str) -> str:
    """A judge's stage mark, with one compile call's shape said as 'a call'."""
    return "compile: a call" if stage.startswith("compile: ") and stage != "compile: helpers" else stage


def batch_seconds(attempts: list[dict]) -> dict:
    out: dict = {}
    for a in attempts:
        for phase, parts in (a.get("batch_s") or {}).items():
            for part, seconds in parts.items():
                out.setdefault(phase, {}).setdefault(part, 0.0)
                out[phase][part] = round(out[phase][part] + seconds, 2)
    return out


def summarise(legs: list[dict], attempts: list[dict]) -> dict:
    per_leg, everyone = [], []
    for i, leg in enumerate(legs):
        mine = [a for a in attempts if leg["start"] <= a["epoch"] <= leg["end"]]
        # a record whose judge was killed or died judged nothing: not an evaluation, counted apart
        killed = [a for a in mine if no_verdict(a)]
        mine = [a for a in mine if not no_verdict(a)]
        minutes = (leg["end"] - leg["start"]) / 60
        screened = [lock_s(a) for a in mine if a.get("stage") == "screen" and a.get("stopped")]
        full = [lock_s(a) for a in mine if a.get("stage") == "full"]
        # once warm: from the leg's first result to its last (the start-up, timing the best and the
        # baselines on each GPU, and the drain after SIGINT left out)
        times = sorted(a["epoch"] for a in mine)
        warm = (len(times) - 1) / ((times[-1] - times[0]) / 60) / leg["gpus"] if len(times) > 2 else None
        flight = in_flight(mine)
        per_leg.append({"leg": i + 1, "gpus": leg["gpus"], "minutes": round(minutes, 2), "evaluated": len(mine),
                        "per_minute": round(len(mine) / minutes, 3),
                        "per_gpu_minute": round(len(mine) / minutes / leg["gpus"], 3),
                        "first_result_s": round(times[0] - leg["start"], 1) if times else None,
                        "warm_per_gpu_minute": round(warm, 3) if warm else None,
                        "in_flight_per_gpu": round(flight / leg["gpus"], 2) if flight else None,
                        "judge_killed_not_counted": len(killed),
                        "committed": sum(bool(a.get("committed")) for a in mine),
                        "screened_out": len(screened), "full_suite": len(full),
                        "median_lock_s_screened_out": round(statistics.median(screened), 2) if screened else None,
                        "median_lock_s_full": round(statistics.median(full), 2) if full else None,
                        **guard(mine)})
        everyone += [(i + 1, a) for a in mine]
    gpu_minutes = sum(leg["gpus"] * (leg["end"] - leg["start"]) / 60 for leg in legs)
    minutes = sum((leg["end"] - leg["start"]) / 60 for leg in legs)
    return {"legs": per_leg, "minutes": round(minutes, 2), "gpu_minutes": round(gpu_minutes, 2),
            "evaluated": len(everyone), "per_gpu_minute": round(len(everyone) / gpu_minutes, 3) if gpu_minutes else None,
            "rows": [{"leg": leg, "time": a["time"], "gpu": a.get("gpu_id"), "technique": a["technique"].get("name"),
                      "status": a.get("status"), "stage": a.get("stage"), "stopped": bool(a.get("stopped")),
                      "geomean": a.get("geomean_tflops"), "committed": a.get("committed"), "version": a.get("version"),
                      "wall_s": a.get("wall_s"), "lock_s": round(lock_s(a), 2), "kernel_s": a.get("kernel_s"),
                      "stage_s": a.get("stage_s") or {}} for leg, a in everyone]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("legs_log", type=Path)
    ap.add_argument("--attempts", type=Path, default=Path("kernel_src/attention/lineage/cuda/attempts.jsonl"))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    s = summarise(read_legs(args.legs_log), read_attempts(args.attempts))
    print(f"{'leg':>3} {'gpu':>3} {'candidate':34} {'stage':7} {'TFLOPS':>7} {'commit':6} {'wall s':>7} {'lock s':>7}"
          f" {'kernel s':>8}  stages (s)")
    for r in s["rows"]:
        stages = " ".join(f"{k}={v:.0f}" for k, v in r["stage_s"].items() if v >= 0.5)
        commit = f"v{r['version']}" if r["committed"] else "no"
        stage = (r["stage"] or r["status"] or "")[:7] if r["status"] == "ok" else r["status"][:7]
        print(f"{r['leg']:>3} {str(r['gpu']):>3} {str(r['technique'])[:34]:34} {stage:7} {r['geomean'] or 0:7.1f}"
              f" {commit:6} {r['wall_s'] or 0:7.1f} {r['lock_s']:7.1f} {r['kernel_s'] or 0:8.2f}  {stages}")
    for leg in s["legs"]:
        print(f"leg {leg['leg']}: {leg['gpus']} GPU(s), {leg['minutes']} min: {leg['evaluated']} evaluated "
              f"(+{leg['judge_killed_not_counted']} whose judge was killed, not counted) "
              f"({leg['per_minute']} per minute, {leg['per_gpu_minute']} per GPU-minute; first result after "
              f"{leg['first_result_s']} s, then {leg['warm_per_gpu_minute']} per GPU-minute with "
              f"{leg['in_flight_per_gpu']} in flight per GPU), {leg['committed']} committed; "
              f"{leg['screened_out']} stopped at the screen (median lock {leg['median_lock_s_screened_out']} s), "
              f"{leg['full_suite']} full suite (median lock {leg['median_lock_s_full']} s); shared-GPU guard on for "
              f"{leg['guard_on']}, {leg['gpu_quiet_s']} s waiting for a quiet GPU ({leg['waited_for_quiet']} "
              f"candidates), {leg['judged_again']} judged again after a shared hold, {leg['still_shared']} still shared; "
              f"own GPU work outside the lock (candidates, by stage): {leg['busy_unlocked_by_stage'] or 'none seen'}; "
              f"judges' batch seconds by phase: {leg['batch_s'] or 'not recorded'}")
    print(f"all legs: {s['evaluated']} evaluated in {s['minutes']} min on {s['gpu_minutes']} GPU-minutes: "
          f"{s['per_gpu_minute']} per GPU-minute")
    if args.json:
        args.json.write_text(json.dumps(s, indent=1) + "\n")


if __name__ == "__main__":
    main()
