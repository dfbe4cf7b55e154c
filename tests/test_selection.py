"""Parent selection (avo.selection) — milliseconds."""
import random

import pytest

from avo.lineage import Version
from avo.candidate import Technique
from tests.fake_results import make_result


def _v(n, tflops, device="cuda", suite="avo"):
    return Version(number=n, source=f"# v{n}\n", parent=n - 1 if n else None, operator="heuristic",
                   technique=Technique(name=f"t{n}"), result=make_result((tflops, tflops), device=device, suite=suite),
                   created="")


def test_half_the_slots_take_the_best_the_rest_diverse_ancestors():
    from avo.selection import select_parents

    versions = [_v(0, 100), _v(1, 150), _v(2, 120), _v(3, 140)]
    parents = select_parents(versions, 4, random.Random(0), device="cuda", suite="avo")
    assert parents[:2] == [1, 1]
    assert set(parents[2:]) <= {3, 2, 0} and 1 not in parents[2:]


def test_deterministic_and_device_aware():
    from avo.selection import select_parents

    versions = [_v(0, 100, device="cpu", suite="cpu"), _v(1, 300), _v(2, 200)]
    a = select_parents(versions, 5, random.Random("7:3"), device="cuda", suite="avo")
    assert a == select_parents(versions, 5, random.Random("7:3"), device="cuda", suite="avo")
    assert 0 not in a  # an interpreter version never competes with GPU versions
    # nothing measured on this device: the latest version is the parent
    assert select_parents(versions[:1], 2, random.Random(0), device="cuda", suite="avo") == [0, 0]


def test_empty_lineage_is_an_error():
    from avo.selection import select_parents

    with pytest.raises(ValueError):
        select_parents([], 2, random.Random(0))


def test_a_cpu_run_ranks_parents_by_the_commit_basis_not_by_interpreter_noise():
    import random as _random

    from avo.selection import select_parents

    class V:
        def __init__(self, number, geomean, modelled):
            from avo.records import CaseCheck, ConfigTiming, EvalResult

            self.number, self.geomean, self.source = number, geomean, ""
            self.result = EvalResult(status="ok", device="cpu", interpreter=True, suite="cpu",
                                     checks=[CaseCheck("s", "fp16", 1, "check", 0.0, 0.0, True)],
                                     timings=[ConfigTiming("c", 1.0, geomean)],
                                     model={"modelled_tflops": modelled, "model": "m"})

    noisy_outlier, modelled_best = V(3, 9e-4, 300.0), V(2, 3e-4, 400.0)
    from avo.cost_basis import modelled_score

    picks = select_parents([V(0, 1e-4, 100.0), modelled_best, noisy_outlier], 1, _random.Random(0), "cpu", "cpu",
                           score=modelled_score())
    assert picks == [2]
    assert select_parents([V(0, 1e-4, 100.0), modelled_best, noisy_outlier], 1, _random.Random(0), "cpu", "cpu") == [3]
