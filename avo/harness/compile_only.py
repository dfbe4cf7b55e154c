"""Compile Triton kernels without running them: the compile stage's calls, off the GPU.

Why: the compile stage runs outside the GPU lock, beside another candidate's timing
(judge.py). Its calls used to launch the kernels they compiled, and so did the compile
helpers and a spare judge's reference warm-up. On the H100 (2026-11-27, depth 5) the
shared-GPU guard saw those launches during 21 of 35 timing holds, at 20-92% SM: timing
that was not alone on the GPU. Inside `compile_only()` a Triton (or Gluon) kernel call
compiles the kernel for the call's arguments, loads it onto the device and builds its
launcher (what the first real launch would otherwise do under the lock), and returns
without launching. The caller's output is then garbage, and nothing checks it: the
check stage, under the lock, runs every check shape for real.

An autotuned kernel compiles every config it would try, and benchmarks none: it picks
its config on its first real call, under the lock, where timing belongs.

Not a guard: candidate code runs in the same process and can undo the patch, or launch
work through torch. What it launches then shows on the GPU, where the shared-GPU guard
sees it (judge_sharing.py). This only keeps honest kernels off the GPU while others time.
"""
from __future__ import annotations

from contextlib import contextmanager

_active = {"on": False}
MARK = "_avo_compile_only"


@contextmanager
def compile_only():
    """Kernel calls inside compile and load, and launch nothing (install() first)."""
    before, _active["on"] = _active["on"], True
    try:
        yield
    finally:
        _active["on"] = before


def active() -> bool:
    return _active["on"]


def install(jit_cls=None, tuner_cls=None) -> bool:
    """Patch Triton's JITFunction.run and Autotuner.run (once; the classes are arguments so
    that tests can hand in stand-ins). False when Triton is not importable."""
    if jit_cls is None:
        try:
            from triton.runtime.autotuner import Autotuner
            from triton.runtime.jit import JITFunction
        except ImportError:
            return False
        jit_cls, tuner_cls = JITFunction, Autotuner
    if not getattr(jit_cls.run, MARK, False):
        jit_cls.run = _compiling_run(jit_cls.run)
    if tuner_cls is not None and not getattr(tuner_cls.run, MARK, False):
        tuner_cls.run = _compiling_tune(tuner_cls.run)
    return True


def _compiling_run(launch):
    def run(self, *args, grid, warmup, **kwargs):
        if not _active["on"]:
            return launch(self, *args, grid=grid, warmup=warmup, **kwargs)
        kernel = launch(self, *args, grid=grid, warmup=True, **kwargs)  # Triton's own compile-without-launch
        load = getattr(kernel, "_init_handles", None)  # the module load and launcher a first launch makes
        if callable(load):  # (and the shared-memory and thread-count checks: an OutOfResources here)
            load()
        return kernel
    setattr(run, MARK, True)
    return run


def _compiling_tune(tune):
    def run(self, *args, **kwargs):
        if not _active["on"] or len(self.configs) <= 1:  # one config: nothing to benchmark; run() compiles it
            return tune(self, *args, **kwargs)
        kwargs.pop("warmup", None)
        return self.warmup(*args, **kwargs)  # every pruned config compiled (through run() above), none timed
    setattr(run, MARK, True)
    return run
