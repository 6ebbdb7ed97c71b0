"""The simulated records, each served as the API's JSON object at a given time: sessions (and the
demo's conferences), their members and recordings, and the video logs with their charges."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from .http import LIST_PATH

# Members cost by the minute, recordings by the minute and size.
MEMBER_DOLLARS_PER_MINUTE, RECORDING_DOLLARS_PER_MINUTE = 0.0035, 0.0045
RECORDING_FORMAT = "video/mp4"  # the spec: the MIME type of the file
RECORDING_BYTES_PER_SECOND = {"1080p": 375_000, "720p": 190_000}  # ~3 and ~1.5 Mbit/s
INT32_MAX = 2**31 - 1  # the spec's format of size_in_bytes
# Video logs: a room session's log is charged the session's cost, split into descriptions (a share
# for recording a recorded session, a surcharge for a 1080p one, the rest for its minutes).
ROOM_SESSION_LOG, CONFERENCE_LOG = "video_room_session", "video_conference_session"
LOG_URL_PATHS = {ROOM_SESSION_LOG: LIST_PATH, CONFERENCE_LOG: "/api/video/conferences"}
LOG_SOURCE = "realtime_api"
MINUTES_CHARGE, RECORDING_CHARGE = "Video room session minutes", "Video recording"
SURCHARGE_1080P, CONFERENCE_CHARGE = "Video room session 1080p surcharge", "Video conference session charge"
RECORDING_CHARGE_SHARE, SURCHARGE_1080P_SHARE = 0.3, 0.2


@dataclass(eq=False)
class Session:
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
    session: Session
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
class Member(_Child):
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
        cost = 0 if left is None or duration is None else dollars(MEMBER_DOLLARS_PER_MINUTE, duration)
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
class Recording(_Child):
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
            "cost_in_dollars": dollars(RECORDING_DOLLARS_PER_MINUTE, seconds) if done else 0,
            "uri": None,
            "created_at": _iso(self.started_at),
            "updated_at": _iso(updated),
            **self.overrides,
        }


def dollars(per_minute: float, seconds: float) -> float:
    return round(per_minute * seconds / 60, 4)


@dataclass(eq=False)
class Log:
    """The video log of a room session or a conference (``activity``): created with it, in progress
    while it runs, then charged its cost plus ``offset``; once deleted, served as a discarded log."""

    id: str
    activity: Session
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


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
