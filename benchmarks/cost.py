"""
What Migrate costs (issue 14): CPU per byte, round trips, idle sessions,
memory and opening rate, each against plain Twisted in the same run, with
default options on both sides.

Every row prints the plain figure, the Migrate figure and the ratio
Migrate/plain, from one run:

  throughput  64 MiB written through a push producer and echoed back in
              full, MiB/s: C{tcp:} against C{migrate:tcp:} and C{tls:}
              against C{migrate:tls:}, with both ends in one process (one
              reactor) and with the server in a process of its own (the two
              pinned to separate cores); plain and Migrate alternate, 5
              rounds, medians; and the CPU (user and system, both ends)
              per byte echoed.
  rtt         5,000 one-byte ping-pongs over one connection of each kind
              open side by side (alternating blocks of 250, after 200 of
              warm-up): median and 99th percentile, one process and two.
  idle        N attached idle sessions (1,000 by default) for 60 s: CPU
              seconds (getrusage) with both ends in one process, and with
              the server and the clients in processes of their own; and the
              TCP segments sent meanwhile (C{OutSegs} of C{/proc/net/snmp}),
              each case in a network namespace of its own (root only;
              elsewhere the segments are not counted).  Plain Twisted TCP
              connections as the baseline.  The four cases run side by side.
  memory      a server process's RSS per attached idle session (marginal:
              2,000 sessions opened on top of 100), plain against Migrate;
              then, on a server with C{store=DIR:suspendAfter=1} (an option
              change: by default a detached session waits 60 s), the RSS per
              session after those 2,000 detach and hibernate, in the same
              process.
  open        5,000 sessions opened with 16 in flight, both ends in one
              process: opens per second (3 rounds, alternating, medians).
  all         all of the above.
  profile     the one-process C{migrate:tcp:} bulk echo alone, under
              cProfile: the functions with the most time of their own
              (C{--profiler none} runs it bare, to wrap in C{py-spy}).

Usage::

    python benchmarks/cost.py throughput|rtt|idle|memory|open|all|profile [--quick]

C{--quick} shrinks everything for a smoke run (seconds, not minutes).  The
idle and memory cases open many connections: the benchmark raises its file
limit (as root, or up to the hard limit).
"""

from __future__ import annotations

import argparse
import cProfile
import ctypes
import gc
import io
import json
import os
import platform
import pstats
import resource
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# Run against this checkout (its migrate package and its plugin dropin).
sys.path.insert(0, ROOT)

from twisted.internet import defer, stdio, task, threads  # noqa: E402
from twisted.internet.endpoints import clientFromString, serverFromString  # noqa: E402
from twisted.internet.interfaces import IPushProducer  # noqa: E402
from twisted.internet.protocol import Factory, Protocol  # noqa: E402
from twisted.logger import (  # noqa: E402
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)
from twisted.protocols.basic import LineReceiver  # noqa: E402
from twisted.python.failure import Failure  # noqa: E402
from zope.interface import implementer  # noqa: E402

from migrate.interfaces import IMigratable  # noqa: E402

# Connections opened at once for the idle and memory cases: below plain
# Twisted's listen backlog (50), so that no plain connection's last
# handshake packet is dropped by a full accept queue (its idle client would
# believe it connected while the server never heard of it).
OPENING = 32

ENV = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
LOCAL = "127.0.0.1"


# Helpers shared by every process.


def quietLogs() -> None:
    """
    Log warnings and errors to standard error, nothing else; and start
    logging at once, so that no event is kept in the start-up buffer (which
    would keep its sources alive, and count in the memory figures).
    """
    observer = FilteringLogObserver(
        textFileLogObserver(sys.stderr),
        [LogLevelFilterPredicate(defaultLogLevel=LogLevel.warn)],
    )
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)


def raiseFileLimit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 200000
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def cpuSeconds() -> float:
    """
    User and system CPU seconds this process used so far (getrusage).
    """
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss() -> int:
    """
    Resident memory after a garbage collection and C{malloc_trim(0)}.
    """
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def describeCode() -> str:
    """
    The commit measured, and whether C{migrate/} had uncommitted changes.
    """
    try:
        commit = subprocess.run(
            ["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=10,
        )
        status = subprocess.run(
            ["git", "-C", ROOT, "status", "--porcelain", "--", "migrate", "twisted"],
            capture_output=True, text=True, timeout=10,
        ).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return "code: %s (no git)" % (ROOT,)
    if commit.returncode:
        return "code: %s (not a git checkout)" % (ROOT,)
    untracked = sum(1 for line in status if line.startswith("??"))
    changed = len(status) - untracked
    state = (
        "migrate/ clean" if not status
        else "uncommitted in migrate/: %d changed, %d untracked files" % (changed, untracked)
    )
    return "code: %s (%s)" % (commit.stdout.strip(), state)


def median(xs: Iterable[float]) -> float:
    return statistics.median(list(xs))


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * q))]


# Application protocols.


class Echo(Protocol):
    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[union-attr]


@implementer(IMigratable)
class MigratableEcho(Echo):
    """
    An echo application that can hibernate (it has no state to save).
    """

    def saveMigrationState(self) -> bytes:
        return b""

    def restoreMigrationState(self, state: bytes) -> None:
        pass

    def validateResume(self, asleep: float, peer: Any) -> bool:
        return True


class Counted(Protocol):
    """
    Counts the connections (or sessions) its factory has open.
    """

    factory: "CountingFactory"

    def connectionMade(self) -> None:
        self.factory.live += 1

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.factory.live -= 1


class CountedEcho(Counted, Echo):
    pass


@implementer(IMigratable)
class CountedMigratableEcho(Counted, MigratableEcho):
    pass


class CountingFactory(Factory):
    def __init__(self, protocol: type[Protocol]) -> None:
        self.protocol = protocol
        self.live = 0


@implementer(IPushProducer)
class Bulk(Protocol):
    """
    Writes C{total} bytes in C{chunk}-byte writes through a push producer
    and counts the echo.
    """

    def __init__(self, total: int, chunk: int = 65536) -> None:
        self.total = total
        self.chunk = b"x" * chunk
        self.sent = 0
        self.received = 0
        self.paused = False
        self.start = 0.0
        self.done: defer.Deferred[float] = defer.Deferred()

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


class Ping(Protocol):
    """
    Sends one byte at a time and waits for its echo.
    """

    def __init__(self) -> None:
        self.waiting: Optional[defer.Deferred[None]] = None

    def ping(self) -> defer.Deferred[None]:
        self.waiting = defer.Deferred()
        self.transport.write(b"p")  # type: ignore[union-attr]
        return self.waiting

    def dataReceived(self, data: bytes) -> None:
        if self.waiting is not None:
            d, self.waiting = self.waiting, None
            d.callback(None)


# Endpoint strings, with default options.


def serverString(kind: str, certs: Optional[tuple[str, str]] = None, extra: str = "") -> str:
    """
    A server endpoint string on the loopback interface, any port.  C{kind}:
    C{tcp}, C{migrate}, C{tls} or C{migrate-tls}.
    """
    if kind in ("tls", "migrate-tls"):
        assert certs is not None
        inner = "ssl:0:interface=%s:privateKey=%s:certKey=%s" % (LOCAL, certs[0], certs[1])
    else:
        inner = "tcp:0:interface=%s" % (LOCAL,)
    return ("migrate:" + inner if kind.startswith("migrate") else inner) + extra


def clientString(kind: str, port: int, caDir: Optional[str] = None) -> str:
    if kind in ("tls", "migrate-tls"):
        inner = "tls:host=%s:port=%d:trustRoots=%s" % (LOCAL, port, caDir)
    else:
        inner = "tcp:host=%s:port=%d" % (LOCAL, port)
    return "migrate:" + inner if kind.startswith("migrate") else inner


def writeCerts(base: str) -> tuple[tuple[str, str], str]:
    """
    A CA and a server certificate for 127.0.0.1, made now, as files.

    @return: C{((keyPath, certPath), caDirectory)}
    """
    from tests.certs import writeServerFiles

    caDir = os.path.join(base, "ca")
    return writeServerFiles(os.path.join(base, "server"), "Cost CA", LOCAL, caDir), caDir


def openMany(endpoint: Any, factory: Factory, count: int, inFlight: int) -> defer.Deferred[list[Any]]:
    """
    Open C{count} connections, at most C{inFlight} at a time.
    """
    sem = defer.DeferredSemaphore(inFlight)
    return defer.gatherResults(
        [sem.run(endpoint.connect, factory) for _ in range(count)], consumeErrors=True
    )


def sleep(reactor: Any, seconds: float) -> defer.Deferred[None]:
    return task.deferLater(reactor, seconds, lambda: None)


# Child processes: a server, a client opening connections, or both in one;
# each answers one JSON line per command read on its standard input.


class Control(LineReceiver):
    """
    Commands: C{cpu}, C{rss}, C{count}.
    """

    delimiter = b"\n"

    def __init__(self, count: Callable[[], Any]) -> None:
        self.count = count

    def lineReceived(self, line: bytes) -> None:
        command = line.decode().strip()
        if command == "cpu":
            self.answer({"cpu": cpuSeconds()})
        elif command == "rss":
            self.answer({"rss": rss()})
        elif command == "count":
            defer.maybeDeferred(self.count).addCallback(self.answer)

    def answer(self, data: dict[str, Any]) -> None:
        self.sendLine(json.dumps(data).encode())


def serverCounter(kind: str, endpoint: Any, factory: CountingFactory) -> Callable[[], Any]:
    """
    A function giving the server's counts: C{attached} sessions (or plain
    connections), C{live} ones (in memory, not ended), C{hibernated} ones
    (in the store, or being saved there) and C{saving}.
    """

    def count() -> Any:
        if not kind.startswith("migrate"):
            return {"attached": factory.live, "live": factory.live, "hibernated": 0, "saving": 0}
        server = endpoint.factory
        sessions = [s for s in server.sessions.values() if not s.ended]
        counts = {
            "attached": sum(1 for s in sessions if s.carrier is not None and not s.hibernated),
            "live": sum(1 for s in sessions if not s.hibernated),
            "saving": len(getattr(server, "_saving", ())),
        }

        def listed(rows: list[dict[str, Any]]) -> dict[str, int]:
            counts["hibernated"] = sum(1 for r in rows if r.get("hibernated"))
            return counts

        return server.listSessions().addCallback(listed)

    return count


@defer.inlineCallbacks
def listenCounting(reactor: Any, kind: str, extra: str = "", migratable: bool = False) -> Any:
    factory = CountingFactory(CountedMigratableEcho if migratable else CountedEcho)
    endpoint = serverFromString(reactor, serverString(kind, extra=extra))
    port = yield endpoint.listen(factory)
    return port, serverCounter(kind, endpoint, factory)


@defer.inlineCallbacks
def childServe(reactor: Any, kind: str, extra: str, app: str) -> Any:
    port, count = yield listenCounting(reactor, kind, extra, app == "migratable")
    stdio.StandardIO(Control(count))
    print(json.dumps({"port": port.getHost().port}), flush=True)
    yield defer.Deferred()


@defer.inlineCallbacks
def childOpen(reactor: Any, kind: str, port: str, count: str, inFlight: str) -> Any:
    endpoint = clientFromString(reactor, clientString(kind, int(port)))
    start = time.monotonic()
    protocols = yield openMany(endpoint, Factory.forProtocol(Protocol), int(count), int(inFlight))
    stdio.StandardIO(Control(lambda: {"opened": len(protocols)}))
    print(json.dumps({"opened": len(protocols), "seconds": time.monotonic() - start}), flush=True)
    yield defer.Deferred()


@defer.inlineCallbacks
def childBoth(reactor: Any, kind: str, count: str, inFlight: str) -> Any:
    """
    Server and clients on one reactor.
    """
    port, serverCount = yield listenCounting(reactor, kind)
    endpoint = clientFromString(reactor, clientString(kind, port.getHost().port))
    protocols = yield openMany(endpoint, Factory.forProtocol(Protocol), int(count), int(inFlight))
    stdio.StandardIO(
        Control(
            lambda: defer.maybeDeferred(serverCount).addCallback(
                lambda counts: dict(counts, opened=len(protocols))
            )
        )
    )
    print(json.dumps({"opened": len(protocols)}), flush=True)
    yield defer.Deferred()


@defer.inlineCallbacks
def childEchoServer(reactor: Any, key: str, cert: str) -> Any:
    ports = {}
    for kind in ("tcp", "migrate", "tls", "migrate-tls"):
        port = yield serverFromString(reactor, serverString(kind, (key, cert))).listen(
            Factory.forProtocol(Echo)
        )
        ports[kind] = port.getHost().port
    print(json.dumps(ports), flush=True)
    yield defer.Deferred()


ROLES: dict[str, Callable[..., Any]] = {
    "serve": childServe,
    "open": childOpen,
    "both": childBoth,
    "echo-server": childEchoServer,
}


def runChild(role: str, args: list[str]) -> None:
    raiseFileLimit()
    quietLogs()
    task.react(lambda reactor: ROLES[role](reactor, *args))


class Proc:
    """
    A child process of this script, spoken to in JSON lines; in a network
    namespace if C{netns} is given.
    """

    def __init__(self, role: str, *args: str, netns: Optional[str] = None, cpu: Optional[int] = None) -> None:
        command = [sys.executable, os.path.abspath(__file__), "--role", role, *args]
        if netns is not None:
            command = ["ip", "netns", "exec", netns, *command]
        self.p = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=ENV, cwd=ROOT
        )
        if cpu is not None:
            os.sched_setaffinity(self.p.pid, {cpu})

    def read(self, timeout: float = 600) -> dict[str, Any]:
        assert self.p.stdout is not None
        ready, _, _ = select.select([self.p.stdout], [], [], timeout)
        if not ready:
            raise SystemExit("a child process did not answer within %s s" % (timeout,))
        line = self.p.stdout.readline()
        if not line:
            raise SystemExit("a child process exited (code %s)" % (self.p.wait(),))
        return json.loads(line)

    def ask(self, command: str) -> dict[str, Any]:
        assert self.p.stdin is not None
        self.p.stdin.write(command.encode() + b"\n")
        self.p.stdin.flush()
        return self.read()

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()


def waitCount(
    server: Proc, predicate: Callable[[dict[str, int]], bool], timeout: float = 600, label: str = ""
) -> dict[str, int]:
    end = time.monotonic() + timeout
    counts = server.ask("count")
    while not predicate(counts):
        if time.monotonic() > end:
            raise SystemExit("timed out waiting for the server%s: %r" % (label, counts))
        time.sleep(0.1)
        counts = server.ask("count")
    return counts


class Namespace:
    """
    A network namespace of its own, with only its loopback interface, so
    that its TCP counters count only what runs in it.
    """

    serial = 0

    def __init__(self) -> None:
        Namespace.serial += 1
        self.name = "mgcost%d_%d" % (os.getpid() % 100000, Namespace.serial)
        subprocess.run(["ip", "netns", "add", self.name], check=True, timeout=20)
        subprocess.run(["ip", "-n", self.name, "link", "set", "dev", "lo", "up"], check=True, timeout=20)

    def tcpCounters(self) -> dict[str, int]:
        out = subprocess.run(
            ["ip", "netns", "exec", self.name, "cat", "/proc/net/snmp"],
            capture_output=True, text=True, check=True, timeout=20,
        ).stdout
        return parseSnmp(out, "Tcp")

    def destroy(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], timeout=20)


def parseSnmp(text: str, group: str) -> dict[str, int]:
    lines = [line.split() for line in text.splitlines() if line.startswith(group + ":")]
    names, values = lines[0][1:], lines[1][1:]
    return {n: int(v) for n, v in zip(names, values)}


def namespacesAvailable() -> bool:
    return os.geteuid() == 0 and shutil.which("ip") is not None


# Results.


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
        return "%-48s %12s %12s %8s" % (
            "%s (%s)" % (self.label, self.unit), show(self.plain), show(self.migrate),
            "-" if r is None else "%.3f" % (r,),
        )


def printTable(title: str, rows: list[Row]) -> None:
    print()
    print("%-48s %12s %12s %8s" % (title, "plain", "migrate", "ratio"))
    for row in rows:
        print(row.line())
        for note in row.notes:
            print("    " + note)
    sys.stdout.flush()


# throughput and rtt


@defer.inlineCallbacks
def bulkOnce(reactor: Any, endpoint: Any, megabytes: int) -> Any:
    total = megabytes * 1024 * 1024
    client = yield endpoint.connect(Factory.forProtocol(lambda: Bulk(total)))
    client.go()
    elapsed = yield client.done
    client.transport.unregisterProducer()
    client.transport.loseConnection()
    yield sleep(reactor, 0.1)
    return megabytes / elapsed


@defer.inlineCallbacks
def localEndpoints(reactor: Any, certs: tuple[str, str], caDir: str) -> Any:
    """
    Echo servers on this reactor; client endpoints for each kind.
    """
    endpoints = {}
    for kind in ("tcp", "migrate", "tls", "migrate-tls"):
        port = yield serverFromString(reactor, serverString(kind, certs)).listen(
            Factory.forProtocol(Echo)
        )
        endpoints[kind] = clientFromString(reactor, clientString(kind, port.getHost().port, caDir))
    return endpoints


class TwoProcesses:
    """
    An echo server in a child process (its own core when there are two),
    this process the client.
    """

    def __init__(self, reactor: Any, certs: tuple[str, str], caDir: str, pin: bool) -> None:
        self.affinity = os.sched_getaffinity(0)
        cpus = sorted(self.affinity)
        pinned = pin and len(cpus) >= 2
        self.proc = Proc("echo-server", *certs, cpu=cpus[1] if pinned else None)
        if pinned:
            os.sched_setaffinity(0, {cpus[0]})
        ports = self.proc.read(60)
        self.endpoints = {
            kind: clientFromString(reactor, clientString(kind, ports[kind], caDir)) for kind in ports
        }

    def serverCPU(self) -> float:
        """
        CPU seconds the server process used so far (C{/proc}, in clock
        ticks).
        """
        with open("/proc/%d/stat" % (self.proc.p.pid,)) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.kill()
        os.sched_setaffinity(0, self.affinity)


@defer.inlineCallbacks
def throughput(reactor: Any, args: argparse.Namespace, certs: tuple[str, str], caDir: str) -> Any:
    rows, cpuRows = [], []
    local = yield localEndpoints(reactor, certs, caDir)
    two = TwoProcesses(reactor, certs, caDir, args.pin)
    echoed = args.megabytes * 2**20
    try:
        for where, endpoints in (("one process", local), ("two processes", two.endpoints)):
            for plainKind, migrateKind in (("tcp", "migrate"), ("tls", "migrate-tls")):
                label = "throughput, %s, %s" % (where, plainKind)
                results: dict[str, list[float]] = {plainKind: [], migrateKind: []}
                cpu: dict[str, list[float]] = {plainKind: [], migrateKind: []}
                for r in range(args.rounds):
                    order = (plainKind, migrateKind) if r % 2 == 0 else (migrateKind, plainKind)
                    for kind in order:
                        before = cpuSeconds() + (two.serverCPU() if endpoints is two.endpoints else 0.0)
                        mbps = yield bulkOnce(reactor, endpoints[kind], args.megabytes)
                        after = cpuSeconds() + (two.serverCPU() if endpoints is two.endpoints else 0.0)
                        results[kind].append(mbps)
                        cpu[kind].append((after - before) * 1e9 / echoed)
                    print(
                        "%s round %d: plain %7.1f MiB/s  migrate %7.1f MiB/s  ratio %.3f"
                        % (label, r + 1, results[plainKind][-1], results[migrateKind][-1],
                           results[migrateKind][-1] / results[plainKind][-1]),
                        flush=True,
                    )
                rows.append(Row(label, median(results[plainKind]), median(results[migrateKind]), "MiB/s"))
                cpuRows.append(
                    Row("CPU per byte echoed, %s, %s" % (where, plainKind),
                        median(cpu[plainKind]), median(cpu[migrateKind]), "ns/B", "%.2f")
                )
    finally:
        two.stop()
    rows += cpuRows
    cpuRows[0].notes.append("CPU (user+system) of both ends, per payload byte written and echoed back")
    printTable("throughput: %d MiB echoed, median of %d rounds" % (args.megabytes, args.rounds), rows)
    return rows


@defer.inlineCallbacks
def pingPong(reactor: Any, endpoints: dict[str, Any], messages: int) -> Any:
    """
    One-byte round trips over a connection of each kind open side by side,
    in alternating blocks: the samples of each, in seconds.
    """
    pings = {}
    for kind in ("tcp", "migrate"):
        pings[kind] = yield endpoints[kind].connect(Factory.forProtocol(Ping))
        for _ in range(200):
            yield pings[kind].ping()
    samples: dict[str, list[float]] = {"tcp": [], "migrate": []}
    block = min(250, messages)
    clock = time.perf_counter
    for b in range(max(1, messages // block)):
        for kind in ("tcp", "migrate") if b % 2 == 0 else ("migrate", "tcp"):
            ping, out = pings[kind], samples[kind]
            for _ in range(block):
                t0 = clock()
                yield ping.ping()
                out.append(clock() - t0)
    for kind in pings:
        pings[kind].transport.loseConnection()
    yield sleep(reactor, 0.2)
    return samples


@defer.inlineCallbacks
def rtt(reactor: Any, args: argparse.Namespace, certs: tuple[str, str], caDir: str) -> Any:
    rows = []
    local = yield localEndpoints(reactor, certs, caDir)
    two = TwoProcesses(reactor, certs, caDir, args.pin)
    try:
        for where, endpoints in (("one process", local), ("two processes", two.endpoints)):
            samples = yield pingPong(reactor, endpoints, args.messages)
            rows.append(Row("rtt median, %s" % (where,), median(samples["tcp"]) * 1e6,
                            median(samples["migrate"]) * 1e6, "us"))
            rows.append(Row("rtt p99, %s" % (where,), percentile(samples["tcp"], 0.99) * 1e6,
                            percentile(samples["migrate"], 0.99) * 1e6, "us"))
    finally:
        two.stop()
    printTable("rtt: %d one-byte round trips each, tcp: against migrate:tcp:" % (args.messages,), rows)
    return rows


@defer.inlineCallbacks
def profileBulk(reactor: Any, args: argparse.Namespace) -> Any:
    port = yield serverFromString(reactor, serverString("migrate")).listen(Factory.forProtocol(Echo))
    endpoint = clientFromString(reactor, clientString("migrate", port.getHost().port))
    yield bulkOnce(reactor, endpoint, 8)  # warm-up
    profiler = cProfile.Profile() if args.profiler == "cprofile" else None
    rates = []
    if profiler is not None:
        profiler.enable()
    cpu0 = cpuSeconds()
    for _ in range(args.rounds):
        rates.append((yield bulkOnce(reactor, endpoint, args.megabytes)))
    cpu = cpuSeconds() - cpu0
    if profiler is not None:
        profiler.disable()
    print(
        "one process, migrate:tcp:, %d x %d MiB: median %.1f MiB/s, %.1f ns of CPU per byte echoed%s"
        % (args.rounds, args.megabytes, median(rates),
           cpu * 1e9 / (args.rounds * args.megabytes * 2**20),
           " (under cProfile)" if profiler is not None else "")
    )
    if profiler is not None:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(args.top)
        print(out.getvalue())


# open


@defer.inlineCallbacks
def openRate(reactor: Any, args: argparse.Namespace) -> Any:
    listeners = {}
    for kind in ("tcp", "migrate"):
        port, count = yield listenCounting(reactor, kind)
        endpoint = clientFromString(reactor, clientString(kind, port.getHost().port))
        listeners[kind] = (endpoint, count)
    rates: dict[str, list[float]] = {"tcp": [], "migrate": []}
    for r in range(args.open_rounds):
        for kind in ("tcp", "migrate") if r % 2 == 0 else ("migrate", "tcp"):
            endpoint, count = listeners[kind]
            start = time.perf_counter()
            protocols = yield openMany(endpoint, Factory.forProtocol(Protocol), args.open_sessions, args.in_flight)
            rates[kind].append(args.open_sessions / (time.perf_counter() - start))
            for p in protocols:
                p.transport.loseConnection()
            end = time.monotonic() + 60
            while time.monotonic() < end:
                counts = yield defer.maybeDeferred(count)
                if not counts["live"]:
                    break
                yield sleep(reactor, 0.1)
            yield sleep(reactor, 0.5)
        print(
            "open round %d: plain %7.0f/s  migrate %7.0f/s  ratio %.3f"
            % (r + 1, rates["tcp"][-1], rates["migrate"][-1], rates["migrate"][-1] / rates["tcp"][-1]),
            flush=True,
        )
    rows = [Row("opens, one process", median(rates["tcp"]), median(rates["migrate"]), "per s", "%.0f")]
    printTable(
        "open: %d sessions, %d in flight, median of %d rounds"
        % (args.open_sessions, args.in_flight, args.open_rounds),
        rows,
    )
    return rows


# idle (blocking: child processes only)


class IdleCase:
    """
    N idle connections of one kind, in one process or two, in a network
    namespace of their own when possible.
    """

    def __init__(self, kind: str, processes: int, n: int, inFlight: int, isolate: bool) -> None:
        self.kind = kind
        self.processes = processes
        self.netns = Namespace() if isolate else None
        where = self.netns.name if self.netns is not None else None
        self.procs: list[Proc] = []
        if processes == 1:
            self.server = Proc("both", kind, str(n), str(inFlight), netns=where)
            self.procs.append(self.server)
            self.client = self.server
        else:
            self.server = Proc("serve", kind, "", "echo", netns=where)
            self.procs.append(self.server)
            port = self.server.read(60)["port"]
            self.client = Proc("open", kind, str(port), str(n), str(inFlight), netns=where)
            self.procs.append(self.client)
        self.n = n

    def waitReady(self) -> None:
        self.client.read()
        waitCount(
            self.server, lambda c: c["attached"] >= self.n, 120,
            " (%s, %d process%s)" % (self.kind, self.processes, "es" if self.processes > 1 else ""),
        )

    def sample(self) -> dict[str, Any]:
        sample: dict[str, Any] = {
            "server": self.server.ask("cpu")["cpu"],
            "client": self.client.ask("cpu")["cpu"],
            "time": time.monotonic(),
        }
        if self.netns is not None:
            sample["tcp"] = self.netns.tcpCounters()
        return sample

    def stop(self) -> None:
        for p in self.procs:
            p.kill()
        if self.netns is not None:
            self.netns.destroy()


def idle(args: argparse.Namespace) -> list[Row]:
    isolate = namespacesAvailable()
    n = args.sessions
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    # Both ends in one process take two descriptors per session.
    layouts = (1, 2) if 2 * n + 200 <= limit else (2,)
    cases: dict[tuple[str, int], IdleCase] = {}
    try:
        for processes in layouts:
            for kind in ("tcp", "migrate"):
                cases[kind, processes] = IdleCase(kind, processes, n, OPENING, isolate)
        for case in cases.values():
            case.waitReady()
        # Let the openings' tails (delayed acknowledgements) pass.
        time.sleep(2.0)
        before = {key: case.sample() for key, case in cases.items()}
        time.sleep(args.window)
        after = {key: case.sample() for key, case in cases.items()}
        for key, case in cases.items():
            counts = case.server.ask("count")
            if counts["attached"] != n:
                print("warning: %s in %d process(es): %r at the end" % (key[0], key[1], counts))
    finally:
        for case in cases.values():
            case.stop()

    def cpu(key: tuple[str, int], who: str) -> Optional[float]:
        if key not in cases:
            return None
        return after[key][who] - before[key][who]

    def segments(key: tuple[str, int]) -> Optional[float]:
        if key not in cases or "tcp" not in before[key]:
            return None
        return after[key]["tcp"]["OutSegs"] - before[key]["tcp"]["OutSegs"]

    window = median(after[k]["time"] - before[k]["time"] for k in cases)
    rows = [
        Row("idle CPU, one process, both ends", cpu(("tcp", 1), "server"), cpu(("migrate", 1), "server"), "s", "%.3f"),
        Row("idle CPU, server process", cpu(("tcp", 2), "server"), cpu(("migrate", 2), "server"), "s", "%.3f"),
        Row("idle CPU, client process", cpu(("tcp", 2), "client"), cpu(("migrate", 2), "client"), "s", "%.3f"),
        Row("idle TCP segments, one process", segments(("tcp", 1)), segments(("migrate", 1)), "OutSegs", "%.0f"),
        Row("idle TCP segments, two processes", segments(("tcp", 2)), segments(("migrate", 2)), "OutSegs", "%.0f"),
    ]
    for row in rows[:3]:
        if row.migrate is not None and row.plain is not None:
            row.notes.append(
                "Migrate - plain: %.1f us of CPU per session per minute"
                % ((row.migrate - row.plain) * 1e6 / n * 60 / window,)
            )
    for row in rows[3:]:
        if row.migrate is not None:
            row.notes.append("Migrate: %.2f segments per session per minute" % (row.migrate / n * 60 / window,))
    if 1 not in layouts:
        rows[0].notes.append(
            "not measured: both ends in one process need %d file descriptors, the limit here is %d"
            % (2 * n + 200, limit)
        )
    printTable(
        "idle: %d attached idle sessions, %.1f s%s"
        % (n, window, "" if isolate else " (segments not counted: needs root and ip netns)"),
        rows,
    )
    return rows


# memory (blocking: child processes only)


def memoryCase(kind: str, extra: str, n: int, warm: int, hibernate: bool) -> dict[str, float]:
    server = Proc("serve", kind, extra, "migratable")
    procs = [server]
    try:
        port = str(server.read(60)["port"])
        procs.append(Proc("open", kind, port, str(warm), str(OPENING)))
        procs[-1].read()
        waitCount(server, lambda c: c["attached"] >= warm)
        time.sleep(0.5)
        base = server.ask("rss")["rss"]
        main = Proc("open", kind, port, str(n), str(OPENING))
        procs.append(main)
        main.read()
        waitCount(server, lambda c: c["attached"] >= warm + n)
        time.sleep(0.5)
        attached = server.ask("rss")["rss"]
        result = {"base": base, "attached": attached, "perAttached": (attached - base) / n}
        if hibernate:
            main.kill()
            counts = waitCount(
                server,
                lambda c: c["hibernated"] >= n and c["live"] == warm and c["saving"] == 0,
                120,
            )
            time.sleep(0.5)
            hibernated = server.ask("rss")["rss"]
            result.update(hibernated=hibernated, perHibernated=(hibernated - base) / n, counts=counts)
        return result
    finally:
        for p in procs:
            p.kill()


def memory(args: argparse.Namespace) -> list[Row]:
    n, warm = args.memory_sessions, 100
    plain = memoryCase("tcp", "", n, warm, False)
    migrate = memoryCase("migrate", "", n, warm, False)
    store = tempfile.mkdtemp(prefix="migrate-cost-")
    try:
        hibernating = memoryCase("migrate", ":store=%s:suspendAfter=1" % (store,), n, warm, True)
    finally:
        shutil.rmtree(store, ignore_errors=True)
    rows = [
        Row("server RSS per attached idle session", plain["perAttached"], migrate["perAttached"], "bytes", "%.0f"),
        Row("  same, server with store, suspendAfter=1", plain["perAttached"], hibernating["perAttached"], "bytes", "%.0f"),
        Row("server RSS per hibernated session", None, hibernating["perHibernated"], "bytes", "%.0f"),
    ]
    rows[0].notes.append(
        "server RSS with %d sessions: plain %.1f MiB, migrate %.1f MiB; with %d more: plain %.1f MiB, migrate %.1f MiB"
        % (warm, plain["base"] / 2**20, migrate["base"] / 2**20, n, plain["attached"] / 2**20, migrate["attached"] / 2**20)
    )
    rows[2].notes.append(
        "same process, after the %d sessions' client died and they hibernated (suspendAfter=1 instead of the default 60); RSS %.1f MiB"
        % (n, hibernating["hibernated"] / 2**20)
    )
    printTable("memory: %d sessions on top of %d, server in its own process" % (n, warm), rows)
    return rows


# main


@defer.inlineCallbacks
def runReactor(reactor: Any, args: argparse.Namespace) -> Any:
    if args.command == "profile":
        yield profileBulk(reactor, args)
        return
    print(describeCode(), "| Python %s, Twisted, %d cores" % (platform.python_version(), os.cpu_count() or 0))
    work = tempfile.mkdtemp(prefix="migrate-cost-")
    rows: list[Row] = []
    try:
        certs, caDir = writeCerts(work)
        commands = ["throughput", "rtt", "open", "idle", "memory"] if args.command == "all" else [args.command]
        for command in commands:
            if command == "throughput":
                rows += yield throughput(reactor, args, certs, caDir)
            elif command == "rtt":
                rows += yield rtt(reactor, args, certs, caDir)
            elif command == "open":
                rows += yield openRate(reactor, args)
            elif command == "idle":
                rows += yield threads.deferToThread(idle, args)
            elif command == "memory":
                rows += yield threads.deferToThread(memory, args)
        if len(commands) > 1:
            printTable("all", rows)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--role":
        runChild(sys.argv[2], sys.argv[3:])
        return
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0].strip(), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["throughput", "rtt", "idle", "memory", "open", "all", "profile"])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--rounds", type=int, help="bulk rounds (5)")
    parser.add_argument("--megabytes", type=int, help="MiB per bulk round (64)")
    parser.add_argument("--messages", type=int, help="round trips of each kind (5000)")
    parser.add_argument("--sessions", type=int, help="idle sessions (1000; try 10000)")
    parser.add_argument("--window", type=float, help="idle seconds measured (60)")
    parser.add_argument("--memory-sessions", type=int, help="sessions for the memory figures (2000)")
    parser.add_argument("--open-sessions", type=int, help="sessions opened per round (5000)")
    parser.add_argument("--open-rounds", type=int, help="opening rounds (3)")
    parser.add_argument("--in-flight", type=int, default=16, help="openings in flight (16)")
    parser.add_argument("--profiler", choices=["cprofile", "none"], default="cprofile")
    parser.add_argument("--top", type=int, default=10, help="functions listed by profile (10)")
    parser.add_argument("--no-pin", dest="pin", action="store_false",
                        help="do not pin the two processes to separate cores")
    args = parser.parse_args()
    defaults = dict(rounds=5, megabytes=64, messages=5000, sessions=1000, window=60.0,
                    memory_sessions=2000, open_sessions=5000, open_rounds=3)
    quick = dict(rounds=2, megabytes=8, messages=500, sessions=100, window=5.0,
                 memory_sessions=200, open_sessions=500, open_rounds=1)
    for name, value in (quick if args.quick else defaults).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    raiseFileLimit()
    quietLogs()
    task.react(lambda reactor: runReactor(reactor, args))


if __name__ == "__main__":
    main()
