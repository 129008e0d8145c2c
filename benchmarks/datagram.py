"""
Datagram benchmark: plain Twisted UDP against Migrate datagram sessions
(every datagram encrypted and authenticated), in the same run and the same
process.

An echo server listens with C{reactor.listenUDP} and with
L{migrate.datagram.listenDatagram} on the loopback; a client of each kind,
in the same process and reactor, measures alternately:

  - throughput: echoed datagrams per second of C{--size}-byte datagrams,
    C{--window} in flight (a lost one is replaced after 50 ms), for
    C{--seconds} per round;
  - latency: the round trip of one datagram at a time, C{--messages} of
    them: median and 99th percentile.

It prints each round and the ratios Migrate/plain.  Usage::

    python benchmarks/datagram.py [--rounds 3] [--seconds 2] [--size 100]
        [--window 32] [--messages 3000]

With C{--dig} (root, iproute2, BIND 9's C{named} and C{dig}) it runs
instead C{dig} against a real BIND through a pair of C{twistd migrate
--udp} forwarders in network namespaces (the mobile host's C{udp:5353} to
the server host's C{migrate-udp:7053}, forwarding to BIND on port 53),
one query every C{--interval} seconds for C{--duration} seconds, while the
mobile host moves: its link C{a} goes down (traffic moves to C{b}), comes
back, is renumbered, then both links go down for 3 s.  It prints how many
queries were answered, their times, and the queries lost around each
move; and, for comparison, the same queries sent straight to BIND from the
mobile host (plain UDP) with no moves::

    sudo python benchmarks/datagram.py --dig [--duration 12] [--interval 0.05]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable

from twisted.internet import defer, task
from twisted.internet.protocol import DatagramProtocol, Factory

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from migrate import SessionOptions  # noqa: E402
from migrate.datagram import DatagramOptions, connectDatagram, listenDatagram  # noqa: E402

LOOPBACK = "127.0.0.1"


class Echo(DatagramProtocol):
    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self.transport.write(datagram, addr)  # type: ignore[union-attr]


class Client(DatagramProtocol):
    """
    Sends datagrams to C{peer} (C{None}: the session's peer) and hands
    every echo to C{onEcho}.
    """

    def __init__(self, peer: Any = None) -> None:
        self.peer = peer
        self.onEcho: Callable[[bytes], None] = lambda data: None

    def send(self, data: bytes) -> None:
        if self.peer is None:
            self.transport.write(data)  # type: ignore[union-attr]
        else:
            self.transport.write(data, self.peer)  # type: ignore[union-attr]

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self.onEcho(datagram)


def throughput(reactor: Any, client: Client, size: int, window: int, seconds: float) -> defer.Deferred[float]:
    """
    Echoed datagrams per second with C{window} in flight.
    """
    done: defer.Deferred[float] = defer.Deferred()
    payload = b"x" * size
    state = {"echoes": 0, "last": 0, "running": True}

    def onEcho(data: bytes) -> None:
        state["echoes"] += 1
        if state["running"]:
            client.send(payload)

    def refill() -> None:
        # Datagrams lost on the way: put the window back.
        if state["echoes"] == state["last"] and state["running"]:
            for _ in range(window):
                client.send(payload)
        state["last"] = state["echoes"]

    client.onEcho = onEcho
    loop = task.LoopingCall(refill)
    loop.clock = reactor
    start = time.perf_counter()
    for _ in range(window):
        client.send(payload)
    loop.start(0.05, now=False)

    def finish() -> None:
        state["running"] = False
        loop.stop()
        elapsed = time.perf_counter() - start
        rate = state["echoes"] / elapsed
        # Let the last datagrams in flight drain.
        reactor.callLater(0.1, done.callback, rate)

    reactor.callLater(seconds, finish)
    return done


def latency(reactor: Any, client: Client, messages: int) -> defer.Deferred[list[float]]:
    """
    Round trips of one datagram at a time (a lost one is sent again after
    50 ms and its sample dropped).
    """
    done: defer.Deferred[list[float]] = defer.Deferred()
    samples: list[float] = []
    state: dict[str, Any] = {"sentAt": 0.0, "n": 0, "timer": None}

    def send() -> None:
        state["n"] += 1
        state["sentAt"] = time.perf_counter()
        client.send(b"%d" % state["n"])
        state["timer"] = reactor.callLater(0.05, lost)

    def lost() -> None:
        send()

    def onEcho(data: bytes) -> None:
        if data != b"%d" % state["n"]:
            return
        state["timer"].cancel()
        samples.append(time.perf_counter() - state["sentAt"])
        if len(samples) >= messages:
            done.callback(samples)
        else:
            send()

    client.onEcho = onEcho
    send()
    return done


@defer.inlineCallbacks
def main(reactor: Any, args: argparse.Namespace) -> Any:
    plainServer = reactor.listenUDP(0, Echo(), interface=LOOPBACK)
    migrateServer = listenDatagram(reactor, 0, Factory.forProtocol(Echo), interface=LOOPBACK)
    plain = Client((LOOPBACK, plainServer.getHost().port))
    plainPort = reactor.listenUDP(0, plain, interface=LOOPBACK)
    session = Client()
    yield connectDatagram(
        reactor, LOOPBACK, migrateServer.getHost().port, session, monitor=None,
        options=SessionOptions(), datagramOptions=DatagramOptions(),
    )
    results: dict[str, list[float]] = {"plain": [], "migrate": []}
    rtts: dict[str, list[float]] = {"plain": [], "migrate": []}
    print("datagrams of %d bytes, %d in flight, %g s a round" % (args.size, args.window, args.seconds))
    for round in range(args.rounds):
        for name, client in (("plain", plain), ("migrate", session)):
            rate = yield throughput(reactor, client, args.size, args.window, args.seconds)
            results[name].append(rate)
            samples = yield latency(reactor, client, args.messages)
            rtts[name].extend(samples)
            print(
                "round %d %-8s %8.0f echoes/s  rtt median %5.1f us" % (
                    round + 1, name, rate, statistics.median(samples) * 1e6,
                ),
                flush=True,
            )
    summary = {}
    for name in ("plain", "migrate"):
        rate = statistics.median(results[name])
        samples = sorted(rtts[name])
        p99 = samples[int(len(samples) * 0.99) - 1]
        summary[name] = (rate, statistics.median(samples), p99)
        print(
            "%-8s %8.0f echoes/s (%8.0f datagrams/s through the stack)  rtt median %5.1f us  p99 %5.1f us"
            % (name, rate, 2 * rate, statistics.median(samples) * 1e6, p99 * 1e6)
        )
    print(
        "migrate/plain: throughput %.2fx, median rtt %.2fx, p99 rtt %.2fx"
        % (
            summary["migrate"][0] / summary["plain"][0],
            summary["migrate"][1] / summary["plain"][1],
            summary["migrate"][2] / summary["plain"][2],
        )
    )
    stats = session.transport._session.conn.stats  # type: ignore[union-attr]
    print("migrate session: %s" % (stats,))
    yield session.transport.stopListening()  # type: ignore[union-attr]
    yield migrateServer.stopListening()
    yield plainPort.stopListening()
    yield plainServer.stopListening()


TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
ZONE = "mobile.example."
SECRET = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3I="
_QUERY_TIME = re.compile(r"Query time: (\d+) msec")


def dig(ns: str, server: str, port: int, source: str) -> tuple[bool, float]:
    """
    One C{dig} query from namespace C{ns}: whether it was answered, and its
    time in milliseconds as C{dig} measured it (C{nan} when unanswered).
    """
    out = subprocess.run(
        ["ip", "netns", "exec", ns, "dig", "@" + server, "-p", str(port), "-b", source,
         "+tries=1", "+timeout=1", "ns." + ZONE.rstrip(".")],
        capture_output=True, text=True,
    ).stdout
    found = _QUERY_TIME.search(out)
    if "status: NOERROR" in out and "ANSWER SECTION" in out and found:
        return True, float(found.group(1))
    return False, float("nan")


def queries(ns: str, server: str, port: int, source: str, duration: float, interval: float) -> list[tuple[float, bool, float]]:
    """
    Query for C{duration} seconds, one every C{interval}: C{(startedAt, answered, ms)}.
    """
    results = []
    end = time.monotonic() + duration
    while time.monotonic() < end:
        started = time.monotonic()
        ok, ms = dig(ns, server, port, source)
        results.append((started, ok, ms))
        time.sleep(max(0.0, interval - (time.monotonic() - started)))
    return results


def report(name: str, results: list[tuple[float, bool, float]]) -> None:
    times = sorted(ms for _, ok, ms in results if ok)
    print(
        "%-28s %4d queries, %4d answered; dig query time median %.0f ms, max %.0f ms"
        % (name, len(results), len(times), statistics.median(times) if times else float("nan"),
           times[-1] if times else float("nan"))
    )


def digMain(args: argparse.Namespace) -> None:
    from tests import bind, netns

    for reason in (netns.skipReason(), bind.skipReason()):
        if reason:
            sys.exit(reason)
    root = os.path.abspath(args.root)
    env = dict(os.environ, PYTHONPATH=root)
    topology = netns.Topology()
    procs: list[subprocess.Popen[bytes]] = []
    work = tempfile.mkdtemp(prefix="migrate-dig-")
    server = None
    try:
        service = netns.Topology.serviceAddress
        server = bind.Bind(os.path.join(work, "bind"), service, 53, ZONE, "server.", SECRET, ns=topology.server)
        for ns, name, listen, connect in (
            (topology.server, "server", "migrate-udp:7053", "udp:%s:53" % (service,)),
            (topology.mobile, "mobile", "udp:5353:interface=127.0.0.1",
             "migrate-udp:%s:7053" % (netns.Topology.serviceAddress,)),
        ):
            procs.append(subprocess.Popen(
                ["ip", "netns", "exec", ns] + TWISTD + [
                    "-n", "--pidfile=", "-l", os.path.join(work, name + ".log"),
                    "migrate", "--udp", "--listen", listen, "--connect", connect,
                ],
                cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            ))
        deadline = time.monotonic() + 15
        while not dig(topology.mobile, "127.0.0.1", 5353, "127.0.0.1#5454")[0]:
            for p in procs:
                if p.poll() is not None:
                    sys.exit("twistd migrate --udp failed (does %s/migrate/tap.py have --udp?): %s"
                             % (root, p.stderr.read().decode() if p.stderr else ""))
            if time.monotonic() > deadline:
                sys.exit("no answer through twistd migrate --udp")
            time.sleep(0.2)
        # Warm up BIND and dig.
        queries(topology.mobile, "127.0.0.1", 5353, "127.0.0.1#5454", 1.0, args.interval)
        # Plain UDP, from the mobile host straight to BIND.
        direct = queries(topology.mobile, service, 53, "0.0.0.0", 2.0, args.interval)
        quiet = queries(topology.mobile, "127.0.0.1", 5353, "127.0.0.1#5454", 2.0, args.interval)
        moves: list[tuple[float, str]] = []

        def move() -> None:
            steps = [
                (1.0, "link a down", lambda: topology.setLink("a", False)),
                (3.0, "link a up", lambda: topology.setLink("a", True)),
                (5.0, "a renumbered", lambda: topology.replaceAddress("a", 5)),
                (7.0, "both links down", lambda: (topology.setLink("a", False), topology.setLink("b", False))),
                (10.0, "links back", lambda: (topology.setLink("a", True), topology.setLink("b", True))),
            ]
            start = time.monotonic()
            for at, name, action in steps:
                time.sleep(max(0.0, start + at - time.monotonic()))
                action()
                moves.append((time.monotonic(), name))

        mover = threading.Thread(target=move)
        mover.start()
        moving = queries(topology.mobile, "127.0.0.1", 5353, "127.0.0.1#5454", args.duration, args.interval)
        mover.join()
        print("dig against BIND 9, one query every %g s" % (args.interval,))
        report("plain UDP, no moves", direct)
        report("through migrate --udp", quiet)
        report("... while the client moves", moving)
        # Each move's queries: from 1 s before it (a query in flight when it
        # happened may be lost: dig waits 1 s) to 1 s before the next.
        for i, (at, name) in enumerate(moves):
            until = moves[i + 1][0] - 1.0 if i + 1 < len(moves) else float("inf")
            during = [r for r in moving if at - 1.0 <= r[0] < until]
            lost = [r for r in during if not r[1]]
            firstOk = next((r[0] for r in during if r[0] >= at and r[1]), None)
            print(
                "  %-16s %3d queries, %d unanswered; first answered query started %s after it"
                % (name, len(during), len(lost),
                   "%.0f ms" % ((firstOk - at) * 1000) if firstOk is not None else "never")
            )
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        if server is not None:
            server.stop()
        topology.destroy()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--dig", action="store_true", help="dig against BIND through twistd migrate --udp")
    parser.add_argument("--duration", type=float, default=12.0)
    parser.add_argument("--interval", type=float, default=0.05)
    parser.add_argument("--root", default=os.path.dirname(HERE), help="the source tree twistd runs from")
    parsed = parser.parse_args()
    if parsed.dig:
        digMain(parsed)
    else:
        task.react(main, [parsed])
