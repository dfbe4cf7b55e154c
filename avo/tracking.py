"""MLflow tracking: the only module that imports mlflow.

One experiment per problem, one parent run per evolve session, one nested run
per candidate (params: parent, operator, generation, technique; metrics: TFLOPS
per configuration, geomean, ratios to cuDNN and FA2, errors, compile stats, and
the commit basis: commit/model_tflops (CPU: modelled H100 TFLOPS, what the CPU
lineage commits on), commit/confirm_ratio and commit/confirm_spread (GPU: the
interleaved re-measure), commit/commit_margin (the margin the rule applied);
tags: status, committed, commit_basis (model | confirm | geomean), commit_reason;
artifacts: source, diff to parent, harness log).

Names a person can find: the session run is `evolve <date time> <suite>`, a
candidate `g<generation>-c<n> <technique>` (n counts the generation's candidates
in the order they finished). Each lineage version a candidate derives from is
logged once per session as a baseline run, `baseline v<N> <technique>` (tag
avo.kind=baseline), with the same metric keys from the figures the lineage
recorded for it, so MLflow's compare view has the parent beside its children.

The default store is local: sqlite:///<repo>/mlflow/mlflow.db with artifacts in
<repo>/mlflow/artifacts, no server; MLFLOW_TRACKING_URI or params.yaml
(tracking.uri) point elsewhere. Tracking is a by-product, never a dependency:
a broken or unreachable store prints one warning line, switches tracking off
for the rest of the process, and never raises into the caller, so it can never
cost a lineage commit. We use MlflowClient with explicit run ids rather than
the fluent API's global "active run", so parallel workers can log safely.
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from avo.commit_rule import basis_of
from avo.config import TrackingConfig, repo_root

if TYPE_CHECKING:  # for annotations only: importing these costs nothing at runtime
    from avo.candidate import Candidate
    from avo.lineage import CommitDecision
    from avo.records import EvalResult

log = logging.getLogger(__name__)

# Set before mlflow is imported. Without the retry/timeout caps an unreachable
# server costs minutes of backoff per call; telemetry is off in this project.
_ENV_DEFAULTS = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
}
_PARAM_MAX = 6000  # MLflow's limit on a param value
_TAG_MAX = 8000


def default_uri(root: Path | None = None) -> str:
    root = root or repo_root()
    return f"sqlite:///{(root / 'mlflow' / 'mlflow.db').resolve()}"


def metric_key(*parts: str) -> str:
    """MLflow keys allow [\\w.- :/]; configuration names carry spaces and '/'."""
    return "/".join(re.sub(r"[^\w.\-]+", "_", p).strip("_") for p in parts)


class Tracker:
    def __init__(self, uri: str | None = None, experiment: str = "attention-fwd", *,
                 enabled: bool = True, log_artifacts: bool = True, root: Path | None = None):
        for k, v in _ENV_DEFAULTS.items():
            os.environ.setdefault(k, v)
        self._default_store = uri is None and not os.environ.get("MLFLOW_TRACKING_URI")
        self.root = root or repo_root()
        self.uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or default_uri(self.root)
        self.experiment = experiment
        self.log_artifacts = log_artifacts
        self.enabled = enabled
        self.warnings: list[str] = []  # what went wrong, for callers and tests
        self.session_run_id: str | None = None
        self.lineage_root: Path | None = None  # where baselines (parent versions) are read from
        self._baselines: set[int] = set()  # versions logged as baselines in this session
        self._per_generation: dict[int, int] = {}  # candidates logged per generation (the c<n> in names)
        self._client = None
        self._experiment_id: str | None = None

    @classmethod
    def from_config(cls, cfg: TrackingConfig, root: Path | None = None) -> "Tracker":
        return cls(cfg.uri, cfg.experiment, enabled=cfg.enabled,
                   log_artifacts=cfg.log_artifacts, root=root)

    # ------------------------------------------------------------ public API
    @contextmanager
    def start_session(self, name: str | None = None, params: dict | None = None,
                      tags: dict | None = None, lineage_root: Path | str | None = None,
                      suite: str | None = None) -> Iterator["Tracker"]:
        """The parent run of one evolve session; candidates logged inside nest under it.
        Default name: `evolve <date time> <suite>`. With `lineage_root`, each parent
        version is logged once as a baseline run (see the module docstring)."""
        run_id = None
        self.lineage_root = Path(lineage_root) if lineage_root else None
        self._baselines, self._per_generation = set(), {}
        if not self.enabled:
            yield self
            return
        with self._guard("starting the session run"):
            client, exp = self._connect()
            run = client.create_run(exp, run_name=name or session_name(suite),
                                    tags={"avo.kind": "session", **_str_dict(tags or {})})
            run_id = run.info.run_id
            self._log_batch(run_id, params=_flatten(params or {}))
            self.session_run_id = run_id
        status = "FINISHED"
        try:
            yield self
        except BaseException:
            status = "FAILED"
            raise
        finally:
            self.session_run_id = None
            if run_id and self.enabled:
                with self._guard("closing the session run"):
                    self._client.set_terminated(run_id, status)

    def log_session_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """E.g. best geomean after each generation, on the session run."""
        if not (self.enabled and self.session_run_id):
            return
        with self._guard("logging session metrics"):
            self._log_batch(self.session_run_id, metrics=metrics, step=step or 0)

    def log_candidate(self, candidate: "Candidate", result: "EvalResult",
                      decision: "CommitDecision | None", diff: str = "",
                      generation: int | None = None, margin: float | None = None) -> str | None:
        """One run per candidate (nested under the session, if any). Returns its run id.
        `margin`: the margin the commit rule applied (avo.promotion.Promotion.margin)."""
        if not self.enabled:
            return None
        if candidate.parent is not None:
            self.log_baseline(candidate.parent)
        with self._guard("logging a candidate"):
            client, exp = self._connect()
            gen = candidate.generation if generation is None else generation
            tags = {"status": result.status,
                    "committed": str(bool(decision and decision.committed)).lower(),
                    "avo.kind": "candidate", "operator": candidate.operator,
                    "device": result.device, "interpreter": str(result.interpreter).lower(),
                    "commit_basis": basis_of(result),
                    **{f"env.{k}": v for k, v in result.env.items() if v is not None}}
            if decision is not None:
                tags["commit_reason"] = decision.reason
                if decision.version is not None:
                    tags["version"] = f"v{decision.version}"
            if result.message:
                tags["message"] = result.message
            if self.session_run_id:
                tags["mlflow.parentRunId"] = self.session_run_id
            self._per_generation[gen] = self._per_generation.get(gen, 0) + 1
            name = (f"seed v{decision.version if decision and decision.version is not None else 0}"
                    if candidate.operator == "seed"
                    else f"g{gen}-c{self._per_generation[gen]} {candidate.technique.name}")
            run = client.create_run(exp, run_name=_clip(name, 200), tags=_str_dict(tags))
            run_id = run.info.run_id
            self._log_batch(run_id, params=_candidate_params(candidate, result, gen),
                            metrics={**_candidate_metrics(result, decision, margin),
                                     **_operator_metrics(candidate.meta)})
            if self.log_artifacts:
                client.log_text(run_id, candidate.source, "kernel.py")
                if diff:
                    client.log_text(run_id, diff, "diff_to_parent.patch")
                client.log_text(run_id, result.log_tail or "(empty)\n", "harness.log")
                client.log_text(run_id, result.to_json(), "result.json")
                transcript = _transcript(candidate.meta)
                if transcript:  # an external coding agent's stdout/stderr (truncated)
                    client.log_text(run_id, transcript, "agent_transcript.log")
            client.set_terminated(run_id, "FINISHED")
            return run_id
        return None

    def log_baseline(self, number: int) -> str | None:
        """Lineage version `number` as a baseline run of this session (once), with the
        metrics its lineage record holds. None if there is no lineage or no such version."""
        if not (self.enabled and self.lineage_root) or number in self._baselines:
            return None
        self._baselines.add(number)
        from avo.lineage import Lineage  # lazy: the tracker stays importable alone

        lineage = Lineage(self.lineage_root)
        if not lineage.has(number):
            return None
        version = lineage.get(number)
        result = version.result
        with self._guard("logging a baseline"):
            client, exp = self._connect()
            tags = {"avo.kind": "baseline", "status": result.status, "committed": "true",
                    "version": f"v{number}", "device": result.device, "commit_basis": basis_of(result),
                    "interpreter": str(result.interpreter).lower(),
                    **{f"env.{k}": v for k, v in result.env.items() if v is not None}}
            if self.session_run_id:
                tags["mlflow.parentRunId"] = self.session_run_id
            technique = version.technique.name if version.technique else ""
            run = client.create_run(exp, run_name=_clip(f"baseline v{number} {technique}".strip(), 200),
                                    tags=_str_dict(tags))
            run_id = run.info.run_id
            params = {"version": f"v{number}", "suite": result.suite, "device": result.device,
                      "source_sha256": version.sha256}
            self._log_batch(run_id, params=params, metrics=_candidate_metrics(result, None))
            if self.log_artifacts:
                client.log_text(run_id, version.source, "kernel.py")
                client.log_text(run_id, result.to_json(), "result.json")
            client.set_terminated(run_id, "FINISHED")
            return run_id
        return None

    # ------------------------------------------------------------ internals
    @contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        """Run a tracking step; on any failure warn once and switch tracking off.
        Callers check `self.enabled` first: a disabled tracker does nothing."""
        try:
            yield
        except Exception as e:  # noqa: BLE001 - tracking must never stop a run
            self.enabled = False
            msg = (f"avo: warning: MLflow tracking failed while {what} at {self.uri} "
                   f"({type(e).__name__}: {_clip(str(e), 200)}); tracking is off for the rest "
                   f"of this run, lineage commits are unaffected")
            self.warnings.append(msg)
            log.warning(msg)
            print(msg, file=sys.stderr)

    def _connect(self):
        if self._client is None:
            from mlflow.tracking import MlflowClient  # the one place mlflow is imported

            for noisy in ("mlflow.store.db.utils", "alembic"):  # "Creating initial MLflow database tables..."
                logging.getLogger(noisy).setLevel(logging.WARNING)

            if self._default_store:
                (self.root / "mlflow").mkdir(parents=True, exist_ok=True)
            self._client = MlflowClient(tracking_uri=self.uri)
        if self._experiment_id is None:
            exp = self._client.get_experiment_by_name(self.experiment)
            if exp is None:
                location = None
                if self._default_store:
                    location = (self.root / "mlflow" / "artifacts").resolve().as_uri()
                elif self.uri.startswith("sqlite:///"):
                    # beside the database: MLflow's default is ./mlruns in whatever directory avo runs
                    # from (it littered the repository root, and a stray ./mlruns changes MLflow's store)
                    db = Path(self.uri[len("sqlite:///"):])
                    location = (db.parent / "artifacts").resolve().as_uri()
                self._experiment_id = self._client.create_experiment(
                    self.experiment, artifact_location=location)
            else:
                self._experiment_id = exp.experiment_id
        return self._client, self._experiment_id

    def _log_batch(self, run_id: str, params: dict | None = None,
                   metrics: dict | None = None, step: int = 0) -> None:
        from mlflow.entities import Metric, Param

        now = int(time.time() * 1000)
        ms = [Metric(k, float(v), now, step) for k, v in (metrics or {}).items()
              if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
        ps = [Param(k, _clip(str(v), _PARAM_MAX)) for k, v in (params or {}).items()]
        for i in range(0, len(ps), 100):  # MLflow caps a batch at 100 params
            self._client.log_batch(run_id, params=ps[i:i + 100])
        for i in range(0, len(ms), 1000):  # and at 1000 metrics
            self._client.log_batch(run_id, metrics=ms[i:i + 1000])


def session_name(suite: str | None = None) -> str:
    """`evolve 2026-11-26 05:30 cpu`: when it started and what it measured."""
    return f"evolve {time.strftime('%Y-%m-%d %H:%M')}" + (f" {suite}" if suite else "")


def _candidate_params(candidate: "Candidate", result: "EvalResult", generation: int) -> dict:
    t = candidate.technique
    return {"parent": f"v{candidate.parent}" if candidate.parent is not None else "none",
            "operator": candidate.operator, "generation": generation, "technique": t.name,
            "technique_expected": t.expected, "technique_why": t.why,
            "source_sha256": candidate.sha256, "suite": result.suite, "device": result.device}


def _candidate_metrics(result: "EvalResult", decision: "CommitDecision | None",
                       margin: float | None = None) -> dict:
    confirm, model = result.confirm or {}, result.model or {}
    m: dict[str, Any] = {
        "evaluate/geomean_tflops": result.geomean_tflops,
        "evaluate/ratio_cudnn": result.geomean_ratio_cudnn,
        "evaluate/ratio_fa2": result.geomean_ratio_fa2,
        "evaluate/max_rel_err": result.max_rel_err,
        "evaluate/max_abs_err": result.max_abs_err,
        "evaluate/wall_s": result.wall_s,
        "commit/committed": 1.0 if decision and decision.committed else 0.0,
        # the commit basis (avo.commit_rule): absent figures are skipped by _log_batch
        "commit/model_tflops": model.get("modelled_tflops"),
        "commit/confirm_ratio": confirm.get("ratio"),
        "commit/confirm_spread": confirm.get("spread"),
        "commit/commit_margin": margin,
    }
    for t in result.timings:
        tflops = t.tflops if result.ok else 0.0  # a wrong kernel scores 0
        m[metric_key("evaluate", "tflops", t.config)] = tflops
        m[metric_key("evaluate", "ms", t.config)] = t.ms
        if t.cudnn_tflops:
            m[metric_key("evaluate", "ratio_cudnn", t.config)] = tflops / t.cudnn_tflops
        if t.fa2_tflops:
            m[metric_key("evaluate", "ratio_fa2", t.config)] = tflops / t.fa2_tflops
    for k, v in _flatten(result.compile_stats).items():
        m[metric_key("compile", *k.split("."))] = v
    return m


# What an operator spent on one candidate (agent: tokens, dollars, calls, retries; external: dollars, seconds).
_OPERATOR_METRICS = ("input_tokens", "output_tokens", "tokens", "cost_usd", "model_calls", "model_retries",
                     "agent_wall_s")


def _operator_metrics(meta: dict) -> dict:
    out = {}
    for key in _OPERATOR_METRICS:
        value = (meta or {}).get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[f"operator/{key}"] = float(value)
    return out


def _transcript(meta: dict) -> str:
    path = (meta or {}).get("transcript")
    if path:
        try:
            return Path(path).read_text(errors="replace")
        except OSError:
            pass
    return (meta or {}).get("transcript_tail") or ""


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _str_dict(d: dict) -> dict[str, str]:
    return {str(k): _clip(v if isinstance(v, str) else json.dumps(v), _TAG_MAX) for k, v in d.items()}


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"
