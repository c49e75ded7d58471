"""
Tests for L{ztnagw.registry.sqlite}: the embedded endpoint store.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import sqlite3
import stat
import time

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from tests.registry import writer
from tests.registry.processes import startPython, startWriter
from tests.registry.strategies import records
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
from ztnagw.registry.sqlite import COLUMNS, SQLiteEndpointStore

UID_A = "A" * 32
UID_B = "B" * 32
UID_C = "C" * 32


def record(uid: str = UID_A, **kwargs: object) -> EndpointRecord:
    """
    A minimal valid record.
    """
    kwargs.setdefault("certSerial", "1D3D07")
    return EndpointRecord(uid=uid, **kwargs)  # type: ignore[arg-type]


class FakeClock:
    """
    A settable POSIX clock for tombstone ages.
    """

    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


class StoreTestCase(SynchronousTestCase):
    """
    Base for tests that need a fresh store in a temporary directory.
    """

    def setUp(self) -> None:
        self.directory = os.path.abspath(self.mktemp())
        self.path = os.path.join(self.directory, "registry.sqlite")
        self.clock = FakeClock()
        self.store = self.openStore()

    def openStore(self, **kwargs: object) -> SQLiteEndpointStore:
        """
        Open (another connection to) the store under test; it is closed
        after the test.
        """
        kwargs.setdefault("clock", self.clock)
        store = SQLiteEndpointStore(self.path, **kwargs)  # type: ignore[arg-type]
        self.addCleanup(store.close)
        return store


class InterfaceTests(StoreTestCase):
    """
    The store provides L{IEndpointStore}.
    """

    def test_provides(self) -> None:
        """
        L{SQLiteEndpointStore} fully implements L{IEndpointStore}.
        """
        self.assertTrue(verifyObject(IEndpointStore, self.store))

    def test_columnsMatchRecord(self) -> None:
        """
        The C{endpoints} table has one column per L{EndpointRecord}
        attribute, so that no attribute is silently dropped.
        """
        connection = sqlite3.connect(self.path)
        self.addCleanup(connection.close)
        names = tuple(
            row[1] for row in connection.execute("PRAGMA table_info(endpoints)")
        )
        self.assertEqual(names, COLUMNS)
        self.assertEqual(COLUMNS, tuple(f.name for f in attrs.fields(EndpointRecord)))


class RoundTripTests(StoreTestCase):
    """
    A record comes back exactly as it was written.
    """

    @settings(max_examples=150)
    @given(records())
    def test_roundTrip(self, original: EndpointRecord) -> None:
        """
        Any valid record read back, through the same connection or a new
        one, equals the written record with the store's generation.
        """
        stored = self.store.put(original)
        self.assertEqual(stored, attrs.evolve(original, generation=stored.generation))
        self.assertEqual(self.store.get(original.uid), stored)
        other = SQLiteEndpointStore(self.path)
        try:
            self.assertEqual(other.get(original.uid), stored)
        finally:
            other.close()

    def test_getMissing(self) -> None:
        """
        C{get} of an unknown UID is C{None}.
        """
        self.assertIsNone(self.store.get(UID_A))

    def test_listOrderedByUid(self) -> None:
        """
        C{list} returns every record, ordered by UID.
        """
        for uid in (UID_C, UID_A, UID_B):
            self.store.put(record(uid))
        self.assertEqual([r.uid for r in self.store.list()], [UID_A, UID_B, UID_C])

    def test_generationIgnoredOnPut(self) -> None:
        """
        The generation of a record given to C{put} is replaced by the
        store's.
        """
        stored = self.store.put(record(generation=999))
        self.assertEqual(stored.generation, 1)
        self.assertEqual(self.store.get(UID_A).generation, 1)

    def test_invalidRecordRefused(self) -> None:
        """
        A malformed record raises L{InvalidRecord} and nothing is written,
        not even a generation.
        """
        self.assertRaises(InvalidRecord, self.store.put, record("a" * 32))
        self.assertRaises(InvalidRecord, self.store.put, record(lastSeen=float("nan")))
        self.assertEqual(self.store.changesSince(0), (0, [], []))

    def test_damagedRowRefused(self) -> None:
        """
        A row that does not decode (edited by hand) raises
        L{RegistryCorrupt} naming the UID, rather than producing a record.
        """
        self.store.put(record())
        connection = sqlite3.connect(self.path)
        self.addCleanup(connection.close)
        connection.execute("UPDATE endpoints SET tags = '{\"x\": 1}'")
        connection.commit()
        error = self.assertRaises(RegistryCorrupt, self.store.get, UID_A)
        self.assertIn(UID_A, str(error))


class UpdateTests(StoreTestCase):
    """
    C{update} and C{delete}.
    """

    def test_update(self) -> None:
        """
        C{update} stores what the change function returns, with a new
        generation.
        """
        self.store.put(record())
        stored = self.store.update(UID_A, lambda r: attrs.evolve(r, revoked=True))
        self.assertTrue(stored.revoked)
        self.assertEqual(stored.generation, 2)
        self.assertEqual(self.store.get(UID_A), stored)

    def test_updateUnknown(self) -> None:
        """
        C{update} of an unknown UID raises L{UnknownEndpoint} without
        calling the change function.
        """
        calls: list[EndpointRecord] = []
        self.assertRaises(UnknownEndpoint, self.store.update, UID_A, calls.append)
        self.assertEqual(calls, [])

    def test_updateUnchanged(self) -> None:
        """
        A change that returns an equal record writes nothing: the
        generation does not move, so readers are not told of a change.
        """
        first = self.store.put(record())
        self.assertEqual(self.store.update(UID_A, lambda r: r), first)
        self.assertEqual(self.store.changesSince(first.generation)[0], first.generation)

    def test_updateCannotChangeUid(self) -> None:
        """
        A change that gives the record another UID is refused.
        """
        self.store.put(record())
        self.assertRaises(
            InvalidRecord,
            self.store.update,
            UID_A,
            lambda r: attrs.evolve(r, uid=UID_B),
        )
        self.assertEqual([r.uid for r in self.store.list()], [UID_A])

    def test_updateChangeFails(self) -> None:
        """
        An exception from the change function propagates and leaves the
        record unchanged.
        """
        before = self.store.put(record())

        def change(r: EndpointRecord) -> EndpointRecord:
            raise ZeroDivisionError()

        self.assertRaises(ZeroDivisionError, self.store.update, UID_A, change)
        self.assertEqual(self.store.get(UID_A), before)

    def test_delete(self) -> None:
        """
        C{delete} removes the record.
        """
        self.store.put(record())
        self.store.delete(UID_A)
        self.assertIsNone(self.store.get(UID_A))
        self.assertEqual(self.store.list(), [])

    def test_deleteUnknown(self) -> None:
        """
        C{delete} of an unknown UID raises L{UnknownEndpoint} and uses no
        generation.
        """
        self.assertRaises(UnknownEndpoint, self.store.delete, UID_A)
        self.assertEqual(self.store.changesSince(0), (0, [], []))


class ChangesSinceTests(StoreTestCase):
    """
    C{changesSince} reports exactly what changed after a generation.
    """

    @settings(max_examples=60)
    @given(
        st.lists(
            st.tuples(st.sampled_from([UID_A, UID_B, UID_C]), st.booleans()),
            max_size=12,
        )
    )
    def test_exactChanges(self, operations: list[tuple[str, bool]]) -> None:
        """
        For every generation I{g} the store went through, C{changesSince(g)}
        returns the current version of each record written after I{g} and
        each UID deleted after I{g} that has not come back, and nothing
        else.
        """
        self.store.close()
        shutil.rmtree(self.directory)
        self.store = self.openStore()
        # uid -> (generation of its last change, current record or None)
        lastChange: dict[str, tuple[int, EndpointRecord | None]] = {}
        generations = [0]
        for index, (uid, write) in enumerate(operations):
            if write:
                stored = self.store.put(record(uid, hostName=str(index)))
                lastChange[uid] = (stored.generation, stored)
                generations.append(stored.generation)
            elif uid in lastChange and lastChange[uid][1] is not None:
                self.store.delete(uid)
                generation = self.store.changesSince(0)[0]
                lastChange[uid] = (generation, None)
                generations.append(generation)
        for since in generations:
            current, written, deleted = self.store.changesSince(since)
            self.assertEqual(current, generations[-1])
            self.assertEqual(
                written,
                [
                    r
                    for _, (g, r) in sorted(lastChange.items())
                    if g > since and r is not None
                ],
            )
            self.assertEqual(
                deleted,
                [u for u, (g, r) in sorted(lastChange.items()) if g > since and r is None],
            )

    def test_oneGenerationPerTransaction(self) -> None:
        """
        Every record written by one transaction carries the same, new
        generation.
        """
        with self.store.transaction() as transaction:
            a = transaction.put(record(UID_A))
            b = transaction.put(record(UID_B))
        self.assertEqual((a.generation, b.generation), (1, 1))
        self.assertEqual(self.store.changesSince(0)[0], 1)

    def test_newerGeneration(self) -> None:
        """
        A generation newer than the store's (the registry was restored from
        an older copy) raises L{HistoryLost}.
        """
        self.store.put(record())
        self.assertRaises(HistoryLost, self.store.changesSince, 2)

    def test_negativeGeneration(self) -> None:
        """
        A negative generation is a programming error.
        """
        self.assertRaises(ValueError, self.store.changesSince, -1)

    def test_prunedTombstones(self) -> None:
        """
        Tombstones older than the retention are pruned by a later deletion;
        a reader that may have missed them gets L{HistoryLost}, a reader
        current with the pruned deletions does not.
        """
        self.store = self.openStore(tombstoneRetention=60.0)
        for uid in (UID_A, UID_B, UID_C):
            self.store.put(record(uid))
        self.store.delete(UID_A)
        afterFirst = self.store.changesSince(0)[0]
        self.clock.now += 61
        self.store.delete(UID_B)
        current, _, deleted = self.store.changesSince(0)
        self.assertEqual(deleted, [UID_B])
        self.assertRaises(HistoryLost, self.store.changesSince, afterFirst - 1)
        self.assertEqual(self.store.changesSince(afterFirst), (current, [], [UID_B]))

    def test_recentTombstonesKept(self) -> None:
        """
        Tombstones younger than the retention survive later deletions.
        """
        self.store = self.openStore(tombstoneRetention=60.0)
        self.store.put(record(UID_A))
        self.store.put(record(UID_B))
        self.store.delete(UID_A)
        self.clock.now += 59
        self.store.delete(UID_B)
        self.assertEqual(self.store.changesSince(2)[2], [UID_A, UID_B])

    def test_replacedFile(self) -> None:
        """
        When another file is moved over the store's file, the store fails
        with L{RegistryUnavailable} rather than go on reading the old file
        or mixing the old write-ahead log into the new one.
        """
        self.store.put(record(UID_A))
        otherPath = os.path.join(self.directory, "other.sqlite")
        other = SQLiteEndpointStore(otherPath)
        other.put(record(UID_B))
        other.close()
        os.replace(otherPath, self.path)
        error = self.assertRaises(RegistryUnavailable, self.store.changesSince, 1)
        self.assertIn("replaced", str(error))
        self.assertRaises(RegistryUnavailable, self.store.put, record(UID_C))


class TransactionTests(StoreTestCase):
    """
    C{transaction()}, the extension point for multi-table changes.
    """

    def test_commit(self) -> None:
        """
        Changes made through the transaction are visible to another
        connection only after the block ends.
        """
        other = self.openStore()
        with self.store.transaction() as transaction:
            transaction.put(record(UID_A))
            transaction.put(record(UID_B))
            self.assertEqual(other.list(), [])
        self.assertEqual([r.uid for r in other.list()], [UID_A, UID_B])

    def test_rollback(self) -> None:
        """
        An exception in the block rolls every change back (records and the
        generation) and propagates unchanged.
        """
        self.store.put(record(UID_C))
        with self.assertRaises(ZeroDivisionError):
            with self.store.transaction() as transaction:
                transaction.put(record(UID_A))
                transaction.delete(UID_C)
                1 / 0
        self.assertEqual([r.uid for r in self.store.list()], [UID_C])
        self.assertEqual(self.store.changesSince(0)[0], 1)

    def test_otherTable(self) -> None:
        """
        The transaction's cursor reaches tables added by later issues, and
        their changes commit or roll back together with the records.
        """
        with self.store.transaction() as transaction:
            transaction.cursor.execute(
                "CREATE TABLE tokens (hash TEXT PRIMARY KEY, used INTEGER) STRICT"
            )
            transaction.cursor.execute("INSERT INTO tokens VALUES ('t', 0)")
        with self.assertRaises(KeyError):
            with self.store.transaction() as transaction:
                transaction.cursor.execute("UPDATE tokens SET used = 1")
                transaction.put(record(UID_A))
                raise KeyError("enrollment refused")
        with self.store.transaction() as transaction:
            used = transaction.cursor.execute("SELECT used FROM tokens").fetchone()
        self.assertEqual((used, self.store.list()), ((0,), []))

    def test_integrityErrorPassesThrough(self) -> None:
        """
        A constraint broken by the caller's own statement reaches the caller
        as C{sqlite3.IntegrityError}.
        """
        with self.store.transaction() as transaction:
            transaction.cursor.execute("CREATE TABLE t (k TEXT PRIMARY KEY) STRICT")
            transaction.cursor.execute("INSERT INTO t VALUES ('x')")
        with self.assertRaises(sqlite3.IntegrityError):
            with self.store.transaction() as transaction:
                transaction.cursor.execute("INSERT INTO t VALUES ('x')")

    def test_storeInsideTransaction(self) -> None:
        """
        Calling the store's own methods inside its transaction is refused
        (it would deadlock).
        """
        with self.store.transaction():
            self.assertRaises(RuntimeError, self.store.get, UID_A)

    def test_transactionAfterEnd(self) -> None:
        """
        A transaction object cannot be used after its block.
        """
        with self.store.transaction() as transaction:
            pass
        self.assertRaises(RuntimeError, transaction.put, record())

    def test_writeGeneration(self) -> None:
        """
        C{writeGeneration} takes the next generation once per transaction.
        """
        self.store.put(record())
        with self.store.transaction() as transaction:
            self.assertEqual(transaction.writeGeneration(), 2)
            self.assertEqual(transaction.writeGeneration(), 2)
        self.assertEqual(self.store.changesSince(0)[0], 2)

    def test_busy(self) -> None:
        """
        A writer waits at most the busy timeout for another process's
        transaction, then fails with L{RegistryUnavailable}.
        """
        store = self.openStore(busyTimeout=0.05)
        blocker = sqlite3.connect(self.path, isolation_level=None)
        self.addCleanup(blocker.close)
        blocker.execute("BEGIN IMMEDIATE")
        error = self.assertRaises(RegistryUnavailable, store.put, record())
        self.assertIn("locked", str(error))
        blocker.execute("ROLLBACK")
        store.put(record())

    def test_concurrentWriter(self) -> None:
        """
        Read-modify-write changes from two processes never undo each
        other: 200 increments from each leave the counter at 400.
        """
        self.store.put(record(facts={"counter": "0"}))
        process = startWriter(self.path, "increment", UID_A, "200")
        writer.increment(self.store, UID_A, 200)
        output, errors = process.communicate(timeout=60)
        self.assertEqual((process.returncode, output, errors), (0, "done\n", ""))
        self.assertEqual(writer.counterOf(self.store.get(UID_A)), 400)


class SharedFileTests(StoreTestCase):
    """
    Several stores on one file, in this process and in others, never lose a
    committed change.
    """

    def test_secondStoreKeepsFirstStoresLocks(self) -> None:
        """
        Opening a second store on the file in this process does not drop
        the first store's locks: another process that opens and closes the
        registry (an admin command) then cannot mistake itself for the last
        user and delete the write-ahead log the first store still writes
        to, so every change the first store commits afterwards is kept.
        """
        self.store.put(record(uid="A" * 32))
        self.openStore().close()
        self.assertEqual(self.listInAnotherProcess(), ["A" * 32])
        self.store.put(record(uid="B" * 32))
        # Seen by another process while the first store is still open: the
        # change is in the live write-ahead log, not in an unlinked one.
        self.assertEqual(self.listInAnotherProcess(), ["A" * 32, "B" * 32])

    def listInAnotherProcess(self) -> list[str]:
        """
        Open the registry in another process, as an admin command does, and
        list its UIDs.
        """
        admin = startPython(
            "-c",
            "import sys; from ztnagw.registry.sqlite import SQLiteEndpointStore; "
            "s = SQLiteEndpointStore(sys.argv[1]); "
            "print(' '.join(r.uid for r in s.list())); s.close()",
            self.path,
        )
        output, errors = admin.communicate(timeout=60)
        self.assertEqual(admin.returncode, 0, errors)
        return output.split()


class CrashTests(StoreTestCase):
    """
    A writer killed at any instant leaves a whole, current store.
    """

    def test_killAtRandomMoments(self) -> None:
        """
        A process writing in a loop is killed with SIGKILL at random
        moments, five times; each time the store opens, passes SQLite's
        integrity check, every record is whole, the three records written
        together agree, and the last transaction the writer reported as
        committed is there (or the one it was about to report).
        """
        chance = random.Random(20260526)
        for _ in range(5):
            process = startWriter(self.path, "churn")
            time.sleep(chance.uniform(0.0, 0.3))
            process.send_signal(signal.SIGKILL)
            output, _ = process.communicate(timeout=30)
            self.assertEqual(process.returncode, -signal.SIGKILL)
            reported = [int(line) for line in output.split()]
            store = SQLiteEndpointStore(self.path)
            try:
                connection = sqlite3.connect(self.path)
                try:
                    self.assertEqual(
                        connection.execute("PRAGMA integrity_check").fetchall(),
                        [("ok",)],
                    )
                finally:
                    connection.close()
                everything = {r.uid: r for r in store.list()}
            finally:
                store.close()
            if not everything:
                # Killed before its first commit.
                self.assertEqual(reported, [])
                continue
            counters = {writer.counterOf(everything[uid]) for uid in writer.CHURN_UIDS}
            self.assertEqual(len(counters), 1, "a transaction was half-written")
            (counter,) = counters
            lastReported = reported[-1] if reported else 0
            self.assertIn(counter, (lastReported, lastReported + 1))
            self.assertEqual(writer.CHURN_TOGGLED in everything, counter % 2 == 0)
            for r in everything.values():
                self.assertGreater(r.generation, 0)


class FileTests(SynchronousTestCase):
    """
    How the store creates, checks and refuses files.
    """

    def setUp(self) -> None:
        self.directory = os.path.abspath(self.mktemp())

    def test_modes(self) -> None:
        """
        Missing directories are created with mode 0700 and the database,
        its write-ahead log and shared-memory file with mode 0600, whatever
        the umask.
        """
        path = os.path.join(self.directory, "state", "ems1", "registry.sqlite")
        old = os.umask(0)
        try:
            store = SQLiteEndpointStore(path)
        finally:
            os.umask(old)
        self.addCleanup(store.close)
        store.put(record())
        for directory in (
            self.directory,
            os.path.dirname(os.path.dirname(path)),
            os.path.dirname(path),
        ):
            self.assertEqual(stat.S_IMODE(os.stat(directory).st_mode), 0o700)
        names = sorted(os.listdir(os.path.dirname(path)))
        self.assertEqual(
            names, ["registry.sqlite", "registry.sqlite-shm", "registry.sqlite-wal"]
        )
        for name in names:
            mode = os.stat(os.path.join(os.path.dirname(path), name)).st_mode
            self.assertEqual(stat.S_IMODE(mode), 0o600, name)

    def test_existingFileModeKept(self) -> None:
        """
        An existing registry keeps the mode the administrator gave it.
        """
        os.mkdir(self.directory)
        path = os.path.join(self.directory, "registry.sqlite")
        SQLiteEndpointStore(path).close()
        os.chmod(path, 0o640)
        SQLiteEndpointStore(path).close()
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o640)

    def test_writableByOthers(self) -> None:
        """
        A registry that other users may write is refused, with the command
        that fixes it.
        """
        os.mkdir(self.directory)
        path = os.path.join(self.directory, "registry.sqlite")
        SQLiteEndpointStore(path).close()
        os.chmod(path, 0o666)
        error = self.assertRaises(RegistryUnavailable, SQLiteEndpointStore, path)
        self.assertIn(f"chmod 600 {path}", str(error))

    def test_notADatabase(self) -> None:
        """
        A file that is not an SQLite database raises L{RegistryCorrupt}
        naming the file.
        """
        os.mkdir(self.directory)
        path = os.path.join(self.directory, "registry.sqlite")
        with open(path, "wb") as f:
            f.write(b"this is not a database, just text " * 200)
        error = self.assertRaises(RegistryCorrupt, SQLiteEndpointStore, path)
        self.assertIn(path, str(error))

    def test_damagedDatabase(self) -> None:
        """
        A registry whose table pages are damaged raises L{RegistryCorrupt}
        when read.
        """
        os.mkdir(self.directory)
        path = os.path.join(self.directory, "registry.sqlite")
        store = SQLiteEndpointStore(path)
        for n in range(200):
            store.put(record(f"{n:032X}", hostName="h" * 100))
        store.close()
        with open(path, "r+b") as f:
            pageSize = int.from_bytes(f.read(18)[16:18], "big")
            f.seek(pageSize)
            f.write(b"\xa5" * (os.path.getsize(path) - pageSize))
        store = SQLiteEndpointStore(path)
        self.addCleanup(store.close)
        self.assertRaises(RegistryCorrupt, store.list)

    def test_otherProgramsDatabase(self) -> None:
        """
        An SQLite database of another program is refused, not written to.
        """
        os.mkdir(self.directory)
        path = os.path.join(self.directory, "other.sqlite")
        connection = sqlite3.connect(path)
        connection.execute("CREATE TABLE things (x)")
        connection.commit()
        connection.close()
        error = self.assertRaises(RegistryUnavailable, SQLiteEndpointStore, path)
        self.assertIn("not a ztnagw registry", str(error))

    def test_cannotCreate(self) -> None:
        """
        A registry that cannot be created raises L{RegistryUnavailable}
        with the system's reason.
        """
        os.mkdir(self.directory)
        blocker = os.path.join(self.directory, "file")
        open(blocker, "w").close()
        error = self.assertRaises(
            RegistryUnavailable,
            SQLiteEndpointStore,
            os.path.join(blocker, "registry.sqlite"),
        )
        self.assertIn("Not a directory", str(error))

    def test_permissionDenied(self) -> None:
        """
        A registry the user may not open raises L{RegistryUnavailable}
        saying so.
        """
        os.mkdir(self.directory)
        path = os.path.join(self.directory, "registry.sqlite")
        SQLiteEndpointStore(path).close()
        os.chmod(path, 0o400)
        if os.geteuid() != 0:
            error = self.assertRaises(RegistryUnavailable, SQLiteEndpointStore, path)
        else:
            # Root opens any file: try as an unprivileged user, keeping the
            # saved user id so that root can be restored.
            os.chmod(path, 0o600)
            os.seteuid(65534)
            try:
                error = self.assertRaises(
                    RegistryUnavailable, SQLiteEndpointStore, path
                )
            finally:
                os.seteuid(0)
        self.assertEqual(str(error), f"cannot open {path}: Permission denied")

    def test_closed(self) -> None:
        """
        A closed store refuses to work; closing twice is harmless.
        """
        store = SQLiteEndpointStore(os.path.join(self.directory, "r.sqlite"))
        store.close()
        store.close()
        self.assertRaises(RegistryUnavailable, store.get, UID_A)

    def test_removedFile(self) -> None:
        """
        A registry file removed under a running store makes its operations
        fail with L{RegistryUnavailable}, instead of reading the unlinked
        file forever.
        """
        path = os.path.join(self.directory, "r.sqlite")
        store = SQLiteEndpointStore(path)
        self.addCleanup(store.close)
        store.put(record())
        os.unlink(path)
        error = self.assertRaises(RegistryUnavailable, store.changesSince, 0)
        self.assertIn("removed", str(error))
        self.assertFalse(os.path.exists(path))
