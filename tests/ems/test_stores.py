"""
Tests for L{ztnagw.ems.stores}: one registry connection per process.
"""

from __future__ import annotations

import os
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

from tests.support.daemon import environment
from ztnagw.ems.stores import SharedStore
from ztnagw.registry.interfaces import IEndpointStore, RegistryUnavailable
from ztnagw.registry.record import EndpointRecord
from ztnagw.registry.sqlite import SQLiteEndpointStore

UID_A = "9A016B5A6E914B42AD4168C066EB04CA"
UID_B = "0123456789ABCDEF0123456789ABCDEF"


class SharedStoreTests(SynchronousTestCase):
    """
    Borrowers share one store, opened by the first and closed by the last.
    """

    def setUp(self) -> None:
        self.path = os.path.join(os.path.abspath(self.mktemp()), "registry.sqlite")
        self.opened: list[SQLiteEndpointStore] = []

        def openStore() -> SQLiteEndpointStore:
            store = SQLiteEndpointStore(self.path)
            self.opened.append(store)
            return store

        self.shared = SharedStore(openStore)

    def test_shared(self) -> None:
        """
        Two borrowers use one store; it closes when both gave it back, and
        a later borrower opens it again.
        """
        first = self.shared.acquire()
        second = self.shared.acquire()
        self.assertTrue(IEndpointStore.providedBy(first))
        first.put(EndpointRecord(uid=UID_A, certSerial="01"))
        self.assertEqual([r.uid for r in second.list()], [UID_A])
        self.assertEqual(len(self.opened), 1)
        first.close()
        first.close()
        self.assertEqual(self.shared.users, 1)
        self.assertRaises(RegistryUnavailable, first.get, UID_A)
        self.assertIsNotNone(second.get(UID_A))
        second.close()
        self.assertEqual(self.shared.users, 0)
        self.assertRaises(RegistryUnavailable, self.opened[0].get, UID_A)
        third = self.shared.acquire()
        self.assertEqual(len(self.opened), 2)
        self.assertIsNotNone(third.get(UID_A))
        third.close()

    def test_otherProcessClosing(self) -> None:
        """
        While this process holds the registry through borrowers, another
        process (an admin command) opening and closing it does not take the
        write-ahead log away: what this process writes afterwards is seen
        by everyone.
        """
        index = self.shared.acquire()
        writer = self.shared.acquire()
        index.list()
        script = (
            "import sys\n"
            "from ztnagw.registry.sqlite import SQLiteEndpointStore\n"
            "s = SQLiteEndpointStore(sys.argv[1]); s.list(); s.close()\n"
        )
        subprocess.run([sys.executable, "-c", script, self.path], check=True, env=environment(), timeout=60)
        self.assertTrue(os.path.exists(self.path + "-wal"))
        writer.put(EndpointRecord(uid=UID_B, certSerial="02"))
        fresh = SQLiteEndpointStore(self.path)
        try:
            self.assertEqual([r.uid for r in fresh.list()], [UID_B])
        finally:
            fresh.close()
        index.close()
        writer.close()
