"""The supervisor's directions, persisted next to the lineage (directions.json).

The supervisor (agents/supervisor.py) writes them when the search stagnates;
every operator reads them at the next select (VaryContext.directions), the agent
as the first thing in its task, the heuristic operator as a hint to widen.
Plain Python, one small JSON file written atomically.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from avo.atomic_files import atomic_write

DIRECTIONS_FILE = "directions.json"


@dataclass(frozen=True)
class Directions:
    directions: list[str]  # what the next proposals should try, most promising first
    avoid: list[str] = field(default_factory=list)  # what to stop trying, with the reason
    rationale: str = ""  # what the trajectory shows
    trigger: str = ""  # why the supervisor ran (the stagnation rule's words)
    generation: int = 0  # the generation after which it ran
    author: str = ""  # the model, or "rules" without one
    written: str = ""  # ISO 8601, UTC

    def as_prompt_lines(self) -> list[str]:
        return list(self.directions) + [f"avoid: {a}" for a in self.avoid]


def read_directions(lineage_root: str | Path) -> Directions | None:
    path = Path(lineage_root) / DIRECTIONS_FILE
    if not path.is_file():
        return None
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, OSError):
        return None
    known = Directions.__dataclass_fields__
    return Directions(**{k: v for k, v in d.items() if k in known})


def write_directions(lineage_root: str | Path, directions: Directions) -> Path:
    path = Path(lineage_root) / DIRECTIONS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    if not directions.written:
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        directions = Directions(**{**asdict(directions), "written": stamp})
    atomic_write(path, json.dumps(asdict(directions), indent=2) + "\n")
    return path
