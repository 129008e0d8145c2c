# -*- test-case-name: tests.test_session,tests.test_layering -*-
"""
What the roles of a L{ClientConnector<migrate._client.connector.ClientConnector>}
share: the state they read and write, declared once with its owner, and the
methods one role calls on another.

Each role is a mixin in its own module, holding exactly that role's methods:

    - L{migrate._client.connector}: opening, stopping, suspending and
      resuming from a store, the session's hooks (the connector proper);
    - L{migrate._client.attempt}: each connection attempt (its deadline, its
      slot in an L{AttemptLimiter<migrate._client.attempt.AttemptLimiter>},
      racing candidates and keeping spare carriers, retries and backoff);
    - L{migrate._client.handshaking}: the client side of the handshake on
      the attempt's carrier;
    - L{migrate._client.candidates}: where to connect (the endpoint, the
      addresses the peer advertised, fresh answers of the locators);
    - L{migrate._client.mobility}: reactions to connectivity events.

L{ClientConnector<migrate._client.connector.ClientConnector>} inherits them
all; its constructor sets every attribute declared here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IDelayedCall,
    IProtocol,
    IProtocolFactory,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.logger import Logger
from twisted.python.failure import Failure

from .._options import SessionOptions
from .._protocol import Carrier
from .._race import RacingEndpoint
from .._sansio.handshake import ClientHandshake
from .._session import Session
from .._upcalls import Upcalls
from ..interfaces import ConnectivityEvent, ILocator, IMigratePolicy
from ..monitors import MonitorLease

if TYPE_CHECKING:
    from .attempt import AttemptLimiter


class ConnectorBase:
    """
    The state of a client connector, and what its roles call on each other
    (declared for the type checker only: at run time every method is the
    role's own).
    """

    log = Logger()

    # The connector proper (L{migrate._client.connector}).
    clock: IReactorTime
    endpoint: IStreamClientEndpoint
    appFactory: IProtocolFactory
    channelFactories: Optional[Mapping[str, IProtocolFactory]]
    options: SessionOptions
    policy: IMigratePolicy
    monitor: Optional[MonitorLease]
    upcalls: Upcalls
    session: Session | None
    timers: Optional[IReactorTime]
    _opened: Deferred[IProtocol] | None
    _stopped: bool
    _confirmed: bool
    _monitorHeld: bool
    _shutdownTrigger: Optional[object]
    _reactorStopped: bool

    # Attempts (L{migrate._client.attempt}).
    limiter: Optional[AttemptLimiter]
    attempts: int
    _queued: Optional[Callable[[], None]]
    _slot: bool
    _waitingDecision: Optional[Deferred[Any]]
    _summaryAt: Optional[float]
    _failedSince: int
    _connecting: Deferred[Any] | None
    _carrier: Carrier | None
    _deadline: IDelayedCall | None
    _retryCall: IDelayedCall | None
    _openRetries: int
    _inAttempt: bool
    _race: Optional[RacingEndpoint]
    _spares: list[Carrier]
    _openDeadline: float

    # Handshakes (L{migrate._client.handshaking}).
    _handshake: ClientHandshake | None
    _generation: int

    # Candidates (L{migrate._client.candidates}).
    endpointFor: Optional[Callable[[str], IStreamClientEndpoint]]
    endpointTo: Optional[Callable[[str, int], IStreamClientEndpoint]]
    locators: list[ILocator]
    peerName: Optional[str]
    _located: list[str]
    _lastLookup: float
    _migrating: Optional[str]

    if TYPE_CHECKING:
        # The connector proper.

        def _stop(self) -> None:
            raise NotImplementedError()

        def _letGo(self, carrier: Carrier, reason: str) -> None:
            raise NotImplementedError()

        def _sessionDetached(self, session: Session) -> None:
            raise NotImplementedError()

        def _sessionEnded(self, session: Session) -> None:
            raise NotImplementedError()

        # Attempts.

        def _attempt(self) -> None:
            raise NotImplementedError()

        def _retryNow(self) -> None:
            raise NotImplementedError()

        def _abandonAttempt(self) -> None:
            raise NotImplementedError()

        def _clearAttempt(self) -> None:
            raise NotImplementedError()

        def _finishAttempt(self) -> None:
            raise NotImplementedError()

        def _attemptFailed(
            self, reason: str, failure: Failure | None, retryAfter: Optional[float] = None
        ) -> None:
            raise NotImplementedError()

        def _tryAnotherCandidate(self, reason: str) -> bool:
            raise NotImplementedError()

        def carrierConnected(self, carrier: Carrier) -> None:
            raise NotImplementedError()

        def carrierFailed(self, carrier: Carrier, reason: str) -> None:
            raise NotImplementedError()

        # Handshakes.

        def handshakeFrame(self, carrier: Carrier, frameType: int, body: bytes) -> None:
            raise NotImplementedError()

        # Candidates.

        def _pickEndpoint(self, source: Optional[str]) -> IStreamClientEndpoint:
            raise NotImplementedError()

        def _relocate(self, urgent: bool = False) -> None:
            raise NotImplementedError()

        def _peerAddresses(self, session: Session) -> None:
            raise NotImplementedError()

        # Mobility.

        def _connectivityChanged(self, event: ConnectivityEvent) -> None:
            raise NotImplementedError()
