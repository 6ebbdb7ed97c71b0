"""Restart-proof state: the accounting of every space in one versioned JSON file.

The file is replaced atomically (temporary file, fsync, rename, fsync of the directory),
so after a crash it holds either the previous poll's state or the new one, never a mix.
A file that cannot be used (corrupt, truncated, unreadable, another format version) is
moved aside as ``<path>.corrupt-<timestamp>`` and the exporter starts fresh.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated

import msgspec

from .snapshot import Histogram, Totals
from .state import Accounting

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
Count = Annotated[int, msgspec.Meta(ge=0)]
Amount = Annotated[float, msgspec.Meta(ge=0)]


class _Totals(msgspec.Struct, forbid_unknown_fields=True):
    completed: list[tuple[str, str, Count]]
    cost: list[tuple[str, str, Amount]]
    durations: list[tuple[str, str, list[Count], Amount]]
    room_cost: dict[str, Amount]
    skipped: dict[str, Count]


class _Space(msgspec.Struct, forbid_unknown_fields=True):
    counting_start: float
    last_success: float | None
    tracked: dict[str, float]
    counted: dict[str, float]
    rooms: list[str]
    buckets: list[float]
    totals: _Totals


class _File(msgspec.Struct, forbid_unknown_fields=True):
    version: int
    written_at: float
    spaces: dict[str, _Space]


class _Version(msgspec.Struct):
    version: int


def _encode_space(acc: Accounting, buckets: tuple[float, ...]) -> _Space:
    t = acc.totals
    return _Space(
        counting_start=acc.counting_start,
        last_success=acc.last_success,
        tracked=dict(acc.tracked),
        counted=dict(acc.counted),
        rooms=list(acc.rooms),
        buckets=list(buckets),
        totals=_Totals(
            completed=[(q, f, n) for (q, f), n in t.completed.items()],
            cost=[(q, f, v) for (q, f), v in t.cost.items()],
            durations=[(q, f, list(h.counts), h.total) for (q, f), h in t.durations.items()],
            room_cost=dict(t.room_cost),
            skipped=dict(t.skipped),
        ),
    )


def _decode_space(space: _Space, buckets: tuple[float, ...], name: str) -> Accounting:
    t = space.totals
    durations = {(q, f): Histogram(tuple(c), total) for q, f, c, total in t.durations}
    if tuple(space.buckets) != buckets:
        log.warning(
            "space %s: metrics.duration_buckets changed since the state was written; "
            "the duration histogram starts again from zero (other counters continue)",
            name,
        )
        durations = {}
    elif any(len(h.counts) != len(buckets) + 1 for h in durations.values()):
        raise ValueError(f"space {name}: histogram bucket counts do not match its buckets")
    return Accounting(
        counting_start=space.counting_start,
        last_success=space.last_success,
        tracked=space.tracked,
        counted=space.counted,
        rooms=tuple(space.rooms),
        totals=Totals(
            completed={(q, f): n for q, f, n in t.completed},
            cost={(q, f): v for q, f, v in t.cost},
            durations=durations,
            room_cost=t.room_cost,
            skipped=t.skipped,
        ),
    )


def check_state_path(path: str) -> str | None:
    """Why the state file cannot be written at ``path``, or None when it can."""
    target = Path(path)
    directory = target.parent
    if target.is_dir():
        return f"{path} is a directory"
    if not directory.is_dir():
        return f"directory {directory} does not exist"
    if not os.access(directory, os.W_OK | os.X_OK):
        return f"directory {directory} is not writable"
    if target.exists() and not os.access(target, os.R_OK | os.W_OK):
        return f"{path} is not readable and writable"
    return None


class StateFile:
    """The state of every configured space, loaded once and rewritten after each poll."""

    def __init__(self, path: str, buckets: tuple[float, ...], clock: Callable[[], float] = time.time) -> None:
        self.path, self.buckets, self.clock = Path(path), buckets, clock
        self._lock = threading.Lock()
        self._spaces: dict[str, _Space] = {}

    def load(self, names: Iterable[str]) -> dict[str, Accounting]:
        """The stored accounting of each named space; spaces no longer configured are dropped."""
        wanted = set(names)
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            log.info("state file %s does not exist yet; counting starts now", self.path)
            return {}
        except OSError as exc:
            return self._set_aside(f"cannot read it: {exc.strerror}")
        try:
            version = msgspec.json.decode(data, type=_Version).version
            if version != FORMAT_VERSION:
                return self._set_aside(f"format version {version}, this exporter reads {FORMAT_VERSION}")
            stored = msgspec.json.decode(data, type=_File)
            loaded = {n: _decode_space(s, self.buckets, n) for n, s in stored.spaces.items() if n in wanted}
        except (msgspec.DecodeError, ValueError) as exc:
            return self._set_aside(f"it is not a valid state file ({exc})")
        for name in stored.spaces.keys() - wanted:
            log.info("state file: dropping the state of space %s, which is no longer configured", name)
        self._spaces = {n: s for n, s in stored.spaces.items() if n in wanted}
        log.info("state file %s: resuming %d space(s)", self.path, len(loaded))
        return loaded

    def save(self, name: str, accounting: Accounting) -> None:
        """Store one space's accounting and rewrite the file atomically; raises OSError."""
        with self._lock:
            spaces = {**self._spaces, name: _encode_space(accounting, self.buckets)}
            document = _File(version=FORMAT_VERSION, written_at=self.clock(), spaces=spaces)
            _write_atomically(self.path, msgspec.json.encode(document))
            self._spaces = spaces

    def _set_aside(self, reason: str) -> dict[str, Accounting]:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self.clock()))
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        try:
            os.replace(self.path, aside)
            where = f"moved it to {aside}"
        except OSError as exc:
            where = f"could not move it aside ({exc.strerror}); it will be overwritten"
        log.error("state file %s is unusable: %s; %s and starting fresh", self.path, reason, where)
        return {}


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(f"{path.name}.tmp")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
