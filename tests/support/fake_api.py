"""The tests' fake SignalWire API: the demo's simulated space, plus what tests need to bend it.

:class:`FakeSpace` adds fault injection (``fail_next``: any status, body and headers, or a
reset, truncated or dripping delivery, on any endpoint), request recording (``requests``),
``latency``, concurrency counts (``in_flight``, ``max_in_flight``), ``next_link_hook``, relative
links, raw records listed verbatim (sessions, members, recordings, logs), sessions that reopen or
vanish, members, recordings and logs changed at will (``update_member``, ``update_recording``,
``update_log``), logs deleted (``delete_log``), and the ground truth (``sessions``, ``members``,
``recordings``, ``logs``).
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from http.client import responses
from operator import attrgetter
from typing import Any, ClassVar, Literal, NamedTuple

from exporter.simulator import (
    Child,
    Endpoint,
    Entry,
    ListQuery,
    Request,
    RequestHandler,
    Response,
    SimulatedSpace,
    errors_body,
)

FaultKind = Literal["respond", "reset", "truncate", "drip"]
# What update_member and update_recording set on the simulated member or recording (times in
# epoch seconds, as add_member and add_recording take them); any other field is served verbatim.
MEMBER_SCRIPT = ("name", "join_time", "leave_time")
RECORDING_SCRIPT = ("started_at", "finished_at", "processing")


@dataclass(frozen=True)
class FaultyResponse(Response):
    """A response delivered as ``kind`` says (see :meth:`FakeSpace.fail_next`)."""

    kind: FaultKind = "respond"
    delay: float = 0.1  # drip: seconds between two bytes of the body


@dataclass
class _Fault:
    response: FaultyResponse
    remaining: int
    endpoint: Endpoint | None


class _Raw(NamedTuple):
    """A record from ``add_raw_record`` (listed verbatim for ``status``, never served by GET), from
    ``add_raw_member`` or ``add_raw_recording`` (listed verbatim with a session's), or from
    ``add_raw_log`` (listed verbatim with the logs)."""

    pos: tuple[float, str, int]
    status: str
    fixed: dict[str, Any]

    @property
    def key(self) -> tuple[float, str]:
        return self.pos[:2]

    def record(self, now: float) -> dict[str, Any]:
        return self.fixed

    def served(self, name: str) -> Any:
        return self.fixed.get(name)


def _default_fault_body(status: int) -> dict[str, Any]:
    if status == 422:
        return errors_body("validation_error", "invalid_parameter", "Invalid parameter", None)
    if status == 429:
        return errors_body("rate_limit_error", "rate_limit_exceeded", "Too many requests", None)
    return {"error": responses.get(status, "Error")}


class _FaultyHandler(RequestHandler):
    """Counts requests in flight and delivers faulty responses as their ``kind`` says."""

    space: FakeSpace

    def do_GET(self) -> None:
        with self.space._answering():
            super().do_GET()

    def send(self, response: Response) -> None:
        if not isinstance(response, FaultyResponse) or response.kind == "respond":
            super().send(response)
        elif response.kind == "reset":  # close with RST, no response at all
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
        elif response.kind == "truncate":  # promise one byte more than the body, then close
            self.close_connection = True
            with suppress(BrokenPipeError, ConnectionResetError):
                self.send_head(response, len(response.body) + 1)
                self.wfile.write(response.body)
        else:
            self._drip(response)

    def _drip(self, response: FaultyResponse) -> None:
        """The body one byte every ``response.delay`` seconds, until it is sent or the space stops."""
        try:
            self.send_head(response, len(response.body))
            for i in range(len(response.body)):
                self.wfile.write(response.body[i : i + 1])
                if self.space._stopped.wait(response.delay):
                    break
        except (BrokenPipeError, ConnectionResetError):  # the client went away (or was killed)
            self.close_connection = True


class FakeSpace(SimulatedSpace):
    """A :class:`SimulatedSpace` with faults, recording and odd data for the tests."""

    handler: ClassVar[type[RequestHandler]] = _FaultyHandler

    def __init__(
        self, *args: Any, link_style: Literal["absolute", "relative"] = "absolute", **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._link_style = link_style
        self._raw: list[_Raw] = []
        self._raw_logs: list[_Raw] = []
        self._faults: list[_Fault] = []
        self._stopped = threading.Event()  # ends latency waits and drips
        self.next_link_hook: Callable[[str], str | None] | None = None
        self.requests: list[Request] = []
        self.latency: float = 0.0  # seconds each request waits, once recorded, before its answer
        self.in_flight = 0  # requests being answered now
        self.max_in_flight = 0  # the most ever answered at once

    def stop(self) -> None:
        self._stopped.set()
        super().stop()
        self._stopped = threading.Event()

    # --- scripting beyond the demo ---------------------------------------------------------

    def reopen_session(self, session_id: str) -> None:
        """Put a completed session back in progress (an API that flips its status back)."""
        with self._lock:
            session = self._sessions[session_id]
            old_status = session.status
            session.end_time = None
            self._changed(session, old_status)

    def delete_session(self, session_id: str) -> None:
        """Remove a session: absent from lists and 404 on GET."""
        with self._lock:
            self._unfile(self._sessions.pop(session_id))

    def add_raw_record(
        self, record: dict[str, Any], status: str = "completed", created_at: float | None = None
    ) -> None:
        """Serve ``record`` verbatim in lists (unfiltered or for ``status``); never on GET."""
        with self._lock:
            raw = self._raw_entry(record, status, created_at)
            self._raw.append(raw)
            self._file(raw)

    def _has_session(self, session_id: str) -> bool:
        """Raw records have members and recordings too (for the golden test)."""
        return super()._has_session(session_id) or any(raw.fixed.get("id") == session_id for raw in self._raw)

    def add_raw_member(self, session_id: str, record: dict[str, Any], listed_at: float | None = None) -> None:
        """List ``record`` verbatim with the session's members (from ``listed_at``, default now)."""
        with self._lock:
            self._roster("members", session_id).add(self._raw_entry(record, "", listed_at))

    def add_raw_recording(
        self, session_id: str, record: dict[str, Any], listed_at: float | None = None
    ) -> None:
        """List ``record`` verbatim with the session's recordings (from ``listed_at``, default now)."""
        with self._lock:
            self._roster("recordings", session_id).add(self._raw_entry(record, "", listed_at))

    def add_raw_log(self, record: dict[str, Any], created_at: float | None = None) -> None:
        """List ``record`` verbatim with the logs, as created at ``created_at`` (default now)."""
        with self._lock:
            raw = self._raw_entry(record, "", created_at)
            self._raw_logs.append(raw)
            self._file_log(raw)

    def _raw_entry(self, record: dict[str, Any], status: str, at: float | None) -> _Raw:
        """``record`` as a list entry placed at ``at`` (default now) by its id (call with the lock held)."""
        raw_id = record.get("id")
        sort_id = raw_id if isinstance(raw_id, str) else str(uuid.uuid4())
        return _Raw((self._clock() if at is None else at, sort_id, -next(self._seq)), status, record)

    def update_member(self, member_id: str, **fields: Any) -> None:
        """Change a member: ``MEMBER_SCRIPT`` fields as add_member takes them, others verbatim.

        ``update_member(mid, leave_time=t)``: it leaves at ``t``; ``duration=-5``: served as is.
        A member keeps its place in the listing.
        """
        with self._lock:
            _update(self._members[member_id], MEMBER_SCRIPT, fields)

    def update_recording(self, recording_id: str, **fields: Any) -> None:
        """Change a recording: ``RECORDING_SCRIPT`` fields as add_recording takes them, others verbatim.

        ``processing=0``: completed once stopped; ``processing=math.inf``: never completed;
        ``size_in_bytes=None``: served as is.
        """
        with self._lock:
            _update(self._recordings[recording_id], RECORDING_SCRIPT, fields)

    def update_log(self, log_id: str, **fields: Any) -> None:
        """Serve these fields of a log verbatim: ``charge=0.5``, ``status=None``, ``ended_at=None``..."""
        with self._lock:
            self._logs[log_id].overrides.update(fields)

    def restore_log(self, log_id: str) -> None:
        """Serve a log as the simulator makes it again, without the fields ``update_log`` set."""
        with self._lock:
            self._logs[log_id].overrides.clear()

    def delete_log(self, log_id: str) -> None:
        """Delete a log now: listed only with ``include_deleted``, as ``{id, discarded_at, created_at}``."""
        with self._lock:
            log = self._logs[log_id]
            if log.discarded_at is None:
                self._unfile_log(log)
                log.discarded_at = self._clock()
                self._file_log(log)

    def log_of(self, session_id: str) -> str:
        """The id of a room session's log (a deleted session keeps its log)."""
        with self._lock:
            return self._log_of[session_id].id

    def _entries(self) -> Iterable[Entry]:
        return [*super()._entries(), *self._raw]

    def _log_entries(self) -> Iterable[Entry]:
        return [*super()._log_entries(), *self._raw_logs]

    def _find_log(self, log_id: str) -> Entry | None:
        raw = [entry for entry in self._raw_logs if entry.fixed.get("id") == log_id]
        return raw[-1] if raw else super()._find_log(log_id)

    def sessions(self) -> list[dict[str, Any]]:
        """Ground truth: every session's record as the list endpoint serves it now, newest first.

        Raw records from ``add_raw_record`` are not sessions and are left out.
        """
        with self._lock:
            now = self._clock()
            newest_first = sorted(self._sessions.values(), key=attrgetter("pos"), reverse=True)
            return [dict(session.record(now)) for session in newest_first]

    def members(self, session_id: str) -> list[dict[str, Any]]:
        """Ground truth: the session's members as its members listing serves them now, newest first.

        Raw records from ``add_raw_member`` are left out; KeyError for an unknown session (the API: 404).
        """
        return self._served("members", session_id)

    def recordings(self, session_id: str) -> list[dict[str, Any]]:
        """Ground truth: the session's recordings as served now, newest first (as ``members``)."""
        return self._served("recordings", session_id)

    def logs(self, include_deleted: bool = False) -> list[dict[str, Any]]:
        """Ground truth: every log as the logs listing serves it now (deleted ones only with
        ``include_deleted``), newest first; raw logs from ``add_raw_log`` are left out."""
        with self._lock:
            now = self._clock()
            logs = [log for log in self._logs.values() if include_deleted or log.discarded_at is None]
            return [dict(log.record(now)) for log in sorted(logs, key=attrgetter("pos"), reverse=True)]

    def _served(self, child: Child, session_id: str) -> list[dict[str, Any]]:
        with self._lock:
            now = self._clock()
            listing = self._roster(child, session_id).listed(now)
            return [dict(entry.record(now)) for entry in reversed(listing.all) if not isinstance(entry, _Raw)]

    # --- faults ----------------------------------------------------------------------------

    def fail_next(
        self,
        status: int,
        *,
        body: bytes | dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        times: int = 1,
        endpoint: Endpoint | None = None,
        kind: FaultKind = "respond",
        delay: float = 0.1,
    ) -> None:
        """Answer the next ``times`` requests to ``endpoint`` (None: any) with this response, before
        even auth. Endpoints: ``list``, ``get``, ``members``, ``recordings``, ``logs``.

        ``kind`` is how it is delivered: ``respond`` normally; ``reset`` closes the connection
        without any response (TCP RST); ``truncate`` announces one byte more than the body
        (Content-Length) and closes after the body; ``drip`` sends the body one byte every
        ``delay`` seconds.
        """
        payload = _default_fault_body(status) if body is None else body
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        response = FaultyResponse(status, data, headers or {}, kind, delay)
        with self._lock:
            self._faults.append(_Fault(response, times, endpoint))

    def clear_faults(self) -> None:
        """Forget every fault not yet served."""
        with self._lock:
            self._faults.clear()

    @contextmanager
    def _answering(self) -> Iterator[None]:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            yield
        finally:
            with self._lock:
                self.in_flight -= 1

    def _respond(self, request: Request) -> Response:
        with self._lock:
            self.requests.append(request)
            fault = self._take_fault(request.endpoint)
        if self.latency > 0:  # outside the lock: other requests and scripted changes go on
            self._stopped.wait(self.latency)
        return super()._respond(request) if fault is None else fault

    def _take_fault(self, endpoint: Endpoint | None) -> FaultyResponse | None:
        for fault in self._faults:
            if fault.endpoint in (None, endpoint):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                return fault.response
        return None

    def _links(self, params: ListQuery, page: list[Entry], more: bool) -> dict[str, str]:
        links = super()._links(params, page, more)
        if self._link_style == "relative":
            links = {name: link.removeprefix(self.base_url) for name, link in links.items()}
        if "next" in links and self.next_link_hook is not None:
            bent = self.next_link_hook(links["next"])
            if bent is None:
                del links["next"]
            else:
                links["next"] = bent
        return links


def _update(child: Any, scripted: tuple[str, ...], fields: dict[str, Any]) -> None:
    """Set the ``scripted`` fields on a simulated member or recording; serve the others verbatim."""
    for name, value in fields.items():
        if name in scripted:
            setattr(child, name, value)
        else:
            child.overrides[name] = value
