# -*- test-case-name: tests.test_hibernation,tests.test_shutdown,tests.test_status -*-
"""
What the server's operator may do: list, expire and end sessions, and drain.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, gatherResults, succeed

from .._protocol import whenAllClosed
from ..errors import SessionExpired
from ..errors import CorruptRecord
from .constants import _RESTART_NOTICE, _SHUTDOWN_NOTICE
from .state import ServerState


class Admin(ServerState):
    """
    The operator's requests: listing and expiring sessions, draining for a
    rolling restart, and ending every session with a notice.

    It owns C{_draining} and C{_drainWait}, and sets C{_stopping}.
    """

    def drain(self, timeout: float) -> Deferred[None]:
        """
        Stop taking new sessions (openings are refused as busy, "server
        draining", so that a load balancer's next pick or a later retry
        goes elsewhere) while the sessions already here go on, resuming as
        usual, until they all ended or C{timeout} seconds passed: for
        rolling restarts.  A second call only waits again.

        @return: a L{Deferred} that fires when no session is left in memory
            (hibernated ones live on in the store) or at the timeout.
        """
        if not self._draining:
            self._draining = True
            self.log.info(
                "draining: no new sessions; waiting up to {timeout} s for {n} session(s)",
                timeout=timeout,
                n=self._liveCount(),
            )
        live = [
            s.whenEnded() for s in self.sessions.values() if not s.ended and not s.hibernated
        ]
        done: Deferred[None] = Deferred()
        self._drainWait = done
        if not live:
            done.callback(None)
            return done
        def fire() -> None:
            if not done.called:
                done.callback(None)

        timer = self.clock.callLater(timeout, fire)

        def allEnded(_: object) -> None:
            if timer.active():
                timer.cancel()
            fire()

        gatherResults(live).addBoth(allEnded)
        return done

    def listSessions(self) -> Deferred[list[dict[str, object]]]:
        """
        Every session, live and hibernated: live ones as
        L{IMigrateTransport.snapshot} with C{"hibernated"}, stored ones as
        C{{"id", "side", "peer", "expiresAt", "hibernated": True}}.
        """
        live: list[dict[str, object]] = []
        seen = set()
        for session in self.sessions.values():
            if session.transport is not None and not session.ended:
                snap = session.transport.snapshot()
                snap["hibernated"] = session.hibernated
                live.append(snap)
                seen.add(session.sessionID)
        stored = self.store.list("server") if self.store is not None else succeed([])

        def merge(rows: list[tuple[bytes, str, float, str]]) -> list[dict[str, object]]:
            extra = {r.sessionID: r for r in self._saving.values()}
            out = list(live)
            for sid, side, expiresAt, peer in rows:
                extra.pop(sid, None)
                if sid not in seen:
                    out.append({"id": sid.hex(), "side": side, "peer": peer, "expiresAt": expiresAt, "hibernated": True})
            for sid, r in extra.items():
                if sid not in seen:
                    out.append({"id": sid.hex(), "side": r.side, "peer": r.peer, "expiresAt": r.expiresAt, "hibernated": True})
            return out

        return stored.addCallback(merge)

    def expireSession(self, sessionID: bytes) -> Deferred[bool]:
        """
        End a session now, live or hibernated: its application (if in
        memory) hears L{SessionExpired}; its checkpoint is deleted.

        @return: a Deferred firing with whether there was such a session.
        """
        found = False
        session = self.sessions.get(sessionID)
        if session is not None and not session.ended:
            found = True
            session.end(SessionExpired("expired by the operator"), "expired by the operator")
        if sessionID in self._saving:
            found = True
        self._saving.pop(sessionID, None)
        if self.store is None:
            return succeed(found)
        store = self.store
        d = store.load(sessionID)
        d.addErrback(lambda f: f.trap(CorruptRecord) and True)

        def delete(record: object) -> Deferred[bool]:
            return store.delete(sessionID).addCallback(lambda _: found or record is not None)

        return d.addCallback(delete)

    deleteSession = expireSession

    def endSessions(
        self, notice: str = _SHUTDOWN_NOTICE, timeout: float = 1.0
    ) -> Deferred[None]:
        """
        End every attached session now, telling its client why (C{notice},
        e.g. "server shut down"), so that the application at the other end
        learns it at once instead of retrying until its session times out.
        Call it before stopping a server that will not come back with these
        sessions (C{twistd migrate} does on SIGTERM).  Detached sessions end
        too (their clients learn the notice if they come back while this
        process still runs); hibernated ones live on in the store.

        @param timeout: seconds to wait, at most, for the notices to be
            written out.
        @return: a L{Deferred} that fires when the notices went out (their
            connections closed) or C{timeout} passed.
        """
        self._stopping = notice
        closing: list[Any] = []
        saved = self._checkpointForRestart()
        for session in list(self.sessions.values()):
            if session.ended or session.hibernated:
                continue
            current = session.carrier
            if current is not None and not current.retired:
                closing.append(current)
            session.end(SessionExpired(notice), notice)
        if self.store is not None:
            self._stopping = _RESTART_NOTICE
        if closing:
            self.log.info(
                "ending sessions: {n} client(s) told: {notice}", n=len(closing), notice=notice
            )
        return gatherResults([saved, whenAllClosed(self.clock, closing, timeout)]).addCallback(
            lambda _: None
        )
