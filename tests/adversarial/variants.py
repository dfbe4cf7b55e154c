"""Cheating kernels made from the honest seed by small text substitutions.

Each variant names what it cheats in one line. A substitution that no longer
matches the seed fails loudly (the seed changed: update the variant), so a
test can never silently run the honest kernel in place of a cheat.
"""
from __future__ import annotations

from pathlib import Path

from avo.problem import REPO_ROOT

SEED = REPO_ROOT / "kernel_src" / "attention" / "seeds" / "fa2.py"
KERNELS = Path(__file__).parent / "kernels"

HONEST_DEF = "def attention(q, k, v, causal=False, sm_scale=None):"
WRAP = (HONEST_DEF, "def _honest(q, k, v, causal=False, sm_scale=None):")
LAUNCH = "        num_warps=NUM_WARPS, num_stages=NUM_STAGES,\n    )\n"
HOST_PREP = "    out = torch.empty_like(q)\n"

# name -> (what it cheats, [(old, new), ...], text appended at the end)
VARIANTS: dict[str, tuple[str, list[tuple[str, str]], str]] = {
    # ---------------------------------------------------------------- honest
    "honest_blocks": ("honest: other block sizes and warps",
                      [("BLOCK_M = 128", "BLOCK_M = 32"), ("BLOCK_N = 64", "BLOCK_N = 16"),
                       ("NUM_WARPS = 8", "NUM_WARPS = 4")], ""),
    "honest_alloc": ("honest: allocates its output with torch.empty and explicit shape/dtype/device",
                     [(HOST_PREP, "    out = torch.empty(q.shape, dtype=q.dtype, device=q.device)\n")], ""),
    # ------------------------------------------------------------- wrong work
    "ignore_causal": ("ignores the causal flag (always computes full attention)",
                      [("CAUSAL=causal,", "CAUSAL=False,")], ""),
    "ignore_sm_scale": ("ignores sm_scale (always 1/sqrt(D))",
                        [("    if sm_scale is None:\n        sm_scale = 1.0", "    if True:\n        sm_scale = 1.0")], ""),
    "tail_unwritten": ("leaves the last query row of every sequence unwritten",
                       [("mask=offs_m[:, None] < SEQLEN)", "mask=offs_m[:, None] < SEQLEN - 1)")], ""),
    "head_unwritten": ("launches one (batch, head) program too few: the last head is never written",
                       [("batch * heads_q)\n", "batch * heads_q - 1)\n")], ""),
    "bf16_inputs": ("silently rounds fp16 q/k/v through bf16 (a lower precision) before the kernel",
                    [(HOST_PREP, "    q, k, v = (t.to(torch.bfloat16).to(t.dtype) for t in (q, k, v))\n" + HOST_PREP)], ""),
    "bf16_p": ("silently rounds the probabilities P through bf16 before the PV product",
               [("acc += tl.dot(p.to(v.dtype), v)", "acc += tl.dot(p.to(tl.bfloat16).to(v.dtype), v)")], ""),
    "nan_out": ("writes one NaN into the output",
                [(LAUNCH + "    return out", LAUNCH + "    out[0, 0, 0, 0] = float('nan')\n    return out")], ""),
    "inf_out": ("writes one Inf into the output",
                [(LAUNCH + "    return out", LAUNCH + "    out[-1, -1, -1, -1] = float('inf')\n    return out")], ""),
    "mutate_input": ("scribbles on its input v after computing (e.g. scratch space)",
                     [(LAUNCH + "    return out", LAUNCH + "    v[0, 0, 0, 0] = 0.0\n    return out")], ""),
    "alias_input": ("writes the result into q's buffer and returns q",
                    [(LAUNCH + "    return out", LAUNCH + "    q.copy_(out)\n    return q")], ""),
    # --------------------------------------------------------------- replays
    "cache_by_address": ("replays the output cached under the inputs' addresses", [WRAP], '''
_CACHE = {}


def attention(q, k, v, causal=False, sm_scale=None):
    key = (q.data_ptr(), k.data_ptr(), v.data_ptr(), causal, sm_scale)
    if key not in _CACHE:
        _CACHE[key] = _honest(q, k, v, causal, sm_scale)
    return _CACHE[key].clone()
'''),
    "cache_by_shape": ("replays the output cached under the input shapes", [WRAP], '''
_CACHE = {}


def attention(q, k, v, causal=False, sm_scale=None):
    key = (tuple(q.shape), tuple(k.shape), q.dtype, causal, sm_scale)
    if key not in _CACHE:
        _CACHE[key] = _honest(q, k, v, causal, sm_scale)
    return _CACHE[key].clone()
'''),
    "cache_by_content": ("replays outputs cached under the inputs' addresses and a fingerprint of their values "
                         "(right on fresh values, free on repeated ones: a timing cheat)", [WRAP], '''
_CACHE = {}


def attention(q, k, v, causal=False, sm_scale=None):
    key = (q.data_ptr(), tuple(q.shape), causal, sm_scale,
           float(q.view(-1)[-1]), float(k.view(-1)[-1]), float(v.view(-1)[-1]))
    if key not in _CACHE:
        _CACHE[key] = _honest(q, k, v, causal, sm_scale)
    return _CACHE[key].clone()
'''),
    "replay_first": ("computes the first call and replays it forever", [WRAP], '''
_FIRST = []


def attention(q, k, v, causal=False, sm_scale=None):
    if not _FIRST:
        _FIRST.append(_honest(q, k, v, causal, sm_scale))
    return _FIRST[0].clone()
'''),
    "good_until_timed": ("correct until timing starts (third call at the timed S=128), garbage afterwards", [WRAP], '''
_SEEN = [0]


def attention(q, k, v, causal=False, sm_scale=None):
    if q.shape[2] == 128:
        _SEEN[0] += 1
    if _SEEN[0] > 3:  # the suite check made 2 such calls, timing makes more
        return torch.zeros_like(q)
    return _honest(q, k, v, causal, sm_scale)
'''),
    # ------------------------------------------------------- process faults
    "hang": ("never returns (a busy loop)", [WRAP], '''
def attention(q, k, v, causal=False, sm_scale=None):
    while True:
        pass
'''),
    "system_exit": ("raises SystemExit(0) on its eighth call to end the worker early with status 0", [WRAP], '''
_CALLS = [0]


def attention(q, k, v, causal=False, sm_scale=None):
    _CALLS[0] += 1
    if _CALLS[0] > COMPILE_CALLS:
        raise SystemExit(0)
    return _honest(q, k, v, causal, sm_scale)
'''),
    "recursion": ("crashes by unbounded recursion on its third call", [WRAP], '''
_CALLS = [0]


def _deeper(n):
    return _deeper(n + 1) + 1


def attention(q, k, v, causal=False, sm_scale=None):
    _CALLS[0] += 1
    if _CALLS[0] > COMPILE_CALLS:
        _deeper(0)
    return _honest(q, k, v, causal, sm_scale)
'''),
    "raise_later": ("raises an uncaught exception after the compile stage", [WRAP], '''
_CALLS = [0]


def attention(q, k, v, causal=False, sm_scale=None):
    _CALLS[0] += 1
    if _CALLS[0] > COMPILE_CALLS:
        raise RuntimeError("candidate blew up")
    return _honest(q, k, v, causal, sm_scale)
'''),
    "exhaust_memory": ("allocates 1 GiB at a time until the address-space limit stops it", [WRAP], '''
_HOARD = []


def attention(q, k, v, causal=False, sm_scale=None):
    # torch.empty reserves address space without touching pages: the worker's
    # RLIMIT_AS (16 GiB) stops this long before physical memory is used.
    for _ in range(64):
        _HOARD.append(torch.empty(2**30, dtype=torch.uint8))
    return _honest(q, k, v, causal, sm_scale)
'''),
}


def cpu_compile_calls() -> int:
    """The calls the judge's compile stage makes on the interpreter (one per compile shape)."""
    from avo.problem import load_problem

    problem = load_problem(REPO_ROOT / "kernel_src" / "attention" / "problem.py")
    return len(problem.compile_shapes(problem.check_shapes("cpu") + problem.SUITES["cpu"]))


def variant(name: str) -> str:
    """The source of a seed-derived variant (or of kernels/<name>.py)."""
    path = KERNELS / f"{name}.py"
    if path.exists():
        return path.read_text()
    what, subs, tail = VARIANTS[name]
    text = SEED.read_text()
    for old, new in subs:
        assert text.count(old) == 1, f"variant {name}: {old!r} no longer occurs once in the seed"
        text = text.replace(old, new)
    # "after the compile stage": the first call past the interpreter's compile calls
    return f"# CHEAT: {what}\n" + text + tail.replace("COMPILE_CALLS", str(cpu_compile_calls()))


def seed_with_preamble(preamble: str, body: str) -> str:
    """The seed with `preamble` after its imports and `attention` wrapped by `body`
    (body is the text of a new `attention` that may call `_honest`)."""
    text = SEED.read_text()
    marker = "import triton.language as tl\n"
    assert text.count(marker) == 1 and text.count(WRAP[0]) == 1
    text = text.replace(marker, marker + preamble + "\n").replace(*WRAP)
    return text + "\n\n" + body
