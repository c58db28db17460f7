"""Wall-clock bounds for LLM requests: a whole-request deadline and the server's Retry-After.

The ``openai`` client's ``timeout`` is per socket operation: a server that sends one byte every
half second never trips it. :func:`deadline_http_client` makes the HTTP client that the
``openai`` client is given: every request gets its own connection and a timer; when ``total``
seconds have passed since the request started and its answer is not complete, the request's
socket is shut down and the request fails as a timeout (``openai.APITimeoutError``). The HTTP
library is the one the installed ``openai`` uses (``httpx``, or its fork ``httpx2``).

:func:`retry_after` reads a server's ``retry-after-ms`` / ``Retry-After`` header; the caller
waits at most :data:`RETRY_AFTER_CAP` seconds on it.
"""
from __future__ import annotations

import datetime as _dt
import email.utils
import importlib
import socket
import threading
import urllib.request
from types import ModuleType
from typing import Any, Iterator
from urllib.parse import urlsplit

#: The longest wait on a server's Retry-After; a server asking for longer is told "try again later".
RETRY_AFTER_CAP = 60.0

__all__ = ["RETRY_AFTER_CAP", "retry_after", "deadline_http_client"]


def retry_after(headers: Any) -> float | None:
    """Seconds to wait from ``retry-after-ms`` / ``Retry-After`` (seconds or an HTTP date)."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=_dt.timezone.utc)
        return max(0.0, (when - _dt.datetime.now(_dt.timezone.utc)).total_seconds())


def _shut(sock: Any) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)  # wakes a read blocked in another thread
    except (OSError, AttributeError):
        pass  # already closed


class _Watch:
    """One request's deadline: the sockets it opened, shut down when ``seconds`` have passed."""

    def __init__(self, seconds: float) -> None:
        self._lock = threading.Lock()
        self._sockets: list[Any] = []
        self.fired = False
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def trace(self, event: str, info: dict[str, Any]) -> None:
        """The HTTP core's ``trace`` hook: remember each socket the request connects."""
        if not event.endswith((".connect_tcp.complete", ".connect_unix_socket.complete")):
            return
        stream = info.get("return_value")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if sock is None:
            return
        with self._lock:
            self._sockets.append(sock)
            fired = self.fired
        if fired:
            _shut(sock)

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shut(sock)

    def cancel(self) -> None:
        self._timer.cancel()


def _http_module(openai: ModuleType) -> ModuleType:
    """``httpx`` or ``httpx2``: the module of the HTTP client class the ``openai`` client uses."""
    for klass in openai.DefaultHttpxClient.__mro__[1:]:
        if klass.__name__ == "Client":
            return importlib.import_module(klass.__module__.partition(".")[0])
    return importlib.import_module("httpx")


def _env_proxy(url: str) -> str | None:
    """The proxy the environment (``HTTPS_PROXY`` / ``NO_PROXY`` ...) names for ``url``, if any."""
    parts = urlsplit(url)
    if parts.hostname and urllib.request.proxy_bypass(parts.hostname):
        return None
    proxies = urllib.request.getproxies()
    return proxies.get(parts.scheme) or proxies.get("all")


def _transport_class(http: ModuleType) -> type:
    """An ``HTTPTransport`` of ``http`` whose every request must be complete within ``total`` s."""

    class GuardedStream(http.SyncByteStream):  # type: ignore[name-defined, misc]
        def __init__(self, inner: Any, watch: _Watch, request: Any, why: str) -> None:
            self.inner, self.watch, self.request, self.why = inner, watch, request, why

        def __iter__(self) -> Iterator[bytes]:
            try:
                yield from self.inner
            except http.TransportError:
                if self.watch.fired:
                    raise http.ReadTimeout(self.why, request=self.request) from None
                raise

        def close(self) -> None:
            self.watch.cancel()
            self.inner.close()

    class DeadlineTransport(http.HTTPTransport):  # type: ignore[name-defined, misc]
        def __init__(self, total: float, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.total = total

        def handle_request(self, request: Any) -> Any:
            watch = _Watch(self.total)
            why = f"no complete answer within {self.total:g} s"
            request.extensions = {**request.extensions, "trace": watch.trace}
            try:
                response = super().handle_request(request)
            except http.TransportError:
                watch.cancel()
                if watch.fired:
                    raise http.ReadTimeout(why, request=request) from None
                raise
            response.stream = GuardedStream(response.stream, watch, request, why)
            return response

    return DeadlineTransport


def deadline_http_client(total: float, base_url: str | None) -> Any:
    """An HTTP client for ``openai.OpenAI(http_client=...)`` that ends every request after ``total`` s.

    One connection per request (no keep-alive), so that each request's socket is its own; the
    environment's proxy for ``base_url`` (default: the OpenAI API) is used as the ``openai``
    client would.
    """
    import openai  # optional heavy client, imported only when a server is asked

    http = _http_module(openai)
    transport = _transport_class(http)(
        total, limits=http.Limits(max_connections=100, max_keepalive_connections=0),
        proxy=_env_proxy(base_url or "https://api.openai.com/v1"))
    return openai.DefaultHttpxClient(transport=transport)
