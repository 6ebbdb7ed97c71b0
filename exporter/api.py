"""SignalWire Video REST API client: room-session listings, single sessions, the members and
recordings of a session, and the video logs (every listing read to its last page).

Every request has a hard deadline (see :mod:`.transport`) and is retried on 429, 5xx and
transport errors with exponential backoff and jitter, but never past the caller's deadline.
Bodies are decoded here, chunk by chunk, and refused past MAX_BODY_BYTES. Pagination follows
``links.next`` resolved against the API origin and refuses links to any other origin,
repeated links and more than ``max_pages`` pages. Credentials go to the origin only. Text
from the API is clipped to TEXT_LIMIT characters wherever it ends up in a message.
"""

from __future__ import annotations

import json
import logging
import random
import re
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from email.utils import parsedate_to_datetime
from typing import TypeVar
from urllib.parse import quote, urljoin, urlsplit

import httpx

from . import __version__
from .config import PollConfig, SpaceConfig
from .models import (
    ROOM_SESSIONS_PATH,
    InvalidResponse,
    Member,
    Recording,
    RoomSession,
    VideoLog,
    decode_log,
    decode_logs_page,
    decode_members_page,
    decode_page,
    decode_recordings_page,
    decode_session,
)
from .transport import DeadlineTransport, deadline

log = logging.getLogger(__name__)

LOGS_PATH = "/api/video/logs"
MAX_BODY_BYTES = 64 * 1024 * 1024  # decoded
TEXT_LIMIT = 300  # characters of API-provided text in a message
BACKOFF_BASE, BACKOFF_CAP = 0.5, 30.0
USER_AGENT = f"signalwire-video-exporter/{__version__}"

# Receives every request's outcome: endpoint ("list", "get", "members", "recordings" or "logs"),
# HTTP status (None when no response came) and seconds taken.
RequestObserver = Callable[[str, int | None, float], None]
T = TypeVar("T")
# A listing page's body -> (records, links.next, ids of malformed records); see models.decode_page.
PageDecoder = Callable[[bytes], tuple[list[T], str | None, list[str | None]]]

_DIGITS = re.compile("[0-9]+")  # ASCII only: str.isdigit() also takes "²", which int() refuses


def clip(text: str) -> str:
    """``text`` cut to TEXT_LIMIT characters (marked when cut): API text in logs stays short."""
    return text if len(text) <= TEXT_LIMIT else f"{text[:TEXT_LIMIT]}... ({len(text)} characters)"


class ApiError(Exception):
    """A request that failed for good; ``reason`` is the poll_errors_total label value."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def describe_error_body(body: bytes) -> str:
    """A readable one-line summary of any of the API's error body shapes, clipped."""
    return clip(_describe(body))


def _describe(body: bytes) -> str:
    try:
        doc = json.loads(body)
    except ValueError:
        text = body[:200].decode("utf-8", "replace").strip()
        return f"non-JSON body: {text!r}" if text else "empty body"
    items: list[object] = []
    if isinstance(doc, dict):
        if isinstance(doc.get("errors"), list):
            items = doc["errors"]
        elif "error" in doc:
            return str(doc["error"])
        elif "code" in doc or "message" in doc:
            items = [doc]
    parts = []
    for item in items:
        if isinstance(item, dict):
            text = f"{item.get('code', 'error')}: {item.get('message', '')}".strip()
            if item.get("attribute"):
                text += f" (attribute {item['attribute']})"
            parts.append(text)
    return "; ".join(parts) if parts else json.dumps(doc)[:200]


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (ASCII digits or an HTTP-date).

    None when absent or anything else: the normal backoff applies. Never raises.
    """
    if not value:
        return None
    value = value.strip()
    if _DIGITS.fullmatch(value):
        return float(value)  # no digit limit, unlike int(); inf for an absurd value
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


class ApiClient:
    """Client for one space: one connection pool, Basic auth, bounded retries."""

    def __init__(
        self,
        space: SpaceConfig,
        poll: PollConfig,
        observe: RequestObserver = lambda endpoint, status, seconds: None,
        stop: threading.Event | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.space, self.poll, self.observe = space, poll, observe
        self._stop = stop or threading.Event()
        self._rng = rng or random.Random()
        self._origin = urlsplit(space.base_url)
        self._http = httpx.Client(
            auth=httpx.BasicAuth(space.project_id, space.api_token),
            headers={"User-Agent": USER_AGENT, "Accept": "application/json", "Accept-Encoding": "gzip"},
            follow_redirects=False,
            transport=DeadlineTransport(space.base_url),
            trust_env=False,  # the transport reads the proxy settings, so that they keep the deadline
        )

    def close(self) -> None:
        self._http.close()

    def list_sessions(
        self,
        status: str,
        deadline: float,
        room_id: str | None = None,
        room_name: str | None = None,
        page_size: int | None = None,
    ) -> Iterator[tuple[list[RoomSession], list[str | None]]]:
        """Yield (sessions, ids of malformed records) for every page of the listing with ``status``.

        ``room_id`` or ``room_name`` narrow the listing to one room (over the configured filters);
        ``page_size`` defaults to ``poll.page_size``.
        """
        f = self.space.filters
        params = {
            "status": status,
            "page_size": str(page_size or self.poll.page_size),
            "room_id": room_id or f.room_id,
            "room_name": room_name or f.room_name,
            "room_name_matches": f.room_name_matches,
        }
        return self._pages("list", ROOM_SESSIONS_PATH, params, decode_page, deadline)

    def list_members(
        self, session_id: str, deadline: float
    ) -> Iterator[tuple[list[Member], list[str | None]]]:
        """Yield (members, ids of malformed records) for every page of a session's members.

        No page at all when the session does not exist (404: deleted); a session without members
        has one empty page.
        """
        return self._session_pages("members", session_id, decode_members_page, deadline)

    def list_recordings(
        self, session_id: str, deadline: float
    ) -> Iterator[tuple[list[Recording], list[str | None]]]:
        """Yield (recordings, ids of malformed records) for every page of a session's recordings.

        No page at all when the session does not exist (404: deleted), as :meth:`list_members`.
        """
        return self._session_pages("recordings", session_id, decode_recordings_page, deadline)

    def list_logs(
        self, deadline: float, created_after: str | None = None, created_before: str | None = None
    ) -> Iterator[tuple[list[VideoLog], list[str | None]]]:
        """Yield (logs, ids of malformed records) for every page of the video logs, newest first.

        ``created_after`` and ``created_before`` (a date or an ISO 8601 datetime, sent only when
        given) narrow the listing to logs created after or before them. Deleted logs are not listed.
        """
        params = {
            "page_size": str(self.poll.page_size),
            "created_after": created_after,
            "created_before": created_before,
        }
        return self._pages("logs", LOGS_PATH, params, decode_logs_page, deadline)

    def _session_pages(
        self, listing: str, session_id: str, decode: PageDecoder[T], deadline: float
    ) -> Iterator[tuple[list[T], list[str | None]]]:
        path = f"{ROOM_SESSIONS_PATH}/{quote(session_id, safe='')}/{listing}"
        params = {"page_size": str(self.poll.page_size)}
        return self._pages(listing, path, params, decode, deadline, missing_ok=True)

    def _pages(
        self,
        endpoint: str,
        path: str,
        params: Mapping[str, str | None],
        decode: PageDecoder[T],
        deadline: float,
        missing_ok: bool = False,
    ) -> Iterator[tuple[list[T], list[str | None]]]:
        """Yield (records, ids of malformed records) for every page of the listing at ``path``.

        With ``missing_ok``, a 404 for the first page yields nothing (the listing's owner is
        gone); a 404 for a later page fails: what was read is not the whole listing.
        """
        url: str | None = str(
            httpx.URL(self.space.base_url + path, params={k: v for k, v in params.items() if v})
        )
        seen: set[str] = set()
        while url is not None:
            if len(seen) >= self.poll.max_pages:
                raise ApiError("invalid_response", f"listing has more than {self.poll.max_pages} pages")
            body = self._get(endpoint, url, deadline, missing_ok=missing_ok and not seen)
            if body is None:
                return
            seen.add(url)
            try:
                records, next_link, malformed = decode(body)
            except InvalidResponse as exc:
                raise ApiError("invalid_response", clip(str(exc))) from None
            yield records, malformed
            url = self._next_url(next_link, path, seen)

    def get_log(self, log_id: str, deadline: float) -> VideoLog | None:
        """The video log with this id; None when the API says it does not exist (404).

        Raises InvalidResponse when the body is not a video log.
        """
        url = f"{self.space.base_url}{LOGS_PATH}/{quote(log_id, safe='')}"
        body = self._get("logs", url, deadline, missing_ok=True)
        return None if body is None else decode_log(body)

    def get_session(self, session_id: str, deadline: float) -> RoomSession | None:
        """The session with this id; None when the API says it does not exist (404).

        Raises InvalidResponse when the body is not a room session.
        """
        url = f"{self.space.base_url}{ROOM_SESSIONS_PATH}/{quote(session_id, safe='')}"
        body = self._get("get", url, deadline, missing_ok=True)
        return None if body is None else decode_session(body)

    def _next_url(self, link: str | None, path: str, seen: set[str]) -> str | None:
        if not link:
            return None
        try:
            url = urljoin(self.space.base_url + "/", link.strip())
            parts = urlsplit(url)
            origin = (parts.scheme, parts.hostname, parts.port)
        except ValueError:  # an invalid IPv6 host, a port out of range
            raise ApiError("invalid_response", "links.next is not a valid URL") from None
        if origin != (self._origin.scheme, self._origin.hostname, self._origin.port):
            raise ApiError(
                "invalid_response",
                f"refusing links.next to {clip(f'{parts.scheme}://{parts.hostname}')}: not the API origin "
                f"{self._origin.scheme}://{self._origin.hostname} (credentials stay there)",
            )
        if parts.path != path:
            raise ApiError("invalid_response", f"links.next has an unexpected path {clip(repr(parts.path))}")
        if url in seen:
            raise ApiError("invalid_response", "links.next repeats a page already read (pagination loop)")
        return url

    def _get(self, endpoint: str, url: str, deadline: float, missing_ok: bool = False) -> bytes | None:
        """GET with retries until ``deadline`` (monotonic); the body of a 200 (None for an allowed 404).

        A retry that the deadline cuts short fails with the error it retried: the poll failed
        because of that error, not because the API was slower than ``poll.timeout``.
        """
        attempt = 0
        error: ApiError | None = None
        while True:
            timeout = min(self.poll.timeout, deadline - time.monotonic())
            outcome, wait = (
                self._attempt(endpoint, url, timeout, missing_ok)
                if timeout > 0
                else (ApiError("timeout", "poll deadline reached before the request could be sent"), None)
            )
            if not isinstance(outcome, ApiError):
                return outcome
            if error is not None and outcome.reason == "timeout" and timeout < self.poll.timeout:
                raise ApiError(error.reason, f"{error} (its retry ran out of the poll interval)")
            error = outcome
            backoff = min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt) * self._rng.uniform(0.5, 1.0)
            wait = max(wait or 0.0, backoff)
            if time.monotonic() + wait >= deadline:
                raise ApiError(error.reason, f"{error} (no retry: it would outlive the poll interval)")
            log.info("space %s: %s; retrying in %.1fs", self.space.name, error, wait)
            if self._stop.wait(wait):
                raise ApiError(error.reason, f"{error} (shutting down)")
            attempt += 1

    def _attempt(
        self, endpoint: str, url: str, timeout: float, missing_ok: bool
    ) -> tuple[bytes | ApiError | None, float | None]:
        """One request, ended within ``timeout`` whatever the server sends.

        (body, None) on success, (retryable ApiError, Retry-After) otherwise.
        """
        started = time.monotonic()
        try:
            with deadline(started + timeout), self._http.stream("GET", url, timeout=timeout) as response:
                body = _read_capped(response)
        except httpx.TimeoutException:
            self.observe(endpoint, None, time.monotonic() - started)
            return ApiError("timeout", f"{endpoint} request timed out after {timeout:.1f}s"), None
        except (httpx.InvalidURL, _BodyRefused) as exc:
            self.observe(endpoint, None, time.monotonic() - started)
            raise ApiError("invalid_response", f"{endpoint} request: {clip(str(exc))}") from None
        except httpx.TransportError as exc:
            self.observe(endpoint, None, time.monotonic() - started)
            return ApiError("network", f"{endpoint} request failed: {clip(str(exc))}"), None
        status = response.status_code
        self.observe(endpoint, status, time.monotonic() - started)
        if status == 200:
            return body, None
        if status == 404 and missing_ok:
            return None, None
        detail = f"{endpoint} request: HTTP {status}: {describe_error_body(body)}"
        if status == 429:
            retry_after = parse_retry_after(response.headers.get("Retry-After"), time.time())
            return ApiError("rate_limited", detail), retry_after
        if status >= 500:
            return ApiError("server_error", detail), None
        if status in (401, 403):
            raise ApiError("unauthorized", f"{detail} (check project_id and api_token)")
        raise ApiError("invalid_response", detail)


class _BodyRefused(Exception):
    pass


def _read_capped(response: httpx.Response) -> bytes:
    """The decoded body; _BodyRefused past MAX_BODY_BYTES, or encoded other than by one gzip.

    Decoded here, not by httpx, one received chunk at a time and never past the cap, so a small
    compressed body cannot inflate in memory: memory per request stays bounded by the cap.
    """
    length = response.headers.get("Content-Length", "")
    if _DIGITS.fullmatch(length) and float(length) > MAX_BODY_BYTES:
        raise _BodyRefused(f"response body of {clip(length)} bytes is larger than {MAX_BODY_BYTES} bytes")
    encoding = response.headers.get("Content-Encoding", "")
    codings = [c for c in (c.strip().lower() for c in encoding.split(",")) if c not in ("", "identity")]
    if codings not in ([], ["gzip"], ["x-gzip"]):
        raise _BodyRefused(f"unsupported Content-Encoding {clip(repr(encoding))} (only gzip is accepted)")
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) if codings else None
    chunks, size = [], 0
    for raw in response.iter_raw():
        try:
            chunk = raw if inflate is None else inflate.decompress(raw, MAX_BODY_BYTES - size + 1)
        except zlib.error as exc:
            raise _BodyRefused(f"response body is not valid gzip: {exc}") from None
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _BodyRefused(f"response body larger than {MAX_BODY_BYTES} bytes")
        if inflate is not None and inflate.unused_data:
            raise _BodyRefused("response body has data after the end of its gzip stream")
        chunks.append(chunk)
    if inflate is not None and not inflate.eof:
        raise _BodyRefused("response body ends before the end of its gzip stream")
    return b"".join(chunks)
