"""What an evolve run needs, resolved once: config + command-line overrides,
the device, the budget, where the lineage and the run journal live, and which
operator by name. Plain Python; flows/wiring.py builds the parts from this and
the Prefect flows in flows/ only read it.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from avo.budget import Budget
from avo.config import Config, load_config, repo_root
from avo.errors import OperatorUnavailable  # noqa: F401  (re-exported: the CLI catches it)
from avo.problem import load_problem, problem_path, seed_path
from avo.run_state import state_path


@dataclass(frozen=True)
class Settings:
    cfg: Config
    root: Path  # the repository root; relative paths hang off it
    lineage_root: Path
    seed_path: Path
    problem_path: Path  # the problem module (params.yaml harness.problem)
    device: str  # cuda | cpu (resolved)
    suite: str | None
    population: int
    budget: Budget
    operator: str  # heuristic | agent | external (resolved from "auto")
    model: str | None
    state_file: Path
    dask_address: str | None
    knowledge_root: Path

    @property
    def margin(self) -> float:
        return self.cfg.lineage.margin_for(self.device, self.device == "cpu")


def resolve(*, params_path: str | None = None, generations: int | None = None, population: int | None = None,
            operator: str | None = None, model: str | None = None, budget_minutes: float | None = None,
            gpu_minutes: float | None = None, max_tokens: int | None = None, max_dollars: float | None = None,
            target_ratio: float | None = None, target_tflops: float | None = None, device: str | None = None,
            dask_address: str | None = None, lineage_root: str | None = None, state_dir: str | None = None,
            quick: bool | None = None, suite: str | None = None, problem: str | None = None) -> Settings:
    """params.yaml (or the defaults), with every non-None argument taking precedence."""
    params_path = params_path or os.environ.get("AVO_PARAMS")
    cfg = load_config(params_path)
    root = repo_root(Path(params_path).parent if params_path else None)
    ev = cfg.evolve
    ev = dataclasses.replace(ev, **{k: v for k, v in dict(
        generations=generations, candidates_per_generation=population, operator=operator,
        wall_minutes=budget_minutes, gpu_minutes=gpu_minutes, max_tokens=max_tokens, max_dollars=max_dollars,
        target_ratio_cudnn=target_ratio, target_tflops=target_tflops, dask_address=dask_address,
        state_dir=state_dir).items() if v is not None})
    harness = cfg.harness
    configured_problem = problem_path(cfg, root)  # params.yaml's, before --problem
    if device is not None or quick is not None or suite is not None or problem is not None:
        harness = dataclasses.replace(harness, **{k: v for k, v in dict(device=device, quick=quick, suite=suite,
                                                                        problem=problem).items()
                                                  if v is not None})
    agent = dataclasses.replace(cfg.agent, model=model) if model else cfg.agent
    cfg = dataclasses.replace(cfg, evolve=ev, harness=harness, agent=agent)

    resolved_device = harness.device
    if resolved_device == "auto":
        from avo.harness.runner import detect_device  # imports torch only to ask for a GPU

        resolved_device = detect_device()
    if resolved_device not in ("cuda", "cpu"):
        raise ValueError(f"unknown device {resolved_device!r}: use cuda, cpu or auto")
    chosen = ev.operator
    if chosen == "auto":
        chosen = "agent" if (agent.model or os.environ.get("AVO_MODEL")) else "heuristic"
    lineage = Path(lineage_root) if lineage_root else root / cfg.lineage.root_for(resolved_device)
    if problem_path(cfg, root) != configured_problem:  # --problem chose another problem than params.yaml's
        cfg, lineage = _follow_problem(cfg, root, configured_problem, lineage, resolved_device, bool(lineage_root))
    budget = Budget(generations=ev.generations, wall_minutes=ev.wall_minutes, gpu_minutes=ev.gpu_minutes,
                    tokens=ev.max_tokens, dollars=ev.max_dollars, target_ratio_cudnn=ev.target_ratio_cudnn,
                    target_tflops=ev.target_tflops)
    problem_file = problem_path(cfg, root)
    if not problem_file.is_file():
        raise ValueError(f"no problem module at {problem_file}: set harness.problem in "
                         f"{params_path or 'params.yaml'} (relative to that file's folder)")
    seed_file = seed_path(cfg, root)
    if not seed_file.is_file() and not (lineage / "v0000").is_dir():  # the seed is only needed for v0
        # relative paths hang off the params file's folder
        raise ValueError(f"no seed kernel at {seed_file}: set lineage.seed in {params_path or 'params.yaml'} "
                         "(relative to that file's folder)")
    problem = load_problem(problem_file)
    suite = harness.suite or problem.DEFAULT_SUITE[resolved_device]
    if suite not in problem.SUITES:
        raise ValueError(f"unknown suite {suite!r}; known: {', '.join(problem.SUITES)}")
    return Settings(cfg=cfg, root=root, lineage_root=lineage, seed_path=seed_file, problem_path=problem_file,
                    device=resolved_device, suite=suite,
                    population=ev.candidates_per_generation or default_population(resolved_device, cfg, chosen),
                    budget=budget, operator=chosen, model=agent.model, dask_address=ev.dask_address,
                    state_file=state_path(root / ev.state_dir, lineage), knowledge_root=root / "knowledge_base")


CANDIDATES_PER_SLOT = 4  # a GPU generation's default size, per evaluation slot


def evaluation_slots(device: str, cfg: Config) -> list:
    """This host's lease pool for a run (avo.gpu_pool): GPUs x harness.pipeline_depth on
    cuda, evolve.cpu_eval_slots on a CPU."""
    from avo import gpu_pool

    return gpu_pool.slots_for(device, cfg.evolve.cpu_eval_slots, cfg.harness.pipeline_depth)


def partition_cpus(settings) -> str:
    """harness.timing_cpus_per_gpu on a CUDA run (avo/harness/cores.py): each GPU of the lease
    pool gets CPUs of its own for the judge that holds its timing lock; this process, and all
    it starts from now on (judges, runners, compilers, Prefect's temporary server), runs on
    the others. Once per process and setting; says the partition, or why there is none, on
    stderr (and returns that line; '' when already said)."""
    import sys

    from avo import gpu_pool
    from avo.harness import cores

    if settings.device != "cuda":  # interpreter timings decide nothing: no partition, nothing said
        cores.release()
        return ""
    per_gpu = settings.cfg.harness.timing_cpus_per_gpu
    why_not = ""
    if settings.dask_address:
        why_not = "evaluations run on the Dask cluster's workers, not under this process"
    try:
        gpus = gpu_pool.visible_gpus()
    except Exception as e:  # noqa: BLE001 - torch's own failure: the run's preflight reports the GPUs
        gpus, why_not = [], why_not or f"no GPU list ({type(e).__name__})"
    _, line = cores.partition_run(gpus, per_gpu, why_not=why_not)
    if line:
        print(f"avo: {line}", file=sys.stderr, flush=True)
    return line


def default_population(device: str, cfg: Config, operator: str = "heuristic") -> int:
    """Candidates per generation when params.yaml and --population leave it open: 2 on a
    CPU; on GPUs enough to keep every slot of this host busy past the slowest candidate
    (heuristic), or one per slot when each proposal is a model's work (agent, external)."""
    if device != "cuda":
        return 2
    try:
        slots = len(evaluation_slots("cuda", cfg))
    except RuntimeError:  # no GPU visible: the run's preflight says so in one line
        return 2
    return max(2, (CANDIDATES_PER_SLOT if operator == "heuristic" else 1) * slots)


def _follow_problem(cfg: Config, root: Path, configured: Path, lineage: Path, device: str, explicit: bool):
    """One lineage never mixes problems: a lineage folder or seed inside params.yaml's
    problem folder belongs to that problem, so with --problem naming another one they
    become the chosen problem's (<its folder>/lineage/<device>, its SEED), as does the
    MLflow experiment (its NAME). Places of the user's own (elsewhere) are kept."""
    theirs = configured.parent
    chosen = problem_path(cfg, root)
    inside = lambda path: theirs in Path(path).resolve().parents  # noqa: E731
    if not explicit and inside(lineage):
        lineage = chosen.parent / "lineage" / device
    if cfg.lineage.seed and inside(Path(root) / cfg.lineage.seed):
        cfg = dataclasses.replace(cfg, lineage=dataclasses.replace(cfg.lineage, seed=None))
    name = getattr(load_problem(chosen), "NAME", None)
    if name and cfg.tracking.experiment == getattr(load_problem(configured), "NAME", None):
        cfg = dataclasses.replace(cfg, tracking=dataclasses.replace(cfg.tracking, experiment=name))
    return cfg, lineage


def current_directions(settings: Settings, state_directions: list[str]) -> list[str]:
    """The run's directions, else the supervisor's last ones (directions.json)."""
    if state_directions:
        return list(state_directions)
    try:
        from avo.directions import read_directions
    except ImportError:
        return []
    d = read_directions(settings.lineage_root)
    return d.as_prompt_lines() if d else []
