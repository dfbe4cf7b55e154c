"""The one interface every variation operator implements.

Vary(P) = Operator(P, K, f): given the lineage P (through VaryContext), the
knowledge base K and the scoring function f (`evaluate`, the harness), return a
new Candidate. Operators never commit anything: the generation's commit step
does, through the lineage's commit rule.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

from avo.candidate import Candidate
from avo.population import Population
from avo.records import EvalResult


@dataclass
class VaryContext:
    parent_version: int  # lineage version the operator starts from
    parent_source: str
    parent_result: EvalResult | None  # its recorded evaluation, if any
    generation: int
    slot: int  # index of this variation within the generation (0..N-1)
    lineage_summary: str = ""  # short text: versions, techniques, geomeans
    attempts_summary: str = ""  # short text: recent attempts and outcomes
    directions: list[str] = field(default_factory=list)  # supervisor's directions
    # f: the harness, for operators that verify inside their loop (the agent).
    evaluate: Callable[[str], EvalResult] | None = None
    seed: int = 0  # for reproducible randomness
    # what was tried (avo.population), read once per generation by select; None: the
    # operator reads its lineage itself (tests, `avo` commands outside a flow)
    population: Population | None = None
    # sources being judged when this generation was selected and not yet recorded in
    # `population` (the generation before, still in flight: evolve.overlap_generations);
    # an operator does not propose them again. Empty without overlap
    judging: frozenset[str] = frozenset()


class VariationOperator(Protocol):
    """Optional: `resume(spent)`, called with the run journal's avo.budget.Spent
    when a run resumes, for an operator that keeps its own token/dollar limit."""

    name: str  # "heuristic" | "agent" | "external"

    def vary(self, ctx: VaryContext) -> Candidate: ...


class Supervisor(Protocol):
    """Reviews the search after each generation; built by the wiring (flows/wiring.py)."""

    def review(self, lineage, generation: int, since_commit: int) -> list[str] | None:
        """New directions (lines for the operator's prompt), or None: carry on."""
