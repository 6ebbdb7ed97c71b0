"""The API client against hostile servers, over real sockets on 127.0.0.1.

What a well-behaved server never sends, served byte by byte by tests/support/raw_http.py:
endless ``100 Continue`` interim responses, header bytes dripping in, a TLS handshake dripping
in, a connect that never completes, gzip bombs, a Unicode ``Retry-After``, huge error bodies
and protocol errors. No response may hold a request or a poll past its deadline, blow up its
memory, crash it, or flood the log.
"""

from __future__ import annotations

import gzip
import itertools
import json
import logging
import random
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from exporter.api import ApiClient, ApiError, parse_retry_after
from exporter.config import SpaceConfig
from exporter.transport import environment_proxy

from .conftest import PROJECT, TOKEN, RequestLog, deadline, poll_config
from .support.fake_api import FakeSpace
from .support.raw_http import Connection, Handler, RawServer, answering, continuing, dripping, response
from .test_poller import Exporter

ROOT = Path(__file__).resolve().parent.parent
MARGIN = 2.0  # seconds past a deadline still accepted: a deadline guarantee, not a speed target
LOG_LINE = 1000  # characters: the most any log line or error message here may have
JSON = {"Content-Type": "application/json"}
PAGE = json.dumps({"data": [{"id": "s1", "created_at": "2026-01-01T00:00:00Z"}], "links": {}}).encode()


def _client(base_url: str, **poll: float) -> ApiClient:
    space = SpaceConfig("hostile", base_url, PROJECT, TOKEN)
    return ApiClient(space, poll_config(**poll), RequestLog(), rng=random.Random(1))


def _ids(client: ApiClient, seconds: float = 10.0) -> list[str]:
    return [s.id for sessions, _ in client.list_sessions("in-progress", deadline(seconds)) for s in sessions]


def _fails(client: ApiClient, seconds: float) -> tuple[ApiError, float]:
    """The ApiError a listing with a poll deadline ``seconds`` away ends with, and how long it took."""
    started = time.monotonic()
    with pytest.raises(ApiError) as info:
        _ids(client, seconds)
    return info.value, time.monotonic() - started


# --- deadlines -----------------------------------------------------------------------------

HOLDING: dict[str, Handler] = {
    "100-continue-forever": continuing(),
    "dripping-headers": dripping(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Slow: ", b"a"),
    "dripping-body": dripping(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n", b"["),
}


@pytest.mark.parametrize("behaviour", list(HOLDING))
def test_no_response_holds_a_request_past_its_deadline(behaviour: str) -> None:
    with RawServer(HOLDING[behaviour]) as server:
        client = _client(server.base_url, timeout=0.5)
        error, took = _fails(client, seconds=2.0)
    assert error.reason == "timeout"
    assert took < 2.0 + MARGIN  # the poll's deadline
    # each request was cut at its own deadline (0.5 s), then retried within the poll's
    assert len(server.requests) >= 2
    assert client.observe.counts == {("list", "error"): len(server.requests)}


def test_a_poll_against_endless_interim_responses_fails_as_timeout_within_its_interval() -> None:
    with RawServer(continuing()) as server:
        exporter = Exporter(server, interval=1.0, timeout=5.0)  # type: ignore[arg-type]
        started = time.monotonic()
        assert not exporter.poll()
        took = time.monotonic() - started
    assert took < 1.0 + MARGIN
    v = exporter.value
    assert v("signalwire_video_up") == 0
    assert v("signalwire_video_poll_errors_total", reason="timeout") == 1
    assert v("signalwire_video_api_requests_total", endpoint="list", code="error") == 1


def test_a_retry_cut_short_by_the_poll_deadline_fails_with_the_error_it_retried() -> None:
    numbers = itertools.count()

    def busy_then_hanging(conn: Connection) -> None:
        for _ in conn.requests():
            if next(numbers) > 0:
                return continuing()(conn)  # the retry hangs until the poll's deadline cuts it
            conn.send(response(503, {**JSON, "Retry-After": "1"}, b'{"error": "busy"}'))

    with RawServer(busy_then_hanging) as server:
        client = _client(server.base_url, timeout=5.0)
        error, took = _fails(client, seconds=3.0)  # room for the retry even on a busy machine
    assert error.reason == "server_error"  # not "timeout": the retry had ~2 s, not poll.timeout
    assert "ran out of the poll interval" in str(error)
    assert took < 3.0 + MARGIN
    assert client.observe.counts == {("list", "503"): 1, ("list", "error"): 1}


def test_a_tls_handshake_dripping_in_ends_at_the_deadline() -> None:
    # a TLS record header announcing 16 KiB, then its bytes one every 50 ms
    handler = dripping(b"\x16\x03\x03\x40\x00", b"\x02", read_request=False)
    with RawServer(handler) as server:
        client = _client(server.base_url.replace("http:", "https:"), timeout=0.5)
        error, took = _fails(client, seconds=2.0)
    assert error.reason == "timeout"
    assert took < 2.0 + MARGIN
    assert server.connections >= 2


@pytest.fixture
def unanswered_port() -> Iterator[int]:
    """A port whose connects never complete: a listener whose backlog is full (Linux drops the SYNs)."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=0)
    filler = socket.create_connection(listener.getsockname())
    yield listener.getsockname()[1]
    filler.close()
    listener.close()


def test_a_connect_that_never_completes_ends_at_the_deadline(unanswered_port: int) -> None:
    client = _client(f"http://127.0.0.1:{unanswered_port}", timeout=0.5)
    error, took = _fails(client, seconds=2.0)
    assert error.reason == "timeout"
    assert took < 2.0 + MARGIN
    assert client.observe.counts[("list", "error")] >= 2


def _without_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


def test_a_name_lookup_that_never_answers_ends_at_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    _without_proxies(monkeypatch)
    answered = threading.Event()

    def unanswered(*args: object, **kwargs: object) -> object:  # name servers that do not answer
        answered.wait(30)
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", unanswered)
    try:
        error, took = _fails(_client("http://api.example.invalid", timeout=0.5), seconds=2.0)
    finally:
        answered.set()  # the lookups left behind end
    assert error.reason == "timeout" and took < 2.0 + MARGIN  # without the bound: 30 s, then "network"


def test_a_failed_name_lookup_is_a_network_error_and_a_name_that_resolves_is_served(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _without_proxies(monkeypatch)
    with RawServer(answering(response(200, JSON, PAGE))) as server:
        port = server.base_url.rsplit(":", 1)[1]
        assert _ids(_client(f"http://localhost:{port}")) == ["s1"]  # looked up by the system resolver

        def failing(*args: object, **kwargs: object) -> object:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

        monkeypatch.setattr(socket, "getaddrinfo", failing)
        error, _ = _fails(_client(f"http://localhost:{port}", timeout=0.5), seconds=1.0)
    assert error.reason == "network" and "Name or service not known" in str(error)


def test_a_proxy_from_the_environment_is_used_and_held_to_the_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _without_proxies(monkeypatch)
    with RawServer(continuing()) as proxy:
        monkeypatch.setenv("http_proxy", proxy.base_url)
        error, took = _fails(_client("http://api.example.invalid", timeout=0.5), seconds=1.0)
    assert error.reason == "timeout"
    assert took < 1.0 + MARGIN
    assert proxy.requests[0].startswith(b"GET http://api.example.invalid/api/video/room_sessions?")


def test_a_loopback_api_is_never_proxied(monkeypatch: pytest.MonkeyPatch) -> None:
    _without_proxies(monkeypatch)
    with RawServer(continuing()) as proxy, RawServer(answering(response(200, JSON, PAGE))) as server:
        monkeypatch.setenv("http_proxy", proxy.base_url)
        assert _ids(_client(server.base_url)) == ["s1"]
    assert (len(proxy.requests), len(server.requests)) == (0, 1)


@pytest.mark.parametrize(
    "origin",
    [
        "http://127.0.0.1:80",
        "http://127.5.0.1",
        "http://[::1]:80",
        "http://[::ffff:127.0.0.1]",
        "http://localhost.",
    ],
)
def test_no_loopback_origin_is_proxied(monkeypatch: pytest.MonkeyPatch, origin: str) -> None:
    _without_proxies(monkeypatch)
    monkeypatch.setenv("all_proxy", "socks5://proxy.example:1080")  # a ValueError if it were used
    assert environment_proxy(origin) is None
    with pytest.raises(ValueError, match=r"all_proxy for http://api\.example\.invalid is a 'socks5' proxy"):
        environment_proxy("http://api.example.invalid")


def test_sequential_requests_share_one_kept_alive_connection() -> None:
    with RawServer(answering(response(200, JSON, PAGE))) as server:
        client = _client(server.base_url)
        for _ in range(3):
            assert _ids(client) == ["s1"]
    assert (len(server.requests), server.connections) == (3, 1)


# --- bodies --------------------------------------------------------------------------------


def _gzip_of_zeros(mebibytes: int) -> bytes:
    """A valid gzip stream of ``mebibytes`` MiB of zeros, made without compressing them all.

    After a full flush the compressor starts afresh, so every further MiB of zeros compresses to
    the same bytes: one block is repeated.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    mebibyte = bytes(1 << 20)
    block = compressor.compress(mebibyte) + compressor.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(mebibytes):
        crc = zlib.crc32(mebibyte, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    trailer = struct.pack("<II", crc, (mebibytes << 20) & 0xFFFFFFFF)
    return header + block * mebibytes + compressor.flush() + trailer


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """1,100 MiB of zeros, gzipped once: about 1.1 MB."""
    return _gzip_of_zeros(1100)


def test_the_gzip_bomb_is_one(bomb: bytes) -> None:
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
    start = inflate.decompress(bomb, 1 << 20)
    assert start == bytes(1 << 20) and len(bomb) < 1_200_000
    assert struct.unpack("<I", bomb[-4:])[0] == (1100 << 20) & 0xFFFFFFFF  # the size it declares


@pytest.mark.parametrize("encoding", ["gzip", "gzip, gzip"])
def test_a_gzip_bomb_is_refused_with_memory_bounded_by_the_cap(bomb: bytes, encoding: str) -> None:
    cap = 4 << 20
    body = bomb if encoding == "gzip" else gzip.compress(bomb, 9)  # twice: a few KB
    with RawServer(answering(response(200, {**JSON, "Content-Encoding": encoding}, body))) as server:
        run = subprocess.run(
            [sys.executable, "-m", "tests.support.peak_rss", server.base_url, str(cap)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout)
    assert result["reason"] == "invalid_response", result
    # the body inflates to 1,100 MiB; the client holds at most the cap (4 MiB) of it, and a chunk
    assert result["peak_growth"] < 32 << 20, result
    assert len(server.requests) == 1  # refused for good, not retried


@pytest.mark.parametrize(
    ("headers", "body", "refusal"),
    [
        ({"Content-Encoding": "br"}, b"\x0b\x02\x80{}\x03", "unsupported Content-Encoding"),
        ({"Content-Encoding": "deflate"}, zlib.compress(PAGE), "unsupported Content-Encoding"),
        ({"Content-Encoding": "gzip"}, gzip.compress(PAGE)[:-9], "ends before the end of its gzip"),
        ({"Content-Encoding": "gzip"}, gzip.compress(PAGE) + b"more", "data after the end"),
        ({"Content-Encoding": "gzip"}, b"not gzip at all", "not valid gzip"),
        ({"Content-Encoding": "x" * 5000}, PAGE, "unsupported Content-Encoding"),
    ],
)
def test_bodies_not_in_a_single_valid_gzip_are_refused(
    headers: dict[str, str], body: bytes, refusal: str
) -> None:
    with RawServer(answering(response(200, {**JSON, **headers}, body))) as server:
        error, _ = _fails(_client(server.base_url), seconds=5.0)
    assert error.reason == "invalid_response"
    assert refusal in str(error) and len(str(error)) < LOG_LINE
    assert len(server.requests) == 1


@pytest.mark.parametrize("encoding", ["gzip", "x-gzip", "identity, gzip", "GZIP", "identity", ""])
def test_gzip_and_identity_bodies_are_decoded_and_only_gzip_is_asked_for(encoding: str) -> None:
    body = PAGE if "gzip" not in encoding.lower() else gzip.compress(PAGE)
    with RawServer(answering(response(200, {**JSON, "Content-Encoding": encoding}, body))) as server:
        assert _ids(_client(server.base_url)) == ["s1"]
    assert b"\r\naccept-encoding: gzip\r\n" in server.requests[0].lower() + b"\r\n"


# --- headers and text from the API -----------------------------------------------------------


def test_a_unicode_digit_retry_after_is_ignored_for_the_normal_backoff() -> None:
    # "²": str.isdigit() is true, float() and int() refuse it
    limited = response(429, {**JSON, "Retry-After": "²".encode()}, b'{"error": "slow down"}')
    with RawServer(answering(limited, response(200, JSON, PAGE))) as server:
        client = _client(server.base_url)
        assert _ids(client) == ["s1"]
    assert client.observe.counts == {("list", "429"): 1, ("list", "200"): 1}


@pytest.mark.parametrize(
    "value", ["²", "٣", "1.5", "-1", "+5", "0x10", "1e3", "5 s", "Mon, 32 Jan 2020 00:00:00 GMT"]
)
def test_retry_after_takes_only_ascii_digits_or_an_http_date(value: str) -> None:
    assert parse_retry_after(value, time.time()) is None


def test_an_absurd_retry_after_means_no_retry_within_the_poll() -> None:
    assert parse_retry_after("9" * 5000, time.time()) == float("inf")
    assert parse_retry_after("Mon, 01 Jan 99999 00:00:00 GMT", time.time()) is None


def test_huge_error_bodies_are_logged_clipped_on_every_retry(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="exporter")
    body = json.dumps({"errors": [{"code": "boom", "message": "x" * 5_000_000}]}).encode()
    with RawServer(answering(response(500, JSON, body))) as server:
        error, _ = _fails(_client(server.base_url), seconds=2.0)
    assert error.reason == "server_error"
    retries = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retries) == len(server.requests) - 1 >= 1
    assert all("HTTP 500: boom: xxx" in line and len(line) < LOG_LINE for line in retries)
    assert len(str(error)) < LOG_LINE


def test_a_long_protocol_error_from_the_server_is_clipped(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="exporter")
    bad_header = response(200, JSON, PAGE).replace(b"\r\n", b"\r\n" + b"\x01" * 50_000 + b"\r\n", 1)
    with RawServer(answering(bad_header)) as server:
        error, _ = _fails(_client(server.base_url), seconds=1.5)
    assert error.reason == "network"
    assert "illegal header line" in str(error) and len(str(error)) < LOG_LINE
    assert caplog.records and all(len(r.getMessage()) < LOG_LINE for r in caplog.records)


@pytest.mark.parametrize(
    "bend",
    [
        lambda link: link.replace("/room_sessions?", "/" + "p" * 100_000 + "?"),
        lambda link: link.replace("127.0.0.1", "h" * 100_000 + ".example"),
    ],
    ids=["long-path", "long-host"],
)
def test_long_links_are_refused_with_a_clipped_message(sim: FakeSpace, bend: Callable[[str], str]) -> None:
    for _ in range(2):
        sim.add_session()
    sim.next_link_hook = bend
    with pytest.raises(ApiError) as info:
        _ids(
            ApiClient(SpaceConfig("s", sim.base_url, PROJECT, TOKEN), poll_config(page_size=1), RequestLog())
        )
    assert info.value.reason == "invalid_response"
    assert len(str(info.value)) < LOG_LINE
