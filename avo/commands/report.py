"""`avo report`: PNG + self-contained HTML + DVC metrics/plots for the lineage."""
from __future__ import annotations

import sys
from pathlib import Path

import typer

from avo.commands.lineage import open_lineage, writable_problem
from avo.commands.tree import find_journals


def fail(message: str, code: int = 2) -> None:
    """A user mistake: one line on stderr, no traceback."""
    print(f"error: {message}", file=sys.stderr)
    raise typer.Exit(code)


def report(
    lineage_root: Path = typer.Option(None, "--lineage", help="Lineage folder (default: params.yaml lineage.root)."),
    out_dir: Path = typer.Option(None, "--out", help="Output folder (default: params.yaml report.out_dir)."),
    params: Path = typer.Option(None, "--params", help="Config file (default: ./params.yaml)."),
) -> None:
    """Plot the lineage: geomean and per-configuration TFLOPS by version with cuDNN
    and FA2 lines, the parent tree with techniques, and a table; writes
    lineage.png, lineage.html (PNG inlined), metrics.json and CSVs for DVC."""
    from avo.report import build_report  # matplotlib loads only when reporting

    cfg, lineage = open_lineage(lineage_root, params)
    if not lineage.versions():
        fail(f"no lineage versions in {lineage.root}: run `avo evolve` or `avo lineage init` first")
    out = Path(out_dir or cfg.report.out_dir)
    if out.exists() and not out.is_dir():
        fail(f"--out {out} is a file: give a folder")
    problem = writable_problem(out)
    if problem:  # before matplotlib draws anything
        fail(f"cannot write the report to {out}: {problem}")
    files = build_report(lineage, out, title=cfg.report.title,
                         journals=find_journals(cfg, lineage.root))
    for f in (files.png, files.html, files.tree, files.metrics, files.curve, files.configs):
        print(f"wrote {f}")


if __name__ == "__main__":  # `python -m avo.commands.report` (used by the DVC test)
    typer.run(report)
