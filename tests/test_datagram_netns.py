"""
Datagram sessions on real mobility, in network namespaces: a mobile host
streaming 100 datagrams a second (each echoed by the server) switches
interface, is renumbered, loses its links for 3 s; a NAT in front of it
rebinds (its conntrack table flushed); the server moves, found in-band and
through the locator.

These tests need root (CI runs as root); elsewhere they are skipped with the
reason.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import time
from typing import Any, Optional

from twisted.internet import reactor, task
from twisted.internet.defer import inlineCallbacks
from twisted.internet.protocol import DatagramProtocol, Factory
from twisted.trial.unittest import SkipTest, TestCase

from migrate import SessionOptions
from migrate.datagram import connectDatagram, listenDatagram
from migrate.locate import DNSLocator
from migrate.locator import LocatorServer, RecordTable
from migrate.monitors import NetlinkMonitor

from . import netns
from .test_mobility import waitFor

PORT = 7001
ZONE = "mobile.example."
SECRET = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3I="
_STAMP = struct.Struct(">Qd")


class Echo(DatagramProtocol):
    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self.transport.write(datagram)  # type: ignore[union-attr]


class Streamer(DatagramProtocol):
    """
    Sends a numbered, timestamped datagram every 10 ms; records each echo
    with the time it came back.
    """

    def __init__(self) -> None:
        self.seq = 0
        self.echoes: list[tuple[int, float, float]] = []
        self.loop: Optional[task.LoopingCall] = None

    def startProtocol(self) -> None:
        self.loop = task.LoopingCall(self.tick)
        self.loop.clock = reactor
        self.loop.start(0.01)

    def stopProtocol(self) -> None:
        self.pause()

    def pause(self) -> None:
        if self.loop is not None and self.loop.running:
            self.loop.stop()

    def tick(self) -> None:
        self.seq += 1
        self.transport.write(_STAMP.pack(self.seq, time.monotonic()))  # type: ignore[union-attr]

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        seq, sentAt = _STAMP.unpack(datagram)
        self.echoes.append((seq, sentAt, time.monotonic()))

    def resumedAfter(self, event: float) -> Optional[float]:
        """
        Seconds from C{event} to the first echo of a datagram sent after it.
        """
        for _, sentAt, at in self.echoes:
            if sentAt >= event:
                return at - event
        return None


class Watch:
    def __init__(self) -> None:
        self.calls: list[tuple[str, float, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Any:
        if name in ("sessionSuspended", "sessionResumed", "peerMoved", "addressesChanged"):
            return lambda *args: self.calls.append((name, time.monotonic(), args[1:]))
        raise AttributeError(name)

    def named(self, name: str) -> list[tuple[Any, ...]]:
        return [args for n, _, args in self.calls if n == name]


def flushConntrack(ns: str) -> None:
    """
    Flush the IPv4 connection-tracking table of namespace C{ns} (what
    C{conntrack -F} does), through ctnetlink.
    """
    with netns.namespace(ns):
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)  # NETLINK_NETFILTER
    try:
        body = struct.pack("=BBH", socket.AF_INET, 0, 0)
        # IPCTNL_MSG_CT_DELETE of the ctnetlink subsystem, no attributes:
        # delete every entry.
        s.send(struct.pack("=IHHII", 16 + len(body), (1 << 8) | 2, 0x1 | 0x4, 1, 0) + body)
        reply = s.recv(65536)
        kind = struct.unpack_from("=H", reply, 4)[0]
        error = struct.unpack_from("=i", reply, 16)[0] if kind == 2 else 0
        if error:
            raise OSError(-error, "conntrack flush: %s" % (os.strerror(-error),))
    finally:
        s.close()


class UDPNATTopology:
    """
    C{mobile} behind a router that masquerades it with random source ports
    (so that every new mapping is a new port), towards C{server} at
    L{serverAddress}.  The mobile host has one link, C{a}.
    """

    serverAddress = "10.98.0.2"

    def __init__(self) -> None:
        tag = "md%d%d" % (os.getpid() % 100000, int(time.monotonic() * 1000) % 1000)
        self.mobile, self.router, self.server = tag + "m", tag + "r", tag + "s"
        self.created: list[str] = []
        try:
            self._build(tag)
        except BaseException:
            self.destroy()
            raise

    def _veth(self, tag: str, a: tuple[str, str], b: tuple[str, str]) -> None:
        netns.ip("link", "add", tag + a[1], "netns", a[0], "type", "veth", "peer", "name", tag + b[1], "netns", b[0])
        for ns, dev in (a, b):
            netns.ip("-n", ns, "link", "set", "dev", tag + dev, "name", dev)
            netns.ip("-n", ns, "link", "set", "dev", dev, "up")

    def _build(self, tag: str) -> None:
        for ns in (self.mobile, self.router, self.server):
            netns.ip("netns", "add", ns)
            self.created.append(ns)
            netns.ip("-n", ns, "link", "set", "dev", "lo", "up")
        netns.sysctl(self.router, "net.ipv4.ip_forward", "1")
        self._veth(tag, (self.mobile, "ma"), (self.router, "ra"))
        self._veth(tag, (self.router, "rs"), (self.server, "sr"))
        netns.ip("-n", self.router, "addr", "add", "10.98.1.1/24", "dev", "ra")
        netns.ip("-n", self.mobile, "addr", "add", "10.98.1.2/24", "dev", "ma")
        netns.ip("-n", self.mobile, "route", "add", "default", "via", "10.98.1.1")
        netns.ip("-n", self.router, "addr", "add", "10.98.0.1/24", "dev", "rs")
        netns.ip("-n", self.server, "addr", "add", self.serverAddress + "/24", "dev", "sr")
        rules = """
table ip nat {
    chain post {
        type nat hook postrouting priority 100;
        oifname "rs" masquerade random;
    }
}
"""
        result = subprocess.run(
            ["ip", "netns", "exec", self.router, "nft", "-f", "-"],
            input=rules, capture_output=True, text=True, timeout=20,
        )
        if result.returncode:
            raise RuntimeError("nft: %s" % (result.stderr.strip(),))

    def destroy(self) -> None:
        for ns in self.created:
            netns.ip("netns", "del", ns, check=False)
        self.created = []


class _Base(TestCase):
    timeout = 60
    options = SessionOptions()

    def setUp(self) -> None:
        reason = netns.skipReason()
        if reason:
            raise SkipTest(reason)

    def serve(self, ns: str, interface: str = "", monitor: Any = None, **kw: Any) -> Any:
        with netns.namespace(ns):
            port = listenDatagram(
                reactor, PORT, Factory.forProtocol(Echo), interface=interface,
                options=self.options, monitor=monitor, **kw
            )
        self.addCleanup(port.stopListening)
        return port

    def startMonitor(self, ns: str) -> NetlinkMonitor:
        with netns.namespace(ns):
            monitor = NetlinkMonitor(reactor)  # type: ignore[arg-type]
            monitor.start()
        self.addCleanup(monitor.stop)
        return monitor

    @inlineCallbacks
    def connect(self, ns: str, host: str, monitor: Any = None, **kw: Any) -> Any:
        self.client = Streamer()
        self.watch = Watch()
        with netns.namespace(ns):
            d = connectDatagram(
                reactor, host, PORT, self.client, options=self.options,
                monitor=monitor, observers=[self.watch], **kw
            )
        yield d
        self.addCleanup(self.stopClient)
        yield waitFor(lambda: len(self.client.echoes) >= 20, 5)

    def stopClient(self) -> Any:
        self.client.pause()
        if self.client.transport is not None:
            return self.client.transport.stopListening()
        return None

    @inlineCallbacks
    def resumed(self, event: float, within: float) -> Any:
        """
        Wait for the stream to come back after C{event}, and check it took
        less than C{within} seconds.
        """
        yield waitFor(lambda: self.client.resumedAfter(event) is not None, 10)
        took = self.client.resumedAfter(event)
        assert took is not None
        if os.environ.get("MIGRATE_SHOW_TIMES"):
            print("\n%s: back after %.1f ms" % (self.id(), took * 1000))
        self.assertLess(took, within)
        return took


class MobilityTests(_Base):
    """
    The mobile host's paths change; the server is at its service address.
    """

    @inlineCallbacks
    def setUp(self) -> Any:
        _Base.setUp(self)
        self.topology = netns.Topology()
        self.addCleanup(self.topology.destroy)
        self.port = self.serve(self.topology.server)
        monitor = self.startMonitor(self.topology.mobile)
        yield self.connect(self.topology.mobile, netns.Topology.serviceAddress, monitor)
        [self.session] = self.port.sessions.values()
        self.assertEqual(self.session.transport.getPeer().host, "10.77.1.2")

    @inlineCallbacks
    def test_switchInterface(self) -> Any:
        """
        The active interface goes down: the stream comes back within 50 ms,
        from the other interface, which the server follows.
        """
        self.topology.setLink("a", False)
        event = time.monotonic()
        yield self.resumed(event, 0.05)
        self.assertEqual(self.session.transport.getPeer().host, "10.77.2.2")
        # The server answers from the address the client reached.
        self.assertEqual(self.client.transport.getPeer().host, netns.Topology.serviceAddress)

    @inlineCallbacks
    def test_renumbered(self) -> Any:
        """
        The active interface's address is replaced (as DHCP would): the
        stream comes back within 50 ms of the new address, which the server
        follows.
        """
        new = self.topology.replaceAddress("a", 5)
        event = time.monotonic()
        yield self.resumed(event, 0.05)
        yield waitFor(lambda: self.session.transport.getPeer().host == new, 1)

    @inlineCallbacks
    def test_linksDown(self) -> Any:
        """
        Every link down for 3 s: the client is suspended (the silence
        limit, 2 s); when a link returns the stream is back within 50 ms,
        and the client hears that it resumed.
        """
        self.topology.setLink("a", False)
        self.topology.setLink("b", False)
        yield task.deferLater(reactor, 3, lambda: None)
        self.assertEqual(self.client.transport.state, "detached")
        self.assertEqual([args[0] for args in self.watch.named("sessionSuspended")], ["path-dead"])
        self.topology.setLink("a", True)
        event = time.monotonic()
        yield self.resumed(event, 0.05)
        yield waitFor(lambda: bool(self.watch.named("sessionResumed")), 1)
        self.assertEqual(self.client.transport.state, "attached")


class NATRebindingTests(_Base):
    """
    The mobile host behind a NAT that loses its state.
    """

    @inlineCallbacks
    def setUp(self) -> Any:
        _Base.setUp(self)
        self.topology = UDPNATTopology()
        self.addCleanup(self.topology.destroy)
        self.port = self.serve(self.topology.server)
        yield self.connect(self.topology.mobile, UDPNATTopology.serverAddress)
        [self.session] = self.port.sessions.values()

    @inlineCallbacks
    def test_rebinding(self) -> Any:
        """
        The NAT's conntrack table is flushed: the mobile host's next
        datagram comes from a new outside port, and the server's answer to
        that very datagram reaches it.  Then the stream goes on.
        """
        self.client.pause()
        yield task.deferLater(reactor, 0.05, lambda: None)
        before = self.session.transport.getPeer()
        self.assertEqual(before.host, "10.98.0.1")
        flushConntrack(self.topology.router)
        count = len(self.client.echoes)
        self.client.tick()
        yield waitFor(lambda: len(self.client.echoes) > count, 2)
        self.assertEqual(self.client.echoes[-1][0], self.client.seq)
        after = self.session.transport.getPeer()
        self.assertEqual(after.host, "10.98.0.1")
        self.assertNotEqual(after.port, before.port)
        self.assertEqual(len(self.watch.named("sessionSuspended")), 0)


class _ServerMoves(_Base):
    """
    A server that will move to a new service address.
    """

    withDNS = False

    @inlineCallbacks
    def setUp(self) -> Any:
        _Base.setUp(self)
        self.topology = netns.Topology(dns=self.withDNS)
        self.addCleanup(self.topology.destroy)
        serverMonitor = self.startMonitor(self.topology.server)
        locator = None
        if self.withDNS:
            where = (netns.Topology.dnsAddress, 53)
            table = RecordTable(None)
            self.addCleanup(table.close)
            with netns.namespace(self.topology.dns):
                dnsPort = reactor.listenUDP(  # type: ignore[attr-defined]
                    53, LocatorServer(reactor, ZONE, {"server.": SECRET}, table), interface=where[0]
                )
            self.addCleanup(dnsPort.stopListening)
            self.lookup = DNSLocator(netns.NamespacedReactor(self.topology.server, reactor), where, ZONE, timeout=0.5)
            serverLocator = DNSLocator(
                netns.NamespacedReactor(self.topology.server, reactor), where, ZONE, "server.", SECRET
            )
            yield serverLocator.publish("server.mobile.example.", [netns.Topology.serviceAddress])
            locator = DNSLocator(netns.NamespacedReactor(self.topology.mobile, reactor), where, ZONE)
        # Without the server's monitor in the locator test, nothing in-band
        # can tell the client: only the locator can.
        self.port = self.serve(self.topology.server, monitor=None if self.withDNS else serverMonitor)
        clientMonitor = self.startMonitor(self.topology.mobile)
        if self.withDNS:
            self.serverLocator = serverLocator
            # The client knows its server by name (looked up once through
            # the system: here, given as an address) and by its locator.
            yield self.connect(self.topology.mobile, netns.Topology.serviceAddress, clientMonitor, locator=locator)
            self.client.transport._session.peerName = "server.mobile.example."
        else:
            yield self.connect(self.topology.mobile, netns.Topology.serviceAddress, clientMonitor)



class ServerMoveTests(_ServerMoves):
    """
    The server moves while the client streams.
    """

    @inlineCallbacks
    def test_movesInBand(self) -> Any:
        """
        The server gains a new address and loses the one in use: its
        advertisement (from the new address) moves the client there, and
        the stream goes on within 50 ms of the old address's removal.
        """
        netns.ip("-n", self.topology.server, "addr", "add", "10.77.0.2/32", "dev", "lo")
        yield task.deferLater(reactor, 0.1, lambda: None)
        self.assertEqual(self.client.transport.getPeer().host, "10.77.0.1")
        netns.ip("-n", self.topology.server, "addr", "del", "10.77.0.1/32", "dev", "lo")
        event = time.monotonic()
        yield self.resumed(event, 0.05)
        yield waitFor(lambda: self.client.transport.getPeer().host == "10.77.0.2", 2)
        yield task.deferLater(reactor, 0.2, lambda: None)
        self.assertEqual(self.client.transport.getPeer().host, "10.77.0.2")


class ServerFoundThroughDNSTests(_ServerMoves):
    """
    The server moves while the mobile host is away; the client finds it
    through the locator.
    """

    withDNS = True

    @inlineCallbacks
    def test_foundThroughLocator(self) -> Any:
        """
        Every link of the mobile host down; the server moves to a new address
        and publishes it (and advertises nothing: it has no monitor); when
        a link returns, the suspended client looks the server up, probes
        the address found and the stream goes on there.
        """
        self.topology.setLink("a", False)
        self.topology.setLink("b", False)
        netns.ip("-n", self.topology.server, "addr", "add", "10.77.0.2/32", "dev", "lo")
        netns.ip("-n", self.topology.server, "addr", "del", "10.77.0.1/32", "dev", "lo")
        yield self.serverLocator.publish("server.mobile.example.", ["10.77.0.2"])
        yield waitFor(lambda: self.client.transport.state == "detached", 5)
        self.topology.setLink("a", True)
        event = time.monotonic()
        yield waitFor(lambda: self.client.transport.getPeer().host == "10.77.0.2", 5)
        yield self.resumed(event, 0.5)
        self.assertEqual(self.client.transport.state, "attached")


class _UDPEcho(DatagramProtocol):
    """
    A plain UDP echo service.
    """

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self.transport.write(datagram, addr)  # type: ignore[union-attr]


class ServerProcessRestartTests(_Base):
    """
    C{twistd migrate --udp} in front of a UDP echo service, with a store,
    stopped (SIGTERM) and started again on it: the mobile client's session
    holds on and its stream comes back.
    """

    timeout = 120

    @inlineCallbacks
    def test_restartedOnStore(self) -> Any:
        """
        SIGTERM checkpoints the session into the store; the server started
        again lists it, and the client's next datagram brings it back: the
        echoes resume in the same session, which the client never saw end.
        """
        from .test_twistd import Processes

        _Base.setUp(self)
        topology = netns.Topology()
        self.addCleanup(topology.destroy)
        with netns.namespace(topology.server):
            servicePort = reactor.listenUDP(0, _UDPEcho(), interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(servicePort.stopListening)
        store = os.path.abspath(self.mktemp())
        processes = Processes("run")
        processes.addCleanup = self.addCleanup  # type: ignore[method-assign]
        processes.mktemp = self.mktemp  # type: ignore[method-assign]
        args = [
            "--udp", "--listen", "migrate-udp:%d:monitor=none:store=%s" % (PORT, store),
            "--connect", "udp:127.0.0.1:%d" % (servicePort.getHost().port,),
        ]
        first = processes.twistd("server1", args, topology.server)
        yield processes.waitForLog(first, "forwarding UDP from")
        yield self.connect(topology.mobile, netns.Topology.serviceAddress)
        sessionID = self.client.transport.sessionID
        [server] = processes._processes  # type: ignore[attr-defined]
        server.send_signal(signal.SIGTERM)
        yield waitFor(lambda: server.poll() is not None, 20)
        self.assertIn("stored", open(first).read())
        stoppedAt = time.monotonic()
        second = processes.twistd("server2", args, topology.server)
        yield processes.waitForLog(second, "forwarding UDP from")
        yield waitFor(lambda: self.client.resumedAfter(stoppedAt) is not None, 20)
        yield processes.waitForLog(second, "restored from the store")
        self.assertEqual(self.client.transport.sessionID, sessionID)
        self.assertNotEqual(self.client.transport.state, "closed")
        count = len(self.client.echoes)
        yield waitFor(lambda: len(self.client.echoes) >= count + 20, 5)
