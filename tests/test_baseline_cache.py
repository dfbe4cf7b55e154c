"""The baseline cache (avo/baseline_cache.py): timed once per GPU, drift re-times."""
import json

import pytest

from avo.baseline_cache import BaselineCache


def rows(tflops: float, configs=("a", "b")) -> dict:
    return {c: {"cudnn": {"config": c, "ms": 1.0, "tflops": tflops, "calls": 24, "spread": 0.01},
                "fa2": {"config": c, "ms": 2.0, "tflops": tflops / 2, "calls": 24, "spread": 0.01}}
            for c in configs}


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_rows_are_kept_per_gpu_and_survive_a_restart(tmp_path):
    path = tmp_path / "baselines.json"
    cache = BaselineCache(path)
    assert not cache.has("h:gpu0", ["a"])
    cache.add("h:gpu0", rows(600.0), {"gpu": "H100", "torch": "2.11"})
    assert cache.has("h:gpu0", ["a", "b"]) and not cache.has("h:gpu1", ["a"])
    again = BaselineCache(path)
    assert again.rows("h:gpu0")["a"]["cudnn"]["tflops"] == 600.0
    assert json.loads(path.read_text())["gpus"]["h:gpu0"]["env"]["gpu"] == "H100"
    # a copy: the caller cannot change the cache through it
    again.rows("h:gpu0")["a"]["cudnn"]["tflops"] = 1.0
    assert again.rows("h:gpu0")["a"]["cudnn"]["tflops"] == 600.0


def test_a_missing_backend_is_not_a_cached_config(tmp_path):
    cache = BaselineCache(None)
    cache.add("g", {"a": {"cudnn": rows(1.0)["a"]["cudnn"]}})
    assert not cache.has("g", ["a"])


def test_drift_checks_come_due_with_time_and_large_drift_drops_every_row(tmp_path):
    clock = Clock()
    cache = BaselineCache(tmp_path / "b.json", drift_every_s=600, tolerance=0.03, clock=clock)
    cache.add("g", rows(600.0, ("a", "b", "c")))
    assert not cache.drift_check_due("g")
    clock.t += 601
    assert cache.drift_check_due("g")
    assert cache.check_drift("g", rows(606.0, ("a",))) == pytest.approx(0.01)  # within tolerance: kept
    assert cache.has("g", ["a", "b", "c"]) and not cache.drift_check_due("g")
    clock.t += 601
    assert cache.check_drift("g", rows(540.0, ("a",))) == pytest.approx(-0.1)
    assert cache.has("g", ["a"]) and not cache.has("g", ["b"])  # the rest is timed again on demand
    assert cache.rows("g")["a"]["cudnn"]["tflops"] == 540.0
    assert [e["action"] for e in cache.events("g")] == ["kept", "re-timed"]


def test_a_torn_file_starts_an_empty_cache(tmp_path):
    path = tmp_path / "b.json"
    path.write_text("{not json")
    assert BaselineCache(path).rows("g") == {}


def test_configs_count_as_cached_by_the_problems_own_columns():
    cache = BaselineCache(None)
    cache.add("g", {"a": {"cudnn": rows(1.0)["a"]["cudnn"]}})
    assert cache.has("g", ["a"], columns=("cudnn",)) and not cache.has("g", ["a"])
    assert cache.has("g", ["zzz"], columns=())  # no library baselines: nothing to wait for


def test_kernel_figures_are_kept_per_gpu_survive_a_restart_and_go_with_a_drift(tmp_path):
    path, clock = tmp_path / "baselines.json", Clock()
    cache = BaselineCache(path, drift_every_s=60.0, tolerance=0.03, clock=clock)
    cache.add("g", rows(600.0))
    cache.add_measured("g", "sha-best", "ok", 620.0, {"a": 610.0, "b": 630.0})
    assert cache.measured("g", "sha-best")["tflops"] == {"a": 610.0, "b": 630.0}
    assert cache.measured("g2", "sha-best") is None and cache.measured("g", "other") is None
    assert BaselineCache(path).measured("g", "sha-best")["geomean"] == 620.0  # a resumed run reuses it
    cache.check_drift("g", rows(601.0))  # within the tolerance: kept
    assert cache.measured("g", "sha-best") is not None
    cache.check_drift("g", rows(500.0))  # the GPU changed: the best is measured again, with the baselines
    assert cache.measured("g", "sha-best") is None


def test_only_the_newest_kernel_figures_are_kept(tmp_path):
    from avo.baseline_cache import KEEP_KERNELS

    cache = BaselineCache(tmp_path / "baselines.json")
    for i in range(KEEP_KERNELS + 5):
        cache.add_measured("g", f"k{i}", "ok", 1.0, {"a": 1.0})
    cache.add_measured("g", "k0", "ok", 2.0, {"a": 2.0})  # measured again: the newest now
    assert cache.measured("g", "k1") is None and cache.measured("g", "k5") is None
    assert cache.measured("g", "k0")["geomean"] == 2.0 and cache.measured("g", f"k{KEEP_KERNELS + 4}")
    assert len(BaselineCache(tmp_path / "baselines.json").gpus["g"]["kernels"]) == KEEP_KERNELS
