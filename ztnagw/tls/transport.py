# -*- test-case-name: tests.tls.test_transport,tests.tls.test_private_api -*-
"""
The TLS transport of every ztnagw connection, with two things stock Twisted
cannot do.

  - B{Half-close.}  A tunnelled protocol may finish sending and still
    expect an answer (C{nc -N}, rsync, an HTTP client that closes its
    write side).  L{TLSProtocol.loseWriteConnection} sends a TLS
    C{close_notify} and keeps reading; a C{close_notify} from the peer
    reaches an L{IHalfCloseableProtocol} application as
    C{readConnectionLost()} while it may go on writing.  Stock Twisted sends
    a bare TCP FIN under TLS instead (Twisted #5341), which the peer reads
    as truncation.  A TCP FIN without C{close_notify} is still truncation
    here.  OpenSSL allows writing after a received C{close_notify} in
    TLS 1.2 and 1.3; RFC 5246 asks a TLS 1.2 peer to answer at once, so a
    strict non-OpenSSL TLS 1.2 peer may cut the answer short.

  - B{Dropping TLS after a 101.}  A C{tls=0} tunnel carries an
    application's own encryption (SSH, RDP over TLS), so after the C{101}
    the gateway and the forwarder relay raw bytes on the same socket, at
    plain-TCP cost.  L{TLSProtocol.freezeTLS} stops decryption exactly
    after the record that completed the request (or the 101); the bytes
    behind it are raw.  L{TLSProtocol.dropTLS} sends what TLS still holds,
    takes the raw bytes back out of OpenSSL's read buffer and hands the
    TCP connection to a raw protocol.

It also closes the hole Twisted #7926 leaves: a peer that never answers our
C{close_notify} would keep the connection forever; a timer aborts it.

This is the one module that uses private Twisted and pyOpenSSL names; the
inventory is L{PRIVATE_NAMES} and C{tests/tls/test_private_api.py} fails the
day one of them changes.  Twisted and pyOpenSSL are pinned for this reason.

Small writes made in one reactor turn are coalesced before encryption (as
Twisted's own C{BufferingTLSTransport} does), which costs nothing measurable
on bulk transfers and less than half the CPU for an HTTP response written in
a few pieces; the buffer is flushed before every close, half-close and
drop.  See C{docs/tls.md} for the measurements.
"""

from __future__ import annotations

from typing import Any, Iterable

from OpenSSL.SSL import Error, WantReadError, ZeroReturnError
from twisted.internet.interfaces import (
    IDelayedCall,
    IHalfCloseableProtocol,
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
    IProtocol,
    IProtocolFactory,
    IReactorTime,
    ITCPTransport,
)
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper
from twisted.protocols.tls import (
    TLSMemoryBIOFactory,
    TLSMemoryBIOProtocol,
    _AggregateSmallWrites,
)
from twisted.python.failure import Failure
from zope.interface import directlyProvides, implementer, providedBy

# pyOpenSSL's cffi binding: the only way to read back the bytes OpenSSL has
# buffered but not yet consumed (Connection.bio_read reads the other BIO).
from OpenSSL._util import ffi as _ffi
from OpenSSL._util import lib as _lib

log = Logger()

#: Every private name this module relies on, by owner, for
#: C{tests/tls/test_private_api.py}.
PRIVATE_NAMES: dict[str, tuple[str, ...]] = {
    "twisted.protocols.tls.TLSMemoryBIOProtocol": (
        "_tlsConnection",
        "_flushSendBIO",
        "_flushReceiveBIO",
        "_shutdownTLS",
        "_tlsShutdownFinished",
        "_checkHandshakeStatus",
        "_unbufferPendingWrites",
        "_lostTLSConnection",
        "_aborted",
        "_handshakeDone",
        "_appSendBuffer",
        "_producer",
        "_connectWrapped",
        "_write",
        "_bufferedWrite",
    ),
    "twisted.protocols.tls.TLSMemoryBIOFactory": ("_creatorCallable",),
    "twisted.protocols.tls": ("_AggregateSmallWrites",),
    "twisted.internet.tcp.Connection": ("protocol",),
    "OpenSSL.SSL.Connection": ("_into_ssl",),
    "OpenSSL._util": ("ffi", "lib.BIO_read"),
}

#: How long to wait for the peer to complete a close we started before
#: aborting the connection (Twisted #7926).
CLOSE_TIMEOUT = 15.0

#: How many raw bytes to accept while TLS is frozen before pausing the TCP
#: transport again (its owner may have resumed it).
_FROZEN_LIMIT = 2**20

#: Writes at least this long skip the small-write aggregator.
_DIRECT_WRITE = 2**14

#: The most plaintext handed to OpenSSL in one SSL_write.
_WRITE_CHUNK = 2**18

#: How much TLS output is read from OpenSSL's memory BIO at once.
_READ_CHUNK = 2**17


class TLSDropRefused(Exception):
    """
    TLS cannot be dropped on this connection now without corrupting the
    stream; the message says why.  The caller must abort the connection.
    """


class _Detached:
    """
    What a dropped TLS wrapper uses as its transport: anything its former
    application still calls on it goes nowhere, so it cannot disturb the
    raw protocol that now owns the TCP connection.
    """

    connected = False
    disconnecting = True

    def __init__(self, host: Any, peer: Any) -> None:
        self._host = host
        self._peer = peer

    def getHost(self) -> Any:
        return self._host

    def getPeer(self) -> Any:
        return self._peer

    def __getattr__(self, name: str) -> Any:
        # write, loseConnection, pauseProducing, setTcpNoDelay...: no-ops.
        if name.startswith("__"):
            raise AttributeError(name)
        return lambda *args, **kwargs: None


def _drainBIO(bio: Any) -> bytes:
    """
    Read everything buffered in an OpenSSL memory BIO.
    """
    chunks = []
    size = 2**15
    buffer = _ffi.new("char[]", size)
    while True:
        count = _lib.BIO_read(bio, buffer, size)
        if count <= 0:
            break
        chunks.append(_ffi.buffer(buffer, count)[:])
    return b"".join(chunks)


@implementer(IHalfCloseableProtocol)
class TLSProtocol(TLSMemoryBIOProtocol):
    """
    A TLS transport with half-close, a close timeout and dropping TLS.

    It declares L{IHalfCloseableProtocol} towards TCP so that a TCP FIN
    arrives as L{readConnectionLost} and can be told apart from a TLS
    C{close_notify}.

    @ivar closeTimeout: seconds to wait for the peer after sending
        C{close_notify} on a full close, before aborting.
    """

    closeTimeout = CLOSE_TIMEOUT

    #: Deliver everything one TCP read decrypts to in one C{dataReceived}
    #: instead of one call per TLS record (16 KiB).  Only for an application
    #: that will never call L{freezeTLS}: freezing must stop decryption
    #: right after the record that completed its message.  A tunnel relay
    #: sets it (L{ztnagw.tunnel.relay.tuneReading}).
    coalesceReceived = False

    _writeClosed = False
    _closeNotifySent = False
    _readClosed = False
    _frozen = False
    _frozenSize = 0
    _frozenEOF = False
    _dropped = False
    _closeTimer: IDelayedCall | None = None
    _aggregator: _AggregateSmallWrites | None = None

    factory: TLSFactory

    def __init__(
        self,
        factory: TLSFactory,
        wrappedProtocol: IProtocol,
        _connectWrapped: bool = True,
    ) -> None:
        super().__init__(factory, wrappedProtocol, _connectWrapped)
        self._frozenBytes: list[bytes] = []
        if factory.aggregateWrites:
            self._aggregator = _AggregateSmallWrites(self._writeNow, factory.clock)

    def makeConnection(self, transport: Any) -> None:
        """
        Tune the TCP connection (no Nagle delay for interactive tunnels,
        keep-alive so dead peers are found) and start TLS.
        """
        if self.factory.tuneTCP and ITCPTransport.providedBy(transport):
            transport.setTcpNoDelay(True)
            transport.setTcpKeepAlive(True)
        # TLSMemoryBIOProtocol.makeConnection (Twisted 26.10) with one
        # change: the transport's interfaces are declared with one
        # directlyProvides() call.  Twisted makes one call per interface
        # and ProtocolWrapper.makeConnection one more; each rebuilds the
        # declaration, which cost 30 µs per accepted TLS connection (2 µs
        # now) for the same result (the last call declared them all).
        self._tlsConnection = self.factory._creatorCallable(self)
        self._appSendBuffer = []
        directlyProvides(self, providedBy(transport))
        Protocol.makeConnection(self, transport)
        self.factory.registerProtocol(self)
        if self._connectWrapped:
            # ProtocolWrapper.makeConnection, without its directlyProvides.
            Protocol.makeConnection(self, transport)
            self.factory.registerProtocol(self)
            self.wrappedProtocol.makeConnection(self)
        self._checkHandshakeStatus()

    # Writing.

    def write(self, data: bytes) -> None:
        """
        Send C{data}; dropped after L{loseWriteConnection}, L{loseConnection}
        or L{dropTLS}, like TCP drops writes after a close.
        """
        if self._writeClosed or self._dropped:
            return
        aggregator = self._aggregator
        if aggregator is None:
            TLSMemoryBIOProtocol.write(self, data)
        elif len(data) < _DIRECT_WRITE:
            aggregator.write(data)
        else:
            # A large write gains nothing from waiting for the end of the
            # reactor turn, and the aggregator would copy it twice: what
            # it holds goes first, then this, in order.
            aggregator.flush()
            TLSMemoryBIOProtocol.write(self, data)

    def writeSequence(self, iovec: Iterable[bytes]) -> None:
        """
        Send the concatenation of C{iovec}.
        """
        self.write(b"".join(iovec))

    def _writeNow(self, data: bytes) -> None:
        TLSMemoryBIOProtocol.write(self, data)

    def _write(self, bytes: bytes) -> None:
        # TLSMemoryBIOProtocol._write (Twisted 26.10) with the records of
        # one write encrypted together and sent in one transport write:
        # Twisted hands OpenSSL 16 KiB at a time and moves the output to
        # the transport after each piece (three Python calls per record).
        # Our contexts write whole buffers (no partial writes: see
        # ztnagw.tls.posture), so one SSL_write takes a whole chunk.
        if self._lostTLSConnection:
            return
        connection = self._tlsConnection
        view = memoryview(bytes)
        total = len(view)
        alreadySent = 0
        while alreadySent < total:
            try:
                sent = connection.send(view[alreadySent : alreadySent + _WRITE_CHUNK])
            except WantReadError:
                self._flushSendBIO()
                self._bufferedWrite(view[alreadySent:].tobytes())
                return
            except Error:
                self._flushSendBIO()
                # As Twisted does: the application learns the error from
                # connectionLost.
                self._tlsShutdownFinished(Failure())
                return
            alreadySent += sent
        self._flushSendBIO()

    def _flushSendBIO(self) -> None:
        # TLSMemoryBIOProtocol._flushSendBIO (Twisted 26.10) moves at most
        # 32 KiB per call; everything OpenSSL produced goes out here, in one
        # transport write.
        connection = self._tlsConnection
        chunks = []
        while True:
            try:
                chunk = connection.bio_read(_READ_CHUNK)
            except WantReadError:
                break
            chunks.append(chunk)
            if len(chunk) < _READ_CHUNK:
                # A memory BIO gives all it holds up to the size asked:
                # it is empty now (asking again would only raise).
                break
        if chunks:
            self.transport.write(chunks[0] if len(chunks) == 1 else b"".join(chunks))

    def _flushWrites(self) -> None:
        if self._aggregator is not None:
            self._aggregator.flush()

    # Closing.

    def loseWriteConnection(self) -> None:
        """
        Finish sending: send C{close_notify} once everything written before
        has gone out, and keep receiving.  (This shadows the TCP
        C{loseWriteConnection} that stock Twisted would reach, which sends
        a FIN under TLS.)
        """
        if self._writeClosed or self._dropped or self.disconnecting:
            return
        if not self.connected:
            return
        self._flushWrites()
        self._writeClosed = True
        self._sendCloseNotifyIfReady()

    def _sendCloseNotifyIfReady(self) -> None:
        # Writes made before the handshake finished wait in _appSendBuffer;
        # close_notify must follow them, so it waits too.
        if not self._writeClosed or self._closeNotifySent or self._lostTLSConnection:
            return
        if not self._handshakeDone or self._appSendBuffer:
            return
        self._closeNotifySent = True
        try:
            bothClosed = self._tlsConnection.shutdown()
        except Error:
            bothClosed = False
        self._flushSendBIO()
        if bothClosed:
            # The peer had already finished: the connection is done.
            self.disconnecting = True
            self.transport.loseConnection()
            self._armCloseTimer()

    def _checkHandshakeStatus(self) -> None:
        TLSMemoryBIOProtocol._checkHandshakeStatus(self)
        if self._handshakeDone:
            self._sendCloseNotifyIfReady()

    def _unbufferPendingWrites(self) -> None:
        TLSMemoryBIOProtocol._unbufferPendingWrites(self)
        self._sendCloseNotifyIfReady()

    def loseConnection(self) -> None:
        """
        Close both directions: send what is buffered, then C{close_notify},
        and wait at most L{closeTimeout} seconds for the peer's.
        """
        if self._dropped:
            return
        self._flushWrites()
        TLSMemoryBIOProtocol.loseConnection(self)

    def abortConnection(self) -> None:
        """
        Close at once, dropping buffered data.
        """
        if self._dropped:
            return
        self._cancelCloseTimer()
        TLSMemoryBIOProtocol.abortConnection(self)

    def _shutdownTLS(self) -> None:
        TLSMemoryBIOProtocol._shutdownTLS(self)
        self._closeNotifySent = True
        if self.disconnecting and not self._aborted:
            self._armCloseTimer()

    def _armCloseTimer(self) -> None:
        if self._closeTimer is None and self.connected and not self._dropped:
            self._closeTimer = self.factory.clock.callLater(
                self.closeTimeout, self._closeTimedOut
            )

    def _cancelCloseTimer(self) -> None:
        if self._closeTimer is not None:
            if self._closeTimer.active():
                self._closeTimer.cancel()
            self._closeTimer = None

    def _closeTimedOut(self) -> None:
        self._closeTimer = None
        if not self.connected or self._dropped:
            return
        log.info(
            "TLS peer {peer} did not complete the close within {timeout} s; "
            "aborting the connection",
            peer=_describePeer(self.transport),
            timeout=self.closeTimeout,
        )
        TLSMemoryBIOProtocol.abortConnection(self)

    # Receiving.

    def dataReceived(self, data: bytes) -> None:
        """
        Decrypt and deliver C{data}; while TLS is frozen, keep it raw for
        the protocol L{dropTLS} will hand it to.
        """
        if self._frozen:
            self._frozenBytes.append(data)
            self._frozenSize += len(data)
            if self._frozenSize > _FROZEN_LIMIT:
                self.transport.pauseProducing()
            return
        TLSMemoryBIOProtocol.dataReceived(self, data)

    def _halfCloseableApplication(self) -> IHalfCloseableProtocol | None:
        if self.wrappedProtocol is None:
            return None
        return IHalfCloseableProtocol(self.wrappedProtocol, None)

    def _flushReceiveBIO(self) -> None:
        # A copy of TLSMemoryBIOProtocol._flushReceiveBIO (Twisted 26.10)
        # with four changes: it stops when TLS is frozen or the peer has
        # closed its side; a close_notify reaches a half-closeable
        # application as readConnectionLost(); it survives the TCP
        # transport running connectionLost synchronously; and with
        # coalesceReceived the records are delivered together, before any
        # end or error.
        pending: list[bytes] | None = [] if self.coalesceReceived else None
        while not (self._lostTLSConnection or self._frozen or self._readClosed):
            try:
                bytes = self._tlsConnection.recv(2**15)
            except WantReadError:
                break
            except ZeroReturnError:
                if pending:
                    self._deliver(pending)
                    if self._lostTLSConnection or self._readClosed:
                        break
                application = self._halfCloseableApplication()
                if application is not None and not self._closeNotifySent:
                    self._readClosed = True
                    application.readConnectionLost()
                    break
                self._shutdownTLS()
                if self._tlsConnection is None:
                    return
                self._tlsShutdownFinished(None)
            except Error:
                failure = Failure()
                if pending:
                    self._deliver(pending)
                    if self._lostTLSConnection:
                        break
                self._tlsShutdownFinished(failure)
            else:
                if pending is not None:
                    pending.append(bytes)
                elif not self._aborted:
                    ProtocolWrapper.dataReceived(self, bytes)
        if pending:
            self._deliver(pending)
        if self._tlsConnection is not None and not self._dropped:
            self._flushSendBIO()

    def _deliver(self, pending: list[bytes]) -> None:
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        del pending[:]
        if not self._aborted and not self._lostTLSConnection:
            ProtocolWrapper.dataReceived(self, data)

    def readConnectionLost(self) -> None:
        """
        TCP FIN from the peer.  After the peer's C{close_notify} it is the
        expected end; without one it is truncation, reported to the
        application as a lost connection.
        """
        if self._frozen:
            self._frozenEOF = True
            return
        if self._lostTLSConnection:
            return
        if self._readClosed:
            if self._closeNotifySent:
                self.transport.loseConnection()
            return
        # Let OpenSSL see the end of input: it reports the truncation, and
        # _tlsShutdownFinished turns it into ConnectionLost and closes TCP.
        self._tlsConnection.bio_shutdown()
        self._flushReceiveBIO()
        if not self._lostTLSConnection:
            self._tlsShutdownFinished(None)

    def writeConnectionLost(self) -> None:
        """
        Nothing to do: this transport never half-closes TCP itself.
        """

    def connectionLost(self, reason: Failure) -> None:
        """
        Stop the close timer and the write aggregator, then report the loss.
        """
        self._cancelCloseTimer()
        if self._aggregator is not None:
            aggregator, self._aggregator = self._aggregator, None
            aggregator.close()
        TLSMemoryBIOProtocol.connectionLost(self, reason)
        self._cancelCloseTimer()

    # Dropping TLS.

    def freezeTLS(self) -> None:
        """
        Stop decrypting: every byte received from now on is raw, for the
        protocol given to L{dropTLS}.

        Call it synchronously when the last TLS message is complete (the
        request head on the gateway, the C{101} head on the forwarder),
        from inside the application's C{dataReceived}: the bytes already
        behind that record in the same TCP read must not be fed to OpenSSL.
        Writing through TLS still works (to send the C{101}).

        @raise TLSDropRefused: the handshake is not complete or the
            connection is closing.
        """
        if self._frozen:
            return
        if not self._handshakeDone or self._lostTLSConnection or self._readClosed:
            raise TLSDropRefused("TLS is not established or already closing")
        self._frozen = True
        # Raw bytes wait in the kernel until dropTLS resumes reading.
        self.transport.pauseProducing()

    def dropTLS(self, rawProtocol: IProtocol) -> None:
        """
        Hand the TCP connection to C{rawProtocol}, without TLS.

        Everything written through TLS before (the C{101}) is sent first;
        raw bytes that arrived behind the last TLS record are delivered to
        C{rawProtocol} right after its C{makeConnection}, and a FIN that
        arrived while frozen after them.  From then on this wrapper is
        inert: its application gets no further events (its owner finishes
        it) and its calls on this transport do nothing.

        @raise TLSDropRefused: L{freezeTLS} was not called, TLS still holds
            unsent application data or undelivered plaintext (the peer sent
            more TLS after its last message), or the connection is closing.
        """
        if not self._frozen:
            raise TLSDropRefused("freezeTLS() must be called before dropTLS()")
        if self._dropped or self._lostTLSConnection or self.disconnecting:
            raise TLSDropRefused("the connection is closing or already raw")
        self._flushWrites()
        connection = self._tlsConnection
        if self._appSendBuffer:
            raise TLSDropRefused("TLS still holds unsent application data")
        if connection.pending():
            raise TLSDropRefused(
                "the peer sent TLS data after its last message; it cannot be "
                "taken as raw bytes"
            )
        self._drainSendBIO()
        leftover = _drainBIO(connection._into_ssl) + b"".join(self._frozenBytes)
        self._frozenBytes = []
        tcp = self.transport
        if self._producer is not None:
            # The TLS producer membrane; the raw protocol registers its own.
            tcp.unregisterProducer()
            self._producer = None
        self._dropped = True
        self._lostTLSConnection = True
        self.connected = False
        self._cancelCloseTimer()
        if self._aggregator is not None:
            aggregator, self._aggregator = self._aggregator, None
            aggregator.close()
        self.factory.unregisterProtocol(self)
        self.transport = _Detached(tcp.getHost(), tcp.getPeer())
        tcp.protocol = rawProtocol
        rawProtocol.makeConnection(tcp)
        if not self._frozenEOF:
            tcp.resumeProducing()
        if leftover:
            rawProtocol.dataReceived(leftover)
        if self._frozenEOF and tcp.connected:
            # TCP has reported the end of input once, to us; it is passed on
            # here.  Reading must not resume: the reactor would report it a
            # second time.
            halfCloseable = IHalfCloseableProtocol(rawProtocol, None)
            if halfCloseable is not None:
                halfCloseable.readConnectionLost()
            else:
                tcp.loseConnection()

    def writeRaw(self, data: bytes) -> None:
        """
        Write C{data} unencrypted, behind everything written through TLS so
        far: for a forwarder that sends tunnel bytes right behind its
        upgrade request instead of waiting for the C{101} (it then drops
        TLS on the C{101} as usual).

        @raise TLSDropRefused: TLS cannot send what was written before yet
            (the handshake is not finished), or the connection is closing.
        """
        if self._dropped or self._lostTLSConnection or self.disconnecting:
            raise TLSDropRefused("the connection is closing or already raw")
        if not self._handshakeDone or self._appSendBuffer:
            raise TLSDropRefused("TLS has not sent what was written before")
        self._flushWrites()
        if self._appSendBuffer:
            raise TLSDropRefused("TLS has not sent what was written before")
        self._drainSendBIO()
        self.transport.write(data)

    def _drainSendBIO(self) -> None:
        # _flushSendBIO moves at most 32 KiB per call.
        while True:
            try:
                data = self._tlsConnection.bio_read(2**15)
            except WantReadError:
                return
            self.transport.write(data)


def _describePeer(transport: Any) -> str:
    try:
        address = transport.getPeer()
    except Exception:
        return "?"
    host = getattr(address, "host", None)
    if host is None:
        return str(address)
    return f"{host}:{getattr(address, 'port', '?')}"


class TLSFactory(TLSMemoryBIOFactory):
    """
    Wraps an application factory's protocols in L{TLSProtocol}.

    @ivar clock: the reactor's clock (close timer, write aggregation).
    @ivar tuneTCP: set C{TCP_NODELAY} and C{SO_KEEPALIVE} on connections.
    @ivar aggregateWrites: coalesce the writes of one reactor turn before
        encrypting them (see C{docs/tls.md}).
    """

    protocol = TLSProtocol

    def __init__(
        self,
        creator: IOpenSSLServerConnectionCreator | IOpenSSLClientConnectionCreator,
        isClient: bool,
        wrappedFactory: IProtocolFactory,
        clock: IReactorTime,
        tuneTCP: bool = True,
        aggregateWrites: bool = True,
    ) -> None:
        """
        @param creator: makes the OpenSSL connection of each connection.
        @param isClient: whether this side sends the ClientHello.
        @param wrappedFactory: builds the application protocols.
        @param clock: the reactor (injected, never the global one).
        @param tuneTCP: see L{tuneTCP}.
        @param aggregateWrites: see L{aggregateWrites}.
        """
        super().__init__(creator, isClient, wrappedFactory, clock)
        self.clock = clock
        self.tuneTCP = tuneTCP
        self.aggregateWrites = aggregateWrites
