"""
The sans-IO handshakes and their cryptography, directly.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from migrate import _crypto, _wire
from migrate._handshake import ClientHandshake, HandshakeFailed, ServerHandshake


def body(frame: bytes) -> bytes:
    return frame[5:]


class OpenTests(SynchronousTestCase):
    def test_open(self) -> None:
        """
        Both sides agree on the session id and key; each verifies the
        other's proof.
        """
        server = ServerHandshake()
        client = ClientHandshake.forOpen()
        accept = server.receiveOpen(body(client.receiveHello(body(server.hello()))))
        confirm = client.receiveOpenAccept(body(accept))
        keys = server.receiveOpenConfirm(body(confirm))
        self.assertEqual((keys.sessionID, keys.key), (client.sessionID, client.key))
        self.assertEqual(len(keys.key), 32)

    def test_tamperedAccept(self) -> None:
        """
        A client refuses an accept whose proof does not match.
        """
        server = ServerHandshake()
        client = ClientHandshake.forOpen()
        accept = bytearray(server.receiveOpen(body(client.receiveHello(body(server.hello())))))
        accept[-1] ^= 1
        self.assertRaises(HandshakeFailed, client.receiveOpenAccept, body(bytes(accept)))

    def test_confirmForAnotherCarrier(self) -> None:
        """
        A confirmation made on one carrier does not verify on another (the
        server's nonce differs).
        """
        first, second = ServerHandshake(), ServerHandshake()
        client = ClientHandshake.forOpen()
        open_ = body(client.receiveHello(body(first.hello())))
        confirm = client.receiveOpenAccept(body(first.receiveOpen(open_)))
        second.receiveOpen(open_)
        e = self.assertRaises(HandshakeFailed, second.receiveOpenConfirm, body(confirm))
        self.assertEqual(e.code, _wire.REJECT_BAD_PROOF)

    def test_outOfOrder(self) -> None:
        """
        Frames out of order are refused.
        """
        server = ServerHandshake()
        self.assertRaises(HandshakeFailed, server.receiveOpenConfirm, b"m" * 32)
        client = ClientHandshake.forOpen()
        self.assertRaises(HandshakeFailed, client.receiveOpenAccept, b"x" * 80)
        hello = body(ServerHandshake().hello())
        client.receiveHello(hello)
        self.assertRaises(HandshakeFailed, client.receiveHello, hello)


class ResumeTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.key = b"k" * 32
        self.sid = b"s" * 16

    def test_resume(self) -> None:
        """
        A resume with the right key, a higher generation and positions is
        verified by the server, whose answer the client verifies.
        """
        server = ServerHandshake()
        client = ClientHandshake.forResume(self.sid, self.key, 5, 1234)
        request = server.parseResume(body(client.receiveHello(body(server.hello()))))
        server.verifyResume(request, self.key, 4)
        self.assertEqual((request.generation, request.received), (5, 1234))
        answer = server.acceptResume(request, self.key, 99)
        self.assertEqual(client.receiveResumeAccept(body(answer)), 99)

    def test_wrongKeyOrStale(self) -> None:
        """
        A wrong key or a generation not above the last is refused.
        """
        server = ServerHandshake()
        client = ClientHandshake.forResume(self.sid, self.key, 5, 0)
        request = server.parseResume(body(client.receiveHello(body(server.hello()))))
        e = self.assertRaises(HandshakeFailed, server.verifyResume, request, b"x" * 32, 0)
        self.assertEqual(e.code, _wire.REJECT_BAD_PROOF)
        e = self.assertRaises(HandshakeFailed, server.verifyResume, request, self.key, 5)
        self.assertEqual(e.code, _wire.REJECT_STALE)

    def test_forgedAnswer(self) -> None:
        """
        The client refuses an answer not made with the session key.
        """
        server = ServerHandshake()
        client = ClientHandshake.forResume(self.sid, self.key, 5, 0)
        request = server.parseResume(body(client.receiveHello(body(server.hello()))))
        forged = server.acceptResume(request, b"x" * 32, 0)
        self.assertRaises(HandshakeFailed, client.receiveResumeAccept, body(forged))

    def test_labelsSeparate(self) -> None:
        """
        A proof for one purpose differs from one for another over the same
        parts, and part boundaries matter.
        """
        self.assertNotEqual(
            _crypto.prove(self.key, b"resume-client", b"a"),
            _crypto.prove(self.key, b"resume-server", b"a"),
        )
        self.assertNotEqual(
            _crypto.prove(self.key, b"l", b"ab", b"c"), _crypto.prove(self.key, b"l", b"a", b"bc")
        )

    def test_version(self) -> None:
        """
        Another protocol version is refused as such.
        """
        client = ClientHandshake.forOpen()
        hello = _wire.encodeFrame(_wire.SERVER_HELLO, b"MGRT" + bytes([9]) + b"n" * 32)
        e = self.assertRaises(HandshakeFailed, client.receiveHello, body(hello))
        self.assertEqual(e.code, _wire.REJECT_VERSION)
