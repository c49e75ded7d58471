# -*- test-case-name: tests.tls.test_posture -*-
"""
The TLS posture every ztnagw context shares, in one place.

Servers (access-proxy VIPs, the EMS API) and clients (the forwarder, the
gateway towards real servers) all start from L{hardenedContext}: Twisted's
own hardening (C{CertificateOptions}: no SSLv2/compression, server cipher
preference, single-use ECDH keys, session cache and tickets off, release of
idle buffers) plus what ztnagw adds: a version range that follows FortiOS's
C{ssl-min-version}/C{ssl-max-version}, forward-secret AEAD suites only for
TLS 1.2, and no renegotiation.  Keeping it here means a posture change is
one edit, and L{tests.tls.test_posture} checks it against real clients.
"""

from __future__ import annotations

import enum

from OpenSSL import SSL
from twisted.internet.ssl import AcceptableCiphers, CertificateOptions
from twisted.internet.ssl import TLSVersion as TwistedTLSVersion


class TLSVersion(enum.Enum):
    """
    A TLS protocol version, spelled as FortiOS spells it in
    C{ssl-min-version} and C{ssl-max-version}.
    """

    TLS_1_0 = "tls-1.0"
    TLS_1_1 = "tls-1.1"
    TLS_1_2 = "tls-1.2"
    TLS_1_3 = "tls-1.3"

    @classmethod
    def fromConfig(cls, text: str) -> TLSVersion:
        """
        Parse a FortiOS version name.

        @raise ValueError: C{text} names no TLS version; the message lists
            the valid names.
        """
        for version in cls:
            if version.value == text:
                return version
        valid = ", ".join(v.value for v in cls)
        raise ValueError(f"unknown TLS version {text!r} (expected one of {valid})")

    @property
    def legacy(self) -> bool:
        """
        Whether this version predates TLS 1.2 (no AEAD suites, SHA-1 in the
        handshake).
        """
        return self in (TLSVersion.TLS_1_0, TLSVersion.TLS_1_1)

    @property
    def _order(self) -> int:
        return list(TLSVersion).index(self)

    def __lt__(self, other: TLSVersion) -> bool:
        return self._order < other._order

    def __le__(self, other: TLSVersion) -> bool:
        return self._order <= other._order


_OPENSSL_VERSIONS = {
    TLSVersion.TLS_1_0: SSL.TLS1_VERSION,
    TLSVersion.TLS_1_1: SSL.TLS1_1_VERSION,
    TLSVersion.TLS_1_2: SSL.TLS1_2_VERSION,
    TLSVersion.TLS_1_3: SSL.TLS1_3_VERSION,
}

_TWISTED_VERSIONS = {
    TLSVersion.TLS_1_0: TwistedTLSVersion.TLSv1_0,
    TLSVersion.TLS_1_1: TwistedTLSVersion.TLSv1_1,
    TLSVersion.TLS_1_2: TwistedTLSVersion.TLSv1_2,
    TLSVersion.TLS_1_3: TwistedTLSVersion.TLSv1_3,
}

#: The default lowest version: TLS 1.2, stricter than FortiOS's tls-1.1.
DEFAULT_MINIMUM = TLSVersion.TLS_1_2

#: The default highest version.
DEFAULT_MAXIMUM = TLSVersion.TLS_1_3

#: TLS 1.2 suites: ephemeral ECDH (forward secrecy) with an AEAD cipher.
#: Nothing else: no RSA key exchange, no CBC, no finite-field DH.
AEAD_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL"

#: TLS 1.3 suites (all are forward-secret AEAD), listed for determinism.
TLS13_CIPHERSUITES = (
    "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256"
)

#: What an administrator who sets a minimum of tls-1.0 or tls-1.1 gets in
#: addition: TLS 1.0 and 1.1 have no AEAD suite, so ephemeral-ECDH
#: AES-CBC-SHA1 suites are added; and OpenSSL 3 and later refuse those
#: versions above security level 0, so the level is lowered for this
#: context.  Both costs are documented in C{docs/tls.md}.
LEGACY_CIPHERS = AEAD_CIPHERS + ":ECDHE+AES+SHA1:@SECLEVEL=0"

#: OpenSSL's C{SSL_MODE_ENABLE_PARTIAL_WRITE} (C{ssl.h}), which pyOpenSSL
#: sets on every context but exports no name for.
MODE_ENABLE_PARTIAL_WRITE = 0x1

#: The only application protocol we speak over TLS: HTTP/2 has no Upgrade
#: and would break the tunnel and the per-request certificate lookup.
ALPN_HTTP11 = b"http/1.1"


class TLSConfigurationError(ValueError):
    """
    A TLS setting cannot be honoured (versions in the wrong order, a key
    that does not match its certificate...).  The message says which.
    """


def hardenedContext(
    minimum: TLSVersion = DEFAULT_MINIMUM, maximum: TLSVersion = DEFAULT_MAXIMUM
) -> SSL.Context:
    """
    A new, unused context with ztnagw's posture and nothing else: no
    certificate, no trust store, no verification (callers add those).

    @param minimum: the lowest TLS version to accept.
    @param maximum: the highest TLS version to accept.
    @raise TLSConfigurationError: C{minimum} is above C{maximum}.
    """
    if maximum < minimum:
        raise TLSConfigurationError(
            f"ssl-min-version {minimum.value} is above ssl-max-version "
            f"{maximum.value}"
        )
    versions: dict[str, object] = {}
    if minimum < DEFAULT_MINIMUM:
        versions["insecurelyLowerMinimumTo"] = _TWISTED_VERSIONS[minimum]
    else:
        versions["raiseMinimumTo"] = _TWISTED_VERSIONS[minimum]
    if maximum < TLSVersion.TLS_1_3:
        versions["lowerMaximumSecurityTo"] = _TWISTED_VERSIONS[maximum]
    options = CertificateOptions(
        acceptableCiphers=AcceptableCiphers.fromOpenSSLCipherString(AEAD_CIPHERS),
        enableSessions=False,
        enableSessionTickets=False,
        **versions,  # type: ignore[arg-type]
    )
    # getContext() builds a fresh context for this options object; it stays
    # mutable until a Connection is made from it.
    context = options.getContext()
    context.set_min_proto_version(_OPENSSL_VERSIONS[minimum])
    context.set_max_proto_version(_OPENSSL_VERSIONS[maximum])
    context.set_options(SSL.OP_NO_RENEGOTIATION | SSL.OP_NO_COMPRESSION)
    context.set_mode(SSL.MODE_RELEASE_BUFFERS)
    # pyOpenSSL turns partial writes on: SSL_write would then return after
    # each 16 KiB record.  Our transports write into memory BIOs, which
    # never refuse bytes, so a whole buffer is encrypted in one call
    # (ztnagw.tls.transport.TLSProtocol._write).
    context.clear_mode(MODE_ENABLE_PARTIAL_WRITE)
    ciphers = LEGACY_CIPHERS if minimum.legacy else AEAD_CIPHERS
    context.set_cipher_list(ciphers.encode("ascii"))
    context.set_tls13_ciphersuites(TLS13_CIPHERSUITES.encode("ascii"))
    return context
