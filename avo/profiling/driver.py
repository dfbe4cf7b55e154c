"""The program ncu runs: one candidate on one suite config (inside the sandbox).

    python -m avo.profiling.driver KERNEL.py "mha b4 s8192 d128 causal bf16" OUT_DIR [PROBLEM.py]

It makes the problem's inputs on the GPU, calls the candidate's entry point
(the problem's SIGNATURE: `attention(q, k, v, causal, sm_scale)` here) twice to compile (and autotune) outside the profiled range, then once between
cudaProfilerStart and cudaProfilerStop (ncu runs with --profile-from-start off,
so only that call's kernels are replayed). Afterwards it collects the compiled
kernels from its own Triton cache (avo.profiling.asm). Its exit status says
whether the profiled call ran; it prints nothing on success.
"""
from __future__ import annotations

import importlib.util
import json
import os
import sys
import traceback
from pathlib import Path

WARMUP_CALLS = 2


def find_shape(problem, config: str):
    for shapes in problem.SUITES.values():
        for shape in shapes:
            if shape.name == config:
                return shape
    raise SystemExit(f"unknown config {config!r}")


def entry_call(problem, module, shape):
    """The candidate's entry on this shape's inputs, as the judge calls it: the problem's
    SIGNATURE, inputs and draw_call (undrawn: vary=False), or attention's make_inputs
    for a problem written before problems declared their call."""
    if all(hasattr(problem, name) for name in ("SIGNATURE", "draw_call", "inputs")):
        import random

        from avo.problem import entry_inputs, entry_name

        drawn = problem.draw_call(shape, random.Random(0), False, 0)
        tensors = problem.inputs(shape, "cuda", 0, drawn)
        fn, args = getattr(module, entry_name(problem)), [tensors[n] for n in entry_inputs(problem)]
        return lambda: fn(*args, **drawn["args"])
    q, k, v = problem.make_inputs(shape, "cuda", seed=0)
    return lambda: module.attention(q, k, v, causal=shape.causal)


def main(kernel: str, config: str, out: str, problem_path: str | None = None) -> int:
    from avo.problem import DEFAULT_PROBLEM, load_problem

    out_dir = Path(out)
    status = {"ran": False}
    try:
        import torch

        problem = load_problem(problem_path or DEFAULT_PROBLEM)
        shape = find_shape(problem, config)
        spec = importlib.util.spec_from_file_location("candidate", kernel)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        call = entry_call(problem, module, shape)
        for _ in range(WARMUP_CALLS):
            call()
        torch.cuda.synchronize()
        torch.cuda.profiler.start()
        try:
            call()
            torch.cuda.synchronize()
        finally:
            torch.cuda.profiler.stop()
        status["ran"] = True
    except BaseException:  # noqa: BLE001 - the parent reads the traceback from stderr
        traceback.print_exc()
    finally:
        try:  # the compiled code is worth showing even when the call failed
            from avo.profiling.asm import collect

            status["asm"] = len(collect(Path(os.environ["TRITON_CACHE_DIR"]), out_dir / "asm"))
        except Exception as e:  # noqa: BLE001
            status["asm_error"] = f"{type(e).__name__}: {e}"[:300]
        (out_dir / "driver.json").write_text(json.dumps(status))
    return 0 if status["ran"] else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
