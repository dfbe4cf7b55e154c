"""Lineage: versions, attempts, commit rule wiring, atomicity and locking.

Core tests run in milliseconds on hand-made results; the kill test starts a few
subprocesses (about a second)."""
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from avo.lineage import CommitDecision, Lineage, LineageError, parse_version
from tests.fake_results import CONFIGS, make_candidate, make_result

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def seeded(tmp_path):
    seed = tmp_path / "seed.py"
    seed.write_text("# seed kernel\nBLOCK_N = 64\n")
    lin = Lineage(tmp_path / "lineage")
    lin.init_from_seed(seed, make_result((100.0, 80.0)))
    return lin


def test_init_from_seed_creates_v0_and_is_idempotent(seeded, tmp_path):
    v0 = seeded.get(0)
    assert v0.operator == "seed" and v0.parent is None and v0.number == 0
    assert (seeded.root / "v0000" / "kernel.py").read_text() == v0.source
    assert seeded.init_from_seed(tmp_path / "seed.py", make_result()).created == v0.created
    other = tmp_path / "other.py"
    other.write_text("# different\n")
    with pytest.raises(LineageError):
        seeded.init_from_seed(other, make_result())


def test_incorrect_seed_is_refused_but_recorded(tmp_path):
    seed = tmp_path / "seed.py"
    seed.write_text("# broken\n")
    lin = Lineage(tmp_path / "lineage")
    with pytest.raises(LineageError, match="incorrect"):
        lin.init_from_seed(seed, make_result(status="incorrect", message="rel err 0.3"))
    assert lin.versions() == [] and lin.attempts()[0]["status"] == "incorrect"


def test_commit_applies_rule_and_records_every_attempt(seeded):
    faster = make_candidate("# v1\nBLOCK_N = 128\n", parent=0)
    d = seeded.commit(faster, make_result((110.0, 88.0)), margin=0.01)
    assert d == CommitDecision(True, 1, d.reason) and d.reason.startswith("basis geomean") and "v0" in d.reason
    v1 = seeded.get(1)
    assert v1.parent == 0 and v1.operator == "heuristic" and v1.technique.name == "block_n=128"
    assert v1.technique.measured == pytest.approx({CONFIGS[0]: 1.1, CONFIGS[1]: 1.1})

    # within the noise margin of the best: not committed
    d = seeded.commit(make_candidate("# v2\n", parent=1), make_result((110.5, 88.4)), margin=0.01)
    assert not d.committed and d.version is None
    # wrong answers never commit, however fast
    d = seeded.commit(make_candidate("# bad\n", parent=1),
                      make_result((900.0, 900.0), status="incorrect", message="max rel err 0.5"), 0.0)
    assert not d.committed and "incorrect" in d.reason
    # unknown parent is data, not an exception
    assert "not in the lineage" in seeded.commit(make_candidate(parent=7), make_result(), 0.0).reason

    assert [v.number for v in seeded.versions()] == [0, 1]
    recs = seeded.attempts()
    assert [r["committed"] for r in recs] == [True, True, False, False, False]
    assert recs[1]["version"] == 1 and recs[2]["reason"].startswith("basis geomean: geomean")
    assert recs[3]["message"] == "max rel err 0.5"
    assert len(seeded.attempts(limit=2)) == 2


def test_best_latest_and_comparability(seeded):
    seeded.commit(make_candidate("# v1\n"), make_result((120.0, 90.0)), 0.0)
    # an interpreter result is never compared with GPU figures: it starts its own ladder
    cpu = make_result((0.001, 0.001), device="cpu", gpu=None, suite="cpu", interpreter=True)
    d = seeded.commit(make_candidate("# cpu\n", parent=1), cpu, 0.05)
    assert d.committed and "first comparable" in d.reason
    assert seeded.best().number == 1
    assert seeded.best(comparable_to=cpu).number == 2
    assert seeded.latest().number == 2
    assert seeded.get(2).technique.measured == {}  # not comparable with its parent


def test_diff_and_summaries(seeded):
    seeded.commit(make_candidate("# seed kernel\nBLOCK_N = 128\n"), make_result((110.0, 90.0)), 0.0)
    diff = seeded.diff(0, 1)
    assert "-BLOCK_N = 64" in diff and "+BLOCK_N = 128" in diff and "v0/kernel.py" in diff
    s = seeded.summary()
    assert "2 versions" in s and "best v1" in s and "block_n=128" in s and "vs v0" in s
    assert "cuDNN" in s
    a = seeded.attempts_summary(5)
    assert "committed as v1" in a and "heuristic" in a


def test_summary_limits_versions_but_keeps_seed_and_best(seeded):
    for i in range(1, 10):
        seeded.commit(make_candidate(f"# v{i}\n", parent=i - 1), make_result((100.0 + i, 80.0 + i)), 0.0)
    lines = seeded.summary(max_versions=4).splitlines()
    assert lines[0].startswith("Lineage: 10 versions; best v9") and "showing 4 of 10" in lines[1]
    assert lines[2].startswith("v0 ") and lines[-1].startswith("v9 ")


def test_missing_version_and_empty_lineage(tmp_path):
    lin = Lineage(tmp_path / "nothing")
    assert lin.versions() == [] and lin.best() is None and lin.latest() is None
    assert lin.attempts() == [] and "empty" in lin.summary()
    with pytest.raises(LineageError, match="no version v3"):
        lin.get(3)


def test_parse_version():
    assert parse_version("v0003") == 3 and parse_version("12") == 12
    with pytest.raises(ValueError):
        parse_version("latest")


# ------------------------------------------------------------------ atomicity
def test_crash_between_steps_leaves_lineage_complete(seeded, monkeypatch):
    """Simulate a crash after the files are written but before the rename."""
    def crash(*a, **k):
        raise KeyboardInterrupt("killed")
    monkeypatch.setattr(os, "rename", crash)
    with pytest.raises(KeyboardInterrupt):
        seeded.commit(make_candidate("# v1\n"), make_result((200.0, 200.0)), 0.0)
    monkeypatch.undo()
    assert [v.number for v in seeded.versions()] == [0]  # the half-written v1 is invisible
    assert any(p.name.startswith(".tmp-") for p in seeded.root.iterdir())
    d = seeded.commit(make_candidate("# v1 again\n"), make_result((200.0, 200.0)), 0.0)
    assert d.version == 1 and not any(p.name.startswith(".tmp-") for p in seeded.root.iterdir())


def test_torn_attempt_line_is_skipped_and_next_append_starts_fresh(seeded):
    path = seeded.root / "attempts.jsonl"
    with open(path, "a") as f:
        f.write('{"generation": 3, "status": "o')  # a writer killed mid-line
    assert len(seeded.attempts()) == 1
    seeded.commit(make_candidate("# v1\n"), make_result((1.0, 1.0)), 0.0)
    assert [r["status"] for r in seeded.attempts()] == ["ok", "ok"]


WRITER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {repo!r})
    from avo.lineage import Lineage
    from tests.fake_results import make_candidate, make_result
    lin = Lineage(sys.argv[1])
    i = 0
    while True:
        i += 1
        best = lin.best()
        lin.commit(make_candidate(f"# from {{sys.argv[2]}} #{{i}}\\n" + "x = 1\\n" * 2000,
                                  parent=best.number),
                   make_result((best.geomean * 1.01, best.geomean * 1.01)), 0.0)
""")


def test_killed_concurrent_writers_leave_a_consistent_lineage(seeded, tmp_path):
    """Two writer processes race on one lineage and are SIGKILLed mid-stream;
    every visible version must be complete, numbers contiguous, parents valid."""
    script = tmp_path / "writer.py"
    script.write_text(WRITER.format(repo=str(REPO)))
    procs = [subprocess.Popen([sys.executable, str(script), str(seeded.root), name])
             for name in ("a", "b")]
    deadline = time.monotonic() + 20
    while len(seeded.versions()) < 6 and time.monotonic() < deadline:
        time.sleep(0.05)
    for p in procs:
        p.send_signal(signal.SIGKILL)
        p.wait()
    versions = seeded.versions()
    assert len(versions) >= 6
    assert [v.number for v in versions] == list(range(len(versions)))
    for v in versions[1:]:
        assert v.parent is not None and v.parent < v.number
        assert v.source.endswith("x = 1\n") and v.result.ok
    # each committed version appears once in the attempts log (a kill may lose the last line)
    committed = [r["version"] for r in seeded.attempts() if r["committed"]]
    assert len(committed) == len(set(committed)) and len(committed) >= len(versions) - 2
    # and the lineage still accepts commits afterwards (lock released by the kernel)
    assert seeded.commit(make_candidate("# after\n", parent=0), make_result((1e4, 1e4)), 0.0).committed


def test_on_a_new_gpu_model_a_candidate_must_beat_the_best_as_timed_there(seeded):
    """The lineage holds only H100 figures; on an H200 the evaluator timed v0 itself
    (env.yardstick): a slow first candidate there is not the 'first comparable version'."""
    from avo.commit_rule import Rule

    rule = Rule(margin=0.01, require_confirm=True)
    sha0 = seeded.get(0).sha256
    yard = {"version": 0, "sha256": sha0, "record_geomean": 89.4, "record_like_this_gpu": False,
            "here_geomean": 150.0}

    def on_h200(tflops, confirm=None):
        r = make_result(tflops, gpu="NVIDIA H200")
        r.env["yardstick"] = dict(yard)
        r.confirm = confirm or {}
        return r

    slow = seeded.commit(make_candidate("# slow on h200\n"), on_h200((120.0, 100.0)), rule)
    assert not slow.committed and "v0 150" in slow.reason  # 109.5 geomean < v0 as timed here
    unconfirmed = seeded.commit(make_candidate("# fast, unconfirmed\n"), on_h200((170.0, 160.0)), rule)
    assert not unconfirmed.committed and "no confirmation" in unconfirmed.reason
    # the best could not be timed there: nothing commits, however fast
    unmeasured = on_h200((900.0, 900.0))
    unmeasured.env["yardstick"]["here_geomean"] = None
    refused = seeded.commit(make_candidate("# unmeasured yardstick\n"), unmeasured, rule)
    assert not refused.committed and "could not be timed" in refused.reason
    confirmed = on_h200((170.0, 160.0), {"best_version": 0, "best_sha256": sha0, "ratio": 1.08, "spread": 0.004,
                                          "rounds": 3})
    d = seeded.commit(make_candidate("# fast, confirmed\n"), confirmed, rule)
    assert d.committed and "basis confirm" in d.reason
    # without the evaluator's timing (no env.yardstick): the first comparable version, as before
    assert seeded.commit(make_candidate("# other suite\n"), make_result((1.0, 1.0), suite="mha"), rule).committed
