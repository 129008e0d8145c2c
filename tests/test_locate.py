"""
Locators: the embedded DNS locator and the DNS locator client, over real
UDP on loopback: publishing with signed updates, looking up with TTLs, and
refusing forged, replayed, stale, foreign and too frequent updates.
"""

from __future__ import annotations

import base64
import os
import time
from typing import Any

import dns.message
import dns.name
import dns.rcode
import dns.tsigkeyring
import dns.update
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import deferLater
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from migrate.interfaces import ILocator
from migrate.errors import LocatorError
from migrate.locating.client import DNSLocator, StaticLocator
from migrate.locating.server import LocatorServer, RecordTable

SECRET = base64.b64encode(b"s" * 32).decode()
OTHER = base64.b64encode(b"o" * 32).decode()
ZONE = "mobile.example."


def signedUpdate(name: str, address: str, secret: str = SECRET, zone: str = ZONE) -> dns.update.UpdateMessage:
    u = dns.update.UpdateMessage(
        zone, keyring=dns.tsigkeyring.from_text({"laptop.": secret}), keyname="laptop."
    )
    u.replace(name, 30, "A", address)
    return u


def signedAt(update: dns.update.UpdateMessage, when: float) -> bytes:
    """
    The update's wire form, signed as if at C{when}.
    """
    original = time.time
    time.time = lambda: when  # type: ignore[assignment]
    try:
        return update.to_wire()
    finally:
        time.time = original  # type: ignore[assignment]


class ServerTests(SynchronousTestCase):
    """
    The locator's answers, message by message.
    """

    def setUp(self) -> None:
        self.clock = __import__("twisted.internet.task", fromlist=["Clock"]).Clock()
        self.clock.advance(time.time())
        self.server = LocatorServer(self.clock, ZONE, {"laptop.": SECRET}, RecordTable(None), rate=3)

    def rcode(self, wire: bytes) -> int:
        answer = self.server.respond(wire)
        assert answer is not None
        return answer[3] & 0xF

    def lookup(self, name: str) -> list[str]:
        q = dns.message.make_query(name, "A")
        answer = dns.message.from_wire(self.server.respond(q.to_wire()))
        return [rd.to_text() for rrset in answer.answer for rd in rrset]

    def test_update(self) -> None:
        """
        A signed update is applied; lookups return it.
        """
        self.assertEqual(self.rcode(signedUpdate("host.mobile.example.", "10.1.1.1").to_wire()), dns.rcode.NOERROR)
        self.assertEqual(self.lookup("host.mobile.example."), ["10.1.1.1"])

    def test_forged(self) -> None:
        """
        An update signed with an unknown secret is refused (NOTAUTH) and
        changes nothing.
        """
        wire = signedUpdate("host.mobile.example.", "192.0.2.66", secret=OTHER).to_wire()
        self.assertEqual(self.rcode(wire), dns.rcode.NOTAUTH)
        self.assertEqual(self.lookup("host.mobile.example."), [])

    def test_unsigned(self) -> None:
        """
        An unsigned update is refused.
        """
        u = dns.update.UpdateMessage(ZONE)
        u.replace("host", 30, "A", "192.0.2.66")
        self.assertEqual(self.rcode(u.to_wire()), dns.rcode.REFUSED)
        self.assertEqual(self.lookup("host.mobile.example."), [])

    def test_replayed(self) -> None:
        """
        The same signed update sent again is refused, even within the
        signature's time window; a newer one is accepted.
        """
        first = signedUpdate("host.mobile.example.", "10.1.1.1").to_wire()
        self.assertEqual(self.rcode(first), dns.rcode.NOERROR)
        self.assertEqual(self.rcode(signedUpdate("host.mobile.example.", "10.2.2.2").to_wire()), dns.rcode.NOERROR)
        self.assertEqual(self.rcode(first), dns.rcode.REFUSED)
        self.assertEqual(self.lookup("host.mobile.example."), ["10.2.2.2"])

    def test_stale(self) -> None:
        """
        An update signed long ago (outside the TSIG time window) is refused.
        """
        old = signedAt(signedUpdate("host.mobile.example.", "192.0.2.66"), time.time() - 3600)
        self.assertEqual(self.rcode(old), dns.rcode.NOTAUTH)

    def test_outsideZone(self) -> None:
        """
        Updates for another zone, or names outside ours, are refused.
        """
        self.assertEqual(self.rcode(signedUpdate("host.other.", "10.1.1.1", zone="other.").to_wire()), dns.rcode.NOTAUTH)
        q = dns.message.make_query("www.other.", "A")
        self.assertEqual(self.rcode(q.to_wire()), dns.rcode.REFUSED)

    def test_rateLimit(self) -> None:
        """
        A key may update only so often.
        """
        codes = [self.rcode(signedUpdate("h.mobile.example.", "10.0.0.%d" % i).to_wire()) for i in range(5)]
        self.assertEqual(codes, [0, 0, 0, dns.rcode.REFUSED, dns.rcode.REFUSED])
        self.clock.advance(61)
        self.assertEqual(self.rcode(signedUpdate("h.mobile.example.", "10.0.0.9").to_wire()), 0)

    def test_garbage(self) -> None:
        """
        Bytes that are not DNS get FORMERR or nothing, never a crash.
        """
        self.assertIsNone(self.server.respond(b"\x00"))
        self.assertEqual(self.rcode(b"\x12\x34\x00\x00" + b"\xff" * 20), dns.rcode.FORMERR)

    def test_nxdomain(self) -> None:
        """
        A name of the zone with no records is NXDOMAIN.
        """
        q = dns.message.make_query("nobody.mobile.example.", "A")
        self.assertEqual(self.rcode(q.to_wire()), dns.rcode.NXDOMAIN)


class ClientTests(TestCase):
    """
    L{DNSLocator} against the embedded server over real UDP.
    """

    timeout = 20

    def setUp(self) -> None:
        self.table = RecordTable(self.mktemp())
        self.server = LocatorServer(reactor, ZONE, {"laptop.": SECRET}, self.table)
        self.port = reactor.listenUDP(0, self.server, interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(self.port.stopListening)
        self.addCleanup(self.table.close)
        self.address = ("127.0.0.1", self.port.getHost().port)

    @inlineCallbacks
    def test_publishAndResolve(self) -> Any:
        """
        Published addresses are found; the answer is reused while its TTL
        lasts; a new publication is seen by the next lookup after it.
        """
        locator = DNSLocator(reactor, self.address, ZONE, "laptop.", SECRET, ttl=1)
        self.assertTrue(verifyObject(ILocator, locator))
        yield locator.publish("server.mobile.example.", ["10.77.0.1", "fd00::1"])
        found = yield locator.resolve("server.mobile.example.")
        self.assertEqual(sorted(found), ["10.77.0.1", "fd00::1"])
        other = DNSLocator(reactor, self.address, ZONE)
        yield locator.publish("server.mobile.example.", ["10.77.0.2"])
        self.assertEqual((yield other.resolve("server.mobile.example.")), ["10.77.0.2"])
        self.assertEqual((yield locator.resolve("server.mobile.example.")), ["10.77.0.2"])

    @inlineCallbacks
    def test_refusedPublish(self) -> Any:
        """
        Publishing with a wrong secret fails with an error that names the
        key and says what to check; lookups do not return what it tried to
        publish.
        """
        forger = DNSLocator(reactor, self.address, ZONE, "laptop.", OTHER)
        error = yield self.assertFailure(forger.publish("server.mobile.example.", ["192.0.2.66"]), LocatorError)
        self.assertEqual(
            str(error),
            "the locator refused the update: the TSIG key laptop. or its secret is wrong (BADSIG):"
            " check that the locator has this key with this secret",
        )
        self.assertEqual((yield DNSLocator(reactor, self.address, ZONE).resolve("server.mobile.example.")), [])

    @inlineCallbacks
    def test_unknownKey(self) -> Any:
        """
        Publishing with a key the locator does not have fails with an error
        that names the key (BADKEY).
        """
        stranger = DNSLocator(reactor, self.address, ZONE, "stranger.", SECRET)
        error = yield self.assertFailure(stranger.publish("server.mobile.example.", ["192.0.2.66"]), LocatorError)
        self.assertIn("it does not know the TSIG key stranger. (BADKEY)", str(error))

    @inlineCallbacks
    def test_otherZone(self) -> Any:
        """
        Publishing to a zone the locator does not serve fails with an error
        that names the zone (NOTAUTH, the answer signed and checked).
        """
        locator = DNSLocator(reactor, self.address, "elsewhere.example.", "laptop.", SECRET)
        error = yield self.assertFailure(locator.publish("server.elsewhere.example.", ["10.0.0.1"]), LocatorError)
        self.assertEqual(
            str(error), "the locator refused the update: it does not serve the zone elsewhere.example. (NOTAUTH)"
        )

    @inlineCallbacks
    def test_replayRefused(self) -> Any:
        """
        A REFUSED update (here, over the rate limit) says where to look.
        """
        self.server.rate = 1
        locator = DNSLocator(reactor, self.address, ZONE, "laptop.", SECRET)
        yield locator.publish("server.mobile.example.", ["10.0.0.1"])
        error = yield self.assertFailure(locator.publish("server.mobile.example.", ["10.0.0.2"]), LocatorError)
        self.assertIn("REFUSED", str(error))
        self.assertIn("see the locator's log", str(error))

    @inlineCallbacks
    def test_noAnswer(self) -> Any:
        """
        A locator that does not answer fails the publication after the
        timeout.
        """

        class Silent(DatagramProtocol):
            pass

        port = reactor.listenUDP(0, Silent(), interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(port.stopListening)
        locator = DNSLocator(reactor, ("127.0.0.1", port.getHost().port), ZONE, "laptop.", SECRET, timeout=0.2)
        yield self.assertFailure(locator.publish("x.mobile.example.", ["10.0.0.1"]), LocatorError)


class StaticTests(SynchronousTestCase):
    def test_static(self) -> None:
        """
        The static locator answers from its table and records publications.
        """
        s = StaticLocator({"a.": ["10.0.0.1"]})
        self.assertTrue(verifyObject(ILocator, s))
        self.assertEqual(self.successResultOf(s.resolve("a.")), ["10.0.0.1"])
        s.publish("b.", ["10.0.0.2"])
        self.assertEqual(self.successResultOf(s.resolve("b.")), ["10.0.0.2"])


def keyFile(case: SynchronousTestCase, text: str, mode: int = 0o600) -> str:
    """
    A file holding C{text}, of C{mode}.
    """
    path = os.path.abspath(case.mktemp())
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


class LocatorOptionsTests(SynchronousTestCase):
    """
    C{twistd migrate-locator}'s keys from a file, and its listeners.
    """

    def parse(self, *args: str) -> Any:
        from migrate.tap import LocatorOptions

        options = LocatorOptions()
        options.parseOptions(["--zone", "mobile.example", *args])
        return options

    def refused(self, *args: str) -> str:
        from twisted.python import usage

        return str(self.assertRaises(usage.UsageError, self.parse, *args))

    def test_keyFile(self) -> None:
        """
        A key file of mode 0600 gives its keys: NAME:SECRET a line, blank
        lines, comments and spaces around ignored; with --key too.
        """
        path = keyFile(self, "# the servers\n\nlaptop:%s\n  desk.:%s  \n" % (SECRET, OTHER))
        options = self.parse("--key-file", path, "--key", "extra:" + SECRET)
        self.assertEqual(options["keys"], {"laptop.": SECRET, "desk.": OTHER, "extra.": SECRET})

    def test_keyFileMode(self) -> None:
        """
        A key file that group or others can read (or write) is refused,
        with its mode and the fix.
        """
        for mode in [0o640, 0o604, 0o620, 0o644]:
            path = keyFile(self, "laptop:%s\n" % (SECRET,), mode)
            message = self.refused("--key-file", path)
            self.assertIn("has mode %04o" % (mode,), message)
            self.assertIn("chmod 600 " + path, message)

    def test_keyFileErrors(self) -> None:
        """
        A line that is not NAME:BASE64SECRET is refused with the file and
        line named and the secret not shown; so is a file with no key, or
        none at all.
        """
        path = keyFile(self, "laptop:%s\n# fine\ndesk:sec ret!\n" % (SECRET,))
        message = self.refused("--key-file", path)
        self.assertIn("--key-file %s, line 3: the secret for desk is not base64" % (path,), message)
        self.assertNotIn("sec ret", message)
        self.assertIn("line 1 takes", self.refused("--key-file", keyFile(self, "laptop\n")))
        self.assertIn("holds no key", self.refused("--key-file", keyFile(self, "# nothing\n\n")))
        missing = os.path.abspath(self.mktemp())
        self.assertIn("--key-file %s: No such file" % (missing,), self.refused("--key-file", missing))
        self.assertIn("--key-file or --key is required", self.refused())

    def test_udpAndTCP(self) -> None:
        """
        The service listens on UDP and TCP, same port and interface, with
        the TCP limits given.
        """
        from migrate.locating.server import LocatorServer, LocatorStreamFactory
        from migrate.tap import makeLocatorService

        path = keyFile(self, "laptop:%s\n" % (SECRET,))
        options = self.parse(
            "--key-file", path, "--port", "5353", "--interface", "127.0.0.2", "--tcp-connections", "9",
            "--tcp-per-address", "3", "--tcp-idle", "2.5",
        )
        from twisted.application.service import MultiService

        service = makeLocatorService(options)
        assert isinstance(service, MultiService)
        udp, tcp = service.getServiceNamed("udp"), service.getServiceNamed("tcp")
        self.assertEqual((udp.args[0], udp.kwargs), (5353, {"interface": "127.0.0.2"}))
        self.assertEqual((tcp.args[0], tcp.kwargs), (5353, {"interface": "127.0.0.2"}))
        server, streams = udp.args[1], tcp.args[1]
        self.assertIsInstance(server, LocatorServer)
        self.assertIsInstance(streams, LocatorStreamFactory)
        self.assertIs(streams.server, server)
        self.assertEqual(
            (streams.maxConnections, streams.maxPerAddress, streams.idleTimeout), (9, 3, 2.5)
        )
        self.assertEqual(list(server.keyring), [dns.name.from_text("laptop.")])
        server.table.close()


class TwistdLocatorTests(TestCase):
    timeout = 60

    @inlineCallbacks
    def test_twistdMigrateLocator(self) -> Any:
        """
        C{twistd migrate-locator}, its key in a file, serves a zone: a
        signed publication is accepted, a forged one refused, and lookups
        see only the first; a name with more addresses than fit in a
        datagram is found whole, over TCP; a client's first connection to a
        name only the locator knows succeeds.
        """
        import os
        import signal
        import socket
        import subprocess

        from .test_twistd import ENV, ROOT, TWISTD

        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        log = os.path.abspath(self.mktemp() + ".log")
        p = subprocess.Popen(
            TWISTD
            + ["-n", "--pidfile=", "--logfile=" + log, "migrate-locator", "--zone", "mobile.example",
               "--key-file", keyFile(self, "laptop:%s\n" % (SECRET,)), "--port", str(port),
               "--store", os.path.abspath(self.mktemp())],
            cwd=ROOT,
            env=ENV,
        )
        self.addCleanup(lambda: (p.send_signal(signal.SIGTERM), p.wait()))
        for _ in range(200):
            if os.path.exists(log) and open(log).read().count("starting on %d" % port) == 2:
                break
            yield deferLater(reactor, 0.05, lambda: None)
        where = ("127.0.0.1", port)
        yield DNSLocator(reactor, where, ZONE, "laptop.", SECRET).publish("laptop.mobile.example.", ["10.9.9.9"])
        yield self.assertFailure(
            DNSLocator(reactor, where, ZONE, "laptop.", OTHER).publish("laptop.mobile.example.", ["192.0.2.66"]),
            Exception,
        )
        found = yield DNSLocator(reactor, where, ZONE).resolve("laptop.mobile.example.")
        self.assertEqual(found, ["10.9.9.9"])
        self.assertIn("update refused", open(log).read())
        many = ["fd00::%x" % (i + 1,) for i in range(40)]
        yield DNSLocator(reactor, where, ZONE, "laptop.", SECRET).publish("many.mobile.example.", many)
        found = yield DNSLocator(reactor, where, ZONE).resolve("many.mobile.example.")
        self.assertEqual(sorted(found), sorted(many))
        # A first connection by a name only this locator knows.
        from twisted.internet.endpoints import clientFromString, serverFromString
        from twisted.internet.protocol import Factory

        from .helpers import Echo, Recorder

        server = yield serverFromString(reactor, "migrate:tcp:0:interface=127.0.0.1").listen(
            Factory.forProtocol(Echo)
        )
        self.addCleanup(server.stopListening)
        yield DNSLocator(reactor, where, ZONE, "laptop.", SECRET).publish(
            "server.mobile.example.", ["127.0.0.1"]
        )
        endpoint = clientFromString(
            reactor,
            "migrate:tcp:host=server.mobile.example:port=%d:locator=127.0.0.1:locatorPort=%d:zone=mobile.example."
            % (server.getHost().port, port),
        )
        proto = yield endpoint.connect(Factory.forProtocol(Recorder))
        proto.transport.write(b"found by name")
        from .test_loopback import waitFor

        yield waitFor(lambda: proto.received == b"found by name")
        proto.transport.loseConnection()
        yield proto.transport.whenEnded()


class BindTests(TestCase):
    """
    The DNS locator against a real BIND 9 authoritative server.
    """

    timeout = 60

    @inlineCallbacks
    def setUp(self) -> Any:
        import socket

        from twisted.trial.unittest import SkipTest

        from . import bind

        reason = bind.skipReason()
        if reason:
            raise SkipTest(reason)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        self.bind = bind.Bind(
            os.path.abspath(self.mktemp()), "127.0.0.1", self.port, ZONE, "laptop.", SECRET
        )
        self.addCleanup(self.bind.stop)
        self.where = ("127.0.0.1", self.port)
        probe = DNSLocator(reactor, self.where, ZONE, timeout=0.5)
        for _ in range(100):
            found = yield probe.resolve("ns.mobile.example.", True)
            if found:
                return
            yield deferLater(reactor, 0.1, lambda: None)
        self.fail("named did not start:\n" + self.bind.output())

    @inlineCallbacks
    def test_publishAndResolve(self) -> Any:
        """
        Signed updates published to BIND are found by lookups; a new one
        replaces the old.
        """
        locator = DNSLocator(reactor, self.where, ZONE, "laptop.", SECRET)
        yield locator.publish("server.mobile.example.", ["10.77.0.1"])
        self.assertEqual((yield locator.resolve("server.mobile.example.", True)), ["10.77.0.1"])
        yield locator.publish("server.mobile.example.", ["10.77.0.2"])
        self.assertEqual((yield locator.resolve("server.mobile.example.", True)), ["10.77.0.2"])

    @inlineCallbacks
    def test_truncatedOverTCP(self) -> Any:
        """
        A name with more addresses than fit in a datagram is found whole:
        the truncated UDP answer is asked again over TCP.
        """
        many = ["fd00::%x" % (i + 1,) for i in range(40)]
        locator = DNSLocator(reactor, self.where, ZONE, "laptop.", SECRET)
        yield locator.publish("many.mobile.example.", many)
        self.assertEqual(sorted((yield locator.resolve("many.mobile.example.", True))), sorted(many))

    @inlineCallbacks
    def test_forgedAndStale(self) -> Any:
        """
        BIND refuses an update signed with the wrong secret, and one signed
        outside the TSIG time window (a stale replay); lookups never return
        them.
        """
        good = DNSLocator(reactor, self.where, ZONE, "laptop.", SECRET)
        yield good.publish("server.mobile.example.", ["10.77.0.1"])
        forger = DNSLocator(reactor, self.where, ZONE, "laptop.", OTHER)
        error = yield self.assertFailure(forger.publish("server.mobile.example.", ["192.0.2.66"]), LocatorError)
        self.assertIn("the TSIG key laptop. or its secret is wrong (BADSIG)", str(error))
        stale = signedUpdate("server.mobile.example.", "192.0.2.67")
        wire = signedAt(stale, 1_000_000.0)
        import socket as socketModule

        s = socketModule.socket(socketModule.AF_INET, socketModule.SOCK_DGRAM)
        s.settimeout(5)
        s.sendto(wire, self.where)
        answer = s.recv(4096)
        s.close()
        self.assertNotEqual(answer[3] & 0xF, dns.rcode.NOERROR)
        found = yield good.resolve("server.mobile.example.", True)
        self.assertEqual(found, ["10.77.0.1"])
        self.flushLoggedErrors()


class FirstConnectionTests(TestCase):
    """
    A C{migrate:} client whose server is known only to the locator reaches
    it on its very first connection (not only on reconnects): a real
    embedded locator on loopback UDP, a real Migrate server, the client
    built from its endpoint string.
    """

    timeout = 30

    def setUp(self) -> None:
        self.table = RecordTable(None)
        self.server = LocatorServer(reactor, ZONE, {"laptop.": SECRET}, self.table)
        self.port = reactor.listenUDP(0, self.server, interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(self.port.stopListening)
        self.addCleanup(self.table.close)
        self.where = ("127.0.0.1", self.port.getHost().port)

    @inlineCallbacks
    def listen(self, description: str) -> Any:
        """
        A Migrate echo server listening on C{description}; its sessions are
        waited for at cleanup.
        """
        from twisted.internet.endpoints import serverFromString
        from twisted.internet.protocol import Factory

        from .helpers import Echo

        endpoint = serverFromString(reactor, description)
        port = yield endpoint.listen(Factory.forProtocol(Echo))
        self.addCleanup(port.stopListening)
        return endpoint, port

    @inlineCallbacks
    def echoesThrough(self, description: str, serverEndpoint: Any) -> Any:
        """
        Open a session with the client endpoint string C{description}, see
        bytes come back, and close it.
        """
        from twisted.internet.endpoints import clientFromString
        from twisted.internet.protocol import Factory

        from .helpers import Recorder
        from .test_loopback import waitFor

        client = clientFromString(reactor, description)
        proto = yield client.connect(Factory.forProtocol(Recorder))
        proto.transport.write(b"found it")
        yield waitFor(lambda: proto.received == b"found it")
        proto.transport.loseConnection()
        yield proto.transport.whenEnded()
        sessions = serverEndpoint.factory.sessions
        yield waitFor(lambda: all(s.ended for s in sessions.values()))
        return proto

    @inlineCallbacks
    def test_tcp(self) -> Any:
        """
        C{migrate:tcp:host=NAME:...:locator=...:zone=...}, NAME published
        only to the locator (the system cannot resolve it): the first
        connection goes where the locator says, and the session opens.
        """
        import socket

        name = "server.mobile.example"
        self.assertRaises(socket.gaierror, socket.getaddrinfo, name, 7001)
        serverEndpoint, port = yield self.listen("migrate:tcp:0:interface=127.0.0.1:monitor=none")
        yield DNSLocator(reactor, self.where, ZONE, "laptop.", SECRET).publish(name + ".", ["127.0.0.1"])
        yield self.echoesThrough(
            "migrate:tcp:host=%s:port=%d:monitor=none:locator=127.0.0.1:locatorPort=%d:zone=%s"
            % (name, port.getHost().port, self.where[1], ZONE),
            serverEndpoint,
        )

    @inlineCallbacks
    def test_tcpPositional(self) -> Any:
        """
        The same with the host and port given by position
        (C{migrate:tcp:NAME:PORT:...}), and one of the two published
        addresses leading nowhere: the addresses race, and the one where
        the server is wins.
        """
        name = "pos.mobile.example"
        serverEndpoint, port = yield self.listen("migrate:tcp:0:interface=127.0.0.1:monitor=none")
        # Nothing listens on 127.0.0.2: that address refuses at once.
        yield DNSLocator(reactor, self.where, ZONE, "laptop.", SECRET).publish(
            name + ".", ["127.0.0.2", "127.0.0.1"]
        )
        yield self.echoesThrough(
            "migrate:tcp:%s:%d:monitor=none:locator=127.0.0.1:locatorPort=%d:zone=%s"
            % (name, port.getHost().port, self.where[1], ZONE),
            serverEndpoint,
        )

    @inlineCallbacks
    def test_tls(self) -> Any:
        """
        C{migrate:tls:host=NAME:...} connects to the address the locator
        gives and still verifies the server's certificate against NAME.
        """
        from .certs import writeServerFiles

        name = "secure.mobile.example"
        caDir = os.path.abspath(self.mktemp())
        keyPath, certPath = writeServerFiles(os.path.abspath(self.mktemp()), "Test CA", name, caDir)
        serverEndpoint, port = yield self.listen(
            "migrate:ssl:0:interface=127.0.0.1:monitor=none:privateKey=%s:certKey=%s" % (keyPath, certPath)
        )
        yield DNSLocator(reactor, self.where, ZONE, "laptop.", SECRET).publish(name + ".", ["127.0.0.1"])
        yield self.echoesThrough(
            "migrate:tls:host=%s:port=%d:trustRoots=%s:monitor=none:locator=127.0.0.1:locatorPort=%d:zone=%s"
            % (name, port.getHost().port, caDir, self.where[1], ZONE),
            serverEndpoint,
        )

    @inlineCallbacks
    def test_tlsWrongName(self) -> Any:
        """
        A server whose certificate is for another name is refused, even at
        the address the locator gave for NAME.
        """
        from twisted.internet.endpoints import clientFromString
        from twisted.internet.protocol import Factory

        from .certs import writeServerFiles
        from .helpers import Recorder

        name = "secure.mobile.example"
        caDir = os.path.abspath(self.mktemp())
        keyPath, certPath = writeServerFiles(
            os.path.abspath(self.mktemp()), "Test CA", "impostor.mobile.example", caDir
        )
        serverEndpoint, port = yield self.listen(
            "migrate:ssl:0:interface=127.0.0.1:monitor=none:privateKey=%s:certKey=%s" % (keyPath, certPath)
        )
        yield DNSLocator(reactor, self.where, ZONE, "laptop.", SECRET).publish(name + ".", ["127.0.0.1"])
        client = clientFromString(
            reactor,
            "migrate:tls:host=%s:port=%d:trustRoots=%s:monitor=none:locator=127.0.0.1:locatorPort=%d:zone=%s"
            % (name, port.getHost().port, caDir, self.where[1], ZONE),
        )
        from migrate.errors import HandshakeError

        error = yield self.assertFailure(client.connect(Factory.forProtocol(Recorder)), HandshakeError)
        self.assertIn("DNSMismatch", str(error))
        self.assertIn("secure.mobile.example", str(error))
        self.assertEqual(serverEndpoint.factory.sessions, {})
        self.flushLoggedErrors()

    @inlineCallbacks
    def test_unknownToLocator(self) -> Any:
        """
        A name the locator has no address for is looked up through the
        system as before: the first connection fails with the system's
        answer (here: no such name), after asking the locator.
        """
        from twisted.internet.endpoints import clientFromString
        from twisted.internet.error import DNSLookupError
        from twisted.internet.protocol import Factory

        from .helpers import Recorder

        asked: list[str] = []
        respond = self.server.respond

        def spy(data: bytes, *args: Any, **kwargs: Any) -> Any:
            asked.append(str(dns.message.from_wire(data).question[0].name))
            return respond(data, *args, **kwargs)

        self.server.respond = spy  # type: ignore[method-assign]
        client = clientFromString(
            reactor,
            "migrate:tcp:host=nobody.mobile.example:port=7001:monitor=none:locator=127.0.0.1:"
            "locatorPort=%d:zone=%s" % (self.where[1], ZONE),
        )
        yield self.assertFailure(client.connect(Factory.forProtocol(Recorder)), DNSLookupError)
        self.assertIn("nobody.mobile.example.", asked)
