# -*- test-case-name: tests.test_datagram_core -*-
"""
Sans-IO opening of datagram sessions.

The stream protocol's own handshake (L{migrate._handshake.ClientHandshake}
and L{migrate._handshake.ServerHandshake}: X25519, HKDF, the same proofs)
carried in handshake packets, one frame per datagram, with what datagrams
need around it: the client's first request (C{INIT}), retransmission on a
timer, answers repeated for repeated requests (never a second key
agreement), padding so that no answer is larger than its request, and a
bounded table of handshakes in progress.  Time is passed in as C{now}.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Optional

from . import _crypto, _dgram, _wire
from ._handshake import ClientHandshake, HandshakeFailed, OpenedKeys, ServerHandshake

#: The client's first retransmission delay, and its longest.
RETRANSMIT_INITIAL = 0.2
RETRANSMIT_MAX = 1.6


class ClientOpening:
    """
    The client's side of one opening.

    Send L{first}; feed every handshake datagram to L{receive} and send
    what it returns; call L{handleTimer} at L{nextTimer}.  L{keys} is set
    once the server confirmed the session.

    @ivar hid: this opening's handshake id.
    @ivar keys: the new session's id and key, once C{OPENED} arrived.
    """

    def __init__(self, now: float, timeout: float) -> None:
        self.hid = _crypto.randomBytes(_dgram.HID_SIZE)
        self.keys: Optional[OpenedKeys] = None
        self._handshake = ClientHandshake.forOpen()
        self._stage = _dgram.INIT
        self._last = _dgram.encodeHandshake(self.hid, _dgram.encodeInit(), True)
        self._deadline = now + timeout
        self._interval = RETRANSMIT_INITIAL
        self._retransmitAt = now + self._interval

    def first(self) -> bytes:
        """
        The first datagram to send.
        """
        return self._last

    def _next(self, frame: bytes, stage: int, now: float) -> bytes:
        self._stage = stage
        self._last = _dgram.encodeHandshake(self.hid, frame, True)
        self._interval = RETRANSMIT_INITIAL
        self._retransmitAt = now + self._interval
        return self._last

    def receive(self, datagram: bytes, now: float) -> Optional[bytes]:
        """
        A handshake datagram arrived.

        @return: the datagram to send in answer, if any.
        @raise HandshakeFailed: the server refused, or its answer does not
            verify.
        """
        try:
            hid, frameType, body = _dgram.decodeHandshake(datagram)
        except _dgram.PacketError:
            return None
        if hid != self.hid or self.keys is not None:
            return None
        if frameType == _wire.REJECT:
            try:
                code, retryAfter, reason = _wire.decodeReject(body)
            except _wire.FrameError:
                return None
            raise HandshakeFailed(code, "refused: " + reason, retryAfter)
        if frameType == _wire.SERVER_HELLO and self._stage == _dgram.INIT:
            if len(body) != 38:
                return None
            return self._next(self._handshake.receiveHello(body), _wire.OPEN, now)
        if frameType == _wire.OPEN_ACCEPT and self._stage == _wire.OPEN:
            if len(body) != 80:
                return None
            frame = self._handshake.receiveOpenAccept(body)
            return self._next(frame, _wire.OPEN_CONFIRM, now)
        if frameType == _wire.OPENED and self._stage == _wire.OPEN_CONFIRM and not body:
            self.keys = OpenedKeys(self._handshake.sessionID, self._handshake.key)
            return None
        # A repeated answer to a request we sent before: nothing to do.
        return None

    def nextTimer(self) -> Optional[float]:
        """
        When L{handleTimer} must run next, or C{None} once done.
        """
        if self.keys is not None:
            return None
        return min(self._retransmitAt, self._deadline)

    def handleTimer(self, now: float) -> Optional[bytes]:
        """
        @return: the datagram to send again, if it is time.
        @raise HandshakeFailed: the opening timed out.
        """
        if self.keys is not None:
            return None
        if now >= self._deadline:
            raise HandshakeFailed(_wire.REJECT_PROTOCOL, "timed out")
        if now < self._retransmitAt:
            return None
        self._interval = min(self._interval * 2, RETRANSMIT_MAX)
        self._retransmitAt = now + self._interval
        return self._last


@dataclass
class _Pending:
    """
    One handshake in progress on the server.

    @ivar answers: for each request frame type, the request's body and the
        answer sent (so a repeated request gets the same answer).
    """

    handshake: ServerHandshake
    createdAt: float
    answers: dict[int, tuple[bytes, bytes]] = field(default_factory=dict)


@dataclass
class Answer:
    """
    What the server does with one handshake datagram.

    @ivar reply: the datagram to send back, if any.
    @ivar opened: the new session's id and key, when this datagram opened
        one.
    @ivar reason: why it was refused or ignored, for the log.
    """

    reply: Optional[bytes] = None
    opened: Optional[OpenedKeys] = None
    reason: str = ""


class HandshakeResponder:
    """
    The server's handshakes in progress, keyed by handshake id.

    @ivar pending: the handshakes in progress, oldest first.
    """

    def __init__(self, maxPending: int, timeout: float) -> None:
        self.maxPending = maxPending
        self.timeout = timeout
        self.pending: OrderedDict[bytes, _Pending] = OrderedDict()

    def _purge(self, now: float) -> None:
        while self.pending:
            hid, entry = next(iter(self.pending.items()))
            if entry.createdAt + self.timeout > now:
                break
            del self.pending[hid]

    def receive(
        self, datagram: bytes, now: float, busy: Callable[[], Optional[str]] = lambda: None
    ) -> Answer:
        """
        A handshake datagram from a client.

        @param busy: says why no session may be opened now (a limit), or
            C{None}.
        """
        self._purge(now)
        if len(datagram) < _dgram.HANDSHAKE_PAD:
            return Answer(reason="handshake datagram not padded")
        try:
            hid, frameType, body = _dgram.decodeHandshake(datagram)
        except _dgram.PacketError as e:
            return Answer(reason=str(e))
        entry = self.pending.get(hid)
        if frameType == _dgram.INIT:
            if body:
                return Answer(reason="malformed init")
            if entry is None:
                while len(self.pending) >= self.maxPending:
                    self.pending.popitem(last=False)
                entry = _Pending(ServerHandshake(), now)
                self.pending[hid] = entry
                reply = _dgram.encodeHandshake(hid, entry.handshake.hello(), False)
                entry.answers[_dgram.INIT] = (body, reply)
            return Answer(entry.answers[_dgram.INIT][1])
        if entry is None:
            return Answer(reason="unknown handshake")
        if frameType not in (_wire.OPEN, _wire.OPEN_CONFIRM):
            return Answer(reason="unexpected frame %d" % (frameType,))
        known = entry.answers.get(frameType)
        if known is not None:
            if known[0] != body:
                return Answer(reason="conflicting repeated request")
            return Answer(known[1])
        opened = None
        try:
            if frameType == _wire.OPEN:
                if len(body) != 66:
                    raise HandshakeFailed(_wire.REJECT_PROTOCOL, "malformed open")
                frame = entry.handshake.receiveOpen(body)
            else:
                if _wire.OPEN not in entry.answers or len(body) != 32:
                    raise HandshakeFailed(_wire.REJECT_PROTOCOL, "confirm without opening")
                why = busy()
                if why is not None:
                    raise HandshakeFailed(_wire.REJECT_BUSY, why, 1.0)
                opened = entry.handshake.receiveOpenConfirm(body)
                frame = _wire.encodeOpened()
        except HandshakeFailed as e:
            del self.pending[hid]
            reply = _dgram.encodeHandshake(
                hid, _wire.encodeReject(e.code, e.reason, e.retryAfter), False
            )
            return Answer(reply, reason=e.reason)
        reply = _dgram.encodeHandshake(hid, frame, False)
        entry.answers[frameType] = (body, reply)
        return Answer(reply, opened)
