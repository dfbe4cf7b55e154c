"""The cascade's decisions (avo/cascade.py): pure functions."""
import pytest

from avo import cascade


def test_the_screen_spreads_over_the_suite_blocks():
    names = [f"{kind} {mask} s{s}" for kind in ("mha", "gqa8", "gqa4") for mask in ("full", "causal")
             for s in (4, 8, 16, 32)]
    picks = cascade.screen_configs(names, 6)
    assert picks[0] == names[0] and picks[-1] == names[-1] and len(picks) == 6
    # every (kind, mask) block but one is represented; all three kinds are
    assert {p.split()[0] for p in picks} == {"mha", "gqa8", "gqa4"}
    assert len({tuple(p.split()[:2]) for p in picks}) >= 5
    assert cascade.screen_configs(names[:3], 6) == names[:3]


def test_the_gate_is_the_best_screen_geomean_less_the_slack():
    assert cascade.gate_tflops([400.0, 100.0], 0.05) == pytest.approx(200.0 * 0.95)
    assert cascade.gate_tflops([], 0.05) is None
    assert cascade.gate_tflops([400.0, 0.0], 0.05) is None  # the best lacks a config: no gate
    with pytest.raises(ValueError):
        cascade.gate_tflops([1.0], 1.5)
    ok, why = cascade.passes_gate([190.0, 190.0], 200.0)
    assert not ok and "screened out" in why and "190" in why
    assert cascade.passes_gate([200.0], 200.0) == (True, "")
    assert cascade.passes_gate([1.0], None) == (True, "")


def test_a_confirmation_is_due_only_when_the_full_suite_beats_the_best_by_the_floor():
    assert cascade.confirmation_due(102.0, 100.0, 0.01)
    assert not cascade.confirmation_due(100.5, 100.0, 0.01)
    assert not cascade.confirmation_due(500.0, None, 0.01)  # nothing to confirm against


def test_the_confirmation_summary_takes_the_median_ratio_and_the_worse_spread():
    best = [[2.0, 4.0], [2.0, 4.0], [2.2, 4.4]]  # round 3: the best ran 10% slower
    cand = [[1.0, 2.0], [1.1, 2.2], [1.0, 2.0]]
    c = cascade.summarise_confirmation(best, cand)
    # per-round ratios 2.0, 1.818, 2.2: the median
    assert c.ratio == pytest.approx(2.0)
    assert c.spread == pytest.approx(0.1)  # both kernels moved 10% between rounds
    with pytest.raises(ValueError):
        cascade.summarise_confirmation([[1.0]], [])
    assert cascade.relative_spread([5.0]) == 0.0


def test_the_default_screen_is_a_quarter_of_the_suite_and_at_least_three():
    assert len(cascade.screen_configs([f"c{i}" for i in range(24)])) == 6
    assert cascade.screen_configs([f"c{i}" for i in range(8)]) == ["c0", "c4", "c7"]


def test_the_screen_is_out_of_reach_only_when_the_peak_on_the_rest_cannot_pass():
    from avo.cascade import out_of_reach

    peak = 1000.0
    # 6 configs, gate 600: one at 26 TFLOPS caps the geomean at 1000 * (26/1000)^(1/6) = 544
    assert out_of_reach([26.0], 6, 600.0, peak)
    # one at 180: 1000 * 0.18^(1/6) = 751, still reachable; two at 180: 1000 * 0.18^(1/3) = 565, not
    assert not out_of_reach([180.0], 6, 600.0, peak)
    assert out_of_reach([180.0, 180.0], 6, 600.0, peak)
    assert not out_of_reach([26.0], 6, None, peak)  # no gate: nothing to be out of reach of
    assert not out_of_reach([26.0] * 6, 6, 600.0, peak)  # all measured: the gate itself decides
    assert not out_of_reach([], 6, 600.0, peak)
