"""benchmarks/evolve_stages.py: an evolve run's throughput read back from its leg log and
attempts.jsonl (the figures the README quotes for the 4-GPU run)."""
import importlib.util
import json
from datetime import datetime, timezone
from pathlib import Path

spec = importlib.util.spec_from_file_location("evolve_stages", Path(__file__).parents[1] / "benchmarks/evolve_stages.py")
evolve_stages = importlib.util.module_from_spec(spec)
spec.loader.exec_module(evolve_stages)


def attempt(epoch, stage, held, stopped="", committed=False):
    return {"time": datetime.fromtimestamp(epoch, timezone.utc).isoformat(), "device": "cuda", "gpu_id": 0,
            "technique": {"name": "BLOCK_N=64"}, "status": "ok", "stage": stage, "stopped": stopped,
            "committed": committed, "version": 5 if committed else None, "gpu_held": held,
            "stage_s": {"load": 8.0, "screen": 3.0}, "kernel_s": 0.6, "geomean_tflops": 600.0, "wall_s": 40.0}


def test_counts_the_attempts_inside_each_leg_per_gpu_minute(tmp_path):
    log = tmp_path / "legs.log"
    log.write_text("0, NVIDIA H200, ...\n== leg start 1000 gpus=0,1,2,3 seconds=240\nnoise\n== leg end 1300 rc=0\n"
                   "== leg start 2000 gpus=0,1 seconds=60\n== leg end 2060 rc=137\n")
    lines = [attempt(900, "screen", [[1.0, 2.0]], stopped="screened out"),  # before the first leg: not counted
             attempt(1100, "screen", [[1.0, 4.0]], stopped="screened out"),
             attempt(1200, "screen", [[1.0, 6.0]], stopped="screened out"),
             attempt(1290, "full", [[1.0, 15.0], [20.0, 22.0]], committed=True),
             attempt(2030, "full", [[1.0, 11.0]])]
    attempts = tmp_path / "attempts.jsonl"
    attempts.write_text("".join(json.dumps(a) + "\n" for a in lines) + "{torn line\n")
    s = evolve_stages.summarise(evolve_stages.read_legs(log), evolve_stages.read_attempts(attempts))
    one, two = s["legs"]
    assert (one["evaluated"], one["minutes"], one["gpus"], one["committed"]) == (3, 5.0, 4, 1)
    assert one["per_gpu_minute"] == round(3 / 5 / 4, 3) and one["median_lock_s_screened_out"] == 4.0
    assert one["median_lock_s_full"] == 16.0  # both holds of one evaluation
    # once warm: 2 more results in the 190 s from the first (at 100 s) to the last, on 4 GPUs
    assert one["first_result_s"] == 100.0 and one["warm_per_gpu_minute"] == round(2 / (190 / 60) / 4, 3)
    assert (two["evaluated"], two["per_gpu_minute"]) == (1, 0.5)
    assert two["warm_per_gpu_minute"] is None  # one result: no rate
    assert s["evaluated"] == 4 and s["gpu_minutes"] == 22.0 and s["per_gpu_minute"] == round(4 / 22, 3)


def test_evaluations_in_flight_are_their_walls_over_the_span_they_cover():
    # three 40 s evaluations ending at 100, 100 and 140: span 60..140 (80 s), 120 s of walls
    recs = [{"epoch": e, "wall_s": 40.0} for e in (100.0, 100.0, 140.0)]
    assert evolve_stages.in_flight(recs) == 120 / 80
    assert evolve_stages.in_flight(recs[:1]) is None


def test_the_shared_gpu_guards_record_is_summed_per_leg(tmp_path):
    log = tmp_path / "legs.log"
    log.write_text("== leg start 1000 gpus=0 seconds=240\n== leg end 1300 rc=0\n")
    quiet = attempt(1100, "screen", [[1.0, 2.0]], stopped="screened out")
    quiet.update(gpu_sharing_guard="on", stage_s={"gpu_quiet": 12.5},
                 gpu_quiet_waits=[{"s": 12.5, "pids": {"77": {"sm": 100, "what": "python3 (parent 1)"}}}])
    again = attempt(1200, "screen", [[1.0, 2.0]], stopped="screened out")
    again.update(gpu_sharing_guard="on", gpu_shared_first_try=[{"when": "during a 2.0 s hold", "pids": {}}])
    shared = attempt(1250, "full", [[1.0, 9.0]])
    shared.update(gpu_sharing_guard="off: NVML unavailable", gpu_shared=[{"when": "during a 8.0 s hold", "pids": {}}])
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(a) + "\n" for a in (quiet, again, shared)))
    leg, = evolve_stages.summarise(evolve_stages.read_legs(log), evolve_stages.read_attempts(tmp_path / "a.jsonl"))["legs"]
    assert (leg["guard_on"], leg["gpu_quiet_s"], leg["waited_for_quiet"]) == (2, 12.5, 1)
    assert (leg["judged_again"], leg["still_shared"]) == (1, 1)


def test_a_record_whose_judge_was_killed_is_not_an_evaluation(tmp_path):
    """A stop gone wrong kills judges and records their candidates as crashed: no verdict, so
    not counted as evaluated (said apart); a candidate's own crash still counts."""
    log = tmp_path / "legs.log"
    log.write_text("== leg start 1000 gpus=0 seconds=60\n== leg end 1060 rc=124\n")
    killed = {**attempt(1050, None, []), "status": "crashed", "message": "the judge killed by signal SIGKILL"}
    own = {**attempt(1040, None, []), "status": "crashed", "message": "mha b8 (check): the runner died (signal 11)"}
    lines = [attempt(1010, "screen", [[1.0, 2.0]], stopped="screened out"), own, killed]
    attempts = tmp_path / "attempts.jsonl"
    attempts.write_text("".join(json.dumps(a) + "\n" for a in lines))
    leg, = evolve_stages.summarise(evolve_stages.read_legs(log), evolve_stages.read_attempts(attempts))["legs"]
    assert leg["evaluated"] == 2 and leg["judge_killed_not_counted"] == 1


def test_unlocked_work_and_batch_seconds_are_summed_per_leg(tmp_path):
    log = tmp_path / "legs.log"
    log.write_text("== leg start 1000 gpus=0 seconds=60\n== leg end 1060 rc=124\n")
    a = attempt(1010, "screen", [[1.0, 2.0]], stopped="screened out")
    a.update(gpu_busy_unlocked=[{"pid": 1, "stage": "compile: mha b2 s4096", "sm": 80, "samples": 1},
                                {"pid": 2, "stage": "compile: gqa b1 s4096", "sm": 30, "samples": 1}],
             batch_s={"timed": {"stage": 1.5, "run": 0.5, "verify": 1.0}})
    b = attempt(1020, "screen", [[3.0, 4.0]], stopped="screened out")
    b.update(gpu_busy_unlocked=[{"pid": 3, "stage": "compile: helpers", "sm": 40, "samples": 2}],
             batch_s={"timed": {"stage": 0.5, "run": 0.5}})
    attempts = tmp_path / "attempts.jsonl"
    attempts.write_text("".join(json.dumps(x) + "\n" for x in (a, b)))
    leg, = evolve_stages.summarise(evolve_stages.read_legs(log), evolve_stages.read_attempts(attempts))["legs"]
    assert leg["busy_unlocked_by_stage"] == {"compile: a call": 1, "compile: helpers": 1}  # candidates, not calls
    assert leg["batch_s"] == {"timed": {"stage": 2.0, "run": 1.0, "verify": 1.0}}
