"""`avo transfer --to gqa` from the command line, end to end through the evolve
flow (fake harness): a lineage of its own, seeded from the best MHA version."""
from typer.testing import CliRunner

from avo.cli import app
from avo.config import load_config
from avo.lineage import Lineage


def test_transfer_runs_a_short_evolve_into_its_own_lineage(fake_harness, run_args, tmp_path):
    fake = fake_harness()
    params = tmp_path / "params.yaml"
    mha = tmp_path / "lineage"
    params.write_text(params.read_text().replace("lineage:\n", f"lineage:\n  root: {mha}\n")
                      + f"evolve:\n  state_dir: {tmp_path / '.avo'}\n")
    # an MHA lineage with a v0 and a faster v1 (same fake harness, so comparable)
    r = CliRunner().invoke(app, ["evolve", "--params", str(params), "--device", "cpu", "--generations", "1"])
    assert r.exit_code == 0, r.output
    best = Lineage(mha).best()
    assert best is not None

    target = tmp_path / "gqa"
    r = CliRunner().invoke(app, ["transfer", "--to", "gqa", "--device", "cpu", "--generations", "1",
                                 "--population", "1", "--params", str(params), "--target", str(target)])
    assert r.exit_code == 0, r.output
    gqa = Lineage(target)
    assert gqa.versions() and gqa.get(0).source == best.source  # seeded from the best MHA kernel
    assert load_config(target / "transfer.yaml").harness.suite == "cpu"  # the interpreter's suite on a CPU
    assert fake.calls[-1]["device"] == "cpu" and len(gqa.attempts()) == 2  # seed + one candidate
