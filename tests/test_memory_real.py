"""
Hostile peers against a real server process, with real sockets and the
server's resident memory measured (C{/proc/PID/status}), with DEFAULT
session options: the in-memory tests of C{tests/test_hostile.py}
(C{NonReaderTests}) on a real kernel and a real allocator.

The server is C{tests/memory_server.py}: C{serverFromString(reactor,
"migrate:tcp:0:interface=127.0.0.1")} with an echo application that ignores
flow control, so that a peer that never reads drives its session to
C{hardCap} (64 MiB).  (C{twistd migrate}'s forwarder pauses its backend at
C{highWater} instead: through it the cap is never reached.)  The server
answers C{stats} on stdin with its own accounting (C{held()}, the session
table), what is really still referenced (carriers and TCP transports found
through the garbage collector, with their write buffers) and memory figures.

The peers are raw sockets in this process that speak the wire protocol with
the library's own handshake code (L{ClientHandshake}), then send and never
read again.

Figures (baseline, peak, after) are written to the trial log
(C{_trial_temp/test.log}, lines starting with C{memory:}; also to stderr
with C{MIGRATE_MEMORY_REPORT=1}).  Both tests take a few seconds; each
starts its own server process, stopped (and killed if need be) in its
cleanups, with the peers' sockets closed first.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Optional

from twisted.logger import Logger
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from migrate import SessionOptions
from migrate._sansio import wire as _wire
from migrate._sansio.handshake import ClientHandshake
from migrate._server import RECORD_COST

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVER = os.path.join(ROOT, "tests", "memory_server.py")
ENV = dict(os.environ, PYTHONPATH=ROOT)
MiB = 1024 * 1024

DEFAULTS = SessionOptions()

# Linux's TCP state of a socket reset by its peer (TCP_INFO's first byte).
TCP_CLOSE = 7

log = Logger()


def poll(predicate: Callable[[], Any], timeout: float, what: str, step: float = 0.02) -> Any:
    """
    Call C{predicate} until it returns something true, and return that; the
    deadline only stops a broken test.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("not reached in %g s: %s" % (timeout, what))
        time.sleep(step)


class ServerProcess:
    """
    C{tests/memory_server.py} as a child process, driven over its stdin.
    """

    def __init__(self, logPath: str) -> None:
        self.logPath = logPath
        self.stderr = open(logPath + ".stderr", "wb")
        self.process = subprocess.Popen(
            [sys.executable, SERVER, logPath],
            cwd=ROOT,
            env=ENV,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
        )
        self._buffer = b""
        self.port = self.pid = 0

    def start(self) -> None:
        """
        Wait until it listens.
        """
        hello = self._readLine(30)
        self.port = hello["port"]
        self.pid = hello["pid"]

    def _readLine(self, timeout: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or self.process.poll() is not None:
                raise AssertionError(
                    "the server did not answer (exit status %r); see %s"
                    % (self.process.poll(), self.logPath)
                )
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    continue
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return json.loads(line)

    def command(self, name: str = "stats") -> dict[str, Any]:
        """
        The server's report (see C{memory_server.stats}).
        """
        assert self.process.stdin is not None
        self.process.stdin.write(name.encode() + b"\n")
        self.process.stdin.flush()
        return self._readLine(30)

    def status(self) -> dict[str, int]:
        """
        C{VmRSS} and C{VmHWM} (bytes) of the server, read from outside.
        """
        out = {}
        with open("/proc/%d/status" % (self.pid,)) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = int(value.split()[0]) * 1024
        return out

    def rss(self) -> int:
        return self.status()["VmRSS"]

    def resetPeak(self) -> bool:
        """
        Reset C{VmHWM} to the current RSS (Linux >= 4.0), so that the peak
        is the peak of what follows.
        """
        try:
            with open("/proc/%d/clear_refs" % (self.pid,), "w") as f:
                f.write("5")
        except OSError:
            return False
        return True

    def stop(self) -> None:
        p = self.process
        if p.poll() is None:
            try:
                assert p.stdin is not None
                p.stdin.close()
            except OSError:
                pass
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.send_signal(signal.SIGKILL)
                p.wait()
        for f in (p.stdin, p.stdout):
            if f is not None:
                try:
                    f.close()
                except OSError:
                    pass
        self.stderr.close()


class RawPeer:
    """
    A peer on a raw socket: it opens a session with the library's own
    handshake, then only sends.
    """

    def __init__(self, port: int, receiveBuffer: Optional[int] = None) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock = sock
        if receiveBuffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receiveBuffer)
        sock.settimeout(20)
        sock.connect(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        handshake = ClientHandshake.forOpen()
        sock.sendall(handshake.receiveHello(self._expect(_wire.SERVER_HELLO)))
        sock.sendall(handshake.receiveOpenAccept(self._expect(_wire.OPEN_ACCEPT)))
        self._expect(_wire.OPENED)
        # From here on nothing is ever read.
        self.sessionID = handshake.sessionID
        self.sent = 0
        self.error: Optional[OSError] = None
        self.finishedAt: Optional[float] = None
        self.closedAt: Optional[float] = None
        self._thread: Optional[threading.Thread] = None

    def _exactly(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise AssertionError("the server closed during the handshake")
            data += chunk
        return data

    def _expect(self, frameType: int) -> bytes:
        """
        Read control frames up to one of C{frameType} (others, such as an
        advertisement, are skipped) and return its body.
        """
        while True:
            kind, length = struct.unpack(">BI", self._exactly(5))
            body = self._exactly(length)
            if kind == frameType:
                return body
            if kind != _wire.ADDRESSES:
                raise AssertionError(
                    "expected frame 0x%02x, got 0x%02x %r" % (frameType, kind, body)
                )

    def tcpState(self) -> int:
        """
        The kernel's state of our side (TCP_CLOSE once a reset came).
        """
        return self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]

    def reset(self) -> bool:
        """
        Whether the server reset the connection (recorded the first time
        it is seen).
        """
        if self.tcpState() == TCP_CLOSE:
            if self.closedAt is None:
                self.closedAt = time.monotonic()
            return True
        return False

    def sendRepeatedly(self, chunk: bytes, limit: int) -> None:
        """
        Send C{chunk} again and again, in a thread, until C{limit} bytes
        went out or the connection fails.
        """

        def run() -> None:
            try:
                while self.sent < limit:
                    self.sock.sendall(chunk)
                    self.sent += len(chunk)
            except OSError as e:
                self.error = e
            finally:
                self.finishedAt = time.monotonic()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    @property
    def finished(self) -> bool:
        return self.finishedAt is not None

    def close(self) -> None:
        # Unblock the sending thread first, if it is still blocked.
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        if self._thread is not None:
            self._thread.join(10)
        self.sock.close()


class RealMemoryTests(SynchronousTestCase):
    """
    A server's memory under peers that never read, measured.
    """

    def setUp(self) -> None:
        if not sys.platform.startswith("linux"):
            raise SkipTest("reads /proc and TCP_INFO (Linux only)")
        self.server = ServerProcess(os.path.abspath(self.mktemp()) + "-server.log")
        self.addCleanup(self.server.stop)
        self.server.start()

    def peer(self, receiveBuffer: Optional[int] = None) -> RawPeer:
        peer = RawPeer(self.server.port, receiveBuffer)
        self.addCleanup(peer.close)
        return peer

    def statsWhen(
        self, condition: Callable[[dict[str, Any]], bool], timeout: float, what: str
    ) -> dict[str, Any]:
        """
        The server's report, once C{condition} holds for it.
        """

        def check() -> Optional[dict[str, Any]]:
            stats = self.server.command()
            return stats if condition(stats) else None

        return poll(check, timeout, what, step=0.05)

    def report(self, case: str, **figures: Any) -> None:
        text = json.dumps(figures, sort_keys=True)
        log.info("memory: {case}: {text}", case=case, text=text)
        if os.environ.get("MIGRATE_MEMORY_REPORT"):
            sys.stderr.write("memory: %s: %s\n" % (case, text))

    def warmUp(self) -> dict[str, Any]:
        """
        Open a session, move a little data, abort it; wait until it is
        gone: what the first session costs once (imports, caches, pools) is
        then in the baseline, not in what is measured after it.
        """
        warm = self.peer()
        payload = b"w" * 65536
        warm.sock.sendall((_wire.dataHead(0, len(payload)) + payload) * 4)
        warm.sock.sendall(_wire.encodeAbort("warm-up over"))
        # This one reads (everything, until the server closes).
        try:
            while warm.sock.recv(65536):
                pass
        except ConnectionResetError:
            pass
        return self.statsWhen(
            lambda s: s["sessions"] == 0 and s["tcpConnected"] == 0, 20, "the warm-up session gone"
        )

    def test_overflowedSessionsGiveBackTheirMemory(self) -> None:
        """
        Five peers at once send (to an echo) more than a session's
        C{hardCap} and never read: each session ends with a buffer
        overflow, its carrier is aborted at once (a reset, not a drain that
        would keep its queued bytes for C{drainTimeout}), and once they
        ended the server's accounting is back to zero, nothing of theirs is
        still referenced (no carrier, no TCP transport, no buffered byte;
        without forcing a garbage collection) and the resident memory is
        back near its baseline.

        "Near": what malloc has in use within 4 MiB of the baseline (the
        five ended-session records, without their data, are a few KiB);
        the resident set within 24 MiB (under 8% of the 320 MiB the five
        sessions held, and well under one session's buffer: memory really
        still held would be tens of MiB per session), not counting the free
        heap glibc keeps mapped.  glibc gives back by itself only the top of
        its heap: the freed buffers (chunks of at most 64 KiB, below
        glibc's mmap threshold) lie under small live allocations made
        meanwhile, so that from run to run between 5 and 290 MiB of them
        stay resident, free, and reused by the next allocations, until
        C{malloc_trim(0)} (which the server does not call) gives them
        back; the test checks that it does.
        """
        server = self.server
        hardCap = DEFAULTS.hardCap
        warm = self.warmUp()
        baseline = server.rss()
        peakReset = server.resetPeak()

        payload = os.urandom(65536)
        frame = _wire.dataHead(0, len(payload)) + payload
        limit = hardCap + 8 * MiB
        peers = [self.peer() for _ in range(5)]
        started = time.monotonic()
        for peer in peers:
            peer.sendRepeatedly(frame, limit)

        def allReset() -> bool:
            return all([peer.reset() for peer in peers])

        poll(allReset, 60, "every peer's connection reset by the server", step=0.005)
        resetAt = time.monotonic()
        poll(lambda: all(p.finished for p in peers), 20, "every peer's sender stopped")
        peak = server.status()["VmHWM"]

        try:
            after = self.statsWhen(
                lambda s: s["tcpTransports"] == 0 and s["carriers"] == 0,
                10,
                "no carrier or TCP transport left",
            )
        except AssertionError:
            after = server.command()
            collected = server.command("collect")
            self.report("A-not-settled", before=after, afterCollect=collected)
            self.fail(
                "the ended sessions' carriers are still referenced: %s\nafter gc.collect(): %s"
                % (after, collected)
            )
        # The server gives the freed heap back to the system itself, a
        # second after the sessions let go of their buffers.
        try:
            rssAfter = poll(
                lambda: (lambda r: r if r - baseline < 24 * MiB else None)(server.rss()),
                10,
                "the resident set back within 24 MiB of the baseline",
            )
        except AssertionError:
            rssAfter = server.rss()
        trimmed = server.command("trim")
        self.report(
            "A",
            baseline=baseline,
            peak=peak,
            peakIsSinceBaseline=peakReset,
            after=rssAfter,
            afterTrim=trimmed["VmRSS"],
            mallocInUseBaseline=warm.get("mallocInUse"),
            mallocInUseAfter=after.get("mallocInUse"),
            mallocFreeBaseline=warm.get("mallocFree"),
            mallocFreeAfter=after.get("mallocFree"),
            held=after["held"],
            sessions=after["sessions"],
            ended=after["ended"],
            events=since(warm, after),
            seconds=round(resetAt - started, 2),
            sent=[p.sent for p in peers],
            errors=[repr(p.error) for p in peers],
            resetAfterOverflow=[
                round(p.closedAt - after["overflowAt"].get(p.sessionID.hex(), 0), 4)
                for p in peers
                if p.closedAt
            ],
        )

        # The sessions ended because of their buffers, each aborted at once
        # because its peer was not reading; none waited for a drain.
        events = since(warm, after)
        self.assertEqual(events.get("overflow"), 5, events)
        self.assertEqual(events.get("abortedNotReading"), 5, events)
        self.assertEqual(events.get("drainTimedOut"), None, events)
        overflowAt = after["overflowAt"]
        for peer in peers:
            # The reset reached the peer moments after its session
            # overflowed (both clocks are CLOCK_MONOTONIC): far sooner
            # than a drain would have ended (10 s).
            self.assertLess(
                peer.closedAt - overflowAt[peer.sessionID.hex()],
                DEFAULTS.drainTimeout / 2,
                (peer.error, peer.sent),
            )
            # Each had sent the cap (less the frame it was sending when
            # reset): the echo overflowed.
            self.assertGreaterEqual(peer.sent, hardCap - len(frame))
        # The server held the five buffers at its peak (what is measured is
        # real), ...
        self.assertGreater(peak - baseline, 5 * hardCap // 2)
        # ... its accounting is back to zero, ended sessions are remembered
        # without their data, ...
        self.assertEqual(after["held"], after["closedRecords"] * RECORD_COST)
        self.assertEqual(after["closedRecords"], 5)
        self.assertEqual(after["engineBytes"], 0)
        self.assertEqual(after["ended"], 5)
        self.assertEqual(after["detached"], 0)
        self.assertEqual((after["carrierBuffered"], after["tcpBuffered"]), (0, 0))
        # ... and so is its memory.  Nothing of the sessions is still
        # allocated: what malloc has in use is back to the baseline (within
        # 4 MiB: five ended-session records and log buffers are a few KiB),
        # and the resident set comes back within the tolerance by itself:
        # glibc returns only the top of its heap on its own (freed 64 KiB
        # chunks below a live allocation stay mapped), so the server calls
        # malloc_trim(0) a second after sessions released more than 8 MiB.
        self.assertLess(rssAfter - baseline, 24 * MiB, (baseline, peak, rssAfter))
        if "mallocInUse" not in after:
            return
        self.assertLess(after["mallocInUse"] - warm["mallocInUse"], 4 * MiB)
        self.assertLess(trimmed["VmRSS"] - baseline, 24 * MiB, (baseline, peak, trimmed["VmRSS"]))

    def test_pingFloodFromNonReader(self) -> None:
        """
        A peer that opens a session, then sends heartbeats (PING frames)
        as fast as it can and never reads: the server answers until its
        carrier's send buffer is full, then answers no more (each answer
        would only queue), and after a thousand unanswered heartbeats drops
        the carrier (a reset); the session only detaches, holding nothing.
        The server's resident memory stays bounded meanwhile: at most 16
        MiB over its baseline, although the flood (up to 2,000,000
        heartbeats, 26 MB) would queue over 100 MiB of answers (a 13-byte
        frame in a Python object and a list slot, about 60 bytes each) if
        each were answered.

        The peer's receive buffer is small (4 KiB), as a hostile peer's
        would be, so that the server's send buffer fills after a few
        thousand answers; the server's options are the defaults.
        """
        server = self.server
        warm = self.warmUp()
        baseline = server.rss()
        peakReset = server.resetPeak()
        peer = self.peer(receiveBuffer=4096)
        batch = b"".join(_wire.encodePing(token) for token in range(5000))
        limit = 400 * len(batch)
        started = time.monotonic()
        peer.sendRepeatedly(batch, limit)
        poll(lambda: peer.reset() or peer.finished, 60, "the flood stopped", step=0.005)
        poll(lambda: peer.finished, 20, "the peer's sender stopped")
        # (A server that answered every heartbeat would let the whole flood
        # through, and would still be working through it here.)
        try:
            poll(peer.reset, 10, "reset", step=0.005)
        except AssertionError:
            pass
        resetAt = peer.closedAt or time.monotonic()
        peak = server.status()["VmHWM"]

        try:
            after = self.statsWhen(
                lambda s: s["tcpTransports"] == 0 and s["carriers"] == 0,
                10 if peer.closedAt else 0,
                "no carrier or TCP transport left",
            )
        except AssertionError:
            after = server.command()
        rssAfter = server.rss()
        events = since(warm, after)
        self.report(
            "B",
            baseline=baseline,
            peak=peak,
            peakIsSinceBaseline=peakReset,
            after=rssAfter,
            mallocInUseBaseline=warm.get("mallocInUse"),
            mallocInUseAfter=after.get("mallocInUse"),
            held=after["held"],
            sessions=after["sessions"],
            detached=after["detached"],
            events=events,
            seconds=round(resetAt - started, 2),
            pingsSent=peer.sent // 13,
            error=repr(peer.error),
        )
        # Bounded throughout.
        self.assertLess(peak - baseline, 16 * MiB, (baseline, peak))
        self.assertLess(rssAfter - baseline, 16 * MiB, (baseline, rssAfter))
        # Dropped (a reset) for its heartbeats, not for anything else.
        self.assertIsNotNone(peer.closedAt, "the flooding peer's connection was not reset")
        self.assertEqual(events.get("pingFloodDropped"), 1, events)
        self.assertEqual(events.get("drainTimedOut"), None, events)
        self.assertEqual(events.get("session-ended"), None, events)
        # It was the drop that stopped the flood, before all of it went out.
        self.assertLess(peer.sent, limit)
        # The session survives, detached (a legitimate peer would resume),
        # holding nothing; nothing of its carrier is left.
        self.assertEqual((after["sessions"], after["detached"], after["held"]), (1, 1, 0))
        self.assertEqual((after["carrierBuffered"], after["tcpBuffered"]), (0, 0))
        self.assertEqual((after["carriers"], after["tcpTransports"]), (0, 0))


def since(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    """
    The server's log event counts from C{before} to C{after} (those that
    changed).
    """
    old = before["events"]
    return {k: v - old.get(k, 0) for k, v in after["events"].items() if v != old.get(k, 0)}
