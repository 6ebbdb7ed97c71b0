"""Fuzzing over real HTTP: a server on 127.0.0.1 answers with list pages generated from the
OpenAPI schema (hypothesis), and a real poller polls it: every poll succeeds, and no counter
becomes negative, NaN or infinite."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter.collector import SessionCollector
from exporter.config import Config, SpaceConfig
from exporter.poller import SpacePoller
from exporter.snapshot import Snapshots

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
    registry.register(SessionCollector(snapshots, config.duration_buckets, rooms_enabled=True))
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            assert math.isfinite(sample.value), sample
            if family.type in ("counter", "histogram"):
                assert sample.value >= 0, sample
