"""The metrics port under a connection-holding attack (issue 12), plain, with basic auth and with TLS.

For each mode a real exporter (``python -m exporter --demo`` with a state file, ``ulimit -n 1024``
applied to it) is started on 127.0.0.1 with the default server limits except a 10 s
``idle_timeout`` and 5 s ``read_header_timeout``, so that closings show within the run. An
attacker process then holds 1,000 idle connections (each one reopened 1 s after the server
closes it) and 50 connections that dribble header lines, 1 KiB every 50 ms, past
``max_header_bytes`` (each reopened when cut). Meanwhile a normal client scrapes ``/metrics``
on a new connection every 100 ms (with credentials, or over TLS, as the mode asks), and the
exporter's threads, RSS and open descriptors are read from /proc. Reported per mode:

- scrape latency p50/p99 (connect, TLS handshake, bcrypt-cached auth and body included) and failures;
- peak threads, RSS and open file descriptors of the exporter;
- the idle connections: how long the server let each live (evicted at the connection cap, or
  closed at ``idle_timeout``), and how many outlived their timeout;
- what ended the dribblers (431, header deadline, eviction);
- after the attack: ``signalwire_video_up`` and the ``state_write`` poll errors (``--state-file``).

    python bench/server_limits.py                 # plain, auth and tls, 30 s of attack each
    python bench/server_limits.py --mode tls --seconds 10

Markdown to stdout, progress to stderr. Benchmark only: nothing here asserts on timings. The
attacker needs about 1,100 descriptors: the script raises its own soft limit to the hard one.
"""

from __future__ import annotations

import argparse
import datetime
import multiprocessing
import os
import resource
import selectors
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ROOT = Path(__file__).resolve().parent.parent
IDLE_TIMEOUT, READ_HEADER_TIMEOUT = 10.0, 5.0
USER, PASSWORD = "prometheus", "bench-password"
EXPORTER_NOFILE = 1024


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A throwaway certificate for 127.0.0.1 and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def start_exporter(directory: Path, mode: str) -> tuple[subprocess.Popen[bytes], int, Path]:
    port = free_port()
    server: dict[str, Any] = {
        "listen_address": f"127.0.0.1:{port}",
        "idle_timeout": f"{IDLE_TIMEOUT:g}s",
        "read_header_timeout": f"{READ_HEADER_TIMEOUT:g}s",
    }
    web: dict[str, Any] = {}
    if mode == "auth":
        web["basic_auth_users"] = {USER: bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(10)).decode()}
    if mode == "tls":
        cert, key = self_signed(directory)
        web["tls_server_config"] = {"cert_file": str(cert), "key_file": str(key)}
    if web:
        (directory / "web.yml").write_text(yaml.safe_dump(web))
        (directory / "web.yml").chmod(0o600)
        server["web_config_file"] = str(directory / "web.yml")
    (directory / "config.yaml").write_text(yaml.safe_dump({"server": server}))
    stderr = directory / "exporter.err"

    def limit_files() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (EXPORTER_NOFILE, EXPORTER_NOFILE))

    args = ["--demo", "--config", str(directory / "config.yaml"), "--state-file", str(directory / "state")]
    with stderr.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "exporter", *args],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=err,
            preexec_fn=limit_files,
        )
    return proc, port, stderr


def attack(port: int, tls: bool, idle: int, dribblers: int, seconds: float, out: Any) -> None:
    """Hold ``idle`` silent connections and ``dribblers`` header dribblers for ``seconds``."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    selector = selectors.DefaultSelector()
    lifetimes: list[float] = []
    ends = {"431": 0, "closed": 0}
    reopen: list[tuple[float, str]] = [(0.0, "idle")] * idle + [(0.0, "dribble")] * dribblers
    conns: dict[socket.socket, dict[str, Any]] = {}
    line = b"X-Pad: " + b"a" * 1015 + b"\r\n"
    deadline = time.monotonic() + seconds

    def open_one(kind: str) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        if tls:
            sock = context.wrap_socket(sock)  # idle after the handshake
        sock.setblocking(False)
        state = {"kind": kind, "opened": time.monotonic(), "next": 0.0, "got": b""}
        if kind == "dribble":
            sock.send(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        conns[sock] = state
        selector.register(sock, selectors.EVENT_READ)

    def closed(sock: socket.socket) -> None:
        state = conns.pop(sock)
        selector.unregister(sock)
        sock.close()
        if state["kind"] == "idle":
            lifetimes.append(time.monotonic() - state["opened"])
        else:
            ends["431" if b" 431 " in state["got"][:40] else "closed"] += 1
        reopen.append((time.monotonic() + (1.0 if state["kind"] == "idle" else 0.0), state["kind"]))

    while time.monotonic() < deadline:
        now = time.monotonic()
        due = [(t, k) for t, k in reopen if t <= now]
        reopen[:] = [(t, k) for t, k in reopen if t > now]
        for _, kind in due:
            try:
                open_one(kind)
            except OSError:
                reopen.append((now + 1.0, kind))
        for key, _ in selector.select(timeout=0.02):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                data = sock.recv(4096)
            except (ssl.SSLWantReadError, BlockingIOError):
                continue
            except OSError:
                data = b""
            if data:
                conns[sock]["got"] += data
            else:
                closed(sock)
        for sock, state in list(conns.items()):
            if state["kind"] == "dribble" and state["next"] <= now:
                state["next"] = now + 0.05
                try:
                    sock.send(line)
                except (ssl.SSLWantWriteError, BlockingIOError):
                    pass
                except OSError:
                    closed(sock)
    out.put({"lifetimes": lifetimes, "ends": ends, "open_at_end": len(conns)})
    for sock in conns:
        sock.close()


def proc_stats(pid: int) -> tuple[int, int, int]:
    """(threads, RSS in KiB, open descriptors) of ``pid`` now."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
    )
    return int(fields["Threads"]), int(fields["VmRSS"].split()[0]), len(os.listdir(f"/proc/{pid}/fd"))


def scrape_value(text: str, prefix: str) -> float | None:
    for row in text.splitlines():
        if row.startswith(prefix):
            return float(row.rsplit(" ", 1)[1])
    return None


def run(mode: str, seconds: float, idle: int, dribblers: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-limits-") as tmp:
        directory = Path(tmp)
        proc, port, stderr = start_exporter(directory, mode)
        scheme = "https" if mode == "tls" else "http"
        url = f"{scheme}://127.0.0.1:{port}/metrics"
        auth = (USER, PASSWORD) if mode == "auth" else None
        try:
            for _ in range(300):
                try:
                    if httpx.get(url, verify=False, auth=auth, timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            base = proc_stats(proc.pid)
            out: Any = multiprocessing.Queue()
            attacker = multiprocessing.Process(
                target=attack, args=(port, mode == "tls", idle, dribblers, seconds, out)
            )
            attacker.start()
            time.sleep(2.0)  # connections opened
            latencies, failures, peak = [], 0, base
            end = time.monotonic() + seconds - 3.0
            while time.monotonic() < end:
                started = time.perf_counter()
                try:
                    response = httpx.get(url, verify=False, auth=auth, timeout=5)
                    ok = response.status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - started)
                else:
                    failures += 1
                peak = tuple(max(a, b) for a, b in zip(peak, proc_stats(proc.pid), strict=True))  # type: ignore[assignment]
                time.sleep(max(0.0, 0.1 - (time.perf_counter() - started)))
            result = out.get(timeout=seconds + 30)
            attacker.join(timeout=30)
            time.sleep(6.0)  # a demo poll (every 5 s) and its state write after the attack
            body = httpx.get(url, verify=False, auth=auth, timeout=5).text
        finally:
            proc.terminate()
            proc.wait(timeout=15)
        log_text = stderr.read_text(errors="replace")
    lifetimes = result["lifetimes"]
    latencies.sort()
    return {
        "mode": mode,
        "scrapes": len(latencies),
        "failures": failures,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "threads": (base[0], peak[0]),
        "rss_mib": (base[1] / 1024, peak[1] / 1024),
        "fds": (base[2], peak[2]),
        "idle_closed": len(lifetimes),
        "idle_max_life": max(lifetimes, default=0.0),
        "idle_over_timeout": sum(life > IDLE_TIMEOUT + 1.0 for life in lifetimes),
        "dribble_ends": result["ends"],
        "up": scrape_value(body, 'signalwire_video_up{space="demo"}'),
        "state_write_errors": scrape_value(
            body, 'signalwire_video_poll_errors_total{reason="state_write",space="demo"}'
        ),
        "emfile_logged": "Too many open files" in log_text,
    }


def report(results: list[dict[str, Any]], seconds: float, idle: int, dribblers: int) -> None:
    print(
        f"Attack: {idle} idle connections + {dribblers} header dribblers, {seconds:g} s; exporter at "
        f"ulimit -n {EXPORTER_NOFILE}; idle_timeout {IDLE_TIMEOUT:g}s, read_header_timeout "
        f"{READ_HEADER_TIMEOUT:g}s, other limits default.\n"
    )
    print(
        "| mode | scrapes (failed) | p50 ms | p99 ms | threads (idle → peak) | RSS MiB (idle → peak) "
        "| fds peak | idle closed / longest life s / over timeout | dribblers: 431 / cut "
        "| up after | state_write errors |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        ends = r["dribble_ends"]
        print(
            f"| {r['mode']} | {r['scrapes']} ({r['failures']}) | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} "
            f"| {r['threads'][0]} → {r['threads'][1]} | {r['rss_mib'][0]:.0f} → {r['rss_mib'][1]:.0f} "
            f"| {r['fds'][1]} | {r['idle_closed']} / {r['idle_max_life']:.1f} / {r['idle_over_timeout']} "
            f"| {ends['431']} / {ends['closed']} | {r['up']:g} | {r['state_write_errors']:g} |"
        )
    if any(r["emfile_logged"] for r in results):
        print("\n'Too many open files' was logged.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--mode", choices=["plain", "auth", "tls", "all"], default="all")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument("--dribblers", type=int, default=50)
    args = parser.parse_args()
    modes = ["plain", "auth", "tls"] if args.mode == "all" else [args.mode]
    results = []
    for mode in modes:
        log(f"{mode}: {args.seconds:g} s of attack")
        results.append(run(mode, args.seconds, args.idle, args.dribblers))
    report(results, args.seconds, args.idle, args.dribblers)


if __name__ == "__main__":
    main()
