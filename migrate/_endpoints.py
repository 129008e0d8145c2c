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

import re

import random
from typing import Any, Callable, Mapping, Optional, Union

from twisted.internet.defer import Deferred, gatherResults
from twisted.logger import Logger
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    clientFromString,
    quoteStringArgument,
    serverFromString,
)
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
from ._session import restoreSession
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
    ) -> None:
        """
        @param advertise: what clients are told about where this server can
            be reached: C{"auto"} (default), C{"none"} or
            C{"HOST:PORT[,HOST:PORT...]"} (see L{migrate._advertise}).
        @param locator: where this host publishes its addresses under
            C{publishName} whenever they change (needs C{monitor}).
        @param serviceInterface: only addresses on this interface are
            advertised and published.
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
            (its C{getHost()} is the real address).
        """
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
        )
        factory = self.factory

        def listening(port: IListeningPort) -> IListeningPort:
            host = getattr(port.getHost(), "host", None)
            if isinstance(host, str):
                factory.setListeningHost(host)
            return port

        return self.endpoint.listen(factory).addCallback(listening)


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
    ) -> None:
        """
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
            self.monitor,
            self.observers,
            self.endpointFor,
            self.limiter,
            self.endpointTo,
            self.locator,
            self.peerName,
        )
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
        closing = []
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
            self.clock, record, self.options, self.policy, upcalls, protocolFactory, None  # type: ignore[arg-type]
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


def _inner(parse: Callable[[Any, str], Any], reactor: Any, description: str) -> Any:
    """
    Parse the inner endpoint of a C{migrate:} string, turning Twisted's raw
    errors (C{TypeError}s about keyword arguments, exceptions with no
    message) into a C{ValueError} an operator can act on.

    @raise ValueError: the inner endpoint string is not valid.
    """
    try:
        return parse(reactor, description)
    except Exception as e:
        raise ValueError("migrate: inner endpoint %r: %s" % (description, _explain(e)))


def _explain(error: Exception) -> str:
    """
    Say what is wrong with an endpoint string, from the exception its
    parser raised.
    """
    text = str(error)
    original = getattr(error, "originalException", None)
    if original is not None and not text:
        # twisted.python.filepath.UnlistableError: a directory (trustRoots=)
        # that cannot be listed.
        return "cannot list a directory it names: %s" % (original,)
    unexpected = re.search(r"unexpected keyword argument '([^']+)'", text)
    if unexpected:
        return "unknown option %s=" % (unexpected.group(1),)
    missing = re.search(r"missing \d+ required positional arguments?: (.+)$", text)
    if missing:
        names = re.findall(r"'([^']+)'", missing.group(1))
        return "missing %s" % (", ".join("%s=" % (n,) for n in names),)
    if not text:
        return "%s (no detail given; check every path and value in it)" % (
            type(error).__name__,
        )
    return text


def _unparse(args: tuple[object, ...], kwargs: Mapping[str, object]) -> str:
    return ":".join(
        [quoteStringArgument(str(arg)) for arg in args]
        + sorted(
            "%s=%s" % (quoteStringArgument(str(k)), quoteStringArgument(str(v)))
            for k, v in kwargs.items()
        )
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
    if str(args[0]) in _BACKLOG_KINDS and "backlog" not in rest:
        # After an outage every client comes back at once: a listen queue of
        # Twisted's default 50 would drop their SYNs into the kernel's 1, 3,
        # 7 s retransmissions.
        rest["backlog"] = str(DEFAULT_BACKLOG)
    store = SQLiteSessionStore(reactor, directory) if directory else None
    return MigrateServerEndpoint(
        reactor,
        _inner(serverFromString, reactor, _unparse(args, rest)),
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
    publish, C{tsigName=}, C{tsigSecret=}), taken out of C{rest}.
    """
    address = rest.pop("locator", None)
    port = rest.pop("locatorPort", "53")
    zone = rest.pop("zone", None)
    tsigName = rest.pop("tsigName", None)
    tsigSecret = rest.pop("tsigSecret", None)
    if address is None:
        if zone or tsigName or tsigSecret:
            raise ValueError("migrate: zone= and tsig options need locator=")
        return None
    if not zone:
        raise ValueError("migrate: locator= needs zone=")
    if publishing and not (tsigName and tsigSecret):
        raise ValueError("migrate: publishing needs tsigName= and tsigSecret=")
    try:
        number = int(port)
    except ValueError:
        raise ValueError("migrate: locatorPort must be a number")
    return DNSLocator(reactor, (address, number), zone, tsigName, tsigSecret)


def clientEndpointFromArgs(
    reactor: Any, args: tuple[object, ...], kwargs: Mapping[str, Any]
) -> MigrateClientEndpoint:
    """
    Build a client endpoint from parsed C{migrate:} arguments.

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
    peerName = rest.get("host") if locator is not None else None
    endpointFor = None
    if str(args[0]) in ("tcp", "tls") and "bindAddress" not in rest:

        def endpointFor(source: str) -> IStreamClientEndpoint:
            return clientFromString(
                reactor, _unparse(args, dict(rest, bindAddress=source))
            )

    endpointTo = None
    if str(args[0]) == "tcp":
        timeout = float(rest.get("timeout", 30))

        def endpointTo(host: str, port: int) -> IStreamClientEndpoint:
            if ":" in host:
                return TCP6ClientEndpoint(reactor, host, port, timeout)
            return TCP4ClientEndpoint(reactor, host, port, timeout)

    return MigrateClientEndpoint(
        reactor,
        _inner(clientFromString, reactor, _unparse(args, rest)),
        options,
        monitor="auto" if monitor == "auto" else None,
        endpointFor=endpointFor,
        endpointTo=endpointTo,
        locator=locator,
        peerName=str(peerName) if peerName else None,
    )
