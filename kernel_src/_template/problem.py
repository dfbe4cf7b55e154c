"""TEMPLATE: bring your own kernel. Copy this folder to kernel_src/<name>/, then change
what the comments marked CHANGE say; docs/problems.md explains every name, and
kernel_src/rmsnorm/problem.py is a complete second example. The worked example here
is row L2 normalisation, y[i] = x[i] / ||x[i]||, small enough to read in one sitting.

    avo bench --problem kernel_src/<name>/problem.py kernel_src/<name>/seeds/kernel.py --device cpu
    avo evolve --problem kernel_src/<name>/problem.py --device cpu --operator heuristic --generations 1

Trusted code: the judge imports it to make inputs and compute the reference;
candidates never see it. Import torch inside functions only (loading stays cheap).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

NAME = "l2norm-fwd"  # CHANGE: the MLflow experiment and the knowledge-base topic
SIGNATURE = "l2norm(x)"  # CHANGE: the candidate's entry point; parameters without defaults are its inputs
DTYPES = ("bfloat16", "float16")


@dataclass(frozen=True)
class Shape:  # CHANGE: the fields of one instance; keep `dtype`, `name` and `flops()`
    rows: int
    cols: int
    dtype: str = "bfloat16"

    @property
    def name(self) -> str:  # unique per shape: records, suites and reports key on it
        return f"m{self.rows} n{self.cols} {self.dtype}"

    def flops(self) -> float:  # an honest count (here: square, add, multiply per element)
        return 3.0 * self.rows * self.cols

    def bytes(self) -> float:  # optional: `avo bench` shows GB/s beside TFLOPS when shapes have it
        return 2.0 * 2 * self.rows * self.cols


SUITES = {"gpu": [Shape(32768, n) for n in (1024, 4096)],  # CHANGE: what is timed, per device
          "cpu": [Shape(8, 256, "float16")]}
DEFAULT_SUITE = {"cuda": "gpu", "cpu": "cpu"}


def check_shapes(device: str) -> list[Shape]:
    """Checked, never timed: tails (odd sizes), both dtypes, the smallest case."""
    return [Shape(1, 1, "float16"), Shape(3, 17), Shape(5, 300, "float16")]


def held_out_shapes(device: str, rng, n: int) -> list[Shape]:
    """Timed shapes the search never sees (a kernel tuned to the suite alone is flagged)."""
    return rng.sample([Shape(6, 192, "float16"), Shape(7, 384)], n)


def compile_shapes(shapes: list[Shape]) -> list[Shape]:
    """One small call per kernel variant the shapes need (here: per dtype)."""
    return [Shape(2, 64, dt) for dt in sorted({s.dtype for s in shapes})]


# CHANGE: per output dtype, |out - ref| <= atol + rtol*|ref| per element and
# ||out - ref|| / ||ref|| <= rel; say why (the rounding an honest kernel makes, measured).
# Here one rounding of y to the dtype: half an ulp, 2^-8 (bf16) / 2^-11 (fp16) relative;
# rtol allows two ulps, and atol is small because outputs are ~1/sqrt(N).
TOLERANCES = {"bfloat16": {"atol": 1e-4, "rtol": 1.6e-2, "rel": 1e-2},
              "float16": {"atol": 1e-5, "rtol": 2e-3, "rel": 1.2e-3}}


# ------------------------------------------------------------- the call protocol
def buffers(shape: Shape) -> list[tuple]:
    """(name, dims, dtype, role): the entry's inputs in its order, then one output."""
    return [("x", (shape.rows, shape.cols), shape.dtype, "input"),
            ("y", (shape.rows, shape.cols), shape.dtype, "output")]


def draw_call(shape: Shape, rng, vary: bool, index: int) -> dict:
    """Per call: "args" are the entry's keyword arguments (JSON values); the rest is yours.
    index: the call's place in its batch. Pick an argument's values by it (index % n), not
    by rng, so that every value is exercised in a check batch (a check batch has 2 calls)."""
    return {"args": {}, "amplitude": rng.choice((1.0, 4.0)) if vary else 1.0}


def inputs(shape: Shape, device: str, seed: int, call: dict) -> dict:
    """Fresh inputs from `seed` alone (the judge redraws them to compare bit for bit)."""
    import torch

    g = torch.Generator(device=device).manual_seed(seed)
    x = torch.randn(shape.rows, shape.cols, generator=g, device=device) * call["amplitude"]
    return {"x": x.to(getattr(torch, shape.dtype))}


def late_change(shape: Shape, rng) -> tuple:
    """(input, dim, indices, power of two): scaled after the clock starts. Choose it so
    that EVERY output element changes: here two columns scaled by ~sqrt(N/2) carry
    about half of each row's norm, so every row's norm moves. (A row of one element
    normalises to +-1 whatever its scale: nothing can change it.)"""
    k = min(2, max(1, shape.cols - 1))
    cols = sorted(rng.sample(range(shape.cols), k))
    return "x", 1, cols, 2.0 ** max(1, min(6, round(math.log2(math.sqrt(shape.cols / k)))))


def expected(inputs: dict, shape: Shape, call: dict):
    """The whole output in high precision (float64 on the CPU, float32 on a GPU)."""
    import torch

    x = inputs["x"].to(torch.float64 if inputs["x"].device.type == "cpu" else torch.float32)
    return x / x.norm(dim=-1, keepdim=True)


def expected_rows(inputs: dict, shape: Shape, call: dict, rows):
    """Sampled rows only: rows is [R, ndim-1] indices of the output's leading dims."""
    return expected({"x": inputs["x"][rows[:, 0]]}, shape, call)


# ------------------------------------------------------------------ search space
SEED = "seeds/kernel.py"  # CHANGE: v0, relative to this file
KNOBS = {"BLOCK_N": (64, 128, 256, 512, 1024, 2048, 4096), "NUM_WARPS": (1, 2, 4, 8)}  # legal values, in order


def fits(knobs: dict, device: str) -> bool:
    """Whether a knob setting can launch on `device` (here: a row tile in registers)."""
    return device != "cuda" or knobs.get("BLOCK_N", 1024) <= 8192
# Optional: BASELINES = {"cudnn": ("baselines.py", "fn", "what it is")} (a library to compare
# with, timed on GPUs), levers.py (what is known about each knob), register_pressure(knobs).
