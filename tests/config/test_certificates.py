"""
Tests for L{ztnagw.config.certificates}, through the loader: certificate
material inline or in files, keys that must match and stay private.
"""

from __future__ import annotations

import os
from functools import lru_cache

from cryptography.hazmat.primitives import serialization
from twisted.trial.unittest import SynchronousTestCase

from ztnagw.config import ConfigurationRejected, load, loads
from ztnagw.config.certificates import CertificateProblem, isPendingGeneration
from ztnagw.config.syntax import quote

from tests.config.helpers import errors, joined, lineOf
from tests.support.pki import Issued, makeCA, makeServer


@lru_cache(maxsize=None)
def _pki() -> tuple[Issued, Issued, Issued]:
    ca = makeCA(keySlot=30)
    return ca, makeServer(ca, keySlot=31), makeServer(ca, keySlot=32)


def _inline(certificate: bytes, key: bytes, extra: str = "") -> str:
    return joined(
        "config vpn certificate local\n"
        '    edit "c"\n'
        f"        set certificate {quote(certificate.decode())}\n"
        f"        set private-key {quote(key.decode())}\n"
        f"{extra}"
        "    next\n"
        "end"
    )


def _files(certificateFile: str, keyFile: str, extra: str = "") -> str:
    return joined(
        "config vpn certificate local\n"
        '    edit "c"\n'
        f"        set certificate-file {quote(certificateFile)}\n"
        f"        set private-key-file {quote(keyFile)}\n"
        f"{extra}"
        "    next\n"
        "end"
    )


def _encrypted(issued: Issued, password: bytes) -> bytes:
    return issued.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password),
    )


class InlineTests(SynchronousTestCase):
    """
    Material written into the configuration, as FortiOS stores it.
    """

    def test_valid(self) -> None:
        """
        A certificate, its chain and its key load; the parsed objects are
        available by name.
        """
        ca, server, _ = _pki()
        config = loads(_inline(server.certificatePem() + ca.certificatePem(), server.keyPem()))
        material = config.localCertificate("c")
        self.assertEqual(material.certificate, server.certificate)
        self.assertEqual(material.chain, (ca.certificate,))
        self.assertEqual(
            material.key.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
            server.certificate.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
        )

    def test_mismatch(self) -> None:
        """
        A key that is not the certificate's is an error on the key's line.
        """
        _, server, other = _pki()
        text = _inline(server.certificatePem(), other.keyPem())
        found = errors(self, text)
        self.assertEqual(
            found,
            [
                f"test.conf:{lineOf(text, 'set private-key')}: vpn certificate "
                'local "c": the private key in private-key does not match the '
                "certificate in certificate"
            ],
        )

    def test_chainOrder(self) -> None:
        """
        Each certificate must be followed by its issuer.
        """
        ca, server, _ = _pki()
        text = _inline(ca.certificatePem() + server.certificatePem(), server.keyPem())
        self.assertEqual(
            errors(self, text),
            [
                f"test.conf:{lineOf(text, 'set certificate')}: vpn certificate "
                'local "c": the certificates in certificate are not in order: '
                "each must be followed by its issuer (leaf first)"
            ],
        )

    def test_encryptedKey(self) -> None:
        """
        An encrypted key needs its password; a wrong one or one for a clear
        key is an error.
        """
        _, server, _ = _pki()
        key = _encrypted(server, b"s3cret")
        config = loads(_inline(server.certificatePem(), key, '        set password "s3cret"\n'))
        self.assertEqual(config.localCertificate("c").certificate, server.certificate)
        for extra, message in [
            ("", "the private key in private-key is encrypted; set password"),
            ('        set password "wrong"\n', "the private key in private-key cannot be decrypted with the password given, or is not a valid key"),
        ]:
            found = errors(self, _inline(server.certificatePem(), key, extra))
            self.assertEqual([e.split(": ", 2)[2] for e in found], [message])
        text = _inline(server.certificatePem(), server.keyPem(), '        set password "x"\n')
        self.assertEqual(
            errors(self, text),
            [
                f"test.conf:{lineOf(text, 'set password')}: vpn certificate local "
                '"c": password is set but the private key in private-key is not '
                "encrypted; unset password"
            ],
        )

    def test_notPem(self) -> None:
        """
        Text that is not PEM says so.
        """
        _, server, _ = _pki()
        found = errors(self, _inline(b"hello", server.keyPem()))
        self.assertEqual([e.split(": ", 2)[2] for e in found], ["certificate holds no PEM certificate"])
        found = errors(self, _inline(server.certificatePem(), b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"))
        self.assertEqual([e.split(": ", 2)[2] for e in found], ["the private key in private-key cannot be parsed"])

    def test_shape(self) -> None:
        """
        A certificate needs its key, and material is given once.
        """
        _, server, _ = _pki()
        text = joined(
            "config vpn certificate local\n"
            '    edit "c"\n'
            f"        set certificate {quote(server.certificatePem().decode())}\n"
            "    next\n"
            '    edit "d"\n'
            f"        set certificate {quote(server.certificatePem().decode())}\n"
            f"        set private-key {quote(server.keyPem().decode())}\n"
            '        set certificate-file "d.crt"\n'
            "    next\n"
            '    edit "e"\n'
            "    next\n"
            "end"
        )
        self.assertEqual(
            [e.split(": ", 2)[2] for e in errors(self, text)],
            [
                "private-key is missing: a local certificate needs its key",
                "give the certificate and key inline (certificate, private-key) or in files (certificate-file, private-key-file), not both",
                "no material: set certificate and private-key (inline PEM) or certificate-file and private-key-file",
            ],
        )

    def test_configurationFileMode(self) -> None:
        """
        A configuration file holding an inline private key must be readable
        by its owner only.
        """
        _, server, _ = _pki()
        directory = self.mktemp()
        os.makedirs(directory)
        path = os.path.join(directory, "gw.conf")
        text = _inline(server.certificatePem(), server.keyPem())
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o644)
        rejected = self.assertRaises(ConfigurationRejected, load, path)
        self.assertEqual(
            [str(e) for e in rejected.errors],
            [
                f"{path}:{lineOf(text, 'set private-key')}: vpn certificate local "
                '"c": the configuration holds an inline private key, but the '
                f"configuration file {path} is accessible by other users (mode "
                f"0644); run: chmod 600 {path}"
            ],
        )
        os.chmod(path, 0o600)
        self.assertEqual(load(path).localCertificate("c").certificate, server.certificate)


class FileTests(SynchronousTestCase):
    """
    Material in files of the state directory (ztnagw's extension).
    """

    def setUp(self) -> None:
        self.stateDir = os.path.abspath(self.mktemp())
        os.makedirs(self.stateDir)

    def load(self, text: str):  # type: ignore[no-untyped-def]
        """
        Load C{text} with this test's state directory.
        """
        return loads(joined(f'config system global\n    set state-dir "{self.stateDir}"\nend', text), "test.conf")

    def failures(self, text: str) -> list[str]:
        """
        The messages C{text} is rejected with.
        """
        rejected = self.assertRaises(ConfigurationRejected, self.load, text)
        return [e.message for e in rejected.errors]

    def test_valid(self) -> None:
        """
        Files relative to the state directory load.
        """
        _, server, _ = _pki()
        server.writeTo(self.stateDir, "gw")
        config = self.load(_files("gw.crt", "gw.key"))
        self.assertEqual(config.localCertificate("c").certificate, server.certificate)

    def test_keyMode(self) -> None:
        """
        A key file others can read is refused, with the command that fixes
        it.
        """
        _, server, _ = _pki()
        _, keyPath = server.writeTo(self.stateDir, "gw")
        os.chmod(keyPath, 0o640)
        self.assertEqual(
            self.failures(_files("gw.crt", "gw.key")),
            [
                f'vpn certificate local "c": private key file {keyPath} is '
                f"accessible by other users (mode 0640); run: chmod 600 {keyPath}"
            ],
        )

    def test_missing(self) -> None:
        """
        Missing files are errors, unless they are to be generated.
        """
        self.assertEqual(
            self.failures(_files("gw.crt", "gw.key")),
            [
                f'vpn certificate local "c": cannot read '
                f"{os.path.join(self.stateDir, 'gw.key')}: No such file or directory"
            ],
        )
        config = self.load(_files("gw.crt", "gw.key", "        set auto-generate enable\n"))
        entry = config.localCertificates["c"]
        self.assertTrue(isPendingGeneration(entry))
        problem = self.assertRaises(CertificateProblem, config.localCertificate, "c")
        self.assertIn("the gateway creates them at start", problem.message)

    def test_halfGenerated(self) -> None:
        """
        With auto-generate, one file without the other is an error: it is
        not replaced behind the operator's back.
        """
        _, server, _ = _pki()
        certificatePath, keyPath = server.writeTo(self.stateDir, "gw")
        os.unlink(keyPath)
        self.assertEqual(
            self.failures(_files("gw.crt", "gw.key", "        set auto-generate enable\n")),
            [
                f'vpn certificate local "c": {keyPath} is missing but '
                f"{certificatePath} exists; remove both to have them generated "
                "again, or restore it"
            ],
        )

    def test_autoGenerateNeedsFiles(self) -> None:
        """
        auto-generate writes files: inline material cannot go with it.
        """
        _, server, _ = _pki()
        self.assertEqual(
            self.failures(_inline(server.certificatePem(), server.keyPem(), "        set auto-generate enable\n")),
            [
                'vpn certificate local "c": auto-generate needs '
                "certificate-file and private-key-file to write to, not inline "
                "material"
            ],
        )


class CaTests(SynchronousTestCase):
    """
    C{vpn certificate ca}: trust anchors, and the EMS CA entry.
    """

    def test_inlineAndFile(self) -> None:
        """
        Trust anchors load inline or from a file; not both, not neither.
        """
        ca, _, _ = _pki()
        stateDir = os.path.abspath(self.mktemp())
        os.makedirs(stateDir)
        with open(os.path.join(stateDir, "ca.pem"), "wb") as f:
            f.write(ca.certificatePem())
        config = loads(
            joined(
                f'config system global\n    set state-dir "{stateDir}"\nend',
                "config vpn certificate ca\n"
                '    edit "inline"\n'
                f"        set ca {quote(ca.certificatePem().decode())}\n"
                "    next\n"
                '    edit "file"\n'
                '        set ca-file "ca.pem"\n'
                "    next\n"
                "end",
            )
        )
        self.assertEqual(config.caCertificate("inline"), (ca.certificate,))
        self.assertEqual(config.caCertificate("file"), (ca.certificate,))
        found = errors(self, 'config vpn certificate ca\n    edit "x"\n    next\nend')
        self.assertEqual(found, ['test.conf:2: vpn certificate ca "x": no material: set ca (inline PEM) or ca-file'])

    def test_emsCa(self) -> None:
        """
        The EMS CA entry must hold a CA certificate.
        """
        ca, server, _ = _pki()
        ems = 'config endpoint-control fctems\n    edit 1\n        set ca-certificate "c"\n    next\nend'
        loads(_inline(ca.certificatePem(), ca.keyPem()) + ems)
        text = _inline(server.certificatePem(), server.keyPem()) + ems
        self.assertEqual(
            errors(self, text),
            [
                f"test.conf:{lineOf(text, 'set ca-certificate')}: endpoint-control "
                'fctems 1: ca-certificate "c" is not a CA certificate (basic '
                "constraints CA:TRUE)"
            ],
        )
