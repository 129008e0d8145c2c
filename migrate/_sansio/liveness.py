# -*- test-case-name: tests.test_liveness -*-
"""
Whether a carrier's path is alive: the rules, without timers or I/O.

A session that waits to hear from its peer (its data or FIN
unacknowledged, a heartbeat unanswered, its application not reading)
sends a heartbeat on a carrier silent for the heartbeat interval, and
declares the path dead after the silence limit.  An idle carrier is looked
at once per keepalive interval: the client sends a keepalive then; the
server, which hears those, only after twice as long without a word.

L{Liveness} is given the time and what the session knows (whether it
waits, a mark that changes whenever anything arrived) and answers what to
do (L{PING}, L{DEAD} or nothing) and when to look again; the Twisted side
(L{migrate._session.Session}) keeps the one timer and writes the frames.
It also estimates the round-trip time from heartbeat answers, as TCP does
(RFC 6298's smoothing).
"""

from __future__ import annotations

from typing import Hashable, Optional

#: Send a heartbeat now.
PING = "ping"
#: The path is dead: drop the carrier.
DEAD = "dead"


class Liveness:
    """
    The liveness state of one session's carrier (a base class: the session
    holds these fields itself, so they cost no object of their own).

    @ivar _lastAlive: when the peer was last heard from, or the silence
        last started counting.
    @ivar _mark: what the session's progress mark was when last looked at.
    @ivar _watching: the last timer was set for a heartbeat (the session
        waited), not for an idle keepalive.
    @ivar _pingToken: the token of the last heartbeat sent.
    @ivar _pingSentAt: when the unanswered heartbeat was sent, if any.
    @ivar srtt: the smoothed round-trip time, once measured.
    @ivar rttvar: its variation.
    @ivar lastRTT: the last sample.
    """

    __slots__ = (
        "_lastAlive",
        "_mark",
        "_watching",
        "_pingToken",
        "_pingSentAt",
        "srtt",
        "rttvar",
        "lastRTT",
    )

    def __init__(self) -> None:
        self._lastAlive = 0.0
        self._mark: Hashable = None
        self._watching = False
        self._pingToken = 0
        self._pingSentAt: Optional[float] = None
        self.srtt: Optional[float] = None
        self.rttvar: Optional[float] = None
        self.lastRTT: Optional[float] = None

    def liveStart(self, now: float, mark: Hashable) -> None:
        """
        A new carrier: its silence counts from now; no heartbeat is
        outstanding on it.
        """
        self._mark = mark
        self._lastAlive = now
        self._pingSentAt = None

    def liveWatch(self, now: float, mark: Hashable) -> bool:
        """
        Something now waits for the peer: if the carrier was idle, its
        silence counts from now.

        @return: whether the timer must be set again (it was set for an
            idle keepalive).
        """
        if self._watching:
            return False
        self._lastAlive = now
        self._mark = mark
        return True

    def liveAwaits(self, waiting: bool) -> bool:
        """
        Whether we wait to hear from the peer: the session does
        (C{waiting}), or a heartbeat is unanswered.
        """
        return waiting or self._pingSentAt is not None

    def liveDelay(self, now: float, waiting: bool, heartbeat: float, idleLimit: float) -> float:
        """
        When to look again: a heartbeat interval away while we wait to hear
        from the peer, else when the idle carrier is due its keepalive.
        """
        if self.liveAwaits(waiting):
            self._watching = True
            return heartbeat
        self._watching = False
        return max(0.0, self._lastAlive + idleLimit - now)

    def liveTick(
        self,
        now: float,
        mark: Hashable,
        waiting: bool,
        readPaused: bool,
        heartbeat: float,
        idleLimit: float,
        silenceLimit: float,
    ) -> Optional[str]:
        """
        The timer fired: what to do.

        @param mark: the session's progress mark now (anything that changes
            whenever data, an acknowledgement or a heartbeat arrived).
        @param waiting: whether the session waits to hear from the peer.
        @param readPaused: whether its application does not read (then we
            cannot judge the path, and only keep the peer informed).
        @return: L{PING}, L{DEAD}, or C{None}.
        """
        if mark != self._mark:
            self._mark = mark
            self._lastAlive = now
        silence = now - self._lastAlive
        if readPaused:
            return PING
        if self._watching and self.liveAwaits(waiting):
            if silence >= silenceLimit:
                return DEAD
            if silence >= heartbeat * 0.99:
                return PING
            return None
        if silence >= idleLimit * 0.99:
            # An idle carrier due its keepalive (or, on the server, a client
            # that stopped keeping it alive): ask, and watch for the answer.
            self._lastAlive = now
            return PING
        return None

    def liveSilence(self, now: float) -> float:
        """
        How long the carrier has been silent.
        """
        return now - self._lastAlive

    def livePinged(self, now: float) -> int:
        """
        A heartbeat goes out now.

        @return: its token.
        """
        self._pingToken += 1
        self._pingSentAt = now
        return self._pingToken

    def liveHeard(self, now: float) -> None:
        """
        A probe was answered (something arrived): the silence starts again.
        """
        self._lastAlive = now

    def livePong(self, token: int, now: float) -> None:
        """
        A heartbeat answer arrived: any answer means the peer hears us;
        only the latest one times the round trip.
        """
        sentAt = self._pingSentAt
        if sentAt is None or token > self._pingToken:
            return
        self._pingSentAt = None
        if token != self._pingToken:
            return
        sample = now - sentAt
        self.lastRTT = sample
        if self.srtt is None or self.rttvar is None:
            self.srtt, self.rttvar = sample, sample / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - sample)
            self.srtt = 0.875 * self.srtt + 0.125 * sample
