"""Typed room sessions, members, recordings and video logs decoded from API pages (msgspec: one
pass, unknown fields ignored).

Only the fields the exporter uses are declared. Nullable fields are nullable as in the
spec; fields the spec marks required but the exporter can do without default to None,
so the summary form of ``GET /room_sessions/{id}`` (no cost) decodes with the same type.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar
from urllib.parse import unquote, urlsplit

import msgspec

from .snapshot import FPS_VALUES, KEYS, OTHER, QUALITIES, UNKNOWN, Key

IN_PROGRESS, COMPLETED = "in-progress", "completed"
TIMESTAMP_RESOLUTION = 1.0  # API timestamps carry whole seconds
T = TypeVar("T")
# The sane range of a record's numbers; outside it (or not finite) the record is not counted.
# With these bounds no counter can overflow: adding $1e6 or a year to the largest finite float
# rounds back to it, so every counter stays finite and the state file can always store it.
MAX_COST = 1_000_000.0  # dollars per session
MAX_DURATION = 365 * 86400.0  # seconds: a year (31,536,000 s)
MAX_MEMBERS = 1_000_000  # per session; keeps the summed gauge exact as a float
MAX_RECORDING_BYTES = 10**15  # a petabyte: any larger recording is a bad record, not a file
ROOM_SESSIONS_PATH = "/api/video/room_sessions"  # a room-session log's url ends with it and the id
LOG_KINDS = {"video_room_session": "room_session", "video_conference_session": "conference_session"}


_SHARED = {key: key for key in KEYS}  # one tuple per label pair, not one per session
# (quality, fps) as the API sends them -> their label pair: one lookup for the usual values
_LABELS: dict[tuple[str | float | None, ...], Key] = {
    (q, f): key
    for key in KEYS
    for q in ((key[0],) if key[0] in QUALITIES else (None,) if key[0] == UNKNOWN else ())
    for f in ((key[1], float(key[1])) if key[1] in FPS_VALUES else (None,) if key[1] == UNKNOWN else ())
}


def _epoch(value: datetime | None) -> float | None:
    if value is None:
        return None
    if value.tzinfo is None:  # the API writes UTC; a missing offset means UTC, not local time
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


class RoomSession(msgspec.Struct, frozen=True, gc=False):
    """One room session as the list (or get) endpoint returns it.

    ``gc=False``: its fields are scalars, strings and datetimes, so it can never be part of a
    reference cycle, and a 100k-session poll no longer triggers full garbage collections that
    stall scrapes.
    """

    id: str
    created_at: datetime
    status: str | None = None
    name: str | None = None
    room_id: str | None = None
    quality: str | None = None
    fps: str | float | None = None  # the spec says "20"; a real response carried 20
    max_members: int | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    updated_at: datetime | None = None
    duration: float | None = None
    cost_in_dollars: float | None = None  # absent in the summary form

    @property
    def is_completed(self) -> bool:
        """Completed by status, or (status null) by having an end time."""
        return self.status == COMPLETED or (self.status is None and self.end_time is not None)

    @property
    def quality_label(self) -> str:
        """``quality`` as a bounded label value: 720p, 1080p, unknown (null) or other."""
        if self.quality is None:
            return UNKNOWN
        return self.quality if self.quality in QUALITIES else OTHER

    @property
    def fps_label(self) -> str:
        """``fps`` as a bounded label value: 20, 30, unknown (null) or other."""
        if self.fps is None:
            return UNKNOWN
        text = self.fps if isinstance(self.fps, str) else f"{self.fps:g}"
        return text if text in FPS_VALUES else OTHER

    @property
    def labels(self) -> Key:
        """(``quality_label``, ``fps_label``), one shared tuple per pair."""
        return _LABELS.get((self.quality, self.fps)) or _SHARED[self.quality_label, self.fps_label]

    @property
    def created_ts(self) -> float:
        """``created_at`` in epoch seconds."""
        return _epoch(self.created_at) or 0.0

    @property
    def start_ts(self) -> float | None:
        """``start_time`` in epoch seconds, None when unknown."""
        return _epoch(self.start_time)

    @property
    def end_ts(self) -> float:
        """When the session ended: ``end_time``, else ``updated_at``, else ``created_at``."""
        return _epoch(self.end_time) or _epoch(self.updated_at) or self.created_ts

    @property
    def duration_seconds(self) -> float | None:
        """``duration``, or end minus start when the API left it null."""
        if self.end_time is None:  # in progress: no start time to parse
            return self.duration
        return _span(self.duration, self.start_ts, _epoch(self.end_time))

    def invalid_reason(self) -> str | None:
        """Why the numbers of this record cannot be counted, or None when they can."""
        duration = self.duration  # what duration_seconds is, without an end time
        if self.end_time is not None:
            if _backwards(self.start_ts, _epoch(self.end_time)):
                return "invalid_times"
            duration = self.duration_seconds
        # A comparison with NaN is false, so NaN fails each range check below, like infinities.
        cost = self.cost_in_dollars
        if cost is not None and not 0 <= cost <= MAX_COST:
            return "invalid_cost"
        if duration is not None and not 0 <= duration <= MAX_DURATION:
            return "invalid_duration"
        if self.max_members is not None and not 0 <= self.max_members <= MAX_MEMBERS:
            return "invalid_max_members"
        return None


class Member(msgspec.Struct, frozen=True, gc=False):
    """One member of a room session, as ``GET /room_sessions/{id}/members`` lists it.

    ``leave_time`` is null while the member is present, ``duration`` null if it never joined.
    """

    id: str
    room_session_id: str | None = None
    name: str | None = None
    join_time: datetime | None = None
    leave_time: datetime | None = None
    duration: float | None = None
    cost_in_dollars: float | None = None

    @property
    def join_ts(self) -> float | None:
        """``join_time`` in epoch seconds, None when it never joined."""
        return _epoch(self.join_time)

    @property
    def leave_ts(self) -> float | None:
        """``leave_time`` in epoch seconds, None while present (or never joined)."""
        return _epoch(self.leave_time)

    @property
    def seconds(self) -> float | None:
        """``duration``, or leave minus join when the API left it null and both times exist."""
        return _span(self.duration, self.join_ts, self.leave_ts)

    @property
    def joined(self) -> bool:
        """Whether the member ever joined (``join_time`` not null)."""
        return self.join_time is not None

    def invalid_reason(self) -> str | None:
        """Why this member's numbers cannot be counted, or None when they can.

        ``invalid_times``: it left before it joined; ``invalid_duration``: ``seconds`` outside
        0..MAX_DURATION; ``invalid_cost``: a cost outside 0..MAX_COST (NaN and infinities fail
        both ranges). A null duration or cost is not invalid: it adds nothing.
        """
        if _backwards(self.join_ts, self.leave_ts):
            return "invalid_times"
        seconds, cost = self.seconds, self.cost_in_dollars
        if seconds is not None and not 0 <= seconds <= MAX_DURATION:
            return "invalid_duration"
        if cost is not None and not 0 <= cost <= MAX_COST:
            return "invalid_cost"
        return None


class Recording(msgspec.Struct, frozen=True, gc=False):
    """One recording of a room session, as ``GET /room_sessions/{id}/recordings`` lists it.

    ``status`` goes ``recording`` (or ``paused``), ``processing``, then ``completed``; only a
    completed recording has its final duration, size and cost.
    """

    id: str
    room_session_id: str | None = None
    status: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration: float | None = None
    size_in_bytes: int | None = None
    format: str | None = None
    cost_in_dollars: float | None = None

    @property
    def is_completed(self) -> bool:
        """Whether the recording is final (status ``completed``)."""
        return self.status == COMPLETED

    @property
    def seconds(self) -> float | None:
        """``duration``, or finished minus started when the API left it null and both times exist."""
        return _span(self.duration, _epoch(self.started_at), _epoch(self.finished_at))

    def invalid_reason(self) -> str | None:
        """Why this completed recording cannot be counted, or None when it can (or is not completed).

        ``invalid_times``: finished before it started; ``missing_duration``: no duration and no
        times to derive it from; ``invalid_duration``: outside 0..MAX_DURATION; ``invalid_size``:
        a size null, negative or above MAX_RECORDING_BYTES; ``invalid_cost``: a cost null or
        outside 0..MAX_COST. NaN and infinities fail every range.
        """
        if not self.is_completed:
            return None
        if _backwards(_epoch(self.started_at), _epoch(self.finished_at)):
            return "invalid_times"
        seconds, size, cost = self.seconds, self.size_in_bytes, self.cost_in_dollars
        if seconds is None:
            return "missing_duration"
        if not 0 <= seconds <= MAX_DURATION:
            return "invalid_duration"
        if size is None or not 0 <= size <= MAX_RECORDING_BYTES:
            return "invalid_size"
        if cost is None or not 0 <= cost <= MAX_COST:
            return "invalid_cost"
        return None


class ChargeDetail(msgspec.Struct, frozen=True, gc=False):
    """One part of a video log's charge: what it is for (``description``) and how much (dollars)."""

    description: str | None = None
    charge: float | None = None


class VideoLog(msgspec.Struct, frozen=True, gc=False):
    """One video log, as ``GET /api/video/logs`` lists it: the bill of one room or conference session.

    ``status`` is ``in-progress``, ``completed`` or null; the charge is final once completed. A
    deleted log (listed only with ``include_deleted``) carries only ``id``, ``discarded_at`` and
    ``created_at``.
    """

    id: str
    created_at: datetime  # required by the spec of both forms: a log without it is malformed
    type: str | None = None
    url: str | None = None
    room_name: str | None = None
    status: str | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    charge: float | None = None
    charge_details: list[ChargeDetail] | None = None
    discarded_at: datetime | None = None

    @property
    def kind(self) -> str:
        """``type`` as a bounded label value: room_session, conference_session or other."""
        return LOG_KINDS.get(self.type or "", OTHER)

    @property
    def session_id(self) -> str | None:
        """The room session's id when ``url``'s path ends with ``/api/video/room_sessions/<id>``."""
        try:
            path = urlsplit(self.url or "").path
        except ValueError:  # an invalid IPv6 host
            return None
        head, _, session_id = path.rpartition("/")
        return unquote(session_id) if session_id and head.endswith(ROOM_SESSIONS_PATH) else None

    @property
    def deleted(self) -> bool:
        """Whether the log was deleted (``discarded_at`` set)."""
        return self.discarded_at is not None

    @property
    def completed(self) -> bool:
        """Completed by status, or (status null) by having an end time, as a room session."""
        return self.status == COMPLETED or (self.status is None and self.ended_at is not None)

    @property
    def watched(self) -> bool:
        """In progress by status (``in-progress``, or null without an end time) and not deleted: to be
        watched until completed (a log of a status the spec lacks is not)."""
        return not self.deleted and not self.completed and self.status in (IN_PROGRESS, None)

    @property
    def created_ts(self) -> float:
        """``created_at`` in epoch seconds."""
        return _epoch(self.created_at) or 0.0

    @property
    def ended_ts(self) -> float | None:
        """``ended_at`` in epoch seconds, None while in progress."""
        return _epoch(self.ended_at)

    def invalid_reason(self) -> str | None:
        """Why this completed log's charge cannot be counted, or None when it can (or is not completed).

        ``invalid_charge``: a charge null or outside 0..MAX_COST; ``invalid_charge_details``: a
        detail whose charge is null or outside 0..MAX_COST. NaN and infinities fail both ranges.
        Null or empty details are not invalid.
        """
        if not self.completed:
            return None
        if self.charge is None or not 0 <= self.charge <= MAX_COST:
            return "invalid_charge"
        if any(d.charge is None or not 0 <= d.charge <= MAX_COST for d in self.charge_details or ()):
            return "invalid_charge_details"
        return None


def _span(duration: float | None, start: float | None, end: float | None) -> float | None:
    """``duration``, else ``end - start`` when both are known, else None."""
    if duration is not None or start is None or end is None:
        return duration
    return end - start


def _backwards(start: float | None, end: float | None) -> bool:
    """Whether both times are known and ``end`` comes before ``start``."""
    return start is not None and end is not None and end < start


class Links(msgspec.Struct, frozen=True):
    """Pagination links; only ``next`` matters (absent on the last page)."""

    next: str | None = None


class _Page(msgspec.Struct, Generic[T], frozen=True):
    links: Links
    data: list[T]


class InvalidResponse(Exception):
    """A response body that is not what the spec promises."""


class _Ident(msgspec.Struct, frozen=True):
    id: str


class _LogStub(msgspec.Struct, frozen=True):
    """What a malformed log record must still tell to be watched while in progress."""

    id: str
    created_at: datetime
    status: Any = None
    ended_at: Any = None
    discarded_at: Any = None


def _salvage_log(item: msgspec.Raw | bytes) -> VideoLog | None:
    """A malformed log record in progress as a log with only its id, creation time and status
    (nothing else of a log in progress is counted), so that it is watched until it completes;
    None for any other malformed record."""
    try:
        stub = _log_stub_decoder.decode(item)
    except msgspec.DecodeError:
        return None
    log = VideoLog(stub.id, stub.created_at, status=stub.status)
    # Whether it is watched depends on whether it has an end time or was deleted (valid or not), not on when.
    ended = None if stub.ended_at is None else stub.created_at
    deleted = None if stub.discarded_at is None else stub.created_at
    return log if msgspec.structs.replace(log, ended_at=ended, discarded_at=deleted).watched else None


_session_decoder = msgspec.json.Decoder(RoomSession)
_log_decoder = msgspec.json.Decoder(VideoLog)
_raw_page_decoder = msgspec.json.Decoder(_Page[msgspec.Raw])
_ident_decoder = msgspec.json.Decoder(_Ident)
_log_stub_decoder = msgspec.json.Decoder(_LogStub)


class _PageDecoder(Generic[T]):
    """Decodes the pages of one listing whose records are ``T``s (see :func:`decode_page`)."""

    def __init__(
        self,
        page: type[_Page[T]],
        record: type[T],
        listing: str,
        salvage: Callable[[msgspec.Raw], T | None] | None = None,
    ) -> None:
        self._page = msgspec.json.Decoder(page)
        self._record = msgspec.json.Decoder(record)
        self._listing = listing
        self._salvage = salvage

    def __call__(self, body: bytes) -> tuple[list[T], str | None, list[str | None]]:
        try:  # the usual case: the whole page in one pass
            page = self._page.decode(body)
            return page.data, page.links.next, []
        except msgspec.DecodeError:
            pass
        try:
            raw = _raw_page_decoder.decode(body)
        except msgspec.DecodeError as exc:
            raise InvalidResponse(f"not a {self._listing} page: {exc}") from None
        records: list[T] = []
        malformed: list[str | None] = []
        for item in raw.data:
            try:
                records.append(self._record.decode(item))
            except msgspec.DecodeError:
                salvaged = self._salvage(item) if self._salvage else None
                if salvaged is None:
                    malformed.append(_ident(item))
                else:
                    records.append(salvaged)
        return records, raw.links.next, malformed


def _ident(item: msgspec.Raw) -> str | None:
    try:
        return _ident_decoder.decode(item).id
    except msgspec.DecodeError:
        return None


_sessions_page = _PageDecoder(_Page[RoomSession], RoomSession, "room-sessions")
_members_page = _PageDecoder(_Page[Member], Member, "members")
_recordings_page = _PageDecoder(_Page[Recording], Recording, "recordings")
_logs_page = _PageDecoder(_Page[VideoLog], VideoLog, "logs", _salvage_log)


def decode_page(body: bytes) -> tuple[list[RoomSession], str | None, list[str | None]]:
    """Decode a list page into (sessions, next link, ids of malformed records).

    A malformed record is set apart (with its id where it has a usable one), never fatal;
    a malformed page raises InvalidResponse.
    """
    return _sessions_page(body)


def decode_members_page(body: bytes) -> tuple[list[Member], str | None, list[str | None]]:
    """Decode a members page into (members, next link, ids of malformed records), as decode_page."""
    return _members_page(body)


def decode_recordings_page(body: bytes) -> tuple[list[Recording], str | None, list[str | None]]:
    """Decode a recordings page into (recordings, next link, ids of malformed records), as decode_page."""
    return _recordings_page(body)


def decode_logs_page(body: bytes) -> tuple[list[VideoLog], str | None, list[str | None]]:
    """Decode a video logs page into (logs, next link, ids of malformed records), as decode_page;
    a malformed log in progress is kept as its id, creation time and status."""
    return _logs_page(body)


def decode_log(body: bytes) -> VideoLog:
    """Decode the body of ``GET /api/video/logs/{id}`` (a malformed log in progress as in
    :func:`decode_logs_page`)."""
    try:
        return _log_decoder.decode(body)
    except msgspec.DecodeError as exc:
        salvaged = _salvage_log(body)
        if salvaged is None:
            raise InvalidResponse(f"not a video log: {exc}") from None
        return salvaged


def decode_session(body: bytes) -> RoomSession:
    """Decode the body of ``GET /room_sessions/{id}``."""
    try:
        return _session_decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise InvalidResponse(f"not a room session: {exc}") from None
