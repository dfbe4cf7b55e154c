"""The harness end to end on the CPU (Triton interpreter): the honest seed passes
every stage; broken kernels get the right status. Cheating kernels are in
tests/adversarial/."""
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from avo.cli import app
from avo.harness import UnknownSuite, evaluate

SEED_PATH = Path(__file__).parents[2] / "kernel_src/attention/seeds/fa2.py"
SEED = SEED_PATH.read_text()


@pytest.fixture(scope="module")
def seed_result():
    return evaluate(SEED_PATH, device="cpu")


def test_seed_passes_every_stage(seed_result):
    r = seed_result
    assert r.status == "ok", r.message + r.log_tail
    phases = {c.phase for c in r.checks}
    # timed calls are verified too ("timed"), and every timed shape again after timing
    assert {"compile", "check", "timed/warm-up", "timed", "recheck", "recheck/timed"} <= phases
    assert all(c.passed for c in r.checks)
    assert {c.dtype for c in r.checks} == {"bfloat16", "float16"}
    assert len(set(r.seeds)) == len(r.seeds) >= 6  # fresh seeds, recorded
    assert r.interpreter and r.device == "cpu"
    assert [t.config for t in r.timings] == ["mha b1 s128 d64 full fp16", "gqa4/2 b1 s128 d64 causal fp16"]
    assert all(t.tflops > 0 and t.cudnn_tflops is None for t in r.timings)
    assert r.env["torch"] and r.env["triton"] and r.source_sha256


def test_seeds_differ_between_evaluations(seed_result):
    again = evaluate(SEED, device="cpu", quick=True)
    assert again.status == "ok" and not set(again.seeds) & set(seed_result.seeds)


def test_quick_mode_checks_but_does_not_time():
    r = evaluate(SEED, device="cpu", quick=True)
    assert r.status == "ok" and r.timings == [] and r.heldout == []
    checked = [c.shape for c in r.checks if c.phase == "check"]
    assert {c.phase for c in r.checks} == {"compile", "check"} and len(set(checked)) <= 3
    # each check shape twice: its batch, then its first call repeated at the same addresses
    assert all(checked.count(shape) == 2 for shape in checked)


def test_wrong_scale_is_incorrect():
    r = evaluate(SEED.replace("sm_scale * 1.4426950408889634", "sm_scale * 1.5"), device="cpu", quick=True)
    assert r.status == "incorrect" and "out of tolerance" in r.message


def test_triton_compile_error_is_compile_error():
    broken = SEED.replace("qk = tl.dot(q, tl.trans(k)) * sm_scale_log2", "qk = tl.dot(q, k) * sm_scale_log2")
    r = evaluate(broken, device="cpu", quick=True)
    assert r.status in ("compile_error", "crashed") and r.message
    assert r.status == "compile_error", r.message


def test_syntax_error_is_compile_error_without_starting_a_worker():
    r = evaluate("def attention(q, k, v:\n", device="cpu")
    assert r.status == "compile_error" and "syntax error" in r.message and r.wall_s == 0.0


def test_unknown_suite_is_a_caller_error():
    with pytest.raises(UnknownSuite, match="unknown suite 'nope'"):
        evaluate(SEED, device="cpu", suite="nope")


# ------------------------------------------------------------------- avo bench
def test_bench_prints_table_and_writes_json(tmp_path):
    out = tmp_path / "r.json"
    res = CliRunner().invoke(app, ["bench", str(SEED_PATH), "--device", "cpu", "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "interpreter timings" in res.output and "status: ok" in res.output
    assert "mha b1 s128 d64 full fp16" in res.output
    record = json.loads(out.read_text())
    assert record["status"] == "ok" and record["kernel"] == str(SEED_PATH) and record["timings"]


def test_bench_exits_nonzero_for_a_rejected_candidate(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(SEED + "\nimport os\n")
    out = tmp_path / "r.json"
    res = CliRunner().invoke(app, ["bench", str(bad), "--device", "cpu", "--json", str(out)])
    assert res.exit_code == 1 and "rejected" in res.output
    assert json.loads(out.read_text())["status"] == "rejected"


@pytest.mark.parametrize("args, fragment", [
    (["bench", "does/not/exist.py"], "no such kernel file"),
    (["bench", "__SEED__", "--suite", "bogus"], "unknown suite"),
    (["bench", "__SEED__", "--device", "tpu"], "unknown device"),
])
def test_bench_user_mistakes_get_one_line_and_exit_2(args, fragment):
    args = [str(SEED_PATH) if a == "__SEED__" else a for a in args]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2 and fragment in res.output
    assert "Traceback" not in res.output


def test_the_static_check_holds_a_kernel_to_its_own_problems_entry_point():
    """An RMSNorm kernel judged as an attention candidate stops at the contract check,
    before any process starts (the entry point of another loaded problem does not count)."""
    from pathlib import Path

    from avo.harness import evaluate

    rmsnorm = Path("kernel_src/rmsnorm/seeds/rowwise.py").read_text()
    r = evaluate(rmsnorm, device="cpu")
    assert r.status == "compile_error" and "attention" in r.message and r.wall_s < 5
