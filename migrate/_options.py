# -*- test-case-name: tests.test_endpoints -*-
"""
Per-session options: timeouts, buffer limits, table limits.

One frozen L{SessionOptions} value configures a server factory or a client
endpoint.  Endpoint strings set the same fields by name
(C{migrate:tcp:7001:sessionTimeout=60:highWater=1048576}); L{fromStrings}
parses and checks them.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, fields
from typing import Mapping


def defaultMemoryBudget() -> int:
    """
    A quarter of the machine's physical memory, or 1 GiB where that cannot
    be read.
    """
    try:
        pages = os.sysconf("SC_PHYS_PAGES")
        size = os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return 1 << 30
    if pages <= 0 or size <= 0:
        return 1 << 30
    return int(pages * size // 4)


@dataclass(frozen=True)
class SessionOptions:
    """
    Limits and timeouts of Migrate sessions.  All times are in seconds, all
    sizes in bytes.

    @ivar sessionTimeout: how long a detached session waits for a resume
        before it expires.
    @ivar handshakeTimeout: how long a new carrier may take to finish its
        handshake (server side).
    @ivar connectTimeout: how long one client connection attempt, handshake
        included, may take.
    @ivar closeTimeout: how long a close may wait for the peer's
        acknowledgement (through detachments) before the session ends anyway.
    @ivar drainTimeout: how long a carrier that is being let go (its
        session ended, or it was replaced) may take to flush and close
        before it is aborted.
    @ivar closedLinger: how long a server remembers a cleanly closed session
        so that a client whose last acknowledgement was lost can resume and
        receive it.
    @ivar memoryBudget: bytes a server may hold for its peers in session
        buffers (unacknowledged data of live and detached sessions), over
        the whole server; C{0} (the default) means a quarter of the
        machine's physical memory (see L{defaultMemoryBudget}).
    @ivar maxOpenRate: openings per second a server takes without
        question; past it in any one second, an address that has opened at
        least its share of that second's openings (the total over the
        number of addresses opening) is refused as busy until the next
        second, so that one address opening fast cannot crowd out the
        others (an address alone, such as a load balancer's, is held to
        the rate itself).
    @ivar maxClosedPerHost: closed sessions a server remembers (for
        C{closedLinger}) per peer host; past it the oldest of that host is
        forgotten (a late resume of it is then refused as unknown).
    @ivar highWater: unacknowledged bytes above which the application's
        producer is paused; it is resumed below half of this.
    @ivar hardCap: unacknowledged bytes a session may hold at most.
    @ivar overflow: what a write past C{hardCap} does: C{"close"} ends the
        session with L{migrate.errors.BufferOverflow}; C{"raise"} raises
        L{migrate.errors.BufferFull} from C{write} and keeps the session.
    @ivar ackEvery: received bytes after which a standalone acknowledgement
        is sent at once.
    @ivar ackDelay: the longest a received byte waits to be acknowledged.
    @ivar maxFrame: the largest data payload accepted from the peer.
    @ivar sendFrame: the largest data payload we put in one frame.
    @ivar maxSessions: sessions a server holds at most; openings beyond are
        refused as busy.
    @ivar maxPending: carriers a server lets handshake at once.
    @ivar maxPendingPerHost: carriers from one peer host that may handshake
        at once while the handshake table is at least half full (below
        that, one address may use what is free: behind a load balancer or
        a NAT every client shares one).
    @ivar reconnectInitial: the client's first retry delay after the
        immediate attempt.
    @ivar reconnectMax: the client's longest retry delay (kept short so that
        a path that comes back without any local event, such as a black hole
        clearing, is found within about this long).
    @ivar reconnectSlowAfter: after this long detached, a client stops
        retrying every C{reconnectMax} and waits about
        C{reconnectSlowInterval} between attempts (a connectivity event
        still makes an attempt at once): a laptop or phone away for long
        is not woken every second.
    @ivar reconnectSlowInterval: see C{reconnectSlowAfter} (jitter: 50-100%).
    @ivar heartbeatInterval: how long a carrier may be silent, while we wait
        to hear from the peer (data or a FIN of ours unacknowledged, a
        heartbeat unanswered, reading paused), before a heartbeat is sent on
        it (heartbeats cost nothing while data flows).
    @ivar keepaliveInterval: how long an idle carrier (nothing outstanding
        either way) may be silent before the client sends a keepalive; the
        server checks an idle carrier only after twice this without a word.
    @ivar deadAfter: how long a carrier may be silent, heartbeats
        unanswered, before its path is declared dead (raised to three
        retransmission timeouts on slow paths).
    @ivar prefer: comma-separated interface names or addresses to connect
        from, most preferred first.
    @ivar avoid: comma-separated interface names or addresses never to
        connect from while another is usable (e.g. a metered link).
    @ivar acceptMoves: C{"yes"} if a server accepts a resume from a new
        peer address, C{"no"} to accept resumes only from the same host.
    @ivar suspendAfter: how long a detached session stays in memory before
        it is hibernated into the session store (when there is one).
    @ivar maxDetached: detached sessions a server keeps in memory at most,
        whatever their addresses: past this the longest-detached one is
        hibernated at once when there is a store, and otherwise ended with
        the reason "server at capacity" (logged, and told to its client when
        it resumes).
    @ivar maxConcurrentResumes: reconnect attempts a client endpoint makes
        at once, over all its sessions (the rest wait their turn), so that
        thousands of sessions coming back together do not stampede a server.
    @ivar purgeInterval: how often a server purges expired sessions from its
        store.
    @ivar republishInterval: how often a server publishes its addresses to
        its locator even when they did not change (records there are short
        lived; a locator that lost them learns them again).
    @ivar maxChannels: channels (besides its first stream) a session may
        have open at once; openings beyond are refused, on either side.
    @ivar channelWindow: bytes of a channel's frames we let the peer send
        ahead of what the channel's application read: a channel whose
        reader is paused holds at most this much, and never stops the
        others.
    """

    sessionTimeout: float = 900.0
    handshakeTimeout: float = 10.0
    connectTimeout: float = 5.0
    closeTimeout: float = 60.0
    drainTimeout: float = 10.0
    closedLinger: float = 60.0
    maxClosedPerHost: int = 256
    maxOpenRate: int = 1000
    memoryBudget: int = 0
    highWater: int = 4 * 1024 * 1024
    hardCap: int = 64 * 1024 * 1024
    overflow: str = "close"
    ackEvery: int = 128 * 1024
    ackDelay: float = 0.05
    maxFrame: int = 1024 * 1024
    sendFrame: int = 256 * 1024
    maxSessions: int = 10000
    maxPending: int = 256
    maxPendingPerHost: int = 32
    reconnectInitial: float = 0.05
    reconnectMax: float = 1.0
    reconnectSlowAfter: float = 30.0
    reconnectSlowInterval: float = 15.0
    heartbeatInterval: float = 0.5
    keepaliveInterval: float = 25.0
    deadAfter: float = 2.0
    prefer: str = ""
    avoid: str = ""
    acceptMoves: str = "yes"
    suspendAfter: float = 60.0
    maxDetached: int = 10000
    maxConcurrentResumes: int = 64
    purgeInterval: float = 60.0
    republishInterval: float = 300.0
    maxChannels: int = 1024
    channelWindow: int = 256 * 1024

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "overflow":
                if value not in ("close", "raise"):
                    raise ValueError('overflow must be "close" or "raise"')
            elif f.name == "acceptMoves":
                if value not in ("yes", "no"):
                    raise ValueError('acceptMoves must be "yes" or "no"')
            elif f.name in ("prefer", "avoid"):
                pass
            elif f.name == "memoryBudget":
                if value < 0:
                    raise ValueError("memoryBudget must be 0 (automatic) or positive, not %r" % (value,))
            elif not value > 0:
                raise ValueError("%s must be positive, not %r" % (f.name, value))
        if self.hardCap < self.highWater:
            raise ValueError("hardCap must be at least highWater")
        if self.sendFrame > self.maxFrame:
            raise ValueError("sendFrame must not exceed maxFrame")

    @classmethod
    def names(cls) -> set[str]:
        """
        The option names, as accepted in endpoint strings.
        """
        return {f.name for f in fields(cls)}

    @classmethod
    def fromStrings(cls, values: Mapping[str, str]) -> SessionOptions:
        """
        Build options from endpoint-string keyword values.

        @raise ValueError: an unknown name or a value of the wrong kind.
        """
        kinds = {f.name: f.type for f in fields(cls)}
        converted: dict[str, object] = {}
        for name, text in values.items():
            kind = kinds.get(name)
            if kind is None:
                raise ValueError("unknown Migrate option %r" % (name,))
            try:
                if kind in ("int", int):
                    converted[name] = int(text)
                elif kind in ("float", float):
                    converted[name] = float(text)
                else:
                    converted[name] = str(text)
            except ValueError:
                expected = "a whole number" if kind in ("int", int) else "a number"
                raise ValueError(
                    "bad value %r for Migrate option %r: expected %s" % (text, name, expected)
                )
        return cls(**converted)  # type: ignore[arg-type]

    def replace(self, **changes: object) -> SessionOptions:
        """
        A copy with some fields changed.
        """
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]
