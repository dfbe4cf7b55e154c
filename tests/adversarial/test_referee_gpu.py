"""GPU acceptance tests for the new referee (issue 12): timed calls never verified,
work outside the timed window (side streams of another priority, launches from a
thread), library compute on a thread; honest controls. Attack sources:
tests/adversarial/attacks.py (GPU). Run with `pytest -m gpu tests/adversarial`.

Run on the H100 with the judge (2026-11-26, benchmarks/results/h100-referee/
gpu_adversarial_run1.txt): every attack not ok except the thread + side-stream one, whose
work is inside the judge's window (it ran slower than its honest base: see NEUTRALIZED).
"""
from __future__ import annotations

import pytest

from avo.harness import evaluate
from avo.problem import load_problem
from tests.adversarial import attacks as A
from tests.adversarial.variants import SEED

pytestmark = pytest.mark.gpu

ONE_CONFIG = [load_problem().SUITES["mha"][0].name]  # one timed configuration (S=4096: a power of two)


def why(r) -> str:
    return f"{r.status}: {r.message}\n{(r.log_tail or '')[-1200:]}"


# Work on a second stream launched from a thread, inside the call: under the judge's clock (the
# whole batch, ended by the runner's device-wide sync and the judge's snapshot) it is ordinary
# concurrency, not work outside the window. It passes when the race is won, and must gain nothing:
# on the H100 it ran at 295 TFLOPS against its honest base's 353 (benchmarks/results/h100-referee/
# side_stream_check.json). Any other attack must not come back ok.
NEUTRALIZED = {"gpu_thread_launch_side_stream"}


@pytest.mark.parametrize("name", list(A.GPU))
def test_gpu_attack_is_not_ok(name):
    r = evaluate(A.gpu_source(name), device="cuda", configs=ONE_CONFIG, static_checks=False)
    if name in NEUTRALIZED and r.ok:
        honest = evaluate(A.BASE.read_text(), device="cuda", configs=ONE_CONFIG)
        assert honest.ok, why(honest)
        assert r.timings[0].tflops <= 1.05 * honest.timings[0].tflops, (r.timings, honest.timings)
        return
    assert r.status != "ok", "ATTACK ACCEPTED: " + why(r) + f"\ntimings: {r.timings}"


@pytest.mark.parametrize("path", [SEED, A.BF16_PURE, A.BASE], ids=["seed", "bf16_pure", "frozen_base"])
def test_honest_kernels_pass_on_gpu(path):
    r = evaluate(path.read_text(), device="cuda", configs=ONE_CONFIG)
    assert r.status == "ok", why(r)
