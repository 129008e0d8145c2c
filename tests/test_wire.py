"""
Tests for L{migrate._sansio.wire}: encoders and the incremental, bounded parser.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from migrate._sansio import wire as _wire


class Collect:
    def __init__(self) -> None:
        self.events: list[tuple] = []
        self.payload = bytearray()

    def dataFrameStarted(self, ack: int, length: int) -> None:
        self.events.append(("data", ack, length))

    def payloadReceived(self, payload: bytes) -> None:
        self.payload += payload

    def controlFrameReceived(self, frameType: int, body: bytes) -> None:
        self.events.append(("control", frameType, body))


def _stream() -> bytes:
    return b"".join(
        [
            _wire.encodeServerHello(b"n" * 32),
            _wire.dataHead(7, 5),
            b"hello",
            _wire.encodeAck(99),
            _wire.dataHead(8, 0),
            _wire.encodeFin(100),
            _wire.encodeReject(_wire.REJECT_BUSY, "busy"),
            _wire.encodeAbort("why"),
        ]
    )


EXPECTED = [
    ("control", _wire.SERVER_HELLO, b"MGRT\x01\x00" + b"n" * 32),
    ("data", 7, 5),
    ("control", _wire.ACK, (99).to_bytes(8, "big")),
    ("data", 8, 0),
    ("control", _wire.FIN, (100).to_bytes(8, "big")),
    ("control", _wire.REJECT, b"\x05\x00\x00busy"),
    ("control", _wire.ABORT, b"why"),
]


class ParserTests(SynchronousTestCase):
    def test_whole(self) -> None:
        """
        A stream of frames fed at once yields each frame, in order.
        """
        c = Collect()
        _wire.FrameParser(c, 1000).feed(_stream())
        self.assertEqual(c.events, EXPECTED)
        self.assertEqual(bytes(c.payload), b"hello")

    @given(st.lists(st.integers(min_value=1, max_value=40), max_size=60))
    @settings(max_examples=200, deadline=None)
    def test_anyChunking(self, cuts: list[int]) -> None:
        """
        However the bytes are split across reads, the same frames and payload
        come out.
        """
        data = _stream()
        c = Collect()
        parser = _wire.FrameParser(c, 1000)
        i = 0
        for n in cuts:
            parser.feed(data[i : i + n])
            i += n
        parser.feed(data[i:])
        self.assertEqual(c.events, EXPECTED)
        self.assertEqual(bytes(c.payload), b"hello")

    def test_payloadNotCopied(self) -> None:
        """
        A read that lies wholly inside a payload is passed on as the same
        object.
        """
        got = []

        class Keep(Collect):
            def payloadReceived(self, payload: bytes) -> None:
                got.append(payload)

        parser = _wire.FrameParser(Keep(), 1 << 20)
        parser.feed(_wire.dataHead(0, 200000))
        chunk = b"x" * 100000
        parser.feed(chunk)
        self.assertIs(got[0], chunk)

    def test_oversizedData(self) -> None:
        """
        A data frame over the payload limit is refused before its payload is
        read.
        """
        parser = _wire.FrameParser(Collect(), 1000)
        self.assertRaises(_wire.FrameError, parser.feed, _wire.dataHead(0, 1001))

    def test_oversizedControl(self) -> None:
        """
        A variable control frame over its limit is refused.
        """
        parser = _wire.FrameParser(Collect(), 1000)
        self.assertRaises(
            _wire.FrameError, parser.feed, b"\x13" + (10000).to_bytes(4, "big")
        )

    def test_wrongFixedLength(self) -> None:
        """
        A fixed-size control frame with another length is refused.
        """
        parser = _wire.FrameParser(Collect(), 1000)
        self.assertRaises(_wire.FrameError, parser.feed, b"\x11\x00\x00\x00\x07" + b"x" * 7)

    def test_unknownType(self) -> None:
        """
        An unknown frame type is refused.
        """
        parser = _wire.FrameParser(Collect(), 1000)
        self.assertRaises(_wire.FrameError, parser.feed, b"\xee\x00\x00\x00\x00")

    def test_badMagic(self) -> None:
        """
        A greeting with the wrong magic is not a Migrate server.
        """
        body = _wire.encodeServerHello(b"n" * 32)[5:]
        self.assertRaises(_wire.FrameError, _wire.decodeServerHello, b"HTTP" + body[4:])

    def test_pause(self) -> None:
        """
        A paused parser keeps what it is fed and delivers it on resume.
        """
        c = Collect()
        parser = _wire.FrameParser(c, 1000)
        parser.pause()
        parser.feed(_stream())
        self.assertEqual(c.events, [])
        parser.resume()
        self.assertEqual(c.events, EXPECTED)

    def test_rejectReasonBounded(self) -> None:
        """
        Reasons are cut to the limit so an encoded reject always parses.
        """
        frame = _wire.encodeReject(1, "x" * 5000)
        c = Collect()
        _wire.FrameParser(c, 10).feed(frame)
        self.assertEqual(len(c.events[0][2]), 3 + _wire.MAX_REASON)

    def test_oneControlFrame(self) -> None:
        """
        A read holding exactly one fixed-size control frame (what an idle
        session reads) delivers it, and the parser goes on parsing after it.
        """
        for frame, expected in [
            (_wire.encodePing(5), ("control", _wire.PING, (5).to_bytes(8, "big"))),
            (_wire.encodePong((6).to_bytes(8, "big")), ("control", _wire.PONG, (6).to_bytes(8, "big"))),
            (_wire.encodeAck(7), ("control", _wire.ACK, (7).to_bytes(8, "big"))),
            (_wire.encodeFin(8), ("control", _wire.FIN, (8).to_bytes(8, "big"))),
            (_wire.encodeOpened(), ("control", _wire.OPENED, b"")),
        ]:
            c = Collect()
            parser = _wire.FrameParser(c, 1000)
            parser.feed(frame)
            self.assertEqual(c.events, [expected])
            parser.feed(_stream())
            self.assertEqual(c.events, [expected] + EXPECTED)

    def test_oneControlFrameWrongLength(self) -> None:
        """
        A read holding exactly one frame whose length is not its type's is
        refused, as anywhere in a stream.
        """
        parser = _wire.FrameParser(Collect(), 1000)
        self.assertRaises(_wire.FrameError, parser.feed, b"\x14\x00\x00\x00\x04" + b"x" * 4)
        parser = _wire.FrameParser(Collect(), 1000)
        self.assertRaises(_wire.FrameError, parser.feed, b"\xee\x00\x00\x00\x08" + b"x" * 8)

    def test_oneControlFramePaused(self) -> None:
        """
        A paused parser keeps a lone control frame until it resumes.
        """
        c = Collect()
        parser = _wire.FrameParser(c, 1000)
        parser.pause()
        parser.feed(_wire.encodePing(1))
        self.assertEqual(c.events, [])
        parser.resume()
        self.assertEqual(c.events, [("control", _wire.PING, (1).to_bytes(8, "big"))])

    def test_variableControlFrameAlone(self) -> None:
        """
        A read holding exactly one variable-size control frame is parsed as
        in a stream.
        """
        c = Collect()
        _wire.FrameParser(c, 1000).feed(_wire.encodeAbort("why"))
        self.assertEqual(c.events, [("control", _wire.ABORT, b"why")])
