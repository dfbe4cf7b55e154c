"""avo/evaluator.py: what the orchestrator tells the judge, and what it keeps."""
import threading
import time
from pathlib import Path

import pytest

from avo.config import HarnessConfig
from avo.evaluator import Evaluator, Yardstick
from avo.records import CaseCheck, ConfigTiming, EvalResult

SUITE = [f"c{i}" for i in range(12)]


class FakeJudge:
    """Stands for avo.harness.evaluate: records the stages it was given and times
    the baselines it lacks, as the judge does (env.baselines_timed)."""

    def __init__(self, cudnn=600.0, delay_s=0.0):
        self.calls, self.cudnn, self.delay_s = [], cudnn, delay_s
        self.lock = threading.Lock()

    def __call__(self, source, *, device, suite, gpu=None, stages=None, **kw):
        with self.lock:
            self.calls.append({"gpu": gpu, "stages": stages, **kw})
        time.sleep(self.delay_s)
        timed = {}
        if stages is not None:
            for c in SUITE:
                if c not in stages.baselines or c in stages.recheck_baselines:
                    timed[c] = {b: {"config": c, "ms": 1.0, "tflops": self.cudnn, "calls": 24, "spread": 0.0}
                                for b in ("cudnn", "fa2")}
        return EvalResult(status="ok", device=device, suite=suite, env={"gpu": "H100", "baselines_timed": timed},
                          checks=[CaseCheck("s", "bf16", 1, "check", 0.0, 0.0, True)],
                          timings=[ConfigTiming(c, 1.0, 300.0) for c in SUITE])


def make(tmp_path, **cfg) -> Evaluator:
    return Evaluator(HarnessConfig(**cfg), device="cuda", suite="avo", suite_configs=SUITE,
                     problem_path=Path("kernel_src/attention/problem.py"), floor=0.01,
                     cache_path=tmp_path / "baselines.json")


BEST = Yardstick(version=4, source="# best\n", sha256="abc", geomean=500.0, tflops={c: 400.0 for c in SUITE})


def test_the_first_judge_on_a_gpu_times_the_baselines_and_later_ones_reuse_them(tmp_path):
    ev, fake = make(tmp_path), FakeJudge()
    ev.judge("k1", "0", BEST, fake)
    ev.judge("k2", "0#2", BEST, fake)
    first, second = fake.calls[0]["stages"], fake.calls[1]["stages"]
    assert first.baselines == {} and set(second.baselines) == set(SUITE)
    assert fake.calls[0]["gpu"] == 0 and fake.calls[1]["gpu"] == 0  # "0#2": the second slot of GPU 0
    ev.judge("k3", "1", BEST, fake)
    assert fake.calls[2]["stages"].baselines == {}  # another GPU: its own baselines
    assert second.gpu_lock == first.gpu_lock != fake.calls[2]["stages"].gpu_lock


def test_the_stages_carry_the_screen_the_gate_and_the_best_to_confirm(tmp_path):
    ev, fake = make(tmp_path, screen_size=4, screen_slack=0.05, confirm_rounds=2), FakeJudge()
    ev.judge("k", "0", BEST, fake)
    st = fake.calls[0]["stages"]
    assert st.screen == ("c0", "c4", "c7", "c11")
    assert st.gate_tflops == pytest.approx(400.0 * 0.95)
    assert (st.confirm_source, st.best_version, st.best_geomean, st.floor, st.confirm_rounds) == \
        ("# best\n", 4, 500.0, 0.01, 2)
    fake.calls.clear()
    ev.judge("k", "0", None, fake)  # no best yet (the seed): no gate, nothing to confirm
    st = fake.calls[0]["stages"]
    assert st.gate_tflops is None and st.confirm_source is None


def test_the_drift_check_rechecks_the_screen_and_a_drift_re_times_everything(tmp_path):
    ev, fake = make(tmp_path, baseline_drift_s=0.0, baseline_drift_tolerance=0.03), FakeJudge()
    ev.judge("k", "0", BEST, fake)  # fills the cache
    fake.cudnn = 500.0  # the GPU got 17% slower
    result = ev.judge("k", "0", BEST, fake)
    assert list(fake.calls[1]["stages"].recheck_baselines) == ev.screen
    assert result.env["baseline_drift"] == pytest.approx(-1 / 6)
    key = ev.key(0)
    assert set(ev.cache.rows(key)) == set(ev.screen)  # the rest is dropped, to be timed again
    assert ev.cache.events(key)[-1]["action"] == "re-timed"
    ev.judge("k", "0", BEST, fake)
    assert set(fake.calls[2]["stages"].baselines) == set(ev.screen)  # the next judge times the rest


def test_concurrent_first_judges_on_one_gpu_time_the_baselines_once(tmp_path):
    ev, fake = make(tmp_path), FakeJudge(delay_s=0.2)
    threads = [threading.Thread(target=ev.judge, args=("k", slot, BEST, fake)) for slot in ("0", "0#2", "0#3")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(1 for c in fake.calls if c["stages"].baselines == {}) == 1


def test_without_the_cascade_or_on_a_cpu_the_judge_gets_no_stages(tmp_path):
    fake = FakeJudge()
    make(tmp_path, cascade=False).judge("k", "0", BEST, fake)
    assert fake.calls[-1]["stages"] is None and fake.calls[-1]["gpu"] == 0
    cpu = Evaluator(HarnessConfig(), device="cpu", suite="cpu", suite_configs=SUITE,
                    problem_path=Path("kernel_src/attention/problem.py"), floor=0.05)
    cpu.judge("k", "cpu0", BEST, fake)
    assert fake.calls[-1]["stages"] is None and fake.calls[-1]["gpu"] is None
    make(tmp_path).judge("k", "0", BEST, fake, quick=True)  # the agent's quick check: no cascade
    assert fake.calls[-1]["stages"] is None and fake.calls[-1]["quick"] is True


def test_the_yardstick_is_the_best_version_on_the_gpu_model_the_run_measures_on(tmp_path):
    from avo.evaluator import run_yardstick
    from avo.population import Population

    class V:
        def __init__(self, number, gpu, tflops, suite="mha"):
            self.number, self.source = number, f"# v{number}\n"
            self.result = EvalResult(status="ok", device="cuda", suite=suite, env={"gpu": gpu},
                                     checks=[CaseCheck("s", "bf16", 1, "check", 0.0, 0.0, True)],
                                     timings=[ConfigTiming("c0", 1.0, tflops)])

    class L:
        def versions(self):
            return [V(3, "H100", 500.0), V(4, "H100", 620.0), V(5, "H200", 610.0), V(6, "H100", 900.0, "avo")]

    on_h200 = Population.from_records([{"device": "cuda", "suite": "mha", "gpu": "H200", "generation": 1}])
    assert run_yardstick(L(), on_h200, "cuda", "mha").version == 5
    on_h100 = Population.from_records([{"device": "cuda", "suite": "mha", "gpu": "H100", "generation": 1}])
    assert run_yardstick(L(), on_h100, "cuda", "mha").version == 4
    assert run_yardstick(L(), Population.from_records([]), "cuda", "mha").version == 4  # nothing measured yet
