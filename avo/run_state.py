"""Resume: the small journal an evolve run keeps beside the lineage.

The lineage (versions + attempts.jsonl) is the record of what happened; this
journal only says where a run stands: which generations are in flight (at most
two: the oldest unfinished one, `generation`, and with evolve.overlap_generations
the next one, which starts once no evaluation of `generation` waits for a device
slot), which of their slots are finished, what the run has spent, how long since
its last commit. It is rewritten atomically after every finished candidate, so
after a kill:
- a finished run (status "finished") is left alone, and `avo evolve` starts a
  new run at the generation after the last one in the attempts log;
- an unfinished run continues: each generation in flight runs only its missing
  slots (operators are deterministic per (generation, slot), so those are the
  same proposals the killed run would have made), budgets count on from what
  was spent;
- a candidate finished in the lineage but not yet in the journal (a kill
  between the two writes) is caught by its source hash: `already_tried` finds
  it in the attempts log and the evaluation is not repeated.
A journal written before generations overlapped (no `done_slots_ahead`) loads as
one with nothing done ahead. Plain Python; the file lives under .avo/ (git-ignored), one per lineage root.
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from avo.atomic_files import atomic_write
from avo.budget import Spent


# module-level: a RunState travels to Dask workers inside Prefect's flow run context, a lock does not
_JOURNAL = threading.RLock()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class RunState:
    run_id: str
    lineage_root: str
    generation: int  # the oldest unfinished generation: in flight, or the next one to run
    status: str = "running"  # running | finished
    done_slots: list[int] = field(default_factory=list)  # finished slots of `generation`
    # finished slots of generation + 1, which may run while `generation` ends (overlap);
    # generations finish in order, so these become `done_slots` when `generation` does
    done_slots_ahead: list[int] = field(default_factory=list)
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

    @property
    def lock(self) -> threading.RLock:
        """Two generation flows and the evolve loop update the journal from their own threads:
        hold it for a change made of several steps; `save` holds it too."""
        return _JOURNAL

    def tick(self) -> None:
        """Bring spent.wall_s up to now."""
        if self._wall_before is None:
            self._wall_before = self.spent.wall_s
        self.spent.wall_s = self._wall_before + (time.monotonic() - self._clock_start)

    def to_dict(self) -> dict:
        return {"run_id": self.run_id, "lineage_root": self.lineage_root, "generation": self.generation,
                "status": self.status, "done_slots": sorted(self.done_slots),
                "done_slots_ahead": sorted(self.done_slots_ahead), "spent": self.spent.to_dict(),
                "since_commit": self.since_commit, "directions": list(self.directions),
                "stop_reason": self.stop_reason, "started": self.started, "updated": _now()}

    @classmethod
    def from_dict(cls, d: dict) -> "RunState":
        return cls(run_id=d["run_id"], lineage_root=d["lineage_root"], generation=int(d["generation"]),
                   status=d.get("status", "running"), done_slots=list(d.get("done_slots", [])),
                   done_slots_ahead=list(d.get("done_slots_ahead", [])),
                   spent=Spent.from_dict(d.get("spent", {})), since_commit=int(d.get("since_commit", 0)),
                   directions=list(d.get("directions", [])), stop_reason=d.get("stop_reason", ""),
                   started=d.get("started", ""), updated=d.get("updated", ""))

    # ------------------------------------------------------------ progress
    def done_in(self, generation: int) -> list[int]:
        """The finished slots of a generation in flight (`generation` or the one after it)."""
        if generation == self.generation:
            return self.done_slots
        if generation == self.generation + 1:
            return self.done_slots_ahead
        raise ValueError(f"generation {generation} is not in flight (the journal holds "
                         f"{self.generation} and {self.generation + 1})")

    def finish_slot(self, slot: int, generation: int | None = None) -> None:
        """A slot of `generation` (default: the oldest in flight) is finished."""
        with self.lock:
            done = self.done_in(self.generation if generation is None else generation)
            if slot not in done:
                done.append(slot)

    def next_generation(self) -> None:
        """The oldest generation finished: the one after it, maybe half done, is the oldest now."""
        with self.lock:
            self.generation += 1
            self.done_slots, self.done_slots_ahead = self.done_slots_ahead, []
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
    with state.lock:  # one writer at a time: both generations in flight save after each slot
        state.tick()
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(state.to_dict(), indent=2) + "\n")


def already_tried(attempts: list[dict], sha256: str, device: str, suite: str | None) -> dict | None:
    """The attempt record that already evaluated this exact source on this device
    and suite, or None (avo.population.Population.tried, for attempt dicts)."""
    from avo.population import Population

    hit = Population.from_records(attempts).tried(sha256, device, suite)
    return hit.record if hit is not None else None
