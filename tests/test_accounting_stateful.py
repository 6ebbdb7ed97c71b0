"""Stateful property test of the accounting core against a model of the room-sessions API.

Hypothesis interleaves sessions starting, completing and being deleted, the clock moving (seconds to
days), polls whose listings miss arbitrary sessions ("shifted pages") or see sessions complete
between the in-progress and the completed listing, polls failing midway, and restarts with (through
a real ``StateFile``) or without state. Each poll is built the way ``SpacePoller._observe`` builds
it: the whole in-progress listing, the completed listing walked newest-first page by page back to
the horizon, and ``GET`` (summary form, no cost; None for 404) for tracked sessions in neither, a
completed one then being read from its room's listing (with its cost).

Which sessions the accounting counted is read back exactly: every session has its own room name and
rooms are enabled with a cap that is never reached, so the keys of ``totals.room_cost`` are the
names of the counted sessions. The model keeps its own cumulative record of them and checks after
every step that the totals are exactly the sum over that record (so a session counted twice shows),
that counters never decrease (except across a restart without state) and that only completed
sessions are counted. After a clean poll (no missed pages, no changes during the poll) every session
that completed after counting started must have been counted, or skipped for
``backfill_limit``/``invalid_cost``, except those docs/counting.md allows to be lost (never seen in
progress and missed by a listing, or ended more than ``max_backfill`` before the poll and never seen
in progress, or in progress at start but created more than ``lookback`` before it and ended before
the first successful poll saw it). Regression tests at the end of this file replay, with the real
poller against the simulated API, the two bugs this machine found (both fixed).

The observation is modelled on ``SpacePoller._observe`` (``walk_until = max(floor, horizon)``, floor
= ``started - max_backfill - lookback``, further while pages find vanished sessions; those the walk
misses are looked up in their room's listing, else through GET, or, when the request budget runs
out, left for a later poll): keep ``observe`` below in step with it.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import msgspec
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from exporter.config import Config
from exporter.models import COMPLETED, RoomSession
from exporter.poller import SpacePoller
from exporter.snapshot import Snapshots, Totals
from exporter.state import Accounting, Observation, Settings, apply, summarize
from exporter.statefile import StateFile

from .conftest import PROJECT, TOKEN, poll_config, space_config
from .support.fake_api import FakeSpace

T0 = 1_700_000_000  # model clock at the exporter's first start (whole seconds)
LOOKBACK = 3600.0
MAX_BACKFILL = 86400.0
BUCKETS = (60.0, 300.0, 600.0, 1800.0, 3600.0)
SETTINGS = Settings(
    lookback=LOOKBACK,
    buckets=BUCKETS,
    rooms_enabled=True,  # one room per session: room_cost keys say which sessions were counted
    rooms_max=1_000_000,
    max_backfill=MAX_BACKFILL,
)
SPACE = "test"
POLL_FRACTION = 0.5  # polls start half a second into a model second: the wall clock is not whole
MAX_LIVE = 8

qualities = st.sampled_from(["720p", "1080p", None, "4k"])
fps_values = st.sampled_from(["20", "30", 20, None, "60"])
members = st.one_of(st.none(), st.integers(0, 50))
costs = st.one_of(
    st.floats(0.0, 50.0, allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, 0.1, 1.5, 2.25, 0.0035, -1.0]),  # -1: invalid_cost
)
duration_modes = st.sampled_from(["exact", "null", "off_by_one"])
masks = st.one_of(st.just(0), st.just(2**MAX_LIVE - 1), st.integers(0, 2**MAX_LIVE - 1))  # sessions to miss
clock_steps = st.one_of(
    st.integers(1, 60), st.integers(60, 1800), st.integers(3000, 7200), st.integers(80_000, 100_000)
)


def iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Session:
    """Ground truth about one session of the model API."""

    id: str
    created: int
    start: int | None
    quality: str | None
    fps: str | int | None
    max_members: int | None
    end: int | None = None
    cost: float = 0.0
    duration: int | None = None
    deleted: bool = False

    @property
    def name(self) -> str:
        return f"room-{self.id}"

    @property
    def live(self) -> bool:
        return self.end is None

    def complete(self, end: int, cost: float, mode: str) -> None:
        self.end, self.cost = end, cost
        if mode == "null" or self.start is None:
            self.duration = None
        else:
            self.duration = end - self.start + (mode == "off_by_one")

    def record(self, now: int, *, summary: bool = False) -> RoomSession:
        """The session as the API serves it at ``now``, through the real decoding path."""
        live = self.end is None
        data: dict[str, object] = {
            "id": self.id,
            "name": self.name,
            "status": "in-progress" if live else "completed",
            "created_at": iso(self.created),
            "quality": self.quality,
            "fps": self.fps,
            "max_members": self.max_members,
            "start_time": None if self.start is None else iso(self.start),
            "end_time": None if self.end is None else iso(self.end),
            "updated_at": iso(self.created if self.end is None else self.end),
            "duration": (None if self.start is None else now - self.start) if live else self.duration,
        }
        if not summary:  # GET /room_sessions/{id} has no cost
            data["cost_in_dollars"] = 0 if live else self.cost
        return msgspec.json.decode(msgspec.json.encode(data), type=RoomSession)


@dataclass(frozen=True)
class Counted:
    """One session the accounting counted, as the model expects it in the totals."""

    key: tuple[str, str]
    cost: float
    duration: float | None
    from_get: bool  # counted from GET only: cost 0, noted as missing_cost


class PollFailed(Exception):
    """A request of the modelled poll failed: nothing is applied."""


def bucket_index(value: float) -> int:
    """Index of the first bucket whose upper bound is >= value (the last one is +Inf)."""
    for i, bound in enumerate(BUCKETS):
        if value <= bound:
            return i
    return len(BUCKETS)


class AccountingMachine(RuleBasedStateMachine):
    """The model API, the modelled exporter (one ``Accounting``) and the expectations."""

    def __init__(self) -> None:
        super().__init__()
        self.now = T0
        self.sessions: dict[str, Session] = {}
        self.by_name: dict[str, Session] = {}
        self.next_id = 0
        self.tmp = Path(tempfile.mkdtemp(prefix="accounting-stateful-"))
        self.acc = Accounting(counting_start=T0 + 0.25)
        self.polls = 0
        self.restart_expectations()

    def restart_expectations(self) -> None:
        """Expectations start from zero with a new Accounting (start, or restart without state)."""
        self.baseline: Totals = self.acc.totals
        self.record: dict[str, Counted] = {}  # counted since counting started
        self.skipped_ids: set[str] = set()  # seen leaving `counted` memory as skipped
        self.may_skip: dict[str, str] = {}  # candidate at an applied poll with a skip reason
        self.seen_in_progress: set[str] = set()  # listed in progress by an applied poll
        self.missed: set[str] = set()  # missed by a listing of an applied poll

    def teardown(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    # --- the model API ----------------------------------------------------------------------

    def new_session(
        self,
        created: int,
        quality: str | None,
        fps: str | int | None,
        max_members: int | None,
        no_start: bool,
    ) -> Session:
        sid = f"s{self.next_id}"
        self.next_id += 1
        session = Session(sid, created, None if no_start else created, quality, fps, max_members)
        self.sessions[sid] = session
        self.by_name[session.name] = session
        return session

    def live_ids(self) -> list[str]:
        return [s.id for s in self.sessions.values() if s.live and not s.deleted]

    def existing(self) -> list[Session]:
        return [s for s in self.sessions.values() if not s.deleted]

    @initialize(
        preexisting=st.lists(
            st.tuples(st.integers(0, 4 * 3600), st.one_of(st.none(), st.integers(0, 4 * 3600)), costs),
            max_size=3,
        ),
        quality=qualities,
        fps=fps_values,
    )
    def sessions_before_start(
        self, preexisting: list[tuple[int, int | None, float]], quality: str | None, fps: str | int | None
    ) -> None:
        """Sessions created before the exporter started, some already ended (by T0 at the latest)."""
        for age, ran, cost in preexisting:
            session = self.new_session(T0 - age, quality, fps, 2, no_start=False)
            if ran is not None:
                session.complete(T0 - age + min(ran, age), cost, "exact")

    @precondition(lambda self: len(self.live_ids()) < MAX_LIVE)
    @rule(quality=qualities, fps=fps_values, max_members=members, no_start=st.booleans())
    def start_session(
        self, quality: str | None, fps: str | int | None, max_members: int | None, no_start: bool
    ) -> None:
        self.new_session(self.now, quality, fps, max_members, no_start)

    @precondition(lambda self: bool(self.existing()))
    @rule(
        index=st.integers(0, 100),
        cost=costs,
        mode=duration_modes,
        delete=st.sampled_from([False] * 3 + [True]),
    )
    def end_session(self, index: int, cost: float, mode: str, delete: bool) -> None:
        """Complete a live session now or (one time in four) delete any session: 404 from then on."""
        if delete:
            existing = self.existing()
            existing[index % len(existing)].deleted = True
        elif live := self.live_ids():
            self.sessions[live[index % len(live)]].complete(self.now, cost, mode)

    @rule(seconds=clock_steps)
    def advance_clock(self, seconds: int) -> None:
        self.now += seconds

    # --- the modelled exporter --------------------------------------------------------------

    def observe(
        self,
        started: float,
        miss_in_progress: int = 0,
        miss_completed: int = 0,
        complete_during: int = 0,
        page_size: int = 1000,
        fail: str | None = None,
        cost: float = 1.0,
        defer: int = 0,
    ) -> Observation:
        """One poll, as SpacePoller._observe builds it; masks pick the sessions a listing misses
        and (``defer``) the vanished sessions the walk missed that are left for a later poll, as
        when ``poll.max_requests`` runs out."""
        acc = self.acc
        live = self.live_ids()
        skipped_in_progress = {sid for i, sid in enumerate(live) if miss_in_progress >> i & 1}
        in_progress = {
            sid: self.sessions[sid].record(self.now) for sid in live if sid not in skipped_in_progress
        }
        if fail == "in_progress":
            raise PollFailed
        # sessions that end between the in-progress and the completed listing
        for i, sid in enumerate(live):
            if complete_during >> i & 1:
                self.sessions[sid].complete(self.now, cost, "exact")

        vanished = {sid: created for sid, created in acc.tracked.items() if sid not in in_progress}
        floor = started - MAX_BACKFILL - LOOKBACK  # the poller never walks further back than this
        walk_until = max(floor, acc.horizon(LOOKBACK))
        rows = sorted(
            (s for s in self.existing() if not s.live), key=lambda s: (s.created, s.id), reverse=True
        )
        skipped_completed = {s.id for i, s in enumerate(rows) if miss_completed >> (i % 16) & 1}
        rows = [s for s in rows if s.id not in skipped_completed]
        follow = {sid: created for sid, created in vanished.items() if created >= floor}
        completed: dict[str, RoomSession] = {}
        for first in range(0, len(rows), page_size):
            page = [s.record(self.now) for s in rows[first : first + page_size]]
            completed.update((s.id, s) for s in page)
            oldest = page[-1].created_ts
            further = [c for sid, c in follow.items() if sid not in completed and c < oldest]
            if oldest < walk_until and not (further and any(s.id in follow for s in page)):
                break  # newest first: the rest is older than needed (and finds no vanished session)
        if fail == "completed":
            raise PollFailed

        fetched: dict[str, RoomSession | None] = {}
        pending = [sid for i, sid in enumerate(sorted(vanished)) if sid not in completed and defer >> i & 1]
        for sid in vanished:
            if sid not in completed and sid not in pending:
                session = self.sessions[sid]
                if not session.deleted and not session.live:
                    # GET says completed but has no cost: the poller reads the session's room listing
                    completed[sid] = session.record(self.now)
                    continue
                fetched[sid] = None if session.deleted else session.record(self.now, summary=True)
        if fail == "get":
            raise PollFailed
        self.missed |= skipped_in_progress | skipped_completed
        self.listed_in_progress = in_progress  # the records behind the observation's summaries
        in_progress_summary = summarize(in_progress.values(), SETTINGS.rooms_enabled)
        return Observation(started, in_progress_summary, list(completed.values()), fetched, pending=pending)

    def apply_and_check(self, obs: Observation) -> None:
        """Apply one observation; check exactly which sessions it counted and skipped."""
        old = self.acc
        new, activity = apply(old, obs, SETTINGS)
        self.polls += 1
        assert set(obs.pending) <= new.tracked.keys(), "a session left for a later poll was forgotten"
        if obs.pending:
            event("lookups left for a later poll")
        started = obs.started
        listed = {s.id: s for s in obs.completed}
        old_horizon = old.horizon(LOOKBACK)
        candidates: dict[str, RoomSession] = dict(listed)
        for sid, got in obs.fetched.items():
            if got is None or got.status != "completed" or sid in listed:
                continue
            if got.end_ts < old_horizon:  # the listing had a lookback to show it: counted without cost
                candidates[sid] = got
        for sid, session in candidates.items():
            reason = "backfill_limit" if session.end_ts < started - MAX_BACKFILL else session.invalid_reason()
            if reason and sid not in self.record:
                self.may_skip.setdefault(sid, reason)
        # seen in progress, and not completed within the same poll: from now on "seen before"
        self.seen_in_progress |= {sid for sid in self.listed_in_progress if sid not in listed}

        newly = set(new.totals.room_cost) - set(old.totals.room_cost)
        for name in sorted(newly):
            truth = self.by_name[name]
            sid = truth.id
            assert sid in candidates, f"{sid} counted but not completed in this poll's observation"
            assert sid not in self.record, f"{sid} counted twice"
            assert not truth.live, f"{sid} counted while in progress"
            seen = candidates[sid]
            assert sid in old.tracked or seen.end_ts > old.counting_start - 1, f"{sid} ended before counting"
            assert seen.end_ts >= started - MAX_BACKFILL, f"{sid} ended beyond max_backfill but counted"
            assert seen.invalid_reason() is None, f"{sid} has invalid values but was counted"
            from_get = sid not in listed
            self.record[sid] = Counted(
                (seen.quality_label, seen.fps_label),
                0.0 if from_get else truth.cost,
                seen.duration_seconds,
                from_get,
            )

        entered = set(new.counted) - set(old.counted)
        assert entered <= set(candidates), f"ids remembered as counted without being candidates: {entered}"
        skipped_now = entered - {self.by_name[n].id for n in newly}
        for sid in skipped_now:
            assert sid in self.may_skip, f"{sid} neither counted nor skippable, yet remembered as counted"
        self.skipped_ids |= skipped_now
        for name in newly:
            event(
                "counted from GET (missing_cost)"
                if self.record[self.by_name[name].id].from_get
                else "counted"
            )
        for sid in skipped_now:
            event(f"skipped: {self.may_skip[sid]}")
        if any(
            s is not None and s.status == "completed" and sid in new.tracked for sid, s in obs.fetched.items()
        ):
            event("completed per GET, waiting for the listing")

        # the dedupe memory holds every counted session created within the new horizon
        new_horizon = started - LOOKBACK
        for sid in self.record:
            truth = self.sessions[sid]
            if truth.created >= new_horizon:
                assert sid in new.counted, f"{sid} counted but forgotten by the dedupe memory"

        # gauges: the in-progress sessions of this poll, none of them with invalid values
        valid_active = [
            s
            for s in self.listed_in_progress.values()
            if s.id not in candidates and s.invalid_reason() is None
        ]
        fetched_live = [s for s in obs.fetched.values() if s is not None and s.status != "completed"]
        assert sum(activity.active.values()) == len(valid_active) + len(fetched_live)

        self.acc = new

    @rule(
        miss_in_progress=masks,
        miss_completed=st.one_of(st.just(0), st.just(2**16 - 1), st.integers(0, 2**16 - 1)),
        complete_during=masks,
        page_size=st.integers(1, 5),
        fail=st.sampled_from([None, None, None, "in_progress", "completed", "get"]),
        cost=costs,
        defer=masks,
    )
    def poll(
        self,
        miss_in_progress: int,
        miss_completed: int,
        complete_during: int,
        page_size: int,
        fail: str | None,
        cost: float,
        defer: int,
    ) -> None:
        """A poll whose pages may shift under it, and which may leave lookups for a later poll;
        a failed one applies nothing."""
        started = self.now + POLL_FRACTION
        try:
            obs = self.observe(
                started, miss_in_progress, miss_completed, complete_during, page_size, fail, cost, defer
            )
        except PollFailed:
            return
        self.apply_and_check(obs)

    @rule(page_size=st.integers(1, 5))
    def clean_poll(self, page_size: int) -> None:
        """A poll that misses nothing: afterwards every countable session has been counted."""
        started = self.now + POLL_FRACTION
        self.apply_and_check(self.observe(started, page_size=page_size))
        self.check_all_counted(started)

    @rule(with_state=st.sampled_from([True, True, False]), fraction=st.sampled_from([0.0, 0.25, 0.75]))
    def restart(self, with_state: bool, fraction: float) -> None:
        """Restart the exporter, resuming from a real state file or counting from zero."""
        if with_state:  # the poller saves after every applied poll: the file holds the current state
            path = str(self.tmp / "state.json")
            StateFile(path, BUCKETS, clock=lambda: float(self.now)).save(SPACE, self.acc)
            loaded = StateFile(path, BUCKETS, clock=lambda: float(self.now)).load([SPACE])
            assert loaded[SPACE] == self.acc
            self.acc = loaded[SPACE]
        else:  # sessions that ended before the restart are no longer expected
            self.acc = Accounting(counting_start=self.now + fraction)
            self.restart_expectations()

    # --- expectations -----------------------------------------------------------------------

    def exempt(self, session: Session, started: float) -> bool:
        """Completed sessions a clean poll at ``started`` cannot be expected to have counted.

        A session never listed in progress (it started and ended between polls, or the
        listings missed it) is found only by the completed walk, back to the horizon: if a
        listing missed it, it may be lost (docs/counting.md: "Sessions seen in progress before are never
        silently lost", not the others), and if it ended more than ``max_backfill`` before the
        poll it may not be read at all (docs/counting.md, "Restart-proof counters").
        """
        if session.id in self.seen_in_progress:
            return False
        if session.id in self.missed or (session.end or 0) < started - MAX_BACKFILL:
            return True
        # documented limit: the listing is ordered by creation, so a session created more than
        # `lookback` before counting started and never seen in progress is beyond the walk
        return session.created < self.acc.counting_start - LOOKBACK

    def check_all_counted(self, started: float) -> None:
        """After a clean poll: every completed session ended after counting started is accounted for."""
        floor = self.acc.counting_start - 1
        for session in self.existing():
            if session.live or session.end is None or session.end <= floor or self.exempt(session, started):
                continue
            event("clean poll: checked a completed session")
            assert session.id in self.record or session.id in self.may_skip, (
                f"{session.id} (created {session.created - T0}, ended {session.end - T0}, "
                f"counting start {self.acc.counting_start - T0}) completed but never counted"
            )
        live = set(self.live_ids())
        assert live <= set(self.acc.tracked), "a live session is not tracked after a clean poll"
        for sid in set(self.acc.tracked) - live:  # waiting for the listing to show its cost
            assert self.exempt(self.sessions[sid], started), f"{sid} still tracked after a clean poll"

    @invariant()
    def totals_are_the_sum_of_the_counted_sessions(self) -> None:
        totals = self.acc.totals
        assert set(totals.room_cost) == {self.sessions[sid].name for sid in self.record}
        for sid, counted in self.record.items():
            assert totals.room_cost[self.sessions[sid].name] == counted.cost
        expected_completed = Counter(c.key for c in self.record.values())
        assert {k: v for k, v in totals.completed.items() if v} == dict(expected_completed)
        for key in set(totals.cost) | set(expected_completed):
            expected = math.fsum(c.cost for c in self.record.values() if c.key == key)
            assert math.isclose(totals.cost.get(key, 0.0), expected, rel_tol=0, abs_tol=1e-9), key
        keys = set(totals.durations) | {c.key for c in self.record.values() if c.duration is not None}
        for key in keys:
            durations = [c.duration for c in self.record.values() if c.key == key and c.duration is not None]
            counts = [0] * (len(BUCKETS) + 1)
            for value in durations:
                counts[bucket_index(value)] += 1
            hist = totals.durations[key]
            assert list(hist.counts) == counts, key
            assert math.isclose(hist.total, math.fsum(durations), rel_tol=0, abs_tol=1e-6), key
        skipped = totals.skipped
        assert skipped.get("missing_cost", 0) == sum(c.from_get for c in self.record.values())
        assert skipped.get("missing_duration", 0) == sum(c.duration is None for c in self.record.values())
        for reason in ("malformed", "invalid_duration", "invalid_max_members"):
            assert skipped.get(reason, 0) == 0, reason
        for reason in ("backfill_limit", "invalid_cost"):
            ids = {sid for sid, why in self.may_skip.items() if why == reason}
            assert len(self.skipped_ids & ids) <= skipped.get(reason, 0) <= len(ids), reason

    @invariant()
    def counters_never_decrease(self) -> None:
        old, new = self.baseline, self.acc.totals
        for key, value in old.completed.items():
            assert new.completed[key] >= value
        for key, amount in old.cost.items():
            assert new.cost[key] >= amount
        for key, hist in old.durations.items():
            assert all(b >= a for a, b in zip(hist.counts, new.durations[key].counts, strict=True))
            assert new.durations[key].total >= hist.total
        for reason, value in old.skipped.items():
            assert new.skipped[reason] >= value
        for room, amount in old.room_cost.items():
            assert new.room_cost[room] >= amount
        self.baseline = new


AccountingMachine.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestAccountingStateful = AccountingMachine.TestCase


# --- known bugs, end to end: the real poller against the simulated API, on a fake clock --------


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@contextmanager
def real_poller(sim: FakeSpace, clock: FakeClock, **poll: float) -> Iterator[SpacePoller]:
    """A SpacePoller as the CLI builds it (counting starts now on ``clock``), closed afterwards."""
    config = Config(spaces=(space_config(sim),), poll=poll_config(**poll))
    space = config.spaces[0]
    poller = SpacePoller(space, config, Snapshots([space.name]), threading.Event(), clock=clock)
    try:
        yield poller
    finally:
        poller.client.close()


def counted(poller: SpacePoller) -> tuple[int, float]:
    totals = poller.accounting.totals
    return sum(totals.completed.values()), math.fsum(totals.cost.values())


def test_session_in_progress_at_start_ending_before_first_successful_poll() -> None:
    clock = FakeClock(T0)
    with FakeSpace(PROJECT, TOKEN, clock=clock) as sim:
        long = sim.add_session(created_at=T0 - 7200, start_time=T0 - 7200)
        with real_poller(sim, clock) as poller:  # counting starts at T0, the session is in progress
            sim.fail_next(401)
            assert not poller.poll_once()  # the first poll fails (API briefly unavailable)
            clock.now = T0 + 5
            sim.complete_session(long, cost_in_dollars=2.5)
            clock.now = T0 + 30
            assert poller.poll_once()
            # docs/counting.md: "in progress at start are counted when they end"
            assert counted(poller) == (1, 2.5)


def test_session_in_progress_at_start_ending_during_first_poll() -> None:
    clock = FakeClock(T0)
    with FakeSpace(PROJECT, TOKEN, clock=clock) as sim:
        long = sim.add_session(created_at=T0 - 7200, start_time=T0 - 7200)
        with real_poller(sim, clock) as poller:
            clock.now = T0 + 1
            list_sessions = poller.client.list_sessions

            def ends_between_listings(
                status: str, deadline: float, room_id: str | None = None, room_name: str | None = None
            ) -> Iterator[tuple[list[RoomSession], list[str | None]]]:
                if status == COMPLETED:
                    sim.complete_session(long, cost_in_dollars=2.5)
                return list_sessions(status, deadline, room_id, room_name)

            poller.client.list_sessions = ends_between_listings  # type: ignore[method-assign]
            assert poller.poll_once()  # lists it in progress, then completed: neither tracked nor counted
            poller.client.list_sessions = list_sessions  # type: ignore[method-assign]
            clock.now = T0 + 31
            assert poller.poll_once()
            assert counted(poller) == (1, 2.5)


def test_tracked_session_longer_than_the_walk_floor_counts_with_its_cost() -> None:
    clock = FakeClock(T0)
    with FakeSpace(PROJECT, TOKEN, clock=clock) as sim:
        long = sim.add_session(created_at=T0, start_time=T0)
        clock.now = T0 + 60
        short = sim.add_session()
        with real_poller(sim, clock, page_size=1) as poller:  # one page stands for ~1000 sessions
            clock.now = T0 + 120
            sim.complete_session(short, cost_in_dollars=1.0)
            clock.now = T0 + 130
            assert poller.poll_once()  # tracks the long session, counts the short one
            clock.now = T0 + 26 * 3600
            assert poller.poll_once()
            clock.now += 30
            sim.complete_session(long, cost_in_dollars=7.5)
            clock.now += 30
            assert poller.poll_once()  # the listing shows it with its cost; the walk stops before it
            assert counted(poller) == (2, 8.5)
