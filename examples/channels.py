"""
Channels: a chat stream and a file transfer in one session, through cuts.

The server maps two channel names to two services: C{"chat"} (an echo)
and C{"files"} (which sends a file of 2 MB).  The client's session opens
both as channels, beside its first stream; a relay in the middle cuts the
session's TCP connection three times.  The session resumes once per cut,
for all its channels; each channel's bytes arrive exactly once.  Run it
as::

    python examples/channels.py
"""

from __future__ import annotations

import hashlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from typing import Any

from twisted.internet import defer, task
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol

from migrate import MigrateClientEndpoint, MigrateServerEndpoint
from migrate.testing import CuttingRelay

FILE = hashlib.sha256(b"seed").digest() * (2_000_000 // 32)


class Echo(Protocol):
    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)


class FileSender(Protocol):
    def connectionMade(self) -> None:
        self.transport.write(FILE)
        self.transport.loseConnection()


class Collect(Protocol):
    def __init__(self) -> None:
        self.received = b""
        self.done: defer.Deferred[bytes] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Any = None) -> None:
        self.done.callback(self.received)


class Resumes:
    count = 0

    def sessionResumed(self, *args: Any) -> None:
        Resumes.count += 1


async def main(reactor: Any) -> None:
    server = MigrateServerEndpoint(
        reactor,
        TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1"),
        channels={"chat": Factory.forProtocol(Echo), "files": Factory.forProtocol(FileSender)},
    )
    port = await server.listen(Factory.forProtocol(Protocol))
    relay = CuttingRelay(lambda: TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port))
    relayPort = reactor.listenTCP(0, relay.factory, interface="127.0.0.1")
    client = MigrateClientEndpoint(
        reactor, TCP4ClientEndpoint(reactor, "127.0.0.1", relayPort.getHost().port)
    )
    client.addObserver(Resumes())
    first = await client.connect(Factory.forProtocol(Protocol))
    chat: Any = await first.transport.openChannel(Factory.forProtocol(Collect), "chat")
    files: Any = await first.transport.openChannel(Factory.forProtocol(Collect), "files")
    print("channels open: chat is channel %d, files is channel %d"
          % (chat.transport.channel, files.transport.channel))
    lines = [b"line %d\n" % (i,) for i in range(300)]
    for i, line in enumerate(lines):
        chat.transport.write(line)
        if i % 100 == 50:
            relay.cutAll()
        await task.deferLater(reactor, 0.002, lambda: None)
    received = await files.done
    print("file: %d bytes, %s" % (len(received), "exact" if received == FILE else "DIFFERENT"))
    while len(chat.received) < sum(len(line) for line in lines):
        await task.deferLater(reactor, 0.05, lambda: None)
    print("chat: %s" % ("exact" if chat.received == b"".join(lines) else "DIFFERENT",))
    print("%d cuts, %d resumes, one session" % (relay.cuts, Resumes.count))
    chat.transport.loseConnection()
    first.transport.loseConnection()
    await chat.done
    await first.transport.whenEnded()
    await relay.stop()
    await relayPort.stopListening()
    await port.stopListening()


if __name__ == "__main__":
    task.react(lambda reactor: defer.ensureDeferred(main(reactor)))
