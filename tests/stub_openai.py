"""A scripted OpenAI-compatible Chat Completions server on 127.0.0.1, for tests and benchmarks.

The real ``openai`` client talks to it over HTTP exactly as it would talk to
OpenAI, vLLM or a llama.cpp server; nothing in the client is patched.

    with StubOpenAI(script=[Answer({"treatment": "retention_email", ...}), Status(429, {"retry-after-ms": "10"})]) as stub:
        client = openai.OpenAI(base_url=stub.base_url, api_key="test-key")
        ...
        stub.request_count          # requests received so far
        stub.requests[0]            # the JSON body of the first request
        schema_enum(stub.requests[0], "treatment")   # the enum the model was offered

Each ``POST /v1/chat/completions`` takes the next reply off the script:

* ``Answer(obj)``          a ``chat.completion`` whose message content is ``json.dumps(obj)``
                           (a plain ``dict`` in the script is shorthand for this);
* ``Raw(text)``            a ``chat.completion`` whose content is ``text`` verbatim (malformed JSON, prose);
* ``Status(code, headers, message)``  an HTTP error with an OpenAI-style error body
                           (``Status(429, {"retry-after-ms": "10"})``, ``Status(500)``);
* ``Delay(seconds, then)`` wait, then answer with ``then`` (or with the default responder when ``then`` is None,
                           and with ``schema_answer`` when the default responder is the one delaying);
* ``Body(content, content_type, status)``  exactly these bytes as the HTTP response, not a completion
                           (an HTML login page behind a wrong ``OPENAI_BASE_URL``, an empty or truncated
                           body, JSON of the wrong shape): what a misconfigured proxy or gateway sends.

When the script is empty, ``default(body)`` computes the reply from the request
(by default ``schema_answer``: a valid answer to the request's JSON schema, the
first value of each enum). ``default=None`` makes an unscripted request fail
loudly (HTTP 500 with ``x-should-retry: false``) and counts it in ``unscripted``.

A responder that raises is answered with HTTP 500 and its exception kept in ``errors``.
``latency`` seconds are added before every reply (benchmarks). The server
records every request body and header set, and the largest number of requests
it had in flight at once (``max_in_flight``), which is how tests observe the
client's concurrency bound. Delays wake up at once when the server stops.
"""

from __future__ import annotations

import itertools
import json
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Union

__all__ = [
    "Answer",
    "Body",
    "Delay",
    "Raw",
    "Reply",
    "Status",
    "StubOpenAI",
    "response_schema",
    "schema_answer",
    "schema_enum",
]

CHAT_PATH = "/v1/chat/completions"


@dataclass(frozen=True)
class Answer:
    """A well-formed completion whose content is the JSON encoding of ``value``."""

    value: Any


@dataclass(frozen=True)
class Raw:
    """A well-formed completion whose content is ``text`` exactly (use it for malformed JSON)."""

    text: str


@dataclass(frozen=True)
class Status:
    """An HTTP error status with optional headers, e.g. ``Status(429, {"retry-after-ms": "10"})``."""

    code: int
    headers: Mapping[str, str] = field(default_factory=dict)
    message: str = "stub error"


@dataclass(frozen=True)
class Delay:
    """Wait ``seconds`` before answering with ``then`` (None: whatever the default responder says)."""

    seconds: float
    then: Reply | dict[str, Any] | None = None


@dataclass(frozen=True)
class Body:
    """The HTTP response body verbatim (``str`` is sent as UTF-8), with its own content type and status."""

    content: str | bytes
    content_type: str = "text/html; charset=utf-8"
    status: int = 200

    @property
    def data(self) -> bytes:
        return self.content.encode() if isinstance(self.content, str) else self.content


Reply = Union[Answer, Raw, Status, Delay, Body]
Responder = Callable[[dict[str, Any]], Union[Reply, dict[str, Any]]]


# --- reading a request ---------------------------------------------------------


def response_schema(body: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON schema a request asked the answer to follow (``response_format.json_schema.schema``); {} if none."""
    fmt = body.get("response_format") or {}
    return dict((fmt.get("json_schema") or {}).get("schema") or {})


def schema_enum(body: Mapping[str, Any], prop: str) -> list[Any]:
    """The ``enum`` of property ``prop`` in the request's JSON schema (KeyError when it has none)."""
    return list(response_schema(body)["properties"][prop]["enum"])


def _value_for(spec: Mapping[str, Any]) -> Any:
    if "enum" in spec:
        return spec["enum"][0]
    kind = spec.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "string":
        return "stub answer"
    if kind in ("number", "integer"):
        low, high = spec.get("minimum", 0), spec.get("maximum", 1)
        value = (low + high) / 2
        return int(value) if kind == "integer" else value
    if kind == "boolean":
        return False
    if kind == "array":
        return []
    if kind == "object":
        return {name: _value_for(sub) for name, sub in (spec.get("properties") or {}).items()}
    return None


def schema_answer(body: Mapping[str, Any]) -> dict[str, Any]:
    """A valid answer to the request's JSON schema: each enum's first value, a midpoint for bounded numbers."""
    schema = response_schema(body)
    if not schema:
        return {}
    answer = _value_for({**schema, "type": "object"})
    return answer if isinstance(answer, dict) else {}


# --- the server ----------------------------------------------------------------


def _as_reply(item: Reply | dict[str, Any]) -> Reply:
    if isinstance(item, (Answer, Raw, Status, Delay, Body)):
        return item
    if isinstance(item, dict):
        return Answer(item)
    raise TypeError(f"a stub reply must be Answer, Raw, Status, Delay, Body or a dict, not {type(item).__name__}")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256  # benchmarks open many connections at once
    stub: StubOpenAI

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # a client that hung up (timeout, closed pool) is normal here
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.stub._track(self.connection, open_=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.stub._track(self.connection, open_=False)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass  # keep pytest output clean

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self._send_json(404, {"error": {"message": f"stub serves only POST {CHAT_PATH}", "type": "not_found"}})

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.path.rstrip("/") != CHAT_PATH:
            self._send_json(404, {"error": {"message": f"stub serves only POST {CHAT_PATH}", "type": "not_found"}})
            return
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            self._send_json(400, {"error": {"message": "request body is not JSON", "type": "invalid_request_error"}})
            return
        stub = self.server.stub
        status, headers, payload = stub._respond(body, dict(self.headers.items()))
        if status is None:  # the stub stopped while this request waited
            self.close_connection = True
            return
        try:
            if isinstance(payload, Body):
                self._send(status, payload.data, payload.content_type, headers)
            else:
                self._send_json(status, payload, headers)
        except OSError:  # the client gave up (timeout) before the answer came
            self.close_connection = True

    def _send_json(self, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json", headers)

    def _send(self, status: int, data: bytes, content_type: str, headers: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()


class StubOpenAI:
    """A scripted OpenAI-compatible server on 127.0.0.1 (port chosen by the OS); see the module docstring."""

    def __init__(
        self,
        script: Iterable[Reply | dict[str, Any]] = (),
        *,
        default: Responder | None = schema_answer,
        latency: float = 0.0,
        host: str = "127.0.0.1",
    ):
        self.default = default
        self.latency = latency
        self._host = host
        self._script: deque[Reply] = deque(_as_reply(r) for r in script)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._ids = itertools.count(1)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.requests: list[dict[str, Any]] = []
        """Every request body received, in arrival order."""
        self.request_headers: list[dict[str, str]] = []
        """The headers of each request, parallel to ``requests``."""
        self.in_flight = 0
        self.max_in_flight = 0
        """The most requests the server was handling at the same moment."""
        self.unscripted = 0
        """Requests that found an empty script and no default responder."""
        self.errors: list[BaseException] = []
        """Exceptions raised by the default responder (each answered with HTTP 500)."""

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> StubOpenAI:
        if self._server is not None:
            return self
        self._stopping.clear()
        server = _Server((self._host, 0), _Handler)
        server.stub = self
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="stub-openai", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, wake every delayed reply and close open connections."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> StubOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addresses ------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (no path)."""
        if self._server is None:
            raise RuntimeError("the stub server is not running; call start() first")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def base_url(self) -> str:
        """The ``OPENAI_BASE_URL`` to give a client: ``url + "/v1"``."""
        return self.url + "/v1"

    # -- scripting and inspection ---------------------------------------------

    def push(self, *replies: Reply | dict[str, Any]) -> StubOpenAI:
        """Append replies to the script (a dict is an ``Answer``)."""
        with self._lock:
            self._script.extend(_as_reply(r) for r in replies)
        return self

    def reset(self) -> None:
        """Forget the script, the recorded requests and the counters."""
        with self._lock:
            self._script.clear()
            self.requests.clear()
            self.request_headers.clear()
            self.max_in_flight = self.in_flight
            self.unscripted = 0
            self.errors.clear()

    @property
    def request_count(self) -> int:
        return len(self.requests)

    @property
    def pending(self) -> int:
        """Scripted replies not used yet."""
        return len(self._script)

    @property
    def last_request(self) -> dict[str, Any]:
        if not self.requests:
            raise LookupError("the stub has received no request")
        return self.requests[-1]

    # -- serving (called from handler threads) --------------------------------

    def _track(self, conn: socket.socket, *, open_: bool) -> None:
        with self._lock:
            (self._connections.add if open_ else self._connections.discard)(conn)

    def _next_reply(self, body: dict[str, Any]) -> Reply:
        with self._lock:
            if self._script:
                return self._script.popleft()
        return self._default_reply(body)

    def _default_reply(self, body: dict[str, Any]) -> Reply:
        if self.default is None:
            with self._lock:
                self.unscripted += 1
            return Status(500, {"x-should-retry": "false"}, "stub script exhausted and no default responder")
        try:
            return _as_reply(self.default(body))
        except Exception as exc:  # a broken responder must show up in the test, not hang the client
            with self._lock:
                self.errors.append(exc)
            return Status(500, {"x-should-retry": "false"}, f"stub default responder failed: {exc!r}")

    def _resolve_delays(self, reply: Reply, body: dict[str, Any]) -> tuple[Reply, float]:
        """The reply behind any delays, and the total wait (``latency`` included).

        A ``Delay`` without ``then`` answers like the default responder; when that
        responder is itself what delays (``default = lambda body: Delay(30)``, a slow
        endpoint) it answers with ``schema_answer`` instead of asking it forever.
        """
        wait = self.latency
        asked_default = False
        while isinstance(reply, Delay):
            wait += reply.seconds
            if reply.then is not None:
                reply = _as_reply(reply.then)
            elif asked_default:
                reply = Answer(schema_answer(body))
            else:
                reply, asked_default = self._default_reply(body), True
        return reply, wait

    def _respond(self, body: dict[str, Any], headers: dict[str, str]) -> tuple[int | None, dict[str, str], Any]:
        with self._lock:
            self.requests.append(body)
            self.request_headers.append(headers)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            reply, wait = self._resolve_delays(self._next_reply(body), body)
            if wait > 0 and self._stopping.wait(wait):
                return None, {}, None
            return self._render(reply, body)
        finally:
            # Leave the in-flight count before the answer is written, so a client that
            # starts its next request on receipt can never be counted twice.
            with self._lock:
                self.in_flight -= 1

    def _render(self, reply: Reply, body: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
        if isinstance(reply, Body):
            return reply.status, {}, reply
        if isinstance(reply, Status):
            kind = "rate_limit_error" if reply.code == 429 else ("server_error" if reply.code >= 500 else "invalid_request_error")
            return reply.code, dict(reply.headers), {"error": {"message": reply.message, "type": kind, "code": None, "param": None}}
        content = reply.text if isinstance(reply, Raw) else json.dumps(reply.value)
        completion = {
            "id": f"chatcmpl-stub-{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "stub-model"),
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
        return 200, {}, completion
