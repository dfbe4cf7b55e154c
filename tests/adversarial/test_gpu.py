"""GPU-only: work escaping the timed stream, and honest kernels (plain and
autotuned) that the run-time checks must not reject on a real device.
Run with `pytest -m gpu tests/adversarial` on a GPU machine."""
from __future__ import annotations

import pytest

from avo.harness import evaluate
from avo.harness.static_checks import check_source
from avo.problem import load_problem
from tests.adversarial.test_cheats import assert_verdict
from tests.adversarial.variants import SEED, seed_with_preamble, variant

pytestmark = pytest.mark.gpu

ONE_CONFIG = [load_problem().SUITES["mha"][0].name]  # keep the run short: one timed configuration

SIDE_STREAM = seed_with_preamble("", '''
_SIDE = []


def attention(q, k, v, causal=False, sm_scale=None):
    """CHEAT: launches on a side stream and returns before the work is done."""
    if not _SIDE:
        _SIDE.append(torch.cuda.Stream())
    _SIDE[0].wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(_SIDE[0]):
        return _honest(q, k, v, causal, sm_scale)
''')

AUTOTUNED = SEED.read_text().replace(
    "@triton.jit\ndef _attn_fwd(",
    "@triton.autotune(configs=[triton.Config({'BLOCK_N': 32}, num_warps=4, num_stages=2),\n"
    "                          triton.Config({'BLOCK_N': 64}, num_warps=8, num_stages=2)],\n"
    "                 key=['SEQLEN', 'HEAD_DIM', 'CAUSAL'])\n@triton.jit\ndef _attn_fwd(",
).replace("BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N,", "BLOCK_M=BLOCK_M,").replace(
    "        num_warps=NUM_WARPS, num_stages=NUM_STAGES,\n", "")


def test_side_stream_is_not_ok():
    assert check_source(SIDE_STREAM) == []
    r = evaluate(SIDE_STREAM, device="cuda", configs=ONE_CONFIG)
    assert r.status in ("rejected", "incorrect"), f"{r.status}: {r.message}"
    assert any(s in r.message for s in ("escapes the timed stream", "out of tolerance", "NaN/Inf",
                                        "unwritten when the runner said done", "changed after the runner said done")), \
        r.message


def test_seed_passes_on_gpu():
    assert_verdict(evaluate(SEED, device="cuda", configs=ONE_CONFIG), "ok", r"^$")


def test_autotuned_honest_kernel_passes_on_gpu():
    """Autotuning runs do_bench inside the first call, under the library-op watch
    and its element budget: it must not count as host-side compute."""
    assert AUTOTUNED.count("triton.autotune") == 1 and "num_warps=NUM_WARPS" not in AUTOTUNED
    assert check_source(AUTOTUNED) == []
    assert_verdict(evaluate(AUTOTUNED, device="cuda", configs=ONE_CONFIG), "ok", r"^$")


def test_value_keyed_cache_gets_no_free_gpu_timing():
    """A cache keyed on the inputs' values is right on every check; it was free
    when the old timing repeated its input sets. The judge gives every timed call
    fresh inputs, so the cache never hits: no faster than the honest seed it wraps."""
    cheat = evaluate(variant("cache_by_content"), device="cuda", configs=ONE_CONFIG)
    honest = evaluate(SEED, device="cuda", configs=ONE_CONFIG)
    assert honest.ok, honest.message
    if cheat.ok:
        assert cheat.timings[0].tflops <= 1.1 * honest.timings[0].tflops, (cheat.timings, honest.timings)
    else:
        assert cheat.status in ("rejected", "incorrect"), cheat.message
