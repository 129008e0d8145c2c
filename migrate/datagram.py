# -*- test-case-name: tests.test_datagram,tests.test_datagram_resume -*-
"""
Datagram sessions: Twisted C{DatagramProtocol} applications that roam.

A datagram session joins two C{DatagramProtocol} applications through an
authenticated, encrypted session that follows either end wherever it
goes: a NAT rebinding, a new address, a link lost for a while, a server
that restarted from its session store.  The application sees an
C{IUDPTransport}-like transport whose C{write} goes to its peer, wherever
it is now.  Datagram semantics are kept: no retransmission, no ordering.

Server::

    from twisted.internet.protocol import Factory
    port = listenDatagram(reactor, 7001, Factory.forProtocol(MyDatagramProtocol))

Client::

    d = connectDatagram(reactor, "server.example", 7001, MyDatagramProtocol())
    # fires with the protocol once the session is open

The wire format, the semantics and the security model are in
C{docs/datagram.md}.  The protocol logic is sans-IO (L{migrate._sansio.dgram},
L{migrate._sansio.dgram_conn}, L{migrate._sansio.dgram_handshake}); this module is the
Twisted driver: sockets, one timer per session, the connectivity monitor,
policy, upcalls, the session store and the locator.
"""

from __future__ import annotations

import socket
import weakref
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Iterable, Optional, Sequence, Union

from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, gatherResults, succeed
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

from ._sansio import dgram as _dgram, dgram_conn as _dgram_conn, wire as _wire
from ._advertise import AdvertisePolicy, formatHostPort
from .store import logStoreFailure
from ._sansio.dgram_conn import Checkpoint, DatagramConnection, decodeCheckpoint, encodeCheckpoint, hostPort
from ._sansio.dgram_handshake import ClientOpening, ClientResuming, HandshakeResponder, ResumeAsk
from ._dgram_socket import DatagramSocket, familyOf, makeAddress
from ._sansio.handshake import HandshakeFailed
from ._options import SessionOptions
from ._upcalls import Upcalls
from .errors import HandshakeError, SessionExpired
from .interfaces import (
    ConnectivityEvent,
    CorruptRecord,
    IConnectivityMonitor,
    IDatagramSession,
    ILocator,
    IMigratable,
    IMigratePolicy,
    ISessionStore,
    LocalAddress,
    SessionRecord,
)
from .locate import locatorList
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
#: Datagrams kept for a hibernated session while its checkpoint is read.
_WAKE_QUEUE = 16
#: Seconds during which datagrams for a hibernated session are dropped
#: unread after one that was not authentic (so that forged datagrams cannot
#: make the server read its store at their rate).
_WAKE_BACKOFF = 1.0
#: What a server's sessions are told when it stops for good.
_SHUTDOWN_NOTICE = "server shut down"
#: Seconds a client told "busy" waits, at least, before resuming again.
_BUSY_RETRY = 1.0


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


def _both(first: object, second: object) -> object:
    """
    Two answers to "may this go ahead?" (C{False}, anything else, or a
    Deferred of either) as one.
    """
    if first is False or second is False:
        return False
    pending = [d for d in (first, second) if isinstance(d, Deferred)]
    if not pending:
        return True
    return gatherResults(pending).addCallback(lambda answers: all(a is not False for a in answers))


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
        silent too long), C{"hibernated"} (a server's session checkpointed
        into its store, its application kept in memory) or C{"closed"}.
        """
        return self._session.state

    @property
    def generation(self) -> int:
        """
        The key generation: 0 for an opened session, one more (at least) on
        each resume.
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
    @ivar state: C{"attached"}, C{"detached"}, C{"hibernated"} or
        C{"closed"}.
    @ivar endReason: why the session ended, once it has.
    @ivar endNotice: what this side told its peer when it ended it, if
        anything.
    @ivar resuming: a client's resume in progress.
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
        self.endReason: Optional[BaseException] = None
        self.endNotice: Optional[str] = None
        self._call: Optional[IDelayedCall] = None
        self._callAt = 0.0
        self._waiters: list[Deferred[None]] = []
        self._ending = False
        self._droppedLoggedAt: Optional[float] = None
        self._lastAdvert: list[str] = []
        #: Server: called when the session is due to hibernate.
        self.onHibernate: Optional[Callable[[_Session], object]] = None
        #: Server: called when the session is suspended (detached).
        self.onSuspend: Optional[Callable[[_Session], object]] = None
        # Client side: where to look the server up while suspended, and
        # how to resume.
        self.locator: Optional[ILocator] = None
        self.peerName: Optional[str] = None
        self._lookedAt: Optional[float] = None
        self.resuming: Optional[ClientResuming] = None
        self.resumeTimeout = 5.0
        self._triedGeneration = conn.generation
        self._probesSeen = 0
        self._resumeAfter = 0.0
        #: Server: the session hibernated and its application was let go of
        #: (its checkpoint stands for it; this object is not used again).
        self.released = False

    def logPrefix(self) -> str:
        return "DatagramSession,%s" % (self.side,)

    @property
    def sid(self) -> str:
        return self.conn.sessionID.hex()

    def useSocket(self, sock: DatagramSocket) -> None:
        """
        Send through C{sock} from now on (a client whose socket had to be
        replaced: the peer follows its first datagram from the new one).
        """
        self.socket = sock
        self._send = sock.send
        self.host = sock.getHost()

    def _choosePolicy(self) -> None:
        for choice in self.upcalls.notify("choosePolicy", self.transport):
            if IMigratePolicy.providedBy(choice):
                self.conn.policy = choice
                break

    def start(self) -> None:
        """
        Give the application its transport (C{startProtocol} runs).
        """
        upcalls = self.upcalls
        upcalls.app = self.protocol
        self._choosePolicy()
        try:
            self.protocol.makeConnection(self.transport)
        except Exception:
            self.log.failure("{side} datagram application failed to start", side=self.side)
        upcalls.notify("sessionEstablished", self.transport)
        self._arm()

    def restored(self, appState: bytes) -> bool:
        """
        Give a rebuilt migratable application its transport and its saved
        state (it hears C{restoreMigrationState}, not C{startProtocol}).

        @return: whether the application took its state back.
        """
        protocol = self.protocol
        upcalls = self.upcalls
        upcalls.app = protocol
        self._choosePolicy()
        protocol.transport = self.transport
        protocol.numPorts = 1
        try:
            IMigratable(protocol).restoreMigrationState(appState)
        except Exception:
            self.log.failure("restoreMigrationState raised; the session is not restored")
            protocol.transport = None
            protocol.numPorts = 0
            return False
        self._arm()
        return True

    def revived(self, conn: DatagramConnection) -> None:
        """
        A hibernated session whose application stayed in memory is back,
        under C{conn} (restored from its checkpoint).
        """
        self.conn = conn
        self.state = "detached"
        self._lastAdvert = []
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
                sid=self.sid,
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
        sid = self.sid
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
            if self.onSuspend is not None and self.state == "detached":
                self.onSuspend(self)
        elif isinstance(event, _dgram_conn.Resumed):
            self.state = "attached"
            resuming = self.resuming
            if resuming is not None and not resuming.sentResume:
                # Heard again before our resume got anywhere: not needed.
                self.resuming = None
            self.log.info(
                "datagram session {sid} resumed after {downtime:.3f} s (generation {generation})",
                sid=sid, downtime=event.downtime, generation=self.conn.generation,
            )
            self.upcalls.notify(
                "sessionResumed",
                self.transport,
                makeAddress(event.previous),
                makeAddress(event.new),
                event.downtime,
                0,
            )
        elif isinstance(event, _dgram_conn.HibernateDue):
            if self.onHibernate is not None:
                self.onHibernate(self)
        elif isinstance(event, _dgram_conn.Ended):
            error: BaseException
            if event.how in ("expired", "refused"):
                error = SessionExpired(event.reason)
            else:
                error = ConnectionDone(event.reason)
            if event.how == "closed":
                # The application's own call: end in the next turn.
                self._ending = True
                self.clock.callLater(0, self._finish, Failure(error))
            else:
                self._finish(Failure(error))

    def _arm(self) -> None:
        self.conn.timerMoved = False
        when = self.conn.nextTimer()
        resuming = self.resuming
        if resuming is not None:
            also = resuming.nextTimer()
            if also is not None and (when is None or also < when):
                when = also
        call = self._call
        if when is None or self.state in ("closed", "hibernated"):
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
        conn = self.conn
        conn.handleTimer(now)
        self._afterControl()
        if self.state in ("closed", "hibernated"):
            return
        if self.resuming is not None:
            self._resumeTimer(now)
        if conn.suspended:
            self._lookup()
            if conn.probes > self._probesSeen:
                self._probesSeen = conn.probes
                self._startResume(now)
        self._arm()

    # Client: resuming.

    def _startResume(self, now: float) -> None:
        """
        Client, suspended, on a probe round: unless one is in progress, try
        to resume (the server may have restarted, or hibernated the
        session, and no longer know it by its packets alone).
        """
        if self.side != "client" or self.resuming is not None or now < self._resumeAfter:
            return
        conn = self.conn
        self._triedGeneration = generation = max(conn.generation, self._triedGeneration) + 1
        if generation > _wire.MAX_GENERATION:
            return
        self.resuming = ClientResuming(now, self.resumeTimeout, conn.sessionID, conn.key, generation)
        self._send(self.resuming.first(), conn.path.address, None)

    def _resumeTimer(self, now: float) -> None:
        resuming = self.resuming
        assert resuming is not None
        try:
            again = resuming.handleTimer(now)
        except HandshakeFailed as e:
            self.resuming = None
            self.log.info("datagram session {sid}: resume attempt {why}", sid=self.sid, why=e.reason)
            if resuming.sentResume:
                # The server may have accepted it (and changed keys) with
                # its answer lost: try again at once, with a higher
                # generation, rather than wait to be suspended.
                self._startResume(now)
            return
        if again is not None:
            self._send(again, self.conn.path.address, None)

    def handshakeReceived(self, datagram: bytes, address: Address) -> None:
        """
        Client: a handshake datagram arrived, for our resume if any.
        """
        resuming = self.resuming
        if resuming is None or self.conn.ended is not None:
            return
        now = self.clock.seconds()
        try:
            reply = resuming.receive(datagram, now)
        except HandshakeFailed as e:
            self._resumeRefused(e)
            return
        if reply is not None:
            self._send(reply, address, None)
        if resuming.accepted:
            self.resuming = None
            self.conn.rekey(resuming.generation, now)
            # Authentic at once under the new keys, so that the server
            # hears where we are.
            self.conn.ping(now)
        self._afterControl()
        self._arm()

    def _resumeRefused(self, error: HandshakeFailed) -> None:
        self.resuming = None
        if error.code in (_wire.REJECT_UNKNOWN_SESSION, _wire.REJECT_REFUSED) and not self.conn.candidates:
            # The server no longer knows the session (a restart without its
            # store, or it expired there), or will not have it back.  (A
            # refusal is not signed; with a locator, another server may be
            # the one that knows it: we try again.)
            self.log.info("datagram session {sid}: server refused the resume: {reason}",
                          sid=self.sid, reason=error.reason)
            self.conn.abandon("resume refused: %s" % (error.reason,))
            self._afterControl()
            return
        if error.code == _wire.REJECT_BUSY:
            self._resumeAfter = self.clock.seconds() + max(_BUSY_RETRY, error.retryAfter)
        self.log.info("datagram session {sid}: resume {reason}", sid=self.sid, reason=error.reason)
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

    def advertise(
        self,
        ours: Sequence[LocalAddress],
        newest: Optional[str],
        policy: AdvertisePolicy = AdvertisePolicy(),
    ) -> None:
        """
        Server: tell the client where we can be reached now (when that
        changed), from the preferred address.
        """
        if self.conn.ended is not None:
            return
        reached = self.conn.path.local or self.host.host
        addresses = policy.addresses(
            reached, self.port, [a.address for a in ours], {a.address: a.interface for a in ours}, newest
        )
        if not addresses or addresses == self._lastAdvert:
            return
        self._lastAdvert = addresses
        preferred = hostPort(addresses[0])
        local = preferred[0] if preferred is not None and self.socket.pktinfo else None
        flags = _wire.ADDRESSES_CONFIGURED if policy.mode == "configured" else 0
        self.conn.advertise(addresses, flags, self.clock.seconds(), local)
        self._afterControl()

    def close(self, reason: str) -> None:
        """
        End the session at the application's request (its C{stopProtocol}
        runs in the next reactor turn).
        """
        if self.state == "hibernated":
            # Checkpointed: the peer cannot be told now (it learns that the
            # session is gone when it resumes).
            self._ending = True
            self.clock.callLater(0, self._finish, Failure(ConnectionDone(reason)))
        elif self.conn.ended is None:
            self.endNotice = reason
            self.conn.close(reason, self.clock.seconds())
            self._afterControl()

    def closeNow(self, reason: str, error: Optional[BaseException] = None) -> None:
        """
        End the session at once (its owner stops, or the operator expires
        it), telling the peer C{reason}.

        @param error: what the application hears (default:
            C{ConnectionDone(reason)}).
        """
        if self.conn.ended is None:
            self.endNotice = reason
            self.conn.close(reason, self.clock.seconds())
            for datagram, address, local in self.conn.datagramsToSend():
                self.socket.send(datagram, address, local)
        self._finish(Failure(error if error is not None else ConnectionDone(reason)))

    def expire(self, reason: str) -> None:
        """
        End the session now with L{SessionExpired}, telling the peer.
        """
        self.closeNow(reason, SessionExpired(reason))

    def hibernated(self) -> None:
        """
        The server checkpointed this session: no timer, no resume attempt;
        its application (kept) hears nothing.
        """
        self.state = "hibernated"
        self.resuming = None
        if self._call is not None:
            self._call.cancel()
            self._call = None

    def _finish(self, failure: Failure) -> None:
        if self.state == "closed":
            return
        self.state = "closed"
        self.resuming = None
        self.endReason = failure.value
        if self._call is not None:
            self._call.cancel()
            self._call = None
        self.conn.freeze()
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

    def expiresAt(self) -> Optional[float]:
        """
        When the session expires unless its peer is heard, while it is
        suspended; C{None} otherwise.
        """
        if not self.conn.suspended or self.state == "closed":
            return None
        return self.conn.heardAt + self.conn.policy.expireAfter()

    def snapshot(self) -> dict[str, object]:
        now = self.clock.seconds()
        conn = self.conn
        suspendedAt = conn.suspendedAt
        expiresAt = self.expiresAt()
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
            detachedFor=now - suspendedAt if suspendedAt is not None else None,
            expiresAt=expiresAt,
            expiresIn=expiresAt - now if expiresAt is not None else None,
            generation=conn.generation,
            handoffs=conn.moves,
        )


def _options(options: Optional[SessionOptions], datagramOptions: Optional[DatagramOptions]) -> tuple[SessionOptions, DatagramOptions]:
    return options or SessionOptions(), datagramOptions or DatagramOptions()


@dataclass
class _Hibernated:
    """
    A server's hibernated datagram session.

    @ivar record: its checkpoint while it is being written to the store (or
        could not be); C{None} once the store holds it (or, for a session
        found in the store at start, before it is read).
    @ivar session: the session with its application, when the application
        is not migratable and stays in memory; else C{None}.
    @ivar summary: what the live view shows of it.
    """

    sessionID: bytes
    expiresAt: float
    record: Optional[SessionRecord] = None
    session: Optional[_Session] = None
    summary: dict[str, object] = field(default_factory=dict)
    #: When a datagram for it last failed to verify.
    refusedAt: Optional[float] = None


@dataclass
class _Restoring:
    """
    A hibernated session whose checkpoint is being read (or its deletion
    awaited): the datagrams that arrived for it meanwhile.
    """

    datagrams: list[tuple[bytes, Address, Optional[str]]]


class _Publisher:
    """
    Publishes a server's addresses to its locators under one name: when
    they change, and every C{republishInterval()} of its policy.
    """

    log = Logger()

    def __init__(self, clock: IReactorTime, locators: list[ILocator], name: str, policy: IMigratePolicy) -> None:
        self.clock = clock
        self.locators = locators
        self.name = name
        self.policy = policy
        self.addresses: list[str] = []
        self._call: Optional[IDelayedCall] = None

    def publish(self, addresses: list[str]) -> None:
        """
        Publish C{addresses} (preferred first) now, and again later.
        """
        self.addresses = list(addresses)
        self._again()

    def _again(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        interval = self.policy.republishInterval()
        if interval is not None:
            self._call = self.clock.callLater(interval, self._again)
        order = self.addresses
        if not order:
            return
        name = self.name
        for locator in self.policy.chooseLocators(self.locators):
            locator.publish(name, order).addCallbacks(
                lambda _: self.log.info("published {name} at {addresses}", name=name, addresses=order),
                lambda f: self.log.warn(
                    "could not publish {name}: {reason}", name=name, reason=f.getErrorMessage()
                ),
            )

    def stop(self) -> None:
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()


@implementer(IListeningPort)
class DatagramPort:
    """
    A server's datagram sessions on one UDP port.

    @ivar sessions: the open sessions, by session id.
    @ivar hibernated: the hibernated sessions, by session id: checkpointed
        into C{store} (those whose application is not migratable keep it
        in memory), or found there when the port started.
    @ivar unknown: protected datagrams that named no open session.
    @ivar store: where sessions hibernate, or C{None}.
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
        store: Optional[ISessionStore] = None,
        locator: Union[ILocator, Sequence[ILocator], None] = None,
        publishName: Optional[str] = None,
        advertise: Union[str, AdvertisePolicy, None] = None,
    ) -> None:
        self.reactor = reactor
        self.port = port
        self.factory = factory
        self.interface = interface
        self.options, self.datagramOptions = _options(options, datagramOptions)
        self.policy = policy if policy is not None else DefaultPolicy(self.options)
        self.observers = list(observers)
        self.store = store
        self.sessions: dict[bytes, _Session] = {}
        self.hibernated: dict[bytes, _Hibernated] = {}
        self.unknown = 0
        self.advertisePolicy = (
            advertise if isinstance(advertise, AdvertisePolicy) else AdvertisePolicy.parse(advertise)
        )
        self.locators: list[ILocator] = locatorList(locator)
        self.publishName = publishName
        self._publisher: Optional[_Publisher] = None
        self._responder = HandshakeResponder(self.options.maxPending, self.options.handshakeTimeout)
        self._socket: Optional[DatagramSocket] = None
        self._lease = _lease(reactor, monitor)
        self._monitoring = False
        self._ours: list[LocalAddress] = []
        self._preferred: Optional[str] = None
        self._restoring: dict[bytes, _Restoring] = {}
        self._purgeCall: Optional[IDelayedCall] = None

    def logPrefix(self) -> str:
        return "DatagramPort"

    def addObserver(self, observer: object) -> None:
        """
        Tell C{observer} (any object with some L{IMigrateUpcalls} methods)
        about every session opened or restored from now on.
        """
        self.observers.append(observer)

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
        self._ours = self._ourAddresses()
        if self.locators and self.publishName:
            self._publisher = _Publisher(self.reactor, self.locators, self.publishName, self.policy)
            addresses = self._published()
            if not addresses:
                self.log.warn(
                    "datagram port: nothing to publish as {name} (bound to every address, "
                    "and no connectivity monitor to list them)",
                    name=self.publishName,
                )
            self._publisher.publish(addresses)
        if self.store is not None:
            self._purgeCall = self.reactor.callLater(self.options.purgeInterval, self._purge)
            self.store.list("server").addCallbacks(self._listed, self._storeError,
                                                   errbackArgs=("cannot list the store",))
        self.log.info(
            "datagram sessions on {host}:{port}", host=self.interface or "0.0.0.0", port=self.port
        )

    def getHost(self) -> IPv4Address | IPv6Address:
        assert self._socket is not None
        return self._socket.getHost()

    # Where we are.

    def _ourAddresses(self) -> list[LocalAddress]:
        """
        This host's addresses of the socket's family, from the monitor
        (a socket bound to one address: that one only).
        """
        if self._socket is None:
            return []
        six = self._socket.family == socket.AF_INET6
        if self.interface not in ("", "0.0.0.0", "::"):
            return [LocalAddress("", self.interface, 6 if six else 4)]
        if self._lease is None or not self._monitoring:
            return []
        return [a for a in self._lease.addresses() if (a.family == 6) == six]

    def _published(self) -> list[str]:
        """
        The addresses to publish, preferred first.
        """
        order = [self._preferred] if self._preferred is not None else []
        return order + [a.address for a in self._ours if a.address not in order]

    def _connectivity(self, event: ConnectivityEvent) -> None:
        if self._lease is None:
            return
        before = {a.address for a in self._ours}
        self._ours = self._ourAddresses()
        now = {a.address for a in self._ours}
        if event.kind == ConnectivityEvent.ADDRESS_ADDED and event.address in now:
            self._preferred = event.address
        elif self._preferred not in now:
            self._preferred = None
        if self._publisher is not None and before != now:
            self._publisher.publish(self._published())
        newest = event.address if event.kind == ConnectivityEvent.ADDRESS_ADDED else None
        for session in list(self.sessions.values()):
            session.advertise(self._ours, newest, self.advertisePolicy)

    def _advertiseTo(self, session: _Session) -> None:
        """
        Tell a session's client where we can be reached (at its opening,
        and after it was restored or resumed), if we know.
        """
        if (self._monitoring and self._ours) or self.advertisePolicy.mode == "configured":
            session.advertise(self._ours, self._preferred, self.advertisePolicy)

    # Datagrams.

    def _received(self, datagram: bytes, address: Address, local: Optional[str]) -> None:
        if not datagram:
            return
        first = datagram[0]
        if first == _dgram.PROTECTED:
            sid = datagram[1 : 1 + _dgram.SID_SIZE]
            session = self.sessions.get(sid)
            if session is not None:
                session.received(datagram, address, local)
            elif sid in self.hibernated:
                self._wake(sid, datagram, address, local)
            else:
                self.unknown += 1
        elif first == _dgram.HANDSHAKE:
            self._handshake(datagram, address, local)

    def _busy(self) -> Optional[str]:
        if len(self.sessions) >= self.options.maxSessions:
            return "server at capacity"
        return None

    def _full(self) -> bool:
        """
        Whether bringing back a hibernated session would take the port
        past C{maxSessions} (counting those being brought back).
        """
        return len(self.sessions) + len(self._restoring) >= self.options.maxSessions

    def _handshake(self, datagram: bytes, address: Address, local: Optional[str]) -> None:
        assert self._socket is not None
        now = self.reactor.seconds()
        answer = self._responder.receive(datagram, now, self._busy)
        if answer.reply is not None:
            self._socket.send(answer.reply, address, local)
        if answer.opened is not None:
            self._open(answer.opened.sessionID, answer.opened.key, address, local, now)
        if answer.resume is not None:
            self._resume(answer.resume, address, local)

    def _acceptMove(self, old: Any, new: Any) -> bool:
        return bool(self.policy.acceptResumeFrom(makeAddress(old), makeAddress(new)))

    def _adopt(self, session: _Session) -> None:
        session.conn.canHibernate = self.store is not None
        session.onHibernate = self.hibernate
        session.onSuspend = self._suspended
        self.sessions[session.conn.sessionID] = session

    def _suspended(self, session: _Session) -> None:
        """
        A session was suspended.  Detached sessions are bounded over the
        whole port, never per peer address (many clients share one behind
        a NAT): past C{maxDetached}, the longest-suspended ones hibernate
        into the store, or without a store end, logged, with the reason
        "server at capacity".
        """
        detached = [s for s in self.sessions.values() if s.state == "detached"]
        excess = len(detached) - self.options.maxDetached
        if excess <= 0:
            return
        detached.sort(key=lambda s: s.conn.suspendedAt or 0.0)
        for oldest in detached[:excess]:
            if self.store is not None:
                self.hibernate(oldest)
                continue
            self.log.warn(
                "datagram session {sid} ended: server at capacity (more than {n} detached sessions)",
                sid=oldest.conn.sessionID.hex(), n=self.options.maxDetached, event="capacity",
            )
            oldest.expire("server at capacity")

    def _newSession(self, conn: DatagramConnection, protocol: AbstractDatagramProtocol) -> _Session:
        assert self._socket is not None
        session = _Session(
            self.reactor, self._socket, conn, protocol,
            Upcalls(self.observers), "server", self.datagramOptions, self._ended, self.port,
        )
        self._adopt(session)
        return session

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
        session = self._newSession(conn, protocol)  # type: ignore[arg-type]
        self.log.info(
            "datagram session {sid} opened from {peer}", sid=sid.hex(), peer=_text(address)
        )
        session.start()
        self._advertiseTo(session)

    def _ended(self, session: _Session) -> None:
        sid = session.conn.sessionID
        if self.sessions.get(sid) is session:
            del self.sessions[sid]
        held = self.hibernated.get(sid)
        if held is not None and held.session is session:
            del self.hibernated[sid]
            self._deleteStored(sid)

    # Resumes.

    def _resume(self, ask: ResumeAsk, address: Address, local: Optional[str]) -> None:
        """
        A client asks to resume a session: one in memory is verified and
        rekeyed; a hibernated one (or one in the store: this server may
        have restarted) is read back first.
        """
        sid = ask.request.sessionID
        session = self.sessions.get(sid)
        if session is not None:
            self._resumeLive(ask, session, address, local)
            return
        if sid in self._restoring:
            # Being read back already: decided when the client asks again.
            self._responder.reconsider(ask)
            return
        if self.store is None and sid not in self.hibernated:
            self._refuse(ask, address, local, HandshakeFailed(_wire.REJECT_UNKNOWN_SESSION, "unknown session"))
            return
        if self._full():
            self._refuse(ask, address, local, HandshakeFailed(
                _wire.REJECT_BUSY, "server at capacity", _BUSY_RETRY))
            return
        restoring = self._restoring[sid] = _Restoring([])
        self._load(sid).addCallbacks(
            self._resumeLoaded, self._loadFailed,
            callbackArgs=(ask, restoring, address, local),
            errbackArgs=(sid, restoring, ask, address, local),
        ).addErrback(lambda f: self.log.failure("resuming a datagram session failed", f))

    def _refuse(self, ask: ResumeAsk, address: Address, local: Optional[str], error: HandshakeFailed) -> None:
        if self._socket is None:
            return
        self.log.info(
            "datagram session {sid}: resume from {peer} refused: {reason}",
            sid=ask.request.sessionID.hex(), peer=_text(address), reason=error.reason,
        )
        self._socket.send(self._responder.refuseResume(ask, error), address, local)

    def _resumeLive(self, ask: ResumeAsk, session: _Session, address: Address, local: Optional[str]) -> None:
        """
        Verify a resume of a session in memory and, if the policy, the
        observers and a migratable application agree, accept it.
        """
        conn = session.conn
        try:
            self._responder.verifyResume(ask, conn.key, conn.generation)
        except HandshakeFailed as e:
            self._refuse(ask, address, local, e)
            return
        previous, new = makeAddress(conn.path.address), makeAddress(address)
        if not self.policy.acceptResumeFrom(previous, new):
            self._refuse(ask, address, local, HandshakeFailed(
                _wire.REJECT_REFUSED, "resume from a new address refused by policy"))
            session.expire("resume from a new address refused by policy")
            return
        now = self.reactor.seconds()
        suspendedAt = conn.suspendedAt
        downtime = now - suspendedAt if suspendedAt is not None else 0.0
        decision: object = session.upcalls.decide("resumeRequested", session.transport, previous, new, downtime)
        migratable = IMigratable(session.protocol, None)
        if migratable is not None and decision is not False:
            try:
                verdict = migratable.validateResume(downtime, new)
            except Exception:
                self.log.failure("validateResume raised; refusing the resume")
                verdict = False
            decision = _both(decision, verdict)

        def decided(ok: object) -> None:
            if self._socket is None:
                return
            if session.state == "closed" or self.sessions.get(conn.sessionID) is not session:
                self._refuse(ask, address, local, HandshakeFailed(_wire.REJECT_UNKNOWN_SESSION, "unknown session"))
            elif ask.request.generation <= session.conn.generation:
                self._refuse(ask, address, local, HandshakeFailed(_wire.REJECT_STALE, "stale generation"))
            elif ok is False:
                self._refuse(ask, address, local, HandshakeFailed(
                    _wire.REJECT_REFUSED, "resume refused by the application"))
                session.expire("resume refused by the application")
            else:
                self._acceptResume(ask, session, address, local)

        if isinstance(decision, Deferred):
            decision.addCallback(decided)
        else:
            decided(decision)

    def _acceptResume(self, ask: ResumeAsk, session: _Session, address: Address, local: Optional[str]) -> None:
        assert self._socket is not None
        conn = session.conn
        self._socket.send(self._responder.acceptResume(ask, conn.key), address, local)
        conn.rekey(ask.request.generation, self.reactor.seconds(), address, local)
        self.log.info(
            "datagram session {sid} resumed from {peer} (generation {generation})",
            sid=session.sid, peer=_text(address), generation=conn.generation,
        )
        session._lastAdvert = []
        session._afterControl()
        session._arm()
        self._advertiseTo(session)

    def _resumeLoaded(
        self,
        record: Optional[SessionRecord],
        ask: ResumeAsk,
        restoring: _Restoring,
        address: Address,
        local: Optional[str],
    ) -> None:
        """
        The checkpoint of a session a client asks to resume: verify the
        request first (nothing changes for a wrong one), then take the
        checkpoint out of the store, rebuild the session, and go on as for
        one in memory.
        """
        sid = ask.request.sessionID
        if self._restoring.get(sid) is not restoring or self._socket is None:
            self._responder.reconsider(ask)
            return
        usable = self._checkRecord(sid, record)
        if usable is None:
            del self._restoring[sid]
            self._refuse(ask, address, local, HandshakeFailed(_wire.REJECT_UNKNOWN_SESSION, "unknown session"))
            return
        assert record is not None
        try:
            self._responder.verifyResume(ask, record.key, record.generation)
        except HandshakeFailed as e:
            del self._restoring[sid]
            self._refuse(ask, address, local, e)
            return
        if not self._restorable(sid, record):
            del self._restoring[sid]
            self._refuse(ask, address, local, HandshakeFailed(_wire.REJECT_UNKNOWN_SESSION, "session expired"))
            return
        conn = self._restoredConn(record, usable)

        def revived(session: Optional[_Session]) -> None:
            if session is None:
                self._refuse(ask, address, local, HandshakeFailed(
                    _wire.REJECT_UNKNOWN_SESSION, "session could not be restored"))
            else:
                self._resumeLive(ask, session, address, local)

        def unavailable(f: Failure) -> None:
            self._refuse(ask, address, local, HandshakeFailed(
                _wire.REJECT_BUSY, "session store unavailable", _BUSY_RETRY))

        self._takeOut(sid, restoring, record, conn).addCallbacks(revived, unavailable)

    # Hibernation.

    def hibernate(self, session: _Session, forRestart: bool = False) -> "Deferred[None]":
        """
        Checkpoint a suspended session into the store and let go of it: of
        its connection, its timer and (if it is migratable, L{IMigratable})
        its application, which is rebuilt from its saved state when the
        session comes back; another application stays in memory.

        The checkpoint holds the packet numbers: the session restored from
        it never sends a number it sent before under its keys (and it is
        taken out of the store before it sends anything, so that it cannot
        be restored twice); a resume gives it new keys anyway.

        @param forRestart: the server stops: checkpoint the session even if
            it is attached, and only if its application is migratable.
        @return: a Deferred that fires once the checkpoint is in the store
            (or could not be written: that is logged, and it is kept in
            memory).
        """
        store = self.store
        if store is None or session.state in ("closed", "hibernated"):
            return succeed(None)
        if not forRestart and session.state != "detached":
            return succeed(None)
        migratable = IMigratable(session.protocol, None)
        if forRestart and migratable is None:
            return succeed(None)
        session.upcalls.notify("aboutToHibernate", session.transport)
        if session.state == "closed":
            return succeed(None)
        appState: Optional[bytes] = None
        if migratable is not None:
            try:
                appState = migratable.saveMigrationState()
            except Exception:
                self.log.failure("saveMigrationState raised; keeping the application in memory")
                appState = None
            if forRestart and appState is None:
                return succeed(None)
        now = self.reactor.seconds()
        conn = session.conn
        checkpoint = conn.checkpoint(now)
        sid = conn.sessionID
        expiresAt = conn.heardAt + conn.policy.expireAfter()
        # The stream positions mean nothing here: the datagram session's own
        # state rides in the buffer, which the positions must account for.
        blob = encodeCheckpoint(checkpoint)
        record = SessionRecord(
            sessionID=sid,
            side="server",
            key=conn.key,
            generation=conn.generation,
            sent=len(blob),
            acked=0,
            received=0,
            finSent=False,
            finReceived=False,
            buffer=blob,
            peer=_text(conn.path.address),
            host=_text((conn.path.local or session.host.host, self.port)),
            createdAt=session.createdAt,
            detachedSince=checkpoint.suspendedAt,
            hibernatedAt=now,
            expiresAt=expiresAt,
            handoffs=conn.moves,
            appState=appState,
            kind="datagram",
        )
        session.hibernated()
        if self.sessions.get(sid) is session:
            del self.sessions[sid]
        kept = session if appState is None else None
        if appState is not None:
            # Nothing refers to it any more.
            session.released = True
            session.upcalls.app = None
        held = self.hibernated[sid] = _Hibernated(
            sid, expiresAt, record, kept, self._summary(record, checkpoint)
        )
        self.log.info(
            "datagram session {sid} hibernated ({kind})",
            sid=sid.hex(), kind="application kept" if kept is not None else "application dropped",
        )

        def saved(_: object) -> None:
            if self.hibernated.get(sid) is held:
                held.record = None
            self.log.info("datagram session {sid} stored", sid=sid.hex())

        return store.save(record).addCallbacks(
            saved, self._storeError, errbackArgs=("datagram session {sid}: could not write to the store",),
            errbackKeywords={"sid": sid.hex()},
        )

    def _summary(self, record: SessionRecord, checkpoint: Optional[Checkpoint]) -> dict[str, object]:
        """
        What the live view shows of a hibernated session.
        """
        summary: dict[str, object] = dict(
            id=record.sessionID.hex(),
            kind="datagram",
            side="server",
            local=record.host or None,
            peer=record.peer or None,
            createdAt=record.createdAt,
            detachedSince=record.detachedSince,
            expiresAt=record.expiresAt,
            generation=record.generation,
            handoffs=record.handoffs,
        )
        if checkpoint is not None:
            summary.update(
                bytesSent=checkpoint.bytesSent,
                bytesReceived=checkpoint.bytesReceived,
                datagramsSent=checkpoint.appSent,
                datagramsReceived=checkpoint.appReceived,
                resumes=checkpoint.resumes,
            )
        return summary

    def _listed(self, rows: list[tuple[bytes, str, float, str]]) -> None:
        """
        The store's sessions when the port started: the ones a client may
        come back to (by an authentic datagram, or a resume).
        """
        now = self.reactor.seconds()
        for sid, side, expiresAt, peer in rows:
            if sid in self.sessions or sid in self.hibernated or expiresAt <= now:
                continue
            self.hibernated[sid] = _Hibernated(
                sid, expiresAt, summary=dict(id=sid.hex(), kind="datagram", side=side, peer=peer or None,
                                             expiresAt=expiresAt)
            )

    def _load(self, sid: bytes) -> "Deferred[Optional[SessionRecord]]":
        held = self.hibernated.get(sid)
        if held is not None and held.record is not None:
            return succeed(held.record)
        if self.store is None:
            return succeed(None)
        return self.store.load(sid)

    def _checkRecord(self, sid: bytes, record: Optional[SessionRecord]) -> Optional[Checkpoint]:
        """
        The checkpoint of a datagram session's record, or C{None} (the
        session is forgotten, its kept application told) when there is
        none.  A record that is not a datagram session's (a stream session
        in a shared store) is left alone.
        """
        if record is None:
            self._lost(sid, "hibernated state lost from the store")
            return None
        if record.kind != "datagram":
            # A stream session's record in a shared store.
            self.log.info("session {sid} in the store is not a datagram session", sid=sid.hex())
            return None
        try:
            return decodeCheckpoint(record.buffer)
        except ValueError as e:
            held = self.hibernated.get(sid)
            if held is not None and held.session is None:
                del self.hibernated[sid]
            elif held is not None:
                self._lost(sid, "hibernated state unusable")
            self.log.info("session {sid} in the store: {why}", sid=sid.hex(), why=str(e))
            return None

    def _restorable(self, sid: bytes, record: SessionRecord) -> bool:
        """
        Whether a verified checkpoint can be brought back: not expired, and
        its application either kept in memory or migratable; otherwise it
        is forgotten (and deleted from the store).
        """
        held = self.hibernated.get(sid)
        if record.expiresAt <= self.reactor.seconds():
            self._lost(sid, "hibernated session expired")
            self._deleteStored(sid)
            return False
        if record.appState is None and (held is None or held.session is None):
            # Its application could not be kept across a restart.
            self.hibernated.pop(sid, None)
            self._deleteStored(sid)
            self.log.info("datagram session {sid}: hibernated without application state; expired",
                          sid=sid.hex())
            return False
        return True

    def _lost(self, sid: bytes, reason: str) -> None:
        held = self.hibernated.pop(sid, None)
        if held is not None and held.session is not None:
            held.session.closeNow(reason, SessionExpired(reason))

    def _restoredConn(self, record: SessionRecord, checkpoint: Checkpoint) -> DatagramConnection:
        return DatagramConnection.restore(
            record.sessionID, record.key, record.generation, checkpoint, self.reactor.seconds(),
            self.policy, self.datagramOptions.sendRate, self.datagramOptions.sendBurst,
            acceptMove=self._acceptMove,
        )

    def _wake(self, sid: bytes, datagram: bytes, address: Address, local: Optional[str]) -> None:
        """
        A protected datagram for a hibernated session: read its checkpoint,
        and if the datagram is authentic (and fresh), bring the session back.
        """
        restoring = self._restoring.get(sid)
        if restoring is not None:
            if len(restoring.datagrams) < _WAKE_QUEUE:
                restoring.datagrams.append((datagram, address, local))
            return
        held = self.hibernated[sid]
        now = self.reactor.seconds()
        if len(self._restoring) >= self.options.maxPending or self._full() or (
            held.refusedAt is not None and now - held.refusedAt < _WAKE_BACKOFF
        ):
            self.unknown += 1
            return
        restoring = self._restoring[sid] = _Restoring([(datagram, address, local)])
        self._load(sid).addCallbacks(
            self._wakeLoaded, self._loadFailed,
            callbackArgs=(sid, restoring), errbackArgs=(sid, restoring, None, None, None),
        ).addErrback(lambda f: self.log.failure("waking a datagram session failed", f))

    def _wakeLoaded(self, record: Optional[SessionRecord], sid: bytes, restoring: _Restoring) -> None:
        if self._restoring.get(sid) is not restoring or self._socket is None:
            return
        checkpoint = self._checkRecord(sid, record)
        if checkpoint is None:
            del self._restoring[sid]
            return
        assert record is not None
        conn = self._restoredConn(record, checkpoint)
        if not any(conn.authentic(d) for d, _, _ in restoring.datagrams):
            # Forged, replayed or garbled: nothing changes (but the store
            # is not read again for a moment).
            del self._restoring[sid]
            self.unknown += len(restoring.datagrams)
            held = self.hibernated.get(sid)
            if held is not None:
                held.refusedAt = self.reactor.seconds()
            return
        if not self._restorable(sid, record):
            del self._restoring[sid]
            return

        def revived(session: Optional[_Session]) -> None:
            if session is None:
                return
            for datagram, address, local in restoring.datagrams:
                if session.state != "closed":
                    session.received(datagram, address, local)
            if session.state != "closed":
                self._advertiseTo(session)

        self._takeOut(sid, restoring, record, conn).addCallbacks(revived, lambda f: None)

    def _loadFailed(
        self,
        failure: Failure,
        sid: bytes,
        restoring: _Restoring,
        ask: Optional[ResumeAsk],
        address: Optional[Address],
        local: Optional[str],
    ) -> None:
        """
        The store could not give a checkpoint back: a corrupt one is
        forgotten; an unavailable store leaves it for later (a client
        resuming is told to try again).
        """
        if self._restoring.get(sid) is restoring:
            del self._restoring[sid]
        error: HandshakeFailed
        if failure.check(CorruptRecord):
            self.log.error("{error}", error=str(failure.value))
            self._lost(sid, "hibernated state unusable")
            self._deleteStored(sid)
            error = HandshakeFailed(_wire.REJECT_UNKNOWN_SESSION, "session state unusable")
        else:
            self._storeError(failure, "datagram session {sid}: the store failed", sid=sid.hex())
            error = HandshakeFailed(_wire.REJECT_BUSY, "session store unavailable", _BUSY_RETRY)
        if ask is not None and address is not None:
            self._refuse(ask, address, local, error)

    def _takeOut(
        self, sid: bytes, restoring: _Restoring, record: SessionRecord, conn: DatagramConnection
    ) -> "Deferred[Optional[_Session]]":
        """
        Delete a verified checkpoint from the store, and only then (it can
        never be restored twice, so no nonce is used twice) bring its
        session back under C{conn}.

        @return: a Deferred firing with the session (C{None} if its
            application could not be rebuilt), or failing if the store
            could not delete the checkpoint (the session stays hibernated).
        """
        store = self.store
        deleted: Deferred[None] = store.delete(sid) if store is not None else succeed(None)

        def gone(_: object) -> Optional[_Session]:
            if self._restoring.get(sid) is restoring:
                del self._restoring[sid]
            if self._socket is None:
                return None
            return self._rebuild(sid, record, conn)

        def failed(f: Failure) -> Failure:
            if self._restoring.get(sid) is restoring:
                del self._restoring[sid]
            self._storeError(f, "datagram session {sid}: cannot take it out of the store", sid=sid.hex())
            return f

        return deleted.addCallbacks(gone, failed)

    def _rebuild(self, sid: bytes, record: SessionRecord, conn: DatagramConnection) -> Optional[_Session]:
        """
        A hibernated session, its checkpoint out of the store, back in
        memory (still suspended: its first authentic datagram, or the
        resume, attaches it).
        """
        assert self._socket is not None
        held = self.hibernated.pop(sid, None)
        if held is not None and held.session is not None:
            session = held.session
            session.revived(conn)
            self._adopt(session)
            self.log.info("datagram session {sid} back from hibernation", sid=sid.hex())
            return session
        peer = makeAddress(conn.path.address)
        try:
            protocol = self.factory.buildProtocol(peer)
        except Exception:
            self.log.failure("the application factory raised while restoring a datagram session")
            protocol = None
        if protocol is None or IMigratable(protocol, None) is None or record.appState is None:
            self.log.info("datagram session {sid}: its application cannot be restored", sid=sid.hex())
            return None
        session = _Session(
            self.reactor, self._socket, conn, protocol,  # type: ignore[arg-type]
            Upcalls(self.observers), "server", self.datagramOptions, self._ended, self.port,
        )
        session.createdAt = record.createdAt
        session.state = "detached"
        self._adopt(session)
        if not session.restored(record.appState):
            del self.sessions[sid]
            return None
        self.log.info("datagram session {sid} restored from the store", sid=sid.hex())
        return session

    def _deleteStored(self, sid: bytes) -> None:
        if self.store is not None:
            self.store.delete(sid).addErrback(self._storeError, "store delete failed")

    def _storeError(self, failure: Failure, what: str, **fields: Any) -> None:
        logStoreFailure(self.log, failure, what, **fields)

    def _purge(self) -> None:
        """
        Expire hibernated sessions past their time: in memory, and in the
        store.
        """
        self._purgeCall = self.reactor.callLater(self.options.purgeInterval, self._purge)
        now = self.reactor.seconds()
        for sid, held in list(self.hibernated.items()):
            if held.expiresAt <= now and sid not in self._restoring:
                self._lost(sid, "hibernated session expired")
        if self.store is not None:
            self.store.purgeExpired(now).addErrback(self._storeError, "store purge failed")

    # Management.

    def snapshots(self) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
        """
        For the live view: the open sessions' snapshots, and the
        hibernated ones' summaries (with C{hibernatedIn}: C{"memory"} for
        an application kept in memory, C{"saving"} while the checkpoint is
        being written, C{"store"}).
        """
        live = [s.snapshot() for s in self.sessions.values() if s.state != "closed"]
        hibernated = []
        for held in self.hibernated.values():
            entry = dict(held.summary)
            entry["hibernatedIn"] = (
                "memory" if held.session is not None else "saving" if held.record is not None else "store"
            )
            hibernated.append(entry)
        return live, hibernated

    def expireSession(self, sessionID: bytes) -> "Deferred[bool]":
        """
        End a session now, open or hibernated: its application (if in
        memory) hears L{SessionExpired}, its client is told (if open), its
        checkpoint is deleted.

        @return: a Deferred firing with whether there was such a session.
        """
        reason = "expired by the operator"
        session = self.sessions.get(sessionID)
        if session is not None:
            session.expire(reason)
            return succeed(True)
        if sessionID in self.hibernated:
            self._restoring.pop(sessionID, None)
            self._lost(sessionID, reason)
            self._deleteStored(sessionID)
            return succeed(True)
        return succeed(False)

    def stopListening(self) -> "Deferred[None]":
        """
        Stop serving.  With a store, every session whose application is
        migratable is checkpointed into it, its client not told (it holds
        on, and comes back to this port started again on the same store);
        every other session ends, its client told ("server shut down").
        The socket closes.

        @return: a Deferred that fires once the checkpoints are in the
            store.
        """
        saves = []
        if self.store is not None:
            for session in list(self.sessions.values()):
                saves.append(self.hibernate(session, forRestart=True))
            if saves:
                self.log.info("stopping: datagram sessions checkpointed for a restart")
        for session in list(self.sessions.values()):
            session.closeNow(_SHUTDOWN_NOTICE)
        for sid, held in list(self.hibernated.items()):
            if held.session is not None:
                # Its application cannot be rebuilt by another process.
                self._lost(sid, _SHUTDOWN_NOTICE)
                self._deleteStored(sid)
        self._restoring.clear()
        if self._socket is not None:
            self._socket.close()
            self._socket = None
            self.factory.doStop()
        if self._monitoring and self._lease is not None:
            self._monitoring = False
            self._lease.release(self._connectivity)
        if self._publisher is not None:
            self._publisher.stop()
        call, self._purgeCall = self._purgeCall, None
        if call is not None and call.active():
            call.cancel()
        return gatherResults(saves).addCallback(lambda _: None)

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
    store: Optional[ISessionStore] = None,
    locator: Union[ILocator, Sequence[ILocator], None] = None,
    publishName: Optional[str] = None,
    advertise: Union[str, AdvertisePolicy, None] = None,
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
        (C{keepaliveInterval}, C{sessionTimeout}, C{suspendAfter},
        C{maxSessions}, C{maxPending}, C{handshakeTimeout},
        C{purgeInterval}, C{republishInterval}, ...).
    @param policy: the sessions' L{IMigratePolicy} (default: a
        L{DefaultPolicy} of C{options}); C{acceptResumeFrom} decides
        whether a session follows its client to a new host.
    @param monitor: an L{IConnectivityMonitor} whose events make the server
        advertise its addresses to its clients (server moves) and publish
        them, or C{None}.
    @param observers: listeners of every session's upcalls.
    @param store: an L{ISessionStore}: a session suspended for
        C{suspendAfter} hibernates into it, and on L{DatagramPort.stopListening}
        every migratable session is checkpointed there, to come back when
        its client does (to this port, or to one started again on the same
        store).
    @param locator: where the server's addresses are published under
        C{publishName} (when they change, and every C{republishInterval}).
    @param advertise: what clients are told in-band about where the
        server can be reached: C{"auto"} (default), C{"none"}, or
        C{"HOST:PORT[,HOST:PORT...]"} (see L{AdvertisePolicy}).
    @return: the listening L{DatagramPort}.
    @raise twisted.internet.error.CannotListenError: the port could not be
        bound.
    """
    listening = DatagramPort(
        reactor, port, factory, interface, options, datagramOptions, policy, monitor, observers,
        store, locator, publishName, advertise,
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
            elif datagram and datagram[0] == _dgram.HANDSHAKE:
                session.handshakeReceived(datagram, address)
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
        session.resumeTimeout = self.options.connectTimeout
        self.session = session
        if self.lease is not None:
            self._monitoring = self.lease.acquire(session.connectivityChanged)
        if IReactorCore.providedBy(self.reactor):
            self._shutdown = self.reactor.addSystemEventTrigger(
                "before", "shutdown", session.closeNow, "client shut down"
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
