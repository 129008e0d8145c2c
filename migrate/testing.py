# -*- test-case-name: tests.test_session,tests.test_loopback -*-
"""
Helpers for testing code that uses Migrate, deterministically and in memory.

L{MemoryNetwork} connects Migrate client endpoints to a server factory
through in-memory carriers that a test can cut at any point, with in-flight
bytes lost, exactly as a dead path loses them.  Nothing moves until the test
calls L{MemoryNetwork.flush}, and every timer runs on the test's clock::

    clock = Clock()
    net = MemoryNetwork(clock)
    net.listen(MigrateServerFactory(serverAppFactory, clock))
    d = MigrateClientEndpoint(clock, net.clientEndpoint()).connect(appFactory)
    net.flush()
    ...
    net.cutAll()        # every carrier dies; bytes in flight are lost
    net.flush()         # the client reconnects and resumes
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Optional

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import (
    ConnectionAborted,
    ConnectionDone,
    ConnectionLost,
    ConnectionRefusedError,
)
from twisted.internet.interfaces import (
    IAddress,
    IProtocol,
    IProtocolFactory,
    IDelayedCall,
    IPushProducer,
    IReactorTime,
    IStreamClientEndpoint,
    ITransport,
)
from twisted.internet.protocol import (
    ClientFactory,
    Protocol,
    ServerFactory,
    connectionDone,
)
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from zope.interface import implementer

from .interfaces import ConnectivityEvent, IConnectivityMonitor, LocalAddress

__all__ = [
    "MemoryNetwork",
    "MemoryLink",
    "MemoryTransport",
    "CuttingRelay",
    "FakeMonitor",
    "sessionOf",
]


def sessionOf(protocol: Any) -> Any:
    """
    The session (or channel) behind a Migrate application protocol, for
    tests that look at its state (positions, timers, channels): what
    C{protocol.transport} delivers to.

    @raise TypeError: the protocol's transport is not a Migrate transport.
    """
    from ._transport import MigrateTransport

    transport = getattr(protocol, "transport", None)
    if not isinstance(transport, MigrateTransport):
        raise TypeError("%r has no Migrate transport" % (protocol,))
    return transport._session


@implementer(ITransport, IPushProducer)
class MemoryTransport:
    """
    One end of an in-memory connection, behaving like Twisted's TCP
    transport where Migrate relies on it: writes after C{loseConnection}
    are dropped; a producer is paused when more than C{bufferLimit} bytes
    wait to be sent and resumed when they have gone; C{pauseProducing}
    stops delivery to this end.

    @ivar outgoing: bytes written and not yet delivered.
    @ivar disconnecting: C{loseConnection} or C{abortConnection} was called.
    @ivar disconnected: the protocol heard C{connectionLost}.
    @ivar readPaused: the protocol paused reading.
    @ivar noDelay: what C{setTcpNoDelay} last set.
    """

    disconnecting = False
    disconnected = False

    def __init__(
        self, link: MemoryLink, protocol: IProtocol, host: IAddress, peer: IAddress
    ) -> None:
        self.link = link
        self.protocol = protocol
        self.host = host
        self.peer = peer
        self.outgoing: list[bytes] = []
        self.queued = 0
        self.producer: Optional[IPushProducer] = None
        self.producerPaused = False
        self.readPaused = False
        self.noDelay = False
        self.bufferLimit = link.network.bufferLimit
        self.aborted = False

    def write(self, data: bytes) -> None:
        if self.disconnecting or self.disconnected:
            return
        self.outgoing.append(data)
        self.queued += len(data)
        if (
            self.producer is not None
            and not self.producerPaused
            and self.queued > self.bufferLimit
        ):
            self.producerPaused = True
            self.producer.pauseProducing()

    def writeSequence(self, data: Iterable[bytes]) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        self.disconnecting = True

    def abortConnection(self) -> None:
        self.disconnecting = True
        self.aborted = True
        self.outgoing = []
        self.queued = 0

    def getPeer(self) -> IAddress:
        return self.peer

    def getHost(self) -> IAddress:
        return self.host

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.noDelay = enabled

    def registerProducer(self, producer: IPushProducer, streaming: bool) -> None:
        if self.producer is not None:
            raise RuntimeError("producer already registered")
        self.producer = producer
        self.producerPaused = False

    def unregisterProducer(self) -> None:
        self.producer = None

    def pauseProducing(self) -> None:
        self.readPaused = True

    def resumeProducing(self) -> None:
        self.readPaused = False

    def stopProducing(self) -> None:
        self.loseConnection()

    def _take(self) -> bytes:
        data = b"".join(self.outgoing)
        self.outgoing = []
        self.queued = 0
        if self.producer is not None and self.producerPaused:
            self.producerPaused = False
            self.producer.resumeProducing()
        return data


class MemoryLink:
    """
    An in-memory connection between a client carrier and a server carrier.

    @ivar client: the client end's transport.
    @ivar server: the server end's transport.
    @ivar closed: whether both ends heard C{connectionLost}.
    """

    def __init__(
        self,
        network: MemoryNetwork,
        clientProtocol: IProtocol,
        serverProtocol: IProtocol,
        clientAddress: IAddress,
        serverAddress: IAddress,
    ) -> None:
        self.network = network
        self.client = MemoryTransport(self, clientProtocol, clientAddress, serverAddress)
        self.server = MemoryTransport(self, serverProtocol, serverAddress, clientAddress)
        self.closed = False
        self.blackholed = False

    def cut(self) -> None:
        """
        Kill the connection now, as a dead path would once noticed: bytes in
        flight are lost and both ends hear C{ConnectionLost}.
        """
        if self.closed:
            return
        self.client.outgoing = []
        self.server.outgoing = []
        self._close(ConnectionLost("cut"), ConnectionLost("cut"))

    def _close(self, clientReason: Exception, serverReason: Exception) -> None:
        self.closed = True
        self.network.links.remove(self)
        for end, reason in ((self.client, clientReason), (self.server, serverReason)):
            end.disconnected = True
            producer = end.producer
            end.producer = None
            if producer is not None:
                producer.stopProducing()
            end.protocol.connectionLost(Failure(reason))

    def pump(self) -> bool:
        """
        Deliver what each end wrote to the other (unless that end paused
        reading), then carry out requested closes.

        @return: whether anything happened.
        """
        moved = False
        if self.blackholed:
            # A silently dead path: what is sent vanishes, nobody is told.
            for end in (self.client, self.server):
                if end.outgoing:
                    end._take()
            return False
        for src, dst in ((self.client, self.server), (self.server, self.client)):
            if self.closed:
                return moved
            if src.outgoing and not dst.readPaused and not dst.disconnected:
                data = src._take()
                moved = True
                if not dst.disconnecting:
                    # Like Twisted's TCP: a closing end no longer reads.
                    dst.protocol.dataReceived(data)
        if self.closed:
            return moved
        for end in (self.client, self.server):
            if end.disconnecting and not end.outgoing:
                reasons: tuple[Exception, Exception]
                if end.aborted:
                    reasons = (ConnectionAborted(), ConnectionLost("peer aborted"))
                else:
                    reasons = (ConnectionDone(), ConnectionDone())
                if end is self.client:
                    self._close(reasons[0], reasons[1])
                else:
                    self._close(reasons[1], reasons[0])
                return True
        return moved


@implementer(IStreamClientEndpoint)
class _MemoryClientEndpoint:
    def __init__(self, network: MemoryNetwork) -> None:
        self._network = network

    def connect(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
        return self._network._connect(factory)


class MemoryNetwork:
    """
    A deterministic in-memory network between Migrate clients and one
    server factory.

    @ivar clock: the clock that L{flush} advances by zero to run due calls.
    @ivar links: the live connections, oldest first.
    @ivar refuse: when true, new connections are refused at once.
    @ivar hold: when true, new connection attempts never complete (until
        their caller gives up).
    @ivar clientHost: the host address new client carriers come from;
        change it to model a move.
    @ivar bufferLimit: bytes a transport buffers before it pauses its
        producer.
    @ivar connects: how many connection attempts were made.
    """

    def __init__(self, clock: Clock, bufferLimit: int = 1 << 20) -> None:
        self.clock = clock
        self.links: list[MemoryLink] = []
        self.refuse = False
        self.hold = False
        self.clientHost = "10.0.0.2"
        self.serverAddress = IPv4Address("TCP", "10.0.0.1", 7001)
        self.bufferLimit = bufferLimit
        self.connects = 0
        self._factory: Optional[IProtocolFactory] = None
        self._port = 40000
        self.onConnect: Callable[[MemoryLink], None] = lambda link: None

    def listen(self, factory: IProtocolFactory) -> None:
        """
        Make C{factory} the server that client endpoints reach.
        """
        self._factory = factory
        factory.doStart()

    def clientEndpoint(self) -> IStreamClientEndpoint:
        """
        A client endpoint that connects through this network.
        """
        return _MemoryClientEndpoint(self)

    def _connect(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
        self.connects += 1
        if self.refuse or self._factory is None:
            return fail(ConnectionRefusedError("network refused"))
        if self.hold:
            return Deferred()
        self._port += 1
        clientAddress = IPv4Address("TCP", self.clientHost, self._port)
        clientProtocol = factory.buildProtocol(self.serverAddress)
        serverProtocol = self._factory.buildProtocol(clientAddress)
        assert clientProtocol is not None and serverProtocol is not None
        link = MemoryLink(
            self, clientProtocol, serverProtocol, clientAddress, self.serverAddress
        )
        self.links.append(link)
        serverProtocol.makeConnection(link.server)
        clientProtocol.makeConnection(link.client)
        self.onConnect(link)
        return succeed(clientProtocol)

    def pump(self) -> bool:
        """
        Run calls due now and move bytes once on every link.

        @return: whether anything moved.
        """
        self.clock.advance(0)
        moved = False
        for link in list(self.links):
            if link.pump():
                moved = True
        return moved

    def flush(self, limit: int = 10000) -> None:
        """
        Pump until nothing moves and no call is due.
        """
        for _ in range(limit):
            if not self.pump() and not self._due():
                return
        raise AssertionError("network did not settle after %d pumps" % (limit,))

    def _due(self) -> bool:
        """
        Whether a call on the clock is due now.
        """
        now = self.clock.seconds()
        return any(call.getTime() <= now for call in self.clock.getDelayedCalls())

    def cutAll(self) -> None:
        """
        Cut every live link.
        """
        for link in list(self.links):
            link.cut()


@implementer(IConnectivityMonitor)
class FakeMonitor:
    """
    A connectivity monitor driven by the test: call L{emit} to make sessions
    react as they would to the kernel's notifications.

    @ivar started: whether it is started.
    @ivar starts: how many times it was started.
    @ivar local: the addresses L{addresses} reports.
    @ivar interfaces: address to interface, for L{interfaceOf}.
    """

    def __init__(self) -> None:
        self.started = False
        self.starts = 0
        self.listeners: list[Callable[[ConnectivityEvent], None]] = []
        self.local: list[LocalAddress] = []
        self.interfaces: dict[str, str] = {}

    def start(self) -> None:
        if not self.started:
            self.started = True
            self.starts += 1

    def stop(self) -> None:
        self.started = False

    def addListener(self, listener: Callable[[ConnectivityEvent], None]) -> None:
        self.listeners.append(listener)

    def removeListener(self, listener: Callable[[ConnectivityEvent], None]) -> None:
        if listener in self.listeners:
            self.listeners.remove(listener)

    def addresses(self) -> list[LocalAddress]:
        return list(self.local)

    def interfaceOf(self, address: str) -> Optional[str]:
        return self.interfaces.get(address)

    def emit(self, kind: str, interface: Optional[str] = None, address: Optional[str] = None) -> None:
        """
        Tell every listener about a change.
        """
        event = ConnectivityEvent(kind, interface, address)
        for listener in list(self.listeners):
            listener(event)


class _RelayHalf(Protocol):
    """
    One side of a relayed connection.
    """

    transport: Any

    def __init__(self, relay: CuttingRelay) -> None:
        self.relay = relay
        self.other: Optional[_RelayHalf] = None
        self.pending: list[bytes] = []
        self.carried = 0

    def connectionMade(self) -> None:
        self.relay._halves.add(self)

    def dataReceived(self, data: bytes) -> None:
        self.relay.forwarded += len(data)
        self.carried += len(data)
        other = self.other
        if other is None or other.transport is None:
            self.pending.append(data)
        else:
            other.transport.write(data)
        self.relay._counted(self, len(data))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.relay._halves.discard(self)
        self.relay._closed(self)
        other, self.other = self.other, None
        if other is not None and other.transport is not None:
            other.other = None
            if reason.check(ConnectionDone) and not self.relay._cutting:
                # A clean close travels on, after what was forwarded.
                other.transport.loseConnection()
            else:
                self.relay._abort([other])


class _RelayServerFactory(ServerFactory):
    noisy = False

    def __init__(self, relay: CuttingRelay) -> None:
        self.relay = relay

    def buildProtocol(self, addr: Optional[IAddress]) -> _RelayHalf:
        inbound = _RelayHalf(self.relay)
        outbound = _RelayHalf(self.relay)
        inbound.other = outbound
        outbound.other = inbound

        def connected(p: object) -> None:
            if inbound.transport is None or inbound.other is None:
                self.relay._abort([outbound])
                return
            for data in inbound.pending:
                outbound.transport.write(data)
            inbound.pending = []

        def failed(f: Failure) -> None:
            if inbound.transport is not None:
                self.relay._abort([inbound])

        self.relay.target().connect(
            _SingleFactory(outbound)
        ).addCallbacks(connected, failed)
        return inbound


class _SingleFactory(ClientFactory):
    noisy = False

    def __init__(self, protocol: Protocol) -> None:
        self.protocol_ = protocol

    def buildProtocol(self, addr: Optional[IAddress]) -> Protocol:
        return self.protocol_


class CuttingRelay:
    """
    A TCP relay for real-socket tests: it forwards connections to a target
    endpoint and can cut them all, at once or after a number of bytes.

    @ivar forwarded: bytes forwarded so far, both ways.
    @ivar cuts: how many times connections were cut.
    @ivar target: a callable returning the endpoint to forward to (may be
        changed between connections, to model a server that moved).
    """

    def __init__(self, target: Callable[[], IStreamClientEndpoint]) -> None:
        self.target = target
        self.forwarded = 0
        self.cuts = 0
        self._halves: set[_RelayHalf] = set()
        self._cutAt: Optional[int] = None
        self._cutEvery: Optional[int] = None
        self._aborted: set[_RelayHalf] = set()
        self._stopped = False
        self._clock: Optional[IReactorTime] = None
        self._cutSoon: dict[_RelayHalf, IDelayedCall] = {}
        self._settled: list[Deferred[None]] = []
        self._cutting = False
        self.factory = _RelayServerFactory(self)

    def cutAll(self) -> None:
        """
        Abort every relayed connection now (bytes in flight are lost).
        """
        self.cuts += 1
        self._abort(list(self._halves))

    def _abort(self, halves: Iterable[Optional[_RelayHalf]]) -> None:
        if self._stopped:
            return
        self._cutting = True
        try:
            for half in halves:
                if half is not None and half.transport is not None:
                    self._aborted.add(half)
                    half.transport.abortConnection()
        finally:
            self._cutting = False

    def _closed(self, half: _RelayHalf) -> None:
        self._aborted.discard(half)
        if not self._aborted:
            waiting, self._settled = self._settled, []
            for d in waiting:
                d.callback(None)

    def stop(self) -> Deferred[None]:
        """
        Stop cutting and aborting: from now on the relayed connections are
        left to whoever closes them.

        @return: a Deferred that fires once every connection the relay
            aborted has heard its C{connectionLost} (an abort completes in a
            later reactor turn); give this method to a C{"before",
            "shutdown"} trigger so that the relay leaves nothing scheduled
            on a stopping reactor.
        """
        self._stopped = True
        # Cuts about to happen are made now, so that no timer is left.
        self._stopped = False
        soon, self._cutSoon = self._cutSoon, {}
        for half, call in soon.items():
            if call.active():
                call.cancel()
            self._abort((half,))
        self._stopped = True
        if not self._aborted:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._settled.append(d)
        return d

    def cutAfter(self, nbytes: int) -> None:
        """
        Cut everything once C{nbytes} more bytes have been forwarded.
        """
        self._cutAt = self.forwarded + nbytes

    def cutEvery(self, nbytes: Optional[int], clock: Optional[IReactorTime] = None) -> None:
        """
        Cut each relayed connection, on its own, once it has carried
        C{nbytes} (both ways together): the read that reaches the count is
        forwarded (if it leaves within 10 ms on C{clock}), nothing more is
        read, and then the connection is cut.  C{nbytes=None} stops this.
        """
        if nbytes is not None and clock is None:
            raise ValueError("cutEvery needs the clock of the relay's reactor")
        self._cutEvery = nbytes
        self._clock = clock

    def _counted(self, half: _RelayHalf, n: int) -> None:
        if self._cutAt is not None and self.forwarded >= self._cutAt:
            self._cutAt = None
            self.cutAll()
            return
        other = half.other
        limit = self._cutEvery
        if limit is not None and half.carried + (other.carried if other else 0) >= limit:
            # What this read brought may still go out for a moment; nothing
            # more is read, then the connection dies.
            assert self._clock is not None
            if half in self._cutSoon:
                return
            for end in (half, other):
                if end is not None and end.transport is not None:
                    end.transport.pauseProducing()
            call = self._clock.callLater(0.01, self._cutPair, half, other)
            self._cutSoon[half] = call
            if other is not None:
                self._cutSoon[other] = call

    def _cutPair(self, half: _RelayHalf, other: Optional[_RelayHalf]) -> None:
        self._cutSoon.pop(half, None)
        if other is not None:
            self._cutSoon.pop(other, None)
        self.cuts += 1
        self._abort((half, other))
