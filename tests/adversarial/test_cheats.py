"""Every cheat comes back with the right status and a message that says why;
honest kernels pass. Where a cheat is visible in the source, both layers are
tested: the static check rejects it, and with static_checks=False the run-time
checks still do."""
from __future__ import annotations

import re

import pytest

from avo.harness import evaluate
from avo.harness.static_checks import check_source
from tests.adversarial.variants import SEED, variant


def judge(name_or_source: str, **kw):
    source = variant(name_or_source) if "\n" not in name_or_source else name_or_source
    kw.setdefault("device", "cpu")
    kw.setdefault("quick", True)
    return evaluate(source, **kw)


def assert_verdict(result, status: str, pattern: str):
    assert result.status == status, f"expected {status}, got {result.status}: {result.message}\n{result.log_tail[-1500:]}"
    assert re.search(pattern, result.message), f"message {result.message!r} does not match {pattern!r}"


# ------------------------------------------------------------------ honest
def test_seed_passes_full_evaluation():
    r = judge(SEED.read_text(), quick=False)
    assert_verdict(r, "ok", r"^$")
    assert r.checks and all(c.passed for c in r.checks)
    # every phase left a record; timed calls are verified too, and timed shapes again after timing
    assert {c.phase for c in r.checks} >= {"compile", "check", "timed/warm-up", "timed", "recheck", "recheck/timed"}
    assert r.timings and all(t.tflops > 0 for t in r.timings)


@pytest.mark.parametrize("name", ["honest_blocks", "honest_alloc"])
def test_honest_variants_pass(name):
    assert check_source(variant(name)) == []
    assert_verdict(judge(name), "ok", r"^$")


# ------------------------------------- cheats caught at run time (no static trace)
RUNTIME = [
    # name, status, message pattern
    ("ignore_causal", "incorrect", r"causal .*out of tolerance"),
    ("ignore_sm_scale", "incorrect", r"out of tolerance"),
    ("tail_unwritten", "incorrect", r"out of tolerance|NaN/Inf"),
    ("head_unwritten", "incorrect", r"out of tolerance|NaN/Inf"),
    ("bf16_inputs", "incorrect", r"fp16 .*out of tolerance"),
    ("bf16_p", "incorrect", r"fp16 .*out of tolerance"),
    ("nan_out", "incorrect", r"1 NaN/Inf elements"),
    ("inf_out", "incorrect", r"1 NaN/Inf elements"),
    ("mutate_input", "rejected", r"modified its input `v`"),
    # the judge redraws every input from its seed: writing into q shows as a modified input
    ("alias_input", "rejected", r"aliases an input buffer|modified its input `q`"),
    # every check shape is called twice on the same arena addresses with new values
    ("cache_by_address", "incorrect", r"refill|out of tolerance|output is .* expected"),
    ("cache_by_shape", "incorrect", r"refill|out of tolerance|output is .* expected"),
    ("replay_first", "incorrect", r"output is .* expected"),
    ("recursion", "crashed", r"RecursionError"),
    ("raise_later", "crashed", r"RuntimeError: candidate blew up"),
    ("system_exit", "crashed", r"SystemExit"),
    # the broadcast product needs a reduction (amax/sum): not on the aten allowlist
    ("torch_broadcast", "rejected", r"host-side torch compute|library compute.*aten::(amax|sum|max)"),
]


@pytest.mark.parametrize("name,status,pattern", RUNTIME, ids=[c[0] for c in RUNTIME])
def test_runtime_cheat_rejected(name, status, pattern):
    assert check_source(variant(name)) == [], "this cheat is meant to pass the static checks"
    assert_verdict(judge(name), status, pattern)


def test_good_until_timed_caught_by_recheck():
    """Correct for the check stage, garbage once timing starts: every timed call
    is verified now, so the timed batch itself catches it (full mode)."""
    r = judge("good_until_timed", quick=False)
    assert_verdict(r, "incorrect", r"\((timed|recheck)")
    assert any(c.phase == "check" and c.passed for c in r.checks)


# --------------------------------------- cheats visible in the source: both layers
BOTH = [
    # name, static message pattern, run-time status, run-time message pattern
    ("library_sdpa", r"scaled_dot_product_attention|functional|torch\.nn", "rejected",
     r"library compute.*aten::.*(attention|sdp|flash)"),
    ("torch_matmul_softmax", r"matmul", "rejected", r"library compute.*aten::(mm|bmm|matmul|_softmax|softmax)"),
    ("torch_cdist", r"cdist", "rejected", r"library compute.*aten::.*(cdist|euclidean)"),
]


@pytest.mark.parametrize("name,static_pat,status,pattern", BOTH, ids=[c[0] for c in BOTH])
def test_library_compute_rejected_by_both_layers(name, static_pat, status, pattern):
    assert_verdict(judge(name), "rejected", r"^static check, .*" + static_pat)
    assert_verdict(judge(name, static_checks=False), status, pattern)


def test_content_cache_gets_no_free_timing():
    """Correct everywhere (the fingerprint sees every refill), so it passes; but
    timing gives every call fresh values, so the cache never hits there. A hit
    costs ~0.1 ms; an honest interpreter call at S=128 costs ~100 ms."""
    r = judge("cache_by_content", quick=False)
    assert_verdict(r, "ok", r"^$")
    assert r.timings and min(t.ms for t in r.timings) > 5.0, [t.ms for t in r.timings]
