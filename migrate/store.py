# -*- test-case-name: tests.test_store -*-
"""
Session stores: where hibernated sessions wait.

  - L{SQLiteSessionStore}: the embedded default, one SQLite file in a
    directory of the user's (created with mode 0700, the file 0600: it
    holds session keys).  A directory that others can write to or that is
    not the user's, and a database or journal that is a link, not a regular
    file or not the user's, are refused with L{UnsafeStore}.  Every
    database call runs on one dedicated thread of a Twisted thread pool, so
    a large buffer or a slow disk never stalls the reactor.  A database
    that stops working at run time makes calls fail with
    L{StoreUnavailable} and is logged once.
  - L{MemorySessionStore}: the same behaviour in memory, synchronous, for
    tests.

Each entry carries a SHA-256 checksum over all its fields; an entry that
fails it, is truncated or holds impossible positions is reported as
L{CorruptRecord} (clearly, with its session id) and never stops other
entries from loading.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pwd
import sqlite3
import stat
import time
from typing import Any, Callable, List, Optional, TypeVar

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from .errors import CorruptRecord, StoreUnavailable, UnsafeStore
from .interfaces import ISessionStore, SessionRecord

__all__ = [
    "SQLiteSessionStore",
    "MemorySessionStore",
    "UnsafeStore",
    "StoreUnavailable",
    "checkDirectory",
    "checkFile",
    "encodeRecord",
    "decodeRecord",
]

T = TypeVar("T")

#: Fields that records written by earlier versions may lack, and their
#: value then.
_OPTIONAL_FIELDS: dict[str, object] = {
    "policy": None,
    "secure": False,
    "kind": "stream",
    "channels": None,
}

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
    "secure",
    "kind",
    "channels",
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
            **{
                name: fields.get(name, _OPTIONAL_FIELDS[name]) if name in _OPTIONAL_FIELDS else fields[name]
                for name in _META_FIELDS
            },
        )
    except CorruptRecord:
        raise
    except (ValueError, KeyError, TypeError) as e:
        raise CorruptRecord(sid, "undecodable (%s)" % (e,))
    if len(record.key) != 32 or len(record.sessionID) != 16:
        raise CorruptRecord(sid, "bad key or id length")
    if not 0 <= record.acked <= record.sent + record.finSent:
        raise CorruptRecord(sid, "impossible positions")
    if record.channels is not None:
        _checkChannels(sid, record.channels)
    if len(record.buffer) != record.sent - min(record.acked, record.sent):
        raise CorruptRecord(
            sid, "buffer holds %d bytes, positions say %d" % (len(record.buffer), record.sent - record.acked)
        )
    return record


#: The most channels a stored record may hold.
MAX_STORED_CHANNELS = 65536


def _checkChannels(sid: bytes, channels: object) -> None:
    """
    Check the channels of a stored record.

    @raise CorruptRecord: they are not possible.
    """
    import base64

    def bad(why: str) -> CorruptRecord:
        return CorruptRecord(sid, "channels: %s" % (why,))

    if not isinstance(channels, dict) or not isinstance(channels.get("list"), list):
        raise bad("not a table")
    entries = channels["list"]
    if not isinstance(channels.get("next"), int) or len(entries) > MAX_STORED_CHANNELS:
        raise bad("bad size or numbering")
    seen = set()
    for entry in entries:
        if not isinstance(entry, dict):
            raise bad("an entry is not a table")
        try:
            number = entry["channel"]
            name = entry["name"]
            sent, acked, received = entry["sent"], entry["acked"], entry["received"]
            finSent, finReceived = entry["finSent"], entry["finReceived"]
            buffer = base64.b64decode(entry["buffer"], validate=True)
            state = entry["appState"]
            if state is not None:
                base64.b64decode(state, validate=True)
        except (KeyError, TypeError, ValueError) as e:
            raise bad("undecodable entry (%s)" % (e,))
        if not (isinstance(number, int) and 0 < number < 2**32) or number in seen:
            raise bad("bad channel number %r" % (number,))
        seen.add(number)
        if not isinstance(name, str) or len(name.encode("utf-8")) > 200:
            raise bad("bad name")
        if not all(isinstance(v, int) and v >= 0 for v in (sent, acked, received)):
            raise bad("bad positions")
        if not 0 <= acked <= sent + bool(finSent) or len(buffer) != sent - min(acked, sent):
            raise bad("impossible positions for channel %d" % (number,))


@implementer(ISessionStore)
class MemorySessionStore:
    """
    An in-memory store with the behaviour of the SQLite one; its Deferreds
    have fired by the time they are returned.

    @ivar rows: the stored rows by session id (tests may tamper with them).
    @ivar broken: always C{None} (as L{SQLiteSessionStore.broken}; tests
        may set it).
    """

    def __init__(self) -> None:
        self.rows: dict[bytes, tuple[bytes, str, bytes, bytes, Optional[bytes], bytes]] = {}
        self.broken: Optional[str] = None

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



def logStoreFailure(log: Logger, failure: Failure, what: str, **fields: Any) -> None:
    """
    Log a store operation's failure with C{log}, but not
    L{StoreUnavailable}: the store logs that itself, once.
    """
    if not failure.check(StoreUnavailable):
        log.failure(what, failure, **fields)

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


_MAGIC = b"SQLite format 3\x00"

# The files SQLite keeps beside the database: the write-ahead log and its
# index (WAL mode, which the store uses), and the rollback journal (should
# SQLite ever fall back to it).
_JOURNALS = ("-wal", "-shm", "-journal")

# Never follow a link, never block on a FIFO, never leak into a child.
_OPEN_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC

_log = Logger()



def _user(uid: int) -> str:
    """
    A uid, with its name when it has one.
    """
    try:
        return "uid %d (%s)" % (uid, pwd.getpwuid(uid).pw_name)
    except KeyError:
        return "uid %d" % (uid,)


def _kindOf(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return name
    return "of type %o" % (stat.S_IFMT(mode),)


def checkDirectory(directory: str) -> None:
    """
    Make the store's directory (mode 0700) if it is missing, and make sure
    that only the current user can change what is in it: it is a
    directory, owned by the current (effective) user, and writable by
    neither group nor others.  The same holds for root: a directory of
    another user is refused.  A symbolic link to a directory is followed
    and its target checked; the directories above it are not checked.

    @raise UnsafeStore: it is not safe; nothing was changed.
    @raise OSError: it could not be made or examined.
    """
    parent = os.path.dirname(os.path.abspath(directory))
    os.makedirs(parent, exist_ok=True)
    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:
        pass
    st = os.stat(directory)
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeStore(
            directory, "store directory %s is not a directory (%s): give a directory" % (directory, _kindOf(st.st_mode))
        )
    uid = os.geteuid()
    if st.st_uid != uid:
        raise UnsafeStore(
            directory,
            "store directory %s is owned by %s, not by %s that runs the store: chown it or choose another directory"
            % (directory, _user(st.st_uid), _user(uid)),
        )
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o022:
        raise UnsafeStore(
            directory,
            "store directory %s is writable by group or others (mode %04o): chmod 700 %s" % (directory, mode, directory),
        )


def _refuseUnsafeFile(path: str, what: str, st: os.stat_result) -> None:
    """
    Refuse a store file that is a link, not a regular file, or not ours.

    @param st: its C{lstat} (or the C{fstat} of a descriptor opened with
        C{O_NOFOLLOW}).
    @raise UnsafeStore: it is one of those.
    """
    if stat.S_ISLNK(st.st_mode):
        raise UnsafeStore(
            path, "store %s %s is a symbolic link: remove it (the store makes its own file)" % (what, path)
        )
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeStore(
            path, "store %s %s is not a regular file (%s): remove it" % (what, path, _kindOf(st.st_mode))
        )
    uid = os.geteuid()
    if st.st_uid != uid:
        raise UnsafeStore(
            path,
            "store %s %s is owned by %s, not by %s that runs the store: remove it or chown it"
            % (what, path, _user(st.st_uid), _user(uid)),
        )


def checkFile(path: str, what: str, create: bool) -> Optional[os.stat_result]:
    """
    Check one of the store's files before SQLite opens it, without ever
    following a link.

    A missing database is created here, mode 0600, with
    C{O_CREAT | O_EXCL | O_NOFOLLOW}: the file SQLite then opens is one the
    store made.  An existing file must be a regular file owned by the
    current user (L{_refuseUnsafeFile}, on its C{lstat}); if group or others
    may read it, it is opened with C{O_NOFOLLOW}, checked again on the
    descriptor (same inode, still regular and ours) and C{fchmod}ed to 0600
    through that descriptor, never through a path.

    These checks are race-free because the directory has been checked
    first (L{checkDirectory}): nobody but the current user (and root) can
    add, remove or rename an entry in it between a check and SQLite's
    open.

    @param what: C{"database"} or C{"journal"}, for messages.
    @param create: whether to create the file if it is missing.
    @return: its status, or C{None} if it is missing (and not created).
    @raise UnsafeStore: it is not safe to use.
    @raise OSError: it could not be created or examined.
    """
    if create:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _OPEN_FLAGS, 0o600)
        except FileExistsError:
            pass
        else:
            try:
                return os.fstat(fd)
            finally:
                os.close(fd)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        if create:
            raise
        return None
    _refuseUnsafeFile(path, what, st)
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        try:
            fd = os.open(path, os.O_RDONLY | _OPEN_FLAGS)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise UnsafeStore(path, "store %s %s is a symbolic link: remove it" % (what, path))
            raise
        try:
            now = os.fstat(fd)
            if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
                raise UnsafeStore(path, "store %s %s changed while it was being checked" % (what, path))
            _refuseUnsafeFile(path, what, now)
            os.fchmod(fd, 0o600)
        finally:
            os.close(fd)
        _log.warn(
            "store {what} {path} was mode {mode}: now 0600 (it holds session keys)",
            what=what,
            path=path,
            mode="%04o" % (mode,),
        )
    return st


def _reasonFor(path: str, error: BaseException) -> str:
    """
    A one-line reason for an error met while using the database at
    C{path}.
    """
    if isinstance(error, (UnsafeStore, StoreUnavailable)):
        return str(error)
    if isinstance(error, OSError):
        if error.filename is not None:
            return "%s: %s" % (error.filename, error.strerror or error)
        return "%s: %s" % (path, error.strerror or error)
    return "%s: %s (%s)" % (path, error, type(error).__name__)


@implementer(ISessionStore)
class SQLiteSessionStore:
    """
    Sessions in C{DIRECTORY/sessions.sqlite3}, reached from one dedicated
    worker thread.

    Safety: the directory must be the current user's and writable by
    nobody else, and the database and its journals regular files of that
    user, never links (L{checkDirectory}, L{checkFile}); otherwise the
    constructor raises L{UnsafeStore}.  The same checks run again whenever
    the database is reopened.

    At run time, a database that cannot be used (SQLite failing, the file
    replaced by something that is not a database, its header overwritten)
    makes every call fail with L{StoreUnavailable}, and C{broken} says why;
    the condition is logged once, then at most once every C{logInterval}
    seconds while it lasts, and once when the store works again.  The
    database is reopened (and checked again) on the next call after a
    failure, so the store recovers on its own once the file is fixed or
    removed (a removed file is made again, empty).

    @ivar path: the database file.
    @ivar directory: its directory.
    @ivar broken: why the store is unusable (one line naming the path),
        or C{None} while it works.
    @ivar logInterval: seconds between two log lines while it stays
        broken.
    """

    log = Logger()

    def __init__(self, reactor: Any, directory: str, logInterval: float = 60.0) -> None:
        """
        @param reactor: provides C{IReactorThreads} (for the worker thread)
            and C{IReactorCore}.
        @param directory: created (mode 0700) if missing.
        @param logInterval: seconds between two log lines while the store
            stays broken.

        @raise UnsafeStore: the directory or a file in it is not safe to
            keep session keys in (the message says what to fix).
        @raise OSError: the directory or the database could not be made.
        """
        self._reactor = reactor
        self._seconds: Callable[[], float] = getattr(reactor, "seconds", time.time)
        self.directory = directory
        self.path = os.path.join(directory, "sessions.sqlite3")
        self.logInterval = logInterval
        self.broken: Optional[str] = None
        self._brokenSince = 0.0
        self._loggedAt = 0.0
        self._failures = 0
        self._journals: set[tuple[int, int]] = set()
        self._staleJournals: set[tuple[int, int]] = set()
        self._checkAll()
        self._db: Optional[sqlite3.Connection] = None
        self._fd: Optional[int] = None
        self._closed = False
        # Started on first use: a process that never uses its store (one
        # that fails to listen, say) has no thread to keep it alive.
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name="migrate-store")
        addTrigger = getattr(reactor, "addSystemEventTrigger", None)
        if addTrigger is not None:
            addTrigger("before", "shutdown", self._closeAtShutdown)

    def _checkAll(self) -> None:
        """
        Check (and make, if missing) the directory and the database, and
        check any journal, before SQLite opens them.
        """
        checkDirectory(self.directory)
        existing = checkFile(self.path, "database", create=False)
        for suffix in _JOURNALS:
            journal = self.path + suffix
            st = checkFile(journal, "journal", create=False)
            if st is None:
                continue
            # SQLite would apply either to the database it opens: part of
            # another one, corrupt.
            if (st.st_dev, st.st_ino) in self._staleJournals:
                raise UnsafeStore(
                    journal,
                    "store journal %s belongs to the database that was replaced or removed while in use: remove it"
                    % (journal,),
                )
            if existing is None:
                raise UnsafeStore(
                    journal,
                    "store journal %s is left from a database that is gone: remove it" % (journal,),
                )
        if existing is None:
            checkFile(self.path, "database", create=True)

    # On the worker thread only, from here to close().

    def _open(self) -> sqlite3.Connection:
        """
        Check the files and open the database.  The store keeps a
        descriptor of its own on the file (opened with C{O_NOFOLLOW}): it
        tells whether the file at the path is still the one opened, and
        whether its header is still SQLite's.  It is closed only after
        SQLite's connection (closing another descriptor of a file would
        drop SQLite's locks on it).
        """
        self._checkAll()
        fd = os.open(self.path, os.O_RDONLY | _OPEN_FLAGS)
        try:
            opened = os.fstat(fd)
            _refuseUnsafeFile(self.path, "database", opened)
            self._checkHeader(fd)
            db = sqlite3.connect(self.path, check_same_thread=False)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.execute(_SCHEMA)
                db.commit()
                now = os.lstat(self.path)
                if (now.st_dev, now.st_ino) != (opened.st_dev, opened.st_ino):
                    raise StoreUnavailable("%s was replaced while it was being opened" % (self.path,))
                # SQLite made these with the database's mode; check anyway
                # (only look: opening and closing them would drop SQLite's
                # locks).
                journals = set()
                for suffix in _JOURNALS:
                    try:
                        st = os.lstat(self.path + suffix)
                    except FileNotFoundError:
                        continue
                    journals.add((st.st_dev, st.st_ino))
                    _refuseUnsafeFile(self.path + suffix, "journal", st)
                    if stat.S_IMODE(st.st_mode) & 0o077:
                        raise UnsafeStore(
                            self.path + suffix,
                            "store journal %s has mode %04o: chmod 600 it"
                            % (self.path + suffix, stat.S_IMODE(st.st_mode)),
                        )
            except BaseException:
                db.close()
                raise
        except BaseException:
            os.close(fd)
            raise
        self._db, self._fd = db, fd
        self._journals, self._staleJournals = journals, set()
        return db

    def _drop(self) -> None:
        """
        Forget the connection (and then our descriptor); errors closing
        them do not matter any more.
        """
        db, fd, self._db, self._fd = self._db, self._fd, None, None
        if db is not None:
            try:
                db.close()
            except sqlite3.Error:
                pass
        if fd is not None:
            os.close(fd)

    def _connection(self) -> sqlite3.Connection:
        """
        The open connection, once the file at the path is checked to be
        the one it has open, with an SQLite header; a file replaced or
        removed is reopened (and checked) now.

        @raise StoreUnavailable: the file's header is not SQLite's (the
            connection is kept, unused, so that SQLite writes nothing more
            into that file).
        """
        if self._db is None or self._fd is None:
            return self._open()
        try:
            now: Optional[os.stat_result] = os.lstat(self.path)
        except FileNotFoundError:
            now = None
        opened = os.fstat(self._fd)
        if now is None or (now.st_dev, now.st_ino) != (opened.st_dev, opened.st_ino):
            # Replaced or removed under us.  Its write-ahead log and index
            # are still at their paths (SQLite leaves them when the
            # database has moved): they must not be applied to whatever is
            # there now.
            self._staleJournals |= self._journals
            self._drop()
            return self._open()
        self._checkHeader(self._fd)
        return self._db

    def _checkHeader(self, fd: int) -> None:
        """
        Make sure that the file starts as an SQLite database does (or is
        empty: new).  On disk, a database in WAL mode always keeps a valid
        header.

        @raise StoreUnavailable: it does not.
        """
        header = os.pread(fd, len(_MAGIC), 0)
        if header and header != _MAGIC:
            raise StoreUnavailable("%s is not an SQLite database (its header is not SQLite's)" % (self.path,))

    def _work(self, f: Callable[[sqlite3.Connection], T]) -> T:
        """
        Run C{f} on the connection; turn a failing database into
        L{StoreUnavailable}, dropping the connection so that the next call
        reopens it.
        """
        try:
            return f(self._connection())
        except StoreUnavailable:
            raise
        except sqlite3.ProgrammingError:
            # A bug of ours, not a state of the store.
            raise
        except (sqlite3.Error, OSError, UnsafeStore) as e:
            self._drop()
            raise StoreUnavailable(_reasonFor(self.path, e)) from None

    # On the reactor thread.

    def _run(self, f: Callable[[sqlite3.Connection], T]) -> Deferred[T]:
        if self._closed:
            return fail(RuntimeError("session store is closed"))
        if not self._pool.started:
            self._pool.start()
        d = deferToThreadPool(self._reactor, self._pool, self._work, f)
        d.addCallbacks(self._worked, self._failed)
        return d

    def _worked(self, result: T) -> T:
        if self.broken is not None:
            self.log.info(
                "session store {path} usable again, after {failures} failed calls in {seconds:.0f} s",
                path=self.path,
                failures=self._failures,
                seconds=self._seconds() - self._brokenSince,
            )
            self.broken = None
            self._failures = 0
        return result

    def _failed(self, failure: Failure) -> Failure:
        error = failure.value
        if isinstance(error, StoreUnavailable):
            self._markBroken(error.reason)
        return failure

    def _markBroken(self, reason: str) -> None:
        """
        Remember why the store fails; log it once, then at most once every
        C{logInterval} seconds.
        """
        now = self._seconds()
        self._failures += 1
        if self.broken is None:
            self.broken = reason
            self._brokenSince = self._loggedAt = now
            self._failures = 1
            self.log.error(
                "session store unusable: {reason}; hibernated sessions can be neither stored nor resumed until it is fixed",
                reason=reason,
                path=self.path,
            )
            return
        self.broken = reason
        if now - self._loggedAt >= self.logInterval:
            self._loggedAt = now
            self.log.error(
                "session store still unusable ({failures} failed calls in {seconds:.0f} s): {reason}",
                reason=reason,
                path=self.path,
                failures=self._failures,
                seconds=now - self._brokenSince,
            )

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

    def _closeAtShutdown(self) -> Deferred[None]:
        """
        The reactor is stopping: close in its next turn, once every other
        trigger of that moment ran (servers checkpoint their sessions into
        this store then; the worker writes them, in order, before it
        closes).
        """
        d: Deferred[None] = Deferred()
        self._reactor.callLater(0, lambda: self.close().chainDeferred(d))
        return d

    def close(self) -> Deferred[None]:
        """
        Close the database (without opening it if it never was) and stop
        the worker thread.  Never fails.
        """
        if self._closed:
            return succeed(None)
        self._closed = True
        if not self._pool.started:
            # Never used: nothing was opened.
            return succeed(None)
        d = deferToThreadPool(self._reactor, self._pool, self._drop)
        d.addErrback(lambda f: self.log.failure("closing the session store failed", f))

        def stop(result: object) -> object:
            self._pool.stop()
            return result

        return d.addBoth(stop)
