"""The `avo` command line. Each subcommand lives in its own module under
avo/commands/ and is registered here; user mistakes end in one line and exit 2.
"""
from __future__ import annotations

import typer

from avo.commands import bench as bench_cmd
from avo.commands import lineage as lineage_cmd
from avo.commands import report as report_cmd

app = typer.Typer(
    name="avo",
    help="avo: agentic variation operators — evolutionary search over Triton attention kernels.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """avo: agentic variation operators — evolutionary search over Triton attention kernels."""


app.command("bench")(bench_cmd.bench)
app.add_typer(lineage_cmd.app, name="lineage")
app.command("report")(report_cmd.report)
from avo.commands import tree as tree_cmd  # noqa: E402
app.command("tree")(tree_cmd.tree)
from avo.commands import evolve as evolve_cmd  # noqa: E402  (evolve + serve; Prefect is imported lazily)
app.command("evolve")(evolve_cmd.evolve)
from avo.commands.serve_guard import guarded  # noqa: E402  (one-line errors before Prefect serves)
app.command("serve")(guarded(evolve_cmd.serve))
from avo.commands import transfer as transfer_cmd  # noqa: E402
app.command("transfer")(transfer_cmd.transfer)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
