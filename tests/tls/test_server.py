"""
Tests for L{ztnagw.tls.server}: certificate choice, the shared device
verify callback and what it records, in memory over L{twisted.test.iosim}.
"""

from __future__ import annotations

import datetime
import ipaddress

from hypothesis import given
from hypothesis import strategies as st
from OpenSSL import SSL
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.test import iosim
from twisted.web.resource import Resource
from twisted.web.server import Request, Site
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from tests.support import pki
from tests.test_device import NOW, FakeIndex
from tests.test_device import Ems, FakeIndex
from tests.tls.loopback import (
    DEVICE,
    EMS2_CA,
    EMS_CA,
    GATEWAY,
    SERVER_CA,
    ProbeClient,
    Recorder,
    deviceRecord,
    flipSignature,
    memoryPair,
    nowClock,
    serverCertificate,
    verifier,
)
from ztnagw import errors
from ztnagw.device import CN_NOT_UID, NOT_EMS_ISSUED, VerdictKind
from ztnagw.tls import certcheck, server
from ztnagw.tls.posture import TLSConfigurationError
from ztnagw.tls.server import (
    DeviceCertificateVerifier,
    HandshakeFacts,
    HandshakeIncomplete,
    NotVerifiedHere,
    ServerCertificate,
    ServerConnectionCreator,
    SNIEntry,
    handshakeFacts,
    parseHostPattern,
    presentedCertificate,
)

_DAY = datetime.timedelta(days=1)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


class LogCatcher:
    """
    Collects the log events emitted while it is installed.
    """

    def __init__(self, case: SynchronousTestCase) -> None:
        self.events: list[dict] = []
        globalLogPublisher.addObserver(self.events.append)
        case.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def about(self, namespace: str) -> list[dict]:
        """
        The events logged by C{namespace}.
        """
        return [e for e in self.events if e.get("log_namespace") == namespace]


class HandshakeMixin:
    """
    Runs in-memory handshakes against a L{ServerConnectionCreator}.
    """

    def facts(
        self,
        client: ProbeClient,
        creator: ServerConnectionCreator | None = None,
        index: FakeIndex | None = None,
    ) -> HandshakeFacts:
        """
        Handshake C{client} with C{creator} (default: the gateway
        certificate, client certificates requested) and return what the
        server recorded, after checking application data flows both ways.
        """
        if creator is None:
            creator = ServerConnectionCreator(
                serverCertificate(GATEWAY), verifier(index)
            )
        pair = memoryPair(creator, client, nowClock())
        pair.clientTLS.write(b"ping")
        pair.serverTLS.write(b"pong")
        pair.pump.flush()
        self.assertEqual(pair.server.received, b"ping")
        self.assertEqual(pair.client.received, b"pong")
        return handshakeFacts(pair.serverTLS)


class DeviceCertificateTests(HandshakeMixin, SynchronousTestCase):
    """
    Every kind of client certificate completes the handshake and is
    recorded with the right problem and verdict.
    """

    def assertProblem(
        self,
        certificate: pki.Issued,
        problem: str | None,
        chain: tuple[pki.Issued, ...] = (),
        emsId: int | None = 1,
    ) -> HandshakeFacts:
        """
        The handshake with C{certificate} records C{problem} and C{emsId},
        and judges the device invalid (001) if there is a problem.
        """
        facts = self.facts(ProbeClient(certificate, chain))
        assert facts.presented is not None
        self.assertEqual(facts.presented.problem, problem)
        self.assertEqual(facts.presented.emsId, emsId)
        self.assertEqual(facts.presented.leaf, certificate.certificate)
        self.assertTrue(facts.clientCertificateRequested)
        if problem is not None:
            assert facts.verdict is not None
            self.assertEqual(facts.verdict.kind, VerdictKind.INVALID)
            self.assertEqual(facts.verdict.error, errors.INVALID_CERTIFICATE)
        return facts

    def test_noCertificate(self) -> None:
        """
        A client without a certificate completes the handshake; nothing is
        presented and the verdict says so.
        """
        facts = self.facts(ProbeClient())
        self.assertIsNone(facts.presented)
        assert facts.verdict is not None
        self.assertEqual(facts.verdict.kind, VerdictKind.NO_CERTIFICATE)
        self.assertTrue(facts.clientCertificateRequested)

    def test_valid(self) -> None:
        """
        A registered device certificate from the EMS CA is recorded with its
        UID and EMS and judged valid, under TLS 1.3 and TLS 1.2.
        """
        for version, name in [
            (SSL.TLS1_3_VERSION, "TLSv1.3"),
            (SSL.TLS1_2_VERSION, "TLSv1.2"),
        ]:
            facts = self.assertProblem(DEVICE, None)
            facts = self.facts(ProbeClient(DEVICE, version=version))
            assert facts.presented is not None and facts.verdict is not None
            self.assertEqual(facts.presented.uid, pki.DEVICE_UID)
            self.assertEqual(facts.presented.certSerial, "5EED")
            self.assertEqual(facts.verdict.kind, VerdictKind.VALID)
            self.assertEqual(facts.verdict.record, deviceRecord())
            self.assertEqual(facts.tlsVersion, name)

    def test_secondEms(self) -> None:
        """
        A device certificate from the second EMS's CA is recorded with that
        EMS's id and judged against its registry.
        """
        facts = self.assertProblem(
            pki.makeDevice(EMS2_CA, pki.DEVICE_UID), None, emsId=2
        )
        assert facts.verdict is not None
        self.assertEqual(facts.verdict.kind, VerdictKind.UNKNOWN)

    def test_rotatedCertificateAuthorities(self) -> None:
        """
        During an EMS CA rotation the verifier trusts both CAs of the EMS:
        device certificates from either are recorded as that EMS's, and
        their names are both sent as acceptable client CAs.
        """
        previous = pki.makeCA("ztnagw test EMS 1 previous CA", keySlot=22)
        rotated = DeviceCertificateVerifier(
            {1: (EMS_CA.certificate, previous.certificate)},
            {1: FakeIndex([deviceRecord()])},
            {1: Ems()},
            nowClock(),
        )
        creator = ServerConnectionCreator(serverCertificate(GATEWAY), rotated)
        for ca in (EMS_CA, previous):
            device = pki.makeDevice(ca, pki.DEVICE_UID, serial=0x5EED)
            facts = self.facts(ProbeClient(device), creator)
            assert facts.presented is not None
            self.assertIsNone(facts.presented.problem)
            self.assertEqual(facts.presented.emsId, 1)
        stranger = pki.makeDevice(EMS2_CA, pki.DEVICE_UID)
        facts = self.facts(ProbeClient(stranger), creator)
        assert facts.presented is not None
        self.assertIsNotNone(facts.presented.problem)

    def test_anotherCA(self) -> None:
        """
        A certificate from a CA that is no EMS's is not issued by an EMS CA,
        whether or not the client sends that CA along.
        """
        other = pki.makeCA("Not an EMS", keySlot=30)
        device = pki.makeDevice(other, pki.DEVICE_UID)
        self.assertProblem(device, NOT_EMS_ISSUED, emsId=None)
        self.assertProblem(device, NOT_EMS_ISSUED, chain=(other,), emsId=None)

    def test_selfSigned(self) -> None:
        """
        A self-signed certificate naming a registered UID is not issued by
        an EMS CA.
        """
        selfSigned = pki.makeCA(pki.DEVICE_UID, keySlot=31)
        self.assertProblem(selfSigned, NOT_EMS_ISSUED, emsId=None)

    def test_expired(self) -> None:
        """
        An expired device certificate is recorded as expired, still with
        the EMS that issued it.
        """
        device = pki.makeDevice(
            EMS_CA, pki.DEVICE_UID, notBefore=_now() - 3 * _DAY, notAfter=_now() - _DAY
        )
        self.assertProblem(device, certcheck.EXPIRED)

    def test_notYetValid(self) -> None:
        """
        A device certificate valid only from tomorrow is not yet valid.
        """
        device = pki.makeDevice(
            EMS_CA, pki.DEVICE_UID, notBefore=_now() + _DAY, notAfter=_now() + 3 * _DAY
        )
        self.assertProblem(device, certcheck.NOT_YET_VALID)

    def test_serverAuthOnly(self) -> None:
        """
        A certificate whose extended key usage lacks clientAuth is refused.
        """
        device = pki.makeDevice(
            EMS_CA, pki.DEVICE_UID, clientAuth=False, serverAuth=True
        )
        self.assertProblem(device, certcheck.NO_CLIENT_AUTH)

    def test_noExtendedKeyUsage(self) -> None:
        """
        A certificate without any extended key usage is refused too (OpenSSL
        alone would accept it for any purpose).
        """
        device = pki.makeDevice(EMS_CA, pki.DEVICE_UID, extendedKeyUsage=False)
        self.assertProblem(device, certcheck.NO_CLIENT_AUTH)

    def test_intermediate(self) -> None:
        """
        A certificate issued by an intermediate under the EMS CA, sent with
        the intermediate, is refused: device certificates come from the EMS
        CA itself.
        """
        intermediate = pki.makeCA("Intermediate", issuer=EMS_CA, keySlot=32)
        device = pki.makeDevice(intermediate, pki.DEVICE_UID)
        self.assertProblem(
            device, certcheck.INTERMEDIATE, chain=(intermediate,), emsId=None
        )

    def test_badSignature(self) -> None:
        """
        A certificate naming the EMS CA whose signature does not verify is
        refused as such.
        """
        self.assertProblem(flipSignature(DEVICE), certcheck.BAD_SIGNATURE)

    def test_commonNameVariants(self) -> None:
        """
        Subjects that do not hold exactly one exact UID are refused: lower
        case, spaces, two CNs, a NUL byte, the UID only in a SAN.
        """
        variants = [
            dict(commonNames=(pki.DEVICE_UID.lower(),)),
            dict(commonNames=(" " + pki.DEVICE_UID,)),
            dict(commonNames=(pki.DEVICE_UID + " ",)),
            dict(commonNames=(pki.DEVICE_UID, pki.DEVICE_UID)),
            dict(commonNames=(pki.DEVICE_UID + "\x00evil",)),
            dict(commonNames=(), dnsNames=[pki.DEVICE_UID]),
        ]
        for variant in variants:
            leaf = pki.makeLeaf(EMS_CA, **variant)  # type: ignore[arg-type]
            facts = self.assertProblem(leaf, CN_NOT_UID)
            assert facts.presented is not None
            self.assertIsNone(facts.presented.uid)

    def test_registryIndexRaises(self) -> None:
        """
        An index that raises does not disturb the handshake; the verdict
        fails closed (066) and the handshake log says why.
        """
        logs = LogCatcher(self)
        index = FakeIndex([deviceRecord()])
        index.failure = KeyError("index exploded")
        facts = self.facts(ProbeClient(DEVICE), index=index)
        assert facts.verdict is not None and facts.presented is not None
        self.assertIsNone(facts.presented.problem)
        self.assertEqual(facts.verdict.kind, VerdictKind.REGISTRY_UNAVAILABLE)
        self.assertEqual(facts.verdict.error, errors.UNKNOWN_DEVICE)
        [event] = logs.about("ztnagw.tls.server")
        self.assertEqual(event["verdict"], "registry-unavailable")
        self.assertIn("index exploded", event["reason"])

    def test_callbackFailure(self) -> None:
        """
        An exception inside the verify callback is logged, the handshake
        completes, and the certificate is recorded as invalid.
        """

        def explode(*args: object) -> None:
            raise ZeroDivisionError("bug")

        self.patch(server, "certificateProblem", explode)
        facts = self.facts(ProbeClient(DEVICE))
        assert facts.presented is not None and facts.verdict is not None
        self.assertEqual(facts.presented.problem, certcheck.INTERNAL_ERROR)
        self.assertEqual(facts.verdict.kind, VerdictKind.INVALID)
        self.assertTrue(self.flushLoggedErrors(ZeroDivisionError))

    def test_callbackCannotRecord(self) -> None:
        """
        If the certificate cannot even be recorded as invalid, the handshake
        fails rather than admit an unrecorded certificate.
        """

        def explode(*args: object, **kwargs: object) -> None:
            raise ZeroDivisionError("bug")

        self.patch(server, "certificateProblem", explode)
        self.patch(server.PresentedCertificate, "fromLeaf", explode)
        creator = ServerConnectionCreator(serverCertificate(GATEWAY), verifier())
        pair = memoryPair(creator, ProbeClient(DEVICE), nowClock())
        self.assertEqual(pair.server.received, b"")
        self.assertIsNotNone(pair.server.lost)
        self.assertIsNotNone(pair.client.lost)
        self.assertRaises(HandshakeIncomplete, handshakeFacts, pair.serverTLS)
        self.assertTrue(self.flushLoggedErrors(ZeroDivisionError))

    def test_verdictAtHandshakeUsesTheClock(self) -> None:
        """
        The handshake verdict is judged at the verifier's clock time.
        """
        index = FakeIndex([deviceRecord(lastSeen=NOW - 1000)])
        facts = self.facts(ProbeClient(DEVICE), index=index)
        assert facts.verdict is not None
        self.assertEqual(facts.verdict.kind, VerdictKind.OFFLINE)

    def test_handshakeLog(self) -> None:
        """
        Each handshake is logged once, with the certificate's subject,
        serial and fingerprint but not the certificate itself; refusals at
        info level, valid devices at debug level.
        """
        logs = LogCatcher(self)
        self.facts(ProbeClient(DEVICE))
        self.facts(ProbeClient(flipSignature(DEVICE)))
        valid, invalid = logs.about("ztnagw.tls.server")
        self.assertEqual(valid["log_level"], LogLevel.debug)
        self.assertEqual(valid["verdict"], "valid")
        self.assertEqual(valid["uid"], pki.DEVICE_UID)
        self.assertEqual(valid["certSerial"], "5EED")
        self.assertEqual(invalid["log_level"], LogLevel.info)
        self.assertEqual(invalid["verdict"], "invalid")
        self.assertEqual(invalid["error"], "001")
        self.assertEqual(invalid["reason"], certcheck.BAD_SIGNATURE)
        self.assertEqual(len(invalid["fingerprint"]), 64)
        for event in (valid, invalid):
            self.assertNotIn("BEGIN CERTIFICATE", repr(event))


class AccessorTests(SynchronousTestCase):
    """
    Tests for L{handshakeFacts} and L{presentedCertificate}.
    """

    def test_foreignTransport(self) -> None:
        """
        A transport that did not come from a L{ServerConnectionCreator}
        has no facts: asking is an error, not "no certificate".
        """
        self.assertRaises(NotVerifiedHere, handshakeFacts, Protocol())
        self.assertRaises(NotVerifiedHere, presentedCertificate, object())

    def test_beforeHandshake(self) -> None:
        """
        Before the handshake completes nothing is known: asking is an error.
        """
        creator = ServerConnectionCreator(serverCertificate(GATEWAY), verifier())
        tlsProtocol = Protocol()
        creator.serverConnectionForTLS(tlsProtocol)
        self.assertRaises(HandshakeIncomplete, presentedCertificate, tlsProtocol)

    def test_presentedCertificate(self) -> None:
        """
        L{presentedCertificate} is the facts' certificate.
        """
        creator = ServerConnectionCreator(serverCertificate(GATEWAY), verifier())
        serverTLS = memoryPair(creator, ProbeClient(DEVICE), nowClock()).serverTLS
        presented = presentedCertificate(serverTLS)
        assert presented is not None
        self.assertEqual(presented, handshakeFacts(serverTLS).presented)
        self.assertEqual(presented.uid, pki.DEVICE_UID)

    def test_interface(self) -> None:
        """
        The creator provides L{IOpenSSLServerConnectionCreator}.
        """
        creator = ServerConnectionCreator(serverCertificate(GATEWAY), verifier())
        self.assertTrue(verifyObject(IOpenSSLServerConnectionCreator, creator))


class _WhoAmI(Resource):
    """
    Answers with the UID of the device certificate, read the way a
    twisted.web resource reads it.
    """

    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        presented = presentedCertificate(request.channel.transport)
        sameThroughRequest = presentedCertificate(request.transport)
        assert presented == sameThroughRequest
        return (presented.uid if presented else "none").encode("ascii")  # type: ignore


class TwistedWebTests(SynchronousTestCase):
    """
    The accessor works from a twisted.web resource.
    """

    def test_requestTransport(self) -> None:
        """
        C{request.channel.transport} and C{request.transport} lead to the
        handshake facts.
        """
        creator = ServerConnectionCreator(serverCertificate(GATEWAY), verifier())
        clock = nowClock()
        site = Site(_WhoAmI(), reactor=clock)
        serverFactory = TLSMemoryBIOFactory(creator, False, site, clock)
        clientFactory = TLSMemoryBIOFactory(
            ProbeClient(DEVICE), True, Factory.forProtocol(Recorder), clock
        )
        clientTLS, _, pump = iosim.connectedServerAndClient(
            lambda: serverFactory.buildProtocol(None),
            lambda: clientFactory.buildProtocol(None),
            clock=clock,
        )
        clientTLS.write(b"GET / HTTP/1.1\r\nHost: gateway.test\r\n\r\n")
        pump.flush()
        response = clientTLS.wrappedProtocol.received
        self.assertTrue(response.startswith(b"HTTP/1.1 200"), response)
        self.assertTrue(response.endswith(pki.DEVICE_UID.encode("ascii")), response)


WWW = pki.makeServer(SERVER_CA, names=("www.example.com",), ipAddresses=())
WILD = pki.makeServer(SERVER_CA, names=("*.example.com",), ipAddresses=())
OPEN = pki.makeServer(SERVER_CA, names=("open.example.org",), ipAddresses=())


class SNITests(HandshakeMixin, SynchronousTestCase):
    """
    Certificate choice by SNI, and verification that survives the switch.
    """

    def creator(self, clientCertificate: bool = True) -> ServerConnectionCreator:
        """
        A creator with exact, wildcard and C{client-cert disable} entries.
        """
        return ServerConnectionCreator(
            serverCertificate(GATEWAY),
            verifier(),
            [
                SNIEntry("www.example.com", serverCertificate(WWW)),
                SNIEntry("*.example.com", serverCertificate(WILD)),
                SNIEntry("open.example.org", serverCertificate(OPEN), False),
                SNIEntry("secure.example.org", serverCertificate(OPEN), True),
            ],
            clientCertificate=clientCertificate,
        )

    def served(self, serverName: str | None) -> tuple[str, HandshakeFacts]:
        """
        The subject CN of the certificate served for C{serverName}, and the
        facts.
        """
        probe = ProbeClient(DEVICE, serverName=serverName)
        facts = self.facts(probe, self.creator())
        cn = (
            probe.serverCertificate()
            .subject.get_attributes_for_oid(pki.NameOID.COMMON_NAME)[0]
            .value
        )
        return str(cn), facts

    def test_choice(self) -> None:
        """
        An exact name wins over a wildcard; a wildcard covers exactly one
        label; no SNI and unknown names get the default; names are compared
        without case.
        """
        cases = {
            "www.example.com": "www.example.com",
            "WWW.Example.COM": "www.example.com",
            "app.example.com": "*.example.com",
            "a.b.example.com": "gateway.test",
            "example.com": "gateway.test",
            "unknown.test": "gateway.test",
            None: "gateway.test",
        }
        for name, expected in cases.items():
            cn, facts = self.served(name)
            self.assertEqual(cn, expected, name)
            self.assertEqual(facts.serverName, name.lower() if name else None)

    def test_switchKeepsVerification(self) -> None:
        """
        After switching to an SNI certificate, the device certificate is
        still verified by the shared callback against the shared trust
        store: a valid device is valid, a bad one is refused.
        """
        facts = self.facts(
            ProbeClient(DEVICE, serverName="app.example.com"), self.creator()
        )
        assert facts.verdict is not None
        self.assertEqual(facts.verdict.kind, VerdictKind.VALID)
        probe = ProbeClient(flipSignature(DEVICE), serverName="app.example.com")
        facts = self.facts(probe, self.creator())
        assert facts.presented is not None
        self.assertEqual(facts.presented.problem, certcheck.BAD_SIGNATURE)

    def test_switchToRequiringEntry(self) -> None:
        """
        The bypass OpenSSL invites: the default asks for no certificate, an
        SNI entry does.  Naming that entry's host must get a certificate
        request and the device verified, even though C{set_context} does
        not carry verify settings.
        """
        probe = ProbeClient(DEVICE, serverName="secure.example.org")
        facts = self.facts(probe, self.creator(clientCertificate=False))
        self.assertTrue(facts.clientCertificateRequested)
        assert facts.verdict is not None
        self.assertEqual(facts.verdict.kind, VerdictKind.VALID)
        self.assertNotEqual(probe.clientCANames(), [])

    def test_defaultWithoutCertificateRequest(self) -> None:
        """
        With the default asking for no certificate, a client that names no
        entry is not asked for one and presents none.
        """
        probe = ProbeClient(DEVICE)
        facts = self.facts(probe, self.creator(clientCertificate=False))
        self.assertFalse(facts.clientCertificateRequested)
        self.assertIsNone(facts.presented)
        self.assertEqual(probe.clientCANames(), [])

    def test_switchToDisabledEntry(self) -> None:
        """
        An entry with C{client-cert disable} sends no certificate request,
        even though the default would.
        """
        probe = ProbeClient(DEVICE, serverName="open.example.org")
        facts = self.facts(probe, self.creator())
        self.assertFalse(facts.clientCertificateRequested)
        self.assertIsNone(facts.presented)
        assert facts.verdict is not None
        self.assertEqual(facts.verdict.kind, VerdictKind.NO_CERTIFICATE)
        self.assertEqual(probe.clientCANames(), [])

    def test_clientCANames(self) -> None:
        """
        The acceptable client CA names are the EMS CA subjects, on the
        default certificate and after an SNI switch.
        """
        expected = [EMS_CA.certificate.subject, EMS2_CA.certificate.subject]
        for name in (None, "www.example.com"):
            probe = ProbeClient(DEVICE, serverName=name)
            self.facts(probe, self.creator())
            self.assertEqual(probe.clientCANames(), expected)

    def test_duplicatePattern(self) -> None:
        """
        Two entries for one pattern are a configuration error.
        """
        entry = SNIEntry("www.example.com", serverCertificate(WWW))
        self.assertRaises(
            TLSConfigurationError,
            ServerConnectionCreator,
            serverCertificate(GATEWAY),
            verifier(),
            [entry, SNIEntry("WWW.example.com", serverCertificate(WILD))],
        )

    def test_sniFailureKeepsDefault(self) -> None:
        """
        An error while choosing by SNI is logged and the connection stays on
        the default certificate and its verification.
        """
        creator = self.creator()

        def explode(name: str) -> None:
            raise ZeroDivisionError("bug")

        self.patch(creator, "_lookup", explode)
        probe = ProbeClient(DEVICE, serverName="www.example.com")
        facts = self.facts(probe, creator)
        self.assertEqual(probe.serverCertificate(), GATEWAY.certificate)
        assert facts.verdict is not None
        self.assertEqual(facts.verdict.kind, VerdictKind.VALID)
        self.assertTrue(self.flushLoggedErrors(ZeroDivisionError))


class ALPNTests(HandshakeMixin, SynchronousTestCase):
    """
    ALPN is pinned to HTTP/1.1.
    """

    def negotiated(self, offer: tuple[bytes, ...]) -> bytes | None:
        """
        What the server picks from C{offer}.
        """
        probe = ProbeClient(DEVICE, alpn=offer)
        creator = ServerConnectionCreator(serverCertificate(GATEWAY), verifier())
        return memoryPair(creator, probe, nowClock()).clientTLS.negotiatedProtocol

    def test_http11(self) -> None:
        """
        HTTP/1.1 is chosen even when HTTP/2 is preferred by the client.
        """
        self.assertEqual(self.negotiated((b"h2", b"http/1.1")), b"http/1.1")

    def test_onlyH2(self) -> None:
        """
        A client offering only HTTP/2 gets no protocol (and the handshake
        still completes).
        """
        self.assertIsNone(self.negotiated((b"h2",)))


class ServerCertificateTests(SynchronousTestCase):
    """
    Tests for L{ServerCertificate.fromPEM} and certificate loading.
    """

    def test_fromPEM(self) -> None:
        """
        The first PEM certificate is the certificate, the rest its chain.
        """
        intermediate = pki.makeCA("Intermediate", issuer=SERVER_CA, keySlot=33)
        leaf = pki.makeServer(intermediate)
        loaded = ServerCertificate.fromPEM(
            leaf.certificatePem() + intermediate.certificatePem(), leaf.keyPem()
        )
        self.assertEqual(loaded.certificate, leaf.certificate)
        self.assertEqual(loaded.chain, (intermediate.certificate,))

    def test_wrongKey(self) -> None:
        """
        A key that is not the certificate's is refused.
        """
        other = pki.makeServer(SERVER_CA, keySlot=None)
        with self.assertRaises(TLSConfigurationError) as caught:
            ServerCertificate.fromPEM(GATEWAY.certificatePem(), other.keyPem())
        self.assertIn("does not belong", str(caught.exception))

    def test_garbage(self) -> None:
        """
        Unreadable certificates and keys are refused with a message.
        """
        self.assertRaises(
            TLSConfigurationError, ServerCertificate.fromPEM, b"junk", GATEWAY.keyPem()
        )
        self.assertRaises(
            TLSConfigurationError,
            ServerCertificate.fromPEM,
            GATEWAY.certificatePem(),
            b"junk",
        )

    def test_mismatchedValue(self) -> None:
        """
        A creator refuses a certificate whose key does not match it.
        """
        other = pki.makeServer(SERVER_CA, keySlot=None)
        broken = ServerCertificate(GATEWAY.certificate, other.key)  # type: ignore
        self.assertRaises(
            TLSConfigurationError, ServerConnectionCreator, broken, verifier()
        )


_labels = st.from_regex(r"\A[a-z0-9](?:[a-z0-9-]{0,8}[a-z0-9])?\Z", fullmatch=True)


class HostPatternTests(SynchronousTestCase):
    """
    Tests for L{parseHostPattern}.
    """

    def test_examples(self) -> None:
        """
        Exact names and one-label wildcards are accepted and lower-cased.
        """
        self.assertEqual(parseHostPattern("WWW.Example.com."), "www.example.com")
        self.assertEqual(parseHostPattern("*.Example.com"), "*.example.com")
        self.assertEqual(parseHostPattern("localhost"), "localhost")
        self.assertEqual(
            parseHostPattern("xn--bcher-kva.example"), "xn--bcher-kva.example"
        )

    def test_refused(self) -> None:
        """
        Partial wildcards, bare wildcards, wildcards over a top-level
        domain, IP addresses, empty labels and non-ASCII names are refused.
        """
        for bad in [
            "",
            "*",
            "*.com",
            "w*.example.com",
            "www.*.example.com",
            "**.example.com",
            "10.0.0.1",
            "a..example.com",
            ".example.com",
            "-a.example.com",
            "bücher.example",
            "a" * 64 + ".example.com",
            "exa mple.com",
        ]:
            self.assertRaises(ValueError, parseHostPattern, bad)

    @given(st.lists(_labels, min_size=1, max_size=5), st.booleans())
    def test_wellFormedAccepted(self, labels: list[str], wildcard: bool) -> None:
        """
        Any name of well-formed labels is accepted unchanged (with a
        wildcard over two labels or more).
        """
        name = ".".join(labels)
        try:
            ipaddress.ip_address(name)
        except ValueError:
            pass
        else:
            self.assertRaises(ValueError, parseHostPattern, name)
            return
        if wildcard and len(labels) >= 2:
            self.assertEqual(parseHostPattern("*." + name), "*." + name)
        else:
            self.assertEqual(parseHostPattern(name), name)

    @given(st.text(max_size=30))
    def test_anythingIsAcceptedOrRefused(self, text: str) -> None:
        """
        Any text is either refused with L{ValueError} or normalised to a
        pattern that parses to itself.
        """
        try:
            pattern = parseHostPattern(text)
        except ValueError:
            return
        self.assertEqual(parseHostPattern(pattern), pattern)
        self.assertTrue(pattern.isascii())
        self.assertEqual(pattern, pattern.lower())
