"""Step 3: step 2 with the masked key blocks as straight-line code, and the
warp-specialization / QK-pipelining switches that this structure makes compilable.

What changes against s2_tma.py (now lineage/cuda/v0003):
- DIAG_UNROLLED: the masked blocks (the causal diagonal, N_MASKED = BLOCK_M / BLOCK_N of
  them, or the one non-causal tail block) are unrolled `if`-guarded tiles after the main
  loop instead of a second loop. The kernel then has a single loop, which is what
  Triton 3.6's warp-specialization pass needs to compile the split kernel at all; on the
  H100 it also measured ~+3% on GQA non-causal (the rest within run-to-run noise).
- Switches, OFF by default because they measured slower on the H100 / Triton 3.6
  (knowledge_base/kernel-speed-log.md has the numbers):
  WARP_SPECIALIZE / WARP_SPECIALIZE_CAUSAL (`tl.range(..., warp_specialize=True)` on
  the unmasked loop: 4 warps 128x128 ran at ~240 TFLOPS, 128x64 ~470 vs 540 plain),
  WS_ONE_LOOP (one specialized loop masking every tile; non-causal only, because
  Triton 3.6 computed the causal variant WRONGLY), PIPELINE_QK (issue QK^T of block j+1
  before the softmax of block j: needs a second K tile in shared memory, so only 2
  stages fit; ~5% slower than 3 plain stages).

From step 2 (unchanged):
- USE_TMA: Q, K, V are read and O written through `tl.make_tensor_descriptor`, one
  descriptor per (batch, head) of shape [S, D]. The copy engine fetches a whole tile in
  one instruction into swizzled shared memory that wgmma reads directly: no address
  arithmetic, no per-thread loads, no registers spent on pointers. Rows past S are
  zero-filled on load and dropped on store by the engine itself, so the tail block needs
  no load mask (the score mask still hides the zero keys).
- The descriptors live in a small global workspace that Triton asks for at launch,
  hence `triton.set_allocator`.
- On the CPU interpreter (no descriptors there) the pointer path of step 1 runs.

Split loop, folded scale, heaviest-first causal order and per-head-dim tiles as in step 1.
"""
import math

import torch
import triton
import triton.language as tl

# ---------------------------------------------------------------- tunable knobs
# head dim 128
BLOCK_M = 128  # query rows per program
BLOCK_N = 128  # key rows per inner-loop step
NUM_WARPS = 8
NUM_STAGES = 3
# head dim 64
BLOCK_M_D64 = 128
BLOCK_N_D64 = 64
NUM_WARPS_D64 = 8
NUM_STAGES_D64 = 3
# features
CAUSAL_SPLIT = True  # unmasked loop + masked (diagonal / tail) loop
HEAVY_FIRST = True  # causal: launch the query blocks with the most keys first
USE_TMA = True  # tensor descriptors on the GPU (the interpreter always uses pointers)
WARP_SPECIALIZE = False  # non-causal: warp-specialized key loop (needs USE_TMA)
WARP_SPECIALIZE_CAUSAL = False  # causal: warp-specialize the unmasked loop only
PIPELINE_QK = False  # software-pipeline QK^T of block j+1 ahead of softmax of block j
DIAG_UNROLLED = True  # masked (diagonal / tail) tiles as straight-line code, not a second loop
WS_ONE_LOOP = False  # non-causal: one specialized loop, mask on every tile (no split)


@triton.jit
def _attn_tiles(
    acc, l_i, m_i, q,
    k_src, v_src,  # tensor descriptors (USE_TMA) or base pointers of this KV head
    stride_ks, stride_vs,
    offs_m, offs_n, offs_d,
    lo, hi, qk_scale, SEQLEN,
    MASKED: tl.constexpr,  # apply the tail mask (and the causal mask if CAUSAL)
    CAUSAL: tl.constexpr,
    BLOCK_N: tl.constexpr,
    USE_TMA: tl.constexpr,
    WARP_SPECIALIZE: tl.constexpr,
    UPCAST_DOT: tl.constexpr,
):
    """Online softmax over key blocks [lo, hi). MASKED=False: every key is valid."""
    for start_n in tl.range(lo, hi, BLOCK_N, warp_specialize=WARP_SPECIALIZE):
        cols = start_n + offs_n
        if USE_TMA:
            k = k_src.load([start_n, 0])  # rows past S arrive as zeros
            v = v_src.load([start_n, 0])
        else:
            k_ptrs = k_src + cols[:, None] * stride_ks + offs_d[None, :]
            v_ptrs = v_src + cols[:, None] * stride_vs + offs_d[None, :]
            if MASKED:
                k = tl.load(k_ptrs, mask=cols[:, None] < SEQLEN, other=0.0)
                v = tl.load(v_ptrs, mask=cols[:, None] < SEQLEN, other=0.0)
            else:
                k = tl.load(k_ptrs)
                v = tl.load(v_ptrs)
        if UPCAST_DOT:
            k = k.to(tl.float32)
            v = v.to(tl.float32)

        qk = tl.dot(q, tl.trans(k))
        if MASKED:
            valid = cols[None, :] < SEQLEN
            if CAUSAL:
                valid = valid & (offs_m[:, None] >= cols[None, :])
            qk = tl.where(valid, qk * qk_scale, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(qk, 1))
            p = tl.math.exp2(qk - m_new[:, None])
        else:
            # scale folded into the exponent: one FFMA per score
            m_new = tl.maximum(m_i, tl.max(qk, 1) * qk_scale)
            p = tl.math.exp2(qk * qk_scale - m_new[:, None])

        alpha = tl.math.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None]
        if UPCAST_DOT:
            acc = tl.dot(p, v, acc)
        else:
            acc = tl.dot(p.to(v.dtype), v, acc)
        m_i = m_new
    return acc, l_i, m_i


@triton.jit
def _attn_masked_tile(
    acc, l_i, m_i, q, k_src, v_src, stride_ks, stride_vs,
    offs_m, offs_n, offs_d, start_n, qk_scale, SEQLEN,
    CAUSAL: tl.constexpr, USE_TMA: tl.constexpr, UPCAST_DOT: tl.constexpr,
):
    """One key block [start_n, start_n + BLOCK_N) with the tail (and causal) mask."""
    cols = start_n + offs_n
    if USE_TMA:
        k = k_src.load([start_n, 0])
        v = v_src.load([start_n, 0])
    else:
        k = tl.load(k_src + cols[:, None] * stride_ks + offs_d[None, :], mask=cols[:, None] < SEQLEN, other=0.0)
        v = tl.load(v_src + cols[:, None] * stride_vs + offs_d[None, :], mask=cols[:, None] < SEQLEN, other=0.0)
    if UPCAST_DOT:
        k = k.to(tl.float32)
        v = v.to(tl.float32)
    qk = tl.dot(q, tl.trans(k))
    valid = cols[None, :] < SEQLEN
    if CAUSAL:
        valid = valid & (offs_m[:, None] >= cols[None, :])
    qk = tl.where(valid, qk * qk_scale, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(qk, 1))
    p = tl.math.exp2(qk - m_new[:, None])
    alpha = tl.math.exp2(m_i - m_new)
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None]
    if UPCAST_DOT:
        acc = tl.dot(p, v, acc)
    else:
        acc = tl.dot(p.to(v.dtype), v, acc)
    return acc, l_i, m_new


@triton.jit
def _load_tile(src, start_n, offs_d, stride, BLOCK_N: tl.constexpr, USE_TMA: tl.constexpr,
               UPCAST_DOT: tl.constexpr):
    """One whole [BLOCK_N, D] key or value block (no mask: all rows are < S)."""
    if USE_TMA:
        t = src.load([start_n, 0])
    else:
        t = tl.load(src + (start_n + tl.arange(0, BLOCK_N))[:, None] * stride + offs_d[None, :])
    if UPCAST_DOT:
        t = t.to(tl.float32)
    return t


@triton.jit
def _attn_tiles_pipelined(
    acc, l_i, m_i, q, k_src, v_src, stride_ks, stride_vs, offs_d,
    lo, hi, qk_scale,
    BLOCK_N: tl.constexpr, USE_TMA: tl.constexpr, UPCAST_DOT: tl.constexpr,
):
    """Unmasked blocks [lo, hi), QK^T of block j+1 issued before the softmax of block j, so
    the tensor cores have work while the exp unit runs."""
    if hi > lo:
        k = _load_tile(k_src, lo, offs_d, stride_ks, BLOCK_N, USE_TMA, UPCAST_DOT)
        qk = tl.dot(q, tl.trans(k))
        for start_n in range(lo, hi, BLOCK_N):
            nxt = tl.minimum(start_n + BLOCK_N, hi - BLOCK_N)  # last round: a harmless re-load
            k_next = _load_tile(k_src, nxt, offs_d, stride_ks, BLOCK_N, USE_TMA, UPCAST_DOT)
            qk_next = tl.dot(q, tl.trans(k_next))
            m_new = tl.maximum(m_i, tl.max(qk, 1) * qk_scale)
            p = tl.math.exp2(qk * qk_scale - m_new[:, None])
            alpha = tl.math.exp2(m_i - m_new)
            l_i = l_i * alpha + tl.sum(p, 1)
            v = _load_tile(v_src, start_n, offs_d, stride_vs, BLOCK_N, USE_TMA, UPCAST_DOT)
            acc = acc * alpha[:, None]
            if UPCAST_DOT:
                acc = tl.dot(p, v, acc)
            else:
                acc = tl.dot(p.to(v.dtype), v, acc)
            m_i = m_new
            qk = qk_next
    return acc, l_i, m_i


@triton.jit
def _attn_fwd(
    Q, K, V, Out,
    qk_scale,  # sm_scale * log2(e): softmax runs in base 2
    stride_qb, stride_qh, stride_qs,
    stride_kb, stride_kh, stride_ks,
    stride_vb, stride_vh, stride_vs,
    stride_ob, stride_oh, stride_os,
    HEADS_Q, GROUP, SEQLEN, NUM_M_BLOCKS,
    HEAD_DIM: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    CAUSAL: tl.constexpr,
    CAUSAL_SPLIT: tl.constexpr,
    HEAVY_FIRST: tl.constexpr,
    USE_TMA: tl.constexpr,
    WARP_SPECIALIZE: tl.constexpr,
    PIPELINE_QK: tl.constexpr,
    DIAG_UNROLLED: tl.constexpr,
    WS_ONE_LOOP: tl.constexpr,
    N_MASKED: tl.constexpr,
    UPCAST_DOT: tl.constexpr,  # the CPU interpreter computes bf16 tl.dot wrongly
):
    start_m = tl.program_id(0)
    if CAUSAL and HEAVY_FIRST:
        start_m = NUM_M_BLOCKS - 1 - start_m
    off_bh = tl.program_id(1)
    off_b = (off_bh // HEADS_Q).to(tl.int64)
    off_hq = off_bh % HEADS_Q
    off_hkv = off_hq // GROUP  # GQA: query heads of one group share a KV head

    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)

    q_base = Q + off_b * stride_qb + off_hq * stride_qh
    k_base = K + off_b * stride_kb + off_hkv * stride_kh
    v_base = V + off_b * stride_vb + off_hkv * stride_vh
    o_base = Out + off_b * stride_ob + off_hq * stride_oh

    if USE_TMA:
        desc_q = tl.make_tensor_descriptor(q_base, shape=[SEQLEN, HEAD_DIM], strides=[stride_qs, 1],
                                           block_shape=[BLOCK_M, HEAD_DIM])
        k_src = tl.make_tensor_descriptor(k_base, shape=[SEQLEN, HEAD_DIM], strides=[stride_ks, 1],
                                          block_shape=[BLOCK_N, HEAD_DIM])
        v_src = tl.make_tensor_descriptor(v_base, shape=[SEQLEN, HEAD_DIM], strides=[stride_vs, 1],
                                          block_shape=[BLOCK_N, HEAD_DIM])
        q = desc_q.load([start_m * BLOCK_M, 0])
    else:
        k_src = k_base
        v_src = v_base
        q = tl.load(q_base + offs_m[:, None] * stride_qs + offs_d[None, :],
                    mask=offs_m[:, None] < SEQLEN, other=0.0)
    if UPCAST_DOT:
        q = q.to(tl.float32)

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)

    # [0, split): whole key blocks that need no mask; [split, hi): the rest
    if CAUSAL:
        hi = tl.minimum(SEQLEN, (start_m + 1) * BLOCK_M)
        split = (start_m * BLOCK_M) // BLOCK_N * BLOCK_N  # keys left of the diagonal
    else:
        hi = SEQLEN
        split = SEQLEN // BLOCK_N * BLOCK_N  # whole blocks before the tail
    if not CAUSAL_SPLIT:
        split = 0
    if WS_ONE_LOOP:
        # one specialized loop, every tile masked
        acc, l_i, m_i = _attn_tiles(acc, l_i, m_i, q, k_src, v_src, stride_ks, stride_vs,
                                    offs_m, offs_n, offs_d, 0, hi, qk_scale, SEQLEN,
                                    True, CAUSAL, BLOCK_N, USE_TMA, WARP_SPECIALIZE, UPCAST_DOT)
    else:
        if PIPELINE_QK:
            acc, l_i, m_i = _attn_tiles_pipelined(acc, l_i, m_i, q, k_src, v_src, stride_ks, stride_vs,
                                                  offs_d, 0, split, qk_scale, BLOCK_N, USE_TMA, UPCAST_DOT)
        else:
            acc, l_i, m_i = _attn_tiles(acc, l_i, m_i, q, k_src, v_src, stride_ks, stride_vs,
                                        offs_m, offs_n, offs_d, 0, split, qk_scale, SEQLEN,
                                        False, CAUSAL, BLOCK_N, USE_TMA, WARP_SPECIALIZE, UPCAST_DOT)
        if DIAG_UNROLLED and CAUSAL_SPLIT:
            # the diagonal (causal) or the tail (non-causal) spans at most N_MASKED blocks
            for j in tl.static_range(N_MASKED):
                if split + j * BLOCK_N < hi:
                    acc, l_i, m_i = _attn_masked_tile(acc, l_i, m_i, q, k_src, v_src, stride_ks, stride_vs,
                                                      offs_m, offs_n, offs_d, split + j * BLOCK_N, qk_scale,
                                                      SEQLEN, CAUSAL, USE_TMA, UPCAST_DOT)
        else:
            acc, l_i, m_i = _attn_tiles(acc, l_i, m_i, q, k_src, v_src, stride_ks, stride_vs,
                                        offs_m, offs_n, offs_d, split, hi, qk_scale, SEQLEN,
                                        True, CAUSAL, BLOCK_N, USE_TMA, False, UPCAST_DOT)

    acc = acc / l_i[:, None]
    if USE_TMA:
        desc_o = tl.make_tensor_descriptor(o_base, shape=[SEQLEN, HEAD_DIM], strides=[stride_os, 1],
                                           block_shape=[BLOCK_M, HEAD_DIM])
        desc_o.store([start_m * BLOCK_M, 0], acc.to(Out.dtype.element_ty))  # rows past S dropped
    else:
        tl.store(o_base + offs_m[:, None] * stride_os + offs_d[None, :], acc.to(Out.dtype.element_ty),
                 mask=offs_m[:, None] < SEQLEN)


def _workspace(size, alignment, stream):
    """Global scratch Triton asks for at launch (device-side tensor descriptors)."""
    return torch.empty(size, dtype=torch.int8, device="cuda")


def _masked_blocks(block_m, block_n, causal):
    """Most key blocks that need a mask: the diagonal's (causal) or the tail's one."""
    if not causal:
        return 1
    return block_m // block_n if block_m % block_n == 0 else triton.cdiv(block_m, block_n) + 1


def _config(head_dim):
    if head_dim == 64:
        return BLOCK_M_D64, BLOCK_N_D64, NUM_WARPS_D64, NUM_STAGES_D64
    return BLOCK_M, BLOCK_N, NUM_WARPS, NUM_STAGES


def attention(q, k, v, causal=False, sm_scale=None):
    """softmax(q kᵀ · sm_scale [+ causal mask]) v for q [B,Hq,S,D], k/v [B,Hkv,S,D]."""
    batch, heads_q, seqlen, head_dim = q.shape
    heads_kv = k.shape[1]
    assert head_dim in (64, 128) and heads_q % heads_kv == 0
    if sm_scale is None:
        sm_scale = 1.0 / math.sqrt(head_dim)
    # unit stride along D; TMA also needs 16-byte aligned row strides and bases
    q, k, v = (t if t.stride(-1) == 1 else t.contiguous() for t in (q, k, v))
    out = torch.empty_like(q)
    use_tma = USE_TMA and q.device.type == "cuda"
    warp_specialize = use_tma and (WARP_SPECIALIZE_CAUSAL if causal else WARP_SPECIALIZE)
    if use_tma:
        aligned = all(t.data_ptr() % 16 == 0 and all(s * t.element_size() % 16 == 0 for s in t.stride()[:-1])
                      for t in (q, k, v))
        if not aligned:
            q, k, v = (t.contiguous() for t in (q, k, v))
        triton.set_allocator(_workspace)
    block_m, block_n, num_warps, num_stages = _config(head_dim)
    num_m_blocks = triton.cdiv(seqlen, block_m)
    grid = (num_m_blocks, batch * heads_q)
    _attn_fwd[grid](
        q, k, v, out,
        sm_scale * 1.4426950408889634,
        q.stride(0), q.stride(1), q.stride(2),
        k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2),
        out.stride(0), out.stride(1), out.stride(2),
        heads_q, heads_q // heads_kv, seqlen, num_m_blocks,
        HEAD_DIM=head_dim, BLOCK_M=block_m, BLOCK_N=block_n, CAUSAL=causal,
        CAUSAL_SPLIT=CAUSAL_SPLIT, HEAVY_FIRST=HEAVY_FIRST, USE_TMA=use_tma,
        WARP_SPECIALIZE=warp_specialize, PIPELINE_QK=PIPELINE_QK,
        DIAG_UNROLLED=DIAG_UNROLLED,
        WS_ONE_LOOP=WS_ONE_LOOP and not causal,  # causal one-loop WS miscompiles (Triton 3.6)
        N_MASKED=_masked_blocks(block_m, block_n, causal),
        UPCAST_DOT=q.device.type == "cpu",
        num_warps=num_warps, num_stages=num_stages,
    )
    return out
