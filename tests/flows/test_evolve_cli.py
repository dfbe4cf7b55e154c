"""`avo evolve` from the command line (in-process, fake harness): embedded
defaults, the summary line, one-line errors with exit code 2."""
from typer.testing import CliRunner

from avo.cli import app
from avo.lineage import Lineage


def test_avo_evolve_runs_and_resumes_from_the_command_line(fake_harness, run_args, monkeypatch, tmp_path):
    fake_harness()
    params = tmp_path / "params.yaml"
    params.write_text(params.read_text() + "evolve:\n  state_dir: " + run_args["state_dir"] + "\n")
    # lineage root: relative paths hang off the params file's folder
    params.write_text(params.read_text().replace("lineage:\n", "lineage:\n  root: lineage\n"))
    result = CliRunner().invoke(app, ["evolve", "--params", str(params), "--device", "cpu", "--generations", "1"])
    assert result.exit_code == 0, result.output
    assert "1 of 1 generations" in result.output and "finished" in result.output
    assert len(Lineage(tmp_path / "lineage").attempts()) == 3  # seed + the default population of 2


def test_user_mistakes_are_one_line_and_exit_2(run_args, monkeypatch):
    monkeypatch.delenv("AVO_MODEL", raising=False)
    r = CliRunner().invoke(app, ["evolve", "--operator", "genetic"])
    assert r.exit_code == 2 and "unknown operator" in r.output
    r = CliRunner().invoke(app, ["evolve", "--operator", "agent", "--params", run_args["params_path"],
                                 "--device", "cpu"])
    assert r.exit_code == 2 and "agent.model" in r.output and "Traceback" not in r.output
    assert r.output.count("error:") == 1


def test_a_missing_seed_kernel_is_one_line(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("lineage:\n  seed: nowhere/seed.py\n")
    r = CliRunner().invoke(app, ["evolve", "--params", str(params), "--device", "cpu"])
    assert r.exit_code == 2 and "no seed kernel at" in r.output and "Traceback" not in r.output
