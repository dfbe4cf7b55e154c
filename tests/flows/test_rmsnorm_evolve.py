"""The second problem through the product, unchanged: a short CPU `avo evolve` on fused
RMSNorm with the heuristic operator and the real harness (Triton interpreter), then
`avo report` on the lineage it made. CI runs it (about a minute on two cores)."""
import json

from typer.testing import CliRunner

from avo.cli import app
from avo.lineage import Lineage
from avo.problem import REPO_ROOT

PROBLEM = REPO_ROOT / "kernel_src" / "rmsnorm" / "problem.py"


def test_rmsnorm_evolves_on_cpu_and_reports(tmp_path):
    params = tmp_path / "params.yaml"
    # lineage and journal under tmp_path (relative paths hang off the params file's folder); seed: the problem's
    params.write_text("tracking:\n  enabled: false\nlineage:\n  root: lineage\n  seed: null\n  git_commit: 'off'\n"
                      "evolve:\n  state_dir: .avo\n")
    r = CliRunner().invoke(app, ["evolve", "--params", str(params), "--problem", str(PROBLEM), "--device", "cpu",
                                 "--operator", "heuristic", "--generations", "1", "--population", "1"])
    assert r.exit_code == 0, r.output
    lineage = Lineage(tmp_path / "lineage")
    v0 = lineage.get(0)
    assert v0.result.status == "ok" and v0.result.suite == "cpu" and v0.result.interpreter
    assert v0.source == (PROBLEM.parent / "seeds" / "rowwise.py").read_text()  # the problem's SEED
    assert {t.config for t in v0.result.timings} == {"m16 n256 fp16", "m12 n512 bf16"}
    assert v0.result.heldout and all(c.passed for c in v0.result.checks)
    attempts = lineage.attempts()
    assert [a["generation"] for a in attempts] == [0, 1]
    move = attempts[1]
    assert move["operator"] == "heuristic" and "=" in move["technique"]["name"]
    knob = move["technique"]["name"].split("=")[0]
    assert knob in ("BLOCK_M", "BLOCK_N", "NUM_WARPS", "ONE_PASS")  # rmsnorm's knobs, not attention's
    assert "softmax" not in move["technique"]["why"]  # the problem's own lever table
    assert move["status"] == "ok", move

    out = tmp_path / "reports"
    r = CliRunner().invoke(app, ["report", "--params", str(params), "--lineage", str(tmp_path / "lineage"),
                                 "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert (out / "lineage.html").stat().st_size > 0 and (out / "lineage.png").stat().st_size > 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics and "m16 n256 fp16" in (out / "lineage.html").read_text()
