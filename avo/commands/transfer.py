"""`avo transfer --to gqa`: the MHA → GQA adaptation as a short run of its own.

Prepares <lineage>-gqa/transfer.yaml (seed = the best MHA version, suite = gqa)
and the adaptation directions (avo/transfer.py), then runs the ordinary evolve
flow on it, with the same live display as `avo evolve`. Running it again resumes.
"""
from __future__ import annotations

import typer

from avo.commands.bench import fail


def transfer(
    to: str = typer.Option("gqa", "--to", help="Target suite: gqa (32 query heads over 8 or 4 KV heads) or d64."),
    from_version: int = typer.Option(None, "--from-version", help="MHA version to start from (default: the best)."),
    target: str = typer.Option(None, help="Target lineage folder (default: <lineage.root>-<to>)."),
    generations: int = typer.Option(3, help="Generations of the transfer run (the paper's took ~30 agent-minutes)."),
    population: int = typer.Option(None, help="Candidates per generation (default: params.yaml)."),
    operator: str = typer.Option(None, help="agent | heuristic (default: agent if a model is configured)."),
    model: str = typer.Option(None, help="Chat model for the agent operator, e.g. openai:gpt-4.1."),
    device: str = typer.Option("auto", help="cuda | cpu | auto."),
    max_tokens: int = typer.Option(None, help="Stop after this many LLM tokens."),
    max_dollars: float = typer.Option(None, help="Stop after this much LLM spend."),
    params: str = typer.Option(None, help="params.yaml to start from (default: ./params.yaml)."),
) -> None:
    """Adapt the best MHA kernel to GQA (or d64) in a short evolve run committed to its own lineage."""
    from avo.commands import evolve as evolve_cmd
    from avo.config import ConfigError, load_config, repo_root
    from avo.transfer import TransferError, prepare_transfer

    if device not in ("auto", "cuda", "cpu"):
        fail(f"unknown device {device!r}: use cuda, cpu or auto")
    try:
        cfg = load_config(params)
        if device == "auto":
            from avo.harness.runner import detect_device

            device = detect_device()
        path = prepare_transfer(cfg, repo_root(), to=to, device=device, target_root=target, version=from_version)
    except (TransferError, ConfigError) as e:
        fail(str(e))
    typer.echo(f"avo transfer: {path} (run again to resume)")
    evolve_cmd.evolve(generations=generations, population=population, operator=operator, model=model,
                      budget_minutes=None, gpu_minutes=None, max_tokens=max_tokens, max_dollars=max_dollars,
                      target_ratio=None, device=device, dask_address=None, quick=None, suite=None,
                      agent_cmd=None, problem=None, params=str(path))
