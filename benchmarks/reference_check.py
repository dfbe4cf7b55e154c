"""The judge's whole-output reference on a GPU: problem.reference() (chunked torch matmuls
and softmax in float32, the S×S scores in memory) against the fused float32 Triton kernel of
kernel_src/attention/reference_kernel.py that expected() now uses for large shapes.

For every shape of SUITES["avo"] (the recheck's timed shapes), every check_shapes("cuda")
and a few small extra shapes: inputs as the judge draws them (make_inputs, then late_change
applied), both references timed (wall clock around torch.cuda.synchronize, after one
warm-up call, which compiles the kernel; the warm-up's own time is kept too), and compared
(max abs and norm-relative difference). Which one is closer to the truth: on the check and
extra shapes both against the float64 CPU reference of the whole output; on the suite shapes
(too large for that) against the float64 CPU reference of a few sampled rows
(reference_rows). And whether the judge's verdicts agree: a bf16/fp16 candidate-like output
(torch SDPA, default backend) and a stale one (SDPA on the keys before the late change, as an
output computed before the clock started) compared by avo.harness.calls.compare with the
shape's tolerance against each reference.

    python benchmarks/reference_check.py [--out DIR] [--repeat N] [--rows R] [--no-f64]

Prints a table and writes DIR/reference_check.json (default DIR /tmp/reference-check).
"""
from __future__ import annotations

import argparse
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

from avo.harness.calls import compare  # noqa: E402
from avo.problem import load_problem  # noqa: E402

P = load_problem()
KERNEL = P._reference_kernel()  # the module expected() imports
DEVICE = "cuda"

EXTRA = [  # small shapes with varied draws, compared with the whole float64 reference
    (P.Shape(1, 4, 4, 256, 128, False, "bfloat16"), 3.0, 0.7),
    (P.Shape(2, 8, 2, 777, 128, True, "float16"), 1.0, None),
    (P.Shape(1, 4, 1, 1500, 64, False, "float16"), 3.0, None),
    (P.Shape(1, 8, 8, 2048, 128, True, "bfloat16"), 1.0, 0.7),
]


def cases():
    """(group, shape, amplitude, sm_scale factor): the suite's timed calls draw nothing
    (amplitude 1, default scale, as the recheck's); the check shapes cycle the draws."""
    for shape in P.SUITES["avo"]:
        yield "suite", shape, 1.0, None
    for i, shape in enumerate(P.check_shapes("cuda")):
        yield "check", shape, (1.0, 3.0)[i % 2], (None, 0.7)[(i // 2) % 2]
    for shape, amplitude, scale in EXTRA:
        yield "extra", shape, amplitude, scale


def draw(shape, seed, amplitude):
    """The judge's inputs of one call, the late change applied (and k before it)."""
    q, k, v = P.make_inputs(shape, DEVICE, seed, amplitude)
    name, dim, picks, factor = P.late_change(shape, random.Random(seed))
    assert name == "k"
    stale_k = k.clone()
    idx = torch.as_tensor(picks, dtype=torch.long, device=k.device)
    k.index_copy_(dim, idx, k.index_select(dim, idx) * factor)
    return q, k, v, stale_k


def timed(fn, repeat):
    """(result, warm-up ms, best ms of `repeat` calls after it)."""
    times = []
    for _ in range(1 + repeat):
        sync()
        t0 = time.perf_counter()
        out = fn()
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
        if len(times) <= repeat:
            del out
    return out, times[0], min(times[1:])


def sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def diff(a, b) -> dict:
    """a against b (the better one), in b's dtype: max abs and norm-relative difference."""
    d = (a.to(b.dtype) - b).abs()
    return {"max_abs": float(d.max()), "rel": float(d.norm() / b.norm().clamp_min(1e-30))}


def sdpa(q, k, v, causal, sm_scale):
    """A candidate-like output in q's dtype: PyTorch SDPA, default backend."""
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=sm_scale,
                                          enable_gqa=q.shape[1] != k.shape[1])


def verdicts(out, refs: dict, tol) -> dict:
    got = {}
    for name, ref in refs.items():
        max_abs, rel, reason = compare(out, ref, tol)
        got[name] = {"max_abs": max_abs, "rel": rel, "ok": not reason, "reason": reason}
    got["agree"] = len({v["ok"] for v in got.values()}) == 1
    return got


def sampled_rows(shape, n, seed):
    g = torch.Generator().manual_seed(seed)
    rows = torch.stack([torch.randint(0, shape.batch, (n,), generator=g),
                        torch.randint(0, shape.heads_q, (n,), generator=g),
                        torch.randint(0, shape.seqlen, (n,), generator=g)], dim=1)
    edge = torch.tensor([[0, 0, 0], [shape.batch - 1, shape.heads_q - 1, shape.seqlen - 1]])
    return torch.cat([edge, rows])[:max(n, 2)]


def check(group, shape, amplitude, scale, seed, args) -> dict:
    sm_scale = None if scale is None else scale / math.sqrt(shape.head_dim)
    q, k, v, stale_k = draw(shape, seed, amplitude)
    causal = shape.causal
    torch_out, torch_first, ms_torch = timed(lambda: P.reference(q, k, v, causal, sm_scale), args.repeat)
    fused_out, fused_first, ms_fused = timed(lambda: KERNEL.attention_fp32(q, k, v, causal, sm_scale), args.repeat)
    stats = {}  # the kernel's registers and spills per thread (one more call, untimed)
    KERNEL._launch(q, k, v, causal, sm_scale, True, stats)
    between = diff(fused_out, torch_out)
    row = {"shape": shape.name, "group": group, "amplitude": amplitude, "sm_scale": sm_scale, "seed": seed,
           "judge_uses": "fused" if P.fused_reference(shape, "cuda") else "torch",
           "ms_torch": ms_torch, "ms_fused": ms_fused, "ms_torch_first": torch_first, "ms_fused_first": fused_first,
           "max_abs_diff": between["max_abs"], "rel_diff": between["rel"], **stats}

    tol = P.TOLERANCES[shape.dtype]
    refs = {"torch": torch_out, "fused": fused_out}
    row["sdpa"] = verdicts(sdpa(q, k, v, causal, sm_scale), refs, tol)
    row["stale_sdpa"] = verdicts(sdpa(q, stale_k, v, causal, sm_scale), refs, tol)
    del stale_k

    if group != "suite" and not args.no_f64:  # the whole output against float64
        truth = P.reference(q.cpu(), k.cpu(), v.cpu(), causal, sm_scale)
        assert truth.dtype == torch.float64
        row["f64"] = {"torch": diff(torch_out.cpu(), truth), "fused": diff(fused_out.cpu(), truth)}
        del truth
    elif group == "suite" and args.rows:  # a few rows against float64
        rows = sampled_rows(shape, args.rows, seed)
        qc, kc, vc = q.cpu(), k.cpu(), v.cpu()
        truth = P.reference_rows(qc, kc, vc, causal, sm_scale, rows)
        assert truth.dtype == torch.float64
        idx = tuple(rows.t())
        row["f64_rows"] = {"rows": int(rows.shape[0]), "torch": diff(torch_out[idx].cpu(), truth),
                           "fused": diff(fused_out[idx].cpu(), truth)}
        del qc, kc, vc, truth
    return row


def fmt(row) -> str:
    truth = row.get("f64") or row.get("f64_rows")
    closer = "-" if not truth else ("fused" if truth["fused"]["max_abs"] < truth["torch"]["max_abs"] else
                                    "torch" if truth["torch"]["max_abs"] < truth["fused"]["max_abs"] else "tie")
    t = (f"{truth['torch']['max_abs']:.1e}/{truth['fused']['max_abs']:.1e}" if truth else "-")
    agree = "yes" if row["sdpa"]["agree"] and row["stale_sdpa"]["agree"] else "NO"
    ok = "ok" if row["sdpa"]["torch"]["ok"] else "FAIL"
    stale = "rejected" if not row["stale_sdpa"]["torch"]["ok"] else "passed"
    return (f"{row['group']:5} {row['shape']:38} {row['judge_uses']:5} {row['ms_torch']:9.1f} {row['ms_fused']:8.1f} "
            f"{row['ms_fused_first']:9.0f} {row['max_abs_diff']:9.1e} {row['rel_diff']:9.1e} {t:>17} {closer:>6} "
            f"{ok:>5} {stale:>8} {agree:>6}")


HEADER = (f"{'group':5} {'shape':38} {'judge':5} {'ms torch':>9} {'ms fused':>8} {'1st fused':>9} {'max|diff|':>9} "
          f"{'rel diff':>9} {'f64 torch/fused':>17} {'closer':>6} {'sdpa':>5} {'stale':>8} {'agree':>6}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="/tmp/reference-check", help="folder for reference_check.json")
    ap.add_argument("--repeat", type=int, default=2, help="timed calls per reference after the warm-up (best kept)")
    ap.add_argument("--rows", type=int, default=16, help="suite shapes: rows compared with float64 (0: none)")
    ap.add_argument("--no-f64", action="store_true", help="skip the whole-output float64 CPU references")
    args = ap.parse_args()
    args.repeat = max(1, args.repeat)
    if not torch.cuda.is_available():
        print("needs a CUDA GPU", file=sys.stderr)
        return 2
    import triton

    t_start = time.perf_counter()
    env = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__,
           "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
           "tiles": {k: getattr(KERNEL, k) for k in ("BLOCK_M", "BLOCK_N", "NUM_WARPS", "NUM_STAGES")}}
    print(" | ".join(f"{k} {v}" for k, v in env.items()))
    print(HEADER)
    rows = []
    for i, (group, shape, amplitude, scale) in enumerate(cases()):
        row = check(group, shape, amplitude, scale, 1000 + i, args)
        rows.append(row)
        print(fmt(row), flush=True)

    suite = [r for r in rows if r["group"] == "suite"]
    totals = {
        "suite_ms_torch": sum(r["ms_torch"] for r in suite), "suite_ms_fused": sum(r["ms_fused"] for r in suite),
        "suite_ms_fused_first": sum(r["ms_fused_first"] for r in suite),
        "suite_max_abs_diff": max(r["max_abs_diff"] for r in suite),
        "suite_max_rel_diff": max(r["rel_diff"] for r in suite),
        "max_abs_diff": max(r["max_abs_diff"] for r in rows), "max_rel_diff": max(r["rel_diff"] for r in rows),
        "verdicts_agree": all(r["sdpa"]["agree"] and r["stale_sdpa"]["agree"] for r in rows),
        "sdpa_passed": sum(r["sdpa"]["torch"]["ok"] for r in rows),
        "stale_rejected": sum(not r["stale_sdpa"]["torch"]["ok"] for r in rows), "shapes": len(rows),
        "max_spills": max((r.get("n_spills") or 0) for r in rows),
        "max_regs": max((r.get("n_regs") or 0) for r in rows),
    }
    for key in ("f64", "f64_rows"):
        have = [r[key] for r in rows if key in r]
        if have:
            totals[f"{key}_max_abs"] = {who: max(h[who]["max_abs"] for h in have) for who in ("torch", "fused")}
            totals[f"{key}_fused_closer"] = sum(h["fused"]["max_abs"] < h["torch"]["max_abs"] for h in have)
            totals[f"{key}_shapes"] = len(have)
    totals["suite_speedup"] = totals["suite_ms_torch"] / max(totals["suite_ms_fused"], 1e-9)
    totals["wall_s"] = time.perf_counter() - t_start

    print(f"\nsuite ({len(suite)} shapes, one call each as in the recheck): torch reference "
          f"{totals['suite_ms_torch']:.0f} ms, fused {totals['suite_ms_fused']:.0f} ms "
          f"({totals['suite_speedup']:.1f}x; first calls, compiling: {totals['suite_ms_fused_first']:.0f} ms); "
          f"fused vs torch: max abs {totals['suite_max_abs_diff']:.2e}, rel {totals['suite_max_rel_diff']:.2e}")
    for key, what in (("f64", "whole outputs"), ("f64_rows", "sampled rows")):
        if f"{key}_max_abs" in totals:
            m = totals[f"{key}_max_abs"]
            print(f"vs float64 ({what}, {totals[f'{key}_shapes']} shapes): max abs torch {m['torch']:.2e}, "
                  f"fused {m['fused']:.2e}; fused closer on {totals[f'{key}_fused_closer']}")
    print(f"verdicts agree on every shape: {totals['verdicts_agree']} (SDPA passed {totals['sdpa_passed']}/"
          f"{len(rows)}, stale SDPA rejected {totals['stale_rejected']}/{len(rows)}); fused kernel: up to "
          f"{totals['max_regs']} registers, {totals['max_spills']} spilled; wall {totals['wall_s']:.0f} s")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "reference_check.json"
    path.write_text(json.dumps({"env": env, "totals": totals, "shapes": rows,
                                "args": vars(args)}, indent=1))
    print(f"wrote {path}")
    return 0 if totals["verdicts_agree"] else 1


if __name__ == "__main__":
    sys.exit(main())
