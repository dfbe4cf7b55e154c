"""The RMSNorm baseline, hosted by the same runner as candidates and timed by the same
judge clock (trusted code: PyTorch's own RMSNorm). It fills the record's `cudnn`
column; the record's env.baseline_labels says it is this one."""
import torch.nn.functional as F


def torch_rms_norm(x, w, eps=1e-6):
    return F.rms_norm(x, (x.shape[-1],), w, eps)
