"""
The live view: the registry, the JSON schema, the HTML page, the CLI table;
every session a server knows, in each state, with its times and, once
ended, its reason code; the site that keeps no access log; and its guards:
loopback, C{Host} checks, the token and origin checks on state-changing
requests, basic auth, and the CLI that works through them.
"""

from __future__ import annotations

import base64
import io
import json
import os
import random
import sys
from typing import Any, Optional, cast

from twisted.internet import reactor, threads
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, fail, inlineCallbacks
from twisted.internet.error import ConnectionAborted, ConnectionDone, ConnectionLost
from twisted.internet.protocol import Factory
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers
from twisted.web.server import NOT_DONE_YET, Site
from twisted.web.test.requesthelper import DummyRequest
from zope.interface import implementer

from migrate import BufferOverflow, MigrateClientEndpoint, PeerAborted, SessionExpired, SessionOptions
from migrate.__main__ import main as cliMain
from migrate._status import (
    END_CODES,
    SessionRegistry,
    StatusResource,
    StatusSite,
    describeEnd,
    formatBytes,
    formatDuration,
    normalizeHostName,
    parseHostHeader,
    parseOrigin,
    readCredentials,
    renderTable,
    renderText,
)
from migrate.interfaces import IMigratable
from migrate.store import MemorySessionStore
from migrate.testing import MemoryNetwork, sessionOf

from .helpers import Pair, Recorder

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

ATTACKER = b"http://attacker.example"


def render(
    resource: StatusResource,
    path: bytes,
    method: str = "GET",
    headers: dict[bytes, bytes] | None = None,
    local: Any = None,
    body: bytes | None = None,
) -> tuple[int, bytes, Any]:
    """
    Render a request on the status resource, as its L{Site} would.

    @param resource: the resource.
    @param path: the request's path.
    @param method: the request's method.
    @param headers: request headers (none by default: no C{Host} either).
    @param local: the address the request arrived on (C{127.0.0.1:80} if
        L{None}).
    @param body: a form-encoded body.
    @return: the status code, the body, and the request.
    """
    request: Any = DummyRequest([p for p in path.split(b"/") if p])
    request.path = path
    request.method = method.encode()
    request.isSecure = lambda: False
    if local is not None:
        request.getHost = lambda: local
    for name, value in (headers or {}).items():
        request.requestHeaders.addRawHeader(name, value)
    if body is not None:
        request.requestHeaders.setRawHeaders(b"content-type", [b"application/x-www-form-urlencoded"])
        request.content = io.BytesIO(body)
    result = resource.render(request)
    if result is not NOT_DONE_YET:
        request.write(result)
        request.finish()
    assert request.finished, result
    return request.responseCode or 200, b"".join(request.written), request


def basic(user: str, password: str) -> bytes:
    """
    An C{Authorization} header's value for HTTP basic auth.

    @param user: the user.
    @param password: the password.
    @return: the value.
    """
    return b"Basic " + base64.b64encode(("%s:%s" % (user, password)).encode())


def observedPair() -> tuple[Pair, SessionRegistry]:
    """
    An open session pair whose both ends a registry observes.
    """
    pair = Pair()
    registry = SessionRegistry(pair.clock)
    pair.endpoint.addObserver(registry)
    pair.factory.addObserver(registry)
    pair.open()
    return pair, registry


class StatusTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.pair, self.registry = observedPair()
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
        self.pair.clock.advance(5)
        self.pair.client.transport.loseConnection()
        self.pair.settle(seconds=1)
        report = self.registry.report()
        self.assertEqual(report["sessions"], [])
        self.assertEqual([e["endReason"] for e in report["ended"]], ["ConnectionDone"] * 2)
        for entry in report["ended"]:
            self.assertGreaterEqual(entry["endedAt"], 5.0)
            self.assertLessEqual(entry["endedAt"], self.pair.clock.seconds())
            self.assertIn("closed", entry["endDetail"].lower())

    def test_endDetail(self) -> None:
        """
        An ended session's entry says why in words (the reason's message),
        so that an operator's expiry, a refused backend and a clean close
        are told apart even when they share an exception class.
        """
        from migrate import SessionExpired

        self.pair.serverSession.end(SessionExpired("expired by the operator"), "expired")
        self.pair.settle(seconds=1)
        details = sorted(e["endDetail"] for e in self.registry.report()["ended"])
        self.assertTrue(any("expired by the operator" in d for d in details), details)

    def test_html(self) -> None:
        """
        C{/} is a self-refreshing HTML page with a row per session, each
        with an expire form that carries the token; it may not be framed.
        """
        code, body, request = render(self.resource, b"/")
        self.assertEqual(code, 200)
        self.assertIn(b"http-equiv='refresh'", body)
        sid = self.pair.client.transport.sessionID.encode()
        self.assertEqual(body.count(b"<td>%s</td>" % (sid,)), 2)
        self.assertEqual(body.count(b"action='sessions/%s/expire'" % (sid,)), 2)
        self.assertEqual(
            body.count(b"<input type='hidden' name='token' value='%s'>" % (self.resource.token.encode(),)), 2
        )
        self.assertEqual(request.responseHeaders.getRawHeaders(b"x-frame-options"), [b"DENY"])
        [policy] = request.responseHeaders.getRawHeaders(b"content-security-policy")
        self.assertIn(b"frame-ancestors 'none'", policy)

    def test_notFound(self) -> None:
        """
        Other paths are 404.
        """
        code, _, _ = render(self.resource, b"/elsewhere")
        self.assertEqual(code, 404)

    def test_hibernatedAndExpire(self) -> None:
        """
        Hibernated sessions of a watched server appear in the JSON, and
        C{POST /sessions/ID/expire} (with the token) ends a session.
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
        token = {b"x-migrate-token": self.resource.token.encode()}
        code, body, _ = render(self.resource, b"/sessions/%s/expire" % sid.encode(), "POST", token)
        self.assertEqual((code, json.loads(body)), (200, {"expired": True}))
        self.assertEqual(store.rows, {})
        code, body, _ = render(self.resource, b"/sessions/%s/expire" % (b"00" * 16), "POST", token)
        self.assertEqual(code, 404)

    def test_table(self) -> None:
        """
        The CLI's table has a header and a row per session.
        """
        rows = renderTable(self.registry.report())
        self.assertEqual(rows[0][0], "session")
        self.assertEqual(len(rows), 3)

    def test_channelsShown(self) -> None:
        """
        The table counts each session's open channels; the JSON report has
        each channel's own figures.
        """
        from twisted.internet.protocol import Factory, Protocol

        self.pair.client.transport.openChannel(Factory.forProtocol(Protocol))
        self.pair.settle()
        report = self.registry.report()
        rows = renderTable(report)
        column = rows[0].index("channels")
        self.assertEqual(sorted(row[column] for row in rows[1:]), ["1", "1"])
        (channel,) = report["sessions"][0]["channels"]
        self.assertEqual(channel["channel"], 1)

    def test_cliUnreachable(self) -> None:
        """
        The CLI says clearly when it cannot read the status.
        """
        err = io.StringIO()
        self.patch(sys, "stderr", err)
        self.assertEqual(cliMain(["status", "http://127.0.0.1:1/"], environ={}), 1)
        self.assertIn("cannot read http://127.0.0.1:1/sessions.json", err.getvalue())


class GuardTests(SynchronousTestCase):
    """
    The status view refuses what a hostile web page could make the
    operator's browser send: other C{Host}s (DNS rebinding), cross-site
    and token-less state changes (CSRF); and, when asked, requests without
    credentials.
    """

    def setUp(self) -> None:
        self.pair, self.registry = observedPair()
        self.resource = StatusResource(self.registry, allowedHosts=["status.example"])
        self.sid = self.pair.client.transport.sessionID
        self.expirePath = b"/sessions/%s/expire" % (self.sid.encode(),)
        self.token = self.resource.token.encode()

    def assertLive(self) -> None:
        """
        Both ends of the session are still live, in the registry and in
        their own state.
        """
        sessions: Any = self.registry.report()["sessions"]
        self.assertEqual(len(sessions), 2)
        self.assertEqual(self.pair.client.transport.state, "attached")
        self.assertEqual(self.pair.server.transport.state, "attached")

    def assertExpired(self) -> None:
        """
        The session was ended by the operator.
        """
        self.assertEqual(self.registry.report()["sessions"], [])
        self.assertEqual([e["endReason"] for e in self.registry.ended.values()], ["SessionExpired"] * 2)

    def post(self, headers: dict[bytes, bytes], body: bytes | None = None) -> tuple[int, bytes, Any]:
        """
        Post the session's expiry.

        @param headers: the request's headers.
        @param body: a form-encoded body.
        @return: what L{render} returns.
        """
        return render(self.resource, self.expirePath, "POST", headers, body=body)

    def test_crossSiteFormRefused(self) -> None:
        """
        The reported attack: a form on another site posts the expiry, with
        C{Origin: http://attacker.example}; without the token, and even
        with it, it is refused (403) and the session lives on.
        """
        host = {b"host": b"127.0.0.1:17080", b"origin": ATTACKER}
        for headers, body in (
            (host, None),
            (host, b""),
            ({**host, b"x-migrate-token": self.token}, None),
            (host, b"token=" + self.token),
        ):
            code, text, request = self.post(headers, body)
            self.assertEqual((code, text), (403, b"cross-origin request refused\n"))
            self.assertEqual(request.responseHeaders.getRawHeaders(b"content-type"), [b"text/plain; charset=utf-8"])
            self.assertLive()

    def test_crossSiteRefererRefused(self) -> None:
        """
        Without C{Origin}, a C{Referer} from another site is refused too;
        so are C{Origin: null} and an origin on another port or scheme.
        """
        for headers in (
            {b"referer": ATTACKER + b"/page.html"},
            {b"origin": b"null"},
            {b"origin": b"http://127.0.0.1:17081"},
            {b"origin": b"https://127.0.0.1:17080"},
        ):
            headers = {**headers, b"host": b"127.0.0.1:17080", b"x-migrate-token": self.token}
            code, _, _ = self.post(headers)
            self.assertEqual(code, 403, headers)
            self.assertLive()

    def test_tokenRequired(self) -> None:
        """
        A post without the token, or with a wrong one (as header or form
        field), or with the token in the query string only, is refused
        (403) and the session lives on; so is any other state-changing
        method.
        """
        for headers, body in (
            ({}, None),
            ({b"x-migrate-token": b"guess"}, None),
            ({b"x-migrate-token": b""}, None),
            ({}, b"token=guess"),
        ):
            code, text, _ = self.post(headers, body)
            self.assertEqual(code, 403)
            self.assertIn(b"token", text)
            self.assertLive()
        code, _, _ = render(self.resource, self.expirePath + b"?token=" + self.token, "POST")
        self.assertEqual(code, 403)
        code, _, _ = render(self.resource, self.expirePath, "DELETE")
        self.assertEqual(code, 403)
        self.assertLive()

    def test_tokenNoOrigin(self) -> None:
        """
        The CLI's way: the token in C{X-Migrate-Token}, no C{Origin}: the
        session is expired.
        """
        code, body, _ = self.post({b"host": b"127.0.0.1:17080", b"x-migrate-token": self.token})
        self.assertEqual((code, json.loads(body)), (200, {"expired": True}))
        self.assertExpired()

    def test_sameOriginForm(self) -> None:
        """
        The page's own form: same origin, the token as a form field; the
        session is expired and the browser sent back to the page.
        """
        code, _, request = self.post(
            {b"host": b"localhost:17080", b"origin": b"http://localhost:17080"}, b"token=" + self.token
        )
        self.assertEqual(code, 303)
        self.assertEqual(request.responseHeaders.getRawHeaders(b"location"), [b"../../"])
        self.assertExpired()

    def test_sameOriginReferer(self) -> None:
        """
        A C{Referer} from the page itself (no C{Origin}) is the same origin.
        """
        code, _, _ = self.post(
            {
                b"host": b"127.0.0.1:17080",
                b"referer": b"http://127.0.0.1:17080/index.html",
                b"x-migrate-token": self.token,
            }
        )
        self.assertEqual(code, 200)
        self.assertExpired()

    def test_tokenOnGet(self) -> None:
        """
        Every accepted response carries the token; each view has its own.
        """
        _, _, request = render(self.resource, b"/sessions.json")
        self.assertEqual(request.responseHeaders.getRawHeaders(b"x-migrate-token"), [self.token])
        self.assertNotEqual(StatusResource(self.registry).token, self.resource.token)
        self.assertGreaterEqual(len(self.resource.token), 32)

    def test_wrongHostRefused(self) -> None:
        """
        DNS rebinding: a request whose C{Host} is another name, even one
        resolving here, is refused (421) on C{GET} and on C{POST} (token
        or not), and the session lives on; so is another address than the
        one the request arrived on, a malformed C{Host}, and two of them.
        """
        for host in (
            b"attacker.example:17080",
            b"attacker.example",
            b"127.0.0.2:17080",
            b"status.example.attacker.example",
            b"localhost@attacker.example",
            b"127.0.0.1:17080/x",
            b"",
        ):
            for method, headers in (
                ("GET", {}),
                ("POST", {b"x-migrate-token": self.token}),
            ):
                code, text, request = render(
                    self.resource,
                    self.expirePath if method == "POST" else b"/sessions.json",
                    method,
                    {**headers, b"host": host},
                )
                self.assertEqual((code, request.responseMessage), (421, b"Misdirected Request"), host)
                self.assertIn(b"unknown Host", text)
                self.assertIsNone(request.responseHeaders.getRawHeaders(b"x-migrate-token"))
        self.assertLive()

    def test_twoHostsRefused(self) -> None:
        """
        Two C{Host} headers are refused, even if one is right.
        """
        request: Any = DummyRequest([b"sessions.json"])
        request.path = b"/sessions.json"
        request.requestHeaders.setRawHeaders(b"host", [b"127.0.0.1", b"attacker.example"])
        self.resource.render(request)
        self.assertEqual(request.responseCode, 421)

    def test_hostsAccepted(self) -> None:
        """
        The address the request arrived on (with or without a port),
        C{localhost} and the configured name are accepted, in any case.
        """
        for host in (
            b"127.0.0.1",
            b"127.0.0.1:17080",
            b"localhost",
            b"LocalHost.:17080",
            b"status.example",
            b"Status.Example:8443",
        ):
            code, _, _ = render(self.resource, b"/sessions.json", headers={b"host": host})
            self.assertEqual(code, 200, host)

    def test_ipv6Host(self) -> None:
        """
        On IPv6, the address in brackets (with or without a port) is
        accepted; an IPv4-mapped local address accepts the IPv4 address.
        """
        local = IPv6Address("TCP", "::1", 17080)
        for host in (b"[::1]", b"[::1]:17080", b"[0:0::1]:17080"):
            code, _, _ = render(self.resource, b"/sessions.json", headers={b"host": host}, local=local)
            self.assertEqual(code, 200, host)
        code, _, _ = render(self.resource, b"/sessions.json", headers={b"host": b"::1"}, local=local)
        self.assertEqual(code, 421)
        mapped = IPv6Address("TCP", "::ffff:192.0.2.7", 17080)
        code, _, _ = render(self.resource, b"/", headers={b"host": b"192.0.2.7:17080"}, local=mapped)
        self.assertEqual(code, 200)

    def test_missingHost(self) -> None:
        """
        A request without C{Host} (HTTP/1.0) is accepted on a loopback
        address, refused on any other.
        """
        code, _, _ = render(self.resource, b"/sessions.json")
        self.assertEqual(code, 200)
        code, _, _ = render(self.resource, b"/sessions.json", local=IPv6Address("TCP", "::1", 1))
        self.assertEqual(code, 200)
        code, _, _ = render(self.resource, b"/sessions.json", local=IPv4Address("TCP", "192.0.2.7", 1))
        self.assertEqual(code, 421)
        code, _, _ = render(
            self.resource,
            b"/sessions.json",
            headers={b"host": b"192.0.2.7:17080"},
            local=IPv4Address("TCP", "192.0.2.7", 17080),
        )
        self.assertEqual(code, 200)

    def test_basicAuth(self) -> None:
        """
        With credentials, every request needs them: none, a wrong password,
        an unknown user or a malformed header get 401 with a challenge;
        the right ones get through (and a post still needs the token).
        """
        resource = StatusResource(self.registry, credentials={"ops": "s3cret:x", "other": "p w"})
        for authorization in (
            None,
            basic("ops", "wrong"),
            basic("ops", "s3cret"),
            basic("nobody", "s3cret:x"),
            basic("other", "s3cret:x"),
            b"Basic !!!",
            b"Bearer s3cret:x",
        ):
            headers = {b"authorization": authorization} if authorization is not None else {}
            for method, path in (("GET", b"/sessions.json"), ("GET", b"/"), ("POST", self.expirePath)):
                code, text, request = render(
                    resource, path, method, {**headers, b"x-migrate-token": resource.token.encode()}
                )
                self.assertEqual(code, 401, (authorization, method, path))
                self.assertEqual(
                    request.responseHeaders.getRawHeaders(b"www-authenticate"),
                    [b'Basic realm="migrate status", charset="UTF-8"'],
                )
                self.assertIsNone(request.responseHeaders.getRawHeaders(b"x-migrate-token"))
        self.assertLive()
        right = {b"authorization": basic("ops", "s3cret:x")}
        # A cross-site post is refused before credentials are asked for
        # (no password prompt), and with the browser's cached ones too.
        for headers in ({}, right):
            code, _, _ = render(
                resource,
                self.expirePath,
                "POST",
                {**headers, b"origin": ATTACKER, b"x-migrate-token": resource.token.encode()},
            )
            self.assertEqual(code, 403)
        self.assertLive()
        code, _, request = render(resource, b"/sessions.json", headers=right)
        self.assertEqual(code, 200)
        token = request.responseHeaders.getRawHeaders(b"x-migrate-token")[0]
        code, _, _ = render(resource, self.expirePath, "POST", right)
        self.assertEqual(code, 403)
        self.assertLive()
        code, _, _ = render(resource, self.expirePath, "POST", {**right, b"x-migrate-token": token})
        self.assertEqual(code, 200)
        self.assertExpired()


class ParsingTests(SynchronousTestCase):
    """
    The helpers behind the guards.
    """

    def test_normalizeHostName(self) -> None:
        """
        Names are lower-cased without a final dot, addresses compressed,
        IPv6 brackets dropped; anything else is a L{ValueError}.
        """
        self.assertEqual(normalizeHostName("Status.Example."), "status.example")
        self.assertEqual(normalizeHostName("[0:0::1]"), "::1")
        self.assertEqual(normalizeHostName("::ffff:127.0.0.1"), "127.0.0.1")
        for bad in ("", "a b", "a.example:80", "[a.example]", "a/b"):
            self.assertRaises(ValueError, normalizeHostName, bad)

    def test_parseHostHeader(self) -> None:
        """
        C{Host} headers split into host and port; malformed ones are
        L{None}.
        """
        self.assertEqual(parseHostHeader(b"[::1]:7080"), ("::1", 7080))
        self.assertEqual(parseHostHeader(b"LOCALHOST"), ("localhost", None))
        for bad in (b"", b"a:b", b"a:99999", b"\xff", b"u@h", b"h/p", b"::1"):
            self.assertIsNone(parseHostHeader(bad), bad)

    def test_parseOrigin(self) -> None:
        """
        Origins get their default port; non-HTTP ones are L{None}.
        """
        self.assertEqual(parseOrigin(b"http://127.0.0.1"), ("http", "127.0.0.1", 80))
        self.assertEqual(parseOrigin(b"https://[::1]/x?y"), ("https", "::1", 443))
        for bad in (b"null", b"file:///etc", b"http://", b"\xff"):
            self.assertIsNone(parseOrigin(bad), bad)

    def writeAuthFile(self, text: str, mode: int = 0o600) -> str:
        """
        Write a credentials file.

        @param text: its content.
        @param mode: its permissions.
        @return: its name.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)
        return path

    def test_readCredentials(self) -> None:
        """
        C{user:password} lines (white space around a line dropped), the
        password after the first colon; comments and blank lines skipped.
        """
        path = self.writeAuthFile("# operators\n\nops:s3cret:x\n  other:p w \r\n")
        self.assertEqual(readCredentials(path), {"ops": "s3cret:x", "other": "p w"})

    def test_credentialsRefused(self) -> None:
        """
        A file its group or others may read or change is refused with the
        fix; so are a missing file, bad lines, repeated users and an empty
        file.
        """
        for mode in (0o640, 0o604, 0o620, 0o644):
            path = self.writeAuthFile("ops:pw\n", mode)
            e = self.assertRaises(ValueError, readCredentials, path)
            self.assertIn("chmod 600", str(e))
            self.assertIn("%04o" % (mode,), str(e))
        self.assertRaises(ValueError, readCredentials, self.mktemp())
        for text in ("ops\n", ":pw\n", "ops:\n", "ops:a\nops:b\n", "# nobody\n"):
            self.assertRaises(ValueError, readCredentials, self.writeAuthFile(text))


class LiveViewTests(TestCase):
    """
    The status view on a real port on 127.0.0.1, read over HTTP by
    L{Agent} and by the CLI (in a thread, as the CLI blocks).
    """

    timeout = 30

    def setUp(self) -> None:
        self.pair, self.registry = observedPair()
        self.sid = self.pair.client.transport.sessionID

    def listen(self, resource: StatusResource | Site) -> str:
        """
        Serve a resource (or a site) on 127.0.0.1.

        @param resource: the status resource, or a site.
        @return: its URL, C{http://127.0.0.1:PORT}.
        """
        site = resource if isinstance(resource, Site) else Site(resource)
        site.noisy = False
        port = reactor.listenTCP(0, site, interface="127.0.0.1")  # type: ignore[arg-type]
        self.addCleanup(port.stopListening)
        address: Any = port.getHost()
        return "http://127.0.0.1:%d" % (address.port,)

    def cli(self, args: list[str], environ: dict[str, str] | None = None) -> Any:
        """
        Run the CLI in a thread, capturing what it prints.

        @param args: its arguments.
        @param environ: its environment.
        @return: a L{Deferred} that fires with C{(status, stdout, stderr)}.
        """
        out, err = io.StringIO(), io.StringIO()
        self.patch(sys, "stdout", out)
        self.patch(sys, "stderr", err)
        d = threads.deferToThread(cliMain, args, environ or {})
        return d.addCallback(lambda code: (code, out.getvalue(), err.getvalue()))

    def assertLive(self) -> None:
        """
        Both ends of the session are still live.
        """
        sessions: Any = self.registry.report()["sessions"]
        self.assertEqual(len(sessions), 2)
        self.assertEqual(self.pair.client.transport.state, "attached")

    @inlineCallbacks
    def test_agentCrossSiteAndHost(self) -> Any:
        """
        Over real HTTP: a cross-site post (with the right token even) is
        refused, so are a foreign C{Host} on C{GET} and C{POST}; the
        session lives on; a post with the token and no C{Origin} expires it.
        """
        url = self.listen(StatusResource(self.registry, allowedHosts=["status.example"]))
        agent = Agent(reactor)
        expire = (url + "/sessions/%s/expire" % (self.sid,)).encode()
        response = yield agent.request(b"GET", (url + "/sessions.json").encode())
        self.assertEqual(response.code, 200)
        yield readBody(response)
        [token] = response.headers.getRawHeaders(b"x-migrate-token")
        response = yield agent.request(
            b"POST", expire, Headers({b"origin": [ATTACKER], b"x-migrate-token": [token]})
        )
        self.assertEqual((response.code, (yield readBody(response))), (403, b"cross-origin request refused\n"))
        for method, target in ((b"GET", (url + "/").encode()), (b"POST", expire)):
            response = yield agent.request(
                method, target, Headers({b"host": [b"attacker.example:17080"], b"x-migrate-token": [token]})
            )
            yield readBody(response)
            self.assertEqual(response.code, 421)
        port = url.rsplit(":", 1)[1].encode()
        response = yield agent.request(b"GET", (url + "/").encode(), Headers({b"host": [b"status.example:" + port]}))
        yield readBody(response)
        self.assertEqual(response.code, 200)
        self.assertLive()
        response = yield agent.request(b"POST", expire, Headers({b"x-migrate-token": [token]}))
        self.assertEqual(json.loads((yield readBody(response))), {"expired": True})
        self.assertEqual(self.registry.report()["sessions"], [])

    @inlineCallbacks
    def test_cliExpire(self) -> Any:
        """
        C{python -m migrate expire} reads the token and sends it: the
        session is expired; an unknown one is reported as such.
        """
        url = self.listen(StatusResource(self.registry))
        code, out, err = yield self.cli(["expire", url + "/", self.sid])
        self.assertEqual((code, out.strip()), (0, "session %s expired" % (self.sid,)), err)
        self.assertEqual(self.registry.report()["sessions"], [])
        code, out, err = yield self.cli(["expire", url.removeprefix("http://"), "00" * 16])
        self.assertEqual((code, err.strip()), (1, "no session %s" % ("00" * 16,)))

    @inlineCallbacks
    def test_cliListsEverySession(self) -> Any:
        """
        C{python -m migrate status} prints every session: both ends of a
        detached one with the time they have left, and both ends of one
        closed since, with its reason; C{--json} gives the same entries.
        """
        self.pair.net.refuse = True
        self.pair.net.cutAll()
        self.pair.settle(seconds=2, step=0.5)
        self.pair.net.refuse = False
        results: list[Any] = []
        self.pair.endpoint.connect(Factory.forProtocol(Recorder)).addBoth(results.append)
        self.pair.net.flush()
        closedID = results[0].transport.sessionID
        results[0].transport.loseConnection()
        self.pair.net.flush()
        url = self.listen(StatusSite(StatusResource(self.registry)))
        code, out, err = yield self.cli(["status", url])
        self.assertEqual(code, 0, err)
        lines = out.splitlines()
        self.assertEqual(lines[0], "Live sessions (2)")
        detached = [line for line in lines if self.sid in line]
        self.assertEqual(len(detached), 2, out)
        for line in detached:
            self.assertRegex(line, r"\bdetached\b.*\b2\.0 s\s+14 min 58 s\b")
        self.assertIn("Hibernated sessions (0): none", lines)
        self.assertIn("Recently ended sessions (2, newest first)", lines)
        closed = [line for line in lines if closedID in line]
        self.assertEqual(len(closed), 2, out)
        for line in closed:
            self.assertRegex(line, r"\bclosed\s+session closed cleanly$")
        self.assertEqual(lines[-1], "2 live session(s), 0 hibernated, 2 recently ended")
        code, out, err = yield self.cli(["status", "--json", url])
        self.assertEqual(code, 0, err)
        report = json.loads(out)
        self.assertEqual([s["expiresIn"] for s in report["sessions"]], [898.0, 898.0])
        self.assertEqual([(e["id"], e["endCode"]) for e in report["ended"]], [(closedID, "closed")] * 2)

    @inlineCallbacks
    def test_cliAuth(self) -> Any:
        """
        With basic auth, the CLI says it needs credentials without them,
        that they are wrong when they are, and works with them from the
        URL (percent-encoded) or from C{MIGRATE_STATUS_AUTH}.
        """
        url = self.listen(StatusResource(self.registry, credentials={"ops": "s3cret:@x"}))
        code, out, err = yield self.cli(["status", url])
        self.assertEqual(code, 1)
        self.assertIn("needs credentials", err)
        code, out, err = yield self.cli(["expire", url.replace("//", "//ops:nope@"), self.sid])
        self.assertEqual(code, 1)
        self.assertIn("refused these credentials", err)
        self.assertNotIn("nope", err)
        self.assertLive()
        code, out, err = yield self.cli(["status", url], {"MIGRATE_STATUS_AUTH": "ops:s3cret:@x"})
        self.assertEqual(code, 0, err)
        self.assertIn("2 live session(s)", out)
        code, out, err = yield self.cli(["expire", url.replace("//", "//ops:s3cret%3A%40x@"), self.sid])
        self.assertEqual(code, 0, err)
        self.assertEqual(self.registry.report()["sessions"], [])


class BrokenPipeTests(SynchronousTestCase):
    """
    C{python -m migrate status --json URL | head} ends quietly.
    """

    def test_readerGoesAway(self) -> None:
        """
        When the reader of the CLI's output closes it early, the CLI exits
        (status 1, as Python advises for a broken pipe) without a traceback.
        """
        import http.server
        import subprocess
        import threading

        root = self.mktemp()
        os.makedirs(root)
        sessions = [{"id": "%032x" % i, "side": "server", "state": "attached"} for i in range(20000)]
        with open(os.path.join(root, "sessions.json"), "w") as f:
            json.dump({"version": 1, "time": 0, "sessions": sessions, "ended": []}, f)

        class Quiet(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, directory=root, **kwargs)

            def log_message(self, *args: Any) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        self.addCleanup(server.server_close)
        self.addCleanup(server.shutdown)
        url = "http://127.0.0.1:%d/" % (server.server_address[1],)
        root_ = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        p = subprocess.Popen(
            [sys.executable, "-m", "migrate", "status", "--json", url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=root_,
            env=dict(os.environ, PYTHONPATH=root_),
        )
        assert p.stdout is not None and p.stderr is not None
        self.assertTrue(p.stdout.read(100))
        p.stdout.close()
        error = p.stderr.read()
        p.stderr.close()
        self.assertEqual(p.wait(30), 1)
        self.assertNotIn(b"Traceback", error)
        self.assertNotIn(b"BrokenPipe", error)


class _Watched:
    """
    What L{SessionRegistry.watchServer} reads of a server endpoint: its
    factory.
    """

    def __init__(self, factory: Any) -> None:
        self.factory = factory


class EveryStateTests(SynchronousTestCase):
    """
    A server on a deterministic clock with a session in every state: the
    JSON, the HTML page and the CLI's text list each one, with its state,
    its times and, once ended, its reason code and words.
    """

    def setUp(self) -> None:
        options = SessionOptions(sessionTimeout=100.0)
        self.pair = Pair(options=options)
        self.clock = self.pair.clock
        self.registry = SessionRegistry(self.clock)
        self.pair.factory.addObserver(self.registry)
        self.registry.watchServer(_Watched(self.pair.factory))
        self.resource = StatusResource(self.registry)
        # A second network to the same server, for the clients that go
        # away (from 10.0.0.3) while the others stay.
        self.roamingNet = MemoryNetwork(self.clock)
        self.roamingNet.clientHost = "10.0.0.3"
        self.roamingNet.listen(self.pair.factory)
        self.roaming = MigrateClientEndpoint(
            self.clock, self.roamingNet.clientEndpoint(), options, random.Random(1)
        )
        self.ids: dict[str, str] = {}
        self.servers: dict[str, Any] = {}
        self.build()

    def connect(self, name: str, roaming: bool = False) -> tuple[Any, Any]:
        """
        Open a session.

        @param name: what the test calls it.
        @param roaming: through the network whose clients go away.
        @return: its client and server application protocols.
        """
        results: list[Any] = []
        endpoint = self.roaming if roaming else self.pair.endpoint
        endpoint.connect(Factory.forProtocol(Recorder)).addBoth(results.append)
        self.pair.net.flush()
        self.roamingNet.flush()
        [client] = results
        self.assertIsInstance(client, Recorder)
        self.ids[name] = client.transport.sessionID
        self.servers[name] = self.pair.servers[-1]
        return client, self.servers[name]

    def build(self) -> None:
        """
        At 0, a session whose client goes away for good: it expires at 100.
        At 101: one attached with data both ways; one closed cleanly, one
        aborted by the server's application, one expired by the operator;
        two whose clients go away, one of them then hibernated. Then 30 s
        pass: it is 131.
        """
        self.connect("expired", roaming=True)
        self.roamingNet.refuse = True
        self.roamingNet.cutAll()
        self.pair.settle(seconds=101, step=1)
        self.assertEqual(self.clock.seconds(), 101.0)
        self.roamingNet.refuse = False

        client, server = self.connect("attached")
        client.transport.write(b"x" * 3000)
        server.transport.write(b"y" * 50)
        client, _ = self.connect("closed")
        client.transport.loseConnection()
        _, server = self.connect("aborted")
        server.transport.abortConnection()
        self.connect("operator")
        self.pair.settle()
        self.registry.expire(self.ids["operator"])
        self.connect("detached", roaming=True)
        _, server = self.connect("hibernated", roaming=True)
        self.roamingNet.refuse = True
        self.roamingNet.cutAll()
        # A store for this one only (the others, adopted without one, stay
        # in memory however long they are detached).
        self.store = MemorySessionStore()
        self.pair.factory.store = self.store
        self.pair.factory.hibernate(sessionOf(server))
        self.pair.settle(seconds=30, step=1)
        self.assertEqual(self.clock.seconds(), 131.0)

    def json(self) -> dict[str, Any]:
        """
        Read C{/sessions.json}.
        """
        code, body, _ = render(self.resource, b"/sessions.json")
        self.assertEqual(code, 200)
        report: dict[str, Any] = json.loads(body)
        return report

    def byName(self, entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """
        Entries by the names the test gave their sessions.
        """
        names = {sid: name for name, sid in self.ids.items()}
        return {names[e["id"]]: e for e in entries}

    def test_json(self) -> None:
        """
        The JSON lists the attached and the detached session (with how long
        it has been detached and how long it has left), the hibernated one
        (in memory: its application is kept), and the four ended ones with
        when they ended, their reason codes and their words.
        """
        report = self.json()
        self.assertEqual(report["time"], 131.0)
        live = self.byName(report["sessions"])
        self.assertEqual(set(live), {"attached", "detached"})
        attached = live["attached"]
        self.assertEqual(
            (attached["state"], attached["detachedFor"], attached["expiresIn"]), ("attached", None, None)
        )
        self.assertEqual((attached["bytesSent"], attached["bytesReceived"]), (50, 3000))
        self.assertTrue(attached["peer"].startswith("10.0.0.2:"), attached["peer"])
        detached = live["detached"]
        self.assertEqual(detached["state"], "detached")
        self.assertEqual(detached["detachedFor"], 30.0)
        self.assertEqual((detached["expiresAt"], detached["expiresIn"]), (201.0, 70.0))
        self.assertTrue(detached["peer"].startswith("10.0.0.3:"), detached["peer"])

        [hibernated] = report["hibernated"]
        self.assertEqual(hibernated["id"], self.ids["hibernated"])
        self.assertEqual((hibernated["state"], hibernated["hibernatedIn"]), ("hibernated", "memory"))
        self.assertEqual((hibernated["detachedFor"], hibernated["expiresIn"]), (30.0, 70.0))

        ended = self.byName(report["ended"])
        self.assertEqual(
            {name: (e["endedAt"], e["endCode"], e["endText"], e["state"]) for name, e in ended.items()},
            {
                "expired": (100.0, "expired", "session detached for more than 100 seconds", "closed"),
                "closed": (101.0, "closed", "session closed cleanly", "closed"),
                "aborted": (101.0, "aborted", "aborted by the application on this side", "closed"),
                "operator": (101.0, "expired-by-operator", "expired by the operator", "closed"),
            },
        )
        self.assertEqual([e["endedAt"] for e in report["ended"]], [100.0, 101.0, 101.0, 101.0])
        self.assertEqual(ended["aborted"]["endReason"], "ConnectionAborted")
        self.assertEqual(ended["expired"]["age"], 100.0)
        self.assertEqual((report["endedOmitted"], report["warnings"]), (0, []))

    def test_html(self) -> None:
        """
        The page has a table for each kind, every session in it with its
        times in units and the reason of ended ones; live and hibernated
        sessions have an expire button, ended ones none.
        """
        code, body, _ = render(self.resource, b"/")
        self.assertEqual(code, 200)
        page = body.decode("utf-8")
        for title in (
            "Live sessions (2)",
            "Hibernated sessions (1)",
            "Recently ended sessions (4, newest first)",
        ):
            self.assertIn("<h2>%s</h2>" % (title,), page)
        for name, sid in self.ids.items():
            self.assertEqual(page.count("<td>%s</td>" % (sid,)), 1, name)
            expirable = name in ("attached", "detached", "hibernated")
            self.assertEqual(page.count("action='sessions/%s/expire'" % (sid,)), int(expirable), name)
        # 70 s left for the detached and the hibernated session, 30 s
        # detached each.
        self.assertEqual(page.count("<td>1 min 10 s</td>"), 2)
        self.assertEqual(page.count("<td>30 s</td><td>1 min 10 s</td>"), 2)
        for code_ in ("expired", "closed", "aborted", "expired-by-operator"):
            self.assertIn("<td>%s</td>" % (code_,), page)
        self.assertIn("<td>session detached for more than 100 seconds</td>", page)
        self.assertIn("<td>31 s ago</td>", page)
        self.assertIn("<td>2.9 KiB</td>", page)

    def test_text(self) -> None:
        """
        The CLI's text has the three tables, ended sessions newest first,
        and the summary line.
        """
        text = renderText(self.json())
        for sid in self.ids.values():
            self.assertIn(sid, text)
        lines = text.splitlines()
        self.assertEqual(lines[0], "Live sessions (2)")
        self.assertIn("Hibernated sessions (1)", lines)
        self.assertIn("Recently ended sessions (4, newest first)", lines)
        self.assertEqual(lines[-1], "2 live session(s), 1 hibernated, 4 recently ended")
        [detached] = [line for line in lines if self.ids["detached"] in line]
        self.assertRegex(detached, r"\bdetached\s+10\.0\.0\.3:\d+\s+30 s\s+30 s\s+1 min 10 s\b")
        [hibernated] = [line for line in lines if self.ids["hibernated"] in line]
        self.assertRegex(hibernated, r"\bhibernated\s+memory\s+10\.0\.0\.3:\d+\s+30 s\s+1 min 10 s\b")
        [expired] = [line for line in lines if self.ids["expired"] in line]
        self.assertRegex(
            expired, r"31 s ago\s+1 min 40 s\s+.*\bexpired\s+session detached for more than 100 seconds$"
        )
        order = [name for line in lines for name, sid in self.ids.items() if sid in line]
        self.assertEqual(order[-4:], ["operator", "aborted", "closed", "expired"])

    def test_serverRecordsAlone(self) -> None:
        """
        A registry that was told of no session (it watches the server but
        observes nothing) still lists what the server knows: its live and
        hibernated sessions, and the closed ones it remembers, with their
        close times and codes.  (A session that expired without a notice is
        not remembered by the server.)
        """
        registry = SessionRegistry(self.clock)
        registry.watchServer(_Watched(self.pair.factory))
        report: Any = registry.report()
        self.assertEqual(self.byName(report["sessions"]).keys(), {"attached", "detached"})
        self.assertEqual([h["id"] for h in report["hibernated"]], [self.ids["hibernated"]])
        self.assertEqual(
            {name: (e["endedAt"], e["endCode"]) for name, e in self.byName(report["ended"]).items()},
            {
                "closed": (101.0, "closed"),
                "aborted": (101.0, "aborted"),
                "operator": (101.0, "expired-by-operator"),
            },
        )

    def test_expireHibernated(self) -> None:
        """
        The hibernated session's button works: it leaves the hibernated
        list and the store, and is listed as ended by the operator.
        """
        sid = self.ids["hibernated"]
        code, body, _ = render(
            self.resource,
            b"/sessions/%s/expire" % (sid.encode(),),
            "POST",
            {b"x-migrate-token": self.resource.token.encode()},
        )
        self.assertEqual((code, json.loads(body)), (200, {"expired": True}))
        report = self.json()
        self.assertEqual(report["hibernated"], [])
        self.assertEqual(self.store.rows, {})
        [entry] = [e for e in report["ended"] if e["id"] == sid]
        self.assertEqual((entry["endedAt"], entry["endCode"]), (131.0, "expired-by-operator"))

    def test_expiresOnTime(self) -> None:
        """
        When its time is up, the detached session moves to the ended ones,
        as expired.
        """
        self.pair.settle(seconds=70, step=1)
        report = self.json()
        self.assertNotIn(self.ids["detached"], [s["id"] for s in report["sessions"]])
        [entry] = [e for e in report["ended"] if e["id"] == self.ids["detached"]]
        self.assertEqual((entry["endedAt"], entry["endCode"]), (201.0, "expired"))

    def test_keepEnded(self) -> None:
        """
        Only the last C{keepEnded} ended sessions are listed; how many older
        ones are still remembered (by the registry, or by the server) is
        said.
        """
        self.registry.keepEnded = 1
        self.clock.advance(1)
        self.servers["attached"].transport.loseConnection()
        self.pair.settle()
        report = self.json()
        self.assertEqual([(e["id"], e["endedAt"]) for e in report["ended"]], [(self.ids["attached"], 132.0)])
        # The registry let the others go; the server still remembers the
        # closed, the aborted and the operator's (the expired one ended
        # without a notice: it is forgotten).
        self.assertEqual(report["endedOmitted"], 3)
        self.assertIn("Recently ended sessions (1, newest first, 3 older not shown)", renderText(report))


class _HeldStore(MemorySessionStore):
    """
    A store whose saves complete when the test says.
    """

    def __init__(self) -> None:
        MemorySessionStore.__init__(self)
        self.held: list[tuple[Deferred[None], Any]] = []
        self.broken: Optional[str] = None

    def save(self, record: Any) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self.held.append((d, record))
        return d

    def complete(self) -> None:
        """
        Complete the saves so far.
        """
        held, self.held = self.held, []
        for d, record in held:
            MemorySessionStore.save(self, record)
            d.callback(None)

    def list(self, side: Optional[str] = None) -> Any:
        if self.broken is not None:
            return fail(OSError(self.broken))
        return MemorySessionStore.list(self, side)


@implementer(IMigratable)
class _Migratable(Recorder):
    """
    An application the server drops from memory when its session
    hibernates.
    """

    def saveMigrationState(self) -> bytes:
        return b"state"

    def restoreMigrationState(self, state: bytes) -> None:
        pass

    def validateResume(self, asleep: float, peer: Any) -> bool:
        return True


class HibernatedTests(SynchronousTestCase):
    """
    A hibernated session whose application was dropped is listed while
    its checkpoint is being saved, then from the store.
    """

    def setUp(self) -> None:
        self.pair = Pair(options=SessionOptions(sessionTimeout=100.0), serverProtocol=_Migratable)
        self.registry = SessionRegistry(self.pair.clock)
        self.pair.factory.addObserver(self.registry)
        self.registry.watchServer(_Watched(self.pair.factory))
        self.store = _HeldStore()
        self.pair.factory.store = self.store
        self.pair.open()
        self.sid = self.pair.client.transport.sessionID
        self.pair.client.transport.write(b"a" * 1000)
        self.pair.settle()
        self.pair.net.refuse = True
        self.pair.net.cutAll()
        self.pair.settle(seconds=5, step=1)
        self.pair.factory.hibernate(self.pair.serverSession)
        self.pair.settle(seconds=5, step=1)

    def fullReport(self) -> dict[str, Any]:
        """
        The registry's full report (the store's listing included).
        """
        reports: list[dict[str, Any]] = []
        self.registry.fullReport().addCallback(reports.append)
        [report] = reports
        return report

    def test_savingThenStored(self) -> None:
        """
        While its checkpoint is being written, the session is listed as
        hibernated "saving", with everything its checkpoint says; once
        written, as "stored" from the store's listing (id, peer, expiry);
        once only, either way.
        """
        report = self.fullReport()
        self.assertEqual(report["sessions"], [])
        [entry] = report["hibernated"]
        keys = ("id", "state", "hibernatedIn", "detachedFor", "expiresAt", "expiresIn", "bytesReceived")
        self.assertEqual(
            {k: entry[k] for k in keys},
            {
                "id": self.sid,
                "state": "hibernated",
                "hibernatedIn": "saving",
                "detachedFor": 10.0,
                "expiresAt": 100.0,
                "expiresIn": 90.0,
                "bytesReceived": 1000,
            },
        )
        self.store.complete()
        [entry] = self.fullReport()["hibernated"]
        self.assertEqual(
            {k: entry[k] for k in keys if k != "detachedFor"},
            {
                "id": self.sid,
                "state": "hibernated",
                "hibernatedIn": "store",
                "expiresAt": 100.0,
                "expiresIn": 90.0,
                "bytesReceived": None,
            },
        )
        self.assertTrue(entry["peer"].startswith("10.0.0.2:"), entry["peer"])
        self.assertIn("hibernated  store", renderText(self.fullReport()))

    def test_storeUnlistable(self) -> None:
        """
        A store that cannot be listed makes a warning on the page and in
        the CLI's text, not an error: the rest is still shown.
        """
        self.store.complete()
        self.store.broken = "disk on fire"
        resource = StatusResource(self.registry)
        code, body, _ = render(resource, b"/sessions.json")
        self.assertEqual(code, 200)
        report = json.loads(body)
        self.assertEqual(report["warnings"], ["cannot list the hibernated sessions of a store: disk on fire"])
        code, body, _ = render(resource, b"/")
        self.assertIn(b"cannot list the hibernated sessions of a store: disk on fire", body)
        self.assertIn("warning: cannot list", renderText(report))


class EndCodeTests(SynchronousTestCase):
    """
    L{describeEnd} derives the documented reason codes from what sessions
    record: their end reasons and notices as Migrate makes them, on either
    side.
    """

    def test_codes(self) -> None:
        """
        Every code, from the reasons and notices Migrate ends sessions
        with (the peer hears a notice as L{PeerAborted}).
        """
        peer = "peer aborted the session: %s".__mod__
        done = ConnectionDone("session closed cleanly")
        cases: list[tuple[str, BaseException, dict[str, Any]]] = [
            ("closed", done, {}),
            ("closed", ConnectionDone("closed; the peer did not finish its close"), {"side": "client"}),
            ("aborted", ConnectionAborted("aborted"), {"notice": "aborted", "heard": ConnectionAborted()}),
            ("aborted", PeerAborted(peer("aborted")), {"side": "client"}),
            (
                "application-error",
                ConnectionAborted("application error"),
                {"notice": "application error", "heard": RuntimeError("boom")},
            ),
            ("application-error", PeerAborted(peer("application error")), {"side": "client"}),
            ("backend-refused", done, {"closeReason": "backend refused: Connection refused"}),
            ("backend-closed", done, {"closeReason": "backend closed"}),
            ("backend-reset", done, {"closeReason": "backend reset: Connection lost"}),
            ("backend-closed", PeerAborted(peer("backend closed")), {"side": "client"}),
            ("expired", SessionExpired("session detached for more than 900 seconds"), {}),
            ("expired", SessionExpired("hibernated session expired"), {}),
            ("expired-by-operator", SessionExpired("expired by the operator"), {"notice": "expired by the operator"}),
            ("expired-by-operator", PeerAborted(peer("expired by the operator")), {"side": "client"}),
            ("server-shutdown", SessionExpired("server shut down"), {"notice": "server shut down"}),
            ("server-shutdown", PeerAborted(peer("server shut down")), {"side": "client"}),
            ("server-shutdown", ConnectionLost("the reactor is shutting down"), {}),
            ("client-shutdown", SessionExpired("client shut down"), {"notice": "client shut down", "side": "client"}),
            ("client-shutdown", PeerAborted(peer("client shut down")), {}),
            ("client-shutdown", ConnectionLost("the reactor is shutting down"), {"side": "client"}),
            ("refused-resume", SessionExpired("resume from a new address refused by policy"), {}),
            ("refused-resume", SessionExpired("resume refused by the application"), {}),
            ("refused-resume", SessionExpired("server refused the resume: unknown session"), {"side": "client"}),
            ("capacity", SessionExpired("server at capacity"), {"notice": "server at capacity"}),
            ("capacity", SessionExpired("server at capacity: memory"), {"notice": "server at capacity: memory"}),
            ("capacity", PeerAborted(peer("server at capacity")), {"side": "client"}),
            (
                "buffer-overflow",
                ConnectionAborted("buffer overflow"),
                {"notice": "buffer overflow", "heard": BufferOverflow("session buffer passed its hard cap")},
            ),
            ("buffer-overflow", PeerAborted(peer("buffer overflow")), {"side": "client"}),
            ("close-timeout", SessionExpired("close did not complete in time"), {"heard": done}),
            ("protocol-error", SessionExpired("server resumed at an impossible position"), {"side": "client"}),
            ("restore-failed", SessionExpired("hibernated state lost from the store"), {}),
            ("restore-failed", SessionExpired("application state could not be restored"), {}),
            ("other", ValueError("something else"), {}),
            ("other", SessionExpired("maintenance"), {"notice": "maintenance"}),
        ]
        for expected, reason, extra in cases:
            code, _ = describeEnd(reason, **extra)
            self.assertEqual(code, expected, (reason, extra))
        self.assertEqual({case[0] for case in cases}, set(END_CODES))

    def test_text(self) -> None:
        """
        The words: the reason's own (without the class docstring Twisted's
        errors carry), the notice when it says more, what the application
        heard when it differs, and the application's reason for its close.
        """
        self.assertEqual(
            describeEnd(SessionExpired("expired by the operator"), "expired by the operator"),
            ("expired-by-operator", "expired by the operator"),
        )
        self.assertEqual(
            describeEnd(SessionExpired("resume refused by the application"), "gone"),
            ("refused-resume", "resume refused by the application (peer told: gone)"),
        )
        self.assertEqual(
            describeEnd(ConnectionAborted("application error"), "application error", heard=KeyError("boom")),
            ("application-error", "application error; the application heard KeyError: boom"),
        )
        self.assertEqual(
            describeEnd(ConnectionDone("session closed cleanly"), closeReason="backend closed"),
            ("backend-closed", "backend closed; session closed cleanly"),
        )
        self.assertEqual(
            describeEnd(SessionExpired("close did not complete in time"), closeReason="backend closed"),
            ("close-timeout", "close did not complete in time; the application had closed it: backend closed"),
        )
        self.assertEqual(describeEnd(ConnectionDone()), ("closed", "Connection was closed cleanly."))

    def test_documented(self) -> None:
        """
        The operator's guide lists every code.
        """
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        with open(os.path.join(root, "docs", "operators.md"), encoding="utf-8") as f:
            guide = f.read()
        for code in END_CODES:
            self.assertIn("| `%s` |" % (code,), guide, "%s is not in docs/operators.md" % (code,))

    def test_formats(self) -> None:
        """
        Durations and byte counts, with units.
        """
        self.assertEqual(
            [formatDuration(s) for s in (None, 0, 4.25, 37, 70, 725, 12000, 200000, -3)],
            ["-", "0.0 s", "4.2 s", "37 s", "1 min 10 s", "12 min 05 s", "3 h 20 min", "2 d 07 h", "-3.0 s"],
        )
        self.assertEqual(
            [formatBytes(n) for n in (None, 0, 1023, 1536, 3 * 1024 * 1024, 5 << 40)],
            ["-", "0 B", "1023 B", "1.5 KiB", "3.0 MiB", "5.0 TiB"],
        )


class ShutdownCodeTests(SynchronousTestCase):
    """
    Sessions ended by the stopping of either side are told apart.
    """

    def test_shutdowns(self) -> None:
        """
        A client endpoint's C{endSessions} ends its session as
        C{client-shutdown} on the server; the server factory's as
        C{server-shutdown}.
        """
        pair = Pair()
        registry = SessionRegistry(pair.clock)
        pair.factory.addObserver(registry)
        pair.open()
        leaving = pair.client.transport.sessionID
        other = MigrateClientEndpoint(pair.clock, pair.net.clientEndpoint(), pair.options, random.Random(2))
        results: list[Any] = []
        other.connect(Factory.forProtocol(Recorder)).addBoth(results.append)
        pair.net.flush()
        staying = results[0].transport.sessionID
        pair.endpoint.endSessions()
        pair.settle(seconds=1)
        pair.factory.endSessions()
        pair.settle(seconds=1)
        codes = {e["id"]: (e["endCode"], e["endText"]) for e in registry.report()["ended"]}
        self.assertEqual(
            codes,
            {
                leaving: ("client-shutdown", "peer aborted the session: client shut down"),
                staying: ("server-shutdown", "server shut down"),
            },
        )

    def test_closeReason(self) -> None:
        """
        An application that says why it closed (as the forwarder is to:
        C{closeReason} on its transport) gives the code of its clean close.
        """
        pair, registry = observedPair()
        pair.server.transport.closeReason = "backend closed"
        pair.server.transport.loseConnection()
        pair.settle(seconds=1)
        codes = {e["side"]: e["endCode"] for e in registry.report()["ended"]}
        self.assertEqual(codes, {"server": "backend-closed", "client": "closed"})


class AccessLogTests(SynchronousTestCase):
    """
    L{StatusSite} logs no line per request: the page refreshes every 2 s.
    """

    def get(self, site: Site, path: bytes, host: bytes = b"localhost:7080") -> tuple[bytes, list[LogEvent]]:
        """
        Send a request through a site's HTTP channel, watching the log.

        @param site: the site.
        @param path: the path to get.
        @param host: the C{Host} header.
        @return: what the site answered, and the events logged meanwhile.
        """
        events: list[LogEvent] = []
        observer = cast(ILogObserver, events.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        site.doStart()
        self.addCleanup(site.doStop)
        channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50000))
        assert channel is not None
        transport = StringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 7080),
            peerAddress=IPv4Address("TCP", "127.0.0.1", 50000),
        )
        channel.makeConnection(transport)
        channel.dataReceived(b"GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (path, host))
        channel.connectionLost(ConnectionDone())
        globalLogPublisher.removeObserver(observer)
        return transport.value(), events

    def test_noAccessLog(self) -> None:
        """
        Reading the page and the JSON logs nothing; a plain L{Site} in
        front of the same resource logs each (so that the observation is
        not vacuous).
        """
        pair, registry = observedPair()
        resource = StatusResource(registry)
        for path in (b"/", b"/sessions.json"):
            response, events = self.get(StatusSite(resource, reactor=Clock()), path)
            self.assertTrue(response.startswith(b"HTTP/1.1 200 "), response[:100])
            self.assertEqual([formatEvent(e) for e in events], [])
            response, events = self.get(Site(resource, reactor=Clock()), path)
            self.assertTrue(response.startswith(b"HTTP/1.1 200 "), response[:100])
            self.assertTrue(
                any('"GET %s HTTP/1.1" 200' % (path.decode(),) in formatEvent(e) for e in events),
                [formatEvent(e) for e in events],
            )

    def test_refusalsStillLogged(self) -> None:
        """
        A refused request is still logged, with its reason; and
        C{logRequests} brings the access log back.
        """
        pair, registry = observedPair()
        resource = StatusResource(registry)
        response, events = self.get(StatusSite(resource, reactor=Clock()), b"/", host=b"attacker.example")
        self.assertTrue(response.startswith(b"HTTP/1.1 421 "), response[:100])
        self.assertEqual(
            [formatEvent(e) for e in events],
            ["status view refused GET / from 127.0.0.1: Host 'attacker.example'"],
        )
        site = StatusSite(resource, reactor=Clock())
        site.logRequests = True
        _, events = self.get(site, b"/sessions.json")
        self.assertTrue(any('"GET /sessions.json HTTP/1.1" 200' in formatEvent(e) for e in events))


class DatagramStatusTests(SynchronousTestCase):
    """
    Datagram sessions in the live view: a registry observing a datagram
    port and its clients, and watching the port, on a deterministic clock
    and an in-memory network.
    """

    def setUp(self) -> None:
        from .test_datagram_resume import Counter, Setup

        self.s = Setup(self, Counter)
        self.registry = SessionRegistry(self.s.clock)
        self.s.port.addObserver(self.registry)
        self.registry.watchDatagramPort(self.s.port)
        self.resource = StatusResource(self.registry)
        self.client = self.s.connect(observers=[self.registry])
        for _ in range(3):
            self.s.exchange(self.client, b"x" * 100)
        self.sid = self.client.transport.sessionID  # type: ignore[union-attr]

    def json(self) -> dict[str, Any]:
        code, body, _ = render(self.resource, b"/sessions.json")
        self.assertEqual(code, 200)
        report: dict[str, Any] = json.loads(body)
        return report

    def test_live(self) -> None:
        """
        Both ends are listed once each, as datagram sessions, with their
        peers, states, bytes and datagrams each way, handoffs and times;
        the text and the page show them too.
        """
        self.s.clock.advance(2.5)
        self.s.net.deliver()
        report = self.json()
        self.assertEqual(len(report["sessions"]), 2)
        bySide = {e["side"]: e for e in report["sessions"]}
        for side, entry in bySide.items():
            self.assertEqual((entry["id"], entry["kind"], entry["state"]), (self.sid, "datagram", "attached"))
            self.assertEqual((entry["datagramsSent"], entry["datagramsReceived"]), (3, 3))
            self.assertEqual((entry["handoffs"], entry["generation"]), (0, 0))
            self.assertAlmostEqual(entry["age"], 2.5)
            self.assertIsNone(entry["detachedFor"])
        # Protected sizes: 42 bytes of overhead a datagram, and the
        # client's keepalives.
        self.assertGreaterEqual(bySide["client"]["bytesSent"], 3 * 142)
        self.assertEqual(bySide["server"]["bytesReceived"], bySide["client"]["bytesSent"])
        self.assertEqual(bySide["client"]["bytesReceived"], bySide["server"]["bytesSent"])
        self.assertEqual(bySide["client"]["peer"], "10.0.0.1:7001")
        self.assertTrue(bySide["server"]["peer"].startswith("10.0.0.2:"))
        text = renderText(report)
        self.assertIn("2 live session(s), 0 hibernated, 0 recently ended", text)
        [row] = [line for line in text.splitlines() if "client" in line and self.sid in line]
        self.assertRegex(row, r"\bclient\s+datagram\s+attached\s+10\.0\.0\.1:7001\s+2\.5 s\b")
        self.assertIn("/ 3 dg", row)
        code, body, _ = render(self.resource, b"/")
        self.assertEqual(body.decode().count("<td>datagram</td>"), 2)

    def test_detachedAndHibernated(self) -> None:
        """
        Silent, the client's session is detached (how long, and its time
        left); the server's hibernates and is listed from the port's table,
        in the store, with its counters.
        """
        self.s.cut()
        self.s.net.run(8.0)
        report = self.json()
        [client] = report["sessions"]
        self.assertEqual((client["side"], client["state"], client["kind"]), ("client", "detached", "datagram"))
        self.assertGreater(client["detachedFor"], 0)
        self.assertAlmostEqual(client["expiresIn"] + client["silentFor"], 100.0)
        [asleep] = report["hibernated"]
        self.assertEqual(
            (asleep["id"], asleep["side"], asleep["kind"], asleep["state"], asleep["hibernatedIn"]),
            (self.sid, "server", "datagram", "hibernated", "store"),
        )
        self.assertEqual((asleep["datagramsSent"], asleep["datagramsReceived"]), (3, 3))
        self.assertGreater(asleep["detachedFor"], 0)
        self.assertGreater(asleep["expiresIn"], 80)
        self.assertIn("hibernated", renderText(report))

    def test_expire(self) -> None:
        """
        The view's expire ends a live datagram session: the peer is told,
        both ends are listed as ended by the operator.
        """
        token = {b"x-migrate-token": self.resource.token.encode()}
        code, body, _ = render(self.resource, b"/sessions/%s/expire" % (self.sid.encode(),), "POST", token)
        self.assertEqual((code, json.loads(body)), (200, {"expired": True}))
        self.s.net.deliver()
        report = self.json()
        self.assertEqual(report["sessions"], [])
        self.assertEqual(
            sorted((e["side"], e["kind"], e["endCode"]) for e in report["ended"]),
            [("client", "datagram", "expired-by-operator"), ("server", "datagram", "expired-by-operator")],
        )
        self.assertEqual(self.client.stopped, 1)

    def test_expireHibernated(self) -> None:
        """
        A hibernated datagram session can be expired too: it leaves the
        port's table and the store.
        """
        self.s.cut()
        self.s.net.run(8.0)
        token = {b"x-migrate-token": self.resource.token.encode()}
        code, body, _ = render(self.resource, b"/sessions/%s/expire" % (self.sid.encode(),), "POST", token)
        self.assertEqual((code, json.loads(body)), (200, {"expired": True}))
        self.assertEqual(self.json()["hibernated"], [])
        self.assertEqual(self.s.store.rows, {})

    def test_ended(self) -> None:
        """
        Closed by the client, both ends are listed as ended, cleanly; a
        server that stops for good is told apart.
        """
        self.client.transport.loseConnection()  # type: ignore[union-attr]
        self.s.net.run(0.1)
        report = self.json()
        self.assertEqual(
            sorted((e["side"], e["endCode"], e["datagramsSent"]) for e in report["ended"]),
            [("client", "closed", 3), ("server", "closed", 3)],
        )
        self.assertIn("/ 3 dg", renderText(report))
        self.s.port.store = None
        other = self.s.connect(observers=[self.registry])
        sid = other.transport.sessionID  # type: ignore[union-attr]
        self.s.port.stopListening()
        self.s.net.run(0.1)
        self.assertEqual(other.stopped, 1)
        ended = {(e["id"], e["side"]): e["endCode"] for e in self.json()["ended"]}
        self.assertEqual(
            (ended[(sid, "client")], ended[(sid, "server")]), ("server-shutdown", "server-shutdown")
        )
