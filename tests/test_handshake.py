"""
The sans-IO handshakes and their cryptography, directly.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from migrate._sansio import crypto as _crypto, wire as _wire
from migrate._sansio.handshake import ClientHandshake, HandshakeFailed, ServerHandshake


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
        hello = _wire.encodeFrame(_wire.SERVER_HELLO, b"MGRT" + bytes([9, 0]) + b"n" * 32)
        e = self.assertRaises(HandshakeFailed, client.receiveHello, body(hello))
        self.assertEqual(e.code, _wire.REJECT_VERSION)


def exporter(value: bytes):  # type: ignore[no-untyped-def]
    """
    A stand-in for a TLS carrier's exporter giving C{value}.
    """
    return lambda: value


def flip(frame: bytes, index: int) -> bytes:
    """
    C{frame} with its byte at C{index} (counted in the body) XORed with
    the TLS flag.
    """
    data = bytearray(frame)
    data[5 + index] ^= _wire.FLAG_TLS
    return bytes(data)


class TLSBindingTests(SynchronousTestCase):
    """
    On a carrier whose two ends are TLS, the handshake is bound to that TLS
    connection's exporter: a relay that terminates TLS on each side (two
    TLS connections, two exporter values) makes it fail, a flag stripped or
    added on the way makes it fail, and an end that is not TLS (TLS ended by
    a proxy in front of the server) leaves it unbound and working.
    """

    def openWith(
        self, serverExporter: object, clientExporter: object
    ) -> tuple[ServerHandshake, ClientHandshake, bytes]:
        server = ServerHandshake(serverExporter)  # type: ignore[arg-type]
        client = ClientHandshake.forOpen(clientExporter)  # type: ignore[arg-type]
        accept = server.receiveOpen(body(client.receiveHello(body(server.hello()))))
        return server, client, accept

    def test_boundOpening(self) -> None:
        """
        Both ends TLS over one connection (the same exporter value): the
        opening completes, the key is bound (it differs from what the same
        exchange gives unbound), and the handshake says so.
        """
        server, client, accept = self.openWith(exporter(b"E" * 32), exporter(b"E" * 32))
        confirm = client.receiveOpenAccept(body(accept))
        keys = server.receiveOpenConfirm(body(confirm))
        self.assertEqual(keys.key, client.key)
        self.assertTrue(client.bound)

    def test_boundKeyDiffers(self) -> None:
        """
        The exporter value goes into the key derivation.
        """
        shared = b"s" * 32
        plain = _crypto.deriveSessionKey(shared, b"n" * 32, b"c" * 32, b"p" * 32, b"q" * 32)
        bound = _crypto.deriveSessionKey(
            shared, b"n" * 32, b"c" * 32, b"p" * 32, b"q" * 32, b"E" * 32
        )
        self.assertNotEqual(plain, bound)

    def test_twoTLSConnections(self) -> None:
        """
        A relay that ends the client's TLS and opens its own to the server
        (each end sees another exporter value): the client refuses the
        server's opening proof.
        """
        server, client, accept = self.openWith(exporter(b"S" * 32), exporter(b"C" * 32))
        e = self.assertRaises(HandshakeFailed, client.receiveOpenAccept, body(accept))
        self.assertEqual(e.code, _wire.REJECT_BAD_PROOF)

    def test_flagStripped(self) -> None:
        """
        The server's TLS flag cleared on the way to the client, or the
        client's on the way to the server: the proofs disagree.
        """
        server = ServerHandshake(exporter(b"E" * 32))
        client = ClientHandshake.forOpen(exporter(b"E" * 32))
        hello = flip(server.hello(), 5)
        accept = server.receiveOpen(body(client.receiveHello(body(hello))))
        self.assertRaises(HandshakeFailed, client.receiveOpenAccept, body(accept))

        server = ServerHandshake(exporter(b"E" * 32))
        client = ClientHandshake.forOpen(exporter(b"E" * 32))
        request = flip(client.receiveHello(body(server.hello())), 1)
        accept = server.receiveOpen(body(request))
        self.assertRaises(HandshakeFailed, client.receiveOpenAccept, body(accept))

    def test_flagAddedOnPlainCarrier(self) -> None:
        """
        A TLS flag set on the way over a plain carrier: the proofs
        disagree (nobody is made to believe the carrier is bound).
        """
        server = ServerHandshake()
        client = ClientHandshake.forOpen()
        hello = flip(server.hello(), 5)
        accept = server.receiveOpen(body(client.receiveHello(body(hello))))
        self.assertRaises(HandshakeFailed, client.receiveOpenAccept, body(accept))

    def test_tlsEndedBeforeServer(self) -> None:
        """
        The client is on TLS, the server is not (a proxy in front of it
        ends TLS): the opening works, unbound.
        """
        server, client, accept = self.openWith(None, exporter(b"C" * 32))
        keys = server.receiveOpenConfirm(body(client.receiveOpenAccept(body(accept))))
        self.assertEqual(keys.key, client.key)
        self.assertFalse(client.bound)

    def test_boundResume(self) -> None:
        """
        A resume over a TLS connection is bound to it: verified over one
        connection, refused with a bad proof when the two ends see different
        exporter values; the server's answer is bound the same way.
        """
        key, sid = b"k" * 32, b"s" * 16
        server = ServerHandshake(exporter(b"E" * 32))
        client = ClientHandshake.forResume(sid, key, 5, 0, exporter(b"E" * 32))
        request = server.parseResume(body(client.receiveHello(body(server.hello()))))
        server.verifyResume(request, key, 4)
        self.assertEqual(client.receiveResumeAccept(body(server.acceptResume(request, key, 7))), 7)

        server = ServerHandshake(exporter(b"S" * 32))
        client = ClientHandshake.forResume(sid, key, 5, 0, exporter(b"C" * 32))
        request = server.parseResume(body(client.receiveHello(body(server.hello()))))
        e = self.assertRaises(HandshakeFailed, server.verifyResume, request, key, 4)
        self.assertEqual(e.code, _wire.REJECT_BAD_PROOF)
