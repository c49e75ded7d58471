"""
SIGKILL of the daemon in the middle of enrollments, revocations and
traffic, three times in a row, each time restarted at once: no change that
was acknowledged is lost, no record is half-written (the database checks
whole, every token use has its record), the restart works on the first try
(no crash loop), and the daemon's decisions follow the registry.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import threading
import time

from twisted.trial.unittest import TestCase

from tests.integration.httpsfixture import VIPS, Gateway
from tests.support.daemon import binary, environment, runAdmin

ROUNDS = 3


class KillTests(TestCase):
    """
    kill -9 under load, restart at once.
    """

    def setUp(self) -> None:
        self.gateway = Gateway(self.mktemp())
        self.gateway.start()
        self.addCleanup(self.gateway.stop)
        self.env = environment()
        self.env["XDG_CONFIG_HOME"] = os.path.join(self.gateway.directory, "forwarder")
        result = self.gateway.admin("token", "create", "--json", "--uses", "100")
        self.assertEqual(result.returncode, 0, result.stderr)
        created = json.loads(result.stdout)
        self.token, self.pin = created["token"], created["enroll"]["pin"]
        self.enrollments = 0

    def enroll(self) -> subprocess.Popen:
        """
        Start one enrollment with the real forwarder.
        """
        self.enrollments += 1
        return subprocess.Popen(
            binary("ztnagw-forward")
            + ["enroll", "--ems", f"https://127.0.0.1:{self.gateway.ports['EMS']}", "--token", self.token,
               "--pin", self.pin, "--profile", f"d{self.enrollments}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.env,
        )

    def registry(self) -> str:
        """
        The registry file.
        """
        return os.path.join(self.gateway.directory, "state", "ems1", "registry.sqlite")

    def test_killedUnderLoad(self) -> None:
        """
        See the module docstring.
        """
        g = self.gateway
        victims = [g.issueDevice() for _ in range(3 * ROUNDS)]
        keeper = g.issueDevice()
        revoked: list[str] = []
        enrolled: list[str] = []
        for round in range(ROUNDS):
            processes = [self.enroll() for _ in range(6)]
            stop = threading.Event()

            def revoke(devices: list = victims[3 * round:3 * round + 3]) -> None:
                for device in devices:
                    if stop.is_set():
                        return
                    result = runAdmin(["endpoint", "revoke", device.uid], config=g.configPath)
                    if result.returncode == 0:
                        revoked.append(device.uid)

            revoker = threading.Thread(target=revoke)
            revoker.start()
            deadline = time.monotonic() + 60
            while not any(p.poll() == 0 for p in processes):
                self.assertLess(time.monotonic(), deadline, "no enrollment succeeded")
                g.curl("MAIN", "/headers", keeper, timeout=5)
            g.daemon.kill()
            stop.set()
            revoker.join(60)
            for process in processes:
                out, _ = process.communicate(timeout=60)
                if process.returncode == 0:
                    enrolled.extend(
                        line.split()[-1] for line in out.decode().splitlines() if line.strip().startswith("UID:")
                    )
            # Restart at once, on the first try.
            started = time.monotonic()
            g.daemon.start(waitPorts=[g.ports[name] for name in VIPS] + [g.ports["EMS"]])
            g.waitForLog("registry loaded")
            self.assertLess(time.monotonic() - started, 30)
        connection = sqlite3.connect(self.registry())
        try:
            self.assertEqual(connection.execute("PRAGMA integrity_check").fetchone(), ("ok",))
        finally:
            connection.close()
        listed = json.loads(g.admin("endpoint", "list", "--json").stdout)
        byUid = {record["uid"]: record for record in listed}
        self.assertTrue(enrolled)
        for uid in enrolled:
            self.assertIn(uid, byUid)
        self.assertTrue(revoked)
        for uid in revoked:
            self.assertTrue(byUid[uid]["revoked"], byUid[uid])
        # The restarted daemon decides from what was recorded.
        g.settle()
        for device in victims:
            expected = ["063"] if device.uid in revoked else None
            self.assertEqual(g.curl("MAIN", "/headers", device)[1].get("x-ztna-error"), expected, device.uid)
        self.assertEqual(g.curl("MAIN", "/headers", keeper)[0], 200)
        self.assertEqual(g.daemon.log().count("Traceback"), 0, g.daemon.log())
