"""The shared-GPU guard's logic on CPU, with NVML's samples faked (the real reading is
tests/adversarial/test_gpu_sharing.py's, on a GPU): whose work counts as outside a
judge, the wait before a hold, the record after it, the compile stage's hung-runner
watch, and what the evaluator and the commit rule do with a shared hold."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from avo.commit_rule import Rule, decide
from avo.harness import gpu_activity, judge_sharing
from avo.harness.cores import descendants
from avo.harness.gpu_activity import Sample, busy, now_us
from avo.harness.host import Host, RunnerFailed
from avo.harness.judge_sharing import SharingGuard
from avo.records import ConfigTiming, EvalResult


class FakeNvml:
    """Samples as a function of time: busy[pid] = (from_us, to_us, sm)."""

    def __init__(self):
        self.busy: dict[int, tuple[int, int, int]] = {}

    def samples(self, since_us: int) -> list[Sample]:
        now = now_us()
        out = []
        for pid, (start, end, sm) in self.busy.items():
            t = max(start, since_us + 1)
            while t <= min(end, now):  # one sample per 100 ms, as NVML's buffer would hold
                out.append(Sample(pid, t, sm))
                t += 100_000
        return out


class Guarded(SharingGuard):
    def __init__(self, fake: FakeNvml):
        self.device, self.result, self.stage_s = "cuda", EvalResult(status="ok"), {}
        self.own_seen, self.named, self.hold_since_us = {os.getpid()}, {}, now_us()
        self.opened_us, self.holds_us, self.stage_marks = self.hold_since_us, [], []
        self.gpu_watch = gpu_activity.Watcher(fake, every_s=0.05)
        self.gpu_watch.on_new_pids = self.first_seen
        self.gpu_watch.start()


def foreign_process() -> int:
    """A live process that is not below this one (its parent exits: it is re-parented)."""
    out = subprocess.run(["sh", "-c", "sleep 30 >/dev/null 2>&1 & echo $!"], capture_output=True, text=True)
    return int(out.stdout.strip())


@pytest.fixture
def fake():
    return FakeNvml()


def test_busy_keeps_the_window_the_threshold_and_the_pids_asked_for():
    s = [Sample(1, 100, 90), Sample(1, 300, 10), Sample(2, 200, 50), Sample(3, 50, 100), Sample(4, 250, 30)]
    assert busy(s, 100) == {1: 90, 2: 50, 4: 30}
    assert busy(s, 100, until_us=220) == {1: 90, 2: 50}
    assert busy(s, 100, besides={1}) == {2: 50, 4: 30}
    assert busy(s, 0, only={3, 4}) == {3: 100, 4: 30}
    assert busy(s, 0, min_sm=60) == {1: 90, 3: 100}


def test_descendants_are_the_whole_tree_below_and_nothing_else():
    child = subprocess.Popen(["sh", "-c", "sleep 30 & sleep 30 & wait"])
    try:
        time.sleep(0.3)
        below = descendants(os.getpid())
        grandchildren = descendants(child.pid)
        assert child.pid in below and len(grandchildren) == 2 and grandchildren <= below
        assert os.getpid() not in below and foreign_process() not in below
    finally:
        child.kill()
        child.wait()


def test_the_watcher_keeps_every_sample_once(fake):
    t = now_us()
    fake.busy = {10: (t - 500_000, t + 400_000, 80), 11: (t - 500_000, t + 400_000, 30)}
    w = gpu_activity.Watcher(fake, every_s=0.02).start()
    time.sleep(0.6)
    w.stop()
    got = w.since(0)
    assert len(got) == len(set((s.pid, s.time_us) for s in got))
    assert {s.pid for s in got} == {10, 11} and len(got) >= 16  # ~9 samples each over the 0.9 s


def test_the_hold_waits_for_a_live_outside_process_to_stop(fake):
    other = foreign_process()
    t = now_us()
    fake.busy = {other: (t - 2_000_000, t + 1_200_000, 100)}  # busy until 1.2 s from now
    judge = Guarded(fake)
    t0 = time.monotonic()
    judge.await_quiet_gpu()
    waited = time.monotonic() - t0
    assert 1.0 <= waited < 3.0
    assert judge.result.env["gpu_quiet_waits"][0]["pids"] == {str(other): {"sm": 100, "what": "sleep (parent 1)"}}
    assert judge.stage_s["gpu_quiet"] >= 1.0 and not judge.result.env.get("gpu_shared")


def test_the_hold_does_not_wait_for_its_own_processes_or_the_dead(fake):
    mine = subprocess.Popen(["sleep", "30"])
    dead = subprocess.Popen(["true"])
    dead.wait()
    try:
        t = now_us()
        fake.busy = {mine.pid: (t - 2_000_000, t + 5_000_000, 100), dead.pid: (t - 2_000_000, t, 100)}
        judge = Guarded(fake)
        t0 = time.monotonic()
        judge.await_quiet_gpu()
        assert time.monotonic() - t0 < 0.5 and "gpu_quiet_waits" not in judge.result.env
    finally:
        mine.kill()
        mine.wait()


def test_a_gpu_busy_past_the_longest_wait_is_recorded_as_shared(fake, monkeypatch):
    monkeypatch.setattr(judge_sharing, "QUIET_MAX_S", 0.5)
    other = foreign_process()
    t = now_us()
    fake.busy = {other: (t - 1_000_000, t + 60_000_000, 100)}
    judge = Guarded(fake)
    judge.await_quiet_gpu()
    assert "before a hold" in judge.result.env["gpu_shared"][0]["when"]


def test_outside_work_during_a_hold_is_recorded_even_if_it_ended(fake):
    judge = Guarded(fake)
    judge.await_quiet_gpu()
    t = now_us()
    gone = subprocess.Popen(["true"])
    gone.wait()
    fake.busy = {gone.pid: (t + 300_000, t + 600_000, 70)}  # a burst in the middle of the hold
    time.sleep(0.9)
    judge.note_shared_hold()
    shared = judge.result.env["gpu_shared"]
    assert shared[0]["pids"] == {str(gone.pid): {"sm": 70, "what": ""}} and "hold" in shared[0]["when"]


def test_own_work_and_the_previous_holders_tail_are_not_sharing(fake):
    judge = Guarded(fake)
    mine = subprocess.Popen(["sleep", "30"])
    try:
        t = now_us()
        other = foreign_process()
        # the previous holder's last kernels, stamped just after this hold began (within SETTLE_S)
        fake.busy = {mine.pid: (t, t + 800_000, 100), other: (t - 500_000, t + 100_000, 90)}
        judge.hold_since_us = t
        time.sleep(0.9)
        judge.note_shared_hold()
        assert "gpu_shared" not in judge.result.env
    finally:
        mine.kill()
        mine.wait()


def test_the_hang_watch_names_a_runner_busy_on_the_gpu_too_long(fake, monkeypatch):
    monkeypatch.setattr(judge_sharing, "COMPILE_BUSY_S", 0.6)
    runner = subprocess.Popen(["sleep", "30"])
    try:
        judge = Guarded(fake)
        watch = judge.hang_watch()
        t = now_us()
        fake.busy = {runner.pid: (t, t + 10_000_000, 100)}
        reasons = []
        for _ in range(12):
            time.sleep(0.1)
            reasons.append(watch())
        assert reasons[0] == "" and "kept the GPU busy" in reasons[-1]
        # short bursts (a compile call's kernels) never add up: each quiet check starts over
        watch = judge.hang_watch()
        fake.busy = {}
        for i in range(12):
            time.sleep(0.1)
            t = now_us()
            fake.busy = {runner.pid: (t, t + 50_000, 100)} if i % 2 else {}
            assert watch() == ""
    finally:
        runner.kill()
        runner.wait()


def test_a_hung_runner_is_killed_when_the_watch_says_so():
    host = Host.__new__(Host)
    host.sock, other_end = socket.socketpair()
    host.proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    host.killed, host.device = False, "cuda"
    calls = []
    host.watch = lambda: (calls.append(1), "its processes kept the GPU busy for 15 s" if len(calls) >= 2 else "")[1]
    t0 = time.monotonic()
    with pytest.raises(RunnerFailed) as e:
        host.receive(120.0, "mha (compile)")
    assert e.value.status == "timeout" and "kept the GPU busy" in e.value.message
    assert time.monotonic() - t0 < 5 and host.proc.poll() is not None and len(calls) == 2
    other_end.close()


def test_a_shared_hold_never_commits():
    r = EvalResult(status="ok", device="cuda", timings=[ConfigTiming(config="c", ms=1.0, tflops=500.0)])
    r.confirm = {"ratio": 1.5, "spread": 0.01, "rounds": 3}
    r.env["gpu_shared"] = [{"when": "during a 2.0 s hold", "pids": {"123": 100}}]
    ok, why = decide(r, None, Rule(margin=0.01))
    assert not ok and "shared GPU" in why and "123" in why
    del r.env["gpu_shared"]
    assert decide(r, None, Rule(margin=0.01))[0]  # the same result, unshared, commits (no best yet)


def test_the_previous_holder_busy_until_it_let_go_is_not_waited_for(fake):
    previous = foreign_process()  # alive: a judge lives on after its hold
    t = now_us()
    fake.busy = {previous: (t - 900_000, t + 50_000, 100)}  # its last kernels, up to the hand-over
    judge = Guarded(fake)
    t0 = time.monotonic()
    judge.await_quiet_gpu(previous=previous)
    assert time.monotonic() - t0 < 0.3 and "gpu_quiet_waits" not in judge.result.env
    # not known as the previous holder, the same tail is waited out
    judge = Guarded(fake)
    t0 = time.monotonic()
    judge.await_quiet_gpu()
    assert time.monotonic() - t0 >= 1.0 and judge.result.env["gpu_quiet_waits"]


def test_the_lock_file_names_the_previous_holder(tmp_path):
    from avo.harness.judge_sharing import holder

    fd = os.open(tmp_path / "gpu0.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        assert holder(fd) is None  # a new file: nobody held it
        os.pwrite(fd, b"       4242\n", 0)  # another judge's take
        assert holder(fd) == 4242
        assert os.pread(fd, 32, 0).decode().strip() == str(os.getpid())
    finally:
        os.close(fd)


def test_a_process_of_its_own_started_and_gone_within_a_hold_is_its_own(fake):
    """H100, f1e8b82: a held-out baseline's runner, started and killed inside the hold, was gone
    when the hold ended and was taken for an outside process (72% SM): it is looked up when
    first seen busy, while it lives."""
    judge = Guarded(fake)
    judge.await_quiet_gpu()
    runner = subprocess.Popen(["sleep", "30"])
    t = now_us()
    fake.busy = {runner.pid: (t, t + 400_000, 72)}
    time.sleep(0.3)  # the watcher reads its first samples while it lives
    runner.kill()
    runner.wait()
    time.sleep(0.3)
    judge.note_shared_hold()
    assert "gpu_shared" not in judge.result.env
    assert judge.named[runner.pid] == f"sleep (parent {os.getpid()})"


def test_own_work_outside_the_holds_is_named_by_stage_and_work_inside_them_is_not(fake):
    """What a judge's own processes ran on the GPU while it did not hold it: the work that
    shares other judges' holds, attributed where it comes from (here: its compile stage)."""
    judge = Guarded(fake)
    runner = subprocess.Popen(["sleep", "30"])
    try:
        judge.own_pids()
        judge.first_seen({runner.pid})
        judge.mark_stage("compile")
        t = now_us()
        fake.busy = {runner.pid: (t, t + 300_000, 80)}  # busy in the compile stage, no hold
        time.sleep(0.4)
        judge.mark_stage("check")
        judge.await_quiet_gpu()  # a hold: its own busy samples in it are not unlocked work
        t = now_us()
        fake.busy[os.getpid()] = (t, t + 300_000, 90)
        time.sleep(0.4)
        judge.note_shared_hold()
        judge.note_unlocked_work()
        rows = judge.result.env["gpu_busy_unlocked"]
        assert [(r["pid"], r["stage"], r["sm"]) for r in rows] == [(runner.pid, "compile", 80)], rows
        assert rows[0]["samples"] >= 2
    finally:
        runner.kill()
        runner.wait()
        judge.gpu_watch.stop()


def test_no_unlocked_work_leaves_no_record(fake):
    judge = Guarded(fake)
    judge.note_unlocked_work()
    judge.gpu_watch.stop()
    assert "gpu_busy_unlocked" not in judge.result.env
