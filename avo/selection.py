"""Parent selection: which committed versions the next generation varies.

Half the slots (rounded up) start from the best version — exploitation, as in
AVO's single lineage; the others from a few diverse ancestors, the runners-up
by geomean, drawn with probability proportional to their rank so a strong
older branch gets a second look. Only versions measured on the same kind of
device and suite compete (an interpreter figure never meets a GPU figure);
when none is, the latest version is the parent. Deterministic for a given rng.
Plain Python.
"""
from __future__ import annotations

import random
from typing import Callable, Sequence

from avo.lineage import Version


def comparable_versions(versions: Sequence[Version], device: str, suite: str | None) -> list[Version]:
    """Correct versions measured on `device` (and `suite`, when given)."""
    return [v for v in versions if v.result.ok and v.result.device == device
            and (suite is None or v.result.suite == suite)]


def select_parents(versions: Sequence[Version], n: int, rng: random.Random,
                   device: str = "cpu", suite: str | None = None, diverse: int = 3,
                   score: Callable[[Version], float] | None = None) -> list[int]:
    """Version numbers for n slots: slot 0 (and half of all slots) the best,
    the rest drawn from the next `diverse` versions, ranked by `score` (default:
    geomean; on a CPU the commit basis, the modelled figure, since interpreter
    timings are noise)."""
    if not versions:
        raise ValueError("the lineage is empty: evaluate and commit the seed first")
    pool = comparable_versions(versions, device, suite)
    if not pool:
        return [versions[-1].number] * n
    score = score or (lambda v: v.geomean)
    ranked = sorted(pool, key=lambda v: (-score(v), v.number))
    best, others = ranked[0], ranked[1:1 + diverse]
    n_best = (n + 1) // 2
    parents = [best.number] * n_best
    weights = [len(others) - i for i in range(len(others))]  # rank-proportional
    for _ in range(n - n_best):
        parents.append(rng.choices(others, weights)[0].number if others else best.number)
    return parents
