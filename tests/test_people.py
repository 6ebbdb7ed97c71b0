"""Members and recordings end to end: the real poller against the simulated API, through faults,
restarts from the state file and a tight request budget; the counters equal the ground truth."""

from __future__ import annotations

import math
import random
import threading
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from exporter.config import Config, MembersConfig, RecordingsConfig
from exporter.poller import SpacePoller
from exporter.snapshot import DEFAULT_DURATION_BUCKETS, Snapshots, Totals
from exporter.statefile import StateFile

from .conftest import PROJECT, TOKEN, poll_config, space_config
from .support.fake_api import FakeSpace

T0 = 1_795_000_000.0
QUALITIES = ("720p", "1080p")


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def make_poller(sim: FakeSpace, clock: Clock, state: StateFile, **poll: float) -> SpacePoller:
    config = Config(
        spaces=(space_config(sim),),
        poll=poll_config(lookback=60.0, **poll),
        members=MembersConfig(enabled=True, live=True),
        recordings=RecordingsConfig(enabled=True, max_wait=600.0),
    )
    snapshots = Snapshots(["test"])
    loaded = state.load(["test"])
    return SpacePoller(
        config.spaces[0],
        config,
        snapshots,
        threading.Event(),
        clock=clock,
        state=state,
        accounting=loaded.get("test"),
    )


def truth(sim: FakeSpace, counted: list[str]) -> dict[str, Any]:
    """What the counters must show for the sessions counted: members and completed recordings."""
    seconds = cost = 0.0
    joined = recordings = 0
    recording_seconds = recording_cost = 0.0
    recording_bytes = 0
    for sid in counted:
        for member in sim.members(sid):
            if member["join_time"] is None:
                continue
            joined += 1
            seconds += member["duration"] or 0
            cost += member["cost_in_dollars"] or 0.0
        for rec in sim.recordings(sid):
            assert rec["status"] == "completed", rec
            recordings += 1
            recording_seconds += rec["duration"]
            recording_bytes += rec["size_in_bytes"]
            recording_cost += rec["cost_in_dollars"]
    return {
        "joined": joined,
        "seconds": seconds,
        "cost": cost,
        "recordings": (recordings, recording_seconds, recording_bytes, recording_cost),
    }


def observed(totals: Totals) -> dict[str, Any]:
    people, r = totals.people, totals.recordings
    return {
        "joined": sum(h.total for h in people.members.values()),
        "seconds": sum(people.seconds.values()),
        "cost": sum(people.cost.values()),
        "recordings": (r.count, r.seconds, r.bytes, r.cost),
    }


def assert_equal(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert got["joined"] == want["joined"]
    assert math.isclose(got["seconds"], want["seconds"], abs_tol=1e-6)
    assert math.isclose(got["cost"], want["cost"], abs_tol=1e-9)
    assert got["recordings"][:3] == want["recordings"][:3]
    assert math.isclose(got["recordings"][3], want["recordings"][3], abs_tol=1e-9)


def test_members_and_recordings_equal_ground_truth_through_faults_restarts_and_a_tight_budget(
    tmp_path: Path,
) -> None:
    rng = random.Random(14)
    clock = Clock()
    state = StateFile(str(tmp_path / "state.json"), DEFAULT_DURATION_BUCKETS, clock=clock)
    faults = [(500, "respond"), (503, "respond"), (429, "respond"), (0, "reset"), (200, "truncate")]
    with FakeSpace(PROJECT, TOKEN, clock=clock) as sim:
        poller = make_poller(sim, clock, state, max_requests=3)
        live: list[str] = []
        sessions = 0
        deferred: Counter[str] = Counter()  # work the budget left for later, over every process
        faulted: Counter[str] = Counter()  # answers that were not 200, by endpoint
        queued: Counter[str] = Counter()  # sessions in the queues at a restart
        for step in range(60):
            clock.now += 30
            for _ in range(rng.randint(0, 3)):  # sessions start, with members and some recordings
                sid = sim.add_session(
                    name=f"room-{sessions}", quality=rng.choice(QUALITIES), fps="30", max_members=4
                )
                sessions += 1
                for i in range(rng.randint(0, 4)):
                    sim.add_member(sid, join_time=None if i == 3 else clock.now - 20 + i)
                if rng.random() < 0.5:
                    sim.add_recording(sid, processing=rng.choice([0.0, 45.0, 200.0]))
                live.append(sid)
            for sid in [s for s in live if rng.random() < 0.4]:  # some end
                live.remove(sid)
                sim.complete_session(sid, cost_in_dollars=round(rng.uniform(0, 2), 4))
            if rng.random() < 0.3:
                status, kind = rng.choice(faults)
                endpoint = rng.choice(["list", "members", "recordings"])
                sim.fail_next(status or 500, kind=kind, endpoint=endpoint, times=rng.randint(1, 3))  # type: ignore[arg-type]
            poller.poll_once()  # a fault not met by this poll waits for a later one
            if step % 5 == 4:  # restart from the state file
                queued.update(members=len(poller.accounting.members_due))
                queued.update(recordings=len(poller.accounting.recordings_due))
                deferred.update(poller.deferred)
                faulted.update({ep: n for (ep, code), n in poller.requests.counts.items() if code != "200"})
                poller.client.close()
                poller = make_poller(sim, clock, state, max_requests=3)
        for sid in live:
            sim.complete_session(sid, cost_in_dollars=1.0)
        poller.config = replace(poller.config, poll=replace(poller.config.poll, max_requests=200))
        for _ in range(20):  # a larger budget: the queues drain, recordings finish, faults left are met
            clock.now += 30
            poller.poll_once()
        assert poller.poll_once()
        faulted.update({ep: n for (ep, code), n in poller.requests.counts.items() if code != "200"})
        acc = poller.accounting
        poller.client.close()
        counted = [r["id"] for r in sim.sessions() if r["status"] == "completed"]
        assert sum(acc.totals.completed.values()) == len(counted) == sessions
        assert acc.members_due == {} and acc.recordings_due == {}
        assert not any(acc.totals.people.skipped.values()) and not any(acc.totals.recordings.skipped.values())
        assert_equal(observed(acc.totals), truth(sim, counted))
        assert deferred["members"] > 0 and deferred["recordings"] > 0  # the budget really bit
        assert {"list", "members", "recordings"} <= faulted.keys()  # every kind of read met faults
        assert queued["members"] > 0 and queued["recordings"] > 0  # restarts carried queued work


def test_live_members_count_who_is_present_now(tmp_path: Path) -> None:
    clock = Clock()
    state = StateFile(str(tmp_path / "state.json"), DEFAULT_DURATION_BUCKETS, clock=clock)
    with FakeSpace(PROJECT, TOKEN, clock=clock) as sim:
        sid = sim.add_session(name="standup", quality="720p", fps="30", max_members=10)
        sim.add_member(sid, join_time=clock.now)
        leaving = sim.add_member(sid, join_time=clock.now)
        sim.add_member(sid, join_time=None)  # invited, not there
        poller = make_poller(sim, clock, state)
        assert poller.poll_once()
        activity = poller.snapshots.current["test"].activity
        assert activity.members_active == {("720p", "30"): 2}
        clock.now += 30
        sim.update_member(leaving, leave_time=clock.now - 5)
        assert poller.poll_once()
        assert poller.snapshots.current["test"].activity.members_active == {("720p", "30"): 1}
        sim.complete_session(sid, cost_in_dollars=0.5)
        clock.now += 30
        assert poller.poll_once()
        assert poller.snapshots.current["test"].activity.members_active == {}
        poller.client.close()


def test_a_session_deleted_before_its_members_are_read_leaves_the_queue(tmp_path: Path) -> None:
    clock = Clock()
    state = StateFile(str(tmp_path / "state.json"), DEFAULT_DURATION_BUCKETS, clock=clock)
    with FakeSpace(PROJECT, TOKEN, clock=clock) as sim:
        sid = sim.add_session(name="gone", quality="720p", fps="30")
        sim.add_member(sid, join_time=clock.now)
        poller = make_poller(sim, clock, state, max_requests=2)  # in-progress + completed: no more
        assert poller.poll_once()
        clock.now += 30
        sim.complete_session(sid, cost_in_dollars=0.5)
        assert poller.poll_once()
        assert sid in poller.accounting.members_due  # counted, members not read yet
        sim.delete_session(sid)
        poller.config = replace(poller.config, poll=replace(poller.config.poll, max_requests=50))
        clock.now += 30
        assert poller.poll_once()
        assert poller.accounting.members_due == {} and poller.accounting.recordings_due == {}
        assert poller.accounting.totals.people.members == {}
        poller.client.close()
