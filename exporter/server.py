"""HTTP server: ``/metrics``, a landing page, and the ``/-/healthy`` and ``/-/ready`` probes.

``/metrics`` negotiates like prometheus_client's WSGI app (OpenMetrics by Accept header, gzip by
Accept-Encoding, ``name[]`` filters) and takes its body from an :class:`Exposition`. The routes are
a WSGI app (wrapped by :func:`exporter.webconfig.wrap_app` for auth and headers) that runs in a
small thread pool, so bcrypt and rendering never hold up the handling of connections.

Connections are served by aiohttp's low-level server on one asyncio thread: an idle or half-sent
connection costs a few kilobytes, not a thread (docs/security.md, "Limits of the HTTP server", says
why aiohttp). :class:`_Connection` wraps aiohttp's protocol of each connection and adds what aiohttp
lacks: a cap on open connections, a deadline and a byte cap (431) for a request's headers, and TLS
started on the counted connection, followed by the client certificate's SAN check.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import contextlib
import gzip
import logging
import resource
import socket
import ssl
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qs, unquote_to_bytes

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from prometheus_client.exposition import gzip_accepted

from . import __version__
from .config import ServerLimits
from .exposition import Exposition
from .webconfig import san_allowed

log = logging.getLogger("exporter.server")

StartResponse = Callable[..., Any]
Environ = dict[str, Any]
App = Callable[[Environ, StartResponse], Iterable[bytes]]

APP_THREADS = 4  # bcrypt and rendering; more would only contend for the GIL
# The most connections asyncio accepts in one go (its backlog argument), before any of them can be
# counted; the kernel's listen queue stays SOMAXCONN, so a burst of scrapes waits there instead of
# having its SYNs dropped.
ACCEPT_BATCH = 32
# File descriptors that connections never take (see _connection_cap): accept batches in flight
# while the connections they make room for close, plus polling (one or two per space), the state
# file, logs and the event loop.
FD_RESERVE = 4 * ACCEPT_BATCH + 64
STOP_GRACE = 1.0  # seconds in-flight requests get when the server stops
TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 32\r\nConnection: close\r\n\r\nRequest Header Fields Too Large\n"
)

LANDING_PAGE = f"""<!doctype html>
<html><head><title>SignalWire Video Exporter</title></head>
<body><h1>SignalWire Video Exporter</h1><p>Version {__version__}</p>
<ul><li><a href="metrics">Metrics</a></li><li><a href="-/healthy">Health</a></li>
<li><a href="-/ready">Readiness</a></li></ul></body></html>
""".encode()


def make_app(exposition: Exposition, ready: Callable[[], bool]) -> App:
    """The WSGI application serving every route."""

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            return _metrics(exposition, environ, start_response)
        if path == "/":
            return _reply(start_response, "200 OK", LANDING_PAGE, "text/html; charset=utf-8")
        if path == "/-/healthy":
            return _reply(start_response, "200 OK", b"OK\n")
        if path == "/-/ready":
            if ready():
                return _reply(start_response, "200 OK", b"OK\n")
            return _reply(
                start_response,
                "503 Service Unavailable",
                b"waiting for the first poll of every space\n",
            )
        return _reply(start_response, "404 Not Found", b"Not Found\n")

    return app


def _metrics(exposition: Exposition, environ: Environ, start_response: StartResponse) -> list[bytes]:
    method = environ.get("REQUEST_METHOD", "GET")
    if method == "OPTIONS":
        start_response("200 OK", [("Allow", "OPTIONS,GET"), ("Content-Length", "0")])
        return [b""]
    if method != "GET":
        start_response("405 Method Not Allowed", [("Allow", "OPTIONS,GET"), ("Content-Length", "0")])
        return [b""]
    names = parse_qs(environ.get("QUERY_STRING", "")).get("name[]", [])
    body, content_type = exposition.render(environ.get("HTTP_ACCEPT"), names)
    headers = [("Content-Type", content_type)]
    if gzip_accepted(environ.get("HTTP_ACCEPT_ENCODING") or ""):
        body = gzip.compress(body)
        headers.append(("Content-Encoding", "gzip"))
    start_response("200 OK", [*headers, ("Content-Length", str(len(body)))])
    return [body]


def _reply(
    start_response: StartResponse, status: str, body: bytes, content_type: str = "text/plain"
) -> list[bytes]:
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]


def _environ(request: web.BaseRequest, scheme: str) -> Environ:
    """The WSGI environ of ``request``: PATH_INFO percent-decoded to latin-1, as wsgiref does."""
    url = request.rel_url
    environ: Environ = {
        "REQUEST_METHOD": request.method,
        "PATH_INFO": unquote_to_bytes(url.raw_path).decode("latin-1"),
        "QUERY_STRING": url.raw_query_string,
        "SERVER_PROTOCOL": f"HTTP/{request.version.major}.{request.version.minor}",
        "REMOTE_ADDR": request.remote or "",
        "wsgi.url_scheme": scheme,
    }
    for name, value in request.headers.items():
        key = "HTTP_" + name.upper().replace("-", "_")
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ


def _call(app: App, environ: Environ) -> web.Response:
    """Run the WSGI ``app`` (in a pool thread) and turn its answer into a response."""
    started: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        started[:] = [status, headers]

    body = b"".join(app(environ, start_response))
    status, headers = started
    code, _, reason = status.partition(" ")
    kept = [(k, v) for k, v in headers if k.lower() != "content-length"]  # aiohttp sets it
    return web.Response(status=int(code), reason=reason, headers=kept, body=body)


class _ClientErrors(logging.Filter):
    """aiohttp logs each malformed request as an error with a traceback; it is the client's doing,
    so it becomes one debug line (shown with --log-level debug) without the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        # The kind of error only: aiohttp's message quotes the offending line, which may be an
        # Authorization header.
        reason = f"{type(exc).__name__} ({exc.code})"
        record.msg, record.args, record.exc_info = f"{record.getMessage()}: {reason}", None, None
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return log.isEnabledFor(logging.DEBUG)


_aiohttp_log = logging.getLogger("exporter.server.aiohttp")
_aiohttp_log.addFilter(_ClientErrors())
# asyncio's TLS gives each connection a 256 KiB read buffer (SSLProtocol.max_size, allocated
# whole): 128 MiB at 512 connections. A TLS record holds at most 16 KiB, so 32 KiB reads lose
# nothing. asyncio's TLS serves only this server (the API client is synchronous).
asyncio.sslproto.SSLProtocol.max_size = 32 * 1024


class _Connection(asyncio.Protocol):
    """One client connection, counted from accept to close, in front of aiohttp's protocol.

    Waiting connections (TLS handshake, no request yet, headers arriving) may be closed to make
    room for a new one; a connection whose request is being answered never is. The bytes and time
    a request's headers take are capped here, before aiohttp buffers them. aiohttp's protocol is
    made at the first byte (then its keep-alive timer closes the connection when idle): a
    connection that never sends one costs only this object and is closed at ``idle_timeout``.
    """

    def __init__(self, server: MetricsServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.ready = False  # TLS, if any, is up
        self.inner: asyncio.Protocol | None = None  # aiohttp's, from the first byte on
        self.pending = b""  # bytes that arrived before ``ready``
        self.silence: asyncio.TimerHandle | None = None  # idle_timeout until the first byte
        self.header_bytes = 0
        self.header_deadline: asyncio.TimerHandle | None = None
        self.busy = False
        self.closed = False
        self.closing = not server.admit(self)  # counted at accept, before its TLS handshake

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self.closing:
            transport.abort()
            return
        if self.server.ssl_context is None:
            self._start(transport)
        else:
            transport.pause_reading()  # until start_tls takes over the raw bytes
            self.server.spawn(self._tls(transport))

    async def _tls(self, raw: asyncio.Transport) -> None:
        loop, context = asyncio.get_running_loop(), self.server.ssl_context
        assert context is not None
        try:
            # As in Go, the handshake is part of reading a request's headers.
            timeout = self.server.limits.read_header_timeout
            tls = await loop.start_tls(raw, self, context, server_side=True, ssl_handshake_timeout=timeout)
        except (OSError, asyncio.CancelledError) as exc:  # ssl.SSLError and timeouts are OSErrors
            log.debug("TLS handshake failed: %s", exc)
            self.connection_lost(None)
            return
        if tls is None or self.closed:
            return
        peer = tls.get_extra_info("peercert")
        if not san_allowed(peer, self.server.allowed_sans):
            log.debug("client certificate has no allowed SAN: closing without an answer")
            tls.abort()
            return
        self._start(tls)

    def _start(self, transport: asyncio.Transport) -> None:
        self.transport, self.ready = transport, True
        loop = asyncio.get_running_loop()
        self.silence = loop.call_later(self.server.limits.idle_timeout, self.close)
        if self.pending:
            data, self.pending = self.pending, b""
            self._to_aiohttp(data)

    def _to_aiohttp(self, data: bytes) -> None:
        if self.inner is None:
            assert self.transport is not None and self.silence is not None
            self.silence.cancel()
            self.inner = self.server.aiohttp()
            self.inner.connection_made(self.transport)
        self.inner.data_received(data)

    def data_received(self, data: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        if not self.busy:
            self.header_bytes += len(data)
            if self.header_bytes > self.server.limits.max_header_bytes:
                self._refuse_headers()
                return
            if self.header_deadline is None:
                self.header_deadline = asyncio.get_running_loop().call_later(
                    self.server.limits.read_header_timeout, self.close
                )
        if self.ready:
            self._to_aiohttp(data)
        else:
            self.pending += data

    def _refuse_headers(self) -> None:
        assert self.transport is not None
        self.busy = True  # nothing more is read or counted
        self.transport.write(TOO_LARGE)
        self.transport.close()

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed:
            return
        self.closed = True
        self._clear_header_deadline()
        if self.silence is not None:
            self.silence.cancel()
        self.server.forget(self)
        if self.inner is not None:
            self.inner.connection_lost(exc)

    def answering(self, busy: bool) -> None:
        """A request's headers are complete (True) or its answer is written (False)."""
        self.busy, self.header_bytes = busy, 0
        self._clear_header_deadline()
        self.server.waiting(self, not busy)

    def _clear_header_deadline(self) -> None:
        if self.header_deadline is not None:
            self.header_deadline.cancel()
            self.header_deadline = None

    def close(self) -> None:
        """Close at once (or as soon as it is made), without an answer; it no longer counts."""
        self.server.forget(self)
        self.closing = True
        if self.transport is not None and not self.closed:
            self.transport.abort()


def _connection_cap(configured: int) -> int:
    """``max_connections``, lowered so that connections cannot take the last file descriptors."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft - FD_RESERVE >= configured:
        return configured
    cap = max(1, soft - FD_RESERVE)
    log.warning(
        "server.max_connections lowered from %d to %d: the open files limit (ulimit -n) is %d",
        configured,
        cap,
        soft,
    )
    return cap


class MetricsServer:
    """Serves the WSGI ``app`` on ``host:port`` in a daemon thread until :meth:`stop`.

    The socket listens from construction on (a port in use raises OSError here); HTTPS with
    ``ssl_context``, whose clients must also present a certificate with one of ``allowed_sans``
    when given.
    """

    def __init__(
        self,
        host: str,
        port: int,
        app: App,
        ssl_context: ssl.SSLContext | None = None,
        allowed_sans: tuple[str, ...] = (),
        limits: ServerLimits | None = None,
    ) -> None:
        self.app, self.ssl_context, self.allowed_sans = app, ssl_context, allowed_sans
        self.limits = limits or ServerLimits()
        self.max_connections = _connection_cap(self.limits.max_connections)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.create_server((host or "0.0.0.0", port), family=family, backlog=socket.SOMAXCONN)
        self._loop = asyncio.new_event_loop()
        self._loop.set_exception_handler(_log_loop_error)
        self._executor = ThreadPoolExecutor(APP_THREADS, thread_name_prefix="http-app")
        self._stopping = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._open: set[_Connection] = set()
        self._waiting: dict[_Connection, None] = {}  # oldest first: the next to make room
        self._scheme = "https" if ssl_context else "http"
        self._aiohttp = web.Server(
            self._handle,
            loop=self._loop,
            logger=_aiohttp_log,
            access_log=None,
            keepalive_timeout=self.limits.idle_timeout,  # between requests; before the first: silence
            max_line_size=self.limits.max_header_bytes,  # the total is capped by _Connection
            max_field_size=self.limits.max_header_bytes,
        )
        self._thread = threading.Thread(target=self._run, name="http", daemon=True)

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    @property
    def connections(self) -> int:
        """Open connections, handshakes included."""
        return len(self._open)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting, give requests in flight a moment, close every connection."""
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join(STOP_GRACE + 2.0)
        self.sock.close()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        listener = await self._loop.create_server(
            lambda: _Connection(self), sock=self.sock, backlog=ACCEPT_BATCH
        )
        self.sock.listen(socket.SOMAXCONN)  # create_server listened with its backlog argument
        await self._stopping.wait()
        listener.close()
        with contextlib.suppress(TimeoutError):
            await self._aiohttp.shutdown(STOP_GRACE)
        for connection in list(self._open):
            connection.close()
        for task in list(self._tasks):
            task.cancel()

    # --- used by _Connection, on the loop's thread ----------------------------------------------

    def aiohttp(self) -> asyncio.Protocol:
        protocol: asyncio.Protocol = self._aiohttp()
        return protocol

    def spawn(self, coroutine: Any) -> None:
        task = self._loop.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def admit(self, connection: _Connection) -> bool:
        """Count a new connection, closing the longest-waiting one at the cap; False: no room."""
        if len(self._open) >= self.max_connections:
            if not self._waiting:
                log.debug("%d connections, all answering: a new one is closed", len(self._open))
                return False
            next(iter(self._waiting)).close()
        self._open.add(connection)
        self._waiting[connection] = None
        return True

    def waiting(self, connection: _Connection, waiting: bool) -> None:
        self._waiting.pop(connection, None)
        if waiting and connection in self._open:
            self._waiting[connection] = None

    def forget(self, connection: _Connection) -> None:
        self._open.discard(connection)
        self._waiting.pop(connection, None)

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        transport = request.transport
        connection = transport.get_protocol() if transport is not None else None
        if not isinstance(connection, _Connection):
            raise ConnectionResetError("the connection closed before its request was answered")
        connection.answering(True)
        try:
            response = await self._loop.run_in_executor(
                self._executor, _call, self.app, _environ(request, self._scheme)
            )
            # Written here, not after returning (aiohttp would): until the answer is out, the
            # connection is answering and cannot be closed to make room for a new one.
            await response.prepare(request)
            await response.write_eof()
            return response
        finally:
            connection.answering(False)


def _log_loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """asyncio's own errors (e.g. out of file descriptors at accept) as one log line."""
    exc = context.get("exception")
    log.error("%s%s", context.get("message", "event loop error"), f": {exc}" if exc else "")
