"""The API side of bench/perf.py: simulated spaces with a steady-state workload, in a child process.

The child hosts one or more ``FakeSpace`` servers, so that their CPU is not charged to the
code measured in the parent. The parent drives it through a ``Pipe`` (:class:`SimProcess`).

Workload: ``active`` sessions in progress, and every interval ``churn`` of them complete while
``churn`` new ones start. ``order="fifo"``: the oldest in-progress sessions complete (every
session lasts active/churn intervals); ``order="random"``: they are picked at random (lifetimes
are then exponential with the same mean); ``order="realistic"`` (issue 13): picked at random too,
but the population is aged as a real space's: a fifth of the sessions 2-4 hours old, the rest
under 2 hours, with 24 hours of completed history. The population starts in that state, with
enough completed history behind it for the exporter's walks: a listing goes as deep as it would
on a space that had been running for hours. A fractional ``churn`` (100 sessions an hour at 30 s
is 0.83 an interval) is spread over the intervals: each has its floor or its ceiling.

With ``people`` (issue 14), every session in progress gets 2-6 members, the first joining as it
starts and the others a few minutes later (those whose session ended before are never added),
present until it ends; a third of them a recording, processing 60-120 s after the session ends.
The completed history has neither: it ended before the exporter started, which never reads it.

As in SignalWire, a room holds at most one session in progress at a time: a new session takes a
room with none, at random from a pool of room names, and its room is free again once it ends
(the completed history is laid out the same way, in time order). A just-ended session is then
the newest of its room's completed listing. Benchmark only, never used by the exporter.
"""

from __future__ import annotations

import gc
import heapq
import itertools
import math
import multiprocessing
import random
import threading
import time
import uuid
from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass
from multiprocessing.connection import Connection
from operator import attrgetter
from typing import Any, Literal, NamedTuple

from exporter.simulator import FPS_MIX, QUALITY_MIX, Request
from tests.support.fake_api import FakeSpace

Order = Literal["fifo", "random", "realistic"]
Endpoint = tuple[str, str, str]  # base_url, project_id, api_token
HOUR = 3600.0


@dataclass(frozen=True)
class Workload:
    active: int
    order: Order = "fifo"
    churn: float = 1000  # sessions completing (and starting) per interval, on average
    interval: float = 30.0  # seconds of simulated time per step
    history: float = 10.0  # intervals of completed sessions kept beyond the lifetimes (>= lookback)
    seed: int = 1
    people: bool = False  # members and recordings (issue 14)

    def churn_at(self, step: int) -> int:
        """Sessions completing (and starting) in interval number ``step``: ``churn`` on average."""
        return math.floor((step + 1) * self.churn) - math.floor(step * self.churn)

    @property
    def lifetime(self) -> float:
        """Mean session lifetime, in intervals."""
        return self.active / self.churn

    @property
    def rooms(self) -> int:
        """Room names: free ones to spare for every session that starts."""
        return max(600, 2 * self.active + math.ceil(self.churn))

    @property
    def depth(self) -> int:
        """Intervals of completed history made at setup."""
        if self.order == "realistic":
            return math.ceil(24 * HOUR / self.interval)
        return math.ceil(self.history + (2 if self.order == "fifo" else 3 * self.lifetime))

    def age(self, rng: random.Random) -> float:
        """Seconds from creation to end of a session that completes now."""
        if self.order == "realistic":
            return rng.uniform(2, 4) * HOUR if rng.random() < 0.2 else rng.uniform(0, 2) * HOUR
        mean = self.lifetime * self.interval
        return mean if self.order == "fifo" else rng.expovariate(1 / mean)

    def live_ages(self, rng: random.Random) -> list[float]:
        """Seconds since creation of the sessions in progress at the start."""
        if self.order == "fifo":  # evenly spread over one lifetime
            return [(i + rng.random()) / self.churn * self.interval for i in range(self.active)]
        return [self.age(rng) for _ in range(self.active)]


class Floor(NamedTuple):
    """The requests a poll needs to see the in-progress sessions and the interval's ends.

    ``total`` is issue 13's floor: in-progress pages, the pages that hold as many completed
    sessions as ended in the interval, and then either a lookup (one request) for each ended
    session beyond them or the pages on to the deepest, whichever is fewer. ``least`` (at most the
    floor) reads on to the best page instead, then looks up the rest at one request each.
    """

    in_progress: int  # pages of the in-progress listing
    completions: int  # pages that hold as many completed sessions as ended in the interval
    beyond: int  # min(ended sessions beyond those pages, pages on to the deepest of them)
    mixed: int  # min over k of (k pages read on + ended sessions beyond them)

    @property
    def total(self) -> int:
        return self.in_progress + self.completions + self.beyond

    @property
    def least(self) -> int:
        return self.in_progress + self.completions + self.mixed


class _Space:
    """One simulated space, its in-progress sessions (oldest first) and its free rooms."""

    def __init__(self, index: int, work: Workload, clock: Any, now: float) -> None:
        self.work, self.rng = work, random.Random(work.seed * 1000 + index)
        self.people_rng = random.Random(work.seed * 1000 + index + 500)  # leaves ``rng`` as without people
        self.joins: list[tuple[float, str]] = []  # (join time, session id) of members yet to join
        self.steps = itertools.count(work.depth)  # numbers the intervals after the history's
        self.project, self.token = f"bench-{index}", f"token-{index}-{work.seed}"
        self.sim = FakeSpace(self.project, self.token, clock=clock, seed=work.seed)
        self.free = [f"room-{r:06d}" for r in range(work.rooms)]  # rooms with no session in progress
        self.live: dict[str, tuple[str, float]] = {}  # id -> (room, created); in creation order
        self.ended: list[tuple[float, str]] = []  # (created, id) of the sessions the last step ended
        self._populate(now)
        self.base_url = self.sim.start()

    def _take_room(self) -> str:
        free, i = self.free, self.rng.randrange(len(self.free))
        free[i], free[-1] = free[-1], free[i]
        return free.pop()

    def _add(self, created: float, room: str) -> str:
        rng = self.rng
        return self.sim.add_session(
            id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            name=room,
            quality=rng.choices(*QUALITY_MIX)[0],
            fps=rng.choices(*FPS_MIX)[0],
            max_members=rng.randint(2, 50),
            start_time=created,
            created_at=created,
        )

    def _complete(self, sid: str, end: float) -> None:
        self.sim.complete_session(sid, cost_in_dollars=round(self.rng.uniform(0.01, 2.0), 4), end_time=end)

    def _plan_people(self, sid: str, created: float) -> None:
        """The members due to join a new session; a recording for a third of them."""
        rng = self.people_rng
        for delay in [0.0] + [rng.expovariate(1 / 120) for _ in range(rng.randint(1, 5))]:
            heapq.heappush(self.joins, (created + delay, sid))
        if rng.random() < 1 / 3:
            self.sim.add_recording(sid, started_at=created, processing=rng.uniform(60, 120))

    def _join(self, now: float, ends: dict[str, float]) -> None:
        """Members whose time has come by ``now`` join, unless their session had ended by then."""
        while self.joins and self.joins[0][0] <= now:
            join, sid = heapq.heappop(self.joins)
            if sid in self.live or join <= ends.get(sid, -math.inf):
                member = str(uuid.UUID(int=self.people_rng.getrandbits(128), version=4))
                self.sim.add_member(sid, id=member, join_time=join)

    def _populate(self, now: float) -> None:
        work, rng = self.work, self.rng
        live = sorted(now - age for age in work.live_ages(rng))
        history = []  # (created, end): ``churn`` sessions ended in each earlier interval
        for step in range(work.depth):
            for _ in range(work.churn_at(step)):
                end = now - (step + rng.random()) * work.interval
                history.append((end - work.age(rng), end))
        # Rooms in time order, so that no room ever has two sessions in progress.
        events = [(created, 1, i) for i, created in enumerate(live)]
        events += [(created, 1, -1 - i) for i, (created, _) in enumerate(history)]
        events += [(end, 0, -1 - i) for i, (_, end) in enumerate(history)]
        rooms: dict[int, str] = {}
        for _, starts, i in sorted(events):
            if starts:
                rooms[i] = self._take_room()
            else:
                self.free.append(rooms[i])
        with self.sim.bulk():
            for i, created in enumerate(live):
                sid = self._add(created, rooms[i])
                self.live[sid] = rooms[i], created
                if work.people:
                    self._plan_people(sid, created)
            for i, (created, end) in enumerate(history):
                self._complete(self._add(created, rooms[-1 - i]), end)
            self._join(now, {})

    def step(self, before: float, now: float) -> None:
        """``churn`` sessions complete and as many start between ``before`` and ``now``."""
        work, rng, churn = self.work, self.rng, self.work.churn_at(next(self.steps))
        count = min(churn, len(self.live))
        if work.order == "fifo":
            ending = list(itertools.islice(self.live, count))
        else:
            ending = rng.sample(list(self.live), count)
        # New sessions take their rooms first: one may start before the session it would follow ends.
        for created in sorted(before + rng.random() * (now - before) for _ in range(churn)):
            room = self._take_room()
            sid = self._add(created, room)
            self.live[sid] = room, created
            if work.people:
                self._plan_people(sid, created)
        self.ended, ends = [], {}
        for sid in ending:
            room, created = self.live.pop(sid)
            ends[sid] = before + rng.random() * (now - before)
            self._complete(sid, ends[sid])
            self.free.append(room)
            self.ended.append((created, sid))
        self._join(now, ends)

    def floor(self, page_size: int) -> Floor:
        """The floor after the last step, from the positions of its ended sessions in the listing."""
        # The completed listing as the space serves it (oldest first here); ids make keys unique.
        rows = self.sim._listing._index["status", "completed"]
        positions = sorted(
            len(rows) - 1 - bisect_left(rows, key, key=attrgetter("key")) for key in self.ended
        )
        pages = math.ceil(len(positions) / page_size)
        last = math.ceil((positions[-1] + 1) / page_size) if positions else 0  # page of the deepest

        def beyond(page: int) -> int:  # ended sessions past the first ``page`` pages
            return len(positions) - bisect_left(positions, page * page_size)

        lookups = beyond(pages)
        deeper = last - pages if lookups else 0
        mixed = min((k - pages + beyond(k) for k in range(pages, last + 1)), default=0)
        in_progress = max(1, math.ceil(len(self.live) / page_size))
        return Floor(in_progress, pages, min(lookups, deeper), mixed)


def _classify(request: Request) -> str:
    """``get``, ``members`` or ``recordings`` of one session, else which listing a page is of."""
    if request.endpoint != "list":
        return request.endpoint or "other"
    query = request.query
    if "room_id" in query or "room_name" in query:
        return "room"
    return query.get("status", "unfiltered")


class _Child:
    """Runs in the child process: answers the parent's commands."""

    def __init__(self) -> None:
        self.spaces: list[_Space] = []
        self.virtual: float | None = None  # simulated time; None: real time
        self.ticker: threading.Thread | None = None
        self.ticking = threading.Event()

    def clock(self) -> float:
        return time.time() if self.virtual is None else self.virtual

    def setup(
        self, work: Workload, spaces: int, virtual: bool, start: float | None
    ) -> tuple[list[Endpoint], float]:
        self.close()
        gc.collect()
        now = time.time() if start is None else start
        self.virtual = now if virtual else None
        self.spaces = [_Space(i, work, self.clock, now) for i in range(spaces)]
        gc.freeze()  # the population is long-lived: keep it out of every collection
        return [(s.base_url, s.project, s.token) for s in self.spaces], now

    def step(self) -> float:
        """Advance simulated time by one interval and apply its churn."""
        assert self.virtual is not None
        before = self.virtual
        self.virtual += self.spaces[0].work.interval
        for space in self.spaces:
            space.step(before, self.virtual)
        return self.virtual

    def realtime(self, on: bool) -> None:
        """Apply each interval's churn in real time, in a thread, until called with False."""
        if self.ticker is not None:
            self.ticking.set()
            self.ticker.join()
            self.ticker, self.ticking = None, threading.Event()
        if on:
            self.ticker = threading.Thread(target=self._tick, daemon=True)
            self.ticker.start()

    def _tick(self) -> None:
        before = time.time()
        while not self.ticking.wait(self.spaces[0].work.interval - (time.time() - before)):
            now = time.time()
            for space in self.spaces:
                space.step(before, now)
            before = now

    def latency(self, seconds: float) -> None:
        for space in self.spaces:
            space.sim.latency = seconds

    def floor(self, page_size: int) -> list[Floor]:
        return [space.floor(page_size) for space in self.spaces]

    def requests(self) -> list[Counter[str]]:
        """Per space, the requests answered since the last call, by kind (see ``_classify``)."""
        counts = []
        for space in self.spaces:
            taken = space.sim.requests[: len(space.sim.requests)]
            del space.sim.requests[: len(taken)]
            counts.append(Counter(_classify(r) for r in taken))
        return counts

    def close(self) -> None:
        self.realtime(False)
        for space in self.spaces:
            space.sim.stop()
        self.spaces = []


def _serve(conn: Connection) -> None:
    child = _Child()
    while True:
        command, args = conn.recv()
        if command == "quit":
            child.close()
            conn.send(None)
            return
        conn.send(getattr(child, command)(*args))


class SimProcess:
    """Parent-side handle of the child process hosting the simulated spaces."""

    def __init__(self) -> None:
        self._conn, child_conn = multiprocessing.get_context("spawn").Pipe()
        self._proc = multiprocessing.get_context("spawn").Process(
            target=_serve, args=(child_conn,), daemon=True
        )
        self._proc.start()

    @property
    def pid(self) -> int:
        assert self._proc.pid is not None
        return self._proc.pid

    def _call(self, command: str, *args: Any) -> Any:
        self._conn.send((command, args))
        return self._conn.recv()

    def setup(
        self, work: Workload, spaces: int = 1, virtual: bool = True, start: float | None = None
    ) -> tuple[list[tuple[str, str, str]], float]:
        """Fresh spaces in steady state at ``start`` (simulated time; default now); returns
        [(base_url, project_id, token)] and the start time."""
        result: tuple[list[tuple[str, str, str]], float] = self._call("setup", work, spaces, virtual, start)
        return result

    def step(self) -> float:
        """One interval of churn in simulated time; returns the new simulated time."""
        now: float = self._call("step")
        return now

    def realtime(self, on: bool) -> None:
        self._call("realtime", on)

    def latency(self, seconds: float) -> None:
        self._call("latency", seconds)

    def floor(self, page_size: int) -> list[Floor]:
        """Per space, the floor of a poll now (see :class:`Floor`), the last step's churn being new."""
        floors: list[Floor] = self._call("floor", page_size)
        return floors

    def requests(self) -> list[Counter[str]]:
        counts: list[Counter[str]] = self._call("requests")
        return counts

    def close(self) -> None:
        self._call("quit")
        self._proc.join(30)
