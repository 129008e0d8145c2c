"""
Tests for L{migrate._sansio.session.SessionMachine}, in the style of
aioquic's connection tests: two machines, a fake clock (a number), and the
frames passed between them by hand, cut and resumed at will.  No reactor,
no socket.
"""

from __future__ import annotations

from typing import Optional

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from migrate._sansio import channels
from migrate._sansio import session as machine
from migrate._sansio import wire
from migrate._sansio.channels import ChannelNumbers, ReceiveWindow, SendWindow, StreamWindow
from migrate._sansio.errors import ProtocolViolation
from migrate._sansio.session import SessionMachine

from .test_fuzz import fuzzSettings

CLOSE_TIMEOUT = 10.0
ACK_EVERY = 4096
ACK_DELAY = 0.05


class Side:
    """
    One side of a session: a L{SessionMachine} and the little a driver
    must do around it (what L{migrate._session.Session} does with a
    carrier and an application), recorded for the tests to look at.  Its
    application closes when the peer does.

    @ivar outbox: pieces written to the current carrier, not yet delivered.
    @ivar got: the peer's stream as our application received it.
    @ivar heard: what our application and carrier heard, in order.
    @ivar decision: L{machine.LINGER} or L{machine.CLOSE} once
        L{SessionMachine.finishStep} made one.
    """

    def __init__(self, isClient: bool, clock: list[float]) -> None:
        self.m = SessionMachine(isClient, 512, CLOSE_TIMEOUT, ACK_EVERY, ACK_DELAY)
        self.clock = clock
        self.attached = True
        self.outbox: list[bytes] = []
        self.parser = wire.FrameParser(self, 1 << 20)
        self.got = bytearray()
        self.heard: list[str] = []
        self.decision: Optional[int] = None
        self.ended: Optional[str] = None

    @property
    def now(self) -> float:
        return self.clock[0]

    # The application

    def write(self, data: bytes) -> bool:
        """
        Write C{data}; whether it was taken (not after our FIN).
        """
        if self.m.noWrites:
            return False
        pieces = self.m.engine.send(data)
        if self.attached:
            self.outbox.extend(pieces)
        return True

    def close(self) -> None:
        step = self.m.close()
        if step is None:
            return
        if step == machine.HALF_CLOSE:
            self.halfClose()
        elif step == machine.CLOSE_DONE:
            self.heard.append("closeDone")
        self.check()

    def halfClose(self, producing: bool = False) -> None:
        if self.m.halfClose(producing):
            self.fin()

    def fin(self) -> None:
        frame = self.m.finish(self.now)
        if self.attached:
            self.outbox.append(frame)
            if self.m.finWrittenOut():
                self.heard.append("closeDone")
        self.check()

    # What the driver does

    def sendAck(self) -> None:
        if self.attached and self.m.engine.unacknowledged:
            self.outbox.append(self.m.engine.ackFrame())

    def check(self) -> None:
        step = self.m.finishStep(False, self.attached, self.now)
        if step in (machine.LINGER, machine.CLOSE):
            self.decision = step
            self.sendAck()
            if step == machine.CLOSE:
                self.ended = "closed"
                self.m.markEnded()

    def fire(self) -> list[str]:
        """
        Run the deadlines due now.
        """
        due = self.m.dueDeadlines(self.now)
        for kind in due:
            if kind == machine.ACK:
                self.sendAck()
            elif kind in (machine.LINGER_TIMEOUT, machine.CLOSE_TIMEOUT, machine.ABORT_TIMEOUT):
                self.ended = kind
                self.m.markEnded()
        return due

    # The frames

    def dataFrameStarted(self, ack: int, length: int) -> None:
        if self.m.engine.dataStarted(ack, length) and self.m.engine.finSent:
            self.check()

    def payloadReceived(self, payload: bytes) -> None:
        self.got += payload
        if self.m.received(len(payload), self.now) == machine.ACK_NOW:
            self.sendAck()

    def controlFrameReceived(self, frameType: int, body: bytes) -> None:
        if frameType == wire.ACK:
            if self.m.engine.acknowledge(wire.decodePosition(body)) and self.m.engine.finSent:
                self.check()
        elif frameType == wire.FIN:
            if self.m.peerFinished(wire.decodePosition(body), self.now):
                self.heard.append("readClosed")
                self.close()
            self.sendAck()
            self.check()
        else:
            raise AssertionError("unexpected frame 0x%02x" % (frameType,))

    def channelFrameStarted(self, channel: int, length: int) -> None:
        raise AssertionError("no channels here")

    def channelPayloadReceived(self, payload: bytes) -> None:
        raise AssertionError("no channels here")


class Pair:
    """
    A client and a server side, a shared clock, and a carrier between them.
    """

    def __init__(self) -> None:
        self.clock = [100.0]
        self.client = Side(True, self.clock)
        self.server = Side(False, self.clock)

    def advance(self, seconds: float) -> None:
        self.clock[0] += seconds
        self.client.fire()
        self.server.fire()

    def deliver(self, sender: Side, count: Optional[int] = None) -> None:
        """
        Deliver C{count} pieces (default all) of what C{sender} wrote.
        """
        receiver = self.server if sender is self.client else self.client
        if not (sender.attached and receiver.attached):
            return
        n = len(sender.outbox) if count is None else min(count, len(sender.outbox))
        pieces, sender.outbox = sender.outbox[:n], sender.outbox[n:]
        receiver.parser.feed(b"".join(pieces))
        if self.server.decision == machine.CLOSE and not self.server.outbox:
            # The server closes the carrier once it has written everything:
            # the client sees a clean close.
            self.serverClosedCarrier()

    def serverClosedCarrier(self) -> None:
        client = self.client
        if client.attached and client.m.cleanClose() and client.ended is None:
            client.ended = "confirmed"
            client.m.markEnded()

    def settle(self) -> None:
        """
        Deliver both ways until nothing is left to deliver.
        """
        for _ in range(100):
            if not (self.client.outbox or self.server.outbox):
                return
            self.deliver(self.client)
            self.deliver(self.server)
        raise AssertionError("the two sides never settled")

    def cut(self) -> None:
        """
        The carrier dies: what was in flight is lost, both sides detach.
        """
        for side in (self.client, self.server):
            side.attached = False
            side.outbox = []

    def resume(self) -> None:
        """
        A new carrier: each side learns how far the other received (the
        resume handshake) and retransmits from there.
        """
        client, server = self.client, self.server
        client.m.engine.checkResume(server.m.engine.received)
        server.m.engine.checkResume(client.m.engine.received)
        for side, peer in ((client, server), (server, client)):
            side.attached = True
            side.parser = wire.FrameParser(side, 1 << 20)
            frames, _ = side.m.engine.resumeFrames(peer.m.engine.received)
            if side.decision == machine.LINGER:
                # A lingering client only waits for the server's close.
                continue
            side.outbox = frames
            if side.m.engine.finSent and not side.m.finWritten:
                if side.m.finWrittenOut():
                    side.heard.append("closeDone")
            side.check()
        if server.decision == machine.CLOSE and not server.outbox:
            self.serverClosedCarrier()


class CloseTests(SynchronousTestCase):
    """
    How a session's stream ends.
    """

    def test_fullClose(self) -> None:
        """
        The client writes and closes; the server's application hears the
        data and the end, and closes too; the client lingers until the
        server, having read its last acknowledgement, closes the carrier;
        then both are over, every byte delivered.
        """
        pair = Pair()
        client, server = pair.client, pair.server
        client.write(b"hello")
        client.close()
        self.assertEqual(client.heard, ["closeDone"])
        self.assertEqual(client.m.closeAt, 100.0 + CLOSE_TIMEOUT)
        pair.deliver(client)
        self.assertEqual(bytes(server.got), b"hello")
        self.assertEqual(server.heard, ["readClosed", "closeDone"])
        self.assertIsNone(server.decision)
        pair.deliver(server)
        self.assertEqual(client.decision, machine.LINGER)
        self.assertTrue(client.m.lingering)
        self.assertEqual(client.m.closeKind, machine.LINGER_TIMEOUT)
        pair.deliver(client)
        self.assertEqual(server.decision, machine.CLOSE)
        self.assertEqual(server.ended, "closed")
        self.assertEqual(client.ended, "confirmed")
        self.assertIsNone(client.m.nextDeadline())

    def test_lingerTimesOut(self) -> None:
        """
        A lingering client whose server never confirms gives up after
        C{closeTimeout}, not before.
        """
        pair = Pair()
        client, server = pair.client, pair.server
        client.close()
        pair.deliver(client)
        pair.deliver(server)
        self.assertTrue(client.m.lingering)
        pair.cut()
        pair.advance(CLOSE_TIMEOUT - 0.001)
        self.assertIsNone(client.ended)
        pair.advance(0.001)
        self.assertEqual(client.ended, machine.LINGER_TIMEOUT)

    def test_closeTimesOut(self) -> None:
        """
        A full close whose peer never finishes ends after C{closeTimeout}.
        """
        pair = Pair()
        pair.client.close()
        pair.cut()
        self.assertEqual(pair.client.m.nextDeadline(), 100.0 + CLOSE_TIMEOUT)
        pair.advance(CLOSE_TIMEOUT)
        self.assertEqual(pair.client.ended, machine.CLOSE_TIMEOUT)

    def test_halfCloseHasNoDeadline(self) -> None:
        """
        After a half close the other direction may carry data for as long
        as it likes; once the peer's FIN arrives too, the close has its
        deadline.
        """
        pair = Pair()
        client, server = pair.client, pair.server
        client.halfClose()
        self.assertEqual(client.heard, [])
        self.assertIsNone(client.m.nextDeadline())
        self.assertFalse(client.write(b"late"))
        server.m.halfClose(False)
        server.outbox.append(server.m.finish(pair.clock[0]))
        pair.advance(1000.0)
        self.assertIsNone(client.ended)
        pair.deliver(server)
        # (Its application closes when the peer does.)
        self.assertEqual(client.heard, ["readClosed", "closeDone"])
        self.assertEqual(client.m.closeAt, pair.clock[0] + CLOSE_TIMEOUT)

    def test_producerHoldsTheFin(self) -> None:
        """
        While a producer is registered, our FIN waits for it to be
        unregistered; not after the application's connection is over.
        """
        pair = Pair()
        client = pair.client
        client.halfClose(producing=True)
        self.assertTrue(client.m.finPending)
        self.assertFalse(client.m.engine.finSent)
        self.assertTrue(client.m.producerGone())
        client.fin()
        self.assertTrue(client.m.engine.finSent)
        self.assertFalse(client.m.finPending)
        other = Side(False, pair.clock)
        other.halfClose(producing=True)
        other.m.appGone()
        self.assertFalse(other.m.producerGone())

    def test_secondCalls(self) -> None:
        """
        A second close, a close after the end, a second half close and a
        second C{appGone} decide nothing.
        """
        pair = Pair()
        client = pair.client
        client.close()
        self.assertIsNone(client.m.close())
        self.assertFalse(client.m.halfClose(False))
        self.assertTrue(client.m.appGone())
        self.assertFalse(client.m.appGone())
        other = Side(False, pair.clock)
        other.m.appGone()
        self.assertIsNone(other.m.close())
        self.assertFalse(other.m.halfClose(False))

    def test_closeAfterFinWritten(self) -> None:
        """
        A full close after a half close whose FIN is out is done at once.
        """
        pair = Pair()
        pair.client.halfClose()
        self.assertEqual(pair.client.m.close(), machine.CLOSE_DONE)

    def test_dataAfterClose(self) -> None:
        """
        Data arriving after our full close, once our FIN is out, aborts
        (as TCP resets); before that it is only noted.
        """
        m = SessionMachine(False, 512, CLOSE_TIMEOUT, ACK_EVERY, ACK_DELAY)
        m.close()
        self.assertFalse(m.dataAfterClose())
        self.assertTrue(m.unreadAfterClose)
        m.finish(0.0)
        m.finWrittenOut()
        self.assertTrue(m.dataAfterClose())

    def test_channelsKeepTheSession(self) -> None:
        """
        A stream complete while other channels live decides nothing but
        clears its close deadline; once they are gone, the session closes
        (a server) or lingers (an attached client).
        """
        for isClient, last in ((False, machine.CLOSE), (True, machine.LINGER)):
            m = SessionMachine(isClient, 512, CLOSE_TIMEOUT, ACK_EVERY, ACK_DELAY)
            m.close()
            m.halfClose(False)
            m.finish(0.0)
            m.finWrittenOut()
            m.peerFinished(1, 1.0)
            self.assertTrue(m.engine.finished)
            self.assertIsNotNone(m.closeAt)
            self.assertEqual(m.finishStep(True, True, 2.0), machine.WAIT_CHANNELS)
            self.assertIsNone(m.closeAt)
            self.assertEqual(m.finishStep(False, True, 3.0), last)
            if last == machine.CLOSE:
                # (The driver ends the session.)
                self.assertTrue(m.markEnded())
            self.assertEqual(m.finishStep(False, True, 3.0), machine.NOTHING)


class AbortTests(SynchronousTestCase):
    def test_clientWaits(self) -> None:
        """
        A client's abort waits to reach the server, up to C{closeTimeout};
        a close deadline already running stands.
        """
        m = SessionMachine(True, 512, CLOSE_TIMEOUT, ACK_EVERY, ACK_DELAY)
        self.assertTrue(m.abortPeer("aborted", 5.0))
        self.assertEqual(m.aborting, "aborted")
        self.assertEqual(m.endNotice, "aborted")
        self.assertEqual((m.closeAt, m.closeKind), (5.0 + CLOSE_TIMEOUT, machine.ABORT_TIMEOUT))
        self.assertFalse(m.finishReady())
        self.assertTrue(m.cleanClose())
        self.assertTrue(m.closingSession)
        closing = SessionMachine(True, 512, CLOSE_TIMEOUT, ACK_EVERY, ACK_DELAY)
        closing.startCloseDeadline(1.0)
        closing.abortPeer("aborted", 5.0)
        self.assertEqual(
            (closing.closeAt, closing.closeKind), (1.0 + CLOSE_TIMEOUT, machine.CLOSE_TIMEOUT)
        )

    def test_serverEndsAtOnce(self) -> None:
        """
        A server's abort ends the session at once: it tells a peer that
        resumes later.
        """
        m = SessionMachine(False, 512, CLOSE_TIMEOUT, ACK_EVERY, ACK_DELAY)
        self.assertFalse(m.abortPeer("application error", 5.0))
        self.assertIsNone(m.aborting)
        self.assertEqual(m.endNotice, "application error")
        self.assertIsNone(m.nextDeadline())


class DeadlineTests(SynchronousTestCase):
    def test_delayedAck(self) -> None:
        """
        Below C{ackEvery} bytes, the acknowledgement waits C{ackDelay}; one
        deadline covers every byte until it falls.
        """
        pair = Pair()
        client, server = pair.client, pair.server
        client.write(b"x" * 100)
        pair.deliver(client)
        self.assertEqual(server.m.nextDeadline(), 100.0 + ACK_DELAY)
        self.assertEqual(server.outbox, [])
        pair.clock[0] += ACK_DELAY / 2
        client.write(b"y" * 100)
        pair.deliver(client)
        self.assertEqual(server.m.nextDeadline(), 100.0 + ACK_DELAY)
        pair.clock[0] = 100.0 + ACK_DELAY
        self.assertEqual(server.fire(), [machine.ACK])
        pair.deliver(server)
        self.assertEqual(client.m.engine.acked, 200)
        self.assertTrue(client.m.engine.allAcked)

    def test_ackEvery(self) -> None:
        """
        C{ackEvery} unacknowledged bytes are acknowledged at once.
        """
        pair = Pair()
        pair.client.write(b"x" * ACK_EVERY)
        pair.deliver(pair.client)
        pair.deliver(pair.server)
        self.assertEqual(pair.client.m.engine.acked, ACK_EVERY)

    def test_undelayed(self) -> None:
        """
        A channel's machine leaves the delay to its session (one timer for
        all channels): no deadline of its own.
        """
        m = SessionMachine(False, 512, CLOSE_TIMEOUT, ACK_EVERY, ACK_DELAY)
        self.assertEqual(m.received(10, 0.0, delayed=False), machine.ACK_LATER)
        self.assertIsNone(m.nextDeadline())

    def test_detached(self) -> None:
        """
        A detached session hibernates and expires at its deadlines, in
        order; a carrier back clears both; an end clears everything.
        """
        m = SessionMachine(False, 512, CLOSE_TIMEOUT, ACK_EVERY, ACK_DELAY)
        m.detached(10.0, 60.0, 30.0)
        self.assertEqual(m.nextDeadline(), 40.0)
        self.assertEqual(m.dueDeadlines(39.9), [])
        self.assertEqual(m.dueDeadlines(100.0), [machine.HIBERNATE, machine.EXPIRE])
        self.assertIsNone(m.nextDeadline())
        m.detached(10.0, 60.0, None)
        self.assertEqual(m.nextDeadline(), 70.0)
        m.reattached()
        self.assertIsNone(m.nextDeadline())
        m.detached(10.0, 60.0, 30.0)
        m.startCloseDeadline(10.0)
        m.received(1, 10.0)
        self.assertTrue(m.markEnded())
        self.assertFalse(m.markEnded())
        self.assertIsNone(m.nextDeadline())
        self.assertEqual(m.dueDeadlines(1e9), [])

    def test_earliestFirst(self) -> None:
        """
        Deadlines due together come earliest first.
        """
        m = SessionMachine(False, 512, CLOSE_TIMEOUT, ACK_EVERY, ACK_DELAY)
        m.detached(0.0, 5.0, 20.0)
        m.startCloseDeadline(-9.5)
        m.received(1, 1.0)
        self.assertEqual(
            m.dueDeadlines(30.0),
            [machine.CLOSE_TIMEOUT, machine.ACK, machine.EXPIRE, machine.HIBERNATE],
        )


class ProducerTests(SynchronousTestCase):
    """
    Why the application's producer is paused, and the buffer limits.
    """

    def machine(self) -> SessionMachine:
        m = SessionMachine(False, 512, CLOSE_TIMEOUT, ACK_EVERY, ACK_DELAY)
        m.setLimits(1000, 5000)
        return m

    def test_anyReasonPauses(self) -> None:
        """
        The producer is paused by the first reason and resumed only when
        none remains; a new machine starts detached.
        """
        m = self.machine()
        self.assertEqual(m.pauseReasons, {machine.DETACHED})
        self.assertTrue(m.producerRegistered())
        self.assertFalse(m.pauseFor(machine.BUFFER, True))
        self.assertFalse(m.resumeFor(machine.DETACHED, True))
        self.assertTrue(m.resumeFor(machine.BUFFER, True))
        self.assertFalse(m.appPaused)
        self.assertTrue(m.pauseFor(machine.CARRIER, True))
        self.assertFalse(m.pauseFor(machine.CARRIER, True))
        m.carrierFreed()
        self.assertEqual(m.pauseReasons, frozenset())
        self.assertTrue(m.resumeFor(machine.BUDGET, True))

    def test_noProducer(self) -> None:
        """
        Without a producer the reasons are still kept, for the one
        registered later.
        """
        m = self.machine()
        self.assertFalse(m.pauseFor(machine.BUDGET, False))
        self.assertFalse(m.resumeFor(machine.DETACHED, False))
        self.assertEqual(m.pauseReasons, {machine.BUDGET})
        self.assertTrue(m.producerRegistered())

    def test_sharedSets(self) -> None:
        """
        Machines with the same reasons share one set object.
        """
        a, b = self.machine(), self.machine()
        a.pauseFor(machine.BUFFER, False)
        b.pauseFor(machine.BUFFER, False)
        self.assertIs(a.pauseReasons, b.pauseReasons)

    def test_limits(self) -> None:
        """
        Above the high-water mark the buffer is full; it drains below half
        of it; a write may not take it past the hard cap.
        """
        m = self.machine()
        m.engine.send(b"x" * 1001)
        self.assertTrue(m.bufferFull())
        m.pauseFor(machine.BUFFER, True)
        self.assertFalse(m.bufferDrained())
        m.engine.acknowledge(501)
        self.assertTrue(m.bufferDrained())
        self.assertFalse(m.overCap(4500))
        self.assertTrue(m.overCap(4501))

    def test_newBufferSize(self) -> None:
        """
        A new buffer size moves both marks and raises the hard cap to it;
        it says whether the buffer reason is over; it must be positive.
        """
        m = self.machine()
        m.engine.send(b"x" * 700)
        m.pauseFor(machine.BUFFER, True)
        self.assertFalse(m.newBufferSize(1200))
        self.assertTrue(m.newBufferSize(8000))
        self.assertEqual((m.highWater, m.lowWater, m.hardCap), (8000, 4000, 8000))
        self.assertRaises(ValueError, m.newBufferSize, 0)


_steps = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.booleans(), st.integers(1, 3000)),
        st.tuples(st.just("deliver"), st.booleans(), st.integers(0, 6)),
        st.tuples(st.just("cut")),
        st.tuples(st.just("time"), st.floats(0.0, 0.2)),
        st.tuples(st.just("close"), st.booleans()),
    ),
    max_size=60,
)


class PropertyTests(SynchronousTestCase):
    @fuzzSettings(300)
    @given(_steps)
    def test_cutsNeverLoseBytes(self, steps: list[tuple]) -> None:  # type: ignore[type-arg]
        """
        Whatever the writes, partial deliveries, carrier cuts, delays and
        closes on either side: once resumed and settled, each application
        got exactly what the other wrote before its close, both ends
        closed, the server ended and the client confirmed.
        """
        pair = Pair()
        sent = {True: bytearray(), False: bytearray()}
        count = 0
        for step in steps:
            if step[0] == "write":
                side = pair.client if step[1] else pair.server
                data = bytes([count % 251]) * step[2]
                count += 1
                if side.write(data):
                    sent[step[1]] += data
            elif step[0] == "deliver":
                pair.deliver(pair.client if step[1] else pair.server, step[2])
            elif step[0] == "cut":
                pair.cut()
                pair.resume()
            elif step[0] == "time":
                pair.advance(step[1])
            else:
                (pair.client if step[1] else pair.server).close()
        pair.client.close()
        pair.server.close()
        for _ in range(3):
            pair.settle()
            pair.cut()
            pair.resume()
        pair.settle()
        self.assertEqual(bytes(pair.server.got), bytes(sent[True]))
        self.assertEqual(bytes(pair.client.got), bytes(sent[False]))
        self.assertEqual(pair.server.ended, "closed")
        self.assertEqual(pair.client.ended, "confirmed")
        for side in (pair.client, pair.server):
            self.assertIn("closeDone", side.heard)
            self.assertTrue(side.m.engine.finished)


class ChannelNumberTests(SynchronousTestCase):
    """
    L{ChannelNumbers}: whose numbers, never twice, the closed-channel
    memory.
    """

    def test_parity(self) -> None:
        """
        A client opens odd channels, a server even ones; neither may open
        the other's, nor channel 0.
        """
        client, server = ChannelNumbers(True, 10), ChannelNumbers(False, 10)
        self.assertEqual([client.allocate(0)[0] for _ in range(3)], [1, 3, 5])
        self.assertEqual([server.allocate(0)[0] for _ in range(2)], [2, 4])
        self.assertEqual(server.peerOpening(1, False), channels.NEW)
        for bad in (0, 2):
            self.assertRaises(ProtocolViolation, server.peerOpening, bad, False)
        self.assertRaises(ProtocolViolation, client.peerOpening, 1, False)

    def test_neverTwice(self) -> None:
        """
        A number the peer used before is never new again, even once
        forgotten: it is answered from the memory of closed channels.
        """
        server = ChannelNumbers(False, 10)
        self.assertEqual(server.peerOpening(5, False), channels.NEW)
        self.assertEqual(server.peerOpening(3, False), channels.AGAIN)
        self.assertEqual(server.peerOpening(5, True), channels.AGAIN)
        server.remember(5, False, "aborted")
        self.assertEqual(
            wire.decodeChannelClose(server.closedAnswer(5)[wire._HEAD_SIZE :]),
            (5, False, "aborted"),
        )
        self.assertEqual(
            wire.decodeChannelClose(server.closedAnswer(3)[wire._HEAD_SIZE :]),
            (3, False, None),
        )

    def test_memoryBounded(self) -> None:
        """
        Only the last L{channels.CLOSED_MEMORY} closes are remembered; a
        channel remembered twice counts once, with its last close.
        """
        numbers = ChannelNumbers(True, 10)
        for channel in range(2, 2 + 2 * channels.CLOSED_MEMORY + 2, 2):
            numbers.remember(channel, True, None)
        numbers.remember(200, True, None)
        numbers.remember(200, False, "reset")
        self.assertEqual(len(numbers._closed), channels.CLOSED_MEMORY)
        self.assertEqual(
            wire.decodeChannelClose(numbers.closedAnswer(2)[wire._HEAD_SIZE :]), (2, False, None)
        )
        self.assertEqual(
            wire.decodeChannelClose(numbers.closedAnswer(200)[wire._HEAD_SIZE :]),
            (200, False, "reset"),
        )

    def test_limits(self) -> None:
        """
        No number past the channel limit or the largest number.
        """
        numbers = ChannelNumbers(True, 2)
        self.assertEqual(numbers.allocate(2)[0], None)
        self.assertIsNotNone(numbers.admits(2))
        self.assertIsNone(numbers.admits(1))
        numbers.next = wire.MAX_CHANNEL_ID + 2
        self.assertEqual(numbers.allocate(0), (None, "channel numbers are used up"))


class WindowTests(SynchronousTestCase):
    def test_sendWithin(self) -> None:
        """
        What fits in the window goes at once; the rest waits, in order,
        split where the window ends, until the peer grants more.
        """
        w = SendWindow()
        w.grant(5)
        self.assertEqual(w.offer([b"abc"], 3), [b"abc"])
        self.assertEqual(w.offer([b"def", b"gh"], 5), [b"de"])
        self.assertTrue(w.blocked)
        self.assertEqual(w.queued, 3)
        self.assertEqual(w.offer([b"i"], 1), [])
        self.assertEqual(w.grant(4), [])
        self.assertEqual(w.grant(9), [b"f", b"gh", b"i"])
        self.assertFalse(w.blocked)
        self.assertEqual((w.sent, w.queued), (9, 0))
        w.offer([b"xyz"], 3)
        w.drop()
        self.assertEqual((w.blocked, w.queued, w.grant(100)), (False, 0, []))

    def test_receiveHeld(self) -> None:
        """
        The peer may not send past the window; more is granted once half
        of it is read.
        """
        r = ReceiveWindow(100)
        r.frameStarted(7, 60)
        self.assertIsNone(r.consumed(60))
        self.assertIsNone(r.consumed(20))
        self.assertEqual(r.consumed(0), 160)
        r.frameStarted(7, 100)
        self.assertRaises(ProtocolViolation, r.frameStarted, 7, 1)


class StreamWindowTests(SynchronousTestCase):
    """
    L{StreamWindow}: channel 0's window, in stream positions.
    """

    def test_writer(self) -> None:
        """
        Nothing is held back before the first grant, which finds everything
        sent so far written; then data fits only if nothing waits before
        it and it ends within the limit; a smaller grant changes nothing; a
        new carrier starts where its resume ended.
        """
        w = StreamWindow()
        self.assertFalse(w.limit)
        self.assertTrue(w.grant(100, 30, False))
        self.assertEqual((w.limit, w.written, w.finOut), (100, 30, False))
        self.assertTrue(w.fits(30, 100))
        self.assertFalse(w.fits(30, 101))
        self.assertFalse(w.fits(20, 40))
        self.assertFalse(w.grant(90, 50, True))
        self.assertTrue(w.grant(150, 50, True))
        self.assertEqual(w.written, 30)
        w.newCarrier(40, 150, True)
        self.assertEqual((w.written, w.finOut), (150, True))
        w.newCarrier(160, 150, False)
        self.assertEqual(w.written, 160)

    def test_reader(self) -> None:
        """
        The reader grants one window past what it read, and more once half
        of it is read; the peer overruns only past the grant.
        """
        w = StreamWindow()
        self.assertIsNone(w.nextGrant(10, 100))
        self.assertFalse(w.overrun(10**9))
        self.assertEqual(w.firstGrant(10, 100), 110)
        self.assertFalse(w.overrun(110))
        self.assertTrue(w.overrun(111))
        self.assertIsNone(w.nextGrant(59, 100))
        self.assertEqual(w.nextGrant(60, 100), 160)
        self.assertEqual(w.firstGrant(0, 100), 160)

    def test_framesBetween(self) -> None:
        """
        The engine frames any stretch of what it buffered, with the FIN
        only when asked for and reached.
        """
        m = SessionMachine(True, 4, CLOSE_TIMEOUT, ACK_EVERY, ACK_DELAY)
        m.engine.send(b"abcdef")
        m.engine.send(b"ghij")
        m.engine.finish()
        pieces, carried = m.engine.framesBetween(3, 8, True)
        self.assertEqual((pieces[1::2], carried), ([b"def", b"gh"], 5))
        pieces, _ = m.engine.framesBetween(8, 10, False)
        self.assertEqual(pieces[1::2], [b"ij"])
        pieces, _ = m.engine.framesBetween(10, 10, True)
        self.assertEqual(len(pieces), 1)
        m.engine.acknowledge(5)
        pieces, _ = m.engine.framesBetween(0, 7, False)
        self.assertEqual(pieces[1::2], [b"f", b"g"])


class _Channel:
    """
    One channel on one side of the multi-channel harness: its machine,
    and its windows and parser on the current carrier.
    """

    def __init__(self, side: "MuxSide", number: int) -> None:
        self.side = side
        self.number = number
        self.m = SessionMachine(side.isClient, 256, CLOSE_TIMEOUT, ACK_EVERY, ACK_DELAY)
        self.got = bytearray()
        self.paused = False
        self.newCarrier()
        # (As if opened: the opening and its answer each grant a window.)
        self.attached = True
        self.send.grant(WINDOW)

    def newCarrier(self) -> None:
        # Detached until the peer's resume of this channel arrives.
        self.attached = False
        self.send = SendWindow()
        self.recv = ReceiveWindow(WINDOW)
        self.parser = wire.FrameParser(self, 1 << 16)
        if self.paused:
            self.parser.pause()

    def transmit(self, pieces: list[bytes]) -> None:
        if not (self.side.attached and self.attached):
            # Detached: what is written waits in the machine's buffer, and
            # goes with the retransmission after the resume.
            return
        for piece in self.send.offer(pieces, sum(len(p) for p in pieces)):
            self.side.outbox.append(wire.channelHead(self.number, len(piece)) + piece)

    def grant(self) -> None:
        limit = self.recv.consumed(self.parser.pendingBytes)
        if limit is not None and self.side.attached:
            self.side.outbox.append(wire.encodeChannelWindow(self.number, limit))

    # Frames of the channel

    def dataFrameStarted(self, ack: int, length: int) -> None:
        self.m.engine.dataStarted(ack, length)

    def payloadReceived(self, payload: bytes) -> None:
        self.got += payload
        if self.m.received(len(payload), self.side.clock[0], delayed=False) == machine.ACK_NOW:
            self.transmit([self.m.engine.ackFrame()])

    def controlFrameReceived(self, frameType: int, body: bytes) -> None:
        assert frameType == wire.ACK, frameType
        self.m.engine.acknowledge(wire.decodePosition(body))

    def channelFrameStarted(self, channel: int, length: int) -> None:
        raise AssertionError("a channel frame inside a channel")

    def channelPayloadReceived(self, payload: bytes) -> None:
        raise AssertionError("a channel frame inside a channel")


WINDOW = 4096


class MuxSide:
    """
    One side of a session with many channels over one carrier: channel
    frames in C{CHANNEL} frames, each channel within its window.
    """

    def __init__(self, isClient: bool, clock: list[float], count: int) -> None:
        self.isClient = isClient
        self.clock = clock
        self.attached = True
        self.outbox: list[bytes] = []
        self.channels = {n: _Channel(self, n) for n in range(1, count + 1)}
        self.parser = wire.FrameParser(self, 1 << 16)
        self._current: Optional[_Channel] = None

    def resumeFrames(self) -> list[bytes]:
        return [
            wire.encodeChannelResume(n, c.m.engine.received, WINDOW)
            for n, c in self.channels.items()
        ]

    def acknowledge(self) -> None:
        """
        The delayed acknowledgements of every channel (one timer for all).
        """
        for c in self.channels.values():
            if c.m.engine.unacknowledged:
                c.transmit([c.m.engine.ackFrame()])

    # Frames of the carrier

    def channelFrameStarted(self, channel: int, length: int) -> None:
        c = self._current = self.channels[channel]
        c.recv.frameStarted(channel, length)

    def channelPayloadReceived(self, payload: bytes) -> None:
        c = self._current
        assert c is not None
        c.parser.feed(payload)
        c.grant()

    def controlFrameReceived(self, frameType: int, body: bytes) -> None:
        if frameType == wire.CHANNEL_WINDOW:
            channel, limit = wire.decodeChannelWindow(body)
            c = self.channels[channel]
            for piece in c.send.grant(limit):
                self.outbox.append(wire.channelHead(channel, len(piece)) + piece)
        elif frameType == wire.CHANNEL_RESUME:
            channel, received, window = wire.decodeChannelResume(body)
            c = self.channels[channel]
            c.m.engine.checkResume(received)
            frames, _ = c.m.engine.resumeFrames(received)
            c.attached = True
            c.send.grant(window)
            c.transmit(frames)
        else:
            raise AssertionError("unexpected frame 0x%02x" % (frameType,))

    def dataFrameStarted(self, ack: int, length: int) -> None:
        raise AssertionError("channel 0 is not used here")

    def payloadReceived(self, payload: bytes) -> None:
        raise AssertionError("channel 0 is not used here")


class Mux:
    """
    Two L{MuxSide}s and a carrier between them that can be cut.
    """

    def __init__(self, count: int) -> None:
        self.clock = [0.0]
        self.client = MuxSide(True, self.clock, count)
        self.server = MuxSide(False, self.clock, count)

    def deliver(self, sender: MuxSide, count: Optional[int] = None) -> None:
        receiver = self.server if sender is self.client else self.client
        n = len(sender.outbox) if count is None else min(count, len(sender.outbox))
        pieces, sender.outbox = sender.outbox[:n], sender.outbox[n:]
        if pieces:
            receiver.parser.feed(b"".join(pieces))

    def settle(self) -> None:
        for _ in range(1000):
            if not (self.client.outbox or self.server.outbox):
                self.client.acknowledge()
                self.server.acknowledge()
                if not (self.client.outbox or self.server.outbox):
                    return
            self.deliver(self.client)
            self.deliver(self.server)
        raise AssertionError("never settled")

    def cut(self) -> None:
        for side in (self.client, self.server):
            side.outbox = []
            side.attached = False
        for side in (self.client, self.server):
            side.attached = True
            side.parser = wire.FrameParser(side, 1 << 16)
            for c in side.channels.values():
                c.newCarrier()
        # Each side tells the other how far it received every channel.
        self.client.outbox.extend(self.client.resumeFrames())
        self.server.outbox.extend(self.server.resumeFrames())


_muxSteps = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.booleans(), st.integers(1, 8), st.integers(1, 6000)),
        st.tuples(st.just("deliver"), st.booleans(), st.integers(0, 20)),
        st.tuples(st.just("pause"), st.booleans(), st.integers(1, 8)),
        st.tuples(st.just("cut")),
    ),
    max_size=50,
)


class ChannelPropertyTests(SynchronousTestCase):
    @fuzzSettings(150)
    @given(_muxSteps)
    def test_manyChannelsUnderCuts(self, steps: list[tuple]) -> None:  # type: ignore[type-arg]
        """
        Eight channels each way over one carrier, with writes, partial
        deliveries, readers pausing and resuming, and cuts (each followed
        by a resume of every channel): no side ever sends past a window;
        whenever the carrier is settled, every channel whose reader is not
        paused has everything written to it (a paused reader stops only
        its own channel); and once all resume, every channel is
        byte-exact both ways.
        """
        mux = Mux(8)
        written = {(s, n): bytearray() for s in (True, False) for n in range(1, 9)}
        count = 0
        for step in steps:
            if step[0] == "write":
                side = mux.client if step[1] else mux.server
                data = bytes([count % 251]) * step[3]
                count += 1
                c = side.channels[step[2]]
                c.transmit(c.m.engine.send(data))
                written[(step[1], step[2])] += data
            elif step[0] == "deliver":
                mux.deliver(mux.client if step[1] else mux.server, step[2])
            elif step[0] == "pause":
                reader = (mux.server if step[1] else mux.client).channels[step[2]]
                reader.paused = not reader.paused
                if reader.paused:
                    reader.parser.pause()
                else:
                    reader.parser.resume()
                    reader.grant()
            else:
                mux.cut()
        mux.settle()
        for (fromClient, n), data in written.items():
            reader = (mux.server if fromClient else mux.client).channels[n]
            if not reader.paused:
                self.assertEqual(bytes(reader.got), bytes(data), (fromClient, n))
        for side in (mux.client, mux.server):
            for c in side.channels.values():
                if c.paused:
                    c.paused = False
                    c.parser.resume()
                    c.grant()
        mux.settle()
        mux.cut()
        mux.settle()
        for (fromClient, n), data in written.items():
            reader = (mux.server if fromClient else mux.client).channels[n]
            self.assertEqual(bytes(reader.got), bytes(data), (fromClient, n))
            writer = (mux.client if fromClient else mux.server).channels[n]
            self.assertTrue(writer.m.engine.allAcked)
