"""Issue 15: user mistakes end in one line and exit 2 before any work (point 2, 8),
and the numbers a person reads agree (point 5). Seconds; the read-only cases use
a real read-only bind mount in a private mount namespace (`unshare --mount`),
because running as root ignores file modes."""
import io
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from avo.cli import app
from avo.lineage import Lineage
from tests.fake_results import make_result

REPO = Path(__file__).resolve().parents[1]
run = CliRunner().invoke


def one_line(output: str) -> str:
    lines = output.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got:\n{output}"
    assert lines[0].startswith("error: ") and "Traceback" not in output
    return lines[0]


@pytest.fixture
def cpu_lineage(tmp_path):
    seed = tmp_path / "seed.py"
    seed.write_text("# seed\n")
    lin = Lineage(tmp_path / "lineage")
    r = make_result((2.1e-6, 1.3e-6), device="cpu", gpu="none (Triton interpreter on CPU)", suite="cpu",
                    interpreter=True)
    lin.init_from_seed(seed, r)
    return lin


# ------------------------------------------------------------------ point 5: units and numbers
def test_lineage_list_of_a_missing_folder_is_a_one_line_error():
    r = run(app, ["lineage", "list", "--lineage", "/typo"])
    assert r.exit_code == 2 and "/typo" in one_line(r.output)


def test_lineage_list_shows_suite_whole_device_and_no_zero_for_cpu(cpu_lineage):
    r = run(app, ["lineage", "list", "--lineage", str(cpu_lineage.root)])
    assert r.exit_code == 0, r.output
    assert "none (Triton interpreter on CPU)" in r.output  # not cut to "none (Triton interpret"
    head, row = r.output.splitlines()[:2]
    assert "suite" in head and "TFLOPS" in head and " cpu " in row
    assert "1.652e-06" in row  # geomean of 2.1e-6 and 1.3e-6, not rounded away
    assert " 0.0 " not in row and " 0.000 " not in row
    assert "another suite" in r.output  # says why the same kernel has other figures on other suites


def test_h100_list_names_the_suite_of_each_figure():
    r = run(app, ["lineage", "list", "--lineage", str(REPO / "kernel_src/attention/lineage/cuda")])
    assert r.exit_code == 0, r.output
    v3 = next(line for line in r.output.splitlines() if line.lstrip("* ").startswith("v3 "))
    assert "521.6  mha" in v3


def test_bench_table_never_shows_zero_for_an_interpreter_config(monkeypatch):
    from avo.commands import bench

    buf = io.StringIO()
    monkeypatch.setattr(bench, "console", Console(file=buf, width=160))
    bench.print_result(make_result((2.1e-6, 1.3e-6), device="cpu", gpu=None, suite="cpu", interpreter=True), "k.py")
    text = buf.getvalue()
    assert "GFLOP/s" not in text and "TFLOPS (interpreter)" in text
    assert "2.1e-06" in text and "1.3e-06" in text and " 0.0 " not in text


# ------------------------------------------------------------------ points 2 and 8: errors before work
def test_serve_with_a_bad_cron_is_one_line(tmp_path):
    env = {**os.environ, "PREFECT_HOME": str(tmp_path), "PREFECT_API_URL": "http://127.0.0.1:9/api"}
    r = subprocess.run([sys.executable, "-m", "avo.cli", "serve", "--cron", "not a cron"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "not a cron schedule" in one_line(r.stderr + r.stdout)


def test_serve_without_a_prefect_server_says_what_to_do(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path)  # no profile that names a server
    try:  # today's code polls forever: the timeout turns that into a failure
        r = subprocess.run([sys.executable, "-m", "avo.cli", "serve"], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("`avo serve` with no PREFECT_API_URL was still running after 120 s")
    line = one_line(r.stderr + r.stdout)
    assert r.returncode == 2 and "PREFECT_API_URL" in line and "prefect server start" in line


def _read_only_run(folder: Path, script: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run `script` (Python) with `folder` bind-mounted read-only in a private mount namespace."""
    if not shutil.which("unshare"):
        pytest.skip("unshare (util-linux) is not installed: cannot make a read-only mount")
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot create a mount namespace here ({probe.stderr.decode().strip()[:120]})")
    (tmp_path / "script.py").write_text(textwrap.dedent(script))
    cmd = (f"mount -o bind,ro '{folder}' '{folder}' && touch '{folder}/.probe' 2>/dev/null && exit 99; "
           f"exec '{sys.executable}' '{tmp_path / 'script.py'}'")
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # this checkout's avo, whatever the venv points at
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", cmd], cwd=REPO,
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode != 99, "the bind mount was not read-only"
    return r


def test_report_into_a_read_only_folder_fails_before_drawing(tmp_path):
    seed = tmp_path / "seed.py"
    seed.write_text("# seed\n")
    Lineage(tmp_path / "lineage").init_from_seed(seed, make_result())
    out = tmp_path / "ro"
    out.mkdir()
    r = _read_only_run(out, f"""
        import sys, matplotlib.figure
        from typer.testing import CliRunner
        def boom(*a, **k):
            print("DREW A FIGURE"); raise SystemExit(5)
        matplotlib.figure.Figure.savefig = boom
        from avo.cli import app
        r = CliRunner().invoke(app, ["report", "--lineage", "{tmp_path / 'lineage'}", "--out", "{out / 'sub'}"])
        sys.stdout.write(r.output); sys.exit(r.exit_code)
        """, tmp_path)
    assert "DREW A FIGURE" not in r.stdout
    line = one_line(r.stdout + r.stderr)
    assert r.returncode == 2 and "read-only" in line and str(out) in line


def test_lineage_add_into_a_read_only_lineage_fails_before_evaluating(tmp_path):
    seed = tmp_path / "seed.py"
    seed.write_text("# seed\n")
    lin = Lineage(tmp_path / "lineage")
    lin.init_from_seed(seed, make_result())
    kernel = tmp_path / "mine.py"
    kernel.write_text("# mine\n")
    params = tmp_path / "params.yaml"
    params.write_text("lineage:\n  git_commit: 'off'\ntracking:\n  enabled: false\n")
    r = _read_only_run(lin.root, f"""
        import sys
        import avo.harness
        def boom(*a, **k):
            print("EVALUATED"); raise SystemExit(5)
        avo.harness.evaluate = boom
        from typer.testing import CliRunner
        from avo.cli import app
        r = CliRunner().invoke(app, ["lineage", "add", "{kernel}", "--lineage", "{lin.root}",
                                     "--params", "{params}", "--device", "cpu"])
        sys.stdout.write(r.output); sys.exit(r.exit_code)
        """, tmp_path)
    assert "EVALUATED" not in r.stdout
    line = one_line(r.stdout + r.stderr)
    assert r.returncode == 2 and "read-only" in line and str(lin.root) in line
    assert len(Lineage(lin.root).attempts()) == 1  # nothing was recorded


def test_writable_problem_names_a_read_only_mount(tmp_path):
    from avo.commands.lineage import writable_problem

    assert writable_problem(tmp_path / "new" / "deeper") == ""  # would be created under tmp_path
    folder = tmp_path / "ro"
    folder.mkdir()
    r = _read_only_run(folder, f"""
        import os, sys
        from avo.commands.lineage import writable_problem
        print(os.access("{folder}", os.W_OK), writable_problem(__import__("pathlib").Path("{folder}")))
        """, tmp_path)
    assert r.returncode == 0, r.stderr
    assert "read-only file system" in r.stdout
