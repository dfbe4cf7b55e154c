"""`dvc repro` in a temporary git repository, on CPU: bench -> evolve -> report.

A tiny dvc.yaml with the same mechanics as the project's (params from
params.yaml, the lineage as a `cache: false` + `persist: true` out that git
keeps, report metrics and plots), but with cheap stage commands: bench and
evolve are small Python scripts with hand-made results (no kernel is run),
evolve uses the real Lineage and promotion (so a promotion is a git commit
inside `dvc repro`), and report is the real `avo report`. The test checks that
the second `dvc repro` does nothing, that metrics and plots read the report,
that a param change reruns evolve, and that a fresh `git clone` has the lineage.
About 10 s (a handful of DVC commands)."""
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")

BENCH = """
import json, sys
sys.path.insert(0, {repo!r})
from tests.fake_results import make_result
r = make_result((0.002, 0.001), device="cpu", gpu=None, suite="cpu", interpreter=True)
open("benchmarks/seed.json", "w").write(r.to_json())
"""

EVOLVE = """
import sys
sys.path.insert(0, {repo!r})
from avo.config import load_config
from avo.lineage import Lineage
from avo.promotion import promote
from avo.records import EvalResult
from tests.fake_results import make_candidate, make_result
cfg = load_config()
lin = Lineage(cfg.lineage.root)
seed = EvalResult.from_json(open("benchmarks/seed.json").read())
lin.init_from_seed(cfg.lineage.seed, seed)
best = lin.best()
cand = make_candidate(best.source + "NUM_STAGES = 3  # tweak\\n", parent=best.number, name="num_stages=3")
faster = make_result([t.tflops * 1.2 for t in best.result.timings], device="cpu", gpu=None,
                     suite="cpu", interpreter=True)
p = promote(lin, cand, faster, cfg.lineage)
print("evolve:", p.decision, p.git)
"""

DVC_YAML = """
stages:
  bench:
    cmd: {py} bench.py
    deps: [kernels/seed.py, bench.py]
    params: [harness]
    outs:
      - benchmarks/seed.json:
          cache: false
  evolve:
    cmd: {py} evolve.py
    deps: [benchmarks/seed.json, kernels/seed.py, evolve.py]
    params: [lineage, evolve]
    outs:
      - kernels/lineage:
          cache: false
          persist: true
  report:
    cmd: {py} -m avo.commands.report
    deps: [kernels/lineage]
    params: [report]
    outs: [reports/lineage.png, reports/lineage.html]
    metrics:
      - reports/metrics.json:
          cache: false
    plots:
      - reports/lineage_curve.csv:
          cache: false
plots:
  - curve:
      x: version
      y:
        reports/lineage_curve.csv: [geomean_tflops]
"""

PARAMS = """
harness: {device: cpu}
lineage: {root: kernels/lineage, seed: kernels/seed.py, noise_margin_cpu: 0.05, git_commit: auto}
evolve: {generations: 1}
tracking: {enabled: false}
report: {out_dir: reports, title: dvc test}
"""


@pytest.fixture
def project(tmp_path):
    repo = tmp_path / "proj"
    repo.mkdir()
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "DVC_SITE_CACHE_DIR": str(tmp_path / "dvc-site"),
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "PYTHONPATH": str(REPO), "MPLBACKEND": "Agg"}
    env.pop("AVO_PARAMS", None)
    dvc = [sys.executable, "-m", "dvc"]

    def sh(*cmd, cwd=repo):
        r = subprocess.run(list(cmd), cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, f"{cmd}: {r.stdout}\n{r.stderr}"
        return r.stdout + r.stderr

    (repo / "kernels").mkdir()
    (repo / "kernels" / "seed.py").write_text("# seed kernel\nBLOCK_N = 64\n")
    (repo / "bench.py").write_text(BENCH.format(repo=str(REPO)))
    (repo / "evolve.py").write_text(textwrap.dedent(EVOLVE.format(repo=str(REPO))))
    (repo / "benchmarks").mkdir()
    (repo / "dvc.yaml").write_text(DVC_YAML.format(py=sys.executable))
    (repo / "params.yaml").write_text(PARAMS)
    sh("git", "init", "-q")
    sh(*dvc, "init", "-q")
    sh(*dvc, "config", "core.autostage", "true")
    shutil.copy(REPO / ".dvcignore", repo / ".dvcignore")  # the project's ignores (lock file)
    sh("git", "add", ".")
    sh("git", "commit", "-qm", "project")
    return repo, sh, dvc


def test_repro_twice_second_is_noop(project, tmp_path):
    repo, sh, dvc = project
    first = sh(*dvc, "repro")
    for stage in ("bench", "evolve", "report"):
        assert f"Running stage '{stage}'" in first
    assert (repo / "kernels/lineage/v0000/kernel.py").is_file()
    assert (repo / "kernels/lineage/v0001/version.json").is_file()
    # the promotion was a git commit of the lineage files, made from inside the stage
    assert "lineage v1: num_stages=3" in sh("git", "log", "--format=%s")
    assert (repo / "reports/lineage.png").is_file() and (repo / "reports/lineage.html").is_file()

    second = sh(*dvc, "repro")
    assert "Running stage" not in second
    assert "up to date" in sh(*dvc, "status")

    lock = (repo / "dvc.lock").read_text()
    assert "kernels/lineage" in lock and "md5" in lock
    metrics = json.loads(sh(*dvc, "metrics", "show", "--json"))
    values = json.dumps(metrics)
    assert '"best_version": 1' in values and "speedup_vs_seed" in values
    plots = sh(*dvc, "plots", "show", "--json")
    assert "geomean_tflops" in plots

    # a fresh clone (no DVC remote) has the seed and the whole lineage from git
    sh("git", "add", "dvc.lock", "reports", "benchmarks")
    sh("git", "commit", "-qm", "repro")
    clone = tmp_path / "clone"
    sh("git", "clone", "-q", str(repo), str(clone))
    assert (clone / "kernels/lineage/v0001/kernel.py").read_text().endswith("# tweak\n")
    assert (clone / "kernels/lineage/attempts.jsonl").is_file()
    status = sh(*dvc, "status", "evolve", cwd=clone)
    assert "changed" not in status, status  # lineage hash in dvc.lock matches git's files

    # a param that evolve reads makes evolve stale; bench, upstream of it, stays up to date
    (repo / "params.yaml").write_text(PARAMS.replace("noise_margin_cpu: 0.05", "noise_margin_cpu: 0.1"))
    status = sh(*dvc, "status")
    assert "evolve:" in status and "bench:" not in status
