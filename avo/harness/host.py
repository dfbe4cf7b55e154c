"""The judge's handle on one runner process (avo/harness/candidate_host.py).

Starts the runner inside the OS sandbox with one end of a socket pair, maps the
judge's arena into it, sends call batches and waits for `done` under a watchdog:
a runner that does not answer in time is killed and the evaluation ends with
`timeout` — seconds, not the whole evaluation's budget. Everything the runner
sends is parsed as JSON data; nothing it says about timing is used.
"""
from __future__ import annotations

import os
import select
import socket
import sys
import time
from pathlib import Path

from avo.harness import sandbox, wire
from avo.problem import REPO_ROOT


class RunnerFailed(Exception):
    """The runner died, hung past its watchdog, or broke the protocol."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status, self.message = status, message


WATCH_EVERY_S = 1.0


class Host:
    watch = None  # () -> str: why the runner is hung, "" while it is not (judge_sharing.py, hang_watch)

    def __init__(self, path: Path, device: str, workdir: Path, log, entry: str = "attention",
                 env: dict | None = None):
        self.device = device
        self.killed = False
        self.box = sandbox.detect()
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock = parent_end
        argv = [sys.executable, "-s", "-m", "avo.harness.candidate_host", str(child_end.fileno()), str(path),
                device, entry]
        # AVO_SANDBOX_PIDS=shared keeps the host's PID namespace (with /proc showing only the box's uid):
        # for drivers whose CUDA IPC does not cross PID namespaces
        shared_pids = os.environ.get("AVO_SANDBOX_PIDS") == "shared"
        wrapped = self.box.wrap(argv, workdir=workdir, private_pids=not shared_pids)
        self.level = self.box.level + (" (shared pid namespace)" if shared_pids and self.box.level != "none" else "")
        self.proc = sandbox.spawn(wrapped, env=env or runner_env(workdir, device),
                                  cwd=workdir, pass_fds=(child_end.fileno(),), stdin=None, stdout=log, stderr=log)
        child_end.close()

    # ------------------------------------------------------------ protocol
    def map_arena(self, arena) -> None:
        wire.send(self.sock, arena.descriptor, fds=arena.fds)

    def remap_arena(self, arena, timeout_s: float) -> dict:
        """Point the runner at another arena (the timed calls', judge.py timing_arena); its reply."""
        wire.send(self.sock, {"op": "arena", **arena.descriptor}, fds=arena.fds)
        return self.receive(timeout_s, "mapping the timing arena")

    def wait_ready(self, timeout_s: float) -> dict:
        return self.receive(timeout_s, "load")

    def start_batch(self, calls: list[dict], op: str = "batch") -> None:
        """op "batch": run the calls; "compile": compile their kernels, launch nothing."""
        wire.send(self.sock, {"op": op, "calls": calls})

    def receive(self, timeout_s: float, what: str) -> dict:
        """The runner's next message, or RunnerFailed (timeout / crash / garbage). While
        `watch` is set (judge_sharing.py, hang_watch) it is asked every WATCH_EVERY_S
        whether the runner is hung: a reason ends the wait as the watchdog would."""
        deadline = time.monotonic() + timeout_s
        while True:
            left = max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self.sock], [], [], min(left, WATCH_EVERY_S) if self.watch else left)
            if ready:
                break
            if time.monotonic() >= deadline:
                self.kill()
                raise RunnerFailed("timeout", f"{what}: no answer within {timeout_s:.1f} s; the runner was killed")
            why = self.watch() if self.watch else ""
            if why:
                self.kill()
                raise RunnerFailed("timeout", f"{what}: {why}; the runner was killed")
        try:
            return wire.recv(self.sock)
        except (wire.WireError, OSError) as e:
            rc = self.wait_exit(5.0)
            how = f"exit status {rc}" if rc is not None and rc >= 0 else \
                f"signal {-rc}" if rc is not None else "no exit"
            raise RunnerFailed("crashed", f"{what}: the runner died ({how}): {e}") from None

    def finish(self, timeout_s: float = 120.0) -> dict:
        wire.send(self.sock, {"op": "finish"})
        return self.receive(timeout_s, "finish")

    # ------------------------------------------------------------- process
    def wait_exit(self, timeout_s: float):
        try:
            return self.proc.wait(timeout=timeout_s)
        except Exception:  # noqa: BLE001 - still running: the caller kills it
            return None

    def kill(self) -> None:
        """Once: a second kill_tree would signal a process group whose id may be reused by then."""
        if self.killed:
            return
        self.killed = True
        sandbox.kill_tree(self.proc)
        try:
            self.proc.wait(timeout=10)
        except Exception:  # noqa: BLE001 - a process in uninterruptible sleep: nothing more to do
            pass
        self.sock.close()


def runner_env(workdir: Path, device: str) -> dict:
    """Only what CUDA and Triton need; a private Triton cache and HOME in the work directory."""
    keep = ("PATH", "LANG", "LC_ALL", "LD_LIBRARY_PATH", "CUDA_VISIBLE_DEVICES", "CUDA_HOME", "CUDA_PATH",
            "TRITON_PTXAS_PATH", "NCCL_NVLS_ENABLE", "TORCH_SYMM_MEM_DISABLE_MULTICAST", "NVSHMEM_DISABLE_NVLS")
    env = {k: v for k, v in os.environ.items() if k in keep or k.startswith("NVIDIA_")}
    env.update(HOME=str(workdir), TMPDIR=str(workdir), PYTHONDONTWRITEBYTECODE="1", PYTHONUNBUFFERED="1",
               PYTHONPATH=str(REPO_ROOT), TRITON_CACHE_DIR=str(workdir / "triton-cache"))
    if device == "cpu":
        env.update(TRITON_INTERPRET="1", CUDA_VISIBLE_DEVICES="")
    return env


def clock() -> float:
    return time.perf_counter()
