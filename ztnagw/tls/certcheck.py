# -*- test-case-name: tests.tls.test_certcheck -*-
"""
What is wrong with a client certificate, in words an administrator reads.

OpenSSL reports chain problems as numbered verify errors, one per call of
the verify callback, and does not check everything a device certificate
must satisfy (it accepts a certificate without any extended key usage, a CA
certificate as a leaf, a chain through an intermediate).  This module turns
the errors the callback saw plus ztnagw's own checks of the leaf into one
short reason, chosen by a fixed precedence so the same certificate always
gets the same reason.  It is pure: the TLS layer feeds it, tests feed it
directly.
"""

from __future__ import annotations

from typing import Iterable

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from OpenSSL.SSL import X509VerificationCodes as Codes

from ztnagw.device import CN_NOT_UID, NOT_EMS_ISSUED, subjectUid

INTERMEDIATE = "chain through an intermediate CA"
BAD_SIGNATURE = "signature does not verify"
BAD_ISSUER = "issuing certificate is not a valid CA"
ISSUER_NOT_CLIENT_AUTH = "issuing CA is not valid for client authentication"
WEAK = "key or signature algorithm is too weak or unsupported"
EXPIRED = "certificate has expired"
NOT_YET_VALID = "certificate is not yet valid"
BAD_DATES = "certificate validity dates are malformed"
NO_CLIENT_AUTH = "certificate lacks the clientAuth extended key usage"
LEAF_IS_CA = "certificate is a CA certificate"
CRITICAL_EXTENSION = "certificate has an unsupported critical extension"
REVOKED_BY_CRL = "certificate is revoked"
INTERNAL_ERROR = "certificate could not be checked (internal error)"

#: Reasons in order of precedence: when several apply, the first wins.
#: Trust comes first (a certificate from elsewhere is "not ours", whatever
#: else is wrong with it), then structure, then time, then usage, then the
#: name.
PRECEDENCE: tuple[str, ...] = (
    INTERNAL_ERROR,
    NOT_EMS_ISSUED,
    INTERMEDIATE,
    BAD_SIGNATURE,
    BAD_ISSUER,
    ISSUER_NOT_CLIENT_AUTH,
    WEAK,
    REVOKED_BY_CRL,
    EXPIRED,
    NOT_YET_VALID,
    BAD_DATES,
    NO_CLIENT_AUTH,
    LEAF_IS_CA,
    CRITICAL_EXTENSION,
    CN_NOT_UID,
)

_NOT_OURS = {
    Codes.ERR_UNABLE_TO_GET_ISSUER_CERT,
    Codes.ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
    Codes.ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE,
    Codes.ERR_DEPTH_ZERO_SELF_SIGNED_CERT,
    Codes.ERR_SELF_SIGNED_CERT_IN_CHAIN,
    Codes.ERR_CERT_UNTRUSTED,
    Codes.ERR_CERT_REJECTED,
    Codes.ERR_SUBJECT_ISSUER_MISMATCH,
    Codes.ERR_AKID_SKID_MISMATCH,
    Codes.ERR_AKID_ISSUER_SERIAL_MISMATCH,
}

# OpenSSL verify errors that pyOpenSSL's X509VerificationCodes does not
# name (x509_vfy.h, OpenSSL 3.0 and later).
_EE_KEY_TOO_SMALL = 66
_CA_KEY_TOO_SMALL = 67
_CA_MD_TOO_WEAK = 68
_UNSUPPORTED_SIGNATURE_ALGORITHM = 76
_SIGNATURE_ALGORITHM_MISMATCH = 77
_EC_KEY_EXPLICIT_PARAMS = 94

_BY_CODE: dict[int, str] = {
    **{code: NOT_EMS_ISSUED for code in _NOT_OURS},
    Codes.ERR_CERT_CHAIN_TOO_LONG: INTERMEDIATE,
    Codes.ERR_PATH_LENGTH_EXCEEDED: INTERMEDIATE,
    Codes.ERR_UNABLE_TO_DECRYPT_CERT_SIGNATURE: BAD_SIGNATURE,
    Codes.ERR_UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY: BAD_SIGNATURE,
    Codes.ERR_CERT_SIGNATURE_FAILURE: BAD_SIGNATURE,
    Codes.ERR_INVALID_CA: BAD_ISSUER,
    Codes.ERR_KEYUSAGE_NO_CERTSIGN: BAD_ISSUER,
    Codes.ERR_INVALID_NON_CA: BAD_ISSUER,
    _EE_KEY_TOO_SMALL: WEAK,
    _CA_KEY_TOO_SMALL: WEAK,
    _CA_MD_TOO_WEAK: WEAK,
    _UNSUPPORTED_SIGNATURE_ALGORITHM: WEAK,
    _SIGNATURE_ALGORITHM_MISMATCH: WEAK,
    _EC_KEY_EXPLICIT_PARAMS: WEAK,
    Codes.ERR_CERT_REVOKED: REVOKED_BY_CRL,
    Codes.ERR_CERT_HAS_EXPIRED: EXPIRED,
    Codes.ERR_CERT_NOT_YET_VALID: NOT_YET_VALID,
    Codes.ERR_ERROR_IN_CERT_NOT_BEFORE_FIELD: BAD_DATES,
    Codes.ERR_ERROR_IN_CERT_NOT_AFTER_FIELD: BAD_DATES,
    Codes.ERR_UNHANDLED_CRITICAL_EXTENSION: CRITICAL_EXTENSION,
}


_NAMES: dict[int, str] = {
    value: name
    for name, value in vars(Codes).items()
    if name.startswith("ERR_") and isinstance(value, int)
}


def verifyErrorProblem(errno: int, depth: int) -> str:
    """
    The reason for one OpenSSL verify error.

    @param errno: the C{X509_V_ERR_*} number the verify callback received.
    @param depth: where in the chain (0 is the client's own certificate).
    @return: a reason from L{PRECEDENCE}, or, for an error this module
        does not know, a reason naming the error so an administrator can
        look it up.
    """
    if errno == Codes.ERR_INVALID_PURPOSE:
        return NO_CLIENT_AUTH if depth == 0 else ISSUER_NOT_CLIENT_AUTH
    if errno in (Codes.ERR_CERT_HAS_EXPIRED, Codes.ERR_CERT_NOT_YET_VALID) and depth:
        # The EMS CA itself is outside its validity period: still not a
        # certificate we can trust, but say which certificate is at fault.
        return BAD_ISSUER
    known = _BY_CODE.get(errno)
    if known is not None:
        return known
    name = _NAMES.get(errno, "unknown")
    return f"certificate does not verify (OpenSSL verify error {errno}, {name})"


def leafProblems(leaf: x509.Certificate) -> list[str]:
    """
    What is wrong with a device certificate itself, whatever the chain.

    A device certificate must carry an extended key usage that includes
    clientAuth (a certificate with no extended key usage at all is refused:
    OpenSSL would accept it for any purpose, and every certificate our EMS
    issues has one), must not be a CA certificate, and must name exactly
    one UID as its subject CN.

    @return: the reasons, possibly none.
    """
    problems: list[str] = []
    try:
        usage = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound:
        problems.append(NO_CLIENT_AUTH)
    else:
        if ExtendedKeyUsageOID.CLIENT_AUTH not in usage.value:
            problems.append(NO_CLIENT_AUTH)
    try:
        constraints = leaf.extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        pass
    else:
        if constraints.value.ca:
            problems.append(LEAF_IS_CA)
    if subjectUid(leaf) is None:
        problems.append(CN_NOT_UID)
    return problems


def certificateProblem(
    leaf: x509.Certificate,
    verifyErrors: Iterable[tuple[int, int]],
    chainDepth: int,
    issuedByEms: bool,
) -> str | None:
    """
    The one reason a presented certificate is not a valid device
    certificate, or C{None}.

    @param leaf: the client's certificate.
    @param verifyErrors: C{(depth, errno)} of every error OpenSSL reported.
    @param chainDepth: the deepest chain position the callback saw (1 for
        the expected leaf + EMS CA).
    @param issuedByEms: whether the certificate at depth 1 is one of the
        configured EMS CAs.
    """
    problems = [verifyErrorProblem(errno, depth) for depth, errno in verifyErrors]
    if chainDepth > 1:
        problems.append(INTERMEDIATE)
    elif not issuedByEms:
        problems.append(NOT_EMS_ISSUED)
    problems.extend(leafProblems(leaf))
    if not problems:
        return None
    # Ties between unknown errors are broken by text, so the answer never
    # depends on the order OpenSSL reported them in.
    return min(problems, key=lambda p: (_rank(p), p))


def _rank(problem: str) -> int:
    try:
        return PRECEDENCE.index(problem)
    except ValueError:
        # Unknown OpenSSL errors rank after everything we can name.
        return len(PRECEDENCE)
