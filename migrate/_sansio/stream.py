# -*- test-case-name: tests.test_core -*-
"""
The sans-IO stream engine of an established session.

One L{StreamEngine} per session and per side holds everything that must
outlive a carrier: the bytes sent but not yet acknowledged (needed to
retransmit after a resume), the positions of both byte streams, and the
end-of-stream markers.  It knows nothing of reactors, sockets or clocks:
callers feed it what arrived and it returns the bytes to send.

Positions are cumulative byte offsets from the start of the session.  An end
of stream (L{FIN}) occupies one position after the last data byte, so a
single cumulative acknowledgement says both "all your data" and "your end of
stream" arrived.  Each data frame carries the sender's current received
position, so a flow in either direction acknowledges the other for free; a
standalone acknowledgement is needed only for one-way flows.

On a resume each side learns how far the other got and calls
L{StreamEngine.resumeFrames} to produce the retransmission: everything from
that position on, then the end of stream if one was sent.
"""

from __future__ import annotations

from .errors import ProtocolViolation

from collections import deque
from typing import Optional

from . import wire as _wire

_DATA_HEAD = _wire._DATA_HEAD


class StreamEngine:
    """
    Positions, retransmission buffer and end-of-stream state of one side.

    @ivar acked: how far the peer has acknowledged our stream.
    @ivar sent: stream position after our last data byte (the FIN, if any,
        sits at this position).
    @ivar finSent: whether our stream is ended (L{finish} was called).
    @ivar received: how far we have received the peer's stream, counting its
        FIN as one position.
    @ivar finReceived: whether the peer's stream has ended.
    @ivar ackSent: the last received position we told the peer about.
    @ivar maxPayload: largest payload we put in one data frame.
    @ivar _chunks: unacknowledged data, oldest first.
    @ivar _skip: how many bytes at the front of C{_chunks[0]} are already
        acknowledged.
    """

    __slots__ = (
        "acked",
        "sent",
        "finSent",
        "received",
        "finReceived",
        "ackSent",
        "maxPayload",
        "_chunks",
        "_skip",
    )

    def __init__(self, maxPayload: int = 256 * 1024) -> None:
        self.acked = 0
        self.sent = 0
        self.finSent = False
        self.received = 0
        self.finReceived = False
        self.ackSent = 0
        self.maxPayload = maxPayload
        # Made when there is something to keep, dropped when all of it is
        # acknowledged: an idle session holds no buffer at all.
        self._chunks: Optional[deque[bytes]] = None
        self._skip = 0

    def _buffer(self) -> deque[bytes]:
        chunks = self._chunks
        if chunks is None:
            chunks = self._chunks = deque()
        return chunks

    @property
    def buffered(self) -> int:
        """
        Data bytes sent and not yet acknowledged.
        """
        return self.sent - min(self.acked, self.sent)

    @property
    def allAcked(self) -> bool:
        """
        Whether the peer acknowledged everything we sent, FIN included.
        """
        return self.acked == self.sent + self.finSent

    @property
    def finished(self) -> bool:
        """
        Whether the session's streams are both complete: our FIN was
        acknowledged and the peer's FIN received.
        """
        return self.finSent and self.finReceived and self.allAcked

    # Sending

    def send(self, data: bytes) -> list[bytes]:
        """
        Buffer C{data} for retransmission and frame it.

        @return: pieces to write to an attached carrier, in order (the caller
            drops them if detached: the data stays buffered).
        @raise ProtocolViolation: our own stream already ended (a bug in the
            caller).
        """
        if self.finSent:
            raise ProtocolViolation("send after finish")
        self._buffer().append(data)
        self.sent += len(data)
        ack = self.received
        self.ackSent = ack
        n = len(data)
        if n <= self.maxPayload:
            return [_wire.dataHead(ack, n), data]
        return self._split(data, ack)

    def sendSmall(self, data: bytes) -> bytes:
        """
        Like L{send}, for data no longer than C{maxPayload}, as one string:
        a small frame costs less as one write than as two.
        """
        if self.finSent:
            raise ProtocolViolation("send after finish")
        self._buffer().append(data)
        n = len(data)
        self.sent += n
        ack = self.ackSent = self.received
        return _DATA_HEAD.pack(_wire.DATA, n, ack) + data

    def _split(self, data: bytes, ack: int) -> list[bytes]:
        """
        Frame a long piece of data as several frames.
        """
        out = []
        view = memoryview(data)
        step = self.maxPayload
        for i in range(0, len(data), step):
            piece = bytes(view[i : i + step])
            out.append(_wire.dataHead(ack, len(piece)))
            out.append(piece)
        return out

    def finish(self) -> bytes:
        """
        End our stream.

        @return: the FIN frame to write if attached.
        """
        if not self.finSent:
            self.finSent = True
        self.ackSent = self.received
        return _wire.encodeFin(self.received)

    def ackFrame(self) -> bytes:
        """
        Make a standalone acknowledgement of everything received.
        """
        self.ackSent = self.received
        return _wire.encodeAck(self.received)

    @property
    def unacknowledged(self) -> int:
        """
        Positions received and not yet acknowledged to the peer.
        """
        return self.received - self.ackSent

    # Receiving

    def acknowledge(self, position: int) -> int:
        """
        Apply the peer's cumulative acknowledgement.

        @return: how many positions (data bytes, and the FIN) it newly
            acknowledged.
        @raise ProtocolViolation: it acknowledges bytes never sent; nothing
            changes.
        """
        limit = self.sent + self.finSent
        if position > limit:
            raise ProtocolViolation(
                "peer acknowledged position %d, only %d sent" % (position, limit)
            )
        if position <= self.acked:
            return 0
        dataPos = min(position, self.sent)
        drop = dataPos - min(self.acked, self.sent)
        advanced = position - self.acked
        self.acked = position
        chunks = self._chunks
        skip = self._skip + drop
        if chunks is not None:
            while chunks and skip >= len(chunks[0]):
                skip -= len(chunks.popleft())
            if not chunks:
                self._chunks = None
        self._skip = skip
        return advanced

    def dataStarted(self, ack: int, length: int) -> int:
        """
        A data frame's head arrived.

        @return: how many of our positions it newly acknowledged.
        @raise ProtocolViolation: data after the peer's FIN, or a bad ack.
        """
        if self.finReceived and length:
            raise ProtocolViolation("data after end of stream")
        return self.acknowledge(ack)

    def dataArrived(self, length: int) -> None:
        """
        C{length} payload bytes arrived.
        """
        self.received += length

    def finArrived(self, ack: int) -> bool:
        """
        The peer's FIN arrived.

        @return: whether it is new (a FIN retransmitted after a resume that
            we had already counted is not possible: positions exclude it).
        @raise ProtocolViolation: a second FIN, or a bad ack.
        """
        if self.finReceived:
            raise ProtocolViolation("second end of stream")
        self.acknowledge(ack)
        self.finReceived = True
        self.received += 1
        return True

    # Hibernating

    def unacknowledgedBytes(self) -> bytes:
        """
        Our data the peer has not acknowledged, as one string.
        """
        chunks = list(self._chunks or ())
        if chunks and self._skip:
            chunks[0] = chunks[0][self._skip :]
        return b"".join(chunks)

    def releaseBuffer(self) -> None:
        """
        Drop the retransmission buffer from memory (it is in a store now).
        Data written afterwards is buffered as usual, after a gap that
        L{restoreBuffer} fills.
        """
        self._chunks = None
        self._skip = 0

    def restoreBuffer(self, unacknowledged: bytes) -> None:
        """
        Put back in front the bytes that L{releaseBuffer} dropped.
        """
        if unacknowledged:
            self._buffer().appendleft(unacknowledged)
        self._skip = 0

    def restore(
        self, sent: int, acked: int, received: int, finSent: bool, finReceived: bool, buffer: bytes
    ) -> None:
        """
        Take up the state of a checkpointed engine.
        """
        self.sent, self.acked, self.received = sent, acked, received
        self.finSent, self.finReceived = finSent, finReceived
        self.ackSent = received
        self._chunks = None
        self._skip = 0
        if buffer:
            self._buffer().append(buffer)

    # Resuming

    def checkResume(self, peerReceived: int) -> None:
        """
        Check a peer's received position from a resume before anything is
        changed.

        @raise ProtocolViolation: the position is outside what we can
            retransmit: before what the peer already acknowledged, or past
            what we sent.
        """
        if peerReceived < self.acked or peerReceived > self.sent + self.finSent:
            raise ProtocolViolation(
                "resume position %d outside [%d, %d]"
                % (peerReceived, self.acked, self.sent + self.finSent)
            )

    def resumeFrames(
        self, peerReceived: int, end: Optional[int] = None
    ) -> tuple[list[bytes], int]:
        """
        Apply the peer's received position from a verified resume and frame
        the retransmission.

        @param peerReceived: how far the peer received our stream; must have
            passed L{checkResume}.
        @param end: frame data only up to this position (the peer's window,
            see L{migrate._sansio.channels.StreamWindow}); by default all of
            it, and our FIN if we sent one.
        @return: the pieces to write, and how many data bytes they resend.
        """
        self.acknowledge(peerReceived)
        self.ackSent = self.received
        return self.framesBetween(self.acked, self.sent if end is None else end)

    def framesBetween(
        self, start: int, end: int, withFin: bool = True
    ) -> tuple[list[bytes], int]:
        """
        Frame our buffered data from position C{start} (not before what the
        peer acknowledged) to C{end} (not past what we sent), then (if
        C{withFin}) our FIN if C{end} reaches the end of our stream and it
        is sent.  The frames acknowledge everything received.

        @return: the pieces to write, and how many data bytes they carry.
        """
        ack = self.received
        out: list[bytes] = []
        first = min(self.acked, self.sent)
        start = max(start, first)
        end = min(end, self.sent)
        carried = 0
        if start < end:
            offset = start - first + self._skip
            remaining = end - start
            step = self.maxPayload
            for chunk in self._chunks or ():
                if offset >= len(chunk):
                    offset -= len(chunk)
                    continue
                view = memoryview(chunk)[offset : offset + remaining]
                offset = 0
                for i in range(0, len(view), step):
                    piece = bytes(view[i : i + step])
                    out.append(_wire.dataHead(ack, len(piece)))
                    out.append(piece)
                    carried += len(piece)
                remaining -= len(view)
                if not remaining:
                    break
        if withFin and self.finSent and end >= self.sent and self.acked <= self.sent:
            out.append(_wire.encodeFin(ack))
        if out:
            self.ackSent = ack
        return out, carried
