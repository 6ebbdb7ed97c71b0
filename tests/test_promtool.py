"""The real Prometheus linter on the real output: ``promtool check metrics`` must print nothing."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing: .ci/run must install Debian's prometheus package")
        pytest.skip("promtool not installed (apt-get install prometheus)")
    return path


def _check(promtool: str, text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_full_metrics_endpoint_passes_promtool(promtool: str, tmp_path: Path) -> None:
    port = _free_port()
    config = tmp_path / "demo.yaml"
    config.write_text(
        f'server: {{listen_address: "127.0.0.1:{port}"}}\nmetrics: {{rooms: {{enabled: true, max: 5}}}}\n'
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporter", "--demo", "--config", str(config)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline, body = time.monotonic() + 20, ""
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/-/ready", timeout=1).status_code == 200:
                    body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        assert 'signalwire_video_up{space="demo"} 1.0' in body
        assert "signalwire_video_room_active_sessions" in body and "process_resident_memory_bytes" in body
        result = _check(promtool, body)
        assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    finally:
        proc.terminate()
        proc.wait(10)


def test_once_output_passes_promtool(promtool: str) -> None:
    once = subprocess.run(
        [sys.executable, "-m", "exporter", "--demo", "--once"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert once.returncode == 0, once.stderr
    result = _check(promtool, once.stdout)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_promtool_does_catch_bad_metrics(promtool: str) -> None:
    """The check above can fail: promtool does complain about a badly named counter."""
    result = _check(promtool, "# HELP bad_counter x\n# TYPE bad_counter counter\nbad_counter 1\n")
    assert 'counter metrics should have "_total" suffix' in result.stdout + result.stderr
