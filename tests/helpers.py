"""
Shared fixtures for the trial suite.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from migrate import MigrateClientEndpoint, MigrateServerFactory, SessionOptions
from migrate.testing import sessionOf
from migrate.testing import MemoryNetwork


def freePort() -> int:
    """
    A TCP port on 127.0.0.1 that was free a moment ago (for processes that
    must be told their port in advance).  It is picked below the kernel's
    ephemeral range, so that no outgoing connection made meanwhile (which
    takes its local port from that range) can take it before the process
    that was told it listens there.
    """
    import random
    import socket

    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except OSError:
        low = 32768  # Linux's default, below most systems' ranges
    for _ in range(1000):
        port = random.randrange(max(1024, low - 12000), low)
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            s.close()
        return port
    raise RuntimeError("no free port below the ephemeral range")


class Recorder(Protocol):
    """
    An application protocol that records what happens to it.

    @ivar received: everything received, joined.
    @ivar made: how many times C{connectionMade} ran.
    @ivar lost: the reasons C{connectionLost} was called with.
    """

    echo = False

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.made = 0
        self.lost: list[Failure] = []

    @property
    def received(self) -> bytes:
        return b"".join(self.chunks)

    def connectionMade(self) -> None:
        self.made += 1

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)
        if self.echo:
            self.transport.write(data)

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self.lost.append(reason)


class Echo(Recorder):
    echo = True


class Pair:
    """
    A client and a server session over a L{MemoryNetwork}, on one clock.

    @ivar server: the server application protocol (after L{open}).
    @ivar client: the client application protocol (after L{open}).
    """

    def __init__(
        self,
        options: Optional[SessionOptions] = None,
        serverProtocol: type[Protocol] = Recorder,
        clientProtocol: type[Protocol] = Recorder,
        seed: int = 0,
        serverOptions: Optional[SessionOptions] = None,
        monitor: Any = None,
        policy: Any = None,
        serverPolicy: Any = None,
        endpointFor: Any = None,
    ) -> None:
        import random

        self.clock = Clock()
        self.net = MemoryNetwork(self.clock)
        self.options = options or SessionOptions()
        self.servers: list[Any] = []

        def buildServer() -> Protocol:
            p = serverProtocol()
            self.servers.append(p)
            return p

        self.serverAppFactory = Factory.forProtocol(buildServer)
        self.factory = MigrateServerFactory(
            self.serverAppFactory, self.clock, serverOptions or self.options, serverPolicy
        )
        self.net.listen(self.factory)
        self.endpoint = MigrateClientEndpoint(
            self.clock,
            self.net.clientEndpoint(),
            self.options,
            random.Random(seed),
            policy=policy,
            monitor=monitor,
            endpointFor=endpointFor,
        )
        self.clientProtocol = clientProtocol
        self.client: Any = None
        self.server: Any = None

    def open(self) -> "Pair":
        results: list[Any] = []
        d = self.endpoint.connect(Factory.forProtocol(self.clientProtocol))
        d.addBoth(results.append)
        self.net.flush()
        assert results and not isinstance(results[0], Failure), results
        self.client = results[0]
        assert len(self.servers) == 1, self.servers
        self.server = self.servers[0]
        return self

    @property
    def clientSession(self) -> Any:
        return sessionOf(self.client)

    @property
    def serverSession(self) -> Any:
        return sessionOf(self.server)

    def settle(self, seconds: float = 0.0, step: float = 0.01) -> None:
        """
        Flush, advancing the clock by C{seconds} in small steps.
        """
        self.net.flush()
        elapsed = 0.0
        while elapsed < seconds:
            self.clock.advance(step)
            elapsed += step
            self.net.flush()
