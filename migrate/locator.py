# -*- test-case-name: tests.test_locate,tests.test_locator_hostile -*-
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

It listens on UDP only: an answer larger than the client can take (512
bytes, or its EDNS payload size up to 1232) is sent truncated (TC set, no
records), and the client has no TCP to ask again over.

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
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

__all__ = ["LocatorServer", "RecordTable"]

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
    The DNS protocol of the embedded locator (UDP).

    Whatever arrives, one datagram gets at most one answer and at most one
    line of log (L{twisted.logger}, never a traceback): input shorter than a
    header, and responses, are dropped; a message that does not parse is
    answered FORMERR; a signature that does not check is answered NOTAUTH
    with the TSIG error of RFC 8945 (BADKEY for an unknown key or another
    algorithm than hmac-sha256, BADSIG, or a signed BADTIME); an EDNS
    version other than 0 gets BADVERS, an opcode other than QUERY and UPDATE
    NOTIMP. An answer larger than the client can take (512 bytes without
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

    def respond(self, data: bytes, addr: Any = None) -> Optional[bytes]:
        """
        The answer to one message (C{None} for input not worth answering).

        @param data: the datagram.
        @param addr: the peer, for the log.
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
        limit = self._payloadLimit(message)
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
        try:
            wire = response.to_wire()
        except dns.exception.TooBig:
            wire = b""
        if wire and len(wire) <= limit:
            return wire
        response.flags |= dns.flags.TC
        response.answer = []
        response.authority = []
        response.additional = []
        wire = response.to_wire()
        if len(wire) > limit:
            response.question = []
            wire = response.to_wire()
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
