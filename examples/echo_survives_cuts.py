"""
An echo session that survives its TCP connection being cut, again and again.

Runs, in one process on loopback: an echo server wrapped by Migrate, a relay
that cuts every connection through it each half second, and a client that
writes numbered lines and checks that each comes back exactly once, in
order.  Run it as::

    python examples/echo_survives_cuts.py [--seconds 5]

Nothing here is special to echo: any protocol factory, wrapped the same way,
keeps its connection across the cuts.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet import defer, task
from twisted.internet.endpoints import TCP4ClientEndpoint, clientFromString, serverFromString
from twisted.internet.protocol import Factory
from twisted.protocols.basic import LineReceiver

from migrate.testing import CuttingRelay


class Echo(LineReceiver):
    def lineReceived(self, line: bytes) -> None:
        self.sendLine(line)


class Counter(LineReceiver):
    """
    Sends numbered lines and checks the echoes.
    """

    def connectionMade(self) -> None:
        self.next = 0
        self.expected = 0
        self.errors = 0

    def send(self, n: int) -> None:
        for _ in range(n):
            self.sendLine(b"line %d" % (self.next,))
            self.next += 1

    def lineReceived(self, line: bytes) -> None:
        if line != b"line %d" % (self.expected,):
            self.errors += 1
        self.expected += 1


@defer.inlineCallbacks
def main(reactor, seconds: float):  # type: ignore[no-untyped-def]
    # The server advertises its own address, but the client sees that it
    # reached the relay instead (as through a port forward or a NAT) and
    # keeps to it.
    port = yield serverFromString(reactor, "migrate:tcp:0:interface=127.0.0.1").listen(
        Factory.forProtocol(Echo)
    )
    relay = CuttingRelay(lambda: TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port))
    relayPort = reactor.listenTCP(0, relay.factory, interface="127.0.0.1")
    endpoint = clientFromString(
        reactor,
        "migrate:tcp:host=127.0.0.1:port=%d:reconnectInitial=0.01" % (relayPort.getHost().port,),
    )
    client = yield endpoint.connect(Factory.forProtocol(Counter))
    print("session", client.transport.sessionID, "open")

    cutter = task.LoopingCall(relay.cutAll)
    cutter.clock = reactor
    cutter.start(0.5, now=False)
    sender = task.LoopingCall(client.send, 50)
    sender.clock = reactor
    sender.start(0.01)
    yield task.deferLater(reactor, seconds, lambda: None)
    sender.stop()
    cutter.stop()
    while client.expected < client.next:
        yield task.deferLater(reactor, 0.05, lambda: None)
    print(
        "sent %d lines, got %d back in order, %d wrong; %d cuts, %d resumes"
        % (client.next, client.expected, client.errors, relay.cuts, client.transport.handoffs)
    )
    client.transport.loseConnection()
    yield task.deferLater(reactor, 0.2, lambda: None)
    yield relayPort.stopListening()
    yield port.stopListening()
    if client.errors or client.expected != client.next:
        raise SystemExit(1)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    task.react(main, [args.seconds])
