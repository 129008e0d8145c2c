"""
The live view: the registry, the JSON schema, the HTML page, the CLI table;
and its guards: loopback, C{Host} checks, the token and origin checks on
state-changing requests, basic auth, and the CLI that works through them.
"""

from __future__ import annotations

import base64
import io
import json
import os
import sys
from typing import Any

from twisted.internet import reactor, threads
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers
from twisted.web.server import NOT_DONE_YET, Site
from twisted.web.test.requesthelper import DummyRequest

from migrate.__main__ import main as cliMain
from migrate._status import (
    SessionRegistry,
    StatusResource,
    normalizeHostName,
    parseHostHeader,
    parseOrigin,
    readCredentials,
    renderTable,
)

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

    def listen(self, resource: StatusResource) -> str:
        """
        Serve a resource on 127.0.0.1.

        @param resource: the status resource.
        @return: its URL, C{http://127.0.0.1:PORT}.
        """
        site = Site(resource)
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
