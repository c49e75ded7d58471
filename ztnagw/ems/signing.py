# -*- test-case-name: tests.ems.test_signing -*-
"""
Issuing certificates with the EMS CA: device certificates for enrolled
clients, and server certificates for the gateway itself.

A device certificate is the device's identity at the gateway: its subject
is exactly C{CN=<UID>} and its serial number is recorded in the registry at
enrollment; the gateway admits the device only while both match its
record.  So the EMS, never the client, chooses both (L{newUid} and
L{newSerial}, defined in L{ztnagw.ems.identifiers} and importable from
here), and nothing of the client's request but its public key goes into
the certificate.

Gateway certificates (C{config vpn certificate local} entries with
C{auto-generate enable}) are signed by the same CA, so that a forwarder
that trusts its EMS CA after enrollment also trusts the gateway
(L{ensureLocalCertificate}).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
from typing import Iterable, Sequence

from attrs import field, frozen
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from twisted.logger import Logger

from ztnagw.ems.ca import CertificateAuthorityError, EmsCertificateAuthority
from ztnagw.ems.csr import SigningRequest
from ztnagw.ems.identifiers import SERIAL_BITS, newSerial, newUid
from ztnagw.ems.keys import (
    KeyMaterialError,
    PrivateKey,
    PublicKey,
    certificatePem,
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
from ztnagw.registry.record import isUid

__all__ = [
    "DEVICE_VALIDITY",
    "LocalCertificate",
    "LocalCertificateError",
    "RENEWAL_WARNING",
    "SERIAL_BITS",
    "SERVER_VALIDITY",
    "ensureLocalCertificate",
    "issueDeviceCertificate",
    "issueServerCertificate",
    "newSerial",
    "newUid",
]

#: How long a device certificate is valid when the caller does not say.
DEVICE_VALIDITY = datetime.timedelta(days=365)

#: How long a gateway certificate is valid when the caller does not say:
#: 397 days, the longest that every browser accepts for a server
#: certificate.
SERVER_VALIDITY = datetime.timedelta(days=397)

#: How far a new gateway certificate's validity starts in the past, for
#: clients with slow clocks.
_BACKDATE = datetime.timedelta(minutes=5)

#: A gateway certificate this close to its end is reported at start-up.
RENEWAL_WARNING = datetime.timedelta(days=30)

_DNS_NAME = re.compile(
    r"\A(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*"
    r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z",
    # ASCII: under Unicode case folding, [a-z] would also match the Kelvin
    # sign and the long s.
    re.IGNORECASE | re.ASCII,
)

_MAX_COMMON_NAME = 64

_log = Logger()


def _checkSerial(serial: int) -> None:
    if not isinstance(serial, int) or isinstance(serial, bool):
        raise TypeError(f"a serial number is an int, not {type(serial).__name__}")
    if not 0 < serial < 2**SERIAL_BITS:
        raise ValueError(f"serial number {serial} is outside 1 .. 2**{SERIAL_BITS} - 1")


def _validity(
    ca: EmsCertificateAuthority,
    notBefore: datetime.datetime,
    notAfter: datetime.datetime | None,
    default: datetime.timedelta,
) -> tuple[datetime.datetime, datetime.datetime]:
    if notBefore.tzinfo is None or (notAfter is not None and notAfter.tzinfo is None):
        raise ValueError("validity times must be timezone-aware")
    if notAfter is None:
        notAfter = notBefore + default
    if notAfter <= notBefore:
        raise ValueError(f"validity ends ({notAfter}) before it starts ({notBefore})")
    caStart = ca.certificate.not_valid_before_utc
    caEnd = ca.certificate.not_valid_after_utc
    if notBefore >= caEnd:
        raise CertificateAuthorityError(
            f"the EMS CA ({ca.source}) expired on {caEnd:%Y-%m-%d %H:%M} UTC "
            f"and cannot issue certificates; rotate it (docs/ems.md)"
        )
    # A certificate is never valid outside its issuer's validity: some
    # verifiers insist, and it would mean nothing anyway.
    return max(notBefore, caStart), min(notAfter, caEnd)


def _keyUsage(publicKey: PublicKey) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        # RSA keys may also carry TLS 1.2 RSA key exchange.
        key_encipherment=isinstance(publicKey, rsa.RSAPublicKey),
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _authorityKeyIdentifier(ca: EmsCertificateAuthority) -> x509.AuthorityKeyIdentifier:
    try:
        ski = ca.certificate.extensions.get_extension_for_class(
            x509.SubjectKeyIdentifier
        ).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(
            ca.privateKey.public_key()
        )
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _endEntity(
    ca: EmsCertificateAuthority,
    subject: x509.Name,
    publicKey: PublicKey,
    serial: int,
    notBefore: datetime.datetime,
    notAfter: datetime.datetime,
    purpose: x509.ObjectIdentifier,
) -> x509.CertificateBuilder:
    problem = publicKeyProblem(publicKey)
    if problem is not None:
        raise ValueError(problem)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.certificate.subject)
        .public_key(publicKey)
        .serial_number(serial)
        .not_valid_before(notBefore)
        .not_valid_after(notAfter)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_keyUsage(publicKey), critical=True)
        .add_extension(x509.ExtendedKeyUsage([purpose]), critical=False)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(publicKey), critical=False
        )
        .add_extension(_authorityKeyIdentifier(ca), critical=False)
    )


def issueDeviceCertificate(
    ca: EmsCertificateAuthority,
    request: SigningRequest,
    uid: str,
    serial: int,
    notBefore: datetime.datetime,
    notAfter: datetime.datetime | None = None,
) -> x509.Certificate:
    """
    Sign a device certificate.

    The certificate holds the request's public key and nothing else from
    the request: its subject is exactly C{CN=<uid>}, and it carries basic
    constraints CA:FALSE (critical), key usage digital signature (plus key
    encipherment for RSA; critical), extended key usage client
    authentication, and key identifiers.

    @param ca: the EMS CA that signs.
    @param request: a request checked by
        L{ztnagw.ems.csr.parseCertificateSigningRequest}.
    @param uid: the device's FortiClient UID (32 upper-case hex digits).
    @param serial: the certificate's serial number (see L{newSerial}); the
        caller records it in the registry.
    @param notBefore: when validity starts (timezone-aware), never before
        the CA's own start.  Callers pass the current time less a few
        minutes, for devices with slow clocks.
    @param notAfter: when validity ends; C{notBefore} plus
        L{DEVICE_VALIDITY} by default, and never after the CA's own end.
    @raise ValueError: C{uid} or C{serial} is malformed, or the validity
        is empty.
    @raise CertificateAuthorityError: the CA has expired by C{notBefore}
        (it must be rotated).
    """
    if not isinstance(request, SigningRequest):
        raise TypeError(
            "issueDeviceCertificate signs only requests checked by "
            "parseCertificateSigningRequest"
        )
    if not isinstance(uid, str) or not isUid(uid):
        raise ValueError(f"{uid!r} is not a FortiClient UID (32 upper-case hex)")
    _checkSerial(serial)
    notBefore, notAfter = _validity(ca, notBefore, notAfter, DEVICE_VALIDITY)
    builder = _endEntity(
        ca,
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, uid)]),
        request.publicKey,
        serial,
        notBefore,
        notAfter,
        ExtendedKeyUsageOID.CLIENT_AUTH,
    )
    return builder.sign(ca.privateKey, signatureHash(ca.privateKey))


def _serverNames(
    dnsNames: Iterable[str],
    ipAddresses: Iterable[str | ipaddress.IPv4Address | ipaddress.IPv6Address],
) -> tuple[list[str], list[ipaddress.IPv4Address | ipaddress.IPv6Address]]:
    names = []
    for name in dnsNames:
        if not isinstance(name, str) or not _DNS_NAME.match(name):
            raise ValueError(f"{name!r} is not a DNS name")
        names.append(name.lower())
    addresses = [ipaddress.ip_address(address) for address in ipAddresses]
    if not names and not addresses:
        raise ValueError("a server certificate needs at least one name or address")
    return names, addresses


def issueServerCertificate(
    ca: EmsCertificateAuthority,
    publicKey: PublicKey,
    dnsNames: Sequence[str],
    ipAddresses: Sequence[str | ipaddress.IPv4Address | ipaddress.IPv6Address],
    notBefore: datetime.datetime,
    notAfter: datetime.datetime | None = None,
    serial: int | None = None,
) -> x509.Certificate:
    """
    Sign a TLS server certificate for the gateway.

    The subject is C{CN=<first name>} (the first DNS name, else the first
    address; omitted if longer than X.509 allows), every name and address
    is a subject alternative name (which is what clients check), and the
    extended key usage is server authentication.

    @param publicKey: the key to certify (see L{ensureLocalCertificate} to
        make one).
    @param dnsNames: DNS names (a leading C{*.} for a wildcard).
    @param ipAddresses: IPv4 or IPv6 addresses, as text or objects.
    @param notBefore: when validity starts (timezone-aware).
    @param notAfter: when it ends; C{notBefore} plus L{SERVER_VALIDITY} by
        default, and never after the CA's own end.
    @param serial: the serial number; a new random one by default.
    @raise ValueError: no name at all, a malformed name, or a key the EMS
        role does not accept.
    @raise CertificateAuthorityError: the CA has expired by C{notBefore}.
    """
    names, addresses = _serverNames(dnsNames, ipAddresses)
    if serial is None:
        serial = newSerial()
    _checkSerial(serial)
    notBefore, notAfter = _validity(ca, notBefore, notAfter, SERVER_VALIDITY)
    commonName = names[0] if names else str(addresses[0])
    subject = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, commonName)]
        if len(commonName) <= _MAX_COMMON_NAME
        else []
    )
    alternativeNames: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    alternativeNames += [x509.IPAddress(a) for a in addresses]
    builder = _endEntity(
        ca,
        subject,
        publicKey,
        serial,
        notBefore,
        notAfter,
        ExtendedKeyUsageOID.SERVER_AUTH,
    ).add_extension(
        # Critical when the subject is empty (RFC 5280, 4.2.1.6).
        x509.SubjectAlternativeName(alternativeNames),
        critical=not subject,
    )
    return builder.sign(ca.privateKey, signatureHash(ca.privateKey))


class LocalCertificateError(KeyMaterialError):
    """
    A gateway certificate and key pair on disk cannot be used or created.
    The message names the files and what to do.
    """


@frozen
class LocalCertificate:
    """
    A gateway certificate with its key, as L{ensureLocalCertificate} found
    or made it.

    @ivar certificate: the certificate.
    @ivar privateKey: its key; takes no part in C{repr} or equality.
    @ivar created: whether this call created the pair.
    """

    certificate: x509.Certificate
    privateKey: PrivateKey = field(repr=False, eq=False)
    created: bool = False


def ensureLocalCertificate(
    certificatePath: str,
    keyPath: str,
    ca: EmsCertificateAuthority,
    dnsNames: Sequence[str],
    ipAddresses: Sequence[str | ipaddress.IPv4Address | ipaddress.IPv6Address],
    now: datetime.datetime | None = None,
) -> LocalCertificate:
    """
    Make sure a gateway certificate (C{auto-generate enable}) exists: create
    the pair if neither file exists, load it if both do.

    A created pair is a new P-256 key (mode 0600, written first) and a
    certificate from L{issueServerCertificate}.  A loaded pair is used as it
    is, even if it names other hosts or was not issued by C{ca} (the
    operator may have replaced it); it is checked (key private and
    matching, key accepted), and a certificate that has expired or will
    within L{RENEWAL_WARNING} is logged with what to do.

    Blocks on files and key generation.

    @param now: the current time; the clock by default.
    @raise LocalCertificateError: only one of the two files exists, or the
        loaded pair fails a check.
    @raise ValueError: see L{issueServerCertificate}.
    @raise CertificateAuthorityError: see L{issueServerCertificate}.
    """
    if now is None:
        now = datetime.datetime.now(datetime.timezone.utc)
    haveCertificate = os.path.lexists(certificatePath)
    haveKey = os.path.lexists(keyPath)
    if haveCertificate and haveKey:
        return _loadLocalCertificate(certificatePath, keyPath, now)
    if haveCertificate or haveKey:
        present, missing = (
            (certificatePath, keyPath)
            if haveCertificate
            else (keyPath, certificatePath)
        )
        raise LocalCertificateError(
            f"{present} exists but {missing} does not; restore the missing "
            f"file, or remove {present} to have a new pair generated"
        )
    # Validate the names before making a key that would then be unused.
    _serverNames(dnsNames, ipAddresses)
    key = newPrivateKey()
    certificate = issueServerCertificate(
        ca, key.public_key(), dnsNames, ipAddresses, notBefore=now - _BACKDATE
    )
    # The key goes first: a crash in between leaves a lone key, which the
    # next start refuses clearly instead of serving a certificate whose key
    # is lost.
    writePrivateFile(keyPath, privateKeyPem(key))
    writePublicFile(certificatePath, certificatePem(certificate))
    _log.info(
        "Created gateway certificate {subject} (SHA-256 {fingerprint}), "
        "issued by {issuer}, in {path}",
        subject=certificate.subject.rfc4514_string(),
        fingerprint=fingerprint(certificate),
        issuer=ca.subject,
        path=certificatePath,
    )
    return LocalCertificate(certificate=certificate, privateKey=key, created=True)


def _loadLocalCertificate(
    certificatePath: str, keyPath: str, now: datetime.datetime
) -> LocalCertificate:
    try:
        key = readPrivateKeyFile(keyPath, "gateway certificate key")
        certificate = readCertificateFile(certificatePath, "gateway certificate")
    except KeyMaterialError as e:
        raise LocalCertificateError(str(e)) from None
    if not keyMatchesCertificate(key, certificate):
        raise LocalCertificateError(
            f"the key {keyPath} does not belong to the certificate "
            f"{certificatePath}; remove both to have a new pair generated"
        )
    end = certificate.not_valid_after_utc
    if end - RENEWAL_WARNING <= now:
        state = "expired" if end <= now else "expires"
        _log.warn(
            "Gateway certificate {path} {state} on {end}; remove it and "
            "{keyPath} and restart to have a new pair generated",
            path=certificatePath,
            state=state,
            end=f"{end:%Y-%m-%d %H:%M} UTC",
            keyPath=keyPath,
        )
    return LocalCertificate(certificate=certificate, privateKey=key, created=False)
