"""`avo evolve --operator agent` runs the real LangGraph variation graph inside the
Prefect generation, with a scripted chat model (no model is reachable here) and
the flow's harness: the agent's verify goes through the same leased-device path
as the evaluate task, and its candidate is evaluated, committed and logged."""
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field
from typer.testing import CliRunner

from avo.cli import app
from avo.lineage import Lineage
from tests.agents.conftest import ai, call

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
    assert state["next"] == 4
    assert any("Lineage" in text for text in state["prompts"][1])
