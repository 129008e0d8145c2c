# -*- test-case-name: tests.test_session,tests.test_channels -*-
"""
Channels: a session with several streams runs each in a child session (see
L{migrate._channels}).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IProtocol, IProtocolFactory

from .._sansio import wire as _wire
from .._sansio.channels import StreamWindow
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
            self._grantZero()
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

    # Channel 0's window (see StreamWindow): our first stream's, once the
    # session has channels.

    def _zeroWindow(self) -> StreamWindow:
        zero = self._zero
        if zero is None:
            zero = self._zero = StreamWindow()
        return zero

    def _grantZero(self) -> None:
        """
        (Reader) the session has channels: grant the peer a window on our
        first stream (again, on a new carrier: the last grant may have been
        lost with the old one).
        """
        carrier = self.carrier
        if carrier is None or self.parent is not None or self.engine.finReceived:
            return
        zero = self._zeroWindow()
        limit = zero.firstGrant(self.engine.received, self.options.channelWindow)
        carrier.transport.write(_wire.encodeChannelWindow(0, limit))

    def _zeroRead(self) -> None:
        """
        (Reader) our application read more of the first stream: grant more
        once half the window is used.
        """
        zero = self._zero
        carrier = self.carrier
        if zero is None or carrier is None:
            return
        limit = zero.nextGrant(self.engine.received, self.options.channelWindow)
        if limit is not None:
            carrier.transport.write(_wire.encodeChannelWindow(0, limit))

    def _zeroGranted(self, limit: int) -> None:
        """
        (Writer) the peer lets us send our first stream up to C{limit}.
        """
        engine = self.engine
        if self._zeroWindow().grant(
            limit, engine.sent, engine.finSent and self.finWritten
        ):
            self._zeroFlush()

    def _zeroFlush(self) -> None:
        """
        (Writer) write what the window now allows of our first stream (and
        our FIN, once everything before it is written).
        """
        zero = self._zero
        carrier = self.carrier
        if zero is None or carrier is None or self.parent is not None:
            return
        engine = self.engine
        end = min(zero.limit, engine.sent)
        withFin = engine.finSent and not zero.finOut and end >= engine.sent
        if end <= zero.written and not withFin:
            return
        pieces, _ = engine.framesBetween(zero.written, end, withFin)
        zero.written = max(zero.written, end)
        if withFin:
            zero.finOut = True
        if pieces:
            carrier.transport.writeSequence(pieces)
            self._watch()
        if withFin and not self.finWritten:
            self._finWrittenOut()
