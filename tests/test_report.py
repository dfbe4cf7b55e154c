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
    versions_table = page.split("<h2>Versions</h2>")[1].split("</table>")[0]
    assert versions_table.count("<tr") == 1 + 3 and "× cuDNN" in page and CONFIGS[0] in page
    attempts_table = page.split("<h2>Every attempt</h2>")[1].split("</table>")[0]
    assert attempts_table.count("<tr") == 1 + 4 and "incorrect" in attempts_table  # uncommitted ones too
    assert "<ul class='tree'><li><b>v0</b>" in page  # v1 and v2 both hang under v0
    m = json.loads(files.metrics.read_text())
    assert m["versions"] == 3 and m["best_version"] == 2 and m["attempts"] == 4
    assert m["speedup_vs_seed"] == pytest.approx(((115 * 90) / (100 * 80)) ** 0.5)
    rows = list(csv.DictReader(files.curve.open()))
    assert [r["version"] for r in rows] == ["0", "1", "2"] and rows[2]["parent"] == "0"
    assert float(rows[0]["cudnn_tflops"]) == pytest.approx(120.0)
    cfg_rows = list(csv.DictReader(files.configs.open()))
    assert float(cfg_rows[1][CONFIGS[1]]) == 84.0


def test_interpreter_lineage_reports_tflops_labelled_never_zero(tmp_path):
    # one unit everywhere (issue 15, point 5): TFLOPS, interpreter figures labelled, never 0.0
    seed = tmp_path / "seed.py"
    seed.write_text("# seed\n")
    lin = Lineage(tmp_path / "lineage")
    lin.init_from_seed(seed, make_result((2e-6, 1e-6), device="cpu", gpu=None, suite="cpu",
                                         interpreter=True))
    page = build_report(lin, tmp_path / "r").html.read_text()
    assert "GFLOP/s" not in page and "TFLOPS (interpreter)" in page
    assert "1.414e-06" in page and ">0.0<" not in page


def test_avo_report_command(lineage, tmp_path):
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["report", "--lineage", str(lineage.root), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert (out / "lineage.png").is_file() and (out / "lineage.html").is_file()


def test_avo_report_on_empty_lineage_is_a_one_line_error(tmp_path):
    r = CliRunner().invoke(app, ["report", "--lineage", str(tmp_path / "none")])
    assert r.exit_code == 2 and "no lineage versions" in r.output and "Traceback" not in r.output


# ------------------------------------------------ issue 15, point 7: what the report shows
from pathlib import Path  # noqa: E402

from tests import browser  # noqa: E402

H100 = Path(__file__).resolve().parents[1] / "kernel_src/attention/lineage/cuda"


@pytest.fixture
def figures(monkeypatch):
    """The matplotlib figures build_report saves, for looking inside them."""
    from matplotlib.figure import Figure

    saved, real = [], Figure.savefig

    def keep(self, *args, **kwargs):
        saved.append(self)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    return saved


def test_one_version_gets_a_sensible_integer_x_axis(tmp_path, figures):
    seed = tmp_path / "seed.py"
    seed.write_text("# seed\n")
    lin = Lineage(tmp_path / "lineage")
    lin.init_from_seed(seed, make_result((100.0, 80.0)))
    build_report(lin, tmp_path / "r")
    for ax in figures[0].axes[:2]:
        lo, hi = ax.get_xlim()
        assert hi - lo >= 0.9, f"x axis runs from {lo:.3f} to {hi:.3f}"
        ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks


def test_every_h100_attempt_is_plotted_and_the_legend_hides_no_line(tmp_path, figures):
    lin = Lineage(H100)
    build_report(lin, tmp_path / "r")
    fig = figures[0]
    ax = fig.axes[0]
    points = sum(len(c.get_offsets()) for c in ax.collections)
    # the panel is the best's GPU model and suite (v4: H100, mha); the lineage also holds attempts
    # on other GPU models and suites (the 4x H200 runs on the AVO suite), which are not comparable
    same = [a for a in lin.attempts() if a.get("gpu") == "NVIDIA H100 80GB HBM3" and a.get("suite") == "mha"]
    assert points == len(same) == 27  # 5 committed versions + 22 attempts not committed
    assert len(lin.attempts()) > len(same)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)  # the figure was closed after saving: draw it again to measure
    canvas.draw()
    renderer = canvas.get_renderer()
    for a in fig.axes[:2]:
        legend = a.get_legend()
        box, area = legend.get_window_extent(renderer), a.get_window_extent(renderer)
        assert box.x0 >= area.x1 or box.y1 <= area.y0, "the legend sits on the plot"
    labels = " ".join(" ".join(t.get_text().split()) for t in ax.texts)
    for v in lin.versions():  # whole technique names, not cut at 28 characters
        assert f"v{v.number}: {v.technique.name}" in labels


def test_measured_column_names_its_configurations(lineage, tmp_path):
    page = build_report(lineage, tmp_path / "r").html.read_text()
    assert f"{CONFIGS[0]}: +10.0%" in page and f"{CONFIGS[1]}: +5.0%" in page


def test_report_page_does_not_scroll_sideways_at_1400px(tmp_path):
    files = build_report(Lineage(H100), tmp_path / "r")
    probe = browser.page_width_probe(files.html, tmp_path / "probe.html")
    res = browser.width_probe_result(browser.dump_dom(probe.as_uri(), tmp_path, width=1400))
    assert res["inner_width"] == 1400 and res["scroll_width"] <= 1400, res
