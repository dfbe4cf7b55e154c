"""`avo evolve`: run the search (resuming an unfinished run), with a live display;
`avo serve`: serve the evolve flow locally on a cron schedule.

Both run the Prefect flow in flows/evolve.py against Prefect's temporary local
API unless PREFECT_API_URL names a server; state lives in .prefect/ (Prefect),
.avo/evolve/ (the run's journal), the lineage folder and mlflow/.
"""
from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from avo.commands.bench import fail
from avo.units import tflops, unit_label

console = Console()


def _quiet_prefect() -> None:
    """Prefect's per-task INFO lines would scroll the live display away: the console
    shows warnings only, while flow and task runs still log at INFO to the Prefect
    API (each generation-<n> flow run's log lists its select/vary/evaluate/commit/log
    task runs in Prefect's UI)."""
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_LOGGING_LOGGERS_PREFECT_FLOW_RUNS_LEVEL", "INFO")
    os.environ.setdefault("PREFECT_LOGGING_LOGGERS_PREFECT_TASK_RUNS_LEVEL", "INFO")


def evolve(
    generations: int = typer.Option(None, help="Generations to run (default: params.yaml evolve.generations, 2)."),
    population: int = typer.Option(None, help="Candidates per generation (default: evolve.candidates_per_generation; "
                                 "unset: 2 on a CPU, 4 x GPUs x harness.pipeline_depth on GPUs)."),
    operator: str = typer.Option(None, help="agent | heuristic | external (default: agent if a model is configured, "
                                            "else heuristic)."),
    model: str = typer.Option(None, help="Chat model for the agent operator, e.g. openai:gpt-4.1."),
    agent_cmd: str = typer.Option(None, help="--operator external: the coding-agent command line run per candidate "
                                             "(default: params.yaml agent.agent_cmd)."),
    budget_minutes: float = typer.Option(None, help="Stop after this many wall-clock minutes (whole run, across resumes)."),
    gpu_minutes: float = typer.Option(None, help="Stop after this much evaluation time on GPUs."),
    max_tokens: int = typer.Option(None, help="Stop after this many LLM tokens."),
    max_dollars: float = typer.Option(None, help="Stop after this much LLM spend."),
    target_ratio: float = typer.Option(None, help="Stop once the best version reaches this geomean ratio to cuDNN."),
    device: str = typer.Option(None, help="cuda | cpu | auto (default: params.yaml harness.device, auto)."),
    dask_address: str = typer.Option(None, help="Run vary/evaluate tasks on an existing Dask scheduler (tcp://host:8786)."),
    suite: str = typer.Option(None, help="Timed suite (default: params.yaml harness.suite; avo on a GPU, cpu without)."),
    problem: str = typer.Option(None, help="Problem module (default: params.yaml harness.problem, attention)."),
    quick: bool = typer.Option(None, "--quick/--full", help="Quick evaluations (no timing: nothing commits); smoke runs."),
    params: str = typer.Option(None, help="params.yaml to read (default: ./params.yaml, or $AVO_PARAMS)."),
) -> None:
    """Evolve the kernel lineage: generations of select -> vary -> evaluate -> commit -> log
    until a budget ends. Running it again resumes an unfinished run; Ctrl-C stops
    cleanly after the candidates being evaluated, exit status 130 (SIGTERM: 143; press
    Ctrl-C twice to abort)."""
    if operator not in (None, "agent", "heuristic", "auto", "external"):
        fail(f"unknown operator {operator!r}: use agent, heuristic or external")
    if agent_cmd is not None:
        if not agent_cmd.strip():
            fail("--agent-cmd is empty: give the coding agent's command line")
        os.environ["AVO_AGENT_CMD"] = agent_cmd  # the flow takes plain parameters; the operator reads this
    if device not in (None, "auto", "cuda", "cpu"):
        fail(f"unknown device {device!r}: use cuda, cpu or auto")
    for name, value in (("generations", generations), ("population", population)):
        if value is not None and value < (0 if name == "generations" else 1):
            fail(f"--{name} must be {'>= 0' if name == 'generations' else '>= 1'}")
    _quiet_prefect()
    from avo import live
    from avo.config import ConfigError
    from avo.evolution import OperatorUnavailable

    try:
        from avo.edge import evolve as evolve_flow
    except ImportError as e:
        fail(f"avo evolve needs Prefect ({e}); pip install 'prefect>=3.4' prefect-dask")
    from avo.edge import make_operator, resolve

    options = dict(generations=generations, population=population, operator=operator, model=model,
                   budget_minutes=budget_minutes, gpu_minutes=gpu_minutes, max_tokens=max_tokens,
                   max_dollars=max_dollars, target_ratio=target_ratio, device=device,
                   dask_address=dask_address, params_path=params, quick=quick, suite=suite, problem=problem)
    try:  # configuration mistakes end here, in one line, before any flow starts
        resolved = resolve(**options)
        op = make_operator(resolved)
        check = getattr(op, "preflight", None)
        if check is not None:  # one tiny request (model reachable, key accepted) / the agent CLI exists
            check()
    except (OperatorUnavailable, ConfigError, ValueError, RuntimeError) as e:
        fail(str(e).splitlines()[0] if str(e).strip() else type(e).__name__)
    preflight(resolved, device_flag=device)
    from avo.evolution import partition_cpus

    partition_cpus(resolved)  # before Prefect's temporary API starts: it too runs on the work CPUs
    from avo.edge import ApiUnavailable, temporary_api

    # In a terminal: a live panel. Piped or redirected: one plain line per event, as it happens.
    # Either way the same lines go to .avo/evolve/<run>/progress.log.
    display = Progress(plain=not console.is_terminal, log_dir=resolved.state_file.parent)
    display.basis, display.problem = commit_basis_line(resolved), resolved.problem_path
    unsubscribe = live.subscribe(display.on_event)
    _say_git_commits(resolved)
    try:
        # Ctrl-C / SIGTERM: stop after the candidates in flight. The temporary Prefect API runs in
        # its own session, so the terminal's Ctrl-C does not reach it (flows/api_server.py).
        with live.stop_on_sigint(), temporary_api(), display.screen_for(console) as screen:
            display.screen = screen
            # a flow run a person can find in Prefect's UI (its generations are generation-<n>)
            named = evolve_flow.with_options(flow_run_name=f"evolve {time.strftime('%Y-%m-%d %H:%M')}")
            summary = named(**options)
    except (OperatorUnavailable, ConfigError, ValueError, ApiUnavailable) as e:
        fail(str(e).splitlines()[0])
    except KeyboardInterrupt:
        console.print("[yellow]aborted; run `avo evolve` again to resume[/]")
        raise typer.Exit(130)
    finally:
        unsubscribe()
        display.close()
    interp = resolved.device == "cpu"
    best = (f"best v{summary.best_version}: {tflops(summary.best_geomean, interp)} {unit_label(interp)} geomean"
            + (f", {summary.best_ratio_cudnn:.3f}x cuDNN" if summary.best_ratio_cudnn else "")
            if summary.best_version is not None else "no version yet")
    modelled = display.best_modelled() if interp else None
    if modelled is not None:  # the CPU lineage's best is the cost model's; its timings are informational
        v = modelled[0]
        best = (f"best by the cost model v{v.number}: {modelled[1]:.1f} modelled H100 TFLOPS (its interpreter "
                f"geomean {tflops(v.geomean, True)} TFLOPS is informational)")
    if not display.plain:
        console.print()
    state = "finished" if summary.finished else "stopped early; run `avo evolve` again to resume"
    console.print(f"{summary.stop_reason or 'done'} — run {summary.run_id} {state}. "
                  f"{summary.evaluated} evaluated, {len(summary.committed)} committed. {best}",
                  highlight=False, soft_wrap=True)
    if display.log_path is not None:
        console.print(f"progress log: {display.log_path}", highlight=False, soft_wrap=True)
    if summary.stop_reason.startswith("interrupted"):  # recorded and resumable; 128 + the signal, as shells do
        raise typer.Exit(143 if "SIGTERM" in summary.stop_reason else 130)


def preflight(resolved, device_flag: str | None) -> None:
    """What would only fail after evaluation time was spent, as one line and exit 2
    before any flow starts: a GPU asked for where there is none, a lineage or run
    journal that cannot be written (a read-only mount, permissions)."""
    from avo.commands.lineage import writable_problem

    if resolved.device == "cuda" and (device_flag or "").lower() != "auto":
        from avo.harness.runner import detect_device

        if detect_device() != "cuda":
            where = "--device cuda" if device_flag == "cuda" else "harness.device is cuda in params.yaml"
            fail(f"{where}, but no CUDA GPU is usable here: use --device cpu (Triton interpreter) or auto")
    for what, folder in (("the lineage", resolved.lineage_root), ("the run journal folder", resolved.state_file.parent)):
        problem = writable_problem(folder)
        if problem:
            fail(f"cannot write {what} {folder}: {problem}; nothing was evaluated")


def serve(
    cron: str = typer.Option(None, help="Cron schedule (default: params.yaml evolve.serve_cron, '0 2 * * *')."),
    name: str = typer.Option("nightly", help="Deployment name."),
    params: str = typer.Option(None, help="params.yaml the scheduled runs read."),
) -> None:
    """Serve the evolve flow as a deployment on a cron schedule (each run resumes
    the lineage). Schedules only fire against a Prefect server: start one with
    `prefect server start` and set PREFECT_API_URL first."""
    from avo.config import ConfigError, load_config

    try:
        cfg = load_config(params)
    except ConfigError as e:
        fail(str(e))
    cron = cron or cfg.evolve.serve_cron
    if not os.environ.get("PREFECT_API_URL"):
        console.print("[yellow]PREFECT_API_URL is not set: Prefect's temporary API does not fire schedules. "
                      "Run `prefect server start` and `export PREFECT_API_URL=http://127.0.0.1:4200/api`.[/]")
    from avo.edge import evolve as evolve_flow

    evolve_flow.serve(name=name, cron=cron, parameters={"params_path": params} if params else {})


# ---------------------------------------------------------------- the live display
def commit_basis_line(resolved) -> str:
    """What this run's lineage commits on (avo.commit_rule), said once at the start."""
    from avo.cost_basis import basis_line

    return basis_line(resolved.device, resolved.problem_path, resolved.cfg.lineage.require_confirm_cuda)


def _say_git_commits(resolved) -> None:
    """Once per run: promotions are also git commits in this checkout (lineage.git_commit)."""
    from avo.git_commit import should_git_commit

    if not should_git_commit(resolved.cfg.lineage.git_commit, resolved.lineage_root):
        return
    console.print(f"avo evolve commits each promoted version's files under {resolved.lineage_root} to git "
                  f"(lineage.git_commit: {resolved.cfg.lineage.git_commit}); set lineage.git_commit: 'off' "
                  "in params.yaml to keep git out of it.", highlight=False, soft_wrap=True, style="dim")


class Progress:
    """Listens to avo.live events. In a terminal it draws a live panel: generation,
    candidates done/failed, best geomean, ratio to cuDNN, time and budget left.
    With `plain` (stdout is a pipe or a file) it prints one line per event,
    flushed at once and never wrapped. Both write the same lines, timestamped, to
    <log_dir>/<run id>/progress.log."""

    def __init__(self, plain: bool = False, log_dir: Path | None = None):
        self.plain = plain
        self.log_dir = log_dir
        self.log_path: Path | None = None
        self._log = None
        self.screen = None
        self.info: dict = {}
        self.generation = None
        self.index = 0
        self.done = self.failed = self.committed = 0
        self.best = None  # (version, geomean, ratio)
        self.left: dict = {}
        self.ended = None  # the summary, once the run has returned
        self.recent: list[str] = []
        self.t0 = time.monotonic()
        self.note = ""
        self.basis = ""  # what the lineage commits on (commit_basis_line); said once at the start
        self.problem = None  # the problem module's path, for the CPU lineage's modelled best

    @contextmanager
    def screen_for(self, console: Console):
        if self.plain:
            yield None
            return
        with Live(self.render(), console=console, refresh_per_second=4, transient=False) as screen:
            yield screen

    def on_event(self, kind: str, data: dict) -> None:
        if kind == "start":
            self.info = data
            self.generation = data["generation"]
            if data.get("resumed"):
                self.note = f"resuming run {data['run_id']} at generation {data['generation']}"
            self._open_log(data["run_id"])
        elif kind == "seed":
            self.recent.append(f"seed evaluated: {data['status']}, geomean {self._fig(data['geomean'])}")
        elif kind == "generation":
            self.generation, self.index, self.left = data["generation"], data["index"], data["left"]
        elif kind == "candidate":
            if data["status"] != "skipped":
                self.done += 1
                self.failed += data["status"] != "ok"
            self.committed += bool(data.get("committed"))
            verdict = f"committed v{data['version']}" if data.get("committed") else data["status"]
            self.recent.append(f"g{data['generation']} slot {data['slot']} {data['technique']}: {verdict}"
                               + basis_figure(data)
                               + (f" ({data.get('detail', '')[:200]})" if not data.get("committed") else ""))
        elif kind in ("warning", "stopping"):
            self.recent.append(data.get("message") or data.get("reason", ""))
        elif kind == "supervise":
            self.recent.append("stagnation: " + "; ".join(data["directions"])[:200])
        elif kind == "end":
            self.ended = data.get("summary")
        line = self.line(kind, data)
        if line:
            self._write(line)
        if kind == "start":
            self._write(f"commits on: {self.basis_text()}")
        self.recent = self.recent[-6:]
        if self.screen is not None:
            self.screen.update(self.render())

    def line(self, kind: str, data: dict) -> str:
        """The event as one line of text ('' for none)."""
        if kind == "start":
            info = self.info
            return (f"run {info['run_id']} {'resumed at' if info.get('resumed') else 'started at'} generation "
                    f"{info['generation']} · {info.get('operator')} operator · {info.get('device')} · suite "
                    f"{info.get('suite')} · population {info.get('population')}")
        if kind == "generation":
            return f"generation {self.generation} ({self.index} of this run) started; left: {self._left()}"
        if kind in ("seed", "candidate", "warning", "stopping", "supervise"):
            return self.recent[-1] if self.recent else ""
        if kind == "end" and self.ended is not None:
            return f"run {self.ended.run_id} {'finished' if self.ended.finished else 'stopped'}: " \
                   f"{self.ended.stop_reason or 'done'}"
        return ""

    def _open_log(self, run_id: str) -> None:
        if self.log_dir is None or self._log is not None:
            return
        try:
            path = Path(self.log_dir) / run_id / "progress.log"
            path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(path, "a", encoding="utf-8", buffering=1)
            self.log_path = path
        except OSError as e:  # a log that cannot be written must not stop the run
            print(f"avo: warning: no progress log ({e})", file=sys.stderr)

    def _write(self, line: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        if self._log is not None:
            self._log.write(f"{stamp} {line}\n")
        if self.plain:
            print(f"{stamp} {line}", flush=True)

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def basis_text(self) -> str:
        if not self.basis:  # no command set it (e.g. a test): from the device, the default problem
            from avo.cost_basis import basis_line

            self.basis = basis_line(self.info.get("device", "cpu"))
        return self.basis

    def best_modelled(self):
        """(version, modelled TFLOPS) of the CPU lineage's best by its commit basis, or None."""
        lineage = self.info.get("lineage")
        if not lineage:
            return None
        from avo.cost_basis import best_modelled, problem_for_lineage
        from avo.lineage import Lineage
        from avo.selection import comparable_versions

        pool = comparable_versions(Lineage(lineage).versions(), self.info.get("device", "cpu"), self.info.get("suite"))
        return best_modelled(pool, self.problem or problem_for_lineage(lineage))

    def _interp(self) -> bool:
        return self.info.get("device") == "cpu"

    def _fig(self, x) -> str:
        return f"{tflops(x, self._interp())} {unit_label(self._interp())}"

    def _left(self) -> str:
        return ", ".join(f"{v:.1f} {k.replace('_', ' ')}" if isinstance(v, float) else f"{v} {k}"
                         for k, v in self.left.items()) or "-"

    def render(self):
        table = Table.grid(padding=(0, 2))
        info = self.info
        table.add_row("run", f"{info.get('run_id', '…')} · {info.get('operator', '?')} operator · "
                             f"{info.get('device', '?')} · suite {info.get('suite', '?')} · "
                             f"population {info.get('population', '?')}")
        table.add_row("generation", f"{self.generation} ({self.index} of this run)" if self.generation else "…")
        table.add_row("commits on", self.basis_text())
        table.add_row("candidates", f"{self.done} evaluated, {self.failed} failed, {self.committed} committed")
        table.add_row("best", self._best_text(unit_label(self._interp())))
        elapsed = time.monotonic() - self.t0
        if self.ended is not None:  # the budget figures were from the last generation's start
            left = "run finished" if self.ended.finished else "stopped; `avo evolve` resumes it"
            table.add_row("time", f"{elapsed / 60:.1f} min elapsed; {left}")
        else:
            table.add_row("time", f"{elapsed / 60:.1f} min elapsed; left: {self._left()}")
        lines = [Text(line, style="dim") for line in self.recent]
        head = [Text(self.note, style="cyan")] if self.note else []
        return Group(*head, table, *lines)

    def _best_text(self, unit: str) -> str:
        lineage = self.info.get("lineage")
        if not lineage:
            return "-"
        from avo.lineage import Lineage
        from avo.selection import comparable_versions

        pool = comparable_versions(Lineage(lineage).versions(), self.info.get("device", "cpu"), self.info.get("suite"))
        if not pool:
            return "-"
        modelled = self.best_modelled() if self._interp() else None
        if modelled is not None:
            return f"v{modelled[0].number}: {modelled[1]:.1f} modelled H100 TFLOPS (interpreter timings: informational)"
        best = max(pool, key=lambda v: (v.geomean, -v.number))
        ratio = best.result.geomean_ratio_cudnn
        return (f"v{best.number}: {tflops(best.geomean, best.result.interpreter)} {unit}"
                + (f", {ratio:.3f}x cuDNN" if ratio else ", ratio to cuDNN n/a on CPU"))


def basis_figure(data: dict) -> str:
    """A candidate event's commit-basis figure (flows/bookkeeping.basis_fields), e.g.
    " [model 321.5 H100 TFLOPS]" or " [confirm 1.031x, margin 0.012]"; "" without one."""
    basis = data.get("basis")
    if basis == "model" and data.get("model_tflops") is not None:
        return f" [model {data['model_tflops']:.1f} H100 TFLOPS]"
    if basis == "confirm" and data.get("confirm_ratio") is not None:
        margin = data.get("margin")
        return f" [confirm {data['confirm_ratio']:.3f}x" + (f", margin {margin:.3g}]" if margin is not None else "]")
    if basis == "geomean" and data.get("status") == "ok" and data.get("geomean"):
        return f" [geomean {data['geomean']:.4g} TFLOPS]"
    return ""
