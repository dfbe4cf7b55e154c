"""Issue 15 point 2 for `avo evolve`: what used to fail only after evaluation time
was spent (hundreds of traceback lines) is one line and exit 2 before any flow
starts: --device cuda without a GPU, a read-only lineage, a read-only run journal
folder. The harness is replaced by one that prints EVALUATED, so a check that
comes too late shows. The read-only cases use a real read-only bind mount
(tests/test_cli_errors.py's `_read_only_run`). A few seconds each."""
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from avo.lineage import Lineage
from tests.fake_results import make_result
from tests.test_cli_errors import _read_only_run, one_line

REPO = Path(__file__).resolve().parents[1]

EVOLVE = """
import sys
import avo.harness, avo.harness.runner
def boom(*a, **k):
    print("EVALUATED"); raise SystemExit(5)
avo.harness.evaluate = boom
avo.harness.runner.detect_device = lambda: "cpu"   # no GPU here, whatever this machine has
from typer.testing import CliRunner
from avo.cli import app
r = CliRunner().invoke(app, ["evolve", *{args!r}])
sys.stdout.write(r.output); sys.exit(r.exit_code)
"""


def _params(tmp_path: Path, lineage: Path, state_dir: Path) -> Path:
    params = tmp_path / "params.yaml"
    params.write_text(f"tracking:\n  enabled: false\nlineage:\n  git_commit: 'off'\n  root: {lineage}\n"
                      f"  seed: {REPO / 'kernel_src/attention/seeds/fa2.py'}\nevolve:\n  state_dir: {state_dir}\n")
    return params


def _lineage(tmp_path: Path) -> Lineage:
    lin = Lineage(tmp_path / "lineage")
    lin.init_from_seed(REPO / "kernel_src/attention/seeds/fa2.py",
                       make_result((2e-6, 1e-6), device="cpu", gpu=None, suite="cpu", interpreter=True))
    return lin


def test_device_cuda_without_a_gpu_is_one_line_before_any_work(tmp_path):
    params = _params(tmp_path, tmp_path / "lineage", tmp_path / ".avo")
    (tmp_path / "script.py").write_text(textwrap.dedent(EVOLVE.format(
        args=["--params", str(params), "--device", "cuda", "--operator", "heuristic", "--generations", "1"])))
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, str(tmp_path / "script.py")], cwd=REPO, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert "EVALUATED" not in r.stdout
    line = one_line(r.stdout + r.stderr)
    assert r.returncode == 2 and "--device cuda" in line and "no CUDA GPU" in line and "--device cpu" in line
    assert time.monotonic() - t0 < 30  # no Prefect server was started for it
    assert not (tmp_path / "lineage").exists()


def test_read_only_lineage_is_one_line_before_any_evaluation(tmp_path):
    lin = _lineage(tmp_path)
    params = _params(tmp_path, lin.root, tmp_path / ".avo")
    r = _read_only_run(lin.root, EVOLVE.format(args=["--params", str(params), "--device", "cpu", "--operator",
                                                     "heuristic", "--generations", "1"]), tmp_path)
    assert "EVALUATED" not in r.stdout
    line = one_line(r.stdout + r.stderr)
    assert r.returncode == 2 and "read-only" in line and str(lin.root) in line
    assert len(Lineage(lin.root).attempts()) == 1


def test_read_only_run_journal_folder_is_one_line_before_any_evaluation(tmp_path):
    lin = _lineage(tmp_path)
    state = tmp_path / "state"
    state.mkdir()
    params = _params(tmp_path, lin.root, state)
    r = _read_only_run(state, EVOLVE.format(args=["--params", str(params), "--device", "cpu", "--operator",
                                                  "heuristic", "--generations", "1"]), tmp_path)
    assert "EVALUATED" not in r.stdout
    line = one_line(r.stdout + r.stderr)
    assert r.returncode == 2 and "read-only" in line and str(state) in line


def test_a_temporary_prefect_api_that_cannot_start_is_one_line(tmp_path):
    """No server URL configured and the temporary API fails (here: its database cannot be
    created): one line naming the server's log, exit 2, nothing evaluated."""
    lin = _lineage(tmp_path)
    params = _params(tmp_path, lin.root, tmp_path / ".avo")
    (tmp_path / "script.py").write_text(textwrap.dedent(EVOLVE.format(
        args=["--params", str(params), "--device", "cpu", "--operator", "heuristic", "--generations", "1"])))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "PYTEST_"))}
    env.update(PYTHONPATH=str(REPO), PREFECT_HOME=str(tmp_path / "prefect"),
               PREFECT_SERVER_DATABASE_CONNECTION_URL="sqlite+aiosqlite:////nonexistent/avo/prefect.db")
    r = subprocess.run([sys.executable, str(tmp_path / "script.py")], cwd=REPO, capture_output=True, text=True,
                       env=env, timeout=200)
    assert "EVALUATED" not in r.stdout
    line = one_line(r.stdout + r.stderr)
    assert r.returncode == 2 and "temporary API did not start" in line and "temporary-server.log" in line
