# -*- test-case-name: tests.test_session,tests.test_channels -*-
"""
The application's reading: pausing it, and holding what a paused channel's
reader is sent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING



from .._sansio.stream import ProtocolViolation



from .state import SessionState


class ReadingRole(SessionState):
    """
    The application's reading: pausing it, and holding what a paused
    channel's reader is sent.
    """

    if not TYPE_CHECKING:
        # (Slots at run time, so that a session has no __dict__; the type
        # checker sees the attributes the session declares.)
        __slots__ = ()

    def pauseReading(self) -> None:
        """
        The application paused its transport: stop reading every carrier.
        In a session with channels, the carrier goes on being read for the
        other channels and our stream's bytes are held (unacknowledged, so
        a new carrier brings them again), up to C{channelWindow} bytes;
        past that the carrier is paused after all (our stream has no
        window of its own that the peer would respect).
        """
        self._readPaused = True
        if self.channels is not None:
            if self._held is None:
                self._held = []
            if self.carrier is not None:
                self._watch()
            return
        if self.carrier is not None:
            self.carrier.pauseReading()
            self._watch()

    def resumeReading(self) -> None:
        """
        The application resumed its transport.
        """
        self._readPaused = False
        if self._held is not None:
            if self._heldCall is None:
                self._heldCall = self.clock.callLater(0, self._flushHeld)
            return
        if self.carrier is not None:
            self.carrier.resumeReading()

    def _hold(self, item: bytes | int, size: int) -> None:
        """
        Keep a payload (or the peer's FIN, by its acknowledgement) for our
        paused reader.
        """
        held = self._held
        assert held is not None
        held.append(item)
        self._heldBytes += size
        carrier = self.carrier
        zero = self._zero
        if zero is not None and zero.granted:
            # The peer keeps to our window on this stream: only what it sent
            # before it heard of it can go past.
            over = zero.overrun(self.engine.received + self._heldBytes)
        else:
            over = self._heldBytes > self.options.channelWindow
        if over and carrier is not None and not self._heldPausedCarrier:
            self._heldPausedCarrier = True
            carrier.pauseReading()

    def _flushHeld(self) -> None:
        """
        Deliver what was held for our reader, in order, until it pauses
        again.
        """
        self._heldCall = None
        held = self._held or []
        self._held = None
        self._heldBytes = 0
        for i, item in enumerate(held):
            if self.ended:
                return
            if self._readPaused:
                self._held = held[i:]
                self._heldBytes = sum(len(x) for x in self._held if isinstance(x, bytes))
                return
            try:
                if isinstance(item, bytes):
                    # (Nothing is held while this runs: straight through.)
                    self.payloadReceived(item)
                else:
                    self._finReceived(item)
            except ProtocolViolation as e:
                self.log.warn(
                    "session {sid}: protocol error: {error}", sid=self.hexID, error=str(e)
                )
                self.dropCarrier("protocol-error")
                return
        if self._readPaused:
            self._held = []
        if self._heldPausedCarrier:
            self._heldPausedCarrier = False
            carrier = self.carrier
            if carrier is not None and not carrier.retired:
                carrier.resumeReading()

    def _dropHeld(self) -> None:
        """
        Our carrier is gone: so is what it brought and we held (unacknowledged:
        the next carrier brings it again).
        """
        if self._held is not None:
            self._held = [] if self._readPaused else None
        self._heldBytes = 0
        self._heldPausedCarrier = False

