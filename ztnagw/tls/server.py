# -*- test-case-name: tests.tls.test_server -*-
"""
The TLS server side of every VIP: certificate choice by SNI and the one
device-certificate verify callback.

Every access-proxy VIP (the HTTPS access proxy and the TCP forwarding tunnel
on the same port) and the EMS telemetry API accept TLS through a
L{ServerConnectionCreator}.  All of them share one
L{DeviceCertificateVerifier}, whose verify callback checks the client
certificate against the EMS CAs, records what it found on the connection
and I{always lets the handshake finish}: a refused device then gets a
readable HTTP block page with a ZTNA error code, not a dropped connection
(which is all a TLS 1.3 client would see of a handshake failure).  The
application reads what was recorded through L{handshakeFacts} or
L{presentedCertificate} and re-judges the device for every request with
L{ztnagw.device.judgeDevice}.

Two rules shape the code:

  - Verification is set on each connection (C{Connection.set_verify}),
    never on a context.  OpenSSL's SNI context switch (C{set_context})
    replaces the certificate and the trust store but keeps the verify mode
    and callback of the connection, so per-context settings would let a
    client that names another host skip verification.  Every context
    therefore carries the same trust store and client CA names, and the SNI
    callback re-applies the verify mode of the entry it chose.

  - Session resumption is off (no cache, no tickets): a resumed session
    skips the verify callback, so nothing would be captured for it.  The
    cost is a full handshake per connection; keep-alive makes it rare.
"""

from __future__ import annotations

import ipaddress
import re
import weakref
from typing import Callable, Mapping, Sequence

from attrs import define, field, frozen
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
)
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from OpenSSL import SSL, crypto
from twisted.internet.interfaces import (
    IOpenSSLServerConnectionCreator,
    IReactorTime,
)
from twisted.logger import Logger
from zope.interface import implementer

from ztnagw.device import (
    DeviceVerdict,
    EmsSettings,
    PresentedCertificate,
    VerdictKind,
    judgeDevice,
)
from ztnagw.registry.interfaces import IEndpointIndex
from ztnagw.tls.certcheck import INTERNAL_ERROR, certificateProblem
from ztnagw.tls.posture import (
    ALPN_HTTP11,
    DEFAULT_MAXIMUM,
    DEFAULT_MINIMUM,
    TLSConfigurationError,
    TLSVersion,
    hardenedContext,
)

log = Logger()

#: The deepest chain position OpenSSL is asked to build: leaf (0), EMS CA
#: (1) and one more, so that a chain through an intermediate is still seen
#: whole and refused with a clear reason instead of "chain too long".
_VERIFY_DEPTH = 1


@frozen
class ServerCertificate:
    """
    A certificate the gateway presents, with its key and the chain sent
    after it.

    @ivar certificate: the gateway's certificate.
    @ivar key: its private key.
    @ivar chain: intermediate certificates to send after it, in order.
    """

    certificate: x509.Certificate
    key: CertificateIssuerPrivateKeyTypes
    chain: tuple[x509.Certificate, ...] = ()

    @classmethod
    def fromPEM(cls, certificates: bytes, key: bytes) -> ServerCertificate:
        """
        Load a certificate, its chain and its key from PEM text.

        @param certificates: the certificate followed by its chain.
        @param key: the unencrypted private key.
        @raise TLSConfigurationError: no certificate, an unreadable key, or
            a key that does not belong to the certificate.
        """
        try:
            loaded = x509.load_pem_x509_certificates(certificates)
        except ValueError as e:
            raise TLSConfigurationError(f"cannot read the certificate: {e}") from e
        try:
            privateKey = load_pem_private_key(key, password=None)
        except (ValueError, TypeError) as e:
            raise TLSConfigurationError(f"cannot read the private key: {e}") from e
        if privateKey.public_key() != loaded[0].public_key():  # type: ignore[operator]
            raise TLSConfigurationError(
                "the private key does not belong to the certificate "
                f"{loaded[0].subject.rfc4514_string()}"
            )
        return cls(loaded[0], privateKey, tuple(loaded[1:]))  # type: ignore[arg-type]


_LABEL = re.compile(r"\A[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\Z")


def parseHostPattern(text: str) -> str:
    """
    Check and normalise an SNI host pattern: an exact DNS name
    (C{www.example.com}) or a wildcard for exactly one label
    (C{*.example.com}).

    Names are compared without case, so the pattern is lower-cased; one
    trailing dot is dropped.  Internationalised names must be given in
    their ASCII (C{xn--}) form, as clients send them.

    @return: the normalised pattern.
    @raise ValueError: C{text} is not such a pattern; the message says why.
    """
    if not isinstance(text, str):
        raise ValueError(f"host pattern must be text, not {type(text).__name__}")
    pattern = text.lower()
    if pattern.endswith("."):
        pattern = pattern[:-1]
    wildcard = pattern.startswith("*.")
    name = pattern[2:] if wildcard else pattern
    if not name:
        raise ValueError(f"host pattern {text!r} names no host")
    if len(name) > 253:
        raise ValueError(f"host pattern {text!r} is longer than a DNS name can be")
    labels = name.split(".")
    for label in labels:
        if not _LABEL.match(label):
            raise ValueError(
                f"host pattern {text!r}: {label!r} is not a DNS label (wildcards "
                "are allowed only as a whole first label, as in *.example.com; "
                "write international names in their xn-- form)"
            )
    if wildcard and len(labels) < 2:
        raise ValueError(
            f"host pattern {text!r} would match every name under a top-level domain"
        )
    try:
        ipaddress.ip_address(name)
    except ValueError:
        pass
    else:
        raise ValueError(
            f"host pattern {text!r} is an IP address; clients never send one "
            "in SNI and get the default certificate"
        )
    return "*." + name if wildcard else name


@frozen
class SNIEntry:
    """
    A certificate chosen when the client asks for a matching host name.

    @ivar hostPattern: see L{parseHostPattern}.
    @ivar certificate: what to present.
    @ivar clientCertificate: whether to ask for a device certificate on
        connections that chose this entry (C{client-cert enable}); C{False}
        sends no certificate request at all (C{client-cert disable}).
    """

    hostPattern: str = field(converter=parseHostPattern)
    certificate: ServerCertificate
    clientCertificate: bool = True


@frozen
class HandshakeFacts:
    """
    What the handshake of one connection established.

    @ivar presented: the client certificate as captured, or C{None} if the
        client presented none (or was not asked for one).
    @ivar serverName: the host name the client asked for (SNI), lower-case,
        or C{None}.  It chose the certificate only: the application must
        match virtual hosts on the HTTP C{Host} and judge the device
        itself.
    @ivar clientCertificateRequested: whether the gateway asked for a
        client certificate on this connection.
    @ivar tlsVersion: the negotiated protocol (C{"TLSv1.3"}).
    @ivar cipher: the negotiated cipher suite.
    @ivar verdict: the device verdict at handshake time, for logging; the
        access decision must re-judge with L{judgeDevice} for every request.
    """

    presented: PresentedCertificate | None
    serverName: str | None
    clientCertificateRequested: bool
    tlsVersion: str
    cipher: str
    verdict: DeviceVerdict | None


class NotVerifiedHere(TypeError):
    """
    The transport was not set up by a L{ServerConnectionCreator}, so there
    is no record of its client certificate.
    """


class HandshakeIncomplete(RuntimeError):
    """
    The TLS handshake of the transport has not completed, so nothing about
    its client certificate is known yet.  The caller must not admit it.
    """


@define
class _Capture:
    """
    What the callbacks of one connection learn during the handshake.
    Private and mutable; the application sees L{HandshakeFacts}.
    """

    clientCertificateRequested: bool
    verifyErrors: list[tuple[int, int]] = field(factory=list)
    chainDepth: int = 0
    issuer: x509.Certificate | None = None
    presented: PresentedCertificate | None = None
    internalError: bool = False
    serverName: str | None = None
    handshakeDone: bool = False
    tlsVersion: str = ""
    cipher: str = ""
    verdict: DeviceVerdict | None = None
    verifyCallback: Callable[..., bool] | None = None
    tlsProtocol: weakref.ref[object] | None = None


# The application finds a connection's capture from its TLS transport, the
# SNI callback from the OpenSSL connection.  Weak keys: the record dies with
# the connection.
_captures: weakref.WeakKeyDictionary[object, _Capture] = weakref.WeakKeyDictionary()
_capturesByConnection: weakref.WeakKeyDictionary[SSL.Connection, _Capture] = (
    weakref.WeakKeyDictionary()
)


def handshakeFacts(transport: object) -> HandshakeFacts:
    """
    What the handshake of a connection established.

    @param transport: the TLS transport of the connection: the C{transport}
        of a protocol wrapped by a TLS factory over a
        L{ServerConnectionCreator} (for twisted.web, C{request.channel.transport}).
    @raise NotVerifiedHere: the transport did not come from a
        L{ServerConnectionCreator}.
    @raise HandshakeIncomplete: the handshake has not completed.
    """
    try:
        capture = _captures.get(transport)
    except TypeError:
        # Not even weakly referenceable: certainly not one of our transports.
        capture = None
    if capture is None:
        raise NotVerifiedHere(
            f"{transport!r} is not a TLS connection accepted through a "
            "ztnagw ServerConnectionCreator"
        )
    if not capture.handshakeDone:
        raise HandshakeIncomplete(f"the TLS handshake of {transport!r} is not done")
    return HandshakeFacts(
        presented=capture.presented,
        serverName=capture.serverName,
        clientCertificateRequested=capture.clientCertificateRequested,
        tlsVersion=capture.tlsVersion,
        cipher=capture.cipher,
        verdict=capture.verdict,
    )


def presentedCertificate(transport: object) -> PresentedCertificate | None:
    """
    The client certificate of a connection, as the handshake captured it.

    @return: C{None} if the client presented no certificate.
    @raise NotVerifiedHere: see L{handshakeFacts}.
    @raise HandshakeIncomplete: see L{handshakeFacts}.
    """
    return handshakeFacts(transport).presented


class DeviceCertificateVerifier:
    """
    The one verify callback every TLS listener shares, with what it needs:
    the EMS CAs (the trust store), the registry indexes and EMS settings
    (to judge the device for the handshake log), and a clock.

    @ivar emsCAs: the CA certificates each configured EMS's devices may
        chain to, by EMS id: its CA, and during a CA rotation the previous
        one too (L{ztnagw.ems.ca.EmsCertificateAuthority.trustedCertificates}).
    """

    def __init__(
        self,
        emsCAs: Mapping[int, x509.Certificate | Sequence[x509.Certificate]],
        indexes: Mapping[int, IEndpointIndex],
        emsSettings: Mapping[int, EmsSettings],
        clock: IReactorTime,
    ) -> None:
        """
        @param emsCAs: the CA certificate, or certificates, of each
            configured EMS, by id.
        @param indexes: the registry index of each EMS, by id.
        @param emsSettings: the settings of each EMS, by id.
        @param clock: the reactor's clock.
        """
        self.emsCAs: dict[int, tuple[x509.Certificate, ...]] = {
            emsId: (cas,) if isinstance(cas, x509.Certificate) else tuple(cas)
            for emsId, cas in emsCAs.items()
        }
        self._indexes = indexes
        self._emsSettings = emsSettings
        self._clock = clock

    def judge(self, presented: PresentedCertificate | None) -> DeviceVerdict:
        """
        Judge a presented certificate now (see L{judgeDevice}).
        """
        return judgeDevice(
            presented, self._indexes, self._emsSettings, self._clock.seconds()
        )

    def _emsIdOf(self, issuer: x509.Certificate | None) -> int | None:
        if issuer is None:
            return None
        for emsId, cas in self.emsCAs.items():
            if issuer in cas:
                return emsId
        return None

    def _verifyCallback(self, capture: _Capture) -> Callable[..., bool]:
        """
        The verify callback for one connection.
        """

        def verifyCallback(
            connection: SSL.Connection,
            certificate: crypto.X509,
            errno: int,
            depth: int,
            ok: int,
        ) -> bool:
            # OpenSSL calls this once per chain certificate from the top
            # down, and again for a certificate whose error we overrode, so
            # everything here is recomputed from what has been seen so far:
            # the capture after the last depth-0 call is the answer.
            try:
                if not ok and (depth, errno) not in capture.verifyErrors:
                    capture.verifyErrors.append((depth, errno))
                capture.chainDepth = max(capture.chainDepth, depth)
                if depth == 1:
                    capture.issuer = certificate.to_cryptography()
                if depth == 0:
                    leaf = certificate.to_cryptography()
                    capture.presented = self._describe(leaf, capture)
            except Exception:
                capture.internalError = True
                log.failure("while verifying a client certificate")
                if depth == 0:
                    return self._describeAfterFailure(certificate, capture)
            return True

        return verifyCallback

    def _describe(
        self, leaf: x509.Certificate, capture: _Capture
    ) -> PresentedCertificate:
        emsId = self._emsIdOf(capture.issuer) if capture.chainDepth == 1 else None
        if capture.internalError:
            problem: str | None = INTERNAL_ERROR
        else:
            problem = certificateProblem(
                leaf, capture.verifyErrors, capture.chainDepth, emsId is not None
            )
        return PresentedCertificate.fromLeaf(leaf, emsId, problem)

    def _describeAfterFailure(
        self, certificate: crypto.X509, capture: _Capture
    ) -> bool:
        # Record the certificate as invalid so the application refuses it
        # with a block page.  If even that is impossible, fail the handshake:
        # admitting a connection whose certificate we could not record would
        # be failing open.
        try:
            capture.presented = PresentedCertificate.fromLeaf(
                certificate.to_cryptography(), None, INTERNAL_ERROR
            )
        except Exception:
            log.failure("while recording an unverifiable client certificate")
            capture.presented = None
            return False
        return True

    def _infoCallback(
        self, capture: _Capture
    ) -> Callable[[SSL.Connection, int, int], None]:
        """
        The info callback for one connection: notes the end of the handshake
        and logs the device verdict once.
        """

        def infoCallback(connection: SSL.Connection, where: int, ret: int) -> None:
            if not where & SSL.SSL_CB_HANDSHAKE_DONE or capture.handshakeDone:
                return
            capture.handshakeDone = True
            try:
                capture.tlsVersion = connection.get_protocol_version_name()
                capture.cipher = connection.get_cipher_name() or ""
                capture.verdict = self.judge(capture.presented)
                _logVerdict(capture, capture.verdict)
            except Exception:
                log.failure("while logging the device verdict of a TLS handshake")

        return infoCallback


def _peerOf(capture: _Capture) -> str:
    try:
        tlsProtocol = capture.tlsProtocol() if capture.tlsProtocol else None
        address = tlsProtocol.transport.getPeer()  # type: ignore[union-attr]
    except Exception:
        return "?"
    host = getattr(address, "host", None)
    if host is None:
        return str(address)
    return f"{host}:{getattr(address, 'port', '?')}"


def _logVerdict(capture: _Capture, verdict: DeviceVerdict) -> None:
    presented = capture.presented
    quiet = verdict.kind is VerdictKind.VALID or (
        verdict.kind is VerdictKind.NO_CERTIFICATE
        and not capture.clientCertificateRequested
    )
    emit = log.debug if quiet else log.info
    emit(
        "TLS handshake from {peer} (SNI {serverName}, {tlsVersion}): device "
        "{verdict}: {reason}; certificate subject {subject!r} serial "
        "{certSerial} sha256 {fingerprint}",
        peer=_peerOf(capture),
        serverName=capture.serverName or "-",
        tlsVersion=capture.tlsVersion,
        verdict=verdict.kind.value,
        reason=verdict.reason,
        error=verdict.error.code if verdict.error else None,
        subject=presented.subjectText() if presented else None,
        certSerial=presented.certSerial if presented else None,
        fingerprint=presented.fingerprint if presented else None,
        uid=presented.uid if presented else None,
    )


def _alpnSelect(connection: SSL.Connection, offered: list[bytes]) -> object:
    # Only HTTP/1.1, whatever the application factory would like: HTTP/2
    # has no Upgrade, which the tunnel needs.  A client that offers nothing
    # we speak continues without ALPN (and then speaks HTTP/1.1).
    if ALPN_HTTP11 in offered:
        return ALPN_HTTP11
    return SSL.NO_OVERLAPPING_PROTOCOLS


def _verifyMode(clientCertificate: bool) -> int:
    # VERIFY_PEER without FAIL_IF_NO_PEER_CERT: ask for a certificate, but
    # finish the handshake without one, so the refusal is a block page.
    return SSL.VERIFY_PEER if clientCertificate else SSL.VERIFY_NONE


@implementer(IOpenSSLServerConnectionCreator)
class ServerConnectionCreator:
    """
    Makes the server side of each TLS connection of one listener.

    Contexts are built once per distinct certificate, with the same posture
    (see L{ztnagw.tls.posture}), the same trust store (the EMS CAs) and the
    same client CA names (their subjects, so that browsers offer the right
    certificate).  The connection starts on the default certificate; when
    the client names a host matching an L{SNIEntry}, it switches to that
    entry's context and verify mode.
    """

    def __init__(
        self,
        defaultCertificate: ServerCertificate,
        verifier: DeviceCertificateVerifier,
        sniEntries: Sequence[SNIEntry] = (),
        clientCertificate: bool = True,
        minimumVersion: TLSVersion = DEFAULT_MINIMUM,
        maximumVersion: TLSVersion = DEFAULT_MAXIMUM,
    ) -> None:
        """
        @param defaultCertificate: the VIP's certificate, presented to
            clients that send no SNI or an unknown name.
        @param verifier: the shared verify callback collaborator.
        @param sniEntries: certificates by host pattern; an exact name wins
            over a wildcard.
        @param clientCertificate: whether to ask for a client certificate
            on connections that stay on the default certificate.
        @param minimumVersion: C{ssl-min-version}.
        @param maximumVersion: C{ssl-max-version}.
        @raise TLSConfigurationError: a certificate does not match its key,
            two entries have the same pattern, or the versions are
            inconsistent.
        """
        self._verifier = verifier
        self._defaultClientCertificate = clientCertificate
        self._minimum = minimumVersion
        self._maximum = maximumVersion
        self._contexts: dict[ServerCertificate, SSL.Context] = {}
        self._exact: dict[str, tuple[SNIEntry, SSL.Context]] = {}
        self._wildcards: dict[str, tuple[SNIEntry, SSL.Context]] = {}
        self._defaultContext = self._contextFor(defaultCertificate)
        for entry in sniEntries:
            table = self._exact
            key = entry.hostPattern
            if key.startswith("*."):
                table, key = self._wildcards, key[2:]
            if key in table:
                raise TLSConfigurationError(
                    f"two SNI entries for the host pattern {entry.hostPattern}"
                )
            table[key] = (entry, self._contextFor(entry.certificate))
        self._defaultContext.set_tlsext_servername_callback(self._serverNameCallback)

    def _contextFor(self, certificate: ServerCertificate) -> SSL.Context:
        context = self._contexts.get(certificate)
        if context is not None:
            return context
        context = hardenedContext(self._minimum, self._maximum)
        try:
            context.use_certificate(certificate.certificate)
            context.use_privatekey(certificate.key)  # type: ignore[arg-type]
            for extra in certificate.chain:
                context.add_extra_chain_cert(extra)
            context.check_privatekey()
        except SSL.Error as e:
            raise TLSConfigurationError(
                "cannot use the certificate "
                f"{certificate.certificate.subject.rfc4514_string()}: {e}"
            ) from e
        store = context.get_cert_store()
        assert store is not None
        # The EMS CAs are the trust anchors themselves, even one that is
        # subordinate to an enterprise root: trust exactly them.
        store.set_flags(crypto.X509StoreFlags.PARTIAL_CHAIN)
        for cas in self._verifier.emsCAs.values():
            for ca in cas:
                store.add_cert(crypto.X509.from_cryptography(ca))
                context.add_client_ca(ca)
        context.set_verify_depth(_VERIFY_DEPTH)
        context.set_alpn_select_callback(_alpnSelect)  # type: ignore[arg-type]
        self._contexts[certificate] = context
        return context

    def _lookup(self, serverName: str) -> tuple[SNIEntry, SSL.Context] | None:
        found = self._exact.get(serverName)
        if found is not None:
            return found
        first, dot, parent = serverName.partition(".")
        if first and dot:
            return self._wildcards.get(parent)
        return None

    def _serverNameCallback(self, connection: SSL.Connection) -> None:
        try:
            capture = _capturesByConnection.get(connection)
            raw = connection.get_servername()
            if raw is None or capture is None:
                return
            serverName = raw.decode("ascii").lower().removesuffix(".")
            capture.serverName = serverName
            found = self._lookup(serverName)
            if found is None:
                return
            entry, context = found
            connection.set_context(context)
            # set_context keeps the connection's verify mode and callback:
            # apply this entry's mode explicitly, with the same callback.
            connection.set_verify(
                _verifyMode(entry.clientCertificate), capture.verifyCallback
            )
            capture.clientCertificateRequested = entry.clientCertificate
        except Exception:
            # Stay on the default certificate and its verify mode: the
            # certificate may not match the name (the client will say so),
            # but nothing is verified less than configured for the VIP.
            log.failure("while choosing a certificate by SNI")

    def serverConnectionForTLS(self, tlsProtocol: object) -> SSL.Connection:
        """
        Make the OpenSSL connection for one accepted TLS connection, with
        its own verify callback and capture.

        @param tlsProtocol: the TLS protocol (transport of the application)
            that will use the connection; L{handshakeFacts} finds the
            capture by it.
        """
        capture = _Capture(clientCertificateRequested=self._defaultClientCertificate)
        capture.verifyCallback = self._verifier._verifyCallback(capture)
        connection = SSL.Connection(self._defaultContext, None)
        connection.set_verify(
            _verifyMode(self._defaultClientCertificate), capture.verifyCallback
        )
        connection.set_info_callback(self._verifier._infoCallback(capture))
        capture.tlsProtocol = weakref.ref(tlsProtocol)
        _captures[tlsProtocol] = capture
        _capturesByConnection[connection] = capture
        return connection
