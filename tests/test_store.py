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
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase
from zope.interface import provider
from zope.interface.verify import verifyObject

from migrate.interfaces import CorruptRecord, ISessionStore, SessionRecord
from migrate.store import (
    MemorySessionStore,
    SQLiteSessionStore,
    StoreUnavailable,
    UnsafeStore,
    decodeRecord,
    encodeRecord,
)

OTHER_UID = 54321


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

    def test_secureKept(self) -> None:
        """
        Whether the session was opened over TLS survives the store (so a
        session restored in a new process still resumes only over TLS); a
        record written before the field existed reads as not secure.
        """
        import dataclasses
        import json

        from migrate.store import _checksum

        r = dataclasses.replace(record(), secure=True)
        self.assertTrue(decodeRecord(*encodeRecord(r)).secure)
        sid, meta, key, buffer, state, _ = encodeRecord(record())
        old = json.dumps({k: v for k, v in json.loads(meta).items() if k != "secure"}, sort_keys=True)
        self.assertFalse(
            decodeRecord(sid, old, key, buffer, state, _checksum(sid, old, key, buffer, state)).secure
        )

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
        self.assertIsNone(MemorySessionStore().broken)


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
        for suffix in ("-wal", "-shm"):
            self.assertEqual(stat.S_IMODE(os.lstat(self.store.path + suffix).st_mode), 0o600)
        self.assertIsNone(self.store.broken)

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


def mode(path: str) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


class SafetyTests(TestCase):
    """
    A store refuses a directory or files that others could use to read or
    replace its session keys, and changes nothing it refuses.
    """

    def directory(self, mode: int = 0o700) -> str:
        path = os.path.abspath(self.mktemp())
        os.mkdir(path)
        os.chmod(path, mode)
        return path

    def open(self, directory: str) -> SQLiteSessionStore:
        store = SQLiteSessionStore(reactor, directory)
        self.addCleanup(store.close)
        return store

    def refused(self, directory: str) -> str:
        """
        The store refuses C{directory}; give back its message.
        """
        e = self.assertRaises(UnsafeStore, SQLiteSessionStore, reactor, directory)
        self.assertIsInstance(e, ValueError)
        self.assertNotIn("\n", str(e))
        return str(e)

    def test_worldWritableDirectory(self) -> None:
        """
        A directory writable by anyone is refused, with its path, its mode
        and what to do; nothing is made in it and its mode is unchanged.
        """
        directory = self.directory(0o777)
        message = self.refused(directory)
        self.assertIn(directory, message)
        self.assertIn("0777", message)
        self.assertIn("writable by group or others", message)
        self.assertIn("chmod 700", message)
        self.assertEqual(os.listdir(directory), [])
        self.assertEqual(mode(directory), 0o777)

    def test_groupWritableDirectory(self) -> None:
        """
        A group-writable directory is refused too.
        """
        directory = self.directory(0o770)
        message = self.refused(directory)
        self.assertIn(directory, message)
        self.assertIn("0770", message)
        self.assertEqual(os.listdir(directory), [])

    def test_readableDirectory(self) -> None:
        """
        A directory others may read but not write is accepted as it is (the
        files in it are 0600).
        """
        directory = self.directory(0o755)
        store = self.open(directory)
        self.assertEqual(mode(directory), 0o755)
        self.assertEqual(mode(store.path), 0o600)

    def giveAway(self, path: str) -> int:
        """
        Make C{path} another user's: really as root (root is refused too),
        otherwise by making the store believe it runs as another user.

        @return: the owner's uid.
        """
        if os.geteuid() == 0:
            os.chown(path, OTHER_UID, -1)
            return OTHER_UID
        owner = os.lstat(path).st_uid
        self.patch(os, "geteuid", lambda: owner + 1)
        return owner

    def test_directoryOfAnotherUser(self) -> None:
        """
        A directory owned by another user is refused, even to root.
        """
        directory = self.directory()
        owner = self.giveAway(directory)
        message = self.refused(directory)
        self.assertIn(directory, message)
        self.assertIn("owned by uid %d" % (owner,), message)
        self.assertEqual(os.listdir(directory), [])

    def test_notADirectory(self) -> None:
        """
        A file where the directory should be is refused.
        """
        path = os.path.abspath(self.mktemp())
        with open(path, "w"):
            pass
        self.assertIn("not a directory", self.refused(path))

    def test_symlinkedDatabase(self) -> None:
        """
        A database that is a symbolic link is refused: its target is
        neither opened nor changed.
        """
        directory = self.directory()
        target = os.path.abspath(self.mktemp())
        with open(target, "wb") as f:
            f.write(b"not yours")
        os.chmod(target, 0o644)
        link = os.path.join(directory, "sessions.sqlite3")
        os.symlink(target, link)
        message = self.refused(directory)
        self.assertIn(link, message)
        self.assertIn("symbolic link", message)
        self.assertEqual(mode(target), 0o644)
        with open(target, "rb") as f:
            self.assertEqual(f.read(), b"not yours")
        self.assertEqual(sorted(os.listdir(directory)), ["sessions.sqlite3"])

    def test_danglingSymlinkedDatabase(self) -> None:
        """
        A database that is a link to nothing is refused: its target is not
        created.
        """
        directory = self.directory()
        target = os.path.abspath(self.mktemp())
        os.symlink(target, os.path.join(directory, "sessions.sqlite3"))
        self.assertIn("symbolic link", self.refused(directory))
        self.assertFalse(os.path.lexists(target))

    def test_symlinkedJournal(self) -> None:
        """
        A write-ahead log or journal that is a symbolic link is refused, its
        target unchanged.
        """
        for suffix in ("-wal", "-shm", "-journal"):
            directory = self.directory()
            target = os.path.abspath(self.mktemp())
            with open(target, "wb") as f:
                f.write(b"x")
            os.chmod(target, 0o644)
            os.symlink(target, os.path.join(directory, "sessions.sqlite3" + suffix))
            message = self.refused(directory)
            self.assertIn("sessions.sqlite3" + suffix, message)
            self.assertIn("symbolic link", message)
            self.assertEqual(mode(target), 0o644)

    def test_databaseNotRegular(self) -> None:
        """
        A database that is a directory, or a FIFO, is refused (without
        blocking on the FIFO).
        """
        directory = self.directory()
        os.mkdir(os.path.join(directory, "sessions.sqlite3"))
        message = self.refused(directory)
        self.assertIn(os.path.join(directory, "sessions.sqlite3"), message)
        self.assertIn("not a regular file (a directory)", message)
        directory = self.directory()
        os.mkfifo(os.path.join(directory, "sessions.sqlite3"))
        self.assertIn("not a regular file (a FIFO)", self.refused(directory))

    def test_databaseOfAnotherUser(self) -> None:
        """
        A database owned by another user is refused, even to root.
        """
        directory = self.directory()
        path = os.path.join(directory, "sessions.sqlite3")
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        if os.geteuid() != 0:
            raise SkipTest("needs root to give a file away")
        owner = self.giveAway(path)
        message = self.refused(directory)
        self.assertIn(path, message)
        self.assertIn("owned by uid %d" % (owner,), message)

    def test_leftoverJournal(self) -> None:
        """
        A journal without its database is refused (SQLite would apply it to
        the new, empty one), and no database is made.
        """
        for suffix in ("-wal", "-journal"):
            directory = self.directory()
            journal = os.path.join(directory, "sessions.sqlite3" + suffix)
            os.close(os.open(journal, os.O_CREAT | os.O_WRONLY, 0o600))
            message = self.refused(directory)
            self.assertIn(journal, message)
            self.assertIn("remove it", message)
            self.assertEqual(os.listdir(directory), ["sessions.sqlite3" + suffix])

    @inlineCallbacks
    def test_fromScratch(self) -> Any:
        """
        A store made from nothing (its parent missing too) has its
        directory 0700 and its files 0600.
        """
        directory = os.path.join(os.path.abspath(self.mktemp()), "deeper", "store")
        store = self.open(directory)
        yield store.save(record())
        self.assertEqual(mode(directory), 0o700)
        self.assertEqual(mode(store.path), 0o600)
        for suffix in ("-wal", "-shm"):
            self.assertEqual(mode(store.path + suffix), 0o600)

    @inlineCallbacks
    def test_looseDatabaseTightened(self) -> Any:
        """
        A database of ours that others may read is made 0600 (through a
        descriptor, not its path) and used.
        """
        directory = self.directory()
        path = os.path.join(directory, "sessions.sqlite3")
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        os.chmod(path, 0o644)
        store = self.open(directory)
        self.assertEqual(mode(path), 0o600)
        yield store.save(record())
        self.assertEqual((yield store.load(record().sessionID)), record())


class BrokenStoreTests(TestCase):
    """
    A store whose database stops working at run time fails every call with
    L{StoreUnavailable}, says why in C{broken}, and logs it once.
    """

    def setUp(self) -> None:
        self.directory = os.path.abspath(self.mktemp())
        self.store = SQLiteSessionStore(reactor, self.directory)
        self.addCleanup(self.store.close)
        self.events: list[LogEvent] = []

        @provider(ILogObserver)
        def observe(event: LogEvent) -> None:
            self.events.append(event)

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)

    def storeEvents(self) -> list[LogEvent]:
        return [e for e in self.events if e.get("log_namespace", "").startswith("migrate.store")]

    @inlineCallbacks
    def failing(self, count: int = 50) -> Any:
        """
        Every call fails cleanly: C{count} lookups, and one of each other
        kind.

        @return: (a Deferred firing with) the last lookup's exception.
        """
        error = None
        for i in range(count):
            error = yield self.assertFailure(self.store.load(bytes([i]) * 16), StoreUnavailable)
        yield self.assertFailure(self.store.save(record()), StoreUnavailable)
        yield self.assertFailure(self.store.delete(b"a" * 16), StoreUnavailable)
        yield self.assertFailure(self.store.list(), StoreUnavailable)
        yield self.assertFailure(self.store.purgeExpired(1000.0), StoreUnavailable)
        return error

    def assertLoggedOnce(self) -> None:
        """
        Exactly one event from the store (an error), and no traceback from
        anyone.
        """
        events = self.storeEvents()
        self.assertEqual(len(events), 1, events)
        self.assertEqual(events[0]["log_level"].name, "error")
        self.assertEqual([e for e in self.events if "log_failure" in e], [])

    @inlineCallbacks
    def test_overwrittenWithGarbage(self) -> Any:
        """
        A database overwritten in place with garbage: every call fails with
        a one-line L{StoreUnavailable} naming the file, C{broken} says
        why, and one log line for them all.
        """
        yield self.store.save(record())
        self.assertEqual((yield self.store.load(record().sessionID)), record())
        with open(self.store.path, "r+b") as f:
            f.write(b"garbage " * 4096)
        error = yield self.failing()
        self.assertIn(self.store.path, str(error))
        self.assertNotIn("\n", str(error))
        self.assertIn("not an SQLite database", str(error))
        self.assertEqual(self.store.broken, error.reason)
        self.assertLoggedOnce()
        self.assertIn(self.store.path, self.storeEvents()[0]["reason"])

    @inlineCallbacks
    def test_replacedWithGarbage(self) -> Any:
        """
        A database replaced by another file while in use: its old
        write-ahead log must go first (it would be applied to the new
        file); then the new file is opened, and fails as SQLite says.  Once
        it is removed, the store works again (empty), and says so once.
        """
        yield self.store.save(record())
        garbage = os.path.join(self.directory, "garbage")
        with open(garbage, "wb") as f:
            f.write(b"SQLite format 3\x00" + b"garbage " * 4096)
        os.chmod(garbage, 0o600)
        os.replace(garbage, self.store.path)
        error = yield self.failing()
        self.assertIn(self.store.path + "-wal", str(error))
        self.assertIn("belongs to the database that was replaced", str(error))
        self.assertEqual(self.store.broken, error.reason)
        self.assertLoggedOnce()
        for suffix in ("-wal", "-shm"):
            os.remove(self.store.path + suffix)
        error = yield self.failing()
        self.assertIn("%s: file is not a database (DatabaseError)" % (self.store.path,), str(error))
        self.assertEqual(self.store.broken, error.reason)
        self.assertLoggedOnce()
        os.remove(self.store.path)
        self.assertIsNone((yield self.store.load(record().sessionID)))
        self.assertIsNone(self.store.broken)
        events = self.storeEvents()
        self.assertEqual(len(events), 2)
        self.assertEqual(events[1]["log_level"].name, "info")
        self.assertEqual(mode(self.store.path), 0o600)

    @inlineCallbacks
    def test_replacedWithSymlink(self) -> Any:
        """
        A database replaced at run time by a link is refused when it is
        reopened, its target untouched.
        """
        yield self.store.save(record())
        target = os.path.abspath(self.mktemp())
        with open(target, "wb") as f:
            f.write(b"not yours")
        os.chmod(target, 0o644)
        os.remove(self.store.path)
        os.symlink(target, self.store.path)
        error = yield self.failing(5)
        self.assertIn("symbolic link", str(error))
        self.assertEqual(mode(target), 0o644)
        with open(target, "rb") as f:
            self.assertEqual(f.read(), b"not yours")
        self.assertLoggedOnce()

    @inlineCallbacks
    def test_logInterval(self) -> Any:
        """
        While it stays broken, the store logs again at most once every
        C{logInterval} seconds.
        """
        now = [1000.0]
        self.patch(self.store, "_seconds", lambda: now[0])
        with open(self.store.path, "r+b") as f:
            f.write(b"garbage " * 4096)
        yield self.failing(5)
        now[0] += 30
        yield self.failing(5)
        self.assertLoggedOnce()
        now[0] += 31
        yield self.failing(5)
        events = self.storeEvents()
        self.assertEqual(len(events), 2)
        self.assertIn("still unusable", events[1]["log_format"])
        now[0] += 1
        yield self.failing(5)
        self.assertEqual(len(self.storeEvents()), 2)
