"""
A custom policy: reconnect on a fixed schedule, declare silent paths dead
sooner, never connect from a metered interface while another is up, and
refuse resumes from a new address on the server.

Runs a server and a client on loopback, cuts the connection twice through a
relay, and prints what the policy decided::

    python examples/custom_policy.py
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet import defer, task
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol

from migrate import MigrateClientEndpoint, MigrateServerEndpoint, SessionOptions
from migrate.policy import DefaultPolicy
from migrate.testing import CuttingRelay


class FixedSchedulePolicy(DefaultPolicy):
    """
    Retry after 0, 0.1, 0.1, 0.1, ... seconds; a silent path is dead after
    1 s; avoid the (pretend) metered interface C{wwan0}.
    """

    def __init__(self) -> None:
        DefaultPolicy.__init__(
            self, SessionOptions(deadAfter=1.0, heartbeatInterval=0.25), avoid=["wwan0"]
        )
        self.asked: list[int] = []

    def reconnectDelay(self, failures: int) -> float:
        self.asked.append(failures)
        return 0.0 if failures == 0 else 0.1


class Echo(Protocol):
    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[union-attr]


class Client(Protocol):
    def connectionMade(self) -> None:
        self.got = b""

    def dataReceived(self, data: bytes) -> None:
        self.got += data


@defer.inlineCallbacks
def main(reactor):  # type: ignore[no-untyped-def]
    server = MigrateServerEndpoint(
        reactor,
        TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1"),
        policy=DefaultPolicy(acceptMoves=False),
    )
    port = yield server.listen(Factory.forProtocol(Echo))
    relay = CuttingRelay(lambda: TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port))
    relayPort = reactor.listenTCP(0, relay.factory, interface="127.0.0.1")
    policy = FixedSchedulePolicy()
    endpoint = MigrateClientEndpoint(
        reactor,
        TCP4ClientEndpoint(reactor, "127.0.0.1", relayPort.getHost().port),
        policy=policy,
        monitor=None,
    )
    client = yield endpoint.connect(Factory.forProtocol(Client))
    for word in (b"one ", b"two "):
        client.transport.write(word)
        yield task.deferLater(reactor, 0.2, lambda: None)
        relay.cutAll()
    # Now the path refuses connections for a while: the policy's schedule
    # paces the attempts.
    relayAddress = relayPort.getHost().port
    yield relayPort.stopListening()
    relay.cutAll()
    client.transport.write(b"three")
    yield task.deferLater(reactor, 0.35, lambda: None)
    relayPort = reactor.listenTCP(relayAddress, relay.factory, interface="127.0.0.1")
    yield task.deferLater(reactor, 0.5, lambda: None)
    print("echoed:", client.got.decode())
    print("resumes:", client.transport.handoffs)
    print("reconnect delays asked for failures:", policy.asked)
    client.transport.loseConnection()
    yield task.deferLater(reactor, 0.2, lambda: None)
    yield relayPort.stopListening()
    yield port.stopListening()
    if client.got != b"one two three":
        raise SystemExit(1)


if __name__ == "__main__":
    task.react(main)
