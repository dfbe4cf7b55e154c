"""`avo lineage` list / show / diff / attempts / add / init. The harness is
replaced by a stub (milliseconds), except in the one `slow` test that makes v0
from the real seed on the CPU interpreter (~8 s)."""
from pathlib import Path

import pytest
from typer.testing import CliRunner

import avo.harness
from avo.cli import app
from avo.lineage import Lineage
from tests.fake_results import make_candidate, make_result

REPO = Path(__file__).resolve().parents[1]
run = CliRunner().invoke


@pytest.fixture
def env(tmp_path, monkeypatch):
    params = tmp_path / "params.yaml"
    params.write_text(f"lineage:\n  root: {tmp_path / 'lineage'}\n  git_commit: 'off'\n"
                      f"tracking:\n  enabled: false\n")
    seed = tmp_path / "seed.py"
    seed.write_text("# seed\nBLOCK_N = 64\n")
    lin = Lineage(tmp_path / "lineage")
    lin.init_from_seed(seed, make_result((100.0, 80.0)))
    lin.commit(make_candidate("# seed\nBLOCK_N = 128\n"), make_result((110.0, 88.0)), 0.01)
    return tmp_path, ["--params", str(params)], lin


def test_list_show_diff_attempts(env):
    _, opts, _ = env
    r = run(app, ["lineage", "list", *opts])
    assert r.exit_code == 0 and "*v1" in r.output and "block_n=128" in r.output and " v0 " in r.output
    r = run(app, ["lineage", "show", "v1", "--source", *opts])
    assert r.exit_code == 0 and "parent: v0" in r.output and "+10.0% vs parent" in r.output
    assert "BLOCK_N = 128" in r.output and "NVIDIA H100" in r.output
    r = run(app, ["lineage", "diff", "0", "1", *opts])
    assert r.exit_code == 0 and "+BLOCK_N = 128" in r.output
    r = run(app, ["lineage", "attempts", "--limit", "5", *opts])
    assert r.exit_code == 0 and "committed as v1" in r.output


@pytest.mark.parametrize("args, words", [
    (["show", "99"], "no version v99"),
    (["show", "latest"], "not a version"),
    (["diff", "0", "7"], "no version v7"),
    (["add", "missing.py"], "no such kernel file"),
])
def test_user_mistakes_are_one_line_exit_2(env, args, words):
    _, opts, _ = env
    r = run(app, ["lineage", *args, *opts])
    assert r.exit_code == 2 and words in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_bad_params_is_one_line_exit_2(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("lineage:\n  noise_margin: 0.1\n")
    r = run(app, ["lineage", "list", "--params", str(bad)])
    assert r.exit_code == 2 and "unknown key lineage.noise_margin" in r.output


def test_add_commits_a_faster_human_kernel(env, monkeypatch):
    tmp, opts, lin = env
    monkeypatch.setattr(avo.harness, "evaluate", lambda *a, **k: make_result((130.0, 100.0)))
    kernel = tmp / "mine.py"
    kernel.write_text("# hand-tuned\nBLOCK_N = 128\nNUM_STAGES = 3\n")
    r = run(app, ["lineage", "add", str(kernel), "--note", "three stages hide the K/V loads",
                  "--technique", "num_stages=3", *opts])
    assert r.exit_code == 0, r.output
    assert "committed as v2" in r.output
    v2 = lin.get(2)
    assert v2.operator == "human" and v2.parent == 1 and v2.note == "three stages hide the K/V loads"
    assert v2.technique.name == "num_stages=3"


def test_add_refuses_a_wrong_kernel(env, monkeypatch):
    tmp, opts, lin = env
    monkeypatch.setattr(avo.harness, "evaluate",
                        lambda *a, **k: make_result((999.0, 999.0), status="incorrect", message="rel err 0.3"))
    kernel = tmp / "wrong.py"
    kernel.write_text("# fast but wrong\n")
    r = run(app, ["lineage", "add", str(kernel), "--parent", "v0", *opts])
    assert r.exit_code == 1 and "not committed: status incorrect: rel err 0.3" in r.output
    assert len(lin.versions()) == 2 and lin.attempts()[-1]["operator"] == "human"


@pytest.mark.slow
def test_init_from_the_real_seed_on_cpu(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(f"harness:\n  device: cpu\nlineage:\n  root: {tmp_path / 'lineage'}\n"
                      f"  seed: {REPO / 'kernel_src/attention/seeds/fa2.py'}\n  git_commit: 'off'\n")
    r = run(app, ["lineage", "init", "--params", str(params)])
    assert r.exit_code == 0, r.output
    v0 = Lineage(tmp_path / "lineage").get(0)
    assert v0.operator == "seed" and v0.result.ok and v0.result.interpreter and v0.geomean > 0
