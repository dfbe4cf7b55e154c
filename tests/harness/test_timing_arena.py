"""The timed calls' arena exists only while a judge holds the GPU (judge.py, timing_arena):
evaluations waiting for the lock hold a small compile arena, not the GBs of timing."""
import tempfile
import threading
from pathlib import Path

import pytest

from avo.harness import judge as judge_mod
from avo.harness.calls import Verdict
from avo.harness.candidate_host import make_audit_hook
from avo.harness.judge import Judge
from avo.harness.runner import Stages, evaluate
from avo.records import EvalResult

SEED = Path("kernel_src/attention/seeds/fa2.py").read_text()
SCREEN = ("mha b1 s128 d64 full fp16",)


def test_compiling_uses_a_small_arena_and_timing_a_larger_one_only_inside_the_gpu_lock():
    lock = Path(tempfile.mkdtemp()) / "gpu0.timing.lock"
    r = evaluate(SEED, device="cpu", stages=Stages(screen=SCREEN, gate_tflops=None, gpu_lock=str(lock)))
    assert r.status == "ok", r.message
    assert r.timings and r.checks  # the runner checked and timed in the arena it was handed under the lock
    sizes = r.env["arena_bytes"]
    assert 0 < sizes["compile"] < sizes["timing"]
    held = r.env["gpu_held"]
    for start, end in r.env["timing_arena_held"]:
        assert any(h0 <= start and end <= h1 for h0, h1 in held), (start, end, held)


def test_a_confirmation_holds_the_timing_arena_only_inside_each_rounds_hold():
    """Each round compiles its fresh runner outside the lock, in the small arena."""
    lock = Path(tempfile.mkdtemp()) / "gpu0.timing.lock"
    r = evaluate(SEED, device="cpu", stages=Stages(screen=SCREEN, gate_tflops=1e-9, confirm_source=SEED + "# best\n",
                                                   best_version=3, best_sha256="x", best_geomean=1e-9,
                                                   floor=0.01, confirm_rounds=2, gpu_lock=str(lock)))
    assert r.status == "ok", r.message
    assert r.confirm["rounds"] == 2
    held, arenas = r.env["gpu_held"], r.env["timing_arena_held"]
    assert len(arenas) == 1 + 2 * 2  # the candidate's hold, then best and candidate in each round
    for start, end in arenas:
        assert any(h0 <= start and end <= h1 for h0, h1 in held), (start, end, held)


class FakeArena:
    def __init__(self, nbytes, events):
        self.nbytes, self.events, self.fds = nbytes, events, []
        if nbytes == 1 << 20:
            events.append("allocated")

    def close(self):
        self.events.append("freed")


class FakeRunner:
    def __init__(self, events, dies=True, reply=None, name=""):
        self.events, self.dies, self.reply, self.name = events, dies, reply, name

    def remap_arena(self, arena, timeout_s):
        self.events.append("mapped" + self.name)
        return self.reply if self.reply is not None else {"mapped": arena.nbytes, "violations": []}

    def kill(self):  # once, as Host.kill
        if "killed" + self.name not in self.events:
            self.events.append("killed" + self.name)

    @property
    def proc(self):
        runner = self

        class Proc:
            def poll(self):
                return 0 if runner.dies else None
        return Proc()


def bare_judge(monkeypatch, events):
    judge = Judge.__new__(Judge)
    judge.device, judge.timing_bytes, judge.timing_hosts, judge.stage_s = "cpu", 1 << 20, None, {}
    judge.result = EvalResult(status="ok", device="cpu")
    judge.arena, judge.compile_arena, judge.kept_arenas = FakeArena(4096, events), None, []
    monkeypatch.setattr(judge_mod.arena_mod, "create", lambda device, nbytes: FakeArena(nbytes, events))
    return judge


def test_the_runner_that_mapped_the_timing_arena_is_killed_before_it_is_freed(monkeypatch):
    events = []
    judge = bare_judge(monkeypatch, events)
    small = judge.arena
    with judge.timing_arena(FakeRunner(events)):
        assert judge.arena.nbytes == 1 << 20
        with judge.timing_arena():  # re-entrant: a nested stage uses the one there is
            assert judge.arena.nbytes == 1 << 20
    assert events == ["allocated", "mapped", "killed", "freed"]
    assert judge.arena is small and judge.timing_hosts is None


def test_a_runner_that_will_not_die_keeps_the_arena_allocated(monkeypatch):
    events = []
    judge = bare_judge(monkeypatch, events)
    with judge.timing_arena(FakeRunner(events, dies=False)):
        assert judge.arena.nbytes == 1 << 20  # the timed calls' arena, mapped by the runner
    assert events == ["allocated", "mapped", "killed"]  # never freed: the runner may still write into it
    assert judge.result.env["timing_arena_kept"] is True and judge.kept_arenas


def test_a_runner_that_does_not_confirm_the_new_arena_ends_the_evaluation(monkeypatch):
    events = []
    judge = bare_judge(monkeypatch, events)
    with pytest.raises(Verdict, match="mapping the timing arena"):
        with judge.timing_arena(FakeRunner(events, reply={"mapped": 4096, "violations": []})):
            pytest.fail("timed in an arena the runner did not map")
    assert events == ["allocated", "mapped", "killed", "freed"]


def test_only_the_runners_own_thread_is_let_through_while_it_maps_the_timing_arena():
    hook, state, violations = make_audit_hook([tempfile.gettempdir()])
    state["enforcing"] = True
    state["trusted"] = threading.get_ident()  # this thread maps the arena (candidate_host.main)
    hook("ctypes.call_function", (0, ()))  # its own ctypes calls pass
    refused = []

    def candidate_thread():
        try:
            hook("ctypes.call_function", (0, ()))
        except PermissionError as e:
            refused.append(str(e))

    t = threading.Thread(target=candidate_thread)
    t.start()
    t.join()
    assert refused and violations == ["ctypes.call_function is not allowed"]
    state["trusted"] = None
    with pytest.raises(PermissionError):
        hook("ctypes.call_function", (0, ()))


def test_past_the_gate_the_timing_arena_goes_with_the_lock_and_a_new_runner_compiles_the_rest(monkeypatch):
    """The lock is let go while what the screen did not need compiles: the runner that mapped
    the timing arena is killed and the arena freed before the lock goes (an H100 ran out of
    memory with three judges' arenas at once: two in such a window), a new runner compiles in
    the small arena, and the timing arena is taken again once the lock is back. The screen's
    runner is finished first: its activity report (library compute) and audit record are
    checked, since its timed rows count in the suite."""
    from contextlib import contextmanager

    from avo.records import ConfigTiming

    events = []
    judge = bare_judge(monkeypatch, events)
    judge.job = {"screen": ["a"], "gate_tflops": 1.0, "candidate_path": "k.py"}
    judge.problem, judge.workdir, judge.seeds = None, None, [1, 2, 3, 4, 5, 6]
    suite = [type("Shape", (), {"name": n})() for n in ("a", "b")]

    def time_all(host, shapes, baselines, stop=None):
        events.append("timed" + host.name)
        judge.result.timings += [ConfigTiming(s.name, 1.0, 100.0) for s in shapes]

    @contextmanager
    def gpu_released():
        events.append("lock let go")
        yield
        events.append("lock back")

    monkeypatch.setattr(judge_mod.calls, "entry", lambda problem: "attention")
    judge.time_all, judge.gpu_released, judge.flag_overfit = time_all, gpu_released, lambda: None
    judge.compile_plan = lambda part="all": ["rest-shape"] if part == "rest" else []
    judge.check = lambda host, phase, seed, part=None: events.append(f"{phase}{host.name}")
    judge.verified_batch = lambda host, shape, n, phase, **kw: None
    judge.start = lambda path, entry, what, workdir=None, host=None: FakeRunner(events, name=":new")
    judge.compile = lambda host, todo: events.append(f"compiled {todo}{host.name}")
    judge.finish = lambda host: events.append("finished" + host.name)  # its activity and audit record
    with judge.timing_arena(FakeRunner(events, name=":old")):
        host = judge.cascade(judge.timing_hosts[0], suite, suite, {})
        assert host.name == ":new"
    assert events == ["allocated", "mapped:old", "timed:old",  # the screen
                      "finished:old", "killed:old", "freed", "lock let go", "compiled ['rest-shape']:new", "lock back",
                      "allocated", "mapped:new", "check:new", "timed:new", "recheck:new",
                      "killed:new", "freed"]
    for start, end in judge.result.env["timing_arena_held"]:
        assert start <= end


def test_a_timing_arena_that_cannot_be_allocated_leaves_the_compile_arena_alone(monkeypatch):
    events = []
    judge = bare_judge(monkeypatch, events)
    small = judge.arena

    def out_of_memory(device, nbytes):
        raise MemoryError("no room for the timing arena")

    monkeypatch.setattr(judge_mod.arena_mod, "create", out_of_memory)
    with pytest.raises(MemoryError):
        with judge.timing_arena(FakeRunner(events)):
            pytest.fail("timed without an arena")
    assert judge.arena is small and "freed" not in events  # the runner still maps it
