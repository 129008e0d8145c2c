# -*- test-case-name: tests.test_hibernation,tests.test_restart -*-
"""
The server's hibernation: sessions checkpointed into the store, restored
from it, and expired in it.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.python.failure import Failure

from .._channels import ChannelTable
from .._protocol import Carrier
from .._sansio import wire as _wire
from .._session import Session, State, restoreSession
from .._upcalls import Upcalls
from ..errors import SessionExpired
from ..errors import CorruptRecord, StoreUnavailable
from ..interfaces import IMigratable, SessionRecord
from ..store import logStoreFailure
from .constants import _FULL_RETRY, _RESTART_NOTICE
from .pending import _PendingCarrier
from .state import ServerState


class Hibernation(ServerState):
    """
    Hibernation: detached sessions checkpointed into the store (and every
    migratable one when the process stops), the checkpoints being saved,
    their expiry, the store's failures, and sessions rebuilt from a
    checkpoint.

    It owns C{_saving} and C{_purgeCall}.
    """

    def hibernate(self, session: Session) -> Deferred[None]:
        """
        Checkpoint a detached session into the store and give back its live
        resources.  A migratable application (L{IMigratable}) is dropped
        with the session object; any other stays in memory (it cannot be
        rebuilt), but its timers and buffers go.

        @return: a L{Deferred} that fires once the checkpoint is in the
            store (or could not be written: that is logged).
        """
        store = self.store
        if store is None or session.ended or session.hibernated or session.state is not State.DETACHED:
            return succeed(None)
        transport = session.transport
        if transport is not None:
            session.upcalls.notify("aboutToHibernate", transport)
        if session.ended or session.state is not State.DETACHED:
            return
        appState: Optional[bytes] = None
        migratable = IMigratable(session.app, None)
        if migratable is not None:
            try:
                appState = migratable.saveMigrationState()
            except Exception:
                self.log.failure("saveMigrationState raised; keeping the application in memory")
                appState = None
        record = session.checkpoint(appState)
        if appState is not None and not ChannelTable.restorable(record.channels):
            # A channel that cannot be rebuilt keeps the whole session's
            # applications in memory (its buffers still go).
            appState = None
        sid = session.sessionID
        self._saving[sid] = record
        session.hibernate()
        self._detached.pop(sid, None)
        if appState is not None:
            self._forgetDetached(session)
            self._uncountHost(session)
            del self.sessions[sid]
            # Nothing refers to it any more; break its cycles so that its
            # memory goes back at once, not at the next collection.
            session.dropApp()
        self.log.info(
            "session {sid} hibernated ({kind})",
            sid=session.hexID,
            kind="application dropped" if appState is not None else "application kept",
            event="hibernated",
        )

        def saved(_: object) -> None:
            if self._saving.get(sid) is record:
                del self._saving[sid]
            self.log.info("session {sid} stored", sid=sid.hex(), event="stored")

        # On failure the checkpoint stays in memory and can still be resumed.
        return store.save(record).addCallbacks(
            saved,
            self._storeError,
            errbackArgs=("session {sid}: could not write to the store",),
            errbackKeywords={"sid": sid.hex()},
        )

    def _forgetStored(self, sid: bytes) -> None:
        self._saving.pop(sid, None)
        if self.store is not None:
            self.store.delete(sid).addErrback(self._storeError, "store delete failed")

    def _purgeStore(self) -> None:
        """
        Expire hibernated sessions past their time: in the store, and those
        whose application stayed in memory.
        """
        self._purgeCall = self.clock.callLater(self.options.purgeInterval, self._purgeStore)
        now = self.clock.seconds()
        for sid, record in list(self._saving.items()):
            if record.expiresAt <= now:
                del self._saving[sid]
        for session in [s for s in self.sessions.values() if s.hibernated]:
            if session.detachedSince is not None and (
                session.detachedSince + session.policy.expireAfter() <= now
            ):
                session.end(SessionExpired("hibernated session expired"))
        if self.store is not None:
            self.store.purgeExpired(now).addErrback(self._storeError, "store purge failed")

    def _storeError(self, failure: Failure, what: str, **fields: Any) -> None:
        logStoreFailure(self.log, failure, what, **fields)

    def _storeFailed(
        self, carrier: Carrier, state: _PendingCarrier, sid: bytes, failure: Failure
    ) -> None:
        """
        The store could not give back a checkpoint: say so clearly; that
        session cannot resume, others are unaffected.
        """
        if failure.check(CorruptRecord):
            self.log.error("{error}", error=str(failure.value))
            self._forgetStored(sid)
            stub = self.sessions.get(sid)
            if stub is not None and stub.hibernated:
                stub.end(SessionExpired("hibernated state unusable"))
        elif failure.check(StoreUnavailable):
            # Logged by the store itself, once; the checkpoint may be good
            # again when the store is: the client is told to try later.
            if not carrier.retired and self._pending.get(carrier) is state:
                carrier.reject(
                    _wire.REJECT_BUSY, "session store unavailable", _FULL_RETRY
                )
            return
        else:
            self.log.failure("session {sid}: the store failed", failure, sid=sid.hex())
        if not carrier.retired and self._pending.get(carrier) is state:
            carrier.reject(_wire.REJECT_UNKNOWN_SESSION, "session state unusable")

    def _rebuild(self, record: SessionRecord, carrier: Carrier) -> Optional[Session]:
        """
        Rebuild a session and its migratable application from a checkpoint.
        """
        session = restoreSession(
            self.clock,
            record,
            self.options,
            self.policy,
            Upcalls(self.observers),
            self.wrappedFactory,
            carrier.transport.getPeer(),
            self.channelFactories,
        )
        if session is None:
            return None
        self._adopt(session, carrier.transport.getPeer())
        self.log.info(
            "session {sid} restored from the store", sid=session.hexID, event="restored"
        )
        return session

    def _checkpointForRestart(self) -> Deferred[None]:
        """
        The process is stopping: with a store, every session whose
        application is migratable is checkpointed into it (its carrier
        closed, after what was written to it), so that this server started
        again on the same store resumes it; its client, reconnecting
        meanwhile, is refused as busy ("server restarting") and holds on.

        @return: a L{Deferred} that fires once the checkpoints are in the
            store.
        """
        if self.store is None:
            return succeed(None)
        saves: list[Deferred[None]] = []
        for session in list(self.sessions.values()):
            if (
                session.ended
                or session.hibernated
                or session.appLost
                or not IMigratable.providedBy(session.app)
            ):
                continue
            carrier = session.carrier
            if carrier is not None:
                carrier.retire(_RESTART_NOTICE, graceful=True)
                session.carrierLost(carrier, _RESTART_NOTICE)
            saves.append(self.hibernate(session))
        if saves:
            self.log.info(
                "stopping: {n} session(s) checkpointed for a restart", n=len(saves)
            )
        return gatherResults(saves).addCallback(lambda _: None)
