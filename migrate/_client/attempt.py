# -*- test-case-name: tests.test_session,tests.test_liveness,tests.test_race,tests.test_hibernation -*-
"""
A client's connection attempts.

Every attempt (connection and handshake) has its own deadline, so no attempt
waits on the kernel's SYN retries; the attempts of an endpoint's sessions
take turns in an L{AttemptLimiter}; candidates race, and one that connects
while another is in its handshake is kept, unread, as a spare.  After a
failure the session tries again at once, then with exponential backoff and
jitter.
"""

from __future__ import annotations

from collections import deque
from typing import Callable, Optional

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import Factory
from twisted.python.failure import Failure

from .._protocol import Carrier
from .._race import RacingEndpoint
from .._sansio.handshake import HandshakeFailed
from .._session import Session
from ..errors import HandshakeError
from .base import ConnectorBase

#: Seconds between summaries of failed reconnect attempts in the log.
_SUMMARY_INTERVAL = 30.0

# How many times an opening whose confirmation may have been lost is retried.
_OPEN_RETRIES = 3


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

    def __init__(self, connector: ConnectorBase) -> None:
        self._connector = connector

    def buildProtocol(self, addr: Optional[IAddress]) -> Carrier:
        connector = self._connector
        options = connector.options
        return Carrier(connector, options.maxFrame, connector.clock, options.drainTimeout)


class Attempts(ConnectorBase):
    """
    The attempts role of a client connector: start an attempt (once the
    application agrees, and once the limiter gives it a slot), bound it by
    its deadline, race its candidates and keep the spares, and after a
    failure try another candidate, the opening again, or schedule a retry.

    It owns C{limiter}, C{attempts}, C{_queued}, C{_slot},
    C{_waitingDecision}, C{_summaryAt}, C{_failedSince}, C{_connecting},
    C{_carrier}, C{_deadline}, C{_retryCall}, C{_openRetries},
    C{_inAttempt}, C{_race}, C{_spares} and C{_openDeadline}.
    """

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

    def _retryNow(self) -> None:
        if self._retryCall is not None:
            if self._retryCall.active():
                self._retryCall.cancel()
            self._retryCall = None
        self._attempt()

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

    def _finishAttempt(self) -> None:
        self._clearAttempt()
        self.attempts = 0
        self._summaryAt = None
        self._failedSince = 0

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

    # Racing and spare carriers

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
