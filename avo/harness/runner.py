"""Evaluate an untrusted candidate kernel: the orchestrator's side of the harness.

`evaluate()` never runs candidate code in this process, nor in the process that
judges it. It checks the source statically (a fast filter for honest mistakes),
then starts the judge, `python -m avo.harness.judge`, a trusted process with a
scrubbed environment (no API keys, no tokens) that dies with this one. The judge
owns inputs, reference, comparison, clock and record, and starts the candidate's
runner inside the OS sandbox (avo/harness/sandbox.py). See judge.py for the
stages and docs/security.md for what is and is not guarded.
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from avo.candidate import source_sha256
from avo.harness import prestart, sandbox, spares
from avo.harness.peak import peak_tflops
from avo.problem import DEFAULT_PROBLEM, REPO_ROOT, load_problem
from avo.harness.static_checks import SourceError, check_source
from avo.records import EvalResult

DEFAULT_TIMEOUT_S = {"cuda": 900.0, "cpu": 600.0}  # the whole evaluation; each batch has its own watchdog
LOG_TAIL_CHARS = 4000

# Environment variables the judge keeps (by exact name or prefix); everything
# else — API keys, tokens, cloud credentials, the user's config — is dropped.
ENV_KEEP = {"AVO_SANDBOX", "AVO_SANDBOX_PIDS", "PATH", "LANG", "LC_ALL", "LC_CTYPE", "LD_LIBRARY_PATH", "TRITON_CACHE_DIR",
            "TRITON_PTXAS_PATH", "CUDA_VISIBLE_DEVICES", "CUDA_HOME", "CUDA_PATH",
            "NCCL_NVLS_ENABLE", "TORCH_SYMM_MEM_DISABLE_MULTICAST", "NVSHMEM_DISABLE_NVLS"}
ENV_KEEP_PREFIXES = ("NVIDIA_", "CUDA_")


class UnknownSuite(ValueError):
    pass


def detect_device() -> str:
    """cuda when a CUDA GPU is usable here, else cpu (the Triton interpreter)."""
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


def evaluate(
    source: str | Path,
    *,
    device: str = "auto",
    suite: str | None = None,
    configs: list[str] | None = None,
    timeout_s: float | None = None,
    quick: bool = False,
    seeds: list[int] | None = None,
    problem_path: str | Path = DEFAULT_PROBLEM,
    static_checks: bool = True,
    gpu: int | str | None = None,  # pin the judge and its runner to this GPU (CUDA_VISIBLE_DEVICES); None: inherit
    stages: "Stages | None" = None,  # the cascade (avo/cascade.py): cached baselines, screen, gate, confirmation
    compile_helpers: int | None = None,  # runners that compile ahead (prestart.py); None: prestart.HELPERS
) -> EvalResult:
    """Judge one candidate. Always returns an EvalResult (errors are data).

    source: a path to the kernel file, or its text. quick=True: compile and a
    small correctness check only (no timing). configs: time only these suite
    configurations (by name). static_checks=False exists so that tests can show
    the run-time defences work on their own; never turn it off in a search.
    Raises UnknownSuite for a suite the problem does not define (a caller error).
    """
    text = Path(source).read_text() if _is_path(source) else str(source)
    sha = source_sha256(text)
    device = detect_device() if device == "auto" else device
    if device not in ("cuda", "cpu"):
        raise ValueError(f"unknown device {device!r}: use cuda, cpu or auto")
    problem_mod = load_problem(Path(problem_path))
    suite = suite or problem_mod.DEFAULT_SUITE[device]
    if suite not in problem_mod.SUITES:
        raise UnknownSuite(f"unknown suite {suite!r}; known: {', '.join(problem_mod.SUITES)}")
    base = dict(device=device, interpreter=device == "cpu", suite=suite, source_sha256=sha)

    # -- stage 0: static checks, in this process (the source is only parsed)
    try:
        violations = check_source(text, problem_mod)  # the contract of this run's problem (its entry point)
    except SourceError as e:
        return EvalResult(status="compile_error", message=str(e), **base)
    if violations and static_checks:
        more = f" (+{len(violations) - 1} more)" if len(violations) > 1 else ""
        return EvalResult(status="rejected", message=f"static check, {violations[0]}{more}",
                          log_tail="\n".join(map(str, violations)), **base)

    timeout = timeout_s or DEFAULT_TIMEOUT_S[device]
    seeds = seeds or [secrets.randbits(31) for _ in range(6)]
    t0 = time.monotonic()
    helpers = prestart.HELPERS[device] if compile_helpers is None or device != "cuda" else int(compile_helpers)
    key = (device, None if gpu is None else str(gpu), str(Path(problem_path).resolve()), helpers)
    judge = SPARES.take(key)  # a judge started ahead (an evolve run keeps spares), else a new one
    result = None
    try:
        if judge is not None:
            result = _run_judge(text, judge, suite, configs, quick, seeds, timeout, stages)
        if result is None:  # no spare, or one that died before it read its job
            if judge is not None:
                judge.discard()
            judge = spawn_judge(key)
            result = _run_judge(text, judge, suite, configs, quick, seeds, timeout, stages) or EvalResult(
                status="crashed", message="the judge died before it read its job", log_tail=_tail(judge.log_path))
    finally:
        if judge is not None:
            judge.discard()
    result.env["judge_spare"] = judge.spare  # started ahead of this candidate (the throughput benchmark reads it)
    result.wall_s = round(time.monotonic() - t0, 3)
    result.source_sha256 = sha
    result.suite, result.device, result.interpreter = suite, device, device == "cpu"
    from avo.cost_basis import attach_model  # CPU: the commit basis, modelled from the knobs (parsed, never run)
    attach_model(result, text, problem_path)
    return _sanity_check(result, quick)


@dataclass(frozen=True)
class Stages:
    """What the orchestrator tells the judge about the cascade (avo/cascade.py).

    baselines: config -> backend -> ConfigTiming fields, from this GPU's cache
    screen, gate_tflops: the screen's configs and the geomean a candidate must reach
    confirm_source: the best's kernel; when the full suite beats best_geomean by
    floor, the judge re-measures both in turns (confirm_rounds, on confirm_configs)
    recheck_baselines: configs whose baselines are timed again although cached (drift check)
    gpu_lock: a lock file per GPU; the judge holds it while it checks and times
    time_held_out_pool: time the baselines of every held-out shape the problem can draw too
    (the first judge on a GPU: later candidates past the gate then find them all cached)
    timing_cpus, work_cpus: the orchestrator's CPU partition (avo/harness/cores.py): the judge
    and its runners run on this GPU's timing CPUs while it holds gpu_lock, on the work CPUs
    otherwise; empty: no partition, nothing pinned
    """
    baselines: dict = field(default_factory=dict)
    screen: tuple[str, ...] = ()
    gate_tflops: float | None = None
    confirm_source: str | None = None
    best_version: int | None = None
    best_sha256: str = ""
    best_geomean: float | None = None
    floor: float = 0.0
    confirm_rounds: int = 3
    confirm_configs: tuple[str, ...] = ()
    recheck_baselines: tuple[str, ...] = ()
    gpu_lock: str | None = None
    time_held_out_pool: bool = False
    timing_cpus: tuple[int, ...] = ()
    work_cpus: tuple[int, ...] = ()

    def job_fields(self, work: Path) -> dict:
        fields = dict(baselines=self.baselines, screen=list(self.screen), gate_tflops=self.gate_tflops,
                      recheck_baselines=list(self.recheck_baselines), gpu_lock=self.gpu_lock,
                      time_held_out_pool=self.time_held_out_pool, timing_cpus=list(self.timing_cpus),
                      work_cpus=list(self.work_cpus))
        if self.confirm_source is not None and self.best_geomean is not None:
            best = work / "best.py"
            best.write_text(self.confirm_source)
            fields["confirm"] = dict(path=str(best), version=self.best_version, sha256=self.best_sha256,
                                     best_geomean=self.best_geomean, floor=self.floor, rounds=self.confirm_rounds,
                                     configs=list(self.confirm_configs or self.screen))
        return fields


def _is_path(source) -> bool:
    if isinstance(source, Path):
        return True
    return "\n" not in source and source.endswith(".py")


@dataclass
class JudgeProcess:
    """A judge started for one evaluation (now, or ahead of it as a spare): its work
    directory, its process waiting for the job on stdin, and the pipe its result comes on."""

    key: tuple  # (device, GPU, problem path, compile helpers): what it was started for
    work: Path
    proc: subprocess.Popen
    result_read: int  # our end of the result pipe
    result_fd: int  # the judge's end, by its number in the judge (its job names it)
    log_path: Path
    spare: bool = False

    def alive(self) -> bool:
        return self.proc.poll() is None

    def hang_up(self) -> None:
        """Tell a judge that got no job that none is coming (its stdin closes): it ends its
        runners itself and exits."""
        if self.proc.stdin and not self.proc.stdin.closed:
            with contextlib.suppress(OSError):  # it died already: nothing to tell
                self.proc.stdin.close()

    def discard(self, grace_s: float = 15.0) -> None:
        """End it and remove its directory (idempotent): hung up on, given grace_s to exit
        on its own, then killed."""
        if self.alive():
            self.hang_up()
            with contextlib.suppress(subprocess.TimeoutExpired):  # then it is killed
                self.proc.wait(timeout=grace_s)
        sandbox.kill_tree(self.proc)  # nothing the evaluation started may outlive it
        self.proc.wait()
        if self.result_read >= 0:
            with contextlib.suppress(OSError):
                os.close(self.result_read)
            self.result_read = -1
        shutil.rmtree(self.work, ignore_errors=True)


def spawn_judge(key: tuple, spare: bool = False) -> JudgeProcess:
    """`python -m avo.harness.judge DEVICE PROBLEM HELPERS` in a new work directory: it starts
    the candidate's runner and compile helpers (avo/harness/prestart.py), then waits for its job."""
    device, gpu, problem_path, helpers = key
    work = Path(tempfile.mkdtemp(prefix="avo-eval-"))
    read_fd, write_fd = os.pipe()
    log_path = work / "judge.log"
    argv = [sys.executable, "-s", "-m", "avo.harness.judge", device, problem_path, str(helpers)]
    with open(log_path, "wb") as log:
        proc = sandbox.spawn(argv, env=_scrubbed_env(work, device, gpu), cwd=work, pass_fds=(write_fd,),
                             stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT)
    os.close(write_fd)
    return JudgeProcess(key, work, proc, read_fd, write_fd, log_path, spare)


SPARES = spares.Spares(lambda key: spawn_judge(key, spare=True))  # enabled by an evolve run (flows/evolve.py)


def _run_judge(text, judge: JudgeProcess, suite, configs, quick, seeds, timeout,
               stages: "Stages | None" = None) -> EvalResult | None:
    """The judge's result for this job; None if it was dead before it could read the job."""
    work = judge.work
    cand = work / "candidate.py"
    cand.write_text(text)
    device, _, problem_path, _ = judge.key
    job = dict(candidate_path=str(cand), problem_path=problem_path, device=device, suite=suite,
               configs=configs, quick=quick, seeds=seeds, result_fd=judge.result_fd)
    if stages is not None:
        job.update(stages.job_fields(work))
    chunks: list[bytes] = []
    reader = threading.Thread(target=_drain, args=(judge.result_read, chunks), daemon=True)
    judge.result_read = -1  # the reader owns it now
    reader.start()
    proc = judge.proc
    try:
        proc.stdin.write(json.dumps(job).encode())
        proc.stdin.close()
    except BrokenPipeError:
        if judge.spare:
            return None  # a spare that died waiting: the caller starts a new judge
    timed_out = False
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        sandbox.kill_tree(proc)
        rc = proc.wait()
    reader.join(timeout=10)
    tail = _tail(judge.log_path)

    if timed_out:
        return EvalResult(status="timeout", message=f"no result within {timeout:.0f} s; process group killed",
                          log_tail=tail)
    payload = b"".join(chunks)
    if payload:
        try:
            result = EvalResult.from_json(payload.decode())
            result.log_tail = tail
            return result
        except (ValueError, TypeError, KeyError) as e:
            return EvalResult(status="crashed", message=f"unreadable result from the judge: {e}", log_tail=tail)
    if rc < 0:
        how = f"killed by signal {signal.Signals(-rc).name}"
    elif rc == 0:
        how = "exited with status 0 before reporting a result"
    else:
        how = f"exited with status {rc} without a result"
    return EvalResult(status="crashed", message=f"the judge {how}", log_tail=tail)


def _sanity_check(result: EvalResult, quick: bool) -> EvalResult:
    """A last look at the judge's record: an ok needs passed checks, and no figure
    may exceed what the hardware can do (a broken timing)."""
    if result.status != "ok":
        return result
    if not result.checks or not all(c.passed for c in result.checks):
        result.status, result.message = "rejected", "result claims ok without passing correctness checks"
    elif not quick and not result.timings:
        result.status, result.message = "rejected", "result claims ok without timings"
    else:
        peak = peak_tflops(result.env.get("gpu", ""), interpreter=result.interpreter)
        for t in result.timings:
            if not (0 < t.tflops <= peak):
                result.status = "rejected"
                result.message = f"{t.config}: {t.tflops:.1f} TFLOP/s is outside (0, {peak:.0f}]"
                break
    return result


def _scrubbed_env(work: Path, device: str, gpu: int | str | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k in ENV_KEEP or k.startswith(ENV_KEEP_PREFIXES)}
    env.update(
        HOME=str(work), TMPDIR=str(work), PYTHONDONTWRITEBYTECODE="1", PYTHONUNBUFFERED="1",
        PYTHONPATH=os.pathsep.join([str(REPO_ROOT)]),
        TRITON_CACHE_DIR=os.environ.get("TRITON_CACHE_DIR", str(Path.home() / ".triton" / "cache")),
    )
    if device == "cpu":
        env["TRITON_INTERPRET"] = "1"
        env["CUDA_VISIBLE_DEVICES"] = ""
    elif gpu is not None:
        # one evaluation per GPU: the evolve flow leases a GPU id (avo.gpu_pool) and pins the judge to it
        env["CUDA_VISIBLE_DEVICES"] = str(gpu)
    return env


def _drain(fd: int, chunks: list) -> None:
    with os.fdopen(fd, "rb") as f:
        while True:
            b = f.read(65536)
            if not b:
                return
            chunks.append(b)


def _tail(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    return data[-LOG_TAIL_CHARS:].decode(errors="replace")
