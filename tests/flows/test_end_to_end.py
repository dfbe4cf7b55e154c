"""One whole generation on CPU with the real harness (Triton interpreter) and
the heuristic operator; then Dask: the vary/evaluate tasks on a local cluster."""
import os

from avo import live
from avo.lineage import Lineage
from flows.evolve import evolve


def test_one_real_generation_on_cpu(run_args, monkeypatch):
    from avo.harness import runner, spares

    pool = spares.Spares(runner.SPARES._spawn)  # this run's spare judges, to look at afterwards
    monkeypatch.setattr(runner, "SPARES", pool)
    events = []
    live.subscribe(lambda kind, data: events.append((kind, data)))
    s = evolve(generations=1, population=2, **run_args)
    # the run kept spare judges (a candidate after the first found one) and ended them all
    assert pool.taken >= 1 and pool.started >= 2 and not pool.enabled and pool.count() == 0
    assert any(a["judge_spare"] for a in Lineage(run_args["lineage_root"]).attempts())
    lineage = Lineage(run_args["lineage_root"])
    attempts = lineage.attempts()
    assert [a["generation"] for a in attempts] == [0, 1, 1]
    assert all(a["status"] == "ok" and a["interpreter"] for a in attempts), attempts
    assert lineage.get(0).result.suite == "cpu"
    assert s.finished and s.evaluated == 2
    # every commit followed the rule against the best at the time; techniques are knob moves
    for a in attempts[1:]:
        assert a["operator"] == "heuristic" and "=" in a["technique"]["name"] and a["technique"]["why"]
        assert a["committed"] == (a["version"] is not None)
    assert len(lineage.versions()) == 1 + len(s.committed)
    assert [k for k, _ in events][:3] == ["start", "seed", "generation"]


def test_evaluate_tasks_run_on_a_dask_cluster(run_args, tmp_path):
    from distributed import LocalCluster

    from tests.fake_results import make_result

    # v0 from a recorded result (the seed's evaluation is not what this test is about)
    Lineage(run_args["lineage_root"]).init_from_seed(
        "kernel_src/attention/seeds/fa2.py", make_result((1e-4, 1e-4), device="cpu", gpu="cpu", suite="cpu",
                                                          interpreter=True))
    where = []
    live.subscribe(lambda kind, data: where.append(data["where"]) if kind == "candidate" else None)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        s = evolve(generations=1, population=2, quick=True, dask_address=cluster.scheduler_address, **run_args)
    assert s.evaluated == 2 and len(where) == 2
    assert all(w["pid"] != os.getpid() for w in where)  # evaluated in the Dask workers' processes
    # quick evaluations have no timings: correct, but nothing to commit
    assert [a["status"] for a in Lineage(run_args["lineage_root"]).attempts()[1:]] == ["ok", "ok"]
    assert s.committed == []
