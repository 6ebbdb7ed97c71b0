"""A raw HTTP/1.1 server on 127.0.0.1 for what no well-behaved server sends.

:class:`RawServer` hands each accepted connection to a handler that writes any bytes it likes:
endless ``100 Continue`` interim responses, header bytes one at a time, gzip bombs, oversized
error bodies. Every handler ends by itself: when the client goes away, when the server stops,
or after ``lifetime`` seconds at the latest.
"""

from __future__ import annotations

import itertools
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import suppress
from types import TracebackType


class Connection:
    """One accepted connection, as a handler sees it."""

    def __init__(self, sock: socket.socket, server: RawServer) -> None:
        self.sock, self.server = sock, server
        self._buffer = b""

    def request(self) -> bytes | None:
        """The next request's head (a GET has no body); None once the client closed or the server ends."""
        while b"\r\n\r\n" not in self._buffer:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                if self.over():
                    return None
                continue
            except OSError:
                return None
            if not data:
                return None
            self._buffer += data
        head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        with self.server.lock:
            self.server.requests.append(head)
        return head

    def requests(self) -> Iterator[bytes]:
        """Every request on this connection (keep-alive), until the client closes or the server ends."""
        while not self.over() and (head := self.request()) is not None:
            yield head

    def send(self, data: bytes) -> bool:
        """True when sent; False when the client has gone away."""
        try:
            self.sock.sendall(data)
        except OSError:
            return False
        return True

    def wait(self, seconds: float) -> bool:
        """Wait ``seconds``; True when the handler must end (the server stopped or lived long enough)."""
        return self.server.stopped.wait(seconds) or self.over()

    def over(self) -> bool:
        return self.server.stopped.is_set() or time.monotonic() > self.server.ends


Handler = Callable[[Connection], None]


def response(status: int, headers: Mapping[str, str | bytes] | None = None, body: bytes = b"") -> bytes:
    """A complete response with ``Content-Length``; header values as given (bytes verbatim)."""
    lines = [f"HTTP/1.1 {status} Status".encode(), f"Content-Length: {len(body)}".encode()]
    for name, value in (headers or {}).items():
        lines.append(name.encode() + b": " + (value if isinstance(value, bytes) else value.encode()))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def answering(*responses: bytes) -> Handler:
    """A handler answering the server's n-th request with ``responses[n]`` (the last one from then on)."""

    numbers = itertools.count()

    def handle(conn: Connection) -> None:
        for _ in conn.requests():
            if not conn.send(responses[min(next(numbers), len(responses) - 1)]):
                return

    return handle


def dripping(head: bytes, drip: bytes, delay: float = 0.05, read_request: bool = True) -> Handler:
    """A handler that sends ``head``, then ``drip`` one byte every ``delay`` seconds, forever."""

    def handle(conn: Connection) -> None:
        if read_request and conn.request() is None:
            return
        if not conn.send(head):
            return
        i = 0
        while not conn.wait(delay) and conn.send(drip[i % len(drip) : i % len(drip) + 1]):
            i += 1

    return handle


def continuing(delay: float = 0.05) -> Handler:
    """A handler answering with ``100 Continue`` interim responses, one every ``delay``, forever."""

    def handle(conn: Connection) -> None:
        if conn.request() is None:
            return
        while conn.send(b"HTTP/1.1 100 Continue\r\n\r\n") and not conn.wait(delay):
            pass

    return handle


class RawServer:
    """Accepts connections on 127.0.0.1 and runs ``handler`` on each, in its own thread."""

    def __init__(self, handler: Handler, lifetime: float = 15.0) -> None:
        self.handler, self.lifetime = handler, lifetime
        self.stopped = threading.Event()
        self.lock = threading.Lock()
        self.requests: list[bytes] = []  # request heads, in arrival order
        self.connections = 0  # accepted so far
        self.ends = time.monotonic() + lifetime
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []

    def __enter__(self) -> RawServer:
        self.ends = time.monotonic() + self.lifetime
        self._start(self._accept)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stopped.set()
        with self.lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in list(self._threads):
            thread.join(5)
        self._listener.close()

    def _start(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self.stopped.is_set() and time.monotonic() < self.ends:
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            with self.lock:
                self.connections += 1
                self._sockets.append(sock)
            self._start(self._serve, sock)

    def _serve(self, sock: socket.socket) -> None:
        sock.settimeout(1.0)  # how often a silent connection checks whether the server ends
        try:
            self.handler(Connection(sock, self))
        finally:
            sock.close()
