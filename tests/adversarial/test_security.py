"""What the worker can see and touch: a scrubbed environment, its own temporary
working directory, and no path of the harness's own that leads into the lineage."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from avo.harness import evaluate
from avo.harness.runner import _scrubbed_env
from avo.lineage import Lineage
from avo.records import EvalResult
from tests.adversarial.test_cheats import assert_verdict
from tests.adversarial.variants import SEED, seed_with_preamble

SECRETS = {"OPENAI_API_KEY": "sk-test-openai", "ANTHROPIC_API_KEY": "sk-ant-test",
           "AWS_SECRET_ACCESS_KEY": "aws-test-secret", "GITHUB_TOKEN": "ghp_test", "HF_TOKEN": "hf_test",
           "MLFLOW_TRACKING_PASSWORD": "mlflow-test"}

# A spy: reports what it sees by failing in a recognisable way on its first call.
PROBE = seed_with_preamble("import os", '''
def attention(q, k, v, causal=False, sm_scale=None):
    leaked = sorted(n for n, val in os.environ.items() if val.startswith(("sk-", "aws-", "ghp_", "hf_", "mlflow-")))
    with open("relative-write.txt", "w") as f:  # where do relative paths land?
        f.write("x")
    raise RuntimeError(f"PROBE cwd={os.getcwd()} home={os.environ.get('HOME')} "
                       f"tmp={os.environ.get('TMPDIR')} leaked={','.join(leaked) or 'none'}")
''')


@pytest.fixture
def secrets_in_env(monkeypatch):
    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)


def test_scrubbed_env_drops_credentials(secrets_in_env, tmp_path):
    env = _scrubbed_env(tmp_path, "cpu")
    assert not set(SECRETS) & set(env)
    assert not any(v in SECRETS.values() for v in env.values())
    assert env["HOME"] == env["TMPDIR"] == str(tmp_path)
    assert env["TRITON_INTERPRET"] == "1" and env["CUDA_VISIBLE_DEVICES"] == ""


def test_worker_sees_no_secrets_and_its_own_directory(secrets_in_env, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the orchestrator's cwd: nothing may land here
    r = evaluate(PROBE, device="cpu", quick=True, static_checks=False)
    assert_verdict(r, "compile_error", r"PROBE cwd=\S+ ")
    fields = dict(re.findall(r"(\w+)=(\S+)", r.message))
    assert fields["leaked"] == "none"
    work = Path(fields["cwd"])
    assert work.name.startswith(("avo-eval-", "avo-runner-")) and work != tmp_path  # the runner's own directory
    assert fields["home"] == str(work)
    # temporary files: the work directory, or the sandbox's private tmpfs on /tmp (gone with the box)
    assert fields["tmp"] == str(work) or (fields["tmp"] == "/tmp" and r.sandbox.endswith("namespaces")), fields
    assert not work.exists(), "the worker's directory outlived the evaluation"
    assert list(tmp_path.iterdir()) == []


def _tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def lineage_root(tmp_path):
    root = tmp_path / "lineage"
    seed_result = EvalResult(status="ok", device="cpu", interpreter=True, suite="cpu")
    Lineage(root).init_from_seed(SEED, seed_result)
    return root


def test_candidate_cannot_write_into_the_lineage(lineage_root, monkeypatch):
    """The harness's own writes (candidate file, log, relative paths of the
    candidate) go to the worker's temporary directory, even when the orchestrator
    runs inside the lineage folder; torch.save into it is rejected statically."""
    before = _tree_digest(lineage_root)
    assert before, "the lineage fixture wrote nothing"
    monkeypatch.chdir(lineage_root)
    assert_verdict(evaluate(PROBE, device="cpu", quick=True, static_checks=False), "compile_error", r"PROBE")
    saver = seed_with_preamble("", f'''
def attention(q, k, v, causal=False, sm_scale=None):
    torch.save(q, {str(lineage_root / "v0000" / "kernel.py")!r})
    return _honest(q, k, v, causal, sm_scale)
''')
    assert_verdict(evaluate(saver, device="cpu", quick=True), "rejected", r"^static check, .*`torch\.save`")
    assert_verdict(evaluate(SEED, device="cpu", quick=True), "ok", r"^$")
    assert _tree_digest(lineage_root) == before
