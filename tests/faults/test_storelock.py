"""
Regression test for L{ztnagw.registry.sqlite.SQLiteEndpointStore}: a write
that waits for another process's write lock must not keep readers of the
same store waiting.

The daemon reads and writes each registry through one store (the index
polls it, enrollment and telemetry write to it).  A write waiting inside
SQLite held the store for the whole busy timeout; the index could not
refresh, and after its staleness allowance every device was denied for as
long as an enrollment waited on another writer (found by
L{tests.faults.test_registry}).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading

from twisted.trial.unittest import TestCase

from ztnagw.registry.interfaces import RegistryUnavailable
from ztnagw.registry.record import EndpointRecord
from ztnagw.registry.sqlite import SQLiteEndpointStore
from tests.support.daemon import environment

UID = "0123456789ABCDEF0123456789ABCDEF"

#: Seconds the other process holds the write lock: far longer than a read
#: takes, so that the order of events below cannot come from timing.
HOLD = 3


class WaitingWriteTests(TestCase):
    """
    A write waiting for the lock, and a read meanwhile.
    """

    def setUp(self) -> None:
        directory = os.path.abspath(self.mktemp())
        self.path = os.path.join(directory, "registry.sqlite")
        self.store = SQLiteEndpointStore(self.path, busyTimeout=30)
        self.addCleanup(self.store.close)

    def lock(self, seconds: float) -> subprocess.Popen:
        """
        Have another process hold the write lock for C{seconds}.
        """
        locker = subprocess.Popen(
            [sys.executable, "-m", "tests.faults.locker", self.path, str(seconds)],
            stdout=subprocess.PIPE,
            env=environment(),
        )
        self.addCleanup(lambda: (locker.wait(), locker.stdout.close()))  # type: ignore[union-attr]
        self.assertEqual(locker.stdout.readline().strip(), b"locked")  # type: ignore[union-attr]
        return locker

    def test_readWhileWriteWaits(self) -> None:
        """
        While a write of this store waits for another process's lock, a read
        of the same store answers at once (before the lock is released), and
        the write goes through once it is.
        """
        locker = self.lock(HOLD)
        finished = threading.Event()
        failures: list[BaseException] = []

        def write() -> None:
            try:
                with self.store.transaction() as t:
                    t.put(EndpointRecord(uid=UID, certSerial="01", emsSerial="FCTEMS8825007278"))
            except BaseException as e:
                failures.append(e)
            finished.set()

        writer = threading.Thread(target=write)
        writer.start()
        self.addCleanup(writer.join, 60)
        # Let the write start waiting.
        finished.wait(0.3)
        self.assertFalse(finished.is_set(), "the write did not wait for the lock")
        self.assertEqual(self.store.list(), [])
        self.assertIsNone(locker.poll(), "the read waited for the other process's lock")
        self.assertFalse(finished.is_set())
        writer.join(60)
        self.assertEqual(failures, [])
        self.assertEqual([r.uid for r in self.store.list()], [UID])

    def test_gaveUp(self) -> None:
        """
        A write still refused when the busy timeout has passed fails with
        L{RegistryUnavailable}, and changes nothing.
        """
        self.store.close()
        self.store = SQLiteEndpointStore(self.path, busyTimeout=0.5)
        self.lock(HOLD)
        with self.assertRaises(RegistryUnavailable) as caught:
            with self.store.transaction() as t:
                t.put(EndpointRecord(uid=UID, certSerial="01", emsSerial="FCTEMS8825007278"))
        self.assertIn("stayed locked by another process", str(caught.exception))
        self.assertEqual(self.store.list(), [])
