"""An httpx transport whose requests end by their deadline, whatever the peer sends.

httpcore applies a timeout to each socket operation, not to a request: a peer that keeps
sending something (endless ``100 Continue`` interim responses, header or body bytes one at a
time, a slow TLS handshake) could hold a request forever. Here the network backend bounds every
socket operation (connect, TLS handshake, read, write) by the time left until the deadline set
with :func:`deadline`, and raises a timeout once it is spent; the name lookup too, in a thread of
its own. Connection pooling and keep-alive are httpcore's, as in httpx's default transport (same
limits); ``HTTP(S)_PROXY``, ``ALL_PROXY`` and ``NO_PROXY`` are honoured (never for a loopback
host), and the proxied connections have the same deadline.
"""

from __future__ import annotations

import ipaddress
import math
import os
import socket
import ssl
import threading
import time
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import httpcore
import httpx

_DEADLINE: ContextVar[float] = ContextVar("request_deadline", default=math.inf)

# httpcore's errors as the httpx error families the API client tells apart (timeout or not).
_ERRORS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ProxyError, httpx.ProxyError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.ProtocolError, httpx.ProtocolError),
    (httpcore.NetworkError, httpx.NetworkError),
)


@contextmanager
def deadline(at: float) -> Iterator[None]:
    """Within this block, this thread's requests end by ``at`` (monotonic) at the latest."""
    token = _DEADLINE.set(at)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def _time_left(timeout: float | None, expired: type[httpcore.TimeoutException]) -> float:
    """``timeout`` shortened to the time left until the deadline; ``expired`` once it is spent."""
    left = _DEADLINE.get() - time.monotonic()
    if left <= 0:
        raise expired("the request's deadline has passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _time_left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _time_left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        # Python's TLS handshake keeps one deadline over all its socket operations.
        left = _time_left(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, left))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``host`` as an IP address, None when it is a name."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _resolve(host: str, port: int, timeout: float | None) -> list[Any]:
    """``getaddrinfo`` bounded by the time left: the system resolver cannot be interrupted, so a
    name is looked up in a daemon thread of its own, left to finish by itself if the time runs out."""
    if _address(host) is not None:  # an address literal: nothing to look up
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    done, found = threading.Event(), list[list[Any] | OSError]()

    def look_up() -> None:
        try:
            found.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError as exc:
            found.append(exc)
        done.set()

    threading.Thread(target=look_up, name="resolve", daemon=True).start()
    if not done.wait(_time_left(timeout, httpcore.ConnectTimeout)):
        raise httpcore.ConnectTimeout(f"the name lookup of {host} did not finish in time")
    [result] = found
    if isinstance(result, OSError):
        raise httpcore.ConnectError(str(result)) from result
    return result


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's sync backend with every socket operation bounded by the request's deadline."""

    def __init__(self) -> None:
        self._backend = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        """Each address of ``host`` in turn, each attempt bounded by the time left."""
        addresses = _resolve(host, port, timeout)
        error: Exception = httpcore.ConnectError(f"no address for {host}")
        for *_, address in addresses:
            left = _time_left(timeout, httpcore.ConnectTimeout)
            try:
                stream = self._backend.connect_tcp(str(address[0]), port, left, local_address, socket_options)
            except httpcore.ConnectError as exc:
                error = exc
                continue
            return _DeadlineStream(stream)
        raise error


def _loopback(host: str) -> bool:
    """``localhost`` or a loopback address (an IPv4-mapped one too), as Go's proxy rules have it."""
    ip = _address(host)
    if ip is None:
        return host.rstrip(".") == "localhost"
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


def _variable(key: str, value: str) -> str:
    """The environment variable ``urllib.request.getproxies`` took ``value`` from (lower case first)."""
    for name in (f"{key}_proxy", f"{key.upper()}_PROXY"):
        if os.environ.get(name) == value:
            return name
    return f"{key.upper()}_PROXY"


def environment_proxy(origin: str) -> httpx.Proxy | None:
    """The proxy ``HTTP_PROXY``, ``HTTPS_PROXY`` or ``ALL_PROXY`` sets for ``origin``, unless NO_PROXY
    matches it or it is a loopback host (as in Go's exporters: the demo's space is never proxied).

    Raises ValueError, naming the variable but nothing of its value (it may hold a password), when
    it is not an ``http://`` or ``https://`` proxy URL with a host and a valid port.
    """
    url = httpx.URL(origin)
    proxies = urllib.request.getproxies()
    key = url.scheme if proxies.get(url.scheme) else "all"
    value = proxies.get(key)
    if not value or _loopback(url.host) or urllib.request.proxy_bypass(url.host):
        return None
    variable = _variable(key, value)
    try:
        proxy_url = httpx.URL(value if "://" in value else f"http://{value}")
        valid = bool(proxy_url.host) and (proxy_url.port is None or 0 < proxy_url.port < 65536)
    except httpx.InvalidURL:
        valid = False
    if not valid:
        raise ValueError(
            f"{variable} for {origin} is not a valid proxy URL: expected http(s)://[user:password@]"
            "host[:port] (special characters in the user or password percent-encoded)"
        )
    if proxy_url.scheme not in ("http", "https"):
        raise ValueError(
            f"{variable} for {origin} is a {proxy_url.scheme!r} proxy: only http:// and https:// "
            "proxies are supported (unset it, or add the host to NO_PROXY)"
        )
    return httpx.Proxy(proxy_url)


class DeadlineTransport(httpx.BaseTransport):
    """httpx's default transport for one origin, each request bounded by :func:`deadline`."""

    def __init__(self, origin: str) -> None:
        limits = httpx.Limits()
        options: dict[str, Any] = {
            "ssl_context": httpx.create_ssl_context(),
            "max_connections": limits.max_connections,
            "max_keepalive_connections": limits.max_keepalive_connections,
            "keepalive_expiry": limits.keepalive_expiry,
            "network_backend": _DeadlineBackend(),
        }
        proxy = environment_proxy(origin)
        if proxy is None:
            self._pool: httpcore.ConnectionPool = httpcore.ConnectionPool(**options)
        else:
            self._pool = httpcore.HTTPProxy(
                str(proxy.url),
                proxy.raw_auth,
                proxy.headers.raw,
                proxy_ssl_context=proxy.ssl_context,
                **options,
            )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.SyncByteStream)
        core_request = httpcore.Request(
            request.method,
            httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _httpx_errors():
            response = self._pool.handle_request(core_request)
        assert isinstance(response.stream, Iterable)
        return httpx.Response(
            response.status,
            headers=response.headers,
            stream=_ResponseStream(response.stream),
            extensions=response.extensions,
        )

    def close(self) -> None:
        self._pool.close()


class _ResponseStream(httpx.SyncByteStream):
    def __init__(self, stream: Iterable[bytes]) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[bytes]:
        with _httpx_errors():
            yield from self._stream

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()


@contextmanager
def _httpx_errors() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        for core_error, error in _ERRORS:
            if isinstance(exc, core_error):
                raise error(f"{type(exc).__name__}: {exc}") from exc
        raise
