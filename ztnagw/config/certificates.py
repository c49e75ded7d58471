# -*- test-case-name: tests.config.test_certificates -*-
"""
Loading and checking the certificate material a configuration names.

A C{vpn certificate local} entry holds a certificate and its private key,
inline (as FortiOS stores them) or in files (ztnagw's extension); a C{vpn
certificate ca} entry holds trust anchors.  This module is the one place
that reads that material: the loader calls it to refuse a configuration
whose certificates would fail at start, and the TLS layer calls it to get
the parsed objects.  It reads files, so it runs before the reactor or in a
thread.

Checks, each failing with a L{CertificateProblem} naming the option
concerned: the material is given once (inline or file, not both); the PEM
parses; the certificates of a chain are in order; the key parses (with
C{password} when encrypted) and matches the certificate; key files are
readable by their owner only.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Union

from attrs import frozen
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import (
    dsa,
    ec,
    ed448,
    ed25519,
    rsa,
)

from ztnagw.keyfiles import privateFileProblem

if TYPE_CHECKING:  # pragma: no cover
    from ztnagw.config.model import CaCertificate, LocalCertificate

__all__ = [
    "CertificateMaterial",
    "CertificateProblem",
    "MAX_PEM_SIZE",
    "isPendingGeneration",
    "loadCaCertificate",
    "loadLocalCertificate",
]

#: The largest certificate or key file read: PEM material is a few
#: kilobytes, and a wrong path must not make the loader read a disk image.
MAX_PEM_SIZE = 1024 * 1024

PrivateKey = Union[
    rsa.RSAPrivateKey,
    ec.EllipticCurvePrivateKey,
    ed25519.Ed25519PrivateKey,
    ed448.Ed448PrivateKey,
    dsa.DSAPrivateKey,
]


class CertificateProblem(Exception):
    """
    Certificate material is missing or invalid.

    @ivar option: the CLI option the problem is about (for its location).
    @ivar message: what is wrong and what to do, in one sentence.
    """

    def __init__(self, option: str, message: str) -> None:
        super().__init__(message)
        self.option = option
        self.message = message


@frozen
class CertificateMaterial:
    """
    A certificate, its intermediates and its private key, parsed.

    @ivar certificate: the end-entity (or CA) certificate.
    @ivar chain: the certificates that followed it, issuer after subject.
    @ivar key: the private key matching C{certificate}.
    """

    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    key: PrivateKey


def _read(path: str, option: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_PEM_SIZE + 1)
    except OSError as e:
        raise CertificateProblem(option, f"cannot read {path}: {e.strerror}")
    if len(data) > MAX_PEM_SIZE:
        raise CertificateProblem(
            option, f"{path} is larger than {MAX_PEM_SIZE} bytes; it is not PEM material"
        )
    return data


def _certificates(data: bytes, option: str, where: str) -> list[x509.Certificate]:
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise CertificateProblem(option, f"{where} holds no PEM certificate")
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise CertificateProblem(option, f"{where} holds a PEM certificate that cannot be parsed")
    return certificates


def _checkOrder(certificates: list[x509.Certificate], option: str, where: str) -> None:
    for subject, issuer in zip(certificates, certificates[1:]):
        if subject.issuer != issuer.subject:
            raise CertificateProblem(
                option,
                f"the certificates in {where} are not in order: each must be "
                "followed by its issuer (leaf first)",
            )


def _publicBytes(key: object) -> bytes:
    return key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _key(data: bytes, password: str | None, option: str, where: str) -> PrivateKey:
    if b"PRIVATE KEY-----" not in data:
        raise CertificateProblem(option, f"{where} holds no PEM private key")
    secret = None if password is None else password.encode("utf-8")
    try:
        key = serialization.load_pem_private_key(data, secret)
    except TypeError:
        if password is None:
            raise CertificateProblem(
                option, f"the private key in {where} is encrypted; set password"
            )
        raise CertificateProblem(
            "password",
            f"password is set but the private key in {where} is not encrypted; "
            "unset password",
        )
    except ValueError:
        if password is not None:
            raise CertificateProblem(
                option,
                f"the private key in {where} cannot be decrypted with the "
                "password given, or is not a valid key",
            )
        raise CertificateProblem(option, f"the private key in {where} cannot be parsed")
    except UnsupportedAlgorithm:
        raise CertificateProblem(option, f"the private key in {where} is of an unsupported type")
    if not isinstance(
        key,
        (
            rsa.RSAPrivateKey,
            ec.EllipticCurvePrivateKey,
            ed25519.Ed25519PrivateKey,
            ed448.Ed448PrivateKey,
            dsa.DSAPrivateKey,
        ),
    ):
        raise CertificateProblem(option, f"the key in {where} cannot sign certificates or TLS")
    return key


def isPendingGeneration(entry: "LocalCertificate") -> bool:
    """
    Whether C{entry} has C{auto-generate enable} and neither of its files
    exists yet: the gateway will create them at start.
    """
    return (
        entry.autoGenerate
        and entry.certificateFile is not None
        and entry.privateKeyFile is not None
        and not os.path.lexists(entry.certificateFile)
        and not os.path.lexists(entry.privateKeyFile)
    )


def checkLocalCertificateShape(entry: "LocalCertificate") -> list[CertificateProblem]:
    """
    The problems of an entry that need no file: how its material is given.
    """
    problems = []
    inline = entry.certificate is not None or entry.privateKey is not None
    files = entry.certificateFile is not None or entry.privateKeyFile is not None
    if inline and files:
        option = "certificate-file" if entry.certificateFile is not None else "private-key-file"
        problems.append(
            CertificateProblem(
                option,
                "give the certificate and key inline (certificate, private-key) "
                "or in files (certificate-file, private-key-file), not both",
            )
        )
        return problems
    if entry.autoGenerate and inline:
        problems.append(
            CertificateProblem(
                "auto-generate",
                "auto-generate needs certificate-file and private-key-file to "
                "write to, not inline material",
            )
        )
        return problems
    pairs = (
        ("certificate", entry.certificate, "private-key", entry.privateKey),
        ("certificate-file", entry.certificateFile, "private-key-file", entry.privateKeyFile),
    )
    for certificateOption, certificate, keyOption, key in pairs:
        if certificate is not None and key is None:
            problems.append(
                CertificateProblem(
                    certificateOption,
                    f"{keyOption} is missing: a local certificate needs its key",
                )
            )
        if key is not None and certificate is None:
            problems.append(
                CertificateProblem(
                    keyOption,
                    f"{certificateOption} is missing: the key needs its certificate",
                )
            )
    if not inline and not files:
        problems.append(
            CertificateProblem(
                "certificate",
                "no material: set certificate and private-key (inline PEM) or "
                "certificate-file and private-key-file",
            )
        )
    if entry.password is not None and entry.privateKey is None and entry.privateKeyFile is None:
        problems.append(
            CertificateProblem("password", "password is set but there is no private key")
        )
    return problems


def loadLocalCertificate(entry: "LocalCertificate") -> CertificateMaterial:
    """
    Read and check the certificate, chain and key of a C{vpn certificate
    local} entry.

    @raise CertificateProblem: the first problem found; for an
        C{auto-generate} entry whose files do not exist yet, that they are
        still to be generated.
    """
    shape = checkLocalCertificateShape(entry)
    if shape:
        raise shape[0]
    if entry.certificate is not None and entry.privateKey is not None:
        certificateData = entry.certificate.encode("utf-8")
        keyData = entry.privateKey.encode("utf-8")
        certificateWhere = "certificate"
        keyWhere = "private-key"
        certificateOption, keyOption = "certificate", "private-key"
    else:
        assert entry.certificateFile is not None and entry.privateKeyFile is not None
        certificateOption, keyOption = "certificate-file", "private-key-file"
        if isPendingGeneration(entry):
            raise CertificateProblem(
                certificateOption,
                f"{entry.certificateFile} and {entry.privateKeyFile} do not "
                "exist yet; the gateway creates them at start (auto-generate)",
            )
        if entry.autoGenerate:
            # One file without the other: regenerating would replace a
            # certificate or key someone may rely on; refuse instead.
            for option, path, other in (
                (certificateOption, entry.certificateFile, entry.privateKeyFile),
                (keyOption, entry.privateKeyFile, entry.certificateFile),
            ):
                if not os.path.lexists(path):
                    raise CertificateProblem(
                        option,
                        f"{path} is missing but {other} exists; remove both "
                        "to have them generated again, or restore it",
                    )
        try:
            problem = privateFileProblem(entry.privateKeyFile)
        except OSError as e:
            raise CertificateProblem(
                keyOption, f"cannot read {entry.privateKeyFile}: {e.strerror}"
            )
        if problem is not None:
            raise CertificateProblem(keyOption, f"private key file {problem}")
        certificateData = _read(entry.certificateFile, certificateOption)
        keyData = _read(entry.privateKeyFile, keyOption)
        certificateWhere = entry.certificateFile
        keyWhere = entry.privateKeyFile
    certificates = _certificates(certificateData, certificateOption, certificateWhere)
    _checkOrder(certificates, certificateOption, certificateWhere)
    key = _key(keyData, entry.password, keyOption, keyWhere)
    if _publicBytes(key.public_key()) != _publicBytes(certificates[0].public_key()):
        raise CertificateProblem(
            keyOption,
            f"the private key in {keyWhere} does not match the certificate in "
            f"{certificateWhere}",
        )
    return CertificateMaterial(certificates[0], tuple(certificates[1:]), key)


def loadCaCertificate(entry: "CaCertificate") -> tuple[x509.Certificate, ...]:
    """
    Read and check the trust anchors of a C{vpn certificate ca} entry.

    @raise CertificateProblem: the material is missing or invalid.
    """
    if entry.ca is not None and entry.caFile is not None:
        raise CertificateProblem(
            "ca-file", "give the CA inline (ca) or in a file (ca-file), not both"
        )
    if entry.ca is not None:
        return tuple(_certificates(entry.ca.encode("utf-8"), "ca", "ca"))
    if entry.caFile is not None:
        return tuple(_certificates(_read(entry.caFile, "ca-file"), "ca-file", entry.caFile))
    raise CertificateProblem("ca", "no material: set ca (inline PEM) or ca-file")
