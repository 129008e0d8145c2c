# -*- test-case-name: tests.test_tap -*-
"""
A TCP forwarder with end-to-end flow control and half-close, for
C{twistd migrate}.

Each connection accepted on the listening endpoint gets one connection to the
target endpoint.  Bytes flow both ways; each side is registered as the
producer of the other, so a slow reader slows the sender and nothing is
buffered without bound; an end of stream on one side is passed on as a
half-close on the other.  With C{migrate:} on either endpoint, the
accepted "connection" is a whole Migrate session: the target connection is
opened once per session, not once per carrier.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import (
    IAddress,
    IHalfCloseableProtocol,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer


@implementer(IHalfCloseableProtocol)
class _Half(Protocol):
    """
    One side of a forwarded connection.

    @ivar peer: the other side, once both are connected.
    @ivar pending: bytes received before the other side was connected.
    @ivar readClosed: this side's peer ended its stream before the other side
        was connected.
    """

    log = Logger()
    transport: Any

    backend = False

    def __init__(self) -> None:
        self.peer: Optional[_Half] = None
        self.pending: list[bytes] = []
        self.readClosed = False
        self.ended = False
        self.endedFirst = False
        self.closed = False

    def dataReceived(self, data: bytes) -> None:
        peer = self.peer
        if peer is None:
            self.pending.append(data)
        else:
            peer.transport.write(data)

    def readConnectionLost(self) -> None:
        self.ended = True
        peer = self.peer
        self.endedFirst = peer is None or not peer.ended
        if peer is None:
            self.readClosed = True
        else:
            _halfClose(peer)

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.closed = True
        peer, self.peer = self.peer, None
        if peer is not None:
            peer.peer = None
            if peer.transport is not None:
                peer.transport.unregisterProducer()
                if self.backend and (self.endedFirst or not peer.ended):
                    # The backend ended first: say so (the live view shows it).
                    _sayWhy(
                        peer.transport,
                        "backend closed"
                        if reason.check(ConnectionDone)
                        else "backend reset: %s" % (reason.getErrorMessage(),),
                    )
                peer.transport.loseConnection()


def _sayWhy(transport: Any, why: str) -> None:
    """
    Record why the forwarder closes a Migrate session (see
    L{migrate._transport.MigrateTransport.closeReason}); other transports
    have nowhere to keep it.
    """
    if hasattr(transport, "closeReason"):
        transport.closeReason = why


def _halfClose(side: _Half) -> None:
    """
    End the stream towards C{side}'s remote end, keeping the other direction.
    The other side's transport, registered as the producer of this one, has
    nothing more to give: unregister it first, since a transport may wait
    for its producer to go before it closes.
    """
    side.transport.unregisterProducer()
    loseWrite = getattr(side.transport, "loseWriteConnection", None)
    if loseWrite is not None:
        loseWrite()
    else:
        side.transport.loseConnection()


def _join(a: _Half, b: _Half) -> None:
    """
    Connect two sides: flush what each got early, set up flow control both
    ways, pass on early ends of stream.
    """
    a.peer, b.peer = b, a
    for src, dst in ((a, b), (b, a)):
        assert src.transport is not None and dst.transport is not None
        dst.transport.registerProducer(src.transport, True)
        if src.pending:
            dst.transport.writeSequence(src.pending)
            src.pending = []
    for src, dst in ((a, b), (b, a)):
        if src.readClosed:
            _halfClose(dst)


class _Inbound(_Half):
    """
    The accepted side: connects to the target when it is made.
    """

    def __init__(self, target: IStreamClientEndpoint) -> None:
        _Half.__init__(self)
        self.target = target

    def connectionMade(self) -> None:
        outbound = _Half()
        outbound.backend = True
        d = self.target.connect(Factory.forProtocol(lambda: outbound))

        def connected(_: object) -> None:
            if self.closed:
                outbound.transport.loseConnection()
                return
            _join(self, outbound)

        def failed(reason: Failure) -> None:
            self.log.warn(
                "could not connect to the target: {reason}",
                reason=reason.getErrorMessage(),
            )
            if self.transport is not None:
                _sayWhy(self.transport, "backend refused: %s" % (reason.getErrorMessage(),))
                self.transport.loseConnection()

        d.addCallbacks(connected, failed)


class ForwardingFactory(Factory):
    """
    Builds a forwarding protocol for every accepted connection (or session).

    @ivar target: where to forward to.
    """

    noisy = False

    def __init__(self, target: IStreamClientEndpoint) -> None:
        self.target = target

    def buildProtocol(self, addr: Optional[IAddress]) -> _Inbound:
        return _Inbound(self.target)
