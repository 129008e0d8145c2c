"""
Echo benchmark: plain Twisted TCP against Migrate over TCP, in the same run.

A server process listens with the same echo protocol on C{tcp:} and on
C{migrate:tcp:} (loopback).  This process, the client, alternates between
the two for several rounds and measures:

  - bulk throughput: MiB/s of a stream written through a push producer and
    echoed back in full;
  - round-trip time of 64-byte messages, one in flight at a time, over one
    connection of each kind open side by side, alternating blocks of 250
    messages between them: median and 99th percentile.

The client and the server are pinned to separate cores (unless
C{--no-pin}).  It prints each bulk round and the ratios Migrate/plain, the
figures kept in C{docs/benchmarks.md}.  Usage::

    python benchmarks/echo.py [--rounds 5] [--megabytes 64] [--messages 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

from twisted.internet import defer, task
from twisted.internet.endpoints import clientFromString, serverFromString
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory, Protocol
from zope.interface import implementer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# Run against this checkout (its migrate package and its plugin dropin).
sys.path.insert(0, ROOT)


class Echo(Protocol):
    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[union-attr]


def serve(reactor: Any) -> defer.Deferred[None]:
    """
    Listen on both endpoints and print their ports as one JSON line.
    """

    @defer.inlineCallbacks
    def go() -> Any:
        plain = yield serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(
            Factory.forProtocol(Echo)
        )
        migrate = yield serverFromString(
            reactor, "migrate:tcp:0:interface=127.0.0.1"
        ).listen(Factory.forProtocol(Echo))
        print(
            json.dumps({"plain": plain.getHost().port, "migrate": migrate.getHost().port}),
            flush=True,
        )
        yield defer.Deferred()  # serve until killed

    return go()


@implementer(IPushProducer)
class BulkClient(Protocol):
    """
    Writes C{total} bytes through a push producer, counts the echo.
    """

    def __init__(self, total: int, chunk: int) -> None:
        self.total = total
        self.chunk = b"x" * chunk
        self.sent = 0
        self.received = 0
        self.paused = False
        self.done: defer.Deferred[float] = defer.Deferred()
        self.start = 0.0

    def connectionMade(self) -> None:
        self.transport.registerProducer(self, True)  # type: ignore[union-attr]

    def go(self) -> None:
        self.start = time.perf_counter()
        self.resumeProducing()

    def resumeProducing(self) -> None:
        self.paused = False
        write = self.transport.write  # type: ignore[union-attr]
        chunk = self.chunk
        while not self.paused and self.sent < self.total:
            write(chunk)
            self.sent += len(chunk)

    def pauseProducing(self) -> None:
        self.paused = True

    def stopProducing(self) -> None:
        self.paused = True

    def dataReceived(self, data: bytes) -> None:
        self.received += len(data)
        if self.received >= self.total and not self.done.called:
            self.done.callback(time.perf_counter() - self.start)


class PingClient(Protocol):
    """
    Sends 64-byte messages one at a time, timing each round trip.
    """

    def __init__(self) -> None:
        self.waiting: defer.Deferred[None] | None = None
        self.got = 0

    def ping(self) -> defer.Deferred[None]:
        self.got = 0
        self.waiting = defer.Deferred()
        self.transport.write(b"p" * 64)  # type: ignore[union-attr]
        return self.waiting

    def dataReceived(self, data: bytes) -> None:
        self.got += len(data)
        if self.got >= 64 and self.waiting is not None:
            d, self.waiting = self.waiting, None
            d.callback(None)


@defer.inlineCallbacks
def bulk(reactor: Any, endpoint: Any, megabytes: int) -> Any:
    """
    One bulk transfer: MiB/s echoed back in full.
    """
    total = megabytes * 1024 * 1024
    client = yield endpoint.connect(Factory.forProtocol(lambda: BulkClient(total, 65536)))
    client.go()
    elapsed = yield client.done
    client.transport.unregisterProducer()
    client.transport.loseConnection()
    yield task.deferLater(reactor, 0.1, lambda: None)
    return megabytes / elapsed


@defer.inlineCallbacks
def run(reactor: Any, args: argparse.Namespace) -> Any:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    server = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--serve"],
        stdout=subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )
    if args.pin and len(os.sched_getaffinity(0)) >= 2:
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[0]})
        os.sched_setaffinity(server.pid, {cpus[1]})
    try:
        assert server.stdout is not None
        ports = json.loads(server.stdout.readline())
        endpoints = {
            "plain": clientFromString(reactor, "tcp:host=127.0.0.1:port=%d" % ports["plain"]),
            "migrate": clientFromString(
                reactor, "migrate:tcp:host=127.0.0.1:port=%d" % ports["migrate"]
            ),
        }
        names = ("plain", "migrate")
        throughput: dict[str, list[float]] = {n: [] for n in names}
        for r in range(args.rounds):
            for name in names if r % 2 == 0 else names[::-1]:
                mbps = yield bulk(reactor, endpoints[name], args.megabytes)
                throughput[name].append(mbps)
            print(
                "bulk round %d: plain %7.1f MiB/s  migrate %7.1f MiB/s  ratio %.3f"
                % (r + 1, throughput["plain"][-1], throughput["migrate"][-1],
                   throughput["migrate"][-1] / throughput["plain"][-1]),
                flush=True,
            )
        # Round trips: both connections open at once, alternating blocks of
        # messages so that drift in the machine's speed hits both alike.
        pings = {}
        for name in names:
            pings[name] = yield endpoints[name].connect(Factory.forProtocol(PingClient))
            for _ in range(200):
                yield pings[name].ping()
        samples: dict[str, list[float]] = {n: [] for n in names}
        block = 250
        for b in range(max(1, args.messages // block)):
            for name in names if b % 2 == 0 else names[::-1]:
                ping = pings[name]
                out = samples[name]
                for _ in range(block):
                    t0 = time.perf_counter()
                    yield ping.ping()
                    out.append(time.perf_counter() - t0)
        for name in names:
            pings[name].transport.loseConnection()
        yield task.deferLater(reactor, 0.2, lambda: None)

        def pct(xs: list[float], q: float) -> float:
            xs = sorted(xs)
            return xs[min(len(xs) - 1, int(len(xs) * q))] * 1e6

        print()
        tp = {n: statistics.median(throughput[n]) for n in names}
        med = {n: statistics.median(samples[n]) * 1e6 for n in names}
        p99 = {n: pct(samples[n], 0.99) for n in names}
        print("%-22s %10s %10s %8s" % ("", "plain", "migrate", "ratio"))
        print("%-22s %10.1f %10.1f %8.3f" % ("throughput MiB/s", tp["plain"], tp["migrate"], tp["migrate"] / tp["plain"]))
        print("%-22s %10.1f %10.1f %8.3f" % ("rtt median us", med["plain"], med["migrate"], med["migrate"] / med["plain"]))
        print("%-22s %10.1f %10.1f %8.3f" % ("rtt p99 us", p99["plain"], p99["migrate"], p99["migrate"] / p99["plain"]))
        print("(%d bulk rounds of %d MiB each; %d round trips each)" % (args.rounds, args.megabytes, len(samples["plain"])))
    finally:
        server.kill()
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--megabytes", type=int, default=64)
    parser.add_argument("--messages", type=int, default=10000)
    parser.add_argument(
        "--no-pin",
        dest="pin",
        action="store_false",
        help="do not pin the client and the server to separate cores",
    )
    args = parser.parse_args()
    if args.serve:
        task.react(lambda reactor: serve(reactor))
    else:
        task.react(lambda reactor: run(reactor, args))


if __name__ == "__main__":
    main()
