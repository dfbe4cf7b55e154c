"""The bring-your-own-kernel template (kernel_src/_template/) is a working problem: its
seed passes the real harness, a lazy kernel does not, and its knobs are tunable."""
from avo.harness import evaluate
from avo.operators.base import VaryContext
from avo.operators.heuristic import HeuristicOperator, read_knobs
from avo.problem import REPO_ROOT, load_problem

FOLDER = REPO_ROOT / "kernel_src" / "_template"
SEED = (FOLDER / "seeds" / "kernel.py").read_text()


def test_the_template_seed_passes_and_a_lazy_kernel_does_not():
    r = evaluate(SEED, device="cpu", quick=True, problem_path=FOLDER / "problem.py")
    assert r.status == "ok", r.message
    lazy = SEED.replace("_l2norm[(x.shape[0],)]", "_l2norm[(max(1, x.shape[0] - 1),)]")
    assert lazy != SEED
    r = evaluate(lazy, device="cpu", quick=True, problem_path=FOLDER / "problem.py")
    assert r.status == "incorrect", r.message


def test_the_heuristic_tunes_the_templates_knobs():
    problem = load_problem(FOLDER / "problem.py")
    op = HeuristicOperator("/nonexistent", device="cpu", attempts_reader=lambda: [], problem_path=FOLDER / "problem.py")
    cand = op.vary(VaryContext(parent_version=0, parent_source=SEED, parent_result=None, generation=1, slot=0))
    moved = {k for k, v in read_knobs(cand.source).items() if read_knobs(SEED)[k] != v}
    assert moved and moved <= set(problem.KNOBS)
