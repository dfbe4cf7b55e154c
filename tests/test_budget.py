"""Budgets and stop conditions (avo.budget) — milliseconds."""
from avo.budget import Budget, Spent, exhausted, left, target_met


def test_no_limits_never_exhausted():
    assert exhausted(Budget(), Spent(generations=10**6, wall_s=1e9, gpu_s=1e9, tokens=10**9, dollars=1e6)) is None


def test_each_limit_stops_the_run():
    assert "generations" in exhausted(Budget(generations=2), Spent(generations=2))
    assert exhausted(Budget(generations=2), Spent(generations=1)) is None
    assert "wall-clock" in exhausted(Budget(wall_minutes=1), Spent(wall_s=61))
    assert "GPU-minutes" in exhausted(Budget(gpu_minutes=1), Spent(gpu_s=60))
    assert "tokens" in exhausted(Budget(tokens=1000), Spent(tokens=1000))
    assert "dollars" in exhausted(Budget(dollars=0.5), Spent(dollars=0.51))


def test_candidates_charge_tokens_dollars_and_gpu_time_only_on_gpu():
    s = Spent()
    s.add_candidate({"tokens": 1200, "cost_usd": 0.03}, eval_wall_s=40.0, on_gpu=True)
    s.add_candidate({}, eval_wall_s=9.0, on_gpu=False)  # interpreter time is not GPU time
    assert (s.tokens, round(s.dollars, 3), s.gpu_s) == (1200, 0.03, 40.0)
    assert Spent.from_dict(s.to_dict()) == s


def test_targets():
    b = Budget(target_ratio_cudnn=1.0)
    assert target_met(b, 500.0, 0.99) is None
    assert "cuDNN" in target_met(b, 500.0, 1.01)
    assert target_met(b, 500.0, None) is None  # no ratio on a CPU: never met
    assert "TFLOPS" in target_met(Budget(target_tflops=400), 410.0, None)


def test_left_reports_only_set_limits():
    assert left(Budget(generations=5, wall_minutes=10), Spent(generations=2, wall_s=120)) == \
        {"generations": 3, "minutes": 8.0}
