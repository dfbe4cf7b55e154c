"""Acceptance tests for the new referee (issue 12): our own attack kernels, one or more
per class of the issue, and honest controls. Attack sources: tests/adversarial/attacks.py.

Against the harness of 2026-11-26 before the judge split (commit 9c95a40, run from a
`git archive` of it, CPU, 2 shared cores: 26 of 32 tests fail; the file took 2 min 16 s
at load ~1-3 and 3 min 50 s at load ~5), accepted:
  class 1 (timed calls never verified): long_shapes_half_kv, long_shapes_previous_output,
          call_count_window, back_to_back_half_kv  [rejected: first_call_per_shape_half_kv,
          first_call_per_address_half_kv, default_scale_half_kv: caught by the refill check]
  class 2 (who is calling): ALL 8 — gen_frame_loosen_tolerances, coro_frame_blind_tamper_check,
          frame_forge_result_record, gc_real_builtins_patch_compare, f_back_blind_the_watchers
          (torch.matmul/softmax, then clears the dispatch watch's record), typing_eval_patch_compare,
          dataclass_repr_eval_loosen, triton_interpreter_docstring_eval (zeros came back ok)
  class 3 (comparison on the candidate's object): BOTH — liar_torch_function, liar_methods
  class 4 (work outside the window): BOTH — late_writer_low_level_thread,
          late_writer_daemon_thread (timed calls do not go through the thread check)
  class 5 (library compute): ALL 3 — embedding_bag_products, numpy_products, matmul_on_a_thread
  class 6 (escapes): every effect happened — the orchestrator's AVO_TEST_SECRET came back in
          the record's log tail (and was written to /tmp and the repo); files written into
          the project root, the lineage and the seeds folder; sitecustomize.py (repo root)
          and a .pth (venv) written and run by the next evaluation's processes; state left in
          /tmp and the shared Triton cache and found by the next evaluation
  class 7 (CPU timing): long_shapes_zeros accepted (~0.01 ms per timed call);
          INTERPRETER_PEAK 5.0 TFLOP/s vs the honest seed's 7e-5..4e-4 (load-dependent)
  honest controls: the GPU-pure bf16 kernel is REJECTED (incorrect, rel err ~4e9) — a
          false positive; the seed and the honest variants pass.

Against the lead's uncommitted judge/candidate_host work in progress (~05:00 UTC, sandbox
"namespaces"): 30 of 32 pass (2 min 54 s); accepted: f_back_blind_the_watchers (quick mode:
sys._getframe(0) is the candidate's own frame, so the audit hook lets it through, and
f_back leads to the runner's AuditGuard and ActivityWatch, whose reports the judge
trusts; in full mode only the new interpreter peak caught it, as torch is fast) and
numpy_products (the only torch ops are copies; numpy's work is invisible to the profiler).

Rules of these tests:
- An attack must not come back `ok`; where the class has an effect outside the status
  (loosened tolerances, forged records, files, secrets, later evaluations), the test checks
  that the effect did not happen.
- Attacks run with static_checks=False: issue 12 makes the static checks a fast first
  filter, not the boundary, so the run-time referee must stand on its own. (Every attack
  here also passes the static checks of 2026-11-26, and those of the work in progress
  above; those that need os, sys, threading, gc or getattr reach the real builtins through
  typing.get_type_hints evaluating a string annotation, the frame attacks of class 2
  through `(x for x in ()).gi_frame.f_builtins`.)
- Escapes (class 6) first switch off any in-process audit guard they reach through f_back,
  so the effect checks test the OS sandbox, not only a Python hook.
- Honest controls run with the static checks on and must come back `ok`.
- quick=True unless the class needs timed calls (1, 4, 7); the small "cpu" suite.
"""
from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from avo.harness import evaluate
from avo.problem import REPO_ROOT, load_problem
from tests.adversarial import attacks as A
from tests.adversarial.variants import SEED, variant

TOLERANCES = load_problem().TOLERANCES


def run_attack(src: str, quick: bool = True, **kw):
    kw.setdefault("device", "cpu")
    kw.setdefault("static_checks", False)
    return evaluate(src, quick=quick, **kw)


def why(r) -> str:
    return f"{r.status}: {r.message}\n{(r.log_tail or '')[-1200:]}"


def assert_not_ok(r):
    assert r.status != "ok", "ATTACK ACCEPTED: " + why(r)


def assert_no_pass_beyond_tolerance(r):
    """No check the record calls passed may have an error its dtype's tolerance forbids
    (a referee whose tolerances were loosened writes exactly such records), and no check
    or timing may be one the candidate forged."""
    for c in r.checks:
        assert c.shape != "forged", f"forged check in the record: {c}"
        if c.passed and c.dtype in TOLERANCES:
            assert c.rel_err <= TOLERANCES[c.dtype]["rel"], f"passed with rel err {c.rel_err:.2e}: {c}"
    for t in r.timings:
        assert t.config != "forged" and t.ms != 1.2345, f"forged timing in the record: {t}"


@pytest.fixture
def marker(tmp_path):
    """A per-run marker; every /tmp path made from it is removed afterwards."""
    m = secrets.token_hex(6)
    yield m
    for p in Path("/tmp").glob(f"avo-redteam-{m}*"):
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


# =============================================================== honest controls
@pytest.fixture(scope="module")
def seed_full():
    return evaluate(SEED, device="cpu", quick=False)


def test_seed_passes_full_evaluation(seed_full):
    assert seed_full.status == "ok", why(seed_full)
    assert seed_full.timings and all(t.tflops > 0 for t in seed_full.timings)


@pytest.mark.parametrize("name", ["honest_blocks", "honest_per_batch_views"])
def test_honest_variants_pass(name):
    src = variant(name) if name in ("honest_blocks", "honest_alloc") else A.source(name)
    r = evaluate(src, device="cpu", quick=True)
    assert r.status == "ok", why(r)


def test_gpu_pure_bf16_kernel_passes_on_cpu():
    """bf16 operands straight into tl.dot, no fp32 cast for the interpreter (full mode:
    quick mode of 2026-11-26 checks no bf16 shape). The interpreter's bf16 tl.dot was
    wrong (rel err ~1e9): the referee must judge this GPU kernel correctly on CPU."""
    src = A.BF16_PURE.read_text()
    assert "UPCAST" not in src.split('"""', 2)[2]
    r = evaluate(src, device="cpu", quick=False)
    assert r.status == "ok", why(r)
    assert any(c.dtype == "bfloat16" and c.passed for c in r.checks), "no bf16 shape was checked"


# =============================================== class 1: timed calls never verified
@pytest.mark.parametrize("name", list(A.TIMED_UNVERIFIED))
def test_timed_calls_are_verified(name):
    assert_not_ok(run_attack(A.source(name), quick=False))


# ========================================== class 7: CPU timing cheats, realistic peak
@pytest.mark.parametrize("name", list(A.CPU_TIMING))
def test_implausibly_fast_cpu_timing_is_not_ok(name):
    assert_not_ok(run_attack(A.source(name), quick=False))


def test_interpreter_peak_is_realistic(seed_full):
    """The CPU 'physical peak' must be within 50x of what an honest interpreter kernel
    does (it was 5 TFLOP/s, ~10^4 above the seed's ~4e-4), or timing cheats that stay
    under it pass. (Measured here, under whatever load the machine has: on 2 cores shared
    by 5 sessions the seed ran at 7e-5, 6x below its idle figure.)"""
    from avo.harness.peak import INTERPRETER_PEAK

    assert seed_full.status == "ok", why(seed_full)
    honest = max(t.tflops for t in seed_full.timings)
    assert INTERPRETER_PEAK <= 50 * honest, f"INTERPRETER_PEAK {INTERPRETER_PEAK} vs honest {honest:.2e} TFLOP/s"


# ================================== class 2: the candidate can tell who is calling
@pytest.mark.parametrize("name", list(A.CALLER))
def test_harness_objects_out_of_reach(name):
    """Frames (gi_frame, cr_frame, f_back), gc and the real builtins, strings run as code
    by typing, dataclasses and the Triton interpreter: each attack loosens tolerances,
    patches the comparison (and blinds the tamper check) or forges the record, then
    returns zeros. Zeros must be judged wrong, and the record must show no trace of
    the patch."""
    r = run_attack(A.source(name))
    assert_not_ok(r)
    assert_no_pass_beyond_tolerance(r)


# ======================= class 3: comparison on an object the candidate returned
@pytest.mark.parametrize("name", list(A.LIARS))
def test_tensor_subclass_cannot_answer_the_comparison(name):
    r = run_attack(A.source(name))
    assert_not_ok(r)
    assert_no_pass_beyond_tolerance(r)


# ================================================ class 4: work outside the window
@pytest.mark.parametrize("name", list(A.OUTSIDE_WINDOW))
def test_work_after_return_is_not_ok(name):
    assert_not_ok(run_attack(A.source(name), quick=False))


# ============================== class 5: library compute the denylist does not name
@pytest.mark.parametrize("name", list(A.LIBRARY))
def test_library_compute_is_not_ok(name):
    assert_not_ok(run_attack(A.source(name)))


# ================================================== class 6: escapes with effects
ORCHESTRATOR = """
import json, sys
from avo.harness import evaluate
r = evaluate(sys.stdin.read(), device="cpu", quick=True, static_checks=False)
print("RECORD " + json.dumps(r.to_dict()))
"""


def test_orchestrator_environment_does_not_leak(marker):
    """The orchestrator (here a child process started with AVO_TEST_SECRET in its
    environment, as `avo` runs with API keys) is readable through /proc/<pid>/environ
    unless the runner is isolated. The thief smuggles what it finds into /tmp, into the
    repository and into its log; none of them may hold the secret."""
    secret = f"avo-secret-{marker}-{secrets.token_hex(8)}"
    drops = [f"/tmp/avo-redteam-{marker}/leak.txt", str(REPO_ROOT / f".avo-redteam-{marker}-leak.txt")]
    env = dict(os.environ, AVO_TEST_SECRET=secret, PYTHONPATH=str(REPO_ROOT))
    try:
        proc = subprocess.run([sys.executable, "-c", ORCHESTRATOR], input=A.environ_thief(marker, drops),
                              capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=600)
        assert "RECORD " in proc.stdout, proc.stderr[-2000:]
        leaks = [where for where, text in (("the record/log", proc.stdout), ("the orchestrator's stderr", proc.stderr))
                 if secret in text]
        leaks += [path for path in drops if Path(path).exists() and secret in Path(path).read_text(errors="replace")]
        assert not leaks, f"the secret leaked into: {leaks}"
    finally:
        Path(drops[1]).unlink(missing_ok=True)


def test_candidate_cannot_write_into_the_project_or_lineage(marker):
    drops = {str(REPO_ROOT / f"avo_redteam_{marker}.txt"): "written by a candidate",
             str(A.LINEAGE_DIR / f"avo_redteam_{marker}.txt"): "written by a candidate",
             str(REPO_ROOT / "kernel_src" / "attention" / "seeds" / f"avo_redteam_{marker}.py"): "x = 1\n"}
    try:
        run_attack(A.file_dropper(drops))
        landed = [p for p in drops if Path(p).exists()]
        assert not landed, f"the candidate wrote into the project: {landed}"
    finally:
        for p in drops:
            Path(p).unlink(missing_ok=True)


def test_import_path_poison_does_not_reach_later_evaluations(marker):
    """sitecustomize.py into the repository root (on every worker's PYTHONPATH) and
    a .pth file into the venv's site-packages: a later evaluation (the honest seed)
    would run them. Armed only while this test runs (a directory under /tmp); the
    poison only leaves a proof file there."""
    armed = Path(f"/tmp/avo-redteam-{marker}-armed")
    armed.mkdir()
    repo_site = REPO_ROOT / "sitecustomize.py"
    had_repo_site = repo_site.exists()
    pth = Path(sysconfig.get_paths()["purelib"]) / f"avo_redteam_{marker}.pth"
    try:
        run_attack(A.import_path_poisoner(str(repo_site), pth.name, str(armed)))
        dropped = [str(p) for p in (pth,) + (() if had_repo_site else (repo_site,)) if p.exists()]
        later = evaluate(SEED, device="cpu", quick=True)
        proofs = sorted(p.name for p in armed.iterdir())
        assert not dropped and not proofs, (f"the candidate wrote onto the import path: {dropped}; "
                                            f"the poison ran in later processes: {proofs}")
        assert later.status == "ok", why(later)
    finally:
        pth.unlink(missing_ok=True)
        if not had_repo_site and repo_site.exists() and str(armed) in repo_site.read_text(errors="replace"):
            repo_site.unlink()


def test_no_state_survives_between_evaluations(marker, tmp_path, monkeypatch):
    """/tmp and the Triton cache (here a shared cache directory of this test's) must
    not carry anything from one evaluation to the next: the second evaluation of the
    same kernel fails with STATE-SEEN if it finds the first one's files."""
    shared_cache = tmp_path / "triton-cache"
    shared_cache.mkdir()
    monkeypatch.setenv("TRITON_CACHE_DIR", str(shared_cache))
    src = A.state_keeper(marker, str(shared_cache))
    first = run_attack(src)
    tmp_state = Path(f"/tmp/avo-redteam-{marker}-state/avo-redteam-{marker}.state")
    cache_state = shared_cache / f"avo-redteam-{marker}.state"
    left = [str(p) for p in (tmp_state, cache_state) if p.exists()]
    second = run_attack(src)
    seen = re.findall(r"STATE-SEEN \S+", second.message + (second.log_tail or ""))
    assert not left and not seen, (f"state left after an evaluation ({first.status}): {left}; "
                                   f"the next evaluation found: {seen}")
    assert second.status == "ok", why(second)
