"""
C{twistd migrate --udp}'s forwarder (L{migrate._udpforward}): a plain UDP
client, the mobile side, the server side and a plain UDP service, all on
the loopback.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.protocol import DatagramProtocol
from twisted.trial.unittest import SynchronousTestCase, TestCase

from migrate import SessionOptions
from migrate._udpforward import checkUDPForward, makeUDPService, parseSide

from .test_datagram import LOOPBACK, Raw, waitFor


class EchoService(DatagramProtocol):
    """
    A plain UDP service: echoes, and remembers who asked.
    """

    def __init__(self) -> None:
        self.peers: set[Any] = set()

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self.peers.add(addr)
        self.transport.write(b"echo:" + datagram, addr)  # type: ignore[union-attr]


class ParseTests(SynchronousTestCase):
    """
    The C{udp:} and C{migrate-udp:} strings.
    """

    def test_sides(self) -> None:
        """
        Listening and connecting strings of both kinds, by position or
        keyword, with options.
        """
        listen, target = checkUDPForward(
            "udp:5353:interface=127.0.0.1", "migrate-udp:server.example:7053:keepaliveInterval=10"
        )
        self.assertEqual((listen.kind, listen.port, listen.interface), ("udp", 5353, "127.0.0.1"))
        self.assertEqual((target.host, target.port), ("server.example", 7053))
        self.assertEqual(target.options, {"keepaliveInterval": "10"})
        listen, target = checkUDPForward(
            "migrate-udp:port=7053:sendRate=1000000:monitor=none", "udp:host=\\:\\:1:port=53"
        )
        self.assertEqual((listen.kind, listen.port), ("migrate-udp", 7053))
        self.assertEqual((target.host, target.port), ("::1", 53))

    def test_refused(self) -> None:
        """
        Anything else is refused with what is expected.
        """
        for listen, connect, message in [
            ("udp:5353", "udp:127.0.0.1:53", "one of each"),
            ("migrate-udp:7053", "migrate-udp:h:1", "one of each"),
            ("tcp:5353", "migrate-udp:h:1", "give udp: or migrate-udp:"),
            ("udp:5353", "migrate-udp:h", "expected migrate-udp:HOST:PORT"),
            ("udp:99999", "migrate-udp:h:1", "is not a port"),
            ("udp:5353:host=x", "migrate-udp:h:1", "takes no host"),
            ("udp:5353", "migrate-udp:h:1:bogus=1", "unknown option 'bogus'"),
            ("udp:5353", "migrate-udp:h:1:sendRate=-1", "sendRate must be positive"),
            ("udp:5353", "migrate-udp:h:1:keepaliveInterval=x", "expected a number"),
            ("udp:5353:sendRate=1", "migrate-udp:h:1", "unknown option"),
            ("udp:5353", "migrate-udp:h:1:monitor=yes", "monitor= takes"),
        ]:
            with self.assertRaises(ValueError) as caught:
                checkUDPForward(listen, connect)
            self.assertIn(message, str(caught.exception), (listen, connect))

    def test_optionsApply(self) -> None:
        """
        The string's options override the ones given to the service.
        """
        from migrate._udpforward import _sessionOptions

        side = parseSide("migrate-udp:h:1:keepaliveInterval=7", False)
        options = _sessionOptions(side, SessionOptions(keepaliveInterval=3, deadAfter=5))
        self.assertEqual((options.keepaliveInterval, options.deadAfter), (7.0, 5.0))


    def test_serverOptions(self) -> None:
        """
        A listening C{migrate-udp:} side takes C{store=}, C{advertise=},
        C{publish=} and the locator options; a connecting one the locator
        options only.
        """
        listen, target = checkUDPForward(
            "migrate-udp:7053:store=/var/lib/m:advertise=none:locator=127.0.0.1:locatorPort=5300"
            ":zone=example.org:publish=s.example.org:tsigName=k:tsigSecret=c2VjcmV0",
            "udp:127.0.0.1:53",
        )
        self.assertEqual(listen.options["store"], "/var/lib/m")
        self.assertEqual(listen.options["publish"], "s.example.org")
        listen, target = checkUDPForward(
            "udp:5353", "migrate-udp:s.example.org:7053:locator=127.0.0.1:zone=example.org"
        )
        self.assertEqual(target.options["zone"], "example.org")

    def test_serverOptionsRefused(self) -> None:
        """
        Server options on a connecting side, and locator options that do
        not fit together, are refused.
        """
        for listen, connect, message in [
            ("udp:5353", "migrate-udp:h:1:store=/x", "store= is for a listening side"),
            ("udp:5353", "migrate-udp:h:1:publish=a.b", "publish= is for a listening side"),
            ("migrate-udp:1:store=", "udp:h:1", "store= needs a directory"),
            ("migrate-udp:1:publish=a.b", "udp:h:1", "publish= needs locator="),
            ("migrate-udp:1:zone=example.org", "udp:h:1", "need locator="),
            ("migrate-udp:1:locator=127.0.0.1", "udp:h:1", "needs zone="),
            (
                "migrate-udp:1:locator=127.0.0.1:zone=example.org:publish=a.example.org",
                "udp:h:1",
                "publishing needs tsigName=",
            ),
            ("udp:5353", "migrate-udp:h:1:locator=127.0.0.1:zone=example.org:tsigSecret=!!", "not base64"),
        ]:
            with self.assertRaises(ValueError) as caught:
                checkUDPForward(listen, connect)
            self.assertIn(message, str(caught.exception), (listen, connect))


class ServerOptionTests(TestCase):
    """
    The listening C{migrate-udp:} side's store, locator and publishing
    reach its L{DatagramPort}.
    """

    def test_store(self) -> None:
        """
        With C{store=DIRECTORY}, the port hibernates into an
        L{SQLiteSessionStore} there; with a locator and C{publish=}, it
        publishes there under that name.
        """
        from twisted.internet.defer import succeed

        from migrate.locate import DNSLocator
        from migrate.store import SQLiteSessionStore

        published: list[tuple[str, list[str]]] = []

        def publish(locator: DNSLocator, name: str, addresses: Any) -> Any:
            published.append((name, list(addresses)))
            return succeed(None)

        self.patch(DNSLocator, "publish", publish)
        directory = self.mktemp()
        server = makeUDPService(
            "migrate-udp:0:interface=127.0.0.1:monitor=none:store=%s:advertise=none"
            ":locator=127.0.0.1:locatorPort=1:zone=example.org:publish=s.example.org"
            ":tsigName=k:tsigSecret=c2VjcmV0" % (directory,),
            "udp:127.0.0.1:9",
        )
        server.startService()
        port = server.listening
        self.assertIsInstance(port.store, SQLiteSessionStore)
        self.assertEqual(port.store.directory, directory)
        [locator] = port.locators
        self.assertIsInstance(locator, DNSLocator)
        self.assertEqual(locator.server, ("127.0.0.1", 1))
        self.assertEqual(port.publishName, "s.example.org")
        self.assertEqual([name for name, _ in published], ["s.example.org"])
        return server.stopService()

    def test_noStore(self) -> None:
        """
        Without C{store=}, the port has no store and no locator.
        """
        server = makeUDPService("migrate-udp:0:interface=127.0.0.1:monitor=none", "udp:127.0.0.1:9")
        server.startService()
        self.assertIsNone(server.listening.store)
        self.assertEqual(server.listening.locators, [])
        return server.stopService()


class ForwardTests(TestCase):
    """
    A plain UDP client, through both forwarders, to a plain UDP service.
    """

    timeout = 20

    @inlineCallbacks
    def setUp(self) -> Any:
        self.service = EchoService()
        servicePort = reactor.listenUDP(0, self.service, interface=LOOPBACK)  # type: ignore[attr-defined]
        self.addCleanup(servicePort.stopListening)
        self.server = makeUDPService(
            "migrate-udp:0:interface=127.0.0.1:monitor=none",
            "udp:127.0.0.1:%d" % (servicePort.getHost().port,),
        )
        self.server.startService()
        self.addCleanup(self.server.stopService)
        self.mobile = makeUDPService(
            "udp:0:interface=127.0.0.1",
            "migrate-udp:127.0.0.1:%d:monitor=none:idleTimeout=0.3"
            % (self.server.listening.getHost().port,),
        )
        self.mobile.startService()
        self.addCleanup(self.mobile.stopService)
        self.entry = (LOOPBACK, self.mobile.listening.getHost().port)
        yield None

    def client(self) -> Raw:
        raw = Raw()
        port = reactor.listenUDP(0, raw, interface=LOOPBACK)  # type: ignore[attr-defined]
        self.addCleanup(port.stopListening)
        raw.port = port  # type: ignore[attr-defined]
        return raw

    @inlineCallbacks
    def test_forwarded(self) -> Any:
        """
        Datagrams sent before the session is open wait for it; each local
        peer gets its own session, and its own socket towards the service;
        answers find their way back.
        """
        one, two = self.client(), self.client()
        for i in range(3):
            one.port.write(b"one %d" % i, self.entry)  # type: ignore[attr-defined]
        two.port.write(b"two", self.entry)  # type: ignore[attr-defined]
        yield waitFor(lambda: len(one.received) == 3 and len(two.received) == 1)
        self.assertEqual(sorted(d for d, _ in one.received), [b"echo:one 0", b"echo:one 1", b"echo:one 2"])
        self.assertEqual(two.received[0], (b"echo:two", self.entry))
        self.assertEqual(len(self.server.listening.sessions), 2)
        self.assertEqual(len(self.service.peers), 2)

    @inlineCallbacks
    def test_idle(self) -> Any:
        """
        A local peer silent for C{idleTimeout}: its session ends on both
        sides, and its socket towards the service is closed; the next
        datagram opens a new one.
        """
        one = self.client()
        one.port.write(b"x", self.entry)  # type: ignore[attr-defined]
        yield waitFor(lambda: len(one.received) == 1)
        yield waitFor(lambda: not self.server.listening.sessions and not self.mobile.local.sessions, 3)
        one.port.write(b"y", self.entry)  # type: ignore[attr-defined]
        yield waitFor(lambda: len(one.received) == 2)
        self.assertEqual(len(self.service.peers), 2)


class StatusTests(TestCase):
    """
    The forwarders' sessions in the live view (C{--status}).
    """

    timeout = 20

    @inlineCallbacks
    def test_listed(self) -> Any:
        """
        With a registry, both forwarders' sessions are listed as datagram
        sessions (the server side's from its port too), with their
        datagrams; once idle they are listed as ended, cleanly.
        """
        from migrate._status import SessionRegistry

        service = EchoService()
        servicePort = reactor.listenUDP(0, service, interface=LOOPBACK)  # type: ignore[attr-defined]
        self.addCleanup(servicePort.stopListening)
        serverRegistry = SessionRegistry(reactor)  # type: ignore[arg-type]
        mobileRegistry = SessionRegistry(reactor)  # type: ignore[arg-type]
        server = makeUDPService(
            "migrate-udp:0:interface=127.0.0.1:monitor=none",
            "udp:127.0.0.1:%d" % (servicePort.getHost().port,),
            registry=serverRegistry,
        )
        server.startService()
        self.addCleanup(server.stopService)
        self.assertEqual(serverRegistry.datagramPorts, [server.listening])
        mobile = makeUDPService(
            "udp:0:interface=127.0.0.1",
            "migrate-udp:127.0.0.1:%d:monitor=none:idleTimeout=0.5" % (server.listening.getHost().port,),
            registry=mobileRegistry,
        )
        mobile.startService()
        self.addCleanup(mobile.stopService)
        raw = Raw()
        port = reactor.listenUDP(0, raw, interface=LOOPBACK)  # type: ignore[attr-defined]
        self.addCleanup(port.stopListening)
        port.write(b"x", (LOOPBACK, mobile.listening.getHost().port))
        yield waitFor(lambda: len(raw.received) == 1)
        [mobileEntry] = mobileRegistry.report()["sessions"]
        [serverEntry] = serverRegistry.report()["sessions"]
        self.assertEqual(mobileEntry["id"], serverEntry["id"])
        for entry, side in ((mobileEntry, "client"), (serverEntry, "server")):
            self.assertEqual((entry["kind"], entry["side"], entry["state"]), ("datagram", side, "attached"))
            self.assertEqual((entry["datagramsSent"], entry["datagramsReceived"]), (1, 1))
        yield waitFor(lambda: bool(serverRegistry.report()["ended"]) and bool(mobileRegistry.report()["ended"]), 3)
        for registry in (serverRegistry, mobileRegistry):
            [ended] = registry.report()["ended"]
            self.assertEqual((ended["kind"], ended["endCode"]), ("datagram", "closed"))


class RestartTests(TestCase):
    """
    A server forwarder with a C{store=}, stopped and started again on it:
    the mobile side holds on and its datagrams go through again.
    """

    timeout = 20

    @inlineCallbacks
    def test_restarted(self) -> Any:
        """
        Stopping checkpoints the session (its socket towards the service
        closed); the forwarder started again on the same port and store
        brings it back on the client's next datagram, with a new socket
        towards the service.
        """
        service = EchoService()
        servicePort = reactor.listenUDP(0, service, interface=LOOPBACK)  # type: ignore[attr-defined]
        self.addCleanup(servicePort.stopListening)
        directory = self.mktemp()
        target = "udp:127.0.0.1:%d" % (servicePort.getHost().port,)
        server = makeUDPService(
            "migrate-udp:0:interface=127.0.0.1:monitor=none:store=%s" % (directory,), target
        )
        server.startService()
        port = server.listening.getHost().port
        mobile = makeUDPService(
            "udp:0:interface=127.0.0.1",
            "migrate-udp:127.0.0.1:%d:monitor=none" % (port,),
        )
        mobile.startService()
        self.addCleanup(mobile.stopService)
        raw = Raw()
        rawPort = reactor.listenUDP(0, raw, interface=LOOPBACK)  # type: ignore[attr-defined]
        self.addCleanup(rawPort.stopListening)
        entry = (LOOPBACK, mobile.listening.getHost().port)
        rawPort.write(b"before", entry)
        yield waitFor(lambda: len(raw.received) == 1)
        [upstream] = server.listening.sessions.values()
        sid = upstream.conn.sessionID
        yield server.stopService()
        self.assertIsNone(upstream.protocol.port)
        again = makeUDPService(
            "migrate-udp:%d:interface=127.0.0.1:monitor=none:store=%s" % (port, directory), target
        )
        again.startService()
        self.addCleanup(again.stopService)
        yield waitFor(lambda: sid in again.listening.hibernated)
        rawPort.write(b"after", entry)
        yield waitFor(lambda: len(raw.received) == 2)
        self.assertEqual(raw.received[-1][0], b"echo:after")
        self.assertIn(sid, again.listening.sessions)
        self.assertEqual(len(mobile.local.sessions), 1)  # type: ignore[union-attr]
        self.assertEqual(len(service.peers), 2)
