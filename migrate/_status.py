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
from twisted.web.resource import Resource
from twisted.web.server import Request

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

    def report(self) -> dict[str, object]:
        """
        Everything the live view shows.
        """
        return {
            "version": SCHEMA_VERSION,
            "time": self.clock.seconds(),
            "sessions": [t.snapshot() for t in self.live.values()],
            "ended": list(self.ended.values()),
        }


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
    C{/} (HTML, refreshing every 2 s) and C{/sessions.json}.
    """

    isLeaf = True

    def __init__(self, registry: SessionRegistry) -> None:
        Resource.__init__(self)
        self.registry = registry

    def render_GET(self, request: Request) -> bytes:
        path = request.path.rstrip(b"/")
        report = self.registry.report()
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
            "<p>%d live, %d recently ended. <a href='sessions.json'>JSON</a></p>"
            "<table>%s</table></body></html>"
            % (len(report["sessions"]), len(report["ended"]), body)  # type: ignore[arg-type]
        )
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        return page.encode("utf-8")
