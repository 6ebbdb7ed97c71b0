"""Reads members and recordings within what is left of a poll's request budget.

After the sessions (which come first: they keep the counters exact), a poll reads, oldest
first: the members of counted sessions (``members.enabled``), then their recordings
(``recordings.enabled``); after the video logs (:mod:`.charges`), the members of in-progress
sessions (``members.live``), least recently read first. What does not fit waits for a later
poll and is counted in ``signalwire_video_poll_deferred_total{work}``. A failed read (after its
retries) leaves that session for a later poll without failing the poll (the sessions it counted
still count); after MAX_FAILURES in one poll the rest of that kind waits too. A session's
listing, once begun, is read to its end (rarely more than one page).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping

from .api import ApiClient, ApiError
from .config import Config
from .economy import Budget
from .enrichment import Enrichment, MemberSummary, RecordingRead, summarize_members
from .models import Recording
from .snapshot import Key
from .state import Accounting, Live

log = logging.getLogger(__name__)
MAX_FAILURES = 3  # failed reads of one kind after which a poll leaves the rest of that queue


class Enricher:
    """The member and recording reads of one space's polls."""

    def __init__(self, name: str, config: Config, client: ApiClient) -> None:
        self.name, self.config, self.client = name, config, client
        self.present: dict[str, int] = {}  # in-progress session -> members present at its latest read

    def read(
        self, acc: Accounting, started: float, deadline: float, budget: Budget
    ) -> tuple[Enrichment, dict[str, int]]:
        """This poll's reads of counted sessions; the work left for later by kind."""
        members: dict[str, MemberSummary | None] = {}
        recordings: dict[str, RecordingRead | None] = {}
        deferred: dict[str, int] = {}
        if self.config.members.enabled:
            self._each(acc.members_due, budget, lambda sid: self._members(sid, deadline, members))
            deferred["members"] = len(acc.members_due) - len(members)
        if self.config.recordings.enabled:
            self._each(acc.recordings_due, budget, lambda sid: self._recordings(sid, deadline, recordings))
            deferred["recordings"] = len(acc.recordings_due) - len(recordings)
        return Enrichment(started, members, recordings), deferred

    def live(
        self, in_progress: Mapping[str, Live], deadline: float, budget: Budget
    ) -> tuple[dict[Key, int], int]:
        """Members present by label pair (``members.live``), refreshed while the budget lasts;
        and how many sessions were left for a later poll."""
        if not self.config.members.live:
            return {}, 0
        left = self._live(in_progress, deadline, budget)
        active: dict[Key, int] = {}
        for sid, live in in_progress.items():
            if live.key is not None and sid in self.present:
                active[live.key] = active.get(live.key, 0) + self.present[sid]
        return active, left

    @staticmethod
    def _each(queue: Iterable[str], budget: Budget, read: Callable[[str], bool]) -> None:
        """Read the queue in order while the budget lasts; a session whose read fails waits for a
        later poll without holding up the ones behind it, until MAX_FAILURES in a poll (the API
        is likely down: the rest waits too)."""
        failures = 0
        for sid in queue:
            if budget.left() <= 0 or failures >= MAX_FAILURES:
                return
            failures += not read(sid)

    def _members(self, sid: str, deadline: float, into: dict[str, MemberSummary | None]) -> bool:
        """Read one counted session's members into ``into`` (None: the session is gone); False
        when the read failed."""
        try:
            pages = list(self.client.list_members(sid, deadline))
        except ApiError as exc:
            return self._failed("members", sid, exc)
        into[sid] = (
            None
            if not pages
            else summarize_members(
                (m for members, _ in pages for m in members), sum(len(b) for _, b in pages)
            )
        )
        return True

    def _recordings(self, sid: str, deadline: float, into: dict[str, RecordingRead | None]) -> bool:
        """Read one counted session's recordings into ``into`` (None: the session is gone);
        False when the read failed."""
        try:
            pages = list(self.client.list_recordings(sid, deadline))
        except ApiError as exc:
            return self._failed("recordings", sid, exc)
        records: list[Recording] = [r for recordings, _ in pages for r in recordings]
        malformed = [bad for _, bad_ids in pages for bad in bad_ids]
        into[sid] = RecordingRead(records, malformed) if pages else None
        return True

    def _live(self, in_progress: Mapping[str, Live], deadline: float, budget: Budget) -> int:
        """Refresh the members present in in-progress sessions, least recently read first (never
        read first); returns how many were left for a later poll."""
        for sid in list(self.present):
            if sid not in in_progress:
                del self.present[sid]
        order = [sid for sid in in_progress if sid not in self.present] + list(self.present)
        for done, sid in enumerate(order):
            if budget.left() <= 0:
                return len(order) - done
            try:
                pages = list(self.client.list_members(sid, deadline))
            except ApiError as exc:
                self._failed("members", sid, exc)
                return len(order) - done
            self.present.pop(sid, None)  # re-inserted last: the most recently read
            ids = {m.id for members, _ in pages for m in members if m.joined and m.leave_time is None}
            self.present[sid] = len(ids)
        return 0

    def _failed(self, kind: str, sid: str, exc: ApiError) -> bool:
        log.warning(
            "space %s: reading the %s of session %s failed (%s): %s; left for a later poll",
            self.name,
            kind,
            sid,
            exc.reason,
            exc,
        )
        return False
