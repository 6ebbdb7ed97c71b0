"""A simulated SignalWire space serving the Video room-sessions REST API: the backend of ``--demo``.

Real HTTP on 127.0.0.1 (stdlib only): lists with filters and cursor pagination as the API pages
them, GET by id, each session's members and recordings (paginated the same way), the video logs
(one per session, charged its cost once it completes; filtered by creation time), Basic auth.
Sessions, members and recordings are scripted (``add_session``, ``complete_session``,
``add_member``, ``add_recording``) or kept coming and going by ``run_traffic``, which also bills a
few conferences and, now and then, charges a session a cent more than it cost. Subclasses change
how requests are answered through ``handler``, ``_respond`` and ``_links`` (the tests' fake API
does, in ``tests/support``).

Modules, each building on the ones before: ``http`` (requests, responses, error bodies, the
request handler), ``records`` (sessions, members, recordings, logs and their JSON), ``listings``
(sorted indexes, pages from a cursor), ``state`` (the records and their scripted control),
``traffic`` (the demo's traffic) and ``space`` (``SimulatedSpace``: the server and its routing).
"""

from .http import Endpoint, Request, RequestHandler, Response, errors_body
from .listings import Child, Entry, ListQuery
from .space import SimulatedSpace
from .traffic import ENDED_AT_START, FPS_MIX, QUALITY_MIX, ROOMS

__all__ = [
    "ENDED_AT_START",
    "FPS_MIX",
    "QUALITY_MIX",
    "ROOMS",
    "Child",
    "Endpoint",
    "Entry",
    "ListQuery",
    "Request",
    "RequestHandler",
    "Response",
    "SimulatedSpace",
    "errors_body",
]
