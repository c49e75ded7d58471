# -*- test-case-name: tests.registry.test_sqlite -*-
"""
The embedded endpoint store: one SQLite file per EMS.

A gateway must keep admitting only the devices it should across crashes,
restarts and concurrent admin commands, without an external database to
install.  SQLite in WAL mode gives that: the daemon's index reads while an
admin command writes, every change is one transaction, and a process killed
at any instant leaves either the old or the new state, never half of one.

Durability
==========

The journal is a write-ahead log (C{journal_mode=WAL}) with
C{synchronous=NORMAL}.  A commit has written its WAL frames to the operating
system (C{write(2)}) before it returns, so a crash of the process, including
C{kill -9}, loses nothing that was committed: the kernel still holds those
pages and writes them out.  What C{NORMAL} gives up, compared with C{FULL},
is the C{fsync} at every commit: after a power loss or kernel crash the
newest few commits may be missing, but the database is never corrupt (WAL
frames are checksummed and a torn tail is discarded).  For a registry this
is the right trade: a revocation lost to a power cut is re-done by the
administrator, while an fsync per telemetry report would cap the EMS role
at disk speed.

Change tracking
===============

The store keeps a generation counter.  Each write transaction takes the next
generation; every record it writes carries it, and every record it deletes
leaves a tombstone carrying it.  L{SQLiteEndpointStore.changesSince} thus
answers "what changed after generation I{g}" with two indexed range scans,
which is what lets the index poll four times a second for free.  Tombstones
older than C{tombstoneRetention} are pruned; the highest pruned generation
is remembered, and a reader whose generation is older than that, or newer
than the store's (after a backup was restored), gets L{HistoryLost} and
reloads everything instead of missing a deletion.

Backups
=======

Copy or restore a live registry only through SQLite (C{sqlite3 registry.sqlite
".backup copy.sqlite"}, C{".restore copy.sqlite"}), or with every ztnagw
process stopped, removing the C{-wal} and C{-shm} files of the old database.
Moving another file over a registry in use would let SQLite apply the old
write-ahead log to the new file; the store notices that its file was
removed or replaced and fails (closed) rather than read on.

Extension point
===============

Later issues add tables (EMS enrollment tokens) whose changes must commit
together with a record.  L{SQLiteEndpointStore.transaction} yields a
L{StoreTransaction}: its C{cursor} reaches every table, its L{get}, L{put}
and L{delete} change endpoint records with the same bookkeeping as the
store's own methods, and everything done inside the C{with} block commits
at its end or not at all.  New tables come with a migration appended to
L{ztnagw.registry.schema.MIGRATIONS}.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import stat
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import attrs
from zope.interface import implementer

from ztnagw.registry import schema
from ztnagw.registry.exceptions import (
    HistoryLost,
    InvalidRecord,
    RegistryCorrupt,
)
from ztnagw.registry.interfaces import (
    IEndpointStore,
    RegistryUnavailable,
    UnknownEndpoint,
)
from ztnagw.registry.record import EndpointRecord
from ztnagw.registry.validation import checkRecord

#: How long a writer waits for another process's transaction to end.
DEFAULT_BUSY_TIMEOUT = 5.0

#: How long a deletion stays visible to L{SQLiteEndpointStore.changesSince}.
#: An index polls several times a second, so a day is generous; an index
#: that falls further behind reloads everything (see L{HistoryLost}).
DEFAULT_TOMBSTONE_RETENTION = 24 * 60 * 60.0

#: Bytes of write-ahead log kept on disk after a checkpoint.
_JOURNAL_SIZE_LIMIT = 16 * 1024 * 1024

# SQLite primary result codes (the low byte of an extended code).
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26

#: Seconds between two attempts to start a write transaction while another
#: process holds the write lock (the connection is free for reads between
#: them).
_WRITE_RETRY_INTERVAL = 0.02

#: The columns of the C{endpoints} table, in the order of the record's
#: attributes: a record is stored one attribute per column.
COLUMNS: tuple[str, ...] = tuple(f.name for f in attrs.fields(EndpointRecord))

_UID_COLUMN = COLUMNS.index("uid")
_JSON_COLUMNS = frozenset({"macList", "tags", "facts"})
_BOOLEAN_COLUMNS = frozenset(
    {"quarantined", "revoked", "onNet", "staticPresence"}
)

_SELECT = f"SELECT {', '.join(COLUMNS)} FROM endpoints"
_UPSERT = (
    f"INSERT INTO endpoints ({', '.join(COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in COLUMNS)}) "
    "ON CONFLICT (uid) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in COLUMNS if c != "uid")
)


def _rowFromRecord(record: EndpointRecord, generation: int) -> tuple:
    """
    The column values that store C{record} written at C{generation}.
    """
    values: list[object] = []
    for name in COLUMNS:
        value = getattr(record, name)
        if name == "generation":
            value = generation
        elif name == "macList":
            value = json.dumps(list(value))
        elif name == "tags":
            value = json.dumps(sorted(value))
        elif name == "facts":
            value = json.dumps(dict(value), sort_keys=True)
        elif name in _BOOLEAN_COLUMNS:
            value = int(value)
        elif name in ("registeredAt", "lastSeen") and value is not None:
            value = float(value)
        values.append(value)
    return tuple(values)


def _textList(name: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{name} is not a list of text")
    return value


def recordFromRow(row: tuple) -> EndpointRecord:
    """
    Decode one row of the C{endpoints} table (columns in L{COLUMNS} order).

    @raise RegistryCorrupt: the row does not hold a record (a hand-edited
        or damaged database); the message names the UID and the column.
    """
    values = dict(zip(COLUMNS, row))
    uid = values.get("uid")
    try:
        if len(row) != len(COLUMNS):
            raise ValueError(f"{len(row)} columns instead of {len(COLUMNS)}")
        for name in _JSON_COLUMNS:
            values[name] = json.loads(values[name])
        values["macList"] = tuple(_textList("macList", values["macList"]))
        values["tags"] = frozenset(_textList("tags", values["tags"]))
        facts = values["facts"]
        if not isinstance(facts, dict) or not all(
            isinstance(v, str) for v in facts.values()
        ):
            raise ValueError("facts is not an object of text values")
        for name in _BOOLEAN_COLUMNS:
            if values[name] not in (0, 1):
                raise ValueError(f"{name} is not 0 or 1")
            values[name] = bool(values[name])
        return EndpointRecord(**values)
    except (ValueError, TypeError) as e:
        raise RegistryCorrupt(
            f"the stored record for {uid!r} cannot be read: {e}"
        ) from e


def _makeDirectories(directory: str) -> None:
    """
    Create C{directory} and any missing parent, each with mode 0700 (unlike
    C{os.makedirs}, which gives parents the default mode).
    """
    missing = []
    current = directory
    while not os.path.isdir(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    for path in reversed(missing):
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass


def _uriPath(path: str) -> str:
    """
    C{path} as the path of an SQLite C{file:} URI.
    """
    from urllib.parse import quote

    return quote(os.path.abspath(path))


def _prepareFile(path: str) -> os.stat_result:
    """
    Make sure the database file exists with safe permissions before SQLite
    touches it: SQLite would create it world-readable (0644), and its WAL
    and shared-memory files copy the database file's mode.

    @return: the file's status, to recognise it later.
    @raise RegistryUnavailable: it cannot be created or opened, or other
        users may write to it.
    """
    # An existing file is only examined with stat(), never opened: closing
    # any descriptor of a file drops every POSIX lock this process holds on
    # it, including the locks of another SQLite connection to the same
    # registry (the daemon's shared connection), which would then let a
    # checkpoint delete a WAL still in use.
    try:
        _makeDirectories(os.path.dirname(os.path.abspath(path)))
        try:
            info = os.stat(path)
        except FileNotFoundError:
            try:
                fd = os.open(
                    path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600
                )
            except FileExistsError:
                info = os.stat(path)
            else:
                try:
                    info = os.fstat(fd)
                finally:
                    os.close(fd)
    except OSError as e:
        raise RegistryUnavailable(f"cannot open {path}: {e.strerror}") from e
    if not stat.S_ISREG(info.st_mode):
        raise RegistryUnavailable(f"{path} is not a regular file")
    if info.st_mode & 0o022:
        # Whoever can write the registry can enrol any device: refuse rather
        # than trust it.
        raise RegistryUnavailable(
            f"{path} can be written by other users (mode "
            f"{stat.S_IMODE(info.st_mode):04o}); run: chmod 600 {path}"
        )
    return info


@implementer(IEndpointStore)
class SQLiteEndpointStore:
    """
    Endpoint records in one SQLite file.

    All methods block on disk I/O: the daemon calls them from a thread
    (see L{ztnagw.registry.index}), the admin command directly.  One store
    may be used from several threads; its operations run one at a time.

    @ivar path: the database file.
    """

    def __init__(
        self,
        path: str,
        busyTimeout: float = DEFAULT_BUSY_TIMEOUT,
        tombstoneRetention: float = DEFAULT_TOMBSTONE_RETENTION,
        clock: Callable[[], float] = time.time,
        migrations: tuple[schema.Migration, ...] = schema.MIGRATIONS,
    ):
        """
        Open (creating if needed) the registry at C{path} and bring its
        schema up to date.

        @param path: the database file; missing directories are created
            with mode 0700 and a missing file with mode 0600.
        @param busyTimeout: seconds a write waits for another process's
            transaction before failing.
        @param tombstoneRetention: seconds a deletion stays visible to
            L{changesSince}.
        @param clock: the current POSIX time (for tombstone ages).
        @param migrations: the schema history (tests pass their own).
        @raise RegistryUnavailable: the file cannot be opened or upgraded;
            L{RegistryCorrupt} if it is not a database or is damaged,
            L{ztnagw.registry.exceptions.NewerSchema} if a newer ztnagw
            wrote it.
        """
        self.path = path
        self._busyTimeout = busyTimeout
        self._tombstoneRetention = tombstoneRetention
        self._clock = clock
        self._migrations = migrations
        self._lock = threading.Lock()
        self._lockOwner: int | None = None
        self._connection: sqlite3.Connection | None = None
        self._fileIdentity: tuple[int, int] | None = None
        self._fileSignature: tuple[int, int, int] | None = None
        self._open()

    def __repr__(self) -> str:
        return f"<SQLiteEndpointStore {self.path!r}>"

    # Opening

    def _open(self) -> None:
        if sqlite3.sqlite_version_info < schema.MINIMUM_SQLITE:
            raise RegistryUnavailable(
                "the SQLite library is version "
                f"{sqlite3.sqlite_version}; the registry needs "
                + ".".join(map(str, schema.MINIMUM_SQLITE))
                + " or later"
            )
        info = _prepareFile(self.path)
        try:
            connection = sqlite3.connect(
                self.path,
                timeout=self._busyTimeout,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as e:
            raise self._translate(e, "open") from e
        try:
            self._configure(connection)
            schema.migrate(connection, self.path, self._migrations)
        except sqlite3.Error as e:
            connection.close()
            raise self._translate(e, "open") from e
        except BaseException:
            connection.close()
            raise
        self._connection = connection
        self._fileIdentity = (info.st_dev, info.st_ino)
        self._fileSignature = None

    def _configure(self, connection: sqlite3.Connection) -> None:
        milliseconds = max(0, int(self._busyTimeout * 1000))
        connection.execute(f"PRAGMA busy_timeout = {milliseconds}")
        # Reading the schema first turns "not a database" into an error
        # here rather than halfway through a later statement.
        connection.execute("SELECT count(*) FROM sqlite_schema").fetchone()
        mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise RegistryUnavailable(
                f"{self.path} cannot use a write-ahead log (journal mode "
                f"{mode!r}); put the registry on a local file system"
            )
        connection.execute("PRAGMA synchronous = NORMAL")
        # A checkpoint does not shrink the log; without a limit, one bulk
        # change would leave a log that large on disk for good.
        connection.execute(f"PRAGMA journal_size_limit = {_JOURNAL_SIZE_LIMIT}")
        connection.execute("PRAGMA foreign_keys = ON")
        # A registry file is data, not code: never let its schema call
        # functions with side effects.
        connection.execute("PRAGMA trusted_schema = OFF")

    def _translate(self, error: sqlite3.Error, doing: str) -> Exception:
        """
        The registry exception that tells a caller what C{error} means.
        """
        code = getattr(error, "sqlite_errorcode", None)
        primary = None if code is None else code & 0xFF
        if primary in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
            return RegistryCorrupt(
                f"{self.path} is damaged or not an SQLite database ({error}); "
                "restore the registry from a backup"
            )
        if primary in (_SQLITE_BUSY, _SQLITE_LOCKED):
            return RegistryUnavailable(
                f"{self.path} stayed locked by another process for more than "
                f"{self._busyTimeout:g} s"
            )
        return RegistryUnavailable(f"cannot {doing} {self.path}: {error}")

    def _checkFile(self) -> None:
        """
        Refuse to go on when the file at L{path} is no longer the one our
        connection has open (removed, or replaced by a move).  Reading on
        would serve the unlinked file forever, and SQLite cannot safely
        switch files under a live write-ahead log (see the module
        docstring on restoring a backup).

        @raise RegistryUnavailable: the file was removed or replaced, or
            changed and cannot be read now; L{RegistryCorrupt} if it changed
            and is no longer a database.
        """
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            raise RegistryUnavailable(
                f"{self.path} was removed while in use; restore it and "
                "restart ztnagw"
            )
        except OSError as e:
            raise RegistryUnavailable(f"cannot examine {self.path}: {e.strerror}")
        if (info.st_dev, info.st_ino) != self._fileIdentity:
            raise RegistryUnavailable(
                f"{self.path} was replaced by another file while in use; "
                "restart ztnagw (and restore backups with the gateway "
                "stopped, or with SQLite's .restore command)"
            )
        # A file overwritten in place (by a faulty copy, a disk, a hand) is
        # no commit: our connection would go on answering from its page
        # cache for as long as nothing is committed, and the gateway would
        # admit devices from a registry nobody can read any more (not even
        # to record a revocation).  Whenever the file changed behind the
        # connection's back (its size or times differ), a fresh connection
        # must still be able to read it, as the admin command would.
        signature = (info.st_size, info.st_mtime_ns, info.st_ctime_ns)
        if signature != self._fileSignature:
            self._checkReadable()
            self._fileSignature = signature

    def _checkReadable(self) -> None:
        """
        Read the schema of the file through a fresh read-only connection
        (within SQLite, so that no lock of ours is dropped: see
        L{_prepareFile}).

        @raise RegistryCorrupt: it is no longer a readable database.
        @raise RegistryUnavailable: it cannot be read now (locked).
        """
        try:
            check = sqlite3.connect(
                f"file:{_uriPath(self.path)}?mode=ro",
                uri=True,
                timeout=self._busyTimeout,
                check_same_thread=False,
            )
        except sqlite3.Error as e:
            raise self._translate(e, "read") from e
        try:
            check.execute("SELECT count(*) FROM sqlite_schema").fetchone()
        except sqlite3.Error as e:
            raise self._translate(e, "read") from e
        finally:
            check.close()

    @contextmanager
    def _locked(self) -> Iterator[sqlite3.Connection]:
        """
        Run one operation on the connection, excluding every other thread.
        """
        me = threading.get_ident()
        if self._lockOwner == me:
            raise RuntimeError(
                "the endpoint store was used inside its own transaction; "
                "use the StoreTransaction's methods instead"
            )
        with self._lock:
            self._lockOwner = me
            try:
                if self._connection is None:
                    raise RegistryUnavailable(f"{self.path} is closed")
                yield self._connection
            finally:
                self._lockOwner = None

    @contextmanager
    def _reading(self, doing: str) -> Iterator[sqlite3.Cursor]:
        """
        A read transaction: every query inside sees one committed state.
        """
        with self._locked():
            self._checkFile()
            connection = self._connection
            assert connection is not None
            try:
                connection.execute("BEGIN")
                try:
                    yield connection.cursor()
                finally:
                    if connection.in_transaction:
                        connection.execute("COMMIT")
            except sqlite3.Error as e:
                raise self._translate(e, doing) from e

    @contextmanager
    def _writeLocked(self) -> Iterator[sqlite3.Connection]:
        """
        The connection, excluding every other thread, inside a write
        transaction begun (C{BEGIN IMMEDIATE}) and holding SQLite's write
        lock.

        While another process holds the write lock, each attempt gives up at
        once and the wait happens with the connection free: the registry
        index, which reads through the same connection, keeps reading (a
        write-ahead log lets readers read while another process writes).
        Waiting inside SQLite instead kept the connection for up to the busy
        timeout, the index could not refresh, and after its staleness
        allowance the gateway denied every device for as long as an
        enrollment waited on another writer.

        @raise RegistryUnavailable: the write lock stayed taken for longer
            than the busy timeout, or the store cannot be written.
        """
        deadline = time.monotonic() + self._busyTimeout
        while True:
            with self._locked() as connection:
                self._checkFile()
                try:
                    connection.execute("PRAGMA busy_timeout = 0")
                    try:
                        connection.execute("BEGIN IMMEDIATE")
                    finally:
                        milliseconds = max(0, int(self._busyTimeout * 1000))
                        connection.execute(f"PRAGMA busy_timeout = {milliseconds}")
                except sqlite3.Error as e:
                    code = getattr(e, "sqlite_errorcode", None)
                    busy = code is not None and code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)
                    if not busy or time.monotonic() >= deadline:
                        raise self._translate(e, "write to") from e
                else:
                    yield connection
                    return
            time.sleep(_WRITE_RETRY_INTERVAL)

    # The extension point

    @contextmanager
    def transaction(self) -> Iterator["StoreTransaction"]:
        """
        Run several changes as one write transaction (C{BEGIN IMMEDIATE}).

        Use it as C{with store.transaction() as t: ...}.  Everything done
        through C{t} (its endpoint methods and its C{cursor}, which reaches
        every table) commits when the block ends normally and is rolled back
        if it raises; the exception then propagates unchanged.  The store's
        own methods must not be called inside the block (they raise
        C{RuntimeError}); use C{t}'s.

        SQLite errors raised inside become L{RegistryUnavailable} or
        L{RegistryCorrupt}, except C{sqlite3.IntegrityError}, which reports
        a constraint the caller's own statement broke and is left for the
        caller to handle.

        @raise RegistryUnavailable: the store stayed locked by another
            writer for longer than the busy timeout, or cannot be written.
        """
        with self._writeLocked() as connection:
            transaction = StoreTransaction(self, connection.cursor())
            try:
                yield transaction
                connection.execute("COMMIT")
            except BaseException as e:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                if isinstance(e, sqlite3.Error) and not isinstance(
                    e, sqlite3.IntegrityError
                ):
                    raise self._translate(e, "write to") from e
                raise
            finally:
                transaction._finished = True

    # IEndpointStore

    def get(self, uid: str) -> EndpointRecord | None:
        """
        The record for C{uid}, or C{None}.

        @raise RegistryUnavailable: the store cannot be read.
        """
        with self._reading("read") as cursor:
            row = cursor.execute(f"{_SELECT} WHERE uid = ?", (uid,)).fetchone()
        return None if row is None else recordFromRow(row)

    def list(self) -> list[EndpointRecord]:
        """
        Every record, ordered by UID.

        @raise RegistryUnavailable: the store cannot be read.
        """
        with self._reading("read") as cursor:
            rows = cursor.execute(f"{_SELECT} ORDER BY uid").fetchall()
        return [recordFromRow(row) for row in rows]

    def put(self, record: EndpointRecord) -> EndpointRecord:
        """
        Insert or replace the record with C{record.uid}.

        @return: the record as stored, with its new generation.
        @raise InvalidRecord: the record is malformed; nothing was written.
        @raise RegistryUnavailable: the store cannot be written.
        """
        with self.transaction() as transaction:
            return transaction.put(record)

    def update(
        self, uid: str, change: Callable[[EndpointRecord], EndpointRecord]
    ) -> EndpointRecord:
        """
        Read, change and write one record in one transaction, so that two
        concurrent changes (an admin revoking while telemetry updates
        C{lastSeen}) cannot undo each other.

        @param change: computes the new record from the current one; it
            runs with the store locked, so it must be quick and must not use
            the store.  If it returns an equal record (generation aside),
            nothing is written and no generation is used.
        @raise UnknownEndpoint: no record for C{uid}.
        @raise InvalidRecord: the new record is malformed or has another
            UID.
        @return: the record as stored.
        """
        with self.transaction() as transaction:
            return transaction.update(uid, change)

    def delete(self, uid: str) -> None:
        """
        Remove the record for C{uid}, leaving a tombstone.

        @raise UnknownEndpoint: no record for C{uid}.
        """
        with self.transaction() as transaction:
            transaction.delete(uid)

    def changesSince(
        self, generation: int
    ) -> tuple[int, list[EndpointRecord], list[str]]:
        """
        What changed after C{generation}, read in one transaction.

        @param generation: the generation the caller is current with; 0
            for a caller that has nothing (it then receives every record,
            and the tombstones still kept, which it may ignore).
        @return: the store's current generation, the records written since
            (current versions, ordered by UID) and the UIDs deleted since
            (ordered).  A UID is never in both lists.
        @raise HistoryLost: the store cannot tell exactly what changed since
            C{generation}: reload with C{changesSince(0)} and compare.
        @raise RegistryUnavailable: the store cannot be read.
        """
        if generation < 0:
            raise ValueError(f"generation {generation} is negative")
        with self._reading("read") as cursor:
            current, prunedThrough = cursor.execute(
                "SELECT generation, prunedThrough FROM storeState"
            ).fetchone()
            if generation > current:
                raise HistoryLost(
                    f"generation {generation} is newer than the store's "
                    f"({current}): the registry was restored from an older "
                    "copy; reload it"
                )
            if 0 < generation < prunedThrough:
                raise HistoryLost(
                    f"deletions up to generation {prunedThrough} have been "
                    f"forgotten; generation {generation} is too old; reload"
                )
            # No ORDER BY: SQLite would then walk the whole table in UID
            # order instead of searching the generation index, turning an
            # idle poll into a table scan.  The few rows are sorted here.
            rows = cursor.execute(
                f"{_SELECT} WHERE generation > ?", (generation,)
            ).fetchall()
            deleted = sorted(
                uid
                for (uid,) in cursor.execute(
                    "SELECT uid FROM endpointTombstones WHERE generation > ?",
                    (generation,),
                )
            )
        rows.sort(key=lambda row: row[_UID_COLUMN])
        return current, [recordFromRow(row) for row in rows], deleted

    def close(self) -> None:
        """
        Close the database.  Later calls raise L{RegistryUnavailable};
        closing again does nothing.
        """
        with self._lock:
            connection, self._connection = self._connection, None
            if connection is not None:
                connection.close()


class StoreTransaction:
    """
    One write transaction of a L{SQLiteEndpointStore}, as yielded by
    L{SQLiteEndpointStore.transaction}.

    @ivar cursor: an C{sqlite3} cursor inside the transaction, for tables
        that later issues add.
    """

    def __init__(self, store: SQLiteEndpointStore, cursor: sqlite3.Cursor):
        self._store = store
        self.cursor = cursor
        self._generation: int | None = None
        self._finished = False

    def _check(self) -> None:
        if self._finished:
            raise RuntimeError("this transaction has ended")

    def writeGeneration(self) -> int:
        """
        The generation this transaction's writes carry.  The first call
        takes the store's next generation; later calls return the same
        number.  Tables added later may record it to take part in change
        tracking.
        """
        self._check()
        if self._generation is None:
            (self._generation,) = self.cursor.execute(
                "UPDATE storeState SET generation = generation + 1 "
                "RETURNING generation"
            ).fetchall()[0]
        return self._generation

    def get(self, uid: str) -> EndpointRecord | None:
        """
        The record for C{uid} as this transaction sees it, or C{None}.
        """
        self._check()
        row = self.cursor.execute(f"{_SELECT} WHERE uid = ?", (uid,)).fetchone()
        return None if row is None else recordFromRow(row)

    def put(self, record: EndpointRecord) -> EndpointRecord:
        """
        Insert or replace C{record}.

        @return: the record as it will be stored, with this transaction's
            generation.
        @raise InvalidRecord: the record is malformed.
        """
        self._check()
        checkRecord(record)
        generation = self.writeGeneration()
        self.cursor.execute(_UPSERT, _rowFromRecord(record, generation))
        # The record exists again: a reader must not also see it deleted.
        self.cursor.execute(
            "DELETE FROM endpointTombstones WHERE uid = ?", (record.uid,)
        )
        return attrs.evolve(record, generation=generation)

    def update(
        self, uid: str, change: Callable[[EndpointRecord], EndpointRecord]
    ) -> EndpointRecord:
        """
        Change the record for C{uid} (see L{SQLiteEndpointStore.update}).
        """
        current = self.get(uid)
        if current is None:
            raise UnknownEndpoint(uid)
        new = change(current)
        if not isinstance(new, EndpointRecord):
            raise TypeError(f"change returned {new!r}, not an EndpointRecord")
        if new.uid != current.uid:
            raise InvalidRecord(
                f"a change of {uid} must not give the record another UID "
                f"({new.uid})"
            )
        if attrs.evolve(new, generation=current.generation) == current:
            return current
        return self.put(new)

    def delete(self, uid: str) -> None:
        """
        Remove the record for C{uid}, leave a tombstone and prune the
        tombstones older than the store's retention.

        @raise UnknownEndpoint: no record for C{uid}.
        """
        self._check()
        if self.cursor.execute(
            "SELECT 1 FROM endpoints WHERE uid = ?", (uid,)
        ).fetchone() is None:
            raise UnknownEndpoint(uid)
        generation = self.writeGeneration()
        now = self._store._clock()
        self.cursor.execute("DELETE FROM endpoints WHERE uid = ?", (uid,))
        self.cursor.execute(
            "INSERT INTO endpointTombstones (uid, generation, deletedAt) "
            "VALUES (?, ?, ?) ON CONFLICT (uid) DO UPDATE SET "
            "generation = excluded.generation, deletedAt = excluded.deletedAt",
            (uid, generation, float(now)),
        )
        self._prune(now)

    def _prune(self, now: float) -> None:
        retention = self._store._tombstoneRetention
        if not math.isfinite(retention):
            return
        cutoff = now - retention
        (newest,) = self.cursor.execute(
            "SELECT max(generation) FROM endpointTombstones WHERE deletedAt < ?",
            (cutoff,),
        ).fetchone()
        if newest is None:
            return
        self.cursor.execute(
            "DELETE FROM endpointTombstones WHERE deletedAt < ?", (cutoff,)
        )
        self.cursor.execute(
            "UPDATE storeState SET prunedThrough = max(prunedThrough, ?)",
            (newest,),
        )
