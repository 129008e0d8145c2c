# -*- test-case-name: tests.test_session,tests.test_channels -*-
"""
Checkpoints, hibernation and restoring from a checkpoint.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from .._address import formatAddress
from ..interfaces import SessionRecord
from ..policy import DefaultPolicy

from .state import SessionState, State


class HibernationRole(SessionState):
    """
    Checkpoints, hibernation and restoring from a checkpoint.
    """

    if not TYPE_CHECKING:
        # (Slots at run time, so that a session has no __dict__; the type
        # checker sees the attributes the session declares.)
        __slots__ = ()

    def restoreStream(
        self,
        sent: int,
        acked: int,
        received: int,
        finSent: bool,
        finReceived: bool,
        buffer: bytes,
        handoffs: int,
        detachedSince: Optional[float],
    ) -> None:
        """
        Take the positions, buffer and history of a stored stream (a
        session's or a channel's).
        """
        self.engine.restore(sent, acked, received, finSent, finReceived, buffer)
        self.handoffs = handoffs
        self.detachedSince = detachedSince

    def _hibernateDue(self) -> None:
        if self.onHibernate is not None and self.state is State.DETACHED and not self.appLost:
            self.onHibernate(self.session)

    def checkpoint(self, appState: Optional[bytes]) -> SessionRecord:
        """
        Everything needed to resume this session later, maybe elsewhere.
        """
        engine = self.engine
        now = self.clock.seconds()
        detached = self.detachedSince if self.detachedSince is not None else now
        return SessionRecord(
            sessionID=self.sessionID,
            side="client" if self.isClient else "server",
            key=self.key,
            generation=self.generation,
            sent=engine.sent,
            acked=engine.acked,
            received=engine.received,
            finSent=engine.finSent,
            finReceived=engine.finReceived,
            buffer=engine.unacknowledgedBytes(),
            peer=formatAddress(self.lastPeer),
            host=formatAddress(self.lastHost),
            createdAt=self.createdAt,
            detachedSince=detached,
            hibernatedAt=now,
            expiresAt=detached + self.policy.expireAfter(),
            handoffs=self.handoffs,
            appState=appState,
            policy=self.policy.settings() if type(self.policy) is DefaultPolicy else None,
            secure=self.secure,
            channels=self.channels.checkpoint() if self.channels else None,
        )

    def hibernate(self) -> None:
        """
        Give back the live resources of a detached session whose checkpoint
        is being stored: its timers and its retransmission buffer.  (The
        caller drops the session object itself when the application could be
        dropped too.)
        """
        self.hibernated = True
        self.hibernateAt = self.expireAt = self.ackAt = None
        self._arm()
        self._stopLiveness()
        self.engine.releaseBuffer()
        if self.channels is not None:
            self.channels.hibernate()

    def wake(self, record: SessionRecord) -> None:
        """
        A hibernated session kept in memory is being resumed: take its
        buffer back from the checkpoint, and its expiry timer.
        """
        self.wakeBuffer(record.buffer)
        if self.channels is not None:
            self.channels.wake(record.channels)
        if self.expireAt is None and not self.ended:
            self.expireAt = record.expiresAt
            self._arm()

    def wakeBuffer(self, buffer: Optional[bytes]) -> None:
        """
        Out of hibernation: take back the retransmission buffer stored with
        the checkpoint (C{None}: none was stored).
        """
        self.hibernated = False
        if buffer is not None:
            self.engine.restoreBuffer(buffer)

