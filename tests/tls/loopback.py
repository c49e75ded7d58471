"""
Helpers for TLS tests: a probing test client, an application protocol that
records what happens, in-memory TLS pairs over L{twisted.test.iosim}, and a
device PKI with registry.
"""

from __future__ import annotations

from typing import Callable, Sequence

from attrs import frozen

from cryptography import x509
from OpenSSL import SSL, crypto
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from twisted.test import iosim
from zope.interface import implementer

from tests.support import pki
from tests.test_device import NOW, Ems, FakeIndex
from ztnagw.registry.record import EndpointRecord, canonicalSerial
from ztnagw.tls.server import DeviceCertificateVerifier, ServerCertificate

EMS_CA = pki.makeCA("ztnagw test EMS 1 CA", keySlot=20)
EMS2_CA = pki.makeCA("ztnagw test EMS 2 CA", keySlot=21)
SERVER_CA = pki.makeCA("ztnagw test server CA", keySlot=22)
GATEWAY = pki.makeServer(
    SERVER_CA, names=("gateway.test", "localhost"), ipAddresses=("127.0.0.1",)
)
DEVICE = pki.makeDevice(EMS_CA, pki.DEVICE_UID, serial=0x5EED)


def serverCertificate(issued: pki.Issued) -> ServerCertificate:
    """
    A L{ServerCertificate} from a test certificate.
    """
    return ServerCertificate(issued.certificate, issued.key)  # type: ignore[arg-type]


def deviceRecord(device: pki.Issued = DEVICE, **changes: object) -> EndpointRecord:
    """
    The registry record that makes C{device} valid at L{NOW}.
    """
    subject = device.certificate.subject.get_attributes_for_oid(
        x509.NameOID.COMMON_NAME
    )
    values = dict(
        uid=str(subject[0].value),
        certSerial=canonicalSerial(device.serial),
        emsSerial=Ems().serialNumber,
        lastSeen=NOW - 1,
    )
    values.update(changes)
    return EndpointRecord(**values)  # type: ignore[arg-type]


def verifier(
    index: FakeIndex | None = None, clock: Clock | None = None
) -> DeviceCertificateVerifier:
    """
    A verifier trusting L{EMS_CA} as EMS 1 and L{EMS2_CA} as EMS 2, with
    C{index} (default: L{DEVICE} registered) for EMS 1.
    """
    if clock is None:
        clock = nowClock()
    if index is None:
        index = FakeIndex([deviceRecord()])
    return DeviceCertificateVerifier(
        {1: EMS_CA.certificate, 2: EMS2_CA.certificate},
        {1: index, 2: FakeIndex()},
        {1: Ems(), 2: Ems(serialNumber="FCTEMS0000000002")},
        clock,
    )


def nowClock() -> Clock:
    """
    A clock at L{NOW}.
    """
    clock = Clock()
    clock.advance(NOW)
    return clock


@implementer(IOpenSSLClientConnectionCreator)
class ProbeClient:
    """
    A TLS client for probing servers in tests: it presents the certificate
    it is given (or none), accepts any server certificate, and keeps every
    connection so tests can ask what the server sent.

    @ivar connections: the OpenSSL connections made, in order.
    """

    def __init__(
        self,
        certificate: pki.Issued | None = None,
        chain: Sequence[pki.Issued] = (),
        serverName: str | None = None,
        alpn: Sequence[bytes] = (b"http/1.1",),
        version: int | None = None,
    ) -> None:
        """
        @param certificate: the client certificate to present.
        @param chain: certificates to send after it.
        @param serverName: the SNI name to send.
        @param alpn: the ALPN protocols to offer.
        @param version: pin the TLS version (C{SSL.TLS1_2_VERSION}...).
        """
        context = SSL.Context(SSL.TLS_METHOD)
        if certificate is not None:
            context.use_certificate(certificate.certificate)
            context.use_privatekey(certificate.key)
            for extra in chain:
                context.add_extra_chain_cert(extra.certificate)
        if version is not None:
            context.set_min_proto_version(version)
            context.set_max_proto_version(version)
        context.set_verify(SSL.VERIFY_PEER, lambda *args: True)
        self._context = context
        self._serverName = serverName
        self._alpn = list(alpn)
        self.connections: list[SSL.Connection] = []

    def clientConnectionForTLS(self, tlsProtocol: object) -> SSL.Connection:
        """
        See L{IOpenSSLClientConnectionCreator}.
        """
        connection = SSL.Connection(self._context, None)
        if self._serverName is not None:
            connection.set_tlsext_host_name(self._serverName.encode("ascii"))
        if self._alpn:
            connection.set_alpn_protos(self._alpn)
        self.connections.append(connection)
        return connection

    def serverCertificate(self) -> x509.Certificate:
        """
        The certificate the server presented on the last connection.
        """
        certificate = self.connections[-1].get_peer_certificate(as_cryptography=True)
        assert certificate is not None
        return certificate

    def clientCANames(self) -> list[x509.Name]:
        """
        The acceptable client CA names the server sent on the last
        connection (empty if it asked for no certificate).
        """
        names = self.connections[-1].get_client_ca_list()
        return [x509.Name.from_rfc4514_string(_rfc4514(n)) for n in names]


def _rfc4514(name: crypto.X509Name) -> str:
    # pyOpenSSL names have no RFC 4514 rendering; the test CAs only use CN.
    return ",".join(f"{k.decode()}={v.decode()}" for k, v in name.get_components())


class Recorder(Protocol):
    """
    An application protocol that records what happens to it.

    @ivar received: the bytes received.
    @ivar lost: the reason the connection was lost, once it is.
    """

    def __init__(self) -> None:
        self.received = b""
        self.lost: Failure | None = None

    def dataReceived(self, data: bytes) -> None:
        """
        Record C{data}.
        """
        self.received += data

    def connectionLost(self, reason: Failure = Failure(Exception())) -> None:
        """
        Record C{reason}.
        """
        self.lost = reason


@frozen
class MemoryPair:
    """
    A client and server connected in memory.

    @ivar clientTLS: the client's TLS protocol.
    @ivar serverTLS: the server's TLS protocol.
    @ivar client: the client's application protocol.
    @ivar server: the server's application protocol.
    @ivar pump: moves bytes between them.
    """

    clientTLS: TLSMemoryBIOProtocol
    serverTLS: TLSMemoryBIOProtocol
    client: Recorder
    server: Recorder
    pump: iosim.IOPump


def memoryPair(
    server: object,
    client: IOpenSSLClientConnectionCreator,
    clock: Clock | None = None,
    factory: Callable[..., TLSMemoryBIOFactory] = TLSMemoryBIOFactory,
    serverProtocol: Callable[[], Protocol] = Recorder,
    clientProtocol: Callable[[], Protocol] = Recorder,
) -> MemoryPair:
    """
    Connect a TLS client and server in memory and run the handshake.

    @param server: the server connection creator.
    @param client: the client connection creator.
    @param factory: the TLS factory (stock Twisted's by default).
    @param serverProtocol: builds the server application protocol.
    @param clientProtocol: builds the client application protocol.
    """
    if clock is None:
        clock = Clock()
    serverFactory = factory(server, False, Factory.forProtocol(serverProtocol), clock)
    clientFactory = factory(client, True, Factory.forProtocol(clientProtocol), clock)
    clientTLS, serverTLS, pump = iosim.connectedServerAndClient(
        lambda: serverFactory.buildProtocol(None),
        lambda: clientFactory.buildProtocol(None),
        clock=clock,
        greet=False,
    )
    pair = MemoryPair(
        clientTLS, serverTLS, clientTLS.wrappedProtocol, serverTLS.wrappedProtocol, pump
    )
    pump.flush()
    return pair


def flipSignature(issued: pki.Issued) -> pki.Issued:
    """
    The same certificate with one bit of its signature flipped, so that it
    names its real issuer but the signature does not verify.
    """
    from cryptography.hazmat.primitives.serialization import Encoding

    der = bytearray(issued.certificate.public_bytes(Encoding.DER))
    der[-1] ^= 0x01
    return pki.Issued(x509.load_der_x509_certificate(bytes(der)), issued.key)
