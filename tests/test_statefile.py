"""The state file: round trip, atomic replacement, unusable files set aside, restarts that resume."""

from __future__ import annotations

import json
import logging
import math
import stat
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from exporter.models import MAX_COST, MAX_DURATION
from exporter.poller import SpacePoller
from exporter.snapshot import (
    DEFAULT_DURATION_BUCKETS,
    Histogram,
    People,
    RecordingTotals,
    SpaceSnapshot,
    Totals,
)
from exporter.state import Accounting, MembersDue, RecordingsDue
from exporter.statefile import StateFile, check_state_path

from .support.fake_api import FakeSpace
from .test_cli import PROJECT as CLI_PROJECT
from .test_cli import TOKEN as CLI_TOKEN
from .test_cli import free_port, run_cli, running_exporter, stalling_api, write_config
from .test_poller import Exporter, Sample, qf

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = Accounting(
    counting_start=1_795_000_000.0,
    last_success=1_795_000_600.5,
    tracked={"a": 1_795_000_100.0},
    room_ids={"a": "3f0c2b1e-6a57-4d4f-9a55-2f4d1c3b7e10"},
    counted={"b": 1_795_000_200.0, "c": 1_795_000_300.0},
    rooms=("standup", 'q"uote'),
    totals=Totals(
        completed={("720p", "30"): 2, ("other", "unknown"): 1},
        cost={("720p", "30"): 0.1 + 0.2, ("other", "unknown"): 3.0},
        durations={("720p", "30"): Histogram((1, 0, 1, 0, 0, 0, 0, 0, 0), 700.0)},
        room_cost={"standup": 0.30000000000000004},
        skipped={"malformed": 4},
        people=People(
            members={("720p", "30"): Histogram((0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0), 2.0)},
            peak={("720p", "30"): Histogram((1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), 1.0)},
            utilization={("720p", "30"): Histogram((1, 0, 0, 0, 0, 0), 0.25)},
            at_capacity={("720p", "30"): 3},
            seconds={("720p", "30"): 125.5},
            cost={("720p", "30"): 0.0035},
            room_seconds={"standup": 125.5},
            skipped={"invalid_duration": 1},
        ),
        recordings=RecordingTotals(2, 90.5, 2_000_000, 0.12, {"recording_timeout": 1}),
    ),
    members_due={"c": MembersDue("720p", "30", 4, "standup", 1_795_000_300.0)},
    recordings_due={"c": RecordingsDue(1_795_000_300.0, ("r1",), 1)},
)


def test_round_trip_is_exact(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    StateFile(str(path), DEFAULT_DURATION_BUCKETS).save("prod", SAMPLE)
    assert StateFile(str(path), DEFAULT_DURATION_BUCKETS).load(["prod"]) == {"prod": SAMPLE}
    assert json.loads(path.read_text())["version"] == 1
    assert not (tmp_path / "state.json.tmp").exists()


def test_a_file_without_room_ids_is_read(tmp_path: Path) -> None:
    """Files written before rooms were kept for lookups still resume every counter."""
    path = tmp_path / "state.json"
    StateFile(str(path), DEFAULT_DURATION_BUCKETS).save("prod", SAMPLE)
    doc = json.loads(path.read_text())
    del doc["spaces"]["prod"]["room_ids"]
    path.write_text(json.dumps(doc))
    loaded = StateFile(str(path), DEFAULT_DURATION_BUCKETS).load(["prod"])
    assert loaded == {"prod": replace(SAMPLE, room_ids={})}


def test_spaces_share_one_file_and_unconfigured_ones_are_dropped(tmp_path: Path) -> None:
    path = str(tmp_path / "state.json")
    first = StateFile(path, DEFAULT_DURATION_BUCKETS)
    first.load(["a", "b"])
    first.save("a", SAMPLE)
    first.save("b", Accounting(counting_start=5.0))
    assert set(json.loads(Path(path).read_text())["spaces"]) == {"a", "b"}
    second = StateFile(path, DEFAULT_DURATION_BUCKETS)
    assert set(second.load(["b", "c"])) == {"b"}
    second.save("c", Accounting(counting_start=6.0))
    assert set(json.loads(Path(path).read_text())["spaces"]) == {"b", "c"}


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"{not json", "not a valid state file"),
        (b'{"version": 1, "written_at": 1.0, "spaces": {"a": {"counting_start": 1', "not a valid state file"),
        (b'{"version": 2, "written_at": 1.0, "spaces": {}}', "format version 2, this exporter reads 1"),
        (b'{"version": 1, "written_at": 1.0, "spaces": {}, "extra": 1}', "not a valid state file"),
        (b"", "not a valid state file"),
    ],
    ids=["garbage", "truncated", "future-version", "unknown-key", "empty"],
)
def test_unusable_file_is_set_aside_and_counting_starts_fresh(
    tmp_path: Path, content: bytes, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(content)
    with caplog.at_level(logging.ERROR):
        assert StateFile(str(path), DEFAULT_DURATION_BUCKETS, clock=lambda: 1_795_000_000.0).load(["a"]) == {}
    aside = tmp_path / "state.json.corrupt-20261118T110640Z"
    assert aside.read_bytes() == content
    assert not path.exists()
    assert reason in caplog.text and str(aside) in caplog.text


def test_a_partly_bad_file_keeps_what_is_good(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A bad counter value costs that counter; a space whose entry is bad otherwise starts fresh."""
    path = tmp_path / "state.json"
    writer = StateFile(str(path), DEFAULT_DURATION_BUCKETS)
    for name in ("a", "b", "c"):
        writer.save(name, SAMPLE)
    doc = json.loads(path.read_text())
    a = doc["spaces"]["a"]["totals"]
    a["skipped"]["malformed"] = -4
    a["cost"][1][2] = None  # what an infinite counter was written as
    a["completed"].append(["1080p", "20", 1.5])
    a["durations"][0][2] = [1, 2]  # bucket counts that do not match the buckets
    doc["spaces"]["a"]["room_ids"] = {"a": 7}
    doc["spaces"]["b"]["tracked"] = "not a mapping"
    path.write_text(json.dumps(doc))
    with caplog.at_level(logging.ERROR):
        reader = StateFile(str(path), DEFAULT_DURATION_BUCKETS)
        loaded = reader.load(["a", "b", "c"])
    assert loaded.keys() == {"a", "c"} and loaded["c"] == SAMPLE
    kept = SAMPLE.totals
    assert loaded["a"].totals == replace(
        kept, cost={("720p", "30"): kept.cost["720p", "30"]}, durations={}, skipped={}
    )
    assert (loaded["a"].tracked, loaded["a"].counted) == (SAMPLE.tracked, SAMPLE.counted)
    assert loaded["a"].room_ids == {}
    assert not list(tmp_path.glob("state.json.corrupt-*"))
    for dropped in (
        "skipped['malformed'] -4",
        'cost ["other","unknown",null]',
        'completed ["1080p","20",1.5]',
        'room_ids {"a":7}',
    ):
        assert f"space a: dropping {dropped} " in caplog.text
    assert "dropping the duration histogram of [('720p', '30')]" in caplog.text
    assert "the state of space b is not valid" in caplog.text
    reader.save("a", loaded["a"])
    assert set(json.loads(path.read_text())["spaces"]) == {"a", "c"}  # b's fresh state comes with its poll


def test_hostile_values_are_skipped_and_the_state_file_resumes(sim: FakeSpace, tmp_path: Path) -> None:
    """Values that would make a counter non-finite, or are beyond the sane range, are skipped;
    what is written is what the next start loads."""
    path = tmp_path / "state.json"
    first = _exporter_with_state(sim, path)
    ids = {name: sim.add_session(name=name) for name in ("good", "huge-1", "huge-2", "long-1", "long-2")}
    sim.add_session(name="crowd", max_members=10**400)  # in progress: not shown in the gauges
    assert first.poll()
    sim.complete_session(ids["good"], cost_in_dollars=1.5, duration=600)
    for name in ("huge-1", "huge-2"):  # together +Inf as a float
        sim.complete_session(ids[name], cost_in_dollars=1e308)
    for name in ("long-1", "long-2"):
        sim.complete_session(ids[name], cost_in_dollars=0.5, duration=10**308)
    assert first.poll()
    samples = first.samples()
    assert all(math.isfinite(value) for value in samples.values())
    assert first.value("signalwire_video_room_sessions_completed_total", **qf("720p", "30")) == 1
    assert first.value("signalwire_video_room_sessions_cost_dollars_total", **qf("720p", "30")) == 1.5
    assert first.value("signalwire_video_room_session_duration_seconds_sum", **qf("720p", "30")) == 600
    assert first.value("signalwire_video_room_sessions_active_max_members", **qf("720p", "30")) == 0
    assert first.value("signalwire_video_sessions_skipped_total", reason="invalid_cost") == 2
    assert first.value("signalwire_video_sessions_skipped_total", reason="invalid_duration") == 2
    second = _exporter_with_state(sim, path)
    assert not list(tmp_path.glob("state.json.corrupt-*"))
    assert second.poller.accounting == first.poller.accounting
    assert _stored(second.samples()) == _stored(samples)


def test_a_counter_at_the_largest_float_stays_finite(sim: FakeSpace, tmp_path: Path) -> None:
    """With costs and durations bounded, a counter that reached the largest float stays there."""
    path = tmp_path / "state.json"
    largest = sys.float_info.max
    key = ("720p", "30")
    totals = Totals(
        completed={key: 1},
        cost={key: largest},
        durations={key: Histogram((0,) * len(DEFAULT_DURATION_BUCKETS) + (1,), largest)},
    )
    StateFile(str(path), DEFAULT_DURATION_BUCKETS).save("test", Accounting(time.time() - 60, totals=totals))
    exporter = _exporter_with_state(sim, path)
    a = sim.add_session()
    assert exporter.poll()
    sim.complete_session(a, cost_in_dollars=MAX_COST, duration=int(MAX_DURATION))
    assert exporter.poll()
    assert exporter.value("signalwire_video_room_sessions_completed_total", **qf(*key)) == 2
    assert exporter.value("signalwire_video_room_sessions_cost_dollars_total", **qf(*key)) == largest
    assert exporter.value("signalwire_video_room_session_duration_seconds_sum", **qf(*key)) == largest
    resumed = StateFile(str(path), DEFAULT_DURATION_BUCKETS).load(["test"])
    assert resumed == {"test": exporter.poller.accounting}


def test_changed_buckets_reset_only_the_histogram(tmp_path: Path) -> None:
    path = str(tmp_path / "state.json")
    StateFile(path, DEFAULT_DURATION_BUCKETS).save("a", SAMPLE)
    loaded = StateFile(path, (60.0, 120.0)).load(["a"])["a"]
    assert loaded.totals.durations == {}
    assert loaded.totals.completed == SAMPLE.totals.completed
    assert loaded.totals.cost == SAMPLE.totals.cost


@pytest.mark.parametrize("victim_exists", [True, False], ids=["to-a-file", "dangling"])
@pytest.mark.parametrize("planted", ["state.json.tmp", "state.json"])
def test_a_planted_symlink_is_never_written_through(
    sim: FakeSpace, tmp_path: Path, planted: str, victim_exists: bool
) -> None:
    """At the names the state is written to: the temporary file is created afresh (mode 0600),
    never opened through what is there, and renamed over the link, not through it."""
    directory = tmp_path / "state"
    directory.mkdir()
    path = directory / "state.json"
    victim = tmp_path / "victim"
    if victim_exists:
        victim.write_text("precious")
    (directory / planted).symlink_to(victim)
    exporter = _exporter_with_state(sim, path)
    a = sim.add_session()
    assert exporter.poll()
    sim.complete_session(a, cost_in_dollars=1.0)
    assert exporter.poll()
    if victim_exists:
        assert victim.read_text() == "precious"
    else:
        assert not victim.exists()
    assert not (directory / "state.json.tmp").exists()
    assert not path.is_symlink() and stat.S_IMODE(path.stat().st_mode) == 0o600
    resumed = StateFile(str(path), DEFAULT_DURATION_BUCKETS).load(["test"])
    assert resumed == {"test": exporter.poller.accounting}


def test_state_path_checks(tmp_path: Path) -> None:
    assert check_state_path(str(tmp_path / "state.json")) is None
    assert check_state_path(str(tmp_path)) == f"{tmp_path} is a directory"
    assert (
        check_state_path(str(tmp_path / "missing" / "s.json"))
        == f"directory {tmp_path / 'missing'} does not exist"
    )
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert check_state_path(str(blocker / "s.json")) == f"directory {blocker} does not exist"


def test_check_config_reports_an_unusable_state_path(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "exporter",
            "--demo",
            "--check-config",
            "--state-file",
            str(tmp_path / "x" / "s"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr == f"config error: state.path: directory {tmp_path / 'x'} does not exist\n"


def _stored(samples: Sample) -> Sample:
    """The samples of the counters the state file keeps."""
    stored = ("room_sessions_completed", "room_sessions_cost", "room_session_duration", "sessions_skipped")
    return {
        key: v for key, v in samples.items() if key[0].removeprefix("signalwire_video_").startswith(stored)
    }


def _exporter_with_state(sim: FakeSpace, path: Path, clock: list[float] | None = None) -> Exporter:
    exporter = Exporter(sim)
    state = StateFile(str(path), exporter.config.duration_buckets)
    resumed = state.load(["test"])
    if "test" in resumed:
        exporter.snapshots.publish(SpaceSnapshot("test", totals=resumed["test"].totals))
    exporter.poller = SpacePoller(
        exporter.config.spaces[0],
        exporter.config,
        exporter.snapshots,
        threading.Event(),
        clock=(lambda: clock[0]) if clock else time.time,
        state=state,
        accounting=resumed.get("test"),
    )
    return exporter


def test_restart_resumes_counters_and_counts_what_ended_while_down(sim: FakeSpace, tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    a = sim.add_session(name="a")
    first = _exporter_with_state(sim, path)
    assert first.poll()
    sim.complete_session(a, cost_in_dollars=1.25)
    assert first.poll()
    assert first.value("signalwire_video_room_sessions_cost_dollars_total", **qf("720p", "30")) == 1.25
    b = sim.add_session(name="b")
    assert first.poll()
    # the exporter is down: b (seen in progress) ends, c starts and ends unseen
    sim.complete_session(b, cost_in_dollars=2.0)
    c = sim.add_session(name="c", quality="1080p")
    sim.complete_session(c, cost_in_dollars=0.5)
    second = _exporter_with_state(sim, path)
    assert second.value("signalwire_video_room_sessions_cost_dollars_total", **qf("720p", "30")) == 1.25
    assert second.poll()
    assert second.poll()
    assert second.value("signalwire_video_room_sessions_completed_total", **qf("720p", "30")) == 2
    assert second.value("signalwire_video_room_sessions_cost_dollars_total", **qf("720p", "30")) == 3.25
    assert second.value("signalwire_video_room_sessions_cost_dollars_total", **qf("1080p", "30")) == 0.5


def test_sessions_that_ended_beyond_max_backfill_are_skipped_and_counted(
    sim: FakeSpace, tmp_path: Path
) -> None:
    path = tmp_path / "state.json"
    now = time.time()
    clock = [now - 3 * 86400]  # the exporter last ran three days ago
    a = sim.add_session(name="a", start_time=now - 3 * 86400 - 60, created_at=now - 3 * 86400 - 60)
    first = _exporter_with_state(sim, path, clock)
    assert first.poll()
    sim.complete_session(a, cost_in_dollars=4.0, end_time=now - 2 * 86400)  # ended two days ago
    clock[0] = now
    second = _exporter_with_state(sim, path, clock)
    assert second.poll()
    assert second.value("signalwire_video_room_sessions_completed_total", **qf("720p", "30")) == 0
    assert second.value("signalwire_video_sessions_skipped_total", reason="backfill_limit") == 1


def test_unwritable_state_fails_the_poll_and_changes_nothing(sim: FakeSpace, tmp_path: Path) -> None:
    directory = tmp_path / "state"
    directory.mkdir()
    a = sim.add_session()
    exporter = _exporter_with_state(sim, directory / "state.json")
    assert exporter.poll()
    sim.complete_session(a, cost_in_dollars=1.0)
    (directory / "state.json").unlink()
    directory.rmdir()
    assert not exporter.poll()
    assert exporter.value("signalwire_video_up") == 0
    assert exporter.value("signalwire_video_poll_errors_total", reason="state_write") == 1
    assert exporter.value("signalwire_video_room_sessions_completed_total", **qf("720p", "30")) == 0
    directory.mkdir()
    assert exporter.poll()
    assert exporter.value("signalwire_video_room_sessions_completed_total", **qf("720p", "30")) == 1


def test_server_shows_resumed_counters_before_its_first_poll(tmp_path: Path) -> None:
    """Prometheus sees no counter reset across a restart, even while the first poll hangs."""
    state = tmp_path / "state.json"
    StateFile(str(state), DEFAULT_DURATION_BUCKETS).save("x", SAMPLE)
    port = free_port()
    with stalling_api() as api:
        config = write_config(tmp_path, api, port=port)
        with running_exporter(tmp_path, port, "--config", str(config), "--state-file", str(state)) as proc:
            proc.wait_healthy()
            body = proc.get("/metrics").text
            assert proc.get("/-/ready").status_code == 503  # the first poll is still hanging
    assert 'signalwire_video_room_sessions_completed_total{fps="30",quality="720p",space="x"} 2.0' in body
    assert (
        'signalwire_video_room_sessions_cost_dollars_total{fps="unknown",quality="other",space="x"} 3.0'
        in body
    )
    assert (
        'signalwire_video_room_session_duration_seconds_sum{fps="30",quality="720p",space="x"} 700.0' in body
    )


def test_counting_start_survives_a_crash_before_the_first_successful_poll(tmp_path: Path) -> None:
    with FakeSpace(CLI_PROJECT, CLI_TOKEN) as sim:
        _count_after_a_failed_first_run(sim, tmp_path)


def _count_after_a_failed_first_run(sim: FakeSpace, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    a = sim.add_session()
    config = write_config(tmp_path, sim.base_url, token="wrong-token")
    failed = run_cli("--once", "--config", str(config), "--state-file", str(state))
    assert failed.returncode == 1
    stored = json.loads(state.read_text())["spaces"]["x"]
    assert stored["counting_start"] == pytest.approx(time.time(), abs=30)
    assert stored["last_success"] is None
    sim.complete_session(a, cost_in_dollars=2.0)  # ended after counting started: it must count
    config = write_config(tmp_path, sim.base_url)
    resumed = run_cli("--once", "--config", str(config), "--state-file", str(state))
    assert resumed.returncode == 0, resumed.stderr
    assert 'signalwire_video_room_sessions_cost_dollars_total{fps="30",quality="720p",space="x"} 2.0' in (
        resumed.stdout
    )
