"""MLflow tracking against a temporary sqlite store: nested runs, params, metrics,
tags, artifacts; and a broken tracking server never costing a lineage commit.
A few seconds (MLflow import and sqlite schema creation)."""
import pytest

from avo.config import LineageConfig
from avo.lineage import CommitDecision, Lineage
from avo.promotion import promote
from avo.tracking import Tracker, metric_key
from tests.fake_results import CONFIGS, make_candidate, make_result


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)  # a stray ./mlruns must not matter: we always pass a URI
    return tmp_path


def test_default_store_is_sqlite_under_repo_mlflow(store):
    t = Tracker(root=store)
    assert t.uri == f"sqlite:///{store / 'mlflow' / 'mlflow.db'}"


def test_env_var_overrides_default(store, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////elsewhere/x.db")
    assert Tracker(root=store).uri == "sqlite:////elsewhere/x.db"


def test_session_with_nested_candidate_runs(store):
    from mlflow.tracking import MlflowClient

    tracker = Tracker(root=store, experiment="attention-fwd-test")
    cand = make_candidate("# v1\nBLOCK_N = 128\n", parent=0)
    with tracker.start_session("evolve-test", params={"evolve": {"generations": 2}}) as t:
        session_id = t.session_run_id
        ok_id = t.log_candidate(cand, make_result((110.0, 90.0)), CommitDecision(True, 1, "faster"),
                                diff="-BLOCK_N = 64\n+BLOCK_N = 128\n")
        bad_id = t.log_candidate(cand.with_source("# bad\n"),
                                 make_result(status="incorrect", message="rel err 0.4"),
                                 CommitDecision(False, None, "status incorrect"))
        t.log_session_metrics({"best_geomean_tflops": 99.5}, step=1)
    assert tracker.warnings == []

    client = MlflowClient(tracking_uri=tracker.uri)
    exp = client.get_experiment_by_name("attention-fwd-test")
    assert exp.artifact_location.endswith("mlflow/artifacts")
    session = client.get_run(session_id)
    assert session.info.status == "FINISHED" and session.data.params["evolve.generations"] == "2"
    assert session.data.metrics["best_geomean_tflops"] == 99.5

    ok = client.get_run(ok_id)
    assert ok.data.tags["mlflow.parentRunId"] == session_id
    assert ok.data.tags["status"] == "ok" and ok.data.tags["committed"] == "true"
    assert ok.data.tags["version"] == "v1" and ok.data.tags["env.gpu"] == "NVIDIA H100"
    assert ok.data.params["parent"] == "v0" and ok.data.params["operator"] == "heuristic"
    assert ok.data.params["technique"] == "block_n=128" and ok.data.params["generation"] == "1"
    m = ok.data.metrics
    assert m[metric_key("evaluate", "tflops", CONFIGS[0])] == 110.0
    assert m["evaluate/ratio_cudnn"] == pytest.approx((110 / 120 * 90 / 120) ** 0.5)
    assert m["evaluate/ratio_fa2"] > 0 and m["compile/registers"] == 168
    assert m["commit/committed"] == 1.0 and "evaluate/max_rel_err" in m
    files = {a.path for a in client.list_artifacts(ok_id)}
    assert files == {"kernel.py", "diff_to_parent.patch", "harness.log", "result.json"}
    assert (store / "mlflow" / "artifacts").is_dir()

    bad = client.get_run(bad_id)
    assert bad.data.tags["status"] == "incorrect" and bad.data.tags["committed"] == "false"
    assert bad.data.tags["message"] == "rel err 0.4"
    assert bad.data.metrics[metric_key("evaluate", "tflops", CONFIGS[0])] == 0.0  # wrong scores 0
    assert len(client.search_runs([exp.experiment_id])) == 3


def test_metric_keys_are_valid_mlflow_names():
    assert metric_key("evaluate", "tflops", "gqa32/8 b4 s8192 d128 causal bf16") == \
        "evaluate/tflops/gqa32_8_b4_s8192_d128_causal_bf16"


def test_broken_server_never_loses_a_lineage_commit(store, capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    seed = store / "seed.py"
    seed.write_text("# seed\n")
    lin = Lineage(store / "lineage")
    lin.init_from_seed(seed, make_result((100.0, 100.0)))
    tracker = Tracker(uri="http://127.0.0.1:9", root=store)  # nothing listens on port 9
    cfg = LineageConfig(git_commit="off", require_confirm_cuda=False)  # fake results carry no confirmation
    with tracker.start_session("broken") as t:
        p1 = promote(lin, make_candidate("# v1\n"), make_result((120.0, 120.0)), cfg, tracker=t)
        p2 = promote(lin, make_candidate("# v2\n", parent=1), make_result((150.0, 150.0)), cfg, tracker=t)
    assert p1.decision.committed and p2.decision.committed
    assert [v.number for v in lin.versions()] == [0, 1, 2]
    assert len(tracker.warnings) == 1 and not tracker.enabled  # warned once, then off
    err = capsys.readouterr().err
    assert err.count("avo: warning: MLflow tracking failed") == 1
    assert "lineage commits are unaffected" in err


def test_disabled_tracker_does_nothing(store):
    t = Tracker(root=store, enabled=False)
    with t.start_session() as s:
        assert s.log_candidate(make_candidate(), make_result(), None) is None
    assert not (store / "mlflow").exists()


def test_a_store_named_by_uri_keeps_artifacts_beside_its_database(store, tmp_path_factory):
    """MLFLOW_TRACKING_URI=sqlite:///elsewhere/mlflow.db: the artifacts go next to that database,
    not into ./mlruns of whatever directory avo runs from (they littered the repository root)."""
    from mlflow.tracking import MlflowClient

    db_dir = tmp_path_factory.mktemp("store")
    tracker = Tracker(uri=f"sqlite:///{db_dir / 'mlflow.db'}", root=store, experiment="by-uri")
    with tracker.start_session("evolve-test", params={}) as t:
        t.log_candidate(make_candidate("# v1\n", parent=0), make_result((110.0, 90.0)),
                        CommitDecision(True, 1, "faster"), diff="+x\n")
    assert tracker.warnings == []
    exp = MlflowClient(tracking_uri=tracker.uri).get_experiment_by_name("by-uri")
    assert exp.artifact_location == (db_dir / "artifacts").resolve().as_uri()
    assert not (store / "mlruns").exists() and any((db_dir / "artifacts").rglob("kernel.py"))
