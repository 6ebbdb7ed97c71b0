"""One API listing in a fresh process: prints its outcome and the memory it took, as JSON.

``python -m tests.support.peak_rss BASE_URL MAX_BODY_BYTES``: lists in-progress sessions with
``exporter.api.MAX_BODY_BYTES`` set as given, then prints ``reason`` (the ApiError's, or null),
``message`` and ``peak_growth``: the process's peak resident set size (VmHWM) after the request
minus its resident set size (VmRSS) before it, in bytes. The address space is limited to
``ADDRESS_SPACE`` so that a body inflating without bound fails here instead of taking the machine.
"""

from __future__ import annotations

import json
import re
import resource
import sys
import time
from pathlib import Path

ADDRESS_SPACE = 2 << 30


def _status(field: str) -> int:
    """A size from /proc/self/status, in bytes."""
    found = re.search(rf"^{field}:\s+(\d+) kB$", Path("/proc/self/status").read_text(), re.MULTILINE)
    assert found, field
    return int(found.group(1)) * 1024


def main(base_url: str, max_body_bytes: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
    from exporter import api
    from exporter.config import PollConfig, SpaceConfig

    api.MAX_BODY_BYTES = max_body_bytes
    client = api.ApiClient(SpaceConfig("bomb", base_url, "p", "t"), PollConfig(timeout=10.0))
    before = _status("VmRSS")
    outcome: dict[str, object] = {"reason": None, "message": ""}
    try:
        list(client.list_sessions("in-progress", time.monotonic() + 10.0))
    except api.ApiError as exc:
        outcome = {"reason": exc.reason, "message": str(exc)}
    except MemoryError:
        outcome = {"reason": "MemoryError", "message": ""}
    print(json.dumps({**outcome, "peak_growth": _status("VmHWM") - before}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
