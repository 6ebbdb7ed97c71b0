"""Restart-proof state: the accounting of every space in one versioned JSON file.

The file is replaced atomically (temporary file, fsync, rename, fsync of the directory),
so after a crash it holds either the previous poll's state or the new one, never a mix. The
temporary file is created afresh (exclusive create, symlinks not followed, mode 0600).
A file that cannot be used (corrupt, truncated, unreadable, another format version) is
moved aside as ``<path>.corrupt-<timestamp>`` and the exporter starts fresh. Within a usable
file, damage costs only what it touches: a bad counter value is dropped (that series starts
from zero), a space whose entry is otherwise bad starts fresh, and the other spaces resume.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import msgspec

from .bill import Bill
from .ledger import Amount, Count
from .snapshot import (
    DEFAULT_MEMBER_BUCKETS,
    DEFAULT_UTILIZATION_BUCKETS,
    Histogram,
    Key,
    People,
    RecordingTotals,
    Totals,
)
from .state import Accounting, MembersDue, RecordingsDue

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
T = TypeVar("T")


_Histograms = list[tuple[str, str, list[Count], Amount]]  # quality, fps, bucket counts, sum


class _Totals(msgspec.Struct, forbid_unknown_fields=True):
    completed: list[tuple[str, str, Count]]
    cost: list[tuple[str, str, Amount]]
    durations: _Histograms
    room_cost: dict[str, Amount]
    skipped: dict[str, Count]
    # members and recordings (absent from older files)
    members: _Histograms = msgspec.field(default_factory=list)
    peak_members: _Histograms = msgspec.field(default_factory=list)
    utilization: _Histograms = msgspec.field(default_factory=list)
    at_capacity: list[tuple[str, str, Count]] = msgspec.field(default_factory=list)
    member_seconds: list[tuple[str, str, Amount]] = msgspec.field(default_factory=list)
    member_cost: list[tuple[str, str, Amount]] = msgspec.field(default_factory=list)
    room_member_seconds: dict[str, Amount] = msgspec.field(default_factory=dict)
    member_skipped: dict[str, Count] = msgspec.field(default_factory=dict)
    recordings: dict[str, Amount] = msgspec.field(default_factory=dict)  # count, seconds, bytes, cost
    recording_skipped: dict[str, Count] = msgspec.field(default_factory=dict)


class _Space(msgspec.Struct, forbid_unknown_fields=True):
    counting_start: float
    last_success: float | None
    tracked: dict[str, float]
    counted: dict[str, float]
    rooms: list[str]
    buckets: list[float]
    totals: _Totals
    # absent from older files
    room_ids: dict[str, str] = msgspec.field(default_factory=dict)
    member_buckets: list[float] = msgspec.field(default_factory=list)
    utilization_buckets: list[float] = msgspec.field(default_factory=list)
    members_due: dict[str, MembersDue] = msgspec.field(default_factory=dict)
    recordings_due: dict[str, RecordingsDue] = msgspec.field(default_factory=dict)
    bill: Bill | None = None


class _File(msgspec.Struct, Generic[T], forbid_unknown_fields=True):
    version: int
    written_at: float
    spaces: dict[str, T]  # read as raw JSON first, so each space is decoded on its own


class _Version(msgspec.Struct):
    version: int


def _rows(values: typing.Mapping[Key, Any]) -> list[Any]:
    return [(q, f, v) for (q, f), v in values.items()]


def _histogram_rows(values: typing.Mapping[Key, Histogram]) -> _Histograms:
    return [(q, f, list(h.counts), h.total) for (q, f), h in values.items()]


def _encode_space(acc: Accounting, bounds: _Bounds) -> _Space:
    t, p, r = acc.totals, acc.totals.people, acc.totals.recordings
    return _Space(
        counting_start=acc.counting_start,
        last_success=acc.last_success,
        tracked=dict(acc.tracked),
        counted=dict(acc.counted),
        rooms=list(acc.rooms),
        room_ids=dict(acc.room_ids),
        buckets=list(bounds.durations),
        member_buckets=list(bounds.members),
        utilization_buckets=list(bounds.utilization),
        members_due=dict(acc.members_due),
        recordings_due=dict(acc.recordings_due),
        bill=acc.bill,
        totals=_Totals(
            completed=_rows(t.completed),
            cost=_rows(t.cost),
            durations=_histogram_rows(t.durations),
            room_cost=dict(t.room_cost),
            skipped=dict(t.skipped),
            members=_histogram_rows(p.members),
            peak_members=_histogram_rows(p.peak),
            utilization=_histogram_rows(p.utilization),
            at_capacity=_rows(p.at_capacity),
            member_seconds=_rows(p.seconds),
            member_cost=_rows(p.cost),
            room_member_seconds=dict(p.room_seconds),
            member_skipped=dict(p.skipped),
            recordings={"count": r.count, "seconds": r.seconds, "bytes": r.bytes, "cost": r.cost},
            recording_skipped=dict(r.skipped),
        ),
    )


# Each field of _Totals is a list or a mapping of counter values: the type of one of them.
_COUNTER_TYPES = {
    key: typing.get_args(kind)[-1]
    for key, kind in typing.get_type_hints(_Totals, include_extras=True).items()
}
_space_decoder = msgspec.json.Decoder(_Space)
# Entries of a space that can be dropped alone: each costs only requests (room_ids: GET tells a
# vanished session's room), the members/recordings of a few sessions, or the bill (it starts
# anew: its counters from zero, the sessions' figures incomplete until the next month, the
# charges' until the month is read back).
_OPTIONAL: dict[str, Any] = {
    "room_ids": dict[str, str],
    "members_due": dict[str, MembersDue],
    "recordings_due": dict[str, RecordingsDue],
    "bill": Bill | None,
}


@dataclass(frozen=True)
class _Bounds:
    """The bucket bounds the histograms in the file must have."""

    durations: tuple[float, ...]
    members: tuple[float, ...] = DEFAULT_MEMBER_BUCKETS
    utilization: tuple[float, ...] = DEFAULT_UTILIZATION_BUCKETS


def _read_space(name: str, raw: msgspec.Raw) -> _Space | None:
    """One space's entry without its bad counter values; None (logged) when the rest is bad too."""
    try:
        return _space_decoder.decode(raw)
    except msgspec.DecodeError:
        pass
    try:
        entry = msgspec.json.decode(raw)
        if isinstance(entry, dict) and isinstance(entry.get("totals"), dict):
            entry["totals"] = {**entry["totals"], **_usable_counters(entry["totals"], name)}
        for key, kind in _OPTIONAL.items():  # each costs little: dropped alone
            if isinstance(entry, dict) and not _is_valid(entry.get(key, {}), kind, name, key):
                del entry[key]
        return msgspec.convert(entry, _Space)
    except msgspec.DecodeError as exc:  # a ValidationError is a DecodeError too
        log.error("state file: the state of space %s is not valid (%s); it starts fresh", name, exc)
        return None


def _usable_counters(totals: dict[str, Any], space: str) -> dict[str, Any]:
    """The counter collections of ``totals`` without the values that are not valid counters."""
    usable: dict[str, Any] = {}
    for key, kind in _COUNTER_TYPES.items():
        values = totals.get(key)
        if isinstance(values, list):
            usable[key] = [v for v in values if _is_valid(v, kind, space, key)]
        elif isinstance(values, dict):
            usable[key] = {k: v for k, v in values.items() if _is_valid(v, kind, space, f"{key}[{k!r}]")}
    return usable


def _is_valid(value: object, kind: Any, space: str, key: str) -> bool:
    try:
        msgspec.convert(value, kind)
        return True
    except msgspec.ValidationError as exc:
        shown = msgspec.json.encode(value).decode()
        log.error("state file: space %s: dropping %s %s (%s); it starts from zero", space, key, shown, exc)
        return False


def _histograms(
    rows: _Histograms, stored: list[float], bounds: tuple[float, ...], name: str, what: str
) -> dict[Key, Histogram]:
    """Histograms by key; none when their buckets changed, none of a key whose counts do not fit."""
    histograms = {(q, f): Histogram(tuple(c), total) for q, f, c, total in rows}
    if histograms and tuple(stored) != bounds:
        log.warning(
            "space %s: metrics.%s_buckets changed since the state was written; "
            "the %s histogram starts again from zero (other counters continue)",
            name,
            what,
            what,
        )
        return {}
    if mismatched := [key for key, h in histograms.items() if len(h.counts) != len(bounds) + 1]:
        log.error(
            "state file: space %s: dropping the %s histogram of %s, whose bucket counts do not "
            "match its buckets; it starts from zero",
            name,
            what,
            mismatched,
        )
    return {key: h for key, h in histograms.items() if key not in mismatched}


def _decode_space(space: _Space, bounds: _Bounds, name: str) -> Accounting:
    t = space.totals
    member_histograms = {
        field: _histograms(getattr(t, field), space.member_buckets, bounds.members, name, "member")
        for field in ("members", "peak_members")
    }
    recordings = t.recordings
    return Accounting(
        counting_start=space.counting_start,
        last_success=space.last_success,
        tracked=space.tracked,
        room_ids=space.room_ids,
        counted=space.counted,
        rooms=tuple(space.rooms),
        members_due=space.members_due,
        recordings_due=space.recordings_due,
        bill=space.bill,
        totals=Totals(
            completed={(q, f): n for q, f, n in t.completed},
            cost={(q, f): v for q, f, v in t.cost},
            durations=_histograms(t.durations, space.buckets, bounds.durations, name, "duration"),
            room_cost=t.room_cost,
            skipped=t.skipped,
            people=People(
                members=member_histograms["members"],
                peak=member_histograms["peak_members"],
                utilization=_histograms(
                    t.utilization, space.utilization_buckets, bounds.utilization, name, "utilization"
                ),
                at_capacity={(q, f): n for q, f, n in t.at_capacity},
                seconds={(q, f): v for q, f, v in t.member_seconds},
                cost={(q, f): v for q, f, v in t.member_cost},
                room_seconds=t.room_member_seconds,
                skipped=t.member_skipped,
            ),
            recordings=RecordingTotals(
                count=int(recordings.get("count", 0)),
                seconds=recordings.get("seconds", 0.0),
                bytes=int(recordings.get("bytes", 0)),
                cost=recordings.get("cost", 0.0),
                skipped=t.recording_skipped,
            ),
        ),
    )


def check_state_path(path: str) -> str | None:
    """Why the state file cannot be written at ``path``, or None when it can."""
    target = Path(path)
    directory = target.parent
    if target.is_dir():
        return f"{path} is a directory"
    if not directory.is_dir():
        return f"directory {directory} does not exist"
    if not os.access(directory, os.W_OK | os.X_OK):
        return f"directory {directory} is not writable"
    if target.exists() and not os.access(target, os.R_OK | os.W_OK):
        return f"{path} is not readable and writable"
    return None


class StateFile:
    """The state of every configured space, loaded once and rewritten after each poll."""

    def __init__(
        self,
        path: str,
        buckets: tuple[float, ...],
        clock: Callable[[], float] = time.time,
        member_buckets: tuple[float, ...] = DEFAULT_MEMBER_BUCKETS,
        utilization_buckets: tuple[float, ...] = DEFAULT_UTILIZATION_BUCKETS,
    ) -> None:
        """``buckets``: the duration histogram's bounds; the others those of the member histograms."""
        self.path, self.clock = Path(path), clock
        self.bounds = _Bounds(buckets, member_buckets, utilization_buckets)
        self._lock = threading.Lock()
        self._spaces: dict[str, _Space] = {}

    def load(self, names: Iterable[str]) -> dict[str, Accounting]:
        """The stored accounting of each named space; spaces no longer configured are dropped."""
        wanted = set(names)
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            log.info("state file %s does not exist yet; counting starts now", self.path)
            return {}
        except OSError as exc:
            return self._set_aside(f"cannot read it: {exc.strerror}")
        try:
            version = msgspec.json.decode(data, type=_Version).version
            if version != FORMAT_VERSION:
                return self._set_aside(f"format version {version}, this exporter reads {FORMAT_VERSION}")
            stored = msgspec.json.decode(data, type=_File[msgspec.Raw])
        except msgspec.DecodeError as exc:
            return self._set_aside(f"it is not a valid state file ({exc})")
        for name in stored.spaces.keys() - wanted:
            log.info("state file: dropping the state of space %s, which is no longer configured", name)
        readable = {n: _read_space(n, raw) for n, raw in stored.spaces.items() if n in wanted}
        self._spaces = {n: s for n, s in readable.items() if s is not None}
        loaded = {n: _decode_space(s, self.bounds, n) for n, s in self._spaces.items()}
        log.info("state file %s: resuming %d space(s)", self.path, len(loaded))
        return loaded

    def save(self, name: str, accounting: Accounting) -> None:
        """Store one space's accounting and rewrite the file atomically; raises OSError."""
        with self._lock:
            spaces = {**self._spaces, name: _encode_space(accounting, self.bounds)}
            document = _File(version=FORMAT_VERSION, written_at=self.clock(), spaces=spaces)
            _write_atomically(self.path, msgspec.json.encode(document))
            self._spaces = spaces

    def _set_aside(self, reason: str) -> dict[str, Accounting]:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self.clock()))
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        try:
            os.replace(self.path, aside)
            where = f"moved it to {aside}"
        except OSError as exc:
            where = f"could not move it aside ({exc.strerror}); it will be overwritten"
        log.error("state file %s is unusable: %s; %s and starting fresh", self.path, reason, where)
        return {}


def _write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to a new ``<path>.tmp`` (mode 0600), fsync it, rename it over ``path``.

    Whatever is at ``<path>.tmp`` (a crashed write's leftover, or a planted symlink) is removed,
    never written through: the file is created exclusively, without following a symlink, and a
    file left there by someone in between fails the write instead.
    """
    temporary = path.with_name(f"{path.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temporary)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    descriptor = os.open(temporary, flags, 0o600)
    try:
        with open(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
