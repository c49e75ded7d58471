"""
Tests for L{ztnagw.registry.index}: the in-memory endpoint index.
"""

from __future__ import annotations

import os
import sqlite3
import sys
from typing import Any, Generator

import attrs
from twisted.internet.defer import CancelledError, Deferred, inlineCallbacks
from twisted.internet.utils import getProcessOutputAndValue
from twisted.logger import Logger, LogLevel
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from tests.registry.fakes import (
    FakeThreadPool,
    FlakyStore,
    ThreadingMemoryReactorClock,
)
from tests.registry.processes import REPOSITORY, childEnvironment
from tests.registry.test_sqlite import FakeClock, record
from ztnagw.registry.exceptions import RegistryCorrupt
from ztnagw.registry.index import EndpointIndex
from ztnagw.registry.interfaces import IEndpointIndex, RegistryUnavailable
from ztnagw.registry.record import EndpointRecord
from ztnagw.registry.sqlite import SQLiteEndpointStore

UID_A = "A" * 32
UID_B = "B" * 32


class IndexTestCase(SynchronousTestCase):
    """
    An index over a real store in a temporary directory, driven by a
    memory reactor and a thread pool that runs work in the test's thread.
    """

    def setUp(self) -> None:
        self.path = os.path.join(os.path.abspath(self.mktemp()), "registry.sqlite")
        self.storeClock = FakeClock()
        self.store = self.openStore()
        self.reactor = ThreadingMemoryReactorClock()
        self.pool = FakeThreadPool()
        self.flaky = FlakyStore(self.openStore(), self.pool)
        self.events: list[dict] = []
        self.changes: list[tuple[str, EndpointRecord | None]] = []

    def openStore(self, **kwargs: object) -> SQLiteEndpointStore:
        """
        Another connection to the registry under test, closed after the
        test.
        """
        kwargs.setdefault("clock", self.storeClock)
        store = SQLiteEndpointStore(self.path, **kwargs)  # type: ignore[arg-type]
        self.addCleanup(store.close)
        return store

    def makeIndex(self, store: object = None, **kwargs: object) -> EndpointIndex:
        """
        An index over C{store} (the flaky wrapper of the test store by
        default) that logs to L{events} and reports changes to
        L{changes}.
        """
        index = EndpointIndex(
            self.flaky if store is None else store,  # type: ignore[arg-type]
            self.reactor,
            threadpool=self.pool,
            **kwargs,  # type: ignore[arg-type]
        )
        index._log = Logger(observer=self.events.append)  # type: ignore[misc]
        index.subscribe(lambda uid, r: self.changes.append((uid, r)))
        return index

    def started(self, **kwargs: object) -> EndpointIndex:
        """
        A started index (the first load succeeded).
        """
        index = self.makeIndex(**kwargs)
        self.assertIsNone(self.successResultOf(index.start()))
        del self.changes[:]
        del self.events[:]
        return index

    def removeLog(self) -> None:
        """
        Remove the write-ahead log and shared-memory files of the registry,
        as an operator replacing the file must (see
        L{ztnagw.registry.sqlite}).
        """
        for suffix in ("-wal", "-shm"):
            if os.path.exists(self.path + suffix):
                os.unlink(self.path + suffix)

    def levels(self) -> list[LogLevel]:
        """
        The levels of the events logged so far.
        """
        return [event["log_level"] for event in self.events]


class LoadTests(IndexTestCase):
    """
    Starting and stopping.
    """

    def test_provides(self) -> None:
        """
        L{EndpointIndex} fully implements L{IEndpointIndex}.
        """
        self.assertTrue(verifyObject(IEndpointIndex, self.makeIndex()))

    def test_firstLoad(self) -> None:
        """
        C{start} fires after every record is loaded; then the index is
        healthy, answers lookups and has told subscribers of each record.
        """
        a = self.store.put(record(UID_A))
        b = self.store.put(record(UID_B))
        index = self.makeIndex()
        self.assertFalse(index.healthy)
        self.assertIsNone(self.successResultOf(index.start()))
        self.assertTrue(index.healthy)
        self.assertEqual((index.lookup(UID_A), index.lookup(UID_B)), (a, b))
        self.assertIsNone(index.lookup("C" * 32))
        self.assertEqual(sorted(index.records(), key=lambda r: r.uid), [a, b])
        self.assertEqual(sorted(self.changes), [(UID_A, a), (UID_B, b)])
        self.assertEqual(index.generation, 2)

    def test_firstLoadFails(self) -> None:
        """
        When the first load fails, C{start} fails with the store's error,
        the index stays unhealthy and does not poll.
        """
        self.flaky.failure = RegistryUnavailable("no such file")
        index = self.makeIndex()
        failure = self.failureResultOf(index.start(), RegistryUnavailable)
        self.assertEqual(str(failure.value), "no such file")
        self.assertFalse(index.healthy)
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.assertEqual(self.levels(), [LogLevel.critical])

    def test_onlyInThreads(self) -> None:
        """
        The index uses the store only from its thread pool, never from the
        reactor thread (the fake store raises otherwise).
        """
        index = self.started()
        self.store.put(record(UID_A))
        self.reactor.advance(0.25)
        self.successResultOf(index.stop())
        self.assertEqual(index.lookup(UID_A), self.store.get(UID_A))
        self.assertGreater(self.flaky.calls, 1)

    def test_stop(self) -> None:
        """
        After C{stop} the index no longer polls and is unhealthy; a store
        given to it is not closed.
        """
        index = self.started()
        self.successResultOf(index.stop())
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.assertFalse(index.healthy)
        self.assertFalse(self.flaky.closed)

    def test_stopWaitsForRead(self) -> None:
        """
        C{stop} fires only once the read in progress has finished; its
        result is then ignored.
        """
        index = self.started()
        self.pool.synchronous = False
        self.store.put(record(UID_A))
        self.reactor.advance(0.25)
        stopped = index.stop()
        self.assertNoResult(stopped)
        self.pool.runAll()
        self.successResultOf(stopped)
        self.assertIsNone(index.lookup(UID_A))

    def test_stopBeforeFirstLoad(self) -> None:
        """
        Stopping before the first load ends fails the C{start} Deferred with
        L{CancelledError}.
        """
        self.pool.synchronous = False
        index = self.makeIndex()
        starting = index.start()
        stopped = index.stop()
        self.failureResultOf(starting, CancelledError)
        self.assertNoResult(stopped)
        self.pool.runAll()
        self.successResultOf(stopped)

    def test_startTwice(self) -> None:
        """
        A running index cannot be started again.
        """
        index = self.started()
        self.assertRaises(RuntimeError, index.start)

    def test_ownedStore(self) -> None:
        """
        Given a function that opens the store, the index opens it in a
        thread and closes it when stopped.
        """
        opened: list[FlakyStore] = []

        def factory() -> FlakyStore:
            self.assertTrue(self.pool.inThread)
            opened.append(FlakyStore(self.store, self.pool))
            return opened[-1]

        index = self.started(store=factory)
        self.assertEqual(len(opened), 1)
        self.successResultOf(index.stop())
        self.assertTrue(opened[0].closed)


class PollTests(IndexTestCase):
    """
    Keeping the index current.
    """

    def test_changesAppear(self) -> None:
        """
        A record written to the store appears at the next poll, and
        subscribers are told; a deletion removes it and passes C{None}.
        """
        index = self.started()
        self.reactor.advance(0.2)
        stored = self.store.put(record(UID_A))
        self.assertIsNone(index.lookup(UID_A))
        self.reactor.advance(0.05)
        self.assertEqual(index.lookup(UID_A), stored)
        self.assertEqual(self.changes, [(UID_A, stored)])
        self.store.delete(UID_A)
        self.reactor.advance(0.25)
        self.assertIsNone(index.lookup(UID_A))
        self.assertEqual(self.changes, [(UID_A, stored), (UID_A, None)])
        self.assertEqual(self.events, [])

    def test_pollInterval(self) -> None:
        """
        The poll interval is configurable.
        """
        index = self.started(pollInterval=2.0)
        stored = self.store.put(record(UID_A))
        self.reactor.advance(1.9)
        self.assertIsNone(index.lookup(UID_A))
        self.reactor.advance(0.1)
        self.assertEqual(index.lookup(UID_A), stored)

    def test_quietWithoutChanges(self) -> None:
        """
        Polls that find nothing new tell subscribers nothing and log
        nothing.
        """
        self.store.put(record(UID_A))
        self.started()
        self.reactor.pump([0.25] * 20)
        self.assertEqual((self.changes, self.events), ([], []))

    def test_unsubscribe(self) -> None:
        """
        A removed observer is not called again; removing twice is harmless.
        """
        index = self.started()
        seen: list[str] = []
        remove = index.subscribe(lambda uid, r: seen.append(uid))
        self.store.put(record(UID_A))
        self.reactor.advance(0.25)
        remove()
        remove()
        self.store.put(record(UID_B))
        self.reactor.advance(0.25)
        self.assertEqual(seen, [UID_A])

    def test_observerFails(self) -> None:
        """
        An observer that raises is logged and the others are still called.
        """
        index = self.started()
        index.subscribe(lambda uid, r: 1 / 0)
        later: list[str] = []
        index.subscribe(lambda uid, r: later.append(uid))
        self.store.put(record(UID_A))
        self.reactor.advance(0.25)
        self.assertEqual(later, [UID_A])
        self.assertEqual([u for u, _ in self.changes], [UID_A])
        self.assertEqual(self.levels(), [LogLevel.critical])
        self.assertIsInstance(self.events[0]["log_failure"].value, ZeroDivisionError)

    def test_wholeBatchBeforeObservers(self) -> None:
        """
        Observers run after every change of a transaction is applied: one
        told of the first record already finds the second.
        """
        index = self.started()
        seen: list[object] = []
        index.subscribe(lambda uid, r: seen.append(index.lookup(UID_B)))
        with self.store.transaction() as transaction:
            transaction.put(record(UID_A))
            b = transaction.put(record(UID_B))
        self.reactor.advance(0.25)
        self.assertEqual(seen, [b, b])

    def test_historyLost(self) -> None:
        """
        When the store has pruned deletions the index has not seen, the
        index reloads everything and still learns of them.
        """
        store = self.openStore(tombstoneRetention=10.0)
        for uid in (UID_A, UID_B, "C" * 32):
            store.put(record(uid))
        index = self.started()
        self.pool.synchronous = False
        store.delete(UID_A)
        self.storeClock.now += 11
        store.delete(UID_B)
        self.reactor.advance(0.25)
        self.pool.runAll()
        self.assertEqual(sorted(self.changes), [(UID_A, None), (UID_B, None)])
        self.assertEqual([r.uid for r in index.records()], ["C" * 32])

    def test_resync(self) -> None:
        """
        Every C{resyncInterval} the index reloads everything, catching a
        change that kept its generation (which a poll cannot see).
        """
        stored = self.store.put(record(UID_A))
        index = self.started(resyncInterval=60.0)
        connection = sqlite3.connect(self.path)
        self.addCleanup(connection.close)
        connection.execute("UPDATE endpoints SET revoked = 1")
        connection.commit()
        self.reactor.pump([0.25] * 200)
        self.assertFalse(index.lookup(UID_A).revoked)
        self.reactor.pump([0.25] * 50)
        self.assertEqual(index.lookup(UID_A), attrs.evolve(stored, revoked=True))
        self.assertEqual(self.changes, [(UID_A, index.lookup(UID_A))])


class HealthTests(IndexTestCase):
    """
    C{healthy}, and the log lines that accompany its changes.
    """

    def test_shortOutage(self) -> None:
        """
        Reads failing for less than the allowance keep the index healthy;
        the outage is logged once, as a warning, and so is the recovery.
        """
        index = self.started()
        self.flaky.failure = RegistryUnavailable("disk on fire")
        self.reactor.pump([0.25] * 16)
        self.assertTrue(index.healthy)
        self.flaky.failure = None
        self.reactor.advance(0.25)
        self.assertTrue(index.healthy)
        self.assertEqual(self.levels(), [LogLevel.warn, LogLevel.info])
        self.assertIn("disk on fire", self.events[0]["error"])

    def test_longOutage(self) -> None:
        """
        Reads failing for longer than the allowance make the index
        unhealthy; that is logged once; a successful read makes it healthy
        again.
        """
        index = self.started(stalenessAllowance=5.0)
        self.flaky.failure = RegistryUnavailable("disk on fire")
        self.reactor.pump([0.25] * 20)
        self.assertTrue(index.healthy)
        self.reactor.advance(0.25)
        self.assertFalse(index.healthy)
        self.reactor.pump([0.25] * 40)
        self.assertFalse(index.healthy)
        self.assertEqual(self.levels(), [LogLevel.warn, LogLevel.error])
        self.flaky.failure = None
        self.reactor.advance(0.25)
        self.assertTrue(index.healthy)
        self.assertEqual(self.levels(), [LogLevel.warn, LogLevel.error, LogLevel.info])

    def test_hungRead(self) -> None:
        """
        A read that never returns makes the index unhealthy once the
        allowance has passed, without a second read piling up; when it
        returns, the index is healthy again.
        """
        index = self.started(stalenessAllowance=5.0)
        self.pool.synchronous = False
        self.reactor.pump([0.25] * 21)
        self.assertEqual(len(self.pool.pending), 1)
        self.assertFalse(index.healthy)
        self.assertEqual(self.levels(), [LogLevel.error])
        self.assertIn("not finished", self.events[0]["error"])
        self.pool.runAll()
        self.reactor.advance(0.25)
        self.pool.runAll()
        self.assertTrue(index.healthy)

    def test_corrupt(self) -> None:
        """
        A corrupt store makes the index unhealthy at once, logged as
        critical; it recovers when reads succeed again.
        """
        index = self.started()
        self.flaky.failure = RegistryCorrupt("malformed page")
        self.reactor.advance(0.25)
        self.assertFalse(index.healthy)
        self.reactor.pump([0.25] * 10)
        self.assertEqual(self.levels(), [LogLevel.critical])
        self.flaky.failure = None
        self.reactor.advance(0.25)
        self.assertTrue(index.healthy)

    def test_unexpectedError(self) -> None:
        """
        An exception that is not a registry failure (a bug) is logged with
        its traceback once, not at every poll, and treated as an outage.
        """
        index = self.started()
        self.flaky.failure = TypeError("bug")
        self.reactor.pump([0.25] * 30)
        self.assertFalse(index.healthy)
        failures = [e for e in self.events if "log_failure" in e]
        self.assertEqual(len(failures), 1)
        self.assertEqual(self.levels(), [LogLevel.critical, LogLevel.warn, LogLevel.error])

    def test_corruptFileRestored(self) -> None:
        """
        With a store it opens itself, the index reports a registry file
        replaced by garbage as corrupt, and recovers (telling subscribers
        of every difference) once an operator restores a good registry.
        """
        self.store.put(record(UID_A))
        self.store.close()
        index = self.started(store=lambda: SQLiteEndpointStore(self.path))
        garbage = self.path + ".bad"
        with open(garbage, "wb") as f:
            f.write(b"not a database " * 300)
        good = os.path.join(os.path.dirname(self.path), "good.sqlite")
        restored = SQLiteEndpointStore(good)
        b = restored.put(record(UID_B))
        restored.close()
        self.removeLog()
        os.replace(garbage, self.path)
        self.reactor.advance(0.25)  # the open store finds its file replaced
        self.reactor.advance(0.25)  # reopening finds garbage
        self.assertFalse(index.healthy)
        self.assertEqual(self.levels(), [LogLevel.warn, LogLevel.critical])
        self.removeLog()
        os.replace(good, self.path)
        self.reactor.advance(0.25)
        self.assertTrue(index.healthy)
        self.assertEqual(sorted(self.changes, key=lambda c: c[0]), [(UID_A, None), (UID_B, b)])
        self.successResultOf(index.stop())


class LiveTests(TestCase):
    """
    The index on the real reactor, its thread pool and a real registry
    file changed by another process.
    """

    @inlineCallbacks
    def test_changeFromOtherProcess(self) -> Generator[Deferred[Any], Any, None]:
        """
        A device revoked by the C{ztnagw endpoint revoke} admin command, run
        as another process, is seen revoked by a running index within a
        second of that process ending.
        """
        from twisted.internet import reactor

        from tests.cli.test_endpoint import CONFIGURATION

        directory = os.path.abspath(self.mktemp())
        os.mkdir(directory)
        config = os.path.join(directory, "ztnagw.conf")
        with open(config, "w") as f:
            f.write(CONFIGURATION)
        path = os.path.join(directory, "state", "ems1", "registry.sqlite")
        store = SQLiteEndpointStore(path)
        store.put(record(UID_A))
        store.close()
        index = EndpointIndex(lambda: SQLiteEndpointStore(path), reactor)
        yield index.start()
        self.addCleanup(index.stop)
        revoked: Deferred[EndpointRecord] = Deferred()

        def observe(uid: str, new: EndpointRecord | None) -> None:
            if new is not None and new.revoked and not revoked.called:
                revoked.callback(new)

        index.subscribe(observe)
        output, errors, status = yield getProcessOutputAndValue(
            sys.executable,
            ["-m", "ztnagw", "endpoint", "revoke", UID_A.lower(), "--config", config],
            env=childEnvironment(),
            path=REPOSITORY,
        )
        self.assertEqual((status, errors), (0, b""))
        self.assertEqual(output, f"Endpoint {UID_A} revoked.\n".encode())
        seen = yield revoked.addTimeout(1.0, reactor)
        self.assertEqual(seen.uid, UID_A)
        self.assertTrue(index.lookup(UID_A).revoked)
        self.assertTrue(index.healthy)
