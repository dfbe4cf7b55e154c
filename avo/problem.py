"""Loading a problem definition (trusted code under kernel_src/<problem>/problem.py).

A problem is a small module with a fixed contract; params.yaml's harness.problem
(or --problem) chooses it. The judge (avo/harness) reads:
    Shape, SUITES, DEFAULT_SUITE, check_shapes(device), held_out_shapes(device, rng, n),
    TOLERANCES, make_inputs, refill_, reference, reference_rows; Shape.flops()
and the search reads:
    SEED                  v0's kernel, relative to the problem file
    KNOBS                 knob name -> legal values in order (the heuristic's moves)
    fits(knobs, device)   whether a knob setting can launch there (shared memory)
    register_pressure(knobs), ACC_REGISTERS, knob_base(name)   optional hints
Torch is only imported by the functions that need it, so loading one is cheap.
kernel_src/attention/problem.py is the reference implementation of the contract.
"""
from __future__ import annotations

import hashlib
import importlib.util
import sys
from functools import lru_cache
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PROBLEM = REPO_ROOT / "kernel_src" / "attention" / "problem.py"


@lru_cache(maxsize=None)
def load_problem(path: str | Path = DEFAULT_PROBLEM, module_name: str | None = None):
    path = Path(path).resolve()
    if module_name is None:  # one module name per problem file: two problems never share one
        module_name = "avo_problem" if path == DEFAULT_PROBLEM.resolve() else \
            "avo_problem_" + hashlib.sha1(str(path).encode()).hexdigest()[:10]
    if not path.is_file():
        raise FileNotFoundError(f"no problem definition at {path}")
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def problem_path(cfg, root: Path) -> Path:
    """The problem module a config names (harness.problem, relative to `root`; a
    params file outside the repository falls back to the repository's problems)."""
    path = Path(root) / cfg.harness.problem
    if not path.is_file() and (REPO_ROOT / cfg.harness.problem).is_file():
        path = REPO_ROOT / cfg.harness.problem
    return path.resolve()


def seed_path(cfg, root: Path) -> Path:
    """v0's kernel: lineage.seed (relative to `root`), else the problem's SEED."""
    if cfg.lineage.seed:
        return Path(root) / cfg.lineage.seed
    path = problem_path(cfg, root)
    return path.parent / load_problem(path).SEED
