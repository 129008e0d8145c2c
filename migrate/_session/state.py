# -*- test-case-name: tests.test_session,tests.test_channels -*-
"""
What every role of a L{Session <migrate._session.core.Session>} shares: its
lifecycle states, the reasons its application's producer may be paused, a
few shared constants, and L{SessionState}, which declares for the type
checker the attributes the session sets up and the methods each role offers
the others.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, cast, Any, Callable, Mapping, Optional

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IHalfCloseableProtocol,
    IProtocol,
    IProtocolFactory,
    IPushProducer,
    IReactorTime,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.log import ILogContext

from .._sansio import wire as _wire
from .._sansio.session import SessionMachine
from .._options import SessionOptions
from .._upcalls import Upcalls
from ..interfaces import IMigratePolicy, SessionRecord

if TYPE_CHECKING:
    from typing import Union

    from .._channels import ChannelCarrier, ChannelTable
    from .._protocol import Carrier
    from .._transport import MigrateTransport
    from .core import Session
    from .producer import _PullDriver

    #: What a session runs over: a connection, or (for a channel) its part
    #: of its session's connection.
    AnyCarrier = Union[Carrier, ChannelCarrier]



class State(enum.Enum):
    """
    Session lifecycle states.
    """

    ATTACHED = "attached"
    DETACHED = "detached"
    CLOSED = "closed"


# Reasons the application's producer may be paused.
_CARRIER = "carrier"

#: Heartbeats from a peer that does not read (our carrier's send buffer
#: full), left unanswered, before its carrier is dropped: a legitimate peer
#: whose reader is paused sends about two a second.
_MAX_UNANSWERED_PINGS = 1000
_DETACHED = "detached"
_BUFFER = "buffer"
_BUDGET = "budget"



_ONLY_DETACHED = frozenset({_DETACHED})
_CARRIER_SET = frozenset({_CARRIER})

#: The few sets of pause reasons there are, one object each (most of many
#: sessions share one).
_INTERNED: dict[frozenset[str], frozenset[str]] = {}


def _interned(reasons: frozenset[str]) -> frozenset[str]:
    """
    The one object for this set of pause reasons.
    """
    return _INTERNED.setdefault(reasons, reasons)


#: No addresses (shared: address lists are replaced, never changed in place).
_NO_ADDRESSES: list[str] = []

#: The session-level frames of channels.
_CHANNEL_FRAMES = frozenset(
    {
        _wire.CHANNEL_OPEN,
        _wire.CHANNEL_OPENED,
        _wire.CHANNEL_REFUSED,
        _wire.CHANNEL_RESUME,
        _wire.CHANNEL_WINDOW,
        _wire.CHANNEL_CLOSE,
    }
)


def _nothing() -> None:
    pass


def _ignore(session: "Session") -> None:
    pass


_logContexts: dict[str, dict[Any, Any]] = {}


def _logContextFor(system: str) -> dict[Any, Any]:
    """
    The log context of applications whose log system is C{system}: one
    shared (read-only) dictionary per system, not one per session.
    """
    found = _logContexts.get(system)
    if found is None:
        if len(_logContexts) > 1000:
            _logContexts.clear()
        found = _logContexts[system] = {ILogContext: {"system": system}}
    return found




class SessionState(SessionMachine):
    """
    The attributes of a session (set in L{Session.__init__
    <migrate._session.core.Session.__init__>}) and, for the type checker
    only, the methods of each role.  It adds nothing at run time.
    """

    if not TYPE_CHECKING:
        # (Slots at run time, so that a session has no __dict__; the type
        # checker sees the attributes the session declares.)
        __slots__ = ()

    log: Logger
    _advertSeq: int
    _peerAdvertSeq: int
    clock: IReactorTime
    sessionID: bytes
    key: bytes
    options: SessionOptions
    policy: IMigratePolicy
    _highWater: int
    _hardCap: int
    _lowWater: int
    state: State
    generation: int
    handoffs: int
    carrier: Optional[AnyCarrier]
    app: Optional[IProtocol]
    transport: Optional[MigrateTransport]
    lastPeer: Optional[IAddress]
    lastHost: Optional[IAddress]
    peerHost: str
    onBufferHigh: Callable[[], None]
    secure: bool
    detachedSince: Optional[float]
    createdAt: float
    onCarrierLost: Callable[[Session], None]
    onEnd: Callable[[Session], None]
    onHibernate: Optional[Callable[[Session], object]]
    hibernated: bool
    _pauseReasons: frozenset[str]
    _producer: Optional[IPushProducer]
    _appProducer: object
    _pullDriver: Optional[_PullDriver]
    _appPaused: bool
    _readPaused: bool
    _lostCall: Optional[IDelayedCall]
    _lostReason: Optional[Failure]
    _abortNotice: Optional[str]
    endReason: Optional[Exception]
    _logContext: dict[Any, Any]
    _depth: int
    _endWaiters: Optional[list[Deferred[None]]]
    _closingCarriers: Optional[set[AnyCarrier]]
    upcalls: Upcalls
    retransmitted: int
    _heard: int
    timers: IReactorTime
    _inReading: bool
    _timer: Optional[IDelayedCall]
    _timerAt: Optional[float]
    _liveCall: Optional[IDelayedCall]
    _unansweredPings: int
    _probeCall: Optional[IDelayedCall]
    _smallWrite: int
    peerAddresses: list[str]
    trustedPeerAddresses: list[str]
    _untrustedLogged: bool
    advertised: list[str]
    advertConfigured: bool
    onPeerAddresses: Callable[[Session], None]
    channels: Optional[ChannelTable]
    _held: Optional[list[bytes | int]]
    _heldBytes: int
    _heldPausedCarrier: bool
    _heldCall: Optional[IDelayedCall]
    channelID: int
    parent: Optional[Session]
    channelFactories: Optional[Mapping[str, IProtocolFactory]]
    appFactory: Optional[IProtocolFactory]
    channelAdmission: Optional[Callable[[], Optional[str]]]

    @property
    def session(self) -> Session:
        """
        This session, as its owner and its channel table know it.
        """
        return cast("Session", self)

    if TYPE_CHECKING:

        def setPolicy(self, policy: IMigratePolicy) -> None: ...
        @property
        def highWater(self) -> int: ...
        def setBufferSize(self, size: int) -> None: ...
        @property
        def hexID(self) -> str: ...
        def setOwner(
            self,
            carrierLost: Callable[[Session], None],
            ended: Callable[[Session], None],
            timers: Optional[IReactorTime] = None,
            hibernate: Optional[Callable[[Session], object]] = None,
            bufferHigh: Optional[Callable[[], None]] = None,
            peerAddresses: Optional[Callable[[Session], None]] = None,
        ) -> None: ...
        def releaseOwner(self) -> None: ...
        def setChannelFactories(
            self,
            appFactory: Optional[IProtocolFactory],
            factories: Optional[Mapping[str, IProtocolFactory]],
            admission: Optional[Callable[[], Optional[str]]] = None,
        ) -> None: ...
        def handshakeDone(
            self, host: IAddress, generation: int, resumed: bool, secure: Optional[bool] = None
        ) -> None: ...
        def countHandoff(self) -> None: ...
        def setPeerHost(self, host: str) -> None: ...
        def dropApp(self) -> None: ...
        def restoreStream(
            self,
            sent: int,
            acked: int,
            received: int,
            finSent: bool,
            finReceived: bool,
            buffer: bytes,
            handoffs: int,
            detachedSince: Optional[float],
        ) -> None: ...
        def abandonCarrier(self) -> None: ...
        def makeChannel(self, root: Session, channel: int) -> None: ...
        def channelTable(self) -> ChannelTable: ...
        def openChannel(self, factory: IProtocolFactory, name: str = "") -> Deferred[IProtocol]: ...
        def channelSettled(self) -> None: ...
        @property
        def abortingNotice(self) -> Optional[str]: ...
        def channelFrameStarted(self, channel: int, length: int) -> None: ...
        def channelPayloadReceived(self, payload: bytes) -> None: ...
        def setApp(self, app: IProtocol, transport: MigrateTransport) -> None: ...
        def connectApp(self, app: IProtocol, transport: MigrateTransport) -> None: ...
        def attach(self, carrier: AnyCarrier, peerReceived: int) -> None: ...
        def carrierLost(
            self, carrier: AnyCarrier, reason: str = "carrier-lost", clean: bool = False
        ) -> None: ...
        def _arm(self) -> None: ...
        def _timerFired(self) -> None: ...
        @property
        def expiresAt(self) -> Optional[float]: ...
        def _hibernateDue(self) -> None: ...
        def checkpoint(self, appState: Optional[bytes]) -> SessionRecord: ...
        def hibernate(self) -> None: ...
        def wake(self, record: SessionRecord) -> None: ...
        def wakeBuffer(self, buffer: Optional[bytes]) -> None: ...
        def dropCarrier(self, reason: str) -> None: ...
        def _startLiveness(self) -> None: ...
        def _sessionWaiting(self) -> bool: ...
        def _waiting(self) -> bool: ...
        def _idleLimit(self) -> float: ...
        def _schedule(self) -> None: ...
        def _watch(self) -> None: ...
        def _stopLiveness(self) -> None: ...
        def advertise(
            self, addresses: list[str], configured: bool = False, send: bool = True
        ) -> None: ...
        def _sendAdvert(self) -> None: ...
        def _peerAdvertised(self, body: bytes) -> None: ...
        def _snapshot(self) -> tuple[int, int, int]: ...
        def _liveTick(self) -> None: ...
        def _ping(self) -> None: ...
        def probe(self, reason: str = "path-dead") -> None: ...
        def _probeExpired(self, reason: str, before: tuple[int, int, int]) -> None: ...
        def _pong(self, token: int) -> None: ...
        def _expire(self) -> None: ...
        def dataFrameStarted(self, ack: int, length: int) -> None: ...
        def reading(self, parse: Callable[[bytes], None], data: bytes) -> None: ...
        def payloadReceived(self, payload: bytes) -> None: ...
        def controlFrameReceived(self, frameType: int, body: bytes) -> None: ...
        def _finReceived(self, ack: int) -> None: ...
        def acknowledgeNow(self) -> None: ...
        def _sendAck(self) -> None: ...
        def _acked(self) -> None: ...
        def write(self, data: bytes) -> None: ...
        def _checkBuffer(self) -> None: ...
        def pauseForBudget(self, paused: bool) -> None: ...
        def loseWriteConnection(self) -> None: ...
        def _loseWriteConnection(self) -> None: ...
        def loseConnection(self) -> None: ...
        def _loseConnection(self) -> None: ...
        def _sendFin(self) -> None: ...
        def _finWrittenOut(self) -> None: ...
        def _writeConnectionLost(self, halfCloseable: IHalfCloseableProtocol) -> None: ...
        def _closeDone(self) -> None: ...
        def _resetAfterClose(self) -> None: ...
        def _closeTimedOut(self) -> None: ...
        def _checkFinished(self) -> None: ...
        def abort(self, reason: Optional[Failure] = None) -> None: ...
        def _abort(self, reason: Optional[Failure] = None) -> None: ...
        def _abortPeer(self, notice: str) -> None: ...
        def _sendAbort(self, notice: str) -> None: ...
        def _lingerTimedOut(self) -> None: ...
        def _abortTimedOut(self) -> None: ...
        def _appFailed(self, failure: Failure) -> None: ...
        def _appGone(self, reason: Failure) -> None: ...
        def _deliverLost(self, reason: Failure) -> None: ...
        def _tellLost(self, reason: Failure) -> None: ...
        def _end(self, reason: Exception) -> None: ...
        def _tellAppEnded(self, reason: Exception) -> None: ...
        def carriers(self) -> list[Carrier]: ...
        def carrierClosing(self, carrier: AnyCarrier) -> None: ...
        def carrierClosed(self, carrier: AnyCarrier) -> None: ...
        def _fireEnded(self) -> None: ...
        def end(self, reason: Exception, notice: Optional[str] = None) -> None: ...
        def whenEnded(self) -> Deferred[None]: ...
        def shutdown(self) -> None: ...
        @property
        def closing(self) -> bool: ...
        def registerProducer(self, producer: object, streaming: bool) -> None: ...
        def _registerProducer(self, producer: object, streaming: bool) -> None: ...
        def unregisterProducer(self) -> None: ...
        def _unregisterProducer(self) -> None: ...
        def _pauseFor(self, reason: str) -> None: ...
        def _resumeFor(self, reason: str) -> None: ...
        def pauseProducing(self) -> None: ...
        def resumeProducing(self) -> None: ...
        def stopProducing(self) -> None: ...
        def pauseReading(self) -> None: ...
        def resumeReading(self) -> None: ...
        def _hold(self, item: bytes | int, size: int) -> None: ...
        def _flushHeld(self) -> None: ...
        def _dropHeld(self) -> None: ...
