"""The listings: entries sorted by creation time and indexed by the filters, paged newest first
from a cursor; a session's members and recordings as they come; the logs with and without the
deleted ones."""

from __future__ import annotations

import itertools
import math
from bisect import bisect_left, bisect_right, insort
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, Literal, Protocol

from .http import LIST_PATH
from .records import Log

ANY_TIME = (-math.inf, math.inf)  # (from, until): the creation times a listing is narrowed to
Child = Literal["members", "recordings"]  # the listings of one session


class Entry(Protocol):
    """Anything the lists serve: a session, or a record a subclass lists verbatim."""

    @property
    def pos(self) -> tuple[float, str, int]: ...  # (created_at, id, -order of creation)
    @property
    def key(self) -> tuple[float, str]: ...  # (created_at, id): the keyset the cursors use
    @property
    def status(self) -> str: ...
    def record(self, now: float) -> dict[str, Any]: ...
    def served(self, name: str) -> Any: ...


@dataclass
class Cursor:
    after: bool  # True: items older than ``key`` (next page); False: newer (previous page)
    key: tuple[float, str]


@dataclass
class ListQuery:
    filters: dict[str, str]
    page_number: int
    page_size: int
    token: str | None
    cursor: Cursor | None
    path: str = LIST_PATH  # of the listing: the sessions, one session's members or recordings, the logs
    created: tuple[float, float] = ANY_TIME  # from (included), until (excluded)


_Slot = tuple[str, str]  # an index: ("", "") every entry, else (filter name, value)
_ALL: _Slot = ("", "")
_pos, _key = attrgetter("pos"), attrgetter("key")


def _created(entry: Entry) -> float:
    return entry.pos[0]


def _slots(entry: Entry) -> list[_Slot]:
    """The indexes listing ``entry``: all, its status (if it has one), and its room id and name when
    strings."""
    slots = [_ALL, ("status", entry.status)] if entry.status else [_ALL]
    for name, field_name in (("room_id", "room_id"), ("room_name", "name")):
        value = entry.served(field_name)
        if isinstance(value, str):
            slots.append((name, value))
    return slots


class Listing:
    """Every list entry, sorted by (created_at, id), whole and per status, room id and room name.

    A page costs O(log n) plus the entries it scans: the smallest index the filters allow is
    walked from the cursor and the remaining filters are checked entry by entry.
    """

    def __init__(self, entries: Iterable[Entry] = ()) -> None:
        self._index: defaultdict[_Slot, list[Entry]] = defaultdict(list)
        for entry in entries:
            for slot in _slots(entry):
                self._index[slot].append(entry)
        for rows in self._index.values():
            rows.sort(key=_pos)

    @property
    def all(self) -> list[Entry]:
        return self._index[_ALL]

    def add(self, entry: Entry) -> None:
        for slot in _slots(entry):
            insort(self._index[slot], entry, key=_pos)

    def remove(self, entry: Entry, slots: Iterable[_Slot] | None = None) -> None:
        for slot in _slots(entry) if slots is None else slots:
            rows = self._index[slot]
            del rows[bisect_left(rows, entry.pos, key=_pos)]

    def move(self, entry: Entry, old_status: str) -> None:
        """File ``entry`` under its new status."""
        if entry.status != old_status:
            self.remove(entry, [("status", old_status)])
            insort(self._index["status", entry.status], entry, key=_pos)

    def page(
        self,
        filters: dict[str, str],
        cursor: Cursor | None,
        size: int,
        created: tuple[float, float] = ANY_TIME,
    ) -> tuple[list[Entry], bool]:
        """One newest-first page of the entries matching ``filters`` and created within ``created``
        (from, until) relative to ``cursor``, and whether older matching entries remain."""
        exact = [(name, filters[name]) for name in ("status", "room_id", "room_name") if name in filters]
        rows = min((self._index.get(slot, []) for slot in exact), key=len, default=self.all)
        low, high = (bisect_left(rows, bound, key=_created) for bound in created)

        def matching(indexes: range) -> Iterator[Entry]:
            return (rows[i] for i in indexes if _matches(rows[i], filters))

        if cursor is None or cursor.after:
            top = high if cursor is None else min(high, bisect_left(rows, cursor.key, key=_key))
            found = list(itertools.islice(matching(range(top - 1, low - 1, -1)), size + 1))
            return found[:size], len(found) > size
        bottom = max(low, bisect_right(rows, cursor.key, key=_key))
        page = list(itertools.islice(matching(range(bottom, high)), size))[::-1]
        return page, bool(page) and next(matching(range(bottom - 1, low - 1, -1)), None) is not None


class Roster:
    """The members (or recordings) of one session: each is listed once its ``listed_at`` has come."""

    def __init__(self) -> None:
        self.listing = Listing()
        self._due: list[Entry] = []  # not listed yet, latest first

    def add(self, entry: Entry) -> None:
        insort(self._due, entry, key=lambda due: -due.pos[0])

    def listed(self, now: float) -> Listing:
        """The listing at ``now``: entries whose time has come are listed first."""
        while self._due and self._due[-1].pos[0] <= now:
            self.listing.add(self._due.pop())
        return self.listing

    def drop_after(self, end: float) -> None:
        """Forget the entries not listed by ``end``: the session ended before they came."""
        self._due = [entry for entry in self._due if entry.pos[0] <= end]

    def __iter__(self) -> Iterator[Entry]:
        """Every entry, listed or not yet."""
        return itertools.chain(self.listing.all, self._due)


class LogBook:
    """The video logs as listed: ``everything`` (``include_deleted``) and the ``kept`` ones (not deleted)."""

    def __init__(self, entries: Iterable[Entry] = ()) -> None:
        rows = list(entries)
        self.everything = Listing(rows)
        self.kept = Listing(row for row in rows if not _deleted(row))

    def add(self, entry: Entry) -> None:
        self.everything.add(entry)
        if not _deleted(entry):
            self.kept.add(entry)

    def remove(self, entry: Entry) -> None:
        self.everything.remove(entry)
        if not _deleted(entry):
            self.kept.remove(entry)


def _deleted(entry: Entry) -> bool:
    return isinstance(entry, Log) and entry.discarded_at is not None


def _matches(entry: Entry, filters: dict[str, str]) -> bool:
    name, room_id = entry.served("name"), entry.served("room_id")
    name = name if isinstance(name, str) else None
    pattern = filters.get("room_name_matches")
    return (
        filters.get("status", entry.status) == entry.status
        and filters.get("room_id", room_id) == room_id
        and filters.get("room_name", name) == name
        and (pattern is None or (name is not None and pattern.lower() in name.lower()))
    )
