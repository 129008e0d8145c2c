"""
A Migrate echo server for the real-socket memory tests
(C{tests/test_memory_real.py}): C{serverFromString(reactor,
"migrate:tcp:0:interface=127.0.0.1")} with DEFAULT session options and an
echo application that writes back everything it receives, without a
producer (so that a peer that never reads makes the session's buffer grow to
its C{hardCap}: C{twistd migrate}'s forwarder would instead pause its
backend at C{highWater}, and the cap would never be reached).

It prints C{{"port": N, "pid": P}} on stdout, then answers each command line
on stdin with one JSON line on stdout:

  - C{stats}: what the process holds (see L{stats});
  - C{collect}: run the cyclic garbage collector first, then C{stats};
  - C{trim}: C{malloc_trim(0)} first (give glibc's free pages back), then
    C{stats}.

It exits when stdin closes.  Nothing in it changes the library's behaviour:
it only observes (log events are counted, never kept: a kept event would
keep its C{log_source}, a carrier, and with it its transport's buffers).

    python tests/memory_server.py LOGFILE
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import json
import os
import sys
import time
from collections import Counter
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet import defer, stdio, task  # noqa: E402
from twisted.internet.endpoints import serverFromString  # noqa: E402
from twisted.internet.protocol import Factory, Protocol  # noqa: E402
from twisted.logger import ILogObserver, globalLogBeginner, textFileLogObserver  # noqa: E402
from twisted.protocols.basic import LineReceiver  # noqa: E402
from zope.interface import provider  # noqa: E402


class Echo(Protocol):
    """
    Write back everything, ignoring flow control (no producer).
    """

    def dataReceived(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)


#: Log lines counted, by a piece of their format.
_WATCHED = {
    "overflow": "passed its hard cap",
    "abortedNotReading": "the peer is not reading: aborted",
    "drainTimedOut": "did not close in time",
    "pingFloodDropped": "sends heartbeats but does not read",
}

events: Counter[str] = Counter()

#: When (C{time.monotonic()}, the same clock as the test's) each session
#: ended by overflowing its buffer, by session id in hex.
overflowAt: dict[str, float] = {}


@provider(ILogObserver)
def countEvent(event: dict[str, Any]) -> None:
    """
    Count the log events the tests look for; keep nothing of the event.
    """
    fmt = event.get("log_format") or ""
    for name, text in _WATCHED.items():
        if text in fmt:
            events[name] += 1
            if name == "overflow" and isinstance(event.get("sid"), str):
                overflowAt[event["sid"]] = time.monotonic()
    kind = event.get("event")
    if isinstance(kind, str):
        events["session-" + kind] += 1


_MALLINFO = (
    "arena", "ordblks", "smblks", "hblks", "hblkhd",
    "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost",
)


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in _MALLINFO]


def _libc() -> Any:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


class _MallInfo(ctypes.Structure):
    _fields_ = [(name, ctypes.c_int) for name in _MALLINFO]


libc = _libc()
mallinfo: Any = None
if libc is not None and hasattr(libc, "mallinfo2"):
    libc.mallinfo2.restype = _MallInfo2
    mallinfo = libc.mallinfo2
elif libc is not None and hasattr(libc, "mallinfo"):  # glibc before 2.33
    libc.mallinfo.restype = _MallInfo
    mallinfo = libc.mallinfo
if mallinfo is None or not hasattr(libc, "malloc_trim"):  # not glibc: no heap figures
    libc = mallinfo = None


def memory() -> dict[str, int]:
    """
    The process's resident set (now and peak) and glibc's heap: bytes in
    use by malloc (C{uordblks} + C{hblkhd}) and free bytes it keeps
    (C{fordblks}).
    """
    out: dict[str, int] = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
    if mallinfo is not None:
        info = mallinfo()
        out["mallocInUse"] = info.uordblks + info.hblkhd
        out["mallocFree"] = info.fordblks
    return out


def transportBuffered(transport: Any) -> int:
    """
    Bytes queued in a Twisted transport's own write buffers.
    """
    data = getattr(transport, "dataBuffer", b"")
    offset = getattr(transport, "offset", 0)
    temp = getattr(transport, "_tempDataBuffer", [])
    return max(0, len(data) - offset) + sum(len(x) for x in temp)


def stats(factory: Any) -> dict[str, Any]:
    """
    What the process holds for its peers: the library's own accounting
    (C{held()}, the session table), what is actually referenced (carriers
    and TCP transports still alive, found through the garbage collector,
    with their buffers), and memory figures.
    """
    from twisted.internet import tcp

    from migrate._protocol import Carrier

    sessions = list(factory.sessions.values())
    objects = gc.get_objects()
    carriers = [o for o in objects if isinstance(o, Carrier)]
    transports = [o for o in objects if isinstance(o, tcp.Server)]
    del objects
    result = {
        "held": factory.held(),
        "sessions": len(sessions),
        "ended": sum(1 for s in sessions if s.ended),
        "detached": len(factory._detached),
        "closedRecords": len(factory._closed),
        "engineBytes": sum(len(c) for s in sessions for c in (s.engine._chunks or ())),
        "carriers": len(carriers),
        "carriersOpen": sum(1 for c in carriers if not c.closed),
        "carrierBuffered": sum(
            transportBuffered(c.transport) for c in carriers if c.transport is not None
        ),
        "parserPending": sum(len(c.parser._pending) for c in carriers),
        "tcpTransports": len(transports),
        "tcpConnected": sum(1 for t in transports if t.connected),
        "tcpBuffered": sum(transportBuffered(t) for t in transports),
        "events": dict(events),
        "overflowAt": overflowAt,
        "gcCounts": list(gc.get_count()),
    }
    result.update(memory())
    return result


class Control(LineReceiver):
    delimiter = b"\n"

    def __init__(self, factory: Any, done: defer.Deferred[None]) -> None:
        self.factory = factory
        self.done = done

    def lineReceived(self, line: bytes) -> None:
        command = line.strip().decode()
        extra: dict[str, Any] = {}
        if command == "collect":
            extra["collected"] = gc.collect()
        elif command == "trim" and libc is not None:
            extra["trimmed"] = libc.malloc_trim(0)
        report = stats(self.factory)
        report.update(extra)
        self.sendLine(json.dumps(report).encode())

    def connectionLost(self, reason: Any = None) -> None:
        if not self.done.called:
            self.done.callback(None)


def main(reactor: Any, log: str) -> defer.Deferred[None]:
    globalLogBeginner.beginLoggingTo(
        [textFileLogObserver(open(log, "a")), countEvent], redirectStandardIO=False
    )
    endpoint = serverFromString(reactor, "migrate:tcp:0:interface=127.0.0.1")
    done: defer.Deferred[None] = defer.Deferred()

    def listening(port: Any) -> defer.Deferred[None]:
        control = Control(endpoint.factory, done)
        stdio.StandardIO(control, reactor=reactor)
        control.sendLine(json.dumps({"port": port.getHost().port, "pid": os.getpid()}).encode())
        return done

    return endpoint.listen(Factory.forProtocol(Echo)).addCallback(listening)


if __name__ == "__main__":
    task.react(main, sys.argv[1:2])
