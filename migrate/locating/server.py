# -*- test-case-name: tests.test_locate,tests.test_locator_hostile,tests.test_locator_tcp -*-
"""
The embedded locator: a small authoritative DNS server for a zone of mobile
hosts, for users without a DNS server of their own
(C{twistd migrate-locator}).

It answers A and AAAA queries for names in its zone from a SQLite table
(short TTLs: hosts move), and accepts RFC 2136 dynamic updates only when
they are signed with a known TSIG key, recent (TSIG time within its fudge),
never seen before (a replayed signed update is refused even within the
fudge window), within the zone, and within the rate limit of their key.
Everything else is refused with a DNS error code (REFUSED, NOTAUTH with
the TSIG error of RFC 8945, NOTZONE, FORMERR, NOTIMP, BADVERS) and one
logged line; what cannot even be read as a request is dropped; a lookup
never returns anything an update did not put there with a valid signature.

It answers over UDP (L{LocatorServer}) and over TCP (L{LocatorStreamFactory},
RFC 1035 section 4.2.2 and RFC 7766, on the same port), both through
L{LocatorServer.respond}: a UDP answer larger than the client can take (512
bytes, or its EDNS payload size up to 1232) is sent truncated (TC set, no
records), and the client asks again over TCP, where answers are whole.
TCP connections are bounded as for a hostile peer: so many in all and per
address, an idle timeout, a largest message, and no more answers to a peer
that does not read them.

Message parsing and TSIG checking are dnspython's; the I/O is Twisted's.
"""

from __future__ import annotations

import os
import sqlite3
from collections import OrderedDict, deque
from typing import Any, Optional, cast

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TSIG
import dns.rrset
import dns.tsig
import dns.wire
from twisted.internet.interfaces import IAddress, IDelayedCall, IHalfCloseableProtocol, IPushProducer, IReactorTime
from twisted.internet.protocol import DatagramProtocol, Protocol, ServerFactory, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

__all__ = ["LocatorServer", "LocatorStream", "LocatorStreamFactory", "RecordTable"]

_TYPES = (dns.rdatatype.A, dns.rdatatype.AAAA)

# dnspython finds the implementation of a record type for a class by
# looking first for that class, then for class ANY, and remembers when it
# found none: a single datagram carrying an AAAA record of class ANY, parsed
# before any of class IN, would make every AAAA record read afterwards in
# this process generic (lookups of stored addresses then fail). Load ours
# first.
for _rdtype in _TYPES:
    dns.rdata.get_rdata_class(dns.rdataclass.IN, _rdtype)
_CLASSES = (dns.rdataclass.IN, dns.rdataclass.ANY)
_HEADER = 12
_CLASSIC_PAYLOAD = 512
# The largest DNS message: what a TCP answer may be (RFC 1035, 4.2.2).
_STREAM_PAYLOAD = 65535


def _describe(error: BaseException) -> str:
    """
    C{error} as one printable line of at most 200 characters: what a log
    line says of hostile input must not become several lines.
    """
    text = "%s: %s" % (type(error).__name__, error) if str(error) else type(error).__name__
    text = "".join(c if c.isprintable() else " " for c in text)
    return " ".join(text.split())[:200]


def _tsigStart(wire: bytes) -> int:
    """
    Where the last record of a message that parsed begins: its TSIG
    record (dnspython checked that the TSIG record is the last).
    """
    parser = dns.wire.Parser(wire)
    counts = parser.get_struct("!HHHHHH")
    for _ in range(counts[2]):
        parser.get_name(None, True)
        parser.get_struct("!HH")
    start = parser.current
    for _ in range(sum(counts[3:])):
        start = parser.current
        parser.get_name(None, True)
        (length,) = parser.get_struct("!8xH")
        parser.seek(parser.current + length)
    return start


class RecordTable:
    """
    The locator's records, persisted in SQLite (C{directory}, 0700; file
    0600), or in memory when C{directory} is C{None}.
    """

    def __init__(self, directory: Optional[str]) -> None:
        if directory is None:
            self.db = sqlite3.connect(":memory:")
        else:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            path = os.path.join(directory, "locator.sqlite3")
            if not os.path.exists(path):
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
            self.db = sqlite3.connect(path)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS records (name TEXT, type INTEGER, address TEXT, ttl INTEGER,"
            " PRIMARY KEY (name, type, address))"
        )
        self.db.commit()

    def lookup(self, name: str, rdtype: int) -> list[tuple[str, int]]:
        rows = self.db.execute(
            "SELECT address, ttl FROM records WHERE name = ? AND type = ? ORDER BY address",
            (name, rdtype),
        )
        return [(r[0], r[1]) for r in rows]

    def exists(self, name: str) -> bool:
        return self.db.execute("SELECT 1 FROM records WHERE name = ? LIMIT 1", (name,)).fetchone() is not None

    def apply(self, changes: list[tuple[Any, ...]]) -> None:
        """
        Apply update operations atomically: C{(op, name, type, ...)}.
        """
        with self.db:
            for op, name, rdtype, ttl, address, _ in changes:
                if op == "delete-name":
                    self.db.execute("DELETE FROM records WHERE name = ?", (name,))
                elif op == "delete-rrset":
                    self.db.execute("DELETE FROM records WHERE name = ? AND type = ?", (name, rdtype))
                elif op == "delete-rr":
                    self.db.execute(
                        "DELETE FROM records WHERE name = ? AND type = ? AND address = ?",
                        (name, rdtype, address),
                    )
                else:
                    self.db.execute(
                        "INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?)", (name, rdtype, address, ttl)
                    )

    def close(self) -> None:
        self.db.close()


class LocatorServer(DatagramProtocol):
    """
    The DNS protocol of the embedded locator (UDP; L{LocatorStreamFactory}
    serves the same answers over TCP).

    Whatever arrives, one datagram gets at most one answer and at most one
    line of log (L{twisted.logger}, never a traceback): input shorter than a
    header, and responses, are dropped; a message that does not parse is
    answered FORMERR; a signature that does not check is answered NOTAUTH
    with the TSIG error of RFC 8945 (BADKEY for an unknown key or another
    algorithm than hmac-sha256, BADSIG, or a signed BADTIME); an EDNS
    version other than 0 gets BADVERS, an opcode other than QUERY and UPDATE
    NOTIMP. A UDP answer larger than the client can take (512 bytes without
    EDNS, else its advertised payload size, at most L{maxPayload}) is sent
    truncated: TC set, its record sections empty.

    @ivar zone: the zone served.
    @ivar maxTTL: the longest TTL stored (updates asking more get this).
    @ivar rate: updates accepted per key per minute.
    @ivar keyring: TSIG key names to their (hmac-sha256) keys.
    @ivar maxPayload: the largest UDP answer sent, whatever payload size a
        client advertises with EDNS (1232: no fragmentation on IPv6).
    """

    log = Logger()
    maxPayload = 1232

    def __init__(
        self,
        clock: IReactorTime,
        zone: str,
        keys: dict[str, str],
        table: RecordTable,
        maxTTL: int = 60,
        rate: int = 60,
    ) -> None:
        """
        @param clock: the time of TSIG checks, the replay memory and the
            rate limits.
        @param keys: TSIG key names to base64 secrets (hmac-sha256).
        """
        self.clock = clock
        self.zone = dns.name.from_text(zone)
        self.keyring: dict[dns.name.Name, dns.tsig.Key] = {}
        for name, secret in keys.items():
            key = dns.tsig.Key(name, secret, dns.tsig.HMAC_SHA256)
            self.keyring[key.name] = key
        self.table = table
        self.maxTTL = maxTTL
        self.rate = rate
        self._seen: OrderedDict[bytes, float] = OrderedDict()
        self._updates: dict[str, deque[float]] = {}

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        """
        Answer one datagram, if it deserves an answer. No exception leaves
        this method: one that would (a bug) is logged as one line and the
        datagram dropped.
        """
        try:
            response = self.respond(data, addr)
            if response is not None:
                self.transport.write(response, addr)  # type: ignore[union-attr]
        except Exception as e:
            self.log.warn("{addr}: datagram dropped: {reason}", addr=addr, reason=_describe(e))

    def respond(self, data: bytes, addr: Any = None, stream: bool = False) -> Optional[bytes]:
        """
        The answer to one message (C{None} for input not worth answering).

        @param data: the datagram, or one message read from a TCP stream.
        @param addr: the peer, for the log.
        @param stream: C{True} for a message that came over TCP: its answer
            is never truncated below the largest DNS message (65535 bytes).
        """
        if len(data) < _HEADER:
            self.log.info("{addr}: dropped {n} bytes: no DNS header", addr=addr, n=len(data))
            return None
        if data[2] & 0x80:
            self.log.info("{addr}: dropped: a response, not a request", addr=addr)
            return None
        try:
            message = dns.message.from_wire(data, keyring=False)
        except Exception as e:
            self.log.info("{addr}: malformed message (FORMERR): {reason}", addr=addr, reason=_describe(e))
            return self._bare(data, dns.rcode.FORMERR)
        limit = _STREAM_PAYLOAD if stream else self._payloadLimit(message)
        if message.had_tsig:
            refusal = self._verify(message, data, addr)
            if refusal is not None:
                return self._encode(refusal, limit)
        return self._encode(self._answer(message, addr), limit)

    def _answer(self, message: dns.message.Message, addr: Any) -> dns.message.Message:
        """
        The answer to a message that parsed and, if signed, whose signature
        checked.
        """
        if message.edns > 0:
            self.log.info("{addr}: EDNS version {v} (BADVERS)", addr=addr, v=message.edns)
            response = self._response(message)
            response.set_rcode(dns.rcode.BADVERS)
            return response
        opcode = message.opcode()
        if opcode == dns.opcode.UPDATE:
            return self._update(message, addr)
        if opcode == dns.opcode.QUERY:
            return self._query(message, addr)
        self.log.info("{addr}: opcode {opcode} not implemented (NOTIMP)", addr=addr, opcode=int(opcode))
        response = self._response(message)
        response.set_rcode(dns.rcode.NOTIMP)
        return response

    def _response(self, message: dns.message.Message) -> dns.message.Message:
        """
        The skeleton of an answer to C{message}: signed if C{message} was
        (and its signature checked), with EDNS if it had EDNS.
        """
        return dns.message.make_response(message, our_payload=self.maxPayload)

    def _payloadLimit(self, message: dns.message.Message) -> int:
        """
        The largest answer to send to C{message} over UDP: 512 bytes
        without EDNS (RFC 1035), else the payload size it advertises (512
        at least, RFC 6891), at most L{maxPayload}.
        """
        if message.edns < 0:
            return _CLASSIC_PAYLOAD
        return max(_CLASSIC_PAYLOAD, min(message.payload, self.maxPayload))

    def _encode(self, response: dns.message.Message, limit: int) -> bytes:
        """
        The wire form of C{response}, at most C{limit} bytes: one too large
        is sent truncated (TC set, no records; a signature is made over
        what is sent), so the client can ask again over TCP.
        """
        # dnspython would stop at the request's payload size: ours is the
        # limit.
        try:
            wire = response.to_wire(max_size=_STREAM_PAYLOAD)
        except dns.exception.TooBig:
            wire = b""
        if wire and len(wire) <= limit:
            return wire
        response.flags |= dns.flags.TC
        response.answer = []
        response.authority = []
        response.additional = []
        wire = response.to_wire(max_size=_STREAM_PAYLOAD)
        if len(wire) > limit:
            response.question = []
            wire = response.to_wire(max_size=_STREAM_PAYLOAD)
        if len(wire) > limit:
            # What is left is a TSIG or OPT record echoing the request's
            # names or options: send the header alone.
            wire = wire[:4] + b"\x00" * 8
        return wire

    def _verify(self, message: dns.message.Message, data: bytes, addr: Any) -> Optional[dns.message.Message]:
        """
        Check the TSIG signature of C{message} (RFC 8945, section 5.2):
        with one of our keys, with its algorithm (hmac-sha256), a MAC that
        checks, signed within its fudge of our time.

        @param data: the wire form of C{message}.
        @return: C{None} if the signature is good (C{message} then knows
            its key, so that its answer is signed), else the error answer
            (NOTAUTH with the TSIG error; signed only for BADTIME).
        """
        rdata = cast(dns.rdtypes.ANY.TSIG.TSIG, message.tsig[0])  # type: ignore[index]
        keyname = cast(dns.name.Name, message.keyname)
        key = self.keyring.get(keyname)
        now = int(self.clock.seconds())
        # The words the log has always used for updates.
        kind = "update" if message.opcode() == dns.opcode.UPDATE else "signed message"
        if key is None:
            reason = "unknown key %s" % (keyname,)
            error, errorName = dns.rcode.BADKEY, "BADKEY"
        elif rdata.algorithm != key.algorithm:
            reason = "key %s with algorithm %s" % (keyname, rdata.algorithm)
            error, errorName = dns.rcode.BADKEY, "BADKEY"
        else:
            try:
                dns.tsig.validate(data, key, keyname, rdata, now, b"", _tsigStart(data))
            except dns.tsig.BadTime:
                self.log.warn(
                    "{addr}: {kind} refused (NOTAUTH, BADTIME): signed at {signed}, now {now}",
                    addr=addr, kind=kind, signed=rdata.time_signed, now=now,
                )
                message.keyring = key
                response = self._response(message)
                response.use_tsig(
                    key, tsig_error=dns.rcode.BADTIME, other_data=now.to_bytes(6, "big"),
                    original_id=rdata.original_id,
                )
                response.set_rcode(dns.rcode.NOTAUTH)
                return response
            except (dns.tsig.BadSignature, dns.tsig.PeerError) as e:
                reason = "bad signature by %s (%s)" % (keyname, _describe(e))
                error, errorName = dns.rcode.BADSIG, "BADSIG"
            else:
                message.keyring = key
                return None
        self.log.warn(
            "{addr}: {kind} refused (NOTAUTH, {error}): {reason}",
            addr=addr, kind=kind, error=errorName, reason=reason,
        )
        response = self._response(message)
        response.set_rcode(dns.rcode.NOTAUTH)
        # Unsigned (RFC 8945, section 5.3.2): the key name and algorithm as
        # asked, no MAC, the error.
        response.tsig = dns.rrset.from_rdata(
            keyname, 0, rdata.replace(time_signed=now, mac=b"", error=error, other=b"")
        )
        return response

    def _bare(self, data: bytes, rcode: int) -> Optional[bytes]:
        """
        An unsigned error answer, a bare header, for a message that could
        not be parsed.
        """
        if len(data) < _HEADER:
            return None
        flags = int.from_bytes(data[2:4], "big")
        if flags & 0x8000:
            return None
        opcode = (flags >> 11) & 0xF
        header = data[0:2] + ((0x8000 | (opcode << 11) | rcode) & 0xFFFF).to_bytes(2, "big")
        return header + b"\x00" * 8

    def _query(self, message: dns.message.Message, addr: Any) -> dns.message.Message:
        """
        The answer to a QUERY: the A or AAAA records of a name of the zone.
        """
        response = self._response(message)
        response.flags |= dns.flags.AA
        if len(message.question) != 1:
            self.log.info("{addr}: query with {n} questions (FORMERR)", addr=addr, n=len(message.question))
            response.set_rcode(dns.rcode.FORMERR)
            return response
        question = message.question[0]
        if not question.name.is_subdomain(self.zone) or question.rdclass not in _CLASSES:
            self.log.info(
                "{addr}: query for {name} {rdclass} refused: not our zone", addr=addr,
                name=question.name, rdclass=dns.rdataclass.to_text(question.rdclass),
            )
            response.flags &= ~dns.flags.AA
            response.set_rcode(dns.rcode.REFUSED)
            return response
        name = question.name.to_text()
        if question.rdtype in _TYPES:
            records = self.table.lookup(name, question.rdtype)
            if records:
                rrset = dns.rrset.from_text_list(
                    question.name, min(t for _, t in records), "IN",
                    dns.rdatatype.to_text(question.rdtype), [a for a, _ in records],
                )
                response.answer.append(rrset)
                return response
        if not self.table.exists(name) and question.name != self.zone:
            response.set_rcode(dns.rcode.NXDOMAIN)
        return response

    def _update(self, message: dns.message.Message, addr: Any) -> dns.message.Message:
        """
        The answer to an UPDATE (RFC 2136), applied if it is acceptable.
        """
        response = self._response(message)

        def refuse(rcode: Any, reason: str) -> dns.message.Message:
            self.log.warn("{addr}: update refused: {reason}", addr=addr, reason=reason)
            response.set_rcode(rcode)
            return response

        if len(message.question) != 1:
            return refuse(dns.rcode.FORMERR, "%d zones (FORMERR)" % (len(message.question),))
        if not message.had_tsig or message.keyname is None:
            return refuse(dns.rcode.REFUSED, "not signed")
        mac = message.mac or b""
        now = self.clock.seconds()
        while self._seen and next(iter(self._seen.values())) < now - 600:
            self._seen.popitem(last=False)
        if mac in self._seen:
            return refuse(dns.rcode.REFUSED, "replayed")
        key = message.keyname.to_text()
        recent = self._updates.setdefault(key, deque())
        while recent and recent[0] < now - 60:
            recent.popleft()
        if len(recent) >= self.rate:
            return refuse(dns.rcode.REFUSED, "rate limit of %d per minute for %s" % (self.rate, key))
        zone = message.question[0]
        if zone.name != self.zone or zone.rdclass != dns.rdataclass.IN:
            return refuse(dns.rcode.NOTAUTH, "not our zone")
        changes: list[tuple[Any, ...]] = []
        for rrset in getattr(message, "update", []):
            if not rrset.name.is_subdomain(self.zone):
                return refuse(dns.rcode.NOTZONE, "name outside the zone")
            if rrset.rdclass not in (dns.rdataclass.IN, dns.rdataclass.ANY, dns.rdataclass.NONE):
                # RFC 2136, section 3.4.1.3.
                return refuse(dns.rcode.FORMERR, "class %s (FORMERR)" % (dns.rdataclass.to_text(rrset.rdclass),))
            name = rrset.name.to_text()
            # dnspython keeps the class of a deletion (ANY, NONE) apart.
            deleting = getattr(rrset, "deleting", None)
            if deleting == dns.rdataclass.ANY or rrset.rdclass == dns.rdataclass.ANY:
                if rrset.rdtype == dns.rdatatype.ANY:
                    changes.append(("delete-name", name, 0, None, None, 0))
                elif rrset.rdtype in _TYPES:
                    changes.append(("delete-rrset", name, rrset.rdtype, None, None, 0))
                else:
                    return refuse(dns.rcode.REFUSED, "only A and AAAA records")
            elif rrset.rdtype not in _TYPES:
                return refuse(dns.rcode.REFUSED, "only A and AAAA records")
            elif deleting == dns.rdataclass.NONE or rrset.rdclass == dns.rdataclass.NONE:
                for rd in rrset:
                    changes.append(("delete-rr", name, rrset.rdtype, None, rd.to_text(), 0))
            else:
                ttl = min(rrset.ttl, self.maxTTL)
                for rd in rrset:
                    changes.append(("add", name, rrset.rdtype, ttl, rd.to_text(), 0))
        self._seen[mac] = now
        recent.append(now)
        self.table.apply(changes)
        self.log.info("{addr}: update by {key} applied ({n} changes)", addr=addr, key=key, n=len(changes))
        return response


@implementer(IPushProducer, IHalfCloseableProtocol)
class LocatorStream(Protocol):
    """
    One DNS-over-TCP connection to the locator (RFC 1035, section 4.2.2;
    RFC 7766): messages each preceded by their length in two bytes, several
    per connection, answered in order by L{LocatorServer.respond}, whole.

    Bounded as for a hostile peer: a declared length of 0 or above
    L{LocatorStreamFactory.maxMessage} closes the connection; so does
    L{LocatorStreamFactory.idleTimeout} without a complete message. The
    connection is its transport's streaming producer: once the transport
    holds more unsent answers than its buffer size (the peer does not read
    them), no more messages are read or answered until it has sent them,
    and a peer that does not read them within the idle timeout is cut off
    (the unsent answers discarded). A message the server does not answer
    is dropped with the server's one line of log; the connection goes on.
    A peer that closes its side of the connection once it has sent its
    messages gets their answers before the connection is closed.

    @ivar factory: the L{LocatorStreamFactory} that made this connection.
    @ivar peer: the peer's address.
    """

    factory: "LocatorStreamFactory"

    def __init__(self, factory: "LocatorStreamFactory", peer: IAddress) -> None:
        """
        @param factory: the factory, for its server, limits and clock.
        @param peer: the peer's address.
        """
        self.factory = factory
        self.peer = peer
        self._where: Any = (getattr(peer, "host", peer), getattr(peer, "port", None))
        self._buffer = bytearray()
        self._timer: Optional[IDelayedCall] = None
        self._paused = False
        self._closing = False
        self._readDone = False

    def connectionMade(self) -> None:
        """
        Count the connection, become the transport's producer and start the
        idle timer.
        """
        self.factory.connections.add(self)
        self.factory.perAddress[self._where[0]] = self.factory.perAddress.get(self._where[0], 0) + 1
        self.transport.registerProducer(self, True)  # type: ignore[union-attr]
        self._arm(self.factory.idleTimeout, self._idle)

    def dataReceived(self, data: bytes) -> None:
        """
        Answer every complete message received so far, unless paused or
        closing.
        """
        if self._closing:
            return
        self._buffer += data
        self._process()
        if len(self._buffer) > self.factory.maxBuffered:
            # Only a transport that kept delivering after being paused can
            # get here.
            self._abort("cut off: %d bytes of input waiting" % (len(self._buffer),))

    def _process(self) -> None:
        """
        Answer the complete messages in the input, in order, while the
        transport takes answers.
        """
        while not self._paused and not self._closing and len(self._buffer) >= 2:
            length = int.from_bytes(self._buffer[:2], "big")
            if length == 0 or length > self.factory.maxMessage:
                self._close(
                    "closed: a message of %d bytes declared (0 or over %d)" % (length, self.factory.maxMessage)
                )
                return
            if len(self._buffer) < 2 + length:
                break
            message = bytes(self._buffer[2 : 2 + length])
            del self._buffer[: 2 + length]
            self._arm(self.factory.idleTimeout, self._idle)
            self._answer(message)
        if self._readDone and not self._paused and not self._closing:
            # All answered (what is left is not a whole message): close.
            self._close(None)

    def readConnectionLost(self) -> None:
        """
        The peer sent all it will: answer what is left, then close.
        """
        self._readDone = True
        if not self._closing:
            self._process()

    def writeConnectionLost(self) -> None:
        """
        The peer reads no more: cut the connection off.
        """
        if not self._closing:
            self._abort(None)

    def _answer(self, message: bytes) -> None:
        """
        Answer one message, as the server answers a datagram: no exception
        leaves this method; one that would (a bug) is logged as one line
        and the message dropped.
        """
        try:
            response = self.factory.server.respond(message, self._where, stream=True)
            if response is not None:
                self.transport.write(len(response).to_bytes(2, "big") + response)  # type: ignore[union-attr]
        except Exception as e:
            self.factory.log.warn("{addr}: TCP message dropped: {reason}", addr=self._where, reason=_describe(e))

    def _arm(self, delay: float, call: Any) -> None:
        """
        Make C{call} the one timer of this connection, due in C{delay}
        seconds.
        """
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = self.factory.clock.callLater(delay, call)

    def _idle(self) -> None:
        """
        No complete message for the idle timeout: close; cut off a peer
        that has not read its answers meanwhile.
        """
        self._timer = None
        if self._paused:
            self._abort("cut off: its answers unread for %g s" % (self.factory.idleTimeout,))
        else:
            self.factory.log.debug("{addr}: idle TCP connection closed", addr=self._where)
            self._close(None)

    def _close(self, reason: Optional[str]) -> None:
        """
        Close the connection once what was written is sent (cutting it off
        if that takes longer than the idle timeout); log C{reason} if any.
        """
        if reason is not None:
            self.factory.log.info("{addr}: TCP connection {reason}", addr=self._where, reason=reason)
        self._closing = True
        del self._buffer[:]
        transport = self.transport
        assert transport is not None
        # With a producer registered the transport would not close.
        transport.unregisterProducer()  # type: ignore[attr-defined]
        transport.loseConnection()
        self._arm(self.factory.idleTimeout, lambda: self._abort(None))

    def _abort(self, reason: Optional[str]) -> None:
        """
        Cut the connection off now, discarding what was not sent; log
        C{reason} if any.
        """
        if reason is not None:
            self.factory.log.info("{addr}: TCP connection {reason}", addr=self._where, reason=reason)
        self._closing = True
        del self._buffer[:]
        self.transport.abortConnection()  # type: ignore[union-attr]

    def pauseProducing(self) -> None:
        """
        The transport holds more than it wants to: read and answer nothing
        more until it has sent it.
        """
        self._paused = True
        self.transport.pauseProducing()  # type: ignore[union-attr]

    def resumeProducing(self) -> None:
        """
        The transport sent what it held: read and answer again.
        """
        self._paused = False
        if not self._closing:
            if not self._readDone:
                self.transport.resumeProducing()  # type: ignore[union-attr]
            self._process()

    def stopProducing(self) -> None:
        """
        The connection is going: answer nothing more.
        """
        self._closing = True

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """
        Uncount the connection and cancel its timer.
        """
        self._closing = True
        del self._buffer[:]
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self in self.factory.connections:
            self.factory.connections.discard(self)
            host = self._where[0]
            left = self.factory.perAddress.get(host, 1) - 1
            if left > 0:
                self.factory.perAddress[host] = left
            else:
                self.factory.perAddress.pop(host, None)


class LocatorStreamFactory(ServerFactory):
    """
    The locator over TCP: connections of L{LocatorStream}, answered by
    C{server}, bounded in number: beyond L{maxConnections} in all or
    L{maxPerAddress} from one address, a new connection is closed at once
    (and logged in one line at most every L{logInterval} seconds, with how
    many were so closed).

    @ivar server: the L{LocatorServer} that answers.
    @ivar clock: the time of the idle timeouts and of the log of refusals.
    @ivar maxConnections: connections open at once, in all.
    @ivar maxPerAddress: connections open at once from one address.
    @ivar idleTimeout: seconds a connection may go without a complete
        message (and a peer may go without reading its answers).
    @ivar maxMessage: the largest message read, in bytes.
    @ivar maxBuffered: the most input a connection holds, in bytes.
    @ivar logInterval: seconds between two lines of log about connections
        closed over the limits.
    @ivar connections: the connections open.
    @ivar perAddress: how many connections are open from each address.
    """

    log = Logger()
    noisy = False

    def __init__(
        self,
        server: LocatorServer,
        clock: Optional[IReactorTime] = None,
        maxConnections: int = 256,
        maxPerAddress: int = 16,
        idleTimeout: float = 10.0,
        maxMessage: int = 4096,
        logInterval: float = 60.0,
    ) -> None:
        """
        @param clock: the clock of the timers (the server's if C{None}).
        """
        self.server = server
        self.clock: IReactorTime = clock if clock is not None else server.clock
        self.maxConnections = maxConnections
        self.maxPerAddress = maxPerAddress
        self.idleTimeout = idleTimeout
        self.maxMessage = maxMessage
        self.maxBuffered = 2 * 65536 + maxMessage
        self.logInterval = logInterval
        self.connections: set[LocatorStream] = set()
        self.perAddress: dict[Any, int] = {}
        self._closedAtOnce = 0
        self._loggedAt: Optional[float] = None

    def buildProtocol(self, addr: IAddress) -> Optional[LocatorStream]:  # type: ignore[override]
        """
        A connection for C{addr}, or C{None} (the connection is closed at
        once) over the limits.
        """
        host = getattr(addr, "host", addr)
        if len(self.connections) >= self.maxConnections:
            why = "%d TCP connections open in all" % (len(self.connections),)
        elif self.perAddress.get(host, 0) >= self.maxPerAddress:
            why = "%d TCP connections open from it" % (self.perAddress[host],)
        else:
            return LocatorStream(self, addr)
        self._closedAtOnce += 1
        now = self.clock.seconds()
        if self._loggedAt is None or now - self._loggedAt >= self.logInterval:
            self.log.warn(
                "{addr}: TCP connection closed at once: {why}; {n} so closed since the last such line",
                addr=host, why=why, n=self._closedAtOnce,
            )
            self._closedAtOnce = 0
            self._loggedAt = now
        return None
