# -*- test-case-name: tests.test_session,tests.test_channels -*-
"""
Channels: a session with several streams runs each in a child session (see
L{migrate._channels}).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IProtocol, IProtocolFactory

from .._sansio.stream import ProtocolViolation

if TYPE_CHECKING:
    from .._channels import ChannelTable
    from .core import Session


from .state import SessionState, _CARRIER


class ChannelRole(SessionState):
    """
    Channels: a session with several streams runs each in a child session
    (see L{migrate._channels}).
    """

    if not TYPE_CHECKING:
        # (Slots at run time, so that a session has no __dict__; the type
        # checker sees the attributes the session declares.)
        __slots__ = ()

    def makeChannel(self, root: Session, channel: int) -> None:
        """
        Run channel C{channel} of C{root}: this session's carriers are
        channel carriers on C{root}'s; handshakes, liveness, expiry,
        hibernation and advertisements are C{root}'s alone.
        """
        self.parent = root
        self.channelID = channel
        self.timers = root.timers
        self.lastPeer = root.lastPeer
        self.lastHost = root.lastHost
        self.secure = root.secure

    def channelTable(self) -> ChannelTable:
        """
        The table of this session's channels (made on first use).
        """
        table = self.channels
        if table is None:
            from .._channels import ChannelTable

            table = self.channels = ChannelTable(self.session)
            table.writeBlocked = _CARRIER in self.pauseReasons
            if self._readPaused and self._held is None:
                # From now on our paused reader holds its bytes, and the
                # carrier is read for the other channels.
                self._held = []
                if self.carrier is not None and not self.carrier.retired:
                    self.carrier.resumeReading()
        return table

    def openChannel(self, factory: IProtocolFactory, name: str = "") -> Deferred[IProtocol]:
        """
        Open another channel of this session (see
        L{IMigrateTransport.openChannel}).
        """
        root = self.parent if self.parent is not None else self
        return root.channelTable().open(factory, name)

    def channelSettled(self) -> None:
        """
        One of our channels ended, or (on a client) finished and waits for
        the server's confirmation: if our own stream is complete too, so
        may the session be.
        """
        if not self.ended:
            self._checkFinished()

    @property
    def abortingNotice(self) -> Optional[str]:
        """
        (Client) why we abort, while the abort waits to reach the peer;
        else C{None}.
        """
        return self.aborting

    def channelFrameStarted(self, channel: int, length: int) -> None:
        """
        A channel frame's head (see L{migrate._channels}).

        @raise ProtocolViolation: on a channel's own carrier.
        """
        if self.parent is not None:
            raise ProtocolViolation("channel frame inside a channel")
        self._heard += 1
        table = self.channels
        if table is None:
            table = self.channelTable()
        table.frameStarted(channel, length)

    def channelPayloadReceived(self, payload: bytes) -> None:
        """
        Some bytes of the current channel frame.
        """
        table = self.channels
        if table is not None:
            table.payload(payload)

