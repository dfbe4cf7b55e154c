"""Run-time guards around candidate calls, inside the evaluation worker.

Two things the static checks cannot see for certain:

1. Patching: a candidate that replaced a clock, a comparison or the harness's
   own functions at import time. `Snapshot` records the identity of every object
   the harness relies on *before* the candidate is imported and `changed()`
   lists those that differ afterwards.
2. Library compute: a candidate that reached torch's matmul/softmax/attention by
   some path the static checks missed. `LibraryOpWatch` is a TorchDispatchMode
   that sees every aten operator called during `attention(...)` and records the
   forbidden ones (Triton launches do not pass through it; allocations do).
"""
from __future__ import annotations

import importlib
import re

# Everything the worker uses to make inputs, compare, time and report.
GUARDED = [
    "time.perf_counter", "time.monotonic", "time.time", "time.sleep",
    "torch.cuda.Event", "torch.cuda.synchronize", "torch.cuda.current_stream",
    "torch.cuda.Stream.synchronize", "torch.cuda.Event.record", "torch.cuda.Event.elapsed_time",
    "torch.cuda.Event.synchronize",
    "triton.testing.do_bench",
    "torch.randn", "torch.empty", "torch.full", "torch.equal", "torch.isfinite", "torch.matmul",
    "torch.softmax", "torch.where", "torch.arange", "torch.Generator",
    "torch.Tensor.to", "torch.Tensor.copy_", "torch.Tensor.clone", "torch.Tensor.abs",
    "torch.Tensor.sub", "torch.Tensor.__sub__", "torch.Tensor.norm", "torch.Tensor.max",
    "torch.Tensor.double", "torch.Tensor.float", "torch.Tensor.item", "torch.Tensor.all",
    "torch.Tensor.__le__", "torch.Tensor.__mul__", "torch.Tensor.__add__",
    "torch.Tensor.masked_fill_", "torch.Tensor.repeat_interleave", "torch.Tensor.fill_",
    "torch.Tensor.data_ptr", "torch.Tensor.untyped_storage",
    "json.dumps", "os.write", "os.fsync", "builtins.print", "builtins.isinstance",
    "builtins.float", "builtins.len", "builtins.max", "builtins.min", "builtins.sum",
]


def _resolve(path: str):
    mod_name, _, rest = path.partition(".")
    obj = importlib.import_module(mod_name)
    for part in rest.split("."):
        obj = obj.__dict__[part] if isinstance(obj, type) and part in obj.__dict__ else getattr(obj, part)
    return obj


class Snapshot:
    """Identities of guarded objects (and of the given modules' functions)."""

    def __init__(self, extra_modules: tuple = ()):
        self._objs: dict[str, object] = {}
        for path in GUARDED:
            try:
                self._objs[path] = _resolve(path)
            except (AttributeError, ImportError, KeyError):
                continue  # absent on this torch/triton version: nothing to guard
        for mod in extra_modules:
            for name, obj in list(vars(mod).items()):
                if callable(obj) and not name.startswith("__"):
                    self._objs[f"{mod.__name__}.{name}"] = obj
        self._extra = extra_modules

    def changed(self) -> list[str]:
        bad = []
        for path, obj in self._objs.items():
            try:
                now = _resolve(path) if not _is_extra(path, self._extra) else _extra_attr(path, self._extra)
            except (AttributeError, ImportError, KeyError):
                bad.append(path)
                continue
            if now is not obj:
                bad.append(path)
        return bad


def _is_extra(path: str, mods) -> bool:
    return any(path.startswith(m.__name__ + ".") and "." not in path[len(m.__name__) + 1:] for m in mods)


def _extra_attr(path: str, mods):
    for m in mods:
        if path.startswith(m.__name__ + "."):
            return vars(m)[path[len(m.__name__) + 1:]]
    raise KeyError(path)


# aten operators that do the main work of attention (or any matrix product)
FORBIDDEN_OPS = re.compile(
    r"^_?(mm|bmm|addmm|baddbmm|addbmm|addmv|mv|dot|vdot|matmul|linear|einsum|tensordot|"
    r"_int_mm|_scaled_mm|convolution|_convolution|cudnn_convolution|"
    r"softmax|_softmax|log_softmax|_log_softmax|_safe_softmax|"
    r".*attention.*|.*sdp.*|.*flash.*|_cudnn_.*)$"
)


def make_library_op_watch():
    """A TorchDispatchMode recording forbidden aten ops (imported lazily: torch)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class LibraryOpWatch(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.forbidden: list[str] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func.overloadpacket.__name__
            if FORBIDDEN_OPS.match(name):
                self.forbidden.append(name)
            return func(*args, **(kwargs or {}))

    return LibraryOpWatch()
