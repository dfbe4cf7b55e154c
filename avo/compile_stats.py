"""Compiler stats of a candidate for Hopper, without a GPU: registers, spills, shared memory.

The candidate's `attention` is called on meta tensors (no data, no device) in a
child process, with Triton's launcher replaced by a recorder: every kernel
launch is captured with its arguments instead of running. Each captured launch
is compiled ahead of time for sm_90a (`triton.compile` with GPUTarget("cuda",
90, 32)); the bundled ptxas with -v reports registers and spills; Triton's
metadata gives shared memory. Nothing here needs a GPU.

Best effort by design: a kernel that needs a real device to launch, a Triton
version without these internals, or a missing ptxas gives a message, never an
exception. The candidate's code runs only in the child, after the harness's
static checks: in the sandbox (avo.harness.sandbox: no network, read-only file
system but for its work directory, uid 65534 where the platform allows), with a
scrubbed environment and a timeout.

    python -m avo.compile_stats kernel.py     # prints the JSON record
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

TIMEOUT_S = 180.0
# Shapes the candidate is launched for: the suite's main configuration, both masks.
LAUNCHES = [dict(batch=8, heads_q=16, heads_kv=16, seqlen=4096, head_dim=128, causal=c) for c in (False, True)]


def compiler_stats(source: str, timeout_s: float = TIMEOUT_S) -> dict:
    """{"kernels": [{name, registers, spill_stores, spill_loads, shared_bytes, options...}]}
    or {"error": "one line"}."""
    from avo.harness import sandbox
    from avo.harness.static_checks import SourceError, check_source

    try:
        violations = check_source(source)
    except SourceError as e:
        return {"error": f"not compiled: {e}"}
    if violations:
        return {"error": f"not compiled: the harness would reject it ({violations[0]})"}
    with tempfile.TemporaryDirectory(prefix="avo-stats-") as work:
        path = Path(work) / "candidate.py"
        path.write_text(source)
        env = {k: v for k, v in os.environ.items()
               if k in ("PATH", "LANG", "TRITON_CACHE_DIR", "TRITON_PTXAS_PATH", "CUDA_HOME")}
        env.update(HOME=work, TRITON_INTERPRET="0", TRITON_DEFAULT_FP_FUSION="1",
                   PYTHONPATH=str(Path(__file__).resolve().parents[1]))
        argv = sandbox.detect().wrap([sys.executable, "-s", "-m", "avo.compile_stats", str(path)], workdir=Path(work))
        proc = sandbox.spawn(argv, env=env, cwd=Path(work), stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            sandbox.kill_tree(proc)
            proc.communicate()
            return {"error": f"compiler stats timed out after {timeout_s:.0f} s"}
        sandbox.kill_tree(proc)   # anything the candidate left running in the background
    stdout, stderr = out.decode(errors="replace"), err.decode(errors="replace")
    lines = [ln for ln in stdout.splitlines() if ln.startswith("{")]
    if not lines:
        tail = (stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"compiler stats failed: {tail[:300]}"}
    return json.loads(lines[-1])


def compiler_stats_text(source: str) -> str:
    """The stats as the agent reads them."""
    stats = compiler_stats(source)
    if "error" in stats:
        return f"compiler stats unavailable: {stats['error']}"
    rows = ["Compiled for sm_90a (H100) ahead of time; 255 registers/thread is the hardware limit, "
            "228 KiB the shared memory per SM."]
    for k in stats["kernels"]:
        rows.append(f"{k['name']} [{k['launch']}; num_warps={k.get('num_warps')}, num_stages={k.get('num_stages')}]"
                    f": {k.get('registers', '?')} registers/thread, spills {k.get('spill_stores', '?')} B stored / "
                    f"{k.get('spill_loads', '?')} B loaded, shared memory {k.get('shared_bytes', '?')} B"
                    + (f" — {k['error']}" if k.get("error") else ""))
    return "\n".join(rows)


# ------------------------------------------------------------------ child side
def _child(path: str) -> dict:
    import importlib.util

    import torch
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from triton.runtime.jit import JITFunction

    launches: list[tuple] = []

    def record(self, *args, grid, warmup, **kwargs):  # stands in for JITFunction.run
        launches.append((self, args, kwargs, current))
        return None

    JITFunction.run = record
    spec = importlib.util.spec_from_file_location("candidate", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    current = ""
    for shape in LAUNCHES:
        current = ("causal" if shape["causal"] else "non-causal") + f" S={shape['seqlen']} D={shape['head_dim']}"
        q = torch.empty(shape["batch"], shape["heads_q"], shape["seqlen"], shape["head_dim"],
                        dtype=torch.bfloat16, device="meta")
        kv = torch.empty(shape["batch"], shape["heads_kv"], shape["seqlen"], shape["head_dim"],
                         dtype=torch.bfloat16, device="meta")
        try:
            module.attention(q, kv, kv.clone(), causal=shape["causal"])
        except Exception:  # noqa: BLE001 - launches recorded before the failure still count
            pass
    if not launches:
        return {"error": "no Triton kernel launch was recorded (does `attention` need a real device?)"}
    dtypes = {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32", torch.int32: "i32",
              torch.int64: "i64", torch.int8: "i8", torch.uint8: "u8", torch.bool: "i1"}
    ptxas = _ptxas()
    out, seen = [], set()
    for fn, args, kwargs, launch in launches:
        names = [p.name for p in fn.params]
        bound = dict(zip(names, args)) | {k: v for k, v in kwargs.items() if k in names}
        options = {k: v for k, v in kwargs.items() if k not in names and k in ("num_warps", "num_stages", "num_ctas", "maxnreg")}
        signature, constexprs = {}, {}
        for i, p in enumerate(fn.params):
            v = bound.get(p.name, p.default if hasattr(p, "default") else None)
            if p.is_constexpr or v is None or isinstance(v, str):
                signature[p.name] = "constexpr"
                constexprs[(i,)] = v
            elif isinstance(v, torch.Tensor):
                signature[p.name] = "*" + dtypes.get(v.dtype, "fp32")
            elif isinstance(v, bool):
                signature[p.name] = "i1"
            elif isinstance(v, int):
                signature[p.name] = "i32" if -2**31 <= v < 2**31 else "i64"
            elif isinstance(v, float):
                signature[p.name] = "fp32"
            else:
                signature[p.name] = "constexpr"
                constexprs[(i,)] = v
        key = (fn.__name__, tuple(sorted(signature.items())), repr(sorted(constexprs.items())), repr(options))
        if key in seen:
            continue
        seen.add(key)
        row = {"name": fn.__name__, "launch": launch, **options}
        try:
            kernel = triton.compile(ASTSource(fn, signature, constexprs=constexprs),
                                    target=GPUTarget("cuda", 90, 32), options=options)
            row["shared_bytes"] = int(getattr(kernel.metadata, "shared", 0) or 0)
            row.update(_ptxas_stats(ptxas, kernel.asm["ptx"]))
        except Exception as e:  # noqa: BLE001
            row["error"] = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:200] if str(e).strip() else ''}"
        out.append(row)
    return {"kernels": out}


def _ptxas():
    from triton.backends.nvidia.compiler import get_ptxas

    return get_ptxas(90).path


def _ptxas_stats(ptxas: str, ptx: str) -> dict:
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "k.ptx"
        src.write_text(ptx)
        proc = subprocess.run([ptxas, "-v", "--gpu-name=sm_90a", str(src), "-o", str(Path(d) / "k.cubin")],
                              capture_output=True, text=True, timeout=120)
    text = proc.stdout + proc.stderr
    stats = {}
    if m := re.search(r"Used (\d+) registers", text):
        stats["registers"] = int(m.group(1))
    if m := re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", text):
        stats["spill_stores"], stats["spill_loads"] = int(m.group(1)), int(m.group(2))
    if proc.returncode != 0:
        stats["error"] = f"ptxas failed: {text.strip().splitlines()[-1][:200] if text.strip() else proc.returncode}"
    return stats


if __name__ == "__main__":
    try:
        result = _child(sys.argv[1])
    except Exception as e:  # noqa: BLE001 - one line back to the parent
        result = {"error": f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300] if str(e).strip() else ''}"}
    print(json.dumps(result), flush=True)
