"""Chat models for the agents: construction, retries, token and cost accounting.

Any model `init_chat_model` knows, by provider string ("openai:gpt-4.1",
"anthropic:claude-sonnet-4-5", "google_genai:gemini-2.5-pro", ...), or any
OpenAI-compatible server (vLLM, Ollama, NIM, llama.cpp) by base URL. Settings
come from params.yaml's `agent` section, overridden by AVO_MODEL / AVO_BASE_URL;
keys come from the environment only (never from params.yaml).

Errors a user can fix end in one line: `ModelUnavailable` (no key, missing
provider package, server unreachable, key rejected, unknown model) and
`BudgetExceeded` (the run's token/dollar budget is spent), both from avo.errors.
`ModelCallFailed` (a ModelUnavailable and a ProposalFailed) is a model that answered before but kept failing with
transient errors (rate limits, 5xx, timeouts, dropped connections) through
every retry: the candidate being made fails, the run goes on.

`preflight(spec)` makes one tiny request before a run starts, so an
unreachable server or a rejected key ends `avo evolve` in one line.
"""
from __future__ import annotations

import os
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

from langchain_core.messages import AIMessage, BaseMessage

# The errors live in the core (avo.errors) so the generation flow catches them by type.
from avo.errors import BudgetExceeded, ModelUnavailable, ProposalFailed  # noqa: F401  (re-exported)

# Keys a provider reads from the environment; checked before building, so a
# missing key is a one-line error at start-up instead of a failure mid-run.
PROVIDER_KEYS = {
    "openai": ("OPENAI_API_KEY",),
    "anthropic": ("ANTHROPIC_API_KEY",),
    "google_genai": ("GOOGLE_API_KEY", "GEMINI_API_KEY"),
    "mistralai": ("MISTRAL_API_KEY",),
    "groq": ("GROQ_API_KEY",),
    "fireworks": ("FIREWORKS_API_KEY",),
    "together": ("TOGETHER_API_KEY",),
    "deepseek": ("DEEPSEEK_API_KEY",),
    "xai": ("XAI_API_KEY",),
}
PROVIDER_PACKAGES = {"openai": "langchain-openai", "anthropic": "langchain-anthropic",
                     "google_genai": "langchain-google-genai", "mistralai": "langchain-mistralai",
                     "groq": "langchain-groq", "ollama": "langchain-ollama",
                     "deepseek": "langchain-deepseek", "xai": "langchain-xai"}
# Providers whose client takes max_retries/timeout: we retry ourselves, once.
_CLIENT_RETRY_KWARGS = {"openai", "anthropic"}

# USD per million tokens (input, output): list prices when this table was
# written; they change. Override with agent.price_*_per_mtok in params.yaml.
# Matched by the longest model-name prefix. A local server costs nothing here.
PRICES_PER_MTOK = {
    "gpt-4.1-nano": (0.10, 0.40), "gpt-4.1-mini": (0.40, 1.60), "gpt-4.1": (2.00, 8.00),
    "gpt-4o-mini": (0.15, 0.60), "gpt-4o": (2.50, 10.00), "o3": (2.00, 8.00),
    "o4-mini": (1.10, 4.40), "gpt-5": (1.25, 10.00), "gpt-5-mini": (0.25, 2.00),
    "claude-opus-4": (15.00, 75.00), "claude-sonnet-4": (3.00, 15.00),
    "claude-3-7-sonnet": (3.00, 15.00), "claude-haiku-4": (1.00, 5.00),
    "claude-3-5-haiku": (0.80, 4.00),
    "gemini-2.5-pro": (1.25, 10.00), "gemini-2.5-flash": (0.30, 2.50),
}

# Exception class names (any provider SDK) and HTTP statuses worth retrying.
_TRANSIENT_NAMES = {"RateLimitError", "APITimeoutError", "InternalServerError", "OverloadedError",
                    "ServiceUnavailableError", "GatewayTimeoutError", "DeadlineExceededError",
                    "RequestTimeoutError", "APIConnectionError", "ResourceExhausted",
                    "ServiceUnavailable", "TooManyRequests", "ConnectError", "ReadTimeout",
                    "RemoteProtocolError"}
_TRANSIENT_STATUS = {408, 409, 425, 429, 500, 502, 503, 504, 529}
_TRANSIENT_WORDS = ("RateLimit", "Connection", "Timeout", "Overloaded", "ServiceUnavailable")
_FATAL_WORDS = ("Authentication", "PermissionDenied", "NotFound")
_FATAL_STATUS = {401: "the key was rejected", 403: "access denied for this key",
                 404: "model or endpoint not found"}


class ModelCallFailed(ModelUnavailable, ProposalFailed):
    """Transient errors through every retry, mid-run: one candidate fails, not
    the run (a ProposalFailed: the generation flow fails the slot and goes on).
    `usage`: what the failing session had spent, for the caller's accounting."""

    def __init__(self, message: str, usage: "Usage | None" = None):
        super().__init__(message)
        self.usage = usage
        self.meta = usage.as_meta() if usage is not None else {}


# ----------------------------------------------------------------- the spec
@dataclass(frozen=True)
class ModelSpec:
    """Which model, where, and what it costs. Build with `from_config`."""

    model: str  # "provider:name", or a bare name (provider inferred; openai with base_url)
    base_url: str | None = None  # an OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1
    temperature: float = 0.7
    timeout_s: float = 180.0  # one request
    max_retries: int = 5  # on rate limits and transient errors, with exponential backoff
    backoff_s: float = 2.0  # first wait; doubles per retry, with jitter, capped at 60 s
    price_input_per_mtok: float | None = None  # None: PRICES_PER_MTOK, or 0 for a local server
    price_output_per_mtok: float | None = None

    @property
    def provider(self) -> str:
        if ":" in self.model:
            return self.model.split(":", 1)[0]
        return "openai" if self.base_url else ""

    @property
    def name(self) -> str:
        return self.model.split(":", 1)[1] if ":" in self.model else self.model

    @classmethod
    def from_config(cls, agent_cfg=None, env: Mapping[str, str] | None = None) -> "ModelSpec | None":
        """params.yaml's agent section, overridden by AVO_MODEL / AVO_BASE_URL.
        None when no model is configured (the heuristic operator is used)."""
        env = os.environ if env is None else env
        get = lambda key, default=None: getattr(agent_cfg, key, default) if agent_cfg else default  # noqa: E731
        model = env.get("AVO_MODEL") or get("model")
        if not model:
            return None
        spec = cls(model=model, base_url=env.get("AVO_BASE_URL") or get("base_url"),
                   temperature=float(get("temperature", 0.7)))
        overrides = {k: get(k) for k in ("timeout_s", "max_retries", "backoff_s", "price_input_per_mtok",
                                         "price_output_per_mtok") if get(k) is not None}
        return cls(**{**spec.__dict__, **overrides}) if overrides else spec

    def prices(self) -> tuple[float, float]:
        """(input, output) USD per million tokens."""
        if self.price_input_per_mtok is not None or self.price_output_per_mtok is not None:
            return (self.price_input_per_mtok or 0.0, self.price_output_per_mtok or 0.0)
        if self.base_url:
            return (0.0, 0.0)  # self-hosted: the GPU hours are the cost, not tokens
        match = max((p for p in PRICES_PER_MTOK if self.name.startswith(p)), key=len, default=None)
        return PRICES_PER_MTOK[match] if match else (0.0, 0.0)

    def describe(self) -> str:
        return self.model + (f" at {self.base_url}" if self.base_url else "")

    def check_name(self) -> None:
        """A model string without a provider and without a base URL is ambiguous:
        one line saying how to write it (instead of whatever the SDK would say)."""
        if ":" not in self.model and not self.base_url:
            raise ModelUnavailable(
                f"model {self.model!r} has no provider prefix: write provider:name, e.g. openai:{self.model} "
                f"or anthropic:claude-sonnet-4-5 (a bare name is only accepted with agent.base_url / "
                f"AVO_BASE_URL, meaning an OpenAI-compatible server)")


def build_chat_model(spec: ModelSpec, env: Mapping[str, str] | None = None):
    """A LangChain chat model for `spec`, built offline (no request is made).
    Raises ModelUnavailable (one line) for a missing key or provider package."""
    from langchain.chat_models import init_chat_model

    env = os.environ if env is None else env
    spec.check_name()
    provider = spec.provider
    kwargs: dict = {"temperature": spec.temperature}
    if provider in _CLIENT_RETRY_KWARGS:
        kwargs.update(max_retries=0, timeout=spec.timeout_s)  # our loop retries, not the client's
    if spec.base_url:
        # Local servers ignore the key but the client insists on one.
        names = ("AVO_API_KEY", *PROVIDER_KEYS.get(provider, ()), "OPENAI_API_KEY")
        key = next((env[n] for n in names if env.get(n)), "not-needed")
        kwargs.update(base_url=spec.base_url, api_key=key)
    else:
        names = PROVIDER_KEYS.get(provider, ())
        if names and not any(env.get(n) for n in names):
            raise ModelUnavailable(f"model {spec.model} is configured but {' or '.join(names)} is not set "
                                   f"in the environment")
    try:
        return init_chat_model(spec.model if ":" in spec.model or not provider else f"{provider}:{spec.model}",
                               **kwargs)
    except ImportError as e:
        package = PROVIDER_PACKAGES.get(provider, f"the package for provider {provider!r}")
        raise ModelUnavailable(f"model {spec.model} needs {package}: pip install {package} ({_line(e)})") from None
    except ValueError as e:
        raise ModelUnavailable(f"model {spec.model}: {_line(e)}") from None


# ---------------------------------------------------------- usage and budget
@dataclass
class Usage:
    """Tokens and dollars of one variation session (one candidate)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    calls: int = 0
    retries: int = 0

    def as_meta(self) -> dict:
        # `tokens` is what avo.budget.Spent charges against the run's token budget
        return {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                "tokens": self.input_tokens + self.output_tokens, "cost_usd": round(self.cost_usd, 6), "model_calls": self.calls,
                "model_retries": self.retries}


@dataclass
class Budget:
    """A hard limit for a whole run, shared by every session (thread-safe).
    A call starts only while the spend is under the limit, so a run overshoots
    by at most the calls in flight when the limit is crossed."""

    max_tokens: int | None = None  # input + output
    max_cost_usd: float | None = None
    tokens: int = 0
    cost_usd: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def check(self) -> None:
        with self._lock:
            if self.max_tokens is not None and self.tokens >= self.max_tokens:
                raise BudgetExceeded(f"token budget spent: {self.tokens} of {self.max_tokens} tokens")
            if self.max_cost_usd is not None and self.cost_usd >= self.max_cost_usd:
                raise BudgetExceeded(f"cost budget spent: ${self.cost_usd:.2f} of ${self.max_cost_usd:.2f}")

    def charge(self, tokens: int, cost_usd: float) -> None:
        with self._lock:
            self.tokens += tokens
            self.cost_usd += cost_usd


# ------------------------------------------------------------------ calling
def is_transient(e: BaseException) -> bool:
    if isinstance(e, (ConnectionError, TimeoutError)):
        return True
    name = type(e).__name__
    # langchain-openai re-wraps SDK errors (OpenAIRateLimitError, OpenAIConnectionError...)
    return (name in _TRANSIENT_NAMES or _status(e) in _TRANSIENT_STATUS
            or any(word in name for word in _TRANSIENT_WORDS))


def _is_fatal(e: BaseException) -> bool:
    name = type(e).__name__
    return _status(e) in _FATAL_STATUS or any(word in name for word in _FATAL_WORDS)


def _is_connection(e: BaseException) -> bool:
    return isinstance(e, ConnectionError) or "Connect" in type(e).__name__


def _status(e: BaseException) -> int | None:
    code = getattr(e, "status_code", None) or getattr(getattr(e, "response", None), "status_code", None)
    return code if isinstance(code, int) else None


def _retry_after(e: BaseException) -> float:
    """Seconds a 429/503 asked us to wait (its Retry-After header), else 0."""
    headers = getattr(getattr(e, "response", None), "headers", None) or {}
    try:
        value = headers.get("retry-after") or headers.get("Retry-After")
        return max(0.0, float(value)) if value is not None else 0.0
    except (TypeError, ValueError):  # an HTTP date: rare from model APIs; the backoff covers it
        return 0.0


def _line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:240]


def invoke_model(model, messages: list[BaseMessage], *, spec: ModelSpec | None, usage: Usage,
                 budget: Budget | None = None, sleep: Callable[[float], None] = time.sleep) -> AIMessage:
    """One model call with retries on transient errors, accounted in `usage`
    and `budget`. A key rejected, an unknown model or an unreachable server
    after the retries end in ModelUnavailable; anything else propagates."""
    if budget is not None:
        budget.check()
    retries = spec.max_retries if spec else 3
    wait = spec.backoff_s if spec else 0.0
    where = spec.describe() if spec else "the model"
    for attempt in range(retries + 1):
        try:
            reply = model.invoke(messages)
            break
        except Exception as e:  # noqa: BLE001 - classified below
            status = _status(e)
            if _is_fatal(e):
                what = _FATAL_STATUS.get(status) or ("model or endpoint not found" if "NotFound" in type(e).__name__
                                                     else "the key was rejected")
                raise ModelUnavailable(f"{where}: {what} "
                                       f"({type(e).__name__}: {_line(e)})") from None
            if not is_transient(e):
                raise
            if attempt == retries:
                if _is_connection(e):
                    raise ModelCallFailed(f"{where} is unreachable after {retries + 1} attempts: "
                                          f"{_line(e)}", usage) from None
                raise ModelCallFailed(f"{where} kept failing after {retries + 1} attempts "
                                      f"({type(e).__name__}: {_line(e)})", usage) from None
            usage.retries += 1
            backoff = min(60.0, wait * 2 ** attempt) * (0.5 + random.random() / 2)
            sleep(max(backoff, min(60.0, _retry_after(e))))
    if not isinstance(reply, AIMessage):
        reply = AIMessage(content=getattr(reply, "content", str(reply)))
    meta = reply.usage_metadata or {}
    tokens_in, tokens_out = int(meta.get("input_tokens", 0)), int(meta.get("output_tokens", 0))
    price_in, price_out = spec.prices() if spec else (0.0, 0.0)
    cost = (tokens_in * price_in + tokens_out * price_out) / 1e6
    usage.input_tokens += tokens_in
    usage.output_tokens += tokens_out
    usage.cost_usd += cost
    usage.calls += 1
    if budget is not None:
        budget.charge(tokens_in + tokens_out, cost)
    return reply


# ------------------------------------------------------------------ preflight
PREFLIGHT_PROMPT = "avo preflight: reply with the single word ok."


def preflight(spec: ModelSpec, model=None, env: Mapping[str, str] | None = None,
              sleep: Callable[[float], None] = time.sleep) -> Usage:
    """One tiny request, before any evaluation: the server is reachable and the
    key accepted. Raises ModelUnavailable with one line otherwise (at most two
    retries, so a wrong URL fails in seconds, not minutes)."""
    from langchain_core.messages import HumanMessage

    model = model if model is not None else build_chat_model(spec, env)
    quick = ModelSpec(**{**spec.__dict__, "max_retries": min(spec.max_retries, 2)})
    usage = Usage()
    try:
        invoke_model(model, [HumanMessage(PREFLIGHT_PROMPT)], spec=quick, usage=usage, sleep=sleep)
    except ModelUnavailable as e:
        raise ModelUnavailable(f"model check failed: {e}") from None
    except Exception as e:  # noqa: BLE001 - any other SDK error (400, bad URL...): one line
        raise ModelUnavailable(f"model check failed: {spec.describe()} answered "
                               f"{type(e).__name__}: {_line(e)}") from None
    return usage
