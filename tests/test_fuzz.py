"""
Property-based fuzzing (with Hypothesis) of everything a peer can send:
the frame parser, the handshakes (a hostile client against the server, a
hostile server against the client) and established sessions.

Every property runs derandomized (the same examples on every run of the same
tree, so that a failure in CI reproduces anywhere) with no example database,
no deadline and a bounded number of examples, so that the whole module runs
in well under a minute.  To fuzz longer locally, set C{MIGRATE_FUZZ_SCALE}
(a multiplier of every example count, e.g. C{20}), and C{MIGRATE_FUZZ_SHRINK=0}
to have failures reported at once, unshrunk.

The properties:

    1. L{_wire.FrameParser}: any bytes, in any chunking, give exactly the
       frames a simple reference parser finds, then L{_wire.FrameError} if
       they hold a framing error, and never any other exception; every frame
       type survives encode then parse, in any chunking, with its fields in
       their documented ranges; pausing the parser loses, duplicates and
       reorders nothing.
    2. The server's handshakes: hostile carriers (handshake frames with
       interesting fields and wrong lengths, mutations of genuine and of
       recorded handshakes, resumes correctly proven but out of range, forged
       proofs, random bytes) raise nothing, log no traceback, create no
       session unless a whole genuine opening happened, leave the live
       session undisturbed and leave the handshake table as they found it.
       And the client against a hostile server: its C{connect} fires once,
       with the application only if the server's bytes were genuine.
    3. Established sessions: frames injected into live carriers and into
       resumes, among both applications' writes, half-closes, pauses, cuts
       and the passing of time, are either rejected (the carrier is dropped,
       the session's positions do not move) or harmless; and after settling,
       each application received what the other wrote, exactly once and in
       order.

Bugs the fuzzers found are kept as plain regression tests at the end
(L{RegressionTests}, and a few in the classes above), marked C{todo} until
the library is fixed.
"""

from __future__ import annotations

import functools
import os
import random
import sys
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence, Union

from hypothesis import HealthCheck, Phase, assume, example, given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.interfaces import IHalfCloseableProtocol, IPushProducer
from twisted.internet.protocol import Factory
from twisted.internet.testing import StringTransport
from twisted.logger import ILogObserver, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from migrate import HandshakeError, MigrateClientEndpoint, SessionExpired, SessionOptions
from migrate._sansio import crypto as _crypto, handshake as _handshake, wire as _wire
from migrate._advertise import AdvertisePolicy
from migrate._protocol import Carrier
from migrate._session import Session
from migrate.testing import MemoryNetwork, MemoryTransport

from .helpers import Pair, Recorder
from .test_hostile import Recording

# A multiplier of every example count, for longer local fuzzing runs.
_SCALE = float(os.environ.get("MIGRATE_FUZZ_SCALE", "1") or "1")
# Set to 0 to report failures unshrunk (faster when hunting).
_SHRINK = os.environ.get("MIGRATE_FUZZ_SHRINK", "1") != "0"

_MAX_U64 = 2**64 - 1
_MAX_U32 = 2**32 - 1

_HANDSHAKE_TYPES = [
    _wire.SERVER_HELLO,
    _wire.OPEN,
    _wire.OPEN_ACCEPT,
    _wire.OPEN_CONFIRM,
    _wire.RESUME,
    _wire.RESUME_ACCEPT,
    _wire.REJECT,
    _wire.OPENED,
]
_SESSION_TYPES = [
    _wire.DATA,
    _wire.ACK,
    _wire.FIN,
    _wire.ABORT,
    _wire.PING,
    _wire.PONG,
    _wire.ADDRESSES,
    _wire.CHANNEL,
    _wire.CHANNEL_OPEN,
    _wire.CHANNEL_OPENED,
    _wire.CHANNEL_REFUSED,
    _wire.CHANNEL_RESUME,
    _wire.CHANNEL_WINDOW,
    _wire.CHANNEL_CLOSE,
]
_KNOWN_TYPES = frozenset(_HANDSHAKE_TYPES + _SESSION_TYPES)
_UNKNOWN_TYPES = [t for t in range(256) if t not in _KNOWN_TYPES]
# The exact body size of each fixed-size control frame, and the bound of each
# variable one (the parser's own tables, restated so that a change to either
# is noticed).
_FIXED_SIZES = {
    _wire.SERVER_HELLO: 38,
    _wire.OPEN: 66,
    _wire.OPEN_ACCEPT: 80,
    _wire.OPEN_CONFIRM: 32,
    _wire.RESUME: 98,
    _wire.RESUME_ACCEPT: 40,
    _wire.OPENED: 0,
    _wire.ACK: 8,
    _wire.FIN: 8,
    _wire.PING: 8,
    _wire.PONG: 8,
    _wire.CHANNEL_OPENED: 8,
    _wire.CHANNEL_RESUME: 16,
    _wire.CHANNEL_WINDOW: 12,
}
_VARIABLE_LIMITS = {
    _wire.REJECT: 3 + _wire.MAX_REASON,
    _wire.ABORT: _wire.MAX_REASON,
    _wire.ADDRESSES: 8 + 2 + _wire.MAX_ADDRESSES * 48 + _wire.MAC_SIZE,
    _wire.CHANNEL_OPEN: 8 + _wire.MAX_CHANNEL_NAME,
    _wire.CHANNEL_REFUSED: 4 + _wire.MAX_REASON,
    _wire.CHANNEL_CLOSE: 5 + _wire.MAX_REASON,
}


def fuzzSettings(examples: int) -> Callable[[Any], Any]:
    """
    The settings of every property here: derandomized, no database, no
    deadline, C{examples} examples (times C{MIGRATE_FUZZ_SCALE}; shrunk
    unless C{MIGRATE_FUZZ_SHRINK=0}).
    """
    phases = [Phase.explicit, Phase.reuse, Phase.generate, Phase.target]
    if _SHRINK:
        phases += [Phase.shrink, Phase.explain]
    return settings(
        phases=phases,
        max_examples=max(1, int(examples * _SCALE)),
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
        ],
    )


def showExample(test: Callable[..., None]) -> Callable[..., None]:
    """
    Put Hypothesis's falsifying example (which it attaches to the exception
    as a note, and trial does not print) in the exception's message.
    """

    @functools.wraps(test)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            test(*args, **kwargs)
        except BaseException as e:
            lines = list(getattr(e, "__notes__", None) or [])
            for inner in getattr(e, "exceptions", None) or []:
                # Several distinct failures: show each, with its example.
                lines.extend(traceback.format_exception(inner))
            if lines and e.args and isinstance(e.args[0], str):
                e.args = ("\n".join([e.args[0]] + lines),) + e.args[1:]
            elif lines:
                sys.stderr.write("\n".join(lines) + "\n")
            raise

    return wrapper


def u64(value: int) -> bytes:
    """
    An unsigned 64-bit big-endian integer.
    """
    return value.to_bytes(8, "big")


def head(frameType: int, length: int) -> bytes:
    """
    A frame header announcing C{length} body bytes (clamped to what the
    four-byte field holds).
    """
    return bytes([frameType]) + max(0, min(_MAX_U32, length)).to_bytes(4, "big")


def chunked(data: bytes, cuts: Sequence[int]) -> list[bytes]:
    """
    Split C{data} at the positions C{cuts} (taken modulo its length, in
    any order, repeats ignored) into consecutive, non-empty pieces.
    """
    if not data:
        return []
    points = sorted({c % len(data) for c in cuts} - {0})
    pieces = []
    start = 0
    for point in points + [len(data)]:
        pieces.append(data[start:point])
        start = point
    return pieces


@implementer(ILogObserver)
class LogWatch:
    """
    Collects every log event that carries a failure (a traceback), from
    the moment it is started.

    @ivar failures: those events.
    """

    def __init__(self) -> None:
        self.failures: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any]) -> None:
        if "log_failure" in event:
            self.failures.append(event)

    def start(self, case: SynchronousTestCase) -> None:
        """
        Watch the global log until C{case} ends.
        """
        globalLogPublisher.addObserver(self)
        case.addCleanup(globalLogPublisher.removeObserver, self)


class DeterministicRandom:
    """
    A stand-in for L{_crypto.randomBytes} (nonces, session ids) drawing from
    a seeded generator, so that an example replays byte for byte.  (The
    X25519 keys stay random; nothing here depends on their bytes.)
    """

    def __init__(self, seed: int = 0) -> None:
        self._random = random.Random(seed)

    def __call__(self, n: int) -> bytes:
        return bytes(self._random.getrandbits(8) for _ in range(n))


# ---------------------------------------------------------------------------
# 1. The frame parser


class Events:
    """
    An L{_wire.IFrameReceiver} that records what a parser delivers, with
    each data frame's payload pieces joined (chunking may split them
    anywhere).

    @ivar events: C{("data", ack, length, payload)} and
        C{("control", frameType, body)} entries, in order.
    @ivar parser: the parser feeding it, for L{pauseAt}.
    @ivar pauseAt: indices of deliveries (counting every call) after which
        the receiver pauses the parser, as an application that stops
        reading would...
    @ivar pauseIn: ...if they are of one of these kinds (C{"data"}: a data
        frame's head, C{"payload"}, C{"control"}).
    @ivar calls: how many deliveries were made.
    @ivar whilePaused: deliveries made while the parser was paused (there
        must be none).
    """

    def __init__(
        self,
        pauseAt: frozenset[int] = frozenset(),
        pauseIn: frozenset[str] = frozenset({"data", "payload", "control"}),
    ) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.parser: Optional[_wire.FrameParser] = None
        self.pauseAt = pauseAt
        self.pauseIn = pauseIn
        self.calls = 0
        self.whilePaused: list[tuple[Any, ...]] = []

    def _delivered(self, what: tuple[Any, ...]) -> None:
        parser = self.parser
        if parser is not None and parser._paused:
            self.whilePaused.append(what)
        if parser is not None and self.calls in self.pauseAt and what[0] in self.pauseIn:
            parser.pause()
        self.calls += 1

    def dataFrameStarted(self, ack: int, length: int) -> None:
        self.events.append(("data", ack, length, b""))
        self._delivered(("data", ack, length))

    def payloadReceived(self, payload: bytes) -> None:
        assert payload, "empty payload delivered"
        kind, ack, length, sofar = self.events[-1]
        assert kind == "data", self.events
        self.events[-1] = (kind, ack, length, sofar + payload)
        self._delivered(("payload", len(payload)))

    def controlFrameReceived(self, frameType: int, body: bytes) -> None:
        self.events.append(("control", frameType, body))
        self._delivered(("control", frameType))

    def channelFrameStarted(self, channel: int, length: int) -> None:
        self.events.append(("channel", channel, length, b""))
        self._delivered(("data", channel, length))

    def channelPayloadReceived(self, payload: bytes) -> None:
        assert payload, "empty payload delivered"
        kind, channel, length, sofar = self.events[-1]
        assert kind == "channel", self.events
        self.events[-1] = (kind, channel, length, sofar + payload)
        self._delivered(("payload", len(payload)))


def referenceParse(data: bytes, maxPayload: int) -> tuple[list[tuple[Any, ...]], bool]:
    """
    A deliberately simple, non-incremental restatement of the framing rules
    of C{docs/protocol.md}, to check L{_wire.FrameParser} against.

    @return: the events an incremental parser must deliver for C{data}
        (a data frame whose payload is cut short by the end of C{data} is
        delivered with what there is; an incomplete control frame is not
        delivered), and whether C{data} holds a framing error.
    """
    events: list[tuple[Any, ...]] = []
    i = 0
    while i < len(data):
        frameType = data[i]
        if frameType == _wire.DATA:
            if len(data) - i < 13:
                break
            length = int.from_bytes(data[i + 1 : i + 5], "big")
            ack = int.from_bytes(data[i + 5 : i + 13], "big")
            if length > maxPayload:
                return events, True
            events.append(("data", ack, length, data[i + 13 : i + 13 + length]))
            i += 13 + length
            continue
        if frameType == _wire.CHANNEL:
            if len(data) - i < 9:
                break
            length = int.from_bytes(data[i + 1 : i + 5], "big")
            channel = int.from_bytes(data[i + 5 : i + 9], "big")
            if length > maxPayload + _wire.CHANNEL_OVERHEAD:
                return events, True
            events.append(("channel", channel, length, data[i + 9 : i + 9 + length]))
            i += 9 + length
            continue
        if len(data) - i < 5:
            break
        length = int.from_bytes(data[i + 1 : i + 5], "big")
        if frameType in _FIXED_SIZES:
            if length != _FIXED_SIZES[frameType]:
                return events, True
        elif frameType in _VARIABLE_LIMITS:
            if length > _VARIABLE_LIMITS[frameType]:
                return events, True
        else:
            return events, True
        body = data[i + 5 : i + 5 + length]
        if len(body) < length:
            break
        events.append(("control", frameType, body))
        i += 5 + length
    return events, False


def feedAll(
    parser: _wire.FrameParser, pieces: Sequence[bytes], resumeEvery: int = 1
) -> bool:
    """
    Feed C{pieces} to C{parser}, resuming it (if its receiver paused it)
    after every C{resumeEvery} pieces and at the end, until nothing is left.

    @return: whether the parser raised L{_wire.FrameError} (feeding stops
        there, as a carrier stops reading); any other exception propagates.
    """
    try:
        for n, piece in enumerate(pieces, 1):
            parser.feed(piece)
            if n % resumeEvery == 0:
                while parser._paused:
                    parser.resume()
        while parser._paused:
            parser.resume()
    except _wire.FrameError:
        return True
    return False


@st.composite
def frameish(draw: st.DrawFn) -> bytes:
    """
    Bytes that look like a frame (or the start of one): a type that is
    usually known, a length that is usually right, and a body.
    """
    frameType = draw(
        st.one_of(
            st.sampled_from(sorted(_KNOWN_TYPES)),
            st.integers(0, 255),
        )
    )
    if frameType == _wire.DATA:
        length = draw(st.one_of(st.integers(0, 40), st.integers(0, _MAX_U32)))
        ack = draw(st.one_of(st.integers(0, 50), st.integers(0, _MAX_U64)))
        payload = draw(st.binary(max_size=min(length, 60)))
        return head(frameType, length) + u64(ack) + payload
    if frameType == _wire.CHANNEL:
        length = draw(st.one_of(st.integers(0, 80), st.integers(0, _MAX_U32)))
        channel = draw(st.integers(0, _MAX_U32))
        payload = draw(st.binary(max_size=min(length, 60)))
        return head(frameType, length) + channel.to_bytes(4, "big") + payload
    proper = _FIXED_SIZES.get(frameType, _VARIABLE_LIMITS.get(frameType, 8))
    length = draw(
        st.one_of(
            st.just(proper),
            st.integers(0, proper + 2),
            st.integers(0, _MAX_U32),
        )
    )
    body = draw(st.binary(min_size=0, max_size=min(length, 900)))
    return head(frameType, length) + body


streams = st.lists(
    st.one_of(frameish(), st.binary(max_size=40)), max_size=8
).map(b"".join)
cutPoints = st.lists(st.integers(0, 10_000), max_size=30)
payloadLimits = st.sampled_from([0, 1, 16, 1000, _wire.DEFAULT_MAX_PAYLOAD])


class ParserFuzzTests(SynchronousTestCase):
    """
    L{_wire.FrameParser} against arbitrary bytes, chunkings and pauses.
    """

    @showExample
    @given(data=streams, cuts=cutPoints, maxPayload=payloadLimits)
    @fuzzSettings(600)
    @example(data=b"\x10" + b"\xff" * 12, cuts=[], maxPayload=0)
    @example(data=_wire.dataHead(1, 3) + b"abc", cuts=[13], maxPayload=3)
    @example(data=b"\x07\x00\x00\x00\x02\x05", cuts=[1, 2, 3], maxPayload=16)
    def test_anyBytesAnyChunking(
        self, data: bytes, cuts: list[int], maxPayload: int
    ) -> None:
        """
        Any bytes, split anywhere, give exactly the frames the reference
        parser finds, then L{_wire.FrameError} if they hold a framing error;
        never any other exception.  Every frame delivered is within its
        type's bounds.
        """
        reference, referenceError = referenceParse(data, maxPayload)
        chunkings = [chunked(data, cuts), [data] if data else []]
        if len(data) <= 1500:
            chunkings.append([bytes([b]) for b in data])
        for pieces in chunkings:
            events = Events()
            parser = _wire.FrameParser(events, maxPayload)
            failed = feedAll(parser, pieces)
            self.assertEqual(events.events, reference)
            self.assertEqual(failed, referenceError)
        for event in reference:
            if event[0] == "data":
                self.assertLessEqual(event[2], maxPayload)
                self.assertLessEqual(len(event[3]), event[2])
            elif event[0] == "channel":
                self.assertLessEqual(event[2], maxPayload + _wire.CHANNEL_OVERHEAD)
                self.assertLessEqual(len(event[3]), event[2])
            else:
                frameType, body = event[1], event[2]
                self.assertIn(frameType, _KNOWN_TYPES)
                if frameType in _FIXED_SIZES:
                    self.assertEqual(len(body), _FIXED_SIZES[frameType])
                else:
                    self.assertLessEqual(len(body), _VARIABLE_LIMITS[frameType])

    @showExample
    @given(data=st.binary(max_size=300), cuts=cutPoints, maxPayload=payloadLimits)
    @fuzzSettings(300)
    def test_randomBytes(self, data: bytes, cuts: list[int], maxPayload: int) -> None:
        """
        Uniformly random bytes in any chunking: frames or
        L{_wire.FrameError}, as the reference parser says.
        """
        reference, referenceError = referenceParse(data, maxPayload)
        events = Events()
        failed = feedAll(_wire.FrameParser(events, maxPayload), chunked(data, cuts))
        self.assertEqual((events.events, failed), (reference, referenceError))

    @showExample
    @given(
        data=streams,
        cuts=cutPoints,
        pauseAt=st.frozensets(st.integers(0, 40), max_size=10),
        resumeEvery=st.integers(1, 4),
    )
    @fuzzSettings(300)
    def test_pauseBetweenFramesOrInPayload(
        self, data: bytes, cuts: list[int], pauseAt: frozenset[int], resumeEvery: int
    ) -> None:
        """
        A receiver that pauses the parser when a control frame or some
        payload arrives (as the session does when its application stops
        reading), fed more while paused, loses, duplicates and reorders
        nothing, and hears nothing until it resumes.
        """
        # Pauses only where the session pauses: in payload and control
        # deliveries (see test_pauseInDataFrameHead for a frame's head).
        reference, referenceError = referenceParse(data, 1000)
        events = Events(pauseAt, frozenset({"payload", "control"}))
        parser = _wire.FrameParser(events, 1000)
        events.parser = parser
        failed = feedAll(parser, chunked(data, cuts), resumeEvery)
        self.assertEqual(events.events, reference)
        self.assertEqual(failed, referenceError)
        self.assertEqual(events.whilePaused, [])

    @showExample
    @given(
        data=streams,
        sizes=st.lists(st.integers(1, 13), max_size=200),
        pauseAt=st.frozensets(st.integers(0, 40), max_size=10),
    )
    @fuzzSettings(150)
    def test_pauseInDataFrameHeadSmallReads(
        self, data: bytes, sizes: list[int], pauseAt: frozenset[int]
    ) -> None:
        """
        A receiver that pauses the parser in C{dataFrameStarted} hears
        nothing more (not even that frame's payload) until it resumes, and
        then everything, once, in order; here with reads of at most 13 bytes
        (see L{test_pauseInDataFrameHead} for a read holding one whole data
        frame).
        """
        cuts = []
        position = 0
        for size in sizes:
            position += size
            if position >= len(data):
                break
            cuts.append(position)
        if position < len(data):
            cuts.extend(range(position + 13, len(data), 13))
        reference, referenceError = referenceParse(data, 1000)
        events = Events(pauseAt, frozenset({"data"}))
        parser = _wire.FrameParser(events, 1000)
        events.parser = parser
        failed = feedAll(parser, chunked(data, cuts), 2)
        self.assertEqual(events.events, reference)
        self.assertEqual(failed, referenceError)
        self.assertEqual(events.whilePaused, [])

    def test_pauseInDataFrameHead(self) -> None:
        """
        A receiver that pauses the parser in C{dataFrameStarted} of a data
        frame that arrived whole, alone in one read, hears nothing more
        until it resumes: that frame's payload is kept for L{resume}.
        """
        data = _wire.dataHead(0, 3) + b"abc"
        events = Events(frozenset({0}), frozenset({"data"}))
        parser = _wire.FrameParser(events, 1000)
        events.parser = parser
        parser.feed(data)
        self.assertEqual(events.whilePaused, [])
        self.assertEqual(parser._pending, b"abc")
        parser.resume()
        self.assertEqual(events.events, [("data", 0, 3, b"abc")])



# ---------------------------------------------------------------------------
# 1b. Encode then parse, every frame type


@dataclass(frozen=True)
class Spec:
    """
    One frame to encode, with the field values its decoder must give back.

    @ivar frameType: the frame type.
    @ivar fields: the values given to the encoder.
    """

    frameType: int
    fields: tuple[Any, ...]


nonces = st.binary(min_size=32, max_size=32)
macs = st.binary(min_size=32, max_size=32)
sids = st.binary(min_size=16, max_size=16)
u64s = st.one_of(st.integers(0, 300), st.integers(0, _MAX_U64), st.just(_MAX_U64))
texts = st.text(max_size=250)


@st.composite
def ipv4HostPorts(draw: st.DrawFn) -> str:
    """
    An IPv4 C{"host:port"}.
    """
    octets = draw(st.lists(st.integers(0, 255), min_size=4, max_size=4))
    return "%s:%d" % (".".join(map(str, octets)), draw(st.integers(1, 65535)))


@st.composite
def ipv6HostPorts(draw: st.DrawFn) -> str:
    """
    An IPv6 C{"[host]:port"}, compressed or written out in full (at most 47
    characters: what L{_wire} budgets per advertised address).
    """
    groups = draw(st.lists(st.integers(0, 0xFFFF), min_size=8, max_size=8))
    if draw(st.booleans()):
        host = ":".join("%x" % g for g in groups)
    else:
        host = ":".join("%04x" % g for g in groups)
    return "[%s]:%d" % (host, draw(st.integers(1, 65535)))


specs = st.one_of(
    st.builds(lambda n, f: Spec(_wire.SERVER_HELLO, (n, f)), nonces, st.integers(0, 255)),
    st.builds(lambda p, n, f: Spec(_wire.OPEN, (p, n, f)), nonces, nonces, st.integers(0, 255)),
    st.builds(lambda p, s, m: Spec(_wire.OPEN_ACCEPT, (p, s, m)), nonces, sids, macs),
    st.builds(lambda m: Spec(_wire.OPEN_CONFIRM, (m,)), macs),
    st.builds(
        lambda s, g, n, r, m, f: Spec(_wire.RESUME, (s, g, n, r, m, f)),
        sids,
        st.integers(1, _wire.MAX_GENERATION),
        nonces,
        u64s,
        macs,
        st.integers(0, 255),
    ),
    st.builds(lambda r, m: Spec(_wire.RESUME_ACCEPT, (r, m)), u64s, macs),
    st.builds(
        lambda c, t, ms: Spec(_wire.REJECT, (c, t, ms)),
        st.integers(0, 255),
        texts,
        st.integers(0, 0xFFFF),
    ),
    st.just(Spec(_wire.OPENED, ())),
    st.builds(
        lambda a, p: Spec(_wire.DATA, (a, p)), u64s, st.binary(max_size=300)
    ),
    st.builds(lambda a: Spec(_wire.ACK, (a,)), u64s),
    st.builds(lambda a: Spec(_wire.FIN, (a,)), u64s),
    st.builds(lambda t: Spec(_wire.ABORT, (t,)), texts),
    st.builds(lambda t: Spec(_wire.PING, (t,)), u64s),
    st.builds(lambda t: Spec(_wire.PONG, (t,)), u64s),
    st.builds(
        lambda s, f, a, m: Spec(_wire.ADDRESSES, (s, f, a, m)),
        u64s,
        st.integers(0, 255),
        st.lists(st.one_of(ipv4HostPorts(), ipv6HostPorts()), max_size=_wire.MAX_ADDRESSES),
        macs,
    ),
)


def encodeSpec(spec: Spec) -> bytes:
    """
    Encode C{spec} with L{_wire}'s own encoders.
    """
    t, f = spec.frameType, spec.fields
    if t == _wire.SERVER_HELLO:
        return _wire.encodeServerHello(*f)
    if t == _wire.OPEN:
        return _wire.encodeOpen(*f)
    if t == _wire.OPEN_ACCEPT:
        return _wire.encodeOpenAccept(*f)
    if t == _wire.OPEN_CONFIRM:
        return _wire.encodeOpenConfirm(*f)
    if t == _wire.RESUME:
        return _wire.encodeResume(*f)
    if t == _wire.RESUME_ACCEPT:
        return _wire.encodeResumeAccept(*f)
    if t == _wire.REJECT:
        code, text, millis = f
        return _wire.encodeReject(code, text, millis / 1000.0)
    if t == _wire.OPENED:
        return _wire.encodeOpened()
    if t == _wire.DATA:
        ack, payload = f
        return _wire.dataHead(ack, len(payload)) + payload
    if t == _wire.ACK:
        return _wire.encodeAck(*f)
    if t == _wire.FIN:
        return _wire.encodeFin(*f)
    if t == _wire.ABORT:
        return _wire.encodeAbort(*f)
    if t == _wire.PING:
        return _wire.encodePing(*f)
    if t == _wire.PONG:
        return _wire.encodePong(u64(f[0]))
    if t == _wire.ADDRESSES:
        return _wire.encodeAddresses(*f)
    raise AssertionError(spec)


class RoundTripTests(SynchronousTestCase):
    """
    Every frame type, encoded by L{_wire} with fields in their documented
    ranges, parses back (in any chunking) to the same fields.
    """

    def assertDecodes(self, spec: Spec, event: tuple[Any, ...]) -> None:
        """
        C{event} (as recorded by L{Events}) is the frame C{spec} describes.
        """
        t, f = spec.frameType, spec.fields
        if t == _wire.DATA:
            self.assertEqual(event, ("data", f[0], len(f[1]), f[1]))
            return
        self.assertEqual(event[:2], ("control", t))
        body = event[2]
        if t == _wire.SERVER_HELLO:
            self.assertEqual(_wire.decodeServerHello(body), (_wire.VERSION,) + f)
        elif t == _wire.OPEN:
            self.assertEqual(_wire.decodeOpen(body), (_wire.VERSION,) + f)
        elif t == _wire.OPEN_ACCEPT:
            self.assertEqual(_wire.decodeOpenAccept(body), f)
        elif t in (_wire.OPEN_CONFIRM,):
            self.assertEqual(body, f[0])
        elif t == _wire.RESUME:
            self.assertEqual(_wire.decodeResume(body), (_wire.VERSION,) + f)
        elif t == _wire.RESUME_ACCEPT:
            self.assertEqual(_wire.decodeResumeAccept(body), f)
        elif t == _wire.REJECT:
            code, text, millis = f
            gotCode, retryAfter, reason = _wire.decodeReject(body)
            self.assertEqual(gotCode, code)
            # Sent in whole milliseconds; the encoder truncates, so a
            # value may come back a millisecond short (see
            # test_rejectRetryAfterMilliseconds).
            self.assertIn(round(retryAfter * 1000), (millis, millis - 1))
            raw = text.encode("utf-8", "replace")
            self.assertEqual(reason, raw[: _wire.MAX_REASON].decode("utf-8", "replace"))
            if len(raw) <= _wire.MAX_REASON:
                self.assertEqual(reason, text)
        elif t == _wire.OPENED:
            self.assertEqual(body, b"")
        elif t in (_wire.ACK, _wire.FIN, _wire.PING, _wire.PONG):
            self.assertEqual(_wire.decodePosition(body), f[0])
        elif t == _wire.ABORT:
            raw = f[0].encode("utf-8", "replace")[: _wire.MAX_REASON]
            self.assertEqual(body, raw)
        elif t == _wire.ADDRESSES:
            self.assertEqual(_wire.decodeAddresses(body), (f[0], f[1], list(f[2]), f[3]))
        else:
            raise AssertionError(spec)

    def test_rejectRetryAfterMilliseconds(self) -> None:
        """
        A reject's retry-after, a whole number of milliseconds given in
        seconds, is sent as that number of milliseconds.
        """
        frame = _wire.encodeReject(_wire.REJECT_BUSY, "busy", 1.001)
        self.assertEqual(_wire.decodeReject(frame[5:]), (_wire.REJECT_BUSY, 1.001, "busy"))


    def test_addressesWithinDocumentedRanges(self) -> None:
        """
        An advertisement of fifteen IPv6 addresses, each written out in full
        (53 characters with brackets and port), as an operator may configure
        them: C{AdvertisePolicy.parse} keeps them in their shortest form,
        every entry fits, and the frame encodes to one its receiver accepts.
        """
        from migrate._advertise import AdvertisePolicy

        written = [
            "[0000:0000:0000:0000:0000:ffff:192.168.100.%d]:65535" % (100 + i,)
            for i in range(15)
        ]
        addresses = list(AdvertisePolicy.parse(",".join(written)).configured)
        self.assertEqual(len(addresses), 15)
        self.assertTrue(all(_wire.addressFits(a) for a in addresses))
        frame = _wire.encodeAddresses(2**32 + 1, _wire.ADDRESSES_CONFIGURED, addresses, b"m" * 32)
        events = Events()
        self.assertFalse(feedAll(_wire.FrameParser(events, _wire.DEFAULT_MAX_PAYLOAD), [frame]))
        self.assertEqual(
            _wire.decodeAddresses(events.events[0][2]),
            (2**32 + 1, _wire.ADDRESSES_CONFIGURED, addresses, b"m" * 32),
        )


    @showExample
    @given(frames=st.lists(specs, min_size=1, max_size=12), cuts=cutPoints)
    @fuzzSettings(400)
    @example(
        frames=[
            Spec(
                _wire.ADDRESSES,
                (_MAX_U64, 255, ["[%s]:65535" % (":".join(["ffff"] * 8),)] * 16, b"m" * 32),
            )
        ],
        cuts=[],
    )
    @example(frames=[Spec(_wire.REJECT, (255, "\u00e9" * 150, 0xFFFF))], cuts=[1, 200])
    def test_roundTrip(self, frames: list[Spec], cuts: list[int]) -> None:
        """
        A sequence of frames of every type, encoded and split anywhere,
        parses back to the fields it was encoded from.
        """
        data = b"".join(encodeSpec(s) for s in frames)
        events = Events()
        parser = _wire.FrameParser(events, _wire.DEFAULT_MAX_PAYLOAD)
        self.assertFalse(feedAll(parser, chunked(data, cuts)))
        self.assertEqual(len(events.events), len(frames))
        for spec, event in zip(frames, events.events):
            self.assertDecodes(spec, event)


# ---------------------------------------------------------------------------
# 2. The server's handshakes


class RawCarrier:
    """
    A raw carrier into a server factory, as a hostile client has: bytes go
    in through the carrier's C{dataReceived}, the server's frames are read
    back from its transport.

    @ivar transport: the server carrier's transport.
    @ivar carrier: the server's carrier.
    @ivar frames: the server's frames so far, C{(type, body)}.
    @ivar sent: whether anything was sent yet.
    @ivar lost: whether C{connectionLost} was delivered.
    """

    def __init__(self, pair: Pair, host: str, port: int) -> None:
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", host, port))
        self.carrier: Carrier = pair.factory.buildProtocol(self.transport.getPeer())
        self.carrier.makeConnection(self.transport)
        self.frames: list[tuple[int, bytes]] = []
        self._events = Events()
        self._parser = _wire.FrameParser(self._events, _wire.DEFAULT_MAX_PAYLOAD)
        self._broken = False
        self.sent = False
        self.lost = False
        self.read()

    def read(self) -> list[tuple[int, bytes]]:
        """
        Parse what the server wrote since the last call.
        """
        data = self.transport.value()
        self.transport.clear()
        if data and not self._broken:
            try:
                self._parser.feed(data)
            except _wire.FrameError:
                self._broken = True
        self.frames = [
            (e[1], e[2]) if e[0] == "control" else (_wire.DATA, e[3])
            for e in self._events.events
        ]
        return self.frames

    @property
    def nonce(self) -> Optional[bytes]:
        """
        This carrier's server nonce, if the server greeted it.
        """
        for frameType, body in self.read():
            if frameType == _wire.SERVER_HELLO:
                return _wire.decodeServerHello(body)[1]
        return None

    def send(self, data: bytes, cuts: Sequence[int] = ()) -> None:
        """
        Deliver C{data} to the server, split at C{cuts}.
        """
        for piece in chunked(data, cuts):
            self.sent = True
            self.carrier.dataReceived(piece)
        self.read()

    @property
    def closed(self) -> bool:
        """
        Whether the server closed (or aborted) this carrier.
        """
        return bool(self.transport.disconnecting)

    def close(self) -> None:
        """
        The connection ends (either side closed it).
        """
        if not self.lost:
            self.lost = True
            self.carrier.connectionLost(Failure(ConnectionDone()))


@dataclass(frozen=True)
class Flip:
    """
    Flip bit C{bit} of the byte at C{position} (modulo the length).
    """

    position: int
    bit: int


@dataclass(frozen=True)
class Truncate:
    """
    Keep only the first C{keep} bytes (modulo the length).
    """

    keep: int


@dataclass(frozen=True)
class Insert:
    """
    Insert C{data} before the byte at C{position} (modulo the length).
    """

    position: int
    data: bytes


@dataclass(frozen=True)
class Delete:
    """
    Delete C{count} bytes from C{position} (modulo the length).
    """

    position: int
    count: int


@dataclass(frozen=True)
class Overwrite:
    """
    Overwrite bytes from C{position} (modulo the length) with C{data}.
    """

    position: int
    data: bytes


@dataclass(frozen=True)
class FieldFlip:
    """
    Flip bit C{bit} of byte C{index} (modulo the field's size) of the field
    C{field} of a handshake frame (see L{_LAYOUTS}); of the whole frame if
    it has no such field.
    """

    field: str
    index: int
    bit: int


Mutation = Union[Flip, Truncate, Insert, Delete, Overwrite, FieldFlip]

# Where each field of the handshake frames a client sends lies: (offset,
# size), the five-byte header included.
_LAYOUTS: dict[int, dict[str, tuple[int, int]]] = {
    _wire.OPEN: {
        "type": (0, 1),
        "length": (1, 4),
        "version": (5, 1),
        "flags": (6, 1),
        "key": (7, 32),
        "nonce": (39, 32),
    },
    _wire.OPEN_CONFIRM: {"type": (0, 1), "length": (1, 4), "proof": (5, 32)},
    _wire.RESUME: {
        "type": (0, 1),
        "length": (1, 4),
        "version": (5, 1),
        "flags": (6, 1),
        "sid": (7, 16),
        "generation": (23, 8),
        "nonce": (31, 32),
        "received": (63, 8),
        "proof": (71, 32),
    },
}
_FIELDS = sorted({name for layout in _LAYOUTS.values() for name in layout})

mutations = st.one_of(
    st.builds(FieldFlip, st.sampled_from(_FIELDS), st.integers(0, 31), st.integers(0, 7)),
    st.builds(Flip, st.integers(0, 1000), st.integers(0, 7)),
    st.builds(Truncate, st.integers(0, 1000)),
    st.builds(Insert, st.integers(0, 1000), st.binary(min_size=1, max_size=12)),
    st.builds(Delete, st.integers(0, 1000), st.integers(1, 12)),
    st.builds(Overwrite, st.integers(0, 1000), st.binary(min_size=1, max_size=12)),
)


def mutate(data: bytes, changes: Sequence[Mutation]) -> bytes:
    """
    Apply C{changes} to C{data}, each inside it (never after its end); if
    they happen to give C{data} back, flip its first bit instead: the
    result always differs (when there are changes).
    """
    out = bytearray(data)
    for change in changes:
        if not out:
            break
        n = len(out)
        if isinstance(change, FieldFlip):
            offset, size = _LAYOUTS.get(out[0], {}).get(change.field, (0, n))
            if offset + size <= n:
                out[offset + change.index % size] ^= 1 << change.bit
            continue
        if isinstance(change, Flip):
            out[change.position % n] ^= 1 << change.bit
        elif isinstance(change, Truncate):
            del out[change.keep % n :]
        elif isinstance(change, Insert):
            p = change.position % n
            out[p:p] = change.data
        elif isinstance(change, Delete):
            p = change.position % n
            del out[p : p + change.count]
        else:
            p = change.position % n
            piece = change.data[: n - p]
            out[p : p + len(piece)] = piece
    if changes and bytes(out) == data and data:
        out = bytearray(data)
        out[0] ^= 0x80
    return bytes(out)


@dataclass(frozen=True)
class Raw:
    """
    Random bytes.
    """

    data: bytes
    cuts: tuple[int, ...] = ()


@dataclass(frozen=True)
class FrameLike:
    """
    A handshake (or other) frame with a body shaped like that type's, some
    of its fields chosen to be interesting, its announced length off by
    C{lengthDelta}.

    @ivar body: the body, except where C{useLiveSession} puts the live
        session's id in (for C{RESUME}).
    @ivar relative: for such a C{RESUME}, C{(g, r)}: its generation is the
        live session's plus C{g}, its received position what the live
        session sent plus C{r} (so that only the proof is wrong).
    """

    frameType: int
    body: bytes
    lengthDelta: int = 0
    useLiveSession: bool = False
    cuts: tuple[int, ...] = ()
    relative: Optional[tuple[int, int]] = None


@dataclass(frozen=True)
class ProvenResume:
    """
    A C{RESUME} correctly proven with the live session's key for this
    carrier's nonce, but wrong in one way (C{flaw}): a C{"generation"} out
    of range, or C{"stale"} (not above the last), or a received position
    C{"below"} what the peer acknowledged or C{"beyond"} what was sent; or
    a correct one, C{"mutated"} by C{changes} (only then).
    """

    flaw: str
    value: int
    changes: tuple[Mutation, ...] = ()
    cuts: tuple[int, ...] = ()


@dataclass(frozen=True)
class GenuineOpen:
    """
    A genuine opening (a real L{_handshake.ClientHandshake} answering this
    carrier's greeting), its C{OPEN} and C{OPEN_CONFIRM} mutated by the
    given changes, its confirmation forged as C{confirm} says
    (C{"genuine"}: not forged; C{"reflected"}: the server's own proof sent
    back; C{"label"}: the right key and transcript under another purpose's
    label; C{"zero"}: zeros).  Without changes or forgery the opening must
    succeed, if it is the first thing on its carrier.
    """

    openChanges: tuple[Mutation, ...] = ()
    confirmChanges: tuple[Mutation, ...] = ()
    cuts: tuple[int, ...] = ()
    confirm: str = "genuine"


@dataclass(frozen=True)
class ForgedResume:
    """
    A C{RESUME} of the live session, right in every field (version, id, a
    generation above the last, the position the client received) but its
    proof (C{how}): C{"random"}; under a C{"wrongKey"}; for an
    C{"oldNonce"} (a nonce other than this carrier's); for another
    C{"generation"} or C{"received"} position or client C{"nonce"} than
    the frame carries; under another purpose's C{"label"}; or the
    C{"serverProof"} a server would answer with.  Always refused as a bad
    proof, before anything changes.
    """

    how: str
    value: int
    cuts: tuple[int, ...] = ()


@dataclass(frozen=True)
class Replay:
    """
    The bytes of a genuine handshake recorded on the live session's
    carriers (its opening, or its latest resume), mutated.
    """

    which: str
    changes: tuple[Mutation, ...] = ()
    cuts: tuple[int, ...] = ()


Move = Union[Raw, FrameLike, ProvenResume, ForgedResume, GenuineOpen, Replay]

cutTuples = st.lists(st.integers(0, 300), max_size=5).map(tuple)
changeTuples = st.lists(mutations, min_size=1, max_size=3).map(tuple)


@st.composite
def frameLikes(draw: st.DrawFn) -> FrameLike:
    """
    A frame shaped like a handshake frame (or, sometimes, any frame).
    """
    frameType = draw(
        st.one_of(
            st.sampled_from(_HANDSHAKE_TYPES),
            st.sampled_from(_SESSION_TYPES),
            st.sampled_from(_UNKNOWN_TYPES),
        )
    )
    live = False
    if frameType == _wire.OPEN:
        version = draw(st.sampled_from([_wire.VERSION, 0, 2, 255]))
        public = draw(
            st.one_of(
                nonces,
                st.just(b"\x00" * 32),
                st.just(b"\x01" + b"\x00" * 31),
                st.just(b"\xff" * 32),
            )
        )
        body = bytes([version]) + public + draw(nonces)
    elif frameType == _wire.RESUME:
        live = draw(st.booleans())
        version = draw(st.sampled_from([_wire.VERSION, 0, 2]))
        generation = draw(
            st.sampled_from([0, 1, 2, _wire.MAX_GENERATION, 2**32, _MAX_U64])
            | st.integers(0, _MAX_U64)
        )
        body = (
            bytes([version])
            + draw(sids)
            + u64(generation)
            + draw(nonces)
            + u64(draw(u64s))
            + draw(macs)
        )
    elif frameType == _wire.REJECT:
        body = (
            bytes([draw(st.integers(0, 255))])
            + draw(st.binary(min_size=2, max_size=2))
            + draw(st.binary(max_size=210))
        )
    elif frameType == _wire.DATA:
        body = u64(draw(u64s)) + draw(st.binary(max_size=20))
    else:
        size = _FIXED_SIZES.get(frameType)
        if size is None:
            size = draw(st.integers(0, _VARIABLE_LIMITS.get(frameType, 40) + 2))
        body = draw(st.binary(min_size=size, max_size=size))
    delta = draw(st.sampled_from([0, 0, 0, -1, 1]) | st.integers(-100, 100))
    relative = None
    if live:
        relative = draw(st.none() | st.tuples(st.integers(-1, 2), st.integers(-1, 1)))
    return FrameLike(frameType, body, delta, live, draw(cutTuples), relative)


moves = st.one_of(
    st.builds(Raw, st.binary(min_size=1, max_size=120), cutTuples),
    frameLikes(),
    st.builds(
        ProvenResume,
        st.sampled_from(["generation", "stale", "below", "beyond", "mutated"]),
        st.integers(0, _MAX_U64),
        changeTuples,
        cutTuples,
    ),
    st.builds(
        ForgedResume,
        st.sampled_from(
            [
                "random",
                "wrongKey",
                "oldNonce",
                "generation",
                "received",
                "nonce",
                "label",
                "serverProof",
            ]
        ),
        st.integers(0, _MAX_U64),
        cutTuples,
    ),
    st.builds(
        GenuineOpen,
        st.lists(mutations, max_size=2).map(tuple),
        st.lists(mutations, max_size=2).map(tuple),
        cutTuples,
        st.sampled_from(["genuine", "genuine", "reflected", "label", "zero"]),
    ),
    st.builds(
        Replay,
        st.sampled_from(["open", "resume"]),
        st.lists(mutations, max_size=3).map(tuple),
        cutTuples,
    ),
)


@dataclass(frozen=True)
class Script:
    """
    What the attackers of one example do.

    @ivar setup: C{"resumed"} to have the live session resume once first
        (so that it has a generation and a recorded resume), C{"data"} to
        have it exchange some data first, C{"both"}, or C{"plain"}.
    @ivar crowded: use small handshake tables (eviction and busy refusals).
    @ivar moves: C{(attacker, host, move)}: attacker number, which of a
        few peer hosts it comes from, and what it sends.
    @ivar timeout: end by letting the handshake deadline pass before
        closing the attackers' connections (else close them at once).
    """

    setup: str
    crowded: bool
    moves: tuple[tuple[int, int, Move], ...]
    timeout: bool


scripts = st.builds(
    Script,
    st.sampled_from(["plain", "resumed", "data", "both"]),
    st.booleans(),
    st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 2), moves), min_size=1, max_size=6
    ).map(tuple),
    st.booleans(),
)

_HOSTS = ["192.0.2.66", "198.51.100.7", "10.0.0.2"]


def _recordedHandshake(sent: bytes) -> bytes:
    """
    The handshake frames at the start of what a client sent on a carrier
    (up to its first data frame).
    """
    events = Events()
    parser = _wire.FrameParser(events, _wire.DEFAULT_MAX_PAYLOAD)
    try:
        parser.feed(sent)
    except _wire.FrameError:
        pass
    out = []
    for e in events.events:
        if e[0] != "control" or e[1] not in _HANDSHAKE_TYPES:
            break
        out.append(_wire.encodeFrame(e[1], e[2]))
    return b"".join(out)


class HandshakeFuzzTests(SynchronousTestCase):
    """
    Hostile carriers against a server that holds a live session.
    """

    def setUp(self) -> None:
        self.logs = LogWatch()
        self.logs.start(self)
        self.patch(_crypto, "randomBytes", DeterministicRandom(1))

    def openPair(self, script: Script) -> tuple[Pair, Recording]:
        """
        A live session, set up as C{script} says.
        """
        self.patch(_crypto, "randomBytes", DeterministicRandom(2))
        options = SessionOptions(maxPending=4, maxPendingPerHost=2) if script.crowded else None
        pair = Pair(serverOptions=options)
        recording = Recording(pair)
        pair.open()
        if script.setup in ("data", "both"):
            pair.client.transport.write(b"hello")
            pair.server.transport.write(b"world!")
            pair.settle(0.2, 0.05)
        if script.setup in ("resumed", "both"):
            pair.net.cutAll()
            pair.settle()
        self.assertIs(pair.serverSession.carrier, pair.net.links[-1].server.protocol)
        return pair, recording

    def assertUndisturbed(self, pair: Pair, live: Any) -> None:
        """
        The live session still has its carrier and carries data both ways.
        """
        self.assertIs(pair.serverSession.carrier, live.server.protocol)
        self.assertFalse(live.closed)
        before = (pair.client.received, pair.server.received)
        pair.client.transport.write(b"still")
        pair.server.transport.write(b"here")
        pair.settle()
        self.assertEqual(pair.server.received, before[1] + b"still")
        self.assertEqual(pair.client.received, before[0] + b"here")
        self.assertEqual(pair.client.lost + pair.server.lost, [])

    def resolve(
        self, pair: Pair, recording: Recording, attacker: RawCarrier, move: Move
    ) -> tuple[bytes, tuple[int, ...]]:
        """
        The bytes C{move} sends on C{attacker} now.

        @return: the bytes, and where to split them.
        """
        session = pair.serverSession
        if isinstance(move, Raw):
            return move.data, move.cuts
        if isinstance(move, FrameLike):
            body = move.body
            if move.useLiveSession and move.frameType == _wire.RESUME:
                body = body[:1] + session.sessionID + body[17:]
                if move.relative is not None:
                    generation = max(0, session.generation + move.relative[0])
                    received = max(0, session.engine.sent + move.relative[1])
                    body = body[:17] + u64(generation) + body[25:57] + u64(received) + body[65:]
            return head(move.frameType, len(body) + move.lengthDelta) + body, move.cuts
        if isinstance(move, Replay):
            if move.which == "open":
                genuine = _recordedHandshake(bytes(recording.sent[0]))
            else:
                genuine = _recordedHandshake(bytes(recording.sent[-1]))
            return mutate(genuine, move.changes), move.cuts
        nonce = attacker.nonce or b"\x00" * 32
        if isinstance(move, ProvenResume):
            generation = session.generation + 1
            received = pair.clientSession.engine.received
            engine = session.engine
            if move.flaw == "mutated":
                pass
            elif move.flaw == "generation":
                generation = [0, 2**32, _MAX_U64, 2**32 + move.value % 2**32][move.value % 4]
            elif move.flaw == "stale":
                generation = move.value % (session.generation + 1)
            elif move.flaw == "below" and engine.acked > 0:
                received = move.value % engine.acked
            else:
                limit = engine.sent + engine.finSent
                received = limit + 1 + move.value % (_MAX_U64 - limit)
            clientNonce = _crypto.randomBytes(32)
            mac = _crypto.prove(
                session.key,
                b"resume-client",
                nonce,
                session.sessionID,
                generation,
                clientNonce,
                received,
            )
            frame = _wire.encodeResume(
                session.sessionID, generation, clientNonce, received, mac
            )
            changes = move.changes if move.flaw == "mutated" else ()
            return mutate(frame, changes), move.cuts
        if isinstance(move, ForgedResume):
            return self.forgedResume(pair, nonce, move), move.cuts
        assert isinstance(move, GenuineOpen)
        # Driven step by step below (the confirmation depends on the
        # server's answer).
        return b"", move.cuts

    def forgedResume(self, pair: Pair, nonce: bytes, move: ForgedResume) -> bytes:
        """
        The C{RESUME} C{move} describes, for a carrier whose nonce is
        C{nonce}.
        """
        session = pair.serverSession
        generation = session.generation + 1
        received = pair.clientSession.engine.received
        clientNonce = _crypto.randomBytes(32)
        key, label = session.key, b"resume-client"
        parts: list[Union[bytes, int]] = [
            nonce,
            session.sessionID,
            generation,
            clientNonce,
            received,
        ]
        how, value = move.how, move.value
        if how == "random":
            mac = u64(value) * 4
        else:
            if how == "wrongKey":
                key = bytes([key[0] ^ (1 << value % 8)]) + key[1:]
            elif how == "oldNonce":
                parts[0] = bytes([nonce[0] ^ (1 << value % 8)]) + nonce[1:]
            elif how == "generation":
                parts[2] = generation + 1 + value % 100
            elif how == "received":
                parts[4] = (received + 1 + value % 100) % 2**64
            elif how == "nonce":
                parts[3] = bytes(32 - len(u64(value))) + u64(value)
            elif how == "label":
                label = [b"resume-server", b"open-client", b"open-server", b"addresses"][value % 4]
            else:
                label = b"resume-server"
                parts.append(received)
            mac = _crypto.prove(key, label, *parts)
        return _wire.encodeResume(session.sessionID, generation, clientNonce, received, mac)

    def expectedCode(self, pair: Pair, frame: bytes) -> int:
        """
        The reject code a correctly proven C{RESUME} deserves.
        """
        session = pair.serverSession
        generation = _wire.decodeResume(frame[5:])[2]
        if not 0 < generation <= _wire.MAX_GENERATION:
            return _wire.REJECT_PROTOCOL
        if generation <= session.generation:
            return _wire.REJECT_STALE
        return _wire.REJECT_PROTOCOL

    def genuineOpen(self, attacker: RawCarrier, move: GenuineOpen) -> bool:
        """
        Run a genuine opening on C{attacker}, mutated as C{move} says.

        @return: whether it was sent unmutated, as the first thing on a
            carrier the server greeted (it must then succeed).
        """
        from migrate._sansio.handshake import ClientHandshake, HandshakeFailed

        fresh = not attacker.sent and not attacker.closed
        nonce = attacker.nonce
        client = ClientHandshake.forOpen()
        hello = _wire.encodeServerHello(nonce or b"\x00" * 32)
        opening = client.receiveHello(hello[5:])
        before = len(attacker.frames)
        attacker.send(mutate(opening, move.openChanges), move.cuts)
        answers = [body for t, body in attacker.read()[before:] if t == _wire.OPEN_ACCEPT]
        confirm: Optional[bytes] = None
        if answers:
            try:
                confirm = client.receiveOpenAccept(answers[0])
            except HandshakeFailed:
                confirm = None
        if confirm is not None and move.confirm == "reflected":
            confirm = _wire.encodeOpenConfirm(_wire.decodeOpenAccept(answers[0])[2])
        elif confirm is not None and move.confirm == "label":
            serverPublic, sessionID, _ = _wire.decodeOpenAccept(answers[0])
            assert client._pair is not None and nonce is not None
            transcript = (nonce, client._pair.publicBytes, client._nonce, serverPublic, sessionID)
            proof = _crypto.prove(client.key, b"resume-client", *transcript)
            confirm = _wire.encodeOpenConfirm(proof)
        if confirm is None or move.confirm == "zero":
            confirm = _wire.encodeOpenConfirm(b"\x00" * 32)
        attacker.send(mutate(confirm, move.confirmChanges), move.cuts)
        return (
            fresh
            and nonce is not None
            and not move.openChanges
            and not move.confirmChanges
            and move.confirm == "genuine"
            and bool(answers)
        )

    @showExample
    @given(script=scripts)
    @fuzzSettings(900)
    @example(
        script=Script("both", False, ((0, 0, GenuineOpen()),), False),
    )
    @example(
        script=Script("both", True, ((0, 2, Replay("resume", ())),) * 6, True),
    )
    def test_hostileHandshakes(self, script: Script) -> None:
        """
        Hostile carriers (frames of every handshake type with interesting
        fields and wrong lengths, mutated genuine openings, mutated replays
        of the live session's recorded handshakes, resumes of the live
        session correctly proven but out of range or mutated, resumes with
        forged proofs, random bytes; from one or several hosts, with roomy
        or crowded handshake tables) raise nothing and log no traceback;
        proven but impossible resumes and forged ones are refused with the
        fitting reason; no session (and no application protocol) is created
        unless a whole genuine opening happened; the live session's
        generation and positions do not move and it still carries data both
        ways on its carrier; and once their connections end (at once, or
        after the handshake deadline closed them), the handshake table is as
        it was.
        """
        del self.logs.failures[:]
        pair, recording = self.openPair(script)
        factory = pair.factory
        live = pair.net.links[-1]
        session = pair.serverSession
        snapshot = (
            session.generation,
            session.engine.sent,
            session.engine.acked,
            session.engine.received,
        )
        pendingBefore = (len(factory._pending), dict(factory._pendingPerHost))
        sessionsBefore = set(factory.sessions)
        attackers: dict[int, RawCarrier] = {}
        opened = 0
        for number, host, move in script.moves:
            attacker = attackers.get(number)
            if attacker is None:
                attacker = attackers[number] = RawCarrier(pair, _HOSTS[host], 5000 + number)
            if isinstance(move, GenuineOpen):
                if self.genuineOpen(attacker, move):
                    opened += 1
                continue
            fresh = not attacker.sent and attacker.nonce is not None
            data, cuts = self.resolve(pair, recording, attacker, move)
            before = len(attacker.frames)
            attacker.send(data, cuts)
            rejects = [
                _wire.decodeReject(body)[0]
                for t, body in attacker.frames[before:]
                if t == _wire.REJECT
            ]
            if isinstance(move, ProvenResume) and move.flaw != "mutated" and fresh:
                # Refused with the reason that fits, before anything changed.
                self.assertEqual(rejects, [self.expectedCode(pair, data)], move)
            if isinstance(move, ForgedResume) and fresh:
                self.assertEqual(rejects, [_wire.REJECT_BAD_PROOF], move)
        if script.timeout:
            pair.clock.advance(pair.factory.options.handshakeTimeout + 0.1)
            pair.net.flush()
            for attacker in attackers.values():
                if attacker.carrier.session is None:
                    self.assertTrue(attacker.closed, attacker.frames)
        for attacker in attackers.values():
            attacker.close()
        pair.net.flush()

        self.assertEqual((len(factory._pending), dict(factory._pendingPerHost)), pendingBefore)
        self.assertEqual(len(set(factory.sessions) - sessionsBefore), opened)
        self.assertEqual(len(pair.servers), 1 + opened)
        self.assertEqual(
            (
                session.generation,
                session.engine.sent,
                session.engine.acked,
                session.engine.received,
            ),
            snapshot,
        )
        self.assertUndisturbed(pair, live)
        self.assertEqual(self.logs.failures, [])
        self.assertEqual(self.flushLoggedErrors(), [])


@dataclass(frozen=True)
class ServerPlan:
    """
    How a hostile server answers a client's opening, on every carrier: a
    genuine L{_handshake.ServerHandshake} whose frames are mutated, replaced
    or followed by other bytes.

    @ivar hello: changes to the greeting.
    @ivar afterHello: bytes sent right after it.
    @ivar accept: changes to the C{OPEN_ACCEPT}.
    @ivar acceptInstead: bytes sent instead of the C{OPEN_ACCEPT}, if any.
    @ivar opened: changes to the C{OPENED}.
    @ivar openedInstead: bytes sent instead of the C{OPENED}, if any.
    @ivar tail: bytes sent after the C{OPENED} (the session is open by
        then: they concern the established session).
    """

    hello: tuple[Mutation, ...] = ()
    afterHello: bytes = b""
    accept: tuple[Mutation, ...] = ()
    acceptInstead: Optional[bytes] = None
    opened: tuple[Mutation, ...] = ()
    openedInstead: Optional[bytes] = None
    tail: bytes = b""


class HostileServer(Recorder):
    """
    A server carrier that plays a L{ServerPlan}.

    @ivar transport: its connection.

    @ivar sent: what it sent.
    @ivar honest: what a real server would have sent in its place, up to
        its C{OPENED}.
    @ivar opened: whether it got as far as a real server's C{OPENED} (the
        client proved the key).
    @ivar unknownAfterConfirm: whether it answered a genuine confirmation
        with an "unknown session" refusal (see
        L{RegressionTests.test_unknownSessionAfterConfirm}).
    """

    transport: Any

    def __init__(self, plan: ServerPlan) -> None:
        Recorder.__init__(self)
        self.plan = plan
        self.handshake = _handshake.ServerHandshake()
        self.events = Events()
        self.parser = _wire.FrameParser(self.events, _wire.DEFAULT_MAX_PAYLOAD)
        self.done = 0
        self.sent = b""
        self.honest = b""
        self.opened = False
        self.unknownAfterConfirm = False

    def send(self, honest: bytes, actual: bytes) -> None:
        """
        Send C{actual} where a real server would send C{honest}.
        """
        self.honest += honest
        self.sent += actual
        self.transport.write(actual)

    @property
    def genuine(self) -> bool:
        """
        Whether the client saw what a real server sends, up to C{OPENED}.
        """
        return self.opened and self.sent.startswith(self.honest)

    def connectionMade(self) -> None:
        Recorder.connectionMade(self)
        hello = self.handshake.hello()
        self.send(hello, mutate(hello, self.plan.hello) + self.plan.afterHello)

    def dataReceived(self, data: bytes) -> None:
        Recorder.dataReceived(self, data)
        try:
            self.parser.feed(data)
        except _wire.FrameError:
            self.transport.loseConnection()
            return
        plan = self.plan
        for event in self.events.events[self.done :]:
            self.done += 1
            if event[0] != "control":
                continue
            frameType, body = event[1], event[2]
            try:
                if frameType == _wire.OPEN:
                    honest = answer = self.handshake.receiveOpen(body)
                    if plan.acceptInstead is not None:
                        answer = plan.acceptInstead
                    self.send(honest, mutate(answer, plan.accept))
                elif frameType == _wire.OPEN_CONFIRM:
                    self.handshake.receiveOpenConfirm(body)
                    self.opened = True
                    honest = answer = _wire.encodeOpened()
                    if plan.openedInstead is not None:
                        answer = plan.openedInstead
                    actual = mutate(answer, plan.opened) + plan.tail
                    if self.sent.startswith(self.honest):
                        first = Events()
                        try:
                            _wire.FrameParser(first, 0).feed(actual)
                        except _wire.FrameError:
                            pass
                        self.unknownAfterConfirm = bool(first.events) and first.events[0][:2] == (
                            "control",
                            _wire.REJECT,
                        ) and first.events[0][2][:1] == bytes([_wire.REJECT_UNKNOWN_SESSION])
                    self.send(honest, actual)
                else:
                    self.transport.loseConnection()
            except _handshake.HandshakeFailed:
                self.transport.loseConnection()


hostileFrames = st.one_of(
    frameish(),
    st.builds(
        lambda code, retry, reason: _wire.encodeReject(code, reason, retry / 1000),
        st.integers(0, 255),
        st.integers(0, 0xFFFF),
        texts,
    ),
    st.builds(_wire.encodeAbort, texts),
    st.sampled_from(
        [
            _wire.encodeOpened(),
            _wire.encodeServerHello(b"n" * 32),
            _wire.encodeResumeAccept(0, b"m" * 32),
            _wire.encodeFrame(_wire.REJECT, b""),
            _wire.dataHead(0, 3) + b"abc",
        ]
    ),
)
@st.composite
def serverPlans(draw: st.DrawFn) -> ServerPlan:
    """
    A genuine server (with any tail after its C{OPENED}), or one wrong in
    one place, or in any number of places.
    """
    changes = st.lists(mutations, min_size=1, max_size=2).map(tuple)
    which = draw(
        st.sampled_from(
            [
                "genuine",
                "hello",
                "afterHello",
                "accept",
                "acceptInstead",
                "opened",
                "openedInstead",
                "any",
            ]
        )
    )
    tail = draw(st.one_of(st.just(b""), hostileFrames))
    if which == "genuine":
        return ServerPlan(tail=tail)
    if which == "hello":
        return ServerPlan(hello=draw(changes), tail=tail)
    if which == "afterHello":
        junk = draw(hostileFrames | st.binary(min_size=1, max_size=30))
        return ServerPlan(afterHello=junk, tail=tail)
    if which == "accept":
        return ServerPlan(accept=draw(changes), tail=tail)
    if which == "acceptInstead":
        return ServerPlan(acceptInstead=draw(hostileFrames), tail=tail)
    if which == "opened":
        return ServerPlan(opened=draw(changes), tail=tail)
    if which == "openedInstead":
        return ServerPlan(openedInstead=draw(hostileFrames), tail=tail)
    optional = st.lists(mutations, max_size=2).map(tuple)
    return ServerPlan(
        draw(optional),
        draw(st.one_of(st.just(b""), hostileFrames, st.binary(min_size=1, max_size=30))),
        draw(optional),
        draw(st.none() | hostileFrames),
        draw(optional),
        draw(st.none() | hostileFrames),
        tail,
    )


class HostileServerTests(SynchronousTestCase):
    """
    A client opening a session with a hostile (or broken) server.
    """

    def setUp(self) -> None:
        self.logs = LogWatch()
        self.logs.start(self)

    @showExample
    @given(plan=serverPlans())
    @fuzzSettings(400)
    @example(plan=ServerPlan())
    @example(plan=ServerPlan(acceptInstead=_wire.encodeReject(_wire.REJECT_BUSY, "busy", 0.25)))
    def test_hostileServer(self, plan: ServerPlan) -> None:
        """
        Whatever a server answers (its genuine frames mutated, replaced or
        followed by others), the client's C{connect} fires once, within
        C{connectTimeout}: with the application protocol if and only if the
        server's bytes were a real server's (up to its C{OPENED}), else
        with an error; nothing raises and no traceback is logged.
        """
        del self.logs.failures[:]
        self.patch(_crypto, "randomBytes", DeterministicRandom(4))
        clock = Clock()
        net = MemoryNetwork(clock)
        servers: list[HostileServer] = []

        def build() -> HostileServer:
            servers.append(HostileServer(plan))
            if len(servers) >= 40:
                # Enough to tell a reconnection loop: stop it.
                net.refuse = True
            return servers[-1]

        net.listen(Factory.forProtocol(build))
        options = SessionOptions()
        endpoint = MigrateClientEndpoint(clock, net.clientEndpoint(), options, random.Random(0))
        results: list[object] = []
        endpoint.connect(Factory.forProtocol(Recorder)).addBoth(results.append)
        net.flush()
        elapsed = 0.0
        while not results and elapsed <= options.connectTimeout + 1:
            clock.advance(0.25)
            elapsed += 0.25
            net.flush()
        # A known bug (a confirmation answered with "unknown session" makes
        # the client open afresh at once, for ever): see
        # RegressionTests.test_unknownSessionAfterConfirm.
        assume(not any(server.unknownAfterConfirm for server in servers))
        # Retries (a busy server, a lost confirmation) are few and spaced.
        self.assertLessEqual(net.connects, 30)
        self.assertEqual(len(results), 1)
        if any(server.genuine for server in servers):
            self.assertIsInstance(results[0], Recorder)
            self.assertEqual(results[0].made, 1)  # type: ignore[attr-defined]
        else:
            self.assertIsInstance(results[0], Failure)
            assert isinstance(results[0], Failure)
            results[0].trap(HandshakeError)
        # Whatever happens next (the session, if open, meets the tail) is
        # quiet too.
        for _ in range(20):
            clock.advance(0.5)
            net.flush()
        self.assertEqual(self.logs.failures, [])
        self.assertEqual(self.flushLoggedErrors(), [])


# ---------------------------------------------------------------------------
# 3. Established sessions


@implementer(IHalfCloseableProtocol)
class HalfCloser(Recorder):
    """
    A recording application that half-closes: the peer's end of stream does
    not end its own direction.

    @ivar readLost: how many times C{readConnectionLost} ran.
    @ivar writeLost: how many times C{writeConnectionLost} ran.
    @ivar transport: its L{migrate.IMigrateTransport}.
    """

    transport: Any

    def __init__(self) -> None:
        Recorder.__init__(self)
        self.readLost = 0
        self.writeLost = 0

    def readConnectionLost(self) -> None:
        self.readLost += 1

    def writeConnectionLost(self) -> None:
        self.writeLost += 1


@dataclass(frozen=True)
class Write:
    """
    The application on C{side} (C{"client"} or C{"server"}) writes C{size}
    bytes.
    """

    side: str
    size: int


@dataclass(frozen=True)
class HalfClose:
    """
    The application on C{side} ends its direction (C{loseWriteConnection}).
    """

    side: str


@dataclass(frozen=True)
class PauseReading:
    """
    The application on C{side} stops reading (C{pauseProducing}).
    """

    side: str


@dataclass(frozen=True)
class ResumeReading:
    """
    The application on C{side} reads again (C{resumeProducing}).
    """

    side: str


@dataclass(frozen=True)
class Flush:
    """
    Let the network move everything it can, without time passing.
    """


@dataclass(frozen=True)
class Advance:
    """
    Let C{seconds} pass.
    """

    seconds: float


@dataclass(frozen=True)
class Cut:
    """
    Cut every carrier, with what is in flight (an ordinary path failure).
    """


@dataclass(frozen=True)
class BadAck:
    """
    An C{ACK}, C{DATA} (with C{payload} bytes) or C{FIN} acknowledging
    C{excess} positions beyond what the target sent (at most 2**64 - 1).
    Rejected.
    """

    frameType: int
    excess: int
    payload: int = 0


@dataclass(frozen=True)
class TruthfulAck:
    """
    An C{ACK} or empty C{DATA} acknowledging a position the peer did
    receive (a fraction C{share}/1024 of it): harmless, as a duplicate.
    """

    frameType: int
    share: int


@dataclass(frozen=True)
class SecondFin:
    """
    A C{FIN} after the peer's own (or, before it, with an impossible
    acknowledgement). Rejected.
    """

    share: int


@dataclass(frozen=True)
class DataAfterFin:
    """
    C{DATA} with C{payload} bytes after the peer's C{FIN} (or, before it,
    with an impossible acknowledgement). Rejected.
    """

    payload: int
    share: int


@dataclass(frozen=True)
class Oversized:
    """
    A C{DATA} head announcing more than C{maxFrame}, then C{tail}. Rejected.
    """

    length: int
    ack: int
    tail: bytes


@dataclass(frozen=True)
class Ping:
    """
    A heartbeat with any token: answered, harmless.
    """

    token: int


@dataclass(frozen=True)
class Pong:
    """
    An answer to a heartbeat never sent (any token): harmless.
    """

    token: int


@dataclass(frozen=True)
class ForgedAddresses:
    """
    An C{ADDRESSES} frame without the key: well-formed with a wrong proof,
    replayed (right proof, a sequence number not above the last), malformed
    or oversized. Rejected.
    """

    kind: str
    seq: int
    flags: int
    addresses: tuple[str, ...]
    body: bytes


@dataclass(frozen=True)
class MidSessionHandshake:
    """
    A handshake frame, well-formed, on an established carrier. Rejected.
    """

    frameType: int
    body: bytes


@dataclass(frozen=True)
class BadFrame:
    """
    A frame of an unknown type, or a fixed-size one with the wrong length,
    or garbage that starts with no frame type at all. Rejected.
    """

    frameType: int
    length: int
    body: bytes


Attack = Union[
    BadAck,
    TruthfulAck,
    SecondFin,
    DataAfterFin,
    Oversized,
    Ping,
    Pong,
    ForgedAddresses,
    MidSessionHandshake,
    BadFrame,
]


@dataclass(frozen=True)
class Inject:
    """
    Inject C{attack} into the session on side C{target}: C{"direct"}ly into
    its carrier's C{dataReceived} (split at C{cuts}), or C{"wire"}: written
    on the peer's carrier, after what the peer already wrote.
    """

    target: str
    how: str
    attack: Attack
    cuts: tuple[int, ...] = ()


@dataclass(frozen=True)
class Meddle:
    """
    Cut the carriers, let the client's resume begin (C{pumps} rounds of the
    network), then inject C{data} into its handshake, C{"toServer"} or
    C{"toClient"}.  No proof can be forged, so the resume is at worst
    delayed, provided no refusal that ends the session reaches the client:
    without TLS an on-path attacker can end a session so (as with a TCP
    reset), by forging one or by making the server send one; and what is
    injected must not be an established session's frame (it may land after
    the handshake, where injected data would be taken as the peer's).  So
    nothing injected starts with a session frame type, nothing injected
    towards the server starts with C{OPEN} or C{RESUME} (whose refusals,
    such as "unsupported version", end a resuming session), and nothing
    injected towards the client starts with a C{REJECT} other than "busy"
    or "protocol error".
    """

    direction: str
    pumps: int
    data: bytes


Step = Union[Write, HalfClose, PauseReading, ResumeReading, Flush, Advance, Cut, Inject, Meddle]

sides = st.sampled_from(["client", "server"])
shares = st.integers(0, 1024)
excesses = st.one_of(st.integers(1, 3), st.integers(1, _MAX_U64), st.just(_MAX_U64))

attacks = st.one_of(
    st.builds(
        BadAck,
        st.sampled_from([_wire.ACK, _wire.DATA, _wire.FIN]),
        excesses,
        st.integers(0, 40),
    ),
    st.builds(TruthfulAck, st.sampled_from([_wire.ACK, _wire.DATA]), shares),
    st.builds(SecondFin, shares),
    st.builds(DataAfterFin, st.integers(1, 40), shares),
    st.builds(
        Oversized,
        st.integers(_wire.DEFAULT_MAX_PAYLOAD + 1, _MAX_U32),
        st.integers(0, _MAX_U64),
        st.binary(max_size=20),
    ),
    st.builds(Ping, st.integers(0, _MAX_U64)),
    st.builds(Pong, st.integers(0, _MAX_U64)),
    st.builds(
        ForgedAddresses,
        st.sampled_from(["forged", "replayed", "malformed", "oversized"]),
        st.integers(0, _MAX_U64),
        st.integers(0, 255),
        st.lists(st.one_of(ipv4HostPorts(), ipv6HostPorts()), max_size=4).map(tuple),
        st.binary(max_size=60),
    ),
    st.builds(
        MidSessionHandshake,
        st.sampled_from(_HANDSHAKE_TYPES),
        st.binary(max_size=240),
    ),
    st.builds(
        BadFrame,
        st.one_of(st.sampled_from(_UNKNOWN_TYPES), st.sampled_from(sorted(_FIXED_SIZES))),
        st.integers(0, _MAX_U32),
        st.binary(max_size=40),
    ),
)

steps = st.one_of(
    st.builds(
        Write,
        sides,
        st.one_of(
            st.integers(1, 64),
            st.integers(1, 6000),
            st.sampled_from([4096, 4097, 140_000, 270_000]),
        ),
    ),
    st.builds(HalfClose, sides),
    st.builds(PauseReading, sides),
    st.builds(ResumeReading, sides),
    st.just(Flush()),
    st.builds(Advance, st.sampled_from([0.01, 0.06, 0.6, 2.5])),
    st.just(Cut()),
    st.builds(Inject, sides, st.sampled_from(["direct", "wire"]), attacks, cutTuples),
    st.builds(
        Meddle,
        st.just("toServer"),
        st.integers(0, 3),
        st.one_of(frameish(), st.binary(min_size=1, max_size=40)).filter(
            lambda b: b[0] not in _SESSION_TYPES and b[0] not in (_wire.OPEN, _wire.RESUME)
        ),
    ),
    st.builds(
        Meddle,
        st.just("toClient"),
        st.integers(0, 3),
        st.one_of(
            st.one_of(frameish(), st.binary(min_size=1, max_size=40)).filter(
                lambda b: b[0] not in _SESSION_TYPES and b[0] != _wire.REJECT
            ),
            st.builds(
                lambda code, millis: _wire.encodeReject(code, "meddling", millis / 1000),
                st.sampled_from([_wire.REJECT_BUSY, _wire.REJECT_PROTOCOL]),
                st.integers(0, 2000),
            ),
        ),
    ),
)


def _carrierOf(end: MemoryTransport) -> Carrier:
    """
    The carrier at one end of a memory connection.
    """
    carrier = end.protocol
    assert isinstance(carrier, Carrier)
    return carrier


def _pattern(index: int, size: int) -> bytes:
    """
    C{size} bytes that differ from write to write (so that a lost,
    duplicated or reordered write shows).
    """
    seed = index.to_bytes(4, "big")
    block = bytes((index * 7 + k) % 251 for k in range(251))
    return (seed + block * (size // 251 + 1))[:size]


class SessionDriver:
    """
    Plays a list of L{Step}s against a L{Pair} and checks each injection as
    it goes.

    @ivar written: what each application wrote, in order.
    @ivar closed: which applications half-closed.
    @ivar sessions: the two sessions, by side.
    @ivar apps: the two applications, by side.
    """

    def __init__(self, case: SynchronousTestCase, pair: Pair) -> None:
        self.case = case
        self.pair = pair
        self.apps: dict[str, HalfCloser] = {"client": pair.client, "server": pair.server}
        self.sessions: dict[str, Session] = {
            "client": pair.clientSession,
            "server": pair.serverSession,
        }
        self.written: dict[str, list[bytes]] = {"client": [], "server": []}
        self.closed: dict[str, bool] = {"client": False, "server": False}
        self._writes = 0
        self._advanced = 0.0

    @staticmethod
    def other(side: str) -> str:
        """
        The other side.
        """
        return "server" if side == "client" else "client"

    def positions(self, session: Session) -> tuple[int, int, int, bool, bool]:
        """
        What matters of a session's stream state.
        """
        e = session.engine
        return (e.sent, e.acked, e.received, e.finSent, e.finReceived)

    def run(self, script: Sequence[Step]) -> None:
        """
        Play C{script}.
        """
        for step in script:
            if isinstance(step, Write):
                self.write(step)
            elif isinstance(step, HalfClose):
                if not self.closed[step.side] and not self.sessions[step.side].ended:
                    self.closed[step.side] = True
                    self.apps[step.side].transport.loseWriteConnection()
            elif isinstance(step, PauseReading):
                self.apps[step.side].transport.pauseProducing()
            elif isinstance(step, ResumeReading):
                self.apps[step.side].transport.resumeProducing()
            elif isinstance(step, Flush):
                self.pair.net.flush()
            elif isinstance(step, Advance):
                # A script spans well under closeTimeout (see
                # RegressionTests.test_halfCloseOutlivesCloseTimeout).
                if self._advanced + step.seconds <= 20:
                    self._advanced += step.seconds
                    self.pair.clock.advance(step.seconds)
                    self.pair.net.flush()
            elif isinstance(step, Cut):
                self.pair.net.cutAll()
            elif isinstance(step, Meddle):
                self.meddle(step)
            else:
                self.inject(step)

    def write(self, step: Write) -> None:
        """
        An application writes (unless it closed its direction).
        """
        if self.closed[step.side] or self.sessions[step.side].ended:
            return
        self._writes += 1
        data = _pattern(self._writes, step.size)
        self.written[step.side].append(data)
        self.apps[step.side].transport.write(data)

    def meddle(self, step: Meddle) -> None:
        """
        Inject into a resume's handshake.
        """
        net = self.pair.net
        net.cutAll()
        links = [link for link in net.links if _carrierOf(link.client).session is None]
        if not links:
            return
        link = links[-1]
        for _ in range(step.pumps):
            link.pump()
        if link.closed or _carrierOf(link.client).session is not None:
            return
        end = link.client if step.direction == "toServer" else link.server
        end.write(step.data)
        net.flush()

    def attached(self) -> bool:
        """
        Settle until both sessions are attached (or one ended); whether
        they are.
        """
        for _ in range(100):
            self.pair.net.flush()
            client, server = self.sessions["client"], self.sessions["server"]
            if client.ended or server.ended:
                return False
            if client.carrier is not None and server.carrier is not None:
                return True
            self.pair.clock.advance(0.05)
        return False

    def resolve(
        self, target: Session, peer: Session, attack: Attack, deferred: bool
    ) -> tuple[bytes, bool]:
        """
        The bytes of C{attack} against C{target} now.

        @param deferred: whether the bytes may be parsed later, after the
            target sent more (and so moved the limit of what may be
            acknowledged): an impossible acknowledgement must then be
            impossible for good.
        @return: the bytes, and whether they must be rejected (else they
            must be harmless).
        """
        engine = target.engine
        limit = engine.sent + engine.finSent
        # What the peer really received of the target's stream: an
        # acknowledgement up to here is the truth, however it came.
        truthful = peer.engine.received

        def beyond(excess: int) -> int:
            if deferred:
                return _MAX_U64 - excess % 2**16
            return min(_MAX_U64, limit + max(1, excess))

        def share(n: int) -> int:
            return truthful * n // 1024

        if isinstance(attack, BadAck):
            ack = beyond(attack.excess)
            if attack.frameType == _wire.DATA:
                return _wire.dataHead(ack, attack.payload) + b"x" * attack.payload, True
            return _wire.encodeFrame(attack.frameType, u64(ack)), True
        if isinstance(attack, TruthfulAck):
            ack = share(attack.share)
            if attack.frameType == _wire.DATA:
                return _wire.dataHead(ack, 0), False
            return _wire.encodeAck(ack), False
        if isinstance(attack, SecondFin):
            ack = share(attack.share) if engine.finReceived else beyond(1)
            return _wire.encodeFin(ack), True
        if isinstance(attack, DataAfterFin):
            ack = share(attack.share) if engine.finReceived else beyond(1)
            return _wire.dataHead(ack, attack.payload) + b"y" * attack.payload, True
        if isinstance(attack, Oversized):
            return head(_wire.DATA, attack.length) + u64(attack.ack) + attack.tail, True
        if isinstance(attack, Ping):
            return _wire.encodePing(attack.token), False
        if isinstance(attack, Pong):
            return _wire.encodePong(u64(attack.token)), False
        if isinstance(attack, ForgedAddresses):
            addresses = list(attack.addresses)
            sender = b"server" if target.isClient else b"client"
            if attack.kind == "forged":
                mac = (attack.body * 32 + b"\x00" * 32)[:32]
                return _wire.encodeAddresses(attack.seq, attack.flags, addresses, mac), True
            if attack.kind == "replayed":
                seq = attack.seq % (target._peerAdvertSeq + 1)
                mac = _crypto.prove(
                    target.key,
                    b"addresses",
                    sender,
                    seq,
                    attack.flags,
                    *(a.encode("ascii") for a in addresses),
                )
                return _wire.encodeAddresses(seq, attack.flags, addresses, mac), True
            if attack.kind == "malformed":
                return _wire.encodeFrame(_wire.ADDRESSES, attack.body), True
            length = _VARIABLE_LIMITS[_wire.ADDRESSES] + 1 + attack.seq % 1000
            return head(_wire.ADDRESSES, length) + attack.body, True
        if isinstance(attack, MidSessionHandshake):
            size = _FIXED_SIZES.get(attack.frameType)
            body = attack.body
            if size is not None:
                body = (body + b"\x00" * size)[:size]
            else:
                body = body[: _VARIABLE_LIMITS[attack.frameType]]
            return _wire.encodeFrame(attack.frameType, body), True
        assert isinstance(attack, BadFrame)
        length = attack.length
        if attack.frameType in _FIXED_SIZES and length == _FIXED_SIZES[attack.frameType]:
            length += 1
        return head(attack.frameType, length) + attack.body, True

    def inject(self, step: Inject) -> None:
        """
        Deliver an attack and check at once what it did.
        """
        if not self.attached():
            return
        case = self.case
        target = self.sessions[step.target]
        peer = self.sessions[self.other(step.target)]
        carrier = target.carrier
        assert carrier is not None
        parser = carrier.parser
        # Parsed later (after the target may have sent more), or glued to
        # the rest of a frame already begun: judged by the delivery check.
        deferred = (
            step.how == "wire"
            or parser._paused
            or bool(parser._head)
            or parser._type is not None
        )
        data, rejected = self.resolve(target, peer, step.attack, deferred)
        if step.how == "wire":
            carrier = peer.carrier
            assert carrier is not None
            carrier.transport.write(data)
            self.pair.net.flush()
            return
        before = self.positions(target)
        for piece in chunked(data, step.cuts):
            carrier.dataReceived(piece)
        if deferred:
            # Kept until the application reads again, or glued to what was
            # there: judged by the delivery check.
            return
        after = self.positions(target)
        if rejected:
            case.assertTrue(carrier.retired, step)
            case.assertIsNot(target.carrier, carrier, step)
            case.assertEqual(after, before, step)
            case.assertFalse(target.ended, step)
            return
        # Harmless: nothing moves but (at most) the acknowledgement, and
        # only up to the truth.
        case.assertEqual(
            (after[0], after[2], after[3], after[4]),
            (before[0], before[2], before[3], before[4]),
            step,
        )
        case.assertGreaterEqual(after[1], before[1], step)
        case.assertLessEqual(after[1], max(before[1], peer.engine.received), step)
        if not target.ended:
            case.assertFalse(carrier.retired, step)
            case.assertIs(target.carrier, carrier, step)

    def settle(self) -> None:
        """
        Let the sessions finish what they have to do: until every byte
        (and end of stream) either way is acknowledged, or they ended.
        """
        client, server = self.sessions["client"], self.sessions["server"]
        for side in ("client", "server"):
            if not self.sessions[side].ended:
                self.apps[side].transport.resumeProducing()
        for _ in range(1200):
            self.pair.net.flush()
            if client.ended and server.ended:
                return
            done = (
                client.carrier is not None
                and server.carrier is not None
                and client.engine.allAcked
                and server.engine.allAcked
                and client.engine.received == server.engine.sent + server.engine.finSent
                and server.engine.received == client.engine.sent + client.engine.finSent
            )
            if done:
                return
            self.pair.clock.advance(0.05)

    def check(self) -> None:
        """
        Exactly-once, in-order delivery both ways; ends of stream heard
        once; nothing ended that should not have.
        """
        case = self.case
        for side in ("client", "server"):
            other = self.other(side)
            app = self.apps[other]
            case.assertEqual(app.received, b"".join(self.written[side]), side)
            case.assertEqual(app.readLost, int(self.closed[side]), side)
        if self.closed["client"] and self.closed["server"]:
            # Both directions ended: the sessions are complete (a side whose
            # FIN's acknowledgement was lost with a carrier the peer no
            # longer resumes gives up on it after closeTimeout, as TCP's
            # LAST-ACK does); half-closing applications keep their
            # connections until they close them (as on Twisted's TCP), and
            # then hear a clean close, once.
            if not all(session.ended for session in self.sessions.values()):
                self.pair.clock.advance(self.pair.options.closeTimeout)
                self.pair.net.flush()
            sides = ["client", "server"]
            for side in sides:
                case.assertTrue(self.sessions[side].ended, side)
            for side in sides:
                case.assertEqual(self.apps[side].lost, [], side)
                self.apps[side].transport.loseConnection()
            self.pair.net.flush()
            for side in sides:
                lost = self.apps[side].lost
                case.assertEqual(len(lost), 1, side)
                lost[0].trap(ConnectionDone)
        else:
            for side in ("client", "server"):
                case.assertFalse(self.sessions[side].ended, side)
                case.assertEqual(self.apps[side].lost, [], side)


class SessionFuzzTests(SynchronousTestCase):
    """
    Frames injected into established sessions, among the applications'
    own traffic.
    """

    def setUp(self) -> None:
        self.logs = LogWatch()
        self.logs.start(self)

    def play(self, script: Sequence[Step], tight: bool = False) -> SessionDriver:
        """
        Open a pair, play C{script}, settle and check delivery.

        @param tight: use small frames, frequent acknowledgements and
            connections that push back early (so that writes are split,
            carriers block and producers pause).
        """
        del self.logs.failures[:]
        self.patch(_crypto, "randomBytes", DeterministicRandom(3))
        options = None
        if tight:
            options = SessionOptions(sendFrame=1000, maxFrame=4096, ackEvery=3000)
        pair = Pair(options=options, clientProtocol=HalfCloser, serverProtocol=HalfCloser)
        if tight:
            pair.net.bufferLimit = 2048
        pair.open()
        driver = SessionDriver(self, pair)
        driver.run(script)
        driver.settle()
        driver.check()
        self.assertEqual(self.logs.failures, [])
        self.assertEqual(self.flushLoggedErrors(), [])
        return driver

    @showExample
    @given(script=st.lists(steps, max_size=25), tight=st.booleans())
    @fuzzSettings(1200)
    @example(
        script=[
            Write("client", 10),
            Inject("server", "direct", BadAck(_wire.ACK, _MAX_U64)),
            Write("server", 5),
            Inject("server", "direct", TruthfulAck(_wire.ACK, 1024)),
            HalfClose("client"),
            Flush(),
            Inject("server", "direct", SecondFin(1024)),
            Inject("server", "wire", DataAfterFin(3, 0)),
            Write("server", 7),
        ],
        tight=False,
    )
    def test_injectedFrames(self, script: list[Step], tight: bool) -> None:
        """
        Frames injected into a live session (bad acknowledgements up to
        2**64 - 1, a second FIN, data after FIN, oversized data, heartbeats
        with any token, forged, replayed and malformed address
        advertisements, handshake frames, unknown types, wrong lengths),
        among writes, half-closes, cuts and the passing of time, either are
        rejected (the carrier is dropped; the session's positions do not
        move) or are harmless; no traceback is logged, and each application
        receives what the other wrote, exactly once and in order.
        """
        self.play(script, tight)


# ---------------------------------------------------------------------------
# Regressions: bugs the fuzzers found, kept as plain tests (expected to fail
# until fixed).


@implementer(IPushProducer)
class PausesWhenResumed(Recorder):
    """
    An application that produces into its transport and, each time it is
    asked to produce again, stops reading meanwhile (as a relay whose
    other side just became writable might).

    @ivar paused: whether it paused its reading.
    @ivar whilePaused: data delivered while it had paused its reading.
    @ivar transport: its L{migrate.IMigrateTransport}.
    """

    transport: Any

    def __init__(self) -> None:
        Recorder.__init__(self)
        self.paused = False
        self.whilePaused: list[bytes] = []

    def connectionMade(self) -> None:
        Recorder.connectionMade(self)
        self.transport.registerProducer(self, True)

    def dataReceived(self, data: bytes) -> None:
        if self.paused:
            self.whilePaused.append(data)
        Recorder.dataReceived(self, data)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        self.paused = True
        self.transport.pauseProducing()

    def stopProducing(self) -> None:
        pass


class RegressionTests(SynchronousTestCase):
    """
    Failures the fuzzers found, reduced to a reproducer each.
    """

    def test_pausedByAcknowledgement(self) -> None:
        """
        An application that stops reading from within its producer's
        C{resumeProducing} (called because an acknowledgement freed its
        buffer) is given no data until it reads again, even when that
        acknowledgement came at the head of a data frame that arrived
        alone in one read.
        """
        pair = Pair(
            serverProtocol=PausesWhenResumed, serverOptions=SessionOptions(highWater=1024)
        )
        pair.open()
        server = pair.server
        server.transport.write(b"s" * 2000)
        self.assertIn("buffer", pair.serverSession.pauseReasons)
        pair.net.flush()
        # One data frame, alone in one read, whose acknowledgement resumes
        # the server application's producer.
        pair.client.transport.write(b"abc")
        pair.net.flush()
        self.assertTrue(server.paused)
        self.assertEqual(server.whilePaused, [])
        server.transport.resumeProducing()
        pair.settle()
        self.assertEqual(server.received, b"abc")


    def test_unknownSessionAfterConfirm(self) -> None:
        """
        A server (or whoever can inject a refusal without TLS) that answers
        an opening's genuine confirmation with "unknown session" makes the
        client open afresh at most three times, and then fail the opening,
        as the protocol says.
        """
        clock = Clock()
        net = MemoryNetwork(clock)
        servers: list[HostileServer] = []
        refusal = _wire.encodeReject(_wire.REJECT_UNKNOWN_SESSION, "unknown session")

        def build() -> HostileServer:
            servers.append(HostileServer(ServerPlan(openedInstead=refusal)))
            if len(servers) >= 40:
                net.refuse = True
            return servers[-1]

        net.listen(Factory.forProtocol(build))
        endpoint = MigrateClientEndpoint(
            clock, net.clientEndpoint(), SessionOptions(), random.Random(0)
        )
        results: list[object] = []
        endpoint.connect(Factory.forProtocol(Recorder)).addBoth(results.append)
        net.flush()
        self.assertLessEqual(net.connects, 4)
        self.assertEqual(len(results), 1)
        self.assertIsInstance(results[0], Failure)


    def test_halfCloseOutlivesCloseTimeout(self) -> None:
        """
        After the client half-closes, the session carries the server's data
        for as long as the server sends, as a TCP connection does: beyond
        C{closeTimeout}, which bounds only how long a close waits for the
        peer.
        """
        pair = Pair(clientProtocol=HalfCloser, serverProtocol=HalfCloser)
        pair.open()
        pair.client.transport.write(b"request")
        pair.client.transport.loseWriteConnection()
        pair.settle()
        self.assertEqual(pair.server.readLost, 1)
        sent = []
        for second in range(int(pair.options.closeTimeout) + 10):
            chunk = b"%d;" % (second,)
            sent.append(chunk)
            pair.server.transport.write(chunk)
            pair.settle(1.0, 0.5)
        self.assertFalse(pair.clientSession.ended)
        self.assertEqual(pair.client.received, b"".join(sent))


    def test_finalAcknowledgementLost(self) -> None:
        """
        When the client's final acknowledgement (of the server's last data
        and FIN) is lost with its carrier, the server still learns that its
        stream arrived: its session ends cleanly, and its (half-closing)
        application is not told that its close failed.
        """
        pair = Pair(clientProtocol=HalfCloser, serverProtocol=HalfCloser)
        pair.open()
        pair.client.transport.loseWriteConnection()
        pair.settle()
        pair.server.transport.write(b"reply")
        pair.server.transport.loseWriteConnection()
        link = pair.net.links[-1]
        # The reply and the FIN reach the client, which acknowledges both;
        # its application has the whole stream at once, and the
        # acknowledgement is lost with the carrier.
        link.pump()
        self.assertEqual(pair.client.received, b"reply")
        self.assertEqual(pair.client.readLost, 1)
        self.assertFalse(pair.serverSession.ended)
        link.cut()
        pair.settle(pair.options.closeTimeout + 1, 0.5)
        self.assertTrue(pair.serverSession.ended)
        self.assertEqual(pair.server.lost, [])
        self.assertIsInstance(pair.serverSession.endReason, ConnectionDone)
        self.assertTrue(pair.clientSession.ended)
        self.assertIsInstance(pair.clientSession.endReason, ConnectionDone)
        # Both applications close their connections cleanly.
        for app in (pair.client, pair.server):
            app.transport.loseConnection()
        pair.net.flush()
        for app in (pair.client, pair.server):
            self.assertEqual(len(app.lost), 1)
            app.lost[0].trap(ConnectionDone)

    def test_finalAcknowledgementConfirmed(self) -> None:
        """
        The client's session, having sent its final acknowledgement, ends
        as soon as the server closes the carrier, which it does once it
        has read it: no timer is left behind.
        """
        pair = Pair()
        pair.open()
        pair.server.transport.write(b"bye")
        pair.server.transport.loseConnection()
        pair.net.flush()
        self.assertEqual(pair.client.received, b"bye")
        self.assertTrue(pair.serverSession.ended)
        self.assertTrue(pair.clientSession.ended)
        self.assertIsInstance(pair.clientSession.endReason, ConnectionDone)
        self.assertEqual(pair.clock.getDelayedCalls(), [])

    def test_finalAcknowledgementNeverConfirmed(self) -> None:
        """
        A client whose server never confirms the final acknowledgement
        (gone for good) ends cleanly after C{closeTimeout}: its
        application has had everything and hears a clean close.
        """
        pair = Pair()
        pair.open()
        pair.server.transport.write(b"bye")
        pair.server.transport.loseConnection()
        link = pair.net.links[-1]
        link.pump()
        self.assertEqual(pair.client.received, b"bye")
        self.assertFalse(pair.clientSession.ended)
        link.cut()
        pair.net.refuse = True
        pair.settle(pair.options.closeTimeout + 1, 0.5)
        self.assertTrue(pair.clientSession.ended)
        self.assertIsInstance(pair.clientSession.endReason, ConnectionDone)
        self.assertEqual(len(pair.client.lost), 1)
        pair.client.lost[0].trap(ConnectionDone)


    def test_configuredAdvertisementFits(self) -> None:
        """
        A server configured to advertise fifteen IPv6 addresses written out
        in full (which C{advertise=} accepts) keeps its sessions attached:
        its advertisement is one its clients accept.
        """
        pair = Pair()
        pair.factory.advertisePolicy = AdvertisePolicy.parse(
            ",".join(
                "[0000:0000:0000:0000:0000:ffff:192.168.100.%d]:65535" % (100 + i,)
                for i in range(15)
            )
        )
        results: list[object] = []
        pair.endpoint.connect(Factory.forProtocol(Recorder)).addBoth(results.append)
        try:
            pair.net.flush(limit=500)
        except AssertionError:
            self.fail(
                "the session never settles: %d connections so far" % (pair.net.connects,)
            )
        self.assertEqual(len(results), 1)
        self.assertIsInstance(results[0], Recorder)
        self.assertEqual(pair.net.connects, 1)


    def test_scopedAdvertisement(self) -> None:
        """
        A configured advertisement that C{advertise=} accepts (an IPv6
        address with a zone) never makes opening a session raise: either it
        is refused when configured, or sessions open with it.
        """
        for text in ["[fe80::1%" + "e" * 250 + "]:7001", "[fe80::1%\u00e9th0]:7001"]:
            try:
                policy = AdvertisePolicy.parse(text)
            except ValueError:
                continue
            pair = Pair()
            pair.factory.advertisePolicy = policy
            results: list[object] = []
            pair.endpoint.connect(Factory.forProtocol(Recorder)).addBoth(results.append)
            pair.net.flush()
            self.assertEqual(len(results), 1, text)
            self.assertEqual([s.made for s in pair.servers], [1], text)

