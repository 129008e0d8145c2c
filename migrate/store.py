# -*- test-case-name: tests.test_store -*-
"""
Session stores: where hibernated sessions wait.

  - L{SQLiteSessionStore}: the embedded default, one SQLite file in a
    directory of the user's (created with mode 0700, the file 0600: it
    holds session keys).  Every database call runs on one dedicated thread
    of a Twisted thread pool, so a large buffer or a slow disk never stalls
    the reactor.
  - L{MemorySessionStore}: the same behaviour in memory, synchronous, for
    tests.

Each entry carries a SHA-256 checksum over all its fields; an entry that
fails it, is truncated or holds impossible positions is reported as
L{CorruptRecord} (clearly, with its session id) and never stops other
entries from loading.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from typing import Any, Callable, List, Optional, TypeVar

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from .interfaces import CorruptRecord, ISessionStore, SessionRecord

__all__ = ["SQLiteSessionStore", "MemorySessionStore", "encodeRecord", "decodeRecord"]

T = TypeVar("T")

_META_FIELDS = (
    "side",
    "generation",
    "sent",
    "acked",
    "received",
    "finSent",
    "finReceived",
    "peer",
    "host",
    "createdAt",
    "detachedSince",
    "hibernatedAt",
    "expiresAt",
    "handoffs",
    "policy",
)


def _checksum(sid: bytes, meta: str, key: bytes, buffer: bytes, state: Optional[bytes]) -> bytes:
    h = hashlib.sha256()
    for part in (sid, meta.encode("utf-8"), key, buffer, state if state is not None else b"\xff-none"):
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.digest()


def encodeRecord(record: SessionRecord) -> tuple[bytes, str, bytes, bytes, Optional[bytes], bytes]:
    """
    A record as stored: C{(sid, meta, key, buffer, appState, checksum)}.
    """
    meta = json.dumps({name: getattr(record, name) for name in _META_FIELDS}, sort_keys=True)
    checksum = _checksum(record.sessionID, meta, record.key, record.buffer, record.appState)
    return record.sessionID, meta, record.key, record.buffer, record.appState, checksum


def decodeRecord(
    sid: bytes, meta: str, key: bytes, buffer: bytes, state: Optional[bytes], checksum: bytes
) -> SessionRecord:
    """
    Check and decode a stored record.

    @raise CorruptRecord: it is not intact or not possible.
    """
    try:
        if _checksum(sid, meta, key, buffer, state) != checksum:
            raise CorruptRecord(sid, "checksum mismatch")
        fields = json.loads(meta)
        record = SessionRecord(
            sessionID=bytes(sid),
            key=bytes(key),
            buffer=bytes(buffer),
            appState=bytes(state) if state is not None else None,
            **{name: fields.get(name) if name == "policy" else fields[name] for name in _META_FIELDS},
        )
    except CorruptRecord:
        raise
    except (ValueError, KeyError, TypeError) as e:
        raise CorruptRecord(sid, "undecodable (%s)" % (e,))
    if len(record.key) != 32 or len(record.sessionID) != 16:
        raise CorruptRecord(sid, "bad key or id length")
    if not 0 <= record.acked <= record.sent + record.finSent:
        raise CorruptRecord(sid, "impossible positions")
    if len(record.buffer) != record.sent - min(record.acked, record.sent):
        raise CorruptRecord(
            sid, "buffer holds %d bytes, positions say %d" % (len(record.buffer), record.sent - record.acked)
        )
    return record


@implementer(ISessionStore)
class MemorySessionStore:
    """
    An in-memory store with the behaviour of the SQLite one; its Deferreds
    have fired by the time they are returned.

    @ivar rows: the stored rows by session id (tests may tamper with them).
    """

    def __init__(self) -> None:
        self.rows: dict[bytes, tuple[bytes, str, bytes, bytes, Optional[bytes], bytes]] = {}

    def save(self, record: SessionRecord) -> Deferred[None]:
        self.rows[record.sessionID] = encodeRecord(record)
        return succeed(None)

    def load(self, sessionID: bytes) -> Deferred[Optional[SessionRecord]]:
        row = self.rows.get(sessionID)
        if row is None:
            return succeed(None)
        try:
            return succeed(decodeRecord(*row))
        except CorruptRecord as e:
            return fail(e)

    def delete(self, sessionID: bytes) -> Deferred[None]:
        self.rows.pop(sessionID, None)
        return succeed(None)

    def list(self, side: Optional[str] = None) -> Deferred[List[tuple[bytes, str, float, str]]]:
        out = []
        for sid, meta, *_ in self.rows.values():
            try:
                fields = json.loads(meta)
                entry = (sid, fields["side"], fields["expiresAt"], fields["peer"])
            except (ValueError, KeyError):
                entry = (sid, "?", 0.0, "?")
            if side is None or entry[1] == side:
                out.append(entry)
        return succeed(out)

    def purgeExpired(self, now: float) -> Deferred[List[bytes]]:
        gone = []
        for sid, meta, *_ in list(self.rows.values()):
            try:
                expires = json.loads(meta)["expiresAt"]
            except (ValueError, KeyError):
                continue
            if expires <= now:
                del self.rows[sid]
                gone.append(sid)
        return succeed(gone)

    def close(self) -> Deferred[None]:
        return succeed(None)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    sid BLOB PRIMARY KEY,
    side TEXT NOT NULL,
    expiresAt REAL NOT NULL,
    peer TEXT NOT NULL,
    meta TEXT NOT NULL,
    key BLOB NOT NULL,
    buffer BLOB NOT NULL,
    appState BLOB,
    checksum BLOB NOT NULL
)
"""


@implementer(ISessionStore)
class SQLiteSessionStore:
    """
    Sessions in C{DIRECTORY/sessions.sqlite3}, reached from one dedicated
    worker thread.

    @ivar path: the database file.
    """

    def __init__(self, reactor: Any, directory: str) -> None:
        """
        @param reactor: provides C{IReactorThreads} (for the worker thread)
            and C{IReactorCore}.
        @param directory: created (mode 0700) if missing.
        """
        self._reactor = reactor
        os.makedirs(directory, mode=0o700, exist_ok=True)
        self.path = os.path.join(directory, "sessions.sqlite3")
        if not os.path.exists(self.path):
            fd = os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
        os.chmod(self.path, 0o600)
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name="migrate-store")
        self._pool.start()
        addTrigger = getattr(reactor, "addSystemEventTrigger", None)
        if addTrigger is not None:
            addTrigger("before", "shutdown", self.close)
        self._db: Optional[sqlite3.Connection] = None
        self._closed = False

    def _connection(self) -> sqlite3.Connection:
        # Only ever called on the worker thread.
        if self._db is None:
            db = sqlite3.connect(self.path, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(_SCHEMA)
            db.commit()
            for suffix in ("-wal", "-shm"):
                if os.path.exists(self.path + suffix):
                    os.chmod(self.path + suffix, 0o600)
            self._db = db
        return self._db

    def _run(self, f: Callable[[sqlite3.Connection], T]) -> Deferred[T]:
        if self._closed:
            return fail(RuntimeError("session store is closed"))
        return deferToThreadPool(self._reactor, self._pool, lambda: f(self._connection()))

    def save(self, record: SessionRecord) -> Deferred[None]:
        row = encodeRecord(record)

        def save(db: sqlite3.Connection) -> None:
            sid, meta, key, buffer, state, checksum = row
            db.execute(
                "INSERT OR REPLACE INTO sessions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (sid, record.side, record.expiresAt, record.peer, meta, key, buffer, state, checksum),
            )
            db.commit()

        return self._run(save)

    def load(self, sessionID: bytes) -> Deferred[Optional[SessionRecord]]:
        def load(db: sqlite3.Connection) -> Optional[SessionRecord]:
            row = db.execute(
                "SELECT sid, meta, key, buffer, appState, checksum FROM sessions WHERE sid = ?",
                (sessionID,),
            ).fetchone()
            if row is None:
                return None
            return decodeRecord(*row)

        return self._run(load)

    def delete(self, sessionID: bytes) -> Deferred[None]:
        def delete(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM sessions WHERE sid = ?", (sessionID,))
            db.commit()

        return self._run(delete)

    def list(self, side: Optional[str] = None) -> Deferred[List[tuple[bytes, str, float, str]]]:
        def listing(db: sqlite3.Connection) -> List[tuple[bytes, str, float, str]]:
            if side is None:
                rows = db.execute("SELECT sid, side, expiresAt, peer FROM sessions ORDER BY expiresAt")
            else:
                rows = db.execute(
                    "SELECT sid, side, expiresAt, peer FROM sessions WHERE side = ? ORDER BY expiresAt",
                    (side,),
                )
            return [(bytes(r[0]), r[1], r[2], r[3]) for r in rows]

        return self._run(listing)

    def purgeExpired(self, now: float) -> Deferred[List[bytes]]:
        def purge(db: sqlite3.Connection) -> List[bytes]:
            gone = [bytes(r[0]) for r in db.execute("SELECT sid FROM sessions WHERE expiresAt <= ?", (now,))]
            db.execute("DELETE FROM sessions WHERE expiresAt <= ?", (now,))
            db.commit()
            return gone

        return self._run(purge)

    def close(self) -> Deferred[None]:
        if self._closed:
            return succeed(None)

        def close(db: sqlite3.Connection) -> None:
            db.close()
            self._db = None

        d = self._run(close)
        self._closed = True

        def stop(result: object) -> object:
            self._pool.stop()
            return result

        return d.addBoth(stop)
