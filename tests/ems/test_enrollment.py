"""
Tests for L{ztnagw.ems.enrollment}: the enrollment transaction, against a
real registry and a real EMS CA.
"""

from __future__ import annotations

import datetime
import os

import attrs

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tests.support.pki import makeCSR, newKey, newRSAKey
from tests.test_device import FakeIndex
from ztnagw.device import PresentedCertificate, VerdictKind, judgeDevice
from ztnagw.ems.api import ApiError, DeviceReport
from ztnagw.ems.ca import createCertificateAuthority
from ztnagw.ems.enrollment import (
    AttemptLimiter,
    Enroller,
    EnrollmentRequest,
    Proof,
    parseEnrollmentRequest,
)
from ztnagw.ems.tokens import TokenRefused, createToken, findToken, revokeToken, tokenUses
from ztnagw.registry.record import REGISTERED, canonicalSerial, isUid
from ztnagw.registry.sqlite import SQLiteEndpointStore

NOW = 1_800_000_000.0
EMS_SERIAL = "FCTEMS8825007278"
TENANT = "0" * 32
CA = createCertificateAuthority(EMS_SERIAL, "gw1", now=datetime.datetime.fromtimestamp(NOW - 86400, datetime.timezone.utc))

REPORT = DeviceReport(
    hostName="pc1",
    osType="Linux",
    osVersion="12",
    clientVersion="0.1.0",
    user="alice",
    ips=("10.0.0.7",),
    macs=("aa:bb:cc:dd:ee:ff",),
    facts={"disk.root-encrypted": "true"},
)


def csrPem(key: object | None = None) -> bytes:
    """
    A CSR (PEM) for C{key}, a new P-256 key by default.
    """
    request, _ = makeCSR(key=key)  # type: ignore[arg-type]
    return request.public_bytes(serialization.Encoding.PEM)


class _Settings:
    serialNumber = EMS_SERIAL
    outOfSyncThreshold = 180.0


class EnrollerCase(SynchronousTestCase):
    """
    An L{Enroller} over a registry in a temporary directory.
    """

    def setUp(self) -> None:
        self.path = os.path.join(os.path.abspath(self.mktemp()), "registry.sqlite")
        self.store = SQLiteEndpointStore(self.path)
        self.addCleanup(self.store.close)
        self.enroller = Enroller(
            CA, EMS_SERIAL, TENANT, onNet=lambda address: address == "10.1.1.1"
        )

    def token(self, **kwargs: object) -> str:
        """
        A new token's text.
        """
        with self.store.transaction() as t:
            return createToken(t.cursor, NOW, **kwargs)[1]  # type: ignore[arg-type]

    def enroll(
        self,
        token: str,
        uid: str | None = None,
        proof: Proof | None = None,
        csr: bytes | None = None,
        now: float = NOW,
        source: str = "192.0.2.5",
    ) -> object:
        """
        Enroll with C{token}.
        """
        request = EnrollmentRequest(token=token, csr=csr or csrPem(), uid=uid, device=REPORT)
        return self.enroller.enroll(self.store, request, source, proof, now)

    def judge(self, certificate: x509.Certificate, now: float = NOW) -> object:
        """
        The device verdict for C{certificate} against the registry now.
        """
        presented = PresentedCertificate.fromLeaf(certificate, 1, None)
        return judgeDevice(presented, {1: FakeIndex(self.store.list())}, {1: _Settings()}, now)


class NewDeviceTests(EnrollerCase):
    """
    A token and a CSR enroll a new device.
    """

    def test_enrolled(self) -> None:
        """
        The EMS assigns a UID and serial, signs the CSR's key, and records
        the device (registered, online, token tags, reported facts).
        """
        key = newKey()
        enrolled = self.enroll(self.token(tags=["Lab"], user="ops"), csr=csrPem(key))
        record = enrolled.record  # type: ignore[attr-defined]
        certificate = enrolled.certificate  # type: ignore[attr-defined]
        self.assertTrue(enrolled.created)  # type: ignore[attr-defined]
        self.assertTrue(isUid(record.uid))
        self.assertEqual(
            certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value, record.uid
        )
        self.assertEqual(record.certSerial, canonicalSerial(certificate.serial_number))
        self.assertEqual(certificate.public_key(), key.public_key())
        certificate.verify_directly_issued_by(CA.certificate)
        stored = self.store.get(record.uid)
        self.assertEqual(stored, record)
        self.assertEqual(
            (stored.registrationStatus, stored.emsSerial, stored.tags, stored.user),
            (REGISTERED, EMS_SERIAL, {"Lab"}, "ops"),
        )
        self.assertEqual((stored.hostName, stored.osType, stored.ip, stored.macList), ("pc1", "Linux", "10.0.0.7", ("aa:bb:cc:dd:ee:ff",)))
        self.assertEqual(stored.facts, {"disk.root-encrypted": "true"})
        self.assertEqual((stored.publicIp, stored.lastSeen, stored.registeredAt), ("192.0.2.5", NOW, NOW))
        self.assertEqual(self.judge(certificate).kind, VerdictKind.VALID)

    def test_onNet(self) -> None:
        """
        On-net status comes from the source address.
        """
        enrolled = self.enroll(self.token(), source="10.1.1.1")
        self.assertTrue(enrolled.record.onNet)  # type: ignore[attr-defined]

    def test_validity(self) -> None:
        """
        The certificate starts a little in the past (slow clocks) and lasts
        a year.
        """
        certificate = self.enroll(self.token()).certificate  # type: ignore[attr-defined]
        start = certificate.not_valid_before_utc.timestamp()
        self.assertEqual(start, NOW - 300)
        self.assertEqual(certificate.not_valid_after_utc.timestamp() - start, 365 * 86400)

    def test_tokenOnce(self) -> None:
        """
        A single-use token enrolls one device; a second attempt is refused
        and changes nothing.
        """
        token = self.token()
        self.enroll(token)
        error = self.assertRaises(TokenRefused, self.enroll, token)
        self.assertEqual(error.code, "token-used")
        self.assertEqual(len(self.store.list()), 1)

    def test_badTokens(self) -> None:
        """
        A wrong, expired or revoked token enrolls nothing.
        """
        self.assertEqual(self.assertRaises(TokenRefused, self.enroll, "zt1.000000000000." + "A" * 43).code, "token-invalid")
        expiring = self.token(lifetime=60.0)
        self.assertEqual(self.assertRaises(TokenRefused, self.enroll, expiring, now=NOW + 61).code, "token-expired")
        revoked = self.token()
        with self.store.transaction() as t:
            revokeToken(t.cursor, revoked, NOW)
        self.assertEqual(self.assertRaises(TokenRefused, self.enroll, revoked).code, "token-revoked")
        self.assertEqual(self.store.list(), [])

    def test_csrRefused(self) -> None:
        """
        A tampered CSR, a weak key, or something that is no CSR is refused
        with C{csr-rejected}; the token is not used.
        """
        token = self.token()
        pem = csrPem()
        der = x509.load_pem_x509_csr(pem).public_bytes(serialization.Encoding.DER)
        # Change the signed content (the subject) but not its structure.
        tampered = der.replace(b"device", b"devicf")
        self.assertNotEqual(tampered, der)
        cases = [
            tampered,
            csrPem(newRSAKey(1024)),
            csrPem(ec.generate_private_key(ec.SECP256K1())),
            b"-----BEGIN CERTIFICATE REQUEST-----\nnonsense\n-----END CERTIFICATE REQUEST-----\n",
        ]
        for csr in cases:
            error = self.assertRaises(ApiError, self.enroll, token, csr=csr)
            self.assertEqual((error.status, error.code), (400, "csr-rejected"))
        self.assertIn("does not verify", self.assertRaises(ApiError, self.enroll, token, csr=cases[0]).message)
        self.assertIn("too weak", self.assertRaises(ApiError, self.enroll, token, csr=cases[1]).message)
        self.enroll(token)

    def test_hookFailureRollsBack(self) -> None:
        """
        Anything that fails inside the transaction (here the test hook)
        leaves neither a record nor a token use.
        """
        def explode(enrolled: object) -> None:
            raise RuntimeError("crash inside the transaction")

        self.enroller = Enroller(CA, EMS_SERIAL, TENANT, beforeCommit=explode)
        token = self.token()
        self.assertRaises(RuntimeError, self.enroll, token)
        self.assertEqual(self.store.list(), [])
        with self.store.transaction() as t:
            self.assertEqual(findToken(t.cursor, token).usesCount, 0)
            self.assertEqual(tokenUses(t.cursor, token), [])


class ReenrollmentTests(EnrollerCase):
    """
    A known device enrolls again with a new key: a new serial, and its old
    certificate fails with 001.  A token alone never takes over a UID.
    """

    def setUp(self) -> None:
        super().setUp()
        self.first = self.enroll(self.token(tags=["Lab"]))
        self.uid = self.first.record.uid  # type: ignore[attr-defined]
        self.oldCertificate = self.first.certificate  # type: ignore[attr-defined]

    def proof(self, certificate: x509.Certificate | None = None) -> Proof:
        """
        What the connection proves when the device presents C{certificate}.
        """
        certificate = certificate or self.oldCertificate
        return Proof(uid=self.uid, certSerial=canonicalSerial(certificate.serial_number))

    def test_withCertificate(self) -> None:
        """
        With its current certificate as proof, the device gets a new serial;
        the old certificate is then a serial mismatch (001), the new one
        valid; tags and registration time stay.
        """
        again = self.enroll(self.token(tags=["More"]), uid=self.uid, proof=self.proof(), now=NOW + 60)
        record = again.record  # type: ignore[attr-defined]
        self.assertFalse(again.created)  # type: ignore[attr-defined]
        self.assertEqual(record.uid, self.uid)
        self.assertNotEqual(record.certSerial, self.first.record.certSerial)  # type: ignore[attr-defined]
        self.assertEqual(record.tags, {"Lab", "More"})
        self.assertEqual((record.registeredAt, record.lastSeen), (NOW, NOW + 60))
        old = self.judge(self.oldCertificate, NOW + 60)
        self.assertEqual((old.kind, old.error.code), (VerdictKind.SERIAL_MISMATCH, "001"))  # type: ignore[attr-defined]
        self.assertEqual(self.judge(again.certificate, NOW + 60).kind, VerdictKind.VALID)  # type: ignore[attr-defined]

    def test_tokenAloneRefused(self) -> None:
        """
        A valid token without proof cannot re-enroll a UID; the token is
        not used and the record is unchanged.
        """
        token = self.token()
        error = self.assertRaises(ApiError, self.enroll, token, uid=self.uid)
        self.assertEqual((error.status, error.code), (403, "reenrollment-refused"))
        self.assertIn(f"token create --uid {self.uid}", error.message)
        self.assertEqual(self.store.get(self.uid), self.first.record)  # type: ignore[attr-defined]
        self.enroll(token)

    def test_otherDevicesCertificateRefused(self) -> None:
        """
        Proof of another UID does not open this one.
        """
        other = self.enroll(self.token())
        proof = Proof(uid=other.record.uid, certSerial=other.record.certSerial)  # type: ignore[attr-defined]
        error = self.assertRaises(ApiError, self.enroll, self.token(), uid=self.uid, proof=proof)
        self.assertEqual(error.code, "reenrollment-refused")

    def test_staleCertificateRefused(self) -> None:
        """
        A certificate that is no longer the device's (it re-enrolled since)
        is no proof, even if judged valid a moment ago.
        """
        self.enroll(self.token(), uid=self.uid, proof=self.proof())
        error = self.assertRaises(ApiError, self.enroll, self.token(), uid=self.uid, proof=self.proof())
        self.assertEqual((error.code, error.ztnaCode), ("reenrollment-refused", "001"))

    def test_deletedDeviceRefused(self) -> None:
        """
        A deleted device does not come back by itself.
        """
        proof = self.proof()
        self.store.delete(self.uid)
        error = self.assertRaises(ApiError, self.enroll, self.token(), uid=self.uid, proof=proof)
        self.assertEqual(error.code, "reenrollment-refused")
        self.assertIsNone(self.store.get(self.uid))

    def test_tokenForUid(self) -> None:
        """
        A token created for the UID re-enrolls it without a certificate.
        """
        again = self.enroll(self.token(uid=self.uid))
        self.assertEqual(again.record.uid, self.uid)  # type: ignore[attr-defined]
        self.assertEqual(self.judge(self.oldCertificate).kind, VerdictKind.SERIAL_MISMATCH)

    def test_tokenForAnotherUid(self) -> None:
        """
        A token for one UID cannot re-enroll another.
        """
        token = self.token(uid="0123456789ABCDEF0123456789ABCDEF")
        error = self.assertRaises(ApiError, self.enroll, token, uid=self.uid, proof=self.proof())
        self.assertEqual(error.code, "uid-mismatch")

    def test_tokenForNewUid(self) -> None:
        """
        A token for a UID not yet known enrolls a new device with that UID.
        """
        uid = "0123456789ABCDEF0123456789ABCDEF"
        enrolled = self.enroll(self.token(uid=uid))
        self.assertEqual((enrolled.record.uid, enrolled.created), (uid, True))  # type: ignore[attr-defined]

    def test_revokedRefused(self) -> None:
        """
        A revoked device cannot re-enroll itself, not even with a token for
        its UID: an administrator unrevokes it first.
        """
        self.store.update(self.uid, lambda r: attrs.evolve(r, revoked=True))
        for kwargs in ({"uid": self.uid, "proof": self.proof()}, {}):
            token = self.token(uid=self.uid) if not kwargs else self.token()
            error = self.assertRaises(ApiError, self.enroll, token, **kwargs)
            self.assertEqual((error.code, error.ztnaCode), ("device-revoked", "063"))

    def test_quarantineKept(self) -> None:
        """
        Re-enrollment keeps an administrator's quarantine.
        """
        self.store.update(self.uid, lambda r: attrs.evolve(r, quarantined=True))
        again = self.enroll(self.token(), uid=self.uid, proof=self.proof())
        self.assertTrue(again.record.quarantined)  # type: ignore[attr-defined]


class RequestTests(SynchronousTestCase):
    """
    The enrollment request body.
    """

    def test_parsed(self) -> None:
        """
        Token, CSR, optional UID and device report are read.
        """
        request = parseEnrollmentRequest(
            {"token": "t", "csr": "PEM", "uid": "9A016B5A6E914B42AD4168C066EB04CA", "device": {"user": "a"}}
        )
        self.assertEqual((request.token, request.csr, request.device.user), ("t", b"PEM", "a"))

    def test_refused(self) -> None:
        """
        Missing token or CSR, a malformed UID, unknown fields: 400.
        """
        for body in (
            {"csr": "x"},
            {"token": "t"},
            {"token": "t", "csr": 5},
            {"token": "t", "csr": "x", "uid": "9a016b5a6e914b42ad4168c066eb04ca"},
            {"token": "t", "csr": "x", "extra": 1},
            {"token": "t", "csr": "x", "device": {"nope": 1}},
        ):
            error = self.assertRaises(ApiError, parseEnrollmentRequest, body)
            self.assertEqual(error.code, "bad-request")


    @given(
        st.dictionaries(
            st.sampled_from(["token", "csr", "uid", "device", "other"]),
            st.none() | st.text(max_size=40) | st.integers() | st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=2),
            max_size=5,
        )
    )
    def test_anyBody(self, body: dict) -> None:
        """
        Any JSON object is a request or a 400, never another exception.
        """
        try:
            request = parseEnrollmentRequest(body)
        except ApiError as e:
            self.assertEqual((e.status, e.code), (400, "bad-request"))
        else:
            self.assertTrue(request.token and request.csr)
            self.assertTrue(request.uid is None or isUid(request.uid))


class LimiterTests(SynchronousTestCase):
    """
    L{AttemptLimiter} slows token guessing per source.
    """

    def test_burstThenRate(self) -> None:
        """
        A source may fail C{burst} times; then it waits for the refill.
        """
        clock = Clock()
        limiter = AttemptLimiter(clock.seconds, burst=3, perSecond=0.5)
        for _ in range(3):
            self.assertIsNone(limiter.retryAfter("192.0.2.1"))
            limiter.failed("192.0.2.1")
        self.assertAlmostEqual(limiter.retryAfter("192.0.2.1"), 2.0)
        self.assertIsNone(limiter.retryAfter("192.0.2.2"))
        clock.advance(2)
        self.assertIsNone(limiter.retryAfter("192.0.2.1"))

    def test_ipv6Prefix(self) -> None:
        """
        IPv6 sources count per /64; IPv4-mapped ones as IPv4.
        """
        self.assertEqual(AttemptLimiter.sourceKey("2001:db8::1"), AttemptLimiter.sourceKey("2001:db8::ffff"))
        self.assertNotEqual(AttemptLimiter.sourceKey("2001:db8::1"), AttemptLimiter.sourceKey("2001:db8:0:1::1"))
        self.assertEqual(AttemptLimiter.sourceKey("::ffff:192.0.2.1"), "192.0.2.1")

    def test_bounded(self) -> None:
        """
        Only the most recent sources are remembered.
        """
        limiter = AttemptLimiter(Clock().seconds, burst=1, perSecond=0.001, maxSources=10)
        for n in range(100):
            limiter.failed(f"10.0.0.{n}")
        self.assertEqual(len(limiter._buckets), 10)
        self.assertIsNotNone(limiter.retryAfter("10.0.0.99"))

    @given(st.lists(st.tuples(st.sampled_from(["a", "b"]), st.floats(0, 100)), max_size=40))
    def test_neverMoreThanAllowed(self, events: list[tuple[str, float]]) -> None:
        """
        However failures and time interleave, a source that is allowed
        never has more than C{burst} failures counted in any instant, and
        waiting the announced time always allows it again.
        """
        clock = Clock()
        limiter = AttemptLimiter(clock.seconds, burst=3, perSecond=0.1)
        for source, delay in events:
            clock.advance(delay)
            wait = limiter.retryAfter(source)
            if wait is None:
                limiter.failed(source)
            else:
                self.assertGreater(wait, 0)
                clock.advance(wait)
                self.assertIsNone(limiter.retryAfter(source))
