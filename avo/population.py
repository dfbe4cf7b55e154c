"""What was tried: the one owner of the attempts log's meaning.

The lineage stores attempts (attempts.jsonl, one line per evaluated candidate);
this module reads them into typed `Attempt` records and answers the questions
the search asks of its history:

    pop = Population.of(lineage)          # read once per generation
    pop.tried(sha256, device, suite)      # this exact source was judged here already
    pop.since_last_commit()               # the attempts after the last commit
    pop.stagnation(generation, patience)  # the one stagnation rule (supervisors use it)
    pop.summary(20)                       # text for prompts (agents render this, never re-read files)

It also writes what an attempts.jsonl line holds (`attempt_record`) and renders the
versions as text (`versions_summary`). Plain Python and picklable: it travels to
remote workers inside a VaryContext.
"""
from __future__ import annotations

import math
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from avo.records import EvalResult

ATTEMPT_LOG_CHARS = 2000  # the end of the harness log kept per attempt


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


# How runner.py and judge.py say the judge itself died, was killed or failed (an orchestrator
# stopped badly, the harness crashed): a record with no verdict on its candidate
HARNESS_FAILURES = ("the judge ", "harness judge:")


def no_verdict(record: dict) -> bool:
    """True for a record whose judge died, was killed or failed itself: nothing was learned
    about the candidate, so it does not count as judged (its source may be judged again)."""
    return record.get("status") == "crashed" and str(record.get("message") or "").startswith(HARNESS_FAILURES)


@dataclass(frozen=True)
class Stagnation:
    triggered: bool
    reason: str  # one line; "" when not triggered


def technique_key(name: str) -> str:
    """Technique names compared loosely: 'BLOCK_N=128' == 'block-n 128'."""
    return re.sub(r"[^a-z0-9]+", "-", (name or "").lower()).strip("-")


_CLAIMS = threading.Lock()  # module-level: a Population is pickled to Dask workers, a lock is not


class Population:
    """The attempts, oldest first, and the questions asked of them."""

    def __init__(self, attempts: list[Attempt]):
        self.attempts = list(attempts)
        self.in_flight: set[tuple] = set()  # (sha256, device, suite) claimed by an evaluation not yet recorded

    @classmethod
    def of(cls, lineage) -> "Population":
        return cls.from_records(lineage.attempts())

    @classmethod
    def from_records(cls, records: list[dict]) -> "Population":
        return cls([Attempt.from_record(r) for r in records])

    def add(self, record: dict) -> None:
        """An attempt just recorded in the lineage (the flow adds each as it commits). One
        with no verdict (no_verdict) lets its claim go: the source may be judged again."""
        self.attempts.append(Attempt.from_record(record))
        if no_verdict(record):
            with _CLAIMS:
                self.in_flight.discard((record.get("source_sha256") or "", record.get("device") or "",
                                        record.get("suite")))

    def records(self) -> list[dict]:
        return [a.record for a in self.attempts]

    def before(self, generation: int) -> "Population":
        """Only earlier generations: every slot of a generation sees the same history."""
        return Population([a for a in self.attempts if a.generation < generation])

    # ------------------------------------------------------------ queries
    def claim(self, sha256: str, device: str, suite: str | None) -> bool:
        """Claim this source for one evaluation: False when it is being evaluated already
        (two slots, of one generation or of the two in flight, may propose the same source;
        only one may judge it). Claims are never let go: a judged source is recorded.
        Threads of one run share this object; a Dask worker's copy sees only its own."""
        key = (sha256, device, suite)
        with _CLAIMS:
            if key in self.in_flight:
                return False
            self.in_flight.add(key)
            return True

    def judging(self, device: str, suite: str | None) -> frozenset[str]:
        """The sources claimed on this device and suite and not yet recorded: being judged
        now (with overlapping generations, by the other generation in flight)."""
        with _CLAIMS:
            claimed = {sha for sha, d, s in self.in_flight if d == device and s == suite}
        return frozenset(sha for sha in claimed if self.tried(sha, device, suite) is None)

    def tried(self, sha256: str, device: str, suite: str | None) -> Attempt | None:
        """The attempt that already judged this exact source on this device and
        suite (a rerun would only re-measure noise), or None. A record whose judge was
        killed or failed judged nothing (no_verdict)."""
        for a in reversed(self.attempts):
            if a.source_sha256 == sha256 and a.device == device and (suite is None or a.suite == suite) \
                    and not no_verdict(a.record):
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
            why = _clip(a.why, 160)
            lines.append(f"gen {a.generation} {a.operator} from {parent} '{a.technique}': {a.describe()}"
                         + (f" ({why})" if why else ""))
        return "\n".join(lines)


# ------------------------------------------------------------ the attempts.jsonl line
def attempt_record(candidate, result, decision, measured: dict | None = None) -> dict:
    """One attempts.jsonl line (avo.candidate.Candidate, avo.records.EvalResult, the
    lineage's CommitDecision or None): enough to tell what was tried and what
    happened; the source itself is kept by its hash beside the lineage.
    `measured`: per-config ratios to the parent, when the technique has none."""
    technique = candidate.technique.to_dict()
    if measured is not None and not technique["measured"]:
        technique["measured"] = measured
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
        # the evaluation cascade: how far it went, what the GPU cost, where and when it measured
        "stage": (result.cascade or {}).get("stage"), "stopped": (result.cascade or {}).get("stopped") or "",
        "confirm_ratio": (result.confirm or {}).get("ratio"), "gpu_s": round(result.gpu_s, 3),
        "gpu_id": result.env.get("gpu_id"), "gpu_held": result.env.get("gpu_held") or [],
        # the judge's wall seconds per stage and inside timed batches: where an evaluation's time went
        "stage_s": result.env.get("stage_s") or {}, "kernel_s": result.env.get("kernel_s"),
        "judge_spare": bool(result.env.get("judge_spare")),  # its judge was started ahead of it
        # how long that judge had waited, ready, for it; the compile helpers' shapes; each compile call's seconds
        "judge_waited_s": (result.env.get("prestart") or {}).get("waited_s"),
        "helpers_warmed": (result.env.get("compile_helpers") or {}).get("warmed"),
        "compile_calls_s": [s for _, s in result.env.get("compile_calls") or []],
        # the shared-GPU guard (avo/harness/judge_sharing.py): on or why not, waits before holds,
        # holds another process shared (a first try's too, when the evaluator judged it again)
        "gpu_sharing_guard": result.env.get("gpu_sharing_guard"),
        "gpu_quiet_waits": result.env.get("gpu_quiet_waits") or [],
        "gpu_shared": result.env.get("gpu_shared") or [],
        "gpu_shared_first_try": result.env.get("gpu_shared_first_try") or [],
        # its own processes busy on the GPU outside its holds, by stage: what ran beside others' timing
        "gpu_busy_unlocked": result.env.get("gpu_busy_unlocked") or [],
        # the judge's seconds staging, running and verifying its batches, per phase (judge.py)
        "batch_s": result.env.get("batch_s") or {},
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


def _finite(x: float) -> float | None:
    return x if isinstance(x, (int, float)) and math.isfinite(x) else None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ------------------------------------------------------------ the versions, as text
def versions_summary(vs: list, max_versions: int = 12) -> str:
    """Short text for prompts: the seed, the best and the latest versions (avo.lineage.Version)."""
    from avo.lineage import comparable  # the lineage imports this module

    if not vs:
        return "Lineage: empty (no committed versions yet)."
    best = max((v for v in vs if v.result.ok), key=lambda v: (v.geomean, -v.number), default=vs[-1])
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
