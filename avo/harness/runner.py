"""Evaluate an untrusted candidate kernel: the orchestrator's side of the harness.

`evaluate()` never runs candidate code in this process. It checks the source
statically, then starts `python -m avo.harness.worker` in a fresh temporary
directory, in a new process session, with a scrubbed environment (no API keys,
no tokens: only what CUDA/Triton need), memory limits on the CPU, and a
timeout after which the whole process group is killed. The worker reports one
JSON record through a pipe; its stdout/stderr (and the candidate's) go to a
log whose tail is kept in the record.

What this sandbox does NOT protect against — it is a referee for honest
mistakes and for reward hacking by a search process, not a security boundary:
- The candidate runs as the same user with the same file-system access: code
  that gets past the static checks (e.g. through a Triton/PyTorch bug or an
  unforeseen builtin path) can read or write files, open sockets, or forge the
  worker's result. Run avo on machines and accounts you are willing to expose
  to the code your operators generate (a container or VM per worker if not).
- A GPU kernel can read or write any device memory of its own process and can
  wedge the GPU (a hang needs the timeout; a hung context may need a reset).
- No network isolation and no limit on GPU memory beyond PyTorch's allocator.
- The Triton compilation cache is shared between evaluations for speed.
"""
from __future__ import annotations

import json
import os
import resource
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from avo.candidate import source_sha256
from avo.harness.peak import peak_tflops
from avo.problem import DEFAULT_PROBLEM, REPO_ROOT, load_problem
from avo.harness.static_checks import SourceError, check_source
from avo.records import EvalResult

DEFAULT_TIMEOUT_S = {"cuda": 900.0, "cpu": 300.0}
LOG_TAIL_CHARS = 4000
CPU_ADDRESS_SPACE_BYTES = 16 * 2**30  # a runaway allocation fails instead of taking the machine

# Environment variables a worker keeps (by exact name or prefix); everything
# else — API keys, tokens, cloud credentials, the user's config — is dropped.
ENV_KEEP = {"PATH", "LANG", "LC_ALL", "LC_CTYPE", "LD_LIBRARY_PATH", "TRITON_CACHE_DIR",
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
    gpu: int | str | None = None,  # pin the worker to this GPU (CUDA_VISIBLE_DEVICES); None: inherit
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
        violations = check_source(text)
    except SourceError as e:
        return EvalResult(status="compile_error", message=str(e), **base)
    if violations and static_checks:
        more = f" (+{len(violations) - 1} more)" if len(violations) > 1 else ""
        return EvalResult(status="rejected", message=f"static check, {violations[0]}{more}",
                          log_tail="\n".join(map(str, violations)), **base)

    timeout = timeout_s or DEFAULT_TIMEOUT_S[device]
    seeds = seeds or [secrets.randbits(31) for _ in range(6)]
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="avo-eval-") as work:
        result = _run_worker(text, Path(work), device, suite, configs, quick, seeds, Path(problem_path), timeout,
                             gpu)
    result.wall_s = round(time.monotonic() - t0, 3)
    result.source_sha256 = sha
    result.suite, result.device, result.interpreter = suite, device, device == "cpu"
    return _sanity_check(result, quick)


def _is_path(source) -> bool:
    if isinstance(source, Path):
        return True
    return "\n" not in source and source.endswith(".py")


def _run_worker(text, work: Path, device, suite, configs, quick, seeds, problem_path, timeout,
                gpu=None) -> EvalResult:
    cand = work / "candidate.py"
    cand.write_text(text)
    read_fd, write_fd = os.pipe()
    job = dict(candidate_path=str(cand), problem_path=str(problem_path), device=device, suite=suite,
               configs=configs, quick=quick, seeds=seeds, result_fd=write_fd)
    log_path = work / "worker.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-s", "-m", "avo.harness.worker"],
            stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, cwd=work,
            env=_scrubbed_env(work, device, gpu), pass_fds=(write_fd,), start_new_session=True,
            preexec_fn=_cpu_limits if device == "cpu" else None,
        )
    os.close(write_fd)
    chunks: list[bytes] = []
    reader = threading.Thread(target=_drain, args=(read_fd, chunks), daemon=True)
    reader.start()
    try:
        proc.stdin.write(json.dumps(job).encode())
        proc.stdin.close()
    except BrokenPipeError:
        pass  # the worker died at start; its exit code says why
    timed_out = False
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(proc)
        rc = proc.wait()
    reader.join(timeout=10)
    tail = _tail(log_path)

    if timed_out:
        return EvalResult(status="timeout", message=f"no result within {timeout:.0f} s; process group killed",
                          log_tail=tail)
    _kill_group(proc)  # nothing the candidate started may outlive its evaluation
    payload = b"".join(chunks)
    if payload:
        try:
            result = EvalResult.from_json(payload.decode())
            result.log_tail = tail
            return result
        except (ValueError, TypeError, KeyError) as e:
            return EvalResult(status="crashed", message=f"unreadable result from the worker: {e}", log_tail=tail)
    if rc < 0:
        how = f"killed by signal {signal.Signals(-rc).name}"
    elif rc == 0:
        how = "exited with status 0 before reporting a result"
    else:
        how = f"exited with status {rc} without a result"
    return EvalResult(status="crashed", message=f"the worker {how}", log_tail=tail)


def _sanity_check(result: EvalResult, quick: bool) -> EvalResult:
    """Distrust the worker's record: an ok needs passed checks, and no figure may
    exceed what the hardware can do (a forged or broken timing)."""
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
        # one evaluation per GPU: the evolve flow leases a GPU id (avo.gpu_pool) and pins the worker to it
        env["CUDA_VISIBLE_DEVICES"] = str(gpu)
    return env


def _cpu_limits() -> None:  # runs in the child between fork and exec
    resource.setrlimit(resource.RLIMIT_AS, (CPU_ADDRESS_SPACE_BYTES, CPU_ADDRESS_SPACE_BYTES))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


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
