"""The judge: one evaluation, in a trusted process that never imports candidate code.

Started by runner.py as `python -m avo.harness.judge DEVICE PROBLEM HELPERS` (job
JSON on stdin, one EvalResult JSON written to the descriptor the job names);
before it reads the job it starts the candidate's runner and compile helpers
(prestart.py), which is what lets the orchestrator start judges ahead of their
candidates (spares.py). It owns the seeds,
the inputs, the reference, the tolerances, the comparison, the clock and the
record; the candidate runs in another process, in the OS sandbox
(candidate_host.py), and only ever sees the buffers of the call it is making.
The buffers live in a small arena while the candidate loads and compiles, and in
the timed calls' arena (GBs) only while this judge holds the GPU (timing_arena).

Stages, each of which can end the evaluation with a status (the cascade's in
judge_stages.py, whose GPU lock the checking and timing stages hold):
  baselines  (GPU) the problem's library baselines (attention: cuDNN, FA2) from the
             orchestrator's per-GPU cache, or timed by this clock in runners of their
             own before the candidate's process exists, so it cannot slow them down
  load       the candidate's runner (started before the job) imports the file
  compile    one call per compile shape (the smallest shapes that compile as the timed
             and checked ones do), under a compile watchdog, outside the GPU lock;
             compile helpers run the same shapes ahead and are killed at the lock.
             On a GPU these calls compile and load the kernels but launch none
             (compile_only.py): nothing of theirs runs beside another judge's timing
  check      every check shape (only the first QUICK_CHECKS before a screen),
             several seeds, every element compared
  screen     (cascade) a few suite configurations, timed as below; the candidate
             stops here below the gate
  timing     every suite configuration plus held-out shapes drawn for this run:
             a warm-up batch and REPEATS timed batches of fresh calls each, timed
             by this process's clock from late-binding to snapshot; every call
             verified on sampled rows
  recheck    the check shapes on new seeds, and one full comparison of every
             timed shape
  finish     the library-compute evidence (kernels and aten ops the profiler
             saw on every thread) and the sandbox's audit record
  confirm    (cascade) when the suite beats the best: best and candidate timed in
             turns, each in a fresh runner
"""
from __future__ import annotations

import json
import math
import os
import random
import sys
import tempfile
import time
import traceback
from contextlib import contextmanager
from pathlib import Path

from avo.harness import allowlist, arena as arena_mod, calls, timing
from avo.harness.calls import Verdict
from avo.harness.host import Host, RunnerFailed, clock
from avo.harness.judge_stages import QUICK_CHECKS, CascadeStages
from avo.harness.peak import peak_tflops
from avo.harness.prestart import Prestarted, parse_argv
from avo.problem import load_problem
from avo.records import CaseCheck, ConfigTiming, EvalResult

REPEATS = 3  # timed batches per configuration (after one warm-up batch)
WARM_UP_CALLS = 3  # calls in that warm-up batch (at most)
BATCH_TARGET_S = {"cuda": 0.025, "cpu": 0.0}  # GPU: a batch long enough that per-batch costs are < 1%
MAX_CALLS = {"cuda": 24, "cpu": 2}
ARENA_BYTES = {"cuda": 16 * 2**30, "cpu": 512 * 2**20}
COMPILE_TIMEOUT_S = {"cuda": 120.0, "cpu": 120.0}  # a shape's first batch: compiling and autotuning
WATCHDOG_FACTOR, WATCHDOG_FLOOR_S = 50.0, {"cuda": 10.0, "cpu": 60.0}
HELD_OUT = {"cuda": 2, "cpu": 1}
OVERFIT_RATIO = 1.2  # suite / held-out ratio-to-cuDNN above this flags the candidate as overfit
BASELINES = ("cudnn", "fa2")


class Judge(CascadeStages):
    def __init__(self, job: dict, workdir: Path, ready: Prestarted | None = None):
        self.job, self.workdir = job, workdir
        # the runner and compile helpers started before the job (main()); None: started as needed
        self.ready = ready if ready is not None and ready.matches(job) else None
        if ready is not None and self.ready is None:
            ready.close()
        self.device = job["device"]
        self.problem = load_problem(job["problem_path"])
        self.seeds = [int(s) for s in job["seeds"]]
        self.rng = random.Random(self.seeds[0])
        self.quick = bool(job.get("quick"))
        self.result = EvalResult(status="ok", device=self.device, interpreter=self.device == "cpu",
                                 suite=job["suite"], seeds=self.seeds)
        self.result.env = timing.env_info(self.device)
        self.log = open(workdir / "runner.log", "ab")
        self.arena = None  # the arena runners map now: the compile stage's, or the timed calls' (timing_arena)
        self.timing_bytes = 0  # what the timed calls' arena needs
        self.timing_hosts: list | None = None  # runners that mapped the timed calls' arena, while it exists
        self.compile_arena = None  # the compile stage's arena, while the timed calls' one is in use
        self.kept_arenas: list = []  # timing arenas a runner that would not die may still map
        self.runners: list[Host] = []  # every runner this judge started or took: all end with it
        self.io_elements = 0  # inputs + outputs of every call: the budget for host-side element-wise ops
        self.last_call_s: dict[tuple[int, str], float] = {}  # per (runner, shape): sizes the next batch's watchdog
        self.stage_s: dict[str, float] = {}  # wall seconds per stage, for the throughput benchmark
        self.kernel_s = 0.0  # seconds inside the candidate's timed batches (its pure kernel time, and more)
        self.kernel_names = allowlist.kernel_names(Path(job["candidate_path"]).read_text())

    # ----------------------------------------------------------------- stages
    def run(self) -> EvalResult:
        t0 = clock()
        try:
            suite = [] if self.quick else self.suite_shapes()
            timed = suite + ([] if self.quick else self.held_out_shapes())
            screening = bool(timed and self.job.get("screen"))
            pool = self.held_out_pool() if timed and self.job.get("time_held_out_pool") else []
            self.timing_bytes = self.arena_bytes(timed + pool)
            self.arena = arena_mod.create(self.device, self.compile_arena_bytes())
            self.open_gpu_watch()  # who else is busy on this GPU (judge_sharing.py)
            baselines = {}
            if timed and self.device == "cuda":  # a screened candidate's held-out shapes: if it passes the gate
                with self.stage("baselines"):  # (the pool: every held-out shape, for the GPU's cache)
                    baselines = self.baselines_for(unique((suite if screening else timed) + pool))
            self.baselines = baselines
            with self.stage("load"):
                host = self.start(self.job["candidate_path"], calls.entry(self.problem), "load", self.workdir,
                                  host=self.ready.take_runner() if self.ready else None)
            self.result.sandbox = host.level
            with self.stage("compile"):  # outside the GPU lock: compiling overlaps another candidate's timing
                plan = self.compile_plan("screen" if screening else "all")
                if self.ready:  # the helpers compile ahead: this plan, then what the cascade needs past its gate
                    self.mark_stage("compile: helpers")  # (the guard's record: which part of a stage)
                    self.ready.start_helpers(plan + [s for s in self.compile_plan("all") if s not in plan])
                self.compile(host, plan)
            with self.gpu_lock():
                self.stop_helpers()  # none runs while anything is checked or timed
                with self.timing_arena(host):  # ends the runner (and any work it left) as it goes
                    with self.stage("check"):  # a screened candidate is checked in full only if it passes the gate
                        self.check(host, "check", self.seeds[1], QUICK_CHECKS if screening else None)
                    if timed:
                        host = self.cascade(host, suite, timed, baselines)
                    with self.stage("finish"):
                        self.finish(host)
            if self.confirmation_due():
                with self.stage("confirm"):
                    self.confirm(suite)
        except Verdict as v:
            self.result.status, self.result.message = v.status, v.message
        except RunnerFailed as e:
            self.result.status, self.result.message = e.status, e.message
        finally:
            for runner in self.runners:  # its own, and any a stage started and lost on an error
                runner.kill()
            if self.ready:
                self.ready.close()
            self.close_gpu_watch()
            self.result.env["stage_s"] = {k: round(v, 3) for k, v in self.stage_s.items()}
            self.result.env["kernel_s"] = round(self.kernel_s, 4)
        self.result.wall_s = clock() - t0
        return self.result

    def start(self, path, entry: str, what: str, workdir: Path | None = None, host: Host | None = None) -> Host:
        """A runner for `path` in its own sandbox (or `host`, one started for it before the
        job). Each kernel gets a work directory of its own (a fresh one unless given): its
        Triton cache cannot be planted by another."""
        if host is None:
            workdir = workdir or Path(tempfile.mkdtemp(prefix="avo-host-", dir=self.workdir.parent))
            os.chmod(workdir, 0o777)  # the runner may run as an unprivileged uid
            host = Host(Path(path), self.device, workdir, self.log, entry=entry)
        self.runners.append(host)
        host.tag = len(self.runners)  # keys its watchdog estimates: a new runner's first batch compiles
        host.map_arena(self.arena)
        if self.timing_hosts is not None:  # it maps the timed calls' arena: it ends before that is freed
            self.timing_hosts.append(host)
        reply = host.wait_ready(COMPILE_TIMEOUT_S[self.device])
        self.check_violations(reply)
        if "error" in reply:
            raise Verdict("compile_error", f"{what}: {reply['error']}")
        return host

    @contextmanager
    def timing_arena(self, host: Host | None = None):
        """The arena the timed calls need, only while this judge holds the GPU: allocated
        here and mapped into `host` (the runner that compiled in the small arena) and into
        every runner started meanwhile (start()). On the way out those runners are killed,
        and the arena is freed once they have exited: memory a runner still maps must not
        go back to the driver (the next judge of this GPU would get it). Five evaluations in
        flight fit an 80 GB H100 only so: four did not when each held its 15 GB from the start.
        Re-entrant: a stage that needs it inside one that has it (held-out baselines timed
        past the gate) uses the one there is. A stage that lets the GPU lock go inside it
        drops the arena first and takes a new one after (cascade, past the gate)."""
        if self.timing_hosts is not None:
            yield
            return
        try:
            self.take_timing_arena(host)
            yield
        finally:
            self.drop_timing_arena()

    def take_timing_arena(self, host: Host | None) -> None:
        t0, self.timing_since = clock(), time.monotonic()
        timing_arena = arena_mod.create(self.device, self.timing_bytes)  # may fail: nothing changed yet
        self.compile_arena, self.arena, self.timing_hosts = self.arena, timing_arena, []
        self.result.env["arena_bytes"] = {"compile": self.compile_arena.nbytes, "timing": self.arena.nbytes}
        if host is not None:
            self.timing_hosts.append(host)
            reply = host.remap_arena(self.arena, COMPILE_TIMEOUT_S[self.device])
            self.check_violations(reply)
            if reply.get("mapped") != self.arena.nbytes:
                raise Verdict("crashed", f"mapping the timing arena: the runner answered {str(reply)[:160]}")
        self.stage_s["arena"] = self.stage_s.get("arena", 0.0) + clock() - t0

    def drop_timing_arena(self) -> None:
        """Kill the runners that mapped the timing arena, then free it (a no-op without one)."""
        if self.timing_hosts is None:
            return
        for runner in self.timing_hosts:
            runner.kill()
        mapped_still = any(runner.proc.poll() is None for runner in self.timing_hosts)
        timing_arena, self.arena, self.timing_hosts = self.arena, self.compile_arena, None
        if mapped_still:  # a runner that would not die keeps it, until this judge exits
            self.result.env["timing_arena_kept"] = True
            self.kept_arenas.append(timing_arena)
        else:
            timing_arena.close()
            release_cached_memory(self.device)
        # [allocated, freed or kept] by the system-wide clock of env.gpu_held: always inside one hold
        self.result.env.setdefault("timing_arena_held", []).append([round(self.timing_since, 4),
                                                                   round(time.monotonic(), 4)])

    def compile(self, host: Host, todo: list) -> None:
        """One call of each shape in `todo`, under the compile watchdog, outside the GPU lock.
        On a GPU the calls launch nothing (compile_only.py) and nothing is verified: any GPU
        work here runs beside another candidate's timing (the check stage runs and compares
        every check shape, under the lock). The interpreter's calls run and are verified."""
        launch = self.device != "cuda"
        t0 = clock()
        wrong = None  # a variant that runs but is wrong: reported after every variant has compiled
        seconds = self.result.env.setdefault("compile_calls", [])  # per shape: where the compile stage goes
        watching = host is not None and self.gpu_watch is not None
        if watching:  # a runner (or helper) hung on the GPU ends sooner than the compile watchdog
            host.watch = self.hang_watch("a compile call")
        try:
            for shape in todo:
                self.mark_stage(f"compile: {shape.name}")
                try:
                    t1 = clock()
                    self.verified_batch(host, shape, 1, "compile", full=True, vary=False,
                                        timeout_s=COMPILE_TIMEOUT_S[self.device], launch=launch)
                    seconds.append([shape.name, round(clock() - t1, 3)])
                except Verdict as v:
                    if v.status != "incorrect":
                        raise
                    wrong = wrong or v
        finally:
            if watching:
                host.watch = None
        if wrong:
            raise wrong
        spent = self.result.compile_stats.get("compile_s", 0.0) if self.result.compile_stats else 0.0
        self.result.compile_stats = {"compile_s": round(spent + clock() - t0, 3)}

    def compile_plan(self, part: str = "all") -> list:
        """What the compile stage calls. On a GPU: the problem's compile shapes of the
        timed shapes (the suite and this run's held-out draws: the smallest shapes that
        compile as they do), then every check shape itself: a kernel may specialise on
        more than the problem knows (a length of 1, a whole number of tiles), and a shape
        compiled here compiles nothing under the GPU lock (H200: v4's check stage held the
        lock 17-19 s, mostly compiling; H100: v4's timed shapes ~1.5 s each).
        part "screen": only what a screened candidate runs before the gate (the screen's
        configs and the quick check's shapes); "rest": the others, compiled past the gate
        with the lock let go (most candidates stop at the screen: ~60% of the compile saved).
        The interpreter compiles nothing: one small call per variant is enough there."""
        if self.device != "cuda":
            return [] if part == "rest" else self.problem.compile_shapes(self.check_shapes() + self.suite_shapes())
        timed = [] if self.quick else self.suite_shapes() + self.held_out_shapes()
        every = unique(self.problem.compile_shapes(timed) + self.check_shapes())
        if part == "all":
            return every
        names = set(self.job.get("screen") or [])
        screen = unique(self.problem.compile_shapes([s for s in timed if s.name in names])
                        + self.check_shapes()[:QUICK_CHECKS])
        if part == "screen":
            return screen
        if part == "rest":
            return [s for s in every if s not in screen]
        raise ValueError(f"unknown compile part {part!r}")

    def stop_helpers(self) -> None:
        """Kill the compile helpers (prestart.py); a sandbox violation in one rejects the candidate."""
        if not self.ready:
            return
        self.ready.stop_helpers()
        self.result.env["compile_helpers"] = dict(self.ready.record)
        self.result.env["prestart"] = dict(self.ready.timing)
        if self.ready.violations:
            self.check_violations({"violations": ["compile helper: " + v for v in self.ready.violations]})

    def check(self, host: Host, phase: str, seed: int, part: int | None = None) -> None:
        """Every check shape; part n > 0: the first n only, n < 0: all but the first -n."""
        rng = random.Random(seed)
        part = QUICK_CHECKS if self.quick and part is None else part
        shapes = self.check_shapes()
        shapes = shapes if part is None else shapes[:part] if part > 0 else shapes[-part:]
        for shape in shapes:
            self.verified_batch(host, shape, 2, phase, full=True, vary=True, rng=rng)
            # then the first call again: the same addresses (a batch starts at the arena's start) and
            # arguments, new values. A replay keyed on addresses, shapes or arguments returns the
            # first call's output, now wrong, whatever the draws were
            first = self.last_batch.calls[0].params
            self.verified_batch(host, shape, 1, phase, full=True, vary=True, rng=rng, reuse=[first])

    def time_all(self, host: Host, timed: list, baselines: dict, stop=None) -> None:
        """Time every shape in `timed`; stop(measured TFLOPS, peak) -> True ends it early."""
        gpu = self.result.env.get("gpu", "")
        peak = peak_tflops(gpu, interpreter=self.device == "cpu")
        suite_names = {s.name for s in self.suite_shapes()}
        for shape in timed:
            est = baselines.get((shape.name, "cudnn"))
            row = self.time_shape(host, shape, est.ms / 1e3 if est else None)
            for name in BASELINES:
                b = baselines.get((shape.name, name))
                if b is not None:
                    setattr(row, f"{name}_tflops", b.tflops)
            if row.tflops > peak:
                raise Verdict("rejected", f"{shape.name}: {row.tflops:.4g} TFLOP/s exceeds the physical peak "
                                          f"{peak:.4g} of {gpu}")
            (self.result.timings if shape.name in suite_names else self.result.heldout).append(row)
            log(f"  {shape.name}: {row.ms:.3f} ms {row.tflops:.4g} TFLOP/s")
            if stop is not None and stop([t.tflops for t in self.result.timings], peak):
                return

    def time_shape(self, host: Host, shape, est_s: float | None) -> ConfigTiming:
        """Median per-call time over REPEATS batches, by this process's clock."""
        if est_s is None:  # no baseline here (CPU, or a baseline's own timing): measure, after a first call
            self.verified_batch(host, shape, 1, "timed/probe", full=False, vary=False)  # compiles, plans
            est_s = self.verified_batch(host, shape, 2, "timed/probe", full=False, vary=False) / 2
        n = max(2, min(self.max_calls(shape), math.ceil(BATCH_TARGET_S[self.device] / max(est_s, 1e-6))))
        # a short warm-up: a shape's first calls (autotuning, a launcher's new specialisation) stay out
        # of the timed batches; a full batch of it cost a fifth of the stage and measured nothing
        warm = min(n, WARM_UP_CALLS)
        warm_s = self.verified_batch(host, shape, warm, "timed/warm-up", full=False, vary=False) / warm
        if warm_s > 2 * est_s:  # far slower than the estimate: batches of the same target length, fewer calls
            n = max(2, min(n, math.ceil(BATCH_TARGET_S[self.device] / warm_s)))
        batches = [self.verified_batch(host, shape, n, "timed", full=False, vary=False) for _ in range(REPEATS)]
        self.kernel_s += sum(batches)
        per_call = sorted(b / n for b in batches)
        ms = per_call[len(per_call) // 2] * 1e3
        spread = (per_call[-1] - per_call[0]) / per_call[len(per_call) // 2]
        return ConfigTiming(config=shape.name, ms=ms, tflops=shape.flops() / (ms * 1e-3) / 1e12, calls=n * REPEATS,
                            spread=round(spread, 4))

    def finish(self, host: Host) -> None:
        report = host.finish()
        self.check_violations(report)
        self.result.env["activity_scope"] = str(report.get("scope", ""))
        problem = allowlist.library_compute(report, self.kernel_names, self.device, self.io_elements)
        if problem:
            raise Verdict("rejected", problem)

    # ---------------------------------------------------------- one batch
    def verified_batch(self, host: Host, shape, n: int, phase: str, full: bool, vary: bool,
                       rng: random.Random | None = None, timeout_s: float | None = None,
                       reuse: list | None = None, launch: bool = True) -> float:
        """Stage, run and verify n calls of `shape`; returns the batch's seconds by this clock.
        launch=False (the compile stage on a GPU): the runner compiles and launches nothing,
        and there is nothing to verify. A shape's first batch on a GPU (its watchdog is the
        compile bound) is also watched for a hung kernel (judge_sharing.py, hang_watch)."""
        t_stage = clock()
        batch = self.last_batch = calls.plan(shape, n, rng or self.rng, phase, full, vary, reuse)
        calls.stage(batch, self.arena, self.problem, self.device)
        host_messages = batch.messages()
        self.batch_part(phase, "stage", clock() - t_stage)
        first = False
        if timeout_s is None:  # a shape's first batch may compile (or autotune): the compile bound
            est = self.last_call_s.get((host.tag, shape.name))
            first = est is None
            timeout_s = COMPILE_TIMEOUT_S[self.device] if first else \
                max(WATCHDOG_FLOOR_S[self.device], WATCHDOG_FACTOR * n * est)
        watch_here = first and host.watch is None
        if watch_here:  # a kernel that hangs on its first launch ends in seconds, not at the bound
            host.watch = self.hang_watch()
        t0 = clock()
        try:
            calls.late_bind(batch, self.arena, self.device)
            host.start_batch(host_messages, op="batch" if launch else "compile")
            reply = host.receive(timeout_s, f"{shape.name} ({phase})")
        finally:
            if watch_here:
                host.watch = None
        if launch:
            calls.take_snapshot(batch, self.arena, self.device)
        seconds = clock() - t0
        self.check_violations(reply)
        if "error" in reply:
            message = str(reply["error"])
            kind = reply.get("kind") if reply.get("kind") in ("incorrect", "crashed") else "crashed"
            out_of_memory = "allocate memory" in message or "OutOfMemoryError" in message
            if phase == "compile" and kind == "crashed" and not out_of_memory:
                kind = "compile_error"  # an exception on a first call: the kernel does not build or run
            if out_of_memory:
                message = f"out of host memory: {message}" if "allocate memory" in message else message
            raise Verdict(kind, f"{shape.name} ({phase}): {message}")
        if reply.get("done") != n:
            raise Verdict("crashed", f"{shape.name} ({phase}): the runner answered {str(reply)[:120]}")
        self.io_elements += n * calls.call_elements(shape, self.problem)
        self.batch_part(phase, "run", seconds)
        if not launch:  # compiled, not run: no output, and no run time to size a watchdog on
            return seconds
        t_verify = clock()
        calls.verify(batch, self.arena, self.problem, self.device, self.record)
        self.batch_part(phase, "verify", clock() - t_verify)
        self.last_call_s[(host.tag, shape.name)] = seconds / n
        return seconds

    def batch_part(self, phase: str, part: str, seconds: float) -> None:
        """env.batch_s[phase][part]: the judge's seconds staging inputs, running (the clock's
        span) and verifying, per phase ('timed/warm-up' counts as 'timed'): where an
        evaluation's time goes beyond the kernel's."""
        parts = self.result.env.setdefault("batch_s", {}).setdefault(phase.split("/")[0], {})
        parts[part] = round(parts.get(part, 0.0) + seconds, 4)

    # ---------------------------------------------------------------- helpers
    def record(self, shape, seed, phase, max_abs, rel, ok, reason):
        self.result.checks.append(CaseCheck(shape=shape.name, dtype=shape.dtype, seed=seed, phase=phase,
                                            max_abs_err=max_abs, rel_err=rel, passed=ok, reason=reason))

    def check_violations(self, reply: dict) -> None:
        violations = list(dict.fromkeys(str(v)[:160] for v in reply.get("violations") or []))
        if violations:
            raise Verdict("rejected", "sandbox: " + "; ".join(violations[:3])
                          + (f" (+{len(violations) - 3} more)" if len(violations) > 3 else ""))

    def flag_overfit(self) -> None:
        flag = overfit_flag(self.result.timings, self.result.heldout)
        if flag:
            self.result.flags.append(flag)

    def check_shapes(self):
        return self.problem.check_shapes(self.device)

    def suite_shapes(self):
        wanted = self.job.get("configs")
        return [s for s in self.problem.SUITES[self.job["suite"]] if not wanted or s.name in wanted]

    def held_out_shapes(self):
        draw = getattr(self.problem, "held_out_shapes", None)
        return draw(self.device, random.Random(self.seeds[3]), HELD_OUT[self.device]) if draw else []

    def held_out_pool(self):
        """Every shape held-out draws come from (problem.held_out_pool, optional), GPU only:
        the first judge on a GPU times their baselines once for the orchestrator's cache."""
        pool = getattr(self.problem, "held_out_pool", None)
        return list(pool(self.device)) if pool and self.device == "cuda" else []

    def max_calls(self, shape) -> int:
        return max(1, min(MAX_CALLS[self.device], self.arena.nbytes // calls.call_bytes(shape, self.problem)))

    def compile_arena_bytes(self) -> int:
        """The compile stage's arena: one call of its largest shape (MBs, not the GBs of timing)."""
        return self.bytes_for([(s, 1) for s in self.compile_plan()])

    def arena_bytes(self, timed: list) -> int:
        """The timed calls' arena: a full batch of every timed shape, two calls of the others."""
        return self.bytes_for([(s, MAX_CALLS[self.device] if s in timed else 2)
                               for s in timed + self.check_shapes() + self.compile_plan()])

    def bytes_for(self, batches: list) -> int:
        """An arena for the largest of these (shape, calls) batches, within ARENA_BYTES."""
        need = max((calls.call_bytes(s, self.problem) * n for s, n in batches), default=arena_mod.ALIGN)
        return arena_mod.align(min(need, ARENA_BYTES[self.device]))


def release_cached_memory(device: str) -> None:
    """Hand what PyTorch's allocator caches in this process back to the driver (a freed
    timing arena), for the next judge of this GPU."""
    if device == "cuda":
        import torch

        torch.cuda.empty_cache()


def unique(shapes: list) -> list:
    """`shapes` without repeats (by name), in order."""
    first: dict = {}
    for shape in shapes:
        first.setdefault(shape.name, shape)
    return list(first.values())


def overfit_flag(suite: list, heldout: list) -> str:
    """'' unless the suite's ratio to cuDNN beats the held-out shapes' by more than
    OVERFIT_RATIO: a kernel special-casing the suite's shapes. Ratios, not TFLOPS, so
    that shapes of different cost compare (GPU only: the interpreter has no baseline)."""
    from avo.records import geomean

    s_ratios = [t.ratio_cudnn for t in suite]
    h_ratios = [t.ratio_cudnn for t in heldout]
    if not (s_ratios and h_ratios and all(s_ratios) and all(h_ratios)):
        return ""
    s, h = geomean(s_ratios), geomean(h_ratios)
    return f"overfit: {s:.3f}x cuDNN on the suite but {h:.3f}x on held-out shapes" if s > OVERFIT_RATIO * h else ""


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def main() -> int:
    ahead = parse_argv(sys.argv[1:])  # device, problem, helpers: the runners start before the job comes
    with tempfile.TemporaryDirectory(prefix="avo-runner-") as work:
        workdir = Path(work)
        os.chmod(workdir, 0o777)  # the runner may run as an unprivileged uid
        ready = None
        if ahead:
            try:
                ready = Prestarted(*ahead[:2], workdir, ahead[2])
            except Exception:  # noqa: BLE001 - the judge then starts its runner itself, and says why it fails
                traceback.print_exc()
        t0 = time.monotonic()
        text = sys.stdin.read()
        if ready:
            ready.timing["waited_s"] = round(time.monotonic() - t0, 3)  # > 0: it was ready before its job
        if not text.strip():  # no job: a spare judge the run did not need (spares.py closes it so)
            if ready:
                ready.close()
            return 0
        return judge_job(json.loads(text), workdir, ready)


def judge_job(job: dict, workdir: Path, ready: Prestarted | None) -> int:
    fd = int(job["result_fd"])
    try:
        candidate = workdir / "candidate.py"  # where a pre-started runner looks for it
        candidate.write_text(Path(job["candidate_path"]).read_text())
        job = {**job, "candidate_path": str(candidate)}
        result = Judge(job, workdir, ready).run()
        if result.status != "ok":  # the runner's own output, for the record's log tail
            tail = (workdir / "runner.log").read_bytes()[-3000:].decode(errors="replace")
            print(f"--- runner log (untrusted program output) ---\n{tail}", file=sys.stderr, flush=True)
    except BaseException as e:  # the judge's own failure: still report, as data
        traceback.print_exc()
        result = EvalResult(status="crashed", message=f"harness judge: {type(e).__name__}: {e}"[:300],
                            device=job.get("device", "cpu"))
    payload = json.dumps(result.to_dict()).encode()
    while payload:
        n = os.write(fd, payload)
        payload = payload[n:]
    os.close(fd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
