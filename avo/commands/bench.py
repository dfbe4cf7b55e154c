"""`avo bench KERNEL.py`: judge one candidate on the suite and print a table."""
from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from avo import units
from avo.records import EvalResult

console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 2) -> None:
    """A user mistake: one line on stderr, no traceback."""
    # soft_wrap: one line however narrow the terminal (rich wraps at its width otherwise)
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def bench(
    kernel: Path = typer.Argument(..., help="Candidate kernel file defining the problem's entry point "
                                            "(attention: attention(q, k, v, causal, sm_scale))."),
    device: str = typer.Option("auto", help="cuda, cpu (Triton interpreter, small shapes) or auto."),
    suite: str = typer.Option(None, help="Timed suite: avo (MHA+GQA), mha, gqa, d64, cpu. "
                                         "Default: avo on a GPU, cpu without one."),
    json_out: Path = typer.Option(None, "--json", help="Also write the full record to this JSON file."),
    timeout: float = typer.Option(None, help="Seconds before the evaluation is killed."),
    quick: bool = typer.Option(False, help="Compile and a small correctness check only; no timing."),
    problem: Path = typer.Option(None, help="Problem module (default: kernel_src/attention/problem.py; "
                                            "also kernel_src/rmsnorm/problem.py)."),
) -> None:
    """Evaluate a candidate kernel: correctness on fresh random inputs, then TFLOPS
    against the problem's library baselines (attention: cuDNN and FlashAttention-2)
    timed in the same run. Exit code 0 only when the candidate passed every check."""
    from avo.harness import UnknownSuite, evaluate
    from avo.harness.static_checks import SourceError, check_contract, parse
    from avo.problem import DEFAULT_PROBLEM, load_problem

    if device not in ("auto", "cuda", "cpu"):
        fail(f"unknown device {device!r}: use cuda, cpu or auto")
    if problem is not None and not problem.is_file():
        fail(f"no such problem module: {problem}")
    if kernel.is_dir():
        fail(f"{kernel} is a directory: give the kernel's .py file (e.g. {kernel}/kernel.py)")
    if not kernel.is_file():
        fail(f"no such kernel file: {kernel}")
    if timeout is not None and not timeout > 0:
        fail(f"--timeout must be a positive number of seconds, not {timeout:g}")
    if json_out is not None and json_out.is_dir():
        fail(f"--json {json_out} is a directory: give a file name, e.g. {json_out}/result.json")
    if device == "cuda":
        from avo.harness import detect_device

        if detect_device() != "cuda":
            fail("--device cuda, but no CUDA GPU is usable here: use --device cpu (Triton interpreter) or auto")
    problem_mod = load_problem(problem if problem is not None else DEFAULT_PROBLEM)
    try:
        check_contract(parse(kernel.read_text()), problem_mod)
    except SourceError as e:
        fail(f"{kernel} is not a candidate kernel: {e}")
    except UnicodeDecodeError:
        fail(f"{kernel} is not a text file")

    try:
        with console.status(f"evaluating {kernel} in an isolated worker process…"):
            result = evaluate(kernel, device=device, suite=suite, timeout_s=timeout, quick=quick,
                              **({"problem_path": problem.resolve()} if problem is not None else {}))
    except UnknownSuite as e:
        fail(str(e))

    print_result(result, str(kernel), problem_mod)
    if json_out:
        record = {"kernel": str(kernel), **result.to_dict()}
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(record, indent=2))
        console.print(f"wrote {json_out}")
    raise typer.Exit(0 if result.ok else 1)


def print_result(result: EvalResult, title: str, problem=None) -> None:
    """problem: its shapes give a GB/s column where they say what bytes they move."""
    interp = result.interpreter
    shapes = {s.name: s for suite in getattr(problem, "SUITES", {}).values() for s in suite if hasattr(s, "bytes")}
    labels = result.env.get("baseline_labels") or {}
    unit = "TFLOPS (interpreter)" if interp else "TFLOPS"  # one unit everywhere (avo.units)
    if interp:
        console.print("[yellow]CPU run: Triton interpreter timings — they say nothing about GPU speed "
                      "and are never compared with GPU figures.[/]")
    table = Table(title=f"{title} — suite {result.suite} on {result.env.get('gpu', result.device)}")
    table.add_column("config")
    table.add_column(unit, justify="right")
    rate = any(t.config in shapes for t in result.timings)
    if rate:  # a memory-bound problem: bytes moved per second, beside (never instead of) FLOPs
        table.add_column("GB/s (interpreter)" if interp else "GB/s", justify="right")
    # the record's baseline columns are named cudnn/fa2; the problem's labels say what fills them
    columns = [c for c in ("cudnn", "fa2") if not labels or c in labels]
    heads = {c: (labels[c].split(" (")[0] if c in labels else {"cudnn": "cuDNN", "fa2": "FA2"}[c]) for c in columns}
    if not interp:
        for c in columns:
            table.add_column(heads[c], justify="right")
        for c in columns:
            table.add_column(f"× {heads[c]}", justify="right")
    for t in result.timings:
        row = [t.config, units.tflops(t.tflops, interp)]
        if rate:
            shape = shapes.get(t.config)
            row.append(f"{shape.bytes() / (t.ms * 1e-3) / 1e9:.3g}" if shape and t.ms else "-")
        if not interp:
            row += [_num(getattr(t, f"{c}_tflops")) for c in columns] + [_ratio(getattr(t, f"ratio_{c}")) for c in columns]
        table.add_row(*row)
    if result.timings and result.ok:
        row = ["geomean", units.tflops(result.geomean_tflops, interp)] + ([""] if rate else [])
        if not interp:
            row += [""] * len(columns) + [_ratio(getattr(result, f"geomean_ratio_{c}")) for c in columns]
        table.add_row(*row, style="bold")
    if result.timings:
        console.print(table)
        for c in columns if not interp else ():
            if c in labels:
                console.print(f"{heads[c]}: {labels[c]}", highlight=False)

    passed = sum(c.passed for c in result.checks)
    console.print(f"correctness: {passed}/{len(result.checks)} checks passed; "
                  f"max abs err {result.max_abs_err:.2e}, max rel err {result.max_rel_err:.2e}")
    env = result.env
    console.print(f"gpu {env.get('gpu', '?')} | driver {env.get('driver', '-')} | torch {env.get('torch', '?')} | "
                  f"triton {env.get('triton', '?')} | cuDNN {env.get('cudnn', '-')} | wall {result.wall_s:.1f} s",
                  highlight=False)
    if env.get("baseline_errors"):
        console.print(f"[yellow]baselines unavailable: {env['baseline_errors']}[/]")
    if result.sandbox or result.status != "compile_error":
        sandbox = result.sandbox or "none"
        warn = "" if sandbox.startswith("namespaces") else " [yellow](weaker than namespaces: see docs/security.md)[/]"
        console.print(f"sandbox: {sandbox}{warn}", highlight=False)
    for t in result.heldout:
        ratio = f", {_ratio(t.ratio_cudnn)} cuDNN" if t.ratio_cudnn else ""
        console.print(f"held out: {t.config}: {units.tflops(t.tflops, result.interpreter)}{ratio}", highlight=False)
    for flag in result.flags:
        console.print(f"[yellow]flag: {flag}[/]", highlight=False)
    guard = env.get("gpu_sharing_guard")
    if guard and guard != "on":
        console.print(f"[yellow]shared-GPU guard {guard}: timings unguarded against other GPU work[/]", highlight=False)
    for shared in env.get("gpu_shared") or []:
        busy = ", ".join(f"{pid} {p.get('what') or '(gone)'} at {p.get('sm')}% SM" for pid, p in shared.get("pids", {}).items())
        console.print(f"[yellow]timed on a shared GPU ({shared.get('when')}): {busy} "
                      "were busy on it; these figures are not this kernel's alone[/]", highlight=False)
    colour = "green" if result.ok else "red"
    line = f"status: [bold {colour}]{result.status}[/]"
    if result.message:
        line += f" — {result.message}"
    console.print(line, highlight=False)
    if not result.ok and result.log_tail.strip():
        console.print("[dim]last lines of the evaluation log:[/]")
        console.print("\n".join(result.log_tail.strip().splitlines()[-8:]), markup=False, highlight=False)


def _num(x) -> str:
    return f"{x:.1f}" if x else "-"


def _ratio(x) -> str:
    return f"{x:.2f}×" if x else "-"
