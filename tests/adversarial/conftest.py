"""Adversarial suite: cheating kernels the harness must reject, honest ones it must pass.

GPU-only tests are marked `gpu` and skipped cleanly where CUDA is unavailable
(run them with `pytest -m gpu tests/adversarial` on a GPU machine).
"""
from __future__ import annotations

import pytest


def _cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def pytest_collection_modifyitems(config, items):
    if _cuda_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
