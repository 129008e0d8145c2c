# -*- test-case-name: tests.test_status -*-
"""
The live view of C{twistd migrate}: which sessions exist and how they are.

L{SessionRegistry} is an upcall observer that keeps every live session's
transport and the last snapshot of every recently ended one, stream and
datagram sessions alike (each entry says its C{kind}); it also reads the
servers it watches (L{SessionRegistry.watchServer}): their session table,
their hibernated sessions (in memory, being saved, and in their store) and
the closed sessions they still remember; and the datagram ports it watches
(L{SessionRegistry.watchDatagramPort}): their open and hibernated
sessions.  L{StatusResource}
serves all of it as JSON (C{/sessions.json}) for machines and as a small
self-refreshing HTML page (C{/}) for people; L{StatusSite} serves it
without an access-log line per request (the page refreshes every 2 s).

Every ended session gets a reason code from L{END_CODES}, derived by
L{describeEnd} from what the session recorded (its end reason's class and
words, the notice it told its peer, the reason its application gave for
closing).

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
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Optional
from urllib.parse import parse_qs, urlsplit

from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.error import ConnectionAborted, ConnectionDone
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from .errors import BufferOverflow, PeerAborted, SessionExpired
from .interfaces import IDatagramSession

SCHEMA_VERSION = 1

TOKEN_HEADER = b"X-Migrate-Token"
"""
The header that carries the view's token: sent on every accepted response,
required (or the C{token} form field) on every request that changes state.
"""

_HOSTNAME = re.compile(r"^[a-z0-9_-]+(\.[a-z0-9_-]+)*$")
_SAFE_METHODS = (b"GET", b"HEAD")
_DEFAULT_PORTS = {"http": 80, "https": 443}

END_CODES: dict[str, str] = {
    "closed": "closed cleanly by either application, every byte delivered",
    "aborted": "aborted by an application (abortConnection), on this side or the peer's",
    "application-error": "an application raised an exception: the session was aborted",
    "backend-refused": "the forwarder could not connect to its --connect target",
    "backend-closed": "the forwarder's target closed its connection",
    "backend-reset": "the forwarder's target connection was lost uncleanly",
    "expired": "detached (or hibernated) for longer than the session timeout",
    "expired-by-operator": "expired from the status view or python -m migrate expire",
    "server-shutdown": "the server process stopped",
    "client-shutdown": "the client process stopped",
    "refused-resume": "a resume was refused: by policy, by the application, for "
    "want of TLS, or by a server that no longer knows the session",
    "capacity": "the server was at capacity (detached sessions or memory budget)",
    "buffer-overflow": "a writer without a producer passed the buffer's hard cap",
    "close-timeout": "a close did not complete in time (data left unacknowledged)",
    "protocol-error": "the peer broke the protocol",
    "restore-failed": "a hibernated session could not be restored",
    "other": "anything else: see the text",
}
"""
The reason codes of ended sessions (see L{describeEnd}), each with what it
means.
"""

_TEXT_RULES: list[tuple[str, tuple[str, ...]]] = [
    ("backend-refused", ("backend refused",)),
    ("backend-reset", ("backend reset",)),
    ("backend-closed", ("backend closed",)),
    ("expired-by-operator", ("expired by the operator",)),
    ("server-shutdown", ("server shut down",)),
    ("client-shutdown", ("client shut down",)),
    ("capacity", ("server at capacity",)),
    ("buffer-overflow", ("buffer overflow", "buffer passed its hard cap")),
    (
        "refused-resume",
        ("refused the resume", "resume refused", "refused by policy", "resumes only over tls"),
    ),
    ("application-error", ("application error",)),
    ("protocol-error", ("protocol error", "impossible position")),
    ("close-timeout", ("close did not complete",)),
    (
        "restore-failed",
        ("hibernated state lost", "hibernated state unusable", "not restorable", "could not be restored"),
    ),
]
"""
The words that give a code away, first match first: the notices sessions
tell their peers (which a peer hears as L{PeerAborted}'s words) and the
reasons Migrate ends sessions with.
"""

_MAX_TEXT = 200


def _words(error: BaseException) -> str:
    """
    What an exception says, on one line: its arguments (without the class
    docstring Twisted's connection errors prefix them with), or failing
    those its text.

    @param error: the exception.
    @return: at most 200 characters.
    """
    text = " ".join(str(a) for a in error.args) if error.args else str(error)
    return " ".join((text or type(error).__name__).split())[:_MAX_TEXT]


def describeEnd(
    reason: BaseException,
    notice: Optional[str] = None,
    side: str = "server",
    heard: Optional[BaseException] = None,
    closeReason: Optional[str] = None,
) -> tuple[str, str]:
    """
    The reason code (a key of L{END_CODES}) and the words of a session's
    end.

    The code is the first that matches: the words of a notice or reason
    (see L{_TEXT_RULES}: C{"backend refused"}, C{"expired by the
    operator"}, C{"server shut down"}, ...), whether on this side or told by
    the peer; then the reactor shutting down (C{server-shutdown} or
    C{client-shutdown}, after this side); then the class: L{BufferOverflow}
    is C{buffer-overflow}, L{SessionExpired} saying "expired" or "detached
    for more than" is C{expired}, L{ConnectionDone} is C{closed} (or, when
    the application said why it closed, that reason's code),
    L{ConnectionAborted} and L{PeerAborted} are C{aborted}; anything else is
    C{other}.

    @param reason: why the session ended
        (L{migrate._session.Session.endReason}), or what its application
        heard if it has not ended yet.
    @param notice: what the session told (or would tell) its peer
        (L{migrate._session.Session.endNotice}).
    @param side: C{"server"} or C{"client"}: the side of this process.
    @param heard: what the application heard in C{connectionLost}: added
        to the text when of another class than C{reason} (an application's
        exception, a close that later timed out).
    @param closeReason: why the application closed the session, when it
        said (the forwarder: C{"backend closed"}, ...).
    @return: C{(code, text)}.
    """
    text = _words(reason)
    if text == "aborted" and isinstance(reason, ConnectionAborted):
        text = "aborted by the application on this side"
    if notice and notice.lower() not in text.lower():
        text = "%s (peer told: %s)" % (text, " ".join(notice.split()))
    if closeReason and isinstance(reason, ConnectionDone):
        # The application's own words for its clean close (the forwarder's
        # "backend closed"): they give the code.
        text = "%s; %s" % (" ".join(closeReason.split())[:_MAX_TEXT], text)
    matched = text.lower()
    if closeReason and not isinstance(reason, ConnectionDone):
        text = "%s; the application had closed it: %s" % (text, " ".join(closeReason.split())[:_MAX_TEXT])
    if heard is not None and type(heard) is not type(reason):
        heardWords = _words(heard)
        if heardWords.lower() not in matched:
            text = "%s; the application heard %s: %s" % (text, type(heard).__name__, heardWords)
    code = "other"
    for candidate, needles in _TEXT_RULES:
        if any(needle in matched for needle in needles):
            code = candidate
            break
    else:
        if "reactor is shutting down" in matched:
            code = "client-shutdown" if side == "client" else "server-shutdown"
        elif isinstance(reason, BufferOverflow):
            code = "buffer-overflow"
        elif isinstance(reason, SessionExpired) and (
            "expired" in matched or "detached for more than" in matched
        ):
            code = "expired"
        elif isinstance(reason, ConnectionDone):
            code = "closed"
        elif isinstance(reason, (ConnectionAborted, PeerAborted)):
            code = "aborted"
    return code, text[: 2 * _MAX_TEXT]


def _valueOf(failure: Failure) -> BaseException:
    """
    A failure's exception.
    """
    value = failure.value
    return value if value is not None else Exception(failure.getErrorMessage())


def _sideOf(session: Any) -> str:
    return "client" if session.isClient else "server"


def _isDatagram(transport: Any) -> bool:
    """
    Whether C{transport} is a datagram session's
    (L{migrate.datagram.DatagramSessionTransport}).
    """
    return IDatagramSession.providedBy(transport)


def _expiresAt(session: Any) -> Optional[float]:
    """
    When a detached or hibernated session expires unless resumed: its
    expiry timer's time if it has one, else (hibernated: the server's purge
    ends it) the time it detached plus its policy's C{expireAfter()}.

    @param session: a L{migrate._session.Session}.
    @return: clock seconds, or L{None} while attached.
    """
    if session.detachedSince is None:
        return None
    expiresAt = getattr(session, "expiresAt", None)
    if expiresAt is not None:
        return float(expiresAt)
    return float(session.detachedSince + session.policy.expireAfter())


def _snapshot(session: Any, now: float) -> dict[str, object]:
    """
    A session's L{IMigrateTransport.snapshot}, or what can be said of a
    session without a transport.
    """
    transport = session.transport
    if transport is not None:
        return dict(transport.snapshot())
    peer = session.lastPeer
    return {
        "id": session.hexID,
        "side": _sideOf(session),
        "state": "closed" if session.ended else session.state.value,
        "peer": "%s:%s" % (peer.host, peer.port) if getattr(peer, "host", None) else None,
        "age": now - session.createdAt,
        "bytesSent": session.engine.sent,
        "bytesReceived": session.engine.received - session.engine.finReceived,
    }


_HIBERNATED_KEYS = (
    "id",
    "side",
    "state",
    "hibernatedIn",
    "local",
    "peer",
    "age",
    "detachedFor",
    "expiresAt",
    "expiresIn",
    "generation",
    "handoffs",
    "bytesSent",
    "bytesAcknowledged",
    "bytesReceived",
    "kind",
)


def _hibernatedEntry(now: float, where: str, **fields: object) -> dict[str, object]:
    """
    A hibernated session's entry: every key of L{_HIBERNATED_KEYS}, L{None}
    for what is not known where it is.
    """
    entry: dict[str, object] = dict.fromkeys(_HIBERNATED_KEYS)
    entry.update(fields)
    entry["state"] = "hibernated"
    entry["hibernatedIn"] = where
    expiresAt = entry.get("expiresAt")
    if isinstance(expiresAt, (int, float)):
        entry["expiresIn"] = expiresAt - now
    return entry


def _recordEntry(record: Any, now: float, where: str) -> dict[str, object]:
    """
    The entry of a hibernated session from its checkpoint
    (L{migrate.interfaces.SessionRecord}).
    """
    return _hibernatedEntry(
        now,
        where,
        id=record.sessionID.hex(),
        side=record.side,
        local=record.host or None,
        peer=record.peer or None,
        age=now - record.createdAt,
        detachedFor=now - record.detachedSince,
        expiresAt=record.expiresAt,
        generation=record.generation,
        handoffs=record.handoffs,
        bytesSent=record.sent,
        bytesAcknowledged=min(record.acked, record.sent),
        bytesReceived=record.received - int(record.finReceived),
    )


class SessionRegistry:
    """
    Keeps the sessions of endpoints it observes, and reads the servers it
    watches.

    @ivar live: the live sessions' transports, oldest first.
    @ivar ended: recently ended sessions' entries (at most C{keepEnded}),
        oldest first, by C{(side, id)}.
    @ivar servers: the watched server endpoints.
    @ivar datagramPorts: the watched datagram ports
        (L{migrate.datagram.DatagramPort}).
    """

    def __init__(self, clock: IReactorTime, keepEnded: int = 100) -> None:
        self.clock = clock
        self.keepEnded = keepEnded
        self.live: OrderedDict[int, Any] = OrderedDict()
        self.ended: OrderedDict[tuple[str, str], dict[str, object]] = OrderedDict()
        self.servers: list[Any] = []
        self.datagramPorts: list[Any] = []

    def sessionEstablished(self, transport: Any) -> None:
        # Keyed by object: one process may hold both ends of a session.
        self.live[id(transport)] = transport

    def sessionEnded(self, transport: Any, reason: Failure) -> None:
        """
        A session's application heard C{connectionLost}: the session moves to
        the ended ones, with its reason; its entry is brought up to date
        when the session is entirely over (its close finished, or timed
        out).
        """
        self.live.pop(id(transport), None)
        heard = _valueOf(reason)
        entry: dict[str, object] = transport.snapshot()
        entry["endReason"] = type(heard).__name__
        # The words, not only the class: a clean close, a refused backend
        # and an operator's expiry can share one.
        entry["endDetail"] = _words(heard)
        entry["endedAt"] = self.clock.seconds()
        self._describe(entry, transport, heard)
        key = (str(entry["side"]), str(entry["id"]))
        self.ended[key] = entry
        self.ended.move_to_end(key)
        while len(self.ended) > self.keepEnded:
            self.ended.popitem(last=False)

        def over(_: object) -> None:
            if self.ended.get(key) is entry:
                kept = {k: entry[k] for k in ("endReason", "endDetail", "endedAt")}
                entry.update(transport.snapshot())
                entry.update(kept)
                self._describe(entry, transport, heard)

        transport.whenEnded().addCallback(over)

    def _describe(self, entry: dict[str, object], transport: Any, heard: BaseException) -> None:
        """
        Set an ended session's C{endCode} and C{endText}, from its end
        reason if it has one yet, else from what its application heard.
        """
        session = transport._session
        final = session.endReason
        entry["endCode"], entry["endText"] = describeEnd(
            final if final is not None else heard,
            session.endNotice,
            str(entry["side"]),
            heard,
            getattr(transport, "closeReason", None),
        )

    def watchServer(self, endpoint: Any) -> None:
        """
        Also show the sessions a L{MigrateServerEndpoint}'s factory knows
        (hibernated and closed ones among them), and let the view expire
        them.
        """
        self.servers.append(endpoint)

    def watchDatagramPort(self, port: Any) -> None:
        """
        Also show the sessions of a L{migrate.datagram.DatagramPort} (its
        hibernated ones among them) and let the view expire them.  (Add
        the registry to the port's observers too, so that ended sessions
        are listed with their reasons.)
        """
        self.datagramPorts.append(port)

    def _factories(self) -> list[Any]:
        return [e.factory for e in self.servers if getattr(e, "factory", None) is not None]

    def _collect(
        self,
    ) -> tuple[list[dict[str, object]], list[dict[str, object]], list[dict[str, object]], int]:
        """
        The entries of the sessions in memory: live ones (attached,
        detached, closing), hibernated ones (in memory, or being saved to a
        store) and ended ones (oldest first); and how many more ended ones
        a server remembers, too old to be shown.
        """
        now = self.clock.seconds()
        omitted = 0
        seen: set[tuple[str, str]] = set(self.ended)
        sessions: list[dict[str, object]] = []
        hibernated: list[dict[str, object]] = []
        ended = list(self.ended.values())

        def addLive(session: Any) -> None:
            key = (_sideOf(session), session.hexID)
            if key in seen:
                return
            seen.add(key)
            entry = _snapshot(session, now)
            expiresAt = _expiresAt(session)
            entry["expiresAt"] = expiresAt
            if session.hibernated:
                hibernated.append(_hibernatedEntry(now, "memory", **entry))
            else:
                entry["expiresIn"] = expiresAt - now if expiresAt is not None else None
                sessions.append(entry)

        def addDatagram(entry: dict[str, object]) -> None:
            key = (str(entry["side"]), str(entry["id"]))
            if key in seen:
                return
            seen.add(key)
            if entry.get("state") == "hibernated":
                hibernated.append(_hibernatedEntry(now, "memory", **entry))
            else:
                sessions.append(entry)

        for liveKey, transport in list(self.live.items()):
            session = transport._session
            if _isDatagram(transport):
                if session.released or transport.state == "closed":
                    # Hibernated, its application let go of (its server
                    # lists its checkpoint), or over.
                    del self.live[liveKey]
                    continue
                addDatagram(transport.snapshot())
                continue
            if session.transport is not transport:
                # Hibernated and dropped by its server: its checkpoint
                # stands for it now.
                del self.live[liveKey]
                continue
            addLive(session)
        for port in self.datagramPorts:
            open_, asleep = port.snapshots()
            for entry in open_:
                addDatagram(entry)
            for summary in asleep:
                key = (str(summary["side"]), str(summary["id"]))
                if key in seen:
                    continue
                seen.add(key)
                fields = dict(summary)
                where = str(fields.pop("hibernatedIn", "store"))
                createdAt = fields.pop("createdAt", None)
                detachedSince = fields.pop("detachedSince", None)
                if isinstance(createdAt, (int, float)):
                    fields["age"] = now - createdAt
                if isinstance(detachedSince, (int, float)):
                    fields["detachedFor"] = now - detachedSince
                hibernated.append(_hibernatedEntry(now, where, **fields))
        for factory in self._factories():
            for session in list(factory.sessions.values()):
                if not session.ended and session.transport is not None:
                    addLive(session)
            for record in list(getattr(factory, "_saving", {}).values()):
                recordKey = (str(record.side), record.sessionID.hex())
                if recordKey not in seen:
                    seen.add(recordKey)
                    hibernated.append(_recordEntry(record, now, "saving"))
            # Newest first: past the newest keepEnded of them, older ones
            # could not be shown and are only counted.
            built = 0
            for closedAt, session in reversed(list(getattr(factory, "_closed", {}).values())):
                closedKey = (_sideOf(session), str(session.hexID))
                if closedKey in seen:
                    continue
                seen.add(closedKey)
                if built >= self.keepEnded:
                    omitted += 1
                    continue
                built += 1
                entry = _snapshot(session, now)
                final = session.endReason if session.endReason is not None else Exception("unknown")
                entry.update(
                    age=closedAt - session.createdAt,
                    endReason=type(final).__name__,
                    endDetail=_words(final),
                    endedAt=closedAt,
                )
                entry["endCode"], entry["endText"] = describeEnd(
                    final,
                    session.endNotice,
                    _sideOf(session),
                    closeReason=getattr(session.transport, "closeReason", None),
                )
                ended.append(entry)
        ended.sort(key=_endOrder)
        hibernated.sort(key=_expiryOrder)
        return sessions, hibernated, ended, omitted

    def _report(
        self,
        sessions: list[dict[str, object]],
        hibernated: list[dict[str, object]],
        ended: list[dict[str, object]],
        older: int,
        warnings: list[str],
    ) -> dict[str, Any]:
        """
        The report: C{ended} cut to the last C{keepEnded}, the others
        (and C{older} more) counted in C{endedOmitted}.
        """
        omitted = max(0, len(ended) - self.keepEnded)
        for entry in sessions + hibernated + ended:
            entry.setdefault("kind", "stream")
        return {
            "version": SCHEMA_VERSION,
            "time": self.clock.seconds(),
            "sessions": sessions,
            "hibernated": hibernated,
            "ended": ended[omitted:],
            "endedOmitted": omitted + older,
            "warnings": warnings,
        }

    def report(self) -> dict[str, Any]:
        """
        Everything the live view shows about sessions in memory (see
        L{fullReport} for the stores' too): C{version}, C{time},
        C{sessions} (attached, detached and closing, oldest first),
        C{hibernated} (in memory or being saved to a store, soonest to
        expire first), C{ended} (the last C{keepEnded}, oldest first;
        C{endedOmitted} counts older ones a server still remembers) and
        C{warnings}.
        """
        return self._report(*self._collect(), warnings=[])

    def fullReport(self) -> Deferred[dict[str, Any]]:
        """
        L{report}, with the hibernated sessions of the watched servers'
        stores (listed without their buffers); a store that cannot be
        listed is a warning, not a failure.
        """
        sessions, hibernated, ended, older = self._collect()
        warnings: list[str] = []
        seen = {(str(e["side"]), str(e["id"])) for e in sessions + hibernated + ended}
        listings = []

        def listed(rows: list[tuple[bytes, str, float, str]]) -> None:
            now = self.clock.seconds()
            for sid, side, expiresAt, peer in rows:
                key = (side, sid.hex())
                if key not in seen:
                    seen.add(key)
                    hibernated.append(
                        _hibernatedEntry(
                            now, "store", id=sid.hex(), side=side, peer=peer or None, expiresAt=expiresAt
                        )
                    )

        def unlisted(failure: Failure) -> None:
            warnings.append("cannot list the hibernated sessions of a store: %s" % (_words(_valueOf(failure)),))

        for factory in self._factories():
            store = getattr(factory, "store", None)
            if store is not None:
                listings.append(store.list("server").addCallbacks(listed, unlisted))

        def done(_: object) -> dict[str, Any]:
            hibernated.sort(key=_expiryOrder)
            return self._report(sessions, hibernated, ended, older, warnings)

        return gatherResults(listings).addCallback(done)

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
            if transport.sessionID != sessionID:
                continue
            if _isDatagram(transport):
                if transport.state not in ("closed", "hibernated"):
                    transport._session.expire("expired by the operator")
                    found = True
            elif not transport._session.ended:
                transport._session.end(SessionExpired("expired by the operator"), "expired by the operator")
                found = True
        checks = [f.expireSession(sid) for f in self._factories()]
        checks += [p.expireSession(sid) for p in self.datagramPorts]
        return gatherResults(checks).addCallback(lambda r: found or any(r))


def _expiryOrder(entry: dict[str, object]) -> float:
    """
    Sort key of hibernated sessions: soonest to expire first.
    """
    expiresAt = entry.get("expiresAt")
    return float(expiresAt) if isinstance(expiresAt, (int, float)) else float("inf")


def _endOrder(entry: dict[str, object]) -> float:
    """
    Sort key of ended sessions: oldest end first.
    """
    endedAt = entry.get("endedAt")
    return float(endedAt) if isinstance(endedAt, (int, float)) else 0.0


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


def formatDuration(seconds: object) -> str:
    """
    A duration for people: C{"4.2 s"}, C{"37 s"}, C{"12 min 05 s"},
    C{"3 h 20 min"}, C{"2 d 04 h"}; C{"-"} for none.

    @param seconds: the duration in seconds, or L{None}.
    """
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
        return "-"
    sign = "-" if seconds < 0 else ""
    s = abs(float(seconds))
    if s < 10:
        text = "%.1f s" % (s,)
    elif s < 60:
        text = "%d s" % (s,)
    elif s < 3600:
        text = "%d min %02d s" % divmod(int(s), 60)
    elif s < 86400:
        text = "%d h %02d min" % (s // 3600, int(s) % 3600 // 60)
    else:
        text = "%d d %02d h" % (s // 86400, int(s) % 86400 // 3600)
    return sign + text


def formatBytes(count: object) -> str:
    """
    A byte count for people: C{"512 B"}, C{"1.5 KiB"}, C{"3.0 MiB"}, ...;
    C{"-"} for none.

    @param count: the number of bytes, or L{None}.
    """
    if not isinstance(count, int) or isinstance(count, bool):
        return "-"
    if abs(count) < 1024:
        return "%d B" % (count,)
    value = float(count)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if abs(value) < 1024 or unit == "TiB":
            break
    return "%.1f %s" % (value, unit)


def _text(value: object) -> str:
    return "-" if value is None else str(value)


def _expiresIn(entry: Mapping[str, Any], now: float) -> str:
    expiresIn = entry.get("expiresIn")
    if isinstance(expiresIn, (int, float)) and expiresIn <= 0:
        return "due"
    return formatDuration(expiresIn)


def _rtt(entry: Mapping[str, Any], now: float) -> str:
    rtt = entry.get("rtt")
    return "%.1f ms" % (rtt * 1000,) if isinstance(rtt, (int, float)) else "-"


def _traffic(direction: str) -> Callable[[Mapping[str, Any], float], str]:
    """
    Bytes one way, and for a datagram session how many application
    datagrams.
    """

    def show(entry: Mapping[str, Any], now: float) -> str:
        text = formatBytes(entry.get("bytes" + direction))
        count = entry.get("datagrams" + direction)
        if entry.get("kind") == "datagram" and isinstance(count, int):
            text += " / %d dg" % (count,)
        return text

    return show


def _endedAgo(entry: Mapping[str, Any], now: float) -> str:
    endedAt = entry.get("endedAt")
    if not isinstance(endedAt, (int, float)):
        return "-"
    return formatDuration(max(0.0, now - endedAt)) + " ago"


_Column = tuple[str, Callable[[Mapping[str, Any], float], str]]


def _field(key: str, show: Callable[[object], str] = _text) -> Callable[[Mapping[str, Any], float], str]:
    return lambda entry, now: show(entry.get(key))


def _channelCount(entry: Mapping[str, Any], now: float) -> str:
    """
    How many channels a stream session has open besides its first stream
    (C{-} for a datagram session); each one's figures are in the JSON.
    """
    channels = entry.get("channels")
    return "-" if channels is None else str(len(channels))


_LIVE_COLUMNS: list[_Column] = [
    ("session", _field("id")),
    ("side", _field("side")),
    ("kind", _field("kind")),
    ("state", _field("state")),
    ("peer", _field("peer")),
    ("age", _field("age", formatDuration)),
    ("detached for", _field("detachedFor", formatDuration)),
    ("expires in", _expiresIn),
    ("sent", _traffic("Sent")),
    ("received", _traffic("Received")),
    ("buffered", _field("bytesBuffered", formatBytes)),
    ("handoffs", _field("handoffs")),
    ("channels", _channelCount),
    ("rtt", _rtt),
]

_HIBERNATED_COLUMNS: list[_Column] = [
    ("session", _field("id")),
    ("side", _field("side")),
    ("kind", _field("kind")),
    ("state", _field("state")),
    ("in", _field("hibernatedIn")),
    ("peer", _field("peer")),
    ("detached for", _field("detachedFor", formatDuration)),
    ("expires in", _expiresIn),
    ("sent", _traffic("Sent")),
    ("received", _traffic("Received")),
]

_ENDED_COLUMNS: list[_Column] = [
    ("session", _field("id")),
    ("side", _field("side")),
    ("kind", _field("kind")),
    ("state", _field("state")),
    ("peer", _field("peer")),
    ("ended", _endedAgo),
    ("lasted", _field("age", formatDuration)),
    ("sent", _traffic("Sent")),
    ("received", _traffic("Received")),
    ("reason", _field("endCode")),
    ("why", _field("endText")),
]


class Section(NamedTuple):
    """
    One table of the live view.

    @ivar key: the report's list it shows: C{"sessions"}, C{"hibernated"}
        or C{"ended"}.
    @ivar title: its heading.
    @ivar rows: the table as text, header first.
    @ivar entries: the report's entries, one a row after the header.
    """

    key: str
    title: str
    rows: list[list[str]]
    entries: list[Mapping[str, Any]]


def _table(columns: list[_Column], entries: list[Mapping[str, Any]], now: float) -> list[list[str]]:
    return [[label for label, _ in columns]] + [[show(e, now) for _, show in columns] for e in entries]


def renderSections(report: Mapping[str, Any]) -> list[Section]:
    """
    The report's sessions as three tables of text, with units: live
    sessions (attached, detached, closing), hibernated ones, and recently
    ended ones (newest first, with their reason code and words).

    @param report: a L{SessionRegistry.fullReport} (or its JSON, read back;
        lists it lacks are empty).
    """
    now = float(report.get("time") or 0.0)
    live = list(report.get("sessions") or [])
    hibernated = list(report.get("hibernated") or [])
    ended = list(reversed(report.get("ended") or []))
    omitted = report.get("endedOmitted") or 0
    return [
        Section("sessions", "Live sessions (%d)" % (len(live),), _table(_LIVE_COLUMNS, live, now), live),
        Section(
            "hibernated",
            "Hibernated sessions (%d)" % (len(hibernated),),
            _table(_HIBERNATED_COLUMNS, hibernated, now),
            hibernated,
        ),
        Section(
            "ended",
            "Recently ended sessions (%d, newest first%s)"
            % (len(ended), ", %d older not shown" % (omitted,) if omitted else ""),
            _table(_ENDED_COLUMNS, ended, now),
            ended,
        ),
    ]


def renderTable(report: Mapping[str, Any]) -> list[list[str]]:
    """
    The report's live sessions as rows of text, header first (the first
    of L{renderSections}).
    """
    return renderSections(report)[0].rows


def renderText(report: Mapping[str, Any]) -> str:
    """
    The report as the CLI prints it: each section's title and aligned
    table (or "none"), the warnings, and a summary line.
    """
    lines: list[str] = []
    for section in renderSections(report):
        lines.append(section.title + (": none" if not section.entries else ""))
        if section.entries:
            widths = [max(len(r[i]) for r in section.rows) for i in range(len(section.rows[0]))]
            for row in section.rows:
                lines.append("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        lines.append("")
    for warning in report.get("warnings") or []:
        lines.append("warning: %s" % (warning,))
    lines.append(
        "%d live session(s), %d hibernated, %d recently ended"
        % (
            len(report.get("sessions") or []),
            len(report.get("hibernated") or []),
            len(report.get("ended") or []),
        )
    )
    return "\n".join(lines) + "\n"


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
        token = html.escape(self.token, quote=True)
        parts = []
        for section in renderSections(report):
            parts.append("<h2>%s</h2>" % (html.escape(section.title),))
            if not section.entries:
                parts.append("<p>none</p>")
                continue
            # Live and hibernated sessions can be expired from here.
            expirable = section.key != "ended"
            rows = ["<tr>%s%s</tr>" % (
                "".join("<th>%s</th>" % (html.escape(cell),) for cell in section.rows[0]),
                "<th></th>" if expirable else "",
            )]
            for row, entry in zip(section.rows[1:], section.entries):
                action = (
                    "<td><form method='post' action='sessions/%s/expire'>"
                    "<input type='hidden' name='token' value='%s'>"
                    "<button type='submit'>expire</button></form></td>"
                    % (html.escape(str(entry.get("id")), quote=True), token)
                    if expirable
                    else ""
                )
                rows.append(
                    "<tr>%s%s</tr>" % ("".join("<td>%s</td>" % (html.escape(cell),) for cell in row), action)
                )
            parts.append("<table>%s</table>" % ("".join(rows),))
        warnings = "".join(
            "<p class='warning'>%s</p>" % (html.escape(str(w)),) for w in report.get("warnings") or []
        )
        page = (
            "<!DOCTYPE html><html><head><meta charset='utf-8'>"
            "<meta http-equiv='refresh' content='2'>"
            "<title>Migrate sessions</title>"
            "<style>body{font-family:sans-serif}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:2px 6px;font-size:90%%}form{margin:0}"
            "h2{font-size:110%%;margin:1em 0 .3em}.warning{color:#a00}</style>"
            "</head><body><h1>Migrate sessions</h1>"
            "<p>%d live, %d hibernated, %d recently ended. <a href='sessions.json'>JSON</a></p>"
            "%s%s</body></html>"
            % (
                len(report["sessions"]),
                len(report["hibernated"]),
                len(report["ended"]),
                warnings,
                "".join(parts),
            )
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


class StatusSite(Site):
    """
    The live view's site: a L{Site} that writes no access-log line per
    request.  The page refreshes every 2 s and scripts poll the JSON, so an
    access log would bury the sessions' own events in twistd's log; what
    matters is still logged by L{StatusResource}: every refused request
    (with its reason) and every expiry (with the client's address).

    @ivar logRequests: whether to log every request after all, as L{Site}
        does.
    """

    noisy = False
    logRequests = False

    def log(self, request: http.Request) -> None:
        """
        Log C{request} as L{Site} does only if L{logRequests} is set.

        @param request: the finished request.
        """
        if self.logRequests:
            Site.log(self, request)
