"""Issue 15 point 1: Ctrl-C in a real terminal during `avo evolve`.

A pseudo-terminal (stdlib pty) runs the real CLI against Prefect's real temporary
API (no PREFECT_API_URL), with a slow fake harness (tests/flows/evolve_driver.py)
so the interrupt lands while candidates are being evaluated. The terminal's ^C
goes to the whole foreground process group, as a person's would. Expected: the
candidates in flight finish and are recorded, no traceback and no Prefect
connection warnings, exit status 130, and the next `avo evolve` resumes the same
run and finishes it. About 40 s (two Prefect start-ups on a small machine)."""
import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from avo.lineage import Lineage

REPO = Path(__file__).resolve().parents[2]
DRIVER = REPO / "tests" / "flows" / "evolve_driver.py"


def _env(tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "PYTEST_"))}
    env.update(PREFECT_HOME=str(tmp_path / "prefect"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               AVO_FAKE_EVAL_S="4", TERM="xterm", COLUMNS="100", LINES="40", PYTHONPATH=str(REPO))
    return env


def _params(tmp_path: Path) -> Path:
    params = tmp_path / "params.yaml"
    params.write_text("tracking:\n  enabled: false\n"
                      f"lineage:\n  git_commit: 'off'\n  root: {tmp_path / 'lineage'}\n"
                      f"  seed: {REPO / 'kernel_src/attention/seeds/fa2.py'}\n"
                      f"evolve:\n  state_dir: {tmp_path / '.avo'}\n  cpu_eval_slots: 2\n")
    return params


def _read(fd: int, out: bytearray, seconds: float) -> bool:
    """Read what the terminal shows for up to `seconds`; False at end of output."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        ready, _, _ = select.select([fd], [], [], max(0.0, min(0.2, end - time.monotonic())))
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the child closed the terminal
                return False
            if not chunk:
                return False
            out.extend(chunk)
    return True


def test_ctrl_c_in_a_terminal_stops_cleanly_and_the_next_start_resumes(tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    params = _params(tmp_path)
    args = [sys.executable, str(DRIVER), str(markers), "--", "--params", str(params), "--device", "cpu",
            "--operator", "heuristic", "--generations", "2", "--population", "2"]
    env = _env(tmp_path)
    pid, fd = pty.fork()
    if pid == 0:  # the child: a session leader with the pty as its controlling terminal
        os.chdir(REPO)
        os.execve(sys.executable, args, env)
    out = bytearray()
    try:
        deadline = time.monotonic() + 180
        while not list(markers.glob("started-[1-9]*")):  # a generation's candidate is being evaluated
            assert time.monotonic() < deadline, f"no generation started:\n{out.decode(errors='replace')}"
            assert _read(fd, out, 0.5), f"avo evolve ended early:\n{out.decode(errors='replace')}"
        time.sleep(0.5)
        os.write(fd, b"\x03")  # ^C: the terminal sends SIGINT to the foreground process group
        t0 = time.monotonic()
        while _read(fd, out, 1.0):
            assert time.monotonic() - t0 < 60, f"still running 60 s after ^C:\n{out.decode(errors='replace')}"
        _, status = os.waitpid(pid, 0)
        stopped_in = time.monotonic() - t0
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(fd)
    text = out.decode(errors="replace")
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 130, (status, text)
    assert stopped_in < 30, text
    for noise in ("Traceback", "Unable to connect", "ConnectError", "websocket", "Error"):
        assert noise not in text, text
    assert "run `avo evolve` again to resume" in " ".join(text.split())  # the terminal wraps lines
    assert "anonymous usage data" not in text

    started = len(list(markers.glob("started-*")))
    attempts = Lineage(tmp_path / "lineage").attempts()
    assert len(attempts) == started  # every evaluation that started was recorded (seed included)
    journal = json.loads(next((tmp_path / ".avo" / "evolve").glob("*.json")).read_text())
    assert journal["status"] == "running" and journal["stop_reason"].startswith("interrupted")

    # the next start resumes the same run and finishes it; nothing is evaluated twice
    r = subprocess.run([sys.executable, str(DRIVER), str(markers), "--", "--params", str(params), "--device",
                        "cpu", "--operator", "heuristic", "--generations", "2", "--population", "2"],
                       cwd=REPO, env={**env, "AVO_FAKE_EVAL_S": "0.2"}, capture_output=True, text=True,
                       timeout=240)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"run {journal['run_id']} resumed at generation" in r.stdout and "finished" in r.stdout  # piped: plain lines
    attempts = Lineage(tmp_path / "lineage").attempts()
    assert sorted(a["generation"] for a in attempts) == [0, 1, 1, 2, 2]
    assert len({a["source_sha256"] for a in attempts}) == len(attempts)


def test_sigterm_finishes_the_candidates_in_flight_and_exits_143(tmp_path):
    """What a scheduler or `kill` sends: the same clean stop as Ctrl-C, exit status 143."""
    markers = tmp_path / "markers"
    markers.mkdir()
    params = _params(tmp_path)
    env = {**_env(tmp_path), "AVO_FAKE_EVAL_S": "3"}
    proc = subprocess.Popen([sys.executable, str(DRIVER), str(markers), "--", "--params", str(params), "--device",
                             "cpu", "--operator", "heuristic", "--generations", "2", "--population", "2"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 180
        while not list(markers.glob("started-[1-9]*")):
            assert time.monotonic() < deadline and proc.poll() is None, proc.stdout.read() if proc.poll() else ""
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143, out
    assert "Traceback" not in out and "Unable to connect" not in out, out
    assert "interrupted (SIGTERM)" in out
    assert len(Lineage(tmp_path / "lineage").attempts()) == len(list(markers.glob("started-*")))
