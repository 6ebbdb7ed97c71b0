"""The demo's traffic: sessions seeded, then kept coming and going in a few rooms, with their
members, recordings and logs; a few charged a cent more than they cost, a few conferences billed."""

from __future__ import annotations

import heapq
import threading
import uuid

from .records import CONFERENCE_LOG, MEMBER_DOLLARS_PER_MINUTE, Member, Session, dollars
from .state import SpaceState

# Demo traffic: rooms with their capacity (max_members), and weighted quality/fps choices.
QUALITY_MIX: tuple[tuple[str | None, ...], tuple[int, ...]] = (("720p", "1080p", None), (5, 4, 1))
FPS_MIX: tuple[tuple[str | int, ...], tuple[int, ...]] = (("30", "20", 20), (6, 3, 1))
ROOMS = {
    "standup": 10,
    "all-hands": 100,
    "sales-demo": 5,
    "support-desk": 8,
    "design-review": 20,
    "onboarding": 25,
    "office-hours": 50,
    "board-room": 12,
}
ENDED_AT_START = 3  # seeded live sessions that end the moment traffic starts: a first poll counts them
# Demo people: a share of sessions fill their room (max_members), a few members never join, a
# share of sessions is recorded.
FULL_SHARE, NO_SHOW_SHARE, RECORDED_SHARE = 0.25, 0.1, 1 / 3
NAMES = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Ken", "Margaret", "Linus", "Radia", "Dennis")
# The demo charges about one session in 50 a cent more than it cost (and the first to end 30 s
# after it began, so that a mismatch shows in its first minute, after Prometheus's first scrapes),
# and bills a conference with about one session in 10 (conferences have no room session; they end
# at the pace sessions do).
MISMATCH_SHARE, MISMATCH_DOLLARS, FIRST_MISMATCH_AFTER = 1 / 50, 0.01, 30.0
CONFERENCE_SHARE, CONFERENCE_DOLLARS_PER_MINUTE = 0.1, 0.002
CONFERENCES = ("weekly-sync", "customer-call", "town-hall", "partner-briefing")


class TrafficSpace(SpaceState):
    """A space whose sessions come and go by themselves (``run_traffic``) until ``stop_traffic()``."""

    mismatch_share = MISMATCH_SHARE  # of the demo's sessions
    first_mismatch_after = FIRST_MISMATCH_AFTER  # seconds of traffic
    conference_share = CONFERENCE_SHARE

    @property
    def traffic_started(self) -> float:
        """The clock when ``run_traffic`` began: its seeded sessions that ended, ended then."""
        if self._traffic_started is None:
            raise RuntimeError("traffic not started")
        return self._traffic_started

    def run_traffic(
        self, *, tick: float = 1.0, target_active: int = 12, mean_duration: float = 120.0
    ) -> None:
        """Simulate demo traffic in a daemon thread until :meth:`stop_traffic` (``stop()`` calls it).

        Seeds completed history and ``target_active`` live sessions, plus ``ENDED_AT_START``
        that were live and end now (at ``traffic_started``), each with a recording of its first
        half, completed for the first and still processing for the others; then every ``tick``
        seconds ends and starts sessions so that about ``target_active`` are in progress. Each
        session has its log; a few are charged a cent more than they cost (``mismatch_share``, and
        the first to end ``first_mismatch_after`` seconds after traffic began, unless that share
        is 0), and a few come with a conference's log (``conference_share``).
        """
        if self._traffic is not None:
            raise RuntimeError("traffic already running")
        now = self._clock()
        with self._lock:
            for i in range(target_active + ENDED_AT_START):
                start = now - self._rng.uniform(0, mean_duration)
                sid = self._start_random(start, mean_duration)
                if i < ENDED_AT_START:  # recorded for their first half: processed by now for the first
                    half = (start + now) / 2
                    processing = (now - half) / 2 if i == 0 else mean_duration
                    self.add_recording(
                        sid, id=self._random_id(), started_at=start, finished_at=half, processing=processing
                    )
                    self._end(sid, now)
            for _ in range(5):
                start = now - self._rng.uniform(2, 10) * mean_duration
                sid = self._start_random(start, mean_duration)
                self._end(sid, start + self._rng.uniform(0.2, 1.8) * mean_duration)
            self._traffic_started = now
        args = (self._stopping, tick, target_active, mean_duration)
        self._traffic = threading.Thread(
            target=self._traffic_loop, args=args, name="simulated-space-traffic", daemon=True
        )
        self._traffic.start()

    def stop_traffic(self) -> None:
        """Stop ``run_traffic``; the server goes on serving the sessions as they are."""
        self._stopping.set()
        if self._traffic is not None:
            self._traffic.join()
            self._traffic = None
        self._stopping = threading.Event()

    def _traffic_loop(
        self, stopping: threading.Event, tick: float, target: int, mean_duration: float
    ) -> None:
        while not stopping.wait(tick):
            with self._lock:
                self._traffic_step(tick, target, mean_duration)

    def _traffic_step(self, tick: float, target: int, mean_duration: float) -> None:
        """End each live session (and conference) with probability tick/mean; start enough to hover
        at target."""
        now, rng = self._clock(), self._rng
        live = [s.id for s in self._sessions.values() if s.end_time is None]
        ending = [sid for sid in live if rng.random() < tick / mean_duration]
        first_mismatch = self.mismatch_share > 0 and now - self.traffic_started >= self.first_mismatch_after
        for sid in ending:
            if first_mismatch and not self._first_mismatch:
                self._log_of[sid].offset = MISMATCH_DOLLARS
                self._first_mismatch = True
            self._end(sid, now)
        for conference in [c for c in self._conferences if self._log_rng.random() < tick / mean_duration]:
            self._end_conference(conference, now)
        deficit = max(0, target - len(live) + len(ending))
        expected = target * tick / mean_duration + 0.25 * deficit
        for _ in range(int(expected) + (rng.random() < expected % 1)):
            self._start_random(now, mean_duration)

    def _start_random(self, start: float, mean_duration: float) -> str:
        """Start a session in a random room with its members and, for some, a recording."""
        rng = self._rng
        name = rng.choice(list(ROOMS))
        recorded = rng.random() < RECORDED_SHARE
        sid = self.add_session(
            id=self._random_id(),
            name=name,
            quality=rng.choices(*QUALITY_MIX)[0],
            fps=rng.choices(*FPS_MIX)[0],
            max_members=ROOMS[name],
            start_time=start,
            created_at=start,
            record_on_start=recorded,
        )
        self._add_people(sid, start, ROOMS[name], mean_duration)
        if recorded:  # processed for about as long as a session lasts
            processing = rng.uniform(0.25, 1.0) * mean_duration
            self.add_recording(sid, id=self._random_id(), started_at=start, processing=processing)
        self._bill_extras(sid, start)
        return sid

    def _bill_extras(self, session_id: str, start: float) -> None:
        """Charge a session's log ``MISMATCH_DOLLARS`` more than it costs (``mismatch_share`` of the
        sessions); start a conference with it (``conference_share``)."""
        rng = self._log_rng
        if rng.random() < self.mismatch_share:
            self._log_of[session_id].offset = MISMATCH_DOLLARS
        if rng.random() < self.conference_share:
            conference_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            name = {"name": rng.choice(CONFERENCES)}
            conference = Session(conference_id, start, start, name, {}, next(self._seq))
            self._add_log(conference, CONFERENCE_LOG)
            self._conferences.append(conference)

    def _end_conference(self, conference: Session, end: float) -> None:
        """End a conference at ``end``; it costs ``CONFERENCE_DOLLARS_PER_MINUTE`` (at least $0.0001)."""
        conference.end_time = end
        conference.cost = max(dollars(CONFERENCE_DOLLARS_PER_MINUTE, end - conference.start_time), 0.0001)
        self._conferences.remove(conference)

    def _add_people(self, session_id: str, start: float, capacity: int, mean_duration: float) -> None:
        """Plan a session's members: most join early, some late; most stay long, some leave early.

        A full session's crowd (``FULL_SHARE``) is larger than its room, joins early and stays:
        it peaks at ``capacity``. Never more than ``capacity`` are present at once (the next ones
        are turned away). A few members (``NO_SHOW_SHARE``) never join.
        """
        rng = self._rng
        full = rng.random() < FULL_SHARE
        crowd = capacity + rng.randint(1, 3) if full else rng.randint(1, max(1, capacity * 2 // 3))
        late = 0.0 if full else 0.2
        joins = sorted(
            start + (rng.uniform(0, 1.5) if rng.random() < late else rng.expovariate(20)) * mean_duration
            for _ in range(crowd)
        )
        present: list[float] = []  # heap of the leave times of the members in the room
        for join in joins:
            while present and present[0] <= join:
                heapq.heappop(present)
            if len(present) >= capacity:
                continue
            stay = rng.uniform(0.5, 3.0) if full or rng.random() < 0.7 else rng.uniform(0.05, 0.5)
            leave = join + stay * mean_duration
            heapq.heappush(present, leave)
            self.add_member(
                session_id, id=self._random_id(), name=self._random_name(), join_time=join, leave_time=leave
            )
        if rng.random() < NO_SHOW_SHARE:
            listed = start + rng.uniform(0, 0.2) * mean_duration
            self.add_member(
                session_id, id=self._random_id(), name=self._random_name(), join_time=None, listed_at=listed
            )

    def _random_id(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def _random_name(self) -> str | None:
        """A member's display name; a few are null."""
        return None if self._rng.random() < 0.05 else f"{self._rng.choice(NAMES)} {self._rng.randint(1, 99)}"

    def _end(self, session_id: str, end: float) -> None:
        """Complete a session at ``end``: members not come by then never come; it costs
        ``MEMBER_DOLLARS_PER_MINUTE`` per member-minute (at least $0.0001)."""
        roster = self._roster("members", session_id)
        roster.drop_after(end)
        seconds = sum(
            max(0.0, (end if member.leave_time is None else min(end, member.leave_time)) - member.join_time)
            for member in roster
            if isinstance(member, Member) and member.join_time is not None
        )
        cost = max(dollars(MEMBER_DOLLARS_PER_MINUTE, seconds), 0.0001)
        self.complete_session(session_id, cost_in_dollars=cost, end_time=end)
