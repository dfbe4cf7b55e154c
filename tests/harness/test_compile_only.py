"""compile_only.py: inside compile_only() a kernel call compiles and loads, and launches
nothing; outside it, calls are untouched. Triton's classes are stood in for here (a real
compile needs a GPU); the GPU test (tests/adversarial/test_gpu_sharing.py) runs the real
ones and asks the profiler whether anything launched."""
from __future__ import annotations

import pytest

from avo.harness import compile_only


class Kernel:
    def __init__(self):
        self.loaded = 0

    def _init_handles(self):
        self.loaded += 1


class FakeJIT:
    """JITFunction.run's contract: warmup=True compiles and returns the kernel, no launch."""

    def __init__(self):
        self.launches, self.compiles = [], []

    def run(self, *args, grid, warmup, **kwargs):
        kernel = Kernel()
        self.compiles.append((args, kwargs))
        if not warmup:
            self.launches.append((grid, args, kwargs))
        return kernel

    def warmup(self, *args, grid, **kwargs):  # KernelInterface.warmup
        return self.run(*args, grid=grid, warmup=True, **kwargs)


class Config:
    def __init__(self, **kw):
        self.kw = kw

    def all_kwargs(self):
        return self.kw


class FakeTuner:
    """Autotuner: run() benchmarks every config (launches) the first time; warmup() compiles them."""

    def __init__(self, fn, configs):
        self.fn, self.configs, self.benchmarked = fn, configs, 0

    def run(self, *args, **kwargs):
        if len(self.configs) > 1:
            self.benchmarked += 1
            for c in self.configs:
                self.fn.run(*args, **{**kwargs, **c.all_kwargs()})
        return self.fn.run(*args, **{**kwargs, **self.configs[0].all_kwargs()})

    def warmup(self, *args, **kwargs):
        return [self.fn.warmup(*args, **kwargs, **c.all_kwargs()) for c in self.configs]


@pytest.fixture
def classes(monkeypatch):
    # fresh subclasses per test: install() patches the classes it is given, once
    jit = type("JIT", (FakeJIT,), {})
    tuner = type("Tuner", (FakeTuner,), {})
    assert compile_only.install(jit, tuner)
    return jit, tuner


def test_outside_compile_only_a_call_launches_as_before(classes):
    jit_cls, _ = classes
    fn = jit_cls()
    fn.run(1, 2, grid=(4,), warmup=False, BLOCK=64)
    assert fn.launches == [((4,), (1, 2), {"BLOCK": 64})]


def test_inside_compile_only_a_call_compiles_and_loads_and_launches_nothing(classes):
    jit_cls, _ = classes
    fn = jit_cls()
    with compile_only.compile_only():
        kernel = fn.run(1, 2, grid=(4,), warmup=False, BLOCK=64)
    assert fn.launches == [] and fn.compiles == [((1, 2), {"BLOCK": 64})]
    assert kernel.loaded == 1  # the module load and launcher a first launch would make, made here
    assert not compile_only.active()
    fn.run(1, 2, grid=(4,), warmup=False, BLOCK=64)  # and after it, launches again
    assert len(fn.launches) == 1


def test_an_autotuned_kernel_compiles_every_config_and_benchmarks_none(classes):
    jit_cls, tuner_cls = classes
    fn = jit_cls()
    tuner = tuner_cls(fn, [Config(BLOCK=64), Config(BLOCK=128)])
    with compile_only.compile_only():
        tuner.run(1, grid=(4,), warmup=False)
    assert tuner.benchmarked == 0 and fn.launches == []
    assert [kw for _, kw in fn.compiles] == [{"BLOCK": 64}, {"BLOCK": 128}]
    tuner.run(1, grid=(4,), warmup=False)  # outside: it tunes on its first real call
    assert tuner.benchmarked == 1 and fn.launches


def test_a_single_config_autotuner_goes_through_the_patched_run(classes):
    jit_cls, tuner_cls = classes
    fn = jit_cls()
    with compile_only.compile_only():
        tuner_cls(fn, [Config(BLOCK=64)]).run(1, grid=(4,), warmup=False)
    assert fn.launches == [] and len(fn.compiles) == 1


def test_install_is_once_and_the_mode_nests(classes):
    jit_cls, tuner_cls = classes
    patched = jit_cls.run
    assert compile_only.install(jit_cls, tuner_cls) and jit_cls.run is patched
    with compile_only.compile_only():
        with compile_only.compile_only():
            pass
        assert compile_only.active()  # the inner one left the outer one's mode on
    assert not compile_only.active()


def test_the_mode_ends_when_the_call_raises(classes):
    with pytest.raises(RuntimeError):
        with compile_only.compile_only():
            raise RuntimeError("a candidate's error")
    assert not compile_only.active()


def test_the_real_triton_classes_can_be_patched():
    from triton.runtime.autotuner import Autotuner
    from triton.runtime.jit import JITFunction

    assert compile_only.install()
    assert getattr(JITFunction.run, compile_only.MARK) and getattr(Autotuner.run, compile_only.MARK)
