"""avo/harness/cores.py: the CPU partition (timing CPUs per GPU, work CPUs for the rest),
pinning a process tree, and the judge's GPU lock moving itself and its runners. CPU only."""
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from avo.harness import cores

AVAILABLE = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
needs_two_cpus = pytest.mark.skipif(len(AVAILABLE) < 2 or bool(cores.unsupported()),
                                    reason=cores.unsupported() or f"only {len(AVAILABLE)} CPU available: "
                                    "nothing to move a process to")


@pytest.fixture
def restore_affinity():
    """Tests that pin this very process (the judge's lock does) put it back afterwards."""
    before = os.sched_getaffinity(0)
    yield before
    cores.pin_tree(os.getpid(), before)
    assert os.sched_getaffinity(0) == before


@pytest.fixture
def no_topology(monkeypatch):
    monkeypatch.setattr(cores, "siblings", lambda cpu: {cpu})  # every CPU a core of its own


def affinity_of_tree(pid: int) -> dict[int, set[int]]:
    """tid -> CPUs for every thread of pid and of its descendants."""
    out = {}
    for proc in [pid, *cores.descendants(pid)]:
        for tid in os.listdir(f"/proc/{proc}/task"):
            try:
                out[int(tid)] = os.sched_getaffinity(int(tid))
            except ProcessLookupError:
                pass
    return out


# ---------------------------------------------------------------- plan
def test_each_gpu_gets_its_own_timing_cpus_and_the_rest_are_work_cpus(no_topology):
    plan = cores.plan(4, 2, available=set(range(64)))
    assert list(plan.timing) == [0, 1, 2, 3]
    sets = [set(cpus) for cpus in plan.timing.values()]
    assert all(len(s) == 2 for s in sets)
    assert len(set().union(*sets)) == 8  # disjoint
    assert not set().union(*sets) & set(plan.work)
    assert set().union(*sets) | set(plan.work) == set(range(64)) and len(plan.work) == 56
    assert min(set().union(*sets)) == 56  # from the end of the list, away from CPU 0
    assert plan.work == tuple(sorted(plan.work))


def test_hyperthread_siblings_time_together(monkeypatch):
    """Two hyperthreads per core, siblings (c, c+8): a GPU's two timing CPUs are one whole
    core, so no compiler shares that core with the judge that times."""
    monkeypatch.setattr(cores, "siblings", lambda cpu: {cpu % 8, cpu % 8 + 8})
    plan = cores.plan(2, 2, available=set(range(16)))
    assert plan.timing == {0: (6, 14), 1: (7, 15)}
    assert plan.work == (0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13)
    assert plan.describe() == "CPUs 6,14 time on GPU 0; 7,15 on GPU 1; 0-5,8-13 load and compile"


def test_no_partition_without_enough_cpus_or_with_zero_per_gpu(no_topology):
    assert cores.plan(1, 2, available={0, 1}) is None  # a 2-core CI machine
    assert cores.plan(4, 2, available=set(range(9))) is None  # 1 CPU would be left for work
    edge = cores.plan(4, 2, available=set(range(10)))  # 2 left: enough
    assert edge is not None and len(edge.work) == cores.MIN_WORK_CPUS
    assert cores.plan(1, 0, available=set(range(64))) is None
    plan, why = cores.plan_or_reason(1, 2, available={0, 1})
    assert plan is None and "2 CPUs here" in why and "leave 0" in why
    assert cores.plan_or_reason(1, 0, available=set(range(8)))[1] == "harness.timing_cpus_per_gpu is 0"


def test_a_plan_keys_gpus_as_the_run_names_them_and_is_json_friendly(no_topology):
    plan = cores.plan(2, 1, available={0, 1, 2, 3, 5}, ids=[2, "GPU-ab12"])
    assert plan.timing == {2: (3,), "GPU-ab12": (5,)} and plan.work == (0, 1, 2)
    assert plan.timing_for(2) == plan.timing_for("2") == (3,) and plan.timing_for(7) == ()
    assert json.loads(json.dumps(plan.to_dict())) == {"timing": {"2": [3], "GPU-ab12": [5]}, "work": [0, 1, 2]}
    with pytest.raises(ValueError):
        cores.plan(3, 1, available=set(range(8)), ids=[0, 1])


def test_cpu_lists_read_and_write_as_the_kernel_writes_them():
    assert cores.parse_cpu_list("0-3,8,10-11\n") == {0, 1, 2, 3, 8, 10, 11}
    assert cores.cpu_list({0, 1, 2, 3, 8, 10, 11}) == "0-3,8,10-11"
    assert cores.cpu_list([]) == "-"


# ---------------------------------------------------------------- pin_tree
CHILD = """
import subprocess, sys, threading
stop = threading.Event()
threading.Thread(target=stop.wait, daemon=True).start()
grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
print(grandchild.pid, flush=True)
sys.stdin.read()
grandchild.kill(); grandchild.wait()
"""


@needs_two_cpus
def test_pin_tree_moves_every_thread_of_a_process_and_of_its_descendants():
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        grandchild = int(child.stdout.readline())
        mine = os.sched_getaffinity(0)
        for target in (min(AVAILABLE), max(AVAILABLE)):  # two different CPUs: each readback must follow
            counts = {}
            moved = cores.pin_tree(child.pid, {target}, counts)
            tree = affinity_of_tree(child.pid)
            assert len(tree) >= 3  # the child's main thread and its thread, the grandchild
            assert all(cpus == {target} for cpus in tree.values()), tree
            assert os.sched_getaffinity(grandchild) == {target}
            assert moved == len(tree) and counts["processes"] == 2 and counts["refused"] == 0
        assert os.sched_getaffinity(0) == mine  # the caller was not moved
        cores.pin_tree(child.pid, AVAILABLE)
        assert all(cpus == AVAILABLE for cpus in affinity_of_tree(child.pid).values())
    finally:
        child.stdin.close()
        child.wait(10)
    counts = {}
    assert cores.pin_tree(child.pid, AVAILABLE, counts) == 0 and counts["vanished"] == 1  # gone: skipped


@needs_two_cpus
def test_a_process_started_after_the_pin_inherits_it(restore_affinity):
    target = max(AVAILABLE)
    cores.pin_tree(os.getpid(), {target})
    late = subprocess.Popen([sys.executable, "-c", "import os; print(sorted(os.sched_getaffinity(0)))"],
                            stdout=subprocess.PIPE, text=True)
    assert late.communicate(timeout=30)[0].strip() == f"[{target}]"


# ---------------------------------------------------------------- the judge's lock
def stub_judge(tmp_path, **job):
    from avo.harness.judge_stages import CascadeStages
    from avo.records import EvalResult

    class Stub(CascadeStages):
        def __init__(self):
            self.job = {"gpu_lock": str(tmp_path / "gpu0.lock"), **job}
            self.result, self.stage_s = EvalResult(status="ok"), {}

    return Stub()


def sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


@needs_two_cpus
def test_the_gpu_lock_moves_the_judge_and_its_runners_to_the_timing_cpus_and_back(tmp_path, restore_affinity):
    timing, work = max(AVAILABLE), min(AVAILABLE)
    judge = stub_judge(tmp_path, timing_cpus=[timing], work_cpus=[work])
    runner = sleeper()  # started before the lock, like the candidate's runner
    later = None
    seen = []
    try:
        with judge.gpu_lock():
            seen.append(("held", os.sched_getaffinity(0), os.sched_getaffinity(runner.pid)))
            later = sleeper()  # started inside the hold, like confirm()'s and the baselines' runners
            seen.append(("started inside", os.sched_getaffinity(later.pid)))
            with judge.gpu_released():
                seen.append(("released", os.sched_getaffinity(0), os.sched_getaffinity(runner.pid),
                             os.sched_getaffinity(later.pid)))
            seen.append(("taken back", os.sched_getaffinity(0), os.sched_getaffinity(runner.pid),
                         os.sched_getaffinity(later.pid)))
        seen.append(("let go", os.sched_getaffinity(0), os.sched_getaffinity(runner.pid),
                     os.sched_getaffinity(later.pid)))
    finally:
        for p in (runner, later):
            if p is not None:
                p.kill()
                p.wait()
    t, w = {timing}, {work}
    assert seen == [("held", t, t), ("started inside", t), ("released", w, w, w), ("taken back", t, t, t),
                    ("let go", w, w, w)]
    env = judge.result.env
    assert env["timing_cpus"] == [timing]
    pins = env["cpu_pins"]
    assert pins["timing"]["pins"] == 2 and pins["work"]["pins"] == 2  # the hold, and its return after the release
    assert pins["timing"]["processes"] >= 2 + 3  # this process and the runner; then with the later one too
    assert pins["timing"]["refused"] == 0 and pins["work"]["refused"] == 0
    assert len(env["gpu_held"]) == 2


@needs_two_cpus
def test_without_timing_cpus_the_lock_moves_nothing(tmp_path, restore_affinity):
    judge = stub_judge(tmp_path)
    before = affinity_of_tree(os.getpid())
    with judge.gpu_lock():
        during = affinity_of_tree(os.getpid())
    assert during == before
    assert "timing_cpus" not in judge.result.env and "cpu_pins" not in judge.result.env


@needs_two_cpus
def test_a_real_judge_pins_its_sandboxed_runner(tmp_path):
    """The whole harness on the interpreter (quick: one hold of the lock, for the check):
    the judge's pin reaches its runner in the sandbox (uid 65534 when the judge is root)."""
    from avo.harness.runner import Stages, evaluate

    timing, work = max(AVAILABLE), min(AVAILABLE)
    seed = Path("kernel_src/attention/seeds/fa2.py").read_text()
    r = evaluate(seed, device="cpu", quick=True, stages=Stages(gpu_lock=str(tmp_path / "gpu0.timing.lock"),
                                                                timing_cpus=(timing,), work_cpus=(work,)))
    assert r.status == "ok", r.message
    assert r.env["timing_cpus"] == [timing]
    pins = r.env["cpu_pins"]
    from avo.harness import sandbox

    chain = 2 if sandbox.detect().level == "none" else 4  # judge, unshare, the box's PID 1, the runner
    assert pins["timing"]["pins"] == 1 and pins["timing"]["processes"] >= chain
    assert pins["timing"]["threads"] >= pins["timing"]["processes"]
    assert pins["timing"]["refused"] == 0 and pins["work"]["refused"] == 0, pins


# ------------------------------------------------------------ the orchestrator
def test_stages_carry_the_cpus_into_the_job(tmp_path):
    from avo.harness.runner import Stages

    fields = Stages(timing_cpus=(7, 15), work_cpus=(0, 1)).job_fields(tmp_path)
    assert fields["timing_cpus"] == [7, 15] and fields["work_cpus"] == [0, 1]
    assert Stages().job_fields(tmp_path)["timing_cpus"] == []


def test_the_evaluator_gives_each_judge_its_leased_gpus_timing_cpus(tmp_path, monkeypatch):
    from avo.config import HarnessConfig
    from avo.evaluator import Evaluator
    from avo.records import EvalResult

    plan = cores.CorePlan(timing={0: (14, 15), 1: (12, 13)}, work=tuple(range(12)))
    monkeypatch.setattr(cores, "active", lambda: plan)
    given = []

    def fake(source, *, stages=None, **kw):
        given.append(stages)
        return EvalResult(status="crashed", env={})

    ev = Evaluator(HarnessConfig(), device="cuda", suite="avo", suite_configs=["c0"],
                   problem_path=Path("kernel_src/attention/problem.py"), floor=0.01, cache_path=tmp_path / "b.json")
    ev.judge("k", "1#2", None, fake)
    ev.judge("k", "0", None, fake)
    ev.judge("k", "5", None, fake)  # a GPU the plan does not know: nothing pinned
    assert [(s.timing_cpus, s.work_cpus) for s in given] == [((12, 13), plan.work), ((14, 15), plan.work),
                                                             ((), ())]


def test_partition_run_pins_this_process_to_the_work_cpus_once(monkeypatch, no_topology):
    calls = []
    monkeypatch.setattr(cores, "pin_tree", lambda pid, cpus, counts=None: calls.append((pid, set(cpus))) or 3)
    monkeypatch.setattr(cores, "_active", None)  # restored after the test, like the two below
    monkeypatch.setattr(cores, "_decided", None)
    monkeypatch.setattr(cores, "_before", None)
    plan, line = cores.partition_run([0, 1], 2, available=set(range(16)))
    assert plan.timing == {0: (12, 13), 1: (14, 15)} and cores.active() is plan
    assert calls == [(os.getpid(), set(range(12)))]
    assert line.startswith("CPUs 12-13 time on GPU 0; 14-15 on GPU 1; 0-11 load and compile")
    assert cores.partition_run([0, 1], 2, available=set(range(16))) == (plan, "")  # said once, pinned once
    assert len(calls) == 1
    cores.release()
    assert cores.active() is None and calls[-1] == (os.getpid(), os.sched_getaffinity(0))


def test_partition_run_says_why_there_is_none(monkeypatch):
    monkeypatch.setattr(cores, "_active", None)
    monkeypatch.setattr(cores, "_decided", None)
    monkeypatch.setattr(cores, "_before", None)
    before = os.sched_getaffinity(0)
    plan, line = cores.partition_run([0], 2, available={0, 1})
    assert plan is None and cores.active() is None and line.startswith("no CPU partition: 2 CPUs here")
    assert os.sched_getaffinity(0) == before
    plan, line = cores.partition_run([0], 2, why_not="evaluations run elsewhere")
    assert plan is None and line == "no CPU partition: evaluations run elsewhere"


def test_a_run_says_its_partition_at_the_start(monkeypatch, capsys):
    from avo.config import config_from_dict
    from avo.evolution import partition_cpus

    monkeypatch.setattr(cores, "_active", None)
    monkeypatch.setattr(cores, "_decided", None)
    monkeypatch.setattr(cores, "_before", None)
    monkeypatch.setattr("avo.gpu_pool.visible_gpus", lambda: [0])
    off = SimpleNamespace(device="cuda", cfg=config_from_dict({"harness": {"timing_cpus_per_gpu": 0}}),
                          dask_address=None)
    assert partition_cpus(off) == "no CPU partition: harness.timing_cpus_per_gpu is 0"
    assert "avo: no CPU partition: harness.timing_cpus_per_gpu is 0" in capsys.readouterr().err
    assert partition_cpus(off) == "" and capsys.readouterr().err == ""  # once
    dask = SimpleNamespace(device="cuda", cfg=config_from_dict({}), dask_address="tcp://x:8786")
    assert "Dask" in partition_cpus(dask) and cores.active() is None
    cpu = SimpleNamespace(device="cpu", cfg=config_from_dict({}), dask_address=None)
    assert partition_cpus(cpu) == "" and capsys.readouterr().err.count("avo:") == 1  # the Dask line only


def test_the_orchestrator_warns_once_when_a_judge_could_not_pin_its_runner(monkeypatch, capsys):
    import threading

    from avo import evaluator

    monkeypatch.setattr(evaluator, "_warned_pins", threading.Event())
    evaluator.warn_refused_pins({"cpu_pins": {"timing": {"refused": 0}}})
    assert capsys.readouterr().err == ""
    evaluator.warn_refused_pins({"cpu_pins": {"timing": {"refused": 4}}})
    evaluator.warn_refused_pins({"cpu_pins": {"timing": {"refused": 4}}})
    assert capsys.readouterr().err.count("could not move 4 thread(s) onto its timing CPUs") == 1
