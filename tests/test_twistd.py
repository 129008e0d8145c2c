"""
C{twistd migrate} end to end, with real processes: a plain-socket echo
service, the two forwarders (server side and mobile side), a plain-socket
client, and between the forwarders a relay that keeps cutting (on loopback)
or an address change (in network namespaces).
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from typing import Any

from twisted.internet import reactor, task
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import SkipTest, TestCase

from migrate.testing import CuttingRelay

from . import netns
from .helpers import freePort
from .test_loopback import waitFor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
ENV = dict(os.environ, PYTHONPATH=ROOT)


class Processes(TestCase):
    timeout = 120

    def spawn(self, args: list[str], ns: str | None = None, log: str | None = None) -> subprocess.Popen[bytes]:
        cmd = (["ip", "netns", "exec", ns] if ns else []) + args
        out = open(log, "wb") if log else subprocess.DEVNULL
        p = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.PIPE if log is None else out, stderr=subprocess.STDOUT)
        self.__dict__.setdefault("_processes", []).append(p)

        def stop() -> None:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            if p.stdout is not None:
                p.stdout.close()

        self.addCleanup(stop)
        return p

    def twistd(self, name: str, args: list[str], ns: str | None = None) -> str:
        log = os.path.abspath(self.mktemp() + "-" + name + ".log")
        self.spawn(TWISTD + ["-n", "--pidfile=", "--logfile=" + log, "migrate"] + args, ns, log)
        return log

    def waitForLog(self, log: str, text: str, count: int = 1, timeout: float = 20) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        end = time.monotonic() + timeout

        def check() -> None:
            content = open(log).read() if os.path.exists(log) else ""
            if content.count(text) >= count:
                d.callback(None)
            elif time.monotonic() > end:
                d.errback(AssertionError("%r not in %s:\n%s" % (text, log, content)))
            else:
                reactor.callLater(0.05, check)  # type: ignore[attr-defined]

        check()
        return d

    def echo(self, ns: str | None = None) -> tuple[int, subprocess.Popen[bytes]]:
        p = self.spawn([sys.executable, os.path.join(ROOT, "tests", "e2e_echo.py")], ns)
        assert p.stdout is not None
        ready, _, _ = select.select([p.stdout], [], [], 20)
        self.assertTrue(ready, "the echo service did not start")
        return int(p.stdout.readline()), p


class LoopbackTests(Processes):
    @inlineCallbacks
    def test_cutsAndStatus(self) -> Any:
        """
        A non-Twisted client's stream through the forwarder pair comes back
        byte for byte while the relay between them cuts every 0.2 s; the
        backend connection is opened once; the live view shows the session
        with its handoffs, in JSON and as the CLI's table; the log has a
        structured line per state change.
        """
        echoPort, echoProc = self.echo()
        serverPort, mobilePort, statusPort = freePort(), freePort(), freePort()
        serverLog = self.twistd(
            "server",
            ["--listen", "migrate:tcp:%d:interface=127.0.0.1" % serverPort, "--connect", "tcp:127.0.0.1:%d" % echoPort],
        )
        relay = CuttingRelay(lambda: TCP4ClientEndpoint(reactor, "127.0.0.1", serverPort))
        relayPort = reactor.listenTCP(0, relay.factory, interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(relayPort.stopListening)
        self.addCleanup(relay.cutAll)
        mobileLog = self.twistd(
            "mobile",
            [
                "--listen", "tcp:%d:interface=127.0.0.1" % mobilePort,
                "--connect", "migrate:tcp:host=127.0.0.1:port=%d" % relayPort.getHost().port,
                "--reconnect-initial", "0.01",
                "--status", "tcp:%d:interface=127.0.0.1" % statusPort,
            ],
        )
        yield self.waitForLog(serverLog, "starting on %d" % serverPort)
        yield self.waitForLog(mobileLog, "starting on %d" % statusPort)

        # An idle connection through the pair: a session that stays live
        # while the live view is read.
        idle = yield TCP4ClientEndpoint(reactor, "127.0.0.1", mobilePort).connect(
            Factory.forProtocol(Protocol)
        )
        self.addCleanup(lambda: idle.transport.abortConnection())
        total = 3_000_000
        client = getProcessOutputAndValue(
            sys.executable,
            [os.path.join(ROOT, "tests", "e2e_client.py"), "127.0.0.1", str(mobilePort), str(total), "16384", "0.004"],
            env=ENV,
            path=ROOT,
        )
        cutter = task.LoopingCall(relay.cutAll)
        cutter.clock = reactor
        self.addCleanup(lambda: cutter.running and cutter.stop())
        yield task.deferLater(reactor, 0.3, lambda: None)
        cutter.start(0.2, now=True)
        out, err, code = yield getProcessOutputAndValue(
            sys.executable, ["-m", "migrate", "status", "http://127.0.0.1:%d/" % statusPort], env=ENV, path=ROOT
        )
        self.assertEqual(code, 0, err)
        self.assertRegex(out, rb"[12] live session\(s\), 0 hibernated")
        out, err, code = yield client
        cutter.stop()
        self.assertEqual(code, 0, out + err)
        result = json.loads(out.splitlines()[-1])
        self.assertEqual(result, dict(result, received=total, exact=True, eof=True))
        self.assertGreater(relay.cuts, 2)

        out, err, code = yield getProcessOutputAndValue(
            sys.executable, ["-m", "migrate", "status", "127.0.0.1:%d" % statusPort, "--json"], env=ENV, path=ROOT
        )
        report = json.loads(out)
        sessions = [
            s for s in report["sessions"] + report["ended"] if s["bytesSent"] >= total
        ]
        self.assertEqual(len(sessions), 1)
        self.assertGreater(sessions[0]["handoffs"], 1)
        self.assertEqual(len(report["sessions"]) + len(report["ended"]), 2)

        idleID = [s["id"] for s in report["sessions"] + report["ended"] if s["bytesSent"] < total][0]
        out, err, code = yield getProcessOutputAndValue(
            sys.executable, ["-m", "migrate", "expire", "127.0.0.1:%d" % statusPort, idleID], env=ENV, path=ROOT
        )
        self.assertEqual((code, out.strip()), (0, b"session %s expired" % idleID.encode()), err)
        # The expired session is listed as ended, with its reason and time,
        # in the JSON, the page and the CLI's table.
        out, err, code = yield getProcessOutputAndValue(
            sys.executable, ["-m", "migrate", "status", "127.0.0.1:%d" % statusPort, "--json"], env=ENV, path=ROOT
        )
        report = json.loads(out)
        (expired,) = [s for s in report["ended"] if s["id"] == idleID]
        self.assertEqual(expired["endCode"], "expired-by-operator")
        self.assertGreater(expired["endedAt"], 0)
        out, err, code = yield getProcessOutputAndValue(
            sys.executable, ["-m", "migrate", "status", "127.0.0.1:%d" % statusPort], env=ENV, path=ROOT
        )
        self.assertIn(idleID[:8].encode(), out)
        self.assertIn(b"expired-by-operator", out)
        out, err, code = yield getProcessOutputAndValue(
            sys.executable, ["-m", "migrate", "expire", "127.0.0.1:%d" % statusPort, "00" * 16], env=ENV, path=ROOT
        )
        self.assertEqual(code, 1)
        self.assertIn(b"no session", err)
        assert echoProc.stdout is not None
        echoProc.send_signal(signal.SIGTERM)
        echoProc.wait()
        # One backend connection per session (the transfer's and the idle
        # one's), however many carriers came and went.
        self.assertEqual(echoProc.stdout.read().count(b"connection"), 2)
        yield self.waitForLog(mobileLog, "ended", timeout=30)
        log = open(mobileLog).read()
        for word in ("opened", "detached", "resumed", "ended"):
            self.assertIn("session %s" % sessions[0]["id"], log)
            self.assertIn(word, log)

    @inlineCallbacks
    def test_stoppedServerTellsClients(self) -> Any:
        """
        A server forwarder stopped with SIGTERM tells the clients of its
        attached sessions that they end ("server shut down"): their
        applications hear it at once instead of retrying until the session
        times out.
        """
        from twisted.internet.endpoints import clientFromString

        from .helpers import Recorder

        echoPort, _ = self.echo()
        serverPort = freePort()
        log = self.twistd(
            "server",
            ["--listen", "migrate:tcp:%d:interface=127.0.0.1" % serverPort, "--connect", "tcp:127.0.0.1:%d" % echoPort],
        )
        yield self.waitForLog(log, "starting on %d" % serverPort)
        endpoint = clientFromString(reactor, "migrate:tcp:host=127.0.0.1:port=%d" % serverPort)
        proto = yield endpoint.connect(Factory.forProtocol(Recorder))
        proto.transport.write(b"ping")
        yield waitFor(lambda: proto.received == b"ping", 10)
        server = [p for p in self._processes if "--listen" in p.args][0]  # type: ignore[attr-defined]
        stoppedAt = time.monotonic()
        server.send_signal(signal.SIGTERM)
        yield waitFor(lambda: bool(proto.lost), 10)
        self.assertLess(time.monotonic() - stoppedAt, 1.0, "the client heard of the end more than 1 s after SIGTERM")
        self.assertIn("server shut down", proto.lost[0].getErrorMessage())
        # (twistd ends by the signal it was stopped with, as always.)
        self.assertEqual(server.wait(10), -signal.SIGTERM)

    @inlineCallbacks
    def test_drainOnStop(self) -> Any:
        """
        With C{--drain 30}, SIGTERM first stops new sessions (an opening is
        refused as busy, "server draining") while a live session goes on;
        once it ends, the process exits, long before the 30 s.
        """
        from twisted.internet.endpoints import clientFromString

        from .helpers import Recorder

        echoPort, _ = self.echo()
        serverPort = freePort()
        log = self.twistd(
            "server",
            [
                "--listen",
                "migrate:tcp:%d:interface=127.0.0.1" % serverPort,
                "--connect",
                "tcp:127.0.0.1:%d" % echoPort,
                "--drain",
                "30",
            ],
        )
        yield self.waitForLog(log, "starting on %d" % serverPort)
        endpoint = clientFromString(reactor, "migrate:tcp:host=127.0.0.1:port=%d:connectTimeout=1" % serverPort)
        proto = yield endpoint.connect(Factory.forProtocol(Recorder))
        proto.transport.write(b"one ")
        yield waitFor(lambda: proto.received == b"one ", 10)
        server = [p for p in self._processes if "--listen" in p.args][0]  # type: ignore[attr-defined]
        server.send_signal(signal.SIGTERM)
        yield self.waitForLog(log, "draining: no new sessions")
        refused = []
        try:
            yield endpoint.connect(Factory.forProtocol(Recorder))
        except Exception as e:
            refused.append(str(e))
        self.assertEqual(len(refused), 1)
        self.assertIn("server draining", refused[0])
        proto.transport.write(b"two")
        yield waitFor(lambda: proto.received == b"one two", 10)
        self.assertEqual(server.poll(), None)
        stoppedAt = time.monotonic()
        proto.transport.loseConnection()
        yield proto.transport.whenEnded()
        yield waitFor(lambda: server.poll() is not None, 10)
        self.assertLess(time.monotonic() - stoppedAt, 5.0)

    @inlineCallbacks
    def test_stoppedClientTellsServer(self) -> Any:
        """
        A mobile-side forwarder stopped with SIGTERM tells the server its
        sessions end ("client shut down"): the server's application hears
        it at once instead of keeping the session for its timeout.
        """
        from twisted.internet.endpoints import serverFromString

        from .helpers import Recorder

        apps: list[Recorder] = []

        def build() -> Recorder:
            apps.append(Recorder())
            return apps[-1]

        port = yield serverFromString(reactor, "migrate:tcp:0:interface=127.0.0.1").listen(
            Factory.forProtocol(build)
        )
        self.addCleanup(port.stopListening)
        mobilePort = freePort()
        log = self.twistd(
            "mobile",
            [
                "--listen",
                "tcp:%d:interface=127.0.0.1" % mobilePort,
                "--connect",
                "migrate:tcp:host=127.0.0.1:port=%d" % port.getHost().port,
            ],
        )
        yield self.waitForLog(log, "starting on %d" % mobilePort)
        user = yield TCP4ClientEndpoint(reactor, "127.0.0.1", mobilePort).connect(
            Factory.forProtocol(Protocol)
        )
        user.transport.write(b"hello")
        yield waitFor(lambda: bool(apps) and apps[0].received == b"hello", 10)
        mobile = [p for p in self._processes if "--listen" in p.args][0]  # type: ignore[attr-defined]
        stoppedAt = time.monotonic()
        mobile.send_signal(signal.SIGTERM)
        yield waitFor(lambda: bool(apps[0].lost), 10)
        self.assertLess(time.monotonic() - stoppedAt, 3.0)
        self.assertIn("client shut down", apps[0].lost[0].getErrorMessage())
        mobile.wait(10)
        user.transport.abortConnection()

    def test_portInUse(self) -> None:
        """
        A port in use (for --listen or --status) stops twistd with a
        non-zero exit and one line saying what could not listen, in the
        foreground and daemonized (whose parent reports it), leaving no
        pid file: never a process running on without its port.
        """
        import socket

        busy = socket.socket()
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        self.addCleanup(busy.close)
        port = busy.getsockname()[1]
        free = freePort()
        pidfile = os.path.abspath(self.mktemp() + ".pid")
        logfile = os.path.abspath(self.mktemp() + ".log")
        for mode, option, args in (
            (["-n", "--pidfile="], b"--listen", ["--listen", "migrate:tcp:%d:interface=127.0.0.1" % port]),
            (
                ["-n", "--pidfile="],
                b"--status",
                ["--listen", "migrate:tcp:%d:interface=127.0.0.1" % free, "--status", "%d" % port],
            ),
            (
                ["--pidfile=" + pidfile, "--logfile=" + logfile],
                b"--listen",
                ["--listen", "migrate:tcp:%d:interface=127.0.0.1" % port],
            ),
        ):
            result = subprocess.run(
                TWISTD + mode + ["migrate"] + args + ["--connect", "tcp:127.0.0.1:1"],
                capture_output=True,
                cwd=ROOT,
                env=ENV,
                timeout=60,
            )
            output = result.stdout + result.stderr
            self.assertEqual(result.returncode, 1, output)
            self.assertIn(option, output)
            self.assertIn(b"cannot listen", output)
            # (A daemon's parent shows the first 100 bytes of the error; the
            # rest is in the log, which the exiting daemon may still be
            # writing.)
            deadline = time.monotonic() + 10
            while True:
                logged = open(logfile, "rb").read() if os.path.exists(logfile) else b""
                if b"Address already in use" in output + logged or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            self.assertIn(b"Address already in use", output + logged)
            self.assertNotIn(b"Traceback", result.stdout + result.stderr if "-n" in mode else b"")
            self.assertFalse(os.path.exists(pidfile))

    def test_badOptions(self) -> None:
        """
        Bad options give a usage error naming the problem, not a traceback.
        """
        for args, message in (
            (["--listen", "tcp:1"], b"--connect is required"),
            (["--listen", "nonsense:1", "--connect", "tcp:127.0.0.1:1"], b"bad --listen endpoint"),
            (["--listen", "tcp:1", "--connect", "tcp:127.0.0.1:1", "--hard-cap", "lots"], b"hardCap"),
        ):
            result = subprocess.run(
                TWISTD + ["-n", "--pidfile=", "migrate"] + args,
                capture_output=True,
                cwd=ROOT,
                env=ENV,
                timeout=60,
            )
            output = result.stdout + result.stderr
            self.assertNotEqual(result.returncode, 0)
            self.assertIn(message, output)
            self.assertNotIn(b"Traceback", output)


class NamespaceTests(Processes):
    def setUp(self) -> None:
        reason = netns.skipReason()
        if reason:
            raise SkipTest(reason)
        self.topology = netns.Topology()
        self.addCleanup(self.topology.destroy)

    @inlineCallbacks
    def test_addressChange(self) -> Any:
        """
        The forwarders in two hosts; the mobile host's address is replaced
        and then its interface switched while a non-Twisted client streams
        through: the session follows each move and the stream comes back
        byte for byte.
        """
        topo = self.topology
        echoPort, _ = self.echo(topo.server)
        serverLog = self.twistd(
            "server",
            ["--listen", "migrate:tcp:7001:interface=%s" % topo.serviceAddress, "--connect", "tcp:127.0.0.1:%d" % echoPort],
            topo.server,
        )
        mobileLog = self.twistd(
            "mobile",
            ["--listen", "tcp:2222:interface=127.0.0.1", "--connect", "migrate:tcp:host=%s:port=7001" % topo.serviceAddress],
            topo.mobile,
        )
        yield self.waitForLog(serverLog, "starting on 7001")
        yield self.waitForLog(mobileLog, "starting on 2222")
        total = 3_000_000
        client = getProcessOutputAndValue(
            "/usr/bin/env",
            ["ip", "netns", "exec", topo.mobile, sys.executable, os.path.join(ROOT, "tests", "e2e_client.py"), "127.0.0.1", "2222", str(total), "16384", "0.006"],
            env=ENV,
            path=ROOT,
        )
        yield task.deferLater(reactor, 0.3, lambda: None)
        # Only link a left; its address is replaced (the session follows the
        # new address); then link b comes back and a goes (it moves to b).
        topo.setLink("b", False)
        yield task.deferLater(reactor, 0.2, lambda: None)
        topo.replaceAddress("a", 5)
        yield task.deferLater(reactor, 0.4, lambda: None)
        topo.setLink("b", True)
        topo.setLink("a", False)
        out, err, code = yield client
        self.assertEqual(code, 0, out + err)
        result = json.loads(out.splitlines()[-1])
        self.assertEqual(result, dict(result, received=total, exact=True, eof=True))
        log = open(serverLog).read()
        self.assertIn("resumed from 10.77.1.5", log)
        self.assertIn("resumed from 10.77.2.2", log)
