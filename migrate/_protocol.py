# -*- test-case-name: tests.test_session,tests.test_carrier -*-
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

from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional, Protocol as TypingProtocol, cast

from twisted.internet import tcp as _tcp
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IPushProducer,
    IReactorTime,
    ISSLTransport,
)

from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from ._sansio import handshake as _handshake, wire as _wire
from ._sansio.stream import ProtocolViolation
from ._sansio.handshake import HandshakeFailed

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


#: Bytes a carrier's TCP connection reads at once (Twisted's default is
#: 64 KiB): fewer, larger reads mean fewer passes through the parser and
#: the session per byte, and fewer frames split across reads.
READ_SIZE = 256 * 1024


def _setReadSize(transport: object) -> None:
    """
    Let a carrier's TCP connection (or the one under its TLS) read
    L{READ_SIZE} bytes at once.
    """
    for candidate in (transport, getattr(transport, "transport", None)):
        if isinstance(getattr(candidate, "bufferSize", None), int):
            candidate.bufferSize = max(candidate.bufferSize, READ_SIZE)  # type: ignore[union-attr]


def _plainTCP(transport: object) -> bool:
    """
    Whether C{transport} is Twisted's own TCP connection (not TLS, not a
    test double): one whose writes L{Carrier.dataReceived} may send itself.
    """
    return isinstance(transport, _tcp.Connection)


#: The most a read's writes may come to for L{Carrier.dataReceived} to send
#: them itself (Twisted's own limit for one C{send}).
_SEND_NOW = 128 * 1024


#: What a closed carrier's parser delivers to: nothing ever arrives (a
#: closed carrier is retired and parses nothing), and if it did, it would
#: be dropped.
_Closed = _wire.NOWHERE


def whenAllClosed(
    clock: IReactorTime, carriers: Iterable[Carrier], timeout: float
) -> Deferred[None]:
    """
    A L{Deferred} that fires when every one of C{carriers} has closed, or
    C{timeout} seconds have passed, whichever comes first.
    """
    done: Deferred[None] = Deferred()

    def finished(_: object = None) -> None:
        if timer.active():
            timer.cancel()
        if not done.called:
            done.callback(None)

    timer = clock.callLater(timeout, finished)
    DeferredList([c.whenClosed() for c in carriers], consumeErrors=True).addBoth(finished)
    return done


#: How many of a carrier's first bytes a "does not speak Migrate" error shows.
_SHOWN = 24


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
    @ivar _clock: runs the drain deadline and deferred parsing.
    @ivar _drainTimeout: how long a retired carrier may take to close
        before it is aborted.
    @ivar _drainCall: that deadline, while it runs.
    @ivar writeBlocked: the connection's send buffer is full (its transport
        paused the session producing into it): the peer is not reading.
    @ivar _resumeCall: parsing resumed after a pause, in the next turn.
    """

    log = Logger()
    transport: CarrierTransport  # type: ignore[assignment]

    def __init__(
        self,
        handshaker: Handshaker,
        maxPayload: int,
        clock: IReactorTime,
        drainTimeout: float,
    ) -> None:
        self.handshaker = handshaker
        self.session: Session | None = None
        self.parser = _wire.FrameParser(self, maxPayload)
        self.retired = False
        self._framed = False
        self._failReason: str | None = None
        self._firstBytes = b""
        self.closed = False
        self._closedWaiters: list[Deferred[None]] = []
        self.writeBlocked = False
        self.label = "carrier"
        self.handshakeState: object = None
        self._clock = clock
        self._drainTimeout = drainTimeout
        self._drainCall: IDelayedCall | None = None
        self._resumeCall: IDelayedCall | None = None
        self._sendAfterRead = False
        self._wantsWriting = False

    def connectionMade(self) -> None:
        _setNoDelay(self.transport)
        _setReadSize(self.transport)
        self._sendAfterRead = _plainTCP(self.transport)
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
        self._framed = True
        self.handshaker.handshakeFrame(self, frameType, body)

    def channelFrameStarted(self, channel: int, length: int) -> None:
        raise _wire.FrameError("channel data before the handshake completed")

    def channelPayloadReceived(self, payload: bytes) -> None:
        raise _wire.FrameError("channel data before the handshake completed")

    def dataReceived(self, data: bytes) -> None:
        if self.retired:
            return
        if not self._framed and len(self._firstBytes) < _SHOWN:
            self._firstBytes += data[: _SHOWN - len(self._firstBytes)]
        transport: Any = self.transport
        if (
            self._sendAfterRead
            and not transport._tempDataLen
            and not transport.dataBuffer
            and not transport.TLS
        ):
            # Nothing waits to be sent: what this read makes us write (a
            # heartbeat's answer, an acknowledgement, an echo) is sent at its
            # end, at once, rather than by registering the connection for
            # writing and sending in the reactor's next turn (two epoll
            # calls and a turn for every answer of an idle session).
            transport.startWriting = self._startWritingLater
            try:
                self._parse(data)
            except BaseException:
                del transport.startWriting
                if self._wantsWriting:
                    self._wantsWriting = False
                    transport.startWriting()
                raise
            del transport.startWriting
            if self._wantsWriting:
                self._wantsWriting = False
                self._sendNow(transport)
            return
        self._parse(data)

    def _startWritingLater(self) -> None:
        """
        Our transport's C{startWriting} during a read: remember it.
        """
        self._wantsWriting = True

    def _sendNow(self, transport: Any) -> None:
        """
        At the end of a read that wrote: send what it wrote now if it all
        goes at once, else register for writing as the writes would have
        (also when the connection is closing, or a producer waits for the
        buffer to drain: the reactor's C{doWrite} handles those).
        """
        size = transport._tempDataLen
        if (
            0 < size <= _SEND_NOW
            and transport.connected
            and not transport.dataBuffer
            and not transport.disconnecting
            and not transport._aborting
            and not transport._writeDisconnecting
            and not transport.TLS
            and not transport.producerPaused
            and (transport.producer is None or transport.streamingProducer)
        ):
            pieces = transport._tempDataBuffer
            data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
            try:
                sent = transport.socket.send(data)
            except OSError:
                # (Full, or an error the reactor's own attempt will see and
                # close the connection for.)
                sent = 0
            if sent == size:
                pieces.clear()
                transport._tempDataLen = 0
                return
            if sent:
                transport._tempDataBuffer = [data[sent:]]
                transport._tempDataLen = size - sent
        transport.startWriting()

    def _parse(self, data: bytes) -> None:
        try:
            session = self.session
            if session is None:
                self.parser.feed(data)
            else:
                session.reading(self.parser.feed, data)
        except HandshakeFailed as e:
            self.reject(e.code, e.reason, e.retryAfter)
        except (_wire.FrameError, ProtocolViolation) as e:
            if not self._framed and self.session is None and b"MGRT" not in self._firstBytes:
                # Not one frame made sense: most likely not Migrate at all
                # (a plain TCP service or client where a migrate: endpoint
                # was expected, or the other way round).
                self.fail(
                    "the peer does not speak Migrate (it sent %r)" % (self._firstBytes,)
                )
                return
            self.fail("protocol error: %s" % (e,))

    def adopt(self, session: Session) -> None:
        """
        Belong to C{session}: from now on frames go to it directly.
        """
        self.session = session
        self.parser.setReceiver(session)

    def reject(self, code: int, reason: str, retryAfter: float = 0.0) -> None:
        """
        Refuse the handshake with a reason the peer can read, then close.

        @param retryAfter: for a busy refusal, when the peer may try again.
        """
        if self.retired:
            return
        self.log.info(
            "{label}: handshake refused: {reason}", label=self.label, reason=reason
        )
        self._failReason = reason
        self.transport.write(_wire.encodeReject(code, reason, retryAfter))
        self.retire(reason, graceful=True)

    def fail(self, reason: str) -> None:
        """
        Drop this carrier because of bad input; the session (if any) only
        detaches.
        """
        if self.retired:
            return
        self.log.warn("{label}: closed: {reason}", label=self.label, reason=reason)
        self._failReason = reason
        session = self.session
        self.retire(reason)
        if session is not None:
            session.carrierLost(self, "protocol-error")

    def retire(
        self, reason: str, graceful: bool = False, waitForPeer: bool = False, patient: bool = False
    ) -> None:
        """
        Let go of this carrier: stop parsing (what still arrives is
        discarded) and close the connection: at once, or (if C{graceful})
        after flushing what was written, or (if C{waitForPeer}) once the
        peer closes it, having read what we wrote.  A carrier that does not
        close within the drain timeout is aborted, so a peer that never
        reads cannot hold its memory.
        """
        if self.retired:
            return
        session = self.session
        if session is not None and session.channels is not None:
            # What the channels wrote before goes first.
            session.channels.flushOutput()
        self.retired = True
        self.parser.pause()
        self._cancelResume()
        transport = self.transport
        if transport is None:
            return
        if self.session is not None:
            try:
                transport.unregisterProducer()
            except RuntimeError:
                pass
        if not (graceful or waitForPeer):
            transport.abortConnection()
            return
        if self.writeBlocked and not patient:
            # The peer does not read what is already queued: waiting for it
            # would only hold that memory (until the drain timeout).  (A
            # C{patient} retire waits anyway: a complete session's last
            # acknowledgement, behind bytes the peer no longer needs, such
            # as an aborted channel's; the drain timeout still bounds it.)
            self.log.info(
                "{label}: {reason}; the peer is not reading: aborted",
                label=self.label,
                reason=reason,
            )
            transport.abortConnection()
            return
        if self.session is not None:
            self.session.carrierClosing(self)
        if graceful:
            transport.loseConnection()
        else:
            # Keep reading (and discarding), so that the peer is never
            # blocked on us and its close is seen.
            transport.resumeProducing()
        if self._drainCall is None:
            self._drainCall = self._clock.callLater(self._drainTimeout, self._drained)

    def abandon(self) -> None:
        """
        The reactor is stopping and will close this connection itself:
        ignore it from now on, without scheduling anything.
        """
        self.retired = True
        self.parser.pause()
        self._cancelResume()
        drain, self._drainCall = self._drainCall, None
        if drain is not None and drain.active():
            drain.cancel()

    def _drained(self) -> None:
        self._drainCall = None
        self.log.info("{label}: did not close in time; aborted", label=self.label)
        self.transport.abortConnection()

    def pauseReading(self) -> None:
        """
        Stop reading (the application paused).
        """
        self._cancelResume()
        self.parser.pause()
        self.transport.pauseProducing()

    def resumeReading(self) -> None:
        """
        Resume reading.  Frames kept while paused are delivered in the next
        reactor turn, never from within the caller's own call.
        """
        self.transport.resumeProducing()
        if self._resumeCall is None and not self.retired:
            self._resumeCall = self._clock.callLater(0, self._resumeParser)

    def _resumeParser(self) -> None:
        self._resumeCall = None
        if self.retired:
            return
        try:
            self.parser.resume()
        except HandshakeFailed as e:
            self.reject(e.code, e.reason, e.retryAfter)
        except (_wire.FrameError, ProtocolViolation) as e:
            self.fail("protocol error: %s" % (e,))

    def _cancelResume(self) -> None:
        call, self._resumeCall = self._resumeCall, None
        if call is not None and call.active():
            call.cancel()

    @property
    def secure(self) -> bool:
        """
        Whether this carrier runs over TLS.
        """
        return ISSLTransport.providedBy(self.transport)

    @property
    def queued(self) -> int:
        """
        Bytes written to this carrier that its transport still holds (not
        yet handed to the kernel), through a TLS layer too, as far as
        Twisted's transports show them (0 for a transport that does not).
        """
        total = 0
        transport: Any = self.transport
        for _ in range(3):
            if transport is None:
                break
            data = getattr(transport, "dataBuffer", None)
            if isinstance(data, bytes):
                total += len(data) - int(getattr(transport, "offset", 0))
                total += int(getattr(transport, "_tempDataLen", 0))
            transport = getattr(transport, "transport", None)
        return max(total, 0)

    @property
    def exporter(self) -> Optional[Callable[[], bytes]]:
        """
        On a TLS carrier, a function giving its RFC 5705 exporter value for
        Migrate's binding (once the TLS handshake is over); else C{None}.
        """
        if not self.secure:
            return None
        transport = self.transport

        def export() -> bytes:
            try:
                value = cast(Any, transport).getHandle().export_keying_material(
                    _handshake.EXPORTER_LABEL, 32
                )
            except Exception as e:
                raise HandshakeFailed(
                    _wire.REJECT_PROTOCOL, "no TLS exporter on this carrier: %s" % (e,)
                )
            return bytes(value)

        return export

    def whenClosed(self) -> Deferred[None]:
        """
        A L{Deferred} that fires when the connection is closed.
        """
        d: Deferred[None] = Deferred()
        if self.closed:
            d.callback(None)
        else:
            self._closedWaiters.append(d)
        return d

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.closed = True
        waiters, self._closedWaiters = self._closedWaiters, []
        for d in waiters:
            if not d.called:
                # (Unless the waiter gave up: see whenClosed's users.)
                d.callback(None)
        self._cancelResume()
        drain, self._drainCall = self._drainCall, None
        if drain is not None and drain.active():
            drain.cancel()
        session = self.session
        if session is not None:
            session.carrierLost(self, clean=reason.check(ConnectionDone) is not None)
            session.carrierClosed(self)
        elif not self.retired:
            self.handshaker.carrierFailed(self, reason.getErrorMessage())
        else:
            self.handshaker.carrierFailed(self, self._failReason or "closed")
        self.retired = True
        # Nothing is parsed any more: break the carrier-parser cycle, so
        # that a closed carrier's memory goes back at once, not at the next
        # garbage collection.
        self.parser.setReceiver(_Closed)
