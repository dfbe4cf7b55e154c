"""Budgets for the evolve loop: when to stop. Plain Python, no clocks inside.

A run stops at the first limit reached: generations, wall time, GPU-minutes
(evaluation time on GPUs), LLM tokens or dollars (reported by the operator in
`Candidate.meta["tokens"]` / `meta["cost_usd"]`), or when a target is met (a
geomean ratio to cuDNN, or a geomean in TFLOPS). `None` means "no limit".
What has been spent (`Spent`) is persisted with the run state, so a resumed
run keeps counting where the interrupted one stopped.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Budget:
    generations: int | None = None
    wall_minutes: float | None = None
    gpu_minutes: float | None = None
    tokens: int | None = None
    dollars: float | None = None
    target_ratio_cudnn: float | None = None  # stop once the best geomean ratio to cuDNN reaches this
    target_tflops: float | None = None  # stop once the best geomean reaches this (same device kind)


@dataclass
class Spent:
    generations: int = 0  # generations finished in this run
    wall_s: float = 0.0  # wall time of this run, summed over its invocations
    gpu_s: float = 0.0  # evaluation time on GPUs
    tokens: int = 0
    dollars: float = 0.0

    def add_candidate(self, meta: dict, eval_wall_s: float, on_gpu: bool) -> None:
        """Charge one evaluated candidate: its operator's LLM use and its GPU time."""
        self.tokens += int(meta.get("tokens", 0) or 0)
        self.dollars += float(meta.get("cost_usd", 0.0) or 0.0)
        if on_gpu:
            self.gpu_s += float(eval_wall_s or 0.0)

    def to_dict(self) -> dict:
        return {"generations": self.generations, "wall_s": self.wall_s, "gpu_s": self.gpu_s,
                "tokens": self.tokens, "dollars": self.dollars}

    @classmethod
    def from_dict(cls, d: dict) -> "Spent":
        return cls(**{k: d[k] for k in ("generations", "wall_s", "gpu_s", "tokens", "dollars") if k in d})


def exhausted(budget: Budget, spent: Spent) -> str | None:
    """The first limit reached, as a one-line reason; None while budget is left."""
    checks = [
        (budget.generations, spent.generations, "generations", lambda x: f"{x:g}"),
        (budget.wall_minutes, spent.wall_s / 60, "wall-clock minutes", lambda x: f"{x:.1f}"),
        (budget.gpu_minutes, spent.gpu_s / 60, "GPU-minutes", lambda x: f"{x:.1f}"),
        (budget.tokens, spent.tokens, "LLM tokens", lambda x: f"{x:g}"),
        (budget.dollars, spent.dollars, "dollars", lambda x: f"{x:.2f}"),
    ]
    for limit, used, what, fmt in checks:
        if limit is not None and used >= limit:
            return f"budget spent: {fmt(used)} of {fmt(limit)} {what}"
    return None


def target_met(budget: Budget, best_geomean: float, best_ratio_cudnn: float | None) -> str | None:
    """A one-line reason when the best committed version meets a target."""
    if budget.target_ratio_cudnn is not None and best_ratio_cudnn is not None \
            and best_ratio_cudnn >= budget.target_ratio_cudnn:
        return f"target met: {best_ratio_cudnn:.3f}x cuDNN >= {budget.target_ratio_cudnn:g}x"
    if budget.target_tflops is not None and best_geomean >= budget.target_tflops:
        return f"target met: geomean {best_geomean:.4g} >= {budget.target_tflops:g} TFLOPS"
    return None


def left(budget: Budget, spent: Spent) -> dict[str, float]:
    """What is left of each set limit (for the progress display)."""
    out = {}
    if budget.generations is not None:
        out["generations"] = budget.generations - spent.generations
    if budget.wall_minutes is not None:
        out["minutes"] = budget.wall_minutes - spent.wall_s / 60
    if budget.gpu_minutes is not None:
        out["gpu_minutes"] = budget.gpu_minutes - spent.gpu_s / 60
    if budget.tokens is not None:
        out["tokens"] = budget.tokens - spent.tokens
    if budget.dollars is not None:
        out["dollars"] = budget.dollars - spent.dollars
    return out
