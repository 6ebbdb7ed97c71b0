"""API client against the simulated space over real HTTP: pagination, filters, errors, retries."""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from email.utils import formatdate

import pytest

from exporter.api import ApiClient, ApiError, describe_error_body, parse_retry_after
from exporter.models import InvalidResponse

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


def _back_to_first() -> Callable[[str], str]:
    """A ``next_link_hook`` that points every page's next link back at the first one."""
    first: list[str] = []

    def loop(link: str) -> str:
        first.append(link)
        return first[0]

    return loop


def test_looping_next_link_is_refused(sim: FakeSpace) -> None:
    for _ in range(3):
        sim.add_session()
    sim.next_link_hook = _back_to_first()
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


# --- members and recordings of a session ------------------------------------------------------


def _children(client: ApiClient, child: str, session_id: str, seconds: float = 10.0) -> list[list[str]]:
    """The ids on each page of a session's members or recordings."""
    listing = client.list_members if child == "members" else client.list_recordings
    return [[r.id for r in records] for records, _ in listing(session_id, deadline(seconds))]


@pytest.mark.parametrize("child", ["members", "recordings"])
def test_session_children_are_read_to_the_last_page(sim: FakeSpace, child: str) -> None:
    session = sim.add_session()
    add = sim.add_member if child == "members" else sim.add_recording
    created = [add(session) for _ in range(5)]
    add(sim.add_session())  # another session's
    client = _client(sim, page_size=2)
    pages = _children(client, child, session)
    assert [len(page) for page in pages] == [2, 2, 1]
    assert sorted(i for page in pages for i in page) == sorted(created)
    assert {r.path for r in sim.requests} == {f"/api/video/room_sessions/{session}/{child}"}
    assert sim.requests[0].query == {"page_size": "2"}
    assert client.observe.counts == {(child, "200"): 3}


def test_members_and_recordings_decode_as_served(sim: FakeSpace) -> None:
    t0 = int(time.time()) - 3600  # members are listed once they have joined
    session = sim.add_session(start_time=t0, quality="1080p")
    member = sim.add_member(session, name="Ada", join_time=t0 + 10, leave_time=t0 + 130)
    present = sim.add_member(session, join_time=t0 + 20)
    recording = sim.add_recording(session, started_at=t0)
    sim.complete_session(session, cost_in_dollars=0.5, end_time=t0 + 300)
    client = _client(sim)
    [(members, [])] = list(client.list_members(session, deadline()))
    [(recordings, [])] = list(client.list_recordings(session, deadline()))
    first = next(m for m in members if m.id == member)
    assert (first.name, first.join_ts, first.leave_ts, first.seconds) == (
        "Ada",
        t0 + 10,
        t0 + 130,
        120,
    )
    assert first.cost_in_dollars == 0.007 and first.room_session_id == session
    assert next(m for m in members if m.id == present).seconds == 280  # left when the session ended
    [done] = recordings
    assert (done.id, done.is_completed, done.seconds, done.size_in_bytes) == (
        recording,
        True,
        300,
        300 * 375_000,
    )
    assert (done.format, done.cost_in_dollars, done.invalid_reason()) == ("video/mp4", 0.0225, None)


@pytest.mark.parametrize("child", ["members", "recordings"])
def test_children_of_a_deleted_session_are_no_page_at_all(sim: FakeSpace, child: str) -> None:
    empty, gone = sim.add_session(), sim.add_session()
    sim.delete_session(gone)
    client = _client(sim)
    assert _children(client, child, gone) == []
    assert _children(client, child, empty) == [[]]  # one empty page: known, and nobody in it
    assert client.observe.counts == {(child, "404"): 1, (child, "200"): 1}


def test_a_session_deleted_mid_listing_fails_the_listing(sim: FakeSpace) -> None:
    session = sim.add_session()
    for _ in range(3):
        sim.add_member(session)
    pages = _client(sim, page_size=1).list_members(session, deadline())
    next(pages)
    sim.delete_session(session)
    with pytest.raises(ApiError) as info:
        next(pages)
    assert info.value.reason == "invalid_response"  # what was read is not the whole listing
    assert "HTTP 404" in str(info.value)


@pytest.mark.parametrize("child", ["members", "recordings"])
def test_faults_on_children_are_retried_or_fail_with_their_reason(sim: FakeSpace, child: str) -> None:
    session = sim.add_session()
    other = "recordings" if child == "members" else "members"
    sim.fail_next(500, endpoint=child)
    client = _client(sim)
    assert _children(client, child, session) == [[]]
    assert client.observe.counts == {(child, "500"): 1, (child, "200"): 1}
    sim.fail_next(403, endpoint=child)
    assert _children(client, other, session) == [[]]  # the fault waits for its endpoint
    with pytest.raises(ApiError) as info:
        _children(client, child, session)
    assert info.value.reason == "unauthorized"
    sim.fail_next(200, body=b"<html>maintenance</html>", endpoint=child)
    with pytest.raises(ApiError, match=f"not a {child} page") as info:
        _children(client, child, session)
    assert info.value.reason == "invalid_response"


def test_malformed_children_are_set_apart(sim: FakeSpace) -> None:
    session = sim.add_session()
    good = sim.add_member(session)
    negative = sim.add_member(session, duration=-5)
    sim.add_raw_member(session, {"id": "bad-1", "join_time": "yesterday"})
    sim.add_raw_member(session, {"name": "no id"})
    null_size = sim.add_recording(session, size_in_bytes=None)
    sim.complete_session(session, cost_in_dollars=0.1)
    client = _client(sim)
    [(members, malformed)] = list(client.list_members(session, deadline()))
    assert sorted(m.id for m in members) == sorted([good, negative])
    assert set(malformed) == {"bad-1", None}
    assert {m.id: m.invalid_reason() for m in members} == {good: None, negative: "invalid_duration"}
    [([recording], [])] = list(client.list_recordings(session, deadline()))
    assert (recording.id, recording.invalid_reason()) == (null_size, "invalid_size")


def test_children_links_are_held_to_their_listing_and_origin(sim: FakeSpace) -> None:
    session = sim.add_session()
    for _ in range(3):
        sim.add_member(session)
    client = _client(sim, page_size=1)
    sim.next_link_hook = lambda link: link.replace(f"/{session}/members", "")  # to the sessions list
    with pytest.raises(ApiError, match="unexpected path"):
        _children(client, "members", session)
    with FakeSpace(PROJECT, TOKEN) as elsewhere:
        sim.next_link_hook = lambda link: link.replace(sim.base_url, elsewhere.base_url)
        with pytest.raises(ApiError, match=r"refusing links\.next"):
            _children(client, "members", session)
        assert elsewhere.requests == []
    sim.next_link_hook = _back_to_first()
    with pytest.raises(ApiError, match="pagination loop"):
        _children(client, "members", session)
    sim.next_link_hook = None
    with pytest.raises(ApiError, match="more than 2 pages"):
        _children(_client(sim, page_size=1, max_pages=2), "members", session)


# --- video logs -----------------------------------------------------------------------------------


def _logs(client: ApiClient, seconds: float = 10.0, **dates: str) -> list[list[str]]:
    """The ids on each page of the video logs."""
    return [[log.id for log in logs] for logs, _ in client.list_logs(deadline(seconds), **dates)]


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def test_logs_are_read_to_the_last_page_newest_first(sim: FakeSpace) -> None:
    for i in range(5):
        sim.add_session(created_at=1_800_000_000 + i)
    client = _client(sim, page_size=2)
    pages = _logs(client)
    assert [len(page) for page in pages] == [2, 2, 1]
    assert [i for page in pages for i in page] == [log["id"] for log in sim.logs()]
    assert {r.path for r in sim.requests} == {"/api/video/logs"}
    assert sim.requests[0].query == {"page_size": "2"}  # no date unless asked for
    assert client.observe.counts == {("logs", "200"): 3}


def test_log_date_filters_reach_the_simulator_and_filter(sim: FakeSpace) -> None:
    t0 = 1_800_000_000
    sessions = [sim.add_session(created_at=t0 + 3600 * i) for i in range(6)]
    client = _client(sim, page_size=1)
    after, before = _iso(t0 + 3600), _iso(t0 + 4 * 3600)  # strictly between: sessions 2 and 3
    pages = _logs(client, created_after=after, created_before=before)
    assert pages == [[sim.log_of(sessions[3])], [sim.log_of(sessions[2])]]
    assert all(
        r.query["created_after"] == after and r.query["created_before"] == before for r in sim.requests
    )
    assert [i for page in _logs(client, created_after=after) for i in page] == [
        sim.log_of(s) for s in sessions[:1:-1]
    ]
    assert sim.requests[-1].query.keys() == {"created_after", "page_size", "page_number", "page_token"}


def test_logs_decode_as_served(sim: FakeSpace) -> None:
    t0 = int(time.time()) - 3600
    done = sim.add_session(name="standup", start_time=t0, created_at=t0, quality="1080p")
    live = sim.add_session(name="lobby", created_at=t0 + 60)
    deleted = sim.add_session(created_at=t0 + 120)
    sim.complete_session(done, cost_in_dollars=0.1237, end_time=t0 + 300)
    sim.delete_log(sim.log_of(deleted))
    [(logs, [])] = list(_client(sim).list_logs(deadline()))
    assert [log.id for log in logs] == [sim.log_of(live), sim.log_of(done)]
    running, billed = logs
    assert (running.kind, running.session_id, running.completed, running.charge) == (
        "room_session",
        live,
        False,
        0,
    )
    assert (billed.kind, billed.session_id, billed.room_name, billed.completed) == (
        "room_session",
        done,
        "standup",
        True,
    )
    assert (billed.created_ts, billed.ended_ts, billed.charge, billed.invalid_reason()) == (
        t0,
        t0 + 300,
        0.1237,
        None,
    )
    details = {d.description: d.charge for d in billed.charge_details or []}
    assert details == {"Video room session minutes": 0.099, "Video room session 1080p surcharge": 0.0247}


def test_faults_on_logs_are_retried_or_fail_with_their_reason(sim: FakeSpace) -> None:
    sim.add_session()
    sim.fail_next(500, endpoint="logs")
    client = _client(sim)
    assert len(_logs(client)[0]) == 1
    assert client.observe.counts == {("logs", "500"): 1, ("logs", "200"): 1}
    sim.fail_next(403, endpoint="logs")
    assert _all(client) != []  # the fault waits for its endpoint
    with pytest.raises(ApiError) as info:
        _logs(client)
    assert info.value.reason == "unauthorized"
    sim.fail_next(422, endpoint="logs")
    with pytest.raises(ApiError) as info:
        _logs(client)
    assert info.value.reason == "invalid_response"
    sim.fail_next(200, body=b"<html>maintenance</html>", endpoint="logs")
    with pytest.raises(ApiError, match="not a logs page") as info:
        _logs(client)
    assert info.value.reason == "invalid_response"


def test_malformed_logs_are_set_apart(sim: FakeSpace) -> None:
    good = sim.log_of(sim.add_session())
    sim.add_raw_log({"id": "bad-1", "charge": "a lot"})
    sim.add_raw_log({"charge": 0.5})
    [(logs, malformed)] = list(_client(sim).list_logs(deadline()))
    assert [log.id for log in logs] == [good]
    assert set(malformed) == {"bad-1", None}


def test_logs_links_are_held_to_their_listing(sim: FakeSpace) -> None:
    for _ in range(3):
        sim.add_session()
    client = _client(sim, page_size=1)
    sim.next_link_hook = lambda link: link.replace("/api/video/logs", "/api/video/room_sessions")
    with pytest.raises(ApiError, match="unexpected path"):
        _logs(client)
    sim.next_link_hook = _back_to_first()
    with pytest.raises(ApiError, match="pagination loop"):
        _logs(client)


def test_get_log_by_id_in_progress_completed_deleted_unknown_and_malformed(sim: FakeSpace) -> None:
    client = _client(sim)
    sid = sim.add_session()
    lid = sim.log_of(sid)
    running = client.get_log(lid, deadline())
    assert running is not None and (running.id, running.completed, running.session_id) == (lid, False, sid)
    sim.complete_session(sid, cost_in_dollars=0.25)
    done = client.get_log(lid, deadline())
    assert done is not None and (done.completed, done.charge) == (True, 0.25)
    sim.delete_log(lid)
    gone = client.get_log(lid, deadline())
    assert gone is not None and gone.deleted  # the spec's VideoLog: a Log or a DiscardedLog
    assert client.get_log("no-such-log", deadline()) is None  # 404
    sim.add_raw_log({"id": "bad-1", "charge": "a lot"})
    with pytest.raises(InvalidResponse, match="not a video log"):
        client.get_log("bad-1", deadline())
    assert client.observe.counts == {("logs", "200"): 4, ("logs", "404"): 1}
    assert [r.path for r in sim.requests][-1] == "/api/video/logs/bad-1"
