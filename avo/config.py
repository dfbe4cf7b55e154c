"""The one config file, `params.yaml`, read into frozen dataclasses.

One section per concern (harness, lineage, tracking, evolve, agent, report).
Every field has a default, so avo runs without a params.yaml; a key the code
does not know, or a value of the wrong type or outside its choices, is a
ConfigError whose one-line message names the key and says how to fix it.

To add a setting: add a field (with a default and a comment) to the section's
dataclass. The loader reads fields and their types from the dataclass, so
nothing else needs to change. Allowed values go in `metadata={"choices": ...}`;
bounds in `metadata={"min": ...}`. DVC tracks params.yaml, so stages rerun
when a section they list changes.
"""
from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

PARAMS_FILE = "params.yaml"


class ConfigError(ValueError):
    """A mistake in params.yaml; the message is one line, meant for the user."""


def _choices(*values):
    return {"choices": values}


# ------------------------------------------------------------------ sections
@dataclass(frozen=True)
class HarnessConfig:
    """How candidates are evaluated (avo.harness.evaluate)."""

    device: str = field(default="auto", metadata=_choices("auto", "cuda", "cpu"))
    suite: str | None = None  # None: the problem's default suite for the device
    timeout_s: float = field(default=900.0, metadata={"min": 1})
    quick: bool = False  # fewer correctness seeds and timing reps (smoke runs)
    # The problem module (kernel_src/<problem>/problem.py: shapes, suites, reference,
    # tolerances, knobs, seed); relative to the params file's folder.
    problem: str = "kernel_src/attention/problem.py"
    # The evaluation cascade on a GPU (avo/cascade.py): screen a few configs, the full
    # suite only for candidates that can still beat the best, a confirmation re-measure
    # before a commit; cuDNN/FA2 timed once per GPU and session (avo/baseline_cache.py).
    cascade: bool = True
    screen_size: int | None = field(default=None, metadata={"min": 1})  # configs in the screen; None: a quarter of the suite, >= 3
    screen_slack: float = field(default=0.03, metadata={"min": 0})  # the gate: the best's screen geomean x (1 - slack)
    confirm_rounds: int = field(default=3, metadata={"min": 1})  # best/candidate turns in the confirmation
    # Evaluations in flight per GPU: one measures under the GPU lock, the others load and compile.
    # One H100 (16 CPUs), session 6: 5 gave 9.1 candidates per GPU-minute once warm (3: 5.1), its
    # GPU memory peaking at 56-63 of 80 GB and its CPUs saturated; lower it for less GPU memory or
    # fewer than ~16 CPUs per GPU (more only queues compiles)
    pipeline_depth: int = field(default=5, metadata={"min": 1})
    # An evolve run keeps one judge per evaluation in flight started ahead of its candidate
    # (imports, CUDA contexts, the runner and compile helpers: avo/harness/spares.py)
    spare_judges: bool = True
    # Runners of the same candidate that compile its shapes ahead while its own runner makes the
    # verified calls (avo/harness/prestart.py); GPU only. Each is a process with a CUDA context
    compile_helpers: int = field(default=2, metadata={"min": 0, "max": 8})
    # CPUs kept per GPU for the judge that holds its timing lock (and its runner); everything
    # else of the run loads and compiles on the other CPUs (avo/harness/cores.py). 0: off
    timing_cpus_per_gpu: int = field(default=2, metadata={"min": 0})
    baseline_drift_s: float = field(default=600.0, metadata={"min": 0})  # re-time the screen's baselines this often
    baseline_drift_tolerance: float = field(default=0.03, metadata={"min": 0})  # beyond: re-time all baselines


@dataclass(frozen=True)
class LineageConfig:
    """Where committed versions live and when a candidate is committed."""

    # "{device}" becomes cuda or cpu: interpreter lineages never mix with GPU ones
    root: str = "kernel_src/attention/lineage/{device}"
    seed: str | None = "kernel_src/attention/seeds/fa2.py"  # v0; null: the problem's SEED
    # Commit rule (avo/commit_rule.py). GPU: geomean >= best * (1 + noise_margin_cuda),
    # and the confirmation re-measure (candidate and best in turns on the same GPU)
    # ratio >= 1 + max(noise_margin_cuda, the spread it measured). noise_margin_cuda is
    # the floor: ~1% run-to-run with CUDA-event timing (avo.commit_rule.margin_from_spread).
    noise_margin_cuda: float = field(default=0.01, metadata={"min": 0})
    require_confirm_cuda: bool = True  # false: a GPU result without a confirmation may commit on its geomean
    # CPU: interpreter timings measure Python overhead and never decide a commit; the
    # problem's cost model does: modelled H100 TFLOPS >= the best's * (1 + model_margin_cpu).
    model_margin_cpu: float = field(default=0.01, metadata={"min": 0})
    noise_margin_cpu: float = field(default=0.05, metadata={"min": 0})  # unused since the model decides; older files set it
    # Each promotion is also a git commit of the lineage files only ("auto": when
    # the lineage sits in a git work tree with no merge/rebase in progress).
    git_commit: str = field(default="auto", metadata=_choices("auto", "on", "off"))

    def root_for(self, device: str) -> str:
        """The lineage folder for results measured on `device` (cuda or cpu)."""
        return self.root.replace("{device}", device)

    def margin_for(self, device: str, interpreter: bool) -> float:
        """The timing noise margin of a result measured on `device` (a commit's own margin:
        avo.commit_rule.commit_margin)."""
        return self.noise_margin_cpu if (interpreter or device != "cuda") else self.noise_margin_cuda


@dataclass(frozen=True)
class TrackingConfig:
    """MLflow. A broken store warns and never stops a run or loses a commit."""

    enabled: bool = True
    uri: str | None = None  # None: $MLFLOW_TRACKING_URI, else sqlite:///<repo>/mlflow/mlflow.db
    experiment: str = "attention-fwd"  # one experiment per problem
    log_artifacts: bool = True  # source, diff to parent, harness log per candidate


@dataclass(frozen=True)
class EvolveConfig:
    """The evolve loop (flows/). Owners of the loop add their fields here."""

    generations: int = field(default=2, metadata={"min": 0})
    # None: 2 on a CPU; on GPUs 4 x the host's evaluation slots (GPUs x harness.pipeline_depth), since
    # a generation waits for its slowest candidate and fewer candidates than slots leave GPUs idle
    candidates_per_generation: int | None = field(default=None, metadata={"min": 1})
    operator: str = field(default="auto", metadata=_choices("auto", "heuristic", "agent", "external"))
    seed: int = 0
    stagnation_generations: int = field(default=3, metadata={"min": 1})  # supervisor trigger
    # Budgets (null: no limit); the run stops at the first one reached. Spent
    # amounts are kept in the run's journal (.avo/evolve/), so a resumed run counts on.
    wall_minutes: float | None = field(default=None, metadata={"min": 0})
    gpu_minutes: float | None = field(default=None, metadata={"min": 0})  # evaluation time on GPUs
    max_tokens: int | None = field(default=None, metadata={"min": 0})  # LLM tokens (agent operator)
    max_dollars: float | None = field(default=None, metadata={"min": 0})
    # Targets: stop once the best committed version reaches one (null: none).
    target_ratio_cudnn: float | None = field(default=None, metadata={"min": 0})
    target_tflops: float | None = field(default=None, metadata={"min": 0})
    # Parallel evaluation: one per visible GPU; on a CPU at most this many at once.
    cpu_eval_slots: int = field(default=1, metadata={"min": 1})
    # Generation g+1 starts (select, vary, its evaluations queue for a device slot) once no
    # evaluation of g waits for a slot any more, instead of when g's slowest candidate ends:
    # measured on an H100, the slots were busy 83% of the time at the barrier, draining one by
    # one at each generation's end. At most two generations in flight; they are reviewed in
    # order. false: one generation at a time (a reproducible order of proposals and commits)
    overlap_generations: bool = True
    dask_address: str | None = None  # an existing Dask scheduler (tcp://host:8786): evaluate tasks run there
    serve_cron: str = "0 2 * * *"  # `avo serve`: when the deployment runs (nightly, resuming the lineage)
    state_dir: str = ".avo"  # run journals (resume) under <repo>/<state_dir>/evolve/


@dataclass(frozen=True)
class AgentConfig:
    """The LangGraph variation operator (agents/). Secrets come from the environment."""

    model: str | None = None  # e.g. "openai:gpt-4.1" or "anthropic:claude-…"; None: heuristic only
    base_url: str | None = None  # an OpenAI-compatible server
    temperature: float = field(default=0.7, metadata={"min": 0})
    max_steps: int = field(default=12, metadata={"min": 1})  # model calls in propose + repair, per candidate
    max_repairs: int = field(default=3, metadata={"min": 0})  # repair rounds after a failed verify
    max_iterations: int = field(default=2, metadata={"min": 1})  # propose→verify→critique rounds per candidate
    max_tokens: int | None = None  # hard budget for the whole run (input + output tokens); None: no limit
    max_cost_usd: float | None = None  # hard budget in dollars; None: no limit
    timeout_s: float = field(default=180.0, metadata={"min": 1})  # one model request (client timeout)
    max_retries: int = field(default=5, metadata={"min": 0})  # on rate limits / transient errors, with backoff
    backoff_s: float = field(default=2.0, metadata={"min": 0})  # first retry wait; doubles, jittered, <= 60 s
    price_input_per_mtok: float | None = None  # USD per million tokens; None: agents.models' table
    price_output_per_mtok: float | None = None
    knowledge_root: str = "knowledge_base"  # notes searched by the agent (BM25)
    # evolve.operator "external": a headless coding-agent CLI per candidate (agents/external.py),
    # run in a fresh workspace holding kernel.py, LINEAGE.md, DIRECTIONS.md, knowledge_base/, ./check.
    agent_cmd: str | None = None  # e.g. "claude -p 'Read TASK.md and do it' --output-format json"; or AVO_AGENT_CMD
    agent_wall_s: float = field(default=1800.0, metadata={"min": 1})  # per candidate; the process group is killed
    agent_max_cost_usd: float | None = field(default=None, metadata={"min": 0})  # per candidate, if the CLI reports cost
    check_cmd: str | None = None  # what ./check runs on kernel.py; None: avo bench --quick on the run's device


@dataclass(frozen=True)
class ReportConfig:
    """`avo report` outputs."""

    out_dir: str = "reports"
    title: str = "avo lineage: attention forward"


@dataclass(frozen=True)
class Config:
    harness: HarnessConfig = field(default_factory=HarnessConfig)
    lineage: LineageConfig = field(default_factory=LineageConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    evolve: EvolveConfig = field(default_factory=EvolveConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    source: str = ""  # the params.yaml it came from ("" = defaults only)

    def as_dict(self) -> dict:
        """Sections as plain dicts (for MLflow params, reports)."""
        return {f.name: dataclasses.asdict(getattr(self, f.name))
                for f in dataclasses.fields(self) if f.name != "source"}


# ------------------------------------------------------------------- loading
def repo_root(start: str | Path | None = None) -> Path:
    """The nearest folder, from `start` (default: cwd) upwards, holding params.yaml,
    .dvc or .git; `start` itself if none does. Default paths hang off it."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if any((folder / marker).exists() for marker in (PARAMS_FILE, ".dvc", ".git")):
            return folder
    return here


def load_config(path: str | Path | None = None) -> Config:
    """Read params.yaml (default: ./params.yaml, defaults if absent)."""
    if path is None:
        path = Path(os.environ.get("AVO_PARAMS", PARAMS_FILE))
        if not path.exists():
            return Config()
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path} is a directory: give the params.yaml file") from None
    except UnicodeDecodeError:  # a binary file: one line, not a traceback
        raise ConfigError(f"{path} is not a text file: give a YAML params file") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: not valid YAML ({getattr(e, 'problem', e)})") from None
    return config_from_dict(raw, source=str(path))


def config_from_dict(raw: dict, source: str = "") -> Config:
    where = source or PARAMS_FILE
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping of sections at the top level")
    sections = {f.name: f for f in dataclasses.fields(Config) if f.name != "source"}
    built = {}
    for name, value in raw.items():
        if name not in sections:
            raise ConfigError(f"{where}: unknown section {name!r}; known: {', '.join(sections)}")
        cls = _section_class(sections[name])
        built[name] = _build_section(cls, value if value is not None else {}, name, where)
    return Config(**built, source=source)


def _section_class(f: dataclasses.Field) -> type:
    return f.default_factory  # each section field defaults to its class


def _build_section(cls: type, values, section: str, where: str):
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: section {section!r} must be a mapping of keys to values")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(f"{where}: unknown key {section}.{key}; "
                              f"known keys: {', '.join(fields)}")
        kwargs[key] = _check_value(value, hints[key], fields[key].metadata, f"{section}.{key}", where)
    return cls(**kwargs)


def _check_value(value, hint, meta, key: str, where: str):
    value = _coerce(value, hint, key, where)
    choices = meta.get("choices")
    if choices and value not in choices:
        raise ConfigError(f"{where}: {key} = {value!r}; use one of {', '.join(map(str, choices))}")
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and value is not None and value < lo:
        raise ConfigError(f"{where}: {key} = {value!r}; must be >= {lo}")
    if hi is not None and value is not None and value > hi:
        raise ConfigError(f"{where}: {key} = {value!r}; must be <= {hi}")
    return value


def _coerce(value, hint, key: str, where: str):
    """Accept `value` if it fits `hint` (int for float is fine; bool is not an int)."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key, where)
            except ConfigError:
                pass
        raise _type_error(value, hint, key, where)
    origin = typing.get_origin(hint) or hint
    if origin is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if origin is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if origin in (bool, str) and type(value) is origin:
        return value
    if origin in (tuple, list) and isinstance(value, list):
        item = args[0] if args else typing.Any
        return tuple(_coerce(v, item, key, where) for v in value)
    if origin is dict and isinstance(value, dict):
        return dict(value)
    if hint is typing.Any:
        return value
    raise _type_error(value, hint, key, where)


def _type_error(value, hint, key: str, where: str) -> ConfigError:
    name = getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
    return ConfigError(f"{where}: {key} = {value!r} has the wrong type; expected {name}")
