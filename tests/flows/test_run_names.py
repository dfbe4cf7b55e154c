"""Issue 15 point 7 (Prefect, MLflow) through the real CLI: Prefect's flow runs are
named by generation (`generation-1`, not "brilliant-griffin") and their logs name
the verbs (select, vary, evaluate, commit, log task runs) while the terminal stays
quiet; MLflow gets a named session, named candidates and the parent as a baseline
run. Real temporary Prefect API (its database is read afterwards), slow fake
harness (tests/flows/evolve_driver.py), temporary MLflow sqlite store. About 25 s."""
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DRIVER = REPO / "tests" / "flows" / "evolve_driver.py"


def test_prefect_runs_named_by_generation_with_logs_and_mlflow_names(tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    params = tmp_path / "params.yaml"
    params.write_text(f"tracking:\n  uri: sqlite:///{tmp_path / 'mlflow.db'}\n  experiment: names\n"
                      f"lineage:\n  git_commit: 'off'\n  root: {tmp_path / 'lineage'}\n"
                      f"  seed: {REPO / 'kernel_src/attention/seeds/fa2.py'}\n"
                      f"evolve:\n  state_dir: {tmp_path / '.avo'}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "PYTEST_", "MLFLOW_"))}
    env.update(PREFECT_HOME=str(tmp_path / "prefect"), AVO_FAKE_EVAL_S="0.2", PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, str(DRIVER), str(markers), "--", "--params", str(params), "--device", "cpu",
                        "--operator", "heuristic", "--generations", "2", "--population", "2"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Finished in state" not in r.stdout + r.stderr  # INFO goes to the API, not the terminal

    db = sqlite3.connect(tmp_path / "prefect" / "prefect.db")
    runs = dict(db.execute("select name, id from flow_run"))
    assert {"generation-1", "generation-2"} <= set(runs), runs
    assert any(name.startswith("evolve 20") for name in runs), runs  # the parent flow run: when it started
    logged = " ".join(m for (m,) in db.execute("select message from log where flow_run_id = ?",
                                                (runs["generation-1"],)))
    task_runs = [n for (n,) in db.execute("select name from task_run where flow_run_id = ?", (runs["generation-1"],))]
    for verb in ("select", "vary", "evaluate", "commit", "log"):
        assert any(n.startswith(verb + "-") for n in task_runs), task_runs
    assert "Finished in state Completed" in logged, logged[:500]

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("names")
    names = sorted(run.info.run_name for run in client.search_runs([exp.experiment_id]))
    assert any(n.startswith("evolve ") and n.endswith(" cpu") for n in names), names
    assert any(n.startswith("baseline v0") for n in names), names
    assert sum(n.startswith(("g1-c", "g2-c")) for n in names) == 4, names
