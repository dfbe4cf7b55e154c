"""The judge's cascade stages (avo/cascade.py decides; this measures), kept apart from
judge.py's per-call machinery for length: screen -> gate -> full -> recheck, the
baseline cache and the baselines' own timing, the confirmation re-measure, the
per-GPU lock (and the CPUs that go with it, avo/harness/cores.py), and the stage
clock. The holds' shared-GPU guard is judge_sharing.py's. `Judge` (judge.py) mixes
these in; they use its start / compile / check / time_all / time_shape / verified_batch.
"""
from __future__ import annotations

import fcntl
import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from avo import cascade
from avo.harness import calls, cores
from avo.harness.calls import Verdict
from avo.harness.host import Host, RunnerFailed, clock
from avo.harness.judge_sharing import SharingGuard, holder
from avo.records import ConfigTiming

QUICK_CHECKS = 3  # check shapes in a quick check (and before the cascade's screen)


class CascadeStages(SharingGuard):  # the shared-GPU guard is part of every hold
    def cascade(self, host: Host, suite: list, timed: list, baselines: dict) -> Host:
        """screen -> (gate) -> full -> recheck; the screen's rows count in the full suite.
        Returns the candidate's runner (a new one when held-out baselines had to be timed)."""
        names = set(self.job.get("screen") or [])
        screen = [s for s in suite if s.name in names]
        gate = self.job.get("gate_tflops")
        self.result.cascade = {"stage": "screen" if screen else "full", "stopped": "", "gate_tflops": gate,
                               "screen": [s.name for s in screen]}
        if screen:
            with self.stage("screen"):  # ends early once even the GPU's peak on the rest could not pass
                self.time_all(host, screen, baselines, stop=lambda measured, peak: cascade.out_of_reach(
                    measured, len(screen), gate, peak))
            passed, why = cascade.passes_gate([t.tflops for t in self.result.timings], gate)
            if len(self.result.timings) < len(screen):  # out of reach: the partial geomean is below the gate too
                passed, why = False, f"{why}; stopped after {len(self.result.timings)} of {len(screen)} screen configs: " \
                      "the gate was out of reach"
            if not passed:
                self.result.cascade["stopped"] = why
                return host
            uncached = [s for s in timed if s not in suite and (s.name, "cudnn") not in baselines]
            rest = self.compile_plan("rest")
            if rest or (uncached and self.device == "cuda"):
                # The GPU lock is let go while the rest compiles, and the timing arena with it (the
                # judge that times meanwhile allocates its own: two would be 30 GB, and an H100 ran
                # out of memory with three): the runner that mapped it ends, and a new one, in the
                # same work directory (its Triton cache), loads and compiles the rest. What the
                # runner saw (kernels, library calls, audit) is checked before it goes: the screen's
                # rows count in the suite
                self.finish(host)
                self.drop_timing_arena()  # kills it, then frees the arena
                if uncached and self.device == "cuda":  # baselines are only timed while no candidate runs
                    with self.stage("baselines"):
                        baselines.update(self.baselines_for(uncached))
                with self.gpu_released():  # loading and compiling need no GPU to themselves
                    with self.stage("load"):
                        host = self.start(self.job["candidate_path"], calls.entry(self.problem), "reload",
                                          self.workdir)
                    with self.stage("compile"):  # what the screen did not need
                        self.compile(host, rest)
                self.take_timing_arena(host)
            with self.stage("check"):
                self.check(host, "check", self.seeds[4], -QUICK_CHECKS)  # the check shapes the quick check left
        self.result.cascade["stage"] = "full"
        with self.stage("full"):
            self.time_all(host, [s for s in timed if s not in screen], baselines)
        self.flag_overfit()
        with self.stage("recheck"):
            self.check(host, "recheck", self.seeds[2])
            for shape in suite:
                self.verified_batch(host, shape, 1, "recheck/timed", full=True, vary=False)
        return host


    def baselines_for(self, timed: list) -> dict:
        """(config, backend) -> ConfigTiming: the orchestrator's cache (timed by this
        judge's code in an earlier baselines job on this GPU) where it has the config,
        timed now — before the candidate's runner exists — where it has not."""
        cached = self.job.get("baselines") or {}
        recheck = set(self.job.get("recheck_baselines") or [])  # the cache's drift check: timed again
        columns = list(calls.baselines(self.problem))  # the problem's record columns (attention: cudnn, fa2)
        out = {(name, backend): ConfigTiming(**row) for name, rows in cached.items()
               for backend, row in rows.items() if backend in columns and name not in recheck}
        missing = [s for s in timed if not all((s.name, b) in out for b in columns)]
        self.result.env["baselines_cached"] = len({n for n, _ in out if n in {s.name for s in timed}})
        if missing:
            with self.gpu_lock(), self.timing_arena():  # only timing needs the GPU (and the large arena)
                out.update(self.time_baselines(missing))
        return out

    def time_baselines(self, timed: list) -> dict:
        """(config, backend) -> ConfigTiming, timed exactly as candidates are; also kept in
        the record (env.baselines_timed) for the orchestrator's cache."""
        out, errors = {}, {}
        candidate_checks = len(self.result.checks)  # the baselines' own verifications are not the candidate's
        self.result.env["baseline_labels"] = calls.baseline_labels(self.problem)  # what each column holds
        for name, (path, entry) in calls.baselines(self.problem).items():  # the problem's, by record column
            try:
                host = self.start(path, entry, f"baseline {name}")
            except (Verdict, RunnerFailed) as e:
                errors[name] = e.message
                continue
            try:
                for shape in timed:
                    try:
                        out[(shape.name, name)] = self.time_shape(host, shape, None)
                    except Verdict as e:
                        errors[f"{name} {shape.name}"] = e.message
            except RunnerFailed as e:
                errors[name] = e.message
            finally:
                host.kill()
        del self.result.checks[candidate_checks:]
        if errors:
            self.result.env["baseline_errors"] = errors
        timed_rows = self.result.env.setdefault("baselines_timed", {})
        for (config, backend), row in out.items():
            timed_rows.setdefault(config, {})[backend] = {k: getattr(row, k) for k in ("config", "ms", "tflops",
                                                                                        "calls", "spread")}
        return out


    def estimate(self, shape) -> float | None:
        """cuDNN's seconds per call on `shape` (sizes a batch without probe calls), if timed."""
        row = getattr(self, "baselines", {}).get((shape.name, "cudnn"))
        return row.ms / 1e3 if row else None

    def confirmation_due(self) -> bool:
        job = self.job.get("confirm") or {}
        if not job or self.result.cascade.get("stopped") or self.result.status != "ok" or self.result.flags:
            return False
        from avo.records import geomean
        return cascade.confirmation_due(geomean([t.tflops for t in self.result.timings]),
                                        job.get("best_geomean"), float(job.get("floor", 0.0)))

    def confirm(self, suite: list) -> None:
        """The best and the candidate re-measured in turns on this GPU, each in a fresh
        runner of its own (so neither's leftover work can run while the other is timed),
        best first in every round; every call verified as in the suite."""
        job = self.job["confirm"]
        names = set(job["configs"])
        shapes = [s for s in suite if s.name in names]
        best_dir = Path(tempfile.mkdtemp(prefix="avo-best-", dir=self.workdir.parent))  # its own Triton cache,
        (best_dir / "best.py").write_text(Path(job["path"]).read_text())                 # out of the candidate's reach
        kernels = {"best": (best_dir / "best.py", best_dir),
                   "candidate": (Path(self.job["candidate_path"]), self.workdir)}
        ms = {"best": [], "candidate": []}
        own_checks, own_stats = len(self.result.checks), dict(self.result.compile_stats)
        self.confirm_rounds(int(job.get("rounds", 3)), shapes, kernels, ms, own_checks)
        self.result.compile_stats = own_stats
        found = cascade.summarise_confirmation(ms["best"], ms["candidate"])
        self.result.confirm = {"best_version": job.get("version"), "best_sha256": job.get("sha256", ""),
                               "rounds": len(ms["best"]), "configs": [s.name for s in shapes], **found.to_dict(),
                               "best_ms": ms["best"], "candidate_ms": ms["candidate"]}

    def confirm_rounds(self, rounds: int, shapes: list, kernels: dict, ms: dict, own_checks: int) -> None:
        for _ in range(rounds):
            for who in ("best", "candidate"):
                path, workdir = kernels[who]
                host = self.start(path, calls.entry(self.problem), f"confirm ({who})", workdir)
                try:
                    self.compile(host, self.problem.compile_shapes(shapes))  # outside the GPU lock
                    with self.gpu_lock(), self.timing_arena(host):
                        ms[who].append([self.time_shape(host, s, self.estimate(s)).ms for s in shapes])
                finally:
                    host.kill()
                if who == "best":  # the best's verification records are not the candidate's
                    del self.result.checks[own_checks:]
            own_checks = len(self.result.checks)

    @contextmanager
    def stage(self, name: str):
        t0 = clock()
        self.mark_stage(name)  # the shared-GPU guard attributes GPU work outside the lock to it
        try:
            yield
        finally:
            self.stage_s[name] = self.stage_s.get(name, 0.0) + clock() - t0

    @contextmanager
    def gpu_lock(self):
        """This GPU to this judge alone while it checks and times (job.gpu_lock: a per-GPU
        lock file shared by the judges the orchestrator runs on this GPU). Loading and
        compiling happen outside it, overlapping another candidate's timing."""
        path = self.job.get("gpu_lock")
        if getattr(self, "gpu_lock_held", False) or getattr(self, "unlocked_hold", False):
            # held already: a stage that needs it inside one that holds it (held-out baselines are
            # timed past the gate, inside the check-and-time hold). A second flock on a new
            # descriptor of the same file would wait for this very judge: a deadlock
            yield
            return
        if not path:  # no lock to take (an evaluation on its own: avo bench, tests): still watched
            self.unlocked_hold = True
            try:
                self.await_quiet_gpu()
                yield
            finally:
                self.unlocked_hold = False
                self.note_shared_hold()
            return
        t0 = clock()
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        taken = False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            taken = True
            self.stage_s["gpu_wait"] = self.stage_s.get("gpu_wait", 0.0) + clock() - t0
            self.gpu_lock_fd, self.gpu_lock_since = fd, time.monotonic()  # system-wide clock: the
            self.gpu_lock_held = True                                     # benchmark checks no two overlap
            self.pin_cpus("timing")
            self.await_quiet_gpu(holder(fd))  # nothing outside this judge busy on the GPU (judge_sharing.py)
            yield
        finally:
            if taken and self.gpu_lock_held:
                self.pin_cpus("work")  # off the timing CPUs before the next judge of this GPU gets them
                self._note_hold()
            self.gpu_lock_held, self.gpu_lock_fd = False, None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    @contextmanager
    def gpu_released(self):
        """Inside a hold of the GPU lock: let it go for a while (loading, compiling), then
        wait for it again. Nothing of this judge's may run on the GPU meanwhile but the
        candidate's compile calls, as in the compile stage. A no-op when not held."""
        fd = getattr(self, "gpu_lock_fd", None)
        if not getattr(self, "gpu_lock_held", False) or fd is None:
            yield
            return
        self.pin_cpus("work")
        self._note_hold()
        self.gpu_lock_held = False
        fcntl.flock(fd, fcntl.LOCK_UN)
        try:
            yield
        finally:
            t0 = clock()
            fcntl.flock(fd, fcntl.LOCK_EX)
            self.stage_s["gpu_wait"] = self.stage_s.get("gpu_wait", 0.0) + clock() - t0
            self.gpu_lock_since, self.gpu_lock_held = time.monotonic(), True
            self.pin_cpus("timing")
            self.await_quiet_gpu(holder(fd))

    def pin_cpus(self, to: str) -> None:
        """The CPUs that go with the GPU lock (job.timing_cpus, job.work_cpus: the orchestrator's
        partition, avo/harness/cores.py). to "timing", on taking the lock: this judge (every
        thread) and every process below it (its runners in their sandboxes, a runner's own
        threads and children) move to this GPU's timing CPUs, which no compiler runs on; a runner
        started while the lock is held inherits them from the judge. to "work", before the lock
        is let go: all of it back to the CPUs that load and compile. A no-op without both lists.
        Never raises: a move that fails is counted (env.cpu_pins.<to>.refused) and the
        evaluation goes on; env.timing_cpus says the CPUs."""
        timing, work = self.job.get("timing_cpus"), self.job.get("work_cpus")
        if not timing or not work:
            return
        t0 = clock()
        env = self.result.env
        env["timing_cpus"] = [int(c) for c in timing]
        tally = env.setdefault("cpu_pins", {}).setdefault(to, {"pins": 0, "threads": 0, "processes": 0,
                                                               "refused": 0, "seconds": 0.0})
        counts: dict = {}
        try:
            cores.pin_tree(os.getpid(), timing if to == "timing" else work, counts)
        except Exception as e:  # noqa: BLE001 - /proc unreadable: the evaluation goes on, unshielded, and says so
            env["cpu_pins"]["error"] = f"{type(e).__name__}: {e}"[:200]
        tally["pins"] += 1
        for key in ("threads", "processes", "refused"):
            tally[key] += counts.get(key, 0)
        tally["seconds"] = round(tally["seconds"] + clock() - t0, 4)

    def _note_hold(self) -> None:
        self.result.env.setdefault("gpu_held", []).append([round(self.gpu_lock_since, 4),
                                                           round(time.monotonic(), 4)])
        self.note_shared_hold()
