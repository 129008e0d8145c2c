# -*- test-case-name: tests.test_hostile,tests.test_hibernation,tests.test_moves -*-
"""
The state a server's roles share, for the type checker.

Each role of L{MigrateServerFactory <migrate._server.factory.MigrateServerFactory>}
is a mixin in its own module; they all derive from L{ServerState}, which
declares the attributes the factory sets up (see its C{__init__}) and, for
the type checker only, the methods each role offers the others.
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from typing import Any, Mapping, Optional, TYPE_CHECKING

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress, IDelayedCall, IProtocolFactory, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from .._advertise import AdvertisePolicy
from .._options import SessionOptions
from .._protocol import Carrier
from .._sansio.handshake import ResumeRequest
from .._session import Session
from .._timers import TimerSet
from ..interfaces import ConnectivityEvent, ILocator, IMigratePolicy, ISessionStore, SessionRecord
from ..monitors import MonitorLease
from .constants import _SHUTDOWN_NOTICE
from .pending import _PendingCarrier


class ServerState:
    """
    What every role of the server may use: the factory's attributes (set in
    L{MigrateServerFactory.__init__
    <migrate._server.factory.MigrateServerFactory.__init__>}) and, for the
    type checker only, the methods of the other roles.  It adds nothing at
    run time.
    """

    log: Logger
    numPorts: int

    # Configuration
    wrappedFactory: IProtocolFactory
    channelFactories: Optional[Mapping[str, IProtocolFactory]]
    clock: IReactorTime
    timers: TimerSet
    options: SessionOptions
    policy: IMigratePolicy
    observers: list[object]
    store: Optional[ISessionStore]

    # Presence
    locators: list[ILocator]
    publishName: Optional[str]
    serviceInterface: Optional[str]
    monitor: Optional[MonitorLease]
    _monitorHeld: bool
    _addresses: list[str]
    _interfaces: dict[str, str]
    _preferred: Optional[str]
    advertisePolicy: AdvertisePolicy
    _republishCall: Optional[IDelayedCall]
    listeningHost: Optional[str]

    # Hibernation
    _saving: dict[bytes, SessionRecord]
    _purgeCall: Optional[IDelayedCall]

    # The memory budget
    memoryBudget: int
    _budgetCall: Optional[IDelayedCall]
    _overBudget: bool
    _freedSinceTrim: int
    _trimCall: Optional[IDelayedCall]

    # The session table
    sessions: dict[bytes, Session]
    _detached: OrderedDict[bytes, Session]
    _closed: OrderedDict[bytes, tuple[float, Session]]
    _closedPerHost: dict[str, deque[bytes]]
    _liveByHost: Counter[str]
    _countedHost: dict[bytes, str]

    # Handshakes
    _pending: dict[Carrier, _PendingCarrier]
    _pendingPerHost: Counter[str]
    _opens: Counter[str]
    _openSecond: int
    _opensTotal: int

    # Stopping, draining
    _stopping: Optional[str]
    _draining: bool
    _drainWait: Optional[Deferred[None]]
    _shutdownTrigger: Optional[object]

    if TYPE_CHECKING:

        # handshaking.Handshaking

        def carrierConnected(self, carrier: Carrier) -> None: ...

        def _evictPending(self) -> bool: ...

        def _donePending(self, carrier: Carrier) -> None: ...

        def carrierFailed(self, carrier: Carrier, reason: str) -> None: ...

        def handshakeFrame(self, carrier: Carrier, frameType: int, body: bytes) -> None: ...

        def _resumeLive(
            self,
            carrier: Carrier,
            state: _PendingCarrier,
            session: Session,
            request: ResumeRequest,
        ) -> None: ...

        def _resumeStored(
            self,
            carrier: Carrier,
            state: _PendingCarrier,
            request: ResumeRequest,
            stub: Optional[Session],
            record: Optional[SessionRecord],
        ) -> None: ...

        def _tryResume(
            self,
            carrier: Carrier,
            state: _PendingCarrier,
            session: Session,
            request: ResumeRequest,
        ) -> None: ...

        def _acceptResume(
            self,
            carrier: Carrier,
            state: _PendingCarrier,
            session: Session,
            request: ResumeRequest,
        ) -> None: ...

        def _refuse(self, carrier: Carrier, session: Session, reason: str) -> None: ...

        def _admitOpen(self, host: str) -> None: ...

        def _open(self, carrier: Carrier, sessionID: bytes, key: bytes, host: str) -> None: ...

        # table.SessionTable

        def _liveCount(self) -> int: ...

        def _countHost(self, session: Session, host: str) -> None: ...

        def _uncountHost(self, session: Session) -> None: ...

        def _adopt(self, session: Session, peer: IAddress) -> None: ...

        def _channelAdmission(self) -> Optional[str]: ...

        def _sessionDetached(self, session: Session) -> None: ...

        def _forgetDetached(self, session: Session) -> None: ...

        def _sessionEnded(self, session: Session) -> None: ...

        def _purgeClosed(self) -> None: ...

        def _forgetClosed(self, sid: bytes) -> None: ...

        # budget.MemoryBudget

        def _freed(self, nbytes: int) -> None: ...

        def _trim(self) -> None: ...

        def _budgetCheckSoon(self) -> None: ...

        def _stopBudgetChecks(self) -> None: ...

        def held(self) -> int: ...

        def _checkBudget(self) -> None: ...

        # hibernation.Hibernation

        def hibernate(self, session: Session) -> Deferred[None]: ...

        def _forgetStored(self, sid: bytes) -> None: ...

        def _purgeStore(self) -> None: ...

        def _storeError(self, failure: Failure, what: str, **fields: Any) -> None: ...

        def _storeFailed(
            self,
            carrier: Carrier,
            state: _PendingCarrier,
            sid: bytes,
            failure: Failure,
        ) -> None: ...

        def _rebuild(self, record: SessionRecord, carrier: Carrier) -> Optional[Session]: ...

        def _checkpointForRestart(self) -> Deferred[None]: ...

        # presence.Presence

        def setListeningHost(self, host: str) -> None: ...

        def _ourAddresses(self) -> list[str]: ...

        def _publish(self) -> None: ...

        def _setAdvertisement(self, session: Session, send: bool = True) -> None: ...

        def _connectivityChanged(self, event: ConnectivityEvent) -> None: ...

        # admin.Admin

        def drain(self, timeout: float) -> Deferred[None]: ...

        def listSessions(self) -> Deferred[list[dict[str, object]]]: ...

        def expireSession(self, sessionID: bytes) -> Deferred[bool]: ...

        def endSessions(
            self,
            notice: str = _SHUTDOWN_NOTICE,
            timeout: float = 1.0,
        ) -> Deferred[None]: ...

        # shutdown.Shutdown

        def _watchShutdown(self) -> None: ...

        def _unwatchShutdown(self) -> None: ...

        def _reactorStopping(self) -> Deferred[None]: ...

        def _stopNow(self) -> Deferred[None]: ...
