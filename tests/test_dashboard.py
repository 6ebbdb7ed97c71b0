"""The Grafana dashboard against a real Prometheus: Debian's ``prometheus`` on 127.0.0.1 scrapes the
exporter in demo mode (polling the simulator); every panel query, with the dashboard variables
substituted, must parse and return at least one series through the Prometheus HTTP API. A second
demo exporter, its space relabelled ``stopped``, is stopped to show the "Exporter up" panels say so."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "helm" / "signalwire-video-exporter" / "files" / "dashboard.json"
# Substitutions for the Grafana variables the panels use (short ranges: the test runs for seconds).
VARIABLES = {"$__rate_interval": "30s", "${space}": "demo", "$space": "demo"}
STOPPED_JOB = "stopped-exporter"  # scrape job of the exporter that the exporter-down test stops
SPACE_SELECTED = re.compile(r'signalwire_video_\w+\{space=~"\$space"[,}]')
UNSELECTED_FAMILY = re.compile(r'signalwire_video_\w+(?!\w|\{space=~"\$space"[,}])')


def _dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())  # type: ignore[no-any-return]


def _targets(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    found = []
    for panel in dashboard["panels"]:
        for sub in [panel, *panel.get("panels", [])]:
            for target in sub.get("targets", []):
                found.append((f"{sub['title']} [{target['refId']}]", target["expr"]))
    return found


def substitute(expr: str, space: str = "demo") -> str:
    for name, value in {**VARIABLES, "${space}": space, "$space": space}.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"unsubstituted variable in {expr}"
    return expr


def test_dashboard_structure() -> None:
    dash = _dashboard()
    assert dash["schemaVersion"] >= 39
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert (
        variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    )
    space = variables["space"]
    assert space["query"]["query"] == "label_values(signalwire_video_up, space)"
    assert space["multi"] and space["includeAll"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dash["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        for target in panel["targets"]:  # every family of the exporter, selected by space first
            assert SPACE_SELECTED.search(target["expr"]), panel["title"]
            assert not UNSELECTED_FAMILY.search(target["expr"]), panel["title"]
    exprs = " ".join(expr for _, expr in _targets(dash))
    for needed in (
        "signalwire_video_room_sessions_active{",
        "signalwire_video_room_sessions_active_max_members{",
        "signalwire_video_room_sessions_completed_total{",
        "signalwire_video_room_sessions_cost_dollars_total{",
        "signalwire_video_room_session_duration_seconds_bucket{",
        "signalwire_video_room_sessions_oldest_start_timestamp_seconds{",
        "signalwire_video_up{",
        "signalwire_video_poll_errors_total{",
        "signalwire_video_api_request_duration_seconds_bucket{",
        "signalwire_video_last_poll_success_timestamp_seconds{",
        "signalwire_video_members_active{",
        "signalwire_video_room_session_members_bucket{",
        "signalwire_video_room_session_peak_members_bucket{",
        "signalwire_video_room_session_capacity_utilization_ratio_bucket{",
        "signalwire_video_member_seconds_total{",
        "signalwire_video_recordings_total{",
        "signalwire_video_recording_seconds_total{",
        "signalwire_video_recording_bytes_total{",
        "signalwire_video_recording_cost_dollars_total{",
        "signalwire_video_recordings_pending{",
        "signalwire_video_recordings_skipped_total{",
        "signalwire_video_cost_period_dollars{",
        "signalwire_video_cost_period_complete{",
        "signalwire_video_budget_dollars{",
        "signalwire_video_cost_month_projected_dollars{",
        "signalwire_video_charges_dollars_total{",
        "signalwire_video_charged_logs_total{",
        "signalwire_video_cost_mismatches_total{",
        "signalwire_video_cost_mismatch_dollars_total{",
        "signalwire_video_logs_skipped_total{",
    ):
        assert needed in exprs, needed
    assert re.search(r"\[1d\]", exprs) and re.search(r"\[1h\]", exprs)  # cost per day and per hour
    rows = [panel["title"] for panel in dash["panels"] if panel["type"] == "row"]
    assert rows[-3:] == ["People", "Recordings", "Bill"]


def test_panels_tile_the_grid_without_overlapping() -> None:
    taken: dict[tuple[int, int], str] = {}
    for panel in _dashboard()["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in taken, f"{panel['title']} overlaps {taken[(x, y)]}"
                taken[(x, y)] = panel["title"]


# families published only with an option on (by name prefix), and the option their panels name
OPTIONS = {
    "signalwire_video_members_active": "members.live",
    "signalwire_video_room_session_members": "members.enabled",
    "signalwire_video_room_session_peak_members": "members.enabled",
    "signalwire_video_room_session_capacity_utilization_ratio": "members.enabled",
    "signalwire_video_member_seconds_total": "members.enabled",
    "signalwire_video_recording": "recordings.enabled",
    "signalwire_video_charge": "charges.enabled",
    "signalwire_video_cost_mismatch": "charges.enabled",
    "signalwire_video_logs_skipped": "charges.enabled",
    "signalwire_video_budget_dollars": "spaces[].budget.monthly",
}
OPTION_NAME = re.compile(r"(?:members|recordings|charges)\.\w+|spaces\[\]\.budget\.\w+")


def _options(expr: str) -> set[str]:
    families = re.findall(r"signalwire_video_\w+", expr)
    return {option for prefix, option in OPTIONS.items() for f in families if f.startswith(prefix)}


def test_panels_of_opt_in_families_say_which_option_they_need() -> None:
    """The description names every option a query needs. A panel is empty ("No data") only when all
    of its queries are: then "noValue" names exactly the options they need, else none."""
    for panel in _dashboard()["panels"]:
        needs = [_options(target["expr"]) for target in panel.get("targets", [])]
        named = set(OPTION_NAME.findall(panel.get("description", "")))
        assert set().union(*needs) <= named, panel["title"]
        empty_without = set().union(*needs) if needs and all(needs) else set()
        no_value = panel.get("fieldConfig", {}).get("defaults", {}).get("noValue", "")
        assert empty_without == set(OPTION_NAME.findall(no_value)), panel["title"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(predicate: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


class Stack(NamedTuple):
    url: str  # Prometheus
    stoppable: subprocess.Popen[bytes]  # the exporter of space "stopped"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    binary = shutil.which("prometheus")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("prometheus is missing: .ci/run must install Debian's prometheus package")
        pytest.skip("prometheus not installed (apt-get install prometheus)")
    tmp = tmp_path_factory.mktemp("prom")
    exporter_port, stoppable_port, prom_port = _free_port(), _free_port(), _free_port()
    (tmp / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: signalwire-video-exporter\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{exporter_port}']}}]\n"
        f"  - job_name: {STOPPED_JOB}\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{stoppable_port}']}}]\n"
        "    metric_relabel_configs:\n"
        "      - {source_labels: [space], regex: demo, target_label: space, replacement: stopped}\n"
    )
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for name, port in [("exporter", exporter_port), ("stoppable", stoppable_port)]:
            (tmp / f"{name}.yaml").write_text(f'server: {{listen_address: "127.0.0.1:{port}"}}\n')
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "exporter", "--demo", "--config", str(tmp / f"{name}.yaml")],
                    cwd=ROOT,
                    stdout=subprocess.DEVNULL,
                    stderr=(tmp / f"{name}.log").open("wb"),
                )
            )
        procs.append(
            subprocess.Popen(
                [
                    binary,
                    f"--config.file={tmp / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp / 'data'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                ],
                stdout=subprocess.DEVNULL,
                stderr=(tmp / "prometheus.log").open("wb"),
            )
        )
        url = f"http://127.0.0.1:{prom_port}"

        def enough_data() -> bool:
            # two polls of each exporter (5 s apart) and a few scrapes: rate()/increase() have samples
            result = query(url, "count_over_time(signalwire_video_up[1m]) >= 12")
            return len(result) == 2

        # Prometheus answers 503 (not JSON) until its storage is open: wait for /-/ready first.
        _wait(lambda: httpx.get(f"{url}/-/ready", timeout=5).status_code == 200, 60, "Prometheus to start")
        _wait(enough_data, 60, "Prometheus to scrape the exporters")
        yield Stack(url, procs[1])
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@pytest.fixture(scope="module")
def prometheus(stack: Stack) -> str:
    return stack.url


def query(url: str, expr: str, at: float | None = None) -> list[dict[str, Any]]:
    params: dict[str, str | float] = {"query": expr}
    if at is not None:
        params["time"] = at
    response = httpx.get(f"{url}/api/v1/query", params=params, timeout=10)
    body = response.json()
    assert response.status_code == 200 and body["status"] == "success", (expr, body)
    return body["data"]["result"]  # type: ignore[no-any-return]


def test_space_variable_query_finds_the_demo_space(prometheus: str) -> None:
    response = httpx.get(
        f"{prometheus}/api/v1/label/space/values", params={"match[]": "signalwire_video_up"}, timeout=10
    )
    assert response.json()["data"] == ["demo", "stopped"]


def test_every_panel_query_returns_series(prometheus: str) -> None:
    empty = [title for title, expr in _targets(_dashboard()) if not query(prometheus, substitute(expr))]
    assert empty == []
    # the "All" value of the space variable works too
    all_spaces = {**VARIABLES, "$space": ".*", "${space}": ".*"}
    for _title, expr in _targets(_dashboard()):
        for name, value in all_spaces.items():
            expr = expr.replace(name, value)
        assert query(prometheus, expr)


def test_live_values_are_plausible(prometheus: str) -> None:
    active = query(prometheus, 'sum(signalwire_video_room_sessions_active{space="demo"})')
    assert float(active[0]["value"][1]) > 0
    up = query(prometheus, 'signalwire_video_up{space="demo"}')
    assert up[0]["value"][1] == "1"
    age = query(prometheus, 'time() - signalwire_video_last_poll_success_timestamp_seconds{space="demo"}')
    assert 0 <= float(age[0]["value"][1]) < 30


# panels of the People and Recordings rows the demo must show above 0: its traffic keeps members
# present, sessions ending (a quarter of them full) and recordings completing (some still processing)
MOVING = {
    "Live members",
    "Participants per session (last hour)",
    "Participant-minutes per hour by quality / fps",
    "Live members by quality / fps",
    "Capacity utilization p95 by quality / fps (last hour)",
    "Sessions at capacity (last hour)",
    "Recordings per hour",
    "Recorded minutes per hour",
    "Recorded bytes per hour",
    "Recording cost per hour",
    "Pending recordings",
}


def _wait_until_positive(prometheus: str, names: set[str], what: str) -> None:
    """Series alone could be all 0 (or NaN): each query named (``title [refId]``, or a title: all of
    the panel's queries) shows a positive value at some point while the demo runs."""
    targets = [
        (name, expr) for name, expr in _targets(_dashboard()) if {name, name.rsplit(" [", 1)[0]} & names
    ]
    assert {title for name, _ in targets for title in (name, name.rsplit(" [", 1)[0])} >= names
    still_zero = dict(targets)

    def all_seen_positive() -> bool:
        for title, expr in list(still_zero.items()):
            values = [float(series["value"][1]) for series in query(prometheus, substitute(expr))]
            if any(value > 0 for value in values):  # NaN (no session in the window) is not
                del still_zero[title]
        return not still_zero

    try:
        _wait(all_seen_positive, 180, what)
    except AssertionError:
        raise AssertionError(f"never above 0: {sorted(still_zero)}") from None


def test_people_and_recordings_panels_show_the_demo_moving(prometheus: str) -> None:
    """Counters per hour move only when sessions end after the first scrape."""
    _wait_until_positive(prometheus, MOVING, "the demo's members and recordings")


# panels of the Bill row the demo must show above 0: its sessions cost, their video logs are charged
# (split into descriptions), its space has a monthly budget, and the first session to end 30 s after it
# began is charged a cent more than it cost (then 1 session in 50)
BILL_MOVING = {
    "Cost mismatches, last 24 h",
    "Cost mismatches per hour",
    "Mismatched dollars per hour",
    "Month to date",
    "Projected month",
    "Budget used",
    "Projected budget use",
    "Month to date, projection and budget",
    "Day and month by source",
    "Charges per hour by description",
    "Video logs per hour [A]",  # charged; [B], skipped, stays at 0
}
DEMO_BUDGET = 100.0  # dollars a month (exporter/cli.py)


def test_bill_panels_show_the_demo_spending(prometheus: str) -> None:
    """The month to date is the charges figure (preferred over the sessions one, which the demo has
    too) and the budget panels divide it and the projection by the budget; several descriptions are
    charged; the charges figures are complete (the demo's logs are read back to the month's start)."""
    _wait_until_positive(prometheus, BILL_MOVING, "the demo's bill")
    panels = {title: substitute(expr) for title, expr in _targets(_dashboard())}

    def descriptions_charged() -> set[str]:
        result = query(prometheus, panels["Charges per hour by description [A]"])
        return {series["metric"]["description"] for series in result if float(series["value"][1]) > 0}

    _wait(lambda: len(descriptions_charged()) >= 3, 180, "three charge descriptions")

    # every query at the time of the latest scrape, whose samples are all stored
    at = float(query(prometheus, 'timestamp(signalwire_video_up{space="demo"})')[0]["value"][1])

    def values(title: str, *labels: str) -> dict[tuple[str, ...], float]:
        """The panel query's values by the values of ``labels``."""
        return {
            tuple(series["metric"][label] for label in labels): float(series["value"][1])
            for series in query(prometheus, panels[title], at)
        }

    (month_to_date,) = values("Month to date [A]").values()
    (projected,) = values("Projected month [A]").values()
    assert 0 < month_to_date <= projected
    mtd = values("Month to date, projection and budget [A]", "space", "source")
    assert mtd == {("demo", "charges"): month_to_date}
    assert values("Month to date, projection and budget [B]", "space") == {("demo",): projected}
    assert values("Month to date, projection and budget [C]", "space") == {("demo",): DEMO_BUDGET}
    (used,) = values("Budget used [A]", "space").values()
    (projected_use,) = values("Projected budget use [A]", "space").values()
    assert (used, projected_use) == pytest.approx((month_to_date / DEMO_BUDGET, projected / DEMO_BUDGET))
    by_source = values("Day and month by source [A]", "space", "period", "source")
    assert by_source.keys() == {("demo", p, s) for p in ("day", "month") for s in ("sessions", "charges")}
    assert by_source["demo", "month", "charges"] == month_to_date
    complete = values("Figures complete [A]", "space", "period", "source")
    assert complete["demo", "day", "charges"] == complete["demo", "month", "charges"] == 1


def _exporter_up_panels() -> dict[str, str]:
    """Panel type -> query of the panels titled "Exporter up"."""
    return {
        panel["type"]: panel["targets"][0]["expr"]
        for panel in _dashboard()["panels"]
        if panel["title"] == "Exporter up"
    }


def _values(result: list[dict[str, Any]]) -> dict[str, str]:
    return {series["metric"].get("space", ""): series["value"][1] for series in result}


def test_exporter_up_panels_show_a_stopped_exporter_as_down(stack: Stack) -> None:
    panels = _exporter_up_panels()
    assert panels.keys() == {"stat", "timeseries"}
    for expr in panels.values():
        assert _values(query(stack.url, substitute(expr, "stopped"))) == {"stopped": "1"}

    stack.stoppable.terminate()
    stack.stoppable.wait(15)
    _wait(lambda: query(stack.url, f'up{{job="{STOPPED_JOB}"}} == 0'), 30, "a failed scrape")
    # the exporter's own series went with it: this alone would be "No data"
    assert query(stack.url, 'signalwire_video_up{space="stopped"}') == []
    for expr in panels.values():
        assert _values(query(stack.url, substitute(expr, "stopped"))) == {"stopped": "0"}
    # "All" spaces: the running exporter's space stays up beside it
    assert _values(query(stack.url, substitute(panels["stat"], ".*"))) == {"demo": "1", "stopped": "0"}


def test_exporter_up_stat_shows_down_when_nothing_is_scraped(prometheus: str) -> None:
    stat = _exporter_up_panels()["stat"]
    assert _values(query(prometheus, substitute(stat, "no-such-space"))) == {"": "0"}
