"""
A throwaway PKI for tests.

Tests across the suite need certificate authorities, device certificates
with FortiClient UIDs, gateway server certificates and deliberately broken
certificates (expired, wrong usage, extra intermediate...).  This module
makes them quickly (EC P-256 keys, cached per process) so that no test ships
a private key and no two tests invent their own certificate code.

Everything here is for tests only: keys are created without care for
storage, and validity periods are chosen for convenience.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from functools import lru_cache
from typing import Iterable, Sequence

from attrs import frozen
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_ONE_DAY = datetime.timedelta(days=1)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


@lru_cache(maxsize=None)
def _cachedKey(slot: int) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def newKey(slot: int | None = None) -> ec.EllipticCurvePrivateKey:
    """
    An EC P-256 private key.

    @param slot: reuse the key cached under this number (key generation is
        the slow part of certificate making); C{None} for a fresh key.
    """
    if slot is None:
        return ec.generate_private_key(ec.SECP256R1())
    return _cachedKey(slot)


def newRSAKey(bits: int = 2048) -> rsa.RSAPrivateKey:
    """
    An RSA private key of C{bits} bits (for weak-key and RSA tests).
    """
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


@frozen
class Issued:
    """
    A certificate with its private key.
    """

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

    def certificatePem(self) -> bytes:
        """
        The certificate in PEM.
        """
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def keyPem(self) -> bytes:
        """
        The private key in unencrypted PKCS#8 PEM.
        """
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def pem(self) -> bytes:
        """
        Certificate and key in one PEM blob, as Twisted's
        C{PrivateCertificate.loadPEM} wants it.
        """
        return self.certificatePem() + self.keyPem()

    @property
    def serial(self) -> int:
        """
        The certificate's serial number.
        """
        return self.certificate.serial_number

    def writeTo(self, directory: str, name: str) -> tuple[str, str]:
        """
        Write C{name}.crt and C{name}.key (mode 0600) into C{directory}.

        @return: the two paths.
        """
        certPath = os.path.join(directory, name + ".crt")
        keyPath = os.path.join(directory, name + ".key")
        with open(certPath, "wb") as f:
            f.write(self.certificatePem())
        fd = os.open(keyPath, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(self.keyPem())
        return certPath, keyPath


def _name(commonNames: Sequence[str], organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, cn) for cn in commonNames]
    if organization is not None:
        attributes.insert(
            0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization)
        )
    return x509.Name(attributes)


def makeCA(
    commonName: str = "ztnagw test CA",
    issuer: Issued | None = None,
    keySlot: int | None = None,
    notBefore: datetime.datetime | None = None,
    notAfter: datetime.datetime | None = None,
) -> Issued:
    """
    A CA certificate: self-signed, or an intermediate signed by C{issuer}.
    """
    key = newKey(keySlot)
    subject = _name([commonName])
    signer = issuer.key if issuer is not None else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.certificate.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(notBefore or _now() - _ONE_DAY)
        .not_valid_after(notAfter or _now() + 3650 * _ONE_DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False
        )
    )
    return Issued(builder.sign(signer, hashes.SHA256()), key)


def makeLeaf(
    ca: Issued,
    commonNames: Sequence[str] = ("leaf",),
    serial: int | None = None,
    clientAuth: bool = True,
    serverAuth: bool = False,
    extendedKeyUsage: bool = True,
    dnsNames: Iterable[str] = (),
    ipAddresses: Iterable[str] = (),
    notBefore: datetime.datetime | None = None,
    notAfter: datetime.datetime | None = None,
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | None = None,
    keySlot: int | None = 1,
) -> Issued:
    """
    An end-entity certificate signed by C{ca}.

    @param commonNames: subject CNs (several for the two-CN attack, none
        for a SAN-only certificate).
    @param extendedKeyUsage: whether to include an EKU extension at all;
        C{clientAuth}/C{serverAuth} choose its purposes.
    """
    if key is None:
        key = newKey(keySlot)
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dnsNames]
    sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in ipAddresses]
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(commonNames))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(serial if serial is not None else x509.random_serial_number())
        .not_valid_before(notBefore or _now() - _ONE_DAY)
        .not_valid_after(notAfter or _now() + 365 * _ONE_DAY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca.key.public_key()
            ),
            False,
        )
    )
    if extendedKeyUsage:
        usages = []
        if clientAuth:
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        if serverAuth:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        if not usages:
            usages.append(ExtendedKeyUsageOID.CODE_SIGNING)
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), False)
    return Issued(builder.sign(ca.key, hashes.SHA256()), key)


def makeDevice(
    ca: Issued, uid: str, serial: int | None = None, **kwargs: object
) -> Issued:
    """
    A device certificate as EMS issues it: subject CN = the FortiClient UID,
    clientAuth usage.
    """
    return makeLeaf(ca, commonNames=(uid,), serial=serial, **kwargs)  # type: ignore[arg-type]


def makeServer(
    ca: Issued,
    names: Sequence[str] = ("localhost",),
    ipAddresses: Sequence[str] = ("127.0.0.1",),
    **kwargs: object,
) -> Issued:
    """
    A TLS server certificate for C{names} and C{ipAddresses}.
    """
    return makeLeaf(
        ca,
        commonNames=(names[0] if names else "server",),
        clientAuth=False,
        serverAuth=True,
        dnsNames=names,
        ipAddresses=ipAddresses,
        **kwargs,  # type: ignore[arg-type]
    )


def makeCSR(
    commonName: str = "device",
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | None = None,
) -> tuple[x509.CertificateSigningRequest, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey]:
    """
    A certificate signing request and its key.
    """
    if key is None:
        key = newKey()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(_name([commonName]))
        .sign(key, hashes.SHA256())
    )
    return csr, key


#: A UID that tests use for "the" device.
DEVICE_UID = "9A016B5A6E914B42AD4168C066EB04CA"
