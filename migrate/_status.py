# -*- test-case-name: tests.test_status -*-
"""
The live view of C{twistd migrate}: which sessions exist and how they are.

L{SessionRegistry} is an upcall observer that keeps every live session's
transport (and forgets it when the session ends, after a short while so
that a closed session can still be seen).  L{StatusResource} serves the
registry as JSON (C{/sessions.json}) for machines and as a small
self-refreshing HTML page (C{/}) for people.

The view changes state (C{POST /sessions/ID/expire}), so it guards itself
against the browser on the operator's desk being used against it:

  - a request whose C{Host} header is neither the address it arrived on,
    nor C{localhost}, nor a name the operator configured is refused with
    421 (DNS rebinding);
  - with credentials configured, every request needs HTTP basic auth (401);
  - every request other than C{GET} and C{HEAD} needs the process's random
    token (header C{X-Migrate-Token}, or form field C{token}; every
    accepted response carries it in the C{X-Migrate-Token} header and the
    HTML page in its forms) and, if it has an C{Origin} (or, failing that, a
    C{Referer}) header, the view's own origin there (403: cross-site request
    forgery).
"""

from __future__ import annotations

import base64
import hmac
import html
import ipaddress
import json
import os
import re
import secrets
from collections import OrderedDict
from typing import Any, Iterable, Mapping
from urllib.parse import parse_qs, urlsplit

from twisted.internet.interfaces import IReactorTime
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from .errors import SessionExpired

SCHEMA_VERSION = 1

TOKEN_HEADER = b"X-Migrate-Token"
"""
The header that carries the view's token: sent on every accepted response,
required (or the C{token} form field) on every request that changes state.
"""

_HOSTNAME = re.compile(r"^[a-z0-9_-]+(\.[a-z0-9_-]+)*$")
_SAFE_METHODS = (b"GET", b"HEAD")
_DEFAULT_PORTS = {"http": 80, "https": 443}


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
        # The words, not only the class: a clean close, a refused backend
        # and an operator's expiry can share one.
        detail = " ".join(str(reason.getErrorMessage()).split())
        snapshot["endDetail"] = detail[:200]
        snapshot["endedAt"] = self.clock.seconds()
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


def normalizeHostName(name: str) -> str:
    """
    The canonical form of a host name or IP address, as a C{Host} header or
    C{--status-host} gives it (without its port): names in lower case
    without a final dot, IP addresses in their compressed form (IPv6
    without brackets, an IPv4-mapped IPv6 address as the IPv4 one).

    @param name: a host name, an IPv4 address, or an IPv6 address with or
        without brackets.
    @return: the canonical form.
    @raise ValueError: C{name} is neither a host name nor an IP address.
    """
    value = name.strip()
    bracketed = value.startswith("[") and value.endswith("]")
    if bracketed:
        value = value[1:-1]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        if bracketed:
            raise ValueError("%r is not an IPv6 address" % (name,))
    else:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(address)
    value = value.lower()
    if value.endswith("."):
        value = value[:-1]
    if not _HOSTNAME.match(value):
        raise ValueError("%r is not a host name or an IP address" % (name,))
    return value


def parseHostHeader(value: bytes) -> tuple[str, int | None] | None:
    """
    Split a C{Host} header into its canonical host (see
    L{normalizeHostName}) and its port.

    @param value: the header's value, e.g. C{b"127.0.0.1:7080"},
        C{b"[::1]:7080"} or C{b"localhost"}.
    @return: C{(host, port)}, C{port} L{None} when the header has none; or
        L{None} if the header is not a host and an optional port.
    """
    try:
        text = value.decode("ascii")
    except UnicodeDecodeError:
        return None
    if not text or any(c in text for c in "/?#@\\ \t"):
        return None
    try:
        parts = urlsplit("//" + text)
        port = parts.port
        host = parts.hostname
        if not host:
            return None
        return normalizeHostName(host), port
    except ValueError:
        return None


def parseOrigin(value: bytes) -> tuple[str, str, int] | None:
    """
    The origin (scheme, canonical host, port) of an C{Origin} or C{Referer}
    header.

    @param value: the header's value, e.g. C{b"http://127.0.0.1:7080"} or
        C{b"http://127.0.0.1:7080/index.html"}.
    @return: C{(scheme, host, port)}, the port filled in from the scheme
        when absent; or L{None} for anything that is not an C{http} or
        C{https} URL (C{null} among them).
    """
    try:
        parts = urlsplit(value.decode("ascii"))
        scheme = parts.scheme.lower()
        host = parts.hostname
        port = parts.port
        if scheme not in _DEFAULT_PORTS or not host:
            return None
        return scheme, normalizeHostName(host), port if port is not None else _DEFAULT_PORTS[scheme]
    except (UnicodeDecodeError, ValueError):
        return None


def readCredentials(path: str) -> dict[str, str]:
    """
    Read an HTTP basic auth file for the status view: one C{user:password}
    a line (the password is what follows the first colon, up to the white
    space that ends the line; white space that starts it is dropped); blank
    lines and lines starting with C{#} are skipped.  Passwords are kept as
    they are, in a file only its owner may read: the CLI needs them in
    clear anyway, and the page, which refreshes every 2 s, is not slowed by
    a password hash.

    @param path: the file's name.
    @return: each user's password.
    @raise ValueError: the file may be read or changed by its group or by
        others (any of the bits C{0o077}), cannot be read, has a line that
        is not C{user:password}, names a user twice, or names nobody.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        raise ValueError("cannot read %s: %s" % (path, e.strerror or e))
    if mode & 0o077:
        raise ValueError(
            "%s holds passwords but its group or others may read or change it "
            "(mode %04o): run chmod 600 %s" % (path, mode & 0o7777, path)
        )
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError("cannot read %s: %s" % (path, e))
    credentials: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, password = line.partition(":")
        if not sep or not user or not password:
            raise ValueError("%s line %d is not user:password" % (path, number))
        if user in credentials:
            raise ValueError("%s line %d names %s again" % (path, number, user))
        credentials[user] = password
    if not credentials:
        raise ValueError("%s has no user:password line" % (path,))
    return credentials


def _localHost(request: Request) -> str | None:
    """
    The canonical IP address the request arrived on, or L{None} for an
    address without one (a UNIX socket).

    @param request: the request.
    """
    host = getattr(request.getHost(), "host", None)
    if not isinstance(host, str):
        return None
    try:
        return normalizeHostName(host)
    except ValueError:
        return None


def _isLoopback(host: str | None) -> bool:
    """
    Whether an address from L{_localHost} is local to this machine: a
    loopback address, or none (a UNIX socket).

    @param host: a canonical IP address, or L{None}.
    """
    if host is None:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
    C{POST /sessions/ID/expire}, behind the checks described in the
    module's docstring.

    @ivar allowedHosts: the canonical host names accepted in C{Host}
        headers besides the address a request arrived on.
    @ivar credentials: each user's password, or L{None} if no
        authentication is asked for.
    @ivar token: the secret every state-changing request must carry.
    """

    isLeaf = True
    log = Logger()

    def __init__(
        self,
        registry: SessionRegistry,
        allowedHosts: Iterable[str] = (),
        credentials: Mapping[str, str] | None = None,
        token: str | None = None,
    ) -> None:
        """
        @param registry: the sessions to show.
        @param allowedHosts: host names (or IP addresses) to accept in
            C{Host} headers, besides C{localhost} and the address a request
            arrived on.
        @param credentials: each user's password, to require HTTP basic
            auth on every request; L{None} for none.
        @param token: the token state-changing requests must carry; a new
            random one if L{None}.
        @raise ValueError: an entry of C{allowedHosts} is not a host name or
            an IP address.
        """
        Resource.__init__(self)
        self.registry = registry
        self.allowedHosts = frozenset(["localhost"] + [normalizeHostName(h) for h in allowedHosts])
        self.credentials = dict(credentials) if credentials is not None else None
        self.token = token if token is not None else secrets.token_urlsafe(32)
        # Compared with when the user is unknown, so that unknown users take
        # as long as known ones.
        self._dummyPassword = secrets.token_urlsafe(16)

    def render(self, request: Request) -> object:
        """
        Check the request's C{Host}, origin (unless it only reads),
        credentials and token (unless it only reads); then render it (see
        L{Resource.render}) or refuse it.

        @param request: the request.
        @return: the body, or C{NOT_DONE_YET}.
        """
        changes = request.method not in _SAFE_METHODS
        refusal = (
            self._checkHost(request)
            # Before the credentials: a cross-site post is refused without
            # making the browser ask its user for a password.
            or (changes and self._checkOrigin(request))
            or self._checkCredentials(request)
            or (changes and self._checkToken(request))
            or None
        )
        if refusal is not None:
            return refusal
        request.setHeader(TOKEN_HEADER, self.token.encode("ascii"))
        return Resource.render(self, request)

    def _refuse(
        self,
        request: Request,
        code: int,
        message: bytes,
        text: str,
        reason: str,
    ) -> bytes:
        """
        Answer a request with an error and a short text, and log why.

        @param request: the request refused.
        @param code: the HTTP status code.
        @param message: the HTTP status message.
        @param text: the body, for the client.
        @param reason: why, for the log.
        @return: the body.
        """
        client = request.getClientAddress()
        self.log.warn(
            "status view refused {method} {path} from {client}: {reason}",
            method=request.method.decode("ascii", "replace"),
            path=request.path.decode("ascii", "replace"),
            client=getattr(client, "host", client),
            reason=reason,
        )
        request.setResponseCode(code, message)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        return (text + "\n").encode("utf-8")

    def _checkHost(self, request: Request) -> bytes | None:
        """
        Refuse (421) a request whose C{Host} header names neither the
        address it arrived on, nor C{localhost}, nor an allowed name (any
        port); or that has no C{Host} header (HTTP/1.0) and did not arrive
        on a loopback address or a UNIX socket; or that has several.

        @param request: the request.
        @return: the refusal's body, or L{None} to go on.
        """
        local = _localHost(request)
        values = request.requestHeaders.getRawHeaders(b"host") or []
        if not values and _isLoopback(local):
            return None
        if len(values) == 1:
            parsed = parseHostHeader(values[0])
            if parsed is not None and (parsed[0] in self.allowedHosts or parsed[0] == local):
                return None
        return self._refuse(
            request,
            421,
            b"Misdirected Request",
            "unknown Host: this status view answers to its own address, "
            "localhost, and the names given with --status-host",
            "Host %r" % (b", ".join(values).decode("ascii", "replace"),),
        )

    def _checkCredentials(self, request: Request) -> bytes | None:
        """
        Refuse (401) a request without a user and password from
        L{credentials}, if there are any.

        @param request: the request.
        @return: the refusal's body, or L{None} to go on.
        """
        if self.credentials is None:
            return None
        scheme, _, encoded = (request.getHeader(b"authorization") or b"").partition(b" ")
        user: str | None = None
        password = ""
        if scheme.lower() == b"basic":
            try:
                decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
            except ValueError:  # binascii.Error and UnicodeDecodeError among them
                decoded = ""
            name, sep, password = decoded.partition(":")
            if sep:
                user = name
        if user is not None:
            stored = self.credentials.get(user)
            same = hmac.compare_digest(
                password.encode("utf-8"),
                (stored if stored is not None else self._dummyPassword).encode("utf-8"),
            )
            if same and stored is not None:
                return None
        request.setHeader(b"www-authenticate", b'Basic realm="migrate status", charset="UTF-8"')
        return self._refuse(
            request,
            401,
            b"Unauthorized",
            "credentials required (--status-auth)",
            "no credentials" if user is None else "wrong credentials for %r" % (user,),
        )

    def _checkOrigin(self, request: Request) -> bytes | None:
        """
        Refuse (403) a request whose C{Origin} header, or failing that
        C{Referer} header, is not the view's own origin: the scheme the
        request came by and the host and port of its C{Host} header.  A
        request with neither header (not from a browser) goes on.

        @param request: the request.
        @return: the refusal's body, or L{None} to go on.
        """
        header = b"origin"
        values = request.requestHeaders.getRawHeaders(header)
        if not values:
            header = b"referer"
            values = request.requestHeaders.getRawHeaders(header)
        if not values:
            return None
        own = None
        hostHeader = request.getHeader(b"host")
        parsedHost = parseHostHeader(hostHeader) if hostHeader is not None else None
        if parsedHost is not None:
            scheme = "https" if request.isSecure() else "http"
            port = parsedHost[1] if parsedHost[1] is not None else _DEFAULT_PORTS[scheme]
            own = (scheme, parsedHost[0], port)
        if own is not None and all(parseOrigin(v) == own for v in values):
            return None
        return self._refuse(
            request,
            403,
            b"Forbidden",
            "cross-origin request refused",
            "%s %r is not this view's origin"
            % (header.decode("ascii").capitalize(), b", ".join(values).decode("ascii", "replace")),
        )

    def _formToken(self, request: Request) -> bytes | None:
        """
        The C{token} field of a form-encoded request body (the HTML page's
        forms), never of the query string.

        @param request: the request.
        @return: the token, or L{None} if there is none.
        """
        contentType = (request.getHeader(b"content-type") or b"").split(b";")[0].strip().lower()
        content = getattr(request, "content", None)
        if contentType != b"application/x-www-form-urlencoded" or content is None:
            return None
        content.seek(0)
        body = content.read()
        content.seek(0)
        values = parse_qs(body, keep_blank_values=True).get(b"token")
        return values[0] if values else None

    def _checkToken(self, request: Request) -> bytes | None:
        """
        Refuse (403) a request without the view's token, in the
        C{X-Migrate-Token} header or the C{token} form field.

        @param request: the request.
        @return: the refusal's body, or L{None} to go on.
        """
        given = request.getHeader(TOKEN_HEADER)
        if given is None:
            given = self._formToken(request)
        if given is not None and hmac.compare_digest(given, self.token.encode("ascii")):
            return None
        return self._refuse(
            request,
            403,
            b"Forbidden",
            "missing or wrong token: send the X-Migrate-Token header of a GET "
            "response (python -m migrate does)",
            "no token" if given is None else "wrong token",
        )

    def render_POST(self, request: Request) -> object:
        """
        C{POST /sessions/ID/expire}: end a session now.  Answers JSON
        (C{{"expired": true}}, 404 if there is no such session); a form of
        the HTML page is sent back to the page instead (303).

        @param request: the request, already checked by L{render}.
        @return: C{NOT_DONE_YET}.
        """
        parts = request.path.strip(b"/").split(b"/")
        request.setHeader(b"content-type", b"application/json")
        if len(parts) != 3 or parts[0] != b"sessions" or parts[2] != b"expire":
            request.setResponseCode(404)
            return b'{"error": "POST /sessions/ID/expire"}'
        sessionID = parts[1].decode("ascii", "replace")
        fromForm = request.getHeader(TOKEN_HEADER) is None
        client = request.getClientAddress()

        def done(found: bool) -> None:
            if found:
                self.log.info(
                    "session {sessionID} expired through the status view by {client}",
                    sessionID=sessionID,
                    client=getattr(client, "host", client),
                )
            if not found:
                request.setResponseCode(404)
            elif fromForm:
                # Relative to /sessions/ID/expire: the page, wherever a
                # proxy put it.
                request.setResponseCode(303)
                request.setHeader(b"location", b"../../")
            request.write(json.dumps({"expired": found}).encode())
            request.finish()

        self.registry.expire(sessionID).addCallback(done)
        return NOT_DONE_YET

    def render_GET(self, request: Request) -> object:
        """
        C{/}, C{/index.html} (HTML) and C{/sessions.json}.

        @param request: the request, already checked by L{render}.
        @return: C{NOT_DONE_YET}.
        """

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
        """
        The body of a C{GET}.

        @param request: the request.
        @param report: the registry's L{SessionRegistry.fullReport}.
        @return: the JSON, the HTML page, or a short text for other paths.
        """
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
        token = html.escape(self.token, quote=True)
        actions = [""] + [
            "<form method='post' action='sessions/%s/expire'>"
            "<input type='hidden' name='token' value='%s'>"
            "<button type='submit'>expire</button></form>"
            % (html.escape(str(s.get("id")), quote=True), token)
            for s in report["sessions"]
        ]
        body = "".join(
            "<tr>%s%s</tr>"
            % (
                "".join(
                    ("<th>%s</th>" if i == 0 else "<td>%s</td>") % html.escape(cell)
                    for cell in row
                ),
                ("<th>%s</th>" if i == 0 else "<td>%s</td>") % (action,),
            )
            for i, (row, action) in enumerate(zip(rows, actions))
        )
        page = (
            "<!DOCTYPE html><html><head><meta charset='utf-8'>"
            "<meta http-equiv='refresh' content='2'>"
            "<title>Migrate sessions</title>"
            "<style>body{font-family:sans-serif}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:2px 6px;font-size:90%%}form{margin:0}</style>"
            "</head><body><h1>Migrate sessions</h1>"
            "<p>%d live, %d hibernated, %d recently ended. <a href='sessions.json'>JSON</a></p>"
            "<table>%s</table></body></html>"
            % (len(report["sessions"]), len(report["hibernated"]), len(report["ended"]), body)
        )
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        # The page has buttons that act: no framing (clickjacking), no
        # script, forms only to itself.
        request.setHeader(
            b"content-security-policy",
            b"default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
            b"frame-ancestors 'none'; base-uri 'none'",
        )
        request.setHeader(b"x-frame-options", b"DENY")
        request.setHeader(b"x-content-type-options", b"nosniff")
        return page.encode("utf-8")
