"""A real OpenAI-compatible HTTP server for tests, scriptable per test.

Tests talk to it through the real `openai` client, so what they check is what a real endpoint
would see: the JSON sent, the headers, retries, timeouts. It listens on 127.0.0.1 on an
ephemeral port and implements `POST /v1/chat/completions` and `GET /v1/models`.

Each chat request consumes the next scripted `Behaviour` from a queue; when the queue is empty
the `fallback` callable answers (by default a 500 that says the script ran out, so a test that
makes more calls than it planned fails loudly). Every request is recorded.

Use the `openai_server` fixture, or `with FakeOpenAIServer() as server:`.
"""
from __future__ import annotations

import json
import socket
import struct
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Behaviour:
    """What the server does for one chat request: wait `delay_s`, then send `status` + `body`, or,
    with `reset`, drop the connection with a TCP reset instead of answering."""

    status: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    delay_s: float = 0.0
    reset: bool = False


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server received it (headers lower-cased; body parsed when it is JSON)."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


def _json(status: int, payload: Any, headers: tuple[tuple[str, str], ...] = (), delay_s: float = 0.0) -> Behaviour:
    return Behaviour(status, json.dumps(payload).encode(), (("Content-Type", "application/json"), *headers), delay_s)


def _error(status: int, message: str, code: str | None = None, headers: tuple[tuple[str, str], ...] = ()) -> Behaviour:
    return _json(status, {"error": {"message": message, "type": "invalid_request_error", "code": code}}, headers)


def ok(text: str | None, *, usage: tuple[int, int] | None = (100, 50), model: str = "test-model",
       finish_reason: str = "stop", delay_s: float = 0.0, reasoning: str | None = None) -> Behaviour:
    """A normal completion; `usage=None` leaves the usage block out (as some local servers do);
    `finish_reason="length"` is an answer cut off at max_tokens; `reasoning` fills the
    `reasoning_content` field a server with a reasoning parser (vLLM --reasoning-parser) adds."""
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if reasoning is not None:
        message["reasoning_content"] = reasoning
    payload: dict[str, Any] = {
        "id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": model,
        "choices": [{"index": 0, "finish_reason": finish_reason, "message": message}],
    }
    if usage is not None:
        payload["usage"] = {"prompt_tokens": usage[0], "completion_tokens": usage[1],
                            "total_tokens": usage[0] + usage[1]}
    return _json(200, payload, delay_s=delay_s)


def rate_limited(retry_after: str | None = "0") -> Behaviour:
    """429, with a Retry-After header (seconds) unless None."""
    headers = (("Retry-After", retry_after),) if retry_after is not None else ()
    return _error(429, "Rate limit reached for requests", "rate_limit_exceeded", headers)


def server_error(status: int = 500, message: str = "internal server error") -> Behaviour:
    return _error(status, message)


def slow(delay_s: float) -> Behaviour:
    """Sleeps `delay_s` before answering (longer than the client's deadline, so it times out)."""
    return ok("too late", delay_s=delay_s)


def reset() -> Behaviour:
    """The connection is reset (RST) after the request is read, as by a server that crashed mid-call."""
    return Behaviour(reset=True)


def malformed() -> Behaviour:
    """A 200 whose body claims to be JSON but is not."""
    return Behaviour(200, b"{this is not json", (("Content-Type", "application/json"),))


def empty_choices() -> Behaviour:
    return _json(200, {"id": "x", "object": "chat.completion", "created": 0, "model": "test-model", "choices": []})


def empty_content() -> Behaviour:
    return ok("")


def context_too_long(message: str = "This model's maximum context length is 8192 tokens. "
                                    "However, your messages resulted in 9000 tokens.") -> Behaviour:
    return _error(400, message, "context_length_exceeded")


def status(code: int, message: str) -> Behaviour:
    """Any error status with an OpenAI-style error body (401 bad key, 404 unknown model...)."""
    return _error(code, message)


def _script_exhausted(_request: RecordedRequest) -> Behaviour:
    return server_error(500, "test server: no scripted behaviour left for this request")


@dataclass
class FakeOpenAIServer:
    """The server and its script. `models` is what GET /v1/models lists (`models_status` != 200 fails it)."""

    models: list[str] = field(default_factory=lambda: ["test-model"])
    models_status: int = 200
    fallback: Callable[[RecordedRequest], Behaviour] = _script_exhausted
    requests: list[RecordedRequest] = field(default_factory=list)
    _queue: deque[Behaviour] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _httpd: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        """The base URL to give the client (".../v1")."""
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def push(self, *behaviours: Behaviour) -> None:
        """Queue behaviours for the next chat requests, in order."""
        with self._lock:
            self._queue.extend(behaviours)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def start(self) -> FakeOpenAIServer:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes handlers sleeping in a `slow` behaviour
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _next(self, request: RecordedRequest) -> Behaviour:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
        return self.fallback(request)

    def _models_behaviour(self) -> Behaviour:
        if self.models_status != 200:
            return _error(self.models_status, f"models listing failed with {self.models_status}")
        return _json(200, {"object": "list", "data": [
            {"id": m, "object": "model", "created": 0, "owned_by": "test"} for m in self.models]})


def _handler_for(server: FakeOpenAIServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_args: object) -> None:  # keep pytest output clean
            pass

        def _recorded(self) -> RecordedRequest:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body: Any = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode("utf-8", "replace")
            headers = {k.lower(): v for k, v in self.headers.items()}
            return RecordedRequest(self.command, self.path, headers, body)

        def _send(self, behaviour: Behaviour) -> None:
            if behaviour.delay_s and server._stopping.wait(behaviour.delay_s):
                return
            if behaviour.reset:  # linger 0: closing sends RST, not FIN
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
                self.rfile.close()
                self.close_connection = True
                return
            try:
                self.send_response(behaviour.status)
                for name, value in behaviour.headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(behaviour.body)))
                self.end_headers()
                self.wfile.write(behaviour.body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (deadline): nothing to answer

        def do_GET(self) -> None:
            request = self._recorded()
            server._record(request)
            if self.path.rstrip("/").endswith("/v1/models"):
                self._send(server._models_behaviour())
            else:
                self._send(_error(404, f"no route {self.path}"))

        def do_POST(self) -> None:
            request = self._recorded()
            server._record(request)
            if self.path.rstrip("/").endswith("/v1/chat/completions"):
                self._send(server._next(request))
            else:
                self._send(_error(404, f"no route {self.path}"))

    return Handler
