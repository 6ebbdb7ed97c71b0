"""Accounting of room sessions: one poll's observation in, the next immutable state out.

``apply`` is a pure function. It never mutates its inputs, so a failed poll simply keeps
the previous :class:`Accounting`, and the snapshot built from the new one can be swapped in
atomically for the collector.

Counting rule: a completed session is counted once (deduplicated by id) when a poll first
sees it completed, provided it was seen in progress (by an earlier poll or this one's
in-progress listing) or ended after the eligibility watermark: counting start (less the
API's one-second timestamp resolution) or, later, the horizon. It must also have ended no
longer than ``max_backfill`` before the poll (else it is skipped as ``backfill_limit``: only
possible after the exporter was down that long, with a state file). The dedupe memory forgets
ids that ended before the watermark, which an untracked session can never pass again, so
memory stays bounded by the sessions completed within one lookback.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass, field, replace

import msgspec

from .bill import Bill, Billing, add_sessions, new_bill, roll, with_charges
from .models import COMPLETED, TIMESTAMP_RESOLUTION, RoomSession
from .snapshot import (
    DEFAULT_MEMBER_BUCKETS,
    DEFAULT_UTILIZATION_BUCKETS,
    OTHER_ROOM,
    Activity,
    Histogram,
    Key,
    Totals,
)


class Live(msgspec.Struct, frozen=True, gc=False):
    """What accounting keeps of one in-progress session: about a fifth of the decoded record,
    so a poll holds 100k of them without holding 100k records. Not tracked by the garbage
    collector (no field can form a cycle), like :class:`RoomSession`."""

    created: float
    key: Key | None  # (quality, fps) label values; None when its numbers are invalid (not shown)
    max_members: int
    start: float | None
    room: str | None  # room name; None without per-room metrics
    room_id: str | None  # where its completed record is looked up when it vanishes


def summarize(sessions: Iterable[RoomSession], rooms_enabled: bool) -> dict[str, Live]:
    """In-progress sessions by id, reduced to what tracking and the gauges need."""
    return {s.id: _live(s, rooms_enabled) for s in sessions}


def _live(s: RoomSession, rooms_enabled: bool) -> Live:
    key = None if s.invalid_reason() else s.labels
    room = s.name if rooms_enabled else None
    return Live(s.created_ts, key, s.max_members or 0, s.start_ts, room, s.room_id)


class MembersDue(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """A counted session whose members are still to be read (``members.enabled``)."""

    quality: str  # the session's labels, as counted
    fps: str
    max_members: int
    room: str | None  # its per-room label, with per-room metrics
    ended: float


class RecordingsDue(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """A counted session whose recordings are still to be read, or to complete."""

    ended: float
    done: tuple[str, ...] = ()  # ids of its recordings already counted or skipped
    pending: int = 0  # its recordings not completed at the latest read


@dataclass(frozen=True)
class Settings:
    """The parts of the configuration that accounting depends on."""

    lookback: float
    buckets: tuple[float, ...]
    rooms_enabled: bool = False
    rooms_max: int = 50
    max_backfill: float = 86400.0
    members: bool = False  # queue counted sessions for their members
    recordings: bool = False  # ... and for their recordings
    recording_max_wait: float = 3600.0
    member_buckets: tuple[float, ...] = DEFAULT_MEMBER_BUCKETS
    utilization_buckets: tuple[float, ...] = DEFAULT_UTILIZATION_BUCKETS
    billing: Billing = field(default_factory=Billing)


@dataclass(frozen=True)
class Accounting:
    """Everything carried from one poll to the next for one space."""

    counting_start: float
    last_success: float | None = None  # start (epoch) of the last successful poll
    tracked: Mapping[str, float] = field(default_factory=dict)  # in progress: id -> created
    room_ids: Mapping[str, str] = field(default_factory=dict)  # tracked id -> room id, if it has one
    counted: Mapping[str, float] = field(default_factory=dict)  # dedupe memory: id -> ended
    rooms: tuple[str, ...] = ()  # room label slots, first come first served, never reassigned
    totals: Totals = field(default_factory=Totals)
    members_due: Mapping[str, MembersDue] = field(default_factory=dict)  # oldest first
    recordings_due: Mapping[str, RecordingsDue] = field(default_factory=dict)  # oldest first
    bill: Bill | None = None  # begun by the first poll

    def horizon(self, lookback: float) -> float:
        """How far back (by creation) the completed listing is read: lookback before the last poll."""
        return (self.last_success or self.counting_start) - lookback

    def watermark(self, lookback: float) -> float:
        """End time a session not seen in progress must pass to be counted; never decreases."""
        return max(self.counting_start - TIMESTAMP_RESOLUTION, self.horizon(lookback))


@dataclass(frozen=True)
class Observation:
    """What one complete poll saw.

    ``fetched`` holds the result of ``GET`` for tracked sessions that vanished from the
    in-progress listing and were not in the completed walk (None: the API no longer has it).
    GET has no cost, so a session it shows completed stays tracked until the listing shows
    it too, or until it ended before the horizon (then it counts with cost 0, noted as
    ``missing_cost``).
    ``in_progress`` is the in-progress listing, by id (see :func:`summarize`).
    ``pending`` holds tracked sessions that vanished from it but that the poll had no request
    budget left to look up: they stay tracked, for a later poll.
    ``malformed`` lists (id or None, listing status) of records that could not be decoded.
    """

    started: float
    in_progress: Mapping[str, Live]
    completed: Iterable[RoomSession]
    fetched: Mapping[str, RoomSession | None] = field(default_factory=dict)
    malformed: Iterable[tuple[str | None, str]] = ()
    pending: Iterable[str] = ()


def _add(mapping: dict[str, int], key: str, amount: int = 1) -> None:
    mapping[key] = mapping.get(key, 0) + amount


class _Pass:
    """Mutable working copy used while one observation is applied."""

    def __init__(self, acc: Accounting, settings: Settings, started: float, seen: Container[str]) -> None:
        self.acc, self.settings, self.seen_in_progress = acc, settings, seen
        self.backfill_floor = started - settings.max_backfill
        self.completed = dict(acc.totals.completed)
        self.cost = dict(acc.totals.cost)
        self.durations = dict(acc.totals.durations)
        self.room_cost = dict(acc.totals.room_cost)
        self.skipped = dict(acc.totals.skipped)
        self.counted = dict(acc.counted)
        self.rooms = dict.fromkeys(acc.rooms)  # ordered, with O(1) lookups
        self.members_due = dict(acc.members_due)
        self.recordings_due = dict(acc.recordings_due)
        self.costs: list[tuple[str, float, float]] = []  # (id, cost, end) of the sessions counted
        self.gap = 0.0  # the latest end of a session not counted for backfill_limit

    def room(self, name: str | None) -> str:
        if name is None:
            return OTHER_ROOM
        if name not in self.rooms and len(self.rooms) < self.settings.rooms_max:
            self.rooms[name] = None
        return name if name in self.rooms else OTHER_ROOM

    def count(self, session: RoomSession) -> None:
        """Count one completed session unless already counted or out of scope."""
        sid = session.id
        if sid in self.counted:  # a later end (it went back in progress) is remembered longer
            self.counted[sid] = max(self.counted[sid], session.end_ts)
            return
        seen = sid in self.acc.tracked or sid in self.seen_in_progress
        if not (seen or session.end_ts > self.acc.watermark(self.settings.lookback)):
            return
        self.counted[sid] = session.end_ts
        if session.end_ts < self.backfill_floor:  # ended while the exporter was down, too long ago
            _add(self.skipped, "backfill_limit")
            self.gap = max(self.gap, session.end_ts)
            return
        reason = session.invalid_reason()
        if reason:
            _add(self.skipped, reason)
            return
        key = session.labels
        cost = session.cost_in_dollars
        if cost is None:  # only from GET, after the listing failed to show it for a lookback
            _add(self.skipped, "missing_cost")
            cost = 0.0
        self.completed[key] = self.completed.get(key, 0) + 1
        self.cost[key] = self.cost.get(key, 0.0) + cost
        if session.cost_in_dollars is not None:  # a cost the log's charge can be compared with
            self.costs.append((sid, cost, session.end_ts))
        duration = session.duration_seconds
        if duration is None:
            _add(self.skipped, "missing_duration")
        else:
            hist = self.durations.get(key) or Histogram.empty(self.settings.buckets)
            self.durations[key] = hist.observe(self.settings.buckets, duration)
        room = self.room(session.name) if self.settings.rooms_enabled else None
        if room is not None:
            self.room_cost[room] = self.room_cost.get(room, 0.0) + cost
        if self.settings.members:
            self.members_due[sid] = MembersDue(*key, session.max_members or 0, room, session.end_ts)
        if self.settings.recordings:
            self.recordings_due[sid] = RecordingsDue(session.end_ts)

    def skip_malformed(self, sid: str | None, started: float) -> None:
        """Count an undecodable completed record once per id (every time when it has none)."""
        if sid is not None and sid in self.counted:
            return
        if sid is not None:  # remembered for one lookback: it has no end time of its own
            self.counted[sid] = started
        _add(self.skipped, "malformed")


def apply(acc: Accounting, obs: Observation, settings: Settings) -> tuple[Accounting, Activity]:
    """Fold one complete poll into the accounting; returns the new state and the gauges."""
    active = dict(obs.in_progress)
    work = _Pass(acc, settings, obs.started, obs.in_progress)
    completed: dict[str, RoomSession] = {s.id: s for s in obs.completed}
    deferred: dict[str, float] = {}
    for sid, session in obs.fetched.items():
        if session is None:
            continue
        if not session.is_completed:
            active.setdefault(sid, _live(session, settings.rooms_enabled))
        elif session.cost_in_dollars is None and session.end_ts >= acc.horizon(settings.lookback):
            deferred[sid] = acc.tracked.get(sid, session.created_ts)  # wait for the listing's cost
        else:
            completed.setdefault(sid, session)
    for sid in completed:
        active.pop(sid, None)

    for session in sorted(completed.values(), key=lambda s: (s.end_ts, s.id)):
        work.count(session)
    tracked_malformed: dict[str, float] = {}
    for bad_id, status in obs.malformed:
        if status == COMPLETED:
            work.skip_malformed(bad_id, obs.started)
        elif bad_id is not None:  # in progress: remember it, count it once it completes
            tracked_malformed[bad_id] = acc.tracked.get(bad_id, obs.started)
            if bad_id not in acc.tracked:
                _add(work.skipped, "malformed")

    activity = _activity(active, work, settings)
    tz = settings.billing.timezone
    if acc.bill is None:  # counting from its start; a state file written before bills: from now
        since = acc.counting_start if acc.last_success is None else obs.started
        bill = new_bill(since, obs.started, settings.billing)
    else:
        bill = with_charges(acc.bill, obs.started, obs.started, settings.billing)
    bill = add_sessions(roll(bill, obs.started, tz), work.costs, work.gap, settings.billing)
    tracked = {sid: live.created for sid, live in active.items()}  # not merged into a new dict:
    room_ids = {sid: live.room_id for sid, live in active.items() if live.room_id is not None}
    for extra in (deferred, tracked_malformed, {sid: acc.tracked[sid] for sid in obs.pending}):
        for sid, created in extra.items():  # not merged: copying 100k entries holds the GIL for ms
            tracked.setdefault(sid, created)
            if sid not in active and sid in acc.room_ids:
                room_ids[sid] = acc.room_ids[sid]
    new = replace(
        acc,
        last_success=obs.started,
        tracked=tracked,
        room_ids=room_ids,
        rooms=tuple(work.rooms),
        totals=replace(
            acc.totals,
            completed=work.completed,
            cost=work.cost,
            durations=work.durations,
            room_cost=work.room_cost,
            skipped=work.skipped,
        ),
        members_due=work.members_due,
        recordings_due=work.recordings_due,
        bill=bill,
    )
    watermark = new.watermark(settings.lookback)
    # A counted session listed in progress again (the API flipped it back) stays remembered
    # while it is tracked, however long that takes: it must never be counted twice.
    counted = {sid: ended for sid, ended in work.counted.items() if ended > watermark or sid in new.tracked}
    return replace(new, counted=counted), activity


def _activity(active: Mapping[str, Live], work: _Pass, settings: Settings) -> Activity:
    counts: dict[Key, int] = {}
    members: dict[Key, int] = {}
    rooms: dict[str, int] = {}
    oldest: float | None = None
    sessions: Iterable[Live] = active.values()
    if settings.rooms_enabled:  # new rooms get their slots in creation order
        sessions = (active[sid] for sid in sorted(active, key=lambda sid: (active[sid].created, sid)))
    for live in sessions:
        key = live.key
        if key is None:
            continue
        counts[key] = counts.get(key, 0) + 1
        members[key] = members.get(key, 0) + live.max_members
        start = live.start
        if start is not None and (oldest is None or start < oldest):
            oldest = start
        if settings.rooms_enabled:
            _add(rooms, work.room(live.room))
    return Activity(counts, members, oldest, rooms)
