"""AgentOperator: the VariationOperator that runs the variation graph.

    op = operator_from_config(load_config(), lineage=Lineage(root))  # None: no model set
    candidate = op.vary(ctx)   # ctx: avo.operators.base.VaryContext

One `vary` is one session of agents/variation.py: the model studies the lineage,
edits the parent's kernel, the harness verifies, the model repairs and critiques,
and the session's best verified kernel comes back as a Candidate whose meta holds
the session's tokens and cost (input_tokens, output_tokens, cost_usd), the
critique records and how the session ended.

Errors that stop a run: ModelUnavailable (no key, unreachable server, key
rejected) and BudgetExceeded (raised by the next `vary` once the run's budget is
spent; a session that crosses the limit ends early and returns what it has).
A model that keeps failing with transient errors through every retry ends the
session: its best verified kernel comes back if it has one, else `vary` raises
ModelCallFailed and only that candidate fails.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from agents import prompts
from agents.models import (Budget, ModelCallFailed, ModelSpec, ModelUnavailable, Usage, build_chat_model,
                           preflight)
from agents.tools import LineageView, Workbench, describe_result, quote_untrusted
from agents.variation import Limits, VariationContext, graph as variation_graph
from avo.candidate import Candidate, Technique
from avo.knowledge import KnowledgeBase
from avo.operators.base import VaryContext
from avo.records import EvalResult

REPO_ROOT = Path(__file__).resolve().parents[1]
PREFLIGHT_TIMEOUT_S = 20.0  # the model check's client timeout (one tiny request)
DEFAULT_KNOWLEDGE = REPO_ROOT / "knowledge_base"


@dataclass(frozen=True)
class HarnessCalls:
    """How the agent reaches the harness: verify (whole suite), quick check, benchmark."""

    evaluate: Callable[[str], EvalResult]
    check: Callable[[str], EvalResult]
    bench: Callable[[str, list[str] | None], EvalResult]
    compiler_stats: Callable[[str], str]
    profiler: object | None = None  # avo.profiling.Profiler: profile_kernel / show_compiled; None: unavailable

    @classmethod
    def from_harness(cls, device: str = "auto", suite: str | None = None,
                     timeout_s: float | None = None, quick: bool = False) -> "HarnessCalls":
        from avo.compile_stats import compiler_stats_text
        from avo.harness import evaluate
        from avo.profiling import Profiler

        return cls(
            evaluate=lambda src: evaluate(src, device=device, suite=suite, timeout_s=timeout_s, quick=quick),
            check=lambda src: evaluate(src, device=device, timeout_s=timeout_s, quick=True),
            bench=lambda src, configs: evaluate(src, device=device, suite=suite, configs=configs,
                                                timeout_s=timeout_s),
            compiler_stats=compiler_stats_text,
            # says in one line where ncu or a GPU is missing; checked when the tool is called, not here
            profiler=Profiler(suite=suite),
        )


class AgentOperator:
    name = "agent"

    def __init__(self, model, *, lineage: LineageView | None = None,
                 knowledge: KnowledgeBase | str | Path | None = DEFAULT_KNOWLEDGE,
                 harness: HarnessCalls | None = None, limits: Limits = Limits(),
                 budget: Budget | None = None, env: Mapping[str, str] | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        """model: a ModelSpec, a model string ("openai:gpt-4.1"), or a ready chat
        model (tests pass scripted ones). Building a model makes no request; a
        missing key or provider package raises ModelUnavailable here."""
        if isinstance(model, str):
            model = ModelSpec(model=model)
        self.spec = model if isinstance(model, ModelSpec) else None
        self.model = build_chat_model(model, env) if self.spec else model
        self._env = env
        self.lineage = lineage
        self.knowledge = KnowledgeBase(knowledge) if isinstance(knowledge, (str, Path)) else knowledge
        self._harness = harness
        self.limits = limits
        self.budget = budget or Budget()
        self.sleep = sleep

    @property
    def harness(self) -> HarnessCalls:
        if self._harness is None:
            self._harness = HarnessCalls.from_harness()
        return self._harness

    def resume(self, spent) -> None:
        """A resumed run: what it spent before (avo.budget.Spent, from the run's
        journal) counts against this operator's token and dollar budget too."""
        self.budget.charge(int(spent.tokens), float(spent.dollars))

    def vary(self, ctx: VaryContext) -> Candidate:
        self.budget.check()  # a spent budget stops the run here, before any call
        harness = self.harness
        wb = Workbench(source=ctx.parent_source, parent_version=ctx.parent_version,
                       parent_source=ctx.parent_source, parent_result=ctx.parent_result,
                       lineage=self.lineage, knowledge=self.knowledge, check=harness.check,
                       bench=harness.bench, compiler_stats=harness.compiler_stats, profiler=harness.profiler)
        usage = Usage()
        context = VariationContext(model=self.model, workbench=wb,
                                   evaluate=ctx.evaluate or harness.evaluate, spec=self.spec,
                                   usage=usage, budget=self.budget, limits=self.limits, sleep=self.sleep)
        from langchain_core.messages import HumanMessage

        task = HumanMessage(self.task_prompt(ctx))
        out = variation_graph.invoke({"messages": [task], "source": ctx.parent_source}, context=context,
                                     config={"recursion_limit": self._recursion_limit()})
        cand = out["candidate"]
        if out.get("stop") == "model_error" and cand["attempt"] is None:
            raise ModelCallFailed(out.get("error") or "the model failed", usage)  # this candidate fails
        tech = cand["technique"]
        meta = {**usage.as_meta(), "model": self.spec.describe() if self.spec else type(self.model).__name__,
                "verify_status": cand["status"], "verify_geomean": cand["geomean"],
                "stop": out.get("stop", ""), "model_error": out.get("error", ""),
                "records": out.get("records", []),
                "session_attempts": [a["result"]["status"] for a in out.get("attempts", [])],
                "slot": ctx.slot}
        return Candidate(source=cand["source"], parent=ctx.parent_version, operator="agent",
                         technique=Technique(name=tech.get("name", "unnamed"), expected=tech.get("expected", ""),
                                             why=tech.get("why", ""), measured=tech.get("measured", {})),
                         generation=ctx.generation, meta=meta)

    def preflight(self) -> Usage:
        """One tiny request (reachable, key accepted); ModelUnavailable in one line if not.
        Its tokens count against the run's budget like any call."""
        if self.spec is None:
            return Usage()
        # a short client timeout: a black-holed address fails in ~a minute, not 3 x timeout_s
        quick = dataclasses.replace(self.spec, timeout_s=min(self.spec.timeout_s, PREFLIGHT_TIMEOUT_S))
        usage = preflight(quick, build_chat_model(quick, self._env), sleep=self.sleep)
        self.budget.charge(usage.input_tokens + usage.output_tokens, usage.cost_usd)
        return usage

    def task_prompt(self, ctx: VaryContext) -> str:
        lineage_summary = ctx.lineage_summary or (self.lineage.summary() if self.lineage else "(none)")
        attempts = ctx.attempts_summary or (self.lineage.attempts_summary(20) if self.lineage else "(none)")
        attempts = quote_untrusted(attempts, 6000, what="attempts log (messages are kernel/harness output)")
        directions = "\n".join(f"- {d}" for d in ctx.directions) or "(none yet)"
        scores = describe_result(ctx.parent_result) if ctx.parent_result else "(not measured)"
        return prompts.render("task", generation=ctx.generation, slot=ctx.slot,
                              parent_version=ctx.parent_version, parent_scores=scores,
                              lineage_summary=lineage_summary, attempts_summary=attempts,
                              directions=directions)

    def _recursion_limit(self) -> int:
        lim = self.limits
        return 20 + 3 * (lim.max_steps + lim.max_iterations * (lim.max_repairs + 4))


def operator_from_config(cfg, *, lineage: LineageView | None = None, harness: HarnessCalls | None = None,
                         env: Mapping[str, str] | None = None, model: str | None = None,
                         base_url: str | None = None) -> AgentOperator | None:
    """The agent operator params.yaml (agent section; AVO_MODEL / AVO_BASE_URL, or
    the explicit model / base_url of a CLI flag) asks for, or None when no model
    is configured or evolve.operator is "heuristic": the caller then uses the
    heuristic operator. evolve.operator "agent" with no model is a ModelUnavailable."""
    import os

    env = os.environ if env is None else env
    agent_cfg = getattr(cfg, "agent", None)
    choice = getattr(getattr(cfg, "evolve", None), "operator", "auto")
    spec = ModelSpec.from_config(agent_cfg, env)
    if model:
        spec = ModelSpec(**{**(spec.__dict__ if spec else {}), "model": model,
                            "base_url": base_url or (spec.base_url if spec else None)})
    if choice == "heuristic":
        return None
    if spec is None:
        if choice == "agent":
            raise ModelUnavailable("evolve.operator is 'agent' but no model is configured: "
                                   "set agent.model in params.yaml or AVO_MODEL")
        return None
    get = lambda key, default: getattr(agent_cfg, key, default) if agent_cfg is not None else default  # noqa: E731
    limits = Limits(max_steps=get("max_steps", 12), max_repairs=get("max_repairs", 3),
                    max_iterations=get("max_iterations", 2))
    budget = Budget(max_tokens=get("max_tokens", None), max_cost_usd=get("max_cost_usd", None))
    if harness is None and getattr(cfg, "harness", None) is not None:
        h = cfg.harness
        harness = HarnessCalls.from_harness(device=h.device, suite=h.suite, timeout_s=h.timeout_s, quick=h.quick)
    knowledge = REPO_ROOT / get("knowledge_root", "knowledge_base")
    return AgentOperator(spec, lineage=lineage, knowledge=knowledge, harness=harness, limits=limits,
                         budget=budget, env=env)
