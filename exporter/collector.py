"""Custom collector: renders the latest snapshots into fresh metric families on every scrape.

Sample output (one space, abridged)::

    signalwire_video_up{space="production"} 1.0
    signalwire_video_room_sessions_active{fps="30",quality="720p",space="production"} 4.0
    signalwire_video_room_sessions_completed_total{fps="30",quality="720p",space="production"} 17.0
    signalwire_video_room_sessions_cost_dollars_total{fps="30",quality="720p",space="production"} 2.31
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from . import BUILD_LABELS, build_info
from .bill import Charges
from .config import Config
from .ledger import Ledger, figures, period_start
from .snapshot import (
    CHARGE_TYPES,
    COST_SOURCES,
    DEFERRED_WORK,
    ENDPOINTS,
    KEYS,
    LOG_SKIP_REASONS,
    MEMBER_SKIP_REASONS,
    OTHER_ROOM,
    PERIODS,
    POLL_ERROR_REASONS,
    RECORDING_SKIP_REASONS,
    REQUEST_BUCKETS,
    REQUEST_CODES,
    SKIP_REASONS,
    Histogram,
    Snapshots,
    SpaceSnapshot,
)

P = "signalwire_video_"
EMPTY_CHARGES = Charges(0.0, Ledger("", 0.0))


def _buckets(bounds: tuple[float, ...], hist: Histogram) -> list[tuple[str, float]]:
    """Cumulative ``le`` buckets of ``hist``, +Inf last."""
    running, samples = 0, []
    for bound, count in zip((*map(str, bounds), "+Inf"), hist.counts, strict=True):
        running += count
        samples.append((bound, float(running)))
    return samples


class SessionCollector(Collector):
    """Yields every ``signalwire_video_*`` family from the current snapshots."""

    def __init__(self, snapshots: Snapshots, config: Config, clock: Callable[[], float] = time.time) -> None:
        self.snapshots, self.config, self.clock = snapshots, config, clock
        self.buckets, self.rooms_enabled = config.duration_buckets, config.rooms_enabled
        self.budgets = {s.name: s.budget_monthly for s in config.spaces if s.budget_monthly is not None}

    def day(self) -> float:
        """Start of the current day in billing.timezone: the day and month figures change with it."""
        return period_start("day", self.clock(), self.config.billing.timezone)

    def collect(self) -> Iterator[Metric]:
        spaces = sorted(self.snapshots.current.values(), key=lambda s: s.name)
        yield from self._sessions(spaces)
        if self.config.members.enabled:
            yield from self._people(spaces)
        if self.config.members.live:
            yield from self._live_members(spaces)
        if self.config.recordings.enabled:
            yield from self._recordings(spaces)
        if self.rooms_enabled:
            yield from self._rooms(spaces)
        yield from self._bill(spaces)
        if self.config.charges.enabled:
            yield from self._charges(spaces)
        yield from self._health(spaces)
        info = GaugeMetricFamily(
            P + "exporter_build_info",
            "Exporter version, revision and Python version; always 1.",
            labels=BUILD_LABELS,
        )
        info.add_metric(build_info(), 1.0)
        yield info

    def _sessions(self, spaces: list[SpaceSnapshot]) -> Iterator[Metric]:
        labels = ["space", "quality", "fps"]
        active = GaugeMetricFamily(P + "room_sessions_active", "In-progress room sessions.", labels=labels)
        members = GaugeMetricFamily(
            P + "room_sessions_active_max_members",
            "Sum of max_members over in-progress room sessions (member capacity).",
            labels=labels,
        )
        oldest = GaugeMetricFamily(
            P + "room_sessions_oldest_start_timestamp_seconds",
            "Start time of the longest-running in-progress room session.",
            labels=["space"],
        )
        completed = CounterMetricFamily(
            P + "room_sessions_completed", "Completed room sessions counted.", labels=labels
        )
        cost = CounterMetricFamily(
            P + "room_sessions_cost_dollars",
            "Sum of cost_in_dollars of completed room sessions.",
            labels=labels,
        )
        durations = HistogramMetricFamily(
            P + "room_session_duration_seconds",
            "Duration of completed room sessions.",
            labels=labels,
        )
        empty = Histogram.empty(self.buckets)
        for s in spaces:
            act, tot = s.activity, s.totals
            for quality, fps in KEYS:
                key, values = (quality, fps), [s.name, quality, fps]
                active.add_metric(values, act.active.get(key, 0))
                members.add_metric(values, act.max_members.get(key, 0))
                completed.add_metric(values, tot.completed.get(key, 0))
                cost.add_metric(values, tot.cost.get(key, 0.0))
                hist = tot.durations.get(key, empty)
                durations.add_metric(values, _buckets(self.buckets, hist), hist.total)
            if act.oldest_start is not None:
                oldest.add_metric([s.name], act.oldest_start)
        yield from (active, members, oldest, completed, cost, durations)

    def _people(self, spaces: list[SpaceSnapshot]) -> Iterator[Metric]:
        labels = ["space", "quality", "fps"]
        members = HistogramMetricFamily(
            P + "room_session_members",
            "Members who joined each completed room session (distinct by member id).",
            labels=labels,
        )
        peak = HistogramMetricFamily(
            P + "room_session_peak_members",
            "Most members present at once in each completed room session.",
            labels=labels,
        )
        ratio = HistogramMetricFamily(
            P + "room_session_capacity_utilization_ratio",
            "Peak members / max_members of each completed room session (max_members > 0).",
            labels=labels,
        )
        full = CounterMetricFamily(
            P + "room_sessions_at_capacity",
            "Completed room sessions whose peak members reached max_members (max_members > 0).",
            labels=labels,
        )
        seconds = CounterMetricFamily(
            P + "member_seconds", "Participant-seconds of completed room sessions.", labels=labels
        )
        cost = CounterMetricFamily(
            P + "member_cost_dollars",
            "Sum of the members' cost_in_dollars of completed room sessions.",
            labels=labels,
        )
        skipped = CounterMetricFamily(
            P + "members_skipped",
            "Member records left out of the counters, by reason.",
            labels=["space", "reason"],
        )
        counts, ratios = self.config.member_buckets, self.config.utilization_buckets
        for s in spaces:
            people = s.totals.people
            for key in KEYS:
                values = [s.name, *key]
                for family, bounds, hists in (
                    (members, counts, people.members),
                    (peak, counts, people.peak),
                    (ratio, ratios, people.utilization),
                ):
                    hist = hists.get(key) or Histogram.empty(bounds)
                    family.add_metric(values, _buckets(bounds, hist), hist.total)
                full.add_metric(values, people.at_capacity.get(key, 0))
                seconds.add_metric(values, people.seconds.get(key, 0.0))
                cost.add_metric(values, people.cost.get(key, 0.0))
            for reason in MEMBER_SKIP_REASONS:
                skipped.add_metric([s.name, reason], people.skipped.get(reason, 0))
        yield from (members, peak, ratio, full, seconds, cost, skipped)

    def _live_members(self, spaces: list[SpaceSnapshot]) -> Iterator[Metric]:
        active = GaugeMetricFamily(
            P + "members_active",
            "Members present now in in-progress room sessions (members.live).",
            labels=["space", "quality", "fps"],
        )
        for s in spaces:
            for key in KEYS:
                active.add_metric([s.name, *key], s.activity.members_active.get(key, 0))
        yield active

    def _recordings(self, spaces: list[SpaceSnapshot]) -> Iterator[Metric]:
        families = {
            "count": CounterMetricFamily(P + "recordings", "Completed recordings counted.", labels=["space"]),
            "seconds": CounterMetricFamily(
                P + "recording_seconds", "Duration of completed recordings.", labels=["space"]
            ),
            "bytes": CounterMetricFamily(
                P + "recording_bytes", "Size of completed recordings.", labels=["space"]
            ),
            "cost": CounterMetricFamily(
                P + "recording_cost_dollars",
                "Sum of cost_in_dollars of completed recordings.",
                labels=["space"],
            ),
        }
        pending = GaugeMetricFamily(
            P + "recordings_pending",
            "Recordings of counted sessions that have not completed yet.",
            labels=["space"],
        )
        skipped = CounterMetricFamily(
            P + "recordings_skipped",
            "Recordings left out of the counters, by reason.",
            labels=["space", "reason"],
        )
        for s in spaces:
            totals = s.totals.recordings
            for name, family in families.items():
                family.add_metric([s.name], getattr(totals, name))
            pending.add_metric([s.name], s.activity.recordings_pending)
            for reason in RECORDING_SKIP_REASONS:
                skipped.add_metric([s.name, reason], totals.skipped.get(reason, 0))
        yield from (*families.values(), pending, skipped)

    def _rooms(self, spaces: list[SpaceSnapshot]) -> Iterator[Metric]:
        active = GaugeMetricFamily(
            P + "room_active_sessions",
            "In-progress sessions per room (capped).",
            labels=["space", "room"],
        )
        cost = CounterMetricFamily(
            P + "room_cost_dollars",
            "Cost of completed sessions per room (capped).",
            labels=["space", "room"],
        )
        seconds = CounterMetricFamily(
            P + "room_member_seconds",
            "Participant-seconds of completed sessions per room (capped; members.enabled).",
            labels=["space", "room"],
        )
        for s in spaces:
            people = s.totals.people.room_seconds
            rooms = sorted({*s.activity.room_active, *s.totals.room_cost, *people, OTHER_ROOM})
            for room in rooms:
                active.add_metric([s.name, room], s.activity.room_active.get(room, 0))
                cost.add_metric([s.name, room], s.totals.room_cost.get(room, 0.0))
                seconds.add_metric([s.name, room], people.get(room, 0.0))
        yield from (active, cost)
        if self.config.members.enabled:
            yield seconds

    def _bill(self, spaces: list[SpaceSnapshot]) -> Iterator[Metric]:
        """The day and month figures (as of this scrape), the budget and the projection."""
        period = GaugeMetricFamily(
            P + "cost_period_dollars",
            "Cost of the current day or month (billing.timezone) by end time: session cost_in_dollars "
            "(source=sessions) or video log charges (source=charges).",
            labels=["space", "period", "source"],
        )
        complete = GaugeMetricFamily(
            P + "cost_period_complete",
            "1 when cost_period_dollars covers the whole period, 0 when counting began after it began.",
            labels=["space", "period", "source"],
        )
        budget = GaugeMetricFamily(
            P + "budget_dollars", "The space's budget (spaces[].budget).", labels=["space", "period"]
        )
        projected = GaugeMetricFamily(
            P + "cost_month_projected_dollars",
            "Month-to-date cost plus the spend rate of the current day and the six before it (within the "
            "month and the complete figure) times the time left in the month (charges with charges.enabled, "
            "else sessions).",
            labels=["space"],
        )
        now, tz = self.clock(), self.config.billing.timezone
        for s in spaces:
            if s.name in self.budgets:
                budget.add_metric([s.name, "month"], self.budgets[s.name])
            if s.bill is None:
                continue
            ledgers: dict[str, Ledger] = {"sessions": s.bill.sessions}
            if s.bill.charges is not None and self.config.charges.enabled:  # a resumed bill may have them
                ledgers["charges"] = s.bill.charges.ledger
            shown = {source: figures(ledger, now, tz) for source, ledger in ledgers.items()}
            for source in (source for source in COST_SOURCES if source in shown):
                for name in PERIODS:
                    dollars, whole = shown[source].periods[name]
                    period.add_metric([s.name, name, source], dollars)
                    complete.add_metric([s.name, name, source], 1.0 if whole else 0.0)
            projected.add_metric([s.name], shown["charges" if "charges" in shown else "sessions"].projected)
        yield from (period, complete, budget, projected)

    def _charges(self, spaces: list[SpaceSnapshot]) -> Iterator[Metric]:
        """The video logs' charges counted once, and the room sessions they disagree with."""
        dollars = CounterMetricFamily(
            P + "charges_dollars",
            "Charges of completed video logs, by log type and charge description (charges.enabled).",
            labels=["space", "type", "description"],
        )
        logs = CounterMetricFamily(
            P + "charged_logs", "Completed video logs counted, by type.", labels=["space", "type"]
        )
        mismatches = CounterMetricFamily(
            P + "cost_mismatches",
            "Room-session logs whose charge differs from the session's cost_in_dollars by more than "
            "charges.tolerance.",
            labels=["space"],
        )
        mismatch_dollars = CounterMetricFamily(
            P + "cost_mismatch_dollars",
            "Sum of the absolute differences of the mismatches.",
            labels=["space"],
        )
        skipped = CounterMetricFamily(
            P + "logs_skipped",
            "Completed video logs left out of the counters, by reason.",
            labels=["space", "reason"],
        )
        read = GaugeMetricFamily(
            P + "charges_read_timestamp_seconds",
            "Start of the latest finished read of the video logs (before the first: when counting them "
            "began): the charges cover what completed before.",
            labels=["space"],
        )
        for s in spaces:  # at 0 before the first poll; descriptions as they come
            charges = (s.bill.charges if s.bill is not None else None) or EMPTY_CHARGES
            for kind in CHARGE_TYPES:
                logs.add_metric([s.name, kind], charges.logs.get(kind, 0))
                for description, value in sorted(charges.dollars.get(kind, {}).items()):
                    dollars.add_metric([s.name, kind, description], value)
            if charges is not EMPTY_CHARGES:  # a first read that never finishes shows as aging too
                read.add_metric([s.name], charges.since if charges.read is None else charges.read)
            mismatches.add_metric([s.name], charges.mismatches)
            mismatch_dollars.add_metric([s.name], charges.mismatch_dollars)
            for reason in LOG_SKIP_REASONS:
                skipped.add_metric([s.name, reason], charges.skipped.get(reason, 0))
        yield from (dollars, logs, mismatches, mismatch_dollars, skipped, read)

    def _health(self, spaces: list[SpaceSnapshot]) -> Iterator[Metric]:
        up = GaugeMetricFamily(P + "up", "1 if the latest poll of the space succeeded.", labels=["space"])
        success = GaugeMetricFamily(
            P + "last_poll_success_timestamp_seconds",
            "Time of the latest successful poll (0 before the first).",
            labels=["space"],
        )
        duration = GaugeMetricFamily(
            P + "poll_duration_seconds",
            "Wall time of the latest successful poll.",
            labels=["space"],
        )
        requests = CounterMetricFamily(
            P + "api_requests",
            "SignalWire API requests by endpoint and HTTP status (or error).",
            labels=["space", "endpoint", "code"],
        )
        latency = HistogramMetricFamily(
            P + "api_request_duration_seconds",
            "SignalWire API request latency.",
            labels=["space", "endpoint"],
        )
        errors = CounterMetricFamily(P + "poll_errors", "Failed polls by reason.", labels=["space", "reason"])
        deferred = CounterMetricFamily(
            P + "poll_deferred",
            "Work items a poll left to the next one for lack of request budget (poll.max_requests).",
            labels=["space", "work"],
        )
        skipped = CounterMetricFamily(
            P + "sessions_skipped",
            "Session records left out of the counters, by reason.",
            labels=["space", "reason"],
        )
        for s in spaces:
            up.add_metric([s.name], 1.0 if s.up else 0.0)
            success.add_metric([s.name], s.last_success or 0.0)
            if s.poll_duration is not None:
                duration.add_metric([s.name], s.poll_duration)
            for endpoint in ENDPOINTS:
                for code in REQUEST_CODES:
                    requests.add_metric([s.name, endpoint, code], s.requests.counts.get((endpoint, code), 0))
                hist = s.requests.latency.get(endpoint, Histogram.empty(REQUEST_BUCKETS))
                latency.add_metric([s.name, endpoint], _buckets(REQUEST_BUCKETS, hist), hist.total)
            for reason in POLL_ERROR_REASONS:
                errors.add_metric([s.name, reason], s.poll_errors.get(reason, 0))
            for work in DEFERRED_WORK:
                deferred.add_metric([s.name, work], s.deferred.get(work, 0))
            for reason in SKIP_REASONS:
                skipped.add_metric([s.name, reason], s.totals.skipped.get(reason, 0))
        yield from (up, success, duration, requests, latency, errors, deferred, skipped)
