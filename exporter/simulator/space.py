"""SimulatedSpace: the simulated space served on 127.0.0.1, each request routed to its answer
(sessions, a session's members or recordings, logs; lists parsed into filters and page tokens)."""

from __future__ import annotations

import base64
import json
import math
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from http.client import responses
from http.server import ThreadingHTTPServer
from typing import ClassVar
from urllib.parse import urlencode

from .http import LIST_PATH, LOGS_PATH, Request, RequestHandler, Response, errors_body
from .listings import ANY_TIME, Child, Cursor, Entry, Listing, ListQuery
from .traffic import TrafficSpace

STATUSES = ("in-progress", "completed")
LIST_ONLY_FIELDS = ("cost_in_dollars", "enable_room_previews", "locked_cover")
FILTERS = ("room_id", "room_name", "room_name_matches", "status")
LOG_FILTERS = ("created_after", "created_before", "created_on", "include_deleted")


def _json(status: int, payload: object) -> Response:
    return Response(status, json.dumps(payload).encode())


def _error(status: int) -> Response:
    return _json(status, {"error": responses.get(status, "Error")})


def _invalid(attribute: str, message: str, code: str | None = None) -> Response:
    code = code or f"{attribute}_is_invalid"
    return _json(422, errors_body("validation_error", code, message, attribute))


def _encode(cursor: Cursor) -> str:
    """An opaque ``page_token``: "PA" + urlsafe base64 of the keyset position and direction."""
    raw = json.dumps(["a" if cursor.after else "b", *cursor.key], separators=(",", ":"))
    return "PA" + base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode(token: str) -> Cursor | None:
    """Decode a ``page_token``; None when it is not one this space issued."""
    if not token.startswith("PA"):
        return None
    try:
        direction, created, sid = json.loads(base64.urlsafe_b64decode(token[2:] + "=="))
    except (ValueError, TypeError):
        return None
    valid = direction in ("a", "b") and isinstance(sid, str)
    if not valid or isinstance(created, bool) or not isinstance(created, int | float):
        return None
    return Cursor(direction == "a", (float(created), sid))


def _epoch(value: str) -> float | None:
    """Epoch seconds of a date (its midnight) or an ISO 8601 datetime, UTC unless it says otherwise;
    None when it is neither."""
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def _created_span(query: dict[str, str]) -> tuple[float, float] | Response:
    """The creation times (from, until) a logs query asks for, or its 422.

    As the served ``created_at`` (whole seconds) is compared: ``created_after`` strictly after,
    ``created_before`` strictly before, ``created_on`` within the UTC day of the date or datetime.
    """
    since, until = ANY_TIME
    for name in ("created_after", "created_before", "created_on"):
        if name not in query:
            continue
        when = _epoch(query[name])
        if when is None:
            return _invalid(name, f"{name} must be a date (YYYY-MM-DD) or an ISO 8601 datetime")
        if name == "created_after":
            since = max(since, math.floor(when) + 1)
        elif name == "created_before":
            until = min(until, math.ceil(when))
        else:
            day = when - when % 86400
            since, until = max(since, day), min(until, day + 86400)
    return since, until


def _parse_int(value: str) -> int | None:
    try:
        return int(value)
    except ValueError:
        return None


class SimulatedSpace(TrafficSpace):
    """An in-memory SignalWire space serving the room-sessions API on 127.0.0.1."""

    page_size_default = 50
    page_size_max = 1000
    handler: ClassVar[type[RequestHandler]] = RequestHandler

    # --- lifecycle -------------------------------------------------------------------------

    def start(self, port: int = 0) -> str:
        """Bind 127.0.0.1:``port`` (0: any free port), serve in a daemon thread; return base_url."""
        if self._server is not None:
            raise RuntimeError("simulated space already started")
        self._server = ThreadingHTTPServer(("127.0.0.1", port), partial(self.handler, space=self))
        name = f"simulated-space-{self._server.server_address[1]}"
        serve = partial(self._server.serve_forever, poll_interval=0.05)  # prompt shutdown()
        threading.Thread(target=serve, name=name, daemon=True).start()
        return self.base_url

    def stop(self) -> None:
        """Shut down the server (kept-alive connections included) and traffic; idempotent."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self.stop_traffic()

    def __enter__(self) -> SimulatedSpace:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- HTTP ------------------------------------------------------------------------------

    def _respond(self, request: Request) -> Response:
        """The answer to one request; subclasses may answer otherwise."""
        if request.headers.get("authorization") != self._authorization:
            return _error(401)
        endpoint = request.endpoint
        if endpoint == "list":
            return self._list(request.query)
        if endpoint == "get":
            return self._get(request.session_id)
        if endpoint == "logs":
            return self._list_logs(request.query)
        if endpoint == "log":
            return self._get_log(request.session_id)
        if endpoint is not None:
            return self._list_children(endpoint, request)
        return _error(404)

    def _get(self, session_id: str) -> Response:
        with self._lock:
            session = self._sessions.get(session_id)
            record = None if session is None else session.record(self._clock())
        if record is None:
            return _error(404)
        return _json(200, {k: v for k, v in record.items() if k not in LIST_ONLY_FIELDS})

    def _get_log(self, log_id: str) -> Response:
        """One log (deleted ones as discarded), or 404."""
        with self._lock:
            entry = self._find_log(log_id)
            record = None if entry is None else entry.record(self._clock())
        return _error(404) if record is None else _json(200, record)

    def _find_log(self, log_id: str) -> Entry | None:
        """The log of this id (call with the lock held); subclasses may know more."""
        return self._logs.get(log_id)

    def _list(self, query: dict[str, str]) -> Response:
        params = self._parse_list_query(query)
        if isinstance(params, Response):
            return params
        return self._page(params, lambda now: self._listing)

    def _list_children(self, child: Child, request: Request) -> Response:
        """A page of a session's members or recordings (they take no filters); 404 for an unknown session."""
        query = {name: value for name, value in request.query.items() if name not in FILTERS}
        params = self._parse_list_query(query, request.path)
        if isinstance(params, Response):
            return params
        sid = request.session_id

        def listing(now: float) -> Listing | None:
            return self._roster(child, sid).listed(now) if self._has_session(sid) else None

        return self._page(params, listing)

    def _list_logs(self, query: dict[str, str]) -> Response:
        """A page of the logs created within the query's times; deleted ones with ``include_deleted``."""
        logs_query = {name: value for name, value in query.items() if name not in FILTERS}
        params = self._parse_list_query(logs_query, LOGS_PATH, LOG_FILTERS)
        if isinstance(params, Response):
            return params
        created = _created_span(query)
        if isinstance(created, Response):
            return created
        deleted = query.get("include_deleted", "false").lower()
        if deleted not in ("true", "false"):
            return _invalid("include_deleted", "include_deleted must be true or false")
        params.created = created
        return self._page(
            params, lambda now: self._log_book.everything if deleted == "true" else self._log_book.kept
        )

    def _page(self, params: ListQuery, listing: Callable[[float], Listing | None]) -> Response:
        """One page of ``listing(now)`` (read with the lock held), or 404 when it is None."""
        with self._lock:
            now = self._clock()
            found = listing(now)
            if found is None:
                return _error(404)
            page, more = found.page(params.filters, params.cursor, params.page_size, params.created)
            records = [entry.record(now) for entry in page]
        return _json(200, {"links": self._links(params, page, more), "data": records})

    def _parse_list_query(
        self, query: dict[str, str], path: str = LIST_PATH, filter_names: tuple[str, ...] = FILTERS
    ) -> ListQuery | Response:
        status = query.get("status")
        if status is not None and status not in STATUSES:
            return _invalid("status", f"status must be one of: {', '.join(STATUSES)}")
        size = _parse_int(query.get("page_size", str(self.page_size_default)))
        if size is None or not 1 <= size <= self.page_size_max:
            return _invalid("page_size", f"page_size must be between 1 and {self.page_size_max}")
        number = _parse_int(query.get("page_number", "0"))
        if number is None or number < 0:
            return _invalid("page_number", "page_number must be a non-negative integer")
        token = query.get("page_token")
        if token is None and number > 0:
            return _invalid("page_token", "page_token is required", "page_token_required")
        cursor = None if token is None else _decode(token)
        if token is not None and cursor is None:
            return _invalid("page_token", "page_token is invalid")
        filters = {name: query[name] for name in filter_names if name in query}
        return ListQuery(filters, number, size, token, cursor, path)

    def _links(self, params: ListQuery, page: list[Entry], more: bool) -> dict[str, str]:
        """A list page's absolute ``links``; subclasses may bend them."""

        def link(number: int, token: str | None) -> str:
            query = {
                **params.filters,
                "page_number": str(number),
                "page_size": str(params.page_size),
            }
            if token is not None:
                query["page_token"] = token
            return f"{self.base_url}{params.path}?{urlencode(query)}"

        links = {"self": link(params.page_number, params.token), "first": link(0, None)}
        if more:
            links["next"] = link(params.page_number + 1, _encode(Cursor(True, page[-1].key)))
        anchor = page[0].key if page else params.cursor.key if params.cursor else None
        if params.page_number > 0 and anchor is not None:
            links["prev"] = link(params.page_number - 1, _encode(Cursor(False, anchor)))
        return links
