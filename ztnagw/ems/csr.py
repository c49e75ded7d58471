# -*- test-case-name: tests.ems.test_csr -*-
"""
Certificate signing requests from devices: parsed strictly, checked, and
reduced to the one thing the EMS role takes from them, the public key.

A CSR arrives from an unauthenticated (or merely token-holding) client, so
everything in it is hostile until checked.  This module is the only way a
CSR reaches L{ztnagw.ems.signing.issueDeviceCertificate}: it bounds the
size, accepts exactly one request in PEM or DER, checks the self-signature
(proof that the client holds the private key), and applies the key policy
of L{ztnagw.ems.keys}.  Every failure is a L{SigningRequestRejected} whose
message can be shown to the client; no other exception escapes, whatever
the bytes.

Nothing else in the request is used: the EMS assigns the subject (the UID),
and requested extensions (subject alternative names, key usages, basic
constraints...) are ignored, so a client cannot ask its way into a CA
certificate or a server name.
"""

from __future__ import annotations

import base64
import binascii
import re

from attrs import frozen
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.x509 import InvalidVersion

from ztnagw.ems.keys import PublicKey, describeKey, publicKeyProblem

#: Largest CSR accepted, in bytes.  An RSA 8192 request in PEM is about
#: 3.5 KiB; anything much bigger is not a CSR we would sign.
MAX_REQUEST_SIZE = 16 * 1024

#: Digests accepted for the request's self-signature.
ACCEPTED_SIGNATURE_HASHES = frozenset({"sha256", "sha384", "sha512"})

_PEM_LABELS = (b"CERTIFICATE REQUEST", b"NEW CERTIFICATE REQUEST")

_PEM_BLOCK = re.compile(
    rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.DOTALL
)


class SigningRequestRejected(Exception):
    """
    A certificate signing request was refused.

    @ivar message: why, in one sentence that can be shown to the client
        that sent it.
    """

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@frozen
class SigningRequest:
    """
    A CSR that passed every check of L{parseCertificateSigningRequest}.

    @ivar publicKey: the key to certify; its holder signed the request.
    @ivar keyDescription: the key's algorithm and size (C{"EC P-256"}), for
        logs.
    @ivar der: the request as received, in DER, for the record.
    """

    publicKey: PublicKey
    keyDescription: str
    der: bytes


def parseCertificateSigningRequest(data: bytes) -> SigningRequest:
    """
    Parse and check a certificate signing request.

    @param data: one PKCS#10 request, either PEM (one C{CERTIFICATE
        REQUEST} block and nothing but white space around it) or DER.
    @return: the checked request.
    @raise SigningRequestRejected: the data is empty or larger than
        L{MAX_REQUEST_SIZE}; is not one PEM or DER request; its signature
        does not verify (tampered, or the sender does not hold the key); it
        is signed with a weak digest; its key is not accepted (see
        L{ztnagw.ems.keys.publicKeyProblem}).
    @raise TypeError: C{data} is not C{bytes}.
    """
    if not isinstance(data, bytes):
        raise TypeError(f"a CSR is bytes, not {type(data).__name__}")
    if len(data) > MAX_REQUEST_SIZE:
        raise SigningRequestRejected(
            f"the certificate signing request is {len(data)} bytes; at most "
            f"{MAX_REQUEST_SIZE} are accepted"
        )
    if not data.strip():
        raise SigningRequestRejected("the certificate signing request is empty")
    if b"-----BEGIN " in data:
        der = _derFromPem(data)
    elif data[:1] == b"\x30":
        der = data
    else:
        raise SigningRequestRejected(
            "the certificate signing request is neither PEM nor DER"
        )
    try:
        request = x509.load_der_x509_csr(der)
    except (ValueError, InvalidVersion):
        raise SigningRequestRejected(
            "the data is not a well-formed certificate signing request"
        ) from None
    return _check(request, der)


def _derFromPem(data: bytes) -> bytes:
    blocks = data.count(b"-----BEGIN ")
    if blocks != 1:
        raise SigningRequestRejected(
            f"the data holds {blocks} PEM blocks; send exactly one "
            f"certificate signing request"
        )
    match = _PEM_BLOCK.search(data)
    if match is None:
        raise SigningRequestRejected("the PEM data is malformed (no matching END line)")
    if match.group(1) not in _PEM_LABELS:
        raise SigningRequestRejected(
            f"the PEM block is a {match.group(1).decode('ascii')}, not a "
            f"CERTIFICATE REQUEST"
        )
    if data[: match.start()].strip() or data[match.end() :].strip():
        raise SigningRequestRejected(
            "the PEM data has text around the CERTIFICATE REQUEST block; send "
            "the block alone"
        )
    body = b"".join(match.group(2).split())
    try:
        der = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise SigningRequestRejected("the PEM block is not valid base64") from None
    if not der:
        raise SigningRequestRejected("the PEM block is empty")
    return der


def _check(request: x509.CertificateSigningRequest, der: bytes) -> SigningRequest:
    # Every accessor below parses lazily and may raise on hostile input;
    # each failure becomes a rejection, never another exception.
    try:
        publicKey = request.public_key()
    except (ValueError, UnsupportedAlgorithm):
        raise SigningRequestRejected(
            "the request's public key is of an unsupported type or malformed"
        ) from None
    problem = publicKeyProblem(publicKey)
    if problem is not None:
        raise SigningRequestRejected(problem)
    try:
        digest = request.signature_hash_algorithm
    except (ValueError, UnsupportedAlgorithm):
        raise SigningRequestRejected(
            "the request is signed with an unsupported algorithm"
        ) from None
    if digest is None or digest.name not in ACCEPTED_SIGNATURE_HASHES:
        name = "no digest" if digest is None else digest.name.upper()
        raise SigningRequestRejected(
            f"the request is signed with {name}; sign it with SHA-256 or " f"stronger"
        )
    try:
        valid = request.is_signature_valid
    except (ValueError, UnsupportedAlgorithm):
        valid = False
    if not valid:
        raise SigningRequestRejected(
            "the request's signature does not verify: it was altered, or not "
            "signed with the key it carries"
        )
    return SigningRequest(
        publicKey=publicKey,  # type: ignore[arg-type]
        keyDescription=describeKey(publicKey),
        der=der,
    )
