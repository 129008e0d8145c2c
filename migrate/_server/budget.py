# -*- test-case-name: tests.test_hostile,tests.test_memory_real -*-
"""
The server's memory budget: what it holds for its peers, kept within
C{memoryBudget}, and freed memory given back to the system.
"""

from __future__ import annotations

from .._memory import releaseFreedMemory
from ..errors import SessionExpired
from .constants import HANDSHAKE_COST, RECORD_COST, _TRIM_AFTER
from .state import ServerState


class MemoryBudget(ServerState):
    """
    The memory budget: what the server holds for its peers, checked while
    sessions are detached or the server is over budget (detached sessions
    give theirs back first, then applications are paused), and the free
    heap given back to the system after much was freed.

    It owns C{memoryBudget}, C{_budgetCall}, C{_overBudget},
    C{_freedSinceTrim} and C{_trimCall}.
    """

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
