# -*- test-case-name: tests.forwarder.test_enroll -*-
"""
Enrollment, the client side: a key, a CSR, a token, and a profile.

C{ztnagw-forward enroll} makes the device an EC P-256 key, sends a
certificate signing request with the enrollment token and what the device
knows about itself to the EMS (C{POST /api/v1/enroll}, C{docs/ems.md}),
checks the certificate it gets back, and stores key, certificate and the
EMS CA as a profile (L{ztnagw.forwarder.profile}).

The EMS is authenticated before the token leaves the device, never
blindly: by the CA certificate the administrator handed out
(C{--ca-file}) or the pin of the EMS listener's public key (C{--pin},
printed by C{ztnagw token create}).  With neither, nothing is sent: the
command connects only to read the key the server presents and tells the
user which pin to confirm with the administrator (L{probePin}).

A profile that already holds a device makes this a re-enrollment of that
device (same UID, new key, new serial): its current certificate is
presented on the connection as proof, unless C{--new-device} asks for a
new identity.
"""

from __future__ import annotations

import datetime
from typing import Any

from attrs import frozen
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IHandshakeListener, IOpenSSLClientConnectionCreator
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from zope.interface import implementer

from ztnagw.ems.api import DeviceReport
from ztnagw.ems.keys import keyMatchesCertificate
from ztnagw.forwarder.api import ApiAnswer, EmsError, postJson
from ztnagw.forwarder.profile import Profile, ProfileError, storeProfile
from ztnagw.registry.record import canonicalSerial, isUid
from ztnagw.tls.client import (
    deviceClientCreator,
    formatPin,
    parsePin,
    pinnedClientCreator,
    spkiFingerprint,
)
from ztnagw.tls.listener import connectTLS

__all__ = [
    "ENROLL_PATH",
    "EnrollmentFailed",
    "EnrollmentPlan",
    "enroll",
    "makeRequest",
    "probePin",
]

ENROLL_PATH = b"/api/v1/enroll"


class EnrollmentFailed(Exception):
    """
    Enrollment did not happen; the message says why and what to do.

    @ivar code: the EMS's error code, when it refused.
    """

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@frozen
class EnrollmentPlan:
    """
    Everything an enrollment needs, read before the reactor runs.

    @ivar emsUrl: C{https://HOST:PORT}.
    @ivar host: the EMS host.
    @ivar port: the EMS port.
    @ivar token: the enrollment token.
    @ivar pin: the EMS listener's key pin, if the user gave one.
    @ivar caCertificates: the CA certificates the EMS is checked against,
        if the user gave a CA file.
    @ivar directory: the profile directory to write.
    @ivar existing: the device already in that profile, to re-enroll; or
        C{None} for a new device.
    @ivar gateway: the default gateway to record (C{HOST:PORT}), if the
        user gave one.
    """

    emsUrl: str
    host: str
    port: int
    token: str
    pin: bytes | None
    caCertificates: tuple[x509.Certificate, ...]
    directory: str
    existing: Profile | None
    gateway: str | None

    def creator(self) -> IOpenSSLClientConnectionCreator:
        """
        How the enrollment connection authenticates the EMS, presenting the
        existing device's certificate when re-enrolling.
        """
        certificate = self.existing.certificate if self.existing is not None else None
        key = self.existing.privateKey if self.existing is not None else None
        if self.pin is not None:
            return pinnedClientCreator(self.host, self.pin, certificate, key)
        if not self.caCertificates:
            raise EnrollmentFailed("give --ca-file or --pin to check the EMS")
        return deviceClientCreator(self.host, self.caCertificates, certificate, key)  # type: ignore[arg-type]


def makeRequest(
    key: ec.EllipticCurvePrivateKey, token: str, report: DeviceReport, uid: str | None
) -> dict[str, Any]:
    """
    The enrollment request body: the token, a CSR signed with C{key}
    (SHA-256; its subject is ignored by the EMS, which assigns the UID),
    the device report, and the UID to re-enroll.
    """
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ztnagw-forward")]))
        .sign(key, hashes.SHA256())
    )
    body: dict[str, Any] = {
        "token": token,
        "csr": csr.public_bytes(serialization.Encoding.PEM).decode("ascii"),
        "device": report.toJson(),
    }
    if uid is not None:
        body["uid"] = uid
    return body


@frozen
class _Checked:
    uid: str
    certificate: x509.Certificate
    authorities: tuple[x509.Certificate, ...]
    gateways: tuple[str, ...]
    emsPin: bytes | None


def _check(answer: ApiAnswer, key: ec.EllipticCurvePrivateKey) -> _Checked:
    """
    Check the EMS's answer: a certificate for our key, naming the UID and
    serial it says, issued by one of the CAs it sends.

    @raise EnrollmentFailed: it is not.
    """
    body = answer.body
    uid, serial = body.get("uid"), body.get("certSerial")
    if not isinstance(uid, str) or not isUid(uid) or not isinstance(serial, str):
        raise EnrollmentFailed("the EMS answered without a valid UID and serial")
    try:
        certificates = x509.load_pem_x509_certificates(str(body.get("certificate", "")).encode("ascii"))
        authorities = tuple(
            x509.load_pem_x509_certificates("".join(body.get("caCertificates", [])).encode("ascii"))
        )
    except (ValueError, TypeError, UnicodeEncodeError):
        raise EnrollmentFailed("the EMS answered with certificates that cannot be read") from None
    certificate = certificates[0]
    if not keyMatchesCertificate(key, certificate):
        raise EnrollmentFailed("the EMS answered with a certificate for another key")
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1 or names[0].value != uid:
        raise EnrollmentFailed(f"the certificate does not name the UID {uid} the EMS assigned")
    if canonicalSerial(certificate.serial_number) != serial:
        raise EnrollmentFailed("the certificate's serial is not the one the EMS recorded")
    for authority in authorities:
        try:
            certificate.verify_directly_issued_by(authority)
        except (ValueError, TypeError, InvalidSignature):
            continue
        break
    else:
        raise EnrollmentFailed("the certificate was not issued by the CA the EMS sent")
    gateways = body.get("gateways", [])
    if not isinstance(gateways, list) or not all(isinstance(g, str) for g in gateways):
        gateways = []
    pin = None
    if isinstance(body.get("emsPin"), str):
        try:
            pin = parsePin(body["emsPin"])
        except ValueError:
            pin = None
    return _Checked(uid, certificate, authorities, tuple(gateways), pin)


def enroll(
    reactor: Any,
    plan: EnrollmentPlan,
    report: DeviceReport,
    now: datetime.datetime | None = None,
    threadpool: Any = None,
) -> Deferred[Profile]:
    """
    Enroll (or re-enroll) the device and store its profile.

    @param report: what the device says about itself.
    @param now: when (for the profile); the clock by default.
    @param threadpool: where the profile is written; the reactor's by
        default.
    @return: fires with the stored profile, or fails with
        L{EnrollmentFailed} (the EMS's refusal, with its code and
        message), or L{ProfileError}.
    """
    if now is None:
        now = datetime.datetime.now(datetime.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    uid = plan.existing.uid if plan.existing is not None else None
    body = makeRequest(key, plan.token, report, uid)
    d = postJson(reactor, plan.host, plan.port, plan.creator(), ENROLL_PATH, body)

    def refused(reason: Failure) -> Failure:
        if reason.check(EmsError):
            error: EmsError = reason.value
            return Failure(EnrollmentFailed(_advice(error, plan), error.code))
        return reason

    def store(answer: ApiAnswer) -> Deferred[Profile]:
        checked = _check(answer, key)
        gateway = plan.gateway
        if gateway is None and plan.existing is not None:
            gateway = plan.existing.gateway
        if gateway is None and checked.gateways:
            gateway = checked.gateways[0]
        pool = threadpool if threadpool is not None else reactor.getThreadPool()
        return deferToThreadPool(
            reactor,
            pool,
            storeProfile,
            plan.directory,
            key,
            checked.certificate,
            checked.authorities,
            plan.emsUrl,
            # The EMS was authenticated (pin or CA file), so the pin it
            # tells is trusted: telemetry then survives CA rotations.
            plan.pin if plan.pin is not None else checked.emsPin,
            gateway,
            now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        )

    return d.addCallbacks(store, refused)


def _advice(error: EmsError, plan: EnrollmentPlan) -> str:
    """
    The EMS's refusal, with what the user can do about it.
    """
    message = error.message
    if error.code == "unreachable" and "pinned" in message:
        return f"{message}; check the pin with your administrator"
    if error.code == "too-many-attempts" and error.retryAfter is not None:
        return f"{message} (retry in {error.retryAfter:.0f} s)"
    return message


@implementer(IHandshakeListener)
class _Probe(Protocol):
    """
    Reads the key a server presents, then hangs up.
    """

    def __init__(self, done: Deferred[bytes]) -> None:
        self._done = done

    def handshakeCompleted(self) -> None:
        """
        Take the server certificate's key pin.
        """
        try:
            certificate = self.transport.getPeerCertificate()  # type: ignore[union-attr]
            pin = spkiFingerprint(certificate.to_cryptography())
        except Exception as e:
            if not self._done.called:
                self._done.errback(Failure(EnrollmentFailed(f"the server presented no usable certificate ({e})")))
        else:
            if not self._done.called:
                self._done.callback(pin)
        self.transport.loseConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure) -> None:
        """
        A connection lost before the handshake gives nothing.
        """
        if not self._done.called:
            self._done.errback(
                Failure(EnrollmentFailed(f"no TLS server answered: {reason.getErrorMessage()}"))
            )


@implementer(IOpenSSLClientConnectionCreator)
class _ReadOnlyCreator:
    """
    A TLS client that accepts any server certificate: used only by
    L{probePin}, which sends nothing and trusts nothing, only shows.
    """

    def __init__(self, host: str) -> None:
        self._context = SSL.Context(SSL.TLS_CLIENT_METHOD)
        self._context.set_verify(SSL.VERIFY_NONE)
        self._host = host

    def clientConnectionForTLS(self, tlsProtocol: object) -> SSL.Connection:
        """
        A connection with SNI and no verification.
        """
        connection = SSL.Connection(self._context, None)
        try:
            connection.set_tlsext_host_name(self._host.encode("idna"))
        except (UnicodeError, ValueError):
            pass
        return connection


def probePin(reactor: Any, host: str, port: int, timeout: float = 15) -> Deferred[bytes]:
    """
    The pin of the key the TLS server at C{host}:C{port} presents.  Nothing
    is sent and nothing is trusted: the user must confirm the pin with the
    administrator before enrolling with it.

    @return: fires with the 32-byte digest, or fails with
        L{EnrollmentFailed}.
    """
    done: Deferred[bytes] = Deferred()
    factory = Factory.forProtocol(lambda: _Probe(done))  # type: ignore[arg-type]
    connecting = connectTLS(reactor, host, port, _ReadOnlyCreator(host), factory, timeout=timeout)

    def failed(reason: Failure) -> None:
        if not done.called:
            done.errback(Failure(EnrollmentFailed(f"cannot connect to {host}:{port}: {reason.getErrorMessage()}")))

    connecting.addErrback(failed)
    return done


def pinAdvice(emsUrl: str, pin: bytes) -> str:
    """
    What to tell a user who gave neither a CA file nor a pin.
    """
    return (
        f"refusing to send the token to an EMS that is not verified: give --pin "
        f"or --ca-file.\nThe server at {emsUrl} presents the key {formatPin(pin)}.\n"
        f"If your administrator confirms that pin (ztnagw token create prints it), "
        f"run again with --pin {formatPin(pin)}"
    )
