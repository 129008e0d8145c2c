# -*- test-case-name: tests.test_session,tests.test_liveness,tests.test_moves -*-
"""
The client side: open a session through any inner endpoint, and keep it
attached.

A L{ClientConnector} makes one session.  Its first connection attempt opens
the session (the connect Deferred fires with the application protocol once
the server proved the new key, or fails cleanly).  Each time the session's
carrier is lost it tries again at once, then with exponential backoff and
jitter; every attempt (connection and handshake) has its own deadline, so no
attempt waits on the kernel's SYN retries.  It stops when the session ends:
expiry, a refused resume, a close or an abort.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Mapping, Optional, Sequence, Union

from twisted.internet.defer import Deferred, fail, gatherResults
from twisted.internet.error import NoProtocol
from twisted.internet.interfaces import (
    IAddress,
    IReactorCore,
    IDelayedCall,
    IProtocol,
    IProtocolFactory,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure

from .._sansio import wire as _wire
from .._sansio.stream import ProtocolViolation
from .._sansio.handshake import ClientHandshake, HandshakeFailed
from .._options import SessionOptions
from .._protocol import Carrier
from .._race import RacingEndpoint
from ..locate import locatorList as _locatorList
from .._session import Session, formatAddress
from .._transport import MigrateTransport
from .._upcalls import Upcalls
from ..errors import HandshakeError, SessionExpired
from ..interfaces import ConnectivityEvent, ILocator, IMigratable, IMigratePolicy, SessionRecord
from ..monitors import MonitorLease

# The shortest time between two fresh lookups of the peer's name.
_LOOKUP_INTERVAL = 0.5

# Seconds between the starts of racing candidates.

#: Seconds between summaries of failed reconnect attempts in the log.
_SUMMARY_INTERVAL = 30.0
_STAGGER = 0.05

# How many times an opening whose confirmation may have been lost is retried.
_OPEN_RETRIES = 3

# Reject codes after which trying again cannot help.
_FATAL = {
    _wire.REJECT_UNKNOWN_SESSION,
    _wire.REJECT_BAD_PROOF,
    _wire.REJECT_STALE,
    _wire.REJECT_VERSION,
    _wire.REJECT_REFUSED,
}


class AttemptLimiter:
    """
    Bounds the connection attempts in progress at once over all the
    sessions of an endpoint; the others wait their turn in order.

    @ivar limit: attempts at once.
    @ivar active: attempts in progress.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0
        self._waiting: deque[list[Optional[Callable[[], None]]]] = deque()

    def acquire(self, go: Callable[[], None]) -> Callable[[], None]:
        """
        Call C{go} when a slot is free (now, if one is).

        @return: a function that gives up the place in the queue (does
            nothing once C{go} ran: the slot is then given back with
            L{release}).
        """
        if self.active < self.limit:
            self.active += 1
            go()
            return lambda: None
        entry: list[Optional[Callable[[], None]]] = [go]
        self._waiting.append(entry)

        def cancel() -> None:
            entry[0] = None

        return cancel

    def release(self) -> None:
        """
        An attempt is over: start the next waiting one.
        """
        self.active -= 1
        while self._waiting and self.active < self.limit:
            go = self._waiting.popleft()[0]
            if go is not None:
                self.active += 1
                go()


class _CarrierFactory(Factory):
    """
    Builds the carrier of one connection attempt.
    """

    noisy = False

    def __init__(self, connector: ClientConnector) -> None:
        self._connector = connector

    def buildProtocol(self, addr: Optional[IAddress]) -> Carrier:
        connector = self._connector
        options = connector.options
        return Carrier(connector, options.maxFrame, connector.clock, options.drainTimeout)


class ClientConnector:
    """
    Open one session and reconnect it until it ends.

    @ivar session: the session once open.
    @ivar attempts: connection attempts since the last success.
    @ivar _opened: fires with the application protocol (first open only).
    @ivar _connecting: the inner endpoint's pending connect, if any.
    @ivar _carrier: the carrier of the attempt in its handshake, if any.
    @ivar _handshake: that carrier's handshake.
    @ivar _deadline: the current attempt's deadline.
    @ivar _retryCall: the scheduled next attempt.
    @ivar _generation: the last generation used in a resume attempt.
    @ivar policy: the session's policy (an upcall may replace it).
    @ivar monitor: the connectivity monitor lease, if any.
    @ivar upcalls: the session's upcall listeners.
    @ivar endpointFor: makes the inner endpoint for a chosen source address.
    """

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        endpoint: IStreamClientEndpoint,
        appFactory: IProtocolFactory,
        options: SessionOptions,
        policy: IMigratePolicy,
        monitor: Optional[MonitorLease] = None,
        observers: Sequence[object] = (),
        endpointFor: Optional[Callable[[str], IStreamClientEndpoint]] = None,
        limiter: Optional[AttemptLimiter] = None,
        endpointTo: Optional[Callable[[str, int], IStreamClientEndpoint]] = None,
        locator: Union[ILocator, Sequence[ILocator], None] = None,
        peerName: Optional[str] = None,
    ) -> None:
        self.clock = clock
        self.endpointTo = endpointTo
        self.locators: list[ILocator] = (
            _locatorList(locator)
        )
        self.peerName = peerName
        self._located: list[str] = []
        self._lastLookup = float("-inf")
        self.limiter = limiter
        self._queued: Optional[Callable[[], None]] = None
        self._slot = False
        self.endpoint = endpoint
        self.appFactory = appFactory
        #: What channels the server opens are, by name (see
        #: L{MigrateServerFactory}'s C{channels}); C{None}: C{""} only, built
        #: by C{appFactory}.
        self.channelFactories: Optional[Mapping[str, IProtocolFactory]] = None
        self.options = options
        self.policy = policy
        self.monitor = monitor
        self.upcalls = Upcalls(list(observers))
        self.endpointFor = endpointFor
        self._monitorHeld = False
        self._waitingDecision: Optional[Deferred[Any]] = None
        self.session: Session | None = None
        #: The liveness timers shared by the endpoint's sessions (see
        #: L{migrate._timers}); C{None}: the clock's own.
        self.timers: Optional[IReactorTime] = None
        self.attempts = 0
        self._summaryAt: Optional[float] = None
        self._failedSince = 0
        self._opened: Deferred[IProtocol] | None = None
        self._connecting: Deferred[Any] | None = None
        self._carrier: Carrier | None = None
        self._handshake: ClientHandshake | None = None
        self._deadline: IDelayedCall | None = None
        self._retryCall: IDelayedCall | None = None
        self._generation = 0
        self._stopped = False
        self._confirmed = False
        self._openRetries = 0
        self._migrating: Optional[str] = None
        self._inAttempt = False
        self._race: Optional[RacingEndpoint] = None
        self._spares: list[Carrier] = []
        self._shutdownTrigger: Optional[object] = None
        self._reactorStopped = False
        self._openDeadline = float("inf")

    def _watchShutdown(self) -> None:
        """
        When the clock is a reactor: end with it rather than start new
        attempts while it stops.
        """
        if self._shutdownTrigger is None and IReactorCore.providedBy(self.clock):
            self._shutdownTrigger = self.clock.addSystemEventTrigger(
                "before", "shutdown", self._reactorStopping
            )

    def _letGo(self, carrier: Carrier, reason: str) -> None:
        """
        Close a carrier we no longer want (or, while the reactor stops,
        leave it to the reactor).
        """
        if self._reactorStopped:
            carrier.abandon()
        else:
            carrier.retire(reason)

    def _reactorStopping(self) -> None:
        self._reactorStopped = True
        self._shutdownTrigger = None
        session = self.session
        opened, self._opened = self._opened, None
        self._stop()
        if session is not None:
            session.shutdown()
        if opened is not None:
            opened.errback(Failure(HandshakeError("the reactor is shutting down")))

    def open(self) -> Deferred[IProtocol]:
        """
        Open the session.

        @return: a Deferred firing with the application protocol once the
            session is established, or failing with the inner endpoint's
            error or a L{HandshakeError}.  Cancelling it stops the attempt.
        """
        opened: Deferred[IProtocol] = Deferred(lambda d: self._cancelOpen())
        self._opened = opened
        self._watchShutdown()
        if self.monitor is not None:
            self._monitorHeld = self.monitor.acquire(self._connectivityChanged)
        self._attempt()
        return opened

    def _cancelOpen(self) -> None:
        self._stop()

    def _stop(self) -> None:
        """
        Stop for good: no more attempts, nothing scheduled, monitor released.
        """
        self._stopped = True
        if self._retryCall is not None:
            if self._retryCall.active():
                self._retryCall.cancel()
            self._retryCall = None
        waiting, self._waitingDecision = self._waitingDecision, None
        if waiting is not None:
            waiting.cancel()
        self._abandonAttempt()
        if self._monitorHeld and self.monitor is not None:
            self._monitorHeld = False
            self.monitor.release(self._connectivityChanged)
        trigger, self._shutdownTrigger = self._shutdownTrigger, None
        if trigger is not None:
            self.clock.removeSystemEventTrigger(trigger)  # type: ignore[attr-defined]

    # Attempts

    def _attempt(self) -> None:
        self._retryCall = None
        if self._stopped or self._waitingDecision is not None:
            return
        if self._carrier is not None or self._connecting is not None or self._queued is not None:
            return
        self.attempts += 1
        source = None
        if self.monitor is not None and self.endpointFor is not None:
            source = self.policy.chooseSource(self.monitor.addresses())
        session = self.session
        if self._confirmed and session is not None and session.transport is not None:
            decision = self.upcalls.decide(
                "reconnectAttempt", session.transport, self.attempts, source
            )
            if decision is False:
                self._scheduleRetry()
                return
            if isinstance(decision, Deferred):
                self._waitingDecision = decision

                def decided(go: bool) -> None:
                    self._waitingDecision = None
                    if go:
                        self._connect(source)
                    else:
                        self._scheduleRetry()

                decision.addCallback(decided)
                decision.addErrback(lambda f: None)
                return
        self._connect(source)

    def _connect(self, source: Optional[str]) -> None:
        if self._stopped:
            return
        if self.limiter is None:
            self._connectNow(source)
            return
        started: list[bool] = []
        queuedAt = self.clock.seconds()

        def go() -> None:
            started.append(True)
            # Time spent waiting for a turn among this endpoint's own
            # attempts does not count against an opening's connectTimeout.
            self._openDeadline += self.clock.seconds() - queuedAt
            self._connectNow(source)

        queued = self.limiter.acquire(go)
        if not started:
            self._queued = queued

    def _releaseSlot(self) -> None:
        queued, self._queued = self._queued, None
        if queued is not None:
            queued()
        if self._slot:
            self._slot = False
            assert self.limiter is not None
            self.limiter.release()

    def _connectNow(self, source: Optional[str]) -> None:
        self._queued = None
        self._slot = self.limiter is not None
        if self._stopped:
            self._releaseSlot()
            return
        session = self.session
        if self._confirmed and session is not None:
            timeout = self.policy.attemptTimeout(session.srtt)
        else:
            if self._openDeadline == float("inf"):
                # Counted from the first attempt, not from the time spent
                # waiting for a turn among this endpoint's attempts.
                self._openDeadline = self.clock.seconds() + self.options.connectTimeout
            # An opening, retried while the server is busy, is bounded as a
            # whole by connectTimeout.
            timeout = max(0.0, self._openDeadline - self.clock.seconds())
        self._deadline = self.clock.callLater(timeout, self._attemptTimedOut)
        endpoint = self._pickEndpoint(source)
        self._inAttempt = True
        if isinstance(endpoint, RacingEndpoint):
            self._race = endpoint
        try:
            d = endpoint.connect(_CarrierFactory(self))
        except Exception as e:
            d = fail(e)
        self._connecting = d

        def connected(carrier: object) -> None:
            if self._connecting is d:
                self._connecting = None

        def failed(reason: Failure) -> None:
            if self._connecting is not d:
                # Abandoned (cancelled or timed out): already handled.
                return
            self._connecting = None
            self._attemptFailed(reason.getErrorMessage(), reason)

        d.addCallbacks(connected, failed)

    def candidates(self) -> list[str]:
        """
        Where the peer may be now, in the order tried: the addresses it
        advertised (newest first), then the endpoint as configured (which
        looks its name up again).
        """
        session = self.session
        if session is None or self.endpointTo is None:
            return [""]
        advertised = list(session.trustedPeerAddresses)
        located = [a for a in self._located if a not in advertised]
        return advertised + located + [""]

    def _relocate(self, urgent: bool = False) -> None:
        """
        Look the peer's name up again (a new reconnect round, or a
        connectivity change when C{urgent}): a new answer joins the
        candidates, and a detached session tries it at once.
        """
        session = self.session
        if not self.locators or not self.peerName or session is None:
            return
        port = getattr(session.lastPeer, "port", None)
        now = self.clock.seconds()
        if port is None or (not urgent and now - self._lastLookup < _LOOKUP_INTERVAL):
            return
        self._lastLookup = now

        def found(addresses: list[str]) -> None:
            new = [("[%s]:%d" if ":" in a else "%s:%d") % (a, port) for a in addresses]
            if new == self._located:
                return
            self.log.info(
                "session {sid}: {name} is at {addresses}",
                sid=session.hexID,
                name=self.peerName,
                addresses=new,
            )
            self._located = new
            if not self._stopped and session.carrier is None and not session.ended:
                # Somewhere new to try: now, not after the backoff.
                if self._connecting is not None or self._carrier is not None:
                    self._abandonAttempt()
                self._retryNow()

        def failedLookup(f: Failure) -> list[str]:
            self.log.info("lookup of {name} failed: {e}", name=self.peerName, e=f.getErrorMessage())
            return []

        name = self.peerName
        lookups = []
        for locator in session.policy.chooseLocators(self.locators):
            lookups.append(locator.resolve(name, True).addErrback(failedLookup))

        def merge(answers: list[list[str]]) -> None:
            merged: list[str] = []
            for answer in answers:
                merged += [a for a in answer if a not in merged]
            found(merged)

        gatherResults(lookups).addCallback(merge)

    def _candidateEndpoint(self, choice: str, source: Optional[str]) -> IStreamClientEndpoint:
        if choice and self.endpointTo is not None:
            host, _, port = choice.rpartition(":")
            try:
                return self.endpointTo(host.strip("[]"), int(port))
            except ValueError:
                pass
        if source is not None and self.endpointFor is not None:
            return self.endpointFor(source)
        return self.endpoint

    def _pickEndpoint(self, source: Optional[str]) -> IStreamClientEndpoint:
        """
        The endpoint of this attempt: a move goes to the peer's preferred
        address; otherwise every candidate races, happy-eyeballs style, in
        order, a short stagger apart.
        """
        if self._migrating is not None:
            choice, self._migrating = self._migrating, None
            return self._candidateEndpoint(choice, source)
        candidates = self.candidates()
        if len(candidates) == 1:
            return self._candidateEndpoint(candidates[0], source)
        return RacingEndpoint(
            self.clock, [self._candidateEndpoint(c, source) for c in candidates], _STAGGER
        )

    def _peerAddresses(self, session: Session) -> None:
        """
        The peer advertised its addresses.  If its preferred one is not the
        one this carrier goes to (the server moved, or is moving), make a
        carrier to it now, while the old path may still work.
        """
        if self._stopped or not session.trustedPeerAddresses or self.endpointTo is None:
            return
        preferred = session.trustedPeerAddresses[0]
        current = formatAddress(session.lastPeer)
        if session.carrier is None or preferred == current:
            return
        if self._carrier is not None or self._connecting is not None or self._queued is not None:
            return
        self.log.info(
            "session {sid}: peer prefers {new}, moving from {old}",
            sid=session.hexID,
            new=preferred,
            old=current,
        )
        self._migrating = preferred
        self._retryNow()

    def _attemptTimedOut(self) -> None:
        self._deadline = None
        self._abandonAttempt()
        self._attemptFailed("connection attempt timed out", None)

    def _abandonAttempt(self) -> None:
        connecting, self._connecting = self._connecting, None
        carrier = self._carrier
        self._clearAttempt()
        if connecting is not None:
            connecting.cancel()
        if carrier is not None:
            self._letGo(carrier, "attempt abandoned")

    def _clearAttempt(self) -> None:
        """
        The attempt in progress is over, one way or the other.
        """
        self._endRace()
        self._releaseSlot()
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None
        self._carrier = None
        self._handshake = None

    def _attemptFailed(
        self, reason: str, failure: Failure | None, retryAfter: Optional[float] = None
    ) -> None:
        """
        An attempt failed.

        @param retryAfter: the server was busy and asked to be tried again
            after this many seconds (C{None}: it was not busy).
        """
        if self._inAttempt and self._tryAnotherCandidate(reason):
            return
        self._clearAttempt()
        if not self._confirmed:
            if (
                self.session is not None
                and not self._stopped
                and self._openRetries < _OPEN_RETRIES
            ):
                # Our confirmation of the opening may or may not have
                # reached the server: ask by resuming.
                self._openRetries += 1
                self._retryCall = self.clock.callLater(0, self._attempt)
                return
            if retryAfter is not None and not self._stopped:
                delay = max(retryAfter, self.policy.reconnectDelay(self.attempts))
                if self.clock.seconds() + delay < self._openDeadline:
                    self.log.debug("opening: {reason}; trying again", reason=reason)
                    self._retryCall = self.clock.callLater(delay, self._attempt)
                    return
            opened, self._opened = self._opened, None
            self._stop()
            if opened is not None:
                if failure is not None and not failure.check(HandshakeFailed):
                    opened.errback(failure)
                else:
                    opened.errback(Failure(HandshakeError(reason)))
            return
        session = self.session
        if self._stopped or session is None or session.ended:
            return
        self._relocate()
        self._logFailure(session, reason)
        self._scheduleRetry(retryAfter or 0.0)

    def _logFailure(self, session: Session, reason: str) -> None:
        """
        Log failed reconnect attempts in summary: the first one, then
        every L{_SUMMARY_INTERVAL} seconds how many failed since and the
        last reason (each one at debug level), never a line per attempt.
        """
        self.log.debug(
            "session {sid}: attempt {n} failed: {reason}",
            sid=session.hexID,
            n=self.attempts,
            reason=reason,
        )
        now = self.clock.seconds()
        self._failedSince += 1
        if self._summaryAt is None:
            self._summaryAt = now
            self._failedSince = 0
            self.log.info(
                "session {sid}: reconnecting: {reason}",
                sid=session.hexID,
                reason=reason,
                event="reconnecting",
            )
        elif now - self._summaryAt >= _SUMMARY_INTERVAL:
            self.log.info(
                "session {sid}: still trying: {n} attempts in {seconds:.0f} s, last error: {reason}",
                sid=session.hexID,
                n=self._failedSince,
                seconds=now - self._summaryAt,
                reason=reason,
                event="reconnecting",
            )
            self._summaryAt = now
            self._failedSince = 0

    def _scheduleRetry(self, atLeast: float = 0.0) -> None:
        if self._retryCall is not None or self._stopped:
            return
        delay = max(atLeast, self.policy.reconnectDelay(self.attempts))
        session = self.session
        slow = getattr(self.policy, "slowRetryInterval", None)
        if slow is not None and session is not None and session.detachedSince is not None:
            floor = slow(self.clock.seconds() - session.detachedSince)
            if floor is not None:
                delay = max(delay, floor)
        self._retryCall = self.clock.callLater(delay, self._attempt)

    # Handshaker

    def carrierConnected(self, carrier: Carrier) -> None:
        if self._stopped or not self._inAttempt:
            carrier.retire("not wanted")
            return
        if self._carrier is None:
            self._carrier = carrier
            return
        # Another candidate connected too: keep it in reserve, unread, in
        # case the first one's resume fails.
        carrier.pauseReading()
        self._spares.append(carrier)

    def _promote(self) -> bool:
        """
        The carrier in its handshake failed: go on with the next candidate
        that connected meanwhile, if any.
        """
        while self._spares:
            carrier = self._spares.pop(0)
            if carrier.retired:
                continue
            self._carrier = carrier
            self._handshake = None
            carrier.resumeReading()
            return True
        return False

    def _tryAnotherCandidate(self, reason: str) -> bool:
        """
        The carrier in its handshake failed, but the round is not over: go
        on with a candidate that connected meanwhile, or start the next one.
        """
        if self._promote():
            return True
        race = self._race
        if race is None or not race.more():
            return False
        self._carrier = None
        self._handshake = None

        def exhausted() -> None:
            if self._race is race and self._carrier is None and not self._spares:
                self._attemptFailed(reason, None)

        race.onExhausted = exhausted
        race.startNext()
        return True

    def _endRace(self) -> None:
        """
        The attempt is over: stop racing candidates, drop the reserve.
        """
        self._inAttempt = False
        race, self._race = self._race, None
        if race is not None:
            race.stop()
        spares, self._spares = self._spares, []
        for carrier in spares:
            self._letGo(carrier, "another candidate won")

    def carrierFailed(self, carrier: Carrier, reason: str) -> None:
        if carrier in self._spares:
            self._spares.remove(carrier)
            return
        if carrier is self._carrier:
            self._carrier = None
            self._attemptFailed("carrier lost during handshake: %s" % (reason,), None)

    def handshakeFrame(self, carrier: Carrier, frameType: int, body: bytes) -> None:
        if carrier is not self._carrier:
            raise HandshakeFailed(_wire.REJECT_PROTOCOL, "stale carrier")
        if frameType == _wire.SERVER_HELLO:
            session = self.session
            if session is None:
                handshake = ClientHandshake.forOpen(carrier.exporter)
            else:
                if session.secure and not carrier.secure:
                    # Never over anything weaker than what it was opened on.
                    raise HandshakeFailed(
                        _wire.REJECT_PROTOCOL,
                        "this session was opened over TLS and resumes only over TLS",
                    )
                if session.carrier is not None:
                    # Moving to a new carrier while the old one works: stop
                    # reading the old one before saying how far we got.
                    session.dropCarrier("moving")
                self._generation = max(self._generation, session.generation) + 1
                if self._generation > _wire.MAX_GENERATION:
                    raise HandshakeFailed(
                        _wire.REJECT_PROTOCOL, "the session has used every generation"
                    )
                handshake = ClientHandshake.forResume(
                    session.sessionID,
                    session.key,
                    self._generation,
                    session.engine.received,
                    carrier.exporter,
                )
            self._handshake = handshake
            carrier.transport.write(handshake.receiveHello(body))
            return
        if frameType == _wire.REJECT:
            # (A busy server refuses before it greets.)
            code, retryAfter, reason = _wire.decodeReject(body)
            self._rejected(carrier, code, reason, retryAfter)
            return
        current = self._handshake
        if current is None:
            raise HandshakeFailed(_wire.REJECT_PROTOCOL, "no greeting")
        handshake = current
        if frameType == _wire.ABORT and not self._confirmed:
            # The server's application refused the session.
            self._rejected(carrier, _wire.REJECT_PROTOCOL, body.decode("utf-8", "replace"))
        elif frameType == _wire.OPEN_ACCEPT and self.session is None:
            confirm = handshake.receiveOpenAccept(body)
            self._openAccepted(carrier, handshake, confirm)
        elif (
            frameType == _wire.OPENED
            and self.session is not None
            and not self._confirmed
            and not handshake.generation
        ):
            self._confirm(carrier, 0)
        elif frameType == _wire.RESUME_ACCEPT and self.session is not None:
            received = handshake.receiveResumeAccept(body)
            self._resumeAccepted(carrier, handshake, received)
        else:
            raise HandshakeFailed(
                _wire.REJECT_PROTOCOL, "unexpected frame type 0x%02x" % (frameType,)
            )

    def _finishAttempt(self) -> None:
        self._clearAttempt()
        self.attempts = 0
        self._summaryAt = None
        self._failedSince = 0

    def _openAccepted(
        self, carrier: Carrier, handshake: ClientHandshake, confirm: bytes
    ) -> None:
        """
        The server proved the new key: prove ours.  The session exists on
        the server once it has our proof, which it says with C{OPENED}; only
        then is the application connected.
        """
        session = Session(
            self.clock,
            handshake.sessionID,
            handshake.key,
            True,
            self.options,
            self.policy,
            self.upcalls,
        )
        session.appFactory = self.appFactory
        session.channelFactories = self.channelFactories
        if self.timers is not None:
            session.timers = self.timers
        session.onCarrierLost = self._sessionDetached
        session.onEnd = self._sessionEnded
        session.onPeerAddresses = self._peerAddresses
        self.session = session
        carrier.transport.write(confirm)

    def _confirm(self, carrier: Carrier, received: int) -> None:
        """
        The server holds the session: connect the application.
        """
        session = self.session
        assert session is not None
        self._finishAttempt()
        self._confirmed = True
        session.secure = carrier.secure
        opened, self._opened = self._opened, None
        app = self.appFactory.buildProtocol(carrier.transport.getPeer())
        if app is None:
            self._stop()
            carrier.transport.write(_wire.encodeAbort("application refused"))
            carrier.retire("application refused", graceful=True)
            if opened is not None:
                opened.errback(Failure(NoProtocol()))
            return
        session.attach(carrier, received)
        self.log.info("session {sid} opened", sid=session.hexID, event="opened")
        session.connectApp(app, MigrateTransport(session))
        if opened is not None:
            opened.callback(app)

    def _resumeAccepted(
        self, carrier: Carrier, handshake: ClientHandshake, received: int
    ) -> None:
        session = self.session
        assert session is not None
        try:
            session.engine.checkResume(received)
        except ProtocolViolation as e:
            self._finishAttempt()
            carrier.retire(str(e))
            session.end(SessionExpired("server resumed at an impossible position"))
            return
        session.generation = handshake.generation
        if not self._confirmed:
            self._confirm(carrier, received)
            return
        self._finishAttempt()
        session.handoffs += 1
        self.log.info(
            "session {sid} resumed (generation {generation})",
            sid=session.hexID,
            generation=handshake.generation,
            event="resumed",
        )
        session.attach(carrier, received)

    def _rejected(self, carrier: Carrier, code: int, reason: str, retryAfter: float = 0.0) -> None:
        carrier.retire("refused: %s" % (reason,))
        session = self.session
        if code == _wire.REJECT_BUSY:
            # Transient, like a dropped SYN: try again after what the server
            # asked, with backoff and jitter; an opening until its
            # connectTimeout, a resume until the session's timeout.
            self._carrier = None
            self._attemptFailed("server busy: %s" % (reason,), None, retryAfter)
            return
        if (
            session is not None
            and not self._confirmed
            and code == _wire.REJECT_UNKNOWN_SESSION
            and self._openRetries < _OPEN_RETRIES
        ):
            # Our confirmation never reached the server: open afresh (a
            # bounded number of times: a server that keeps saying so is not
            # one we can open a session with).
            self._openRetries += 1
            self.session = None
            self._clearAttempt()
            self._retryCall = self.clock.callLater(0, self._attempt)
            return
        if session is None or not self._confirmed:
            self._finishAttempt()
            self._stop()
            opened, self._opened = self._opened, None
            if opened is not None:
                opened.errback(Failure(HandshakeError("server refused: %s" % (reason,), code)))
            return
        if code in _FATAL:
            if self._inAttempt and self._tryAnotherCandidate("refused: %s" % (reason,)):
                # A refusal is not signed: another candidate may be the
                # server that knows the session.
                return
            self._finishAttempt()
            self.log.info(
                "session {sid}: server refused the resume: {reason}",
                sid=session.hexID,
                reason=reason,
            )
            session.end(SessionExpired("server refused the resume: %s" % (reason,)))
            return
        self._carrier = None
        self._attemptFailed("refused: %s" % (reason,), None)

    # Persistence

    def resumeFrom(self, session: Session) -> None:
        """
        Take over a session restored from a store (its application already
        rebuilt) and resume it now.
        """
        self.session = session
        self._confirmed = True
        self._generation = session.generation
        session.appFactory = self.appFactory
        session.channelFactories = self.channelFactories
        if self.timers is not None:
            session.timers = self.timers
        session.onCarrierLost = self._sessionDetached
        session.onEnd = self._sessionEnded
        session.onPeerAddresses = self._peerAddresses
        if self.monitor is not None:
            self._monitorHeld = self.monitor.acquire(self._connectivityChanged)
        self._watchShutdown()
        self._retryNow()

    def suspend(self) -> Optional[SessionRecord]:
        """
        Stop this session for a process restart: drop its carrier (the
        server keeps waiting), stop reconnecting, and return its checkpoint
        with the application's saved state; the application is dropped.

        @return: the checkpoint, or C{None} if the session is over, not
            established, or its application is not L{IMigratable} (it then
            goes on as before).
        """
        session = self.session
        if session is None or session.ended or not self._confirmed:
            return None
        migratable = IMigratable(session.app, None)
        if migratable is None:
            return None
        try:
            state = migratable.saveMigrationState()
        except Exception:
            self.log.failure("saveMigrationState raised; session not suspended")
            return None
        self._stop()
        session.onCarrierLost = lambda s: None
        session.dropCarrier("suspended")
        record = session.checkpoint(state)
        session.hibernate()
        session.app = None
        session.upcalls.app = None
        session.onEnd = lambda s: None
        return record

    # Session hooks

    def _sessionDetached(self, session: Session) -> None:
        self.policy = session.policy
        self.attempts = 0
        self._relocate()
        if not self._stopped and self._carrier is None and self._connecting is None:
            self._retryNow()

    def _retryNow(self) -> None:
        if self._retryCall is not None:
            if self._retryCall.active():
                self._retryCall.cancel()
            self._retryCall = None
        self._attempt()

    def _sessionEnded(self, session: Session) -> None:
        self._stop()

    # Connectivity

    def _connectivityChanged(self, event: ConnectivityEvent) -> None:
        """
        React at once: a detached session tries now (abandoning an attempt
        that may be stuck on a dead route); an attached one drops a carrier
        whose address or link is gone, and probes its path otherwise.
        """
        session = self.session
        if self._stopped or session is None or session.ended or not self._confirmed:
            return
        if session.transport is not None:
            self.upcalls.notify("addressesChanged", session.transport, event)
        carrier = session.carrier
        if carrier is None:
            if event.kind in (ConnectivityEvent.ADDRESS_REMOVED, ConnectivityEvent.LINK_DOWN):
                return
            if self._connecting is not None or self._carrier is not None:
                # The attempt in progress may be stuck on the old route.
                self._abandonAttempt()
            self.attempts = 0
            self._relocate(urgent=True)
            self._retryNow()
            return
        host = getattr(session.lastHost, "host", None)
        if event.kind == ConnectivityEvent.ADDRESS_REMOVED and event.address == host:
            session.dropCarrier("address-gone")
        elif (
            event.kind == ConnectivityEvent.LINK_DOWN
            and event.interface is not None
            and self.monitor is not None
            and host is not None
            and event.interface == self.monitor.interfaceOf(host)
        ):
            session.dropCarrier("link-down")
        else:
            session.probe()
