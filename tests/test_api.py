"""API client against the simulated space over real HTTP: pagination, filters, errors, retries."""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Iterator
from email.utils import formatdate

import pytest

from exporter.api import ApiClient, ApiError, describe_error_body, parse_retry_after

from .conftest import PROJECT, TOKEN, RequestLog, deadline, poll_config, space_config
from .support.fake_api import FakeSpace


def _client(sim: FakeSpace, token: str = TOKEN, **poll: float) -> ApiClient:
    return ApiClient(space_config(sim, token=token), poll_config(**poll), RequestLog(), rng=random.Random(1))


def _all(client: ApiClient, status: str = "in-progress", seconds: float = 10.0) -> list[str]:
    return [s.id for sessions, _ in client.list_sessions(status, deadline(seconds)) for s in sessions]


@pytest.mark.parametrize("link_style", ["absolute", "relative"])
def test_listing_follows_every_page_once(link_style: str) -> None:
    with FakeSpace(PROJECT, TOKEN, link_style=link_style) as sim:  # type: ignore[arg-type]
        ids = {sim.add_session(name=f"room-{i}", created_at=1_800_000_000 + i) for i in range(7)}
        client = _client(sim, page_size=3)
        seen = _all(client)
        assert sorted(seen) == sorted(ids)
        lists = [r for r in sim.requests if r.path == "/api/video/room_sessions"]
        assert len(lists) == 3
        assert all(r.query["page_size"] == "3" and r.query["status"] == "in-progress" for r in lists)
        assert lists[1].query["page_token"] and lists[1].query["page_number"] == "1"
        assert client.observe.counts == {("list", "200"): 3}


def test_filters_credentials_and_user_agent_are_sent(sim: FakeSpace) -> None:
    sim.add_session(name="lobby")
    sim.add_session(name="other")
    space = space_config(sim, room_name="lobby", room_name_matches="lob", room_id="3f1c")
    client = ApiClient(space, poll_config(), RequestLog())
    assert _all(client) == []  # room_id filter matches nothing
    request = sim.requests[-1]
    assert request.query == {
        "status": "in-progress",
        "page_size": "1000",
        "room_id": "3f1c",
        "room_name": "lobby",
        "room_name_matches": "lob",
    }
    assert request.headers["authorization"].startswith("Basic ")
    assert request.headers["user-agent"].startswith("signalwire-video-exporter/")


def test_unauthorized_fails_at_once_without_retry(sim: FakeSpace) -> None:
    with pytest.raises(ApiError) as info:
        _all(_client(sim, token="wrong"))
    assert info.value.reason == "unauthorized"
    assert "HTTP 401: Unauthorized" in str(info.value)
    assert len(sim.requests) == 1


def test_422_is_reported_readably(sim: FakeSpace) -> None:
    body = {
        "errors": [
            {
                "type": "validation",
                "code": "page_token_is_invalid",
                "message": "bad token",
                "attribute": "page_token",
                "url": "https://example.invalid/doc",
            }
        ]
    }
    sim.fail_next(422, body=body)
    with pytest.raises(ApiError) as info:
        _all(_client(sim))
    assert info.value.reason == "invalid_response"
    assert (
        str(info.value) == "list request: HTTP 422: page_token_is_invalid: bad token (attribute page_token)"
    )


def test_server_errors_are_retried_then_succeed(sim: FakeSpace) -> None:
    sid = sim.add_session()
    sim.fail_next(500, times=2)
    client = _client(sim)
    assert _all(client) == [sid]
    assert client.observe.counts == {("list", "500"): 2, ("list", "200"): 1}


def test_retry_after_is_honoured(sim: FakeSpace) -> None:
    sid = sim.add_session()
    sim.fail_next(429, headers={"Retry-After": "1"})
    started = time.monotonic()
    assert _all(_client(sim)) == [sid]
    # without Retry-After the first backoff is at most 0.5 s
    assert time.monotonic() - started >= 1.0
    assert len(sim.requests) == 2


def test_retries_stop_at_the_poll_deadline(sim: FakeSpace) -> None:
    sim.fail_next(503, times=1000)
    started = time.monotonic()
    with pytest.raises(ApiError) as info:
        _all(_client(sim), seconds=2.0)
    assert info.value.reason == "server_error"
    assert "outlive the poll" in str(info.value)
    assert time.monotonic() - started < 2.0
    assert len(sim.requests) >= 2


def test_rate_limit_longer_than_the_poll_is_not_waited_for(sim: FakeSpace) -> None:
    sim.fail_next(429, headers={"Retry-After": "3600"}, times=5)
    with pytest.raises(ApiError) as info:
        _all(_client(sim), seconds=5.0)
    assert info.value.reason == "rate_limited"
    assert len(sim.requests) == 1


def test_looping_next_link_is_refused(sim: FakeSpace) -> None:
    for _ in range(3):
        sim.add_session()
    first: list[str] = []

    def loop(link: str) -> str:
        first.append(link)
        return first[0]

    sim.next_link_hook = loop
    with pytest.raises(ApiError, match="pagination loop"):
        _all(_client(sim, page_size=1))


def test_cross_host_next_link_is_refused_and_never_contacted(sim: FakeSpace) -> None:
    for _ in range(2):
        sim.add_session()
    with FakeSpace(PROJECT, TOKEN) as elsewhere:
        sim.next_link_hook = lambda link: link.replace(
            sim.base_url, elsewhere.base_url.replace("127.0.0.1", "localhost")
        )
        with pytest.raises(ApiError, match=r"refusing links\.next"):
            _all(_client(sim, page_size=1))
        assert elsewhere.requests == []


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirects_are_not_followed_so_credentials_stay_home(sim: FakeSpace, status: int) -> None:
    with FakeSpace(PROJECT, TOKEN) as elsewhere:
        sim.fail_next(status, headers={"Location": f"{elsewhere.base_url}/api/video/room_sessions"})
        with pytest.raises(ApiError) as info:
            _all(_client(sim))
        assert elsewhere.requests == []
    assert info.value.reason == "invalid_response"
    assert len(sim.requests) == 1  # not retried either


def test_garbage_next_link_is_refused(sim: FakeSpace) -> None:
    for _ in range(2):
        sim.add_session()
    sim.next_link_hook = lambda link: "javascript:alert(1)"
    with pytest.raises(ApiError) as info:
        _all(_client(sim, page_size=1))
    assert info.value.reason == "invalid_response"


def test_max_pages_caps_a_listing(sim: FakeSpace) -> None:
    for _ in range(5):
        sim.add_session()
    with pytest.raises(ApiError, match="more than 2 pages"):
        _all(_client(sim, page_size=1, max_pages=2))


def test_malformed_records_are_set_apart(sim: FakeSpace) -> None:
    good = sim.add_session()
    sim.add_raw_record({"id": "bad-1", "created_at": "not a date"}, status="in-progress")
    sim.add_raw_record({"no_id": True}, status="in-progress")
    pages = list(_client(sim).list_sessions("in-progress", deadline()))
    assert [s.id for s in pages[0][0]] == [good]
    assert set(pages[0][1]) == {"bad-1", None}


def test_non_json_page_is_an_invalid_response(sim: FakeSpace) -> None:
    sim.fail_next(200, body=b"<html>maintenance</html>")
    with pytest.raises(ApiError) as info:
        _all(_client(sim))
    assert info.value.reason == "invalid_response"


def test_get_session_summary_and_404(sim: FakeSpace) -> None:
    sid = sim.add_session(quality="1080p", fps=20, max_members=7)
    client = _client(sim)
    session = client.get_session(sid, deadline())
    assert session is not None
    assert (session.id, session.quality_label, session.fps_label, session.max_members) == (
        sid,
        "1080p",
        "20",
        7,
    )
    assert session.cost_in_dollars is None
    sim.delete_session(sid)
    assert client.get_session(sid, deadline()) is None
    assert client.observe.counts == {("get", "200"): 1, ("get", "404"): 1}


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A socket that accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield sock.getsockname()[1]
    sock.close()


def test_timeouts_and_refused_connections_are_classified(silent_server: int) -> None:
    from exporter.config import SpaceConfig

    poll = poll_config(timeout=0.3)
    silent = ApiClient(SpaceConfig("s", f"http://127.0.0.1:{silent_server}", "p", "t"), poll, RequestLog())
    with pytest.raises(ApiError) as info:
        list(silent.list_sessions("in-progress", deadline(0.5)))
    assert info.value.reason == "timeout"
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    refused = ApiClient(SpaceConfig("s", f"http://127.0.0.1:{port}", "p", "t"), poll, RequestLog())
    with pytest.raises(ApiError) as info:
        list(refused.list_sessions("in-progress", deadline(0.5)))
    assert info.value.reason == "network"
    assert refused.observe.counts[("list", "error")] >= 1


def test_shutdown_interrupts_a_retry_wait(sim: FakeSpace) -> None:
    sim.fail_next(503, headers={"Retry-After": "5"}, times=10)
    stop = threading.Event()
    client = ApiClient(space_config(sim), poll_config(), RequestLog(), stop=stop)
    threading.Timer(0.2, stop.set).start()
    started = time.monotonic()
    with pytest.raises(ApiError, match="shutting down"):
        list(client.list_sessions("in-progress", deadline(30)))
    assert time.monotonic() - started < 3


@pytest.mark.parametrize(
    ("body", "text"),
    [
        (b'{"error": "Unauthorized"}', "Unauthorized"),
        (
            b'{"errors": [{"type": "t", "code": "rate_limit_exceeded", "message": "slow down", "url": "u"}]}',
            "rate_limit_exceeded: slow down",
        ),
        (
            b'{"type": "t", "code": "missing_required_parameter", "message": "m", "attribute": "status"}',
            "missing_required_parameter: m (attribute status)",
        ),
        (b"<html>Bad Gateway</html>", "non-JSON body: '<html>Bad Gateway</html>'"),
        (b"", "empty body"),
    ],
)
def test_error_bodies_of_every_shape_read_well(body: bytes, text: str) -> None:
    assert describe_error_body(body) == text


def test_retry_after_forms() -> None:
    now = time.time()
    assert parse_retry_after("7", now) == 7.0
    assert parse_retry_after(formatdate(now + 10, usegmt=True), now) == pytest.approx(10, abs=1)
    assert parse_retry_after(formatdate(now - 10, usegmt=True), now) == 0.0
    assert parse_retry_after("garbage", now) is None
    assert parse_retry_after(None, now) is None
