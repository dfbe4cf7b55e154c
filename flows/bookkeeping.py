"""The generation's bookkeeping, kept out of its recipe (flows/generation.py):
after each slot, the run's journal (avo.run_state: what makes a killed run
resumable), the spent budget and the live progress events.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from avo import live
from avo.budget import exhausted
from avo.commit_rule import basis_of
from avo.errors import BudgetExceeded, OperatorUnavailable, ProposalFailed
from avo.run_state import RunState, save


@dataclass
class GenerationReport:
    generation: int
    evaluated: int = 0
    failed: int = 0
    committed: list[int] = field(default_factory=list)
    skipped: int = 0
    stopped: bool = False  # the generation did not finish all its slots


def book(outcome, promotion, report: GenerationReport, state: RunState, settings) -> None:
    """One slot's outcome (flows.generation: Evaluated, Duplicate or NotRun) into the
    report, the journal and the live display; a spent budget requests a stop."""
    from flows.generation import Duplicate, NotRun  # the outcome types live with the recipe

    cand = outcome.candidate
    if isinstance(outcome, (Duplicate, NotRun)):
        report.skipped += 1
        if isinstance(outcome, NotRun):
            report.stopped = True  # not evaluated: the slot stays open for the resumed run
        else:
            _finish(report.generation, outcome.slot, state, settings)
        live.emit("candidate", generation=report.generation, slot=outcome.slot, status="skipped",
                  technique=cand.technique.name, committed=False,
                  detail=outcome.detail if isinstance(outcome, Duplicate) else "stopping")
        return
    result, decision = outcome.result, promotion.decision
    report.evaluated += 1
    report.failed += 0 if result.ok else 1
    if decision.committed:
        report.committed.append(decision.version)
    yardstick_s = (result.env.get("yardstick_measured") or {}).get("gpu_s", 0.0)  # the best, timed on this GPU
    with state.lock:  # the other generation in flight books from its own thread
        state.spent.add_candidate(cand.meta, result.gpu_s + yardstick_s, on_gpu=result.device == "cuda")
    _finish(report.generation, outcome.slot, state, settings)
    live.emit("candidate", generation=report.generation, slot=outcome.slot, status=result.status,
              technique=cand.technique.name, committed=decision.committed, version=decision.version,
              geomean=result.geomean_tflops, detail=decision.reason, where=outcome.where,
              spent=state.spent.to_dict(), **basis_fields(result, promotion.margin))
    reason = exhausted(settings.budget, state.spent)
    if reason and "generations" not in reason:  # generations are counted by the evolve loop
        live.request_stop(reason)


def basis_fields(result, margin: float | None) -> dict:
    """What the candidate's commit stood on, for the live display (avo.commit_rule):
    basis "model" (CPU: modelled H100 TFLOPS), "confirm" or "geomean" (GPU), its
    figures, and the margin the rule applied."""
    confirm, model = result.confirm or {}, result.model or {}
    return {"basis": basis_of(result), "model_tflops": model.get("modelled_tflops"),
            "confirm_ratio": confirm.get("ratio"), "confirm_spread": confirm.get("spread"),
            "margin": margin}


def proposal_failed(error: Exception, proposal, slot: int, report: GenerationReport, state: RunState,
                    settings) -> None:
    """An evaluation that never ran because its proposal failed, sorted by type
    (avo.errors). Anything that is not a proposal's error (the harness or the
    lineage broke: not the candidate, which is a status) re-raises: the journal
    is saved, so `avo evolve` resumes from here."""
    try:
        proposal.result()
    except Exception as e:  # noqa: BLE001
        error = e
    else:
        raise error
    if isinstance(error, OperatorUnavailable) and not isinstance(error, ProposalFailed):
        raise error  # a configuration problem: every slot would fail the same way
    if isinstance(error, BudgetExceeded):  # the agent's own token/cost budget
        live.request_stop(f"budget spent: {error}")
        report.stopped = True
        return
    report.failed += 1  # one slot's proposal failed (an operator error): the other slots go on
    _finish(report.generation, slot, state, settings)
    live.emit("warning", message=f"generation {report.generation}, slot {slot}: {type(error).__name__}: {error}")


def _finish(generation: int, slot: int, state: RunState, settings) -> None:
    with state.lock:
        state.finish_slot(slot, generation)
        save(settings.state_file, state)
