"""One generation as a Prefect flow: select -> vary xN -> evaluate -> commit -> log.

    select    parents for the generation's open slots (avo.selection), one context each
    vary      the operator proposes a candidate per slot; all slots at once (CPU, LLM calls)
    evaluate  the harness judges each candidate in its own subprocess, one at a time
              per GPU (avo.gpu_pool leases a GPU id -> CUDA_VISIBLE_DEVICES); a source
              already evaluated on this device is not evaluated again
    commit    as each evaluation finishes: the commit rule, the lineage, git (avo.promotion)
    log       the candidate's MLflow run (avo.tracking; a broken store only warns)

Proposals overlap evaluations: evaluate tasks are submitted on the vary futures,
so a slot is judged as soon as its proposal exists. After each candidate the
run's journal is saved (avo.run_state), which is what makes a killed run resumable.
With a Dask address the vary and evaluate tasks run on that cluster
(prefect-dask's DaskTaskRunner); select, commit and log stay in this process.
"""
from __future__ import annotations

import os
import random
import socket
from dataclasses import dataclass, field

import flows  # noqa: F401  (Prefect defaults, before prefect is imported)
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed

from avo import gpu_pool, live
from avo.budget import exhausted
from avo.candidate import Candidate
from avo.errors import BudgetExceeded, OperatorUnavailable, ProposalFailed
from avo.evolution import Settings, current_directions
from avo.harness import evaluate as harness_evaluate  # tests swap this for a fake
from avo.lineage import CommitDecision, Lineage, unified_diff
from avo.operators.base import VaryContext
from avo.promotion import promote
from avo.records import EvalResult
from avo.run_state import RunState, already_tried, save
from avo.selection import select_parents


@dataclass
class Outcome:
    """What evaluate hands to commit: a result, or why there is none."""

    slot: int
    candidate: Candidate
    result: EvalResult | None = None
    skipped: str = ""  # "duplicate: ..." or "stopping": nothing was evaluated
    where: dict = field(default_factory=dict)  # host, pid, device slot: where it ran


@dataclass
class GenerationReport:
    generation: int
    evaluated: int = 0
    failed: int = 0
    committed: list[int] = field(default_factory=list)
    skipped: int = 0
    stopped: bool = False  # the generation did not finish all its slots


# ---------------------------------------------------------------- tasks
@task(name="select", cache_policy=NO_CACHE)
def select(settings: Settings, state: RunState) -> list[VaryContext]:
    lineage = Lineage(settings.lineage_root)
    versions = lineage.versions()
    rng = random.Random(f"{settings.cfg.evolve.seed}:{state.generation}")
    parents = select_parents(versions, settings.population, rng, settings.device, settings.suite)
    by_number = {v.number: v for v in versions}
    summary, attempts = lineage.summary(), lineage.attempts_summary()
    directions = current_directions(settings, state.directions)
    return [VaryContext(parent_version=p, parent_source=by_number[p].source, parent_result=by_number[p].result,
                        generation=state.generation, slot=slot, lineage_summary=summary,
                        attempts_summary=attempts, directions=directions,
                        seed=settings.cfg.evolve.seed)
            for slot, p in enumerate(parents) if slot not in state.done_slots]


@task(name="vary", cache_policy=NO_CACHE)
def vary(operator, ctx: VaryContext) -> Candidate:
    return operator.vary(ctx)


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate(candidate: Candidate, slot: int, settings: Settings) -> Outcome:
    where = {"host": socket.gethostname(), "pid": os.getpid()}
    seen = already_tried(Lineage(settings.lineage_root).attempts(), candidate.sha256, settings.device, settings.suite)
    if seen is not None:
        return Outcome(slot, candidate, skipped=f"duplicate: this source was evaluated in generation "
                                                 f"{seen.get('generation')} ({seen.get('status')})", where=where)
    result, device_slot = judge(candidate.source, settings)
    if result is None:
        return Outcome(slot, candidate, skipped="stopping", where=where)
    return Outcome(slot, candidate, result, where={**where, "slot": device_slot})


def judge(source: str, settings: Settings, stoppable: bool = True, **overrides) -> tuple[EvalResult | None, object]:
    """The harness on a leased device (a GPU id, or a CPU slot): at most one
    evaluation per GPU at a time. None if a stop was requested while waiting."""
    h = settings.cfg.harness
    pool = gpu_pool.slots_for(settings.device, settings.cfg.evolve.cpu_eval_slots)
    with gpu_pool.lease(pool) as device_slot:
        if stoppable and live.stop_requested():  # checked after the wait: only running work finishes
            return None, device_slot
        kw = dict(device=settings.device, suite=settings.suite, timeout_s=h.timeout_s, quick=h.quick,
                  gpu=device_slot if settings.device == "cuda" else None)
        return harness_evaluate(source, **{**kw, **overrides}), device_slot


def leased_evaluate(settings: Settings):
    """evaluate(source, **overrides) -> EvalResult on a leased device, for operators
    that verify, check or benchmark inside vary (the agent): their GPU work waits
    for its GPU like the evaluate task's does."""
    return lambda source, **overrides: judge(source, settings, stoppable=False, **overrides)[0]


@task(name="commit", cache_policy=NO_CACHE)
def commit(outcome: Outcome, settings: Settings) -> CommitDecision:
    lineage = Lineage(settings.lineage_root)
    return promote(lineage, outcome.candidate, outcome.result, settings.cfg.lineage, tracker=None).decision


@task(name="log", cache_policy=NO_CACHE)
def log(outcome: Outcome, decision: CommitDecision, settings: Settings, tracker) -> None:
    if tracker is None:
        return
    cand, lineage = outcome.candidate, Lineage(settings.lineage_root)
    diff = ""
    if cand.parent is not None and lineage.has(cand.parent):
        diff = unified_diff(lineage.get(cand.parent).source, cand.source, f"v{cand.parent}/kernel.py",
                            "candidate/kernel.py")
    tracker.log_candidate(cand, outcome.result, decision, diff=diff)


# ---------------------------------------------------------------- the flow
@flow(name="generation", validate_parameters=False)
def generation(settings: Settings, state: RunState, operator, tracker=None) -> GenerationReport:
    """One generation. Updates `state` (slots done, budget spent) and saves it
    after every candidate; the evolve flow decides what comes next."""
    report = GenerationReport(state.generation)
    contexts = select(settings, state)
    proposals = [vary.submit(operator, ctx) for ctx in contexts]
    evaluations = [evaluate.submit(p, ctx.slot, settings) for p, ctx in zip(proposals, contexts)]

    slot_of = {future.task_run_id: ctx.slot for future, ctx in zip(evaluations, contexts)}
    proposal_of = {future.task_run_id: p for future, p in zip(evaluations, proposals)}
    for future in as_completed(evaluations):
        try:
            outcome = future.result()
        except Exception as e:
            try:  # an evaluation that never ran because its proposal failed: report the proposal's error
                proposal_of[future.task_run_id].result()
            except Exception as proposal_error:
                e = proposal_error
            else:  # the harness or the lineage broke (not the candidate: that is a status): stop;
                raise  # the journal is saved, so `avo evolve` resumes from here
            if isinstance(e, OperatorUnavailable) and not isinstance(e, ProposalFailed):
                raise  # a configuration problem: every slot would fail the same way
            if isinstance(e, BudgetExceeded):  # the agent's own token/cost budget
                live.request_stop(f"budget spent: {e}")
                report.stopped = True
                continue
            # one slot's proposal failed (an operator error): the other slots go on
            report.failed += 1
            state.finish_slot(slot_of[future.task_run_id])
            save(settings.state_file, state)
            live.emit("warning", message=f"generation {state.generation}, slot "
                                         f"{slot_of[future.task_run_id]}: {type(e).__name__}: {e}")
            continue
        if outcome.skipped:
            report.skipped += 1
            if outcome.skipped == "stopping":
                report.stopped = True  # not evaluated: the slot stays open for the resumed run
            else:
                state.finish_slot(outcome.slot)
                save(settings.state_file, state)
            live.emit("candidate", generation=state.generation, slot=outcome.slot, status="skipped",
                      technique=outcome.candidate.technique.name, detail=outcome.skipped, committed=False)
            continue
        decision = commit(outcome, settings)
        log(outcome, decision, settings, tracker)

        result = outcome.result
        report.evaluated += 1
        report.failed += 0 if result.ok else 1
        if decision.committed:
            report.committed.append(decision.version)
        state.spent.add_candidate(outcome.candidate.meta, result.wall_s, on_gpu=result.device == "cuda")
        state.finish_slot(outcome.slot)
        save(settings.state_file, state)
        live.emit("candidate", generation=state.generation, slot=outcome.slot, status=result.status,
                  technique=outcome.candidate.technique.name, committed=decision.committed,
                  version=decision.version, geomean=result.geomean_tflops, detail=decision.reason,
                  where=outcome.where, spent=state.spent.to_dict())
        reason = exhausted(settings.budget, state.spent)
        if reason and "generations" not in reason:  # generations are counted by the evolve loop
            live.request_stop(reason)
    return report
