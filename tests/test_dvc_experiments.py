"""DVC experiments as DVC users run them (issue 15 point 9): parameter sweeps
with `dvc exp run -S evolve.candidates_per_generation=N`, compared by
`dvc exp show`, on CPU with a tiny budget.

A tiny project with the project's mechanics (tests/test_dvc_pipeline.py's): the
lineage is a `cache: false` + `persist: true` out that git keeps, promotions go
through the real avo.promotion with lineage.git_commit: auto, and report is the
real `avo report`. Its evolve stage is a small script that reads params.yaml
through avo.config and promotes `candidates_per_generation` hand-made candidates
per generation (no kernel is run), each a knob step the cost model rates higher
(the CPU lineage's commit basis), so each experiment's metrics differ. What
must hold: each queued experiment starts from the committed lineage (not from
another experiment's), none moves the branch (inside `dvc exp run` a promotion
is not a git commit of ours: DVC records the results in the experiment), and
`dvc exp show` lists both with their params and metrics. About 30 s."""
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

EVOLVE = """
import sys
sys.path.insert(0, {repo!r})
from avo.config import load_config
from avo.lineage import Lineage
from avo.promotion import promote
from tests.fake_results import make_candidate, make_result
cfg = load_config()
lin = Lineage(cfg.lineage.root)
if not lin.versions():
    seed = make_result((0.002, 0.001), device="cpu", gpu=None, suite="cpu", interpreter=True)
    lin.init_from_seed(cfg.lineage.seed, seed)
CHAIN = [(16, 1), (16, 2), (16, 3), (32, 1), (32, 2), (64, 1), (64, 3)]  # (BLOCK_N, NUM_STAGES), modelled faster each
for g in range(cfg.evolve.generations):
    for i in range(cfg.evolve.candidates_per_generation):
        best = lin.best()
        bn, stages = CHAIN[best.number + 1]
        cand = make_candidate(f"# kernel\\nBLOCK_N = {{bn}}\\nNUM_STAGES = {{stages}}\\n# g{{g}} c{{i}}\\n",
                              parent=best.number, name=f"tweak g{{g}} c{{i}}")
        faster = make_result([t.tflops * 1.2 for t in best.result.timings], device="cpu", gpu=None,
                             suite="cpu", interpreter=True)
        print(promote(lin, cand, faster, cfg.lineage).decision)
"""

DVC_YAML = """
stages:
  evolve:
    cmd: {py} evolve.py
    deps: [kernels/seed.py, evolve.py]
    params: [lineage, evolve]
    outs:
      - kernels/lineage:
          cache: false
          persist: true
  report:
    cmd: {py} -m avo.commands.report
    deps: [kernels/lineage]
    params: [report]
    outs:
      - reports/lineage.png:
          cache: false
      - reports/lineage.html:
          cache: false
    metrics:
      - reports/metrics.json:
          cache: false
"""

PARAMS = """
harness: {device: cpu}
lineage: {root: kernels/lineage, seed: kernels/seed.py, noise_margin_cpu: 0.05, git_commit: auto}
evolve: {generations: 1, candidates_per_generation: 2}
tracking: {enabled: false}
report: {out_dir: reports, title: dvc experiments}
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
        r = subprocess.run(list(cmd), cwd=cwd, env=env, capture_output=True, text=True, timeout=180)
        assert r.returncode == 0, f"{cmd}: {r.stdout}\n{r.stderr}"
        return r.stdout + r.stderr

    (repo / "kernels").mkdir()
    (repo / "kernels" / "seed.py").write_text("# seed kernel\nBLOCK_N = 16\nNUM_STAGES = 1\n")
    (repo / "evolve.py").write_text(textwrap.dedent(EVOLVE.format(repo=str(REPO))))
    (repo / "dvc.yaml").write_text(DVC_YAML.format(py=sys.executable))
    (repo / "params.yaml").write_text(PARAMS)
    shutil.copy(REPO / ".dvcignore", repo / ".dvcignore")
    sh("git", "init", "-q")
    sh(*dvc, "init", "-q")
    sh(*dvc, "config", "core.autostage", "true")
    sh("git", "add", ".")
    sh("git", "commit", "-qm", "project")
    sh(*dvc, "repro")
    sh("git", "add", "-A")
    sh("git", "commit", "-qm", "baseline results")
    return repo, sh, dvc


def test_parameter_sweep_with_dvc_experiments(project):
    repo, sh, dvc = project
    head = sh("git", "rev-parse", "HEAD").strip()
    baseline = json.loads((repo / "reports/metrics.json").read_text())
    assert baseline["best_version"] == 2  # the baseline run promoted 2 candidates

    for n in (1, 3):
        sh(*dvc, "exp", "run", "--queue", "-S", f"evolve.candidates_per_generation={n}", "-n", f"pop{n}")
    sh(*dvc, "exp", "run", "--run-all")

    assert sh("git", "rev-parse", "HEAD").strip() == head  # no promotion moved the branch
    assert "nothing to commit" in sh("git", "status") or not sh("git", "status", "--porcelain").strip()
    shown = json.loads(sh(*dvc, "exp", "show", "--json"))
    exps = {}
    for rev in shown:
        for exp in (rev.get("experiments") or []):
            for run in exp.get("revs", []):
                data = run["data"]
                exps[run.get("name") or exp.get("name")] = data
    assert {"pop1", "pop3"} <= set(exps), list(exps)
    for name, n in (("pop1", 1), ("pop3", 3)):
        data = exps[name]
        params = data["params"]["params.yaml"]["data"]
        assert params["evolve"]["candidates_per_generation"] == n
        metrics = data["metrics"]["reports/metrics.json"]["data"]
        # each experiment continued the committed lineage (v0..v2), not the other experiment's
        assert metrics["best_version"] == 2 + n, (name, metrics)
    table = sh(*dvc, "exp", "show", "--no-pager", "--md")
    assert "pop1" in table and "pop3" in table and "candidates_per_generation" in table

    # an experiment's lineage comes back with `dvc exp apply`, with the versions it made
    sh(*dvc, "exp", "apply", "pop3")
    assert (repo / "kernels/lineage/v0005/kernel.py").is_file()


def test_dvc_plots_show_has_a_picture_that_works_offline(tmp_path):
    """The project's own dvc.yaml: DVC's page loads Vega from a CDN (blank offline), so
    the report's picture is on it too, as an image file beside the page; and the page's
    default folder, dvc_plots/, is git-ignored."""
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "DVC_SITE_CACHE_DIR": str(tmp_path / "dvc-site")}
    r = subprocess.run([sys.executable, "-m", "dvc", "plots", "show", "-o", str(tmp_path / "plots")], cwd=REPO,
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    page = (tmp_path / "plots" / "index.html").read_text()
    images = [m for m in __import__("re").findall(r'<img src="([^"]+)"', page)]
    assert any(src.endswith("lineage.png") for src in images), page[:2000]
    assert all((tmp_path / "plots" / src).is_file() for src in images)  # local files, not URLs
    ignored = subprocess.run(["git", "check-ignore", "-q", "dvc_plots/index.html"], cwd=REPO)
    assert ignored.returncode == 0, "dvc_plots/ is not git-ignored"
