"""Prometheus exporter for SignalWire Video room sessions."""

from __future__ import annotations

import os
import platform
from functools import cache
from pathlib import Path

__version__ = "0.1.0"

REVISION_ENV = "SIGNALWIRE_VIDEO_EXPORTER_REVISION"  # set by the image build (Dockerfile ARG REVISION)
BUILD_LABELS = ["version", "revision", "python_version"]


@cache
def build_info() -> list[str]:
    """Values of :data:`BUILD_LABELS` for ``signalwire_video_exporter_build_info``."""
    return [__version__, _revision(), platform.python_version()]


def _revision() -> str:
    """The source commit: from the image build, else from the git checkout the package runs
    from (read from ``.git`` directly, no git command), else ``unknown``."""
    if os.environ.get(REVISION_ENV):
        return os.environ[REVISION_ENV]
    git = Path(__file__).resolve().parent.parent / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head  # detached
        ref = head[5:]
        if (git / ref).is_file():
            return (git / ref).read_text().strip()
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split()[0]
    except OSError:
        pass
    return "unknown"
