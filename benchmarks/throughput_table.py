"""Tables from the throughput benchmark's JSON (benchmarks/throughput.py) and from an
`avo evolve` legs run (benchmarks/gpu_evolve_legs.sh): prints them and writes summary.json.

    python benchmarks/throughput_table.py benchmarks/results/h200x4-throughput
"""
from __future__ import annotations

import json
import statistics
import sys
from datetime import datetime
from pathlib import Path


def load(path: Path):
    return json.loads(path.read_text()) if path.exists() else None


def pool_rows(label: str, pool: dict) -> list[str]:
    cut = sum(1 for r in pool["rows"] if r.get("cut"))
    out = [f"{label}: {pool['evaluated']} evaluated in {pool['wall_s']:.0f} s on GPU(s) {pool['gpus']} "
           f"(cascade {'on, depth ' + str(pool['depth']) if pool['cascade'] else 'off'}): "
           f"{pool['per_gpu_minute']:.2f} per GPU-minute; lock overlaps: {len(pool['overlaps'])}"
           + (f"; {cut} still running at the wall were stopped (not counted)" if pool.get("cut_at_wall") else "")]
    out.append(f"  {'candidate':38s} {'gpu':>3s} {'stage':6s} {'TFLOPS':>7s} {'commit':6s} {'wall s':>6s} "
               f"{'gpu s':>6s} {'kernel s':>8s}  stages (s)")
    for r in sorted((r for r in pool["rows"] if not r.get("cut")), key=lambda r: r["end"]):
        held = sum(b - a for a, b in r.get("gpu_held") or [])
        stages = " ".join(f"{k}={v:.0f}" for k, v in r["stage_s"].items() if v >= 0.5)
        out.append(f"  {r['name'][:38]:38s} {r['gpu']!s:>3s} {r['stage']:6s} {r['geomean']:7.1f} "
                   f"{'yes' if r['commit'] else 'no':6s} {r['wall_s']:6.1f} {held:6.1f} {r['kernel_s'] or 0:8.2f}  {stages}")
    return out


def legs(folder: Path) -> list[dict]:
    """Per leg of an evolve run: GPUs, seconds, attempts finished inside it."""
    log = folder / "legs.log"
    attempts = [json.loads(line) for line in (folder / "attempts.jsonl").read_text().splitlines()] \
        if (folder / "attempts.jsonl").exists() else []
    out, start = [], None
    for line in log.read_text().splitlines() if log.exists() else []:
        if line.startswith("== leg start"):
            parts = dict(p.split("=") for p in line.split()[4:])
            start = (int(line.split()[3]), parts["gpus"])
        elif line.startswith("== leg end") and start:
            end = int(line.split()[3])
            done = [a for a in attempts if start[0] <= datetime.fromisoformat(a["time"]).timestamp() <= end]
            n = len(start[1].split(","))
            out.append({"gpus": n, "seconds": end - start[0], "evaluated": len(done),
                        "per_gpu_minute": round(len(done) / ((end - start[0]) / 60) / n, 2),
                        "screened_out": sum(1 for a in done if a.get("stopped")),
                        "median_gpu_s": statistics.median([a["gpu_s"] for a in done]) if done else None})
            start = None
    return out


def main(folder: Path) -> int:
    summary, lines = {}, []
    onoff = load(folder / "onoff" / "onoff.json")
    if onoff:
        for mode in ("on", "off"):
            lines += pool_rows(f"[onoff/{mode}]", onoff[mode])
        lines.append(f"decisions: {len(onoff['agree'])} agree, {len(onoff['differ'])} differ {onoff['differ']}")
        summary["onoff"] = {m: {k: onoff[m][k] for k in ("evaluated", "wall_s", "per_gpu_minute")} for m in ("on", "off")}
        summary["onoff"]["agree"], summary["onoff"]["differ"] = len(onoff["agree"]), onoff["differ"]
    for sub in ("onoff", "scale"):
        warm = load(folder / sub / "warm.json")
        if warm:
            per_gpu = {r["gpu"]: r["geomean"] for r in warm["rows"]}
            lines.append(f"[{sub}/warm] the same kernel on every GPU: {per_gpu} TFLOPS, spread "
                         f"{warm['same_kernel_spread']:.2%}; lock overlaps: {len(warm['overlaps'])}")
            summary[f"{sub}_same_kernel"] = {"per_gpu": per_gpu, "spread": warm["same_kernel_spread"]}
    scale = load(folder / "scale" / "scale.json")
    if scale:
        for n, pool in scale.items():
            lines += pool_rows(f"[scale/{n} GPU]", pool)
        summary["scale"] = {n: {k: p[k] for k in ("evaluated", "wall_s", "per_gpu_minute")} for n, p in scale.items()}
    evolve = legs(folder / "evolve-legs")
    if evolve:
        lines.append("[avo evolve legs] " + "; ".join(
            f"{leg['gpus']} GPU(s) {leg['seconds']} s: {leg['evaluated']} evaluated "
            f"({leg['per_gpu_minute']} per GPU-minute, {leg['screened_out']} screened out, "
            f"median GPU time {leg['median_gpu_s']} s)" for leg in evolve))
        summary["evolve_legs"] = evolve
    print("\n".join(lines))
    (folder / "summary.json").write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/results/h200x4-throughput")))
