"""
Tests for L{ztnagw.forwarder.enroll} and the C{ztnagw-forward enroll} and
C{status} commands (L{ztnagw.forwarder.cli}).
"""

from __future__ import annotations

import io
import json
import os
import stat
import sys
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.ems.fixtures import RunningEms, caFile
from tests.support.daemon import binary, environment
from tests.support.pki import DEVICE_UID, makeCA, makeDevice, newKey
from ztnagw.ems.api import DeviceReport
from ztnagw.ems.csr import parseCertificateSigningRequest
from ztnagw.ems.keys import certificatePem, publicKeyBytes
from ztnagw.forwarder.api import ApiAnswer
from ztnagw.forwarder.cli import main
from ztnagw.forwarder.enroll import EnrollmentFailed, _check, makeRequest
from ztnagw.registry.record import canonicalSerial


class RequestTests(SynchronousTestCase):
    """
    What the forwarder sends, and what it accepts back.
    """

    def test_request(self) -> None:
        """
        The CSR carries the device key and passes the EMS's checks; the
        report and the UID to re-enroll go along.
        """
        key = ec.generate_private_key(ec.SECP256R1())
        body = makeRequest(key, "zt1.x", DeviceReport(user="alice"), DEVICE_UID)
        request = parseCertificateSigningRequest(body["csr"].encode())
        self.assertEqual(publicKeyBytes(request.publicKey), publicKeyBytes(key.public_key()))
        self.assertEqual((body["token"], body["uid"], body["device"]["user"]), ("zt1.x", DEVICE_UID, "alice"))
        self.assertNotIn("uid", makeRequest(key, "t", DeviceReport(), None))

    def answer(self, device: Any, ca: Any, **changes: Any) -> ApiAnswer:
        """
        An EMS answer carrying C{device}, issued by C{ca}.
        """
        body = {
            "uid": DEVICE_UID,
            "certSerial": canonicalSerial(device.serial),
            "certificate": certificatePem(device.certificate).decode(),
            "caCertificates": [certificatePem(ca.certificate).decode()],
            "gateways": ["127.0.0.1:11443"],
        }
        body.update(changes)
        return ApiAnswer(200, body)

    def test_checked(self) -> None:
        """
        A certificate for our key, naming the UID and serial, issued by the
        CA sent along, is accepted.
        """
        ca = makeCA(keySlot=40)
        key = newKey()
        device = makeDevice(ca, DEVICE_UID, key=key)
        checked = _check(self.answer(device, ca), key)
        self.assertEqual((checked.uid, checked.gateways), (DEVICE_UID, ("127.0.0.1:11443",)))

    def test_refused(self) -> None:
        """
        Another key, another UID or serial, another CA, or garbage: the
        answer is refused and nothing is stored.
        """
        ca = makeCA(keySlot=40)
        key = newKey()
        device = makeDevice(ca, DEVICE_UID, key=key)
        other = makeCA(keySlot=41)
        cases = [
            (self.answer(device, ca), newKey(), "another key"),
            (self.answer(device, ca, uid="0123456789ABCDEF0123456789ABCDEF"), key, "does not name"),
            (self.answer(device, ca, certSerial="01"), key, "serial"),
            (self.answer(device, other), key, "not issued"),
            (self.answer(device, ca, certificate="junk"), key, "cannot be read"),
            (self.answer(device, ca, uid=None), key, "UID"),
            (self.answer(device, ca, caCertificates=5), key, "cannot be read"),
        ]
        for answer, checkKey, message in cases:
            error = self.assertRaises(EnrollmentFailed, _check, answer, checkKey)
            self.assertIn(message, error.message)


class UsageTests(SynchronousTestCase):
    """
    Command-line mistakes are reported before anything is sent.
    """

    def invoke(self, argv: list[str]) -> tuple[int, str, str]:
        """
        Run the command in this process; its status, output and errors.
        """
        out, err = io.StringIO(), io.StringIO()
        stderr, sys.stderr = sys.stderr, err
        try:
            status = main(argv, out, err)
        finally:
            sys.stderr = stderr
        return status, out.getvalue(), err.getvalue()

    def test_usage(self) -> None:
        """
        Missing or conflicting options, bad URLs and pins: status 2.
        """
        for argv, message in (
            (["enroll", "--token", "t"], "--ems"),
            (["enroll", "--ems", "https://e:1", "--token", "t", "--pin", "sha256:" + "0" * 64, "--ca-file", "x"], "not allowed with"),
            (["enroll", "--ems", "http://e:1", "--token", "t", "--pin", "sha256:" + "0" * 64], "https://"),
            (["enroll", "--ems", "https://e:1", "--token", "t", "--pin", "nope"], "not a public key pin"),
            (["enroll", "--ems", "https://e:1", "--token", "t", "--profile", ".bad"], "not a profile name"),
            (["agent", "--interval", "0"], "--interval"),
            (["agent", "--posture-command", "'unbalanced"], "posture-command"),
        ):
            status, _, err = self.invoke(argv)
            self.assertEqual(status, 2, argv)
            self.assertIn(message, err)

    def test_help(self) -> None:
        """
        No argument prints the usage (status 2); --help too (status 0).
        """
        self.assertEqual(self.invoke([])[0], 2)
        status, out, _ = self.invoke(["--help"])
        self.assertEqual(status, 0)
        self.assertIn("ztnagw-forward enroll", out)

    def test_noProfile(self) -> None:
        """
        C{status} without a profile says how to enroll.
        """
        status, _, err = self.invoke(["status", "--profile", os.path.abspath(self.mktemp())])
        self.assertEqual(status, 1)
        self.assertIn("enroll first", err)

    def test_badCaFile(self) -> None:
        """
        An unreadable or non-PEM CA file is refused.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("nothing")
        status, _, err = self.invoke(["enroll", "--ems", "https://e:1", "--token", "t", "--ca-file", path])
        self.assertEqual(status, 1)
        self.assertIn("does not hold PEM certificates", err)


class CommandTests(TestCase):
    """
    The real C{ztnagw-forward} program against an EMS listener.
    """

    @inlineCallbacks
    def setUp(self) -> Any:
        self.base = os.path.abspath(self.mktemp())
        self.ems = RunningEms(os.path.join(self.base, "state"))
        yield self.ems.start()
        self.addCleanup(self.ems.stop)
        self.env = environment()
        self.env["XDG_CONFIG_HOME"] = os.path.join(self.base, "config")

    def forward(self, *arguments: str, stdin: bytes | None = None) -> Any:
        """
        Run C{ztnagw-forward}; fires with (stdout, stderr, status).
        """
        command = binary("ztnagw-forward")
        return getProcessOutputAndValue(command[0], command[1:] + list(arguments), env=self.env, reactor=reactor)

    @inlineCallbacks
    def test_enrollStatusAgent(self) -> Any:
        """
        Without a pin the command refuses and shows the listener's pin;
        with it, it enrolls, stores a profile with a private key, and the
        agent reports.
        """
        token = self.ems.token(tags=["Lab"])
        out, err, status = yield self.forward("enroll", "--ems", self.ems.url, "--token", token)
        self.assertEqual(status, 1)
        self.assertIn(f"--pin {self.ems.pin}".encode(), err)
        self.assertEqual(self.ems.store.list(), [])
        out, err, status = yield self.forward("enroll", "--ems", self.ems.url, "--token", token, "--pin", self.ems.pin)
        self.assertEqual(status, 0, err)
        (record,) = self.ems.store.list()
        self.assertIn(f"UID:                {record.uid}".encode(), out)
        self.assertIn(f"certificate serial: {record.certSerial}".encode(), out)
        directory = os.path.join(self.base, "config", "ztnagw-forward", "default")
        self.assertEqual(stat.S_IMODE(os.stat(os.path.join(directory, "device.key")).st_mode), 0o600)
        out, err, status = yield self.forward("status", "--json")
        self.assertEqual(status, 0, err)
        shown = json.loads(out)
        self.assertEqual((shown["uid"], shown["ems"], shown["gateway"]), (record.uid, self.ems.url, "127.0.0.1:11443"))
        out, err, status = yield self.forward("agent", "--once")
        self.assertEqual(status, 0, err)
        self.assertIn(record.uid.encode(), out)
        self.assertEqual(self.ems.store.get(record.uid).osType is not None, True)

    @inlineCallbacks
    def test_caFileAndTokenFile(self) -> Any:
        """
        A CA file authenticates the EMS; a token file keeps the token out of
        the command line; a used token is refused with its code.
        """
        tokenPath = os.path.join(self.base, "token")
        with open(tokenPath, "w") as f:
            f.write(self.ems.token() + "\n")
        arguments = ["enroll", "--ems", self.ems.url, "--token-file", tokenPath, "--ca-file", caFile(self.ems, self.base), "--profile", "lab"]
        out, err, status = yield self.forward(*arguments)
        self.assertEqual(status, 0, err)
        out, err, status = yield self.forward(*(arguments + ["--new-device"]))
        self.assertEqual(status, 1)
        self.assertIn(b"(token-used)", err)
