"""
Tests for the packaging of ztnagw: the twistd plugin and the console scripts.
"""

import os
import subprocess
import sys

from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins
from twisted.trial.unittest import SynchronousTestCase, TestCase

_TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class PluginTests(SynchronousTestCase):
    """
    twistd finds the C{ztnagw} plugin.
    """

    def test_discoverable(self) -> None:
        """
        C{getPlugins(IServiceMaker)} lists a plugin named C{ztnagw} whose
        options come from L{ztnagw.tap}.
        """
        makers = {p.tapname: p for p in getPlugins(IServiceMaker)}
        self.assertIn("ztnagw", makers)
        from ztnagw import tap

        self.assertIs(makers["ztnagw"].options, tap.Options)


class FreshInstallTests(TestCase):
    """
    A newcomer's C{pip install .} into a fresh virtual environment gives
    working C{twistd ztnagw} and C{ztnagw} commands.
    """

    # Creating a venv and installing takes a while (package downloads).
    timeout = 600

    def test_freshVenv(self) -> None:
        """
        C{twistd ztnagw --help} and C{ztnagw --help} succeed from a fresh
        virtual environment with the project installed by pip.
        """
        venv = os.path.abspath(self.mktemp())
        subprocess.run(
            [sys.executable, "-m", "venv", venv], check=True, capture_output=True
        )
        binary = os.path.join(venv, "bin")
        install = subprocess.run(
            [os.path.join(binary, "pip"), "install", "-q", _TOP],
            capture_output=True,
            text=True,
        )
        self.assertEqual(install.returncode, 0, install.stderr)
        neutral = self.mktemp()
        os.mkdir(neutral)
        expected = {
            ("twistd", "ztnagw", "--help"): "--config",
            ("ztnagw", "--help"): "endpoint",
            ("ztnagw-forward", "--help"): "enroll",
        }
        for command, text in expected.items():
            result = subprocess.run(
                [os.path.join(binary, command[0]), *command[1:]],
                capture_output=True,
                text=True,
                # Outside the checkout, so that the installed copy is used.
                cwd=neutral,
            )
            self.assertEqual(result.returncode, 0, result.stderr)
            self.assertIn(text, result.stdout)
