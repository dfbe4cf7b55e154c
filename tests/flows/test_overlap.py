"""Overlapping generations (evolve.overlap_generations): generation g+1 starts once no
evaluation of g waits for a device slot, so the slots stay full across the boundary; at
most two generations in flight, ended in order; one source judged once across both; one
commit at a time; a killed run resumes both. Real flows (Prefect test harness), a fake
harness whose evaluations take set times; CPU slots stand in for a GPU's."""
import json
from pathlib import Path
import threading
import time
from collections import Counter

import pytest
from prefect import task
from prefect.cache_policies import NO_CACHE

from avo import live
from avo.candidate import source_sha256
from avo.lineage import Lineage
from avo.run_state import state_path
from flows import evolve as evolve_module
from flows.evolve import evolve


class TimedHarness:
    """The fake harness, each call taking `delay(n)` seconds (n: the call's number; 0 is the
    seed), and the time each call ran: [source, start, end]."""

    def __init__(self, fake, delay, fail_on: int | None = None):
        self.fake, self.delay, self.fail_on = fake, delay, fail_on
        self.calls: list[list] = []
        self.lock = threading.Lock()

    def __call__(self, source, **kw):
        with self.lock:
            n = len(self.calls)
            self.calls.append([source, time.monotonic(), None])
        time.sleep(self.delay(n))
        if n == self.fail_on:
            raise RuntimeError("injected failure")
        result = self.fake(source, **kw)
        self.calls[n][2] = time.monotonic()
        return result


def _install(monkeypatch, fake_harness, delay, fail_on=None) -> TimedHarness:
    timed = TimedHarness(fake_harness(), delay, fail_on)
    monkeypatch.setattr("flows.generation.harness_evaluate", timed)
    return timed


def _params(run_args, **evolve_keys):
    with open(run_args["params_path"], "a") as f:
        f.write("evolve:\n" + "".join(f"  {k}: {json.dumps(v)}\n" for k, v in evolve_keys.items()))


def _generation_of(run_args) -> dict:
    return {a["source_sha256"]: a["generation"] for a in Lineage(run_args["lineage_root"]).attempts()}


def _idle_slot_seconds(calls, slots: int, since: float, until: float) -> float:
    """Slot-seconds with fewer than `slots` evaluations running between `since` and `until`."""
    events = sorted([(s, 1) for _, s, _ in calls] + [(e, -1) for _, _, e in calls if e is not None])
    idle, running, t = 0.0, 0, since
    for when, step in events:
        if when > until:
            break
        if when > since:
            idle += max(0, slots - running) * (when - t)
            t = when
        running += step
    return idle + max(0, slots - running) * max(0.0, until - t)


def _run_with_one_slow_candidate(monkeypatch, fake_harness, run_args, overlap: bool):
    """2 slots, 2 generations of 4: generation 1's first candidate takes 6 s, the rest 0.8 s."""
    _params(run_args, cpu_eval_slots=2, overlap_generations=overlap)
    timed = _install(monkeypatch, fake_harness, lambda n: 6.0 if n == 1 else (0.0 if n == 0 else 0.8))
    s = evolve(generations=2, population=4, **run_args)
    assert s.finished and s.generations == [1, 2]
    generation = _generation_of(run_args)
    candidates = timed.calls[1:]
    slow = candidates[0]
    assert generation[source_sha256(slow[0])] == 1
    second = [c for c in candidates if generation.get(source_sha256(c[0])) == 2]
    assert len(second) == 4
    first, last = candidates[0][1], max(c[1] for c in candidates)  # while work remained
    second_starts = min(c[1] for c in second)
    return slow, second_starts, _idle_slot_seconds(candidates, 2, first, last), \
        _idle_slot_seconds(candidates, 2, second_starts, last)


def test_the_next_generation_fills_the_slots_while_a_slow_candidate_runs(fake_harness, run_args, monkeypatch):
    slow, second_starts, idle, idle_after = _run_with_one_slow_candidate(monkeypatch, fake_harness, run_args, True)
    assert second_starts < slow[2]  # generation 2 started evaluating before the slow one ended
    # from then on both slots stay busy while work remains, but for the hand-overs (lease polling)
    assert idle_after < 0.5, idle_after
    # before it, the slot idles only while generation 2's flow starts (~2 s in Prefect's test
    # harness; a GPU candidate's evaluation, 3-53 s, covers it)
    assert idle < 3.0, idle


def test_without_overlap_the_next_generation_waits_for_the_slowest(fake_harness, run_args, monkeypatch):
    slow, second_starts, idle, _ = _run_with_one_slow_candidate(monkeypatch, fake_harness, run_args, False)
    assert second_starts >= slow[2]  # the barrier: today's order
    assert idle > 4.0, idle  # one slot idled while the slow candidate finished alone, then the flow started


class Reviews:
    """A supervisor that records what it was asked, in order."""

    def __init__(self):
        self.asked: list[tuple[int, int]] = []

    def review(self, lineage, generation, since_commit):
        self.asked.append((generation, since_commit))
        return None


def test_at_most_two_generations_in_flight_and_they_end_in_order(fake_harness, run_args, monkeypatch):
    """Generation 1 has a slow candidate: 2 may run beside it and finish first, but 3 does
    not start before 1 has ended, and 1 is reviewed before 2."""
    _params(run_args, cpu_eval_slots=2)
    _install(monkeypatch, fake_harness, lambda n: 3.0 if n == 1 else (0.0 if n == 0 else 0.3))
    reviews = Reviews()
    monkeypatch.setattr(evolve_module, "make_supervisor", lambda settings: reviews)
    in_flight, peak, spans, lock = set(), [0], {}, threading.Lock()
    run_generation = evolve_module.run_generation.fn

    @task(name="run-generation", cache_policy=NO_CACHE)
    def counted(generation_flow, settings, state, tracker, number, all_leased):
        with lock:
            in_flight.add(number)
            peak[0] = max(peak[0], len(in_flight))
            spans[number] = [time.monotonic(), None]
        try:
            return run_generation(generation_flow, settings, state, tracker, number, all_leased)
        finally:
            with lock:
                in_flight.discard(number)
                spans[number][1] = time.monotonic()

    monkeypatch.setattr(evolve_module, "run_generation", counted)
    s = evolve(generations=4, population=2, **run_args)
    assert s.finished and s.generations == [1, 2, 3, 4]
    assert peak[0] == 2  # they did overlap, never three
    assert spans[2][0] < spans[1][1]  # 2 ran beside 1
    assert spans[3][0] >= spans[1][1] and spans[4][0] >= spans[2][1]  # g+2 waits for g
    assert [g for g, _ in reviews.asked] == [1, 2, 3, 4]
    committed = {a["generation"] for a in Lineage(run_args["lineage_root"]).attempts() if a["committed"]}
    since, expected = 0, []
    for g in (1, 2, 3, 4):  # the stagnation count, generation by generation
        since = 0 if g in committed else since + 1
        expected.append((g, since))
    assert reviews.asked == expected
    state = json.loads(state_path(run_args["state_dir"], run_args["lineage_root"]).read_text())
    assert (state["generation"], state["done_slots"], state["done_slots_ahead"]) == (5, [], [])
    assert state["spent"]["generations"] == 4


def test_one_source_proposed_by_both_generations_in_flight_is_judged_once(fake_harness, run_args, monkeypatch):
    from avo.candidate import Candidate, Technique
    from avo.operators.heuristic import HeuristicOperator, set_knobs

    def the_same_kernel(self, ctx):
        return Candidate(source=set_knobs(ctx.parent_source, {"BLOCK_N": 128}), parent=0, operator="heuristic",
                         generation=ctx.generation, technique=Technique(name="BLOCK_N=128", why="the one move"))

    monkeypatch.setattr(HeuristicOperator, "vary", the_same_kernel)
    _params(run_args, cpu_eval_slots=2)
    timed = _install(monkeypatch, fake_harness, lambda n: 0.0 if n == 0 else 3.0)
    skipped = []
    live.subscribe(lambda kind, data: skipped.append((data["generation"], data["detail"]))
                   if kind == "candidate" and data["status"] == "skipped" else None)
    s = evolve(generations=2, population=2, **run_args)
    assert len(timed.calls) == 2 and s.evaluated == 1  # the seed, then the kernel once
    # generation 2 proposed it while generation 1 was still judging it: the shared claim caught it
    assert any(g == 2 and "another slot is evaluating it" in d for g, d in skipped), skipped


def test_concurrent_commits_keep_the_lineage_numbered_without_gaps(fake_harness, run_args, monkeypatch):
    """Both generations in flight commit; one promote at a time (each held open a while here, so
    that two would meet without the lock), versions 0..n, one per committed attempt. The slow part
    is inside avo.promotion's lock, where the lineage is written: a wrapper around the flows' call
    would count the commit tasks waiting for it, which may meet."""
    import avo.promotion as promotion_module

    promote, inside, most, lock = promotion_module._promote, [0], [0], threading.Lock()

    def slow_promote(*args, **kw):
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        try:
            time.sleep(0.3)
            return promote(*args, **kw)
        finally:
            with lock:
                inside[0] -= 1

    monkeypatch.setattr(promotion_module, "_promote", slow_promote)
    _params(run_args, cpu_eval_slots=4)
    _install(monkeypatch, fake_harness, lambda n: 0.0 if n == 0 else 0.2)
    evolve(generations=4, population=4, **run_args)
    lineage = Lineage(run_args["lineage_root"])
    attempts = lineage.attempts()
    numbers = [v.number for v in lineage.versions()]
    assert most[0] == 1
    assert numbers == list(range(len(numbers))) and len(numbers) > 1
    assert sorted(a["version"] for a in attempts if a["committed"]) == numbers
    assert len({a["source_sha256"] for a in attempts}) == len(attempts)


def test_a_run_killed_with_two_generations_in_flight_resumes_both(fake_harness, run_args, monkeypatch):
    """Generation 1's slow candidate crashes the run after generation 2 has finished beside it:
    the journal holds both; the next run evaluates generation 1's missing slot only, nothing of
    generation 2 again, then generation 3."""
    _params(run_args, cpu_eval_slots=2)
    _install(monkeypatch, fake_harness, lambda n: 3.0 if n == 1 else (0.0 if n == 0 else 0.2), fail_on=1)
    with pytest.raises(Exception, match="injected failure"):
        evolve(generations=3, population=2, **run_args)
    journal = json.loads(state_path(run_args["state_dir"], run_args["lineage_root"]).read_text())
    assert journal["status"] == "running"
    # generation 1: the slot that crashed is open; generation 2, which ran beside it, is done
    assert (journal["generation"], len(journal["done_slots"]), journal["done_slots_ahead"]) == (1, 1, [0, 1])
    before = Lineage(run_args["lineage_root"]).attempts()
    assert Counter(a["generation"] for a in before) == {0: 1, 1: 1, 2: 2}

    live.reset()
    timed = _install(monkeypatch, fake_harness, lambda n: 0.1)
    s = evolve(generations=3, population=2, **run_args)
    assert s.resumed and s.finished and s.generations == [1, 2, 3]
    after = Lineage(run_args["lineage_root"]).attempts()
    assert after[:len(before)] == before
    assert Counter(a["generation"] for a in after) == {0: 1, 1: 2, 2: 2, 3: 2}
    assert len(timed.calls) == 3  # generation 1's slot 0, generation 3's two
    assert len({a["source_sha256"] for a in after}) == len(after)


def test_a_lineage_of_many_attempts_does_not_swell_the_generation_flows_parameters(fake_harness, run_args):
    """The run's Population is shared by run id, not passed as a flow parameter: with every attempt
    in it, the H100 lineage's 213 made 709 KB of parameters, and Prefect refused the flow run (its
    limit is 512 KB): the first leg of session 6 ended before its first candidate."""
    fake_harness()
    assert evolve(generations=1, population=2, **run_args).finished
    path = Path(run_args["lineage_root"]) / "attempts.jsonl"
    first = json.loads(path.read_text().splitlines()[-1])
    with path.open("a") as f:
        for i in range(600):  # ~1 MB of attempts
            f.write(json.dumps({**first, "source_sha256": f"{i:064x}", "log_tail": "x" * 1500}) + "\n")
    s = evolve(generations=1, population=2, **run_args)
    assert s.finished and s.evaluated == 2, s
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        runs = [r for r in client.read_flow_runs(limit=200) if r.name == "generation-2" and
                r.parameters.get("state", {}).get("run_id") == s.run_id]
    stored = runs[0].parameters
    assert "population" not in stored and "operator" not in stored  # the run's objects, by run id
    assert len(json.dumps(stored)) < 20_000
