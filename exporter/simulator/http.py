"""HTTP plumbing of the simulated space: requests as received, responses as sent, the API's error
bodies, and the handler that hands every GET to its space."""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any, Literal, cast
from urllib.parse import parse_qsl, urlsplit

if TYPE_CHECKING:
    from .space import SimulatedSpace

LIST_PATH = "/api/video/room_sessions"
LOGS_PATH = "/api/video/logs"
ERROR_DOCS = "https://developer.signalwire.com/rest/overview/error-codes"

Endpoint = Literal["list", "get", "members", "recordings", "logs", "log"]
_SESSION_PATH = re.compile(re.escape(LIST_PATH) + "/([^/]+)(?:/(members|recordings))?")
_LOG_PATH = re.compile(re.escape(LOGS_PATH) + "/([^/]+)")


@dataclass(frozen=True)
class Request:
    """One request as received; ``headers`` keys are lower-cased, ``query`` keeps the last value."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]

    @classmethod
    def parse(cls, method: str, target: str, headers: Message) -> Request:
        url = urlsplit(target)
        received = {name.lower(): value for name, value in headers.items()}
        return cls(method, url.path, dict(parse_qsl(url.query)), received)

    @property
    def endpoint(self) -> Endpoint | None:
        """``list``, ``get`` (``LIST_PATH/<id>``), ``members`` or ``recordings``
        (``LIST_PATH/<id>/members``...), ``logs`` (``LOGS_PATH``), ``log`` (``LOGS_PATH/<id>``), or
        None for any other path."""
        if self.path == LIST_PATH:
            return "list"
        if self.path == LOGS_PATH:
            return "logs"
        if _LOG_PATH.fullmatch(self.path):
            return "log"
        match = _SESSION_PATH.fullmatch(self.path)
        return None if match is None else cast(Endpoint, match[2] or "get")

    @property
    def session_id(self) -> str:
        """The session id in the path of a ``get``, ``members`` or ``recordings`` request; the
        log id of a ``log`` request."""
        match = _SESSION_PATH.fullmatch(self.path) or _LOG_PATH.fullmatch(self.path)
        return "" if match is None else match[1]


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def errors_body(kind: str, code: str, message: str, attribute: str | None) -> dict[str, Any]:
    """The API's ``{"errors": [...]}`` body (validation and rate-limit errors)."""
    item = {"type": kind, "code": code, "message": message, "attribute": attribute}
    return {"errors": [item | {"url": f"{ERROR_DOCS}#{code}"}]}


class RequestHandler(BaseHTTPRequestHandler):
    """Hands every GET to the owning space and writes back its JSON response."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes

    def __init__(self, *args: Any, space: SimulatedSpace) -> None:
        self.space = space
        super().__init__(*args)

    def handle(self) -> None:
        with contextlib.suppress(ConnectionResetError):  # the client went away (or was killed)
            super().handle()

    def do_GET(self) -> None:
        if self.server is not self.space._server:  # stopped: drop kept-alive connections
            self.close_connection = True
            return
        self.send(self.space._respond(Request.parse(self.command, self.path, self.headers)))

    def send(self, response: Response) -> None:
        """Write ``response``; subclasses may deliver it otherwise."""
        try:
            self.send_head(response, len(response.body))
            self.wfile.write(response.body)
        except (BrokenPipeError, ConnectionResetError):  # the client went away (or was killed)
            self.close_connection = True

    def send_head(self, response: Response, length: int) -> None:
        """The status line and headers, announcing a body of ``length`` bytes."""
        self.send_response(response.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(length))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Keep stderr quiet."""
