"""GPU acceptance tests for the new referee (issue 12): timed calls never verified,
work outside the timed window (side streams of another priority, launches from a
thread), library compute on a thread; honest controls. Attack sources:
tests/adversarial/attacks.py (GPU). Run with `pytest -m gpu tests/adversarial`.

Not run by the red team of 2026-11-26 (no device time for this helper): the lead
runs them on the H100 with the new referee.
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


@pytest.mark.parametrize("name", list(A.GPU))
def test_gpu_attack_is_not_ok(name):
    r = evaluate(A.gpu_source(name), device="cuda", configs=ONE_CONFIG, static_checks=False)
    assert r.status != "ok", "ATTACK ACCEPTED: " + why(r) + f"\ntimings: {r.timings}"


@pytest.mark.parametrize("path", [SEED, A.BF16_PURE, A.BASE], ids=["seed", "bf16_pure", "frozen_base"])
def test_honest_kernels_pass_on_gpu(path):
    r = evaluate(path.read_text(), device="cuda", configs=ONE_CONFIG)
    assert r.status == "ok", why(r)
