"""The agent over a real wire: langchain-openai's ChatOpenAI talks HTTP to a local
OpenAI-compatible server (tests/agents/fake_llm_server.py) that replays scripted
turns with real tool_calls JSON and usage counts, and serves faults: 429 with
Retry-After, 500, a dropped connection, a response slower than the client
timeout, malformed tool-call arguments, an unknown tool, an over-long answer."""
from __future__ import annotations

import json
import time

import pytest
from langchain_core.messages import HumanMessage

from agents.models import ModelCallFailed, ModelSpec, ModelUnavailable, Usage, build_chat_model, preflight
from agents.operator import AgentOperator, HarnessCalls
from agents.variation import MAX_ANSWER_CHARS, Limits
from avo.operators.base import VaryContext
from tests.agents.conftest import REPO, FakeHarness
from tests.agents.fake_llm_server import closed_port, fault, reply, tool

BLOCK_LINE = "BLOCK_N = 64  # key rows per inner-loop step"
NEW_LINE = "BLOCK_N = 128  # key rows per inner-loop step"


def wire_spec(url: str, **kw) -> ModelSpec:
    kw = {"timeout_s": 2.0, "max_retries": 4, "backoff_s": 0.01, **kw}
    return ModelSpec(model="openai:fake-coder", base_url=url, **kw)


def operator(spec, lineage, harness, waits=None, **kw):
    calls = HarnessCalls(evaluate=harness, check=harness, bench=harness,
                         compiler_stats=lambda src: "compiler stats unavailable: test")

    def sleep(s):
        if waits is not None:
            waits.append(s)
        time.sleep(s)

    return AgentOperator(spec, lineage=lineage, knowledge=REPO / "knowledge_base", harness=calls, env={},
                         limits=kw.pop("limits", Limits(max_steps=6, max_repairs=1, max_iterations=1)),
                         sleep=sleep, **kw)


def context(lineage, harness):
    v0 = lineage.get(0)
    return VaryContext(parent_version=0, parent_source=v0.source, parent_result=v0.result, generation=1, slot=0,
                       evaluate=harness)


def tool_answers(body: dict) -> dict[str, str]:
    """tool_call_id -> the tool answer, from a request the server received."""
    return {m["tool_call_id"]: m["content"] for m in body["messages"] if m["role"] == "tool"}


def test_session_over_http_survives_every_fault(fake_llm, lineage):
    harness = FakeHarness()
    server = fake_llm(
        fault(429, retry_after=0.3),
        reply(tool("list_lineage"), tool("summon_root_shell", {"now": True}),
              tool("edit_kernel", '{"search": "BLOCK_N = 64'), usage=(1000, 50)),  # malformed JSON
        fault(500),
        fault("drop"),
        reply(tool("edit_kernel", {"search": BLOCK_LINE, "replace": NEW_LINE}), usage=(1500, 60)),
        fault("slow", seconds=3.0),  # the client gives up after 2 s
        reply(text="block_n=128 " + "x" * (3 * MAX_ANSWER_CHARS), usage=(1800, 9000), finish_reason="length"),
        reply(tool("record", {"decision": "submit", "technique": "block_n=128", "expected_effect": "+10%",
                              "why": "fewer loop trips", "lesson": "bigger key tiles help"}), usage=(2000, 40)),
    )
    waits: list[float] = []
    spec = wire_spec(server.url, price_input_per_mtok=2.0, price_output_per_mtok=8.0)
    op = operator(spec, lineage, harness, waits)
    t0 = time.monotonic()
    cand = op.vary(context(lineage, harness))
    elapsed = time.monotonic() - t0

    assert NEW_LINE in cand.source and cand.technique.name == "block_n=128"
    assert server.overrun == 0 and server.served == 8 and server.faults == 4
    # retries: 429, 500, dropped connection, timeout; the 429's Retry-After was honoured
    assert cand.meta["model_retries"] == 4 and cand.meta["model_calls"] == 4
    assert waits[0] >= 0.3 and all(w < 0.3 for w in waits[1:])
    assert elapsed < 20
    # tokens and dollars are the server's usage counts
    assert cand.meta["input_tokens"] == 1000 + 1500 + 1800 + 2000
    assert cand.meta["output_tokens"] == 50 + 60 + 9000 + 40
    assert cand.meta["cost_usd"] == pytest.approx((6300 * 2 + 9150 * 8) / 1e6)
    assert op.budget.tokens == cand.meta["tokens"]

    # every tool call got an answer the model can act on: the unknown tool, the bad JSON
    after_tools = server.requests[2]  # the first request after the tool round (a 500)
    answers = list(tool_answers(after_tools).values())
    assert any(a.startswith("Lineage") or "v0" in a for a in answers)
    assert any("unknown tool 'summon_root_shell'" in a and "edit_kernel" in a for a in answers)
    assert any("edit_kernel were not a valid JSON object" in a for a in answers)
    # the tools the model was offered, as JSON schemas on the wire
    offered = {t["function"]["name"] for t in server.requests[1]["tools"]}
    assert {"edit_kernel", "quick_check", "benchmark", "compiler_stats", "profile_kernel"} <= offered
    # the over-long answer was clipped before it went back to the model (the critique request)
    critique = server.requests[-1]
    longest = max(len(m.get("content") or "") for m in critique["messages"] if m["role"] == "assistant")
    assert longest < MAX_ANSWER_CHARS + 300
    assert any("clipped" in (m.get("content") or "") for m in critique["messages"] if m["role"] == "assistant")


def test_retries_exhausted_fail_the_candidate_not_the_run(fake_llm, lineage):
    harness = FakeHarness()
    server = fake_llm(fault(500), fault(503, retry_after=0), fault(500))
    op = operator(wire_spec(server.url, max_retries=2), lineage, harness)
    with pytest.raises(ModelCallFailed) as e:
        op.vary(context(lineage, harness))
    # the generation flow stops a run only on the exact name ModelUnavailable (configuration);
    # this error fails one slot, and says why in one line
    assert type(e.value).__name__ != "ModelUnavailable" and isinstance(e.value, ModelUnavailable)
    assert "\n" not in str(e.value) and "3 attempts" in str(e.value)
    assert e.value.meta["model_retries"] == 2 and server.faults == 3 and not harness.calls


def test_session_keeps_its_verified_kernel_when_the_model_fails_later(fake_llm, lineage):
    harness = FakeHarness()
    server = fake_llm(reply(tool("edit_kernel", {"search": BLOCK_LINE, "replace": NEW_LINE})),
                      fault(500), fault(500))
    op = operator(wire_spec(server.url, max_retries=1), lineage, harness)
    cand = op.vary(context(lineage, harness))
    assert NEW_LINE in cand.source and cand.meta["stop"] == "model_error"
    assert cand.meta["verify_status"] == "ok" and len(harness.calls) == 1
    assert "kept failing" in cand.meta["model_error"]


def test_preflight_reachable_rejected_unreachable(fake_llm):
    server = fake_llm(api_key="sk-right")
    good = wire_spec(server.url)
    usage = preflight(good, build_chat_model(good, env={"AVO_API_KEY": "sk-right"}))
    assert usage.calls == 1 and usage.input_tokens == 12 and server.preflights == 1 and server.served == 0

    with pytest.raises(ModelUnavailable, match="key was rejected") as e:
        preflight(good, build_chat_model(good, env={"AVO_API_KEY": "sk-wrong"}))
    assert "\n" not in str(e.value) and str(e.value).startswith("model check failed")

    nowhere = wire_spec(f"http://127.0.0.1:{closed_port()}/v1", max_retries=5)
    t0 = time.monotonic()
    with pytest.raises(ModelUnavailable, match="unreachable after 3 attempts") as e:
        preflight(nowhere, build_chat_model(nowhere, env={}))
    assert "\n" not in str(e.value) and time.monotonic() - t0 < 10  # at most 2 retries in the check


def test_bare_model_name_is_explained_in_one_line():
    with pytest.raises(ModelUnavailable, match="no provider prefix") as e:
        build_chat_model(ModelSpec(model="gpt-4.1"), env={"OPENAI_API_KEY": "sk-x"})
    assert "openai:gpt-4.1" in str(e.value) and "\n" not in str(e.value)


def test_streaming_client_reassembles_tool_calls_and_usage(fake_llm):
    from langchain_openai import ChatOpenAI

    from agents.tools import make_tools

    server = fake_llm(reply(tool("edit_kernel", {"search": BLOCK_LINE, "replace": NEW_LINE}), text="editing",
                            usage=(700, 42)))
    model = ChatOpenAI(model="fake-coder", base_url=server.url, api_key="k", streaming=True, stream_usage=True,
                       max_retries=0, timeout=2).bind_tools(make_tools(None))
    usage = Usage()
    from agents.models import invoke_model

    answer = invoke_model(model, [HumanMessage("go")], spec=wire_spec(server.url), usage=usage)
    assert server.streamed == 1 and server.requests[0]["stream"] is True
    assert answer.tool_calls[0]["name"] == "edit_kernel" and answer.tool_calls[0]["args"]["replace"] == NEW_LINE
    assert (usage.input_tokens, usage.output_tokens) == (700, 42)
    json.dumps(server.requests)  # every request body was plain JSON


def test_server_listens_on_loopback_only_and_stops_by_itself():
    import socket

    from tests.agents.fake_llm_server import FakeOpenAI

    server = FakeOpenAI(lifetime_s=0.5).start()
    assert server.httpd.server_address[0] == "127.0.0.1" and server.url.startswith("http://127.0.0.1:")
    socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
    assert server.stopping.wait(3)  # its own timer stopped it
    time.sleep(0.1)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=1).close()


def test_session_over_anthropics_messages_protocol(fake_llm, lineage):
    """The same graph through langchain-anthropic's client: tool_use blocks, usage, a 429 with
    Retry-After and a 529 (overloaded) retried, the model check."""
    harness = FakeHarness()
    server = fake_llm(
        fault(429, retry_after=0.2),
        reply(tool("show_kernel", {"start": 1, "end": 3}), usage=(900, 40)),
        fault(529),
        reply(tool("edit_kernel", {"search": BLOCK_LINE, "replace": NEW_LINE}), usage=(1100, 50)),
        reply(text="block_n=128", usage=(1200, 10)),
        reply(tool("record", {"decision": "submit", "technique": "block_n=128"}), usage=(1300, 20)),
        api_key="sk-ant-test")
    spec = ModelSpec(model="anthropic:claude-fake", base_url=server.url.removesuffix("/v1"), timeout_s=2.0,
                     max_retries=3, backoff_s=0.01)
    op = AgentOperator(spec, lineage=lineage, knowledge=REPO / "knowledge_base", env={"AVO_API_KEY": "sk-ant-test"},
                       harness=HarnessCalls(evaluate=harness, check=harness, bench=harness,
                                            compiler_stats=lambda src: "n/a"),
                       limits=Limits(max_steps=6, max_repairs=1, max_iterations=1))
    assert type(op.model).__name__ == "ChatAnthropic"
    op.preflight()
    cand = op.vary(context(lineage, harness))
    assert NEW_LINE in cand.source and cand.technique.name == "block_n=128"
    assert server.preflights == 1 and server.served == 6 and server.overrun == 0
    assert cand.meta["model_retries"] == 2 and cand.meta["input_tokens"] == 900 + 1100 + 1200 + 1300
    # tool answers went back as Anthropic tool_result blocks
    blocks = [b for m in server.requests[-1]["messages"] if isinstance(m["content"], list) for b in m["content"]]
    assert any(b.get("type") == "tool_result" for b in blocks)
    assert {t["name"] for t in server.requests[1]["tools"]} >= {"edit_kernel", "profile_kernel"}
