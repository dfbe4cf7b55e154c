"""One device call: check and time the g1 Gluon attention variants against cuDNN / FA2.

Phase A (parallel subprocesses, one per variant): correctness on fresh random inputs
against problem.reference (float32) over the contract's shapes (odd S, GQA, causal,
bf16/fp16, D 64/128) with problem.TOLERANCES; records max rel err per dtype and the
compiled kernels' registers / spills.
Phase B (sequential subprocesses): times each variant that passed, plus SDPA pinned to
cuDNN and to FLASH_ATTENTION, and the plain Triton fallback (= lineage v0003), on the AVO
suite (D=128, B*S=32k, MHA 16h, GQA 32/8, 32/4, causal and not) and the d64 suite;
triton.testing.do_bench median.
Writes $OUT/gluon_explore.json and prints a table last.

Usage: python benchmarks/gluon_explore.py [--variants a,b] [--suites avo,d64] [--quick]
"""
import argparse
import importlib.util
import json
import math
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SRC = os.path.join(ROOT, "kernel_src", "attention", "lineage", "cuda", "v0004", "kernel.py")  # g1, entered as v4
PROBLEM = os.path.join(ROOT, "kernel_src", "attention", "problem.py")

VARIANTS = {
    "plain": dict(WARP_SPECIALIZE=False, PIPELINE=False, NUM_STAGES=3, NUM_STAGES_D64=4),
    "pipe": dict(WARP_SPECIALIZE=False, PIPELINE=True, NUM_STAGES=3, NUM_STAGES_D64=4),
    "pipe_s2": dict(WARP_SPECIALIZE=False, PIPELINE=True, NUM_STAGES=2, NUM_STAGES_D64=3),
    "ws2": dict(WARP_SPECIALIZE=True, FA3_SCHEDULE=False, NUM_STAGES=2, NUM_STAGES_D64=3),
    "ws3": dict(WARP_SPECIALIZE=True, FA3_SCHEDULE=False, NUM_STAGES=3, NUM_STAGES_D64=4),
    "ws2d4": dict(WARP_SPECIALIZE=True, FA3_SCHEDULE=False, NUM_STAGES=2, NUM_STAGES_D64=4),
    "fa3": dict(WARP_SPECIALIZE=True, FA3_SCHEDULE=True, PINGPONG=False, PERSISTENT=False, NUM_STAGES=2,
                NUM_STAGES_D64=4),
    "fa3pp": dict(WARP_SPECIALIZE=True, FA3_SCHEDULE=True, PINGPONG=True, NUM_STAGES=2, NUM_STAGES_D64=4),
    "persist": dict(WARP_SPECIALIZE=True, FA3_SCHEDULE=True, PINGPONG=False, PERSISTENT=True, NUM_STAGES=2,
                    NUM_STAGES_D64=4),
    "persist_d3": dict(WARP_SPECIALIZE=True, FA3_SCHEDULE=True, PINGPONG=False, PERSISTENT=True, NUM_STAGES=2,
                       NUM_STAGES_D64=3),
    "fa3pp3": dict(WARP_SPECIALIZE=True, FA3_SCHEDULE=True, PINGPONG=True, NUM_STAGES=3, NUM_STAGES_D64=4),
    "fallback": dict(USE_GLUON=False),  # the plain Triton kernel = lineage v0003
}


def load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up here
    spec.loader.exec_module(mod)
    return mod


def kernel_mod(variant):
    mod = load(SRC, "g1_gluon")
    for k, v in VARIANTS.get(variant, {}).items():
        setattr(mod, k, v)
    return mod


def compiled_stats(mod):
    """Registers / spills / smem of every compiled Gluon kernel (best effort)."""
    out = {}
    for name in ("_g_fwd", "_g_fwd_ws", "_fb_fwd"):
        fn = getattr(mod, name, None)
        caches = getattr(fn, "device_caches", None)
        if not caches:
            continue
        for dev, entry in caches.items():
            kc = entry[0]
            for key, k in kc.items():
                try:
                    out.setdefault(name, []).append({"regs": int(k.n_regs), "spills": int(k.n_spills),
                                                     "shared": int(k.metadata.shared),
                                                     "num_warps": int(k.metadata.num_warps)})
                except Exception as e:  # noqa: BLE001
                    out.setdefault(name, []).append({"error": str(e)[:100]})
    for name in out:  # dedupe
        seen = []
        for d in out[name]:
            if d not in seen:
                seen.append(d)
        out[name] = seen
    return out


def check(variant, quick):
    import torch
    P = load(PROBLEM, "problem")
    mod = kernel_mod(variant)
    shapes = list(P.check_shapes("cuda"))
    extra = [(2, 16, 16, 4096, 128, True, "float16"), (1, 32, 4, 4096, 128, False, "float16"),
             (2, 16, 16, 1024, 64, False, "bfloat16"), (1, 8, 8, 384, 64, True, "float16"),
             (1, 4, 4, 200, 128, True, "float16"), (1, 4, 1, 64, 64, False, "bfloat16"),
             (2, 32, 8, 4096, 128, True, "bfloat16"), (1, 16, 16, 8192, 128, False, "bfloat16")]
    shapes += [P.Shape(*c) for c in extra]
    if quick:
        shapes = shapes[:6]
    res = {"variant": variant, "cases": [], "max_rel": {}, "ok": True}
    for i, sh in enumerate(shapes):
        q, k, v = P.make_inputs(sh, "cuda", seed=1000 + i, amplitude=1.0 + (i % 3))
        t0 = time.time()
        out = mod.attention(q, k, v, causal=sh.causal)
        torch.cuda.synchronize()
        ref = P.reference(q, k, v, sh.causal)
        tol = P.TOLERANCES[sh.dtype]
        o = out.float()
        finite = bool(torch.isfinite(o).all())
        rel = ((o - ref).norm() / ref.norm()).item()
        elem_ok = bool(((o - ref).abs() <= tol["atol"] + tol["rtol"] * ref.abs()).all())
        ok = finite and elem_ok and rel <= tol["rel"] and out.shape == q.shape and out.dtype == q.dtype
        res["cases"].append({"shape": sh.name, "rel": rel, "ok": ok, "finite": finite, "elem_ok": elem_ok,
                             "s": round(time.time() - t0, 2)})
        res["max_rel"][sh.dtype] = max(res["max_rel"].get(sh.dtype, 0.0), rel)
        res["ok"] &= ok
        print(f"  [{variant}] {sh.name:40s} rel={rel:.2e} {'ok' if ok else 'FAIL'}", flush=True)
        del q, k, v, out, ref, o
    # a repeat on the same inputs must give the same bits (a moving error is a race)
    sh = P.Shape(2, 32, 8, 4096, 128, True, "bfloat16")
    q, k, v = P.make_inputs(sh, "cuda", seed=7)
    a = mod.attention(q, k, v, causal=True)
    b = mod.attention(q, k, v, causal=True)
    res["deterministic"] = bool(torch.equal(a, b))
    res["ok"] &= res["deterministic"]
    res["stats"] = compiled_stats(mod)
    return res


def suite_shapes(P, suites):
    out = []
    for s in suites:
        out += [(s, sh) for sh in P.SUITES[s]]
    return out


def bench(variant, suites):
    import torch
    import triton
    P = load(PROBLEM, "problem")
    res = {"variant": variant, "configs": []}
    if variant in ("cudnn", "flash"):
        from torch.nn.attention import SDPBackend, sdpa_kernel
        backend = SDPBackend.CUDNN_ATTENTION if variant == "cudnn" else SDPBackend.FLASH_ATTENTION
        sdpa = torch.nn.functional.scaled_dot_product_attention

        def run(q, k, v, causal):
            with sdpa_kernel(backend):
                return sdpa(q, k, v, is_causal=causal, enable_gqa=q.shape[1] != k.shape[1])
    else:
        mod = kernel_mod(variant)

        def run(q, k, v, causal):
            return mod.attention(q, k, v, causal=causal)
    for suite, sh in suite_shapes(P, suites):
        q, k, v = P.make_inputs(sh, "cuda", seed=11)
        try:
            run(q, k, v, sh.causal)
            torch.cuda.synchronize()
            ms = triton.testing.do_bench(lambda: run(q, k, v, sh.causal), warmup=25, rep=100, return_mode="median")
            tf = sh.flops() / (ms * 1e-3) / 1e12
            res["configs"].append({"suite": suite, "shape": sh.name, "ms": ms, "tflops": tf})
            print(f"  [{variant}] {sh.name:40s} {ms:8.3f} ms {tf:7.1f} TFLOPS", flush=True)
        except Exception as e:  # noqa: BLE001
            res["configs"].append({"suite": suite, "shape": sh.name, "error": f"{type(e).__name__}: {e}"[:300]})
            print(f"  [{variant}] {sh.name:40s} ERROR {type(e).__name__}: {str(e)[:200]}", flush=True)
        del q, k, v
    if variant not in ("cudnn", "flash"):
        res["stats"] = compiled_stats(mod)
    return res


def child(mode, variant, quick, suites):
    try:
        r = check(variant, quick) if mode == "check" else bench(variant, suites)
    except Exception as e:  # noqa: BLE001
        import traceback
        traceback.print_exc()
        r = {"variant": variant, "ok": False, "error": f"{type(e).__name__}: {e}"[-1500:]}
    print("RESULT " + json.dumps(r), flush=True)


def spawn(mode, variant, args, timeout):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", mode, "--variant", variant,
           "--suites", args.suites] + (["--quick"] if args.quick else [])
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True), time.time(), timeout


def collect(p, t0, timeout, label):
    try:
        out, _ = p.communicate(timeout=max(1, timeout - (time.time() - t0)))
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
        out = (out or "") + f"\nTIMEOUT ({label})"
    lines = out.splitlines()
    for l in lines:
        if not l.startswith("RESULT "):
            print(l, flush=True)
    res = [json.loads(l[7:]) for l in lines if l.startswith("RESULT ")]
    return res[-1] if res else {"ok": False, "error": "no result: " + "\n".join(lines[-15:])[-1500:]}


def versions():
    import torch
    import triton
    v = {"torch": torch.__version__, "triton": triton.__version__, "cuda": torch.version.cuda,
         "cudnn": torch.backends.cudnn.version(), "gpu": torch.cuda.get_device_name(0)}
    try:
        v["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version,clocks.max.sm", "--format=csv,noheader"],
                                     capture_output=True, text=True).stdout.strip()
    except Exception:  # noqa: BLE001
        pass
    return v


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--child")
    ap.add_argument("--variant")
    ap.add_argument("--variants", default="fa3,persist,persist_d3")
    ap.add_argument("--suites", default="avo,d64")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--fallback", type=int, default=0)
    ap.add_argument("--check-timeout", type=float, default=200)
    ap.add_argument("--bench-timeout", type=float, default=90)
    args = ap.parse_args()
    if args.child:
        return child(args.child, args.variant, args.quick, args.suites.split(","))
    t_start = time.time()
    out_dir = os.environ.get("OUT", "/tmp")
    report = {"versions": versions(), "checks": {}, "bench": {}}

    def save():
        report["wall_s"] = round(time.time() - t_start, 1)
        with open(os.path.join(out_dir, "gluon_explore.json"), "w") as f:
            json.dump(report, f, indent=1)

    print(json.dumps(report["versions"]), flush=True)
    variants = [v for v in args.variants.split(",") if v]
    procs = {v: spawn("check", v, args, args.check_timeout) for v in variants}
    for v, (p, t0, to) in procs.items():
        report["checks"][v] = collect(p, t0, to, f"check {v}")
        c = report["checks"][v]
        print(f"CHECK {v}: ok={c.get('ok')} max_rel={c.get('max_rel')} det={c.get('deterministic')} "
              f"stats={c.get('stats')} err={str(c.get('error'))[:300]}", flush=True)
        save()
    passed = [v for v in variants if report["checks"][v].get("ok")]
    for v in ["cudnn", "flash"] + (["fallback"] if args.fallback else []) + passed:
        p, t0, to = spawn("bench", v, args, args.bench_timeout)
        report["bench"][v] = collect(p, t0, to, f"bench {v}")
        save()
    # ---- table
    names = [v for v in ["cudnn", "flash"] + (["fallback"] if args.fallback else []) + passed if report["bench"].get(v, {}).get("configs")]
    rows = {}
    for v in names:
        for c in report["bench"][v]["configs"]:
            rows.setdefault(c["shape"], {})[v] = c.get("tflops")
    print("\nTFLOPS (median do_bench); ratio = x cuDNN")
    print(f"{'config':40s} " + " ".join(f"{n:>9s}" for n in names))
    geo = {n: [] for n in names}
    for shape, d in rows.items():
        cells = []
        for n in names:
            t = d.get(n)
            cells.append(f"{t:9.1f}" if t else f"{'-':>9s}")
            if t and d.get("cudnn") and "d64" not in shape.split()[3]:
                geo[n].append(t / d["cudnn"])
        print(f"{shape:40s} " + " ".join(cells))
    summary = {}
    for n in names:
        if geo[n]:
            g = math.exp(sum(math.log(x) for x in geo[n]) / len(geo[n]))
            summary[n] = {"geomean_x_cudnn_d128": g, "min_x_cudnn_d128": min(geo[n])}
    report["summary"] = summary
    save()
    print("\nD=128 (avo) geomean x cuDNN: " + ", ".join(f"{n} {s['geomean_x_cudnn_d128']:.3f} (min {s['min_x_cudnn_d128']:.3f})"
                                                   for n, s in summary.items()))
    print(f"wall {time.time() - t_start:.0f} s")


if __name__ == "__main__":
    main()
