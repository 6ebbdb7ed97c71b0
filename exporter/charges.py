"""Reads the video logs (``charges.enabled``) within what is left of a poll's request budget.

Every ``charges.interval`` a forward sweep begins (see :mod:`.bill`), and the logs in progress too
old for it are looked up by id (``GET /api/video/logs/{id}``); each poll reads the sweep's slices,
newest first, then the backfill's, while the budget lasts. A slice counts once read whole (all
pages); one cut short (budget, or a failed read) counts for the newer part its pages hold whole,
and a later poll goes on from there. A failed read (after its retries) leaves the sweep for a
later poll without failing the poll.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from datetime import UTC, datetime

from msgspec.structs import replace

from .api import ApiClient, ApiError
from .bill import (
    MIN_SLICE,
    Billing,
    Charges,
    Sweep,
    apply_lookups,
    apply_slice,
    shrink,
    stale,
    start_sweep,
)
from .config import Config
from .economy import Budget
from .models import TIMESTAMP_RESOLUTION, InvalidResponse, VideoLog

log = logging.getLogger(__name__)


def iso(ts: float) -> str:
    """A whole-second UTC ISO 8601 datetime, as the API's date filters take it."""
    return datetime.fromtimestamp(math.floor(ts), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _resized(sweep: Sweep, start: float) -> Sweep:
    """What is left of ``sweep`` after the newer part of its slice, from ``start``, was read: next,
    a slice as long as that part (what fitted)."""
    return replace(sweep, until=start, span=max(MIN_SLICE, sweep.until - start))


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
                logs, malformed, start, whole = self._slice(sweep, deadline, budget)
                if start is not None:
                    charges = apply_slice(charges, backfill, logs, malformed, self.billing, start)
                if not whole:  # out of budget, or failed: what was read whole counts, the rest waits
                    rest = shrink(sweep) if start is None else _resized(sweep, start)
                    charges = replace(charges, backfill=rest) if backfill else replace(charges, sweep=rest)
                    return charges, int(charges.sweep is not None)
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
    ) -> tuple[list[VideoLog], list[str | None], float | None, bool]:
        """The logs of the sweep's next slice; from where their creation times show the pages read
        hold every log of it (the slice's start when all were read, None when no part is known
        whole); whether all its pages were read."""
        start, end = sweep.next_slice()
        logs: list[VideoLog] = []
        malformed: list[str | None] = []
        newest_first, oldest = True, float(end)
        pages = self.client.list_logs(deadline, iso(start - 1), iso(end))
        try:
            while budget.left() > 0:
                try:
                    page, bad = next(pages)
                except StopIteration:
                    return logs, malformed, start, True
                for record in page:
                    newest_first = newest_first and record.created_ts <= oldest
                    oldest = min(oldest, record.created_ts)
                logs.extend(page)
                malformed.extend(bad)
        except ApiError as exc:
            log.warning("space %s: reading the video logs failed (%s): %s", self.name, exc.reason, exc)
        # Listed newest first (as the API does), the pages read hold every log created after the
        # oldest of them: that part of the slice is read whole.
        covered = math.floor(oldest) + TIMESTAMP_RESOLUTION
        return logs, malformed, (covered if newest_first and start < covered < end else None), False
