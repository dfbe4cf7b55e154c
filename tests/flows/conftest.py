"""Flow tests run against Prefect's test harness (a temporary database, once per
session) with a fake harness where the test is about orchestration."""
import math
import os
import threading

import pytest

import flows  # noqa: F401  (Prefect defaults before prefect is imported)
from avo import live
from avo.operators.heuristic import read_knobs
from avo.records import CaseCheck, ConfigTiming, EvalResult


@pytest.fixture(scope="session", autouse=True)
def prefect_harness():
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(autouse=True)
def clean_live():
    live.reset()
    yield
    live.reset()
    live._listeners.clear()


class FakeHarness:
    """evaluate(source, ...) -> an ok result whose geomean depends on the knobs
    (bigger key tiles and more stages are faster), so commits happen in a
    predictable way. `fail_on` raises on that call number (a crash mid-run)."""

    def __init__(self, fail_on: int | None = None, wall_s: float = 1.0):
        self.calls: list[dict] = []
        self.fail_on = fail_on
        self.wall_s = wall_s
        self.lock = threading.Lock()

    def __call__(self, source, *, device, suite, timeout_s=None, quick=False, gpu=None, **_):
        with self.lock:
            self.calls.append({"gpu": gpu, "device": device, "source": source})
            if self.fail_on is not None and len(self.calls) == self.fail_on:
                raise RuntimeError("injected failure")
        k = read_knobs(source)
        tflops = 100.0 * (1 + 0.2 * math.log2(k["BLOCK_N"] / 16)) * (1 + 0.05 * k["NUM_STAGES"]) \
            / (1 + 0.01 * abs(k["BLOCK_M"] - 128) / 16)
        timings = [ConfigTiming(config=c, ms=1.0, tflops=tflops, cudnn_tflops=400.0) for c in ("c1", "c2")]
        checks = [CaseCheck(shape="s", dtype="float16", seed=1, phase="check", max_abs_err=1e-4, rel_err=1e-4,
                            passed=True)]
        return EvalResult(status="ok", device=device, interpreter=device == "cpu", suite=suite,
                          env={"gpu": "fake" if device == "cuda" else "cpu"}, checks=checks, timings=timings,
                          wall_s=self.wall_s)


@pytest.fixture
def fake_harness(monkeypatch):
    def install(**kw):
        fake = FakeHarness(**kw)
        monkeypatch.setattr("flows.generation.harness_evaluate", fake)
        return fake
    return install


@pytest.fixture
def run_args(tmp_path, monkeypatch):
    """evolve() arguments that keep everything under tmp_path (no MLflow, no git)."""
    params = tmp_path / "params.yaml"
    params.write_text("tracking:\n  enabled: false\nlineage:\n  git_commit: 'off'\n"
                      f"  seed: {os.path.abspath('kernel_src/attention/seeds/fa2.py')}\n")
    return dict(params_path=str(params), lineage_root=str(tmp_path / "lineage"),
                state_dir=str(tmp_path / ".avo"), device="cpu", operator="heuristic")
