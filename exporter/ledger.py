"""Ledgers: one source's dollars by local day of the current month (``billing.timezone``), by end
time, and what they show at a given moment: the day and month figures and the month's projection.

Computed when shown, so a new day or month starts exactly at its boundary. Pure functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo

import msgspec
from msgspec.structs import replace

from .snapshot import PERIODS

PROJECTION_DAYS = 7  # the spend rate of the projection: the current day and the six before it

# The values the state file stores (bill and counters), checked when it is read back.
Count = Annotated[int, msgspec.Meta(ge=0, le=2**53)]  # le: exact as a float, as it is exported
Amount = Annotated[float, msgspec.Meta(ge=0)]  # finite: JSON has no infinities or NaN


class Ledger(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One source's dollars by local day (``YYYY-MM-DD``) of ``month`` (``YYYY-MM``), by end time.

    ``complete_since``: every item that ended from then on is in it; a period that began
    earlier is incomplete.
    """

    month: str
    complete_since: float
    days: dict[str, Amount] = msgspec.field(default_factory=dict)


# --- calendar -----------------------------------------------------------------------------------


def _local(ts: float, tz: str) -> datetime:
    return datetime.fromtimestamp(ts, ZoneInfo(tz))


def _start(day: date, tz: str) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(tz)).timestamp()


def month_key(ts: float, tz: str) -> str:
    return _local(ts, tz).strftime("%Y-%m")


def period_start(period: str, ts: float, tz: str) -> float:
    """Start (epoch) of the local ``day`` or ``month`` that holds ``ts``."""
    day = _local(ts, tz).date()
    return _start(day if period == "day" else day.replace(day=1), tz)


def _next_month(first: date) -> date:
    return (first + timedelta(days=31)).replace(day=1)


def month_end(ts: float, tz: str) -> float:
    """Start (epoch) of the local month after the one that holds ``ts``."""
    return _start(_next_month(_local(ts, tz).date().replace(day=1)), tz)


def book(ledger: Ledger, ended: float, dollars: float, tz: str) -> Ledger:
    """``ledger`` with ``dollars`` on the local day ``ended`` falls in, when that is in its month."""
    first = date.fromisoformat(ledger.month + "-01")
    # The month is compared first: an end in the year 9999 has no local date in some time zones.
    if not dollars or not _start(first, tz) <= ended < _start(_next_month(first), tz):
        return ledger
    day = _local(ended, tz).strftime("%Y-%m-%d")
    return replace(ledger, days={**ledger.days, day: ledger.days.get(day, 0.0) + dollars})


@dataclass(frozen=True)
class Figures:
    """A ledger as shown at one moment: (period -> (dollars, complete)) and the projection."""

    periods: dict[str, tuple[float, bool]]
    projected: float


def figures(ledger: Ledger, now: float, tz: str) -> Figures:
    """The day and month figures at ``now`` and the month's projection (docs/metrics.md).

    projected = month-to-date + rate x (end of month - now), where rate is what the current day
    and the six before it cost, divided by the time since they began; not before the month began,
    nor before the figure is complete (a fresh start: since counting began).
    """
    current = ledger.month == month_key(now, tz)
    days = ledger.days if current else {}
    today = _local(now, tz).date()
    month = sum(days.values())
    periods = {
        period: (
            days.get(today.isoformat(), 0.0) if period == "day" else month,
            ledger.complete_since <= period_start(period, now, tz),
        )
        for period in PERIODS
    }
    first = max(today - timedelta(days=PROJECTION_DAYS - 1), today.replace(day=1))
    since = max(_start(first, tz), ledger.complete_since)
    recent = sum(v for day, v in days.items() if day >= _local(since, tz).date().isoformat())
    elapsed = now - since
    rate = recent / elapsed if elapsed > 0 else 0.0
    return Figures(periods, month + rate * max(0.0, month_end(now, tz) - now))
