"""Loading a problem definition (trusted code under kernel_src/<problem>/problem.py).

A problem is a small module with a fixed contract; params.yaml's harness.problem
(or --problem) chooses it. kernel_src/attention/problem.py and
kernel_src/rmsnorm/problem.py implement it; docs/problems.md explains each name
and has a copyable template (kernel_src/_template/).

The judge (avo/harness/calls.py, judge.py) reads:
    SIGNATURE              the candidate's entry point, e.g. "rmsnorm(x, w, eps=1e-6)":
                           its name, then the input buffers it takes positionally
    Shape                  a frozen dataclass with .name, .dtype and .flops()
    SUITES, DEFAULT_SUITE  named lists of timed shapes; the default per device
    check_shapes(device), held_out_shapes(device, rng, n), compile_shapes(shapes)
    held_out_pool(device)  (optional) every shape held_out_shapes draws from: a GPU's
                           first judge times their baselines once, for its cache
    TOLERANCES[dtype]      {"atol", "rtol", "rel"}
    buffers(shape)         [(name, dims, dtype, role)], role "input" | "output":
                           the inputs in the order the entry takes them, one output
    draw_call(shape, rng, vary, index) -> call: {"args": the entry's keyword
                           arguments (JSON values), anything else the judge's own};
                           index: the call's place in its batch
    inputs(shape, device, seed, call) -> {name: tensor}   fresh, reproducible
    late_change(shape, rng) -> (input name, dim, indices, factor): scaled by a
                           power of two after the clock starts; every output element
                           must depend on it (a precomputed output is then wrong)
    expected(inputs, shape, call)              the whole output, in high precision
    expected_rows(inputs, shape, call, rows)   rows: [R, ndim-1] indices of the
                           output's leading dims -> [R, last dim]
    BASELINES (optional)   record column -> (file next to the problem, function, label)
    warm_up(device)        (optional) called by a judge started ahead of its job
                           (avo/harness/prestart.py): import or compile what
                           expected() will need, so none of it falls in the GPU lock
and the search (avo/operators/heuristic.py, flows/) reads:
    SEED                   v0's kernel, relative to the problem file
    KNOBS                  knob name -> legal values in order (the heuristic's moves)
    fits(knobs, device)    whether a knob setting can launch there
    register_pressure(knobs), ACC_REGISTERS, knob_base(name)   optional hints
    KNOWLEDGE_BASE         optional, default True: whether knowledge_base/ covers it
    LEVERS, or levers.py beside it   what is known about each lever (levers() below):
                           the heuristic's priors and texts, the supervisor's directions
Torch is only imported by the functions that need it, so loading one is cheap.
"""
from __future__ import annotations

import ast
import hashlib
import importlib.util
import sys
from functools import lru_cache
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PROBLEM = REPO_ROOT / "kernel_src" / "attention" / "problem.py"


def load_problem(path: str | Path = DEFAULT_PROBLEM, module_name: str | None = None):
    """The problem module at `path` (relative: to the working directory, else to the
    repository, since the judge runs in a directory of its own); loaded once per file."""
    path = Path(path)
    if not path.is_absolute() and not path.is_file() and (REPO_ROOT / path).is_file():
        path = REPO_ROOT / path
    return _load(path.resolve(), module_name)


@lru_cache(maxsize=None)
def _load(path: Path, module_name: str | None):
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


def loaded_problems() -> list:
    """Every problem module this process has loaded, the default one first (loading it)."""
    default = load_problem()
    return [default] + [m for m in sys.modules.copy().values()
                        if getattr(m, "__name__", "").startswith("avo_problem_") and hasattr(m, "SIGNATURE")]


def entry_name(problem) -> str:
    """'rmsnorm(x, w, eps=1e-6)' -> 'rmsnorm'."""
    return problem.SIGNATURE.split("(", 1)[0].strip()


def entry_inputs(problem) -> list[str]:
    """The parameters the entry takes without a default: the input buffers, in order."""
    fn = ast.parse(f"def {problem.SIGNATURE}: pass").body[0]
    args = fn.args.args
    return [a.arg for a in args[:len(args) - len(fn.args.defaults)]]


LEVER_KEYS = {"name", "keywords", "up", "down", "why", "prior_up", "prior_down", "direction"}


def levers(problem) -> list[dict]:
    """The problem's lever table, the one owner of what is known about its levers: the
    heuristic reads a knob's up/down/why/priors, the supervisor's rules its keywords and
    direction. problem.LEVERS, else LEVERS of levers.py next to the problem file, else []."""
    table = getattr(problem, "LEVERS", None)
    if table is None:
        table = _levers_file(str(Path(problem.__file__).resolve().with_name("levers.py")))
    for lever in table:
        if "name" not in lever or set(lever) - LEVER_KEYS:
            raise ValueError(f"lever {lever.get('name', '?')}: keys must be among {sorted(LEVER_KEYS)}")
    return list(table)


@lru_cache(maxsize=None)
def _levers_file(path: str) -> tuple:
    if not Path(path).is_file():
        return ()
    spec = importlib.util.spec_from_file_location("avo_levers_" + hashlib.sha1(path.encode()).hexdigest()[:10], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return tuple(module.LEVERS)


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
