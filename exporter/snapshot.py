"""The contract between polling and exposition: immutable snapshots and the label vocabulary.

The poller publishes one :class:`SpaceSnapshot` per space after every poll; the collector reads
them and nothing else. Every label value the collector can emit outside the capped per-room
series is listed here, so that each of those series is exported (at 0) from the first scrape
and tests can derive the complete set.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .bill import Bill

# --- label vocabulary ---------------------------------------------------------------------------

QUALITIES = ("720p", "1080p")
FPS_VALUES = ("20", "30")
UNKNOWN, OTHER = "unknown", "other"  # a null field; a value outside the known ones
QUALITY_LABELS = (*QUALITIES, UNKNOWN, OTHER)
FPS_LABELS = (*FPS_VALUES, UNKNOWN, OTHER)
Key = tuple[str, str]  # (quality, fps) label values
KEYS: tuple[Key, ...] = tuple((q, f) for q in QUALITY_LABELS for f in FPS_LABELS)
OTHER_ROOM = "__other__"  # rooms past metrics.rooms.max, and sessions without a room name

POLL_ERROR_REASONS = (
    "internal_error",  # a bug in the exporter, not a fault of the API
    "invalid_response",
    "network",
    "rate_limited",
    "server_error",
    "state_write",
    "timeout",
    "unauthorized",
)
SKIP_REASONS = (
    "backfill_limit",
    "invalid_cost",
    "invalid_duration",
    "invalid_max_members",
    "invalid_times",
    "malformed",
    "missing_cost",
    "missing_duration",
)
ENDPOINTS = ("list", "get", "members", "recordings", "logs")
# Work a poll leaves to the next one when ``poll.max_requests`` runs out (docs/counting.md).
DEFERRED_WORK = ("completions", "members", "recordings", "charges", "live_members")
MEMBER_SKIP_REASONS = ("invalid_cost", "invalid_duration", "invalid_times", "malformed", "session_gone")
RECORDING_SKIP_REASONS = (
    "invalid_cost",
    "invalid_duration",
    "invalid_size",
    "invalid_times",
    "malformed",
    "missing_duration",
    "recording_timeout",
    "session_gone",
)
CHARGE_TYPES = ("room_session", "conference_session", OTHER)  # a video log's type
LOG_SKIP_REASONS = ("invalid_charge", "invalid_charge_details", "malformed")
PERIODS = ("day", "month")  # in billing.timezone
COST_SOURCES = ("sessions", "charges")  # session cost_in_dollars; the video logs' charges
# HTTP statuses of API responses as `code` label values: the ones the API documents, 429 and
# the 5xx a proxy answers with; any other status is "other", a transport failure "error".
RESPONSE_CODES = ("200", "400", "401", "403", "404", "422", "429", "500", "502", "503", "504")
REQUEST_CODES = (*RESPONSE_CODES, "other", "error")

REQUEST_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)  # seconds
DEFAULT_DURATION_BUCKETS = (60.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0)  # seconds
DEFAULT_MEMBER_BUCKETS = (1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0, 100.0, 250.0, 1000.0)  # members
DEFAULT_UTILIZATION_BUCKETS = (0.25, 0.5, 0.75, 0.9, 1.0)  # peak members / max_members


def request_code(status: int | None) -> str:
    """The ``code`` label value of a response status (None: no response)."""
    if status is None:
        return "error"
    code = str(status)
    return code if code in RESPONSE_CODES else "other"


# --- values -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Histogram:
    """Observations per bucket (not cumulative; the last one is +Inf) and their sum; bounds apart."""

    counts: tuple[int, ...]
    total: float = 0.0

    @classmethod
    def empty(cls, bounds: tuple[float, ...]) -> Histogram:
        return cls((0,) * (len(bounds) + 1))

    def observe(self, bounds: tuple[float, ...], value: float) -> Histogram:
        counts = list(self.counts)
        counts[bisect.bisect_left(bounds, value)] += 1  # le: a value equal to a bound is in it
        return Histogram(tuple(counts), self.total + value)


@dataclass(frozen=True)
class People:
    """Cumulative counters of the members of counted sessions (``members.enabled``)."""

    members: Mapping[Key, Histogram] = field(default_factory=dict)  # members who joined, per session
    peak: Mapping[Key, Histogram] = field(default_factory=dict)  # most present at once, per session
    utilization: Mapping[Key, Histogram] = field(default_factory=dict)  # peak / max_members
    at_capacity: Mapping[Key, int] = field(default_factory=dict)  # sessions whose peak reached it
    seconds: Mapping[Key, float] = field(default_factory=dict)
    cost: Mapping[Key, float] = field(default_factory=dict)
    room_seconds: Mapping[str, float] = field(default_factory=dict)
    skipped: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class RecordingTotals:
    """Cumulative counters of the completed recordings of counted sessions (``recordings.enabled``)."""

    count: int = 0
    seconds: float = 0.0
    bytes: int = 0
    cost: float = 0.0
    skipped: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Totals:
    """Cumulative counters of completed sessions."""

    completed: Mapping[Key, int] = field(default_factory=dict)
    cost: Mapping[Key, float] = field(default_factory=dict)
    durations: Mapping[Key, Histogram] = field(default_factory=dict)
    room_cost: Mapping[str, float] = field(default_factory=dict)
    skipped: Mapping[str, int] = field(default_factory=dict)
    people: People = field(default_factory=People)
    recordings: RecordingTotals = field(default_factory=RecordingTotals)


@dataclass(frozen=True)
class Activity:
    """Gauges describing the in-progress sessions of the latest successful poll."""

    active: Mapping[Key, int] = field(default_factory=dict)
    max_members: Mapping[Key, int] = field(default_factory=dict)
    oldest_start: float | None = None
    room_active: Mapping[str, int] = field(default_factory=dict)
    members_active: Mapping[Key, int] = field(default_factory=dict)  # with members.live
    recordings_pending: int = 0  # recordings of counted sessions not completed yet


@dataclass(frozen=True)
class Requests:
    """The exporter's own API requests: counts by (endpoint, code), latency by endpoint."""

    counts: Mapping[tuple[str, str], int] = field(default_factory=dict)
    latency: Mapping[str, Histogram] = field(default_factory=dict)

    def observe(self, endpoint: str, code: str, seconds: float) -> Requests:
        hist = self.latency.get(endpoint, Histogram.empty(REQUEST_BUCKETS))
        return Requests(
            {**self.counts, (endpoint, code): self.counts.get((endpoint, code), 0) + 1},
            {**self.latency, endpoint: hist.observe(REQUEST_BUCKETS, seconds)},
        )


@dataclass(frozen=True)
class SpaceSnapshot:
    """Everything ``/metrics`` shows for one space, as of its latest poll."""

    name: str
    polled: bool = False  # a first poll has finished (successfully or not)
    up: bool = False
    last_success: float | None = None
    poll_duration: float | None = None
    activity: Activity = field(default_factory=Activity)
    totals: Totals = field(default_factory=Totals)
    poll_errors: Mapping[str, int] = field(default_factory=dict)
    deferred: Mapping[str, int] = field(default_factory=dict)  # work items left to a later poll
    requests: Requests = field(default_factory=Requests)
    bill: Bill | None = None  # None until a poll succeeded


class Snapshots:
    """The latest snapshot of every space; replaced whole, so readers need no lock."""

    def __init__(self, names: list[str]) -> None:
        self._lock = threading.Lock()
        self.current: Mapping[str, SpaceSnapshot] = {n: SpaceSnapshot(n) for n in names}

    def publish(self, snapshot: SpaceSnapshot) -> None:
        with self._lock:
            self.current = {**self.current, snapshot.name: snapshot}

    def ready(self) -> bool:
        """True once every space has finished its first poll."""
        return all(s.polled for s in self.current.values())
