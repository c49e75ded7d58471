"""
Tests for L{ztnagw.cli.config}: C{ztnagw config check} and C{ztnagw config
show}.
"""

from __future__ import annotations

import argparse
import io
import os
import sys

from twisted.trial.unittest import SynchronousTestCase

from ztnagw.cli import config as cliConfig
from ztnagw.config import loads

from tests.config.helpers import MINIMAL, ROOT, lineOf

WALKTHROUGH = os.path.join(ROOT, "etc", "walkthrough.conf")


class CommandTests(SynchronousTestCase):
    """
    The commands, run as the admin command runs them.
    """

    def setUp(self) -> None:
        self.stdout = io.StringIO()
        self.stderr = io.StringIO()
        self.patch(sys, "stdout", self.stdout)
        self.patch(sys, "stderr", self.stderr)
        self.patch(os, "environ", {**os.environ, "ZTNAGW_CONFIG": "/nonexistent/ztnagw.conf"})
        parser = argparse.ArgumentParser(prog="ztnagw")
        cliConfig.addCommands(parser.add_subparsers(required=True))
        self.parser = parser

    def command(self, *argv: str) -> int:
        """
        Run C{ztnagw <argv>} and return its exit status.
        """
        arguments = self.parser.parse_args(argv)
        return arguments.func(arguments)

    def write(self, text: str) -> str:
        """
        Write a configuration file; return its path.
        """
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        path = os.path.join(directory, "gw.conf")
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_checkValid(self) -> None:
        """
        A valid configuration: a note for each certificate to be generated,
        a summary line, status 0.
        """
        self.assertEqual(self.command("config", "check", WALKTHROUGH), 0)
        lines = self.stdout.getvalue().splitlines()
        self.assertEqual(len(lines), 2, lines)
        self.assertTrue(lines[0].startswith(f"{WALKTHROUGH}:"), lines)
        self.assertIn('note: vpn certificate local "mylabfound-wildcard": ', lines[0])
        self.assertIn("the gateway creates them at start (auto-generate)", lines[0])
        self.assertEqual(
            lines[1],
            f"{WALKTHROUGH}: OK: 1 VIP, 1 access proxy, 1 api-gateway, 1 real "
            "server, 0 virtual hosts, 1 firewall policy, 0 proxy policies, 1 EMS "
            "connector (1 enabled), 1 local certificate (1 to be generated)",
        )

    def test_checkErrors(self) -> None:
        """
        An invalid configuration: every error as C{file:line: message},
        then a count, status 1.
        """
        text = MINIMAL.replace("set extport 443", "set extport 0").replace("set action accept", "set action allow")
        path = self.write(text)
        self.assertEqual(self.command("config", "check", path), 1)
        self.assertEqual(
            self.stdout.getvalue().splitlines(),
            [
                f'{path}:{lineOf(text, "set extport")}: firewall vip "vip": '
                "extport: 0 is out of range; use an integer from 1 to 65535",
                f"{path}:{lineOf(text, 'set action')}: firewall policy 1: action: "
                "allow is not allowed; use accept or deny",
                f"{path}: 2 errors; the configuration is rejected",
            ],
        )

    def test_checkWarnings(self) -> None:
        """
        Warnings are printed in the same form, and do not fail the check.
        """
        path = self.write(MINIMAL.replace("set action accept", "set action accept\n        set action deny"))
        self.assertEqual(self.command("config", "check", path), 0)
        self.assertIn(": warning: firewall policy 1: action is set again", self.stdout.getvalue())

    def test_checkSyntaxError(self) -> None:
        """
        Syntax errors are reported the same way.
        """
        path = self.write("config firewall vip\n    edit \"v\"\n")
        self.assertEqual(self.command("config", "check", path), 1)
        self.assertIn(f"{path}:2: ", self.stdout.getvalue())

    def test_missingFile(self) -> None:
        """
        A file that cannot be read is a one-line error on stderr, status 1.
        """
        self.assertEqual(self.command("config", "check", "/nonexistent/x.conf"), 1)
        self.assertEqual(
            self.stderr.getvalue(),
            "ztnagw: cannot read configuration /nonexistent/x.conf: No such file or directory\n",
        )

    def test_defaultFile(self) -> None:
        """
        Without FILE, C{--config} is used, else C{$ZTNAGW_CONFIG}; giving
        two different files is refused.
        """
        self.assertEqual(self.command("config", "check", "--config", WALKTHROUGH), 0)
        self.assertEqual(self.command("config", "check"), 1)
        self.assertIn("/nonexistent/ztnagw.conf", self.stderr.getvalue())
        self.assertEqual(self.command("config", "check", "--config", WALKTHROUGH, "/other"), 2)
        self.assertIn("give the configuration file once", self.stderr.getvalue())

    def test_show(self) -> None:
        """
        C{show} prints the normalized configuration, which loads back equal.
        """
        self.assertEqual(self.command("config", "show", WALKTHROUGH), 0)
        text = self.stdout.getvalue()
        # The walkthrough has no secret, so redacting changes nothing.
        self.assertIn('    edit "ZTNA-WS1"\n', text)
        self.assertNotIn("ssl-min-version", text)
        self.assertEqual(loads(text), loads(open(WALKTHROUGH).read()))

    def test_showFull(self) -> None:
        """
        C{show --full} prints defaults too.
        """
        self.assertEqual(self.command("config", "show", "--full", WALKTHROUGH), 0)
        self.assertIn("set ssl-min-version tls-1.2", self.stdout.getvalue())

    def test_showSecrets(self) -> None:
        """
        C{show} leaves passwords out unless C{--secrets} is given.
        """
        path = self.write('config user local\n    edit "bob"\n        set passwd "hunter2"\n    next\nend\n')
        self.assertEqual(self.command("config", "show", path), 0)
        self.assertIn("set passwd ENC redacted", self.stdout.getvalue())
        self.assertNotIn("hunter2", self.stdout.getvalue())
        self.assertEqual(self.command("config", "show", "--secrets", path), 0)
        self.assertIn('set passwd "hunter2"', self.stdout.getvalue())

    def test_showInvalid(self) -> None:
        """
        C{show} of an invalid configuration prints its errors on stderr.
        """
        path = self.write(MINIMAL.replace("set extport 443", "set extport 0"))
        self.assertEqual(self.command("config", "show", path), 1)
        self.assertEqual(self.stdout.getvalue(), "")
        self.assertIn(f"configuration {path} is invalid:\n{path}:", self.stderr.getvalue())

    def test_help(self) -> None:
        """
        Each command has help.
        """
        for command in (("config",), ("config", "check"), ("config", "show")):
            error = self.assertRaises(SystemExit, self.command, *command, "--help")
            self.assertEqual(error.code, 0)
            self.assertIn(f"usage: ztnagw {' '.join(command)}", self.stdout.getvalue())

    def test_registered(self) -> None:
        """
        The admin command has the C{config} area.
        """
        from ztnagw.cli import AREAS

        self.assertIn("config", AREAS)
