"""avo.population: typed attempts, the history queries and the one stagnation rule."""
from avo.population import Attempt, Population


def rec(generation, name, committed=False, sha="s", status="ok", operator="heuristic", device="cpu", suite="cpu"):
    return {"generation": generation, "technique": {"name": name}, "committed": committed, "status": status,
            "operator": operator, "source_sha256": sha, "device": device, "suite": suite,
            "geomean_tflops": 1.5, "reason": "below the margin", "version": 1 if committed else None}


SEED = [rec(0, "seed", True, operator="seed", sha="seed")]


def test_attempts_are_typed_and_keep_their_line():
    a = Attempt.from_record(rec(2, "BLOCK_N=128", sha="abc"))
    assert a.generation == 2 and a.technique == "BLOCK_N=128" and a.source_sha256 == "abc" and not a.committed
    assert a.record["reason"] == "below the margin" and "not committed" in a.describe()


def test_tried_matches_source_device_and_suite():
    pop = Population.from_records(SEED + [rec(1, "x", sha="abc")])
    assert pop.tried("abc", "cpu", "cpu").generation == 1
    assert pop.tried("abc", "cuda", "avo") is None and pop.tried("nope", "cpu", None) is None


def test_since_last_commit_and_stagnation():
    pop = Population.from_records(SEED + [rec(1, "a", True), rec(2, "b"), rec(3, "c")])
    assert pop.last_commit_generation() == 1 and [a.technique for a in pop.since_last_commit()] == ["b", "c"]
    assert not pop.stagnation(3, patience=3).triggered
    assert pop.stagnation(4, patience=3).triggered
    repeated = Population.from_records(SEED + [rec(1, "BLOCK_N=128"), rec(1, "block-n 128"), rec(2, "Block_N 128")])
    assert "tried 3 times" in repeated.stagnation(2, patience=5).reason
    assert not repeated.stagnation(2, patience=5, last_review=1).triggered  # quiet after a review


def test_summary_is_the_lineage_attempts_text():
    pop = Population.from_records(SEED + [rec(1, "a", True)])
    text = pop.summary(5)
    assert text.startswith("Last 2 attempts") and "committed as v1" in text
    assert Population([]).summary() == "Attempts: none yet."
    assert pop.before(1).attempts == pop.attempts[:1]


def test_an_attempt_line_keeps_where_the_evaluation_time_went():
    """The judge's stage clock and its seconds inside timed batches go into attempts.jsonl,
    so a run's throughput can be read back per stage (benchmarks/evolve_stages.py)."""
    from avo.candidate import Candidate, Technique
    from avo.population import attempt_record
    from avo.records import EvalResult

    cand = Candidate(source="x = 1\n", parent=0, operator="heuristic", technique=Technique(name="BLOCK_N=64"))

    result = EvalResult(status="ok", device="cuda", suite="avo")
    result.env.update(stage_s={"load": 8.0, "compile": 20.5, "screen": 3.1}, kernel_s=0.61)
    line = attempt_record(cand, result, None)
    assert line["stage_s"] == {"load": 8.0, "compile": 20.5, "screen": 3.1} and line["kernel_s"] == 0.61
    bare = attempt_record(cand, EvalResult(status="crashed"), None)
    assert bare["stage_s"] == {} and bare["kernel_s"] is None


def test_an_attempt_line_keeps_the_shared_gpu_guards_record():
    """A candidate timed on a shared GPU says so in attempts.jsonl (and why it did not commit)."""
    from avo.candidate import Candidate, Technique
    from avo.population import attempt_record
    from avo.records import EvalResult

    cand = Candidate(source="x = 1\n", parent=0, operator="heuristic", technique=Technique(name="BLOCK_N=64"))
    result = EvalResult(status="ok", device="cuda", suite="avo")
    shared = [{"when": "during a 2.0 s hold", "pids": {"77": {"sm": 90, "what": "python3 (parent 1)"}}}]
    result.env.update(gpu_sharing_guard="on", gpu_shared=shared, gpu_shared_first_try=shared,
                      gpu_quiet_waits=[{"s": 3.0, "pids": {}}])
    line = attempt_record(cand, result, None)
    assert line["gpu_sharing_guard"] == "on" and line["gpu_shared"] == line["gpu_shared_first_try"] == shared
    assert line["gpu_quiet_waits"] == [{"s": 3.0, "pids": {}}]
    assert attempt_record(cand, EvalResult(status="ok"), None)["gpu_shared"] == []


def test_a_record_whose_judge_was_killed_judged_nothing_and_frees_its_source():
    """A stop gone wrong (or a harness crash) kills the judge: the record stays in the log, but the
    source counts as not judged, its claim is let go, and a later slot may judge it again."""
    killed = {**rec(1, "ok", sha="k"), "status": "crashed", "message": "the judge killed by signal SIGKILL"}
    own = {**rec(1, "ok", sha="c"), "status": "crashed", "message": "mha (check): the runner died (signal 11)"}
    pop = Population.from_records(SEED)
    assert pop.claim("k", "cpu", "cpu") and pop.claim("c", "cpu", "cpu")
    pop.add(killed)
    pop.add(own)
    assert pop.tried("k", "cpu", "cpu") is None and pop.tried("c", "cpu", "cpu").status == "crashed"
    assert "k" not in pop.judging("cpu", "cpu") and pop.claim("k", "cpu", "cpu")  # free to judge again
    assert not pop.claim("c", "cpu", "cpu")  # the candidate's own crash is a verdict
    harness = {**killed, "message": "harness judge: RuntimeError: boom"}
    assert Population.from_records([harness]).tried("k", "cpu", "cpu") is None
