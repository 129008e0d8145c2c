"""
An application that takes part in its session's life through upcalls.

The client protocol provides C{IMigrateUpcalls}: it hears when its session
is suspended, each reconnect attempt, and each resume (with the downtime and
the bytes retransmitted); it holds its reconnect attempts while it is "on a
metered link" (a flag here); the server protocol refuses resumes after the
client said goodbye.  Run it as::

    python examples/upcalls.py
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from typing import Any

from twisted.internet import defer, task
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from zope.interface import implementer

from migrate import MigrateClientEndpoint, MigrateServerEndpoint, SessionOptions
from migrate.interfaces import IMigrateUpcalls
from migrate.testing import CuttingRelay


@implementer(IMigrateUpcalls)
class Aware(Protocol):
    """
    A client that narrates its session and decides when to reconnect.
    """

    def __init__(self) -> None:
        self.metered = False
        self.gate: defer.Deferred[bool] | None = None
        self.events: list[str] = []

    def say(self, text: str) -> None:
        self.events.append(text)
        print("client:", text)

    def sessionEstablished(self, session: Any) -> None:
        self.say("established session %s" % (session.sessionID[:8],))

    def choosePolicy(self, session: Any) -> None:
        return None

    def sessionSuspended(self, session: Any, reason: str) -> None:
        self.say("suspended (%s)" % (reason,))

    def reconnectAttempt(self, session: Any, attempt: int, source: Any) -> Any:
        if self.metered:
            self.say("attempt %d held until off the metered link" % (attempt,))
            self.gate = defer.Deferred()
            return self.gate
        self.say("attempt %d" % (attempt,))
        return None

    def resumeRequested(self, *args: Any) -> None:
        return None

    def sessionResumed(self, session: Any, previous: Any, new: Any, downtime: float, resent: int) -> None:
        self.say("resumed after %.0f ms, %d bytes retransmitted" % (downtime * 1000, resent))

    def addressesChanged(self, session: Any, event: Any) -> None:
        pass

    def aboutToHibernate(self, session: Any) -> None:
        pass

    def sessionEnded(self, session: Any, reason: Any) -> None:
        self.say("ended: %s" % (reason.type.__name__,))

    def offMetered(self) -> None:
        self.metered = False
        gate, self.gate = self.gate, None
        if gate is not None:
            gate.callback(True)


class Sink(Protocol):
    def __init__(self) -> None:
        self.got = b""

    def dataReceived(self, data: bytes) -> None:
        self.got += data


@defer.inlineCallbacks
def main(reactor):  # type: ignore[no-untyped-def]
    sinks: list[Sink] = []
    server = MigrateServerEndpoint(reactor, TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1"))
    port = yield server.listen(Factory.forProtocol(lambda: sinks.append(Sink()) or sinks[-1]))
    relay = CuttingRelay(lambda: TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port))
    relayPort = reactor.listenTCP(0, relay.factory, interface="127.0.0.1")
    endpoint = MigrateClientEndpoint(
        reactor,
        TCP4ClientEndpoint(reactor, "127.0.0.1", relayPort.getHost().port),
        SessionOptions(reconnectInitial=0.01),
        monitor=None,
    )
    client = yield endpoint.connect(Factory.forProtocol(Aware))

    client.transport.write(b"x" * 1000)
    relay.cutAll()
    yield task.deferLater(reactor, 0.3, lambda: None)

    client.metered = True
    relay.cutAll()
    client.transport.write(b"written while held " * 10)
    yield task.deferLater(reactor, 0.5, lambda: None)
    print("client: state while held:", client.transport.state)
    client.offMetered()
    yield task.deferLater(reactor, 0.3, lambda: None)

    client.transport.loseConnection()
    yield task.deferLater(reactor, 0.3, lambda: None)
    print("server received %d bytes" % (len(sinks[0].got),))
    yield relayPort.stopListening()
    yield port.stopListening()
    if len(sinks[0].got) != 1000 + 190 or client.transport.handoffs != 2:
        raise SystemExit(1)


if __name__ == "__main__":
    task.react(main)
