"""
The session stores: the SQLite one on its worker thread, and the memory one.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from migrate.interfaces import CorruptRecord, ISessionStore, SessionRecord
from migrate.store import MemorySessionStore, SQLiteSessionStore, decodeRecord, encodeRecord


def record(sid: bytes = b"s" * 16, expires: float = 100.0, buffer: bytes = b"abc", state: bytes | None = b"st") -> SessionRecord:
    return SessionRecord(
        sessionID=sid,
        side="server",
        key=b"k" * 32,
        generation=3,
        sent=10 + len(buffer),
        acked=10,
        received=7,
        finSent=False,
        finReceived=False,
        buffer=buffer,
        peer="10.0.0.2:4000",
        host="10.0.0.1:7001",
        createdAt=1.0,
        detachedSince=2.0,
        hibernatedAt=3.0,
        expiresAt=expires,
        handoffs=2,
        appState=state,
    )


class EncodingTests(SynchronousTestCase):
    def test_roundTrip(self) -> None:
        """
        A record comes back equal.
        """
        r = record()
        self.assertEqual(decodeRecord(*encodeRecord(r)), r)
        r2 = record(state=None, buffer=b"")
        self.assertEqual(decodeRecord(*encodeRecord(r2)), r2)

    def test_tampered(self) -> None:
        """
        Any change to a stored field is caught.
        """
        row = list(encodeRecord(record()))
        for index, value in ((1, row[1].replace('"generation": 3', '"generation": 4')), (2, b"K" * 32), (3, b"abd"), (4, b"sT")):
            bad = list(row)
            bad[index] = value
            self.assertRaises(CorruptRecord, decodeRecord, *bad)

    def test_impossible(self) -> None:
        """
        A record whose buffer does not match its positions is refused even
        with a matching checksum.
        """
        r = record()
        r.sent += 5
        e = self.assertRaises(CorruptRecord, decodeRecord, *encodeRecord(r))
        self.assertIn(r.sessionID.hex(), str(e))

    def test_interface(self) -> None:
        """
        Both stores provide the interface.
        """
        self.assertTrue(verifyObject(ISessionStore, MemorySessionStore()))


class SQLiteTests(TestCase):
    def setUp(self) -> None:
        self.directory = os.path.abspath(self.mktemp())
        self.store = SQLiteSessionStore(reactor, self.directory)
        self.addCleanup(self.store.close)

    @inlineCallbacks
    def test_roundTrip(self) -> Any:
        """
        Save, load, list, purge and delete, on the worker thread.
        """
        self.assertTrue(verifyObject(ISessionStore, self.store))
        a, b = record(b"a" * 16, expires=50.0), record(b"b" * 16, expires=500.0, buffer=b"x" * 100000)
        yield self.store.save(a)
        yield self.store.save(b)
        loaded = yield self.store.load(b"b" * 16)
        self.assertEqual(loaded, b)
        self.assertIsNone((yield self.store.load(b"c" * 16)))
        listed = yield self.store.list()
        self.assertEqual([x[0] for x in listed], [b"a" * 16, b"b" * 16])
        gone = yield self.store.purgeExpired(100.0)
        self.assertEqual(gone, [b"a" * 16])
        yield self.store.delete(b"b" * 16)
        self.assertEqual((yield self.store.list()), [])

    @inlineCallbacks
    def test_permissions(self) -> Any:
        """
        The directory is 0700 and the database 0600: it holds keys.
        """
        yield self.store.save(record())
        self.assertEqual(stat.S_IMODE(os.stat(self.directory).st_mode), 0o700)
        self.assertEqual(stat.S_IMODE(os.stat(self.store.path).st_mode), 0o600)

    @inlineCallbacks
    def test_corruptEntry(self) -> Any:
        """
        A damaged entry fails to load with L{CorruptRecord}; the others
        load.
        """
        yield self.store.save(record(b"a" * 16))
        yield self.store.save(record(b"b" * 16))
        db = sqlite3.connect(self.store.path)
        db.execute("UPDATE sessions SET buffer = ? WHERE sid = ?", (b"ab", b"a" * 16))
        db.execute("UPDATE sessions SET meta = ? WHERE sid = ?", ("{trunc", b"b" * 16))
        db.commit()
        db.close()
        yield self.assertFailure(self.store.load(b"a" * 16), CorruptRecord)
        yield self.assertFailure(self.store.load(b"b" * 16), CorruptRecord)
        yield self.store.save(record(b"c" * 16))
        self.assertIsNotNone((yield self.store.load(b"c" * 16)))
