"""Where a user sees what a commit stood on (issue 13): `avo evolve`'s lines, the
candidate's MLflow run, and the report (PNG, page, metrics, CSV, tree). Temporary
lineages and stores; a few seconds (matplotlib, MLflow)."""
import csv
import io
import json
import re
from pathlib import Path

import pytest
from rich.console import Console

from avo.commands import evolve as evolve_cmd
from avo.config import LineageConfig
from avo.cost_basis import model_for
from avo.lineage import Lineage
from avo.operators.heuristic import set_knobs
from avo.problem import DEFAULT_PROBLEM
from avo.promotion import promote
from avo.report import build_report
from flows.bookkeeping import basis_fields
from tests.fake_results import make_candidate, make_result

SEED_FILE = Path(DEFAULT_PROBLEM).parent / "seeds" / "fa2.py"
SEED = SEED_FILE.read_text()
WIDER = set_knobs(SEED, {"BLOCK_N": 128})
CFG = LineageConfig(git_commit="off")


def interp(tflops):
    return make_result((tflops, tflops), device="cpu", gpu=None, suite="cpu", interpreter=True)


def confirm(result, ratio=1.08, spread=0.03, best_version=0):
    result.confirm = {"best_version": best_version, "best_sha256": "", "rounds": 3, "configs": ["c"],
                      "ratio": ratio, "spread": spread, "candidate_ms": [], "best_ms": []}
    return result


@pytest.fixture
def cpu_lineage(tmp_path):
    lin = Lineage(tmp_path / "cpu")
    lin.init_from_seed(SEED_FILE, interp(1e-4))
    assert promote(lin, make_candidate(WIDER, parent=0, name="BLOCK_N=128"), interp(0.9e-4), CFG).decision.committed
    promote(lin, make_candidate(set_knobs(SEED, {"NUM_STAGES": 1}), parent=1, name="NUM_STAGES=1"),
            interp(2.2e-4), CFG)  # not committed: the model sees a loss however fast the interpreter ran
    return lin


def _progress_lines(device, events, capsys):
    p = evolve_cmd.Progress(plain=True)
    p.on_event("start", dict(run_id="r1", resumed=False, generation=1, device=device, suite="s",
                             operator="heuristic", population=2))
    for data in events:
        p.on_event("candidate", {"generation": 1, "slot": 0, "technique": "t", **data})
    return [line.split(" ", 1)[1] for line in capsys.readouterr().out.splitlines()]


def test_avo_evolve_says_the_basis_once_and_each_candidates_figure(capsys):
    r = interp(2.2e-4)
    r.model = model_for(SEED)
    lines = _progress_lines("cpu", [dict(status="ok", committed=False, geomean=r.geomean_tflops,
                                         detail="basis model: 332.6 < 336", **basis_fields(r, 0.01))], capsys)
    assert lines[1] == "commits on: modelled H100 TFLOPS (interpreter timings are informational)"
    assert sum(line.startswith("commits on:") for line in lines) == 1
    assert lines[2].startswith(f"g1 slot 0 t: ok [model {r.model['modelled_tflops']:.1f} H100 TFLOPS] (basis model:")

    g = confirm(make_result((120.0, 120.0)), ratio=1.031, spread=0.012)
    lines = _progress_lines("cuda", [dict(status="ok", committed=True, version=3, geomean=120.0,
                                          detail="basis confirm: ...", **basis_fields(g, 0.012))], capsys)
    assert lines[1] == "commits on: suite geomean + interleaved confirmation, margin from measured spread"
    assert lines[2] == "g1 slot 0 t: committed v3 [confirm 1.031x, margin 0.012]"


def test_the_live_panel_shows_the_basis_and_the_cpu_best_by_the_model(cpu_lineage):
    p = evolve_cmd.Progress(plain=False)
    p.on_event("start", dict(run_id="r1", resumed=False, generation=1, device="cpu", suite="cpu",
                             operator="heuristic", population=1, lineage=str(cpu_lineage.root)))
    out = io.StringIO()
    Console(file=out, width=250).print(p.render())
    text = out.getvalue()
    assert "commits on" in text and "modelled H100 TFLOPS (interpreter timings are informational)" in text
    assert f"v1: {model_for(WIDER)['modelled_tflops']:.1f} modelled H100 TFLOPS" in text


def test_the_candidates_mlflow_run_has_the_basis_metrics_and_tag(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from avo.tracking import Tracker

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    lin = Lineage(tmp_path / "cpu")
    lin.init_from_seed(SEED_FILE, interp(1e-4))
    gpu = Lineage(tmp_path / "gpu")
    gpu.init_from_seed(SEED_FILE, make_result((100.0, 100.0)))
    tracker = Tracker(root=tmp_path, experiment="basis")
    with tracker.start_session("t") as t:
        p_cpu = promote(lin, make_candidate(WIDER, parent=0), interp(1e-4), CFG, tracker=t)
        p_gpu = promote(gpu, make_candidate("# v1\n", parent=0), confirm(make_result((120.0, 120.0))), CFG,
                        tracker=t)
    assert tracker.warnings == [] and p_cpu.decision.committed and p_gpu.decision.committed
    client = MlflowClient(tracking_uri=tracker.uri)
    runs = {r.data.tags.get("commit_basis"): r for r in client.search_runs(
        [client.get_experiment_by_name("basis").experiment_id], "tags.`avo.kind` = 'candidate'")}
    cpu, gpu_run = runs["model"], runs["confirm"]
    assert cpu.data.metrics["commit/model_tflops"] == model_for(WIDER)["modelled_tflops"]
    assert cpu.data.metrics["commit/commit_margin"] == 0.01 and "commit/confirm_ratio" not in cpu.data.metrics
    assert cpu.data.tags["commit_reason"].startswith("basis model:")
    assert gpu_run.data.metrics["commit/confirm_ratio"] == 1.08
    assert gpu_run.data.metrics["commit/confirm_spread"] == 0.03
    assert gpu_run.data.metrics["commit/commit_margin"] == 0.03  # the spread beat the 0.01 floor
    assert "commit/model_tflops" not in gpu_run.data.metrics


def test_the_cpu_report_shows_the_model_as_the_basis(cpu_lineage, tmp_path):
    files = build_report(cpu_lineage, tmp_path / "r")
    wider = model_for(WIDER)["modelled_tflops"]
    m = json.loads(files.metrics.read_text())
    assert m["commit_basis"] == "model" and m["best_version"] == 1 and m["best_modelled_tflops"] == wider
    assert m["commits_on"] == "modelled H100 TFLOPS (interpreter timings are informational)"
    page = files.html.read_text()
    assert "<b>commits on:</b> modelled H100 TFLOPS (interpreter timings are informational)" in page
    table = page.split("<h2>Versions</h2>")[1].split("</table>")[0]
    assert "commit basis" in table and f"model {wider:.1f} H100 TFLOPS" in table
    assert f"best v1 at {wider:.1f} modelled H100 TFLOPS" in page and "informational" in page
    rows = list(csv.DictReader(files.curve.open()))
    assert [r["commit_basis"] for r in rows] == ["seed", "model"] and float(rows[1]["modelled_tflops"]) == wider
    tree = json.loads(re.search(r'id="avo-tree-data">(.*?)</script>', files.tree.read_text(), re.S).group(1))
    nodes = {n["id"]: n for n in tree["nodes"]}
    assert nodes["v1"]["basis"] == f"model {wider:.1f} H100 TFLOPS" and nodes["v1"]["model"] == wider
    assert tree["best"]["id"] == "v1" and tree["commits_on"].startswith("modelled H100 TFLOPS")
    stages1 = [n for n in tree["nodes"] if n["kind"] == "attempt"]
    stages1_model = model_for(set_knobs(SEED, {"NUM_STAGES": 1}))["modelled_tflops"]
    assert stages1[-1]["basis"] == f"model {stages1_model:.1f} H100 TFLOPS" and stages1_model < wider


def test_the_gpu_report_shows_each_versions_confirmation(tmp_path):
    lin = Lineage(tmp_path / "gpu")
    lin.init_from_seed(SEED_FILE, make_result((100.0, 100.0)))
    promote(lin, make_candidate("# v1\n", parent=0), confirm(make_result((120.0, 120.0)), 1.08, 0.03), CFG)
    files = build_report(lin, tmp_path / "r")
    page = files.html.read_text()
    assert "commits on:</b> suite geomean + interleaved confirmation" in page
    assert "confirm 1.080x v0 (spread 0.03, 3 rounds)" in page
    assert json.loads(files.metrics.read_text())["commit_basis"] == "confirm"
    assert [r["confirm_ratio"] for r in csv.DictReader(files.curve.open())] == ["", "1.08"]


def test_no_report_module_is_over_400_lines():
    root = Path(__file__).resolve().parents[1] / "avo"
    for name in ("report.py", "report_png.py", "report_html.py", "tree.py", "cost_basis.py", "commit_rule.py"):
        assert len((root / name).read_text().splitlines()) <= 400, name
