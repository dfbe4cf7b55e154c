"""Every attempt's source is kept by its hash beside the lineage; a version seeded
from another lineage's version records where it came from."""
from pathlib import Path

from typer.testing import CliRunner

import avo.harness
from avo.cli import app
from avo.lineage import Lineage, origin_of
from tests.fake_results import make_candidate, make_result

REPO = Path(__file__).resolve().parents[1]


def test_every_attempted_source_is_kept_by_hash(tmp_path):
    seed = tmp_path / "seed.py"
    seed.write_text("# seed kernel\nBLOCK_N = 64\n")
    lin = Lineage(tmp_path / "lineage")
    lin.init_from_seed(seed, make_result((100.0, 80.0)))
    slow, fast = make_candidate("# slow\n"), make_candidate("# fast\n")
    assert not lin.commit(slow, make_result((10.0, 10.0)), 0.0).committed
    assert lin.commit(fast, make_result((200.0, 200.0)), 0.0).committed
    for attempt in lin.attempts():  # committed or not, the seed included: each can be reproduced
        assert lin.source_of(attempt["source_sha256"]) is not None
    assert lin.source_of(slow.sha256) == "# slow\n" and lin.source_of("0" * 64) is None


def test_a_lineage_seeded_from_another_lineages_version_records_its_origin(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    seed = tmp_path / "seed.py"
    seed.write_text("# seed kernel\n")
    mha = Lineage(tmp_path / "mha")
    mha.init_from_seed(seed, make_result())
    assert mha.get(0).origin is None and origin_of(seed) is None
    gqa = Lineage(tmp_path / "gqa")
    v0 = gqa.init_from_seed(mha.root / "v0000" / "kernel.py", make_result())
    assert v0.origin == {"lineage": "mha", "version": 0}
    assert Lineage(gqa.root).get(0).origin == {"lineage": "mha", "version": 0}  # stored in version.json


def test_lineage_add_empties_the_problems_steps_inbox(tmp_path, monkeypatch):
    problem = tmp_path / "problem" / "problem.py"  # a problem folder with its steps/ inbox
    problem.parent.mkdir()
    problem.write_text((REPO / "kernel_src/attention/problem.py").read_text())
    params = tmp_path / "params.yaml"
    params.write_text(f"harness:\n  problem: {problem}\nlineage:\n  root: {tmp_path / 'lineage'}\n"
                      "  git_commit: 'off'\ntracking:\n  enabled: false\n")
    seed = tmp_path / "seed.py"
    seed.write_text("# seed\n")
    lin = Lineage(tmp_path / "lineage")
    lin.init_from_seed(seed, make_result((100.0, 80.0)))
    monkeypatch.setattr(avo.harness, "evaluate", lambda *a, **k: make_result((90.0, 70.0)))
    (problem.parent / "steps").mkdir()
    step, elsewhere = problem.parent / "steps" / "s1.py", tmp_path / "mine.py"
    step.write_text("# a slower step\n")
    elsewhere.write_text("# also slower\n")
    r = CliRunner().invoke(app, ["lineage", "add", str(step), "--params", str(params)])
    assert r.exit_code == 1 and "left the inbox" in r.output, r.output  # not committed, but kept
    assert not step.exists() and lin.source_of(lin.attempts()[-1]["source_sha256"]) == "# a slower step\n"
    r = CliRunner().invoke(app, ["lineage", "add", str(elsewhere), "--params", str(params)])
    assert r.exit_code == 1 and elsewhere.exists()  # only the inbox is emptied
