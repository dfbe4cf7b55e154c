"""A problem is a plugin: the search reads its knobs, legal ranges, resource model and seed."""
from pathlib import Path

from avo.config import config_from_dict
from avo.errors import OperatorUnavailable, ProposalFailed
from avo.operators.base import VaryContext
from avo.operators.heuristic import HeuristicOperator, read_knobs
from avo.problem import load_problem, problem_path, seed_path

REPO = Path(__file__).resolve().parents[1]
V3 = (REPO / "kernel_src/attention/lineage/cuda/v0003/kernel.py").read_text()  # has the _D64 knobs


def _names(op, source, n=40):
    return [op.vary(VaryContext(parent_version=3, parent_source=source, parent_result=None, generation=1,
                                slot=i)).technique.name for i in range(n)]


def test_attention_declares_its_knobs_and_what_fits():
    p = load_problem()
    assert p.KNOBS["BLOCK_M_D64"] == p.KNOBS["BLOCK_M"] and p.knob_base("NUM_STAGES_D64") == "NUM_STAGES"
    assert p.fits({"BLOCK_M": 128, "BLOCK_N": 64, "NUM_STAGES": 2}, "cuda")
    assert not p.fits({"BLOCK_M_D64": 256, "BLOCK_N_D64": 256, "NUM_STAGES_D64": 5}, "cuda")
    assert p.fits({"BLOCK_M": 256, "BLOCK_N": 256, "NUM_STAGES": 5}, "cpu")  # no shared memory limit there


def test_the_head_dim_64_knobs_are_tuned_too():
    op = HeuristicOperator("/nonexistent", device="cuda", attempts_reader=lambda: [])
    names = _names(op, V3)
    assert any("_D64" in n for n in names)
    for name in names:
        knobs = read_knobs(op.vary(VaryContext(parent_version=3, parent_source=V3, parent_result=None,
                                               generation=1, slot=names.index(name))).source)
        assert load_problem().fits(knobs, "cuda")


def test_the_heuristic_reads_legal_ranges_from_the_problem(tmp_path):
    narrow = tmp_path / "problem.py"  # the same problem, but NUM_WARPS fixed and stages only 2..3
    narrow.write_text((REPO / "kernel_src/attention/problem.py").read_text()
                      + '\nKNOBS = {"BLOCK_N": (64, 128), "NUM_STAGES": (2, 3)}\n')
    op = HeuristicOperator("/nonexistent", device="cuda", attempts_reader=lambda: [], problem_path=narrow)
    seed = (REPO / "kernel_src/attention/seeds/fa2.py").read_text()
    names = _names(op, seed, 12)
    moved = {part.split("=")[0] for n in names for part in n.split(",") if "=" in part}
    assert moved and moved <= {"BLOCK_N", "NUM_STAGES"}


def test_params_choose_the_problem_and_the_seed_follows_it(tmp_path):
    cfg = config_from_dict({"harness": {"problem": "kernel_src/attention/problem.py"}, "lineage": {"seed": None}})
    assert problem_path(cfg, tmp_path) == (REPO / "kernel_src/attention/problem.py").resolve()
    assert seed_path(cfg, tmp_path) == (REPO / "kernel_src/attention/seeds/fa2.py").resolve()


def test_error_types_live_in_the_core():
    from agents.external import ExternalAgentFailed
    from agents.models import ModelCallFailed, ModelUnavailable

    assert issubclass(ModelUnavailable, OperatorUnavailable)  # the run stops: configuration
    assert issubclass(ModelCallFailed, ProposalFailed) and issubclass(ExternalAgentFailed, ProposalFailed)
