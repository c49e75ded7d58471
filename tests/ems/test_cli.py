"""
Tests for L{ztnagw.cli.ems}, the C{ztnagw ems} admin command.

The command body is tested with a stand-in configuration
(L{tests.ems.fakes}); L{EndToEndTests} runs it on a real configuration
file.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from functools import partial

from twisted.trial.unittest import SynchronousTestCase

from tests.ems.fakes import FakeConfig, FakeEmsConnector, FakeSystemGlobal
from ztnagw.cli._common import runCommand
from ztnagw.cli.ems import addCommands, initCommand
from ztnagw.ems.ca import (
    authorityFiles,
    hasCertificateAuthority,
    loadCertificateAuthority,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ztnagw")
    addCommands(parser.add_subparsers(required=True))
    return parser


class ArgumentTests(SynchronousTestCase):
    """
    C{ztnagw ems init} takes the registry options, C{--all}, and one of
    C{--rotate} or C{--retire-previous}.
    """

    def setUp(self) -> None:
        self.patch(sys, "stderr", io.StringIO())

    def test_options(self) -> None:
        """
        The options parse into the namespace the body reads, and the
        command runs through L{runCommand}.
        """
        arguments = _parser().parse_args(
            ["ems", "init", "--config", "x.conf", "--ems", "2", "--rotate"]
        )
        self.assertEqual(arguments.config, "x.conf")
        self.assertEqual(arguments.ems, 2)
        self.assertTrue(arguments.rotate)
        self.assertFalse(arguments.retire_previous)
        self.assertFalse(arguments.all)
        self.assertEqual(arguments.func.func, runCommand)
        self.assertEqual(arguments.func.args, (initCommand,))

    def test_rotateOrRetire(self) -> None:
        """
        C{--rotate} and C{--retire-previous} cannot be combined.
        """
        self.assertRaises(
            SystemExit,
            _parser().parse_args,
            ["ems", "init", "--rotate", "--retire-previous"],
        )


class InitTests(SynchronousTestCase):
    """
    C{ztnagw ems init} creates, rotates and retires EMS CAs, and refuses
    what would overwrite one.
    """

    def setUp(self) -> None:
        self.stateDir = self.mktemp()
        self.stderr = io.StringIO()
        self.patch(sys, "stderr", self.stderr)
        self.config = FakeConfig(
            FakeSystemGlobal(stateDir=self.stateDir, hostname="gw1"),
            {
                1: FakeEmsConnector(id=1),
                2: FakeEmsConnector(id=2, serialNumber="FCTEMS0000000002"),
                3: FakeEmsConnector(id=3, status=False),
                4: FakeEmsConnector(id=4, caCertificate="ZTNA-CA"),
            },
        )

    def ems(self, *argv: str) -> tuple[int, str]:
        """
        Run C{ztnagw ems init ARGV} against the stand-in configuration.

        @return: the exit status and the standard output.
        """
        arguments = _parser().parse_args(["ems", "init", *argv])
        out = io.StringIO()
        body = partial(initCommand, loadConfig=lambda a: self.config, out=out)
        return runCommand(body, arguments), out.getvalue()

    def test_create(self) -> None:
        """
        The chosen EMS gets a CA; the report gives its subject, fingerprint
        and paths, and not the key.
        """
        status, out = self.ems("--ems", "1")
        self.assertEqual(status, 0)
        ca = loadCertificateAuthority(self.stateDir, 1)
        files = authorityFiles(self.stateDir, 1)
        self.assertIn("EMS 1 (FCTEMS8825007278): created", out)
        self.assertIn(ca.subject, out)
        self.assertIn(ca.fingerprint, out)
        self.assertIn(files.certificate, out)
        self.assertIn(files.key, out)
        with open(files.key) as f:
            keyBody = f.read().splitlines()[1]
        self.assertNotIn("PRIVATE KEY", out)
        self.assertNotIn(keyBody, out)
        self.assertFalse(hasCertificateAuthority(self.stateDir, 2))

    def test_refusesToOverwrite(self) -> None:
        """
        A second C{init} fails, leaves the CA as it is, names its
        fingerprint and says how to rotate.
        """
        self.ems("--ems", "1")
        before = loadCertificateAuthority(self.stateDir, 1)
        status, out = self.ems("--ems", "1")
        self.assertEqual(status, 1)
        self.assertEqual(out, "")
        message = self.stderr.getvalue()
        self.assertIn("already has a certificate authority", message)
        self.assertIn(before.fingerprint, message)
        self.assertIn("ztnagw ems init --ems 1 --rotate", message)
        self.assertEqual(loadCertificateAuthority(self.stateDir, 1), before)

    def test_needsChoice(self) -> None:
        """
        With several enabled entries and no C{--ems}, the command asks for
        one and creates nothing.
        """
        status, _ = self.ems()
        self.assertEqual(status, 1)
        self.assertIn("--ems ID", self.stderr.getvalue())
        self.assertFalse(hasCertificateAuthority(self.stateDir, 1))

    def test_all(self) -> None:
        """
        C{--all} creates a CA for every enabled entry without one, keeps
        existing ones, and skips disabled entries and entries with their own
        CA.
        """
        self.ems("--ems", "1")
        first = loadCertificateAuthority(self.stateDir, 1)
        status, out = self.ems("--all")
        self.assertEqual(status, 0)
        self.assertIn(
            "EMS 1 (FCTEMS8825007278): already has a certificate authority; kept", out
        )
        self.assertIn("EMS 2 (FCTEMS0000000002): created", out)
        self.assertIn("EMS 4 (FCTEMS8825007278): uses ca-certificate 'ZTNA-CA'", out)
        self.assertEqual(loadCertificateAuthority(self.stateDir, 1), first)
        self.assertTrue(hasCertificateAuthority(self.stateDir, 2))
        self.assertFalse(hasCertificateAuthority(self.stateDir, 3))
        self.assertFalse(hasCertificateAuthority(self.stateDir, 4))

    def test_allNoneEnabled(self) -> None:
        """
        C{--all} without any enabled entry fails.
        """
        self.config = FakeConfig(
            FakeSystemGlobal(stateDir=self.stateDir),
            {3: FakeEmsConnector(id=3, status=False)},
        )
        status, _ = self.ems("--all")
        self.assertEqual(status, 1)
        self.assertIn("no enabled", self.stderr.getvalue())

    def test_allCombinations(self) -> None:
        """
        C{--all} cannot be combined with C{--ems}, C{--rotate} or
        C{--retire-previous}.
        """
        for argv, fragment in (
            (("--all", "--ems", "1"), "either --ems ID or --all"),
            (("--all", "--rotate"), "one EMS at a time"),
            (("--all", "--retire-previous"), "one EMS at a time"),
        ):
            status, _ = self.ems(*argv)
            self.assertEqual(status, 1)
            self.assertIn(fragment, self.stderr.getvalue())
        self.assertFalse(hasCertificateAuthority(self.stateDir, 1))

    def test_ownCA(self) -> None:
        """
        An entry with C{ca-certificate} set is refused: its CA is the
        operator's.
        """
        for argv in (("--ems", "4"), ("--ems", "4", "--rotate")):
            status, _ = self.ems(*argv)
            self.assertEqual(status, 1)
            self.assertIn("'ZTNA-CA'", self.stderr.getvalue())
        self.assertFalse(hasCertificateAuthority(self.stateDir, 4))

    def test_unknownEms(self) -> None:
        """
        An entry that does not exist is refused.
        """
        status, _ = self.ems("--ems", "7")
        self.assertEqual(status, 1)
        self.assertIn(
            "no 'config endpoint-control fctems' entry 7", self.stderr.getvalue()
        )

    def test_rotateAndRetire(self) -> None:
        """
        C{--rotate} replaces the CA and reports the previous one as still
        trusted, with the command to retire it; C{--retire-previous} then
        removes it.
        """
        self.ems("--ems", "1")
        old = loadCertificateAuthority(self.stateDir, 1)
        status, out = self.ems("--ems", "1", "--rotate")
        self.assertEqual(status, 0)
        new = loadCertificateAuthority(self.stateDir, 1)
        self.assertNotEqual(new.certificate, old.certificate)
        self.assertEqual(new.previous, (old.certificate,))
        self.assertIn(new.fingerprint, out)
        self.assertIn(f"previous CA (SHA-256 {old.fingerprint})", out)
        self.assertIn("ztnagw ems init --ems 1 --retire-previous", out)
        self.assertNotIn("PRIVATE KEY", out)

        status, out = self.ems("--ems", "1", "--retire-previous")
        self.assertEqual(status, 0)
        self.assertIn(old.fingerprint, out)
        self.assertEqual(loadCertificateAuthority(self.stateDir, 1).previous, ())

        status, _ = self.ems("--ems", "1", "--retire-previous")
        self.assertEqual(status, 1)
        self.assertIn("no previous certificate authority", self.stderr.getvalue())

    def test_rotateWithoutCA(self) -> None:
        """
        Rotating where there is no CA fails and says how to create one.
        """
        status, _ = self.ems("--ems", "1", "--rotate")
        self.assertEqual(status, 1)
        self.assertIn("ztnagw ems init --ems 1", self.stderr.getvalue())
        self.assertFalse(hasCertificateAuthority(self.stateDir, 1))

    def test_unusableStateDirectory(self) -> None:
        """
        A state directory that cannot be created is reported, not a
        traceback.
        """
        with open(self.stateDir, "w") as f:
            f.write("a file, not a directory")
        status, _ = self.ems("--ems", "1")
        self.assertEqual(status, 1)
        self.assertIn(self.stateDir, self.stderr.getvalue())

    def test_brokenCA(self) -> None:
        """
        A CA that cannot be loaded is reported with the reason.
        """
        self.ems("--ems", "1")
        files = authorityFiles(self.stateDir, 1)
        os.chmod(files.key, 0o644)
        status, _ = self.ems("--ems", "1", "--rotate")
        self.assertEqual(status, 1)
        self.assertIn(f"chmod 600 {files.key}", self.stderr.getvalue())


class EndToEndTests(SynchronousTestCase):
    """
    C{ztnagw ems init} on a real configuration file.
    """

    def setUp(self) -> None:
        import ztnagw.config

        if not hasattr(ztnagw.config, "load"):
            raise self.skipTest("ztnagw.config.load is not available yet")
        self.patch(sys, "stderr", io.StringIO())
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        self.stateDir = os.path.join(directory, "state")
        self.configPath = os.path.join(directory, "ztnagw.conf")
        with open(self.configPath, "w") as f:
            f.write(
                "config system global\n"
                '    set hostname "gw1"\n'
                f'    set state-dir "{self.stateDir}"\n'
                "end\n"
                "config endpoint-control fctems\n"
                "    edit 1\n"
                "        set status enable\n"
                '        set server "127.0.0.1"\n'
                '        set serial-number "FCTEMS8825007278"\n'
                "    next\n"
                "end\n"
            )

    def test_init(self) -> None:
        """
        C{ztnagw ems init --config FILE} creates the CA of the only enabled
        entry in the configured state directory.
        """
        arguments = _parser().parse_args(["ems", "init", "--config", self.configPath])
        out = io.StringIO()
        status = runCommand(partial(initCommand, out=out), arguments)
        self.assertEqual(status, 0, sys.stderr.getvalue())
        ca = loadCertificateAuthority(self.stateDir, 1)
        self.assertEqual(ca.subject, "CN=ztnagw EMS CA FCTEMS8825007278,O=gw1")
        self.assertIn(ca.fingerprint, out.getvalue())
