"""Polling: one background loop per space, each poll applied atomically to an immutable snapshot.

A poll lists every in-progress session (all pages), walks the completed listing back to the
accounting horizon (further while it keeps finding sessions that left the in-progress listing),
and asks ``GET /room_sessions/{id}`` about tracked sessions that are in neither. Only a complete
poll changes counters or gauges; a failed one keeps the last good values and publishes ``up=0``.
Scrapes read the latest snapshot and never wait for a poll.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace

from .api import ApiClient, ApiError
from .config import Config, SpaceConfig
from .models import COMPLETED, IN_PROGRESS, InvalidResponse, RoomSession
from .snapshot import Requests, Snapshots, SpaceSnapshot, request_code
from .state import Accounting, Live, Observation, Settings, apply, summarize
from .statefile import StateFile

log = logging.getLogger(__name__)


class SpacePoller:
    """Polls one space on its interval and publishes a snapshot after every poll."""

    def __init__(
        self,
        space: SpaceConfig,
        config: Config,
        snapshots: Snapshots,
        stop: threading.Event,
        clock: Callable[[], float] = time.time,
        state: StateFile | None = None,
        accounting: Accounting | None = None,
    ) -> None:
        self.space, self.config, self.snapshots, self.stop = space, config, snapshots, stop
        self.clock = clock
        self.requests = Requests()  # only this poller's thread observes and publishes them
        self.client = ApiClient(space, config.poll, self._observe_request, stop)
        self.state = state
        self.accounting = accounting or Accounting(counting_start=clock())
        self.settings = Settings(
            lookback=config.poll.lookback,
            buckets=config.duration_buckets,
            rooms_enabled=config.rooms_enabled,
            rooms_max=config.rooms_max,
            max_backfill=config.max_backfill,
        )
        self._order_warned = False

    def run(self) -> None:
        """Poll every ``interval`` (measured from each poll's start) until ``stop`` is set."""
        try:
            while not self.stop.is_set():
                started = time.monotonic()
                self.poll_once()
                self.stop.wait(max(0.0, started + self.config.poll.interval - time.monotonic()))
        finally:
            self.client.close()

    def poll_once(self) -> bool:
        """Run one poll and publish its snapshot; True when it succeeded."""
        started_wall, started = self.clock(), time.monotonic()
        previous = self.snapshots.current[self.space.name]
        try:
            observation = self._observe(started_wall, started + self.config.poll.interval)
            accounting, activity = apply(self.accounting, observation, self.settings)
        except ApiError as exc:
            log.warning("space %s: poll failed (%s): %s", self.space.name, exc.reason, exc)
            self._publish_failure(previous, exc.reason)
            return False
        except Exception:  # a bug must not stop the loop: it shows as a failed poll
            log.exception("space %s: poll failed unexpectedly", self.space.name)
            self._publish_failure(previous, "internal_error")
            return False
        if self.state is not None:
            try:  # saved before it is published: after a restart no counter can go back
                self.state.save(self.space.name, accounting)
            except OSError as exc:
                log.error("space %s: cannot write the state file: %s", self.space.name, exc)
                self._publish_failure(previous, "state_write")
                return False
        self._log_backfill_skips(accounting)
        self.accounting = accounting
        duration = time.monotonic() - started
        self.snapshots.publish(
            replace(
                previous,
                polled=True,
                up=True,
                last_success=started_wall,
                poll_duration=duration,
                activity=activity,
                totals=self.accounting.totals,
                requests=self.requests,
            )
        )
        log.debug("space %s: poll done in %.3fs", self.space.name, duration)
        return True

    def _observe_request(self, endpoint: str, status: int | None, seconds: float) -> None:
        self.requests = self.requests.observe(endpoint, request_code(status), seconds)

    def _log_backfill_skips(self, accounting: Accounting) -> None:
        skipped = accounting.totals.skipped.get("backfill_limit", 0)
        skipped -= self.accounting.totals.skipped.get("backfill_limit", 0)
        if skipped:
            log.warning(
                "space %s: %d session(s) ended more than state.max_backfill (%gs) ago, while the "
                "exporter was down; not counted (signalwire_video_sessions_skipped_total)",
                self.space.name,
                skipped,
                self.settings.max_backfill,
            )

    def _publish_failure(self, previous: SpaceSnapshot, reason: str) -> None:
        errors = {**previous.poll_errors, reason: previous.poll_errors.get(reason, 0) + 1}
        self.snapshots.publish(
            replace(previous, polled=True, up=False, poll_errors=errors, requests=self.requests)
        )

    def _walk(
        self,
        deadline: float,
        until: float,
        malformed: list[tuple[str | None, str]],
        room_of: RoomSession | None = None,
        wanted: str | None = None,
        follow: Mapping[str, float] | None = None,
    ) -> dict[str, RoomSession]:
        """Completed sessions, newest first, until one created before ``until`` (or ``wanted``).

        With ``room_of``, only that session's room: by ``room_id``, else by room name. Past
        ``until`` the walk goes on while each page holds some of ``follow`` (vanished tracked
        sessions: id -> created) and some of them lie further back: a page costs one request,
        each session it finds would otherwise cost two (GET, then its room's listing).
        """
        completed: dict[str, RoomSession] = {}
        if room_of is not None and not (room_of.room_id or room_of.name):
            return completed
        room = (room_of.room_id, None if room_of.room_id else room_of.name) if room_of else (None, None)
        follow = follow or {}
        newest_first, previous_created = True, float("inf")
        for sessions, bad in self.client.list_sessions(COMPLETED, deadline, *room):
            malformed.extend((sid, COMPLETED) for sid in bad)
            found = False
            for s in sessions:
                completed[s.id] = s
                found = found or s.id in follow
                newest_first = newest_first and s.created_ts <= previous_created
                previous_created = s.created_ts
            if wanted in completed:
                break
            if newest_first and sessions and sessions[-1].created_ts < until:
                oldest = sessions[-1].created_ts
                if not (found and any(c < oldest for sid, c in follow.items() if sid not in completed)):
                    break  # newest-first order verified so far: the rest is older than needed
        if not newest_first and not self._order_warned:
            self._order_warned = True
            log.warning(
                "space %s: completed sessions are not listed newest-first; reading every page "
                "of the listing each poll (bounded by poll.max_pages)",
                self.space.name,
            )
        return completed

    def _observe(self, started: float, deadline: float) -> Observation:
        malformed: list[tuple[str | None, str]] = []
        in_progress: dict[str, Live] = {}
        for sessions, bad in self.client.list_sessions(IN_PROGRESS, deadline):  # one page held at a time
            in_progress.update(summarize(sessions, self.settings.rooms_enabled))
            malformed.extend((sid, IN_PROGRESS) for sid in bad)

        acc = self.accounting
        undecodable = {sid for sid, _ in malformed}  # listed in progress all the same
        vanished = {
            sid: c for sid, c in acc.tracked.items() if sid not in in_progress and sid not in undecodable
        }
        # Read back to the horizon, but not past the backfill limit (plus lookback), so that a
        # poll after a long outage still fits its interval; further only while pages keep
        # finding vanished sessions. One the walk does not reach (a long session) is looked up
        # by id, then in its room's listing, below.
        lookback = self.config.poll.lookback
        floor = started - self.settings.max_backfill - lookback
        follow = {sid: created for sid, created in vanished.items() if created >= floor}
        completed = self._walk(deadline, max(floor, acc.horizon(lookback)), malformed, follow=follow)

        fetched: dict[str, RoomSession | None] = {}
        for sid in vanished.keys() - completed.keys():
            try:
                session = self.client.get_session(sid, deadline)
            except InvalidResponse:  # one bad record, not a bad poll
                malformed.append((sid, COMPLETED))
                continue
            if session and session.is_completed and session.cost_in_dollars is None:
                # GET has no cost: find the session in its room's completed listing
                in_room = self._walk(deadline, session.created_ts, malformed, session, sid)
                if sid in in_room:
                    completed[sid] = in_room[sid]
                    continue
            fetched[sid] = session
        return Observation(started, in_progress, completed.values(), fetched, malformed)
