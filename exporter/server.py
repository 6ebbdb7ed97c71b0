"""HTTP server: ``/metrics``, a landing page, and the ``/-/healthy`` and ``/-/ready`` probes.

``/metrics`` negotiates like prometheus_client's WSGI app (OpenMetrics by Accept header, gzip by
Accept-Encoding, ``name[]`` filters) and takes its body from an :class:`Exposition`. Each request
runs in its own thread.
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import socket
import ssl
import threading
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client.exposition import ThreadingWSGIServer, gzip_accepted

from . import __version__
from .exposition import Exposition
from .webconfig import HANDSHAKE_TIMEOUT, san_allowed

log = logging.getLogger("exporter.server")

StartResponse = Callable[..., Any]
Environ = dict[str, Any]

LANDING_PAGE = f"""<!doctype html>
<html><head><title>SignalWire Video Exporter</title></head>
<body><h1>SignalWire Video Exporter</h1><p>Version {__version__}</p>
<ul><li><a href="metrics">Metrics</a></li><li><a href="-/healthy">Health</a></li>
<li><a href="-/ready">Readiness</a></li></ul></body></html>
""".encode()


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Access logs are not written: scrapes every few seconds would flood the log."""


def make_app(
    exposition: Exposition, ready: Callable[[], bool]
) -> Callable[[Environ, StartResponse], Iterable[bytes]]:
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


class _TLSServer(ThreadingWSGIServer):
    """Optionally TLS: the handshake runs in the request's own thread, so a slow or silent client
    never blocks accepting other connections."""

    ssl_context: ssl.SSLContext | None = None
    allowed_sans: tuple[str, ...] = ()
    # socketserver's default listen backlog is 5: a burst of scrapes (several Prometheus
    # servers, or 20 clients at once) overflowed it, and the kernel dropped the excess SYNs,
    # which clients only retry after a second.
    request_queue_size = socket.SOMAXCONN

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.ssl_context is None:
            super().finish_request(request, client_address)
            return
        try:
            request.settimeout(HANDSHAKE_TIMEOUT)
            conn = self.ssl_context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError) as exc:
            log.debug("TLS handshake with %s failed: %s", client_address[0], exc)
            return
        try:
            if not san_allowed(conn.getpeercert(), self.allowed_sans):
                log.debug("client certificate of %s has no allowed SAN", client_address[0])
                return
            conn.settimeout(None)
            super().finish_request(conn, client_address)
        finally:
            with contextlib.suppress(OSError):
                conn.close()


class _TLSServer6(_TLSServer):
    address_family = socket.AF_INET6


class MetricsServer:
    """Serves the app on ``host:port`` in a daemon thread until :meth:`stop`; HTTPS with a context."""

    def __init__(
        self,
        host: str,
        port: int,
        app: Callable[[Environ, StartResponse], Iterable[bytes]],
        ssl_context: ssl.SSLContext | None = None,
        allowed_sans: tuple[str, ...] = (),
    ) -> None:
        server_class = _TLSServer6 if ":" in host else _TLSServer
        httpd = make_server(
            host or "0.0.0.0", port, app, server_class=server_class, handler_class=_QuietHandler
        )
        httpd.ssl_context, httpd.allowed_sans = ssl_context, allowed_sans  # before serving starts
        self.httpd: WSGIServer = httpd
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="http", daemon=True)

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
