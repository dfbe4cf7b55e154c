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

    def __init__(self, cudnn=600.0, delay_s=0.0, tflops=300.0, status="ok", stopped=""):
        self.calls, self.cudnn, self.delay_s, self.tflops, self.status = [], cudnn, delay_s, tflops, status
        self.stopped = stopped  # a cascade stop (e.g. screened out): its timings are only the screen's
        self.lock = threading.Lock()

    def __call__(self, source, *, device, suite, gpu=None, stages=None, **kw):
        with self.lock:
            self.calls.append({"source": source, "gpu": gpu, "stages": stages, **kw})
        time.sleep(self.delay_s)
        timed = {}
        if stages is not None:
            for c in SUITE:
                if c not in stages.baselines or c in stages.recheck_baselines:
                    timed[c] = {b: {"config": c, "ms": 1.0, "tflops": self.cudnn, "calls": 24, "spread": 0.0}
                                for b in ("cudnn", "fa2")}
        tflops = self.tflops(source) if callable(self.tflops) else self.tflops
        status = self.status(source) if callable(self.status) else self.status
        timed_configs = (SUITE[:3] if self.stopped else SUITE) if status == "ok" else []
        return EvalResult(status=status, device=device, suite=suite, env={"gpu": "H100", "baselines_timed": timed},
                          checks=[CaseCheck("s", "bf16", 1, "check", 0.0, 0.0, True)],
                          timings=[ConfigTiming(c, 1.0, tflops) for c in timed_configs],
                          cascade={"stage": "screen", "stopped": self.stopped} if self.stopped else {})


def make(tmp_path, **cfg) -> Evaluator:
    return Evaluator(HarnessConfig(**cfg), device="cuda", suite="avo", suite_configs=SUITE,
                     problem_path=Path("kernel_src/attention/problem.py"), floor=0.01,
                     cache_path=tmp_path / "baselines.json")


BEST = Yardstick(version=4, source="# best\n", sha256="abc", geomean=500.0, tflops={c: 400.0 for c in SUITE},
                 gpu="H100", suite="avo")  # recorded on the fake judge's GPU model and suite


def test_the_first_judge_on_a_gpu_times_the_baselines_and_later_ones_reuse_them(tmp_path):
    ev, fake = make(tmp_path), FakeJudge()
    ev.judge("k1", "0", None, fake)
    ev.judge("k2", "0#2", None, fake)
    first, second = fake.calls[0]["stages"], fake.calls[1]["stages"]
    assert first.baselines == {} and set(second.baselines) == set(SUITE)
    assert fake.calls[0]["gpu"] == 0 and fake.calls[1]["gpu"] == 0  # "0#2": the second slot of GPU 0
    ev.judge("k3", "1", None, fake)
    assert fake.calls[2]["stages"].baselines == {}  # another GPU: its own baselines
    assert second.gpu_lock == first.gpu_lock != fake.calls[2]["stages"].gpu_lock


def test_the_best_is_measured_once_per_gpu_before_its_first_candidate(tmp_path):
    ev, fake = make(tmp_path), FakeJudge()
    ev.judge("k1", "0", BEST, fake)
    ev.judge("k2", "0#2", BEST, fake)
    ev.judge("k3", "1", BEST, fake)
    assert [(c["source"], c["gpu"]) for c in fake.calls] == \
        [("# best\n", 0), ("k1", 0), ("k2", 0), ("# best\n", 1), ("k3", 1)]
    yard = fake.calls[0]["stages"]
    assert yard.baselines == {} and yard.gate_tflops is None and yard.confirm_source is None  # timed, not judged
    assert set(fake.calls[1]["stages"].baselines) == set(SUITE)  # the best's judge timed them
    first = ev.judge("k4", "2", BEST, fake)
    assert first.env["yardstick_measured"]["version"] == 4 and first.env["yardstick_measured"]["status"] == "ok"
    assert "yardstick_measured" not in ev.judge("k5", "2", BEST, fake).env  # only the record that waited on it


def test_the_gate_and_the_confirmation_trigger_use_the_stricter_of_the_record_and_this_gpu(tmp_path):
    # this GPU times the best at 300 TFLOPS everywhere; its record says 400 per config, 500 geomean
    ev, fake = make(tmp_path, screen_size=4, screen_slack=0.05), FakeJudge(tflops=300.0)
    result = ev.judge("k", "0", BEST, fake)
    st = fake.calls[-1]["stages"]
    assert st.gate_tflops == pytest.approx(400.0 * 0.95) and st.best_geomean == 500.0  # a slower GPU: the record
    assert result.env["yardstick"] == {"version": 4, "sha256": "abc", "record_geomean": 500.0,
                                       "record_like_this_gpu": True, "here_geomean": 300.0}
    # a faster GPU: the best at 660 here, against a record of 400 / 500
    ev, fake = make(tmp_path / "fast", screen_size=4, screen_slack=0.05), \
        FakeJudge(tflops=lambda source: 660.0 if source == BEST.source else 300.0)
    ev.judge("k", "0", BEST, fake)
    st = fake.calls[-1]["stages"]
    assert st.gate_tflops == pytest.approx(660.0 * 0.95) and st.best_geomean == pytest.approx(660.0)


def test_a_record_of_another_gpu_model_or_suite_gates_nothing(tmp_path):
    from dataclasses import replace

    for other in (replace(BEST, gpu="H200"), replace(BEST, suite="mha")):
        ev, fake = make(tmp_path / f"{other.gpu}-{other.suite}", screen_size=4, screen_slack=0.05), \
            FakeJudge(tflops=300.0)
        result = ev.judge("k", "0", other, fake)
        st = fake.calls[-1]["stages"]  # this GPU's figures alone, though the record's are higher
        assert st.gate_tflops == pytest.approx(300.0 * 0.95) and st.best_geomean == pytest.approx(300.0)
        assert result.env["yardstick"]["record_like_this_gpu"] is False


def test_a_best_that_cannot_be_measured_here_is_tried_again_only_after_a_transient_failure(tmp_path):
    from dataclasses import replace

    # a timeout (the GPU or host, maybe): tried twice, then the record stands (it is of this model)
    ev = make(tmp_path / "t", screen_size=4, screen_slack=0.05)
    fake = FakeJudge(status=lambda source: "timeout" if source == BEST.source else "ok")
    for k in ("k1", "k2", "k3"):
        ev.judge(k, "0", BEST, fake)
    assert [c["source"] for c in fake.calls] == ["# best\n", "k1", "# best\n", "k2", "k3"]
    assert fake.calls[-1]["stages"].gate_tflops == pytest.approx(400.0 * 0.95)
    # a verdict on the kernel (incorrect here): once
    ev = make(tmp_path / "i", screen_size=4, screen_slack=0.05)
    fake = FakeJudge(status=lambda source: "incorrect" if source == BEST.source else "ok")
    ev.judge("k1", "0", BEST, fake)
    ev.judge("k2", "0", BEST, fake)
    assert [c["source"] for c in fake.calls] == ["# best\n", "k1", "k2"]
    # the harness itself failing: recorded as a try, not a crash of the search
    ev = make(tmp_path / "x")

    def broken(source, **kw):
        if source == BEST.source:
            raise RuntimeError("harness broke")
        return FakeJudge()(source, **kw)
    result = ev.judge("k1", "0", BEST, broken)
    assert result.ok and result.env["yardstick_measured"]["status"] == "crashed"
    # a record of another GPU model, and nothing timed here: no gate, no confirmation trigger
    ev = make(tmp_path / "o", screen_size=4, screen_slack=0.05)
    fake = FakeJudge(status=lambda source: "incorrect" if source == BEST.source else "ok")
    ev.judge("k", "0", replace(BEST, gpu="H200"), fake)
    st = fake.calls[-1]["stages"]
    assert st.gate_tflops is None and st.best_geomean is None


def test_figures_are_per_suite(tmp_path):
    ev, fake = make(tmp_path), FakeJudge(tflops=640.0)
    ev.judge("k", "0", BEST, fake)
    other = Evaluator(HarnessConfig(), device="cuda", suite="mha", suite_configs=SUITE,
                      problem_path=Path("kernel_src/attention/problem.py"), floor=0.01,
                      cache_path=tmp_path / "baselines.json")
    other.judge("k", "0", BEST, fake)  # the same GPU and cache file, another suite: the best is timed again
    assert [c["source"] for c in fake.calls] == ["# best\n", "k", "# best\n", "k"]


def test_figures_timed_with_other_software_are_dropped(tmp_path):
    ev, fake = make(tmp_path), FakeJudge()
    ev.judge("k1", "0", BEST, fake)
    assert ev.cache.rows(ev.key(0))

    class Upgraded(FakeJudge):
        def __call__(self, source, **kw):
            r = super().__call__(source, **kw)
            r.env["triton"] = "9.9"
            return r
    result = ev.judge("k2", "0", BEST, Upgraded())
    assert "software changed" in result.env["baseline_cache"]
    assert ev.cache.rows(ev.key(0)) == {} and ev.cache.measured(ev.key(0), "avo:abc") is None
    assert ev.cache.events(ev.key(0))[-1]["action"].startswith("software changed")


def test_a_candidate_measured_in_full_is_a_ready_yardstick_on_its_gpu(tmp_path):
    from avo.candidate import source_sha256

    ev, fake = make(tmp_path), FakeJudge(tflops=640.0)
    ev.judge("# v5\n", "0", None, fake)  # e.g. the candidate that becomes v5
    v5 = Yardstick(5, "# v5\n", source_sha256("# v5\n"), 640.0, {c: 640.0 for c in SUITE})
    ev.judge("k", "0", v5, fake)
    assert [c["source"] for c in fake.calls] == ["# v5\n", "k"]  # no second measurement of v5 here
    assert ev.cache.measured(ev.key(0), "avo:" + source_sha256("k"))["geomean"] == pytest.approx(640.0)
    ev.judge("# screened\n", "0", v5, FakeJudge(stopped="screened out"))
    assert ev.cache.measured(ev.key(0), "avo:" + source_sha256("# screened\n")) is None  # part of the suite


def test_the_stages_carry_the_screen_the_gate_and_the_best_to_confirm(tmp_path):
    ev, fake = make(tmp_path, screen_size=4, screen_slack=0.05, confirm_rounds=2), FakeJudge()
    ev.judge("k", "0", BEST, fake)
    st = fake.calls[-1]["stages"]
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
    ev.judge("k", "0", None, fake)  # fills the cache
    fake.cudnn = 500.0  # the GPU got 17% slower
    result = ev.judge("k", "0", None, fake)
    assert list(fake.calls[1]["stages"].recheck_baselines) == ev.screen
    assert result.env["baseline_drift"] == pytest.approx(-1 / 6)
    key = ev.key(0)
    assert set(ev.cache.rows(key)) == set(ev.screen)  # the rest is dropped, to be timed again
    assert ev.cache.events(key)[-1]["action"] == "re-timed"
    ev.judge("k", "0", None, fake)
    assert set(fake.calls[2]["stages"].baselines) == set(ev.screen)  # the next judge times the rest


def test_concurrent_first_judges_on_one_gpu_time_the_baselines_once(tmp_path):
    ev, fake = make(tmp_path), FakeJudge(delay_s=0.2)
    threads = [threading.Thread(target=ev.judge, args=("k", slot, BEST, fake)) for slot in ("0", "0#2", "0#3")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(1 for c in fake.calls if c["stages"].baselines == {}) == 1


def test_without_the_cascade_a_gpu_judge_gets_the_lock_only_and_on_a_cpu_no_stages(tmp_path):
    fake = FakeJudge()
    make(tmp_path, cascade=False).judge("k", "0", BEST, fake)
    stages = fake.calls[-1]["stages"]
    assert stages.gpu_lock and stages.screen == () and stages.confirm_source is None and fake.calls[-1]["gpu"] == 0
    cpu = Evaluator(HarnessConfig(), device="cpu", suite="cpu", suite_configs=SUITE,
                    problem_path=Path("kernel_src/attention/problem.py"), floor=0.05)
    cpu.judge("k", "cpu0", BEST, fake)
    assert fake.calls[-1]["stages"] is None and fake.calls[-1]["gpu"] is None
    make(tmp_path).judge("k", "0", BEST, fake, quick=True)  # the agent's quick check: no cascade
    assert fake.calls[-1]["stages"].gate_tflops is None and fake.calls[-1]["quick"] is True


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


def test_the_judge_that_times_a_gpus_baselines_times_every_held_out_shape_too(tmp_path):
    ev, fake = make(tmp_path), FakeJudge()
    ev.judge("k1", "0", None, fake)
    ev.judge("k2", "0", None, fake)
    assert [c["stages"].time_held_out_pool for c in fake.calls] == [True, False]
    assert fake.calls[0]["stages"].job_fields(tmp_path)["time_held_out_pool"] is True


def test_every_held_out_draw_comes_from_the_problems_pool():
    import random

    from avo.problem import load_problem

    for name in ("attention", "rmsnorm"):
        problem = load_problem(Path(f"kernel_src/{name}/problem.py"))
        for device in ("cuda", "cpu"):
            pool = problem.held_out_pool(device)
            assert len({s.name for s in pool}) == len(pool)
            for seed in range(20):
                assert set(problem.held_out_shapes(device, random.Random(seed), 2)) <= set(pool)


def test_the_judge_gets_the_configured_number_of_compile_helpers(tmp_path):
    fake = FakeJudge()
    make(tmp_path, compile_helpers=3).judge("k", "0", None, fake)
    make(tmp_path, compile_helpers=0).judge("k", "0", None, fake)
    assert [c["compile_helpers"] for c in fake.calls] == [3, 0]


class SharedOnce(FakeJudge):
    """Its first `shared` results were timed while another process was busy on the GPU."""

    def __init__(self, shared=1, **kw):
        super().__init__(**kw)
        self.shared = shared

    def __call__(self, source, **kw):
        result = super().__call__(source, **kw)
        if self.shared > 0:
            self.shared -= 1
            result.env["gpu_shared"] = [{"when": "during a 3.0 s hold", "pids": {"999": 100}}]
        return result


def test_a_candidate_timed_on_a_shared_gpu_is_judged_once_more(tmp_path):
    ev, fake = make(tmp_path), SharedOnce(shared=1)
    result = ev.judge("k1", "0", None, fake)
    assert [c["source"] for c in fake.calls] == ["k1", "k1"]
    assert not result.env.get("gpu_shared") and result.env["gpu_shared_first_try"][0]["pids"] == {"999": 100}
    assert set(ev.cache.rows(ev.key(0))) == set(SUITE)  # the clean try's baselines are cached


def test_figures_from_a_shared_gpu_are_never_cached(tmp_path):
    from avo.evaluator import SHARED_TRIES

    ev, fake = make(tmp_path), SharedOnce(shared=SHARED_TRIES)
    result = ev.judge("k1", "0", None, fake)
    assert len(fake.calls) == SHARED_TRIES and result.env["gpu_shared"]  # shared every try: said, and ...
    assert ev.cache.rows(ev.key(0)) == {}  # ... its baselines are not the GPU's figures
    assert not ev.cache.has(ev.key(0), SUITE, ("cudnn", "fa2"))
    # the best timed on a shared GPU is no yardstick: it is measured again, at most TRIES times
    ev, fake = make(tmp_path / "b"), SharedOnce(shared=SHARED_TRIES)
    first = ev.judge("k2", "1", BEST, fake)
    assert first.env["yardstick_measured"]["status"] == "shared"
    assert ev._needs_measuring(ev.key(1), BEST)


def test_an_agents_check_and_bench_take_the_gpus_lock_without_the_cascade(tmp_path):
    """quick=True (an agent's check) and configs= (its bench) skip the cascade, not the GPU lock:
    without it they would check and time beside the run's other judges on that GPU."""
    ev, fake = make(tmp_path), FakeJudge()
    ev.judge("k1", "0", BEST, fake)
    ev.judge("k2", "0#2", BEST, fake, quick=True)
    ev.judge("k3", "0#3", BEST, fake, configs=SUITE[:1])
    cascaded = [c for c in fake.calls if c["source"] == "k1"][0]["stages"]
    for source in ("k2", "k3"):
        stages = [c for c in fake.calls if c["source"] == source][0]["stages"]
        assert stages.gpu_lock == cascaded.gpu_lock and stages.gpu_lock
        assert stages.screen == () and stages.gate_tflops is None and stages.confirm_source is None


def test_a_candidate_still_shared_is_judged_at_most_shared_tries_times(tmp_path):
    from avo.evaluator import SHARED_TRIES

    ev, fake = make(tmp_path), SharedOnce(shared=SHARED_TRIES + 5)
    result = ev.judge("k1", "0", None, fake)
    assert [c["source"] for c in fake.calls] == ["k1"] * SHARED_TRIES
    assert result.env["gpu_shared"]  # still shared: the commit rule refuses it
    assert len(result.env["gpu_shared_first_try"]) == SHARED_TRIES - 1  # every earlier try's holds


def test_a_third_try_that_is_clean_is_the_result(tmp_path):
    ev, fake = make(tmp_path), SharedOnce(shared=2)
    result = ev.judge("k1", "0", None, fake)
    assert len(fake.calls) == 3 and not result.env.get("gpu_shared")
    assert len(result.env["gpu_shared_first_try"]) == 2
