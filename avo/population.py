"""What was tried: the one owner of the attempts log's meaning.

The lineage stores attempts (attempts.jsonl, one line per evaluated candidate);
this module reads them into typed `Attempt` records and answers the questions
the search asks of its history:

    pop = Population.of(lineage)          # read once per generation
    pop.tried(sha256, device, suite)      # this exact source was judged here already
    pop.since_last_commit()               # the attempts after the last commit
    pop.stagnation(generation, patience)  # the one stagnation rule (supervisors use it)
    pop.summary(20)                       # text for prompts (agents render this, never re-read files)

Plain Python and picklable: it travels to remote workers inside a VaryContext.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Attempt:
    """One attempts.jsonl line. `record` keeps the whole line (the report and the
    tree page read its other fields: per-config TFLOPS, log tail, cost)."""

    generation: int
    operator: str
    technique: str  # the technique's short name
    status: str
    committed: bool
    version: int | None
    parent: int | None
    source_sha256: str
    device: str
    suite: str | None
    geomean_tflops: float
    why: str  # the commit rule's reason, else the harness's message
    record: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_record(cls, d: dict) -> "Attempt":
        t = d.get("technique") or {}
        return cls(generation=int(d.get("generation") or 0), operator=d.get("operator") or "?",
                   technique=(t.get("name") if isinstance(t, dict) else str(t)) or "",
                   status=d.get("status") or "?", committed=bool(d.get("committed")), version=d.get("version"),
                   parent=d.get("parent"), source_sha256=d.get("source_sha256") or "",
                   device=d.get("device") or "", suite=d.get("suite"),
                   geomean_tflops=float(d.get("geomean_tflops") or 0.0),
                   why=d.get("reason") or d.get("message") or "", record=d)

    def describe(self) -> str:
        """'committed as v3' / 'ok 123.4 TFLOPS; not committed (why)': one line."""
        outcome = f"ok {self.geomean_tflops:.4g} TFLOPS" if self.status == "ok" else self.status
        verdict = f"committed as v{self.version}" if self.committed else "not committed"
        return f"{outcome}; {verdict}"


@dataclass(frozen=True)
class Stagnation:
    triggered: bool
    reason: str  # one line; "" when not triggered


def technique_key(name: str) -> str:
    """Technique names compared loosely: 'BLOCK_N=128' == 'block-n 128'."""
    return re.sub(r"[^a-z0-9]+", "-", (name or "").lower()).strip("-")


class Population:
    """The attempts, oldest first, and the questions asked of them."""

    def __init__(self, attempts: list[Attempt]):
        self.attempts = list(attempts)

    @classmethod
    def of(cls, lineage) -> "Population":
        return cls.from_records(lineage.attempts())

    @classmethod
    def from_records(cls, records: list[dict]) -> "Population":
        return cls([Attempt.from_record(r) for r in records])

    def add(self, record: dict) -> None:
        """An attempt just recorded in the lineage (the flow adds each as it commits)."""
        self.attempts.append(Attempt.from_record(record))

    def records(self) -> list[dict]:
        return [a.record for a in self.attempts]

    def before(self, generation: int) -> "Population":
        """Only earlier generations: every slot of a generation sees the same history."""
        return Population([a for a in self.attempts if a.generation < generation])

    # ------------------------------------------------------------ queries
    def tried(self, sha256: str, device: str, suite: str | None) -> Attempt | None:
        """The attempt that already judged this exact source on this device and
        suite (a rerun would only re-measure noise), or None."""
        for a in reversed(self.attempts):
            if a.source_sha256 == sha256 and a.device == device and (suite is None or a.suite == suite):
                return a
        return None

    def last_commit_generation(self) -> int:
        """The generation of the last commit (the seed does not count), else the first generation."""
        committed = [a.generation for a in self.attempts if a.committed and a.operator != "seed"]
        return max(committed, default=min((a.generation for a in self.attempts), default=0))

    def since_last_commit(self) -> list[Attempt]:
        last = self.last_commit_generation()
        return [a for a in self.attempts if a.generation > last and not a.committed]

    def stagnation(self, generation: int, patience: int = 3, repeats: int = 3,
                   last_review: int | None = None) -> Stagnation:
        """The stagnation rule: `patience` generations without a commit, or the same
        direction (technique) tried `repeats` times since the last commit without one
        landing. Quiet for `patience` generations after the last review."""
        if last_review is not None and generation - last_review < patience:
            return Stagnation(False, "")
        last = self.last_commit_generation()
        since = generation - last
        if since >= patience:
            return Stagnation(True, f"{since} generations without a commit (since generation {last})")
        names = Counter(technique_key(a.technique) for a in self.since_last_commit())
        names.pop("", None)
        if names:
            name, count = names.most_common(1)[0]
            if count >= repeats:
                return Stagnation(True, f"direction {name!r} tried {count} times since the last commit without one")
        return Stagnation(False, "")

    # ------------------------------------------------------------ text
    def summary(self, limit: int = 20) -> str:
        """Short text for prompts: what was tried recently and what happened."""
        recent = self.attempts[-limit:] if limit else self.attempts
        if not recent:
            return "Attempts: none yet."
        lines = [f"Last {len(recent)} attempts (oldest first):"]
        for a in recent:
            parent = f"v{a.parent}" if a.parent is not None else "-"
            why = " ".join(a.why.split())
            why = why if len(why) <= 160 else why[:159] + "…"
            lines.append(f"gen {a.generation} {a.operator} from {parent} '{a.technique}': {a.describe()}"
                         + (f" ({why})" if why else ""))
        return "\n".join(lines)
