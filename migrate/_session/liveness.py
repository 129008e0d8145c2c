# -*- test-case-name: tests.test_session,tests.test_channels -*-
"""
Watching the carrier's path (the Twisted side of
L{migrate._sansio.liveness}) and advertising our addresses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING



from .._sansio import wire as _wire
from .._sansio.adverts import checkAdvert, nextAdvert
from .._sansio.liveness import DEAD, PING
from .._address import formatAddress



from .state import SessionState


class LivenessRole(SessionState):
    """
    Watching the carrier's path (the Twisted side of
    L{migrate._sansio.liveness}) and advertising our addresses.
    """

    if not TYPE_CHECKING:
        # (Slots at run time, so that a session has no __dict__; the type
        # checker sees the attributes the session declares.)
        __slots__ = ()

    def _startLiveness(self) -> None:
        self._stopLiveness()
        self.liveStart(self.clock.seconds(), self._snapshot())
        self._schedule()

    def _sessionWaiting(self) -> bool:
        """
        Whether the session waits to hear from the peer: data or FIN
        unacknowledged (its own or a channel's), or reading paused.
        """
        return (
            not self.engine.allAcked
            or self._readPaused
            or (self.channels is not None and self.channels.waiting())
        )

    def _waiting(self) -> bool:
        """
        Whether we wait to hear from the peer (a heartbeat unanswered too).
        """
        return self.liveAwaits(self._sessionWaiting())

    def _idleLimit(self) -> float:
        keepalive = self.policy.keepaliveInterval()
        return keepalive if self.isClient else 2 * keepalive

    def _schedule(self) -> None:
        """
        Set the liveness timer when L{Liveness} says to look again.
        """
        delay = self.liveDelay(
            self.clock.seconds(),
            self._sessionWaiting(),
            self.policy.heartbeatInterval(),
            self._idleLimit(),
        )
        self._liveCall = self.timers.callLater(delay, self._liveTick)

    def _watch(self) -> None:
        """
        Something now waits for the peer (a write, a FIN, reading paused):
        if the carrier was idle, start watching it, its silence counted from
        now.
        """
        parent = self.parent
        if parent is not None:
            parent._watch()
            return
        call = self._liveCall
        if call is None:
            return
        if self.liveWatch(self.clock.seconds(), self._snapshot()):
            call.cancel()
            self._schedule()

    def _stopLiveness(self) -> None:
        for name in ("_liveCall", "_probeCall"):
            call = getattr(self, name)
            if call is not None:
                if call.active():
                    call.cancel()
                setattr(self, name, None)

    def advertise(
        self, addresses: list[str], configured: bool = False, send: bool = True
    ) -> None:
        """
        Tell the peer where we can be reached (C{"host:port"} each), now and
        after every resume, authenticated by the session key and numbered
        so that an old advertisement cannot be replayed.

        @param configured: the operator chose these addresses (the peer may
            follow them even over a translated path).
        @param send: whether to send them now (else with the next attach).
        """
        fitting = [a for a in addresses if _wire.addressFits(a)]
        if len(fitting) != len(addresses):
            self.log.warn(
                "session {sid}: not advertising {bad} (not ASCII, or longer than "
                "an advertisement entry may be)",
                sid=self.hexID,
                bad=[a for a in addresses if a not in fitting],
            )
        self.advertised = fitting[: _wire.MAX_ADDRESSES]
        self.advertConfigured = configured
        if send:
            self._sendAdvert()

    def _sendAdvert(self) -> None:
        carrier = self.carrier
        if carrier is None or not self.advertised:
            return
        self._advertSeq, frame = nextAdvert(
            self._advertSeq,
            self.key,
            self.isClient,
            self.generation,
            self.advertised,
            self.advertConfigured,
        )
        carrier.transport.write(frame)

    def _peerAdvertised(self, body: bytes) -> None:
        """
        The peer told us where it can be reached.  We follow it only if its
        operator configured the addresses, or if the path we use now is
        direct (the address we reached is among them, or is one it told us
        before and we trusted): behind NAT, a port forward or a load
        balancer, an advertised address is unreachable, another host, or a
        way around whatever the path enforces.
        """
        self._peerAdvertSeq, addresses, configured = checkAdvert(
            self._peerAdvertSeq, self.key, self.isClient, body
        )
        self.peerAddresses = addresses
        current = formatAddress(self.lastPeer)
        trusted = (
            configured
            or current in addresses
            or current in self.trustedPeerAddresses
        )
        old = self.trustedPeerAddresses
        if not trusted:
            if addresses and not self._untrustedLogged:
                self._untrustedLogged = True
                self.log.info(
                    "session {sid}: the peer advertised {addresses}, but this path "
                    "({current}) is translated; staying on it",
                    sid=self.hexID,
                    addresses=addresses,
                    current=current,
                )
            addresses = []
        self.trustedPeerAddresses = addresses
        if old != addresses and self.transport is not None:
            self.upcalls.notify("peerMoved", self.transport, old, addresses)
        self.onPeerAddresses(self.session)

    def _snapshot(self) -> tuple[int, int, int]:
        engine = self.engine
        return (engine.received, engine.acked, self._heard)

    def _liveTick(self) -> None:
        self._liveCall = None
        if self.carrier is None or self.ended:
            return
        now = self.clock.seconds()
        action = self.liveTick(
            now,
            self._snapshot(),
            self._sessionWaiting(),
            self._readPaused,
            self.policy.heartbeatInterval(),
            self._idleLimit(),
            self.policy.silenceLimit(self.srtt, self.rttvar),
        )
        if action == DEAD:
            self.log.info(
                "session {sid}: path dead after {silence:.2f} s of silence",
                sid=self.hexID,
                silence=self.liveSilence(now),
            )
            self.dropCarrier("path-dead")
            return
        if action == PING:
            self._ping()
        self._schedule()

    def _ping(self) -> None:
        carrier = self.carrier
        if carrier is None:
            return
        carrier.transport.write(_wire.encodePing(self.livePinged(self.clock.seconds())))

    def probe(self, reason: str = "path-dead") -> None:
        """
        Check the current carrier's path now (after a connectivity event):
        send a heartbeat and declare the path dead unless something arrives
        within the policy's probe timeout.
        """
        if (
            self.carrier is None
            or self.ended
            or self.aborting is not None
            or self._probeCall is not None
        ):
            return
        self._ping()
        self._probeCall = self.timers.callLater(
            self.policy.probeTimeout(self.srtt, self.rttvar),
            self._probeExpired,
            reason,
            self._snapshot(),
        )

    def _probeExpired(self, reason: str, before: tuple[int, int, int]) -> None:
        self._probeCall = None
        if self.carrier is None or self.ended or self._readPaused:
            return
        if self._snapshot() == before:
            self.log.info("session {sid}: probe unanswered", sid=self.hexID)
            self.dropCarrier(reason)
        else:
            self.liveHeard(self.clock.seconds())

    def _pong(self, token: int) -> None:
        self._heard += 1
        self.livePong(token, self.clock.seconds())

