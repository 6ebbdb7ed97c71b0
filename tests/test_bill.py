"""The bill's pure rules (exporter/bill.py): local periods, ledgers, the projection, the counting
rule of video logs, sweeps and reconciliation."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import msgspec
import pytest

from exporter.bill import (
    BACKFILL_MARGIN,
    MIN_SLICE,
    RECONCILE_WINDOW,
    Bill,
    Billing,
    Charges,
    Cost,
    Sweep,
    add_sessions,
    apply_lookups,
    apply_slice,
    new_bill,
    reconcile,
    roll,
    shrink,
    stale,
    start_sweep,
)
from exporter.ledger import Ledger, book, figures, month_end, month_key, period_start
from exporter.models import VideoLog

TZ = "America/New_York"  # DST ends on Sunday 2026-11-01 at 02:00 local (06:00 UTC)
BILLING = Billing(timezone=TZ, charges=True, descriptions_max=2, lookback=60.0)


def ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def video_log(lid: str, created: str, ended: str | None = None, **fields: Any) -> VideoLog:
    record = {
        "id": lid,
        "type": "video_room_session",
        "url": f"https://x.example/api/video/room_sessions/s-{lid}",
        "status": "completed" if ended else "in-progress",
        "created_at": created,
        "ended_at": ended,
        "charge": 1.0 if ended else 0,
        "charge_details": [{"description": "minutes", "charge": 1.0}] if ended else [],
        **fields,
    }
    return msgspec.convert(record, VideoLog)


def test_periods_begin_at_local_midnight_across_the_dst_change_and_the_month_end() -> None:
    t = ts("2026-11-01T05:30:00+00:00")  # 01:30 EDT, the first of the two 01:30s
    assert period_start("month", t, TZ) == period_start("day", t, TZ) == ts("2026-11-01T00:00:00-04:00")
    assert period_start("day", ts("2026-11-02T04:59:59+00:00"), TZ) == ts("2026-11-01T00:00:00-04:00")
    assert period_start("day", ts("2026-11-02T05:00:00+00:00"), TZ) == ts("2026-11-02T00:00:00-05:00")
    assert month_end(t, TZ) == ts("2026-12-01T00:00:00-05:00")
    assert month_key(ts("2026-11-01T03:59:59+00:00"), TZ) == "2026-10"
    assert month_key(ts("2026-11-01T04:00:00+00:00"), TZ) == "2026-11"
    assert month_end(ts("2026-12-31T12:00:00+00:00"), "UTC") == ts("2027-01-01T00:00:00+00:00")


def test_figures_reset_exactly_at_the_local_month_boundary() -> None:
    boundary = ts("2026-11-01T00:00:00-04:00")
    since = ts("2026-10-01T00:00:00-04:00")
    bill = new_bill(since, since, Billing(timezone=TZ))
    bill = add_sessions(bill, [("a", 2.0, boundary - 1), ("b", 0.5, boundary - 7200)], 0.0, BILLING)
    before = figures(bill.sessions, boundary - 1, TZ)
    assert before.periods == {"day": (2.5, True), "month": (2.5, True)}
    at = figures(bill.sessions, boundary, TZ)  # no poll since: the figures still reset
    assert at.periods == {"day": (0.0, True), "month": (0.0, True)}
    # The first poll after the boundary rolls the ledger; a session that ended before it is October's.
    bill = add_sessions(
        roll(bill, boundary + 20, TZ), [("c", 4.0, boundary - 3), ("d", 1.0, boundary + 5)], 0.0, BILLING
    )
    assert bill.sessions.month == "2026-11" and bill.sessions.days == {"2026-11-01": 1.0}
    assert figures(bill.sessions, boundary + 30, TZ).periods["month"] == (1.0, True)


def test_a_figure_is_complete_only_for_periods_that_began_after_counting_did() -> None:
    since = ts("2026-11-18T15:00:00-05:00")
    bill = new_bill(since, since, Billing(timezone=TZ))
    assert figures(bill.sessions, since + 60, TZ).periods == {"day": (0.0, False), "month": (0.0, False)}
    next_day = ts("2026-11-19T00:00:00-05:00")
    assert figures(bill.sessions, next_day, TZ).periods == {"day": (0.0, True), "month": (0.0, False)}
    # A session ended while the exporter was down too long (backfill_limit) leaves its day incomplete.
    gapped = add_sessions(bill, [], next_day + 3600, BILLING)
    assert figures(gapped.sessions, next_day + 7200, TZ).periods["day"] == (0.0, False)
    assert figures(gapped.sessions, ts("2026-11-20T00:00:00-05:00"), TZ).periods["day"] == (0.0, True)


def test_projection_is_month_to_date_plus_the_recent_rate_times_the_time_left() -> None:
    now = ts("2026-11-18T12:00:00-05:00")
    days = {"2026-11-02": 10.0, "2026-11-12": 3.0, "2026-11-15": 4.0, "2026-11-18": 2.0}
    ledger = Ledger("2026-11", 0.0, days)
    window = now - ts("2026-11-12T00:00:00-05:00")  # the current day and the six before it
    left = ts("2026-12-01T00:00:00-05:00") - now
    assert figures(ledger, now, TZ).projected == pytest.approx(19.0 + 9.0 / window * left, rel=1e-12)
    early = ts("2026-11-03T06:00:00-05:00")  # less than 7 days into the month: since it began
    rate = 10.0 / (early - ts("2026-11-01T00:00:00-04:00"))
    ledger = Ledger("2026-11", 0.0, {"2026-11-02": 10.0})
    left = ts("2026-12-01T00:00:00-05:00") - early
    assert figures(ledger, early, TZ).projected == pytest.approx(10.0 + rate * left, rel=1e-12)
    assert figures(Ledger("2026-10", 0.0, {"2026-10-31": 5.0}), now, TZ).projected == 0.0
    fresh = Ledger("2026-11", now - 3600, {"2026-11-18": 2.0})  # counting began an hour ago
    left = ts("2026-12-01T00:00:00-05:00") - now
    assert figures(fresh, now, TZ).projected == pytest.approx(2.0 + 2.0 / 3600 * left, rel=1e-12)


def charges_since(since: float) -> Charges:
    return sweeping(Charges(since, Ledger(month_key(since, TZ), since)))


def sweeping(charges: Charges) -> Charges:
    """``charges`` with a forward sweep whose next slice holds every log."""
    return msgspec.structs.replace(charges, sweep=Sweep(0.0, 4e9, 4e9))


def test_logs_are_counted_once_when_completed_after_counting_began_or_seen_in_progress() -> None:
    since = ts("2026-11-18T10:00:00+00:00")
    charges = charges_since(since)
    first = [
        video_log("early", "2026-11-18T08:00:00Z", "2026-11-18T09:59:58Z"),  # before counting began
        video_log("late", "2026-11-18T08:00:00Z", "2026-11-18T10:00:05Z"),
        video_log("running", "2026-11-18T07:00:00Z"),
        video_log("null-open", "2026-11-18T09:00:00Z", status=None),
        video_log("weird", "2026-11-18T09:00:00Z", status="archived"),  # not a status the spec has
        video_log("null-ended", "2026-11-18T09:00:00Z", "2026-11-18T10:01:00Z", status=None),
        video_log("bad", "2026-11-18T09:00:00Z", "2026-11-18T10:01:00Z", charge=None),
        video_log("sneaky", "2026-11-18T09:00:00Z", "2026-11-18T10:01:00Z", charge=2.0),  # $1 in no detail
    ]
    charges = apply_slice(charges, False, first, [None, "garbled"], BILLING)
    assert charges.logs == {"room_session": 3}  # late, null-ended, sneaky
    assert charges.dollars == {"room_session": {"minutes": 3.0, "unknown": 1.0}}
    assert charges.skipped == {"invalid_charge": 1, "malformed": 2}
    assert set(charges.open) == {"running", "null-open"}
    assert charges.ledger.days == {"2026-11-18": 4.0}
    second = [
        video_log("running", "2026-11-18T07:00:00Z", "2026-11-18T10:02:00Z", charge_details=None),
        video_log("late", "2026-11-18T08:00:00Z", "2026-11-18T10:00:05Z"),  # again: not twice
        msgspec.convert(
            {"id": "null-open", "discarded_at": "2026-11-18T10:03:00Z", "created_at": "2026-11-18T09:00:00Z"},
            VideoLog,
        ),
    ]
    charges = apply_slice(sweeping(charges), False, second, ["garbled"], BILLING)
    assert charges.logs == {"room_session": 4}
    assert charges.dollars["room_session"] == {"minutes": 3.0, "unknown": 2.0}  # no details: unknown
    assert charges.skipped["malformed"] == 2  # an id's malformed record is skipped once
    assert charges.open == {}
    # A log in progress whose record is garbled for a while stays watched, and counts once completed.
    watched = video_log("w", "2026-11-18T10:05:00Z")
    charges = apply_slice(sweeping(charges), False, [watched], [], BILLING)
    charges = apply_slice(sweeping(charges), False, [], ["w"], BILLING)
    assert "w" in charges.open and charges.skipped["malformed"] == 2
    done = video_log("w", "2026-11-18T10:05:00Z", "2026-11-18T10:06:00Z")
    charges = apply_slice(sweeping(charges), False, [done], [], BILLING)
    assert charges.logs == {"room_session": 5} and charges.open == {}


def test_a_log_completed_without_an_end_time_counts_when_created_after_counting_began() -> None:
    since = ts("2026-11-18T10:00:00+00:00")
    logs = [
        video_log("new", "2026-11-18T10:00:30Z", "2026-11-18T10:05:00Z", ended_at=None),  # ended after
        video_log("old", "2026-11-18T09:00:00Z", "2026-11-18T10:05:00Z", ended_at=None),  # unknown
    ]
    charges = apply_slice(charges_since(since), False, logs, [], BILLING)
    assert (charges.logs, charges.skipped, set(charges.counted)) == ({"room_session": 1}, {}, {"new"})
    assert charges.ledger.days == {"2026-11-18": 1.0}  # booked when counting began: no sweep before
    # ...or when it was created, if later: the previous sweep began in November, the log in December
    boundary = ts("2026-12-01T00:00:00-05:00")
    december = msgspec.structs.replace(
        charges_since(boundary - 600), ledger=Ledger("2026-12", boundary), read=boundary - 300
    )
    log = video_log("dec", "2026-12-01T05:02:00Z", "2026-12-01T05:05:00Z", ended_at=None)
    assert apply_slice(december, False, [log], [], BILLING).ledger.days == {"2026-12-01": 1.0}


def test_descriptions_past_the_maximum_are_other() -> None:
    charges = charges_since(ts("2026-11-18T00:00:00Z"))
    details = [{"description": d, "charge": 0.25} for d in ("a", "b", "c", None)]
    log = video_log("x", "2026-11-18T08:00:00Z", "2026-11-18T09:00:00Z", charge_details=details)
    charges = apply_slice(charges, False, [log], [], BILLING)
    assert charges.dollars == {"room_session": {"a": 0.25, "b": 0.25, "__other__": 0.5}}


def test_a_slice_drops_open_logs_it_no_longer_lists_and_ignores_logs_outside_it() -> None:
    since = ts("2026-11-18T10:00:00+00:00")
    open_logs = {"gone": ts("2026-11-18T09:30:00Z"), "older": ts("2026-11-18T08:00:00Z")}
    charges = Charges(
        since,
        Ledger("2026-11", since),
        open=open_logs,
        sweep=Sweep(ts("2026-11-18T08:30:00Z"), since, 3600.0),
    )
    outside = video_log("outside", "2026-11-18T08:59:59Z", "2026-11-18T10:30:00Z")
    charges = apply_slice(charges, False, [outside], [], BILLING)
    assert charges.open == {"older": open_logs["older"]}  # outside the slice [09:00, 10:00)
    assert charges.logs == {}  # the API included a bound: the next slice takes it
    assert charges.sweep == Sweep(ts("2026-11-18T08:30:00Z"), ts("2026-11-18T09:00:00Z"), 7200.0)


def test_a_forward_sweep_reaches_back_to_open_logs_and_prunes_what_it_cannot_list_again() -> None:
    since = ts("2026-11-18T10:00:00+00:00")
    charges = Charges(since, Ledger("2026-11", since))
    charges = start_sweep(charges, since + 30, [since - 500.0], BILLING)
    assert charges.sweep == Sweep(
        since - 500, since + 31, 531.0, since + 30
    )  # first: the oldest session in progress
    done = apply_slice(
        charges, False, [video_log("a", "2026-11-18T09:59:50Z", "2026-11-18T10:00:10Z")], [], BILLING
    )
    assert done.sweep is None and done.read == since + 30
    later = start_sweep(replace_open(done, {"o": since - 1000}), since + 400, [since - 9999], BILLING)
    assert later.sweep == Sweep(since - 30, since + 401, 431.0, since + 400)  # never below its horizon
    assert stale(later) == ["o"]
    pruned = apply_slice(replace_open(later, {}), False, [], [], BILLING)
    assert done.counted == {"a": since - 10}  # kept while a sweep from read - lookback lists it
    assert pruned.counted == {}  # not once no later sweep can reach it
    assert shrink(Sweep(0.0, 1000.0, 100.0)) == Sweep(0.0, 1000.0, 50.0)
    assert shrink(Sweep(0.0, 1000.0, 1.5)) == Sweep(0.0, 1000.0, MIN_SLICE)


def test_a_sweep_read_in_several_slices_reads_on_from_where_it_began() -> None:
    since = ts("2026-11-18T10:00:00+00:00")
    charges = start_sweep(Charges(since, Ledger("2026-11", since)), since + 30, [since - 7200.0], BILLING)
    assert charges.sweep is not None
    charges = msgspec.structs.replace(charges, sweep=shrink(shrink(charges.sweep)))  # out of budget twice
    slices = 0
    while charges.sweep is not None:
        charges = apply_slice(charges, False, [], [], BILLING)
        slices += 1
    assert slices == 3 and charges.read == since + 30  # not where its last slice began


def replace_open(charges: Charges, open_logs: dict[str, float]) -> Charges:
    return msgspec.structs.replace(charges, open=open_logs)


def test_backfill_books_logs_completed_before_counting_began_and_counts_the_later_ones() -> None:
    billing = Billing(timezone=TZ, charges=True)
    since = ts("2026-11-18T10:00:00+00:00")
    bill = new_bill(since, since, billing)
    assert bill.charges is not None and bill.charges.backfill is not None
    month = ts("2026-11-01T00:00:00-04:00")
    assert bill.charges.backfill.floor == month - BACKFILL_MARGIN
    logs = [
        video_log("oct", "2026-10-31T20:00:00Z", "2026-11-01T03:59:00Z"),  # Oct 31, 23:59 in New York
        video_log("nov", "2026-10-31T20:00:00Z", "2026-11-01T05:00:00Z"),
        video_log("done", "2026-11-18T09:00:00Z", "2026-11-18T09:59:00Z"),
        video_log("after", "2026-11-18T09:00:00Z", "2026-11-18T10:00:30Z"),
        video_log("open", "2026-11-18T09:00:00Z"),
    ]
    charges = apply_slice(bill.charges, True, logs, ["x"], billing)
    assert charges.backfill is None  # one slice covered the whole range
    assert charges.ledger.days == {"2026-11-01": 1.0, "2026-11-18": 2.0}
    assert charges.ledger.complete_since == month
    assert charges.logs == {"room_session": 1} and set(charges.open) == {"open"}
    assert charges.skipped == {}  # the backfill counts no skips: its logs are not the counters'
    assert figures(charges.ledger, since + 60, TZ).periods == {"day": (2.0, True), "month": (3.0, True)}


def test_the_backfill_joins_the_figures_only_once_finished_and_reads_a_duplicate_once() -> None:
    billing = Billing(timezone=TZ, charges=True)
    since = ts("2026-11-18T10:00:00+00:00")
    bill = new_bill(since, since, billing)
    assert bill.charges is not None and bill.charges.backfill is not None
    charges = msgspec.structs.replace(bill.charges, backfill=shrink(bill.charges.backfill))  # two slices
    old = video_log("old", "2026-11-17T23:00:00Z", "2026-11-18T09:30:00Z")
    charges = apply_slice(charges, True, [old, old], [], billing)  # listed twice: booked once
    assert charges.backfill is not None and charges.backfilled == {"2026-11-18": 1.0}
    assert charges.ledger.days == {}  # held apart: the projection's rate is taken since counting began
    assert figures(charges.ledger, since + 60, TZ).periods["day"] == (0.0, False)
    charges = apply_slice(charges, True, [], [], billing)
    assert (
        charges.backfill is None and charges.backfilled == {} and charges.ledger.days == {"2026-11-18": 1.0}
    )
    assert figures(charges.ledger, since + 60, TZ).periods["day"] == (1.0, True)


def test_counting_from_the_first_second_of_a_month_needs_no_backfill() -> None:
    month = ts("2026-11-01T00:00:00-04:00")
    bill = new_bill(month + 0.5, month + 0.5, Billing(timezone=TZ, charges=True))
    assert bill.charges is not None and bill.charges.backfill is None
    assert figures(bill.charges.ledger, month + 60, TZ).periods["month"] == (0.0, True)


def test_an_end_time_without_a_local_date_is_in_no_month() -> None:
    tz = "Australia/Sydney"  # 9999-12-31T23:00Z is in the year 10000 there
    ledger = Ledger("2026-11", 0.0)
    assert book(ledger, ts("9999-12-31T23:00:00+00:00"), 1.0, tz) == ledger
    charges = charges_since(ts("2026-11-18T00:00:00Z"))
    far = video_log("far", "2026-11-18T08:00:00Z", "9999-12-31T23:00:00Z")
    charges = apply_slice(charges, False, [far], [], Billing(timezone=tz, charges=True))
    assert charges.logs == {"room_session": 1} and charges.ledger.days == {}


def test_a_sweep_reaches_back_to_logs_in_progress_while_cheaper_than_looking_them_up() -> None:
    since = ts("2026-11-18T10:00:00+00:00")
    open_logs = {"ancient": since - 100_000, "old": since - 5000, "bad": since - 4000, "recent": since - 900}
    charges = Charges(since, Ledger("2026-11", since), open=open_logs, read=since - 60, density=1.0)
    charges = start_sweep(charges, since, [], BILLING)  # 1 log a second, 1,000 a page
    assert charges.sweep is not None and charges.sweep.floor == since - 900  # 0 more pages, 3 lookups
    assert stale(charges) == ["ancient", "old", "bad"]  # oldest first
    unknown = msgspec.structs.replace(charges, density=0.0, sweep=None)
    assert start_sweep(unknown, since, [], BILLING).sweep == Sweep(
        since - 100_000, since + 1, 100_001.0, since
    )
    done = video_log("old", "2026-11-18T08:36:40Z", "2026-11-18T09:59:30Z")
    charges = apply_lookups(charges, {"old": done, "ancient": None}, ["bad"], BILLING)
    assert charges.open == {"recent": since - 900} and charges.logs == {"room_session": 1}
    assert charges.skipped == {"malformed": 1} and set(charges.counted) == {"old", "bad"}
    # Done with that sweep, it forgets what the next one cannot list again, and never goes back.
    recent = video_log("recent", "2026-11-18T09:45:00Z")  # still in progress
    charges = apply_slice(charges, False, [recent], [], BILLING)
    assert charges.horizon == since - 900 and charges.counted == {}
    charges = msgspec.structs.replace(charges, open={"found-late": since - 3000, **charges.open}, density=0.0)
    assert start_sweep(charges, since + 300, [], BILLING).sweep.floor == since - 900  # type: ignore[union-attr]


def test_a_new_month_ends_the_backfill_of_the_last() -> None:
    since = ts("2026-11-30T20:00:00-05:00")
    bill = new_bill(since, since, Billing(timezone=TZ, charges=True))
    rolled = roll(bill, ts("2026-12-01T00:00:01-05:00"), TZ)
    assert rolled.charges is not None and rolled.charges.backfill is None
    assert rolled.charges.ledger == Ledger("2026-12", since)  # complete: counting began before it
    assert figures(rolled.charges.ledger, ts("2026-12-01T01:00:00-05:00"), TZ).periods["month"] == (0.0, True)


def test_reconcile_compares_each_session_with_its_log_once_and_forgets_after_a_day() -> None:
    now = ts("2026-11-18T10:00:00Z")
    bill = new_bill(now - 100, now, Billing(timezone=TZ, charges=True))
    bill = add_sessions(
        bill, [("s-a", 1.0, now), ("s-b", 0.5, now), ("s-old", 2.0, now - RECONCILE_WINDOW - 1)], 0.0, BILLING
    )
    assert bill.charges is not None
    assert bill.charges.costs["s-a"] == Cost(1.0, now)
    logs = [
        video_log("a", "2026-11-18T09:59:00Z", "2026-11-18T10:00:00Z"),
        video_log("b", "2026-11-18T09:59:00Z", "2026-11-18T10:00:00Z", charge=0.5001, charge_details=None),
        video_log("c", "2026-11-18T09:59:00Z", "2026-11-18T10:00:00Z", charge=3.0, charge_details=None),
    ]
    charges = apply_slice(sweeping(bill.charges), False, logs, [], BILLING)
    charges, found = reconcile(charges, now, 0.0001)
    assert [(m.session_id, m.log_id) for m in found] == []  # a: equal; b: within the tolerance
    assert set(charges.costs) == set() and set(charges.charged) == {"s-c"}  # s-old expired
    charges = msgspec.structs.replace(charges, costs={"s-c": Cost(2.5, now)})
    charges, found = reconcile(charges, now + 60, 0.0001)
    assert [(m.session_id, m.log_id, m.cost, m.charge) for m in found] == [("s-c", "c", 2.5, 3.0)]
    assert charges.mismatches == 1 and charges.mismatch_dollars == 0.5
    assert reconcile(charges, now + 120, 0.0001) == (charges, [])  # once
    late, _ = reconcile(
        msgspec.structs.replace(charges, costs={"s-x": Cost(1.0, now)}), now + RECONCILE_WINDOW + 1, 0.0
    )
    assert late.costs == {}


def test_bills_round_trip_through_json() -> None:
    bill = new_bill(ts("2026-11-18T10:00:00Z"), ts("2026-11-18T10:00:00Z"), BILLING)
    bill = add_sessions(bill, [("s", 1.25, ts("2026-11-18T10:00:00Z"))], 0.0, BILLING)
    assert msgspec.json.decode(msgspec.json.encode(bill), type=Bill) == bill
    assert math.isfinite(figures(bill.sessions, ts("2026-11-18T11:00:00Z"), TZ).projected)
