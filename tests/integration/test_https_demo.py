"""
C{ztnagw demo}, run as a user runs it: the commands it prints work and
show what it says they show.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time

from twisted.trial.unittest import TestCase

from tests.support.daemon import binary, environment, freePort


class DemoTests(TestCase):
    """
    The demo from start to Ctrl-C.
    """

    def test_demo(self) -> None:
        """
        The demo starts, prints the three examples' curl commands, each
        gives what it announces, and Ctrl-C ends it, leaving the files of a
        directory the user gave.
        """
        directory = os.path.abspath(self.mktemp())
        process = subprocess.Popen(
            binary("ztnagw") + ["demo", "--directory", directory, "--port", str(freePort())],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=environment(),
        )
        self.addCleanup(lambda: process.poll() is None and process.kill())
        assert process.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 60
        while not any(line.startswith("  ztnagw endpoint revoke") for line in lines):
            line = process.stdout.readline().decode()
            if not line or time.monotonic() > deadline:
                self.fail("the demo did not print its examples:\n" + "".join(lines))
            lines.append(line)
        commands = [line.strip() for line in lines if line.strip().startswith("curl ")]
        self.assertEqual(len(commands), 3)
        outputs = [
            subprocess.run(shlex.split(command), capture_output=True, timeout=30).stdout
            for command in commands
        ]
        self.assertIn(b"Hello from the internal web server", outputs[0])
        self.assertIn(b"X-Forwarded-For: 127.0.0.1", outputs[0])
        self.assertIn(b"403 Forbidden", outputs[1])
        self.assertIn(b"X-ZTNA-Error: 002", outputs[1])
        self.assertIn(b"Hello from the internal web server", outputs[2])
        process.send_signal(signal.SIGINT)
        rest = process.stdout.read().decode()
        self.assertEqual(process.wait(30), 0, rest)
        self.assertIn(f"The demo's files stay in {directory}", rest)
        self.assertTrue(os.path.exists(os.path.join(directory, "traffic.log")))
