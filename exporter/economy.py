"""How a poll spends its API requests: the budget, and when reading on beats looking up.

A tracked session that leaves the in-progress listing must be found completed, for its cost.
The completed listing is ordered by creation, so a long session that ends lies deep in it. It
can be reached two ways: by reading on (one request per page, each page may hold several), or
by a lookup (one request: the first page of its room's completed listing, where it is the
newest, since a room has one session in progress at a time). A poll reads on while that is
cheaper for the sessions still missing, estimating the pages from the listing's density.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

from .models import TIMESTAMP_RESOLUTION

ROOM_PAGE_SIZE = 10  # a just-ended session is the newest of its room: one small page finds it


class Budget:
    """Requests one poll may still send (``poll.max_requests``), retries included; none once
    its time is up (``until``, monotonic), so that slow answers leave work for the next poll
    instead of making the poll overrun its deadline and fail."""

    def __init__(self, limit: int, until: float = math.inf) -> None:
        self.limit, self.until, self.spent = limit, until, 0

    def spend(self) -> None:
        self.spent += 1

    def left(self) -> int:
        return self.limit - self.spent if time.monotonic() < self.until else 0


def density(page_created: Sequence[float], newer: float | None) -> float:
    """Records per second of creation time over one page (``newer``: the previous page's last)."""
    span = (page_created[0] if newer is None else newer) - page_created[-1]
    return len(page_created) / max(span, TIMESTAMP_RESOLUTION)


def lookup_costs(rooms: Sequence[str | None]) -> list[int]:
    """Requests to look up ``rooms[k:]`` one by one, for every k (the last entry is 0).

    One page per distinct room id; two for a session whose room id is unknown (``GET`` for
    its room, then its room's page).
    """
    costs, seen = [0] * (len(rooms) + 1), set()
    for k in range(len(rooms) - 1, -1, -1):
        room = rooms[k]
        costs[k] = costs[k + 1] + (2 if room is None else int(room not in seen))
        if room is not None:
            seen.add(room)
    return costs


def read_on(
    targets: Sequence[tuple[float, str | None]], oldest: float, rate: float, page_size: int, left: int
) -> bool:
    """Whether reading on is cheaper than looking up ``targets``.

    ``targets``: (created, room id) of the missing sessions older than ``oldest`` (the creation
    time of the last record read), newest first. Reading on to the k-th costs the pages that
    ``rate`` records per second of creation time fill, leaving the rest to lookups; it must fit
    the ``left`` requests.
    """
    costs = lookup_costs([room for _, room in targets])
    for k, (created, _) in enumerate(targets, start=1):
        pages = math.ceil((oldest - created) * rate / page_size)
        if pages > left:
            return False
        if pages + costs[k] < costs[0]:
            return True
    return False
