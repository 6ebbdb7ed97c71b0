"""Shared fixtures: a simulated SignalWire space on 127.0.0.1 and clients pointed at it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter.config import PollConfig, SpaceConfig

from .support.fake_api import FakeSpace

PROJECT, TOKEN = "project-1", "tok-test-5ecret"


def page(*records: object, next_link: str | None = None) -> bytes:
    """A list endpoint's JSON page of ``records``, with ``links.next`` when given."""
    links: dict[str, str] = {"self": "/x", "first": "/x"}
    if next_link:
        links["next"] = next_link
    return json.dumps({"links": links, "data": list(records)}).encode()


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
        max_requests=int(settings.get("max_requests", 500)),
    )


def deadline(seconds: float = 10.0) -> float:
    return time.monotonic() + seconds


class RequestLog:
    """An API client's request observer that counts requests by (endpoint, status or "error")."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}

    def __call__(self, endpoint: str, status: int | None, seconds: float) -> None:
        key = (endpoint, "error" if status is None else str(status))
        self.counts[key] = self.counts.get(key, 0) + 1


def unavailable(message: str) -> None:
    """A tool a test needs is missing: skip, but fail where ``CI`` is set (CI must have it)."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def helm() -> str:
    """A Helm binary: on the PATH, else installed by scripts/install-helm."""
    found = shutil.which("helm")
    if found:
        return found
    installer = Path(__file__).resolve().parents[1] / "scripts" / "install-helm"
    proc = subprocess.run([str(installer)], capture_output=True, text=True, timeout=600, check=False)
    if proc.returncode != 0:
        unavailable(f"helm is not installed and scripts/install-helm failed: {proc.stderr.strip()[-500:]}")
    return proc.stdout.strip().splitlines()[-1]
