"""Shared fixtures: a simulated SignalWire space on 127.0.0.1 and clients pointed at it."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from exporter.config import PollConfig, SpaceConfig

from .support.fake_api import FakeSpace

PROJECT, TOKEN = "project-1", "tok-test-5ecret"


@pytest.fixture
def sim() -> Iterator[FakeSpace]:
    with FakeSpace(PROJECT, TOKEN) as space:
        yield space


def space_config(sim: FakeSpace, name: str = "test", token: str = TOKEN, **filters: str) -> SpaceConfig:
    from exporter.config import Filters

    return SpaceConfig(name, sim.base_url, PROJECT, token, Filters(**filters))


def poll_config(**overrides: float) -> PollConfig:
    settings: dict[str, float] = {"interval": 10.0, "timeout": 2.0, "lookback": 3600.0, "page_size": 1000}
    settings.update(overrides)
    return PollConfig(
        interval=settings["interval"],
        timeout=settings["timeout"],
        lookback=settings["lookback"],
        page_size=int(settings["page_size"]),
        max_pages=int(settings.get("max_pages", 1000)),
    )


def deadline(seconds: float = 10.0) -> float:
    return time.monotonic() + seconds
