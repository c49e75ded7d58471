"""
A registry file overwritten in place while the gateway runs (security
finding F3): the store must fail closed at once, not go on answering from
SQLite's page cache.
"""

from __future__ import annotations

import os
import sqlite3

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tests.registry.test_sqlite import UID_A, UID_B, record
from ztnagw.registry.exceptions import RegistryCorrupt
from ztnagw.registry.index import EndpointIndex
from ztnagw.registry.sqlite import SQLiteEndpointStore


class _InlinePool:
    """
    Runs "threaded" work at once, in the test's thread.
    """

    def callInThreadWithCallback(self, onResult, function, *args, **kwargs):  # type: ignore[no-untyped-def]
        try:
            result = function(*args, **kwargs)
        except BaseException as e:
            from twisted.python.failure import Failure

            onResult(False, Failure(e))
        else:
            onResult(True, result)


class _Reactor(Clock):
    """
    A clock whose calls from threads run at once.
    """

    def callFromThread(self, f, *args, **kwargs):  # type: ignore[no-untyped-def]
        f(*args, **kwargs)


class OverwrittenTests(SynchronousTestCase):
    """
    The header of the registry file is checked on every use.
    """

    def setUp(self) -> None:
        directory = os.path.abspath(self.mktemp())
        self.path = os.path.join(directory, "registry.sqlite")
        self.store = SQLiteEndpointStore(self.path)
        self.addCleanup(self.store.close)
        self.store.put(record(UID_A))

    def overwrite(self) -> None:
        """
        Write every page back to the file (a checkpoint: until then the
        write-ahead log holds them, and the file's own bytes do not
        matter), then overwrite the whole file with garbage, in place
        (same inode).
        """
        checkpoint = sqlite3.connect(self.path)
        checkpoint.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        checkpoint.close()
        # The store reads once more, and so has every page in its cache.
        self.assertEqual(self.store.get(UID_A).uid, UID_A)
        size = os.path.getsize(self.path)
        with open(self.path, "r+b") as f:
            f.write(b"\xa5" * size)

    def test_store(self) -> None:
        """
        Reads and writes of a store whose file was overwritten raise
        L{RegistryCorrupt}, though SQLite could still answer from its
        cache.
        """
        self.assertEqual(self.store.get(UID_A).uid, UID_A)
        self.overwrite()
        error = self.assertRaises(RegistryCorrupt, self.store.changesSince, 0)
        self.assertIn("not an SQLite database", str(error))
        self.assertRaises(RegistryCorrupt, self.store.get, UID_A)
        self.assertRaises(RegistryCorrupt, self.store.put, record(UID_B))

    def test_index(self) -> None:
        """
        The gateway's index turns unhealthy (every device refused, 066) at
        its next poll, without waiting for the staleness allowance.
        """
        reactor = _Reactor()
        index = EndpointIndex(self.store, reactor, threadpool=_InlinePool(), pollInterval=0.25)
        index.start()
        self.addCleanup(index.stop)
        self.assertTrue(index.healthy)
        self.overwrite()
        reactor.advance(0.25)
        self.assertFalse(index.healthy)


