"""Cheat: computes attention with broadcast torch element-wise ops and sums (no matmul/softmax names at all)."""
import math

import torch
import triton


@triton.jit
def _unused(X):
    pass


def attention(q, k, v, causal=False, sm_scale=None):
    scale = sm_scale if sm_scale is not None else 1.0 / math.sqrt(q.shape[-1])
    group = q.shape[1] // k.shape[1]
    qf = q.double()
    kf = k.double().repeat_interleave(group, dim=1)
    vf = v.double().repeat_interleave(group, dim=1)
    s = (qf[..., :, None, :] * kf[..., None, :, :]).sum(-1) * scale
    if causal:
        n = q.shape[2]
        s = s.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
    p = (s - s.amax(-1, keepdim=True)).exp()
    p = p / p.sum(-1, keepdim=True)
    return (p[..., :, :, None] * vf[..., None, :, :]).sum(-2).to(q.dtype)
