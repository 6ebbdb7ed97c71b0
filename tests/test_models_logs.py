"""Video logs as decoded from their pages: exact values, deleted logs, bad records set apart, and the
rules the bill relies on (kind, session id, completed, validity)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from exporter.models import MAX_COST, ChargeDetail, InvalidResponse, VideoLog, decode_log, decode_logs_page

from .conftest import page

T0 = datetime(2026, 11, 18, 11, 6, 40, tzinfo=UTC)
SESSION = "a1b2c3d4-5e6f-7890-abcd-ef1234567890"
LOG = {
    "id": "c22d24f6-5a47-4597-9a23-c7d01e696b92",
    "source": "realtime_api",
    "type": "video_room_session",
    "url": f"https://example.signalwire.com/api/video/room_sessions/{SESSION}",
    "room_name": "standup",
    "status": "completed",
    "locked": False,
    "started_at": "2026-11-18T11:06:40Z",
    "ended_at": "2026-11-18T11:08:40Z",
    "charge": 0.0123,
    "created_at": "2026-11-18T11:06:40Z",
    "charge_details": [
        {"description": "Video room session minutes", "charge": 0.0100},
        {"description": "Video recording", "charge": 0.0023},
    ],
}
DISCARDED = {
    "id": "0f4b1c1e-9d51-4d3b-8a57-2f1d5f0c2a10",
    "discarded_at": "2026-11-18T12:00:00Z",
    "created_at": "2026-11-18T11:06:40Z",
}


def log(**fields: Any) -> VideoLog:
    """LOG with ``fields``, decoded; what JSON cannot carry (NaN, infinities, ChargeDetail lists that
    hold them) set after decoding."""
    carried = {k: v for k, v in fields.items() if not _after_decoding(v)}
    [decoded], _, [] = decode_logs_page(page({**LOG, **carried}))
    return msgspec.structs.replace(decoded, **{k: v for k, v in fields.items() if k not in carried})


def _after_decoding(value: object) -> bool:
    if isinstance(value, list):
        return any(isinstance(item, ChargeDetail) for item in value)
    return isinstance(value, float) and not math.isfinite(value)


def test_a_logs_page_decodes_exactly() -> None:
    logs, next_link, malformed = decode_logs_page(page(LOG, DISCARDED, next_link="/next"))
    assert logs == [
        VideoLog(
            LOG["id"],
            T0,
            "video_room_session",
            LOG["url"],
            "standup",
            "completed",
            T0,
            datetime(2026, 11, 18, 11, 8, 40, tzinfo=UTC),
            0.0123,
            [ChargeDetail("Video room session minutes", 0.01), ChargeDetail("Video recording", 0.0023)],
        ),
        VideoLog(DISCARDED["id"], created_at=T0, discarded_at=datetime(2026, 11, 18, 12, tzinfo=UTC)),
    ]
    assert (next_link, malformed) == ("/next", [])
    done, deleted = logs
    assert (done.kind, done.session_id, done.completed, done.deleted) == (
        "room_session",
        SESSION,
        True,
        False,
    )
    assert (done.created_ts, done.ended_ts, done.invalid_reason()) == (
        T0.timestamp(),
        T0.timestamp() + 120,
        None,
    )
    assert (deleted.kind, deleted.session_id, deleted.completed, deleted.deleted) == (
        "other",
        None,
        False,
        True,
    )
    assert (deleted.ended_ts, deleted.invalid_reason()) == (None, None)


def test_bad_records_are_set_apart_with_their_id() -> None:
    bad = [
        {**LOG, "id": "bad-time", "ended_at": "yesterday"},
        {**LOG, "id": "bad-charge", "charge": "a lot"},
        {**LOG, "id": "bad-details", "charge_details": {"description": "minutes"}},
        {**LOG, "id": "bad-detail", "charge_details": [{"description": "minutes", "charge": "0.01"}]},
        {**LOG, "id": "huge", "charge": 0.0124},  # 1e999 below: out of a float's range
        {**LOG, "id": 7},
        "not an object",
    ]
    body = page(LOG, *bad, {**LOG, "id": "good-2"}).replace(b"0.0124", b"1e999")
    logs, _, malformed = decode_logs_page(body)
    assert [entry.id for entry in logs] == [LOG["id"], "good-2"]
    assert malformed == ["bad-time", "bad-charge", "bad-details", "bad-detail", "huge", None, None]


def test_a_malformed_log_in_progress_is_kept_as_its_id_creation_and_status() -> None:
    garbled = {"charge": "a lot", "ended_at": None}
    records = [
        {**LOG, **garbled, "id": "running", "status": "in-progress"},
        {**LOG, **garbled, "id": "null-open", "status": None},
        {**LOG, **garbled, "id": "null-ended", "status": None, "ended_at": LOG["ended_at"]},
        {**LOG, **garbled, "id": "done", "status": "completed"},
        {**LOG, **garbled, "id": "odd", "status": "archived"},
        {**LOG, **garbled, "id": "no-created", "status": "in-progress", "created_at": "yesterday"},
        {**DISCARDED, "id": "deleted", "discarded_at": "yesterday"},
    ]
    logs, _, malformed = decode_logs_page(page(*records))
    assert logs == [VideoLog("running", T0, status="in-progress"), VideoLog("null-open", T0)]
    assert malformed == ["null-ended", "done", "odd", "no-created", "deleted"]
    assert decode_log(msgspec.json.encode(records[0])) == logs[0]
    with pytest.raises(InvalidResponse, match="not a video log"):
        decode_log(msgspec.json.encode(records[3]))


@pytest.mark.parametrize("body", [b"<html>", b'{"data": []}', b'{"links": {}, "data": {}}', b"[]"])
def test_a_malformed_page_is_an_invalid_response(body: bytes) -> None:
    with pytest.raises(InvalidResponse, match="not a logs page"):
        decode_logs_page(body)


def test_times_are_epoch_seconds_and_naive_means_utc() -> None:
    naive = log(created_at="2026-11-18T11:06:40", ended_at="2026-11-18T13:08:40+02:00")
    assert (naive.created_ts, naive.ended_ts) == (T0.timestamp(), T0.timestamp() + 120)
    with pytest.raises(ValueError):  # the spec requires created_at: a record without it is malformed
        log(created_at=None, ended_at=None, status="in-progress")
    _, _, malformed = decode_logs_page(
        page({**LOG, "created_at": None}, {k: v for k, v in LOG.items() if k != "created_at"})
    )
    assert malformed == [LOG["id"], LOG["id"]]


@pytest.mark.parametrize(
    ("type_", "kind"),
    [
        ("video_room_session", "room_session"),
        ("video_conference_session", "conference_session"),
        (None, "other"),
        ("video_webinar", "other"),
        ("", "other"),
    ],
)
def test_kind(type_: str | None, kind: str) -> None:
    assert log(type=type_).kind == kind


@pytest.mark.parametrize(
    ("url", "session_id"),
    [
        (LOG["url"], SESSION),
        (f"https://example.signalwire.com/api/video/room_sessions/{SESSION}?x=1#top", SESSION),
        (f"/api/video/room_sessions/{SESSION}", SESSION),  # relative
        (f"https://proxy.example/sw/api/video/room_sessions/{SESSION}", SESSION),
        ("https://example.signalwire.com/api/video/room_sessions/a%2Fb", "a/b"),
        (f"https://example.signalwire.com/api/video/room_sessions/{SESSION}/", None),
        (f"https://example.signalwire.com/api/video/room_sessions/{SESSION}/members", None),
        ("https://example.signalwire.com/api/video/room_sessions", None),
        ("https://example.signalwire.com/api/video/room_sessions/", None),
        (f"https://example.signalwire.com/api/video/conferences/{SESSION}", None),
        (f"https://example.signalwire.com/api/video/xroom_sessions/{SESSION}", None),
        (f"https://example.signalwire.com/?next=/api/video/room_sessions/{SESSION}", None),
        (f"http://[::1/api/video/room_sessions/{SESSION}", None),  # not a URL
        ("", None),
        (None, None),
    ],
)
def test_session_id_comes_from_the_url_path(url: str | None, session_id: str | None) -> None:
    assert log(url=url).session_id == session_id


@pytest.mark.parametrize(
    ("fields", "completed"),
    [
        ({}, True),
        ({"status": "in-progress", "ended_at": None}, False),
        ({"status": "in-progress"}, False),  # the status wins over an end time
        ({"status": None}, True),  # null status, but it ended
        ({"status": None, "ended_at": None}, False),
        ({"status": "cancelled"}, False),
    ],
)
def test_completed(fields: dict[str, Any], completed: bool) -> None:
    assert log(**fields).completed is completed


def detail(charge: float | None) -> list[ChargeDetail]:
    return [ChargeDetail("Video room session minutes", 0.01), ChargeDetail("Video recording", charge)]


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({}, None),
        ({"charge": 0, "charge_details": []}, None),
        ({"charge_details": None}, None),  # no details: nothing to split, not invalid
        ({"charge": MAX_COST}, None),
        # not completed: nothing to count yet, whatever its numbers
        ({"status": "in-progress", "charge": None}, None),
        ({"status": None, "ended_at": None, "charge": -1.0}, None),
        ({"status": None, "charge": None}, "invalid_charge"),
        ({"charge": None}, "invalid_charge"),
        ({"charge": -0.01}, "invalid_charge"),
        ({"charge": MAX_COST * 2}, "invalid_charge"),
        ({"charge": math.inf}, "invalid_charge"),
        ({"charge": math.nan}, "invalid_charge"),
        ({"charge_details": detail(None)}, "invalid_charge_details"),
        ({"charge_details": detail(-0.0001)}, "invalid_charge_details"),
        ({"charge_details": detail(MAX_COST * 2)}, "invalid_charge_details"),
        ({"charge_details": detail(math.nan)}, "invalid_charge_details"),
        ({"charge_details": detail(-math.inf)}, "invalid_charge_details"),
        ({"charge": None, "charge_details": detail(None)}, "invalid_charge"),
    ],
)
def test_invalid_reason(fields: dict[str, Any], reason: str | None) -> None:
    assert log(**fields).invalid_reason() == reason
