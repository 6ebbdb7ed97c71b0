"""/metrics through the real server: the cached snapshot part and the fresh process part.

The body must be byte for byte what one registry of every collector renders, a newly published
snapshot must show on the very next scrape, and the fresh collectors must run on every scrape.
"""

from __future__ import annotations

import platform
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from prometheus_client.parser import text_string_to_metric_families as parse_text
from prometheus_client.registry import Collector

import exporter
from exporter.cli import build_exposition
from exporter.collector import SessionCollector
from exporter.config import ChargesConfig, Config, MembersConfig, RecordingsConfig
from exporter.exposition import MAX_CACHED_FORMATS, Exposition
from exporter.server import MetricsServer, make_app
from exporter.snapshot import (
    ENDPOINTS,
    KEYS,
    POLL_ERROR_REASONS,
    REQUEST_BUCKETS,
    REQUEST_CODES,
    SKIP_REASONS,
    Activity,
    Snapshots,
    SpaceSnapshot,
)

OPENMETRICS = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
ACTIVE = 'signalwire_video_room_sessions_active{fps="30",quality="720p",space="s"}'


class Constant(Collector):
    """A fresh-part collector whose output never changes."""

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily("test_constant", "Always 7.")
        gauge.add_metric([], 7.0)
        yield gauge


class Counting(Collector):
    """Another collector, counting how often it was collected."""

    def __init__(self, inner: Collector) -> None:
        self.inner, self.collections = inner, 0

    def collect(self) -> Iterator[Metric]:
        self.collections += 1
        yield from self.inner.collect()


class Ticker(Collector):
    """A fresh-part collector that counts how often it was collected."""

    def __init__(self) -> None:
        self.ticks = 0

    def collect(self) -> Iterator[Metric]:
        self.ticks += 1
        yield CounterMetricFamily("test_ticks", "Collections so far.", value=self.ticks)


def snapshot(active: int) -> SpaceSnapshot:
    return SpaceSnapshot("s", polled=True, up=True, activity=Activity(active={("720p", "30"): active}))


@pytest.fixture
def snapshots() -> Snapshots:
    snaps = Snapshots(["s"])
    snaps.publish(snapshot(1))
    return snaps


def serve(exposition: Exposition) -> MetricsServer:
    server = MetricsServer("127.0.0.1", 0, make_app(exposition, lambda: True))
    server.start()
    return server


def scrape(server: MetricsServer, accept: str | None = None, query: str = "") -> httpx.Response:
    headers = {"Accept": accept} if accept else {}
    response = httpx.get(f"http://127.0.0.1:{server.port}/metrics{query}", headers=headers, timeout=5)
    assert response.status_code == 200
    return response


@pytest.mark.parametrize(
    ("accept", "encoder"), [(None, generate_latest), (OPENMETRICS, generate_openmetrics)], ids=["text", "om"]
)
def test_body_is_what_one_registry_of_every_collector_renders(
    snapshots: Snapshots, accept: str | None, encoder: Callable[[CollectorRegistry], bytes]
) -> None:
    collector = SessionCollector(snapshots, Config(spaces=()))
    server = serve(Exposition(snapshots, collector, [Constant()]))
    try:
        first, second = scrape(server, accept).content, scrape(server, accept).content  # second: cached
    finally:
        server.stop()
    whole = CollectorRegistry()
    whole.register(collector)
    whole.register(Constant())
    assert first == second == encoder(whole)
    if accept:
        assert first.count(b"# EOF") == 1 and first.endswith(b"\n# EOF\n")
        names = {family.name for family in text_string_to_metric_families(first.decode())}
        assert {"signalwire_video_room_sessions_active", "test_constant"} <= names


@pytest.mark.parametrize("accept", [None, OPENMETRICS])
def test_a_new_snapshot_shows_on_the_next_scrape(snapshots: Snapshots, accept: str | None) -> None:
    collector = SessionCollector(snapshots, Config(spaces=()))
    server = serve(Exposition(snapshots, collector))
    try:
        assert f"{ACTIVE} 1.0\n" in scrape(server, accept).text
        assert f"{ACTIVE} 1.0\n" in scrape(server, accept).text
        snapshots.publish(snapshot(5))
        assert f"{ACTIVE} 5.0\n" in scrape(server, accept).text
    finally:
        server.stop()


def test_fresh_collectors_run_on_every_scrape_while_the_snapshot_part_is_reused(snapshots: Snapshots) -> None:
    counting = Counting(SessionCollector(snapshots, Config(spaces=())))
    server = serve(Exposition(snapshots, counting, [Ticker()]))
    before = counting.collections  # the name[] registry collects once when registering
    try:
        bodies = [scrape(server).text for _ in range(3)]
    finally:
        server.stop()
    ticks = [float(body.rsplit("test_ticks_total ", 1)[1]) for body in bodies]
    assert ticks[1] == ticks[0] + 1 and ticks[2] == ticks[1] + 1  # one collection per scrape
    assert len({body.split("# HELP test_ticks")[0] for body in bodies}) == 1
    assert counting.collections == before + 1  # the snapshot part: rendered once, then reused


def test_name_filter_returns_only_the_named_families(snapshots: Snapshots) -> None:
    collector = SessionCollector(snapshots, Config(spaces=()))
    server = serve(Exposition(snapshots, collector, [Constant()]))
    try:
        text = scrape(server, query="?name[]=signalwire_video_up&name[]=test_constant").text
    finally:
        server.stop()
    assert sorted(text.splitlines()) == sorted(  # the order of collectors is prometheus_client's
        [
            "# HELP signalwire_video_up 1 if the latest poll of the space succeeded.",
            "# TYPE signalwire_video_up gauge",
            'signalwire_video_up{space="s"} 1.0',
            "# HELP test_constant Always 7.",
            "# TYPE test_constant gauge",
            "test_constant 7.0",
        ]
    )


def test_many_accept_variants_each_get_their_own_format(snapshots: Snapshots) -> None:
    """More variants than are cached: each still gets its Content-Type and a matching body."""
    collector = SessionCollector(snapshots, Config(spaces=()))
    server = serve(Exposition(snapshots, collector))
    try:
        for minor in range(MAX_CACHED_FORMATS + 3):
            for _ in range(2):
                om = scrape(server, f"application/openmetrics-text;version=1.{minor}.0")
                assert om.headers["content-type"].startswith(
                    f"application/openmetrics-text; version=1.{minor}.0"
                )
                assert om.text.endswith("# EOF\n")
                text = scrape(server)
                assert text.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
                assert "# EOF" not in text.text
    finally:
        server.stop()


def test_only_get_and_options_are_allowed(snapshots: Snapshots) -> None:
    server = serve(Exposition(snapshots, SessionCollector(snapshots, Config(spaces=()))))
    url = f"http://127.0.0.1:{server.port}/metrics"
    try:
        options = httpx.options(url, timeout=5)
        post = httpx.post(url, timeout=5)
    finally:
        server.stop()
    assert (options.status_code, options.headers["allow"]) == (200, "OPTIONS,GET")
    assert (post.status_code, post.headers["allow"]) == (405, "OPTIONS,GET")


def test_a_burst_of_connections_waits_in_the_backlog_instead_of_being_dropped(snapshots: Snapshots) -> None:
    """50 clients connect while the server accepts nothing (busy); once it runs, each is answered.

    With socketserver's default backlog of 5 the kernel drops the excess handshakes, and a
    client retries only after a second.
    """
    server = MetricsServer("127.0.0.1", 0, make_app(Exposition(snapshots, Constant()), lambda: True))
    clients = [socket.create_connection(("127.0.0.1", server.port), timeout=0.5) for _ in range(50)]
    server.start()
    try:
        for client in clients:
            client.settimeout(10)
            client.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        answers = [client.makefile("rb").readline() for client in clients]
    finally:
        for client in clients:
            client.close()
        server.stop()
    assert answers == [b"HTTP/1.0 200 OK\r\n"] * 50


def _series(text: str) -> set[tuple[str, frozenset[tuple[str, str]]]]:
    return {
        (sample.name, frozenset(sample.labels.items()))
        for family in parse_text(text)
        for sample in family.samples
    }


def _expected_series(space: str, config: Config) -> set[tuple[str, frozenset[tuple[str, str]]]]:
    """Every series outside the per-room ones, derived from the vocabulary alone."""
    buckets = config.duration_buckets
    expected: set[tuple[str, frozenset[tuple[str, str]]]] = set()

    def add(name: str, **labels: str) -> None:
        expected.add(("signalwire_video_" + name, frozenset({"space": space, **labels}.items())))

    def histogram(name: str, bounds: tuple[float, ...], **labels: str) -> None:
        for bound in (*map(str, bounds), "+Inf"):
            add(name + "_bucket", le=bound, **labels)
        add(name + "_count", **labels)
        add(name + "_sum", **labels)

    for quality, fps in KEYS:
        for name in ("room_sessions_active", "room_sessions_active_max_members"):
            add(name, quality=quality, fps=fps)
        for name in ("room_sessions_completed_total", "room_sessions_cost_dollars_total"):
            add(name, quality=quality, fps=fps)
        histogram("room_session_duration_seconds", buckets, quality=quality, fps=fps)
    add("up")
    add("last_poll_success_timestamp_seconds")
    for endpoint in ENDPOINTS:
        for code in REQUEST_CODES:
            add("api_requests_total", endpoint=endpoint, code=code)
        histogram("api_request_duration_seconds", REQUEST_BUCKETS, endpoint=endpoint)
    for reason in POLL_ERROR_REASONS:
        add("poll_errors_total", reason=reason)
    for reason in SKIP_REASONS:
        add("sessions_skipped_total", reason=reason)
    for work in ("completions", "members", "recordings", "charges", "live_members"):
        add("poll_deferred_total", work=work)
    for quality, fps in KEYS if config.members.enabled else ():
        histogram("room_session_members", config.member_buckets, quality=quality, fps=fps)
        histogram("room_session_peak_members", config.member_buckets, quality=quality, fps=fps)
        histogram(
            "room_session_capacity_utilization_ratio", config.utilization_buckets, quality=quality, fps=fps
        )
        add("room_sessions_at_capacity_total", quality=quality, fps=fps)
        add("member_seconds_total", quality=quality, fps=fps)
        add("member_cost_dollars_total", quality=quality, fps=fps)
    for reason in (
        ("invalid_cost", "invalid_duration", "invalid_times", "malformed", "session_gone")
        if config.members.enabled
        else ()
    ):
        add("members_skipped_total", reason=reason)
    for quality, fps in KEYS if config.members.live else ():
        add("members_active", quality=quality, fps=fps)
    if config.recordings.enabled:
        for name in ("recordings_total", "recording_seconds_total", "recording_bytes_total"):
            add(name)
        add("recording_cost_dollars_total")
        add("recordings_pending")
        reasons = ("invalid_cost", "invalid_duration", "invalid_size", "invalid_times", "malformed")
        for reason in (*reasons, "missing_duration", "recording_timeout", "session_gone"):
            add("recordings_skipped_total", reason=reason)
    if config.charges.enabled:
        for kind in ("room_session", "conference_session", "other"):
            add("charged_logs_total", type=kind)
        add("cost_mismatches_total")
        add("cost_mismatch_dollars_total")
        for reason in ("invalid_charge", "invalid_charge_details", "malformed"):
            add("logs_skipped_total", reason=reason)
    return expected


@pytest.mark.parametrize(
    "config",
    [
        Config(spaces=()),
        Config(
            spaces=(),
            members=MembersConfig(enabled=True, live=True),
            recordings=RecordingsConfig(enabled=True),
        ),
        Config(spaces=(), charges=ChargesConfig(enabled=True)),
    ],
    ids=["default", "members-and-recordings", "charges"],
)
def test_every_series_is_exported_from_the_first_scrape(config: Config) -> None:
    """Before any poll, every series the vocabulary allows is there (at 0), none beyond it;
    the member and recording families only when enabled.

    Some gauges are left out on purpose until they have a value (0 would be a false one): the
    oldest in-progress session's start time, the duration of the latest successful poll, and
    the day and month cost figures and projection.
    """
    text = build_exposition(Snapshots(["s"]), config).render(None)[0].decode()
    build = {name for name, _ in _series(text) if name.endswith("build_info")}
    series = {(name, labels) for name, labels in _series(text) if not name.endswith("build_info")}
    assert series == _expected_series("s", config)
    assert build == {"signalwire_video_exporter_build_info"}
    values = [s.value for f in parse_text(text) for s in f.samples]
    assert values.count(1.0) == 1  # build_info; every other series starts at 0


def test_build_info_names_version_revision_and_python() -> None:
    text = build_exposition(Snapshots([]), Config(spaces=())).render(None)[0].decode()
    (info,) = [s for f in parse_text(text) for s in f.samples]
    assert info.name == "signalwire_video_exporter_build_info"
    assert info.labels == {
        "version": exporter.__version__,
        "revision": subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(exporter.__file__).parent, capture_output=True, text=True
        ).stdout.strip()
        or "unknown",
        "python_version": platform.python_version(),
    }
