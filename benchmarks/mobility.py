"""
Mobility benchmark on the namespace topology (needs root).

A mobile host with two links (a, b) to a server host; a Migrate session and,
side by side, a plain Twisted TCP connection, each streaming from the mobile
host to the server.  Repeated trials of:

  - handoff: the link the session uses goes down while the other is up;
    time from the change (the ``ip`` command having returned) to the first
    byte the server receives on the resumed session;
  - outage: both links down for a while, then one back; time from the link
    (and its route) coming back to the first byte received;
  - black hole: the server's replies silently dropped (no local event);
    detection time (from the black hole to the session being suspended) and
    recovery time (from the black hole clearing to the first byte received).

The plain TCP connection shows what the same events do without Migrate: how
many bytes it delivered in the seconds after each event.  Usage::

    sudo python benchmarks/mobility.py [--trials 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any, Callable

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from twisted.internet import defer, task  # noqa: E402
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint  # noqa: E402
from twisted.internet.protocol import Factory, Protocol  # noqa: E402

from migrate import MigrateClientEndpoint, MigrateServerEndpoint  # noqa: E402
from migrate.monitors import NetlinkMonitor  # noqa: E402
from tests import netns  # noqa: E402


class Sink(Protocol):
    """
    Counts bytes and notes when the first byte of each session generation
    (each resume) arrives.
    """

    def __init__(self) -> None:
        self.received = 0
        self.firstAt: dict[int, float] = {}

    def dataReceived(self, data: bytes) -> None:
        self.received += len(data)
        generation = getattr(self.transport, "generation", 0)
        if generation not in self.firstAt:
            self.firstAt[generation] = time.monotonic()

    def after(self, generation: int) -> Callable[[], bool]:
        return lambda: any(g > generation for g in self.firstAt)

    def firstAfter(self, generation: int) -> float:
        return min(t for g, t in self.firstAt.items() if g > generation)


class Source(Protocol):
    """
    Writes 1000 bytes every 2 ms.
    """

    def connectionMade(self) -> None:
        self.loop = task.LoopingCall(self.transport.write, b"m" * 1000)  # type: ignore[union-attr]
        self.loop.start(0.002)

    def connectionLost(self, reason: Any) -> None:
        if self.loop.running:
            self.loop.stop()


class Watch:
    def __init__(self) -> None:
        self.suspended: float | None = None

    def sessionSuspended(self, session: Any, reason: str) -> None:
        self.suspended = time.monotonic()


def waitFor(reactor: Any, predicate: Callable[[], bool], timeout: float) -> defer.Deferred[bool]:
    d: defer.Deferred[bool] = defer.Deferred()
    end = time.monotonic() + timeout

    def check() -> None:
        if predicate():
            d.callback(True)
        elif time.monotonic() > end:
            d.callback(False)
        else:
            reactor.callLater(0.0005, check)

    check()
    return d


def summary(name: str, values: list[float], target: str) -> str:
    ms = [v * 1000 for v in values]
    return "%-22s median %8.1f ms   max %8.1f ms   (%d trials; target %s)" % (
        name,
        statistics.median(ms),
        max(ms),
        len(ms),
        target,
    )


@defer.inlineCallbacks
def run(reactor: Any, args: argparse.Namespace) -> Any:
    topo = netns.Topology()
    try:
        sinks: list[Sink] = []

        def build() -> Sink:
            s = Sink()
            sinks.append(s)
            return s

        with netns.namespace(topo.server):
            migratePort = yield MigrateServerEndpoint(
                reactor, TCP4ServerEndpoint(reactor, 7001, interface=topo.serviceAddress)
            ).listen(Factory.forProtocol(build))
            plainPort = yield TCP4ServerEndpoint(
                reactor, 7002, interface=topo.serviceAddress
            ).listen(Factory.forProtocol(build))
        with netns.namespace(topo.mobile):
            monitor = NetlinkMonitor(reactor)
            monitor.start()
        endpoint = MigrateClientEndpoint(
            reactor,
            netns.NamespacedEndpoint(topo.mobile, TCP4ClientEndpoint(reactor, topo.serviceAddress, 7001)),
            monitor=monitor,
        )
        watch = Watch()
        endpoint.addObserver(watch)
        client = yield endpoint.connect(Factory.forProtocol(Source))
        migrateSink = sinks[-1]
        plain = yield netns.NamespacedEndpoint(
            topo.mobile, TCP4ClientEndpoint(reactor, topo.serviceAddress, 7002)
        ).connect(Factory.forProtocol(Source))
        plainSink = sinks[-1]
        yield task.deferLater(reactor, 0.5, lambda: None)

        handoffs: list[float] = []
        outages: list[float] = []
        detections: list[float] = []
        recoveries: list[float] = []
        plainAfter: list[int] = []

        def using() -> str:
            host = client.transport.getHost().host
            return "a" if host.startswith("10.77.1.") else "b"

        for trial in range(args.trials):
            # Handoff: the link in use goes down; the other is up.
            current = using()
            other = "b" if current == "a" else "a"
            plainBefore = plainSink.received
            generation = client.transport.generation
            topo.setLink(current, False)
            t0 = time.monotonic()
            ok = yield waitFor(reactor, migrateSink.after(generation), 5)
            assert ok and using() == other, "handoff failed"
            handoffs.append(migrateSink.firstAfter(generation) - t0)
            yield task.deferLater(reactor, 1.0, lambda: None)
            plainAfter.append(plainSink.received - plainBefore)
            topo.setLink(current, True)
            yield task.deferLater(reactor, 0.3, lambda: None)

            # Outage: both links down for a while, then one back.
            topo.setLink("a", False)
            topo.setLink("b", False)
            yield task.deferLater(reactor, args.outage, lambda: None)
            generation = client.transport.generation
            topo.setLink("a", True)
            t0 = time.monotonic()
            ok = yield waitFor(reactor, migrateSink.after(generation), 10)
            assert ok, "no recovery after outage"
            outages.append(migrateSink.firstAfter(generation) - t0)
            topo.setLink("b", True)
            yield task.deferLater(reactor, 0.3, lambda: None)

            # Black hole: no local event at all.
            watch.suspended = None
            topo.blackhole(True)
            t0 = time.monotonic()
            ok = yield waitFor(reactor, lambda: watch.suspended is not None, 10)
            assert ok, "black hole not detected"
            detections.append(watch.suspended - t0)  # type: ignore[operator]
            yield task.deferLater(reactor, args.blackhole, lambda: None)
            generation = client.transport.generation
            topo.blackhole(False)
            t0 = time.monotonic()
            ok = yield waitFor(reactor, migrateSink.after(generation), 10)
            assert ok, "no recovery after black hole"
            recoveries.append(migrateSink.firstAfter(generation) - t0)
            yield task.deferLater(reactor, 0.3, lambda: None)
            print("trial %d done" % (trial + 1,), flush=True)

        print()
        print(summary("handoff (link switch)", handoffs, "< 50 ms"))
        print(summary("outage recovery", outages, "< 500 ms"))
        print(summary("black-hole detection", detections, "<= 3000 ms (policy bound)"))
        print(summary("black-hole recovery", recoveries, "< 2000 ms"))
        print(
            "plain TCP, bytes delivered in the 1 s after each handoff: %s (Migrate: a new carrier each time)"
            % (plainAfter,)
        )
        print("plain TCP connection still open at the end: %s" % (plain.transport.connected == 1,))
        client.transport.abortConnection()
        plain.transport.abortConnection()
        yield migratePort.stopListening()
        yield plainPort.stopListening()
        monitor.stop()
    finally:
        topo.destroy()


def main() -> None:
    parser = argparse.ArgumentParser(description="Migrate mobility benchmark (root)")
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--outage", type=float, default=2.0, help="seconds both links stay down")
    parser.add_argument(
        "--blackhole",
        type=float,
        default=5.0,
        help="seconds the black hole lasts after it was detected",
    )
    args = parser.parse_args()
    reason = netns.skipReason()
    if reason:
        raise SystemExit(reason)
    task.react(lambda reactor: run(reactor, args))


if __name__ == "__main__":
    main()
