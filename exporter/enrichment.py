"""Members and recordings of counted sessions: read after a session is counted, folded in once.

With ``members.enabled`` (``recordings.enabled``) counting a session queues it in
``Accounting.members_due`` (``recordings_due``). Each poll reads what its request budget allows,
oldest first, and :func:`apply_enrichment` folds those reads into the totals and takes the
sessions off the queues in the same step: a session's members count exactly once, each
recording once by id, and the queues survive restarts in the state file. A session whose
recordings are not all completed stays queued and is read again by later polls, for at most
``recordings.max_wait`` after it ended; what is still not completed then is skipped as
``recording_timeout``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from .models import Member, Recording
from .snapshot import Histogram, People, RecordingTotals
from .state import Accounting, RecordingsDue, Settings


@dataclass(frozen=True)
class MemberSummary:
    """What one session's members listing shows, reduced to the figures that are counted."""

    joined: int = 0  # distinct members (by id) who joined
    peak: int = 0  # most members present at once
    seconds: float = 0.0  # participant-seconds
    cost: float = 0.0
    skipped: Mapping[str, int] = field(default_factory=dict)  # records left out, by reason


def summarize_members(members: Iterable[Member], malformed: int = 0) -> MemberSummary:
    """Distinct members by id; bad records are skipped by reason, never counted.

    The peak sweeps joins (+1) and leaves (-1) in time order, leaves first at equal times; a
    member without a leave time stays present to the end.
    """
    skipped = {"malformed": malformed} if malformed else {}
    seen: set[str] = set()
    joined: set[str] = set()
    events: list[tuple[float, int]] = []
    seconds = cost = 0.0
    for member in members:
        if member.id in seen:
            continue
        seen.add(member.id)
        reason = member.invalid_reason()
        if reason:
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        seconds += member.seconds or 0.0
        cost += member.cost_in_dollars or 0.0
        join, leave = member.join_ts, member.leave_ts
        if join is not None:
            joined.add(member.id)
            if leave is None or leave > join:  # present for no time: never with anyone at once
                events.append((join, 1))
                if leave is not None:
                    events.append((leave, -1))
    present = peak = 0
    for _, step in sorted(events):  # at equal times -1 sorts before +1
        present += step
        peak = max(peak, present)
    return MemberSummary(len(joined), peak, seconds, cost, skipped)


@dataclass(frozen=True)
class RecordingRead:
    """One session's recordings listing: the records, and ids (or None) of undecodable ones."""

    recordings: list[Recording]
    malformed: list[str | None] = field(default_factory=list)


@dataclass(frozen=True)
class Enrichment:
    """The members and recordings one poll read, by session id; None: the session no longer
    exists (404), so it leaves its queue with nothing counted."""

    started: float
    members: Mapping[str, MemberSummary | None] = field(default_factory=dict)
    recordings: Mapping[str, RecordingRead | None] = field(default_factory=dict)


def _add(mapping: dict[str, int], additions: Mapping[str, int]) -> None:
    for key, amount in additions.items():
        mapping[key] = mapping.get(key, 0) + amount


def _fold_members(acc: Accounting, read: Mapping[str, MemberSummary | None], settings: Settings) -> People:
    p = acc.totals.people
    members, peaks, ratios, full = dict(p.members), dict(p.peak), dict(p.utilization), dict(p.at_capacity)
    seconds, cost, room_seconds, skipped = (
        dict(p.seconds),
        dict(p.cost),
        dict(p.room_seconds),
        dict(p.skipped),
    )
    empty_members = Histogram.empty(settings.member_buckets)
    for sid, summary in read.items():
        if summary is None:
            _add(skipped, {"session_gone": 1})
            continue
        due = acc.members_due[sid]
        key = (due.quality, due.fps)
        members[key] = members.get(key, empty_members).observe(settings.member_buckets, summary.joined)
        peaks[key] = peaks.get(key, empty_members).observe(settings.member_buckets, summary.peak)
        if due.max_members > 0:
            ratio = summary.peak / due.max_members
            hist = ratios.get(key) or Histogram.empty(settings.utilization_buckets)
            ratios[key] = hist.observe(settings.utilization_buckets, ratio)
            if summary.peak >= due.max_members:
                full[key] = full.get(key, 0) + 1
        seconds[key] = seconds.get(key, 0.0) + summary.seconds
        cost[key] = cost.get(key, 0.0) + summary.cost
        if due.room is not None:
            room_seconds[due.room] = room_seconds.get(due.room, 0.0) + summary.seconds
        _add(skipped, summary.skipped)
    return People(members, peaks, ratios, full, seconds, cost, room_seconds, skipped)


def _fold_recordings(
    acc: Accounting, enrichment: Enrichment, settings: Settings
) -> tuple[RecordingTotals, dict[str, RecordingsDue]]:
    r = acc.totals.recordings
    count, seconds, size, cost, skipped = r.count, r.seconds, r.bytes, r.cost, dict(r.skipped)
    due = dict(acc.recordings_due)
    for sid, read in enrichment.recordings.items():
        if read is None:
            del due[sid]
            _add(skipped, {"session_gone": 1})
            continue
        entry = due[sid]
        done, pending = set(entry.done), 0
        for rec in read.recordings:
            if rec.id in done:
                continue
            if not rec.is_completed:
                pending += 1
                continue
            done.add(rec.id)
            reason = rec.invalid_reason()
            if reason:
                _add(skipped, {reason: 1})
                continue
            count, seconds = count + 1, seconds + (rec.seconds or 0.0)
            size, cost = size + (rec.size_in_bytes or 0), cost + (rec.cost_in_dollars or 0.0)
        first_read = not entry.done and not entry.pending
        for bad in read.malformed:  # one without an id is counted at the session's first read only
            if (bad is None and first_read) or (bad is not None and bad not in done):
                _add(skipped, {"malformed": 1})
                if bad is not None:
                    done.add(bad)
        if pending and enrichment.started - entry.ended > settings.recording_max_wait:
            _add(skipped, {"recording_timeout": pending})
            pending = 0
        if pending:
            due[sid] = RecordingsDue(entry.ended, tuple(sorted(done)), pending)
        else:
            del due[sid]
    return RecordingTotals(count, seconds, size, cost, skipped), due


def apply_enrichment(acc: Accounting, enrichment: Enrichment, settings: Settings) -> Accounting:
    """Fold one poll's member and recording reads into the accounting (pure, like ``apply``)."""
    people = _fold_members(acc, enrichment.members, settings) if enrichment.members else acc.totals.people
    recordings, recordings_due = _fold_recordings(acc, enrichment, settings)
    members_due = {sid: due for sid, due in acc.members_due.items() if sid not in enrichment.members}
    if not settings.members:  # turned off: what was queued is not read any more
        members_due = {}
    if not settings.recordings:
        recordings_due = {}
    return replace(
        acc,
        totals=replace(acc.totals, people=people, recordings=recordings),
        members_due=members_due,
        recordings_due=recordings_due,
    )


def recordings_pending(acc: Accounting) -> int:
    """Recordings of counted sessions not completed at their latest read."""
    return sum(due.pending for due in acc.recordings_due.values())
