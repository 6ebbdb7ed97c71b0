"""Faults and hostile data from the API, over real HTTP against the simulated space.

Transport faults (resets, truncated and dripping bodies, oversized bodies, 429 storms, 5xx
bursts, HTML pages, bad links), the recovery of the very next poll after each, sequential
requests per space, spec-valid but hostile records, and bounded label values.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import threading
import time
from collections.abc import Callable

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter import BUILD_LABELS, api
from exporter.api import ApiError
from exporter.models import decode_page
from exporter.snapshot import (
    COST_SOURCES,
    DEFERRED_WORK,
    FPS_LABELS,
    PERIODS,
    POLL_ERROR_REASONS,
    QUALITY_LABELS,
    REQUEST_CODES,
    SKIP_REASONS,
)

from .support.fake_api import FakeSpace
from .test_api import _all, _client
from .test_poller import Exporter, qf


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _page(n: int = 20) -> bytes:
    return json.dumps(
        {"links": {}, "data": [{"id": f"s{i}", "created_at": _iso(0)} for i in range(n)]}
    ).encode()


# --- the API client ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["reset", "truncate"])
def test_resets_and_truncated_bodies_are_retried_as_network_errors(sim: FakeSpace, kind: str) -> None:
    sid = sim.add_session()
    sim.fail_next(200, body=_page(), kind=kind, times=2)  # type: ignore[arg-type]
    client = _client(sim)
    assert _all(client) == [sid]
    assert client.observe.counts == {("list", "error"): 2, ("list", "200"): 1}
    sim.fail_next(200, body=_page(), kind=kind, times=1000)  # type: ignore[arg-type]
    with pytest.raises(ApiError) as info:
        _all(client, seconds=1.5)
    assert info.value.reason == "network"


def test_a_dripping_body_is_cut_at_the_request_deadline(sim: FakeSpace) -> None:
    # one byte every 50 ms: each read is far below the 0.5 s read timeout, the body takes ~30 s
    sim.fail_next(200, body=_page(), kind="drip", delay=0.05, times=1000)
    started = time.monotonic()
    with pytest.raises(ApiError) as info:
        _all(_client(sim, timeout=0.5), seconds=1.2)
    assert info.value.reason == "timeout"
    assert time.monotonic() - started < 1.5  # never past the poll deadline


def test_an_oversized_body_is_refused_before_it_is_read(
    sim: FakeSpace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api, "MAX_BODY_BYTES", 1000)
    sim.fail_next(200, body=_page(200))
    with pytest.raises(ApiError, match="larger than 1000 bytes") as info:
        _all(_client(sim))
    assert info.value.reason == "invalid_response"
    assert len(sim.requests) == 1  # not retried


def test_429_storm_without_retry_after_backs_off_until_the_deadline(sim: FakeSpace) -> None:
    sim.fail_next(429, times=1000)
    started = time.monotonic()
    with pytest.raises(ApiError) as info:
        _all(_client(sim), seconds=2.0)
    assert info.value.reason == "rate_limited"
    assert "rate_limit_exceeded" in str(info.value)
    assert time.monotonic() - started < 2.0
    assert 2 <= len(sim.requests) <= 6  # backoff, not a busy loop


def test_html_error_page_is_a_retried_server_error(sim: FakeSpace) -> None:
    sid = sim.add_session()
    sim.fail_next(502, body=b"<html><h1>502 Bad Gateway</h1></html>", times=1)
    client = _client(sim)
    assert _all(client) == [sid]
    sim.fail_next(502, body=b"<html><h1>502 Bad Gateway</h1></html>", times=1000)
    with pytest.raises(ApiError, match="non-JSON body: '<html><h1>502 Bad Gateway") as info:
        _all(client, seconds=1.0)
    assert info.value.reason == "server_error"


def test_truncated_json_page_is_an_invalid_response(sim: FakeSpace) -> None:
    sim.fail_next(200, body=_page()[:40])
    with pytest.raises(ApiError) as info:
        _all(_client(sim))
    assert info.value.reason == "invalid_response"


def test_next_link_to_another_path_is_refused(sim: FakeSpace) -> None:
    for _ in range(2):
        sim.add_session()
    sim.next_link_hook = lambda link: link.replace("/room_sessions?", "/rooms?")
    with pytest.raises(ApiError, match="unexpected path"):
        _all(_client(sim, page_size=1))


# --- the very next poll after a fault ------------------------------------------------------


def _fail(**kwargs: object) -> Callable[[FakeSpace], None]:
    return lambda sim: sim.fail_next(**kwargs)  # type: ignore[arg-type]


def _first_page(link: str) -> str:
    """The link to page 0 (without a page token) again: a loop."""
    return re.sub(r"&page_token=[^&]*", "", link).replace("page_number=1", "page_number=0")


def _hook(change: Callable[[str], str | None]) -> Callable[[FakeSpace], None]:
    def install(sim: FakeSpace) -> None:
        sim.next_link_hook = change

    return install


FAULTS: dict[str, tuple[Callable[[FakeSpace], None], str]] = {
    "429-retry-after": (_fail(status=429, headers={"Retry-After": "3600"}, times=1000), "rate_limited"),
    "429-storm": (_fail(status=429, times=1000), "rate_limited"),
    "5xx-burst": (_fail(status=503, times=1000), "server_error"),
    "html-page": (_fail(status=502, body=b"<html>down</html>", times=1000), "server_error"),
    "reset": (_fail(status=200, kind="reset", times=1000), "network"),
    "truncated": (_fail(status=200, body=_page(), kind="truncate", times=1000), "network"),
    "slow-drip": (_fail(status=200, body=_page(), kind="drip", delay=0.05, times=1000), "timeout"),
    "non-json": (_fail(status=200, body=b"<html>maintenance</html>", times=1000), "invalid_response"),
    "oversized": (_fail(status=200, body=_page(300), times=1000), "invalid_response"),
    "next-loop": (_hook(_first_page), "invalid_response"),
    "next-elsewhere": (_hook(lambda link: link.replace("127.0.0.1", "localhost")), "invalid_response"),
    "next-garbage": (_hook(lambda link: "http://[::1"), "invalid_response"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_the_poll_after_a_fault_is_complete_and_correct(
    sim: FakeSpace, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    monkeypatch.setattr(api, "MAX_BODY_BYTES", 5000)
    now = time.time()
    a = sim.add_session(created_at=now - 20)
    b = sim.add_session(quality="1080p", created_at=now - 10)
    sim.add_session(quality="1080p", fps=20, created_at=now - 5)  # two in-progress pages
    exporter = Exporter(sim, interval=1.0, timeout=0.4, page_size=1)
    assert exporter.poll()
    sim.complete_session(a, cost_in_dollars=1.25, duration=20)
    inject, reason = FAULTS[fault]
    inject(sim)
    started = time.monotonic()
    assert not exporter.poll()
    assert time.monotonic() - started < 1.3  # the failed poll ended with its interval
    v = exporter.value
    assert v("signalwire_video_poll_errors_total", reason=reason) == 1
    assert v("signalwire_video_room_sessions_completed_total", **qf("720p", "30")) == 0
    sim.clear_faults()
    sim.next_link_hook = None
    assert exporter.poll()
    assert v("signalwire_video_up") == 1
    assert v("signalwire_video_room_sessions_completed_total", **qf("720p", "30")) == 1
    assert v("signalwire_video_room_sessions_cost_dollars_total", **qf("720p", "30")) == 1.25
    assert v("signalwire_video_room_sessions_active", **qf("1080p", "30")) == 1
    assert v("signalwire_video_room_sessions_active", **qf("1080p", "20")) == 1
    assert v("signalwire_video_room_sessions_active", **qf("720p", "30")) == 0
    sim.complete_session(b, cost_in_dollars=2.0)
    assert exporter.poll()
    assert v("signalwire_video_room_sessions_completed_total", **qf("720p", "30")) == 1
    assert v("signalwire_video_room_sessions_completed_total", **qf("1080p", "30")) == 1


def test_polls_never_overlap_and_requests_are_sequential(sim: FakeSpace) -> None:
    for i in range(4):
        sim.add_session(created_at=time.time() - i)
    sim.latency = 0.02
    exporter = Exporter(sim, interval=0.6, timeout=0.3, page_size=1)
    spans: list[tuple[float, float, bool]] = []
    poll_once = exporter.poller.poll_once

    def timed() -> bool:
        started = time.monotonic()
        ok = poll_once()
        spans.append((started, time.monotonic(), ok))
        return ok

    exporter.poller.poll_once = timed  # type: ignore[method-assign]
    sim.fail_next(200, kind="reset", times=2)
    sim.fail_next(503, times=2)
    thread = threading.Thread(target=exporter.poller.run, daemon=True)  # a failure must not hang exit
    thread.start()
    time.sleep(1.5)
    # The server still answers a request the client gave up on until it notices the closed
    # connection, so concurrency is measured before the dripping response.
    assert sim.max_in_flight == 1
    sim.fail_next(200, body=_page(), kind="drip", delay=0.02, times=1, endpoint="list")
    time.sleep(1.8)
    exporter.poller.stop.set()
    thread.join(5)
    assert not thread.is_alive()
    assert len(spans) >= 4
    for (_, end, _), (start, _, _) in itertools.pairwise(spans):
        assert end <= start
    assert all(end - start < 0.6 + 0.2 for start, end, _ in spans)
    assert not all(ok for _, _, ok in spans) and spans[-1][2]


# --- hostile but spec-valid data -----------------------------------------------------------


def test_hostile_records_are_skipped_with_a_reason_and_the_rest_counts(sim: FakeSpace) -> None:
    exporter = Exporter(sim, page_size=2)
    assert exporter.poll()
    now = time.time()
    end, start = _iso(now + 5), _iso(now - 55)

    def record(sid: str, **fields: object) -> dict[str, object]:
        base = {"id": sid, "created_at": _iso(now), "status": "completed", "quality": "720p", "fps": "30"}
        return {
            **base,
            "start_time": start,
            "end_time": end,
            "duration": 60,
            "cost_in_dollars": 0.5,
            **fields,
        }

    nulls = {f: None for f in ("name", "room_id", "quality", "fps", "max_members", "start_time")}
    records = [
        record("good", surprise={"nested": [1, 2]}, another_field="x"),
        record("all-null", **nulls, end_time=None, updated_at=None, duration=None, status=None),
        record("enums", quality="8k", fps=120, status="archived", layout="hexagon"),
        record("negative-cost", cost_in_dollars=-1.0),
        record("negative-duration", duration=-5),
        record("ends-before-start", start_time=_iso(now + 30), duration=None),
        record("good-2", cost_in_dollars=0.25),
    ]
    for i, r in enumerate(records):
        sim.add_raw_record(r, created_at=now - i)
    sim.add_raw_record(record("good", cost_in_dollars=99.0), created_at=now - 100)  # duplicate id, later page
    assert exporter.poll()
    assert exporter.poll()
    samples = exporter.samples()
    assert all(math.isfinite(value) for value in samples.values())
    v = exporter.value
    assert v("signalwire_video_room_sessions_completed_total", **qf("720p", "30")) == 2  # good, good-2
    assert v("signalwire_video_room_sessions_cost_dollars_total", **qf("720p", "30")) in (
        0.75,
        99.25,
    )  # one copy
    assert v("signalwire_video_room_sessions_completed_total", **qf("unknown", "unknown")) == 1
    assert v("signalwire_video_room_sessions_completed_total", **qf("other", "other")) == 1
    skipped = {
        dict(labels)["reason"]: value
        for (name, labels), value in samples.items()
        if name == "signalwire_video_sessions_skipped_total" and value
    }
    assert skipped == {
        "invalid_cost": 1,
        "invalid_duration": 1,
        "invalid_times": 1,
        "missing_duration": 1,
    }
    # JSON has no NaN or Infinity; a number that overflows to infinity does not decode at all
    body = json.dumps({"links": {}, "data": [record("x")]}).replace(
        '"cost_in_dollars": 0.5', '"cost_in_dollars": 1e999'
    )
    assert decode_page(body.encode()) == ([], None, ["x"])


def test_a_session_flipping_back_to_in_progress_is_never_counted_twice(sim: FakeSpace) -> None:
    now = time.time()
    sid = sim.add_session(created_at=now - 5, start_time=now - 5)
    exporter = Exporter(sim, lookback=1.0)
    assert exporter.poll()
    # ended just before the poll that counts it, so the memory holds it for the lookback
    # however long the first poll took (a slow machine let it expire before the reopening)
    sim.complete_session(sid, cost_in_dollars=1.0, end_time=time.time())
    assert exporter.poll()
    assert sid in exporter.poller.accounting.counted
    v = exporter.value
    assert v("signalwire_video_room_sessions_completed_total", **qf("720p", "30")) == 1
    sim.reopen_session(sid)
    for _ in range(2):  # in progress again for longer than the lookback: the memory must hold
        time.sleep(1.2)
        assert exporter.poll()
        assert sid in exporter.poller.accounting.counted
        assert v("signalwire_video_room_sessions_active", **qf("720p", "30")) == 1
    sim.complete_session(sid, cost_in_dollars=1.0)
    assert exporter.poll()
    time.sleep(1.2)
    assert exporter.poll()
    assert v("signalwire_video_room_sessions_completed_total", **qf("720p", "30")) == 1
    assert v("signalwire_video_room_sessions_cost_dollars_total", **qf("720p", "30")) == 1.0
    assert v("signalwire_video_room_sessions_active", **qf("720p", "30")) == 0


# --- cardinality ---------------------------------------------------------------------------


def test_label_values_stay_bounded_and_escaped(sim: FakeSpace) -> None:
    rooms_max = 5
    exporter = Exporter(sim, rooms_max=rooms_max)
    assert exporter.poll()
    names = [f'room "{i}" \\ back\\slash\nnew line ünïcødé 🎥 {{}}=,' for i in range(40)]
    qualities = ["720p", "1080p", None, "4k", "720P", "", 'q"\\\n', "720p "]
    fps_values: list[str | int | None] = ["20", "30", 20, 30, None, "29.97", 60, "", "\n"]
    ids = [
        sim.add_session(
            name=name, quality=qualities[i % 8], fps=fps_values[i % 9], created_at=time.time() - i
        )
        for i, name in enumerate(names)
    ]
    assert exporter.poll()
    for sid in ids[::2]:
        sim.complete_session(sid, cost_in_dollars=0.1)
    assert exporter.poll()
    values: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(exporter.text()):  # parses: escaping is right
        for sample in family.samples:
            for label, value in sample.labels.items():
                values.setdefault(label, set()).add(value)
    assert values["quality"] <= set(QUALITY_LABELS)
    assert values["fps"] <= set(FPS_LABELS)
    assert values["space"] == {"test"}
    assert "__other__" in values["room"] and len(values["room"]) == rooms_max + 1
    assert values["room"] - {"__other__"} <= set(names)  # each name round-trips exactly
    assert values.keys() <= {
        "space",
        "quality",
        "fps",
        "room",
        "le",
        "reason",
        "endpoint",
        "code",
        "work",
        "period",
        "source",
        *BUILD_LABELS,
    }
    assert values["code"] <= set(REQUEST_CODES)
    assert values["work"] <= set(DEFERRED_WORK)
    assert values["period"] <= set(PERIODS) and values["source"] <= set(COST_SOURCES)
    assert values["reason"] <= {*POLL_ERROR_REASONS, *SKIP_REASONS}
