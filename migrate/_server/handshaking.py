# -*- test-case-name: tests.test_hostile,tests.test_moves,tests.test_hibernation -*-
"""
The server's handshakes: carriers greeted, bounded and timed, openings
admitted fairly, and resumes verified and accepted.
"""

from __future__ import annotations

from collections import Counter
from typing import Optional

from twisted.internet.defer import Deferred, gatherResults, succeed

from .._protocol import Carrier
from .._sansio import wire as _wire
from .._sansio.handshake import HandshakeFailed, ResumeRequest, ServerHandshake
from .._sansio.stream import ProtocolViolation
from .._session import Session, State
from .._transport import MigrateTransport
from .._upcalls import Upcalls
from ..errors import SessionExpired
from ..interfaces import IMigratable, SessionRecord
from .addresses import _hostOf, _shareOf
from .constants import _BUSY_RETRY, _FULL_RETRY, _STOPPING_RETRY
from .pending import _PendingCarrier
from .state import ServerState


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


class Handshaking(ServerState):
    """
    The handshakes of new carriers: the pending limits (per address and in
    all, with the oldest idle handshake dropped to make room), opening a
    session, and resuming one, live or from the store.

    It owns C{_pending}, C{_pendingPerHost}, C{_opens}, C{_openSecond} and
    C{_opensTotal}.
    """

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

    def _acceptResume(
        self, carrier: Carrier, state: _PendingCarrier, session: Session, request: ResumeRequest
    ) -> None:
        self._donePending(carrier)
        carrier.transport.write(
            state.handshake.acceptResume(request, session.key, session.engine.received)
        )
        resumed = session.state is not State.CLOSED
        session.handshakeDone(carrier.transport.getHost(), request.generation, resumed)
        self._setAdvertisement(session, send=False)
        self._forgetDetached(session)
        if resumed:
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
        session.handshakeDone(carrier.transport.getHost(), 0, False, carrier.secure)
        self._setAdvertisement(session, send=False)
        carrier.transport.write(_wire.encodeOpened())
        session.attach(carrier, 0)
        self.log.info(
            "session {sid} opened from {peer}", sid=session.hexID, peer=_hostOf(peer), event="opened"
        )
        session.connectApp(app, MigrateTransport(session))
