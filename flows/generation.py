"""One generation as a Prefect flow: select -> vary xN -> evaluate -> commit -> log.

    select    parents for the generation's open slots (avo.selection), one context each
    vary      the operator proposes a candidate per slot; all slots at once (CPU, LLM calls)
    evaluate  source in, record out: the cascade (avo.evaluator) on a leased device slot, never
              twice for one source; it never reads the lineage (it is what remote workers run)
    commit    the commit rule, the lineage, git (avo.promotion.promote)
    log       the candidate's MLflow run (avo.promotion.log; a broken store only warns)

Evaluations start as soon as their proposal exists; after each slot flows/bookkeeping.py saves the
journal (what makes a killed run resumable) and reports progress. Two generations may run at once
(flows/evolve.py, evolve.overlap_generations): this one says when none of its evaluations waits for a
device slot any more (`all_leased`), shares what was tried (and what is being judged) with the other
through one Population, and commits one candidate at a time with it.
"""
from __future__ import annotations

import os
import random
import socket
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Callable

import flows  # noqa: F401  (Prefect defaults, before prefect is imported)
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed

from avo import gpu_pool, live
from avo.candidate import Candidate
from avo.cost_basis import modelled_score
from avo.evaluator import Yardstick, evaluator_for, run_yardstick
from avo.evolution import Settings, current_directions, evaluation_slots
from avo.harness import evaluate as harness_evaluate  # tests swap this for a fake
from avo.lineage import Lineage
from avo.operators.base import VaryContext
from avo.population import Population, attempt_record
from avo.promotion import Promotion, log as log_promotion, promote
from avo.records import EvalResult
from avo.run_state import RunState
from avo.selection import select_parents
from flows.bookkeeping import GenerationReport, book, proposal_failed


@dataclass(frozen=True)
class Evaluated:
    slot: int
    candidate: Candidate
    result: EvalResult
    where: dict = field(default_factory=dict)  # host, pid, device slot: where it ran


@dataclass(frozen=True)
class Duplicate:
    slot: int
    candidate: Candidate
    detail: str  # which earlier attempt judged this source


@dataclass(frozen=True)
class NotRun:  # a stop was requested while it waited for a device: the slot stays open
    slot: int
    candidate: Candidate


Outcome = Evaluated | Duplicate | NotRun

@dataclass(frozen=True)
class RunObjects:
    """What the generation flows of one run share in this process, by run id, rather than as
    flow parameters, which Prefect stores (and refuses over 512 KB): the Population holds every
    attempt (700 KB for the H100 lineage's 213), an operator its knowledge base and model."""

    population: Population  # what was tried, and what is being judged (both generations in flight)
    operator: object  # the variation operator (avo.operators / agents)


_SHARED: dict[str, RunObjects] = {}


@contextmanager
def sharing(run_id: str, population: Population, operator):
    """The generations of run `run_id` started inside this block use these objects."""
    _SHARED[run_id] = RunObjects(population, operator)
    try:
        yield _SHARED[run_id]
    finally:
        _SHARED.pop(run_id, None)


class Queued:
    """The slots of a generation whose evaluation may still wait for a device slot. Each leaves
    when its evaluation takes its lease, or ends without one (a duplicate, a failed proposal, a
    stop); when none is left, `all_leased` is set: the evolve loop may start the next generation."""

    def __init__(self, slots: list[int], all_leased: threading.Event | None = None):
        self.all_leased = all_leased if all_leased is not None else threading.Event()
        self._waiting = set(slots)
        self._lock = threading.Lock()
        if not self._waiting:
            self.all_leased.set()

    def leave(self, slot: int) -> None:
        with self._lock:
            self._waiting.discard(slot)
            if not self._waiting:
                self.all_leased.set()


# ---------------------------------------------------------------- tasks
@task(name="select", cache_policy=NO_CACHE)
def select(settings: Settings, state: RunState, number: int, lineage: Lineage,
           population: Population) -> list[VaryContext]:
    """Parents for generation `number`'s open slots, from the lineage as it is now (with
    overlap: the generation before may still be committing)."""
    versions = lineage.versions()
    done = list(state.done_in(number))
    rng = random.Random(f"{settings.cfg.evolve.seed}:{number}")
    score = modelled_score(settings.problem_path) if settings.device == "cpu" else None  # CPU: the commit basis
    parents = select_parents(versions, settings.population, rng, settings.device, settings.suite, score=score)
    by_number = {v.number: v for v in versions}
    summary, attempts = lineage.summary(), population.summary()
    directions = current_directions(settings, state.directions)
    judging = population.judging(settings.device, settings.suite)  # by the generation before, if in flight
    return [VaryContext(parent_version=p, parent_source=by_number[p].source, parent_result=by_number[p].result,
                        generation=number, slot=slot, lineage_summary=summary,
                        attempts_summary=attempts, directions=directions, seed=settings.cfg.evolve.seed,
                        population=population, judging=judging)
            for slot, p in enumerate(parents) if slot not in done]


@task(name="vary", cache_policy=NO_CACHE)
def vary(operator, ctx: VaryContext) -> Candidate:
    return operator.vary(ctx)


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate(candidate: Candidate, slot: int, settings: Settings, population: Population,
             best: Yardstick | None = None, on_lease: Callable[[int], None] | None = None) -> Outcome:
    # `population`: the run's one object on threads (both generations in flight claim in it);
    # a remote worker's copy misses what the generations in flight claimed and recorded since
    # `on_lease(slot)`: called once this evaluation holds its device slot (None on remote workers)
    seen = population.tried(candidate.sha256, settings.device, settings.suite)
    if seen is not None:
        return Duplicate(slot, candidate, f"duplicate: evaluated in generation {seen.generation} ({seen.status})")
    if not population.claim(candidate.sha256, settings.device, settings.suite):  # never twice at once either
        return Duplicate(slot, candidate, "duplicate: another slot is evaluating it")
    result, device_slot = judge(candidate.source, settings, best=best,
                                on_lease=partial(on_lease, slot) if on_lease is not None else None)
    if result is None:
        return NotRun(slot, candidate)
    return Evaluated(slot, candidate, result, {"host": socket.gethostname(), "pid": os.getpid(),
                                               "slot": device_slot})


def judge(source: str, settings: Settings, stoppable: bool = True, best: Yardstick | None = None,
          on_lease: Callable[[], None] | None = None, **overrides) -> tuple[EvalResult | None, object]:
    """The harness on a leased device slot (avo.evaluator: the cascade on a GPU, whose
    judges take turns measuring). None if a stop was requested while waiting.
    `on_lease()`: called the moment the slot is held (the generation's Queued)."""
    slots = evaluation_slots(settings.device, settings.cfg)
    with gpu_pool.lease(slots) as device_slot:
        if on_lease is not None:
            on_lease()
        if stoppable and live.stop_requested():  # checked after the wait: only running work finishes
            return None, device_slot
        return evaluator_for(settings).judge(source, device_slot, best, harness_evaluate, **overrides), device_slot


@task(name="commit", cache_policy=NO_CACHE)
def commit(outcome: Evaluated, settings: Settings, lineage: Lineage, population: Population) -> Promotion:
    # one promote at a time in this process (avo.promotion): two generations in flight commit from their threads
    promotion = promote(lineage, outcome.candidate, outcome.result, settings.cfg.lineage, problem=settings.problem_path)
    population.add(attempt_record(outcome.candidate, outcome.result, promotion.decision))  # later slots see it
    return promotion


@task(name="log", cache_policy=NO_CACHE)
def log(outcome: Evaluated, promotion: Promotion, tracker) -> None:
    if tracker is not None:
        log_promotion(tracker, outcome.candidate, outcome.result, promotion)


# ---------------------------------------------------------------- the flow
@flow(name="generation", validate_parameters=False)
def generation(settings: Settings, state: RunState, tracker=None, number: int | None = None,
               all_leased: threading.Event | None = None) -> GenerationReport:
    """Generation `number` (default: the journal's oldest in flight) of the run `sharing` its
    objects: its operator, and its Population, shared with a generation running beside this one.
    Updates `state` (slots done, budget spent) and saves it after every candidate; the evolve
    flow decides what comes next. `all_leased` is set once no evaluation of this generation
    waits for a device slot."""
    number = state.generation if number is None else number
    report = GenerationReport(number)
    lineage = Lineage(settings.lineage_root)
    population, operator = _SHARED[state.run_id].population, _SHARED[state.run_id].operator
    contexts = select(settings, state, number, lineage, population)
    queued = Queued([ctx.slot for ctx in contexts], all_leased)
    on_lease = None if settings.dask_address else queued.leave  # a Dask worker cannot call back: its end counts
    proposals = [vary.submit(operator, ctx) for ctx in contexts]
    best = run_yardstick(lineage, population, settings.device, settings.suite)  # the cascade's yardstick
    evaluations = [evaluate.submit(p, ctx.slot, settings, population, best, on_lease)
                   for p, ctx in zip(proposals, contexts)]
    for future, ctx in zip(evaluations, contexts):  # ended without a lease, or after it
        future.add_done_callback(lambda _, slot=ctx.slot: queued.leave(slot))
    index = {future.task_run_id: i for i, future in enumerate(evaluations)}
    for future in as_completed(evaluations):
        i = index[future.task_run_id]
        try:
            outcome = future.result()
        except Exception as e:  # noqa: BLE001  (classified by type; the harness's own errors re-raise)
            proposal_failed(e, proposals[i], contexts[i].slot, report, state, settings)
            continue
        promotion = None
        if isinstance(outcome, Evaluated):
            promotion = commit(outcome, settings, lineage, population)
            log(outcome, promotion, tracker)
        book(outcome, promotion, report, state, settings)
    return report
