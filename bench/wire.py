"""A lean HTTP/1.1 client pool and server on asyncio, for the load generator.

Why not `requests` (what `twilio_side.HttpTransport` uses)? The load
generator, every virtual caller and Twilio's REST side share one core; a
`requests` round trip costs ~0.4 ms of Python, a blocking thread per call, and
would make the generator, not the server under test, the bottleneck. These
protocols cost a few tens of microseconds per request and keep thousands of
waiting callers on one event loop. They speak just enough HTTP/1.1 for
gunicorn and the twilio client: keep-alive, Content-Length bodies,
`Connection: close`.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Callable, Iterable
from typing import Any

_HEADER_END = b"\r\n\r\n"


class HttpError(Exception):
    """The server broke the protocol or the connection."""


class _ClientProtocol(asyncio.Protocol):
    """One keep-alive connection: one request in flight at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self._need: int | None = None
        self._status = 0
        self._body_at = 0
        self.closed = False
        self.reusable = True
        self.answered = 0  # requests answered on this connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            if self._need == -1:  # body delimited by close
                waiter.set_result((self._status, bytes(self._buffer[self._body_at :])))
            else:
                waiter.set_exception(HttpError(f"connection lost: {exc}"))

    def send(self, data: bytes) -> asyncio.Future[tuple[int, bytes]]:
        """Write a whole request; the future gets (status, body)."""
        assert self.transport is not None
        self._buffer.clear()
        self._need = None
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self._waiter

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._need is None:
            end = self._buffer.find(_HEADER_END)
            if end < 0:
                return
            head = bytes(self._buffer[:end]).decode("latin-1").split("\r\n")
            try:
                self._status = int(head[0].split(" ", 2)[1])
            except (IndexError, ValueError):
                self._fail(f"bad status line {head[0]!r}")
                return
            length = -1
            for line in head[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    length = int(value)
                elif name == "connection" and value.strip().lower() == "close":
                    self.reusable = False
                elif name == "transfer-encoding" and "chunked" in value.lower():
                    self._fail("chunked responses are not supported")
                    return
            if head[0].startswith("HTTP/1.0") and length >= 0:
                self.reusable = False
            self._body_at = end + 4
            self._need = length
            if length == -1:
                self.reusable = False
                return
        if (self._need is not None and self._need >= 0
                and len(self._buffer) - self._body_at >= self._need):
            body = bytes(self._buffer[self._body_at : self._body_at + self._need])
            waiter, self._waiter = self._waiter, None
            self.answered += 1
            if waiter is not None and not waiter.done():
                waiter.set_result((self._status, body))

    def _fail(self, message: str) -> None:
        waiter, self._waiter = self._waiter, None
        self.reusable = False
        if waiter is not None and not waiter.done():
            waiter.set_exception(HttpError(message))
        if self.transport is not None:
            self.transport.close()


class HttpPool:
    """Keep-alive connections to one host:port, at most `size` at once.

    Like any keep-alive client it must live with the server closing an idle
    connection (gunicorn after `keepalive` = 5 s) just as a request is sent on
    it: connections idle for `idle_timeout` are not reused, and a request that
    finds its reused connection closed before any byte of an answer is sent
    again on a new one (the server never read it). `retries` counts those.
    """

    def __init__(
        self, host: str, port: int, size: int = 64, timeout: float = 10.0,
        idle_timeout: float = 2.0,
    ) -> None:
        """Connect lazily; `timeout` bounds each request."""
        self.host, self.port, self.timeout = host, port, timeout
        self.idle_timeout = idle_timeout
        self._idle: list[tuple[_ClientProtocol, float]] = []
        self._slots = asyncio.Semaphore(size)
        self._host_header = f"{host}:{port}".encode()
        self.retries = 0

    async def _connection(self, fresh: bool = False) -> _ClientProtocol:
        now = time.monotonic()
        while self._idle and not fresh:
            conn, since = self._idle.pop()
            if not conn.closed and now - since < self.idle_timeout:
                return conn
            if conn.transport is not None:
                conn.transport.close()
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(_ClientProtocol, self.host, self.port)
        return protocol

    async def request(
        self, method: str, target: str, headers: Iterable[tuple[str, str]] = (), body: bytes = b""
    ) -> tuple[int, bytes, float]:
        """(status, body, seconds from send to the last byte); raises on a broken exchange."""
        lines = [f"{method} {target} HTTP/1.1\r\n".encode("latin-1"),
                 b"Host: " + self._host_header + b"\r\n"]
        for name, value in headers:
            lines.append(f"{name}: {value}\r\n".encode("latin-1"))
        if body or method == "POST":
            lines.append(b"Content-Length: %d\r\n" % len(body))
        lines.append(b"\r\n")
        data = b"".join(lines) + body
        async with self._slots:
            conn = await self._connection()
            started = time.perf_counter()
            try:
                status, answer = await asyncio.wait_for(conn.send(data), self.timeout)
            except (HttpError, ConnectionError) as exc:
                if conn.transport is not None:
                    conn.transport.close()
                if not conn.answered or conn._buffer:  # a new connection, or a partial answer
                    raise
                del exc
                self.retries += 1
                conn = await self._connection(fresh=True)
                started = time.perf_counter()
                try:
                    status, answer = await asyncio.wait_for(conn.send(data), self.timeout)
                except BaseException:
                    if conn.transport is not None:
                        conn.transport.close()
                    raise
            except BaseException:
                if conn.transport is not None:
                    conn.transport.close()
                raise
            elapsed = time.perf_counter() - started
            if conn.reusable and not conn.closed:
                self._idle.append((conn, time.monotonic()))
            elif conn.transport is not None:
                conn.transport.close()
            return status, answer, elapsed

    def close(self) -> None:
        """Close every idle connection."""
        for conn, _ in self._idle:
            if conn.transport is not None:
                conn.transport.close()
        self._idle.clear()


# -- a tiny WSGI host on the event loop ------------------------------------------


WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _ServerProtocol(asyncio.Protocol):
    """Serves a (fast, non-blocking) WSGI app inline on the event loop."""

    def __init__(
        self, app: WsgiApp, port: int, after: Callable[[str, str], None] | None, delay: float
    ) -> None:
        self.app, self.port, self.after, self.delay = app, port, after, delay
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while True:
            end = self._buffer.find(_HEADER_END)
            if end < 0:
                return
            head = bytes(self._buffer[:end]).decode("latin-1").split("\r\n")
            method, target, version = (head[0].split(" ") + ["", ""])[:3]
            headers: dict[str, str] = {}
            for line in head[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length") or 0)
            if len(self._buffer) < end + 4 + length:
                return
            body = bytes(self._buffer[end + 4 : end + 4 + length])
            del self._buffer[: end + 4 + length]
            self._serve(method, target, version, headers, body)

    def _serve(
        self, method: str, target: str, version: str, headers: dict[str, str], body: bytes
    ) -> None:
        path, _, query = target.partition("?")
        environ: dict[str, Any] = {
            "REQUEST_METHOD": method, "SCRIPT_NAME": "", "PATH_INFO": path,
            "QUERY_STRING": query, "SERVER_NAME": "127.0.0.1", "SERVER_PORT": str(self.port),
            "SERVER_PROTOCOL": version or "HTTP/1.1", "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body), "wsgi.errors": io.StringIO(),
            "wsgi.multithread": False, "wsgi.multiprocess": False, "wsgi.run_once": False,
            "CONTENT_LENGTH": str(len(body)), "CONTENT_TYPE": headers.get("content-type", ""),
        }
        for name, value in headers.items():
            if name not in ("content-type", "content-length"):
                environ["HTTP_" + name.upper().replace("-", "_")] = value
        answer: list[Any] = []

        def start_response(status: str, response_headers: list[tuple[str, str]], *_: Any) -> None:
            answer[:] = [status, response_headers]

        chunks = b"".join(self.app(environ, start_response))
        status, response_headers = answer
        out = [f"HTTP/1.1 {status}\r\n".encode("latin-1")]
        for name, value in response_headers:
            if name.lower() not in ("content-length", "connection"):
                out.append(f"{name}: {value}\r\n".encode("latin-1"))
        out.append(b"Content-Length: %d\r\nConnection: keep-alive\r\n\r\n" % len(chunks))
        data = b"".join(out) + chunks
        if self.delay > 0:
            asyncio.get_running_loop().call_later(self.delay, self._answer, data, method, path)
        else:
            self._answer(data, method, path)

    def _answer(self, data: bytes, method: str, path: str) -> None:
        """Send the answer, then tell `after`."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)
        if self.after is not None:
            self.after(method, path)


async def serve_wsgi(
    app: WsgiApp, host: str = "127.0.0.1", port: int = 0,
    after: Callable[[str, str], None] | None = None, delay: float = 0.0,
) -> asyncio.Server:
    """Serve `app` on the running loop; `after(method, path)` runs after each answer,
    which is held back `delay` seconds (a remote API's latency)."""
    loop = asyncio.get_running_loop()
    holder: dict[str, int] = {}

    def factory() -> _ServerProtocol:
        return _ServerProtocol(app, holder.get("port", port), after, delay)

    server = await loop.create_server(factory, host, port)
    holder["port"] = server.sockets[0].getsockname()[1]
    return server
