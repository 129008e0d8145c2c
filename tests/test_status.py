"""
The live view: the registry, the JSON schema, the HTML page, the CLI table.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from migrate.__main__ import main as cliMain
from migrate._status import SessionRegistry, StatusResource, renderTable

from .helpers import Pair

KEYS = {
    "id": str,
    "side": str,
    "state": str,
    "local": str,
    "peer": str,
    "age": float,
    "generation": int,
    "handoffs": int,
    "bytesSent": int,
    "bytesAcknowledged": int,
    "bytesBuffered": int,
    "bytesReceived": int,
    "bytesRetransmitted": int,
}


def render(resource: StatusResource, path: bytes, method: str = "GET") -> tuple[int, bytes, Any]:
    request = DummyRequest([p for p in path.split(b"/") if p])
    request.path = path
    request.method = method.encode()
    result = getattr(resource, "render_" + method)(request)
    assert result is NOT_DONE_YET and request.finished, result
    return request.responseCode or 200, b"".join(request.written), request


class StatusTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.pair = Pair()
        self.registry = SessionRegistry(self.pair.clock)
        self.pair.endpoint.addObserver(self.registry)
        self.pair.factory.addObserver(self.registry)
        self.pair.open()
        self.resource = StatusResource(self.registry)

    def test_json(self) -> None:
        """
        C{/sessions.json} lists every live session, both sides here, with
        the documented fields and types.
        """
        self.pair.client.transport.write(b"x" * 100)
        self.pair.net.cutAll()
        self.pair.settle(seconds=1)
        code, body, request = render(self.resource, b"/sessions.json")
        self.assertEqual(code, 200)
        self.assertEqual(request.responseHeaders.getRawHeaders(b"content-type"), [b"application/json"])
        report = json.loads(body)
        self.assertEqual(report["version"], 1)
        self.assertEqual(len(report["sessions"]), 2)
        self.assertEqual({s["side"] for s in report["sessions"]}, {"client", "server"})
        for s in report["sessions"]:
            for key, kind in KEYS.items():
                self.assertIsInstance(s[key], kind, key)
            self.assertEqual(s["state"], "attached")
            self.assertEqual(s["handoffs"], 1)
            self.assertIsNone(s["detachedFor"])
        client = [s for s in report["sessions"] if s["side"] == "client"][0]
        self.assertEqual(client["bytesSent"], 100)
        self.assertEqual(client["bytesAcknowledged"], 100)
        self.assertEqual(client["peer"], "10.0.0.1:7001")

    def test_detachedShown(self) -> None:
        """
        A detached session shows how long it has been detached.
        """
        self.pair.net.refuse = True
        self.pair.net.cutAll()
        self.pair.settle(seconds=2, step=0.5)
        report = self.registry.report()
        for s in report["sessions"]:
            self.assertEqual(s["state"], "detached")
            self.assertGreaterEqual(s["detachedFor"], 2.0)

    def test_ended(self) -> None:
        """
        Ended sessions leave the live list for the recently-ended one, with
        their reason.
        """
        self.pair.client.transport.loseConnection()
        self.pair.settle(seconds=1)
        report = self.registry.report()
        self.assertEqual(report["sessions"], [])
        self.assertEqual([e["endReason"] for e in report["ended"]], ["ConnectionDone"] * 2)

    def test_html(self) -> None:
        """
        C{/} is a self-refreshing HTML page with a row per session.
        """
        code, body, _ = render(self.resource, b"/")
        self.assertEqual(code, 200)
        self.assertIn(b"http-equiv='refresh'", body)
        self.assertEqual(body.count(self.pair.client.transport.sessionID.encode()), 2)

    def test_notFound(self) -> None:
        """
        Other paths are 404.
        """
        code, _, _ = render(self.resource, b"/elsewhere")
        self.assertEqual(code, 404)

    def test_hibernatedAndExpire(self) -> None:
        """
        Hibernated sessions of a watched server appear in the JSON, and
        C{POST /sessions/ID/expire} ends a session.
        """
        from migrate.store import MemorySessionStore

        store = MemorySessionStore()
        self.pair.factory.store = store

        class Endpoint:
            factory = self.pair.factory

        self.registry.watchServer(Endpoint())
        sid = self.pair.client.transport.sessionID
        self.pair.net.refuse = True
        self.pair.net.cutAll()
        self.pair.settle()
        self.pair.factory.hibernate(self.pair.serverSession)
        code, body, _ = render(self.resource, b"/sessions.json")
        report = json.loads(body)
        self.assertEqual([h["id"] for h in report["hibernated"]], [sid])
        self.assertEqual([s["side"] for s in report["sessions"]], ["client"])
        code, body, _ = render(self.resource, b"/sessions/%s/expire" % sid.encode(), "POST")
        self.assertEqual((code, json.loads(body)), (200, {"expired": True}))
        self.assertEqual(store.rows, {})
        code, body, _ = render(self.resource, b"/sessions/%s/expire" % (b"00" * 16), "POST")
        self.assertEqual(code, 404)

    def test_table(self) -> None:
        """
        The CLI's table has a header and a row per session.
        """
        rows = renderTable(self.registry.report())
        self.assertEqual(rows[0][0], "session")
        self.assertEqual(len(rows), 3)

    def test_cliUnreachable(self) -> None:
        """
        The CLI says clearly when it cannot read the status.
        """
        import io
        import sys

        err = io.StringIO()
        old, sys.stderr = sys.stderr, err
        try:
            self.assertEqual(cliMain(["status", "http://127.0.0.1:1/"]), 1)
        finally:
            sys.stderr = old
        self.assertIn("cannot read http://127.0.0.1:1/sessions.json", err.getvalue())
