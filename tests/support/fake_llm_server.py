"""A real local HTTP server speaking OpenAI's chat-completions and embeddings protocols,
scripted per test.

It serves ``POST /v1/chat/completions`` and ``POST /v1/embeddings`` (and Azure OpenAI's
``/openai/deployments/{name}/...`` forms of both) on 127.0.0.1 from a thread of the test
process (the HTTP client releases the GIL while it waits, unlike the libSQL SDK). Each
test scripts the answers: a queue of :class:`Reply` consumed in order, then ``default``
(chat: a completion that echoes the user message) or ``embeddings_default`` (a
deterministic, unnormalized vector per input, of the asked ``dimensions`` or
``embedding_dim``) for every later request. The server records every request: its
arrival time (``time.monotonic()`` of this process), path, headers and JSON body.

    with FakeLLMServer() as server:
        server.script(Reply.rate_limited(retry_after="1"), Reply.completion("hi"))
        provider = OpenAIProvider(base_url=server.base_url, ...)
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it."""

    at: float
    path: str
    authorization: str | None
    body: dict[str, Any] | None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def route(self) -> str | None:
        """``"chat"``, ``"embeddings"``, or ``None`` for any other path."""
        return _route(self.path)

    @property
    def inputs(self) -> list[str]:
        """An embeddings request's texts."""
        value = (self.body or {}).get("input")
        return [value] if isinstance(value, str) else list(value or [])

    @property
    def user_message(self) -> str | None:
        messages = (self.body or {}).get("messages") or []
        users = [m.get("content") for m in messages if m.get("role") == "user"]
        return users[-1] if users else None


@dataclass(frozen=True)
class Reply:
    """One scripted answer: status, headers, raw body, and an optional delay before it."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0

    @classmethod
    def completion(
        cls, text: str, *, prompt_tokens: int = 7, completion_tokens: int = 3, delay_s: float = 0
    ) -> Reply:
        """A well-formed chat completion answering ``text``."""
        payload = {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
        return cls.json(200, payload, delay_s=delay_s)

    @classmethod
    def json(
        cls,
        status: int,
        payload: object,
        *,
        headers: dict[str, str] | None = None,
        delay_s: float = 0,
    ) -> Reply:
        return cls(
            status=status,
            body=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json", **(headers or {})},
            delay_s=delay_s,
        )

    @classmethod
    def rate_limited(cls, *, retry_after: str) -> Reply:
        """429 Too Many Requests, with a ``Retry-After`` header."""
        return cls.json(
            429,
            {"error": {"message": "slow down", "type": "rate_limit"}},
            headers={"Retry-After": retry_after},
        )

    @classmethod
    def server_error(cls) -> Reply:
        return cls.json(500, {"error": {"message": "internal error"}})

    @classmethod
    def embeddings(cls, vectors: list[list[float]], *, model: str = "embed-test") -> Reply:
        """A well-formed embeddings answer, one ``data[]`` entry per vector, in order."""
        payload = {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": vector}
                for i, vector in enumerate(vectors)
            ],
            "model": model,
            "usage": {"prompt_tokens": len(vectors), "total_tokens": len(vectors)},
        }
        return cls.json(200, payload)


Responder = Callable[[RecordedRequest], Reply]


def echo_responder(request: RecordedRequest) -> Reply:
    """Answer with the request's last user message (a well-formed completion)."""
    return Reply.completion(request.user_message or "")


def vector_for(text: str, dim: int) -> list[float]:
    """A deterministic vector for ``text``, not normalized (its norm is not 1)."""
    digest = b""
    counter = 0
    while len(digest) < dim:
        digest += hashlib.sha256(f"{counter}:{text}".encode()).digest()
        counter += 1
    return [(byte - 127.5) / 10 for byte in digest[:dim]]


def _route(path: str) -> str | None:
    match = re.fullmatch(
        r"(?:/v1|/openai/deployments/[^/?]+)/(chat/completions|embeddings)(?:\?.*)?", path
    )
    if match is None:
        return None
    return "chat" if match[1] == "chat/completions" else "embeddings"


class FakeLLMServer:
    """The server; a context manager that starts and stops it."""

    def __init__(self, *, embedding_dim: int = 8) -> None:
        self.default: Responder = echo_responder
        self.embeddings_default: Responder = self._embed
        self.embedding_dim = embedding_dim
        self.requests: list[RecordedRequest] = []
        self._script: deque[Reply | Responder] = deque()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},  # how long shutdown() may wait
            name="fake-llm-server",
            daemon=True,
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """What ``OPENAI_BASE_URL`` would be: the server's ``/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> FakeLLMServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def script(self, *replies: Reply | Responder) -> None:
        """Answer the next requests with ``replies``, in order, then with ``default``."""
        with self._lock:
            self._script.extend(replies)

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self.requests)

    def _embed(self, request: RecordedRequest) -> Reply:
        dim = (request.body or {}).get("dimensions") or self.embedding_dim
        return Reply.embeddings([vector_for(text, dim) for text in request.inputs])

    def _answer(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self.requests.append(request)
            route = request.route
            if route is None:
                return Reply.json(404, {"error": {"message": f"no route {request.path}"}})
            default = self.default if route == "chat" else self.embeddings_default
            scripted = self._script.popleft() if self._script else default
        return scripted if isinstance(scripted, Reply) else scripted(request)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real endpoints do

            def setup(self) -> None:
                super().setup()
                # Headers and body leave in two writes: without this, Nagle's algorithm
                # holds the body until the client's delayed ACK (some 40 ms a request).
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except json.JSONDecodeError:
                    body = None
                recorded = RecordedRequest(
                    at=time.monotonic(),
                    path=self.path,
                    authorization=self.headers.get("Authorization"),
                    body=body if isinstance(body, dict) else None,
                    headers={name.lower(): value for name, value in self.headers.items()},
                )
                reply = server._answer(recorded)
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

            do_GET = do_POST  # noqa: N815 (recorded too: nothing else should be asked for)

            def log_message(self, format: str, *args: object) -> None:
                return

        return Handler
