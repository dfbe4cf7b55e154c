"""The commit rule: when a candidate becomes a lineage version. Pure functions.

AVO's rule, made stricter and noise-aware. Every candidate must be correct (status
"ok"), unflagged, timed on a GPU nothing else was busy on (env.gpu_shared), and must have finished the evaluation cascade (a result the
cascade stopped early, e.g. screened out, never commits). Then the basis depends
on where it was measured:

- GPU (suite geomean + confirmation). The suite geomean must beat the best's by the
  floor margin (params lineage.noise_margin_cuda): geomean >= best * (1 + floor). And
  the confirmation re-measure (candidate and best in turns, same judge, same GPU)
  must say it is faster by more than the noise measured in this very session:
  confirm.ratio >= 1 + max(floor, confirm.spread). With lineage.require_confirm_cuda
  (the default) a GPU result without a confirmation against the current best
  cannot commit.
- CPU (the cost model). Interpreter timings measure Python overhead and wander by
  tens of percent: they are shown, never decide. The candidate's modelled H100
  TFLOPS (avo/cost_basis.py, the problem's deterministic cost model of its knobs)
  must beat the best modelled version's: model >= best_model * (1 + model margin).
  A problem without a cost model has no CPU commit basis beyond v0.

The one-line reason starts with the basis that decided ("basis confirm: ...",
"basis model: ...", "basis geomean: ..."), so logs, MLflow and reports say it.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Callable, Sequence

from avo.records import EvalResult

_ROUNDING = 1.0 - 1e-12  # geomeans come through exp(mean(log)): allow float rounding at the boundary


@dataclass(frozen=True)
class Rule:
    """The commit rule's settings (params.yaml lineage.*)."""

    margin: float = 0.0  # GPU floor: the suite geomean's margin, and the confirmation's least margin
    model_margin: float = 0.01  # CPU: how much the modelled figure must beat the best's by
    require_confirm: bool = False  # GPU: no commit without a confirmation re-measure
    # source -> {"modelled_tflops", "model"}: for versions recorded before `model` existed
    model_of: Callable[[str], dict] | None = field(default=None, compare=False)

    def __post_init__(self):
        for name in ("margin", "model_margin"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


@dataclass(frozen=True)
class Best:
    """The version a candidate must beat, as the rule sees it."""

    version: int | None
    geomean: float
    sha256: str = ""
    model: dict = field(default_factory=dict)  # its modelled figure (the CPU basis)


def on_cpu(result: EvalResult) -> bool:
    """Interpreter timings, or any result not measured on a GPU: the CPU basis applies."""
    return result.interpreter or result.device != "cuda"


def should_commit(result: EvalResult, best_geomean: float | None, margin: float) -> tuple[bool, str]:
    """(commit?, one-line reason) against a best known only by its geomean, without
    a confirmation requirement: the GPU rule's geomean part (and the CPU rule, which
    then has no modelled best to compare with). `decide` is the whole rule."""
    best = None if best_geomean is None else Best(None, best_geomean)
    return decide(result, best, Rule(margin=margin, model_margin=margin))


def decide(result: EvalResult, best: Best | None, rule: Rule) -> tuple[bool, str]:
    """(commit?, one-line reason). best None: nothing comparable committed yet."""
    stopped = (result.cascade or {}).get("stopped")
    if stopped:
        return False, f"stopped at the {result.cascade.get('stage') or '?'} stage: {stopped}"
    if result.status != "ok":
        why = f": {result.message}" if result.message else ""
        return False, f"status {result.status}{why}"
    if result.flags:  # e.g. "overfit: much faster on the suite than on the held-out shapes"
        return False, f"flagged: {result.flags[0]}"
    shared = (result.env or {}).get("gpu_shared")
    if shared:  # timed while another process ran on the GPU (avo/harness/gpu_activity.py)
        return False, f"timed on a shared GPU: {shared[0].get('when', '')}, busy pids {', '.join(shared[0].get('pids', {}))}"
    if not result.timings:
        return False, "no timed configurations"
    g = result.geomean_tflops
    if not (g > 0 and math.isfinite(g)):
        return False, f"geomean {g!r} TFLOPS is not a positive number"
    if best is None and not on_cpu(result) and (result.env or {}).get("yardstick"):
        # no version of this GPU model and suite, but the search has a best elsewhere: the
        # orchestrator timed it on this GPU (avo/evaluator.py writes env.yardstick after the
        # judge returns; the judged process cannot). Beat it there, or nothing commits
        best = yardstick_here(result)
        if best is None:
            y = result.env["yardstick"]
            return False, (f"basis geomean: v{y.get('version')}, the best, could not be timed on this GPU "
                           f"model and suite, and the lineage has no version of them: nothing commits here "
                           f"until it is")
    if best is None:
        return True, f"first comparable version: geomean {g:.4g} TFLOPS"
    return _cpu(result, best, rule) if on_cpu(result) else _gpu(result, best, rule)


def yardstick_here(result: EvalResult) -> Best | None:
    """The search's best as the orchestrator timed it on the candidate's GPU and suite
    (env.yardstick.here_geomean), if it could."""
    y = result.env.get("yardstick") or {}
    here = y.get("here_geomean")
    if not (isinstance(here, (int, float)) and here > 0 and math.isfinite(here)):
        return None
    return Best(y.get("version"), float(here), y.get("sha256") or "")


def _cpu(result: EvalResult, best: Best, rule: Rule) -> tuple[bool, str]:
    informational = f"; interpreter geomean {result.geomean_tflops:.4g} (informational)"
    mine = (result.model or {}).get("modelled_tflops")
    if mine is None:
        return False, ("basis model: none, this problem has no cost model, so nothing commits on CPU "
                       "after v0" + informational)
    theirs = (best.model or {}).get("modelled_tflops")
    name = f"v{best.version}" if best.version is not None else "the best"
    if theirs is None:
        return False, f"basis model: {name} has no modelled figure to compare with" + informational
    if (best.model.get("model") or "") != (result.model.get("model") or ""):
        return False, (f"basis model: {name} was modelled by {best.model.get('model')!r}, this candidate by "
                       f"{result.model.get('model')!r}" + informational)
    threshold = theirs * (1.0 + rule.model_margin)
    passed = mine >= threshold * _ROUNDING
    verdict = ">=" if passed else "<"
    return passed, (f"basis model: {mine:.4g} {verdict} {theirs:.4g} ({name}) x {1 + rule.model_margin:g} "
                    f"modelled H100 TFLOPS" + informational)


def _gpu(result: EvalResult, best: Best, rule: Rule) -> tuple[bool, str]:
    g = result.geomean_tflops
    threshold = best.geomean * (1.0 + rule.margin)
    name = f"v{best.version}" if best.version is not None else "best"
    passed = g >= threshold * _ROUNDING
    geo = (f"geomean {g:.4g} {'>=' if passed else '<'} {name} {best.geomean:.4g} x (1 + {rule.margin:g}) "
           f"= {threshold:.4g} TFLOPS")
    confirm = result.confirm or {}
    if not passed:
        return False, f"basis geomean: {geo}"
    if not confirm:
        if rule.require_confirm:
            return False, (f"basis confirm: no confirmation re-measure against {name} "
                           f"(lineage.require_confirm_cuda); {geo}")
        return True, f"basis geomean: {geo}"
    against = confirm.get("best_version")
    if best.version is not None and against != best.version:
        return False, f"basis confirm: re-measured against v{against}, but the best is now {name}; {geo}"
    if best.sha256 and confirm.get("best_sha256") and confirm["best_sha256"] != best.sha256:
        return False, f"basis confirm: re-measured against another source than {name}'s; {geo}"
    ratio, spread = confirm.get("ratio"), confirm.get("spread")
    if not (isinstance(ratio, (int, float)) and ratio > 0 and math.isfinite(ratio)):
        return False, f"basis confirm: no usable ratio ({ratio!r}); {geo}"
    spread = spread if isinstance(spread, (int, float)) and math.isfinite(spread) and spread >= 0 else None
    margin = commit_margin(result, rule)
    source = "from spread" if spread is not None and spread > rule.margin else "floor"
    passed = ratio >= (1.0 + margin) * _ROUNDING
    return passed, (f"basis confirm: {ratio:.4g}x {name} over {confirm.get('rounds', '?')} interleaved rounds "
                    f"{'>=' if passed else '<'} 1 + {margin:.3g} (margin {source}; spread "
                    f"{'?' if spread is None else f'{spread:.3g}'}, floor {rule.margin:g}); {geo}")


def commit_margin(result: EvalResult, rule: Rule) -> float:
    """The margin the rule applies to `result`: CPU the model margin; GPU the floor,
    raised to the confirmation's measured spread of the same kernel in this session."""
    if on_cpu(result):
        return rule.model_margin
    spread = (result.confirm or {}).get("spread")
    if isinstance(spread, (int, float)) and math.isfinite(spread) and spread > rule.margin:
        return float(spread)
    return rule.margin


def basis_of(result: EvalResult) -> str:
    """Which figure decides a result's commit: "model" (CPU), "confirm" or "geomean" (GPU)."""
    if on_cpu(result):
        return "model"
    return "confirm" if result.confirm else "geomean"


def margin_from_spread(geomeans: Sequence[float], floor: float = 0.0) -> float:
    """A noise margin from repeated measurements of the same kernel.

    (max - min) / median: a rerun of an unchanged kernel lands inside this band,
    so a candidate must clear it to count as faster. `floor` keeps a minimum.
    """
    values = [g for g in geomeans if g and g > 0 and math.isfinite(g)]
    if len(values) < 2:
        raise ValueError("need at least two positive measurements to estimate spread")
    spread = (max(values) - min(values)) / statistics.median(values)
    return max(floor, spread)
