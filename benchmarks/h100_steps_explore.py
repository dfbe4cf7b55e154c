"""Quick exploration of kernel variants on the GPU (one device call, many variants).

Each variant = a kernel file plus knob overrides; it runs in its own subprocess (a
compiler crash kills only that variant), is checked against the fp32 reference on
small odd-sized shapes, then timed (do_bench median) on a few suite shapes. cuDNN and
FA2 are timed once in the parent process, same run.

  python3 benchmarks/h100_steps_explore.py VARIANTS.txt [--json out.json]
VARIANTS.txt: one `name file KNOB=value,KNOB=value` per line (# comments).
"""
import json
import subprocess
import sys

SHAPES = [  # (B, Hq, Hkv, S, D, causal)
    (4, 16, 16, 8192, 128, False), (4, 16, 16, 8192, 128, True),
    (8, 16, 16, 4096, 128, True),
    (4, 32, 8, 8192, 128, False), (4, 32, 8, 8192, 128, True),
    (4, 16, 16, 8192, 64, False), (4, 16, 16, 8192, 64, True),
]
CHECKS = [(1, 4, 2, 1000, 128, True), (2, 4, 4, 333, 64, False), (1, 8, 2, 1031, 128, False),
          (1, 4, 4, 777, 64, True)]


def flops(b, hq, s, d, causal):
    f = 4.0 * b * hq * s * s * d
    return f / 2 if causal else f


def one_variant(spec):
    import importlib.util
    import torch
    from triton.testing import do_bench
    from kernel_src.attention.problem import reference
    name, path, knobs = spec
    mod_spec = importlib.util.spec_from_file_location("cand_" + name.replace("-", "_"), path)
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    for kv in filter(None, knobs.split(",")):
        key, val = kv.split("=")
        setattr(mod, key, eval(val))
    res = {"name": name, "err": None, "tflops": [], "maxrel": 0.0}
    g = torch.Generator(device="cuda").manual_seed(0)
    for (b, hq, hkv, s, d, causal) in CHECKS:
        q = torch.randn(b, hq, s, d, generator=g, device="cuda").bfloat16()
        k = torch.randn(b, hkv, s, d, generator=g, device="cuda").bfloat16()
        v = torch.randn(b, hkv, s, d, generator=g, device="cuda").bfloat16()
        out = mod.attention(q, k, v, causal=causal).float()
        ref = reference(q, k, v, causal)
        rel = ((out - ref).norm() / ref.norm()).item()
        res["maxrel"] = max(res["maxrel"], rel)
        if not rel < 1e-2:
            res["err"] = f"wrong: rel {rel:.2e} at {(b, hq, hkv, s, d, causal)}"
            return res
    for (b, hq, hkv, s, d, causal) in SHAPES:
        q = torch.randn(b, hq, s, d, generator=g, device="cuda").bfloat16()
        k = torch.randn(b, hkv, s, d, generator=g, device="cuda").bfloat16()
        v = torch.randn(b, hkv, s, d, generator=g, device="cuda").bfloat16()
        ms = do_bench(lambda: mod.attention(q, k, v, causal=causal), warmup=25, rep=100, return_mode="median")
        res["tflops"].append(flops(b, hq, s, d, causal) / ms / 1e9)
    return res


def baselines():
    import torch
    from triton.testing import do_bench
    from torch.nn.attention import SDPBackend, sdpa_kernel
    import torch.nn.functional as F
    out = {}
    g = torch.Generator(device="cuda").manual_seed(1)
    for be in ("CUDNN_ATTENTION", "FLASH_ATTENTION"):
        row = []
        for (b, hq, hkv, s, d, causal) in SHAPES:
            q = torch.randn(b, hq, s, d, generator=g, device="cuda").bfloat16()
            k = torch.randn(b, hkv, s, d, generator=g, device="cuda").bfloat16()
            v = torch.randn(b, hkv, s, d, generator=g, device="cuda").bfloat16()
            if hkv != hq and be == "FLASH_ATTENTION":
                k, v = (t.repeat_interleave(hq // hkv, dim=1) for t in (k, v))

            def call():
                with sdpa_kernel(getattr(SDPBackend, be)):
                    return F.scaled_dot_product_attention(q, k, v, is_causal=causal,
                                                          enable_gqa=k.shape[1] != hq)
            ms = do_bench(call, warmup=25, rep=100, return_mode="median")
            row.append(flops(b, hq, s, d, causal) / ms / 1e9)
        out[be] = row
    return out


def main():
    if sys.argv[1] == "--one":
        print("RESULT " + json.dumps(one_variant(json.loads(sys.argv[2]))), flush=True)
        return
    specs = []
    for line in open(sys.argv[1]):
        line = line.split("#")[0].strip()
        if line:
            parts = line.split()
            specs.append((parts[0], parts[1], parts[2] if len(parts) > 2 else ""))
    base = baselines()
    results = []
    for spec in specs:
        try:
            p = subprocess.run([sys.executable, __file__, "--one", json.dumps(spec)], capture_output=True,
                               text=True, timeout=240)
            lines = [l for l in p.stdout.splitlines() if l.startswith("RESULT ")]
            if lines:
                r = json.loads(lines[-1][7:])
            else:
                tail = (p.stderr.strip().splitlines() or ["?"])
                err = next((l for l in reversed(tail) if "Error" in l or "error" in l), tail[-1])
                r = {"name": spec[0], "err": f"rc {p.returncode}: {err[:150]}", "tflops": []}
        except subprocess.TimeoutExpired:
            r = {"name": spec[0], "err": "timeout", "tflops": []}
        results.append(r)
        print(spec[0], r.get("err") or " ".join(f"{t:6.1f}" for t in r["tflops"]), flush=True)
    if "--json" in sys.argv:
        json.dump({"shapes": SHAPES, "baselines": base, "results": results, "specs": specs},
                  open(sys.argv[sys.argv.index("--json") + 1], "w"), indent=1)
    # ---- table: TFLOPS and x cuDNN per shape, geomean x cuDNN
    import math
    cud = base["CUDNN_ATTENTION"]
    hdr = ["mha8k", "mha8kC", "mha4kC", "gqa8k", "gqa8kC", "d64-8k", "d64-8kC"]
    print(f"{'variant':28s} " + " ".join(f"{h:>8s}" for h in hdr) + "   gm×cuDNN  maxrel")
    for nm in ("CUDNN_ATTENTION", "FLASH_ATTENTION"):
        print(f"{nm:28s} " + " ".join(f"{t:8.1f}" for t in base[nm]))
    for r in results:
        if r.get("err"):
            print(f"{r['name']:28s} {r['err']}")
            continue
        rat = [t / c for t, c in zip(r["tflops"], cud)]
        gm = math.exp(sum(math.log(x) for x in rat) / len(rat))
        print(f"{r['name']:28s} " + " ".join(f"{t:5.0f}/{x:.2f}"[-8:] if False else f"{t:8.1f}" for t, x in zip(r["tflops"], rat))
              + f"   {gm:.3f}   {r['maxrel']:.1e}")
        print(f"{'':28s} " + " ".join(f"{x:8.2f}" for x in rat))


if __name__ == "__main__":
    main()
