"""COMPARISON BASELINE for bench/perf.py. NOT part of the exporter; do not deploy it.

This is what a user would write from SignalWire's reference example for "List Room Sessions"
(<https://signalwire.com/docs/apis/video/room-sessions/list-room-sessions>:
``requests.get(url, headers={"Authorization": "Basic ..."})`` and ``response.json()``), grown into
an exporter the plain way:

- the stdlib's ``urllib`` in place of ``requests`` (not installed here): the same pattern, a new
  connection per request and the JSON decoded into dicts;
- the API's default page size (no ``page_size`` parameter) unless ``--page-size`` says otherwise,
  following ``links.next``;
- module-level prometheus_client ``Gauge``s, cleared and set with ``.labels(...).set(...)`` on
  every poll; ``start_http_server``; a ``while True: poll(); sleep(interval)`` loop.

It is plain, not a straw man: it filters by ``status`` (a documented parameter) and stops
reading completed sessions once they were created before its window, so it requests about the
same pages as the exporter, only smaller ones. What it gets wrong is not what the benchmark
measures: completed sessions are a gauge over a sliding window (no counters, so nothing to
``increase()``; a session created before the window that ends inside it is missed; a restart
forgets everything), labels take whatever the API sends, rooms are unbounded, and a scrape
during a poll sees half-cleared gauges. Two gauges about its own polls exist only so that the
benchmark can see when it polls.

    python bench/naive_exporter.py --base-url http://127.0.0.1:8080 --project-id P --api-token T
"""

from __future__ import annotations

import argparse
import base64
import json
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from prometheus_client import Gauge, start_http_server

LABELS = ["quality", "fps"]
ACTIVE = Gauge("signalwire_active_sessions", "In-progress room sessions", LABELS)
MEMBERS = Gauge("signalwire_active_max_members", "Sum of max_members of in-progress sessions", LABELS)
OLDEST = Gauge("signalwire_oldest_session_start", "Start time of the oldest in-progress session")
COMPLETED = Gauge("signalwire_completed_sessions_window", "Sessions completed within the window", LABELS)
COST = Gauge("signalwire_cost_dollars_window", "Cost of sessions completed within the window", LABELS)
ROOM_ACTIVE = Gauge("signalwire_room_active_sessions", "In-progress sessions per room", ["room"])
ROOM_COST = Gauge("signalwire_room_cost_dollars_window", "Cost per room within the window", ["room"])
POLL_START = Gauge("naive_poll_start_timestamp_seconds", "Start of the latest poll (for the benchmark)")
POLL_DURATION = Gauge("naive_poll_duration_seconds", "Wall time of the latest poll (for the benchmark)")


def timestamp(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def room_sessions(base_url: str, auth: str, **params: str) -> Iterator[dict[str, Any]]:
    """Every session of the listing, page by page."""
    url: str | None = f"{base_url}/api/video/room_sessions?{urlencode(params)}"
    while url:
        request = urllib.request.Request(url, headers={"Authorization": auth})
        with urllib.request.urlopen(request, timeout=30) as response:
            page = json.load(response)
        yield from page["data"]
        url = page["links"].get("next")


def poll(
    base_url: str,
    auth: str,
    window: float,
    rooms: bool,
    now: float | None = None,
    page_size: int | None = None,
) -> None:
    """Read the sessions and set every gauge; ``now`` defaults to the time (the benchmark sets it).

    ``page_size`` None sends none: the API's default.
    """
    started = time.time()
    now = started if now is None else now
    paging = {} if page_size is None else {"page_size": str(page_size)}
    active = list(room_sessions(base_url, auth, status="in-progress", **paging))
    completed = []
    for session in room_sessions(base_url, auth, status="completed", **paging):
        if timestamp(session["created_at"]) < now - window:
            break
        if session["end_time"] and timestamp(session["end_time"]) >= now - window:
            completed.append(session)

    active_count: Counter[tuple[str, str]] = Counter()
    members: Counter[tuple[str, str]] = Counter()
    room_active: Counter[str] = Counter()
    for session in active:
        labels = (str(session["quality"]), str(session["fps"]))
        active_count[labels] += 1
        members[labels] += session["max_members"] or 0
        room_active[str(session["name"])] += 1
    completed_count: Counter[tuple[str, str]] = Counter()
    cost: dict[tuple[str, str], float] = {}
    room_cost: dict[str, float] = {}
    for session in completed:
        labels = (str(session["quality"]), str(session["fps"]))
        completed_count[labels] += 1
        room, dollars = str(session["name"]), session["cost_in_dollars"]
        cost[labels] = cost.get(labels, 0.0) + dollars
        room_cost[room] = room_cost.get(room, 0.0) + dollars

    for gauge in (ACTIVE, MEMBERS, COMPLETED, COST, ROOM_ACTIVE, ROOM_COST):
        gauge.clear()
    for labels, value in active_count.items():
        ACTIVE.labels(*labels).set(value)
        MEMBERS.labels(*labels).set(members[labels])
    for labels, value in completed_count.items():
        COMPLETED.labels(*labels).set(value)
        COST.labels(*labels).set(cost[labels])
    if rooms:
        for room, value in room_active.items():
            ROOM_ACTIVE.labels(room).set(value)
        for room, dollars in room_cost.items():
            ROOM_COST.labels(room).set(dollars)
    if active:
        OLDEST.set(min(timestamp(s["start_time"]) for s in active))
    POLL_START.set(started)
    POLL_DURATION.set(time.time() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description="naive SignalWire Video exporter (benchmark baseline)")
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--project-id", required=True)
    parser.add_argument("--api-token", required=True)
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--interval", type=float, default=30.0, help="seconds to sleep between polls")
    parser.add_argument("--window", type=float, default=300.0, help="seconds of completed sessions")
    parser.add_argument("--rooms", action="store_true", help="also per-room gauges")
    parser.add_argument("--page-size", type=int, help="sessions per page (default: the API's)")
    args = parser.parse_args()
    auth = "Basic " + base64.b64encode(f"{args.project_id}:{args.api_token}".encode()).decode()
    start_http_server(args.port, addr="127.0.0.1")
    while True:
        poll(args.base_url, auth, args.window, args.rooms, page_size=args.page_size)
        time.sleep(args.interval)


if __name__ == "__main__":
    main()
