"""
Endpoint strings and options.
"""

from __future__ import annotations

from twisted.internet.endpoints import (
    TCP4ServerEndpoint,
    clientFromString,
    serverFromString,
)
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from migrate import (
    MigrateClientEndpoint,
    MigrateServerEndpoint,
    MigrateServerFactory,
    SessionOptions,
)


class EndpointStringTests(SynchronousTestCase):
    def test_server(self) -> None:
        """
        C{migrate:tcp:...} wraps a TCP server endpoint with the rest of the
        string, and takes Migrate's options out of it.
        """
        reactor = MemoryReactorClock()
        ep = serverFromString(
            reactor, "migrate:tcp:7001:interface=127.0.0.1:sessionTimeout=30:hardCap=99999999"
        )
        self.assertIsInstance(ep, MigrateServerEndpoint)
        self.assertIsInstance(ep.endpoint, TCP4ServerEndpoint)
        self.assertEqual(ep.endpoint._port, 7001)
        self.assertEqual(ep.endpoint._interface, "127.0.0.1")
        self.assertEqual(ep.options.sessionTimeout, 30.0)
        self.assertEqual(ep.options.hardCap, 99999999)

    def test_listenWraps(self) -> None:
        """
        C{listen} listens on the inner endpoint with a wrapping factory.
        """
        reactor = MemoryReactorClock()
        ep = serverFromString(reactor, "migrate:tcp:7001")
        from twisted.internet.protocol import Factory, Protocol

        self.successResultOf(ep.listen(Factory.forProtocol(Protocol)))
        port, factory, backlog, interface = reactor.tcpServers[0]
        self.assertEqual(port, 7001)
        self.assertIsInstance(factory, MigrateServerFactory)

    def test_client(self) -> None:
        """
        C{migrate:tcp:host=...:port=...} wraps a TCP client endpoint.
        """
        reactor = MemoryReactorClock()
        ep = clientFromString(reactor, "migrate:tcp:host=example.org:port=7001:connectTimeout=2")
        self.assertIsInstance(ep, MigrateClientEndpoint)
        self.assertEqual(ep.endpoint._host, "example.org")
        self.assertEqual(ep.endpoint._port, 7001)
        self.assertEqual(ep.options.connectTimeout, 2.0)

    def test_noInner(self) -> None:
        """
        A bare C{migrate:} is an error that says what is missing.
        """
        reactor = MemoryReactorClock()
        e = self.assertRaises(ValueError, serverFromString, reactor, "migrate")
        self.assertIn("inner endpoint", str(e))
        self.assertRaises(ValueError, clientFromString, reactor, "migrate")

    def test_badInnerEndpoint(self) -> None:
        """
        Mistakes in the inner endpoint are named in words an operator can
        act on, not as Python's complaints about function arguments: an
        unknown option, a missing one, a trust-roots directory that does
        not exist.
        """
        reactor = MemoryReactorClock()
        for parse, description, expected in (
            (serverFromString, "migrate:tcp:7001:bogus=1", "unknown option bogus="),
            (clientFromString, "migrate:tcp:host=127.0.0.1", "missing port="),
            (
                clientFromString,
                "migrate:tls:host=example.org:port=7001:trustRoots=/nonexistent-dir",
                "cannot list a directory it names",
            ),
        ):
            e = self.assertRaises(ValueError, parse, reactor, description)
            self.assertIn(expected, str(e))
            self.assertIn("inner endpoint", str(e))
            self.assertNotIn("__init__", str(e))
            self.assertNotIn("_parse", str(e))

    def test_badOption(self) -> None:
        """
        A Migrate option with a bad value is a clear error.
        """
        reactor = MemoryReactorClock()
        e = self.assertRaises(
            ValueError, serverFromString, reactor, "migrate:tcp:7001:sessionTimeout=soon"
        )
        self.assertIn("sessionTimeout", str(e))
        self.assertRaises(
            ValueError, serverFromString, reactor, "migrate:tcp:7001:hardCap=-1"
        )


class OptionsTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        """
        The defaults are consistent.
        """
        o = SessionOptions()
        self.assertLess(o.highWater, o.hardCap)
        self.assertLessEqual(o.sendFrame, o.maxFrame)

    def test_invalid(self) -> None:
        """
        Inconsistent options are refused.
        """
        self.assertRaises(ValueError, SessionOptions, highWater=10, hardCap=5)
        self.assertRaises(ValueError, SessionOptions, overflow="explode")
        self.assertRaises(ValueError, SessionOptions, sendFrame=10, maxFrame=5)
        self.assertRaises(ValueError, SessionOptions.fromStrings, {"nope": "1"})

    def test_replace(self) -> None:
        """
        C{replace} makes a changed copy.
        """
        o = SessionOptions().replace(sessionTimeout=5.0)
        self.assertEqual(o.sessionTimeout, 5.0)


class LocatorStringTests(SynchronousTestCase):
    def test_server(self) -> None:
        """
        A server string can publish its addresses to a DNS locator.
        """
        reactor = MemoryReactorClock()
        ep = serverFromString(
            reactor,
            "migrate:tcp:7001:monitor=none:publish=server.mobile.example.:locator=10.77.9.2:"
            "zone=mobile.example.:tsigName=server.:tsigSecret=c2VjcmV0:serviceInterface=lo",
        )
        self.assertEqual(ep.publishName, "server.mobile.example.")
        self.assertEqual(ep.locator.server, ("10.77.9.2", 53))
        self.assertEqual(ep.serviceInterface, "lo")
        self.assertEqual(ep.endpoint._port, 7001)

    def test_client(self) -> None:
        """
        A client string can look its server's name up through a locator.
        """
        reactor = MemoryReactorClock()
        ep = clientFromString(
            reactor,
            "migrate:tcp:host=server.mobile.example:port=7001:monitor=none:locator=10.77.9.2:"
            "locatorPort=5353:zone=mobile.example.",
        )
        self.assertEqual(ep.peerName, "server.mobile.example")
        self.assertEqual(ep.locator.server, ("10.77.9.2", 5353))

    def test_incomplete(self) -> None:
        """
        Locator options that do not fit together are clear errors.
        """
        reactor = MemoryReactorClock()
        for bad in (
            "migrate:tcp:7001:monitor=none:publish=a.example.",
            "migrate:tcp:7001:monitor=none:publish=a.example.:locator=10.0.0.1:zone=example.",
            "migrate:tcp:7001:monitor=none:zone=example.",
            "migrate:tcp:7001:monitor=none:locator=10.0.0.1",
        ):
            self.assertRaises(ValueError, serverFromString, reactor, bad)
