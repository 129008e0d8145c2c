"""
Deterministic tests of whole sessions over an in-memory network that can be
cut at any point: opening, resuming, closing, expiry, backpressure and the
producer/consumer rules of the application's transport.
"""

from __future__ import annotations

import random
from typing import Any

from twisted.internet.error import (
    ConnectionAborted,
    ConnectionDone,
    ConnectionRefusedError,
    NoProtocol,
)
from twisted.internet.interfaces import IHalfCloseableProtocol, IPullProducer, IPushProducer
from twisted.internet.protocol import Factory
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from migrate import (
    BufferFull,
    BufferOverflow,
    HandshakeError,
    PeerAborted,
    SessionExpired,
    SessionOptions,
)

from .helpers import Echo, Pair, Recorder


@implementer(IPushProducer)
class PushProducer:
    def __init__(self) -> None:
        self.events: list[str] = []

    @property
    def paused(self) -> bool:
        state = False
        for e in self.events:
            if e == "pause":
                state = True
            elif e == "resume":
                state = False
        return state

    def pauseProducing(self) -> None:
        self.events.append("pause")

    def resumeProducing(self) -> None:
        self.events.append("resume")

    def stopProducing(self) -> None:
        self.events.append("stop")


@implementer(IHalfCloseableProtocol)
class HalfCloser(Recorder):
    readLost = 0
    writeLost = 0

    def readConnectionLost(self) -> None:
        self.readLost += 1

    def writeConnectionLost(self) -> None:
        self.writeLost += 1


class OpenTests(SynchronousTestCase):
    """
    Opening a session.
    """

    def test_open(self) -> None:
        """
        Both application protocols hear C{connectionMade} once, share the
        session id, and exchange bytes both ways.
        """
        pair = Pair().open()
        self.assertEqual((pair.client.made, pair.server.made), (1, 1))
        self.assertEqual(pair.client.transport.sessionID, pair.server.transport.sessionID)
        self.assertEqual(len(pair.client.transport.sessionID), 32)
        pair.client.transport.write(b"ping")
        pair.server.transport.write(b"pong")
        pair.settle()
        self.assertEqual(pair.server.received, b"ping")
        self.assertEqual(pair.client.received, b"pong")
        self.assertEqual(pair.client.transport.state, "attached")
        self.assertEqual(pair.client.transport.generation, 0)

    def test_carriersUseNoDelay(self) -> None:
        """
        Both ends of a carrier have Nagle's algorithm turned off.
        """
        pair = Pair().open()
        link = pair.net.links[0]
        self.assertTrue(link.client.noDelay)
        self.assertTrue(link.server.noDelay)

    def test_refused(self) -> None:
        """
        When the inner endpoint fails, C{connect} fails with its error and
        nothing is retried.
        """
        pair = Pair()
        pair.net.refuse = True
        d = pair.endpoint.connect(Factory.forProtocol(Recorder))
        self.failureResultOf(d, ConnectionRefusedError)
        pair.clock.advance(100)
        self.assertEqual(pair.net.connects, 1)
        self.assertEqual(pair.clock.getDelayedCalls(), [])

    def test_dropDuringOpenHandshake(self) -> None:
        """
        A carrier lost during the opening handshake fails C{connect} with
        L{HandshakeError}; the server built no application protocol and holds
        no session.
        """
        pair = Pair()
        d = pair.endpoint.connect(Factory.forProtocol(Recorder))
        pair.net.pump()  # the greeting reaches the client, its OPEN is written
        pair.net.cutAll()
        pair.net.flush()
        self.failureResultOf(d, HandshakeError)
        self.assertEqual(pair.servers, [])
        self.assertEqual(pair.factory.sessions, {})
        self.assertEqual(pair.clock.getDelayedCalls(), [])

    def test_openTimeout(self) -> None:
        """
        An opening attempt that never completes fails after
        C{connectTimeout}.
        """
        pair = Pair(SessionOptions(connectTimeout=3))
        pair.net.hold = True
        d = pair.endpoint.connect(Factory.forProtocol(Recorder))
        self.assertNoResult(d)
        pair.clock.advance(3)
        self.failureResultOf(d, HandshakeError)
        self.assertEqual(pair.clock.getDelayedCalls(), [])

    def test_cancelOpen(self) -> None:
        """
        Cancelling the connect Deferred stops the attempt.
        """
        pair = Pair()
        pair.net.hold = True
        d = pair.endpoint.connect(Factory.forProtocol(Recorder))
        d.cancel()
        self.failureResultOf(d)
        self.assertEqual(pair.clock.getDelayedCalls(), [])

    def test_clientFactoryRefuses(self) -> None:
        """
        A client factory whose C{buildProtocol} returns C{None} fails the
        connection with L{NoProtocol}.
        """
        pair = Pair()
        factory = Factory()
        factory.buildProtocol = lambda addr: None  # type: ignore[method-assign]
        d = pair.endpoint.connect(factory)
        pair.net.flush()
        self.failureResultOf(d, NoProtocol)

    def test_serverFactoryRefuses(self) -> None:
        """
        A server factory whose C{buildProtocol} returns C{None} fails the
        client's connection with L{HandshakeError}; no session is kept.
        """
        pair = Pair()
        pair.serverAppFactory.buildProtocol = lambda addr: None  # type: ignore[method-assign]
        d = pair.endpoint.connect(Factory.forProtocol(Recorder))
        pair.net.flush()
        f = self.failureResultOf(d, HandshakeError)
        self.assertIn("application refused", f.getErrorMessage())
        self.assertEqual(pair.factory.sessions, {})
        self.assertEqual(pair.clock.getDelayedCalls(), [])

    def test_confirmationLost(self) -> None:
        """
        When the carrier dies after the client's proof was sent but before
        the server said the session exists, the client asks by resuming, and
        the application is connected once, to a session the server holds.
        """
        for confirmArrives in (True, False):
            pair = Pair()
            d = pair.endpoint.connect(Factory.forProtocol(Recorder))
            pair.net.pump()  # greeting in, OPEN out
            link = pair.net.links[0]
            link.server.protocol.dataReceived(link.client._take())  # OPEN
            link.client.protocol.dataReceived(link.server._take())  # ACCEPT
            if confirmArrives:
                link.server.protocol.dataReceived(link.client._take())
                self.assertEqual(len(pair.servers), 1)
            pair.net.cutAll()
            self.assertNoResult(d)
            pair.settle(seconds=1)
            client = self.successResultOf(d)
            self.assertEqual(client.made, 1)
            # Either the server had the session, or it never built one.
            self.assertEqual(len(pair.servers), 1)
            server = pair.servers[-1]
            self.assertEqual(client.transport.sessionID, server.transport.sessionID)
            client.transport.write(b"ok")
            pair.settle()
            self.assertEqual(server.received, b"ok")


class ResumeTests(SynchronousTestCase):
    """
    Carriers are lost; sessions go on.
    """

    def test_cutAndResume(self) -> None:
        """
        After a cut the client resumes at once on a new carrier; the
        applications see nothing but the new generation.
        """
        pair = Pair().open()
        pair.net.cutAll()
        pair.settle()
        self.assertEqual(len(pair.net.links), 1)
        for app in (pair.client, pair.server):
            self.assertEqual(app.made, 1)
            self.assertEqual(app.lost, [])
            self.assertEqual(app.transport.generation, 1)
            self.assertEqual(app.transport.handoffs, 1)
            self.assertEqual(app.transport.state, "attached")

    def test_inFlightBothWays(self) -> None:
        """
        Bytes in flight in both directions when the carrier dies arrive after
        the resume, exactly once and in order.
        """
        pair = Pair().open()
        pair.client.transport.write(b"a" * 1000)
        pair.server.transport.write(b"b" * 1000)
        pair.net.cutAll()
        pair.client.transport.write(b"A")
        pair.server.transport.write(b"B")
        pair.settle()
        self.assertEqual(pair.server.received, b"a" * 1000 + b"A")
        self.assertEqual(pair.client.received, b"b" * 1000 + b"B")

    def test_dropDuringResumeHandshake(self) -> None:
        """
        A carrier lost in the middle of a resume handshake is followed by
        another attempt, which succeeds; nothing is lost or repeated.
        """
        pair = Pair().open()
        pair.client.transport.write(b"1")
        pair.net.cutAll()
        pair.net.pump()
        pair.net.cutAll()
        pair.client.transport.write(b"2")
        pair.settle(seconds=1)
        self.assertEqual(pair.server.received, b"12")
        self.assertEqual(pair.client.transport.state, "attached")

    def test_writesWhileDetached(self) -> None:
        """
        Writes made while no carrier can be had are buffered and delivered
        once one can; reconnection backs off meanwhile.
        """
        pair = Pair().open()
        pair.net.refuse = True
        pair.net.cutAll()
        pair.client.transport.write(b"held")
        pair.server.transport.write(b"also held")
        pair.settle(seconds=5)
        self.assertEqual(pair.client.transport.state, "detached")
        self.assertFalse(pair.client.transport.isAttached())
        attempts = pair.net.connects
        self.assertLess(attempts, 30)
        pair.net.refuse = False
        pair.settle(seconds=6)
        self.assertEqual(pair.server.received, b"held")
        self.assertEqual(pair.client.received, b"also held")

    def test_peerAddressFollowsMove(self) -> None:
        """
        After the client moves, the server's C{getPeer()} shows its new
        address; while detached it still answers with the last one.
        """
        pair = Pair().open()
        self.assertEqual(pair.server.transport.getPeer().host, "10.0.0.2")
        pair.net.refuse = True
        pair.net.cutAll()
        pair.settle()
        self.assertEqual(pair.server.transport.getPeer().host, "10.0.0.2")
        pair.net.clientHost = "10.9.9.9"
        pair.net.refuse = False
        pair.settle(seconds=6)
        self.assertEqual(pair.server.transport.getPeer().host, "10.9.9.9")

    def test_randomCuts(self) -> None:
        """
        For many random sequences of writes in both directions and cuts at
        random moments, each side receives exactly the other's stream.
        """
        for seed in range(20):
            rng = random.Random(seed)
            pair = Pair(SessionOptions(sendFrame=100, ackEvery=300), seed=seed).open()
            sent = {"c": bytearray(), "s": bytearray()}
            for step in range(60):
                action = rng.random()
                if action < 0.35:
                    data = bytes([rng.randrange(256)]) * rng.randrange(1, 400)
                    pair.client.transport.write(data)
                    sent["c"] += data
                elif action < 0.7:
                    data = bytes([rng.randrange(256)]) * rng.randrange(1, 400)
                    pair.server.transport.write(data)
                    sent["s"] += data
                elif action < 0.85:
                    pair.net.cutAll()
                else:
                    for _ in range(rng.randrange(3)):
                        pair.net.pump()
            pair.settle(seconds=6)
            self.assertEqual(pair.server.received, bytes(sent["c"]), seed)
            self.assertEqual(pair.client.received, bytes(sent["s"]), seed)
            self.assertEqual(pair.client.made + pair.server.made, 2)
            self.assertEqual(pair.client.lost + pair.server.lost, [])
            # Everything acknowledged: the buffers are empty.
            self.assertEqual(pair.clientSession.engine.buffered, 0)
            self.assertEqual(pair.serverSession.engine.buffered, 0)


class CloseTests(SynchronousTestCase):
    """
    Clean closes, half-closes, aborts and expiry.
    """

    def test_cleanCloseFromClient(self) -> None:
        """
        C{loseConnection} delivers everything written first; both sides then
        hear C{ConnectionDone} once, and nothing stays scheduled.
        """
        pair = Pair().open()
        pair.client.transport.write(b"last words")
        pair.client.transport.loseConnection()
        pair.client.transport.write(b"dropped")
        pair.settle(seconds=1)
        self.assertEqual(pair.server.received, b"last words")
        for app in (pair.client, pair.server):
            self.assertEqual(len(app.lost), 1)
            app.lost[0].trap(ConnectionDone)
            self.assertEqual(app.transport.state, "closed")
        self.assertEqual(pair.net.links, [])
        self.assertEqual(pair.clock.getDelayedCalls(), [])

    def test_cleanCloseFromServer(self) -> None:
        """
        The server can close too.
        """
        pair = Pair().open()
        pair.server.transport.write(b"bye")
        pair.server.transport.loseConnection()
        pair.settle(seconds=1)
        self.assertEqual(pair.client.received, b"bye")
        for app in (pair.client, pair.server):
            self.assertEqual(len(app.lost), 1)
            app.lost[0].trap(ConnectionDone)
        self.assertEqual(pair.clock.getDelayedCalls(), [])

    def test_closeDuringDetachment(self) -> None:
        """
        A close requested while detached waits for the resume, then delivers
        everything and completes.
        """
        pair = Pair().open()
        pair.net.refuse = True
        pair.net.cutAll()
        pair.client.transport.write(b"queued")
        pair.client.transport.loseConnection()
        pair.settle(seconds=3)
        self.assertEqual(pair.client.lost, [])
        self.assertEqual(pair.client.transport.state, "closing")
        pair.net.refuse = False
        pair.settle(seconds=6)
        self.assertEqual(pair.server.received, b"queued")
        pair.client.lost[0].trap(ConnectionDone)
        pair.server.lost[0].trap(ConnectionDone)

    def test_lostFinalAck(self) -> None:
        """
        When the last acknowledgement of a close is lost with its carrier,
        the client resumes and receives it from the server's memory of the
        closed session.
        """
        pair = Pair().open()
        pair.server.transport.loseConnection()
        while not pair.clientSession.engine.finSent:
            pair.net.pump()
        # Deliver the client's FIN alone; the server finishes and writes the
        # final acknowledgement, which the cut then loses.
        link = pair.net.links[0]
        link.server.protocol.dataReceived(link.client._take())
        self.assertEqual(len(pair.server.lost), 1)
        # As on TCP, the client's application heard its close complete when
        # its FIN went out; the session finishes in the background.
        self.assertEqual(len(pair.client.lost), 1)
        session = pair.clientSession
        pair.net.cutAll()
        self.assertFalse(session.ended)
        pair.settle(seconds=1)
        self.assertTrue(session.ended)
        self.assertEqual(session.generation, 1)
        self.assertEqual(len(pair.client.lost), 1)
        pair.client.lost[0].trap(ConnectionDone)
        self.assertEqual(pair.clock.getDelayedCalls(), [])

    def test_halfClose(self) -> None:
        """
        C{loseWriteConnection} ends one direction: a half-closeable peer
        hears C{readConnectionLost} and can still send; the session ends
        when both directions have.
        """
        pair = Pair(clientProtocol=HalfCloser).open()
        pair.server.transport.write(b"request")
        pair.server.transport.loseWriteConnection()
        pair.settle()
        self.assertEqual(pair.client.received, b"request")
        self.assertEqual(pair.client.readLost, 1)
        self.assertEqual(pair.client.lost, [])
        pair.client.transport.write(b"response")
        pair.client.transport.loseConnection()
        pair.settle(seconds=1)
        self.assertEqual(pair.server.received, b"response")
        pair.client.lost[0].trap(ConnectionDone)
        pair.server.lost[0].trap(ConnectionDone)

    def test_halfCloseOnPlainProtocolCloses(self) -> None:
        """
        A peer's end of stream closes the session of an application that is
        not half-closeable, as Twisted's TCP does.
        """
        pair = Pair().open()
        pair.server.transport.loseWriteConnection()
        pair.settle(seconds=1)
        pair.client.lost[0].trap(ConnectionDone)
        pair.server.lost[0].trap(ConnectionDone)

    def test_abort(self) -> None:
        """
        C{abortConnection} ends the session at once with
        C{ConnectionAborted}; the peer hears L{PeerAborted}.
        """
        pair = Pair().open()
        pair.client.transport.write(b"x" * 10)
        pair.client.transport.abortConnection()
        # Never from within the application's own call; in the next turn.
        self.assertEqual(pair.client.lost, [])
        pair.clock.advance(0)
        self.assertEqual(len(pair.client.lost), 1)
        pair.client.lost[0].trap(ConnectionAborted)
        pair.settle()
        self.assertEqual(len(pair.server.lost), 1)
        pair.server.lost[0].trap(PeerAborted)
        self.assertEqual(pair.factory.sessions, {})
        self.assertEqual(pair.clock.getDelayedCalls(), [])

    def test_abortDuringWrite(self) -> None:
        """
        An abort from inside C{dataReceived}, after a write in the same call,
        ends the session once and later writes are ignored.
        """

        class AbortOnData(Recorder):
            def dataReceived(self, data: bytes) -> None:
                Recorder.dataReceived(self, data)
                self.transport.write(b"reply")
                self.transport.abortConnection()
                self.transport.write(b"ignored")
                self.transport.abortConnection()

        pair = Pair(serverProtocol=AbortOnData).open()
        pair.client.transport.write(b"go")
        pair.settle()
        self.assertEqual(len(pair.server.lost), 1)
        pair.server.lost[0].trap(ConnectionAborted)
        self.assertEqual(len(pair.client.lost), 1)

    def test_expiry(self) -> None:
        """
        A session detached for longer than C{sessionTimeout} expires on both
        sides with L{SessionExpired}, once, and leaves nothing scheduled.
        """
        pair = Pair(SessionOptions(sessionTimeout=30)).open()
        pair.net.refuse = True
        pair.net.cutAll()
        pair.settle(seconds=29, step=0.5)
        self.assertEqual(pair.client.lost + pair.server.lost, [])
        pair.settle(seconds=2, step=0.5)
        for app in (pair.client, pair.server):
            self.assertEqual(len(app.lost), 1)
            app.lost[0].trap(SessionExpired)
        self.assertEqual(pair.factory.sessions, {})
        self.assertEqual(pair.clock.getDelayedCalls(), [])

    def test_serverForgot(self) -> None:
        """
        A client resuming a session the server no longer knows ends with
        L{SessionExpired} at once, without retrying.
        """
        pair = Pair(
            SessionOptions(sessionTimeout=100), serverOptions=SessionOptions(sessionTimeout=10)
        ).open()
        pair.net.refuse = True
        pair.net.cutAll()
        pair.settle(seconds=11, step=0.5)
        pair.server.lost[0].trap(SessionExpired)
        self.assertEqual(pair.client.lost, [])
        pair.net.refuse = False
        pair.settle(seconds=6)
        pair.client.lost[0].trap(SessionExpired)
        self.assertIn("unknown session", pair.client.lost[0].getErrorMessage())
        self.assertEqual(pair.clock.getDelayedCalls(), [])

    def test_connectionLostNotReentrant(self) -> None:
        """
        Calls on the transport from inside C{connectionLost} neither re-enter
        it nor fail.
        """

        class Reenter(Recorder):
            def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
                Recorder.connectionLost(self, reason)
                self.transport.loseConnection()
                self.transport.abortConnection()
                self.transport.write(b"late")

        pair = Pair(clientProtocol=Reenter).open()
        pair.client.transport.abortConnection()
        pair.settle()
        self.assertEqual(len(pair.client.lost), 1)


class FlowTests(SynchronousTestCase):
    """
    Backpressure, producers and paused reading.
    """

    def test_detachedPausesProducer(self) -> None:
        """
        A registered push producer is paused while the session is detached
        and resumed when it is attached again.
        """
        pair = Pair().open()
        producer = PushProducer()
        pair.client.transport.registerProducer(producer, True)
        self.assertFalse(producer.paused)
        pair.net.refuse = True
        pair.net.cutAll()
        self.assertTrue(producer.paused)
        pair.net.refuse = False
        pair.settle(seconds=1)
        self.assertFalse(producer.paused)

    def test_twoReasons(self) -> None:
        """
        A producer paused for two reasons (too much unacknowledged, and
        detached) is resumed only when both are gone.
        """
        pair = Pair(SessionOptions(highWater=1000, hardCap=100000)).open()
        producer = PushProducer()
        pair.client.transport.registerProducer(producer, True)
        pair.net.refuse = True
        pair.net.cutAll()
        pair.client.transport.write(b"x" * 2000)
        self.assertTrue(producer.paused)
        self.assertEqual(producer.events, ["pause"])
        pair.net.refuse = False
        pair.settle(seconds=1)
        self.assertEqual(pair.server.received, b"x" * 2000)
        self.assertEqual(producer.events, ["pause", "resume"])

    def test_carrierFullPauses(self) -> None:
        """
        A carrier whose buffer is full pauses the application's producer
        through the session; the application's producer is never given to
        the carrier itself.
        """
        pair = Pair().open()
        link = pair.net.links[0]
        link.client.bufferLimit = 100
        producer = PushProducer()
        pair.client.transport.registerProducer(producer, True)
        self.assertIs(link.client.producer, pair.clientSession)
        pair.client.transport.write(b"y" * 500)
        self.assertTrue(producer.paused)
        pair.net.pump()
        self.assertFalse(producer.paused)

    def test_carrierLossDoesNotStopProducer(self) -> None:
        """
        A dying carrier stops its producer (the session), never the
        application's.
        """
        pair = Pair().open()
        producer = PushProducer()
        pair.client.transport.registerProducer(producer, True)
        pair.net.cutAll()
        pair.settle()
        self.assertNotIn("stop", producer.events)

    def test_producerStoppedAtEnd(self) -> None:
        """
        The application's producer hears C{stopProducing} when the session
        ends, as with Twisted's TCP transport.
        """
        pair = Pair().open()
        producer = PushProducer()
        pair.client.transport.registerProducer(producer, True)
        pair.client.transport.abortConnection()
        pair.clock.advance(0)
        self.assertEqual(producer.events[-1], "stop")

    def test_registerTwice(self) -> None:
        """
        Registering a second producer raises C{RuntimeError}.
        """
        pair = Pair().open()
        pair.client.transport.registerProducer(PushProducer(), True)
        self.assertRaises(
            RuntimeError, pair.client.transport.registerProducer, PushProducer(), True
        )
        pair.client.transport.unregisterProducer()
        pair.client.transport.registerProducer(PushProducer(), True)

    def test_loseConnectionWaitsForProducer(self) -> None:
        """
        With a producer registered, C{loseConnection} completes only after
        it is unregistered.
        """
        pair = Pair().open()
        pair.client.transport.registerProducer(PushProducer(), True)
        pair.client.transport.loseConnection()
        pair.settle(seconds=1)
        self.assertEqual(pair.client.lost, [])
        pair.client.transport.unregisterProducer()
        pair.settle(seconds=1)
        pair.client.lost[0].trap(ConnectionDone)

    def test_pullProducer(self) -> None:
        """
        A pull producer is asked for data repeatedly until unregistered.
        """

        @implementer(IPullProducer)
        class Pull:
            count = 0

            def __init__(self, transport: Any) -> None:
                self.transport = transport

            def resumeProducing(self) -> None:
                self.count += 1
                self.transport.write(b"%d," % (self.count,))
                if self.count == 5:
                    self.transport.unregisterProducer()
                    self.transport.loseConnection()

            def stopProducing(self) -> None:
                pass

        pair = Pair().open()
        pair.client.transport.registerProducer(Pull(pair.client.transport), False)
        pair.settle(seconds=1)
        self.assertEqual(pair.server.received, b"1,2,3,4,5,")
        pair.client.lost[0].trap(ConnectionDone)

    def test_pullProducerRaises(self) -> None:
        """
        A pull producer that raises is logged once and the session ends,
        the application hearing the error itself (as from Twisted's TCP
        transport, whose C{doWrite} raised); the peer hears the abort.
        """

        @implementer(IPullProducer)
        class Bad:
            def resumeProducing(self) -> None:
                raise ZeroDivisionError()

            def stopProducing(self) -> None:
                pass

        pair = Pair().open()
        pair.client.transport.registerProducer(Bad(), False)
        pair.settle()
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertEqual(len(pair.client.lost), 1)
        pair.client.lost[0].trap(ZeroDivisionError)
        self.assertEqual(len(pair.server.lost), 1)
        pair.server.lost[0].trap(PeerAborted)
        self.assertEqual(pair.client.transport.state, "closed")

    def test_pushProducerRaisesOnPause(self) -> None:
        """
        A push producer whose C{pauseProducing} raises ends the session with
        that error, once.
        """

        @implementer(IPushProducer)
        class Bad(PushProducer):
            def pauseProducing(self) -> None:
                raise ZeroDivisionError()

        pair = Pair().open()
        pair.client.transport.registerProducer(Bad(), True)
        pair.net.cutAll()
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertEqual(len(pair.client.lost), 1)
        pair.client.lost[0].trap(ZeroDivisionError)

    def test_hardCapCloses(self) -> None:
        """
        A writer without a producer that passes the hard cap while detached
        ends the session with L{BufferOverflow} (the default policy).
        """
        pair = Pair(SessionOptions(highWater=100, hardCap=1000)).open()
        pair.net.refuse = True
        pair.net.cutAll()
        pair.client.transport.write(b"z" * 1000)
        self.assertEqual(pair.client.lost, [])
        pair.client.transport.write(b"z")
        self.assertEqual(pair.client.lost, [])
        pair.clock.advance(0)
        pair.client.lost[0].trap(BufferOverflow)

    def test_hardCapRaises(self) -> None:
        """
        With C{overflow="raise"}, a write past the cap raises L{BufferFull}
        and the session goes on.
        """
        pair = Pair(SessionOptions(highWater=100, hardCap=1000, overflow="raise")).open()
        pair.net.refuse = True
        pair.net.cutAll()
        pair.client.transport.write(b"z" * 1000)
        self.assertRaises(BufferFull, pair.client.transport.write, b"z")
        pair.net.refuse = False
        pair.settle(seconds=1)
        self.assertEqual(pair.server.received, b"z" * 1000)
        self.assertEqual(pair.client.lost, [])

    def test_pausedReadingSurvivesResume(self) -> None:
        """
        An application that paused reading gets nothing, on this carrier or
        the next, until it resumes; then it gets everything in order.
        """
        pair = Pair().open()
        pair.client.transport.pauseProducing()
        pair.server.transport.write(b"one ")
        pair.settle()
        self.assertEqual(pair.client.received, b"")
        pair.net.cutAll()
        pair.server.transport.write(b"two")
        pair.settle(seconds=1)
        self.assertEqual(pair.client.transport.generation, 1)
        self.assertTrue(pair.net.links[0].client.readPaused)
        self.assertEqual(pair.client.received, b"")
        pair.client.transport.resumeProducing()
        pair.settle()
        self.assertEqual(pair.client.received, b"one two")

    def test_pauseInsideDataReceived(self) -> None:
        """
        Pausing from inside C{dataReceived} stops delivery of the rest of
        the same read.
        """

        class PauseFirst(Recorder):
            def dataReceived(self, data: bytes) -> None:
                Recorder.dataReceived(self, data)
                if len(self.chunks) == 1:
                    self.transport.pauseProducing()

        pair = Pair(clientProtocol=PauseFirst).open()
        pair.server.transport.write(b"a")
        pair.server.transport.write(b"b")
        pair.settle()
        self.assertEqual(pair.client.received, b"a")
        pair.client.transport.resumeProducing()
        # Delivered in the next turn, not from within resumeProducing.
        self.assertEqual(pair.client.received, b"a")
        pair.clock.advance(0)
        self.assertEqual(pair.client.received, b"ab")

    def test_echoLargeStream(self) -> None:
        """
        A large stream through an echo server, with cuts, comes back intact;
        acknowledgements keep both buffers bounded.
        """
        pair = Pair(
            SessionOptions(highWater=64 * 1024, hardCap=1 << 22), serverProtocol=Echo
        ).open()
        data = bytes(range(256)) * 4096
        for i in range(0, len(data), 50000):
            pair.client.transport.write(data[i : i + 50000])
            pair.net.pump()
            if i % 200000 == 0:
                pair.net.cutAll()
        pair.settle(seconds=1)
        self.assertEqual(pair.client.received, data)
        self.assertEqual(pair.serverSession.engine.buffered, 0)


class PullIdleTests(SynchronousTestCase):
    def test_idlePullProducerNotSpun(self) -> None:
        """
        A pull producer that writes nothing is not asked again and again
        (nothing stays scheduled for it), as with Twisted's TCP transport.
        """

        @implementer(IPullProducer)
        class Idle:
            calls = 0

            def resumeProducing(self) -> None:
                self.calls += 1

            def stopProducing(self) -> None:
                pass

        pair = Pair().open()
        idle = Idle()
        pair.client.transport.registerProducer(idle, False)
        pair.settle(seconds=0.5)
        self.assertEqual(idle.calls, 1)
