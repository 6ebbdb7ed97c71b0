"""The API side of bench/perf.py: simulated spaces with a steady-state workload, in a child process.

The child hosts one or more ``FakeSpace`` servers, so that their CPU is not charged to the
code measured in the parent. The parent drives it through a ``Pipe`` (:class:`SimProcess`).

Workload: ``active`` sessions in progress, and every interval ``churn`` of them complete while
``churn`` new ones start. ``order="fifo"``: the oldest in-progress sessions complete (every
session lasts active/churn intervals); ``order="random"``: they are picked at random (lifetimes
are then exponential with the same mean). The population starts in that steady state, with
enough completed history behind it for the exporter's walks: a listing goes as deep as it
would on a space that had been running for hours. Benchmark only, never used by the exporter.
"""

from __future__ import annotations

import gc
import itertools
import math
import multiprocessing
import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Literal

from exporter.simulator import FPS_MIX, LIST_PATH, QUALITY_MIX
from tests.support.fake_api import FakeSpace

Order = Literal["fifo", "random"]
Endpoint = tuple[str, str, str]  # base_url, project_id, api_token


@dataclass(frozen=True)
class Workload:
    active: int
    order: Order = "fifo"
    churn: int = 1000  # sessions completing (and starting) per interval
    interval: float = 30.0  # seconds of simulated time per step
    rooms: int = 600  # distinct room names
    history: float = 10.0  # intervals of completed sessions kept beyond the lifetimes (>= lookback)
    seed: int = 1

    @property
    def lifetime(self) -> float:
        """Mean session lifetime, in intervals."""
        return self.active / self.churn


class _Space:
    """One simulated space and the ids of its in-progress sessions, oldest first."""

    def __init__(self, index: int, work: Workload, clock: Any, now: float) -> None:
        self.work, self.rng = work, random.Random(work.seed * 1000 + index)
        self.project, self.token = f"bench-{index}", f"token-{index}-{work.seed}"
        self.sim = FakeSpace(self.project, self.token, clock=clock, seed=work.seed)
        self.rooms = [f"room-{r:04d}" for r in range(work.rooms)]
        self.live: dict[str, None] = {}  # insertion order: creation order
        self._populate(now)
        self.base_url = self.sim.start()

    def _add(self, created: float) -> str:
        rng = self.rng
        return self.sim.add_session(
            id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            name=rng.choice(self.rooms),
            quality=rng.choices(*QUALITY_MIX)[0],
            fps=rng.choices(*FPS_MIX)[0],
            max_members=rng.randint(2, 50),
            start_time=created,
            created_at=created,
        )

    def _complete(self, sid: str, end: float) -> None:
        self.sim.complete_session(sid, cost_in_dollars=round(self.rng.uniform(0.01, 2.0), 4), end_time=end)

    def _populate(self, now: float) -> None:
        work, rng, interval = self.work, self.rng, self.work.interval
        fifo = work.order == "fifo"

        def age() -> float:  # in intervals, of a session in progress now or completing now
            return work.lifetime if fifo else rng.expovariate(1 / work.lifetime)

        ages = [(i + rng.random()) / work.churn if fifo else age() for i in range(work.active)]
        depth = math.ceil(work.history + (2 if fifo else 3 * work.lifetime))
        with self.sim.bulk():
            for created in sorted(now - a * interval for a in ages):
                self.live[self._add(created)] = None
            for step in range(depth):  # ``churn`` sessions ended in each earlier interval
                for _ in range(work.churn):
                    end = now - (step + rng.random()) * interval
                    self._complete(self._add(end - age() * interval), end)

    def step(self, before: float, now: float) -> None:
        """``churn`` sessions complete and as many start between ``before`` and ``now``."""
        work, rng = self.work, self.rng
        count = min(work.churn, len(self.live))
        if work.order == "fifo":
            ending = list(itertools.islice(self.live, count))
        else:
            ending = rng.sample(list(self.live), count)
        for sid in ending:
            del self.live[sid]
            self._complete(sid, before + rng.random() * (now - before))
        for created in sorted(before + rng.random() * (now - before) for _ in range(work.churn)):
            self.live[self._add(created)] = None


def _classify(query: dict[str, str], path: str) -> str:
    if path != LIST_PATH:
        return "get"
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

    def setup(self, work: Workload, spaces: int, virtual: bool) -> tuple[list[Endpoint], float]:
        self.close()
        gc.collect()
        now = time.time()
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

    def requests(self) -> list[Counter[str]]:
        """Per space, the requests answered since the last call, by kind (see ``_classify``)."""
        counts = []
        for space in self.spaces:
            taken = space.sim.requests[: len(space.sim.requests)]
            del space.sim.requests[: len(taken)]
            counts.append(Counter(_classify(r.query, r.path) for r in taken))
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
        self, work: Workload, spaces: int = 1, virtual: bool = True
    ) -> tuple[list[tuple[str, str, str]], float]:
        """Fresh spaces in steady state; returns [(base_url, project_id, token)] and the start time."""
        result: tuple[list[tuple[str, str, str]], float] = self._call("setup", work, spaces, virtual)
        return result

    def step(self) -> float:
        """One interval of churn in simulated time; returns the new simulated time."""
        now: float = self._call("step")
        return now

    def realtime(self, on: bool) -> None:
        self._call("realtime", on)

    def latency(self, seconds: float) -> None:
        self._call("latency", seconds)

    def requests(self) -> list[Counter[str]]:
        counts: list[Counter[str]] = self._call("requests")
        return counts

    def close(self) -> None:
        self._call("quit")
        self._proc.join(30)
