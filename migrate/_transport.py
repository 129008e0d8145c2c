# -*- test-case-name: tests.test_transport -*-
"""
The transport an application protocol holds.

L{MigrateTransport} is the application's view of its session: one object for
the session's whole life, whatever carriers come and go.  It declares a fixed
set of interfaces (never the carrier's), and delegates every call to the
L{Session}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Optional

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IAddress,
    IConsumer,
    IProtocol,
    IProtocolFactory,
    IPushProducer,
    ITransport,
)
from zope.interface import implementer

from ._address import formatAddress
from .interfaces import IMigrateTransport

if TYPE_CHECKING:
    from ._session import Session


@implementer(ITransport, IConsumer, IPushProducer, IMigrateTransport)
class MigrateTransport:
    """
    The application protocol's transport.

    Writes after C{loseConnection} are dropped, as with Twisted's TCP
    transport; C{registerProducer} twice raises C{RuntimeError};
    C{loseConnection} delivers every byte first, waiting through detachments
    up to the session's C{closeTimeout}; C{abortConnection} does not wait.

    @ivar _session: the session behind it.
    """

    disconnecting = False

    #: Why the application closed the session, if it says so (the
    #: forwarder: "backend closed", "backend refused: ..."): shown by the
    #: live view, never sent to the peer.
    closeReason: Optional[str] = None

    def __init__(self, session: Session) -> None:
        self._session = session
        self.write = session.write  # type: ignore[method-assign]

    def __repr__(self) -> str:
        return "<MigrateTransport session=%s %s>" % (
            self._session.hexID,
            self.state,
        )

    # ITransport

    def write(self, data: bytes) -> None:
        """
        Send C{data}; buffered until acknowledged, delivered exactly once.
        """
        self._session.write(data)

    def writeSequence(self, data: Iterable[bytes]) -> None:
        """
        Send the concatenation of C{data}.

        @raise TypeError: an element is not C{bytes}.
        """
        data = list(data)
        for piece in data:
            if not isinstance(piece, bytes):
                raise TypeError("Data must be bytes")
        self._session.write(b"".join(data))

    def loseConnection(self) -> None:
        """
        Close the session cleanly once everything written was delivered.
        """
        self.disconnecting = True
        self._session.loseConnection()

    def loseWriteConnection(self) -> None:
        """
        Half-close our direction of the session.
        """
        self._session.loseWriteConnection()

    def abortConnection(self) -> None:
        """
        End the session now, dropping unsent data.
        """
        self.disconnecting = True
        self._session.abort()

    def getPeer(self) -> IAddress:
        """
        The peer's address on the current (or last) carrier.
        """
        peer = self._session.lastPeer
        assert peer is not None
        return peer

    def getHost(self) -> IAddress:
        """
        Our address on the current (or last) carrier.
        """
        host = self._session.lastHost
        assert host is not None
        return host

    # IConsumer

    def registerProducer(self, producer: object, streaming: bool) -> None:
        """
        Register a producer of data to write.

        @raise RuntimeError: a producer is registered already.
        """
        self._session.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        """
        Unregister the producer.
        """
        self._session.unregisterProducer()

    # IPushProducer: the application controls its incoming data.

    def pauseProducing(self) -> None:
        """
        Stop delivering received data until L{resumeProducing}, on this
        carrier and any later one.
        """
        self._session.pauseReading()

    def resumeProducing(self) -> None:
        """
        Resume delivering received data.
        """
        self._session.resumeReading()

    def stopProducing(self) -> None:
        """
        Close the session, as Twisted's TCP transport does.
        """
        self.loseConnection()

    # What Twisted's TCP transport offers beyond its interfaces, and
    # applications use.

    def stopReading(self) -> None:
        """
        The same as L{pauseProducing}.
        """
        self.pauseProducing()

    def startReading(self) -> None:
        """
        The same as L{resumeProducing}.
        """
        self.resumeProducing()

    def stopConsuming(self) -> None:
        """
        Unregister the producer and close, as Twisted's transports do when
        their producer is done.
        """
        self.unregisterProducer()
        self.loseConnection()

    @property
    def bufferSize(self) -> int:
        """
        Unacknowledged bytes above which a registered producer is paused
        (it is resumed below half of this); setting it changes the
        session's high-water mark, as C{bufferSize} does on Twisted's
        transports.
        """
        return self._session.highWater

    @bufferSize.setter
    def bufferSize(self, size: int) -> None:
        self._session.setBufferSize(size)

    # IMigrateTransport

    @property
    def sessionID(self) -> str:
        return self._session.sessionID.hex()

    @property
    def channel(self) -> int:
        return self._session.channelID

    def openChannel(self, factory: IProtocolFactory, name: str = "") -> Deferred[IProtocol]:
        """
        Open another channel of this session (see
        L{IMigrateTransport.openChannel}).
        """
        return self._session.openChannel(factory, name)

    @property
    def state(self) -> str:
        return _stateOf(self._session)

    @property
    def generation(self) -> int:
        return self._root.generation

    @property
    def handoffs(self) -> int:
        return self._root.handoffs

    @property
    def _root(self) -> Session:
        session = self._session
        return session.parent if session.parent is not None else session

    def whenEnded(self) -> Deferred[None]:
        """
        Fires once the session is entirely over (see
        L{IMigrateTransport.whenEnded}).
        """
        return self._session.whenEnded()

    def isAttached(self) -> bool:
        """
        Whether a carrier is up now.
        """
        return self._session.carrier is not None

    def snapshot(self) -> dict[str, object]:
        """
        The session's state now, as plain data (see
        L{IMigrateTransport.snapshot}).
        """
        s = self._session
        snap = self._streamSnapshot(s)
        root = self._root
        if root is not s:
            snap["id"] = root.sessionID.hex()
            return snap
        table = s.channels
        snap["channels"] = [
            self._streamSnapshot(child) for child in (table.sessions() if table is not None else ())
        ]
        snap["channelsOpened"] = table.opened if table is not None else 0
        return snap

    def _streamSnapshot(self, s: Session) -> dict[str, object]:
        now = s.clock.seconds()
        engine = s.engine
        root = s.parent if s.parent is not None else s
        table = root.channels

        def address(a: Optional[IAddress]) -> str | None:
            return None if a is None else formatAddress(a)

        return {
            "id": s.hexID,
            "channel": s.channelID,
            "name": table.names().get(s.channelID, "") if table is not None else "",
            "side": "client" if s.isClient else "server",
            "state": _stateOf(s),
            "local": address(s.lastHost),
            "peer": address(s.lastPeer),
            "age": now - s.createdAt,
            "detachedFor": (now - s.detachedSince) if s.detachedSince is not None else None,
            "generation": root.generation,
            "handoffs": s.handoffs,
            "bytesSent": engine.sent,
            "bytesAcknowledged": min(engine.acked, engine.sent),
            "bytesBuffered": engine.buffered,
            "bytesReceived": engine.received - engine.finReceived,
            "bytesRetransmitted": s.retransmitted,
            "rtt": s.srtt,
            "lastRtt": s.lastRTT,
        }


def _stateOf(session: Session) -> str:
    """
    A session's (or channel's) state as the application sees it.
    """
    if session.ended or session.appLost:
        return "closed"
    if session.closing:
        return "closing"
    return session.state.value
