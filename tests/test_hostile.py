"""
Hostile input aimed at a server that holds a live session: replayed resumes
and openings, forged proofs, stale generations, garbage, oversized frames,
slow handshakes and floods.  Each is refused on its own carrier, with a
reason, and the live session is never disturbed.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from migrate.testing import sessionOf
from migrate import SessionOptions
from migrate._sansio import crypto as _crypto, wire as _wire
from migrate._protocol import Carrier

from .helpers import Echo, Pair


class Collect:
    def __init__(self) -> None:
        self.frames: list[tuple[int, bytes]] = []

    def dataFrameStarted(self, ack: int, length: int) -> None:
        self.frames.append((_wire.DATA, b""))

    def payloadReceived(self, payload: bytes) -> None:
        pass

    def controlFrameReceived(self, frameType: int, body: bytes) -> None:
        self.frames.append((frameType, body))


class Attacker:
    """
    A raw carrier into the server factory, driven byte by byte.
    """

    def __init__(self, pair: Pair, host: str = "192.0.2.66") -> None:
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", host, 5555))
        self.carrier: Carrier = pair.factory.buildProtocol(self.transport.getPeer())
        self.carrier.makeConnection(self.transport)
        self.collect = Collect()
        self.parser = _wire.FrameParser(self.collect, 1 << 20)
        self.readServer()

    def readServer(self) -> list[tuple[int, bytes]]:
        self.parser.feed(self.transport.value())
        self.transport.clear()
        return self.collect.frames

    @property
    def nonce(self) -> bytes:
        return _wire.decodeServerHello(self.collect.frames[0][1])[1]

    def send(self, data: bytes) -> None:
        self.carrier.dataReceived(data)

    @property
    def closed(self) -> bool:
        return bool(self.transport.disconnecting)

    def rejection(self) -> int:
        frames = self.readServer()
        rejects = [body for t, body in frames if t == _wire.REJECT]
        assert rejects, frames
        return _wire.decodeReject(rejects[-1])[0]


class Recording:
    """
    Records what the client sends on each carrier.
    """

    def __init__(self, pair: Pair) -> None:
        self.sent: list[bytearray] = []
        pair.net.onConnect = self.hook

    def hook(self, link: Any) -> None:
        record = bytearray()
        self.sent.append(record)
        original = link.client.write

        def write(data: bytes) -> None:
            record.extend(data)
            original(data)

        link.client.write = write


class HostileTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.pair = Pair()
        self.recording = Recording(self.pair)
        self.pair.open()
        self.live = self.pair.net.links[0]

    def assertUndisturbed(self) -> None:
        """
        The live session still has its carrier and carries data both ways.
        """
        pair = self.pair
        self.assertIs(pair.serverSession.carrier, self.live.server.protocol)
        self.assertFalse(self.live.closed)
        before = (pair.client.received, pair.server.received)
        pair.client.transport.write(b"still")
        pair.server.transport.write(b"here")
        pair.settle()
        self.assertEqual(pair.server.received, before[1] + b"still")
        self.assertEqual(pair.client.received, before[0] + b"here")
        self.assertEqual(pair.client.lost + pair.server.lost, [])

    def resumeFrame(
        self, nonce: bytes, generation: int = 5, received: int = 0, key: bytes | None = None
    ) -> bytes:
        session = self.pair.serverSession
        clientNonce = os.urandom(32)
        mac = _crypto.prove(
            key if key is not None else session.key,
            b"resume-client",
            nonce,
            session.sessionID,
            generation,
            clientNonce,
            received,
        )
        return _wire.encodeResume(session.sessionID, generation, clientNonce, received, mac)

    def test_replayedResume(self) -> None:
        """
        The bytes of a genuine resume, replayed on a new carrier, are refused
        (the server's nonce is new) and the session stays where it is.
        """
        pair = self.pair
        pair.net.cutAll()
        pair.settle()
        self.live = pair.net.links[0]
        genuine = bytes(self.recording.sent[-1])
        attacker = Attacker(pair)
        attacker.send(genuine)
        self.assertEqual(attacker.rejection(), _wire.REJECT_BAD_PROOF)
        self.assertTrue(attacker.closed)
        self.assertEqual(pair.serverSession.generation, 1)
        self.assertUndisturbed()
        self.flushLoggedErrors()

    def test_forgedProof(self) -> None:
        """
        A resume naming the live session with a wrong key is refused.
        """
        attacker = Attacker(self.pair)
        attacker.send(self.resumeFrame(attacker.nonce, key=b"k" * 32))
        self.assertEqual(attacker.rejection(), _wire.REJECT_BAD_PROOF)
        self.assertUndisturbed()

    def test_staleGeneration(self) -> None:
        """
        A correctly proven resume with a generation not above the last one
        is refused.
        """
        pair = self.pair
        pair.net.cutAll()
        pair.settle()
        self.live = pair.net.links[-1]
        self.assertEqual(pair.serverSession.generation, 1)
        attacker = Attacker(self.pair)
        attacker.send(self.resumeFrame(attacker.nonce, generation=1))
        self.assertEqual(attacker.rejection(), _wire.REJECT_STALE)
        self.assertUndisturbed()

    def test_generationOutOfRange(self) -> None:
        """
        A correctly proven resume whose generation does not fit (0, or
        beyond 2**32 - 1, up to the largest the field holds) is a protocol
        error: refused before anything is recorded, so the next genuine
        resume still works.
        """
        for generation in (0, 2**32, 2**64 - 1):
            attacker = Attacker(self.pair)
            attacker.send(self.resumeFrame(attacker.nonce, generation=generation))
            self.assertEqual(attacker.rejection(), _wire.REJECT_PROTOCOL)
            self.assertEqual(self.pair.serverSession.generation, 0)
            self.assertUndisturbed()
        # The largest generation that fits is taken (and its advertisement
        # numbered above it), with no error.
        attacker = Attacker(self.pair)
        received = self.pair.clientSession.engine.received
        attacker.send(self.resumeFrame(attacker.nonce, generation=2**32 - 1, received=received))
        frames = attacker.readServer()
        self.assertIn(_wire.RESUME_ACCEPT, [t for t, _ in frames])
        self.assertEqual(self.pair.serverSession.generation, 2**32 - 1)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_secureSessionNotResumedInTheClear(self) -> None:
        """
        A session opened over TLS refuses a correctly proven resume that
        comes over plain TCP (here: the memory network's carriers), before
        anything changes: its data must never be retransmitted in the clear.
        """
        session = self.pair.serverSession
        session.secure = True
        attacker = Attacker(self.pair)
        attacker.send(self.resumeFrame(attacker.nonce, generation=1))
        self.assertEqual(attacker.rejection(), _wire.REJECT_REFUSED)
        self.assertEqual(session.generation, 0)
        self.assertUndisturbed()

    def test_impossiblePosition(self) -> None:
        """
        A proven resume claiming to have received more than was sent is
        refused before anything changes.
        """
        attacker = Attacker(self.pair)
        attacker.send(self.resumeFrame(attacker.nonce, received=10**9))
        self.assertEqual(attacker.rejection(), _wire.REJECT_PROTOCOL)
        self.assertEqual(self.pair.serverSession.generation, 0)
        self.assertUndisturbed()

    def test_unknownSession(self) -> None:
        """
        A resume naming no session is refused as unknown.
        """
        attacker = Attacker(self.pair)
        attacker.send(_wire.encodeResume(b"s" * 16, 1, b"n" * 32, 0, b"m" * 32))
        self.assertEqual(attacker.rejection(), _wire.REJECT_UNKNOWN_SESSION)
        self.assertUndisturbed()

    def test_replayedOpening(self) -> None:
        """
        The bytes of a genuine opening, replayed, create no session and no
        application protocol.
        """
        opening = bytes(self.recording.sent[0])
        attacker = Attacker(self.pair)
        attacker.send(opening)
        self.assertEqual(attacker.rejection(), _wire.REJECT_BAD_PROOF)
        self.assertEqual(len(self.pair.servers), 1)
        self.assertEqual(len(self.pair.factory.sessions), 1)
        self.assertUndisturbed()

    def test_garbage(self) -> None:
        """
        Bytes that are not frames close that carrier only.
        """
        attacker = Attacker(self.pair)
        attacker.send(b"GET / HTTP/1.1\r\n\r\n")
        self.assertTrue(attacker.closed)
        self.assertUndisturbed()

    def test_oversized(self) -> None:
        """
        An oversized frame closes that carrier before its body is read.
        """
        attacker = Attacker(self.pair)
        attacker.send(_wire.dataHead(0, 1 << 30))
        self.assertTrue(attacker.closed)
        attacker2 = Attacker(self.pair)
        attacker2.send(b"\x07\xff\xff\xff\xff")
        self.assertTrue(attacker2.closed)
        self.assertUndisturbed()

    def test_dataBeforeHandshake(self) -> None:
        """
        Data on a carrier that has not finished its handshake closes it.
        """
        attacker = Attacker(self.pair)
        attacker.send(_wire.dataHead(0, 3) + b"abc")
        self.assertTrue(attacker.closed)
        self.assertUndisturbed()

    def test_garbageOnLiveCarrier(self) -> None:
        """
        A bad frame on a session's own carrier detaches the session (the
        carrier is dropped); the client resumes and nothing is lost.
        """
        pair = self.pair
        pair.client.transport.write(b"before ")
        self.live.server.protocol.dataReceived(b"\xee\x00\x00\x00\x00")
        pair.client.transport.write(b"after")
        pair.settle()
        self.assertEqual(pair.server.received, b"before after")
        self.assertEqual(pair.serverSession.generation, 1)

    def test_handshakeDeadline(self) -> None:
        """
        A carrier that never completes its handshake is closed after
        C{handshakeTimeout} and stops counting against the limits.
        """
        attacker = Attacker(self.pair)
        self.assertFalse(attacker.closed)
        self.pair.clock.advance(self.pair.options.handshakeTimeout)
        self.assertTrue(attacker.closed)
        attacker.carrier.connectionLost(None)  # type: ignore[arg-type]
        self.assertEqual(self.pair.factory._pending, {})

    def test_pendingPerHost(self) -> None:
        """
        Past C{maxPendingPerHost} handshakes from one host, further carriers
        are refused as busy; other hosts are not affected.
        """
        self.pair.factory.options = SessionOptions(maxPendingPerHost=2, maxPending=4)
        a = [Attacker(self.pair) for _ in range(2)]
        third = Attacker(self.pair)
        self.assertEqual(third.rejection(), _wire.REJECT_BUSY)
        other = Attacker(self.pair, host="198.51.100.1")
        self.assertFalse(other.closed)
        self.assertFalse(any(x.closed for x in a))
        self.assertUndisturbed()

    def test_pendingPerHostOnlyWhenCrowded(self) -> None:
        """
        While less than half of the handshake table is in use, one address
        (a load balancer, a NAT) may use what is free; from then on, its
        handshakes beyond C{maxPendingPerHost} are refused as busy while
        other addresses still get in.
        """
        options = SessionOptions()
        self.pair.factory.options = options
        half = options.maxPending // 2
        crowd = [Attacker(self.pair) for _ in range(half)]
        self.assertFalse(any(x.closed for x in crowd))
        self.assertGreater(half, options.maxPendingPerHost)
        self.assertEqual(Attacker(self.pair).rejection(), _wire.REJECT_BUSY)
        others = [Attacker(self.pair, host="198.51.100.1") for _ in range(options.maxPendingPerHost)]
        self.assertFalse(any(x.closed for x in others))
        self.assertEqual(
            Attacker(self.pair, host="198.51.100.1").rejection(), _wire.REJECT_BUSY
        )
        self.assertUndisturbed()

    def test_maxSessions(self) -> None:
        """
        Openings beyond C{maxSessions} are refused as busy.
        """
        self.pair.factory.options = SessionOptions(maxSessions=1)
        attacker = Attacker(self.pair)
        attacker.send(_wire.encodeOpen(os.urandom(32), os.urandom(32)))
        self.assertEqual(attacker.rejection(), _wire.REJECT_BUSY)
        self.assertUndisturbed()

    def test_badPublicKey(self) -> None:
        """
        An opening with an invalid (all-zero, low-order) key is refused.
        """
        attacker = Attacker(self.pair)
        attacker.send(_wire.encodeOpen(b"\x00" * 32, os.urandom(32)))
        self.assertEqual(attacker.rejection(), _wire.REJECT_PROTOCOL)
        self.assertUndisturbed()

    def test_wrongVersion(self) -> None:
        """
        An opening of another protocol version is refused as such.
        """
        attacker = Attacker(self.pair)
        body = bytes([99, 0]) + os.urandom(64)
        attacker.send(_wire.encodeFrame(_wire.OPEN, body))
        self.assertEqual(attacker.rejection(), _wire.REJECT_VERSION)

    def test_neighboursCannotEvict(self) -> None:
        """
        However many sessions other clients behind the same address open and
        drop (here far more than any per-address limit of old), with default
        options, no detached session is ended because of them: the victim
        resumes with every byte.
        """
        pair = Pair()
        pair.open()
        victim, victimServer = pair.client, pair.server
        victim.transport.write(b"mine")
        pair.net.refuse = True
        pair.net.cutAll()
        pair.net.refuse = False
        # The neighbours reconnect only after the victim is detached.
        neighbours = []
        for i in range(300):
            pair.servers.clear()
            pair.open()
            neighbours.append(pair.client)
        pair.net.refuse = True
        pair.net.cutAll()
        pair.settle(seconds=1)
        self.assertEqual(victimServer.lost, [])
        pair.net.refuse = False
        pair.settle(seconds=2)
        self.assertEqual(victim.transport.state, "attached")
        self.assertEqual(victimServer.received, b"mine")
        self.assertEqual(victim.lost, [])

    def test_closedSessionsDoNotFillTable(self) -> None:
        """
        Sessions one address opens and closes cleanly are remembered for a
        while (so that a late resume learns of the close), but those records
        do not count against C{maxSessions}, and at most
        C{maxClosedPerHost} are kept per address: an address that opens and
        closes sessions fast, holding no connection, locks nobody out.
        """
        options = SessionOptions(maxSessions=20, maxClosedPerHost=5)
        pair = Pair(options)
        for i in range(50):
            pair.servers.clear()
            pair.open()
            pair.client.transport.loseConnection()
            pair.settle()
        host = pair.net.clientHost
        self.assertEqual(len(pair.factory._closedPerHost[host]), 5)
        self.assertEqual(len(pair.factory._closed), 5)
        self.assertEqual(len(pair.factory.sessions), 5)
        # A victim elsewhere, while the table is full of live sessions but
        # one, still opens.
        live = []
        for i in range(19):
            pair.servers.clear()
            pair.open()
            live.append(pair.client)
        pair.net.clientHost = "198.51.100.7"
        pair.servers.clear()
        pair.open()
        self.assertEqual(pair.client.transport.state, "attached")

    def test_capacityEndExplained(self) -> None:
        """
        Without a store, past C{maxDetached} (over the whole server) the
        longest-detached session ends; its client, when it comes back, is
        told "server at capacity", not "unknown session".
        """
        pair = Pair(serverOptions=SessionOptions(maxDetached=2))
        pairs = []
        for i in range(3):
            pair.servers.clear()
            pair.open()
            pairs.append((pair.client, pair.server))
        pair.net.refuse = True
        for link in list(pair.net.links):
            link.cut()
            pair.net.flush()
        ended = [server for client, server in pairs if server.lost]
        self.assertEqual(ended, [pairs[0][1]])
        pair.net.refuse = False
        pair.settle(seconds=2)
        first = pairs[0][0]
        self.assertEqual(len(first.lost), 1)
        self.assertIn("server at capacity", first.lost[0].getErrorMessage())
        self.assertEqual([c.lost for c, s in pairs[1:]], [[], []])


class CrowdTests(SynchronousTestCase):
    """
    Crowded handshake tables, with default options: idle connections from
    some addresses never lock others out, and a client refused as busy
    tries again.
    """

    def test_fullTableDropsOldestIdle(self) -> None:
        """
        When the handshake table is full (idle connections from nine
        addresses, each below its per-address limit), a new connection from
        another address is not refused: the oldest handshake of the address
        with the most is dropped instead, and the newcomer opens a session.
        """
        pair = Pair()
        options = pair.factory.options
        hosts = ["192.0.2.%d" % (i,) for i in range(10, 19)]
        idle = [
            Attacker(pair, host=hosts[i % len(hosts)]) for i in range(options.maxPending)
        ]
        self.assertEqual(len(pair.factory._pending), options.maxPending)
        self.assertFalse(any(a.closed for a in idle))
        pair.open()
        self.assertEqual(pair.client.transport.state, "attached")
        dropped = [a for a in idle if a.closed]
        self.assertEqual(len(dropped), 1)
        self.assertIs(dropped[0], idle[0])
        self.assertEqual(len(pair.factory._pending), options.maxPending - 1)

    def test_busyOpeningRetried(self) -> None:
        """
        An opening refused as busy (here: its address already has
        C{maxPendingPerHost} handshakes in progress) is tried again after
        the server's retry-after, with backoff, and succeeds once the
        crowd is gone; the application's C{connect} fires then.
        """
        pair = Pair()
        # A crowded table (half full), this address at its share.
        options = pair.factory.options = SessionOptions(maxPending=2 * SessionOptions.maxPendingPerHost)
        crowd = [Attacker(pair, host=pair.net.clientHost) for _ in range(options.maxPendingPerHost)]
        results: list[object] = []
        pair.endpoint.connect(pair.serverAppFactory).addBoth(results.append)
        pair.settle(seconds=0.5)
        self.assertEqual(results, [])
        self.assertGreaterEqual(pair.net.connects, 2)
        from twisted.internet.error import ConnectionDone
        from twisted.python.failure import Failure

        for attacker in crowd:
            attacker.carrier.connectionLost(Failure(ConnectionDone()))
        pair.settle(seconds=2)
        self.assertEqual(len(results), 1)
        self.assertNotIsInstance(results[0], Exception)
        self.assertEqual(len(pair.factory.sessions), 1)

    def test_busyOpeningGivesUp(self) -> None:
        """
        An opening that stays refused as busy fails once C{connectTimeout}
        has passed, with the server's last reason.
        """
        from twisted.python.failure import Failure

        from migrate import HandshakeError

        pair = Pair()
        # A crowded table (half full), this address at its share.
        options = pair.factory.options = SessionOptions(maxPending=2 * SessionOptions.maxPendingPerHost)
        crowd = [Attacker(pair, host=pair.net.clientHost) for _ in range(options.maxPendingPerHost)]
        results: list[Failure] = []
        pair.endpoint.connect(pair.serverAppFactory).addErrback(results.append)
        pair.settle(seconds=options.connectTimeout - 0.5)
        self.assertEqual(results, [])
        pair.settle(seconds=1)
        self.assertEqual(len(results), 1)
        results[0].trap(HandshakeError)
        self.assertIn("too many handshakes", results[0].getErrorMessage())
        self.assertEqual(len(crowd), options.maxPendingPerHost)


class FairOpeningTests(SynchronousTestCase):
    """
    Openings are shared fairly between addresses under pressure, and an
    address alone (a load balancer's) is never held to a share.
    """

    def openFrom(self, pair: Pair, host: str) -> Any:
        """
        Open a session from C{host}; return its client application, or the
        failure the open ended with.
        """
        from twisted.internet.protocol import Factory
        from twisted.python.failure import Failure

        pair.net.clientHost = host
        pair.servers.clear()
        results: list[Any] = []
        pair.endpoint.connect(Factory.forProtocol(pair.clientProtocol)).addBoth(results.append)
        pair.net.flush()
        if not results:
            return None
        if isinstance(results[0], Failure):
            return results[0]
        return results[0]

    def test_tableShare(self) -> None:
        """
        Once three quarters of C{maxSessions} are in use, an address that
        holds at least its share of the table (C{maxSessions} over the
        addresses holding sessions) is refused as busy, and its client,
        after retrying until C{connectTimeout}, learns why: the last
        quarter stays for the others.  (C{maxSessions} is lowered to 8 to
        reach the rule in a few openings.)
        """
        pair = Pair(SessionOptions(maxSessions=8))
        victim = self.openFrom(pair, "198.51.100.7")
        self.assertEqual(victim.transport.state, "attached")
        opened = []
        for i in range(5):
            opened.append(self.openFrom(pair, "203.0.113.66"))
        self.assertEqual([c.transport.state for c in opened], ["attached"] * 5)
        # The sixth waits (refused as busy, told to retry later)...
        from twisted.internet.protocol import Factory

        results: list[Any] = []
        pair.servers.clear()
        pair.endpoint.connect(Factory.forProtocol(pair.clientProtocol)).addBoth(results.append)
        pair.net.flush()
        self.assertEqual(results, [])
        pair.settle(pair.options.connectTimeout + 1, 0.1)
        self.assertEqual(len(results), 1)
        self.assertIn("too many sessions from 203.0.113.66", results[0].getErrorMessage())
        self.assertEqual(pair.servers, [])
        # The victim's address, and a newcomer, still open.
        self.assertEqual(self.openFrom(pair, "198.51.100.7").transport.state, "attached")
        self.assertEqual(self.openFrom(pair, "192.0.2.9").transport.state, "attached")

    def test_aloneFillsTable(self) -> None:
        """
        An address alone (a load balancer's, a NAT's) may use the whole
        table.
        """
        pair = Pair(SessionOptions(maxSessions=8))
        for i in range(8):
            self.assertEqual(self.openFrom(pair, "10.9.9.9").transport.state, "attached")

    def test_ipv6SharesPerNetwork(self) -> None:
        """
        IPv6 addresses count under their /64 network: a peer spreading its
        openings over the addresses of its network holds one share.
        """
        pair = Pair(SessionOptions(maxSessions=8))
        self.openFrom(pair, "2001:db8:aaaa:1::1")
        for i in range(5):
            client = self.openFrom(pair, "2001:db8:bbbb:2::%x" % (i + 1,))
            self.assertEqual(client.transport.state, "attached")
        self.assertIsNone(self.openFrom(pair, "2001:db8:bbbb:2::99"))
        self.assertEqual(
            self.openFrom(pair, "2001:db8:aaaa:1::2").transport.state, "attached"
        )

    def test_openRate(self) -> None:
        """
        Past C{maxOpenRate} (default 1,000) openings in one second, an
        address that asked for at least its share of them waits for the
        next second, while an address that opens rarely gets in at once.
        Default options.
        """
        pair = Pair()
        rate = pair.options.maxOpenRate
        for i in range(rate):
            client = self.openFrom(pair, "203.0.113.66")
            client.transport.loseConnection()
            pair.net.flush()
        # The flooder's next opening is refused as busy (its client waits)...
        self.assertIsNone(self.openFrom(pair, "203.0.113.66"))
        # ... while a rare opener is let in at once.
        self.assertEqual(self.openFrom(pair, "198.51.100.7").transport.state, "attached")
        # The next second, the flooder's waiting opening goes through.
        pair.servers.clear()
        pair.settle(1.0, 0.05)
        self.assertEqual(len(pair.servers), 1)
        self.assertEqual(sessionOf(pair.servers[0]).state.name, "ATTACHED")

class NonReaderTests(SynchronousTestCase):
    """
    A peer that never reads cannot make the server hold memory for it: not
    by overflowing its session, not by a flood of heartbeats.
    """

    def setUp(self) -> None:
        # A small hard cap keeps the test's memory small; the mechanism is
        # the same at the default.
        self.serverOptions = SessionOptions(highWater=64 * 1024, hardCap=256 * 1024)
        self.pair = Pair(serverProtocol=Echo, serverOptions=self.serverOptions)
        # Connections push back past 32 KiB queued, as a socket's buffers
        # would.
        self.pair.net.bufferLimit = 32 * 1024
        self.pair.open()
        self.pair.settle()
        # The client stops reading: what the server sends piles up on the
        # server's side of the connection.
        self.pair.client.transport.pauseProducing()

    def serverEnd(self) -> Any:
        """
        The server's end of the current connection.
        """
        return self.pair.serverSession.carrier.transport

    def test_overflowedCarrierAborted(self) -> None:
        """
        A session that ends because its peer sent past the hard cap without
        reading has its carrier aborted at once, not left to drain (its
        queued bytes would be held until the drain timeout).
        """
        pair = self.pair
        transport = self.serverEnd()
        session = pair.serverSession
        chunk = b"x" * 16384
        for _ in range(100):
            if session.ended:
                break
            pair.client.transport.write(chunk)
            pair.net.flush()
        self.assertTrue(session.ended)
        self.assertTrue(transport.aborted)
        # The ended session is remembered (to tell a late resume why), but
        # not with the data it could never deliver.
        self.assertIs(pair.factory.sessions[session.sessionID], session)
        self.assertEqual(session.engine.unacknowledgedBytes(), b"")
        self.assertIsNone(pair.factory.sessions.get(session.sessionID, session).carrier)

    def test_pingFloodUnanswered(self) -> None:
        """
        Heartbeats from a peer that does not read are not answered (each
        answer would only queue), and past a thousand of them its carrier is
        dropped; the session itself detaches and survives.
        """
        pair = self.pair
        transport = self.serverEnd()
        # Fill the server's side until the connection pushes back.
        for _ in range(10):
            if transport.producerPaused:
                break
            pair.server.transport.write(b"y" * 16384)
        self.assertTrue(transport.producerPaused)
        queued = transport.queued
        clientCarrier = pair.clientSession.carrier
        for token in range(999):
            clientCarrier.transport.write(_wire.encodePing(token))
        pair.net.flush()
        self.assertEqual(transport.queued, queued)
        self.assertIs(pair.serverSession.carrier.transport, transport)
        for token in range(999, 1010):
            clientCarrier.transport.write(_wire.encodePing(token))
        pair.net.flush()
        # Dropped, with what was queued on it: the session detached (and
        # its client, which is well-behaved here, resumed on a new carrier).
        self.assertTrue(transport.aborted)
        self.assertFalse(pair.serverSession.ended)
        carrier = pair.serverSession.carrier
        self.assertTrue(carrier is None or carrier.transport is not transport)


class MemoryBudgetTests(SynchronousTestCase):
    """
    What a server holds for its peers is bounded over the whole server
    (C{memoryBudget}): detached sessions give theirs back first, the largest
    first, and nobody else's session ends because of them.
    """

    budget = 1024 * 1024

    def setUp(self) -> None:
        # A budget of 1 MiB instead of a quarter of the machine's memory, so
        # that the test moves megabytes, not gigabytes.
        self.pair = Pair(serverOptions=SessionOptions(memoryBudget=self.budget))

    def openHolding(self, sizes: list[int]) -> list[Any]:
        """
        Open a session per size; its server writes that many bytes that its
        client never reads, then every carrier is cut (the clients cannot
        come back yet).
        """
        pair = self.pair
        clients = []
        for size in sizes:
            pair.servers.clear()
            pair.open()
            pair.client.transport.pauseProducing()
            pair.server.transport.write(b"z" * size)
            pair.net.flush()
            clients.append((pair.client, pair.server))
        pair.net.refuse = True
        pair.net.cutAll()
        pair.net.flush()
        return clients

    def test_everythingHeldCounted(self) -> None:
        """
        The budget counts, besides session buffers, every handshake in
        progress and every closed-session record (each at its documented
        estimate) and what carriers' transports still hold to send.
        """
        from migrate._server import HANDSHAKE_COST, RECORD_COST

        factory = self.pair.factory
        self.assertEqual(factory.held(), 0)
        attackers = [Attacker(self.pair, "192.0.2.%d" % (i,)) for i in range(1, 4)]
        self.assertEqual(factory.held(), 3 * HANDSHAKE_COST)
        # A transport holding bytes it has not sent (as Twisted's TCP
        # transport shows them) counts too.
        attackers[0].transport.dataBuffer = b"q" * 5000  # type: ignore[attr-defined]
        attackers[0].transport.offset = 1000  # type: ignore[attr-defined]
        attackers[0].transport._tempDataLen = 300  # type: ignore[attr-defined]
        self.assertEqual(factory.held(), 3 * HANDSHAKE_COST + 4300)
        for attacker in attackers:
            attacker.carrier.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(factory.held(), 0)
        self.pair.open()
        self.pair.client.transport.loseConnection()
        self.pair.net.flush()
        self.assertEqual(len(factory._closed), 1)
        self.assertEqual(factory.held(), RECORD_COST)

    def test_largestDetachedEnd(self) -> None:
        """
        Without a store, the detached sessions holding the most end, logged,
        until the server is back under 90% of its budget; their clients are
        told "server at capacity" when they come back; a small session
        detached at the same time resumes with every byte.
        """
        sizes = [400 * 1024, 420 * 1024, 440 * 1024, 10]
        self.assertGreater(sum(sizes), self.budget)
        clients = self.openHolding(sizes)
        factory = self.pair.factory
        self.pair.clock.advance(0)
        self.assertLessEqual(factory.held(), self.budget * 0.9)
        # The largest alone brings it under 90% of the budget.
        ended = [sessionOf(server).ended for _, server in clients]
        self.assertEqual(ended, [False, False, True, False])
        self.pair.net.refuse = False
        for client, _ in clients:
            client.transport.resumeProducing()
        self.pair.settle(seconds=3, step=0.1)
        (big, bigServer), (victim, victimServer) = clients[0], clients[3]
        self.assertEqual(victim.received, b"z" * 10)
        self.assertEqual(victim.transport.state, "attached")
        self.assertEqual(big.received, b"z" * sizes[0])
        self.assertEqual(clients[1][0].received, b"z" * sizes[1])
        (lost,) = clients[2][0].lost
        self.assertIn("server at capacity", lost.getErrorMessage())
        # Nothing is left scheduled for the budget once nothing is detached.
        self.assertIsNone(factory._budgetCall)

    def test_hibernatedWithStore(self) -> None:
        """
        With a store, the largest detached sessions are hibernated instead
        (their data goes to the store); none ends, and all resume.
        """
        from migrate.store import MemorySessionStore

        self.pair.factory.store = MemorySessionStore()
        sizes = [400 * 1024, 420 * 1024, 440 * 1024, 10]
        clients = self.openHolding(sizes)
        factory = self.pair.factory
        self.pair.clock.advance(0)
        self.assertLessEqual(factory.held(), self.budget * 0.9)
        self.pair.net.refuse = False
        for client, _ in clients:
            client.transport.resumeProducing()
        self.pair.settle(seconds=3, step=0.1)
        for (client, _), size in zip(clients, sizes):
            self.assertEqual(client.lost, [])
            self.assertEqual(len(client.received), size)

    def test_attachedOverBudgetPaused(self) -> None:
        """
        When attached sessions alone hold more than the budget, every
        application producing into a session is paused, even those under
        their own high-water mark, and resumed once the total is back under
        80% of the budget.
        """
        pair = self.pair = Pair(
            serverOptions=SessionOptions(memoryBudget=self.budget, highWater=512 * 1024)
        )
        producers = []
        clients = []
        for i in range(3):
            pair.servers.clear()
            pair.open()
            producer = _Producer()
            pair.server.transport.registerProducer(producer, True)
            pair.client.transport.pauseProducing()
            producers.append(producer)
            clients.append(pair.client)
        # Two under their high-water mark, one past it: 1.2 MiB in all.
        sessions = list(pair.factory.sessions.values())
        for session, size in zip(sessions, [300, 300, 600]):
            session.transport.write(b"w" * (size * 1024))
        pair.clock.advance(0)
        pair.net.flush()
        self.assertEqual([p.paused for p in producers], [True, True, True])
        # The first two only because of the budget.
        self.assertEqual([s.pauseReasons for s in sessions[:2]], [{"budget"}, {"budget"}])
        for client in clients:
            client.transport.resumeProducing()
        pair.settle(seconds=1.5, step=0.1)
        self.assertFalse(any(p.paused for p in producers))
        self.assertIsNone(pair.factory._budgetCall)


class _Producer:
    """
    A push producer that records whether it is paused.
    """

    paused = False

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False

    def stopProducing(self) -> None:
        pass


class NotMigrateTests(SynchronousTestCase):
    """
    A peer that does not speak Migrate at all is named as such, with what
    it sent, not as an obscure frame error.
    """

    def test_plainClientOnServer(self) -> None:
        """
        A plain TCP client (here an HTTP request) on a Migrate port is
        dropped with a log line saying it does not speak Migrate and
        showing its first bytes.
        """
        from twisted.logger import globalLogPublisher

        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        pair = Pair()
        attacker = Attacker(pair)
        attacker.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(attacker.closed)
        reasons = [e.get("reason", "") for e in events if "closed" in (e.get("log_format") or "")]
        self.assertEqual(len(reasons), 1, events)
        self.assertIn("does not speak Migrate", reasons[0])
        self.assertIn("GET / HTTP/1.1", reasons[0])
        from twisted.internet.error import ConnectionDone
        from twisted.python.failure import Failure

        attacker.carrier.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(pair.factory._pending, {})

    def test_plainServerForClient(self) -> None:
        """
        A client endpoint pointed at a plain TCP service (an ssh server's
        greeting) fails its connect with a reason that says the peer does
        not speak Migrate and what it sent.
        """
        pair = Pair()
        results: list[Any] = []
        d = pair.endpoint.connect(pair.serverAppFactory)
        d.addBoth(results.append)
        link = pair.net.links[-1]
        link.client.protocol.dataReceived(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
        pair.settle(seconds=pair.options.connectTimeout + 1, step=0.5)
        self.assertEqual(len(results), 1)
        failure = results[0]
        self.assertIn("does not speak Migrate", failure.getErrorMessage())
        self.assertIn("SSH-2.0-OpenSSH", failure.getErrorMessage())
