"""Fuzzing over real HTTP, both ways.

The API side: a server on 127.0.0.1 answers with list pages generated from the OpenAPI schema
(hypothesis), and a real poller polls it: every poll succeeds, and no counter becomes negative,
NaN or infinite. The metrics side: the exporter's server, with basic auth, gets generated raw
requests (any bytes in the method, path, query and header values): none gets a 5xx."""

from __future__ import annotations

import json
import math
import re
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import bcrypt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter.collector import SessionCollector
from exporter.config import Config, ServerLimits, SpaceConfig
from exporter.exposition import Exposition
from exporter.poller import SpacePoller
from exporter.server import MetricsServer, make_app
from exporter.snapshot import Snapshots
from exporter.webconfig import parse_web_config, wrap_app

from .conftest import poll_config
from .test_schema_property import LIST_RESPONSE


class FuzzServer(ThreadingHTTPServer):
    """Serves ``pages[status]`` to every list request and 404 to every get."""

    daemon_threads = True
    pages: dict[str, bytes]


class _Handler(BaseHTTPRequestHandler):
    server: FuzzServer

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        status = parse_qs(url.query).get("status", ["?"])[0]
        body = self.server.pages.get(status) if url.path == "/api/video/room_sessions" else None
        self.send_response(200 if body is not None else 404)
        payload = body if body is not None else b'{"error": "Not Found"}'
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@pytest.fixture(scope="module")
def server() -> Iterator[FuzzServer]:
    httpd = FuzzServer(("127.0.0.1", 0), _Handler)
    httpd.pages = {}
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _last_page(page: dict[str, Any]) -> bytes:
    page["links"].pop("next", None)  # one page each: a generated link would be refused anyway
    return json.dumps(page).encode()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(in_progress=from_schema(LIST_RESPONSE), completed=from_schema(LIST_RESPONSE), polls=st.integers(1, 3))
def test_spec_valid_pages_over_http_never_break_a_poll(
    server: FuzzServer, in_progress: dict[str, Any], completed: dict[str, Any], polls: int
) -> None:
    server.pages = {"in-progress": _last_page(in_progress), "completed": _last_page(completed)}
    space = SpaceConfig("fuzz", f"http://127.0.0.1:{server.server_address[1]}", "p", "t")
    config = Config(spaces=(space,), poll=poll_config(timeout=5.0), rooms_enabled=True, rooms_max=5)
    snapshots = Snapshots(["fuzz"])
    poller = SpacePoller(space, config, snapshots, threading.Event(), clock=lambda: 4_000_000_000.0)
    try:
        for _ in range(polls):
            assert poller.poll_once()
    finally:
        poller.client.close()
    registry = CollectorRegistry()
    registry.register(SessionCollector(snapshots, config))
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            assert math.isfinite(sample.value), sample
            if family.type in ("counter", "histogram"):
                assert sample.value >= 0, sample


@pytest.fixture(scope="module")
def metrics_server() -> Iterator[MetricsServer]:
    hashed = bcrypt.hashpw(b"p", bcrypt.gensalt(4)).decode()  # cost 4: checked fast
    web = parse_web_config({"basic_auth_users": {"u": hashed}, "http_server_config": {"headers": {}}})
    snapshots = Snapshots(["s"])
    collector = SessionCollector(snapshots, Config(spaces=()))
    app = wrap_app(make_app(Exposition(snapshots, collector), lambda: True), web)
    server = MetricsServer("127.0.0.1", 0, app, limits=ServerLimits(read_header_timeout=2.0))
    server.start()
    yield server
    server.stop()


_BYTES = st.binary(max_size=60)
_TOKEN = st.sampled_from([b"GET", b"POST", b"OPTIONS", b"HEAD", b"get", b"G\xc3\xa9T"]) | _BYTES


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    method=_TOKEN,
    path=st.sampled_from([b"/metrics", b"/", b"/-/ready", b"/%"]) | _BYTES,
    query=_BYTES,
    headers=st.lists(
        st.tuples(st.sampled_from([b"Authorization", b"Accept", b"Accept-Encoding", b"X"]), _BYTES)
    ),
)
def test_no_request_gets_a_5xx(
    metrics_server: MetricsServer,
    method: bytes,
    path: bytes,
    query: bytes,
    headers: list[tuple[bytes, bytes]],
) -> None:
    lines = [b"%s %s?%s HTTP/1.1" % (method, path, query), b"Host: x"]
    lines += [name + b": " + value for name, value in headers]
    with socket.create_connection(("127.0.0.1", metrics_server.port), timeout=5) as sock:
        sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n")
        status = sock.makefile("rb").readline()
    assert re.match(rb"HTTP/1\.[01] [1-4]\d\d ", status), (lines, status)
