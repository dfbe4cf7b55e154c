"""The stagnation rule, the supervisor graph and directions.json."""
from __future__ import annotations

import json

from agents.supervisor import detect_stagnation, maybe_supervise, supervise
from avo.directions import read_directions
from tests.agents.conftest import ai, call, script
from tests.fake_results import make_candidate, make_result


def attempt(gen, name, committed=False, operator="agent"):
    return {"generation": gen, "technique": {"name": name}, "committed": committed, "operator": operator,
            "status": "ok" if committed else "incorrect"}


def test_stagnation_rule():
    seed = [attempt(0, "seed", True, "seed")]
    assert not detect_stagnation(seed + [attempt(1, "a", True), attempt(2, "b")], generation=2).triggered
    s = detect_stagnation(seed + [attempt(1, "a", True), attempt(2, "b"), attempt(3, "c"), attempt(4, "d")],
                          generation=4, patience=3)
    assert s.triggered and s.reason == "3 generations without a commit (since generation 1)"
    rep = detect_stagnation(seed + [attempt(1, "block_n=128"), attempt(1, "BLOCK_N=128"), attempt(2, "block-n 128")],
                            generation=2, patience=5, repeats=3)
    assert rep.triggered and "tried 3 times" in rep.reason
    # not again until `patience` generations after the last review
    assert not detect_stagnation(seed + [attempt(g, "x") for g in range(1, 6)], generation=5,
                                 patience=3, last_review=4).triggered


def test_supervisor_with_a_model_writes_directions(tmp_path):
    model = script(ai(call("directions", directions=["split the causal loop", "TMA descriptors for K/V",
                                                     "pack GQA heads"],
                           avoid=["block_n=128 (spills)"], rationale="tile sizes are exhausted")))
    attempts = [attempt(0, "seed", True, "seed")] + [attempt(g, "block_n=128") for g in (1, 2, 3)]
    d = supervise(tmp_path, attempts, "Lineage: 1 versions", generation=3, trigger="3 generations", model=model)
    assert d.directions[0] == "split the causal loop" and d.avoid == ["block_n=128 (spills)"]
    on_disk = json.loads((tmp_path / "directions.json").read_text())
    assert on_disk["trigger"] == "3 generations" and on_disk["generation"] == 3
    assert "block_n=128" in model.seen[0][1].content  # the model reviewed the trajectory


def test_supervisor_without_a_model_uses_rules(tmp_path):
    attempts = [attempt(1, "block_n=128"), attempt(2, "block_n=128"), attempt(3, "causal-loop-split")]
    d = supervise(tmp_path, attempts, "", generation=3, trigger="t", model=None)
    assert d.author == "rules" and d.avoid == ["block-n-128 (tried 2 times without a commit)"]
    assert not any("causal key loop" in x for x in d.directions)  # already tried
    assert any("TMA" in x for x in d.directions)


def test_maybe_supervise_on_a_real_lineage_and_the_next_proposal_reads_it(lineage):
    for g in (1, 2, 3):
        lineage.commit(make_candidate(source=f"# slower {g}\n", generation=g, name="num_warps=4"),
                       make_result(tflops=(50.0, 40.0)), margin=0.01)
    model = script(ai(call("directions", directions=["try warp specialization on the non-causal path"])))
    d = maybe_supervise(lineage, generation=3, patience=3, model=model)
    assert d is not None and read_directions(lineage.root).directions == d.directions
    assert maybe_supervise(lineage, generation=4, patience=3, model=model) is None  # just reviewed
