"""The wiring: what an evolve run is made of, built from the config by name.

    settings  = resolve(...)                       avo.evolution: params.yaml + flags
    operator  = make_operator(settings, lineage)   heuristic (avo/) | agent | external (agents/)
    supervisor = make_supervisor(settings)         agents/supervisor.py, else the core's rule
    tracker   = make_tracker(settings)             MLflow (avo.tracking), or None
    harness   = make_harness(settings)             avo.harness.evaluate on a leased GPU (the agent's)

This is the one module that knows both the core (avo/) and the frameworks
(agents/, Prefect, MLflow); the core never imports it. The CLI reaches it through
avo.edge, which names it instead of importing it.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import os
import sys

from avo.errors import OperatorUnavailable
from avo.evolution import Settings, resolve  # noqa: F401  (resolve: the CLI's entry, re-exported)
from avo.operators.base import Supervisor, VariationOperator
from avo.population import Population

HOW_TO_CONFIGURE_A_MODEL = ("set agent.model in params.yaml (e.g. openai:gpt-4.1 or anthropic:claude-sonnet-4-5), "
                            "AVO_MODEL, or pass --model; API keys come from the environment "
                            "(or use --operator heuristic)")


def make_operator(settings: Settings, lineage=None, evaluate=None) -> VariationOperator:
    """The variation operator by name: heuristic from the core, agent or external
    from agents/ (imported here only when asked for: LangChain is needed only with a
    model). evaluate(source, **overrides): the harness the agent verifies, checks
    and benchmarks with (the flow passes one that leases a GPU per call); None:
    avo.harness directly."""
    if settings.operator == "heuristic":
        from avo.operators.heuristic import HeuristicOperator

        return HeuristicOperator(settings.lineage_root, knowledge_root=settings.knowledge_root,
                                 device=settings.device, problem_path=settings.problem_path)
    if settings.operator == "external":  # a coding-agent CLI per candidate (agents/external.py)
        try:
            from agents.external import operator_from_settings
        except ImportError as e:
            raise OperatorUnavailable(f"the external operator is not available ({e})") from None
        try:
            return operator_from_settings(settings, lineage=lineage)
        except RuntimeError as e:
            raise OperatorUnavailable(str(e)) from None
    if not (settings.model or os.environ.get("AVO_MODEL")):
        raise OperatorUnavailable(f"the agent operator needs a model: {HOW_TO_CONFIGURE_A_MODEL}")
    try:
        from agents.operator import HarnessCalls, operator_from_config
    except ImportError as e:
        raise OperatorUnavailable(f"the agent operator is not available ({e}); "
                                  "install avo with its LangGraph dependencies or use --operator heuristic") from None
    cfg = dataclasses.replace(settings.cfg, evolve=dataclasses.replace(settings.cfg.evolve, operator="agent"),
                              harness=dataclasses.replace(settings.cfg.harness, device=settings.device))
    harness = None
    if evaluate is not None:
        from avo.compile_stats import compiler_stats_text

        harness = HarnessCalls(evaluate=evaluate, check=lambda src: evaluate(src, quick=True),
                               bench=lambda src, configs: evaluate(src, configs=configs),
                               compiler_stats=compiler_stats_text)
    try:
        op = operator_from_config(cfg, lineage=lineage, model=settings.model, harness=harness)
    except Exception as e:  # ModelUnavailable and friends: one line for the user
        raise OperatorUnavailable(f"{e}; {HOW_TO_CONFIGURE_A_MODEL}") from None
    if op is None:
        raise OperatorUnavailable(f"no model configured: {HOW_TO_CONFIGURE_A_MODEL}")
    return op


def make_harness(settings: Settings):
    """evaluate(source, **overrides) -> EvalResult on a leased device (the generation's
    `judge`: one evaluation per GPU at a time), for operators that verify, check or
    benchmark inside vary (the agent)."""
    from flows.generation import judge

    return lambda source, **overrides: judge(source, settings, stoppable=False, **overrides)[0]


def make_supervisor(settings: Settings) -> Supervisor:
    """agents/supervisor.py when it and the LangGraph stack are installed (a lean GPU
    worker image may have neither), else the core's stagnation rule alone."""
    if all(importlib.util.find_spec(m) is not None for m in ("agents", "langgraph", "langchain_core")) \
            and importlib.util.find_spec("agents.supervisor") is not None:
        return AgentSupervisor(settings)
    return RuleSupervisor(settings.cfg.evolve.stagnation_generations)


class AgentSupervisor:
    """agents/supervisor.py's review (its model for the agent operator, else its
    rules), written to directions.json when the stagnation rule fires. A failure is
    a warning: the supervisor is advice, never a reason to stop the search."""

    def __init__(self, settings: Settings):
        self.settings = settings

    def review(self, lineage, generation: int, since_commit: int) -> list[str] | None:
        try:
            from agents.supervisor import maybe_supervise

            spec = None
            if self.settings.operator == "agent":
                from agents.models import ModelSpec

                spec = ModelSpec.from_config(self.settings.cfg.agent)
            out = maybe_supervise(lineage, generation=generation, problem=self.settings.problem_path,
                                  patience=self.settings.cfg.evolve.stagnation_generations, spec=spec)
        except Exception as e:  # noqa: BLE001
            print(f"avo: warning: the supervisor failed ({type(e).__name__}: {e}); continuing without it",
                  file=sys.stderr)
            return None
        return out.as_prompt_lines() if out is not None else None


@dataclasses.dataclass(frozen=True)
class RuleSupervisor:
    """Without agents/: when the stagnation rule (avo.population) fires, the heuristic
    is told to widen its moves (combinations of knobs and feature switches)."""

    patience: int

    def review(self, lineage, generation: int, since_commit: int) -> list[str] | None:
        verdict = Population.of(lineage).stagnation(generation, self.patience)  # the one rule
        if not verdict.triggered:
            return None
        return [f"stagnation: {verdict.reason}; explore combinations of knobs and feature switches"]


def make_tracker(settings: Settings):
    """MLflow, when enabled and installed (the GPU image may lack it: then no tracking)."""
    if not settings.cfg.tracking.enabled:
        return None
    if importlib.util.find_spec("mlflow") is None:
        print("avo: warning: mlflow is not installed; candidates are not tracked", file=sys.stderr)
        return None
    from avo.tracking import Tracker

    return Tracker.from_config(settings.cfg.tracking, root=settings.root)
