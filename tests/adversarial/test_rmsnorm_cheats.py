"""The second problem's guards: cheating RMSNorm kernels of our own are rejected with
the right status and a message that says why; honest ones pass. The guards are the
judge's, the same for every problem (avo/harness/calls.py): fresh inputs per call,
inputs compared bit for bit afterwards, a late-bound change inside the clock, NaN
poison, sampled rows snapshotted right after `done`, full compares on check shapes."""
from __future__ import annotations

import re

import pytest

from avo.harness import evaluate
from avo.harness import static_checks
from avo.problem import REPO_ROOT, load_problem

PROBLEM = REPO_ROOT / "kernel_src" / "rmsnorm" / "problem.py"
SEED = (REPO_ROOT / "kernel_src" / "rmsnorm" / "seeds" / "rowwise.py").read_text()
HONEST_DEF = "def rmsnorm(x, w, eps=1e-6):"
WRAP = (HONEST_DEF, "def _honest(x, w, eps=1e-6):")
RETURN = "num_warps=NUM_WARPS)\n    return y"
GRID = "[(triton.cdiv(M, BLOCK_M),)]"

# name -> (what it cheats, [(old, new), ...], text appended at the end)
VARIANTS = {
    "honest_tiles": ("honest: 4 rows per program, 64-column steps, one pass when the row fits",
                     [("BLOCK_M = 1 ", "BLOCK_M = 4 "), ("BLOCK_N = 1024", "BLOCK_N = 64"),
                      ("ONE_PASS = False", "ONE_PASS = True")], ""),
    "cache_by_shape": ("returns the output cached from an earlier call of the same shape", [WRAP], '''
_CACHE = {}


def rmsnorm(x, w, eps=1e-6):
    key = (tuple(x.shape), x.dtype, eps)
    if key not in _CACHE:
        _CACHE[key] = _honest(x, w, eps)
    return _CACHE[key].clone()
'''),
    "cache_by_address": ("returns the output cached under the inputs' addresses", [WRAP], '''
_CACHE = {}


def rmsnorm(x, w, eps=1e-6):
    key = (x.data_ptr(), w.data_ptr(), tuple(x.shape), x.dtype, eps)
    if key not in _CACHE:
        _CACHE[key] = _honest(x, w, eps)
    return _CACHE[key].clone()
'''),
    "mutate_x": ("scribbles on its input x after computing", [(RETURN, "num_warps=NUM_WARPS)\n    x[0, 0] = 0.0\n"
                                                                      "    return y")], ""),
    "mutate_w": ("normalises in place: w is scaled by 2 for its own use and left so",
                 [("    y = torch.empty_like(x)\n", "    w.mul_(2.0)\n    y = torch.empty_like(x)\n"),
                  (RETURN, "num_warps=NUM_WARPS)\n    return y * 0.5")], ""),
    "bf16_inputs": ("silently rounds fp16 x and w through bf16 (a lower precision) before the kernel",
                    [("    M, N = x.shape\n", "    M, N = x.shape\n    x, w = (t.to(torch.bfloat16).to(t.dtype) "
                                               "for t in (x, w))\n")], ""),
    "lazy_last_row": ("launches one program too few: the last row is never written",
                      [(GRID, "[(triton.cdiv(M, BLOCK_M) - (M > 4),)]")], ""),
    "lazy_when_timed": ("honest on the small check shapes, skips every fourth row on the timed ones",
                        [(GRID, "[(triton.cdiv(M, BLOCK_M),)]"),
                         ("    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)\n",
                          "    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)\n"
                          "    if (M >= 10) & (N >= 192) & (tl.program_id(0) % 4 == 3):\n        return\n")], ""),
    "ignore_eps": ("ignores eps (always 1e-6)", [("x.stride(0), y.stride(0), eps,", "x.stride(0), y.stride(0), 1e-6,")],
                   ""),
    "torch_rms_norm": ("calls PyTorch's own RMSNorm instead of its kernel", [WRAP], '''

def rmsnorm(x, w, eps=1e-6):
    return torch.rms_norm(x, (x.shape[-1],), w, eps)
'''),
}


def check_source(source: str):
    return static_checks.check_source(source, load_problem(PROBLEM))


def variant(name: str) -> str:
    _, subs, tail = VARIANTS[name]
    source = SEED
    for old, new in subs:
        assert old in source, f"{name}: the seed no longer contains {old!r}"
        source = source.replace(old, new)
    return source + tail


def judge(source: str, **kw):
    kw.setdefault("device", "cpu")
    kw.setdefault("quick", True)
    return evaluate(source, problem_path=PROBLEM, **kw)


def assert_verdict(result, status: str, pattern: str):
    assert result.status == status, f"expected {status}, got {result.status}: {result.message}\n" \
                                    f"{result.log_tail[-1500:]}"
    assert re.search(pattern, result.message), f"message {result.message!r} does not match {pattern!r}"


def test_the_seed_passes_a_full_evaluation():
    r = judge(SEED, quick=False)
    assert_verdict(r, "ok", r"^$")
    assert {c.phase for c in r.checks} >= {"compile", "check", "timed/warm-up", "timed", "recheck", "recheck/timed"}
    assert all(c.passed for c in r.checks) and r.timings and r.heldout
    assert all(t.tflops > 0 for t in r.timings)


def test_an_honest_variant_passes():
    assert check_source(variant("honest_tiles")) == []
    assert_verdict(judge(variant("honest_tiles")), "ok", r"^$")


RUNTIME = [
    # name, status, message pattern
    ("mutate_x", "rejected", r"modified its input `x`"),
    ("mutate_w", "rejected", r"modified its input `w`"),
    ("bf16_inputs", "incorrect", r"fp16 .*out of tolerance"),
    ("lazy_last_row", "incorrect", r"out of tolerance|NaN/Inf"),
    ("ignore_eps", "incorrect", r"out of tolerance"),
]


@pytest.mark.parametrize("name,status,pattern", RUNTIME, ids=[c[0] for c in RUNTIME])
def test_a_cheating_kernel_is_caught_at_run_time(name, status, pattern):
    assert check_source(variant(name)) == [], "this cheat is meant to pass the static checks"
    assert_verdict(judge(variant(name)), status, pattern)


@pytest.mark.parametrize("name", ["cache_by_shape", "cache_by_address"])
def test_a_replay_is_caught_once_calls_repeat(name):
    """Check calls vary eps with x's scale and each has its own buffers, so a replay keyed
    on (shape, dtype, eps) or on addresses may first hit in the timed batches, where eps
    is fixed: it is wrong there, on fresh values (a quick evaluation may not see it)."""
    assert check_source(variant(name)) == []
    assert_verdict(judge(variant(name), quick=False), "incorrect", r"\((check|timed).*out of tolerance")


def test_laziness_that_starts_with_the_timed_shapes_is_caught_in_a_timed_batch():
    """Right on every check shape; on the timed shapes a quarter of the rows are left
    unwritten: the sampled rows of the timed calls (or the full recheck) see it."""
    r = judge(variant("lazy_when_timed"), quick=False)
    assert_verdict(r, "incorrect", r"\((timed|recheck)")
    assert all(c.passed for c in r.checks if c.phase in ("compile", "check"))


def test_library_rms_norm_is_rejected_statically_and_at_run_time():
    source = variant("torch_rms_norm")
    assert any("rms_norm" in str(v) for v in check_source(source))
    assert_verdict(judge(source), "rejected", r"static check")
    assert_verdict(judge(source, static_checks=False), "rejected", r"library compute")
