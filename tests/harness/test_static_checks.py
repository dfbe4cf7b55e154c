"""Static checks: what a candidate may not contain, and the contract."""
from pathlib import Path

import pytest

from avo.harness.static_checks import SourceError, check_source

SEED = (Path(__file__).parents[2] / "kernel_src/attention/seeds/fa2.py").read_text()


def test_the_seed_passes():
    assert check_source(SEED) == []


@pytest.mark.parametrize("snippet, fragment", [
    ("import os", "import of `os`"),
    ("import subprocess", "import of `subprocess`"),
    ("from ctypes import CDLL", "import of `ctypes"),
    ("import torch.nn.functional as F", "torch.nn"),
    ("from torch.nn.functional import scaled_dot_product_attention", "torch.nn"),
    ("x = torch.matmul", "`.matmul`"),
    ("x = torch.softmax", "`.softmax`"),
    ("y = torch.ops.aten.mm", "`.ops`"),
    ("z = (lambda a, b: a @ b)", "`@`"),
    ("torch.equal = lambda a, b: True", "patches a library"),
    ("triton.testing.do_bench = None", "`.testing`"),
    ("f = getattr(torch, 'mat' + 'mul')", "`getattr`"),
    ("e = eval('1')", "`eval`"),
    ("c = torch._C", "private attribute"),
    ("d = SEED.__class__", "private attribute"),
    ("def g():\n    global CACHE", "global"),
    ("import time", "import of `time`"),
])
def test_forbidden_constructs_are_named(snippet, fragment):
    violations = check_source(SEED + "\n" + snippet + "\n")
    assert violations, snippet
    assert any(fragment in str(v) for v in violations), [str(v) for v in violations]


def test_at_operator_is_fine_inside_a_triton_kernel():
    src = SEED + "\n@triton.jit\ndef _k(A, B):\n    x = A @ B\n"
    assert check_source(src) == []


@pytest.mark.parametrize("src, fragment", [
    ("def attention(:\n", "syntax error"),
    ("import torch\nx = 1\n", "no top-level function `attention"),
    ("import torch\ndef attention(a, b, c):\n    return a\n", "must take (q, k, v"),
    ("import torch\ndef attention(q, k, v, causal=False, sm_scale=None):\n    return q\n", "no @triton.jit"),
])
def test_not_a_candidate(src, fragment):
    with pytest.raises(SourceError, match=None) as e:
        check_source(src)
    assert fragment in str(e.value)
