"""
Forwarder benchmark: an echo service reached directly, through a pair of
plain C{twistd migrate} forwarders (C{tcp:} to C{tcp:}), and through a pair
joined by a Migrate session (the roaming tunnel), in the same run.

Processes: the echo service (the Twisted echo of C{benchmarks/echo.py}),
four C{twistd migrate} forwarders, and this client, which alternates
between the three paths, measuring bulk throughput (MiB/s echoed back) and
the round trip of 64-byte messages (median and p99).  Usage::

    python benchmarks/forwarders.py [--rounds 5] [--megabytes 32] [--messages 4000]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

from twisted.internet import defer, task  # noqa: E402
from twisted.internet.endpoints import clientFromString  # noqa: E402
from twisted.internet.protocol import Factory  # noqa: E402

from echo import PingClient, bulk  # noqa: E402
from tests.helpers import freePort  # noqa: E402

TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
ENV = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))


def waitPort(port: int, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("port %d never opened" % (port,))


@defer.inlineCallbacks
def run(reactor: Any, args: argparse.Namespace) -> Any:
    procs: list[subprocess.Popen[bytes]] = []

    def spawn(cmd: list[str]) -> subprocess.Popen[bytes]:
        p = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        procs.append(p)
        return p

    try:
        server = spawn([sys.executable, os.path.join(HERE, "echo.py"), "--serve"])
        assert server.stdout is not None
        backend = json.loads(server.stdout.readline())["plain"]
        a, b, c, d = (freePort() for _ in range(4))
        forwarders = [
            # plain pair: client -> a -> b -> backend
            ["--listen", "tcp:%d:interface=127.0.0.1" % b, "--connect", "tcp:127.0.0.1:%d" % backend],
            ["--listen", "tcp:%d:interface=127.0.0.1" % a, "--connect", "tcp:127.0.0.1:%d" % b],
            # Migrate pair: client -> c -> (Migrate session) -> d -> backend
            ["--listen", "migrate:tcp:%d:interface=127.0.0.1" % d, "--connect", "tcp:127.0.0.1:%d" % backend],
            ["--listen", "tcp:%d:interface=127.0.0.1" % c, "--connect", "migrate:tcp:host=127.0.0.1:port=%d" % d],
        ]
        for f in forwarders:
            spawn(TWISTD + ["-n", "--pidfile=", "--logfile=/dev/null", "migrate"] + f)
        for port in (a, b, c, d):
            waitPort(port)
        paths = {
            "direct": clientFromString(reactor, "tcp:host=127.0.0.1:port=%d" % backend),
            "plain pair": clientFromString(reactor, "tcp:host=127.0.0.1:port=%d" % a),
            "migrate pair": clientFromString(reactor, "tcp:host=127.0.0.1:port=%d" % c),
        }
        names = list(paths)
        throughput: dict[str, list[float]] = {n: [] for n in names}
        for r in range(args.rounds):
            order = names if r % 2 == 0 else names[::-1]
            for name in order:
                throughput[name].append((yield bulk(reactor, paths[name], args.megabytes)))
            print(
                "bulk round %d: %s"
                % (r + 1, "  ".join("%s %.1f MiB/s" % (n, throughput[n][-1]) for n in names)),
                flush=True,
            )
        pings = {}
        for name in names:
            pings[name] = yield paths[name].connect(Factory.forProtocol(PingClient))
            for _ in range(100):
                yield pings[name].ping()
        samples: dict[str, list[float]] = {n: [] for n in names}
        block = 200
        for i in range(max(1, args.messages // block)):
            for name in names if i % 2 == 0 else names[::-1]:
                for _ in range(block):
                    t0 = time.perf_counter()
                    yield pings[name].ping()
                    samples[name].append(time.perf_counter() - t0)
        for name in names:
            pings[name].transport.loseConnection()
        yield task.deferLater(reactor, 0.2, lambda: None)

        def p99(xs: list[float]) -> float:
            xs = sorted(xs)
            return xs[int(len(xs) * 0.99)] * 1e6

        print()
        print("%-14s %16s %16s %14s" % ("", "throughput MiB/s", "rtt median us", "rtt p99 us"))
        rows = {}
        for n in names:
            rows[n] = (
                statistics.median(throughput[n]),
                statistics.median(samples[n]) * 1e6,
                p99(samples[n]),
            )
            print("%-14s %16.1f %16.1f %14.1f" % ((n,) + rows[n]))
        print()
        for base in ("direct", "plain pair"):
            m, p = rows["migrate pair"], rows[base]
            print(
                "migrate pair / %-10s throughput %.3f  rtt median %.3f  rtt p99 %.3f"
                % (base, m[0] / p[0], m[1] / p[1], m[2] / p[2])
            )
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description="twistd migrate forwarder benchmark")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--megabytes", type=int, default=32)
    parser.add_argument("--messages", type=int, default=4000)
    task.react(lambda reactor: run(reactor, parser.parse_args()))


if __name__ == "__main__":
    main()
