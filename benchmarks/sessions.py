"""
Session memory and reconnect-storm benchmark (Linux; raises its file limit,
so run it as root or with a high enough ``ulimit -n``).

Memory: a server process holds N sessions (an idle, migratable application
each) opened by a client process over loopback TCP.  Its resident memory
(RSS, after a garbage collection and ``malloc_trim``) is read:

  - with no session (baseline);
  - with N sessions attached and idle;
  - with N sessions detached (the client process killed);
  - with N sessions hibernated into its SQLite store (in that same
    process: freed memory is not all returned to the system, so this is an
    upper bound);
  - in a fresh server process started on the store that holds the N
    hibernated sessions, against a fresh process on an empty store: what
    hibernated sessions really occupy in memory.

Storm: the client process holds M sessions; the server aborts every carrier
at once; the time until every session has resumed.

    python benchmarks/sessions.py [--sessions 10000] [--storm 5000]
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import resource
import select
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from twisted.internet import defer, stdio, task  # noqa: E402
from twisted.internet.endpoints import TCP4ClientEndpoint, serverFromString  # noqa: E402
from twisted.internet.protocol import Factory, Protocol  # noqa: E402
from twisted.logger import globalLogBeginner  # noqa: E402
from twisted.protocols.basic import LineReceiver  # noqa: E402
from zope.interface import implementer  # noqa: E402

from migrate import MigrateClientEndpoint, SessionOptions  # noqa: E402
from tests.helpers import freePort  # noqa: E402
from migrate.interfaces import IMigratable  # noqa: E402

ENV = dict(os.environ, PYTHONPATH=ROOT)


def raiseFileLimit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 200000
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def rss() -> int:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _census() -> dict[str, int]:
    gc.collect()
    counts: dict[str, int] = {}
    for o in gc.get_objects():
        name = type(o).__name__
        if name in ("Session", "Carrier", "MigrateTransport", "Idle", "StreamEngine", "Server", "FrameParser", "DelayedCall"):
            counts[name] = counts.get(name, 0) + 1
    return counts


@implementer(IMigratable)
class Idle(Protocol):
    """
    An idle application with a little state.
    """

    def saveMigrationState(self) -> bytes:
        return b"{}"

    def restoreMigrationState(self, state: bytes) -> None:
        pass

    def validateResume(self, asleep: float, peer: Any) -> bool:
        return True


class ServerControl(LineReceiver):
    """
    Commands on stdin: rss, count, hibernate, cut; answers one JSON line.
    """

    delimiter = b"\n"

    def __init__(self, endpoint: Any) -> None:
        self.endpoint = endpoint

    def lineReceived(self, line: bytes) -> None:
        factory = self.endpoint.factory
        command = line.decode().strip()
        if command == "rss":
            self.answer({"rss": rss()})
        elif command == "count":
            sessions = factory.sessions.values()
            self.answer(
                {
                    "live": sum(1 for s in sessions if not s.hibernated),
                    "attached": sum(1 for s in sessions if s.carrier is not None),
                    "saving": len(factory._saving),
                    "objects": _census() if command == "count" and "census" in os.environ.get("MIGRATE_BENCH", "") else {},
                }
            )
        elif command == "hibernate":
            for session in [s for s in factory.sessions.values() if s.carrier is None]:
                factory.hibernate(session)
            self.answer({"hibernating": len(factory._saving)})
        elif command == "cut":
            for session in list(factory.sessions.values()):
                if session.carrier is not None:
                    session.carrier.transport.abortConnection()
            self.answer({"cut": time.monotonic()})

    def answer(self, data: dict[str, Any]) -> None:
        self.sendLine(json.dumps(data).encode())


def serve(reactor: Any, port: str, store: str) -> defer.Deferred[None]:
    raiseFileLimit()
    # As twistd does: log events go to an observer (here, nowhere) instead
    # of the start-up history buffer, which would keep their sources alive.
    globalLogBeginner.beginLoggingTo([lambda event: None], redirectStandardIO=False)
    endpoint = serverFromString(
        reactor,
        # Default limits; only hibernation is left to the benchmark's command
        # (suspendAfter), so that it measures each state on its own.
        "migrate:tcp:%s:interface=127.0.0.1:store=%s:suspendAfter=100000" % (port, store),
    )

    def listening(_: object) -> defer.Deferred[None]:
        stdio.StandardIO(ServerControl(endpoint))
        print(json.dumps({"ready": True}), flush=True)
        return defer.Deferred()

    return endpoint.listen(Factory.forProtocol(Idle)).addCallback(listening)


class ClientControl(LineReceiver):
    delimiter = b"\n"

    def __init__(self, protocols: list[Any]) -> None:
        self.protocols = protocols

    def lineReceived(self, line: bytes) -> None:
        if line.strip() == b"watch":
            self.watch()

    def watch(self) -> None:
        def check() -> None:
            if all(p.transport.handoffs >= 1 and p.transport.isAttached() for p in self.protocols):
                self.sendLine(json.dumps({"resumed": time.monotonic()}).encode())
                loop.stop()

        loop = task.LoopingCall(check)
        loop.start(0.01)


@defer.inlineCallbacks
def clients(reactor: Any, port: str, count: str) -> Any:
    raiseFileLimit()
    endpoint = MigrateClientEndpoint(
        reactor,
        TCP4ClientEndpoint(reactor, "127.0.0.1", int(port)),
        monitor=None,
    )
    sem = defer.DeferredSemaphore(200)
    opened = yield defer.gatherResults(
        [sem.run(endpoint.connect, Factory.forProtocol(Protocol)) for _ in range(int(count))]
    )
    stdio.StandardIO(ClientControl(opened))
    print(json.dumps({"opened": len(opened)}), flush=True)
    yield defer.Deferred()


class Proc:
    """
    A child process spoken to with JSON lines.
    """

    def __init__(self, *args: str) -> None:
        self.p = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=ENV,
            cwd=ROOT,
        )

    def read(self, timeout: float = 600) -> dict[str, Any]:
        assert self.p.stdout is not None
        ready, _, _ = select.select([self.p.stdout], [], [], timeout)
        if not ready:
            raise SystemExit("child did not answer")
        line = self.p.stdout.readline()
        if not line:
            raise SystemExit("child exited")
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


def waitFor(server: Proc, predicate: Any, timeout: float = 600) -> dict[str, Any]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        counts = server.ask("count")
        if predicate(counts):
            return counts
        time.sleep(0.2)
    raise SystemExit("timed out: %r" % (counts,))


def memory(n: int) -> None:
    work = tempfile.mkdtemp(prefix="migrate-bench-")
    try:
        store = os.path.join(work, "store")
        port = str(freePort())
        server = Proc("--serve", port, store)
        server.read()
        base = server.ask("rss")["rss"]
        client = Proc("--clients", port, str(n))
        t0 = time.monotonic()
        client.read()
        opened = time.monotonic() - t0
        waitFor(server, lambda c: c["attached"] == n)
        attached = server.ask("rss")["rss"]
        client.kill()
        waitFor(server, lambda c: c["attached"] == 0)
        detached = server.ask("rss")["rss"]
        server.ask("hibernate")
        waitFor(server, lambda c: c["live"] == 0 and c["saving"] == 0)
        hibernatedSame = server.ask("rss")["rss"]
        server.kill()
        empty = os.path.join(work, "empty")
        fresh = Proc("--serve", str(freePort()), empty)
        fresh.read()
        freshEmpty = fresh.ask("rss")["rss"]
        fresh.kill()
        loaded = Proc("--serve", str(freePort()), store)
        loaded.read()
        freshFull = loaded.ask("rss")["rss"]
        loaded.kill()
        print("sessions: %d (opened in %.1f s)" % (n, opened))
        print("server RSS with no session:      %8.1f MiB" % (base / 2**20,))
        for label, value, against in (
            ("attached and idle", attached, base),
            ("detached", detached, base),
            ("hibernated (same process)", hibernatedSame, base),
            ("hibernated (fresh process)", freshFull, freshEmpty),
        ):
            print(
                "%-28s RSS %8.1f MiB   per session %8.0f bytes"
                % (label, value / 2**20, (value - against) / n)
            )
        print("store on disk: %.1f MiB" % (os.path.getsize(os.path.join(store, "sessions.sqlite3")) / 2**20,))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def storm(m: int) -> None:
    work = tempfile.mkdtemp(prefix="migrate-bench-")
    try:
        port = str(freePort())
        server = Proc("--serve", port, os.path.join(work, "store"))
        server.read()
        client = Proc("--clients", port, str(m))
        client.read()
        waitFor(server, lambda c: c["attached"] == m)
        assert client.p.stdin is not None
        client.p.stdin.write(b"watch\n")
        client.p.stdin.flush()
        cutAt = server.ask("cut")["cut"]
        resumedAt = client.read()["resumed"]
        print("storm: %d sessions cut at once, all resumed in %.2f s" % (m, resumedAt - cutAt))
        client.kill()
        server.kill()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        task.react(serve, sys.argv[2:4])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--clients":
        task.react(clients, sys.argv[2:4])
        return
    parser = argparse.ArgumentParser(description="session memory and storm benchmark")
    parser.add_argument("--sessions", type=int, default=10000)
    parser.add_argument("--storm", type=int, default=5000)
    args = parser.parse_args()
    if args.sessions:
        memory(args.sessions)
    if args.storm:
        storm(args.storm)


if __name__ == "__main__":
    main()
