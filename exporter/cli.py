"""Command line: ``signalwire-video-exporter [--config PATH] [--demo] [--once] [--check-config]``.

Exit codes: 0 success, 1 a space failed (``--once``) or the server could not start,
2 invalid configuration or arguments.
"""

from __future__ import annotations

import argparse
import logging
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from types import FrameType

from prometheus_client import GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR

from . import __version__
from .collector import SessionCollector
from .config import (
    LOG_LEVELS,
    Config,
    ConfigError,
    MembersConfig,
    SpaceConfig,
    load_config,
    readable_by_others,
)
from .exposition import Exposition
from .logs import setup_logging
from .poller import SpacePoller
from .server import MetricsServer, make_app
from .simulator import SimulatedSpace
from .snapshot import Snapshots, SpaceSnapshot
from .state import Accounting
from .statefile import StateFile, check_state_path
from .transport import environment_proxy
from .webconfig import WebConfig, load_web_config, wrap_app

log = logging.getLogger("exporter")

DEMO_INTERVAL = 5.0
DEMO_BUDGET = 100.0  # dollars a month
DEMO_PROJECT = "demo-project"
SHUTDOWN_GRACE = 3.0  # seconds for polls to finish; SIGTERM exits within 5 s
SWITCH_INTERVAL = 0.0005  # seconds; see serve()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="signalwire-video-exporter",
        description="Prometheus exporter for SignalWire Video room sessions.",
        epilog="Without --config, one space is read from SIGNALWIRE_SPACE, SIGNALWIRE_PROJECT_ID "
        "and SIGNALWIRE_API_TOKEN (or SIGNALWIRE_API_TOKEN_FILE).",
    )
    parser.add_argument("--config", metavar="PATH", help="YAML configuration file")
    parser.add_argument(
        "--demo", action="store_true", help="poll a built-in simulated space (no account needed)"
    )
    parser.add_argument("--once", action="store_true", help="poll every space once, print the metrics, exit")
    parser.add_argument("--check-config", action="store_true", help="validate the configuration and exit")
    parser.add_argument("--log-level", choices=LOG_LEVELS, help="override logging.level")
    parser.add_argument("--state-file", metavar="PATH", help="override state.path (restart-proof counters)")
    parser.add_argument(
        "--web.config.file",
        dest="web_config_file",
        metavar="PATH",
        help="web configuration (TLS, basic auth, headers) in the Prometheus exporter-toolkit format; "
        "overrides server.web_config_file",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser.parse_args(argv)


def _demo_config(config: Config, demo: SimulatedSpace, project_id: str, token: str) -> Config:
    """The simulated space, polled often, with members (also live), recordings and charges read,
    and a monthly budget."""
    space = SpaceConfig("demo", demo.base_url, project_id, token, budget_monthly=DEMO_BUDGET)
    return replace(
        config,
        spaces=(space,),
        poll=replace(config.poll, interval=DEMO_INTERVAL),
        members=MembersConfig(enabled=True, live=True),
        recordings=replace(config.recordings, enabled=True),
        charges=replace(config.charges, enabled=True, interval=DEMO_INTERVAL),
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = load_config(args.config, need_spaces=not args.demo)
        if args.state_file:
            config = replace(config, state_path=args.state_file)
        problem = config.state_path and check_state_path(config.state_path)
        if problem:
            raise ConfigError([f"state.path: {problem}"])
        if args.web_config_file:
            config = replace(config, web_config_file=args.web_config_file)
        web = load_web_config(config.web_config_file) if config.web_config_file else WebConfig()
        if not args.demo:  # the demo polls its own space, never proxied
            _check_proxies(config.spaces)
    except ConfigError as exc:
        for error in exc.errors:
            print(f"config error: {error}", file=sys.stderr)
        return 2
    warnings = _permission_warnings(config, web) + ([] if args.demo else _unfiltered_charges(config))
    if args.check_config:
        for warning in warnings:
            print(f"config warning: {warning}", file=sys.stderr)
        names = ", ".join(s.name for s in config.spaces) or "none (demo)"
        print(f"config OK: {len(config.spaces)} space(s): {names}")
        return 0
    setup_logging(args.log_level or config.log_level, config.log_format, [s.api_token for s in config.spaces])
    demo_token = secrets.token_hex(16)
    demo = SimulatedSpace(DEMO_PROJECT, demo_token) if args.demo else None
    counting_start = None
    try:
        if demo is not None:
            demo.start()
            demo.run_traffic()
            # Count from the moment the demo's traffic began: its first sessions end then, so
            # even --demo --once shows every family, completed sessions included.
            counting_start = demo.traffic_started
            config = _demo_config(config, demo, DEMO_PROJECT, demo_token)
            log.info(
                "demo mode: polling a simulated space at %s every %.0fs",
                demo.base_url,
                DEMO_INTERVAL,
            )
        if args.once:
            _warn(warnings)
            return run_once(config, counting_start)
        return serve(config, web, warnings, counting_start)
    finally:
        if demo is not None:
            demo.stop()


def _check_proxies(spaces: Iterable[SpaceConfig]) -> None:
    """Raise ConfigError when the environment sets a proxy for a space that cannot be used."""
    errors = []
    for i, space in enumerate(spaces):
        try:
            environment_proxy(space.base_url)
        except ValueError as exc:
            errors.append(f"spaces[{i}]: {exc}")
    if errors:
        raise ConfigError(errors)


def _permission_warnings(config: Config, web: WebConfig) -> list[str]:
    """Secret-holding files that others may read (see ``readable_by_others``)."""
    files = list(dict.fromkeys(config.secret_files))
    if web.path and web.users:
        files.append(web.path)
    return [
        f"{path} holds secrets but is readable by group or others (chmod 600 it)"
        for path in files
        if readable_by_others(path)
    ]


def _unfiltered_charges(config: Config) -> list[str]:
    """Spaces with room filters whose charges cover the whole project all the same."""
    if not config.charges.enabled:
        return []
    return [
        f"spaces[{i}] ({space.name}): the video logs cannot be filtered by room, so its charges "
        "(and their figures and budget alerts) cover every room of the project, not only its filters'"
        for i, space in enumerate(config.spaces)
        if any(vars(space.filters).values())
    ]


def _warn(warnings: list[str]) -> None:
    for warning in warnings:
        log.warning("%s", warning)


def _build(
    config: Config, stop: threading.Event, counting_start: float | None
) -> tuple[Snapshots, list[SpacePoller]]:
    """Snapshots (resumed from the state file) and one poller per space.

    Spaces without stored state count sessions that end from ``counting_start`` (default: now).
    """
    names = [s.name for s in config.spaces]
    snapshots = Snapshots(names)
    state = None
    if config.state_path:
        state = StateFile(
            config.state_path,
            config.duration_buckets,
            member_buckets=config.member_buckets,
            utilization_buckets=config.utilization_buckets,
        )
    resumed = state.load(names) if state else {}
    for name, accounting in resumed.items():  # counters continue from the stored values
        snapshots.publish(
            SpaceSnapshot(
                name, last_success=accounting.last_success, totals=accounting.totals, bill=accounting.bill
            )
        )
    for name in set(names) - resumed.keys():
        resumed[name] = Accounting(counting_start=time.time() if counting_start is None else counting_start)
        if state is not None:  # when counting started must survive a crash before the first poll
            try:
                state.save(name, resumed[name])
            except OSError as exc:
                log.error("cannot write the state file: %s", exc)
    pollers = [
        SpacePoller(space, config, snapshots, stop, state=state, accounting=resumed[space.name])
        for space in config.spaces
    ]
    return snapshots, pollers


def build_exposition(
    snapshots: Snapshots, config: Config, fresh: bool = False, clock: Callable[[], float] = time.time
) -> Exposition:
    """What ``/metrics`` serves (with process metrics when ``fresh``) and ``--once`` prints;
    ``clock`` tells the current day and month."""
    collector = SessionCollector(snapshots, config, clock)
    fresh_collectors = (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR) if fresh else ()
    return Exposition(snapshots, collector, fresh_collectors, epoch=collector.day)


def run_once(config: Config, counting_start: float | None = None) -> int:
    """Poll every space once (concurrently), print the exposition; 1 if any space failed."""
    stop = threading.Event()
    snapshots, pollers = _build(config, stop, counting_start)
    results: dict[str, bool] = {}

    def poll(poller: SpacePoller) -> None:
        try:
            results[poller.space.name] = poller.poll_once()
        finally:
            poller.client.close()

    threads = [threading.Thread(target=poll, args=(p,)) for p in pollers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sys.stdout.write(build_exposition(snapshots, config).render(None)[0].decode())
    return 0 if all(results.get(p.space.name, False) for p in pollers) else 1


def serve(
    config: Config,
    web: WebConfig | None = None,
    warnings: list[str] | None = None,
    counting_start: float | None = None,
) -> int:
    """Serve /metrics and poll every space in the background until SIGTERM or SIGINT."""
    # A large poll decodes and aggregates while holding the GIL; a scrape thread waits up to one
    # switch interval each time it needs the GIL back (about ten times per scrape). 0.5 ms instead
    # of Python's 5 ms: scrape p99 during 100k polls, 20 paced clients, ~17 ms at 1 ms and ~9.5 at
    # 0.5 ms (bench/perf.py); poll wall time unchanged. It only costs when threads contend.
    sys.setswitchinterval(SWITCH_INTERVAL)
    stop = threading.Event()
    snapshots, pollers = _build(config, stop, counting_start)
    host, port = config.listen_host_port
    try:
        web = web or WebConfig()
        app = wrap_app(make_app(build_exposition(snapshots, config, fresh=True), snapshots.ready), web)
        sans = web.tls.client_allowed_sans if web.tls else ()
        server = MetricsServer(host, port, app, web.ssl_context, sans, config.server_limits)
    except OSError as exc:
        log.error("cannot listen on %s: %s", config.listen_address, exc.strerror or exc)
        return 1

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.start()
    log.info(
        "signalwire-video-exporter %s listening on %s://%s:%d, polling %d space(s) every %gs",
        __version__,
        "https" if web.ssl_context else "http",
        host or "0.0.0.0",
        server.port,
        len(pollers),
        config.poll.interval,
    )
    _warn(warnings or [])  # once listening: a bad listen address stays the only message
    threads = [threading.Thread(target=p.run, name=f"poll-{p.space.name}", daemon=True) for p in pollers]
    for thread in threads:
        thread.start()
    while not stop.wait(1.0):
        pass
    for thread in threads:
        thread.join(SHUTDOWN_GRACE / max(1, len(threads)))
    server.stop()
    log.info("stopped")
    return 0
