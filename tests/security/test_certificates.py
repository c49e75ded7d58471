"""
Attacks with certificates: a client that has no device certificate, or one
that is not what it claims, or the certificate of a device the registry no
longer admits.

Every certificate below is otherwise as good as it can be made: its UID is
registered with its serial, so that the one thing wrong with it is the
thing under test.  Each attack is refused with the block page of its ZTNA
code, reaches no real server, and leaves the daemon serving the bystander
device.
"""

from __future__ import annotations

import datetime
import json
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from tests.security.cases import attack
from tests.security.fixture import AttackCase, Device, parseResponses
from tests.support import pki


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def impostorCA(subject: x509.Name) -> pki.Issued:
    """
    A CA of the attacker's that carries exactly C{subject}, the EMS CA's
    name, with a key of its own.
    """
    key = pki.newKey()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - datetime.timedelta(days=1))
        .not_valid_after(_now() + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    return pki.Issued(certificate, key)


class CertificateTests(AttackCase):
    """
    Certificates that must not identify a device.
    """

    def assertRefused(self, device: Device | None, code: str, status: int = 403, host: str = "127.0.0.1") -> dict:
        """
        A request with C{device}'s certificate gets the block page of
        C{code}; nothing reaches a real server.

        @return: the JSON page.
        """
        response = self.gateway.request("/secret", host=host, device=device)
        self.assertEqual((response.status, response.ztnaError), (status, code), response)
        return json.loads(response.body)["error"]

    def forged(self, issued: pki.Issued, uid: str, chain: tuple[pki.Issued, ...] = (), register: bool = True) -> Device:
        """
        Write C{issued} for the client and register C{uid} with its
        serial, so that only the forgery is wrong with it.
        """
        g = self.gateway
        if register:
            g.register(uid, issued.serial)
        return g.writeDevice(uid, issued, chain)

    @attack("certificates", "no client certificate", "403 with 002; nothing reaches the real server")
    def test_none(self) -> None:
        """
        A client without a certificate gets 002.
        """
        self.assertRefused(None, "002")
        self.assertNothingReached()
        self.gateway.checkServing(self)

    @attack("certificates", "self-signed certificate whose CN is a registered UID", "403 with 001")
    def test_selfSigned(self) -> None:
        """
        A self-signed certificate naming a registered UID (with the
        registered serial) is not a device certificate.
        """
        uid = self.gateway.newUid()
        own = pki.makeCA(uid)
        leaf = pki.makeLeaf(own, commonNames=(uid,), key=own.key, serial=own.serial)
        # makeLeaf signs with the issuer's key: subject = issuer, one key.
        self.assertEqual(leaf.certificate.issuer, leaf.certificate.subject)
        page = self.assertRefused(self.forged(leaf, uid), "001")
        self.assertIn("not issued by an EMS CA", page["detail"])
        self.assertNothingReached()
        self.gateway.checkServing(self)

    @attack("certificates", "certificate from another CA carrying the EMS CA's exact name", "403 with 001")
    def test_otherCA(self) -> None:
        """
        A CA that copies the EMS CA's subject cannot issue devices: the
        signature decides, not the name.
        """
        g = self.gateway
        uid = g.newUid()
        impostor = impostorCA(g.emsCA.certificate.subject)
        leaf = pki.makeDevice(impostor, uid)
        self.assertEqual(leaf.certificate.issuer, g.emsCA.certificate.subject)
        self.assertRefused(self.forged(leaf, uid, chain=(impostor,)), "001")
        self.assertRefused(self.forged(pki.makeDevice(pki.makeCA("another CA"), uid), uid), "001")
        self.assertNothingReached()
        g.checkServing(self)

    @attack("certificates", "expired device certificate (registered UID and serial)", "403 with 001")
    def test_expired(self) -> None:
        """
        An expired certificate is refused even though the registry knows
        it.
        """
        g = self.gateway
        uid = g.newUid()
        leaf = pki.makeDevice(g.emsCA, uid, notBefore=_now() - datetime.timedelta(days=30), notAfter=_now() - datetime.timedelta(minutes=1))
        page = self.assertRefused(self.forged(leaf, uid), "001")
        self.assertIn("expired", page["detail"])
        self.assertNothingReached()
        g.checkServing(self)

    @attack("certificates", "device certificate not yet valid", "403 with 001")
    def test_notYetValid(self) -> None:
        """
        A certificate valid only from tomorrow is refused.
        """
        g = self.gateway
        uid = g.newUid()
        leaf = pki.makeDevice(g.emsCA, uid, notBefore=_now() + datetime.timedelta(days=1), notAfter=_now() + datetime.timedelta(days=30))
        page = self.assertRefused(self.forged(leaf, uid), "001")
        self.assertIn("not yet valid", page["detail"])
        self.assertNothingReached()
        g.checkServing(self)

    @attack("certificates", "EMS-signed certificate without the clientAuth usage (other EKU, or none)", "403 with 001")
    def test_noClientAuth(self) -> None:
        """
        A certificate of the EMS CA whose extended key usage does not
        allow client authentication (or is absent: OpenSSL would accept
        any purpose) is refused.
        """
        g = self.gateway
        for options in ({"clientAuth": False, "serverAuth": True}, {"extendedKeyUsage": False}):
            uid = g.newUid()
            self.assertRefused(self.forged(pki.makeDevice(g.emsCA, uid, **options), uid), "001")
        self.assertNothingReached()
        g.checkServing(self)

    @attack("certificates", "chain through an intermediate CA signed by the EMS CA key", "403 with 001")
    def test_intermediate(self) -> None:
        """
        An intermediate CA certificate made with the EMS CA's key (an
        operator mistake, or a leaked intermediate) cannot issue devices:
        devices are issued directly by the EMS CA.
        """
        g = self.gateway
        uid = g.newUid()
        intermediate = pki.makeCA("unexpected intermediate", issuer=g.emsCA)
        leaf = pki.makeDevice(intermediate, uid)
        self.assertRefused(self.forged(leaf, uid, chain=(intermediate,)), "001")
        self.assertNothingReached()
        g.checkServing(self)

    @attack(
        "certificates",
        "CN variants of a registered UID: lower case, leading/trailing space, two CNs, NUL byte, UID in a SAN only",
        "403 with 001 for each",
    )
    def test_commonNameVariants(self) -> None:
        """
        Only a subject with exactly one CN that is exactly a UID (32
        upper-case hex digits) names a device; every variant of a
        registered UID is refused, whatever the registry holds.
        """
        g = self.gateway
        uid = g.newUid()
        other = g.newUid()
        variants = {
            "lower case": pki.makeLeaf(g.emsCA, commonNames=(uid.lower(),)),
            "leading space": pki.makeLeaf(g.emsCA, commonNames=(" " + uid,)),
            "trailing space": pki.makeLeaf(g.emsCA, commonNames=(uid + " ",)),
            "two CNs": pki.makeLeaf(g.emsCA, commonNames=(uid, other)),
            "two CNs, other first": pki.makeLeaf(g.emsCA, commonNames=(other, uid)),
            "NUL byte after": pki.makeLeaf(g.emsCA, commonNames=(uid + "\x00evil",)),
            "NUL byte before": pki.makeLeaf(g.emsCA, commonNames=("evil\x00" + uid,)),
            "SAN only": pki.makeLeaf(g.emsCA, commonNames=(), dnsNames=(uid,)),
            "SAN with another CN": pki.makeLeaf(g.emsCA, commonNames=("device",), dnsNames=(uid,)),
        }
        for name, issued in variants.items():
            # The registry holds both UIDs with this certificate's serial.
            g.registerAll([(uid, issued.serial, {}), (other, issued.serial, {})])
            device = g.writeDevice(uid, issued)
            response = g.request("/secret", device=device)
            self.assertEqual((response.status, response.ztnaError), (403, "001"), (name, response))
        self.assertNothingReached()
        g.checkServing(self)

    @attack("registry", "revoked device certificate", "403 with 063")
    def test_revoked(self) -> None:
        """
        A device the registry says is revoked gets 063.
        """
        g = self.gateway
        device = g.issueDevice(revoked=True)
        self.assertRefused(device, "063")
        self.assertNothingReached()
        g.checkServing(self)

    @attack("registry", "old certificate of a re-enrolled device (serial mismatch)", "403 with 001")
    def test_serialMismatch(self) -> None:
        """
        A certificate of the EMS CA for a registered UID whose recorded
        serial is another one (the device enrolled again) gets 001.
        """
        g = self.gateway
        device = g.issueDevice()
        g.register(device.uid, device.serial + 1)
        page = self.assertRefused(device, "001")
        self.assertIn("not the one enrolled", page["detail"])
        self.assertNothingReached()
        g.checkServing(self)

    @attack("registry", "quarantined device", "403 with 064")
    def test_quarantined(self) -> None:
        """
        A quarantined device gets 064.
        """
        g = self.gateway
        self.assertRefused(g.issueDevice(quarantined=True), "064")
        self.assertNothingReached()
        g.checkServing(self)

    @attack("registry", "offline device (no telemetry beyond out-of-sync-threshold)", "403 with 067")
    def test_offline(self) -> None:
        """
        A device whose last telemetry is older than the EMS's
        C{out-of-sync-threshold} (10 s here) gets 067.
        """
        g = self.gateway
        device = g.issueDevice(staticPresence=False, lastSeen=time.time() - 60)
        self.assertRefused(device, "067")
        self.assertNothingReached()
        g.checkServing(self)

    @attack(
        "registry",
        "device deleted from the registry while its keep-alive connection is open",
        "the connection is closed within a second; a new one gets 066",
    )
    def test_deletedWhileConnected(self) -> None:
        """
        A device with an open keep-alive connection is deleted with
        C{ztnagw endpoint delete}: the gateway closes that connection (a
        request on it never reaches the real server), and a new connection
        gets 066.
        """
        g = self.gateway
        device = g.issueDevice()
        sock = g.connect(device=device)
        self.addCleanup(sock.close)
        sock.sendall(b"GET /before HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        data = b""
        while not parseResponses(data)[0]:
            data += sock.recv(65536)
        self.assertEqual(parseResponses(data)[0][0].status, 200)
        g.resetBackends()
        result = g.admin("endpoint", "delete", device.uid)
        self.assertEqual(result.returncode, 0, result.stderr)
        deadline = time.monotonic() + 5
        closed = False
        sock.settimeout(0.2)
        while time.monotonic() < deadline:
            try:
                if sock.recv(65536) == b"":
                    closed = True
                    break
            except TimeoutError:
                continue
            except OSError:
                closed = True
                break
        self.assertTrue(closed, "the deleted device's connection stayed open")
        self.assertRefused(device, "066")
        self.assertNothingReached()
        g.checkServing(self)
