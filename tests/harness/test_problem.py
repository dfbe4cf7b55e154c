"""The problem definition: suites, FLOPs, shapes and the reference itself."""
import math

import pytest
import torch

from avo.problem import load_problem

P = load_problem()


def test_avo_suite_is_the_papers():
    mha, gqa = P.SUITES["mha"], P.SUITES["gqa"]
    assert len(mha) == 8 and len(gqa) == 16
    for s in mha + gqa:
        assert s.head_dim == 128 and s.batch * s.seqlen == 32 * 1024 and s.dtype == "bfloat16"
    assert {s.seqlen for s in mha} == {4096, 8192, 16384, 32768}
    assert {(s.heads_q, s.heads_kv) for s in gqa} == {(32, 8), (32, 4)}
    assert {s.causal for s in mha} == {True, False}
    assert P.SUITES["avo"] == mha + gqa


def test_flops_formula_halves_for_causal():
    full = P.Shape(2, 16, 16, 4096, 128, False)
    assert full.flops() == 4 * 2 * 16 * 4096**2 * 128
    assert P.Shape(2, 16, 16, 4096, 128, True).flops() == full.flops() / 2


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_check_shapes_cover_the_contract(device):
    shapes = P.check_shapes(device)
    assert {s.dtype for s in shapes} == {"bfloat16", "float16"}
    assert {s.head_dim for s in shapes} == {64, 128}
    assert {s.causal for s in shapes} == {True, False}
    assert {s.heads_q // s.heads_kv for s in shapes} >= {1, 2, 4, 8}
    assert any(s.seqlen == 1 for s in shapes)
    assert any(s.seqlen % 2 == 1 and s.seqlen > 16 for s in shapes)  # odd, not a block multiple
    for s in shapes:
        P.validate(s)


def test_validate_rejects_shapes_outside_the_contract():
    with pytest.raises(ValueError, match="head_dim"):
        P.validate(P.Shape(1, 2, 2, 16, 96, False))
    with pytest.raises(ValueError, match="multiple"):
        P.validate(P.Shape(1, 6, 4, 16, 64, False))


def test_inputs_are_random_reproducible_and_never_zero():
    shape = P.Shape(1, 4, 2, 33, 64, True, "float16")
    q1, k1, v1 = P.make_inputs(shape, "cpu", seed=7)
    q2, _, _ = P.make_inputs(shape, "cpu", seed=7)
    q3, _, _ = P.make_inputs(shape, "cpu", seed=8)
    assert torch.equal(q1, q2) and not torch.equal(q1, q3)
    assert q1.shape == (1, 4, 33, 64) and k1.shape == (1, 2, 33, 64)
    assert (q1 != 0).float().mean() > 0.99 and v1.abs().mean() > 0.5


def test_refill_changes_values_in_place():
    shape = P.Shape(1, 2, 2, 16, 64, False, "float16")
    q, k, v = P.make_inputs(shape, "cpu", seed=1)
    ptr, old = q.data_ptr(), q.clone()
    P.refill_(q, k, v, seed=2)
    assert q.data_ptr() == ptr and not torch.equal(q, old)


def naive_attention(q, k, v, causal, scale):
    """Textbook attention in float64, one head at a time."""
    b, hq, s, d = q.shape
    out = torch.empty(q.shape, dtype=torch.float64)
    g = hq // k.shape[1]
    for bi in range(b):
        for h in range(hq):
            qq, kk, vv = q[bi, h].double(), k[bi, h // g].double(), v[bi, h // g].double()
            sc = qq @ kk.T * scale
            if causal:
                sc = sc.masked_fill(torch.ones(s, s).triu(1).bool(), -math.inf)
            out[bi, h] = torch.softmax(sc, -1) @ vv
    return out


@pytest.mark.parametrize("causal", [False, True])
def test_reference_matches_textbook_attention_including_gqa_and_chunking(causal, monkeypatch):
    shape = P.Shape(2, 4, 2, 37, 64, causal, "float16")
    q, k, v = P.make_inputs(shape, "cpu", seed=3, amplitude=2.0)
    want = naive_attention(q, k, v, causal, 0.3)
    got = P.reference(q, k, v, causal, 0.3)
    assert torch.allclose(got, want, atol=1e-10)
    # the default scale is 1/sqrt(D)
    assert torch.allclose(P.reference(q, k, v, causal), naive_attention(q, k, v, causal, 1 / 8), atol=1e-10)


def test_compile_shapes_compile_as_the_shapes_they_stand_for():
    """The judge compiles these outside its GPU lock, so they must hit the binaries the
    timed shapes use: Triton specialises an integer argument on being 1 and on
    divisibility by 16, so each integer a kernel may pass (batch, heads, group, length,
    the length's tile count and remainder for tiles of 16..256 rows) must be in the same
    class as in some shape it stands for; and they must be small (GPU work outside the lock)."""
    from avo.problem import load_problem

    p = load_problem("kernel_src/attention/problem.py")

    def cls(x):
        return "1" if x == 1 else "16" if x % 16 == 0 else "-"

    def key(s):
        tiles = tuple((cls(-(-s.seqlen // t)), s.seqlen % t == 0) for t in (16, 32, 64, 128, 256))
        return (s.dtype, s.head_dim, s.causal, cls(s.batch), cls(s.heads_q), cls(s.heads_kv),
                cls(s.heads_q // s.heads_kv), cls(s.seqlen), tiles)

    for shapes in (p.SUITES["avo"], p.held_out_pool("cuda"), p.check_shapes("cuda"),
                   p.check_shapes("cpu") + p.SUITES["cpu"]):
        small = p.compile_shapes(shapes)
        assert {key(s) for s in small} == {key(s) for s in shapes}
        assert len(small) == len({key(s) for s in small})  # one call per binary
        assert all(s.batch <= 2 and s.heads_q <= 32 and s.seqlen <= 4096 for s in small)
        for s in shapes:  # never larger than what it stands for
            twin = next(t for t in small if key(t) == key(s))
            assert twin.flops() <= s.flops()
    # the AVO suite's 24 shapes: 8 binaries (causal x batch 1 or not x MHA or GQA), each one
    # tile count class: S=4096 (4096 / 256 = 16 tiles), not S=128 (one tile: a binary of its own)
    avo = p.compile_shapes(p.SUITES["avo"])
    assert len(avo) == 8 and {s.seqlen for s in avo} == {4096}


