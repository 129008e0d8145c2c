# -*- test-case-name: tests.test_session,tests.test_channels -*-
"""
The session itself: its state, its owner, its carriers, the frames they
bring and the one timer of its deadlines.  Its other roles are mixins in
the modules beside this one (see L{migrate._session}).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionAborted, ConnectionDone
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IHalfCloseableProtocol,
    ILoggingContext,
    IProtocol,
    IProtocolFactory,
    IPushProducer,
    IReactorTime,
)
from twisted.logger import Logger
from twisted.python import context
from twisted.python.failure import Failure
from zope.interface import implementer

from .._sansio import wire as _wire
from .._sansio import session as _machine
from .._sansio.session import SessionMachine
from .._sansio.stream import ProtocolViolation
from .._address import parseAddress
from .._options import SessionOptions
from .._upcalls import Upcalls
from ..interfaces import IMigratable, IMigratePolicy, SessionRecord
from ..policy import DefaultPolicy
from ..errors import PeerAborted, SessionExpired

if TYPE_CHECKING:
    from .._channels import ChannelTable
    from .._sansio.channels import StreamWindow
    from .._transport import MigrateTransport
    from .state import AnyCarrier


from .state import (
    State,
    _BUFFER,
    _CHANNEL_FRAMES,
    _DETACHED,
    _MAX_UNANSWERED_PINGS,
    _NO_ADDRESSES,
    _ignore,
    _logContextFor,
    _nothing,
)
from .channels import ChannelRole
from .closing import ClosingRole
from .hibernation import HibernationRole
from .liveness import LivenessRole
from .producer import ProducerRole, _PullDriver
from .reading import ReadingRole


@implementer(IPushProducer)
class Session(
    ChannelRole, ClosingRole, HibernationRole, LivenessRole, ProducerRole, ReadingRole
):
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
        "_appProducer",
        "_closingCarriers",
        "_depth",
        "_endWaiters",
        "_heard",
        "_liveCall",
        "_logContext",
        "_lostCall",
        "_lostReason",
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
        "_zero",
        "__weakref__",
    )

    # Its logs keep the namespace they had when this class was defined in the
    # module migrate._session ("migrate._session.Session").
    __module__ = "migrate._session"

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
        self._producer: Optional[IPushProducer] = None
        self._appProducer: object = None
        self._pullDriver: _PullDriver | None = None
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
        self._zero: Optional[StreamWindow] = None
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
        self.setLimits(*policy.bufferLimits())

    @property
    def hexID(self) -> str:
        """
        The session id as hex, for logs and the application (with C{/N}
        after it for channel N).
        """
        if self.channelID:
            return "%s/%d" % (self.sessionID.hex(), self.channelID)
        return self.sessionID.hex()

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

    def abandonCarrier(self) -> None:
        """
        Forget our carrier without closing it (a channel's, whose session
        ended: there is nothing left to tell the peer on it).
        """
        carrier, self.carrier = self.carrier, None
        if carrier is not None:
            carrier.abandon()

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
        engine = self.engine
        zero = self._zero
        if zero is not None and zero.limit:
            # Our first stream goes only as far as the peer's window on it.
            end = min(zero.limit, engine.sent)
            frames, resent = engine.resumeFrames(peerReceived, end)
            finOut = engine.finSent and end >= engine.sent
            zero.newCarrier(engine.acked, end, finOut)
        else:
            frames, resent = engine.resumeFrames(peerReceived)
            finOut = engine.finSent
        self.retransmitted += resent
        self.state = State.ATTACHED
        self.detachedSince = None
        carrier.transport.registerProducer(self, True)
        if self._readPaused and self._held is None:
            carrier.pauseReading()
        if frames:
            carrier.transport.writeSequence(frames)
        if finOut and not self.finWritten:
            self._finWrittenOut()
            if self.aborting is not None or self.carrier is not carrier:
                return
        if self.parent is None:
            self._startLiveness()
            self._sendAdvert()
            if self.channels is not None:
                self._grantZero()
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
        self.carrierFreed()
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
        # What the channels write during this read goes out in one write
        # at its end (bounded: see ChannelTable.holdOutput).
        table = self.channels
        gathering = table is not None and table.holdOutput()
        try:
            context.call(self._logContext, parse, data)
        finally:
            self._inReading = False
            if gathering:
                table.flushOutput()  # type: ignore[union-attr]

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
        if self._zero is not None:
            self._zeroRead()
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
            if frameType == _wire.CHANNEL_WINDOW:
                channel, limit = _wire.decodeChannelWindow(body)
                if channel == 0:
                    self._zeroGranted(limit)
                    return
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
        if self.bufferDrained():
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
        if self.bufferDrained():
            self._resumeFor(_BUFFER)
        if self.engine.finSent:
            self._checkFinished()


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
    from .._transport import MigrateTransport

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
