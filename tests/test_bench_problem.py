"""`avo bench --problem`: the second problem through the bench command, unchanged, and a
table that says which library fills the record's baseline column and, for a problem
whose shapes say what bytes they move, the GB/s beside the FLOP rate."""
import re

from rich.console import Console
from typer.testing import CliRunner

from avo.cli import app
from avo.commands import bench
from avo.problem import REPO_ROOT, load_problem
from tests.fake_results import make_result

RMS_PATH = REPO_ROOT / "kernel_src" / "rmsnorm" / "problem.py"
RMS = load_problem(RMS_PATH)


def _table(result, problem, monkeypatch):
    console = Console(record=True, width=200)
    monkeypatch.setattr(bench, "console", console)
    bench.print_result(result, "k.py", problem)
    return console.export_text()


def test_rmsnorm_table_has_bytes_per_second_and_names_its_baseline(monkeypatch):
    r = make_result((300.0, 200.0), device="cuda", gpu="H100", suite="llm", interpreter=False)
    r.timings[0].config, r.timings[1].config = "m32768 n4096 bf16", "m32768 n8192 bf16"
    r.env["baseline_labels"] = {"cudnn": RMS.BASELINES["cudnn"][2]}
    text = _table(r, RMS, monkeypatch)
    assert "GB/s" in text and "× torch rms_norm" in text and "× cuDNN" not in text and "FA2" not in text
    ms = r.timings[0].ms
    gbs = RMS.Shape(32768, 4096).bytes() / (ms * 1e-3) / 1e9
    assert f"{gbs:.3g}" in text  # bytes moved per second, from the problem's own count


def test_attention_table_is_unchanged(monkeypatch):
    text = _table(make_result((300.0, 200.0), device="cuda", gpu="H100", suite="avo", interpreter=False),
                  load_problem(), monkeypatch)
    assert re.search(r"cuDNN\s.*FA2\s.*× cuDNN\s.*× FA2", text) and "GB/s" not in text


def test_bench_runs_an_rmsnorm_kernel_and_names_the_problems_entry(tmp_path):
    kernel = RMS_PATH.parent / "seeds" / "rowwise.py"
    r = CliRunner().invoke(app, ["bench", "--problem", str(RMS_PATH), str(kernel), "--device", "cpu", "--quick"])
    assert r.exit_code == 0, r.output
    assert "status: ok" in r.output
    wrong = tmp_path / "attention_kernel.py"
    wrong.write_text((REPO_ROOT / "kernel_src/attention/seeds/fa2.py").read_text())
    r = CliRunner().invoke(app, ["bench", "--problem", str(RMS_PATH), str(wrong), "--device", "cpu"])
    assert r.exit_code == 2 and "no top-level function `rmsnorm(x, w, eps=1e-6)`" in r.output
