"""Soak: the exporter process against a chaotic simulated space, scraped concurrently.

Runs ``python -m exporter`` (a real process, with a state file) polling a ``FakeSpace`` in
this process that keeps sessions starting and ending and injects faults (429 with and without
Retry-After, 500, 503, a non-JSON 200, connection resets, truncated bodies, bodies dripping in
slower than the poll interval), while scraper threads fetch ``/metrics`` the whole time. At the
end the faults and the traffic stop, the exporter gets clean polls, and its counters are compared
with the simulator's ground truth: every session that ended after the exporter's counting start
(read from its state file). Prints: poll attempts, failed polls by reason, faults injected,
scrapes served and failed, RSS and open file descriptors of the exporter at start, middle and
end, and whether the counters equal the ground truth.

    python bench/soak.py                      # 10,000 polls at 100 ms, about 20 minutes
    python bench/soak.py --polls 2000         # a shorter run

Benchmark only: run by hand, never part of the test suite.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from exporter.snapshot import DEFAULT_DURATION_BUCKETS
from exporter.statefile import StateFile
from tests.support.fake_api import FakeSpace, FaultKind

ROOT = Path(__file__).resolve().parent.parent
PROJECT, TOKEN = "soak-project", "soak-token-0123456789"
FAULTS: tuple[tuple[int, dict[str, str], bytes | None, FaultKind], ...] = (
    (429, {"Retry-After": "0"}, None, "respond"),
    (429, {}, None, "respond"),
    (500, {}, None, "respond"),
    (503, {}, None, "respond"),
    (200, {}, b"<html>maintenance</html>", "respond"),
    (200, {}, None, "reset"),
    (200, {}, None, "truncate"),
    (200, {}, None, "drip"),
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def proc_figures(pid: int) -> tuple[int, int]:
    """(RSS KiB, open file descriptors) of a process."""
    rss = 0
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def total(values: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str) -> float:
    return sum(v for (n, _), v in values.items() if n == name)


class Scrapers:
    """Threads fetching /metrics in a loop until stopped."""

    def __init__(self, url: str, count: int) -> None:
        self.url, self.stop = url, threading.Event()
        self.served = self.failed = 0
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(count)]

    def run(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self.stop.is_set():
                try:
                    ok = client.get(self.url).status_code == 200
                except httpx.HTTPError:
                    ok = False
                with self.lock:
                    self.served += ok
                    self.failed += not ok
                time.sleep(0.005)

    def __enter__(self) -> Scrapers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(10)


def poll_attempts(sim: FakeSpace) -> int:
    """First pages of the in-progress listing requested: one per poll, plus retries of it."""
    return sum(
        1
        for r in list(sim.requests)
        if r.query.get("status") == "in-progress" and "page_token" not in r.query
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--polls", type=int, default=10_000)
    parser.add_argument("--interval", type=float, default=0.1, help="poll interval, seconds")
    parser.add_argument("--lookback", type=float, default=30.0, help="poll.lookback, seconds")
    parser.add_argument("--fault-rate", type=float, default=0.05, help="faults per poll attempt")
    parser.add_argument("--scrapers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    port = free_port()
    print(f"command: {' '.join(sys.argv)}")
    with FakeSpace(PROJECT, TOKEN, seed=args.seed) as sim, tempfile.TemporaryDirectory() as tmp:
        config, state = Path(tmp) / "config.yaml", Path(tmp) / "state.json"
        config.write_text(
            f'server: {{listen_address: "127.0.0.1:{port}"}}\n'
            f"poll: {{interval: {args.interval}, timeout: 2s, lookback: {args.lookback}}}\n"
            f"spaces: [{{name: soak, base_url: '{sim.base_url}', "
            f"project_id: {PROJECT}, api_token: {TOKEN}}}]\n"
            f"state: {{path: '{state}'}}\n"
            "logging: {level: error}\n"
        )
        sim.run_traffic(tick=0.05, target_active=40, mean_duration=20.0)
        proc = subprocess.Popen([sys.executable, "-m", "exporter", "--config", str(config)], cwd=ROOT)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
            figures = [("start", *proc_figures(proc.pid))]
            faults: Counter[str] = Counter()
            with Scrapers(f"{url}/metrics", args.scrapers) as scrapers:
                last_attempts = 0
                while (attempts := poll_attempts(sim)) < args.polls:
                    for _ in range(attempts - last_attempts):
                        if rng.random() < args.fault_rate:
                            status, headers, body, kind = rng.choice(FAULTS)
                            delay = args.interval  # drip: one byte per interval outlives the poll
                            sim.fail_next(status, headers=headers, body=body, kind=kind, delay=delay)
                            faults[kind if kind != "respond" else str(status)] += 1
                    if last_attempts < args.polls // 2 <= attempts:
                        figures.append(("middle", *proc_figures(proc.pid)))
                    last_attempts = attempts
                    time.sleep(0.05)
                figures.append(("end", *proc_figures(proc.pid)))
            sim.stop_traffic()
            sim.clear_faults()
            stored = StateFile(str(state), DEFAULT_DURATION_BUCKETS).load(["soak"])
            counting_start = stored["soak"].counting_start
            result = finish(sim, url, counting_start)
        finally:
            proc.terminate()
            proc.wait(10)
        print(f"poll attempts: {poll_attempts(sim)} (interval {args.interval:g}s)")
        print(f"faults injected: {sum(faults.values())} {dict(sorted(faults.items()))}")
        print(f"failed polls by reason: {result['errors']}")
        print(f"scrapes served: {scrapers.served}, scrape errors: {scrapers.failed}")
        for label, rss, fds in figures:
            print(f"{label:>6}: RSS {rss} KiB, open fds {fds}")
        print(f"ground truth: {result['truth']}; exporter: {result['counted']}; equal: {result['equal']}")
        return 0 if result["equal"] else 1


def finish(sim: FakeSpace, url: str, counting_start: float) -> dict[str, object]:
    """With the chaos stopped, let clean polls pass, compare counters with the ground truth."""
    before = poll_attempts(sim)
    while poll_attempts(sim) < before + 3:
        time.sleep(0.05)
    values = samples(httpx.get(f"{url}/metrics", timeout=10).text)
    completed = [
        s for s in sim.sessions() if s["status"] == "completed" and _epoch(s["end_time"]) > counting_start - 1
    ]
    truth = (len(completed), round(math.fsum(s["cost_in_dollars"] for s in completed), 9))
    counted = (
        int(total(values, "signalwire_video_room_sessions_completed_total")),
        round(total(values, "signalwire_video_room_sessions_cost_dollars_total"), 9),
    )
    errors = {
        dict(labels)["reason"]: int(v)
        for (name, labels), v in values.items()
        if name == "signalwire_video_poll_errors_total" and v
    }
    return {"truth": truth, "counted": counted, "equal": truth == counted, "errors": errors}


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


if __name__ == "__main__":
    sys.exit(main())
