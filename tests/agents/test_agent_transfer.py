"""`avo transfer --to gqa`: the run-specific params file and first directions."""
from __future__ import annotations

import pytest

from avo.config import Config, load_config
from avo.directions import read_directions
from avo.transfer import TransferError, prepare_transfer
from tests.fake_results import make_candidate, make_result


def test_prepare_transfer_seeds_from_the_best_mha_version(lineage, tmp_path):
    lineage.commit(make_candidate(source="# faster\n", generation=1), make_result(tflops=(150.0, 120.0)), margin=0.01)
    path = prepare_transfer(Config(), tmp_path, to="gqa", device="cuda", source_root=lineage.root)
    cfg = load_config(path)
    assert cfg.harness.suite == "gqa" and cfg.harness.device == "cuda"
    assert cfg.lineage.root == "lineage-gqa" and cfg.lineage.seed == "lineage/v0001/kernel.py"
    d = read_directions(tmp_path / "lineage-gqa")
    assert d.author == "transfer" and any("head packing" in x for x in d.directions)
    cpu = prepare_transfer(Config(), tmp_path, to="gqa", device="cpu", source_root=lineage.root,
                           target_root=tmp_path / "t2", version=0)
    assert load_config(cpu).harness.suite == "cpu" and load_config(cpu).lineage.seed.endswith("v0000/kernel.py")


def test_transfer_errors_are_one_line(tmp_path):
    with pytest.raises(TransferError, match="no correct committed version"):
        prepare_transfer(Config(), tmp_path, to="gqa", device="cpu", source_root=tmp_path / "empty")
    with pytest.raises(TransferError, match="unknown transfer target 'xyz'"):
        prepare_transfer(Config(), tmp_path, to="xyz", device="cpu")
