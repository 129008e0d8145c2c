# -*- test-case-name: tests.test_locate -*-
"""
The embedded locator: a small authoritative DNS server for a zone of mobile
hosts, for users without a DNS server of their own
(C{twistd migrate-locator}).

It answers A and AAAA queries for names in its zone from a SQLite table
(short TTLs: hosts move), and accepts RFC 2136 dynamic updates only when
they are signed with a known TSIG key, recent (TSIG time within its fudge),
never seen before (a replayed signed update is refused even within the
fudge window), within the zone, and within the rate limit of their key.
Everything else is refused with a DNS error code (REFUSED, NOTAUTH,
NOTZONE, FORMERR) and a logged reason; a lookup never returns anything an
update did not put there with a valid signature.

Message parsing and TSIG checking are dnspython's; the I/O is Twisted's.
"""

from __future__ import annotations

import os
import sqlite3
from collections import OrderedDict, deque
from typing import Any, Optional

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.tsig
import dns.tsigkeyring
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

__all__ = ["LocatorServer", "RecordTable"]

_TYPES = (dns.rdatatype.A, dns.rdatatype.AAAA)


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

    @ivar zone: the zone served.
    @ivar maxTTL: the longest TTL stored (updates asking more get this).
    @ivar rate: updates accepted per key per minute.
    """

    log = Logger()

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
        @param keys: TSIG key names to base64 secrets (hmac-sha256).
        """
        self.clock = clock
        self.zone = dns.name.from_text(zone)
        self.keyring = dns.tsigkeyring.from_text(keys)
        self.table = table
        self.maxTTL = maxTTL
        self.rate = rate
        self._seen: OrderedDict[bytes, float] = OrderedDict()
        self._updates: dict[str, deque[float]] = {}

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        response = self.respond(data, addr)
        if response is not None:
            self.transport.write(response, addr)  # type: ignore[union-attr]

    def respond(self, data: bytes, addr: Any = None) -> Optional[bytes]:
        """
        The answer to one message (C{None} for input not worth answering).
        """
        try:
            message = dns.message.from_wire(data, keyring=self.keyring)
        except (dns.tsig.PeerError, dns.tsig.BadSignature, dns.tsig.BadTime, dns.message.UnknownTSIGKey) as e:
            self.log.warn("{addr}: update refused: {reason}", addr=addr, reason=type(e).__name__)
            return self._bare(data, dns.rcode.NOTAUTH)
        except dns.exception.DNSException as e:
            self.log.info("{addr}: malformed message: {reason}", addr=addr, reason=e)
            return self._bare(data, dns.rcode.FORMERR)
        if message.flags & dns.flags.QR:
            return None
        if message.opcode() == dns.opcode.UPDATE:
            return self._update(message, addr).to_wire(multi=False)
        if message.opcode() == dns.opcode.QUERY:
            return self._query(message).to_wire()
        response = dns.message.make_response(message)
        response.set_rcode(dns.rcode.NOTIMP)
        return response.to_wire()

    def _bare(self, data: bytes, rcode: int) -> Optional[bytes]:
        """
        An unsigned error answer for a message that could not be accepted.
        """
        if len(data) < 12:
            return None
        flags = int.from_bytes(data[2:4], "big")
        if flags & 0x8000:
            return None
        opcode = (flags >> 11) & 0xF
        header = data[0:2] + ((0x8000 | (opcode << 11) | rcode) & 0xFFFF).to_bytes(2, "big")
        return header + b"\x00" * 8

    def _query(self, message: dns.message.Message) -> dns.message.Message:
        response = dns.message.make_response(message)
        response.flags |= dns.flags.AA
        if len(message.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
            return response
        question = message.question[0]
        if not question.name.is_subdomain(self.zone):
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
        response = dns.message.make_response(message)

        def refuse(rcode: Any, reason: str) -> dns.message.Message:
            self.log.warn("{addr}: update refused: {reason}", addr=addr, reason=reason)
            response.set_rcode(rcode)
            return response

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
        zone = message.question[0].name if message.question else None
        if zone != self.zone:
            return refuse(dns.rcode.NOTAUTH, "not our zone")
        changes: list[tuple[Any, ...]] = []
        for rrset in getattr(message, "update", []):
            if not rrset.name.is_subdomain(self.zone):
                return refuse(dns.rcode.NOTZONE, "name outside the zone")
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
