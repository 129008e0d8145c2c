# -*- test-case-name: tests.test_datagram_core -*-
"""
Sans-IO opening and resuming of datagram sessions.

The stream protocol's own handshake (L{migrate._sansio.handshake.ClientHandshake}
and L{migrate._sansio.handshake.ServerHandshake}: X25519, HKDF, the same proofs,
the same resume rules) carried in handshake packets, one frame per
datagram, with what datagrams need around it: the client's first request
(C{INIT}), retransmission on a timer, answers repeated for repeated
requests (never a second key agreement, never a second change of keys),
padding so that no answer is larger than its request, and a bounded table
of handshakes in progress.  A resume is verified and decided by the
driver, which knows the session (in memory, or in its store): see
L{HandshakeResponder.verifyResume}.  Time is passed in as C{now}.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Optional

from . import crypto as _crypto, dgram as _dgram, wire as _wire
from .handshake import ClientHandshake, HandshakeFailed, OpenedKeys, ResumeRequest, ServerHandshake

#: The client's first retransmission delay, and its longest.
RETRANSMIT_INITIAL = 0.2
RETRANSMIT_MAX = 1.6

#: Body sizes of the handshake frames carried over datagrams.
HELLO_SIZE = 38
RESUME_SIZE = 98
RESUME_ACCEPT_SIZE = 40


class _ClientAttempt:
    """
    What a client's opening and resume have in common: a handshake id, the
    last request (resent on a timer: 0.2 s doubling up to 1.6 s) and a
    deadline.
    """

    def __init__(self, now: float, timeout: float) -> None:
        self.hid = _crypto.randomBytes(_dgram.HID_SIZE)
        self._stage = _dgram.INIT
        self._last = _dgram.encodeHandshake(self.hid, _dgram.encodeInit(), True)
        self._deadline = now + timeout
        self._interval = RETRANSMIT_INITIAL
        self._retransmitAt = now + self._interval

    @property
    def done(self) -> bool:
        """
        Whether the attempt succeeded (nothing more to send or wait for).
        """
        raise NotImplementedError()

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

    def _parse(self, datagram: bytes) -> Optional[tuple[int, bytes]]:
        """
        The frame of an answer to this attempt, or C{None}.

        @raise HandshakeFailed: the server refused.
        """
        try:
            hid, frameType, body = _dgram.decodeHandshake(datagram)
        except _dgram.PacketError:
            return None
        if hid != self.hid or self.done:
            return None
        if frameType == _wire.REJECT:
            try:
                code, retryAfter, reason = _wire.decodeReject(body)
            except _wire.FrameError:
                return None
            raise HandshakeFailed(code, "refused: " + reason, retryAfter)
        return frameType, body

    def nextTimer(self) -> Optional[float]:
        """
        When L{handleTimer} must run next, or C{None} once done.
        """
        if self.done:
            return None
        return min(self._retransmitAt, self._deadline)

    def handleTimer(self, now: float) -> Optional[bytes]:
        """
        @return: the datagram to send again, if it is time.
        @raise HandshakeFailed: the attempt timed out.
        """
        if self.done:
            return None
        if now >= self._deadline:
            raise HandshakeFailed(_wire.REJECT_PROTOCOL, "timed out")
        if now < self._retransmitAt:
            return None
        self._interval = min(self._interval * 2, RETRANSMIT_MAX)
        self._retransmitAt = now + self._interval
        return self._last


class ClientOpening(_ClientAttempt):
    """
    The client's side of one opening.

    Send L{first}; feed every handshake datagram to L{receive} and send
    what it returns; call L{handleTimer} at L{nextTimer}.  L{keys} is set
    once the server confirmed the session.

    @ivar hid: this opening's handshake id.
    @ivar keys: the new session's id and key, once C{OPENED} arrived.
    """

    def __init__(self, now: float, timeout: float) -> None:
        _ClientAttempt.__init__(self, now, timeout)
        self.keys: Optional[OpenedKeys] = None
        self._handshake = ClientHandshake.forOpen()

    @property
    def done(self) -> bool:
        return self.keys is not None

    def receive(self, datagram: bytes, now: float) -> Optional[bytes]:
        """
        A handshake datagram arrived.

        @return: the datagram to send in answer, if any.
        @raise HandshakeFailed: the server refused, or its answer does not
            verify.
        """
        parsed = self._parse(datagram)
        if parsed is None:
            return None
        frameType, body = parsed
        if frameType == _wire.SERVER_HELLO and self._stage == _dgram.INIT:
            if len(body) != HELLO_SIZE:
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


class ClientResuming(_ClientAttempt):
    """
    The client's side of one resume of a datagram session: the stream
    handshake's C{RESUME} and C{RESUME_ACCEPT} (generation only growing,
    proofs over the server's fresh nonce), after C{INIT} and
    C{SERVER_HELLO}.  Stream positions mean nothing here: both are sent
    as 0.

    Driven as L{ClientOpening}; L{accepted} is set once the server's proof
    verified, and both ends then use traffic keys of L{generation}.

    @ivar generation: the generation asked for.
    @ivar accepted: whether the server accepted it.
    """

    def __init__(self, now: float, timeout: float, sessionID: bytes, key: bytes, generation: int) -> None:
        _ClientAttempt.__init__(self, now, timeout)
        self.generation = generation
        self.accepted = False
        self._handshake = ClientHandshake.forResume(sessionID, key, generation, 0)

    @property
    def done(self) -> bool:
        return self.accepted

    @property
    def sentResume(self) -> bool:
        """
        Whether the C{RESUME} was sent: from then on the server may have
        accepted it (and changed keys) even if its answer never arrives.
        """
        return self._stage == _wire.RESUME

    def receive(self, datagram: bytes, now: float) -> Optional[bytes]:
        """
        A handshake datagram arrived.

        @return: the datagram to send in answer, if any.
        @raise HandshakeFailed: the server refused, or its answer does not
            verify.
        """
        parsed = self._parse(datagram)
        if parsed is None:
            return None
        frameType, body = parsed
        if frameType == _wire.SERVER_HELLO and self._stage == _dgram.INIT:
            if len(body) != HELLO_SIZE:
                return None
            return self._next(self._handshake.receiveHello(body), _wire.RESUME, now)
        if frameType == _wire.RESUME_ACCEPT and self._stage == _wire.RESUME:
            if len(body) != RESUME_ACCEPT_SIZE:
                return None
            self._handshake.receiveResumeAccept(body)
            self.accepted = True
        return None


@dataclass
class _Pending:
    """
    One handshake in progress on the server.

    @ivar answers: for each request frame type, the request's body and the
        answer sent (so a repeated request gets the same answer).
    @ivar deciding: the body of a resume request the driver is deciding
        on (repeats of it are ignored meanwhile), or C{None}.
    """

    handshake: ServerHandshake
    createdAt: float
    answers: dict[int, tuple[bytes, bytes]] = field(default_factory=dict)
    deciding: Optional[bytes] = None


@dataclass
class ResumeAsk:
    """
    A parsed resume request for the driver to decide: verify it against
    the session it names (L{HandshakeResponder.verifyResume}), then accept
    or refuse it.

    @ivar hid: its handshake id.
    @ivar request: the request.
    @ivar entry: its handshake's state on the server.
    @ivar body: the request's frame body, as received.
    """

    hid: bytes
    request: ResumeRequest
    entry: _Pending
    body: bytes


@dataclass
class Answer:
    """
    What the server does with one handshake datagram.

    @ivar reply: the datagram to send back, if any.
    @ivar opened: the new session's id and key, when this datagram opened
        one.
    @ivar resume: a resume request for the driver to decide on.
    @ivar reason: why it was refused or ignored, for the log.
    """

    reply: Optional[bytes] = None
    opened: Optional[OpenedKeys] = None
    reason: str = ""
    resume: Optional[ResumeAsk] = None


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
        if frameType not in (_wire.OPEN, _wire.OPEN_CONFIRM, _wire.RESUME):
            return Answer(reason="unexpected frame %d" % (frameType,))
        known = entry.answers.get(frameType)
        if known is not None:
            if known[0] != body:
                return Answer(reason="conflicting repeated request")
            return Answer(known[1])
        if frameType == _wire.RESUME:
            return self._resume(hid, entry, body)
        if _wire.RESUME in entry.answers or entry.deciding is not None:
            return Answer(reason="opening after a resume")
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

    def _resume(self, hid: bytes, entry: _Pending, body: bytes) -> Answer:
        if entry.deciding is not None:
            if entry.deciding != body:
                return Answer(reason="conflicting repeated request")
            return Answer(reason="resume being decided")
        try:
            if _wire.OPEN in entry.answers:
                raise HandshakeFailed(_wire.REJECT_PROTOCOL, "resume after an opening")
            if len(body) != RESUME_SIZE:
                raise HandshakeFailed(_wire.REJECT_PROTOCOL, "malformed resume")
            request = entry.handshake.parseResume(body)
        except HandshakeFailed as e:
            return Answer(self._reject(hid, e), reason=e.reason)
        entry.deciding = body
        return Answer(resume=ResumeAsk(hid, request, entry, body))

    def _reject(self, hid: bytes, failure: HandshakeFailed) -> bytes:
        self.pending.pop(hid, None)
        return _dgram.encodeHandshake(
            hid, _wire.encodeReject(failure.code, failure.reason, failure.retryAfter), False
        )

    def verifyResume(self, ask: ResumeAsk, key: bytes, lastGeneration: int) -> None:
        """
        Verify a resume request against the session it names: its key and
        the last generation it accepted.

        @raise HandshakeFailed: the proof is wrong, or the generation is not
            above C{lastGeneration}.
        """
        ask.entry.handshake.verifyResume(ask.request, key, lastGeneration)

    def acceptResume(self, ask: ResumeAsk, key: bytes) -> bytes:
        """
        The C{RESUME_ACCEPT} answering a verified request (given again for
        a repeat of the request, without asking the driver).
        """
        entry = ask.entry
        entry.deciding = None
        reply = _dgram.encodeHandshake(
            ask.hid, entry.handshake.acceptResume(ask.request, key, 0), False
        )
        entry.answers[_wire.RESUME] = (ask.body, reply)
        return reply

    def refuseResume(self, ask: ResumeAsk, failure: HandshakeFailed) -> bytes:
        """
        The C{REJECT} answering a refused request; the handshake is
        forgotten.
        """
        ask.entry.deciding = None
        return self._reject(ask.hid, failure)

    def reconsider(self, ask: ResumeAsk) -> None:
        """
        Leave a request unanswered for now: a repeat of it is decided
        afresh.
        """
        ask.entry.deciding = None
