"""One candidate through the evaluation cascade on one leased device.

The orchestrator's side of avo/cascade.py: it keeps the baseline cache of each GPU
filled (and checked for drift), tells the judge which configs to screen, where the
gate is and which kernel to confirm against, and adds what the judge timed to the
cache. The judge does the measuring; this module decides nothing about kernels.

The yardstick is measured on each GPU too: before the first candidate on a GPU, the
best version runs the whole suite there (once per GPU, source and drift interval;
kept in the cache), so that the gate and the confirmation's trigger compare
figures of one GPU, not this GPU's against a record from another GPU or day (GPUs
of one host differ by up to ~2%, more than the 1% floor: a faster one sent every
unchanged-speed candidate to a confirmation).

On a CPU (the Triton interpreter) there is nothing to cache and interpreter timings
decide nothing, so a candidate is judged as before: compile, check, time.
"""
from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from avo import cascade, gpu_pool
from avo.baseline_cache import BaselineCache
from avo.config import HarnessConfig
from avo.harness import cores
from avo.harness.runner import Stages
from avo.records import EvalResult


@dataclass(frozen=True)
class Yardstick:
    """The best committed version, as the cascade measures candidates against it."""

    version: int
    source: str
    sha256: str
    geomean: float
    tflops: dict  # config -> TFLOPS in its own record (the screen's gate comes from these)
    gpu: str | None = None  # the GPU model and suite of its record: its figures gate only their like
    suite: str | None = None
    here_geomean: float | None = None  # as measured on the judging GPU in this session (Evaluator)
    here_tflops: dict | None = None


def yardstick_of(version) -> Yardstick | None:
    """From a lineage Version (None, or one without timings: no yardstick)."""
    if version is None or not version.result.ok or not version.result.timings:
        return None
    from avo.candidate import source_sha256

    return Yardstick(version.number, version.source, source_sha256(version.source), version.result.geomean_tflops,
                     {t.config: t.tflops for t in version.result.timings}, gpu=version.result.env.get("gpu"),
                     suite=version.result.suite)


def run_yardstick(lineage, population, device: str, suite: str | None) -> Yardstick | None:
    """The best version a run's candidates are measured against: the best measured on this
    device, suite and the GPU model this run last measured on (its latest attempt says
    which); else on this suite; else on this device (a lineage recorded on another GPU
    model or suite). The Evaluator times it on every GPU anyway, so a record from
    elsewhere only picks the version; its figures never gate."""
    records = population.records() if population is not None else []
    gpu = next((r.get("gpu") for r in reversed(records)
                if r.get("device") == device and (suite is None or r.get("suite") == suite) and r.get("gpu")), None)
    ok = [v for v in lineage.versions() if v.result.ok and v.result.device == device]
    same_suite = [v for v in ok if suite is None or v.result.suite == suite]
    same_gpu = [v for v in same_suite if gpu is None or v.result.env.get("gpu") == gpu]
    pool = same_gpu or same_suite or ok
    return yardstick_of(max(pool, key=lambda v: (v.result.geomean_tflops, -v.number), default=None))


TRANSIENT = ("timeout", "crashed", "shared")  # a failed timing of the best that another try may pass
TRIES = 2  # tries of the best on one GPU and suite, per drift interval


# Judgings of one candidate while its holds are shared: a result still shared after these is
# never committed, and its source is not proposed again. On the H100 (session 8) ~40% of second
# tries were still shared (the run's own judges' bursts): a third try leaves fewer winners lost.
SHARED_TRIES = 3


class Evaluator:
    def __init__(self, cfg: HarnessConfig, *, device: str, suite: str, suite_configs: list[str],
                 problem_path: Path, floor: float, cache_path: Path | None = None,
                 baseline_columns: tuple[str, ...] = ("cudnn", "fa2")):
        self.cfg, self.device, self.suite, self.problem_path, self.floor = cfg, device, suite, problem_path, floor
        self.suite_configs = list(suite_configs)
        self.columns = tuple(baseline_columns)  # the problem's baselines, by record column
        self.screen = cascade.screen_configs(self.suite_configs, cfg.screen_size)
        self.cache = BaselineCache(cache_path, cfg.baseline_drift_s, cfg.baseline_drift_tolerance)
        self._gpu_locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    @property
    def cascading(self) -> bool:
        return self.cfg.cascade and self.device == "cuda"

    def judge(self, source: str, slot, best: Yardstick | None, evaluate: Callable[..., EvalResult],
              **overrides) -> EvalResult:
        """`evaluate` is the harness's (tests pass a fake); overrides go to it as they are."""
        kw = dict(device=self.device, suite=self.suite, timeout_s=self.cfg.timeout_s, quick=self.cfg.quick,
                  problem_path=self.problem_path)
        if self.device != "cuda":
            return evaluate(source, **{**kw, **overrides})
        gpu = gpu_pool.gpu_of(slot)
        kw["gpu"], kw["compile_helpers"] = gpu, self.cfg.compile_helpers
        if not self.cascading or self.cfg.quick or overrides.get("quick") or overrides.get("configs"):
            # no cascade (an agent's check or bench, or the cascade off), but the GPU's lock all the
            # same: without it this judge would check and time beside the run's other judges
            lock_only = Stages(gpu_lock=str(gpu_pool.timing_lock(gpu)), **cpus_for(gpu))
            return evaluate(source, **{**kw, **overrides, "stages": lock_only})
        key, kw = self.key(gpu), {**kw, **overrides}
        with self._guard:
            warm_up = self._gpu_locks.setdefault(key, threading.Lock())
        measured_best = None
        with warm_up:  # the first judge on a GPU times its baselines and the best; the others wait and reuse them
            if best is not None and self._needs_measuring(key, best):
                measured_best = self._measure_best(best, gpu, evaluate, kw)
            if not self.cache.has(key, self.suite_configs, self.columns):
                return self._judge(source, gpu, self._here(key, best), evaluate, kw, (), measured_best)
        recheck = tuple(self.screen) if self.cache.drift_check_due(key) else ()
        return self._judge(source, gpu, self._here(key, best), evaluate, kw, recheck, measured_best)

    def _needs_measuring(self, key: str, best: Yardstick) -> bool:
        """Not yet timed here on this suite; or its last try failed in a way that may pass on
        another (a timeout, a crash: the GPU or the host, not the kernel), at most TRIES times."""
        found = self.cache.measured(key, self._kernel_key(best.sha256))
        if found is None:
            return True
        return found.get("status") in TRANSIENT and found.get("tries", 1) < TRIES

    def _measure_best(self, best: Yardstick, gpu, evaluate, kw) -> dict:
        """The best version, whole suite, on this GPU (no gate, nothing to confirm); its
        figures join the cache. What it cost goes into the next record."""
        key, kernel = self.key(gpu), self._kernel_key(best.sha256)
        tries = (self.cache.measured(key, kernel) or {}).get("tries", 0) + 1
        try:
            result = self._judge(best.source, gpu, None, evaluate, kw, ())
        except Exception as e:  # noqa: BLE001  (the harness's own failure: tried again, at most TRIES times)
            self.cache.add_measured(key, kernel, "crashed", None, {}, tries=tries)
            return {"version": best.version, "status": "crashed", "error": f"{type(e).__name__}: {e}"[:200]}
        if result.env.get("gpu_shared"):  # timed on a shared GPU: not the best's figures; tried again later
            self.cache.add_measured(key, kernel, "shared", None, {}, tries=tries)
            return {"version": best.version, "status": "shared", "gpu_shared": result.env["gpu_shared"]}
        whole = self._whole_suite(result)
        self.cache.add_measured(key, kernel, result.status if whole or not result.ok else "partial",
                                result.geomean_tflops if whole else None,
                                {t.config: t.tflops for t in result.timings} if whole else {}, tries=tries)
        return {"version": best.version, "status": result.status, "geomean": round(result.geomean_tflops, 2),
                "gpu_s": round(result.gpu_s, 2), "wall_s": round(result.wall_s, 2)}

    def _here(self, key: str, best: Yardstick | None) -> Yardstick | None:
        """`best` with its figures on this GPU and suite, where it could be measured here."""
        found = self.cache.measured(key, self._kernel_key(best.sha256)) if best is not None else None
        if not found or found.get("status") != "ok" or not set(self.suite_configs) <= set(found["tflops"]):
            return best
        return replace(best, here_geomean=found["geomean"], here_tflops=found["tflops"])

    def _kernel_key(self, sha256: str) -> str:
        """A kernel's figures are per GPU (the cache's key) and suite."""
        return f"{self.suite}:{sha256}"

    def _judge(self, source, gpu, best, evaluate, kw, recheck, measured_best=None) -> EvalResult:
        key = self.key(gpu)
        gate, best_geomean, like = None, None, False
        if best is not None:
            # the stricter of the two: the commit rule compares with the recorded geomean when the
            # record is of this GPU model and suite (so on a slower GPU of the model the record's gate
            # holds), and a confirmation with the best timed here (so on a faster one this GPU's
            # figures do); a candidate below either cannot commit. A record of another model or
            # suite gates nothing: its figures are not this GPU's
            like = best.gpu == self.cache.gpu_model(key) and best.suite in (None, self.suite)
            sources = [(best.tflops, best.geomean)] if like else []
            sources += [(best.here_tflops, best.here_geomean)] if best.here_geomean is not None else []
            gates = [cascade.gate_tflops([figures.get(c, 0.0) for c in self.screen], self.cfg.screen_slack)
                     for figures, _ in sources if figures]
            gate = max((g for g in gates if g is not None), default=None)
            best_geomean = max((g for _, g in sources if g is not None), default=None)
        stages = Stages(baselines=self.cache.rows(key), screen=tuple(self.screen), gate_tflops=gate,
                        confirm_source=best.source if best else None, best_version=best.version if best else None,
                        best_sha256=best.sha256 if best else "", best_geomean=best_geomean,
                        floor=self.floor, confirm_rounds=self.cfg.confirm_rounds, confirm_configs=tuple(self.screen),
                        recheck_baselines=recheck, gpu_lock=str(gpu_pool.timing_lock(gpu)),
                        time_held_out_pool=not self.cache.has(key, self.suite_configs, self.columns),
                        **cpus_for(gpu))
        result = evaluate(source, **kw, stages=stages)
        earlier: list = []  # the shared holds of the tries before this one
        for _ in range(SHARED_TRIES - 1):  # timed while another process was busy on the GPU: again
            if not result.env.get("gpu_shared"):
                break
            earlier += result.env["gpu_shared"]
            result = evaluate(source, **kw, stages=stages)
        if earlier:
            result.env["gpu_shared_first_try"] = earlier
        result.env["gpu_id"] = gpu  # which of this host's GPUs measured it (the judge sees only "its" GPU)
        warn_refused_pins(result.env)
        if best is not None:
            # the commit rule's best where the lineage has none of this GPU model and suite
            # (avo/lineage.py): the yardstick as timed here, which the confirmation re-measures
            result.env["yardstick"] = {"version": best.version, "sha256": best.sha256,
                                       "record_geomean": round(best.geomean, 2), "record_like_this_gpu": like,
                                       "here_geomean": best.here_geomean and round(best.here_geomean, 2)}
        if measured_best:
            result.env["yardstick_measured"] = measured_best  # GPU time this record's judge waited on
        if result.env.get("gpu") and not self.cache.check_software(key, result.env):
            result.env["baseline_cache"] = "dropped: the GPU's software changed since its figures were timed"
        if result.env.get("gpu_shared"):  # figures from a shared GPU: not cached, no drift, no yardstick
            return result
        timed = result.env.get("baselines_timed") or {}
        fresh = {c: timed[c] for c in recheck if c in timed}
        if fresh:
            drift = self.cache.check_drift(key, fresh)
            result.env["baseline_drift"] = drift
        self.cache.add(key, {c: rows for c, rows in timed.items() if c not in fresh}, result.env)
        if self._whole_suite(result):  # a later yardstick, if it becomes the best
            from avo.candidate import source_sha256

            self.cache.add_measured(key, self._kernel_key(source_sha256(source)), "ok", result.geomean_tflops,
                                    {t.config: t.tflops for t in result.timings})
        return result

    def _whole_suite(self, result: EvalResult) -> bool:
        return (result.ok and not result.flags and not (result.cascade or {}).get("stopped")
                and set(self.suite_configs) <= {t.config for t in result.timings})

    @staticmethod
    def key(gpu) -> str:
        return f"{socket.gethostname()}:gpu{gpu}"


def cpus_for(gpu) -> dict:
    """Stages' timing_cpus and work_cpus for a judge on `gpu`: this process's CPU partition
    (avo.evolution.partition_cpus), none without one (a Dask worker, a CPU run, turned off)."""
    plan = cores.active()
    timing = plan.timing_for(gpu) if plan is not None else ()
    return dict(timing_cpus=tuple(timing), work_cpus=tuple(plan.work) if timing else ())


_warned_pins = threading.Event()


def warn_refused_pins(env: dict) -> None:
    """Once per process: a judge could not move some threads onto its timing CPUs (e.g. its
    runner runs as another uid and the judge lacks CAP_SYS_NICE): those timings are unshielded."""
    refused = ((env.get("cpu_pins") or {}).get("timing") or {}).get("refused")
    if refused and not _warned_pins.is_set():
        _warned_pins.set()
        import sys

        print(f"avo: warning: a judge could not move {refused} thread(s) onto its timing CPUs "
              "(env.cpu_pins; a runner of another uid needs CAP_SYS_NICE in the judge): its runner "
              "is timed without the CPU partition's shield", file=sys.stderr, flush=True)


_EVALUATORS: dict[tuple, Evaluator] = {}
_REGISTRY_LOCK = threading.Lock()


def evaluator_for(settings) -> Evaluator:
    """The one Evaluator of this process for a run's settings (its baseline cache is
    shared by the run's evaluate tasks, and kept beside the run's journal)."""
    from avo.problem import load_problem

    key = (str(settings.state_file), settings.device, settings.suite, str(settings.problem_path))
    with _REGISTRY_LOCK:
        if key not in _EVALUATORS:
            problem = load_problem(Path(settings.problem_path))
            suite = settings.suite or problem.DEFAULT_SUITE[settings.device]
            _EVALUATORS[key] = Evaluator(
                settings.cfg.harness, device=settings.device, suite=suite,
                suite_configs=[s.name for s in problem.SUITES[suite]], problem_path=Path(settings.problem_path),
                floor=settings.margin, cache_path=Path(settings.state_file).parent / "baselines.json",
                baseline_columns=tuple(getattr(problem, "BASELINES", {})))
        return _EVALUATORS[key]
