"""
The registry locked by another writer for 10 s: the daemon keeps deciding
from its in-memory index (a registered device is served, an unknown one
denied), an admin change made meanwhile waits for the lock or fails with a
clear message and nothing half-done, and once the lock is gone every change
reaches the daemon.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time

from twisted.trial.unittest import TestCase

from tests.integration.httpsfixture import Gateway
from tests.support.daemon import binary, environment, runAdmin

LOCK_SECONDS = 10


class LockedRegistryTests(TestCase):
    """
    A daemon whose registry another process locks.
    """

    def test_lockedTenSeconds(self) -> None:
        """
        See the module docstring.
        """
        gateway = Gateway(self.mktemp())
        gateway.start()
        self.addCleanup(gateway.stop)
        device = gateway.issueDevice()
        other = gateway.issueDevice()
        registry = os.path.join(gateway.directory, "state", "ems1", "registry.sqlite")
        locker = subprocess.Popen(
            [sys.executable, "-m", "tests.faults.locker", registry, str(LOCK_SECONDS)],
            stdout=subprocess.PIPE,
            env=environment(),
        )
        self.addCleanup(locker.wait)
        self.assertEqual(locker.stdout.readline().strip(), b"locked")  # type: ignore[union-attr]
        lockedAt = time.monotonic()
        # A change started while the lock is held.
        revoke = subprocess.Popen(
            [*binary("ztnagw"), "endpoint", "revoke", other.uid, "--config", gateway.configPath],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=environment(),
        )
        served = 0
        while time.monotonic() - lockedAt < LOCK_SECONDS - 2:
            self.assertEqual(gateway.curl("MAIN", "/headers", device)[0], 200)
            self.assertEqual(gateway.curl("MAIN", "/headers")[1].get("x-ztna-error"), ["002"])
            served += 1
        self.assertGreater(served, 2)
        self.assertIsNone(locker.poll(), "the lock ended too early for the test to mean anything")
        out, err = revoke.communicate(timeout=120)
        waited = time.monotonic() - lockedAt
        locker.stdout.readline()  # type: ignore[union-attr]
        locker.stdout.close()  # type: ignore[union-attr]
        if revoke.returncode == 0:
            # It waited for the lock rather than failing.
            self.assertGreaterEqual(waited, LOCK_SECONDS - 2)
        else:
            # It gave up waiting: cleanly, with a message, and nothing done.
            self.assertNotIn(b"Traceback", err)
            self.assertTrue(err.strip())
            self.assertEqual(gateway.curl("MAIN", "/headers", other)[0], 200)
            result = runAdmin(["endpoint", "revoke", other.uid], config=gateway.configPath)
            self.assertEqual(result.returncode, 0, result.stderr)
        # The change is in the registry and reaches the daemon.
        deadline = time.monotonic() + 10
        while gateway.curl("MAIN", "/headers", other)[1].get("x-ztna-error") != ["063"]:
            self.assertLess(time.monotonic(), deadline, "the revocation never reached the daemon")
            time.sleep(0.2)
        self.assertEqual(gateway.curl("MAIN", "/headers", device)[0], 200)
        connection = sqlite3.connect(registry)
        try:
            self.assertEqual(connection.execute("PRAGMA integrity_check").fetchone(), ("ok",))
        finally:
            connection.close()
        log = gateway.daemon.log()
        self.assertNotIn("Traceback", log)
