# -*- test-case-name: tests.test_channels_property -*-
"""
Property tests (with Hypothesis) of channels: two ends of a session over a
L{Pair} (an in-memory network on a fake clock), driven by random scripts.

    1. L{ChannelScriptTests.test_channelScripts}: random sequences of
       actions among opening a channel (from either side; each end's
       protocol half-closeable or not), writing a chunk (either direction,
       up to three times C{channelWindow}) on a random channel (channel 0
       included), pausing or resuming a reader, cutting every carrier,
       pumping the network once (or one way only), running what is due
       now, letting time pass, and closing, half-closing or aborting a
       channel from either end.  After the
       script every paused reader resumes and the session settles; then:
       every channel's ends received exactly what the other wrote (a prefix
       where a channel was aborted, or closed while the peer's bytes were
       still unread, which resets it as TCP does); every protocol heard
       C{connectionMade} once, and exactly one C{connectionLost} with the
       right reason (L{ConnectionDone} for a clean close,
       L{ConnectionAborted} on the aborting end and L{PeerAborted} on the
       other); a peer that half-closed was heard (C{readConnectionLost})
       once; channel 0 was undisturbed; closing channel 0 leaves the session
       up while any channel is open, and those channels still carry bytes;
       once everything is closed both sessions ended, C{whenEnded} fired,
       no carrier is left and nothing is left on the clock.
    2. L{HeadOfLineTests.test_pausedChannelBlocksOnlyItself}: with one
       channel's reader paused, random writes on it (up to three windows)
       and on other channels, cuts and time: the other channels deliver
       everything, and what the paused channel keeps on the receiving side
       (its channel carrier's parser, and the root session's
       C{channels.held()}) never exceeds C{channelWindow} (plus a little
       for frame heads); once resumed, it delivers everything.

Bugs these found are kept as plain tests at the end (L{ChannelBugTests}).
Every property runs derandomized, without an example database or deadline
(the settings of L{tests.test_fuzz}); C{MIGRATE_FUZZ_SCALE} multiplies the
example counts, C{MIGRATE_FUZZ_SHRINK=0} reports failures unshrunk.
"""

from __future__ import annotations

import random
from typing import Any, Callable, Optional

from hypothesis import example, given, settings
from hypothesis import strategies as st
from twisted.internet.error import ConnectionAborted, ConnectionDone
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Factory
from twisted.logger import ILogObserver, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import alsoProvides, implementer

from migrate.testing import sessionOf
from migrate import SessionOptions
from migrate.errors import ChannelRefused, PeerAborted

from .helpers import Pair, Recorder

from .test_fuzz import fuzzSettings as _fuzzSettings, showExample


def fuzzSettings(examples: int) -> Callable[[Any], Any]:
    """
    The settings of L{tests.test_fuzz} (derandomized, no database, no
    deadline; C{MIGRATE_FUZZ_SCALE} and C{MIGRATE_FUZZ_SHRINK} apply), with
    one failure shrunk rather than every distinct one.
    """
    return settings(_fuzzSettings(examples), report_multiple_bugs=False)  # type: ignore[arg-type]


@implementer(ILogObserver)
class LogWatch:
    """
    Collects every log event that carries a failure (a traceback).
    """

    def __init__(self) -> None:
        self.failures: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any]) -> None:
        if "log_failure" in event:
            self.failures.append(event)

    def start(self, case: SynchronousTestCase) -> None:
        globalLogPublisher.addObserver(self)
        case.addCleanup(globalLogPublisher.removeObserver, self)


WINDOW = SessionOptions().channelWindow
#: What a paused channel may keep beyond its window (frame heads).
SLACK = 64
SIDES = "cs"
#: Pumps of the network before it must have settled.
FLUSH_LIMIT = 2000

# The bytes every stream is cut from: a stream with seed k is the cycle of
# _BASE starting at k * _STRIDE, so that two streams never look alike and a
# byte out of place, lost, repeated or from another channel shows.
_PERIOD = 1_000_003
_STRIDE = 104_729
_BASE = random.Random(20240613).randbytes(_PERIOD + 3 * WINDOW + 16)


def other(side: str) -> str:
    return "s" if side == "c" else "c"


class Stream:
    """
    What one end wrote on one channel.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.written = 0
        self.chunks: list[bytes] = []

    def next(self, n: int) -> bytes:
        start = (self.seed * _STRIDE + self.written) % _PERIOD
        data = _BASE[start : start + n]
        self.written += n
        self.chunks.append(data)
        return data

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)


class Peer(Recorder):
    """
    A channel's protocol on one end: records what it hears (as
    L{Recorder}), and registers itself with its L{World} when connected,
    providing L{IHalfCloseableProtocol} if the world says so.
    """

    def __init__(self, world: World, side: str) -> None:
        Recorder.__init__(self)
        self.world = world
        self.side = side
        self.count = 0
        self.readLost = 0
        self.writeLost = 0
        self.channel: Optional[int] = None

    def connectionMade(self) -> None:
        Recorder.connectionMade(self)
        self.channel = self.transport.channel
        self.world.connected(self)

    def dataReceived(self, data: bytes) -> None:
        self.count += len(data)
        Recorder.dataReceived(self, data)

    def readConnectionLost(self) -> None:
        self.readLost += 1

    def writeConnectionLost(self) -> None:
        self.writeLost += 1


class Chan:
    """
    The model of one channel.

    @ivar opener: the end that opened it (C{None} for channel 0).
    @ivar half: whether each end's protocol is half-closeable.
    @ivar out: what each end wrote.
    @ivar closed: each end called C{loseConnection}.
    @ivar shut: each end ended its direction (half-close or close).
    @ivar halfClosed: each end called C{loseWriteConnection}.
    @ivar unclean: each end closed while bytes of the peer were unread.
    @ivar abortedBy: the end that aborted it first.
    @ivar paused: each end's reader is paused.
    @ivar opened: what the opener's Deferred fired with.
    """

    def __init__(self, number: int, opener: Optional[str], half: dict[str, bool]) -> None:
        self.number = number
        self.opener = opener
        self.half = half
        self.out = {side: Stream(2 * number + i) for i, side in enumerate(SIDES)}
        self.closed = dict.fromkeys(SIDES, False)
        self.shut = dict.fromkeys(SIDES, False)
        self.halfClosed = dict.fromkeys(SIDES, False)
        self.unclean = dict.fromkeys(SIDES, False)
        self.abortedBy: Optional[str] = None
        self.paused = dict.fromkeys(SIDES, False)
        self.opened: list[Any] = []

    def __repr__(self) -> str:
        return "<Chan %d opener=%s half=%s closed=%s shut=%s unclean=%s aborted=%s>" % (
            self.number,
            self.opener,
            self.half,
            self.closed,
            self.shut,
            self.unclean,
            self.abortedBy,
        )

    @property
    def exact(self) -> bool:
        """
        Whether both directions must arrive whole (else: prefixes).
        """
        return self.abortedBy is None and not any(self.unclean.values())

    @property
    def open(self) -> bool:
        """
        Whether a direction of it is still open, so that the session must
        last.
        """
        if not self.exact:
            return False
        if self.shut["c"] and self.shut["s"]:
            return False
        for side in SIDES:
            # The peer closed and this end is not half-closeable: it closes
            # when the FIN arrives.
            if self.closed[other(side)] and not self.half[side]:
                return False
        return True


class World:
    """
    One example: a L{Pair} whose every protocol (channel 0's and every
    channel's, on both ends) is a L{Peer}, and the model of its channels.
    """

    def __init__(self, case: SynchronousTestCase, half0: dict[str, bool]) -> None:
        self.case = case
        self.protos: dict[tuple[str, int], Peer] = {}
        self.duplicates: list[Peer] = []
        self.chans: dict[int, Chan] = {0: Chan(0, None, half0)}
        self.nextNumber = {"c": 1, "s": 2}
        self.log: list[str] = []
        self.pair = Pair(
            clientProtocol=lambda: Peer(self, "c"),  # type: ignore[arg-type]
            serverProtocol=lambda: Peer(self, "s"),  # type: ignore[arg-type]
        ).open()
        case.assertEqual(sorted(self.protos), [("c", 0), ("s", 0)])

    # Protocols

    def connected(self, proto: Peer) -> None:
        key = (proto.side, proto.channel)
        assert proto.channel is not None
        if key in self.protos:
            self.duplicates.append(proto)
            return
        self.protos[key] = proto
        chan = self.chans.get(proto.channel)
        if chan is not None and chan.half[proto.side]:
            alsoProvides(proto, IHalfCloseableProtocol)

    def proto(self, chan: Chan, side: str) -> Optional[Peer]:
        return self.protos.get((side, chan.number))

    @property
    def sessions(self) -> list[Any]:
        return [self.pair.clientSession, self.pair.serverSession]

    # Time and the network

    def flush(self) -> None:
        """
        Pump the network until nothing moves and nothing is due (as
        L{MemoryNetwork.flush}), failing clearly if it never stops: a
        client that reconnects at once, again and again, with no time
        passing.
        """
        net = self.pair.net
        connects = net.connects
        for _ in range(FLUSH_LIMIT):
            if not net.pump() and not net._due():
                return
        self.case.fail(
            "the network did not settle at %.2fs: %d connections made meanwhile, "
            "with no time passing"
            % (self.pair.clock.seconds(), net.connects - connects)
        )

    def advance(self, seconds: float, step: float = 0.01) -> None:
        """
        Flush, advancing the clock by C{seconds} in steps (as
        L{Pair.settle}).
        """
        self.flush()
        elapsed = 0.0
        while elapsed < seconds:
            self.pair.clock.advance(step)
            elapsed += step
            self.flush()

    # Actions

    def openChannel(self, side: str, halfOpener: bool, halfAcceptor: bool) -> Chan:
        number = self.nextNumber[side]
        self.nextNumber[side] += 2
        half = {side: halfOpener, other(side): halfAcceptor}
        chan = self.chans[number] = Chan(number, side, half)
        opener = self.proto(self.chans[0], side)
        assert opener is not None
        d = opener.transport.openChannel(Factory.forProtocol(lambda: Peer(self, side)))
        d.addBoth(chan.opened.append)
        return chan

    def pick(self, index: int, candidates: list[tuple[Chan, str]]) -> Optional[tuple[Chan, str]]:
        if not candidates:
            return None
        return candidates[index % len(candidates)]

    def ends(self, channel0: bool = True) -> list[tuple[Chan, str]]:
        """
        Every (channel, end) whose protocol is connected and not lost.
        """
        found = []
        for number in sorted(self.chans):
            if number == 0 and not channel0:
                continue
            chan = self.chans[number]
            for side in SIDES:
                proto = self.proto(chan, side)
                if proto is not None and not proto.lost:
                    found.append((chan, side))
        return found

    def writable(self, chan: Chan, side: str) -> bool:
        return (
            chan.abortedBy is None
            and not chan.shut[side]
            and not chan.closed[other(side)]
        )

    def write(self, chan: Chan, side: str, size: int) -> None:
        proto = self.proto(chan, side)
        assert proto is not None
        proto.transport.write(chan.out[side].next(size))

    def togglePause(self, chan: Chan, side: str) -> None:
        proto = self.proto(chan, side)
        assert proto is not None
        if chan.paused[side]:
            chan.paused[side] = False
            proto.transport.resumeProducing()
        else:
            chan.paused[side] = True
            proto.transport.pauseProducing()

    def close(self, chan: Chan, side: str) -> None:
        proto = self.proto(chan, side)
        assert proto is not None
        if proto.count < chan.out[other(side)].written:
            # The peer's bytes arrive after the close: a reset.
            chan.unclean[side] = True
        chan.closed[side] = chan.shut[side] = True
        proto.transport.loseConnection()

    def halfClose(self, chan: Chan, side: str) -> None:
        proto = self.proto(chan, side)
        assert proto is not None
        chan.shut[side] = chan.halfClosed[side] = True
        proto.transport.loseWriteConnection()

    def abort(self, chan: Chan, side: str) -> None:
        proto = self.proto(chan, side)
        assert proto is not None
        chan.abortedBy = side
        proto.transport.abortConnection()

    def deliver(self, side: str) -> None:
        """
        Move what the C{side} end of every carrier wrote to the other end,
        and nothing the other way (as L{MemoryLink.pump} does one way).
        """
        for link in list(self.pair.net.links):
            src, dst = (link.client, link.server) if side == "c" else (link.server, link.client)
            if link.closed or not src.outgoing or dst.readPaused or dst.disconnected:
                continue
            data = src._take()
            if not dst.disconnecting:
                dst.protocol.dataReceived(data)

    def run(self, action: tuple[Any, ...]) -> None:
        """
        Carry out one action of a script (a no-op when nothing fits it).
        """
        p = self.pair
        kind = action[0]
        if kind == "open":
            chan = self.openChannel(*action[1:])
            self.log.append("open %d from %s half=%s" % (chan.number, action[1], chan.half))
        elif kind == "write":
            _, index, size = action
            target = self.pick(
                index, [(c, s) for c, s in self.ends() if self.writable(c, s)]
            )
            if target is not None:
                self.write(target[0], target[1], size)
                self.log.append("write %d bytes on %d from %s" % (size, target[0].number, target[1]))
        elif kind == "pause":
            target = self.pick(action[1], self.ends())
            if target is not None:
                self.togglePause(*target)
                self.log.append(
                    "%s %d at %s"
                    % ("pause" if target[0].paused[target[1]] else "resume", target[0].number, target[1])
                )
        elif kind == "cut":
            p.net.cutAll()
            self.log.append("cut")
        elif kind == "pump":
            p.net.pump()
            self.log.append("pump")
        elif kind == "flush":
            self.flush()
            self.log.append("flush")
        elif kind == "turn":
            p.clock.advance(0)
            self.log.append("turn")
        elif kind == "deliver":
            self.deliver(action[1])
            self.log.append("deliver from %s" % (action[1],))
        elif kind == "tick":
            self.advance(action[1])
            self.log.append("tick %s" % (action[1],))
        elif kind == "close":
            target = self.pick(
                action[1],
                [(c, s) for c, s in self.ends(False) if c.abortedBy is None and not c.closed[s]],
            )
            if target is not None:
                self.close(*target)
                self.log.append(
                    "close %d at %s%s"
                    % (target[0].number, target[1], " (unclean)" if target[0].unclean[target[1]] else "")
                )
        elif kind == "half":
            target = self.pick(
                action[1],
                [
                    (c, s)
                    for c, s in self.ends(False)
                    if c.abortedBy is None
                    and not c.shut[s]
                    and not c.closed[other(s)]
                    and c.half[other(s)]
                ],
            )
            if target is not None:
                self.halfClose(*target)
                self.log.append("half-close %d at %s" % (target[0].number, target[1]))
        elif kind == "abort":
            target = self.pick(
                action[1],
                [
                    (c, s)
                    for c, s in self.ends(False)
                    if c.abortedBy is None
                    and not c.closed["c"]
                    and not c.closed["s"]
                    and not (c.shut["c"] and c.shut["s"])
                ],
            )
            if target is not None:
                self.abort(*target)
                self.log.append("abort %d at %s" % (target[0].number, target[1]))
        else:
            raise AssertionError(action)
        self.checkAlways()

    # Invariants

    def checkAlways(self) -> None:
        """
        What holds after every action.
        """
        case = self.case
        case.assertEqual(self.duplicates, [], "a second protocol was connected for a channel")
        for proto in self.protos.values():
            case.assertEqual(proto.made, 1, proto)
            case.assertLessEqual(len(proto.lost), 1, (proto.channel, proto.side, proto.lost))
            case.assertLessEqual(proto.readLost, 1)
            case.assertLessEqual(proto.writeLost, 1)
        for side in SIDES:
            proto = self.proto(self.chans[0], side)
            assert proto is not None
            case.assertEqual(proto.lost, [], "channel 0 was lost at %s" % (side,))
        for session in self.sessions:
            case.assertFalse(session.ended)

    def settle(self) -> None:
        """
        Resume every paused reader and let the session reconnect and
        deliver everything.
        """
        p = self.pair
        for chan in self.chans.values():
            for side in SIDES:
                if chan.paused[side]:
                    chan.paused[side] = False
                    proto = self.proto(chan, side)
                    assert proto is not None
                    proto.transport.resumeProducing()
        self.advance(3, step=0.05)
        for _ in range(20):
            if p.clientSession.carrier is not None:
                break
            self.advance(1, step=0.05)
        self.advance(0.5)
        self.case.assertIsNotNone(p.clientSession.carrier, "the session did not reconnect")

    def checkStream(self, chan: Chan, writer: str, exact: bool) -> None:
        reader = self.proto(chan, other(writer))
        if reader is None:
            return
        sent = chan.out[writer].data
        got = reader.received
        if got == sent or (not exact and sent.startswith(got)):
            return
        first = next(
            (i for i, (a, b) in enumerate(zip(got, sent)) if a != b), min(len(got), len(sent))
        )
        self.case.fail(
            "channel %d, %s to %s: received %d bytes of %d (%s), first difference at %d; %r"
            % (
                chan.number,
                writer,
                other(writer),
                len(got),
                len(sent),
                "exactly" if exact else "a prefix",
                first,
                chan,
            )
        )

    def checkDelivered(self) -> None:
        """
        After L{settle}: the opens all answered, every stream arrived.
        """
        case = self.case
        for chan in self.chans.values():
            if chan.opener is not None:
                case.assertEqual(len(chan.opened), 1, chan)
                result = chan.opened[0]
                if isinstance(result, Failure):
                    # Only a peer that aborted before we heard it accept
                    # may leave the opening unanswered.
                    result.trap(ChannelRefused)
                    case.assertEqual(chan.abortedBy, other(chan.opener), chan)
                    case.assertIsNone(self.proto(chan, chan.opener), chan)
                else:
                    case.assertIs(result, self.proto(chan, chan.opener), chan)
                    case.assertEqual(result.channel, chan.number)
            for side in SIDES:
                self.checkStream(chan, side, chan.exact)

    def closeAll(self) -> None:
        """
        Close channel 0 (the session stays while other channels are open,
        and they still carry bytes), then every channel; check how each
        ended, that the session ended and that nothing is left.
        """
        p = self.pair
        case = self.case
        chan0 = self.chans[0]
        for side in SIDES:
            proto = self.proto(chan0, side)
            assert proto is not None
            if not proto.lost:
                chan0.closed[side] = chan0.shut[side] = True
                proto.transport.loseConnection()
                self.advance(0.2)
        self.advance(1)
        openChans = [c for n, c in sorted(self.chans.items()) if n and c.open]
        if openChans:
            for session in self.sessions:
                case.assertFalse(
                    session.ended, "the session ended with channels open: %r" % (openChans,)
                )
            for chan in openChans:
                for side in SIDES:
                    if self.writable(chan, side) and self.proto(chan, side) is not None:
                        self.write(chan, side, 100 + chan.number)
            self.advance(0.5)
            for chan in openChans:
                for side in SIDES:
                    self.checkStream(chan, side, True)
        for chan in self.chans.values():
            for side in SIDES:
                proto = self.proto(chan, side)
                if proto is not None and not proto.lost:
                    proto.transport.loseConnection()
        self.advance(2, step=0.05)

        for chan in self.chans.values():
            self.checkEnded(chan)
        ended: list[Any] = []
        for side in SIDES:
            self.proto(chan0, side).transport.whenEnded().addBoth(ended.append)  # type: ignore[union-attr]
        case.assertEqual(ended, [None, None])
        for session in self.sessions:
            case.assertTrue(session.ended)
            case.assertEqual(len(session.channels or ()), 0)
        case.assertEqual(p.net.links, [])
        case.assertEqual(p.clock.getDelayedCalls(), [])

    def checkEnded(self, chan: Chan) -> None:
        case = self.case
        for side in SIDES:
            proto = self.proto(chan, side)
            if proto is None:
                continue
            case.assertEqual(proto.made, 1)
            where = "channel %d at %s: %r" % (chan.number, side, chan)
            case.assertEqual(len(proto.lost), 1, where + " heard %r" % (proto.lost,))
            reason = proto.lost[0].type
            if chan.abortedBy == side:
                allowed: tuple[type, ...] = (ConnectionAborted,)
            elif chan.abortedBy is not None:
                allowed = (PeerAborted,)
            elif chan.unclean[side]:
                allowed = (ConnectionDone,)
            elif any(chan.unclean.values()):
                # The peer closed with our bytes unread: it resets the
                # channel, unless we closed first.
                allowed = (ConnectionDone, PeerAborted)
            else:
                allowed = (ConnectionDone,)
            case.assertIn(reason, allowed, where + " heard %r" % (proto.lost[0],))
            # (Closes during the script only: every end is closed at last.)
            peerHalf = chan.halfClosed[other(side)]
            if chan.exact and peerHalf and chan.half[side] and not chan.closed[side]:
                case.assertEqual(proto.readLost, 1, where)
            if chan.exact and chan.halfClosed[side] and chan.half[side] and not chan.closed[side]:
                case.assertEqual(proto.writeLost, 1, where)


# Scripts

sizes = st.one_of(
    st.integers(1, 300),
    st.integers(1, 40_000),
    st.integers(WINDOW // 2, 3 * WINDOW),
)
sides = st.sampled_from(SIDES)
picks = st.integers(0, 15)
opens = st.tuples(st.just("open"), sides, st.booleans(), st.booleans())
#: Each kind of action, as often as it should come.
KINDS = ["write"] * 6 + ["close"] * 2 + [
    "open",
    "half",
    "abort",
    "pause",
    "cut",
    "tick",
    "pump",
    "flush",
    "turn",
    "deliver",
]


@st.composite
def actions(draw: st.DrawFn) -> tuple[Any, ...]:
    """
    One action of a script.
    """
    kind = draw(st.sampled_from(KINDS))
    if kind == "open":
        return draw(opens)
    if kind == "write":
        return (kind, draw(picks), draw(sizes))
    if kind == "tick":
        return (kind, draw(st.sampled_from([0.0, 0.01, 0.05, 0.3, 1.0])))
    if kind == "deliver":
        return (kind, draw(sides))
    if kind in ("close", "half", "abort", "pause"):
        return (kind, draw(picks))
    return (kind,)


@st.composite
def scripts(draw: st.DrawFn) -> list[tuple[Any, ...]]:
    """
    A few channels opened and settled first (most examples), then any
    actions (more openings among them).
    """
    setup = draw(st.lists(opens, max_size=4))
    body = draw(st.lists(actions(), min_size=5, max_size=40))
    return setup + [("flush",)] + body if setup else body


class ChannelScriptTests(SynchronousTestCase):
    """
    Random scripts of channel operations, carrier cuts and time.
    """

    def setUp(self) -> None:
        self.logs = LogWatch()
        self.logs.start(self)

    @showExample
    @given(script=scripts(), half0=st.fixed_dictionaries({"c": st.booleans(), "s": st.booleans()}))
    @fuzzSettings(1500)
    @example(
        script=[
            ("open", "c", True, True),
            ("open", "s", False, True),
            ("write", 0, 3 * WINDOW),
            ("write", 3, 5000),
            ("pause", 2),
            ("cut",),
            ("write", 1, 70000),
            ("tick", 0.3),
            ("half", 0),
            ("close", 3),
            ("cut",),
            ("abort", 1),
        ],
        half0={"c": False, "s": True},
    )
    def test_channelScripts(self, script: list[tuple[Any, ...]], half0: dict[str, bool]) -> None:
        """
        After any script, settled: every stream arrived exactly once and in
        order (a prefix where its channel was aborted or reset), every
        protocol heard C{connectionMade} once and C{connectionLost} once
        with the right reason, channel 0 was undisturbed, the session
        outlives channel 0 while channels are open, and once all is closed
        the session ended and left nothing behind.
        """
        del self.logs.failures[:]
        world = World(self, half0)
        try:
            for action in script:
                world.run(action)
            world.settle()
            world.checkAlways()
            world.checkDelivered()
            world.closeAll()
        except BaseException as e:
            if e.args and isinstance(e.args[0], str):
                e.args = (e.args[0] + "\nactions: " + "; ".join(world.log),) + e.args[1:]
            raise
        self.assertEqual(self.logs.failures, [])
        self.assertEqual(self.flushLoggedErrors(), [])


# Head-of-line blocking

steps = st.one_of(
    st.tuples(st.just("slow"), st.integers(1, 3 * WINDOW)),
    st.tuples(st.just("fast"), picks, sides, st.integers(1, 60_000)),
    st.tuples(st.just("fast"), picks, sides, st.integers(1, 60_000)),
    st.tuples(st.just("tick"), st.sampled_from([0.0, 0.01, 0.1, 0.5])),
    st.tuples(st.just("cut")),
    st.tuples(st.just("pump")),
)


class HeadOfLineTests(SynchronousTestCase):
    """
    A paused channel stops only itself.
    """

    def setUp(self) -> None:
        self.logs = LogWatch()
        self.logs.start(self)

    def pending(self, proto: Peer) -> int:
        """
        What the channel carrier of C{proto}'s channel keeps unread.
        """
        carrier = sessionOf(proto).carrier
        return carrier.parser.pendingBytes if carrier is not None else 0

    @showExample
    @given(
        reader=sides,
        slowOpener=sides,
        openers=st.lists(sides, min_size=1, max_size=4),
        script=st.lists(steps, min_size=1, max_size=25),
    )
    @fuzzSettings(300)
    @example(
        reader="c",
        slowOpener="s",
        openers=["c", "s"],
        script=[("slow", 3 * WINDOW), ("fast", 0, "s", 60000), ("cut",), ("fast", 1, "c", 60000)],
    )
    def test_pausedChannelBlocksOnlyItself(
        self, reader: str, slowOpener: str, openers: list[str], script: list[tuple[Any, ...]]
    ) -> None:
        """
        With one channel's reader paused, whatever is written on it and on
        the other channels, through cuts: the others deliver everything,
        the paused one holds at most its window on the receiving side; once
        resumed it delivers everything, and all closes cleanly.
        """
        del self.logs.failures[:]
        world = World(self, {"c": False, "s": False})
        p = world.pair
        slow = world.openChannel(slowOpener, False, False)
        fast = [world.openChannel(side, False, False) for side in openers]
        world.advance(0.05)
        writer = other(reader)
        slowReader = world.proto(slow, reader)
        assert slowReader is not None
        world.togglePause(slow, reader)
        receiving = p.clientSession if reader == "c" else p.serverSession
        try:
            for step in script:
                if step[0] == "slow":
                    world.write(slow, writer, step[1])
                elif step[0] == "fast":
                    _, index, side, size = step
                    world.write(fast[index % len(fast)], side, size)
                elif step[0] == "tick":
                    world.advance(step[1])
                elif step[0] == "cut":
                    p.net.cutAll()
                else:
                    p.net.pump()
                self.assertLessEqual(self.pending(slowReader), WINDOW + SLACK)
            world.advance(3, step=0.05)
            self.assertIsNotNone(p.clientSession.carrier)
            for chan in fast + [world.chans[0]]:
                for side in SIDES:
                    world.checkStream(chan, side, True)
            self.assertEqual(slowReader.received, b"")
            self.assertLessEqual(self.pending(slowReader), WINDOW + SLACK)
            self.assertLessEqual(receiving.channels.held(), WINDOW + SLACK)
            world.checkAlways()
            world.togglePause(slow, reader)
            world.settle()
            world.checkStream(slow, writer, True)
            world.checkDelivered()
            world.closeAll()
        except BaseException as e:
            if e.args and isinstance(e.args[0], str):
                e.args = (e.args[0] + "\nscript: %r" % (script,),) + e.args[1:]
            raise
        self.assertEqual(self.logs.failures, [])
        self.assertEqual(self.flushLoggedErrors(), [])


# Bugs found by the properties above


class ChannelBugTests(SynchronousTestCase):
    """
    The smallest reproductions of bugs that the properties above found:
    plain tests, failing until the library is fixed.
    """

    def openChannel(self, p: Pair) -> tuple[Any, Any]:
        """
        Open a channel from the client; its protocol, and the server's.
        """
        results: list[Any] = []
        p.client.transport.openChannel(Factory.forProtocol(Recorder)).addBoth(results.append)
        p.net.flush()
        self.assertEqual(len(results), 1)
        return results[0], p.servers[-1]

    def reconnectsWithoutTime(self, p: Pair, pumps: int = 200) -> int:
        """
        How many connections the client makes in C{pumps} pumps of the
        network, the clock standing still.
        """
        before = p.net.connects
        for _ in range(pumps):
            p.net.pump()
        return p.net.connects - before

    def test_serverAbortLostInCutIsPeerAborted(self) -> None:
        """
        A channel the server aborts, its C{ABORT} lost with the carrier:
        the client's protocol hears L{PeerAborted} (as a whole session's
        does in that case), not L{ChannelReset}.

        (Found: the server forgets the aborted channel at once, remembering
        only that it did not close cleanly, and answers the client's
        C{CHANNEL_RESUME} with a C{CHANNEL_CLOSE} that is not graceful,
        which the client reports as C{ChannelReset("the peer's channel is
        gone")}.)
        """
        p = Pair().open()
        proto, serverSide = self.openChannel(p)
        serverSide.transport.abortConnection()
        p.clock.advance(0)  # its connectionLost, then the ABORT is written...
        p.net.cutAll()  # ...and lost
        p.settle(3)
        self.assertEqual([f.type for f in serverSide.lost], [ConnectionAborted])
        self.assertEqual([f.type for f in proto.lost], [PeerAborted])
        self.assertEqual(len(p.clientSession.channels), 0)

    def test_acceptorAbortBeforeAnswerIsNotReopened(self) -> None:
        """
        The server accepts a channel and its protocol aborts it at once;
        the carrier is cut before the client heard either.  The client's
        repeated C{CHANNEL_OPEN} on the next carrier must not open the
        channel again: no second server protocol is built, and the
        opener either fails (L{ChannelRefused}) or hears L{PeerAborted}.

        (Found: L{ChannelTable._peerOpens} does not look at the channels it
        closed, so the server builds a new protocol for channel 1, the
        opener's Deferred fires and it talks to that one, never told of the
        abort.)
        """
        p = Pair().open()
        results: list[Any] = []
        p.client.transport.openChannel(Factory.forProtocol(Recorder)).addBoth(results.append)
        p.clock.advance(0)
        (link,) = p.net.links
        # The opening reaches the server, whose answer does not get back.
        link.server.protocol.dataReceived(link.client._take())
        self.assertEqual(len(p.servers), 2)
        p.servers[1].transport.abortConnection()
        p.clock.advance(0)
        p.net.cutAll()
        p.settle(3)
        self.assertEqual(len(p.servers), 2, "a second protocol was built for channel 1")
        self.assertEqual(len(results), 1)
        if isinstance(results[0], Failure):
            results[0].trap(ChannelRefused)
        else:
            self.assertEqual([f.type for f in results[0].lost], [PeerAborted])

    def test_abortWhileThePeerHoldsBytesForWindow(self) -> None:
        """
        The client aborts a channel on which the server wrote more than a
        window: the server's channel hears L{PeerAborted} and closes its
        channel carrier, so that the client's channel ends, promptly, and
        the session can end.

        (Found: the server's channel carrier retires gracefully, waiting
        to send what it holds for want of window; but its table forgot the
        channel, so the client's C{CHANNEL_WINDOW}s are dropped and the
        C{CHANNEL_CLOSE} never goes.  The client's channel, waiting for it,
        stays open until C{closeTimeout} (60 s), and so does the session.)
        """
        p = Pair().open()
        proto, serverSide = self.openChannel(p)
        serverSide.transport.write(b"x" * (WINDOW + 100_000))
        proto.transport.abortConnection()
        p.settle(2)
        self.assertEqual([f.type for f in proto.lost], [ConnectionAborted])
        self.assertEqual([f.type for f in serverSide.lost], [PeerAborted])
        self.assertTrue(sessionOf(proto).ended, "the client's channel lingers")
        self.assertEqual(len(p.clientSession.channels), 0)
        self.assertEqual(len(p.serverSession.channels), 0)

    def test_resetWhileThePeerHoldsBytesForWindow(self) -> None:
        """
        As L{test_abortWhileThePeerHoldsBytesForWindow}, with the reset
        that a close with the peer's bytes unread makes (as TCP): the
        client's channel ends promptly.
        """
        p = Pair().open()
        proto, serverSide = self.openChannel(p)
        serverSide.transport.write(b"x" * (WINDOW + 100_000))
        proto.transport.loseConnection()
        p.settle(2)
        self.assertEqual([f.type for f in proto.lost], [ConnectionDone])
        self.assertEqual(len(serverSide.lost), 1)
        self.assertTrue(sessionOf(proto).ended, "the client's channel lingers")
        self.assertEqual(len(p.clientSession.channels), 0)

    def test_noReconnectLoopOnceTheServerEnded(self) -> None:
        """
        Channel 1 and channel 0 close cleanly; the server ends the session
        and the carrier is cut with the server's last frames (the
        C{CHANNEL_CLOSE} of channel 1) on the way.  The client must not
        reconnect again and again without pause: it learns that the
        session is over and ends.

        (Found: the server's ended session accepts the client's resume and
        closes the carrier without answering its C{CHANNEL_RESUME}, and
        the client, its resume having succeeded, reconnects at once: a
        connection per two pumps, with no time passing, until the channel's
        C{closeTimeout}, 60 s later.)
        """
        p = Pair().open()
        proto, serverSide = self.openChannel(p)
        proto.transport.loseConnection()
        p.client.transport.loseConnection()
        for _ in range(20):
            p.clock.advance(0)
            if p.serverSession.ended or not p.net.links:
                break
            (link,) = p.net.links
            for src, dst in ((link.client, link.server), (link.server, link.client)):
                if src.outgoing and not p.serverSession.ended:
                    dst.protocol.dataReceived(src._take())
        self.assertTrue(p.serverSession.ended)
        self.assertFalse(p.clientSession.ended)
        p.net.cutAll()
        self.assertLessEqual(self.reconnectsWithoutTime(p), 3)
        p.settle(2)
        self.assertTrue(p.clientSession.ended)
        self.assertEqual([f.type for f in proto.lost], [ConnectionDone])

    def test_pausedChannelZeroDoesNotBlockOtherChannels(self) -> None:
        """
        Channel 0's reader paused: the other channels still deliver (as any
        other paused channel stops only itself; L{migrate._channels}: "the
        carrier is always read").

        (Found: pausing channel 0 pauses the session's carrier itself, so
        every channel stops until channel 0 resumes.)
        """
        p = Pair().open()
        proto, serverSide = self.openChannel(p)
        p.client.transport.pauseProducing()
        p.server.transport.write(b"for channel 0")
        serverSide.transport.write(b"x" * 1000)
        p.settle(1)
        self.assertEqual(proto.received, b"x" * 1000)
        p.client.transport.resumeProducing()
        p.settle(1)
        self.assertEqual(p.client.received, b"for channel 0")
