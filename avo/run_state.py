"""Resume: the small journal an evolve run keeps beside the lineage.

The lineage (versions + attempts.jsonl) is the record of what happened; this
journal only says where a run stands: which generation is in flight, which of
its slots are finished, what the run has spent, how long since its last commit.
It is rewritten atomically after every finished candidate, so after a kill:
- a finished run (status "finished") is left alone, and `avo evolve` starts a
  new run at the generation after the last one in the attempts log;
- an unfinished run continues: the generation in flight runs only its missing
  slots (operators are deterministic per (generation, slot), so those are the
  same proposals the killed run would have made), budgets count on from what
  was spent;
- a candidate finished in the lineage but not yet in the journal (a kill
  between the two writes) is caught by its source hash: `already_tried` finds
  it in the attempts log and the evaluation is not repeated.
Plain Python; the file lives under .avo/ (git-ignored), one per lineage root.
"""
from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from avo.atomic_files import atomic_write
from avo.budget import Spent


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class RunState:
    run_id: str
    lineage_root: str
    generation: int  # the generation in flight (or the next one to run)
    status: str = "running"  # running | finished
    done_slots: list[int] = field(default_factory=list)  # finished slots of `generation`
    spent: Spent = field(default_factory=Spent)
    since_commit: int = 0  # generations without a commit (stagnation)
    directions: list[str] = field(default_factory=list)  # the supervisor's latest
    stop_reason: str = ""
    started: str = field(default_factory=_now)
    updated: str = ""
    resumed: bool = False  # set when loaded from an unfinished run (not stored)
    # wall clock of this invocation (not stored): spent.wall_s = earlier invocations + this one
    _clock_start: float = field(default_factory=time.monotonic, repr=False)
    _wall_before: float | None = field(default=None, repr=False)

    def tick(self) -> None:
        """Bring spent.wall_s up to now."""
        if self._wall_before is None:
            self._wall_before = self.spent.wall_s
        self.spent.wall_s = self._wall_before + (time.monotonic() - self._clock_start)

    def to_dict(self) -> dict:
        return {"run_id": self.run_id, "lineage_root": self.lineage_root, "generation": self.generation,
                "status": self.status, "done_slots": sorted(self.done_slots), "spent": self.spent.to_dict(),
                "since_commit": self.since_commit, "directions": list(self.directions),
                "stop_reason": self.stop_reason, "started": self.started, "updated": _now()}

    @classmethod
    def from_dict(cls, d: dict) -> "RunState":
        return cls(run_id=d["run_id"], lineage_root=d["lineage_root"], generation=int(d["generation"]),
                   status=d.get("status", "running"), done_slots=list(d.get("done_slots", [])),
                   spent=Spent.from_dict(d.get("spent", {})), since_commit=int(d.get("since_commit", 0)),
                   directions=list(d.get("directions", [])), stop_reason=d.get("stop_reason", ""),
                   started=d.get("started", ""), updated=d.get("updated", ""))

    # ------------------------------------------------------------ progress
    def finish_slot(self, slot: int) -> None:
        if slot not in self.done_slots:
            self.done_slots.append(slot)

    def next_generation(self) -> None:
        self.generation += 1
        self.done_slots = []
        self.spent.generations += 1


def state_path(state_dir: str | Path, lineage_root: str | Path) -> Path:
    """One journal per lineage root: .avo/evolve/<hash of the root>.json."""
    key = hashlib.sha1(str(Path(lineage_root).resolve()).encode()).hexdigest()[:12]
    return Path(state_dir) / "evolve" / f"{key}.json"


def next_generation_number(attempts: list[dict]) -> int:
    """The generation after the last one in the attempts log (the seed is 0)."""
    return max((int(a.get("generation") or 0) for a in attempts), default=0) + 1


def load_or_start(path: Path, lineage_root: str | Path, attempts: list[dict]) -> RunState:
    """Continue an unfinished run, or start a new one after the last attempt."""
    if path.is_file():
        try:
            state = RunState.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, KeyError, TypeError):
            state = None  # an unreadable journal: the lineage still says what happened
        if state is not None and state.status == "running":
            state.resumed = True
            return state
    return RunState(run_id=uuid.uuid4().hex[:12], lineage_root=str(lineage_root),
                    generation=next_generation_number(attempts))


def save(path: Path, state: RunState) -> None:
    state.tick()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(state.to_dict(), indent=2) + "\n")


def already_tried(attempts: list[dict], sha256: str, device: str, suite: str | None) -> dict | None:
    """The attempt record that already evaluated this exact source on this device
    and suite, or None (avo.population.Population.tried, for attempt dicts)."""
    from avo.population import Population

    hit = Population.from_records(attempts).tried(sha256, device, suite)
    return hit.record if hit is not None else None
