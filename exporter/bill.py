"""The bill: what SignalWire charges (its video logs), counted once, reconciled with the sessions'
cost, and the day and month figures in ``billing.timezone``.

Pure functions of immutable values, like :mod:`.state`; the reads are :mod:`.charges`'s. The
logs are read by creation time (the only filter the API has) in *sweeps*: a sweep covers a range
of creation times in slices, newest first, each applied once read whole (all its pages, or the
newer part of it they hold whole), so a range too large for one poll's request budget is
finished by later polls.

- The *forward* sweep, every ``charges.interval``, covers the logs created since the previous
  one (less ``poll.lookback``; the first: back to the oldest session in progress), and back to
  the logs still in progress while that costs fewer pages than looking them up by id. A
  completed log is counted once (by id) when it is completed after counting began (``since``),
  or was seen in progress: the counters, the ``charges`` figures and the reconciliation take it.
- The *backfill* sweep, at a first start after the month began, covers the month (and a day
  before it, for logs created then and completed in it). The logs it finds completed before
  counting began feed only the ``charges`` figures, which are complete once it has finished.

Each source's dollars by local day are a :class:`~.ledger.Ledger`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated

import msgspec
from msgspec.structs import replace

from .ledger import Amount, Count, Ledger, book, month_key, period_start
from .models import TIMESTAMP_RESOLUTION, VideoLog
from .snapshot import OTHER_ROOM, UNKNOWN

BACKFILL_MARGIN = 86400.0  # a log created this long before the month began may be completed in it
RECONCILE_WINDOW = 86400.0  # a session and its log that are not both counted within it are not compared
MIN_SLICE = TIMESTAMP_RESOLUTION  # the smallest slice a sweep reads: one second of creation times
DETAIL_SLACK = 0.00005  # dollars: half the API's 4-decimal resolution


@dataclass(frozen=True)
class Billing:
    """The parts of the configuration the bill depends on."""

    timezone: str = "UTC"
    charges: bool = False
    tolerance: float = 0.0001
    descriptions_max: int = 20
    lookback: float = 300.0
    page_size: int = 1000


class Cost(msgspec.Struct, frozen=True, array_like=True):
    """A counted room session's cost, waiting for its log."""

    dollars: float
    ended: float


class Charged(msgspec.Struct, frozen=True, array_like=True):
    """A counted room-session log's charge, waiting for its session."""

    log_id: str
    dollars: float
    ended: float


class Sweep(msgspec.Struct, frozen=True, array_like=True):
    """Logs created in [floor, until) are still to be read, in slices of ``span`` seconds; a forward
    sweep began at ``began`` (what the next one reads from, less the lookback)."""

    floor: float
    until: float
    span: Annotated[float, msgspec.Meta(gt=0)]
    began: float = 0.0

    def next_slice(self) -> tuple[float, float]:
        return max(self.floor, self.until - self.span), self.until


class Charges(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Everything ``charges.enabled`` carries from one poll to the next."""

    since: float  # counting start of the logs
    ledger: Ledger
    dollars: dict[str, dict[str, Amount]] = msgspec.field(default_factory=dict)  # type -> description
    logs: dict[str, Count] = msgspec.field(default_factory=dict)  # by type
    skipped: dict[str, Count] = msgspec.field(default_factory=dict)
    mismatches: Count = 0
    mismatch_dollars: Amount = 0.0
    descriptions: tuple[str, ...] = ()  # label slots, first come first served
    open: dict[str, float] = msgspec.field(default_factory=dict)  # in progress: log id -> created
    counted: dict[str, float] = msgspec.field(default_factory=dict)  # dedupe memory: id -> created
    read: float | None = None  # start of the last finished forward sweep
    horizon: float | None = None  # no sweep lists again what was created before: its ids are forgotten
    density: float = 0.0  # logs per second of creation time, in the latest forward slice
    sweep: Sweep | None = None  # the forward sweep under way
    backfill: Sweep | None = None
    backfilled: dict[str, Amount] = msgspec.field(default_factory=dict)  # its dollars by day, so far
    costs: dict[str, Cost] = msgspec.field(default_factory=dict)  # by room session id
    charged: dict[str, Charged] = msgspec.field(default_factory=dict)  # by room session id


class Bill(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The bill of one space: the sessions' cost by day, and the logs with ``charges.enabled``."""

    sessions: Ledger
    charges: Charges | None = None


@dataclass(frozen=True)
class Mismatch:
    """A room session whose log charges more or less than its cost (logged once)."""

    session_id: str
    log_id: str
    cost: float
    charge: float


# --- ledgers --------------------------------------------------------------------------------------


def new_bill(since: float, now: float, billing: Billing) -> Bill:
    """A bill that counts from ``since``; with charges, it reads the month back when it began."""
    bill = Bill(Ledger(month_key(now, billing.timezone), since))
    return with_charges(bill, since, now, billing)


def with_charges(bill: Bill, since: float, now: float, billing: Billing) -> Bill:
    """``bill`` with its charges state begun or dropped as ``charges.enabled`` says."""
    if not billing.charges:
        return replace(bill, charges=None) if bill.charges else bill
    if bill.charges:
        return bill
    month = period_start("month", now, billing.timezone)
    backfill = None
    if since - TIMESTAMP_RESOLUTION > month:
        floor, until = month - BACKFILL_MARGIN, math.floor(since) + TIMESTAMP_RESOLUTION
        backfill = Sweep(floor, until, until - floor)
    ledger = Ledger(month_key(now, billing.timezone), since if backfill else min(since, month))
    return replace(bill, charges=Charges(since, ledger, backfill=backfill))


def roll(bill: Bill, now: float, tz: str) -> Bill:
    """``bill`` with its ledgers in the month of ``now`` (a new month starts empty)."""
    month = month_key(now, tz)
    if bill.sessions.month == month and (bill.charges is None or bill.charges.ledger.month == month):
        return bill
    charges = bill.charges
    if charges is not None and charges.ledger.month != month:
        ledger = Ledger(month, charges.ledger.complete_since)
        charges = replace(charges, ledger=ledger, backfill=None, backfilled={})  # its month is over
    sessions = bill.sessions if bill.sessions.month == month else Ledger(month, bill.sessions.complete_since)
    return Bill(sessions, charges)


def add_sessions(
    bill: Bill, counted: Iterable[tuple[str, float, float]], gap: float, billing: Billing
) -> Bill:
    """Book the sessions a poll counted (id, cost, end); ``gap``: the latest end time of a session
    it could not count (0: none), before which the figures are incomplete."""
    ledger, charges, counted = bill.sessions, bill.charges, list(counted)
    for _, dollars, ended in counted:
        ledger = book(ledger, ended, dollars, billing.timezone)
    if gap:
        ledger = replace(ledger, complete_since=max(ledger.complete_since, gap + TIMESTAMP_RESOLUTION))
    if charges is not None and counted:  # kept to be compared with their logs
        costs = {**charges.costs, **{sid: Cost(dollars, ended) for sid, dollars, ended in counted}}
        charges = replace(charges, costs=costs)
    return Bill(ledger, charges)


# --- logs ---------------------------------------------------------------------------------------


def start_sweep(charges: Charges, started: float, tracked: Iterable[float], billing: Billing) -> Charges:
    """``charges`` with a forward sweep begun at ``started``: back to the previous one (less the
    lookback; the first also to the oldest tracked session), and on to logs in progress while
    that costs fewer pages than looking them up one by one (:func:`stale`)."""
    floor = (charges.read if charges.read is not None else charges.since) - billing.lookback
    if charges.read is None:
        floor = min([floor, *tracked])
    floor = _reach(floor, started, charges, billing.page_size)
    if charges.horizon is not None:
        floor = max(floor, charges.horizon)
    until = math.floor(started) + TIMESTAMP_RESOLUTION
    return replace(charges, sweep=Sweep(math.floor(floor), until, until - math.floor(floor), started))


def _reach(floor: float, until: float, charges: Charges, page_size: int) -> float:
    """How far back a sweep of [floor, until) reads: to the k-th oldest log in progress before
    ``floor`` when the pages that adds (estimated from ``density``), plus a lookup for each of the
    k older ones, are fewest (reading on is free while the density is not known)."""
    older = sorted(created for created in charges.open.values() if created < floor)
    base = math.ceil(charges.density * (until - floor) / page_size)
    best, cost = floor, len(older)
    for k, created in enumerate(older):
        pages = math.ceil(charges.density * (until - created) / page_size) - base + k
        if pages < cost:
            best, cost = created, pages
    return best


def stale(charges: Charges) -> list[str]:
    """The logs in progress the forward sweep under way does not reach, oldest first: each is
    looked up by id (one request) instead."""
    floor = charges.sweep.floor if charges.sweep else math.inf
    return sorted(
        (lid for lid, created in charges.open.items() if created < floor), key=charges.open.__getitem__
    )


def shrink(sweep: Sweep) -> Sweep:
    """The sweep after a slice that could not be read whole: a slice half as long next time."""
    return replace(sweep, span=max(MIN_SLICE, math.floor(sweep.span / 2)))


def _advance(sweep: Sweep, start: float) -> Sweep | None:
    """The sweep after its slice from ``start`` was read whole; None when that was its last."""
    if start <= sweep.floor:
        return None
    return replace(sweep, until=start, span=sweep.span * 2)


class _Pass:
    """Mutable working copy of :class:`Charges` while one slice is applied."""

    def __init__(self, charges: Charges, billing: Billing) -> None:
        self.c, self.billing = charges, billing
        self.ledger = charges.ledger
        self.backfilled = Ledger(charges.ledger.month, 0.0, dict(charges.backfilled))
        self.dollars = {kind: dict(d) for kind, d in charges.dollars.items()}
        self.logs, self.skipped = dict(charges.logs), dict(charges.skipped)
        self.descriptions = dict.fromkeys(charges.descriptions)
        self.open, self.counted = dict(charges.open), dict(charges.counted)
        self.charged = dict(charges.charged)

    def description(self, name: str | None) -> str:
        name = UNKNOWN if name is None else name
        if name not in self.descriptions and len(self.descriptions) < self.billing.descriptions_max:
            self.descriptions[name] = None
        return name if name in self.descriptions else OTHER_ROOM

    def take(self, log: VideoLog, created: float, backfill: bool) -> None:
        lid = log.id
        if log.deleted:
            self.open.pop(lid, None)
            return
        if not log.completed:
            if lid not in self.counted and log.watched:  # until completed
                self.open[lid] = created
            return
        if lid in self.counted:
            return
        ended = log.ended_ts
        earliest_end = created if ended is None else ended  # a log ends after it is created
        if lid in self.open or earliest_end > self.c.since - TIMESTAMP_RESOLUTION:
            self.open.pop(lid, None)
            self.counted[lid] = created
            self.count(log, ended)
        elif backfill and ended is not None and log.invalid_reason() is None and log.charge:
            self.backfilled = book(self.backfilled, ended, log.charge, self.billing.timezone)

    def result(self) -> Charges:
        return replace(
            self.c,
            ledger=self.ledger,
            backfilled=self.backfilled.days,
            dollars=self.dollars,
            logs=self.logs,
            skipped=self.skipped,
            descriptions=tuple(self.descriptions),
            open=self.open,
            counted=self.counted,
            charged=self.charged,
        )

    def count(self, log: VideoLog, ended: float | None) -> None:
        reason = log.invalid_reason()
        if reason is not None:
            self.skipped[reason] = self.skipped.get(reason, 0) + 1
            return
        charge, kind = log.charge or 0.0, log.kind
        self.logs[kind] = self.logs.get(kind, 0) + 1
        parts = [(d.description, d.charge or 0.0) for d in log.charge_details or ()]
        rest = charge - sum(amount for _, amount in parts)
        if rest > DETAIL_SLACK or not parts:
            parts.append((None, rest if parts else charge))
        by_description = self.dollars.setdefault(kind, {})
        for name, amount in parts:
            label = self.description(name)
            by_description[label] = by_description.get(label, 0.0) + amount
        if ended is None:  # completed, no end time: after the previous sweep began and it was created
            ended = max(self.c.read or self.c.since, log.created_ts)
        self.ledger = book(self.ledger, ended, charge, self.billing.timezone)
        sid = log.session_id
        if log.kind == "room_session" and sid is not None:
            self.charged[sid] = Charged(log.id, charge, ended)


def apply_slice(
    charges: Charges,
    backfill: bool,
    logs: Iterable[VideoLog],
    malformed: Iterable[str | None],
    billing: Billing,
    start: float | None = None,
) -> Charges:
    """Fold the logs of one slice of a sweep (the forward one, or the backfill), read whole; or of
    its newer part from ``start``, when only that part was read (whole)."""
    sweep = charges.backfill if backfill else charges.sweep
    assert sweep is not None
    first, end = sweep.next_slice()
    start = first if start is None else start
    work = _Pass(charges, billing)
    seen: set[str] = set()
    for log in logs:
        created = log.created_ts
        if not start <= created < end or log.id in seen:
            continue  # outside the slice (the API's filter may include its bounds), or listed twice
        seen.add(log.id)
        work.take(log, created, backfill)
    for lid in malformed:  # skipped once per id; a log in progress stays watched
        if lid is not None and (lid in work.counted or lid in work.open):
            seen.add(lid)
            continue
        if lid is not None:
            seen.add(lid)
            work.counted[lid] = end
        if not backfill:
            work.skipped["malformed"] = work.skipped.get("malformed", 0) + 1
    for lid, created in list(work.open.items()):  # in the slice, not listed: deleted
        if start <= created < end and lid not in seen:
            del work.open[lid]
    after = _advance(sweep, start)
    new = work.result()
    if backfill:
        if after is None:  # the month is read back: the charges figures are complete
            return _backfilled(new, sweep.floor + BACKFILL_MARGIN)
        return replace(new, backfill=after)
    new = replace(new, density=len(seen) / max(end - start, TIMESTAMP_RESOLUTION))
    if after is not None:
        return replace(new, sweep=after)
    return _finish(new, sweep, billing)


def _backfilled(charges: Charges, month: float) -> Charges:
    """``charges`` once the month is read back: what the backfill found joins the figures, which
    are complete from then on (held apart until then, so that the projection's rate, taken from
    the counting start while incomplete, has only what was counted since)."""
    days = dict(charges.ledger.days)
    for day, dollars in charges.backfilled.items():
        days[day] = days.get(day, 0.0) + dollars
    ledger = Ledger(charges.ledger.month, min(charges.ledger.complete_since, month), days)
    return replace(charges, ledger=ledger, backfill=None, backfilled={})


def apply_lookups(
    charges: Charges, found: Mapping[str, VideoLog | None], malformed: Iterable[str], billing: Billing
) -> Charges:
    """Fold the logs in progress looked up by id (:func:`stale`): None when the API no longer has
    one; a malformed answer stops the watch, skipped as ``malformed``."""
    work = _Pass(charges, billing)
    for lid, log in found.items():
        if log is None:
            work.open.pop(lid, None)
        else:
            work.take(log, charges.open.get(lid, log.created_ts), False)
    for lid in malformed:
        if lid in work.open:
            work.counted[lid] = work.open.pop(lid)
            work.skipped["malformed"] = work.skipped.get("malformed", 0) + 1
    return work.result()


def _finish(charges: Charges, sweep: Sweep, billing: Billing) -> Charges:
    """``charges`` after a whole forward sweep, its dedupe memory bounded by what a later sweep can
    still list again: from where the next one will begin (or the backfill, while it runs)."""
    read = sweep.began
    horizon = math.floor(_reach(read - billing.lookback, read, charges, billing.page_size))
    if charges.backfill is not None:
        horizon = min(horizon, math.floor(charges.backfill.floor))
    counted = {lid: created for lid, created in charges.counted.items() if created >= horizon}
    return replace(charges, read=read, sweep=None, counted=counted, horizon=horizon)


def reconcile(charges: Charges, now: float, tolerance: float) -> tuple[Charges, list[Mismatch]]:
    """Compare each room session counted with its log; forget either one after RECONCILE_WINDOW."""
    horizon = now - RECONCILE_WINDOW
    both = charges.costs.keys() & charges.charged.keys()
    gone = {
        sid for waiting in (charges.costs, charges.charged) for sid, w in waiting.items() if w.ended < horizon
    }
    if not both and not gone:
        return charges, []
    mismatches: list[Mismatch] = []
    dollars = charges.mismatch_dollars
    for sid in sorted(both):
        cost, log = charges.costs[sid], charges.charged[sid]
        difference = abs(log.dollars - cost.dollars)
        if difference > tolerance:
            mismatches.append(Mismatch(sid, log.log_id, cost.dollars, log.dollars))
            dollars += difference
    done = both | gone
    new = replace(
        charges,
        costs={sid: c for sid, c in charges.costs.items() if sid not in done},
        charged={sid: c for sid, c in charges.charged.items() if sid not in done},
        mismatches=charges.mismatches + len(mismatches),
        mismatch_dollars=dollars,
    )
    return new, mismatches
