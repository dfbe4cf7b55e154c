"""Provider wiring, offline: every configured model is constructed with dummy keys."""
from __future__ import annotations

import importlib.util
from types import SimpleNamespace

import pytest
from langchain_core.messages import HumanMessage

from agents.models import ModelSpec, ModelUnavailable, Usage, build_chat_model, invoke_model
from agents.operator import AgentOperator, operator_from_config


def test_spec_from_params_and_environment():
    cfg = SimpleNamespace(model="anthropic:claude-sonnet-4-5", base_url=None, temperature=0.2, max_retries=7)
    spec = ModelSpec.from_config(cfg, env={})
    assert spec.provider == "anthropic" and spec.temperature == 0.2 and spec.max_retries == 7
    env = {"AVO_MODEL": "openai:qwen", "AVO_BASE_URL": "http://127.0.0.1:8000/v1"}
    spec = ModelSpec.from_config(cfg, env=env)
    assert spec.model == "openai:qwen" and spec.base_url == "http://127.0.0.1:8000/v1"
    assert spec.prices() == (0.0, 0.0)  # self-hosted
    assert ModelSpec.from_config(SimpleNamespace(model=None), env={}) is None
    assert ModelSpec(model="openai:gpt-4.1-mini").prices() == (0.40, 1.60)


def test_hosted_providers_build_offline(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-dummy")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-dummy")
    openai = build_chat_model(ModelSpec(model="openai:gpt-4.1"))
    assert type(openai).__name__ == "ChatOpenAI" and openai.max_retries == 0
    anthropic = build_chat_model(ModelSpec(model="anthropic:claude-sonnet-4-5"))
    assert type(anthropic).__name__ == "ChatAnthropic"


def test_openai_compatible_server_by_base_url(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    local = build_chat_model(ModelSpec(model="openai:qwen", base_url="http://127.0.0.1:8000/v1"))
    assert type(local).__name__ == "ChatOpenAI" and local.openai_api_base == "http://127.0.0.1:8000/v1"
    bare = build_chat_model(ModelSpec(model="llama3", base_url="http://127.0.0.1:11434/v1"))
    assert type(bare).__name__ == "ChatOpenAI"


def test_missing_key_or_package_is_one_line(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ModelUnavailable, match="OPENAI_API_KEY is not set") as e:
        AgentOperator("openai:gpt-4.1", env={})
    assert "\n" not in str(e.value)
    monkeypatch.setenv("GOOGLE_API_KEY", "dummy")
    if importlib.util.find_spec("langchain_google_genai") is None:
        with pytest.raises(ModelUnavailable, match="pip install langchain-google-genai"):
            build_chat_model(ModelSpec(model="google_genai:gemini-2.5-pro"))
    else:
        assert build_chat_model(ModelSpec(model="google_genai:gemini-2.5-pro")) is not None


def test_unreachable_server_is_one_line():
    spec = ModelSpec(model="openai:qwen", base_url="http://127.0.0.1:9/v1", max_retries=1, backoff_s=0.0,
                     timeout_s=5)
    model = build_chat_model(spec, env={})
    with pytest.raises(ModelUnavailable, match="is unreachable after 2 attempts") as e:
        invoke_model(model, [HumanMessage("ping")], spec=spec, usage=Usage(), sleep=lambda s: None)
    assert "\n" not in str(e.value) and "127.0.0.1:9" in str(e.value)


def test_operator_choice_follows_config():
    cfg = SimpleNamespace(agent=SimpleNamespace(model=None, base_url=None, temperature=0.7),
                          evolve=SimpleNamespace(operator="auto"), harness=None)
    assert operator_from_config(cfg, env={}) is None  # heuristic
    cfg.evolve.operator = "agent"
    with pytest.raises(ModelUnavailable, match="no model is configured"):
        operator_from_config(cfg, env={})
    op = operator_from_config(cfg, env={"AVO_MODEL": "openai:qwen", "AVO_BASE_URL": "http://127.0.0.1:8000/v1"})
    assert op.name == "agent" and op.spec.base_url == "http://127.0.0.1:8000/v1"
    cfg.evolve.operator = "heuristic"
    assert operator_from_config(cfg, env={"AVO_MODEL": "openai:gpt-4.1"}) is None
