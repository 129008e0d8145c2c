"""
Tests for L{migrate._protocol.Carrier} over Twisted's own TCP connection:
what a read makes it write is sent at the end of that read, without
registering the connection for writing.
"""

from __future__ import annotations

import socket
import struct
from typing import Any

from twisted.internet import tcp
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from migrate._protocol import Carrier
from migrate._sansio import wire as _wire


class RecordingReactor:
    """
    Just what a TCP connection asks of its reactor here: which descriptors
    it registers for writing.
    """

    def __init__(self) -> None:
        self.writers: list[object] = []
        self.removed: list[object] = []

    def addWriter(self, writer: object) -> None:
        self.writers.append(writer)

    def removeWriter(self, writer: object) -> None:
        self.removed.append(writer)

    def addReader(self, reader: object) -> None:
        pass

    def removeReader(self, reader: object) -> None:
        pass


class Connection(tcp.Connection):
    """
    Twisted's TCP connection over an accepted loopback socket.
    """

    def getPeer(self) -> IPv4Address:
        return IPv4Address("TCP", "127.0.0.1", 1)

    def getHost(self) -> IPv4Address:
        return IPv4Address("TCP", "127.0.0.1", 2)


class Answering:
    """
    A handshaker that answers every frame with C{answer} (and then does
    what C{then} says).
    """

    def __init__(self, answer: bytes, then: Any = None) -> None:
        self.answer = answer
        self.then = then
        self.frames: list[tuple[int, bytes]] = []

    def carrierConnected(self, carrier: Carrier) -> None:
        pass

    def handshakeFrame(self, carrier: Carrier, frameType: int, body: bytes) -> None:
        self.frames.append((frameType, body))
        carrier.transport.write(self.answer)
        if self.then is not None:
            self.then(carrier)

    def carrierFailed(self, carrier: Carrier, reason: str) -> None:
        pass


class CarrierWriteTests(SynchronousTestCase):
    def connect(self, handshaker: Answering) -> tuple[Carrier, Connection, socket.socket, RecordingReactor]:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(listener.close)
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        theirs = socket.create_connection(listener.getsockname())
        ours, _ = listener.accept()
        self.addCleanup(ours.close)
        self.addCleanup(theirs.close)
        theirs.settimeout(5)
        reactor = RecordingReactor()
        carrier = Carrier(handshaker, 1000, Clock(), 5.0)
        transport = Connection(ours, carrier, reactor)  # type: ignore[arg-type]
        transport.connected = 1
        carrier.makeConnection(transport)
        return carrier, transport, theirs, reactor

    def test_answerSentAtEndOfRead(self) -> None:
        """
        What a read writes is sent before the read returns, without the
        connection ever being registered for writing.
        """
        handshaker = Answering(_wire.encodePong(b"12345678"))
        carrier, transport, peer, reactor = self.connect(handshaker)
        carrier.dataReceived(_wire.encodePing(1))
        self.assertEqual(handshaker.frames, [(_wire.PING, (1).to_bytes(8, "big"))])
        self.assertEqual(peer.recv(100), _wire.encodePong(b"12345678"))
        self.assertEqual(reactor.writers, [])
        self.assertEqual(transport._tempDataLen, 0)
        self.assertNotIn("startWriting", vars(transport))

    def test_severalWritesOneSend(self) -> None:
        """
        The writes of one read go out together, in order.
        """
        handshaker = Answering(b"abc", lambda c: c.transport.writeSequence([b"de", b"f"]))
        carrier, transport, peer, reactor = self.connect(handshaker)
        carrier.dataReceived(_wire.encodePing(1) + _wire.encodePing(2))
        self.assertEqual(peer.recv(100), b"abcdefabcdef")
        self.assertEqual(reactor.writers, [])

    def test_bufferFull(self) -> None:
        """
        What does not fit in the socket's buffer waits in the transport,
        which is then registered for writing as usual.
        """
        big = b"x" * 100000
        handshaker = Answering(big)
        carrier, transport, peer, reactor = self.connect(handshaker)
        transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        carrier.dataReceived(_wire.encodePing(1))
        self.assertEqual(reactor.writers, [transport])
        left = transport._tempDataLen + len(transport.dataBuffer) - transport.offset
        self.assertTrue(0 < left < len(big))
        received = b""
        while len(received) < len(big) - left:
            received += peer.recv(len(big))
        self.assertEqual(received, big[: len(big) - left])

    def test_pendingBytesFirst(self) -> None:
        """
        While the transport still holds bytes from before, a read's writes
        queue behind them, as Twisted does.
        """
        handshaker = Answering(b"answer")
        carrier, transport, peer, reactor = self.connect(handshaker)
        transport.write(b"before")
        self.assertEqual(reactor.writers, [transport])
        carrier.dataReceived(_wire.encodePing(1))
        self.assertEqual(b"".join(transport._tempDataBuffer), b"beforeanswer")
        self.assertNotIn("startWriting", vars(transport))

    def test_closingDuringRead(self) -> None:
        """
        A connection closed during the read (after its writes) is left to
        the reactor: registered for writing, its bytes still queued.
        """
        handshaker = Answering(b"bye", lambda c: c.transport.loseConnection())
        carrier, transport, peer, reactor = self.connect(handshaker)
        carrier.dataReceived(_wire.encodePing(1))
        self.assertEqual(reactor.writers, [transport])
        self.assertEqual(transport._tempDataBuffer, [b"bye"])
        self.assertTrue(transport.disconnecting)

    def test_failingRead(self) -> None:
        """
        If parsing raises, what the read wrote is left to the reactor (which
        is registered for writing) and the transport is restored.
        """

        def boom(carrier: Carrier) -> None:
            raise RuntimeError("boom")

        handshaker = Answering(b"partial", boom)
        carrier, transport, peer, reactor = self.connect(handshaker)
        self.assertRaises(RuntimeError, carrier.dataReceived, _wire.encodePing(1))
        self.assertEqual(reactor.writers, [transport])
        self.assertNotIn("startWriting", vars(transport))
        self.assertEqual(transport._tempDataBuffer, [b"partial"])

    def test_peerGone(self) -> None:
        """
        A send that fails leaves the bytes queued and the connection
        registered for writing, so that the reactor sees the error and
        closes it as usual.
        """
        handshaker = Answering(b"answer")
        carrier, transport, peer, reactor = self.connect(handshaker)
        # (Reset, not closed: a send then fails at once.)
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        peer.close()
        carrier.dataReceived(_wire.encodePing(1))
        self.assertEqual(reactor.writers, [transport])
        self.assertEqual(transport._tempDataBuffer, [b"answer"])
