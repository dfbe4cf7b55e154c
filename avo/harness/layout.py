"""What the harness reads from a problem module to lay out, size and host its calls.

A problem declares its buffers (`buffers(shape)`: name, dims, dtype, role), its
entry point (`SIGNATURE`) and, optionally, its library baselines (`BASELINES`);
everything here turns those into arena sizes, flat indices and the runner's
entry names, the same way for every problem (avo/problem.py lists the contract).
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

from avo.harness.arena import align
from avo.problem import entry_inputs, entry_name

ROLES = ("input", "output")
ITEMSIZE = {"bfloat16": 2, "float16": 2, "float32": 4, "float64": 8, "int8": 1, "uint8": 1, "int16": 2,
            "int32": 4, "int64": 8}
TRUSTED = "trusted:"  # an entry the runner hosts unwatched: the judge's own baseline code, never a candidate


def problem_of(shape):
    """The problem module a Shape belongs to (its class is defined there; avo.problem
    registers every loaded problem in sys.modules)."""
    return sys.modules[type(shape).__module__]


def layout(problem, shape) -> list[tuple[str, tuple, str, str]]:
    """problem.buffers(shape), checked: known dtypes and roles, exactly one output, and the
    inputs named and ordered as the entry point takes them."""
    out = []
    for name, dims, dtype, role in problem.buffers(shape):
        if role not in ROLES or dtype not in ITEMSIZE:
            raise ValueError(f"buffer {name}: role {role!r} / dtype {dtype!r} not one the harness knows")
        out.append((str(name), tuple(int(d) for d in dims), dtype, role))
    inputs = [b[0] for b in out if b[3] == "input"]
    if sum(b[3] == "output" for b in out) != 1 or inputs != entry_inputs(problem):
        raise ValueError(f"buffers(shape) must list the inputs {entry_inputs(problem)} in the entry's order "
                         f"and one output; got {[(b[0], b[3]) for b in out]}")
    return out


def call_bytes(shape, problem=None) -> int:
    """Arena bytes one call of `shape` takes (every buffer on its own aligned offset)."""
    problem = problem or problem_of(shape)
    return sum(align(math.prod(dims) * ITEMSIZE[dt]) for _, dims, dt, _ in layout(problem, shape))


def call_elements(shape, problem=None) -> int:
    """Elements of one call's inputs and output (the budget unit of host-side element-wise ops)."""
    problem = problem or problem_of(shape)
    return sum(math.prod(dims) for _, dims, _, _ in layout(problem, shape))


def entry(problem) -> str:
    """The function the runner calls in a candidate."""
    return entry_name(problem)


def flat_index(dims, dim: int, picks, device: str):
    """Row-major element numbers of the slice `index_select(dim, picks)` of a tensor of
    `dims`, built by broadcasting (its size is the slice's, never the tensor's). picks: a
    list, or a long tensor already on `device` (then nothing is copied to the device)."""
    import torch

    strides = [math.prod(dims[a + 1:]) for a in range(len(dims))]
    number = torch.zeros((), dtype=torch.long, device=device)
    for axis, size in enumerate(dims):
        r = (picks if torch.is_tensor(picks) else torch.as_tensor(list(picks), dtype=torch.long, device=device)) \
            if axis == dim else torch.arange(size, device=device)
        shape = [1] * len(dims)
        shape[axis] = -1
        number = number + (r * strides[axis]).view(shape)
    return number.reshape(-1)


def baselines(problem) -> dict[str, tuple[Path, str]]:
    """record column -> (the trusted file, the runner's entry) for the problem's library
    baselines: BASELINES = {column: (file next to problem.py, function, label)}."""
    folder = Path(problem.__file__).resolve().parent
    return {column: (folder / file, TRUSTED + function)
            for column, (file, function, _) in getattr(problem, "BASELINES", {}).items()}


def baseline_labels(problem) -> dict[str, str]:
    """record column -> what the baseline in it is (the record's env says it: a column
    named cudnn holds whatever library the problem compares with)."""
    return {column: label for column, (_, _, label) in getattr(problem, "BASELINES", {}).items()}
