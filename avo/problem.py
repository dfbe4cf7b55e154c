"""Loading a problem definition (trusted code under kernel_src/<problem>/problem.py).

A problem is a small module with a fixed contract: Shape, SUITES, DEFAULT_SUITE,
check_shapes(device), TOLERANCES, make_inputs, refill_, reference. Torch is only
imported by the functions that need it, so loading one is cheap.
"""
from __future__ import annotations

import importlib.util
import sys
from functools import lru_cache
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PROBLEM = REPO_ROOT / "kernel_src" / "attention" / "problem.py"


@lru_cache(maxsize=None)
def load_problem(path: str | Path = DEFAULT_PROBLEM, module_name: str = "avo_problem"):
    path = Path(path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"no problem definition at {path}")
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module
