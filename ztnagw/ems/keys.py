# -*- test-case-name: tests.ems.test_keys -*-
"""
Which keys the EMS role accepts, and reading key and certificate files.

One key policy serves every place a key enters the EMS role: a device's
certificate signing request, an operator's own CA (C{fctems}
C{ca-certificate}), a gateway certificate's key on disk.  Keeping it in one
module means a key that is refused in one place cannot slip in through
another.

The policy: RSA of 2048 to 8192 bits with an odd public exponent of at
least 65537 (as the CA/Browser Forum requires), or ECDSA on P-256, P-384 or
P-521.  Everything else is refused:

  - DSA: withdrawn from FIPS 186-5, unsupported by browsers and TLS 1.3.
  - Ed25519 and Ed448: sound algorithms, but browsers cannot present them
    as TLS client certificates, and the device certificate must work in a
    browser (the HTTPS access proxy) as well as in the forwarder.  A key
    that works in one and not the other would be a support trap.
  - other curves (P-192, P-224, secp256k1, brainpool): not offered by
    TLS 1.3 clients, or too weak.

The file readers here block; callers run them before the reactor starts
(daemon start-up) or in the admin command.
"""

from __future__ import annotations

from typing import Union

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

from ztnagw.keyfiles import privateFileProblem

#: Private keys the EMS role signs with or hands to TLS.
PrivateKey = Union[ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey]

#: Public keys the EMS role certifies.
PublicKey = Union[ec.EllipticCurvePublicKey, rsa.RSAPublicKey]

#: Accepted elliptic curves: OpenSSL name to the name people know.
ACCEPTED_CURVES = {
    "secp256r1": "P-256",
    "secp384r1": "P-384",
    "secp521r1": "P-521",
}

#: Smallest accepted RSA modulus, in bits.
MIN_RSA_BITS = 2048

#: Largest accepted RSA modulus, in bits: bigger keys only cost CPU time on
#: every handshake and open the door to a cheap denial of service.
MAX_RSA_BITS = 8192

#: Smallest accepted RSA public exponent (CA/Browser Forum baseline
#: requirements, 6.1.6).
MIN_RSA_EXPONENT = 2**16 + 1

#: Largest file a key or certificate is read from: such files are a few
#: kilobytes; anything near this size is not one.
MAX_FILE_SIZE = 1024 * 1024

_CURVE_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "secp256r1": hashes.SHA256,
    "secp384r1": hashes.SHA384,
    "secp521r1": hashes.SHA512,
}


class KeyMaterialError(Exception):
    """
    A key or certificate cannot be used.  The message says which file or
    object, why, and what to do; it never contains key material.
    """


def describeKey(key: object) -> str:
    """
    Name a public or private key's algorithm and size for people, such as
    C{"EC P-256"} or C{"RSA 2048"}.
    """
    if isinstance(key, (ec.EllipticCurvePublicKey, ec.EllipticCurvePrivateKey)):
        name = key.curve.name
        return f"EC {ACCEPTED_CURVES.get(name, name)}"
    if isinstance(key, (rsa.RSAPublicKey, rsa.RSAPrivateKey)):
        return f"RSA {key.key_size}"
    if isinstance(key, (dsa.DSAPublicKey, dsa.DSAPrivateKey)):
        return f"DSA {key.key_size}"
    if isinstance(key, (ed25519.Ed25519PublicKey, ed25519.Ed25519PrivateKey)):
        return "Ed25519"
    if isinstance(key, (ed448.Ed448PublicKey, ed448.Ed448PrivateKey)):
        return "Ed448"
    return type(key).__name__


def publicKeyProblem(publicKey: object) -> str | None:
    """
    Why the EMS role refuses C{publicKey}, or C{None} if it is accepted.

    @param publicKey: any public key object from C{cryptography}.
    @return: one sentence naming the key and what is accepted instead.
    """
    accepted = (
        f"use EC P-256 (recommended), P-384 or P-521, or RSA of "
        f"{MIN_RSA_BITS} to {MAX_RSA_BITS} bits"
    )
    if isinstance(publicKey, ec.EllipticCurvePublicKey):
        if publicKey.curve.name not in ACCEPTED_CURVES:
            return (
                f"the elliptic curve {publicKey.curve.name} is not accepted; "
                + accepted
            )
        return None
    if isinstance(publicKey, rsa.RSAPublicKey):
        if publicKey.key_size < MIN_RSA_BITS:
            return f"an RSA key of {publicKey.key_size} bits is too weak; " + accepted
        if publicKey.key_size > MAX_RSA_BITS:
            return f"an RSA key of {publicKey.key_size} bits is too large; " + accepted
        exponent = publicKey.public_numbers().e
        if exponent % 2 == 0 or exponent < MIN_RSA_EXPONENT:
            return (
                f"an RSA public exponent of {exponent} is not accepted; use " f"65537"
            )
        return None
    if isinstance(publicKey, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
        return (
            f"{describeKey(publicKey)} keys are not accepted: browsers cannot "
            f"use them for TLS client certificates; " + accepted
        )
    return f"{describeKey(publicKey)} keys are not accepted; " + accepted


def newPrivateKey() -> ec.EllipticCurvePrivateKey:
    """
    A new key for a certificate the EMS role creates (its CA, a gateway
    certificate): EC P-256.

    P-256 because every device handshake verifies a signature made with it,
    and P-256 verification costs a fifth of P-384's (80 against 390
    microseconds measured with the bundled OpenSSL 4.0), while giving the
    same 128-bit strength as the TLS session it protects.
    """
    return ec.generate_private_key(ec.SECP256R1())


def signatureHash(privateKey: PrivateKey) -> hashes.HashAlgorithm:
    """
    The digest to sign with C{privateKey}: matched to the curve's strength
    for EC keys (RFC 5480), SHA-256 for RSA.
    """
    if isinstance(privateKey, ec.EllipticCurvePrivateKey):
        return _CURVE_HASHES[privateKey.curve.name]()
    return hashes.SHA256()


def publicKeyBytes(publicKey: PublicKey) -> bytes:
    """
    The DER SubjectPublicKeyInfo of C{publicKey}: what a private key and a
    certificate must share to be a pair.
    """
    return publicKey.public_bytes(
        serialization.Encoding.DER,
        serialization.PublicFormat.SubjectPublicKeyInfo,
    )


def keyMatchesCertificate(
    privateKey: PrivateKey, certificate: x509.Certificate
) -> bool:
    """
    Whether C{certificate} certifies C{privateKey}'s public half.
    """
    try:
        certified = certificate.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return False
    return publicKeyBytes(privateKey.public_key()) == publicKeyBytes(
        certified  # type: ignore[arg-type]
    )


def privateKeyPem(privateKey: PrivateKey) -> bytes:
    """
    Serialise a private key for a file: unencrypted PKCS#8 PEM.

    Unencrypted because the daemon starts unattended; the file's mode (0600,
    see L{ztnagw.keyfiles}) is what protects it.
    """
    return privateKey.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def certificatePem(certificate: x509.Certificate) -> bytes:
    """
    Serialise a certificate for a file or a client: PEM.
    """
    return certificate.public_bytes(serialization.Encoding.PEM)


def fingerprint(certificate: x509.Certificate) -> str:
    """
    A certificate's SHA-256 fingerprint as C{openssl x509 -fingerprint
    -sha256} prints it (upper-case hex pairs joined by colons), so that an
    operator can compare the two.
    """
    return ":".join(f"{b:02X}" for b in certificate.fingerprint(hashes.SHA256()))


def _readSmallFile(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_SIZE + 1)
    except OSError as e:
        raise KeyMaterialError(f"cannot read {what} {path}: {e.strerror}") from None
    if len(data) > MAX_FILE_SIZE:
        raise KeyMaterialError(
            f"{what} {path} is larger than {MAX_FILE_SIZE} bytes; it is not a "
            f"PEM file"
        )
    return data


def readCertificateFile(path: str, what: str = "certificate") -> x509.Certificate:
    """
    Read one PEM certificate from C{path}.

    @param what: how messages name the file (C{"EMS CA certificate"}).
    @raise KeyMaterialError: the file cannot be read, holds no certificate,
        or holds more than one.
    """
    data = _readSmallFile(path, what)
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise KeyMaterialError(
            f"{what} {path} does not hold a PEM certificate"
        ) from None
    if len(certificates) != 1:
        raise KeyMaterialError(
            f"{what} {path} holds {len(certificates)} certificates; it must "
            f"hold exactly one"
        )
    return certificates[0]


def readPrivateKeyFile(path: str, what: str = "private key") -> PrivateKey:
    """
    Read an unencrypted PEM private key from C{path}, refusing a file that
    other users can access.

    @param what: how messages name the file (C{"EMS CA key"}).
    @raise KeyMaterialError: the file is accessible by others (the message
        gives the C{chmod} to run), cannot be read, is not an unencrypted
        PEM private key, or holds a key the EMS role does not accept.
    """
    try:
        problem = privateFileProblem(path)
    except OSError as e:
        raise KeyMaterialError(f"cannot read {what} {path}: {e.strerror}") from None
    if problem is not None:
        raise KeyMaterialError(f"refusing {what}: {problem}")
    data = _readSmallFile(path, what)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise KeyMaterialError(
            f"{what} {path} is encrypted; ztnagw starts unattended and needs "
            f"it unencrypted (protected by mode 0600): (umask 077; openssl "
            f"pkey -in {path} -out {path}.new) && mv {path}.new {path}"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise KeyMaterialError(
            f"{what} {path} does not hold a PEM private key"
        ) from None
    problem = publicKeyProblem(key.public_key())
    if problem is not None:
        raise KeyMaterialError(f"{what} {path}: {problem}")
    return key  # type: ignore[return-value]
