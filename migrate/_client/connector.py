# -*- test-case-name: tests.test_session,tests.test_liveness,tests.test_moves,tests.test_shutdown,tests.test_hibernation -*-
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

The connector's roles are mixins, one module each (see
L{migrate._client.base}): L{Attempts}, L{ClientHandshaking}, L{Candidates}
and L{Mobility}.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IReactorCore,
    IProtocol,
    IProtocolFactory,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.python.failure import Failure

from .._options import SessionOptions
from .._protocol import Carrier
from .._session import Session
from .._upcalls import Upcalls
from ..errors import HandshakeError
from ..interfaces import ILocator, IMigratable, IMigratePolicy, SessionRecord
from ..locate import locatorList as _locatorList
from ..monitors import MonitorLease
from .attempt import AttemptLimiter, Attempts
from .candidates import Candidates
from .handshaking import ClientHandshaking
from .mobility import Mobility


class ClientConnector(Attempts, ClientHandshaking, Candidates, Mobility):
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

    # Its logs (and its repr) keep the name they had before the module was
    # split by role: migrate._client.ClientConnector, which is re-exported.
    __module__ = "migrate._client"

    def __init__(
        self,
        clock: IReactorTime,
        endpoint: IStreamClientEndpoint,
        appFactory: IProtocolFactory,
        options: SessionOptions,
        policy: IMigratePolicy,
        *,
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
        self.locators = _locatorList(locator)
        self.peerName = peerName
        self._located = []
        self._lastLookup = float("-inf")
        self.limiter = limiter
        self._queued = None
        self._slot = False
        self.endpoint = endpoint
        self.appFactory = appFactory
        #: What channels the server opens are, by name (see
        #: L{MigrateServerFactory}'s C{channels}); C{None}: C{""} only, built
        #: by C{appFactory}.
        self.channelFactories = None
        self.options = options
        self.policy = policy
        self.monitor = monitor
        self.upcalls = Upcalls(list(observers))
        self.endpointFor = endpointFor
        self._monitorHeld = False
        self._waitingDecision = None
        self.session = None
        #: The liveness timers shared by the endpoint's sessions (see
        #: L{migrate._timers}); C{None}: the clock's own.
        self.timers = None
        self.attempts = 0
        self._summaryAt = None
        self._failedSince = 0
        self._opened = None
        self._connecting = None
        self._carrier = None
        self._handshake = None
        self._deadline = None
        self._retryCall = None
        self._generation = 0
        self._stopped = False
        self._confirmed = False
        self._openRetries = 0
        self._migrating = None
        self._inAttempt = False
        self._race = None
        self._spares = []
        self._shutdownTrigger = None
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

    # Persistence

    def resumeFrom(self, session: Session) -> None:
        """
        Take over a session restored from a store (its application already
        rebuilt) and resume it now.
        """
        self.session = session
        self._confirmed = True
        self._generation = session.generation
        session.setChannelFactories(self.appFactory, self.channelFactories)
        session.setOwner(
            self._sessionDetached,
            self._sessionEnded,
            timers=self.timers,
            peerAddresses=self._peerAddresses,
        )
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
        session.releaseOwner()
        session.dropCarrier("suspended")
        record = session.checkpoint(state)
        session.hibernate()
        session.dropApp()
        return record

    # Session hooks

    def _sessionDetached(self, session: Session) -> None:
        self.policy = session.policy
        self.attempts = 0
        self._relocate()
        if not self._stopped and self._carrier is None and self._connecting is None:
            self._retryNow()

    def _sessionEnded(self, session: Session) -> None:
        self._stop()
