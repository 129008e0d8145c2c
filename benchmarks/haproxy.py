"""
Thousands of sessions from one address behind a real HAProxy (TCP mode),
default options everywhere: how fast they open, and how fast all of them
resume after HAProxy is killed and restarted (every connection cut at once).

A server process listens with ``migrate:tcp:PORT:interface=127.0.0.1`` (an
echo application); HAProxy forwards 127.0.0.1:FRONT to it; this process
opens N sessions through HAProxy (the server sees them all coming from one
address, HAProxy's), writes to each, kills HAProxy, writes again while it
is down, starts it again and times, for every session, how long after the
restart its data came back.  In the same run, N plain Twisted TCP
connections are opened through the same HAProxy, for the open-rate ratio.

    python benchmarks/haproxy.py [--sessions 5000]

Needs ``haproxy`` (``apt-get install haproxy``) and a file limit of about
4 × N (it raises its own when it can).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import json
import os
import select
import subprocess
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from twisted.internet import defer, task  # noqa: E402
from twisted.internet.endpoints import TCP4ClientEndpoint, clientFromString, serverFromString  # noqa: E402
from twisted.internet.protocol import Factory, Protocol  # noqa: E402
from twisted.logger import globalLogBeginner  # noqa: E402

from benchmarks.sessions import raiseFileLimit  # noqa: E402
from tests import haproxy  # noqa: E402
from tests.helpers import Echo, freePort  # noqa: E402

ENV = dict(os.environ, PYTHONPATH=ROOT)
PROFILE = bool(os.environ.get("MIGRATE_BENCH_PROFILE"))
profile = cProfile.Profile()


def serve(reactor: Any, port: str) -> defer.Deferred[None]:
    raiseFileLimit()
    globalLogBeginner.beginLoggingTo([lambda event: None], redirectStandardIO=False)
    endpoint = serverFromString(reactor, "migrate:tcp:%s:interface=127.0.0.1" % (port,))

    def listening(_: object) -> defer.Deferred[None]:
        print(json.dumps({"ready": True}), flush=True)
        return defer.Deferred()

    return endpoint.listen(Factory.forProtocol(Echo)).addCallback(listening)


class Timed(Protocol):
    """
    A client application that notes when the echo of what it expects has
    all come back.
    """

    #: How many sessions have not had all their echo back yet.
    pending = 0

    def __init__(self) -> None:
        self.received = 0
        self.expected = 0
        self.doneAt: float | None = None

    def send(self, data: bytes) -> None:
        if self.doneAt is not None or not self.expected:
            Timed.pending += 1
        self.expected += len(data)
        self.doneAt = None
        self.transport.write(data)

    def dataReceived(self, data: bytes) -> None:
        self.received += len(data)
        if self.received >= self.expected and self.doneAt is None:
            self.doneAt = time.monotonic()
            Timed.pending -= 1


def waitAll(protos: list[Timed], timeout: float) -> defer.Deferred[None]:
    from twisted.internet import reactor

    d: defer.Deferred[None] = defer.Deferred()
    end = time.monotonic() + timeout

    def check() -> None:
        # (A counter, not a pass over every session: the benchmark's own
        # bookkeeping must not cost the client process what it measures.)
        if not Timed.pending:
            d.callback(None)
        elif time.monotonic() > end:
            missing = sum(p.doneAt is None for p in protos)
            d.errback(RuntimeError("%d sessions did not finish in %s s" % (missing, timeout)))
        else:
            reactor.callLater(0.005, check)  # type: ignore[attr-defined]

    check()
    return d


def cpuSeconds(pid: int) -> float:
    """
    User and system CPU seconds used so far by process C{pid}.
    """
    with open("/proc/%d/stat" % (pid,)) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))]


@defer.inlineCallbacks
def run(reactor: Any, count: int) -> Any:
    raiseFileLimit()
    serverPort, frontPort = freePort(), freePort()
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(serverPort)],
        env=ENV, stdout=subprocess.PIPE,
    )
    try:
        assert server.stdout is not None
        ready, _, _ = select.select([server.stdout], [], [], 30)
        assert ready and json.loads(server.stdout.readline())["ready"]
        proxy = haproxy.HAProxy(frontPort, serverPort)
        proxy.start()
        try:
            # Plain Twisted TCP through the same HAProxy, for the open rate.
            plainEndpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", frontPort)
            sem = defer.DeferredSemaphore(64)
            start = time.monotonic()
            plain = yield defer.gatherResults(
                [sem.run(plainEndpoint.connect, Factory.forProtocol(Protocol)) for _ in range(count)]
            )
            plainOpen = time.monotonic() - start
            for p in plain:
                p.transport.loseConnection()
            yield task.deferLater(reactor, 1.0, lambda: None)

            endpoint = clientFromString(reactor, "migrate:tcp:host=127.0.0.1:port=%d" % (frontPort,))
            start = time.monotonic()
            protos = yield defer.gatherResults(
                [endpoint.connect(Factory.forProtocol(Timed)) for _ in range(count)]
            )
            migrateOpen = time.monotonic() - start
            for p in protos:
                p.send(b"x" * 100)
            yield waitAll(protos, 60)

            proxy.kill()
            for p in protos:
                p.send(b"y" * 100)
            yield task.deferLater(reactor, 0.5, lambda: None)
            restarted = time.monotonic()
            cpuBefore = cpuSeconds(os.getpid()), cpuSeconds(server.pid)
            if PROFILE:
                profile.enable()
            proxy.start()
            yield waitAll(protos, 120)
            profile.disable()
            cpuAfter = cpuSeconds(os.getpid()), cpuSeconds(server.pid)
            times = [p.doneAt - restarted for p in protos]  # type: ignore[operator]
            lost = sum(1 for p in protos if not p.transport.state in ("attached", "detached"))
            result = {
                "sessions": count,
                "plain_open_s": round(plainOpen, 3),
                "migrate_open_s": round(migrateOpen, 3),
                "plain_opens_per_s": round(count / plainOpen),
                "migrate_opens_per_s": round(count / migrateOpen),
                "open_rate_ratio": round(plainOpen / migrateOpen, 3),
                "resume_all_s": round(max(times), 3),
                "resume_p50_s": round(percentile(times, 0.5), 3),
                "resume_p99_s": round(percentile(times, 0.99), 3),
                "resume_cpu_client_s": round(cpuAfter[0] - cpuBefore[0], 2),
                "resume_cpu_server_s": round(cpuAfter[1] - cpuBefore[1], 2),
                "sessions_ended": lost,
                "handoffs_min": min(p.transport.handoffs for p in protos),
            }
            print(json.dumps(result))
            if PROFILE:
                pstats.Stats(profile).sort_stats(os.environ.get("MIGRATE_BENCH_PROFILE_SORT", "cumulative")).print_stats(60)
            for p in protos:
                p.transport.abortConnection()
        finally:
            proxy.stop()
    finally:
        server.kill()
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=5000)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if haproxy.skipReason():
        sys.exit(haproxy.skipReason())
    if args.serve:
        task.react(serve, [args.serve])
    else:
        task.react(run, [args.sessions])


if __name__ == "__main__":
    main()
