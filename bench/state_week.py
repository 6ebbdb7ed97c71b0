"""Soak benchmark: state size and memory of the accounting core over a simulated week of traffic.

What it shows: the dedupe memory (``Accounting.counted``), the tracked in-progress ids, the state
file and the process memory stay flat with uptime, because ``apply`` forgets counted ids created
before the accounting horizon; and the totals stay exact (every session that ended after counting
started is counted once, with its cost, quality/fps key and duration bucket).

How: a simulated clock, no sleeping and no HTTP. A simulated space starts sessions as a Poisson
process (``--completions-per-hour``) with durations drawn from a mixture of an exponential (short
meetings) and a uniform 1-8 h tail (a few multi-hour sessions), scaled so that about ``--active``
sessions are in progress at once (Little's law). Every ``--interval`` seconds a poll builds an
``Observation`` the way ``exporter/poller.py`` does: the full in-progress listing, and the completed
listing walked newest-first by ``created_at`` in whole pages of ``page_size`` back to
``max(acc.horizon(lookback), started - max_backfill - lookback)``, the boundary page included;
tracked sessions that vanished and lie beyond the walk (long ones) are added as the poller's GET +
room-listing lookup would find them, and counted as such lookups. It is folded in with the real
``exporter.state.apply`` and saved with the real ``exporter.statefile.StateFile`` (atomic write with
fsync) in a temporary directory, after every poll, as the exporter does. Records are built as API
JSON and decoded into ``RoomSession``.

The simulated space keeps its completed listing bounded too (it drops sessions older than any walk
can reach, plus one page), so process RSS reflects the exporter's core, not the simulator.

Run from the repository root (no install needed)::

    python bench/state_week.py [--days 7] [--interval 30] [--active 200] \
        [--completions-per-hour 1000] [--seed 1] [--lookback 3600]

It prints the machine, the exact command line, a table sampled every ``--sample-hours`` of simulated
uptime and a summary (day 1 vs the end, wall time, exactness). It exits 1 only when the totals are
not exact; timings are figures to read, never assertions.
"""

from __future__ import annotations

import argparse
import bisect
import heapq
import math
import os
import platform
import random
import shlex
import sys
import tempfile
import time
import tracemalloc
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, not installed

from exporter.config import Config, PollConfig
from exporter.models import RoomSession
from exporter.simulator import FPS_MIX, QUALITY_MIX, ROOMS
from exporter.snapshot import Key
from exporter.state import Accounting, Observation, Settings, apply, summarize
from exporter.statefile import StateFile

SPACE = "bench"
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z: counting starts here (whole seconds, like the API)
LONG_MIN, LONG_MAX = 3600, 8 * 3600  # multi-hour tail of the duration distribution, seconds
LONG_SHARE = 0.02  # share of sessions in the multi-hour tail (reduced if the mean cannot allow it)
COST_PER_MEMBER_MINUTE = 0.0035
COST_UNIT = 0.0001  # simulated costs are whole multiples of this (rounded to 4 decimals, like the API)
_decoder = msgspec.json.Decoder(RoomSession)


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _record(**fields: object) -> RoomSession:
    """A RoomSession decoded from its API JSON, as the exporter decodes a page."""
    return _decoder.decode(msgspec.json.encode(fields))


@dataclass
class _Live:
    """A session of the simulated space that is in progress (its listing record and fate)."""

    record: RoomSession
    base: dict[str, object]
    created: int
    end: int
    members: int


@dataclass
class Expected:
    """What exact accounting must show: sessions that ended after counting started."""

    completed: dict[Key, int] = field(default_factory=dict)
    cost_units: dict[Key, int] = field(default_factory=dict)  # exact sums in COST_UNITs, not floats
    buckets: dict[Key, list[int]] = field(default_factory=dict)

    def add(self, session: RoomSession, bounds: tuple[float, ...]) -> None:
        key = (session.quality_label, session.fps_label)
        self.completed[key] = self.completed.get(key, 0) + 1
        units = round((session.cost_in_dollars or 0.0) / COST_UNIT)
        self.cost_units[key] = self.cost_units.get(key, 0) + units
        counts = self.buckets.setdefault(key, [0] * (len(bounds) + 1))
        counts[bisect.bisect_left(bounds, session.duration_seconds or 0.0)] += 1

    @property
    def total(self) -> int:
        return sum(self.completed.values())

    def cost(self, key: Key | None = None) -> float:
        units = sum(self.cost_units.values()) if key is None else self.cost_units.get(key, 0)
        return units * COST_UNIT


class World:
    """A simulated space: Poisson arrivals, in-progress sessions and a bounded completed listing."""

    def __init__(self, rng: random.Random, args: argparse.Namespace, keep: float, page_size: int) -> None:
        self.rng = rng
        self.rate = args.completions_per_hour / 3600.0
        mean = args.active / self.rate  # Little's law: active = arrival rate * mean duration
        long_mean = (LONG_MIN + LONG_MAX) / 2
        self.long_share = min(LONG_SHARE, 0.5 * mean / long_mean)
        self.short_mean = (mean - self.long_share * long_mean) / (1 - self.long_share)
        self.mean = mean
        self.keep, self.page_size = keep, page_size
        self.clock = float(T0 - LONG_MAX - args.lookback - 3600)  # warm up before counting starts
        self.next_arrival = self.clock + rng.expovariate(self.rate)
        self.active: dict[str, _Live] = {}
        self.ending: list[tuple[int, str]] = []
        self.done: list[tuple[float, str, RoomSession]] = []  # by (created_at, id), oldest first
        self.pruned = False
        self.ended: dict[str, RoomSession] = {}  # completed since the previous poll
        self.started_total = 0

    def _duration(self) -> int:
        if self.rng.random() < self.long_share:
            return self.rng.randint(LONG_MIN, LONG_MAX)
        return max(1, min(LONG_MAX, round(self.rng.expovariate(1 / self.short_mean))))

    def _start(self, created: int) -> None:
        rng = self.rng
        sid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        room = rng.choice(list(ROOMS))
        base: dict[str, object] = {
            "id": sid,
            "name": room,
            "quality": rng.choices(*QUALITY_MIX)[0],
            "fps": rng.choices(*FPS_MIX)[0],
            "created_at": _iso(created),
            "start_time": _iso(created),
        }
        members = rng.randint(1, ROOMS[room])
        end = created + self._duration()
        record = _record(
            **base, status="in-progress", max_members=members, updated_at=_iso(created), cost_in_dollars=0
        )
        self.active[sid] = _Live(record, base, created, end, members)
        heapq.heappush(self.ending, (end, sid))
        self.started_total += 1

    def advance(self, now: int) -> list[RoomSession]:
        """Move the clock to ``now``; returns the sessions that completed since the last call."""
        while self.next_arrival <= now:
            self._start(math.floor(self.next_arrival))
            self.next_arrival += self.rng.expovariate(self.rate)
        finished: list[RoomSession] = []
        while self.ending and self.ending[0][0] <= now:
            end, sid = heapq.heappop(self.ending)
            live = self.active.pop(sid)
            duration = end - live.created
            cost = max(round(COST_PER_MEMBER_MINUTE * live.members * duration / 60, 4), 0.0001)
            session = _record(
                **live.base,
                status="completed",
                max_members=live.members,
                end_time=_iso(end),
                updated_at=_iso(end),
                duration=duration,
                cost_in_dollars=cost,
            )
            bisect.insort(self.done, (float(live.created), sid, session))
            self.ended[sid] = session
            finished.append(session)
        self.clock = now
        return finished

    def in_progress(self) -> list[RoomSession]:
        return [live.record for live in self.active.values()]

    def walk_completed(self, walk_until: float) -> tuple[list[RoomSession], int]:
        """The completed listing newest-first, in whole pages, up to the page holding the first
        session created before ``walk_until`` (as ``SpacePoller._observe`` stops); and pages read."""
        n = len(self.done)
        newer = n - bisect.bisect_left(self.done, (walk_until,))
        read = (newer // self.page_size + 1) * self.page_size
        if read >= n:
            if self.pruned:
                raise RuntimeError("the simulated listing was pruned too far for this walk")
            read = n
        return [row[2] for row in reversed(self.done[n - read :])], max(1, math.ceil(read / self.page_size))

    def prune(self) -> None:
        """Forget completed sessions no walk can reach any more, keeping one page beyond."""
        cut = bisect.bisect_left(self.done, (self.clock - self.keep,)) - self.page_size
        if cut >= 2 * self.page_size:
            del self.done[:cut]
            self.pruned = True


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"{model}, {os.cpu_count()} cores ({usable} usable); Python {platform.python_version()}, "
        f"msgspec {msgspec.__version__}, {platform.system()} {platform.release()}"
    )


def uptime(seconds: float) -> str:
    days, rest = divmod(int(seconds), 86400)
    return f"{days}d {rest // 3600:02d}:{rest % 3600 // 60:02d}"


def reload_memory(path: Path, buckets: tuple[float, ...], expected: Accounting) -> tuple[int, int, bool]:
    """tracemalloc current/peak bytes of loading the state file back; and whether it round-trips."""
    tracemalloc.start()
    try:
        loaded = StateFile(str(path), buckets).load([SPACE]).get(SPACE)
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return current, peak, loaded == expected


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--days", type=float, default=7.0, help="simulated uptime (default 7)")
    parser.add_argument("--interval", type=float, default=PollConfig.interval, help="poll interval, s")
    parser.add_argument("--active", type=int, default=200, help="sessions in progress at once (mean)")
    parser.add_argument("--completions-per-hour", type=float, default=1000.0, help="session rate")
    parser.add_argument("--seed", type=int, default=1, help="random seed")
    parser.add_argument("--lookback", type=float, default=PollConfig.lookback, help="poll.lookback, s")
    parser.add_argument("--sample-hours", type=float, default=12.0, help="table row every N simulated h")
    args = parser.parse_args(argv)
    if args.days <= 0 or args.interval <= 0 or args.active <= 0 or args.completions_per_hour <= 0:
        parser.error("--days, --interval, --active and --completions-per-hour must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    page_size = PollConfig.page_size
    settings = Settings(
        lookback=args.lookback, buckets=Config.duration_buckets, max_backfill=Config.max_backfill
    )
    polls = int(args.days * 86400 // args.interval)
    sample_every = max(1, round(args.sample_hours * 3600 / args.interval))
    day_poll = max(1, round(86400 / args.interval))  # the poll that completes the first simulated day
    if day_poll >= polls:  # a run of a day or less: compare with its first poll instead
        day_poll = 1
    keep = args.interval + max(args.lookback, LONG_MAX) + 60
    world = World(random.Random(args.seed), args, keep, page_size)

    print(f"machine: {machine()}")
    print(f"command: {shlex.join(sys.orig_argv)}")
    print(
        f"traffic: {args.completions_per_hour:g} sessions/h, ~{args.active} in progress, durations: "
        f"{1 - world.long_share:.1%} exponential (mean {world.short_mean / 60:.1f} min) + "
        f"{world.long_share:.1%} uniform {LONG_MIN // 3600}-{LONG_MAX // 3600} h (overall mean "
        f"{world.mean / 60:.1f} min), seed {args.seed}"
    )
    print(
        f"exporter: interval {args.interval:g}s, lookback {args.lookback:g}s, page_size {page_size}, "
        f"max_backfill {settings.max_backfill:g}s; {polls} polls over {args.days:g} simulated days, "
        "state file saved after every poll (atomic write + fsync)"
    )
    print(
        "columns: uptime = polls x interval, counted = len(acc.counted) (dedupe memory), tracked = "
        "in-progress ids, walk = completed records read this poll, state B = state file size, "
        "py blocks = sys.getallocatedblocks() (live Python objects: flat means no leak), "
        "acc KiB / load peak KiB = tracemalloc of loading the state file back (current / peak)"
    )
    print()
    header = (
        f"{'uptime':>9} {'polls':>6} {'completed':>9} {'counted':>7} {'tracked':>7} {'walk':>5} "
        f"{'state B':>8} {'RSS KiB':>8} {'py blocks':>9} {'acc KiB':>8} {'load peak KiB':>13}"
    )
    print(header)
    print("-" * len(header))

    expected = Expected()
    acc = Accounting(counting_start=float(T0))
    walk_total = walk_max = lookups = (
        0  # running figures only: the benchmark must not grow with uptime itself
    )
    max_pages = max_counted = max_tracked = max_state = 0
    apply_s = save_s = 0.0
    round_trips_ok = True
    at_day: tuple[int, int, int] | None = None  # (state bytes, RSS KiB, Python blocks)
    last: tuple[int, int, int] = (0, 0, 0)
    wall = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="state-week-") as tmp:
        path = Path(tmp) / "state.json"
        statefile = StateFile(str(path), settings.buckets, clock=lambda: world.clock)
        statefile.load([SPACE])
        for n in range(1, polls + 1):
            started = T0 + round((n - 1) * args.interval)
            for session in world.advance(started):
                if session.end_ts > T0 - 1:  # docs/counting.md: sessions that ended before start are not counted
                    expected.add(session, settings.buckets)
            in_progress = world.in_progress()
            listed = {s.id for s in in_progress}
            vanished = {sid: c for sid, c in acc.tracked.items() if sid not in listed}
            floor = started - settings.max_backfill - args.lookback
            completed, pages = world.walk_completed(max(floor, acc.horizon(args.lookback)))
            # long sessions beyond the walk: the poller GETs each and reads its room's listing
            missing = vanished.keys() - {s.id for s in completed}
            completed += [world.ended[sid] for sid in missing]
            lookups += len(missing)
            world.ended.clear()
            world.prune()

            tick = time.perf_counter()
            summary = summarize(in_progress, settings.rooms_enabled)  # the poller's share of aggregation
            acc, _activity = apply(acc, Observation(float(started), summary, completed), settings)
            tock = time.perf_counter()
            statefile.save(SPACE, acc)
            save_s += time.perf_counter() - tock
            apply_s += tock - tick

            size = path.stat().st_size
            walk_total += len(completed)
            walk_max = max(walk_max, len(completed))
            max_pages = max(max_pages, pages)
            max_counted = max(max_counted, len(acc.counted))
            max_tracked = max(max_tracked, len(acc.tracked))
            max_state = max(max_state, size)
            row = n == 1 or n % sample_every == 0 or n == polls
            if row or n == day_poll:
                rss, blocks = rss_kib(), sys.getallocatedblocks()
                current, peak, same = reload_memory(path, settings.buckets, acc)
                round_trips_ok = round_trips_ok and same
                if n == day_poll:
                    at_day = (size, rss, blocks)
                last = (size, rss, blocks)
                if row:
                    print(
                        f"{uptime(n * args.interval):>9} {n:>6} {sum(acc.totals.completed.values()):>9} "
                        f"{len(acc.counted):>7} {len(acc.tracked):>7} {len(completed):>5} {size:>8} "
                        f"{rss:>8} {blocks:>9} {current / 1024:>8.0f} {peak / 1024:>13.0f}"
                    )
    wall = time.perf_counter() - wall

    print()
    first = at_day or last
    label = "day 1" if day_poll > 1 else "first poll"

    def growth(a: int, b: int) -> str:
        return f"{(b - a) / a:+.1%}" if a else "n/a"

    print(
        f"state file: {label} {first[0]} B -> end {last[0]} B ({growth(first[0], last[0])}), "
        f"max {max_state} B over all {polls} polls"
    )
    print(
        f"RSS: {label} {first[1]} KiB -> end {last[1]} KiB ({growth(first[1], last[1])}); Python blocks "
        f"{first[2]} -> {last[2]} ({growth(first[2], last[2])})"
    )
    print(
        f"memory bounds: counted max {max_counted}, tracked max {max_tracked}; completed walk per poll "
        f"mean {walk_total / polls:.0f}, max {walk_max} records ({max_pages} pages); "
        f"long sessions looked up by id and room: {lookups} ({lookups / polls:.3f} per poll)"
    )
    print(
        f"polls: {polls}, wall time {wall:.1f} s ({wall / polls * 1000:.2f} ms/poll: apply "
        f"{apply_s / polls * 1000:.2f} ms, save {save_s / polls * 1000:.2f} ms, rest = simulation); "
        f"sessions started {world.started_total} (incl. warm-up), "
        f"state file reloads equal to memory: {'yes' if round_trips_ok else 'NO'}"
    )

    totals = acc.totals
    counted_total = sum(totals.completed.values())
    expected_cost = expected.cost()
    got_cost = math.fsum(totals.cost.values())
    problems: list[str] = []
    if counted_total != expected.total or dict(totals.completed) != expected.completed:
        problems.append(
            f"completed {counted_total} != expected {expected.total} (per key: {totals.completed})"
        )
    if not math.isclose(got_cost, expected_cost, rel_tol=1e-9, abs_tol=1e-9):
        problems.append(f"cost {got_cost!r} != expected {expected_cost!r}")
    for key in expected.cost_units.keys() | totals.cost.keys():
        if not math.isclose(totals.cost.get(key, 0.0), expected.cost(key), rel_tol=1e-9, abs_tol=1e-9):
            problems.append(f"cost of {key} {totals.cost.get(key)} != {expected.cost(key)}")
    histograms = {key: list(h.counts) for key, h in totals.durations.items()}
    if histograms != expected.buckets:
        problems.append("duration histogram counts differ from the sessions' durations")
    if any(totals.skipped.values()):
        problems.append(f"skipped: {dict(totals.skipped)}")
    if not round_trips_ok:
        problems.append("a state file loaded back differs from the accounting in memory")
    verdict = "EXACT" if not problems else "MISMATCH: " + "; ".join(problems)
    print(
        f"exactness: counted {counted_total} sessions / ${got_cost:.4f}; expected (ended after counting "
        f"started, by the last poll) {expected.total} / ${expected_cost:.4f}; "
        f"per-key counts, costs and duration buckets compared: {verdict}"
    )
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
