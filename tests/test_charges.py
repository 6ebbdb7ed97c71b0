"""The bill end to end: the real poller against the simulated API's video logs, through faults,
restarts from the state file, a tight request budget and a month end in a non-UTC time zone; the
counters and the period figures equal the ground truth."""

from __future__ import annotations

import math
import random
import threading
from collections import Counter
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from prometheus_client.parser import text_string_to_metric_families

from exporter.bill import Bill
from exporter.cli import build_exposition
from exporter.config import BillingConfig, ChargesConfig, Config
from exporter.exposition import Exposition
from exporter.ledger import figures
from exporter.poller import SpacePoller
from exporter.snapshot import DEFAULT_DURATION_BUCKETS, Snapshots
from exporter.statefile import StateFile

from .conftest import PROJECT, TOKEN, poll_config, space_config
from .support.fake_api import FakeSpace


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_poller(sim: FakeSpace, clock: Clock, state: StateFile, tz: str, **poll: float) -> SpacePoller:
    config = Config(
        spaces=(space_config(sim),),
        poll=poll_config(lookback=60.0, **poll),
        charges=ChargesConfig(enabled=True, interval=60.0),
        billing=BillingConfig(timezone=tz),
    )
    loaded = state.load(["test"]).get("test")
    return SpacePoller(
        config.spaces[0],
        config,
        Snapshots(["test"]),
        threading.Event(),
        clock=clock,
        state=state,
        accounting=loaded,
    )


def epoch(text: str | None) -> float:
    assert text is not None
    return datetime.fromisoformat(text).timestamp()


def month_of(ts: float, tz: str) -> str:
    return datetime.fromtimestamp(ts, ZoneInfo(tz)).strftime("%Y-%m")


def bill_of(poller: SpacePoller) -> Bill:
    assert poller.accounting.bill is not None
    return poller.accounting.bill


def test_charges_equal_ground_truth_through_faults_restarts_and_a_tight_budget(tmp_path: Path) -> None:
    tz = "Asia/Kolkata"
    rng = random.Random(15)
    clock = Clock(datetime.fromisoformat("2026-11-18T11:06:40.5+00:00").timestamp())  # between seconds
    state = StateFile(str(tmp_path / "state.json"), DEFAULT_DURATION_BUCKETS, clock=clock)
    faults = [(500, "respond"), (503, "respond"), (429, "respond"), (0, "reset"), (200, "truncate")]
    with FakeSpace(PROJECT, TOKEN, clock=clock) as sim:
        for day in [2, 9, 17] + [rng.uniform(0.1, 16) for _ in range(40)]:  # ended before counting
            created = clock.now - day * 86400  # began, some in October: only the backfill reads them
            for room in range(3):  # created in the same second: pages end between them
                sid = sim.add_session(name=f"old-{day}-{room}", created_at=created, start_time=created)
                sim.complete_session(sid, cost_in_dollars=round(0.5 * day, 4), end_time=created + 3600)
        long_running = sim.add_session(
            name="marathon", created_at=clock.now - 7200, start_time=clock.now - 7200
        )
        counting_start = clock.now
        poller = make_poller(sim, clock, state, tz, max_requests=4, page_size=5)
        live, mismatched, deleted = [long_running], set(), set()
        restarts: Counter[str] = Counter()
        for step in range(60):
            clock.now += 30
            for _ in range(rng.randint(0, 3)):
                live.append(sim.add_session(name=f"room-{step}-{len(live)}"))
            for sid in [s for s in live if rng.random() < 0.35 and s != long_running]:
                live.remove(sid)
                cost = round(rng.uniform(0, 2), 4)
                sim.complete_session(sid, cost_in_dollars=cost)
                if rng.random() < 0.15 and sim.log_of(sid) not in deleted:  # charged a cent more
                    sim.update_log(sim.log_of(sid), charge=round(cost + 0.01, 4))
                    mismatched.add(sid)
            if step == 20:
                sim.complete_session(long_running, cost_in_dollars=3.25)
                live.remove(long_running)
            if step == 8:  # a log whose record is garbled while it is in progress: watched all the same
                garbled = sim.add_session(name="garbled")
                sim.update_log(sim.log_of(garbled), charge="garbled")
            if step == 16:  # fine again once completed: counted
                sim.restore_log(sim.log_of(garbled))
                sim.complete_session(garbled, cost_in_dollars=0.75)
            if live and rng.random() < 0.1:  # a log deleted while its session runs: never counted
                victim = rng.choice(live)
                if sim.log_of(victim) not in deleted:
                    sim.delete_log(sim.log_of(victim))
                    deleted.add(sim.log_of(victim))
                    mismatched.discard(victim)
            if rng.random() < 0.3:
                status, kind = rng.choice(faults)
                endpoint = rng.choice(["list", "logs", "logs"])
                sim.fail_next(status or 500, kind=kind, endpoint=endpoint, times=rng.randint(1, 2))  # type: ignore[arg-type]
            poller.poll_once()
            if step % 5 == 4:  # restart from the state file
                charges = bill_of(poller).charges
                assert charges is not None
                restarts.update(open=len(charges.open), sweeping=charges.sweep is not None)
                restarts.update(backfilling=charges.backfill is not None)
                restarts.update(poller.deferred)
                poller.client.close()
                poller = make_poller(sim, clock, state, tz, max_requests=4, page_size=5)
        for sid in live:
            sim.complete_session(sid, cost_in_dollars=1.0)
        sim.clear_faults()
        poller.config = replace(poller.config, poll=replace(poller.config.poll, max_requests=200))
        for _ in range(6):
            clock.now += 30
            assert poller.poll_once()
        poller.client.close()

    charges = bill_of(poller).charges
    assert charges is not None
    logs = [log for log in sim.logs() if log["status"] == "completed"]
    counted = [log for log in logs if epoch(log["ended_at"]) > counting_start - 1]
    assert sum(charges.logs.values()) == charges.logs["room_session"] == len(counted) > 50
    got = sum(v for by_description in charges.dollars.values() for v in by_description.values())
    assert math.isclose(got, sum(log["charge"] for log in counted), abs_tol=1e-9)
    assert charges.mismatches == len(mismatched) > 0
    assert math.isclose(charges.mismatch_dollars, 0.01 * len(mismatched), abs_tol=1e-9)
    month = month_of(clock.now, tz)
    in_month = [log["charge"] for log in logs if month_of(epoch(log["ended_at"]), tz) == month]
    shown = figures(charges.ledger, clock.now, tz).periods
    assert math.isclose(shown["month"][0], sum(in_month), abs_tol=1e-9) and shown["month"][1]
    assert charges.backfill is None and charges.sweep is None and charges.open == {}
    sessions = [
        s for s in sim.sessions() if s["status"] == "completed" and epoch(s["end_time"]) > counting_start - 1
    ]
    session_month = figures(bill_of(poller).sessions, clock.now, tz).periods["month"]
    assert math.isclose(session_month[0], sum(s["cost_in_dollars"] for s in sessions), abs_tol=1e-9)
    assert session_month[1] is False  # counting began after the month did, and sessions are not read back
    assert restarts["backfilling"] > 0 and restarts["sweeping"] > 0 and restarts["open"] > 0, restarts
    assert poller.requests.counts.get(("logs", "200"), 0) > 0


def test_month_end_in_a_non_utc_time_zone_across_a_restart(tmp_path: Path) -> None:
    tz = "Australia/Sydney"  # UTC+11 in November (daylight saving time)
    boundary = datetime(2026, 12, 1, tzinfo=ZoneInfo(tz)).timestamp()  # 2026-11-30T13:00:00Z
    clock = Clock(boundary - 600)
    state = StateFile(str(tmp_path / "state.json"), DEFAULT_DURATION_BUCKETS, clock=clock)
    with FakeSpace(PROJECT, TOKEN, clock=clock) as sim:
        rooms = {name: sim.add_session(name=name) for name in ("november", "last-second", "december")}
        clock.now += 10
        poller = make_poller(sim, clock, state, tz)
        assert poller.poll_once()
        sim.complete_session(rooms["november"], cost_in_dollars=1.25, end_time=boundary - 300)
        clock.now = boundary - 200
        assert poller.poll_once()
        clock.now = boundary - 0.5
        assert poller.poll_once()
        before = _shown(poller, clock.now, tz)
        assert before["sessions"]["month"] == (1.25, False)  # counting began after November did
        assert before["charges"]["month"] == (1.25, True)  # the logs were read back
        exposition = build_exposition(poller.snapshots, poller.config, clock=clock)
        assert _month_figure(exposition) == 1.25
        clock.now = boundary  # no poll in between: the cached text is rendered anew all the same
        assert _month_figure(exposition) == 0.0

        # Ended in November, but counted after the boundary: in the counters, not December's figures.
        sim.complete_session(rooms["last-second"], cost_in_dollars=2.5, end_time=boundary - 1)
        poller.client.close()  # down across the boundary; restarted from the state file
        clock.now = boundary + 70
        sim.complete_session(rooms["december"], cost_in_dollars=4.0, end_time=boundary + 10)
        poller = make_poller(sim, clock, state, tz)
        assert poller.poll_once()
        after = _shown(poller, clock.now, tz)
        assert after["sessions"] == {"day": (4.0, True), "month": (4.0, True)}
        assert after["charges"] == {"day": (4.0, True), "month": (4.0, True)}
        charges = bill_of(poller).charges
        assert charges is not None and charges.logs == {"room_session": 3}  # the counters go on
        assert sum(poller.accounting.totals.completed.values()) == 3
        clock.now = datetime(2026, 12, 2, tzinfo=ZoneInfo(tz)).timestamp()  # the next day, no poll yet
        assert _shown(poller, clock.now, tz)["charges"] == {"day": (0.0, True), "month": (4.0, True)}
        poller.client.close()


def test_the_read_timestamp_ages_from_the_counting_start_while_the_first_sweep_cannot_finish(
    tmp_path: Path,
) -> None:
    clock = Clock(datetime.fromisoformat("2026-11-18T11:06:40+00:00").timestamp())
    state = StateFile(str(tmp_path / "state.json"), DEFAULT_DURATION_BUCKETS, clock=clock)
    with FakeSpace(PROJECT, TOKEN, clock=clock) as sim:
        sim.add_session(name="running")
        poller = make_poller(sim, clock, state, "UTC", interval=1.0, timeout=1.0)  # retries: real time
        exposition = build_exposition(poller.snapshots, poller.config, clock=clock)
        sim.fail_next(500, endpoint="logs", times=10_000)  # every logs page fails
        first = clock.now + 60
        for _ in range(3):
            clock.now += 60
            assert poller.poll_once()  # the sessions are polled all the same
        charges = bill_of(poller).charges
        assert charges is not None and charges.read is None
        assert _value(exposition, "signalwire_video_charges_read_timestamp_seconds") == charges.since
        sim.clear_faults()
        clock.now += 60
        assert poller.poll_once()  # the sweep begun at the first poll finishes
        assert _value(exposition, "signalwire_video_charges_read_timestamp_seconds") == first
        poller.client.close()


def _value(exposition: Exposition, name: str) -> float:
    text = exposition.render(None)[0].decode()
    [value] = [
        s.value for family in text_string_to_metric_families(text) for s in family.samples if s.name == name
    ]
    return value


def _month_figure(exposition: Exposition) -> float:
    text = exposition.render(None)[0].decode()
    [value] = [
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "signalwire_video_cost_period_dollars"
        and s.labels["period"] == "month"
        and s.labels["source"] == "charges"
    ]
    return value


def _shown(poller: SpacePoller, now: float, tz: str) -> dict[str, dict[str, Any]]:
    bill = bill_of(poller)
    assert bill.charges is not None
    return {
        "sessions": figures(bill.sessions, now, tz).periods,
        "charges": figures(bill.charges.ledger, now, tz).periods,
    }
