# -*- test-case-name: tests.test_machine -*-
"""
The sans-IO rules of a session's channels: their numbers, what a closed one
is remembered as, and their flow control.

Each channel's own stream is a L{SessionMachine
<migrate._sansio.session.SessionMachine>} of its own; what is here is what
the channels of one session share, and the windows of one channel on one
carrier.  The Twisted driver is L{migrate._channels}.

  - L{ChannelNumbers}: a client opens odd channels and a server even ones
    (channel 0 is the session's first stream); a number is never used
    twice, so a peer's opening of a number it already used is answered
    from the memory of closed channels, never opened again.
  - L{SendWindow}: the peer grants how many bytes of a channel's frames we
    may send on a carrier; what does not fit waits, in order.
  - L{ReceiveWindow}: we grant the peer a window and hold it to it; more is
    granted as our application reads.
"""

from __future__ import annotations

from collections import deque
from typing import Optional

from . import wire as _wire
from .errors import ProtocolViolation

#: How many closed channels a session remembers (with how they closed), to
#: answer a peer that resumes one whose close it did not hear.
CLOSED_MEMORY = 64

# What ChannelNumbers.peerOpening() says of a peer's opening.

#: A channel the peer opens for the first time.
NEW = "new"
#: One it opened before, asked again after a resume: if we still have it,
#: our resume position for it answers; if not, how it closed (see
#: L{ChannelNumbers.closedAnswer}): a number is never opened twice.
AGAIN = "again"


class ChannelNumbers:
    """
    The channel numbers of one session on one side.

    @ivar next: the number our next channel gets.
    @ivar peerHighest: the highest number the peer opened.
    @ivar maxChannels: how many channels may be open at once.
    """

    __slots__ = ("next", "peerHighest", "maxChannels", "_closed")

    def __init__(self, isClient: bool, maxChannels: int) -> None:
        self.next = 1 if isClient else 2
        self.peerHighest = 0
        self.maxChannels = maxChannels
        self._closed: deque[tuple[int, bool, Optional[str]]] = deque(maxlen=CLOSED_MEMORY)

    def allocate(self, open: int) -> tuple[Optional[int], str]:
        """
        A number for a channel we open, with C{open} channels open now: the
        number, or C{None} and why not.
        """
        if open >= self.maxChannels:
            return None, "this side's channel limit (%d) is reached" % (self.maxChannels,)
        if self.next > _wire.MAX_CHANNEL_ID:
            return None, "channel numbers are used up"
        channel = self.next
        self.next += 2
        return channel, ""

    def peerOpening(self, channel: int, known: bool) -> str:
        """
        The peer opens C{channel} (C{known}: we have it open): L{NEW}, or
        L{AGAIN} for a number it used before.

        @raise ProtocolViolation: the number is ours, or 0.
        """
        if channel == 0 or channel % 2 == self.next % 2:
            raise ProtocolViolation("channel %d is not the peer's to open" % (channel,))
        if known or channel <= self.peerHighest:
            return AGAIN
        self.peerHighest = channel
        return NEW

    def admits(self, open: int) -> Optional[str]:
        """
        Whether one more channel may open with C{open} open now: C{None},
        or why not.
        """
        if open >= self.maxChannels:
            return "channel limit (%d) reached" % (self.maxChannels,)
        return None

    def remember(self, channel: int, graceful: bool, notice: Optional[str]) -> None:
        """
        Keep how channel C{channel} closed (for a while: the last
        L{CLOSED_MEMORY}), to tell a peer that resumes it.
        """
        for i, (known, _, _) in enumerate(self._closed):
            if known == channel:
                del self._closed[i]
                break
        self._closed.append((channel, graceful, notice))

    def closedAnswer(self, channel: int) -> bytes:
        """
        What to tell a peer that asks for a channel we no longer have: how
        it closed, if we remember; else that it is gone.
        """
        for known, graceful, notice in self._closed:
            if known == channel:
                return _wire.encodeChannelClose(channel, graceful, notice)
        return _wire.encodeChannelClose(channel, False)


class SendWindow:
    """
    What we may send of one channel's frames on one carrier.

    @ivar limit: how many bytes the peer lets us send on this carrier.
    @ivar sent: how many we sent.
    @ivar queued: how many wait for window.
    """

    __slots__ = ("limit", "sent", "queued", "_queue")

    def __init__(self) -> None:
        self.limit = 0
        self.sent = 0
        self.queued = 0
        self._queue: Optional[deque[bytes]] = None

    @property
    def blocked(self) -> bool:
        """
        Whether something waits for window.
        """
        return self._queue is not None

    def offer(self, pieces: list[bytes], length: int) -> list[bytes]:
        """
        The channel sends C{pieces} (C{length} bytes): what goes out now, in
        order (all of it if it fits and nothing waits); the rest waits for
        L{grant}.
        """
        if self._queue is None and self.sent + length <= self.limit:
            self.sent += length
            return pieces
        queue = self._queue
        if queue is None:
            queue = self._queue = deque()
        for piece in pieces:
            if piece:
                queue.append(piece)
                self.queued += len(piece)
        return self.release()

    def grant(self, limit: int) -> list[bytes]:
        """
        The peer lets us send up to C{limit} bytes (a smaller limit than
        one granted before changes nothing): what goes out now.
        """
        if limit > self.limit:
            self.limit = limit
        return self.release()

    def release(self) -> list[bytes]:
        """
        What the window allows now of what waits, in order (a piece may be
        split).
        """
        queue = self._queue
        out: list[bytes] = []
        if queue is None:
            return out
        room = self.limit - self.sent
        while queue and room > 0:
            piece = queue[0]
            if len(piece) <= room:
                queue.popleft()
            else:
                queue[0] = piece[room:]
                piece = piece[:room]
            room -= len(piece)
            self.queued -= len(piece)
            self.sent += len(piece)
            out.append(piece)
        if not queue:
            self._queue = None
        return out

    def drop(self) -> None:
        """
        Forget what waits (the carrier is over).
        """
        self._queue = None
        self.queued = 0


class ReceiveWindow:
    """
    What the peer may send of one channel's frames on one carrier.

    @ivar window: how much we grant at a time.
    @ivar granted: how many bytes we let the peer send.
    @ivar received: how many it sent.
    """

    __slots__ = ("window", "granted", "received")

    def __init__(self, window: int) -> None:
        self.window = window
        self.granted = window
        self.received = 0

    def frameStarted(self, channel: int, length: int) -> None:
        """
        A C{CHANNEL} frame of C{length} bytes arrives.

        @raise ProtocolViolation: it goes past the window we granted.
        """
        if self.received + length > self.granted:
            raise ProtocolViolation(
                "channel %d: %d bytes past the window of %d"
                % (channel, self.received + length - self.granted, self.granted)
            )
        self.received += length

    def consumed(self, unread: int) -> Optional[int]:
        """
        Our application read all but C{unread} bytes of what arrived: the
        new limit to grant the peer, once half the window is used (else
        C{None}).
        """
        consumed = self.received - unread
        if self.granted - consumed <= self.window // 2:
            self.granted = consumed + self.window
            return self.granted
        return None



class StreamWindow:
    """
    Channel 0's window, once a session has channels: in positions of the
    session's own stream (its data frames are not in C{CHANNEL} frames).

    Without channels the first stream needs no window: a reader that
    pauses pauses the carrier, which stops nothing else.  With channels,
    the reader grants the writer a position it may send up to (the
    C{CHANNEL_WINDOW} frame of channel 0, renewed as the application
    reads), so that a paused first stream holds at most one window and the
    carrier is read on for the other channels.  A grant is an absolute
    position, good on every carrier: after a resume the writer sends up to
    the last grant at once.  The writer frames what it holds back only when
    it goes out (with the acknowledgement of that moment).

    @ivar limit: (writer) the position the peer lets us send up to; C{0}
        until it granted one (nothing is held back until then).
    @ivar written: (writer) how far our stream is written on the current
        carrier.
    @ivar finOut: (writer) our FIN is written on the current carrier.
    @ivar granted: (reader) the position we let the peer send up to; C{0}
        until we granted one.
    """

    __slots__ = ("limit", "written", "finOut", "granted")

    def __init__(self) -> None:
        self.limit = 0
        self.written = 0
        self.finOut = False
        self.granted = 0

    def grant(self, limit: int, sent: int, finOut: bool) -> bool:
        """
        (Writer) the peer lets us send up to position C{limit}: whether
        that is more than before.  The first grant finds everything sent so
        far (up to C{sent}, our FIN if C{finOut}) already written.
        """
        if limit <= self.limit:
            return False
        if not self.limit:
            self.written = sent
            self.finOut = finOut
        self.limit = limit
        return True

    def fits(self, start: int, end: int) -> bool:
        """
        (Writer) whether data from C{start} to C{end} may be written now:
        nothing waits before it and it ends within the window.
        """
        return self.written == start and end <= self.limit

    def newCarrier(self, resumedFrom: int, end: int, finOut: bool) -> None:
        """
        (Writer) a resume wrote our stream from C{resumedFrom} up to C{end}
        (and our FIN if C{finOut}) on a new carrier.
        """
        self.written = max(resumedFrom, end)
        self.finOut = finOut

    def firstGrant(self, received: int, window: int) -> int:
        """
        (Reader) the session now has channels: the position to grant.
        """
        self.granted = max(self.granted, received + window)
        return self.granted

    def nextGrant(self, received: int, window: int) -> Optional[int]:
        """
        (Reader) our application read up to C{received}: a new position to
        grant once half the window is used, else C{None}.
        """
        if self.granted and self.granted - received <= window // 2:
            self.granted = received + window
            return self.granted
        return None

    def overrun(self, position: int) -> bool:
        """
        (Reader) whether the peer sent past what we granted (it had not
        heard of our first grant when it sent).
        """
        return bool(self.granted) and position > self.granted
