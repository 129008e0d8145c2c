# -*- test-case-name: tests.test_session -*-
"""
A session: one application protocol, many carriers over its lifetime.

L{Session} joins the sans-IO L{StreamEngine} to the world: it writes the
engine's frames to the current carrier, passes received payload to the
application, keeps the timers (expiry while detached, delayed
acknowledgement, close deadline) on an injected clock, and implements the
producer/consumer rules of the wrapper:

  - the session, never the application's producer, is registered as the
    producer of every carrier, so a dying carrier cannot stop the
    application's producer;
  - the application's producer is paused for any of three reasons (the
    carrier's buffer is full, the session is detached, too many bytes await
    acknowledgement) and resumed only when none remains;
  - an application that paused reading stays paused on every new carrier.

It also watches its carrier's path (heartbeats on a silent carrier, RTT
estimation, probes after connectivity events: see L{Session._liveTick}),
tells the peer where it can be reached (authenticated C{ADDRESSES}
frames), and can be checkpointed for hibernation and rebuilt from the
checkpoint (L{Session.checkpoint}, L{Session.fromRecord},
L{restoreSession}).

States::

    ATTACHED <--> DETACHED          (carrier lost / verified resume)
        \\          /
         -> CLOSED                  (clean close, expiry, abort, overflow)

A close in progress is C{closing} as seen by the application, with the
engine's FIN state saying how far it got.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional, cast

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionAborted, ConnectionDone, ConnectionLost
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IHalfCloseableProtocol,
    ILoggingContext,
    IProtocol,
    IProtocolFactory,
    IPullProducer,
    IPushProducer,
    IReactorTime,
)
from twisted.logger import Logger
from twisted.python import context
from twisted.python.failure import Failure
from twisted.python.log import ILogContext
from zope.interface import implementer

from ._sansio import wire as _wire
from ._sansio.adverts import checkAdvert, nextAdvert
from ._sansio import session as _machine
from ._sansio.liveness import DEAD, PING
from ._sansio.session import SessionMachine
from ._sansio.stream import ProtocolViolation
from ._address import formatAddress, parseAddress
from ._options import SessionOptions
from ._upcalls import Upcalls
from .interfaces import IMigratable, IMigratePolicy, SessionRecord
from .policy import DefaultPolicy
from .errors import BufferFull, BufferOverflow, PeerAborted, SessionExpired

if TYPE_CHECKING:
    from typing import Union

    from ._channels import ChannelCarrier, ChannelTable
    from ._protocol import Carrier
    from ._transport import MigrateTransport

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


@implementer(IPushProducer)
class _PullDriver:
    """
    Drive a pull producer as a push producer, the way Twisted's TCP
    transport does: ask it for data at once when it is registered, then
    again in a later reactor turn for as long as it keeps writing, never
    while paused.  A producer that wrote nothing since it was last asked is
    not asked again until it is resumed after a pause, so an idle producer
    costs nothing.

    @ivar _producer: the application's pull producer.
    @ivar _written: returns how much has been written so far.
    @ivar _onError: called with the failure when the producer raises.
    @ivar _mark: what L{_written} said after the last pull.
    """

    def __init__(
        self,
        producer: IPullProducer,
        clock: IReactorTime,
        written: Callable[[], int],
        onError: Callable[[Failure], None],
    ) -> None:
        self._producer = producer
        self._clock = clock
        self._written = written
        self._onError = onError
        self._paused = False
        self._stopped = False
        self._mark = -1
        self._call: IDelayedCall | None = None

    def start(self, backlog: bool) -> None:
        """
        Ask for data now, as Twisted's transports do on registration; if
        C{backlog} (data written before is still unacknowledged), ask once
        more later whatever it writes now, as they do once their buffer
        drains.
        """
        if not backlog:
            self._mark = self._written()
        self._pull()

    def _schedule(self) -> None:
        if self._call is None and not self._paused and not self._stopped:
            self._call = self._clock.callLater(0, self._pull)

    def _pull(self) -> None:
        self._call = None
        if self._stopped:
            return
        try:
            self._producer.resumeProducing()
        except BaseException:
            self._cancel()
            self._onError(Failure())
            return
        written = self._written()
        if written != self._mark:
            self._mark = written
            self._schedule()

    def _cancel(self) -> None:
        self._stopped = True
        if self._call is not None:
            self._call.cancel()
            self._call = None

    def pauseProducing(self) -> None:
        self._paused = True
        if self._call is not None:
            self._call.cancel()
            self._call = None

    def resumeProducing(self) -> None:
        self._paused = False
        self._schedule()

    def stopProducing(self) -> None:
        self._cancel()
        self._producer.stopProducing()

    def halt(self) -> None:
        """
        Stop pulling without telling the producer (it was unregistered).
        """
        self._cancel()


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


def _ignore(session: Session) -> None:
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


@implementer(IPushProducer)
class Session(SessionMachine):
    """
    The state of one session on one side.

    @ivar sessionID: the 16-byte session id.
    @ivar key: the 32-byte session key.
    @ivar isClient: which side we are.
    @ivar engine: positions and the retransmission buffer.
    @ivar state: the lifecycle state.
    @ivar generation: the generation of the current (or last) carrier.
    @ivar handoffs: how many resumes succeeded.
    @ivar carrier: the current carrier, or C{None} while detached.
    @ivar app: the application protocol, once connected.
    @ivar transport: what the application holds.
    @ivar lastPeer: the peer address of the current or last carrier.
    @ivar lastHost: our address on the current or last carrier.
    @ivar secure: the session was opened over TLS: it resumes only over
        TLS (a resume over anything weaker is refused on both sides).
    @ivar peerHost: the host part of the peer address the server counts this
        session under (server side).
    @ivar detachedSince: clock time of the last detachment, or C{None}.
    @ivar onCarrierLost: called (with the session) when the carrier goes;
        the client's reconnector hooks in here.
    @ivar onEnd: called (with the session) once when it ends.
    @ivar _pauseReasons: why the application's producer is paused.
    @ivar _producer: the application's producer as registered (for push) or
        the driver that pulls it.
    @ivar _appProducer: the application's own producer object.
    @ivar _readPaused: the application paused reading.
    @ivar _timer: the one timer of the session's deadlines (see
        L{SessionMachine.nextDeadline}), set for C{_timerAt}.
    @ivar _logContext: the log context of the application's callbacks
        (its C{logPrefix} is the log system, as on Twisted's transports).
    """

    __slots__ = (
        "_abortNotice",
        "_advertSeq",
        "_peerAdvertSeq",
        "_appPaused",
        "_appProducer",
        "_closingCarriers",
        "_depth",
        "_endWaiters",
        "_hardCap",
        "_heard",
        "_highWater",
        "_liveCall",
        "_logContext",
        "_lostCall",
        "_lostReason",
        "_lowWater",
        "_pauseReasons",
        "_probeCall",
        "_producer",
        "_pullDriver",
        "_readPaused",
        "_smallWrite",
        "_unansweredPings",
        "_untrustedLogged",
        "advertConfigured",
        "advertised",
        "app",
        "carrier",
        "clock",
        "createdAt",
        "detachedSince",
        "endReason",
        "generation",
        "handoffs",
        "hibernated",
        "key",
        "lastHost",
        "lastPeer",
        "onBufferHigh",
        "onCarrierLost",
        "onEnd",
        "onHibernate",
        "onPeerAddresses",
        "options",
        "peerAddresses",
        "peerHost",
        "policy",
        "retransmitted",
        "secure",
        "sessionID",
        "state",
        "transport",
        "trustedPeerAddresses",
        "upcalls",
        "timers",
        "_inReading",
        "channels",
        "_held",
        "_heldBytes",
        "_heldPausedCarrier",
        "_heldCall",
        "channelID",
        "parent",
        "channelFactories",
        "appFactory",
        "channelAdmission",
        "_timer",
        "_timerAt",
        "__weakref__",
    )

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        sessionID: bytes,
        key: bytes,
        isClient: bool,
        options: SessionOptions,
        policy: Optional[IMigratePolicy] = None,
        upcalls: Optional[Upcalls] = None,
    ) -> None:
        SessionMachine.__init__(
            self,
            isClient,
            options.sendFrame,
            options.closeTimeout,
            options.ackEvery,
            options.ackDelay,
        )
        self._advertSeq = 0
        self._peerAdvertSeq = 0
        self.clock = clock
        self.sessionID = sessionID
        self.key = key
        self.options = options
        self.state = State.DETACHED
        self.generation = 0
        self.handoffs = 0
        self.carrier: AnyCarrier | None = None
        self.app: IProtocol | None = None
        self.transport: MigrateTransport | None = None
        self.lastPeer: IAddress | None = None
        self.lastHost: IAddress | None = None
        self.peerHost = ""
        self.onBufferHigh: Callable[[], None] = _nothing
        self.secure = False
        self.detachedSince: float | None = None
        self.createdAt = clock.seconds()
        self.onCarrierLost: Callable[[Session], None] = _ignore
        self.onEnd: Callable[[Session], None] = _ignore
        self.onHibernate: Optional[Callable[[Session], object]] = None
        self.hibernated = False
        # (Frozen sets, replaced on change: most sessions share the few
        # there are.)
        self._pauseReasons: frozenset[str] = _ONLY_DETACHED
        self._producer: Optional[IPushProducer] = None
        self._appProducer: object = None
        self._pullDriver: _PullDriver | None = None
        self._appPaused = False
        self._readPaused = False
        self._lostCall: IDelayedCall | None = None
        self._lostReason: Optional[Failure] = None
        self._abortNotice: Optional[str] = None
        self.endReason: Optional[Exception] = None
        self._logContext: dict[Any, Any] = _logContextFor("Migrate")
        self._depth = 0
        self._endWaiters: Optional[list[Deferred[None]]] = None
        self._closingCarriers: Optional[set[AnyCarrier]] = None
        self.upcalls = upcalls if upcalls is not None else Upcalls([])
        self.retransmitted = 0
        self._heard = 0
        self.timers: IReactorTime = clock
        self._inReading = False
        self._timer: IDelayedCall | None = None
        self._timerAt: Optional[float] = None
        self._liveCall: IDelayedCall | None = None
        self._unansweredPings = 0
        self._probeCall: IDelayedCall | None = None
        self._smallWrite = min(4096, options.sendFrame)
        # (Shared until replaced: never changed in place.)
        self.peerAddresses: list[str] = _NO_ADDRESSES
        self.trustedPeerAddresses: list[str] = _NO_ADDRESSES
        self._untrustedLogged = False
        self.advertised: list[str] = _NO_ADDRESSES
        self.advertConfigured = False
        self.onPeerAddresses: Callable[[Session], None] = _ignore
        self.channels: Optional[ChannelTable] = None
        self._held: Optional[list[bytes | int]] = None
        self._heldBytes = 0
        self._heldPausedCarrier = False
        self._heldCall: IDelayedCall | None = None
        self.channelID = 0
        self.parent: Optional[Session] = None
        self.channelFactories: Optional[Mapping[str, IProtocolFactory]] = None
        self.appFactory: Optional[IProtocolFactory] = None
        self.channelAdmission: Optional[Callable[[], Optional[str]]] = None
        self.setPolicy(policy if policy is not None else DefaultPolicy(options))

    def setPolicy(self, policy: IMigratePolicy) -> None:
        """
        Decide by C{policy} from now on (its buffer limits apply at once).
        """
        self.policy = policy
        self._highWater, self._hardCap = policy.bufferLimits()
        self._lowWater = self._highWater // 2

    @property
    def highWater(self) -> int:
        """
        Unacknowledged bytes above which the application's producer is
        paused.
        """
        return self._highWater

    def setBufferSize(self, size: int) -> None:
        """
        Pause the application's producer above C{size} unacknowledged bytes
        from now on (resume below half of it); the hard cap is raised to
        C{size} if it was lower.

        @raise ValueError: C{size} is not positive.
        """
        if size <= 0:
            raise ValueError("buffer size must be positive")
        self._highWater = size
        self._lowWater = size // 2
        self._hardCap = max(self._hardCap, size)
        if _BUFFER in self._pauseReasons and self.engine.buffered <= self._lowWater:
            self._resumeFor(_BUFFER)

    @property
    def hexID(self) -> str:
        """
        The session id as hex, for logs and the application (with C{/N}
        after it for channel N).
        """
        if self.channelID:
            return "%s/%d" % (self.sessionID.hex(), self.channelID)
        return self.sessionID.hex()

    # Its owner (a server factory or a client connector)

    def setOwner(
        self,
        carrierLost: Callable[[Session], None],
        ended: Callable[[Session], None],
        timers: Optional[IReactorTime] = None,
        hibernate: Optional[Callable[[Session], object]] = None,
        bufferHigh: Optional[Callable[[], None]] = None,
        peerAddresses: Optional[Callable[[Session], None]] = None,
    ) -> None:
        """
        Belong to an owner, which hears of the session's life through these
        (each called with the session unless said otherwise).

        @param carrierLost: the carrier went; the session is detached.
        @param ended: the session ended (once).
        @param timers: where the liveness timers go (a shared L{TimerSet}).
        @param hibernate: the session has been detached for
            C{suspendAfter}: hibernate it now (server, with a store).
        @param bufferHigh: (no argument) the session passed its high-water
            mark.
        @param peerAddresses: the peer advertised where it can be reached.
        """
        self.onCarrierLost = carrierLost
        self.onEnd = ended
        if timers is not None:
            self.timers = timers
        self.onHibernate = hibernate
        if bufferHigh is not None:
            self.onBufferHigh = bufferHigh
        if peerAddresses is not None:
            self.onPeerAddresses = peerAddresses

    def releaseOwner(self) -> None:
        """
        Belong to nobody: its owner hears nothing more (a client session
        suspended into a store, its object about to be dropped).
        """
        self.onCarrierLost = _ignore
        self.onEnd = _ignore
        self.onHibernate = None
        self.onBufferHigh = _nothing
        self.onPeerAddresses = _ignore

    def setChannelFactories(
        self,
        appFactory: Optional[IProtocolFactory],
        factories: Optional[Mapping[str, IProtocolFactory]],
        admission: Optional[Callable[[], Optional[str]]] = None,
    ) -> None:
        """
        Say what the channels the peer opens are: C{factories} by name, or
        (when C{None}) only C{""}, built by C{appFactory} (the factory of the
        session's first stream); C{admission} may refuse any opening with a
        reason (a server over its memory budget).
        """
        self.appFactory = appFactory
        self.channelFactories = factories
        self.channelAdmission = admission

    # What the handshakes and the owner learn about the session

    def handshakeDone(
        self, host: IAddress, generation: int, resumed: bool, secure: Optional[bool] = None
    ) -> None:
        """
        A handshake for carrier generation C{generation} succeeded: our
        address on it is C{host}; C{resumed} counts a handoff; C{secure}
        (on an opening) says whether the session runs over TLS.
        """
        self.lastHost = host
        self.generation = generation
        if resumed:
            self.handoffs += 1
        if secure is not None:
            self.secure = secure

    def countHandoff(self) -> None:
        """
        Count one more successful resume (a channel's, resumed inside its
        session's).
        """
        self.handoffs += 1

    def setPeerHost(self, host: str) -> None:
        """
        Say under which peer host the server counts this session.
        """
        self.peerHost = host

    def dropApp(self) -> None:
        """
        Let go of the application protocol and its transport (the session
        is stored, its application state with it): nothing then refers to
        them from here, so their memory goes back at once.
        """
        self.app = None
        self.upcalls.app = None
        self.transport = None

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
    ) -> None:
        """
        Take the positions, buffer and history of a stored stream (a
        session's or a channel's).
        """
        self.engine.restore(sent, acked, received, finSent, finReceived, buffer)
        self.handoffs = handoffs
        self.detachedSince = detachedSince

    def abandonCarrier(self) -> None:
        """
        Forget our carrier without closing it (a channel's, whose session
        ended: there is nothing left to tell the peer on it).
        """
        carrier, self.carrier = self.carrier, None
        if carrier is not None:
            carrier.abandon()

    # Channels

    def makeChannel(self, root: Session, channel: int) -> None:
        """
        Run channel C{channel} of C{root}: this session's carriers are
        channel carriers on C{root}'s; handshakes, liveness, expiry,
        hibernation and advertisements are C{root}'s alone.
        """
        self.parent = root
        self.channelID = channel
        self.timers = root.timers
        self.lastPeer = root.lastPeer
        self.lastHost = root.lastHost
        self.secure = root.secure

    def channelTable(self) -> ChannelTable:
        """
        The table of this session's channels (made on first use).
        """
        table = self.channels
        if table is None:
            from ._channels import ChannelTable

            table = self.channels = ChannelTable(self)
            table.writeBlocked = _CARRIER in self._pauseReasons
            if self._readPaused and self._held is None:
                # From now on our paused reader holds its bytes, and the
                # carrier is read for the other channels.
                self._held = []
                if self.carrier is not None and not self.carrier.retired:
                    self.carrier.resumeReading()
        return table

    def openChannel(self, factory: IProtocolFactory, name: str = "") -> Deferred[IProtocol]:
        """
        Open another channel of this session (see
        L{IMigrateTransport.openChannel}).
        """
        root = self.parent if self.parent is not None else self
        return root.channelTable().open(factory, name)


    def channelSettled(self) -> None:
        """
        One of our channels ended, or (on a client) finished and waits for
        the server's confirmation: if our own stream is complete too, so
        may the session be.
        """
        if not self.ended:
            self._checkFinished()

    @property
    def abortingNotice(self) -> Optional[str]:
        """
        (Client) why we abort, while the abort waits to reach the peer;
        else C{None}.
        """
        return self.aborting


    def channelFrameStarted(self, channel: int, length: int) -> None:
        """
        A channel frame's head (see L{migrate._channels}).

        @raise ProtocolViolation: on a channel's own carrier.
        """
        if self.parent is not None:
            raise ProtocolViolation("channel frame inside a channel")
        self._heard += 1
        table = self.channels
        if table is None:
            table = self.channelTable()
        table.frameStarted(channel, length)

    def channelPayloadReceived(self, payload: bytes) -> None:
        """
        Some bytes of the current channel frame.
        """
        table = self.channels
        if table is not None:
            table.payload(payload)

    # Starting

    def setApp(self, app: IProtocol, transport: MigrateTransport) -> None:
        """
        Give the session its application protocol and the transport it
        holds (without telling the application).
        """
        self.app = app
        self.transport = transport
        self.upcalls.app = app
        if ILoggingContext.providedBy(app):
            prefix = app.logPrefix()
        else:
            prefix = app.__class__.__name__
        side = "client" if self.isClient else "server"
        self._logContext = _logContextFor("%s,%s" % (prefix, side))

    def connectApp(self, app: IProtocol, transport: MigrateTransport) -> None:
        """
        Connect the application protocol; it hears C{connectionMade}.  If
        that raises, the error is logged and the session aborted, as
        Twisted's transports do.
        """
        self.setApp(app, transport)
        for chosen in self.upcalls.notify("choosePolicy", transport):
            if chosen is not None:
                self.setPolicy(chosen)
                break
        try:
            context.call(self._logContext, app.makeConnection, transport)
        except BaseException:
            self._appFailed(Failure())
        if not self.appLost:
            self.upcalls.notify("sessionEstablished", transport)

    # Carriers

    def attach(self, carrier: AnyCarrier, peerReceived: int) -> None:
        """
        Make C{carrier} the session's carrier after a verified handshake, and
        retransmit what the peer has not received.

        @param peerReceived: how far the peer received our stream; it passed
            L{StreamEngine.checkResume}.
        """
        old = self.carrier
        if old is not None and old is not carrier:
            old.retire("replaced by a resumed carrier")
            self.carrier = None
        wasDetached = self.state is State.DETACHED
        previousPeer = self.lastPeer
        downtime = (
            self.clock.seconds() - self.detachedSince
            if self.detachedSince is not None
            else 0.0
        )
        self.carrier = carrier
        carrier.adopt(self)
        self.lastPeer = carrier.transport.getPeer()
        self.lastHost = carrier.transport.getHost()
        if self.expireAt is not None or self.hibernateAt is not None:
            self.reattached()
            self._arm()
        if self.state is State.CLOSED:
            self.carrier = None
            if self.endNotice is not None:
                # A lingering ended session: tell the peer why.
                carrier.transport.write(_wire.encodeAbort(self.endNotice))
                carrier.retire("session already ended", waitForPeer=True)
                return
            # A lingering closed session: hand the peer what it missed and
            # let the carrier go.
            frames, resent = self.engine.resumeFrames(peerReceived)
            carrier.transport.writeSequence(frames)
            carrier.retire("session already closed", graceful=True)
            return
        if self.aborting is not None:
            # Our abort has yet to reach the peer: that is all this carrier
            # is for.
            self.state = State.ATTACHED
            self.detachedSince = None
            self._sendAbort(self.aborting)
            return
        if self.lingering:
            # The resume told the server everything we received: it closes
            # the carrier once it has read that.
            self.state = State.ATTACHED
            self.detachedSince = None
            carrier.retire("session closed", waitForPeer=True, patient=True)
            return
        frames, resent = self.engine.resumeFrames(peerReceived)
        self.retransmitted += resent
        self.state = State.ATTACHED
        self.detachedSince = None
        carrier.transport.registerProducer(self, True)
        if self._readPaused and self._held is None:
            carrier.pauseReading()
        if frames:
            carrier.transport.writeSequence(frames)
        if self.engine.finSent and not self.finWritten:
            self._finWrittenOut()
            if self.aborting is not None or self.carrier is not carrier:
                return
        if self.parent is None:
            self._startLiveness()
            self._sendAdvert()
            if self.channels is not None:
                self.channels.carrierAttached()
        if wasDetached:
            self._resumeFor(_DETACHED)
        if self.handoffs and self.transport is not None and self.parent is None:
            self.upcalls.notify(
                "sessionResumed", self.transport, previousPeer, self.lastPeer, downtime, resent
            )
        self._checkBuffer()
        self._checkFinished()

    def carrierLost(
        self, carrier: AnyCarrier, reason: str = "carrier-lost", clean: bool = False
    ) -> None:
        """
        A carrier's connection ended.  If it was the session's, detach.

        @param reason: why, as told to the upcalls (see
            L{IMigrateUpcalls.sessionSuspended}).
        @param clean: the connection was closed cleanly by the peer (after
            an abort we sent: it read it).
        """
        if carrier is not self.carrier:
            return
        self.carrier = None
        if self.aborting is not None and clean:
            self._end(ConnectionAborted("aborted"))
            return
        if self.lingering and clean:
            self._end(ConnectionDone("session closed cleanly"))
            return
        self._stopLiveness()
        self._dropHeld()
        if self.channels is not None:
            self.channels.carrierLost(reason)
        if self.state is not State.ATTACHED:
            return
        self.state = State.DETACHED
        self.detachedSince = self.clock.seconds()
        self._pauseReasons = _interned(self._pauseReasons - _CARRIER_SET)
        self._pauseFor(_DETACHED)
        if self.parent is not None:
            return
        self.detached(
            self.clock.seconds(),
            self.policy.expireAfter(),
            self.policy.suspendAfter() if self.onHibernate is not None else None,
        )
        self._arm()
        self.log.info(
            "session {sid} detached: {reason}",
            sid=self.hexID,
            reason=reason,
            event="detached",
        )
        if self.transport is not None:
            self.upcalls.notify("sessionSuspended", self.transport, reason)
        self.onCarrierLost(self)

    # The one timer of the machine's deadlines

    def _arm(self) -> None:
        """
        Set the session's timer for the machine's next deadline (or cancel
        it when there is none).
        """
        when = self.nextDeadline()
        if when == self._timerAt:
            return
        timer = self._timer
        self._timerAt = when
        if when is None:
            self._timer = None
            if timer is not None and timer.active():
                timer.cancel()
            return
        delay = max(0.0, when - self.clock.seconds())
        if timer is not None and timer.active():
            timer.reset(delay)
        else:
            self._timer = self.clock.callLater(delay, self._timerFired)

    def _timerFired(self) -> None:
        when = self._timerAt
        self._timer = self._timerAt = None
        now = self.clock.seconds()
        if when is not None and when > now:
            # (The clock's float arithmetic fired a hair early.)
            now = when
        for due in self.dueDeadlines(now):
            if self.ended:
                break
            if due is _machine.ACK:
                if self.engine.unacknowledged and self.carrier is not None:
                    self._sendAck()
            elif due is _machine.CLOSE_TIMEOUT:
                self._closeTimedOut()
            elif due is _machine.LINGER_TIMEOUT:
                self._lingerTimedOut()
            elif due is _machine.ABORT_TIMEOUT:
                self._abortTimedOut()
            elif due is _machine.EXPIRE:
                self._expire()
            elif due is _machine.HIBERNATE:
                self._hibernateDue()
        if not self.ended:
            self._arm()

    @property
    def expiresAt(self) -> Optional[float]:
        """
        When this detached session expires unless resumed (clock seconds),
        or C{None}.
        """
        return self.expireAt

    # Hibernation

    def _hibernateDue(self) -> None:
        if self.onHibernate is not None and self.state is State.DETACHED and not self.appLost:
            self.onHibernate(self)

    def checkpoint(self, appState: Optional[bytes]) -> SessionRecord:
        """
        Everything needed to resume this session later, maybe elsewhere.
        """
        engine = self.engine
        now = self.clock.seconds()
        detached = self.detachedSince if self.detachedSince is not None else now
        return SessionRecord(
            sessionID=self.sessionID,
            side="client" if self.isClient else "server",
            key=self.key,
            generation=self.generation,
            sent=engine.sent,
            acked=engine.acked,
            received=engine.received,
            finSent=engine.finSent,
            finReceived=engine.finReceived,
            buffer=engine.unacknowledgedBytes(),
            peer=formatAddress(self.lastPeer),
            host=formatAddress(self.lastHost),
            createdAt=self.createdAt,
            detachedSince=detached,
            hibernatedAt=now,
            expiresAt=detached + self.policy.expireAfter(),
            handoffs=self.handoffs,
            appState=appState,
            policy=self.policy.settings() if type(self.policy) is DefaultPolicy else None,
            secure=self.secure,
            channels=self.channels.checkpoint() if self.channels else None,
        )

    def hibernate(self) -> None:
        """
        Give back the live resources of a detached session whose checkpoint
        is being stored: its timers and its retransmission buffer.  (The
        caller drops the session object itself when the application could be
        dropped too.)
        """
        self.hibernated = True
        self.hibernateAt = self.expireAt = self.ackAt = None
        self._arm()
        self._stopLiveness()
        self.engine.releaseBuffer()
        if self.channels is not None:
            self.channels.hibernate()

    def wake(self, record: SessionRecord) -> None:
        """
        A hibernated session kept in memory is being resumed: take its
        buffer back from the checkpoint, and its expiry timer.
        """
        self.wakeBuffer(record.buffer)
        if self.channels is not None:
            self.channels.wake(record.channels)
        if self.expireAt is None and not self.ended:
            self.expireAt = record.expiresAt
            self._arm()

    def wakeBuffer(self, buffer: Optional[bytes]) -> None:
        """
        Out of hibernation: take back the retransmission buffer stored with
        the checkpoint (C{None}: none was stored).
        """
        self.hibernated = False
        if buffer is not None:
            self.engine.restoreBuffer(buffer)

    @classmethod
    def fromRecord(
        cls,
        clock: IReactorTime,
        record: SessionRecord,
        options: SessionOptions,
        policy: Optional[IMigratePolicy],
        upcalls: Upcalls,
    ) -> Session:
        """
        Rebuild a detached session from its checkpoint.
        """
        if record.policy is not None:
            try:
                policy = DefaultPolicy.fromSettings(record.policy)
            except ValueError:
                cls.log.warn(
                    "session {sid}: stored policy unusable; using the default",
                    sid=record.sessionID.hex(),
                )
        session = cls(
            clock, record.sessionID, record.key, record.side == "client", options, policy, upcalls
        )
        session.restoreStream(
            record.sent,
            record.acked,
            record.received,
            record.finSent,
            record.finReceived,
            record.buffer,
            record.handoffs,
            record.detachedSince,
        )
        session.generation = record.generation
        session.secure = record.secure
        session.createdAt = record.createdAt
        session.lastPeer = parseAddress(record.peer)
        session.lastHost = parseAddress(record.host)
        session.expireAt = record.expiresAt
        session._arm()
        return session

    def dropCarrier(self, reason: str) -> None:
        """
        Give up the current carrier (its path is dead, its address gone):
        close it and detach, so the client reconnects at once.
        """
        carrier = self.carrier
        if carrier is not None:
            carrier.retire(reason)
            self.carrierLost(carrier, reason)

    # Liveness.  While the session waits to hear from the peer (its data or
    # FIN unacknowledged, a heartbeat unanswered, the application not
    # reading), a silent carrier gets a heartbeat every heartbeatInterval
    # and is declared dead after the silence limit.  An idle carrier costs
    # one timer that fires once per keepalive interval: the client sends a
    # keepalive; the server, which hears those, checks only after twice as
    # long without a word.

    def _startLiveness(self) -> None:
        self._stopLiveness()
        self.liveStart(self.clock.seconds(), self._snapshot())
        self._schedule()

    def _sessionWaiting(self) -> bool:
        """
        Whether the session waits to hear from the peer: data or FIN
        unacknowledged (its own or a channel's), or reading paused.
        """
        return (
            not self.engine.allAcked
            or self._readPaused
            or (self.channels is not None and self.channels.waiting())
        )

    def _waiting(self) -> bool:
        """
        Whether we wait to hear from the peer (a heartbeat unanswered too).
        """
        return self.liveAwaits(self._sessionWaiting())

    def _idleLimit(self) -> float:
        keepalive = self.policy.keepaliveInterval()
        return keepalive if self.isClient else 2 * keepalive

    def _schedule(self) -> None:
        """
        Set the liveness timer when L{Liveness} says to look again.
        """
        delay = self.liveDelay(
            self.clock.seconds(),
            self._sessionWaiting(),
            self.policy.heartbeatInterval(),
            self._idleLimit(),
        )
        self._liveCall = self.timers.callLater(delay, self._liveTick)

    def _watch(self) -> None:
        """
        Something now waits for the peer (a write, a FIN, reading paused):
        if the carrier was idle, start watching it, its silence counted from
        now.
        """
        parent = self.parent
        if parent is not None:
            parent._watch()
            return
        call = self._liveCall
        if call is None:
            return
        if self.liveWatch(self.clock.seconds(), self._snapshot()):
            call.cancel()
            self._schedule()

    def _stopLiveness(self) -> None:
        for name in ("_liveCall", "_probeCall"):
            call = getattr(self, name)
            if call is not None:
                if call.active():
                    call.cancel()
                setattr(self, name, None)

    # Address advertisements

    def advertise(
        self, addresses: list[str], configured: bool = False, send: bool = True
    ) -> None:
        """
        Tell the peer where we can be reached (C{"host:port"} each), now and
        after every resume, authenticated by the session key and numbered
        so that an old advertisement cannot be replayed.

        @param configured: the operator chose these addresses (the peer may
            follow them even over a translated path).
        @param send: whether to send them now (else with the next attach).
        """
        fitting = [a for a in addresses if _wire.addressFits(a)]
        if len(fitting) != len(addresses):
            self.log.warn(
                "session {sid}: not advertising {bad} (not ASCII, or longer than "
                "an advertisement entry may be)",
                sid=self.hexID,
                bad=[a for a in addresses if a not in fitting],
            )
        self.advertised = fitting[: _wire.MAX_ADDRESSES]
        self.advertConfigured = configured
        if send:
            self._sendAdvert()

    def _sendAdvert(self) -> None:
        carrier = self.carrier
        if carrier is None or not self.advertised:
            return
        self._advertSeq, frame = nextAdvert(
            self._advertSeq,
            self.key,
            self.isClient,
            self.generation,
            self.advertised,
            self.advertConfigured,
        )
        carrier.transport.write(frame)

    def _peerAdvertised(self, body: bytes) -> None:
        """
        The peer told us where it can be reached.  We follow it only if its
        operator configured the addresses, or if the path we use now is
        direct (the address we reached is among them, or is one it told us
        before and we trusted): behind NAT, a port forward or a load
        balancer, an advertised address is unreachable, another host, or a
        way around whatever the path enforces.
        """
        self._peerAdvertSeq, addresses, configured = checkAdvert(
            self._peerAdvertSeq, self.key, self.isClient, body
        )
        self.peerAddresses = addresses
        current = formatAddress(self.lastPeer)
        trusted = (
            configured
            or current in addresses
            or current in self.trustedPeerAddresses
        )
        old = self.trustedPeerAddresses
        if not trusted:
            if addresses and not self._untrustedLogged:
                self._untrustedLogged = True
                self.log.info(
                    "session {sid}: the peer advertised {addresses}, but this path "
                    "({current}) is translated; staying on it",
                    sid=self.hexID,
                    addresses=addresses,
                    current=current,
                )
            addresses = []
        self.trustedPeerAddresses = addresses
        if old != addresses and self.transport is not None:
            self.upcalls.notify("peerMoved", self.transport, old, addresses)
        self.onPeerAddresses(self)

    def _snapshot(self) -> tuple[int, int, int]:
        engine = self.engine
        return (engine.received, engine.acked, self._heard)

    def _liveTick(self) -> None:
        self._liveCall = None
        if self.carrier is None or self.ended:
            return
        now = self.clock.seconds()
        action = self.liveTick(
            now,
            self._snapshot(),
            self._sessionWaiting(),
            self._readPaused,
            self.policy.heartbeatInterval(),
            self._idleLimit(),
            self.policy.silenceLimit(self.srtt, self.rttvar),
        )
        if action == DEAD:
            self.log.info(
                "session {sid}: path dead after {silence:.2f} s of silence",
                sid=self.hexID,
                silence=self.liveSilence(now),
            )
            self.dropCarrier("path-dead")
            return
        if action == PING:
            self._ping()
        self._schedule()

    def _ping(self) -> None:
        carrier = self.carrier
        if carrier is None:
            return
        carrier.transport.write(_wire.encodePing(self.livePinged(self.clock.seconds())))

    def probe(self, reason: str = "path-dead") -> None:
        """
        Check the current carrier's path now (after a connectivity event):
        send a heartbeat and declare the path dead unless something arrives
        within the policy's probe timeout.
        """
        if (
            self.carrier is None
            or self.ended
            or self.aborting is not None
            or self._probeCall is not None
        ):
            return
        self._ping()
        self._probeCall = self.timers.callLater(
            self.policy.probeTimeout(self.srtt, self.rttvar),
            self._probeExpired,
            reason,
            self._snapshot(),
        )

    def _probeExpired(self, reason: str, before: tuple[int, int, int]) -> None:
        self._probeCall = None
        if self.carrier is None or self.ended or self._readPaused:
            return
        if self._snapshot() == before:
            self.log.info("session {sid}: probe unanswered", sid=self.hexID)
            self.dropCarrier(reason)
        else:
            self.liveHeard(self.clock.seconds())

    def _pong(self, token: int) -> None:
        self._heard += 1
        self.livePong(token, self.clock.seconds())

    def _expire(self) -> None:
        self._end(
            SessionExpired(
                "session detached for more than %g seconds" % (self.policy.expireAfter(),)
            )
        )

    # Frames from the carrier (the carrier's parser calls these directly)

    def dataFrameStarted(self, ack: int, length: int) -> None:
        """
        A data frame's head: apply its acknowledgement.
        """
        engine = self.engine
        if ack == engine.acked and not engine.finReceived:
            return
        if engine.dataStarted(ack, length):
            self._acked()

    def reading(self, parse: Callable[[bytes], None], data: bytes) -> None:
        """
        Parse C{data} from our carrier in the application's log context,
        entered once for every frame of this read rather than once per
        payload (as Twisted's transports do once per read).
        """
        if self._inReading:
            parse(data)
            return
        self._inReading = True
        try:
            context.call(self._logContext, parse, data)
        finally:
            self._inReading = False

    def payloadReceived(self, payload: bytes) -> None:
        """
        Payload of a data frame: count it, acknowledge it in due time and
        hand it to the application (or, while its reader is paused in a
        session with channels, hold it: see L{pauseReading}).
        """
        if self._held is not None:
            self._hold(payload, len(payload))
            return
        parent = self.parent
        ack = self.received(len(payload), self.clock.seconds(), parent is None)
        if ack == _machine.ACK_NOW:
            self._sendAck()
        elif ack == _machine.ACK_LATER:
            if parent is None:
                self._arm()
            elif parent.channels is not None:
                # One timer for the acknowledgements of all the channels.
                parent.channels.ackSoon(self)
        if self.closeRequested:
            if self.dataAfterClose():
                self._resetAfterClose()
            return
        app = self.app
        if app is not None:
            self._depth += 1
            try:
                if self._inReading:
                    app.dataReceived(payload)
                else:
                    context.call(self._logContext, app.dataReceived, payload)
            except BaseException:
                self._depth -= 1
                self._appFailed(Failure())
            else:
                self._depth -= 1

    def controlFrameReceived(self, frameType: int, body: bytes) -> None:
        """
        A control frame on an established carrier.

        @raise ProtocolViolation: a frame that has no place here.
        """
        if frameType == _wire.ACK:
            if self.engine.acknowledge(_wire.decodePosition(body)):
                self._acked()
        elif frameType == _wire.ADDRESSES:
            self._peerAdvertised(body)
        elif frameType == _wire.PING:
            self._heard += 1
            carrier = self.carrier
            if carrier is None:
                return
            if carrier.writeBlocked:
                # The peer does not read what we send: an answer would only
                # queue (a flood of heartbeats would grow our memory without
                # bound).  A legitimate peer sees our data when it reads.
                self._unansweredPings += 1
                if self._unansweredPings > _MAX_UNANSWERED_PINGS:
                    self.log.info(
                        "session {sid}: the peer sends heartbeats but does not read; "
                        "dropping the carrier",
                        sid=self.hexID,
                    )
                    self.dropCarrier("peer-not-reading")
                return
            self._unansweredPings = 0
            carrier.transport.write(_wire.encodePong(body))
        elif frameType == _wire.PONG:
            self._pong(_wire.decodePosition(body))
        elif frameType == _wire.FIN:
            if self._held is not None:
                self._hold(_wire.decodePosition(body), 0)
            else:
                self._finReceived(_wire.decodePosition(body))
        elif frameType in _CHANNEL_FRAMES:
            if self.parent is not None:
                raise ProtocolViolation("channel frame inside a channel")
            self._heard += 1
            self.channelTable().controlFrame(frameType, body)
        elif frameType == _wire.ABORT:
            reason = body.decode("utf-8", "replace")
            self.log.info(
                "session {sid} aborted by peer: {reason}", sid=self.hexID, reason=reason
            )
            carrier = self.carrier
            self.carrier = None
            if carrier is not None:
                # Closing it tells the peer we read its abort.
                carrier.retire("peer aborted", graceful=True)
            self._end(PeerAborted("peer aborted the session: %s" % (reason,)))
        else:
            raise ProtocolViolation("unexpected frame type 0x%02x" % (frameType,))

    def _finReceived(self, ack: int) -> None:
        tell = self.peerFinished(ack, self.clock.seconds())
        self._arm()
        if _BUFFER in self._pauseReasons and self.engine.buffered <= self._lowWater:
            self._resumeFor(_BUFFER)
        app = self.app
        if tell:
            halfCloseable = IHalfCloseableProtocol(app, None)
            if halfCloseable is not None:
                self._sendAck()
                self._depth += 1
                try:
                    context.call(self._logContext, halfCloseable.readConnectionLost)
                except BaseException:
                    self._depth -= 1
                    self._appFailed(Failure())
                else:
                    self._depth -= 1
            else:
                self._loseConnection()
        if not self.ended:
            if self.engine.unacknowledged:
                self._sendAck()
            self._checkFinished()

    def acknowledgeNow(self) -> None:
        """
        Acknowledge what we received and have not yet acknowledged, if a
        carrier is up (the delayed acknowledgement of a channel: see
        L{ChannelTable.ackSoon}).
        """
        if self.engine.unacknowledged and self.carrier is not None and not self.ended:
            self._sendAck()

    def _sendAck(self) -> None:
        carrier = self.carrier
        if carrier is not None:
            carrier.transport.write(self.engine.ackFrame())

    def _acked(self) -> None:
        if _BUFFER in self._pauseReasons and self.engine.buffered <= self._lowWater:
            self._resumeFor(_BUFFER)
        if self.engine.finSent:
            self._checkFinished()

    # The application's writes

    def write(self, data: bytes) -> None:
        """
        Send application data (see L{MigrateTransport.write}).

        @raise TypeError: C{data} is not C{bytes}.
        """
        if not isinstance(data, bytes):
            raise TypeError("Data must be bytes")
        if self.noWrites or not data:
            return
        engine = self.engine
        n = len(data)
        if engine.sent - engine.acked + n > self._hardCap:
            if self.options.overflow == "raise":
                raise BufferFull(
                    "session buffer at its hard cap of %d bytes" % (self._hardCap,)
                )
            self.log.warn(
                "session {sid} closed: buffer passed its hard cap of {cap} bytes",
                sid=self.hexID,
                cap=self._hardCap,
            )
            self._depth += 1
            try:
                self._abort(Failure(BufferOverflow("session buffer passed its hard cap")))
            finally:
                self._depth -= 1
            return
        carrier = self.carrier
        if n <= self._smallWrite:
            frame = engine.sendSmall(data)
            if carrier is not None:
                carrier.transport.write(frame)
        else:
            frames = engine.send(data)
            if carrier is not None:
                carrier.transport.writeSequence(frames)
        if not self._watching:
            self._watch()
        if engine.sent - engine.acked > self._highWater:
            self._depth += 1
            try:
                self._checkBuffer()
            finally:
                self._depth -= 1

    def _checkBuffer(self) -> None:
        if self.engine.buffered > self._highWater:
            if _BUFFER not in self._pauseReasons:
                self.onBufferHigh()
            self._pauseFor(_BUFFER)

    def pauseForBudget(self, paused: bool) -> None:
        """
        The server is over (C{True}) or back under (C{False}) its memory
        budget: pause or resume the application's producer.
        """
        if paused:
            self._pauseFor(_BUDGET)
        else:
            self._resumeFor(_BUDGET)

    def loseWriteConnection(self) -> None:
        """
        End our direction once the producer, if any, is unregistered (until
        then its writes still go out, as on Twisted's TCP transport).
        """
        self._depth += 1
        try:
            self._loseWriteConnection()
        finally:
            self._depth -= 1

    def _loseWriteConnection(self) -> None:
        if self.halfClose(self._appProducer is not None):
            self._sendFin()

    def loseConnection(self) -> None:
        """
        Close: no more data to the application, FIN after every byte
        written.  As on Twisted's TCP transport, the application hears
        C{connectionLost} once the FIN is written to a carrier; the session
        then finishes in the background (retransmitting through
        detachments, acknowledging the peer's FIN) up to C{closeTimeout}.
        """
        self._depth += 1
        try:
            self._loseConnection()
        finally:
            self._depth -= 1

    def _loseConnection(self) -> None:
        step = self.close()
        if step is None:
            return
        if step == _machine.HALF_CLOSE:
            self._loseWriteConnection()
        elif step == _machine.CLOSE_DONE:
            self._closeDone()
        self._checkFinished()

    def _sendFin(self) -> None:
        # (A close, not a half-close, gets its deadline: after a half-close
        # the other direction may carry data for as long as it likes, as on
        # TCP.)
        frame = self.finish(self.clock.seconds())
        self._arm()
        carrier = self.carrier
        if carrier is not None:
            carrier.transport.write(frame)
            self._watch()
            self._finWrittenOut()
        self._checkFinished()

    def _finWrittenOut(self) -> None:
        """
        Our FIN was written to a carrier: a full close is done for the
        application; a half-closing application hears
        C{writeConnectionLost}.
        """
        if self.finWrittenOut():
            self._closeDone()
        elif not self.appLost:
            halfCloseable = IHalfCloseableProtocol(self.app, None)
            if halfCloseable is not None:
                self.clock.callLater(0, self._writeConnectionLost, halfCloseable)

    def _writeConnectionLost(self, halfCloseable: IHalfCloseableProtocol) -> None:
        if self.appLost:
            return
        try:
            context.call(self._logContext, halfCloseable.writeConnectionLost)
        except BaseException:
            self._appFailed(Failure())

    def _closeDone(self) -> None:
        """
        The application's full close is complete on our side.
        """
        self._appGone(Failure(ConnectionDone("session closed cleanly")))
        if self.unreadAfterClose and self.aborting is None:
            self._resetAfterClose()

    def _resetAfterClose(self) -> None:
        """
        The peer sent data after the application closed: as a TCP close
        with unread data resets the connection, abort the session.
        """
        self.log.info(
            "session {sid}: the peer sent data after the close; aborted", sid=self.hexID
        )
        self._abortPeer("connection closed by the peer; data after the close discarded")

    def _closeTimedOut(self) -> None:
        if self.engine.acked >= self.engine.sent:
            reason: Exception = ConnectionDone("closed; the peer did not finish its close")
        else:
            reason = SessionExpired("close did not complete in time")
        carrier = self.carrier
        self.carrier = None
        if carrier is not None:
            carrier.retire("close timed out", graceful=True)
        self._end(reason)

    def _checkFinished(self) -> None:
        if not self.finishReady():
            return
        channels = self.channels
        # Our own stream may be complete while the session lives on in its
        # other channels (a client's, unless they all linger too).
        live = bool(channels) and not (self.isClient and channels.allLingering())  # type: ignore[union-attr]
        carrier = self.carrier
        step = self.finishStep(live, carrier is not None, self.clock.seconds())
        self._arm()
        if step == _machine.WAIT_CHANNELS:
            return
        if step == _machine.LINGER:
            # The server learns that its stream arrived from our
            # acknowledgements only, and closes the carrier once it has
            # them all: linger until it has.
            assert carrier is not None
            self._stopLiveness()
            if self.engine.unacknowledged:
                carrier.transport.write(self.engine.ackFrame())
            carrier.retire("session closed", waitForPeer=True, patient=True)
            if self.parent is not None:
                self.parent.channelSettled()
            return
        self.carrier = None
        if carrier is not None:
            if self.engine.unacknowledged:
                carrier.transport.write(self.engine.ackFrame())
            carrier.retire("session closed", graceful=True)
        self._end(ConnectionDone("session closed cleanly"))

    def abort(self, reason: Optional[Failure] = None) -> None:
        """
        End at once, dropping what is unsent: the application hears
        C{connectionLost} (with C{reason}, by default L{ConnectionAborted})
        in the next reactor turn, and the peer is told.  A second call, or
        a call after the end, does nothing.
        """
        self._depth += 1
        try:
            self._abort(reason)
        finally:
            self._depth -= 1

    def _abort(self, reason: Optional[Failure] = None) -> None:
        if self.appLost:
            return
        if self.ended:
            self._appGone(reason if reason is not None else Failure(ConnectionAborted()))
            return
        if reason is None:
            reason = Failure(ConnectionAborted())
        self._appGone(reason)
        if reason.check(BufferOverflow):
            notice = "buffer overflow"
        elif reason.check(ConnectionAborted):
            notice = "aborted"
        else:
            notice = "application error"
        if self._lostCall is not None:
            # As Twisted's TCP, whose reset goes out when the aborting
            # side's connectionLost is delivered: the peer does not hear of
            # the abort before the application that made it.
            self._abortNotice = notice
            return
        self._abortPeer(notice)

    def _abortPeer(self, notice: str) -> None:
        """
        Make our abort reach the peer.  Attached: an C{ABORT} frame, then the
        carrier is closed by the peer once it read it.  A server is done at
        once: it remembers the ended session for a while and tells a peer
        that resumes it.  A client keeps the session until the peer closed
        a carrier after its abort, resuming to deliver it if need be (up to
        C{closeTimeout}).
        """
        if self.ended:
            return
        if self.abortPeer(notice, self.clock.seconds()):
            self._arm()
            self._stopLiveness()
            if self.carrier is not None:
                self._sendAbort(notice)
            return
        carrier = self.carrier
        self.carrier = None
        if carrier is not None:
            # If it does not arrive, the peer resumes and is told then.
            carrier.transport.write(_wire.encodeAbort(notice))
            carrier.retire("session aborted", graceful=True)
        self._end(ConnectionAborted(notice))

    def _sendAbort(self, notice: str) -> None:
        carrier = self.carrier
        assert carrier is not None
        carrier.transport.write(_wire.encodeAbort(notice))
        # The session keeps the carrier: its clean close by the peer ends
        # the session (see carrierLost); losing it otherwise means trying
        # again on another.
        carrier.retire("session aborted", waitForPeer=True)

    def _lingerTimedOut(self) -> None:
        self.log.info(
            "session {sid}: the server did not confirm our last acknowledgement in time",
            sid=self.hexID,
        )
        self._end(ConnectionDone("session closed cleanly"))

    def _abortTimedOut(self) -> None:
        self.log.info("session {sid}: the abort did not reach the peer in time", sid=self.hexID)
        self._end(ConnectionAborted("aborted"))

    def _appFailed(self, failure: Failure) -> None:
        """
        An application callback raised: log it once and abort the session,
        the application hearing the error itself (as from Twisted's
        transports).
        """
        self.log.failure(
            "session {sid}: the application raised; session aborted", failure, sid=self.hexID
        )
        self._abort(failure)

    def _appGone(self, reason: Failure) -> None:
        """
        The application's connection is over: no more writes, no more data;
        C{connectionLost} is delivered at once when the end comes from the
        network or a timer (as Twisted's transports do), and in the next
        reactor turn when it comes from within the application's own call
        (never re-entrantly).
        """
        if not self.appGone():
            return
        driver = self._pullDriver
        if driver is not None:
            driver.halt()
        if self._readPaused:
            # Reading is no longer the application's to pause: what still
            # comes (acknowledgements, the peer's FIN or ABORT) finishes the
            # session.
            self._readPaused = False
            if self._held is not None:
                if self._heldCall is None:
                    self._heldCall = self.clock.callLater(0, self._flushHeld)
            elif self.carrier is not None and not self.carrier.retired:
                self.carrier.resumeReading()
        self._lostReason = reason
        if self._depth:
            self._lostCall = self.clock.callLater(0, self._deliverLost, reason)
        else:
            self._deliverLost(reason)

    def _deliverLost(self, reason: Failure) -> None:
        self._lostCall = None
        try:
            self._tellLost(reason)
        finally:
            notice, self._abortNotice = self._abortNotice, None
            if notice is not None:
                self._abortPeer(notice)

    def _tellLost(self, reason: Failure) -> None:
        producer = self._producer
        self._producer = self._appProducer = self._pullDriver = None
        if producer is not None:
            try:
                producer.stopProducing()
            except BaseException:
                self.log.failure("producer's stopProducing raised")
        if self.transport is not None:
            self.upcalls.notify("sessionEnded", self.transport, reason)
        app = self.app
        if app is not None:
            try:
                context.call(self._logContext, app.connectionLost, reason)
            except BaseException:
                self.log.failure("connectionLost raised")

    def _end(self, reason: Exception) -> None:
        """
        End the session: cancel every timer, abort a carrier still held,
        and tell the application (once) if it was not told already.
        """
        if not self.markEnded():
            return
        self.endReason = reason
        self.state = State.CLOSED
        self._stopLiveness()
        self._arm()
        call, self._heldCall = self._heldCall, None
        if call is not None and call.active():
            call.cancel()
        carrier = self.carrier
        if carrier is not None:
            self.carrier = None
            carrier.retire("session ended")
        if self.channels is not None:
            self.channels.sessionEnded(reason)
        self._tellAppEnded(reason)
        detail = " ".join(str(a) for a in reason.args if a)
        self.log.info(
            "session {sid} ended: {reason}{detail}",
            sid=self.hexID,
            reason=reason.__class__.__name__,
            detail=" (%s)" % (detail,) if detail else "",
            event="ended",
        )
        parent = self.parent
        if parent is not None and parent.channels is not None:
            parent.channels.channelEnded(self)
        self.onEnd(self)
        if not self._closingCarriers:
            self._fireEnded()

    def _tellAppEnded(self, reason: Exception) -> None:
        """
        Tell the application that the session ended with C{reason}, unless
        it is a half-closing application whose both directions ended
        cleanly: that one keeps its connection until it closes it, as on
        Twisted's TCP.
        """
        if not (
            isinstance(reason, ConnectionDone)
            and not self.closeRequested
            and IHalfCloseableProtocol.providedBy(self.app)
        ):
            self._appGone(Failure(reason))

    def carriers(self) -> list[Carrier]:
        """
        Every carrier this session still holds: its current one and those
        closing.  (A channel's carriers are parts of its session's, which
        are the ones that matter to whoever waits for them: only a
        session's own are asked for.)
        """
        held = list(self._closingCarriers or ())
        if self.carrier is not None and self.carrier not in held:
            held.append(self.carrier)
        return cast("list[Carrier]", held)

    def carrierClosing(self, carrier: AnyCarrier) -> None:
        """
        A carrier of ours is closing (flushing, or waiting for the peer to
        close it): the session is not over until it has.
        """
        if self._closingCarriers is None:
            self._closingCarriers = set()
        self._closingCarriers.add(carrier)

    def carrierClosed(self, carrier: AnyCarrier) -> None:
        """
        A carrier of ours has closed.
        """
        closing = self._closingCarriers
        if closing is not None:
            closing.discard(carrier)
            if not closing:
                self._closingCarriers = None
                if self.ended:
                    self._fireEnded()

    def _fireEnded(self) -> None:
        waiting, self._endWaiters = self._endWaiters, None
        for d in waiting or ():
            d.callback(None)

    def end(self, reason: Exception, notice: Optional[str] = None) -> None:
        """
        End the session now (expiry by the operator, a refused resume, a
        server at capacity, ...): the application hears C{reason}.

        @param notice: why, as told to the peer: now in an C{ABORT} if
            attached, and (on a server) to a client that resumes it later.
        """
        if self.ended:
            return
        if notice is not None:
            self.endNotice = notice
            carrier = self.carrier
            if carrier is not None:
                self.carrier = None
                carrier.transport.write(_wire.encodeAbort(notice))
                carrier.retire("session ended: %s" % (notice,), graceful=True)
        self._end(reason)

    def whenEnded(self) -> Deferred[None]:
        """
        A Deferred that fires once the session is entirely over: ended, and
        every carrier it had closed.
        """
        if self.ended and not self._closingCarriers:
            return succeed(None)
        d: Deferred[None] = Deferred()
        if self._endWaiters is None:
            self._endWaiters = []
        self._endWaiters.append(d)
        return d

    def shutdown(self) -> None:
        """
        The reactor is stopping: end now, and tell the application now (it
        would not get another reactor turn).
        """
        carrier, self.carrier = self.carrier, None
        if carrier is not None:
            carrier.abandon()
        if self.channels is not None:
            self.channels.shutdown()
        reason = ConnectionLost("the reactor is shutting down")
        self._end(reason)
        self._appGone(Failure(reason))
        call = self._lostCall
        if call is not None and call.active() and self._lostReason is not None:
            call.cancel()
            self._deliverLost(self._lostReason)



    @property
    def closing(self) -> bool:
        """
        Whether a close was requested and has not completed.
        """
        return self.writeClosed and not self.appLost

    # The application's producer

    def registerProducer(self, producer: object, streaming: bool) -> None:
        """
        Register the application's producer.

        @raise RuntimeError: one is registered already.
        """
        self._depth += 1
        try:
            self._registerProducer(producer, streaming)
        finally:
            self._depth -= 1

    def _registerProducer(self, producer: object, streaming: bool) -> None:
        if self._appProducer is not None:
            raise RuntimeError(
                "Cannot register producer %s, because producer %s was never "
                "unregistered." % (producer, self._appProducer)
            )
        if self.appLost:
            producer.stopProducing()  # type: ignore[attr-defined]
            return
        self._appProducer = producer
        if streaming:
            self._producer = producer  # type: ignore[assignment]
            self._appPaused = False
            if self._pauseReasons:
                self._appPaused = True
                producer.pauseProducing()  # type: ignore[attr-defined]
        else:
            driver = _PullDriver(
                producer,  # type: ignore[arg-type]
                self.clock,
                lambda: self.engine.sent,
                self._appFailed,
            )
            self._pullDriver = driver
            self._producer = driver
            self._appPaused = bool(self._pauseReasons)
            if self._appPaused:
                driver.pauseProducing()
            driver.start(self.engine.buffered > 0)

    def unregisterProducer(self) -> None:
        """
        Unregister the application's producer; a pending FIN goes out.
        """
        self._depth += 1
        try:
            self._unregisterProducer()
        finally:
            self._depth -= 1

    def _unregisterProducer(self) -> None:
        driver = self._pullDriver
        self._producer = self._appProducer = self._pullDriver = None
        if driver is not None:
            driver.halt()
        if self.finPending and not self.appLost:
            self._sendFin()

    def _pauseFor(self, reason: str) -> None:
        if reason not in self._pauseReasons:
            self._pauseReasons = _interned(self._pauseReasons | {reason})
        producer = self._producer
        if producer is not None and not self._appPaused:
            self._appPaused = True
            try:
                producer.pauseProducing()
            except BaseException:
                self._appFailed(Failure())

    def _resumeFor(self, reason: str) -> None:
        if reason in self._pauseReasons:
            self._pauseReasons = _interned(self._pauseReasons - {reason})
        producer = self._producer
        if not self._pauseReasons and producer is not None and self._appPaused:
            self._appPaused = False
            try:
                producer.resumeProducing()
            except BaseException:
                self._appFailed(Failure())

    # IPushProducer, as registered on each carrier

    def pauseProducing(self) -> None:
        """
        The carrier's send buffer is full.
        """
        if self.carrier is not None:
            self.carrier.writeBlocked = True
        self._pauseFor(_CARRIER)
        if self.channels is not None:
            self.channels.setWriteBlocked(True)

    def resumeProducing(self) -> None:
        """
        The carrier's send buffer drained.
        """
        if self.carrier is not None:
            self.carrier.writeBlocked = False
        self._resumeFor(_CARRIER)
        if self.channels is not None:
            self.channels.setWriteBlocked(False)

    def stopProducing(self) -> None:
        """
        The carrier is going away; its loss detaches us, nothing to do here.
        """

    # The application's reading

    def pauseReading(self) -> None:
        """
        The application paused its transport: stop reading every carrier.
        In a session with channels, the carrier goes on being read for the
        other channels and our stream's bytes are held (unacknowledged, so
        a new carrier brings them again), up to C{channelWindow} bytes;
        past that the carrier is paused after all (our stream has no
        window of its own that the peer would respect).
        """
        self._readPaused = True
        if self.channels is not None:
            if self._held is None:
                self._held = []
            if self.carrier is not None:
                self._watch()
            return
        if self.carrier is not None:
            self.carrier.pauseReading()
            self._watch()

    def resumeReading(self) -> None:
        """
        The application resumed its transport.
        """
        self._readPaused = False
        if self._held is not None:
            if self._heldCall is None:
                self._heldCall = self.clock.callLater(0, self._flushHeld)
            return
        if self.carrier is not None:
            self.carrier.resumeReading()

    def _hold(self, item: bytes | int, size: int) -> None:
        """
        Keep a payload (or the peer's FIN, by its acknowledgement) for our
        paused reader.
        """
        held = self._held
        assert held is not None
        held.append(item)
        self._heldBytes += size
        carrier = self.carrier
        if (
            self._heldBytes > self.options.channelWindow
            and carrier is not None
            and not self._heldPausedCarrier
        ):
            self._heldPausedCarrier = True
            carrier.pauseReading()

    def _flushHeld(self) -> None:
        """
        Deliver what was held for our reader, in order, until it pauses
        again.
        """
        self._heldCall = None
        held = self._held or []
        self._held = None
        self._heldBytes = 0
        for i, item in enumerate(held):
            if self.ended:
                return
            if self._readPaused:
                self._held = held[i:]
                self._heldBytes = sum(len(x) for x in self._held if isinstance(x, bytes))
                return
            try:
                if isinstance(item, bytes):
                    # (Nothing is held while this runs: straight through.)
                    self.payloadReceived(item)
                else:
                    self._finReceived(item)
            except ProtocolViolation as e:
                self.log.warn(
                    "session {sid}: protocol error: {error}", sid=self.hexID, error=str(e)
                )
                self.dropCarrier("protocol-error")
                return
        if self._readPaused:
            self._held = []
        if self._heldPausedCarrier:
            self._heldPausedCarrier = False
            carrier = self.carrier
            if carrier is not None and not carrier.retired:
                carrier.resumeReading()

    def _dropHeld(self) -> None:
        """
        Our carrier is gone: so is what it brought and we held (unacknowledged:
        the next carrier brings it again).
        """
        if self._held is not None:
            self._held = [] if self._readPaused else None
        self._heldBytes = 0
        self._heldPausedCarrier = False


def restoreSession(
    clock: IReactorTime,
    record: SessionRecord,
    options: SessionOptions,
    policy: Optional[IMigratePolicy],
    upcalls: Upcalls,
    appFactory: Any,
    peer: IAddress,
    channelFactories: Optional[Mapping[str, IProtocolFactory]] = None,
) -> Optional[Session]:
    """
    Rebuild a hibernated session and its migratable application: the
    application protocol is built by C{appFactory} and given its saved state
    (it hears C{restoreMigrationState}, not C{connectionMade}).

    @return: the session, detached; or C{None} (logged) when the factory
        builds nothing, builds a protocol that is not L{IMigratable}, or the
        restoration raises.
    """
    session = Session.fromRecord(clock, record, options, policy, upcalls)
    try:
        app = appFactory.buildProtocol(session.lastPeer or peer)
    except Exception:
        Session.log.failure("the application factory raised while restoring a session")
        app = None
    migratable = IMigratable(app, None)
    if app is None or migratable is None or record.appState is None:
        Session.log.info(
            "session {sid}: its application cannot be restored", sid=record.sessionID.hex()
        )
        session._end(SessionExpired("not restorable"))
        return None
    from ._transport import MigrateTransport

    transport = MigrateTransport(session)
    session.setApp(app, transport)
    app.transport = transport
    app.connected = True
    try:
        migratable.restoreMigrationState(record.appState)
    except Exception:
        Session.log.failure("restoreMigrationState raised; the session expires")
        session.app = None
        session._end(SessionExpired("application state could not be restored"))
        return None
    session.setChannelFactories(appFactory, channelFactories)
    if record.channels:
        session.channelTable().restore(record.channels)
    return session
