# -*- test-case-name: tests.test_shutdown,tests.test_restart -*-
"""
The server stops with its reactor: nothing of it stays scheduled, and
sessions are checkpointed for a restart or ended.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorCore

from .constants import _RESTART_NOTICE, _SHUTDOWN_NOTICE
from .state import ServerState


class Shutdown(ServerState):
    """
    Stopping with the reactor: watching for its shutdown while anything of
    ours is on it, then refusing new carriers, checkpointing what can be
    and ending the rest.

    It owns C{_stopping} and C{_shutdownTrigger}.
    """

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
