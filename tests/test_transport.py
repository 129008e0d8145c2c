"""
The application's transport: the interfaces it claims, and only those.
"""

from __future__ import annotations

from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import (
    IConsumer,
    IPushProducer,
    ISSLTransport,
    ITCPTransport,
    ITransport,
)
from twisted.python import context
from twisted.python.log import ILogContext
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from migrate import IMigrateTransport, PeerAborted

from .helpers import Echo, Pair, Recorder


@implementer(IPushProducer)
class PushProducerStub:
    """
    A streaming producer that records what it is told.
    """

    def __init__(self) -> None:
        self.events: list[str] = []

    def pauseProducing(self) -> None:
        self.events.append("pause")

    def resumeProducing(self) -> None:
        self.events.append("resume")

    def stopProducing(self) -> None:
        self.events.append("stop")


class TransportTests(SynchronousTestCase):
    def test_interfaces(self) -> None:
        """
        The transport provides exactly ITransport, IConsumer, IPushProducer
        and IMigrateTransport, and each is fully implemented.
        """
        pair = Pair().open()
        transport = pair.client.transport
        for iface in (ITransport, IConsumer, IPushProducer, IMigrateTransport):
            self.assertTrue(verifyObject(iface, transport), iface)

    def test_noCarrierInterfaces(self) -> None:
        """
        Interfaces of the carrier (TCP, TLS) are not mirrored.
        """
        pair = Pair().open()
        self.assertFalse(ITCPTransport.providedBy(pair.client.transport))
        self.assertFalse(ISSLTransport.providedBy(pair.client.transport))

    def test_addresses(self) -> None:
        """
        C{getHost} and C{getPeer} give the carrier's addresses, and stay
        valid while detached.
        """
        pair = Pair().open()
        self.assertEqual(pair.client.transport.getPeer(), pair.net.serverAddress)
        self.assertEqual(pair.server.transport.getHost(), pair.net.serverAddress)
        pair.net.refuse = True
        pair.net.cutAll()
        pair.settle()
        self.assertEqual(pair.client.transport.getPeer(), pair.net.serverAddress)

    def test_states(self) -> None:
        """
        C{state} walks attached, detached, closing, closed.
        """
        pair = Pair().open()
        t = pair.client.transport
        self.assertEqual(t.state, "attached")
        pair.net.refuse = True
        pair.net.cutAll()
        self.assertEqual(t.state, "detached")
        t.loseConnection()
        self.assertEqual(t.state, "closing")
        self.assertTrue(t.disconnecting)
        t.abortConnection()
        self.assertEqual(t.state, "closed")

    def test_writeSequence(self) -> None:
        """
        C{writeSequence} sends the concatenation.
        """
        pair = Pair().open()
        pair.client.transport.writeSequence([b"a", b"b", b"c"])
        pair.settle()
        self.assertEqual(pair.server.received, b"abc")

    def test_stopProducingCloses(self) -> None:
        """
        C{stopProducing} closes the session, as on a TCP transport.
        """
        pair = Pair().open()
        pair.client.transport.stopProducing()
        pair.settle(seconds=1)
        self.assertEqual(len(pair.client.lost), 1)

    def test_repr(self) -> None:
        """
        The repr names the session and its state.
        """
        pair = Pair().open()
        self.assertIn(pair.client.transport.sessionID, repr(pair.client.transport))


class TCPContractTests(SynchronousTestCase):
    """
    Where Migrate's transport follows Twisted's TCP transport, and the
    documented places where it must differ (docs/architecture.md, "The
    contract with Twisted's transports").
    """

    def test_writeNeedsBytes(self) -> None:
        """
        C{write} and C{writeSequence} raise C{TypeError("Data must be
        bytes")} for anything else, as Twisted's transports do.
        """
        pair = Pair().open()
        t = pair.client.transport
        e = self.assertRaises(TypeError, t.write, "text")
        self.assertEqual(str(e), "Data must be bytes")
        e = self.assertRaises(TypeError, t.writeSequence, [b"a", "text"])
        self.assertEqual(str(e), "Data must be bytes")
        pair.settle()
        self.assertEqual(pair.server.received, b"")

    def test_logSystemIsAppPrefix(self) -> None:
        """
        While the application's callbacks run, the log system is its
        C{logPrefix()}.
        """
        systems: list[str] = []

        class Prefixed(Recorder):
            def logPrefix(self) -> str:
                return "My App"

            def dataReceived(self, data: bytes) -> None:
                systems.append(context.get(ILogContext)["system"])

        pair = Pair(serverProtocol=Prefixed).open()
        pair.client.transport.write(b"x")
        pair.settle()
        self.assertEqual(systems, ["My App,server"])

    def test_dataAfterCloseAborts(self) -> None:
        """
        Data that arrives after the application closed (with
        C{loseConnection}) aborts the session, as a TCP close with unread
        data resets the connection: the closer heard C{ConnectionDone}, the
        writer hears L{PeerAborted}.
        """
        pair = Pair().open()
        pair.server.transport.loseConnection()
        # Written before the client could see the server's FIN.
        pair.client.transport.registerProducer(PushProducerStub(), True)
        pair.client.transport.write(b"late")
        pair.settle(seconds=1)
        pair.server.lost[0].trap(ConnectionDone)
        pair.client.lost[0].trap(PeerAborted)
        self.assertEqual(pair.server.received, b"")
        self.assertEqual(pair.clock.getDelayedCalls(), [])

    def test_closeCompletesInBackground(self) -> None:
        """
        As on TCP, the application hears C{connectionLost} once its FIN is
        written; the session then finishes in the background, and
        C{whenEnded} fires once nothing of it is left.
        """
        pair = Pair(serverProtocol=Echo).open()
        pair.client.transport.write(b"bye")
        ended: list[object] = []
        pair.client.transport.whenEnded().addCallback(ended.append)
        pair.client.transport.loseConnection()
        self.assertEqual(pair.client.lost, [])
        pair.clock.advance(0)
        self.assertEqual(len(pair.client.lost), 1)
        pair.client.lost[0].trap(ConnectionDone)
        self.assertEqual(ended, [])
        pair.settle(seconds=1)
        self.assertEqual(ended, [None])
        self.assertEqual(pair.clock.getDelayedCalls(), [])

    def test_streamingProducerHoldsClose(self) -> None:
        """
        Unlike Twisted's TCP transport (which closes once its buffer drains
        if a streaming producer is not paused) and like its TLS transport,
        C{loseConnection} waits for a registered producer to be
        unregistered; its writes until then are delivered.
        """
        pair = Pair().open()
        pair.client.transport.registerProducer(PushProducerStub(), True)
        pair.client.transport.loseConnection()
        pair.settle(seconds=1)
        self.assertEqual(pair.client.lost, [])
        pair.client.transport.write(b"last")
        pair.client.transport.unregisterProducer()
        pair.settle(seconds=1)
        self.assertEqual(pair.server.received, b"last")
        pair.client.lost[0].trap(ConnectionDone)

    def test_bufferSize(self) -> None:
        """
        C{bufferSize}, as on Twisted's transports, is where a registered
        producer is paused: here, unacknowledged bytes.
        """
        pair = Pair().open()
        t = pair.client.transport
        producer = PushProducerStub()
        t.registerProducer(producer, True)
        t.bufferSize = 500
        self.assertEqual(t.bufferSize, 500)
        t.write(b"x" * 600)
        self.assertEqual(producer.events, ["pause"])
        pair.settle(seconds=1)
        self.assertEqual(producer.events, ["pause", "resume"])

    def test_stopStartReading(self) -> None:
        """
        C{stopReading} and C{startReading} pause and resume delivery, as
        C{pauseProducing} and C{resumeProducing} do.
        """
        pair = Pair().open()
        pair.client.transport.stopReading()
        pair.server.transport.write(b"held")
        pair.settle()
        self.assertEqual(pair.client.received, b"")
        pair.client.transport.startReading()
        pair.settle()
        self.assertEqual(pair.client.received, b"held")

    def test_reactorShutdownEndsSessions(self) -> None:
        """
        When the reactor under a session stops, the session ends at once,
        its application hears C{ConnectionLost} before the reactor stops, and
        nothing is left scheduled.
        """
        from twisted.internet.error import ConnectionLost

        pair = Pair().open()
        session = pair.clientSession
        session.shutdown()
        pair.client.lost[0].trap(ConnectionLost)
        self.assertTrue(session.ended)
