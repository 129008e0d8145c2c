# -*- test-case-name: tests.test_multiplex -*-
"""
L{MultiplexingEndpoint}: many connections as channels of one session, and
C{twistd migrate --multiplex}.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from twisted.internet import defer, reactor, task
from twisted.internet.defer import inlineCallbacks
from twisted.internet.utils import getProcessOutputAndValue
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.protocol import Factory
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from migrate import MigrateClientEndpoint, MigrateServerEndpoint
from migrate._forward import ForwardingFactory
from migrate._multiplex import MultiplexingEndpoint
from migrate._options import SessionOptions
from migrate.testing import CuttingRelay

from . import netns
from .helpers import Echo, Pair, Recorder
from .test_tap import HalfClosingClient, waitFor
from .test_twistd import ENV, ROOT, Processes

SSHD = "/usr/sbin/sshd"


def _result(d: Any) -> list[Any]:
    out: list[Any] = []
    d.addBoth(out.append)
    return out


class MultiplexingEndpointTests(SynchronousTestCase):
    """
    The endpoint over an in-memory network.
    """

    def setUp(self) -> None:
        self.p = Pair()
        self.mux = MultiplexingEndpoint(self.p.endpoint)

    def connect(self) -> Any:
        results = _result(self.mux.connect(Factory.forProtocol(Recorder)))
        self.p.settle(0.01)
        self.assertEqual(len(results), 1)
        if isinstance(results[0], Failure):
            results[0].raiseException()
        return results[0]

    def test_oneSession(self) -> None:
        """
        Three connections are one session: its first stream and two
        channels; one handshake.
        """
        a, b, c = self.connect(), self.connect(), self.connect()
        self.assertEqual([x.transport.channel for x in (a, b, c)], [0, 1, 3])
        self.assertEqual(len({x.transport.sessionID for x in (a, b, c)}), 1)
        self.assertEqual(self.mux.sessions, 1)
        self.assertEqual(len(self.p.factory.sessions), 1)
        for i, x in enumerate((a, b, c)):
            x.transport.write(b"conn %d" % (i,))
        self.p.settle(0.1)
        self.assertEqual(
            sorted(s.received for s in self.p.servers), [b"conn 0", b"conn 1", b"conn 2"]
        )

    def test_connectsWhileOpening(self) -> None:
        """
        Connections asked for while the session is being opened wait for
        it and become its channels.
        """
        first = _result(self.mux.connect(Factory.forProtocol(Recorder)))
        second = _result(self.mux.connect(Factory.forProtocol(Recorder)))
        self.p.settle(0.01)
        self.assertEqual(first[0].transport.channel, 0)
        self.assertEqual(second[0].transport.channel, 1)
        self.assertEqual(self.mux.sessions, 1)

    def test_newSessionAfterEnd(self) -> None:
        """
        Once every connection of a session closed, the session ends, and
        the next connection opens a new one.
        """
        a, b = self.connect(), self.connect()
        a.transport.loseConnection()
        b.transport.loseConnection()
        self.p.settle(2)
        self.assertTrue(a.transport.state == "closed")
        c = self.connect()
        self.assertEqual(c.transport.channel, 0)
        self.assertNotEqual(c.transport.sessionID, a.transport.sessionID)
        self.assertEqual(self.mux.sessions, 2)

    def test_refusedChannelOpensSession(self) -> None:
        """
        A channel the server refuses (its limit reached) is opened as a new
        session instead.
        """
        self.p = Pair(serverOptions=SessionOptions(maxChannels=1))
        self.mux = MultiplexingEndpoint(self.p.endpoint)
        a, b, c = self.connect(), self.connect(), self.connect()
        self.assertEqual(b.transport.sessionID, a.transport.sessionID)
        self.assertNotEqual(c.transport.sessionID, a.transport.sessionID)
        self.assertEqual(c.transport.channel, 0)
        self.assertEqual(self.mux.sessions, 2)

    def test_oneResumePerCut(self) -> None:
        """
        However many connections, a cut costs one resume: the channels
        resume with their session.
        """
        conns = [self.connect() for _ in range(10)]
        for _ in range(3):
            self.p.net.cutAll()
            self.p.settle(2)
        self.assertEqual(conns[0].transport.handoffs, 3)
        self.assertEqual(conns[5].transport.handoffs, 3)
        self.assertEqual(len(self.p.factory.sessions), 1)
        for i, x in enumerate(conns):
            x.transport.write(b"%d" % (i,))
        self.p.settle(0.1)
        self.assertEqual(sorted(s.received for s in self.p.servers), sorted(b"%d" % i for i in range(10)))


class ForwardingTests(TestCase):
    """
    The forwarder with C{--multiplex}: plain TCP connections through one
    session, over real sockets and a relay that cuts it.
    """

    timeout = 60

    @defer.inlineCallbacks
    def test_connectionsThroughCuts(self) -> Any:
        """
        Three plain TCP clients talk to an echo service through the two
        forwarders, carried as channels of one session (default options)
        that a relay cuts three times while data is in flight: every byte
        arrives once, in order, on each connection, and each cut costs one
        resume.
        """
        backendPort = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            Factory.forProtocol(Echo)
        )
        self.addCleanup(backendPort.stopListening)
        server = MigrateServerEndpoint(reactor, TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1"))
        serverPort = yield server.listen(
            ForwardingFactory(TCP4ClientEndpoint(reactor, "127.0.0.1", backendPort.getHost().port))
        )
        self.addCleanup(serverPort.stopListening)
        relay = CuttingRelay(
            lambda: TCP4ClientEndpoint(reactor, "127.0.0.1", serverPort.getHost().port)
        )
        relayPort = reactor.listenTCP(0, relay.factory, interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(relayPort.stopListening)
        mobile = MigrateClientEndpoint(
            reactor, TCP4ClientEndpoint(reactor, "127.0.0.1", relayPort.getHost().port)
        )
        resumes: list[object] = []

        class Observer:
            def sessionResumed(self, *args: object) -> None:
                resumes.append(args)

        mobile.addObserver(Observer())
        mux = MultiplexingEndpoint(mobile)
        mobilePort = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            ForwardingFactory(mux)
        )
        self.addCleanup(mobilePort.stopListening)
        clients = []
        for _ in range(3):
            client = yield TCP4ClientEndpoint(reactor, "127.0.0.1", mobilePort.getHost().port).connect(
                Factory.forProtocol(HalfClosingClient)
            )
            clients.append(client)
        yield waitFor(lambda: len(server.factory.sessions) == 1 and mux.sessions == 1)  # type: ignore[union-attr]
        session = next(iter(server.factory.sessions.values()))  # type: ignore[union-attr]
        yield waitFor(lambda: session.channels is not None and len(session.channels) == 2)
        datas = [bytes([i]) * 1000 + bytes(range(256)) * 1000 for i in range(3)]
        third = len(datas[0]) // 3
        for phase in range(3):
            # A third of each stream goes out; the carrier is cut while it
            # is in flight (echoes and all).
            end = len(datas[0]) if phase == 2 else (phase + 1) * third
            for client, data in zip(clients, datas):
                piece = data[phase * third : end]
                for i in range(0, len(piece), 8192):
                    client.transport.write(piece[i : i + 8192])
            relay.cutAll()
            yield waitFor(lambda: len(resumes) == phase + 1, 20)
        yield waitFor(lambda: all(len(c.received) >= len(d) for c, d in zip(clients, datas)), 20)
        for client, data in zip(clients, datas):
            self.assertEqual(client.received, data)
        self.assertEqual(relay.cuts, 3)
        self.assertEqual(mux.sessions, 1)
        self.assertEqual(len(server.factory.sessions), 1)  # type: ignore[union-attr]
        ends = []
        for client in clients:
            client.transport.loseConnection()
        for client in clients:
            yield waitFor(lambda: bool(client.lost))
        ends.append(session.whenEnded())
        yield defer.gatherResults(ends)


class OptionsTests(SynchronousTestCase):
    """
    C{twistd migrate --multiplex}.
    """

    def test_needsMigrateConnect(self) -> None:
        """
        C{--multiplex} with a --connect endpoint that is not C{migrate:} is
        a usage error that says why.
        """
        from twisted.python import usage

        from migrate.tap import Options

        o = Options()
        e = self.assertRaises(
            usage.UsageError,
            o.parseOptions,
            ["--listen", "tcp:0", "--connect", "tcp:127.0.0.1:22", "--multiplex"],
        )
        self.assertIn("--multiplex needs a migrate: --connect endpoint", str(e))

    def test_wrapsTarget(self) -> None:
        """
        With C{--multiplex}, connections accepted on --listen are forwarded
        through a L{MultiplexingEndpoint} around the --connect endpoint.
        """
        from migrate.tap import Options, makeService

        o = Options()
        o.parseOptions(
            [
                "--listen",
                "tcp:0:interface=127.0.0.1",
                "--connect",
                "migrate:tcp:host=127.0.0.1:port=1",
                "--multiplex",
            ]
        )
        top = makeService(o)
        forwarder = list(top)[0]
        target = forwarder.factory.target
        self.assertIsInstance(target, MultiplexingEndpoint)
        self.assertIsInstance(target.endpoint, MigrateClientEndpoint)


class SSHNamespaceTests(Processes):
    """
    C{twistd migrate --multiplex} carrying real ssh logins between two
    network namespaces while the mobile host moves.
    """

    timeout = 120

    def setUp(self) -> None:
        reason = netns.skipReason()
        if reason:
            raise SkipTest(reason)
        if not os.path.exists(SSHD):
            raise SkipTest("no OpenSSH server at %s (apt install openssh-server)" % (SSHD,))
        self.topology = netns.Topology()
        self.addCleanup(self.topology.destroy)

    def sshd(self, ns: str) -> tuple[int, str]:
        """
        Run an OpenSSH server on the loopback of C{ns} that lets in root
        with a key made for the test.

        @return: its port and the client's private key file.
        """
        base = os.path.abspath(self.mktemp())
        os.makedirs(base)
        os.makedirs("/run/sshd", exist_ok=True)
        for name in ("host", "client"):
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", os.path.join(base, name)],
                check=True,
            )
        os.rename(os.path.join(base, "client.pub"), os.path.join(base, "authorized_keys"))
        port = 2200
        config = os.path.join(base, "sshd_config")
        with open(config, "w") as f:
            f.write(
                "Port %d\nListenAddress 127.0.0.1\nHostKey %s\nAuthorizedKeysFile %s\n"
                "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
                "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPidFile none\n"
                "ClientAliveInterval 0\nTCPKeepAlive no\n"
                % (port, os.path.join(base, "host"), os.path.join(base, "authorized_keys"))
            )
        log = os.path.join(base, "sshd.log")
        self.spawn([SSHD, "-D", "-e", "-f", config], ns, log)
        return port, os.path.join(base, "client")

    @inlineCallbacks
    def test_sshLoginsWhileMoving(self) -> Any:
        """
        Three ssh logins and a bulk transfer through the forwarders, the
        mobile side with C{--multiplex}: the mobile host's address is
        replaced and then its interface switched; every login and the
        transfer come back byte for byte; one session was opened, and each
        move cost one resume (not one per connection).
        """
        topo = self.topology
        sshPort, key = self.sshd(topo.server)
        serverLog = self.twistd(
            "server",
            [
                "--listen",
                "migrate:tcp:7001:interface=%s" % topo.serviceAddress,
                "--connect",
                "tcp:127.0.0.1:%d" % sshPort,
            ],
            topo.server,
        )
        mobileLog = self.twistd(
            "mobile",
            [
                "--listen",
                "tcp:2222:interface=127.0.0.1",
                "--connect",
                "migrate:tcp:host=%s:port=7001" % topo.serviceAddress,
                "--multiplex",
            ],
            topo.mobile,
        )
        yield self.waitForLog(serverLog, "starting on 7001")
        yield self.waitForLog(mobileLog, "starting on 2222")
        client = getProcessOutputAndValue(
            "/usr/bin/env",
            [
                "ip", "netns", "exec", topo.mobile, sys.executable,
                os.path.join(ROOT, "tests", "e2e_ssh.py"), "2222", key, "4", "20000000",
            ],
            env=ENV,
            path=ROOT,
        )
        # Everyone logged in (four channels of one session) before moving.
        yield self.waitForLog(serverLog, "opened from")
        yield task.deferLater(reactor, 1.0, lambda: None)
        topo.setLink("b", False)
        yield task.deferLater(reactor, 0.2, lambda: None)
        topo.replaceAddress("a", 5)
        yield self.waitForLog(serverLog, "resumed from 10.77.1.5")
        yield task.deferLater(reactor, 0.5, lambda: None)
        topo.setLink("b", True)
        topo.setLink("a", False)
        yield self.waitForLog(serverLog, "resumed from 10.77.2.2")
        out, err, code = yield client
        self.assertEqual(code, 0, out + err)
        result = json.loads(out.splitlines()[-1])
        for name in ("login0", "login1", "login2", "bulk"):
            self.assertEqual(
                result[name],
                dict(result[name], exact=True, code=0, received=result[name]["expected"]),
                result,
            )
        log = open(serverLog).read()
        self.assertEqual(log.count("opened from"), 1, log)
        self.assertEqual(log.count(" resumed from "), 2, log)
