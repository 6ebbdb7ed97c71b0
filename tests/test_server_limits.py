"""What a client may take of the metrics port: real exporter processes (demo mode), raw sockets.

Each test reproduces a way one client without credentials could exhaust the old server (a thread
and a file descriptor per connection, no timeouts, unbounded headers) and checks that scrapes go
on. The limits are set small in the config so the tests take seconds; every wait is bounded.
"""

from __future__ import annotations

import json
import re
import resource
import select
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import pytest
import yaml

from . import test_webconfig
from .test_cli import ROOT, clean_env, free_port
from .test_webconfig import Pki, client_context

USER, PASSWORD = "prometheus", "s3cret-pass"
TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: ")
LIMITS = {"max_connections": 40, "read_header_timeout": "1s", "idle_timeout": "2s", "max_header_bytes": 8192}
CLOSE_WAIT = 10.0  # seconds a test waits for the server to close a connection it must close

pki = test_webconfig.pki  # the test certificates, as a fixture of this module too


class Exporter:
    """``python -m exporter --demo`` with a config file, optionally under a lower open-files limit."""

    def __init__(
        self, tmp_path: Path, server: dict[str, Any], *args: str, nofile: int | None, log_format: str
    ) -> None:
        self.port = free_port()
        self.err_path = tmp_path / "exporter.err"
        config = tmp_path / "config.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "server": {"listen_address": f"127.0.0.1:{self.port}", **server},
                    "logging": {"format": log_format},
                }
            )
        )

        def lower_nofile() -> None:
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        with self.err_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "exporter", "--demo", "--config", str(config), *list(args)],
                cwd=ROOT,
                env=clean_env(),
                stdout=subprocess.DEVNULL,
                stderr=err,
                preexec_fn=lower_nofile,
            )

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=5)

    def wait_listening(self) -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.stderr
            try:
                self.connect().close()
                return
            except OSError:
                time.sleep(0.05)
        pytest.fail(f"the exporter did not listen:\n{self.stderr}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@pytest.fixture
def exporter(tmp_path: Path) -> Iterator[Any]:
    started: list[Exporter] = []

    def start(
        server: dict[str, Any], *args: str, nofile: int | None = None, log_format: str = "text"
    ) -> Exporter:
        proc = Exporter(tmp_path, server, *args, nofile=nofile, log_format=log_format)
        started.append(proc)
        proc.wait_listening()
        return proc

    yield start
    for proc in started:
        proc.stop()


def closed_by_server(sock: socket.socket, drip: bytes = b"", seconds: float = CLOSE_WAIT) -> bytes | None:
    """Read (sending ``drip`` every 0.1 s) until the server closes: what it sent; None if it did not."""
    sock.settimeout(0.1)
    received = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if drip:
                sock.sendall(drip)
            data = sock.recv(65536)
        except (TimeoutError, ssl.SSLWantReadError):
            continue
        except OSError:  # reset, broken pipe, TLS EOF: closed
            return received
        if not data:
            return received
        received += data
    return None


def answer(sock: socket.socket, request: bytes) -> bytes:
    """The status line the server answers ``request`` with (b"" if it closes without one)."""
    sock.sendall(request)
    sock.settimeout(5)
    data = b""
    while b"\r\n" not in data:
        try:
            chunk = sock.recv(4096)
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    return data.split(b"\r\n", 1)[0]


def scrape(proc: Exporter, **kwargs: Any) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{proc.port}/metrics", timeout=5, **kwargs)


def assert_only_log_lines(stderr: str, fmt: str = "text") -> None:
    for line in stderr.splitlines():
        if fmt == "json":
            assert isinstance(json.loads(line), dict), line
        else:
            assert TEXT_LINE.match(line), line


def test_idle_connections_are_closed_after_idle_timeout_and_scrapes_go_on(exporter: Any) -> None:
    proc = exporter(LIMITS)
    idle = [proc.connect() for _ in range(30)]
    try:
        assert scrape(proc).status_code == 200
        assert all(closed_by_server(sock) == b"" for sock in idle)
        assert scrape(proc).status_code == 200
    finally:
        for sock in idle:
            sock.close()
    assert_only_log_lines(proc.stderr)


def test_a_connection_that_answered_is_closed_when_idle(exporter: Any) -> None:
    proc = exporter(LIMITS)
    with proc.connect() as sock:
        assert answer(sock, b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n") == b"HTTP/1.1 200 OK"
        assert closed_by_server(sock) is not None


def test_headers_beyond_max_header_bytes_get_431_and_the_connection_is_closed(exporter: Any) -> None:
    proc = exporter(LIMITS)
    many = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"a" * 500) for i in range(40))  # 20 KB of short lines
    for headers in (many, b"X-Long: " + b"b" * 20000 + b"\r\n"):
        with proc.connect() as sock:
            status = answer(sock, b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
            assert status == b"HTTP/1.1 431 Request Header Fields Too Large"
            assert closed_by_server(sock) is not None
    assert scrape(proc).status_code == 200
    assert_only_log_lines(proc.stderr)


def test_a_slow_header_sender_is_cut_at_read_header_timeout(exporter: Any) -> None:
    proc = exporter({**LIMITS, "idle_timeout": "60s"})  # only read_header_timeout can cut it
    with proc.connect() as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        assert closed_by_server(sock, drip=b"z") is not None  # 10 bytes a second, never done


def test_over_max_connections_the_server_stays_responsive(exporter: Any) -> None:
    """Connections waiting for a request make room for new ones; at most max_connections are open."""
    proc = exporter({**LIMITS, "read_header_timeout": "60s", "idle_timeout": "60s"})  # only the cap closes
    held = [proc.connect() for _ in range(100)]
    try:
        for sock in held[:50]:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # headers begun, never finished
        for _ in range(10):
            assert scrape(proc).status_code == 200
        closed: set[socket.socket] = set()
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:  # drain the closes the server has made, all at once
            readable, _, _ = select.select([s for s in held if s not in closed], [], [], 0.5)
            if not readable:
                break
            closed.update(s for s in readable if _closed(s))
        assert len(held) - len(closed) <= LIMITS["max_connections"]
    finally:
        for sock in held:
            sock.close()


def test_connections_never_take_the_last_file_descriptors(exporter: Any) -> None:
    """At ``ulimit -n 256`` the old server ran out of descriptors after ~250 idle connections."""
    proc = exporter({"idle_timeout": "60s"}, nofile=256)
    held = [proc.connect() for _ in range(400)]
    try:
        for _ in range(5):
            assert scrape(proc).status_code == 200
    finally:
        for sock in held:
            sock.close()
    assert "server.max_connections lowered from 512 to 64" in proc.stderr
    assert "Too many open files" not in proc.stderr
    assert_only_log_lines(proc.stderr)


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_non_ascii_authorization_gets_401_and_logs_nothing_raw(
    exporter: Any, tmp_path: Path, fmt: str
) -> None:
    web = tmp_path / "web.yml"
    web.write_text(
        yaml.safe_dump(
            {"basic_auth_users": {USER: bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()}}
        )
    )
    web.chmod(0o600)
    proc = exporter({"web_config_file": str(web)}, "--log-level", "debug", log_format=fmt)
    for value in (b"Basic \xc3\xa9t\xc3\xa9", b"Basic \xff\xfe", "Bearer é".encode()):
        with proc.connect() as sock:
            status = answer(
                sock, b"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: " + value + b"\r\n\r\n"
            )
            assert status == b"HTTP/1.1 401 Unauthorized", value
    assert scrape(proc, auth=(USER, PASSWORD)).status_code == 200
    proc.stop()
    assert "Traceback" not in proc.stderr
    assert_only_log_lines(proc.stderr, fmt)


MALFORMED = [
    b"BLAH\r\n\r\n",
    b"GET\r\n\r\n",
    b"GET /metrics HTTP/9.9\r\nHost: x\r\n\r\n",
    b"GET /metrics%zz%ff HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /%00 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /metrics?name[]=%ZZ&name[]=\xff HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\nHost: x\r\nBad\x00Name: v\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    b"POST /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: \xff\r\nAccept-Encoding: \xfe\r\n\r\n",
    b"GET http://x/metrics HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40,  # a TLS ClientHello
]


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_malformed_requests_get_4xx_never_5xx_and_only_log_lines(exporter: Any, fmt: str) -> None:
    proc = exporter(LIMITS, "--log-level", "debug", log_format=fmt)
    for request in MALFORMED:
        with proc.connect() as sock:
            status = answer(sock, request)
        assert re.match(rb"HTTP/1\.[01] [2-4]\d\d ", status) or status == b"", (request[:60], status)
    assert scrape(proc).status_code == 200
    proc.stop()
    assert "Traceback" not in proc.stderr
    assert_only_log_lines(proc.stderr, fmt)


def test_an_idle_tls_connection_is_closed_after_the_handshake(
    exporter: Any,
    pki: Pki,
    tmp_path: Path,
) -> None:
    web = tmp_path / "web.yml"
    web.write_text(
        yaml.safe_dump(
            {"tls_server_config": {"cert_file": str(pki.server_cert), "key_file": str(pki.server_key)}}
        )
    )
    proc = exporter({**LIMITS, "web_config_file": str(web)})
    context = client_context(pki)
    idle = [context.wrap_socket(proc.connect(), server_hostname="localhost") for _ in range(5)]
    try:
        url = f"https://127.0.0.1:{proc.port}/metrics"
        assert httpx.get(url, verify=context, timeout=5).status_code == 200
        assert all(closed_by_server(sock) is not None for sock in idle)
        with context.wrap_socket(proc.connect(), server_hostname="localhost") as slow:
            slow.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            assert closed_by_server(slow, drip=b"z") is not None
    finally:
        for sock in idle:
            sock.close()
    raw = proc.connect()  # never starts the handshake: counted, and closed too
    assert closed_by_server(raw) is not None


def _closed(sock: socket.socket) -> bool:
    """A readable socket the server closed (EOF or reset), not one with data."""
    try:
        return sock.recv(65536, socket.MSG_PEEK) == b""
    except OSError:
        return True
