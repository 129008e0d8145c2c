"""
TLS under the session (C{migrate:tls:} / C{migrate:ssl:}), with certificates
made at test time: the server's identity is verified on every carrier, and a
carrier to an impostor can never resume the session.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, clientFromString, serverFromString
from twisted.internet.protocol import Factory
from twisted.trial.unittest import TestCase

from migrate.testing import CuttingRelay, sessionOf

from .certs import writeServerFiles
from .helpers import Echo, Recorder
from .test_loopback import waitFor


class TLSTests(TestCase):
    timeout = 60

    def writeServerFiles(self, caName: str, trusted: bool) -> tuple[str, str]:
        return writeServerFiles(
            self.mktemp(), caName, "localhost", self.caDir if trusted else None
        )

    @defer.inlineCallbacks
    def listen(self, keyPath: str, certPath: str) -> Any:
        endpoint = serverFromString(
            reactor,
            "migrate:ssl:0:interface=127.0.0.1:privateKey=%s:certKey=%s" % (keyPath, certPath),
        )
        port = yield endpoint.listen(Factory.forProtocol(Echo))
        port.sessions = endpoint.factory.sessions
        self.addCleanup(port.stopListening)
        return port

    @defer.inlineCallbacks
    def test_resumeOverTLSAndRefuseImpostor(self) -> Any:
        """
        A session over verified TLS survives cuts; while the path leads to a
        server whose certificate does not verify, the session stays detached
        (never resumed there, never ended), and it resumes once the real
        server is reachable again, with every byte delivered once.
        """
        self.caDir = self.mktemp()
        real = yield self.listen(*self.writeServerFiles("Real CA", trusted=True))
        impostor = yield self.listen(*self.writeServerFiles("Impostor CA", trusted=False))
        target = {"port": real.getHost().port}
        relay = CuttingRelay(lambda: TCP4ClientEndpoint(reactor, "127.0.0.1", target["port"]))
        relayPort = reactor.listenTCP(0, relay.factory, interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(relayPort.stopListening)
        self.addCleanup(relay.cutAll)

        endpoint = clientFromString(
            reactor,
            "migrate:tls:host=localhost:port=%d:trustRoots=%s:reconnectInitial=0.01:reconnectMax=0.1"
            % (relayPort.getHost().port, self.caDir),
        )
        proto = yield endpoint.connect(Factory.forProtocol(Recorder))
        proto.transport.write(b"one ")
        yield waitFor(lambda: proto.received == b"one ")

        relay.cutAll()
        yield waitFor(lambda: proto.transport.generation == 1)
        proto.transport.write(b"two ")
        yield waitFor(lambda: proto.received == b"one two ")

        target["port"] = impostor.getHost().port
        relay.cutAll()
        proto.transport.write(b"three")
        before = relay.forwarded
        yield waitFor(lambda: relay.forwarded > before + 2000)
        self.assertEqual(proto.transport.state, "detached")
        self.assertEqual(proto.lost, [])
        self.assertEqual(proto.transport.generation, 1)

        target["port"] = real.getHost().port
        yield waitFor(lambda: proto.received == b"one two three")
        self.assertEqual(proto.transport.state, "attached")
        proto.transport.loseConnection()
        yield waitFor(lambda: bool(proto.lost))
        yield proto.transport.whenEnded()
        sessions = real.sessions
        yield waitFor(lambda: all(s.ended for s in sessions.values()))
        self.flushLoggedErrors()

    @defer.inlineCallbacks
    def test_untrustedServerRefused(self) -> Any:
        """
        Opening a session to a server whose certificate does not verify
        fails; the server builds no application protocol.
        """
        self.caDir = self.mktemp()
        self.writeServerFiles("Trusted CA", trusted=True)
        impostor = yield self.listen(*self.writeServerFiles("Other CA", trusted=False))
        endpoint = clientFromString(
            reactor,
            "migrate:tls:host=localhost:port=%d:trustRoots=%s"
            % (impostor.getHost().port, self.caDir),
        )
        yield self.assertFailure(endpoint.connect(Factory.forProtocol(Recorder)), Exception)
        self.assertEqual(impostor.sessions, {})
        self.flushLoggedErrors()


class _Switch:
    """
    A client endpoint that connects through whichever endpoint is current,
    counting the connections made through each.
    """

    def __init__(self, current: Any) -> None:
        self.current = current
        self.connects: dict[int, int] = {}

    def connect(self, factory: Any) -> Any:
        self.connects[id(self.current)] = self.connects.get(id(self.current), 0) + 1
        return self.current.connect(factory)


class TLSBindingTests(TestCase):
    """
    A session opened over TLS resumes only over TLS.
    """

    timeout = 60

    @defer.inlineCallbacks
    def test_noResumeOverPlainTCP(self) -> Any:
        """
        One server factory listening on TLS and on plain TCP: a session
        opened over TLS is marked secure on both sides; when the client's
        only path is plain TCP to the same server it does not resume there
        (it stays detached, sending no resume in the clear), and it resumes
        over TLS once that is reachable again, every byte delivered once.
        """
        import os

        from twisted.internet.endpoints import wrapClientTLS
        from twisted.internet.ssl import Certificate, optionsForClientTLS

        from migrate import MigrateClientEndpoint, SessionOptions

        caDir = self.mktemp()
        keyPath, certPath = writeServerFiles(self.mktemp(), "Real CA", "localhost", caDir)
        endpoint = serverFromString(
            reactor,
            "migrate:ssl:0:interface=127.0.0.1:privateKey=%s:certKey=%s" % (keyPath, certPath),
        )
        tlsPort = yield endpoint.listen(Factory.forProtocol(Echo))
        self.addCleanup(tlsPort.stopListening)
        factory = endpoint.factory
        plainPort = reactor.listenTCP(0, factory, interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(plainPort.stopListening)

        with open(os.path.join(caDir, "ca.pem")) as f:
            trust = Certificate.loadPEM(f.read())
        tls = wrapClientTLS(
            optionsForClientTLS("localhost", trustRoot=trust),
            TCP4ClientEndpoint(reactor, "127.0.0.1", tlsPort.getHost().port),
        )
        plain = TCP4ClientEndpoint(reactor, "127.0.0.1", plainPort.getHost().port)
        switch = _Switch(tls)
        client = MigrateClientEndpoint(
            reactor, switch, SessionOptions(reconnectInitial=0.01, reconnectMax=0.1), monitor=None
        )
        proto = yield client.connect(Factory.forProtocol(Recorder))
        proto.transport.write(b"one ")
        yield waitFor(lambda: proto.received == b"one ")
        session = sessionOf(proto)
        (serverSession,) = factory.sessions.values()
        self.assertTrue(session.secure)
        self.assertTrue(serverSession.secure)

        switch.current = plain
        session.dropCarrier("test: the TLS path goes")
        proto.transport.write(b"two")
        yield waitFor(lambda: switch.connects.get(id(plain), 0) >= 5)
        self.assertEqual(proto.transport.state, "detached")
        self.assertEqual(proto.transport.generation, 0)
        self.assertEqual(serverSession.generation, 0)
        self.assertEqual(proto.lost, [])

        switch.current = tls
        yield waitFor(lambda: proto.received == b"one two")
        self.assertEqual(proto.transport.generation, serverSession.generation)
        self.assertTrue(serverSession.secure)
        proto.transport.loseConnection()
        yield waitFor(lambda: bool(proto.lost))
        yield proto.transport.whenEnded()
        self.flushLoggedErrors()


class ExporterBindingTests(TestCase):
    """
    With TLS at both ends of a carrier, the handshake is bound to that TLS
    connection (its RFC 5705 exporter): a relay that ends the client's TLS
    and opens its own to the server, even with a certificate the client
    trusts, cannot carry the session; a proxy that ends TLS in front of a
    plain server can (the server is not TLS: nothing to bind).
    """

    timeout = 60

    @defer.inlineCallbacks
    def relayTo(self, backend: Any, tlsToBackend: bool) -> Any:
        """
        Listen with TLS (the server's own certificate, which the client
        trusts) and relay each connection to C{backend}'s port, over TLS
        if C{tlsToBackend}, else plain.
        """
        import os

        from twisted.internet.endpoints import wrapClientTLS
        from twisted.internet.ssl import Certificate, optionsForClientTLS

        with open(os.path.join(self.caDir, "ca.pem")) as f:
            trust = Certificate.loadPEM(f.read())
        port = backend.getHost().port

        def connectBackend() -> Any:
            inner = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
            if tlsToBackend:
                return wrapClientTLS(optionsForClientTLS("localhost", trustRoot=trust), inner)
            return inner

        relay = CuttingRelay(connectBackend)
        listening = yield serverFromString(
            reactor,
            "ssl:0:interface=127.0.0.1:privateKey=%s:certKey=%s" % (self.keyPath, self.certPath),
        ).listen(relay.factory)
        self.addCleanup(listening.stopListening)
        self.addCleanup(relay.cutAll)
        return listening

    @defer.inlineCallbacks
    def listen(self, kind: str) -> Any:
        self.caDir = self.mktemp()
        self.keyPath, self.certPath = writeServerFiles(self.mktemp(), "CA", "localhost", self.caDir)
        description = "migrate:tcp:0:interface=127.0.0.1"
        if kind == "ssl":
            description = "migrate:ssl:0:interface=127.0.0.1:privateKey=%s:certKey=%s" % (
                self.keyPath,
                self.certPath,
            )
        self.built: list[Any] = []

        def build() -> Any:
            p = Echo()
            self.built.append(p)
            return p

        endpoint = serverFromString(reactor, description)
        port = yield endpoint.listen(Factory.forProtocol(build))
        self.addCleanup(port.stopListening)
        return port

    def connect(self, port: Any) -> Any:
        return clientFromString(
            reactor,
            "migrate:tls:host=localhost:port=%d:trustRoots=%s" % (port.getHost().port, self.caDir),
        ).connect(Factory.forProtocol(Recorder))

    @defer.inlineCallbacks
    def test_reencryptingRelayRefused(self) -> Any:
        """
        Through a relay that terminates TLS and opens its own TLS to the
        server, the opening fails on the client ("bad server opening
        proof"), and the server builds no application protocol.
        """
        server = yield self.listen("ssl")
        relay = yield self.relayTo(server, tlsToBackend=True)
        failure = None
        try:
            yield self.connect(relay)
        except Exception as e:
            failure = e
        self.assertIsNotNone(failure)
        self.assertIn("bad server opening proof", str(failure))
        self.assertEqual(self.built, [])
        self.flushLoggedErrors()

    @defer.inlineCallbacks
    def test_directTLSBound(self) -> Any:
        """
        Directly over TLS, the session opens bound (both ends computed the
        same exporter value) and carries data.
        """
        server = yield self.listen("ssl")
        proto = yield self.connect(server)
        proto.transport.write(b"hello")
        yield waitFor(lambda: proto.received == b"hello")
        self.assertTrue(sessionOf(proto).secure)
        proto.transport.loseConnection()
        yield proto.transport.whenEnded()

    @defer.inlineCallbacks
    def test_tlsEndedByProxy(self) -> Any:
        """
        A proxy that ends TLS in front of a plain Migrate server: the
        session opens (unbound) and carries data.
        """
        server = yield self.listen("tcp")
        relay = yield self.relayTo(server, tlsToBackend=False)
        proto = yield self.connect(relay)
        proto.transport.write(b"hello")
        yield waitFor(lambda: proto.received == b"hello")
        proto.transport.loseConnection()
        yield proto.transport.whenEnded()
