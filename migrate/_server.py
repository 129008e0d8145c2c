# -*- test-case-name: tests.test_server -*-
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

from collections import Counter, OrderedDict
from typing import Optional

from twisted.internet.interfaces import IAddress, IDelayedCall, IProtocolFactory, IReactorTime
from twisted.internet.protocol import Factory
from twisted.logger import Logger

from . import _wire
from ._core import ProtocolViolation
from ._handshake import HandshakeFailed, ResumeRequest, ServerHandshake
from ._options import SessionOptions
from ._protocol import Carrier
from ._session import Session, State
from ._transport import MigrateTransport
from ._upcalls import Upcalls
from .interfaces import IMigratePolicy
from .policy import DefaultPolicy
from .errors import SessionExpired


def _hostOf(address: IAddress) -> str:
    return str(getattr(address, "host", address))


class _PendingCarrier:
    """
    Per-carrier handshake state kept by the server.

    @ivar handshake: the sans-IO handshake.
    @ivar host: the peer host it counts against.
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
    @ivar _pending: carriers still in their handshake.
    @ivar _pendingPerHost: how many of them each peer host has.
    @ivar _detachedByHost: detached sessions per peer host, oldest first.
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
    ) -> None:
        self.wrappedFactory = wrappedFactory
        self.clock = clock
        self.options = options if options is not None else SessionOptions()
        self.policy = policy if policy is not None else DefaultPolicy(self.options)
        self.observers = observers if observers is not None else []
        self.sessions: dict[bytes, Session] = {}
        self._closed: OrderedDict[bytes, tuple[float, Session]] = OrderedDict()
        self._pending: dict[Carrier, _PendingCarrier] = {}
        self._pendingPerHost: Counter[str] = Counter()
        self._detachedByHost: dict[str, OrderedDict[bytes, Session]] = {}

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

    def buildProtocol(self, addr: Optional[IAddress]) -> Carrier:
        return Carrier(self, self.options.maxFrame)

    # Handshaker

    def carrierConnected(self, carrier: Carrier) -> None:
        host = _hostOf(carrier.transport.getPeer())
        if len(self._pending) >= self.options.maxPending:
            carrier.reject(_wire.REJECT_BUSY, "too many handshakes in progress")
            return
        if self._pendingPerHost[host] >= self.options.maxPendingPerHost:
            carrier.reject(_wire.REJECT_BUSY, "too many handshakes from %s" % (host,))
            return
        handshake = ServerHandshake()
        deadline = self.clock.callLater(
            self.options.handshakeTimeout, carrier.fail, "handshake timed out"
        )
        self._pending[carrier] = _PendingCarrier(handshake, host, deadline)
        self._pendingPerHost[host] += 1
        carrier.transport.write(handshake.hello())

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
            self._purgeClosed()
            if len(self.sessions) >= self.options.maxSessions:
                raise HandshakeFailed(_wire.REJECT_BUSY, "too many sessions")
            carrier.transport.write(handshake.receiveOpen(body))
        elif frameType == _wire.OPEN_CONFIRM:
            keys = handshake.receiveOpenConfirm(body)
            self._donePending(carrier)
            self._open(carrier, keys.sessionID, keys.key, state.host)
        elif frameType == _wire.RESUME:
            request = handshake.parseResume(body)
            self._purgeClosed()
            session = self.sessions.get(request.sessionID)
            if session is None:
                raise HandshakeFailed(_wire.REJECT_UNKNOWN_SESSION, "unknown session")
            handshake.verifyResume(request, session.key, session.generation)
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
            decision = session.upcalls.decide(
                "resumeRequested", session.transport, session.lastPeer, newPeer, downtime
            )
            if decision is False:
                self._refuse(carrier, session, "resume refused by the application")
            elif decision is True:
                self._acceptResume(carrier, state, session, request)
            else:
                # The application takes its time; the handshake deadline
                # still bounds the wait.
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

                decision.addCallback(decided)
        else:
            raise HandshakeFailed(
                _wire.REJECT_PROTOCOL,
                "unexpected frame type 0x%02x in handshake" % (frameType,),
            )

    def _acceptResume(
        self, carrier: Carrier, state: _PendingCarrier, session: Session, request: ResumeRequest
    ) -> None:
        self._donePending(carrier)
        carrier.transport.write(
            state.handshake.acceptResume(request, session.key, session.engine.received)
        )
        session.generation = request.generation
        self._forgetDetached(session)
        if session.state is not State.CLOSED:
            session.handoffs += 1
            session.peerHost = state.host
            self.log.info(
                "session {sid} resumed from {peer} (generation {generation})",
                sid=session.hexID,
                peer=state.host,
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
        session._end(SessionExpired(reason))

    def _open(self, carrier: Carrier, sessionID: bytes, key: bytes, host: str) -> None:
        peer = carrier.transport.getPeer()
        app = self.wrappedFactory.buildProtocol(peer)
        if app is None:
            self.log.info("{peer}: application factory refused the session", peer=host)
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
        session.peerHost = host
        session.onCarrierLost = self._sessionDetached
        session.onEnd = self._sessionEnded
        self.sessions[sessionID] = session
        carrier.transport.write(_wire.encodeOpened())
        session.attach(carrier, 0)
        self.log.info(
            "session {sid} opened from {peer}", sid=session.hexID, peer=host, event="opened"
        )
        session.connectApp(app, MigrateTransport(session))

    # The session table

    def _sessionDetached(self, session: Session) -> None:
        table = self._detachedByHost.setdefault(session.peerHost, OrderedDict())
        table[session.sessionID] = session
        while len(table) > self.options.maxDetachedPerHost:
            _, oldest = table.popitem(last=False)
            self.log.warn(
                "session {sid} expired: more than {n} detached sessions from {host}",
                sid=oldest.hexID,
                n=self.options.maxDetachedPerHost,
                host=session.peerHost,
            )
            oldest._end(SessionExpired("too many detached sessions from this host"))

    def _forgetDetached(self, session: Session) -> None:
        table = self._detachedByHost.get(session.peerHost)
        if table is not None:
            table.pop(session.sessionID, None)
            if not table:
                del self._detachedByHost[session.peerHost]

    def _sessionEnded(self, session: Session) -> None:
        self._forgetDetached(session)
        self.sessions.pop(session.sessionID, None)
        if session.engine.finished:
            self._closed[session.sessionID] = (self.clock.seconds(), session)
            self.sessions[session.sessionID] = session
            self._purgeClosed()

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
            closed.popitem(last=False)
            if self.sessions.get(sid) is session:
                del self.sessions[sid]
