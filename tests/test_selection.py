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
