"""
A server behind NAT, in network namespaces: it has only a private address;
a router publishes it on a public one (DNAT, masquerade).  With default
options (the server's monitor on, bound to a wildcard, advertising what it
sees), the client stays on the public address through its own address
change, an outage, and a server restart, and never sends a single SYN to
the private address.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet import reactor, task
from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, serverFromString
from twisted.internet.protocol import Factory
from twisted.trial.unittest import SkipTest, TestCase
from zope.interface import implementer

from migrate.testing import sessionOf
from migrate import MigrateClientEndpoint
from migrate.interfaces import IMigratable
from migrate.monitors import NetlinkMonitor

from . import netns
from .helpers import Echo, Recorder
from .test_mobility import waitFor

PORT = 7001


@implementer(IMigratable)
class MigratableEcho(Echo):
    """
    An echo application that survives a server restart.
    """

    def saveMigrationState(self) -> bytes:
        return b""

    def restoreMigrationState(self, state: bytes) -> None:
        pass

    def validateResume(self, asleep: float, peer: Any) -> bool:
        return True


class NATTests(TestCase):
    timeout = 90

    def setUp(self) -> None:
        reason = netns.skipReason()
        if reason:
            raise SkipTest(reason)
        self.topology = netns.NATTopology(PORT)
        self.addCleanup(self.topology.destroy)
        self.store = os.path.abspath(self.mktemp())

    @inlineCallbacks
    def listen(self) -> Any:
        """
        Start (or restart) the server in its namespace, with default options
        and a store.
        """
        with netns.namespace(self.topology.server):
            endpoint = serverFromString(reactor, "migrate:tcp:%d:store=%s" % (PORT, self.store))
            port = yield endpoint.listen(Factory.forProtocol(MigratableEcho))
        self.serverEndpoint = endpoint
        self.port = port
        return port

    @inlineCallbacks
    def restartServer(self) -> Any:
        """
        What a server restart looks like to the client: every carrier dies,
        the sessions are in the store, nothing listens for a second, then a
        new server starts on the store.
        """
        factory = self.serverEndpoint.factory
        for session in list(factory.sessions.values()):
            session.dropCarrier("server restarting")
            factory.hibernate(session)
        yield waitFor(lambda: not factory._saving, 10)
        yield self.port.stopListening()
        yield task.deferLater(reactor, 1.0, lambda: None)
        yield self.listen()

    @inlineCallbacks
    def test_staysOnPublicAddress(self) -> Any:
        """
        The client dials the public address and keeps to it: after its own
        address changed, after a 3 s outage of all its links, after a server
        restart, its data is echoed byte-exact, and the router counted no
        connection attempt to the server's private address.
        """
        port = yield self.listen()
        self.addCleanup(lambda: self.port.stopListening())
        with netns.namespace(self.topology.mobile):
            monitor = NetlinkMonitor(reactor)  # type: ignore[arg-type]
            monitor.start()
        self.addCleanup(monitor.stop)
        mobile = self.topology.mobile
        client = MigrateClientEndpoint(
            reactor,
            netns.NamespacedEndpoint(
                mobile, TCP4ClientEndpoint(reactor, netns.NATTopology.publicAddress, PORT)
            ),
            monitor=monitor,
            endpointTo=lambda host, p: netns.NamespacedEndpoint(
                mobile, TCP4ClientEndpoint(reactor, host, p)
            ),
        )
        proto = yield client.connect(Factory.forProtocol(Recorder))
        expected = b""

        def send(text: bytes) -> None:
            nonlocal expected
            expected += text
            proto.transport.write(text)

        def onPublic() -> None:
            self.assertEqual(proto.transport.getPeer().host, netns.NATTopology.publicAddress)

        send(b"opened;")
        yield waitFor(lambda: proto.received == expected, 10)
        onPublic()
        session = sessionOf(proto)
        # The server advertised its private address; the client saw that
        # its path is translated and keeps none of it.
        self.assertEqual(session.trustedPeerAddresses, [])

        self.topology.replaceAddress("a", 7)
        send(b"renumbered;")
        yield waitFor(lambda: proto.received == expected, 10)
        onPublic()
        self.assertGreaterEqual(proto.transport.handoffs, 1)

        self.topology.setLinks(False)
        send(b"during the outage;")
        yield task.deferLater(reactor, 3.0, lambda: None)
        self.topology.setLinks(True)
        yield waitFor(lambda: proto.received == expected, 15)
        onPublic()

        handoffs = proto.transport.handoffs
        yield self.restartServer()
        send(b"after the restart;")
        yield waitFor(lambda: proto.received == expected, 15)
        onPublic()
        self.assertGreater(proto.transport.handoffs, handoffs)

        self.assertEqual(proto.lost, [])
        self.assertEqual(self.topology.privateSyns(), 0)
        proto.transport.loseConnection()
        yield proto.transport.whenEnded()
