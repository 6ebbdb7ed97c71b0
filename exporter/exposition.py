"""The ``/metrics`` body: the snapshot's families rendered once per snapshot, process metrics fresh.

prometheus_client formats about 13 µs per sample, so rendering ~300 samples holds the GIL for
4-8 ms, and while a large poll runs a scrape waits for the GIL on top of that. A snapshot is
immutable and replaced whole, so its rendered text stays exact until the next one is published
(or the billing day ends):
the collector still yields fresh families from the latest snapshot, but scrapes in between reuse
those bytes. Process, platform and GC metrics change between scrapes and are rendered every time,
after the cached part, so the body is byte for byte what one registry of all of them renders.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from .snapshot import Snapshots

OPENMETRICS_EOF = b"# EOF\n"
MAX_CACHED_FORMATS = 8  # distinct Accept variants cached per snapshot; others are rendered each time

Encoder = Callable[[CollectorRegistry], bytes]


def _registry(*collectors: Collector, describe: bool = False) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=describe)  # ``name[]`` filters need the names
    for collector in collectors:
        registry.register(collector)
    return registry


class Exposition:
    """Renders scrapes of ``collector`` (fed by ``snapshots``) followed by the ``fresh`` collectors."""

    def __init__(
        self,
        snapshots: Snapshots,
        collector: Collector,
        fresh: Sequence[Collector] = (),
        epoch: Callable[[], object] = lambda: None,
    ) -> None:
        """``epoch``: a value that changes when the cached text goes stale without a new snapshot
        (the billing day: the day and month figures reset at its end)."""
        self.snapshots, self.epoch = snapshots, epoch
        self._cached_part, self._fresh_part = _registry(collector), _registry(*fresh)
        self._everything = _registry(collector, *fresh, describe=True)  # for name[] filters
        self._lock = threading.Lock()
        self._snapshot: object = None  # the snapshots' mapping the cache was rendered from
        self._epoch: object = None
        self._bodies: dict[str, bytes] = {}  # by Content-Type (it names format, version, escaping)

    def render(self, accept: str | None, names: Sequence[str] = ()) -> tuple[bytes, str]:
        """(body, Content-Type) for a scrape with this ``Accept`` header, all families or ``names``."""
        encoder, content_type = choose_encoder(accept or "")
        if names:
            return encoder(self._everything.restricted_registry(names)), content_type
        return self._cached(encoder, content_type) + encoder(self._fresh_part), content_type

    def _cached(self, encoder: Encoder, content_type: str) -> bytes:
        with self._lock:  # concurrent scrapes after a new snapshot wait for one rendering
            current, epoch = self.snapshots.current, self.epoch()
            if current is not self._snapshot or epoch != self._epoch:
                self._snapshot, self._epoch, self._bodies = current, epoch, {}
            body = self._bodies.get(content_type)
            if body is None:
                # A poll publishing meanwhile makes the body newer than its key: the next
                # scrape then renders again, never serves an older one.
                body = encoder(self._cached_part).removesuffix(OPENMETRICS_EOF)
                if len(self._bodies) < MAX_CACHED_FORMATS:
                    self._bodies[content_type] = body
            return body
