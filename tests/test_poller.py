"""Polling end to end against the simulated space: exact metric values for a scripted timeline."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter import poller as poller_module
from exporter.collector import SessionCollector
from exporter.config import Config
from exporter.poller import SpacePoller
from exporter.snapshot import Snapshots
from exporter.state import Observation

from .conftest import poll_config, space_config
from .support.fake_api import FakeSpace

Sample = dict[tuple[str, frozenset[tuple[str, str]]], float]


class Exporter:
    """A poller and collector wired as the CLI wires them, for one space."""

    def __init__(self, sim: FakeSpace, rooms_max: int = 0, **poll: float) -> None:
        self.config = Config(
            spaces=(space_config(sim),),
            poll=poll_config(**poll),
            rooms_enabled=rooms_max > 0,
            rooms_max=max(rooms_max, 1),
        )
        self.snapshots = Snapshots(["test"])
        self.poller = SpacePoller(self.config.spaces[0], self.config, self.snapshots, threading.Event())
        self.registry = CollectorRegistry()
        self.registry.register(SessionCollector(self.snapshots, self.config))

    def poll(self) -> bool:
        return self.poller.poll_once()

    def text(self) -> str:
        return generate_latest(self.registry).decode()

    def samples(self) -> Sample:
        out: Sample = {}
        for family in text_string_to_metric_families(self.text()):
            for s in family.samples:
                out[s.name, frozenset(s.labels.items())] = s.value
        return out

    def value(self, name: str, **labels: str) -> float | None:
        return self.samples().get((name, frozenset({"space": "test", **labels}.items())))


def qf(quality: str, fps: str) -> dict[str, str]:
    return {"quality": quality, "fps": fps}


def test_scripted_timeline_gives_exact_values(sim: FakeSpace) -> None:
    now = time.time()
    old = sim.add_session(name="old", start_time=now - 7200, created_at=now - 7200)
    sim.complete_session(old, cost_in_dollars=9.99, end_time=now - 3600)  # ended before start: not counted
    a = sim.add_session(name="a", quality="720p", fps="30", max_members=10, start_time=now - 900)
    sim.add_session(name="b", quality="1080p", fps=20, max_members=20, start_time=now - 300)

    exporter = Exporter(sim)
    assert exporter.poll()
    v = exporter.value
    assert v("signalwire_video_room_sessions_active", **qf("720p", "30")) == 1
    assert v("signalwire_video_room_sessions_active", **qf("1080p", "20")) == 1
    assert v("signalwire_video_room_sessions_active_max_members", **qf("720p", "30")) == 10
    assert v("signalwire_video_room_sessions_active_max_members", **qf("1080p", "20")) == 20
    assert v("signalwire_video_room_sessions_oldest_start_timestamp_seconds") == pytest.approx(
        now - 900, abs=1
    )
    assert v("signalwire_video_room_sessions_completed_total", **qf("720p", "30")) == 0
    assert v("signalwire_video_up") == 1

    sim.complete_session(a, cost_in_dollars=1.5, duration=600)
    d = sim.add_session(name="d", quality=None, fps=None, max_members=None)
    e = sim.add_session(name="e", quality="4k", fps="60", max_members=3)
    sim.complete_session(e, cost_in_dollars=0.25, duration=30)  # started and ended between polls
    assert exporter.poll()
    assert exporter.poll()  # nothing new: nothing counted twice
    assert v("signalwire_video_room_sessions_completed_total", **qf("720p", "30")) == 1
    assert v("signalwire_video_room_sessions_cost_dollars_total", **qf("720p", "30")) == 1.5
    assert v("signalwire_video_room_sessions_completed_total", **qf("other", "other")) == 1
    assert v("signalwire_video_room_sessions_cost_dollars_total", **qf("other", "other")) == 0.25
    assert v("signalwire_video_room_session_duration_seconds_bucket", le="60.0", **qf("other", "other")) == 1
    assert v("signalwire_video_room_session_duration_seconds_bucket", le="300.0", **qf("720p", "30")) == 0
    assert v("signalwire_video_room_session_duration_seconds_bucket", le="600.0", **qf("720p", "30")) == 1
    assert v("signalwire_video_room_session_duration_seconds_sum", **qf("720p", "30")) == 600
    assert v("signalwire_video_room_session_duration_seconds_count", **qf("720p", "30")) == 1
    assert v("signalwire_video_room_sessions_active", **qf("720p", "30")) == 0
    assert v("signalwire_video_room_sessions_active", **qf("unknown", "unknown")) == 1
    assert v("signalwire_video_room_sessions_active_max_members", **qf("unknown", "unknown")) == 0
    assert v("signalwire_video_room_sessions_oldest_start_timestamp_seconds") == pytest.approx(
        now - 300, abs=1
    )
    total = sum(
        value
        for (name, _), value in exporter.samples().items()
        if name == "signalwire_video_room_sessions_completed_total"
    )
    assert total == 2

    sim.complete_session(d, cost_in_dollars=0.1)
    assert exporter.poll()
    assert v("signalwire_video_room_sessions_completed_total", **qf("unknown", "unknown")) == 1
    assert v("signalwire_video_room_sessions_cost_dollars_total", **qf("unknown", "unknown")) == 0.1


def test_failed_poll_keeps_gauges_and_counters_and_marks_down(sim: FakeSpace) -> None:
    sid = sim.add_session()
    exporter = Exporter(sim)
    assert exporter.poll()
    sim.complete_session(sid, cost_in_dollars=2.0)
    sim.fail_next(401, times=1)
    assert not exporter.poll()
    v = exporter.value
    assert v("signalwire_video_up") == 0
    assert v("signalwire_video_room_sessions_active", **qf("720p", "30")) == 1  # last good value
    assert v("signalwire_video_room_sessions_completed_total", **qf("720p", "30")) == 0
    assert v("signalwire_video_poll_errors_total", reason="unauthorized") == 1
    assert v("signalwire_video_api_requests_total", endpoint="list", code="401") == 1
    assert exporter.poll()
    assert v("signalwire_video_up") == 1
    assert v("signalwire_video_room_sessions_completed_total", **qf("720p", "30")) == 1
    assert v("signalwire_video_room_sessions_cost_dollars_total", **qf("720p", "30")) == 2.0


def test_partial_poll_changes_nothing(sim: FakeSpace) -> None:
    """A poll that fails after reading part of its listings applies none of what it saw."""
    a = sim.add_session(created_at=time.time() - 10)
    exporter = Exporter(sim, page_size=1)
    assert exporter.poll()
    sim.complete_session(a, cost_in_dollars=1.0)
    sim.add_session(quality="1080p")
    sim.add_session(quality="1080p")
    sim.next_link_hook = lambda link: link.replace("page_token=", "page_token=garbage")
    assert not exporter.poll()  # page 1 of in-progress read, page 2 refused with 422
    assert exporter.value("signalwire_video_room_sessions_active", **qf("1080p", "30")) == 0
    assert exporter.value("signalwire_video_room_sessions_active", **qf("720p", "30")) == 1
    assert exporter.value("signalwire_video_poll_errors_total", reason="invalid_response") == 1
    sim.next_link_hook = None
    assert exporter.poll()
    assert exporter.value("signalwire_video_room_sessions_active", **qf("1080p", "30")) == 2
    assert exporter.value("signalwire_video_room_sessions_completed_total", **qf("720p", "30")) == 1


def _get_ids(sim: FakeSpace) -> list[str]:
    return sorted(
        r.path.rsplit("/", 1)[1] for r in sim.requests if r.path.startswith("/api/video/room_sessions/")
    )


def test_session_missing_from_a_shifted_listing_is_asked_for(sim: FakeSpace) -> None:
    now = time.time()
    gone = sim.add_session(name="gone", created_at=now - 30)
    a = sim.add_session(name="a", created_at=now - 20)
    sim.add_session(name="b", created_at=now - 10)
    exporter = Exporter(sim, page_size=1)
    assert exporter.poll()
    assert _get_ids(sim) == []
    sim.next_link_hook = lambda link: None  # listings end after their first page
    sim.delete_session(gone)
    assert exporter.poll()
    assert _get_ids(sim) == sorted([a, gone])
    assert exporter.value("signalwire_video_room_sessions_active", **qf("720p", "30")) == 2


def test_vanished_session_is_looked_up_in_its_room_listing_without_get(sim: FakeSpace) -> None:
    now = time.time()
    a = sim.add_session(name="a", created_at=now - 20)
    newer = sim.add_session(name="newer", created_at=now - 10)
    exporter = Exporter(sim, page_size=1)
    assert exporter.poll()
    sim.complete_session(a, cost_in_dollars=3.0)
    sim.complete_session(newer, cost_in_dollars=0.5)
    sim.next_link_hook = lambda link: None  # the completed listing shows only `newer`
    before = len(sim.requests)
    assert exporter.poll()
    assert _get_ids(sim) == []
    made = sim.requests[before:]
    assert len(made) == 3  # in-progress, completed, and one page of a's room
    room_lookup = made[-1]
    assert room_lookup.query["status"] == "completed" and room_lookup.query["room_id"]
    assert room_lookup.query["page_size"] == "10"
    assert exporter.value("signalwire_video_room_sessions_completed_total", **qf("720p", "30")) == 2
    assert exporter.value("signalwire_video_room_sessions_cost_dollars_total", **qf("720p", "30")) == 3.5


def test_a_slow_api_leaves_lookups_for_later_instead_of_failing_the_poll(sim: FakeSpace) -> None:
    now = time.time()
    long = [sim.add_session(name=f"long{i}", created_at=now - 7200 + i) for i in range(6)]
    exporter = Exporter(sim, interval=2.0, timeout=2.0, lookback=5.0, page_size=1)
    assert exporter.poll()
    for sid in long:
        sim.complete_session(sid, cost_in_dollars=1.0)
    sim.next_link_hook = lambda link: None  # the completed listing shows only its first page
    sim.latency = 0.3  # six lookups would take 1.8 s of the 2 s poll, after 0.6 s of listings
    polls = 0
    while exporter.value("signalwire_video_room_sessions_completed_total", **qf("720p", "30")) != 6:
        assert exporter.poll()  # never a timeout: lookups stop while half a second is left
        polls += 1
        assert polls < 10
    assert polls > 1
    assert exporter.value("signalwire_video_poll_deferred_total", work="completions") > 0
    assert exporter.value("signalwire_video_poll_errors_total", reason="timeout") == 0


def test_vanished_sessions_of_one_room_cost_one_lookup(sim: FakeSpace) -> None:
    now = time.time()
    shared = [sim.add_session(name="shared", created_at=now - 60 + i) for i in range(3)]
    exporter = Exporter(sim, page_size=1, lookback=5.0)
    assert exporter.poll()
    for sid in shared:
        sim.complete_session(sid, cost_in_dollars=1.0)
    sim.next_link_hook = lambda link: None  # the completed listing shows only its first page
    before = len(sim.requests)
    assert exporter.poll()
    rooms = [r for r in sim.requests[before:] if "room_id" in r.query]
    assert len(rooms) == 1 and _get_ids(sim) == []
    assert exporter.value("signalwire_video_room_sessions_completed_total", **qf("720p", "30")) == 3


def test_lookups_past_the_request_budget_wait_for_later_polls_and_are_counted_once(sim: FakeSpace) -> None:
    now = time.time()
    long = [sim.add_session(name=f"long{i}", created_at=now - 7200 + i) for i in range(3)]
    for i in range(5):  # completed since, before counting: pages between the horizon and `long`
        done = sim.add_session(name=f"r{i}", created_at=now - 3600 + i)
        sim.complete_session(done, cost_in_dollars=0.01, end_time=now - 1800)
    exporter = Exporter(sim, page_size=1, lookback=5.0, max_requests=3)
    assert exporter.poll()
    for sid in long:
        sim.complete_session(sid, cost_in_dollars=2.0)
    deferred = []
    for _ in range(3):  # in-progress + one completed page, then one lookup per poll
        before = len(sim.requests)
        assert exporter.poll()
        assert len(sim.requests) - before == 3
        deferred.append(exporter.value("signalwire_video_poll_deferred_total", work="completions"))
    assert deferred == [2, 3, 3]
    assert exporter.value("signalwire_video_room_sessions_completed_total", **qf("720p", "30")) == 3
    assert exporter.value("signalwire_video_room_sessions_cost_dollars_total", **qf("720p", "30")) == 6.0
    assert exporter.poll()
    assert exporter.value("signalwire_video_room_sessions_completed_total", **qf("720p", "30")) == 3


def test_a_get_that_spends_the_budget_never_counts_a_session_without_its_cost(sim: FakeSpace) -> None:
    now = time.time()
    a = sim.add_session(name="a", created_at=now - 900, start_time=now - 900)
    newer = sim.add_session(name="newer", created_at=now - 10)
    exporter = Exporter(sim, page_size=1, lookback=5.0, max_requests=3)
    assert exporter.poll()
    poller = exporter.poller
    poller.accounting = replace(poller.accounting, room_ids={})  # e.g. tracked by an older version
    sim.complete_session(a, cost_in_dollars=3.0, end_time=now - 600)  # long before the horizon
    sim.complete_session(newer, cost_in_dollars=0.5)
    sim.next_link_hook = lambda link: None  # the completed listing shows only `newer`
    assert exporter.poll()  # in-progress, completed, GET: nothing left for a's room listing
    assert _get_ids(sim) == [a]
    assert exporter.value("signalwire_video_room_sessions_completed_total", **qf("720p", "30")) == 1
    assert exporter.value("signalwire_video_sessions_skipped_total", reason="missing_cost") == 0
    assert exporter.value("signalwire_video_poll_deferred_total", work="completions") == 1
    poller.config = replace(poller.config, poll=replace(poller.config.poll, max_requests=10))
    assert exporter.poll()
    assert exporter.value("signalwire_video_room_sessions_completed_total", **qf("720p", "30")) == 2
    assert exporter.value("signalwire_video_room_sessions_cost_dollars_total", **qf("720p", "30")) == 3.5


def test_session_without_room_completed_only_visible_through_get_waits_for_its_cost(
    sim: FakeSpace,
) -> None:
    now = time.time()
    a = sim.add_session(name=None, room_id=None, created_at=now - 20)  # nothing to look its room up by
    newer = sim.add_session(name="newer", created_at=now - 10)
    exporter = Exporter(sim, page_size=1)
    assert exporter.poll()
    sim.complete_session(a, cost_in_dollars=3.0)
    sim.complete_session(newer, cost_in_dollars=0.5)
    sim.next_link_hook = lambda link: None  # the completed listing shows only `newer`
    assert exporter.poll()
    assert _get_ids(sim) == [a]  # GET says completed, but has no cost and no room: wait
    assert exporter.value("signalwire_video_room_sessions_completed_total", **qf("720p", "30")) == 1
    assert exporter.value("signalwire_video_room_sessions_active", **qf("720p", "30")) == 0
    sim.next_link_hook = None
    assert exporter.poll()
    assert exporter.value("signalwire_video_room_sessions_completed_total", **qf("720p", "30")) == 2
    assert exporter.value("signalwire_video_room_sessions_cost_dollars_total", **qf("720p", "30")) == 3.5


def test_malformed_and_invalid_records_are_skipped_once_and_counted(sim: FakeSpace) -> None:
    exporter = Exporter(sim)
    assert exporter.poll()
    good = sim.add_session()
    sim.complete_session(good, cost_in_dollars=1.0)
    neg = sim.add_session(name="neg")
    sim.complete_session(neg, cost_in_dollars=-5.0)
    sim.add_raw_record({"id": "broken", "created_at": "yesterday"}, status="completed")
    assert exporter.poll()
    assert exporter.poll()
    v = exporter.value
    assert v("signalwire_video_room_sessions_completed_total", **qf("720p", "30")) == 1
    assert v("signalwire_video_room_sessions_cost_dollars_total", **qf("720p", "30")) == 1.0
    assert v("signalwire_video_sessions_skipped_total", reason="invalid_cost") == 1
    assert v("signalwire_video_sessions_skipped_total", reason="malformed") == 1


def test_rooms_are_capped_with_the_rest_under_other(sim: FakeSpace) -> None:
    exporter = Exporter(sim, rooms_max=2)
    for age, name in enumerate(("delta", "gamma", "beta", "alpha")):  # slots go to the oldest first
        sim.add_session(name=name, created_at=time.time() - age)
    assert exporter.poll()
    samples = exporter.samples()
    rooms = {
        dict(labels)["room"]: value
        for (name, labels), value in samples.items()
        if name == "signalwire_video_room_active_sessions"
    }
    assert rooms == {"alpha": 1, "beta": 1, "__other__": 2}


def test_poll_loop_runs_until_stopped(sim: FakeSpace) -> None:
    sim.add_session()
    exporter = Exporter(sim, interval=0.2)
    thread = threading.Thread(target=exporter.poller.run, daemon=True)  # a failure must not hang exit
    thread.start()
    polls = 0
    for _ in range(200):  # wait for three polls (bounded): a condition, not a duration
        polls = len([r for r in sim.requests if r.query.get("status") == "in-progress"])
        if polls >= 3:
            break
        time.sleep(0.05)
    exporter.poller.stop.set()
    thread.join(5)
    assert not thread.is_alive()
    assert polls >= 3
    assert exporter.snapshots.ready()


class _BrokenPoller(SpacePoller):
    """A poller with a bug: reading the API raises an exception no API response explains."""

    def _observe(self, started: float, deadline: float) -> Observation:
        raise KeyError("a bug")


def test_an_unexpected_exception_is_an_internal_error_not_the_apis_fault(sim: FakeSpace) -> None:
    exporter = Exporter(sim)
    exporter.poller = _BrokenPoller(
        exporter.config.spaces[0], exporter.config, exporter.snapshots, threading.Event()
    )
    assert not exporter.poll()
    assert exporter.value("signalwire_video_up") == 0
    assert exporter.value("signalwire_video_poll_errors_total", reason="internal_error") == 1
    assert exporter.value("signalwire_video_poll_errors_total", reason="invalid_response") == 0


def test_a_bug_in_the_accounting_is_an_internal_error_too(
    sim: FakeSpace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """apply() is part of the poll: its exception fails the poll, it does not end the poll loop."""
    sim.add_session()
    exporter = Exporter(sim)

    def broken(*args: object) -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(poller_module, "apply", broken)
    assert not exporter.poll()
    assert exporter.value("signalwire_video_poll_errors_total", reason="internal_error") == 1
    monkeypatch.undo()
    assert exporter.poll()
    assert exporter.value("signalwire_video_up") == 1


def test_long_session_ending_is_found_through_its_room_without_walking_back(sim: FakeSpace) -> None:
    """A poll never has to read the whole listing back to when a long session started."""
    now = time.time()
    long = sim.add_session(name="long", created_at=now - 7200, start_time=now - 7200)
    for i in range(12):  # completed since: a walk back to `long` would read 12 more pages
        done = sim.add_session(name=f"r{i}", created_at=now - 3600 + i)
        sim.complete_session(done, cost_in_dollars=0.01, end_time=now - 1800)  # before counting
    exporter = Exporter(sim, page_size=1, lookback=5.0, interval=2.0)
    assert exporter.poll()
    sim.complete_session(long, cost_in_dollars=7.5)
    sim.latency = 0.05
    before = len(sim.requests)
    assert exporter.poll()
    assert exporter.value("signalwire_video_room_sessions_completed_total", **qf("720p", "30")) == 1
    assert exporter.value("signalwire_video_room_sessions_cost_dollars_total", **qf("720p", "30")) == 7.5
    assert len(sim.requests) - before <= 3  # in-progress, a page of completed, a page of its room


def test_long_sessions_ending_in_order_are_found_by_the_walk_without_lookups(sim: FakeSpace) -> None:
    """Pages that keep finding vanished sessions are cheaper than two lookups per session."""
    now = time.time()
    for i in range(6):  # completed before counting started: pages a deeper walk would read
        done = sim.add_session(name=f"old{i}", created_at=now - 9000 + i)
        sim.complete_session(done, cost_in_dollars=0.01, end_time=now - 8000)
    long = [sim.add_session(name=f"long{i}", created_at=now - 7200 + i) for i in range(12)]
    exporter = Exporter(sim, page_size=5, lookback=5.0, interval=5.0)
    assert exporter.poll()
    for sid in long[:10]:  # the ten oldest end: the newest completed sessions, two full pages
        sim.complete_session(sid, cost_in_dollars=0.5)
    before = len(sim.requests)
    assert exporter.poll()
    assert exporter.value("signalwire_video_room_sessions_completed_total", **qf("720p", "30")) == 10
    assert exporter.value("signalwire_video_room_sessions_active", **qf("720p", "30")) == 2
    made = sim.requests[before:]
    assert [r.query.get("status") for r in made] == ["in-progress", "completed", "completed"]
