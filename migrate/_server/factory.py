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

from collections import Counter, OrderedDict, deque
from typing import Mapping, Optional, Sequence, Union

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress, IDelayedCall, IProtocolFactory, IReactorTime
from twisted.internet.protocol import Factory
from twisted.logger import Logger

from .._advertise import AdvertisePolicy
from .._options import SessionOptions, defaultMemoryBudget
from .._protocol import Carrier
from .._session import Session
from .._timers import TimerSet
from ..interfaces import (
    IConnectivityMonitor,
    ILocator,
    IMigratePolicy,
    ISessionStore,
    SessionRecord,
)
from ..locate import locatorList as _locatorList
from ..monitors import MonitorLease
from ..policy import DefaultPolicy
from .admin import Admin
from .budget import MemoryBudget
from .handshaking import Handshaking
from .hibernation import Hibernation
from .pending import _PendingCarrier
from .presence import Presence
from .shutdown import Shutdown
from .table import SessionTable


class MigrateServerFactory(
    Handshaking,
    SessionTable,
    MemoryBudget,
    Hibernation,
    Presence,
    Admin,
    Shutdown,
    Factory,
):
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

    # Its logs keep the namespace they had when this class was defined in the
    # module migrate._server ("migrate._server.MigrateServerFactory").
    __module__ = "migrate._server"

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

    def buildProtocol(self, addr: Optional[IAddress]) -> Carrier:
        return Carrier(self, self.options.maxFrame, self.clock, self.options.drainTimeout)

    def startFactory(self) -> None:
        self._watchShutdown()
        if self.store is not None and self._purgeCall is None:
            self._purgeCall = self.clock.callLater(self.options.purgeInterval, self._purgeStore)
        if self.monitor is not None and not self._monitorHeld:
            self._monitorHeld = self.monitor.acquire(self._connectivityChanged)
            self._addresses = self._ourAddresses()
            self._publish()

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
