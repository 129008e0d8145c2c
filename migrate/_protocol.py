# -*- test-case-name: tests.test_session -*-
"""
The per-carrier Twisted protocol.

A L{Carrier} is the protocol of one TCP (or TLS) connection under a session.
It parses frames; until its handshake completes it hands control frames to
its handshaker (the server factory or the client connector), after which its
parser feeds the session directly.  When its connection ends it tells the
session, which detaches: the application never sees a carrier's
C{connectionLost}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Protocol as TypingProtocol

from twisted.internet.interfaces import IAddress, IPushProducer

from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from . import _wire
from ._core import ProtocolViolation
from ._handshake import HandshakeFailed

if TYPE_CHECKING:
    from ._session import Session


class CarrierTransport(TypingProtocol):
    """
    What a carrier uses of its transport: the common part of Twisted's TCP
    and TLS transports.
    """

    def write(self, data: bytes) -> None: ...

    def writeSequence(self, data: Iterable[bytes]) -> None: ...

    def loseConnection(self) -> None: ...

    def abortConnection(self) -> None: ...

    def getPeer(self) -> IAddress: ...

    def getHost(self) -> IAddress: ...

    def registerProducer(self, producer: IPushProducer, streaming: bool) -> None: ...

    def unregisterProducer(self) -> None: ...

    def pauseProducing(self) -> None: ...

    def resumeProducing(self) -> None: ...


class Handshaker(TypingProtocol):
    """
    What drives a carrier's handshake.
    """

    def carrierConnected(self, carrier: Carrier) -> None:
        """
        The carrier's connection is up.
        """

    def handshakeFrame(self, carrier: Carrier, frameType: int, body: bytes) -> None:
        """
        A control frame arrived before the handshake completed.

        @raise HandshakeFailed: the handshake cannot go on.
        """

    def carrierFailed(self, carrier: Carrier, reason: str) -> None:
        """
        The carrier's connection ended before its handshake completed.
        """


def _setNoDelay(transport: object) -> None:
    """
    Turn Nagle's algorithm off on a carrier (or on the TCP connection under
    a TLS carrier): control frames are small and must not wait.
    """
    for candidate in (transport, getattr(transport, "transport", None)):
        setter = getattr(candidate, "setTcpNoDelay", None)
        if setter is not None:
            try:
                setter(True)
            except OSError:
                pass
            return


class Carrier(Protocol):
    """
    One connection under a session.

    @ivar handshaker: drives the handshake.
    @ivar session: the session once adopted, else C{None}.
    @ivar parser: this connection's frame parser.
    @ivar retired: the session let go of this carrier; nothing it receives
        matters any more.
    @ivar label: a short description for logs.
    @ivar handshakeState: the handshaker's private per-carrier state.
    """

    log = Logger()
    transport: CarrierTransport  # type: ignore[assignment]

    def __init__(self, handshaker: Handshaker, maxPayload: int) -> None:
        self.handshaker = handshaker
        self.session: Session | None = None
        self.parser = _wire.FrameParser(self, maxPayload)
        self.retired = False
        self.label = "carrier"
        self.handshakeState: object = None
        self._readPaused = False

    def connectionMade(self) -> None:
        _setNoDelay(self.transport)
        peer = self.transport.getPeer()
        self.label = "carrier from %s" % (
            getattr(peer, "host", peer),
        )
        self.handshaker.carrierConnected(self)

    # Frames before the handshake completes; after it, the parser's receiver
    # is the session itself.

    def dataFrameStarted(self, ack: int, length: int) -> None:
        raise _wire.FrameError("data before the handshake completed")

    def payloadReceived(self, payload: bytes) -> None:
        raise _wire.FrameError("data before the handshake completed")

    def controlFrameReceived(self, frameType: int, body: bytes) -> None:
        self.handshaker.handshakeFrame(self, frameType, body)

    def dataReceived(self, data: bytes) -> None:
        if self.retired:
            return
        try:
            self.parser.feed(data)
        except HandshakeFailed as e:
            self.reject(e.code, e.reason)
        except (_wire.FrameError, ProtocolViolation) as e:
            self.fail("protocol error: %s" % (e,))

    def adopt(self, session: Session) -> None:
        """
        Belong to C{session}: from now on frames go to it directly.
        """
        self.session = session
        self.parser._receiver = session

    def reject(self, code: int, reason: str) -> None:
        """
        Refuse the handshake with a reason the peer can read, then close.
        """
        if self.retired:
            return
        self.log.info(
            "{label}: handshake refused: {reason}", label=self.label, reason=reason
        )
        self.transport.write(_wire.encodeReject(code, reason))
        self.retire(reason, graceful=True)

    def fail(self, reason: str) -> None:
        """
        Drop this carrier because of bad input; the session (if any) only
        detaches.
        """
        if self.retired:
            return
        self.log.warn("{label}: closed: {reason}", label=self.label, reason=reason)
        session = self.session
        self.retire(reason)
        if session is not None:
            session.carrierLost(self, "protocol-error")

    def retire(self, reason: str, graceful: bool = False) -> None:
        """
        Let go of this carrier: stop parsing, close the connection (after
        flushing what was written, if C{graceful}).
        """
        if self.retired:
            return
        self.retired = True
        self.parser.pause()
        transport = self.transport
        if transport is None:
            return
        if self.session is not None:
            try:
                transport.unregisterProducer()
            except RuntimeError:
                pass
        if graceful:
            transport.loseConnection()
        else:
            transport.abortConnection()

    def pauseReading(self) -> None:
        """
        Stop reading (the application paused).
        """
        self.parser.pause()
        self.transport.pauseProducing()

    def resumeReading(self) -> None:
        """
        Resume reading.
        """
        self.transport.resumeProducing()
        self.parser.resume()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        session = self.session
        if session is not None:
            session.carrierLost(self)
        elif not self.retired:
            self.handshaker.carrierFailed(self, reason.getErrorMessage())
        else:
            self.handshaker.carrierFailed(self, "closed")
        self.retired = True
