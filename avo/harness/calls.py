"""Call batches: the judge's inputs, late-bound changes, snapshots and verdicts.

Every call the runner makes — checked or timed, the runner cannot tell — gets
its own fresh inputs and its own output buffer in the judge's arena, and is
verified afterwards:

- inputs are drawn from a seed only the judge knows, so the judge can redraw
  them to check they were not modified and to compute the reference;
- after the judge's clock starts, a few key rows of every call are scaled by 8
  (exact in floating point; these keys then dominate the softmax of many
  queries): an output computed before the clock started, by anything that
  watched the buffers, is wrong;
- outputs are poisoned with NaN; right after the runner says `done`, still
  inside the clock, the judge gathers a random sample of output rows of every
  call (the snapshot). Rows not yet written (work left on another stream or
  thread) show as NaN there; rows written later differ from the final buffer;
- the snapshot is compared with a reference computed for just those rows, so
  every timed call is verified; `full=True` compares every element as well.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import torch

from avo.harness.arena import align

KEY_SCALE = 8.0  # a power of two: scaling is exact
LATE_KEYS = 2  # key positions rescaled per call, after the clock starts
SAMPLED_ROWS = 24  # output rows per call compared inside every batch


class Verdict(Exception):
    """Ends the evaluation with a non-ok status."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status, self.message = status, message


@dataclass
class Call:
    seed: int
    amplitude: float
    sm_scale: float | None
    offsets: dict  # q, k, v, out -> byte offset in the arena
    late_keys: list[int]
    rows: torch.Tensor  # [R, 3] (batch, query head, position)


@dataclass
class Batch:
    shape: object  # problem.Shape
    calls: list[Call]
    phase: str
    full: bool  # compare every element (small shapes, checks after timing)
    late_index: torch.Tensor | None = None
    late_values: torch.Tensor | None = None
    snap_index: torch.Tensor | None = None
    snapshot: torch.Tensor | None = None
    meta: dict = field(default_factory=dict)

    def messages(self) -> list[dict]:
        s, dt = self.shape, self.shape.dtype
        dims = {"q": [s.batch, s.heads_q, s.seqlen, s.head_dim], "k": [s.batch, s.heads_kv, s.seqlen, s.head_dim]}
        dims["v"], dims["out"] = dims["k"], dims["q"]
        return [{**{name: [c.offsets[name], dims[name], dt] for name in dims},
                 "causal": s.causal, "sm_scale": c.sm_scale} for c in self.calls]


def call_bytes(shape) -> int:
    q = shape.batch * shape.heads_q * shape.seqlen * shape.head_dim * 2
    kv = shape.batch * shape.heads_kv * shape.seqlen * shape.head_dim * 2
    return 2 * align(q) + 2 * align(kv)


def plan(shape, n: int, rng: random.Random, phase: str, full: bool, vary_scale: bool) -> Batch:
    """n calls of one shape laid out from the arena's start; seeds, sm_scale,
    late keys and sampled rows drawn from the judge's own generator."""
    calls, offset = [], 0
    for j in range(n):
        offsets = {}
        for name, heads in (("q", shape.heads_q), ("k", shape.heads_kv), ("v", shape.heads_kv),
                            ("out", shape.heads_q)):
            offsets[name] = offset
            offset += align(shape.batch * heads * shape.seqlen * shape.head_dim * 2)
        amplitude = rng.choice((1.0, 3.0)) if vary_scale else 1.0
        sm_scale = rng.choice((None, 0.7 / math.sqrt(shape.head_dim))) if vary_scale else None
        late = sorted(rng.sample(range(shape.seqlen), min(LATE_KEYS, shape.seqlen)))
        # distinct rows (a repeated row would count its bad elements twice in a message)
        n_rows = shape.batch * shape.heads_q * shape.seqlen
        picks = rng.sample(range(n_rows), min(SAMPLED_ROWS, n_rows))
        rows = torch.tensor([[r // (shape.heads_q * shape.seqlen), (r // shape.seqlen) % shape.heads_q,
                              r % shape.seqlen] for r in picks], dtype=torch.long)
        calls.append(Call(rng.getrandbits(31), amplitude, sm_scale, offsets, late, rows))
    return Batch(shape, calls, phase, full)


# --------------------------------------------------------------- staging
def stage(batch: Batch, arena, problem, device: str) -> None:
    """Before the clock: fresh inputs, NaN outputs, and the late-bound values and
    snapshot indices prepared (in the judge's memory, out of the runner's sight)."""
    dt = getattr(torch, batch.shape.dtype)
    flat = arena.flat.view(dt)
    late_idx, late_val, snap_idx = [], [], []
    for c in batch.calls:
        q, k, v = (view(arena, batch.shape, c, n) for n in "qkv")
        problem.refill_(q, k, v, c.seed, c.amplitude)
        view(arena, batch.shape, c, "out").fill_(float("nan"))
        idx = _key_rows_index(batch.shape, c, device)
        late_idx.append(idx)
        late_val.append(flat[idx] * KEY_SCALE)
        snap_idx.append(_out_rows_index(batch.shape, c, device))
    batch.late_index, batch.late_values = torch.cat(late_idx), torch.cat(late_val)
    batch.snap_index = torch.cat(snap_idx)
    _sync(device)


def late_bind(batch: Batch, arena, device: str) -> None:
    """Inside the clock, before the runner is told to start."""
    arena.flat.view(getattr(torch, batch.shape.dtype)).index_put_((batch.late_index,), batch.late_values)
    _sync(device)


def take_snapshot(batch: Batch, arena, device: str) -> None:
    """Inside the clock, right after `done`: the sampled rows as they are now."""
    batch.snapshot = arena.flat.view(getattr(torch, batch.shape.dtype))[batch.snap_index].clone()
    _sync(device)


# ------------------------------------------------------------------ verify
def verify(batch: Batch, arena, problem, device: str, record) -> None:
    """Raise Verdict unless every call's inputs are untouched and its output right.
    record(shape, seed, phase, max_abs, rel, ok, reason) keeps one line per batch."""
    shape, tol = batch.shape, problem.TOLERANCES[batch.shape.dtype]
    d, start = shape.head_dim, 0
    worst_abs, worst_rel = 0.0, 0.0
    for j, c in enumerate(batch.calls):
        q, k, v = problem.make_inputs(shape, device, c.seed, c.amplitude)
        k[:, :, c.late_keys, :] *= KEY_SCALE
        for name, expected in zip("qkv", (q, k, v)):
            if not torch.equal(view(arena, shape, c, name), expected):
                raise Verdict("rejected", f"{shape.name}: the candidate modified its input `{name}`")
        out = view(arena, shape, c, "out")
        n = c.rows.shape[0]  # this call's sampled rows, in the order the snapshot gathered them
        snap, start = batch.snapshot[start:start + n * d].view(n, d), start + n * d
        rows = c.rows.to(out.device)
        final = out[rows[:, 0], rows[:, 1], rows[:, 2]]
        where = f"{shape.name} ({batch.phase}, call {j + 1} of {len(batch.calls)})"
        if not bool(torch.isfinite(snap.float()).all()) and bool(torch.isfinite(final.float()).all()):
            raise Verdict("rejected", f"{where}: output rows were still unwritten when the runner said done: "
                                      "work must finish inside the timed call")
        if not torch.equal(snap.view(torch.int16), final.view(torch.int16)):  # bits: NaN poison equals itself
            raise Verdict("rejected", f"{where}: the output changed after the runner said done")
        ref = problem.reference_rows(q, k, v, shape.causal, c.sm_scale, rows)
        max_abs, rel, reason = compare(snap, ref, tol)
        worst_abs, worst_rel = max(worst_abs, max_abs), max(worst_rel, rel)
        if not reason and batch.full:
            max_abs, rel, reason = compare(out, problem.reference(q, k, v, shape.causal, c.sm_scale), tol)
            worst_abs, worst_rel = max(worst_abs, max_abs), max(worst_rel, rel)
        if reason:
            record(shape, c.seed, batch.phase, max_abs, rel, False, reason)
            raise Verdict("incorrect", f"{where}, seed {c.seed}: {reason}")
    record(shape, batch.calls[0].seed, batch.phase, worst_abs, worst_rel, True, "")


def compare(out, ref, tol) -> tuple[float, float, str]:
    o = out.to(ref.dtype)
    finite = torch.isfinite(o)
    if not bool(finite.all()):
        return math.inf, math.inf, f"{int((~finite).sum())} NaN/Inf elements in the output"
    diff = (o - ref).abs()
    max_abs = float(diff.max()) if diff.numel() else 0.0
    rel = float(diff.norm() / ref.norm().clamp_min(1e-30))
    n_bad = int((diff > tol["atol"] + tol["rtol"] * ref.abs()).sum())
    if n_bad or rel > tol["rel"]:
        return max_abs, rel, f"{n_bad} of {diff.numel()} elements out of tolerance, rel err {rel:.2e}"
    return max_abs, rel, ""


# ------------------------------------------------------------------ helpers
def view(arena, shape, call: Call, name: str):
    heads = shape.heads_q if name in ("q", "out") else shape.heads_kv
    return arena.view(call.offsets[name], (shape.batch, heads, shape.seqlen, shape.head_dim),
                      getattr(torch, shape.dtype))


def _key_rows_index(shape, c: Call, device: str) -> torch.Tensor:
    b = torch.arange(shape.batch, device=device)[:, None, None, None]
    h = torch.arange(shape.heads_kv, device=device)[None, :, None, None]
    p = torch.tensor(c.late_keys, device=device)[None, None, :, None]
    d = torch.arange(shape.head_dim, device=device)[None, None, None, :]
    linear = ((b * shape.heads_kv + h) * shape.seqlen + p) * shape.head_dim + d
    return (c.offsets["k"] // 2 + linear).reshape(-1)


def _out_rows_index(shape, c: Call, device: str) -> torch.Tensor:
    r = c.rows.to(device)
    row = (r[:, 0] * shape.heads_q + r[:, 1]) * shape.seqlen + r[:, 2]
    linear = row[:, None] * shape.head_dim + torch.arange(shape.head_dim, device=device)[None, :]
    return (c.offsets["out"] // 2 + linear).reshape(-1)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()
