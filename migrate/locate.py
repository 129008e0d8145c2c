# -*- test-case-name: tests.test_locate -*-
"""
Locators: where is a host now?

  - L{DNSLocator}: lookups through C{twisted.names} against a chosen server,
    honouring TTLs (answers are reused only while their records live, and
    looked up again on every reconnect round after that); publishing
    through RFC 2136 dynamic updates signed with TSIG (dnspython builds and
    checks the messages), sent over UDP through the reactor.
  - L{StaticLocator}: a table in memory, for tests and fixed set-ups.

The embedded DNS server that accepts such updates is
L{migrate.locator.LocatorServer} (C{twistd migrate-locator}).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.tsigkeyring
import dns.update
from twisted.internet.defer import Deferred, fail, gatherResults, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from twisted.names import client as namesClient
from twisted.names import dns as tdns
from twisted.names.error import DNSNameError
from zope.interface import implementer

from .interfaces import ILocator

__all__ = ["DNSLocator", "StaticLocator", "LocatorError", "locatorList"]


def locatorList(locator: Any) -> list[Any]:
    """
    C{None}, one locator, or a sequence of them, as a list.
    """
    if locator is None:
        return []
    if isinstance(locator, (list, tuple)):
        return list(locator)
    return [locator]


class LocatorError(Exception):
    """
    The locator refused or did not answer; the message says why.
    """


@implementer(ILocator)
class StaticLocator:
    """
    Names to addresses in a dictionary.
    """

    def __init__(self, table: Optional[dict[str, list[str]]] = None) -> None:
        self.table = dict(table or {})
        self.published: list[tuple[str, list[str]]] = []

    def resolve(self, name: str, fresh: bool = False) -> Deferred[list[str]]:
        return succeed(list(self.table.get(name, [])))

    def publish(self, name: str, addresses: Sequence[str]) -> Deferred[None]:
        self.table[name] = list(addresses)
        self.published.append((name, list(addresses)))
        return succeed(None)


class _UpdateClient(DatagramProtocol):
    """
    Sends one signed UPDATE and waits for its signed answer.
    """

    def __init__(self, wire: bytes, server: tuple[str, int], check: Any, d: Deferred[None]) -> None:
        self.wire = wire
        self.server = server
        self.check = check
        self.d = d

    def startProtocol(self) -> None:
        self.transport.write(self.wire, self.server)  # type: ignore[union-attr]

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        if self.d.called:
            return
        try:
            self.check(data)
        except Exception as e:
            self.d.errback(e)
        else:
            self.d.callback(None)


@implementer(ILocator)
class DNSLocator:
    """
    A locator on a DNS server that takes signed dynamic updates.

    @ivar server: C{(host, port)} of the DNS server.
    @ivar zone: the zone names are published in (e.g. C{"mobile.example."}).
    @ivar ttl: the TTL of published records (short: hosts move).
    """

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        server: tuple[str, int],
        zone: str,
        keyName: Optional[str] = None,
        secret: Optional[str] = None,
        algorithm: str = "hmac-sha256",
        ttl: int = 10,
        timeout: float = 2.0,
    ) -> None:
        """
        @param reactor: provides C{IReactorUDP} and C{IReactorTime}; its
            C{listenUDP} makes the sockets lookups and updates go out on.
        @param secret: the TSIG key, base64; needed only to publish.
        """
        self.reactor = reactor
        self.clock: IReactorTime = reactor
        self.server = server
        self.zone = dns.name.from_text(zone)
        self.ttl = ttl
        self.timeout = timeout
        self._keyName = keyName
        self._algorithm = dns.name.from_text(algorithm)
        self._keyring = (
            dns.tsigkeyring.from_text({keyName: secret}) if keyName and secret else None
        )
        self._resolver = namesClient.Resolver(servers=[server], reactor=reactor)
        self._cache: dict[str, tuple[float, list[str]]] = {}

    def resolve(self, name: str, fresh: bool = False) -> Deferred[list[str]]:
        """
        A and AAAA records of C{name}, from memory while their TTL lasts
        (unless C{fresh}).
        """
        now = self.clock.seconds()
        cached = self._cache.get(name)
        if cached is not None and cached[0] > now and not fresh:
            return succeed(list(cached[1]))

        def answers(result: Any, kind: int) -> list[tuple[str, int]]:
            out = []
            for rr in result[0]:
                if rr.type == kind:
                    if kind == tdns.A:
                        out.append((rr.payload.dottedQuad(), rr.ttl))
                    else:
                        import socket

                        out.append((socket.inet_ntop(socket.AF_INET6, rr.payload.address), rr.ttl))
            return out

        def none(f: Any) -> list[tuple[str, int]]:
            f.trap(DNSNameError, Exception)
            return []

        timeout = (self.timeout,)
        v4 = self._resolver.lookupAddress(name, timeout).addCallback(answers, tdns.A).addErrback(none)
        v6 = self._resolver.lookupIPV6Address(name, timeout).addCallback(answers, tdns.AAAA).addErrback(none)

        def combine(results: list[list[tuple[str, int]]]) -> list[str]:
            records = [r for part in results for r in part]
            addresses = [a for a, _ in records]
            if records:
                self._cache[name] = (self.clock.seconds() + min(t for _, t in records), addresses)
            return addresses

        return gatherResults([v4, v6]).addCallback(combine)

    def publish(self, name: str, addresses: Sequence[str]) -> Deferred[None]:
        """
        Replace C{name}'s A and AAAA records with C{addresses}, in one
        signed update.
        """
        if self._keyring is None or self._keyName is None:
            return fail(LocatorError("no TSIG key: cannot publish"))
        update = dns.update.UpdateMessage(
            self.zone,
            keyring=self._keyring,
            keyname=dns.name.from_text(self._keyName),
            keyalgorithm=self._algorithm,
        )
        owner = dns.name.from_text(name)
        update.delete(owner, "A")
        update.delete(owner, "AAAA")
        for a in addresses:
            update.add(owner, self.ttl, "AAAA" if ":" in a else "A", a)
        wire = update.to_wire()
        keyring = self._keyring

        def check(data: bytes) -> None:
            response = dns.message.from_wire(data, keyring=keyring, request_mac=update.mac)
            if response.rcode() != dns.rcode.NOERROR:
                raise LocatorError(
                    "the locator refused the update: %s" % (dns.rcode.to_text(response.rcode()),)
                )

        d: Deferred[None] = Deferred()
        protocol = _UpdateClient(wire, self.server, check, d)
        port = self.reactor.listenUDP(0, protocol)
        def noAnswer() -> None:
            if not d.called:
                d.errback(LocatorError("the locator did not answer"))

        timer = self.clock.callLater(self.timeout, noAnswer)

        def done(result: object) -> object:
            if timer.active():
                timer.cancel()
            port.stopListening()
            self._cache.pop(name, None)
            return result

        return d.addBoth(done)
