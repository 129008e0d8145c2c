"""
C{twistd migrate}: its options, and the forwarder it runs.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet import defer, reactor, task
from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.interfaces import IHalfCloseableProtocol, IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

from migrate import MigrateClientEndpoint, MigrateServerEndpoint, SessionOptions
from migrate._forward import ForwardingFactory
from migrate.tap import Options, makeService
from migrate.testing import CuttingRelay

from .helpers import Echo, Recorder
from .test_loopback import waitFor


class OptionsTests(SynchronousTestCase):
    def test_required(self) -> None:
        """
        --listen and --connect are required, with a usage error that says so.
        """
        e = self.assertRaises(usage.UsageError, Options().parseOptions, ["--listen", "tcp:1"])
        self.assertIn("--connect", str(e))
        e = self.assertRaises(usage.UsageError, Options().parseOptions, ["--connect", "tcp:1"])
        self.assertIn("--listen", str(e))

    def test_badSessionOption(self) -> None:
        """
        A session option with a bad value is a usage error naming it.
        """
        e = self.assertRaises(
            usage.UsageError,
            Options().parseOptions,
            ["--listen", "migrate:tcp:1", "--connect", "tcp:1", "--session-timeout", "x"],
        )
        self.assertIn("sessionTimeout", str(e))

    def test_sessionOptionsReachMigrateEndpoints(self) -> None:
        """
        Session options are added to C{migrate:} endpoint strings that do
        not set them, and to no other.
        """
        o = Options()
        o.parseOptions(
            [
                "--listen",
                "migrate:tcp:7001:highWater=5000",
                "--connect",
                "tcp:127.0.0.1:22",
                "--session-timeout",
                "60",
                "--high-water",
                "9000",
                "--no-store",
            ]
        )
        self.assertEqual(o["listen"], "migrate:tcp:7001:highWater=5000:sessionTimeout=60")
        self.assertEqual(o["connect"], "tcp:127.0.0.1:22")

    def test_longAbsencesByDefault(self) -> None:
        """
        Without options, C{twistd migrate} keeps a detached session for a
        day (not the library's 15 minutes), hibernating it into a store of
        its own under the user's state directory (C{$STATE_DIRECTORY},
        C{$XDG_STATE_HOME} or C{~/.local/state}), one per C{--listen}
        endpoint; C{--no-store} keeps sessions in memory only; the help
        says so.
        """
        import os

        from migrate.tap import defaultStoreDirectory

        o = Options()
        o.parseOptions(["--listen", "migrate:tcp:7001", "--connect", "tcp:127.0.0.1:22"])
        store = os.path.join(os.environ["XDG_STATE_HOME"], "migrate", "migrate_tcp_7001")
        self.assertEqual(
            o["listen"], "migrate:tcp:7001:sessionTimeout=86400.0:store=%s" % (store,)
        )
        self.assertEqual(o["listenEndpoint"].options.sessionTimeout, 86400.0)
        self.assertEqual(o["listenEndpoint"].store.directory, store)
        self.assertEqual(
            defaultStoreDirectory("migrate:tcp:7001", {"STATE_DIRECTORY": "/var/lib/m:/x"}),
            "/var/lib/m/migrate_tcp_7001",
        )
        self.assertEqual(
            defaultStoreDirectory("migrate:tcp:7001", {"HOME": "/home/u"}),
            "/home/u/.local/state/migrate/migrate_tcp_7001",
        )
        # Named after the kind, port and interface, never other options.
        self.assertEqual(
            defaultStoreDirectory(
                "migrate:tcp:port=7001:interface=127.0.0.1:tsigName=k.:tsigSecret=c2VjcmV0",
                {"XDG_STATE_HOME": "/s"},
            ),
            "/s/migrate/migrate_tcp_7001_127.0.0.1",
        )
        o = Options()
        o.parseOptions(
            ["--listen", "migrate:tcp:7001", "--connect", "tcp:127.0.0.1:22", "--no-store"]
        )
        self.assertEqual(o["listen"], "migrate:tcp:7001:sessionTimeout=86400.0")
        self.assertIn("(default 86400.0)", str(Options()))

    def test_advertiseAndStoreEscaped(self) -> None:
        """
        C{--advertise} and C{--store} values reach the C{migrate:} endpoint
        whole, their colons escaped: an IPv4 and an IPv6 address with ports.
        """
        o = Options()
        o.parseOptions(
            [
                "--listen",
                "migrate:tcp:7001",
                "--connect",
                "tcp:127.0.0.1:22",
                "--advertise",
                "198.51.100.4:7001,[2001:db8::1]:7001",
            ]
        )
        self.assertEqual(
            o["listenEndpoint"].advertise.configured,
            ("198.51.100.4:7001", "[2001:db8::1]:7001"),
        )

    def test_badAdvertise(self) -> None:
        """
        A name in C{--advertise} is a usage error that says to give an
        address.
        """
        e = self.assertRaises(
            usage.UsageError,
            Options().parseOptions,
            ["--listen", "migrate:tcp:7001", "--connect", "tcp:127.0.0.1:22", "--advertise", "example.com:7001"],
        )
        self.assertIn("IP address", str(e))

    def test_badEndpoint(self) -> None:
        """
        An endpoint string that does not parse is a usage error naming the
        option, for each of the three.
        """
        good = {"--listen": "tcp:0", "--connect": "tcp:127.0.0.1:22", "--status": "tcp:0"}
        for name in good:
            args = dict(good, **{name: "nonsense:1"})
            e = self.assertRaises(
                usage.UsageError, Options().parseOptions, [x for kv in args.items() for x in kv]
            )
            self.assertIn("bad %s endpoint" % (name,), str(e))

    def test_makeService(self) -> None:
        """
        The service forwards, and serves the live view when asked; the
        registry observes the Migrate endpoints.
        """
        o = Options()
        o.parseOptions(
            ["--listen", "migrate:tcp:0", "--connect", "tcp:127.0.0.1:22", "--status", "tcp:0"]
        )
        top = makeService(o)
        self.assertEqual(len(list(top)), 2)
        self.assertIn(top.registry, o["listenEndpoint"].observers)

    def parseStatus(self, *extra: str) -> Options:
        """
        Parse options with a live view.

        @param extra: the status options (C{--status ...} among them).
        @return: the parsed options.
        """
        o = Options()
        o.parseOptions(["--listen", "tcp:0", "--connect", "tcp:127.0.0.1:22"] + list(extra))
        return o

    def statusResource(self, options: Options) -> Any:
        """
        Build the service and find its status resource.

        @param options: parsed options with C{--status}.
        @return: the L{StatusResource} the live view serves.
        """
        top: Any = makeService(options)
        return list(top)[1].factory.resource

    def test_statusLoopbackByDefault(self) -> None:
        """
        C{--status} as a bare port or a C{tcp:}/C{tcp6:}/C{ssl:} string
        without an interface listens on loopback only.
        """
        for given, interface in (
            ("17080", "127.0.0.1"),
            ("tcp:17080", "127.0.0.1"),
            ("tcp:port=17080:backlog=5", "127.0.0.1"),
            ("tcp6:17080", "::1"),
        ):
            o = self.parseStatus("--status", given)
            self.assertEqual(o["statusEndpoint"]._interface, interface, given)
            self.assertEqual(o["statusEndpoint"]._port, 17080)

    def test_statusExplicitInterfaceKept(self) -> None:
        """
        An endpoint string that names its interface, by keyword or by
        position, is kept as given: C{interface=0.0.0.0} listens everywhere.
        """
        for given, interface in (
            ("tcp:17080:interface=0.0.0.0", "0.0.0.0"),
            ("tcp:17080:0.0.0.0", "0.0.0.0"),
            ("tcp:17080:interface=192.0.2.1", "192.0.2.1"),
            ("tcp6:17080:interface=\\:\\:", "::"),
            ("tcp6:17080:50:\\:\\:", "::"),
        ):
            o = self.parseStatus("--status", given)
            self.assertEqual(o["status"], given)
            self.assertEqual(o["statusEndpoint"]._interface, interface, given)

    def test_statusHost(self) -> None:
        """
        C{--status-host} is repeatable and comma-separated, its names made
        canonical and given to the status resource; a name with a port, or
        without C{--status}, is a usage error.
        """
        o = self.parseStatus(
            "--status", "tcp:0", "--status-host", "Status.Example,[::1]", "--status-host", "192.0.2.1"
        )
        self.assertEqual(o["statusHosts"], ["status.example", "::1", "192.0.2.1"])
        resource = self.statusResource(o)
        self.assertEqual(resource.allowedHosts, {"localhost", "status.example", "::1", "192.0.2.1"})
        self.assertIsNone(resource.credentials)
        e = self.assertRaises(usage.UsageError, self.parseStatus, "--status", "tcp:0", "--status-host", "a.example:80")
        self.assertIn("without a port", str(e))
        e = self.assertRaises(usage.UsageError, self.parseStatus, "--status-host", "a.example")
        self.assertIn("--status-host needs --status", str(e))

    def test_statusAuth(self) -> None:
        """
        C{--status-auth} reads C{user:password} lines from a file only its
        owner may read and gives them to the status resource; a file its
        group or others may read is a usage error that says what to do; so
        are a missing file and C{--status-auth} without C{--status}.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("ops:s3cret\n")
        os.chmod(path, 0o600)
        o = self.parseStatus("--status", "tcp:0", "--status-auth", path)
        resource = self.statusResource(o)
        self.assertEqual(resource.credentials, {"ops": "s3cret"})
        os.chmod(path, 0o640)
        e = self.assertRaises(usage.UsageError, self.parseStatus, "--status", "tcp:0", "--status-auth", path)
        self.assertIn("--status-auth: %s" % (path,), str(e))
        self.assertIn("group or others may read", str(e))
        self.assertIn("chmod 600 %s" % (path,), str(e))
        e = self.assertRaises(
            usage.UsageError, self.parseStatus, "--status", "tcp:0", "--status-auth", self.mktemp()
        )
        self.assertIn("cannot read", str(e))
        e = self.assertRaises(usage.UsageError, self.parseStatus, "--status-auth", path)
        self.assertIn("--status-auth needs --status", str(e))

    def test_help(self) -> None:
        """
        Every session option is documented in --help.
        """
        text = str(Options())
        for name in ("--session-timeout", "--hard-cap", "--high-water", "--listen"):
            self.assertIn(name, text)

    def test_version(self) -> None:
        """
        C{twistd migrate --version} prints Migrate's version (that of the
        installed distribution, also C{migrate.__version__}) and Twisted's,
        and exits 0.
        """
        import contextlib
        import io
        from importlib.metadata import version

        import twisted

        import migrate

        self.assertEqual(migrate.__version__, version("txmigrate"))
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            e = self.assertRaises(SystemExit, Options().parseOptions, ["--version"])
        self.assertEqual(e.code, 0)
        self.assertEqual(
            out.getvalue(), "migrate %s (Twisted %s)\n" % (migrate.__version__, twisted.__version__)
        )


@implementer(IHalfCloseableProtocol)
class HalfClosingClient(Recorder):
    readLost = False

    def readConnectionLost(self) -> None:
        self.readLost = True

    def writeConnectionLost(self) -> None:
        pass


class ForwarderTests(TestCase):
    timeout = 30

    @defer.inlineCallbacks
    def test_pairThroughCuts(self) -> Any:
        """
        A plain TCP client talks to a plain TCP echo service through the two
        forwarders (mobile side and server side) joined by a Migrate session
        that a relay keeps cutting; every byte arrives once and the client's
        half-close travels to the service and back.
        """
        backendPort = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            Factory.forProtocol(Echo)
        )
        self.addCleanup(backendPort.stopListening)
        serverSide = yield MigrateServerEndpoint(
            reactor, TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
        ).listen(
            ForwardingFactory(
                TCP4ClientEndpoint(reactor, "127.0.0.1", backendPort.getHost().port)
            )
        )
        self.addCleanup(serverSide.stopListening)
        relay = CuttingRelay(
            lambda: TCP4ClientEndpoint(reactor, "127.0.0.1", serverSide.getHost().port)
        )
        relayPort = reactor.listenTCP(0, relay.factory, interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(relayPort.stopListening)
        mobile = MigrateClientEndpoint(
            reactor,
            TCP4ClientEndpoint(reactor, "127.0.0.1", relayPort.getHost().port),
            SessionOptions(reconnectInitial=0.01, reconnectMax=0.1),
        )
        mobilePort = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            ForwardingFactory(mobile)
        )
        self.addCleanup(mobilePort.stopListening)

        client = yield TCP4ClientEndpoint(
            reactor, "127.0.0.1", mobilePort.getHost().port
        ).connect(Factory.forProtocol(HalfClosingClient))
        data = bytes(range(256)) * 2000
        for i in range(0, len(data), 8192):
            client.transport.write(data[i : i + 8192])
        for n in (20000, 150000, 300000):
            relay.cutAfter(n)
            yield waitFor(lambda: relay._cutAt is None or len(client.received) >= len(data))
        yield waitFor(lambda: len(client.received) >= len(data))
        self.assertEqual(client.received, data)
        self.assertGreater(relay.cuts, 0)
        client.transport.loseWriteConnection()
        yield waitFor(lambda: bool(client.lost) or client.readLost)
        self.assertTrue(client.readLost or client.lost)
        client.transport.loseConnection()
        yield waitFor(lambda: bool(client.lost))
        whenEnded = getattr(client.transport, "whenEnded", None)
        if whenEnded is not None:
            yield whenEnded()


@implementer(IPushProducer)
class Firehose(Protocol):
    """
    A backend that writes as fast as its transport lets it.
    """

    instances: list["Firehose"] = []

    def __init__(self) -> None:
        self.written = 0
        self.paused = False
        Firehose.instances.append(self)

    def connectionMade(self) -> None:
        self.transport.registerProducer(self, True)
        self.resumeProducing()

    def resumeProducing(self) -> None:
        self.paused = False
        while not self.paused and self.written < 200_000_000:
            self.transport.write(b"f" * 65536)
            self.written += 65536

    def pauseProducing(self) -> None:
        self.paused = True

    def stopProducing(self) -> None:
        self.paused = True


class FlowControlTests(TestCase):
    timeout = 60

    @inlineCallbacks
    def test_slowReader(self) -> Any:
        """
        A reader that stops reading stops the writer at the other end, two
        forwarders and a Migrate session away: the writer is paused, the
        session's buffer stays near its high-water mark, nothing grows
        without bound; when the reader resumes, the bytes flow again.
        """
        Firehose.instances = []
        options = SessionOptions(highWater=1 << 20)
        backend = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            Factory.forProtocol(Firehose)
        )
        self.addCleanup(backend.stopListening)
        serverSide = MigrateServerEndpoint(
            reactor, TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1"), options
        )
        serverPort = yield serverSide.listen(
            ForwardingFactory(TCP4ClientEndpoint(reactor, "127.0.0.1", backend.getHost().port))
        )
        self.addCleanup(serverPort.stopListening)
        mobile = MigrateClientEndpoint(
            reactor, TCP4ClientEndpoint(reactor, "127.0.0.1", serverPort.getHost().port), options, monitor=None
        )
        mobilePort = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            ForwardingFactory(mobile)
        )
        self.addCleanup(mobilePort.stopListening)
        reader = yield TCP4ClientEndpoint(reactor, "127.0.0.1", mobilePort.getHost().port).connect(
            Factory.forProtocol(Recorder)
        )
        reader.chunks = []
        counted = {"n": 0}

        def count(data: bytes) -> None:
            counted["n"] += len(data)

        reader.dataReceived = count
        yield waitFor(lambda: counted["n"] > 1_000_000)
        reader.transport.pauseProducing()
        yield task.deferLater(reactor, 1.5, lambda: None)
        hose = Firehose.instances[0]
        self.assertTrue(hose.paused)
        writtenWhilePaused = hose.written
        yield task.deferLater(reactor, 0.5, lambda: None)
        self.assertEqual(hose.written, writtenWhilePaused)
        # Bounded: what the writer got out is what the reader took plus the
        # buffers on the way (kernel socket buffers, the forwarders'
        # transports, the session's unacknowledged bytes), far below the
        # 200 MB it would write.
        self.assertLess(hose.written - counted["n"], 40_000_000)
        session = list(serverSide.factory.sessions.values())[0]  # type: ignore[union-attr]
        self.assertLessEqual(session.engine.buffered, options.highWater + options.sendFrame + 65536)
        reader.transport.resumeProducing()
        before = counted["n"]
        yield waitFor(lambda: counted["n"] > before + 5_000_000)
        # End both ends: the writer's stream, and the reader.
        hose.transport.abortConnection()
        reader.transport.abortConnection()
        yield waitFor(lambda: all(s.ended for s in serverSide.factory.sessions.values()))  # type: ignore[union-attr]


class LocatorTapTests(SynchronousTestCase):
    def test_options(self) -> None:
        """
        The locator's options: zone and keys required, keys checked.
        """
        from migrate.tap import LocatorOptions, makeLocatorService

        self.assertRaises(usage.UsageError, LocatorOptions().parseOptions, ["--key", "a:c2VjcmV0"])
        self.assertRaises(usage.UsageError, LocatorOptions().parseOptions, ["--zone", "m.example"])
        e = self.assertRaises(
            usage.UsageError, LocatorOptions().parseOptions, ["--zone", "m.example", "--key", "a:not base64!"]
        )
        self.assertIn("not base64", str(e))
        o = LocatorOptions()
        o.parseOptions(["--zone", "m.example", "--key", "laptop:c2VjcmV0", "--port", "5353"])
        self.assertEqual(o["zone"], "m.example.")
        self.assertEqual(o["keys"], {"laptop.": "c2VjcmV0"})
        service = makeLocatorService(o)
        udp, tcp = service.getServiceNamed("udp"), service.getServiceNamed("tcp")  # type: ignore[attr-defined]
        self.assertEqual((udp.args[0], tcp.args[0]), (5353, 5353))


class UsageTextTests(SynchronousTestCase):
    """
    What C{twistd migrate} and C{twistd migrate-locator} show above a
    usage error (one line), and for C{--help} (everything).
    """

    def test_briefAboveErrors(self) -> None:
        """
        C{getUsage}, which C{twistd} prints above a subcommand's usage
        error, is one line: the synopsis and where the whole help is.
        """
        from migrate.tap import LocatorOptions

        for options, command in ((Options(), "migrate"), (LocatorOptions(), "migrate-locator")):
            text = options.getUsage()
            self.assertEqual(len(text.splitlines()), 1, text)
            self.assertIn("%s %s" % (command, options.synopsis), text)
            self.assertIn("twistd %s --help lists every option" % (command,), text)

    def test_helpIsWhole(self) -> None:
        """
        C{--help} still prints every option, and exits 0.
        """
        import contextlib
        import io

        from migrate.tap import LocatorOptions

        for options, names in (
            (Options(), ("--session-timeout", "--listen", "--status-auth")),
            (LocatorOptions(), ("--zone", "--key-file", "--tcp-idle")),
        ):
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                e = self.assertRaises(SystemExit, options.parseOptions, ["--help"])
            self.assertEqual(e.code, 0)
            for name in names:
                self.assertIn(name, out.getvalue())
            self.assertEqual(out.getvalue(), str(options) + "\n")
            self.assertGreater(len(out.getvalue().splitlines()), 10)

    def test_badEndpointHidesSecrets(self) -> None:
        """
        The usage error for an endpoint string that does not parse names
        the option, shows the string with its secrets hidden, and says
        what is wrong.
        """
        from migrate.tap import _badEndpoint

        error = _badEndpoint(
            "--listen",
            "migrate:tcp:7001:tsigSecret=c2VjcmV0:bogus=1",
            ValueError("migrate: inner endpoint tcp:7001:bogus=1: unknown option bogus="),
        )
        self.assertEqual(
            str(error),
            "bad --listen endpoint 'migrate:tcp:7001:tsigSecret=***:bogus=1': migrate: inner endpoint"
            " tcp:7001:bogus=1: unknown option bogus=",
        )

    def test_parsedEndpointHidesSecrets(self) -> None:
        """
        A bad C{--connect} string holding a TSIG secret is a usage error
        that does not show the secret.
        """
        secret = "c2VjcmV0LXRoYXQtbXVzdC1uZXZlci1zaG93"
        e = self.assertRaises(
            usage.UsageError,
            Options().parseOptions,
            [
                "--listen",
                "tcp:0",
                "--connect",
                "migrate:tcp:host=a.mobile.example:port=1:locator=127.0.0.1:zone=mobile.example.:"
                "tsigName=k.:tsigSecret=%s:bogus=1" % (secret,),
            ],
        )
        self.assertIn("bad --connect endpoint", str(e))
        self.assertIn("unknown option bogus=", str(e))
        self.assertNotIn(secret, str(e))

