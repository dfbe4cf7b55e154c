"""The lineage: the ordered, committed versions of the kernel, and every attempt.

Layout under the root (e.g. kernel_src/attention/lineage/), all plain files that
git keeps and DVC hashes:

    v0000/kernel.py       the seed's source
    v0000/version.json    parent, operator, technique, evaluation, time, note
    v0001/...
    attempts.jsonl        one line per evaluated candidate, committed or not
    sources/<sha256>.py   the source of every attempt (committed or not), by its hash, or
    sources/<sha256>.delta.json  the lines it changed in its parent version, when that is
                          much smaller (a knob move: ~300 bytes instead of ~50 KB)
    .gitignore            keeps the lock file and unfinished writes out of git

A version folder is written under a temporary name and renamed into place, so
a reader sees a version completely or not at all; commits serialise on a lock
file (see avo.atomic_files). The commit rule is avo.commit_rule.should_commit.
Plain Python: no torch, no MLflow.
"""
from __future__ import annotations

import difflib
import json
import os
import re
import shutil
import sys
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from avo.atomic_files import TMP_PREFIX, append_line, atomic_write, file_lock, fsync_dir, write_file_durably
from avo.candidate import Candidate, Technique, source_sha256
from avo.commit_rule import Best, Rule, decide, on_cpu
from avo.population import attempt_record, model_cost  # noqa: F401  (model_cost: re-exported)
from avo.records import EvalResult

VERSION_DIR = re.compile(r"^v(\d{4,})$")
KERNEL_FILE = "kernel.py"
META_FILE = "version.json"
ATTEMPTS_FILE = "attempts.jsonl"
LOCK_FILE = ".lock"
SOURCES_DIR = "sources"  # every attempted source, by hash: an attempt can be reproduced
DELTA_SUFFIX = ".delta.json"  # a source kept as the lines it changed in its parent version
SCHEMA = 1


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
    origin: dict | None = None  # {"lineage", "version"}: the version of another lineage it started from

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
            **({"origin": self.origin} if self.origin else {}),
        }

    @classmethod
    def from_dict(cls, d: dict, source: str) -> "Version":
        return cls(number=d["number"], source=source, parent=d.get("parent"),
                   operator=d["operator"], technique=Technique.from_dict(d.get("technique", {})),
                   result=EvalResult.from_dict(d["result"]), created=d.get("created", ""),
                   note=d.get("note", ""), generation=d.get("generation", 0),
                   meta=d.get("meta", {}), origin=d.get("origin"))


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

    def best_for(self, result: EvalResult, rule: Rule | None = None) -> Best | None:
        """The version `result` must beat under the commit rule. GPU: the best comparable
        geomean. CPU: the comparable version with the highest modelled figure, by the
        candidate's model (a version recorded without one, or by another model, is
        modelled from its source with `rule.model_of` when given)."""
        if not on_cpu(result):
            v = self.best(comparable_to=result)
            return None if v is None else Best(v.number, v.geomean, v.sha256, v.result.model)
        pool = [v for v in self.versions() if v.result.ok and comparable(v.result, result)]
        if not pool:
            return None
        want = (result.model or {}).get("model")
        scored = []
        for v in pool:
            model = v.result.model or {}
            if (not model or model.get("model") != want) and rule is not None and rule.model_of is not None:
                model = rule.model_of(v.source) or model
            figure = model.get("modelled_tflops")
            scored.append((figure if isinstance(figure, (int, float)) else -1.0, -v.number, v, model))
        figure, _, v, model = max(scored, key=lambda t: t[:2])
        return Best(v.number, v.geomean, v.sha256, model if figure >= 0 else {})

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
    def commit(self, candidate: Candidate, result: EvalResult, rule: Rule | float | None = None,
               note: str = "", *, margin: float | None = None) -> CommitDecision:
        """Apply the commit rule (avo.commit_rule.Rule; a bare number, or `margin`, is the
        margin with no confirmation required); write the version if it passes; record the attempt."""
        if not isinstance(rule, Rule):
            number = rule if rule is not None else margin
            if number is None:
                raise TypeError("commit() needs the rule (avo.commit_rule.Rule) or a margin")
            rule = Rule(margin=number, model_margin=number)
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
            ok, reason = decide(result, self.best_for(result, rule), rule)
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
                    meta=_jsonable(candidate.meta), origin=candidate.origin))
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
                              technique=candidate.technique, result=result, created=_now(), note=note,
                              origin=candidate.origin)
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
        """Short text for prompts: the seed, the best and the latest versions (avo.population renders it)."""
        from avo.population import versions_summary

        return versions_summary(self.versions(), max_versions)

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
        measured = None
        if parent is not None and not candidate.technique.measured:
            measured = measured_effect(result, parent.result)
        self._keep_source(candidate)  # first: a line in attempts.jsonl always has its source
        rec = attempt_record(candidate, result, decision, measured)
        append_line(self.root / ATTEMPTS_FILE, json.dumps(rec, allow_nan=True))

    def _keep_source(self, candidate: Candidate) -> None:
        """The candidate's source under sources/, by its hash: as the lines it changed in
        its parent version where that is under a quarter of the whole, else whole."""
        folder, sha = self.root / SOURCES_DIR, candidate.sha256
        if (folder / f"{sha}.py").is_file() or (folder / f"{sha}{DELTA_SUFFIX}").is_file():
            return
        folder.mkdir(exist_ok=True)
        parent = self.get(candidate.parent) if candidate.parent is not None and self.has(candidate.parent) else None
        if parent is not None:
            delta = json.dumps({"parent": parent.number, "parent_sha256": parent.sha256,
                                "changes": line_changes(parent.source, candidate.source)})
            if len(delta) < len(candidate.source) // 4:
                atomic_write(folder / f"{sha}{DELTA_SUFFIX}", delta + "\n")
                return
        atomic_write(folder / f"{sha}.py", candidate.source)

    def source_of(self, sha256: str) -> str | None:
        """The source an attempt evaluated (attempts.jsonl's source_sha256), if kept;
        a delta is applied to its parent version and checked against the hash."""
        folder = self.root / SOURCES_DIR
        whole = folder / f"{sha256}.py"
        if whole.is_file():
            return whole.read_text(encoding="utf-8")
        delta = folder / f"{sha256}{DELTA_SUFFIX}"
        if not delta.is_file():
            return None
        d = json.loads(delta.read_text(encoding="utf-8"))
        parent = self.get(d["parent"]) if self.has(d["parent"]) else None
        if parent is None or parent.sha256 != d["parent_sha256"]:
            return None
        source = apply_line_changes(parent.source, d["changes"])
        return source if source_sha256(source) == sha256 else None


def line_changes(old: str, new: str) -> list:
    """[[start, end, lines], ...]: old's lines start:end replaced by `lines` make new."""
    a, b = old.splitlines(keepends=True), new.splitlines(keepends=True)
    ops = difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()
    return [[i1, i2, b[j1:j2]] for tag, i1, i2, j1, j2 in ops if tag != "equal"]


def apply_line_changes(old: str, changes: list) -> str:
    a, out, at = old.splitlines(keepends=True), [], 0
    for start, end, lines in changes:
        out += a[at:start] + list(lines)
        at = end
    return "".join(out + a[at:])


def seed_candidate(seed_path: str | Path) -> Candidate:
    """The seed kernel as a candidate: v0's only possible source (with its origin
    when the seed is another lineage's version, as in `avo transfer`)."""
    seed_path = Path(seed_path)
    return Candidate(source=seed_path.read_text(encoding="utf-8"), parent=None, operator="seed",
                     technique=Technique(name="seed", why=f"seed kernel {seed_path.name}"),
                     origin=origin_of(seed_path))


def origin_of(kernel: str | Path) -> dict | None:
    """{"lineage": its root, "version": n} when `kernel` is a lineage version's
    kernel.py (vNNNN/kernel.py beside a version.json), else None."""
    folder = Path(kernel).resolve().parent
    m = VERSION_DIR.match(folder.name)
    if not (m and Path(kernel).name == KERNEL_FILE and (folder / META_FILE).is_file()):
        return None
    root = folder.parent
    try:
        root = root.relative_to(Path.cwd().resolve())
    except ValueError:
        pass  # outside the working directory: the absolute path
    return {"lineage": root.as_posix(), "version": int(m.group(1))}


def parse_version(text: str) -> int:
    """'3', 'v3' or 'v0003' -> 3; ValueError otherwise."""
    m = re.fullmatch(r"v?(\d+)", text.strip())
    if not m:
        raise ValueError(f"not a version: {text!r} (expected e.g. 3 or v3)")
    return int(m.group(1))


def _jsonable(meta: dict) -> dict:
    try:
        return json.loads(json.dumps(meta, default=str))
    except (TypeError, ValueError):
        print("avo: warning: candidate meta is not JSON-serialisable; not stored", file=sys.stderr)
        return {}
