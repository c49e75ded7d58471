"""
Tests for L{ztnagw.ems.listener}: the EMS listener's certificate and pin.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import stat

from cryptography import x509
from twisted.trial.unittest import SynchronousTestCase

from ztnagw.ems.ca import createCertificateAuthority
from ztnagw.ems.listener import (
    ListenerCertificateError,
    emsUrl,
    ensureListenerCertificate,
    listenerFiles,
    readListenerPin,
)
from ztnagw.tls.client import formatPin, spkiFingerprint

NOW = datetime.datetime(2026, 6, 1, tzinfo=datetime.timezone.utc)


def _names(certificate: x509.Certificate) -> tuple[set[str], set[str]]:
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return (
        set(names.get_values_for_type(x509.DNSName)),
        {str(a) for a in names.get_values_for_type(x509.IPAddress)},
    )


class ListenerCertificateTests(SynchronousTestCase):
    """
    The listener's certificate is issued by the EMS CA for the server, and
    its key (so its pin) outlives renewals.
    """

    def setUp(self) -> None:
        self.stateDir = os.path.abspath(self.mktemp())
        self.ca = createCertificateAuthority("FCTEMS8825007278", "gw1", now=NOW - datetime.timedelta(days=1))

    def ensure(self, server: str = "127.0.0.1", ca: object = None, now: datetime.datetime = NOW) -> object:
        """
        Ensure EMS 1's listener certificate.
        """
        return ensureListenerCertificate(self.stateDir, 1, server, ca or self.ca, "gw1", now)

    def test_created(self) -> None:
        """
        The first call makes a key (0600) and a certificate for the server
        address, issued by the CA; the pin is the key's.
        """
        listener = self.ensure()
        certificatePath, keyPath = listenerFiles(self.stateDir, 1)
        self.assertEqual(stat.S_IMODE(os.stat(keyPath).st_mode), 0o600)
        listener.certificate.verify_directly_issued_by(self.ca.certificate)  # type: ignore[attr-defined]
        self.assertEqual(_names(listener.certificate), (set(), {"127.0.0.1"}))  # type: ignore[attr-defined]
        self.assertEqual(listener.bindAddress, "127.0.0.1")  # type: ignore[attr-defined]
        self.assertEqual(listener.pin, formatPin(spkiFingerprint(listener.certificate)))  # type: ignore[attr-defined]
        self.assertEqual(readListenerPin(self.stateDir, 1), listener.pin)  # type: ignore[attr-defined]

    def test_kept(self) -> None:
        """
        A fitting certificate is used as it is.
        """
        first = self.ensure()
        self.assertEqual(self.ensure().certificate, first.certificate)  # type: ignore[attr-defined]

    def test_renewedWithSameKey(self) -> None:
        """
        After a CA rotation, a server change or near its end, the
        certificate is renewed with the same key: the pin stays.
        """
        first = self.ensure()
        rotated = createCertificateAuthority("FCTEMS8825007278", "gw1", now=NOW)
        second = self.ensure(ca=rotated)
        self.assertNotEqual(second.certificate, first.certificate)  # type: ignore[attr-defined]
        second.certificate.verify_directly_issued_by(rotated.certificate)  # type: ignore[attr-defined]
        self.assertEqual(second.pin, first.pin)  # type: ignore[attr-defined]
        third = self.ensure(server="localhost", ca=rotated)
        self.assertEqual(_names(third.certificate)[0], {"localhost"})  # type: ignore[attr-defined]
        self.assertTrue(ipaddress.ip_address(third.bindAddress).is_loopback)  # type: ignore[attr-defined]
        late = third.certificate.not_valid_after_utc - datetime.timedelta(days=10)  # type: ignore[attr-defined]
        fourth = self.ensure(server="localhost", ca=rotated, now=late)
        self.assertGreater(fourth.certificate.not_valid_after_utc, third.certificate.not_valid_after_utc)  # type: ignore[attr-defined]
        self.assertEqual(fourth.pin, first.pin)  # type: ignore[attr-defined]

    def test_everyAddress(self) -> None:
        """
        Listening on 0.0.0.0, the certificate names the host name.
        """
        listener = self.ensure(server="0.0.0.0")
        self.assertEqual(_names(listener.certificate), ({"gw1"}, set()))  # type: ignore[attr-defined]
        self.assertEqual(listener.bindAddress, "0.0.0.0")  # type: ignore[attr-defined]

    def test_looseKey(self) -> None:
        """
        A key others can read is refused.
        """
        self.ensure()
        os.chmod(listenerFiles(self.stateDir, 1)[1], 0o644)
        error = self.assertRaises(ListenerCertificateError, self.ensure)
        self.assertIn("chmod 600", str(error))

    def test_unresolvable(self) -> None:
        """
        A server name that does not resolve is refused with a clear message.
        """
        error = self.assertRaises(ListenerCertificateError, self.ensure, server="no-such-host.invalid")
        self.assertIn("does not resolve", str(error))

    def test_noPinYet(self) -> None:
        """
        Before the first start there is no pin to read.
        """
        self.assertIsNone(readListenerPin(self.stateDir, 1))

    def test_url(self) -> None:
        """
        URLs put IPv6 addresses in brackets.
        """
        self.assertEqual(emsUrl("127.0.0.1", 18013), "https://127.0.0.1:18013")
        self.assertEqual(emsUrl("::1", 443), "https://[::1]:443")
