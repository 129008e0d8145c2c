# -*- test-case-name: tests.test_hostile,tests.test_hibernation,tests.test_moves -*-
"""
The server side: a wrapping protocol factory that keeps a table of sessions.

L{MigrateServerFactory} wraps any protocol factory.  Each accepted
connection becomes a L{Carrier}; the factory greets it, runs the handshake
with the limits of its L{SessionOptions}, and either opens a new session
(building the application protocol only after the client proved it holds the
new key) or hands the carrier to the verified session it resumes.  A
handshake that fails for any reason closes that carrier alone, with a logged
reason and a reject frame; no session is touched before a proof verifies.
"""

from __future__ import annotations

import ipaddress
from collections import Counter, OrderedDict, deque
from typing import Any, Mapping, Optional, Sequence, Union

from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IProtocolFactory,
    IReactorCore,
    IReactorTime,
)
from twisted.internet.protocol import Factory
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from .._sansio import wire as _wire
from .._advertise import AdvertisePolicy
from .._sansio.stream import ProtocolViolation
from .._sansio.handshake import HandshakeFailed, ResumeRequest, ServerHandshake
from .._memory import releaseFreedMemory
from .._timers import TimerSet
from .._options import SessionOptions
from .._protocol import Carrier, whenAllClosed
from ..store import logStoreFailure
from .._channels import ChannelTable
from .._session import Session, State, restoreSession
from .._transport import MigrateTransport
from .._upcalls import Upcalls
from ..interfaces import (
    ConnectivityEvent,
    CorruptRecord,
    StoreUnavailable,
    IConnectivityMonitor,
    ILocator,
    IMigratable,
    IMigratePolicy,
    ISessionStore,
    SessionRecord,
)
from ..locate import locatorList as _locatorList
from ..monitors import MonitorLease
from .._options import defaultMemoryBudget
from ..policy import DefaultPolicy
from ..errors import SessionExpired


def _checkSecure(secure: bool, carrier: Carrier) -> None:
    """
    A session opened over TLS resumes only over TLS: its data (and the
    retransmission of what was lost) must never cross the network in the
    clear because a resume came over plain TCP.

    @raise HandshakeFailed: it would.
    """
    if secure and not carrier.secure:
        raise HandshakeFailed(
            _wire.REJECT_REFUSED, "this session was opened over TLS and resumes only over TLS"
        )


def _both(a: object, b: object) -> object:
    """
    Combine two answers (C{bool} or Deferred of one): C{False} if either
    is, C{True} if both are, else a Deferred.
    """
    if a is False or b is False:
        return False
    pending = [x for x in (a, b) if isinstance(x, Deferred)]
    if not pending:
        return True
    return gatherResults(pending).addCallback(lambda answers: all(x is not False for x in answers))


# Seconds after which a client refused as busy may try again: soon when
# handshakes are crowded (each lasts a round trip), later when the session
# table is full.
_BUSY_RETRY = 0.25

#: What the clients of sessions that end with their server are told.
_SHUTDOWN_NOTICE = "server shut down"

#: What clients reconnecting to a server that stops are told: it is
#: checkpointing its sessions for a restart on the same store.
_RESTART_NOTICE = "server restarting"

#: When a client refused by a stopping server may try again.
_STOPPING_RETRY = 1.0

_FULL_RETRY = 2.0

#: What the memory budget counts for a handshake in progress: its carrier,
#: parser, handshake state and transport (an estimate, in bytes).
HANDSHAKE_COST = 8 * 1024

#: What the memory budget counts for a closed-session record (the session
#: object without its data: an estimate, in bytes).
RECORD_COST = 4 * 1024

#: Freed session data (bytes) after which the server gives the C library's
#: free heap back to the system (see L{migrate._memory}).
_TRIM_AFTER = 8 * 1024 * 1024


def _hostOf(address: IAddress) -> str:
    return str(getattr(address, "host", address))


def _shareOf(address: IAddress) -> str:
    """
    What the per-address limits count C{address} under: its host, but for
    IPv6 its /64 network (one subscriber's, which it may spread over as
    many addresses as it likes), and an IPv4-mapped IPv6 address as the
    IPv4 address it is.
    """
    host = _hostOf(address)
    if ":" not in host:
        return host
    try:
        parsed = ipaddress.IPv6Address(host.split("%", 1)[0])
    except ValueError:
        return host
    if parsed.ipv4_mapped is not None:
        return str(parsed.ipv4_mapped)
    return str(ipaddress.IPv6Network((int(parsed) >> 64 << 64, 64)))


class _PendingCarrier:
    """
    Per-carrier handshake state kept by the server.

    @ivar handshake: the sans-IO handshake.
    @ivar host: what it counts against (see L{_shareOf}).
    @ivar deadline: the handshake deadline call.
    """

    def __init__(self, handshake: ServerHandshake, host: str, deadline: IDelayedCall):
        self.handshake = handshake
        self.host = host
        self.deadline = deadline
        self.deciding = False


class MigrateServerFactory(Factory):
    """
    Wrap C{wrappedFactory} so every protocol it builds lives in a Migrate
    session that survives the loss of its connections.

    @ivar wrappedFactory: the application's factory.
    @ivar clock: the clock for every timer.
    @ivar options: limits and timeouts.
    @ivar sessions: live and detached sessions by id.
    @ivar _closed: cleanly closed sessions remembered for
        C{options.closedLinger}, by id, oldest first, with their close time.
        They do not count against C{maxSessions}.
    @ivar _closedPerHost: the ids of those, per peer host, oldest first
        (bounded by C{options.maxClosedPerHost}).
    @ivar _pending: carriers still in their handshake.
    @ivar _pendingPerHost: how many of them each peer host has.
    @ivar _liveByHost: how many live (attached, detached or hibernated in
        memory) sessions each peer host has, and C{_countedHost} the host
        each is counted under, by id.
    @ivar _opens: openings asked for by each peer host in the second
        C{_openSecond} (cleared each second).
    """

    log = Logger()
    protocol = Carrier

    def __init__(
        self,
        wrappedFactory: IProtocolFactory,
        clock: IReactorTime,
        options: Optional[SessionOptions] = None,
        policy: Optional[IMigratePolicy] = None,
        observers: Optional[list[object]] = None,
        store: Optional[ISessionStore] = None,
        monitor: Optional[IConnectivityMonitor] = None,
        locator: Union[ILocator, Sequence[ILocator], None] = None,
        publishName: Optional[str] = None,
        serviceInterface: Optional[str] = None,
        advertise: Union[str, AdvertisePolicy, None] = None,
        channels: Optional[Mapping[str, IProtocolFactory]] = None,
    ) -> None:
        """
        @param channels: what the channels a client opens are, by name
            (see L{IMigrateTransport.openChannel}): the factory that builds
            each one's protocol.  By default the only name is C{""}, built
            by C{wrappedFactory} (another connection to the same service);
            a name not here is refused.
        @param advertise: what clients are told about where the server can
            be reached: C{"auto"} (the default: what a direct client can
            verify, see L{migrate._advertise}), C{"none"}, or the
            operator's C{"HOST:PORT[,HOST:PORT...]"} (behind NAT, a port
            forward or a load balancer).
        @param monitor: watches this host's addresses; sessions are told
            in-band where the server can be reached, newest address first,
            so that clients follow a server that moves.
        @param locator: where this host publishes its addresses under
            C{publishName} whenever they change (so that clients that were
            away find it).
        @param serviceInterface: only addresses on this interface are
            advertised and published (default: every global address).
        """
        self.locators: list[ILocator] = (
            _locatorList(locator)
        )
        self.publishName = publishName
        self.serviceInterface = serviceInterface
        self.wrappedFactory = wrappedFactory
        self.channelFactories = channels
        self.monitor = MonitorLease(monitor) if monitor is not None else None
        self._monitorHeld = False
        self._addresses: list[str] = []
        self._interfaces: dict[str, str] = {}
        self._preferred: Optional[str] = None
        self.advertisePolicy = (
            advertise if isinstance(advertise, AdvertisePolicy) else AdvertisePolicy.parse(advertise)
        )
        self._republishCall: Optional[IDelayedCall] = None
        self.listeningHost: Optional[str] = None
        self.clock = clock
        self.timers = TimerSet(clock)
        self.options = options if options is not None else SessionOptions()
        self.policy = policy if policy is not None else DefaultPolicy(self.options)
        self.observers = observers if observers is not None else []
        self.store = store
        self._saving: dict[bytes, SessionRecord] = {}
        self._detached: OrderedDict[bytes, Session] = OrderedDict()
        self.memoryBudget = self.options.memoryBudget or defaultMemoryBudget()
        self._budgetCall: Optional[IDelayedCall] = None
        self._overBudget = False
        self._purgeCall: Optional[IDelayedCall] = None
        self.sessions: dict[bytes, Session] = {}
        self._closed: OrderedDict[bytes, tuple[float, Session]] = OrderedDict()
        self._closedPerHost: dict[str, deque[bytes]] = {}
        self._pending: dict[Carrier, _PendingCarrier] = {}
        self._pendingPerHost: Counter[str] = Counter()
        self._liveByHost: Counter[str] = Counter()
        self._countedHost: dict[bytes, str] = {}
        self._opens: Counter[str] = Counter()
        self._openSecond = -1
        self._freedSinceTrim = 0
        self._stopping: Optional[str] = None
        self._draining = False
        self._drainWait: Optional[Deferred[None]] = None
        self._trimCall: Optional[IDelayedCall] = None
        self._opensTotal = 0
        self._shutdownTrigger: Optional[object] = None

    def addObserver(self, observer: object) -> None:
        """
        Tell C{observer} (any object with some L{IMigrateUpcalls} methods)
        about every session opened from now on.
        """
        self.observers.append(observer)

    def logPrefix(self) -> str:
        return "Migrate(%s)" % (
            getattr(self.wrappedFactory, "logPrefix", lambda: "?")(),
        )

    def doStart(self) -> None:
        self.wrappedFactory.doStart()
        super().doStart()

    def doStop(self) -> None:
        self.wrappedFactory.doStop()
        super().doStop()
        call, self._trimCall = self._trimCall, None
        if call is not None and call.active():
            call.cancel()

    def _freed(self, nbytes: int) -> None:
        """
        C{nbytes} of session data are being let go: past L{_TRIM_AFTER} in
        all, give the free heap back to the system in a moment (once the
        buffers and their carriers are really gone), at most once a second.
        """
        self._freedSinceTrim += nbytes
        if self._freedSinceTrim >= _TRIM_AFTER and self._trimCall is None:
            self._trimCall = self.clock.callLater(1.0, self._trim)

    def _trim(self) -> None:
        self._trimCall = None
        self._freedSinceTrim = 0
        releaseFreedMemory()

    def buildProtocol(self, addr: Optional[IAddress]) -> Carrier:
        return Carrier(self, self.options.maxFrame, self.clock, self.options.drainTimeout)

    # Handshaker

    def carrierConnected(self, carrier: Carrier) -> None:
        if self._stopping is not None:
            # Going away: clients hold on (a restart on the same store
            # resumes their sessions) or learn why at once.
            carrier.reject(_wire.REJECT_BUSY, self._stopping, _STOPPING_RETRY)
            return
        host = _shareOf(carrier.transport.getPeer())
        # The per-address bound is for sharing the table when it is
        # crowded: while less than half of it is in use, one address (a
        # load balancer, a NAT, one busy client) may use what is free.
        if (
            self._pendingPerHost[host] >= self.options.maxPendingPerHost
            and 2 * len(self._pending) >= self.options.maxPending
        ):
            carrier.reject(
                _wire.REJECT_BUSY, "too many handshakes from %s" % (host,), _BUSY_RETRY
            )
            return
        if len(self._pending) >= self.options.maxPending and not self._evictPending():
            carrier.reject(_wire.REJECT_BUSY, "too many handshakes in progress", _BUSY_RETRY)
            return
        handshake = ServerHandshake(carrier.exporter)
        deadline = self.clock.callLater(
            self.options.handshakeTimeout, carrier.fail, "handshake timed out"
        )
        self._pending[carrier] = _PendingCarrier(handshake, host, deadline)
        self._pendingPerHost[host] += 1
        carrier.transport.write(handshake.hello())

    def _evictPending(self) -> bool:
        """
        The handshake table is full: drop the oldest handshake of the host
        that has the most of them (an idle connection, most likely), rather
        than refuse a fresh one, as sshd's C{MaxStartups} drops early; so
        that idle connections from some addresses never lock others out.
        Handshakes waiting for a decision (a stored session being read, the
        application deciding on a resume) are not dropped.

        @return: whether one was dropped.
        """
        counts = Counter(s.host for s in self._pending.values() if not s.deciding)
        if not counts:
            return False
        host = counts.most_common(1)[0][0]
        for carrier, state in self._pending.items():
            if state.host == host and not state.deciding:
                self.log.debug(
                    "handshake table full: dropped the oldest handshake from {host}", host=host
                )
                self._donePending(carrier)
                carrier.retire("dropped to make room for a new handshake")
                return True
        return False

    def _donePending(self, carrier: Carrier) -> None:
        state = self._pending.pop(carrier, None)
        if state is None:
            return
        if state.deadline.active():
            state.deadline.cancel()
        self._pendingPerHost[state.host] -= 1
        if not self._pendingPerHost[state.host]:
            del self._pendingPerHost[state.host]

    def carrierFailed(self, carrier: Carrier, reason: str) -> None:
        self._donePending(carrier)

    def handshakeFrame(self, carrier: Carrier, frameType: int, body: bytes) -> None:
        state = self._pending.get(carrier)
        if state is None or state.deciding:
            raise HandshakeFailed(_wire.REJECT_PROTOCOL, "frame out of order in handshake")
        handshake = state.handshake
        if frameType == _wire.OPEN:
            self._admitOpen(state.host)
            carrier.transport.write(handshake.receiveOpen(body))
        elif frameType == _wire.OPEN_CONFIRM:
            keys = handshake.receiveOpenConfirm(body)
            self._donePending(carrier)
            self._open(carrier, keys.sessionID, keys.key, state.host)
        elif frameType == _wire.RESUME:
            request = handshake.parseResume(body)
            self._purgeClosed()
            session = self.sessions.get(request.sessionID)
            if session is not None and not session.hibernated:
                self._resumeLive(carrier, state, session, request)
                return
            record = self._saving.get(request.sessionID)
            if record is None and self.store is None:
                raise HandshakeFailed(_wire.REJECT_UNKNOWN_SESSION, "unknown session")
            # A hibernated session: its checkpoint may have to be read from
            # the store first; the handshake deadline bounds the wait.
            state.deciding = True
            loaded: Deferred[Optional[SessionRecord]] = (
                succeed(record) if record is not None or self.store is None
                else self.store.load(request.sessionID)
            )
            loaded.addCallbacks(
                lambda rec: self._resumeStored(carrier, state, request, session, rec),
                lambda f: self._storeFailed(carrier, state, request.sessionID, f),
            )
            loaded.addErrback(
                lambda f: self.log.failure("resuming a hibernated session failed", f)
            )
        else:
            raise HandshakeFailed(
                _wire.REJECT_PROTOCOL,
                "unexpected frame type 0x%02x in handshake" % (frameType,),
            )

    def _resumeLive(
        self, carrier: Carrier, state: _PendingCarrier, session: Session, request: ResumeRequest
    ) -> None:
        """
        Verify a resume of a session in memory and, if the policy and the
        application agree, accept it.

        @raise HandshakeFailed: the proof, the generation or the positions
            are wrong; nothing changed.
        """
        state.handshake.verifyResume(request, session.key, session.generation)
        _checkSecure(session.secure, carrier)
        if session.ended and session.endNotice is not None:
            # It ended while the peer was away: accept, to tell it why.
            self._acceptResume(carrier, state, session, request)
            return
        try:
            session.engine.checkResume(request.received)
        except ProtocolViolation as e:
            raise HandshakeFailed(_wire.REJECT_PROTOCOL, str(e))
        if session.state is State.CLOSED or session.transport is None:
            self._acceptResume(carrier, state, session, request)
            return
        newPeer = carrier.transport.getPeer()
        if not session.policy.acceptResumeFrom(session.lastPeer, newPeer):
            self._refuse(carrier, session, "resume from a new address refused by policy")
            return
        downtime = (
            self.clock.seconds() - session.detachedSince
            if session.detachedSince is not None
            else 0.0
        )
        decision: object = session.upcalls.decide(
            "resumeRequested", session.transport, session.lastPeer, newPeer, downtime
        )
        migratable = IMigratable(session.app, None)
        if migratable is not None and decision is not False:
            try:
                verdict = migratable.validateResume(downtime, newPeer)
            except Exception:
                self.log.failure("validateResume raised; refusing the resume")
                verdict = False
            decision = _both(decision, verdict)
        if decision is False:
            self._refuse(carrier, session, "resume refused by the application")
        elif decision is True:
            self._acceptResume(carrier, state, session, request)
        else:
            # The application takes its time; the handshake deadline still
            # bounds the wait.
            state.deciding = True

            def decided(ok: bool) -> None:
                if carrier.retired or self._pending.get(carrier) is not state:
                    return
                if session.ended:
                    carrier.reject(_wire.REJECT_UNKNOWN_SESSION, "unknown session")
                elif request.generation <= session.generation:
                    carrier.reject(_wire.REJECT_STALE, "stale generation")
                elif ok:
                    self._acceptResume(carrier, state, session, request)
                else:
                    self._refuse(carrier, session, "resume refused by the application")

            assert isinstance(decision, Deferred)
            decision.addCallback(decided)

    def _resumeStored(
        self,
        carrier: Carrier,
        state: _PendingCarrier,
        request: ResumeRequest,
        stub: Optional[Session],
        record: Optional[SessionRecord],
    ) -> None:
        """
        Resume a hibernated session from its checkpoint: verify first, then
        rebuild (or wake) it, then go on as for a live session.
        """
        if carrier.retired or self._pending.get(carrier) is not state:
            return
        state.deciding = False
        sid = request.sessionID
        if self.sessions.get(sid) is not stub or (stub is not None and not stub.hibernated):
            # Someone else resumed or ended it meanwhile.
            live = self.sessions.get(sid)
            if live is None:
                carrier.reject(_wire.REJECT_UNKNOWN_SESSION, "unknown session")
                return
            self._tryResume(carrier, state, live, request)
            return
        if record is None:
            if stub is not None:
                stub.end(SessionExpired("hibernated state lost from the store"))
            carrier.reject(_wire.REJECT_UNKNOWN_SESSION, "unknown session")
            return
        if record.kind != "stream":
            # A datagram session's checkpoint in a shared store.
            carrier.reject(_wire.REJECT_UNKNOWN_SESSION, "unknown session")
            return
        try:
            state.handshake.verifyResume(request, record.key, record.generation)
            _checkSecure(record.secure, carrier)
            if not record.acked <= request.received <= record.sent + record.finSent:
                raise HandshakeFailed(_wire.REJECT_PROTOCOL, "resume position out of range")
        except HandshakeFailed as e:
            carrier.reject(e.code, e.reason)
            return
        if record.expiresAt <= self.clock.seconds():
            self._forgetStored(sid)
            if stub is not None:
                stub.end(SessionExpired("hibernated session expired"))
            carrier.reject(_wire.REJECT_UNKNOWN_SESSION, "session expired")
            return
        if stub is not None:
            stub.wake(record)
            session: Optional[Session] = stub
        elif record.appState is None:
            # Its application could not be kept across a restart.
            self._forgetStored(sid)
            self.log.info(
                "session {sid}: hibernated without application state; expired",
                sid=sid.hex(),
            )
            carrier.reject(_wire.REJECT_UNKNOWN_SESSION, "session expired (not migratable)")
            return
        else:
            session = self._rebuild(record, carrier)
            if session is None:
                self._forgetStored(sid)
                carrier.reject(_wire.REJECT_UNKNOWN_SESSION, "session could not be restored")
                return
        self._forgetStored(sid)
        assert session is not None
        self._tryResume(carrier, state, session, request)

    def _tryResume(
        self, carrier: Carrier, state: _PendingCarrier, session: Session, request: ResumeRequest
    ) -> None:
        try:
            self._resumeLive(carrier, state, session, request)
        except HandshakeFailed as e:
            carrier.reject(e.code, e.reason)

    def _storeFailed(
        self, carrier: Carrier, state: _PendingCarrier, sid: bytes, failure: Failure
    ) -> None:
        """
        The store could not give back a checkpoint: say so clearly; that
        session cannot resume, others are unaffected.
        """
        if failure.check(CorruptRecord):
            self.log.error("{error}", error=str(failure.value))
            self._forgetStored(sid)
            stub = self.sessions.get(sid)
            if stub is not None and stub.hibernated:
                stub.end(SessionExpired("hibernated state unusable"))
        elif failure.check(StoreUnavailable):
            # Logged by the store itself, once; the checkpoint may be good
            # again when the store is: the client is told to try later.
            if not carrier.retired and self._pending.get(carrier) is state:
                carrier.reject(
                    _wire.REJECT_BUSY, "session store unavailable", _FULL_RETRY
                )
            return
        else:
            self.log.failure("session {sid}: the store failed", failure, sid=sid.hex())
        if not carrier.retired and self._pending.get(carrier) is state:
            carrier.reject(_wire.REJECT_UNKNOWN_SESSION, "session state unusable")

    def _rebuild(self, record: SessionRecord, carrier: Carrier) -> Optional[Session]:
        """
        Rebuild a session and its migratable application from a checkpoint.
        """
        session = restoreSession(
            self.clock,
            record,
            self.options,
            self.policy,
            Upcalls(self.observers),
            self.wrappedFactory,
            carrier.transport.getPeer(),
            self.channelFactories,
        )
        if session is None:
            return None
        self._adopt(session, carrier.transport.getPeer())
        self.log.info(
            "session {sid} restored from the store", sid=session.hexID, event="restored"
        )
        return session

    def _acceptResume(
        self, carrier: Carrier, state: _PendingCarrier, session: Session, request: ResumeRequest
    ) -> None:
        self._donePending(carrier)
        carrier.transport.write(
            state.handshake.acceptResume(request, session.key, session.engine.received)
        )
        session.lastHost = carrier.transport.getHost()
        self._setAdvertisement(session, send=False)
        session.generation = request.generation
        self._forgetDetached(session)
        if session.state is not State.CLOSED:
            session.handoffs += 1
            self._countHost(session, state.host)
            self.log.info(
                "session {sid} resumed from {peer} (generation {generation})",
                sid=session.hexID,
                peer=_hostOf(carrier.transport.getPeer()),
                generation=request.generation,
                event="resumed",
            )
        session.attach(carrier, request.received)

    def _refuse(self, carrier: Carrier, session: Session, reason: str) -> None:
        """
        A verified resume is refused (by policy or by the application): the
        session ends on both sides.
        """
        self.log.info("session {sid}: {reason}", sid=session.hexID, reason=reason)
        carrier.reject(_wire.REJECT_REFUSED, reason)
        session.end(SessionExpired(reason))

    def drain(self, timeout: float) -> Deferred[None]:
        """
        Stop taking new sessions (openings are refused as busy, "server
        draining", so that a load balancer's next pick or a later retry
        goes elsewhere) while the sessions already here go on, resuming as
        usual, until they all ended or C{timeout} seconds passed: for
        rolling restarts.  A second call only waits again.

        @return: a L{Deferred} that fires when no session is left in memory
            (hibernated ones live on in the store) or at the timeout.
        """
        if not self._draining:
            self._draining = True
            self.log.info(
                "draining: no new sessions; waiting up to {timeout} s for {n} session(s)",
                timeout=timeout,
                n=self._liveCount(),
            )
        live = [
            s.whenEnded() for s in self.sessions.values() if not s.ended and not s.hibernated
        ]
        done: Deferred[None] = Deferred()
        self._drainWait = done
        if not live:
            done.callback(None)
            return done
        def fire() -> None:
            if not done.called:
                done.callback(None)

        timer = self.clock.callLater(timeout, fire)

        def allEnded(_: object) -> None:
            if timer.active():
                timer.cancel()
            fire()

        gatherResults(live).addBoth(allEnded)
        return done

    def _liveCount(self) -> int:
        return sum(1 for s in self.sessions.values() if not s.ended and not s.hibernated)

    def _admitOpen(self, host: str) -> None:
        """
        Decide whether C{host} may open a session now, fairly: raise
        L{HandshakeFailed} (busy, with a retry-after) if not.

          - The table is full (C{maxSessions} live sessions): nobody.
          - The table is three quarters full: not an address that holds at
            least its share of it (C{maxSessions} over the number of
            addresses holding sessions, itself included), so that the rest
            stays for the others.  An address alone (a load balancer's, a
            NAT's) may fill it.
          - More than C{maxOpenRate} openings were asked for this second:
            not an address that asked for at least its share of them (the
            total over the number of addresses asking) until the next
            second.  Rare openers still get in while one address floods.
        """
        self._purgeClosed()
        if self._draining:
            raise HandshakeFailed(
                _wire.REJECT_BUSY, "server draining: no new sessions", _FULL_RETRY
            )
        maxSessions = self.options.maxSessions
        live = len(self.sessions) - len(self._closed)
        if live >= maxSessions:
            raise HandshakeFailed(
                _wire.REJECT_BUSY, "server at capacity: too many sessions", _FULL_RETRY
            )
        held = self._liveByHost[host]
        if held and 4 * live >= 3 * maxSessions:
            holders = len(self._liveByHost)
            if held * holders >= maxSessions:
                raise HandshakeFailed(
                    _wire.REJECT_BUSY,
                    "server at capacity: too many sessions from %s" % (host,),
                    _FULL_RETRY,
                )
        now = self.clock.seconds()
        second = int(now)
        if second != self._openSecond:
            self._openSecond = second
            self._opens.clear()
            self._opensTotal = 0
        opens = self._opens
        total = self._opensTotal
        if total >= self.options.maxOpenRate:
            askers = len(opens) + (host not in opens)
            if opens[host] * askers >= total:
                raise HandshakeFailed(
                    _wire.REJECT_BUSY,
                    "too many openings from %s" % (host,),
                    max(second + 1 - now, 0.001),
                )
        opens[host] += 1
        self._opensTotal = total + 1

    def _countHost(self, session: Session, host: str) -> None:
        """
        Count C{session} as a live session of C{host} (and no longer of the
        host it was counted under).
        """
        self._uncountHost(session)
        session.peerHost = host
        self._countedHost[session.sessionID] = host
        self._liveByHost[host] += 1

    def _uncountHost(self, session: Session) -> None:
        host = self._countedHost.pop(session.sessionID, None)
        if host is None:
            return
        self._liveByHost[host] -= 1
        if not self._liveByHost[host]:
            del self._liveByHost[host]

    def _open(self, carrier: Carrier, sessionID: bytes, key: bytes, host: str) -> None:
        peer = carrier.transport.getPeer()
        app = self.wrappedFactory.buildProtocol(peer)
        if app is None:
            self.log.info("{peer}: application factory refused the session", peer=_hostOf(peer))
            carrier.transport.write(_wire.encodeAbort("application refused"))
            carrier.retire("application refused", graceful=True)
            return
        session = Session(
            self.clock,
            sessionID,
            key,
            False,
            self.options,
            self.policy,
            Upcalls(self.observers),
        )
        self._adopt(session, peer)
        session.secure = carrier.secure
        session.lastHost = carrier.transport.getHost()
        self._setAdvertisement(session, send=False)
        carrier.transport.write(_wire.encodeOpened())
        session.attach(carrier, 0)
        self.log.info(
            "session {sid} opened from {peer}", sid=session.hexID, peer=_hostOf(peer), event="opened"
        )
        session.connectApp(app, MigrateTransport(session))

    # The session table

    def _adopt(self, session: Session, peer: IAddress) -> None:
        """
        Make C{session} one of ours.
        """
        self._countHost(session, _shareOf(peer))
        session.timers = self.timers
        session.onBufferHigh = self._budgetCheckSoon
        if self._overBudget:
            session.pauseForBudget(True)
        session.onCarrierLost = self._sessionDetached
        session.onEnd = self._sessionEnded
        session.appFactory = self.wrappedFactory
        session.channelFactories = self.channelFactories
        session.channelAdmission = self._channelAdmission
        if self.store is not None:
            session.onHibernate = self.hibernate
        self.sessions[session.sessionID] = session

    def _channelAdmission(self) -> Optional[str]:
        """
        Whether a session may open another channel now: not while the
        server is over its memory budget or restarting.

        @return: the reason to refuse, or C{None}.
        """
        if self._overBudget:
            return "server at capacity: memory"
        if self._stopping:
            return "server restarting"
        return None

    def _sessionDetached(self, session: Session) -> None:
        """
        A session lost its carrier.  Detached sessions are bounded over the
        whole server, never per peer address (thousands of clients share
        one behind NAT or a load balancer, and a neighbour must never be
        able to end yours): past C{maxDetached}, the longest-detached one
        hibernates into the store, or without a store ends, logged, with
        the reason "server at capacity" (told to its client when it
        resumes).
        """
        self._detached[session.sessionID] = session
        self._budgetCheckSoon()
        while len(self._detached) > self.options.maxDetached:
            _, oldest = self._detached.popitem(last=False)
            if self.store is not None:
                self.hibernate(oldest)
                continue
            self.log.warn(
                "session {sid} ended: server at capacity (more than {n} detached sessions)",
                sid=oldest.hexID,
                n=self.options.maxDetached,
                event="capacity",
            )
            oldest.end(SessionExpired("server at capacity"), "server at capacity")

    def _forgetDetached(self, session: Session) -> None:
        self._detached.pop(session.sessionID, None)
        if not self._detached and not self._overBudget:
            self._stopBudgetChecks()

    # The memory budget

    def _budgetCheckSoon(self) -> None:
        """
        Check the memory budget in a moment (after a session detached or
        passed its high-water mark), and every second from then on while
        any session is detached or the server is over budget.
        """
        if self._budgetCall is None:
            self._budgetCall = self.clock.callLater(0, self._checkBudget)

    def _stopBudgetChecks(self) -> None:
        call, self._budgetCall = self._budgetCall, None
        if call is not None and call.active():
            call.cancel()

    def held(self) -> int:
        """
        Bytes held in memory for peers: the unacknowledged data of every
        session in memory (hibernated ones hold theirs in the store, ended
        ones only their notice), what their carriers' transports still
        hold to send (closing carriers and handshakes included), and a
        fixed estimate for each handshake in progress
        (L{HANDSHAKE_COST}) and each closed-session record
        (L{RECORD_COST}).
        """
        total = 0
        for session in self.sessions.values():
            if not session.hibernated and not session.ended:
                total += session.engine.buffered
                if session.channels is not None:
                    total += session.channels.held()
            for carrier in session.carriers():
                total += carrier.queued
        for carrier in self._pending:
            total += carrier.queued + HANDSHAKE_COST
        return total + len(self._closed) * RECORD_COST

    def _checkBudget(self) -> None:
        """
        Keep what the server holds for its peers within C{memoryBudget}:
        past it, detached sessions give back theirs first, the largest
        first: hibernated into the store if there is one, else ended with
        a logged reason ("server at capacity: memory") that their clients
        are told when they come back; if attached sessions alone still hold
        too much, every application writing into a session is paused until
        the total falls below 80% of the budget.
        """
        self._budgetCall = None
        budget = self.memoryBudget
        held = self.held()
        if held > budget:
            detached = sorted(
                (s for s in self._detached.values() if not s.hibernated and not s.ended),
                key=lambda s: s.engine.buffered,
                reverse=True,
            )
            for session in detached:
                if held <= budget * 0.9:
                    break
                size = session.engine.buffered
                if not size:
                    break
                if self.store is not None:
                    self.hibernate(session)
                    if not session.hibernated:
                        continue
                else:
                    self.log.warn(
                        "session {sid} ended: server at capacity (memory budget of "
                        "{budget} bytes; it held {size} bytes while detached)",
                        sid=session.hexID,
                        budget=budget,
                        size=size,
                        event="capacity",
                    )
                    session.end(
                        SessionExpired("server at capacity: memory"), "server at capacity: memory"
                    )
                held -= size
        if held > budget and not self._overBudget:
            self._overBudget = True
            self.log.warn(
                "over the memory budget ({held} of {budget} bytes held for peers): "
                "applications paused",
                held=held,
                budget=budget,
            )
            for session in list(self.sessions.values()):
                session.pauseForBudget(True)
        elif self._overBudget and held <= budget * 0.8:
            self._overBudget = False
            self.log.info("back under the memory budget: applications resumed")
            for session in list(self.sessions.values()):
                session.pauseForBudget(False)
        if self._detached or self._overBudget:
            self._budgetCall = self.clock.callLater(1.0, self._checkBudget)

    def _sessionEnded(self, session: Session) -> None:
        self._forgetDetached(session)
        self._uncountHost(session)
        self.sessions.pop(session.sessionID, None)
        self._freed(session.engine.buffered)
        if session.engine.finished or session.endNotice is not None:
            # Remembered for a while, so that a peer that missed the end
            # and resumes learns it: a record, not a session (it does not
            # count against maxSessions), bounded per peer address so that
            # one address opening and closing fast cannot fill the table.
            if session.endNotice is not None:
                # Only the notice is told to a late peer, never the data.
                session.engine.releaseBuffer()
            sid = session.sessionID
            self._closed[sid] = (self.clock.seconds(), session)
            self.sessions[sid] = session
            host = session.peerHost or "?"
            ids = self._closedPerHost.setdefault(host, deque())
            ids.append(sid)
            while len(ids) > self.options.maxClosedPerHost:
                self._forgetClosed(ids[0])
            self._purgeClosed()
        if not self.numPorts:
            self._unwatchShutdown()

    # Hibernation

    def hibernate(self, session: Session) -> Deferred[None]:
        """
        Checkpoint a detached session into the store and give back its live
        resources.  A migratable application (L{IMigratable}) is dropped
        with the session object; any other stays in memory (it cannot be
        rebuilt), but its timers and buffers go.

        @return: a L{Deferred} that fires once the checkpoint is in the
            store (or could not be written: that is logged).
        """
        store = self.store
        if store is None or session.ended or session.hibernated or session.state is not State.DETACHED:
            return succeed(None)
        transport = session.transport
        if transport is not None:
            session.upcalls.notify("aboutToHibernate", transport)
        if session.ended or session.state is not State.DETACHED:
            return
        appState: Optional[bytes] = None
        migratable = IMigratable(session.app, None)
        if migratable is not None:
            try:
                appState = migratable.saveMigrationState()
            except Exception:
                self.log.failure("saveMigrationState raised; keeping the application in memory")
                appState = None
        record = session.checkpoint(appState)
        if appState is not None and not ChannelTable.restorable(record.channels):
            # A channel that cannot be rebuilt keeps the whole session's
            # applications in memory (its buffers still go).
            appState = None
        sid = session.sessionID
        self._saving[sid] = record
        session.hibernate()
        self._detached.pop(sid, None)
        if appState is not None:
            self._forgetDetached(session)
            self._uncountHost(session)
            del self.sessions[sid]
            # Nothing refers to it any more; break its cycles so that its
            # memory goes back at once, not at the next collection.
            session.app = None
            session.upcalls.app = None
            session.transport = None
        self.log.info(
            "session {sid} hibernated ({kind})",
            sid=session.hexID,
            kind="application dropped" if appState is not None else "application kept",
            event="hibernated",
        )

        def saved(_: object) -> None:
            if self._saving.get(sid) is record:
                del self._saving[sid]
            self.log.info("session {sid} stored", sid=sid.hex(), event="stored")

        # On failure the checkpoint stays in memory and can still be resumed.
        return store.save(record).addCallbacks(
            saved,
            self._storeError,
            errbackArgs=("session {sid}: could not write to the store",),
            errbackKeywords={"sid": sid.hex()},
        )

    def _forgetStored(self, sid: bytes) -> None:
        self._saving.pop(sid, None)
        if self.store is not None:
            self.store.delete(sid).addErrback(self._storeError, "store delete failed")

    def _purgeStore(self) -> None:
        """
        Expire hibernated sessions past their time: in the store, and those
        whose application stayed in memory.
        """
        self._purgeCall = self.clock.callLater(self.options.purgeInterval, self._purgeStore)
        now = self.clock.seconds()
        for sid, record in list(self._saving.items()):
            if record.expiresAt <= now:
                del self._saving[sid]
        for session in [s for s in self.sessions.values() if s.hibernated]:
            if session.detachedSince is not None and (
                session.detachedSince + session.policy.expireAfter() <= now
            ):
                session.end(SessionExpired("hibernated session expired"))
        if self.store is not None:
            self.store.purgeExpired(now).addErrback(self._storeError, "store purge failed")

    def _storeError(self, failure: Failure, what: str, **fields: Any) -> None:
        logStoreFailure(self.log, failure, what, **fields)

    def _watchShutdown(self) -> None:
        """
        When the clock is a reactor: end every session with it (nothing of
        ours may stay scheduled on a stopped reactor).
        """
        if self._shutdownTrigger is None and IReactorCore.providedBy(self.clock):
            self._shutdownTrigger = self.clock.addSystemEventTrigger(
                "before", "shutdown", self._reactorStopping
            )

    def _unwatchShutdown(self) -> None:
        """
        Stop watching the reactor once nothing of ours is left on it.
        """
        if self.numPorts or self._pending or any(not s.ended for s in self.sessions.values()):
            return
        trigger, self._shutdownTrigger = self._shutdownTrigger, None
        if trigger is not None:
            self.clock.removeSystemEventTrigger(trigger)  # type: ignore[attr-defined]

    def _reactorStopping(self) -> Deferred[None]:
        self._shutdownTrigger = None
        draining = self._drainWait
        if draining is not None and not draining.called:
            # A drain (twistd migrate --drain) lets the live sessions go on
            # first.
            after: Deferred[None] = Deferred()
            draining.addBoth(lambda _: self._stopNow().chainDeferred(after))
            return after
        return self._stopNow()

    def _stopNow(self) -> Deferred[None]:
        self._stopping = _RESTART_NOTICE if self.store is not None else _SHUTDOWN_NOTICE
        self._stopBudgetChecks()
        for carrier in list(self._pending):
            self._donePending(carrier)
            carrier.abandon()
        saved = self._checkpointForRestart()
        for session in list(self.sessions.values()):
            session.shutdown()
        self._stopBudgetChecks()
        return saved

    def _checkpointForRestart(self) -> Deferred[None]:
        """
        The process is stopping: with a store, every session whose
        application is migratable is checkpointed into it (its carrier
        closed, after what was written to it), so that this server started
        again on the same store resumes it; its client, reconnecting
        meanwhile, is refused as busy ("server restarting") and holds on.

        @return: a L{Deferred} that fires once the checkpoints are in the
            store.
        """
        if self.store is None:
            return succeed(None)
        saves: list[Deferred[None]] = []
        for session in list(self.sessions.values()):
            if (
                session.ended
                or session.hibernated
                or session.appLost
                or not IMigratable.providedBy(session.app)
            ):
                continue
            carrier = session.carrier
            if carrier is not None:
                carrier.retire(_RESTART_NOTICE, graceful=True)
                session.carrierLost(carrier, _RESTART_NOTICE)
            saves.append(self.hibernate(session))
        if saves:
            self.log.info(
                "stopping: {n} session(s) checkpointed for a restart", n=len(saves)
            )
        return gatherResults(saves).addCallback(lambda _: None)

    def endSessions(
        self, notice: str = _SHUTDOWN_NOTICE, timeout: float = 1.0
    ) -> Deferred[None]:
        """
        End every attached session now, telling its client why (C{notice},
        e.g. "server shut down"), so that the application at the other end
        learns it at once instead of retrying until its session times out.
        Call it before stopping a server that will not come back with these
        sessions (C{twistd migrate} does on SIGTERM).  Detached sessions end
        too (their clients learn the notice if they come back while this
        process still runs); hibernated ones live on in the store.

        @param timeout: seconds to wait, at most, for the notices to be
            written out.
        @return: a L{Deferred} that fires when the notices went out (their
            connections closed) or C{timeout} passed.
        """
        self._stopping = notice
        closing: list[Any] = []
        saved = self._checkpointForRestart()
        for session in list(self.sessions.values()):
            if session.ended or session.hibernated:
                continue
            current = session.carrier
            if current is not None and not current.retired:
                closing.append(current)
            session.end(SessionExpired(notice), notice)
        if self.store is not None:
            self._stopping = _RESTART_NOTICE
        if closing:
            self.log.info(
                "ending sessions: {n} client(s) told: {notice}", n=len(closing), notice=notice
            )
        return gatherResults([saved, whenAllClosed(self.clock, closing, timeout)]).addCallback(
            lambda _: None
        )

    def startFactory(self) -> None:
        self._watchShutdown()
        if self.store is not None and self._purgeCall is None:
            self._purgeCall = self.clock.callLater(self.options.purgeInterval, self._purgeStore)
        if self.monitor is not None and not self._monitorHeld:
            self._monitorHeld = self.monitor.acquire(self._connectivityChanged)
            self._addresses = self._ourAddresses()
            self._publish()

    def setListeningHost(self, host: str) -> None:
        """
        The address the listening socket is bound to: when it is not a
        wildcard, only that address is ever advertised or published (the
        others do not lead to this service).
        """
        self.listeningHost = host
        if self.monitor is not None and self._monitorHeld:
            self._addresses = self._ourAddresses()
            self._publish()

    def _ourAddresses(self) -> list[str]:
        assert self.monitor is not None
        bound = self.listeningHost
        if bound not in (None, "", "0.0.0.0", "::"):
            return [bound]
        found = [
            a
            for a in self.monitor.addresses()
            if self.serviceInterface is None or a.interface == self.serviceInterface
        ]
        self._interfaces = {a.address: a.interface for a in found}
        return [a.address for a in found]

    def _publish(self) -> None:
        """
        Tell the locator where we are now (preferred address first); again
        every C{republishInterval} of the policy.
        """
        if not self.locators or not self.publishName:
            return
        if self._republishCall is not None and self._republishCall.active():
            self._republishCall.cancel()
        self._republishCall = None
        interval = self.policy.republishInterval()
        if interval is not None and self._monitorHeld:
            self._republishCall = self.clock.callLater(interval, self._publish)
        if not self._addresses:
            return
        order = [self._preferred] if self._preferred in self._addresses else []
        order += [a for a in self._addresses if a not in order]
        name = self.publishName
        for locator in self.policy.chooseLocators(self.locators):
            locator.publish(name, order).addCallbacks(
                lambda _: self.log.info("published {name} at {addresses}", name=name, addresses=order),
                lambda f: self.log.warn(
                    "could not publish {name}: {reason}", name=name, reason=f.getErrorMessage()
                ),
            )

    def stopFactory(self) -> None:
        self._unwatchShutdown()
        call, self._purgeCall = self._purgeCall, None
        if call is not None and call.active():
            call.cancel()
        if self.monitor is not None and self._monitorHeld:
            self._monitorHeld = False
            self.monitor.release(self._connectivityChanged)
        republish, self._republishCall = self._republishCall, None
        if republish is not None and republish.active():
            republish.cancel()

    # Where we are

    def _setAdvertisement(self, session: Session, send: bool = True) -> None:
        """
        Work out what C{session}'s peer is told about where we are (see
        L{migrate._advertise}); tell it now if C{send} and it changed.
        """
        policy = self.advertisePolicy
        advert = policy.addresses(
            getattr(session.lastHost, "host", None),
            getattr(session.lastHost, "port", None),
            self._addresses,
            self._interfaces,
            self._preferred,
        )
        configured = policy.mode == "configured"
        if send:
            if advert and advert != session.advertised:
                session.advertise(advert, configured)
        else:
            session.advertised = advert
            session.advertConfigured = configured

    def _connectivityChanged(self, event: ConnectivityEvent) -> None:
        """
        Our addresses changed: tell every attached peer (a new address comes
        first, so clients move to it while the old one still works); drop
        carriers whose local address is gone.
        """
        assert self.monitor is not None
        current = self._ourAddresses()
        kept = [a for a in self._addresses if a in current]
        before = self._addresses
        self._addresses = kept + [a for a in current if a not in kept]
        if event.kind == ConnectivityEvent.ADDRESS_ADDED and event.address in current:
            self._preferred = event.address
        elif self._preferred not in current:
            self._preferred = None
        if set(before) != set(self._addresses):
            self._publish()
        for session in list(self.sessions.values()):
            if session.ended or session.carrier is None:
                continue
            host = getattr(session.lastHost, "host", None)
            if event.kind == ConnectivityEvent.ADDRESS_REMOVED and host == event.address:
                session.dropCarrier("address-gone")
                continue
            self._setAdvertisement(session)

    # Management

    def listSessions(self) -> Deferred[list[dict[str, object]]]:
        """
        Every session, live and hibernated: live ones as
        L{IMigrateTransport.snapshot} with C{"hibernated"}, stored ones as
        C{{"id", "side", "peer", "expiresAt", "hibernated": True}}.
        """
        live: list[dict[str, object]] = []
        seen = set()
        for session in self.sessions.values():
            if session.transport is not None and not session.ended:
                snap = session.transport.snapshot()
                snap["hibernated"] = session.hibernated
                live.append(snap)
                seen.add(session.sessionID)
        stored = self.store.list("server") if self.store is not None else succeed([])

        def merge(rows: list[tuple[bytes, str, float, str]]) -> list[dict[str, object]]:
            extra = {r.sessionID: r for r in self._saving.values()}
            out = list(live)
            for sid, side, expiresAt, peer in rows:
                extra.pop(sid, None)
                if sid not in seen:
                    out.append({"id": sid.hex(), "side": side, "peer": peer, "expiresAt": expiresAt, "hibernated": True})
            for sid, r in extra.items():
                if sid not in seen:
                    out.append({"id": sid.hex(), "side": r.side, "peer": r.peer, "expiresAt": r.expiresAt, "hibernated": True})
            return out

        return stored.addCallback(merge)

    def expireSession(self, sessionID: bytes) -> Deferred[bool]:
        """
        End a session now, live or hibernated: its application (if in
        memory) hears L{SessionExpired}; its checkpoint is deleted.

        @return: a Deferred firing with whether there was such a session.
        """
        found = False
        session = self.sessions.get(sessionID)
        if session is not None and not session.ended:
            found = True
            session.end(SessionExpired("expired by the operator"), "expired by the operator")
        if sessionID in self._saving:
            found = True
        self._saving.pop(sessionID, None)
        if self.store is None:
            return succeed(found)
        store = self.store
        d = store.load(sessionID)
        d.addErrback(lambda f: f.trap(CorruptRecord) and True)

        def delete(record: object) -> Deferred[bool]:
            return store.delete(sessionID).addCallback(lambda _: found or record is not None)

        return d.addCallback(delete)

    deleteSession = expireSession

    def _purgeClosed(self) -> None:
        """
        Forget closed sessions older than the linger time (checked lazily,
        so no timer outlives a session).
        """
        horizon = self.clock.seconds() - self.options.closedLinger
        closed = self._closed
        while closed:
            sid, (when, session) = next(iter(closed.items()))
            if when > horizon and len(closed) <= self.options.maxSessions:
                break
            self._forgetClosed(sid)

    def _forgetClosed(self, sid: bytes) -> None:
        """
        Forget the record of the closed session C{sid}.
        """
        entry = self._closed.pop(sid, None)
        if entry is None:
            return
        session = entry[1]
        if self.sessions.get(sid) is session:
            del self.sessions[sid]
        host = session.peerHost or "?"
        ids = self._closedPerHost.get(host)
        if ids is not None:
            try:
                ids.remove(sid)
            except ValueError:
                pass
            if not ids:
                del self._closedPerHost[host]
