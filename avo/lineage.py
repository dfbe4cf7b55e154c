"""The lineage: the ordered, committed versions of the kernel, and every attempt.

Layout under the root (e.g. kernel_src/attention/lineage/), all plain files that
git keeps and DVC hashes:

    v0000/kernel.py       the seed's source
    v0000/version.json    parent, operator, technique, evaluation, time, note
    v0001/...
    attempts.jsonl        one line per evaluated candidate, committed or not
    .gitignore            keeps the lock file and unfinished writes out of git

A version folder is written under a temporary name and renamed into place, so
a reader sees a version completely or not at all; commits serialise on a lock
file (see avo.atomic_files). The commit rule is avo.commit_rule.should_commit.
Plain Python: no torch, no MLflow.
"""
from __future__ import annotations

import difflib
import json
import math
import os
import re
import shutil
import sys
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from avo.atomic_files import TMP_PREFIX, append_line, file_lock, fsync_dir, write_file_durably
from avo.candidate import Candidate, Technique, source_sha256
from avo.commit_rule import should_commit
from avo.records import EvalResult

VERSION_DIR = re.compile(r"^v(\d{4,})$")
KERNEL_FILE = "kernel.py"
META_FILE = "version.json"
ATTEMPTS_FILE = "attempts.jsonl"
LOCK_FILE = ".lock"
SCHEMA = 1
ATTEMPT_LOG_CHARS = 2000  # the end of the harness log kept per attempt


class LineageError(Exception):
    """A request the lineage cannot honour (unknown version, conflicting seed…)."""


@dataclass(frozen=True)
class Version:
    number: int
    source: str
    parent: int | None
    operator: str  # seed | heuristic | agent | human
    technique: Technique  # `measured` holds per-config ratios to the parent
    result: EvalResult
    created: str  # ISO 8601, UTC
    note: str = ""
    generation: int = 0
    meta: dict = field(default_factory=dict)

    @property
    def geomean(self) -> float:
        return self.result.geomean_tflops

    @property
    def name(self) -> str:
        return f"v{self.number}"

    @property
    def sha256(self) -> str:
        return source_sha256(self.source)

    def to_dict(self) -> dict:
        """version.json (the source lives beside it in kernel.py)."""
        return {
            "schema": SCHEMA, "number": self.number, "parent": self.parent,
            "operator": self.operator, "generation": self.generation,
            "technique": self.technique.to_dict(), "created": self.created, "note": self.note,
            "source_sha256": self.sha256, "geomean_tflops": self.geomean,
            "meta": self.meta, "result": self.result.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict, source: str) -> "Version":
        return cls(number=d["number"], source=source, parent=d.get("parent"),
                   operator=d["operator"], technique=Technique.from_dict(d.get("technique", {})),
                   result=EvalResult.from_dict(d["result"]), created=d.get("created", ""),
                   note=d.get("note", ""), generation=d.get("generation", 0),
                   meta=d.get("meta", {}))


@dataclass(frozen=True)
class CommitDecision:
    committed: bool
    version: int | None  # the new version's number when committed
    reason: str  # one line: why (the commit rule's words, or what was missing)


def comparable(a: EvalResult, b: EvalResult) -> bool:
    """Whether two results' TFLOPS may be compared: same device kind, interpreter
    or not, suite and GPU model. Interpreter figures never meet GPU figures."""
    return (a.device == b.device and a.interpreter == b.interpreter and a.suite == b.suite
            and a.env.get("gpu") == b.env.get("gpu"))


def measured_effect(result: EvalResult, parent: EvalResult | None) -> dict[str, float]:
    """Per configuration, TFLOPS relative to the parent (1.05 = 5% faster)."""
    if parent is None or not result.ok or not comparable(result, parent):
        return {}
    before = parent.tflops_by_config()
    return {c: t / before[c] for c, t in result.tflops_by_config().items() if before.get(c)}


def unified_diff(old: str, new: str, old_label: str, new_label: str) -> str:
    return "".join(difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                        fromfile=old_label, tofile=new_label))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Lineage:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    # ------------------------------------------------------------- reading
    def versions(self) -> list[Version]:
        if not self.root.is_dir():
            return []
        found = []
        for entry in self.root.iterdir():
            m = VERSION_DIR.match(entry.name)
            if m and (entry / META_FILE).is_file():
                found.append(self._load(entry))
        return sorted(found, key=lambda v: v.number)

    def _load(self, folder: Path) -> Version:
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        source = (folder / KERNEL_FILE).read_text(encoding="utf-8")
        return Version.from_dict(meta, source)

    def get(self, n: int) -> Version:
        folder = self._folder(n)
        if not (folder / META_FILE).is_file():
            have = ", ".join(v.name for v in self.versions()) or "none"
            raise LineageError(f"no version v{n} in {self.root} (versions: {have})")
        return self._load(folder)

    def has(self, n: int) -> bool:
        return (self._folder(n) / META_FILE).is_file()

    def best(self, comparable_to: EvalResult | None = None) -> Version | None:
        """The committed version with the highest geomean (the earliest on ties);
        with `comparable_to`, only among versions measured comparably."""
        pool = [v for v in self.versions() if v.result.ok
                and (comparable_to is None or comparable(v.result, comparable_to))]
        return max(pool, key=lambda v: (v.geomean, -v.number), default=None)

    def latest(self) -> Version | None:
        vs = self.versions()
        return vs[-1] if vs else None

    def diff(self, a: int, b: int) -> str:
        va, vb = self.get(a), self.get(b)
        return unified_diff(va.source, vb.source, f"v{a}/{KERNEL_FILE}", f"v{b}/{KERNEL_FILE}")

    def attempts(self, limit: int | None = None) -> list[dict]:
        """Attempt records, oldest first (the last `limit` ones). A line torn by
        a killed writer is skipped."""
        path = self.root / ATTEMPTS_FILE
        if not path.is_file():
            return []
        records = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict):
                records.append(rec)
        return records[-limit:] if limit else records

    # ------------------------------------------------------------- writing
    def commit(self, candidate: Candidate, result: EvalResult, margin: float,
               note: str = "") -> CommitDecision:
        """Apply the commit rule; write the version if it passes; record the attempt."""
        self._ensure_root()
        with file_lock(self.root / LOCK_FILE):
            self._sweep_unfinished()
            parent = None
            if candidate.parent is not None:
                if not self.has(candidate.parent):
                    decision = CommitDecision(False, None, f"parent v{candidate.parent} is not in the lineage")
                    self._append_attempt(candidate, result, decision)
                    return decision
                parent = self.get(candidate.parent)
            best = self.best(comparable_to=result)
            ok, reason = should_commit(result, best.geomean if best else None, margin)
            if best is not None and ok:
                reason += f" (best was v{best.number})"
            number = None
            if ok:
                number = self._next_number()
                technique = candidate.technique
                if not technique.measured:
                    technique = replace(technique, measured=measured_effect(
                        result, parent.result if parent else None))
                self._write_version(Version(
                    number=number, source=candidate.source, parent=candidate.parent,
                    operator=candidate.operator, technique=technique, result=result,
                    created=_now(), note=note, generation=candidate.generation,
                    meta=_jsonable(candidate.meta)))
            decision = CommitDecision(ok, number, reason)
            self._append_attempt(candidate, result, decision, parent)
            return decision

    def init_from_seed(self, seed_path: str | Path, result: EvalResult) -> Version:
        """Create v0 from the seed kernel (idempotent for the same seed source)."""
        seed_path = Path(seed_path)
        return self.start(seed_candidate(seed_path), result, label=str(seed_path), note=f"seed: {seed_path.name}")

    def start(self, candidate: Candidate, result: EvalResult, label: str = "the seed", note: str = "") -> Version:
        """v0 from a seed candidate (idempotent for the same source); LineageError if
        the lineage has another v0 or the seed is not correct (the attempt is recorded)."""
        source = candidate.source
        self._ensure_root()
        with file_lock(self.root / LOCK_FILE):
            self._sweep_unfinished()
            if self.has(0):
                v0 = self.get(0)
                if v0.source != source:
                    raise LineageError(f"{self.root} already has a v0 that differs from {label}")
                return v0
            if not result.ok:
                decision = CommitDecision(False, None, f"seed failed: status {result.status}: {result.message}")
                self._append_attempt(candidate, result, decision)
                raise LineageError(f"seed {label} is not correct ({result.status}: {result.message})")
            version = Version(number=0, source=source, parent=None, operator="seed",
                              technique=candidate.technique, result=result, created=_now(), note=note)
            self._write_version(version)
            self._append_attempt(candidate, result, CommitDecision(True, 0, "seed"))
            return version

    def record_attempt(self, candidate: Candidate, result: EvalResult,
                       decision: CommitDecision | None = None) -> None:
        """Append an attempt that did not go through commit() (e.g. it failed
        before evaluation finished). commit() records its own attempts."""
        self._ensure_root()
        with file_lock(self.root / LOCK_FILE):
            self._append_attempt(candidate, result, decision)

    # ------------------------------------------------------------- summaries
    def summary(self, max_versions: int = 12) -> str:
        """Short text for prompts: the seed, the best and the latest versions."""
        vs = self.versions()
        if not vs:
            return "Lineage: empty (no committed versions yet)."
        best = self.best() or vs[-1]
        keep = {vs[0].number: vs[0], best.number: best}  # the seed and the best, always
        for v in reversed(vs):  # then the most recent
            if len(keep) >= max(max_versions, 2):
                break
            keep.setdefault(v.number, v)
        shown = sorted(keep.values(), key=lambda v: v.number)
        head = (f"Lineage: {len(vs)} versions; best {best.name} at {best.geomean:.4g} TFLOPS geomean"
                f"{_ratio_text(best.result)} ({_where(best.result)}).")
        lines = [head]
        if len(shown) < len(vs):
            lines.append(f"(showing {len(shown)} of {len(vs)})")
        for v in shown:
            parent_v = next((p for p in vs if p.number == v.parent), None)
            delta = ""
            if parent_v and parent_v.geomean > 0 and comparable(v.result, parent_v.result):
                delta = f" ({(v.geomean / parent_v.geomean - 1) * 100:+.1f}% vs v{v.parent})"
            parent = f"v{v.parent}" if v.parent is not None else "-"
            line = f"{v.name} [{v.operator}, from {parent}] {v.geomean:.4g} TFLOPS{delta}: {v.technique.name}"
            if v.technique.expected:
                line += f"; expected: {v.technique.expected}"
            if v.technique.measured:
                line += f"; measured: {_measured_text(v.technique.measured)}"
            lines.append(_clip(line, 400))
        return "\n".join(lines)

    def attempts_summary(self, limit: int = 20) -> str:
        """Short text for prompts: what was tried recently (avo.population renders it)."""
        from avo.population import Population

        return Population.from_records(self.attempts(limit)).summary(limit)

    def _folder(self, n: int) -> Path:
        return self.root / f"v{n:04d}"

    def _next_number(self) -> int:
        vs = self.versions()
        return vs[-1].number + 1 if vs else 0

    def _ensure_root(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        ignore = self.root / ".gitignore"
        if not ignore.exists():
            write_file_durably(ignore, f"{LOCK_FILE}\n{TMP_PREFIX}*\n")

    def _write_version(self, version: Version) -> None:
        """Write into a temporary folder, then rename it into place (atomic)."""
        final = self._folder(version.number)
        tmp = self.root / f"{TMP_PREFIX}{final.name}.{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        write_file_durably(tmp / KERNEL_FILE, version.source)
        write_file_durably(tmp / META_FILE, json.dumps(version.to_dict(), indent=2, allow_nan=True) + "\n")
        fsync_dir(tmp)
        os.rename(tmp, final)  # fails (rather than merging) if `final` exists
        fsync_dir(self.root)

    def _sweep_unfinished(self) -> None:
        """Remove folders left by writers killed mid-write (we hold the lock)."""
        for entry in self.root.iterdir():
            if entry.name.startswith(TMP_PREFIX) and entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)

    def _append_attempt(self, candidate: Candidate, result: EvalResult,
                        decision: CommitDecision | None, parent: Version | None = None) -> None:
        rec = attempt_record(candidate, result, decision, parent)
        append_line(self.root / ATTEMPTS_FILE, json.dumps(rec, allow_nan=True))


def seed_candidate(seed_path: str | Path) -> Candidate:
    """The seed kernel as a candidate: v0's only possible source."""
    seed_path = Path(seed_path)
    return Candidate(source=seed_path.read_text(encoding="utf-8"), parent=None, operator="seed",
                     technique=Technique(name="seed", why=f"seed kernel {seed_path.name}"))


def attempt_record(candidate: Candidate, result: EvalResult, decision: CommitDecision | None,
                   parent: Version | None = None) -> dict:
    """One attempts.jsonl line: enough to tell what was tried and what happened."""
    technique = candidate.technique.to_dict()
    if parent is not None and not technique["measured"]:
        technique["measured"] = measured_effect(result, parent.result)
    return {
        "time": _now(), "generation": candidate.generation, "parent": candidate.parent,
        "operator": candidate.operator, "technique": technique,
        "source_sha256": candidate.sha256, "status": result.status, "message": result.message,
        "device": result.device, "interpreter": result.interpreter, "suite": result.suite,
        "gpu": result.env.get("gpu"), "geomean_tflops": result.geomean_tflops,
        "tflops": result.tflops_by_config(), "max_rel_err": _finite(result.max_rel_err),
        "committed": bool(decision and decision.committed),
        "version": decision.version if decision else None,
        "reason": decision.reason if decision else "",
        # for the evolution-tree page (avo.tree): evaluation time and the harness log's end
        "wall_s": round(result.wall_s, 3) if isinstance(result.wall_s, (int, float)) else None,
        "log_tail": (result.log_tail or "")[-ATTEMPT_LOG_CHARS:],
        **model_cost(candidate.meta),
    }


def model_cost(meta: dict) -> dict:
    """{"tokens", "dollars"} the operator spent on a candidate (the agent operator puts
    input_tokens, output_tokens and cost_usd in its meta); None where not recorded."""
    meta = meta if isinstance(meta, dict) else {}
    counts = [meta[k] for k in ("input_tokens", "output_tokens") if isinstance(meta.get(k), (int, float))]
    cost = meta.get("cost_usd")
    return {"tokens": sum(counts) if counts else None,
            "dollars": cost if isinstance(cost, (int, float)) else None}


def parse_version(text: str) -> int:
    """'3', 'v3' or 'v0003' -> 3; ValueError otherwise."""
    m = re.fullmatch(r"v?(\d+)", text.strip())
    if not m:
        raise ValueError(f"not a version: {text!r} (expected e.g. 3 or v3)")
    return int(m.group(1))


def _finite(x: float) -> float | None:
    return x if isinstance(x, (int, float)) and math.isfinite(x) else None


def _jsonable(meta: dict) -> dict:
    try:
        return json.loads(json.dumps(meta, default=str))
    except (TypeError, ValueError):
        print("avo: warning: candidate meta is not JSON-serialisable; not stored", file=sys.stderr)
        return {}


def _ratio_text(result: EvalResult) -> str:
    parts = []
    if result.geomean_ratio_cudnn:
        parts.append(f"{result.geomean_ratio_cudnn:.2f}x cuDNN")
    if result.geomean_ratio_fa2:
        parts.append(f"{result.geomean_ratio_fa2:.2f}x FA2")
    return f" = {', '.join(parts)}" if parts else ""


def _where(result: EvalResult) -> str:
    device = result.env.get("gpu") or result.device
    if result.interpreter:
        device += ", Triton interpreter"
    return f"{device}, suite {result.suite or '?'}"


def _measured_text(measured: dict[str, float]) -> str:
    return ", ".join(f"{c} {(r - 1) * 100:+.1f}%" for c, r in measured.items())


def _clip(text: str, n: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"
