# -*- test-case-name: tests.test_machine -*-
"""
The sans-IO rules of one side of a session: how its stream ends, when it
acknowledges, and its deadlines.

L{SessionMachine} holds the state that decides how a session's byte stream
is finished (FIN, full and half close, abort, the client's lingering until
the server confirms) and every deadline of the session but its liveness
(which L{Liveness} decides): the delayed acknowledgement, the close
deadline, expiry while detached, hibernation.  It never touches a reactor,
a socket or a clock: each input comes with C{now}, answers say what to do
(a frame to send, a decision the caller carries out in order), and
L{SessionMachine.nextDeadline} tells the caller when to call
L{SessionMachine.dueDeadlines} next: one timer per session.

The Twisted driver (L{migrate._session.Session}, a subclass) does the I/O:
it writes the frames to its carrier, calls the application, and keeps that
one timer.

Closing, as decided here::

    open --close()--> FIN queued (after the producer) --finish()--> FIN out
      |                                                     |
      |  peerFinished() <-- the peer's FIN                  v
      +-----------------> both ended: finishStep() -> CLOSE (server, or a
                          client without carrier) | LINGER (client: until
                          the server closes the carrier, up to
                          closeTimeout) | WAIT_CHANNELS (other channels live)
"""

from __future__ import annotations

from typing import Optional

from .liveness import Liveness
from .stream import StreamEngine

# Why the application's producer may be paused (any one is enough).

#: The carrier's send buffer is full.
CARRIER = "carrier"
#: The session is detached.
DETACHED = "detached"
#: Too many bytes await acknowledgement (above the high-water mark, until
#: back under the low-water mark).
BUFFER = "buffer"
#: The server is over its memory budget.
BUDGET = "budget"

#: The few sets of pause reasons there are, one object each (most of many
#: sessions share one).
_INTERNED: dict[frozenset[str], frozenset[str]] = {}


def interned(reasons: frozenset[str]) -> frozenset[str]:
    """
    The one object for this set of pause reasons.
    """
    return _INTERNED.setdefault(reasons, reasons)


ONLY_DETACHED = interned(frozenset({DETACHED}))
NO_REASONS = interned(frozenset())

# What finishStep() decides.

#: Nothing to do: a stream is not finished, or the session is already
#: ending.
NOTHING = 0
#: Our stream is complete but the session lives on in other channels: the
#: close deadline is cleared.
WAIT_CHANNELS = 1
#: (Client) everything is complete: wait for the server to close the
#: carrier (it does once it has read our last acknowledgement).
LINGER = 2
#: Everything is complete: close the carrier gracefully and end.
CLOSE = 3

# What close() decides.

#: Our direction is not closed yet: close it (FIN now or after the
#: producer), as loseWriteConnection does.
HALF_CLOSE = 1
#: Our FIN is already written: the application's full close is done.
CLOSE_DONE = 2

# What received() decides.

#: Acknowledge now (enough unacknowledged bytes).
ACK_NOW = 1
#: Acknowledge later: the delayed-acknowledgement deadline was just set.
ACK_LATER = 2

# Deadlines (what dueDeadlines() returns).

#: The delayed acknowledgement is due.
ACK = "ack"
#: Both directions ended but the close did not complete in time.
CLOSE_TIMEOUT = "close"
#: (Client) the server did not confirm our last acknowledgement in time.
LINGER_TIMEOUT = "linger"
#: (Client) our abort did not reach the peer in time.
ABORT_TIMEOUT = "abort"
#: Detached for longer than the policy's C{expireAfter}.
EXPIRE = "expire"
#: Detached for the policy's C{suspendAfter}: hibernate.
HIBERNATE = "hibernate"


class SessionMachine(Liveness):
    """
    The sans-IO state and rules of one side of a session (see the module
    docstring).

    @ivar isClient: which side we are.
    @ivar engine: positions and the retransmission buffer.
    @ivar closeTimeout: how long a close (or a client's lingering, or its
        abort) may take.
    @ivar ackEvery: acknowledge at once when this many bytes are
        unacknowledged.
    @ivar ackDelay: otherwise acknowledge this long after the first of them.
    @ivar closeRequested: the application closed (C{loseConnection}): no
        more data to it, FIN once the producer is gone.
    @ivar writeClosed: our direction is closing (FIN requested; it goes out
        once the producer, if any, is unregistered).
    @ivar noWrites: writes are dropped (our FIN is out, or the
        application's connection is over).
    @ivar finPending: our FIN waits for the producer to be unregistered.
    @ivar finWritten: our FIN was written to a carrier.
    @ivar appLost: the application's connection is over (its
        C{connectionLost} is delivered or scheduled).
    @ivar ended: the session is over.
    @ivar aborting: (client) the reason to tell the peer while our abort
        waits to reach it.
    @ivar lingering: (client) the streams are complete; we wait for the
        server to close the carrier.
    @ivar unreadAfterClose: the peer sent data after the application's full
        close (the session is then aborted, as TCP resets).
    @ivar endNotice: why the session ended, as told to the peer (C{None}
        for a clean close).
    @ivar ackAt: when the delayed acknowledgement is due, or C{None}.
    @ivar closeAt: when the close deadline (of kind C{closeKind}) falls, or
        C{None}.
    @ivar expireAt: when a detached session expires, or C{None}.
    @ivar hibernateAt: when a detached session hibernates, or C{None}.
    @ivar pauseReasons: why the application's producer is paused (a shared
        frozen set, replaced on change).
    @ivar appPaused: the application's producer is paused.
    @ivar highWater: unacknowledged bytes above which the producer is
        paused.
    @ivar lowWater: unacknowledged bytes below which it is resumed.
    @ivar hardCap: unacknowledged bytes a write may never take the buffer
        past.
    """

    __slots__ = (
        "isClient",
        "engine",
        "closeTimeout",
        "ackEvery",
        "ackDelay",
        "closeRequested",
        "writeClosed",
        "noWrites",
        "finPending",
        "finWritten",
        "appLost",
        "ended",
        "aborting",
        "lingering",
        "unreadAfterClose",
        "endNotice",
        "ackAt",
        "closeAt",
        "closeKind",
        "expireAt",
        "hibernateAt",
        "pauseReasons",
        "appPaused",
        "highWater",
        "lowWater",
        "hardCap",
    )

    def __init__(
        self,
        isClient: bool,
        sendFrame: int,
        closeTimeout: float,
        ackEvery: int,
        ackDelay: float,
    ) -> None:
        Liveness.__init__(self)
        self.isClient = isClient
        self.engine = StreamEngine(sendFrame)
        self.closeTimeout = closeTimeout
        self.ackEvery = ackEvery
        self.ackDelay = ackDelay
        self.closeRequested = False
        self.writeClosed = False
        self.noWrites = False
        self.finPending = False
        self.finWritten = False
        self.appLost = False
        self.ended = False
        self.aborting: Optional[str] = None
        self.lingering = False
        self.unreadAfterClose = False
        self.endNotice: Optional[str] = None
        self.ackAt: Optional[float] = None
        self.closeAt: Optional[float] = None
        self.closeKind = CLOSE_TIMEOUT
        self.expireAt: Optional[float] = None
        self.hibernateAt: Optional[float] = None
        self.pauseReasons = ONLY_DETACHED
        self.appPaused = False
        self.highWater = self.lowWater = self.hardCap = 0

    # Buffer limits and the application's producer

    def setLimits(self, highWater: int, hardCap: int) -> None:
        """
        Pause the producer above C{highWater} unacknowledged bytes (resume
        below half of it); never take the buffer past C{hardCap}.
        """
        self.highWater = highWater
        self.lowWater = highWater // 2
        self.hardCap = hardCap

    def newBufferSize(self, size: int) -> bool:
        """
        A new high-water mark (the hard cap is raised to it if lower):
        whether the producer's buffer reason is over now (see
        L{bufferDrained}).

        @raise ValueError: C{size} is not positive.
        """
        if size <= 0:
            raise ValueError("buffer size must be positive")
        self.setLimits(size, max(self.hardCap, size))
        return self.bufferDrained()

    def overCap(self, length: int) -> bool:
        """
        Whether writing C{length} more bytes would take the buffer past its
        hard cap.
        """
        engine = self.engine
        return engine.sent - engine.acked + length > self.hardCap

    def bufferFull(self) -> bool:
        """
        Whether the buffer is above its high-water mark.
        """
        return self.engine.buffered > self.highWater

    def bufferDrained(self) -> bool:
        """
        Whether the producer is paused for its buffer and the buffer is
        back under its low-water mark (it may resume for that reason).
        """
        return BUFFER in self.pauseReasons and self.engine.buffered <= self.lowWater

    def pauseFor(self, reason: str, producing: bool) -> bool:
        """
        Pause for C{reason}: whether the producer (if C{producing}) must be
        paused now (it was not already).
        """
        reasons = self.pauseReasons
        if reason not in reasons:
            self.pauseReasons = interned(reasons | {reason})
        if producing and not self.appPaused:
            self.appPaused = True
            return True
        return False

    def resumeFor(self, reason: str, producing: bool) -> bool:
        """
        C{reason} is over: whether the producer (if C{producing}) must be
        resumed now (no other reason remains).
        """
        reasons = self.pauseReasons
        if reason in reasons:
            reasons = self.pauseReasons = interned(reasons - {reason})
        if not reasons and producing and self.appPaused:
            self.appPaused = False
            return True
        return False

    def carrierFreed(self) -> None:
        """
        The carrier is gone: its full send buffer no longer pauses anything
        (detachment does, see L{pauseFor}).
        """
        if CARRIER in self.pauseReasons:
            self.pauseReasons = interned(self.pauseReasons - {CARRIER})

    def producerRegistered(self) -> bool:
        """
        A producer was registered: whether it starts paused.
        """
        self.appPaused = bool(self.pauseReasons)
        return self.appPaused

    # Deadlines

    def nextDeadline(self) -> Optional[float]:
        """
        When L{dueDeadlines} has something to say next, or C{None}.
        """
        best: Optional[float] = None
        for when in (self.ackAt, self.closeAt, self.expireAt, self.hibernateAt):
            if when is not None and (best is None or when < best):
                best = when
        return best

    def dueDeadlines(self, now: float) -> list[str]:
        """
        The deadlines that fell by C{now}, earliest first, each cleared:
        L{ACK}, L{CLOSE_TIMEOUT}, L{LINGER_TIMEOUT}, L{ABORT_TIMEOUT},
        L{EXPIRE}, L{HIBERNATE}.
        """
        due: list[tuple[float, str]] = []
        if self.ackAt is not None and self.ackAt <= now:
            due.append((self.ackAt, ACK))
            self.ackAt = None
        if self.closeAt is not None and self.closeAt <= now:
            due.append((self.closeAt, self.closeKind))
            self.closeAt = None
        if self.expireAt is not None and self.expireAt <= now:
            due.append((self.expireAt, EXPIRE))
            self.expireAt = None
        if self.hibernateAt is not None and self.hibernateAt <= now:
            due.append((self.hibernateAt, HIBERNATE))
            self.hibernateAt = None
        due.sort()
        return [kind for _, kind in due]

    def startCloseDeadline(self, now: float) -> None:
        """
        Both directions are ending (or the application closed): the close
        must complete within C{closeTimeout}.  A deadline already set
        stands.
        """
        if self.closeAt is None:
            self.closeAt = now + self.closeTimeout
            self.closeKind = CLOSE_TIMEOUT

    def detached(self, now: float, expireAfter: float, suspendAfter: Optional[float]) -> None:
        """
        The carrier is gone: the session expires after C{expireAfter} and
        hibernates after C{suspendAfter} (C{None}: never).
        """
        self.expireAt = now + expireAfter
        self.hibernateAt = now + suspendAfter if suspendAfter is not None else None

    def reattached(self) -> None:
        """
        A carrier is back: no expiry, no hibernation.
        """
        self.expireAt = self.hibernateAt = None

    def stopTimers(self) -> None:
        """
        Clear every deadline (the session ended).
        """
        self.ackAt = self.closeAt = self.expireAt = self.hibernateAt = None

    # Acknowledgements

    def received(self, length: int, now: float, delayed: bool = True) -> int:
        """
        C{length} bytes of the peer's stream arrived: whether to acknowledge
        now (L{ACK_NOW}), later (L{ACK_LATER}: the deadline was just set;
        only when C{delayed}, else the caller keeps the delay), or whether
        a delayed acknowledgement is already due (L{NOTHING}).
        """
        engine = self.engine
        engine.received += length
        if engine.received - engine.ackSent >= self.ackEvery:
            return ACK_NOW
        if self.ackAt is None:
            if delayed:
                self.ackAt = now + self.ackDelay
            return ACK_LATER
        return NOTHING

    def ackFrame(self) -> Optional[bytes]:
        """
        An acknowledgement of what we received, if anything is
        unacknowledged; the delayed acknowledgement is then not needed.
        """
        self.ackAt = None
        if self.engine.unacknowledged:
            return self.engine.ackFrame()
        return None

    # Closing

    def halfClose(self, producing: bool) -> bool:
        """
        The application ends our direction (C{loseWriteConnection}, or a
        full close).  Whether our FIN goes out now: not while a producer is
        registered (it goes with L{producerGone}), not twice, not after the
        application's connection is over.
        """
        if self.writeClosed or self.appLost:
            return False
        self.writeClosed = True
        if producing:
            self.finPending = True
            return False
        return True

    def producerGone(self) -> bool:
        """
        The application's producer was unregistered: whether a pending FIN
        goes out now.
        """
        return self.finPending and not self.appLost

    def close(self) -> Optional[int]:
        """
        The application closes (C{loseConnection}): L{HALF_CLOSE} (close
        our direction first), L{CLOSE_DONE} (our FIN is already out: the
        full close is done), L{NOTHING} (our direction is already closing),
        or C{None} (a second call, or after the end: nothing at all).
        """
        if self.closeRequested or self.appLost:
            return None
        self.closeRequested = True
        if not self.writeClosed:
            return HALF_CLOSE
        if self.finWritten:
            return CLOSE_DONE
        return NOTHING

    def finish(self, now: float) -> bytes:
        """
        Our FIN goes out now: the frame to send.  No more writes.  A full
        close (or a half close after the peer's FIN) gets its deadline.
        """
        self.finPending = False
        self.noWrites = True
        frame = self.engine.finish()
        if self.closeRequested or self.engine.finReceived:
            self.startCloseDeadline(now)
        return frame

    def finWrittenOut(self) -> bool:
        """
        Our FIN was written to a carrier: whether that completes a full
        close (else a half-closing application hears
        C{writeConnectionLost}).
        """
        self.finWritten = True
        return self.closeRequested

    def peerFinished(self, ack: int, now: float) -> bool:
        """
        The peer's FIN arrived: whether the application must hear of it
        (it has not closed itself).

        @raise ProtocolViolation: a FIN at a position that cannot be.
        """
        self.engine.finArrived(ack)
        if self.engine.finSent:
            self.startCloseDeadline(now)
        return not self.closeRequested

    def finishReady(self) -> bool:
        """
        Whether both streams are complete and nothing else decides the end
        yet (no abort, no lingering, not ended): L{finishStep} has a
        decision to make.
        """
        return not (
            self.ended or self.aborting is not None or self.lingering or not self.engine.finished
        )

    def finishStep(self, channelsLive: bool, attached: bool, now: float) -> int:
        """
        After anything that may complete the session: L{NOTHING},
        L{WAIT_CHANNELS}, L{LINGER} or L{CLOSE} (see each).

        @param channelsLive: other channels keep the session alive (on a
            client: unless all of them linger too).
        @param attached: a carrier is up.
        """
        if not self.finishReady():
            return NOTHING
        if channelsLive:
            self.closeAt = None
            return WAIT_CHANNELS
        if self.isClient and attached:
            self.lingering = True
            self.closeAt = now + self.closeTimeout
            self.closeKind = LINGER_TIMEOUT
            return LINGER
        return CLOSE

    def cleanClose(self) -> bool:
        """
        The peer closed our carrier cleanly: whether that ends the session
        (it read our abort, or confirmed our lingering close).
        """
        return self.aborting is not None or self.lingering

    def appGone(self) -> bool:
        """
        The application's connection is over: no more writes, no more
        data.  Whether this is news (C{False} on a second call).
        """
        if self.appLost:
            return False
        self.appLost = True
        self.noWrites = self.writeClosed = self.closeRequested = True
        return True

    def dataAfterClose(self) -> bool:
        """
        The peer sent data after the application's full close: whether to
        abort now (our FIN is out and nothing else ends the session yet).
        """
        self.unreadAfterClose = True
        return self.finWritten and self.aborting is None and not self.ended

    def abortPeer(self, notice: str, now: float) -> bool:
        """
        Our abort must reach the peer.  Whether the session waits for that
        (a client: until the peer closes a carrier after it, up to
        C{closeTimeout}); a server ends at once (it tells a peer that
        resumes later).
        """
        self.endNotice = notice
        if self.isClient:
            self.aborting = notice
            if self.closeAt is None:
                self.closeAt = now + self.closeTimeout
                self.closeKind = ABORT_TIMEOUT
            return True
        return False

    def markEnded(self) -> bool:
        """
        The session ends: whether this is news.  No deadline is left.
        """
        if self.ended:
            return False
        self.ended = True
        self.aborting = None
        self.lingering = False
        self.stopTimers()
        return True

    @property
    def closingSession(self) -> bool:
        """
        Whether the whole session is on its way out.
        """
        return self.ended or self.lingering or self.aborting is not None
