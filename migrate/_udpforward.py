# -*- test-case-name: tests.test_datagram_forward -*-
"""
C{twistd migrate --udp}: forward any UDP service through datagram
sessions, so that its clients roam.

Server side, in front of the real service (here a DNS server)::

    twistd -n migrate --udp --listen migrate-udp:7053 --connect udp:127.0.0.1:53

Mobile side, where the client program sends its datagrams::

    twistd -n migrate --udp --listen udp:5353:interface=127.0.0.1 \\
        --connect migrate-udp:server.example:7053

Each local peer (source address and port) of the C{udp:} side gets its own
datagram session, opened on its first datagram (up to 64 datagrams wait
for the opening; more are dropped) and closed after C{idleTimeout} seconds
without a datagram either way; on the C{migrate-udp:} side each session
gets its own UDP socket towards the service, so that the service's answers
find their session.  Datagrams stay datagrams: nothing is retransmitted or
reordered.

The endpoint strings:

  - C{udp:PORT[:interface=ADDRESS]} to listen, C{udp:HOST:PORT} (or
    C{udp:host=HOST:port=PORT}) to send to;
  - C{migrate-udp:PORT[:interface=ADDRESS][:NAME=VALUE...]} to listen,
    C{migrate-udp:HOST:PORT[:NAME=VALUE...]} to connect, where C{NAME} is a
    session option (L{SessionOptions}: C{keepaliveInterval=},
    C{sessionTimeout=}, ...), a datagram option (L{DatagramOptions}:
    C{sendRate=}, C{sendBurst=}, C{maxDatagram=}), C{idleTimeout=} or
    C{monitor=none}.  Colons inside a value (an IPv6 address) are escaped
    with a backslash.  A listening C{migrate-udp:} side also takes
    C{store=DIRECTORY} (sessions hibernate there and survive a restart;
    C{twistd migrate --udp} gives one by default, as for C{migrate:}, unless
    C{--no-store}), C{advertise=} and C{publish=NAME}; both C{migrate-udp:}
    sides take C{locator=ADDRESS[,locatorPort=N]} and C{zone=ZONE}, and to
    publish C{tsigName=} with C{tsigSecret=} or C{tsigSecretFile=}, as
    C{migrate:} strings do.

With C{--status}, both sides' sessions are listed in the live view: the
service is given the view's L{SessionRegistry}, which hears every
session's upcalls and watches the C{migrate-udp:} listening port.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field, fields
from typing import Any, Optional, Sequence, cast

from twisted.application import service
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.defer import Deferred, DeferredList, gatherResults, maybeDeferred, succeed
from twisted.internet.error import MessageLengthError
from twisted.internet.interfaces import IDelayedCall, IProtocolFactory
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import Clock
from twisted.logger import Logger
from zope.interface import implementer

from ._endpoints import _locatorFrom
from ._options import SessionOptions
from .interfaces import IMigratable
from ._status import SessionRegistry
from ._advertise import AdvertisePolicy
from .locate import DNSLocator
from .store import SQLiteSessionStore
from .datagram import (
    DatagramOptions,
    DatagramPort,
    DatagramSessionTransport,
    connectDatagram,
    listenDatagram,
)

#: Datagrams kept for a local peer while its session opens.
MAX_WAITING = 64
#: Default seconds a forwarded session may be idle (no datagram either way).
IDLE_TIMEOUT = 300.0
#: Local peers (sessions) of the udp: side at most.
MAX_LOCAL_PEERS = 1024


@dataclass
class UDPSide:
    """
    One side of a UDP forwarder, parsed.

    @ivar kind: C{"udp"} or C{"migrate-udp"}.
    @ivar host: the host to send to (connect), or C{None} (listen).
    @ivar port: the port.
    @ivar interface: the address to listen on (listen).
    @ivar options: C{NAME=VALUE} options of a C{migrate-udp:} string.
    """

    kind: str
    host: Optional[str]
    port: int
    interface: str = ""
    options: dict[str, str] = field(default_factory=dict)


def _split(description: str) -> list[str]:
    parts, current, escaped = [], "", False
    for c in description:
        if escaped:
            current += c
            escaped = False
        elif c == "\\":
            escaped = True
        elif c == ":":
            parts.append(current)
            current = ""
        else:
            current += c
    parts.append(current)
    return parts


def _port(text: str, description: str) -> int:
    if not text.isdigit() or not 0 <= int(text) < 65536:
        raise ValueError("%r: %r is not a port" % (description, text))
    return int(text)


_SESSION_NAMES = SessionOptions.names()
_DATAGRAM_NAMES = {f.name for f in fields(DatagramOptions)}
#: Options of a C{migrate-udp:} string naming a DNS locator (either side).
_LOCATOR_NAMES = {"locator", "locatorPort", "zone", "tsigName", "tsigSecret", "tsigSecretFile"}
#: Options of a listening C{migrate-udp:} string only.
_SERVER_NAMES = {"store", "publish", "advertise"}


def parseSide(description: str, listen: bool) -> UDPSide:
    """
    Parse a C{udp:} or C{migrate-udp:} string.

    @param listen: whether it is the C{--listen} side.
    @raise ValueError: it is neither, or malformed (the message says what
        is expected).
    """
    parts = _split(description)
    kind = parts[0]
    if kind not in ("udp", "migrate-udp"):
        raise ValueError(
            "%r: with --udp, give udp: or migrate-udp: endpoints" % (description,)
        )
    positional = [p for p in parts[1:] if "=" not in p]
    keywords = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
    host = keywords.pop("host", None)
    port = keywords.pop("port", None)
    interface = keywords.pop("interface", "")
    if listen:
        if host is not None:
            raise ValueError("%r: a listening side takes no host" % (description,))
        if port is None and positional:
            port = positional.pop(0)
        if positional:
            raise ValueError("%r: expected %s:PORT[:interface=ADDRESS]" % (description, kind))
    else:
        if host is None and positional:
            host = positional.pop(0)
        if port is None and positional:
            port = positional.pop(0)
        if positional or host is None or port is None:
            raise ValueError("%r: expected %s:HOST:PORT" % (description, kind))
        if interface:
            raise ValueError("%r: a connecting side takes no interface" % (description,))
    if port is None:
        raise ValueError("%r: no port" % (description,))
    options: dict[str, str] = {}
    if kind == "udp" and keywords:
        raise ValueError("%r: unknown option %r" % (description, sorted(keywords)[0]))
    known = _SESSION_NAMES | _DATAGRAM_NAMES | _LOCATOR_NAMES | {"idleTimeout", "monitor"}
    for name, value in keywords.items():
        if name in _SERVER_NAMES and not listen:
            raise ValueError("%r: %s= is for a listening side" % (description, name))
        if name not in known | _SERVER_NAMES:
            raise ValueError("%r: unknown option %r" % (description, name))
        options[name] = value
    if "store" in options and not options["store"]:
        raise ValueError("%r: store= needs a directory" % (description,))
    if options.get("monitor", "auto") not in ("auto", "none"):
        raise ValueError("%r: monitor= takes auto or none" % (description,))
    side = UDPSide(kind, host, _port(port, description), interface, options)
    _datagramOptions(side)
    _sessionOptions(side, SessionOptions())
    _idleTimeout(side)
    if "advertise" in options:
        AdvertisePolicy.parse(options["advertise"])
    # Checked here (with a clock for reactor: nothing is sent), built again
    # with the real reactor when the service starts.
    _locator(side, Clock())
    return side


def _locator(side: UDPSide, reactor: Any) -> Optional[DNSLocator]:
    """
    The DNS locator of a C{migrate-udp:} side's C{locator=} options, if any.

    @raise ValueError: options that do not fit together (as for
        C{migrate:} strings), or C{publish=} without a locator.
    """
    rest: dict[str, Any] = {k: v for k, v in side.options.items() if k in _LOCATOR_NAMES}
    publishing = "publish" in side.options
    locator = _locatorFrom(reactor, rest, publishing=publishing)
    if publishing and locator is None:
        raise ValueError("migrate-udp: publish= needs locator=, zone=, tsigName= and tsigSecret=")
    return locator


def _datagramOptions(side: UDPSide) -> DatagramOptions:
    given: dict[str, Any] = {}
    for name in _DATAGRAM_NAMES & set(side.options):
        try:
            given[name] = int(side.options[name]) if name == "maxDatagram" else float(side.options[name])
        except ValueError:
            raise ValueError("bad value %r for %s" % (side.options[name], name))
    return DatagramOptions(**given)


def _sessionOptions(side: UDPSide, base: SessionOptions) -> SessionOptions:
    given = {k: v for k, v in side.options.items() if k in _SESSION_NAMES}
    if not given:
        return base
    parsed = SessionOptions.fromStrings(given)
    return base.replace(**{k: getattr(parsed, k) for k in given})


def _idleTimeout(side: UDPSide) -> float:
    try:
        value = float(side.options.get("idleTimeout", IDLE_TIMEOUT))
    except ValueError:
        raise ValueError("idleTimeout takes seconds")
    if not value > 0:
        raise ValueError("idleTimeout must be positive")
    return value


def checkUDPForward(listen: str, connect: str) -> tuple[UDPSide, UDPSide]:
    """
    Parse and check the two sides of C{twistd migrate --udp}.

    @raise ValueError: a malformed side, or not one C{udp:} and one
        C{migrate-udp:}.
    """
    listening = parseSide(listen, True)
    target = parseSide(connect, False)
    if {listening.kind, target.kind} != {"udp", "migrate-udp"}:
        raise ValueError(
            "--udp forwards between udp: and migrate-udp: (one of each), not %s: to %s:"
            % (listening.kind, target.kind)
        )
    return listening, target


class _LocalPeer(DatagramProtocol):
    """
    The session of one local peer of the C{udp:} side.
    """

    noisy = False

    def __init__(self, owner: _LocalSide, peer: Any) -> None:
        self.owner = owner
        self.peer = peer
        self.waiting: list[bytes] = []
        self.lastActive = owner.reactor.seconds()
        self._idle: Optional[IDelayedCall] = None

    def send(self, datagram: bytes) -> None:
        self.lastActive = self.owner.reactor.seconds()
        if self.transport is None:
            if len(self.waiting) < MAX_WAITING:
                self.waiting.append(datagram)
            return
        try:
            _session(self).write(datagram)
        except MessageLengthError:
            pass

    def startProtocol(self) -> None:
        waiting, self.waiting = self.waiting, []
        for datagram in waiting:
            self.send(datagram)
        self._scheduleIdle()

    def _scheduleIdle(self) -> None:
        reactor = self.owner.reactor
        delay = self.lastActive + self.owner.idleTimeout - reactor.seconds()
        self._idle = reactor.callLater(max(0.0, delay), self._checkIdle)

    def _checkIdle(self) -> None:
        self._idle = None
        if self.owner.reactor.seconds() - self.lastActive >= self.owner.idleTimeout:
            if self.transport is not None:
                _session(self).loseConnection()
        else:
            self._scheduleIdle()

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self.lastActive = self.owner.reactor.seconds()
        self.owner.transport.write(datagram, self.peer)  # type: ignore[union-attr]

    def stopProtocol(self) -> None:
        if self._idle is not None and self._idle.active():
            self._idle.cancel()
        self._idle = None
        self.owner.ended(self)


class _LocalSide(DatagramProtocol):
    """
    The C{udp:} listening side: one datagram session per local peer.
    """

    noisy = False

    log = Logger()

    def __init__(
        self, reactor: Any, target: UDPSide, options: SessionOptions, observers: Sequence[Any] = ()
    ) -> None:
        self.reactor = reactor
        self.target = target
        self.observers = list(observers)
        self.options = _sessionOptions(target, options)
        self.datagramOptions = _datagramOptions(target)
        self.idleTimeout = _idleTimeout(target)
        self.monitor: Any = None if target.options.get("monitor") == "none" else "auto"
        self.locator = _locator(target, reactor)
        self.sessions: dict[Any, _LocalPeer] = {}
        self.opening: dict[Any, Deferred[Any]] = {}

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        session = self.sessions.get(addr)
        if session is None:
            if len(self.sessions) >= MAX_LOCAL_PEERS:
                return
            session = self.sessions[addr] = _LocalPeer(self, addr)
            self._open(session)
        session.send(datagram)

    def _open(self, session: _LocalPeer) -> None:
        assert self.target.host is not None
        d = connectDatagram(
            self.reactor, self.target.host, self.target.port, session,
            options=self.options, datagramOptions=self.datagramOptions, monitor=self.monitor,
            observers=self.observers, locator=self.locator,
        )
        self.opening[session.peer] = d

        def failed(f: Any) -> None:
            self.log.info(
                "no session for {peer}: {why}", peer="%s:%d" % session.peer[:2], why=f.getErrorMessage()
            )
            if self.sessions.get(session.peer) is session:
                del self.sessions[session.peer]

        d.addErrback(failed)
        d.addBoth(lambda _: self.opening.pop(session.peer, None))

    def ended(self, session: _LocalPeer) -> None:
        if self.sessions.get(session.peer) is session:
            del self.sessions[session.peer]

    def stop(self) -> Deferred[Any]:
        """
        End every session and opening.
        """
        for d in list(self.opening.values()):
            d.cancel()
        ends = [
            _session(s).stopListening()
            for s in list(self.sessions.values())
            if s.transport is not None
        ]
        self.sessions.clear()
        return gatherResults(ends)


def _session(protocol: DatagramProtocol) -> DatagramSessionTransport:
    """
    The datagram session transport of one of our protocols.
    """
    return cast(DatagramSessionTransport, protocol.transport)


class _Reply(DatagramProtocol):
    """
    The socket towards the service of one session: answers go back into
    the session.
    """

    noisy = False

    def __init__(self, upstream: _Upstream) -> None:
        self.upstream = upstream

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        upstream = self.upstream
        if addr[:2] == upstream.service and upstream.transport is not None:
            try:
                _session(upstream).write(datagram)
            except MessageLengthError:
                pass


@implementer(IMigratable)
class _Upstream(DatagramProtocol):
    """
    One session of the C{migrate-udp:} side, forwarded to the service
    through its own UDP socket.

    It is migratable (with a C{store=}, its session hibernates and survives
    a restart of the forwarder): it has no state of its own, and lets go of
    its socket when checkpointed; restored, it opens a new one (the service
    sees the session's datagrams from a new port).
    """

    noisy = False

    def __init__(self, reactor: Any, service: tuple[str, int]) -> None:
        self.reactor = reactor
        self.service = service
        self.port: Any = None

    def startProtocol(self) -> None:
        interface = "::" if ":" in self.service[0] else ""
        self.port = self.reactor.listenUDP(0, _Reply(self), interface=interface)

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        if self.port is not None:
            try:
                self.port.write(datagram, self.service)
            except OSError:
                pass

    def stopProtocol(self) -> None:
        if self.port is not None:
            self.port.stopListening()
            self.port = None

    def saveMigrationState(self) -> bytes:
        """
        The session hibernates: close the socket towards the service (this
        protocol hears nothing more).
        """
        self.stopProtocol()
        return b"udp"

    def restoreMigrationState(self, state: bytes) -> None:
        """
        Rebuilt from a checkpoint: open a socket towards the service.
        """
        self.startProtocol()

    def validateResume(self, asleep: float, peer: Any) -> object:
        return True


@implementer(IProtocolFactory)
class _UpstreamFactory:
    """
    Builds an L{_Upstream} for each session.
    """

    def __init__(self, reactor: Any, service: tuple[str, int]) -> None:
        self.reactor = reactor
        self.service = service

    def buildProtocol(self, addr: Any) -> Any:
        return _Upstream(self.reactor, self.service)

    def doStart(self) -> None:
        pass

    def doStop(self) -> None:
        pass


class UDPForwardService(service.Service):
    """
    The forwarder of C{twistd migrate --udp}.

    @ivar listening: the plain UDP port or the L{DatagramPort}, once
        started.
    """

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        listen: UDPSide,
        target: UDPSide,
        options: SessionOptions,
        registry: Optional[SessionRegistry] = None,
    ) -> None:
        """
        @param registry: the live view's registry: it hears every session's
            upcalls and watches the C{migrate-udp:} listening port.
        """
        self.reactor = reactor
        self.listen = listen
        self.target = target
        self.options = options
        self.registry = registry
        self.listening: Any = None
        self.local: Optional[_LocalSide] = None

    def privilegedStartService(self) -> None:
        service.Service.privilegedStartService(self)
        observers = [self.registry] if self.registry is not None else []
        if self.listen.kind == "udp":
            self.local = _LocalSide(self.reactor, self.target, self.options, observers)
            self.listening = self.reactor.listenUDP(
                self.listen.port, self.local, interface=self.listen.interface
            )
        else:
            host = self.target.host
            assert host is not None
            if not (isIPAddress(host) or isIPv6Address(host)):
                host = socket.gethostbyname(host)
            serviceAddress = (host, self.target.port)
            factory = _UpstreamFactory(self.reactor, serviceAddress)
            directory = self.listen.options.get("store")
            store = SQLiteSessionStore(self.reactor, directory) if directory else None
            self.listening = listenDatagram(
                self.reactor,
                self.listen.port,
                factory,
                interface=self.listen.interface,
                options=_sessionOptions(self.listen, self.options),
                datagramOptions=_datagramOptions(self.listen),
                monitor=None if self.listen.options.get("monitor") == "none" else "auto",
                observers=observers,
                store=store,
                locator=_locator(self.listen, self.reactor),
                publishName=self.listen.options.get("publish"),
                advertise=self.listen.options.get("advertise"),
            )
            if self.registry is not None:
                self.registry.watchDatagramPort(self.listening)
        host = self.listening.getHost()
        self.log.info(
            "forwarding UDP from {kind}:{port} to {target}",
            kind=self.listen.kind, port=host.port,
            target="%s:%s:%d" % (self.target.kind, self.target.host, self.target.port),
        )

    def startService(self) -> None:
        if self.listening is None:
            self.privilegedStartService()
        service.Service.startService(self)

    def stopService(self) -> Deferred[Any]:
        service.Service.stopService(self)
        listening, self.listening = self.listening, None
        if listening is None:
            return succeed(None)
        if isinstance(listening, DatagramPort):
            return listening.stopListening()
        assert self.local is not None
        ended = self.local.stop()
        return DeferredList([ended, maybeDeferred(listening.stopListening)])


def makeUDPService(
    listen: str,
    connect: str,
    options: Optional[SessionOptions] = None,
    reactor: Any = None,
    registry: Optional[SessionRegistry] = None,
) -> UDPForwardService:
    """
    The service of C{twistd migrate --udp --listen LISTEN --connect CONNECT}.

    @param options: session options for the C{migrate-udp:} side (its own
        string's options win).
    @param registry: the live view's (C{--status}) registry, told of every
        session.
    @raise ValueError: the strings are not one C{udp:} and one
        C{migrate-udp:} side, or malformed.
    """
    if reactor is None:
        from twisted.internet import reactor as default

        reactor = default
    listening, target = checkUDPForward(listen, connect)
    return UDPForwardService(reactor, listening, target, options or SessionOptions(), registry)
