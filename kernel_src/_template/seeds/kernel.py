"""TEMPLATE seed: row L2 normalisation in Triton, one program per row: the sum of
squares in fp32 over BLOCK_N-wide steps, then the row scaled by its reciprocal norm.
Module-level UPPERCASE constants are the knobs the heuristic operator tunes (the
problem's KNOBS)."""
import torch
import triton
import triton.language as tl

BLOCK_N = 256  # columns per step
NUM_WARPS = 4


@triton.jit
def _l2norm(X, Y, N, stride, BLOCK_N: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK_N)
    acc = tl.zeros([BLOCK_N], tl.float32)
    for start in range(0, N, BLOCK_N):
        x = tl.load(X + row * stride + start + cols, mask=start + cols < N, other=0.0).to(tl.float32)
        acc += x * x
    inv = 1.0 / tl.sqrt(tl.sum(acc, axis=0))
    for start in range(0, N, BLOCK_N):
        mask = start + cols < N
        x = tl.load(X + row * stride + start + cols, mask=mask, other=0.0).to(tl.float32)
        tl.store(Y + row * stride + start + cols, (x * inv).to(Y.dtype.element_ty), mask=mask)


def l2norm(x):
    y = torch.empty_like(x)
    _l2norm[(x.shape[0],)](x, y, x.shape[1], x.stride(0), BLOCK_N=BLOCK_N, num_warps=NUM_WARPS)
    return y
