"""Candidates: immutable kernel sources with where they came from and why.

A repair or a new idea makes a new Candidate; nothing mutates one in place.
Plain Python: tests in milliseconds.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

OPERATORS = ("seed", "heuristic", "agent", "external", "human")


@dataclass(frozen=True)
class Technique:
    """The short structured record of what a variation tried and why.

    `measured` is filled in after evaluation: config name -> ratio to the parent
    (1.05 = 5% faster), so later generations can read what actually happened.
    """

    name: str  # e.g. "causal-loop-split", "block_n=128"
    expected: str = ""  # what should move and by how much, written before measuring
    why: str = ""  # the reasoning / knowledge-base note it came from
    measured: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"name": self.name, "expected": self.expected, "why": self.why,
                "measured": dict(self.measured)}

    @classmethod
    def from_dict(cls, d: dict) -> "Technique":
        return cls(name=d.get("name", ""), expected=d.get("expected", ""), why=d.get("why", ""),
                   measured=dict(d.get("measured", {})))


@dataclass(frozen=True)
class Candidate:
    source: str  # the whole kernel file
    parent: int | None  # lineage version number it was derived from (None for a seed)
    operator: str  # one of OPERATORS
    technique: Technique
    generation: int = 0
    meta: dict = field(default_factory=dict)  # operator-specific: tokens, cost, knobs...
    origin: dict | None = None  # {"lineage", "version"}: another lineage's version it is a copy of

    def __post_init__(self):
        if self.operator not in OPERATORS:
            raise ValueError(f"unknown operator {self.operator!r}; expected one of {OPERATORS}")

    @property
    def sha256(self) -> str:
        return source_sha256(self.source)

    def with_source(self, source: str, **changes) -> "Candidate":
        """A new candidate with new source (a repair), everything else carried over."""
        return replace(self, source=source, **changes)


def source_sha256(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()
