"""The judge's buffers, shared with the candidate's runner: one flat byte arena.

The judge allocates the arena, writes every input into it and reads every output
from it; the runner only maps it. A judge has two in turn: a small one for the
compile stage, and the one its timed calls need (up to 24 calls of the largest
shape: 15 GB for the AVO suite), allocated only while it holds the GPU lock and
freed once every runner that mapped it has exited (judge.py, timing_arena), so
that the evaluations waiting for the lock hold no large buffers. On the CPU the arena is a memfd mapped by both
processes (its descriptor travels over the socket); on a GPU it is one device
allocation exported through CUDA IPC (driver API, through ctypes: trusted code in
both processes, called before the candidate is imported). Tensors are views at
offsets the judge chooses, so the judge compares plain tensors it owns.
"""
from __future__ import annotations

import base64
import ctypes
import mmap
import os

ALIGN = 512  # bytes: every view starts on a boundary wide enough for any vector load


def align(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


class Arena:
    """A flat uint8 tensor plus how to describe it to the other process."""

    def __init__(self, flat, descriptor: dict, fds: list[int], keepalive=None):
        self.flat = flat
        self.descriptor = descriptor  # JSON-safe: what the runner needs to map it
        self.fds = fds  # descriptors to send with it (CPU)
        self._keepalive = keepalive

    @property
    def nbytes(self) -> int:
        return self.flat.numel()

    def close(self) -> None:
        """Drop this process's hold on it (its memory goes with the last view of it)."""
        for fd in self.fds:
            os.close(fd)
        self.fds = []
        self.flat = self._keepalive = None

    def view(self, offset: int, shape, dtype):
        import torch

        n = 1
        for s in shape:
            n *= s
        nbytes = n * torch.empty((), dtype=dtype).element_size()
        if offset < 0 or offset + nbytes > self.nbytes:
            raise ValueError(f"view [{offset}, {offset + nbytes}) outside the arena of {self.nbytes} bytes")
        return self.flat[offset:offset + nbytes].view(dtype).view(*shape)


# ------------------------------------------------------------------------ CPU
def create_cpu(nbytes: int) -> Arena:
    import torch

    fd = os.memfd_create("avo-arena", 0)
    os.ftruncate(fd, nbytes)
    mm = mmap.mmap(fd, nbytes)
    flat = torch.frombuffer(mm, dtype=torch.uint8)
    return Arena(flat, {"kind": "cpu", "nbytes": nbytes}, [fd], keepalive=mm)


def open_cpu(descriptor: dict, fd: int, frombuffer=None) -> Arena:
    import torch

    mm = mmap.mmap(fd, int(descriptor["nbytes"]))
    os.close(fd)
    return Arena((frombuffer or torch.frombuffer)(mm, dtype=torch.uint8), descriptor, [], keepalive=mm)


# ------------------------------------------------------------------------ GPU
class _IpcHandle(ctypes.Structure):
    _fields_ = [("reserved", ctypes.c_ubyte * 64)]  # c_ubyte: a c_char array reads back cut at its first NUL


def _libcuda():
    lib = ctypes.CDLL("libcuda.so.1")

    def fn(*names):
        for name in names:
            if hasattr(lib, name):
                return getattr(lib, name)
        raise OSError(f"libcuda has none of {names}")

    return fn


def _check(rc: int, what: str) -> None:
    if rc != 0:
        raise OSError(f"{what} failed with CUresult {rc}")


def create_cuda(nbytes: int) -> Arena:
    import torch

    flat = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    torch.cuda.synchronize()
    fn = _libcuda()
    base, size = ctypes.c_uint64(), ctypes.c_size_t()
    _check(fn("cuMemGetAddressRange_v2", "cuMemGetAddressRange")(
        ctypes.byref(base), ctypes.byref(size), ctypes.c_uint64(flat.data_ptr())), "cuMemGetAddressRange")
    handle = _IpcHandle()
    _check(fn("cuIpcGetMemHandle")(ctypes.byref(handle), base), "cuIpcGetMemHandle")
    descriptor = {"kind": "cuda", "nbytes": nbytes, "offset": flat.data_ptr() - base.value,
                  "handle": base64.b64encode(ctypes.string_at(ctypes.addressof(handle), 64)).decode()}
    return Arena(flat, descriptor, [])


class _DeviceMemory:
    """What torch.as_tensor needs to wrap a raw device pointer without a copy."""

    def __init__(self, ptr: int, nbytes: int):
        self.__cuda_array_interface__ = {"shape": (nbytes,), "typestr": "|u1", "data": (ptr, False),
                                         "version": 3, "strides": None}


def open_cuda(descriptor: dict) -> Arena:
    import torch

    torch.cuda.init()
    torch.empty(1, device="cuda")  # the primary context is now current on this thread
    fn = _libcuda()
    raw = base64.b64decode(descriptor["handle"])
    handle = _IpcHandle()
    ctypes.memmove(ctypes.addressof(handle), raw, 64)
    ptr = ctypes.c_uint64()
    open_handle = fn("cuIpcOpenMemHandle_v2", "cuIpcOpenMemHandle")
    open_handle.argtypes = [ctypes.POINTER(ctypes.c_uint64), _IpcHandle, ctypes.c_uint]
    _check(open_handle(ctypes.byref(ptr), handle, 1), "cuIpcOpenMemHandle")  # 1: lazy peer access
    nbytes = int(descriptor["nbytes"])
    memory = _DeviceMemory(ptr.value + int(descriptor["offset"]), nbytes)
    flat = torch.as_tensor(memory, device="cuda")
    return Arena(flat, descriptor, [], keepalive=memory)


def create(device: str, nbytes: int) -> Arena:
    return create_cuda(nbytes) if device == "cuda" else create_cpu(nbytes)


def opener(device: str):
    """open(descriptor, fds) -> Arena for the runner, with the torch functions it needs
    taken now: the runner maps a second arena after the candidate's numpy bridges are
    closed (torch.frombuffer among them, candidate_host.close_numpy_bridges)."""
    if device == "cuda":
        return lambda descriptor, fds: open_cuda(descriptor)
    import torch

    frombuffer = torch.frombuffer
    return lambda descriptor, fds: open_cpu(descriptor, fds[0], frombuffer)
