# -*- test-case-name: tests.test_status -*-
"""
The live view of C{twistd migrate}: which sessions exist and how they are.

L{SessionRegistry} is an upcall observer that keeps every live session's
transport (and forgets it when the session ends, after a short while so
that a closed session can still be seen).  L{StatusResource} serves the
registry as JSON (C{/sessions.json}) for machines and as a small
self-refreshing HTML page (C{/}) for people.
"""

from __future__ import annotations

import html
import json
from collections import OrderedDict
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from .errors import SessionExpired

SCHEMA_VERSION = 1


class SessionRegistry:
    """
    Keeps the sessions of endpoints it observes.

    @ivar live: the live sessions' transports, oldest first.
    @ivar ended: recently ended sessions' last snapshots (at most
        C{keepEnded}), oldest first.
    """

    def __init__(self, clock: IReactorTime, keepEnded: int = 100) -> None:
        self.clock = clock
        self.keepEnded = keepEnded
        self.live: OrderedDict[int, Any] = OrderedDict()
        self.ended: OrderedDict[int, dict[str, object]] = OrderedDict()
        self.servers: list[Any] = []

    def sessionEstablished(self, session: Any) -> None:
        # Keyed by object: one process may hold both ends of a session.
        self.live[id(session)] = session

    def sessionEnded(self, session: Any, reason: Any) -> None:
        self.live.pop(id(session), None)
        snapshot = session.snapshot()
        snapshot["endReason"] = reason.type.__name__
        self.ended[id(session)] = snapshot
        while len(self.ended) > self.keepEnded:
            self.ended.popitem(last=False)

    def watchServer(self, endpoint: Any) -> None:
        """
        Also show the hibernated sessions of a L{MigrateServerEndpoint}'s
        factory, and let the view expire them.
        """
        self.servers.append(endpoint)

    def _factories(self) -> list[Any]:
        return [e.factory for e in self.servers if getattr(e, "factory", None) is not None]

    def report(self) -> dict[str, object]:
        """
        Everything the live view shows about sessions in memory.
        """
        return {
            "version": SCHEMA_VERSION,
            "time": self.clock.seconds(),
            "sessions": [t.snapshot() for t in self.live.values() if not t._session.hibernated],
            "hibernated": [],
            "ended": list(self.ended.values()),
        }

    def fullReport(self) -> Deferred[dict[str, object]]:
        """
        L{report}, with the hibernated sessions of watched servers (read
        from their stores).
        """
        report = self.report()
        listings = [f.listSessions() for f in self._factories()]

        def merge(results: list[list[dict[str, object]]]) -> dict[str, object]:
            report["hibernated"] = [s for r in results for s in r if s.get("hibernated")]
            return report

        return gatherResults(listings).addCallback(merge)

    def expire(self, sessionID: str) -> Deferred[bool]:
        """
        End a session (live or hibernated) now.
        """
        try:
            sid = bytes.fromhex(sessionID)
        except ValueError:
            return succeed(False)
        found = False
        for transport in list(self.live.values()):
            if transport.sessionID == sessionID:
                transport._session.end(SessionExpired("expired by the operator"), "expired by the operator")
                found = True
        checks = [f.expireSession(sid) for f in self._factories()]
        return gatherResults(checks).addCallback(lambda r: found or any(r))


def _fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "%.3f" % (value,)
    return str(value)


_COLUMNS = [
    ("id", "session"),
    ("side", "side"),
    ("state", "state"),
    ("local", "local"),
    ("peer", "peer"),
    ("age", "age s"),
    ("detachedFor", "detached s"),
    ("handoffs", "handoffs"),
    ("bytesSent", "sent"),
    ("bytesAcknowledged", "acked"),
    ("bytesBuffered", "buffered"),
    ("bytesReceived", "received"),
    ("rtt", "rtt s"),
    ("lastRtt", "last rtt s"),
]


def renderTable(report: dict[str, Any]) -> list[list[str]]:
    """
    The report's sessions as rows of text, header first.
    """
    rows = [[label for _, label in _COLUMNS]]
    for s in report["sessions"]:
        rows.append([_fmt(s.get(key)) for key, _ in _COLUMNS])
    return rows


class StatusResource(Resource):
    """
    C{/} (HTML, refreshing every 2 s), C{/sessions.json}, and
    C{POST /sessions/ID/expire}.
    """

    isLeaf = True

    def __init__(self, registry: SessionRegistry) -> None:
        Resource.__init__(self)
        self.registry = registry

    def render_POST(self, request: Request) -> object:
        parts = request.path.strip(b"/").split(b"/")
        request.setHeader(b"content-type", b"application/json")
        if len(parts) != 3 or parts[0] != b"sessions" or parts[2] != b"expire":
            request.setResponseCode(404)
            return b'{"error": "POST /sessions/ID/expire"}'

        def done(found: bool) -> None:
            if not found:
                request.setResponseCode(404)
            request.write(json.dumps({"expired": found}).encode())
            request.finish()

        self.registry.expire(parts[1].decode("ascii", "replace")).addCallback(done)
        return NOT_DONE_YET

    def render_GET(self, request: Request) -> object:
        def respond(report: dict[str, Any]) -> None:
            request.write(self._render(request, report))
            request.finish()

        def failed(f: Any) -> None:
            request.setResponseCode(500)
            request.write(b"status unavailable\n")
            request.finish()

        self.registry.fullReport().addCallbacks(respond, failed)
        return NOT_DONE_YET

    def _render(self, request: Request, report: dict[str, Any]) -> bytes:
        path = request.path.rstrip(b"/")
        if path == b"/sessions.json":
            request.setHeader(b"content-type", b"application/json")
            request.setHeader(b"cache-control", b"no-store")
            return json.dumps(report, indent=1).encode("utf-8")
        if path not in (b"", b"/index.html"):
            request.setResponseCode(404)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"not found: try / or /sessions.json\n"
        rows = renderTable(report)
        body = "".join(
            "<tr>%s</tr>"
            % "".join(
                ("<th>%s</th>" if i == 0 else "<td>%s</td>") % html.escape(cell)
                for cell in row
            )
            for i, row in enumerate(rows)
        )
        page = (
            "<!DOCTYPE html><html><head><meta charset='utf-8'>"
            "<meta http-equiv='refresh' content='2'>"
            "<title>Migrate sessions</title>"
            "<style>body{font-family:sans-serif}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:2px 6px;font-size:90%%}</style>"
            "</head><body><h1>Migrate sessions</h1>"
            "<p>%d live, %d hibernated, %d recently ended. <a href='sessions.json'>JSON</a></p>"
            "<table>%s</table></body></html>"
            % (len(report["sessions"]), len(report["hibernated"]), len(report["ended"]), body)
        )
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        return page.encode("utf-8")
