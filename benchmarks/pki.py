# -*- test-case-name: tests.benchmarks.test_pki -*-
"""
The benchmark's throwaway PKI.

Every system in the side-by-side benchmark must be measured with the same
certificates: one CA (which ztnagw also uses as its EMS CA, through the
fctems C{ca-certificate} option), one server certificate for 127.0.0.1, and
device certificates whose subject CN is a FortiClient UID, so that ztnagw
can register them and the peers can log them.  The benchmark does not
import the test suite, so it makes its own certificates here: EC P-256, as
FortiClient EMS issues them and as the issue asks.

The keys are written mode 0600 (created so, never chmod-ed afterwards) even
though they are thrown away: a benchmark run leaves its directory behind
for inspection.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets

from attrs import frozen
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_ONE_DAY = datetime.timedelta(days=1)


@frozen
class PemFiles:
    """
    A certificate and its key, written to files.

    @ivar certificate: path of the PEM certificate.
    @ivar key: path of the PEM private key (PKCS#8, unencrypted, mode 0600).
    @ivar combined: path of certificate + key in one file (HAProxy's
        C{crt} and stunnel take this form).
    """

    certificate: str
    key: str
    combined: str


@frozen
class Device:
    """
    A bench device.

    @ivar uid: its FortiClient UID (32 upper-case hex digits), the subject
        CN of its certificate.
    @ivar serial: the certificate's serial number.
    @ivar files: its certificate and key.
    """

    uid: str
    serial: int
    files: PemFiles


@frozen
class BenchPki:
    """
    Everything one benchmark run needs.

    @ivar ca: the CA (also the EMS CA of the benchmarked ztnagw).
    @ivar server: the certificate every measured server presents, for
        127.0.0.1 and C{localhost}.
    @ivar devices: the device certificates the load generators present.
    """

    ca: PemFiles
    server: PemFiles
    devices: tuple[Device, ...]


def newUid() -> str:
    """
    A random FortiClient-style UID: 32 upper-case hexadecimal digits.
    """
    return secrets.token_hex(16).upper()


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _write(path: str, data: bytes, private: bool) -> None:
    mode = 0o600 if private else 0o644
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _keyPem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _save(
    directory: str, name: str, certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> PemFiles:
    certPem = certificate.public_bytes(serialization.Encoding.PEM)
    keyPem = _keyPem(key)
    files = PemFiles(
        certificate=os.path.join(directory, name + ".crt"),
        key=os.path.join(directory, name + ".key"),
        combined=os.path.join(directory, name + ".pem"),
    )
    _write(files.certificate, certPem, private=False)
    _write(files.key, keyPem, private=True)
    _write(files.combined, certPem + keyPem, private=True)
    return files


def _leaf(
    caCert: x509.Certificate,
    caKey: ec.EllipticCurvePrivateKey,
    commonName: str,
    serial: int,
    usage: x509.ObjectIdentifier,
    names: tuple[x509.GeneralName, ...] = (),
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, commonName)]))
        .issuer_name(caCert.subject)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(_now() - _ONE_DAY)
        .not_valid_after(_now() + 30 * _ONE_DAY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(caKey.public_key()), False)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(names)), False)
    return builder.sign(caKey, hashes.SHA256()), key


def makeBenchPki(directory: str, deviceCount: int = 2) -> BenchPki:
    """
    Make a fresh CA, a server certificate and C{deviceCount} device
    certificates in C{directory} (created if missing).

    @param deviceCount: how many devices; the load generators use the first,
        the others show that registration is per device.
    @raise ValueError: C{deviceCount} is less than 1.
    """
    if deviceCount < 1:
        raise ValueError("the benchmark needs at least one device")
    os.makedirs(directory, mode=0o700, exist_ok=True)
    caKey = ec.generate_private_key(ec.SECP256R1())
    caName = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ztnagw benchmark CA")])
    caCert = (
        x509.CertificateBuilder()
        .subject_name(caName)
        .issuer_name(caName)
        .public_key(caKey.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - _ONE_DAY)
        .not_valid_after(_now() + 30 * _ONE_DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(caKey.public_key()), False)
        .sign(caKey, hashes.SHA256())
    )
    ca = _save(directory, "ca", caCert, caKey)
    serverCert, serverKey = _leaf(
        caCert,
        caKey,
        "localhost",
        x509.random_serial_number(),
        ExtendedKeyUsageOID.SERVER_AUTH,
        (x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))),
    )
    server = _save(directory, "server", serverCert, serverKey)
    devices = []
    for index in range(deviceCount):
        uid = newUid()
        serial = x509.random_serial_number()
        cert, key = _leaf(caCert, caKey, uid, serial, ExtendedKeyUsageOID.CLIENT_AUTH)
        devices.append(Device(uid=uid, serial=serial, files=_save(directory, f"device{index}", cert, key)))
    return BenchPki(ca=ca, server=server, devices=tuple(devices))
