"""Issue 13's noise-aware commits through the real commit step (avo.promotion.promote
-> avo.lineage -> avo.commit_rule) on temporary lineages: the CPU lineage commits on
modelled H100 TFLOPS, a GPU lineage on its geomean plus the confirmation re-measure.
Fake results, real sources (the seed kernel's knobs): about a second."""
from pathlib import Path

import pytest

from avo.commit_rule import Rule
from avo.config import LineageConfig
from avo.cost_basis import model_for
from avo.candidate import Technique
from avo.lineage import Lineage, Version, seed_candidate
from avo.operators.heuristic import set_knobs
from avo.problem import DEFAULT_PROBLEM
from avo.promotion import promote
from tests.fake_results import make_candidate, make_result

SEED_FILE = Path(DEFAULT_PROBLEM).parent / "seeds" / "fa2.py"
SEED = SEED_FILE.read_text()
CFG = LineageConfig(git_commit="off")


def interp(tflops):
    return make_result((tflops, tflops), device="cpu", gpu=None, suite="cpu", interpreter=True)


@pytest.fixture
def cpu_lineage(tmp_path):
    """v0 = the seed, recorded the way lineages were before the model (no `model` in its record)."""
    lin = Lineage(tmp_path / "lineage")
    lin.init_from_seed(SEED_FILE, interp(1e-4))
    assert lin.get(0).result.model == {}
    return lin


def test_the_2x_interpreter_outlier_does_not_commit_on_cpu(cpu_lineage):
    # NUM_STAGES=1 does nothing in the interpreter; a noisy re-run timed it 2.2x faster
    stages1 = make_candidate(set_knobs(SEED, {"NUM_STAGES": 1}), parent=0, name="NUM_STAGES=1")
    p = promote(cpu_lineage, stages1, interp(2.2e-4), CFG)
    assert not p.decision.committed and p.decision.reason.startswith("basis model: ")
    assert "(v0)" in p.decision.reason and "informational" in p.decision.reason
    assert p.margin == CFG.model_margin_cpu
    assert cpu_lineage.attempts()[-1]["reason"] == p.decision.reason
    # a comment-only edit with faster timings: the same modelled figure, no commit either
    comment = make_candidate(SEED + "# tidier\n", parent=0, name="comment")
    assert not promote(cpu_lineage, comment, interp(3e-4), CFG).decision.committed


def test_a_modelled_gain_commits_on_cpu_even_with_slower_timings(cpu_lineage):
    wider = make_candidate(set_knobs(SEED, {"BLOCK_N": 128}), parent=0, name="BLOCK_N=128")
    result = interp(0.5e-4)  # slower on the interpreter: informational
    p = promote(cpu_lineage, wider, result, CFG)
    assert p.decision.committed and p.decision.version == 1, p.decision.reason
    v1 = cpu_lineage.get(1)
    assert v1.result.model == model_for(wider.source)  # the figure it committed on, in its record
    assert v1.result.model["modelled_tflops"] > model_for(SEED)["modelled_tflops"] * 1.01
    # the next candidate must beat v1's modelled figure, not v0's
    back = make_candidate(SEED + "# again\n", parent=1, name="back")
    d = promote(cpu_lineage, back, interp(9e-4), CFG).decision
    assert not d.committed and "(v1)" in d.reason


def test_the_cpu_best_is_the_best_modelled_version_not_the_fastest_interpreter_one(cpu_lineage):
    # a lineage from before the model: v1 committed on a noisy 3x interpreter timing, but models worse
    spills = set_knobs(SEED, {"BLOCK_N": 128, "NUM_WARPS": 4})
    cpu_lineage._write_version(Version(number=1, source=spills, parent=0, operator="heuristic",
                                       technique=Technique(name="spills"), result=interp(3e-4),
                                       created="2026-01-01T00:00:00+00:00"))
    assert cpu_lineage.best(comparable_to=interp(1e-4)).number == 1  # by interpreter geomean
    best = cpu_lineage.best_for(interp(1e-4), Rule(model_of=model_for))
    assert best.version == 0 and best.model == model_for(SEED)  # by the model, from v0's source
    wider = make_candidate(set_knobs(SEED, {"BLOCK_N": 128}), parent=1, name="BLOCK_N=128")
    d = promote(cpu_lineage, wider, interp(1e-4), CFG).decision
    assert d.committed and "(v0)" in d.reason, d.reason


def test_gpu_promotion_needs_a_confirmation_against_the_best(tmp_path):
    lin = Lineage(tmp_path / "lineage")
    lin.init_from_seed(SEED_FILE, make_result((100.0, 100.0)))
    faster = make_candidate("# v1\n", parent=0)
    p = promote(lin, faster, make_result((120.0, 120.0)), CFG)
    assert not p.decision.committed and "no confirmation re-measure against v0" in p.decision.reason
    result = make_result((120.0, 120.0))
    result.confirm = {"best_version": 0, "best_sha256": lin.get(0).sha256, "rounds": 3, "configs": ["c"],
                      "ratio": 1.08, "spread": 0.03, "candidate_ms": [], "best_ms": []}
    p = promote(lin, faster, result, CFG)
    assert p.decision.committed and p.decision.reason.startswith("basis confirm: 1.08x v0")
    assert p.margin == 0.03  # the measured spread, above the 0.01 floor
    assert lin.get(1).result.confirm["ratio"] == 1.08
    # the switch: lineage.require_confirm_cuda false, or a caller that vouches for the result
    unconfirmed = make_result((150.0, 150.0))
    assert promote(lin, make_candidate("# v2\n", parent=1), unconfirmed,
                   LineageConfig(git_commit="off", require_confirm_cuda=False)).decision.committed
    assert promote(lin, make_candidate("# v3\n", parent=2), make_result((200.0, 200.0)), CFG,
                   require_confirm=False).decision.committed


def test_the_seed_path_needs_no_confirmation_and_a_stopped_result_never_commits(tmp_path):
    lin = Lineage(tmp_path / "lineage")
    p = promote(lin, seed_candidate(SEED_FILE), make_result((100.0, 100.0)), CFG)  # `avo lineage init`
    assert p.decision.committed and p.decision.version == 0
    stopped = make_result((900.0, 900.0))
    stopped.cascade = {"stage": "screen", "stopped": "screened out", "screen": [], "gate_tflops": 95.0}
    p = promote(lin, make_candidate("# fast?\n", parent=0), stopped, CFG, require_confirm=False)
    assert not p.decision.committed and p.decision.reason == "stopped at the screen stage: screened out"


def test_config_and_params_carry_the_new_lineage_keys():
    from avo.config import load_config

    cfg = load_config(Path(__file__).resolve().parents[1] / "params.yaml").lineage
    assert cfg.require_confirm_cuda is True and cfg.model_margin_cpu == 0.01
    assert LineageConfig().require_confirm_cuda is True


def test_a_hand_added_kernel_commits_on_its_geomean_but_a_confirmation_it_carries_still_counts(tmp_path):
    lin = Lineage(tmp_path / "lineage")
    lin.init_from_seed(SEED_FILE, make_result((100.0, 100.0)))
    human = make_candidate("# hand-tuned\n", parent=0, operator="human", name="mine")
    p = promote(lin, human, make_result((120.0, 120.0)), CFG)  # `avo lineage add`: no confirmation ran
    assert p.decision.committed and p.decision.reason.startswith("basis geomean")
    noisy = make_result((150.0, 150.0))
    noisy.confirm = {"best_version": 1, "best_sha256": "", "rounds": 3, "configs": ["c"], "ratio": 1.02,
                     "spread": 0.05, "candidate_ms": [], "best_ms": []}
    d = promote(lin, make_candidate("# again\n", parent=1, operator="human"), noisy, CFG).decision
    assert not d.committed and "margin from spread" in d.reason
    # the search's own candidates need the confirmation
    assert not promote(lin, make_candidate("# agent\n", parent=1, operator="agent"), make_result((200.0, 200.0)),
                       CFG).decision.committed


def test_the_evaluation_record_of_a_cpu_candidate_carries_its_modelled_figure():
    from avo.harness import evaluate

    result = evaluate(SEED_FILE, device="cpu", quick=True)  # the real judge, compile + check only
    assert result.ok, result.message
    assert result.model == model_for(SEED) and result.model["modelled_tflops"] > 0
