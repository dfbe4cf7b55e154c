"""The real variation graph, driven by scripted models that emit real tool calls."""
from __future__ import annotations

import pytest
from langchain_core.messages import ToolMessage

from agents.models import Budget, BudgetExceeded, ModelSpec, ModelUnavailable
from agents.operator import AgentOperator, HarnessCalls
from agents.variation import Limits
from avo.operators.base import VaryContext
from tests.agents.conftest import REPO, FakeHarness, RateLimitError, ai, call, script

BLOCK_LINE = "BLOCK_N = 64  # key rows per inner-loop step"


def make_operator(model, lineage, harness, **kw):
    calls = HarnessCalls(evaluate=harness, check=harness, bench=harness,
                         compiler_stats=lambda src: "compiler stats unavailable: test")
    kw.setdefault("limits", Limits(max_steps=8, max_repairs=2, max_iterations=2))
    return AgentOperator(model, lineage=lineage, knowledge=REPO / "knowledge_base", harness=calls,
                         sleep=kw.pop("sleep", lambda s: None), **kw)


def context(lineage, harness, directions=()):
    v0 = lineage.get(0)
    return VaryContext(parent_version=0, parent_source=v0.source, parent_result=v0.result, generation=1,
                       slot=0, directions=list(directions), evaluate=harness)


def tool_answers(model) -> list[str]:
    """Every tool answer the model was shown, in order."""
    last = model.seen[-1]
    return [m.content for m in last if isinstance(m, ToolMessage)]


def test_session_reads_lineage_edits_fails_verify_repairs_and_submits(lineage):
    harness = FakeHarness()
    model = script(
        ai(call("list_lineage"), call("read_attempts"), call("search_knowledge", query="block size BLOCK_N")),
        ai(call("edit_kernel", search=BLOCK_LINE, replace="BLOCK_N = 128  # key rows per inner-loop step\nBUG = 1")),
        ai(text="block_n=128: half the loop trips; expect +5% on long sequences"),
        # verify says incorrect -> repair
        ai(call("show_kernel", start=1, end=25), call("edit_kernel", search="BUG = 1\n", replace="")),
        ai(text="removed a stray marker line that broke the kernel"),
        # verify ok -> critique
        ai(call("record", decision="submit", technique="block_n=128", expected_effect="+5% on long sequences",
                why="fewer loop iterations", lesson="both configs faster")),
    )
    op = make_operator(model, lineage, harness)
    cand = op.vary(context(lineage, harness, directions=["try larger key tiles"]))

    assert "BLOCK_N = 128" in cand.source and "BUG" not in cand.source
    assert cand.operator == "agent" and cand.parent == 0 and cand.generation == 1
    assert cand.technique.name == "block_n=128"
    assert cand.technique.expected == "+5% on long sequences"
    assert cand.technique.measured["mha b8 s4096 d128 full bf16"] == pytest.approx(132 / 116)
    # verify is the harness: it ran on both the broken and the repaired kernel
    assert len(harness.calls) == 2 and "BUG" in harness.calls[0] and "BUG" not in harness.calls[1]
    assert cand.meta["session_attempts"] == ["incorrect", "ok"]
    assert cand.meta["verify_status"] == "ok"
    # the tools really read the lineage and the knowledge base
    first_answers = [m.content for m in model.seen[1] if isinstance(m, ToolMessage)]
    assert first_answers[0].startswith("Lineage: 1 versions")
    assert "Attempts" in first_answers[1] or "attempts" in first_answers[1]
    assert "[" in first_answers[2] and ".md" in first_answers[2]
    # the directions and the harness verdict reached the model
    assert "try larger key tiles" in model.seen[0][1].content
    assert any("incorrect" in str(m.content) for m in model.seen[3])
    # token and cost accounting per candidate: 6 calls x (100 in, 20 out)
    assert cand.meta["input_tokens"] == 600 and cand.meta["output_tokens"] == 120
    assert cand.meta["tokens"] == 720 and cand.meta["cost_usd"] == 0.0
    assert cand.meta["records"][0]["measured"] and cand.meta["records"][0]["decision"] == "submit"


def test_cheating_kernels_are_stopped_by_verify(lineage):
    harness = FakeHarness()
    sdpa = ("    out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)\n"
            "    return out\n")
    model = script(
        ai(call("edit_kernel", search="    out = torch.empty_like(q)\n", replace=sdpa)),
        ai(text="use the library: fastest possible"),
        # rejected -> repair: the model now tries to cache outputs
        ai(call("edit_kernel", search=sdpa, replace="    _CACHE = {}\n    out = torch.empty_like(q)\n")),
        ai(text="cache results between calls"),
        # incorrect -> repair again (last allowed): give up with no change
        ai(text="no honest fix found"),
        ai(call("record", decision="submit", technique="library-attention", lesson="rejected by the harness")),
    )
    op = make_operator(model, lineage, harness, limits=Limits(max_steps=8, max_repairs=2, max_iterations=1))
    cand = op.vary(context(lineage, harness))
    statuses = cand.meta["session_attempts"]
    assert statuses == ["rejected", "incorrect"]  # the unchanged third try is not re-run
    assert cand.meta["verify_status"] == "incorrect"
    assert "library attention" in str(model.seen[2]) and "refilled" in str(model.seen[4])


def test_real_harness_static_check_rejects_library_attention(seed_source):
    """verify through the real harness: SDPA is rejected before anything runs."""
    from avo.harness import evaluate

    cheat = seed_source.replace("    out = torch.empty_like(q)\n",
                                "    return torch.nn.functional.scaled_dot_product_attention(q, k, v)\n")
    result = evaluate(cheat, device="cpu")
    assert result.status == "rejected" and "scaled_dot_product_attention" in result.message + result.log_tail


def test_rate_limit_is_retried_with_backoff(lineage):
    harness = FakeHarness()
    waits = []
    model = script(
        ai(call("edit_kernel", search=BLOCK_LINE, replace="BLOCK_N = 32  # key rows per inner-loop step")),
        ai(text="block_n=32"),
        ai(call("record", decision="submit", technique="block_n=32")),
        fail_first=2, error=RateLimitError)
    op = make_operator(model, lineage, harness, sleep=waits.append)
    op.spec = ModelSpec(model="openai:gpt-4.1", max_retries=3, backoff_s=1.0)
    cand = op.vary(context(lineage, harness))
    assert cand.meta["model_retries"] == 2 and len(waits) == 2 and waits[1] > waits[0] * 0.9
    assert "BLOCK_N = 32" in cand.source
    # priced by the spec: 3 calls x (100 in at $2/M + 20 out at $8/M)
    assert cand.meta["cost_usd"] == pytest.approx(3 * (100 * 2 + 20 * 8) / 1e6)


def test_rate_limit_that_never_ends_is_one_line(lineage):
    harness = FakeHarness()
    model = script(ai(text="never reached"), fail_first=10, error=RateLimitError)
    op = make_operator(model, lineage, harness)
    op.spec = ModelSpec(model="openai:gpt-4.1", max_retries=2, backoff_s=0.0)
    with pytest.raises(ModelUnavailable) as e:
        op.vary(context(lineage, harness))
    assert "\n" not in str(e.value) and "3 attempts" in str(e.value)


def test_malformed_tool_calls_get_errors_the_model_can_act_on(lineage):
    harness = FakeHarness()
    model = script(
        ai(call("rm_rf", path="/"),
           call("edit_kernel", search=BLOCK_LINE),  # missing `replace`
           call("edit_kernel", search="BLOCK_N = 64 # key rows", replace="BLOCK_N = 16"),  # not found
           call("edit_kernel", search="tl.load", replace="tl.load"),  # ambiguous
           call("show_version", number=7)),  # no such version
        ai(call("edit_kernel", search=BLOCK_LINE, replace="BLOCK_N = 32  # key rows per inner-loop step")),
        ai(text="block_n=32"),
        ai(call("record", decision="submit", technique="block_n=32")),
    )
    op = make_operator(model, lineage, harness)
    cand = op.vary(context(lineage, harness))
    errors = [m.content for m in model.seen[1] if isinstance(m, ToolMessage)]
    assert errors[0].startswith("error: unknown tool 'rm_rf'; available tools: list_lineage")
    assert errors[1].startswith("error: bad arguments for edit_kernel: replace: Field required")
    assert errors[2].startswith("error: search text not found") and "Closest line: 'BLOCK_N = 64" in errors[2]
    assert errors[3].startswith("error: search text occurs") and "replace_all" in errors[3]
    assert errors[4].startswith("error: no version v7")
    assert "BLOCK_N = 32" in cand.source and cand.meta["verify_status"] == "ok"


def test_critique_iterates_then_submits_the_best_verified_kernel(lineage):
    harness = FakeHarness()
    model = script(
        ai(call("edit_kernel", search=BLOCK_LINE, replace="BLOCK_N = 32  # key rows per inner-loop step")),
        ai(text="block_n=32"),
        ai(call("record", decision="iterate", technique="block_n=32", lesson="slower: try larger tiles")),
        ai(call("edit_kernel", search="BLOCK_N = 32", replace="BLOCK_N = 128")),
        ai(text="block_n=128"),
        ai(call("record", decision="submit", technique="block_n=128", expected_effect="+10%")),
    )
    op = make_operator(model, lineage, harness)
    cand = op.vary(context(lineage, harness))
    assert [r["decision"] for r in cand.meta["records"]] == ["iterate", "submit"]
    assert cand.meta["records"][0]["measured"]["mha b8 s4096 d128 full bf16"] < 1.0
    assert "BLOCK_N = 128" in cand.source and cand.technique.name == "block_n=128"


def test_budget_ends_the_session_and_stops_the_run(lineage):
    harness = FakeHarness()
    model = script(
        ai(call("edit_kernel", search=BLOCK_LINE, replace="BLOCK_N = 128  # key rows per inner-loop step"),
           tokens=(500, 100)),
        ai(text="block_n=128", tokens=(500, 100)),  # never sent: the budget is spent
    )
    op = make_operator(model, lineage, harness, budget=Budget(max_tokens=500))
    cand = op.vary(context(lineage, harness))
    assert cand.meta["stop"] == "budget" and "BLOCK_N = 128" in cand.source
    assert cand.meta["verify_status"] == "ok"  # the edit made before the limit is still verified
    with pytest.raises(BudgetExceeded, match="token budget spent: 600 of 500"):
        op.vary(context(lineage, harness))


def test_a_resumed_run_counts_what_it_spent_before_against_the_agent_budget(lineage):
    from avo.budget import Spent

    harness = FakeHarness()
    op = make_operator(script(ai(text="never sent")), lineage, harness, budget=Budget(max_tokens=500))
    op.resume(Spent(tokens=450, dollars=0.0))
    op.budget.charge(60, 0.0)
    with pytest.raises(BudgetExceeded, match="token budget spent: 510 of 500"):
        op.vary(context(lineage, harness))
