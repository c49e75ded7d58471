"""
Tests for L{benchmarks.pki}: the throwaway PKI every benchmarked system
shares.
"""

from __future__ import annotations

import os
import re
import stat

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from twisted.trial.unittest import SynchronousTestCase

from benchmarks.pki import makeBenchPki, newUid


def _load(path: str) -> x509.Certificate:
    with open(path, "rb") as f:
        return x509.load_pem_x509_certificate(f.read())


class BenchPkiTests(SynchronousTestCase):
    """
    Tests for L{makeBenchPki}.
    """

    def setUp(self) -> None:
        self.directory = self.mktemp()
        self.pki = makeBenchPki(self.directory, deviceCount=2)

    def test_devicesCarryUids(self) -> None:
        """
        Each device certificate's subject CN is its UID (32 upper-case hex
        digits), its serial is recorded, and it is for client
        authentication.
        """
        self.assertEqual(len(self.pki.devices), 2)
        self.assertNotEqual(self.pki.devices[0].uid, self.pki.devices[1].uid)
        for device in self.pki.devices:
            certificate = _load(device.files.certificate)
            cn = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
            self.assertEqual(cn, device.uid)
            self.assertRegex(device.uid, r"^[0-9A-F]{32}$")
            self.assertEqual(certificate.serial_number, device.serial)
            usage = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
            self.assertEqual(list(usage), [ExtendedKeyUsageOID.CLIENT_AUTH])

    def test_issuedByTheCa(self) -> None:
        """
        The server and device certificates verify against the CA, and are
        EC P-256.
        """
        ca = _load(self.pki.ca.certificate)
        for files in [self.pki.server] + [d.files for d in self.pki.devices]:
            certificate = _load(files.certificate)
            certificate.verify_directly_issued_by(ca)
            key = certificate.public_key()
            assert isinstance(key, ec.EllipticCurvePublicKey)
            self.assertEqual(key.curve.name, "secp256r1")

    def test_serverNamesLoopback(self) -> None:
        """
        The server certificate names 127.0.0.1 and localhost.
        """
        names = _load(self.pki.server.certificate).extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value
        self.assertEqual(names.get_values_for_type(x509.DNSName), ["localhost"])
        self.assertEqual([str(a) for a in names.get_values_for_type(x509.IPAddress)], ["127.0.0.1"])

    def test_keysPrivate(self) -> None:
        """
        Private keys (alone or with their certificate) are mode 0600.
        """
        for files in [self.pki.ca, self.pki.server] + [d.files for d in self.pki.devices]:
            for path in (files.key, files.combined):
                self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600, path)

    def test_noDevice(self) -> None:
        """
        A PKI without devices is refused.
        """
        self.assertRaises(ValueError, makeBenchPki, self.mktemp(), 0)

    def test_uid(self) -> None:
        """
        L{newUid} makes distinct FortiClient-style UIDs.
        """
        uids = {newUid() for _ in range(50)}
        self.assertEqual(len(uids), 50)
        for uid in uids:
            self.assertTrue(re.fullmatch(r"[0-9A-F]{32}", uid))
