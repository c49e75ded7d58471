"""
The registry locked by another writer for 10 s: the daemon keeps deciding
from its in-memory index (a registered device is served, an unknown one
denied), an admin change and an enrollment made meanwhile each wait for the
lock or fail with a clear message and nothing half-done, and once the lock
is gone every change reaches the daemon.
"""

from __future__ import annotations

import json
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
        created = gateway.admin("token", "create", "--json")
        self.assertEqual(created.returncode, 0, created.stderr)
        token = json.loads(created.stdout)
        forwarderEnv = environment()
        forwarderEnv["XDG_CONFIG_HOME"] = os.path.join(gateway.directory, "forwarder")
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
        # And an enrollment through the daemon's EMS.
        enrollment = subprocess.Popen(
            [*binary("ztnagw-forward"), "enroll", "--ems", f"https://127.0.0.1:{gateway.ports['EMS']}",
             "--token", token["token"], "--pin", token["enroll"]["pin"]],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=forwarderEnv,
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
        enrolledOut, enrolledErr = enrollment.communicate(timeout=120)
        listed = json.loads(gateway.admin("endpoint", "list", "--json").stdout)
        if enrollment.returncode == 0:
            uid = [line.split()[-1] for line in enrolledOut.decode().splitlines() if line.strip().startswith("UID:")][0]
            self.assertIn(uid, {record["uid"] for record in listed})
        else:
            # Refused cleanly (the EMS answers 503 registry-unavailable):
            # nothing recorded, and the token is still unused.
            self.assertNotIn(b"Traceback", enrolledErr)
            self.assertEqual(len(listed), 2, listed)
            retried = subprocess.run(
                [*binary("ztnagw-forward"), "enroll", "--ems", f"https://127.0.0.1:{gateway.ports['EMS']}",
                 "--token", token["token"], "--pin", token["enroll"]["pin"]],
                capture_output=True,
                env=forwarderEnv,
                timeout=120,
            )
            self.assertEqual(retried.returncode, 0, retried.stderr)
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
