"""The commit step of a generation: rule, lineage, git, MLflow — in that order.

The lineage write comes first and is the only step that must succeed; the git
commit and the MLflow run are by-products that report failures as warnings
(GitOutcome, Tracker.warnings) and never undo or block a lineage commit.
"""
from __future__ import annotations

import sys
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path

from avo import cost_basis
from avo.candidate import Candidate
from avo.commit_rule import Rule, commit_margin
from avo.config import LineageConfig
from avo.git_commit import GitOutcome, commit_paths, should_git_commit
from avo.lineage import CommitDecision, Lineage, unified_diff
from avo.records import EvalResult


# One promote at a time in a process: two generations in flight (flows/evolve.py) commit from
# their own threads, and a git commit of the lineage must not meet another one at git's index.
# (Lineage.commit's flock already keeps version numbers apart, across processes too.)
_PROMOTING = threading.Lock()


@dataclass(frozen=True)
class Promotion:
    decision: CommitDecision
    margin: float  # the margin the rule applied (avo.commit_rule.commit_margin)
    git: GitOutcome | None = None  # None: no git commit was asked for
    warnings: tuple[str, ...] = field(default=())
    diff: str = ""  # the candidate against its parent (for the tracker), "" without one


def rule_for(cfg: LineageConfig, problem: str | Path | None, require_confirm: bool | None = None) -> Rule:
    """The commit rule params.yaml's lineage section sets, with the problem's cost model
    for versions recorded before their modelled figure was."""
    return Rule(margin=cfg.noise_margin_cuda, model_margin=cfg.model_margin_cpu,
                require_confirm=cfg.require_confirm_cuda if require_confirm is None else require_confirm,
                model_of=cost_basis.model_lookup(problem) if problem is not None else None)


def promote(lineage: Lineage, candidate: Candidate, result: EvalResult, cfg: LineageConfig,
            tracker=None, note: str = "", problem: str | Path | None = None,
            require_confirm: bool | None = None) -> Promotion:
    """Commit `candidate` if the rule allows; record the attempt; git-commit it;
    log it when a tracker is given. The one commit step of the evolve flow,
    `avo lineage add` and `avo lineage init` (a candidate with operator "seed"
    becomes v0 without the rule, or raises LineageError).

    `tracker` is an avo.tracking.Tracker (or None: the flow logs in its own task,
    through `log`). The rule's settings are params.yaml's lineage section
    (avo.commit_rule). lineage.require_confirm_cuda binds the search's candidates; a
    hand-added kernel (operator "human", `avo lineage add`, whose evaluation runs no
    confirmation today) is vouched for by its author and may commit on its geomean
    (its reason says "basis geomean"); a confirmation it does carry is still checked.
    `require_confirm` overrides both. `problem`: the problem module, for the CPU basis
    (default: the problem.py above the lineage root, else attention's). A CPU result
    without a modelled figure gets one here, from the source, which is only parsed.
    """
    with _PROMOTING:
        return _promote(lineage, candidate, result, cfg, tracker, note, problem, require_confirm)


def _promote(lineage: Lineage, candidate: Candidate, result: EvalResult, cfg: LineageConfig, tracker, note: str,
             problem: str | Path | None, require_confirm: bool | None) -> Promotion:
    problem = problem or cost_basis.problem_for_lineage(lineage.root)
    cost_basis.attach_model(result, candidate.source, problem)
    if require_confirm is None and candidate.operator == "human":
        require_confirm = False
    rule = rule_for(cfg, problem, require_confirm)
    margin = commit_margin(result, rule)
    if candidate.operator == "seed" and candidate.parent is None:
        v0 = lineage.start(candidate, result, note=note or f"seed: {candidate.technique.why}")
        decision, diff = CommitDecision(True, v0.number, "seed"), ""
    else:
        diff = ""
        if candidate.parent is not None and lineage.has(candidate.parent):
            diff = unified_diff(lineage.get(candidate.parent).source, candidate.source,
                                f"v{candidate.parent}/kernel.py", "candidate/kernel.py")
        decision = lineage.commit(candidate, result, rule, note=note)

    warnings: list[str] = []
    git = None
    if decision.committed and should_git_commit(cfg.git_commit, lineage.root):
        git = commit_paths([lineage.root], _git_message(candidate, result, decision, note))
        if not git.committed and git.detail != "nothing to commit in the lineage":
            warnings.append(f"avo: warning: v{decision.version} is in the lineage but not in git: "
                            f"{git.detail}")
            print(warnings[-1], file=sys.stderr)
    promotion = Promotion(decision, margin, git, tuple(warnings), diff)
    if tracker is not None:
        promotion = log(tracker, candidate, result, promotion)
    return promotion


def log(tracker, candidate: Candidate, result: EvalResult, promotion: Promotion) -> Promotion:
    """The candidate's MLflow run (a broken store only warns); its warnings join the promotion's."""
    before = len(tracker.warnings)
    tracker.log_candidate(candidate, result, promotion.decision, diff=promotion.diff, margin=promotion.margin)
    return replace(promotion, warnings=promotion.warnings + tuple(tracker.warnings[before:]))  # printed already


def _git_message(candidate: Candidate, result: EvalResult, decision: CommitDecision, note: str) -> str:
    t = candidate.technique
    parent = f"v{candidate.parent}" if candidate.parent is not None else "none"
    lines = [f"lineage v{decision.version}: {t.name} ({candidate.operator}, from {parent})", "",
             f"geomean {result.geomean_tflops:.4g} TFLOPS on {result.env.get('gpu') or result.device}"
             f" (suite {result.suite}); {decision.reason}"]
    if t.expected:
        lines.append(f"expected: {t.expected}")
    if t.why:
        lines.append(f"why: {t.why}")
    if note:
        lines.append(f"note: {note}")
    return "\n".join(lines)
