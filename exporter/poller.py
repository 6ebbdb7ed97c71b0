"""Polling: one background loop per space, each poll applied atomically to an immutable snapshot.

A poll lists every in-progress session (all pages), walks the completed listing back to the
accounting horizon (and on while that is cheaper than lookups, see :mod:`.economy`), looks up
the tracked sessions that are in neither listing in their room's listing (``GET`` by id when
they are not there), then reads members and recordings with what is left of its request budget
(:mod:`.enricher`). Only a complete poll changes counters or gauges; a failed one keeps the last
good values and publishes ``up=0``. Scrapes read the latest snapshot and never wait for a poll.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace

from .api import ApiClient, ApiError
from .bill import Bill, Billing, Mismatch, reconcile
from .charges import ChargeReader
from .config import Config, SpaceConfig
from .economy import ROOM_PAGE_SIZE, Budget, density, read_on
from .enricher import Enricher
from .enrichment import apply_enrichment, recordings_pending
from .models import COMPLETED, IN_PROGRESS, InvalidResponse, RoomSession
from .snapshot import DEFERRED_WORK, Requests, Snapshots, SpaceSnapshot, request_code
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
            members=config.members.enabled,
            recordings=config.recordings.enabled,
            recording_max_wait=config.recordings.max_wait,
            member_buckets=config.member_buckets,
            utilization_buckets=config.utilization_buckets,
            billing=Billing(
                timezone=config.billing.timezone,
                charges=config.charges.enabled,
                tolerance=config.charges.tolerance,
                descriptions_max=config.charges.descriptions_max,
                lookback=config.poll.lookback,
                page_size=config.poll.page_size,
            ),
        )
        self.enricher = Enricher(space.name, config, self.client)
        self.charge_reader = ChargeReader(space.name, config, self.client, self.settings.billing)
        self._order_warned = False
        self.budget = Budget(config.poll.max_requests)  # renewed by every poll
        self.deferred: dict[str, int] = {}  # work left to later polls, by kind (published counters)
        self._deferring: set[str] = set()  # kinds of work being deferred (logged when it changes)

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
        deadline = started + self.config.poll.interval
        previous = self.snapshots.current[self.space.name]
        try:
            observation, pending = self._observe(started_wall, deadline)
            accounting, activity = apply(self.accounting, observation, self.settings)
            enrichment, deferred = self.enricher.read(accounting, started_wall, deadline, self.budget)
            accounting = apply_enrichment(accounting, enrichment, self.settings)
            accounting, deferred["charges"], mismatches = self._charges(accounting, started_wall, deadline)
            members_active, deferred["live_members"] = self.enricher.live(
                observation.in_progress, deadline, self.budget
            )
            activity = replace(
                activity, members_active=members_active, recordings_pending=recordings_pending(accounting)
            )
            deferred["completions"] = pending
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
        self._log_mismatches(mismatches)
        self._note_deferred(deferred)
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
                deferred=self.deferred,
                bill=self.accounting.bill,
            )
        )
        log.debug("space %s: poll done in %.3fs", self.space.name, duration)
        return True

    def _charges(
        self, acc: Accounting, started: float, deadline: float
    ) -> tuple[Accounting, int, list[Mismatch]]:
        """Read the video logs due (``charges.enabled``) and compare the room sessions counted with
        their logs; returns the accounting, 1 when a forward sweep was left unfinished, and the
        mismatches found."""
        bill = acc.bill
        if bill is None or bill.charges is None:
            return acc, 0, []
        charges, unfinished = self.charge_reader.read(
            bill.charges, acc.tracked.values(), started, deadline, self.budget
        )
        charges, mismatches = reconcile(charges, started, self.settings.billing.tolerance)
        return replace(acc, bill=Bill(bill.sessions, charges)), unfinished, mismatches

    def _log_mismatches(self, mismatches: list[Mismatch]) -> None:
        for m in mismatches:
            log.warning(
                "space %s: room session %s cost $%.4f, but its video log %s charged $%.4f "
                "(signalwire_video_cost_mismatches_total)",
                self.space.name,
                m.session_id,
                m.cost,
                m.log_id,
                m.charge,
            )

    def _observe_request(self, endpoint: str, status: int | None, seconds: float) -> None:
        self.requests = self.requests.observe(endpoint, request_code(status), seconds)
        self.budget.spend()

    def _note_deferred(self, deferred: dict[str, int]) -> None:
        """Count work left for a later poll, by kind; log when that starts and when it stops."""
        self.deferred = {work: self.deferred.get(work, 0) + deferred.get(work, 0) for work in DEFERRED_WORK}
        for work in DEFERRED_WORK:
            count = deferred.get(work, 0)
            if bool(count) == (work in self._deferring):
                continue
            if count:
                self._deferring.add(work)
                log.warning(
                    "space %s: %d item(s) of %s work wait for later polls (poll.max_requests %d, the "
                    "poll's time or failed reads; signalwire_video_poll_deferred_total)",
                    self.space.name,
                    count,
                    work,
                    self.config.poll.max_requests,
                )
            else:
                self._deferring.discard(work)
                log.info("space %s: deferred %s work caught up", self.space.name, work)

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
        missing: Mapping[str, float],
        floor: float,
    ) -> dict[str, RoomSession]:
        """Completed sessions, newest first, back to one created before ``until``, and on from there
        while reading on is cheaper than looking up the ``missing`` ones (id -> created) it would
        reach (see :mod:`.economy`); not past ``floor``, never past the budget."""
        completed: dict[str, RoomSession] = {}
        newest_first, previous_created = True, float("inf")
        newer: float | None = None  # creation time of the last record of the previous page
        room_ids = self.accounting.room_ids
        by_age = sorted(  # the missing sessions the walk could reach, newest first
            ((created, sid) for sid, created in missing.items() if created >= floor), reverse=True
        )
        for sessions, bad in self.client.list_sessions(COMPLETED, deadline):
            malformed.extend((sid, COMPLETED) for sid in bad)
            created = [s.created_ts for s in sessions]
            for s, s_created in zip(sessions, created, strict=True):
                completed[s.id] = s
                newest_first = newest_first and s_created <= previous_created
                previous_created = s_created
            if not (newest_first and sessions):
                continue  # not ordered as documented: every page is read (bounded by max_pages)
            oldest = created[-1]
            if oldest < until:
                targets = [(c, room_ids.get(sid)) for c, sid in by_age if c < oldest and sid not in completed]
                rate, page_size = density(created, newer), self.config.poll.page_size
                if not read_on(targets, oldest, rate, page_size, self.budget.left()):
                    break
            newer = oldest
        if not newest_first and not self._order_warned:
            self._order_warned = True
            log.warning(
                "space %s: completed sessions are not listed newest-first; reading every page "
                "of the listing each poll (bounded by poll.max_pages)",
                self.space.name,
            )
        return completed

    def _walk_room(
        self,
        deadline: float,
        room: tuple[str | None, str | None],
        wanted: Mapping[str, float],
        malformed: list[tuple[str | None, str]],
    ) -> tuple[dict[str, RoomSession], bool]:
        """The ``wanted`` sessions (id -> created) found in one room's completed listing, by
        (room id, else room name); and whether the listing was read far enough to tell (False:
        the budget ran out first)."""
        found: dict[str, RoomSession] = {}
        oldest_wanted = min(wanted.values())
        newest_first, previous_created = True, float("inf")
        pages = self.client.list_sessions(COMPLETED, deadline, *room, page_size=ROOM_PAGE_SIZE)
        for sessions, bad in pages:
            malformed.extend((sid, COMPLETED) for sid in bad)
            for s in sessions:
                if s.id in wanted:
                    found[s.id] = s
                newest_first = newest_first and s.created_ts <= previous_created
                previous_created = s.created_ts
            if len(found) == len(wanted) or (newest_first and sessions and previous_created < oldest_wanted):
                return found, True
            if self.budget.left() <= 0:
                return found, False
        return found, True

    def _look_up(
        self,
        missing: Mapping[str, float],
        deadline: float,
        completed: dict[str, RoomSession],
        malformed: list[tuple[str | None, str]],
    ) -> tuple[dict[str, RoomSession | None], list[str]]:
        """Find the ``missing`` sessions (id -> created), oldest first, while the budget lasts:
        one room listing per room (rooms known from the in-progress listing), ``GET`` for the
        rest. Adds what it finds to ``completed``; returns what ``GET`` said (None: no such
        session) and the ids left for a later poll."""
        by_room: dict[str, dict[str, float]] = {}
        by_id: list[str] = []
        for sid in sorted(missing, key=lambda sid: (missing[sid], sid)):
            room_id = self.accounting.room_ids.get(sid)
            if room_id is None:
                by_id.append(sid)
            else:
                by_room.setdefault(room_id, {})[sid] = missing[sid]
        pending: list[str] = []
        roomed: set[str] = set()  # ids whose room listing was read
        for room_id, wanted in by_room.items():
            if self.budget.left() <= 0:
                pending.extend(wanted)
                continue
            found, complete = self._walk_room(deadline, (room_id, None), wanted, malformed)
            completed.update(found)
            rest = [sid for sid in wanted if sid not in found]
            (by_id if complete else pending).extend(rest)
            roomed.update(rest)
        fetched: dict[str, RoomSession | None] = {}
        for sid in by_id:
            if self.budget.left() <= 0:
                pending.append(sid)
                continue
            try:
                session = self.client.get_session(sid, deadline)
            except InvalidResponse:  # one bad record, not a bad poll
                malformed.append((sid, COMPLETED))
                continue
            if session and session.is_completed and session.cost_in_dollars is None and sid not in roomed:
                # GET has no cost: find the session in its room's completed listing
                room = (session.room_id, None if session.room_id else session.name)
                if room[0] or room[1]:
                    if self.budget.left() <= 0:  # never settle for no cost for lack of budget
                        pending.append(sid)
                        continue
                    found, complete = self._walk_room(deadline, room, {sid: session.created_ts}, malformed)
                    if sid in found:
                        completed[sid] = found[sid]
                        continue
                    if not complete:
                        pending.append(sid)
                        continue
            fetched[sid] = session
        return fetched, pending

    def _observe(self, started: float, deadline: float) -> tuple[Observation, int]:
        """One poll's reads; also returns how many vanished sessions it left for a later poll."""
        poll = self.config.poll  # optional work stops while a slow request can still fit
        self.budget = Budget(poll.max_requests, deadline - min(poll.timeout, poll.interval / 4))
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
        # Read back to the horizon, then on while that is cheaper than lookups, but not past the
        # backfill limit (plus lookback): a poll after a long outage still fits its interval.
        lookback = self.config.poll.lookback
        floor = started - self.settings.max_backfill - lookback
        completed = self._walk(deadline, max(floor, acc.horizon(lookback)), malformed, vanished, floor)
        missing = {sid: c for sid, c in vanished.items() if sid not in completed}
        fetched, pending = self._look_up(missing, deadline, completed, malformed)
        observation = Observation(started, in_progress, completed.values(), fetched, malformed, pending)
        return observation, len(pending)
