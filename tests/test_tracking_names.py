"""Issue 15 point 7 (MLflow): runs a person can find and compare. The session run
is `evolve <date time> <suite>`, candidates `g<gen>-c<n> <technique>`, and the
parent version is logged once per session as a baseline run with the same metric
keys, so the compare view has the parent beside its children. Temporary sqlite
store; a few seconds."""
import re

import pytest

from avo.lineage import CommitDecision, Lineage
from avo.tracking import Tracker, metric_key
from tests.fake_results import CONFIGS, make_candidate, make_result


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_named_runs_and_one_baseline_per_parent(store):
    from mlflow.tracking import MlflowClient

    seed = store / "seed.py"
    seed.write_text("# seed\nBLOCK_N = 64\n")
    lineage = Lineage(store / "lineage")
    v0 = lineage.init_from_seed(seed, make_result((100.0, 80.0)))
    tracker = Tracker(root=store, experiment="names-test")
    with tracker.start_session(lineage_root=lineage.root, suite="mha") as t:
        session_id = t.session_run_id
        a = t.log_candidate(make_candidate("# a\nBLOCK_N = 128\n", parent=0, name="block_n=128"),
                            make_result((110.0, 90.0)), CommitDecision(True, 1, "faster"))
        b = t.log_candidate(make_candidate("# b\nBLOCK_N = 32\n", parent=0, name="block_n=32"),
                            make_result((90.0, 70.0)), CommitDecision(False, None, "slower"))
    assert tracker.warnings == []

    client = MlflowClient(tracking_uri=tracker.uri)
    exp = client.get_experiment_by_name("names-test")
    runs = client.search_runs([exp.experiment_id])
    names = {r.info.run_name: r for r in runs}
    session = client.get_run(session_id)
    assert re.fullmatch(r"evolve \d{4}-\d\d-\d\d \d\d:\d\d mha", session.info.run_name)
    assert client.get_run(a).info.run_name == "g1-c1 block_n=128"
    assert client.get_run(b).info.run_name == "g1-c2 block_n=32"

    baselines = [r for r in runs if r.data.tags.get("avo.kind") == "baseline"]
    assert len(baselines) == 1  # the parent, once, however many children it has
    base = baselines[0]
    assert base.info.run_name.startswith("baseline v0")
    assert base.data.tags["mlflow.parentRunId"] == session_id and base.data.tags["version"] == "v0"
    assert base.data.metrics["evaluate/geomean_tflops"] == pytest.approx(v0.geomean)
    assert base.data.metrics[metric_key("evaluate", "tflops", CONFIGS[0])] == 100.0
    # the same keys as a candidate's, so the compare view lines them up
    cand_keys = set(client.get_run(a).data.metrics)
    assert {k for k in base.data.metrics if k.startswith("evaluate/")} <= cand_keys
    assert len(names) == 4
