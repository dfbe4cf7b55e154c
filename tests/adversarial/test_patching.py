"""Patching clocks, timers, comparisons or the harness itself. Each cheat below
returns garbage (or is honest but tampers). The static checks reject every one;
at run time the judge's clock, comparison and tolerances live in another process,
so a patch in the candidate's process changes nothing: garbage stays wrong (or the
patch itself fails to load), and an honest kernel gains nothing (its timing is the
judge's). The run-time column names the evidence, not a tamper check."""
from __future__ import annotations

import pytest

from avo.harness import evaluate
from tests.adversarial.test_cheats import assert_verdict
from tests.adversarial.variants import seed_with_preamble

GARBAGE = '''
def attention(q, k, v, causal=False, sm_scale=None):
    return torch.ones_like(q)
'''
HONEST = '''
def attention(q, k, v, causal=False, sm_scale=None):
    return _honest(q, k, v, causal, sm_scale)
'''

PATCHES = [
    # name, preamble, attention, static pattern, run-time pattern
    ("perf_counter", "import time\ntime.perf_counter = lambda: 0.0", HONEST,
     r"import of `time`", r"patched time\.perf_counter"),
    ("do_bench", "import triton.testing\ntriton.testing.do_bench = lambda *a, **k: 1e-9", HONEST,
     r"triton\.testing", r"patched triton\.testing\.do_bench"),
    ("torch_equal_allclose", "torch.equal = lambda *a, **k: True\ntorch.allclose = lambda *a, **k: True", GARBAGE,
     r"patches a library", r"patched .*torch\.(equal|allclose)"),
    ("tensor_comparisons",
     "def _never(self, other):\n    return torch.zeros(self.shape, dtype=torch.bool)\n\n\n"
     "def _zero(self, other):\n    return torch.zeros(())\n\n\n"
     "torch.Tensor.__gt__ = _never\ntorch.Tensor.__truediv__ = _zero", GARBAGE,
     r"private attribute `\.__gt__`|patches a library", r"patched torch\.Tensor\.(__gt__|__truediv__)"),
    ("harness_compare",
     "import sys\n_w = sys.modules['__main__']\n"
     "_w.Worker.compare = lambda self, out, q, k, v, shape, seed, sm_scale, phase: "
     "self.record(shape, seed, phase, 0.0, 0.0, True, '')", GARBAGE,
     r"import of `sys`", r"patched __main__\.Worker\.compare"),
    ("harness_guard",
     "import sys\nsys.modules['avo.harness.guard'].Snapshot.changed = lambda self: []\n"
     "sys.modules['avo.harness.guard'].FORBIDDEN_OPS = __import__('re').compile('^$')", HONEST,
     r"import of `sys`", r"patched .*avo\.harness\.guard\.Snapshot\.changed"),
    ("harness_blindfold",  # switches off the in-run tamper check too: the final one in main() remains
     "import sys\n_w = sys.modules['__main__']\n_w.Worker.assert_unpatched = lambda self, where: None\n"
     "_w.Worker.compare = lambda self, out, q, k, v, shape, seed, sm_scale, phase: "
     "self.record(shape, seed, phase, 0.0, 0.0, True, '')", GARBAGE,
     r"import of `sys`", r"^the candidate patched .*__main__\.Worker\.(assert_unpatched|compare)"),
    ("loosen_tolerances",
     "import sys\nsys.modules['avo_problem'].TOLERANCES['float16']['rel'] = 1e9\n"
     "sys.modules['avo_problem'].TOLERANCES['float16']['atol'] = 1e9", GARBAGE,
     r"import of `sys`", r"patched avo_problem\.TOLERANCES"),
    ("patch_via_torch_sys",
     "_w = torch.sys.modules['__main__']\n"
     "_w.Worker.compare = lambda *a: None", GARBAGE,
     r"`\.sys` reaches", r"patched __main__\.Worker\.compare"),
]


@pytest.mark.parametrize("name,preamble,body,static_pat,runtime_pat", PATCHES, ids=[p[0] for p in PATCHES])
def test_patching_rejected_by_both_layers(name, preamble, body, static_pat, runtime_pat):
    src = seed_with_preamble(preamble, body)
    assert_verdict(evaluate(src, device="cpu", quick=True), "rejected", r"^static check, .*" + static_pat)
    r = evaluate(src, device="cpu", quick=True, static_checks=False)
    if body == GARBAGE:  # the patch reached nothing the judge uses: the output is still judged wrong
        assert r.status in ("incorrect", "compile_error", "rejected"), f"{r.status}: {r.message}"
    else:  # an honest kernel that patches: correct, and its timing is not its own to set; a patch of
        # a harness module the runner does not have (the old in-process guard) fails at load
        assert r.status == "ok" or (r.status == "compile_error" and "KeyError" in r.message), \
            f"{r.status}: {r.message}"


def test_patched_clocks_do_not_reach_the_judges_timing():
    """Full mode: the honest kernel with time.perf_counter and do_bench patched to 0 is
    timed by the judge's own clock, in the same range as the unpatched seed."""
    patched = evaluate(seed_with_preamble("import time\nimport triton.testing\ntime.perf_counter = lambda: 0.0\n"
                                          "triton.testing.do_bench = lambda *a, **k: 1e-9", HONEST),
                       device="cpu", static_checks=False)
    assert patched.status == "ok", patched.message
    assert all(0 < t.ms and t.tflops < 1e-2 for t in patched.timings), patched.timings
