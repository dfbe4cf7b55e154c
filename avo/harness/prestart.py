"""What a judge starts before its job arrives: the candidate's runner and its compile helpers.

A judge process is started with what it will judge on the command line (device,
problem, helpers) and its job (the candidate, the seeds) on stdin. Before it reads
the job it makes its CUDA context and starts the runners, which import PyTorch and
Triton and make theirs, then wait for their first message. So a judge the
orchestrator started ahead of time (avo/harness/spares.py) has spent those ~8 s
(H200: 7-10 s per candidate, a third of a screened candidate's wall) before the
candidate exists. No candidate code runs before the job: each runner imports the
candidate's file only when the judge sends it the arena, after writing the file,
and each runner serves one candidate only.

Compile helpers are more runners of the same candidate, in the same work directory
(so the same Triton cache). While the main runner makes the compile stage's
verified calls one by one, the helpers call the same shapes, later ones first, on
inputs of their own, so most of the main runner's calls find their kernels
compiled; they go on with the shapes the cascade compiles past its gate. On a GPU their
calls, like the compile stage's, compile and load kernels but launch none
(compile_only.py), and so does the problem's warm-up here. They see
a scratch arena, never the judge's buffers, and they are killed the moment the
judge takes the GPU lock: no helper runs while anything is checked or timed.
"""
from __future__ import annotations

import contextlib
import random
import select
import socket
import time
from pathlib import Path

from avo.harness import arena as arena_mod, calls, compile_only, wire
from avo.harness.host import Host
from avo.harness.layout import layout

HELPERS = {"cuda": 2, "cpu": 0}  # per judge; the interpreter compiles nothing, so it needs none
MAX_REPLIES = 64  # a helper's answers read at its end: its "ready" and one per shape (a plan has ~20)


class Prestarted:
    """The runner (and helpers) for `workdir/candidate.py`, started before that file exists."""

    def __init__(self, device: str, problem_path: str, workdir: Path, helpers: int):
        t0 = time.monotonic()
        import torch

        from avo.problem import load_problem

        if device == "cuda":
            torch.cuda.init()
            torch.empty(1, device="cuda")  # the judge's own CUDA context, before its job
        self.device, self.problem_path = device, str(problem_path)
        self.problem = load_problem(Path(problem_path))
        warm_up = getattr(self.problem, "warm_up", None)  # what expected() will need (optional)
        if callable(warm_up):
            # compiled and loaded, not run: a spare starts while another judge times on this GPU
            with compile_only.compile_only() if device == "cuda" and compile_only.install() \
                    else contextlib.nullcontext():
                warm_up(device)
        self.entry = calls.entry(self.problem)
        self.path = workdir / "candidate.py"
        self.log = open(workdir / "runner.log", "ab")
        self.runner: Host | None = Host(self.path, device, workdir, self.log, entry=self.entry)
        self.helpers = [Host(self.path, device, workdir, self.log, entry=self.entry) for _ in range(helpers)]
        self.record = {"helpers": helpers, "warmed": 0, "failed": 0, "killed_before_lock": None}
        self.violations: list[str] = []
        self._scratch = None
        # the judge's own part (imports, CUDA context, runners spawned; their imports go on in them)
        self.timing = {"prepared_s": round(time.monotonic() - t0, 3)}

    def matches(self, job: dict) -> bool:
        return job.get("device") == self.device and str(job.get("problem_path")) == self.problem_path \
            and Path(job.get("candidate_path", "")) == self.path

    def take_runner(self) -> Host | None:
        """The pre-started runner, once, if it is still alive (else the judge starts one)."""
        host, self.runner = self.runner, None
        if host is not None and host.proc.poll() is not None:
            host.kill()
            return None
        return host

    # ------------------------------------------------------------ helpers
    def start_helpers(self, shapes: list) -> None:
        """Hand the helpers `shapes`, dealt so that each works from a different place in the
        list (the main runner goes through it from the start)."""
        alive = [h for h in self.helpers if h.proc.poll() is None]
        if not alive or not shapes:
            self.stop_helpers()
            return
        self._scratch = arena_mod.create(self.device, arena_mod.ALIGN)  # they never see the judge's buffers
        n = len(alive) + 1
        for i, host in enumerate(alive):
            mine = [s for j, s in enumerate(shapes) if j % n == i + 1] \
                + [s for j, s in enumerate(shapes) if j % n != i + 1]  # then the rest, if time is left
            try:
                host.map_arena(self._scratch)
                for shape in mine:  # one message each: each answer counts one shape compiled
                    wire.send(host.sock, {"op": "warm", "calls": [self.warm_call(shape)]})
            except OSError:  # it died at start: the main runner compiles alone
                continue

    def warm_call(self, shape) -> dict:
        inputs = [[list(dims), dt] for _, dims, dt, role in layout(self.problem, shape) if role == "input"]
        args = self.problem.draw_call(shape, random.Random(0), False, 0).get("args", {})  # any valid arguments
        return {"inputs": inputs, "args": dict(args)}

    def stop_helpers(self) -> None:
        """Kill every helper (their process trees and any GPU work with them), after reading
        what they said: a sandbox violation in a helper is the candidate's as much as one in
        the main runner."""
        if not self.helpers:
            return
        for host in self.helpers:
            self._read_replies(host)
            host.kill()
        self.record["killed_before_lock"] = all(h.proc.poll() is not None for h in self.helpers)
        self.record["stopped_at"] = round(time.monotonic(), 4)
        self.helpers = []

    def _read_replies(self, host: Host) -> None:
        """What the helper has sent so far: at most one answer per message it was sent (a
        helper writing without end cannot keep the judge, which holds the GPU lock, here)."""
        host.sock.settimeout(0.2)  # a helper that sends half a message cannot hold the judge
        try:
            for _ in range(MAX_REPLIES):
                if not select.select([host.sock], [], [], 0)[0]:
                    break
                reply = wire.recv(host.sock)
                self.violations += [str(v)[:160] for v in reply.get("violations") or []]
                if "warmed" in reply:
                    self.record["warmed"] += int(reply.get("warmed") or 0)
                    self.record["failed"] += int(reply.get("failed") or 0)
        except (OSError, socket.timeout, wire.WireError, ValueError, TypeError):
            pass  # dead or garbled: it is killed next; its work is only a cache

    def close(self) -> None:
        if self.runner is not None:
            self.runner.kill()
            self.runner = None
        self.stop_helpers()
        self.log.close()


def parse_argv(argv: list[str]) -> tuple[str, str, int] | None:
    """`python -m avo.harness.judge DEVICE PROBLEM_PATH HELPERS`: what to start before the job."""
    if not argv:
        return None
    device, problem_path, helpers = argv
    if device not in ("cuda", "cpu") or not helpers.isdigit():
        raise SystemExit(f"usage: python -m avo.harness.judge [cuda|cpu PROBLEM_PATH HELPERS] (got {argv})")
    return device, problem_path, max(0, min(int(helpers), 8))
