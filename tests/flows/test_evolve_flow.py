"""The evolve loop with a fake harness: resume after a crash or a stop, budgets,
GPU pinning. Each test runs the real flows (Prefect test harness) in seconds."""
import json
from collections import Counter

import pytest

from avo import live
from avo.lineage import Lineage
from flows.evolve import evolve


def _attempts(run_args):
    return Lineage(run_args["lineage_root"]).attempts()


def _state(run_args):
    from avo.run_state import state_path

    return json.loads(state_path(run_args["state_dir"], run_args["lineage_root"]).read_text())


def test_a_run_seeds_the_lineage_and_runs_its_generations(fake_harness, run_args):
    fake = fake_harness()
    s = evolve(generations=2, population=2, **run_args)
    attempts = _attempts(run_args)
    assert [a["generation"] for a in attempts] == [0, 1, 1, 2, 2]  # seed, then 2 x 2 candidates
    assert s.finished and "2 of 2 generations" in s.stop_reason and s.committed
    assert len(fake.calls) == 5 and all(c["gpu"] is None for c in fake.calls)  # the CPU worker is never pinned
    assert _state(run_args)["status"] == "finished"
    # a second `avo evolve` starts a new run after the last generation
    s2 = evolve(generations=1, population=2, **run_args)
    assert not s2.resumed and s2.generations == [3]


def test_resume_after_a_crash_loses_and_repeats_nothing(fake_harness, run_args):
    fake_harness(fail_on=4)  # seed, g1 x2 commit, then the first evaluation of g2 crashes
    with pytest.raises(Exception, match="injected failure"):
        evolve(generations=3, population=2, **{**run_args})
    before = _attempts(run_args)
    versions_before = [v.number for v in Lineage(run_args["lineage_root"]).versions()]
    assert _state(run_args)["status"] == "running"

    fake = fake_harness()
    s = evolve(generations=3, population=2, **run_args)
    assert s.resumed and s.finished
    after = _attempts(run_args)
    assert after[:len(before)] == before  # nothing lost
    shas = Counter(a["source_sha256"] for a in after)
    assert max(shas.values()) == 1  # nothing evaluated twice
    assert Counter(a["generation"] for a in after) == {0: 1, 1: 2, 2: 2, 3: 2}
    assert [v.number for v in Lineage(run_args["lineage_root"]).versions()][:len(versions_before)] == versions_before
    assert len(fake.calls) == len(after) - len(before)


def test_stop_request_finishes_the_candidate_in_flight_then_resumes(fake_harness, run_args):
    fake_harness()

    def stop_after_first_candidate(kind, data):  # (on CPU the first candidate may not commit: the model decides)
        if kind == "candidate" and data.get("status") == "ok":
            live.request_stop("interrupted (Ctrl-C): test")

    unsubscribe = live.subscribe(stop_after_first_candidate)
    s = evolve(generations=3, population=1, **run_args)
    unsubscribe()
    assert not s.finished and s.stop_reason.startswith("interrupted")
    assert _state(run_args)["status"] == "running"
    n = len(_attempts(run_args))
    s2 = evolve(generations=3, population=1, **run_args)
    assert s2.resumed and s2.finished
    attempts = _attempts(run_args)
    assert len(attempts) == 4 and n == 2  # seed + 3 generations x 1, none twice
    assert len({a["source_sha256"] for a in attempts}) == 4


def test_gpu_minutes_budget_stops_the_run_and_each_evaluation_is_pinned(fake_harness, run_args, monkeypatch):
    monkeypatch.setattr("avo.gpu_pool.visible_gpus", lambda: [0, 1])
    fake = fake_harness(wall_s=30.0)
    args = {**run_args, "device": "cuda"}
    s = evolve(generations=10, population=2, gpu_minutes=1.5, **args)
    assert s.finished and "GPU-minutes" in s.stop_reason
    # the seed is not charged to the run. Before its first candidate, each GPU times the best
    # (v0 here), charged to that candidate: 30 s each, so generation 1 (2 candidates and 1 or 2
    # yardsticks, 1.5 or 2 GPU-minutes) spends the 1.5 min budget
    seed = fake.calls[0]["source"]
    yardsticks = [c["gpu"] for c in fake.calls[1:] if c["source"] == seed]
    candidates = [c["gpu"] for c in fake.calls[1:] if c["source"] != seed]
    assert len(candidates) == 2 and sorted(yardsticks) == sorted(set(candidates))  # once on each GPU used
    assert {c["gpu"] for c in fake.calls} <= {0, 1} and all(c["gpu"] is not None for c in fake.calls)
    assert _state(run_args)["spent"]["gpu_s"] == pytest.approx(30.0 * (len(candidates) + len(yardsticks)))


def test_target_and_wall_budget(fake_harness, run_args):
    fake_harness()
    s = evolve(generations=50, population=2, target_tflops=1.0, **run_args)
    assert s.generations == [] and "target met" in s.stop_reason  # the seed already meets it
    s = evolve(generations=50, population=2, budget_minutes=0.0, **run_args)
    assert "wall-clock" in s.stop_reason and s.generations == []


def test_a_gpu_run_with_fewer_candidates_than_slots_says_so(fake_harness, run_args, monkeypatch, capsys):
    monkeypatch.setattr("avo.gpu_pool.visible_gpus", lambda: [0, 1])
    fake_harness()
    evolve(generations=1, population=2, **{**run_args, "device": "cuda"})
    err = capsys.readouterr().err
    from avo.config import HarnessConfig

    slots = 2 * HarnessConfig().pipeline_depth  # 2 GPUs x the default depth
    assert f"--population 2 is below this host's {slots} evaluation slots" in err


def test_two_slots_proposing_one_source_evaluate_it_once(fake_harness, run_args, monkeypatch, tmp_path):
    """Every slot of a generation proposing the same kernel (a heuristic with one untried move
    left did so on an H100: 12 evaluations of one source): one judges it, the rest are
    duplicates, even while that one is still in flight."""
    import time

    from avo.candidate import Candidate, Technique
    from avo.operators.heuristic import HeuristicOperator, set_knobs

    def same_for_every_slot(self, ctx):
        return Candidate(source=set_knobs(ctx.parent_source, {"BLOCK_N": 128}), parent=ctx.parent_version,
                         operator="heuristic", generation=ctx.generation,
                         technique=Technique(name="BLOCK_N=128", why="the one move left"))

    monkeypatch.setattr(HeuristicOperator, "vary", same_for_every_slot)
    params = tmp_path / "params.yaml"
    params.write_text(params.read_text() + "evolve:\n  cpu_eval_slots: 4\n")  # all four in flight at once
    fake = fake_harness()
    slow = fake.__call__

    def judge_slowly(source, **kw):
        time.sleep(0.5)  # the first evaluation is still running when the others start
        return slow(source, **kw)

    monkeypatch.setattr("flows.generation.harness_evaluate", judge_slowly)
    s = evolve(generations=1, population=4, **run_args)
    sources = Counter(c["source"] for c in fake.calls)
    assert len(fake.calls) == 2 and max(sources.values()) == 1  # the seed, then the proposal once
    assert s.evaluated == 1
