"""Judges started before their candidates (avo/harness/prestart.py, spares.py) on the
CPU: a pre-started runner serves its candidate, compile helpers compile ahead and are
dead before anything is checked or timed, a helper's sandbox violation rejects the
candidate, and an evolve run's spare judges are used once each and cleaned up."""
import os
import select
import time
from pathlib import Path

import pytest

from avo.harness import evaluate, prestart, runner, spares
from avo.problem import DEFAULT_PROBLEM

SEED = (Path(__file__).parents[2] / "kernel_src/attention/seeds/fa2.py").read_text()


def _ready(tmp_path, helpers: int, name: str = "work") -> prestart.Prestarted:
    work = tmp_path / name
    work.mkdir()
    os.chmod(work, 0o777)
    return prestart.Prestarted("cpu", str(DEFAULT_PROBLEM), work, helpers)


def test_helpers_compile_every_shape_they_are_given_then_die(tmp_path):
    ready = _ready(tmp_path, helpers=1)
    try:
        ready.path.write_text(SEED)  # the candidate arrives after its runners started
        shapes = ready.problem.check_shapes("cpu")[:2]
        ready.start_helpers(shapes)
        helper = ready.helpers[0]
        deadline = time.monotonic() + 240
        while ready.record["warmed"] + ready.record["failed"] < len(shapes) and time.monotonic() < deadline:
            select.select([helper.sock], [], [], 5)
            ready._read_replies(helper)
        assert ready.record["warmed"] == len(shapes) and ready.record["failed"] == 0, ready.record
        pid = helper.proc.pid
        ready.stop_helpers()
        assert ready.record["killed_before_lock"] is True and ready.helpers == []
        assert helper.proc.poll() is not None and not Path(f"/proc/{pid}/status").exists()
    finally:
        ready.close()


def test_the_prestarted_runner_is_handed_over_once_and_only_alive(tmp_path):
    ready = _ready(tmp_path, helpers=0)
    try:
        first = ready.take_runner()
        assert first is not None and first.proc.poll() is None
        assert ready.take_runner() is None  # one candidate per runner
        first.kill()
    finally:
        ready.close()
    dead = _ready(tmp_path, helpers=0, name="again")
    try:
        dead.runner.kill()
        assert dead.take_runner() is None  # a runner that died waiting is not handed over
    finally:
        dead.close()


def test_the_judge_uses_the_prestarted_runner_and_records_its_helpers(monkeypatch):
    monkeypatch.setitem(prestart.HELPERS, "cpu", 1)
    r = evaluate(SEED, device="cpu", quick=True)
    assert r.status == "ok", r.message + r.log_tail
    record = r.env["compile_helpers"]
    assert record["helpers"] == 1 and record["killed_before_lock"] is True
    assert record["stopped_at"] > 0


# A kernel that breaks the sandbox only where a compile helper runs it: a helper's inputs are
# tensors of their own, the main runner's are views of the judge's arena. The main runner's
# first call waits, so the helper gets there first.
HELPER_ONLY_CHEAT = SEED.replace(
    "def attention(q, k, v, causal=False, sm_scale=None):",
    """def attention(q, k, v, causal=False, sm_scale=None):
    import time as _t
    if q.untyped_storage().nbytes() == q.numel() * q.element_size():  # its own tensors: a helper
        open("/etc/avo-helper-was-here", "w")
    else:
        _t.sleep(4)
    return _attention(q, k, v, causal, sm_scale)


def _attention(q, k, v, causal=False, sm_scale=None):""", 1)


def test_a_sandbox_violation_in_a_compile_helper_rejects_the_candidate(monkeypatch):
    assert HELPER_ONLY_CHEAT != SEED
    monkeypatch.setitem(prestart.HELPERS, "cpu", 1)
    r = evaluate(HELPER_ONLY_CHEAT, device="cpu", quick=True, static_checks=False)
    assert r.status == "rejected", (r.status, r.message)
    assert "compile helper" in r.message and "/etc/avo-helper-was-here" in r.message


def test_without_helpers_the_same_kernel_passes(monkeypatch):
    """The cheat above only misbehaves in a helper: with none, it is an honest kernel."""
    monkeypatch.setitem(prestart.HELPERS, "cpu", 0)
    r = evaluate(HELPER_ONLY_CHEAT, device="cpu", quick=True, static_checks=False)
    assert r.status == "ok", r.message


# ------------------------------------------------------------------ the pool
class FakeJudge:
    def __init__(self, key):
        self.key, self.dead, self.discarded = key, False, False

    def alive(self):
        return not self.dead

    def discard(self, grace_s=15.0):
        self.discarded = True


def _wait(pool, n):
    deadline = time.monotonic() + 2
    while pool.count() < n and time.monotonic() < deadline:
        time.sleep(0.01)
    return pool.count()


def test_the_pool_keeps_a_spare_per_evaluation_in_flight_and_one_in_hand():
    started = []
    pool = spares.Spares(lambda key: started.append(FakeJudge(key)) or started[-1])
    assert pool.take(("cpu", None, "p")) is None and started == []  # disabled: nothing started
    pool.enable()
    try:
        key = ("cuda", "0", "p")
        assert pool.take(key) is None and pool.take(key) is None  # two at once, none ready yet
        assert _wait(pool, 4) == 4  # each empty-handed take: a replacement and one more in hand
        first = pool.take(key)
        assert first is started[0] and _wait(pool, 4) == 4  # taken and replaced, one for one
        assert pool.take(("cuda", "1", "p")) is None  # another GPU's spares are its own
        started[1].dead = True
        second = pool.take(key)
        assert second is started[2]  # a dead spare is discarded, never handed over
        assert started[1].discarded
        for _ in range(20):  # a burst of empty-handed takes grows the pool to its cap, no further
            pool.take(("cuda", "2", "p"))
        _wait(pool, 4 + 2 + spares.MAX_PER_KEY)
        assert len(pool._ready[("cuda", "2", "p")]) == spares.MAX_PER_KEY
    finally:
        pool.close()
    kept = [j for j in started if j not in (first, second, started[1])]
    assert kept and all(j.discarded for j in kept)  # close() kills every spare still waiting
    assert not first.discarded and not second.discarded  # handed over: the caller's to discard
    assert pool.take(key) is None


def test_an_evolve_runs_spare_judges_serve_one_evaluation_each_and_are_cleaned_up(monkeypatch):
    made = []
    pool = spares.Spares(lambda key: made.append(runner.spawn_judge(key, spare=True)) or made[-1])
    monkeypatch.setattr(runner, "SPARES", pool)
    pool.enable()
    try:
        first = evaluate(SEED, device="cpu", quick=True)
        deadline = time.monotonic() + 60
        while pool.count() < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        spare = made[0]
        second = evaluate(SEED, device="cpu", quick=True)
        assert first.status == second.status == "ok", second.message
        assert first.env["judge_spare"] is False and second.env["judge_spare"] is True
        assert second.env["prestart"]["prepared_s"] > 0
        assert spare.proc.poll() is not None and not spare.work.exists()  # used once, then gone
        assert len(made) == 3  # the first take found none: two started; the second took one: one more
    finally:
        pool.close()
    assert pool.count() == 0
    assert all(j.proc.poll() is not None and not j.work.exists() for j in made)  # the unused one too


@pytest.mark.parametrize("argv,expected", [([], None), (["cpu", "p.py", "2"], ("cpu", "p.py", 2)),
                                           (["cuda", "p.py", "99"], ("cuda", "p.py", 8))])
def test_judge_argv(argv, expected):
    assert prestart.parse_argv(argv) == expected
    with pytest.raises(SystemExit):
        prestart.parse_argv(["gpu", "p.py", "1"])


def test_closing_the_pool_ends_every_spare_together_within_the_grace_time():
    """Ctrl-C closes the run's spares: all are hung up on at once and share one grace period,
    also those still starting their runners; then nothing of them is left."""
    made = []
    pool = spares.Spares(lambda key: made.append(runner.spawn_judge(key, spare=True)) or made[-1])
    pool.enable()
    key = ("cpu", None, str(DEFAULT_PROBLEM), 0)
    pool.take(key), pool.take(key)  # two empty-handed takes: four spares on their way
    deadline = time.monotonic() + 10
    while pool.count() < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    t0 = time.monotonic()
    pool.close()
    assert time.monotonic() - t0 < spares.CLOSE_GRACE_S + 5
    assert len(made) == 4 and all(j.proc.poll() is not None and not j.work.exists() for j in made)


def test_a_helper_that_writes_without_end_cannot_keep_the_judge(tmp_path):
    """The judge reads a helper's answers while it holds the GPU lock: a bounded number of them."""
    import socket as socket_mod
    import threading

    from avo.harness import wire

    ready = _ready(tmp_path, helpers=0)
    ours, theirs = socket_mod.socketpair()
    stop = threading.Event()

    def flood():
        while not stop.is_set():
            try:
                wire.send(theirs, {"warmed": 1, "failed": 0, "violations": []})
            except OSError:
                return

    class FakeHost:
        sock = ours

    threading.Thread(target=flood, daemon=True).start()
    try:
        t0 = time.monotonic()
        ready._read_replies(FakeHost())
        assert time.monotonic() - t0 < 2 and ready.record["warmed"] <= prestart.MAX_REPLIES
    finally:
        stop.set()
        theirs.close()
        ours.close()
        ready.close()


def test_a_judge_is_started_with_the_compile_helpers_of_its_key(monkeypatch):
    """The key a spare is kept under names its helpers: a run's setting reaches the judge's argv."""
    seen = []

    def spawn(argv, **kw):
        seen.append(argv)
        raise RuntimeError("not started")

    monkeypatch.setattr(runner.sandbox, "spawn", spawn)
    with pytest.raises(RuntimeError):
        runner.spawn_judge(("cuda", "0", "p.py", 3))
    assert seen[0][-3:] == ["cuda", "p.py", "3"]
