# -*- test-case-name: tests.tls.test_client -*-
"""
TLS client connection creators: how ztnagw decides that a server is the
right one.

Three callers, three ways of knowing:

  - The forwarder and its agent talk to the gateway with the device
    certificate, and check the gateway's certificate against the CA file of
    their profile and the gateway's name (L{deviceClientCreator}).
  - Enrollment happens before the device has a profile: the user is given
    the SHA-256 of the gateway's public key (its SubjectPublicKeyInfo, so
    the pin survives a certificate renewal that keeps the key) and
    L{pinnedClientCreator} accepts exactly that key.  There is no
    "trust anything" mode.
  - The gateway talks to real servers (C{verify-cert enable}) with the
    configured CA certificates and the real server's expected name, or, for
    C{verify-cert disable}, with encryption but no verification
    (L{realServerCreator}).  Creating a creator builds an OpenSSL context,
    which is expensive (Twisted #9138 doubled throughput by caching them),
    so L{ClientCreatorCache} keeps them.

A refused server certificate fails the connection with
L{ServerCertificateRejected}, whose message says what was wrong.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from collections import OrderedDict
from typing import Callable, Sequence

from attrs import field, frozen
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from OpenSSL import SSL, crypto
from OpenSSL.SSL import X509VerificationCodes as Codes
from service_identity.cryptography import (
    verify_certificate_hostname,
    verify_certificate_ip_address,
)
from service_identity.exceptions import CertificateError, VerificationError
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ztnagw.tls.certcheck import verifyErrorProblem
from ztnagw.tls.posture import (
    ALPN_HTTP11,
    DEFAULT_MAXIMUM,
    DEFAULT_MINIMUM,
    TLSConfigurationError,
    TLSVersion,
    hardenedContext,
)

log = Logger()


class ServerCertificateRejected(Exception):
    """
    The server's certificate is not the one expected; the message says why.
    """


def spkiFingerprint(certificate: x509.Certificate) -> bytes:
    """
    The SHA-256 digest of a certificate's SubjectPublicKeyInfo (DER): what
    a pin names.
    """
    spki = certificate.public_key().public_bytes(
        Encoding.DER, PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).digest()


def formatPin(digest: bytes) -> str:
    """
    Spell a pin the way ztnagw prints it: C{sha256:} and 64 lower-case hex
    digits.
    """
    if len(digest) != 32:
        raise ValueError("a pin is a 32-byte SHA-256 digest")
    return "sha256:" + digest.hex()


_PIN = re.compile(r"\A(?:sha256[:/])?((?:[0-9a-f]{2}:?){31}[0-9a-f]{2})\Z", re.I)


def parsePin(text: str) -> bytes:
    """
    Read a pin given by a user: 64 hex digits, optionally prefixed with
    C{sha256:} and optionally with colons between bytes (as C{openssl}
    prints fingerprints), in any case.

    @return: the 32-byte digest.
    @raise ValueError: C{text} is not a pin; the message shows the form.
    """
    match = _PIN.match(text.strip())
    if match is None:
        raise ValueError(
            f"{text!r} is not a public key pin; expected sha256: followed by "
            "64 hex digits"
        )
    digits = match.group(1).replace(":", "")
    if len(digits) != 64:
        raise ValueError(f"{text!r} is not a public key pin: wrong length")
    return bytes.fromhex(digits)


def _isAddress(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _checkName(name: str) -> str:
    if not isinstance(name, str) or not name or name != name.strip():
        raise TLSConfigurationError(f"{name!r} is not a server name")
    if _isAddress(name):
        return name
    try:
        return name.encode("idna").decode("ascii")
    except UnicodeError as e:
        raise TLSConfigurationError(f"{name!r} is not a server name: {e}") from e


#: Verify errors that only say "no trust anchor": what a pin replaces.
_UNANCHORED = {
    Codes.ERR_UNABLE_TO_GET_ISSUER_CERT,
    Codes.ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
    Codes.ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE,
    Codes.ERR_DEPTH_ZERO_SELF_SIGNED_CERT,
    Codes.ERR_SELF_SIGNED_CERT_IN_CHAIN,
    Codes.ERR_CERT_UNTRUSTED,
}

#: Decides a verify callback call: given the leaf (at depth 0) or None, the
#: errno, depth and OpenSSL's opinion, return None to accept or a reason.
_Judge = Callable[[x509.Certificate | None, int, int, bool], "str | None"]


@implementer(IOpenSSLClientConnectionCreator)
class _ClientCreator:
    """
    The client side of TLS connections to one server name, with one way of
    judging its certificate.  Connections share one context; everything
    per-connection (SNI, ALPN, verify callback) is set on the connection.
    """

    def __init__(
        self,
        context: SSL.Context,
        serverName: str,
        judge: _Judge | None,
        alpn: Sequence[bytes],
    ) -> None:
        self._context = context
        self._serverName = serverName
        self._judge = judge
        self._alpn = list(alpn)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} for {self._serverName}>"

    def clientConnectionForTLS(self, tlsProtocol: object) -> SSL.Connection:
        """
        Make the OpenSSL connection for one TLS connection.
        """
        connection = SSL.Connection(self._context, None)
        if not _isAddress(self._serverName):
            # SNI carries host names only (RFC 6066).
            connection.set_tlsext_host_name(self._serverName.encode("ascii"))
        if self._alpn:
            connection.set_alpn_protos(self._alpn)
        if self._judge is None:
            connection.set_verify(SSL.VERIFY_NONE)
        else:
            connection.set_verify(
                SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT,
                self._verifyCallback(tlsProtocol, self._judge),
            )
        return connection

    def _verifyCallback(
        self, tlsProtocol: object, judge: _Judge
    ) -> Callable[..., bool]:
        protocol: object | None = tlsProtocol

        def verifyCallback(
            connection: SSL.Connection,
            certificate: crypto.X509,
            errno: int,
            depth: int,
            ok: int,
        ) -> bool:
            nonlocal protocol
            try:
                leaf = certificate.to_cryptography() if depth == 0 else None
                reason = judge(leaf, errno, depth, bool(ok))
            except Exception:
                log.failure(
                    "while verifying the certificate of {name}", name=self._serverName
                )
                reason = "internal error while verifying the certificate"
            if reason is None:
                return True
            if protocol is not None:
                # Give the application a reason it can print; then let
                # OpenSSL fail the handshake with an alert.
                failVerification = getattr(protocol, "failVerification")
                protocol = None
                failVerification(
                    Failure(
                        ServerCertificateRejected(
                            f"the certificate of {self._serverName} is refused: "
                            f"{reason}"
                        )
                    )
                )
            return False

        return verifyCallback


def _identityJudge(serverName: str) -> _Judge:
    """
    Accept what OpenSSL accepts against the trust store, then require the
    leaf to name C{serverName} (DNS name or IP address, per RFC 6125).
    """
    byAddress = _isAddress(serverName)

    def judge(
        leaf: x509.Certificate | None, errno: int, depth: int, ok: bool
    ) -> str | None:
        if not ok:
            return _serverProblem(errno, depth)
        if leaf is None:
            return None
        try:
            if byAddress:
                verify_certificate_ip_address(leaf, serverName)
            else:
                verify_certificate_hostname(leaf, serverName)
        except (VerificationError, CertificateError) as e:
            return f"it is not valid for {serverName} ({e})"
        return None

    return judge


def _pinJudge(pin: bytes) -> _Judge:
    """
    Accept a leaf whose public key has the pinned SHA-256, with or without
    a trust anchor; everything else about the leaf must still be right
    (dates, signature, usage).  The rest of the chain is not trusted and so
    not judged.
    """

    def judge(
        leaf: x509.Certificate | None, errno: int, depth: int, ok: bool
    ) -> str | None:
        if depth > 0:
            return None
        if not ok and errno not in _UNANCHORED:
            return _serverProblem(errno, depth)
        assert leaf is not None
        if not hmac.compare_digest(spkiFingerprint(leaf), pin):
            return (
                f"its public key {formatPin(spkiFingerprint(leaf))} is not the "
                f"pinned {formatPin(pin)}"
            )
        return None

    return judge


def _serverProblem(errno: int, depth: int) -> str:
    # certcheck speaks of client certificates; say "not trusted" here.
    if errno in _UNANCHORED:
        return "it is not issued by a trusted CA"
    return verifyErrorProblem(errno, depth)


def _clientContext(
    minimum: TLSVersion,
    maximum: TLSVersion,
    trusted: Sequence[x509.Certificate],
    certificate: x509.Certificate | None,
    key: CertificateIssuerPrivateKeyTypes | None,
) -> SSL.Context:
    context = hardenedContext(minimum, maximum)
    if (certificate is None) != (key is None):
        raise TLSConfigurationError(
            "give both a client certificate and its key, or neither"
        )
    if certificate is not None:
        try:
            context.use_certificate(certificate)
            context.use_privatekey(key)  # type: ignore[arg-type]
            context.check_privatekey()
        except SSL.Error as e:
            raise TLSConfigurationError(
                f"the client key does not belong to its certificate: {e}"
            ) from e
    store = context.get_cert_store()
    assert store is not None
    for ca in trusted:
        store.add_cert(crypto.X509.from_cryptography(ca))
    return context


def deviceClientCreator(
    gatewayName: str,
    trustedCAs: Sequence[x509.Certificate],
    deviceCertificate: x509.Certificate,
    deviceKey: CertificateIssuerPrivateKeyTypes,
    minimumVersion: TLSVersion = DEFAULT_MINIMUM,
) -> IOpenSSLClientConnectionCreator:
    """
    The forwarder's and agent's way to the gateway: present the device
    certificate, accept only a gateway certificate from C{trustedCAs} that
    names C{gatewayName}, speak HTTP/1.1.

    @param gatewayName: the gateway's host name or IP address, as the user
        configured it.
    @param trustedCAs: the CA certificates of the device profile.
    @param deviceCertificate: the device certificate.
    @param deviceKey: its private key.
    @param minimumVersion: the lowest TLS version to offer.
    @raise TLSConfigurationError: no CA, a key that does not match, or a
        malformed name.
    """
    name = _checkName(gatewayName)
    if not trustedCAs:
        raise TLSConfigurationError(
            "a trusted CA certificate is needed to check the gateway"
        )
    context = _clientContext(
        minimumVersion, DEFAULT_MAXIMUM, trustedCAs, deviceCertificate, deviceKey
    )
    return _ClientCreator(context, name, _identityJudge(name), [ALPN_HTTP11])


def pinnedClientCreator(
    gatewayName: str,
    pin: bytes,
    deviceCertificate: x509.Certificate | None = None,
    deviceKey: CertificateIssuerPrivateKeyTypes | None = None,
    minimumVersion: TLSVersion = DEFAULT_MINIMUM,
) -> IOpenSSLClientConnectionCreator:
    """
    Reach the gateway before any CA is known (enrollment): accept only a
    gateway certificate whose public key has the SHA-256 C{pin} (see
    L{spkiFingerprint}), compared in constant time.

    @param gatewayName: sent as SNI (not checked: the pin identifies the
        gateway).
    @param pin: the 32-byte digest (see L{parsePin}).
    @param deviceCertificate: a client certificate to present, if any.
    @param deviceKey: its key.
    @raise TLSConfigurationError: a pin of the wrong size or a malformed
        name.
    """
    if len(pin) != 32:
        raise TLSConfigurationError("a pin is a 32-byte SHA-256 digest")
    name = _checkName(gatewayName)
    context = _clientContext(
        minimumVersion, DEFAULT_MAXIMUM, (), deviceCertificate, deviceKey
    )
    return _ClientCreator(context, name, _pinJudge(pin), [ALPN_HTTP11])


@frozen
class RealServerTrust:
    """
    How the gateway checks a real server (an api-gateway's C{verify-cert}
    and the CA certificates it names).

    @ivar verify: C{verify-cert enable}: check the certificate; otherwise
        encrypt without checking anything.
    @ivar caCertificates: the trusted CAs (C{config vpn certificate ca});
        at least one when C{verify} is set.
    @ivar minimumVersion: C{ssl-min-version} towards the real server.
    @ivar maximumVersion: C{ssl-max-version} towards the real server.
    """

    verify: bool = True
    caCertificates: tuple[x509.Certificate, ...] = field(default=(), converter=tuple)
    minimumVersion: TLSVersion = DEFAULT_MINIMUM
    maximumVersion: TLSVersion = DEFAULT_MAXIMUM


def realServerCreator(
    name: str, trust: RealServerTrust, alpn: Sequence[bytes] = (ALPN_HTTP11,)
) -> IOpenSSLClientConnectionCreator:
    """
    The gateway's way to a real server.

    @param name: what the real server's certificate must name: its FQDN,
        its IP address, or an explicitly configured name.  A DNS name is
        also sent as SNI.
    @param trust: how to check it.
    @param alpn: the protocols to offer.
    @raise TLSConfigurationError: C{verify} without CA certificates, or a
        malformed name.
    """
    checked = _checkName(name)
    if trust.verify and not trust.caCertificates:
        raise TLSConfigurationError(
            f"verify-cert enable for {name} needs at least one CA certificate "
            "(config vpn certificate ca)"
        )
    context = _clientContext(
        trust.minimumVersion,
        trust.maximumVersion,
        trust.caCertificates if trust.verify else (),
        None,
        None,
    )
    judge = _identityJudge(checked) if trust.verify else None
    return _ClientCreator(context, checked, judge, alpn)


class ClientCreatorCache:
    """
    Real-server creators, kept by (name, trust) so that each is built once.

    @ivar maxSize: how many creators to keep (least recently used go
        first).
    """

    def __init__(self, maxSize: int = 256) -> None:
        """
        @param maxSize: see L{maxSize}.
        """
        if maxSize < 1:
            raise ValueError("the cache must hold at least one creator")
        self.maxSize = maxSize
        self._creators: OrderedDict[
            tuple[str, RealServerTrust], IOpenSSLClientConnectionCreator
        ] = OrderedDict()

    def realServer(
        self, name: str, trust: RealServerTrust
    ) -> IOpenSSLClientConnectionCreator:
        """
        The creator for C{name} and C{trust} (see L{realServerCreator}).
        """
        key = (name, trust)
        creator = self._creators.get(key)
        if creator is not None:
            self._creators.move_to_end(key)
            return creator
        creator = realServerCreator(name, trust)
        self._creators[key] = creator
        if len(self._creators) > self.maxSize:
            self._creators.popitem(last=False)
        return creator

    def __len__(self) -> int:
        return len(self._creators)
