"""The simulated space's state: its sessions, members, recordings and logs, filed in their
listings, and the scripted control that changes them (``add_session``, ``add_member``,
``add_recording``, ``complete_session``, ``bulk``)."""

from __future__ import annotations

import base64
import itertools
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from enum import Enum
from http.server import ThreadingHTTPServer
from typing import Any

from .listings import Child, Entry, Listing, LogBook, Roster
from .records import ROOM_SESSION_LOG, Log, Member, Recording, Session


class _Auto(Enum):
    """Sentinel for arguments derived from others (a room id derived from the room name)."""

    ROOM_ID = "auto"
    NOW = "now"


class SpaceState:
    """The records of a space and their listings, changed under one lock by the scripted control.

    It also holds what the subclasses run: the server (``SimulatedSpace``; the logs' urls point at
    its address) and the demo's traffic (``TrafficSpace``).
    """

    def __init__(
        self,
        project_id: str = "demo-project",
        api_token: str = "demo-token",
        *,
        clock: Callable[[], float] = time.time,
        seed: int = 0,
        host_name: str = "demo.signalwire.com",
    ) -> None:
        credentials = base64.b64encode(f"{project_id}:{api_token}".encode()).decode()
        self._authorization = f"Basic {credentials}"
        self._clock = clock
        self._rng = random.Random(seed)
        self._host_name = host_name
        self._lock = threading.RLock()
        self._sessions: dict[str, Session] = {}
        self._listing = Listing()
        self._rosters: dict[tuple[Child, str], Roster] = {}  # (listing, session id): created on use
        self._members: dict[str, Member] = {}
        self._recordings: dict[str, Recording] = {}
        self._logs: dict[str, Log] = {}
        self._log_of: dict[str, Log] = {}  # by room session id
        self._log_book = LogBook()
        self._log_rng = random.Random(f"{seed}/logs")  # its own: sessions are as they were without logs
        self._conferences: list[Session] = []  # the demo's, in progress
        self._bulk = False  # inside bulk(): the listing is rebuilt at its end
        self._seq = itertools.count()
        self._server: ThreadingHTTPServer | None = None
        self._traffic: threading.Thread | None = None
        self._traffic_started: float | None = None
        self._first_mismatch = False  # whether the traffic has charged its first mismatch
        self._stopping = threading.Event()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` of the running server."""
        if self._server is None:
            raise RuntimeError("simulated space not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def _api_origin(self) -> str:
        """Where the logs' urls point: the running server, else the space's host."""
        return f"https://{self._host_name}" if self._server is None else self.base_url

    # --- scripted control ------------------------------------------------------------------

    def add_session(
        self,
        *,
        id: str | None = None,
        name: str | None = "room-1",
        room_id: str | _Auto | None = _Auto.ROOM_ID,
        quality: str | None = "720p",
        fps: str | int | None = "30",
        max_members: int | None = 10,
        start_time: float | None = None,
        created_at: float | None = None,
        **overrides: Any,
    ) -> str:
        """Create an in-progress session, and its video log, and return its id.

        ``room_id`` defaults to a stable uuid per room name (None for a nameless session);
        ``overrides`` are raw JSON fields merged verbatim into the served record.
        """
        now = self._clock()
        if isinstance(room_id, _Auto):
            room = uuid.uuid5(uuid.NAMESPACE_DNS, f"{name}.{self._host_name}")
            room_id = None if name is None else str(room)
        base = {
            "room_id": room_id, "name": name, "display_name": name, "max_members": max_members,
            "quality": quality, "fps": fps, "join_from": None, "join_until": None,
            "remove_at": None, "remove_after_seconds_elapsed": None, "layout": "grid-responsive",
            "record_on_start": False, "tone_on_entry_and_exit": True,
            "room_join_video_off": False, "user_join_video_off": False, "locked": False,
            "preview_url": None, "prioritize_handraise": False, "sync_audio_video": True,
            "enable_room_previews": False, "locked_cover": "",
        }  # fmt: skip
        start = now if start_time is None else start_time
        created = now if created_at is None else created_at
        with self._lock:
            session = Session(id or str(uuid.uuid4()), created, start, base, overrides, next(self._seq))
            replaced = self._sessions.get(session.id)
            self._sessions[session.id] = session
            if replaced is not None:
                self._unfile(replaced)
                self._drop_log(self._log_of[session.id])
                for child in ("members", "recordings"):
                    self._rosters.pop((child, session.id), None)
            self._file(session)
            self._log_of[session.id] = self._add_log(session, ROOM_SESSION_LOG)
        return session.id

    def _add_log(self, activity: Session, kind: str) -> Log:
        """A new log of ``activity``, listed (call with the lock held)."""
        log_id = str(uuid.UUID(int=self._log_rng.getrandbits(128), version=4))
        log = Log(log_id, activity, kind, next(self._seq), self._api_origin)
        self._logs[log.id] = log
        self._file_log(log)
        return log

    def _drop_log(self, log: Log) -> None:
        """Forget a log (call with the lock held)."""
        del self._logs[log.id]
        self._unfile_log(log)

    def add_member(
        self,
        session_id: str,
        *,
        id: str | None = None,
        name: str | None = "member",
        join_time: float | _Auto | None = _Auto.NOW,
        leave_time: float | None = None,
        listed_at: float | None = None,
        **overrides: Any,
    ) -> str:
        """Add a member to a session and return its id.

        It joins at ``join_time`` (default now; None: it never joins) and leaves at ``leave_time``
        (None: while the session lasts, null until the session ends). It is listed from
        ``listed_at`` on (default its join time, else now); ``overrides`` are raw JSON fields
        merged verbatim into the served record.
        """
        with self._lock:
            now = self._clock()
            join = now if isinstance(join_time, _Auto) else join_time
            listed = listed_at if listed_at is not None else now if join is None else join
            session, sid = self._sessions[session_id], id or str(uuid.uuid4())
            member = Member(sid, session, listed, next(self._seq), overrides, name, join, leave_time)
            self._members[sid] = member
            self._roster("members", session_id).add(member)
        return sid

    def add_recording(
        self,
        session_id: str,
        *,
        id: str | None = None,
        started_at: float | None = None,
        finished_at: float | None = None,
        processing: float = 0.0,
        **overrides: Any,
    ) -> str:
        """Add a recording to a session and return its id.

        It records from ``started_at`` (default now, when it is listed) to ``finished_at`` (None:
        until the session ends), then is ``processing`` for that many seconds, then ``completed``
        (``math.inf``: never); ``overrides`` are raw JSON fields merged verbatim.
        """
        with self._lock:
            start = self._clock() if started_at is None else started_at
            session, rid = self._sessions[session_id], id or str(uuid.uuid4())
            recording = Recording(
                rid, session, start, next(self._seq), overrides, start, finished_at, processing
            )
            self._recordings[rid] = recording
            self._roster("recordings", session_id).add(recording)
        return rid

    def _roster(self, child: Child, session_id: str) -> Roster:
        """The members or recordings of a session (call with the lock held); KeyError for an unknown one."""
        if not self._has_session(session_id):
            raise KeyError(session_id)
        return self._rosters.setdefault((child, session_id), Roster())

    def _has_session(self, session_id: str) -> bool:
        """Whether the space has a session with this id (call with the lock held)."""
        return session_id in self._sessions

    def complete_session(
        self,
        session_id: str,
        *,
        cost_in_dollars: float,
        end_time: float | None = None,
        duration: int | None = None,
    ) -> None:
        """Mark a session completed; ``duration`` defaults to round(end - start).

        Its members still present leave at its end, its recordings stop then.
        """
        with self._lock:
            session = self._sessions[session_id]
            old_status = session.status
            session.end_time = self._clock() if end_time is None else end_time
            default = round(session.end_time - session.start_time)
            session.duration = default if duration is None else duration
            session.cost = cost_in_dollars
            self._changed(session, old_status)

    @contextmanager
    def bulk(self) -> Iterator[None]:
        """Hold requests while sessions are scripted in bulk; the listing is re-sorted once at the end.

        Faster than one sorted insertion per change when adding many sessions out of order.
        """
        with self._lock:
            self._bulk = True
            try:
                yield
            finally:
                self._bulk = False
                self._listing = Listing(self._entries())
                self._log_book = LogBook(self._log_entries())

    def _entries(self) -> Iterable[Entry]:
        """Everything the lists serve; subclasses may list more than sessions."""
        return self._sessions.values()

    def _log_entries(self) -> Iterable[Entry]:
        """Every log; subclasses may list more."""
        return self._logs.values()

    def _file_log(self, entry: Entry) -> None:
        """List a log (call with the lock held); inside ``bulk()``, at its end."""
        if not self._bulk:
            self._log_book.add(entry)

    def _unfile_log(self, entry: Entry) -> None:
        """Take a log off the lists (call with the lock held)."""
        if not self._bulk:
            self._log_book.remove(entry)

    def _file(self, entry: Entry) -> None:
        """List a new ``entry`` (call with the lock held); inside ``bulk()``, at its end."""
        if not self._bulk:
            self._listing.add(entry)

    def _unfile(self, entry: Entry) -> None:
        """Take ``entry`` off the lists (call with the lock held)."""
        if not self._bulk:
            self._listing.remove(entry)

    def _changed(self, session: Session, old_status: str) -> None:
        session.changed()
        if not self._bulk:
            self._listing.move(session, old_status)
