"""Faults that must cost one candidate and nothing else: hangs, early exits,
signals, runaway memory, threads and child processes left behind."""
from __future__ import annotations

import os
import re

from avo.harness import evaluate
from tests.adversarial.test_cheats import assert_verdict, judge
from tests.adversarial.variants import seed_with_preamble

HONEST_CALL = '''
def attention(q, k, v, causal=False, sm_scale=None):
    return _honest(q, k, v, causal, sm_scale)
'''


def test_hang_times_out():
    r = judge("hang", timeout_s=8)
    assert_verdict(r, "timeout", r"no result within 8 s; process group killed")


def test_child_process_dies_with_the_worker():
    """A hanging candidate that started a child: the whole process group goes."""
    src = seed_with_preamble("import subprocess", '''
def attention(q, k, v, causal=False, sm_scale=None):
    child = subprocess.Popen(["sleep", "600"])
    print("CHILD-PID", child.pid, flush=True)
    while True:
        pass
''')
    r = evaluate(src, device="cpu", quick=True, static_checks=False, timeout_s=8)
    # the runner's audit hook refuses processes other than the compiler's tools (rejected, no child);
    # where a child does start, the whole process tree goes with the evaluation
    if r.status == "rejected":
        assert "not a compiler tool" in r.message and "CHILD-PID" not in r.log_tail, r.message
        return
    assert_verdict(r, "timeout", r"process group killed|no answer within")
    pid = int(re.search(r"CHILD-PID (\d+)", r.log_tail).group(1))
    try:
        with open(f"/proc/{pid}/stat") as f:  # gone, or a zombie waiting for init
            assert f.read().split(")")[-1].split()[0] in ("Z", "X"), f"child {pid} survived the evaluation"
    except FileNotFoundError:
        pass


def test_os_exit_zero_is_a_crash():
    src = seed_with_preamble("import os", "def attention(q, k, v, causal=False, sm_scale=None):\n    os._exit(0)\n")
    assert_verdict(evaluate(src, device="cpu", quick=True), "rejected", r"^static check, .*import of `os`")
    r = evaluate(src, device="cpu", quick=True, static_checks=False)
    assert_verdict(r, "crashed", r"exited with status 0 before reporting a result|runner died \(exit status 0\)")


def test_segfault_is_a_crash():
    src = seed_with_preamble("import ctypes", "def attention(q, k, v, causal=False, sm_scale=None):\n"
                                               "    ctypes.string_at(0)\n")
    assert_verdict(evaluate(src, device="cpu", quick=True), "rejected", r"^static check, .*import of `ctypes`")
    r = evaluate(src, device="cpu", quick=True, static_checks=False)
    # the runner's audit hook refuses ctypes beyond the CUDA libraries: the segfault never happens
    assert_verdict(r, "rejected", r"ctypes\.string_at is not allowed")


def test_segfault_in_the_runner_is_a_crash():
    """A real SIGSEGV in the candidate's process (deep C recursion through repr of a nested list)."""
    body = ("def attention(q, k, v, causal=False, sm_scale=None):\n"
            "    import sys\n    sys.setrecursionlimit(10**8)\n    x = []\n"
            "    for _ in range(10**6):\n        x = [x]\n    repr(x)\n")
    r = evaluate(seed_with_preamble("", body), device="cpu", quick=True, static_checks=False)
    assert r.status == "crashed" and re.search(r"runner died|killed by signal|RecursionError|MemoryError",
                                                   r.message), f"{r.status}: {r.message}"


def test_ctypes_through_torch_is_rejected_statically():
    """torch re-exports ctypes (and os, sys, threading...) as attributes."""
    src = seed_with_preamble("", "def attention(q, k, v, causal=False, sm_scale=None):\n"
                                 "    torch.ctypes.string_at(0)\n")
    assert_verdict(evaluate(src, device="cpu", quick=True), "rejected", r"^static check, .*`\.ctypes` reaches")


def test_thread_left_running_is_rejected():
    """Returns while a thread is still computing the output (the CPU's 'other stream')."""
    body = '''
def attention(q, k, v, causal=False, sm_scale=None):
    out = torch.empty_like(q)

    def work():
        out.copy_(_honest(q, k, v, causal, sm_scale))

    threading.Thread(target=work, name="late-writer").start()
    return out
'''
    src = seed_with_preamble("import threading", body)
    assert_verdict(evaluate(src, device="cpu", quick=True), "rejected", r"^static check, .*import of `threading`")
    r = evaluate(src, device="cpu", quick=True, static_checks=False)
    # the judge reads the output when the runner says done: unfinished work is wrong there (the
    # runner copied an incomplete buffer) or still changing (the judge's snapshot disagrees)
    assert r.status in ("incorrect", "rejected"), f"{r.status}: {r.message}"
    assert re.search(r"out of tolerance|NaN/Inf|unwritten|changed after", r.message), r.message
    via_torch = seed_with_preamble("", body.replace("threading.Thread", "torch.threading.Thread"))
    assert_verdict(evaluate(via_torch, device="cpu", quick=True), "rejected", r"^static check, .*`\.threading`")


def test_machine_survives_memory_exhaustion():
    """exhaust_memory (in test_cheats) came back as crashed; this process is fine."""
    r = judge("exhaust_memory")
    assert_verdict(r, "crashed", r"out of host memory")
    assert os.getloadavg() is not None  # still here; and a normal evaluation still works:
    assert_verdict(judge("honest_alloc"), "ok", r"^$")
