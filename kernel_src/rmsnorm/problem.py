"""The fused RMSNorm forward problem: shapes, suites, FLOPs, reference and inputs.

Trusted code, like kernel_src/attention/problem.py: the judge imports it to make
inputs and compute the reference; candidates never see it. The contract the
harness reads is listed in avo/problem.py and explained in docs/problems.md.

Contract of a candidate (one Python file):

    def rmsnorm(x, w, eps=1e-6) -> torch.Tensor

x: [M, N] contiguous, bf16 or fp16, any M, N >= 1; w: [N], x's dtype. Returns
y = x * rsqrt(mean(x**2 over the last dim) + eps) * w, [M, N] in x's dtype, and
the work is done by Triton kernels the file defines (no torch norm, no
reduction in torch: the judge's allowlists reject them).

Torch is imported lazily so that the core (suites, FLOPs) stays importable and
testable without it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

NAME = "rmsnorm-fwd"
SIGNATURE = "rmsnorm(x, w, eps=1e-6)"  # the candidate's entry point
DTYPES = ("bfloat16", "float16")


@dataclass(frozen=True)
class Shape:
    """One RMSNorm problem instance: M rows of N elements."""

    rows: int
    cols: int
    dtype: str = "bfloat16"

    @property
    def name(self) -> str:
        return f"m{self.rows} n{self.cols} {short_dtype(self.dtype)}"

    def flops(self) -> float:
        """4·M·N: per element a square and an add (the sum of squares), then two
        multiplies (by the row's rsqrt and by w); the per-row mean and rsqrt are
        left out. RMSNorm is bound by memory, not arithmetic: see bytes()."""
        return 4.0 * self.rows * self.cols

    def bytes(self) -> float:
        """Bytes a kernel must move at least: x read once, y written once, w read once."""
        item = 2 if self.dtype in ("bfloat16", "float16") else 4
        return float(item * (2 * self.rows * self.cols + self.cols))


def short_dtype(dtype: str) -> str:
    return {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}[dtype]


def validate(shape: Shape) -> None:
    if shape.dtype not in DTYPES:
        raise ValueError(f"dtype {shape.dtype} not in {DTYPES}")
    if shape.rows < 1 or shape.cols < 1:
        raise ValueError("rows and cols must be >= 1")


# --------------------------------------------------------------------------- suites
# LLM hidden sizes: 32k tokens (rows) by N = 1k..8k, bf16, plus fp16 and a wide row.
TOKENS = 32 * 1024
SUITES: dict[str, list[Shape]] = {
    "bf16": [Shape(TOKENS, n) for n in (1024, 2048, 4096, 8192)],
    "fp16": [Shape(TOKENS, n, "float16") for n in (4096, 8192)],
    "wide": [Shape(TOKENS // 4, 16384)],
    # Interpreter-sized suite for machines without a GPU: interpreter timings, never
    # compared with GPU figures.
    # ~3 ms per program there: a dozen rows per call keeps an evaluation near 10 s.
    "cpu": [Shape(16, 256, "float16"), Shape(12, 512, "bfloat16")],
}
SUITES["llm"] = SUITES["bf16"] + SUITES["fp16"] + SUITES["wide"]
DEFAULT_SUITE = {"cuda": "llm", "cpu": "cpu"}


# ------------------------------------------------------------------ correctness
# Checked on more shapes than are timed: N = 1, odd N and M, N not a multiple of any
# block size (tails of the column loop), M not a multiple of rows per program, both
# dtypes, rows longer than one tile and shorter than one.
def check_shapes(device: str) -> list[Shape]:
    if device == "cpu":  # the interpreter runs one program per row block in Python
        cases = [(1, 1, "float16"), (3, 17, "bfloat16"), (5, 100, "float16"), (9, 257, "bfloat16"),
                 (2, 1000, "float16"), (13, 64, "bfloat16")]
    else:
        cases = [(1, 1, "bfloat16"), (3, 17, "float16"), (7, 127, "bfloat16"), (33, 1000, "float16"),
                 (1000, 4097, "bfloat16"), (257, 8193, "float16"), (64, 16384, "bfloat16"),
                 (4099, 2048, "float16"), (2, 32768, "bfloat16"), (3001, 3000, "bfloat16")]
    return [Shape(*c) for c in cases]


def held_out_shapes(device: str, rng, n: int) -> list[Shape]:
    """Timed shapes the search never sees, drawn per evaluation: other widths and row
    counts. A candidate much faster on the suite than here is special-casing it."""
    return rng.sample(held_out_pool(device), n)


def held_out_pool(device: str) -> list[Shape]:
    """Every shape held_out_shapes draws from (the orchestrator times their baselines once
    per GPU, so that a candidate past the gate waits for none)."""
    if device == "cpu":
        pool = [(m, c, dt) for m in (10, 14) for c in (192, 384) for dt in DTYPES]
    else:
        pool = [(m, c, "bfloat16") for m in (16384, 24576) for c in (1536, 3072, 5120, 6144, 12288)]
    return [Shape(*c) for c in pool]


def compile_shapes(shapes: list[Shape]) -> list[Shape]:
    """One small call per dtype (the kernel's variants; each width may compile again)."""
    return [Shape(4, 256, dt) for dt in sorted({s.dtype for s in shapes})]


# Tolerances per output dtype, on every element |out - ref| <= atol + rtol*|ref| and on
# the whole tensor ||out - ref|| / ||ref|| <= rel. The output is rounded to the dtype once
# (half an ulp: up to 2^-8 relative for bf16, 2^-11 for fp16); kernels that round
# x*rsqrt to the dtype before multiplying by w (as Hugging Face's LlamaRMSNorm does)
# round twice. Measured on random rows: bf16 rel 1.7e-3 (one rounding) / 2.4e-3 (two),
# worst element 7.6e-3 relative; fp16 2.1e-4 / 2.9e-4, worst 9.5e-4. Per element the
# bounds are two ulps; on the whole tensor, two roundings' worst case, because after
# the late change a few large elements can carry most of a short row's norm. Computing
# fp16 inputs in bf16 lands at 1.7e-3 (worst element 4e-3) and fails.
TOLERANCES = {
    "bfloat16": {"atol": 1e-2, "rtol": 1.6e-2, "rel": 1e-2},
    "float16": {"atol": 1e-3, "rtol": 2e-3, "rel": 1.2e-3},
}


# ------------------------------------------------------------- the call protocol
LATE_COLS = 2  # columns of x rescaled per call after the clock starts
DEFAULT_EPS = 1e-6


def buffers(shape: Shape) -> list[tuple]:
    return [("x", (shape.rows, shape.cols), shape.dtype, "input"), ("w", (shape.cols,), shape.dtype, "input"),
            ("y", (shape.rows, shape.cols), shape.dtype, "output")]


def draw_call(shape: Shape, rng, vary: bool, index: int) -> dict:
    """Timed calls: unit-scale x and the usual eps. Check calls: x's scale varies and eps
    is set in proportion to mean(x^2), so a kernel that ignores eps (or a scale) is wrong.
    eps's factor follows the call's index in its batch (both in any two calls: an ignored
    eps is caught with certainty, not by the luck of a draw); the scale is drawn."""
    if not vary:
        return {"args": {"eps": DEFAULT_EPS}, "amplitude": 1.0}
    amplitude = rng.choice((1.0, 3.0, 0.05))
    return {"args": {"eps": (1.0, 0.1)[index % 2] * amplitude ** 2}, "amplitude": amplitude}


def inputs(shape: Shape, device: str, seed: int, call: dict) -> dict:
    """Fresh x ~ N(0, amplitude^2) and w ~ 1 + N(0, 1/4), drawn on the device."""
    import torch

    dt = getattr(torch, shape.dtype)
    g = torch.Generator(device=device).manual_seed(seed)
    x = (torch.randn(shape.rows, shape.cols, generator=g, device=device) * call["amplitude"]).to(dt)
    w = (1.0 + 0.5 * torch.randn(shape.cols, generator=g, device=device)).to(dt)
    return {"x": x, "w": w}


def late_change(shape: Shape, rng) -> tuple:
    """Two columns of x scaled by 2^k after the clock starts, k chosen so that they carry
    about half of each row's sum of squares: every row's rsqrt changes, so every output
    element moves by its row's factor (all but rows whose two entries are both near zero,
    < 1% of rows; elements near zero move by less than the absolute tolerance) and a
    precomputed output is wrong on every row. With one column there is no other column
    to change the norm: w is scaled instead."""
    if shape.cols == 1:
        return "w", 0, [0], 8.0
    k = min(LATE_COLS, shape.cols - 1)
    cols = sorted(rng.sample(range(shape.cols), k))
    return "x", 1, cols, 2.0 ** max(1, min(6, round(math.log2(math.sqrt(shape.cols / k)))))


def reference(x, w, eps: float):
    """RMSNorm in float64 (CPU) or float32 (GPU)."""
    import torch

    precision = torch.float64 if x.device.type == "cpu" else torch.float32
    xf = x.to(precision)
    return xf * torch.rsqrt(xf.square().mean(dim=-1, keepdim=True) + eps) * w.to(precision)


def expected(inputs: dict, shape: Shape, call: dict):
    return reference(inputs["x"], inputs["w"], call["args"]["eps"])


def expected_rows(inputs: dict, shape: Shape, call: dict, rows):
    """rows: [R, 1] row numbers of the output -> [R, N]."""
    return reference(inputs["x"][rows[:, 0]], inputs["w"], call["args"]["eps"])


# record column -> (trusted file next to this one, its function, what it is). The record's
# column is named cudnn for attention's sake; the label (env.baseline_labels) says what it holds.
BASELINES = {"cudnn": ("baselines.py", "torch_rms_norm",
                       "torch rms_norm (torch.nn.functional.rms_norm: PyTorch's own RMSNorm kernel)")}


# ------------------------------------------------------------------ search space
SEED = "seeds/rowwise.py"  # v0, relative to this file
KNOWLEDGE_BASE = False  # knowledge_base/ is about attention: the heuristic cites levers.py only
KNOBS = {"BLOCK_M": (1, 2, 4, 8, 16), "BLOCK_N": (64, 128, 256, 512, 1024, 2048, 4096, 8192),
         "NUM_WARPS": (1, 2, 4, 8, 16)}
TILE_LIMIT = {"cuda": 32 * 1024}  # fp32 tile elements a program may hold (spread over its threads)
ACC_REGISTERS = 128  # fp32 tile registers per thread above which the compiler spills


def fits(knobs: dict, device: str) -> bool:
    """Whether a setting can launch: the [BLOCK_M, BLOCK_N] fp32 tile within the limit."""
    limit = TILE_LIMIT.get(device)
    return limit is None or knobs.get("BLOCK_M", 1) * knobs.get("BLOCK_N", 1024) <= limit


def register_pressure(knobs: dict) -> float:
    """fp32 tile registers per thread."""
    return knobs.get("BLOCK_M", 1) * knobs.get("BLOCK_N", 1024) / (32 * knobs.get("NUM_WARPS", 4))
