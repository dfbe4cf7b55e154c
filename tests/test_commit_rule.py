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
