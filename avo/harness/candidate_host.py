"""The candidate's runner: the only kind of process that imports untrusted kernel code.

Started by the judge (avo/harness/judge.py) inside the OS sandbox
(avo/harness/sandbox.py) as

    python -m avo.harness.candidate_host SOCKET_FD CANDIDATE_PATH DEVICE ENTRY

It maps the judge's arena, then answers `batch` messages: for every call, views
the judge's input buffers, calls the problem's entry point on them with the
call's keyword arguments (attention: `attention(q, k, v, causal=, sm_scale=)`;
RMSNorm: `rmsnorm(x, w, eps=)`) and copies the returned tensor into the judge's
output buffer; after the batch it synchronizes and says `done`. A compile helper
(another runner of the same candidate, in the same work directory) gets `warm`
messages instead: calls on inputs of its own, so that the kernels compile into the
candidate's Triton cache while the main runner compiles others. On a GPU the
compile stage's calls come as `compile` messages, and a helper's calls are made the
same way: kernels compile and load but none launches (compile_only.py), so they
stay off a GPU another judge is timing on. ENTRY is the
function's name; `trusted:NAME` is the judge's own baseline code (a library
call), which runs without the profiler and with the numpy bridges open:
anything else is watched. It never learns whether a call is checked or timed
(every call is both), holds no seeds, no reference, no tolerances and no record,
and nothing it says about the calls is taken as evidence: the judge reads the
bytes and keeps the clock.

Two things it reports ARE trusted, and are the weak spot (docs/security.md): the
kernels / aten operators a profiler saw (the library-compute check) and the audit
violations. To keep them out of the candidate's reach, the candidate's code only
ever runs on a worker thread whose stack holds nothing but the call (walking
frames back from it ends there); the main thread keeps the audit record and the
profiler's read-out, captured before the candidate is imported (the hook is a
closure, the read-out uses PyTorch's C functions). What this does not stop: the
candidate patching Python-level library code the main thread later uses (json,
socket) to forge a message. The static checks forbid the imports that needs.

Trusted set-up before the candidate is imported: the Triton interpreter's bf16
`tl.dot` made exact (it multiplies raw bit patterns), the numpy bridges closed
(the interpreter needs none; a kernel computing in numpy would be invisible to
the profiler), a profiler over every thread, and a Python audit hook (which
cannot be removed from Python).
"""
from __future__ import annotations

import contextlib
import inspect
import os
import queue
import resource
import socket
import sys
import threading
import traceback
from collections import Counter

from avo.harness import arena as arena_mod
from avo.harness import compile_only, wire

THIS_FILE = os.path.abspath(__file__)
TRUSTED = "trusted:"  # avo.harness.layout.TRUSTED: an entry prefix only the judge writes
# Processes the Triton compiler itself starts (ptxas, the launcher's C compiler, ldconfig).
# (Seen on the H100 image: Triton 3.6 also runs `file` on the CUDA libraries it finds.)
COMPILER_TOOLS = ("ptxas", "cuobjdump", "nvdisasm", "gcc", "cc", "clang", "g++", "c++", "ldconfig", "nvcc",
                  "file", "uname", "which", "nvidia-smi")
# Shared libraries Triton's driver opens through ctypes (the CUDA driver, runtime and JIT).
# (libnvidia-ml: PyTorch's profiler and device queries; seen on the H100 image.)
TRUSTED_LIBRARIES = ("libcuda.so", "libcudart", "libnvrtc", "libnvJitLink", "libnvidia-ml.so", "libc.so", "libdl.so")
CPU_ADDRESS_SPACE_BYTES = 16 * 2**30
FRAME_ATTRS = {"gi_frame", "cr_frame", "ag_frame"}
WRITE_MODES = set("wax+")


# ------------------------------------------------------------------ audit
def make_audit_hook(writable_roots: list[str]):
    """(hook, state, violations): a Python audit hook that refuses, and records, what no
    kernel needs, once state["enforcing"] is set. A closure over helpers captured now, so
    that patching os.path or builtins later changes nothing here."""
    # "trusted": the runner's own thread while it maps the timing arena (its ctypes calls and mmap),
    # by thread id: the candidate's thread is watched all the while
    state, violations = {"enforcing": False, "trusted": None}, []
    writable = tuple(os.path.realpath(p) + os.sep for p in writable_roots)
    realpath, basename, abspath, fsdecode = os.path.realpath, os.path.basename, os.path.abspath, os.fsdecode
    pid, write_flags, inside = str(os.getpid()), os.O_WRONLY | os.O_RDWR, threading.local()
    _str, _bytes, _int, _set, _isinstance, _getattr = str, bytes, int, set, isinstance, getattr
    get_ident = threading.get_ident

    def frame_file(frame) -> str:
        try:
            return abspath(frame.f_code.co_filename)
        except Exception:  # noqa: BLE001 - an odd frame object: not ours
            return ""

    def outside(path) -> bool:
        return not (realpath(fsdecode(path)) + os.sep).startswith(writable)

    def judge(event: str, args: tuple):
        if event == "object.__getattr__" and args[1] in FRAME_ATTRS:
            return f"frame access through .{args[1]}"
        if event == "sys._getframe" and frame_file(args[0]) == THIS_FILE:
            return "sys._getframe reached the runner's own frames"
        if event in ("sys._current_frames", "sys.settrace", "sys.setprofile", "gc.get_objects",
                     "gc.get_referrers", "gc.get_referents"):
            return f"{event} is not allowed"
        if event == "ctypes.dlopen":
            name = basename(_str(args[0] or ""))
            return None if name.startswith(TRUSTED_LIBRARIES) else f"ctypes.dlopen({args[0]!r}) is not allowed"
        if event.startswith("ctypes.") and event not in ("ctypes.dlsym", "ctypes.dlsym/handle"):
            return f"{event} is not allowed"
        if event in ("socket.__new__", "socket.connect", "socket.bind", "socket.sendto"):
            return f"{event}: no sockets"
        if event in ("os.system", "os.fork", "os.forkpty", "os.spawn", "os.kill", "os.killpg", "pty.spawn"):
            return f"{event} is not allowed"
        if event in ("subprocess.Popen", "os.posix_spawn", "os.exec"):  # the compiler's own tools only
            program = args[0] if args[0] else (args[1][0] if args[1] else "")
            exe = basename(fsdecode(program) if _isinstance(program, (_str, _bytes)) else _str(program))
            return None if exe.startswith(COMPILER_TOOLS) else f"starting {exe!r}: not a compiler tool"
        if event == "open":
            path, mode, flags = args
            if _isinstance(path, _int):
                return None
            real = realpath(fsdecode(path))
            parts = real.split("/")
            if real.startswith("/proc/") and len(parts) > 2 and parts[2].isdigit() and parts[2] != pid:
                return f"reading another process through {path}"
            writing = (mode and WRITE_MODES & _set(_str(mode))) or (mode is None and flags & write_flags)
            if writing and real != "/dev/null" and outside(path):
                return f"writing {path} (outside the work directory)"
        if event in ("os.remove", "os.rename", "os.rmdir", "shutil.rmtree", "os.symlink", "os.link",
                     "os.chmod", "os.chown", "os.truncate"):
            if not _isinstance(args[0], (_str, _bytes)) or outside(args[0]):
                return f"{event} on {args[0]} (outside the work directory)"
        return None

    def hook(event: str, args: tuple) -> None:
        if not state["enforcing"] or _getattr(inside, "busy", False) or state["trusted"] == get_ident():
            return
        inside.busy = True
        try:
            why = judge(event, args)
        finally:
            inside.busy = False
        if why:
            violations.append(why)
            raise PermissionError(f"avo sandbox: {why}")

    return hook, state, violations


# ------------------------------------------------------- trusted set-up
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


def close_numpy_bridges(violations: list) -> None:
    """Tensor -> numpy and back: the interpreter uses none of these (it reads memory
    through pointers); a kernel that does its products in numpy would be invisible to
    the profiler, so the bridges refuse, and the attempt is recorded."""
    import torch

    def refuse(name):
        def bridge(*args, **kwargs):
            violations.append(f"{name}: numpy bridges are closed (compute must be in Triton kernels)")
            raise PermissionError(f"avo sandbox: {name} is not available to candidates")
        return bridge

    for name in ("numpy", "__array__", "__dlpack__"):
        setattr(torch.Tensor, name, refuse(f"Tensor.{name}"))
    for name in ("from_numpy", "from_dlpack", "frombuffer"):
        setattr(torch, name, refuse(f"torch.{name}"))


def start_activity_watch(device: str):
    """Start a profiler over the whole process and return report(): every kernel (GPU)
    or aten operator with its largest input's size (CPU) seen since. The read-out calls
    PyTorch's C functions captured here, not the Python profiler classes."""
    import torch
    from torch._C._autograd import DeviceType, _disable_profiler, _KinetoEvent, _ProfilerResult
    from torch.profiler import ProfilerActivity, profile

    disable, events, name_of, device_of, shapes_of = (_disable_profiler, _ProfilerResult.events, _KinetoEvent.name,
                                                      _KinetoEvent.device_type, _KinetoEvent.shapes)
    kwargs = {"acc_events": True} if "acc_events" in inspect.signature(profile.__init__).parameters else {}
    if device == "cuda":
        # CUPTI sees every kernel of the process (all threads, all streams); recording each aten op
        # too would cost host time per call and starve the GPU on short calls
        scope = "GPU kernels, all threads and streams"
        prof = profile(activities=[ProfilerActivity.CUDA], **kwargs)
    else:
        scope = "aten operators, all threads"
        try:
            from torch._C._profiler import _ExperimentalConfig

            kwargs["experimental_config"] = _ExperimentalConfig(profile_all_threads=True)
        except (ImportError, TypeError):
            scope = "aten operators, calling thread only (this torch has no profile_all_threads)"
        prof = profile(activities=[ProfilerActivity.CPU], record_shapes=True, **kwargs)
    prof.start()
    cuda = DeviceType.CUDA

    def report() -> dict:
        ops, elements, kernels = Counter(), Counter(), Counter()
        for e in events(disable()):
            name = name_of(e)
            if device_of(e) == cuda:
                kernels[name] += 1
            elif name.startswith("aten::"):
                ops[name] += 1
                elements[name] += max((_numel(s) for s in shapes_of(e) or [] if isinstance(s, list)), default=0)
        return {"ops": dict(ops), "op_elements": dict(elements), "kernels": dict(kernels), "scope": scope}

    return report


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
    entry = sys.argv[4]
    # watched unless the judge said this is its own baseline code: the judge chooses the entry, never the file
    candidate = not entry.startswith(TRUSTED)
    entry = entry.removeprefix(TRUSTED)
    sock = socket.socket(fileno=fd)
    send, recv = wire.send, wire.recv
    workdir = os.path.dirname(os.path.abspath(candidate_path))
    import torch  # noqa: F401 - loaded before the candidate, with the real builtins

    if device == "cpu":
        make_interpreter_bf16_exact()
        # a runaway host allocation fails here instead of taking the machine (the uid in the box cannot raise it)
        resource.setrlimit(resource.RLIMIT_AS, (CPU_ADDRESS_SPACE_BYTES, CPU_ADDRESS_SPACE_BYTES))
    else:
        # what every kernel needs, made before the candidate exists: a judge starts its runner ahead of
        # the job (avo/harness/judge.py, Prestarted), so these seconds leave the evaluation's path
        torch.cuda.init()
        torch.empty(1, device="cuda")  # the CUDA context
        import triton  # noqa: F401
        try:
            import triton.experimental.gluon  # noqa: F401 - Hopper kernels import it (~1 s)
        except ImportError:
            pass
        compile_only.install()  # the compile stage's and the helpers' calls launch nothing (compile_only.py)
    # the baselines (trusted PyTorch code) run unwatched: the profiler's per-API-call cost
    # would tax cuDNN's many runtime calls and flatter every candidate's ratio. On a GPU the
    # watch (CUPTI's start-up: seconds) starts before the candidate exists; it sees kernels
    # only, and nothing here launches one. On the CPU it records aten operators, so it starts
    # after the arena is mapped, just before the candidate is imported, as always
    report = start_activity_watch(device) if candidate and device == "cuda" else None
    # the first message: the arena, sent once the judge has the candidate (its file exists from then on)
    open_arena = arena_mod.opener(device)
    message, fds = recv(sock, with_fds=True)
    shared = open_arena(message, fds)
    hook, audit, violations = make_audit_hook([workdir, "/tmp", "/dev/shm"])
    if candidate:
        close_numpy_bridges(violations)
    if report is None:
        report = start_activity_watch(device) if candidate else dict
    sys.addaudithook(hook)

    # -- the candidate's code runs only on this thread, from its import on
    work, results = queue.SimpleQueue(), queue.SimpleQueue()
    audit["enforcing"] = True
    threading.Thread(target=serve_calls, args=(candidate_path, entry, shared, device, work, results),
                     name="candidate", daemon=True).start()
    loaded = results.get()
    send(sock, {**_plain(loaded), "violations": list(violations)})
    if "error" in loaded:
        return 0
    while True:
        try:
            message, fds = recv(sock, with_fds=True)
        except wire.WireError:
            return 0
        if message.get("op") in ("batch", "compile", "warm"):
            work.put((message["op"], message["calls"]))
            send(sock, {**_plain(results.get()), "violations": list(violations)})
        elif message.get("op") == "arena":  # the timed calls' arena, once the judge holds the GPU (judge.py)
            audit["trusted"] = threading.get_ident()
            try:
                work.put(("arena", open_arena(message, fds)))
            except Exception as e:  # noqa: BLE001 - the judge ends the evaluation on it
                send(sock, {"error": f"mapping the timing arena: {type(e).__name__}: {e}"[:300], "kind": "crashed"})
                continue
            finally:
                audit["trusted"] = None
            send(sock, {**_plain(results.get()), "violations": list(violations)})
        elif message.get("op") == "finish":
            audit["enforcing"] = False
            send(sock, {**report(), "violations": list(violations)})
            return 0


def _plain(reply) -> dict:
    """Only plain JSON values from the candidate's thread (it may have put anything in the queue)."""
    if not isinstance(reply, dict):
        return {"error": "the runner's call thread answered garbage", "kind": "crashed"}
    return {k: v for k, v in reply.items() if type(k) is str and type(v) in (str, int, bool, float, type(None))}


def serve_calls(path: str, entry: str, shared, device: str, work, results) -> None:
    """The candidate's thread: load it, then run batches. Holds nothing the judge trusts."""
    import torch

    try:
        fn = _load(path, entry)
    except BaseException as e:  # noqa: BLE001 - the candidate's error is data for the judge
        results.put({"error": _describe(e)})
        return
    results.put({"ready": True})
    while True:
        op, calls = work.get()
        if op == "arena":  # every call from now on views the new arena
            shared = calls
            results.put({"mapped": shared.nbytes})
            continue
        if op == "batch":
            results.put(_run_batch(fn, entry, shared, calls, device, torch))
        elif op == "compile":
            results.put(_compile(fn, entry, shared, calls, device, torch))
        else:
            results.put(_warm(fn, calls, device, torch))


def _load(path: str, entry: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location("candidate", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["candidate"] = module
    spec.loader.exec_module(module)
    fn = getattr(module, entry, None)
    if not callable(fn):
        raise TypeError(f"the file defines no callable `{entry}`")
    return fn


def _run_batch(fn, entry: str, shared, calls: list, device: str, torch) -> dict:
    for i, call in enumerate(calls):
        # the judge's message: the views' places and the entry's keyword arguments (plain JSON values)
        inputs = [shared.view(*_spec(spec, torch)) for spec in call["inputs"]]
        out = shared.view(*_spec(call["out"], torch))
        try:
            result = fn(*inputs, **call["args"])
            if not isinstance(result, torch.Tensor):
                return {"error": f"{entry} returned {type(result).__name__}, not a Tensor", "call": i,
                        "kind": "incorrect"}
            if tuple(result.shape) != tuple(out.shape) or result.dtype != out.dtype \
                    or result.device.type != out.device.type:
                return {"error": f"output is {tuple(result.shape)} {result.dtype} on {result.device}; expected "
                                 f"{tuple(out.shape)} {out.dtype} on {out.device}", "call": i, "kind": "incorrect"}
            out.copy_(torch.Tensor.as_subclass(result, torch.Tensor))
        except BaseException as e:  # noqa: BLE001 - reported to the judge as data
            return {"error": _describe(e), "call": i, "kind": "crashed"}
    if device == "cuda":
        torch.cuda.synchronize()
    return {"done": len(calls)}


def _compile(fn, entry: str, shared, calls: list, device: str, torch) -> dict:
    """The compile stage's calls on a GPU (judge.py, Judge.compile): each on the judge's
    buffers with kernel launches held back (compile_only.py), so its kernels compile and load
    while another candidate is timed, without running beside it. The output is not written:
    there is none to look at."""
    if device != "cuda":
        return _run_batch(fn, entry, shared, calls, device, torch)
    for i, call in enumerate(calls):
        inputs = [shared.view(*_spec(spec, torch)) for spec in call["inputs"]]
        try:
            with compile_only.compile_only():
                result = fn(*inputs, **call["args"])
            if not isinstance(result, torch.Tensor):
                return {"error": f"{entry} returned {type(result).__name__}, not a Tensor", "call": i,
                        "kind": "incorrect"}
        except BaseException as e:  # noqa: BLE001 - reported to the judge as data
            return {"error": _describe(e), "call": i, "kind": "crashed"}
    torch.cuda.synchronize()
    return {"done": len(calls)}


def _warm(fn, calls: list, device: str, torch) -> dict:
    """A compile helper's work (judge.py, Judge.start_helpers): each call on inputs of its own,
    only so that its kernels compile into the candidate's Triton cache (on a GPU with launches
    held back, compile_only.py); nothing it returns is looked at, and the helper is killed
    before any check or timing starts."""
    warmed = failed = 0
    for call in calls:
        try:
            inputs = [torch.randn(tuple(int(s) for s in dims), device=device).to(getattr(torch, dtype))
                      for dims, dtype in call["inputs"]]
            with compile_only.compile_only() if device == "cuda" else contextlib.nullcontext():
                fn(*inputs, **call["args"])
            warmed += 1
        except BaseException:  # noqa: BLE001 - the verified call on the main runner reports it
            failed += 1
    if device == "cuda":
        torch.cuda.synchronize()
    return {"warmed": warmed, "failed": failed}


def _spec(spec: list, torch):
    offset, shape, dtype = spec
    return int(offset), tuple(int(s) for s in shape), getattr(torch, dtype)


def _describe(e: BaseException) -> str:
    """One line for the record; the traceback goes to the runner's log (on this thread)."""
    try:
        traceback.print_exception(e, file=sys.stderr)
    except Exception:  # noqa: BLE001 - a traceback the audit hook would not let us walk
        pass
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {(text[0] if text else '')[:300]}"


if __name__ == "__main__":
    sys.exit(main())
