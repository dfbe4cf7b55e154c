"""Bad input to the `avo` commands: one line that says what is wrong and how to
fix it, exit code 2, no traceback, nothing written."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from avo.cli import app
from tests.adversarial.conftest import _cuda_available
from tests.adversarial.variants import SEED

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "syntax.py").write_text("def attention(q, k, v:\n")
    (tmp_path / "no_entry.py").write_text("import triton\n\n@triton.jit\ndef k(X):\n    pass\n")
    (tmp_path / "no_kernel.py").write_text("def attention(q, k, v, causal=False, sm_scale=None):\n    return q\n")
    (tmp_path / "binary.py").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "nul.py").write_bytes(b"def attention(q, k, v):\x00\n")
    (tmp_path / "folder.py").mkdir()
    (tmp_path / "ok.py").write_text(SEED.read_text())
    return tmp_path


def run(*args):
    return CliRunner().invoke(app, list(args))


BAD = [
    # args, fragment of the one-line message
    (["bench", "missing.py"], "no such kernel file: missing.py"),
    (["bench", "syntax.py"], "syntax.py is not a candidate kernel: syntax error at line 1"),
    (["bench", "no_entry.py"], "no top-level function `attention"),
    (["bench", "no_kernel.py"], "no @triton.jit kernel"),
    (["bench", "binary.py"], "binary.py is not a text file"),
    (["bench", "nul.py"], "nul.py is not a candidate kernel: syntax error: source code string cannot contain null bytes"),
    (["bench", "folder.py"], "folder.py is a directory: give the kernel's .py file"),
    (["bench", "ok.py", "--suite", "nope"], "unknown suite 'nope'; known: "),
    (["bench", "ok.py", "--device", "tpu"], "unknown device 'tpu': use cuda, cpu or auto"),
    (["bench", "ok.py", "--device", "cpu", "--timeout", "-5"], "--timeout must be a positive number of seconds"),
    (["bench", "ok.py", "--device", "cpu", "--json", "folder.py"], "--json folder.py is a directory"),
]


@pytest.mark.parametrize("args,fragment", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bench_bad_input(files, args, fragment):
    before = sorted(p.name for p in files.iterdir())
    r = run(*args, "--json", "out.json") if "--json" not in args else run(*args)
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got:\n{r.output}"
    assert lines[0].startswith("error: ") and fragment in lines[0], lines[0]
    assert "Traceback" not in r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert sorted(p.name for p in files.iterdir()) == before, "bad input must write nothing"


@pytest.mark.skipif(_cuda_available(), reason="a CUDA GPU is usable here")
def test_bench_cuda_without_gpu(files):
    r = run("bench", "ok.py", "--device", "cuda", "--json", "out.json")
    assert r.exit_code == 2 and "no CUDA GPU is usable here" in r.output, r.output
    assert len(r.output.strip().splitlines()) == 1 and not (files / "out.json").exists()


def test_bench_error_is_one_line_in_a_narrow_terminal(files):
    """Through a real subprocess with an 40-column terminal: no wrapping, no traceback."""
    env = {**os.environ, "COLUMNS": "40", "PYTHONPATH": str(REPO)}
    p = subprocess.run([sys.executable, "-m", "avo.cli", "bench", "no_entry.py"], capture_output=True,
                       text=True, env=env, cwd=files, timeout=120)
    assert p.returncode == 2
    assert p.stdout == "" and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "no top-level function `attention" in p.stderr


# ------------------------------------------------- the other commands present
OTHER = [
    (["lineage", "show", "banana"], "not a version: 'banana'"),
    (["lineage", "show", "v7", "--lineage", "nolineage"], "no version v7 in nolineage"),
    (["lineage", "add", "missing.py"], "no such kernel file: missing.py"),
    (["lineage", "add", "folder.py"], "folder.py is a directory"),
    (["lineage", "add", "binary.py"], "binary.py is not a text file"),
    (["lineage", "add", "ok.py", "--device", "tpu"], "unknown device 'tpu'"),
    (["lineage", "add", "ok.py", "--device", "cpu", "--suite", "nope"], "unknown suite 'nope'"),
    (["lineage", "init", "--seed", "missing.py"], "no such seed kernel: missing.py"),
    (["lineage", "list", "--params", "nope.yaml"], "nope.yaml: no such file"),
    (["lineage", "list", "--params", "binary.py"], "binary.py is not a text file"),
    (["lineage", "list", "--params", "folder.py"], "folder.py is a directory"),
    (["report", "--lineage", "nolineage"], "no lineage versions in nolineage"),
    (["report", "--params", "binary.py"], "binary.py is not a text file"),
    (["evolve", "--device", "tpu"], "unknown device 'tpu'"),
    (["evolve", "--generations", "-1"], "--generations must be >= 0"),
    (["transfer", "--params", "folder.py"], "folder.py is a directory"),
]


@pytest.mark.parametrize("args,fragment", OTHER, ids=[" ".join(a) for a, _ in OTHER])
def test_other_commands_bad_input(files, args, fragment):
    before = sorted(p.name for p in files.iterdir())
    r = run(*args)
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert sorted(p.name for p in files.iterdir()) == before, "bad input must write nothing"
