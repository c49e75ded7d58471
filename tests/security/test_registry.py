"""
A registry the gateway cannot read: locked by another writer, or its file
damaged.  The gateway must then refuse every device (fail closed, 066)
rather than admit from what it read earlier, for longer than its
staleness allowance (5 s); serve again once the registry is readable; and
never stop serving what needs no device (a virtual host with
C{client-cert disable}).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time

from tests.security.cases import attack, measure
from tests.security.fixture import AttackCase, SecurityGateway
from tests.support.daemon import environment

#: A process that revokes a device in a write transaction it keeps open
#: (holding the registry's write lock) until its standard input closes,
#: then commits.
_WRITER = """
import sys, attrs
from ztnagw.registry.sqlite import SQLiteEndpointStore
store = SQLiteEndpointStore(sys.argv[1])
with store.transaction() as transaction:
    record = transaction.get(sys.argv[2])
    transaction.put(attrs.evolve(record, revoked=True))
    print("locked", flush=True)
    sys.stdin.read()
store.close()
"""


def registryPath(gateway: SecurityGateway) -> str:
    """
    The registry file of the gateway's EMS 1.
    """
    return os.path.join(gateway.stateDir, "ems1", "registry.sqlite")


def checkOpenServing(test: AttackCase, gateway: SecurityGateway) -> None:
    """
    The virtual host without client-certificate rules still serves.
    """
    response = gateway.request("/open", host="open.test", serverName="open.test")
    test.assertEqual(response.status, 200, response)


def overwrite(path: str) -> None:
    """
    Write every page of the registry back into its file (a checkpoint, from
    another process), then overwrite the file with garbage in place.
    """
    subprocess.run(
        [sys.executable, "-c", "import sqlite3, sys; sqlite3.connect(sys.argv[1]).execute('PRAGMA wal_checkpoint(TRUNCATE)')", path],
        check=True,
        timeout=30,
    )
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.write(os.urandom(size))


class RegistryTests(AttackCase):
    """
    The registry made unreadable under a running gateway, or before it
    starts.
    """

    timeout = 180

    @attack(
        "registry",
        "registry locked by another writer for 6 s, with an uncommitted revocation",
        "devices served from the committed registry meanwhile; the revocation (063) applies within a second of its commit",
    )
    def test_lockedByWriter(self) -> None:
        """
        Another process holds the registry's write lock for seconds, in a
        transaction that revokes a device: readers are not blocked (the
        registry is a write-ahead log), so the gateway keeps serving the
        committed state, the revoked-to-be device included, and the
        revocation takes effect once committed.
        """
        g = self.gateway
        victim = g.issueDevice()
        writer = subprocess.Popen(
            [sys.executable, "-c", _WRITER, registryPath(g), victim.uid],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=environment(),
        )
        self.addCleanup(writer.kill)
        assert writer.stdout is not None and writer.stdin is not None
        self.assertEqual(writer.stdout.readline().strip(), b"locked")
        locked = time.monotonic()
        while time.monotonic() - locked < 6:
            self.assertEqual(g.request("/during", device=victim).status, 200)
            self.assertEqual(g.request("/during", device=g.good).status, 200)
            time.sleep(0.5)
        writer.stdin.close()
        self.assertEqual(writer.wait(30), 0)
        committed = time.monotonic()
        while g.request("/after", device=victim).status == 200:
            self.assertLess(time.monotonic() - committed, 5, "the committed revocation was not applied")
            time.sleep(0.1)
        measure(self.id(), "revocation applied after commit", f"{time.monotonic() - committed:.1f} s")
        g.resetBackends()
        response = g.request("/after", device=victim)
        self.assertEqual((response.status, response.ztnaError), (403, "063"))
        self.assertNothingReached()
        g.checkServing(self)

    @attack(
        "registry",
        "registry file moved away while the gateway runs (unreadable)",
        "admitted for at most the 5 s staleness allowance, then 066 for every device; admitted again once restored",
    )
    def test_unreadable(self) -> None:
        """
        While the registry cannot be read, the gateway serves from its
        index for at most its staleness allowance, then refuses every
        device with 066 (nothing reaches the real server); once the file is
        back, devices are admitted again.  The virtual host that needs no
        device is served throughout.
        """
        g = self.gateway
        path = registryPath(g)
        self.assertEqual(g.request("/before", device=g.good).status, 200)
        os.rename(path, path + ".away")
        self.addCleanup(lambda: os.path.exists(path + ".away") and os.rename(path + ".away", path))
        g.resetBackends()
        gone = time.monotonic()
        admitted = 0
        refusedAfter = None
        while time.monotonic() - gone < 20:
            response = g.request("/during", device=g.good)
            if response.status == 200:
                self.assertIsNone(refusedAfter, "admitted again while still unreadable")
                admitted += 1
            else:
                self.assertEqual((response.status, response.ztnaError), (403, "066"), response)
                if refusedAfter is None:
                    refusedAfter = time.monotonic() - gone
                    checkOpenServing(self, g)
                elif time.monotonic() - gone - refusedAfter > 2:
                    break
            time.sleep(0.25)
        self.assertIsNotNone(refusedAfter, "an unreadable registry never failed closed")
        measure(self.id(), "fail-closed after", f"{refusedAfter:.1f} s")
        self.assertEqual(len(g.backendStats()["http"]["requests"]), admitted + 1)
        os.rename(path + ".away", path)
        restored = time.monotonic()
        while g.request("/after", device=g.good).status != 200:
            self.assertLess(time.monotonic() - restored, 20, "never admitted again once restored")
            time.sleep(0.25)
        g.checkServing(self)

    @attack(
        "registry",
        "registry file overwritten in place while the gateway runs",
        "066 for every device at the next poll (was: admitted from cache, F3); the daemon keeps running",
    )
    def test_corruptWhileRunning(self) -> None:
        """
        A registry file overwritten with garbage under the running daemon
        makes it refuse every device with 066 within a second, keep
        serving the virtual host that needs no device, and stay up.
        """
        g = SecurityGateway(tempfile.mkdtemp(prefix="ztnagw-security-corrupt-"))
        self.addCleanup(g.stop)
        g.start()
        self.assertEqual(g.request("/before", device=g.good).status, 200)
        overwrite(registryPath(g))
        g.resetBackends()
        started = time.monotonic()
        while True:
            response = g.request("/after", device=g.good)
            if response.status == 403:
                break
            self.assertLess(time.monotonic() - started, 5, "a damaged registry was still used")
            time.sleep(0.1)
        measure(self.id(), "fail-closed after", f"{time.monotonic() - started:.1f} s")
        g.resetBackends()
        for _ in range(3):
            response = g.request("/after", device=g.good)
            self.assertEqual((response.status, response.ztnaError), (403, "066"), response)
        self.assertEqual(g.backendStats()["http"]["requests"], [])
        checkOpenServing(self, g)
        self.assertTrue(g.alive())

    @attack(
        "registry",
        "registry file damaged before the gateway starts",
        "the daemon refuses to start and says which file and what to do; nothing listens",
    )
    def test_corruptAtStart(self) -> None:
        """
        A gateway whose registry is damaged does not start: it exits with a
        message naming the file and the remedy, and its VIP never listens.
        """
        g = SecurityGateway(tempfile.mkdtemp(prefix="ztnagw-security-corrupt-"))
        self.addCleanup(g.stop)
        g.start()
        g.daemon.stop()
        overwrite(registryPath(g))
        error = self.assertRaises(RuntimeError, g.daemon.start, [g.ports["WEB"]])
        self.assertIn("is damaged or not an SQLite database", str(error))
        self.assertIn("restore the registry from a backup", str(error))
        self.assertFalse(g.alive())
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", g.ports["WEB"]), timeout=2).close()
        self.assertEqual(g.backendStats()["http"]["connections"], 0)


