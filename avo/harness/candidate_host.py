"""The candidate's runner: the ONE process that imports untrusted kernel code.

Started by the judge (avo/harness/judge.py) inside the OS sandbox
(avo/harness/sandbox.py) as

    python -m avo.harness.candidate_host SOCKET_FD CANDIDATE_PATH DEVICE [ENTRY]

It maps the judge's arena, then answers `batch` messages: for every call, views
the judge's input buffers, calls `attention(q, k, v, causal=, sm_scale=)` and
copies the returned tensor into the judge's output buffer; after the batch it
synchronizes and says `done`. It never learns whether a call is checked or timed
(every call is both), holds no seeds, no reference, no tolerances and no record,
and nothing it says is taken as evidence: the judge reads the bytes it wrote and
keeps the clock. Two things it reports ARE trusted, and are the weak spot (see
docs/security.md): the kernels and aten operators a profiler saw during the calls
(library-compute check) and the audit violations below. They hold only while
the candidate cannot run arbitrary Python in this process; the audit hook and
the static checks make that hard, not impossible.

Trusted set-up done here before the candidate is imported: the Triton
interpreter's bf16 `tl.dot` made exact (it multiplies raw bit patterns), a
profiler over every thread, and a Python audit hook (which cannot be removed
from Python) that refuses and records frame walking into this file, gc and
ctypes access, new sockets, processes other than the compiler's, and writes
outside the sandbox's work directory.
"""
from __future__ import annotations

import os
import resource
import socket
import sys
import threading
import traceback
from collections import Counter

from avo.harness import arena as arena_mod
from avo.harness import wire

THIS_FILE = os.path.abspath(__file__)
# Processes the Triton compiler itself starts (ptxas, the launcher's C compiler, ldconfig).
COMPILER_TOOLS = ("ptxas", "cuobjdump", "nvdisasm", "gcc", "cc", "clang", "g++", "c++", "ldconfig", "nvcc")
CPU_ADDRESS_SPACE_BYTES = 16 * 2**30
FRAME_ATTRS = {"gi_frame", "cr_frame", "ag_frame", "tb_frame"}
WRITE_MODES = set("wax+")


class AuditGuard:
    """Refuses, and records, what no kernel needs. Enforcing from the candidate's import on."""

    def __init__(self, writable_roots: list[str]):
        self.enforcing = False
        self.violations: list[str] = []
        self.writable = tuple(os.path.realpath(p) + os.sep for p in writable_roots) + ("/dev/null",)
        self._inside = threading.local()

    def __call__(self, event: str, args: tuple) -> None:
        if not self.enforcing or getattr(self._inside, "busy", False):
            return
        self._inside.busy = True
        try:
            why = self.judge(event, args)
        finally:
            self._inside.busy = False
        if why:
            self.violations.append(why)
            raise PermissionError(f"avo sandbox: {why}")

    def judge(self, event: str, args: tuple) -> str | None:
        if event == "object.__getattr__" and args[1] in FRAME_ATTRS:
            return f"frame access through .{args[1]}"
        if event == "sys._getframe" and _frame_file(args[0]) == THIS_FILE:
            return "sys._getframe reached the runner's own frames"
        if event in ("sys._current_frames", "sys.settrace", "sys.setprofile", "gc.get_objects",
                     "gc.get_referrers", "gc.get_referents"):
            return f"{event} is not allowed"
        if event.startswith("ctypes."):
            return f"{event} is not allowed"
        if event in ("socket.__new__", "socket.connect", "socket.bind", "socket.sendto"):
            return f"{event}: no sockets"
        if event in ("os.system", "os.fork", "os.forkpty", "os.exec", "os.spawn", "os.posix_spawn", "os.kill",
                     "os.killpg", "pty.spawn"):
            return f"{event} is not allowed"
        if event == "subprocess.Popen":
            exe = os.path.basename(str(args[0] or (args[1][0] if args[1] else "")))
            if not exe.startswith(COMPILER_TOOLS):
                return f"subprocess {exe!r} is not a compiler tool"
        if event == "open":
            path, mode, flags = args
            if isinstance(path, int):
                return None
            path = os.fsdecode(path)
            real = os.path.realpath(path)
            if real.startswith("/proc/") and not real.startswith(("/proc/self/", f"/proc/{os.getpid()}/")) \
                    and real.split("/")[2].isdigit():
                return f"reading another process through {path}"
            writing = (mode and WRITE_MODES & set(str(mode))) or (mode is None and flags & (os.O_WRONLY | os.O_RDWR))
            if writing and not real.startswith(self.writable) and real != "/dev/null":
                return f"writing {path} (outside the work directory)"
        if event in ("os.remove", "os.rename", "os.rmdir", "shutil.rmtree", "os.symlink", "os.link",
                     "os.chmod", "os.chown", "os.truncate"):
            path = os.path.realpath(os.fsdecode(args[0])) if isinstance(args[0], (str, bytes)) else ""
            if not path.startswith(self.writable):
                return f"{event} on {args[0]} (outside the work directory)"
        return None


def _frame_file(frame) -> str:
    try:
        return os.path.abspath(frame.f_code.co_filename)
    except Exception:  # noqa: BLE001 - an odd frame object: not ours
        return ""


# ------------------------------------------------------------ interpreter fix
def make_interpreter_bf16_exact() -> None:
    """Triton's interpreter stores bf16 as uint16 and multiplies the raw bit
    patterns in `tl.dot`; widen bf16 operands to float32 first (exact), so kernels
    written for the GPU run unchanged on the CPU."""
    import numpy as np
    import triton.language as tl
    from triton.runtime import interpreter

    builder = interpreter.InterpreterBuilder
    original = builder.create_dot

    def widen(handle):
        if handle.dtype.scalar == tl.bfloat16:
            data = (handle.data.astype(np.uint32) << 16).view(np.float32)
            return interpreter.TensorHandle(data, tl.float32)
        return handle

    def create_dot(self, a, b, d, *rest):
        return original(self, widen(a), widen(b), d, *rest)

    builder.create_dot = create_dot


# --------------------------------------------------------------- activity
class ActivityWatch:
    """Every aten operator (all threads) and, on a GPU, every kernel run while
    the candidate is loaded: the evidence for the library-compute check."""

    def __init__(self, device: str):
        import torch
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
        self.scope = "all threads"
        try:
            from torch._C._profiler import _ExperimentalConfig

            config = _ExperimentalConfig(profile_all_threads=True)
        except (ImportError, TypeError):
            config, self.scope = None, "calling thread only (this torch has no profile_all_threads)"
        kwargs = {"experimental_config": config} if config is not None else {}
        self.prof = profile(activities=activities, record_shapes=True, **kwargs)
        self.prof.start()
        self.torch = torch

    def report(self) -> dict:
        self.prof.stop()
        ops: Counter = Counter()
        elements: Counter = Counter()
        kernels: Counter = Counter()
        for e in self.prof.events():
            if e.device_type == self.torch.autograd.DeviceType.CUDA:
                kernels[e.name] += 1
            elif e.name.startswith("aten::"):
                ops[e.name] += 1
                elements[e.name] += max((_numel(s) for s in (e.input_shapes or []) if isinstance(s, list)),
                                        default=0)
        return {"ops": dict(ops), "op_elements": dict(elements), "kernels": dict(kernels), "scope": self.scope}


def _numel(shape) -> int:
    n = 1
    for s in shape:
        if not isinstance(s, int):
            return 0
        n *= s
    return n


# ------------------------------------------------------------------- main
def main() -> int:
    fd, candidate_path, device = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    entry = sys.argv[4] if len(sys.argv) > 4 else "attention"  # the baselines module hosts `cudnn`, `fa2`
    sock = socket.socket(fileno=fd)
    workdir = os.path.dirname(os.path.abspath(candidate_path))
    import torch

    if device == "cpu":
        make_interpreter_bf16_exact()
        # a runaway host allocation fails here instead of taking the machine (the uid in the box cannot raise it)
        resource.setrlimit(resource.RLIMIT_AS, (CPU_ADDRESS_SPACE_BYTES, CPU_ADDRESS_SPACE_BYTES))
    message, fds = wire.recv(sock, with_fds=True)
    shared = arena_mod.open_cpu(message, fds[0]) if device == "cpu" else arena_mod.open_cuda(message)
    watch = ActivityWatch(device)
    guard = AuditGuard([workdir, "/tmp", "/dev/shm"])
    sys.addaudithook(guard)

    # -- load: from here on the candidate's code runs
    guard.enforcing = True
    try:
        attention = _load_attention(candidate_path, entry)
    except BaseException as e:  # noqa: BLE001 - the candidate's error is data for the judge
        wire.send(sock, {"error": _describe(e, guard), "violations": guard.violations})
        return 0
    wire.send(sock, {"ready": True, "violations": guard.violations})

    while True:
        try:
            message = wire.recv(sock)
        except wire.WireError:
            return 0
        if message.get("op") == "batch":
            reply = _run_batch(attention, shared, message["calls"], device, torch, guard)
            reply["violations"] = guard.violations
            wire.send(sock, reply)
        elif message.get("op") == "finish":
            guard.enforcing = False
            report = watch.report()
            report["violations"] = guard.violations
            wire.send(sock, report)
            return 0


def _load_attention(path: str, entry: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location("candidate", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["candidate"] = module
    spec.loader.exec_module(module)
    attention = getattr(module, entry, None)
    if not callable(attention):
        raise TypeError(f"the file defines no callable `{entry}`")
    return attention


def _run_batch(attention, shared, calls: list, device: str, torch, guard) -> dict:
    for i, call in enumerate(calls):
        q, k, v, out = (shared.view(*_spec(call[name], torch)) for name in ("q", "k", "v", "out"))
        try:
            result = attention(q, k, v, causal=bool(call["causal"]), sm_scale=call["sm_scale"])
            if not isinstance(result, torch.Tensor):
                return {"error": f"attention returned {type(result).__name__}, not a Tensor", "call": i,
                        "kind": "incorrect"}
            if tuple(result.shape) != tuple(out.shape) or result.dtype != out.dtype \
                    or result.device.type != out.device.type:
                return {"error": f"output is {tuple(result.shape)} {result.dtype} on {result.device}; expected "
                                 f"{tuple(out.shape)} {out.dtype} on {out.device}", "call": i, "kind": "incorrect"}
            out.copy_(torch.Tensor.as_subclass(result, torch.Tensor))
        except BaseException as e:  # noqa: BLE001 - reported to the judge as data
            return {"error": _describe(e, guard), "call": i, "kind": "crashed"}
    if device == "cuda":
        torch.cuda.synchronize()
    return {"done": len(calls)}


def _spec(spec: list, torch):
    offset, shape, dtype = spec
    return int(offset), tuple(int(s) for s in shape), getattr(torch, dtype)


def _describe(e: BaseException, guard: AuditGuard) -> str:
    enforcing, guard.enforcing = guard.enforcing, False  # formatting walks tracebacks
    try:
        traceback.print_exception(e, file=sys.stderr)
        text = str(e).strip().splitlines()
        return f"{type(e).__name__}: {(text[0] if text else '')[:300]}"
    finally:
        guard.enforcing = enforcing


if __name__ == "__main__":
    sys.exit(main())
