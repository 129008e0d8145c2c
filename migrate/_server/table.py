# -*- test-case-name: tests.test_hostile -*-
"""
The server's session table: live, detached and closed sessions, and what
each peer address holds.
"""

from __future__ import annotations

from collections import deque
from typing import Optional

from twisted.internet.interfaces import IAddress

from .._session import Session
from ..errors import SessionExpired
from .addresses import _shareOf
from .state import ServerState


class SessionTable(ServerState):
    """
    The session table: sessions adopted, detached (bounded by
    C{maxDetached}), ended and remembered closed for a while (bounded per
    address), and the per-address count of live sessions.

    It owns C{sessions}, C{_detached}, C{_closed}, C{_closedPerHost},
    C{_liveByHost} and C{_countedHost}.
    """

    def _liveCount(self) -> int:
        return sum(1 for s in self.sessions.values() if not s.ended and not s.hibernated)

    def _countHost(self, session: Session, host: str) -> None:
        """
        Count C{session} as a live session of C{host} (and no longer of the
        host it was counted under).
        """
        self._uncountHost(session)
        session.setPeerHost(host)
        self._countedHost[session.sessionID] = host
        self._liveByHost[host] += 1

    def _uncountHost(self, session: Session) -> None:
        host = self._countedHost.pop(session.sessionID, None)
        if host is None:
            return
        self._liveByHost[host] -= 1
        if not self._liveByHost[host]:
            del self._liveByHost[host]

    def _adopt(self, session: Session, peer: IAddress) -> None:
        """
        Make C{session} one of ours.
        """
        self._countHost(session, _shareOf(peer))
        session.setOwner(
            self._sessionDetached,
            self._sessionEnded,
            timers=self.timers,
            hibernate=self.hibernate if self.store is not None else None,
            bufferHigh=self._budgetCheckSoon,
        )
        if self._overBudget:
            session.pauseForBudget(True)
        session.setChannelFactories(
            self.wrappedFactory, self.channelFactories, self._channelAdmission
        )
        self.sessions[session.sessionID] = session

    def _channelAdmission(self) -> Optional[str]:
        """
        Whether a session may open another channel now: not while the
        server is over its memory budget or restarting.

        @return: the reason to refuse, or C{None}.
        """
        if self._overBudget:
            return "server at capacity: memory"
        if self._stopping:
            return "server restarting"
        return None

    def _sessionDetached(self, session: Session) -> None:
        """
        A session lost its carrier.  Detached sessions are bounded over the
        whole server, never per peer address (thousands of clients share
        one behind NAT or a load balancer, and a neighbour must never be
        able to end yours): past C{maxDetached}, the longest-detached one
        hibernates into the store, or without a store ends, logged, with
        the reason "server at capacity" (told to its client when it
        resumes).
        """
        self._detached[session.sessionID] = session
        self._budgetCheckSoon()
        while len(self._detached) > self.options.maxDetached:
            _, oldest = self._detached.popitem(last=False)
            if self.store is not None:
                self.hibernate(oldest)
                continue
            self.log.warn(
                "session {sid} ended: server at capacity (more than {n} detached sessions)",
                sid=oldest.hexID,
                n=self.options.maxDetached,
                event="capacity",
            )
            oldest.end(SessionExpired("server at capacity"), "server at capacity")

    def _forgetDetached(self, session: Session) -> None:
        self._detached.pop(session.sessionID, None)
        if not self._detached and not self._overBudget:
            self._stopBudgetChecks()

    def _sessionEnded(self, session: Session) -> None:
        self._forgetDetached(session)
        self._uncountHost(session)
        self.sessions.pop(session.sessionID, None)
        self._freed(session.engine.buffered)
        if session.engine.finished or session.endNotice is not None:
            # Remembered for a while, so that a peer that missed the end
            # and resumes learns it: a record, not a session (it does not
            # count against maxSessions), bounded per peer address so that
            # one address opening and closing fast cannot fill the table.
            if session.endNotice is not None:
                # Only the notice is told to a late peer, never the data.
                session.engine.releaseBuffer()
            sid = session.sessionID
            self._closed[sid] = (self.clock.seconds(), session)
            self.sessions[sid] = session
            host = session.peerHost or "?"
            ids = self._closedPerHost.setdefault(host, deque())
            ids.append(sid)
            while len(ids) > self.options.maxClosedPerHost:
                self._forgetClosed(ids[0])
            self._purgeClosed()
        if not self.numPorts:
            self._unwatchShutdown()

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
            self._forgetClosed(sid)

    def _forgetClosed(self, sid: bytes) -> None:
        """
        Forget the record of the closed session C{sid}.
        """
        entry = self._closed.pop(sid, None)
        if entry is None:
            return
        session = entry[1]
        if self.sessions.get(sid) is session:
            del self.sessions[sid]
        host = session.peerHost or "?"
        ids = self._closedPerHost.get(host)
        if ids is not None:
            try:
                ids.remove(sid)
            except ValueError:
                pass
            if not ids:
                del self._closedPerHost[host]
