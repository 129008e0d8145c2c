"""
Server-side moves, deterministically: the server advertises its addresses
in-band (authenticated, numbered), the address in use first for as long as
it lasts; a client whose path is direct (or whose server's operator
configured the addresses) follows when that address goes away; forged and
replayed advertisements are refused.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.trial.unittest import SynchronousTestCase

from migrate._sansio import crypto as _crypto, wire as _wire
from migrate.interfaces import ConnectivityEvent, LocalAddress
from migrate.monitors import MonitorLease
from migrate.testing import FakeMonitor

from .helpers import Pair


class Moves:
    def __init__(self) -> None:
        self.moves: list[tuple[Any, Any]] = []

    def peerMoved(self, session: Any, old: Any, new: Any) -> None:
        self.moves.append((old, new))


def movingPair() -> tuple[Pair, FakeMonitor, list[tuple[str, int]]]:
    serverMonitor = FakeMonitor()
    serverMonitor.local = [LocalAddress("lo", "10.0.0.1", 4)]
    targets: list[tuple[str, int]] = []
    holder: list[Pair] = []

    def endpointTo(host: str, port: int) -> Any:
        targets.append((host, port))
        net = holder[0].net
        net.serverAddress = IPv4Address("TCP", host, port)
        return net.clientEndpoint()

    pair = Pair()
    holder.append(pair)
    pair.factory.monitor = MonitorLease(serverMonitor)
    pair.factory.startFactory()
    pair.endpoint.endpointTo = endpointTo
    pair.open()
    return pair, serverMonitor, targets


class AdvertisementTests(SynchronousTestCase):
    def test_advertisedOnOpen(self) -> None:
        """
        The client learns the server's addresses when the session opens.
        """
        pair, monitor, targets = movingPair()
        self.assertEqual(pair.clientSession.peerAddresses, ["10.0.0.1:7001"])
        self.assertEqual(targets, [])

    def test_newAddressDoesNotPull(self) -> None:
        """
        An address that appears on the server (a VPN, a container bridge, a
        second uplink) is advertised after the one in use: the client stays.
        When the address in use goes, the client resumes at the other, and
        keeps every byte.
        """
        pair, monitor, targets = movingPair()
        watch = Moves()
        pair.clientSession.upcalls.observers.append(watch)
        pair.client.transport.write(b"before ")
        monitor.local = [LocalAddress("lo", "10.0.0.1", 4), LocalAddress("lo", "10.0.0.9", 4)]
        monitor.emit(ConnectivityEvent.ADDRESS_ADDED, "lo", "10.0.0.9")
        pair.client.transport.write(b"during ")
        pair.settle()
        self.assertEqual(targets, [])
        self.assertEqual(pair.client.transport.generation, 0)
        self.assertEqual(watch.moves, [(["10.0.0.1:7001"], ["10.0.0.1:7001", "10.0.0.9:7001"])])
        monitor.local = [LocalAddress("lo", "10.0.0.9", 4)]
        monitor.emit(ConnectivityEvent.ADDRESS_REMOVED, "lo", "10.0.0.1")
        pair.client.transport.write(b"after")
        pair.settle()
        self.assertIn(("10.0.0.9", 7001), targets)
        self.assertEqual(pair.server.received, b"before during after")
        self.assertEqual(pair.clientSession.trustedPeerAddresses, ["10.0.0.9:7001"])

    def test_deprecatedAddressMovesFirst(self) -> None:
        """
        When the address in use is deprecated (still working, going away),
        the server advertises the new one first and the client moves there
        at once, while the old path still works, keeping every byte.
        """
        pair, monitor, targets = movingPair()
        pair.client.transport.write(b"before ")
        monitor.local = [LocalAddress("lo", "10.0.0.1", 4), LocalAddress("lo", "10.0.0.9", 4)]
        monitor.emit(ConnectivityEvent.ADDRESS_ADDED, "lo", "10.0.0.9")
        pair.settle()
        monitor.local = [LocalAddress("lo", "10.0.0.9", 4)]
        monitor.emit(ConnectivityEvent.ADDRESS_DEPRECATED, "lo", "10.0.0.1")
        pair.client.transport.write(b"during")
        pair.settle()
        self.assertEqual(targets, [("10.0.0.9", 7001)])
        self.assertEqual(pair.client.transport.getPeer().host, "10.0.0.9")
        self.assertEqual(pair.client.transport.generation, 1)
        self.assertEqual(pair.server.received, b"before during")

    def test_translatedPathNotFollowed(self) -> None:
        """
        A client whose path is translated (the server's address it reached
        is not among the advertised ones: NAT, a port forward, a load
        balancer) never follows the advertisement, nor tries it when it
        reconnects.
        """
        pair, monitor, targets = movingPair()
        session = pair.clientSession
        # The client reached the server through a translating path.
        session.lastPeer = IPv4Address("TCP", "203.0.113.7", 443)
        session.trustedPeerAddresses = []
        monitor.local = [LocalAddress("eth0", "10.0.0.1", 4)]
        monitor.emit(ConnectivityEvent.ADDRESS_DEPRECATED, "lo", "10.0.0.5")
        monitor.local = [LocalAddress("eth0", "10.0.0.9", 4)]
        monitor.emit(ConnectivityEvent.ADDRESS_ADDED, "eth0", "10.0.0.9")
        pair.settle()
        self.assertEqual(session.trustedPeerAddresses, [])
        self.assertEqual(targets, [])
        pair.net.cutAll()
        pair.settle()
        self.assertEqual(targets, [])
        self.assertEqual(pair.client.transport.state, "attached")
        self.flushLoggedErrors()

    def test_configuredFollowedOverTranslation(self) -> None:
        """
        Addresses the server's operator configured (C{advertise=}) are
        followed even over a translated path.
        """
        from migrate._advertise import AdvertisePolicy

        pair, monitor, targets = movingPair()
        pair.factory.advertisePolicy = AdvertisePolicy.parse("198.51.100.4:7001")
        session = pair.clientSession
        session.lastPeer = IPv4Address("TCP", "203.0.113.7", 443)
        session.trustedPeerAddresses = []
        monitor.emit(ConnectivityEvent.ADDRESS_ADDED, "lo", "10.0.0.1")
        pair.settle()
        self.assertEqual(session.trustedPeerAddresses, ["198.51.100.4:7001"])
        self.assertEqual(targets, [("198.51.100.4", 7001)])

    def test_detachedClientUsesAdvertised(self) -> None:
        """
        A detached client tries the advertised addresses before the
        configured one.
        """
        pair, monitor, targets = movingPair()
        pair.clientSession.trustedPeerAddresses = ["10.0.0.5:7001", "10.0.0.1:7001"]
        pair.net.cutAll()
        pair.settle()
        self.assertEqual(targets[0], ("10.0.0.5", 7001))

    def test_forgedAndReplayed(self) -> None:
        """
        An advertisement with a wrong proof, or an old one again, is refused
        (its carrier dropped, the session resumes); the peer's addresses do
        not change.
        """
        pair, monitor, targets = movingPair()
        link = pair.net.links[0]
        session = pair.clientSession
        forged = _wire.encodeAddresses(99, 0, ["192.0.2.66:7001"], b"m" * 32)
        link.client.protocol.dataReceived(forged)
        self.assertEqual(session.peerAddresses, ["10.0.0.1:7001"])
        pair.settle()
        self.assertEqual(pair.client.transport.state, "attached")
        key = session.key
        seq = session._peerAdvertSeq
        mac = _crypto.prove(key, b"addresses", b"server", seq, 0, b"192.0.2.66:7001")
        replay = _wire.encodeAddresses(seq, 0, ["192.0.2.66:7001"], mac)
        pair.net.links[0].client.protocol.dataReceived(replay)
        self.assertNotIn("192.0.2.66:7001", session.peerAddresses)
        self.flushLoggedErrors()


class PublishTests(SynchronousTestCase):
    def test_publishOnChangeAndPeriodically(self) -> None:
        """
        A server publishes its service addresses (preferred first) when it
        starts, when they change, and every C{republishInterval}; nothing
        stays scheduled once it stops.
        """
        from migrate import MigrateServerFactory, SessionOptions
        from migrate.locate import StaticLocator
        from twisted.internet.protocol import Factory, Protocol
        from twisted.internet.task import Clock

        clock = Clock()
        monitor = FakeMonitor()
        monitor.local = [LocalAddress("lo", "10.0.0.1", 4), LocalAddress("eth0", "192.168.1.5", 4)]
        locator = StaticLocator()
        factory = MigrateServerFactory(
            Factory.forProtocol(Protocol),
            clock,
            SessionOptions(republishInterval=100),
            monitor=monitor,
            locator=locator,
            publishName="srv.example.",
            serviceInterface="lo",
        )
        factory.doStart()
        self.assertEqual(locator.published, [("srv.example.", ["10.0.0.1"])])
        monitor.local.append(LocalAddress("lo", "10.0.0.2", 4))
        monitor.emit(ConnectivityEvent.ADDRESS_ADDED, "lo", "10.0.0.2")
        self.assertEqual(locator.published[-1], ("srv.example.", ["10.0.0.2", "10.0.0.1"]))
        clock.advance(100)
        self.assertEqual(len(locator.published), 3)
        factory.doStop()
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_policyChoosesLocators(self) -> None:
        """
        The policy chooses which locators a server publishes to and a
        client looks its peer up with; answers of several are merged.
        """
        from migrate import MigrateServerFactory
        from migrate.locate import StaticLocator
        from migrate.policy import DefaultPolicy
        from twisted.internet.protocol import Factory, Protocol
        from twisted.internet.task import Clock

        class OnlyFirst(DefaultPolicy):
            def chooseLocators(self, available: Any) -> Any:
                return list(available)[:1]

        first, second = StaticLocator(), StaticLocator()
        monitor = FakeMonitor()
        monitor.local = [LocalAddress("lo", "10.0.0.1", 4)]
        factory = MigrateServerFactory(
            Factory.forProtocol(Protocol),
            Clock(),
            policy=OnlyFirst(),
            monitor=monitor,
            locator=[first, second],
            publishName="srv.example.",
        )
        factory.doStart()
        self.assertEqual(first.published, [("srv.example.", ["10.0.0.1"])])
        self.assertEqual(second.published, [])
        factory.doStop()

        pair, serverMonitor, targets = movingPair()
        connector = pair.endpoint._connectors[0]
        connector.locators = [StaticLocator({"srv.": ["10.0.0.7"]}), StaticLocator({"srv.": ["10.0.0.8", "10.0.0.7"]})]
        connector.peerName = "srv."
        connector._relocate(urgent=True)
        self.assertEqual(connector._located, ["10.0.0.7:7001", "10.0.0.8:7001"])

    def test_boundAddressOnly(self) -> None:
        """
        A server whose socket is bound to one address advertises and
        publishes only that one, never the host's other addresses.
        """
        from migrate import MigrateServerFactory
        from migrate.locate import StaticLocator
        from twisted.internet.protocol import Factory, Protocol
        from twisted.internet.task import Clock

        monitor = FakeMonitor()
        monitor.local = [LocalAddress("eth0", "192.0.2.10", 4), LocalAddress("lo", "127.0.0.1", 4)]
        locator = StaticLocator()
        factory = MigrateServerFactory(
            Factory.forProtocol(Protocol), Clock(), monitor=monitor, locator=locator, publishName="s."
        )
        factory.doStart()
        factory.setListeningHost("127.0.0.1")
        self.assertEqual(locator.published[-1], ("s.", ["127.0.0.1"]))
        monitor.emit(ConnectivityEvent.ADDRESS_ADDED, "eth0", "192.0.2.11")
        self.assertEqual(factory._addresses, ["127.0.0.1"])
        factory.doStop()
