"""Reads the video logs (``charges.enabled``) within what is left of a poll's request budget.

Every ``charges.interval`` a forward sweep begins (see :mod:`.bill`), and the logs in progress too
old for it are looked up by id (``GET /api/video/logs/{id}``); each poll reads the sweep's slices,
newest first, then the backfill's, while the budget lasts. A slice is read whole (all pages) or
not at all: one that runs out of budget is read again, half as long, by a later poll. A failed
read (after its retries) leaves the sweep for a later poll without failing the poll.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from datetime import UTC, datetime

from msgspec.structs import replace

from .api import ApiClient, ApiError
from .bill import Billing, Charges, Sweep, apply_lookups, apply_slice, shrink, stale, start_sweep
from .config import Config
from .economy import Budget
from .models import InvalidResponse, VideoLog

log = logging.getLogger(__name__)


def iso(ts: float) -> str:
    """A whole-second UTC ISO 8601 datetime, as the API's date filters take it."""
    return datetime.fromtimestamp(math.floor(ts), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ChargeReader:
    """The video-log reads of one space's polls."""

    def __init__(self, name: str, config: Config, client: ApiClient, billing: Billing) -> None:
        self.name, self.interval, self.client, self.billing = name, config.charges.interval, client, billing

    def read(
        self, charges: Charges, tracked: Iterable[float], started: float, deadline: float, budget: Budget
    ) -> tuple[Charges, int]:
        """``charges`` after this poll's reads; 1 when a forward sweep is left unfinished, else 0."""
        if charges.sweep is None and (charges.read is None or started - charges.read >= self.interval):
            charges = start_sweep(charges, started, tracked, self.billing)
            charges = self._look_up(charges, deadline, budget)
        for backfill in (False, True):
            while (sweep := charges.backfill if backfill else charges.sweep) is not None:
                if budget.left() <= 0:  # nothing tried: the same slice next time
                    return charges, int(charges.sweep is not None)
                slice_read = self._slice(sweep, deadline, budget)
                if slice_read is None:  # out of budget, or failed: a shorter slice next time
                    if backfill:
                        return replace(charges, backfill=shrink(sweep)), 0
                    return replace(charges, sweep=shrink(sweep)), 1
                logs, malformed = slice_read
                charges = apply_slice(charges, backfill, logs, malformed, started, self.billing)
        return charges, 0

    def _look_up(self, charges: Charges, deadline: float, budget: Budget) -> Charges:
        """Look up the logs in progress too old for the sweep, oldest first, while the budget
        lasts (those left wait for the next sweep); a failed read leaves the rest too."""
        found: dict[str, VideoLog | None] = {}
        malformed: list[str] = []
        for lid in stale(charges):
            if budget.left() <= 0:
                break
            try:
                found[lid] = self.client.get_log(lid, deadline)
            except InvalidResponse:
                malformed.append(lid)
            except ApiError as exc:
                log.warning(
                    "space %s: looking up video log %s failed (%s): %s", self.name, lid, exc.reason, exc
                )
                break
        return apply_lookups(charges, found, malformed, self.billing) if found or malformed else charges

    def _slice(
        self, sweep: Sweep, deadline: float, budget: Budget
    ) -> tuple[list[VideoLog], list[str | None]] | None:
        """Every log of the sweep's next slice, or None when its pages did not all fit or failed."""
        start, end = sweep.next_slice()
        logs: list[VideoLog] = []
        malformed: list[str | None] = []
        pages = self.client.list_logs(deadline, iso(start - 1), iso(end))
        try:
            while budget.left() > 0:
                try:
                    page, bad = next(pages)
                except StopIteration:
                    return logs, malformed
                logs.extend(page)
                malformed.extend(bad)
        except ApiError as exc:
            log.warning("space %s: reading the video logs failed (%s): %s", self.name, exc.reason, exc)
        return None
