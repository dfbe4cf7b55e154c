"""`avo evolve --operator agent` runs the real LangGraph variation graph inside the
Prefect generation, with a scripted chat model (no model is reachable here) and
the flow's harness: the agent's verify goes through the same leased-device path
as the evaluate task, and its candidate is evaluated, committed and logged.

Over a real wire: the same run against a local OpenAI-compatible HTTP server
(tests/agents/fake_llm_server.py) through AVO_BASE_URL, with faults; the model
check before any evaluation; and `--operator external` with a fake coding-agent CLI."""
import json
import shlex
import sys
from pathlib import Path

import pytest
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field
from typer.testing import CliRunner

from agents.models import PREFLIGHT_PROMPT
from avo.cli import app
from avo.lineage import Lineage
from tests.agents.conftest import ai, call
from tests.agents.fake_llm_server import FakeOpenAI, closed_port, fault, reply, tool

EDIT_FROM = "BLOCK_N = 64  # key rows per inner-loop step"
EDIT_TO = "BLOCK_N = 128  # key rows per inner-loop step"


class Replay(BaseChatModel):
    """Answers with the scripted messages in order. The position lives in a shared
    dict, so copies of the model (task parameters may be copied) keep one script."""

    script: list = Field(default_factory=list)
    state: dict = Field(default_factory=lambda: {"next": 0, "prompts": []})

    @property
    def _llm_type(self) -> str:
        return "replay"

    def bind_tools(self, tools, **kwargs):
        return self

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        if messages and messages[-1].content == PREFLIGHT_PROMPT:  # avo evolve's model check
            self.state["preflights"] = self.state.get("preflights", 0) + 1
            return ChatResult(generations=[ChatGeneration(message=ai(text="ok", tokens=(12, 1)))])
        i = self.state["next"]
        assert i < len(self.script), f"the agent asked for a {i + 1}th answer; the script has {len(self.script)}"
        self.state["next"] = i + 1
        self.state["prompts"].append([str(m.content) for m in messages])
        return ChatResult(generations=[ChatGeneration(message=self.script[i])])


def test_agent_operator_inside_avo_evolve(fake_harness, run_args, monkeypatch, tmp_path):
    fake = fake_harness()
    model = Replay(script=[
        ai(call("list_lineage"), call("search_knowledge", query="larger BLOCK_N key tile")),
        ai(call("edit_kernel", search=EDIT_FROM, replace=EDIT_TO)),
        ai(text="BLOCK_N 64 -> 128: half the inner-loop trips; expect +10%"),
        ai(call("record", decision="submit", technique="block_n=128", expected_effect="+10%",
                why="fewer loop iterations", lesson="bigger key tiles help")),
    ])
    monkeypatch.setattr("agents.operator.build_chat_model", lambda spec, env=None: model)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-used")
    params = tmp_path / "params.yaml"
    params.write_text(params.read_text().replace("lineage:\n", "lineage:\n  root: lineage\n")
                      + f"evolve:\n  state_dir: {tmp_path / '.avo'}\n")

    r = CliRunner().invoke(app, ["evolve", "--params", str(params), "--device", "cpu", "--generations", "1",
                                 "--population", "1", "--operator", "agent", "--model", "openai:scripted"])
    assert r.exit_code == 0, r.output

    lineage = Lineage(tmp_path / "lineage")
    v1 = lineage.get(1)
    assert v1.operator == "agent" and v1.technique.name == "block_n=128" and EDIT_TO in v1.source
    assert v1.technique.expected == "+10%"
    # harness calls: the seed, the agent's own verify (leased like any evaluation), the evaluate task
    assert len(fake.calls) == 3 and all(EDIT_TO in c["source"] for c in fake.calls[1:])
    # the whole script was used, and the tools' answers reached the model before it edited
    state = model.state  # shared by every copy of the model
    assert state["next"] == 4 and state["preflights"] == 1  # the model was checked once, before the run
    assert any("Lineage" in text for text in state["prompts"][1])


@pytest.fixture(autouse=True)
def no_proxy_for_loopback(monkeypatch):
    for name in ("NO_PROXY", "no_proxy"):  # a CI proxy must not see the loopback server
        monkeypatch.setenv(name, "127.0.0.1,localhost")


def _params(tmp_path, extra: str = "", tracking: bool = False) -> Path:
    params = tmp_path / "params.yaml"
    text = params.read_text().replace("lineage:\n", "lineage:\n  root: lineage\n")
    if tracking:
        text = text.replace("tracking:\n  enabled: false\n",
                            f"tracking:\n  enabled: true\n  uri: sqlite:///{tmp_path / 'mlflow.db'}\n")
    params.write_text(text + f"evolve:\n  state_dir: {tmp_path / '.avo'}\n" + extra)
    return params


WIRE_AGENT = ("agent:\n  timeout_s: 2\n  max_retries: 2\n  backoff_s: 0.01\n  max_iterations: 1\n  max_steps: 4\n"
              "  price_input_per_mtok: 2.0\n  price_output_per_mtok: 8.0\n")


def test_agent_over_http_inside_avo_evolve(fake_harness, run_args, monkeypatch, tmp_path):
    """Generation 1: the server fails through every retry -> that candidate fails, the run
    goes on. Generation 2: a 429 (Retry-After) then a clean session -> committed; its
    tokens and cost land in MLflow and in the run's journal."""
    fake = fake_harness()
    server = FakeOpenAI([
        fault(500), fault(502), fault(500),  # generation 1: 3 attempts, then the candidate fails
        fault(429, retry_after=0.2),
        reply(tool("list_lineage"), usage=(1000, 50)),
        reply(tool("edit_kernel", {"search": EDIT_FROM, "replace": EDIT_TO}), usage=(1200, 60)),
        reply(text="BLOCK_N 64 -> 128", usage=(1300, 20)),
        reply(tool("record", {"decision": "submit", "technique": "block_n=128", "expected_effect": "+10%"}),
              usage=(1400, 30)),
    ], lifetime_s=120).start()
    try:
        monkeypatch.setenv("AVO_BASE_URL", server.url)
        monkeypatch.delenv("AVO_MODEL", raising=False)
        params = _params(tmp_path, WIRE_AGENT, tracking=True)
        r = CliRunner().invoke(app, ["evolve", "--params", str(params), "--device", "cpu", "--generations", "2",
                                     "--population", "1", "--operator", "agent", "--model", "openai:fake-coder"])
    finally:
        server.stop()
    assert r.exit_code == 0, r.output
    assert server.preflights == 1 and server.served == 8 and server.overrun == 0

    v1 = Lineage(tmp_path / "lineage").get(1)
    assert v1.operator == "agent" and EDIT_TO in v1.source
    assert v1.meta["model_retries"] == 1 and v1.meta["model_calls"] == 4
    tokens, dollars = 4900 + 160, (4900 * 2 + 160 * 8) / 1e6
    assert v1.meta["tokens"] == tokens
    # the run's journal: generation 1's failed candidate spent nothing, generation 2's session all of it
    journal = json.loads(next((tmp_path / ".avo" / "evolve").glob("*.json")).read_text())
    assert journal["spent"]["tokens"] == tokens and abs(journal["spent"]["dollars"] - dollars) < 1e-9
    assert journal["spent"]["generations"] == 2
    # MLflow: one candidate run (the failed slot never reached the harness), with the operator's spend
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("attention-fwd")
    runs = [run for run in client.search_runs([exp.experiment_id]) if run.data.tags.get("avo.kind") == "candidate"]
    assert len(runs) == 1
    metrics = runs[0].data.metrics
    assert metrics["operator/tokens"] == tokens and metrics["operator/model_retries"] == 1
    assert abs(metrics["operator/cost_usd"] - dollars) < 1e-9
    assert len(fake.calls) == 3  # seed, the agent's verify, the evaluate task


def test_model_check_fails_in_one_line_before_any_evaluation(fake_harness, run_args, monkeypatch, tmp_path):
    fake = fake_harness()
    params = _params(tmp_path, WIRE_AGENT)
    runner = CliRunner()
    args = ["evolve", "--params", str(params), "--device", "cpu", "--generations", "1", "--population", "1",
            "--operator", "agent"]
    monkeypatch.delenv("AVO_MODEL", raising=False)

    monkeypatch.setenv("AVO_BASE_URL", f"http://127.0.0.1:{closed_port()}/v1")
    r = runner.invoke(app, [*args, "--model", "openai:fake-coder"])
    assert r.exit_code == 2 and "model check failed" in r.output and "unreachable" in r.output
    assert len(r.output.strip().splitlines()) == 1, r.output

    with FakeOpenAI(api_key="sk-right", lifetime_s=30) as server:
        monkeypatch.setenv("AVO_BASE_URL", server.url)
        monkeypatch.setenv("AVO_API_KEY", "sk-wrong")
        r = runner.invoke(app, [*args, "--model", "openai:fake-coder"])
    assert r.exit_code == 2 and "key was rejected" in r.output and len(r.output.strip().splitlines()) == 1
    assert server.preflights == 0 and server.served == 0

    monkeypatch.delenv("AVO_BASE_URL")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-used")
    r = runner.invoke(app, [*args, "--model", "gpt-4.1"])
    assert r.exit_code == 2 and "no provider prefix" in r.output and "openai:gpt-4.1" in r.output
    assert len(r.output.strip().splitlines()) == 1, r.output
    assert fake.calls == []  # nothing was evaluated


FAKE_AGENT = Path(__file__).resolve().parents[1] / "agents" / "fake_agent_cli.py"


def test_external_coding_agent_inside_avo_evolve(fake_harness, run_args, monkeypatch, tmp_path):
    """Generation 1: the agent hangs and is killed at its budget (a failed attempt, the run
    goes on). Generation 2: it edits kernel.py and calls ./check; the flow's harness and
    commit rule judge the result, operator external, transcript kept."""
    fake = fake_harness()
    plan = tmp_path / "plan"
    plan.write_text("hang\nedit\n")
    monkeypatch.setenv("FAKE_AGENT_PLAN", str(plan))
    monkeypatch.setenv("AVO_AGENT_CMD", "overridden by --agent-cmd")
    params = _params(tmp_path, "agent:\n  agent_wall_s: 2\n  check_cmd: echo fake check passed\n", tracking=True)
    cmd = f"{shlex.quote(sys.executable)} {shlex.quote(str(FAKE_AGENT))} plan"
    r = CliRunner().invoke(app, ["evolve", "--params", str(params), "--device", "cpu", "--generations", "2",
                                 "--population", "1", "--operator", "external", "--agent-cmd", cmd])
    assert r.exit_code == 0, r.output

    lineage = Lineage(tmp_path / "lineage")
    v1 = lineage.get(1)
    assert v1.operator == "external" and "BLOCK_N = 128" in v1.source
    assert v1.technique.name.startswith("external: BLOCK_N 64 -> 128")
    transcript = Path(v1.meta["transcript"]).read_text()
    assert "./check exit 0: verdict: ok" in transcript and "fake check passed" in transcript
    attempts = lineage.attempts()
    killed = [a for a in attempts if a["status"] == "timeout"]
    assert len(killed) == 1 and killed[0]["operator"] == "external" and killed[0]["generation"] == 1
    assert "wall-time budget" in killed[0]["message"]
    assert [a["operator"] for a in attempts if a["status"] == "ok"] == ["seed", "external"]
    assert len(fake.calls) == 2  # the seed and the external candidate: a killed agent costs no evaluation
    assert len(list((tmp_path / "lineage" / "transcripts").glob("*.log"))) == 2

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("attention-fwd")
    run = next(run for run in client.search_runs([exp.experiment_id]) if run.data.tags.get("operator") == "external")
    assert "agent_transcript.log" in {a.path for a in client.list_artifacts(run.info.run_id)}
    assert run.data.metrics["operator/cost_usd"] == 0.0123
