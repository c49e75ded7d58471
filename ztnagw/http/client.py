# -*- test-case-name: tests.http.test_client -*-
"""
The upstream side of ztnagw's HTTP/1.1 layer: one keep-alive connection to
a real server (L{UpstreamConnection}) and the response it reads
(L{UpstreamResponse}).  L{ztnagw.http.pool.UpstreamPool} creates, reuses
and retries them; the gateway only talks to the pool.

The request body is pulled from an L{IBodySource} (typically the client's
L{ztnagw.http.server.Request}) as the upstream socket accepts it, so a full
upstream pauses the client, and a response that arrives before the body is
complete (an early 413 or 401) is delivered at once while the body stops.
Response framing is enforced strictly: a body that ends early fails (so the
gateway truncates the client's response too) instead of looking complete.
A C{101} hands the connection, and every byte read after its head, to the
caller.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from attrs import field, frozen, validators
from twisted.internet import tcp
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IHandshakeListener,
    IOpenSSLClientConnectionCreator,
    IProtocol,
    IPushProducer,
    ITCPTransport,
)
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from ztnagw.http.chunked import LAST_CHUNK, ChunkedDecoder, encodeChunk
from ztnagw.http.errors import (
    ConnectFailed,
    ConnectTimeout,
    HTTPParseError,
    RequestBodyFailed,
    ResponseTimeout,
    TruncatedBody,
    UpstreamConnectionLost,
    UpstreamError,
    UpstreamProtocolError,
)
from ztnagw.http.headers import Headers
from ztnagw.http.interfaces import IBodyConsumer, IBodySource
from ztnagw.http.parser import (
    FRAMING_CHUNKED,
    FRAMING_CLOSE,
    FRAMING_LENGTH,
    FRAMING_NONE,
    IDEMPOTENT_METHODS,
    ResponseHead,
    checkNewHeadBytes,
    parseContentLength,
    parseResponseHead,
    responseFraming,
)

if TYPE_CHECKING:  # pragma: no cover
    from ztnagw.http.pool import UpstreamPool

#: Bytes read from a real server's TCP connection at once.
READ_SIZE = 2**18

_positiveInt = [validators.instance_of(int), validators.gt(0)]
_positiveNumber = [validators.instance_of((int, float)), validators.gt(0)]


@frozen
class UpstreamKey:
    """
    Where upstream requests go; keep-alive connections are reused per key.

    @ivar host: an IP address (name resolution is the gateway's job).
    @ivar port: the TCP port.
    @ivar tls: how to make the TLS client connection (server name,
        trust), or C{None} for plain HTTP.  Keys compare it by identity, so
        reuse one creator per real server.
    """

    host: str = field(validator=validators.instance_of(str))
    port: int = field(validator=[validators.instance_of(int), validators.ge(1), validators.le(65535)])
    tls: IOpenSSLClientConnectionCreator | None = field(default=None, eq=False, hash=False)
    _tlsIdentity: int = field(init=False, repr=False)

    @_tlsIdentity.default
    def _identity(self) -> int:
        return id(self.tls) if self.tls is not None else 0


@frozen
class PoolSettings:
    """
    Limits and timeouts of L{ztnagw.http.pool.UpstreamPool}.

    @ivar connectTimeout: seconds to establish a connection (TCP, and the
        TLS handshake for TLS keys).
    @ivar responseTimeout: seconds from the end of the request (head and
        body written) to the end of the response head.
    @ivar idleTimeout: seconds an idle keep-alive connection is kept; keep
        it below the real servers' own keep-alive timeout so that the pool,
        not the server, closes first.
    @ivar maxIdlePerKey: idle connections kept per L{UpstreamKey}.
    @ivar maxResponseHeadBytes: largest response head accepted.
    @ivar maxResponseHeaderCount: most response header fields accepted.
    @ivar bodyBufferSize: response body bytes buffered (before
        C{deliverBody} or while paused) before reading pauses.
    @ivar maxChunkExtensionLength: longest chunk extension accepted.
    @ivar maxTrailerBytes: largest trailer section accepted.
    """

    connectTimeout: float = field(default=10.0, validator=_positiveNumber)
    responseTimeout: float = field(default=60.0, validator=_positiveNumber)
    idleTimeout: float = field(default=50.0, validator=_positiveNumber)
    maxIdlePerKey: int = field(default=16, validator=[validators.instance_of(int), validators.ge(0)])
    maxResponseHeadBytes: int = field(default=65536, validator=_positiveInt)
    maxResponseHeaderCount: int = field(default=200, validator=_positiveInt)
    bodyBufferSize: int = field(default=65536, validator=_positiveInt)
    maxChunkExtensionLength: int = field(default=1024, validator=_positiveInt)
    maxTrailerBytes: int = field(default=8192, validator=_positiveInt)


def _announcedLength(head: ResponseHead) -> int | None:
    values = head.headers.getAll(b"content-length")
    if len(values) != 1:
        return None
    try:
        return parseContentLength(values[0])
    except HTTPParseError:
        return None


# Phases of an upstream connection.
_CONNECTING = 0  # TCP up, TLS handshake running
_IDLE = 1  # in the pool
_HEAD = 2  # request sent (or being sent), waiting for the response head
_BODY = 3  # reading the response body
_SWITCHED = 4  # 101 received, waiting for takeOver
_TAKEN = 5
_CLOSED = 6

_PAUSE_BODY = 1
_PAUSE_SWITCH = 2


class _Exchange:
    """
    One request through the pool, possibly over two connections (a stale
    pooled one, then a fresh one).  It is the consumer of the request body,
    so a retry keeps the body source attached.
    """

    __slots__ = (
        "pool",
        "key",
        "method",
        "head",
        "body",
        "bodyLength",
        "upgrade",
        "close",
        "deferred",
        "connection",
        "connector",
        "retried",
        "requestSent",
        "responseStarted",
        "bodyBytesSent",
        "bodyBegun",
        "bodyDone",
        "bodyStopped",
        "producer",
    )

    def __init__(
        self,
        pool: UpstreamPool,
        key: UpstreamKey,
        method: bytes,
        head: bytes,
        body: IBodySource | None,
        bodyLength: int | None,
        upgrade: bool,
        close: bool,
    ) -> None:
        self.pool = pool
        self.key = key
        self.method = method
        self.head = head
        self.body = body
        self.bodyLength = bodyLength
        self.upgrade = upgrade
        self.close = close
        self.deferred: Deferred[UpstreamResponse] | None = None
        self.connection: UpstreamConnection | None = None
        self.connector: Any = None
        self.retried = False
        self.requestSent = False
        self.responseStarted = False
        self.bodyBytesSent = 0
        self.bodyBegun = False
        self.bodyDone = body is None
        self.bodyStopped = False
        self.producer: IPushProducer | None = None

    def fail(self, error: UpstreamError) -> None:
        """
        Fail the response L{Deferred} (once) and stop the body source.
        """
        self.stopBody()
        d, self.deferred = self.deferred, None
        if d is not None:
            d.errback(Failure(error))

    def stopBody(self) -> None:
        """
        Stop relaying the request body: its source is told to stop.
        """
        if self.bodyDone or self.bodyStopped:
            return
        self.bodyStopped = True
        producer, self.producer = self.producer, None
        if producer is not None:
            producer.stopProducing()

    def cancel(self, d: Deferred[UpstreamResponse]) -> None:
        """
        The caller cancelled the response L{Deferred}: abandon the request.
        """
        self.deferred = None
        self.stopBody()
        connector, self.connector = self.connector, None
        if connector is not None:
            connector.disconnect()
        connection = self.connection
        if connection is not None:
            connection._abandon()

    # IBodyConsumer, for the request body.

    def bodyStarted(self, producer: IPushProducer) -> None:
        """
        See L{ztnagw.http.interfaces.IBodyConsumer.bodyStarted}.
        """
        self.producer = producer
        if self.connection is not None:
            self.connection._bodyProducerReady()

    def bodyDataReceived(self, data: bytes) -> None:
        """
        See L{ztnagw.http.interfaces.IBodyConsumer.bodyDataReceived}.
        """
        if self.bodyStopped or self.connection is None:
            return
        self.connection._writeBody(data)

    def bodyFinished(self) -> None:
        """
        See L{ztnagw.http.interfaces.IBodyConsumer.bodyFinished}.
        """
        if self.bodyStopped:
            return
        self.bodyDone = True
        self.producer = None
        if self.connection is not None:
            self.connection._bodyWritten()

    def bodyFailed(self, reason: Failure) -> None:
        """
        See L{ztnagw.http.interfaces.IBodyConsumer.bodyFailed}.
        """
        if self.bodyStopped:
            return
        self.bodyDone = True
        self.producer = None
        connection = self.connection
        self.fail(
            RequestBodyFailed(
                f"request body failed: {reason.getErrorMessage()}",
                requestSent=self.requestSent,
                responseStarted=self.responseStarted,
            )
        )
        if connection is not None:
            connection._abandon()


implementer(IBodyConsumer)(_Exchange)


@implementer(IPushProducer)
class _BodyProducerProxy:
    """
    Registered with the upstream transport in place of the body source's
    producer: the transport pauses and resumes through it, but its
    C{stopProducing} (sent when the connection drops) does not reach the
    source, so that a stale-connection retry can keep the body.
    """

    __slots__ = ("_exchange",)

    def __init__(self, exchange: _Exchange) -> None:
        self._exchange = exchange

    def pauseProducing(self) -> None:
        """
        See L{twisted.internet.interfaces.IPushProducer.pauseProducing}.
        """
        producer = self._exchange.producer
        if producer is not None:
            producer.pauseProducing()

    def resumeProducing(self) -> None:
        """
        See L{twisted.internet.interfaces.IPushProducer.resumeProducing}.
        """
        producer = self._exchange.producer
        if producer is not None:
            producer.resumeProducing()

    def stopProducing(self) -> None:
        # The connection's end is handled by UpstreamConnection.connectionLost.
        """
        See L{twisted.internet.interfaces.IPushProducer.stopProducing}.
        """
        pass


@implementer(IPushProducer)
class _ResponseBodyProducer:
    """
    Lets a response body's consumer pause reading from the real server.
    """
    __slots__ = ("_response",)

    def __init__(self, response: UpstreamResponse) -> None:
        self._response = response

    def pauseProducing(self) -> None:
        """
        See L{twisted.internet.interfaces.IPushProducer.pauseProducing}.
        """
        self._response._pause()

    def resumeProducing(self) -> None:
        """
        See L{twisted.internet.interfaces.IPushProducer.resumeProducing}.
        """
        self._response._resume()

    def stopProducing(self) -> None:
        """
        See L{twisted.internet.interfaces.IPushProducer.stopProducing}.
        """
        self._response.abort()


@implementer(IBodySource)
class UpstreamResponse:
    """
    A response from a real server; its body is delivered on demand.

    @ivar version: C{b"HTTP/1.1"} or C{b"HTTP/1.0"}.
    @ivar status: the status code (a final status, or 101).
    @ivar reason: the reason phrase.
    @ivar headers: the header fields, as received (framing fields
        included: strip hop-by-hop fields before relaying).
    @ivar length: the body length, or C{None} when unknown (chunked or
        close-delimited).  Responses to C{HEAD} and 304 responses have no
        body but keep the length they announce (or C{None}), so that a relay
        repeats it; other bodyless responses (101, 204) have 0.
    @ivar trailers: a chunked body's trailer fields, once complete.
    """

    __slots__ = (
        "version",
        "status",
        "reason",
        "headers",
        "length",
        "trailers",
        "_connection",
        "_bufferSize",
        "_consumer",
        "_pending",
        "_pendingSize",
        "_paused",
        "_done",
        "_failure",
        "_endDelivered",
        "_delivered",
        "_stopped",
    )

    def __init__(
        self,
        head: ResponseHead,
        length: int | None,
        connection: UpstreamConnection,
        bufferSize: int,
    ) -> None:
        self.version = head.version
        self.status = head.status
        self.reason = head.reason
        self.headers = head.headers
        self.length = length
        self.trailers: Headers | None = None
        self._connection: UpstreamConnection | None = connection
        self._bufferSize = bufferSize
        self._consumer: IBodyConsumer | None = None
        self._pending: deque[bytes] = deque()
        self._pendingSize = 0
        self._paused = False
        self._done = False
        self._failure: Failure | None = None
        self._endDelivered = False
        self._delivered = False
        self._stopped = False

    @property
    def bodyLength(self) -> int | None:
        """
        The body length (see L{IBodySource}), the same as C{length}.
        """
        return self.length

    def __repr__(self) -> str:
        return f"<UpstreamResponse {self.status} {self.reason!r}>"

    def deliverBody(self, consumer: IBodyConsumer) -> None:
        """
        Deliver the body to C{consumer} (see L{IBodySource}).

        @raise RuntimeError: already delivered.
        """
        if self._delivered:
            raise RuntimeError("the response body can be delivered only once")
        self._delivered = True
        self._consumer = consumer
        consumer.bodyStarted(_ResponseBodyProducer(self))
        if self._stopped:
            self._consumer = None
            consumer.bodyFailed(Failure(ConnectionAbortedByCaller()))
            return
        self._flush()

    def abort(self) -> None:
        """
        Give up the rest of the body (and the request): the upstream
        connection is closed, never reused.  The consumer gets no further
        calls.
        """
        if self._stopped:
            return
        self._stopped = True
        self._consumer = None
        self._pending.clear()
        self._pendingSize = 0
        connection, self._connection = self._connection, None
        if connection is not None:
            connection._abandon()

    def takeOver(self, protocol: IProtocol) -> None:
        """
        For a C{101}: hand the upstream connection to C{protocol}, which
        first receives every byte the server sent after the 101 head.

        @raise RuntimeError: not a 101 response, or already taken over.
        """
        connection = self._connection
        if self.status != 101 or connection is None:
            raise RuntimeError("takeOver() needs a 101 response not yet taken over")
        self._connection = None
        connection._takeOver(protocol)

    def _data(self, data: bytes) -> None:
        if self._stopped:
            return
        consumer = self._consumer
        if consumer is not None and not self._paused and not self._pending:
            consumer.bodyDataReceived(data)
            return
        self._pending.append(data)
        self._pendingSize += len(data)
        if self._paused or self._pendingSize >= self._bufferSize:
            connection = self._connection
            if connection is not None:
                connection._pause(_PAUSE_BODY)

    def _end(self, trailers: Headers | None) -> None:
        self._done = True
        self.trailers = trailers
        self._connection = None
        if not self._stopped:
            self._flush()

    def _fail(self, reason: Failure) -> None:
        if self._done:
            return
        self._done = True
        self._failure = reason
        self._connection = None
        self._pending.clear()
        self._pendingSize = 0
        if not self._stopped:
            self._flush()

    def _flush(self) -> None:
        pending = self._pending
        while pending and not self._paused and self._consumer is not None:
            data = pending.popleft()
            self._pendingSize -= len(data)
            self._consumer.bodyDataReceived(data)
        if (
            not pending
            and self._done
            and not self._endDelivered
            and self._consumer is not None
            and not self._paused
        ):
            self._endDelivered = True
            consumer, self._consumer = self._consumer, None
            if self._failure is not None:
                consumer.bodyFailed(self._failure)
            else:
                consumer.bodyFinished()
        if not self._paused and self._pendingSize < self._bufferSize:
            connection = self._connection
            if connection is not None:
                connection._resume(_PAUSE_BODY)

    def _pause(self) -> None:
        if self._paused or self._consumer is None:
            return
        self._paused = True
        connection = self._connection
        if connection is not None:
            connection._pause(_PAUSE_BODY)

    def _resume(self) -> None:
        if not self._paused:
            return
        self._paused = False
        self._flush()


class ConnectionAbortedByCaller(Exception):
    """
    The body was given up with L{UpstreamResponse.abort} before delivery.
    """


@implementer(IHandshakeListener)
class UpstreamConnection(Protocol):
    """
    One HTTP/1.1 connection to a real server, carrying one request at a
    time for L{ztnagw.http.pool.UpstreamPool}.

    @ivar key: where it goes.
    @ivar requestCount: requests sent on it so far.
    """

    def __init__(self, pool: UpstreamPool, key: UpstreamKey, exchange: _Exchange) -> None:
        self._pool = pool
        self._settings = pool.settings
        self._clock = pool.clock
        self.key = key
        self._exchange: _Exchange | None = exchange
        self._phase = _CONNECTING
        self._ready = False
        self._reused = False
        self._buffer = b""
        self._headScanned = 0
        self._driving = False
        self._pauses = 0
        self._response: UpstreamResponse | None = None
        self._framing = FRAMING_NONE
        self._remaining = 0
        self._decoder: ChunkedDecoder | None = None
        self._requestComplete = False
        self._keepAlive = False
        self._tunnel: IProtocol | None = None
        self._switchLost: Failure | None = None
        self._timer: Any = None
        self._since = 0.0
        self._bodyRegistered = False
        self.requestCount = 0

    # Connection set-up.

    def connectionMade(self) -> None:
        """
        Tune the socket; send the first request unless a TLS handshake must
        finish first.
        """
        transport = self.transport
        if ITCPTransport.providedBy(transport):
            try:
                transport.setTcpNoDelay(True)
                transport.setTcpKeepAlive(True)
            except (OSError, AttributeError):
                pass
        if isinstance(transport, tcp.Connection):
            # Response bodies are relayed in the pieces read: larger reads
            # (Twisted reads 64 KiB) mean fewer relay and TLS writes per MiB.
            transport.bufferSize = READ_SIZE
        exchange = self._exchange
        if exchange is not None:
            exchange.connector = None
        self._since = self._clock.seconds()
        if self.key.tls is None:
            self._becomeReady()
        else:
            self._touchTimer()

    def handshakeCompleted(self) -> None:
        """
        The TLS handshake succeeded: the connection is ready.
        """
        if self._phase == _CONNECTING:
            self._becomeReady()

    def _becomeReady(self) -> None:
        self._ready = True
        exchange, self._exchange = self._exchange, None
        if exchange is None or exchange.deferred is None:
            # Cancelled while connecting: keep the connection for others.
            self._phase = _HEAD
            self._requestComplete = True
            self._becomeIdle()
            return
        self.send(exchange, reused=False)

    # Requests.

    def send(self, exchange: _Exchange, reused: bool) -> None:
        """
        Send C{exchange}'s request on this (ready, idle) connection.
        """
        self._exchange = exchange
        exchange.connection = self
        self._reused = reused
        self._phase = _HEAD
        self._buffer = b""
        self._headScanned = 0
        self._response = None
        self._requestComplete = False
        self._keepAlive = False
        self.requestCount += 1
        exchange.requestSent = True
        self.transport.write(exchange.head)
        if exchange.body is None:
            self._requestWritten()
        elif not exchange.bodyBegun:
            exchange.bodyBegun = True
            exchange.body.deliverBody(exchange)
        else:
            # A retry: the source was started on the stale connection but
            # sent nothing there.
            if exchange.producer is not None:
                self._bodyProducerReady()
                exchange.producer.resumeProducing()
            if exchange.bodyDone:
                self._bodyWritten()

    def _bodyProducerReady(self) -> None:
        exchange = self._exchange
        if (
            exchange is None
            or self._phase == _CLOSED
            or exchange.bodyDone
            or self._bodyRegistered
        ):
            return
        self._bodyRegistered = True
        self.transport.registerProducer(_BodyProducerProxy(exchange), True)

    def _writeBody(self, data: bytes) -> None:
        exchange = self._exchange
        if exchange is None or self._phase == _CLOSED or self._requestComplete:
            return
        length = exchange.bodyLength
        if length is None:
            self.transport.writeSequence(encodeChunk(data))
        else:
            if exchange.bodyBytesSent + len(data) > length:
                self._bodyMismatch(exchange)
                return
            self.transport.write(data)
        exchange.bodyBytesSent += len(data)

    def _bodyWritten(self) -> None:
        exchange = self._exchange
        if exchange is None or self._phase == _CLOSED or self._requestComplete:
            return
        if exchange.bodyLength is None:
            self.transport.write(LAST_CHUNK)
        elif exchange.bodyBytesSent != exchange.bodyLength:
            self._bodyMismatch(exchange)
            return
        self._unregisterBody()
        self._requestWritten()

    def _bodyMismatch(self, exchange: _Exchange) -> None:
        exchange.fail(
            RequestBodyFailed(
                "request body does not match its declared length",
                requestSent=True,
                responseStarted=exchange.responseStarted,
            )
        )
        self._abandon()

    def _unregisterBody(self) -> None:
        if self._bodyRegistered:
            self._bodyRegistered = False
            self.transport.unregisterProducer()

    def _requestWritten(self) -> None:
        self._requestComplete = True
        self._since = self._clock.seconds()
        if self._phase == _HEAD:
            self._touchTimer()

    # Responses.

    def dataReceived(self, data: bytes) -> None:
        """
        Parse the response; buffer what cannot be parsed yet.
        """
        phase = self._phase
        if phase == _TAKEN:
            self._tunnel.dataReceived(data)  # type: ignore[union-attr]
            return
        if phase == _CLOSED or not data:
            return
        if phase == _IDLE or phase == _CONNECTING:
            # Bytes nobody asked for (a server's 408 before it closes): this
            # connection cannot carry a request any more.
            self._abandon()
            return
        exchange = self._exchange
        if exchange is not None:
            exchange.responseStarted = True
        if self._buffer:
            self._buffer += data
        else:
            self._buffer = data
        self._drive()

    def _drive(self) -> None:
        if self._driving:
            return
        self._driving = True
        try:
            while self._buffer:
                phase = self._phase
                if phase == _HEAD:
                    if not self._readHead():
                        break
                elif phase == _BODY:
                    data, self._buffer = self._buffer, b""
                    self._readBody(data)
                else:
                    break
        finally:
            self._driving = False

    def _readHead(self) -> bool:
        buffer = self._buffer
        # Only the bytes that arrived since the last look are searched.
        scanned = self._headScanned
        end = buffer.find(b"\r\n\r\n", scanned - 3 if scanned > 3 else 0)
        settings = self._settings
        if end < 0:
            if len(buffer) > settings.maxResponseHeadBytes:
                self._protocolError("response head too large")
                return False
            try:
                checkNewHeadBytes(buffer, scanned)
            except HTTPParseError as e:
                self._protocolError(e.detail)
                return False
            self._headScanned = len(buffer)
            return False
        if end > settings.maxResponseHeadBytes:
            self._protocolError("response head too large")
            return False
        self._buffer = buffer[end + 4 :]
        self._headScanned = 0
        exchange = self._exchange
        assert exchange is not None
        try:
            head = parseResponseHead(buffer[:end], settings.maxResponseHeaderCount)
            if head.status >= 200 or head.status == 101:
                framing, length = responseFraming(head, exchange.method)
        except HTTPParseError as e:
            self._protocolError(e.detail)
            return False
        if head.status < 200:
            if head.status != 101:
                # 100 Continue, 102, 103: interim, skipped.
                return True
            if not exchange.upgrade:
                self._protocolError("101 for a request that did not ask for an Upgrade")
                return False
            self._switch(exchange, head)
            return False
        self._startResponse(exchange, head, framing, length)
        return True

    def _startResponse(
        self, exchange: _Exchange, head: ResponseHead, framing: int, length: int
    ) -> None:
        self._framing = framing
        self._keepAlive = (
            head.keepAlive and framing != FRAMING_CLOSE and not exchange.close
        )
        if framing == FRAMING_LENGTH:
            self._remaining = length
            bodyLength: int | None = length
        elif framing == FRAMING_CHUNKED:
            settings = self._settings
            self._decoder = ChunkedDecoder(
                settings.maxChunkExtensionLength,
                settings.maxTrailerBytes,
                settings.maxResponseHeaderCount,
            )
            bodyLength = None
        elif framing == FRAMING_CLOSE:
            bodyLength = None
        elif exchange.method == b"HEAD" or head.status == 304:
            # No body, but the announced length is what a relay repeats.
            bodyLength = _announcedLength(head)
        else:
            bodyLength = 0
        response = UpstreamResponse(head, bodyLength, self, self._settings.bodyBufferSize)
        self._response = response
        self._phase = _BODY
        if not self._requestComplete:
            # An early answer (413, 401...): the rest of the body is not
            # wanted; the connection's framing is now unknown, so it is not
            # reused.
            self._keepAlive = False
            exchange.stopBody()
            self._unregisterBody()
        d, exchange.deferred = exchange.deferred, None
        if d is not None:
            d.callback(response)
        if self._response is response and (
            framing == FRAMING_NONE or (framing == FRAMING_LENGTH and length == 0)
        ):
            self._responseDone(response, None)

    def _readBody(self, data: bytes) -> None:
        response = self._response
        assert response is not None
        framing = self._framing
        if framing == FRAMING_LENGTH:
            remaining = self._remaining
            if len(data) <= remaining:
                body, rest = data, b""
            else:
                body, rest = data[:remaining], data[remaining:]
            self._remaining = remaining - len(body)
            response._data(body)
            if self._response is response and self._remaining == 0:
                self._buffer = rest
                self._responseDone(response, None)
        elif framing == FRAMING_CHUNKED:
            decoder = self._decoder
            assert decoder is not None
            try:
                rest2 = decoder.feed(data, response._data)
            except HTTPParseError as e:
                self._bodyBroken(response, UpstreamProtocolError(
                    f"invalid chunked response body: {e.detail}",
                    requestSent=True, responseStarted=True))
                return
            if rest2 is not None and self._response is response:
                self._buffer = rest2
                self._decoder = None
                self._responseDone(response, decoder.trailers)
        else:
            response._data(data)

    def _responseDone(self, response: UpstreamResponse, trailers: Headers | None) -> None:
        self._response = None
        if self._buffer:
            # Bytes after a complete response that nobody asked for.
            self._keepAlive = False
            self._buffer = b""
        response._end(trailers)
        if self._phase != _BODY:
            return
        exchange = self._exchange
        if exchange is not None:
            exchange.connection = None
        if self._keepAlive and self._requestComplete:
            self._becomeIdle()
        else:
            self._close()

    def _bodyBroken(self, response: UpstreamResponse, error: UpstreamError) -> None:
        self._response = None
        response._fail(Failure(error))
        self._abandon()

    def _protocolError(self, detail: str) -> None:
        exchange = self._exchange
        if exchange is not None:
            exchange.fail(
                UpstreamProtocolError(
                    detail, requestSent=True, responseStarted=exchange.responseStarted
                )
            )
        self._abandon()

    def _switch(self, exchange: _Exchange, head: ResponseHead) -> None:
        self._phase = _SWITCHED
        self._keepAlive = False
        self._pool._forget(self)
        self._pause(_PAUSE_SWITCH)
        self._cancelTimer()
        response = UpstreamResponse(head, 0, self, self._settings.bodyBufferSize)
        response._done = True
        d, exchange.deferred = exchange.deferred, None
        if d is not None:
            d.callback(response)

    def _takeOver(self, protocol: IProtocol) -> None:
        if self._phase != _SWITCHED and self._switchLost is None:
            raise RuntimeError("takeOver() needs a 101 response not yet taken over")
        lost = self._switchLost
        early, self._buffer = self._buffer, b""
        self._tunnel = protocol
        if lost is None:
            self._phase = _TAKEN
            if self._pauses:
                self._pauses = 0
                self.transport.resumeProducing()
        protocol.makeConnection(self.transport)
        if early:
            protocol.dataReceived(early)
        if lost is not None:
            protocol.connectionLost(lost)

    # Pool life.

    def _becomeIdle(self) -> None:
        self._exchange = None
        self._phase = _IDLE
        self._since = self._clock.seconds()
        if self._pauses:
            self._pauses = 0
            self.transport.resumeProducing()
        self._pool._release(self)
        self._touchTimer()

    def _isIdle(self) -> bool:
        return self._phase == _IDLE

    def _abandon(self) -> None:
        """
        Close at once: the connection's state is unknown or unwanted.
        Whatever was in progress on it fails (callers that gave up get no
        further calls).
        """
        if self._phase == _CLOSED or self._phase == _TAKEN:
            return
        self._phase = _CLOSED
        self._cancelTimer()
        self._pool._forget(self)
        response, self._response = self._response, None
        if response is not None:
            response._fail(
                Failure(
                    TruncatedBody(
                        "upstream connection aborted",
                        requestSent=True,
                        responseStarted=True,
                    )
                )
            )
        exchange, self._exchange = self._exchange, None
        if exchange is not None:
            if exchange.connection is self:
                exchange.connection = None
            exchange.fail(
                UpstreamConnectionLost(
                    "upstream connection aborted",
                    requestSent=exchange.requestSent,
                    responseStarted=exchange.responseStarted,
                )
            )
        self.transport.abortConnection()

    def _close(self) -> None:
        if self._phase == _CLOSED or self._phase == _TAKEN:
            return
        self._phase = _CLOSED
        self._cancelTimer()
        self._pool._forget(self)
        self._unregisterBody()
        self.transport.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """
        Fail or retry what was in progress.
        """
        phase = self._phase
        self._phase = _CLOSED
        self._cancelTimer()
        if phase == _CLOSED:
            # We closed it ourselves; everything was settled then.
            return
        self._pool._forget(self)
        if phase == _TAKEN:
            self._tunnel.connectionLost(reason)  # type: ignore[union-attr]
            return
        if phase == _SWITCHED:
            self._switchLost = reason
            return
        exchange, self._exchange = self._exchange, None
        response, self._response = self._response, None
        if exchange is not None and exchange.connection is self:
            exchange.connection = None
        if not self._ready:
            if exchange is not None and exchange.deferred is not None:
                self._pool._connectFailed(
                    exchange,
                    ConnectFailed(f"TLS handshake failed: {reason.getErrorMessage()}"),
                )
            return
        if response is not None:
            if self._framing == FRAMING_CLOSE:
                response._end(None)
            else:
                response._fail(
                    Failure(
                        TruncatedBody(
                            f"response body truncated: {reason.getErrorMessage()}",
                            requestSent=True,
                            responseStarted=True,
                        )
                    )
                )
            if exchange is not None:
                exchange.stopBody()
            return
        if exchange is None or exchange.deferred is None:
            if exchange is not None:
                exchange.stopBody()
            return
        if (
            self._reused
            and not exchange.responseStarted
            and exchange.bodyBytesSent == 0
            and not exchange.retried
            and exchange.method in IDEMPOTENT_METHODS
        ):
            self._pool._retry(exchange)
            return
        exchange.fail(
            UpstreamConnectionLost(
                f"connection lost before the response: {reason.getErrorMessage()}",
                requestSent=exchange.requestSent,
                responseStarted=exchange.responseStarted,
            )
        )

    # Reading pauses and timers.

    def _pause(self, reason: int) -> None:
        if not self._pauses and self._phase != _CLOSED:
            self.transport.pauseProducing()
        self._pauses |= reason

    def _resume(self, reason: int) -> None:
        if self._pauses & reason:
            self._pauses &= ~reason
            if not self._pauses and self._phase != _CLOSED:
                self.transport.resumeProducing()

    def _deadline(self) -> float | None:
        phase = self._phase
        settings = self._settings
        if phase == _IDLE:
            return self._since + settings.idleTimeout
        if phase == _HEAD and self._requestComplete:
            return self._since + settings.responseTimeout
        if phase == _CONNECTING:
            return self._since + settings.connectTimeout
        return None

    def _touchTimer(self) -> None:
        deadline = self._deadline()
        if deadline is None:
            return
        timer = self._timer
        if timer is None:
            self._timer = self._clock.callLater(
                max(0.0, deadline - self._clock.seconds()), self._timeout
            )
        elif timer.getTime() > deadline:
            timer.reset(max(0.0, deadline - self._clock.seconds()))

    def _cancelTimer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _timeout(self) -> None:
        self._timer = None
        deadline = self._deadline()
        if deadline is None:
            return
        now = self._clock.seconds()
        if now < deadline:
            self._timer = self._clock.callLater(deadline - now, self._timeout)
            return
        phase = self._phase
        if phase == _IDLE:
            self._close()
        elif phase == _CONNECTING:
            exchange, self._exchange = self._exchange, None
            self._abandon()
            if exchange is not None and exchange.deferred is not None:
                self._pool._connectFailed(
                    exchange, ConnectTimeout("TLS handshake timed out")
                )
        else:
            exchange = self._exchange
            if exchange is not None:
                exchange.fail(
                    ResponseTimeout(
                        "no response head in time",
                        requestSent=True,
                        responseStarted=exchange.responseStarted,
                    )
                )
            self._abandon()
