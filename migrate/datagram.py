# -*- test-case-name: tests.test_datagram -*-
"""
Datagram sessions: Twisted C{DatagramProtocol} applications that roam.

A datagram session joins two C{DatagramProtocol} applications through an
authenticated, encrypted session that follows either end wherever it
goes: a NAT rebinding, a new address, a link lost for a while.  The
application sees an C{IUDPTransport}-like transport whose C{write} goes to
its peer, wherever it is now.  Datagram semantics are kept: no
retransmission, no ordering.

Server::

    from twisted.internet.protocol import Factory
    port = listenDatagram(reactor, 7001, Factory.forProtocol(MyDatagramProtocol))

Client::

    d = connectDatagram(reactor, "server.example", 7001, MyDatagramProtocol())
    # fires with the protocol once the session is open

The wire format, the semantics and the security model are in
C{docs/datagram.md}.  The protocol logic is sans-IO (L{migrate._dgram},
L{migrate._dgram_conn}, L{migrate._dgram_handshake}); this module is the
Twisted driver: sockets, one timer per session, the connectivity monitor,
policy and upcalls.
"""

from __future__ import annotations

import socket
import weakref
from dataclasses import dataclass, fields
from typing import Any, Callable, Iterable, Optional, Sequence

from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionDone, MessageLengthError
from twisted.internet.interfaces import (
    IDelayedCall,
    IListeningPort,
    IProtocolFactory,
    IReactorCore,
    IReactorFDSet,
    IReactorTime,
)
from twisted.internet.protocol import AbstractDatagramProtocol
from twisted.internet.task import Clock
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from . import _dgram, _dgram_conn
from ._advertise import AdvertisePolicy, formatHostPort
from ._dgram_conn import DatagramConnection, hostPort
from ._dgram_handshake import ClientOpening, HandshakeResponder
from ._dgram_socket import DatagramSocket, familyOf, makeAddress
from ._handshake import HandshakeFailed
from ._options import SessionOptions
from ._upcalls import Upcalls
from .errors import HandshakeError, SessionExpired
from .interfaces import ConnectivityEvent, IConnectivityMonitor, IDatagramSession, ILocator, IMigratePolicy
from .monitors import MonitorLease, defaultMonitor
from .policy import DefaultPolicy

__all__ = [
    "DatagramOptions",
    "DatagramPort",
    "DatagramSessionTransport",
    "connectDatagram",
    "listenDatagram",
]

Address = tuple[str, int]

#: Seconds between two log lines about dropped datagrams of one session.
_DROP_LOG_INTERVAL = 60.0
#: Seconds between two locator lookups of a suspended client.
_LOOKUP_INTERVAL = 0.5


@dataclass(frozen=True)
class DatagramOptions:
    """
    What datagram sessions add to L{SessionOptions}.

    @ivar sendRate: bytes per second (protected size) the application of
        one session may send, refilled continuously; datagrams beyond are
        dropped.
    @ivar sendBurst: bytes the application may send at once after a quiet
        spell.
    @ivar maxDatagram: the largest application datagram (bytes); larger
        writes raise C{MessageLengthError}.
    """

    sendRate: float = 32 * 1024 * 1024
    sendBurst: float = 1024 * 1024
    maxDatagram: int = _dgram.MAX_DATAGRAM

    def __post_init__(self) -> None:
        for f in fields(self):
            if not getattr(self, f.name) > 0:
                raise ValueError("%s must be positive" % (f.name,))
        if self.maxDatagram > _dgram.MAX_DATAGRAM:
            raise ValueError("maxDatagram must be at most %d" % (_dgram.MAX_DATAGRAM,))
        if self.sendBurst < self.maxDatagram + _dgram.OVERHEAD:
            raise ValueError("sendBurst must hold at least one datagram of maxDatagram bytes")


def _normal(address: Any) -> Address:
    return (address[0], address[1])


def _text(address: Any) -> str:
    return formatHostPort(address[0], address[1])


_leases: "weakref.WeakKeyDictionary[Any, MonitorLease]" = weakref.WeakKeyDictionary()
_defaults: "weakref.WeakKeyDictionary[Any, IConnectivityMonitor]" = weakref.WeakKeyDictionary()


def _lease(reactor: Any, monitor: Any) -> Optional[MonitorLease]:
    """
    The shared lease of a monitor (C{"auto"}: the platform's, one per
    reactor, when the clock is a real reactor), or C{None}.
    """
    if monitor is None:
        return None
    if monitor == "auto":
        if isinstance(reactor, Clock) or not IReactorFDSet.providedBy(reactor):
            return None
        monitor = _defaults.get(reactor)
        if monitor is None:
            monitor = _defaults[reactor] = defaultMonitor(reactor)
    lease = _leases.get(monitor)
    if lease is None:
        lease = _leases[monitor] = MonitorLease(monitor)
    return lease


@implementer(IDatagramSession)
class DatagramSessionTransport:
    """
    The transport of a datagram session's application: an
    C{IUDPTransport} whose peer is the session's, wherever it is now.
    """

    def __init__(self, session: _Session) -> None:
        self._session = session

    @property
    def sessionID(self) -> str:
        """
        The session's id, 32 lowercase hex characters (the same at both
        ends).
        """
        return self._session.conn.sessionID.hex()

    @property
    def state(self) -> str:
        """
        C{"attached"} (the peer is heard from), C{"detached"} (suspended:
        silent too long) or C{"closed"}.
        """
        return self._session.state

    @property
    def generation(self) -> int:
        """
        The key generation: 0 for an opened session.
        """
        return self._session.conn.generation

    @property
    def handoffs(self) -> int:
        """
        How many times the peer moved to a new address.
        """
        return self._session.conn.moves

    def write(self, packet: bytes, addr: Any = None) -> None:
        """
        Send C{packet} to the session's peer (C{addr} is ignored: the session
        has one peer, wherever it is).

        @raise TypeError: not C{bytes}.
        @raise MessageLengthError: longer than C{maxDatagram}.
        """
        self._session.write(packet)

    def connect(self, host: str, port: int) -> None:
        """
        Refused: the session is connected to its peer already.
        """
        raise RuntimeError("a datagram session is connected to its peer already")

    def getHost(self) -> IPv4Address | IPv6Address:
        """
        The local socket's address.
        """
        return self._session.host

    def getPeer(self) -> IPv4Address | IPv6Address:
        """
        The peer's current address.
        """
        return makeAddress(self._session.conn.path.address)

    def loseConnection(self) -> None:
        """
        End the session, telling the peer; the application's
        C{stopProtocol} runs in the next reactor turn.
        """
        self._session.close("closed by the application")

    def stopListening(self) -> "Deferred[None]":
        """
        As L{loseConnection}; the Deferred fires once the session ended.
        """
        self.loseConnection()
        return self.whenEnded()

    def setBroadcastAllowed(self, enabled: bool) -> None:
        """
        Broadcast is never allowed on a session.
        """
        if enabled:
            raise RuntimeError("a datagram session cannot broadcast")

    def getBroadcastAllowed(self) -> bool:
        return False

    def isAttached(self) -> bool:
        """
        Whether the peer is heard from (the session is not suspended).
        """
        return self._session.state == "attached"

    def whenEnded(self) -> "Deferred[None]":
        """
        A Deferred that fires once the session is over (the application's
        C{stopProtocol} has run, nothing of it is left on the reactor).
        """
        return self._session.whenEnded()

    def snapshot(self) -> dict[str, object]:
        """
        The session's state now, as JSON-ready data.
        """
        return self._session.snapshot()


class _Session:
    """
    One datagram session's driver: the sans-IO connection, its socket, its
    one timer, its application and upcalls.

    @ivar conn: the L{DatagramConnection}.
    @ivar state: C{"attached"}, C{"detached"} or C{"closed"}.
    """

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        sock: DatagramSocket,
        conn: DatagramConnection,
        protocol: AbstractDatagramProtocol,
        upcalls: Upcalls,
        side: str,
        options: DatagramOptions,
        onEnd: Callable[[_Session], None],
        port: int,
    ) -> None:
        self.clock = clock
        self.socket = sock
        self.conn = conn
        self.protocol = protocol
        self.upcalls = upcalls
        self.side = side
        self.options = options
        self.onEnd = onEnd
        self.port = port
        self.host = sock.getHost()
        self._now = clock.seconds
        self._send = sock.send
        self._maxDatagram = options.maxDatagram
        self.state = "attached"
        self.transport = DatagramSessionTransport(self)
        self.createdAt = clock.seconds()
        self._call: Optional[IDelayedCall] = None
        self._callAt = 0.0
        self._waiters: list[Deferred[None]] = []
        self._ending = False
        self._droppedLoggedAt: Optional[float] = None
        self._lastAdvert: list[str] = []
        # Client side: where to look the server up while suspended.
        self.locator: Optional[ILocator] = None
        self.peerName: Optional[str] = None
        self._lookedAt: Optional[float] = None

    def logPrefix(self) -> str:
        return "DatagramSession,%s" % (self.side,)

    def useSocket(self, sock: DatagramSocket) -> None:
        """
        Send through C{sock} from now on (a client whose socket had to be
        replaced: the peer follows its first datagram from the new one).
        """
        self.socket = sock
        self._send = sock.send
        self.host = sock.getHost()

    def start(self) -> None:
        """
        Give the application its transport (C{startProtocol} runs).
        """
        upcalls = self.upcalls
        upcalls.app = self.protocol
        for choice in upcalls.notify("choosePolicy", self.transport):
            if IMigratePolicy.providedBy(choice):
                self.conn.policy = choice
                break
        try:
            self.protocol.makeConnection(self.transport)
        except Exception:
            self.log.failure("{side} datagram application failed to start", side=self.side)
        upcalls.notify("sessionEstablished", self.transport)
        self._arm()

    # The hot paths.

    def received(self, datagram: bytes, address: Address, local: Optional[str]) -> None:
        conn = self.conn
        payload = conn.receive(datagram, address, local, self._now())
        if payload is None or conn.timerMoved:
            # A control packet, or a move or resume to act on (before the
            # application sees the datagram).
            self._afterControl()
            self._arm()
        if payload is not None and conn.ended is None:
            try:
                self.protocol.datagramReceived(payload, conn.path.address)
            except Exception:
                self.log.failure("{side} datagram application raised", side=self.side)

    def write(self, packet: bytes) -> None:
        if type(packet) is not bytes and not isinstance(packet, bytes):
            raise TypeError("Data must be bytes")
        if len(packet) > self._maxDatagram:
            raise MessageLengthError(
                "datagram of %d bytes (at most %d)" % (len(packet), self._maxDatagram)
            )
        conn = self.conn
        if conn.ended is not None:
            return
        out = conn.sendApp(packet, self._now())
        if out is not None:
            self._send(out[0], out[1], out[2])
        else:
            self._dropped()
        if conn.timerMoved:
            self._arm()

    # Everything else.

    def _dropped(self) -> None:
        now = self.clock.seconds()
        if self._droppedLoggedAt is None or now - self._droppedLoggedAt >= _DROP_LOG_INTERVAL:
            self._droppedLoggedAt = now
            stats = self.conn.stats
            self.log.info(
                "datagram session {sid}: application datagrams dropped: {rate} by the rate "
                "bound, {amplification} until the peer's new address {peer} answers",
                sid=self.conn.sessionID.hex(),
                rate=stats["rateDrops"],
                amplification=stats["amplificationDrops"],
                peer=_text(self.conn.path.address),
            )

    def _afterControl(self) -> None:
        """
        Send what the connection queued and act on its events.
        """
        for datagram, address, local in self.conn.datagramsToSend():
            self._send(datagram, address, local)
        while True:
            event = self.conn.nextEvent()
            if event is None:
                break
            self._event(event)

    def _event(self, event: _dgram_conn.Event) -> None:
        sid = self.conn.sessionID.hex()
        if isinstance(event, _dgram_conn.PeerMoved):
            self.log.info(
                "datagram session {sid}: peer moved from {old} to {new}",
                sid=sid, old=_text(event.old), new=_text(event.new),
            )
            self.upcalls.notify("peerMoved", self.transport, _text(event.old), _text(event.new))
        elif isinstance(event, _dgram_conn.Suspended):
            self.state = "detached"
            self.log.info("datagram session {sid} suspended: {reason}", sid=sid, reason=event.reason)
            self.upcalls.notify("sessionSuspended", self.transport, event.reason)
            self._lookup()
        elif isinstance(event, _dgram_conn.Resumed):
            self.state = "attached"
            self.log.info(
                "datagram session {sid} resumed after {downtime:.3f} s", sid=sid, downtime=event.downtime
            )
            self.upcalls.notify(
                "sessionResumed",
                self.transport,
                makeAddress(event.previous),
                makeAddress(event.new),
                event.downtime,
                0,
            )
        elif isinstance(event, _dgram_conn.Ended):
            if event.how == "expired":
                failure = Failure(SessionExpired(event.reason))
            else:
                failure = Failure(ConnectionDone(event.reason))
            if event.how == "closed":
                # The application's own call: end in the next turn.
                self._ending = True
                self.clock.callLater(0, self._finish, failure)
            else:
                self._finish(failure)

    def _arm(self) -> None:
        self.conn.timerMoved = False
        when = self.conn.nextTimer()
        call = self._call
        if when is None:
            if call is not None:
                call.cancel()
                self._call = None
            return
        if call is not None:
            if when >= self._callAt:
                return  # it fires first, and re-arms
            call.cancel()
        self._callAt = when
        self._call = self.clock.callLater(max(0.0, when - self.clock.seconds()), self._fire)

    def _fire(self) -> None:
        self._call = None
        now = self.clock.seconds()
        self.conn.handleTimer(now)
        self._afterControl()
        if self.conn.suspended:
            self._lookup()
        self._arm()

    def _lookup(self) -> None:
        """
        Client, suspended: look the server's name up again and probe what
        comes back (at most every L{_LOOKUP_INTERVAL}).
        """
        if self.locator is None or self.peerName is None:
            return
        now = self.clock.seconds()
        if self._lookedAt is not None and now - self._lookedAt < _LOOKUP_INTERVAL:
            return
        self._lookedAt = now

        def found(addresses: Sequence[str]) -> None:
            if self.conn.ended is not None or not addresses:
                return
            candidates = [(a, self.port) for a in addresses]
            self.conn.candidates = list(candidates)
            self.conn.probe(candidates, self.clock.seconds())
            self._afterControl()
            self._arm()

        d = self.locator.resolve(self.peerName, True)
        d.addCallback(found)
        d.addErrback(lambda f: self.log.info("locator lookup failed: {f}", f=f.getErrorMessage()))

    def connectivityChanged(self, event: ConnectivityEvent) -> None:
        """
        Client: a local connectivity event: probe at once.
        """
        if self.conn.ended is not None:
            return
        self.conn.connectivityChanged(self.clock.seconds())
        self._afterControl()
        self._arm()
        self.upcalls.notify("addressesChanged", self.transport, event)
        if self.conn.suspended:
            self._lookedAt = None
            self._lookup()

    def advertise(self, ours: Sequence[Any], newest: Optional[str]) -> None:
        """
        Server: tell the client where we can be reached now (when that
        changed), from the preferred address.
        """
        if self.conn.ended is not None:
            return
        reached = self.conn.path.local or self.host.host
        addresses = AdvertisePolicy().addresses(
            reached, self.port, [a.address for a in ours], {a.address: a.interface for a in ours}, newest
        )
        if not addresses or addresses == self._lastAdvert:
            return
        self._lastAdvert = addresses
        preferred = hostPort(addresses[0])
        local = preferred[0] if preferred is not None and self.socket.pktinfo else None
        self.conn.advertise(addresses, 0, self.clock.seconds(), local)
        self._afterControl()

    def close(self, reason: str) -> None:
        """
        End the session at the application's request (its C{stopProtocol}
        runs in the next reactor turn).
        """
        if self.conn.ended is None:
            self.conn.close(reason, self.clock.seconds())
            self._afterControl()

    def closeNow(self, reason: str) -> None:
        """
        End the session at once (its owner stops), telling the peer.
        """
        if self.conn.ended is None:
            self.conn.close(reason, self.clock.seconds())
            for datagram, address, local in self.conn.datagramsToSend():
                self.socket.send(datagram, address, local)
        self._finish(Failure(ConnectionDone(reason)))

    def _finish(self, failure: Failure) -> None:
        if self.state == "closed":
            return
        self.state = "closed"
        if self._call is not None:
            self._call.cancel()
            self._call = None
        self.onEnd(self)
        self.upcalls.notify("sessionEnded", self.transport, failure)
        try:
            self.protocol.doStop()
        except Exception:
            self.log.failure("{side} datagram application raised on stop", side=self.side)
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(None)

    def whenEnded(self) -> "Deferred[None]":
        if self.state == "closed":
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiters.append(d)
        return d

    def snapshot(self) -> dict[str, object]:
        now = self.clock.seconds()
        conn = self.conn
        return dict(
            conn.snapshot(),
            id=conn.sessionID.hex(),
            kind="datagram",
            side=self.side,
            state=self.state,
            local=_text((self.host.host, self.host.port)),
            peer=_text(conn.path.address),
            age=now - self.createdAt,
            silentFor=now - conn.heardAt,
            generation=conn.generation,
            handoffs=conn.moves,
        )


def _options(options: Optional[SessionOptions], datagramOptions: Optional[DatagramOptions]) -> tuple[SessionOptions, DatagramOptions]:
    return options or SessionOptions(), datagramOptions or DatagramOptions()


@implementer(IListeningPort)
class DatagramPort:
    """
    A server's datagram sessions on one UDP port.

    @ivar sessions: the open sessions, by session id.
    @ivar unknown: protected datagrams that named no open session.
    """

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        port: int,
        factory: IProtocolFactory,
        interface: str = "",
        options: Optional[SessionOptions] = None,
        datagramOptions: Optional[DatagramOptions] = None,
        policy: Optional[IMigratePolicy] = None,
        monitor: Any = None,
        observers: Iterable[Any] = (),
    ) -> None:
        self.reactor = reactor
        self.port = port
        self.factory = factory
        self.interface = interface
        self.options, self.datagramOptions = _options(options, datagramOptions)
        self.policy = policy if policy is not None else DefaultPolicy(self.options)
        self.observers = list(observers)
        self.sessions: dict[bytes, _Session] = {}
        self.unknown = 0
        self._responder = HandshakeResponder(self.options.maxPending, self.options.handshakeTimeout)
        self._socket: Optional[DatagramSocket] = None
        self._lease = _lease(reactor, monitor)
        self._monitoring = False

    def logPrefix(self) -> str:
        return "DatagramPort"

    def startListening(self) -> None:
        """
        Bind the socket and start serving.

        @raise twisted.internet.error.CannotListenError: the bind failed.
        """
        from twisted.internet.error import CannotListenError

        family = familyOf(self.interface) if self.interface else socket.AF_INET
        try:
            self._socket = DatagramSocket(self.reactor, self._received, self.interface, self.port, family)
        except OSError as e:
            raise CannotListenError(self.interface, self.port, e)
        self.port = self._socket.getHost().port
        self.factory.doStart()
        self._socket.startReading()
        if self._lease is not None:
            self._monitoring = self._lease.acquire(self._connectivity)
        self.log.info(
            "datagram sessions on {host}:{port}", host=self.interface or "0.0.0.0", port=self.port
        )

    def getHost(self) -> IPv4Address | IPv6Address:
        assert self._socket is not None
        return self._socket.getHost()

    def _received(self, datagram: bytes, address: Address, local: Optional[str]) -> None:
        if not datagram:
            return
        first = datagram[0]
        if first == _dgram.PROTECTED:
            session = self.sessions.get(datagram[1 : 1 + _dgram.SID_SIZE])
            if session is not None:
                session.received(datagram, address, local)
            else:
                self.unknown += 1
        elif first == _dgram.HANDSHAKE:
            self._handshake(datagram, address, local)

    def _busy(self) -> Optional[str]:
        if len(self.sessions) >= self.options.maxSessions:
            return "server at capacity"
        return None

    def _handshake(self, datagram: bytes, address: Address, local: Optional[str]) -> None:
        assert self._socket is not None
        now = self.reactor.seconds()
        answer = self._responder.receive(datagram, now, self._busy)
        if answer.reply is not None:
            self._socket.send(answer.reply, address, local)
        if answer.opened is not None:
            self._open(answer.opened.sessionID, answer.opened.key, address, local, now)

    def _acceptMove(self, old: Any, new: Any) -> bool:
        return bool(self.policy.acceptResumeFrom(makeAddress(old), makeAddress(new)))

    def _open(self, sid: bytes, key: bytes, address: Address, local: Optional[str], now: float) -> None:
        assert self._socket is not None
        conn = DatagramConnection(
            False, sid, key, address, now, self.policy,
            self.datagramOptions.sendRate, self.datagramOptions.sendBurst,
            local=local, acceptMove=self._acceptMove,
        )
        protocol = self.factory.buildProtocol(makeAddress(address))
        if protocol is None:
            conn.close("refused by the application", now)
            for datagram, to, source in conn.datagramsToSend():
                self._socket.send(datagram, to, source)
            return
        session = _Session(
            self.reactor, self._socket, conn, protocol,  # type: ignore[arg-type]
            Upcalls(self.observers), "server", self.datagramOptions, self._ended, self.port,
        )
        self.sessions[sid] = session
        self.log.info(
            "datagram session {sid} opened from {peer}", sid=sid.hex(), peer=_text(address)
        )
        session.start()

    def _ended(self, session: _Session) -> None:
        self.sessions.pop(session.conn.sessionID, None)

    def _connectivity(self, event: ConnectivityEvent) -> None:
        if self._lease is None:
            return
        ours = [
            a for a in self._lease.addresses()
            if (a.family == 6) == (self._socket is not None and self._socket.family == socket.AF_INET6)
        ]
        newest = event.address if event.kind == ConnectivityEvent.ADDRESS_ADDED else None
        for session in list(self.sessions.values()):
            session.advertise(ours, newest)

    def stopListening(self) -> "Deferred[None]":
        """
        End every session (telling each peer), close the socket.
        """
        for session in list(self.sessions.values()):
            session.closeNow("server stopped")
        if self._socket is not None:
            self._socket.close()
            self._socket = None
            self.factory.doStop()
        if self._monitoring and self._lease is not None:
            self._monitoring = False
            self._lease.release(self._connectivity)
        return succeed(None)

    loseConnection = stopListening


def listenDatagram(
    reactor: Any,
    port: int,
    factory: IProtocolFactory,
    interface: str = "",
    options: Optional[SessionOptions] = None,
    datagramOptions: Optional[DatagramOptions] = None,
    policy: Optional[IMigratePolicy] = None,
    monitor: Any = None,
    observers: Iterable[Any] = (),
) -> DatagramPort:
    """
    Serve datagram sessions on UDP C{port}.

    @param factory: builds each session's C{DatagramProtocol} with
        C{buildProtocol(peerAddress)} (e.g. C{Factory.forProtocol(P)});
        C{None} refuses the session.
    @param interface: the address to bind (C{""}: every IPv4 address;
        C{"::"}: every address), answering each peer from the address it
        reached.
    @param options: the timing and limits shared with stream sessions
        (C{keepaliveInterval}, C{sessionTimeout}, C{maxSessions},
        C{maxPending}, C{handshakeTimeout}, ...).
    @param policy: the sessions' L{IMigratePolicy} (default: a
        L{DefaultPolicy} of C{options}); C{acceptResumeFrom} decides
        whether a session follows its client to a new host.
    @param monitor: an L{IConnectivityMonitor} whose events make the server
        advertise its addresses to its clients (server moves), or C{None}.
    @param observers: listeners of every session's upcalls.
    @return: the listening L{DatagramPort}.
    @raise twisted.internet.error.CannotListenError: the port could not be
        bound.
    """
    listening = DatagramPort(
        reactor, port, factory, interface, options, datagramOptions, policy, monitor, observers
    )
    listening.startListening()
    return listening


class _Connector:
    """
    A client's opening of one datagram session.
    """

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        address: Address,
        protocol: AbstractDatagramProtocol,
        interface: str,
        bindPort: int,
        options: SessionOptions,
        datagramOptions: DatagramOptions,
        policy: IMigratePolicy,
        lease: Optional[MonitorLease],
        observers: list[Any],
        locator: Optional[ILocator],
        peerName: Optional[str],
    ) -> None:
        self.reactor = reactor
        self.address = address
        self.protocol = protocol
        self.options = options
        self.datagramOptions = datagramOptions
        self.policy = policy
        self.lease = lease
        self.observers = observers
        self.locator = locator
        self.peerName = peerName
        self.deferred: Deferred[AbstractDatagramProtocol] = Deferred(self._cancel)
        self.session: Optional[_Session] = None
        self._call: Optional[IDelayedCall] = None
        self._monitoring = False
        self._shutdown: Any = None
        self.socket = DatagramSocket(
            reactor, self._received, interface, bindPort, familyOf(address[0]), answerFromReached=False
        )
        self.opening = ClientOpening(reactor.seconds(), options.connectTimeout)

    def start(self) -> None:
        self.socket.startReading()
        self.socket.send(self.opening.first(), self.address)
        self._arm()

    def _arm(self) -> None:
        when = self.opening.nextTimer()
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        if when is not None:
            self._call = self.reactor.callLater(max(0.0, when - self.reactor.seconds()), self._fire)

    def _fire(self) -> None:
        self._call = None
        try:
            again = self.opening.handleTimer(self.reactor.seconds())
        except HandshakeFailed as e:
            self._fail(HandshakeError("datagram session to %s: %s" % (_text(self.address), e.reason)))
            return
        if again is not None:
            self.socket.send(again, self.address)
        self._arm()

    def _fail(self, error: Exception) -> None:
        self._stop()
        self.deferred.errback(Failure(error))

    def _stop(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        self.socket.close()

    def _cancel(self, d: Deferred[Any]) -> None:
        if self.session is None:
            self._stop()

    def _received(self, datagram: bytes, address: Address, local: Optional[str]) -> None:
        session = self.session
        if session is not None:
            if datagram and datagram[0] == _dgram.PROTECTED:
                session.received(datagram, address, local)
            return
        if not datagram or datagram[0] != _dgram.HANDSHAKE:
            return
        try:
            reply = self.opening.receive(datagram, self.reactor.seconds())
        except HandshakeFailed as e:
            self._fail(HandshakeError("datagram session to %s: %s" % (_text(self.address), e.reason), e.code))
            return
        if reply is not None:
            self.socket.send(reply, address)
        if self.opening.keys is not None:
            self._opened(address)
        else:
            self._arm()

    def _opened(self, address: Address) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        keys = self.opening.keys
        assert keys is not None
        now = self.reactor.seconds()
        conn = DatagramConnection(
            True, keys.sessionID, keys.key, address, now, self.policy,
            self.datagramOptions.sendRate, self.datagramOptions.sendBurst,
        )
        session = _Session(
            self.reactor, self.socket, conn, self.protocol, Upcalls(self.observers),
            "client", self.datagramOptions, self._ended, self.address[1],
        )
        session.locator = self.locator
        session.peerName = self.peerName
        self.session = session
        if self.lease is not None:
            self._monitoring = self.lease.acquire(session.connectivityChanged)
        if IReactorCore.providedBy(self.reactor):
            self._shutdown = self.reactor.addSystemEventTrigger(
                "before", "shutdown", session.closeNow, "reactor shutting down"
            )
        self.log.info(
            "datagram session {sid} open to {peer}", sid=keys.sessionID.hex(), peer=_text(address)
        )
        session.start()
        self.deferred.callback(self.protocol)

    def _ended(self, session: _Session) -> None:
        if self._monitoring and self.lease is not None:
            self._monitoring = False
            self.lease.release(session.connectivityChanged)
        if self._shutdown is not None:
            self.reactor.removeSystemEventTrigger(self._shutdown)
            self._shutdown = None
        self.socket.close()


def connectDatagram(
    reactor: Any,
    host: str,
    port: int,
    protocol: AbstractDatagramProtocol,
    interface: str = "",
    bindPort: int = 0,
    options: Optional[SessionOptions] = None,
    datagramOptions: Optional[DatagramOptions] = None,
    policy: Optional[IMigratePolicy] = None,
    monitor: Any = "auto",
    observers: Iterable[Any] = (),
    locator: Optional[ILocator] = None,
) -> "Deferred[AbstractDatagramProtocol]":
    """
    Open a datagram session to C{host}:C{port} for C{protocol}.

    @param host: an IP address, or a name (looked up once through the
        reactor's resolver; with a C{locator}, looked up again there
        whenever the session is suspended).
    @param interface: the local address to bind (C{""}: any).
    @param bindPort: the local port (C{0}: any).
    @param policy: the session's L{IMigratePolicy} (default: a
        L{DefaultPolicy} of C{options}).
    @param monitor: an L{IConnectivityMonitor}, C{"auto"} (the platform's,
        when C{reactor} is a real reactor) or C{None}.
    @param observers: listeners of the session's upcalls.
    @param locator: an L{ILocator} where C{host} is looked up again while
        the session is suspended (the server may have moved).
    @return: a Deferred that fires with C{protocol} once the session is
        open and its C{startProtocol} ran, or fails with
        L{HandshakeError}.  Cancelling it before then abandons the opening.
    """
    sessionOptions, dgOptions = _options(options, datagramOptions)
    chosen = policy if policy is not None else DefaultPolicy(sessionOptions)
    lease = _lease(reactor, monitor)
    peerName = None if (isIPAddress(host) or isIPv6Address(host)) else host

    def go(address: str) -> "Deferred[AbstractDatagramProtocol]":
        connector = _Connector(
            reactor, (address, port), protocol, interface, bindPort, sessionOptions,
            dgOptions, chosen, lease, list(observers), locator, peerName,
        )
        connector.start()
        return connector.deferred

    if peerName is None:
        try:
            return go(host)
        except OSError as e:
            return _failed(e)
    d: Deferred[Any] = reactor.resolve(host)
    return d.addCallback(go)


def _failed(error: Exception) -> "Deferred[Any]":
    d: Deferred[Any] = Deferred()
    d.errback(Failure(error))
    return d
