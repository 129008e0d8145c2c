"""
The application's transport: the interfaces it claims, and only those.
"""

from __future__ import annotations

from twisted.internet.interfaces import (
    IConsumer,
    IPushProducer,
    ISSLTransport,
    ITCPTransport,
    ITransport,
)
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from migrate import IMigrateTransport

from .helpers import Pair


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
