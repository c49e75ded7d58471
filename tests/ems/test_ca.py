"""
Tests for L{ztnagw.ems.ca}.
"""

from __future__ import annotations

import datetime
import os
import stat

from attrs import evolve

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtensionOID
from OpenSSL import crypto
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from tests.ems.fakes import FakeEmsConnector, newAuthority, utcNow
from tests.support.pki import (
    DEVICE_UID,
    Issued,
    makeCA,
    makeDevice,
    makeLeaf,
    newKey,
    newRSAKey,
)
from ztnagw.ems.ca import (
    CA_VALIDITY,
    CertificateAuthorityError,
    EmsCertificateAuthority,
    authorityFiles,
    authoritySubject,
    certificateAuthorityFromLocalCertificate,
    createCertificateAuthority,
    ensureCertificateAuthority,
    hasCertificateAuthority,
    loadCertificateAuthority,
    retirePreviousCertificateAuthority,
    rotateCertificateAuthority,
    storeCertificateAuthority,
)
from ztnagw.ems.keys import certificatePem, keyMatchesCertificate, privateKeyPem
from ztnagw.ems.signing import SERIAL_BITS
from ztnagw.keyfiles import writePrivateFile, writePublicFile


def _mode(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _fileBytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _verifies(trusted: tuple[x509.Certificate, ...], leaf: x509.Certificate) -> bool:
    """
    Whether OpenSSL verifies C{leaf} against a store holding C{trusted}.
    """
    store = crypto.X509Store()
    for certificate in trusted:
        store.add_cert(crypto.X509.from_cryptography(certificate))
    context = crypto.X509StoreContext(store, crypto.X509.from_cryptography(leaf))
    try:
        context.verify_certificate()
    except crypto.X509StoreContextError:
        return False
    return True


class CreateTests(SynchronousTestCase):
    """
    L{createCertificateAuthority} makes a self-signed EC P-256 CA that may
    sign only end-entity certificates.
    """

    def setUp(self) -> None:
        self.now = utcNow()
        self.ca = createCertificateAuthority("FCTEMS8825007278", "gw1", self.now)

    def test_subject(self) -> None:
        """
        The subject names the EMS serial number and the gateway; the CA is
        its own issuer.
        """
        certificate = self.ca.certificate
        self.assertEqual(
            certificate.subject.rfc4514_string(),
            "CN=ztnagw EMS CA FCTEMS8825007278,O=gw1",
        )
        self.assertEqual(self.ca.subject, certificate.subject.rfc4514_string())
        self.assertEqual(certificate.issuer, certificate.subject)
        certificate.verify_directly_issued_by(certificate)

    def test_extensions(self) -> None:
        """
        Exactly three extensions: basic constraints CA:TRUE pathlen:0
        (critical), key usage keyCertSign and cRLSign only (critical), and
        the subject key identifier.
        """
        extensions = self.ca.certificate.extensions
        self.assertEqual(
            {e.oid for e in extensions},
            {
                ExtensionOID.BASIC_CONSTRAINTS,
                ExtensionOID.KEY_USAGE,
                ExtensionOID.SUBJECT_KEY_IDENTIFIER,
            },
        )
        constraints = extensions.get_extension_for_class(x509.BasicConstraints)
        self.assertTrue(constraints.critical)
        self.assertEqual(
            constraints.value, x509.BasicConstraints(ca=True, path_length=0)
        )
        usage = extensions.get_extension_for_class(x509.KeyUsage)
        self.assertTrue(usage.critical)
        self.assertEqual(
            usage.value,
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
        )
        identifier = extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        self.assertFalse(identifier.critical)
        self.assertEqual(
            identifier.value,
            x509.SubjectKeyIdentifier.from_public_key(self.ca.privateKey.public_key()),
        )

    def test_keyAndSerial(self) -> None:
        """
        The key is EC P-256 and certified by the certificate; the serial is
        random, positive and fits in 20 octets.
        """
        self.assertIsInstance(self.ca.privateKey, ec.EllipticCurvePrivateKey)
        self.assertEqual(self.ca.privateKey.curve.name, "secp256r1")
        self.assertTrue(keyMatchesCertificate(self.ca.privateKey, self.ca.certificate))
        self.assertTrue(0 < self.ca.certificate.serial_number < 2**SERIAL_BITS)
        other = createCertificateAuthority("FCTEMS8825007278", "gw1", self.now)
        self.assertNotEqual(
            other.certificate.serial_number, self.ca.certificate.serial_number
        )
        self.assertNotEqual(other.fingerprint, self.ca.fingerprint)

    def test_validity(self) -> None:
        """
        The CA is valid for ten years from now, starting a little earlier
        for slow clocks.
        """
        certificate = self.ca.certificate
        self.assertEqual(certificate.not_valid_after_utc, self.now + CA_VALIDITY)
        self.assertLess(certificate.not_valid_before_utc, self.now)
        self.assertGreater(
            certificate.not_valid_before_utc, self.now - datetime.timedelta(days=1)
        )
        self.assertEqual(CA_VALIDITY, datetime.timedelta(days=3650))

    def test_noSerialNoHostname(self) -> None:
        """
        Without an EMS serial number or a hostname, the subject is just
        C{CN=ztnagw EMS CA}.
        """
        self.assertEqual(authoritySubject("", "").rfc4514_string(), "CN=ztnagw EMS CA")

    def test_tooLong(self) -> None:
        """
        Names that X.509 cannot hold are refused with a message.
        """
        error = self.assertRaises(
            CertificateAuthorityError, authoritySubject, "S", "h" * 65
        )
        self.assertIn("hostname", str(error))
        error = self.assertRaises(
            CertificateAuthorityError, authoritySubject, "S" * 60, "h"
        )
        self.assertIn("serial number", str(error))

    def test_keyNotInRepr(self) -> None:
        """
        The private key takes no part in the CA's C{repr}.
        """
        self.assertNotIn("PrivateKey", repr(self.ca))
        self.assertIn("FCTEMS8825007278", repr(self.ca))


class StoreTests(SynchronousTestCase):
    """
    L{storeCertificateAuthority} writes the CA with safe modes and never
    overwrites one.
    """

    def setUp(self) -> None:
        self.stateDir = self.mktemp()
        self.files = authorityFiles(self.stateDir, 1)

    def _storeWithUmask(self, umask: int) -> EmsCertificateAuthority:
        old = os.umask(umask)
        try:
            return storeCertificateAuthority(newAuthority(), self.stateDir, 1)
        finally:
            os.umask(old)

    def test_paths(self) -> None:
        """
        The files are C{ems<id>/ca.crt} and C{ems<id>/ca.key} under the state
        directory, and the stored CA names the certificate as its source.
        """
        stored = self._storeWithUmask(0o022)
        directory = os.path.join(os.path.abspath(self.stateDir), "ems1")
        self.assertEqual(self.files.certificate, os.path.join(directory, "ca.crt"))
        self.assertEqual(self.files.key, os.path.join(directory, "ca.key"))
        self.assertEqual(stored.source, self.files.certificate)
        self.assertEqual(_fileBytes(self.files.certificate), stored.certificatePem())
        self.assertEqual(_fileBytes(self.files.key), privateKeyPem(stored.privateKey))

    def test_modesWithOpenUmask(self) -> None:
        """
        With umask 0 the key is still 0600 and the directory 0700; the
        certificate is 0644.
        """
        self._storeWithUmask(0)
        self.assertEqual(_mode(self.files.key), 0o600)
        self.assertEqual(_mode(self.files.directory), 0o700)
        self.assertEqual(_mode(self.files.certificate), 0o644)

    def test_modesWithStrictUmask(self) -> None:
        """
        With umask 077 the key is 0600 and the directory 0700.
        """
        self._storeWithUmask(0o077)
        self.assertEqual(_mode(self.files.key), 0o600)
        self.assertEqual(_mode(self.files.directory), 0o700)

    def test_directoryModeUnderOddUmask(self) -> None:
        """
        The directory, and the state directory it creates, are 0700 even
        when the umask would take the owner's search permission away.
        """
        self._storeWithUmask(0o177)
        self.assertEqual(_mode(self.files.directory), 0o700)
        self.assertEqual(_mode(self.stateDir), 0o700)

    def test_neverOverwrites(self) -> None:
        """
        A second store is refused and leaves the first CA untouched; so
        does a lone key or a lone certificate.
        """
        self._storeWithUmask(0o022)
        before = _fileBytes(self.files.key), _fileBytes(self.files.certificate)
        error = self.assertRaises(
            CertificateAuthorityError,
            storeCertificateAuthority,
            newAuthority(),
            self.stateDir,
            1,
        )
        self.assertIn("never overwritten", str(error))
        self.assertEqual(
            (_fileBytes(self.files.key), _fileBytes(self.files.certificate)), before
        )
        os.unlink(self.files.certificate)
        self.assertTrue(hasCertificateAuthority(self.stateDir, 1))
        self.assertRaises(
            CertificateAuthorityError,
            storeCertificateAuthority,
            newAuthority(),
            self.stateDir,
            1,
        )
        self.assertEqual(_fileBytes(self.files.key), before[0])

    def test_looseDirectory(self) -> None:
        """
        An existing EMS directory others can write to is refused.
        """
        os.makedirs(self.files.directory)
        os.chmod(self.files.directory, 0o777)
        error = self.assertRaises(
            CertificateAuthorityError,
            storeCertificateAuthority,
            newAuthority(),
            self.stateDir,
            1,
        )
        self.assertIn(f"chmod go-w {self.files.directory}", str(error))
        self.assertFalse(os.path.exists(self.files.key))

    def test_looseStateDirectory(self) -> None:
        """
        A state directory others can write to is refused before anything
        is created in it.
        """
        os.makedirs(self.stateDir)
        os.chmod(self.stateDir, 0o777)
        error = self.assertRaises(
            CertificateAuthorityError,
            storeCertificateAuthority,
            newAuthority(),
            self.stateDir,
            1,
        )
        self.assertIn(f"chmod go-w {os.path.abspath(self.stateDir)}", str(error))
        self.assertEqual(os.listdir(self.stateDir), [])


class LoadTests(SynchronousTestCase):
    """
    L{loadCertificateAuthority} loads a stored CA and refuses anything it
    cannot trust.
    """

    def setUp(self) -> None:
        self.stateDir = self.mktemp()
        self.files = authorityFiles(self.stateDir, 2)
        self.stored = storeCertificateAuthority(newAuthority(), self.stateDir, 2)

    def assertRefused(self, *fragments: str) -> str:
        """
        Assert that loading is refused with every fragment in the message.

        @return: the message.
        """
        error = self.assertRaises(
            CertificateAuthorityError, loadCertificateAuthority, self.stateDir, 2
        )
        for fragment in fragments:
            self.assertIn(fragment, str(error))
        return str(error)

    def test_roundTrip(self) -> None:
        """
        The loaded CA is the stored one, with its key, and nothing
        previous.
        """
        loaded = loadCertificateAuthority(self.stateDir, 2)
        self.assertEqual(loaded, self.stored)
        self.assertEqual(
            loaded.privateKey.private_numbers(),
            self.stored.privateKey.private_numbers(),
        )
        self.assertEqual(loaded.source, self.files.certificate)
        self.assertEqual(loaded.trustedCertificates(), (self.stored.certificate,))

    def test_readableKey(self) -> None:
        """
        A key file others can read is refused with the chmod to run.
        """
        os.chmod(self.files.key, 0o644)
        self.assertRefused(f"chmod 600 {self.files.key}")

    def test_looseDirectory(self) -> None:
        """
        A CA directory others can write to is refused.
        """
        os.chmod(self.files.directory, 0o770)
        self.assertRefused(f"chmod go-w {self.files.directory}")

    def test_mismatchedKey(self) -> None:
        """
        A key that does not belong to the certificate is refused.
        """
        writePrivateFile(self.files.key, privateKeyPem(newKey()))
        self.assertRefused("does not belong to the certificate", self.files.key)

    def test_notACA(self) -> None:
        """
        A certificate that is not a CA is refused, even with its own key.
        """
        leaf = makeLeaf(makeCA(keySlot=30), keySlot=31)
        writePrivateFile(self.files.key, privateKeyPem(leaf.key))
        writePublicFile(self.files.certificate, leaf.certificatePem())
        self.assertRefused("not a CA certificate")

    def test_weakCA(self) -> None:
        """
        A CA with a key the policy refuses is refused.
        """
        key = newRSAKey(1024)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(authoritySubject("S", "h"))
            .issuer_name(authoritySubject("S", "h"))
            .public_key(key.public_key())
            .serial_number(1)
            .not_valid_before(utcNow())
            .not_valid_after(utcNow() + CA_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
            .sign(key, hashes.SHA256())
        )
        os.unlink(self.files.key)
        writePrivateFile(self.files.key, privateKeyPem(key))
        writePublicFile(self.files.certificate, certificatePem(certificate))
        self.assertRefused("too weak")

    def test_missingKey(self) -> None:
        """
        A certificate without its key is refused, saying how to recover.
        """
        os.unlink(self.files.key)
        self.assertRefused("is missing", "restore the key")

    def test_missingCertificate(self) -> None:
        """
        A key without its certificate is refused, saying how to recover.
        """
        os.unlink(self.files.certificate)
        self.assertRefused("is missing", "restore the certificate")

    def test_none(self) -> None:
        """
        Loading where there is no CA says how to create one.
        """
        error = self.assertRaises(
            CertificateAuthorityError, loadCertificateAuthority, self.stateDir, 3
        )
        self.assertIn("ztnagw ems init --ems 3", str(error))


class EnsureTests(SynchronousTestCase):
    """
    L{ensureCertificateAuthority} creates the CA on first start and loads
    it afterwards, never overwriting anything.
    """

    def setUp(self) -> None:
        self.stateDir = self.mktemp()
        self.ems = FakeEmsConnector(id=1)
        self.files = authorityFiles(self.stateDir, 1)

    def test_createsOnceAndLogs(self) -> None:
        """
        The first call creates and logs the CA (subject, fingerprint, path;
        no key); the second loads the same CA and logs nothing.
        """
        with capturedLogs() as events:
            created = ensureCertificateAuthority(self.stateDir, self.ems, "gw1")
        self.assertEqual(len(events), 1)
        text = formatEvent(events[0])
        self.assertIn(created.subject, text)
        self.assertIn(created.fingerprint, text)
        self.assertIn(self.files.certificate, text)
        self.assertNotIn("PRIVATE KEY", text)
        self.assertNotIn(
            str(created.privateKey.private_numbers().private_value), repr(events)
        )
        before = _fileBytes(self.files.key), _fileBytes(self.files.certificate)
        with capturedLogs() as events:
            again = ensureCertificateAuthority(self.stateDir, self.ems, "other")
        self.assertEqual(events, [])
        self.assertEqual(again, created)
        self.assertEqual(
            (_fileBytes(self.files.key), _fileBytes(self.files.certificate)), before
        )

    def test_halfPresent(self) -> None:
        """
        A lone certificate is refused, not replaced by a new CA.
        """
        ensureCertificateAuthority(self.stateDir, self.ems, "gw1")
        certificate = _fileBytes(self.files.certificate)
        os.unlink(self.files.key)
        self.assertRaises(
            CertificateAuthorityError,
            ensureCertificateAuthority,
            self.stateDir,
            self.ems,
            "gw1",
        )
        self.assertEqual(_fileBytes(self.files.certificate), certificate)
        self.assertFalse(os.path.exists(self.files.key))

    def test_localCertificateEntry(self) -> None:
        """
        An entry that names a C{ca-certificate} gets no CA of ours.
        """
        ems = FakeEmsConnector(id=1, caCertificate="ZTNA-CA")
        error = self.assertRaises(
            CertificateAuthorityError,
            ensureCertificateAuthority,
            self.stateDir,
            ems,
            "gw1",
        )
        self.assertIn("ZTNA-CA", str(error))
        self.assertFalse(hasCertificateAuthority(self.stateDir, 1))

    def test_perEms(self) -> None:
        """
        Each EMS entry gets its own CA.
        """
        one = ensureCertificateAuthority(self.stateDir, FakeEmsConnector(id=1), "gw")
        two = ensureCertificateAuthority(
            self.stateDir, FakeEmsConnector(id=2, serialNumber="FCTEMS0000000002"), "gw"
        )
        self.assertNotEqual(one.certificate, two.certificate)
        self.assertIn("FCTEMS0000000002", two.subject)


class LocalCertificateTests(SynchronousTestCase):
    """
    L{certificateAuthorityFromLocalCertificate} accepts an operator's CA
    only if it is one and the key is its own.
    """

    def test_accepted(self) -> None:
        """
        A CA certificate with its key is accepted, named after its entry.
        """
        issued = makeCA(keySlot=40)
        ca = certificateAuthorityFromLocalCertificate(
            "ZTNA-CA", issued.certificate, issued.key
        )
        self.assertEqual(ca.certificate, issued.certificate)
        self.assertEqual(ca.source, "vpn certificate local 'ZTNA-CA'")
        self.assertEqual(ca.previous, ())

    def test_notACA(self) -> None:
        """
        An end-entity certificate is refused.
        """
        leaf = makeLeaf(makeCA(keySlot=40), keySlot=41)
        error = self.assertRaises(
            CertificateAuthorityError,
            certificateAuthorityFromLocalCertificate,
            "web",
            leaf.certificate,
            leaf.key,
        )
        self.assertIn("'web' cannot be an EMS CA", str(error))

    def test_wrongKey(self) -> None:
        """
        A key that is not the certificate's is refused.
        """
        issued = makeCA(keySlot=40)
        error = self.assertRaises(
            CertificateAuthorityError,
            certificateAuthorityFromLocalCertificate,
            "ZTNA-CA",
            issued.certificate,
            newKey(41),
        )
        self.assertIn("does not belong", str(error))


class RotationTests(SynchronousTestCase):
    """
    Rotation replaces the CA and keeps the old one trusted until it is
    retired.
    """

    def setUp(self) -> None:
        self.stateDir = self.mktemp()
        self.files = authorityFiles(self.stateDir, 1)
        self.old = storeCertificateAuthority(newAuthority(), self.stateDir, 1)
        self.oldDevice = makeDevice(
            _asIssued(self.old), DEVICE_UID, keySlot=50
        ).certificate

    def test_rotate(self) -> None:
        """
        The new CA replaces the old one, which moves to C{previous/} (key
        0600) and stays trusted: devices of both CAs verify, although both
        CAs have the same subject.
        """
        new = rotateCertificateAuthority(self.stateDir, 1, "FCTEMS8825007278", "gw1")
        self.assertNotEqual(new.certificate, self.old.certificate)
        self.assertEqual(new.subject, self.old.subject)
        self.assertEqual(new.previous, (self.old.certificate,))
        self.assertEqual(
            new.trustedCertificates(), (new.certificate, self.old.certificate)
        )
        self.assertEqual(loadCertificateAuthority(self.stateDir, 1), new)
        self.assertEqual(
            _fileBytes(self.files.previousKey), privateKeyPem(self.old.privateKey)
        )
        self.assertEqual(_mode(self.files.previousKey), 0o600)
        self.assertEqual(_mode(self.files.previousDirectory), 0o700)
        newDevice = makeDevice(_asIssued(new), DEVICE_UID, keySlot=51).certificate
        self.assertTrue(_verifies(new.trustedCertificates(), self.oldDevice))
        self.assertTrue(_verifies(new.trustedCertificates(), newDevice))
        self.assertFalse(_verifies((new.certificate,), self.oldDevice))

    def test_secondRotationWaits(self) -> None:
        """
        While a previous CA is trusted, another rotation is refused and
        changes nothing.
        """
        new = rotateCertificateAuthority(self.stateDir, 1, "S", "gw1")
        error = self.assertRaises(
            CertificateAuthorityError,
            rotateCertificateAuthority,
            self.stateDir,
            1,
            "S",
            "gw1",
        )
        self.assertIn("--retire-previous", str(error))
        self.assertEqual(loadCertificateAuthority(self.stateDir, 1), new)

    def test_retire(self) -> None:
        """
        Retiring deletes the previous CA: its devices no longer verify, and
        the current CA is unchanged.
        """
        new = rotateCertificateAuthority(self.stateDir, 1, "S", "gw1")
        retired = retirePreviousCertificateAuthority(self.stateDir, 1)
        self.assertEqual(retired, self.old.certificate)
        self.assertFalse(os.path.lexists(self.files.previousKey))
        self.assertFalse(os.path.lexists(self.files.previousDirectory))
        loaded = loadCertificateAuthority(self.stateDir, 1)
        self.assertEqual(loaded, evolve(new, previous=()))
        self.assertFalse(_verifies(loaded.trustedCertificates(), self.oldDevice))
        rotateCertificateAuthority(self.stateDir, 1, "S", "gw1")

    def test_retireNothing(self) -> None:
        """
        Retiring without a previous CA is refused.
        """
        error = self.assertRaises(
            CertificateAuthorityError,
            retirePreviousCertificateAuthority,
            self.stateDir,
            1,
        )
        self.assertIn("no previous certificate authority", str(error))

    def test_rotateNothing(self) -> None:
        """
        Rotating where there is no CA is refused.
        """
        self.assertRaises(
            CertificateAuthorityError,
            rotateCertificateAuthority,
            self.stateDir,
            9,
            "S",
            "gw",
        )
        self.assertFalse(hasCertificateAuthority(self.stateDir, 9))

    def test_interruptedRotation(self) -> None:
        """
        A rotation that stopped after saving the old CA (previous = current)
        trusts nothing extra, cannot be retired, and can be run again.
        """
        os.makedirs(self.files.previousDirectory, mode=0o700)
        writePrivateFile(self.files.previousKey, _fileBytes(self.files.key))
        writePublicFile(
            self.files.previousCertificate, _fileBytes(self.files.certificate)
        )
        self.assertEqual(loadCertificateAuthority(self.stateDir, 1).previous, ())
        error = self.assertRaises(
            CertificateAuthorityError,
            retirePreviousCertificateAuthority,
            self.stateDir,
            1,
        )
        self.assertIn("--rotate", str(error))
        new = rotateCertificateAuthority(self.stateDir, 1, "S", "gw1")
        self.assertEqual(new.previous, (self.old.certificate,))

    def test_loosePreviousKey(self) -> None:
        """
        A previous CA key that others can read makes loading fail.
        """
        rotateCertificateAuthority(self.stateDir, 1, "S", "gw1")
        os.chmod(self.files.previousKey, 0o644)
        error = self.assertRaises(
            CertificateAuthorityError, loadCertificateAuthority, self.stateDir, 1
        )
        self.assertIn(f"chmod 600 {self.files.previousKey}", str(error))


def _asIssued(ca: EmsCertificateAuthority) -> Issued:
    # The test PKI signs with an Issued (certificate and key).
    return Issued(ca.certificate, ca.privateKey)
