"""
A real HAProxy in TCP mode in front of C{twistd migrate}, with default
options: hundreds of sessions from one client process (one address, as
behind NAT or a load balancer) open through it, survive its restart (every
connection cut at once), and lose no byte; none ends.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.internet.endpoints import clientFromString
from twisted.internet.protocol import Factory
from twisted.internet.threads import deferToThread

from . import haproxy
from .helpers import Recorder, freePort
from .test_loopback import waitFor
from .test_twistd import Processes

SESSIONS = 500


class HAProxyTests(Processes):
    timeout = 180
    skip = haproxy.skipReason()

    @inlineCallbacks
    def test_restartWithManySessions(self) -> Any:
        """
        500 sessions through HAProxy to C{twistd migrate} (each forwarded to
        an echo service), HAProxy killed and restarted: every session
        resumes and echoes byte-exact what was written before, during and
        after; none ends; default options on both sides.
        """
        echoPort, _ = self.echo()
        serverPort, frontPort = freePort(), freePort()
        serverLog = self.twistd(
            "server",
            ["--listen", "migrate:tcp:%d:interface=127.0.0.1" % serverPort, "--connect", "tcp:127.0.0.1:%d" % echoPort],
        )
        yield self.waitForLog(serverLog, "starting on %d" % serverPort)
        proxy = haproxy.HAProxy(frontPort, serverPort)
        self.addCleanup(proxy.stop)
        yield deferToThread(proxy.start)
        endpoint = clientFromString(reactor, "migrate:tcp:host=127.0.0.1:port=%d" % frontPort)
        protos = yield gatherResults(
            [endpoint.connect(Factory.forProtocol(Recorder)) for _ in range(SESSIONS)]
        )
        for i, p in enumerate(protos):
            p.expected = b"before %d;" % (i,)
            p.transport.write(p.expected)
        yield waitFor(lambda: all(p.received == p.expected for p in protos), 60)

        yield deferToThread(proxy.kill)
        for i, p in enumerate(protos):
            more = b"during %d;" % (i,)
            p.expected += more
            p.transport.write(more)
        yield deferToThread(proxy.start)
        yield waitFor(lambda: all(p.received == p.expected for p in protos), 60)
        for i, p in enumerate(protos):
            more = b"after %d;" % (i,)
            p.expected += more
            p.transport.write(more)
        yield waitFor(lambda: all(p.received == p.expected for p in protos), 60)

        self.assertEqual([p for p in protos if p.lost], [])
        self.assertEqual(min(p.transport.handoffs for p in protos), 1)
        log = open(serverLog).read()
        self.assertEqual(log.count(" ended: "), 0)
        for p in protos:
            p.transport.loseConnection()
        yield gatherResults([p.transport.whenEnded() for p in protos])
