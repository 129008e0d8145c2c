"""
What idle sessions cost on a real network, counted in packets: a server
host and a mobile host in network namespaces joined by veth links
(L{netns.Topology}), default options, real TCP.  The segments each host
sends are read from its own C{/proc/net/snmp} (C{Tcp: OutSegs}), so nothing
else on the machine counts.

  - 100 attached idle sessions for 30 s: each costs at most a keepalive
    and the acknowledgement of its answer per C{keepaliveInterval} (25 s)
    on each host, not heartbeats twice a second.
  - Not sending on idle sessions must not slow the detection of a dead
    path once there is something to wait for: a write into a path cut
    silently (every packet dropped on the server host; nothing happens on
    the mobile host) detaches the session within C{deadAfter} plus one
    C{heartbeatInterval} (2.5 s by default; asserted: 3 s), and the bytes
    arrive once the path is back.

C{tests/test_liveness.py} proves the same rules deterministically, in
memory; here the packets are real.  These tests need root (CI runs as
root); elsewhere they are skipped with the reason.  About 40 s in all.
"""

from __future__ import annotations

import math
import subprocess
import time
from typing import Any

from twisted.internet import defer, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.trial.unittest import SkipTest, TestCase

from migrate import MigrateClientEndpoint, MigrateServerEndpoint, SessionOptions
from migrate.monitors import NetlinkMonitor

from . import netns
from .helpers import Echo, Recorder
from .test_mobility import Recorder as Watch, waitFor

log = Logger()

PORT = 7003
SESSIONS = 100
WINDOW = 30.0


def outSegs(ns: str) -> int:
    """
    TCP segments sent so far by the hosts of namespace C{ns}.
    """
    with netns.namespace(ns):
        # thread-self: the namespace this thread is in now.
        with open("/proc/thread-self/net/snmp") as f:
            lines = [line.split() for line in f if line.startswith("Tcp:")]
    return int(lines[1][lines[0].index("OutSegs")])


def sleep(seconds: float) -> defer.Deferred[None]:
    return task.deferLater(reactor, seconds, lambda: None)


class _Hosts(TestCase):
    """
    A Migrate echo server on the server host, a client endpoint (with the
    netlink monitor, as by default) on the mobile host; default options.
    """

    timeout = 90
    options = SessionOptions()

    def setUp(self) -> Any:
        reason = netns.skipReason()
        if reason:
            raise SkipTest(reason)
        self.topology = netns.Topology()
        self.addCleanup(self.topology.destroy)
        return self.start()

    @defer.inlineCallbacks
    def start(self) -> Any:
        self.servers: list[Echo] = []

        def build() -> Echo:
            p = Echo()
            self.servers.append(p)
            return p

        address = netns.Topology.serviceAddress
        with netns.namespace(self.topology.server):
            self.serverEndpoint = MigrateServerEndpoint(
                reactor, TCP4ServerEndpoint(reactor, PORT, interface=address), self.options
            )
            port = yield self.serverEndpoint.listen(Factory.forProtocol(build))
        self.addCleanup(port.stopListening)
        with netns.namespace(self.topology.mobile):
            monitor = NetlinkMonitor(reactor)
            monitor.start()
        self.addCleanup(monitor.stop)
        mobile = self.topology.mobile
        self.clientEndpoint = MigrateClientEndpoint(
            reactor,
            netns.NamespacedEndpoint(mobile, TCP4ClientEndpoint(reactor, address, PORT)),
            self.options,
            monitor=monitor,
            endpointTo=lambda host, port: netns.NamespacedEndpoint(
                mobile, TCP4ClientEndpoint(reactor, host, port)
            ),
        )
        self.watch = Watch()
        self.clientEndpoint.addObserver(self.watch)
        # Recorders whose transports are sessions (IMigrateTransport).
        self.clients: list[Any] = []
        self.addCleanup(self.closeAll)

    @defer.inlineCallbacks
    def open(self, count: int) -> Any:
        opened = yield defer.gatherResults(
            [self.clientEndpoint.connect(Factory.forProtocol(Recorder)) for _ in range(count)]
        )
        self.clients.extend(opened)
        yield waitFor(lambda: len(self.servers) == len(self.clients), 10)
        return opened

    def counters(self) -> tuple[int, int]:
        """
        Segments sent so far by the mobile host and by the server host.
        """
        return outSegs(self.topology.mobile), outSegs(self.topology.server)

    def closeAll(self) -> Any:
        for p in self.clients:
            if not p.lost:
                p.transport.abortConnection()
        return waitFor(lambda: all(p.lost for p in self.clients + self.servers), 10)


class IdlePacketTests(_Hosts):
    @defer.inlineCallbacks
    def test_idleSessionsCostAKeepalivePerInterval(self) -> Any:
        """
        100 attached idle sessions for 30 s: on each host, at most two
        segments per session per keepalive interval (the client's keepalive
        and the acknowledgement of the server's answer; the answer and
        maybe an acknowledgement on the server), and every session still
        attached on its first carrier.  (Heartbeats twice a second would be
        12,000 segments per host.)
        """
        before = self.counters()
        yield self.open(SESSIONS)
        opened = self.counters()
        # The instrument counts these hosts' connections: each opening is
        # a TCP handshake and Migrate's, several segments each way.
        self.assertGreaterEqual(opened[0] - before[0], 3 * SESSIONS)
        self.assertGreaterEqual(opened[1] - before[1], 3 * SESSIONS)
        yield sleep(1.0)  # the openings' last acknowledgements
        start = self.counters()
        began = time.monotonic()
        yield sleep(WINDOW)
        end = self.counters()
        window = time.monotonic() - began
        keepalive = self.options.keepaliveInterval
        bound = math.ceil(SESSIONS * 2 * window / keepalive * 1.1)
        mobile, server = end[0] - start[0], end[1] - start[1]
        summary = "%.1f s idle, %d sessions: mobile host sent %d segments, server host %d (bound %d each)" % (
            window, SESSIONS, mobile, server, bound,
        )
        log.info("idle packets: {summary}", summary=summary)
        self.assertLessEqual(mobile, bound, summary)
        self.assertLessEqual(server, bound, summary)
        # The keepalives did go out (a NAT on the path needs them): the
        # first of every session fell inside the window.
        self.assertGreaterEqual(mobile, SESSIONS, summary)
        self.assertEqual(
            [(p.transport.state, p.transport.generation) for p in self.clients],
            [("attached", 0)] * SESSIONS,
        )
        self.assertEqual(self.watch.suspended, [])


class CutPathTests(_Hosts):
    def cut(self, on: bool) -> None:
        """
        Drop every packet on the server host's end of both links, both
        ways: nothing changes on the mobile host (no event for its
        monitor), its packets simply go nowhere.
        """
        if on:
            rules = """
table inet cut {
    chain in { type filter hook prerouting priority -300; iifname { "sa", "sb" } drop; }
    chain out { type filter hook postrouting priority -300; oifname { "sa", "sb" } drop; }
}
"""
            command = ["nft", "-f", "-"]
        else:
            rules, command = "", ["nft", "delete", "table", "inet", "cut"]
        result = subprocess.run(
            ["ip", "netns", "exec", self.topology.server, *command],
            input=rules, capture_output=True, text=True, timeout=20,
        )
        if result.returncode:
            raise RuntimeError("nft: %s" % (result.stderr.strip(),))

    @defer.inlineCallbacks
    def test_deadPathFoundWithDataOutstanding(self) -> Any:
        """
        An idle session whose path is cut silently, then written to, is
        detached ("path-dead") within deadAfter plus one heartbeat interval
        of the write (asserted under 3 s); once the path is back it resumes
        and the bytes are echoed exactly once.
        """
        [client] = yield self.open(1)
        client.transport.write(b"warm")
        yield waitFor(lambda: client.received == b"warm", 5)
        yield sleep(1.0)  # idle: nothing outstanding either way
        self.cut(True)
        cutting = True
        try:
            written = time.monotonic()
            client.transport.write(b"x" * 1000)
            yield waitFor(lambda: bool(self.watch.suspended), 6)
            took = self.watch.suspended[0][0] - written
            log.info(
                "cut path: detached ({reasons}) {took:.3f} s after the write",
                reasons=[r for _, r in self.watch.suspended],
                took=took,
            )
            self.assertEqual([r for _, r in self.watch.suspended], ["path-dead"])
            self.assertLess(took, 3.0)
            self.assertEqual(client.transport.state, "detached")
            self.cut(False)
            cutting = False
        finally:
            if cutting:
                self.cut(False)
        yield waitFor(lambda: len(client.received) == 4 + 1000, 10)
        self.assertEqual(client.received, b"warm" + b"x" * 1000)
        self.assertEqual(client.transport.generation, 1)
        self.assertEqual(client.lost, [])
