"""
Tests for L{ztnagw.cli.token}: the C{ztnagw token} commands.
"""

from __future__ import annotations

import io
import json
import os

from twisted.trial.unittest import SynchronousTestCase

from ztnagw.cli import buildParser
from ztnagw.cli._common import CommandFailed
from ztnagw.cli.token import TokenCommands
from ztnagw.ems.ca import authorityFiles, createCertificateAuthority, storeCertificateAuthority
from ztnagw.ems.listener import ensureListenerCertificate
from ztnagw.ems.tokens import parseToken
from ztnagw.registry.sqlite import SQLiteEndpointStore

NOW = 1_800_000_000.0


class _Ems:
    id = 1
    serialNumber = "FCTEMS8825007278"
    server = "127.0.0.1"
    httpsPort = 18013


class TokenCommandsTests(SynchronousTestCase):
    """
    The command bodies, over a real registry.
    """

    def setUp(self) -> None:
        self.stateDir = os.path.abspath(self.mktemp())
        self.store = SQLiteEndpointStore(os.path.join(self.stateDir, "ems1", "registry.sqlite"))
        self.addCleanup(self.store.close)
        self.out = io.StringIO()
        self.now = NOW
        self.commands = TokenCommands(self.store, _Ems(), self.stateDir, self.out, clock=lambda: self.now)

    def output(self) -> str:
        """
        What was printed so far; forget it.
        """
        text = self.out.getvalue()
        self.out.seek(0)
        self.out.truncate()
        return text

    def test_createPrintsOnce(self) -> None:
        """
        The token is printed with the enroll command; listing never shows
        it.
        """
        ca = storeCertificateAuthority(createCertificateAuthority("FCTEMS8825007278", "gw1"), self.stateDir, 1)
        pin = ensureListenerCertificate(self.stateDir, 1, "127.0.0.1", ca).pin
        self.commands.create(["Lab"], 2, 3600.0, "alice", None, "laptops")
        text = self.output()
        token = [line.strip() for line in text.splitlines() if line.strip().startswith("zt1.")][0]
        parseToken(token)
        self.assertIn(f"ztnagw-forward enroll --ems https://127.0.0.1:18013 --pin {pin} --token {token}", text)
        self.assertIn("0 of 2", text)
        self.commands.list()
        listing = self.output()
        self.assertIn(token.split(".")[1], listing)
        self.assertNotIn(token.split(".")[2], listing)
        self.assertIn("laptops", listing)

    def test_createWithoutListenerYet(self) -> None:
        """
        Before the gateway first started, the hint names the CA file
        instead of the pin.
        """
        storeCertificateAuthority(createCertificateAuthority("FCTEMS8825007278", "gw1"), self.stateDir, 1)
        self.commands.create([], 1, 3600.0, None, None, None)
        text = self.output()
        self.assertIn(f"--ca-file {authorityFiles(self.stateDir, 1).certificate}", text)
        self.assertIn("first start", text)

    def test_json(self) -> None:
        """
        C{--json} gives the token and the enrollment hint as JSON; list
        gives the same fields without the token.
        """
        self.commands.create(["A"], 1, None, None, "9A016B5A6E914B42AD4168C066EB04CA", None, asJson=True)
        created = json.loads(self.output())
        self.assertTrue(created["token"].startswith("zt1."))
        self.assertEqual((created["uid"], created["expiresAt"], created["enroll"]["ems"]), ("9A016B5A6E914B42AD4168C066EB04CA", None, "https://127.0.0.1:18013"))
        self.commands.list(asJson=True)
        (listed,) = json.loads(self.output())
        self.assertNotIn("token", listed)
        self.assertEqual(listed["id"], created["id"])

    def test_refused(self) -> None:
        """
        Values the registry refuses become a command failure.
        """
        self.assertRaises(CommandFailed, self.commands.create, [], 2, 60.0, None, "9A016B5A6E914B42AD4168C066EB04CA", None)

    def test_revokeAndShow(self) -> None:
        """
        A revoked token leaves the default listing; C{--all} and C{show}
        still show it.
        """
        self.commands.create([], 1, 3600.0, None, None, None, asJson=True)
        tokenId = json.loads(self.output())["id"]
        self.commands.revoke(tokenId)
        self.assertIn(f"Revoked token {tokenId}", self.output())
        self.commands.revoke(tokenId)
        self.assertIn("already revoked", self.output())
        self.commands.list()
        self.assertIn("No usable tokens", self.output())
        self.commands.list(showAll=True)
        self.assertIn("revoked", self.output())
        self.commands.show(tokenId)
        self.assertIn("0 enrollment(s)", self.output())
        self.assertRaises(CommandFailed, self.commands.revoke, "000000000000")
        self.assertRaises(CommandFailed, self.commands.show, "nope")

    def test_expiredHidden(self) -> None:
        """
        An expired token is not usable and is listed only with C{--all}.
        """
        self.commands.create([], 1, 60.0, None, None, None)
        self.output()
        self.now += 61
        self.commands.list()
        self.assertIn("No usable tokens", self.output())
        self.commands.list(showAll=True)
        self.assertIn("expired", self.output())


class ParserTests(SynchronousTestCase):
    """
    The C{ztnagw token} command line.
    """

    def test_parsed(self) -> None:
        """
        Tags repeat, durations and UIDs are read.
        """
        arguments = buildParser().parse_args(
            ["token", "create", "--tag", "A", "--tag", "B", "--uses", "5", "--expires", "7d", "--uid", "9a016b5a6e914b42ad4168c066eb04ca"]
        )
        self.assertEqual((arguments.tag, arguments.uses, arguments.expires), (["A", "B"], 5, 7 * 86400.0))
        self.assertEqual(arguments.uid, "9A016B5A6E914B42AD4168C066EB04CA")
        self.assertIsNone(buildParser().parse_args(["token", "create", "--expires", "never"]).expires)

    def test_refused(self) -> None:
        """
        Bad values are usage errors.
        """
        for argv in (
            ["token", "create", "--tag", "a b"],
            ["token", "create", "--uses", "0"],
            ["token", "create", "--expires", "soon"],
            ["token", "create", "--uid", "xyz"],
            ["token", "revoke"],
        ):
            self.assertRaises(SystemExit, buildParser().parse_args, argv)
