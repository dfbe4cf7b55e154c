"""`avo report` writes a PNG, a self-contained HTML page, metrics and CSVs.
About a second (matplotlib)."""
import base64
import csv
import json

import pytest
from typer.testing import CliRunner

from avo.cli import app
from avo.lineage import Lineage
from avo.report import build_report
from tests.fake_results import CONFIGS, make_candidate, make_result


@pytest.fixture
def lineage(tmp_path):
    seed = tmp_path / "seed.py"
    seed.write_text("# seed\n")
    lin = Lineage(tmp_path / "lineage")
    lin.init_from_seed(seed, make_result((100.0, 80.0)))
    lin.commit(make_candidate("# v1\n", name="block_n=128"), make_result((110.0, 84.0)), 0.01)
    lin.commit(make_candidate("# v2\n", parent=0, name="<lazy-rescale>", operator="agent"),
               make_result((115.0, 90.0)), 0.01)
    lin.commit(make_candidate("# bad\n", parent=2), make_result(status="incorrect"), 0.01)
    return lin


def test_report_files(lineage, tmp_path):
    files = build_report(lineage, tmp_path / "reports", title="test lineage")
    png = files.png.read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    page = files.html.read_text()
    # self-contained: the PNG itself is inlined, nothing is fetched
    assert base64.b64encode(png).decode() in page and "src='http" not in page
    assert "&lt;lazy-rescale&gt;" in page and "<lazy-rescale>" not in page  # escaped
    assert page.count("<tr") == 1 + 3 and "× cuDNN" in page and CONFIGS[0] in page
    assert "<ul class='tree'><li><b>v0</b>" in page  # v1 and v2 both hang under v0
    m = json.loads(files.metrics.read_text())
    assert m["versions"] == 3 and m["best_version"] == 2 and m["attempts"] == 4
    assert m["speedup_vs_seed"] == pytest.approx(((115 * 90) / (100 * 80)) ** 0.5)
    rows = list(csv.DictReader(files.curve.open()))
    assert [r["version"] for r in rows] == ["0", "1", "2"] and rows[2]["parent"] == "0"
    assert float(rows[0]["cudnn_tflops"]) == pytest.approx(120.0)
    cfg_rows = list(csv.DictReader(files.configs.open()))
    assert float(cfg_rows[1][CONFIGS[1]]) == 84.0


def test_interpreter_lineage_reports_gflops(tmp_path):
    seed = tmp_path / "seed.py"
    seed.write_text("# seed\n")
    lin = Lineage(tmp_path / "lineage")
    lin.init_from_seed(seed, make_result((0.002, 0.001), device="cpu", gpu=None, suite="cpu",
                                         interpreter=True))
    files = build_report(lin, tmp_path / "r")
    assert "GFLOP/s" in files.html.read_text()


def test_avo_report_command(lineage, tmp_path):
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["report", "--lineage", str(lineage.root), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert (out / "lineage.png").is_file() and (out / "lineage.html").is_file()


def test_avo_report_on_empty_lineage_is_a_one_line_error(tmp_path):
    r = CliRunner().invoke(app, ["report", "--lineage", str(tmp_path / "none")])
    assert r.exit_code == 2 and "no lineage versions" in r.output and "Traceback" not in r.output
