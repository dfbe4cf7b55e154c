"""Evaluation throughput on GPUs: the cascade on vs off, and 1 / 2 / 4 GPUs.

One script for one device call; each phase is time-boxed and its JSON is written as
soon as it ends, so a call stopped at its limit still returns what finished.

    warm    the lineage's best on every GPU at once (full suite, cascade stages, no
            gate): fills each GPU's baseline cache, and shows the same kernel times
            the same on every GPU (no two evaluations shared one)
    onoff   the same candidates with the cascade on (GPU 0, pipelined) and off (the
            old path: every candidate on the whole suite, baselines re-timed, one at a
            time) on other GPUs; both decided by the commit rule against the same best
    scale   the cascade on with 1 and 2 GPUs (at once, on disjoint GPUs), then 4, a
            fixed wall each, the same mix of candidates: candidates evaluated within the
            wall per minute (those still running at the wall are stopped, not counted)

Candidates are single-knob moves of lineage versions (avo.operators.heuristic's
set_knobs), judged against `--best` (a version the others can beat, so that both
modes have commits to agree on). Usage on the GPU machine (repo root):

    python benchmarks/throughput.py --out $OUT --phases warm,onoff,scale
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from avo import gpu_pool  # noqa: E402
from avo.commit_rule import Best, Rule, decide  # noqa: E402
from avo.config import HarnessConfig  # noqa: E402
from avo.evaluator import Evaluator, yardstick_of  # noqa: E402
from avo.harness import evaluate as harness_evaluate  # noqa: E402
from avo.lineage import Lineage  # noqa: E402
from avo.operators.heuristic import set_knobs  # noqa: E402
from avo.problem import DEFAULT_PROBLEM, load_problem  # noqa: E402

LINEAGE = ROOT / "kernel_src/attention/lineage/cuda"
SUITE = "avo"
MARGIN = 0.01

# single-knob moves: (version, changes); v4 is the Gluon kernel, v3 the Triton one
MOVES = [
    (4, {"PINGPONG": True}), (3, {"BLOCK_N": 64}), (4, {"NUM_STAGES": 3}), (3, {"NUM_STAGES": 2}),
    (4, {"HEAVY_FIRST": False}), (3, {"NUM_WARPS": 4}), (4, {"CONSUMER_REGS": 232}), (3, {"CAUSAL_SPLIT": False}),
    (4, {"NUM_STAGES_D64": 3}), (3, {"NUM_STAGES": 4}), (4, {"PERSISTENT": True}), (3, {"HEAVY_FIRST": False}),
    (4, {"BLOCK_N": 64}), (3, {"BLOCK_M": 64}), (4, {"FA3_SCHEDULE": False}), (3, {"BLOCK_N_D64": 128}),
]


def candidates(lineage: Lineage, n: int, salt: str = "", each: int = 1) -> list[tuple[str, str]]:
    """n (name, source) pairs, each move `each` times in a row (so that k GPUs with
    each=k see the same mix of moves as one GPU); repeats and laps past the list of
    moves carry a salted comment (another source, the same kernel: it compiles and
    times again)."""
    out = []
    for i, (version, changes) in zip(range(n), itertools.cycle([m for m in MOVES for _ in range(each)])):
        source = set_knobs(lineage.get(version).source, changes)
        lap = f"{i // (len(MOVES) * each)}.{i % each}" if each > 1 else str(i // len(MOVES))
        name = f"v{version} " + " ".join(f"{k}={v}" for k, v in changes.items())
        if lap != "0" or salt:
            source += f"\n# throughput benchmark copy {salt}{lap}\n"
            name += f" (copy {salt}{lap})"
        out.append((name, source))
    return out


def evaluator(gpus: list[int], cascade: bool, depth: int, cache: Path) -> tuple[Evaluator, list]:
    problem = load_problem(Path(DEFAULT_PROBLEM))
    cfg = HarnessConfig(cascade=cascade, pipeline_depth=depth)
    ev = Evaluator(cfg, device="cuda", suite=SUITE, suite_configs=[s.name for s in problem.SUITES[SUITE]],
                   problem_path=Path(DEFAULT_PROBLEM), floor=MARGIN, cache_path=cache)
    slots = [str(g) for g in gpus] + [f"{g}#{k}" for k in range(2, depth + 1) for g in gpus]
    return ev, slots


def run_pool(label: str, items: list[tuple[str, str]], gpus: list[int], cascade: bool, depth: int, best,
             cache: Path, wall_s: float, cut: bool = False) -> dict:
    """Evaluate `items` on `gpus`, `depth` in flight per GPU; none starts after wall_s.
    cut: at wall_s every judge still running is killed (every pool's: the scale rounds end
    together); the rate counts the evaluations that finished within the wall."""
    ev, slots = evaluator(gpus, cascade, depth, cache)
    best_rule = Best(best.version, best.geomean, best.sha256) if best else None
    rule = Rule(margin=MARGIN, require_confirm=cascade)
    rows, lock = [], threading.Lock()
    t0 = time.monotonic()

    def one(item):
        name, source = item
        with gpu_pool.lease(slots) as slot:
            start = time.monotonic()
            if start - t0 > wall_s:
                return
            r = ev.judge(source, slot, best if cascade else None, harness_evaluate)
            end = time.monotonic()
        commit, why = decide(r, best_rule, rule) if best_rule else (r.ok, "no best")
        row = dict(name=name, gpu=gpu_pool.gpu_of(slot), slot=str(slot), start=round(start - t0, 2),
                   end=round(end - t0, 2), wall_s=round(end - start, 2), status=r.status, message=r.message[:200],
                   stage=r.cascade.get("stage", "full"), stopped=r.cascade.get("stopped", ""),
                   geomean=round(r.geomean_tflops, 2), ratio_cudnn=r.geomean_ratio_cudnn,
                   confirm={k: r.confirm.get(k) for k in ("ratio", "spread", "rounds")} if r.confirm else {},
                   commit=commit, why=why, stage_s=r.env.get("stage_s", {}), kernel_s=r.env.get("kernel_s"),
                   gpu_held=r.env.get("gpu_held", []), baselines_cached=r.env.get("baselines_cached"),
                   env={k: r.env.get(k) for k in ("gpu", "driver", "torch", "triton", "cudnn")},
                   tflops={t.config: t.tflops for t in r.timings})
        with lock:
            rows.append(row)
        print(f"[{label}] {row['end']:7.1f}s gpu{row['gpu']} {name[:40]:40s} {r.status:8s} {row['stage']:6s} "
              f"{row['geomean']:7.1f} TFLOPS {'COMMIT' if commit else '-':6s} {row['wall_s']:6.1f}s "
              f"{(row['stopped'] or why)[:70]}", flush=True)

    timer = threading.Timer(wall_s, kill_my_judges)
    if cut:
        timer.start()
    try:
        with ThreadPoolExecutor(max_workers=len(slots)) as pool:
            list(pool.map(one, items))
    finally:
        timer.cancel()
    if cut:  # what the kill stopped is not an evaluation
        for r in rows:
            r["cut"] = r["end"] > wall_s
        done = [r for r in rows if not r["cut"]]
        elapsed = wall_s
    else:
        done = rows
        elapsed = max((r["end"] for r in rows), default=0.0)
    return dict(label=label, gpus=gpus, cascade=cascade, depth=depth, evaluated=len(done), wall_s=elapsed,
                cut_at_wall=cut, per_minute=len(done) / (elapsed / 60) if elapsed else 0.0,
                per_gpu_minute=len(done) / (elapsed / 60) / len(gpus) if elapsed else 0.0,
                overlaps=overlaps(rows), cache_events=ev.cache.events(), rows=rows)


SPARED: set[int] = set()  # the background command's pid: its own judges are not the benchmark's


def kill_my_judges() -> None:
    """SIGKILL every judge process this process started (not the background command's)."""
    parent = {}
    for proc in Path("/proc").iterdir():
        try:
            parent[int(proc.name)] = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (ValueError, OSError, IndexError):
            continue
    me = os.getpid()
    for pid in parent:
        up, seen = pid, set()
        while up in parent and up not in seen and up != me and up not in SPARED:
            seen.add(up)
            up = parent[up]
        if up != me:
            continue
        try:
            if b"avo.harness.judge" in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, 9)
        except OSError:  # it ended on its own meanwhile: nothing left to stop
            continue


def overlaps(rows: list[dict]) -> list:
    """Pairs of evaluations whose GPU-lock holds overlapped on one GPU (must be none)."""
    held = sorted((r["gpu"], a, b, r["name"]) for r in rows for a, b in r["gpu_held"])
    bad = []
    for (g1, a1, b1, n1), (g2, a2, b2, n2) in zip(held, held[1:]):
        if g1 == g2 and a2 < b1:
            bad.append([n1, n2, g1])
    return bad


def wait_background(proc: subprocess.Popen, wait_s: float):
    """Its exit status, or "stopped" when it had to be ended to free its GPU."""
    try:
        return proc.wait(timeout=wait_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait()
        return "stopped"


def write(out: Path, name: str, data) -> None:
    (out / name).write_text(json.dumps(data, indent=1, default=str))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "/tmp/out")))
    ap.add_argument("--phases", default="onoff,scale", help="warm always runs first")
    ap.add_argument("--best", type=int, default=3, help="the version candidates are judged against")
    ap.add_argument("--n-on", type=int, default=12)
    ap.add_argument("--n-off", type=int, default=6)
    ap.add_argument("--onoff-wall", type=float, default=270.0)
    ap.add_argument("--scale-wall", type=float, default=75.0)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--cache", type=Path, default=None, help="the baseline cache (default: in --out); "
                    ".avo/evolve/baselines.json hands the warm GPUs to a following `avo evolve`")
    ap.add_argument("--background", default="", help="a shell command run on the last GPU after warm, "
                    "while onoff and the scale phases below all GPUs run")
    ap.add_argument("--background-wait", type=float, default=60.0,
                    help="seconds it may still run once every GPU is needed; then it is stopped")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    lineage = Lineage(LINEAGE)
    gpus = gpu_pool.visible_gpus()
    cache = args.cache or args.out / "baselines-cache.json"
    version = lineage.get(args.best)
    summary = {"gpus": gpus, "best": args.best, "suite": SUITE, "phases": {}}
    phases = args.phases.split(",")

    # warm: the yardstick on every GPU at once, on this suite: its record in this session is
    # what the others must beat; the same kernel must time the same on every GPU
    warm = run_pool("warm", [(f"v{args.best} on each GPU", version.source)] * len(gpus), gpus, True, 1,
                    None, cache, 1e9)
    ok = sorted((r for r in warm["rows"] if r["status"] == "ok"), key=lambda r: r["gpu"])
    g = [r["geomean"] for r in ok]
    warm["same_kernel_spread"] = (max(g) - min(g)) / (sum(g) / len(g)) if g else None
    write(args.out, "warm.json", warm)
    summary["phases"]["warm"] = {k: warm[k] for k in ("wall_s", "same_kernel_spread", "overlaps")}
    summary["phases"]["warm"]["per_gpu"] = {r["gpu"]: r["geomean"] for r in warm["rows"]}
    if not ok:
        write(args.out, "throughput-summary.json", summary)
        print("the yardstick failed on every GPU", warm["rows"])
        return 1
    # the record the run would hold (this session, this GPU model): the slowest GPU's figures, so
    # that on every GPU the evaluator's own measurement of the best there (the warm run) is the gate
    best = replace(yardstick_of(version), geomean=min(r["geomean"] for r in ok),
                   tflops={c: min(r["tflops"][c] for r in ok) for c in ok[0]["tflops"]})
    background = None
    if args.background and len(gpus) >= 4:  # e.g. the GPU tests, on the GPU onoff leaves free
        background = subprocess.Popen(args.background, shell=True, start_new_session=True,
                                      env={**os.environ, "CUDA_VISIBLE_DEVICES": str(gpus[-1])})
        SPARED.add(background.pid)

    if "onoff" in phases and len(gpus) >= 2:
        on_items = candidates(lineage, args.n_on)
        results = {}

        def run(label, items, g, cascade, depth):
            results[label] = run_pool(label, items, g, cascade, depth, best, cache, args.onoff_wall)

        threads = [threading.Thread(target=run, args=("on", on_items, gpus[:1], True, args.depth)),
                   threading.Thread(target=run, args=("off", on_items[:args.n_off], gpus[1:3], False, 1))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        on, off = results["on"], results["off"]
        same = {r["name"]: r["commit"] for r in off["rows"]}
        agree = [r["name"] for r in on["rows"] if r["name"] in same and same[r["name"]] == r["commit"]]
        differ = [r["name"] for r in on["rows"] if r["name"] in same and same[r["name"]] != r["commit"]]
        write(args.out, "onoff.json", {"on": on, "off": off, "agree": agree, "differ": differ})
        summary["phases"]["onoff"] = {m: {k: results[m][k] for k in ("evaluated", "wall_s", "per_gpu_minute",
                                                                      "overlaps")} for m in ("on", "off")}
        summary["phases"]["onoff"].update(agree=len(agree), differ=differ)

    if background is not None and "scale" not in phases:
        summary["background_rc"] = wait_background(background, args.background_wait)
    if "scale" in phases:
        # 1 GPU and 2 GPUs at once on disjoint GPUs (0 and 1-2), then all 4: the same
        # candidates' mix, each pool on GPUs of its own (the warm phase shows they time alike)
        scale, rounds = {}, ([[(1, gpus[:1]), (2, gpus[1:3])], [(4, gpus)]] if len(gpus) >= 4 else
                             [[(n, gpus[:n])] for n in (1, 2) if n <= len(gpus)])
        for one_round in rounds:
            if background is not None and sum(len(g) for _, g in one_round) >= len(gpus):
                summary["background_rc"] = wait_background(background, args.background_wait)
                background = None  # every GPU is measured from here on

            def pool(n, g):
                scale[n] = run_pool(f"scale{n}", candidates(lineage, 40 * n, salt=f"s{n}-", each=n), g, True,
                                    args.depth, best, cache, args.scale_wall, cut=True)
            threads = [threading.Thread(target=pool, args=item) for item in one_round]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            write(args.out, "scale.json", scale)
        base = scale.get(1, {}).get("per_minute")
        summary["phases"]["scale"] = {n: {"evaluated": s["evaluated"], "wall_s": s["wall_s"],
                                          "per_minute": round(s["per_minute"], 2),
                                          "speedup": round(s["per_minute"] / base, 2) if base else None,
                                          "overlaps": s["overlaps"]} for n, s in scale.items()}
    write(args.out, "throughput-summary.json", summary)
    print(json.dumps(summary, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
