"""Members and recordings accounting, pure: summaries, queues, each counted once."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from exporter.enrichment import (
    Enrichment,
    RecordingRead,
    apply_enrichment,
    recordings_pending,
    summarize_members,
)
from exporter.models import Member, Recording, RoomSession
from exporter.snapshot import DEFAULT_DURATION_BUCKETS, Histogram
from exporter.state import Accounting, MembersDue, Observation, RecordingsDue, Settings, apply

T0 = 1_795_000_000.0
SETTINGS = Settings(
    lookback=300.0,
    buckets=DEFAULT_DURATION_BUCKETS,
    rooms_enabled=True,
    members=True,
    recordings=True,
    recording_max_wait=3600.0,
    member_buckets=(1.0, 2.0, 5.0),
    utilization_buckets=(0.5, 1.0),
)


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(T0 + seconds, UTC)


def member(mid: str, join: float | None, leave: float | None, **fields: object) -> Member:
    return Member(
        id=mid,
        join_time=None if join is None else at(join),
        leave_time=None if leave is None else at(leave),
        **fields,  # type: ignore[arg-type]
    )


def test_members_are_distinct_by_id_and_the_peak_sweeps_leaves_before_joins() -> None:
    summary = summarize_members(
        [
            member("a", 0, 100, duration=100, cost_in_dollars=0.01),
            member("a", 0, 100, duration=100, cost_in_dollars=0.01),  # listed twice: once
            member("b", 100, 200, duration=100, cost_in_dollars=0.02),  # joins as a leaves: peak stays 1
            member("c", 150, None, cost_in_dollars=0.0),  # never left: present to the end
            member("d", None, None),  # invited, never joined
            member("e", 50, 10, duration=5),  # left before it joined
            member("f", 10, 20, duration=-3),
        ],
        malformed=2,
    )
    assert (summary.joined, summary.peak) == (3, 2)
    assert summary.seconds == 200.0
    assert summary.cost == 0.03
    assert summary.skipped == {"malformed": 2, "invalid_times": 1, "invalid_duration": 1}


def test_leave_minus_join_stands_in_for_a_null_duration() -> None:
    assert summarize_members([member("a", 10, 70)]).seconds == 60.0


def test_a_member_present_for_no_time_joined_but_is_never_with_anyone() -> None:
    summary = summarize_members([member("a", 10, 10, duration=0), member("b", 10, 70)])
    assert (summary.joined, summary.peak) == (2, 1)
    assert summarize_members([member("a", 10, 10, duration=0)]).peak == 0


def test_a_session_gone_before_its_reads_leaves_the_queues_as_skipped() -> None:
    acc = Accounting(
        counting_start=T0,
        members_due={"s1": MembersDue("720p", "30", 4, None, T0)},
        recordings_due={"s1": RecordingsDue(T0)},
    )
    new = apply_enrichment(acc, Enrichment(T0, members={"s1": None}, recordings={"s1": None}), SETTINGS)
    assert new.members_due == {} and new.recordings_due == {}
    assert new.totals.people.skipped == {"session_gone": 1}
    assert new.totals.recordings.skipped == {"session_gone": 1}
    assert new.totals.people.members == {}


def test_queues_are_dropped_when_their_option_is_turned_off() -> None:
    acc = Accounting(
        counting_start=T0,
        members_due={"s1": MembersDue("720p", "30", 4, None, T0)},
        recordings_due={"s1": RecordingsDue(T0)},
    )
    off = replace(SETTINGS, members=False, recordings=False)
    new = apply_enrichment(acc, Enrichment(T0), off)
    assert new.members_due == {} and new.recordings_due == {}


def completed(sid: str, end: float, max_members: int = 4) -> RoomSession:
    return RoomSession(
        id=sid,
        created_at=at(end - 600),
        status="completed",
        name=f"room-{sid}",
        quality="720p",
        fps="30",
        max_members=max_members,
        start_time=at(end - 600),
        end_time=at(end),
        duration=600.0,
        cost_in_dollars=1.0,
    )


def test_counting_a_session_queues_it_for_members_and_recordings() -> None:
    acc = Accounting(counting_start=T0 - 1000, last_success=T0 - 30)
    new, _ = apply(acc, Observation(T0, {}, [completed("s1", -10), completed("s2", -5, 0)]), SETTINGS)
    assert new.members_due == {
        "s1": MembersDue("720p", "30", 4, "room-s1", T0 - 10),
        "s2": MembersDue("720p", "30", 0, "room-s2", T0 - 5),
    }
    assert new.recordings_due == {"s1": RecordingsDue(T0 - 10), "s2": RecordingsDue(T0 - 5)}
    again, _ = apply(new, Observation(T0 + 30, {}, [completed("s1", -10)]), SETTINGS)
    assert again.members_due == new.members_due  # counted once, queued once


def test_members_are_folded_once_and_leave_the_queue() -> None:
    acc = Accounting(
        counting_start=T0,
        members_due={
            "s1": MembersDue("720p", "30", 4, "room-1", T0),
            "s2": MembersDue("1080p", "20", 0, None, T0),
        },
    )
    s1 = summarize_members([member("a", 0, 60, cost_in_dollars=0.5), member("b", 30, 90)])
    new = apply_enrichment(acc, Enrichment(T0, members={"s1": s1}), SETTINGS)
    people = new.totals.people
    key = ("720p", "30")
    assert new.members_due == {"s2": acc.members_due["s2"]}
    assert people.members[key] == Histogram((0, 1, 0, 0), 2.0)  # 2 joined: the le=2 bucket
    assert people.peak[key] == Histogram((0, 1, 0, 0), 2.0)
    assert people.utilization[key] == Histogram((1, 0, 0), 0.5)  # 2 of 4
    assert people.at_capacity == {}
    assert (people.seconds[key], people.cost[key], people.room_seconds) == (120.0, 0.5, {"room-1": 120.0})
    s2 = summarize_members([member("c", 0, 10)])
    newer = apply_enrichment(new, Enrichment(T0, members={"s2": s2}), SETTINGS)
    assert newer.totals.people.utilization == people.utilization  # max_members 0: no ratio
    assert newer.totals.people.at_capacity == {}  # nor a capacity to reach
    assert newer.members_due == {}


def recording(rid: str, status: str, **fields: object) -> Recording:
    return Recording(id=rid, status=status, **fields)  # type: ignore[arg-type]


def test_recordings_count_once_when_completed_and_wait_until_max_wait() -> None:
    acc = Accounting(counting_start=T0, recordings_due={"s1": RecordingsDue(T0)})
    done = recording("r1", "completed", duration=60, size_in_bytes=1000, cost_in_dollars=0.1)
    first = RecordingRead([done, recording("r2", "processing")], ["bad", None])
    new = apply_enrichment(acc, Enrichment(T0 + 30, recordings={"s1": first}), SETTINGS)
    r = new.totals.recordings
    assert (r.count, r.seconds, r.bytes, r.cost, r.skipped) == (1, 60.0, 1000, 0.1, {"malformed": 2})
    assert new.recordings_due == {"s1": RecordingsDue(T0, ("bad", "r1"), 1)}
    assert recordings_pending(new) == 1
    again = RecordingRead([done, recording("r2", "processing")], ["bad", None])  # all seen before
    newer = apply_enrichment(new, Enrichment(T0 + 60, recordings={"s1": again}), SETTINGS)
    assert newer.totals.recordings == new.totals.recordings
    late = apply_enrichment(newer, Enrichment(T0 + 3601, recordings={"s1": again}), SETTINGS)
    assert late.totals.recordings.skipped == {"malformed": 2, "recording_timeout": 1}
    assert late.recordings_due == {} and recordings_pending(late) == 0


def test_a_completed_recording_with_a_null_size_is_skipped() -> None:
    acc = Accounting(counting_start=T0, recordings_due={"s1": RecordingsDue(T0)})
    bad = recording("r1", "completed", duration=60, size_in_bytes=None, cost_in_dollars=0.1)
    new = apply_enrichment(acc, Enrichment(T0, recordings={"s1": RecordingRead([bad])}), SETTINGS)
    assert new.totals.recordings.count == 0
    assert new.totals.recordings.skipped == {"invalid_size": 1}
    assert new.recordings_due == {}


def test_a_session_whose_peak_reaches_max_members_is_at_capacity() -> None:
    acc = Accounting(
        counting_start=T0,
        members_due={
            "full": MembersDue("720p", "30", 2, None, T0),
            "nearly": MembersDue("720p", "30", 3, None, T0),
        },
    )
    two = summarize_members([member("a", 0, 60), member("b", 10, 60)])
    new = apply_enrichment(acc, Enrichment(T0, members={"full": two, "nearly": two}), SETTINGS)
    assert new.totals.people.at_capacity == {("720p", "30"): 1}  # 2 of 2 is full, 2 of 3 is not
