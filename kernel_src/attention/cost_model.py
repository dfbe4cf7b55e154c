"""A cost model of this problem's kernels on an H100: the CPU lineage's commit basis.

Why it exists. Without a GPU the Triton interpreter runs the kernels, and its timings
measure Python overhead, not kernel quality: a re-run of the same kernel lands
within +-30%, and knobs such as NUM_STAGES do nothing there at all (a fresh CPU run
once committed NUM_STAGES=1 as a 2.2x "speed-up"). So interpreter timings never
decide a CPU commit; this model does: it estimates, from a candidate's tile knobs,
the TFLOPS the kernel would reach on an H100 SXM over the problem's GPU suites.

What it is, honestly:
- A model, not a measurement. Its constants are public H100 SXM figures or round
  assumptions (named below). It is meant to rank knob settings, not to predict
  absolute TFLOPS; tests/test_cost_model.py checks its ranking against the knob-only
  settings of the seed kernel that were measured on an H100 (lineage/cuda attempts).
- It sees the tile knobs only: BLOCK_M, BLOCK_N, NUM_WARPS, NUM_STAGES and their
  per-head-dim variants (module-level constants, read with `ast` by avo/cost_basis.py; the
  candidate's code never runs). A knob the source does not set takes the problem's
  default (64, 64, 4, 2, as problem.fits assumes). Every other edit (a causal loop
  split, TMA, warp specialisation, a new softmax) gives the same modelled value as
  its parent, so on CPU it cannot commit: such changes need a GPU lineage.
- Deterministic: the same knobs give the same number (no clock, device or randomness).

The model, per shape of the problem's default GPU suite (DEFAULT_SUITE["cuda"], "avo":
MHA and GQA at head dim 128, what the GPU lineage is judged on; so _D64 knobs do not
change the figure), with the tiles (BM, BN, W warps, S stages) of that shape's head dim D:
(a) Work. The kernel computes whole BM x BN tiles: causal query tile i visits the key
    tiles up to its own last row ((i+1)*BM keys), full shapes all ceil(S/BN), so the
    diagonal tiles' masked half and the tails past S are work too. Per score element:
    4*D tensor-core flops at PEAK_MMA times an instruction efficiency (wgmma needs 16
    query rows per warp, and its N width, BN for Q K^T and D for P V, sets how well
    it is fed: n / (n + 16)); one exp2 on the MUFU pipe (MUFU_RATE); and FP32 work:
    SOFTMAX_FP32_OPS per element plus the online-softmax correction of the BM x D
    accumulator once per key tile (D / BN per element) at FP32_RATE. Triton's FA2
    schedule does not overlap softmax with the matmuls, so the three add up.
(b) Memory. Q, K, V and O cross HBM once (HBM_BW); K and V are then re-read once per
    BM query tile, and those re-reads come from L2 (the programs of one head run at
    the same time) at L2_BW. Taller query tiles halve the re-reads.
(c) Fit. A setting that does not fit shared memory (problem.fits) cannot launch:
    0 TFLOPS. Registers per thread are estimated as the fp32 accumulator plus the
    score tile, (BM*D + BM*BN) / (32*W), plus REG_BASE for addresses and softmax
    state; beyond MAX_REGS the excess spills to local memory, costing
    SPILL_COST x its share of the registers.
(d) Latency hiding. CTAs per SM are bounded by registers, shared memory and warps.
    K/V tiles buffered per SM, depth = NUM_STAGES x CTAs, hide load latency: the
    exposed fraction is LATENCY_SHARE / depth. Warps resident per SM hide instruction
    latency: efficiency w / (w + 1). Programs run in waves over the SMs' CTA slots;
    the last wave's idle slots are lost.
time = max(compute, memory) / (latency hiding x warp efficiency x wave efficiency
x spill factor); the modelled value is the geomean over shapes of flops / time.
"""
from __future__ import annotations

import math

NAME = "h100-tile-roofline/1"  # recorded with every modelled figure; a new model gets a new name

PEAK_MMA = 989e12  # dense bf16/fp16 tensor-core flop/s, H100 SXM
MUFU_RATE = 132 * 16 * 1.83e9  # exp2 per second: 16 per clock per SM
FP32_RATE = 132 * 128 * 1.83e9  # FP32 operations per second: 128 per clock per SM
SOFTMAX_FP32_OPS = 5  # per score element: scale, running max, subtract, row sum, convert P
HBM_BW = 3.35e12  # bytes/s
L2_BW = 10e12  # bytes/s for K/V re-reads from L2: a round assumption, not a measured figure
SMS = 132
SMEM_PER_SM = 228 * 1024
REGS_PER_SM = 65536
MAX_WARPS_PER_SM = 64
MAX_REGS = 255  # per thread
REG_BASE = 40  # registers per thread besides the tiles (addresses, m_i, l_i, loop state)
SPILL_COST = 2.0
LATENCY_SHARE = 0.35  # the exposed share of a K/V load with one tile buffered per SM
ELEM_BYTES = 2  # bf16 / fp16
DEFAULTS = {"BLOCK_M": 64, "BLOCK_N": 64, "NUM_WARPS": 4, "NUM_STAGES": 2}  # as problem.fits assumes
TILE_KNOBS = tuple(DEFAULTS)


def tiles_for(knobs: dict, head_dim: int, problem) -> dict:
    """The tile knobs a shape of `head_dim` runs with: the head dim's own variant
    (BLOCK_M_D64, ...) where the source sets one, else the base knob, else the default."""
    suffix = next((s for s, d in problem.HEAD_DIM_VARIANTS.items() if d == head_dim), "")
    return {k: knobs.get(k + suffix, knobs.get(k, DEFAULTS[k])) if suffix else knobs.get(k, DEFAULTS[k])
            for k in TILE_KNOBS}


def shapes(problem) -> list:
    """The shapes the model scores: the problem's default GPU suite, what a GPU lineage is judged on."""
    return list(problem.SUITES[problem.DEFAULT_SUITE["cuda"]])


def legal(knobs: dict, problem) -> bool:
    """Every tile knob the source sets is one of the problem's legal values."""
    return all(v in problem.KNOBS[k] for k, v in knobs.items()
               if k in problem.KNOBS and problem.knob_base(k) in TILE_KNOBS)


def shape_tflops(shape, t: dict) -> float:
    """Modelled TFLOPS of one shape with tiles `t` (BLOCK_M, BLOCK_N, NUM_WARPS, NUM_STAGES)."""
    bm, bn, w, st = t["BLOCK_M"], t["BLOCK_N"], t["NUM_WARPS"], t["NUM_STAGES"]
    s, d, heads = shape.seqlen, shape.head_dim, shape.batch * shape.heads_q
    q_tiles = math.ceil(s / bm)
    if shape.causal:  # query tile i: keys up to its last row, (i+1)*BM, capped at S
        kv_tiles = sum(math.ceil(min(s, (i + 1) * bm) / bn) for i in range(q_tiles))
    else:
        kv_tiles = q_tiles * math.ceil(s / bn)
    elems = heads * kv_tiles * bm * bn  # score elements computed, wasted ones included
    # (a) work
    rows_per_warp = min(1.0, (bm / w) / 16)
    mma_eff = rows_per_warp * 0.5 * (bn / (bn + 16) + d / (d + 16))
    t_mma = elems * 4 * d / (PEAK_MMA * mma_eff)
    t_softmax = elems / MUFU_RATE + elems * (SOFTMAX_FP32_OPS + d / bn) / FP32_RATE
    compute = t_mma + t_softmax
    # (b) memory
    per_head = s * d * ELEM_BYTES
    compulsory = shape.batch * (2 * shape.heads_q + 2 * shape.heads_kv) * per_head  # Q, O; K, V
    rereads = heads * kv_tiles * 2 * bn * d * ELEM_BYTES - shape.batch * 2 * shape.heads_kv * per_head
    memory = compulsory / HBM_BW + max(0.0, rereads) / L2_BW
    # (c) registers, (d) occupancy and latency hiding
    regs = (bm * d + bm * bn) / (32 * w) + REG_BASE
    spill = 1.0 / (1.0 + SPILL_COST * max(0.0, regs - MAX_REGS) / MAX_REGS)
    smem = ELEM_BYTES * (bm * d + 2 * st * bn * d)
    ctas = max(1, min(REGS_PER_SM // (min(regs, MAX_REGS) * 32 * w), SMEM_PER_SM // smem,
                      MAX_WARPS_PER_SM // w))
    hiding = 1.0 - LATENCY_SHARE / (st * ctas)
    warps = ctas * w
    warp_eff = warps / (warps + 1)
    programs = q_tiles * heads
    slots = SMS * ctas
    waves = math.ceil(programs / slots)
    wave_eff = programs / (waves * slots)
    seconds = max(compute, memory) / (hiding * warp_eff * wave_eff * spill)
    return shape.flops() / seconds / 1e12


def modelled_tflops(knobs: dict, problem) -> float:
    """Geomean modelled TFLOPS over the default GPU suite's shapes; 0.0 for a setting that
    cannot launch (illegal values, or it does not fit shared memory)."""
    if not legal(knobs, problem) or not problem.fits(knobs, "cuda"):
        return 0.0
    figures = [shape_tflops(sh, tiles_for(knobs, sh.head_dim, problem)) for sh in shapes(problem)]
    return round(math.exp(sum(math.log(f) for f in figures) / len(figures)), 3)
