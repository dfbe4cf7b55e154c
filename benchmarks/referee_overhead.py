"""Per-call cost of the judge's protocol on a GPU, for one configuration: the judge's
figure for cuDNN against a bare CUDA-event timing (do_bench) of the same call.

    PYTHONPATH=. python benchmarks/referee_overhead.py
"""
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from triton.testing import do_bench

from avo.harness import evaluate
from avo.problem import load_problem

P = load_problem()
for name in ("mha b8 s4096 d128 causal bf16", "mha b1 s32768 d128 full bf16"):
    shape = next(s for s in P.SUITES["avo"] if s.name == name)
    q, k, v = P.make_inputs(shape, "cuda", 1)
    with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
        ms = do_bench(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=shape.causal), return_mode="median")
    out = torch.empty_like(q)
    copy_ms = do_bench(lambda: out.copy_(q), return_mode="median")
    r = evaluate("kernel_src/attention/seeds/fa2.py", device="cuda", configs=[name])
    t = r.timings[0]
    cudnn_judge_ms = shape.flops() / (t.cudnn_tflops * 1e12) * 1e3
    print(f"{name}: cuDNN do_bench {ms:.3f} ms, judge {cudnn_judge_ms:.3f} ms ({cudnn_judge_ms / ms:.3f}x); "
          f"output copy {copy_ms:.3f} ms; seed {r.status} {t.ms:.3f} ms")
