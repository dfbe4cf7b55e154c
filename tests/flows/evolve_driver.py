"""`avo evolve` as a user runs it (the real CLI, Prefect's real temporary API),
with a slow fake harness so a test can interrupt it mid-generation cheaply.

    python tests/flows/evolve_driver.py MARKER_DIR -- <avo evolve arguments>

Each evaluation writes MARKER_DIR/started-<n> when it starts, sleeps
AVO_FAKE_EVAL_S seconds (default 3), then returns an ok result that depends on the
kernel's knobs (tests/flows/conftest.py's FakeHarness)."""
import itertools
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import avo.harness  # noqa: E402
from tests.flows.conftest import FakeHarness  # noqa: E402

marker_dir = Path(sys.argv[1])
argv = sys.argv[sys.argv.index("--") + 1:]
fake = FakeHarness()
delay = float(os.environ.get("AVO_FAKE_EVAL_S", "3"))
numbers = itertools.count(len(list(marker_dir.glob("started-*"))))  # next() is atomic in CPython


def slow_fake(source, **kw):
    n = next(numbers)
    (marker_dir / f"started-{n}").write_text(str(time.time()))
    time.sleep(delay)
    return fake(source, **kw)


avo.harness.evaluate = slow_fake  # before flows.generation imports it

from avo.cli import app  # noqa: E402

sys.argv = ["avo", "evolve", *argv]
app()
