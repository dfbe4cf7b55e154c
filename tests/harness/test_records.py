"""EvalResult: derived scores and the JSON round trip."""
import math

import pytest

from avo.records import CaseCheck, ConfigTiming, EvalResult, geomean


def make(status="ok"):
    return EvalResult(
        status=status, device="cuda", suite="mha", env={"gpu": "NVIDIA H100"},
        checks=[CaseCheck("a", "bfloat16", 1, "check", 1e-2, 2e-3, True)],
        timings=[ConfigTiming("c1", ms=1.0, tflops=400.0, cudnn_tflops=600.0, fa2_tflops=350.0),
                 ConfigTiming("c2", ms=2.0, tflops=100.0, cudnn_tflops=200.0, fa2_tflops=100.0)],
    )


def test_geomean_and_ratios():
    r = make()
    assert r.geomean_tflops == pytest.approx(200.0)
    assert r.geomean_ratio_cudnn == pytest.approx(math.sqrt(400 / 600 * 100 / 200))
    assert r.geomean_ratio_fa2 == pytest.approx(math.sqrt(400 / 350))


def test_a_failed_candidate_scores_zero():
    r = make("incorrect")
    assert r.geomean_tflops == 0.0
    assert r.tflops_by_config() == {"c1": 0.0, "c2": 0.0}
    assert r.geomean_ratio_cudnn is None


def test_json_round_trip_keeps_everything():
    r = make()
    back = EvalResult.from_json(r.to_json())
    assert back == r
    assert back.to_dict()["timings"][0]["ratio_cudnn"] == pytest.approx(400 / 600)


def test_unknown_status_is_refused():
    d = make().to_dict()
    d["status"] = "great"
    with pytest.raises(ValueError, match="unknown status"):
        EvalResult.from_dict(d)


def test_geomean_of_nothing_or_nonpositive_is_zero():
    assert geomean([]) == 0.0 and geomean([1.0, 0.0]) == 0.0 and geomean([2.0, 8.0]) == pytest.approx(4.0)


def test_gpu_time_counts_the_lock_holds_when_pipelined_else_the_wall():
    from avo.records import EvalResult

    assert EvalResult(status="ok", wall_s=30.0).gpu_s == 30.0
    pipelined = EvalResult(status="ok", wall_s=30.0, env={"gpu_held": [[100.0, 104.0], [110.0, 111.5]]})
    assert pipelined.gpu_s == 5.5
