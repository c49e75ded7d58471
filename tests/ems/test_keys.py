"""
Tests for L{ztnagw.ems.keys}.
"""

from __future__ import annotations

import hashlib
import os

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa
from twisted.trial.unittest import SynchronousTestCase

from tests.support.pki import makeCA, makeLeaf, newKey, newRSAKey
from ztnagw.ems.keys import (
    KeyMaterialError,
    describeKey,
    fingerprint,
    keyMatchesCertificate,
    newPrivateKey,
    privateKeyPem,
    publicKeyProblem,
    readCertificateFile,
    readPrivateKeyFile,
    signatureHash,
)
from ztnagw.keyfiles import writePrivateFile, writePublicFile


def _rsaPublicKey(bits: int, exponent: int = 65537) -> rsa.RSAPublicKey:
    # RSA public keys are not checked for primality, so tests can make keys
    # of any size without the cost of generating them.
    return rsa.RSAPublicNumbers(exponent, 2 ** (bits - 1) + 2**1000 + 1).public_key()


class PublicKeyPolicyTests(SynchronousTestCase):
    """
    L{publicKeyProblem} accepts RSA 2048..8192 and EC P-256/P-384/P-521,
    and refuses everything else with a sentence that says what to use.
    """

    def test_acceptedCurves(self) -> None:
        """
        P-256, P-384 and P-521 keys are accepted.
        """
        for curve in (ec.SECP256R1(), ec.SECP384R1(), ec.SECP521R1()):
            key = ec.generate_private_key(curve).public_key()
            self.assertIsNone(publicKeyProblem(key), curve.name)

    def test_otherCurves(self) -> None:
        """
        Other curves are refused, naming the curve.
        """
        for curve in (ec.SECP256K1(), ec.BrainpoolP256R1(), ec.SECP224R1()):
            key = ec.generate_private_key(curve).public_key()
            problem = publicKeyProblem(key)
            self.assertIsNotNone(problem)
            self.assertIn(curve.name, problem)
            self.assertIn("P-256", problem)

    def test_p192(self) -> None:
        """
        A P-192 key, where the library still makes one, is refused.
        """
        try:
            key = ec.generate_private_key(ec.SECP192R1()).public_key()
        except Exception as e:
            raise self.skipTest(f"P-192 is not available: {e}")
        self.assertIn("secp192r1", publicKeyProblem(key))

    def test_rsaSizes(self) -> None:
        """
        RSA keys of 2048 to 8192 bits are accepted; smaller ones are too weak
        and larger ones too large.
        """
        self.assertIsNone(publicKeyProblem(newRSAKey(2048).public_key()))
        self.assertIsNone(publicKeyProblem(_rsaPublicKey(4096)))
        self.assertIsNone(publicKeyProblem(_rsaPublicKey(8192)))
        weak = publicKeyProblem(newRSAKey(1024).public_key())
        self.assertIn("1024 bits is too weak", weak)
        self.assertIn("2047 bits is too weak", publicKeyProblem(_rsaPublicKey(2047)))
        self.assertIn("8200 bits is too large", publicKeyProblem(_rsaPublicKey(8200)))

    def test_rsaExponent(self) -> None:
        """
        An RSA public exponent below 65537 is refused.
        """
        self.assertIn("exponent of 3", publicKeyProblem(_rsaPublicKey(2048, 3)))
        self.assertIsNone(publicKeyProblem(_rsaPublicKey(2048, 65539)))

    def test_dsa(self) -> None:
        """
        DSA keys are refused.
        """
        key = dsa.generate_private_key(2048).public_key()
        self.assertIn("DSA 2048 keys are not accepted", publicKeyProblem(key))

    def test_ed25519(self) -> None:
        """
        Ed25519 keys are refused, and the message says why: browsers cannot
        use them as client certificates.
        """
        key = ed25519.Ed25519PrivateKey.generate().public_key()
        problem = publicKeyProblem(key)
        self.assertIn("Ed25519", problem)
        self.assertIn("browsers", problem)


class DescribeKeyTests(SynchronousTestCase):
    """
    L{describeKey} names algorithms the way people do.
    """

    def test_names(self) -> None:
        """
        EC keys by curve, RSA and DSA keys by size, private or public.
        """
        self.assertEqual(describeKey(newKey(0)), "EC P-256")
        self.assertEqual(
            describeKey(ec.generate_private_key(ec.SECP384R1()).public_key()),
            "EC P-384",
        )
        self.assertEqual(describeKey(_rsaPublicKey(3072)), "RSA 3072")
        self.assertEqual(describeKey(ed25519.Ed25519PrivateKey.generate()), "Ed25519")


class HelperTests(SynchronousTestCase):
    """
    Key generation, digests, key matching and fingerprints.
    """

    def test_newPrivateKey(self) -> None:
        """
        Keys the EMS role makes are EC P-256, and distinct.
        """
        one, two = newPrivateKey(), newPrivateKey()
        self.assertEqual(describeKey(one), "EC P-256")
        self.assertNotEqual(one.private_numbers(), two.private_numbers())

    def test_signatureHash(self) -> None:
        """
        The digest matches the curve's strength; RSA signs with SHA-256.
        """
        cases = [
            (ec.SECP256R1(), hashes.SHA256),
            (ec.SECP384R1(), hashes.SHA384),
            (ec.SECP521R1(), hashes.SHA512),
        ]
        for curve, digest in cases:
            self.assertIsInstance(signatureHash(ec.generate_private_key(curve)), digest)
        self.assertIsInstance(signatureHash(newRSAKey()), hashes.SHA256)

    def test_keyMatchesCertificate(self) -> None:
        """
        A certificate matches its own key only.
        """
        ca = makeCA(keySlot=10)
        self.assertTrue(keyMatchesCertificate(ca.key, ca.certificate))
        self.assertFalse(keyMatchesCertificate(newKey(11), ca.certificate))

    def test_fingerprint(self) -> None:
        """
        The fingerprint is the SHA-256 of the DER certificate, as OpenSSL
        prints it.
        """
        ca = makeCA(keySlot=10)
        digest = hashlib.sha256(
            ca.certificate.public_bytes(serialization.Encoding.DER)
        ).hexdigest()
        text = fingerprint(ca.certificate)
        self.assertEqual(text.replace(":", ""), digest.upper())
        self.assertEqual(len(text.split(":")), 32)


class ReadPrivateKeyFileTests(SynchronousTestCase):
    """
    L{readPrivateKeyFile} loads unencrypted keys from private files only.
    """

    def setUp(self) -> None:
        self.path = os.path.join(self.mktemp(), "k.key")

    def test_loads(self) -> None:
        """
        A 0600 PKCS#8 key file loads.
        """
        key = newKey(12)
        writePrivateFile(self.path, privateKeyPem(key))
        loaded = readPrivateKeyFile(self.path)
        self.assertEqual(loaded.private_numbers(), key.private_numbers())

    def test_readableByOthers(self) -> None:
        """
        A key file others can read is refused, with the chmod to run.
        """
        writePrivateFile(self.path, privateKeyPem(newKey(12)))
        os.chmod(self.path, 0o640)
        error = self.assertRaises(
            KeyMaterialError, readPrivateKeyFile, self.path, "CA key"
        )
        self.assertIn("refusing CA key", str(error))
        self.assertIn(f"chmod 600 {self.path}", str(error))

    def test_missing(self) -> None:
        """
        A missing file is reported with its path.
        """
        error = self.assertRaises(KeyMaterialError, readPrivateKeyFile, self.path)
        self.assertIn(self.path, str(error))

    def test_encrypted(self) -> None:
        """
        An encrypted key is refused with the way to decrypt it into a
        private file.
        """
        pem = newKey(12).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
        writePrivateFile(self.path, pem)
        error = self.assertRaises(KeyMaterialError, readPrivateKeyFile, self.path)
        self.assertIn("encrypted", str(error))
        self.assertIn("umask 077", str(error))

    def test_garbage(self) -> None:
        """
        A file without a key is refused.
        """
        writePrivateFile(self.path, b"not a key")
        error = self.assertRaises(KeyMaterialError, readPrivateKeyFile, self.path)
        self.assertIn("does not hold a PEM private key", str(error))

    def test_weakKey(self) -> None:
        """
        A key the policy refuses is refused here too.
        """
        writePrivateFile(self.path, privateKeyPem(newRSAKey(1024)))
        error = self.assertRaises(KeyMaterialError, readPrivateKeyFile, self.path)
        self.assertIn("too weak", str(error))


class ReadCertificateFileTests(SynchronousTestCase):
    """
    L{readCertificateFile} loads exactly one PEM certificate.
    """

    def setUp(self) -> None:
        self.path = os.path.join(self.mktemp(), "c.crt")

    def test_loads(self) -> None:
        """
        A PEM certificate loads.
        """
        ca = makeCA(keySlot=10)
        writePublicFile(self.path, ca.certificatePem())
        self.assertEqual(readCertificateFile(self.path), ca.certificate)

    def test_several(self) -> None:
        """
        A file with two certificates is refused.
        """
        ca = makeCA(keySlot=10)
        leaf = makeLeaf(ca)
        writePublicFile(self.path, ca.certificatePem() + leaf.certificatePem())
        error = self.assertRaises(KeyMaterialError, readCertificateFile, self.path)
        self.assertIn("holds 2 certificates", str(error))

    def test_garbage(self) -> None:
        """
        A file without a certificate is refused.
        """
        writePublicFile(self.path, b"nothing")
        error = self.assertRaises(KeyMaterialError, readCertificateFile, self.path)
        self.assertIn("does not hold a PEM certificate", str(error))

    def test_huge(self) -> None:
        """
        A file far larger than any certificate is refused without being
        read whole.
        """
        writePublicFile(self.path, b"A" * (1024 * 1024 + 1))
        error = self.assertRaises(KeyMaterialError, readCertificateFile, self.path)
        self.assertIn("larger than", str(error))
