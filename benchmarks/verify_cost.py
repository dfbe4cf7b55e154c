"""What the judge's staging and verification cost per call, and whether two versions of
avo/harness/calls.py give the same verdicts: the GPU-lock time an evaluation spends
around its kernel (issue #13's "wall <= 2x kernel time + compile").

For every shape of SUITES[suite] (timed batches: n calls, no draws varied, sampled
rows only) and every check_shapes(device) (batches of 2 varied calls, whole outputs
compared), each version stages a batch, late-binds it, fills the outputs with torch's
SDPA on the arena's own inputs (an honest output, in the judge's process: no runner),
takes the snapshot and verifies. Seconds are wall clock around each step (each step
ends in a device sync). Then the verdicts on tampered batches must agree: an input
modified, a sampled row left unwritten at the snapshot, an output changed after it, an
output computed before the late change, a NaN.

    python benchmarks/verify_cost.py --before OLD_CALLS.py [--device cuda] [--suite avo]
        [--calls 24] [--repeat 3] [--out DIR]

OLD_CALLS.py: the other version (e.g. `git show REV:avo/harness/calls.py > old.py`).
Prints a table and writes DIR/verify_cost.json (default DIR /tmp/verify-cost).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from avo.harness import arena as arena_mod  # noqa: E402
from avo.harness import calls as calls_now  # noqa: E402
from avo.problem import load_problem  # noqa: E402

P = load_problem()


def load_module(path: str):
    spec = importlib.util.spec_from_file_location("calls_before", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["calls_before"] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def honest_fill(calls, batch, arena):
    """Each call's output from torch's SDPA on its own (late-changed) inputs."""
    for c in batch.calls:
        q, k, v = (calls.view(arena, batch, c, n) for n in ("q", "k", "v"))
        args = c.params["args"]
        out = F.scaled_dot_product_attention(q, k, v, is_causal=args["causal"], scale=args["sm_scale"],
                                             enable_gqa=q.shape[1] != k.shape[1])
        calls.view(arena, batch, c, "out").copy_(out)


TAMPER = ["honest", "modified input", "unwritten at snapshot", "changed after snapshot", "stale output", "one NaN"]


def one_batch(calls, shape, n, seed, arena, device, full, vary, tamper="honest"):
    """(stage_s, verify_s, verdict) of one batch."""
    rng = random.Random(seed)
    t0 = time.perf_counter()
    batch = calls.plan(shape, n, rng, "check" if full else "timed", full, vary)
    calls.stage(batch, arena, P, device)
    t1 = time.perf_counter()
    last = batch.calls[-1]
    if tamper == "stale output":  # computed before the clock: before the late change
        honest_fill(calls, batch, arena)
        calls.late_bind(batch, arena, device)
    else:
        calls.late_bind(batch, arena, device)
        if tamper != "unwritten at snapshot":
            honest_fill(calls, batch, arena)
    if tamper == "modified input":
        calls.view(arena, batch, last, "v").view(-1)[-1] += 1
    row = last.rows_device[0]  # the first sampled row (stage() put the rows on the device)
    if tamper == "one NaN":  # in a sampled row: timed batches compare those only
        calls.view(arena, batch, last, "out")[tuple(row)][0] = float("nan")
    calls.take_snapshot(batch, arena, device)
    if tamper == "unwritten at snapshot":
        honest_fill(calls, batch, arena)
    if tamper == "changed after snapshot":
        calls.view(arena, batch, last, "out")[tuple(row)] += 1
    sync(device)
    t2 = time.perf_counter()
    try:
        calls.verify(batch, arena, P, device, lambda *a: None)
        verdict = "ok"
    except calls.Verdict as v:
        verdict = f"{v.status}: {v.message}"
    sync(device)
    return t1 - t0, time.perf_counter() - t2, verdict


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True, help="the other version of avo/harness/calls.py")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--suite", default="avo")
    ap.add_argument("--calls", type=int, default=24, help="calls per timed batch (the judge's MAX_CALLS on a GPU)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default="/tmp/verify-cost")
    a = ap.parse_args()
    if not Path(a.before).is_file():
        print(f"verify_cost: no file {a.before}", file=sys.stderr)
        return 2
    versions = {"before": load_module(a.before), "now": calls_now}
    device = a.device
    timed = [(s, a.calls, False, False) for s in P.SUITES[a.suite]]
    checks = [(s, 2, True, True) for s in P.check_shapes(device)]
    biggest = max(calls_now.call_bytes(s, P) * n for s, n, _, _ in timed + checks)
    arena = arena_mod.create(device, arena_mod.align(biggest))
    rows, verdicts_agree = [], True
    print(f"{'shape':<42} {'kind':<6} {'n':>3} | {'stage ms/call':>21} | {'verify ms/call':>21} | verdicts")
    print(f"{'':<42} {'':<6} {'':>3} | {'before':>10} {'now':>10} | {'before':>10} {'now':>10} |")
    for shape, n, full, vary in timed + checks:
        row = {"shape": shape.name, "kind": "check" if full else "timed", "n": n}
        for name, calls in versions.items():
            one_batch(calls, shape, n, 0, arena, device, full, vary)  # warm-up
            st, ve = [], []
            for r in range(a.repeat):
                s_s, v_s, verdict = one_batch(calls, shape, n, 1 + r, arena, device, full, vary)
                st.append(s_s)
                ve.append(v_s)
                row.setdefault(f"verdict_{name}", verdict)
            row[f"stage_ms_{name}"] = sorted(st)[len(st) // 2] / n * 1e3
            row[f"verify_ms_{name}"] = sorted(ve)[len(ve) // 2] / n * 1e3
        agree = []
        for tamper in TAMPER[1:]:
            got = {name: one_batch(calls, shape, min(n, 3), 7, arena, device, full, vary, tamper)[2]
                   for name, calls in versions.items()}
            row[f"tamper: {tamper}"] = got
            # the same verdict, word for word (S=1 passes a stale output in both: one key, whose
            # scaling cannot move its softmax; a check shape, never timed)
            agree.append(got["before"] == got["now"])
        row["honest_ok"] = row["verdict_before"] == row["verdict_now"] == "ok"
        row["tampered_agree"] = all(agree)
        verdicts_agree &= row["honest_ok"] and row["tampered_agree"]
        rows.append(row)
        print(f"{shape.name:<42} {row['kind']:<6} {n:>3} | {row['stage_ms_before']:>10.3f} {row['stage_ms_now']:>10.3f} | "
              f"{row['verify_ms_before']:>10.3f} {row['verify_ms_now']:>10.3f} | "
              f"{'same' if row['honest_ok'] and row['tampered_agree'] else 'DIFFER'}")
    total = {k: sum(r[k] * r["n"] for r in rows) for k in ("stage_ms_before", "stage_ms_now",
                                                            "verify_ms_before", "verify_ms_now")}
    print("one batch of every shape, ms: " + ", ".join(f"{k} {v:.1f}" for k, v in total.items()))
    env = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "torch": torch.__version__,
           "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if device == "cuda" else None}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "verify_cost.json").write_text(json.dumps({"env": env, "rows": rows, "totals_ms": total,
                                                      "verdicts_agree": verdicts_agree}, indent=1, default=str))
    print(f"verdicts agree: {verdicts_agree}; wrote {out / 'verify_cost.json'}")
    return 0 if verdicts_agree else 1


if __name__ == "__main__":
    sys.exit(main())
