"""A local OpenAI-compatible chat-completions server for the wire tests.

    with FakeOpenAI([reply(tool("list_lineage")), fault(429, retry_after=0.2), reply("done")]) as server:
        ChatOpenAI(model="openai:x", base_url=server.url, api_key="k")...

It listens on 127.0.0.1 only (an ephemeral port), answers POST
/v1/chat/completions (JSON, or server-sent events when the request says
`stream: true`) and Anthropic's POST /v1/messages (JSON) with the scripted
turns in order, real `tool_calls` JSON and
`usage` counts, and serves faults on demand: an HTTP status (429 with
Retry-After, 500), a dropped connection, a response slower than the client's
timeout. It stops by itself after `lifetime_s` (and with the test process: its
threads are daemons), so a failing test never leaves it running.

The run's model check (agents.models.PREFLIGHT_PROMPT) is answered "ok" without
using a turn; `preflights` counts those. With `api_key` set, any other key gets
a 401 like OpenAI's. Every other request body is kept in `requests`.
"""
from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from agents.models import PREFLIGHT_PROMPT


@dataclass
class Turn:
    content: str = ""
    tool_calls: list = field(default_factory=list)  # [(name, args dict | raw arguments string)]
    usage: tuple[int, int] = (120, 30)
    finish_reason: str | None = None
    # faults
    status: int | None = None  # an HTTP error status instead of an answer
    retry_after: float | None = None
    drop: bool = False  # close the connection without answering
    delay_s: float = 0.0  # answer this late (longer than the client timeout: a timeout)


def tool(name: str, args: dict | str | None = None) -> tuple:
    return (name, {} if args is None else args)


def reply(*calls, text: str = "", usage: tuple[int, int] = (120, 30), finish_reason: str | None = None) -> Turn:
    return Turn(content=text, tool_calls=list(calls), usage=usage, finish_reason=finish_reason)


def fault(kind, *, retry_after: float | None = None, seconds: float = 0.0) -> Turn:
    """fault(429, retry_after=0.2) | fault(500) | fault("drop") | fault("slow", seconds=3)."""
    if kind == "drop":
        return Turn(drop=True)
    if kind == "slow":
        return Turn(delay_s=seconds, content="too late")
    return Turn(status=int(kind), retry_after=retry_after)


class FakeOpenAI:
    def __init__(self, turns=(), *, api_key: str | None = None, lifetime_s: float = 120.0):
        self.turns = list(turns)
        self.api_key = api_key
        self.lifetime_s = lifetime_s
        self.requests: list[dict] = []  # bodies of the scripted requests, in order
        self.preflights = 0
        self.served = 0  # turns used (faults included)
        self.overrun = 0  # requests after the script ended
        self.faults = 0
        self.streamed = 0
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self._ids = 0
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True, name="fake-openai")
        self._timer = threading.Timer(lifetime_s, self.stop)
        self._timer.daemon = True

    # ---------------------------------------------------------------- life
    def start(self) -> "FakeOpenAI":
        self._thread.start()
        self._timer.start()
        return self

    def stop(self) -> None:
        if self.stopping.is_set():
            return
        self.stopping.set()
        self._timer.cancel()
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> "FakeOpenAI":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def add(self, *turns: Turn) -> None:
        with self.lock:
            self.turns.extend(turns)

    # ----------------------------------------------------------- answers
    def next_turn(self, body: dict) -> Turn | None:
        with self.lock:
            self.requests.append(body)
            if self.served >= len(self.turns):
                self.overrun += 1
                return None
            turn = self.turns[self.served]
            self.served += 1
            if turn.status or turn.drop or turn.delay_s:
                self.faults += 1
            return turn

    def completion(self, body: dict, turn: Turn | None) -> dict:
        turn = turn or Turn(content="(the fake server's script is exhausted)")
        with self.lock:
            self._ids += 1
            n = self._ids
        calls = [{"id": f"call_{n}_{i}", "type": "function",
                  "function": {"name": name, "arguments": args if isinstance(args, str) else json.dumps(args)}}
                 for i, (name, args) in enumerate(turn.tool_calls)]
        message = {"role": "assistant", "content": turn.content or None}
        if calls:
            message["tool_calls"] = calls
        finish = turn.finish_reason or ("tool_calls" if calls else "stop")
        prompt, completion = turn.usage
        return {"id": f"chatcmpl-{n}", "object": "chat.completion", "created": int(time.time()),
                "model": body.get("model", "fake"),
                "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
                "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                          "total_tokens": prompt + completion}}


    def message(self, body: dict, turn: Turn | None) -> dict:
        """The same turn in Anthropic's messages protocol."""
        turn = turn or Turn(content="(the fake server's script is exhausted)")
        with self.lock:
            self._ids += 1
            n = self._ids
        content = [{"type": "text", "text": turn.content}] if turn.content else []
        for i, (name, args) in enumerate(turn.tool_calls):
            content.append({"type": "tool_use", "id": f"toolu_{n}_{i}", "name": name,
                            "input": json.loads(args) if isinstance(args, str) else args})
        stop = {"length": "max_tokens"}.get(turn.finish_reason or "", "tool_use" if turn.tool_calls else "end_turn")
        prompt, completion = turn.usage
        return {"id": f"msg_{n}", "type": "message", "role": "assistant", "model": body.get("model", "fake"),
                "content": content, "stop_reason": stop, "stop_sequence": None,
                "usage": {"input_tokens": prompt, "output_tokens": completion}}


def _is_preflight(body: dict) -> bool:
    msgs = body.get("messages") or []
    last = msgs[-1] if msgs else {}
    content = last.get("content")
    if isinstance(content, list):
        content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return last.get("role") == "user" and content == PREFLIGHT_PROMPT and not body.get("tools")


def _handler(server: FakeOpenAI):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        def _json(self, status: int, payload: dict, headers: dict | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str, kind: str, headers: dict | None = None) -> None:
            if getattr(self, "protocol", "") == "anthropic":
                kind = {401: "authentication_error", 429: "rate_limit_error", 529: "overloaded_error"}.get(
                    status, "api_error")
                return self._json(status, {"type": "error", "error": {"type": kind, "message": message}}, headers)
            self._json(status, {"error": {"message": message, "type": kind, "param": None, "code": kind}}, headers)

        def do_GET(self):  # noqa: N802
            self._error(404, "only POST /v1/chat/completions is served here", "not_found")

        def do_POST(self):  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            anthropic = self.path.rstrip("/").endswith("/v1/messages")
            if not (anthropic or self.path.rstrip("/").endswith("/chat/completions")):
                return self._error(404, f"no route {self.path}", "not_found")
            if anthropic:
                self.protocol = "anthropic"  # newer SDKs send the key as a bearer token
                key = self.headers.get("x-api-key") or (self.headers.get("Authorization") or "").removeprefix("Bearer ")
            else:
                self.protocol = "openai"
                key = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
            if server.api_key is not None and key != server.api_key:
                return self._error(401, "Incorrect API key provided.", "invalid_api_key")
            try:
                body = json.loads(raw or b"{}")
            except json.JSONDecodeError:
                return self._error(400, "request body is not JSON", "invalid_request_error")
            if _is_preflight(body):
                with server.lock:
                    server.preflights += 1
                ok = Turn(content="ok", usage=(12, 1))
                return self._json(200, server.message(body, ok) if anthropic else server.completion(body, ok))
            turn = server.next_turn(body)
            if turn is not None and turn.drop:
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            if turn is not None and turn.delay_s:
                if server.stopping.wait(turn.delay_s):
                    return
            if turn is not None and turn.status:
                headers = {"Retry-After": f"{turn.retry_after:g}"} if turn.retry_after is not None else {}
                kind = "rate_limit_exceeded" if turn.status == 429 else "server_error"
                return self._error(turn.status, f"scripted fault {turn.status}", kind, headers)
            if anthropic:
                return self._json(200, server.message(body, turn))
            answer = server.completion(body, turn)
            try:
                if body.get("stream"):
                    self._stream(answer, include_usage=bool((body.get("stream_options") or {}).get("include_usage")))
                else:
                    self._json(200, answer)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                pass

        def _stream(self, answer: dict, include_usage: bool) -> None:
            with server.lock:
                server.streamed += 1
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.close_connection = True  # the stream ends with the connection
            self.end_headers()
            base = {k: answer[k] for k in ("id", "created", "model")} | {"object": "chat.completion.chunk"}
            choice = answer["choices"][0]
            message = choice["message"]

            def send(delta: dict | None, finish=None, usage=None) -> None:
                chunk = {**base, "choices": [] if delta is None else
                         [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}
                if usage is not None:
                    chunk["usage"] = usage
                self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
                self.wfile.flush()

            send({"role": "assistant", "content": ""})
            content = message.get("content") or ""
            for i in range(0, len(content), 40):
                send({"content": content[i:i + 40]})
            for index, call in enumerate(message.get("tool_calls") or []):
                send({"tool_calls": [{"index": index, "id": call["id"], "type": "function",
                                      "function": {"name": call["function"]["name"], "arguments": ""}}]})
                args = call["function"]["arguments"]
                for i in range(0, len(args), 20):
                    send({"tool_calls": [{"index": index, "function": {"arguments": args[i:i + 20]}}]})
            send({}, finish=choice["finish_reason"])
            if include_usage:
                send(None, usage=answer["usage"])
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()

    return Handler


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (for unreachable-server tests)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
