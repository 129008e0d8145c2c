"""
Endpoint strings and options.
"""

from __future__ import annotations

from typing import Any

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
            reactor, "migrate:tcp:7001:interface=127.0.0.1:sessionTimeout=30:hardCap=12345678"
        )
        self.assertIsInstance(ep, MigrateServerEndpoint)
        self.assertIsInstance(ep.endpoint, TCP4ServerEndpoint)
        self.assertEqual(ep.endpoint._port, 7001)
        self.assertEqual(ep.endpoint._interface, "127.0.0.1")
        self.assertEqual(ep.options.sessionTimeout, 30.0)
        self.assertEqual(ep.options.hardCap, 12345678)

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


SECRET = "c2VjcmV0LXRoYXQtbXVzdC1uZXZlci1zaG93"  # base64
SECRET_TEXT = "c2VjcmV0LXRoYXQ"  # a piece of it that must never appear


def secretFile(case: SynchronousTestCase, text: str, mode: int = 0o600) -> str:
    """
    A file holding C{text}, of C{mode}.
    """
    import os

    path = os.path.abspath(case.mktemp())
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


PUBLISHING = (
    "migrate:tcp:7001:monitor=none:publish=server.mobile.example.:locator=10.77.9.2:"
    "zone=mobile.example.:tsigName=server."
)


class SecretTests(SynchronousTestCase):
    """
    TSIG secrets from a file (C{tsigSecretFile=}), and secrets never shown
    in a message.
    """

    def refused(self, description: str, parse: Any = serverFromString) -> str:
        e = self.assertRaises(ValueError, parse, MemoryReactorClock(), description)
        self.assertNotIn(SECRET_TEXT, str(e))
        return str(e)

    def test_redact(self) -> None:
        """
        L{redact} hides the values of keyword arguments named after
        secrets, whatever their case, escaped colons in them included, and
        nothing else (a secret file's name is shown).
        """
        from migrate._endpoints import redact

        self.assertEqual(
            redact("migrate:tcp:7001:tsigSecret=%s:zone=z.:tsigSecretFile=/etc/k" % (SECRET,)),
            "migrate:tcp:7001:tsigSecret=***:zone=z.:tsigSecretFile=/etc/k",
        )
        self.assertEqual(redact("tcp:host=a:tsig_SECRET=ab\\:cd:port=1"), "tcp:host=a:tsig_SECRET=***:port=1")
        self.assertEqual(redact("x:password=p:apiToken=t:passphrase=q"), "x:password=***:apiToken=***:passphrase=***")
        self.assertEqual(redact("tcp:7001:interface=127.0.0.1"), "tcp:7001:interface=127.0.0.1")

    def test_secretFile(self) -> None:
        """
        C{tsigSecretFile=} reads the secret from a file only its owner may
        read, as if given with C{tsigSecret=}; blank lines and comments
        are ignored.
        """
        reactor = MemoryReactorClock()
        path = secretFile(self, "# the server's key\n\n  %s  \n" % (SECRET,))
        fromFile = serverFromString(reactor, PUBLISHING + ":tsigSecretFile=" + path)
        given = serverFromString(reactor, PUBLISHING + ":tsigSecret=" + SECRET)
        self.assertEqual(fromFile.locator._keyring, given.locator._keyring)
        self.assertIsNotNone(fromFile.locator._keyring)

    def test_secretFileWithName(self) -> None:
        """
        A file may hold C{NAME:SECRET}, as C{twistd migrate-locator}'s key
        files do: the name is the key's if C{tsigName=} is not given, and
        must match it if it is.
        """
        reactor = MemoryReactorClock()
        path = secretFile(self, "server:%s\n" % (SECRET,))
        withoutName = PUBLISHING.replace(":tsigName=server.", "")
        ep = serverFromString(reactor, withoutName + ":tsigSecretFile=" + path)
        self.assertEqual(ep.locator._keyName, "server.")
        ep = serverFromString(reactor, PUBLISHING + ":tsigSecretFile=" + path)
        self.assertEqual(ep.locator._keyName, "server.")
        message = self.refused(PUBLISHING.replace("tsigName=server.", "tsigName=other") + ":tsigSecretFile=" + path)
        self.assertIn("holds the key server., not tsigName=other", message)

    def test_secretFileMode(self) -> None:
        """
        A secret file that group or others may read (or write) is refused,
        naming the file, its mode and the fix, never the secret.
        """
        for mode in (0o640, 0o604, 0o620, 0o644, 0o660):
            path = secretFile(self, SECRET + "\n", mode)
            message = self.refused(PUBLISHING + ":tsigSecretFile=" + path)
            self.assertIn("tsigSecretFile=%s has mode %04o" % (path, mode), message)
            self.assertIn("group or others", message)
            self.assertIn("chmod 600 " + path, message)

    def test_secretFileErrors(self) -> None:
        """
        A secret file that does not exist, is not a file, holds no secret,
        several, or something that is not base64, is refused with the file
        named and its content not shown; so are both C{tsigSecret=} and
        C{tsigSecretFile=} at once.
        """
        missing = "/nonexistent/tsig.key"
        self.assertIn(
            "tsigSecretFile=%s: No such file" % (missing,),
            self.refused(PUBLISHING + ":tsigSecretFile=" + missing),
        )
        directory = self.mktemp()
        import os

        os.mkdir(directory, 0o700)
        self.assertIn("is not a regular file", self.refused(PUBLISHING + ":tsigSecretFile=" + directory))
        self.assertIn("it holds 0 lines", self.refused(PUBLISHING + ":tsigSecretFile=" + secretFile(self, "# none\n")))
        self.assertIn(
            "it holds 2 lines",
            self.refused(PUBLISHING + ":tsigSecretFile=" + secretFile(self, "%s\n%s\n" % (SECRET, SECRET))),
        )
        message = self.refused(PUBLISHING + ":tsigSecretFile=" + secretFile(self, SECRET_TEXT + "!!\n"))
        self.assertIn("the secret is not base64", message)
        path = secretFile(self, SECRET)
        self.assertIn(
            "tsigSecret= or tsigSecretFile=, not both",
            self.refused(PUBLISHING + ":tsigSecret=%s:tsigSecretFile=%s" % (SECRET, path)),
        )

    def test_secretNotBase64(self) -> None:
        """
        A C{tsigSecret=} that is not base64 is refused without being shown.
        """
        message = self.refused(PUBLISHING + ":tsigSecret=" + SECRET_TEXT + "!")
        self.assertIn("tsigSecret= is not base64", message)

    def test_noSecretInInnerErrors(self) -> None:
        """
        An error in the inner endpoint of a string that also holds a
        secret does not show the secret, whether Migrate took it out
        (C{tsigSecret=}) or it went to the inner endpoint (misspelt).
        """
        message = self.refused(PUBLISHING + ":tsigSecret=%s:bogus=1" % (SECRET,))
        self.assertIn("unknown option bogus=", message)
        message = self.refused(
            "migrate:tcp:host=a.example:port=1:tsigsecret=%s" % (SECRET,), clientFromString
        )
        self.assertIn("tsigsecret=***", message)
        self.assertIn("did you mean tsigSecret=?", message)


class InnerErrorTests(SynchronousTestCase):
    """
    Mistakes in the inner endpoint, in words.
    """

    def refused(self, parse: Any, description: str) -> str:
        return str(self.assertRaises(ValueError, parse, MemoryReactorClock(), description))

    def test_unknownOption(self) -> None:
        """
        An unknown option is named, with what the endpoint takes and a
        suggestion when it looks like a known one; the inner string is
        shown as written (without the backlog Migrate adds).
        """
        self.assertEqual(
            self.refused(serverFromString, "migrate:tcp:7001:bogus=1"),
            "migrate: inner endpoint tcp:7001:bogus=1: unknown option bogus=; a tcp: server"
            " endpoint takes port, interface=, backlog=, besides Migrate's options",
        )
        self.assertIn(
            "unknown option serviceinterface= (did you mean serviceInterface=?)",
            self.refused(serverFromString, "migrate:tcp:7001:serviceinterface=lo"),
        )
        message = self.refused(clientFromString, "migrate:tls:host=a.example:port=1:bogus=2:trustroots=/x")
        self.assertIn("unknown options bogus=, trustroots= (did you mean trustRoots=?)", message)
        self.assertIn("a tls: client endpoint takes host=", message)

    def test_badNumber(self) -> None:
        """
        A value that should be a number says so, with the value.
        """
        self.assertIn(
            "'x' is not a whole number",
            self.refused(clientFromString, "migrate:tcp:host=a.example:port=x"),
        )
        self.assertIn(
            "locatorPort=x: expected a port number",
            self.refused(clientFromString, "migrate:tcp:host=a.example:port=1:locator=10.0.0.1:zone=z.:locatorPort=x"),
        )


class _FakeMonitor:
    """
    A connectivity monitor with a fixed table of addresses.
    """

    def __init__(self, addresses: list[Any]) -> None:
        self._addresses = addresses
        self.started = False

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.started = False

    def addresses(self) -> list[Any]:
        return list(self._addresses)

    def interfaceOf(self, address: str) -> Any:
        for a in self._addresses:
            if a.address == address:
                return a.interface
        return None

    def addListener(self, listener: Any) -> None:
        pass

    def removeListener(self, listener: Any) -> None:
        pass


class _FakePort:
    def __init__(self, host: str) -> None:
        self.host = host

    def getHost(self) -> Any:
        from twisted.internet.address import IPv4Address

        return IPv4Address("TCP", self.host, 7001)

    def stopListening(self) -> None:
        pass


class _FakeServerEndpoint:
    """
    Listens at once (starting the factory, as a real port does) on
    C{host}.
    """

    def __init__(self, host: str = "0.0.0.0") -> None:
        self.host = host
        self.factories: list[Any] = []

    def listen(self, factory: Any) -> Any:
        from twisted.internet.defer import succeed

        self.factories.append(factory)
        factory.doStart()
        return succeed(_FakePort(self.host))


class ServiceInterfaceTests(SynchronousTestCase):
    """
    C{serviceInterface=} that names no interface fails at listen time; one
    with no address that would be advertised or published says so.
    """

    def setUp(self) -> None:
        from twisted.logger import Logger

        import migrate._endpoints

        self.events: list[dict[str, Any]] = []
        self.patch(migrate._endpoints, "_log", Logger(observer=self.events.append))

    def warnings(self) -> list[str]:
        from twisted.logger import LogLevel, formatEvent

        return [formatEvent(e) for e in self.events if e["log_level"] >= LogLevel.warn]

    def listen(self, interface: str, addresses: list[Any], host: str = "0.0.0.0", **kw: Any) -> Any:
        from twisted.internet.protocol import Factory, Protocol

        from migrate.locate import StaticLocator

        inner = _FakeServerEndpoint(host)
        kw.setdefault("monitor", _FakeMonitor(addresses))
        kw.setdefault("locator", StaticLocator())
        kw.setdefault("publishName", "server.mobile.example.")
        endpoint = MigrateServerEndpoint(
            MemoryReactorClock(),
            inner,
            serviceInterface=interface,
            interfaceNames=lambda: ["lo", "eth0"],
            **kw,
        )
        d = endpoint.listen(Factory.forProtocol(Protocol))
        for factory in inner.factories:
            self.addCleanup(factory.doStop)
        return endpoint, inner, d

    def test_noSuchInterface(self) -> None:
        """
        An interface this host does not have fails the listen, naming the
        interfaces it has; nothing listens.
        """
        endpoint, inner, d = self.listen("eth9", [])
        error = self.failureResultOf(d, ValueError).value
        self.assertEqual(str(error), "serviceInterface=eth9: no such interface (have: lo, eth0)")
        self.assertEqual(inner.factories, [])

    def test_noSuchInterfaceOnThisHost(self) -> None:
        """
        By default the names are this host's (L{socket.if_nameindex}): a
        string's C{serviceInterface=} is checked against them.
        """
        import socket

        from twisted.internet.protocol import Factory, Protocol

        names = [name for _, name in socket.if_nameindex()]
        endpoint = serverFromString(MemoryReactorClock(), "migrate:tcp:0:monitor=none:serviceInterface=nosuch0")
        error = self.failureResultOf(endpoint.listen(Factory.forProtocol(Protocol)), ValueError).value
        self.assertEqual(
            str(error), "serviceInterface=nosuch0: no such interface (have: %s)" % (", ".join(names),)
        )

    def test_noGlobalAddress(self) -> None:
        """
        An interface with no global address (only those are advertised and
        published; C{lo} has none, usually) gets one warning saying why
        nothing will be.
        """
        from migrate.interfaces import LocalAddress

        endpoint, inner, d = self.listen("lo", [LocalAddress("eth0", "192.0.2.7", 4)])
        self.successResultOf(d)
        self.assertEqual(
            self.warnings(),
            [
                "serviceInterface=lo: lo has no usable global address (loopback and link-local"
                " addresses are never advertised or published), so this server publishes nothing"
                " as server.mobile.example. and advertises no address to its clients until it has one"
            ],
        )

    def test_noGlobalAddressNotPublishing(self) -> None:
        """
        Without a locator, the warning is about advertisements alone.
        """
        endpoint, inner, d = self.listen("lo", [], locator=None, publishName=None)
        self.successResultOf(d)
        [warning] = self.warnings()
        self.assertIn("so this server advertises no address to its clients until", warning)
        self.assertNotIn("publishes", warning)

    def test_globalAddress(self) -> None:
        """
        An interface with a global address: no warning.
        """
        from migrate.interfaces import LocalAddress

        endpoint, inner, d = self.listen("eth0", [LocalAddress("eth0", "192.0.2.7", 4)])
        self.successResultOf(d)
        self.assertEqual(self.warnings(), [])

    def test_boundToOneAddress(self) -> None:
        """
        A server bound to one address uses that one, whatever the
        interface: no warning.
        """
        endpoint, inner, d = self.listen("lo", [], host="192.0.2.7")
        self.successResultOf(d)
        self.assertEqual(self.warnings(), [])

    def test_noMonitor(self) -> None:
        """
        Publishing without a connectivity monitor publishes nothing: one
        warning says so.
        """
        endpoint, inner, d = self.listen("eth0", [], monitor=None)
        self.successResultOf(d)
        [warning] = self.warnings()
        self.assertIn("this server publishes nothing as server.mobile.example.", warning)
        self.assertIn("no connectivity monitor", warning)
        self.assertIn("monitor=none", warning)


class _ControlledEndpoint:
    """
    A client endpoint whose connects wait to be fired by the test.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.attempts: list[Any] = []
        self.cancelled = 0

    def connect(self, factory: Any) -> Any:
        from twisted.internet.defer import Deferred

        def cancel(d: Any) -> None:
            self.cancelled += 1

        d: Deferred[Any] = Deferred(cancel)
        self.attempts.append(d)
        return d


class LocatingEndpointTests(SynchronousTestCase):
    """
    L{LocatingEndpoint}: where the locator says, else as configured.
    """

    def setUp(self) -> None:
        from twisted.internet.task import Clock
        from twisted.logger import Logger

        import migrate._endpoints

        self.events: list[dict[str, Any]] = []
        self.patch(migrate._endpoints, "_log", Logger(observer=self.events.append))
        self.clock = Clock()
        self.made: dict[tuple[str, Any], _ControlledEndpoint] = {}
        self.fallbacks: dict[Any, _ControlledEndpoint] = {}

    def endpointAt(self, address: str, source: Any) -> _ControlledEndpoint:
        return self.made.setdefault((address, source), _ControlledEndpoint(address))

    def fallback(self, source: Any) -> _ControlledEndpoint:
        return self.fallbacks.setdefault(source, _ControlledEndpoint("configured"))

    def locating(self, locator: Any) -> Any:
        from migrate._endpoints import LocatingEndpoint

        return LocatingEndpoint(self.clock, locator, "s.mobile.example", self.endpointAt, self.fallback)

    def logged(self) -> list[str]:
        from twisted.logger import formatEvent

        return [formatEvent(e) for e in self.events]

    def test_racesLocated(self) -> None:
        """
        The addresses the locator gives race, a stagger apart; the first
        connection made is the result.  The endpoint as configured is not
        used.
        """
        from migrate.locate import StaticLocator

        endpoint = self.locating(StaticLocator({"s.mobile.example": ["10.0.0.1", "10.0.0.2"]}))
        d = endpoint.connect(object())
        first, second = self.made[("10.0.0.1", None)], self.made.get(("10.0.0.2", None))
        self.assertEqual(len(first.attempts), 1)
        self.assertEqual(second.attempts if second else [], [])
        self.clock.advance(0.05)
        second = self.made[("10.0.0.2", None)]
        self.assertEqual(len(second.attempts), 1)
        protocol = object()
        second.attempts[0].callback(protocol)
        self.assertIs(self.successResultOf(d), protocol)
        self.assertEqual(self.fallbacks, {})
        self.assertEqual(self.logged(), ["s.mobile.example is at ['10.0.0.1', '10.0.0.2'] (from the locator)"])

    def test_oneLocated(self) -> None:
        """
        One address: connected to at once; its failure is the result.
        """
        from twisted.internet.error import ConnectionRefusedError

        from migrate.locate import StaticLocator

        endpoint = self.locating(StaticLocator({"s.mobile.example": ["10.0.0.1"]}))
        d = endpoint.connect(object())
        self.made[("10.0.0.1", None)].attempts[0].errback(ConnectionRefusedError())
        self.failureResultOf(d, ConnectionRefusedError)
        self.assertEqual(self.fallbacks, {})

    def test_unknownName(self) -> None:
        """
        A name the locator has no address for: the endpoint as configured,
        said once in the log however many connections are made.
        """
        from migrate.locate import StaticLocator

        endpoint = self.locating(StaticLocator())
        protocol = object()
        for _ in range(3):
            d = endpoint.connect(object())
            self.fallbacks[None].attempts[-1].callback(protocol)
            self.assertIs(self.successResultOf(d), protocol)
        self.assertEqual(self.made, {})
        self.assertEqual(
            self.logged(),
            ["the locator has no address for s.mobile.example: looking it up through the system"],
        )

    def test_locatorFails(self) -> None:
        """
        A lookup that fails is logged; the endpoint as configured is used.
        """
        from twisted.internet.defer import fail

        from migrate.locate import LocatorError

        class Broken:
            def resolve(self, name: str, fresh: bool = False) -> Any:
                return fail(LocatorError("no answer"))

        d = self.locating(Broken()).connect(object())
        self.assertEqual(len(self.fallbacks[None].attempts), 1)
        self.assertNoResult(d)
        self.assertIn("lookup of s.mobile.example through the locator failed: no answer", self.logged())

    def test_boundTo(self) -> None:
        """
        Bound to a source address, the located endpoints and the
        configured one are made from it.
        """
        from migrate.locate import StaticLocator

        locating = self.locating(StaticLocator({"s.mobile.example": ["10.0.0.1"]}))
        locating.boundTo("192.0.2.9").connect(object())
        self.assertEqual(list(self.made), [("10.0.0.1", "192.0.2.9")])
        self.locating(StaticLocator()).boundTo("192.0.2.9").connect(object())
        self.assertEqual(list(self.fallbacks), ["192.0.2.9"])

    def test_cancelDuringLookup(self) -> None:
        """
        Cancelled while the locator has not answered: no connection is
        made when it does.
        """
        from twisted.internet.defer import CancelledError, Deferred

        lookup: Deferred[list[str]] = Deferred()

        class Slow:
            def resolve(self, name: str, fresh: bool = False) -> Any:
                return lookup

        d = self.locating(Slow()).connect(object())
        d.cancel()
        self.failureResultOf(d, CancelledError)
        lookup.callback(["10.0.0.1"])
        self.assertEqual(self.made, {})
        self.assertEqual(self.fallbacks, {})

    def test_cancelDuringConnect(self) -> None:
        """
        Cancelled while connecting: every attempt is cancelled.
        """
        from twisted.internet.defer import CancelledError

        from migrate.locate import StaticLocator

        d = self.locating(StaticLocator({"s.mobile.example": ["10.0.0.1", "10.0.0.2"]})).connect(object())
        self.clock.advance(0.05)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual([e.cancelled for e in self.made.values()], [1, 1])
        self.assertEqual(self.clock.getDelayedCalls(), [])


class LocatingStringTests(SynchronousTestCase):
    """
    Which client strings locate their host, and the endpoints they make.
    """

    LOCATOR = ":monitor=none:locator=10.77.9.2:zone=mobile.example."

    def parse(self, description: str) -> Any:
        return clientFromString(MemoryReactorClock(), description + self.LOCATOR)

    def test_tcp(self) -> None:
        """
        A C{tcp:} host in the zone (by keyword or position) is located:
        the endpoints to the addresses found keep the string's options, a
        source address binds them.
        """
        from migrate._endpoints import LocatingEndpoint

        for description in (
            "migrate:tcp:host=s.mobile.example:port=7001:timeout=7",
            "migrate:tcp:s.mobile.example:7001:timeout=7",
        ):
            ep = self.parse(description)
            self.assertIsInstance(ep.endpoint, LocatingEndpoint, description)
            self.assertEqual(ep.endpoint.name, "s.mobile.example")
            self.assertEqual(ep.peerName, "s.mobile.example")
            at = ep.endpoint.endpointAt("fd00::1", None)
            self.assertEqual((at._host, at._port, at._timeout, at._bindAddress), ("fd00::1", 7001, 7, None))
            bound = ep.endpoint.endpointAt("10.0.0.1", "192.0.2.9")
            self.assertEqual((bound._host, bound._bindAddress), ("10.0.0.1", ("192.0.2.9", 0)))
            configured = ep.endpoint.fallback(None)
            self.assertEqual(configured._host, "s.mobile.example")
            self.assertEqual(ep.endpointFor("192.0.2.9").source, "192.0.2.9")

    def test_tls(self) -> None:
        """
        A C{tls:} host in the zone is located: TLS over TCP to the address
        found, the certificate still checked against the name.
        """
        from migrate._endpoints import LocatingEndpoint

        ep = self.parse("migrate:tls:host=s.mobile.example:port=7001:timeout=7")
        self.assertIsInstance(ep.endpoint, LocatingEndpoint)
        at = ep.endpoint.endpointAt("10.0.0.1", "192.0.2.9")
        tcp = at._wrappedEndpoint
        self.assertEqual(
            (tcp._host, tcp._port, tcp._timeout, tcp._bindAddress), ("10.0.0.1", 7001, 7, ("192.0.2.9", 0))
        )
        # (That the certificate is checked against the name, not the
        # address, is shown with real connections in
        # tests.test_locate.FirstConnectionTests.)

    def test_notLocated(self) -> None:
        """
        An address, a name outside the zone, a C{tls:} string with its own
        C{endpoint=}, or no locator: the endpoint as configured only.
        """
        from migrate._endpoints import LocatingEndpoint

        for description in (
            "migrate:tcp:host=127.0.0.1:port=7001",
            "migrate:tcp:host=elsewhere.example:port=7001",
            "migrate:tls:host=s.mobile.example:port=7001:endpoint=tcp\\:127.0.0.1\\:7001",
        ):
            self.assertFalse(isinstance(self.parse(description).endpoint, LocatingEndpoint), description)
        ep = clientFromString(MemoryReactorClock(), "migrate:tcp:host=s.mobile.example:port=7001")
        self.assertNotIsInstance(ep.endpoint, LocatingEndpoint)
