"""
The private Twisted and pyOpenSSL names L{ztnagw.tls.transport} relies on
still exist and still look the way the transport expects.

These tests fail on the first Twisted or pyOpenSSL release that renames or
reshapes one of them, before anything subtler breaks.  When one fails:
read the new upstream code, adapt C{ztnagw/tls/transport.py}, update the
recorded shape here, and run C{tests.tls.test_transport} (the behaviour).
"""

from __future__ import annotations

import hashlib
import importlib
import inspect

import OpenSSL
import twisted
from OpenSSL import SSL
from twisted.internet import tcp
from twisted.internet.protocol import Factory
from twisted.internet.task import Clock
from twisted.protocols import tls
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import providedBy

from tests.tls.loopback import GATEWAY, Recorder, serverCertificate, verifier
from ztnagw.tls import posture, transport
from ztnagw.tls.server import ServerConnectionCreator
from ztnagw.tls.transport import PRIVATE_NAMES, TLSFactory, _drainBIO

#: The Twisted and pyOpenSSL releases the shapes below were read from.
PINNED = {"twisted": "26.10.0", "pyOpenSSL": "26.4.0"}

#: SHA-256 (first 16 hex digits) of the source of each TLSMemoryBIOProtocol
#: method that TLSProtocol copies (_flushReceiveBIO) or overrides and calls
#: through, so that it depends on what the method does, not just its name.
METHOD_SOURCES = {
    "_flushReceiveBIO": "b45e129f60c44862",
    "_checkHandshakeStatus": "3902da2549f56145",
    "_unbufferPendingWrites": "c2b342c0a2c72978",
    "_shutdownTLS": "f72004ba90a03215",
    "_tlsShutdownFinished": "e78b042366fe0af0",
    "loseConnection": "5681a9bd1bd76930",
    "dataReceived": "0c9326eac628dc89",
    "connectionLost": "db44a0b303d81d19",
    "abortConnection": "3b083442ea198088",
    "write": "e029bcaebbb754c2",
    "registerProducer": "15968aeddd276cf2",
    "unregisterProducer": "678e56aca31507a7",
    "makeConnection": "c83b193e6cb07f9f",
    "_write": "b795cc8e83620d7d",
    "_flushSendBIO": "c034168e4f0faf2c",
    "_bufferedWrite": "88a1032b1e8fa054",
}


def _sourceDigest(function: object) -> str:
    return hashlib.sha256(inspect.getsource(function).encode()).hexdigest()[:16]  # type: ignore[arg-type]


class PinnedVersionTests(SynchronousTestCase):
    """
    The installed versions are the ones the shapes were recorded from.
    """

    def test_versions(self) -> None:
        """
        Twisted and pyOpenSSL are exactly the pinned releases.
        """
        self.assertEqual(twisted.__version__, PINNED["twisted"])
        self.assertEqual(OpenSSL.__version__, PINNED["pyOpenSSL"])


class TwistedShapeTests(SynchronousTestCase):
    """
    The Twisted internals the transport uses.
    """

    def connected(self) -> TLSMemoryBIOProtocol:
        """
        A stock TLS protocol, connected to a string transport.
        """
        creator = ServerConnectionCreator(serverCertificate(GATEWAY), verifier())
        factory = tls.TLSMemoryBIOFactory(
            creator, False, Factory.forProtocol(Recorder), Clock()
        )
        protocol = factory.buildProtocol(None)
        protocol.makeConnection(StringTransport())
        return protocol

    def test_inventoryExists(self) -> None:
        """
        Every name in L{PRIVATE_NAMES} resolves on what the transport uses
        it on (instances where the name is an instance attribute).
        """
        connected = self.connected()
        owners: dict[str, object] = {
            "twisted.protocols.tls.TLSMemoryBIOProtocol": connected,
            "twisted.protocols.tls.TLSMemoryBIOFactory": connected.factory,
            "twisted.protocols.tls": tls,
            "OpenSSL.SSL.Connection": SSL.Connection(SSL.Context(SSL.TLS_METHOD), None),
            "OpenSSL._util": importlib.import_module("OpenSSL._util"),
            # An instance attribute of accepted connections; see
            # test_tcpConnectionDeliversToProtocolAttribute.
            "twisted.internet.tcp.Connection": None,
        }
        self.assertEqual(set(owners), set(PRIVATE_NAMES))
        for owner, names in PRIVATE_NAMES.items():
            if owners[owner] is None:
                continue
            for name in names:
                value = owners[owner]
                for part in name.split("."):
                    value = getattr(value, part)

    def test_stateAttributes(self) -> None:
        """
        The state flags have the defaults the transport assumes, and a
        connected protocol has an OpenSSL connection and an empty send
        buffer.
        """
        self.assertIs(TLSMemoryBIOProtocol._lostTLSConnection, False)
        self.assertIs(TLSMemoryBIOProtocol._aborted, False)
        self.assertIs(TLSMemoryBIOProtocol._handshakeDone, False)
        self.assertIsNone(TLSMemoryBIOProtocol._producer)
        protocol = self.connected()
        self.assertIsInstance(protocol._tlsConnection, SSL.Connection)
        self.assertEqual(protocol._appSendBuffer, [])

    def test_makeConnectionShape(self) -> None:
        """
        The stock C{makeConnection} that L{transport.TLSProtocol} copies
        creates the OpenSSL connection through the factory's
        C{_creatorCallable}, connects the application only when
        C{_connectWrapped} says so (through C{ProtocolWrapper}, which
        declares the transport's interfaces, connects and registers), and
        starts the handshake; the copy declares the same interfaces.
        """
        source = inspect.getsource(TLSMemoryBIOProtocol.makeConnection)
        self.assertIn("self.factory._creatorCallable(self)", source)
        self.assertIn("if self._connectWrapped:", source)
        self.assertIn("self._checkHandshakeStatus()", source)
        wrapper = inspect.getsource(tls.ProtocolWrapper.makeConnection)
        for line in [
            "directlyProvides(self, providedBy(transport))",
            "Protocol.makeConnection(self, transport)",
            "self.factory.registerProtocol(self)",
            "self.wrappedProtocol.makeConnection(self)",
        ]:
            self.assertIn(line, wrapper)
        creator = ServerConnectionCreator(serverCertificate(GATEWAY), verifier())
        ours = TLSFactory(creator, False, Factory.forProtocol(Recorder), Clock()).buildProtocol(None)
        stock = tls.TLSMemoryBIOFactory(creator, False, Factory.forProtocol(Recorder), Clock()).buildProtocol(None)
        ours.makeConnection(StringTransport())
        stock.makeConnection(StringTransport())
        self.assertEqual(set(providedBy(ours)), set(providedBy(stock)) | {IHalfCloseableProtocol})
        self.assertIs(ours.wrappedProtocol.transport, ours)
        self.assertIsInstance(ours._tlsConnection, SSL.Connection)
        self.assertIn(ours, ours.factory.protocols)

    def test_methodSignatures(self) -> None:
        """
        The private methods take the arguments the transport passes.
        """
        for name in [
            "_flushSendBIO",
            "_flushReceiveBIO",
            "_shutdownTLS",
            "_checkHandshakeStatus",
            "_unbufferPendingWrites",
        ]:
            self.assertEqual(
                list(inspect.signature(getattr(TLSMemoryBIOProtocol, name)).parameters),
                ["self"],
                name,
            )
        self.assertEqual(
            list(
                inspect.signature(TLSMemoryBIOProtocol._tlsShutdownFinished).parameters
            ),
            ["self", "reason"],
        )

    def test_methodSources(self) -> None:
        """
        The methods the transport copies or wraps are unchanged.
        """
        changed = {
            name: _sourceDigest(getattr(TLSMemoryBIOProtocol, name))
            for name in METHOD_SOURCES
            if _sourceDigest(getattr(TLSMemoryBIOProtocol, name))
            != METHOD_SOURCES[name]
        }
        self.assertEqual(changed, {}, "review ztnagw/tls/transport.py against these")

    def test_aggregator(self) -> None:
        """
        L{tls._AggregateSmallWrites} takes a write function and a clock and
        has C{write}, C{flush} and C{close}; it buffers until flushed.
        """
        self.assertEqual(
            list(inspect.signature(tls._AggregateSmallWrites).parameters),
            ["write", "clock"],
        )
        written: list[bytes] = []
        aggregator = tls._AggregateSmallWrites(written.append, Clock())
        aggregator.write(b"a")
        aggregator.write(b"b")
        self.assertEqual(written, [])
        aggregator.flush()
        self.assertEqual(written, [b"ab"])
        aggregator.close()

    def test_tcpConnectionDeliversToProtocolAttribute(self) -> None:
        """
        A TCP connection keeps its protocol in C{protocol} and delivers
        received bytes to whatever that attribute holds when they arrive.
        """
        self.assertIn("protocol", inspect.signature(tcp.Connection.__init__).parameters)
        self.assertIn(
            "self.protocol.dataReceived(data)",
            inspect.getsource(tcp.Connection._dataReceived),
        )
        self.assertRegex(
            inspect.getsource(tcp.Connection.__init__),
            r"self\.protocol(: IProtocol)? = protocol",
        )

    def test_factoryUsesOurProtocol(self) -> None:
        """
        L{TLSFactory} builds L{transport.TLSProtocol}s (a subclass of the
        stock class), not Twisted's default C{BufferingTLSTransport}.
        """
        creator = ServerConnectionCreator(serverCertificate(GATEWAY), verifier())
        factory = TLSFactory(creator, False, Factory.forProtocol(Recorder), Clock())
        protocol = factory.buildProtocol(None)
        self.assertIsInstance(protocol, transport.TLSProtocol)
        self.assertNotIsInstance(protocol, tls.BufferingTLSTransport)


class PyOpenSSLShapeTests(SynchronousTestCase):
    """
    The pyOpenSSL internals the transport uses.
    """

    def test_partialWriteMode(self) -> None:
        """
        L{posture.MODE_ENABLE_PARTIAL_WRITE} is OpenSSL's flag (which
        pyOpenSSL sets on every new context), and ztnagw's contexts have it
        off, as L{transport.TLSProtocol._write} relies on.
        """
        from OpenSSL._util import lib

        self.assertEqual(posture.MODE_ENABLE_PARTIAL_WRITE, lib.SSL_MODE_ENABLE_PARTIAL_WRITE)
        stock = SSL.Context(SSL.TLS_METHOD)
        self.assertTrue(stock.set_mode(0) & posture.MODE_ENABLE_PARTIAL_WRITE)
        self.assertFalse(posture.hardenedContext().set_mode(0) & posture.MODE_ENABLE_PARTIAL_WRITE)

    def test_readBIO(self) -> None:
        """
        A memory-BIO connection exposes its read BIO as C{_into_ssl}, and
        the binding's C{BIO_read} gives back exactly the bytes written into
        it and not yet consumed.
        """
        context = SSL.Context(SSL.TLS_METHOD)
        connection = SSL.Connection(context, None)
        self.assertIsNotNone(connection._into_ssl)
        payload = bytes(range(256)) * 300
        connection.bio_write(payload)
        self.assertEqual(_drainBIO(connection._into_ssl), payload)
        self.assertEqual(_drainBIO(connection._into_ssl), b"")
