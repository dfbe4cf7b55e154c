"""Transfer: adapt the best MHA kernel to another suite (GQA) as a short run of its own.

The AVO paper's MHA → GQA step: the evolved MHA kernel seeds a new lineage that
is evolved on the GQA suite for a few generations. Here that is the ordinary
evolve flow (flows/evolve.py) pointed at a run-specific params file:

    <target>/transfer.yaml   params.yaml with lineage.root = <target>,
                             lineage.seed = <source>/vNNNN/kernel.py (the MHA best),
                             harness.suite = gqa (on a GPU; "cpu" under the interpreter)
    <target>/directions.json the adaptation directions the first proposals read

so the seed is re-measured on the GQA suite and committed as the new lineage's v0,
and every later version lands in <target> with its own attempts log. Plain Python.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml

from avo.config import Config
from avo.directions import Directions, read_directions, write_directions
from avo.lineage import Lineage

TARGETS = {
    # target -> (suite on a GPU, suite on the CPU interpreter, directions for the first proposals)
    "gqa": ("gqa", "cpu", [
        "map query head h to KV head h // GROUP and keep the kernel correct for GROUP 1, 2, 4 and 8",
        "GQA head packing: let one program serve the GROUP query heads of one KV head so K/V tiles load once",
        "order the grid so the query heads sharing a KV head run together (L2 reuse of K/V)",
        "re-tune BLOCK_M/BLOCK_N/num_warps for 32 query heads (more programs per wave than MHA)",
    ]),
    "d64": ("d64", "cpu", [
        "re-tune tiles for head dim 64: BLOCK_N 128 and more stages usually fit",
        "head dim 64 halves matmul work per exp: hide the exps (pipelining, fewer masked tiles)",
    ]),
}
PARAMS_NAME = "transfer.yaml"


class TransferError(ValueError):
    """A transfer that cannot start (one line)."""


def prepare_transfer(cfg: Config, root: str | Path, *, to: str, device: str, source_root: str | Path | None = None,
                     target_root: str | Path | None = None, version: int | None = None) -> Path:
    """Write <target>/transfer.yaml (and the first directions) and return its path;
    run it with flows.evolve.evolve(params_path=...)."""
    if to not in TARGETS:
        raise TransferError(f"unknown transfer target {to!r}; known: {', '.join(TARGETS)}")
    root = Path(root)
    source = Path(source_root) if source_root else root / cfg.lineage.root_for(device)
    target = Path(target_root) if target_root else source.with_name(f"{source.name}-{to}")
    lineage = Lineage(source)
    if version is None:
        best = lineage.best()
        if best is None:
            raise TransferError(f"{source} has no correct committed version to transfer; run `avo evolve` first")
        version = best.number
    if not lineage.has(version):
        raise TransferError(f"{source} has no version v{version}")
    seed = source / f"v{version:04d}" / "kernel.py"
    suite = TARGETS[to][0] if device == "cuda" else TARGETS[to][1]
    params = dataclasses.replace(
        cfg,
        lineage=dataclasses.replace(cfg.lineage, root=_rel(target, root), seed=_rel(seed, root)),
        harness=dataclasses.replace(cfg.harness, suite=suite, device=device))
    target.mkdir(parents=True, exist_ok=True)
    path = target / PARAMS_NAME
    header = (f"# Transfer {source.name} v{version} -> {to} (suite {suite} on {device}); written by avo transfer.\n"
              f"# Run again with: avo transfer --to {to}   (or avo evolve --params {_rel(path, root)})\n")
    path.write_text(header + yaml.safe_dump(_plain(params.as_dict()), sort_keys=False))
    if read_directions(target) is None:
        write_directions(target, Directions(directions=TARGETS[to][2], trigger=f"transfer from {source.name} v{version}",
                                            rationale=f"adapt the {source.name} kernel to the {to} suite",
                                            author="transfer"))
    return path


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path.resolve())


def _plain(d):
    if isinstance(d, dict):
        return {k: _plain(v) for k, v in d.items()}
    if isinstance(d, (list, tuple)):
        return [_plain(v) for v in d]
    return d
