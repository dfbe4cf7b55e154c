"""Seed kernel: a plain FlashAttention-2-style forward pass in Triton.

The naive starting point of the search: one program per (query block, batch·head),
a single loop over key blocks with an online softmax, the causal mask applied
with a comparison on every tile. Correct for any S >= 1, D in {64, 128}, bf16 and
fp16, MHA and GQA (query head h reads KV head h // (Hq // Hkv)).

The UPPERCASE knobs below are what the heuristic operator tunes; an agent may
change anything as long as the contract in kernel_src/attention/problem.py holds.
"""
import math

import torch
import triton
import triton.language as tl

# ---------------------------------------------------------------- tunable knobs
BLOCK_M = 64  # query rows per program
BLOCK_N = 64  # key rows per inner-loop step
NUM_WARPS = 4
NUM_STAGES = 3


@triton.jit
def _attn_fwd(
    Q, K, V, Out,
    sm_scale_log2,  # sm_scale * log2(e): softmax runs in base 2 (exp2 is one MUFU op)
    stride_qb, stride_qh, stride_qs,
    stride_kb, stride_kh, stride_ks,
    stride_vb, stride_vh, stride_vs,
    stride_ob, stride_oh, stride_os,
    HEADS_Q, GROUP, SEQLEN,
    HEAD_DIM: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    CAUSAL: tl.constexpr,
):
    start_m = tl.program_id(0)
    off_bh = tl.program_id(1)
    off_b = off_bh // HEADS_Q
    off_hq = off_bh % HEADS_Q
    off_hkv = off_hq // GROUP  # GQA: query heads of one group share a KV head

    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)

    q_ptrs = Q + off_b * stride_qb + off_hq * stride_qh + offs_m[:, None] * stride_qs + offs_d[None, :]
    k_base = K + off_b * stride_kb + off_hkv * stride_kh
    v_base = V + off_b * stride_vb + off_hkv * stride_vh

    # -- load the query tile once; rows past the end read as zero
    q = tl.load(q_ptrs, mask=offs_m[:, None] < SEQLEN, other=0.0)

    # -- online-softmax state (FlashAttention-2 names)
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)

    # causal: keys past the last query row of this block are never needed
    hi = tl.minimum(SEQLEN, (start_m + 1) * BLOCK_M) if CAUSAL else SEQLEN
    for start_n in range(0, hi, BLOCK_N):
        cols = start_n + offs_n
        kv_mask = cols[:, None] < SEQLEN
        k = tl.load(k_base + cols[:, None] * stride_ks + offs_d[None, :], mask=kv_mask, other=0.0)
        v = tl.load(v_base + cols[:, None] * stride_vs + offs_d[None, :], mask=kv_mask, other=0.0)

        # -- scores, masked for the sequence tail and (if causal) the future
        qk = tl.dot(q, tl.trans(k)) * sm_scale_log2
        valid = cols[None, :] < SEQLEN
        if CAUSAL:
            valid = valid & (offs_m[:, None] >= cols[None, :])
        qk = tl.where(valid, qk, float("-inf"))

        # -- online softmax: rescale what we have, add this tile
        m_new = tl.maximum(m_i, tl.max(qk, 1))
        alpha = tl.math.exp2(m_i - m_new)
        p = tl.math.exp2(qk - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None]
        acc += tl.dot(p.to(v.dtype), v)
        m_i = m_new

    # -- normalise and write; rows past the end are not written
    acc = acc / l_i[:, None]
    o_ptrs = Out + off_b * stride_ob + off_hq * stride_oh + offs_m[:, None] * stride_os + offs_d[None, :]
    tl.store(o_ptrs, acc.to(Out.dtype.element_ty), mask=offs_m[:, None] < SEQLEN)


def attention(q, k, v, causal=False, sm_scale=None):
    """softmax(q kᵀ · sm_scale [+ causal mask]) v for q [B,Hq,S,D], k/v [B,Hkv,S,D]."""
    batch, heads_q, seqlen, head_dim = q.shape
    heads_kv = k.shape[1]
    assert head_dim in (64, 128) and heads_q % heads_kv == 0
    if sm_scale is None:
        sm_scale = 1.0 / math.sqrt(head_dim)
    # the kernel assumes unit stride along the head dimension
    q, k, v = (t if t.stride(-1) == 1 else t.contiguous() for t in (q, k, v))
    out = torch.empty_like(q)
    grid = (triton.cdiv(seqlen, BLOCK_M), batch * heads_q)
    _attn_fwd[grid](
        q, k, v, out,
        sm_scale * 1.4426950408889634,
        q.stride(0), q.stride(1), q.stride(2),
        k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2),
        out.stride(0), out.stride(1), out.stride(2),
        heads_q, heads_q // heads_kv, seqlen,
        HEAD_DIM=head_dim, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, CAUSAL=causal,
        num_warps=NUM_WARPS, num_stages=NUM_STAGES,
    )
    return out
