"""Members and recordings as decoded from their pages: exact values, bad records set apart, and the
validity rules that keep a bad record out of the counters."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from exporter.models import (
    MAX_COST,
    MAX_DURATION,
    InvalidResponse,
    Member,
    Recording,
    decode_members_page,
    decode_recordings_page,
)

from .conftest import page

T0 = datetime(2026, 11, 18, 11, 6, 40, tzinfo=UTC)
MEMBER = {
    "id": "m-1",
    "room_session_id": "s-1",
    "name": "Ada",
    "join_time": "2026-11-18T11:06:40Z",
    "leave_time": "2026-11-18T11:08:40Z",
    "duration": 120,
    "cost_in_dollars": 0.007,
}
RECORDING = {
    "id": "r-1",
    "room_session_id": "s-1",
    "status": "completed",
    "started_at": "2026-11-18T11:06:40Z",
    "finished_at": "2026-11-18T11:08:40Z",
    "duration": 120,
    "size_in_bytes": 45_000_000,
    "format": "video/mp4",
    "cost_in_dollars": 0.009,
    "uri": None,
    "created_at": "2026-11-18T11:06:40Z",
    "updated_at": "2026-11-18T11:09:10Z",
}


def test_a_members_page_decodes_exactly() -> None:
    never = {**MEMBER, "id": "m-2", "name": None, "join_time": None, "leave_time": None, "duration": None}
    members, next_link, malformed = decode_members_page(page(MEMBER, never, next_link="/next"))
    assert members == [
        Member("m-1", "s-1", "Ada", T0, datetime(2026, 11, 18, 11, 8, 40, tzinfo=UTC), 120, 0.007),
        Member("m-2", "s-1", None, None, None, None, 0.007),
    ]
    assert (next_link, malformed) == ("/next", [])
    assert (members[0].joined, members[1].joined) == (True, False)


def test_a_recordings_page_decodes_exactly() -> None:
    [recording], next_link, malformed = decode_recordings_page(page(RECORDING))
    assert recording == Recording(
        "r-1",
        "s-1",
        "completed",
        T0,
        datetime(2026, 11, 18, 11, 8, 40, tzinfo=UTC),
        120,
        45_000_000,
        "video/mp4",
        0.009,
    )
    assert (next_link, malformed, recording.is_completed, recording.seconds) == (None, [], True, 120)


@pytest.mark.parametrize(
    ("decode", "good"), [(decode_members_page, MEMBER), (decode_recordings_page, RECORDING)]
)
def test_bad_records_are_set_apart_with_their_id(decode: Any, good: dict[str, Any]) -> None:
    bad = [
        {**good, "id": "bad-time", next(k for k in good if k.endswith(("_time", "_at"))): "yesterday"},
        {**good, "id": "bad-number", "duration": "long"},
        {**good, "id": 7},
        "not an object",
    ]
    records, _, malformed = decode(page(good, *bad, {**good, "id": "good-2"}))
    assert [r.id for r in records] == [good["id"], "good-2"]
    assert malformed == ["bad-time", "bad-number", None, None]


@pytest.mark.parametrize(
    ("decode", "listing"), [(decode_members_page, "members"), (decode_recordings_page, "recordings")]
)
@pytest.mark.parametrize("body", [b"<html>", b'{"data": []}', b'{"links": {}, "data": {}}', b"[]"])
def test_a_malformed_page_is_an_invalid_response(decode: Any, listing: str, body: bytes) -> None:
    with pytest.raises(InvalidResponse, match=f"not a {listing} page"):
        decode(body)


def test_numbers_out_of_range_set_a_record_apart() -> None:
    for decode, good in ((decode_members_page, MEMBER), (decode_recordings_page, RECORDING)):
        body = page(good).replace(b'"duration": 120', b'"duration": 1e999')
        assert decode(body) == ([], None, [good["id"]])


def member(**fields: Any) -> Member:
    """MEMBER with ``fields``, decoded; NaN and infinities (which JSON cannot carry) set after decoding."""
    finite = {k: v for k, v in fields.items() if not (isinstance(v, float) and not math.isfinite(v))}
    [decoded], _, [] = decode_members_page(page({**MEMBER, **finite}))
    return msgspec.structs.replace(decoded, **{k: v for k, v in fields.items() if k not in finite})


def recording(**fields: Any) -> Recording:
    """RECORDING with ``fields``, decoded; NaN and infinities set after decoding."""
    finite = {k: v for k, v in fields.items() if not (isinstance(v, float) and not math.isfinite(v))}
    [decoded], _, [] = decode_recordings_page(page({**RECORDING, **finite}))
    return msgspec.structs.replace(decoded, **{k: v for k, v in fields.items() if k not in finite})


def test_member_times_are_epoch_seconds_and_naive_means_utc() -> None:
    naive = member(join_time="2026-11-18T11:06:40", leave_time="2026-11-18T13:08:40+02:00")
    assert (naive.join_ts, naive.leave_ts) == (T0.timestamp(), T0.timestamp() + 120)
    assert member(join_time=None, leave_time=None).join_ts is None


@pytest.mark.parametrize(
    ("fields", "seconds"),
    [
        ({}, 120),
        ({"duration": None}, 120),  # from the times
        ({"duration": 30}, 30),  # the API's duration wins
        ({"duration": None, "leave_time": None}, None),  # still present
        ({"duration": None, "join_time": None, "leave_time": None}, None),  # never joined
    ],
)
def test_member_seconds(fields: dict[str, Any], seconds: float | None) -> None:
    assert member(**fields).seconds == seconds


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({}, None),
        ({"duration": None, "leave_time": None, "cost_in_dollars": 0}, None),
        ({"join_time": None, "leave_time": None, "duration": None}, None),
        ({"cost_in_dollars": None}, None),  # adds nothing
        ({"leave_time": "2026-11-18T11:06:39Z", "duration": None}, "invalid_times"),
        ({"leave_time": "2026-11-18T11:06:39Z"}, "invalid_times"),
        ({"duration": -5}, "invalid_duration"),
        ({"duration": MAX_DURATION + 1}, "invalid_duration"),
        ({"duration": math.inf}, "invalid_duration"),
        ({"duration": math.nan}, "invalid_duration"),
        ({"cost_in_dollars": -0.01}, "invalid_cost"),
        ({"cost_in_dollars": MAX_COST * 2}, "invalid_cost"),
        ({"cost_in_dollars": -math.inf}, "invalid_cost"),
        ({"cost_in_dollars": math.nan}, "invalid_cost"),
    ],
)
def test_member_invalid_reason(fields: dict[str, Any], reason: str | None) -> None:
    assert member(**fields).invalid_reason() == reason


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({}, None),
        ({"duration": None}, None),  # from the times
        ({"size_in_bytes": 0, "cost_in_dollars": 0, "duration": 0}, None),
        # not completed: nothing to count yet, whatever its numbers
        ({"status": "processing", "size_in_bytes": None, "duration": None}, None),
        ({"status": "recording", "cost_in_dollars": -1}, None),
        ({"status": None}, None),
        ({"finished_at": "2026-11-18T11:06:39Z"}, "invalid_times"),
        ({"duration": None, "finished_at": None}, "missing_duration"),
        ({"duration": None, "started_at": None, "finished_at": None}, "missing_duration"),
        ({"duration": -1}, "invalid_duration"),
        ({"duration": math.inf}, "invalid_duration"),
        ({"duration": math.nan}, "invalid_duration"),
        ({"size_in_bytes": None}, "invalid_size"),
        ({"size_in_bytes": -1}, "invalid_size"),
        ({"size_in_bytes": 10**15 + 1}, "invalid_size"),
        ({"cost_in_dollars": None}, "invalid_cost"),
        ({"cost_in_dollars": -0.01}, "invalid_cost"),
        ({"cost_in_dollars": MAX_COST * 2}, "invalid_cost"),
        ({"cost_in_dollars": math.nan}, "invalid_cost"),
    ],
)
def test_recording_invalid_reason(fields: dict[str, Any], reason: str | None) -> None:
    assert recording(**fields).invalid_reason() == reason
