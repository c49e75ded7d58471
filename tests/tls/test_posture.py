"""
Tests for L{ztnagw.tls.posture}: the version names, and what a real client
(C{openssl s_client}) can and cannot negotiate with a VIP.
"""

from __future__ import annotations

import os
import shlex
import shutil

from hypothesis import given
from hypothesis import strategies as st
from OpenSSL import SSL
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from tests.support import pki
from tests.tls.loopback import GATEWAY, SERVER_CA, serverCertificate, verifier
from ztnagw.tls.listener import listenTLS
from ztnagw.tls.posture import (
    TLSConfigurationError,
    TLSVersion,
    hardenedContext,
)
from ztnagw.tls.server import ServerConnectionCreator, SNIEntry

OPENSSL = shutil.which("openssl")

RSA_GATEWAY = pki.makeServer(SERVER_CA, key=pki.newRSAKey())

#: The TLS 1.2 suites a VIP may negotiate, by the key type of its
#: certificate: ephemeral ECDH with AES-GCM or ChaCha20-Poly1305, nothing
#: else.
AEAD_SUITES = {
    "EC": {
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
    },
    "RSA": {
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-RSA-CHACHA20-POLY1305",
    },
}


class TLSVersionTests(SynchronousTestCase):
    """
    Tests for L{TLSVersion}.
    """

    def test_names(self) -> None:
        """
        The FortiOS names parse; anything else is refused with the list.
        """
        self.assertIs(TLSVersion.fromConfig("tls-1.2"), TLSVersion.TLS_1_2)
        with self.assertRaises(ValueError) as caught:
            TLSVersion.fromConfig("TLS-1.2")
        self.assertIn("tls-1.0, tls-1.1, tls-1.2, tls-1.3", str(caught.exception))

    @given(st.text(max_size=10))
    def test_anyText(self, text: str) -> None:
        """
        Any text is exactly a version's name or refused.
        """
        try:
            version = TLSVersion.fromConfig(text)
        except ValueError:
            self.assertNotIn(text, [v.value for v in TLSVersion])
        else:
            self.assertEqual(version.value, text)

    def test_order(self) -> None:
        """
        Versions are ordered; 1.0 and 1.1 are legacy.
        """
        self.assertLess(TLSVersion.TLS_1_1, TLSVersion.TLS_1_2)
        self.assertLessEqual(TLSVersion.TLS_1_3, TLSVersion.TLS_1_3)
        self.assertEqual(
            [v for v in TLSVersion if v.legacy],
            [TLSVersion.TLS_1_0, TLSVersion.TLS_1_1],
        )

    def test_inverted(self) -> None:
        """
        A minimum above the maximum is a configuration error.
        """
        self.assertRaises(
            TLSConfigurationError,
            hardenedContext,
            TLSVersion.TLS_1_3,
            TLSVersion.TLS_1_2,
        )

    def test_contextOptions(self) -> None:
        """
        Every context refuses renegotiation and compression, keeps no
        session cache and issues no RFC 5077 tickets, and releases idle
        buffers.
        """
        context = hardenedContext()
        options = context.set_options(0)
        for flag in (SSL.OP_NO_RENEGOTIATION, SSL.OP_NO_COMPRESSION, SSL.OP_NO_TICKET):
            self.assertTrue(options & flag, hex(flag))
        self.assertEqual(context.get_session_cache_mode(), SSL.SESS_CACHE_OFF)
        self.assertTrue(context.set_mode(0) & SSL.MODE_RELEASE_BUFFERS)


class Closer(Protocol):
    """
    Ends each connection shortly after it starts (so that clients waiting
    for the server, with C{-ign_eof}, finish).
    """

    def connectionMade(self) -> None:
        """
        Close in a moment.
        """
        self._closing = reactor.callLater(0.3, self.transport.loseConnection)

    def connectionLost(self, reason: object = None) -> None:
        """
        Forget the pending close.
        """
        if self._closing.active():
            self._closing.cancel()


class OpenSSLClientTests(TestCase):
    """
    What C{openssl s_client} can negotiate with a VIP.
    """

    timeout = 60

    def setUp(self) -> None:
        if OPENSSL is None:
            raise SkipTest("openssl is not installed")

    def serve(self, certificate: pki.Issued = GATEWAY, **kwargs: object) -> int:
        """
        Run a VIP on 127.0.0.1 with C{certificate}; C{open.test} is an SNI
        entry with C{client-cert disable}.
        """
        creator = ServerConnectionCreator(
            serverCertificate(certificate),
            verifier(clock=reactor),
            [SNIEntry("open.test", serverCertificate(certificate), False)],
            **kwargs,  # type: ignore[arg-type]
        )
        port = listenTLS(reactor, 0, "127.0.0.1", creator, Factory.forProtocol(Closer))
        self.addCleanup(port.stopListening)
        return port.getHost().port

    def sClient(self, port: int, *arguments: str, stdin: str = ""):  # type: ignore[no-untyped-def]
        """
        Run C{openssl s_client} against C{port}.

        @param stdin: what to type, followed by a short wait.
        @return: a Deferred firing with (output, exit status).
        """
        command = " ".join(
            shlex.quote(a)
            for a in [OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}", *arguments]  # type: ignore[list-item]
        )
        typing = f"(printf {shlex.quote(stdin)}; sleep 0.5)" if stdin else "true"
        d = getProcessOutputAndValue(
            "/bin/sh", ["-c", f"{typing} | {command} 2>&1"], env=dict(os.environ)
        )
        return d.addCallback(
            lambda result: (result[0].decode("utf-8", "replace"), result[2])
        )

    @inlineCallbacks
    def test_versions(self):  # type: ignore[no-untyped-def]
        """
        TLS 1.2 and 1.3 are accepted; TLS 1.1 and 1.0 are refused by the
        server (the client is allowed to offer them), although a VIP
        configured for them accepts the same client.
        """
        port = self.serve()
        legacy = "DEFAULT:@SECLEVEL=0"
        for flag in ("-tls1_2", "-tls1_3"):
            output, status = yield self.sClient(port, flag)
            self.assertEqual(status, 0, output)
        for flag in ("-tls1_1", "-tls1"):
            output, status = yield self.sClient(port, flag, "-cipher", legacy)
            self.assertNotEqual(status, 0, output)
            self.assertIn("alert protocol version", output)
        permissive = self.serve(minimumVersion=TLSVersion.TLS_1_0)
        output, status = yield self.sClient(permissive, "-tls1_1", "-cipher", legacy)
        self.assertEqual(status, 0, output)
        self.assertIn("Protocol  : TLSv1.1", output)

    @inlineCallbacks
    def test_maximum(self):  # type: ignore[no-untyped-def]
        """
        A VIP limited to TLS 1.2 refuses a TLS 1.3-only client.
        """
        port = self.serve(maximumVersion=TLSVersion.TLS_1_2)
        output, status = yield self.sClient(port, "-tls1_3")
        self.assertNotEqual(status, 0, output)

    @inlineCallbacks
    def onlyAEADSuites(self, certificate: pki.Issued, kind: str):  # type: ignore[no-untyped-def]
        """
        Each intended suite is negotiated alone; offering every other TLS
        1.2 suite the client knows (all of them at once: the server would
        pick any it accepted) fails.
        """
        port = self.serve(certificate)
        listing, _, _ = yield getProcessOutputAndValue(
            OPENSSL, ["ciphers", "-tls1_2", "ALL:COMPLEMENTOFALL:@SECLEVEL=0"]
        )
        known = {
            s for s in listing.decode().strip().split(":") if not s.startswith("TLS_")
        }
        self.assertGreater(len(known), 50)
        for suite in sorted(AEAD_SUITES[kind]):
            output, status = yield self.sClient(port, "-tls1_2", "-cipher", suite)
            self.assertEqual(status, 0, output)
            self.assertIn(f"Cipher is {suite}", output)
        others = sorted(known - AEAD_SUITES[kind])
        output, status = yield self.sClient(
            port, "-tls1_2", "-cipher", ":".join(others) + ":@SECLEVEL=0"
        )
        self.assertNotEqual(status, 0, output)
        self.assertIn("handshake failure", output)

    def test_suitesEC(self):  # type: ignore[no-untyped-def]
        """
        With an EC certificate, only the ECDHE-ECDSA AEAD suites are
        negotiated under TLS 1.2.
        """
        return self.onlyAEADSuites(GATEWAY, "EC")

    def test_suitesRSA(self):  # type: ignore[no-untyped-def]
        """
        With an RSA certificate, only the ECDHE-RSA AEAD suites are
        negotiated under TLS 1.2.
        """
        return self.onlyAEADSuites(RSA_GATEWAY, "RSA")

    @inlineCallbacks
    def test_tls13Suites(self):  # type: ignore[no-untyped-def]
        """
        Under TLS 1.3 the AES-GCM and ChaCha20 suites are accepted, the CCM
        ones are not.
        """
        port = self.serve()
        expected = {
            "TLS_AES_256_GCM_SHA384": 0,
            "TLS_AES_128_GCM_SHA256": 0,
            "TLS_CHACHA20_POLY1305_SHA256": 0,
        }
        for suite in [*expected, "TLS_AES_128_CCM_SHA256", "TLS_AES_128_CCM_8_SHA256"]:
            output, status = yield self.sClient(port, "-tls1_3", "-ciphersuites", suite)
            self.assertEqual(status == 0, suite in expected, output)

    @inlineCallbacks
    def test_handshakeDetails(self):  # type: ignore[no-untyped-def]
        """
        No compression; ALPN picks HTTP/1.1 even when HTTP/2 is offered
        first; the client CA names are the EMS CA subjects.
        """
        port = self.serve()
        output, status = yield self.sClient(port, "-alpn", "h2,http/1.1")
        self.assertEqual(status, 0, output)
        self.assertIn("Compression: NONE", output)
        self.assertIn("ALPN protocol: http/1.1", output)
        self.assertIn("Acceptable client certificate CA names", output)
        self.assertIn("CN = ztnagw test EMS 1 CA", output)
        self.assertIn("CN = ztnagw test EMS 2 CA", output)

    @inlineCallbacks
    def test_clientCertDisable(self):  # type: ignore[no-untyped-def]
        """
        A host with C{client-cert disable} sends no certificate request.
        """
        port = self.serve()
        output, status = yield self.sClient(port, "-servername", "open.test")
        self.assertEqual(status, 0, output)
        self.assertIn("No client certificate CA names sent", output)
        self.assertNotIn("Acceptable client certificate CA names", output)

    @inlineCallbacks
    def test_noRenegotiation(self):  # type: ignore[no-untyped-def]
        """
        A TLS 1.2 client asking to renegotiate is refused.
        """
        port = self.serve()
        output, status = yield self.sClient(port, "-tls1_2", stdin="R\n")
        self.assertIn("RENEGOTIATING", output)
        self.assertIn("no renegotiation", output)

    @inlineCallbacks
    def test_noResumption(self):  # type: ignore[no-untyped-def]
        """
        A client that saved its session gets a full handshake next time
        (resumption would skip the verify callback), in TLS 1.2 and 1.3.
        """
        port = self.serve()
        for flag in ("-tls1_2", "-tls1_3"):
            session = self.mktemp()
            output, status = yield self.sClient(
                port, flag, "-ign_eof", "-sess_out", session
            )
            self.assertEqual(status, 0, output)
            self.assertIn("New, TLS", output)
            if not os.path.exists(session):
                # TLS 1.2 without a session id or ticket: nothing to resume.
                continue
            output, status = yield self.sClient(port, flag, "-sess_in", session)
            self.assertEqual(status, 0, output)
            self.assertIn("New, TLS", output)
            self.assertNotIn("Reused", output)
