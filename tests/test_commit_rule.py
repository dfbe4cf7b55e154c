"""The commit rule, including the noise margin. Pure functions: milliseconds."""
import math

import pytest

from avo.commit_rule import margin_from_spread, should_commit
from tests.fake_results import make_result


def test_first_correct_version_commits():
    ok, reason = should_commit(make_result(), None, 0.01)
    assert ok and "first" in reason


@pytest.mark.parametrize("status", ["compile_error", "incorrect", "timeout", "crashed", "rejected"])
def test_any_failure_status_never_commits_however_fast(status):
    ok, reason = should_commit(make_result((1e6, 1e6), status=status, message="boom"), 1.0, 0.0)
    assert not ok and status in reason and "boom" in reason


def test_margin_is_applied_to_the_best():
    best = 100.0
    # geomean of (101, 101) = 101: beats best, but not best * 1.02
    assert should_commit(make_result((101.0, 101.0)), best, 0.0)[0]
    assert not should_commit(make_result((101.0, 101.0)), best, 0.02)[0]
    assert should_commit(make_result((102.0, 102.0)), best, 0.02)[0]  # exactly at threshold


def test_equal_speed_commits_only_with_zero_margin():
    assert should_commit(make_result((100.0, 100.0)), 100.0, 0.0)[0]  # AVO: "matches or beats"
    ok, reason = should_commit(make_result((100.0, 100.0)), 100.0, 0.01)
    assert not ok and "<" in reason and "101" in reason


def test_slower_never_commits():
    assert not should_commit(make_result((50.0, 50.0)), 100.0, 0.0)[0]


def test_no_timings_or_zero_geomean_do_not_commit():
    r = make_result()
    r.timings = []
    assert should_commit(r, None, 0.01) == (False, "no timed configurations")
    assert not should_commit(make_result((0.0, 10.0)), None, 0.01)[0]


@pytest.mark.parametrize("bad", [-0.01, math.nan, math.inf])
def test_bad_margin_is_a_programming_error(bad):
    with pytest.raises(ValueError):
        should_commit(make_result(), 1.0, bad)


def test_margin_from_spread():
    assert margin_from_spread([99.0, 100.0, 101.0]) == pytest.approx(0.02)
    assert margin_from_spread([100.0, 100.0], floor=0.005) == 0.005
    with pytest.raises(ValueError):
        margin_from_spread([100.0])


# ------------------------------------------------------------- noise-aware commits (issue 13)
from avo.commit_rule import Best, Rule, commit_margin, decide  # noqa: E402


def confirmed(result, ratio, spread, best_version=0, rounds=3):
    result.confirm = {"best_version": best_version, "best_sha256": "", "rounds": rounds, "configs": ["c"],
                      "ratio": ratio, "spread": spread, "candidate_ms": [], "best_ms": []}
    return result


def cpu(model=None, tflops=(1e-4, 1e-4)):
    r = make_result(tflops, device="cpu", gpu=None, suite="cpu", interpreter=True)
    r.model = {} if model is None else {"modelled_tflops": model, "model": "m/1"}
    return r


GPU_RULE = Rule(margin=0.01, require_confirm=True)
GPU_BEST = Best(0, 100.0)


def test_a_result_the_cascade_stopped_never_commits_however_fast():
    r = confirmed(make_result((500.0, 500.0)), 5.0, 0.0)
    r.cascade = {"stage": "screen", "stopped": "screened out: screen geomean 90 < gate 97 TFLOPS"}
    ok, why = decide(r, GPU_BEST, GPU_RULE)
    assert not ok and why.startswith("stopped at the screen stage") and "screened out" in why
    assert not decide(r, None, GPU_RULE)[0]  # not even as the first comparable version


def test_gpu_commit_needs_the_geomean_and_the_confirmation():
    ok, why = decide(confirmed(make_result((110.0, 110.0)), 1.05, 0.004), GPU_BEST, GPU_RULE)
    assert ok and why.startswith("basis confirm: 1.05x v0 over 3 interleaved rounds") and "floor" in why
    # the suite geomean says faster but the interleaved re-measure does not: no commit
    ok, why = decide(confirmed(make_result((110.0, 110.0)), 1.004, 0.003), GPU_BEST, GPU_RULE)
    assert not ok and "1.004x" in why and "<" in why
    # the re-measure says faster but the suite geomean does not clear the floor: no commit
    ok, why = decide(confirmed(make_result((100.5, 100.5)), 1.2, 0.0), GPU_BEST, GPU_RULE)
    assert not ok and why.startswith("basis geomean")


def test_the_margin_comes_from_the_measured_spread_when_it_beats_the_floor():
    noisy = confirmed(make_result((110.0, 110.0)), 1.03, 0.04)  # 3% faster, but the same kernel wandered 4%
    ok, why = decide(noisy, GPU_BEST, GPU_RULE)
    assert not ok and "margin from spread" in why and "0.04" in why
    assert commit_margin(noisy, GPU_RULE) == 0.04
    calm = confirmed(make_result((110.0, 110.0)), 1.03, 0.02)
    assert decide(calm, GPU_BEST, GPU_RULE)[0] and commit_margin(calm, GPU_RULE) == 0.02
    quiet = confirmed(make_result((110.0, 110.0)), 1.005, 0.001)  # spread under the floor: the floor holds
    ok, why = decide(quiet, GPU_BEST, GPU_RULE)
    assert not ok and "margin floor" in why and commit_margin(quiet, GPU_RULE) == 0.01


def test_a_gpu_result_without_a_confirmation_commits_only_when_none_is_required():
    r = make_result((120.0, 120.0))
    ok, why = decide(r, GPU_BEST, GPU_RULE)
    assert not ok and "no confirmation re-measure" in why and "require_confirm_cuda" in why
    ok, why = decide(r, GPU_BEST, Rule(margin=0.01, require_confirm=False))
    assert ok and why.startswith("basis geomean")
    assert decide(r, None, GPU_RULE)[0]  # the first comparable version has nothing to confirm against


def test_a_confirmation_against_another_version_than_the_best_does_not_count():
    r = confirmed(make_result((120.0, 120.0)), 1.2, 0.0, best_version=3)
    ok, why = decide(r, Best(4, 100.0), GPU_RULE)
    assert not ok and "v3" in why and "v4" in why
    r.confirm["best_version"], r.confirm["best_sha256"] = 4, "aaa"
    assert not decide(r, Best(4, 100.0, sha256="bbb"), GPU_RULE)[0]
    assert decide(r, Best(4, 100.0, sha256="aaa"), GPU_RULE)[0]


def test_cpu_commits_on_the_model_never_on_interpreter_timings():
    best = Best(0, 1e-4, model={"modelled_tflops": 400.0, "model": "m/1"})
    ok, why = decide(cpu(412.3), best, Rule(model_margin=0.01))
    assert ok and why.startswith("basis model: 412.3 >= 400 (v0) x 1.01") and "informational" in why
    assert not decide(cpu(403.0), best, Rule(model_margin=0.01))[0]  # inside the margin
    # the old 2.2x case: NUM_STAGES=1 looked 2.2x faster on the interpreter; the model sees no gain
    ok, why = decide(cpu(400.0, tflops=(2.2e-4, 2.2e-4)), best, Rule(model_margin=0.01))
    assert not ok and why.startswith("basis model: 400 < 400")
    # and the legacy entry point no longer lets interpreter timings decide either
    assert not should_commit(cpu(400.0, tflops=(2.2e-4, 2.2e-4)), 1e-4, 0.05)[0]


def test_cpu_without_a_modelled_figure_cannot_commit():
    best = Best(0, 1e-4, model={"modelled_tflops": 400.0, "model": "m/1"})
    ok, why = decide(cpu(None, tflops=(9e-4, 9e-4)), best, Rule())
    assert not ok and "no cost model" in why
    ok, why = decide(cpu(500.0), Best(0, 1e-4), Rule())
    assert not ok and "v0 has no modelled figure" in why
    other = Best(0, 1e-4, model={"modelled_tflops": 100.0, "model": "older/0"})
    ok, why = decide(cpu(500.0), other, Rule())
    assert not ok and "older/0" in why  # figures of two different models are never compared
