"""One owner of lever knowledge: the problem's lever table (kernel_src/<problem>/levers.py),
read by the heuristic (expected effects, priors, the words that steer it) and by the
supervisor's rules (directions for levers never tried)."""
from pathlib import Path

from agents.supervisor import rule_directions
from avo.operators.base import VaryContext
from avo.operators.heuristic import HeuristicOperator, knob_levers
from avo.problem import levers, load_problem

REPO = Path(__file__).resolve().parents[1]
RMS = REPO / "kernel_src/rmsnorm/problem.py"


def _vary(op, source, slot=0, directions=()):
    return op.vary(VaryContext(parent_version=0, parent_source=source, parent_result=None, generation=1, slot=slot,
                               directions=list(directions)))


def test_both_problems_have_a_table_whose_knob_levers_are_their_knobs():
    for path in (REPO / "kernel_src/attention/problem.py", RMS):
        problem = load_problem(path)
        table = levers(problem)
        assert table and all(lv.get("direction") or lv.get("up") for lv in table)
        knobs = set(knob_levers(problem))
        assert knobs & set(problem.KNOBS)  # the tuned knobs have known effects


def test_a_table_edit_reaches_the_heuristic_and_the_supervisor(tmp_path):
    folder = tmp_path / "toy"
    folder.mkdir()
    (folder / "problem.py").write_text((RMS.read_text()))
    (folder / "levers.py").write_text(
        'LEVERS = [{"name": "BLOCK_N", "keywords": ("zebra",), "up": "UP-TEXT", "down": "DOWN-TEXT", '
        '"why": "WHY-TEXT", "prior_up": 0.5, "prior_down": -0.5, "direction": "try zebra tiles"}]\n')
    seed = (REPO / "kernel_src/rmsnorm/seeds/rowwise.py").read_text()
    op = HeuristicOperator("/nonexistent", device="cpu", attempts_reader=lambda: [], problem_path=folder / "problem.py")
    cand = _vary(op, seed)
    assert cand.technique.name.startswith("BLOCK_N=2048") and "UP-TEXT" in cand.technique.expected
    assert "WHY-TEXT" in cand.technique.why
    assert rule_directions([], problem=folder / "problem.py")["directions"] == ["try zebra tiles"]
    tried = [{"technique": {"name": "zebra tiles"}, "operator": "heuristic"}]
    assert rule_directions(tried, problem=folder / "problem.py")["directions"] == ["try zebra tiles"]  # all tried: again


def test_rmsnorm_proposals_speak_of_rmsnorm_not_attention():
    # with the repository's knowledge base at hand: its notes are about attention, so not cited
    op = HeuristicOperator("/nonexistent", knowledge_root=REPO / "knowledge_base", device="cpu",
                           attempts_reader=lambda: [], problem_path=RMS)
    seed = (RMS.parent / "seeds/rowwise.py").read_text()
    texts = " ".join(_vary(op, seed, slot).technique.why for slot in range(6))
    assert "row" in texts and "softmax" not in texts and "K/V" not in texts and "Knowledge base" not in texts
    assert any("ONE_PASS=True" in _vary(op, seed, s).technique.name for s in range(8))
    # the supervisor's rules give rmsnorm's directions, attention's by default
    assert any("row" in d for d in rule_directions([], problem=RMS)["directions"])
    assert any("causal" in d for d in rule_directions([])["directions"])
