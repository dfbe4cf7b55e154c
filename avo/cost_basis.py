"""The CPU lineage's commit basis: a problem's cost model applied to a candidate's knobs.

Interpreter timings never decide a CPU commit (they measure Python overhead and
wander by tens of percent between runs of the same kernel). A problem may declare a
deterministic cost model instead, `COST_MODEL = "cost_model.py"` (a path relative to
its problem file, as SEED is); that module has `NAME` and `modelled_tflops(knobs,
problem)`. This module reads the candidate's knobs with `ast` (its code never runs:
this is the orchestrator, which only parses) and records
`EvalResult.model = {"modelled_tflops": x, "model": NAME}`. A problem without a cost
model gives `{}`: its CPU lineage has no commit basis beyond v0.
"""
from __future__ import annotations

import importlib.util
import sys
import threading
from functools import lru_cache
from pathlib import Path
from typing import Callable

from avo.commit_rule import basis_of, on_cpu
from avo.problem import DEFAULT_PROBLEM, load_problem
from avo.records import EvalResult

CPU_BASIS = "modelled H100 TFLOPS (interpreter timings are informational)"
CPU_NO_BASIS = ("nothing after v0: this problem has no cost model, and interpreter timings "
                "are informational")
GPU_BASIS = "suite geomean + interleaved confirmation, margin from measured spread"
GPU_BASIS_NO_CONFIRM = "suite geomean (lineage.require_confirm_cuda is off)"
_LOAD = threading.Lock()


def basis_line(device: str, problem_path: str | Path | None = None, require_confirm: bool = True) -> str:
    """What a lineage on `device` commits on, in one line (shown once by `avo evolve`)."""
    if device == "cuda":
        return GPU_BASIS if require_confirm else GPU_BASIS_NO_CONFIRM
    return CPU_BASIS if cost_model(problem_path or DEFAULT_PROBLEM) is not None else CPU_NO_BASIS


@lru_cache(maxsize=None)
def _cost_model(problem_file: str):
    problem = load_problem(problem_file)
    name = getattr(problem, "COST_MODEL", None)
    if not name:
        return None
    path = (Path(problem_file).parent / name).resolve()
    module_name = f"{problem.__name__}_cost_model"
    with _LOAD:  # trusted code beside the problem, loaded once per problem
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    return problem, module


def cost_model(problem_path: str | Path = DEFAULT_PROBLEM):
    """(problem module, cost-model module), or None when the problem declares none."""
    return _cost_model(str(Path(problem_path).resolve()))


def model_for(source: str, problem_path: str | Path = DEFAULT_PROBLEM) -> dict:
    """{"modelled_tflops", "model"} for a candidate's source; {} when the problem has no
    cost model or the source does not parse (it cannot be correct then anyway)."""
    from avo.operators.heuristic import read_knobs  # how the search reads knobs: the same `ast` reading

    found = cost_model(problem_path)
    if found is None:
        return {}
    problem, module = found
    try:
        knobs = read_knobs(source)
    except (SyntaxError, ValueError):
        return {}
    return {"modelled_tflops": float(module.modelled_tflops(knobs, problem)), "model": module.NAME}


def attach_model(result: EvalResult, source: str, problem_path: str | Path = DEFAULT_PROBLEM) -> EvalResult:
    """Record the modelled figure on a CPU result that has none yet (GPU results are
    measured and need none). Returns `result`, changed in place."""
    if on_cpu(result) and not result.model:
        result.model = model_for(source, problem_path)
    return result


def problem_for_lineage(root: str | Path) -> Path:
    """The problem a lineage belongs to: the problem.py of the nearest folder above its
    root (kernel_src/<problem>/lineage/cpu -> kernel_src/<problem>/problem.py), else
    the default problem (a lineage kept elsewhere, e.g. a test's)."""
    for folder in Path(root).resolve().parents:
        if (folder / "problem.py").is_file():
            return folder / "problem.py"
    return DEFAULT_PROBLEM


def model_lookup(problem_path: str | Path) -> Callable[[str], dict]:
    """source -> its modelled figure, for versions recorded before `model` existed."""
    return lambda source: model_for(source, problem_path)


def summary(result: EvalResult, source: str = "", model_of: Callable[[str], dict] | None = None,
            seed: bool = False) -> dict:
    """What a result's commit stood on, for displays: {"basis": "seed" | "model" | "confirm" |
    "geomean" | "interpreter", "model_tflops", "confirm_ratio", "confirm_spread", "text"}.
    A CPU result recorded without a modelled figure was committed on interpreter timings
    (the rule before the cost model): it says so, and is modelled from `source` when
    `model_of` is given, so that it can be compared."""
    basis = basis_of(result)
    out = {"basis": "seed" if seed else basis, "model_tflops": None, "confirm_ratio": None,
           "confirm_spread": None, "text": ""}
    if basis == "model":
        model = result.model or (model_of(source) if model_of is not None and source else {})
        out["model_tflops"] = model.get("modelled_tflops")
        out["text"] = (f"model {out['model_tflops']:.1f} H100 TFLOPS" if out["model_tflops"] is not None
                       else "model: none (interpreter timings are informational)")
        if not result.model and not seed:  # recorded before the model decided CPU commits
            out["basis"] = "interpreter"
            out["text"] = "old rule: interpreter timings" + (
                f" (model {out['model_tflops']:.1f} H100 TFLOPS)" if out["model_tflops"] is not None else "")
    elif basis == "confirm":
        c = result.confirm
        out["confirm_ratio"], out["confirm_spread"] = c.get("ratio"), c.get("spread")
        ratio = f"{c['ratio']:.3f}x" if isinstance(c.get("ratio"), (int, float)) else "?"
        spread = f"{c['spread']:.3g}" if isinstance(c.get("spread"), (int, float)) else "?"
        out["text"] = f"confirm {ratio} v{c.get('best_version', '?')} (spread {spread}, {c.get('rounds', '?')} rounds)"
    else:
        out["text"] = f"geomean {result.geomean_tflops:.4g} TFLOPS (no confirmation)"
    if seed:  # v0 needs no basis; its modelled figure is what CPU candidates start from
        out["text"] = out["text"] if basis == "model" and out["model_tflops"] is not None else "seed"
    return out


def lineage_basis(lineage, versions: list, attempts: list[dict]) -> tuple[dict[int, dict], dict[int, float]]:
    """For the report and the tree page: per version (avo.lineage.Version) what its commit
    stood on (`summary`); per attempt of an interpreter lineage, by its index in the
    attempts log, its modelled TFLOPS (from its kept source)."""
    model_of = model_lookup(problem_for_lineage(lineage.root))
    basis = {v.number: summary(v.result, v.source, model_of, seed=v.parent is None and v.number == 0)
             for v in versions}
    models: dict[int, float] = {}
    for i, a in enumerate(attempts):
        if a.get("interpreter") and a.get("status") == "ok":
            source = lineage.source_of(a.get("source_sha256") or "")
            figure = model_of(source).get("modelled_tflops") if source else None
            if figure is not None:
                models[i] = figure
    return basis, models


def best_modelled(versions: list, problem_path: str | Path = DEFAULT_PROBLEM) -> tuple | None:
    """(version, modelled TFLOPS) of the highest-modelled version among `versions` (the
    earliest on ties), each by its record's figure or else modelled from its source;
    None when none has one. The CPU lineage's best, by its commit basis."""
    scored = []
    for v in versions:
        figure = (v.result.model or {}).get("modelled_tflops")
        if figure is None:
            figure = model_for(v.source, problem_path).get("modelled_tflops")
        if figure is not None:
            scored.append((figure, -v.number, v))
    if not scored:
        return None
    figure, _, v = max(scored, key=lambda t: t[:2])
    return v, figure


def modelled_score(problem_path: str | Path = DEFAULT_PROBLEM):
    """version -> its modelled figure (its record's, else modelled from its source; 0
    without one): how a CPU run ranks versions, e.g. to choose parents."""
    def score(v) -> float:
        figure = (v.result.model or {}).get("modelled_tflops")
        if figure is None:
            figure = model_for(v.source, problem_path).get("modelled_tflops")
        return float(figure or 0.0)
    return score
