"""Typed evaluation records: what the harness says about one candidate.

Errors are data: every evaluation returns an EvalResult with a status, never
None and never an exception. Records round-trip through JSON (the worker writes
one, the orchestrator, lineage, MLflow and reports read it). Plain Python only.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Literal

Status = Literal["ok", "compile_error", "incorrect", "timeout", "crashed", "rejected"]
STATUSES: tuple[str, ...] = ("ok", "compile_error", "incorrect", "timeout", "crashed", "rejected")


@dataclass
class CaseCheck:
    """One correctness check: one shape, one seed, one phase."""

    shape: str
    dtype: str
    seed: int
    phase: str  # "check" | "suite" | "refill" | "recheck"
    max_abs_err: float
    rel_err: float
    passed: bool
    reason: str = ""


@dataclass
class ConfigTiming:
    """One timed configuration of the suite, with baselines from the same run."""

    config: str
    ms: float
    tflops: float
    cudnn_tflops: float | None = None
    fa2_tflops: float | None = None
    wall_ms: float | None = None  # (older records) host-clock cross-check of the event timing
    calls: int = 0  # timed calls behind `ms`, each on fresh inputs and each verified
    spread: float | None = None  # (slowest - fastest) / median of the timed batches

    @property
    def ratio_cudnn(self) -> float | None:
        return self.tflops / self.cudnn_tflops if self.cudnn_tflops else None

    @property
    def ratio_fa2(self) -> float | None:
        return self.tflops / self.fa2_tflops if self.fa2_tflops else None


@dataclass
class EvalResult:
    status: Status
    message: str = ""  # one line: why, for anything but ok
    device: str = "cpu"  # "cuda" | "cpu"
    interpreter: bool = False  # timings are Triton-interpreter timings
    suite: str = ""
    env: dict = field(default_factory=dict)  # gpu, driver, torch, triton, cudnn, python
    checks: list[CaseCheck] = field(default_factory=list)
    timings: list[ConfigTiming] = field(default_factory=list)
    compile_stats: dict = field(default_factory=dict)
    seeds: list[int] = field(default_factory=list)
    log_tail: str = ""
    wall_s: float = 0.0
    source_sha256: str = ""
    sandbox: str = ""  # the runner's OS sandbox: namespaces | user-namespaces | none
    heldout: list[ConfigTiming] = field(default_factory=list)  # timed shapes the search never sees
    flags: list[str] = field(default_factory=list)  # warnings that bar a commit (e.g. "overfit: ...")
    # The evaluation cascade (avo/cascade.py): how far this candidate went, and why it stopped.
    # {"stage": "quick" | "screen" | "full", "stopped": "" | one line, "screen": [ConfigTiming dicts],
    #  "gate_tflops": the screen geomean it had to reach (or None)}; {} when no cascade ran.
    cascade: dict = field(default_factory=dict)
    # The confirmation re-measure (GPU, before a commit): candidate and best, interleaved on the
    # same GPU in the same judge. {"best_version": int, "best_sha256": str, "rounds": int,
    #  "configs": [names], "ratio": median over rounds of geomean(best_ms / candidate_ms),
    #  "spread": the larger relative spread (max-min)/median of either kernel's per-round
    #  geomean: the same kernel's noise in this session, "candidate_ms": [[...] per round],
    #  "best_ms": [[...] per round]}; {} when none ran.
    confirm: dict = field(default_factory=dict)
    # CPU only: the problem's deterministic cost model of the candidate (the CPU lineage's
    # commit basis, since interpreter timings are noise): {"modelled_tflops": float, "model": name}
    model: dict = field(default_factory=dict)

    # -------------------------------------------------------------- derived
    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def max_rel_err(self) -> float:
        return max((c.rel_err for c in self.checks), default=float("nan"))

    @property
    def max_abs_err(self) -> float:
        return max((c.max_abs_err for c in self.checks), default=float("nan"))

    def tflops_by_config(self) -> dict[str, float]:
        """Per-config TFLOPS; a configuration scores 0 unless the result is ok."""
        return {t.config: (t.tflops if self.ok else 0.0) for t in self.timings}

    @property
    def gpu_s(self) -> float:
        """GPU time this evaluation cost: while several are in flight on one GPU (the
        cascade's pipeline) only the judge's holds of the GPU's lock count, since
        loading and compiling overlap another's measuring; else its wall time."""
        held = self.env.get("gpu_held") if isinstance(self.env, dict) else None
        if held:
            return float(sum(max(0.0, b - a) for a, b in held))
        return float(self.wall_s or 0.0)

    @property
    def geomean_tflops(self) -> float:
        return geomean([t.tflops for t in self.timings]) if self.ok else 0.0

    @property
    def geomean_ratio_cudnn(self) -> float | None:
        r = [t.ratio_cudnn for t in self.timings]
        return geomean(r) if self.ok and r and all(r) else None

    @property
    def geomean_ratio_fa2(self) -> float | None:
        r = [t.ratio_fa2 for t in self.timings]
        return geomean(r) if self.ok and r and all(r) else None

    # ---------------------------------------------------------------- JSON
    def to_dict(self) -> dict:
        d = asdict(self)
        d["geomean_tflops"] = self.geomean_tflops
        d["geomean_ratio_cudnn"] = self.geomean_ratio_cudnn
        d["geomean_ratio_fa2"] = self.geomean_ratio_fa2
        for rows, drows in ((self.timings, d["timings"]), (self.heldout, d["heldout"])):
            for t, td in zip(rows, drows):
                td["ratio_cudnn"] = t.ratio_cudnn
                td["ratio_fa2"] = t.ratio_fa2
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=True)

    @classmethod
    def from_dict(cls, d: dict) -> "EvalResult":
        d = dict(d)
        for derived in ("geomean_tflops", "geomean_ratio_cudnn", "geomean_ratio_fa2"):
            d.pop(derived, None)
        checks = [CaseCheck(**c) for c in d.pop("checks", [])]
        timings = [_timing(t) for t in d.pop("timings", [])]
        heldout = [_timing(t) for t in d.pop("heldout", [])]
        if d.get("status") not in STATUSES:
            raise ValueError(f"unknown status {d.get('status')!r}")
        return cls(checks=checks, timings=timings, heldout=heldout, **d)

    @classmethod
    def from_json(cls, text: str) -> "EvalResult":
        return cls.from_dict(json.loads(text))


def _timing(t: dict) -> ConfigTiming:
    return ConfigTiming(**{k: v for k, v in t.items() if k not in ("ratio_cudnn", "ratio_fa2")})


def geomean(values) -> float:
    values = [v for v in values]
    if not values or any(v is None or v <= 0 for v in values):
        return 0.0
    return math.exp(sum(math.log(v) for v in values) / len(values))
