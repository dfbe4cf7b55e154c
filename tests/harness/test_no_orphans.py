"""No evaluation process outlives avo: SIGTERM (e.g. `timeout`), SIGINT or SIGKILL to
`avo bench` mid-evaluation ends the judge and the sandboxed runner within seconds (they
die with their parent). Before the judge split, `timeout 90 avo bench ...` left the worker
running at 100% CPU for over 15 minutes."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SEED = Path(__file__).parents[2] / "kernel_src/attention/seeds/fa2.py"
MARKERS = ("avo.harness.judge", "avo.harness.candidate_host")


def evaluation_pids() -> set[int]:
    pids = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(m in cmdline for m in MARKERS):
            pids.add(int(entry))
    return pids


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL], ids=["TERM", "INT", "KILL"])
def test_evaluation_processes_die_with_avo(sig):
    before = evaluation_pids()
    avo = subprocess.Popen([sys.executable, "-m", "avo.cli", "bench", str(SEED), "--device", "cpu"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, started = time.monotonic() + 60, set()
        while time.monotonic() < deadline:  # wait until the candidate's runner is up
            started = evaluation_pids() - before
            if any("candidate_host" in Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="replace")
                   for p in started if alive(p)):
                break
            time.sleep(0.2)
        assert started, "the evaluation never started"
        avo.send_signal(sig)
        avo.wait(timeout=30)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(alive(p) for p in started):
            time.sleep(0.2)
        left = [p for p in started if alive(p)]
        assert not left, f"evaluation processes outlived avo after {sig.name}: {left}"
    finally:
        if avo.poll() is None:
            avo.kill()
