"""
Tests for L{ztnagw.ems.signing}.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import stat
import subprocess

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID
from hypothesis import given
from hypothesis import strategies as st
from OpenSSL import SSL, crypto
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from tests.ems.fakes import newAuthority, utcNow
from tests.support.pki import DEVICE_UID, makeCA, makeCSR, newKey, newRSAKey
from ztnagw.ems import signing
from ztnagw.ems.ca import CertificateAuthorityError, EmsCertificateAuthority
from ztnagw.ems.csr import SigningRequest, parseCertificateSigningRequest
from ztnagw.ems.keys import (
    KeyMaterialError,
    certificatePem,
    privateKeyPem,
    publicKeyBytes,
)
from ztnagw.ems.signing import (
    DEVICE_VALIDITY,
    SERIAL_BITS,
    SERVER_VALIDITY,
    LocalCertificateError,
    ensureLocalCertificate,
    issueDeviceCertificate,
    issueServerCertificate,
    newSerial,
)
from ztnagw.keyfiles import writePrivateFile, writePublicFile
from ztnagw.registry.record import canonicalSerial

_MINUTE = datetime.timedelta(minutes=1)

#: OpenSSL's verify error for a certificate used for a purpose it does not
#: allow.
_X509_V_ERR_INVALID_PURPOSE = 26


def _request(
    key: object = None, builder: x509.CertificateSigningRequestBuilder | None = None
) -> SigningRequest:
    """
    A checked request for C{key} (a cached P-256 key by default), built from
    C{builder} if given.
    """
    if key is None:
        key = newKey(60)
    if builder is None:
        request, _ = makeCSR("device", key=key)  # type: ignore[arg-type]
    else:
        request = builder.sign(key, hashes.SHA256())  # type: ignore[arg-type]
    return parseCertificateSigningRequest(
        request.public_bytes(serialization.Encoding.PEM)
    )


def _clientVerifier(
    trusted: EmsCertificateAuthority, now: datetime.datetime
) -> verification.ClientVerifier:
    # The Web PKI profile requires a subject alternative name on client
    # certificates; device certificates carry their identity in the CN.
    endEntity = verification.ExtensionPolicy.webpki_defaults_ee().may_be_present(
        x509.SubjectAlternativeName, verification.Criticality.AGNOSTIC, None
    )
    return (
        verification.PolicyBuilder()
        .store(verification.Store([trusted.certificate]))
        .time(now)
        .extension_policies(
            ca_policy=verification.ExtensionPolicy.webpki_defaults_ca(),
            ee_policy=endEntity,
        )
        .build_client_verifier()
    )


def _opensslVerifies(
    trusted: EmsCertificateAuthority,
    leaf: x509.Certificate,
    intermediates: tuple[x509.Certificate, ...] = (),
) -> bool:
    store = crypto.X509Store()
    store.add_cert(crypto.X509.from_cryptography(trusted.certificate))
    context = crypto.X509StoreContext(
        store,
        crypto.X509.from_cryptography(leaf),
        [crypto.X509.from_cryptography(c) for c in intermediates],
    )
    try:
        context.verify_certificate()
    except crypto.X509StoreContextError:
        return False
    return True


# Built once for hypothesis, which runs a test many times.
_AUTHORITY_TIME = utcNow()
_AUTHORITY = newAuthority(_AUTHORITY_TIME)
_REQUEST = _request()


class SerialInCertificateTests(SynchronousTestCase):
    """
    Serial numbers reach certificates unchanged.
    """

    @given(st.integers(min_value=1, max_value=2**SERIAL_BITS - 1))
    def test_serialInCertificate(self, serial: int) -> None:
        """
        A serial survives issuance: the certificate's serial, spelled
        canonically, is the serial spelled canonically.
        """
        certificate = issueDeviceCertificate(
            _AUTHORITY, _REQUEST, DEVICE_UID, serial, _AUTHORITY_TIME
        )
        self.assertEqual(certificate.serial_number, serial)
        self.assertEqual(
            canonicalSerial(certificate.serial_number), canonicalSerial(serial)
        )


class DeviceCertificateTests(SynchronousTestCase):
    """
    L{issueDeviceCertificate} certifies the request's key under the UID,
    for client authentication only.
    """

    def setUp(self) -> None:
        self.now = utcNow()
        self.ca = newAuthority(self.now)
        self.serial = newSerial()

    def _issue(
        self, request: SigningRequest | None = None, **kwargs: object
    ) -> x509.Certificate:
        return issueDeviceCertificate(
            self.ca,
            request or _request(),
            DEVICE_UID,
            self.serial,
            kwargs.pop("notBefore", self.now - 5 * _MINUTE),  # type: ignore[arg-type]
            **kwargs,  # type: ignore[arg-type]
        )

    def test_verifiesAsClient(self) -> None:
        """
        The certificate verifies against the CA for client authentication
        (cryptography's verifier, which checks the extended key usage) and
        with OpenSSL.
        """
        certificate = self._issue()
        chain = _clientVerifier(self.ca, self.now).verify(certificate, []).chain
        self.assertEqual(chain, [certificate, self.ca.certificate])
        self.assertTrue(_opensslVerifies(self.ca, certificate))

    def test_opensslStrictClientPurpose(self) -> None:
        """
        The C{openssl verify} command accepts the certificate for the
        C{sslclient} purpose under C{-x509_strict}, and refuses it for
        C{sslserver}.
        """
        openssl = shutil.which("openssl")
        if openssl is None:
            raise self.skipTest("the openssl command is not installed")
        directory = self.mktemp()
        os.makedirs(directory)
        caPath = os.path.join(directory, "ca.crt")
        devicePath = os.path.join(directory, "device.crt")
        writePublicFile(caPath, self.ca.certificatePem())
        writePublicFile(devicePath, certificatePem(self._issue()))

        def verify(purpose: str) -> int:
            return subprocess.run(
                [
                    openssl,
                    "verify",
                    "-x509_strict",
                    "-purpose",
                    purpose,
                    "-CAfile",
                    caPath,
                    devicePath,
                ],
                capture_output=True,
                timeout=30,
            ).returncode

        self.assertEqual(verify("sslclient"), 0)
        self.assertNotEqual(verify("sslserver"), 0)

    def test_notAServerCertificate(self) -> None:
        """
        The certificate does not verify as a server certificate.
        """
        certificate = self._issue()
        verifier = (
            verification.PolicyBuilder()
            .store(verification.Store([self.ca.certificate]))
            .time(self.now)
            .build_server_verifier(verification.DNSName("device"))
        )
        self.assertRaises(
            verification.VerificationError, verifier.verify, certificate, []
        )

    def test_subjectIsTheUid(self) -> None:
        """
        The subject is exactly C{CN=<uid>}, whatever the request asked for;
        the issuer is the CA.
        """
        builder = x509.CertificateSigningRequestBuilder().subject_name(
            x509.Name(
                [
                    x509.NameAttribute(
                        NameOID.COMMON_NAME, "11111111111111111111111111111111"
                    ),
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Evil"),
                    x509.NameAttribute(NameOID.COMMON_NAME, "admin"),
                ]
            )
        )
        certificate = self._issue(_request(builder=builder))
        self.assertEqual(
            certificate.subject,
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, DEVICE_UID)]),
        )
        self.assertEqual(certificate.issuer, self.ca.certificate.subject)

    def test_requestedExtensionsIgnored(self) -> None:
        """
        Extensions in the request (names, CA:TRUE, other usages) are not
        copied: the certificate has exactly the EMS's five.
        """
        builder = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
            .add_extension(
                x509.SubjectAlternativeName([x509.DNSName("intranet.example.com")]),
                False,
            )
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False
            )
        )
        certificate = self._issue(_request(builder=builder))
        extensions = certificate.extensions
        self.assertEqual(
            {e.oid for e in extensions},
            {
                ExtensionOID.BASIC_CONSTRAINTS,
                ExtensionOID.KEY_USAGE,
                ExtensionOID.EXTENDED_KEY_USAGE,
                ExtensionOID.SUBJECT_KEY_IDENTIFIER,
                ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
            },
        )
        constraints = extensions.get_extension_for_class(x509.BasicConstraints)
        self.assertTrue(constraints.critical)
        self.assertFalse(constraints.value.ca)
        self.assertEqual(
            list(extensions.get_extension_for_class(x509.ExtendedKeyUsage).value),
            [ExtendedKeyUsageOID.CLIENT_AUTH],
        )

    def test_keyUsageAndIdentifiers(self) -> None:
        """
        Key usage is digital signature only for an EC key (critical); the
        key identifiers name the device key and the CA key.
        """
        request = _request()
        certificate = self._issue(request)
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage)
        self.assertTrue(usage.critical)
        self.assertTrue(usage.value.digital_signature)
        self.assertFalse(usage.value.key_encipherment)
        self.assertFalse(usage.value.key_cert_sign)
        self.assertEqual(
            certificate.extensions.get_extension_for_class(
                x509.SubjectKeyIdentifier
            ).value,
            x509.SubjectKeyIdentifier.from_public_key(request.publicKey),
        )
        caIdentifier = self.ca.certificate.extensions.get_extension_for_class(
            x509.SubjectKeyIdentifier
        ).value
        self.assertEqual(
            certificate.extensions.get_extension_for_class(
                x509.AuthorityKeyIdentifier
            ).value.key_identifier,
            caIdentifier.digest,
        )
        self.assertEqual(
            publicKeyBytes(certificate.public_key()),  # type: ignore[arg-type]
            publicKeyBytes(request.publicKey),
        )

    def test_rsaKeyEncipherment(self) -> None:
        """
        An RSA device key may also encipher keys (TLS 1.2 RSA key exchange).
        """
        certificate = self._issue(_request(newRSAKey(2048)))
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
        self.assertTrue(usage.digital_signature)
        self.assertTrue(usage.key_encipherment)
        self.assertTrue(_opensslVerifies(self.ca, certificate))

    def test_cannotActAsCA(self) -> None:
        """
        Neither a device certificate nor an intermediate CA made with the
        EMS key can issue certificates that verify: the device is not a CA,
        and the EMS CA's path length is 0.
        """
        deviceKey = newKey(61)
        device = self._issue(_request(deviceKey))
        forged = _signed(newKey(62), device.subject, deviceKey, ca=False)
        self.assertFalse(_opensslVerifies(self.ca, forged, (device,)))

        intermediateKey = newKey(63)
        for authority, verifies in (
            (self.ca, False),
            (_unconstrainedAuthority(), True),
        ):
            intermediate = _signed(
                intermediateKey,
                authority.certificate.subject,
                authority.privateKey,
                ca=True,
                subject="intermediate",
            )
            leaf = _signed(newKey(64), intermediate.subject, intermediateKey, ca=False)
            # The control: the same chain under a CA without a path length
            # limit verifies, so the refusal is the limit's doing.
            self.assertEqual(
                _opensslVerifies(authority, leaf, (intermediate,)), verifies
            )

    def test_validityDefault(self) -> None:
        """
        Without an end, the certificate is valid for L{DEVICE_VALIDITY}
        from its start.
        """
        start = self.now - 5 * _MINUTE
        certificate = self._issue(notBefore=start)
        self.assertEqual(certificate.not_valid_before_utc, start)
        self.assertEqual(certificate.not_valid_after_utc, start + DEVICE_VALIDITY)

    def test_validityWithinCA(self) -> None:
        """
        The certificate never outlives the CA, nor starts before it.
        """
        end = self.ca.certificate.not_valid_after_utc
        certificate = self._issue(
            notBefore=end - 10 * _MINUTE, notAfter=end + DEVICE_VALIDITY
        )
        self.assertEqual(certificate.not_valid_after_utc, end)
        early = self._issue(notBefore=self.now - datetime.timedelta(days=2))
        self.assertEqual(
            early.not_valid_before_utc, self.ca.certificate.not_valid_before_utc
        )

    def test_expiredCA(self) -> None:
        """
        An expired CA issues nothing, and the message says to rotate it.
        """
        end = self.ca.certificate.not_valid_after_utc
        error = self.assertRaises(CertificateAuthorityError, self._issue, notBefore=end)
        self.assertIn("rotate", str(error))

    def test_badValidity(self) -> None:
        """
        Naive times and an end before the start are programming errors.
        """
        self.assertRaises(
            ValueError, self._issue, notBefore=self.now.replace(tzinfo=None)
        )
        self.assertRaises(
            ValueError, self._issue, notBefore=self.now, notAfter=self.now
        )

    def test_badUidOrSerial(self) -> None:
        """
        A malformed UID or an out-of-range serial is refused.
        """
        request = _request()
        for uid in (DEVICE_UID.lower(), DEVICE_UID[:-1], DEVICE_UID + "0", "CN=x"):
            self.assertRaises(
                ValueError, issueDeviceCertificate, self.ca, request, uid, 1, self.now
            )
        for serial in (0, -1, 2**SERIAL_BITS):
            self.assertRaises(
                ValueError,
                issueDeviceCertificate,
                self.ca,
                request,
                DEVICE_UID,
                serial,
                self.now,
            )

    def test_uncheckedRequest(self) -> None:
        """
        Only requests checked by the parser are signed.
        """
        raw, _ = makeCSR(DEVICE_UID, key=newKey(60))
        self.assertRaises(
            TypeError, issueDeviceCertificate, self.ca, raw, DEVICE_UID, 1, self.now
        )

    def test_weakKeySmuggled(self) -> None:
        """
        A request value made without the parser, around a refused key, is
        still refused.
        """
        weak = newRSAKey(1024).public_key()
        request = SigningRequest(publicKey=weak, keyDescription="RSA 2048", der=b"")
        self.assertRaises(ValueError, self._issue, request)


def _unconstrainedAuthority() -> EmsCertificateAuthority:
    # A CA like the test PKI's: basic constraints without a path length.
    issued = makeCA(keySlot=65)
    return EmsCertificateAuthority(issued.certificate, issued.key, "test PKI")


def _signed(
    key: object,
    issuer: x509.Name,
    issuerKey: object,
    ca: bool,
    subject: str = "forged",
) -> x509.Certificate:
    now = utcNow()
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer)
        .public_key(key.public_key())  # type: ignore[attr-defined]
        .serial_number(newSerial())
        .not_valid_before(now - _MINUTE)
        .not_valid_after(now + DEVICE_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), True)
        .sign(issuerKey, hashes.SHA256())  # type: ignore[arg-type]
    )


class ServerCertificateTests(SynchronousTestCase):
    """
    L{issueServerCertificate} makes gateway certificates that TLS clients
    accept for the configured names.
    """

    def setUp(self) -> None:
        self.now = utcNow()
        self.ca = newAuthority(self.now)
        self.key = newKey(70)

    def _verifier(self, subject: verification.Subject) -> verification.ServerVerifier:
        return (
            verification.PolicyBuilder()
            .store(verification.Store([self.ca.certificate]))
            .time(self.now)
            .build_server_verifier(subject)
        )

    def test_namesAndPurpose(self) -> None:
        """
        The certificate verifies for each DNS name and address, its subject
        is the first name, and its only purpose is server authentication.
        """
        certificate = issueServerCertificate(
            self.ca,
            self.key.public_key(),
            ["Gw.Example.com", "*.apps.example.com"],
            ["127.0.0.1", "::1"],
            self.now,
        )
        for subject in (
            verification.DNSName("gw.example.com"),
            verification.DNSName("x.apps.example.com"),
            verification.IPAddress(ipaddress.ip_address("127.0.0.1")),
            verification.IPAddress(ipaddress.ip_address("::1")),
        ):
            self._verifier(subject).verify(certificate, [])
        self.assertRaises(
            verification.VerificationError,
            self._verifier(verification.DNSName("other.example.com")).verify,
            certificate,
            [],
        )
        self.assertEqual(certificate.subject.rfc4514_string(), "CN=gw.example.com")
        self.assertEqual(
            list(
                certificate.extensions.get_extension_for_class(
                    x509.ExtendedKeyUsage
                ).value
            ),
            [ExtendedKeyUsageOID.SERVER_AUTH],
        )
        self.assertEqual(certificate.not_valid_after_utc, self.now + SERVER_VALIDITY)

    def test_addressOnly(self) -> None:
        """
        With addresses only, the subject is the first address.
        """
        certificate = issueServerCertificate(
            self.ca,
            self.key.public_key(),
            [],
            [ipaddress.ip_address("10.0.3.10")],
            self.now,
        )
        self.assertEqual(certificate.subject.rfc4514_string(), "CN=10.0.3.10")

    def test_longName(self) -> None:
        """
        A first name too long for a common name leaves the subject empty
        and makes the alternative names critical.
        """
        name = "a" * 60 + ".example.com"
        certificate = issueServerCertificate(
            self.ca, self.key.public_key(), [name], [], self.now
        )
        self.assertEqual(len(certificate.subject), 0)
        self.assertTrue(
            certificate.extensions.get_extension_for_class(
                x509.SubjectAlternativeName
            ).critical
        )
        self._verifier(verification.DNSName(name)).verify(certificate, [])

    def test_badNames(self) -> None:
        """
        No name at all, a malformed DNS name or address is refused.
        """
        public = self.key.public_key()
        self.assertRaises(
            ValueError, issueServerCertificate, self.ca, public, [], [], self.now
        )
        for bad in (
            "",
            "a..b",
            "-a.com",
            "a_b.com",
            "é.com",
            "\u212a.com",
            "a b",
            "*.*.com",
        ):
            self.assertRaises(
                ValueError, issueServerCertificate, self.ca, public, [bad], [], self.now
            )
        self.assertRaises(
            ValueError,
            issueServerCertificate,
            self.ca,
            public,
            [],
            ["300.1.1.1"],
            self.now,
        )


def _handshake(
    ca: EmsCertificateAuthority,
    server: tuple[x509.Certificate, object],
    client: tuple[x509.Certificate, object],
    verifyErrors: list[int] | None = None,
) -> x509.Certificate | None:
    """
    Run a TLS handshake in memory between an OpenSSL server and client that
    both trust only C{ca} and both verify their peer.

    @param server: the server's certificate and key.
    @param client: the client's certificate and key.
    @param verifyErrors: receives the OpenSSL verify error of each
        certificate either side refused.
    @return: the client certificate the server verified.
    @raise SSL.Error: either side refused the other.
    """
    errors = [] if verifyErrors is None else verifyErrors

    def record(
        connection: object, certificate: object, errno: int, depth: int, ok: int
    ) -> bool:
        if not ok:
            errors.append(errno)
        return bool(ok)

    def context(method: int, pair: tuple[x509.Certificate, object]) -> SSL.Context:
        result = SSL.Context(method)
        result.use_certificate(pair[0])  # type: ignore[arg-type]
        result.use_privatekey(pair[1])  # type: ignore[arg-type]
        result.get_cert_store().add_cert(  # type: ignore[union-attr]
            crypto.X509.from_cryptography(ca.certificate)
        )
        result.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, record)
        return result

    serverSide = SSL.Connection(context(SSL.TLS_SERVER_METHOD, server))
    serverSide.set_accept_state()
    clientSide = SSL.Connection(context(SSL.TLS_CLIENT_METHOD, client))
    clientSide.set_connect_state()
    for _ in range(10):
        for connection in (clientSide, serverSide):
            try:
                connection.do_handshake()
            except SSL.WantReadError:
                pass
        for source, sink in ((clientSide, serverSide), (serverSide, clientSide)):
            try:
                sink.bio_write(source.bio_read(65536))
            except SSL.WantReadError:
                pass
    return serverSide.get_peer_certificate(as_cryptography=True)


class HandshakeTests(SynchronousTestCase):
    """
    What the EMS issues works in a real OpenSSL handshake: a device
    certificate as a client certificate, a gateway certificate as a server
    certificate.
    """

    def test_mutualTLS(self) -> None:
        """
        A server trusting the EMS CA accepts the device certificate, and
        the client trusting it accepts the gateway certificate.
        """
        now = utcNow()
        ca = newAuthority(now)
        gatewayKey, deviceKey = newKey(80), newKey(81)
        gateway = issueServerCertificate(
            ca, gatewayKey.public_key(), ["gw.example.com"], [], now - _MINUTE
        )
        device = issueDeviceCertificate(
            ca, _request(deviceKey), DEVICE_UID, newSerial(), now - _MINUTE
        )
        verified = _handshake(ca, (gateway, gatewayKey), (device, deviceKey))
        self.assertEqual(verified, device)

    def test_roles(self) -> None:
        """
        Neither certificate works in the other's role: the purpose checks
        OpenSSL makes in a handshake refuse them.
        """
        now = utcNow()
        ca = newAuthority(now)
        gatewayKey, deviceKey = newKey(80), newKey(81)
        gateway = issueServerCertificate(
            ca, gatewayKey.public_key(), ["gw.example.com"], [], now - _MINUTE
        )
        device = issueDeviceCertificate(
            ca, _request(deviceKey), DEVICE_UID, newSerial(), now - _MINUTE
        )
        for pair in ((device, deviceKey), (gateway, gatewayKey)):
            errors: list[int] = []
            self.assertRaises(SSL.Error, _handshake, ca, pair, pair, errors)
            self.assertEqual(errors, [_X509_V_ERR_INVALID_PURPOSE])


class EnsureLocalCertificateTests(SynchronousTestCase):
    """
    L{ensureLocalCertificate} creates a missing gateway certificate pair,
    loads an existing one, and refuses half of one.
    """

    def setUp(self) -> None:
        directory = self.mktemp()
        self.certificatePath = os.path.join(directory, "gw.crt")
        self.keyPath = os.path.join(directory, "gw.key")
        self.now = utcNow()
        self.ca = newAuthority(self.now)

    def _ensure(self, **kwargs: object) -> signing.LocalCertificate:
        return ensureLocalCertificate(
            self.certificatePath,
            self.keyPath,
            self.ca,
            kwargs.pop("dnsNames", ["gw.example.com"]),  # type: ignore[arg-type]
            ["127.0.0.1"],
            now=kwargs.pop("now", self.now),  # type: ignore[arg-type]
        )

    def test_createThenLoad(self) -> None:
        """
        The first call creates a P-256 key (0600, even with umask 0) and a
        certificate from the CA, and logs it; the next loads the same pair
        without rewriting it.
        """
        old = os.umask(0)
        try:
            with capturedLogs() as events:
                created = self._ensure()
        finally:
            os.umask(old)
        self.assertTrue(created.created)
        self.assertEqual(stat.S_IMODE(os.stat(self.keyPath).st_mode), 0o600)
        self.assertTrue(_opensslVerifies(self.ca, created.certificate))
        self.assertEqual(len(events), 1)
        self.assertIn(self.certificatePath, formatEvent(events[0]))
        self.assertNotIn("PRIVATE KEY", formatEvent(events[0]))
        before = (
            os.stat(self.keyPath).st_mtime_ns,
            os.stat(self.certificatePath).st_mtime_ns,
        )
        loaded = self._ensure()
        self.assertFalse(loaded.created)
        self.assertEqual(loaded.certificate, created.certificate)
        self.assertEqual(
            loaded.privateKey.private_numbers(), created.privateKey.private_numbers()
        )
        self.assertEqual(
            (
                os.stat(self.keyPath).st_mtime_ns,
                os.stat(self.certificatePath).st_mtime_ns,
            ),
            before,
        )

    def test_operatorPairKept(self) -> None:
        """
        An existing pair from elsewhere (another CA, other names) is used as
        it is.
        """
        other = makeCA(keySlot=71)
        writePrivateFile(self.keyPath, privateKeyPem(other.key))
        writePublicFile(self.certificatePath, other.certificatePem())
        loaded = self._ensure(dnsNames=["elsewhere.example.com"])
        self.assertEqual(loaded.certificate, other.certificate)

    def test_halfPresent(self) -> None:
        """
        A lone key or a lone certificate is refused, naming both files,
        and left as it is.
        """
        self._ensure()
        certificate = _read(self.certificatePath)
        os.unlink(self.keyPath)
        error = self.assertRaises(LocalCertificateError, self._ensure)
        self.assertIn(self.keyPath, str(error))
        self.assertIn(self.certificatePath, str(error))
        self.assertEqual(_read(self.certificatePath), certificate)
        self.assertFalse(os.path.exists(self.keyPath))

        os.unlink(self.certificatePath)
        writePrivateFile(self.keyPath, privateKeyPem(newKey(72)))
        key = _read(self.keyPath)
        self.assertRaises(LocalCertificateError, self._ensure)
        self.assertEqual(_read(self.keyPath), key)
        self.assertFalse(os.path.exists(self.certificatePath))

    def test_mismatchedPair(self) -> None:
        """
        A key that is not the certificate's is refused.
        """
        self._ensure()
        writePrivateFile(self.keyPath, privateKeyPem(newKey(73)))
        error = self.assertRaises(LocalCertificateError, self._ensure)
        self.assertIn("does not belong", str(error))

    def test_looseKey(self) -> None:
        """
        A key file others can read is refused with the chmod to run.
        """
        self._ensure()
        os.chmod(self.keyPath, 0o644)
        error = self.assertRaises(KeyMaterialError, self._ensure)
        self.assertIsInstance(error, LocalCertificateError)
        self.assertIn(f"chmod 600 {self.keyPath}", str(error))

    def test_expiringLogged(self) -> None:
        """
        A certificate near its end is still loaded, and a warning says what
        to do.
        """
        self._ensure()
        later = self.now + SERVER_VALIDITY - datetime.timedelta(days=3)
        with capturedLogs() as events:
            self._ensure(now=later)
        self.assertEqual(len(events), 1)
        text = formatEvent(events[0])
        self.assertIn("expires", text)
        self.assertIn(self.keyPath, text)

    def test_badNamesCreateNothing(self) -> None:
        """
        A malformed name is refused before any file is written.
        """
        self.assertRaises(ValueError, self._ensure, dnsNames=["bad name"])
        self.assertFalse(os.path.exists(self.keyPath))
        self.assertFalse(os.path.exists(self.certificatePath))


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()
