"""The judge's per-call verification, vectorised: attention's reference_rows (batched
over the sampled rows) against the straightforward per-row loop it replaced, and
calls.compare (one host transfer) against the per-statistic version it replaced."""
import math

import pytest
import torch

from avo.harness import calls
from avo.problem import load_problem

P = load_problem()


def _rows_loop(q, k, v, causal, sm_scale, rows):
    """The old reference_rows: one row at a time against all S keys."""
    precision = torch.float64 if q.device.type == "cpu" else torch.float32
    d = q.shape[-1]
    scale = sm_scale if sm_scale is not None else 1.0 / math.sqrt(d)
    group = q.shape[1] // k.shape[1]
    b, h, i = rows[:, 0], rows[:, 1], rows[:, 2]
    qr = q[b, h, i].to(precision)
    out = torch.empty(qr.shape, dtype=precision, device=q.device)
    for r in range(rows.shape[0]):
        kr = k[b[r], h[r] // group].to(precision)
        vr = v[b[r], h[r] // group].to(precision)
        scores = (kr @ qr[r]) * scale
        if causal:
            scores[int(i[r]) + 1:] = float("-inf")
        out[r] = torch.softmax(scores, dim=0) @ vr
    return out


def _rows(shape, n, seed):
    g = torch.Generator().manual_seed(seed)
    rows = torch.stack([torch.randint(0, shape.batch, (n,), generator=g),
                        torch.randint(0, shape.heads_q, (n,), generator=g),
                        torch.randint(0, shape.seqlen, (n,), generator=g)], dim=1)
    # always the first and the last query position (causal: one key, and every key)
    edge = torch.tensor([[0, 0, 0], [shape.batch - 1, shape.heads_q - 1, shape.seqlen - 1],
                         [0, shape.heads_q - 1, 0], [shape.batch - 1, 0, shape.seqlen - 1]])
    return torch.cat([edge, rows])


SHAPES = [P.Shape(2, 4, 4, 33, 64, False, "float16"), P.Shape(2, 4, 4, 33, 64, True, "float16"),  # MHA
          P.Shape(1, 8, 2, 70, 128, False, "bfloat16"), P.Shape(2, 8, 2, 70, 128, True, "bfloat16"),  # GQA 4
          P.Shape(1, 8, 1, 17, 64, True, "float16"), P.Shape(1, 2, 2, 1, 64, True, "bfloat16")]  # GQA 8, S=1


@pytest.mark.parametrize("sm_scale", [None, 0.7 / math.sqrt(64)], ids=["default-scale", "sm_scale"])
@pytest.mark.parametrize("shape", SHAPES, ids=[s.name for s in SHAPES])
def test_reference_rows_matches_the_per_row_loop(shape, sm_scale):
    q, k, v = P.make_inputs(shape, "cpu", 11, amplitude=3.0)
    rows = _rows(shape, 24, 5)
    new = P.reference_rows(q, k, v, shape.causal, sm_scale, rows)
    old = _rows_loop(q, k, v, shape.causal, sm_scale, rows)
    assert new.dtype == torch.float64 and new.shape == old.shape
    assert torch.allclose(new, old, rtol=1e-12, atol=1e-14), float((new - old).abs().max())
    # and both are the full reference's rows
    full = P.reference(q, k, v, shape.causal, sm_scale)
    assert torch.allclose(new, full[tuple(rows.t())], rtol=1e-12, atol=1e-14)


def test_reference_rows_chunks_over_rows_the_same(monkeypatch):
    """Past its budget of elements (2^28 on a GPU, 2^18 on the CPU) it works a few rows at a
    time: same result."""
    shape = P.Shape(1, 4, 2, 40, 64, True, "float16")
    q, k, v = P.make_inputs(shape, "cpu", 3)
    rows = _rows(shape, 24, 1)
    whole = P.reference_rows(q, k, v, True, None, rows)
    def small_chunks(*a):  # rows per chunk is max(1, ...): force chunks of one row
        return 1 if len(a) == 2 and a[0] == 1 else max(*a)

    monkeypatch.setattr(P, "max", small_chunks, raising=False)  # the module's global shadows the builtin
    chunked = P.reference_rows(q, k, v, True, None, rows)
    monkeypatch.undo()
    assert torch.allclose(whole, chunked, rtol=1e-12, atol=1e-14)
    assert torch.allclose(whole, _rows_loop(q, k, v, True, None, rows), rtol=1e-12, atol=1e-14)


def test_reference_rows_keeps_tf32_off_and_restores_it():
    shape = P.Shape(1, 2, 2, 9, 64, False, "float16")
    q, k, v = P.make_inputs(shape, "cpu", 3)
    prev = torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = True
        P.reference_rows(q, k, v, False, None, torch.tensor([[0, 1, 4]]))
        assert torch.backends.cuda.matmul.allow_tf32 is True
    finally:
        torch.backends.cuda.matmul.allow_tf32 = prev


# ----------------------------------------------------------------------- compare
def _compare_old(out, ref, tol):
    o = out.to(ref.dtype)
    finite = torch.isfinite(o)
    if not bool(finite.all()):
        return math.inf, math.inf, f"{int((~finite).sum())} NaN/Inf elements in the output"
    diff = (o - ref).abs()
    max_abs = float(diff.max()) if diff.numel() else 0.0
    rel = float(diff.norm() / ref.norm().clamp_min(1e-30))
    n_bad = int((diff > tol["atol"] + tol["rtol"] * ref.abs()).sum())
    if n_bad or rel > tol["rel"]:
        return max_abs, rel, f"{n_bad} of {diff.numel()} elements out of tolerance, rel err {rel:.2e}"
    return max_abs, rel, ""


def _cases():
    g = torch.Generator().manual_seed(0)
    for ref_dtype in (torch.float64, torch.float32):
        for out_dtype in (torch.bfloat16, torch.float16):
            ref = torch.randn(24, 128, generator=g, dtype=torch.float64).to(ref_dtype)
            tol = P.TOLERANCES["bfloat16" if out_dtype == torch.bfloat16 else "float16"]
            ok = ref.to(out_dtype)
            yield "ok", ok, ref, tol
            few = ok.clone()
            few[3, :5] += 1
            yield "a few bad", few, ref, tol
            drift = (ref * (1 + 3 * tol["rel"])).to(out_dtype)  # every element a little off: rel fails
            yield "drift", drift, ref, tol
            nan = ok.clone()
            nan[0, 0], nan[5, 7], nan[6, 1] = float("nan"), float("inf"), float("-inf")
            yield "nan", nan, ref, tol
            poison = torch.full_like(ok, float("nan"))
            yield "poison", poison, ref, tol
            yield "empty", ok[:0], ref[:0], tol
            yield "zero ref", torch.zeros_like(ok), torch.zeros_like(ref), tol


CASES = list(_cases())


@pytest.mark.parametrize("case", range(len(CASES)), ids=[f"{c[0]}-{c[2].dtype}-{c[1].dtype}-{i}"
                                                         for i, c in enumerate(CASES)])
def test_compare_is_the_old_compare(case):
    _, out, ref, tol = CASES[case]
    assert calls.compare(out, ref, tol) == _compare_old(out, ref, tol)


def test_compare_reasons():
    ref = torch.ones(4, 8, dtype=torch.float64)
    tol = P.TOLERANCES["float16"]
    out = ref.to(torch.float16)
    assert calls.compare(out, ref, tol) == (0.0, 0.0, "")
    out[1, 2], out[3, 3] = float("nan"), float("inf")
    assert calls.compare(out, ref, tol) == (math.inf, math.inf, "2 NaN/Inf elements in the output")
    out = ref.to(torch.float16)
    out[0, :3] = 2
    max_abs, rel, reason = calls.compare(out, ref, tol)
    assert max_abs == 1.0 and reason == f"3 of 32 elements out of tolerance, rel err {rel:.2e}"


def test_compare_counts_exactly_past_float32s_integers():
    """A float32 reference of more than 2^24 elements: the counts still come back exact."""
    n = (1 << 24) + 3
    ref = torch.ones(n, dtype=torch.float32)
    out = torch.full((n,), float("nan"), dtype=torch.float16)
    assert calls.compare(out, ref, P.TOLERANCES["float16"]) == (math.inf, math.inf, f"{n} NaN/Inf elements in the output")
    out = torch.full((n,), 2.0, dtype=torch.float16)
    out[:2] = 1
    assert calls.compare(out, ref, P.TOLERANCES["float16"])[2].startswith(f"{n - 2} of {n} elements out of tolerance")
