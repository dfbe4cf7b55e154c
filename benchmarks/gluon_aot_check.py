"""Compile the g1 Gluon kernels ahead of time for sm_90a, without a GPU.

Needs a Triton with Gluon (e.g. 3.6: `pip install --target /tmp/t36 triton==3.6.0`, then
PYTHONPATH=/tmp/t36). Prints, per variant, registers / spills / shared memory from ptxas
(via cuobjdump --dump-resource-usage on the cubin) and the ptxas warnings; catches compile
errors before any device time is spent.

Usage: PYTHONPATH=/tmp/t36 python benchmarks/gluon_aot_check.py [variant ...]
"""
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.experimental.gluon._runtime import GluonASTSource
from triton.runtime.jit import mangle_type

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "..", "kernel_src", "attention", "lineage", "cuda", "v0004", "kernel.py")  # g1, entered as v4


def load(path=SRC):
    spec = importlib.util.spec_from_file_location("g1_gluon", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def compile_variant(mod, head_dim=128, dtype=torch.bfloat16, causal=False, even_m=True, **cfg_over):
    gl = mod.gl
    cfg = mod.gluon_config(head_dim)
    cfg.update(cfg_over)
    ws = cfg["WARP_SPECIALIZE"]
    q_rows = cfg["BLOCK_M"] // 2 if ws else cfg["BLOCK_M"]
    bn = cfg["BLOCK_N"]
    gdt = gl.bfloat16 if dtype == torch.bfloat16 else gl.float16
    t = torch.empty(4096, head_dim, dtype=dtype)
    ql = gl.NVMMASharedLayout.get_default_for([q_rows, head_dim], gdt)
    kl = gl.NVMMASharedLayout.get_default_for([bn, head_dim], gdt)
    qd = mod.TensorDescriptor.from_tensor(t, [q_rows, head_dim], ql)
    kd = mod.TensorDescriptor.from_tensor(t, [bn, head_dim], kl)
    names_vals = [("q_desc", qd), ("k_desc", kd), ("v_desc", kd), ("o_desc", qd), ("o_ptr", t),
                  ("qk_scale", 0.1), ("SEQLEN", 4096), ("HEADS_Q", 16), ("GROUP", 1), ("NUM_M", 32)]
    if ws and cfg.get("PERSISTENT"):
        names_vals += [("BH", 128), ("CHUNK", 4), ("num_tiles", 4096)]
    sig = {n: mangle_type(v) for n, v in names_vals}
    if ws and cfg.get("PERSISTENT"):
        fn = mod._g_fwd_wsp
        consts = dict(CAUSAL=causal, EVEN_M=even_m, NUM_STAGES=cfg["NUM_STAGES"], HEAVY_FIRST=cfg["HEAVY_FIRST"],
                      CONSUMER_REGS=cfg["CONSUMER_REGS"], PRODUCER_REGS=cfg["PRODUCER_REGS"])
        nw = 4
    elif ws:
        fn = mod._g_fwd_ws
        consts = dict(CAUSAL=causal, EVEN_M=even_m, NUM_STAGES=cfg["NUM_STAGES"], HEAVY_FIRST=cfg["HEAVY_FIRST"],
                      CONSUMER_REGS=cfg["CONSUMER_REGS"], PRODUCER_REGS=cfg["PRODUCER_REGS"],
                      FA3_SCHEDULE=cfg["FA3_SCHEDULE"], PINGPONG=cfg["PINGPONG"])
        nw = 4
    else:
        fn = mod._g_fwd
        consts = dict(CAUSAL=causal, EVEN_M=even_m, NUM_STAGES=cfg["NUM_STAGES"], PIPELINE=cfg["PIPELINE"],
                      HEAVY_FIRST=cfg["HEAVY_FIRST"])
        nw = 8
    for n, v in consts.items():
        sig[n] = "constexpr"
    params = [p.name for p in fn.params]
    constexprs = {(params.index(n), ): v for n, v in consts.items()}
    if "num_warps" in params:
        sig["num_warps"] = "constexpr"
        constexprs[(params.index("num_warps"), )] = nw
    src = GluonASTSource(fn, sig, constexprs)
    k = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": nw})
    return k


def resources(k):
    with tempfile.NamedTemporaryFile(suffix=".cubin", delete=False) as f:
        f.write(k.asm["cubin"])
        path = f.name
    tools = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")
    out = subprocess.run([os.path.join(tools, "cuobjdump"), "--dump-resource-usage", path],
                         capture_output=True, text=True).stdout
    os.unlink(path)
    m = re.search(r"REG:(\d+) STACK:(\d+) SHARED:(\d+) LOCAL:(\d+)", out)
    res = dict(zip(("regs", "stack", "shared_static", "local"), map(int, m.groups()))) if m else {"raw": out[-300:]}
    res["shared"] = k.metadata.shared
    sass = k.asm.get("sass") if hasattr(k, "asm") else None
    ptx = k.asm["ptx"]
    res["wgmma_in_ptx"] = ptx.count("wgmma.mma_async")
    res["setmaxnreg"] = re.findall(r"setmaxnreg\.\w+\.sync\.aligned\.u32 (\d+)", ptx)
    return res


VARIANTS = {
    "plain": dict(PIPELINE=False, WARP_SPECIALIZE=False, NUM_STAGES=3),
    "pipe": dict(PIPELINE=True, WARP_SPECIALIZE=False, NUM_STAGES=3),
    "ws": dict(WARP_SPECIALIZE=True, NUM_STAGES=2),
    "ws3": dict(WARP_SPECIALIZE=True, NUM_STAGES=3),
    "fa3": dict(WARP_SPECIALIZE=True, NUM_STAGES=2, FA3_SCHEDULE=True, PINGPONG=False),
    "persist": dict(WARP_SPECIALIZE=True, NUM_STAGES=2, PERSISTENT=True),
    "fa3pp": dict(WARP_SPECIALIZE=True, NUM_STAGES=2, FA3_SCHEDULE=True, PINGPONG=True),
}

if __name__ == "__main__":
    mod = load()
    names = sys.argv[1:] or list(VARIANTS)
    for name in names:
        for hd in (128, 64):
            for causal in (False, True):
                for even in (True, False):
                    tag = f"{name} d{hd} {'causal' if causal else 'full'} {'even' if even else 'tail'}"
                    try:
                        over = dict(VARIANTS[name])
                        if hd == 64 and "NUM_STAGES" in over:
                            over["NUM_STAGES"] += 1
                        k = compile_variant(mod, head_dim=hd, causal=causal, even_m=even, **over)
                        print(tag, json.dumps(resources(k)), flush=True)
                    except Exception as e:
                        msg = f"{type(e).__name__}: {e}"
                        print(tag, "FAILED", msg[:3000], flush=True)
