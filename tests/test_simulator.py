"""Tests for the simulated SignalWire space and the tests' fake API built on it: real HTTP, responses
checked against the OpenAPI spec."""

from __future__ import annotations

import itertools
import math
import random
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
import yaml
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from exporter.simulator import ENDED_AT_START, RequestHandler, SimulatedSpace

from .support.fake_api import FakeSpace

PROJECT, TOKEN = "project-1", "secret-token"
LIST, LOGS = "/api/video/room_sessions", "/api/video/logs"
T0 = 1_795_000_000.0
# The sessions endpoints are checked against the spec the exporter was built on; the members,
# recordings and logs endpoints against the API's larger extract (whose fps, a number, the sessions
# spec and real responses contradict: "30" and 20 are both served).
SPEC: dict[str, Any] = yaml.safe_load(
    (Path(__file__).parent / "api" / "room_sessions.openapi.yaml").read_text()
)
VIDEO_SPEC: dict[str, Any] = yaml.safe_load(
    (Path(__file__).parent / "api" / "video-api.openapi.yaml").read_text()
)
SPEC_URI, VIDEO_SPEC_URI = "urn:signalwire:room-sessions", "urn:signalwire:video-api"
REGISTRY: Registry[Any] = Registry().with_resources(
    [
        (SPEC_URI, Resource.from_contents(SPEC, default_specification=DRAFT202012)),
        (VIDEO_SPEC_URI, Resource.from_contents(VIDEO_SPEC, default_specification=DRAFT202012)),
    ]
)


def validate(ref: str, instance: object, spec_uri: str = SPEC_URI) -> None:
    """Validate ``instance`` against the spec schema at ``ref`` ("#/components/...")."""
    schema = {"$ref": spec_uri + ref}
    Draft202012Validator(schema, registry=REGISTRY, format_checker=FormatChecker()).validate(instance)


def validate_response(response: httpx.Response) -> None:
    """Validate a response body against the spec's schema for its path and status."""
    path = urlsplit(str(response.url)).path
    child = path.rpartition("/")[2] if path.count("/") == 5 else None  # members or recordings
    spec, uri = (SPEC, SPEC_URI) if child is None and path != LOGS else (VIDEO_SPEC, VIDEO_SPEC_URI)
    template = path if path in (LIST, LOGS) else f"{LIST}/{{id}}/{child}" if child else LIST + "/{id}"
    responses = spec["paths"][template]["get"]["responses"]
    assert str(response.status_code) in responses, response.status_code
    assert response.headers["content-type"] == "application/json"
    schema = responses[str(response.status_code)]["content"]["application/json"]["schema"]
    validate(schema["$ref"], response.json(), uri)


class Clock:
    """A settable clock."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def space(clock: Clock) -> Iterator[FakeSpace]:
    with FakeSpace(PROJECT, TOKEN, clock=clock) as sim:
        yield sim


@pytest.fixture
def client(space: FakeSpace) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=space.base_url, auth=(PROJECT, TOKEN)) as http:
        yield http


def until(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    """Whether ``condition`` holds within ``seconds`` (checked every 10 ms): a bound, not a speed."""
    end = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > end:
            return False
        time.sleep(0.01)
    return True


def get(client: httpx.Client, url: str, **params: Any) -> httpx.Response:
    """GET and check the response against the spec."""
    response = client.get(url, params=params or None)  # httpx: {} would drop the URL's query
    validate_response(response)
    return response


def collect(client: httpx.Client, path: str = LIST, **params: Any) -> list[dict[str, Any]]:
    """Follow ``next`` links from the first page of ``path``; return every page's JSON."""
    pages = [get(client, path, **params).json()]
    while "next" in pages[-1]["links"]:
        assert len(pages) < 50, "pagination does not terminate"
        pages.append(get(client, pages[-1]["links"]["next"]).json())
    return pages


def ids(pages: list[dict[str, Any]]) -> list[str]:
    return [record["id"] for page in pages for record in page["data"]]


def query_of(link: str) -> dict[str, str]:
    return {key: values[-1] for key, values in parse_qs(urlsplit(link).query).items()}


@pytest.mark.parametrize("auth", [None, (PROJECT, "wrong"), ("other", TOKEN)])
@pytest.mark.parametrize(
    "path",
    [
        LIST,
        LIST + "/00000000-0000-4000-8000-000000000000",
        LIST + "/00000000-0000-4000-8000-000000000000/members",
        LIST + "/00000000-0000-4000-8000-000000000000/recordings",
        LOGS,
    ],
)
def test_rejects_missing_or_wrong_credentials(
    space: FakeSpace, auth: tuple[str, str] | None, path: str
) -> None:
    space.add_session()
    response = httpx.get(space.base_url + path, auth=auth)
    assert response.status_code == 401
    assert response.json() == {"error": "Unauthorized"}
    validate_response(response)


@pytest.mark.parametrize("link_style", ["absolute", "relative"])
def test_pagination_collects_every_session_once_newest_first(clock: Clock, link_style: Any) -> None:
    with FakeSpace(PROJECT, TOKEN, clock=clock, link_style=link_style) as space:
        created = [space.add_session(created_at=T0 - 60 * i) for i in range(6)]
        created += [space.add_session(created_at=T0 - 600) for _ in range(3)]  # same second
        with httpx.Client(base_url=space.base_url, auth=(PROJECT, TOKEN)) as client:
            pages = collect(client, page_size=2)
        origin = space.base_url if link_style == "absolute" else ""
    expected = created[:6] + sorted(created[6:], reverse=True)
    assert ids(pages) == expected
    assert [len(page["data"]) for page in pages] == [2, 2, 2, 2, 1]
    for number, page in enumerate(pages):
        links = page["links"]
        assert all(link.startswith(origin + LIST + "?") for link in links.values())
        assert query_of(links["self"])["page_number"] == str(number)
        assert query_of(links["first"]) == {"page_number": "0", "page_size": "2"}
        assert ("prev" in links) == (number > 0)
    assert "page_token" in query_of(pages[1]["links"]["self"])


def test_pagination_is_stable_while_sessions_start_end_and_vanish(
    space: FakeSpace, client: httpx.Client
) -> None:
    created = [space.add_session(created_at=T0 - i) for i in range(6)]
    first = get(client, LIST, page_size=2, status="in-progress").json()
    space.add_session(created_at=T0 + 5)  # newer than the cursor: not on later pages
    space.delete_session(created[0])  # already served
    space.complete_session(created[3], cost_in_dollars=0.5)  # no longer matches the filter
    rest = get(client, first["links"]["next"]).json()
    last = get(client, rest["links"]["next"]).json()
    assert ids([first, rest, last]) == [created[i] for i in (0, 1, 2, 4, 5)]
    assert "next" not in last["links"]


def test_prev_link_returns_the_previous_page(space: FakeSpace, client: httpx.Client) -> None:
    for i in range(5):
        space.add_session(created_at=T0 - i)
    page0 = get(client, LIST, page_size=2).json()
    page1 = get(client, page0["links"]["next"]).json()
    page2 = get(client, page1["links"]["next"]).json()
    assert ids([get(client, page2["links"]["prev"]).json()]) == ids([page1])
    assert ids([get(client, page1["links"]["prev"]).json()]) == ids([page0])


def test_filters_select_sessions_and_are_carried_by_links(space: FakeSpace, client: httpx.Client) -> None:
    east = [space.add_session(name="Standup-East", created_at=T0 - i) for i in range(3)]
    west = space.add_session(name="standup-west")
    hands = space.add_session(name="all-hands")
    space.complete_session(east[2], cost_in_dollars=0.25)
    room_id = get(client, LIST + "/" + hands).json()["room_id"]

    def found(**params: Any) -> set[str]:
        return set(ids(collect(client, page_size=1, **params)))

    assert found(room_name="Standup-East") == set(east)
    assert found(room_name_matches="STANDUP") == {*east, west}
    assert found(room_name_matches="standup", status="completed") == {east[2]}
    assert found(status="in-progress") == {east[0], east[1], west, hands}
    assert found(room_id=room_id) == {hands}
    page = get(client, LIST, page_size=1, room_name_matches="up", status="in-progress").json()
    for link in page["links"].values():
        assert query_of(link)["room_name_matches"] == "up"
        assert query_of(link)["status"] == "in-progress"


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def script_history(space: FakeSpace) -> None:
    """Sessions in rooms a, b and nameless, many created in the same second, some completed,
    reopened or deleted, plus a raw record."""
    rng = random.Random(5)
    for _ in range(80):
        sid = space.add_session(
            id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            name=rng.choice(["a", "b", None]),
            created_at=T0 - rng.randrange(15),
        )
        if rng.random() < 0.5:
            space.complete_session(sid, cost_in_dollars=0.5)
            if rng.random() < 0.2:
                space.reopen_session(sid)
        if rng.random() < 0.1:
            space.delete_session(sid)
    space.add_raw_record({"id": "raw", "name": "a"}, created_at=T0 - 3.5)


@pytest.mark.parametrize(
    "params",
    [{}, {"status": "completed"}, {"room_name": "a", "status": "in-progress"}, {"room_name_matches": "B"}],
)
def test_pages_and_prev_links_match_a_full_sort_in_bulk_or_not(clock: Clock, params: dict[str, str]) -> None:
    listed: list[list[str]] = []
    for bulk in (False, True):
        with FakeSpace(PROJECT, TOKEN, clock=clock) as space:
            if bulk:
                with space.bulk():
                    script_history(space)
            else:
                script_history(space)
            truth = space.sessions()
            with httpx.Client(base_url=space.base_url, auth=(PROJECT, TOKEN)) as client:
                pages = [client.get(LIST, params={"page_size": 4, **params}).json()]
                while "next" in pages[-1]["links"] and len(pages) < 50:  # the raw record is not valid
                    pages.append(client.get(pages[-1]["links"]["next"]).json())
                for before, page in itertools.pairwise(pages):
                    assert ids([client.get(page["links"]["prev"]).json()]) == ids([before])
        listed.append(ids(pages))
    rows = [(epoch(r["created_at"]), r["id"], r["status"], r["name"]) for r in truth]
    rows.append((T0 - 3.5, "raw", "completed", "a"))
    status, room, part = params.get("status"), params.get("room_name"), params.get("room_name_matches")
    expected = [
        sid
        for _, sid, st, name in sorted(rows, reverse=True)
        if status in (None, st)
        and room in (None, name)
        and (part is None or (name is not None and part.lower() in name.lower()))
    ]
    assert listed[0] == listed[1] == expected


@pytest.mark.parametrize(
    ("params", "attribute", "code"),
    [
        ({"page_size": "0"}, "page_size", "page_size_is_invalid"),
        ({"page_size": "1001"}, "page_size", "page_size_is_invalid"),
        ({"page_size": "ten"}, "page_size", "page_size_is_invalid"),
        ({"status": "ended"}, "status", "status_is_invalid"),
        ({"page_number": "-1"}, "page_number", "page_number_is_invalid"),
        ({"page_number": "1"}, "page_token", "page_token_required"),
        ({"page_number": "1", "page_token": "PAgarbage!"}, "page_token", "page_token_is_invalid"),
        ({"page_number": "1", "page_token": "XYZ"}, "page_token", "page_token_is_invalid"),
    ],
)
def test_invalid_list_parameters_return_422(
    client: httpx.Client, params: dict[str, str], attribute: str, code: str
) -> None:
    response = get(client, LIST, **params)
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert (error["attribute"], error["code"]) == (attribute, code)


def test_get_serves_the_summary_form(space: FakeSpace, client: httpx.Client, clock: Clock) -> None:
    session = space.add_session(name="standup", max_members=25)
    clock.now += 90.6  # duration counts whole elapsed seconds
    live = get(client, LIST + "/" + session).json()
    summary_fields = set(SPEC["components"]["schemas"]["Video.RoomSessionSummary"]["required"])
    assert set(live) == summary_fields
    assert (live["status"], live["duration"], live["end_time"]) == ("in-progress", 90, None)
    clock.now += 10
    space.complete_session(session, cost_in_dollars=0.1234)
    clock.now += 1000
    done = get(client, LIST + "/" + session).json()
    assert (done["status"], done["duration"], done["max_members"]) == ("completed", 101, 25)
    assert "cost_in_dollars" not in done
    [listed] = get(client, LIST).json()["data"]
    assert listed["cost_in_dollars"] == 0.1234
    assert listed["end_time"] == done["end_time"] == "2026-11-18T11:08:20Z"


def test_every_record_shape_validates(space: FakeSpace, client: httpx.Client) -> None:
    space.add_session(name=None, quality=None, fps=None, max_members=None)
    space.add_session(quality="1080p", fps="20", preview_url="https://example.com/p.mp4")
    done = space.add_session(created_at=T0 - 1)
    space.complete_session(done, cost_in_dollars=0, duration=7)
    pages = collect(client, page_size=2)
    records = [record for page in pages for record in page["data"]]
    assert {r["status"] for r in records} == {"in-progress", "completed"}
    assert [r["room_id"] for r in records if r["name"] is None] == [None]
    assert all(get(client, LIST + "/" + r["id"]).status_code == 200 for r in records)


def test_in_progress_costs_zero_and_overrides_are_served_verbatim(
    space: FakeSpace, client: httpx.Client
) -> None:
    space.add_session(fps=20, quality="4k", cost_in_dollars=-1, surprise={"x": 1})
    space.add_session(created_at=T0 - 1)
    odd, normal = client.get(LIST).json()["data"]
    assert (odd["fps"], odd["quality"], odd["cost_in_dollars"]) == (20, "4k", -1)
    assert odd["surprise"] == {"x": 1}
    assert normal["cost_in_dollars"] == 0
    assert isinstance(normal["cost_in_dollars"], int)
    assert space.sessions() == [odd, normal]


def test_unknown_deleted_and_raw_records_are_404_on_get(space: FakeSpace, client: httpx.Client) -> None:
    gone = space.add_session()
    space.delete_session(gone)
    space.add_raw_record({"id": "raw-1", "status": 7}, status="completed", created_at=T0 - 5)
    for session_id in (gone, "raw-1", "00000000-0000-4000-8000-000000000000"):
        response = get(client, LIST + "/" + session_id)
        assert response.status_code == 404
        assert response.json() == {"error": "Not Found"}
    assert client.get("/api/video/rooms").json() == {"error": "Not Found"}
    assert client.get("/api/video/rooms").status_code == 404


def test_raw_records_are_listed_for_their_status_in_creation_order(
    space: FakeSpace, client: httpx.Client
) -> None:
    for i in range(3):
        space.complete_session(space.add_session(created_at=T0 - 10 * i), cost_in_dollars=1)
    space.add_raw_record({"id": "raw", "duration": "long"}, created_at=T0 - 15)
    completed = [r["id"] for r in client.get(LIST, params={"status": "completed"}).json()["data"]]
    live = client.get(LIST, params={"status": "in-progress"}).json()["data"]
    assert completed.index("raw") == 2
    assert live == []
    assert len(space.sessions()) == 3


def test_fail_next_precedes_auth_and_counts_down(space: FakeSpace) -> None:
    space.fail_next(500, times=2)
    url = space.base_url + LIST
    for _ in range(2):
        response = httpx.get(url)
        assert response.status_code == 500
        assert response.json() == {"error": "Internal Server Error"}
        validate_response(response)
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, auth=(PROJECT, TOKEN)).status_code == 200


def test_fail_next_targets_one_endpoint_with_a_verbatim_body(space: FakeSpace, client: httpx.Client) -> None:
    session = space.add_session()
    space.fail_next(502, body=b"<html>bad gateway</html>", endpoint="list")
    space.fail_next(429, headers={"Retry-After": "3"}, endpoint="get")
    assert client.get(LIST + "/" + session).status_code == 429
    response = client.get(LIST)
    assert (response.status_code, response.text) == (502, "<html>bad gateway</html>")
    limited = space.requests[-2]
    assert limited.path == LIST + "/" + session
    assert get(client, LIST).status_code == 200
    assert get(client, LIST + "/" + session).status_code == 200


def test_fail_next_429_default_body_and_headers(space: FakeSpace) -> None:
    space.fail_next(429, headers={"Retry-After": "3"})
    response = httpx.get(space.base_url + LIST)
    assert (response.status_code, response.headers["retry-after"]) == (429, "3")
    validate("#/components/schemas/VideoStatusCode422", response.json())
    assert response.json()["errors"][0]["code"] == "rate_limit_exceeded"


def test_next_link_hook_replaces_or_omits_next(space: FakeSpace, client: httpx.Client) -> None:
    for i in range(3):
        space.add_session(created_at=T0 - i)
    seen: list[str] = []

    def hook(link: str) -> str | None:
        seen.append(link)
        return None if len(seen) > 1 else "https://elsewhere.example/x"

    space.next_link_hook = hook
    assert get(client, LIST, page_size=2).json()["links"]["next"] == "https://elsewhere.example/x"
    assert "next" not in get(client, LIST, page_size=2).json()["links"]
    assert query_of(seen[0])["page_number"] == "1"
    assert "next" not in get(client, LIST, page_size=3).json()["links"]
    assert len(seen) == 2  # not called when no page follows


def test_requests_are_recorded(space: FakeSpace, client: httpx.Client) -> None:
    client.get(LIST, params={"status": "completed", "page_size": 5}, headers={"X-Probe": "1"})
    [request] = space.requests
    assert (request.method, request.path) == ("GET", LIST)
    assert request.query == {"status": "completed", "page_size": "5"}
    assert request.headers["x-probe"] == "1"
    assert request.headers["authorization"].startswith("Basic ")


def test_latency_holds_answers_while_scripted_changes_go_on(space: FakeSpace, client: httpx.Client) -> None:
    space.latency = 3600.0  # cut short by stop()
    later = "00000000-0000-4000-8000-000000000001"
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(client.get, LIST + "/" + later)
        assert until(lambda: space.in_flight == 1 and len(space.requests) == 1)
        assert not answer.done()
        space.add_session(id=later)  # after the request arrived, before it is answered
        space.stop()
        response = answer.result(timeout=10)
    assert (response.status_code, response.json()["id"]) == (200, later)


def test_traffic_keeps_sessions_flowing_and_stops() -> None:
    with FakeSpace(seed=3) as space:
        space.run_traffic(tick=0.01, target_active=8, mean_duration=0.3)
        seeded = {r["id"] for r in space.sessions()}

        def new_ones_completed() -> int:
            return sum(r["status"] == "completed" and r["id"] not in seeded for r in space.sessions())

        assert until(lambda: new_ones_completed() >= 3)  # started and ended after the seeding
        with httpx.Client(base_url=space.base_url, auth=("demo-project", "demo-token")) as c:
            live = c.get(LIST, params={"status": "in-progress", "page_size": 1000}).json()["data"]
        records = space.sessions()
    assert 1 <= len(live) <= 30
    completed = [r for r in records if r["status"] == "completed"]
    assert all(r["cost_in_dollars"] > 0 for r in completed)
    assert all(round(r["cost_in_dollars"], 4) == r["cost_in_dollars"] for r in completed)
    assert {r["fps"] for r in records} <= {"20", "30", 20}
    assert {r["quality"] for r in records} <= {"720p", "1080p", None}
    assert all(5 <= r["max_members"] <= 100 for r in records)
    assert 3 <= len({r["name"] for r in records}) <= 8


def test_traffic_is_seeded(clock: Clock) -> None:
    def history(seed: int) -> list[tuple[dict[str, Any], list[Any], list[Any]]]:
        space = FakeSpace(clock=clock, seed=seed)
        space.run_traffic(tick=60, target_active=5)
        space.stop()
        return [(r, space.members(r["id"]), space.recordings(r["id"])) for r in space.sessions()]

    first = history(1)
    assert first == history(1)
    assert first != history(2)
    assert [r["status"] for r, _, _ in first].count("in-progress") == 5
    assert [r["status"] for r, _, _ in first].count("completed") >= 1
    assert sum(len(members) for _, members, _ in first) > len(first)


def test_traffic_starts_with_live_sessions_ending_as_it_starts(clock: Clock) -> None:
    """So that a first poll (``--demo --once``) already counts completed sessions."""
    space = FakeSpace(clock=clock, seed=7)
    with pytest.raises(RuntimeError):
        _ = space.traffic_started
    space.run_traffic(tick=60, target_active=5)
    space.stop()
    assert space.traffic_started == T0
    completed = [r for r in space.sessions() if r["status"] == "completed"]
    ended_now = [r for r in completed if epoch(r["end_time"]) == T0]
    assert len(ended_now) == ENDED_AT_START >= 1
    assert all(epoch(r["start_time"]) < T0 and r["cost_in_dollars"] > 0 for r in ended_now)
    assert all(epoch(r["end_time"]) < T0 - 1 for r in completed if r not in ended_now)  # older history


def test_connections_send_answers_without_nagle_delay() -> None:
    """Headers and body go out in two writes: with Nagle's algorithm on, the body would wait for
    the client's delayed ACK (~40 ms per request), so every connection sets TCP_NODELAY."""
    nodelay: list[int] = []

    class Probe(RequestHandler):
        def setup(self) -> None:
            super().setup()
            nodelay.append(self.connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    class ProbedSpace(SimulatedSpace):
        handler = Probe

    with ProbedSpace(PROJECT, TOKEN) as space, httpx.Client(auth=(PROJECT, TOKEN)) as client:
        assert [client.get(space.base_url + LIST).status_code for _ in range(3)] == [200] * 3
    assert len(nodelay) == 1  # one kept-alive connection
    assert nodelay[0] != 0


def test_stop_is_idempotent_and_drops_kept_alive_connections(space: FakeSpace, client: httpx.Client) -> None:
    session = space.add_session()
    assert client.get(LIST + "/" + session).status_code == 200
    space.stop()
    space.stop()
    with pytest.raises(httpx.TransportError):
        client.get(LIST + "/" + session)
    with pytest.raises(RuntimeError):
        _ = space.base_url


def test_stop_traffic_freezes_the_sessions_and_keeps_serving() -> None:
    with FakeSpace(seed=4) as space:
        space.run_traffic(tick=0.01, target_active=8, mean_duration=0.2)
        seeded = len(space.sessions())
        assert until(lambda: len(space.sessions()) > seeded)
        space.stop_traffic()
        frozen = space.sessions()
        time.sleep(0.2)
        assert [r["id"] for r in space.sessions()] == [r["id"] for r in frozen]
        with httpx.Client(base_url=space.base_url, auth=("demo-project", "demo-token")) as c:
            assert c.get(LIST, params={"status": "completed"}).status_code == 200
        space.run_traffic(tick=0.01, target_active=8, mean_duration=0.2)  # can start again


# --- members and recordings of a session ----------------------------------------------------------


def child_path(session_id: str, child: str) -> str:
    return f"{LIST}/{session_id}/{child}"


@pytest.mark.parametrize("child", ["members", "recordings"])
def test_children_paginate_newest_first_with_links_to_their_listing(
    space: FakeSpace, client: httpx.Client, child: str
) -> None:
    session = space.add_session(created_at=T0 - 100)
    other = space.add_session(created_at=T0 - 100)
    add = space.add_member if child == "members" else space.add_recording
    start = "join_time" if child == "members" else "started_at"
    created = [add(session, **{start: T0 - 50 + i}) for i in range(5)]
    add(other)
    path = child_path(session, child)
    pages = collect(client, path, page_size=2)
    assert ids(pages) == created[::-1]
    assert [len(page["data"]) for page in pages] == [2, 2, 1]
    assert all(link.startswith(space.base_url + path + "?") for p in pages for link in p["links"].values())
    assert ids([get(client, pages[2]["links"]["prev"]).json()]) == ids([pages[1]])
    assert {record["room_session_id"] for record in pages[0]["data"]} == {session}
    assert [r["id"] for r in getattr(space, child)(session)] == created[::-1]
    assert len(get(client, path).json()["data"]) == 5  # default page size 50
    assert get(client, child_path(other, child)).json()["links"].keys() == {"self", "first"}


@pytest.mark.parametrize("child", ["members", "recordings"])
def test_children_of_unknown_sessions_are_404_and_bad_pages_422(
    space: FakeSpace, client: httpx.Client, child: str
) -> None:
    gone = space.add_session()
    space.delete_session(gone)
    for session in (gone, "00000000-0000-4000-8000-000000000000"):
        response = client.get(child_path(session, child))
        assert (response.status_code, response.json()) == (404, {"error": "Not Found"})
        validate("#/components/schemas/Types.StatusCodes.StatusCode404", response.json(), VIDEO_SPEC_URI)
    live = space.add_session()
    for params, attribute in (({"page_size": "1001"}, "page_size"), ({"page_number": "1"}, "page_token")):
        response = get(client, child_path(live, child), **params)
        assert response.status_code == 422
        assert response.json()["errors"][0]["attribute"] == attribute
    # the sessions list's filters mean nothing here
    assert get(client, child_path(live, child), status="ended").status_code == 200
    assert client.get(f"{LIST}/{live}/other").status_code == 404


def test_a_member_joins_stays_and_leaves(space: FakeSpace, client: httpx.Client, clock: Clock) -> None:
    session = space.add_session(start_time=T0, created_at=T0)
    early = space.add_member(session, name="Ada")
    never = space.add_member(session, name=None, join_time=None)
    late = space.add_member(session, join_time=T0 + 10)
    clock.now = T0 + 5.7
    path = child_path(session, "members")
    served = {r["id"]: r for r in get(client, path).json()["data"]}
    assert set(served) == {early, never}  # the late one is not there yet
    assert served[early] == {
        "id": early,
        "room_session_id": session,
        "name": "Ada",
        "join_time": "2026-11-18T11:06:40Z",
        "leave_time": None,
        "duration": 5,
        "cost_in_dollars": 0,
    }
    assert (served[never]["join_time"], served[never]["duration"], served[never]["name"]) == (
        None,
        None,
        None,
    )
    clock.now = T0 + 100
    space.update_member(early, leave_time=T0 + 60)
    space.complete_session(session, cost_in_dollars=0.01, end_time=T0 + 90)
    served = {r["id"]: r for r in get(client, path).json()["data"]}
    assert (served[early]["leave_time"], served[early]["duration"]) == ("2026-11-18T11:07:40Z", 60)
    assert served[early]["cost_in_dollars"] == round(0.0035 * 60 / 60, 4) == 0.0035
    assert (served[late]["leave_time"], served[late]["duration"]) == ("2026-11-18T11:08:10Z", 80)
    assert served[never]["leave_time"] is None and served[never]["cost_in_dollars"] == 0
    assert space.members(session) == get(client, path).json()["data"]


def test_a_recording_records_processes_and_completes(
    space: FakeSpace, client: httpx.Client, clock: Clock
) -> None:
    session = space.add_session(start_time=T0, created_at=T0, quality="1080p")
    slow = space.add_recording(session, processing=30)
    stuck = space.add_recording(session, started_at=T0 + 10, processing=math.inf)
    path = child_path(session, "recordings")

    def served() -> dict[str, dict[str, Any]]:
        return {r["id"]: r for r in get(client, path).json()["data"]}

    clock.now = T0 + 20
    assert [r["status"] for r in served().values()] == ["recording", "recording"]
    assert served()[slow]["finished_at"] is None and served()[slow]["cost_in_dollars"] == 0
    space.complete_session(session, cost_in_dollars=0.5, end_time=T0 + 120)
    clock.now = T0 + 130
    processing = served()[slow]
    assert (processing["status"], processing["duration"], processing["size_in_bytes"]) == (
        "processing",
        120,
        None,
    )
    assert processing["finished_at"] == "2026-11-18T11:08:40Z"
    clock.now = T0 + 150
    done = served()[slow]
    assert (done["status"], done["duration"], done["format"]) == ("completed", 120, "video/mp4")
    assert done["size_in_bytes"] == 120 * 375_000
    assert done["cost_in_dollars"] == round(0.0045 * 2, 4)
    assert done["updated_at"] == "2026-11-18T11:09:10Z"
    assert served()[stuck]["status"] == "processing"
    space.update_recording(stuck, processing=0, size_in_bytes=None)
    assert (served()[stuck]["status"], served()[stuck]["size_in_bytes"]) == ("completed", None)
    assert served()[stuck]["duration"] == 110


def test_raw_children_are_listed_verbatim_but_are_no_ground_truth(
    space: FakeSpace, client: httpx.Client
) -> None:
    session = space.add_session()
    member = space.add_member(session, duration=-5)
    space.add_raw_member(session, {"id": "raw-member", "join_time": "yesterday"})
    space.add_raw_recording(session, {"status": "completed"})
    members = client.get(child_path(session, "members")).json()["data"]
    assert {r["id"] for r in members} == {member, "raw-member"}
    assert [r["duration"] for r in members if r["id"] == member] == [-5]
    assert client.get(child_path(session, "recordings")).json()["data"] == [{"status": "completed"}]
    assert [r["id"] for r in space.members(session)] == [member]
    assert space.recordings(session) == []
    with pytest.raises(KeyError):
        space.add_raw_member("no-such-session", {"id": "x"})


def test_a_replaced_session_starts_without_members(space: FakeSpace, client: httpx.Client) -> None:
    session = space.add_session()
    space.add_member(session)
    space.add_recording(session)
    space.add_session(id=session)
    assert space.members(session) == space.recordings(session) == []
    assert get(client, child_path(session, "members")).json()["data"] == []


def test_fail_next_targets_members_or_recordings(space: FakeSpace, client: httpx.Client) -> None:
    session = space.add_session()
    space.fail_next(503, endpoint="members")
    space.fail_next(500, endpoint="recordings")
    assert client.get(LIST).status_code == 200
    assert client.get(LIST + "/" + session).status_code == 200
    assert client.get(child_path(session, "recordings")).status_code == 500
    assert client.get(child_path(session, "members")).status_code == 503
    assert client.get(child_path(session, "members")).status_code == 200
    assert [r.path.rpartition("/")[2] for r in space.requests[-3:]] == ["recordings", "members", "members"]


def demo_people(space: FakeSpace) -> list[tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]]:
    """Every session of ``space`` with its members and recordings, these read over HTTP and checked
    against the spec (the demo's sessions serve fps 20 as well as "30", which the spec refuses)."""
    with httpx.Client(base_url=space.base_url, auth=("demo-project", "demo-token")) as c:
        return [
            (
                s,
                [r for page in collect(c, child_path(s["id"], "members")) for r in page["data"]],
                [r for page in collect(c, child_path(s["id"], "recordings")) for r in page["data"]],
            )
            for s in space.sessions()
        ]


def peak(members: list[dict[str, Any]]) -> int:
    """The most members present at once."""
    changes = sorted(
        change
        for m in members
        if m["join_time"] is not None
        for change in ((epoch(m["join_time"]), 1), (epoch(m["leave_time"] or "9999-01-01T00:00:00Z"), -1))
    )
    return max(itertools.accumulate(delta for _, delta in changes), default=0)


def test_demo_people_come_and_go_within_their_sessions(clock: Clock) -> None:
    with FakeSpace(clock=clock, seed=11) as space:
        space.run_traffic(tick=3600, target_active=30, mean_duration=120)
        history = demo_people(space)
        assert len(history) == 30 + ENDED_AT_START + 5
        for session, members, _ in history:
            start, end = epoch(session["start_time"]), session["end_time"] and epoch(session["end_time"])
            joined = [m for m in members if m["join_time"] is not None]
            assert peak(members) <= session["max_members"]
            for m in joined:
                assert start <= epoch(m["join_time"]) <= (end or T0)
                if m["leave_time"] is None:  # present: duration so far (the times are whole seconds)
                    assert session["status"] == "in-progress"
                    assert 0 <= T0 - epoch(m["join_time"]) - m["duration"] < 2
                else:
                    left = epoch(m["leave_time"])
                    assert epoch(m["join_time"]) <= left <= (end or T0)
                    assert m["cost_in_dollars"] == round(0.0035 * m["duration"] / 60, 4)
            if session["status"] == "completed":
                assert all(m["leave_time"] is not None for m in joined)
                minutes = sum(m["duration"] for m in joined) / 60
                assert session["cost_in_dollars"] == pytest.approx(
                    0.0035 * minutes, abs=0.0001 + 0.0035 / 60 * len(joined)
                )
        assert sum(peak(members) > 0 for _, members, _ in history) > 0.9 * len(history)
        assert any(peak(members) == s["max_members"] for s, members, _ in history)  # rooms that filled up
        assert any(m["leave_time"] is None for s, ms, _ in history for m in ms if m["join_time"] is not None)
        never = [m for _, members, _ in history for m in members if m["join_time"] is None]
        assert 0 < len(never) < len(history)
        assert all(m["duration"] is None and m["leave_time"] is None for m in never)
        recorded = [s for s, _, recordings in history if recordings]
        assert 0 < len(recorded) < len(history)


def test_demo_recordings_record_then_process_then_complete(clock: Clock) -> None:
    with FakeSpace(clock=clock, seed=11) as space:
        space.run_traffic(tick=3600, target_active=30, mean_duration=120)
        history = demo_people(space)
        ended_now = [rs for s, _, rs in history if s["end_time"] and epoch(s["end_time"]) == T0]
        statuses = {r["id"]: r["status"] for _, _, rs in history for r in rs}
        clock.now += 2 * 120  # every recording of an ended session is processed by then
        later = demo_people(space)
    assert len(ended_now) == ENDED_AT_START
    first_halves = [min(rs, key=lambda r: r["finished_at"] or "~") for rs in ended_now]
    assert sorted(r["status"] for r in first_halves) == ["completed"] + ["processing"] * (ENDED_AT_START - 1)
    for session, _, recordings in history:
        expected = {"recording"} if session["status"] == "in-progress" else {"processing", "completed"}
        assert {r["status"] for r in recordings} <= expected
    assert {"recording", "processing", "completed"} <= set(statuses.values())
    for session, _, recordings in later:
        for r in recordings:
            if session["status"] == "completed":
                assert r["status"] == "completed"
                assert r["size_in_bytes"] > 0 and r["format"] == "video/mp4" and r["cost_in_dollars"] > 0
                assert epoch(r["started_at"]) <= epoch(r["finished_at"]) <= epoch(session["end_time"])
                assert (
                    abs(r["duration"] - (epoch(r["finished_at"]) - epoch(r["started_at"]))) <= 1
                )  # whole seconds
            else:
                assert (r["status"], r["finished_at"], r["size_in_bytes"]) == ("recording", None, None)


# --- video logs -------------------------------------------------------------------------------------


def iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def test_logs_paginate_newest_first_with_links_to_their_listing(
    space: FakeSpace, client: httpx.Client
) -> None:
    created = [space.add_session(created_at=T0 - 60 * i) for i in range(5)]
    same_second = [space.add_session(created_at=T0 - 600) for _ in range(3)]
    pages = collect(client, LOGS, page_size=2)
    expected = [space.log_of(s) for s in created] + sorted(
        (space.log_of(s) for s in same_second), reverse=True
    )
    assert ids(pages) == expected == [log["id"] for log in space.logs()]
    assert [len(page["data"]) for page in pages] == [2, 2, 2, 2]
    assert all(link.startswith(space.base_url + LOGS + "?") for p in pages for link in p["links"].values())
    assert ids([get(client, pages[2]["links"]["prev"]).json()]) == ids([pages[1]])
    assert len(get(client, LOGS).json()["data"]) == 8  # default page size 50


def test_a_session_log_follows_its_session(space: FakeSpace, client: httpx.Client, clock: Clock) -> None:
    session = space.add_session(
        name="standup", start_time=T0, created_at=T0, quality="1080p", record_on_start=True
    )
    clock.now = T0 + 5
    [live] = get(client, LOGS).json()["data"]
    assert live == {
        "id": space.log_of(session),
        "source": "realtime_api",
        "type": "video_room_session",
        "url": f"{space.base_url}{LIST}/{session}",
        "room_name": "standup",
        "status": "in-progress",
        "locked": False,
        "started_at": "2026-11-18T11:06:40Z",
        "ended_at": None,
        "charge": 0,
        "charge_details": [],
        "created_at": "2026-11-18T11:06:40Z",
    }
    space.complete_session(session, cost_in_dollars=0.1237, end_time=T0 + 120)
    [done] = get(client, LOGS).json()["data"]
    assert {k: v for k, v in done.items() if live[k] != v} == {
        "status": "completed",
        "ended_at": "2026-11-18T11:08:40Z",
        "charge": 0.1237,
        "charge_details": [
            {"description": "Video room session minutes", "charge": 0.0619},
            {"description": "Video recording", "charge": 0.0371},
            {"description": "Video room session 1080p surcharge", "charge": 0.0247},
        ],
    }
    assert space.logs() == [done]
    space.reopen_session(session)
    assert get(client, LOGS).json()["data"] == [live]


@pytest.mark.parametrize("cost", [0, 0.0001, 0.0003, 0.0049, 0.1237, 0.3, 1.9999, 12.3456, 999_999.9999])
def test_charge_details_add_up_to_the_charge(space: FakeSpace, client: httpx.Client, cost: float) -> None:
    full = space.add_session(quality="1080p", record_on_start=True, created_at=T0)
    plain = space.add_session(quality="720p", created_at=T0 - 1)
    for session in (full, plain):
        space.complete_session(session, cost_in_dollars=cost)
    full_log, plain_log = get(client, LOGS).json()["data"]
    parts = [d["charge"] for d in full_log["charge_details"]]
    assert full_log["charge"] == cost
    assert sum(Decimal(str(part)) for part in parts) == Decimal(str(cost))
    assert all(part >= 0 and round(part, 4) == part for part in parts)
    assert plain_log["charge_details"] == [{"description": "Video room session minutes", "charge": cost}]


def test_a_charge_too_large_to_split_is_one_part(space: FakeSpace, client: httpx.Client) -> None:
    space.complete_session(space.add_session(record_on_start=True), cost_in_dollars=1e308)
    [log] = get(client, LOGS).json()["data"]
    assert log["charge_details"] == [{"description": "Video room session minutes", "charge": 1e308}]


D = 1_794_960_000  # 2026-11-18T00:00:00Z
AROUND_A_DAY = (D - 1, D, D + 0.5, D + 1, D + 86399, D + 86400)


@pytest.mark.parametrize(
    ("params", "created"),
    [
        ({"created_after": iso(D)}, [D + 1, D + 86399, D + 86400]),  # D + 0.5 is served as D
        ({"created_after": "2026-11-18"}, [D + 1, D + 86399, D + 86400]),
        ({"created_after": "2026-11-18T00:00:00.5"}, [D + 1, D + 86399, D + 86400]),  # naive: UTC
        ({"created_before": iso(D + 1)}, [D - 1, D, D + 0.5]),
        ({"created_before": "2026-11-18T01:00:01+01:00"}, [D - 1, D, D + 0.5]),
        ({"created_before": "2026-11-18T00:00:00.5Z"}, [D - 1, D, D + 0.5]),
        ({"created_on": "2026-11-18"}, [D, D + 0.5, D + 1, D + 86399]),
        ({"created_on": "2026-11-18T15:00:00Z"}, [D, D + 0.5, D + 1, D + 86399]),
        ({"created_on": "2026-11-18T23:30:00-05:00"}, [D + 86400]),  # the 19th in UTC
        ({"created_after": iso(D), "created_before": iso(D + 86400)}, [D + 1, D + 86399]),
        ({"created_on": "2026-11-18", "created_after": iso(D + 1)}, [D + 86399]),
        ({"created_after": iso(D + 86400)}, []),
    ],
)
def test_logs_filter_by_creation_time_as_served(
    space: FakeSpace, client: httpx.Client, params: dict[str, str], created: list[float]
) -> None:
    log_at = {at: space.log_of(space.add_session(created_at=at)) for at in AROUND_A_DAY}
    pages = collect(client, LOGS, page_size=2, **params)
    assert ids(pages) == [log_at[at] for at in reversed(created)]
    for before, page in itertools.pairwise(pages):
        previous = get(client, page["links"]["prev"]).json()
        assert (ids([previous]), previous["links"].keys()) == (ids([before]), before["links"].keys())
    assert all(query_of(link).items() >= params.items() for page in pages for link in page["links"].values())


def test_pages_stay_within_the_times_when_logs_vanish_or_tokens_come_from_elsewhere(
    space: FakeSpace, client: httpx.Client
) -> None:
    logs = [space.log_of(space.add_session(created_at=T0 - i)) for i in range(5)]
    pages = collect(client, LOGS, page_size=1, created_after=iso(T0 - 4), created_before=iso(T0))
    assert ids(pages) == logs[1:4]
    unfiltered = collect(client, LOGS, page_size=1)
    newest, oldest = unfiltered[0]["links"]["next"], unfiltered[-1]["links"]["prev"]  # at logs[0], logs[4]
    narrowed = f"{newest}&{urlencode({'created_before': iso(T0 - 2)})}"  # logs[1] is created too late
    assert ids([get(client, narrowed).json()]) == [logs[3]]
    narrowed = f"{oldest}&{urlencode({'created_after': iso(T0 - 3)})}"  # logs[3] is created too early
    assert ids([get(client, narrowed).json()]) == [logs[2]]
    space.delete_log(logs[1])
    space.delete_log(logs[3])
    assert get(client, pages[1]["links"]["prev"]).json()["data"] == []  # not logs[0], created too late
    previous = get(client, pages[2]["links"]["prev"]).json()
    assert ids([previous]) == [logs[2]]
    assert "next" not in previous["links"]  # logs[4] is older, but created too early


@pytest.mark.parametrize(
    ("params", "attribute", "code"),
    [
        ({"created_after": "yesterday"}, "created_after", "created_after_is_invalid"),
        ({"created_before": "2026-02-30"}, "created_before", "created_before_is_invalid"),
        ({"created_on": "18/11/2026"}, "created_on", "created_on_is_invalid"),
        ({"include_deleted": "maybe"}, "include_deleted", "include_deleted_is_invalid"),
        ({"page_size": "1001"}, "page_size", "page_size_is_invalid"),
        ({"page_number": "1"}, "page_token", "page_token_required"),
    ],
)
def test_invalid_log_parameters_return_422(
    client: httpx.Client, params: dict[str, str], attribute: str, code: str
) -> None:
    response = get(client, LOGS, **params)
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert (error["attribute"], error["code"]) == (attribute, code)


def test_deleted_logs_are_listed_only_with_include_deleted(
    space: FakeSpace, client: httpx.Client, clock: Clock
) -> None:
    logs = [space.log_of(space.add_session(created_at=T0 - i)) for i in range(3)]
    clock.now = T0 + 10
    space.delete_log(logs[1])
    space.delete_log(logs[1])  # already deleted: no change
    assert (
        ids(collect(client, LOGS))
        == ids(collect(client, LOGS, include_deleted="false"))
        == [logs[0], logs[2]]
    )
    pages = collect(client, LOGS, page_size=1, include_deleted="true")
    assert ids(pages) == logs
    assert pages[1]["data"] == [
        {"id": logs[1], "discarded_at": "2026-11-18T11:06:50Z", "created_at": iso(T0 - 1)}
    ]
    assert all(
        query_of(link)["include_deleted"] == "true" for page in pages for link in page["links"].values()
    )
    assert space.logs(include_deleted=True) == [record for page in pages for record in page["data"]]
    assert [log["id"] for log in space.logs()] == [logs[0], logs[2]]


def test_scripted_logs_are_served_verbatim_and_raw_ones_are_no_ground_truth(
    space: FakeSpace, client: httpx.Client
) -> None:
    kept, gone, replaced = (space.add_session(created_at=T0 - i) for i in range(3))
    space.complete_session(kept, cost_in_dollars=0.25)
    space.update_log(space.log_of(kept), charge=0.5, status=None, ended_at=None)
    space.add_raw_log({"id": "raw", "charge": "lots"}, created_at=T0 - 1.5)
    space.delete_session(gone)  # its log stays
    old = space.log_of(replaced)
    space.add_session(id=replaced, created_at=T0 - 3)  # a new session, with a new log
    served = client.get(LOGS).json()["data"]
    assert [log["id"] for log in served] == [
        space.log_of(kept),
        space.log_of(gone),
        "raw",
        space.log_of(replaced),
    ]
    assert old != space.log_of(replaced)
    assert (served[0]["charge"], served[0]["status"], served[0]["ended_at"]) == (0.5, None, None)
    assert served[0]["charge_details"][0]["charge"] == 0.25
    assert served[1]["url"].endswith(f"{LIST}/{gone}")
    assert served[2] == {"id": "raw", "charge": "lots"}
    assert space.logs() == [served[0], served[1], served[3]]


def test_logs_point_at_the_space_host_until_it_serves(clock: Clock) -> None:
    space = FakeSpace(clock=clock, host_name="acme.signalwire.com")
    session = space.add_session()
    assert space.logs()[0]["url"] == f"https://acme.signalwire.com{LIST}/{session}"
    with space:
        assert space.logs()[0]["url"] == f"{space.base_url}{LIST}/{session}"


def test_fail_next_targets_logs(space: FakeSpace, client: httpx.Client) -> None:
    space.add_session()
    space.fail_next(503, endpoint="logs")
    assert client.get(LIST).status_code == 200
    assert client.get(LOGS).status_code == 503
    assert client.get(LOGS).status_code == 200


def demo_logs(seed: int, clock: Clock, **shares: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The sessions and the logs (read over HTTP, checked against the spec, urls without the origin)
    of a demo seeded with ``seed``, with the given mismatch and conference shares."""
    with FakeSpace(clock=clock, seed=seed) as space:
        for name, share in shares.items():
            setattr(space, name, share)
        space.run_traffic(tick=3600, target_active=30, mean_duration=120)
        with httpx.Client(base_url=space.base_url, auth=("demo-project", "demo-token")) as c:
            logs = [r for page in collect(c, LOGS, page_size=7) for r in page["data"]]
        for log in logs:
            log["url"] = log["url"].removeprefix(space.base_url)
        return space.sessions(), logs


def test_demo_logs_bill_every_session_with_a_few_mismatches_and_conferences(clock: Clock) -> None:
    sessions, logs = demo_logs(11, clock, mismatch_share=0.25, conference_share=0.25)
    by_session = {
        log["url"].removeprefix(LIST + "/"): log for log in logs if log["type"] == "video_room_session"
    }
    assert by_session.keys() == {s["id"] for s in sessions}
    mismatches = 0
    for s in sessions:
        log = by_session[s["id"]]
        assert (log["room_name"], log["status"], log["created_at"]) == (
            s["name"],
            s["status"],
            s["created_at"],
        )
        assert (log["started_at"], log["ended_at"]) == (s["start_time"], s["end_time"])
        if s["status"] == "in-progress":
            assert (log["charge"], log["charge_details"]) == (0, [])
        elif log["charge"] != s["cost_in_dollars"]:
            assert log["charge"] == round(s["cost_in_dollars"] + 0.01, 4)
            mismatches += 1
    completed = sum(s["status"] == "completed" for s in sessions)
    assert 0 < mismatches < completed
    conferences = [log for log in logs if log["type"] == "video_conference_session"]
    assert 0 < len(conferences) < len(sessions)
    assert all(log["url"].startswith("/api/video/conferences/") for log in conferences)
    assert len(logs) == len(sessions) + len(conferences)
    assert demo_logs(11, clock, mismatch_share=0.25, conference_share=0.25) == (sessions, logs)  # seeded
    assert demo_logs(12, clock, mismatch_share=0.25, conference_share=0.25)[1] != logs


def test_demo_logs_leave_the_sessions_as_they_were(clock: Clock) -> None:
    """The logs draw from their own random stream: the demo's sessions do not depend on them."""
    sessions, logs = demo_logs(11, clock)
    quiet_sessions, quiet_logs = demo_logs(11, clock, mismatch_share=0, conference_share=0)
    assert sessions == quiet_sessions
    assert {log["type"] for log in quiet_logs} == {"video_room_session"}
    assert len(logs) >= len(quiet_logs) == len(sessions)


@pytest.mark.parametrize(("share", "mismatches"), [(0.0, 0), (1e-12, 1)])
def test_the_first_session_the_demo_traffic_ends_is_a_mismatch_unless_there_are_none(
    share: float, mismatches: int
) -> None:
    """So that the demo's mismatch panels and alert show one within its first minute (here: the first
    to end 50 ms after traffic began; a share too small for any other: that one is the only one)."""
    with FakeSpace(seed=3) as space:
        space.mismatch_share, space.first_mismatch_after = share, 0.05
        space.run_traffic(tick=0.01, target_active=8, mean_duration=0.3)
        seeded = sum(s["status"] == "completed" for s in space.sessions())
        assert until(lambda: sum(s["status"] == "completed" for s in space.sessions()) >= seeded + 5)
        space.stop_traffic()
        costs = {s["id"]: s["cost_in_dollars"] for s in space.sessions() if s["status"] == "completed"}
        charges = {log["url"].rsplit("/", 1)[1]: log["charge"] for log in space.logs()}
    overcharged = [sid for sid, cost in costs.items() if charges[sid] == round(cost + 0.01, 4)]
    assert len(overcharged) == mismatches
    assert all(charges[sid] == cost for sid, cost in costs.items() if sid not in overcharged)


def test_demo_conferences_end_and_are_charged() -> None:
    with FakeSpace(seed=3) as space:
        space.conference_share = 1.0
        space.run_traffic(tick=0.01, target_active=8, mean_duration=0.3)

        def charged() -> list[dict[str, Any]]:
            return [
                log
                for log in space.logs()
                if log["type"] == "video_conference_session" and log["status"] == "completed"
            ]

        assert until(lambda: len(charged()) >= 2)
        space.stop_traffic()
        done = charged()
    for log in done:
        assert log["charge"] >= 0.0001 and epoch(log["ended_at"]) >= epoch(log["started_at"])
        assert log["charge_details"] == [
            {"description": "Video conference session charge", "charge": log["charge"]}
        ]
        validate("#/components/schemas/Video.Log", log, VIDEO_SPEC_URI)
