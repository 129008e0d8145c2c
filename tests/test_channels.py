# -*- test-case-name: tests.test_channels -*-
"""
Channels: more byte streams in one session, each with its own transport
and flow control, surviving carrier cuts with the session.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.error import ConnectionAborted, ConnectionDone
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from migrate._sansio import wire as _wire
from migrate._options import SessionOptions
from migrate.errors import ChannelRefused, PeerAborted

from .helpers import Echo, Pair, Recorder


def _opened(d: Any) -> Any:
    results: list[Any] = []
    d.addBoth(results.append)
    return results


class ChannelTestsBase(SynchronousTestCase):
    def pair(self, **kw: Any) -> Pair:
        p = Pair(**kw).open()
        self.addCleanup(self._closeDown, p)
        return p

    def _closeDown(self, p: Pair) -> None:
        for proto in [p.client, p.server]:
            if proto.transport is not None and proto.transport.state != "closed":
                proto.transport.abortConnection()
        p.settle(1)

    def openChannel(self, p: Pair, protocol: type[Protocol] = Recorder, name: str = "") -> Any:
        results = _opened(p.client.transport.openChannel(Factory.forProtocol(protocol), name))
        p.settle(0.01)
        self.assertEqual(len(results), 1, results)
        if isinstance(results[0], Failure):
            results[0].raiseException()
        return results[0]


class OpeningTests(ChannelTestsBase):
    """
    Opening channels from either side.
    """

    def test_clientOpens(self) -> None:
        """
        A channel opened by the client is built on the server by the
        server's factory (the name C{""}), and carries bytes both ways,
        apart from channel 0.
        """
        p = self.pair()
        proto = self.openChannel(p)
        self.assertEqual(len(p.servers), 2)
        serverSide = p.servers[1]
        self.assertEqual(proto.made, 1)
        self.assertEqual(serverSide.made, 1)
        self.assertEqual(proto.transport.channel, 1)
        self.assertEqual(serverSide.transport.channel, 1)
        self.assertEqual(proto.transport.sessionID, p.client.transport.sessionID)
        proto.transport.write(b"on channel one")
        p.client.transport.write(b"on channel zero")
        serverSide.transport.write(b"back on one")
        p.settle(0.1)
        self.assertEqual(serverSide.received, b"on channel one")
        self.assertEqual(p.server.received, b"on channel zero")
        self.assertEqual(proto.received, b"back on one")
        self.assertEqual(p.client.received, b"")

    def test_serverOpens(self) -> None:
        """
        The server may open a channel too; the client builds it with the
        factory its session was connected with, and numbers are even.
        """
        p = self.pair()
        results = _opened(p.server.transport.openChannel(Factory.forProtocol(Recorder)))
        p.settle(0.01)
        proto = results[0]
        self.assertEqual(proto.transport.channel, 2)
        proto.transport.write(b"from the server")
        p.settle(0.1)
        # The client's factory is Recorder: its second instance is the channel.
        clientSide = p.clientSession.channels.sessions()[0].app
        self.assertEqual(clientSide.received, b"from the server")

    def test_unknownNameRefused(self) -> None:
        """
        A name the peer has no factory for is refused, with its reason, and
        nothing is left open.
        """
        p = self.pair()
        results = _opened(p.client.transport.openChannel(Factory.forProtocol(Recorder), "nope"))
        p.settle(0.01)
        self.assertIsInstance(results[0], Failure)
        results[0].trap(ChannelRefused)
        self.assertIn("nope", results[0].value.reason)
        self.assertEqual(len(p.clientSession.channels), 0)
        self.assertEqual(len(p.serverSession.channels), 0)

    def test_namedFactories(self) -> None:
        """
        A server's C{channels} mapping says what each name builds.
        """
        p = Pair()
        built: list[Recorder] = []

        def control() -> Recorder:
            r = Echo()
            built.append(r)
            return r

        p.factory.channelFactories = {"control": Factory.forProtocol(control)}
        p.open()
        self.addCleanup(self._closeDown, p)
        proto = self.openChannel(p, name="control")
        proto.transport.write(b"ping")
        p.settle(0.1)
        self.assertEqual(proto.received, b"ping")
        self.assertEqual(len(built), 1)
        # "" is not in the mapping: refused.
        results = _opened(p.client.transport.openChannel(Factory.forProtocol(Recorder)))
        p.settle(0.01)
        results[0].trap(ChannelRefused)

    def test_limit(self) -> None:
        """
        Past C{maxChannels} open channels, the peer refuses more, and this
        side refuses to ask.
        """
        p = self.pair(options=SessionOptions(maxChannels=2))
        self.openChannel(p)
        self.openChannel(p)
        results = _opened(p.client.transport.openChannel(Factory.forProtocol(Recorder)))
        results[0].trap(ChannelRefused)
        self.assertIn("limit", results[0].value.reason)

    def test_longName(self) -> None:
        """
        A name longer than the wire allows is a C{ValueError} at once.
        """
        p = self.pair()
        self.assertRaises(
            ValueError,
            p.client.transport.openChannel,
            Factory.forProtocol(Recorder),
            "x" * (_wire.MAX_CHANNEL_NAME + 1),
        )

    def test_openWhileDetached(self) -> None:
        """
        A channel opened while detached is asked for on the next carrier.
        """
        p = self.pair()
        p.net.cutAll()
        results = _opened(p.client.transport.openChannel(Factory.forProtocol(Recorder)))
        self.assertEqual(results, [])
        p.settle(2)
        self.assertEqual(len(results), 1)
        self.assertEqual(results[0].transport.channel, 1)

    def test_openLostInCut(self) -> None:
        """
        The opening frame lost with its carrier: the next carrier asks
        again, and exactly one channel exists on each side.
        """
        p = self.pair()
        results = _opened(p.client.transport.openChannel(Factory.forProtocol(Recorder)))
        p.net.cutAll()
        p.settle(2)
        self.assertEqual(len(results), 1, results)
        proto = results[0]
        self.assertEqual(len(p.servers), 2)
        proto.transport.write(b"x")
        p.settle(0.2)
        self.assertEqual(p.servers[1].received, b"x")

    def test_answerLostInCut(self) -> None:
        """
        The peer opened the channel but its answer was lost: the resume
        position answers instead, and no second channel is built.
        """
        p = self.pair()
        results = _opened(p.client.transport.openChannel(Factory.forProtocol(Recorder)))
        # Deliver the opening to the server, then cut before the answer
        # reaches the client.
        p.clock.advance(0)
        (link,) = p.net.links
        link.server.protocol.dataReceived(link.client._take())
        self.assertEqual(len(p.servers), 2)
        self.assertEqual(results, [])
        p.net.cutAll()
        p.settle(2)
        self.assertEqual(len(results), 1, results)
        self.assertEqual(len(p.servers), 2)
        results[0].transport.write(b"y")
        p.settle(0.2)
        self.assertEqual(p.servers[1].received, b"y")


class StreamTests(ChannelTestsBase):
    """
    Each channel is a stream of its own.
    """

    def test_survivesCuts(self) -> None:
        """
        Bytes written on channels through carrier cuts arrive exactly once,
        in order, on each channel.
        """
        p = self.pair()
        protos = [self.openChannel(p) for _ in range(5)]
        expected = [b"" for _ in protos]
        for round in range(10):
            for i, proto in enumerate(protos):
                chunk = (b"%d:%d;" % (i, round)) * (50 * (i + 1))
                proto.transport.write(chunk)
                expected[i] += chunk
            p.net.pump()
            p.net.cutAll()
            p.settle(1)
        p.settle(2)
        for i, proto in enumerate(protos):
            self.assertEqual(p.servers[i + 1].received, expected[i])
        self.assertEqual(p.clientSession.handoffs, 10)
        self.assertEqual(p.clientSession.channels.sessions()[0].handoffs, 10)

    def test_resumeOvertakesLoss(self) -> None:
        """
        A resume that reaches the server before it noticed its old carrier
        was dead (a silently dead path) replaces it: the channels resume on
        the new carrier, nothing of the old one speaks on it, and every
        byte arrives.
        """
        p = self.pair()
        proto = self.openChannel(p)
        serverSide = p.servers[1]
        proto.transport.write(b"before;")
        p.settle(0.1)
        (link,) = p.net.links
        link.blackholed = True
        proto.transport.write(b"during;")
        # (The server has nothing outstanding: it does not notice.)
        p.settle(10)
        self.assertEqual(p.serverSession.handoffs, 1)
        proto.transport.write(b"after")
        serverSide.transport.write(b"back after")
        p.settle(0.5)
        self.assertEqual(serverSide.received, b"before;during;after")
        self.assertEqual(proto.received, b"back after")
        self.assertEqual(proto.lost, [])
        self.assertEqual(serverSide.lost, [])

    def test_closeChannel(self) -> None:
        """
        Closing a channel ends that channel only: both its protocols hear
        C{ConnectionDone}, the session and channel 0 carry on.
        """
        p = self.pair()
        proto = self.openChannel(p)
        serverSide = p.servers[1]
        proto.transport.write(b"last words")
        proto.transport.loseConnection()
        p.settle(1)
        self.assertEqual(serverSide.received, b"last words")
        self.assertEqual(len(proto.lost), 1)
        proto.lost[0].trap(ConnectionDone)
        self.assertEqual(len(serverSide.lost), 1)
        serverSide.lost[0].trap(ConnectionDone)
        self.assertEqual(len(p.clientSession.channels), 0)
        self.assertEqual(len(p.serverSession.channels), 0)
        p.client.transport.write(b"still here")
        p.settle(0.1)
        self.assertEqual(p.server.received, b"still here")
        self.assertEqual(p.client.lost, [])

    def test_abortChannel(self) -> None:
        """
        Aborting a channel aborts it alone: the peer's channel hears
        L{PeerAborted}.
        """
        p = self.pair()
        proto = self.openChannel(p)
        serverSide = p.servers[1]
        proto.transport.abortConnection()
        p.settle(1)
        proto.lost[0].trap(ConnectionAborted)
        serverSide.lost[0].trap(PeerAborted)
        self.assertEqual(p.client.lost, [])
        self.assertEqual(p.server.lost, [])

    def test_closeChannelZeroKeepsSession(self) -> None:
        """
        Closing channel 0 closes that stream only while other channels are
        open; the session ends cleanly when the last one closes.
        """
        p = self.pair()
        proto = self.openChannel(p)
        serverSide = p.servers[1]
        p.client.transport.loseConnection()
        p.settle(1)
        p.client.lost[0].trap(ConnectionDone)
        p.server.lost[0].trap(ConnectionDone)
        self.assertFalse(p.clientSession.ended)
        proto.transport.write(b"after zero closed")
        p.settle(0.1)
        self.assertEqual(serverSide.received, b"after zero closed")
        proto.transport.loseConnection()
        p.settle(1)
        self.assertTrue(p.clientSession.ended)
        self.assertTrue(p.serverSession.ended)
        self.assertIsInstance(p.clientSession.endReason, ConnectionDone)

    def test_abortChannelZeroEndsSession(self) -> None:
        """
        Aborting channel 0 aborts the session, every channel with it.
        """
        p = self.pair()
        proto = self.openChannel(p)
        serverSide = p.servers[1]
        p.client.transport.abortConnection()
        p.settle(1)
        self.assertEqual(len(proto.lost), 1)
        self.assertEqual(len(serverSide.lost), 1)
        self.assertTrue(p.serverSession.ended)

    def test_pausedChannelDoesNotStopOthers(self) -> None:
        """
        A channel whose reader paused holds at most its window; the others
        keep flowing, and it gets everything once resumed.
        """
        p = self.pair()
        slow = self.openChannel(p)
        fast = self.openChannel(p)
        slowServer, fastServer = p.servers[1], p.servers[2]
        slow.transport.pauseProducing()
        window = p.options.channelWindow
        big = b"s" * (window * 4)
        slowServer.transport.write(big)
        for i in range(20):
            fastServer.transport.write(b"f" * 10000)
            p.settle(0.01)
        self.assertEqual(fast.received, b"f" * 200000)
        self.assertEqual(slow.received, b"")
        table = p.clientSession.channels
        self.assertLessEqual(table.held(), window + 1024)
        slow.transport.resumeProducing()
        p.settle(1)
        self.assertEqual(slow.received, big)

    def test_halfClose(self) -> None:
        """
        A channel half-closes as a session does.
        """
        from twisted.internet.interfaces import IHalfCloseableProtocol
        from zope.interface import implementer

        @implementer(IHalfCloseableProtocol)
        class Half(Recorder):
            readLost = 0

            def readConnectionLost(self) -> None:
                self.readLost += 1
                self.transport.write(b"reply after your FIN")
                self.transport.loseConnection()

            def writeConnectionLost(self) -> None:
                pass

        p = Pair()
        halves: list[Half] = []
        p.factory.channelFactories = {"": Factory.forProtocol(lambda: halves.append(Half()) or halves[-1])}
        p.open()
        self.addCleanup(self._closeDown, p)
        proto = self.openChannel(p, Half)
        proto.transport.write(b"request")
        proto.transport.loseWriteConnection()
        p.settle(1)
        self.assertEqual(halves[0].received, b"request")
        self.assertEqual(halves[0].readLost, 1)
        self.assertEqual(proto.received, b"reply after your FIN")


class SessionEndTests(ChannelTestsBase):
    def test_expiryEndsChannels(self) -> None:
        """
        A session that expires takes its channels with it, and a pending
        opening fails.
        """
        p = self.pair(options=SessionOptions(sessionTimeout=5))
        proto = self.openChannel(p)
        p.endpoint._connectors[0]._stop()
        p.net.cutAll()
        pending = _opened(p.client.transport.openChannel(Factory.forProtocol(Recorder)))
        p.settle(10, step=0.5)
        self.assertEqual(len(proto.lost), 1)
        self.assertEqual(len(pending), 1)
        pending[0].trap(ChannelRefused)


class InterfaceTests(ChannelTestsBase):
    def test_providesIMigrateTransport(self) -> None:
        """
        A channel's transport provides L{IMigrateTransport} fully, as the
        first stream's does.
        """
        from zope.interface.verify import verifyObject

        from migrate.interfaces import IMigrateTransport

        p = self.pair()
        proto = self.openChannel(p)
        self.assertTrue(verifyObject(IMigrateTransport, proto.transport))
        self.assertTrue(verifyObject(IMigrateTransport, p.client.transport))
        self.assertEqual(p.client.transport.channel, 0)

    def test_channelRequestedRefuses(self) -> None:
        """
        An application whose C{channelRequested} upcall answers C{False}
        refuses the channel; the opener's Deferred fails with
        L{ChannelRefused}.
        """
        from zope.interface import implementer

        from migrate.interfaces import IMigrateUpcalls

        asked: list[str] = []

        @implementer(IMigrateUpcalls)
        class Picky(Recorder):
            def channelRequested(self, session: Any, name: str) -> bool:
                asked.append(name)
                return False

        p = self.pair(serverProtocol=Picky)
        results = _opened(p.client.transport.openChannel(Factory.forProtocol(Recorder)))
        p.settle(0.01)
        results[0].trap(ChannelRefused)
        self.assertEqual(asked, [""])
        self.assertEqual(len(p.servers), 1)

    def test_snapshot(self) -> None:
        """
        The session's snapshot lists its channels with their own byte
        counts and handoffs; a channel's snapshot names its channel.
        """
        p = self.pair()
        proto = self.openChannel(p)
        proto.transport.write(b"12345")
        p.settle(0.1)
        p.net.cutAll()
        p.settle(2)
        snap = p.client.transport.snapshot()
        self.assertEqual(snap["channel"], 0)
        self.assertEqual(snap["channelsOpened"], 1)
        (channel,) = snap["channels"]
        self.assertEqual(channel["channel"], 1)
        self.assertEqual(channel["bytesSent"], 5)
        self.assertEqual(channel["handoffs"], 1)
        own = proto.transport.snapshot()
        self.assertEqual(own["channel"], 1)
        self.assertEqual(own["id"], p.client.transport.sessionID)

    def test_snapshotNamesFollowChannels(self) -> None:
        """
        The channel names a snapshot shows (built once for all the channels
        of a snapshot, not once per channel) follow channels that open and
        close between snapshots.
        """
        p = Pair()
        p.factory.channelFactories = {"a": Factory.forProtocol(Recorder), "b": Factory.forProtocol(Recorder)}
        p.open()
        self.addCleanup(self._closeDown, p)
        first = self.openChannel(p, name="a")

        def names() -> list[tuple[int, str]]:
            snap = p.client.transport.snapshot()
            return [(c["channel"], c["name"]) for c in snap["channels"]]

        self.assertEqual(names(), [(1, "a")])
        self.openChannel(p, name="b")
        self.assertEqual(names(), [(1, "a"), (3, "b")])
        first.transport.abortConnection()
        p.settle(1)
        self.assertEqual(names(), [(3, "b")])


class FairnessTests(ChannelTestsBase):
    def test_fullCarrierRotates(self) -> None:
        """
        When the session's carrier drains, the channels' producers are
        resumed in turn, starting with a different one each time; once one
        fills the carrier again, the others are not resumed into a full
        carrier (they stay paused until the next drain).  So a channel
        whose write always refills the carrier does not get one write per
        cycle while the others get many.
        """
        from twisted.internet.interfaces import IPushProducer
        from zope.interface import implementer

        p = self.pair()
        protos = [self.openChannel(p) for _ in range(4)]
        root = p.clientSession
        resumed: list[int] = []

        @implementer(IPushProducer)
        class Filler:
            def __init__(self, index: int) -> None:
                self.index = index
                self.paused = False

            def pauseProducing(self) -> None:
                self.paused = True

            def resumeProducing(self) -> None:
                self.paused = False
                resumed.append(self.index)
                # This write fills the carrier: the session is paused.
                root.pauseProducing()

            def stopProducing(self) -> None:
                pass

        fillers = [Filler(i) for i in range(4)]
        for proto, filler in zip(protos, fillers):
            proto.transport.registerProducer(filler, True)
        root.pauseProducing()
        for _ in range(8):
            root.resumeProducing()
        # One resumed per drain (the carrier was full again at once), each
        # in turn.
        self.assertEqual(sorted(resumed), [0, 0, 1, 1, 2, 2, 3, 3])
        self.assertTrue(all(f.paused for f in fillers))


class ChannelZeroPausedTests(ChannelTestsBase):
    def test_pausedFirstStreamHolds(self) -> None:
        """
        In a session with channels, the first stream's paused reader does
        not stop the carrier: the other channels flow, its bytes are held
        (through a cut too: what was held comes again), and delivered in
        order, FIN included, once it resumes.
        """
        p = self.pair()
        proto = self.openChannel(p)
        serverSide = p.servers[1]
        p.client.transport.pauseProducing()
        p.server.transport.write(b"zero;")
        serverSide.transport.write(b"one;")
        p.settle(0.5)
        self.assertEqual(proto.received, b"one;")
        self.assertEqual(p.client.received, b"")
        p.net.cutAll()
        p.settle(2)
        p.server.transport.write(b"more")
        p.server.transport.loseConnection()
        serverSide.transport.write(b"two")
        p.settle(0.5)
        self.assertEqual(proto.received, b"one;two")
        self.assertEqual(p.client.received, b"")
        self.assertEqual(p.client.lost, [])
        p.client.transport.resumeProducing()
        p.settle(0.5)
        self.assertEqual(p.client.received, b"zero;more")
        p.client.lost[0].trap(ConnectionDone)

    def test_pausedFirstStreamWindowed(self) -> None:
        """
        The first stream of a session with channels has a window of its
        own: past C{channelWindow} bytes the writer holds back, so its
        paused reader holds at most one window, the carrier is never paused
        and the other channels keep flowing; once it reads again,
        everything arrives in order.
        """
        p = self.pair()
        proto = self.openChannel(p)
        serverSide = p.servers[1]
        window = p.options.channelWindow
        p.client.transport.pauseProducing()
        big = bytes(range(256)) * (window // 32)
        p.server.transport.write(big)
        p.settle(1)
        session = p.clientSession
        self.assertLessEqual(session._heldBytes, window)
        self.assertFalse(session._heldPausedCarrier)
        other = b"x" * (4 * window)
        serverSide.transport.write(other)
        p.settle(2)
        self.assertEqual(proto.received, other)
        self.assertLessEqual(session._heldBytes, window)
        self.assertEqual(p.client.received, b"")
        p.client.transport.resumeProducing()
        p.settle(2)
        self.assertEqual(p.client.received, big)

    def test_windowThroughCuts(self) -> None:
        """
        The first stream's window holds on every carrier: after a cut the
        writer resends only up to the last grant while the reader stays
        paused; the FIN waits behind the data; all of it, then the end,
        arrive once the reader reads.
        """
        p = self.pair()
        proto = self.openChannel(p)
        window = p.options.channelWindow
        p.client.transport.pauseProducing()
        big = bytes(range(256)) * (window // 32)
        p.server.transport.write(big)
        p.server.transport.loseConnection()
        p.settle(1)
        session = p.clientSession
        for _ in range(2):
            p.net.cutAll()
            p.settle(2)
            self.assertLessEqual(session._heldBytes, window)
            self.assertFalse(session._heldPausedCarrier)
            self.assertEqual(p.client.lost, [])
        p.servers[1].transport.write(b"still")
        p.settle(1)
        self.assertEqual(proto.received, b"still")
        p.client.transport.resumeProducing()
        p.settle(2)
        self.assertEqual(p.client.received, big)
        p.client.lost[0].trap(ConnectionDone)

    def test_sessionWithoutChannelsUnwindowed(self) -> None:
        """
        A session without channels grants no window on its first stream:
        a paused reader pauses the carrier, as on TCP.
        """
        p = self.pair()
        p.client.transport.pauseProducing()
        p.server.transport.write(b"y" * 100000)
        p.settle(1)
        self.assertIsNone(p.clientSession._zero)
        self.assertIsNone(p.serverSession._zero)
        p.client.transport.resumeProducing()
        p.settle(1)
        self.assertEqual(p.client.received, b"y" * 100000)


class LingeringTests(ChannelTestsBase):
    def test_lingerPatientWithFullCarrier(self) -> None:
        """
        A complete client session whose carrier's send buffer is full at
        that moment (bytes of an aborted channel the server no longer
        needs) still waits for the server to close the carrier, rather than
        aborting it (and reconnecting): it ends cleanly without a resume.
        """
        p = self.pair()
        proto = self.openChannel(p)
        p.client.transport.loseConnection()
        p.settle(1)
        session = p.clientSession
        # The carrier's transport is full, as if the aborted channel's
        # bytes were still queued.
        session.pauseProducing()
        proto.transport.abortConnection()
        p.settle(2)
        self.assertTrue(session.ended)
        self.assertIsInstance(session.endReason, ConnectionDone)
        self.assertEqual(session.handoffs, 0)
