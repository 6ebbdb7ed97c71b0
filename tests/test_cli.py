"""The command line end to end: real exporter processes, real HTTP on 127.0.0.1.

Every test starts ``python -m exporter`` as a subprocess against an in-process
:class:`FakeSpace` (or nothing at all), talks to it over HTTP with httpx and stops it
with a signal. Processes are always killed in ``finally`` blocks and every wait is bounded.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from .support.fake_api import FakeSpace

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "project-cli"
TOKEN = "tok-SECRET-9f8e7d"
WRONG_TOKEN = "tok-WRONG-1a2b3c"
OPENMETRICS = "application/openmetrics-text; version=1.0.0"
STARTUP = 15.0  # seconds an exporter gets to come up / reach a state before a test fails
SHUTDOWN_LIMIT = 5.0  # the requirement: exit within 5 s after SIGTERM or SIGINT


# --- helpers ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """The current environment without any SIGNALWIRE_* variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNALWIRE_")}
    env.update(extra)
    return env


def write_config(
    tmp_path: Path,
    base_url: str,
    *,
    port: int | None = None,
    token: str = TOKEN,
    interval: str = "500ms",
    timeout: str = "5s",
    name: str = "x",
    page_size: int = 1000,
    logging_format: str = "text",
    file_name: str = "config.yaml",
) -> Path:
    doc = {
        "server": {"listen_address": f"127.0.0.1:{port or free_port()}"},
        "poll": {"interval": interval, "timeout": timeout, "page_size": page_size},
        "spaces": [{"name": name, "base_url": base_url, "project_id": PROJECT, "api_token": token}],
        "logging": {"format": logging_format},
    }
    path = tmp_path / file_name
    path.write_text(yaml.safe_dump(doc))
    return path


def run_cli(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 30.0
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        cwd=ROOT,
        env=clean_env() if env is None else dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def samples(body: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus text exposition, keyed by (name, labels)."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


def total(body: str, name: str, space: str) -> float:
    return sum(v for (n, labels), v in samples(body).items() if n == name and ("space", space) in labels)


class Exporter:
    """A running ``python -m exporter`` serving on 127.0.0.1:``port``; output goes to files."""

    def __init__(self, tmp_path: Path, port: int, *args: str, env: Mapping[str, str] | None = None) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._out_path, self._err_path = tmp_path / "exporter.out", tmp_path / "exporter.err"
        with self._out_path.open("wb") as out, self._err_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "exporter", *args],
                cwd=ROOT,
                env=clean_env() if env is None else dict(env),
                stdout=out,
                stderr=err,
            )

    @property
    def stdout(self) -> str:
        return self._out_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self._err_path.read_text(errors="replace")

    def wait_until(self, check: Callable[[], bool], what: str, seconds: float = STARTUP) -> None:
        """Retry ``check`` (connection errors count as False) until it is True or time runs out."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"exporter exited ({self.proc.returncode}) waiting for {what}:\n{self.stderr}")
            try:
                if check():
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        pytest.fail(f"timed out after {seconds}s waiting for {what}:\n{self.stderr}")

    def get(self, path: str, **headers: str) -> httpx.Response:
        return httpx.get(self.url + path, headers=headers, timeout=5.0)

    def wait_healthy(self) -> None:
        self.wait_until(lambda: self.get("/-/healthy").status_code == 200, "/-/healthy")

    def wait_ready(self) -> None:
        self.wait_until(lambda: self.get("/-/ready").status_code == 200, "/-/ready")

    def signal_and_wait(self, signum: int, limit: float = SHUTDOWN_LIMIT) -> tuple[int | None, float]:
        """Send ``signum``; the exit code (None if still running after ``limit``) and time taken."""
        started = time.monotonic()
        self.proc.send_signal(signum)
        try:
            code: int | None = self.proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            code = None
        return code, time.monotonic() - started

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


@contextmanager
def running_exporter(
    tmp_path: Path, port: int, *args: str, env: Mapping[str, str] | None = None
) -> Iterator[Exporter]:
    proc = Exporter(tmp_path, port, *args, env=env)
    try:
        yield proc
    finally:
        proc.kill()


@contextmanager
def stalling_api() -> Iterator[str]:
    """An HTTP origin on 127.0.0.1 that accepts connections and never answers: a hung poll."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            accepted.append(conn)

    thread = threading.Thread(target=accept, name="stalling-api", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        # shutdown() wakes the blocked accept(); close() alone does not on Linux.
        with suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        thread.join(timeout=5)
        for conn in accepted:
            conn.close()


def assert_no_traceback(text: str) -> None:
    assert "Traceback" not in text, text


# --- 1 and 2: the HTTP endpoints of a running exporter ----------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Exporter, FakeSpace]]:
    """One exporter polling a simulated space with two 720p/30fps sessions in progress."""
    tmp_path = tmp_path_factory.mktemp("served")
    with FakeSpace(PROJECT, TOKEN) as sim:
        sim.add_session(name="standup", quality="720p", fps="30")
        sim.add_session(name="sales", quality="720p", fps="30")
        port = free_port()
        config = write_config(tmp_path, sim.base_url, port=port)
        with running_exporter(tmp_path, port, "--config", str(config)) as proc:
            proc.wait_ready()
            yield proc, sim


def test_metrics_reports_up_and_active_sessions_after_a_poll(served: tuple[Exporter, FakeSpace]) -> None:
    proc, sim = served
    response = proc.get("/metrics", **{"Accept-Encoding": "identity"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    body = response.text
    assert 'signalwire_video_up{space="x"} 1.0\n' in body
    active = samples(body)
    key = frozenset({"space": "x", "quality": "720p", "fps": "30"}.items())
    assert active["signalwire_video_room_sessions_active", key] == 2.0
    assert total(body, "signalwire_video_room_sessions_active", "x") == 2.0
    assert any(r.path == "/api/video/room_sessions" for r in sim.requests)

    # Later polls pick up changes: one more (1080p/20fps) session shows up within a few polls.
    sim.add_session(name="design", quality="1080p", fps="20")

    def three_active() -> bool:
        return total(proc.get("/metrics").text, "signalwire_video_room_sessions_active", "x") == 3.0

    proc.wait_until(three_active, "a third active session")
    later = samples(proc.get("/metrics").text)
    assert later["signalwire_video_room_sessions_active", key] == 2.0
    hd = frozenset({"space": "x", "quality": "1080p", "fps": "20"}.items())
    assert later["signalwire_video_room_sessions_active", hd] == 1.0


def test_landing_page_probes_and_unknown_paths(served: tuple[Exporter, FakeSpace]) -> None:
    proc, _ = served
    landing = proc.get("/")
    assert landing.status_code == 200
    assert landing.headers["content-type"].startswith("text/html")
    assert '<a href="metrics">' in landing.text
    healthy = proc.get("/-/healthy")
    assert healthy.status_code == 200
    ready = proc.get("/-/ready")
    assert ready.status_code == 200
    for path in ("/nope", "/metrics/extra", "/-/unknown"):
        assert proc.get(path).status_code == 404, path


def test_metrics_content_negotiation_openmetrics(served: tuple[Exporter, FakeSpace]) -> None:
    proc, _ = served
    response = proc.get("/metrics", Accept=OPENMETRICS)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")
    assert 'signalwire_video_up{space="x"} 1.0\n' in response.text
    plain = proc.get("/metrics")  # without the Accept header: the classic text format
    assert plain.headers["content-type"].startswith("text/plain")
    assert "# EOF" not in plain.text


def test_metrics_gzip_when_accepted(served: tuple[Exporter, FakeSpace]) -> None:
    proc, _ = served
    with (
        httpx.Client(timeout=5.0) as client,
        client.stream("GET", proc.url + "/metrics", headers={"Accept-Encoding": "gzip"}) as response,
    ):
        raw = b"".join(response.iter_raw())
        assert response.status_code == 200
        assert response.headers.get("content-encoding") == "gzip"
    assert raw[:2] == b"\x1f\x8b"  # the gzip magic number: really compressed on the wire
    body = gzip.decompress(raw).decode()
    assert 'signalwire_video_up{space="x"} 1.0\n' in body
    identity = proc.get("/metrics", **{"Accept-Encoding": "identity"})
    assert "content-encoding" not in identity.headers
    assert 'signalwire_video_up{space="x"} 1.0\n' in identity.text


# --- 3: shutdown on SIGTERM / SIGINT while polls fail or hang ----------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_exits_zero_during_retry_backoff(tmp_path: Path, signum: int) -> None:
    with FakeSpace(PROJECT, TOKEN) as sim:
        sim.fail_next(500, times=1000)
        port = free_port()
        # A long interval: the first poll keeps retrying (with growing backoff) for a minute.
        config = write_config(tmp_path, sim.base_url, port=port, interval="60s")
        with running_exporter(tmp_path, port, "--config", str(config)) as proc:
            proc.wait_healthy()
            proc.wait_until(lambda: len(sim.requests) >= 2, "a retried request")
            assert proc.get("/-/ready").status_code == 503  # the first poll has not finished
            metrics = proc.get("/metrics")  # scrapes never wait for a poll
            assert 'signalwire_video_up{space="x"} 0.0\n' in metrics.text
            code, elapsed = proc.signal_and_wait(signum)
            assert code == 0, f"exit code {code} after {elapsed:.1f}s:\n{proc.stderr}"
            assert_no_traceback(proc.stderr)
            assert f"received {signal.Signals(signum).name}" in proc.stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_exits_zero_while_a_request_hangs(tmp_path: Path, signum: int) -> None:
    with stalling_api() as base_url:
        port = free_port()
        config = write_config(tmp_path, base_url, port=port, interval="60s", timeout="60s")
        with running_exporter(tmp_path, port, "--config", str(config)) as proc:
            proc.wait_healthy()
            assert proc.get("/-/ready").status_code == 503
            code, elapsed = proc.signal_and_wait(signum)
            assert code == 0, f"exit code {code} after {elapsed:.1f}s:\n{proc.stderr}"
            assert_no_traceback(proc.stderr)


# --- 4: the API token never appears anywhere ---------------------------------------------------


def _leaks(secret: str) -> tuple[str, ...]:
    """The secret itself and the Basic-auth credentials that embed it."""
    return secret, base64.b64encode(f"{PROJECT}:{secret}".encode()).decode()


def test_token_never_in_logs_or_metrics_of_the_server(tmp_path: Path) -> None:
    with FakeSpace(PROJECT, TOKEN) as sim:
        sim.fail_next(401, times=2)  # unauthorized for two polls, then the token works
        port = free_port()
        config = write_config(tmp_path, sim.base_url, port=port)
        bodies: list[str] = []
        with running_exporter(tmp_path, port, "--config", str(config), "--log-level", "debug") as proc:

            def recovered() -> bool:
                text = proc.get("/metrics").text
                bodies.append(text)
                bodies.append(proc.get("/metrics", Accept=OPENMETRICS).text)
                key = frozenset({"space": "x", "reason": "unauthorized"}.items())
                errors = samples(text).get(("signalwire_video_poll_errors_total", key), 0.0)
                return 'signalwire_video_up{space="x"} 1.0\n' in text and errors == 2.0

            proc.wait_until(recovered, "two unauthorized polls, then a good one")
            code, _ = proc.signal_and_wait(signal.SIGTERM)
            assert code == 0, proc.stderr
            stdout, stderr = proc.stdout, proc.stderr
    assert "unauthorized" in stderr  # the failures were logged...
    assert "poll done" in stderr  # ...and debug logging was on
    for secret in _leaks(TOKEN):
        assert secret not in stdout
        assert secret not in stderr
        for body in bodies:
            assert secret not in body


def test_token_never_in_check_config_or_once_output(tmp_path: Path) -> None:
    with FakeSpace(PROJECT, TOKEN) as sim:
        good = write_config(tmp_path, sim.base_url, file_name="good.yaml")
        bad = write_config(tmp_path, sim.base_url, token=WRONG_TOKEN, file_name="bad.yaml")
        runs = {
            "check-config": (run_cli("--check-config", "--config", str(good)), TOKEN),
            "once": (run_cli("--once", "--log-level", "debug", "--config", str(good)), TOKEN),
            "once-unauthorized": (
                run_cli("--once", "--log-level", "debug", "--config", str(bad)),
                WRONG_TOKEN,
            ),
        }
    assert [result.returncode for result, _ in runs.values()] == [0, 0, 1]
    for what, (result, token) in runs.items():
        for secret in _leaks(token):
            assert secret not in result.stdout, what
            assert secret not in result.stderr, what


# --- 5: --once ---------------------------------------------------------------------------------


def test_once_prints_metrics_and_exits_zero(tmp_path: Path) -> None:
    with FakeSpace(PROJECT, TOKEN) as sim:
        sim.add_session(name="standup", quality="720p", fps="30")
        config = write_config(tmp_path, sim.base_url)
        result = run_cli("--once", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert 'signalwire_video_up{space="x"} 1.0\n' in result.stdout
    assert total(result.stdout, "signalwire_video_room_sessions_active", "x") == 1.0
    assert_no_traceback(result.stderr)


def test_once_with_wrong_token_exits_one_and_reports_unauthorized(tmp_path: Path) -> None:
    with FakeSpace(PROJECT, TOKEN) as sim:
        config = write_config(tmp_path, sim.base_url, token=WRONG_TOKEN)
        result = run_cli("--once", "--config", str(config))
        assert sim.requests, "the exporter never asked the API"
        assert sim.requests[0].headers["authorization"] != "Basic " + _leaks(TOKEN)[1]
    assert result.returncode == 1, result.stderr
    assert 'signalwire_video_up{space="x"} 0.0\n' in result.stdout
    assert 'signalwire_video_poll_errors_total{reason="unauthorized",space="x"} 1.0\n' in result.stdout
    assert_no_traceback(result.stderr)


# --- 6: configuration from the environment -----------------------------------------------------


def test_environment_config_without_config_file() -> None:
    env = clean_env(
        SIGNALWIRE_SPACE="acme",
        SIGNALWIRE_PROJECT_ID="pid-123",
        SIGNALWIRE_API_TOKEN=TOKEN,
    )
    result = run_cli("--check-config", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "config OK: 1 space(s): acme"
    assert TOKEN not in result.stdout + result.stderr


def test_environment_token_file(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    env = clean_env(
        SIGNALWIRE_SPACE="acme",
        SIGNALWIRE_PROJECT_ID="pid-123",
        SIGNALWIRE_API_TOKEN_FILE=str(token_file),
    )
    result = run_cli("--check-config", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "config OK: 1 space(s): acme"


@pytest.mark.parametrize(
    ("present", "missing"),
    [
        ({}, ["SIGNALWIRE_SPACE", "SIGNALWIRE_PROJECT_ID", "SIGNALWIRE_API_TOKEN"]),
        ({"SIGNALWIRE_SPACE": "acme", "SIGNALWIRE_API_TOKEN": TOKEN}, ["SIGNALWIRE_PROJECT_ID"]),
        ({"SIGNALWIRE_SPACE": "acme", "SIGNALWIRE_PROJECT_ID": "pid"}, ["SIGNALWIRE_API_TOKEN"]),
    ],
    ids=["none", "no-project", "no-token"],
)
def test_missing_environment_exits_two_naming_the_variables(
    present: dict[str, str], missing: list[str]
) -> None:
    for args in (["--check-config"], []):  # validating only, and starting the server
        result = run_cli(*args, env=clean_env(**present))
        assert result.returncode == 2, (args, result.stderr)
        assert_no_traceback(result.stderr)
        for name in missing:
            assert name in result.stderr, (args, result.stderr)
        for name in present:
            assert f"{name}:" not in result.stderr, (args, result.stderr)
        assert result.stdout == ""


def test_check_config_warns_that_charges_ignore_room_filters(tmp_path: Path) -> None:
    doc = {
        "spaces": [
            {"name": "all", "space": "acme", "project_id": PROJECT, "api_token": TOKEN},
            {"name": "qa", "space": "acme", "project_id": PROJECT, "api_token": TOKEN},
        ],
    }
    doc["spaces"][1]["filters"] = {"room_name_matches": "qa-"}
    path = tmp_path / "config.yaml"
    warning = (
        "config warning: spaces[1] (qa): the video logs cannot be filtered by room, so its charges "
        "(and their figures and budget alerts) cover every room of the project, not only its filters'\n"
    )
    for charges, stderr in ((False, ""), (True, warning)):
        path.write_text(yaml.safe_dump({**doc, "charges": {"enabled": charges}}))
        path.chmod(0o600)  # holds the token: no warning about that
        result = run_cli("--check-config", "--config", str(path))
        assert (result.returncode, result.stdout, result.stderr) == (
            0,
            "config OK: 2 space(s): all, qa\n",
            stderr,
        )


def test_an_unusable_proxy_exits_two_naming_it_without_its_password(tmp_path: Path) -> None:
    env = clean_env(SIGNALWIRE_SPACE="acme", SIGNALWIRE_PROJECT_ID="pid-123", SIGNALWIRE_API_TOKEN=TOKEN)
    for name in ("https_proxy", "all_proxy", "no_proxy"):
        env.pop(name, None)
        env.pop(name.upper(), None)
    unsupported = (
        "is a 'socks5' proxy: only http:// and https:// proxies are supported (unset it, or add the "
        "host to NO_PROXY)"
    )
    invalid = (
        "is not a valid proxy URL: expected http(s)://[user:password@]host[:port] (special characters "
        "in the user or password percent-encoded)"
    )
    for value, problem in [
        ("socks5://proxy-user:proxy-secret@proxy.example:1080", unsupported),
        ("http://proxy-user:proxy/secret@proxy.example:1080", invalid),  # httpx: "Invalid port: 'proxy'"
        ("http://proxy.example:99999", invalid),
    ]:
        env["HTTPS_PROXY"] = value
        for args in (["--check-config"], ["--once"]):
            result = run_cli(*args, env=env)
            assert (result.returncode, result.stdout) == (2, ""), (args, result.stderr)
            assert result.stderr == (
                f"config error: spaces[0]: HTTPS_PROXY for https://acme.signalwire.com {problem}\n"
            )
            assert "proxy-user" not in result.stderr and "proxy.example" not in result.stderr
        # the demo polls its own space (never proxied) instead of the configured one
        config = write_config(tmp_path, "https://acme.signalwire.com")
        assert run_cli("--demo", "--check-config", "--config", str(config), env=env).returncode == 0
    env["NO_PROXY"] = "acme.signalwire.com"
    assert run_cli("--check-config", env=env).returncode == 0


# --- 7: demo mode ------------------------------------------------------------------------------


def test_demo_once_reports_active_and_completed_sessions() -> None:
    """One poll of the demo already moves every family: a few sessions end as its traffic starts."""
    result = run_cli("--demo", "--once")
    assert result.returncode == 0, result.stderr
    assert 'signalwire_video_up{space="demo"} 1.0\n' in result.stdout
    assert total(result.stdout, "signalwire_video_room_sessions_active", "demo") > 0
    assert total(result.stdout, "signalwire_video_room_sessions_completed_total", "demo") > 0
    assert total(result.stdout, "signalwire_video_room_sessions_cost_dollars_total", "demo") > 0
    assert total(result.stdout, "signalwire_video_room_session_duration_seconds_count", "demo") > 0
    assert_no_traceback(result.stderr)


# --- 8: port already in use --------------------------------------------------------------------


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_port_in_use_exits_one_with_a_clear_message(tmp_path: Path, log_format: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        port = int(blocker.getsockname()[1])
        config = write_config(tmp_path, "http://127.0.0.1:9", port=port, logging_format=log_format)
        result = run_cli("--config", str(config), timeout=20)
    assert result.returncode == 1, result.stderr
    assert_no_traceback(result.stderr)
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "in use" in result.stderr.lower()
    if log_format == "json":
        lines = result.stderr.splitlines()
        assert lines
        assert all(json.loads(line)["level"] == "error" for line in lines), result.stderr


# --- 9: JSON logs ------------------------------------------------------------------------------


def test_json_logging_every_stderr_line_is_an_object(tmp_path: Path) -> None:
    with FakeSpace(PROJECT, TOKEN) as sim:
        sim.fail_next(500, times=1)  # a retry (info) or failed poll (warning) gets logged
        sim.add_session(name="standup")
        port = free_port()
        config = write_config(tmp_path, sim.base_url, port=port, interval="1s", logging_format="json")
        with running_exporter(tmp_path, port, "--config", str(config), "--log-level", "debug") as proc:
            proc.wait_until(
                lambda: 'signalwire_video_up{space="x"} 1.0\n' in proc.get("/metrics").text,
                "a successful poll",
            )
            code, _ = proc.signal_and_wait(signal.SIGTERM)
            assert code == 0, proc.stderr
            stderr = proc.stderr
    lines = stderr.splitlines()
    assert len(lines) >= 3, stderr
    docs: list[dict[str, Any]] = []
    for line in lines:
        doc = json.loads(line)
        assert isinstance(doc, dict), line
        assert isinstance(doc.get("level"), str) and isinstance(doc.get("message"), str), line
        docs.append(doc)
    messages = [d["message"] for d in docs]
    assert any("received SIGTERM" in m for m in messages), messages
    assert any("HTTP 500" in m for m in messages), messages
    assert {d["level"] for d in docs} <= {"debug", "info", "warning", "error"}
    assert "debug" in {d["level"] for d in docs}


# --- robustness: an unexpected error in one poll -----------------------------------------------


def _bad_first_next_link(sim: FakeSpace, bad: Callable[[str], str]) -> None:
    """Serve one ``links.next`` rewritten by ``bad``, then the real links."""
    served: list[str] = []

    def hook(link: str) -> str:
        served.append(link)
        return bad(link) if len(served) == 1 else link

    sim.next_link_hook = hook


def test_once_exits_one_when_a_poll_fails_unexpectedly(tmp_path: Path) -> None:
    with FakeSpace(PROJECT, TOKEN) as sim:
        for i in range(3):
            sim.add_session(name=f"room-{i}")
        _bad_first_next_link(sim, lambda link: link + "&x=\x00")
        config = write_config(tmp_path, sim.base_url, page_size=1)
        result = run_cli("--once", "--config", str(config))
    assert 'signalwire_video_up{space="x"} 0.0\n' in result.stdout
    assert result.returncode == 1, "a space failed, yet --once reported success"
    assert_no_traceback(result.stderr)


def test_server_keeps_polling_after_an_unexpected_poll_error(tmp_path: Path) -> None:
    with FakeSpace(PROJECT, TOKEN) as sim:
        for i in range(3):
            sim.add_session(name=f"room-{i}")
        _bad_first_next_link(sim, lambda _: "http://127.0.0.1:99999/api/video/room_sessions")
        port = free_port()
        config = write_config(tmp_path, sim.base_url, port=port, page_size=1, logging_format="json")
        with running_exporter(tmp_path, port, "--config", str(config)) as proc:
            # The first poll fails; the next ones (every 500 ms) must succeed.
            proc.wait_until(
                lambda: 'signalwire_video_up{space="x"} 1.0\n' in proc.get("/metrics").text,
                "a successful poll after the failed one",
                seconds=3,
            )
            assert proc.get("/-/ready").status_code == 200
            code, _ = proc.signal_and_wait(signal.SIGTERM)
            assert code == 0
            stderr = proc.stderr
    assert_no_traceback(stderr)
    assert all(isinstance(json.loads(line), dict) for line in stderr.splitlines())
