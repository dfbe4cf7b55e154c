"""The attention-forward problem: shapes, suites, FLOPs, reference and inputs.

This module is *trusted* code: the harness imports it in the evaluation worker to
make inputs and compute the reference. Candidates never see or edit it, nor
reference_kernel.py beside it, the fused float32 reference that expected() uses for
large shapes on a GPU.

Contract of a candidate (one Python file):

    def attention(q, k, v, causal=False, sm_scale=None) -> torch.Tensor

q: [B, Hq, S, D], k and v: [B, Hkv, S, D], Hq a multiple of Hkv (MHA when equal,
GQA otherwise), dtype bf16 or fp16, D in {64, 128}, any S >= 1. sm_scale defaults
to 1/sqrt(D). The output has q's shape and dtype, and the work is done by Triton
kernels that the file defines (no torch/library attention, matmul or softmax).

Torch is imported lazily so that the core (suites, FLOPs) stays importable and
testable without it.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

NAME = "attention-fwd"
SIGNATURE = "attention(q, k, v, causal=False, sm_scale=None)"  # the candidate's entry point
HEAD_DIMS = (64, 128)
DTYPES = ("bfloat16", "float16")


@dataclass(frozen=True)
class Shape:
    """One attention problem instance."""

    batch: int
    heads_q: int
    heads_kv: int
    seqlen: int
    head_dim: int
    causal: bool
    dtype: str = "bfloat16"

    @property
    def name(self) -> str:
        kind = "mha" if self.heads_q == self.heads_kv else f"gqa{self.heads_q}/{self.heads_kv}"
        mask = "causal" if self.causal else "full"
        return (f"{kind} b{self.batch} s{self.seqlen} d{self.head_dim} "
                f"{mask} {short_dtype(self.dtype)}")

    def flops(self) -> float:
        """4·B·Hq·S²·D, halved when causal (the usual FlashAttention convention)."""
        f = 4.0 * self.batch * self.heads_q * self.seqlen ** 2 * self.head_dim
        return f / 2 if self.causal else f


def short_dtype(dtype: str) -> str:
    return {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}[dtype]


def validate(shape: Shape) -> None:
    """Raise ValueError if a shape is outside the contract."""
    if shape.head_dim not in HEAD_DIMS:
        raise ValueError(f"head_dim {shape.head_dim} not in {HEAD_DIMS}")
    if shape.dtype not in DTYPES:
        raise ValueError(f"dtype {shape.dtype} not in {DTYPES}")
    if shape.seqlen < 1 or shape.batch < 1 or shape.heads_kv < 1:
        raise ValueError("batch, heads and seqlen must be >= 1")
    if shape.heads_q % shape.heads_kv:
        raise ValueError(f"heads_q {shape.heads_q} is not a multiple of heads_kv {shape.heads_kv}")


# --------------------------------------------------------------------------- suites
# Timed suites. "avo" is the AVO paper's: D=128, batch·seqlen = 32k tokens,
# MHA with 16 heads and GQA with 32 query heads over 8 or 4 KV heads.
TOKENS = 32 * 1024
SEQLENS = (4096, 8192, 16384, 32768)


def _sweep(heads_q: int, heads_kv: int, head_dim: int = 128, seqlens=SEQLENS) -> list[Shape]:
    return [Shape(TOKENS // s, heads_q, heads_kv, s, head_dim, causal)
            for causal in (False, True) for s in seqlens]


SUITES: dict[str, list[Shape]] = {
    "mha": _sweep(16, 16),
    "gqa": _sweep(32, 8) + _sweep(32, 4),
    "d64": _sweep(16, 16, head_dim=64),
    # Interpreter-sized suite for machines without a GPU: timings are labelled
    # as interpreter timings and never compared with GPU figures.
    "cpu": [Shape(1, 2, 2, 128, 64, False, "float16"), Shape(1, 4, 2, 128, 64, True, "float16")],
}
SUITES["avo"] = SUITES["mha"] + SUITES["gqa"]
DEFAULT_SUITE = {"cuda": "avo", "cpu": "cpu"}


# ------------------------------------------------------------------ correctness
# Correctness runs on more shapes than are timed: odd and tiny S, both dtypes,
# both head dims, GQA groups 1/2/4/8, causal and not. None is a multiple of
# every block size, so tails and partial diagonal tiles are always exercised.
def check_shapes(device: str) -> list[Shape]:
    """Shapes every candidate must get right (on top of the timed suite's own)."""
    if device == "cpu":  # the interpreter costs ~0.1 s per call at S=128
        cases = [
            (1, 2, 2, 1, 64, True, "float16"),
            (1, 2, 2, 17, 128, False, "float16"),
            (2, 4, 2, 33, 64, True, "float16"),
            (1, 8, 1, 70, 64, False, "bfloat16"),
            (1, 4, 1, 97, 128, True, "bfloat16"),
            (1, 2, 2, 130, 64, True, "float16"),
        ]
    else:
        cases = [
            (1, 2, 2, 1, 128, True, "bfloat16"),
            (2, 3, 3, 17, 64, False, "float16"),
            (1, 4, 2, 127, 128, True, "bfloat16"),
            (3, 8, 2, 333, 64, True, "bfloat16"),
            (1, 16, 2, 1000, 128, False, "float16"),
            (2, 32, 4, 1031, 128, True, "float16"),
            (1, 8, 1, 2049, 128, False, "bfloat16"),
            (1, 16, 16, 4097, 64, True, "bfloat16"),
            (1, 32, 8, 3000, 128, True, "bfloat16"),
            (1, 16, 2, 1536, 128, False, "bfloat16"),
        ]
    return [Shape(*c) for c in cases]


# Tolerances per output dtype, on every element |out - ref| <= atol + rtol*|ref|
# and on the whole tensor ||out - ref|| / ||ref|| <= rel. bf16 keeps 8 mantissa
# bits (ulp 2^-8 ~ 3.9e-3) and P is rounded to bf16 before the PV product, so a
# correct kernel lands near 3e-3 relative; fp16 keeps 11 bits, ~8x tighter. A
# kernel that silently computes in a lower precision (fp16 in bf16's place, or
# bf16/fp8 in fp16's) exceeds these.
TOLERANCES = {
    "bfloat16": {"atol": 2e-2, "rtol": 2e-2, "rel": 1e-2},
    "float16": {"atol": 3e-3, "rtol": 3e-3, "rel": 1.5e-3},
}


# ----------------------------------------------------------------- inputs / ref
def make_inputs(shape: Shape, device: str, seed: int, amplitude: float = 1.0):
    """Fresh random q, k, v (never zeros). amplitude scales q to sharpen softmax."""
    import torch

    dt = getattr(torch, shape.dtype)
    # drawn on the device itself: the timed suite's tensors are 128 MB each
    g = torch.Generator(device=device).manual_seed(seed)
    b, hq, hkv, s, d = shape.batch, shape.heads_q, shape.heads_kv, shape.seqlen, shape.head_dim

    def draw(*size, scale=1.0):
        return (torch.randn(*size, generator=g, device=device) * scale).to(dt)

    q = draw(b, hq, s, d, scale=amplitude)
    k = draw(b, hkv, s, d)
    v = draw(b, hkv, s, d)
    return q, k, v


def refill_(q, k, v, seed: int, amplitude: float = 1.0) -> None:
    """Overwrite the same buffers with new random values, in place."""
    import torch

    g = torch.Generator(device=q.device).manual_seed(seed)
    for t, a in ((q, amplitude), (k, 1.0), (v, 1.0)):
        t.copy_(torch.randn(t.shape, generator=g, device=t.device) * a)


def reference(q, k, v, causal: bool, sm_scale: float | None = None, precision=None):
    """Attention in float32 (GPU) or float64 (CPU), chunked over query rows so
    the S×S score matrix never has to fit in memory at once."""
    import torch

    if precision is None:
        precision = torch.float64 if q.device.type == "cpu" else torch.float32
    d = q.shape[-1]
    scale = sm_scale if sm_scale is not None else 1.0 / math.sqrt(d)
    group = q.shape[1] // k.shape[1]
    kf = k.to(precision).repeat_interleave(group, dim=1)
    vf = v.to(precision).repeat_interleave(group, dim=1)
    s = q.shape[2]
    out = torch.empty(q.shape, dtype=precision, device=q.device)
    # rows per chunk: keep the score block around 2^28 elements
    rows = max(1, min(s, (1 << 28) // max(1, q.shape[0] * q.shape[1] * s)))
    prev_tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False  # a true fp32 reference
    try:
        for start in range(0, s, rows):
            stop = min(s, start + rows)
            qf = q[:, :, start:stop].to(precision)
            scores = torch.matmul(qf, kf.transpose(-1, -2)) * scale
            if causal:
                i = torch.arange(start, stop, device=q.device)[:, None]
                j = torch.arange(s, device=q.device)[None, :]
                scores.masked_fill_(j > i, float("-inf"))
            out[:, :, start:stop] = torch.matmul(torch.softmax(scores, dim=-1), vf)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = prev_tf32
    return out


def reference_rows(q, k, v, causal: bool, sm_scale: float | None, rows):
    """The reference for a few output rows only: rows is a LongTensor [R, 3] of
    (batch, query head, query position). Returns [R, D] in float32 (GPU) or
    float64 (CPU). Costs R·S·D, so every timed call can be verified.
    Batched over the rows (their K and V gathered as [R, S, D]), with no host sync;
    chunked over rows only when R·S·D passes ~2^28 elements."""
    import torch

    precision = torch.float64 if q.device.type == "cpu" else torch.float32
    d, s = q.shape[-1], k.shape[2]
    scale = sm_scale if sm_scale is not None else 1.0 / math.sqrt(d)
    group = q.shape[1] // k.shape[1]
    rows = rows.to(q.device)  # a no-op where the judge already put them there
    b, h, i = rows[:, 0], rows[:, 1], rows[:, 2]
    hk = torch.div(h, group, rounding_mode="floor")  # the KV head of each query head
    qr = q[b, h, i].to(precision)  # [R, D]
    n = rows.shape[0]
    out = torch.empty(qr.shape, dtype=precision, device=q.device)
    keys = torch.arange(s, device=q.device)
    # rows per chunk, [chunk, S, D] elements at most about: 2^28 on a GPU (memory), 2^18 on
    # the CPU (cache: a whole [R, S, D] float64 gather is several times slower there)
    budget = 1 << (18 if q.device.type == "cpu" else 28)
    chunk = max(1, min(n, budget // max(1, s * d)))
    prev_tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        for start in range(0, n, chunk):
            sl = slice(start, min(n, start + chunk))
            kr = k[b[sl], hk[sl]].to(precision)  # [r, S, D]
            vr = v[b[sl], hk[sl]].to(precision)
            scores = torch.matmul(kr, qr[sl].unsqueeze(-1)).squeeze(-1) * scale  # [r, S]
            if causal:  # keys after each row's own query position
                scores.masked_fill_(keys[None, :] > i[sl, None], float("-inf"))
            out[sl] = torch.matmul(torch.softmax(scores, dim=-1).unsqueeze(1), vr).squeeze(1)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = prev_tf32
    return out


# ------------------------------------------------------------- the call protocol
# What the judge (avo/harness/calls.py) reads to lay out, draw, change and verify
# one call; docs/problems.md explains the contract.
KEY_SCALE = 8.0  # the late change's factor: a power of two, exact


def buffers(shape: Shape) -> list[tuple]:
    """The buffers of one call: q, k, v in the entry's order, then the output."""
    q = (shape.batch, shape.heads_q, shape.seqlen, shape.head_dim)
    kv = (shape.batch, shape.heads_kv, shape.seqlen, shape.head_dim)
    return [("q", q, shape.dtype, "input"), ("k", kv, shape.dtype, "input"), ("v", kv, shape.dtype, "input"),
            ("out", q, shape.dtype, "output")]


def draw_call(shape: Shape, rng, vary: bool, index: int) -> dict:
    """One call's draws: q's amplitude (sharper softmax) and sm_scale, varied on check calls.
    They follow the call's index in its batch, not the generator: a kernel that ignores
    sm_scale must be wrong with certainty, and a random choice can draw the default on
    every call (a quick CPU check has 4 draws that matter: 1 evaluation in 16). Calls 0
    and 1 (every check batch) take both values of each, the sharpest softmax (amplitude 3,
    the default scale) first; calls 0-3 take every pair."""
    if not vary:
        return {"args": {"causal": shape.causal, "sm_scale": None}, "amplitude": 1.0}
    sm_scale = (None, 0.7 / math.sqrt(shape.head_dim))[index % 2]
    amplitude = (3.0, 1.0)[(index // 2 + index) % 2]
    return {"args": {"causal": shape.causal, "sm_scale": sm_scale}, "amplitude": amplitude}


def inputs(shape: Shape, device: str, seed: int, call: dict) -> dict:
    q, k, v = make_inputs(shape, device, seed, call["amplitude"])
    return {"q": q, "k": k, "v": v}


def late_change(shape: Shape, rng) -> tuple:
    """One head-dim column d of k, for every key of every (batch, KV head), scaled by 8
    after the clock starts. Every score q_i·k_j moves by 7·q_id·k_jd·scale, so an output
    computed before the clock is wrong on most rows (72-97% beyond tolerance at S=1k-4k,
    D=128 and 64), and it cannot be patched for less than the attention itself: each
    score's change is its own (exp of it is no product of row and key factors), so every
    score and all of P·V must be computed again. The change it replaces, 2 key positions
    scaled by 8, moved 46-70% of rows, and left a kernel that had computed the output from
    the staged inputs before the clock (a thread watching the buffers) a rank-2 fix-up per
    row: O(S·D) in place of O(S²·D). It touches B·Hkv·S elements per call inside the
    clock (the old one 2·B·Hkv·D): 3.1M in a batch of 24 calls at B=2, Hkv=16, S=4096."""
    return "k", 3, [rng.randrange(shape.head_dim)], KEY_SCALE


def expected(inputs: dict, shape: Shape, call: dict):
    """The whole output in float32 (GPU) or float64 (CPU), for the judge's element-by-element
    comparisons (the check shapes, and the recheck's one call of every timed shape). On a GPU
    the large shapes (every timed suite shape) use the fused float32 kernel of
    reference_kernel.py, as accurate as reference() (products exact, sums and softmax in
    float32, P carried to ~16 bits through P·V) without its unfused S×S score traffic (the
    recheck of the avo suite: ~7 s of the GPU lock with reference()); the rest, and every
    check shape, keep the independent torch reference()."""
    q, k, v = inputs["q"], inputs["k"], inputs["v"]
    sm_scale = call["args"]["sm_scale"]
    if fused_reference(shape, q.device.type):
        return _reference_kernel().attention_fp32(q, k, v, shape.causal, sm_scale)
    return reference(q, k, v, shape.causal, sm_scale)


FUSED_REFERENCE_SCORES = 2 ** 30  # B·Hq·S² from which expected() uses the fused kernel on a GPU


def fused_reference(shape: Shape, device: str) -> bool:
    """Whether expected() computes this shape's reference with the fused kernel: on a GPU, for
    B·Hq·S² >= 2^30 scores (every timed suite shape; none of check_shapes("cuda"))."""
    return device == "cuda" and shape.batch * shape.heads_q * shape.seqlen ** 2 >= FUSED_REFERENCE_SCORES


def warm_up(device: str) -> None:
    """In a judge started ahead of its job: Triton and the fused reference kernel imported
    and its variants loaded (compiled once per machine, then from the judge's Triton
    cache), so that the recheck's first use costs no GPU-lock time (~1 s on an H100)."""
    if device != "cuda":
        return
    import torch

    # the compile shapes of every shape the recheck gives the fused kernel: the smallest shapes
    # in the same Triton specialisation classes (the same rule as the candidates' compile stage)
    fused = [s for suite in SUITES.values() for s in suite if fused_reference(s, device)]
    for shape in dict.fromkeys(compile_shapes(fused)):
        (_, q_dims, dt, _), (_, kv_dims, _, _) = buffers(shape)[:2]
        q = torch.zeros(q_dims, dtype=getattr(torch, dt), device="cuda")
        kv = torch.zeros(kv_dims, dtype=getattr(torch, dt), device="cuda")
        _reference_kernel().attention_fp32(q, kv, kv, shape.causal)
    torch.cuda.synchronize()


@functools.lru_cache(maxsize=None)
def _reference_kernel():
    """reference_kernel.py beside this file, imported on first use (it imports Triton, which
    loading a problem must not), under a module name derived from this one's."""
    import importlib.util
    import sys
    from pathlib import Path

    name = f"reference_kernel_of_{__name__}"
    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().with_name("reference_kernel.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def expected_rows(inputs: dict, shape: Shape, call: dict, rows):
    """rows: [R, 3] (batch, query head, position) of the output."""
    return reference_rows(inputs["q"], inputs["k"], inputs["v"], shape.causal, call["args"]["sm_scale"], rows)


def compile_shapes(shapes: list[Shape]) -> list[Shape]:
    """The smallest shapes that compile as `shapes` do: one call each, which the judge
    makes outside its GPU lock, so that the timed shapes compile nothing while the GPU
    is held. Triton specialises every integer argument on being 1 and on divisibility
    by 16, so a small shape reuses a large one's binary when each of its integers is in
    the same class: batch, query heads, KV heads, GQA group, the length, and the length's
    tile count and remainder for tiles of 16 to 256 rows (a kernel's grid and EVEN_M
    switch). Dtype, head dim and causal are kept. (H100: the lineage's Gluon kernel
    specialises on the tile count; with the old cover, S=128 tiles once, each suite
    shape compiled again under the lock, ~1.5 s each.) A kernel that passes some other
    derived integer (B*H, say) may still compile under the lock: its own cost, timed
    honestly. Each call here is at most B=2, Hq=32, S=4096 (~0.5 ms on an H100)."""
    small = {(s.dtype, s.head_dim, s.causal, _smallest_batch(s.batch), *_smallest_heads(s.heads_q, s.heads_kv),
              _smallest_length(s.seqlen)) for s in shapes}
    return [Shape(b, hq, hkv, n, head_dim, causal, dtype)
            for dtype, head_dim, causal, b, hq, hkv, n in sorted(small)]


TILE_ROWS = (16, 32, 64, 128, 256)  # tile heights a kernel may cut the length into


def _int_class(x: int) -> str:
    """Triton's specialisation of an integer argument."""
    return "1" if x == 1 else "16" if x % 16 == 0 else "-"


def _length_class(n: int) -> tuple:
    return (_int_class(n),) + tuple((_int_class(-(-n // t)), n % t == 0) for t in TILE_ROWS)


def _smallest_batch(b: int) -> int:
    return next(x for x in (1, 2, 16, b) if _int_class(x) == _int_class(b))


def _smallest_heads(heads_q: int, heads_kv: int) -> tuple[int, int]:
    group = heads_q // heads_kv
    want = (_int_class(heads_q), _int_class(heads_kv), _int_class(group))
    return min((kv * g, kv) for kv in range(1, 33) for g in range(1, 33)  # (1..32: each class has a member)
               if (_int_class(kv * g), _int_class(kv), _int_class(g)) == want)


@functools.lru_cache(maxsize=None)
def _smallest_length(n: int) -> int:
    want = _length_class(n)
    return next(m for m in range(1, n + 1) if _length_class(m) == want)


# record column -> (trusted file next to this one, its function, what it is); timed on GPUs
# before the candidate's runner exists, by the same clock; ratios are taken to `cudnn`
BASELINES = {"cudnn": ("baselines.py", "cudnn", "cuDNN (PyTorch SDPA, CUDNN_ATTENTION backend)"),
             "fa2": ("baselines.py", "fa2", "FA2 (FlashAttention-2: PyTorch SDPA, FLASH_ATTENTION backend)")}


def held_out_shapes(device: str, rng, n: int) -> list[Shape]:
    """Timed shapes the search never sees, drawn per evaluation: other sequence
    lengths, batch sizes and GQA groups. A candidate much faster on the suite than
    here is special-casing the suite."""
    return rng.sample(held_out_pool(device), n)


def held_out_pool(device: str) -> list[Shape]:
    """Every shape held_out_shapes draws from (the orchestrator times their baselines once
    per GPU, so that a candidate past the gate waits for none)."""
    if device == "cpu":
        pool = [(1, h, kv, s, 64, c, dt) for s in (96, 112, 160) for h, kv in ((2, 2), (4, 2), (4, 1))
                for c in (False, True) for dt in ("float16", "bfloat16")]
    else:
        pool = [(TOKENS // 2 // s, h, kv, s, 128, c, "bfloat16") for s in (2048, 3072, 6144, 12288)
                for h, kv in ((16, 16), (32, 16), (32, 8), (32, 2), (24, 8)) for c in (False, True)]
    return [Shape(*c) for c in pool]


# ------------------------------------------------------------------ search space
# What a search may change in a candidate: module-level UPPERCASE constants (the
# seed's `BLOCK_M = 128`) and their legal values, in order; the heuristic moves a
# knob to a neighbouring value (feature switches, True/False, need no entry). A
# knob ending in a HEAD_DIM_VARIANTS suffix is the same knob for that head dim
# (the lineage's kernels pick their tiles per head dim: BLOCK_M_D64, ...).
SEED = "seeds/fa2.py"  # v0, relative to this file
BLOCK_SIZES = (16, 32, 64, 128, 256)
KNOBS = {"BLOCK_M": BLOCK_SIZES, "BLOCK_N": BLOCK_SIZES, "NUM_WARPS": (4, 8), "NUM_STAGES": (1, 2, 3, 4, 5)}
HEAD_DIM_VARIANTS = {"": 128, "_D64": 64}  # suffix -> the head dim its knobs serve
KNOBS.update({name + suffix: values for name, values in list(KNOBS.items())
              for suffix in HEAD_DIM_VARIANTS if suffix})
SMEM_BYTES = {"cuda": 227 * 1024}  # per-block shared memory (H100); no limit on the interpreter
ACC_REGISTERS = 128  # fp32 accumulator registers per thread above which the compiler spills
COST_MODEL = "cost_model.py"  # the CPU lineage's commit basis (avo/cost_basis.py): modelled H100 TFLOPS from the knobs


def knob_base(name: str) -> str:
    """'BLOCK_M_D64' -> 'BLOCK_M': the knob whose known effects this one shares."""
    for suffix in HEAD_DIM_VARIANTS:
        if suffix and name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _tiles(knobs: dict):
    """(head_dim, BLOCK_M, BLOCK_N, NUM_WARPS, NUM_STAGES) for each head-dim variant present."""
    for suffix, head_dim in HEAD_DIM_VARIANTS.items():
        if suffix and not any(k.endswith(suffix) for k in knobs):
            continue
        get = lambda name, default: knobs.get(name + suffix, default)  # noqa: E731
        yield head_dim, get("BLOCK_M", 64), get("BLOCK_N", 64), get("NUM_WARPS", 4), get("NUM_STAGES", 2)


def fits(knobs: dict, device: str) -> bool:
    """Whether a knob setting can launch on `device`: the Q tile plus one K and one V
    tile per pipeline stage, 2-byte elements, in shared memory."""
    limit = SMEM_BYTES.get(device)
    return limit is None or all(2 * (bm * d + 2 * stages * bn * d) <= limit
                                for d, bm, bn, _, stages in _tiles(knobs))


def register_pressure(knobs: dict) -> float:
    """fp32 accumulator registers per thread (BLOCK_M x HEAD_DIM over the warps), worst variant."""
    return max(bm * d / (32 * warps) for d, bm, _, warps, _ in _tiles(knobs))
