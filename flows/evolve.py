"""The evolve loop as a Prefect flow: generations until a budget ends or a target is met.

    seed        an empty lineage first gets v0: the seed kernel, evaluated and committed
    generation  the subflow in flows/generation.py, once per generation, run from a task
                (`run_generation`) so that two can be in flight: generation g+1 starts
                once no evaluation of g waits for a device slot (evolve.overlap_generations),
                g+2 not before g has ended, so the device slots stay full across the
                boundary instead of draining while g's slowest candidates finish
    supervise   the supervisor the wiring built (flows/wiring.py) reviews each ended
                generation, in order: on stagnation it writes directions (agents/supervisor.py),
                or, without agents/, tells the heuristic to widen its moves. With overlap
                the generation after it has started already, so directions lag by one

Resume: the run's journal (avo.run_state) says which generations are in flight
(at most two) and what was spent; running the flow again continues an unfinished run and
never re-evaluates a source the attempts log already has. A run ends
"finished" when a budget or target stops it; Ctrl-C or a crash leaves it
"running", to be resumed. The flow takes only plain parameters, so the same
function backs `avo evolve`, `avo serve` and the deployment in prefect.yaml.
"""
from __future__ import annotations

import dataclasses
import sys
import threading
from collections import deque
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field

import flows  # noqa: F401  (Prefect defaults, before prefect is imported)
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture
from prefect.task_runners import ThreadPoolTaskRunner

from avo import live
from avo.budget import exhausted, left, target_met
from avo.evolution import Settings, evaluation_slots, partition_cpus, resolve
from avo.lineage import Lineage, seed_candidate
from avo.population import Population
from avo.promotion import promote
from avo.run_state import RunState, load_or_start, save
from avo.selection import comparable_versions
from flows import generation as gen
from flows.wiring import make_harness, make_operator, make_supervisor, make_tracker


@dataclass
class EvolveSummary:
    run_id: str
    resumed: bool
    generations: list[int] = field(default_factory=list)  # generation numbers run (or finished) now
    evaluated: int = 0
    failed: int = 0
    committed: list[int] = field(default_factory=list)
    stop_reason: str = ""
    finished: bool = False  # False: stopped early (Ctrl-C, a failure); `avo evolve` resumes it
    best_version: int | None = None
    best_geomean: float = 0.0
    best_ratio_cudnn: float | None = None


@dataclass(frozen=True)
class InFlight:
    """A generation running as its own flow, beside at most one other."""

    number: int
    all_leased: threading.Event  # none of its evaluations waits for a device slot any more
    ended: threading.Event  # its flow returned or failed: `future` holds its GenerationReport
    future: PrefectFuture | Future


@task(name="seed", cache_policy=NO_CACHE)
def seed(settings: Settings) -> int:
    """v0 from the seed kernel, evaluated on this run's device."""
    candidate = seed_candidate(settings.seed_path)
    result, _ = gen.judge(candidate.source, settings)
    if result is None:
        raise RuntimeError("stopped before the seed was evaluated")
    promotion = promote(Lineage(settings.lineage_root), candidate, result, settings.cfg.lineage,
                        note=f"seed: {settings.seed_path.name}", problem=settings.problem_path)
    live.emit("seed", geomean=result.geomean_tflops, status=result.status)
    return promotion.decision.version


def _best(settings: Settings):
    pool = comparable_versions(Lineage(settings.lineage_root).versions(), settings.device, settings.suite)
    return max(pool, key=lambda v: (v.geomean, -v.number), default=None)


def _warn_idle_slots(settings: Settings) -> None:
    """Fewer candidates than device slots leave GPUs idle: a generation's candidates fill
    the slots only until the next generation takes over (or, without overlap, until its
    slowest candidate ends)."""
    if settings.device != "cuda" or settings.dask_address:
        return
    slots = len(evaluation_slots("cuda", settings.cfg))
    if settings.population < slots:
        print(f"avo: note: --population {settings.population} is below this host's {slots} evaluation slots "
              f"(GPUs x harness.pipeline_depth): slots stay idle; use --population {4 * slots} "
              f"(the default when evolve.candidates_per_generation is unset)",
              file=sys.stderr)


def _task_runner(settings: Settings):
    if settings.dask_address:
        from prefect_dask import DaskTaskRunner  # only when a cluster is asked for

        return DaskTaskRunner(address=settings.dask_address)
    # proposals in parallel; evaluations wait for their device lease inside the task
    return ThreadPoolTaskRunner(max_workers=max(4, 2 * settings.population))


@task(name="run-generation", cache_policy=NO_CACHE)
def run_generation(generation_flow, settings: Settings, state: RunState, tracker, number: int,
                   all_leased: threading.Event) -> gen.GenerationReport:
    """Generation `number` as its own flow run (flows/generation.py), from a task of the evolve
    flow so that two run at once on its task runner; Prefect 3 nests the flow run under
    this task run."""
    return generation_flow(settings, state, tracker, number=number, all_leased=all_leased)


def _may_start(flights: deque[InFlight], overlap: bool) -> bool:
    """Another generation may start: none is in flight, or (overlap) one is and none of its
    evaluations waits for a device slot. Never a third: g+2 waits until g has ended."""
    if not flights:
        return True
    return overlap and len(flights) == 1 and flights[0].all_leased.is_set()


def _wait(flights: deque[InFlight], overlap: bool, more: bool) -> None:
    """Until the oldest generation in flight ends or, when `more` may start, another may.
    Polled: a generation's queue empties once, so 50 ms late costs nothing."""
    while not flights[0].ended.is_set() and not (more and _may_start(flights, overlap)):
        flights[0].ended.wait(0.05)


def _why_stop(settings: Settings, state: RunState, in_flight: int) -> str | None:
    """Why no further generation may start: a stop request, a budget (the generations in
    flight count as spent), a target the best version meets; None: one may."""
    best = _best(settings)
    counted = dataclasses.replace(state.spent, generations=state.spent.generations + in_flight)
    return (live.stop_reason() if live.stop_requested() else None) or exhausted(settings.budget, counted) \
        or (best and target_met(settings.budget, best.geomean, best.result.geomean_ratio_cudnn)) or None


def _close(report: gen.GenerationReport, state: RunState, settings: Settings, lineage: Lineage,
           supervisor, tracker) -> None:
    """A generation that ran all its slots, in generation order: the stagnation count, the
    supervisor's review, the journal moves on (the next generation, maybe half done already,
    becomes the oldest in flight), the session's metrics. Directions written here reach the
    generation after next when the next one has started already (overlap): they lag by one."""
    state.since_commit = 0 if report.committed else state.since_commit + 1
    directions = supervisor.review(lineage, report.generation, state.since_commit)
    with state.lock:
        if directions:
            state.directions = directions
            live.emit("supervise", directions=directions)
        elif report.committed:
            state.directions = []
        state.next_generation()
        save(settings.state_file, state)
    best = _best(settings)
    if tracker is not None and best is not None:
        tracker.log_session_metrics({"best_geomean": best.geomean}, step=report.generation)


@flow(name="evolve", validate_parameters=False, task_runner=ThreadPoolTaskRunner(max_workers=2))
def evolve(generations: int | None = None, population: int | None = None, operator: str | None = None,
           model: str | None = None, budget_minutes: float | None = None, gpu_minutes: float | None = None,
           max_tokens: int | None = None, max_dollars: float | None = None, target_ratio: float | None = None,
           target_tflops: float | None = None, device: str | None = None, dask_address: str | None = None,
           params_path: str | None = None, lineage_root: str | None = None,
           state_dir: str | None = None, quick: bool | None = None, suite: str | None = None,
           problem: str | None = None) -> EvolveSummary:
    """Evolve the lineage. Every argument overrides params.yaml's evolve/harness
    section; None keeps it. Budgets count over the whole run, across resumes."""
    settings = resolve(params_path=params_path, generations=generations, population=population,
                       operator=operator, model=model, budget_minutes=budget_minutes, gpu_minutes=gpu_minutes,
                       max_tokens=max_tokens, max_dollars=max_dollars, target_ratio=target_ratio,
                       target_tflops=target_tflops, device=device, dask_address=dask_address,
                       lineage_root=lineage_root, state_dir=state_dir, quick=quick, suite=suite, problem=problem)
    live.reset()
    _warn_idle_slots(settings)
    partition_cpus(settings)  # the timing judges' CPUs apart from the rest (`avo evolve` did it already)
    lineage = Lineage(settings.lineage_root)
    var_op = make_operator(settings, lineage, evaluate=make_harness(settings))
    state = load_or_start(settings.state_file, settings.lineage_root, lineage.attempts())
    if state.resumed and hasattr(var_op, "resume"):  # one ledger: the journal's spend counts for the agent too
        var_op.resume(state.spent)
    summary = EvolveSummary(state.run_id, state.resumed)
    live.emit("start", run_id=state.run_id, resumed=state.resumed, generation=state.generation,
              device=settings.device, suite=settings.suite, operator=settings.operator,
              population=settings.population, budget=settings.budget, spent=state.spent.to_dict(),
              lineage=str(settings.lineage_root))
    tracker = make_tracker(settings)
    supervisor = make_supervisor(settings)
    generation_flow = gen.generation.with_options(task_runner=_task_runner(settings),
                                                  flow_run_name="generation-{number}")
    # On a Dask cluster the evaluations lease their slots on the workers, out of this process's
    # sight, and Prefect ships a parent task's parameters (these threading objects) to them:
    # one generation at a time there, run right here
    overlap = settings.cfg.evolve.overlap_generations and not settings.dask_address

    def start(number: int, in_flight: int) -> InFlight:
        counted = dataclasses.replace(state.spent, generations=state.spent.generations + in_flight)
        live.emit("generation", generation=number, index=counted.generations + 1,
                  left=left(settings.budget, counted))
        if settings.dask_address:
            return _ran_here(number, lambda: generation_flow(settings, state, tracker, number=number))
        all_leased, ended = threading.Event(), threading.Event()
        future = run_generation.submit(generation_flow, settings, state, tracker, number, all_leased)
        future.add_done_callback(lambda _: ended.set())
        return InFlight(number, all_leased, ended, future)

    with _session(tracker, settings, state), _spare_judges(settings):
        if not lineage.versions():
            seed(settings)
        # the operator, and what was tried and is being judged: one for both generations in flight
        with gen.sharing(state.run_id, Population.of(lineage), var_op):
            flights: deque[InFlight] = deque()  # oldest first; numbers state.generation, state.generation + 1
            in_order = True  # a generation that stopped early stays open, and so do the ones after it
            while True:
                if flights and flights[0].ended.is_set():  # generations end in order, whatever finished first
                    report = _result(flights.popleft())
                    summary.generations.append(report.generation)
                    summary.evaluated += report.evaluated
                    summary.failed += report.failed
                    summary.committed += report.committed
                    in_order = in_order and not report.stopped  # stopped: the loop head reports why
                    if in_order:
                        _close(report, state, settings, lineage, supervisor, tracker)
                    continue
                reason = _why_stop(settings, state, len(flights))
                if reason is None and _may_start(flights, overlap):
                    flights.append(start(state.generation + len(flights), len(flights)))
                    continue
                if not flights:
                    break
                _wait(flights, overlap, more=reason is None)

    # Budgets and targets end a run; a stop request (Ctrl-C) leaves it open for resume.
    summary.finished = not reason.startswith("interrupted")
    summary.stop_reason = reason
    state.status = "finished" if summary.finished else "running"
    state.stop_reason = reason
    save(settings.state_file, state)
    best = _best(settings)
    if best is not None:
        summary.best_version, summary.best_geomean = best.number, best.geomean
        summary.best_ratio_cudnn = best.result.geomean_ratio_cudnn
    live.emit("end", summary=summary)
    return summary


def _ran_here(number: int, run) -> InFlight:
    """A generation run to its end in this thread, as an InFlight that has ended."""
    report = Future()
    try:
        report.set_result(run())
    except Exception as e:  # noqa: BLE001  (raised in order, by _result)
        report.set_exception(e)
    ended = threading.Event()
    ended.set()
    return InFlight(number, all_leased=ended, ended=ended, future=report)


def _result(flight: InFlight) -> gen.GenerationReport:
    """The generation's report; its failure (the harness or the lineage broke) asks the
    generation beside it to start nothing more before it is raised."""
    try:
        return flight.future.result()
    except BaseException:
        live.request_stop(f"generation {flight.number} failed")
        raise


@contextmanager
def _spare_judges(settings: Settings):
    """Judges started ahead of their candidates for this run (avo/harness/spares.py), all
    ended with it; none where the evaluations run on a cluster's workers."""
    from avo.harness.runner import SPARES

    if not settings.cfg.harness.spare_judges or settings.dask_address:
        yield
        return
    SPARES.enable()
    try:
        yield
    finally:
        SPARES.close()


def _session(tracker, settings: Settings, state):
    from contextlib import nullcontext

    if tracker is None:
        return nullcontext()
    return tracker.start_session(params={"evolve": settings.cfg.evolve.__dict__, "device": settings.device,
                                         "operator": settings.operator, "suite": settings.suite},
                                 tags={"run_id": state.run_id, "resumed": state.resumed},
                                 lineage_root=settings.lineage_root, suite=settings.suite)
