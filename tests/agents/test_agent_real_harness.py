"""The agent against the real harness on the CPU (Triton interpreter): slow."""
from __future__ import annotations

import pytest

from agents.operator import AgentOperator, HarnessCalls
from agents.variation import Limits
from avo.compile_stats import compiler_stats_text
from avo.harness import evaluate
from avo.operators.base import VaryContext
from tests.agents.conftest import REPO, ai, call, script


@pytest.mark.slow
def test_session_verified_by_the_real_harness_on_cpu(lineage):
    """A broken edit fails the real correctness checks, the repair passes them."""
    run = lambda src: evaluate(src, device="cpu", quick=True, timeout_s=240)  # noqa: E731
    harness = HarnessCalls(evaluate=run, check=run, bench=lambda src, configs: run(src),
                           compiler_stats=lambda src: "n/a")
    wrong = "    acc = acc / l_i[:, None]\n"
    model = script(
        ai(call("edit_kernel", search=wrong, replace="    acc = acc / (l_i[:, None] + 1.0)\n")),
        ai(text="normalise differently"),
        ai(call("edit_kernel", search="    acc = acc / (l_i[:, None] + 1.0)\n", replace=wrong),
           call("edit_kernel", search="NUM_STAGES = 2", replace="NUM_STAGES = 3")),
        ai(text="reverted the normalisation; num_stages=3"),
        ai(call("record", decision="submit", technique="num_stages=3")),
    )
    op = AgentOperator(model, lineage=lineage, knowledge=REPO / "knowledge_base", harness=harness,
                       limits=Limits(max_steps=6, max_repairs=1, max_iterations=1), sleep=lambda s: None)
    v0 = lineage.get(0)
    cand = op.vary(VaryContext(parent_version=0, parent_source=v0.source, parent_result=None, generation=1, slot=0))
    assert cand.meta["session_attempts"] == ["incorrect", "ok"]
    assert "NUM_STAGES = 3" in cand.source


@pytest.mark.slow
def test_compiler_stats_for_hopper_without_a_gpu(seed_source):
    text = compiler_stats_text(seed_source)
    assert "registers/thread" in text and "shared memory 65536 B" in text, text
