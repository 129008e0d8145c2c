# -*- test-case-name: tests.test_locate,tests.test_locator_tcp -*-
"""
Locators: where is a host now?

  - L{DNSLocator}: lookups through C{twisted.names} against a chosen server,
    honouring TTLs (answers are reused only while their records live, and
    looked up again on every reconnect round after that), asked again over
    TCP when the UDP answer is truncated; publishing
    through RFC 2136 dynamic updates signed with TSIG (dnspython builds and
    checks the messages), sent over UDP through the reactor.
  - L{StaticLocator}: a table in memory, for tests and fixed set-ups.

The embedded DNS server that accepts such updates is
L{migrate.locating.server.LocatorServer} (C{twistd migrate-locator}).
"""

from __future__ import annotations

import secrets
from typing import Any, Callable, Optional, Sequence, Union

import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import dns.update
from twisted.internet.defer import Deferred, fail, gatherResults, succeed
from twisted.internet.interfaces import IConnector, IReactorTime
from twisted.internet.protocol import ClientFactory, DatagramProtocol, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.names import client as namesClient
from twisted.names import dns as tdns
from twisted.names.error import DNSNameError
from zope.interface import implementer

from ..errors import LocatorError
from ..interfaces import ILocator

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


class _TCPQuery(Protocol):
    """
    One DNS query over TCP (RFC 1035, section 4.2.2): the message, preceded
    by its length, and the first answer read, after which the connection
    is closed. The outcome is given to C{finish} once the connection is
    gone, so that nothing is left open when it is known.
    """

    def __init__(self, wire: bytes, queryId: int, finish: Callable[[Any], None]) -> None:
        """
        @param wire: the query.
        @param queryId: its id, which the answer must have.
        @param finish: called once with the answer (a L{tdns.Message}) or
            a L{Failure}.
        """
        self.wire = wire
        self.queryId = queryId
        self.finish = finish
        self.result: Any = None
        self.timedOut: Optional[float] = None
        self._buffer = b""

    def connectionMade(self) -> None:
        """
        Send the query.
        """
        self.transport.write(len(self.wire).to_bytes(2, "big") + self.wire)  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        """
        Read the answer (at most 65537 bytes are kept); then close.
        """
        if self.result is not None:
            return
        self._buffer += data
        if len(self._buffer) < 2 or len(self._buffer) < 2 + int.from_bytes(self._buffer[:2], "big"):
            return
        wire = self._buffer[2 : 2 + int.from_bytes(self._buffer[:2], "big")]
        self._buffer = b""
        message = tdns.Message()
        try:
            message.fromStr(wire)
        except Exception as e:
            self.result = Failure(LocatorError("the locator's answer over TCP does not parse (%s)" % (e,)))
        else:
            if message.id != self.queryId or not message.answer:
                self.result = Failure(LocatorError("the locator's answer over TCP is not an answer to the query"))
            else:
                # Whole, whatever it says: never asked again.
                message.trunc = 0
                self.result = message
        self.transport.loseConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """
        Give the outcome: the answer, or why there is none.
        """
        if self.result is None:
            if self.timedOut is not None:
                why = "the locator did not answer over TCP in %g s" % (self.timedOut,)
            else:
                why = "the locator closed the TCP connection unanswered (%s)" % (reason.getErrorMessage(),)
            self.result = Failure(LocatorError(why))
        self.finish(self.result)


class _TCPQueryFactory(ClientFactory):
    """
    Connects one L{_TCPQuery}.
    """

    noisy = False

    def __init__(self, protocol: _TCPQuery) -> None:
        self.query = protocol

    def buildProtocol(self, addr: Any) -> _TCPQuery:
        """
        The query.
        """
        return self.query

    def clientConnectionFailed(self, connector: IConnector, reason: Failure) -> None:
        """
        No connection: the query fails.
        """
        why = "no TCP connection to the locator (%s)" % (reason.getErrorMessage(),)
        self.query.finish(Failure(LocatorError(why)))


def _queryTCP(
    reactor: Any, server: tuple[str, int], queries: Sequence[tdns.Query], timeout: float
) -> Deferred[tdns.Message]:
    """
    Ask C{queries} of C{server} over TCP, on a connection of its own, closed
    when the answer has come or after C{timeout} seconds.

    @param reactor: provides C{IReactorTCP} and C{IReactorTime}.
    @return: fires with the answer, whole (TC clear), once the connection
        is closed; or fails with L{LocatorError}.
    """
    d: Deferred[tdns.Message] = Deferred()
    queryId = secrets.randbelow(0x10000)
    message = tdns.Message(queryId, recDes=1)
    message.queries = list(queries)

    def finish(result: Union[tdns.Message, Failure]) -> None:
        if timer.active():
            timer.cancel()
        if not d.called:
            if isinstance(result, Failure):
                d.errback(result)
            else:
                d.callback(result)

    def expire() -> None:
        query.timedOut = timeout
        if query.transport is not None:
            query.transport.abortConnection()  # type: ignore[attr-defined]
        else:
            finish(Failure(LocatorError("no TCP connection to the locator in %g s" % (timeout,))))
            connector.stopConnecting()

    clock: IReactorTime = reactor
    timer = clock.callLater(timeout, expire)
    query = _TCPQuery(message.toStr(), queryId, finish)
    connector = reactor.connectTCP(server[0], server[1], _TCPQueryFactory(query), timeout=timeout + 1)
    return d


class _Resolver(namesClient.Resolver):
    """
    The C{twisted.names} resolver, asking again over TCP with
    L{_queryTCP}: its own connection each time, closed at once, within the
    locator's timeout.
    """

    def __init__(self, server: tuple[str, int], reactor: Any, timeout: float) -> None:
        namesClient.Resolver.__init__(self, servers=[server], reactor=reactor)
        self._server = server
        self._tcpTimeout = timeout

    def queryTCP(self, queries: Any, timeout: Any = None) -> Deferred[tdns.Message]:
        """
        Ask C{queries} again over TCP (an answer over UDP was truncated).
        """
        return _queryTCP(self._reactor, self._server, queries, self._tcpTimeout)


def _refusal(
    keyName: str, zone: dns.name.Name, response: Optional[dns.message.Message], error: Optional[Exception]
) -> LocatorError:
    """
    What a refused update is reported as: the reason in words, the key and
    what to check.

    @param response: the answer, if it could be read and checked.
    @param error: else why it could not.
    """
    prefix = "the locator refused the update: "
    if isinstance(error, dns.tsig.PeerBadSignature):
        return LocatorError(
            prefix + "the TSIG key %s or its secret is wrong (BADSIG): check that the locator has this key"
            " with this secret" % (keyName,)
        )
    if isinstance(error, dns.tsig.PeerBadKey):
        return LocatorError(
            prefix + "it does not know the TSIG key %s (BADKEY): check the key's name, and that the locator"
            " has it (hmac-sha256)" % (keyName,)
        )
    if isinstance(error, dns.tsig.PeerBadTime):
        return LocatorError(
            prefix + "the update's time, signed with the TSIG key %s, is too far from the locator's clock"
            " (BADTIME): check both clocks" % (keyName,)
        )
    if isinstance(error, dns.tsig.PeerError):
        return LocatorError(prefix + "the TSIG key %s was not accepted (%s)" % (keyName, error))
    if error is not None:
        return LocatorError(
            "the locator's answer to the update failed its check with the TSIG key %s (%s): it may not"
            " come from the locator" % (keyName, error)
        )
    assert response is not None
    rcode = response.rcode()
    text = dns.rcode.to_text(rcode)
    if rcode == dns.rcode.NOTAUTH:
        return LocatorError(prefix + "it does not serve the zone %s (NOTAUTH)" % (zone,))
    if rcode == dns.rcode.NOTZONE:
        return LocatorError(prefix + "a name is outside the zone %s (NOTZONE)" % (zone,))
    if rcode == dns.rcode.REFUSED:
        return LocatorError(
            prefix + "REFUSED (not allowed for the TSIG key %s, a replay, or over its rate limit: see the"
            " locator's log)" % (keyName,)
        )
    return LocatorError(prefix + text)


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
        @param reactor: provides C{IReactorUDP}, C{IReactorTCP} and
            C{IReactorTime}; its C{listenUDP} makes the sockets lookups and
            updates go out on, its C{connectTCP} the connections a lookup
            whose UDP answer was truncated asks again over.
        @param secret: the TSIG key, base64; needed only to publish.
        @param timeout: seconds to wait for an answer (over UDP, and again
            over TCP).
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
        self._resolver = _Resolver(server, reactor, timeout)
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
        keyName = self._keyName
        zone = self.zone

        def check(data: bytes) -> None:
            try:
                response = dns.message.from_wire(data, keyring=keyring, request_mac=update.mac)
            except dns.exception.DNSException as e:
                raise _refusal(keyName, zone, None, e)
            if response.rcode() != dns.rcode.NOERROR:
                raise _refusal(keyName, zone, response, None)

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
