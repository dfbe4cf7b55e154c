"""GPU leases (avo.gpu_pool) and the harness's GPU pinning — milliseconds."""
import threading
import time

import pytest

from avo import gpu_pool


def test_concurrent_leases_get_distinct_gpus_and_wait_when_all_are_busy(tmp_path):
    held, order = [], []
    with gpu_pool.lease([0, 1], lock_dir=tmp_path) as a, gpu_pool.lease([0, 1], lock_dir=tmp_path) as b:
        assert {a, b} == {0, 1}

        def third():
            with gpu_pool.lease([0, 1], lock_dir=tmp_path, poll_s=0.01) as c:
                held.append(c)
                order.append("third")

        t = threading.Thread(target=third)
        t.start()
        time.sleep(0.1)
        assert held == []  # both GPUs busy: it waits
        order.append("release")
    t.join(2)
    assert order == ["release", "third"] and held[0] in (0, 1)


def test_pool_on_cpu_and_cuda(monkeypatch):
    assert gpu_pool.slots_for("cpu", 2) == ["cpu0", "cpu1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert gpu_pool.slots_for("cuda", 1) == [2, 3]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(RuntimeError):
        gpu_pool.slots_for("cuda", 1)


def test_harness_pins_the_worker_to_the_leased_gpu(tmp_path):
    from avo.harness.runner import _scrubbed_env

    assert _scrubbed_env(tmp_path, "cuda", 3)["CUDA_VISIBLE_DEVICES"] == "3"
    assert _scrubbed_env(tmp_path, "cpu", 3)["CUDA_VISIBLE_DEVICES"] == ""  # the interpreter never sees a GPU
