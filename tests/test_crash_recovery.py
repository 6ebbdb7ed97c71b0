"""Crash recovery: counters survive SIGKILL at any moment, exactly.

The exporter runs as a subprocess (``state.path`` set) against an in-process
:class:`FakeSpace` whose sessions follow a seeded timeline: sessions start with varied
quality and fps (null and unusual values included) and complete with explicit costs and
durations, also while the exporter is down. The test kills the exporter with SIGKILL
``KILLS`` times, at random moments, while an API request is in flight and while the state
file is being written, and restarts it each time. Every scrape taken along the way must show
counters that never decrease; at the end the counters must equal the simulator's ground
truth: counts and histograms exactly, costs to 1e-9. Members and recordings are read too
(``members.enabled``, ``recordings.enabled``): sessions have members, some are recorded and
their recordings process for a moment after they end, so kills also land while members and
recordings are read and while their queues are saved; their counters must equal the truth too,
as must the video logs' charges (``charges.enabled``, read every poll).

Kills are classified after the fact, from evidence rather than intent:

- *during a poll*: the simulator received a request less than ``LATENCY`` before the killed
  process was reaped, so that request was still unanswered (every answer waits ``LATENCY``);
- *during a state write*: this process left ``<state>.tmp`` behind (its write, fsync and
  rename had not all happened);
- *during startup*: the process had not sent a single API request yet.

Targeted kills (a request in flight, a state write under way) wait for the process to have
saved once; random ones can come at any moment. Asserted: at least one kill during a poll,
and at least one during a state write where such a write takes long enough to be hit
(``WRITE_WINDOW_ASSERTED``; not on tmpfs, where the figure is only printed).
"""

from __future__ import annotations

import json
import math
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from exporter.simulator import Request

from .support.fake_api import FakeSpace

ROOT = Path(__file__).resolve().parent.parent
PROJECT, TOKEN = "project-crash", "tok-crash-5ecret"
SPACE = "crash"
SEED = int(os.environ.get("CRASH_RECOVERY_SEED", "20240611"))  # kill schedule and session traffic
KILLS = 24
INTERVAL = 0.5  # poll.interval, seconds
LOOKBACK = 3.0  # poll.lookback: short, so the memory of counted ids is pruned across restarts
PAGE_SIZE = 5  # several requests per listing
LATENCY = 0.02  # simulator answer delay: a poll takes a good part of the interval
BUCKETS = (60.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0)  # the default
STARTUP = 20.0  # bound of every wait for the exporter
PROCESSING = 1.0  # seconds a recording processes after its session ends, at most
# Kills that cut a state write are required when a state write (tmp file to rename) takes at
# least this long where the state lives (about 500 us with a real fsync on ext4). On tmpfs it
# takes tens of microseconds and a targeted kill only sometimes lands inside it.
WRITE_WINDOW_ASSERTED = 200e-6

TICK = 0.05  # timeline step, seconds
START_PROBABILITY = 0.12  # per tick: about 2.4 new sessions per second
MAX_LIVE = 12
PREEXISTING = 6  # in progress before the first start (none completed: they would not count)
QUALITIES: tuple[list[str | None], list[int]] = (["720p", "1080p", None, "4k", "480p"], [5, 4, 2, 1, 1])
FPS: tuple[list[str | int | None], list[int]] = (["30", "20", 20, 30, None, "60", 15], [5, 3, 2, 1, 2, 1, 1])
ROOM_NAMES = ("standup", "all-hands", "sales-demo", "support-desk", "design-review")
EDGE_DURATIONS = (0, 1, 59, 60, 61, 299, 300, 301, 600, 1800, 3599, 3600, 7200, 14400, 28800, 28801, 90000)

P = "signalwire_video_"
COMPLETED = P + "room_sessions_completed_total"
COST = P + "room_sessions_cost_dollars_total"
BUCKET = P + "room_session_duration_seconds_bucket"
DURATION_SUM = P + "room_session_duration_seconds_sum"
DURATION_COUNT = P + "room_session_duration_seconds_count"
MEMBERS_COUNT, MEMBERS_SUM = P + "room_session_members_count", P + "room_session_members_sum"
MEMBER_SECONDS, MEMBER_COST = P + "member_seconds_total", P + "member_cost_dollars_total"
RECORDINGS = (
    P + "recordings_total",
    P + "recording_seconds_total",
    P + "recording_bytes_total",
    P + "recording_cost_dollars_total",
)
PEOPLE = (MEMBERS_COUNT, MEMBERS_SUM, MEMBER_SECONDS, MEMBER_COST)
COUNTERS = (COMPLETED, COST, BUCKET, DURATION_SUM, DURATION_COUNT, *PEOPLE, *RECORDINGS)
AMOUNTS = (COST, MEMBER_COST, RECORDINGS[3])  # compared to 1e-9
QUALITY_LABELS = ("720p", "1080p", "unknown", "other")
FPS_LABELS = ("20", "30", "unknown", "other")

Key = tuple[str, str, str, float | None]  # (sample name, quality, fps, le)


# --- helpers ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SIGNALWIRE_")}


def write_window(directory: Path, size: int, trials: int = 15) -> float:
    """Median seconds from creating a temporary file to renaming it over the target when
    ``size`` bytes are written as the exporter writes its state (write, flush, fsync, rename):
    the window in which a kill cuts a state write. Tiny on tmpfs, where fsync does nothing."""
    target, temporary = directory / "window-probe", directory / "window-probe.tmp"
    data = os.urandom(size)
    times = []
    for _ in range(trials):
        started = time.perf_counter()
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
        times.append(time.perf_counter() - started)
    target.unlink()
    return sorted(times)[trials // 2]


def signature(path: Path) -> tuple[int, int, int] | None:
    """Identity of a file version (inode, mtime, size), None when absent."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def quality_label(value: object) -> str:
    if value is None:
        return "unknown"
    return str(value) if value in ("720p", "1080p") else "other"


def fps_label(value: object) -> str:
    """The documented rule: "20" and 20 are both 20; null is unknown; anything else other."""
    if value is None:
        return "unknown"
    if isinstance(value, str):
        return value if value in ("20", "30") else "other"
    return "20" if value == 20 else "30" if value == 30 else "other"


def parse(body: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


def space_value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str) -> float | None:
    return samples.get((name, frozenset({("space", SPACE)})))


def counter_values(samples: dict[tuple[str, frozenset[tuple[str, str]]], float]) -> dict[Key, float]:
    """The counters of SPACE, keyed by (sample name, quality, fps, le); "" for a label it lacks."""
    values: dict[Key, float] = {}
    for (name, labels), value in samples.items():
        label = dict(labels)
        if name in COUNTERS and label.get("space") == SPACE:
            le = float(label["le"]) if "le" in label else None
            values[name, label.get("quality", ""), label.get("fps", ""), le] = value
    return values


def expected_values(records: list[dict[str, Any]], sim: FakeSpace) -> dict[Key, float]:
    """Ground truth from the simulator's records (sessions, their members and recordings), in
    the shape of :func:`counter_values`."""
    count = {(q, f): 0 for q in QUALITY_LABELS for f in FPS_LABELS}
    cost = {key: 0.0 for key in count}
    durations: dict[tuple[str, str], list[int]] = {key: [] for key in count}
    people = {key: [0, 0, 0.0, 0.0] for key in count}  # sessions, members who joined, seconds, cost
    recordings = [0, 0.0, 0, 0.0]  # count, seconds, bytes, cost
    for record in records:
        if record["status"] != "completed":
            continue
        key = (quality_label(record["quality"]), fps_label(record["fps"]))
        count[key] += 1
        cost[key] += record["cost_in_dollars"]
        durations[key].append(record["duration"])
        joined = [m for m in sim.members(record["id"]) if m["join_time"] is not None]
        people[key][0] += 1
        people[key][1] += len(joined)
        people[key][2] += sum(m["duration"] for m in joined)
        people[key][3] += sum(m["cost_in_dollars"] for m in joined)
        for rec in sim.recordings(record["id"]):
            assert rec["status"] == "completed", rec
            for i, value in enumerate((1, rec["duration"], rec["size_in_bytes"], rec["cost_in_dollars"])):
                recordings[i] += value
    values: dict[Key, float] = {}
    for (q, f), n in count.items():
        values[COMPLETED, q, f, None] = n
        values[COST, q, f, None] = cost[q, f]
        values[DURATION_COUNT, q, f, None] = len(durations[q, f])
        values[DURATION_SUM, q, f, None] = sum(durations[q, f])
        for bound in (*BUCKETS, math.inf):
            values[BUCKET, q, f, bound] = sum(1 for d in durations[q, f] if d <= bound)
        for name, value in zip(PEOPLE, people[q, f], strict=True):
            values[name, q, f, None] = value
    for name, value in zip(RECORDINGS, recordings, strict=True):
        values[name, "", "", None] = value
    return values


def split_charge(log: dict[str, Any]) -> float:
    """A log's charge as its charge details count it: the details, plus what they leave out when
    that is more than half a ten-thousandth (the details have 4 decimals); all of it without any."""
    details = sum(d["charge"] for d in log["charge_details"])
    rest = log["charge"] - details
    return float(details + rest if not log["charge_details"] or rest > 0.00005 else details)


class TimedRequests(list[Request]):
    """The simulator's request log, with the monotonic time each request arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: list[float] = []

    def append(self, request: Request) -> None:
        self.arrivals.append(time.monotonic())
        super().append(request)


# --- the scripted timeline --------------------------------------------------------------------


@dataclass
class Timeline:
    """Seeded session traffic on the simulator, advanced by :meth:`step` from the test thread."""

    sim: FakeSpace
    rng: random.Random
    running: bool = False
    due: dict[str, float] = field(default_factory=dict)  # live id -> monotonic time to complete
    lifetimes: dict[str, tuple[float, float | None]] = field(default_factory=dict)  # monotonic
    last_change: float = 0.0  # wall clock of the latest change
    next_tick: float = 0.0

    def start(self, lifetime: float, age: float = 0.0) -> str:
        rng = self.rng
        started = time.time() - age
        sid = self.sim.add_session(
            name=rng.choice(ROOM_NAMES),
            quality=rng.choices(*QUALITIES)[0],
            fps=rng.choices(*FPS)[0],
            max_members=rng.randint(1, 50),
            start_time=started,
            created_at=started,
        )
        for i in range(rng.randint(0, 3)):  # members join as it starts; the fourth never does
            self.sim.add_member(sid, join_time=None if i == 2 and rng.random() < 0.3 else started)
        if rng.random() < 0.3:  # recorded: processing for a moment after it ends
            self.sim.add_recording(sid, processing=rng.uniform(0.0, PROCESSING))
        now = time.monotonic()
        self.due[sid] = now + lifetime
        self.lifetimes[sid] = (now, None)
        self.last_change = time.time()
        return sid

    def complete(self, sid: str) -> None:
        rng = self.rng
        kind = rng.random()
        if kind < 0.1:
            cost: float = 0
        elif kind < 0.55:
            cost = round(rng.uniform(0.0001, 3.0), 4)  # like 0.1234
        else:
            cost = rng.uniform(0.0, 2.0)  # every bit of a double
        duration = rng.choice(EDGE_DURATIONS) if rng.random() < 0.5 else rng.randint(0, 40_000)
        self.sim.complete_session(sid, cost_in_dollars=cost, duration=duration)
        del self.due[sid]
        self.lifetimes[sid] = (self.lifetimes[sid][0], time.monotonic())
        self.last_change = time.time()

    def lifetime(self) -> float:
        """Seconds: often shorter than a poll interval, sometimes longer than the lookback."""
        kind = self.rng.random()
        if kind < 0.4:
            return self.rng.uniform(0.05, 0.4)
        return self.rng.uniform(0.4, 3.0) if kind < 0.85 else self.rng.uniform(3.0, 10.0)

    def step(self) -> None:
        now = time.monotonic()
        if not self.running or now < self.next_tick:
            return
        self.next_tick = now + TICK
        for sid, end in list(self.due.items()):
            if end <= now:
                self.complete(sid)
        if len(self.due) < MAX_LIVE and self.rng.random() < START_PROBABILITY:
            self.start(self.lifetime())


# --- the exporter under test ------------------------------------------------------------------


@dataclass
class Kill:
    alive: float  # seconds from spawn to death
    mode: str
    in_poll: bool
    in_write: bool
    in_startup: bool


class Harness:
    """One exporter process at a time, killed and restarted; scrapes checked as they come."""

    def __init__(self, tmp_path: Path, sim: FakeSpace, timeline: Timeline) -> None:
        self.sim, self.timeline = sim, timeline
        self.requests = TimedRequests()
        sim.requests = self.requests
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.state = tmp_path / "state.json"
        self.tmp = self.state.with_name(self.state.name + ".tmp")
        self.log = tmp_path / "exporter.log"
        self.config = tmp_path / "config.yaml"
        doc = {
            "server": {"listen_address": f"127.0.0.1:{self.port}"},
            "poll": {
                "interval": f"{INTERVAL * 1000:.0f}ms",
                "timeout": "5s",
                "lookback": f"{LOOKBACK:g}s",
                "page_size": PAGE_SIZE,
            },
            "spaces": [{"name": SPACE, "base_url": sim.base_url, "project_id": PROJECT, "api_token": TOKEN}],
            "state": {"path": str(self.state)},
            "metrics": {"duration_buckets": list(BUCKETS)},
            "members": {"enabled": True},
            "recordings": {"enabled": True, "max_wait": "1h"},
            "charges": {"enabled": True, "interval": f"{INTERVAL * 1000:.0f}ms"},
        }
        self.config.write_text(yaml.safe_dump(doc))
        self.proc: subprocess.Popen[bytes] | None = None
        self.lives = 0
        self.spawned = 0.0
        self.tmp_at_spawn: tuple[int, int, int] | None = None
        self.state_at_spawn: tuple[int, int, int] | None = None
        self.kills: list[Kill] = []
        self.down: list[tuple[float, float]] = []  # monotonic (death, next spawn)
        self.high: dict[Key, float] = {}  # highest value scraped so far, per series
        self.decreases: list[str] = []
        self.bad_states: list[str] = []
        self.scrapes = 0
        self.scraped_lives: set[int] = set()  # lives with at least one scrape
        self.longest_poll = 0.0
        self.next_scrape = 0.0

    def log_tail(self, lines: int = 60) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def spawn(self) -> None:
        self.lives += 1
        self.tmp_at_spawn = signature(self.tmp)
        self.state_at_spawn = signature(self.state)
        with self.log.open("ab") as log:
            log.write(f"--- life {self.lives} ---\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "exporter", "--config", str(self.config)],
                cwd=ROOT,
                env=clean_env(),
                stdout=log,
                stderr=log,
            )
        self.spawned = time.monotonic()
        if self.down:
            self.down[-1] = (self.down[-1][0], self.spawned)

    def saved(self) -> bool:
        """True once the current process has written the state file (completed a poll)."""
        return signature(self.state) != self.state_at_spawn

    def wait_saved(self) -> None:
        if not self.pause(STARTUP, until=self.saved):
            pytest.fail(f"the exporter wrote no state for {STARTUP}s:\n{self.log_tail()}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self, mode: str) -> Kill:
        proc = self.proc
        assert proc is not None
        if proc.poll() is not None:
            pytest.fail(f"the exporter exited by itself ({proc.returncode}):\n{self.log_tail()}")
        proc.kill()
        proc.wait(timeout=10)
        dead = time.monotonic()
        self.down.append((dead, math.inf))
        arrivals = [t for t in self.requests.arrivals[-5:] if t >= self.spawned]
        tmp = signature(self.tmp)
        kill = Kill(
            alive=dead - self.spawned,
            mode=mode,
            in_poll=bool(arrivals) and arrivals[-1] + LATENCY > dead,
            in_write=tmp is not None and tmp != self.tmp_at_spawn,
            in_startup=not arrivals,
        )
        self.kills.append(kill)
        self.check_state_file()
        return kill

    def check_state_file(self) -> None:
        """Whatever the moment of the kill, the state file is complete and valid (or absent)."""
        try:
            data = self.state.read_bytes()
        except FileNotFoundError:
            return
        try:
            doc = json.loads(data)
            assert doc["version"] == 1 and SPACE in doc["spaces"], doc.keys()
        except (ValueError, KeyError, AssertionError) as exc:
            self.bad_states.append(f"kill {len(self.kills)}: {exc!r}: {data[:200]!r}")

    def scrape(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float] | None:
        """Scrape /metrics if the exporter answers; check that no counter went down."""
        self.next_scrape = time.monotonic() + 0.1
        try:
            response = httpx.get(self.url + "/metrics", timeout=2.0)
        except httpx.TransportError:
            return None
        if response.status_code != 200:
            return None
        samples = parse(response.text)
        self.scrapes += 1
        self.scraped_lives.add(self.lives)
        polled = space_value(samples, P + "poll_duration_seconds")
        self.longest_poll = max(self.longest_poll, polled or 0.0)
        for key, value in counter_values(samples).items():
            high = self.high.get(key)
            if high is not None and value < high:
                self.decreases.append(f"life {self.lives}: {key} went from {high!r} to {value!r}")
            self.high[key] = value if high is None else max(high, value)
        return samples

    def pause(self, seconds: float, until: Callable[[], bool] | None = None, scrape: bool = True) -> bool:
        """Advance the timeline (and scrape) for ``seconds`` or until ``until()``; True if it came."""
        deadline = time.monotonic() + seconds
        while True:
            self.timeline.step()
            if until is not None and until():
                return True
            if time.monotonic() >= deadline:
                return False
            if scrape and time.monotonic() >= self.next_scrape and self.alive():
                self.scrape()
            time.sleep(0.003)

    def wait_for_write(self, seconds: float) -> bool:
        """Spin until a new ``<state>.tmp`` appears (a state write has begun); True if it did."""
        base = signature(self.tmp)
        deadline = time.monotonic() + seconds
        next_step = 0.0
        while (now := time.monotonic()) < deadline:
            current = signature(self.tmp)
            if current is not None and current != base:
                return True
            if now >= next_step:
                self.timeline.step()
                next_step = now + TICK
        return False


# --- the test ---------------------------------------------------------------------------------


def test_counters_survive_sigkill_at_any_moment(tmp_path: Path) -> None:
    began = time.monotonic()
    rng = random.Random(SEED)
    modes = ["random"] * 10 + ["poll"] * 7 + ["write"] * 7
    assert len(modes) == KILLS
    rng.shuffle(modes)
    with FakeSpace(PROJECT, TOKEN) as sim:
        sim.latency = LATENCY
        timeline = Timeline(sim, random.Random(SEED + 1))
        # In progress before the first start, some for hours: tracked from the first poll on.
        # The ancient ones end early: the first poll after one ends reads the completed listing
        # back to its creation, which must fit in one poll interval (else no poll succeeds).
        preexisting = [
            timeline.start(rng.uniform(1.0, 3.0), age=rng.uniform(3600, 3 * 3600)) for _ in range(2)
        ]
        preexisting += [timeline.start(rng.uniform(1.0, 6.0), age=rng.uniform(0, 30)) for _ in range(4)]
        assert len(preexisting) == PREEXISTING
        harness = Harness(tmp_path, sim, timeline)
        while_down: list[str] = []
        try:
            harness.spawn()
            # Nothing completes until the first state is on disk: counting starts at the first
            # start, but a process killed before its first save leaves nothing to resume from
            # (the next one starts counting afresh).
            if not harness.pause(STARTUP, until=harness.state.exists):
                pytest.fail(f"no state file after {STARTUP}s:\n{harness.log_tail()}")
            timeline.running = True
            for mode in modes:
                # Targeted kills come after the process has saved once. Were every process
                # killed before it completes a poll, each poll would have to read everything
                # since the last saved one, which soon no longer fits in one poll interval: a
                # poll never makes partial progress, so the exporter would never catch up.
                # Random kills may come at any moment, before the first save too.
                if mode == "random":  # anywhere: starting up, polling, writing, idle
                    harness.pause(rng.uniform(0.0, 1.4))
                elif mode == "poll":  # a request in flight: the answer takes LATENCY
                    harness.wait_saved()
                    harness.pause(rng.uniform(0.0, 0.6))
                    sent = len(harness.requests)
                    harness.pause(3 * INTERVAL, until=lambda n=sent: len(harness.requests) > n, scrape=False)
                    time.sleep(rng.uniform(0.0, 0.6 * LATENCY))
                else:  # the state file being written
                    harness.wait_saved()
                    harness.pause(rng.uniform(0.0, 0.3))
                    harness.wait_for_write(3 * INTERVAL)
                harness.kill(mode)
                # Down: sessions go on, and some start and complete before the restart.
                harness.pause(rng.uniform(0.05, 0.3))
                while_down.append(timeline.start(rng.uniform(5.0, 10.0)))
                harness.pause(rng.uniform(0.02, 0.15))
                timeline.complete(while_down[-1])
                harness.pause(rng.uniform(0.0, 0.15))
                harness.spawn()

            # The last process lives: stop the timeline and wait for a successful poll that
            # began after the last change (a poll never outlasts INTERVAL).
            timeline.running = False
            settled = timeline.last_change + PROCESSING + INTERVAL + 0.25
            final: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
            previous: list[tuple[float, float]] = []  # (poll, work deferred so far) of earlier scrapes

            def caught_up() -> bool:
                """A successful poll after the last change that left no work for later (so every
                queued session was read) and found no recording still processing."""
                if time.monotonic() < harness.next_scrape or not harness.alive():
                    return False
                samples = harness.scrape()
                if samples is None:
                    return False
                final.clear()
                final.update(samples)
                polled = space_value(samples, P + "last_poll_success_timestamp_seconds") or 0.0
                pending = space_value(samples, P + "recordings_pending")
                deferred = sum(v for (name, _), v in samples.items() if name == P + "poll_deferred_total")
                drained = any(poll < polled and total == deferred for poll, total in previous[-1:])
                previous.append((polled, deferred))
                up = space_value(samples, P + "up") == 1.0
                charges_read = space_value(samples, P + "charges_read_timestamp_seconds") or 0.0
                return up and polled > settled and pending == 0 and drained and charges_read > settled

            if not harness.pause(STARTUP, until=caught_up, scrape=False):
                pytest.fail(f"no successful poll after the last change:\n{harness.log_tail()}")
            records = sim.sessions()
        finally:
            if harness.proc is not None and harness.proc.poll() is None:
                harness.proc.kill()
                harness.proc.wait(timeout=10)

    runtime = time.monotonic() - began
    completed = [r for r in records if r["status"] == "completed"]
    spans = [span for span in timeline.lifetimes.values() if span[1] is not None]
    unseen = sum(1 for start, end in spans if any(d <= start and end <= r for d, r in harness.down))
    kills = harness.kills
    window = write_window(tmp_path, harness.state.stat().st_size)
    print(
        f"\ncrash recovery (seed {SEED}): {len(kills)} kills "
        f"({sum(k.in_poll for k in kills)} during a poll, {sum(k.in_write for k in kills)} during a "
        f"state write, {sum(k.in_startup for k in kills)} during startup); {len(records)} sessions, "
        f"{len(completed)} completed, {unseen} started and completed while the exporter was down; "
        f"{harness.scrapes} scrapes of {len(harness.scraped_lives)} processes; "
        f"longest poll {harness.longest_poll:.3f}s, "
        f"{harness.log.read_text(errors='replace').count('poll failed')} failed polls; "
        f"state write window {window * 1e6:.0f}us; {runtime:.1f}s"
    )
    for mode in ("random", "poll", "write"):
        of_mode = [k for k in kills if k.mode == mode]
        print(
            f"  {mode:>6} kills: {len(of_mode)}, in poll {sum(k.in_poll for k in of_mode)}, "
            f"in write {sum(k.in_write for k in of_mode)}, in startup {sum(k.in_startup for k in of_mode)}"
        )

    # Whatever the moment of a kill, the state file stayed whole.
    assert not harness.bad_states, harness.bad_states
    assert not list(tmp_path.glob("state.json.corrupt-*")), "a state file was set aside as unusable"

    # Counters never went down, across every scrape of every process.
    assert not harness.decreases, "\n".join(harness.decreases[:30])

    # The end result equals the ground truth.
    expected = expected_values(records, sim)  # the stopped simulator still holds its ground truth
    actual = counter_values(final)
    problems = []
    for key in sorted(expected.keys() | actual.keys(), key=repr):
        want, got = expected.get(key), actual.get(key)
        if want is None or got is None:
            problems.append(f"{key}: expected {want!r}, exported {got!r}")
        elif key[0] in AMOUNTS or key[0] == MEMBER_SECONDS:
            if not math.isclose(got, want, rel_tol=0.0, abs_tol=1e-9):
                problems.append(f"{key}: expected {want!r}, exported {got!r}")
        elif got != want:
            problems.append(f"{key}: expected {want!r}, exported {got!r}")
    assert not problems, "\n".join(problems[:40]) + "\n" + harness.log_tail(30)
    assert sum(expected[COMPLETED, q, f, None] for q in QUALITY_LABELS for f in FPS_LABELS) == len(completed)
    # Each video log counted once: every completed session's log, charged what the session cost.
    logs = [log for log in sim.logs() if log["status"] == "completed"]
    charged = sum(v for (name, _), v in final.items() if name == P + "charged_logs_total")
    dollars = sum(v for (name, _), v in final.items() if name == P + "charges_dollars_total")
    assert charged == len(logs) == len(completed)
    assert math.isclose(dollars, sum(split_charge(log) for log in logs), rel_tol=0.0, abs_tol=1e-9)
    assert space_value(final, P + "cost_mismatches_total") == 0.0

    # The crash schedule really happened, so the checks above proved something.
    assert len(kills) >= 20
    assert any(k.in_poll for k in kills), kills
    if window >= WRITE_WINDOW_ASSERTED:  # else (tmpfs) write kills are reported, not required
        assert any(k.in_write for k in kills), kills
    assert unseen >= len(while_down) >= 20
    assert len(harness.scraped_lives) >= 5, harness.scraped_lives

    # Nothing was left out, and the gauges agree too.
    skipped = {
        dict(labels)["reason"]: v
        for (name, labels), v in final.items()
        if name == P + "sessions_skipped_total"
    }
    assert skipped and not any(skipped.values()), skipped
    live: dict[tuple[str, str], int] = {}
    for record in records:
        if record["status"] == "in-progress":
            key = (quality_label(record["quality"]), fps_label(record["fps"]))
            live[key] = live.get(key, 0) + 1
    for q in QUALITY_LABELS:
        for f in FPS_LABELS:
            labels = frozenset({"space": SPACE, "quality": q, "fps": f}.items())
            assert final[P + "room_sessions_active", labels] == live.get((q, f), 0), (q, f)
