"""
A server process killed and restarted with the same store resumes a
migratable session: the client notices nothing but a longer outage.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory
from twisted.protocols.basic import LineReceiver
from twisted.trial.unittest import TestCase

from migrate import MigrateClientEndpoint, SessionOptions
from migrate.testing import CuttingRelay

from .helpers import freePort
from .test_loopback import waitFor as _waitFor
from .test_twistd import ENV, ROOT


class Lines(LineReceiver):
    def connectionMade(self) -> None:
        self.lines: list[bytes] = []
        self.lost: list[Any] = []

    def lineReceived(self, line: bytes) -> None:
        self.lines.append(line)

    def connectionLost(self, reason: Any) -> None:
        self.lost.append(reason)


def waitFor(predicate: Any, timeout: float = 45.0) -> Deferred[None]:
    """
    Wait on the real reactor; slow starts of processes need a long limit.
    """
    return _waitFor(predicate, timeout)


class RestartTests(TestCase):
    timeout = 120

    def startServer(self) -> subprocess.Popen[bytes]:
        p = subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "tests", "e2e_counter_server.py"), str(self.port), self.store, self.log],
            cwd=ROOT,
            env=ENV,
            stdout=subprocess.PIPE,
        )
        self.addCleanup(lambda: (p.poll() is None and p.kill(), p.wait(), p.stdout and p.stdout.close()))
        assert p.stdout is not None
        ready, _, _ = select.select([p.stdout], [], [], 20)
        self.assertTrue(ready, "the server did not start")
        self.assertEqual(p.stdout.readline().strip(), b"ready")
        return p

    @inlineCallbacks
    def test_killAndRestart(self) -> Any:
        """
        Lines are numbered by the server application; after the session
        hibernated, the server is killed (SIGKILL) and started again on the
        same store; the client's next lines, one of them written while the
        server was gone, continue the numbering.
        """
        self.port = freePort()
        self.store = os.path.abspath(self.mktemp())
        self.log = os.path.abspath(self.mktemp() + ".log")
        server = self.startServer()
        relay = CuttingRelay(lambda: TCP4ClientEndpoint(reactor, "127.0.0.1", self.port))
        relayPort = reactor.listenTCP(0, relay.factory, interface="127.0.0.1")  # type: ignore[attr-defined]
        relayAddress = relayPort.getHost().port
        endpoint = MigrateClientEndpoint(
            reactor,
            TCP4ClientEndpoint(reactor, "127.0.0.1", relayAddress),
            SessionOptions(reconnectInitial=0.02, reconnectMax=0.2),
            monitor=None,
        )
        client = yield endpoint.connect(Factory.forProtocol(Lines))
        client.sendLine(b"a")
        client.sendLine(b"b")
        yield waitFor(lambda: len(client.lines) == 2)
        # The path goes away; the server's session hibernates into the store.
        yield relayPort.stopListening()
        relay.cutAll()
        # Hibernated, and its checkpoint durable in the store.
        yield waitFor(lambda: " stored" in open(self.log).read())
        server.send_signal(signal.SIGKILL)
        server.wait()
        client.sendLine(b"c")
        self.startServer()
        relayPort = reactor.listenTCP(relayAddress, relay.factory, interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(relayPort.stopListening)
        self.addCleanup(relay.cutAll)
        yield waitFor(lambda: len(client.lines) == 3)
        client.sendLine(b"d")
        yield waitFor(lambda: len(client.lines) == 4)
        self.assertEqual(client.lines, [b"1:a", b"2:b", b"3:c", b"4:d"])
        self.assertEqual(client.lost, [])
        self.assertIn("restored from the store", open(self.log).read())
        client.transport.loseConnection()
        yield waitFor(lambda: bool(client.lost))
        yield client.transport.whenEnded()

    @inlineCallbacks
    def test_stopAndRestart(self) -> Any:
        """
        A server stopped in the ordinary way (SIGTERM) while its session is
        attached checkpoints the migratable session into its store before
        it exits; its client holds on (refused as busy, "server restarting",
        while the process stops, then refused connections) and, once the
        server runs again on the same store, resumes: the numbering goes
        on, the client's application never hears of it.
        """
        self.port = freePort()
        self.store = os.path.abspath(self.mktemp())
        self.log = os.path.abspath(self.mktemp() + ".log")
        server = self.startServer()
        endpoint = MigrateClientEndpoint(
            reactor,
            TCP4ClientEndpoint(reactor, "127.0.0.1", self.port),
            SessionOptions(reconnectInitial=0.02, reconnectMax=0.2),
            monitor=None,
        )
        client = yield endpoint.connect(Factory.forProtocol(Lines))
        client.sendLine(b"a")
        yield waitFor(lambda: len(client.lines) == 1)
        server.send_signal(signal.SIGTERM)
        yield waitFor(lambda: server.poll() is not None)
        self.assertEqual(server.returncode, 0)
        log = open(self.log).read()
        self.assertIn("1 session(s) checkpointed for a restart", log)
        self.assertIn(" stored", log)
        client.sendLine(b"b")
        self.startServer()
        yield waitFor(lambda: len(client.lines) == 2)
        client.sendLine(b"c")
        yield waitFor(lambda: len(client.lines) == 3)
        self.assertEqual(client.lines, [b"1:a", b"2:b", b"3:c"])
        self.assertEqual(client.lost, [])
        self.assertIn("restored from the store", open(self.log).read())
        client.transport.loseConnection()
        yield client.transport.whenEnded()
