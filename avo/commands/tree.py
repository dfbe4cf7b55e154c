"""`avo tree`: the evolution tree as one self-contained HTML page (see avo.tree)."""
from __future__ import annotations

from pathlib import Path

import typer

from avo.commands.lineage import LINEAGE_OPT, PARAMS_OPT, fail, open_lineage, writable_problem


def find_journals(cfg, lineage_root: Path) -> list[dict]:
    """The evolve run journal kept for this lineage (.avo/evolve/<hash>.json), if any."""
    from avo.run_state import state_path
    from avo.tree import load_journals

    return load_journals([state_path(Path(cfg.evolve.state_dir), lineage_root)])


def tree(
    root: Path = LINEAGE_OPT,
    out: Path = typer.Option(None, "--out", help="The page to write (default: <report.out_dir>/tree.html)."),
    journal: list[Path] = typer.Option(None, "--journal", help="Extra run journal(s) (.avo/evolve/*.json) for the cost table."),
    params: Path = PARAMS_OPT,
) -> None:
    """Write the evolution tree: every candidate under its parent, committed ones marked;
    hover for status, score and technique; click for source, diff, per-config figures and
    the harness log. One HTML file that works offline."""
    from avo.tree import build_tree, load_journals

    cfg, lineage = open_lineage(root, params, must_exist=True)
    if not lineage.versions() and not lineage.attempts():
        fail(f"nothing to draw in {lineage.root}: no versions and no attempts yet")
    out = out or Path(cfg.report.out_dir) / "tree.html"
    if out.is_dir():
        fail(f"--out {out} is a folder: give the page's file name, e.g. {out / 'tree.html'}")
    for p in journal or []:
        if not p.is_file():
            fail(f"no such journal file: {p}")
    problem = writable_problem(out.parent)
    if problem:
        fail(f"cannot write {out}: {problem}")
    journals = find_journals(cfg, lineage.root) + load_journals(list(journal or []))
    path = build_tree(lineage, out, title=f"{cfg.report.title}: evolution tree", journals=journals)
    print(f"wrote {path}")
