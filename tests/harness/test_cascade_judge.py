"""The judge's cascade stages, on the interpreter: screen and gate, confirmation re-measure."""
import tempfile
from pathlib import Path

import pytest

from avo.harness.judge import QUICK_CHECKS
from avo.harness.runner import Stages, evaluate
from avo.problem import DEFAULT_PROBLEM, load_problem

problem = load_problem(Path(DEFAULT_PROBLEM))

SEED = Path("kernel_src/attention/seeds/fa2.py").read_text()
SCREEN = ("mha b1 s128 d64 full fp16",)


def test_a_candidate_below_the_gate_stops_after_the_screen():
    lock = Path(tempfile.mkdtemp()) / "gpu0.timing.lock"
    r = evaluate(SEED, device="cpu", stages=Stages(screen=SCREEN, gate_tflops=1e6, gpu_lock=str(lock)))
    assert r.status == "ok" and r.cascade["stage"] == "screen"
    assert r.cascade["stopped"].startswith("screened out") and r.cascade["gate_tflops"] == 1e6
    assert [t.config for t in r.timings] == list(SCREEN) and r.heldout == []  # the rest never ran
    assert "full" not in r.env["stage_s"] and "recheck" not in r.env["stage_s"]
    assert r.confirm == {}
    assert r.env["kernel_s"] > 0
    # where the judge's time went, per phase: staging inputs, the clock's span, verifying
    parts = r.env["batch_s"]
    assert set(parts) >= {"compile", "check", "timed"} and all(v >= 0 for p in parts.values() for v in p.values())
    assert set(parts["timed"]) == {"stage", "run", "verify"} and parts["timed"]["run"] >= r.env["kernel_s"]
    # a quick check before the screen; the other check shapes only for candidates past the gate
    assert len({c.shape for c in r.checks if c.phase == "check"}) == QUICK_CHECKS
    # the GPU lock was taken once, for check + screen, and released
    (start, end), = r.env["gpu_held"]
    assert end > start and "gpu_wait" in r.env["stage_s"]


def test_a_candidate_that_beats_the_best_is_confirmed_in_turns_with_it():
    slow_best = SEED.replace("# ", "# the best: ", 1)  # another source, same kernel
    r = evaluate(SEED, device="cpu", stages=Stages(screen=SCREEN, gate_tflops=1e-9, confirm_source=slow_best,
                                                   best_version=3, best_sha256="x", best_geomean=1e-9,
                                                   floor=0.01, confirm_rounds=2))
    assert r.status == "ok", r.message
    assert r.cascade["stage"] == "full" and not r.cascade["stopped"]
    assert len(r.timings) == 2 and len(r.heldout) == 1  # the screen's row counts in the full suite
    checked = {c.shape for c in r.checks if c.phase == "check"}
    assert len(checked) == len(problem.check_shapes("cpu")) > QUICK_CHECKS  # past the gate: every check shape
    c = r.confirm
    assert c["best_version"] == 3 and c["rounds"] == 2 and c["configs"] == list(SCREEN)
    assert len(c["best_ms"]) == len(c["candidate_ms"]) == 2 and all(len(x) == 1 for x in c["best_ms"])
    assert c["ratio"] > 0 and c["spread"] >= 0
    assert r.env["stage_s"]["confirm"] > 0


def test_no_confirmation_when_the_full_suite_does_not_beat_the_best():
    r = evaluate(SEED, device="cpu", stages=Stages(screen=SCREEN, gate_tflops=None, confirm_source=SEED,
                                                   best_version=3, best_geomean=1e9, floor=0.01))
    assert r.status == "ok" and r.cascade["stage"] == "full"
    assert r.confirm == {} and "confirm" not in r.env["stage_s"]


def test_a_broken_best_cannot_confirm_anything():
    broken = SEED.replace("def attention(", "def _attention_unused(", 1) + "\n\ndef attention(q, k, v, causal=False, sm_scale=None):\n    return q * 0\n"
    r = evaluate(SEED, device="cpu", static_checks=False,
                 stages=Stages(screen=SCREEN, gate_tflops=None, confirm_source=broken, best_version=1,
                               best_geomean=1e-9, floor=0.0, confirm_rounds=1))
    assert r.status != "ok" and r.confirm == {}


def test_the_gpu_lock_taken_inside_its_own_hold_does_not_wait_for_itself(tmp_path):
    """Past the gate, uncached held-out baselines are timed inside the check-and-time hold:
    the inner take must not flock the file again (it would wait for this judge forever)."""
    import fcntl
    import os
    import threading

    from avo.harness.judge_stages import CascadeStages
    from avo.records import EvalResult

    class Stub(CascadeStages):
        def __init__(self):
            self.job, self.result, self.stage_s = {"gpu_lock": str(tmp_path / "gpu0.lock")}, EvalResult(status="ok"), {}

    judge, seen = Stub(), {}

    def nested():
        with judge.gpu_lock():
            with judge.gpu_lock():  # e.g. baselines_for inside cascade()
                fd = os.open(tmp_path / "gpu0.lock", os.O_RDWR)
                try:  # another judge (another descriptor) is still kept out
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    seen["other_got_it"] = True
                except BlockingIOError:
                    seen["other_got_it"] = False
                finally:
                    os.close(fd)
        seen["done"] = True

    t = threading.Thread(target=nested, daemon=True)
    t.start()
    t.join(10)
    assert seen.get("done"), "the nested take waited for its own hold"
    assert seen["other_got_it"] is False
    assert len(judge.result.env["gpu_held"]) == 1  # one hold, recorded once
    fd = os.open(tmp_path / "gpu0.lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released at the end
    os.close(fd)


def stub_judge(device, screen=()):
    from avo.harness.judge import Judge
    from avo.records import EvalResult

    judge = object.__new__(Judge)
    judge.device, judge.problem = device, problem
    judge.job = {"suite": "avo", "configs": None, "screen": list(screen)}
    judge.quick, judge.seeds = False, [11, 12, 13, 14, 15, 16]
    judge.result = EvalResult(status="ok")
    return judge


@pytest.mark.parametrize("device", ["cuda", "cpu"])
def test_on_a_gpu_every_check_and_timed_shape_is_compiled_before_the_lock(device):
    """The compile stage (outside the GPU lock) compiles each check shape itself on a GPU, and
    the compile shapes of the suite and this run's held-out draws, so that the checking and
    timing stages compile nothing while they hold the GPU; on the interpreter (nothing
    compiles) the problem's variants of the check and suite shapes are enough."""
    judge, called = stub_judge(device), []
    judge.verified_batch = lambda host, shape, n, phase, **kw: called.append((shape, phase, n, kw["launch"]))
    judge.compile(None, judge.compile_plan())
    shapes = [c[0] for c in called]
    assert all(phase == "compile" and n == 1 for _, phase, n, _ in called)
    variants = problem.compile_shapes(problem.check_shapes(device) + problem.SUITES["avo"])
    if device == "cuda":
        checks = problem.check_shapes("cuda")
        assert set(checks) <= set(shapes)
        held_out = judge.held_out_shapes()
        assert held_out and set(problem.compile_shapes(problem.SUITES["avo"] + held_out)) <= set(shapes)
        # outside the lock nothing launches (compile_only.py): every check shape runs, under it
        assert not any(launch for *_, launch in called)
    else:  # the interpreter runs (and the judge verifies) every call
        assert shapes == variants and all(launch for *_, launch in called)
        assert judge.compile_plan("rest") == []
    assert judge.result.compile_stats["compile_s"] >= 0


def test_a_screened_candidate_compiles_only_what_the_screen_runs_before_the_gate():
    """With a screen, the compile stage calls the screen configs' compile shapes and the
    quick check's shapes; the rest (the other timed and check shapes) is compiled past the
    gate. Together they are the whole plan, and neither repeats the other."""
    screen = [s.name for s in problem.SUITES["avo"][::4]]
    judge = stub_judge("cuda", screen)
    first, rest, every = judge.compile_plan("screen"), judge.compile_plan("rest"), judge.compile_plan("all")
    assert set(first) | set(rest) == set(every) and not set(first) & set(rest)
    chosen = [s for s in problem.SUITES["avo"] if s.name in screen]
    assert set(first) == set(problem.compile_shapes(chosen)) | set(problem.check_shapes("cuda")[:QUICK_CHECKS])
    assert len(first) < len(every) / 2  # most candidates stop at the screen
    with pytest.raises(ValueError):
        judge.compile_plan("everything")


def test_the_gpu_lock_let_go_inside_a_hold_lets_another_judge_in_and_is_taken_back(tmp_path):
    """Past the gate the judge compiles what the screen did not need with the lock let go:
    another judge gets the GPU meanwhile; then this one waits for it again. Both holds are
    recorded (the benchmark checks that no two judges' holds overlap)."""
    import fcntl
    import os

    from avo.harness.judge_stages import CascadeStages
    from avo.records import EvalResult

    class Stub(CascadeStages):
        def __init__(self):
            self.job, self.result, self.stage_s = {"gpu_lock": str(tmp_path / "gpu0.lock")}, EvalResult(status="ok"), {}

    def other_gets_it() -> bool:
        fd = os.open(tmp_path / "gpu0.lock", os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
            return True
        except BlockingIOError:
            return False
        finally:
            os.close(fd)

    judge, seen = Stub(), []
    with judge.gpu_released():  # not held: nothing to let go
        seen.append(judge.result.env.get("gpu_held"))
    with judge.gpu_lock():
        seen.append(other_gets_it())
        with judge.gpu_released():
            seen.append(other_gets_it())
        seen.append(other_gets_it())
    seen.append(other_gets_it())
    assert seen == [None, False, True, False, True]
    (a0, a1), (b0, b1) = judge.result.env["gpu_held"]
    assert a0 <= a1 <= b0 <= b1


def test_the_screen_stops_once_the_gate_is_out_of_reach_even_at_the_peak():
    """Two screen configs and a gate at 90% of the interpreter's 'peak': after the first, even
    the peak on the second cannot lift the geomean to the gate, so the second is never timed."""
    from avo.harness.peak import INTERPRETER_PEAK

    screen = tuple(s.name for s in problem.SUITES["cpu"])
    assert len(screen) == 2
    lock = Path(tempfile.mkdtemp()) / "gpu0.timing.lock"
    r = evaluate(SEED, device="cpu", stages=Stages(screen=screen, gate_tflops=0.9 * INTERPRETER_PEAK,
                                                   gpu_lock=str(lock)))
    assert r.status == "ok" and r.cascade["stage"] == "screen"
    assert [t.config for t in r.timings] == [screen[0]]
    assert "stopped after 1 of 2 screen configs" in r.cascade["stopped"]


@pytest.mark.parametrize("per_call_s,expected_n", [(0.001, 24), (0.0012, 24), (0.010, 3), (0.050, 2)])
def test_a_kernel_far_slower_than_the_estimate_gets_batches_of_the_same_length(per_call_s, expected_n):
    """Batches are sized from cuDNN's time per call to last ~25 ms; a kernel more than twice as
    slow (its warm-up says so) gets fewer calls per batch, still >= 2 and ~25 ms long, instead
    of holding the GPU lock for its whole slowness times the cuDNN-sized count."""
    judge = stub_judge("cuda")
    judge.kernel_s, batches = 0.0, []
    judge.max_calls = lambda shape: 24

    def batch(host, shape, n, phase, **kw):
        batches.append((phase, n))
        return n * per_call_s

    judge.verified_batch = batch
    row = judge.time_shape(None, problem.SUITES["avo"][0], est_s=0.001)
    timed = [n for phase, n in batches if phase == "timed"]
    assert batches[0] == ("timed/warm-up", 3) and timed == [expected_n] * 3
    assert row.calls == 3 * expected_n and abs(row.ms - per_call_s * 1e3) < 1e-9
