"""
Channels (issue 13) under load: carrier cuts with many channels, memory per
idle channel, and fairness between channels when one reader stops; default
options throughout (C{SessionOptions()}: a channel window of 256 KiB, at
most 1,024 channels), real sockets on 127.0.0.1, the default reactor.

  cuts      one C{migrate:tcp:} session with N channels (1,000; C{--quick}
            200) opened by the client, through a relay in front of the
            server (L{migrate.testing.CuttingRelay}) that is cut K times (20;
            C{--quick} 4) while every channel streams its own deterministic
            byte pattern to the server, which checks it and echoes it back,
            where the client checks it again; under two loads, one after the
            other (C{--loads}): light, each channel writing 64 bytes every
            50 ms with at most 1 KiB unechoed, and heavy, 256 bytes every
            10 ms with at most 4 KiB unechoed (more than one process on one
            core keeps up with for 1,000 channels: it shows the backlog).  Reports: whether every byte
            arrived exactly, both ways; the resumes (C{sessionResumed}
            upcalls, the session's C{handoffs}, and the carriers the relay
            saw), which must be one per cut, not one per channel; and, per
            cut, the time from the resume (the client's C{sessionResumed}
            upcall) until every channel delivered new data again, on the
            server and back on the client (median and max).  Reference
            row, plain Twisted: N fresh TCP connections to an echo server
            opened (32 in flight, as the listen backlog requires) until each
            echoed once, which is what an application without Migrate does
            after a cut.
  memory    N idle channels (1,000; C{--quick} 200) opened in one session,
            both ends in one process, against N idle plain Twisted TCP
            connections (client and server protocols) in the same kind of
            process: the growth per channel / connection in C{tracemalloc}
            (Python allocations) and in RSS, each measured in a fresh child
            process (RSS without C{tracemalloc} running), after 20 of each
            were opened first.
  fairness  one session, 8 channels streaming server to client as fast as
            push producers go: T seconds (5; C{--quick} 1) with all read
            and T seconds with the first channel's reader paused
            (C{transport.pauseProducing()}), in alternating periods of 1 s
            (C{--quick} 0.5 s): the other 7's throughput while one is paused
            as a fraction of theirs while none is; and the spread between
            the streams (slowest / fastest) with all read.  Same with 8 plain
            Twisted TCP connections for reference.
  all       all of the above.

Usage::

    python3 benchmarks/channels.py cuts|memory|fairness|all [--quick]

C{--quick} shrinks everything for a smoke run.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
import tracemalloc
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# Run against this checkout (its migrate package and its plugin dropin).
sys.path.insert(0, ROOT)

from twisted.internet import defer, task, threads  # noqa: E402
from twisted.internet.endpoints import (  # noqa: E402
    TCP4ClientEndpoint,
    clientFromString,
    serverFromString,
)
from twisted.internet.interfaces import IPushProducer  # noqa: E402
from twisted.internet.protocol import Factory, Protocol  # noqa: E402
from twisted.python.failure import Failure  # noqa: E402
from zope.interface import implementer  # noqa: E402

from migrate import SessionOptions  # noqa: E402
from migrate.testing import CuttingRelay  # noqa: E402

LOCAL = "127.0.0.1"
# Plain connections opened at once: below Twisted's listen backlog (50).
OPENING = 32
ENV = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))


# Helpers shared with cost.py.
sys.path.insert(0, HERE)
from cost import describeCode, quietLogs, raiseFileLimit, rss  # noqa: E402


def median(xs: Iterable[float]) -> float:
    return statistics.median(list(xs))


def sleep(reactor: Any, seconds: float) -> defer.Deferred[None]:
    return task.deferLater(reactor, seconds, lambda: None)


@defer.inlineCallbacks
def waitUntil(reactor: Any, predicate: Callable[[], bool], timeout: float, what: str) -> Any:
    end = time.perf_counter() + timeout
    while not predicate():
        if time.perf_counter() > end:
            raise RuntimeError("timed out after %.0f s waiting for %s" % (timeout, what))
        yield sleep(reactor, 0.005)


def serverString() -> str:
    return "migrate:tcp:0:interface=%s" % (LOCAL,)


def clientString(port: int) -> str:
    return "migrate:tcp:host=%s:port=%d" % (LOCAL, port)


@dataclass
class Row:
    label: str
    plain: Optional[float]
    migrate: Optional[float]
    unit: str
    fmt: str = "%.1f"
    notes: list[str] = field(default_factory=list)

    def ratio(self) -> Optional[float]:
        if self.plain is None or self.migrate is None or self.plain == 0:
            return None
        return self.migrate / self.plain

    def line(self) -> str:
        def show(v: Optional[float]) -> str:
            return "-" if v is None else self.fmt % (v,)

        r = self.ratio()
        return "%-56s %12s %12s %8s" % (
            "%s (%s)" % (self.label, self.unit), show(self.plain), show(self.migrate),
            "-" if r is None else "%.3f" % (r,),
        )


def printTable(title: str, rows: list[Row]) -> None:
    print()
    print("%-56s %12s %12s %8s" % (title, "plain", "migrate", "ratio"))
    for row in rows:
        print(row.line())
        for note in row.notes:
            print("    " + note)
    sys.stdout.flush()


# cuts


PATTERN = 4099  # a prime, so that patterns do not line up with chunks


class Pattern:
    """
    Channel C{channel}'s byte stream: C{PATTERN} random bytes (seeded by
    the channel number), repeated.
    """

    def __init__(self, channel: int) -> None:
        block = random.Random(channel).randbytes(PATTERN)
        self.doubled = block + block

    def at(self, offset: int, n: int) -> bytes:
        """
        The C{n} (at most C{PATTERN}) bytes from C{offset}.
        """
        start = offset % PATTERN
        return self.doubled[start:start + n]

    def matches(self, offset: int, data: bytes) -> bool:
        view = memoryview(data)
        done = 0
        while done < len(data):
            n = min(PATTERN, len(data) - done)
            if view[done:done + n] != self.at(offset + done, n):
                return False
            done += n
        return True


class Tracker:
    """
    Which channels delivered data since the last resume, on each side.

    @ivar epoch: resumes so far.
    @ivar since: when the last resume was seen (C{perf_counter}).
    @ivar left: channels that have not delivered since, by side.
    @ivar took: seconds from the resume until the last of them did, by side.
    """

    def __init__(self, n: int) -> None:
        self.n = n
        self.epoch = 0
        self.since = 0.0
        self.left = {"server": 0, "client": 0}
        self.took: dict[str, Optional[float]] = {"server": None, "client": None}
        self.resumes: list[dict[str, Any]] = []
        self.serverResumes = 0
        self.mismatches: list[str] = []
        self.onResume: list[Callable[[], None]] = []

    def delivered(self, side: str, seen: int) -> int:
        """
        A channel delivered on C{side}; it last delivered in epoch C{seen}.

        @return: the current epoch.
        """
        if seen != self.epoch:
            self.left[side] -= 1
            if self.left[side] == 0:
                self.took[side] = time.perf_counter() - self.since
        return self.epoch

    # IMigrateUpcalls, from the client endpoint
    def sessionResumed(self, transport: Any, old: Any, new: Any, downtime: float, resent: int) -> None:
        self.epoch += 1
        self.since = time.perf_counter()
        self.left = {"server": self.n, "client": self.n}
        self.took = {"server": None, "client": None}
        self.resumes.append({"downtime": downtime, "resent": resent})
        for call in self.onResume:
            call()


class ServerResumes:
    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker

    def sessionResumed(self, transport: Any, old: Any, new: Any, downtime: float, resent: int) -> None:
        self.tracker.serverResumes += 1


class CheckingEcho(Protocol):
    """
    Server side of a channel: checks the channel's pattern and echoes it.
    """

    def __init__(self, tracker: Tracker, apps: list[CheckingEcho]) -> None:
        self.tracker = tracker
        self.apps = apps
        self.received = 0
        self.seen = 0
        self.pattern: Optional[Pattern] = None
        self.lost: Optional[Failure] = None

    def connectionMade(self) -> None:
        channel = self.transport.channel  # type: ignore[union-attr]
        if channel:
            self.pattern = Pattern(channel)
            self.apps.append(self)

    def dataReceived(self, data: bytes) -> None:
        pattern = self.pattern
        if pattern is None:
            return
        if not pattern.matches(self.received, data):
            self.tracker.mismatches.append(
                "server, channel %d, bytes %d..%d"
                % (self.transport.channel, self.received, self.received + len(data))  # type: ignore[union-attr]
            )
        self.received += len(data)
        self.seen = self.tracker.delivered("server", self.seen)
        self.transport.write(data)  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.lost = reason


class PatternClient(Protocol):
    """
    Client side of a channel: writes the pattern (by the pump) and checks
    its echo.
    """

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker
        self.sent = 0
        self.echoed = 0
        self.seen = 0
        self.pattern: Optional[Pattern] = None
        self.lost: Optional[Failure] = None

    def connectionMade(self) -> None:
        self.pattern = Pattern(self.transport.channel)  # type: ignore[union-attr]

    def send(self, n: int) -> None:
        assert self.pattern is not None
        self.transport.write(self.pattern.at(self.sent, n))  # type: ignore[union-attr]
        self.sent += n

    def dataReceived(self, data: bytes) -> None:
        assert self.pattern is not None
        if not self.pattern.matches(self.echoed, data):
            self.tracker.mismatches.append(
                "client, channel %d, bytes %d..%d"
                % (self.transport.channel, self.echoed, self.echoed + len(data))  # type: ignore[union-attr]
            )
        self.echoed += len(data)
        self.seen = self.tracker.delivered("client", self.seen)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.lost = reason


class Counted(Protocol):
    """
    Counts its echo (plain reference of C{cuts}).
    """

    def __init__(self) -> None:
        self.echoed: defer.Deferred[None] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        if not self.echoed.called:
            self.echoed.callback(None)


class Echo(Protocol):
    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[union-attr]


@defer.inlineCallbacks
def plainReopen(reactor: Any, n: int) -> Any:
    """
    Seconds to open C{n} plain TCP connections (C{OPENING} at a time) and
    have each echo one byte.
    """
    port = yield serverFromString(reactor, "tcp:0:interface=%s" % (LOCAL,)).listen(
        Factory.forProtocol(Echo)
    )
    endpoint = clientFromString(reactor, "tcp:host=%s:port=%d" % (LOCAL, port.getHost().port))
    sem = defer.DeferredSemaphore(OPENING)
    protocols: list[Counted] = []

    @defer.inlineCallbacks
    def one() -> Any:
        p = yield endpoint.connect(Factory.forProtocol(Counted))
        protocols.append(p)
        p.transport.write(b"x")
        yield p.echoed

    start = time.perf_counter()
    yield defer.gatherResults([sem.run(one) for _ in range(n)], consumeErrors=True)
    took = time.perf_counter() - start
    for p in protocols:
        p.transport.loseConnection()  # type: ignore[union-attr]
    yield port.stopListening()
    yield sleep(reactor, 0.2)
    return took


@defer.inlineCallbacks
def cutsUnder(reactor: Any, n: int, k: int, load: str, chunk: int, tick: float, inflight: int, plain: float) -> Any:
    """
    One session of C{n} channels, cut C{k} times while each channel writes
    C{chunk} bytes every C{tick} seconds (while less than C{inflight} of
    what it wrote has yet to come back).
    """
    tracker = Tracker(n)
    serverApps: list[CheckingEcho] = []
    server = serverFromString(reactor, serverString())
    server.addObserver(ServerResumes(tracker))
    port = yield server.listen(Factory.forProtocol(lambda: CheckingEcho(tracker, serverApps)))
    serverPort = port.getHost().port
    relay = CuttingRelay(lambda: TCP4ClientEndpoint(reactor, LOCAL, serverPort))
    carriers = [0]
    build = relay.factory.buildProtocol

    def counting(addr: Any) -> Any:
        carriers[0] += 1
        return build(addr)

    relay.factory.buildProtocol = counting  # type: ignore[method-assign]
    relayPort = reactor.listenTCP(0, relay.factory, interface=LOCAL)
    client = clientFromString(reactor, clientString(relayPort.getHost().port))
    client.addObserver(tracker)
    root = yield client.connect(Factory.forProtocol(Protocol))
    start = time.perf_counter()
    channels = yield defer.gatherResults(
        [root.transport.openChannel(Factory.forProtocol(lambda: PatternClient(tracker)))
         for _ in range(n)],
        consumeErrors=True,
    )
    opened = time.perf_counter() - start
    yield waitUntil(reactor, lambda: len(serverApps) == n, 30, "the server's channels")
    print("cuts: %d channels opened in %.3f s" % (n, opened), flush=True)

    # The pump: every tick, each channel with less than `inflight` bytes
    # unechoed writes `chunk` more.

    def pump() -> None:
        for c in channels:
            if c.sent - c.echoed < inflight:
                c.send(chunk)

    if load == "idle":
        # Mostly idle channels: what counts is that a keystroke typed as
        # the session comes back gets through on every one of them.
        def probe() -> None:
            for c in channels:
                c.send(chunk)

        tracker.onResume.append(probe)

    pumping = task.LoopingCall(pump)
    pumping.clock = reactor
    pumping.start(tick)
    yield sleep(reactor, 0.5)
    rng = random.Random(13)
    samples: list[dict[str, float]] = []

    def channelCounters() -> tuple[int, int]:
        snap = root.transport.snapshot()
        rows = snap["channels"]
        return sum(r["bytesRetransmitted"] for r in rows), sum(r["handoffs"] for r in rows)

    resentBefore, _ = channelCounters()
    flowStart = time.perf_counter()
    sent0 = sum(c.sent for c in channels)
    try:
        for cut in range(k):
            yield sleep(reactor, rng.uniform(0.2, 0.4))
            resumes = len(tracker.resumes)
            cutAt = time.perf_counter()
            relay.cutAll()
            yield waitUntil(reactor, lambda: len(tracker.resumes) > resumes, 30, "resume %d" % (cut + 1,))
            yield waitUntil(
                reactor,
                lambda: tracker.took["server"] is not None and tracker.took["client"] is not None,
                30,
                "every channel to deliver after resume %d" % (cut + 1,),
            )
            took = tracker.took
            assert took["server"] is not None and took["client"] is not None
            resentNow, channelHandoffs = channelCounters()
            sample = {
                "channelsResent": resentNow - resentBefore,
                "server": took["server"],
                "client": took["client"],
                "cutToResume": tracker.since - cutAt,
                "resent": tracker.resumes[-1]["resent"],
            }
            resentBefore = resentNow
            samples.append(sample)
            print(
                "cut %2d: resumed %.1f ms after the cut (client resent %d bytes on its channels);"
                " every channel delivered again %.1f ms after the resume on the server, %.1f ms back on the client"
                % (cut + 1, sample["cutToResume"] * 1e3, sample["channelsResent"],
                   sample["server"] * 1e3, sample["client"] * 1e3),
                flush=True,
            )
    finally:
        pumping.stop()
    flowed = time.perf_counter() - flowStart
    rate = (sum(c.sent for c in channels) - sent0) / flowed
    yield waitUntil(reactor, lambda: all(c.echoed == c.sent for c in channels), 60, "the last echoes")
    bySide = {a.transport.channel: a for a in serverApps}  # type: ignore[union-attr]
    exact = (
        not tracker.mismatches
        and all(c.echoed == c.sent for c in channels)
        and all(bySide[c.transport.channel].received == c.sent for c in channels)
        and all(c.lost is None for c in channels)
        and all(a.lost is None for a in serverApps)
    )
    handoffs = root.transport.handoffs
    _, channelHandoffs = channelCounters()
    total = sum(c.sent for c in channels)

    root.transport.loseConnection()
    yield sleep(reactor, 0.3)
    yield relay.stop()
    yield relayPort.stopListening()
    yield port.stopListening()

    serverTimes = [s["server"] * 1e3 for s in samples]
    clientTimes = [s["client"] * 1e3 for s in samples]
    resumeTimes = [s["cutToResume"] * 1e3 for s in samples]
    result = {
        "channels": n,
        "cuts": k,
        "byteExact": exact,
        "mismatches": tracker.mismatches[:5],
        "bytesEachWay": total,
        "rateEachWay": rate,
        "clientResumedUpcalls": len(tracker.resumes),
        "serverResumedUpcalls": tracker.serverResumes,
        "handoffs": handoffs,
        "relayCarriers": carriers[0],
        "channelHandoffsSum": channelHandoffs,
        "clientChannelResentBytes": sum(s["channelsResent"] for s in samples),
        "oneResumePerCut": len(tracker.resumes) == k and handoffs == k and carriers[0] == k + 1,
        "resumeToAllDeliveredServerMs": {"median": median(serverTimes), "max": max(serverTimes)},
        "resumeToAllDeliveredClientMs": {"median": median(clientTimes), "max": max(clientTimes)},
        "cutToResumeMs": {"median": median(resumeTimes), "max": max(resumeTimes)},
        "plainReopenMs": plain * 1e3,
    }
    worst = [max(s["server"], s["client"]) * 1e3 for s in samples]
    rows = [
        Row("cuts: every byte exact, both ways", None, 1.0 if exact else 0.0, "1 = yes", "%.0f"),
        Row("cuts: resumes (client upcalls) for %d cuts" % (k,), None, len(tracker.resumes), "count", "%.0f"),
        Row("cuts: session handoffs (client)", None, handoffs, "count", "%.0f"),
        Row("cuts: carriers through the relay", None, carriers[0], "count", "%.0f"),
        Row("cuts: resume -> all delivered, median", plain * 1e3, median(worst), "ms"),
        Row("cuts: resume -> all delivered, max", plain * 1e3, max(worst), "ms"),
        Row("cuts: cut -> resume, median", None, median(resumeTimes), "ms"),
    ]
    rows[0].notes.append(
        "%s bytes each way over %d channels (%.1f MiB/s each way while cutting, chunk %d every %.0f ms,"
        " at most %d bytes unechoed per channel)"
        % (format(total, ","), n, rate / 2**20, chunk, tick * 1e3, inflight)
    )
    rows[1].notes.append(
        "server-side sessionResumed upcalls: %d; relay saw %d carriers (1 opening + 1 per cut);"
        " the client's channels counted %d channel resumes in all (%d channels x %d cuts = %d)"
        % (tracker.serverResumes, carriers[0], channelHandoffs, n, k, n * k)
    )
    rows[4].notes.append(
        "slower side of the two, per cut; server side alone: median %.1f ms, max %.1f ms;"
        " client (echo back) alone: median %.1f ms, max %.1f ms; target <= 100 ms"
        % (median(serverTimes), max(serverTimes), median(clientTimes), max(clientTimes))
    )
    rows[4].notes.append(
        "plain column: %d fresh TCP connections opened (%d in flight) until each echoed once"
        " (what an application without Migrate must do after a cut)" % (n, OPENING)
    )
    for row in rows:
        row.label = row.label.replace("cuts:", "cuts, %s load:" % (load,))
    result["load"] = {"name": load, "chunk": chunk, "tick": tick, "inflight": inflight}
    printTable("cuts: %d channels, %d cuts, %s load" % (n, k, load), rows)
    return rows, result


LOADS = {
    # name: (bytes per write, seconds between writes, most bytes unechoed)
    # idle: mostly idle channels (interactive logins): 64 B a second each,
    # and 64 B on every channel as soon as the session has resumed (the
    # time to deliver those is the figure).
    "idle": (64, 1.0, 1024),
    "light": (64, 0.05, 1024),
    "heavy": (256, 0.01, 4096),
}


@defer.inlineCallbacks
def cuts(reactor: Any, args: argparse.Namespace) -> Any:
    n, k = args.channels, args.cuts
    plain = yield plainReopen(reactor, n)
    rows: list[Row] = []
    results = {}
    for load in args.loads.split(","):
        chunk, tick, inflight = LOADS[load]
        chunk = args.chunk if args.chunk is not None else chunk
        tick = args.tick if args.tick is not None else tick
        inflight = args.inflight if args.inflight is not None else inflight
        more, results[load] = yield cutsUnder(reactor, n, k, load, chunk, tick, inflight, plain)
        rows += more
        yield sleep(reactor, 0.5)
    return rows, results


# memory (child processes)


class Idle(Protocol):
    pass


class CountingFactory(Factory):
    def __init__(self) -> None:
        self.made = 0

    def buildProtocol(self, addr: Any) -> Protocol:
        self.made += 1
        p = Idle()
        p.factory = self
        return p


def shortPath(path: str) -> str:
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1]
    if path.startswith(ROOT + os.sep):
        return os.path.relpath(path, ROOT)
    return os.path.basename(path)


def measure(trace: bool) -> int:
    gc.collect()
    if trace:
        return tracemalloc.get_traced_memory()[0]
    return rss()


@defer.inlineCallbacks
def childMemory(reactor: Any, kind: str, count: str, warmCount: str, how: str) -> Any:
    """
    Open C{warm} then C{n} idle channels (or plain connections); print the
    growth with the C{n}.
    """
    n, warm, trace = int(count), int(warmCount), how == "tracemalloc"
    if trace:
        tracemalloc.start()
    server = CountingFactory()
    if kind == "tcp":
        port = yield serverFromString(reactor, "tcp:0:interface=%s" % (LOCAL,)).listen(server)
        endpoint = clientFromString(reactor, "tcp:host=%s:port=%d" % (LOCAL, port.getHost().port))
        sem = defer.DeferredSemaphore(OPENING)
        kept: list[Any] = []

        @defer.inlineCallbacks
        def openSome(m: int) -> Any:
            kept.extend((yield defer.gatherResults(
                [sem.run(endpoint.connect, Factory.forProtocol(Idle)) for _ in range(m)],
                consumeErrors=True,
            )))
        extra = 0
    else:
        port = yield serverFromString(reactor, serverString()).listen(server)
        endpoint = clientFromString(reactor, clientString(port.getHost().port))
        root = yield endpoint.connect(Factory.forProtocol(Idle))
        kept = [root]

        @defer.inlineCallbacks
        def openSome(m: int) -> Any:
            kept.extend((yield defer.gatherResults(
                [root.transport.openChannel(Factory.forProtocol(Idle)) for _ in range(m)],
                consumeErrors=True,
            )))
        extra = 1  # the session's first stream

    yield openSome(warm)
    yield waitUntil(reactor, lambda: server.made == warm + extra, 60, "the warm-up")
    yield sleep(reactor, 0.5)
    before = measure(trace)
    first = tracemalloc.take_snapshot() if trace else None
    yield openSome(n)
    yield waitUntil(reactor, lambda: server.made == warm + n + extra, 60, "the server's side")
    yield sleep(reactor, 0.5)
    after = measure(trace)
    top: list[tuple[str, float]] = []
    if first is not None:
        growth = tracemalloc.take_snapshot().compare_to(first, "lineno")
        top = [
            ("%s:%d" % (shortPath(d.traceback[0].filename), d.traceback[0].lineno), d.size_diff / n)
            for d in growth[:12]
        ]
    print(json.dumps({"kind": kind, "how": how, "before": before, "after": after,
                      "perEach": (after - before) / n, "open": len(kept) - extra, "top": top}), flush=True)


def runMemoryChild(kind: str, n: int, warm: int, how: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--role", "memory", kind, str(n), str(warm), how],
        capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=300,
    )
    if out.returncode:
        raise RuntimeError("memory child %s/%s failed:\n%s" % (kind, how, out.stderr[-3000:]))
    return json.loads(out.stdout.strip().splitlines()[-1])


def memory(args: argparse.Namespace) -> tuple[list[Row], dict[str, Any]]:
    n, warm = args.idle, 20
    results: dict[tuple[str, str], dict[str, Any]] = {}
    for how in ("tracemalloc", "rss"):
        for kind in ("tcp", "migrate"):
            results[kind, how] = runMemoryChild(kind, n, warm, how)
    traced = (results["tcp", "tracemalloc"]["perEach"], results["migrate", "tracemalloc"]["perEach"])
    resident = (results["tcp", "rss"]["perEach"], results["migrate", "rss"]["perEach"])
    rows = [
        Row("memory per idle channel, tracemalloc, both ends", traced[0], traced[1], "bytes", "%.0f"),
        Row("memory per idle channel, RSS, both ends", resident[0], resident[1], "bytes", "%.0f"),
    ]
    rows[0].notes.append(
        "channel - plain TCP connection: %+.0f bytes (target <= +1024); plain = a client and a"
        " server Twisted TCP protocol and transport; channel = both ends of one channel in one session"
        % (traced[1] - traced[0],)
    )
    rows[1].notes.append(
        "channel - plain TCP connection: %+.0f bytes (RSS leaves out the kernel's socket memory;"
        " a channel has no socket of its own)" % (resident[1] - resident[0],)
    )
    for kind in ("tcp", "migrate"):
        rows[0].notes.append(
            "%s, largest growths per %s (tracemalloc, by line): %s"
            % (kind, "connection" if kind == "tcp" else "channel",
               "; ".join("%s %+.0f" % (where, size) for where, size in results[kind, "tracemalloc"]["top"][:8]))
        )
    printTable("memory: %d idle, on top of %d, both ends in one process" % (n, warm), rows)
    result = {
        "idle": n,
        "tracemallocPerPlainTCP": traced[0],
        "tracemallocPerChannel": traced[1],
        "tracemallocDifference": traced[1] - traced[0],
        "rssPerPlainTCP": resident[0],
        "rssPerChannel": resident[1],
        "rssDifference": resident[1] - resident[0],
    }
    return rows, result


# fairness


@implementer(IPushProducer)
class Streamer(Protocol):
    """
    Server side: once the client says anything, writes as fast as its
    transport lets it, through a push producer.
    """

    block = bytes(range(256)) * 64  # 16 KiB

    def __init__(self) -> None:
        self.paused = True
        self.going = False
        self.stopped = False

    def dataReceived(self, data: bytes) -> None:
        if not self.going:
            self.going = True
            # A consumer may pause its producer as it is registered (a
            # Migrate channel does when its session's carrier is full at
            # that moment): start writing only if it did not.
            self.paused = False
            self.transport.registerProducer(self, True)  # type: ignore[union-attr]
            if not self.paused:
                self.resumeProducing()

    def resumeProducing(self) -> None:
        self.paused = False
        transport = self.transport
        write = transport.write  # type: ignore[union-attr]
        block = self.block
        while not self.paused and not self.stopped and not transport.disconnecting:  # type: ignore[union-attr]
            write(block)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.stopped = True

    def pauseProducing(self) -> None:
        self.paused = True

    def stopProducing(self) -> None:
        self.stopped = True


class Reader(Protocol):
    def __init__(self) -> None:
        self.received = 0

    def connectionMade(self) -> None:
        self.transport.write(b"go")  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.received += len(data)


@defer.inlineCallbacks
def streams(reactor: Any, kind: str, count: int) -> Any:
    """
    C{count} streams of C{kind} (C{tcp} connections, or channels of one
    C{migrate} session): the readers, and what to call to close it all.
    """
    if kind == "tcp":
        port = yield serverFromString(reactor, "tcp:0:interface=%s" % (LOCAL,)).listen(
            Factory.forProtocol(Streamer)
        )
        endpoint = clientFromString(reactor, "tcp:host=%s:port=%d" % (LOCAL, port.getHost().port))
        readers = yield defer.gatherResults(
            [endpoint.connect(Factory.forProtocol(Reader)) for _ in range(count)], consumeErrors=True
        )
        closers = [r.transport.abortConnection for r in readers]
    else:
        port = yield serverFromString(reactor, serverString()).listen(Factory.forProtocol(Streamer))
        endpoint = clientFromString(reactor, clientString(port.getHost().port))
        root = yield endpoint.connect(Factory.forProtocol(Idle))
        readers = yield defer.gatherResults(
            [root.transport.openChannel(Factory.forProtocol(Reader)) for _ in range(count)],
            consumeErrors=True,
        )
        closers = [root.transport.abortConnection]

    @defer.inlineCallbacks
    def close() -> Any:
        for c in closers:
            c()
        yield sleep(reactor, 0.3)
        yield port.stopListening()

    return readers, close


@defer.inlineCallbacks
def rates(reactor: Any, readers: list[Reader], seconds: float) -> Any:
    before = [r.received for r in readers]
    start = time.perf_counter()
    yield sleep(reactor, seconds)
    took = time.perf_counter() - start
    return [(r.received - b) / took for r, b in zip(readers, before)]


def addRates(total: Optional[list[float]], more: list[float], share: float) -> list[float]:
    return [(t if total is not None else 0.0) + m * share
            for t, m in zip(total if total is not None else more, more)]


@defer.inlineCallbacks
def fairnessOf(reactor: Any, kind: str, seconds: float, period: float) -> Any:
    """
    Alternate periods with all 8 read and with the first one paused,
    C{seconds} of each in all (a machine whose speed drifts, as a shared
    one does, drifts for both alike), after a settling time at each switch
    that is not counted; then C{seconds} more with all read, the paused
    one included.
    """
    readers, close = yield streams(reactor, kind, 8)
    rounds = max(1, int(round(seconds / period)))
    allReading: Optional[list[float]] = None
    onePaused: Optional[list[float]] = None
    try:
        yield sleep(reactor, 0.5)
        for _ in range(rounds):
            allReading = addRates(allReading, (yield rates(reactor, readers, period)), 1 / rounds)
            readers[0].transport.pauseProducing()
            yield sleep(reactor, 0.3)
            onePaused = addRates(onePaused, (yield rates(reactor, readers, period)), 1 / rounds)
            readers[0].transport.resumeProducing()
            yield sleep(reactor, 0.3)
        after = yield rates(reactor, readers, min(seconds, 2.0))
    finally:
        yield close()
    return {"all": allReading, "paused": onePaused, "resumed": after, "rounds": rounds}


@defer.inlineCallbacks
def fairness(reactor: Any, args: argparse.Namespace) -> Any:
    measured = {}
    for kind in ("tcp", "migrate"):
        measured[kind] = yield fairnessOf(reactor, kind, args.seconds, args.period)
        m = measured[kind]
        print(
            "fairness %-7s all reading: %s MiB/s; channel 1 paused: %s MiB/s; resumed: %s MiB/s"
            % (kind, " ".join("%.1f" % (r / 2**20,) for r in m["all"]),
               " ".join("%.1f" % (r / 2**20,) for r in m["paused"]),
               " ".join("%.1f" % (r / 2**20,) for r in m["resumed"])),
            flush=True,
        )

    def seven(rs: list[float]) -> float:
        return sum(rs[1:])

    fraction = {k: seven(m["paused"]) / seven(m["all"]) for k, m in measured.items()}
    rows = [
        Row("fairness: 8 streams, aggregate, all reading", sum(measured["tcp"]["all"]) / 2**20,
            sum(measured["migrate"]["all"]) / 2**20, "MiB/s"),
        Row("fairness: other 7, all reading", seven(measured["tcp"]["all"]) / 2**20,
            seven(measured["migrate"]["all"]) / 2**20, "MiB/s"),
        Row("fairness: other 7, one reader paused", seven(measured["tcp"]["paused"]) / 2**20,
            seven(measured["migrate"]["paused"]) / 2**20, "MiB/s"),
        Row("fairness: other 7, paused / all reading", fraction["tcp"], fraction["migrate"], "fraction", "%.3f"),
        Row("fairness: the paused stream while paused", measured["tcp"]["paused"][0] / 2**20,
            measured["migrate"]["paused"][0] / 2**20, "MiB/s", "%.3f"),
        Row("fairness: afterwards, all read: slowest / fastest", min(measured["tcp"]["resumed"]) / max(measured["tcp"]["resumed"]),
            min(measured["migrate"]["resumed"]) / max(measured["migrate"]["resumed"]), "ratio", "%.3f"),
    ]
    for kind in ("tcp", "migrate"):
        allRates = measured[kind]["all"]
        rows[0].notes.append(
            "%s: slowest / fastest stream with all reading: %.2f" % (kind, min(allRates) / max(allRates))
        )
    rows[3].notes.append(
        "%d alternations of %.1f s all read / %.1f s one paused (0.3 s settling after each switch"
        " not counted); target for migrate >= 0.9"
        % (measured["migrate"]["rounds"], args.period, args.period)
    )
    printTable("fairness: 8 streams server -> client, %.0f s of each condition" % (args.seconds,), rows)
    result = {
        "seconds": args.seconds,
        "fractionMigrate": fraction["migrate"],
        "fractionTCP": fraction["tcp"],
        "migrateAllMiBs": [r / 2**20 for r in measured["migrate"]["all"]],
        "migratePausedMiBs": [r / 2**20 for r in measured["migrate"]["paused"]],
        "tcpAllMiBs": [r / 2**20 for r in measured["tcp"]["all"]],
        "migrateResumedMiBs": [r / 2**20 for r in measured["migrate"]["resumed"]],
        "tcpPausedMiBs": [r / 2**20 for r in measured["tcp"]["paused"]],
        "tcpResumedMiBs": [r / 2**20 for r in measured["tcp"]["resumed"]],
        "migrateSlowestOverFastestAllReading": min(measured["migrate"]["all"]) / max(measured["migrate"]["all"]),
        "tcpSlowestOverFastestAllReading": min(measured["tcp"]["all"]) / max(measured["tcp"]["all"]),
    }
    return rows, result


# main


@defer.inlineCallbacks
def runReactor(reactor: Any, args: argparse.Namespace) -> Any:
    options = SessionOptions()
    print(
        describeCode(),
        "| Python %s, %d cores | default options: channelWindow %d, maxChannels %d"
        % (platform.python_version(), os.cpu_count() or 0, options.channelWindow, options.maxChannels),
    )
    print("command: %s" % (" ".join([os.path.basename(sys.executable)] + sys.argv),), flush=True)
    commands = ["cuts", "memory", "fairness"] if args.command == "all" else [args.command]
    rows: list[Row] = []
    results: dict[str, Any] = {}
    for command in commands:
        start = time.perf_counter()
        if command == "cuts":
            more, results["cuts"] = yield cuts(reactor, args)
        elif command == "memory":
            more, results["memory"] = yield threads.deferToThread(memory, args)
        else:
            more, results["fairness"] = yield fairness(reactor, args)
        rows += more
        print("(%s took %.1f s)" % (command, time.perf_counter() - start), flush=True)
    if len(commands) > 1:
        printTable("all", rows)
    print()
    print(json.dumps({"benchmark": "channels", "quick": args.quick, **results}))


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--role":
        raiseFileLimit()
        quietLogs()
        task.react(lambda reactor: childMemory(reactor, *sys.argv[3:]))
        return
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0].strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=["cuts", "memory", "fairness", "all"])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--channels", type=int, help="channels for cuts (1000)")
    parser.add_argument("--cuts", type=int, help="carrier cuts (20)")
    parser.add_argument("--loads", default="idle,light,heavy",
                        help="loads for cuts, of %s (light,heavy)" % (", ".join(
                            "%s: %d B every %.0f ms, <= %d B unechoed" % (name, c, t * 1e3, i)
                            for name, (c, t, i) in LOADS.items()),))
    parser.add_argument("--chunk", type=int, help="override: bytes each channel writes per tick")
    parser.add_argument("--tick", type=float, help="override: seconds between writes")
    parser.add_argument("--inflight", type=int,
                        help="override: most bytes a channel has written and not had echoed")
    parser.add_argument("--idle", type=int, help="idle channels and connections for memory (1000)")
    parser.add_argument("--seconds", type=float, help="fairness: seconds of each condition (5)")
    parser.add_argument("--period", type=float, help="fairness: seconds per alternation (1)")
    args = parser.parse_args()
    defaults = dict(channels=1000, cuts=20, idle=1000, seconds=5.0, period=1.0)
    quick = dict(channels=200, cuts=4, idle=200, seconds=1.0, period=0.5)
    for name, value in (quick if args.quick else defaults).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    raiseFileLimit()
    quietLogs()
    task.react(lambda reactor: runReactor(reactor, args))


if __name__ == "__main__":
    main()
