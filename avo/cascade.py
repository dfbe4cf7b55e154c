"""The evaluation cascade's decisions: pure functions, no torch, no processes.

A candidate climbs stages and stops at the first it cannot pass, so that GPU time
goes to candidates that can still win:

    quick    compile + correctness on the check shapes (every candidate)
    screen   a few representative suite configurations, timed as in the full suite;
             stops here unless its screen geomean reaches the gate (the best's own
             screen geomean, less a slack for noise)
    full     the rest of the suite and the held-out shapes
    confirm  only when the full suite beats the best: candidate and best re-measured
             in turns on the same GPU (best, candidate, best, candidate, ...); the
             ratio and the same kernel's spread between turns decide the commit

The judge (avo/harness/judge.py) runs the stages; this module says which configs
are screened, where the gate is, whether a confirmation is due and what it found.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass

from avo.records import geomean

def screen_configs(names: list[str], size: int | None = None) -> list[str]:
    """`size` configs spread evenly over the suite's order (its first and last
    included): the suites list kinds and masks in blocks, so an even spread
    covers each block once (the AVO suite's 24: 6, one per kind and mask). None: a
    quarter of the suite, at least 3. All of them for a suite of `size` or fewer."""
    size = size or max(3, len(names) // 4)
    if len(names) <= size:
        return list(names)
    picks = [round(i * (len(names) - 1) / (size - 1)) for i in range(size)]
    return [names[i] for i in dict.fromkeys(picks)]


def gate_tflops(best_screen_tflops: list[float], slack: float) -> float | None:
    """The screen geomean a candidate must reach to go on to the full suite: the
    best's, less `slack` (the screen is short; a candidate within noise goes on).
    None when the best has no figures for the screen configs (nothing to gate on)."""
    if not best_screen_tflops or not all(t and t > 0 for t in best_screen_tflops):
        return None
    if not 0 <= slack < 1:
        raise ValueError(f"screen slack must be in [0, 1), got {slack!r}")
    return geomean(best_screen_tflops) * (1.0 - slack)


def passes_gate(screen_tflops: list[float], gate: float | None) -> tuple[bool, str]:
    g = geomean(screen_tflops)
    if gate is None:
        return True, ""
    if g >= gate * (1.0 - 1e-12):  # geomeans come through exp(mean(log)): float rounding at the boundary
        return True, ""
    return False, f"screened out: screen geomean {g:.4g} < gate {gate:.4g} TFLOPS (the best's, less the slack)"


def out_of_reach(measured: list[float], total: int, gate: float | None, peak: float) -> bool:
    """True once the screen cannot pass whatever its untimed configs do: its geomean with
    each of the (total - len(measured)) configs left at the GPU's physical peak is still
    below the gate. Sound (no honest figure exceeds the peak, and the judge rejects any
    that does), so stopping there changes no decision; it spares the GPU lock the rest of
    a slow kernel's screen (H100: a 26 TFLOPS kernel held it 22 s for its six configs)."""
    if gate is None or not measured or len(measured) >= total or peak <= 0:
        return False
    best_case = measured + [peak] * (total - len(measured))
    return geomean(best_case) < gate * (1.0 - 1e-12)


def confirmation_due(full_geomean: float, best_geomean: float | None, floor: float) -> bool:
    """A confirmation is only worth its GPU time when the full suite already says
    the candidate beats the best by the margin's floor."""
    return best_geomean is not None and full_geomean >= best_geomean * (1.0 + floor)


@dataclass(frozen=True)
class Confirmation:
    ratio: float  # median over rounds of geomean(best_ms / candidate_ms): > 1 means the candidate is faster
    spread: float  # the same kernel's relative spread between rounds (the larger of the two kernels')

    def to_dict(self) -> dict:
        return {"ratio": round(self.ratio, 5), "spread": round(self.spread, 5)}


def summarise_confirmation(best_ms: list[list[float]], candidate_ms: list[list[float]]) -> Confirmation:
    """best_ms[r][c], candidate_ms[r][c]: milliseconds per call in round r on config c."""
    if not best_ms or len(best_ms) != len(candidate_ms):
        raise ValueError("need the same number (>= 1) of rounds for best and candidate")
    ratios = [geomean([b / c for b, c in zip(br, cr)]) for br, cr in zip(best_ms, candidate_ms)]
    return Confirmation(ratio=statistics.median(ratios),
                        spread=max(relative_spread([geomean(r) for r in best_ms]),
                                   relative_spread([geomean(r) for r in candidate_ms])))


def relative_spread(values: list[float]) -> float:
    """(max - min) / median; 0 for a single value."""
    if len(values) < 2:
        return 0.0
    return (max(values) - min(values)) / statistics.median(values)
