"""
The sans-IO core of datagram sessions, driven aioquic-style: two ends, a
fake clock (a number), datagrams passed by hand; and Hypothesis for the
replay window and for mutated, replayed and forged packets.
"""

from __future__ import annotations

import random
from typing import Any, Optional

from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from migrate._sansio import dgram as _dgram, wire as _wire
from migrate._sansio.dgram_conn import (
    AMPLIFICATION,
    AddressesAdvertised,
    DatagramConnection,
    Ended,
    HibernateDue,
    PathValidated,
    PeerMoved,
    Resumed,
    Suspended,
    decodeCheckpoint,
    encodeCheckpoint,
)
from migrate._sansio.dgram_handshake import ClientOpening, ClientResuming, HandshakeResponder
from migrate._sansio.handshake import HandshakeFailed
from migrate.policy import DefaultPolicy

CLIENT = ("10.0.0.2", 4000)
SERVER = ("10.0.0.1", 7001)


def fuzz(examples: int) -> Any:
    """
    Derandomized, no database, no deadline (as in C{tests/test_fuzz.py}).
    """
    return settings(
        phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def openSession(now: float = 0.0) -> tuple[bytes, bytes]:
    """
    Run a whole opening by hand; return the session id and key (checked to
    be the same on both ends).
    """
    opening = ClientOpening(now, 5.0)
    responder = HandshakeResponder(16, 10.0)
    datagram: Optional[bytes] = opening.first()
    opened = None
    while datagram is not None:
        answer = responder.receive(datagram, now)
        if answer.opened is not None:
            opened = answer.opened
        assert answer.reply is not None, answer.reason
        datagram = opening.receive(answer.reply, now)
    assert opening.keys is not None and opened is not None
    assert (opening.keys.sessionID, opening.keys.key) == (opened.sessionID, opened.key)
    return opened.sessionID, opened.key


class Pair:
    """
    A client and a server connection of one session, on one clock.
    """

    def __init__(self, sendRate: float = 1e9, sendBurst: float = 1e9, **options: Any) -> None:
        from migrate import SessionOptions

        self.now = 0.0
        self.sid, self.key = openSession()
        self.policy = DefaultPolicy(SessionOptions(**options), rng=random.Random(0))
        self.client = DatagramConnection(
            True, self.sid, self.key, SERVER, self.now, self.policy, sendRate, sendBurst,
            rng=random.Random(1),
        )
        self.server = DatagramConnection(
            False, self.sid, self.key, CLIENT, self.now, self.policy, sendRate, sendBurst,
            local="10.0.0.1", rng=random.Random(2),
        )

    def send(self, sender: DatagramConnection, payload: bytes) -> Any:
        out = sender.sendApp(payload, self.now)
        assert out is not None
        return out

    def deliver(self, receiver: DatagramConnection, datagram: bytes, source: Any) -> Optional[bytes]:
        return receiver.receive(datagram, source, None, self.now)

    def clientSends(self, payload: bytes, source: Any = CLIENT) -> Optional[bytes]:
        datagram, address, _ = self.send(self.client, payload)
        assert address == SERVER
        return self.deliver(self.server, datagram, source)

    def flushControl(self, clientAddress: Any = CLIENT) -> int:
        """
        Pass control datagrams both ways until none is left; return how many.
        """
        count = 0
        while True:
            moved = 0
            for datagram, address, _ in self.client.datagramsToSend():
                if address == SERVER:
                    self.deliver(self.server, datagram, clientAddress)
                moved += 1
            for datagram, address, _ in self.server.datagramsToSend():
                if address == clientAddress:
                    self.deliver(self.client, datagram, SERVER)
                moved += 1
            count += moved
            if not moved:
                return count

    def advance(self, seconds: float, step: float = 0.01) -> None:
        """
        Let time pass, running both ends' timers and passing control
        datagrams.
        """
        end = self.now + seconds
        while self.now < end:
            nexts = [t for t in (self.client.nextTimer(), self.server.nextTimer()) if t is not None]
            self.now = min([end] + [t for t in nexts if t > self.now] + [self.now + step])
            for c in (self.client, self.server):
                timer = c.nextTimer()
                if timer is not None and timer <= self.now:
                    c.handleTimer(self.now)
            self.flushControl()

    @staticmethod
    def events(connection: DatagramConnection) -> list[Any]:
        out = []
        while (e := connection.nextEvent()) is not None:
            out.append(e)
        return out


def state(c: DatagramConnection) -> Any:
    """
    Everything an outside datagram could change.
    """
    return (
        c.path.address,
        c._opener.window.highest,
        c._opener.window.bits,
        {a: (p.received, p.sent, p.validated) for a, p in c._paths.items()},
        c.heardAt,
        c.suspended,
        c.stats["received"],
        c._out[:],
        list(c._events),
        c.nextTimer(),
    )


class LayeringTests(SynchronousTestCase):
    """
    The sans-IO modules stay sans-IO.
    """

    def test_noTwisted(self) -> None:
        """
        L{migrate._sansio.dgram}, L{migrate._sansio.dgram_conn} and
        L{migrate._sansio.dgram_handshake} import nothing from Twisted or zope, and
        of Migrate only other pure modules.
        """
        import ast
        import os

        import migrate

        pure = {"dgram", "dgram_conn", "dgram_handshake", "wire", "crypto", "handshake", "errors"}
        here = os.path.join(os.path.dirname(migrate.__file__), "_sansio")
        for name in ("dgram", "dgram_conn", "dgram_handshake"):
            with open(os.path.join(here, name + ".py")) as f:
                tree = ast.parse(f.read())
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    modules = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    if node.level:
                        modules = [a.name for a in node.names] if node.module is None else [node.module]
                        self.assertTrue(set(modules) <= pure, (name, modules))
                        continue
                    modules = [node.module or ""]
                else:
                    continue
                for module in modules:
                    self.assertFalse(module.startswith(("twisted", "zope")), (name, module))


class ProtectionTests(SynchronousTestCase):
    """
    Packets: keys per direction, authentication, replays.
    """

    def setUp(self) -> None:
        self.sid, self.key = b"s" * 16, b"k" * 32
        self.sealer = _dgram.Sealer(self.key, self.sid, 0, True)
        self.opener = _dgram.Opener(self.key, self.sid, 0, True)

    def test_roundTrip(self) -> None:
        """
        A sealed packet opens to its kind and body, is 42 bytes longer than
        its payload, and does not contain the payload in clear.
        """
        packet = self.sealer.seal(_dgram.APP, b"secret payload")
        self.assertEqual(len(packet), len(b"secret payload") + _dgram.OVERHEAD)
        self.assertNotIn(b"secret payload", packet)
        self.assertEqual(self.opener.open(packet), (0, True, _dgram.APP, b"secret payload"))

    def test_replayRefused(self) -> None:
        """
        The same packet twice: the second is refused.
        """
        packet = self.sealer.seal(_dgram.APP, b"x")
        self.opener.open(packet)
        self.assertRaises(_dgram.PacketError, self.opener.open, packet)

    def test_reorderedInsideWindow(self) -> None:
        """
        Packets reordered within the window are each accepted once; only
        the highest is "newest".
        """
        packets = [self.sealer.seal(_dgram.APP, b"%d" % i) for i in range(10)]
        self.assertTrue(self.opener.open(packets[9])[1])
        for i in (3, 0, 8):
            pn, newest, _, body = self.opener.open(packets[i])
            self.assertEqual((pn, newest, body), (i, False, b"%d" % i))
            self.assertRaises(_dgram.PacketError, self.opener.open, packets[i])

    def test_outsideWindowRefused(self) -> None:
        """
        A genuine packet more than the window below the highest is refused,
        even though it was never received.
        """
        old = self.sealer.seal(_dgram.APP, b"old")
        self.sealer.nextPN = _dgram.WINDOW
        self.opener.open(self.sealer.seal(_dgram.APP, b"new"))
        self.assertRaises(_dgram.PacketError, self.opener.open, old)
        edge = _dgram.Sealer(self.key, self.sid, 0, True)
        edge.nextPN = 1
        self.opener.open(edge.seal(_dgram.APP, b"edge"))  # 1023 below: inside

    def test_wrongKey(self) -> None:
        """
        Right session id, wrong key: refused, and the window unchanged.
        """
        forged = _dgram.Sealer(b"K" * 32, self.sid, 0, True).seal(_dgram.APP, b"x")
        self.assertRaises(_dgram.PacketError, self.opener.open, forged)
        self.assertEqual(self.opener.window.highest, -1)

    def test_reflection(self) -> None:
        """
        A packet sent back to its sender does not open: each direction has
        its own key.
        """
        packet = self.sealer.seal(_dgram.APP, b"x")
        own = _dgram.Opener(self.key, self.sid, 0, False)
        self.assertRaises(_dgram.PacketError, own.open, packet)

    def test_generationChangesKeys(self) -> None:
        """
        Another generation's keys do not open this one's packets.
        """
        packet = self.sealer.seal(_dgram.APP, b"x")
        other = _dgram.Opener(self.key, self.sid, 1, True)
        self.assertRaises(_dgram.PacketError, other.open, packet)

    def test_headerIsAuthenticated(self) -> None:
        """
        A packet moved to another session id, or given another packet
        number, is refused.
        """
        packet = self.sealer.seal(_dgram.APP, b"x")
        renumbered = packet[:17] + (5).to_bytes(8, "big") + packet[25:]
        self.assertRaises(_dgram.PacketError, self.opener.open, renumbered)
        other = _dgram.Opener(self.key, b"t" * 16, 0, True)
        moved = packet[:1] + b"t" * 16 + packet[17:]
        self.assertRaises(_dgram.PacketError, other.open, moved)
        self.assertEqual(self.opener.open(packet)[3], b"x")


def referenceWindow(pns: list[int], size: int) -> list[bool]:
    """
    Which of C{pns} a correct window accepts: not seen before and not
    C{size} or more below the highest accepted.
    """
    seen: set[int] = set()
    highest = -1
    out = []
    for pn in pns:
        ok = pn not in seen and pn > highest - size
        out.append(ok)
        if ok:
            seen.add(pn)
            highest = max(highest, pn)
    return out


class ReplayWindowTests(SynchronousTestCase):
    """
    The window against a reference model.
    """

    @fuzz(400)
    @given(
        st.lists(
            st.one_of(
                st.integers(0, 40),
                st.integers(0, 3000),
                st.integers(2**62 - 5, 2**62),
            ),
            max_size=80,
        ),
        st.sampled_from([8, 64, 1024]),
    )
    def test_matchesReference(self, pns: list[int], size: int) -> None:
        """
        Any sequence of packet numbers is accepted exactly as the reference
        model accepts it.
        """
        window = _dgram.ReplayWindow(size)
        got = []
        for pn in pns:
            ok = window.fresh(pn)
            if ok:
                window.mark(pn)
            got.append(ok)
        self.assertEqual(got, referenceWindow(pns, size))


class HandshakeTests(SynchronousTestCase):
    """
    The opening over datagrams.
    """

    def test_opening(self) -> None:
        """
        Three round trips give both ends the same session id and key.
        """
        sid, key = openSession()
        self.assertEqual((len(sid), len(key)), (16, 32))

    def test_noAmplification(self) -> None:
        """
        Every client datagram is padded to 256 bytes, every answer is
        smaller, and an unpadded request gets no answer.
        """
        opening = ClientOpening(0, 5)
        responder = HandshakeResponder(16, 10)
        datagram = opening.first()
        sizes = []
        while datagram is not None:
            answer = responder.receive(datagram, 0)
            assert answer.reply is not None
            sizes.append((len(datagram), len(answer.reply)))
            datagram = opening.receive(answer.reply, 0)
        self.assertEqual(len(sizes), 3)
        for request, reply in sizes:
            self.assertEqual(request, _dgram.HANDSHAKE_PAD)
            self.assertLess(reply, request)
        short = _dgram.encodeHandshake(b"h" * 8, _dgram.encodeInit(), False)
        answer = HandshakeResponder(16, 10).receive(short, 0)
        self.assertIsNone(answer.reply)

    def test_lossAndRetransmission(self) -> None:
        """
        Every answer lost once: the client resends on its timer, the server
        answers a repeated request with the same answer (one key agreement
        only), and the opening completes.
        """
        now = 0.0
        opening = ClientOpening(now, 5)
        responder = HandshakeResponder(16, 10)
        datagram: Optional[bytes] = opening.first()
        agreements = 0
        while datagram is not None:
            lost = responder.receive(datagram, now)
            timer = opening.nextTimer()
            assert timer is not None
            now = timer
            again = opening.handleTimer(now)
            self.assertEqual(again, datagram)
            assert again is not None
            answer = responder.receive(again, now)
            self.assertEqual(answer.reply, lost.reply)
            if answer.opened is not None or lost.opened is not None:
                agreements += 1
            assert answer.reply is not None
            datagram = opening.receive(answer.reply, now)
        self.assertIsNotNone(opening.keys)
        self.assertEqual(agreements, 1)
        self.assertLess(now, 1.0)

    def test_timeout(self) -> None:
        """
        No answer at all: retransmissions back off, then the opening fails.
        """
        opening = ClientOpening(0, 5)
        times = []
        while True:
            timer = opening.nextTimer()
            assert timer is not None
            try:
                if opening.handleTimer(timer) is not None:
                    times.append(timer)
            except HandshakeFailed as e:
                self.assertEqual(e.reason, "timed out")
                self.assertEqual(timer, 5)
                break
        self.assertEqual(times[:4], [0.2, 0.6000000000000001, 1.4000000000000001, 3.0])

    def test_unknownHandshake(self) -> None:
        """
        An C{OPEN} for a handshake id the server does not know (never
        greeted, or forgotten after its timeout) gets no answer and costs
        no key agreement.
        """
        responder = HandshakeResponder(16, 10)
        opening = ClientOpening(0, 5)
        hello = responder.receive(opening.first(), 0).reply
        assert hello is not None
        request = opening.receive(hello, 0)
        assert request is not None
        self.assertIsNone(HandshakeResponder(16, 10).receive(request, 0).reply)
        self.assertIsNone(responder.receive(request, 10.0).reply)
        self.assertEqual(len(responder.pending), 0)

    def test_boundedTable(self) -> None:
        """
        Past C{maxPending}, the oldest handshake is forgotten.
        """
        responder = HandshakeResponder(4, 10)
        openings = [ClientOpening(0, 5) for _ in range(6)]
        for o in openings:
            responder.receive(o.first(), 0)
        self.assertEqual(list(responder.pending), [o.hid for o in openings[2:]])

    def test_busy(self) -> None:
        """
        A server at its session limit refuses the confirmation as busy; the
        client's opening fails with the reason.
        """
        responder = HandshakeResponder(4, 10)
        opening = ClientOpening(0, 5)
        datagram = opening.first()
        with self.assertRaises(HandshakeFailed) as caught:
            while datagram is not None:
                answer = responder.receive(datagram, 0, lambda: "server at capacity")
                self.assertIsNone(answer.opened)
                assert answer.reply is not None
                datagram = opening.receive(answer.reply, 0)
        self.assertEqual(caught.exception.code, _wire.REJECT_BUSY)
        self.assertIn("server at capacity", caught.exception.reason)

    def test_badConfirmation(self) -> None:
        """
        A confirmation with a wrong proof is refused; no session.
        """
        responder = HandshakeResponder(4, 10)
        opening = ClientOpening(0, 5)
        hello = responder.receive(opening.first(), 0).reply
        assert hello is not None
        request = opening.receive(hello, 0)
        assert request is not None
        accept = responder.receive(request, 0).reply
        assert accept is not None
        confirm = opening.receive(accept, 0)
        assert confirm is not None
        forged = confirm[:14] + bytes(32) + confirm[46:]
        answer = responder.receive(forged, 0)
        self.assertIsNone(answer.opened)
        self.assertEqual(answer.reason, "bad opening proof")
        self.assertIsNone(responder.receive(confirm, 0).opened)


class ConnectionTests(SynchronousTestCase):
    """
    Two ends of an open session.
    """

    def test_echo(self) -> None:
        """
        Datagrams go both ways.
        """
        p = Pair()
        self.assertEqual(p.clientSends(b"hello"), b"hello")
        datagram, address, local = p.send(p.server, b"world")
        self.assertEqual((address, local), (CLIENT, "10.0.0.1"))
        self.assertEqual(p.deliver(p.client, datagram, SERVER), b"world")

    def test_spoofedWrongKey(self) -> None:
        """
        A datagram with the session's id but the wrong key, from the
        client's address or another: nothing changes, nothing delivered.
        """
        p = Pair()
        p.clientSends(b"warm up")
        before = state(p.server)
        forged = _dgram.Sealer(b"K" * 32, p.sid, 0, True)
        for source in (CLIENT, ("6.6.6.6", 666)):
            for pn in (0, 1, 5, 10**6):
                forged.nextPN = pn
                self.assertIsNone(p.deliver(p.server, forged.seal(_dgram.APP, b"evil"), source))
                self.assertIsNone(
                    p.deliver(p.server, forged.seal(_dgram.PATH_CHALLENGE, bytes(8)), source)
                )
        self.assertEqual(state(p.server), before)
        self.assertEqual(p.server.stats["dropped"], 16)

    def test_replayFromElsewhere(self) -> None:
        """
        A genuine datagram replayed (inside and outside the window, from
        the client's address or another) changes nothing.
        """
        p = Pair()
        captured = [p.send(p.client, b"%d" % i)[0] for i in range(1100)]
        for datagram in captured[-10:]:
            p.deliver(p.server, datagram, CLIENT)
        before = state(p.server)
        for datagram in captured[-10:] + captured[:5]:
            for source in (CLIENT, ("6.6.6.6", 666)):
                self.assertIsNone(p.deliver(p.server, datagram, source))
        self.assertEqual(state(p.server), before)
        self.assertEqual(p.server.path.address, CLIENT)

    def test_natRebinding(self) -> None:
        """
        The client's address changes with no event: the server follows the
        first authentic datagram from the new address, and its very next
        datagram goes there; a reordered older datagram from the old address
        does not move it back.
        """
        p = Pair()
        late = p.send(p.client, b"late")[0]
        rebound = ("10.0.0.2", 5555)
        self.assertEqual(p.clientSends(b"moved", source=rebound), b"moved")
        self.assertEqual(p.server.path.address, rebound)
        self.assertEqual(p.send(p.server, b"reply")[1], rebound)
        self.assertEqual(p.deliver(p.server, late, CLIENT), b"late")
        self.assertEqual(p.server.path.address, rebound)
        events = p.events(p.server)
        self.assertEqual(events, [PeerMoved(CLIENT, rebound)])

    def test_antiAmplification(self) -> None:
        """
        A path that has not answered gets at most 3x what it sent; once it
        answers the challenge, the bound is lifted.
        """
        p = Pair()
        rebound = ("10.0.0.2", 5555)
        p.clientSends(b"x" * 58, source=rebound)  # a 100-byte datagram
        path = p.server.path
        self.assertFalse(path.validated)
        self.assertEqual(path.received, 100)
        challenge = p.server.datagramsToSend()
        self.assertEqual([a for _, a, _ in challenge], [rebound])
        sent = 0
        for _ in range(20):
            out = p.server.sendApp(b"y" * 58, p.now)
            if out is not None:
                sent += len(out[0])
        self.assertEqual(path.sent, sent + len(challenge[0][0]))
        self.assertLessEqual(path.sent, AMPLIFICATION * path.received)
        self.assertEqual(sent, 200)  # the challenge (50) and two 100s fit in 300
        self.assertGreater(p.server.stats["amplificationDrops"], 0)
        # The client answers the challenge from its new address.
        p.deliver(p.client, challenge[0][0], SERVER)
        p.flushControl(clientAddress=rebound)
        self.assertTrue(path.validated)
        self.assertIn(PathValidated(rebound), p.events(p.server))
        for _ in range(20):
            self.assertIsNotNone(p.server.sendApp(b"y" * 58, p.now))

    def test_challengeRetried(self) -> None:
        """
        An unanswered challenge is sent again after the probe timeout, at
        most three times in all.
        """
        p = Pair()
        p.clientSends(b"x" * 200, source=("10.0.0.2", 5555))
        p.server.datagramsToSend()
        challenges = 1
        for _ in range(10):
            timer = p.server.nextTimer()
            assert timer is not None
            p.now = timer
            p.server.handleTimer(p.now)
            if p.now > 40:
                break
            challenges += sum(1 for _ in p.server.datagramsToSend())
        self.assertEqual(challenges, 3)

    def test_idleKeepalive(self) -> None:
        """
        An idle session: the client sends one keepalive per 25 s, the
        server none of its own; the session stays up.
        """
        p = Pair()
        sent = {"client": 0, "server": 0}
        original = p.client._send, p.server._send

        def counting(side: str, send: Any) -> Any:
            def wrapper(kind: int, *args: Any, **kw: Any) -> Any:
                if kind == _dgram.PING:
                    sent[side] += 1
                return send(kind, *args, **kw)

            return wrapper

        p.client._send = counting("client", original[0])  # type: ignore[method-assign]
        p.server._send = counting("server", original[1])  # type: ignore[method-assign]
        p.advance(100.5, step=1.0)
        self.assertEqual(sent, {"client": 4, "server": 0})
        self.assertFalse(p.client.suspended or p.server.suspended)
        self.assertEqual(p.events(p.client) + p.events(p.server), [])

    def test_silentPathSuspendsAndResumes(self) -> None:
        """
        The client streams, the server's answers stop arriving: the client
        probes every heartbeat, is suspended after the silence limit
        (2 s), probes on the reconnect schedule, and resumes on the first
        authentic datagram.
        """
        p = Pair()
        p.clientSends(b"x")
        start = p.now
        for _ in range(40):
            p.now += 0.1
            p.send(p.client, b"lost")
            p.client.handleTimer(p.now)
            p.client.datagramsToSend()
        self.assertTrue(p.client.suspended)
        events = p.events(p.client)
        self.assertEqual(events, [Suspended("path-dead")])
        p.now += 0.05
        datagram = p.send(p.server, b"back")[0]
        self.assertEqual(p.deliver(p.client, datagram, SERVER), b"back")
        self.assertFalse(p.client.suspended)
        [resumed] = p.events(p.client)
        assert isinstance(resumed, Resumed)
        self.assertAlmostEqual(resumed.downtime, p.now - start - 2.0, delta=0.11)

    def test_expiry(self) -> None:
        """
        Nothing authentic for the session timeout: both ends end it.
        """
        p = Pair(sessionTimeout=30)
        for c in (p.client, p.server):
            c.datagramsToSend()
        for c in (p.client, p.server):
            while c.ended is None:
                timer = c.nextTimer()
                assert timer is not None
                c.handleTimer(timer)
                c.datagramsToSend()
            self.assertEqual(c.ended.how, "expired")
            self.assertAlmostEqual(c.heardAt + 30, 30)
            self.assertIsNone(c.nextTimer())

    def test_rateBound(self) -> None:
        """
        The token bucket: a burst, then the rate.
        """
        p = Pair(sendRate=10000, sendBurst=1000)
        accepted = sum(1 for _ in range(20) if p.client.sendApp(b"x" * 58, p.now) is not None)
        self.assertEqual(accepted, 10)
        self.assertEqual(p.client.stats["rateDrops"], 10)
        p.now += 0.05  # 500 bytes more
        accepted = sum(1 for _ in range(20) if p.client.sendApp(b"x" * 58, p.now) is not None)
        self.assertEqual(accepted, 5)

    def test_close(self) -> None:
        """
        A close reaches the peer, which ends too; nothing more is accepted.
        """
        p = Pair()
        p.client.close("bye", p.now)
        [(datagram, _, _)] = p.client.datagramsToSend()
        p.deliver(p.server, datagram, CLIENT)
        self.assertEqual(p.server.ended, Ended("peer-closed", "bye"))
        self.assertEqual(p.client.ended, Ended("closed", "bye"))
        self.assertIsNone(p.server.nextTimer())

    def test_connectivityEvent(self) -> None:
        """
        A connectivity event makes the client ping at once, from wherever
        it now is, and the server follows; without an answer within the
        probe timeout the client is suspended.
        """
        p = Pair()
        p.client.connectivityChanged(p.now)
        [(ping, _, _)] = p.client.datagramsToSend()
        moved = ("10.0.9.9", 4000)
        p.deliver(p.server, ping, moved)
        self.assertEqual(p.server.path.address, moved)
        p.flushControl(clientAddress=moved)
        self.assertIsNotNone(p.client.srtt)
        p.client.connectivityChanged(p.now)
        p.client.datagramsToSend()
        p.now += 1.0
        p.client.handleTimer(p.now)
        self.assertTrue(p.client.suspended)

    def test_advertisementMovesClient(self) -> None:
        """
        The server advertises a new preferred address: the client
        challenges it, and moves there when the answer arrives from it.
        """
        p = Pair()
        newServer = ("10.0.0.7", 7001)
        p.server.advertise(["10.0.0.7:7001", "10.0.0.1:7001"], 0, p.now)
        [(advert, _, _)] = p.server.datagramsToSend()
        p.deliver(p.client, advert, SERVER)
        self.assertIn(
            AddressesAdvertised(1, 0, ("10.0.0.7:7001", "10.0.0.1:7001")), p.events(p.client)
        )
        [(challenge, address, _)] = p.client.datagramsToSend()
        self.assertEqual(address, newServer)
        p.deliver(p.server, challenge, CLIENT)
        [(response, _, _)] = p.server.datagramsToSend()
        p.deliver(p.client, response, newServer)
        self.assertEqual(p.client.path.address, newServer)
        self.assertTrue(p.client.path.validated)
        # A replayed older advertisement is ignored.
        p.deliver(p.client, advert, SERVER)
        self.assertEqual(p.client.datagramsToSend(), [])

    def test_unreachableAdvertisement(self) -> None:
        """
        An advertised address that does not answer (a private address
        behind NAT) costs a probe and moves nothing: the path in use stays.
        An advertisement listing the address in use first probes nothing.
        """
        p = Pair()
        p.server.advertise(["10.99.0.2:7001"], 0, p.now)
        [(advert, _, _)] = p.server.datagramsToSend()
        p.deliver(p.client, advert, SERVER)
        [(probe, address, _)] = p.client.datagramsToSend()
        self.assertEqual(address, ("10.99.0.2", 7001))
        p.now += 5
        p.client.handleTimer(p.now)
        p.client.datagramsToSend()
        self.assertEqual(p.client.path.address, SERVER)
        self.assertEqual(p.clientSends(b"still"), b"still")
        p.server.advertise(["10.0.0.1:7001", "10.99.0.2:7001"], 0, p.now)
        [(advert, _, _)] = p.server.datagramsToSend()
        p.deliver(p.client, advert, SERVER)
        self.assertEqual(p.client.datagramsToSend(), [])

    def test_refusedMove(self) -> None:
        """
        A policy that refuses moves: an authentic datagram from a new host is
        dropped, and the peer stays.
        """
        p = Pair()
        p.server._acceptMove = lambda old, new: old[0] == new[0]  # type: ignore[assignment]
        self.assertIsNone(p.clientSends(b"x", source=("10.9.9.9", 4000)))
        self.assertEqual(p.server.path.address, CLIENT)
        self.assertEqual(p.clientSends(b"y", source=("10.0.0.2", 4001)), b"y")


class ResumeHandshakeTests(SynchronousTestCase):
    """
    Resuming over datagrams: the stream handshake's RESUME proof, decided
    by the driver.
    """

    def setUp(self) -> None:
        self.sid, self.key = openSession()
        self.responder = HandshakeResponder(16, 10.0)

    def ask(self, attempt: ClientResuming, now: float = 0.0) -> Any:
        """
        Send the attempt's INIT and RESUME; return the responder's answer
        to the RESUME, and the RESUME.
        """
        hello = self.responder.receive(attempt.first(), now)
        assert hello.reply is not None
        resume = attempt.receive(hello.reply, now)
        assert resume is not None
        self.assertEqual(len(resume), _dgram.HANDSHAKE_PAD)
        return self.responder.receive(resume, now), resume

    def test_accepted(self) -> None:
        """
        A resume with the key and a higher generation verifies; the answer
        verifies at the client; a repeat of the request gets the same
        answer without asking the driver again; answers are smaller than
        requests.
        """
        attempt = ClientResuming(0, 5, self.sid, self.key, 1)
        answer, resume = self.ask(attempt)
        self.assertIsNone(answer.reply)
        ask = answer.resume
        self.assertEqual((ask.request.sessionID, ask.request.generation), (self.sid, 1))
        # While the driver decides, a repeat is ignored.
        self.assertIsNone(self.responder.receive(resume, 0).reply)
        self.responder.verifyResume(ask, self.key, 0)
        reply = self.responder.acceptResume(ask, self.key)
        self.assertLess(len(reply), _dgram.HANDSHAKE_PAD)
        repeat = self.responder.receive(resume, 0)
        self.assertEqual((repeat.reply, repeat.resume), (reply, None))
        self.assertFalse(attempt.accepted)
        self.assertIsNone(attempt.receive(reply, 0))
        self.assertTrue(attempt.accepted)
        self.assertIsNone(attempt.nextTimer())

    def test_staleAndBadProof(self) -> None:
        """
        A generation not above the last, or a proof made with another key,
        fails verification; the refusal reaches the client as a
        L{HandshakeFailed} with its code.
        """
        for key, generation, last, code in [
            (self.key, 3, 3, _wire.REJECT_STALE),
            (self.key, 2, 3, _wire.REJECT_STALE),
            (b"K" * 32, 4, 3, _wire.REJECT_BAD_PROOF),
        ]:
            attempt = ClientResuming(0, 5, self.sid, key, generation)
            answer, _ = self.ask(attempt)
            with self.assertRaises(HandshakeFailed) as caught:
                self.responder.verifyResume(answer.resume, self.key, last)
            self.assertEqual(caught.exception.code, code)
            reject = self.responder.refuseResume(answer.resume, caught.exception)
            with self.assertRaises(HandshakeFailed) as told:
                attempt.receive(reject, 0)
            self.assertEqual(told.exception.code, code)
            self.assertNotIn(attempt.hid, self.responder.pending)

    def test_forgedAccept(self) -> None:
        """
        A RESUME_ACCEPT whose proof was not made with the key is refused by
        the client.
        """
        attempt = ClientResuming(0, 5, self.sid, self.key, 1)
        answer, _ = self.ask(attempt)
        forged = self.responder.acceptResume(answer.resume, b"K" * 32)
        with self.assertRaises(HandshakeFailed) as caught:
            attempt.receive(forged, 0)
        self.assertEqual(caught.exception.code, _wire.REJECT_BAD_PROOF)
        self.assertFalse(attempt.accepted)

    def test_reconsidered(self) -> None:
        """
        A request left unanswered (its session being read back) is decided
        afresh when it comes again.
        """
        attempt = ClientResuming(0, 5, self.sid, self.key, 1)
        answer, resume = self.ask(attempt)
        self.responder.reconsider(answer.resume)
        again = self.responder.receive(resume, 0.5)
        self.assertIsNotNone(again.resume)

    def test_noResumeAfterOpening(self) -> None:
        """
        One handshake id opens or resumes, not both.
        """
        opening = ClientOpening(0, 5)
        hello = self.responder.receive(opening.first(), 0)
        assert hello.reply is not None
        self.responder.receive(opening.receive(hello.reply, 0) or b"", 0)
        attempt = ClientResuming(0, 5, self.sid, self.key, 1)
        attempt.hid = opening.hid
        attempt._last = _dgram.encodeHandshake(attempt.hid, _dgram.encodeInit(), True)
        resume = attempt.receive(hello.reply, 0)
        assert resume is not None
        answer = self.responder.receive(resume, 0)
        self.assertIsNone(answer.resume)
        _, frameType, _ = _dgram.decodeHandshake(answer.reply)
        self.assertEqual(frameType, _wire.REJECT)


class RekeyTests(SynchronousTestCase):
    """
    New generations and checkpoints of the sans-IO connection.
    """

    def test_rekey(self) -> None:
        """
        After both ends change to generation 1: packet numbers restart at
        0 under new keys, a packet of generation 0 is refused and changes
        nothing, and datagrams flow.
        """
        pair = Pair()
        pair.clientSends(b"one")
        old, _, _ = pair.send(pair.client, b"old")
        pair.client.rekey(1, pair.now)
        pair.server.rekey(1, pair.now, CLIENT, "10.0.0.1")
        self.assertEqual((pair.client._sealer.nextPN, pair.server._sealer.nextPN), (0, 0))
        window = (pair.server._opener.window.highest, pair.server._opener.window.bits)
        self.assertIsNone(pair.deliver(pair.server, old, CLIENT))
        self.assertEqual((pair.server._opener.window.highest, pair.server._opener.window.bits), window)
        self.assertEqual(pair.clientSends(b"two"), b"two")
        self.assertEqual(pair.server.stats["resumes"], 1)

    def test_rekeyResumesAndMoves(self) -> None:
        """
        A suspended server session accepting a resume from a new address:
        resumed, moved there, the path validated.
        """
        pair = Pair(keepaliveInterval=1.0)
        self.silence(pair.server, pair, 3.0)
        self.assertTrue(pair.server.suspended)
        self.events(pair.server)
        pair.server.rekey(1, pair.now, ("10.0.0.3", 5000))
        events = self.events(pair.server)
        self.assertEqual([type(e) for e in events], [PeerMoved, Resumed])
        self.assertFalse(pair.server.suspended)
        self.assertTrue(pair.server.path.validated)

    def events(self, connection: DatagramConnection) -> list[Any]:
        return Pair.events(connection)

    @staticmethod
    def silence(connection: DatagramConnection, pair: Pair, seconds: float) -> None:
        """
        Run C{connection}'s timers for C{seconds}, hearing nothing; what it
        sends is lost.
        """
        end = pair.now + seconds
        while pair.now < end:
            timer = connection.nextTimer()
            pair.now = min(end, max(pair.now + 0.01, timer if timer is not None else end))
            connection.handleTimer(pair.now)
            connection.datagramsToSend()

    def test_checkpointRoundTrip(self) -> None:
        """
        A checkpoint encodes and decodes; anything else is refused.
        """
        pair = Pair()
        pair.clientSends(b"x")
        checkpoint = pair.server.checkpoint(pair.now)
        self.assertEqual(decodeCheckpoint(encodeCheckpoint(checkpoint)), checkpoint)
        for bad in (b"", b"stream buffer", encodeCheckpoint(checkpoint)[:-3],
                    encodeCheckpoint(checkpoint).replace(b'"nextPN": 0', b'"nextPN": -1')):
            self.assertRaises(ValueError, decodeCheckpoint, bad)

    def test_checkpointFreezes(self) -> None:
        """
        A checkpointed connection sends, receives and schedules nothing.
        """
        pair = Pair()
        datagram, _, _ = pair.send(pair.client, b"late")
        checkpoint = pair.server.checkpoint(pair.now)
        pair.server.ping(pair.now)
        self.assertEqual(pair.server.datagramsToSend(), [])
        self.assertIsNone(pair.deliver(pair.server, datagram, CLIENT))
        self.assertIsNone(pair.server.nextTimer())
        self.assertEqual(checkpoint.highest, -1)

    def test_restore(self) -> None:
        """
        Restored from its checkpoint (under the same keys), a connection
        sends from past the checkpoint's next packet number (plus the
        margin), refuses every packet number up to the checkpoint's highest
        (replays) and takes newer ones, starts suspended and resumes on the
        first authentic datagram.
        """
        pair = Pair()
        for i in range(3):
            pair.clientSends(b"%d" % i)
            pair.send(pair.server, b"answer")
        replay, _, _ = pair.send(pair.client, b"seen")
        pair.deliver(pair.server, replay, CLIENT)
        checkpoint = pair.server.checkpoint(pair.now)
        self.assertEqual((checkpoint.nextPN, checkpoint.highest), (3, 3))
        restored = DatagramConnection.restore(
            pair.sid, pair.key, 0, checkpoint, pair.now, pair.policy, 1e9, 1e9
        )
        self.assertEqual(restored._sealer.nextPN, 3 + _dgram.PN_MARGIN)
        self.assertTrue(restored.suspended)
        self.assertFalse(restored.authentic(replay))
        self.assertIsNone(restored.receive(replay, CLIENT, None, pair.now))
        fresh, _, _ = pair.send(pair.client, b"new")
        self.assertTrue(restored.authentic(fresh))
        self.assertEqual(restored.receive(fresh, CLIENT, None, pair.now), b"new")
        self.assertEqual([type(e) for e in Pair.events(restored)], [Resumed])
        self.assertEqual(restored.stats["received"], 5)
        out = restored.sendApp(b"after", pair.now)
        assert out is not None
        self.assertEqual(pair.deliver(pair.client, out[0], SERVER), b"after")

    def test_hibernateDue(self) -> None:
        """
        A server session that may hibernate says so once, C{suspendAfter}
        after it was suspended; a session that may not never does.
        """
        pair = Pair(keepaliveInterval=1.0, suspendAfter=5.0)
        pair.server.canHibernate = True
        pair.client.canHibernate = True
        self.silence(pair.server, pair, 2.5)
        self.assertTrue(pair.server.suspended)
        self.silence(pair.server, pair, 4.0)
        self.assertNotIn(HibernateDue(), Pair.events(pair.server))
        self.silence(pair.server, pair, 1.0)
        self.assertEqual(Pair.events(pair.server).count(HibernateDue()), 1)
        self.silence(pair.server, pair, 10.0)
        self.assertNotIn(HibernateDue(), Pair.events(pair.server))
        self.silence(pair.client, pair, 20.0)
        self.assertNotIn(HibernateDue(), Pair.events(pair.client))


class MutationTests(SynchronousTestCase):
    """
    Hypothesis: mutated, truncated, extended, replayed and forged packets.
    """

    @fuzz(300)
    @given(
        st.binary(max_size=100),
        st.lists(st.tuples(st.integers(0, 200), st.integers(1, 255)), min_size=1, max_size=4),
        st.one_of(st.none(), st.integers(0, 200)),
        st.binary(max_size=20),
        st.booleans(),
    )
    def test_mutationsChangeNothing(
        self,
        payload: bytes,
        flips: list[tuple[int, int]],
        cut: Optional[int],
        extra: bytes,
        elsewhere: bool,
    ) -> None:
        """
        Any mutation of a genuine packet (bytes flipped, cut short,
        extended), from the peer's address or another, is refused: the
        server's state is exactly what it was, and nothing is delivered.
        """
        p = Pair()
        p.clientSends(b"warm up")
        genuine = p.send(p.client, payload)[0]
        datagram = bytearray(genuine)
        for offset, mask in flips:
            datagram[offset % len(datagram)] ^= mask
        mutated = bytes(datagram)
        if cut is not None:
            mutated = mutated[: cut % len(mutated)]
        mutated += extra
        assume(mutated != genuine)
        before = state(p.server)
        source = ("6.6.6.6", 666) if elsewhere else CLIENT
        self.assertIsNone(p.deliver(p.server, mutated, source))
        self.assertEqual(state(p.server), before)

    @fuzz(150)
    @given(st.lists(st.tuples(st.integers(0, 30), st.booleans()), max_size=60))
    def test_replaysAndReorders(self, schedule: list[tuple[int, bool]]) -> None:
        """
        Genuine packets delivered in any order, any number of times, from
        either of two addresses: each payload is delivered at most once;
        the peer address is that of the highest packet number delivered.
        """
        p = Pair()
        packets = [p.send(p.client, b"%d" % i)[0] for i in range(31)]
        delivered: list[bytes] = []
        best = (-1, CLIENT)
        other = ("10.0.0.2", 5555)
        for index, fromOther in schedule:
            source = other if fromOther else CLIENT
            got = p.deliver(p.server, packets[index], source)
            if got is not None:
                delivered.append(got)
                if index > best[0]:
                    best = (index, source)
        self.assertEqual(sorted(delivered), sorted(set(delivered)))
        self.assertEqual(set(delivered), {b"%d" % i for i, _ in schedule})
        self.assertEqual(p.server.path.address, best[1])
