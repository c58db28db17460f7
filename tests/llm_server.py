"""A real, local chat-completions HTTP server for the description tests.

``ChatServer`` listens on 127.0.0.1 (a free port) with ``http.server.ThreadingHTTPServer`` in a
daemon thread, answers ``POST /v1/chat/completions`` like an OpenAI-compatible server, and records
every request. It stops when its ``with`` block ends, and by itself after ``lifetime`` seconds
in any case. Behaviour is scripted: ``plan`` is a list of responses used one per request, in
order (``None`` = a normal answer), and ``respond`` makes the normal answer.

Slow and unwilling servers: ``drip=s`` sends every response one byte every ``s`` seconds, from
the status line on (``drip_from="status"``) or after the headers (``drip_from="body"``), until
the response is sent, the client hangs up or the server stops; ``retry_after(seconds)`` is a 429
asking the client to come back later.
"""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

Reply = tuple[int, dict[str, str], bytes]


def prompt_of(body: dict[str, Any]) -> str:
    """The last user message of a chat-completions request body."""
    return [m["content"] for m in body["messages"] if m.get("role") == "user"][-1]


def default_content(body: dict[str, Any], k: int) -> str:
    """A deterministic sentence naming the prompt, e.g. 'Answer 0 to: Use a single ...'."""
    return f"Answer {k} to: {prompt_of(body)}"


def completion(body: dict[str, Any], contents: list[str]) -> Reply:
    payload = {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 0,
        "model": body.get("model", "test-model"),
        "choices": [{"index": i, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": c}}
                    for i, c in enumerate(contents)],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
    return 200, {"Content-Type": "application/json"}, json.dumps(payload).encode()


def error(status: int, message: str = "error", headers: dict[str, str] | None = None) -> Reply:
    payload = {"error": {"message": message, "type": "test", "code": status}}
    return status, {"Content-Type": "application/json", **(headers or {})}, \
        json.dumps(payload).encode()


def retry_after(seconds: float, status: int = 429) -> Reply:
    """A 429 (or ``status``) whose ``Retry-After`` header asks to wait ``seconds``."""
    return error(status, "rate limited", {"Retry-After": f"{seconds:g}"})


class _QuietServer(ThreadingHTTPServer):
    """A client that gave up (its timeout passed) is no error: no traceback on stderr."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


class ChatServer:
    """``with ChatServer() as srv: srv.base_url ... srv.requests``."""

    def __init__(self, plan: list[Reply | None] | None = None,
                 respond: Callable[[dict[str, Any]], Reply] | None = None,
                 lifetime: float = 60.0, max_choices: int | None = None,
                 drip: float = 0.0, drip_from: str = "status") -> None:
        if drip_from not in ("status", "body"):
            raise ValueError(f"drip_from must be 'status' or 'body', got {drip_from!r}")
        self.drip = drip
        self.drip_from = drip_from
        self._stopped = threading.Event()
        self.plan = list(plan or [])
        self.max_choices = max_choices
        self.respond = respond or self._answer
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.lifetime = lifetime
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._timer: threading.Timer | None = None

    def _answer(self, body: dict[str, Any]) -> Reply:
        n = int(body.get("n") or 1)
        if self.max_choices is not None:
            n = min(n, self.max_choices)
        return completion(body, [default_content(body, k) for k in range(n)])

    def _next_reply(self, body: dict[str, Any]) -> Reply:
        with self._lock:
            self.requests.append(body)
            planned = self.plan.pop(0) if self.plan else None
        return planned if planned is not None else self.respond(body)

    @property
    def base_url(self) -> str:
        assert self._server is not None, "server not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def prompts(self) -> list[str]:
        with self._lock:
            return [prompt_of(b) for b in self.requests]

    def __enter__(self) -> "ChatServer":
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def _send(self, reply: Reply) -> None:
                status, headers, body = reply
                if outer.drip > 0 and outer.drip_from == "status":
                    head = f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}\r\n" + "".join(
                        f"{k}: {v}\r\n" for k, v in {**headers, "Content-Length": str(len(body))}.items())
                    self._drip(head.encode("latin-1") + b"\r\n" + body)
                    return
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if outer.drip > 0:
                    self._drip(body)
                else:
                    self.wfile.write(body)

            def _drip(self, data: bytes) -> None:
                """One byte every ``drip`` seconds; stops when the server stops."""
                for i in range(len(data)):
                    if outer._stopped.wait(outer.drip):
                        self.close_connection = True
                        return
                    self.wfile.write(data[i:i + 1])
                    self.wfile.flush()

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._send(error(404, f"no route {self.path}"))
                    return
                try:
                    body = json.loads(raw)
                except json.JSONDecodeError:
                    self._send(error(400, "request body is not JSON"))
                    return
                with outer._lock:
                    outer.headers.append(dict(self.headers))
                self._send(outer._next_reply(body))

            def do_GET(self) -> None:  # noqa: N802
                self._send(error(404, f"no route {self.path}"))

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        self._timer = threading.Timer(self.lifetime, self.stop)
        self._timer.daemon = True
        self._timer.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._timer is not None:
            self._timer.cancel()

    def __exit__(self, *exc: Any) -> None:
        port_server = self._server
        self.stop()
        if self._thread is not None and port_server is not None:
            self._thread.join(timeout=5)
