"""
Tests for the sans-IO L{migrate._sansio.stream.StreamEngine}, including a property
test: for any chunking of writes, any delivery schedule and any carrier
drops, each side receives the other's exact stream, exactly once.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from migrate._sansio import wire as _wire
from migrate._sansio.stream import ProtocolViolation, StreamEngine


class Side:
    """
    One side of a simulated session: an engine plus what it received.
    """

    def __init__(self, maxPayload: int) -> None:
        self.engine = StreamEngine(maxPayload)
        self.got = bytearray()
        self.parser = _wire.FrameParser(self, 1 << 20)
        self.fin = False

    def dataFrameStarted(self, ack: int, length: int) -> None:
        self.engine.dataStarted(ack, length)

    def payloadReceived(self, payload: bytes) -> None:
        self.engine.dataArrived(len(payload))
        self.got += payload

    def controlFrameReceived(self, frameType: int, body: bytes) -> None:
        if frameType == _wire.ACK:
            self.engine.acknowledge(_wire.decodePosition(body))
        elif frameType == _wire.FIN:
            self.engine.finArrived(_wire.decodePosition(body))
            self.fin = True
        else:
            raise AssertionError(frameType)

    def newCarrier(self) -> None:
        self.parser = _wire.FrameParser(self, 1 << 20)


ops = st.lists(
    st.one_of(
        st.tuples(st.just("writeA"), st.binary(min_size=1, max_size=300)),
        st.tuples(st.just("writeB"), st.binary(min_size=1, max_size=300)),
        st.tuples(st.just("deliverA"), st.integers(min_value=0, max_value=500)),
        st.tuples(st.just("deliverB"), st.integers(min_value=0, max_value=500)),
        st.tuples(st.just("ackA"), st.none()),
        st.tuples(st.just("ackB"), st.none()),
        st.tuples(st.just("drop"), st.none()),
    ),
    max_size=80,
)


class PropertyTests(SynchronousTestCase):
    @given(ops, st.integers(min_value=1, max_value=200), st.booleans())
    @settings(max_examples=300, deadline=None)
    def test_exactlyOnce(self, script: list, maxPayload: int, finish: bool) -> None:
        """
        Random writes, partial deliveries, acknowledgements and drops, then a
        resume and full delivery: each side got exactly what the other wrote,
        and nothing stays buffered.
        """
        a, b = Side(maxPayload), Side(maxPayload)
        wire = {"A": bytearray(), "B": bytearray()}  # bytes in flight from A/B
        wrote = {"A": bytearray(), "B": bytearray()}

        def resume() -> None:
            wire["A"].clear()
            wire["B"].clear()
            a.newCarrier()
            b.newCarrier()
            a.engine.checkResume(b.engine.received)
            b.engine.checkResume(a.engine.received)
            framesA, _ = a.engine.resumeFrames(b.engine.received)
            framesB, _ = b.engine.resumeFrames(a.engine.received)
            wire["A"] += b"".join(framesA)
            wire["B"] += b"".join(framesB)

        for op, arg in script:
            if op == "writeA":
                wire["A"] += b"".join(a.engine.send(arg))
                wrote["A"] += arg
            elif op == "writeB":
                wire["B"] += b"".join(b.engine.send(arg))
                wrote["B"] += arg
            elif op == "deliverA":
                chunk = bytes(wire["A"][:arg])
                del wire["A"][:arg]
                b.parser.feed(chunk)
            elif op == "deliverB":
                chunk = bytes(wire["B"][:arg])
                del wire["B"][:arg]
                a.parser.feed(chunk)
            elif op == "ackA":
                wire["A"] += a.engine.ackFrame()
            elif op == "ackB":
                wire["B"] += b.engine.ackFrame()
            else:
                resume()
            for side in (a, b):
                e = side.engine
                self.assertEqual(e.buffered, e.sent - min(e.acked, e.sent))
        if finish:
            wire["A"] += a.engine.finish()
            wire["B"] += b.engine.finish()
        resume()
        b.parser.feed(bytes(wire["A"]))
        a.parser.feed(bytes(wire["B"]))
        wire["A"] = bytearray(a.engine.ackFrame())
        wire["B"] = bytearray(b.engine.ackFrame())
        b.parser.feed(bytes(wire["A"]))
        a.parser.feed(bytes(wire["B"]))
        self.assertEqual(bytes(b.got), bytes(wrote["A"]))
        self.assertEqual(bytes(a.got), bytes(wrote["B"]))
        self.assertEqual(a.engine.buffered, 0)
        self.assertEqual(b.engine.buffered, 0)
        self.assertEqual(a.engine.finished, finish)
        self.assertEqual(b.engine.finished, finish)


class EngineTests(SynchronousTestCase):
    def test_ackBeyondSent(self) -> None:
        """
        Acknowledging bytes never sent is a violation and changes nothing.
        """
        e = StreamEngine()
        e.send(b"abc")
        self.assertRaises(ProtocolViolation, e.acknowledge, 4)
        self.assertEqual((e.acked, e.buffered), (0, 3))

    def test_oldAckIgnored(self) -> None:
        """
        An acknowledgement below one already applied changes nothing.
        """
        e = StreamEngine()
        e.send(b"abcdef")
        e.acknowledge(4)
        self.assertEqual(e.acknowledge(2), 0)
        self.assertEqual(e.buffered, 2)

    def test_resumeOutsideWindow(self) -> None:
        """
        A resume position before what was acknowledged, or past what was
        sent, is refused.
        """
        e = StreamEngine()
        e.send(b"abcdef")
        e.acknowledge(3)
        self.assertRaises(ProtocolViolation, e.checkResume, 2)
        self.assertRaises(ProtocolViolation, e.checkResume, 7)
        e.checkResume(3)
        e.checkResume(6)

    def test_dataAfterFin(self) -> None:
        """
        Data after the peer's end of stream is a violation.
        """
        e = StreamEngine()
        e.finArrived(0)
        self.assertRaises(ProtocolViolation, e.dataStarted, 0, 1)
        self.assertRaises(ProtocolViolation, e.finArrived, 0)

    def test_sendAfterFinish(self) -> None:
        """
        Our own stream cannot go on after its end.
        """
        e = StreamEngine()
        e.finish()
        self.assertRaises(ProtocolViolation, e.send, b"x")

    def test_splitLargeWrites(self) -> None:
        """
        A write longer than the frame size goes out as several frames.
        """
        e = StreamEngine(maxPayload=4)
        pieces = e.send(b"0123456789")
        self.assertEqual(pieces[1::2], [b"0123", b"4567", b"89"])

    def test_resendFromPartialChunk(self) -> None:
        """
        A resume inside a buffered chunk resends from exactly that byte.
        """
        e = StreamEngine()
        e.send(b"abc")
        e.send(b"defgh")
        frames, resent = e.resumeFrames(5)
        self.assertEqual(resent, 3)
        self.assertEqual(frames[1], b"fgh")
