"""What an evolve run needs, resolved once: config + command-line overrides,
the device, the budget, where the lineage and the run journal live, and the
variation operator. Plain Python; the Prefect flows in flows/ only read this.
"""
from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from avo.budget import Budget
from avo.config import Config, load_config, repo_root
from avo.problem import load_problem
from avo.run_state import state_path


class OperatorUnavailable(RuntimeError):
    """The operator asked for cannot run (no model configured, agents/ missing); one line."""


HOW_TO_CONFIGURE_A_MODEL = ("set agent.model in params.yaml (e.g. openai:gpt-4.1 or anthropic:claude-sonnet-4-5), "
                            "AVO_MODEL, or pass --model; API keys come from the environment "
                            "(or use --operator heuristic)")


@dataclass(frozen=True)
class Settings:
    cfg: Config
    root: Path  # the repository root; relative paths hang off it
    lineage_root: Path
    seed_path: Path
    device: str  # cuda | cpu (resolved)
    suite: str | None
    population: int
    budget: Budget
    operator: str  # heuristic | agent | external (resolved from "auto")
    model: str | None
    state_file: Path
    dask_address: str | None
    knowledge_root: Path

    @property
    def margin(self) -> float:
        return self.cfg.lineage.margin_for(self.device, self.device == "cpu")


def resolve(*, params_path: str | None = None, generations: int | None = None, population: int | None = None,
            operator: str | None = None, model: str | None = None, budget_minutes: float | None = None,
            gpu_minutes: float | None = None, max_tokens: int | None = None, max_dollars: float | None = None,
            target_ratio: float | None = None, target_tflops: float | None = None, device: str | None = None,
            dask_address: str | None = None, lineage_root: str | None = None, state_dir: str | None = None,
            quick: bool | None = None, suite: str | None = None) -> Settings:
    """params.yaml (or the defaults), with every non-None argument taking precedence."""
    params_path = params_path or os.environ.get("AVO_PARAMS")
    cfg = load_config(params_path)
    root = repo_root(Path(params_path).parent if params_path else None)
    ev = cfg.evolve
    ev = dataclasses.replace(ev, **{k: v for k, v in dict(
        generations=generations, candidates_per_generation=population, operator=operator,
        wall_minutes=budget_minutes, gpu_minutes=gpu_minutes, max_tokens=max_tokens, max_dollars=max_dollars,
        target_ratio_cudnn=target_ratio, target_tflops=target_tflops, dask_address=dask_address,
        state_dir=state_dir).items() if v is not None})
    harness = cfg.harness
    if device is not None or quick is not None or suite is not None:
        harness = dataclasses.replace(harness, **{k: v for k, v in dict(device=device, quick=quick,
                                                                        suite=suite).items()
                                                  if v is not None})
    agent = dataclasses.replace(cfg.agent, model=model) if model else cfg.agent
    cfg = dataclasses.replace(cfg, evolve=ev, harness=harness, agent=agent)

    resolved_device = harness.device
    if resolved_device == "auto":
        from avo.harness.runner import detect_device  # imports torch only to ask for a GPU

        resolved_device = detect_device()
    if resolved_device not in ("cuda", "cpu"):
        raise ValueError(f"unknown device {resolved_device!r}: use cuda, cpu or auto")
    chosen = ev.operator
    if chosen == "auto":
        chosen = "agent" if (agent.model or os.environ.get("AVO_MODEL")) else "heuristic"
    lineage = Path(lineage_root) if lineage_root else root / cfg.lineage.root_for(resolved_device)
    budget = Budget(generations=ev.generations, wall_minutes=ev.wall_minutes, gpu_minutes=ev.gpu_minutes,
                    tokens=ev.max_tokens, dollars=ev.max_dollars, target_ratio_cudnn=ev.target_ratio_cudnn,
                    target_tflops=ev.target_tflops)
    seed_path = root / cfg.lineage.seed
    if not seed_path.is_file() and not (lineage / "v0000").is_dir():  # the seed is only needed for v0
        # relative paths hang off the params file's folder
        raise ValueError(f"no seed kernel at {seed_path}: set lineage.seed in {params_path or 'params.yaml'} "
                         "(relative to that file's folder)")
    problem = load_problem()
    suite = harness.suite or problem.DEFAULT_SUITE[resolved_device]
    if suite not in problem.SUITES:
        raise ValueError(f"unknown suite {suite!r}; known: {', '.join(problem.SUITES)}")
    return Settings(cfg=cfg, root=root, lineage_root=lineage, seed_path=seed_path,
                    device=resolved_device, suite=suite,
                    population=ev.candidates_per_generation,
                    budget=budget, operator=chosen, model=agent.model, dask_address=ev.dask_address,
                    state_file=state_path(root / ev.state_dir, lineage), knowledge_root=root / "knowledge_base")


def make_operator(settings: Settings, lineage=None, evaluate=None):
    """The variation operator by name: heuristic here, agent from agents/ (imported
    lazily: LangChain is only needed when a model is configured). evaluate(source,
    **overrides): the harness the agent verifies, checks and benchmarks with (the
    flow passes one that leases a GPU per call); None: avo.harness directly."""
    if settings.operator == "heuristic":
        from avo.operators.heuristic import HeuristicOperator

        return HeuristicOperator(settings.lineage_root, knowledge_root=settings.knowledge_root,
                                 device=settings.device)
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
        from agents.operator import operator_from_config
    except ImportError as e:
        raise OperatorUnavailable(f"the agent operator is not available ({e}); "
                                  "install avo with its LangGraph dependencies or use --operator heuristic") from None
    cfg = dataclasses.replace(settings.cfg, evolve=dataclasses.replace(settings.cfg.evolve, operator="agent"),
                              harness=dataclasses.replace(settings.cfg.harness, device=settings.device))
    harness = None
    if evaluate is not None:
        from agents.operator import HarnessCalls
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


def supervisor_available() -> bool:
    """agents/ and the LangGraph stack it needs (a lean GPU worker image may have neither)."""
    return all(importlib.util.find_spec(m) is not None
               for m in ("agents", "langgraph", "langchain_core")) and \
        importlib.util.find_spec("agents.supervisor") is not None


def supervise(settings: Settings, lineage, generation: int) -> list[str] | None:
    """The stagnation hook, called after every generation. When agents/supervisor.py
    is importable, its `maybe_supervise` applies its stagnation rule and, when
    it fires, reviews the trajectory (with the configured model for the agent
    operator, else its rules) and writes directions.json; the directions come
    back as lines. None: not triggered, not installed, or it failed (a warning:
    the supervisor is advice, never a reason to stop the search)."""
    if not supervisor_available():
        return None
    try:
        from agents.supervisor import maybe_supervise

        spec = None
        if settings.operator == "agent":
            from agents.models import ModelSpec

            spec = ModelSpec.from_config(settings.cfg.agent)
        out = maybe_supervise(lineage, generation=generation,
                              patience=settings.cfg.evolve.stagnation_generations, spec=spec)
    except Exception as e:  # noqa: BLE001
        print(f"avo: warning: the supervisor failed ({type(e).__name__}: {e}); continuing without it",
              file=sys.stderr)
        return None
    return out.as_prompt_lines() if out is not None else None


def current_directions(settings: Settings, state_directions: list[str]) -> list[str]:
    """The run's directions, else the supervisor's last ones (directions.json)."""
    if state_directions:
        return list(state_directions)
    try:
        from avo.directions import read_directions
    except ImportError:
        return []
    d = read_directions(settings.lineage_root)
    return d.as_prompt_lines() if d else []
