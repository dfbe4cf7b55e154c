"""The commit rule: when a candidate becomes a lineage version. Pure functions.

AVO's rule, made stricter: the candidate must be correct on every correctness
shape (status "ok") and its geomean must beat the best committed geomean by a
noise margin, geomean >= best * (1 + margin). Without the margin, timing noise
alone would let equal kernels pile up as "improvements". The margin comes from
measured run-to-run spread (margin_from_spread) and lives in params.yaml.
"""
from __future__ import annotations

import math
import statistics
from typing import Sequence

from avo.records import EvalResult


def should_commit(result: EvalResult, best_geomean: float | None, margin: float) -> tuple[bool, str]:
    """(commit?, one-line reason). best_geomean None: nothing comparable committed yet."""
    if not (margin >= 0 and math.isfinite(margin)):
        raise ValueError(f"noise margin must be a finite number >= 0, got {margin!r}")
    if result.status != "ok":
        why = f": {result.message}" if result.message else ""
        return False, f"status {result.status}{why}"
    if not result.timings:
        return False, "no timed configurations"
    if result.flags:  # e.g. "overfit: much faster on the suite than on the held-out shapes"
        return False, f"flagged: {result.flags[0]}"
    g = result.geomean_tflops
    if not (g > 0 and math.isfinite(g)):
        return False, f"geomean {g!r} TFLOPS is not a positive number"
    if best_geomean is None:
        return True, f"first comparable version: geomean {g:.4g} TFLOPS"
    threshold = best_geomean * (1.0 + margin)
    # geomeans come through exp(mean(log)): allow float rounding at the boundary
    passed = g >= threshold * (1.0 - 1e-12)
    verdict = ">=" if passed else "<"
    text = (f"geomean {g:.4g} {verdict} best {best_geomean:.4g} x (1 + {margin:g}) "
            f"= {threshold:.4g} TFLOPS")
    return passed, text


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
