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
import types

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
        self._values: dict[str, tuple] = {}
        for mod in extra_modules:
            for name, obj in list(vars(mod).items()):
                if callable(obj) and not name.startswith("__"):
                    self._objs[f"{mod.__name__}.{name}"] = obj
                elif not name.startswith("__") and not isinstance(obj, types.ModuleType):
                    # data the checks read (FORBIDDEN_OPS, TOLERANCES, budgets): a
                    # rebinding changes the identity, an in-place edit the repr
                    self._values[f"{mod.__name__}.{name}"] = (mod, name, obj, repr(obj))
        self._extra = extra_modules
        # Whole class dictionaries: the harness's own classes (patching
        # `Worker.compare` or `Snapshot.changed` leaves the class object the
        # same) and torch.Tensor, where assigning e.g. `__gt__` or `__truediv__`
        # shadows the C methods the comparison uses (both found by the
        # adversarial suite). Any changed, added or removed entry counts.
        import torch

        classes = [torch.Tensor] + [obj for mod in extra_modules for obj in vars(mod).values()
                                    if isinstance(obj, type) and obj.__module__ == mod.__name__]
        self._class_dicts = {cls: dict(vars(cls)) for cls in classes}

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
        for path, (mod, name, obj, text) in self._values.items():
            now = vars(mod).get(name, self)
            if now is not obj or repr(now) != text:
                bad.append(path)
        for cls, before in self._class_dicts.items():
            now = vars(cls)
            for name in set(before) | set(now):
                if name not in now or name not in before or now[name] is not before[name]:
                    bad.append(f"{cls.__module__}.{cls.__qualname__}.{name}")
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
    r".*attention.*|.*sdp.*|.*flash.*|_cudnn_.*|"
    # products under other names: cdist gives a·b from |a-b|² (found by the
    # adversarial suite), FFT convolution, bilinear forms, linear algebra
    r".*cdist.*|_euclidean_dist|.*conv.*|fft_.*|_fft_.*|_trilinear|bilinear|kron|"
    r"linalg_.*|_linalg_.*|cholesky.*|.*triangular_solve.*)$"
)

# Element-wise torch ops can still do the whole product by broadcasting,
# (q[..., :, None, :] * k[..., None, :, :]).sum(-1), with no forbidden op name
# (found by the adversarial suite). Host code around Triton launches allocates,
# views, copies and does O(inputs) arithmetic; the elements written by
# arithmetic/reduction ops in one call are bounded by this many times the
# call's inputs + output (with a floor for tiny shapes and autotuning's own
# bookkeeping). Allocation, fills, views and copies do not count: they cannot
# compute a product.
ELEMENT_BUDGET_FACTOR = 16
ELEMENT_BUDGET_FLOOR = 1 << 20
NOT_COMPUTE = re.compile(
    r"^(empty.*|new_empty.*|new_zeros|new_ones|new_full|zeros.*|ones.*|full.*|scalar_tensor|lift_fresh.*|"
    r"set_|fill_|zero_|copy_|_to_copy|clone|contiguous|_local_scalar_dense|detach.*|alias.*|view.*|"
    r"_unsafe_view|_reshape_alias|reshape|as_strided.*|transpose.*|permute|expand.*|slice.*|select.*|"
    r"unsqueeze.*|squeeze.*|t|t_|unbind|split.*|narrow|resize_|is_same_size|record_stream)$"
)


def make_library_op_watch(io_elements: int = 0):
    """A TorchDispatchMode recording forbidden aten ops and counting the elements
    that compute ops write (imported lazily: torch). io_elements: the call's
    inputs + output, for the element budget (0: no budget)."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    budget = max(ELEMENT_BUDGET_FLOOR, ELEMENT_BUDGET_FACTOR * io_elements) if io_elements else None

    class LibraryOpWatch(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.forbidden: list[str] = []
            self.compute_elements = 0
            self.budget = budget
            self.biggest = ("", 0)  # the op that wrote the most elements

        @property
        def over_budget(self) -> bool:
            return self.budget is not None and self.compute_elements > self.budget

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func.overloadpacket.__name__
            if FORBIDDEN_OPS.match(name):
                self.forbidden.append(name)
            out = func(*args, **(kwargs or {}))
            if not NOT_COMPUTE.match(name):
                outs = out if isinstance(out, (tuple, list)) else (out,)
                n = sum(o.numel() for o in outs if isinstance(o, torch.Tensor))
                self.compute_elements += n
                if n > self.biggest[1]:
                    self.biggest = (name, n)
            return out

    return LibraryOpWatch()
