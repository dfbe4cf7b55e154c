"""The evaluation worker: judges ONE candidate, in a process of its own.

Started by runner.py as `python -m avo.harness.worker` in a fresh temporary
directory with a scrubbed environment; reads its job (JSON) on stdin and writes
one EvalResult (JSON) to the file descriptor the job names. Everything the
candidate prints goes to the log the runner keeps.

Stages, each of which can end the evaluation with a status:
  load       import the candidate (after snapshotting what it must not patch)
  compile    one small call per (dtype, head dim, causal) variant
  check      correctness on the check shapes, several seeds, then the SAME
             buffers refilled with new values and checked again
  suite      correctness once on every timed configuration
  timing     do_bench median over a rotation of inputs larger than L2, with the
             cuDNN and FlashAttention-2 baselines timed in this same process
  recheck    correctness again after timing, on fresh seeds

Every call is made on fresh random inputs (never zeros), after poisoning the
allocator with NaN, and is followed by checks that the output is a new tensor of
the right shape/dtype, finite, within tolerance on every element, that the
inputs are bit-for-bit unchanged, that no library matmul/softmax/attention ran,
and that nothing the harness relies on was patched.
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
import threading
import time
import traceback

import torch
import triton

from avo.harness import guard, timing
from avo.harness.peak import peak_tflops
from avo.problem import load_problem
from avo.records import CaseCheck, ConfigTiming, EvalResult

_perf_counter = time.perf_counter
_write = os.write
# Bound before any candidate runs: a candidate that patches Snapshot.changed
# would otherwise switch off the very check that reports patching (found by
# the adversarial suite).
_snapshot_changed = guard.Snapshot.changed


class Verdict(Exception):
    """Ends the evaluation with a non-ok status."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _load_module(path: str, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class Worker:
    def __init__(self, job: dict):
        self.job = job
        self.device = job["device"]
        self.problem = load_problem(job["problem_path"])
        self.seeds = [int(s) for s in job["seeds"]]
        self.result = EvalResult(status="ok", device=self.device, interpreter=self.device == "cpu",
                                 suite=job["suite"], seeds=self.seeds)
        self.result.env = timing.env_info(self.device)
        self.attention = None
        self.snapshot = None

    # ------------------------------------------------------------------ stages
    def run(self) -> EvalResult:
        t0 = _perf_counter()
        try:
            self.stage("load", self.load)
            self.stage("compile", self.compile)
            self.stage("check", self.check, phase="check")
            if not self.job.get("quick"):
                self.stage("suite", self.check_suite)
                self.stage("timing", self.time_suite)
                self.stage("recheck", self.check, phase="recheck")
        except Verdict as v:
            self.result.status, self.result.message = v.status, v.message
        self.result.wall_s = _perf_counter() - t0
        return self.result

    def stage(self, name: str, fn, **kw):
        log(f"[{name}]")
        try:
            fn(**kw)
        except Verdict:
            raise
        except torch.cuda.OutOfMemoryError as e:
            raise Verdict("crashed", f"{name}: out of GPU memory: {first_line(e)}")
        except MemoryError:
            raise Verdict("crashed", f"{name}: out of host memory")
        except RuntimeError as e:
            # torch's CPU allocator reports an exhausted RLIMIT_AS as a RuntimeError;
            # running out of memory is a crash whatever the stage, not a compile error
            if "can't allocate memory" not in str(e):
                traceback.print_exc()
                raise Verdict("compile_error" if name in ("load", "compile") else "crashed",
                              f"{name}: {type(e).__name__}: {first_line(e)}")
            raise Verdict("crashed", f"{name}: out of host memory ({first_line(e)[-120:]})")
        except BaseException as e:  # the candidate's own errors, SystemExit included
            traceback.print_exc()
            status = "compile_error" if name in ("load", "compile") or "Compil" in type(e).__name__ else "crashed"
            raise Verdict(status, f"{name}: {type(e).__name__}: {first_line(e)}")

    def load(self):
        # Snapshot what the candidate must not patch *before* its code runs.
        self.snapshot = guard.Snapshot(extra_modules=(sys.modules[__name__], timing, guard, self.problem,
                                                      sys.modules["avo.records"], sys.modules["avo.harness.peak"]))
        module = _load_module(self.job["candidate_path"], "candidate")
        self.attention = getattr(module, "attention", None)
        if not callable(self.attention):
            raise Verdict("rejected", "load: the file defines no callable `attention`")
        self.module = module
        self.assert_unpatched("load")

    def compile(self):
        variants = {(s.dtype, s.head_dim, s.causal) for s in self.check_shapes() + self.suite_shapes()}
        t0 = _perf_counter()
        for dtype, head_dim, causal in sorted(variants):
            shape = self.problem.Shape(1, 2, 1, 64, head_dim, causal, dtype)
            q, k, v = self.problem.make_inputs(shape, self.device, self.seeds[0])
            self.call(q, k, v, causal, None)
        self.result.compile_stats = {"compile_s": round(_perf_counter() - t0, 3), **compiled_kernel_stats(self.module)}

    def check(self, phase: str):
        seeds = self.seeds[:2] if phase == "check" else self.seeds[2:4]
        shapes = self.check_shapes()
        if self.job.get("quick"):
            shapes, seeds = shapes[:3], seeds[:1]
        for i, shape in enumerate(shapes):
            for j, seed in enumerate(seeds):
                amplitude = (1.0, 3.0)[j % 2]  # 3.0 sharpens softmax: tests the max-subtraction
                # every other case passes an explicit, non-default sm_scale
                sm_scale = None if (i + j) % 2 == 0 else 0.7 / math.sqrt(shape.head_dim)
                self.check_case(shape, seed, amplitude, sm_scale, phase, refill=True)

    def check_suite(self):
        for shape in self.suite_shapes():
            self.check_case(shape, self.seeds[4], 1.0, None, "suite", refill=False)

    def check_case(self, shape, seed, amplitude, sm_scale, phase, refill):
        q, k, v = self.problem.make_inputs(shape, self.device, seed, amplitude)
        out = self.call(q, k, v, shape.causal, sm_scale)
        self.compare(out, q, k, v, shape, seed, sm_scale, phase)
        if refill:
            # Same buffers, new values: a kernel that reuses results (keyed on
            # addresses, shapes or call count) returns stale numbers here.
            del out
            new_seed = seed ^ 0x5A5A5A5
            self.problem.refill_(q, k, v, new_seed, amplitude)
            out = self.call(q, k, v, shape.causal, sm_scale)
            self.compare(out, q, k, v, shape, new_seed, sm_scale, phase + "/refill")

    # ------------------------------------------------------------ one call
    def call(self, q, k, v, causal, sm_scale):
        before = [t.clone() for t in (q, k, v)]
        poison_allocator(q)
        watch = guard.make_library_op_watch(io_elements=2 * q.numel() + k.numel() + v.numel())
        threads = set(threading.enumerate())
        with watch:
            out = self.attention(q, k, v, causal=causal, sm_scale=sm_scale)
        if self.device == "cuda":
            # only the current stream: work left running elsewhere is not done yet
            torch.cuda.current_stream().synchronize()
        # A thread still running after the call may still be writing the output (a
        # host-side "other stream"; found by the adversarial suite): on the CPU it
        # passes the check if it wins the race, and makes timing look free.
        left = [th.name for th in threading.enumerate() if th not in threads and th.is_alive()]
        if left:
            raise Verdict("rejected", f"the candidate left {len(left)} thread(s) running after returning "
                                      f"({left[0]}): work must be finished when `attention` returns")
        if watch.forbidden:
            raise Verdict("rejected", f"library compute in the candidate: aten::{watch.forbidden[0]} "
                                      f"({len(watch.forbidden)} forbidden op calls)")
        if watch.over_budget:
            raise Verdict("rejected", f"host-side torch compute: torch ops wrote {watch.compute_elements} elements "
                                      f"(budget {watch.budget}; largest aten::{watch.biggest[0]}, "
                                      f"{watch.biggest[1]}): the work must be done in Triton kernels")
        self.assert_unpatched("call")
        if not isinstance(out, torch.Tensor):
            raise Verdict("incorrect", f"attention returned {type(out).__name__}, not a Tensor")
        if tuple(out.shape) != tuple(q.shape) or out.dtype != q.dtype or out.device != q.device:
            raise Verdict("incorrect", f"output is {tuple(out.shape)} {out.dtype} on {out.device}; "
                                       f"expected {tuple(q.shape)} {q.dtype} on {q.device}")
        in_ptrs = {t.untyped_storage().data_ptr() for t in (q, k, v)}
        if out.untyped_storage().data_ptr() in in_ptrs:
            raise Verdict("rejected", "the output aliases an input buffer (writes outside its output)")
        for name, t, b in zip("qkv", (q, k, v), before):
            if not torch.equal(t, b):
                raise Verdict("rejected", f"the candidate modified its input `{name}`")
        return out

    def compare(self, out, q, k, v, shape, seed, sm_scale, phase):
        tol = self.problem.TOLERANCES[shape.dtype]
        ref = self.problem.reference(q, k, v, shape.causal, sm_scale)
        o = out.to(ref.dtype)
        finite = torch.isfinite(o)
        if not bool(finite.all()):
            bad = int((~finite).sum())
            self.record(shape, seed, phase, math.inf, math.inf, False, f"{bad} non-finite elements")
            raise Verdict("incorrect", f"{shape.name} ({phase}): {bad} NaN/Inf elements in the output")
        diff = (o - ref).abs()
        max_abs = float(diff.max())
        rel = float(diff.norm() / ref.norm().clamp_min(1e-30))
        n_bad = int((diff > tol["atol"] + tol["rtol"] * ref.abs()).sum())
        ok = n_bad == 0 and rel <= tol["rel"]
        reason = "" if ok else f"{n_bad} of {diff.numel()} elements out of tolerance, rel err {rel:.2e}"
        self.record(shape, seed, phase, max_abs, rel, ok, reason)
        if not ok:
            raise Verdict("incorrect", f"{shape.name} ({phase}, seed {seed}): {reason}, max abs err {max_abs:.2e}")

    def record(self, shape, seed, phase, max_abs, rel, ok, reason):
        self.result.checks.append(CaseCheck(shape=shape.name, dtype=shape.dtype, seed=seed, phase=phase,
                                            max_abs_err=max_abs, rel_err=rel, passed=ok, reason=reason))

    # ------------------------------------------------------------- timing
    def time_suite(self):
        gpu = self.result.env.get("gpu", "")
        peak = peak_tflops(gpu, interpreter=self.device == "cpu")
        baselines = {}
        if self.device == "cuda":
            baselines = {"cudnn": timing.sdpa_baseline("CUDNN_ATTENTION"),
                         "fa2": timing.sdpa_baseline("FLASH_ATTENTION")}
        errors, notes = {}, {}
        l2 = int(self.result.env.get("l2_bytes", 50 * 2**20))
        for n, shape in enumerate(self.suite_shapes()):
            elt = 2
            set_bytes = elt * (2 * q_numel(shape) + 2 * kv_numel(shape))
            sets = timing.rotation(lambda i: self.problem.make_inputs(shape, self.device, self.seeds[5] + i),
                                   total_bytes_wanted=2 * l2, set_bytes=set_bytes,
                                   max_sets=2 if self.device == "cuda" else 1)
            cand = lambda q, k, v: self.attention(q, k, v, causal=shape.causal)
            # CPU: fresh values before every timed call, so an output cache keyed on
            # a fingerprint of the inputs' content cannot make timing free (found by
            # the adversarial suite). On the GPU do_bench owns the loop; there the
            # fresh-input timing below catches the same cheat.
            refresh = None if self.device == "cuda" else (
                lambda s, j: self.problem.refill_(*s, self.seeds[5] + 7919 * (j + 1)))
            ms = timing.median_ms(cand, sets, self.device, refresh=refresh)
            tflops = shape.flops() / (ms * 1e-3) / 1e12
            row = ConfigTiming(config=shape.name, ms=ms, tflops=tflops)
            if self.device == "cuda":
                row.wall_ms = timing.wall_ms(cand, sets)
                if row.wall_ms > 0.2 and ms < 0.5 * row.wall_ms:
                    raise Verdict("rejected", f"{shape.name}: event time {ms:.3f} ms is far below the host "
                                              f"clock's {row.wall_ms:.3f} ms per call: work escapes the timed stream")
                # do_bench repeats its inputs: compare with calls on never-seen inputs
                fresh = timing.fresh_ms(cand, lambda i: self.problem.make_inputs(
                    shape, self.device, self.seeds[5] + 1009 * (i + 1)))
                if ms < 0.6 * fresh:
                    raise Verdict("rejected", f"{shape.name}: {ms:.3f} ms per call on repeated inputs but "
                                              f"{fresh:.3f} ms on fresh ones: results are reused, not computed")
                for name, base in baselines.items():
                    try:
                        bsets = baseline_sets(base, sets, shape, notes, name)
                        bms = timing.median_ms(lambda q, k, v: base(q, k, v, shape.causal), bsets, "cuda")
                        setattr(row, f"{name}_tflops", shape.flops() / (bms * 1e-3) / 1e12)
                    except Exception as e:  # a baseline missing on this build is reported, not fatal
                        errors[f"{name} {shape.name}"] = first_line(e)
            if tflops > peak:
                raise Verdict("rejected", f"{shape.name}: {tflops:.0f} TFLOP/s exceeds the physical peak "
                                          f"{peak:.0f} of {gpu}")
            self.result.timings.append(row)
            self.assert_unpatched("timing")
            log(f"  {shape.name}: {ms:.3f} ms {tflops:.1f} TFLOP/s")
            del sets
        if errors:
            self.result.env["baseline_errors"] = errors
        if notes:
            self.result.env["baseline_notes"] = notes

    # ------------------------------------------------------------- helpers
    def check_shapes(self):
        return self.problem.check_shapes(self.device)

    def suite_shapes(self):
        shapes = self.problem.SUITES[self.job["suite"]]
        wanted = self.job.get("configs")
        return [s for s in shapes if not wanted or s.name in wanted]

    def assert_unpatched(self, where: str):
        changed = _snapshot_changed(self.snapshot) if self.snapshot else []
        if changed:
            raise Verdict("rejected", f"{where}: the candidate patched {', '.join(changed[:3])}")


def baseline_sets(base, sets, shape, notes: dict, name: str):
    """The candidate's own input sets, or — for GQA on a backend without native
    GQA support — the same sets with K/V expanded to the query heads, built here
    outside the timed region (the baseline then reads more K/V bytes; noted)."""
    q, k, v = sets[0]
    try:
        base(q, k, v, shape.causal)
        return sets
    except RuntimeError:
        if q.shape[1] == k.shape[1]:
            raise
    group = q.shape[1] // k.shape[1]
    notes[name] = "GQA via K/V expanded to the query heads (no native GQA in this backend)"
    return [(q, k.repeat_interleave(group, 1), v.repeat_interleave(group, 1)) for q, k, v in sets]


def q_numel(shape) -> int:
    return shape.batch * shape.heads_q * shape.seqlen * shape.head_dim


def kv_numel(shape) -> int:
    return shape.batch * shape.heads_kv * shape.seqlen * shape.head_dim


def poison_allocator(like) -> None:
    """Fill the caching allocator's free memory with NaN so that an output buffer
    the candidate allocates and leaves partly unwritten reads as NaN, not stale
    correct values from an earlier call. (On the CPU large allocations come fresh
    from the OS as zeros, which the element-wise comparison also rejects.)"""
    if like.device.type != "cuda":
        return
    torch.empty(like.shape, dtype=like.dtype, device=like.device).fill_(float("nan"))
    torch.empty(like.numel() * 4, dtype=like.dtype, device=like.device).fill_(float("nan"))


def compiled_kernel_stats(module) -> dict:
    """Registers, spills and shared memory of the candidate's compiled kernels,
    where this Triton version exposes them (best effort; empty on the CPU)."""
    stats = {}
    for name, obj in vars(module).items():
        fn = obj  # autotune/heuristics wrappers keep the JITFunction in .fn
        while not hasattr(fn, "device_caches") and hasattr(fn, "fn"):
            fn = fn.fn
        caches = getattr(fn, "device_caches", None)
        if not isinstance(caches, dict):
            continue
        for entry in caches.values():
            kernels = entry[0] if isinstance(entry, tuple) else entry
            if not isinstance(kernels, dict):
                continue
            for ck in kernels.values():
                md = getattr(ck, "metadata", None)
                regs, spills = getattr(ck, "n_regs", None), getattr(ck, "n_spills", None)
                if regs is None:
                    continue
                s = stats.setdefault(name, {"registers": 0, "spills": 0, "shared_bytes": 0, "variants": 0})
                s["registers"] = max(s["registers"], int(regs))
                s["spills"] = max(s["spills"], int(spills or 0))
                s["shared_bytes"] = max(s["shared_bytes"], int(getattr(md, "shared", 0) or 0))
                s["variants"] += 1
    return {"kernels": stats} if stats else {}


def first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else repr(e))[:300]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def main() -> int:
    job = json.loads(sys.stdin.read())
    fd = int(job["result_fd"])
    try:
        worker = Worker(job)
        result = worker.run()
        # Last word, outside every method the candidate could have patched
        # (Worker.assert_unpatched included): anything changed voids an ok.
        changed = _snapshot_changed(worker.snapshot) if worker.snapshot else []
        if changed and result.status == "ok":
            result.status, result.message = "rejected", f"the candidate patched {', '.join(changed[:3])}"
    except Verdict as v:
        result = EvalResult(status=v.status, message=v.message, device=job.get("device", "cpu"))
    except BaseException as e:  # the worker's own failure: still report, as data
        traceback.print_exc()
        result = EvalResult(status="crashed", message=f"harness worker: {type(e).__name__}: {first_line(e)}",
                            device=job.get("device", "cpu"))
    payload = json.dumps(result.to_dict()).encode()
    while payload:
        n = _write(fd, payload)
        payload = payload[n:]
    os.close(fd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
