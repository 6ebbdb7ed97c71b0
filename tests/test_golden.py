"""Golden test: fixed API JSON in (sessions, the members and recordings of some, video logs), the
whole exposition out, compared byte for byte.

The body is rendered by the same code as ``--once`` and ``/metrics`` (``build_exposition``).
Only the values of the timing series (request latency, poll duration) and the build's revision
and Python version vary between runs; they are replaced by ``<timing>`` and ``<build>``.
Regenerate after an intended change with ``UPDATE_GOLDEN=1 python -m pytest tests/test_golden.py``
and review the diff.
"""

from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from exporter.cli import build_exposition
from exporter.config import BillingConfig, ChargesConfig, Config, MembersConfig, RecordingsConfig
from exporter.poller import SpacePoller
from exporter.snapshot import Snapshots

from .conftest import PROJECT, TOKEN, poll_config, space_config
from .support.fake_api import FakeSpace

GOLDEN = Path(__file__).parent / "golden"
T0 = 1_795_000_000.0
BUILD = re.compile(r'((?:python_version|revision)=)"[^"]*"')
TIMING = re.compile(
    r"^(signalwire_video_(?:api_request_duration_seconds_sum|poll_duration_seconds)\{[^}]*\}) .*$", re.M
)


def _created(record: dict[str, object]) -> float:
    try:
        return datetime.fromisoformat(str(record["created_at"])).timestamp()
    except ValueError:
        return T0


def render() -> str:
    fixture = json.loads((GOLDEN / "api_sessions.json").read_text(encoding="utf-8"))
    people = json.loads((GOLDEN / "api_people.json").read_text(encoding="utf-8"))
    logs = json.loads((GOLDEN / "api_logs.json").read_text(encoding="utf-8"))["logs"]
    now = [T0]
    with FakeSpace(PROJECT, TOKEN, clock=lambda: now[0]) as sim:
        for record in fixture["in-progress"]:
            sim.add_raw_record(record, status="in-progress", created_at=_created(record))
        for record in logs:
            sim.add_raw_log(record, created_at=_created(record))
        config = Config(
            spaces=(replace(space_config(sim, name="golden"), budget_monthly=250.0),),
            poll=poll_config(),
            rooms_enabled=True,
            rooms_max=3,
            members=MembersConfig(enabled=True, live=True),
            recordings=RecordingsConfig(enabled=True),
            charges=ChargesConfig(enabled=True, descriptions_max=2),
            billing=BillingConfig(timezone="America/New_York"),
        )
        snapshots = Snapshots(["golden"])
        poller = SpacePoller(config.spaces[0], config, snapshots, threading.Event(), clock=lambda: now[0])
        assert poller.poll_once()
        now[0] = T0 + 60
        for record in fixture["completed"]:
            sim.add_raw_record(record, status="completed", created_at=_created(record))
        for kind, add in (("members", sim.add_raw_member), ("recordings", sim.add_raw_recording)):
            for session_id, records in people[kind].items():
                for record in records:
                    add(session_id, record, listed_at=T0)
        assert poller.poll_once()
        poller.client.close()
    text = build_exposition(snapshots, config, clock=lambda: now[0]).render(None)[0].decode()
    text = BUILD.sub(r'\1"<build>"', text)
    text = re.sub(r"(signalwire_video_api_request_duration_seconds_bucket\{[^}]*\}) .*", r"\1 <timing>", text)
    return TIMING.sub(r"\1 <timing>", text)


def test_metrics_output_matches_golden_file() -> None:
    text = render()
    golden = GOLDEN / "metrics.txt"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text, encoding="utf-8")
    assert text == golden.read_text(encoding="utf-8")
