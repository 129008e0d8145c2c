"""
Server-move benchmark on the namespace topology with a DNS host (root).

The server listens on every address and serves on its loopback address
10.77.0.1, watched by netlink, advertising its addresses in-band and
publishing them to the embedded DNS locator (a third host).  A client on the
mobile host streams to it.  Repeated trials of:

  - in-band: the server gains a new service address (which must move no
    one), then deprecates the one in use (and later drops it); time from
    the deprecation (the ``ip`` command having returned) to the first byte
    the server receives on the session's new carrier, which the client made
    when the advertisement named the new address first;
  - DNS only: the mobile host has no link while the server moves (so no
    advertisement can reach it); time from a link coming back to the first
    byte received on the resumed session, found through a DNS lookup.

    python benchmarks/servermoves.py [--trials 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

from twisted.internet import defer, task  # noqa: E402
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint  # noqa: E402
from twisted.internet.protocol import Factory  # noqa: E402

from migrate import MigrateClientEndpoint, MigrateServerEndpoint  # noqa: E402
from migrate.locate import DNSLocator  # noqa: E402
from migrate.locator import LocatorServer, RecordTable  # noqa: E402
from migrate.monitors import NetlinkMonitor  # noqa: E402
from mobility import Sink, Source, summary, waitFor  # noqa: E402
from tests import netns  # noqa: E402

ZONE = "mobile.example."
SECRET = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3I="
NAME = "server.mobile.example."


@defer.inlineCallbacks
def run(reactor: Any, args: argparse.Namespace) -> Any:
    topo = netns.Topology(dns=True)
    try:
        table = RecordTable(None)
        with netns.namespace(topo.dns):
            dnsPort = reactor.listenUDP(53, LocatorServer(reactor, ZONE, {"server.": SECRET}, table), interface=topo.dnsAddress)
        where = (topo.dnsAddress, 53)
        sinks: list[Sink] = []

        def build() -> Sink:
            s = Sink()
            sinks.append(s)
            return s

        with netns.namespace(topo.server):
            serverMonitor = NetlinkMonitor(reactor)
            serverMonitor.start()
            port = yield MigrateServerEndpoint(
                reactor,
                TCP4ServerEndpoint(reactor, 7001, interface="0.0.0.0"),
                monitor=serverMonitor,
                locator=DNSLocator(netns.NamespacedReactor(topo.server, reactor), where, ZONE, "server.", SECRET),
                publishName=NAME,
                serviceInterface="lo",
            ).listen(Factory.forProtocol(build))
        with netns.namespace(topo.mobile):
            monitor = NetlinkMonitor(reactor)
            monitor.start()
        endpoint = MigrateClientEndpoint(
            reactor,
            netns.NamespacedEndpoint(topo.mobile, TCP4ClientEndpoint(reactor, topo.serviceAddress, 7001)),
            monitor=monitor,
            endpointTo=lambda h, p: netns.NamespacedEndpoint(topo.mobile, TCP4ClientEndpoint(reactor, h, p)),
            locator=DNSLocator(netns.NamespacedReactor(topo.mobile, reactor), where, ZONE),
            peerName=NAME,
        )
        client = yield endpoint.connect(Factory.forProtocol(Source))
        sink = sinks[-1]
        yield task.deferLater(reactor, 0.5, lambda: None)

        inband: list[float] = []
        dnsOnly: list[float] = []
        current = 1
        for trial in range(args.trials):
            # In-band: a new address appears (which moves no one), then the
            # one in use is deprecated, and goes a moment later.
            new = current + 1
            generation = client.transport.generation
            netns.ip("-n", topo.server, "addr", "add", "10.77.0.%d/32" % new, "dev", "lo")
            yield task.deferLater(reactor, 0.2, lambda: None)
            assert client.transport.generation == generation, "a new address moved the client"
            netns.ip(
                "-n", topo.server, "addr", "change", "10.77.0.%d/32" % current,
                "dev", "lo", "preferred_lft", "0",
            )
            t0 = time.monotonic()
            ok = yield waitFor(reactor, sink.after(generation), 5)
            assert ok, "in-band move failed"
            inband.append(sink.firstAfter(generation) - t0)
            netns.ip("-n", topo.server, "addr", "del", "10.77.0.%d/32" % current, "dev", "lo")
            current = new
            yield task.deferLater(reactor, 0.5, lambda: None)

            # DNS only: the client is away while the server moves.
            topo.setLink("a", False)
            topo.setLink("b", False)
            yield waitFor(reactor, lambda: not client.transport.isAttached(), 5)
            new = current + 1
            netns.ip("-n", topo.server, "addr", "add", "10.77.0.%d/32" % new, "dev", "lo")
            netns.ip("-n", topo.server, "addr", "del", "10.77.0.%d/32" % current, "dev", "lo")
            current = new
            ok = yield waitFor(reactor, lambda: [a for a, _ in table.lookup(NAME, 1)] == ["10.77.0.%d" % new], 5)
            assert ok, "not published"
            generation = client.transport.generation
            topo.setLink("a", True)
            t0 = time.monotonic()
            ok = yield waitFor(reactor, sink.after(generation), 10)
            assert ok, "not found through DNS"
            dnsOnly.append(sink.firstAfter(generation) - t0)
            topo.setLink("b", True)
            yield task.deferLater(reactor, 0.5, lambda: None)
            print("trial %d done" % (trial + 1,), flush=True)

        print()
        print(summary("server move, in-band", inband, "one handshake"))
        print(summary("server move, DNS only", dnsOnly, "lookup + handshake"))
        client.transport.abortConnection()
        yield port.stopListening()
        yield dnsPort.stopListening()
        monitor.stop()
        serverMonitor.stop()
    finally:
        topo.destroy()


def main() -> None:
    parser = argparse.ArgumentParser(description="Migrate server-move benchmark (root)")
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args()
    reason = netns.skipReason()
    if reason:
        raise SystemExit(reason)
    task.react(lambda reactor: run(reactor, args))


if __name__ == "__main__":
    main()
