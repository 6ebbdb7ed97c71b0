"""A simulated SignalWire space serving the Video room-sessions REST API: the backend of ``--demo``.

Real HTTP on 127.0.0.1 (stdlib only): lists with filters and cursor pagination as the API pages
them, GET by id, each session's members and recordings (paginated the same way), the video logs
(one per session, charged its cost once it completes; filtered by creation time), Basic auth.
Sessions, members and recordings are scripted (``add_session``, ``complete_session``,
``add_member``, ``add_recording``) or kept coming and going by ``run_traffic``, which also bills a
few conferences and, now and then, charges a session a cent more than it cost. Subclasses change
how requests are answered through ``handler``, ``_respond`` and ``_links`` (the tests' fake API
does, in ``tests/support``).
"""

from __future__ import annotations

import base64
import contextlib
import heapq
import itertools
import json
import math
import random
import re
import threading
import time
import uuid
from bisect import bisect_left, bisect_right, insort
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from enum import Enum
from functools import partial
from http.client import responses
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from operator import attrgetter
from typing import Any, ClassVar, Literal, Protocol, cast
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

LIST_PATH = "/api/video/room_sessions"
STATUSES = ("in-progress", "completed")
LIST_ONLY_FIELDS = ("cost_in_dollars", "enable_room_previews", "locked_cover")
FILTERS = ("room_id", "room_name", "room_name_matches", "status")
LOGS_PATH = "/api/video/logs"
LOG_FILTERS = ("created_after", "created_before", "created_on", "include_deleted")
ANY_TIME = (-math.inf, math.inf)  # (from, until): the creation times a listing is narrowed to
ERROR_DOCS = "https://developer.signalwire.com/rest/overview/error-codes"
# Demo traffic: rooms with their capacity (max_members), and weighted quality/fps choices.
QUALITY_MIX: tuple[tuple[str | None, ...], tuple[int, ...]] = (("720p", "1080p", None), (5, 4, 1))
FPS_MIX: tuple[tuple[str | int, ...], tuple[int, ...]] = (("30", "20", 20), (6, 3, 1))
ROOMS = {
    "standup": 10,
    "all-hands": 100,
    "sales-demo": 5,
    "support-desk": 8,
    "design-review": 20,
    "onboarding": 25,
    "office-hours": 50,
    "board-room": 12,
}
ENDED_AT_START = 3  # seeded live sessions that end the moment traffic starts: a first poll counts them
# Demo people: a share of sessions fill their room (max_members), a few members never join, a
# share of sessions is recorded; members cost by the minute, recordings by the minute and size.
FULL_SHARE, NO_SHOW_SHARE, RECORDED_SHARE = 0.25, 0.1, 1 / 3
MEMBER_DOLLARS_PER_MINUTE, RECORDING_DOLLARS_PER_MINUTE = 0.0035, 0.0045
RECORDING_FORMAT = "video/mp4"  # the spec: the MIME type of the file
RECORDING_BYTES_PER_SECOND = {"1080p": 375_000, "720p": 190_000}  # ~3 and ~1.5 Mbit/s
INT32_MAX = 2**31 - 1  # the spec's format of size_in_bytes
NAMES = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Ken", "Margaret", "Linus", "Radia", "Dennis")
# Video logs: a room session's log is charged the session's cost, split into descriptions (a share
# for recording a recorded session, a surcharge for a 1080p one, the rest for its minutes). The
# demo charges about one session in 50 a cent more than it cost, and bills a conference with about
# one session in 10 (conferences have no room session; they end at the pace sessions do).
ROOM_SESSION_LOG, CONFERENCE_LOG = "video_room_session", "video_conference_session"
LOG_URL_PATHS = {ROOM_SESSION_LOG: LIST_PATH, CONFERENCE_LOG: "/api/video/conferences"}
LOG_SOURCE = "realtime_api"
MINUTES_CHARGE, RECORDING_CHARGE = "Video room session minutes", "Video recording"
SURCHARGE_1080P, CONFERENCE_CHARGE = "Video room session 1080p surcharge", "Video conference session charge"
RECORDING_CHARGE_SHARE, SURCHARGE_1080P_SHARE = 0.3, 0.2
MISMATCH_SHARE, MISMATCH_DOLLARS = 1 / 50, 0.01
CONFERENCE_SHARE, CONFERENCE_DOLLARS_PER_MINUTE = 0.1, 0.002
CONFERENCES = ("weekly-sync", "customer-call", "town-hall", "partner-briefing")

Endpoint = Literal["list", "get", "members", "recordings", "logs", "log"]
Child = Literal["members", "recordings"]  # the listings of one session
_SESSION_PATH = re.compile(re.escape(LIST_PATH) + "/([^/]+)(?:/(members|recordings))?")
_LOG_PATH = re.compile(re.escape(LOGS_PATH) + "/([^/]+)")


class _Auto(Enum):
    """Sentinel for arguments derived from others (a room id derived from the room name)."""

    ROOM_ID = "auto"
    NOW = "now"


@dataclass(frozen=True)
class Request:
    """One request as received; ``headers`` keys are lower-cased, ``query`` keeps the last value."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]

    @classmethod
    def parse(cls, method: str, target: str, headers: Message) -> Request:
        url = urlsplit(target)
        received = {name.lower(): value for name, value in headers.items()}
        return cls(method, url.path, dict(parse_qsl(url.query)), received)

    @property
    def endpoint(self) -> Endpoint | None:
        """``list``, ``get`` (``LIST_PATH/<id>``), ``members`` or ``recordings``
        (``LIST_PATH/<id>/members``...), ``logs`` (``LOGS_PATH``), ``log`` (``LOGS_PATH/<id>``), or
        None for any other path."""
        if self.path == LIST_PATH:
            return "list"
        if self.path == LOGS_PATH:
            return "logs"
        if _LOG_PATH.fullmatch(self.path):
            return "log"
        match = _SESSION_PATH.fullmatch(self.path)
        return None if match is None else cast(Endpoint, match[2] or "get")

    @property
    def session_id(self) -> str:
        """The session id in the path of a ``get``, ``members`` or ``recordings`` request; the
        log id of a ``log`` request."""
        match = _SESSION_PATH.fullmatch(self.path) or _LOG_PATH.fullmatch(self.path)
        return "" if match is None else match[1]


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


class Entry(Protocol):
    """Anything the lists serve: a session, or a record a subclass lists verbatim."""

    @property
    def pos(self) -> tuple[float, str, int]: ...  # (created_at, id, -order of creation)
    @property
    def key(self) -> tuple[float, str]: ...  # (created_at, id): the keyset the cursors use
    @property
    def status(self) -> str: ...
    def record(self, now: float) -> dict[str, Any]: ...
    def served(self, name: str) -> Any: ...


@dataclass
class _Cursor:
    after: bool  # True: items older than ``key`` (next page); False: newer (previous page)
    key: tuple[float, str]


@dataclass
class ListQuery:
    filters: dict[str, str]
    page_number: int
    page_size: int
    token: str | None
    cursor: _Cursor | None
    path: str = LIST_PATH  # of the listing: the sessions, one session's members or recordings, the logs
    created: tuple[float, float] = ANY_TIME  # from (included), until (excluded)


@dataclass(eq=False)
class _Session:
    id: str
    created_at: float
    start_time: float
    base: dict[str, Any]  # fields fixed at creation (name, room_id, quality, ...)
    overrides: dict[str, Any]
    seq: int  # order of creation: ties in (created_at, id) list in that order
    end_time: float | None = None
    duration: int | None = None
    cost: float = 0
    _fixed: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def status(self) -> str:
        return "in-progress" if self.end_time is None else "completed"

    @property
    def key(self) -> tuple[float, str]:
        return self.created_at, self.id

    @property
    def pos(self) -> tuple[float, str, int]:
        return self.created_at, self.id, -self.seq

    def changed(self) -> None:
        """Forget the cached record after the session's status, times or cost changed."""
        self._fixed = None

    @property
    def fixed(self) -> dict[str, Any]:
        """The record, less a live session's running ``duration``; cached until ``changed()``."""
        if self._fixed is None:
            live = self.end_time is None
            self._fixed = {
                "id": self.id,
                **self.base,
                "start_time": _iso(self.start_time),
                "end_time": None if self.end_time is None else _iso(self.end_time),
                "duration": None if live else self.duration,
                "status": self.status,
                "created_at": _iso(self.created_at),
                "updated_at": _iso(self.created_at if self.end_time is None else self.end_time),
                "cost_in_dollars": 0 if live else self.cost,
                **self.overrides,
            }
        return self._fixed

    def record(self, now: float) -> dict[str, Any]:
        """The full ``Video.RoomSession`` JSON object as served at ``now`` (do not mutate it)."""
        if self.end_time is not None or "duration" in self.overrides:
            return self.fixed
        return {**self.fixed, "duration": max(0, int(now - self.start_time))}

    def served(self, name: str) -> Any:
        """A field the lists filter on (``room_id``, ``name``) as served, without the record."""
        return self.overrides.get(name, self.base.get(name))


@dataclass(eq=False)
class _Child:
    """A member or recording of a session; listed (newest first) from ``listed_at`` on."""

    id: str
    session: _Session
    listed_at: float
    seq: int
    overrides: dict[str, Any]  # raw JSON fields merged verbatim into the served record

    @property
    def pos(self) -> tuple[float, str, int]:
        return self.listed_at, self.id, -self.seq

    @property
    def key(self) -> tuple[float, str]:
        return self.listed_at, self.id

    @property
    def status(self) -> str:
        return ""  # the listings of a session have no filters

    def served(self, name: str) -> Any:
        return None

    def ended(self, planned: float | None, now: float) -> float | None:
        """When it ended by ``now``: at ``planned`` or at the session's end, whichever is first."""
        times = [t for t in (planned, self.session.end_time) if t is not None]
        return min(times) if times and min(times) <= now else None


@dataclass(eq=False)
class _Member(_Child):
    """A member: present from ``join_time`` (None: never joined) to ``leave_time`` or the session's end."""

    name: str | None = None
    join_time: float | None = None
    leave_time: float | None = None

    def record(self, now: float) -> dict[str, Any]:
        """The ``Video.RoomSessionMember`` JSON object as served at ``now``."""
        left = None if self.join_time is None else self.ended(self.leave_time, now)
        if self.join_time is None:
            duration = None
        elif left is None:
            duration = max(0, int(now - self.join_time))
        else:
            duration = round(left - self.join_time)
        cost = 0 if left is None or duration is None else _dollars(MEMBER_DOLLARS_PER_MINUTE, duration)
        return {
            "id": self.id,
            "room_session_id": self.session.id,
            "name": self.name,
            "join_time": None if self.join_time is None else _iso(self.join_time),
            "leave_time": None if left is None else _iso(left),
            "duration": duration,
            "cost_in_dollars": cost,
            **self.overrides,
        }


@dataclass(eq=False)
class _Recording(_Child):
    """A recording from ``started_at`` to ``finished_at`` or the session's end, then ``processing``
    seconds long before it is completed."""

    started_at: float = 0.0
    finished_at: float | None = None
    processing: float = 0.0

    def record(self, now: float) -> dict[str, Any]:
        """The ``Video.RoomRecording`` JSON object as served at ``now``."""
        stop = self.ended(self.finished_at, now)
        if stop is None:
            status, updated = "recording", self.started_at
        elif now < stop + self.processing:
            status, updated = "processing", stop
        else:
            status, updated = "completed", stop + self.processing
        duration = None if stop is None else round(stop - self.started_at)
        done, seconds = status == "completed", duration or 0
        rate = RECORDING_BYTES_PER_SECOND.get(
            self.session.base["quality"], RECORDING_BYTES_PER_SECOND["720p"]
        )
        return {
            "id": self.id,
            "room_session_id": self.session.id,
            "status": status,
            "started_at": _iso(self.started_at),
            "finished_at": None if stop is None else _iso(stop),
            "duration": duration,
            "size_in_bytes": min(rate * seconds, INT32_MAX) if done else None,
            "format": RECORDING_FORMAT if done else None,
            "cost_in_dollars": _dollars(RECORDING_DOLLARS_PER_MINUTE, seconds) if done else 0,
            "uri": None,
            "created_at": _iso(self.started_at),
            "updated_at": _iso(updated),
            **self.overrides,
        }


def _dollars(per_minute: float, seconds: float) -> float:
    return round(per_minute * seconds / 60, 4)


@dataclass(eq=False)
class _Log:
    """The video log of a room session or a conference (``activity``): created with it, in progress
    while it runs, then charged its cost plus ``offset``; once deleted, served as a discarded log."""

    id: str
    activity: _Session
    type: str
    seq: int
    origin: Callable[[], str]  # where ``url`` points: the API
    offset: float = 0.0
    discarded_at: float | None = None
    overrides: dict[str, Any] = field(default_factory=dict)  # raw JSON fields merged verbatim
    pos: tuple[float, str, int] = field(init=False)  # fixed: looked up by every sorted insertion

    def __post_init__(self) -> None:
        self.pos = (self.activity.created_at, self.id, -self.seq)

    @property
    def key(self) -> tuple[float, str]:
        return self.pos[:2]

    @property
    def status(self) -> str:
        return ""  # the logs are not filtered by status

    def served(self, name: str) -> Any:
        return None

    @property
    def charge(self) -> float:
        cost = self.activity.cost
        return round(cost + self.offset, 4) if self.offset else cost

    def record(self, now: float) -> dict[str, Any]:
        """The ``Video.Log`` JSON object as served (``Video.DiscardedLog`` once deleted)."""
        activity, end = self.activity, self.activity.end_time
        created = _iso(activity.created_at)
        if self.discarded_at is not None:
            return {"id": self.id, "discarded_at": _iso(self.discarded_at), "created_at": created}
        charge = 0 if end is None else self.charge
        return {
            "id": self.id,
            "source": LOG_SOURCE,
            "type": self.type,
            "url": f"{self.origin()}{LOG_URL_PATHS[self.type]}/{quote(activity.id, safe='')}",
            "room_name": activity.served("name"),
            "status": activity.status,
            "locked": bool(activity.served("locked")),
            "started_at": _iso(activity.start_time),
            "ended_at": None if end is None else _iso(end),
            "charge": charge,
            "charge_details": [] if end is None else self._details(charge),
            "created_at": created,
            **self.overrides,
        }

    def _details(self, charge: float) -> list[dict[str, Any]]:
        if self.type == CONFERENCE_LOG:
            return _split(charge, CONFERENCE_CHARGE)
        served = self.activity.served
        return _split(
            charge,
            MINUTES_CHARGE,
            (RECORDING_CHARGE, RECORDING_CHARGE_SHARE if served("record_on_start") else 0),
            (SURCHARGE_1080P, SURCHARGE_1080P_SHARE if served("quality") == "1080p" else 0),
        )


def _split(charge: float, rest: str, *shares: tuple[str, float]) -> list[dict[str, Any]]:
    """``charge`` as charge details: what the nonzero ``shares`` leave under ``rest``, then the shares.

    Counted in ten-thousandths of a dollar, so the parts have 4 decimals and add up to the charge
    (rounded to 4 places); a charge too large to count so is one part.
    """
    units = charge * 10_000
    if not math.isfinite(units):
        return [{"description": rest, "charge": charge}]
    total = round(units)
    parts = {description: round(total * share) for description, share in shares if share}
    parts = {rest: total - sum(parts.values()), **parts}
    return [{"description": description, "charge": part / 10_000} for description, part in parts.items()]


_Slot = tuple[str, str]  # an index: ("", "") every entry, else (filter name, value)
_ALL: _Slot = ("", "")
_pos, _key = attrgetter("pos"), attrgetter("key")


def _created(entry: Entry) -> float:
    return entry.pos[0]


def _slots(entry: Entry) -> list[_Slot]:
    """The indexes listing ``entry``: all, its status (if it has one), and its room id and name when
    strings."""
    slots = [_ALL, ("status", entry.status)] if entry.status else [_ALL]
    for name, field_name in (("room_id", "room_id"), ("room_name", "name")):
        value = entry.served(field_name)
        if isinstance(value, str):
            slots.append((name, value))
    return slots


class _Listing:
    """Every list entry, sorted by (created_at, id), whole and per status, room id and room name.

    A page costs O(log n) plus the entries it scans: the smallest index the filters allow is
    walked from the cursor and the remaining filters are checked entry by entry.
    """

    def __init__(self, entries: Iterable[Entry] = ()) -> None:
        self._index: defaultdict[_Slot, list[Entry]] = defaultdict(list)
        for entry in entries:
            for slot in _slots(entry):
                self._index[slot].append(entry)
        for rows in self._index.values():
            rows.sort(key=_pos)

    @property
    def all(self) -> list[Entry]:
        return self._index[_ALL]

    def add(self, entry: Entry) -> None:
        for slot in _slots(entry):
            insort(self._index[slot], entry, key=_pos)

    def remove(self, entry: Entry, slots: Iterable[_Slot] | None = None) -> None:
        for slot in _slots(entry) if slots is None else slots:
            rows = self._index[slot]
            del rows[bisect_left(rows, entry.pos, key=_pos)]

    def move(self, entry: Entry, old_status: str) -> None:
        """File ``entry`` under its new status."""
        if entry.status != old_status:
            self.remove(entry, [("status", old_status)])
            insort(self._index["status", entry.status], entry, key=_pos)

    def page(
        self,
        filters: dict[str, str],
        cursor: _Cursor | None,
        size: int,
        created: tuple[float, float] = ANY_TIME,
    ) -> tuple[list[Entry], bool]:
        """One newest-first page of the entries matching ``filters`` and created within ``created``
        (from, until) relative to ``cursor``, and whether older matching entries remain."""
        exact = [(name, filters[name]) for name in ("status", "room_id", "room_name") if name in filters]
        rows = min((self._index.get(slot, []) for slot in exact), key=len, default=self.all)
        low, high = (bisect_left(rows, bound, key=_created) for bound in created)

        def matching(indexes: range) -> Iterator[Entry]:
            return (rows[i] for i in indexes if _matches(rows[i], filters))

        if cursor is None or cursor.after:
            top = high if cursor is None else min(high, bisect_left(rows, cursor.key, key=_key))
            found = list(itertools.islice(matching(range(top - 1, low - 1, -1)), size + 1))
            return found[:size], len(found) > size
        bottom = max(low, bisect_right(rows, cursor.key, key=_key))
        page = list(itertools.islice(matching(range(bottom, high)), size))[::-1]
        return page, bool(page) and next(matching(range(bottom - 1, low - 1, -1)), None) is not None


class _Roster:
    """The members (or recordings) of one session: each is listed once its ``listed_at`` has come."""

    def __init__(self) -> None:
        self.listing = _Listing()
        self._due: list[Entry] = []  # not listed yet, latest first

    def add(self, entry: Entry) -> None:
        insort(self._due, entry, key=lambda due: -due.pos[0])

    def listed(self, now: float) -> _Listing:
        """The listing at ``now``: entries whose time has come are listed first."""
        while self._due and self._due[-1].pos[0] <= now:
            self.listing.add(self._due.pop())
        return self.listing

    def drop_after(self, end: float) -> None:
        """Forget the entries not listed by ``end``: the session ended before they came."""
        self._due = [entry for entry in self._due if entry.pos[0] <= end]

    def __iter__(self) -> Iterator[Entry]:
        """Every entry, listed or not yet."""
        return itertools.chain(self.listing.all, self._due)


class _LogBook:
    """The video logs as listed: ``everything`` (``include_deleted``) and the ``kept`` ones (not deleted)."""

    def __init__(self, entries: Iterable[Entry] = ()) -> None:
        rows = list(entries)
        self.everything = _Listing(rows)
        self.kept = _Listing(row for row in rows if not _deleted(row))

    def add(self, entry: Entry) -> None:
        self.everything.add(entry)
        if not _deleted(entry):
            self.kept.add(entry)

    def remove(self, entry: Entry) -> None:
        self.everything.remove(entry)
        if not _deleted(entry):
            self.kept.remove(entry)


def _deleted(entry: Entry) -> bool:
    return isinstance(entry, _Log) and entry.discarded_at is not None


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _json(status: int, payload: object) -> Response:
    return Response(status, json.dumps(payload).encode())


def _error(status: int) -> Response:
    return _json(status, {"error": responses.get(status, "Error")})


def errors_body(kind: str, code: str, message: str, attribute: str | None) -> dict[str, Any]:
    """The API's ``{"errors": [...]}`` body (validation and rate-limit errors)."""
    item = {"type": kind, "code": code, "message": message, "attribute": attribute}
    return {"errors": [item | {"url": f"{ERROR_DOCS}#{code}"}]}


def _invalid(attribute: str, message: str, code: str | None = None) -> Response:
    code = code or f"{attribute}_is_invalid"
    return _json(422, errors_body("validation_error", code, message, attribute))


def _encode(cursor: _Cursor) -> str:
    """An opaque ``page_token``: "PA" + urlsafe base64 of the keyset position and direction."""
    raw = json.dumps(["a" if cursor.after else "b", *cursor.key], separators=(",", ":"))
    return "PA" + base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode(token: str) -> _Cursor | None:
    """Decode a ``page_token``; None when it is not one this space issued."""
    if not token.startswith("PA"):
        return None
    try:
        direction, created, sid = json.loads(base64.urlsafe_b64decode(token[2:] + "=="))
    except (ValueError, TypeError):
        return None
    valid = direction in ("a", "b") and isinstance(sid, str)
    if not valid or isinstance(created, bool) or not isinstance(created, int | float):
        return None
    return _Cursor(direction == "a", (float(created), sid))


def _epoch(value: str) -> float | None:
    """Epoch seconds of a date (its midnight) or an ISO 8601 datetime, UTC unless it says otherwise;
    None when it is neither."""
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def _created_span(query: dict[str, str]) -> tuple[float, float] | Response:
    """The creation times (from, until) a logs query asks for, or its 422.

    As the served ``created_at`` (whole seconds) is compared: ``created_after`` strictly after,
    ``created_before`` strictly before, ``created_on`` within the UTC day of the date or datetime.
    """
    since, until = ANY_TIME
    for name in ("created_after", "created_before", "created_on"):
        if name not in query:
            continue
        when = _epoch(query[name])
        if when is None:
            return _invalid(name, f"{name} must be a date (YYYY-MM-DD) or an ISO 8601 datetime")
        if name == "created_after":
            since = max(since, math.floor(when) + 1)
        elif name == "created_before":
            until = min(until, math.ceil(when))
        else:
            day = when - when % 86400
            since, until = max(since, day), min(until, day + 86400)
    return since, until


def _parse_int(value: str) -> int | None:
    try:
        return int(value)
    except ValueError:
        return None


def _matches(entry: Entry, filters: dict[str, str]) -> bool:
    name, room_id = entry.served("name"), entry.served("room_id")
    name = name if isinstance(name, str) else None
    pattern = filters.get("room_name_matches")
    return (
        filters.get("status", entry.status) == entry.status
        and filters.get("room_id", room_id) == room_id
        and filters.get("room_name", name) == name
        and (pattern is None or (name is not None and pattern.lower() in name.lower()))
    )


class RequestHandler(BaseHTTPRequestHandler):
    """Hands every GET to the owning space and writes back its JSON response."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes

    def __init__(self, *args: Any, space: SimulatedSpace) -> None:
        self.space = space
        super().__init__(*args)

    def handle(self) -> None:
        with contextlib.suppress(ConnectionResetError):  # the client went away (or was killed)
            super().handle()

    def do_GET(self) -> None:
        if self.server is not self.space._server:  # stopped: drop kept-alive connections
            self.close_connection = True
            return
        self.send(self.space._respond(Request.parse(self.command, self.path, self.headers)))

    def send(self, response: Response) -> None:
        """Write ``response``; subclasses may deliver it otherwise."""
        try:
            self.send_head(response, len(response.body))
            self.wfile.write(response.body)
        except (BrokenPipeError, ConnectionResetError):  # the client went away (or was killed)
            self.close_connection = True

    def send_head(self, response: Response, length: int) -> None:
        """The status line and headers, announcing a body of ``length`` bytes."""
        self.send_response(response.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(length))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Keep stderr quiet."""


class SimulatedSpace:
    """An in-memory SignalWire space serving the room-sessions API on 127.0.0.1."""

    page_size_default = 50
    page_size_max = 1000
    mismatch_share = MISMATCH_SHARE  # of the demo's sessions
    conference_share = CONFERENCE_SHARE
    handler: ClassVar[type[RequestHandler]] = RequestHandler

    def __init__(
        self,
        project_id: str = "demo-project",
        api_token: str = "demo-token",
        *,
        clock: Callable[[], float] = time.time,
        seed: int = 0,
        host_name: str = "demo.signalwire.com",
    ) -> None:
        credentials = base64.b64encode(f"{project_id}:{api_token}".encode()).decode()
        self._authorization = f"Basic {credentials}"
        self._clock = clock
        self._rng = random.Random(seed)
        self._host_name = host_name
        self._lock = threading.RLock()
        self._sessions: dict[str, _Session] = {}
        self._listing = _Listing()
        self._rosters: dict[tuple[Child, str], _Roster] = {}  # (listing, session id): created on use
        self._members: dict[str, _Member] = {}
        self._recordings: dict[str, _Recording] = {}
        self._logs: dict[str, _Log] = {}
        self._log_of: dict[str, _Log] = {}  # by room session id
        self._log_book = _LogBook()
        self._log_rng = random.Random(f"{seed}/logs")  # its own: sessions are as they were without logs
        self._conferences: list[_Session] = []  # the demo's, in progress
        self._bulk = False  # inside bulk(): the listing is rebuilt at its end
        self._seq = itertools.count()
        self._server: ThreadingHTTPServer | None = None
        self._traffic: threading.Thread | None = None
        self._traffic_started: float | None = None
        self._stopping = threading.Event()

    # --- lifecycle -------------------------------------------------------------------------

    def start(self, port: int = 0) -> str:
        """Bind 127.0.0.1:``port`` (0: any free port), serve in a daemon thread; return base_url."""
        if self._server is not None:
            raise RuntimeError("simulated space already started")
        self._server = ThreadingHTTPServer(("127.0.0.1", port), partial(self.handler, space=self))
        name = f"simulated-space-{self._server.server_address[1]}"
        serve = partial(self._server.serve_forever, poll_interval=0.05)  # prompt shutdown()
        threading.Thread(target=serve, name=name, daemon=True).start()
        return self.base_url

    def stop(self) -> None:
        """Shut down the server (kept-alive connections included) and traffic; idempotent."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self.stop_traffic()

    def stop_traffic(self) -> None:
        """Stop ``run_traffic``; the server goes on serving the sessions as they are."""
        self._stopping.set()
        if self._traffic is not None:
            self._traffic.join()
            self._traffic = None
        self._stopping = threading.Event()

    def __enter__(self) -> SimulatedSpace:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` of the running server."""
        if self._server is None:
            raise RuntimeError("simulated space not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def _api_origin(self) -> str:
        """Where the logs' urls point: the running server, else the space's host."""
        return f"https://{self._host_name}" if self._server is None else self.base_url

    # --- scripted control ------------------------------------------------------------------

    def add_session(
        self,
        *,
        id: str | None = None,
        name: str | None = "room-1",
        room_id: str | _Auto | None = _Auto.ROOM_ID,
        quality: str | None = "720p",
        fps: str | int | None = "30",
        max_members: int | None = 10,
        start_time: float | None = None,
        created_at: float | None = None,
        **overrides: Any,
    ) -> str:
        """Create an in-progress session, and its video log, and return its id.

        ``room_id`` defaults to a stable uuid per room name (None for a nameless session);
        ``overrides`` are raw JSON fields merged verbatim into the served record.
        """
        now = self._clock()
        if isinstance(room_id, _Auto):
            room = uuid.uuid5(uuid.NAMESPACE_DNS, f"{name}.{self._host_name}")
            room_id = None if name is None else str(room)
        base = {
            "room_id": room_id, "name": name, "display_name": name, "max_members": max_members,
            "quality": quality, "fps": fps, "join_from": None, "join_until": None,
            "remove_at": None, "remove_after_seconds_elapsed": None, "layout": "grid-responsive",
            "record_on_start": False, "tone_on_entry_and_exit": True,
            "room_join_video_off": False, "user_join_video_off": False, "locked": False,
            "preview_url": None, "prioritize_handraise": False, "sync_audio_video": True,
            "enable_room_previews": False, "locked_cover": "",
        }  # fmt: skip
        start = now if start_time is None else start_time
        created = now if created_at is None else created_at
        with self._lock:
            session = _Session(id or str(uuid.uuid4()), created, start, base, overrides, next(self._seq))
            replaced = self._sessions.get(session.id)
            self._sessions[session.id] = session
            if replaced is not None:
                self._unfile(replaced)
                self._drop_log(self._log_of[session.id])
                for child in ("members", "recordings"):
                    self._rosters.pop((child, session.id), None)
            self._file(session)
            self._log_of[session.id] = self._add_log(session, ROOM_SESSION_LOG)
        return session.id

    def _add_log(self, activity: _Session, kind: str) -> _Log:
        """A new log of ``activity``, listed (call with the lock held)."""
        log_id = str(uuid.UUID(int=self._log_rng.getrandbits(128), version=4))
        log = _Log(log_id, activity, kind, next(self._seq), self._api_origin)
        self._logs[log.id] = log
        self._file_log(log)
        return log

    def _drop_log(self, log: _Log) -> None:
        """Forget a log (call with the lock held)."""
        del self._logs[log.id]
        self._unfile_log(log)

    def add_member(
        self,
        session_id: str,
        *,
        id: str | None = None,
        name: str | None = "member",
        join_time: float | _Auto | None = _Auto.NOW,
        leave_time: float | None = None,
        listed_at: float | None = None,
        **overrides: Any,
    ) -> str:
        """Add a member to a session and return its id.

        It joins at ``join_time`` (default now; None: it never joins) and leaves at ``leave_time``
        (None: while the session lasts, null until the session ends). It is listed from
        ``listed_at`` on (default its join time, else now); ``overrides`` are raw JSON fields
        merged verbatim into the served record.
        """
        with self._lock:
            now = self._clock()
            join = now if isinstance(join_time, _Auto) else join_time
            listed = listed_at if listed_at is not None else now if join is None else join
            session, sid = self._sessions[session_id], id or str(uuid.uuid4())
            member = _Member(sid, session, listed, next(self._seq), overrides, name, join, leave_time)
            self._members[sid] = member
            self._roster("members", session_id).add(member)
        return sid

    def add_recording(
        self,
        session_id: str,
        *,
        id: str | None = None,
        started_at: float | None = None,
        finished_at: float | None = None,
        processing: float = 0.0,
        **overrides: Any,
    ) -> str:
        """Add a recording to a session and return its id.

        It records from ``started_at`` (default now, when it is listed) to ``finished_at`` (None:
        until the session ends), then is ``processing`` for that many seconds, then ``completed``
        (``math.inf``: never); ``overrides`` are raw JSON fields merged verbatim.
        """
        with self._lock:
            start = self._clock() if started_at is None else started_at
            session, rid = self._sessions[session_id], id or str(uuid.uuid4())
            recording = _Recording(
                rid, session, start, next(self._seq), overrides, start, finished_at, processing
            )
            self._recordings[rid] = recording
            self._roster("recordings", session_id).add(recording)
        return rid

    def _roster(self, child: Child, session_id: str) -> _Roster:
        """The members or recordings of a session (call with the lock held); KeyError for an unknown one."""
        if not self._has_session(session_id):
            raise KeyError(session_id)
        return self._rosters.setdefault((child, session_id), _Roster())

    def _has_session(self, session_id: str) -> bool:
        """Whether the space has a session with this id (call with the lock held)."""
        return session_id in self._sessions

    def complete_session(
        self,
        session_id: str,
        *,
        cost_in_dollars: float,
        end_time: float | None = None,
        duration: int | None = None,
    ) -> None:
        """Mark a session completed; ``duration`` defaults to round(end - start).

        Its members still present leave at its end, its recordings stop then.
        """
        with self._lock:
            session = self._sessions[session_id]
            old_status = session.status
            session.end_time = self._clock() if end_time is None else end_time
            default = round(session.end_time - session.start_time)
            session.duration = default if duration is None else duration
            session.cost = cost_in_dollars
            self._changed(session, old_status)

    @contextmanager
    def bulk(self) -> Iterator[None]:
        """Hold requests while sessions are scripted in bulk; the listing is re-sorted once at the end.

        Faster than one sorted insertion per change when adding many sessions out of order.
        """
        with self._lock:
            self._bulk = True
            try:
                yield
            finally:
                self._bulk = False
                self._listing = _Listing(self._entries())
                self._log_book = _LogBook(self._log_entries())

    def _entries(self) -> Iterable[Entry]:
        """Everything the lists serve; subclasses may list more than sessions."""
        return self._sessions.values()

    def _log_entries(self) -> Iterable[Entry]:
        """Every log; subclasses may list more."""
        return self._logs.values()

    def _file_log(self, entry: Entry) -> None:
        """List a log (call with the lock held); inside ``bulk()``, at its end."""
        if not self._bulk:
            self._log_book.add(entry)

    def _unfile_log(self, entry: Entry) -> None:
        """Take a log off the lists (call with the lock held)."""
        if not self._bulk:
            self._log_book.remove(entry)

    def _file(self, entry: Entry) -> None:
        """List a new ``entry`` (call with the lock held); inside ``bulk()``, at its end."""
        if not self._bulk:
            self._listing.add(entry)

    def _unfile(self, entry: Entry) -> None:
        """Take ``entry`` off the lists (call with the lock held)."""
        if not self._bulk:
            self._listing.remove(entry)

    def _changed(self, session: _Session, old_status: str) -> None:
        session.changed()
        if not self._bulk:
            self._listing.move(session, old_status)

    # --- HTTP ------------------------------------------------------------------------------

    def _respond(self, request: Request) -> Response:
        """The answer to one request; subclasses may answer otherwise."""
        if request.headers.get("authorization") != self._authorization:
            return _error(401)
        endpoint = request.endpoint
        if endpoint == "list":
            return self._list(request.query)
        if endpoint == "get":
            return self._get(request.session_id)
        if endpoint == "logs":
            return self._list_logs(request.query)
        if endpoint == "log":
            return self._get_log(request.session_id)
        if endpoint is not None:
            return self._list_children(endpoint, request)
        return _error(404)

    def _get(self, session_id: str) -> Response:
        with self._lock:
            session = self._sessions.get(session_id)
            record = None if session is None else session.record(self._clock())
        if record is None:
            return _error(404)
        return _json(200, {k: v for k, v in record.items() if k not in LIST_ONLY_FIELDS})

    def _get_log(self, log_id: str) -> Response:
        """One log (deleted ones as discarded), or 404."""
        with self._lock:
            entry = self._find_log(log_id)
            record = None if entry is None else entry.record(self._clock())
        return _error(404) if record is None else _json(200, record)

    def _find_log(self, log_id: str) -> Entry | None:
        """The log of this id (call with the lock held); subclasses may know more."""
        return self._logs.get(log_id)

    def _list(self, query: dict[str, str]) -> Response:
        params = self._parse_list_query(query)
        if isinstance(params, Response):
            return params
        return self._page(params, lambda now: self._listing)

    def _list_children(self, child: Child, request: Request) -> Response:
        """A page of a session's members or recordings (they take no filters); 404 for an unknown session."""
        query = {name: value for name, value in request.query.items() if name not in FILTERS}
        params = self._parse_list_query(query, request.path)
        if isinstance(params, Response):
            return params
        sid = request.session_id

        def listing(now: float) -> _Listing | None:
            return self._roster(child, sid).listed(now) if self._has_session(sid) else None

        return self._page(params, listing)

    def _list_logs(self, query: dict[str, str]) -> Response:
        """A page of the logs created within the query's times; deleted ones with ``include_deleted``."""
        logs_query = {name: value for name, value in query.items() if name not in FILTERS}
        params = self._parse_list_query(logs_query, LOGS_PATH, LOG_FILTERS)
        if isinstance(params, Response):
            return params
        created = _created_span(query)
        if isinstance(created, Response):
            return created
        deleted = query.get("include_deleted", "false").lower()
        if deleted not in ("true", "false"):
            return _invalid("include_deleted", "include_deleted must be true or false")
        params.created = created
        return self._page(
            params, lambda now: self._log_book.everything if deleted == "true" else self._log_book.kept
        )

    def _page(self, params: ListQuery, listing: Callable[[float], _Listing | None]) -> Response:
        """One page of ``listing(now)`` (read with the lock held), or 404 when it is None."""
        with self._lock:
            now = self._clock()
            found = listing(now)
            if found is None:
                return _error(404)
            page, more = found.page(params.filters, params.cursor, params.page_size, params.created)
            records = [entry.record(now) for entry in page]
        return _json(200, {"links": self._links(params, page, more), "data": records})

    def _parse_list_query(
        self, query: dict[str, str], path: str = LIST_PATH, filter_names: tuple[str, ...] = FILTERS
    ) -> ListQuery | Response:
        status = query.get("status")
        if status is not None and status not in STATUSES:
            return _invalid("status", f"status must be one of: {', '.join(STATUSES)}")
        size = _parse_int(query.get("page_size", str(self.page_size_default)))
        if size is None or not 1 <= size <= self.page_size_max:
            return _invalid("page_size", f"page_size must be between 1 and {self.page_size_max}")
        number = _parse_int(query.get("page_number", "0"))
        if number is None or number < 0:
            return _invalid("page_number", "page_number must be a non-negative integer")
        token = query.get("page_token")
        if token is None and number > 0:
            return _invalid("page_token", "page_token is required", "page_token_required")
        cursor = None if token is None else _decode(token)
        if token is not None and cursor is None:
            return _invalid("page_token", "page_token is invalid")
        filters = {name: query[name] for name in filter_names if name in query}
        return ListQuery(filters, number, size, token, cursor, path)

    def _links(self, params: ListQuery, page: list[Entry], more: bool) -> dict[str, str]:
        """A list page's absolute ``links``; subclasses may bend them."""

        def link(number: int, token: str | None) -> str:
            query = {
                **params.filters,
                "page_number": str(number),
                "page_size": str(params.page_size),
            }
            if token is not None:
                query["page_token"] = token
            return f"{self.base_url}{params.path}?{urlencode(query)}"

        links = {"self": link(params.page_number, params.token), "first": link(0, None)}
        if more:
            links["next"] = link(params.page_number + 1, _encode(_Cursor(True, page[-1].key)))
        anchor = page[0].key if page else params.cursor.key if params.cursor else None
        if params.page_number > 0 and anchor is not None:
            links["prev"] = link(params.page_number - 1, _encode(_Cursor(False, anchor)))
        return links

    # --- demo traffic ----------------------------------------------------------------------

    @property
    def traffic_started(self) -> float:
        """The clock when ``run_traffic`` began: its seeded sessions that ended, ended then."""
        if self._traffic_started is None:
            raise RuntimeError("traffic not started")
        return self._traffic_started

    def run_traffic(
        self, *, tick: float = 1.0, target_active: int = 12, mean_duration: float = 120.0
    ) -> None:
        """Simulate demo traffic in a daemon thread until ``stop()``.

        Seeds completed history and ``target_active`` live sessions, plus ``ENDED_AT_START``
        that were live and end now (at ``traffic_started``), each with a recording of its first
        half, completed for the first and still processing for the others; then every ``tick``
        seconds ends and starts sessions so that about ``target_active`` are in progress. Each
        session has its log; a few are charged a cent more than they cost (``mismatch_share``), and
        a few come with a conference's log (``conference_share``).
        """
        if self._traffic is not None:
            raise RuntimeError("traffic already running")
        now = self._clock()
        with self._lock:
            for i in range(target_active + ENDED_AT_START):
                start = now - self._rng.uniform(0, mean_duration)
                sid = self._start_random(start, mean_duration)
                if i < ENDED_AT_START:  # recorded for their first half: processed by now for the first
                    half = (start + now) / 2
                    processing = (now - half) / 2 if i == 0 else mean_duration
                    self.add_recording(
                        sid, id=self._random_id(), started_at=start, finished_at=half, processing=processing
                    )
                    self._end(sid, now)
            for _ in range(5):
                start = now - self._rng.uniform(2, 10) * mean_duration
                sid = self._start_random(start, mean_duration)
                self._end(sid, start + self._rng.uniform(0.2, 1.8) * mean_duration)
            self._traffic_started = now
        args = (self._stopping, tick, target_active, mean_duration)
        self._traffic = threading.Thread(
            target=self._traffic_loop, args=args, name="simulated-space-traffic", daemon=True
        )
        self._traffic.start()

    def _traffic_loop(
        self, stopping: threading.Event, tick: float, target: int, mean_duration: float
    ) -> None:
        while not stopping.wait(tick):
            with self._lock:
                self._traffic_step(tick, target, mean_duration)

    def _traffic_step(self, tick: float, target: int, mean_duration: float) -> None:
        """End each live session (and conference) with probability tick/mean; start enough to hover
        at target."""
        now, rng = self._clock(), self._rng
        live = [s.id for s in self._sessions.values() if s.end_time is None]
        ending = [sid for sid in live if rng.random() < tick / mean_duration]
        for sid in ending:
            self._end(sid, now)
        for conference in [c for c in self._conferences if self._log_rng.random() < tick / mean_duration]:
            self._end_conference(conference, now)
        deficit = max(0, target - len(live) + len(ending))
        expected = target * tick / mean_duration + 0.25 * deficit
        for _ in range(int(expected) + (rng.random() < expected % 1)):
            self._start_random(now, mean_duration)

    def _start_random(self, start: float, mean_duration: float) -> str:
        """Start a session in a random room with its members and, for some, a recording."""
        rng = self._rng
        name = rng.choice(list(ROOMS))
        recorded = rng.random() < RECORDED_SHARE
        sid = self.add_session(
            id=self._random_id(),
            name=name,
            quality=rng.choices(*QUALITY_MIX)[0],
            fps=rng.choices(*FPS_MIX)[0],
            max_members=ROOMS[name],
            start_time=start,
            created_at=start,
            record_on_start=recorded,
        )
        self._add_people(sid, start, ROOMS[name], mean_duration)
        if recorded:  # processed for about as long as a session lasts
            processing = rng.uniform(0.25, 1.0) * mean_duration
            self.add_recording(sid, id=self._random_id(), started_at=start, processing=processing)
        self._bill_extras(sid, start)
        return sid

    def _bill_extras(self, session_id: str, start: float) -> None:
        """Charge a session's log ``MISMATCH_DOLLARS`` more than it costs (``mismatch_share`` of the
        sessions); start a conference with it (``conference_share``)."""
        rng = self._log_rng
        if rng.random() < self.mismatch_share:
            self._log_of[session_id].offset = MISMATCH_DOLLARS
        if rng.random() < self.conference_share:
            conference_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            name = {"name": rng.choice(CONFERENCES)}
            conference = _Session(conference_id, start, start, name, {}, next(self._seq))
            self._add_log(conference, CONFERENCE_LOG)
            self._conferences.append(conference)

    def _end_conference(self, conference: _Session, end: float) -> None:
        """End a conference at ``end``; it costs ``CONFERENCE_DOLLARS_PER_MINUTE`` (at least $0.0001)."""
        conference.end_time = end
        conference.cost = max(_dollars(CONFERENCE_DOLLARS_PER_MINUTE, end - conference.start_time), 0.0001)
        self._conferences.remove(conference)

    def _add_people(self, session_id: str, start: float, capacity: int, mean_duration: float) -> None:
        """Plan a session's members: most join early, some late; most stay long, some leave early.

        A full session's crowd (``FULL_SHARE``) is larger than its room, joins early and stays:
        it peaks at ``capacity``. Never more than ``capacity`` are present at once (the next ones
        are turned away). A few members (``NO_SHOW_SHARE``) never join.
        """
        rng = self._rng
        full = rng.random() < FULL_SHARE
        crowd = capacity + rng.randint(1, 3) if full else rng.randint(1, max(1, capacity * 2 // 3))
        late = 0.0 if full else 0.2
        joins = sorted(
            start + (rng.uniform(0, 1.5) if rng.random() < late else rng.expovariate(20)) * mean_duration
            for _ in range(crowd)
        )
        present: list[float] = []  # heap of the leave times of the members in the room
        for join in joins:
            while present and present[0] <= join:
                heapq.heappop(present)
            if len(present) >= capacity:
                continue
            stay = rng.uniform(0.5, 3.0) if full or rng.random() < 0.7 else rng.uniform(0.05, 0.5)
            leave = join + stay * mean_duration
            heapq.heappush(present, leave)
            self.add_member(
                session_id, id=self._random_id(), name=self._random_name(), join_time=join, leave_time=leave
            )
        if rng.random() < NO_SHOW_SHARE:
            listed = start + rng.uniform(0, 0.2) * mean_duration
            self.add_member(
                session_id, id=self._random_id(), name=self._random_name(), join_time=None, listed_at=listed
            )

    def _random_id(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def _random_name(self) -> str | None:
        """A member's display name; a few are null."""
        return None if self._rng.random() < 0.05 else f"{self._rng.choice(NAMES)} {self._rng.randint(1, 99)}"

    def _end(self, session_id: str, end: float) -> None:
        """Complete a session at ``end``: members not come by then never come; it costs
        ``MEMBER_DOLLARS_PER_MINUTE`` per member-minute (at least $0.0001)."""
        roster = self._roster("members", session_id)
        roster.drop_after(end)
        seconds = sum(
            max(0.0, (end if member.leave_time is None else min(end, member.leave_time)) - member.join_time)
            for member in roster
            if isinstance(member, _Member) and member.join_time is not None
        )
        cost = max(_dollars(MEMBER_DOLLARS_PER_MINUTE, seconds), 0.0001)
        self.complete_session(session_id, cost_in_dollars=cost, end_time=end)
