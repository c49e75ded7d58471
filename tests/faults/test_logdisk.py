"""
The traffic log cannot be written (the disk is full): the daemon keeps
serving, counts the lines it loses and says so in its own log.

The full disk is C{/dev/full}, where every write fails with C{ENOSPC}, as on
a full file system: honest (the real write path, the real error) and
needing no root or mount.
"""

from __future__ import annotations

import time

from twisted.trial.unittest import TestCase

from tests.integration.httpsfixture import Gateway


class FullDiskTests(TestCase):
    """
    C{set log-file "/dev/full"}.
    """

    def test_keepsServing(self) -> None:
        """
        Devices are served and denied as usual while every log line is
        lost; the daemon's own log reports the loss once, not per line.
        """
        gateway = Gateway(self.mktemp())
        self.addCleanup(gateway.stop)
        with open(gateway.configPath) as f:
            text = f.read()
        self.assertIn('set log-file "traffic.log"', text)
        with open(gateway.configPath, "w") as f:
            f.write(text.replace('set log-file "traffic.log"', 'set log-file "/dev/full"'))
        gateway.start()
        device = gateway.issueDevice()
        for _ in range(5):
            self.assertEqual(gateway.curl("MAIN", "/headers", device)[0], 200)
            self.assertEqual(gateway.curl("MAIN", "/headers")[1].get("x-ztna-error"), ["002"])
        deadline = time.monotonic() + 10
        while "counted and dropped" not in gateway.daemon.log():
            self.assertLess(time.monotonic(), deadline, gateway.daemon.log())
            time.sleep(0.05)
        log = gateway.daemon.log()
        self.assertIn("/dev/full", log)
        self.assertEqual(log.count("counted and dropped"), 1, log)
        self.assertNotIn("Traceback", log)
