# -*- test-case-name: tests.test_endpoints -*-
"""
Endpoints and endpoint-string parsers.

C{migrate:} is a prefix that wraps any inner endpoint string, the way
Twisted's C{haproxy:} does: C{migrate:tcp:7001} listens with Migrate on top
of C{tcp:7001}; C{migrate:tls:host=example.org:port=7001} connects with
Migrate on top of a verified TLS connection.  Keyword arguments named after
L{SessionOptions} fields configure Migrate and are removed before the rest
is handed to the inner parser.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import os
import re
import socket
import stat

import random
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import dns.exception
import dns.name
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.defer import Deferred, fail, gatherResults, maybeDeferred
from twisted.logger import Logger
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    clientFromString,
    quoteStringArgument,
    serverFromString,
)
from twisted.python.failure import Failure
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocol,
    IProtocolFactory,
    IReactorFDSet,
    IReactorTime,
    IStreamClientEndpoint,
    IStreamServerEndpoint,
)
from zope.interface import implementer

from ._advertise import AdvertisePolicy
from ._client import AttemptLimiter, ClientConnector
from ._protocol import whenAllClosed
from ._race import RacingEndpoint
from ._session import restoreSession
from ._timers import TimerSet
from ._upcalls import Upcalls
from ._options import SessionOptions
from .errors import SessionExpired
from ._server import MigrateServerFactory
from .interfaces import (
    IConnectivityMonitor,
    ILocator,
    IMigratePolicy,
    ISessionStore,
    SessionRecord,
)
from .locate import DNSLocator
from .store import SQLiteSessionStore
from .monitors import MonitorLease, defaultMonitor
from .policy import DefaultPolicy


_log = Logger()


def systemInterfaceNames() -> Optional[list[str]]:
    """
    The names of this host's network interfaces, or C{None} where the
    platform cannot list them.
    """
    try:
        return [name for _, name in socket.if_nameindex()]
    except (AttributeError, OSError):
        return None


def _logUnusable(failure: Any, sid: bytes) -> None:
    _log.failure("session {sid}: stored session unusable", failure, sid=sid.hex())
    return None


@implementer(IStreamServerEndpoint)
class MigrateServerEndpoint:
    """
    Listen for Migrate sessions on any stream server endpoint.

    @ivar clock: the clock for session timers (usually the reactor).
    @ivar endpoint: the inner endpoint carriers arrive on.
    @ivar options: session options.
    @ivar factory: the wrapping factory of the last C{listen}.
    """

    def __init__(
        self,
        clock: IReactorTime,
        endpoint: IStreamServerEndpoint,
        options: Optional[SessionOptions] = None,
        policy: Optional[IMigratePolicy] = None,
        store: Optional[ISessionStore] = None,
        monitor: Optional[IConnectivityMonitor] = None,
        locator: Optional[ILocator] = None,
        publishName: Optional[str] = None,
        serviceInterface: Optional[str] = None,
        advertise: Optional[str] = None,
        interfaceNames: Optional[Callable[[], Optional[Sequence[str]]]] = None,
        channels: Optional[Mapping[str, IProtocolFactory]] = None,
    ) -> None:
        """
        @param channels: what the channels clients open are, by name (see
            L{MigrateServerFactory}); by default C{""} only, built by the
            factory given to C{listen}.
        @param advertise: what clients are told about where this server can
            be reached: C{"auto"} (default), C{"none"} or
            C{"HOST:PORT[,HOST:PORT...]"} (see L{migrate._advertise}).
        @param locator: where this host publishes its addresses under
            C{publishName} whenever they change (needs C{monitor}).
        @param serviceInterface: only addresses on this interface are
            advertised and published.  C{listen} fails if this host has no
            interface of that name, and logs a warning if it has no global
            address (the only kind advertised or published).
        @param interfaceNames: returns the names of this host's interfaces
            (C{None} where they cannot be listed); by default
            L{socket.if_nameindex}.
        @param store: where detached sessions hibernate (see
            L{migrate.store}); without one, they stay in memory until they
            expire.
        @param monitor: watches this host's addresses, which sessions then
            advertise to their clients (so they follow a server that moves).
        """
        self.advertise = AdvertisePolicy.parse(advertise)
        self.monitor = monitor
        self.locator = locator
        self.publishName = publishName
        self.serviceInterface = serviceInterface
        self.clock = clock
        self.endpoint = endpoint
        self.options = options if options is not None else SessionOptions()
        self.policy = policy
        self.store = store
        self.observers: list[object] = []
        self.factory: MigrateServerFactory | None = None
        self.interfaceNames = interfaceNames if interfaceNames is not None else systemInterfaceNames
        self.channelFactories = channels

    def addObserver(self, observer: object) -> None:
        """
        Tell C{observer} (any object with some L{IMigrateUpcalls} methods)
        about every session accepted from now on.
        """
        self.observers.append(observer)

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:
        """
        Listen with C{protocolFactory}'s protocols wrapped in sessions.

        @return: a Deferred firing with the inner endpoint's listening port
            (its C{getHost()} is the real address), or failing with a
            C{ValueError} when C{serviceInterface} names no interface of
            this host.
        """
        if self.serviceInterface is not None:
            names = self.interfaceNames()
            if names is not None and self.serviceInterface not in names:
                return fail(
                    ValueError(
                        "serviceInterface=%s: no such interface (have: %s)"
                        % (self.serviceInterface, ", ".join(names) or "none")
                    )
                )
        self.factory = MigrateServerFactory(
            protocolFactory,
            self.clock,
            self.options,
            self.policy,
            self.observers,
            self.store,
            self.monitor,
            self.locator,
            self.publishName,
            self.serviceInterface,
            self.advertise,
            self.channelFactories,
        )
        factory = self.factory

        def listening(port: IListeningPort) -> IListeningPort:
            host = getattr(port.getHost(), "host", None)
            if isinstance(host, str):
                factory.setListeningHost(host)
            self._warnIfNothingPublished(factory, host)
            return port

        return self.endpoint.listen(factory).addCallback(listening)

    def _warnIfNothingPublished(self, factory: MigrateServerFactory, host: object) -> None:
        """
        Now listening: say, in one warning, why this server will advertise
        and publish none of its addresses, if it will not.

        @param host: the address the listening socket is bound to.
        """
        name = self.serviceInterface
        publishing = self.locator is not None and self.publishName is not None
        if name is None and not publishing:
            return
        what = "publishes nothing as %s" % (self.publishName,) if publishing else ""
        if self.advertise.mode == "auto":
            what = (what + " and " if what else "") + "advertises no address to its clients"
        if not what:
            return
        lease = factory.monitor
        if lease is None or lease.failed:
            _log.warn(
                "this server {what}: it has no connectivity monitor to learn its addresses from"
                " ({why})",
                what=what,
                why="monitor=none" if lease is None else "the monitor failed to start",
            )
            return
        if name is None or host not in (None, "", "0.0.0.0", "::") or not lease.users:
            # Bound to one address: that one is used, whatever the
            # interface (or the monitor is not running: nothing to check).
            return
        if any(a.interface == name for a in lease.addresses()):
            return
        _log.warn(
            "serviceInterface={name}: {name} has no usable global address (loopback and link-local"
            " addresses are never advertised or published), so this server {what} until it has one",
            name=name,
            what=what,
        )


@implementer(IStreamClientEndpoint)
class MigrateClientEndpoint:
    """
    Open Migrate sessions through any stream client endpoint; each session
    reconnects through the same endpoint when its carrier is lost.

    @ivar clock: the clock for session timers (usually the reactor).
    @ivar endpoint: the inner endpoint carriers are made with.
    @ivar options: session options.
    @ivar policy: the policy of new sessions (an upcall may choose another
        per session).
    @ivar monitor: the connectivity monitor shared by this endpoint's
        sessions, if any.
    @ivar endpointFor: makes the inner endpoint bound to a chosen local
        address, when the policy chooses one (built from the endpoint string
        for C{tcp:} and C{tls:}).
    """

    def __init__(
        self,
        clock: IReactorTime,
        endpoint: IStreamClientEndpoint,
        options: Optional[SessionOptions] = None,
        rng: Optional[random.Random] = None,
        policy: Optional[IMigratePolicy] = None,
        monitor: Union[IConnectivityMonitor, None, str] = "auto",
        endpointFor: Optional[Callable[[str], IStreamClientEndpoint]] = None,
        store: Optional[ISessionStore] = None,
        endpointTo: Optional[Callable[[str, int], IStreamClientEndpoint]] = None,
        locator: Optional[ILocator] = None,
        peerName: Optional[str] = None,
        channels: Optional[Mapping[str, IProtocolFactory]] = None,
    ) -> None:
        """
        @param channels: what channels the server opens are, by name: the
            factory that builds each one's protocol.  By default the only
            name is C{""}, built by the factory the session was connected
            with; a name not here is refused.
        @param monitor: a connectivity monitor, C{None} for none, or
            C{"auto"} for the platform's default when C{clock} is a real
            reactor (one providing C{IReactorFDSet}), none otherwise.
        @param store: where L{suspendAll} puts this endpoint's sessions so
            that a later process resumes them with L{resumeStored}.
        @param endpointTo: makes an inner endpoint to an address the server
            advertised (C{host, port}); without it, only C{endpoint} is used.
            Endpoint strings with C{tcp:} inside provide one.
        """
        self.endpointTo = endpointTo
        self.locator = locator
        self.peerName = peerName
        self.channelFactories = channels
        self.clock = clock
        self.endpoint = endpoint
        self.options = options if options is not None else SessionOptions()
        self.rng = rng if rng is not None else random.Random()
        self.policy = policy if policy is not None else DefaultPolicy(self.options, rng=self.rng)
        if monitor == "auto":
            monitor = defaultMonitor(clock) if IReactorFDSet.providedBy(clock) else None
        self.monitor = MonitorLease(monitor) if monitor is not None else None  # type: ignore[arg-type]
        self.endpointFor = endpointFor
        self.observers: list[object] = []
        self.limiter = AttemptLimiter(self.options.maxConcurrentResumes)
        self.store = store
        self._connectors: list[ClientConnector] = []
        self._timers: Optional[TimerSet] = None
        self._pruneAt = 64

    def addObserver(self, observer: object) -> None:
        """
        Tell C{observer} (any object with some L{IMigrateUpcalls} methods)
        about every session opened from now on.
        """
        self.observers.append(observer)

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        """
        Open a session.

        @return: a Deferred firing with the application protocol once the
            session is established, or failing with the inner endpoint's
            error or L{migrate.errors.HandshakeError}.
        """
        return self._newConnector(protocolFactory).open()

    def _newConnector(self, protocolFactory: IProtocolFactory) -> ClientConnector:
        connector = ClientConnector(
            self.clock,
            self.endpoint,
            protocolFactory,
            self.options,
            self.policy,
            monitor=self.monitor,
            observers=self.observers,
            endpointFor=self.endpointFor,
            limiter=self.limiter,
            endpointTo=self.endpointTo,
            locator=self.locator,
            peerName=self.peerName,
        )
        connector.channelFactories = self.channelFactories
        if self._timers is None:
            self._timers = TimerSet(self.clock)
        connector.timers = self._timers
        self._connectors.append(connector)
        if len(self._connectors) >= 2 * self._pruneAt:
            # Forget the connectors of ended sessions now and then (not on
            # every connect: that would cost a pass over all of them each).
            self._connectors = [c for c in self._connectors if not c._stopped]
            self._pruneAt = max(64, len(self._connectors))
        return connector

    def endSessions(self, notice: str = "client shut down", timeout: float = 1.0) -> Deferred[None]:
        """
        End every session of this endpoint now, telling the server why
        (C{notice}), so that its application learns it at once instead of
        keeping the session for its timeout.  Call it before stopping a
        process whose sessions will not come back (C{twistd migrate} does on
        SIGTERM).

        @param timeout: seconds to wait, at most, for the notices to be
            written out.
        @return: a L{Deferred} that fires when they were (their connections
            closed) or C{timeout} passed.
        """
        closing: list[Any] = []
        for connector in self._connectors:
            session = connector.session
            if session is None or session.ended:
                continue
            carrier = session.carrier
            if carrier is not None and not carrier.retired:
                closing.append(carrier)
            session.end(SessionExpired(notice), notice)
        self._connectors = [c for c in self._connectors if not c._stopped]
        return whenAllClosed(self.clock, closing, timeout)

    def suspendAll(self) -> Deferred[int]:
        """
        Before this process stops: put every session whose application is
        L{migratable<migrate.interfaces.IMigratable>} into the store (their
        carriers are dropped; servers keep the sessions for their timeout).

        @return: a Deferred firing with how many were stored once they are
            durable.
        @raise RuntimeError: the endpoint has no store.
        """
        if self.store is None:
            raise RuntimeError("this endpoint has no session store")
        saves = []
        for connector in self._connectors:
            record = connector.suspend()
            if record is not None:
                saves.append(self.store.save(record))
        self._connectors = [c for c in self._connectors if not c._stopped]
        return gatherResults(saves).addCallback(len)

    def resumeStored(self, protocolFactory: IProtocolFactory) -> Deferred[list[IProtocol]]:
        """
        In a new process: rebuild the sessions L{suspendAll} stored, their
        applications built by C{protocolFactory} and given their saved state,
        and resume them all (at most C{maxConcurrentResumes} attempts at
        once).  Entries that cannot be used are logged and skipped.

        @return: a Deferred firing with the restored application protocols.
        """
        store = self.store
        if store is None:
            raise RuntimeError("this endpoint has no session store")

        def restoreAll(rows: list[tuple[bytes, str, float, str]]) -> Deferred[list[IProtocol]]:
            now = self.clock.seconds()
            loads = []
            for sid, side, expiresAt, peer in rows:
                if expiresAt <= now:
                    store.delete(sid)
                    continue
                d = store.load(sid)
                d.addCallback(self._resumeRecord, protocolFactory)
                d.addErrback(_logUnusable, sid)
                d.addBoth(lambda result, sid=sid: (store.delete(sid), result)[1])
                loads.append(d)
            return gatherResults(loads).addCallback(lambda ps: [p for p in ps if p is not None])

        return store.list("client").addCallback(restoreAll)

    def _resumeRecord(
        self, record: Optional[SessionRecord], protocolFactory: IProtocolFactory
    ) -> Optional[IProtocol]:
        if record is None:
            return None
        upcalls = Upcalls(list(self.observers))
        session = restoreSession(
            self.clock, record, self.options, self.policy, upcalls, protocolFactory, None,  # type: ignore[arg-type]
            self.channelFactories,
        )
        if session is None:
            return None
        connector = self._newConnector(protocolFactory)
        connector.upcalls = upcalls
        connector.resumeFrom(session)
        return session.app


# The listen backlog of inner endpoints that take one, unless set.
DEFAULT_BACKLOG = 1024
_BACKLOG_KINDS = ("tcp", "tcp6", "ssl", "unix")


def _split(kwargs: Mapping[str, Any]) -> tuple[SessionOptions, dict[str, Any]]:
    names = SessionOptions.names()
    ours = {k: v for k, v in kwargs.items() if k in names}
    rest = {k: v for k, v in kwargs.items() if k not in names}
    return SessionOptions.fromStrings(ours), rest


# What each kind of inner endpoint takes (Twisted's parsers), for messages.
_INNER_TAKES = {
    ("server", "tcp"): "port, interface=, backlog=",
    ("server", "tcp6"): "port, interface=, backlog=",
    ("server", "ssl"): (
        "port, privateKey=, certKey=, sslmethod=, interface=, backlog=, extraCertChain=,"
        " dhParameters="
    ),
    ("server", "unix"): "address, mode=, backlog=, lockfile=",
    ("client", "tcp"): "host=, port=, timeout=, bindAddress=",
    ("client", "tls"): (
        "host=, port=, timeout=, bindAddress=, certificate=, privateKey=, trustRoots=, endpoint="
    ),
    ("client", "unix"): "path=, timeout=, checkPID=",
}

# Migrate's own keyword arguments besides the session options.
_OURS = {
    "server": (
        "store", "monitor", "publish", "locator", "locatorPort", "zone", "tsigName", "tsigSecret",
        "tsigSecretFile", "serviceInterface", "advertise",
    ),
    "client": ("monitor", "locator", "locatorPort", "zone", "tsigName", "tsigSecret", "tsigSecretFile"),
}

# Keyword arguments whose values are never shown: secrets (not the names
# of files that hold them, such as tsigSecretFile=).
_SECRET = re.compile(r"(?i)(secret|password|passphrase|token)$")


def redact(description: str) -> str:
    """
    An endpoint string as it may be shown in a message or a log: the value
    of every keyword argument that holds a secret (C{tsigSecret=}, or any
    whose name ends in C{secret}, C{password}, C{passphrase} or C{token})
    replaced by C{***}.

    @param description: an endpoint string.
    """
    parts: list[str] = []
    current, escaped = "", False
    for c in description:
        if escaped:
            escaped = False
        elif c == "\\":
            escaped = True
        elif c == ":":
            parts.append(current)
            current = ""
            continue
        current += c
    parts.append(current)
    out = []
    for part in parts:
        key, sep, value = part.partition("=")
        if sep and value and _SECRET.search(key.replace("\\", "")):
            part = key + "=***"
        out.append(part)
    return ":".join(out)


def _inner(
    parse: Callable[[Any, str], Any],
    reactor: Any,
    description: str,
    shown: Optional[str] = None,
    side: str = "server",
) -> Any:
    """
    Parse the inner endpoint of a C{migrate:} string, turning Twisted's raw
    errors (C{TypeError}s about keyword arguments, exceptions with no
    message) into a C{ValueError} an operator can act on, with no secret in
    it.

    @param shown: the inner endpoint string as the operator wrote it (the
        one parsed may have defaults added), for the message.
    @param side: C{"server"} or C{"client"}.
    @raise ValueError: the inner endpoint string is not valid.
    """
    try:
        return parse(reactor, description)
    except Exception as e:
        kind = description.split(":", 1)[0]
        raise ValueError(
            "migrate: inner endpoint %s: %s"
            % (redact(shown if shown is not None else description), _explain(e, side, kind))
        ) from None


def _explain(error: Exception, side: str = "server", kind: str = "") -> str:
    """
    Say what is wrong with an endpoint string, from the exception its
    parser raised (and, for an unknown option, what the endpoint takes).

    @param side: C{"server"} or C{"client"}.
    @param kind: the inner endpoint's type (C{"tcp"}, C{"tls"}...).
    """
    text = str(error)
    original = getattr(error, "originalException", None)
    if original is not None and not text:
        # twisted.python.filepath.UnlistableError: a directory (trustRoots=)
        # that cannot be listed.
        return "cannot list a directory it names (trustRoots= takes a directory of CA certificates): %s" % (
            original,
        )
    unknown = re.findall(r"unexpected keyword argument '([^']+)'", text)
    if not unknown and isinstance(error, TypeError) and "unrecognized keyword" in text:
        # Twisted's tls: parser: TypeError(message, [names]).
        unknown = [str(n) for n in error.args[1]] if len(error.args) > 1 else []
    if unknown:
        return _unknown(unknown, side, kind)
    number = re.search(r"invalid literal for int\(\) with base 10: (.+)$", text)
    if number:
        return "%s is not a whole number (ports, timeouts and backlogs are)" % (number.group(1),)
    missing = re.search(r"missing \d+ required positional arguments?: (.+)$", text)
    if missing:
        names = re.findall(r"'([^']+)'", missing.group(1))
        return "missing %s" % (", ".join("%s=" % (n,) for n in names),)
    if not text:
        return "%s (no detail given; check every path and value in it)" % (
            type(error).__name__,
        )
    return text


def _unknown(names: Sequence[str], side: str, kind: str) -> str:
    """
    Unknown keyword arguments, in words: what may have been meant, and what
    the endpoint takes.
    """
    takes = _INNER_TAKES.get((side, kind))
    known = list(SessionOptions.names()) + list(_OURS.get(side, ()))
    if takes is not None:
        known += [t.strip().rstrip("=") for t in takes.split(",")]
    words = []
    for name in names:
        close = difflib.get_close_matches(name, known, 1, 0.75) or [
            k for k in known if k.lower() == name.lower()
        ]
        words.append(
            "%s=%s" % (name, " (did you mean %s=?)" % (close[0],) if close else "")
        )
    text = "unknown option%s %s" % ("s" if len(words) > 1 else "", ", ".join(words))
    if takes is not None:
        text += "; a %s: %s endpoint takes %s, besides Migrate's options" % (kind, side, takes)
    return text


def _unparse(
    args: tuple[object, ...], kwargs: Mapping[str, object], ordered: bool = True
) -> str:
    """
    An endpoint string from parsed arguments (keyword arguments sorted, or
    in their order if not C{ordered}).
    """
    keywords = [
        "%s=%s" % (quoteStringArgument(str(k)), quoteStringArgument(str(v)))
        for k, v in kwargs.items()
    ]
    return ":".join(
        [quoteStringArgument(str(arg)) for arg in args] + (sorted(keywords) if ordered else keywords)
    )


def serverEndpointFromArgs(
    reactor: Any, args: tuple[object, ...], kwargs: Mapping[str, Any]
) -> MigrateServerEndpoint:
    """
    Build a server endpoint from parsed C{migrate:} arguments.

    @raise ValueError: no inner endpoint, or bad Migrate options.
    """
    if not args:
        raise ValueError("migrate: needs an inner endpoint, e.g. migrate:tcp:7001")
    options, rest = _split(kwargs)
    directory = rest.pop("store", None)
    monitor = rest.pop("monitor", "auto")
    if monitor not in ("auto", "none"):
        raise ValueError('migrate: monitor must be "auto" or "none"')
    publishName = rest.pop("publish", None)
    locator = _locatorFrom(reactor, rest, publishing=publishName is not None)
    if publishName is not None and locator is None:
        raise ValueError("migrate: publish= needs locator=, zone=, tsigName= and tsigSecret=")
    serviceInterface = rest.pop("serviceInterface", None)
    advertise = rest.pop("advertise", None)
    AdvertisePolicy.parse(advertise)
    shown = _unparse(args, rest, ordered=False)
    if str(args[0]) in _BACKLOG_KINDS and "backlog" not in rest:
        # After an outage every client comes back at once: a listen queue of
        # Twisted's default 50 would drop their SYNs into the kernel's 1, 3,
        # 7 s retransmissions.
        rest["backlog"] = str(DEFAULT_BACKLOG)
    inner = _inner(serverFromString, reactor, _unparse(args, rest), shown, "server")
    store = SQLiteSessionStore(reactor, directory) if directory else None
    return MigrateServerEndpoint(
        reactor,
        inner,
        options,
        store=store,
        monitor=defaultMonitor(reactor) if monitor == "auto" else None,
        locator=locator,
        publishName=publishName,
        serviceInterface=serviceInterface,
        advertise=advertise,
    )


def _locatorFrom(reactor: Any, rest: dict[str, Any], publishing: bool) -> Optional[DNSLocator]:
    """
    A DNS locator from C{locator=ADDRESS[,locatorPort=N],zone=Z} (and, to
    publish, C{tsigName=} and C{tsigSecret=} or C{tsigSecretFile=}), taken
    out of C{rest}.

    @raise ValueError: options that do not fit together, or a secret that
        cannot be used (the message never shows a secret).
    """
    address = rest.pop("locator", None)
    port = rest.pop("locatorPort", "53")
    zone = rest.pop("zone", None)
    tsigName = rest.pop("tsigName", None)
    tsigSecret = rest.pop("tsigSecret", None)
    secretFile = rest.pop("tsigSecretFile", None)
    if tsigSecret is not None and secretFile is not None:
        raise ValueError("migrate: give tsigSecret= or tsigSecretFile=, not both")
    if address is None:
        if zone or tsigName or tsigSecret or secretFile:
            raise ValueError("migrate: zone= and tsig options need locator=")
        return None
    if not zone:
        raise ValueError("migrate: locator= needs zone=")
    if secretFile is not None:
        tsigName, tsigSecret = _readSecretFile(str(secretFile), tsigName)
    elif tsigSecret is not None and not _isBase64(str(tsigSecret)):
        raise ValueError("migrate: tsigSecret= is not base64 (the value is not shown)")
    if publishing and not (tsigName and tsigSecret):
        raise ValueError(
            "migrate: publishing needs tsigName= and tsigSecret= (or tsigSecretFile=)"
        )
    try:
        number = int(port)
    except ValueError:
        raise ValueError("migrate: locatorPort=%s: expected a port number" % (port,)) from None
    try:
        dns.name.from_text(str(zone))
    except dns.exception.DNSException as e:
        raise ValueError("migrate: zone=%s is not a DNS name (%s)" % (zone, e)) from None
    return DNSLocator(reactor, (address, number), zone, tsigName, tsigSecret)


def _isBase64(text: str) -> bool:
    """
    Whether C{text} is non-empty base64.
    """
    try:
        return bool(base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError):
        return False


def _readSecretFile(path: str, tsigName: Optional[str]) -> tuple[Optional[str], str]:
    """
    Read a TSIG secret from C{path}: one line, the secret in base64, or
    C{NAME:SECRET} as in C{twistd migrate-locator}'s key files (blank lines
    and C{#} comments allowed).  The file must be readable by its owner
    only.

    @param tsigName: the C{tsigName=} given, if any; a name in the file
        must be the same, and is used when none was given.
    @return: the key's name and its secret.
    @raise ValueError: the file cannot be read, may be read by others, or
        does not hold one base64 secret; the message names the file, never
        the secret.
    """
    where = "migrate: tsigSecretFile=%s" % (path,)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOCTTY", 0))
    except OSError as e:
        raise ValueError("%s: %s" % (where, e.strerror)) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ValueError("%s is not a regular file" % (where,))
        if mode & 0o077:
            raise ValueError(
                "%s has mode %04o: it must not be readable (or writable) by group or others;"
                " chmod 600 %s" % (where, stat.S_IMODE(mode), path)
            )
        with os.fdopen(fd, "rb") as f:
            fd = -1
            data = f.read(1 << 16)
    finally:
        if fd >= 0:
            os.close(fd)
    try:
        lines = [
            line.strip()
            for line in data.decode("utf-8").splitlines()
            if line.strip() and not line.strip().startswith("#")
        ]
    except UnicodeDecodeError:
        raise ValueError("%s is not UTF-8 text" % (where,)) from None
    if len(lines) != 1:
        raise ValueError(
            "%s must hold one secret (base64, or NAME:BASE64 as in a migrate-locator key file);"
            " it holds %d lines" % (where, len(lines))
        )
    name, sep, secret = lines[0].rpartition(":")
    name, secret = name.strip(), secret.strip()
    if not _isBase64(secret):
        raise ValueError("%s: the secret is not base64 (the file's content is not shown)" % (where,))
    if sep and name:
        absolute = name if name.endswith(".") else name + "."
        if tsigName is None:
            tsigName = absolute
        elif absolute != (tsigName if tsigName.endswith(".") else tsigName + "."):
            raise ValueError(
                "%s holds the key %s, not tsigName=%s" % (where, absolute, tsigName)
            )
    return tsigName, secret


def _keywords(args: tuple[object, ...], rest: Mapping[str, Any]) -> Optional[dict[str, Any]]:
    """
    The arguments of a C{tcp:} or C{tls:} client endpoint string after its
    type, with a host and port given by position (C{tcp:HOST:PORT}) made
    keywords; C{None} if there are more positional arguments than those.
    """
    keywords = dict(rest)
    positional = list(args[1:])
    if len(positional) > 2:
        return None
    for name, value in zip(("host", "port"), positional):
        if name in keywords:
            return None
        keywords[name] = value
    return keywords


def _inZone(name: str, locator: DNSLocator) -> bool:
    """
    Whether C{name} is a host name (not an address) in the locator's zone.
    """
    if isIPAddress(name) or isIPv6Address(name.strip("[]")):
        return False
    try:
        return dns.name.from_text(name).is_subdomain(locator.zone)
    except dns.exception.DNSException:
        return False


def clientEndpointFromArgs(
    reactor: Any, args: tuple[object, ...], kwargs: Mapping[str, Any]
) -> MigrateClientEndpoint:
    """
    Build a client endpoint from parsed C{migrate:} arguments.

    With C{locator=} and a C{tcp:} or C{tls:} inner endpoint whose host is
    a name in the locator's zone, every connection made through the
    endpoint as configured (the first one too) goes where the locator says
    the name is, and through the system's resolver only when the locator
    has no address for it (see L{LocatingEndpoint}).

    @raise ValueError: no inner endpoint, or bad Migrate options.
    """
    if not args:
        raise ValueError(
            "migrate: needs an inner endpoint, e.g. migrate:tcp:host=example.org:port=7001"
        )
    options, rest = _split(kwargs)
    monitor = rest.pop("monitor", "auto")
    if monitor not in ("auto", "none"):
        raise ValueError('migrate: monitor must be "auto" or "none"')
    locator = _locatorFrom(reactor, rest, publishing=False)
    kind = str(args[0])
    keywords = _keywords(args, rest) if kind in ("tcp", "tls") else None
    host = keywords.get("host") if keywords is not None else rest.get("host")
    peerName = host if locator is not None else None
    inner = _inner(
        clientFromString, reactor, _unparse(args, rest), _unparse(args, rest, ordered=False), "client"
    )
    endpointFor: Optional[Callable[[str], IStreamClientEndpoint]] = None
    if kind in ("tcp", "tls") and "bindAddress" not in rest:

        def endpointFor(source: str) -> IStreamClientEndpoint:
            return clientFromString(
                reactor, _unparse(args, dict(rest, bindAddress=source))
            )

    endpointTo = None
    if kind == "tcp":
        timeout = float(rest.get("timeout", 30))

        def endpointTo(host: str, port: int) -> IStreamClientEndpoint:
            if ":" in host:
                return TCP6ClientEndpoint(reactor, host, port, timeout)
            return TCP4ClientEndpoint(reactor, host, port, timeout)

    if (
        locator is not None
        and keywords is not None
        and host is not None
        and "endpoint" not in keywords
        and _inZone(str(host), locator)
    ):
        located = dict(keywords)

        def endpointAt(address: str, source: Optional[str]) -> IStreamClientEndpoint:
            """
            The inner endpoint to one address the locator gave (bound to
            C{source} if given); a C{tls:} one still verifies the name.
            """
            if kind == "tcp":
                tcp = dict(located, host=address)
                if source is not None:
                    tcp["bindAddress"] = source
                return clientFromString(reactor, _unparse(("tcp",), tcp))
            tls = {k: v for k, v in located.items() if k not in ("timeout", "bindAddress")}
            tcp = {"host": address, "port": located["port"]}
            for name in ("timeout", "bindAddress"):
                if name in located:
                    tcp[name] = located[name]
            if source is not None:
                tcp["bindAddress"] = source
            tls["endpoint"] = _unparse(("tcp",), tcp)
            return clientFromString(reactor, _unparse(("tls",), tls))

        plain, plainFor = inner, endpointFor

        def fallback(source: Optional[str]) -> IStreamClientEndpoint:
            if source is None or plainFor is None:
                return plain
            return plainFor(source)

        locating = LocatingEndpoint(reactor, locator, str(host), endpointAt, fallback)
        inner = locating
        if plainFor is not None:
            endpointFor = locating.boundTo

    return MigrateClientEndpoint(
        reactor,
        inner,
        options,
        monitor="auto" if monitor == "auto" else None,
        endpointFor=endpointFor,
        endpointTo=endpointTo,
        locator=locator,
        peerName=str(peerName) if peerName else None,
    )


@implementer(IStreamClientEndpoint)
class LocatingEndpoint:
    """
    Connect to a host by name, where a locator says it is: the name is
    looked up through the locator (its answer reused while its TTL lasts),
    and the addresses found race, happy-eyeballs style (L{RacingEndpoint});
    when the locator has no address for the name (or does not answer), the
    endpoint as configured is used, which looks the name up through the
    system's resolver.

    This is what makes a C{migrate:} client with C{locator=} reach a server
    known only to the locator on its first connection, before any session
    exists to remember where the server was.

    @ivar clock: the clock for the race's stagger.
    @ivar locator: where the name is looked up.
    @ivar name: the host name.
    @ivar endpointAt: makes the inner endpoint to an address the locator
        gave, from a source address (or C{None}).
    @ivar fallback: makes the endpoint as configured, from a source address
        (or C{None}).
    @ivar stagger: seconds between the starts of racing addresses.
    """

    def __init__(
        self,
        clock: IReactorTime,
        locator: ILocator,
        name: str,
        endpointAt: Callable[[str, Optional[str]], IStreamClientEndpoint],
        fallback: Callable[[Optional[str]], IStreamClientEndpoint],
        stagger: float = 0.05,
    ) -> None:
        self.clock = clock
        self.locator = locator
        self.name = name
        self.endpointAt = endpointAt
        self.fallback = fallback
        self.stagger = stagger
        self._lastAnswer: Optional[list[str]] = None

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        """
        Look the name up, then connect to where it is.

        @return: fires with the protocol of the first connection made, or
            fails with the last attempt's error; cancelling it stops the
            lookup's wait and every attempt.
        """
        return self.connectFrom(protocolFactory, None)

    def boundTo(self, source: str) -> IStreamClientEndpoint:
        """
        This endpoint, its connections made from the local address
        C{source}.
        """
        return _BoundLocatingEndpoint(self, source)

    def connectFrom(
        self, protocolFactory: IProtocolFactory, source: Optional[str]
    ) -> Deferred[IProtocol]:
        """
        L{connect}, from the local address C{source} if not C{None}.
        """
        attempt: list[Optional[Deferred[IProtocol]]] = [None]

        def cancel(d: Deferred[IProtocol]) -> None:
            if attempt[0] is not None:
                attempt[0].cancel()

        result: Deferred[IProtocol] = Deferred(cancel)

        def lookupFailed(failure: Failure) -> list[str]:
            _log.info(
                "lookup of {name} through the locator failed: {reason}",
                name=self.name,
                reason=failure.getErrorMessage(),
            )
            return []

        def found(addresses: list[str]) -> None:
            if result.called:
                # Cancelled while the lookup was under way.
                return
            self._report(addresses)
            try:
                endpoints = [self.endpointAt(a, source) for a in addresses]
                if not endpoints:
                    endpoint = self.fallback(source)
                elif len(endpoints) == 1:
                    endpoint = endpoints[0]
                else:
                    endpoint = RacingEndpoint(self.clock, endpoints, self.stagger)
                d = endpoint.connect(protocolFactory)
            except Exception:
                d = Deferred()
                d.errback(Failure())
            attempt[0] = d

            def connected(protocol: IProtocol) -> None:
                if not result.called:
                    result.callback(protocol)

            def failed(failure: Failure) -> None:
                if not result.called:
                    result.errback(failure)

            d.addCallbacks(connected, failed)

        def broken(failure: Failure) -> None:
            if not result.called:
                result.errback(failure)

        lookup = maybeDeferred(self.locator.resolve, self.name)
        lookup.addErrback(lookupFailed).addCallback(found).addErrback(broken)
        return result

    def _report(self, addresses: list[str]) -> None:
        """
        Log what the locator says of the name, when it says something new.
        """
        if addresses == self._lastAnswer:
            return
        self._lastAnswer = list(addresses)
        if addresses:
            _log.info(
                "{name} is at {addresses} (from the locator)", name=self.name, addresses=addresses
            )
        else:
            _log.info(
                "the locator has no address for {name}: looking it up through the system",
                name=self.name,
            )


@implementer(IStreamClientEndpoint)
class _BoundLocatingEndpoint:
    """
    A L{LocatingEndpoint} whose connections are made from one local address.
    """

    def __init__(self, locating: LocatingEndpoint, source: str) -> None:
        self.locating = locating
        self.source = source

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        """
        See L{LocatingEndpoint.connect}.
        """
        return self.locating.connectFrom(protocolFactory, self.source)
