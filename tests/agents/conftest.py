"""Scripted chat models and a fake harness for the agent tests (no model, no GPU)."""
from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from pydantic import Field

from avo.lineage import Lineage
from tests.fake_results import make_result

REPO = Path(__file__).resolve().parents[2]
SEED = REPO / "kernel_src" / "attention" / "seeds" / "fa2.py"
_ids = itertools.count()


class ScriptedModel(GenericFakeChatModel):
    """GenericFakeChatModel that accepts bind_tools, remembers what it was sent,
    and can raise a given error on its first `fail_first` calls."""

    seen: list = Field(default_factory=list)
    fail_first: int = 0
    error: type = RuntimeError

    def bind_tools(self, tools, **kwargs):
        return self

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        self.seen.append(list(messages))
        if self.fail_first > 0:
            self.fail_first -= 1
            raise self.error("429 Too Many Requests: rate limit reached")
        return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)


class RateLimitError(Exception):
    """Looks like a provider SDK's rate-limit error (name and status code)."""

    status_code = 429


def call(name: str, **args) -> dict:
    return {"name": name, "args": args, "id": f"call_{next(_ids)}", "type": "tool_call"}


def ai(*calls, text: str = "", tokens: tuple[int, int] = (100, 20)) -> AIMessage:
    return AIMessage(content=text, tool_calls=list(calls),
                     usage_metadata={"input_tokens": tokens[0], "output_tokens": tokens[1],
                                     "total_tokens": sum(tokens)})


def script(*messages, **kw) -> ScriptedModel:
    return ScriptedModel(messages=iter(messages), **kw)


class FakeHarness:
    """Stands in for avo.harness.evaluate: the verdicts a real harness gives,
    keyed on markers in the source. Counts calls."""

    def __init__(self):
        self.calls: list[str] = []

    def __call__(self, source: str, configs=None):
        self.calls.append(source)
        if "scaled_dot_product_attention" in source:
            m = next(i for i, ln in enumerate(source.splitlines(), 1) if "scaled_dot_product_attention" in ln)
            return make_result(status="rejected",
                               message=f"static check, line {m}: library attention is not allowed")
        if "_CACHE" in source:
            return make_result(status="incorrect",
                               message="recheck: output did not change after the inputs were refilled")
        if "BUG" in source:
            return make_result(status="incorrect", message="mha b1 s17 d128: rel err 0.41 > 0.01")
        block_n = int(re.search(r"^BLOCK_N = (\d+)", source, re.M).group(1))
        return make_result(tflops=(100.0 + block_n / 4, 80.0 + block_n / 8))


@pytest.fixture
def lineage(tmp_path) -> Lineage:
    lin = Lineage(tmp_path / "lineage")
    lin.init_from_seed(SEED, make_result(tflops=(116.0, 88.0)))
    return lin


@pytest.fixture
def seed_source() -> str:
    return SEED.read_text()


@pytest.fixture
def fake_llm(monkeypatch):
    """start(*turns, **kw) -> a running FakeOpenAI (tests/agents/fake_llm_server.py) on
    127.0.0.1; every server started is stopped when the test ends."""
    from tests.agents.fake_llm_server import FakeOpenAI

    for name in ("NO_PROXY", "no_proxy"):  # a CI proxy must not see the loopback server
        monkeypatch.setenv(name, "127.0.0.1,localhost")

    servers = []

    def start(*turns, **kw) -> FakeOpenAI:
        kw.setdefault("lifetime_s", 90.0)
        server = FakeOpenAI(turns, **kw).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
