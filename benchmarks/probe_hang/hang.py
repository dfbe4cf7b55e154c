"""g1: attention forward as a Gluon kernel for Hopper (sm_90a), with a plain Triton fallback.

Gluon (`triton.experimental.gluon`, Triton 3.6) lets the kernel say what plain Triton decides
for itself: which warps issue which wgmma, when a wgmma is waited for, where each tile lives in
shared memory and when the TMA engine refills it.

Default path on Hopper (`_g_fwd_ws`, WARP_SPECIALIZE = FA3_SCHEDULE = True): one program = 128
query rows. `gl.warp_specialize` forks three partitions: two consumer warpgroups of 64 query rows
each (the default partition and a 4-warp worker, running independently, setmaxnreg
CONSUMER_REGS) and a 1-warp producer (PRODUCER_REGS) that loads both Q halves and streams K and V
through a NUM_STAGES-deep shared-memory ring with ready/empty mbarrier pairs per slot (the empty
barriers count one arrive per consumer). Each consumer runs FA3's schedule: for key block j it
issues S(j) = Q K(j)^T and O += P(j-1) V(j-1) as async `warpgroup_mma` back to back, waits for
S(j) only, does the online softmax of block j (base 2, scale folded into one FMA per score)
while PV(j-1) is still on the tensor cores, then waits PV(j-1) and rescales O. P stays in
registers as the A operand of the PV wgmma (no shared-memory round trip). Nothing is left in
flight across the loop edge (that made ptxas serialize every wgmma, C7514). H100, AVO suite:
1.034-1.035x cuDNN geomean in two runs (benchmarks/results/h100-gluon/).

Other knobs (measured, off by default): PINGPONG (the consumers take turns at the tensor cores
through two mbarriers: no gain), PERSISTENT (`_g_fwd_wsp`: one program per SM over a chunked
heavy-first tile order, O staged in its own smem so a tile's store overlaps the next tile:
same geomean, much larger run-to-run spread), FA3_SCHEDULE = False (issue QK(j+1) before
softmax(j): 0.96x), WARP_SPECIALIZE = False (`_g_fwd`: 8 warps, a CTA barrier per key block to
refill the ring: 0.80-0.82x).

Everywhere: causal blocks above the diagonal are never visited; the diagonal blocks (and the tail
block when S is not a multiple of BLOCK_N) are masked with -inf; HEAVY_FIRST starts the longest
causal query blocks first; GQA maps query head h to KV head h // group; Q/K/V descriptors span the
whole [B*H*S, D] tensor, so a tile that runs past S reads the next head's rows (masked out as
keys, discarded as queries) and such an output tile is stored row-masked instead of by TMA.

Elsewhere (CPU interpreter, non-Hopper GPUs, Triton without Gluon) the plain Triton kernel of
lineage v0003 runs (split causal loop, device-side TMA descriptors on GPUs).
"""
import math

import torch
import triton
import triton.language as tl

try:
    from triton.experimental import gluon
    from triton.experimental.gluon import language as gl
    from triton.experimental.gluon.nvidia.hopper import TensorDescriptor
    from triton.experimental.gluon.language.nvidia.hopper import (
        fence_async_shared,
        mbarrier,
        tma,
        warpgroup_mma,
        warpgroup_mma_wait,
    )
    HAVE_GLUON = True
except ImportError:
    HAVE_GLUON = False

# ---------------------------------------------------------------- Gluon knobs (Hopper)
BLOCK_M = 256  # query rows per program (two warpgroups of BLOCK_M // 2 rows)
BLOCK_N = 128  # key rows per step, head dim 128
BLOCK_N_D64 = 128  # key rows per step, head dim 64
NUM_STAGES = 1  # K/V ring depth, head dim 128 (H100 run 1: 2 >= 3 with WARP_SPECIALIZE)
NUM_STAGES_D64 = 4  # K/V ring depth, head dim 64
PIPELINE = True  # issue QK^T(j+1) before softmax(j)
WARP_SPECIALIZE = False  # producer warp + two independent consumer warpgroups (H100 run 1: 0.955x cuDNN)
CONSUMER_REGS = 240  # setmaxnreg of the worker consumer warpgroup (WARP_SPECIALIZE)
PRODUCER_REGS = 24  # setmaxnreg of the producer warp's warpgroup (WARP_SPECIALIZE)
FA3_SCHEDULE = True  # WS consumers: QK(j) and PV(j-1) issued together, softmax(j) under PV(j-1) (H100 run 2: 1.035x cuDNN)
PINGPONG = False  # FA3_SCHEDULE: the two consumers take turns at the tensor cores (mbarriers; run 2: no gain)
HEAVY_FIRST = True  # causal: longest query blocks first
PERSISTENT = False  # WS + FA3 schedule: one program per SM over tiles (run 3: same geomean, more spread)
USE_GLUON = True  # False: always the plain Triton kernel

# ---------------------------------------------------------------- fallback knobs (plain Triton)
FB_BLOCK_M = 128
FB_BLOCK_N = 128
FB_NUM_WARPS = 8
FB_NUM_STAGES = 3
FB_BLOCK_M_D64 = 128
FB_BLOCK_N_D64 = 64
FB_NUM_WARPS_D64 = 8
FB_NUM_STAGES_D64 = 3
FB_CAUSAL_SPLIT = True
FB_USE_TMA = True

LOG2E = 1.4426950408889634

if HAVE_GLUON:

    @gluon.constexpr_function
    def _mma_layout(num_warps, instr_n):
        # wgmma accumulator: warps stacked along M (16 rows each), so row reductions stay
        # inside a warp; instruction N = the tile's width.
        return gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[num_warps, 1],
                                         instr_shape=[16, instr_n, 16])

    @gluon.jit
    def _g_softmax(qk, m_i, l_i, j, n_full, q_start, SEQLEN, qk_scale,
                   CAUSAL: gl.constexpr, BM: gl.constexpr, BN: gl.constexpr, s_layout: gl.constexpr):
        """Online softmax of one score tile (base 2, scale folded into one FMA per score).
        Blocks j >= n_full are masked: keys >= SEQLEN and, if CAUSAL, keys > query."""
        if j >= n_full:
            cols = j * BN + gl.arange(0, BN, layout=gl.SliceLayout(0, s_layout))
            rows = q_start + gl.arange(0, BM, layout=gl.SliceLayout(1, s_layout))
            cols2 = gl.expand_dims(cols, 0)
            rows2 = gl.expand_dims(rows, 1)
            if CAUSAL:
                valid = cols2 <= rows2
            else:
                valid = (cols2 < SEQLEN) & (rows2 >= 0)
            qk = gl.where(valid, qk, float("-inf"))
        m_new = gl.maximum(m_i, gl.max(qk, axis=1) * qk_scale)
        p = gl.exp2(qk * qk_scale - gl.expand_dims(m_new, 1))
        alpha = gl.exp2(m_i - m_new)
        l_i = l_i * alpha + gl.sum(p, axis=1)
        return p, alpha, m_new, l_i

    @gluon.jit
    def _g_epilogue(acc, l_i, o_smem, o_desc, o_ptr, o_row, q_start, SEQLEN,
                    EVEN_M: gl.constexpr, o_layout: gl.constexpr):
        BM: gl.constexpr = acc.shape[0]
        HD: gl.constexpr = acc.shape[1]
        l_o = gl.convert_layout(l_i, gl.SliceLayout(1, o_layout))
        out = (acc / gl.expand_dims(l_o, 1)).to(o_desc.dtype)
        if EVEN_M:
            o_smem.store(out)
            fence_async_shared()
            gl.thread_barrier()
            tma.async_copy_shared_to_global(o_desc, [o_row, 0], o_smem)
            tma.store_wait(pendings=0)
        else:
            rows = gl.arange(0, BM, layout=gl.SliceLayout(1, o_layout))
            cols = gl.arange(0, HD, layout=gl.SliceLayout(0, o_layout))
            offs = gl.expand_dims((o_row + rows).to(gl.int64) * HD, 1) + gl.expand_dims(cols, 0)
            mask = gl.expand_dims(q_start + rows < SEQLEN, 1) & gl.expand_dims(cols < HD, 0)
            gl.store(o_ptr + offs, out, mask=mask)

    @gluon.jit
    def _g_tile_coords(SEQLEN, HEADS_Q, GROUP, NUM_M, BM: gl.constexpr, BN: gl.constexpr,
                       CAUSAL: gl.constexpr, HEAVY_FIRST: gl.constexpr):
        pid_m = gl.program_id(0)
        if CAUSAL and HEAVY_FIRST:
            pid_m = NUM_M - 1 - pid_m
        bh = gl.program_id(1)
        off_b = bh // HEADS_Q
        off_h = bh % HEADS_Q
        kv_bh = off_b * (HEADS_Q // GROUP) + off_h // GROUP  # GQA: heads of a group share K/V
        q_start = pid_m * BM  # first query row of the tile inside its head
        q_row = bh * SEQLEN + q_start  # ... in the [B*Hq*S, D] view
        kv_row = kv_bh * SEQLEN
        if CAUSAL:
            hi = gl.minimum(q_start + BM, SEQLEN)
            n_full = q_start // BN  # key blocks entirely left of the diagonal
        else:
            hi = SEQLEN
            n_full = SEQLEN // BN  # whole key blocks before the tail
        n_kv = gl.cdiv(hi, BN)
        return q_start, q_row, kv_row, n_kv, n_full

    # ------------------------------------------------------------------ no warp specialization
    @gluon.jit
    def _g_fwd(q_desc, k_desc, v_desc, o_desc, o_ptr, qk_scale, SEQLEN, HEADS_Q, GROUP, NUM_M,
               CAUSAL: gl.constexpr, EVEN_M: gl.constexpr, NUM_STAGES: gl.constexpr,
               PIPELINE: gl.constexpr, HEAVY_FIRST: gl.constexpr,
               num_warps: gl.constexpr):
        BM: gl.constexpr = q_desc.block_type.shape[0]
        HD: gl.constexpr = q_desc.block_type.shape[1]
        BN: gl.constexpr = k_desc.block_type.shape[0]
        dtype: gl.constexpr = q_desc.dtype
        s_layout: gl.constexpr = _mma_layout(num_warps, BN)
        o_layout: gl.constexpr = _mma_layout(num_warps, HD)
        p_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_layout, k_width=2)
        K_BYTES: gl.constexpr = k_desc.block_type.nbytes
        V_BYTES: gl.constexpr = v_desc.block_type.nbytes

        q_start, q_row, kv_row, n_kv, n_full = _g_tile_coords(SEQLEN, HEADS_Q, GROUP, NUM_M, BM, BN,
                                                              CAUSAL, HEAVY_FIRST)

        q_smem = gl.allocate_shared_memory(dtype, [BM, HD], q_desc.layout)
        k_bufs = gl.allocate_shared_memory(dtype, [NUM_STAGES, BN, HD], k_desc.layout)
        v_bufs = gl.allocate_shared_memory(dtype, [NUM_STAGES, BN, HD], v_desc.layout)
        q_bar = gl.allocate_shared_memory(gl.int64, [1], mbarrier.MBarrierLayout())
        k_bars = gl.allocate_shared_memory(gl.int64, [NUM_STAGES, 1], mbarrier.MBarrierLayout())
        v_bars = gl.allocate_shared_memory(gl.int64, [NUM_STAGES, 1], mbarrier.MBarrierLayout())
        mbarrier.init(q_bar, count=1)
        for i in gl.static_range(NUM_STAGES):
            mbarrier.init(k_bars.index(i), count=1)
            mbarrier.init(v_bars.index(i), count=1)

        mbarrier.expect(q_bar, q_desc.block_type.nbytes)
        tma.async_copy_global_to_shared(q_desc, [q_row, 0], q_bar, q_smem)
        for i in gl.static_range(NUM_STAGES - 1):
            ok = i < n_kv
            mbarrier.expect(k_bars.index(i), K_BYTES, pred=ok)
            tma.async_copy_global_to_shared(k_desc, [kv_row + i * BN, 0], k_bars.index(i), k_bufs.index(i), pred=ok)
            mbarrier.expect(v_bars.index(i), V_BYTES, pred=ok)
            tma.async_copy_global_to_shared(v_desc, [kv_row + i * BN, 0], v_bars.index(i), v_bufs.index(i), pred=ok)

        m_i = gl.full([BM], float("-inf"), gl.float32, gl.SliceLayout(1, s_layout))
        l_i = gl.full([BM], 0.0, gl.float32, gl.SliceLayout(1, s_layout))
        acc = gl.zeros([BM, HD], gl.float32, o_layout)
        s_zero = gl.zeros([BM, BN], gl.float32, s_layout)
        mbarrier.wait(q_bar, 0)

        if PIPELINE:
            mbarrier.wait(k_bars.index(0), 0)
            s_tok = warpgroup_mma(q_smem, k_bufs.index(0).permute((1, 0)), s_zero, use_acc=False, is_async=True)
            qk = warpgroup_mma_wait(num_outstanding=0, deps=(s_tok, ))
            for j in range(n_kv - 1):
                st = j % NUM_STAGES
                nst = (j + 1) % NUM_STAGES
                # every warp has retired block j-1: its ring slot may be refilled
                gl.thread_barrier()
                nj = j + NUM_STAGES - 1
                rs = nj % NUM_STAGES
                ok = nj < n_kv
                mbarrier.expect(k_bars.index(rs), K_BYTES, pred=ok)
                tma.async_copy_global_to_shared(k_desc, [kv_row + nj * BN, 0], k_bars.index(rs), k_bufs.index(rs),
                                                pred=ok)
                mbarrier.expect(v_bars.index(rs), V_BYTES, pred=ok)
                tma.async_copy_global_to_shared(v_desc, [kv_row + nj * BN, 0], v_bars.index(rs), v_bufs.index(rs),
                                                pred=ok)
                # QK^T of block j+1 runs on the tensor cores while this warpgroup does softmax(j)
                mbarrier.wait(k_bars.index(nst), ((j + 1) // NUM_STAGES) & 1)
                s_tok = warpgroup_mma(q_smem, k_bufs.index(nst).permute((1, 0)), s_zero, use_acc=False,
                                      is_async=True)
                p, alpha, m_i, l_i = _g_softmax(qk, m_i, l_i, j, n_full, q_start, SEQLEN, qk_scale,
                                                CAUSAL, BM, BN, s_layout)
                acc = acc * gl.expand_dims(gl.convert_layout(alpha, gl.SliceLayout(1, o_layout)), 1)
                p_op = gl.convert_layout(p.to(dtype), p_layout)
                mbarrier.wait(v_bars.index(st), (j // NUM_STAGES) & 1)
                o_tok = warpgroup_mma(p_op, v_bufs.index(st), acc, is_async=True)
                # retire both: a wgmma left in flight across the loop edge makes ptxas
                # serialize every wgmma of the kernel (C7514)
                qk, acc, p_op = warpgroup_mma_wait(num_outstanding=0, deps=(s_tok, o_tok, p_op))
            j = n_kv - 1
            st = j % NUM_STAGES
            p, alpha, m_i, l_i = _g_softmax(qk, m_i, l_i, j, n_full, q_start, SEQLEN, qk_scale,
                                            CAUSAL, BM, BN, s_layout)
            acc = acc * gl.expand_dims(gl.convert_layout(alpha, gl.SliceLayout(1, o_layout)), 1)
            p_op = gl.convert_layout(p.to(dtype), p_layout)
            mbarrier.wait(v_bars.index(st), (j // NUM_STAGES) & 1)
            o_tok = warpgroup_mma(p_op, v_bufs.index(st), acc, is_async=True)
            acc, p_op = warpgroup_mma_wait(num_outstanding=0, deps=(o_tok, p_op))
        else:
            for j in range(n_kv):
                st = j % NUM_STAGES
                # every warp has retired block j-1: its ring slot may be refilled
                gl.thread_barrier()
                nj = j + NUM_STAGES - 1
                rs = nj % NUM_STAGES
                ok = nj < n_kv
                mbarrier.expect(k_bars.index(rs), K_BYTES, pred=ok)
                tma.async_copy_global_to_shared(k_desc, [kv_row + nj * BN, 0], k_bars.index(rs), k_bufs.index(rs),
                                                pred=ok)
                mbarrier.expect(v_bars.index(rs), V_BYTES, pred=ok)
                tma.async_copy_global_to_shared(v_desc, [kv_row + nj * BN, 0], v_bars.index(rs), v_bufs.index(rs),
                                                pred=ok)
                mbarrier.wait(k_bars.index(st), (j // NUM_STAGES) & 1)
                s_tok = warpgroup_mma(q_smem, k_bufs.index(st).permute((1, 0)), s_zero, use_acc=False,
                                      is_async=True)
                qk = warpgroup_mma_wait(num_outstanding=0, deps=(s_tok, ))
                p, alpha, m_i, l_i = _g_softmax(qk, m_i, l_i, j, n_full, q_start, SEQLEN, qk_scale,
                                                CAUSAL, BM, BN, s_layout)
                acc = acc * gl.expand_dims(gl.convert_layout(alpha, gl.SliceLayout(1, o_layout)), 1)
                p_op = gl.convert_layout(p.to(dtype), p_layout)
                mbarrier.wait(v_bars.index(st), (j // NUM_STAGES) & 1)
                o_tok = warpgroup_mma(p_op, v_bufs.index(st), acc, is_async=True)
                acc, p_op = warpgroup_mma_wait(num_outstanding=0, deps=(o_tok, p_op))

        mbarrier.invalidate(q_bar)
        for i in gl.static_range(NUM_STAGES):
            mbarrier.invalidate(k_bars.index(i))
            mbarrier.invalidate(v_bars.index(i))
        # the Q tile is dead: its shared memory stages the output tile
        _g_epilogue(acc, l_i, q_smem, o_desc, o_ptr, q_row, q_start, SEQLEN, EVEN_M, o_layout)

    # ------------------------------------------------------------------ warp specialized
    @gluon.jit
    def _ws_consumer(q_smem, k_bufs, v_bufs, q_bar, k_ready, v_ready, k_empty, v_empty, o_desc, o_ptr,
                     qk_scale, SEQLEN, q_start, o_row, n_kv, n_full,
                     CAUSAL: gl.constexpr, EVEN_M: gl.constexpr, NUM_STAGES: gl.constexpr):
        NW: gl.constexpr = 4
        BM: gl.constexpr = q_smem.shape[0]
        HD: gl.constexpr = q_smem.shape[1]
        BN: gl.constexpr = k_bufs.shape[1]
        dtype: gl.constexpr = q_smem.dtype
        s_layout: gl.constexpr = _mma_layout(NW, BN)
        o_layout: gl.constexpr = _mma_layout(NW, HD)
        p_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_layout, k_width=2)

        m_i = gl.full([BM], float("-inf"), gl.float32, gl.SliceLayout(1, s_layout))
        l_i = gl.full([BM], 0.0, gl.float32, gl.SliceLayout(1, s_layout))
        acc = gl.zeros([BM, HD], gl.float32, o_layout)
        s_zero = gl.zeros([BM, BN], gl.float32, s_layout)

        mbarrier.wait(q_bar, 0)
        mbarrier.wait(k_ready.index(0), 0)
        s_tok = warpgroup_mma(q_smem, k_bufs.index(0).permute((1, 0)), s_zero, use_acc=False, is_async=True)
        qk = warpgroup_mma_wait(num_outstanding=0, deps=(s_tok, ))
        mbarrier.arrive(k_empty.index(0))
        for j in range(n_kv - 1):
            st = j % NUM_STAGES
            nst = (j + 1) % NUM_STAGES
            mbarrier.wait(k_ready.index(nst), ((j + 1) // NUM_STAGES) & 1)
            s_tok = warpgroup_mma(q_smem, k_bufs.index(nst).permute((1, 0)), s_zero, use_acc=False, is_async=True)
            p, alpha, m_i, l_i = _g_softmax(qk, m_i, l_i, j, n_full, q_start, SEQLEN, qk_scale,
                                            CAUSAL, BM, BN, s_layout)
            acc = acc * gl.expand_dims(gl.convert_layout(alpha, gl.SliceLayout(1, o_layout)), 1)
            p_op = gl.convert_layout(p.to(dtype), p_layout)
            mbarrier.wait(v_ready.index(st), (j // NUM_STAGES) & 1)
            o_tok = warpgroup_mma(p_op, v_bufs.index(st), acc, is_async=True)
            qk, acc, p_op = warpgroup_mma_wait(num_outstanding=0, deps=(s_tok, o_tok, p_op))
            mbarrier.arrive(k_empty.index(nst))  # QK(j+1) retired
            mbarrier.arrive(v_empty.index(st))  # PV(j) retired
        j = n_kv - 1
        st = j % NUM_STAGES
        p, alpha, m_i, l_i = _g_softmax(qk, m_i, l_i, j, n_full, q_start, SEQLEN, qk_scale,
                                        CAUSAL, BM, BN, s_layout)
        acc = acc * gl.expand_dims(gl.convert_layout(alpha, gl.SliceLayout(1, o_layout)), 1)
        p_op = gl.convert_layout(p.to(dtype), p_layout)
        mbarrier.wait(v_ready.index(st), (j // NUM_STAGES) & 1)
        o_tok = warpgroup_mma(p_op, v_bufs.index(st), acc, is_async=True)
        acc, p_op = warpgroup_mma_wait(num_outstanding=0, deps=(o_tok, p_op))
        _g_epilogue(acc, l_i, q_smem, o_desc, o_ptr, o_row, q_start, SEQLEN, EVEN_M, o_layout)

    @gluon.jit
    def _ws_consumer_fa3(q_smem, k_bufs, v_bufs, q_bar, k_ready, v_ready, k_empty, v_empty, my_turn, other_turn,
                         o_desc, o_ptr, qk_scale, SEQLEN, q_start, o_row, n_kv, n_full,
                         CAUSAL: gl.constexpr, EVEN_M: gl.constexpr, NUM_STAGES: gl.constexpr,
                         PINGPONG: gl.constexpr, TURN0: gl.constexpr):
        """FA3's consumer schedule. Turn j: issue QK(j) and PV(j-1) back to back, hand the tensor
        cores to the other consumer (PINGPONG), wait QK(j), softmax(j) while PV(j-1) runs, wait
        PV(j-1), rescale O. P(j-1) stays in registers between its softmax and its PV.
        Turns alternate through two mbarriers; TURN0 = 1 lets consumer 0 go first (a fresh
        barrier passes a wait on parity 1)."""
        NW: gl.constexpr = 4
        BM: gl.constexpr = q_smem.shape[0]
        HD: gl.constexpr = q_smem.shape[1]
        BN: gl.constexpr = k_bufs.shape[1]
        dtype: gl.constexpr = q_smem.dtype
        s_layout: gl.constexpr = _mma_layout(NW, BN)
        o_layout: gl.constexpr = _mma_layout(NW, HD)
        p_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_layout, k_width=2)

        m_i = gl.full([BM], float("-inf"), gl.float32, gl.SliceLayout(1, s_layout))
        l_i = gl.full([BM], 0.0, gl.float32, gl.SliceLayout(1, s_layout))
        acc = gl.zeros([BM, HD], gl.float32, o_layout)
        s_zero = gl.zeros([BM, BN], gl.float32, s_layout)

        mbarrier.wait(q_bar, 0)
        # turn 0: QK(0) only
        if PINGPONG:
            mbarrier.wait(my_turn, TURN0)
        mbarrier.wait(k_ready.index(0), 0)
        s_tok = warpgroup_mma(q_smem, k_bufs.index(0).permute((1, 0)), s_zero, use_acc=False, is_async=True)
        if PINGPONG:
            mbarrier.arrive(other_turn)
        qk = warpgroup_mma_wait(num_outstanding=0, deps=(s_tok, ))
        mbarrier.arrive(k_empty.index(0))
        p, alpha, m_i, l_i = _g_softmax(qk, m_i, l_i, 0, n_full, q_start, SEQLEN, qk_scale, CAUSAL, BM, BN, s_layout)
        p_op = gl.convert_layout(p.to(dtype), p_layout)
        for j in range(1, n_kv):
            st = j % NUM_STAGES
            pst = (j - 1) % NUM_STAGES
            if PINGPONG:
                mbarrier.wait(my_turn, (j + TURN0) & 1)
            mbarrier.wait(k_ready.index(st), (j // NUM_STAGES) & 1)
            s_tok = warpgroup_mma(q_smem, k_bufs.index(st).permute((1, 0)), s_zero, use_acc=False, is_async=True)
            mbarrier.wait(v_ready.index(pst), ((j - 1) // NUM_STAGES) & 1)
            o_tok = warpgroup_mma(p_op, v_bufs.index(pst), acc, is_async=True)
            if PINGPONG:
                mbarrier.arrive(other_turn)
            qk = warpgroup_mma_wait(num_outstanding=1, deps=(s_tok, ))  # QK(j) retired, PV(j-1) may run on
            mbarrier.arrive(k_empty.index(st))
            p, alpha, m_i, l_i = _g_softmax(qk, m_i, l_i, j, n_full, q_start, SEQLEN, qk_scale,
                                            CAUSAL, BM, BN, s_layout)
            acc, p_op = warpgroup_mma_wait(num_outstanding=0, deps=(o_tok, p_op))
            mbarrier.arrive(v_empty.index(pst))
            acc = acc * gl.expand_dims(gl.convert_layout(alpha, gl.SliceLayout(1, o_layout)), 1)
            p_op = gl.convert_layout(p.to(dtype), p_layout)
        # last turn: PV(n_kv - 1) only
        lst = (n_kv - 1) % NUM_STAGES
        if PINGPONG:
            mbarrier.wait(my_turn, (n_kv + TURN0) & 1)
        mbarrier.wait(v_ready.index(lst), ((n_kv - 1) // NUM_STAGES) & 1)
        o_tok = warpgroup_mma(p_op, v_bufs.index(lst), acc, is_async=True)
        if PINGPONG:
            mbarrier.arrive(other_turn)
        acc, p_op = warpgroup_mma_wait(num_outstanding=0, deps=(o_tok, p_op))
        _g_epilogue(acc, l_i, q_smem, o_desc, o_ptr, o_row, q_start, SEQLEN, EVEN_M, o_layout)

    @gluon.jit
    def _ws_producer(q_desc, k_desc, v_desc, q_smem0, q_smem1, k_bufs, v_bufs, q_bars, k_ready, v_ready,
                     k_empty, v_empty, q_row, kv_row, n_kv, NUM_STAGES: gl.constexpr):
        HALF: gl.constexpr = q_desc.block_type.shape[0]
        BN: gl.constexpr = k_desc.block_type.shape[0]
        K_BYTES: gl.constexpr = k_desc.block_type.nbytes
        V_BYTES: gl.constexpr = v_desc.block_type.nbytes
        mbarrier.expect(q_bars.index(0), q_desc.block_type.nbytes)
        tma.async_copy_global_to_shared(q_desc, [q_row, 0], q_bars.index(0), q_smem0)
        mbarrier.expect(q_bars.index(1), q_desc.block_type.nbytes)
        tma.async_copy_global_to_shared(q_desc, [q_row + HALF, 0], q_bars.index(1), q_smem1)
        for j in range(n_kv):
            s = j % NUM_STAGES
            ph = ((j // NUM_STAGES) & 1) ^ 1  # a fresh barrier passes a wait on parity 1
            mbarrier.wait(k_empty.index(s), ph)
            mbarrier.expect(k_ready.index(s), K_BYTES)
            tma.async_copy_global_to_shared(k_desc, [kv_row + j * BN, 0], k_ready.index(s), k_bufs.index(s))
            mbarrier.wait(v_empty.index(s), ph)
            mbarrier.expect(v_ready.index(s), V_BYTES)
            tma.async_copy_global_to_shared(v_desc, [kv_row + j * BN, 0], v_ready.index(s), v_bufs.index(s))

    @gluon.jit
    def _g_fwd_ws(q_desc, k_desc, v_desc, o_desc, o_ptr, qk_scale, SEQLEN, HEADS_Q, GROUP, NUM_M,
                  CAUSAL: gl.constexpr, EVEN_M: gl.constexpr, NUM_STAGES: gl.constexpr,
                  HEAVY_FIRST: gl.constexpr, CONSUMER_REGS: gl.constexpr, PRODUCER_REGS: gl.constexpr,
                  FA3_SCHEDULE: gl.constexpr, PINGPONG: gl.constexpr):
        HALF: gl.constexpr = q_desc.block_type.shape[0]
        HD: gl.constexpr = q_desc.block_type.shape[1]
        BN: gl.constexpr = k_desc.block_type.shape[0]
        dtype: gl.constexpr = q_desc.dtype
        BM: gl.constexpr = 2 * HALF

        q_start, q_row, kv_row, n_kv, n_full = _g_tile_coords(SEQLEN, HEADS_Q, GROUP, NUM_M, BM, BN,
                                                              CAUSAL, HEAVY_FIRST)
        q_smem0 = gl.allocate_shared_memory(dtype, [HALF, HD], q_desc.layout)
        q_smem1 = gl.allocate_shared_memory(dtype, [HALF, HD], q_desc.layout)
        k_bufs = gl.allocate_shared_memory(dtype, [NUM_STAGES, BN, HD], k_desc.layout)
        v_bufs = gl.allocate_shared_memory(dtype, [NUM_STAGES, BN, HD], v_desc.layout)
        q_bars = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())
        k_ready = gl.allocate_shared_memory(gl.int64, [NUM_STAGES, 1], mbarrier.MBarrierLayout())
        v_ready = gl.allocate_shared_memory(gl.int64, [NUM_STAGES, 1], mbarrier.MBarrierLayout())
        k_empty = gl.allocate_shared_memory(gl.int64, [NUM_STAGES, 1], mbarrier.MBarrierLayout())
        v_empty = gl.allocate_shared_memory(gl.int64, [NUM_STAGES, 1], mbarrier.MBarrierLayout())
        for i in gl.static_range(2):
            mbarrier.init(q_bars.index(i), count=1)
        for i in gl.static_range(NUM_STAGES):
            mbarrier.init(k_ready.index(i), count=1)
            mbarrier.init(v_ready.index(i), count=1)
            mbarrier.init(k_empty.index(i), count=2)  # one arrive per consumer warpgroup
            mbarrier.init(v_empty.index(i), count=2)

        if FA3_SCHEDULE:
            turns = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())
            for i in gl.static_range(2):
                mbarrier.init(turns.index(i), count=1)
            gl.warp_specialize([
                (_ws_consumer_fa3, (q_smem0, k_bufs, v_bufs, q_bars.index(0), k_ready, v_ready, k_empty, v_empty,
                                    turns.index(0), turns.index(1), o_desc, o_ptr, qk_scale, SEQLEN, q_start, q_row,
                                    n_kv, n_full, CAUSAL, EVEN_M, NUM_STAGES, PINGPONG, 1)),
                (_ws_consumer_fa3, (q_smem1, k_bufs, v_bufs, q_bars.index(1), k_ready, v_ready, k_empty, v_empty,
                                    turns.index(1), turns.index(0), o_desc, o_ptr, qk_scale, SEQLEN, q_start + HALF,
                                    q_row + HALF, n_kv, n_full, CAUSAL, EVEN_M, NUM_STAGES, PINGPONG, 0)),
                (_ws_producer, (q_desc, k_desc, v_desc, q_smem0, q_smem1, k_bufs, v_bufs, q_bars, k_ready, v_ready,
                                k_empty, v_empty, q_row, kv_row, n_kv, NUM_STAGES)),
            ], [4, 1], [CONSUMER_REGS, PRODUCER_REGS])
        else:
            gl.warp_specialize([
                (_ws_consumer, (q_smem0, k_bufs, v_bufs, q_bars.index(0), k_ready, v_ready, k_empty, v_empty, o_desc,
                                o_ptr, qk_scale, SEQLEN, q_start, q_row, n_kv, n_full, CAUSAL, EVEN_M, NUM_STAGES)),
                (_ws_consumer, (q_smem1, k_bufs, v_bufs, q_bars.index(1), k_ready, v_ready, k_empty, v_empty, o_desc,
                                o_ptr, qk_scale, SEQLEN, q_start + HALF, q_row + HALF, n_kv, n_full, CAUSAL, EVEN_M,
                                NUM_STAGES)),
                (_ws_producer, (q_desc, k_desc, v_desc, q_smem0, q_smem1, k_bufs, v_bufs, q_bars, k_ready, v_ready,
                                k_empty, v_empty, q_row, kv_row, n_kv, NUM_STAGES)),
            ], [4, 1], [CONSUMER_REGS, PRODUCER_REGS])



    # ------------------------------------------------------------------ persistent, warp specialized
    @gluon.jit
    def _wsp_tile(tile, SEQLEN, HEADS_Q, GROUP, NUM_M, BH, CHUNK, BM: gl.constexpr, BN: gl.constexpr,
                  CAUSAL: gl.constexpr, HEAVY_FIRST: gl.constexpr):
        """Tile order: query heads in chunks of CHUNK (so the K/V that concurrent programs
        read stays in L2); inside a chunk, query blocks in order of decreasing work (causal)."""
        per_chunk = CHUNK * NUM_M
        c0 = (tile // per_chunk) * CHUNK
        u = tile % per_chunk
        clen = gl.minimum(CHUNK, BH - c0)
        m_idx = u // clen
        bh = c0 + u % clen
        pid_m = m_idx
        if CAUSAL and HEAVY_FIRST:
            pid_m = NUM_M - 1 - m_idx
        off_b = bh // HEADS_Q
        off_h = bh % HEADS_Q
        kv_bh = off_b * (HEADS_Q // GROUP) + off_h // GROUP
        q_start = pid_m * BM
        q_row = bh * SEQLEN + q_start
        kv_row = kv_bh * SEQLEN
        if CAUSAL:
            hi = gl.minimum(q_start + BM, SEQLEN)
            n_full = q_start // BN
        else:
            hi = SEQLEN
            n_full = SEQLEN // BN
        n_kv = gl.cdiv(hi, BN)
        return q_start, q_row, kv_row, n_kv, n_full

    @gluon.jit
    def _wsp_consumer(q_smem, o_smem, k_bufs, v_bufs, q_ready, q_empty, k_ready, v_ready, k_empty, v_empty,
                      o_desc, o_ptr, qk_scale, SEQLEN, HEADS_Q, GROUP, NUM_M, BH, CHUNK, num_tiles,
                      CAUSAL: gl.constexpr, EVEN_M: gl.constexpr, NUM_STAGES: gl.constexpr,
                      HEAVY_FIRST: gl.constexpr, WG: gl.constexpr):
        NW: gl.constexpr = 4
        HALF: gl.constexpr = q_smem.shape[0]
        HD: gl.constexpr = q_smem.shape[1]
        BN: gl.constexpr = k_bufs.shape[1]
        dtype: gl.constexpr = q_smem.dtype
        s_layout: gl.constexpr = _mma_layout(NW, BN)
        o_layout: gl.constexpr = _mma_layout(NW, HD)
        p_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_layout, k_width=2)
        s_zero = gl.zeros([HALF, BN], gl.float32, s_layout)
        it = 0  # key blocks consumed so far (ring position)
        tc = 0  # tiles done so far
        for tile in range(gl.program_id(0), num_tiles, gl.num_programs(0)):
            q_start, q_row, kv_row, n_kv, n_full = _wsp_tile(tile, SEQLEN, HEADS_Q, GROUP, NUM_M, BH, CHUNK,
                                                             2 * HALF, BN, CAUSAL, HEAVY_FIRST)
            q_start = q_start + WG * HALF
            o_row = q_row + WG * HALF
            m_i = gl.full([HALF], float("-inf"), gl.float32, gl.SliceLayout(1, s_layout))
            l_i = gl.full([HALF], 0.0, gl.float32, gl.SliceLayout(1, s_layout))
            acc = gl.zeros([HALF, HD], gl.float32, o_layout)
            mbarrier.wait(q_ready, tc & 1)
            st = it % NUM_STAGES
            mbarrier.wait(k_ready.index(st), (it // NUM_STAGES) & 1)
            s_tok = warpgroup_mma(q_smem, k_bufs.index(st).permute((1, 0)), s_zero, use_acc=False, is_async=True)
            qk = warpgroup_mma_wait(num_outstanding=0, deps=(s_tok, ))
            mbarrier.arrive(k_empty.index(st))
            p, alpha, m_i, l_i = _g_softmax(qk, m_i, l_i, 0, n_full, q_start, SEQLEN, qk_scale, CAUSAL, HALF, BN,
                                            s_layout)
            p_op = gl.convert_layout(p.to(dtype), p_layout)
            for j in range(1, n_kv):
                g = it + j
                st = g % NUM_STAGES
                pst = (g - 1) % NUM_STAGES
                mbarrier.wait(k_ready.index(st), (g // NUM_STAGES) & 1)
                s_tok = warpgroup_mma(q_smem, k_bufs.index(st).permute((1, 0)), s_zero, use_acc=False,
                                      is_async=True)
                mbarrier.wait(v_ready.index(pst), ((g - 1) // NUM_STAGES) & 1)
                o_tok = warpgroup_mma(p_op, v_bufs.index(pst), acc, is_async=True)
                qk = warpgroup_mma_wait(num_outstanding=1, deps=(s_tok, ))
                mbarrier.arrive(k_empty.index(st))
                p, alpha, m_i, l_i = _g_softmax(qk, m_i, l_i, j, n_full, q_start, SEQLEN, qk_scale,
                                                CAUSAL, HALF, BN, s_layout)
                acc, p_op = warpgroup_mma_wait(num_outstanding=0, deps=(o_tok, p_op))
                mbarrier.arrive(v_empty.index(pst))
                acc = acc * gl.expand_dims(gl.convert_layout(alpha, gl.SliceLayout(1, o_layout)), 1)
                p_op = gl.convert_layout(p.to(dtype), p_layout)
            mbarrier.arrive(q_empty)  # the last QK of this tile has retired: Q may be reloaded
            g = it + n_kv - 1
            lst = g % NUM_STAGES
            mbarrier.wait(v_ready.index(lst), (g // NUM_STAGES) & 1)
            o_tok = warpgroup_mma(p_op, v_bufs.index(lst), acc, is_async=True)
            acc, p_op = warpgroup_mma_wait(num_outstanding=0, deps=(o_tok, p_op))
            mbarrier.arrive(v_empty.index(lst))
            it += n_kv
            tc += 1
            l_o = gl.convert_layout(l_i, gl.SliceLayout(1, o_layout))
            out = (acc / gl.expand_dims(l_o, 1)).to(dtype)
            if EVEN_M:
                tma.store_wait(pendings=0)  # the previous tile's output has left o_smem
                gl.thread_barrier()
                o_smem.store(out)
                fence_async_shared()
                gl.thread_barrier()
                tma.async_copy_shared_to_global(o_desc, [o_row, 0], o_smem)
            else:
                rows = gl.arange(0, HALF, layout=gl.SliceLayout(1, o_layout))
                cols = gl.arange(0, HD, layout=gl.SliceLayout(0, o_layout))
                offs = gl.expand_dims((o_row + rows).to(gl.int64) * HD, 1) + gl.expand_dims(cols, 0)
                mask = gl.expand_dims(q_start + rows < SEQLEN, 1) & gl.expand_dims(cols < HD, 0)
                gl.store(o_ptr + offs, out, mask=mask)
        tma.store_wait(pendings=0)

    @gluon.jit
    def _wsp_producer(q_desc, k_desc, v_desc, q_smem0, q_smem1, k_bufs, v_bufs, q_ready, q_empty, k_ready, v_ready,
                      k_empty, v_empty, SEQLEN, HEADS_Q, GROUP, NUM_M, BH, CHUNK, num_tiles,
                      CAUSAL: gl.constexpr, NUM_STAGES: gl.constexpr, HEAVY_FIRST: gl.constexpr):
        HALF: gl.constexpr = q_desc.block_type.shape[0]
        BN: gl.constexpr = k_desc.block_type.shape[0]
        Q_BYTES: gl.constexpr = q_desc.block_type.nbytes
        K_BYTES: gl.constexpr = k_desc.block_type.nbytes
        V_BYTES: gl.constexpr = v_desc.block_type.nbytes
        it = 0
        tc = 0
        for tile in range(gl.program_id(0), num_tiles, gl.num_programs(0)):
            q_start, q_row, kv_row, n_kv, n_full = _wsp_tile(tile, SEQLEN, HEADS_Q, GROUP, NUM_M, BH, CHUNK,
                                                             2 * HALF, BN, CAUSAL, HEAVY_FIRST)
            qph = (tc & 1) ^ 1  # a fresh barrier passes a wait on parity 1
            mbarrier.wait(q_empty.index(0), qph)
            mbarrier.expect(q_ready.index(0), Q_BYTES)
            tma.async_copy_global_to_shared(q_desc, [q_row, 0], q_ready.index(0), q_smem0)
            mbarrier.wait(q_empty.index(1), qph)
            mbarrier.expect(q_ready.index(1), Q_BYTES)
            tma.async_copy_global_to_shared(q_desc, [q_row + HALF, 0], q_ready.index(1), q_smem1)
            for j in range(n_kv):
                g = it + j
                s = g % NUM_STAGES
                ph = ((g // NUM_STAGES) & 1) ^ 1
                mbarrier.wait(k_empty.index(s), ph)
                mbarrier.expect(k_ready.index(s), K_BYTES)
                tma.async_copy_global_to_shared(k_desc, [kv_row + j * BN, 0], k_ready.index(s), k_bufs.index(s))
                mbarrier.wait(v_empty.index(s), ph)
                mbarrier.expect(v_ready.index(s), V_BYTES)
                tma.async_copy_global_to_shared(v_desc, [kv_row + j * BN, 0], v_ready.index(s), v_bufs.index(s))
            it += n_kv
            tc += 1

    @gluon.jit
    def _g_fwd_wsp(q_desc, k_desc, v_desc, o_desc, o_ptr, qk_scale, SEQLEN, HEADS_Q, GROUP, NUM_M, BH, CHUNK,
                   num_tiles, CAUSAL: gl.constexpr, EVEN_M: gl.constexpr, NUM_STAGES: gl.constexpr,
                   HEAVY_FIRST: gl.constexpr, CONSUMER_REGS: gl.constexpr, PRODUCER_REGS: gl.constexpr):
        HALF: gl.constexpr = q_desc.block_type.shape[0]
        HD: gl.constexpr = q_desc.block_type.shape[1]
        BN: gl.constexpr = k_desc.block_type.shape[0]
        dtype: gl.constexpr = q_desc.dtype
        q_smem0 = gl.allocate_shared_memory(dtype, [HALF, HD], q_desc.layout)
        q_smem1 = gl.allocate_shared_memory(dtype, [HALF, HD], q_desc.layout)
        o_smem0 = gl.allocate_shared_memory(dtype, [HALF, HD], o_desc.layout)
        o_smem1 = gl.allocate_shared_memory(dtype, [HALF, HD], o_desc.layout)
        k_bufs = gl.allocate_shared_memory(dtype, [NUM_STAGES, BN, HD], k_desc.layout)
        v_bufs = gl.allocate_shared_memory(dtype, [NUM_STAGES, BN, HD], v_desc.layout)
        q_ready = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())
        q_empty = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())
        k_ready = gl.allocate_shared_memory(gl.int64, [NUM_STAGES, 1], mbarrier.MBarrierLayout())
        v_ready = gl.allocate_shared_memory(gl.int64, [NUM_STAGES, 1], mbarrier.MBarrierLayout())
        k_empty = gl.allocate_shared_memory(gl.int64, [NUM_STAGES, 1], mbarrier.MBarrierLayout())
        v_empty = gl.allocate_shared_memory(gl.int64, [NUM_STAGES, 1], mbarrier.MBarrierLayout())
        for i in gl.static_range(2):
            mbarrier.init(q_ready.index(i), count=1)
            mbarrier.init(q_empty.index(i), count=1)
        for i in gl.static_range(NUM_STAGES):
            mbarrier.init(k_ready.index(i), count=1)
            mbarrier.init(v_ready.index(i), count=1)
            mbarrier.init(k_empty.index(i), count=2)  # one arrive per consumer warpgroup
            mbarrier.init(v_empty.index(i), count=2)
        gl.warp_specialize([
            (_wsp_consumer, (q_smem0, o_smem0, k_bufs, v_bufs, q_ready.index(0), q_empty.index(0), k_ready, v_ready,
                             k_empty, v_empty, o_desc, o_ptr, qk_scale, SEQLEN, HEADS_Q, GROUP, NUM_M, BH, CHUNK,
                             num_tiles, CAUSAL, EVEN_M, NUM_STAGES, HEAVY_FIRST, 0)),
            (_wsp_consumer, (q_smem1, o_smem1, k_bufs, v_bufs, q_ready.index(1), q_empty.index(1), k_ready, v_ready,
                             k_empty, v_empty, o_desc, o_ptr, qk_scale, SEQLEN, HEADS_Q, GROUP, NUM_M, BH, CHUNK,
                             num_tiles, CAUSAL, EVEN_M, NUM_STAGES, HEAVY_FIRST, 1)),
            (_wsp_producer, (q_desc, k_desc, v_desc, q_smem0, q_smem1, k_bufs, v_bufs, q_ready, q_empty, k_ready,
                             v_ready, k_empty, v_empty, SEQLEN, HEADS_Q, GROUP, NUM_M, BH, CHUNK, num_tiles, CAUSAL,
                             NUM_STAGES, HEAVY_FIRST)),
        ], [4, 1], [CONSUMER_REGS, PRODUCER_REGS])


# ---------------------------------------------------------------- plain Triton fallback (lineage v0003)
@triton.jit
def _fb_tiles(
    acc, l_i, m_i, q,
    k_src, v_src,  # tensor descriptors (USE_TMA) or base pointers of this KV head
    stride_ks, stride_vs,
    offs_m, offs_n, offs_d,
    lo, hi, qk_scale, SEQLEN,
    MASKED: tl.constexpr,  # apply the tail mask (and the causal mask if CAUSAL)
    CAUSAL: tl.constexpr,
    BLOCK_N: tl.constexpr,
    USE_TMA: tl.constexpr,
    UPCAST_DOT: tl.constexpr,
):
    """Online softmax over key blocks [lo, hi). MASKED=False: every key is valid."""
    for start_n in range(lo, hi, BLOCK_N):
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
def _fb_fwd(
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
    acc, l_i, m_i = _fb_tiles(acc, l_i, m_i, q, k_src, v_src, stride_ks, stride_vs,
                                offs_m, offs_n, offs_d, 0, split, qk_scale, SEQLEN,
                                False, CAUSAL, BLOCK_N, USE_TMA, UPCAST_DOT)
    acc, l_i, m_i = _fb_tiles(acc, l_i, m_i, q, k_src, v_src, stride_ks, stride_vs,
                                offs_m, offs_n, offs_d, split, hi, qk_scale, SEQLEN,
                                True, CAUSAL, BLOCK_N, USE_TMA, UPCAST_DOT)

    acc = acc / l_i[:, None]
    if USE_TMA:
        desc_o = tl.make_tensor_descriptor(o_base, shape=[SEQLEN, HEAD_DIM], strides=[stride_os, 1],
                                           block_shape=[BLOCK_M, HEAD_DIM])
        desc_o.store([start_m * BLOCK_M, 0], acc.to(Out.dtype.element_ty))  # rows past S dropped
    else:
        tl.store(o_base + offs_m[:, None] * stride_os + offs_d[None, :], acc.to(Out.dtype.element_ty),
                 mask=offs_m[:, None] < SEQLEN)


def _fb_workspace(size, alignment, stream):
    """Global scratch Triton asks for at launch (device-side tensor descriptors)."""
    return torch.empty(size, dtype=torch.int8, device="cuda")




# ---------------------------------------------------------------- host side
def _gluon_usable(q):
    """The Gluon kernels need Hopper (sm_90) and Triton's Gluon; decided by device, never by caller."""
    if not (HAVE_GLUON and USE_GLUON and q.is_cuda):
        return False
    return torch.cuda.get_device_capability(q.device)[0] == 9


def _tma_ready(t):
    """Contiguous, 16-byte aligned base: what the [rows, D] TMA view needs."""
    if not t.is_contiguous() or t.data_ptr() % 16 != 0:
        t = t.contiguous()
        if t.data_ptr() % 16 != 0:
            t = t.clone()
    return t


def _gluon_forward(q, k, v, causal, sm_scale, cfg):
    batch, heads_q, seqlen, head_dim = q.shape
    heads_kv = k.shape[1]
    q, k, v = _tma_ready(q), _tma_ready(k), _tma_ready(v)
    out = torch.empty_like(q)
    gdt = gl.bfloat16 if q.dtype == torch.bfloat16 else gl.float16
    block_m = cfg["BLOCK_M"]
    block_n = cfg["BLOCK_N"]
    ws = cfg["WARP_SPECIALIZE"]
    q_rows = block_m // 2 if ws else block_m  # the WS kernel moves Q/O per consumer warpgroup
    q2 = q.view(batch * heads_q * seqlen, head_dim)
    k2 = k.view(batch * heads_kv * seqlen, head_dim)
    v2 = v.view(batch * heads_kv * seqlen, head_dim)
    o2 = out.view(batch * heads_q * seqlen, head_dim)
    q_layout = gl.NVMMASharedLayout.get_default_for([q_rows, head_dim], gdt)
    kv_layout = gl.NVMMASharedLayout.get_default_for([block_n, head_dim], gdt)
    q_desc = TensorDescriptor.from_tensor(q2, [q_rows, head_dim], q_layout)
    o_desc = TensorDescriptor.from_tensor(o2, [q_rows, head_dim], q_layout)
    k_desc = TensorDescriptor.from_tensor(k2, [block_n, head_dim], kv_layout)
    v_desc = TensorDescriptor.from_tensor(v2, [block_n, head_dim], kv_layout)
    num_m = triton.cdiv(seqlen, block_m)
    grid = (num_m, batch * heads_q)
    even_m = seqlen % block_m == 0
    qk_scale = sm_scale * LOG2E
    if ws and cfg["PERSISTENT"]:
        num_tiles = num_m * batch * heads_q
        n_sm = torch.cuda.get_device_properties(q.device).multi_processor_count
        chunk = max(1, n_sm // num_m)
        _g_fwd_wsp[(min(num_tiles, n_sm), )](
            q_desc, k_desc, v_desc, o_desc, out, qk_scale, seqlen, heads_q, heads_q // heads_kv, num_m,
            batch * heads_q, chunk, num_tiles, causal, even_m, cfg["NUM_STAGES"], cfg["HEAVY_FIRST"],
            cfg["CONSUMER_REGS"], cfg["PRODUCER_REGS"], num_warps=4)
    elif ws:
        _g_fwd_ws[grid](q_desc, k_desc, v_desc, o_desc, out, qk_scale, seqlen, heads_q, heads_q // heads_kv, num_m,
                        causal, even_m, cfg["NUM_STAGES"], cfg["HEAVY_FIRST"], cfg["CONSUMER_REGS"],
                        cfg["PRODUCER_REGS"], cfg["FA3_SCHEDULE"], cfg["PINGPONG"], num_warps=4)
    else:
        _g_fwd[grid](q_desc, k_desc, v_desc, o_desc, out, qk_scale, seqlen, heads_q, heads_q // heads_kv, num_m,
                     causal, even_m, cfg["NUM_STAGES"], cfg["PIPELINE"], cfg["HEAVY_FIRST"],
                     num_warps=8)
    return out


def gluon_config(head_dim):
    """The Gluon knobs for one head dim, read from the module constants at call time."""
    return {
        "BLOCK_M": BLOCK_M,
        "BLOCK_N": BLOCK_N_D64 if head_dim == 64 else BLOCK_N,
        "NUM_STAGES": NUM_STAGES_D64 if head_dim == 64 else NUM_STAGES,
        "PIPELINE": PIPELINE,
        "WARP_SPECIALIZE": WARP_SPECIALIZE,
        "CONSUMER_REGS": CONSUMER_REGS,
        "PRODUCER_REGS": PRODUCER_REGS,
        "HEAVY_FIRST": HEAVY_FIRST,
        "FA3_SCHEDULE": FA3_SCHEDULE,
        "PINGPONG": PINGPONG,
        "PERSISTENT": PERSISTENT,
    }


def _fallback_forward(q, k, v, causal, sm_scale):
    batch, heads_q, seqlen, head_dim = q.shape
    heads_kv = k.shape[1]
    q, k, v = (t if t.stride(-1) == 1 else t.contiguous() for t in (q, k, v))
    out = torch.empty_like(q)
    use_tma = FB_USE_TMA and q.is_cuda
    if use_tma:
        aligned = all(t.data_ptr() % 16 == 0 and all(s * t.element_size() % 16 == 0 for s in t.stride()[:-1])
                      for t in (q, k, v))
        if not aligned:
            q, k, v = (t.contiguous() for t in (q, k, v))
        triton.set_allocator(_fb_workspace)
    if head_dim == 64:
        block_m, block_n, num_warps, num_stages = FB_BLOCK_M_D64, FB_BLOCK_N_D64, FB_NUM_WARPS_D64, FB_NUM_STAGES_D64
    else:
        block_m, block_n, num_warps, num_stages = FB_BLOCK_M, FB_BLOCK_N, FB_NUM_WARPS, FB_NUM_STAGES
    num_m_blocks = triton.cdiv(seqlen, block_m)
    grid = (num_m_blocks, batch * heads_q)
    _fb_fwd[grid](
        q, k, v, out,
        sm_scale * LOG2E,
        q.stride(0), q.stride(1), q.stride(2),
        k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2),
        out.stride(0), out.stride(1), out.stride(2),
        heads_q, heads_q // heads_kv, seqlen, num_m_blocks,
        HEAD_DIM=head_dim, BLOCK_M=block_m, BLOCK_N=block_n, CAUSAL=causal,
        CAUSAL_SPLIT=FB_CAUSAL_SPLIT, HEAVY_FIRST=HEAVY_FIRST, USE_TMA=use_tma,
        UPCAST_DOT=not q.is_cuda,
        num_warps=num_warps, num_stages=num_stages,
    )
    return out


def attention(q, k, v, causal=False, sm_scale=None):
    """softmax(q k^T * sm_scale [+ causal mask]) v for q [B,Hq,S,D], k/v [B,Hkv,S,D]."""
    batch, heads_q, seqlen, head_dim = q.shape
    heads_kv = k.shape[1]
    assert head_dim in (64, 128) and heads_q % heads_kv == 0
    assert q.dtype in (torch.bfloat16, torch.float16)
    if sm_scale is None:
        sm_scale = 1.0 / math.sqrt(head_dim)
    if _gluon_usable(q):
        return _gluon_forward(q, k, v, causal, sm_scale, gluon_config(head_dim))
    return _fallback_forward(q, k, v, causal, sm_scale)
