"""
The TLS posture of the real daemon's listeners, as Debian's testssl.sh
sees it (L{tests.posture.tlsscan}): TLS 1.2 and 1.3 only, forward-secret
AEAD suites only, no compression, no client-initiated renegotiation, on an
access-proxy VIP and on the EMS listener, with the default settings.

L{tests.tls.test_posture} checks the same contexts with OpenSSL clients
that the tests drive; this test trusts neither the tests' clients nor the
code under test to say what was offered.
"""

from __future__ import annotations

import os

from twisted.trial.unittest import SkipTest, TestCase

from tests.integration.httpsfixture import Gateway
from tests.posture.tlsscan import findings, offeredCiphers, scanner, startScan

#: Encryption that testssl.sh names for AEAD suites.
AEAD = frozenset({"AESGCM", "ChaCha20", "AESCCM", "AESCCM8"})

#: Key exchanges that are forward secret (ephemeral (EC)DH; TLS 1.3 suites
#: always are, and testssl.sh shows their group as ECDH or DH too).
FORWARD_SECRET = frozenset({"ECDH", "DH", "ECDHE", "DHE"})


class ScannerTests(TestCase):
    """
    testssl.sh against the daemon.
    """

    def setUp(self) -> None:
        if scanner() is None:
            if os.environ.get("CI"):
                self.fail("testssl.sh is missing: .ci/run installs it")
            raise SkipTest("testssl.sh is not installed (apt-get install testssl.sh)")
        self.gateway = Gateway(self.mktemp())
        self.gateway.start()
        self.addCleanup(self.gateway.stop)

    def assertPosture(self, name: str, found: dict[str, list[str]]) -> None:
        """
        The findings of one listener show the posture.
        """
        def only(key: str) -> str:
            self.assertIn(key, found, f"{name}: testssl.sh did not report {key}")
            [text] = found[key]
            return text

        for protocol in ("SSLv2", "SSLv3", "TLS1", "TLS1_1"):
            self.assertEqual(only(protocol), "not offered", f"{name}: {protocol}")
        self.assertEqual(only("TLS1_2"), "offered", name)
        self.assertTrue(only("TLS1_3").startswith("offered"), name)
        for category in ("NULL", "aNULL", "EXPORT", "LOW", "3DES_IDEA", "AVERAGE"):
            self.assertEqual(only(f"cipherlist_{category}"), "not offered", f"{name}: {category}")
        self.assertEqual(only("PFS"), "offered", name)
        ciphers = offeredCiphers(found)
        self.assertTrue(ciphers, f"{name}: no cipher found")
        for cipher, keyExchange, encryption in ciphers:
            self.assertIn(keyExchange, FORWARD_SECRET, f"{name}: {cipher}")
            self.assertIn(encryption, AEAD, f"{name}: {cipher}")
        self.assertEqual(only("secure_client_renego"), "not vulnerable", name)
        self.assertEqual(only("CRIME_TLS"), "not vulnerable", name)

    def test_defaults(self) -> None:
        """
        An access-proxy VIP and the EMS listener, scanned at the same time.
        """
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        scans = {
            name: startScan("127.0.0.1", self.gateway.ports[name], directory) for name in ("MAIN", "EMS")
        }
        for name, (process, output) in scans.items():
            self.assertPosture(name, findings(process, output))


class ParseTests(TestCase):
    """
    L{offeredCiphers} reads testssl.sh's cipher lines.
    """

    def test_lines(self) -> None:
        """
        TLS 1.3 and TLS 1.2 lines, with and without a key size.
        """
        found = {
            "cipher_x1302": ["x1302   TLS_AES_256_GCM_SHA384            ECDH 253   AESGCM      256      TLS_AES_256_GCM_SHA384"],
            "cipher_x9c": ["x9c     AES128-GCM-SHA256                 RSA        AESGCM      128      TLS_RSA_WITH_AES_128_GCM_SHA256"],
            "PFS": ["offered"],
        }
        self.assertEqual(
            sorted(offeredCiphers(found)),
            [("AES128-GCM-SHA256", "RSA", "AESGCM"), ("TLS_AES_256_GCM_SHA384", "ECDH", "AESGCM")],
        )
