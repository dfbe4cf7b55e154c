"""The call protocol a problem declares (avo/problem.py), exercised in-process: the
judge's layout, late change, snapshot and verdicts for attention and RMSNorm, with
the runner's part played by the test. Milliseconds; the end-to-end runs are in
tests/adversarial/test_rmsnorm_cheats.py and tests/flows/test_rmsnorm_evolve.py."""
import math
import random

import pytest
import torch

from avo.harness import arena as arena_mod, calls
from avo.harness.calls import Verdict
from avo.harness.static_checks import SourceError, check_source
from avo.problem import REPO_ROOT, entry_inputs, entry_name, load_problem

ATTN = load_problem()
RMS = load_problem(REPO_ROOT / "kernel_src" / "rmsnorm" / "problem.py")
TEMPLATE = load_problem(REPO_ROOT / "kernel_src" / "_template" / "problem.py")


def test_attention_lays_out_as_before():
    for s in ATTN.check_shapes("cpu") + ATTN.SUITES["avo"][:3]:
        q = s.batch * s.heads_q * s.seqlen * s.head_dim * 2
        kv = s.batch * s.heads_kv * s.seqlen * s.head_dim * 2
        assert calls.call_bytes(s, ATTN) == 2 * arena_mod.align(q) + 2 * arena_mod.align(kv)
        assert calls.call_elements(s, ATTN) == (2 * q + 2 * kv) // 2
    assert entry_name(ATTN) == "attention" and entry_inputs(ATTN) == ["q", "k", "v"]
    assert entry_name(RMS) == "rmsnorm" and entry_inputs(RMS) == ["x", "w"]


def test_a_layout_must_name_the_entrys_inputs_in_order_and_one_output():
    class Bad:
        SIGNATURE = "f(a, b)"

        @staticmethod
        def buffers(shape):
            return [("b", (2,), "float16", "input"), ("a", (2,), "float16", "input"), ("o", (2,), "float16", "output")]

    with pytest.raises(ValueError, match="in the entry's order"):
        calls.layout(Bad, None)


def test_flat_index_is_the_slice_it_names():
    t = torch.arange(2 * 3 * 5 * 4).view(2, 3, 5, 4)
    idx = calls.flat_index((2, 3, 5, 4), 2, [1, 4], "cpu")
    assert torch.equal(t.reshape(-1)[idx], t.index_select(2, torch.tensor([1, 4])).reshape(-1))


LATE = [(RMS, RMS.Shape(3, 1)), (RMS, RMS.Shape(4, 2)), (RMS, RMS.Shape(5, 17, "float16")), (RMS, RMS.Shape(2, 8192)),
        (TEMPLATE, TEMPLATE.Shape(4, 2)), (TEMPLATE, TEMPLATE.Shape(3, 300, "float16")), (TEMPLATE, TEMPLATE.Shape(2, 4096))]


@pytest.mark.parametrize("problem,shape", LATE, ids=[f"{p.NAME} {s.name}" for p, s in LATE])
def test_the_late_change_moves_every_output_element(problem, shape):
    call = problem.draw_call(shape, random.Random(1), False, 0)
    name, dim, picks, factor = problem.late_change(shape, random.Random(2))
    assert math.frexp(factor)[0] == 0.5 and factor > 1  # a power of two: exact
    before = problem.inputs(shape, "cpu", 7, call)
    after = {k: v.clone() for k, v in before.items()}
    p = torch.tensor(picks)
    after[name].index_copy_(dim, p, after[name].index_select(dim, p) * factor)
    ref, tol = problem.expected(before, shape, call), problem.TOLERANCES[shape.dtype]
    moved = (problem.expected(after, shape, call) - ref).abs() > tol["atol"] + tol["rtol"] * ref.abs()
    # an output computed before the change fails the judge's compare on every row (but for
    # rows whose picked entries are both near zero: under 1% of rows, none in these draws);
    # all elements move by the row's factor, those near zero by less than the absolute tolerance
    assert bool(moved.any(dim=-1).all()), "a row whose precomputed output would still pass"
    assert float(moved.float().mean()) > 0.9 or shape.cols <= 2, float(moved.float().mean())


def test_rmsnorm_reference_is_the_textbook_formula():
    shape = RMS.Shape(5, 33, "float16")
    call = RMS.draw_call(shape, random.Random(3), True, 1)
    x, w = RMS.inputs(shape, "cpu", 11, call).values()
    eps = call["args"]["eps"]
    naive = torch.stack([xr.double() / torch.sqrt((xr.double() ** 2).sum() / 33 + eps) * w.double() for xr in x])
    ref = RMS.expected({"x": x, "w": w}, shape, call)
    assert torch.allclose(ref, naive, atol=1e-12)
    rows = torch.tensor([[4], [0]])
    assert torch.equal(RMS.expected_rows({"x": x, "w": w}, shape, call, rows), ref[[4, 0]])
    assert shape.flops() == 4 * 5 * 33 and shape.bytes() == 2 * (2 * 5 * 33 + 33)


def test_the_static_check_asks_for_the_problems_entry():
    with pytest.raises(SourceError, match=r"no top-level function `rmsnorm\(x, w, eps=1e-6\)`"):
        check_source("import torch\ndef attention(q, k, v):\n    return q\n", RMS)
    with pytest.raises(SourceError, match=r"`rmsnorm` must take \(x, w, eps=1e-6\)"):
        check_source("import torch\ndef rmsnorm(a, b):\n    return a\n", RMS)
    seed = (REPO_ROOT / "kernel_src" / "rmsnorm" / "seeds" / "rowwise.py").read_text()
    assert check_source(seed, RMS) == []
    assert any("rms_norm" in str(v) for v in check_source(seed + "\ny = torch.rms_norm\n", RMS))


# ------------------------------------------------- the judge's guards, runner played here
def _batch(problem, shape, n=2, seed=5):
    batch = calls.plan(shape, n, random.Random(seed), "check", full=True, vary_scale=True)
    arena = arena_mod.create_cpu(arena_mod.align(calls.call_bytes(shape, problem) * n))
    calls.stage(batch, arena, problem, "cpu")
    return batch, arena


def _run(batch, arena, problem, honest=True):
    """What an honest runner does: read its inputs from the arena, write the output."""
    for c in batch.calls:
        ins = {name: calls.view(arena, batch, c, name) for name, _, _, role in batch.buffers if role == "input"}
        out_name = [b[0] for b in batch.buffers if b[3] == "output"][0]
        calls.view(arena, batch, c, out_name).copy_(problem.expected(ins, batch.shape, c.params))


def _verdict(batch, arena, problem):
    calls.take_snapshot(batch, arena, "cpu")
    calls.verify(batch, arena, problem, "cpu", lambda *a: None)


@pytest.mark.parametrize("problem,shape", [(RMS, RMS.Shape(6, 40, "float16")),
                                           (ATTN, ATTN.Shape(1, 2, 1, 17, 64, True, "float16")),
                                           (TEMPLATE, TEMPLATE.Shape(5, 33, "bfloat16"))],
                         ids=["rmsnorm", "attention", "template"])
def test_guards_accept_the_right_output_and_reject_the_rest(problem, shape):
    batch, arena = _batch(problem, shape)
    messages = batch.messages()
    assert len(messages) == 2 and [len(m["inputs"]) for m in messages] == [len(entry_inputs(problem))] * 2
    calls.late_bind(batch, arena, "cpu")
    _run(batch, arena, problem)
    _verdict(batch, arena, problem)  # passes

    # an output computed before the late change (a precomputation) is wrong
    batch, arena = _batch(problem, shape)
    _run(batch, arena, problem)
    calls.late_bind(batch, arena, "cpu")
    with pytest.raises(Verdict, match="out of tolerance"):
        _verdict(batch, arena, problem)

    # a modified input is seen bit for bit
    batch, arena = _batch(problem, shape)
    calls.late_bind(batch, arena, "cpu")
    _run(batch, arena, problem)
    first = entry_inputs(problem)[-1]
    calls.view(arena, batch, batch.calls[1], first).reshape(-1)[0] += 1
    with pytest.raises(Verdict, match=f"modified its input `{first}`"):
        _verdict(batch, arena, problem)

    # rows written after `done` differ from the snapshot; rows never written are NaN
    batch, arena = _batch(problem, shape)
    calls.late_bind(batch, arena, "cpu")
    calls.take_snapshot(batch, arena, "cpu")
    _run(batch, arena, problem)
    with pytest.raises(Verdict, match="still unwritten"):
        calls.verify(batch, arena, problem, "cpu", lambda *a: None)


@pytest.mark.parametrize("problem,arg", [(ATTN, "sm_scale"), (RMS, "eps")], ids=["attention", "rmsnorm"])
def test_every_check_batch_exercises_both_values_of_an_argument_a_kernel_might_ignore(problem, arg):
    """A kernel that ignores sm_scale (or eps) must fail the check stage for every judge
    seed: both values in every check batch of 2 calls, not left to the luck of a draw."""
    shapes = problem.check_shapes("cpu")
    for seed in range(50):
        rng = random.Random(seed)
        for shape in shapes:
            batch = calls.plan(shape, 2, rng, "check", full=True, vary_scale=True)
            arena = arena_mod.create_cpu(arena_mod.align(calls.call_bytes(shape, problem) * 2))
            calls.stage(batch, arena, problem, "cpu")
            if problem is ATTN:
                assert {c.params["args"][arg] for c in batch.calls} == {None, 0.7 / math.sqrt(shape.head_dim)}
                assert {c.params["amplitude"] for c in batch.calls} == {1.0, 3.0}
            else:  # eps in proportion to the call's mean(x^2): both factors, 1 and 0.1
                assert sorted(c.params["args"][arg] / c.params["amplitude"] ** 2 for c in batch.calls) \
                    == pytest.approx([0.1, 1.0])


def test_a_batchs_verdict_is_its_first_failing_call_and_that_calls_first_failure():
    """verify() measures every call before it reads any verdict: the message must still be
    the one a call-by-call check gives (the first call that fails; within it, a modified
    input before a wrong output), and the records must be the same."""
    shape = ATTN.Shape(1, 2, 1, 17, 64, True, "float16")

    def tampered(wrong_call: int, modified_call: int):
        batch, arena = _batch(ATTN, shape, n=3)
        calls.late_bind(batch, arena, "cpu")
        _run(batch, arena, ATTN)
        calls.take_snapshot(batch, arena, "cpu")
        for j in wrong_call:  # the whole output off by 1: wrong in the snapshot and the final buffer
            calls.view(arena, batch, batch.calls[j], "out").add_(1)
            batch.snapshot.view(3, -1)[j].add_(1)
        for j in modified_call:
            calls.view(arena, batch, batch.calls[j], "k").reshape(-1)[0] += 1
        records = []
        with pytest.raises(Verdict) as verdict:
            calls.verify(batch, arena, ATTN, "cpu", lambda *a: records.append(a))
        return verdict.value, records, batch

    v, records, batch = tampered(wrong_call=[1], modified_call=[2])
    assert v.status == "incorrect" and "call 2 of 3" in v.message and "out of tolerance" in v.message
    # one record, of the failing call: (shape, seed, phase, max_abs, rel, ok, reason)
    assert [(r[1], r[5]) for r in records] == [(batch.calls[1].seed, False)]
    v, records, _ = tampered(wrong_call=[2], modified_call=[1])
    assert v.status == "rejected" and "modified its input `k`" in v.message and records == []
    v, _, _ = tampered(wrong_call=[0], modified_call=[0])  # one call, both: the input first
    assert v.status == "rejected" and "modified its input `k`" in v.message


@pytest.mark.parametrize("shape", [ATTN.Shape(1, 4, 4, 512, 128, False, "bfloat16"),
                                   ATTN.Shape(1, 4, 2, 700, 128, True, "bfloat16"),
                                   ATTN.Shape(2, 2, 1, 300, 64, False, "float16")], ids=lambda s: s.name)
def test_attentions_late_change_moves_every_key_and_most_rows(shape):
    """The class: a kernel that computed the output from the staged inputs before the clock
    (a thread watching the buffers) must not be able to patch it for less than the whole
    attention. It could when the change was 2 key positions (a rank-2 fix-up of each row's
    softmax, O(S·D)). Now every key of every (batch, KV head) changes, so every score does,
    and an output computed before is out of tolerance on most rows."""
    for seed in range(3):
        q, k, v = ATTN.make_inputs(shape, "cpu", seed)
        name, dim, picks, factor = ATTN.late_change(shape, random.Random(seed))
        assert name == "k" and math.frexp(factor)[0] == 0.5 and factor > 1
        after = k.clone()
        idx = torch.tensor(picks)
        after.index_copy_(dim, idx, after.index_select(dim, idx) * factor)
        assert bool((after != k).any(dim=-1).all()), "a key the late change leaves as it was"
        before, now = ATTN.reference(q, k, v, shape.causal), ATTN.reference(q, after, v, shape.causal)
        tol = ATTN.TOLERANCES[shape.dtype]
        moved = ((before - now).abs() > tol["atol"] + tol["rtol"] * now.abs()).any(dim=-1)
        assert float(moved.float().mean()) > 0.6, float(moved.float().mean())
