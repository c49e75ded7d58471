"""
Tests for L{ztnagw.tls.client}, in memory against L{ztnagw.tls.server}.
"""

from __future__ import annotations

import datetime

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from tests.support import pki
from tests.tls.loopback import (
    DEVICE,
    EMS_CA,
    GATEWAY,
    SERVER_CA,
    memoryPair,
    nowClock,
    serverCertificate,
    verifier,
)
from ztnagw.device import VerdictKind
from ztnagw.tls.client import (
    ClientCreatorCache,
    RealServerTrust,
    ServerCertificateRejected,
    deviceClientCreator,
    formatPin,
    parsePin,
    pinnedClientCreator,
    realServerCreator,
    spkiFingerprint,
)
from ztnagw.tls.posture import TLSConfigurationError, TLSVersion
from ztnagw.tls.server import ServerConnectionCreator, handshakeFacts

_DAY = datetime.timedelta(days=1)


def gateway(issued: pki.Issued = GATEWAY, **kwargs: object) -> ServerConnectionCreator:
    """
    A gateway presenting C{issued}.
    """
    return ServerConnectionCreator(serverCertificate(issued), verifier(), **kwargs)  # type: ignore[arg-type]


class ConnectMixin:
    """
    Connects a client creator to a gateway in memory.
    """

    def connect(
        self,
        client: IOpenSSLClientConnectionCreator,
        server: ServerConnectionCreator | None = None,
    ) -> tuple[object, object]:
        """
        Handshake and exchange a few bytes.

        @return: the client's connection-lost reason (C{None} if the
            connection works) and the server's TLS protocol.
        """
        pair = memoryPair(server or gateway(), client, nowClock())
        pair.clientTLS.write(b"hello")
        pair.pump.flush()
        if pair.client.lost is None:
            self.assertEqual(pair.server.received, b"hello")
        return pair.client.lost, pair.serverTLS

    def assertRejected(
        self,
        client: IOpenSSLClientConnectionCreator,
        server: ServerConnectionCreator | None = None,
        reason: str = "",
    ) -> None:
        """
        The client refuses the server's certificate, saying C{reason}.
        """
        lost, _ = self.connect(client, server)
        self.assertIsNotNone(lost, "the connection was not refused")
        lost.trap(ServerCertificateRejected)  # type: ignore[union-attr]
        self.assertIn(reason, str(lost.value))  # type: ignore[union-attr]


class DeviceClientTests(ConnectMixin, SynchronousTestCase):
    """
    Tests for L{deviceClientCreator}.
    """

    def device(
        self, name: str = "gateway.test", cas: tuple = (SERVER_CA,)
    ) -> IOpenSSLClientConnectionCreator:
        """
        A device client for C{name} trusting C{cas}.
        """
        return deviceClientCreator(
            name, [c.certificate for c in cas], DEVICE.certificate, DEVICE.key  # type: ignore[arg-type]
        )

    def test_connects(self) -> None:
        """
        The device reaches a gateway whose certificate names it, presents
        its device certificate and speaks HTTP/1.1.
        """
        client = self.device()
        self.assertTrue(verifyObject(IOpenSSLClientConnectionCreator, client))
        lost, serverTLS = self.connect(client)
        self.assertIsNone(lost)
        facts = handshakeFacts(serverTLS)
        assert facts.verdict is not None
        self.assertEqual(facts.verdict.kind, VerdictKind.VALID)
        self.assertEqual(facts.serverName, "gateway.test")
        self.assertEqual(serverTLS.negotiatedProtocol, b"http/1.1")  # type: ignore

    def test_byAddress(self) -> None:
        """
        A gateway given by IP address must name that address; no SNI is
        sent.
        """
        lost, serverTLS = self.connect(self.device("127.0.0.1"))
        self.assertIsNone(lost)
        self.assertIsNone(handshakeFacts(serverTLS).serverName)
        self.assertRejected(self.device("127.0.0.2"), reason="not valid for 127.0.0.2")

    def test_wrongName(self) -> None:
        """
        A gateway certificate for another name is refused, with the name.
        """
        self.assertRejected(
            self.device("other.test"), reason="not valid for other.test"
        )

    def test_untrusted(self) -> None:
        """
        A gateway certificate from a CA the profile does not trust is
        refused.
        """
        self.assertRejected(
            self.device(cas=(EMS_CA,)), reason="not issued by a trusted CA"
        )

    def test_expiredGateway(self) -> None:
        """
        An expired gateway certificate is refused.
        """
        now = datetime.datetime.now(datetime.timezone.utc)
        expired = pki.makeServer(
            SERVER_CA,
            names=("gateway.test",),
            notBefore=now - 3 * _DAY,
            notAfter=now - _DAY,
        )
        self.assertRejected(self.device(), gateway(expired), reason="expired")

    def test_versionFloor(self) -> None:
        """
        A gateway limited below the client's minimum is not reached.
        """
        client = deviceClientCreator(
            "gateway.test",
            [SERVER_CA.certificate],
            DEVICE.certificate,
            DEVICE.key,  # type: ignore[arg-type]
            minimumVersion=TLSVersion.TLS_1_3,
        )
        lost, _ = self.connect(client, gateway(maximumVersion=TLSVersion.TLS_1_2))
        self.assertIsNotNone(lost)

    def test_configurationErrors(self) -> None:
        """
        No CA, a key that is not the certificate's, or a bad name are
        refused when the creator is made.
        """
        self.assertRaises(
            TLSConfigurationError,
            deviceClientCreator,
            "gateway.test",
            [],
            DEVICE.certificate,
            DEVICE.key,
        )
        other = pki.makeDevice(EMS_CA, pki.DEVICE_UID, keySlot=None)
        self.assertRaises(
            TLSConfigurationError,
            deviceClientCreator,
            "gateway.test",
            [SERVER_CA.certificate],
            DEVICE.certificate,
            other.key,
        )
        for bad in ("", " gateway.test"):
            self.assertRaises(
                TLSConfigurationError,
                deviceClientCreator,
                bad,
                [SERVER_CA.certificate],
                DEVICE.certificate,
                DEVICE.key,
            )


class PinnedClientTests(ConnectMixin, SynchronousTestCase):
    """
    Tests for L{pinnedClientCreator}.
    """

    def test_rightPin(self) -> None:
        """
        The pinned key is accepted without any trusted CA, even on a
        self-signed certificate for another name.
        """
        self.assertIsNone(
            self.connect(
                pinnedClientCreator(
                    "gateway.test", spkiFingerprint(GATEWAY.certificate)
                )
            )[0]
        )
        selfSigned = pki.makeCA("gateway", keySlot=40)
        selfSigned = pki.makeServer(selfSigned, names=("elsewhere",), keySlot=41)
        client = pinnedClientCreator(
            "gateway.test", spkiFingerprint(selfSigned.certificate)
        )
        self.assertIsNone(self.connect(client, gateway(selfSigned))[0])

    def test_wrongPin(self) -> None:
        """
        Any other key is refused, and the message shows both pins.
        """
        pin = spkiFingerprint(EMS_CA.certificate)
        self.assertRejected(
            pinnedClientCreator("gateway.test", pin),
            reason=f"{formatPin(spkiFingerprint(GATEWAY.certificate))} is not the pinned {formatPin(pin)}",
        )

    def test_expiredPinned(self) -> None:
        """
        A pin does not excuse an expired certificate.
        """
        now = datetime.datetime.now(datetime.timezone.utc)
        expired = pki.makeServer(
            SERVER_CA, notBefore=now - 3 * _DAY, notAfter=now - _DAY
        )
        client = pinnedClientCreator(
            "gateway.test", spkiFingerprint(expired.certificate)
        )
        self.assertRejected(client, gateway(expired), reason="expired")

    def test_presentsCertificate(self) -> None:
        """
        A pinned client may present a device certificate.
        """
        client = pinnedClientCreator(
            "gateway.test",
            spkiFingerprint(GATEWAY.certificate),
            DEVICE.certificate,
            DEVICE.key,  # type: ignore[arg-type]
        )
        lost, serverTLS = self.connect(client)
        self.assertIsNone(lost)
        self.assertIsNotNone(handshakeFacts(serverTLS).presented)

    def test_badPin(self) -> None:
        """
        A pin that is not 32 bytes is a configuration error.
        """
        self.assertRaises(
            TLSConfigurationError, pinnedClientCreator, "gateway.test", b"x" * 20
        )


class PinTextTests(SynchronousTestCase):
    """
    Tests for L{parsePin} and L{formatPin}.
    """

    def test_forms(self) -> None:
        """
        Hex in either case, with or without C{sha256:} and byte colons.
        """
        digest = bytes(range(32))
        self.assertEqual(parsePin(formatPin(digest)), digest)
        self.assertEqual(parsePin(digest.hex().upper()), digest)
        self.assertEqual(parsePin(":".join(f"{b:02X}" for b in digest)), digest)
        self.assertEqual(parsePin("SHA256/" + digest.hex()), digest)

    def test_refused(self) -> None:
        """
        Wrong lengths, other digests and base64 are refused.
        """
        for bad in [
            "",
            "sha256:",
            "sha1:" + "00" * 20,
            "00" * 31,
            "00" * 33,
            "A" * 43 + "=",
        ]:
            self.assertRaises(ValueError, parsePin, bad)
        self.assertRaises(ValueError, formatPin, b"x")

    @given(st.binary(min_size=32, max_size=32))
    def test_roundTrip(self, digest: bytes) -> None:
        """
        Every digest survives formatting and parsing.
        """
        self.assertEqual(parsePin(formatPin(digest)), digest)

    @given(st.text(max_size=80))
    def test_anyText(self, text: str) -> None:
        """
        Any text is a 32-byte pin or a L{ValueError}.
        """
        try:
            digest = parsePin(text)
        except ValueError:
            return
        self.assertEqual(len(digest), 32)


REAL = pki.makeServer(SERVER_CA, names=("app.internal",), ipAddresses=("10.0.0.5",))


class RealServerTests(ConnectMixin, SynchronousTestCase):
    """
    Tests for L{realServerCreator} and L{ClientCreatorCache}.
    """

    trust = RealServerTrust(caCertificates=(SERVER_CA.certificate,))

    def test_verified(self) -> None:
        """
        A real server is checked against the configured CAs and its FQDN,
        IP address or an explicit name; the FQDN goes out as SNI.
        """
        server = gateway(REAL)
        lost, serverTLS = self.connect(
            realServerCreator("app.internal", self.trust), server
        )
        self.assertIsNone(lost)
        self.assertEqual(handshakeFacts(serverTLS).serverName, "app.internal")
        self.assertIsNone(
            self.connect(realServerCreator("10.0.0.5", self.trust), server)[0]
        )
        self.assertRejected(
            realServerCreator("db.internal", self.trust), server, "db.internal"
        )

    def test_untrusted(self) -> None:
        """
        A real server certificate from an unconfigured CA is refused.
        """
        trust = RealServerTrust(caCertificates=(EMS_CA.certificate,))
        self.assertRejected(
            realServerCreator("app.internal", trust), gateway(REAL), "trusted CA"
        )

    def test_unverified(self) -> None:
        """
        With C{verify-cert disable} anything is accepted, still encrypted.
        """
        trust = RealServerTrust(verify=False)
        lost, serverTLS = self.connect(
            realServerCreator("elsewhere", trust), gateway(REAL)
        )
        self.assertIsNone(lost)
        self.assertTrue(handshakeFacts(serverTLS).cipher)

    def test_verifyNeedsCA(self) -> None:
        """
        C{verify-cert enable} without a CA certificate is a configuration
        error, not a silent fallback.
        """
        self.assertRaises(
            TLSConfigurationError, realServerCreator, "app.internal", RealServerTrust()
        )

    def test_versions(self) -> None:
        """
        The real server's version range is honoured.
        """
        trust = RealServerTrust(
            caCertificates=(SERVER_CA.certificate,), minimumVersion=TLSVersion.TLS_1_3
        )
        lost, _ = self.connect(
            realServerCreator("app.internal", trust),
            gateway(REAL, maximumVersion=TLSVersion.TLS_1_2),
        )
        self.assertIsNotNone(lost)

    def test_cache(self) -> None:
        """
        The cache builds one creator per (name, trust) and forgets the least
        recently used beyond its size.
        """
        cache = ClientCreatorCache(maxSize=2)
        first = cache.realServer("app.internal", self.trust)
        self.assertIs(cache.realServer("app.internal", self.trust), first)
        same = RealServerTrust(caCertificates=[SERVER_CA.certificate])
        self.assertIs(cache.realServer("app.internal", same), first)
        other = cache.realServer("app.internal", RealServerTrust(verify=False))
        self.assertIsNot(other, first)
        cache.realServer("app.internal", self.trust)
        cache.realServer("10.0.0.5", self.trust)
        self.assertEqual(len(cache), 2)
        self.assertIsNot(
            cache.realServer("app.internal", RealServerTrust(verify=False)), other
        )
        self.assertRaises(ValueError, ClientCreatorCache, 0)
