"""Every attempt's source is kept by its hash beside the lineage; a version seeded
from another lineage's version records where it came from."""
import json
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


def test_a_knob_move_is_kept_as_the_lines_it_changed_in_its_parent(tmp_path):
    """A source that differs from its parent version in a line or two is kept as those lines
    (a search of thousands of knob moves would otherwise keep thousands of whole kernels), and
    rebuilt exactly; one that shares little with its parent is kept whole."""
    body = "".join(f"def f{i}(x):\n    return x + {i}\n\n" for i in range(200))
    seed = tmp_path / "seed.py"
    seed.write_text(f"BLOCK_N = 64\nNUM_STAGES = 2\n{body}")
    lin = Lineage(tmp_path / "lineage")
    lin.init_from_seed(seed, make_result((100.0, 80.0)))
    moved = make_candidate(f"BLOCK_N = 128\nNUM_STAGES = 3\n{body}", parent=0)
    fresh = make_candidate("# another kernel\nBLOCK_N = 32\n" * 3, parent=0)
    for c in (moved, fresh):
        lin.commit(c, make_result((90.0, 70.0)), 0.01)  # slower: attempts, not versions
    delta = lin.root / "sources" / f"{moved.sha256}.delta.json"
    assert delta.is_file() and delta.stat().st_size < len(moved.source) // 4
    assert not (lin.root / "sources" / f"{moved.sha256}.py").exists()
    assert lin.source_of(moved.sha256) == moved.source
    assert (lin.root / "sources" / f"{fresh.sha256}.py").read_text() == fresh.source
    # a delta that no longer rebuilds its hash (its parent replaced) gives no source, never a wrong one
    d = json.loads(delta.read_text())
    d["changes"][0][2] = ["BLOCK_N = 256\n"]
    delta.write_text(json.dumps(d))
    assert lin.source_of(moved.sha256) is None
