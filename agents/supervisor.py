"""The supervisor: a stagnation rule, a review of the trajectory, new directions.

    verdict = Population.of(lineage).stagnation(g, patience=3)   # avo.population: the one rule
    if verdict.triggered:
        supervise(lineage_root, attempts, lineage_summary, generation=g, trigger=verdict.reason,
                  model=chat_model_or_None)      # writes <lineage_root>/directions.json

The rule (plain Python): `patience` generations without a commit, or the same
direction (technique name) tried `repeats` times since the last commit without
one landing. It does not fire again until `patience` generations after the last
directions were written.

The review is a graph: review → write. With a model, `review` asks it (prompt:
agents/prompts/supervisor.md) to call its `directions` tool; without one, or
when its answer is unusable, rules stand in: stop repeating what failed, and
try the problem's levers (its lever table, kernel_src/<problem>/levers.py, which
the heuristic reads too) that the attempts log shows were never tried.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.tools import StructuredTool
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Command
from pydantic import BaseModel, Field, ValidationError
from typing_extensions import TypedDict

from agents import prompts
from agents.models import Budget, BudgetExceeded, ModelSpec, Usage, invoke_model
from avo.directions import Directions, read_directions, write_directions
from avo.population import Population, Stagnation, technique_key
from avo.problem import levers, load_problem

def problem_levers(problem=None) -> list[tuple[tuple[str, ...], str]]:
    """(keywords that mark an attempt as having tried it, the direction to give) for each
    lever of the problem's lever table that has a direction (avo.problem.levers: the one
    table the heuristic reads too; kernel_src/<problem>/levers.py). problem: a module or
    a path; None: the default problem (attention)."""
    if problem is None or isinstance(problem, (str, Path)):
        problem = load_problem(problem) if problem is not None else load_problem()
    return [(tuple(lv.get("keywords", ())), lv["direction"]) for lv in levers(problem) if lv.get("direction")]


# ----------------------------------------------------------- stagnation rule
def detect_stagnation(attempts: list[dict], *, generation: int, patience: int = 3, repeats: int = 3,
                      last_review: int | None = None) -> Stagnation:
    """Whether the search has stagnated after `generation`: avo.population's rule
    (the one rule; this name stays for callers that hold attempt dicts)."""
    return Population.from_records(attempts).stagnation(generation, patience, repeats, last_review)


def _norm(name: str) -> str:
    return technique_key(name)


# --------------------------------------------------------------------- graph
class DirectionsArgs(BaseModel):
    directions: list[str] = Field(description="3 to 5 concrete, distinct directions for the next proposals")
    avoid: list[str] = Field(default_factory=list, description="directions to stop trying, with the reason")
    rationale: str = Field(default="", description="what the trajectory shows, in 2-3 sentences")


DIRECTIONS_TOOL = StructuredTool.from_function(
    lambda **kw: "recorded", name="directions", args_schema=DirectionsArgs,
    description="Record the new directions (call exactly once).")


@dataclass
class SupervisorContext:
    lineage_root: Path
    model: Any = None  # a chat model, or None: rules only
    spec: ModelSpec | None = None
    usage: Usage = field(default_factory=Usage)
    budget: Budget | None = None
    knowledge: Any = None  # avo.knowledge.KnowledgeBase, for the levers' notes
    problem: Any = None  # the problem module or its path: whose lever table the rules read (None: default)
    sleep: Callable[[float], None] = time.sleep


class SupervisorState(TypedDict, total=False):
    generation: int
    trigger: str
    lineage_summary: str
    attempts: list[dict]
    previous: list[str]  # the directions in force
    directions: dict  # output: a Directions as a dict
    note: str  # why the rules stood in, if they did


class SupervisorInput(TypedDict):
    generation: int
    trigger: str
    lineage_summary: str
    attempts: list[dict]
    previous: list[str]


class SupervisorOutput(TypedDict):
    directions: dict
    note: str


def review(state: SupervisorState, runtime: Runtime[SupervisorContext]) -> Command[Literal["write"]]:
    """The model (or the rules) reads the trajectory and proposes directions."""
    ctx = runtime.context
    fallback = rule_directions(state.get("attempts", []), problem=ctx.problem)
    if ctx.model is None:
        return Command(update={"directions": {**fallback, "author": "rules"}, "note": "no model configured"},
                       goto="write")
    message = HumanMessage(_trajectory(state, ctx))
    try:
        reply = invoke_model(ctx.model.bind_tools([DIRECTIONS_TOOL]),
                             [SystemMessage(prompts.load("supervisor")), message],
                             spec=ctx.spec, usage=ctx.usage, budget=ctx.budget, sleep=ctx.sleep)
    except BudgetExceeded as e:
        return Command(update={"directions": {**fallback, "author": "rules"}, "note": str(e)}, goto="write")
    for call in reply.tool_calls:
        if call["name"] == "directions":
            try:
                args = DirectionsArgs(**(call.get("args") or {}))
            except ValidationError as e:
                note = f"model's directions malformed ({e.error_count()} errors)"
                return Command(update={"directions": {**fallback, "author": "rules"}, "note": note},
                               goto="write")
            if args.directions:
                author = ctx.spec.describe() if ctx.spec else type(ctx.model).__name__
                return Command(update={"directions": {**args.model_dump(), "author": author}, "note": ""},
                               goto="write")
    return Command(update={"directions": {**fallback, "author": "rules"}, "note": "model gave no directions"},
                   goto="write")


def write(state: SupervisorState, runtime: Runtime[SupervisorContext]) -> dict:
    """Persist the directions next to the lineage, where the next select reads them."""
    d = state["directions"]
    directions = Directions(directions=list(d.get("directions", [])), avoid=list(d.get("avoid", [])),
                            rationale=d.get("rationale", ""), trigger=state.get("trigger", ""),
                            generation=state.get("generation", 0), author=d.get("author", ""))
    write_directions(runtime.context.lineage_root, directions)
    return {"directions": {**d, "trigger": directions.trigger, "generation": directions.generation}}


def _trajectory(state: SupervisorState, ctx: SupervisorContext) -> str:
    lines = [f"Trigger: {state.get('trigger', '')} (after generation {state.get('generation', 0)})", "",
             state.get("lineage_summary", "") or "Lineage: (no summary)", "", "Attempts (oldest first):"]
    for a in state.get("attempts", [])[-60:]:
        t = a.get("technique", {})
        outcome = f"ok {a.get('geomean_tflops', 0):.4g}" if a.get("status") == "ok" else a.get("status", "?")
        lines.append(f"- gen {a.get('generation', 0)} {a.get('operator', '?')} '{t.get('name', '')}': {outcome}, "
                     f"{'committed' if a.get('committed') else 'not committed'}"
                     + (f" ({(a.get('reason') or a.get('message') or '')[:140]})" if (a.get('reason') or a.get('message')) else ""))
    lines += ["", "Directions in force:"] + ([f"- {d}" for d in state.get("previous", [])] or ["- (none)"])
    if ctx.knowledge is not None:
        notes = ", ".join(ctx.knowledge.notes())
        lines += ["", f"Knowledge base notes: {notes}"]
    return "\n".join(lines)


def rule_directions(attempts: list[dict], max_directions: int = 4, problem=None) -> dict:
    """Without a model: avoid what keeps failing, try the problem's levers never tried."""
    table = problem_levers(problem)
    tried = " ".join(_norm(a.get("technique", {}).get("name", "")).replace("-", " ") + " "
                     + _norm(a.get("technique", {}).get("name", "")) for a in attempts)
    fresh = [text for keys, text in table if not any(k in tried for k in keys)]
    failing = Counter(_norm(a.get("technique", {}).get("name", "")) for a in attempts
                      if not a.get("committed") and a.get("operator") != "seed")
    failing.pop("", None)
    avoid = [f"{name} (tried {n} times without a commit)" for name, n in failing.most_common(3) if n >= 2]
    directions = fresh[:max_directions] or [text for _, text in table[:max_directions]]
    return {"directions": directions, "avoid": avoid,
            "rationale": "rules: levers from the knowledge base that the attempts log shows untried; "
                         "repeatedly failing directions are set aside"}


def build_graph():
    builder = StateGraph(SupervisorState, context_schema=SupervisorContext,
                         input_schema=SupervisorInput, output_schema=SupervisorOutput)
    builder.add_node("review", review)
    builder.add_node("write", write)
    builder.add_edge(START, "review")
    builder.add_edge("write", END)
    return builder.compile(name="supervisor")


graph = build_graph()


# ------------------------------------------------------------------ entry
def supervise(lineage_root: str | Path, attempts: list[dict], lineage_summary: str, *, generation: int,
              trigger: str, model=None, spec: ModelSpec | None = None, budget: Budget | None = None,
              knowledge=None, sleep: Callable[[float], None] = time.sleep, problem=None) -> Directions:
    """Review the trajectory and write directions.json; returns what was written.
    `model`: a chat model (or None for rules); a ModelSpec builds one."""
    if model is None and spec is not None:
        from agents.models import build_chat_model

        model = build_chat_model(spec)
    previous = read_directions(lineage_root)
    ctx = SupervisorContext(lineage_root=Path(lineage_root), model=model, spec=spec, budget=budget,
                            knowledge=knowledge, sleep=sleep, problem=problem)
    graph.invoke({"generation": generation, "trigger": trigger, "lineage_summary": lineage_summary,
                  "attempts": attempts, "previous": previous.as_prompt_lines() if previous else []},
                 context=ctx)
    written = read_directions(lineage_root)
    assert written is not None, "the write node always writes directions.json"
    return written


def maybe_supervise(lineage, *, generation: int, patience: int = 3, repeats: int = 3, model=None,
                    spec: ModelSpec | None = None, budget: Budget | None = None, knowledge=None,
                    population: Population | None = None, problem=None) -> Directions | None:
    """The evolve loop's one call after each generation: apply the stagnation rule
    (avo.population) to the history and, when it fires, review and write directions.
    `population`: the history the caller already holds (read from `lineage` if None);
    `problem`: the problem module or its path, whose lever table the rules read."""
    population = population if population is not None else Population.of(lineage)
    previous = read_directions(lineage.root)
    verdict = population.stagnation(generation, patience, repeats,
                                    last_review=previous.generation if previous else None)
    if not verdict.triggered:
        return None
    return supervise(lineage.root, population.records(), lineage.summary(), generation=generation,
                     trigger=verdict.reason, model=model, spec=spec, budget=budget, knowledge=knowledge,
                     problem=problem)
