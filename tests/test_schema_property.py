"""Property: any list response valid under the OpenAPI schema is decoded, counted and exposed
without an exception, and never yields a negative, NaN or infinite counter."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis_jsonschema import from_schema
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter.collector import SessionCollector
from exporter.config import Config
from exporter.models import COMPLETED, IN_PROGRESS, decode_page
from exporter.snapshot import DEFAULT_DURATION_BUCKETS, Snapshots, SpaceSnapshot
from exporter.state import Accounting, Observation, Settings, apply, summarize

SPEC = yaml.safe_load((Path(__file__).parent / "api" / "room_sessions.openapi.yaml").read_text())
COMPONENTS = SPEC["components"]["schemas"]


def inline_refs(node: Any) -> Any:
    """The schema with every ``#/components/schemas/...`` reference replaced by its target."""
    if isinstance(node, dict):
        if "$ref" in node:
            target = inline_refs(COMPONENTS[node["$ref"].rsplit("/", 1)[1]])
            return {**target, **inline_refs({k: v for k, v in node.items() if k != "$ref"})}
        return {k: inline_refs(v) for k, v in node.items()}
    if isinstance(node, list):
        return [inline_refs(v) for v in node]
    return node


LIST_RESPONSE = inline_refs(COMPONENTS["Video.ListRoomSessionsResponse"])
SETTINGS = Settings(lookback=3600.0, buckets=DEFAULT_DURATION_BUCKETS, rooms_enabled=True, rooms_max=3)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(from_schema(LIST_RESPONSE), from_schema(LIST_RESPONSE))
def test_any_spec_valid_response_is_accepted(in_progress: dict[str, Any], completed: dict[str, Any]) -> None:
    active, next_a, bad_a = decode_page(json.dumps(in_progress).encode())
    done, next_b, bad_b = decode_page(json.dumps(completed).encode())
    assert len(active) + len(bad_a) == len(in_progress["data"])
    assert len(done) + len(bad_b) == len(completed["data"])
    assert next_a == in_progress["links"].get("next") and next_b == completed["links"].get("next")

    accounting = Accounting(counting_start=-1e12)  # count everything the examples hold
    observation = Observation(
        started=0.0,
        in_progress=summarize(active, SETTINGS.rooms_enabled),
        completed=done,
        malformed=[(i, IN_PROGRESS) for i in bad_a] + [(i, COMPLETED) for i in bad_b],
    )
    accounting, activity = apply(accounting, observation, SETTINGS)
    snapshots = Snapshots(["s"])
    snapshots.publish(SpaceSnapshot("s", polled=True, up=True, activity=activity, totals=accounting.totals))
    registry = CollectorRegistry()
    registry.register(SessionCollector(snapshots, Config(spaces=(), rooms_enabled=True)))
    text = generate_latest(registry).decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            assert math.isfinite(sample.value), sample
            if family.type in ("counter", "histogram"):
                assert sample.value >= 0, sample
