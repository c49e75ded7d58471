# -*- test-case-name: tests.http.test_server -*-
"""
The server side of ztnagw's HTTP/1.1 layer: a plain Twisted protocol that
parses requests strictly and hands each one to the gateway as soon as its
head is complete.

Why not twisted.web: it spools request bodies before the application sees
the request, loses bytes a client sends right behind an Upgrade request,
and keeps its smuggling defences out of our hands (see C{docs/http.md}).
Here the handler (L{IRequestHandler}) is called with the head, decides
(possibly asynchronously: authorize, connect upstream), then streams the
body with backpressure (L{Request.deliverBody}), answers
(L{Request.response}), or takes the connection over for a tunnel
(L{Request.takeOver}) with every early byte handed on.

One request is served at a time; pipelined bytes wait (bounded) until the
response is finished.  Every protocol violation is answered with a small
error response and a close; nothing a client sends raises out of
L{HTTPServerProtocol.dataReceived}.
"""

from __future__ import annotations

from collections import deque
from typing import Iterable

from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionAborted
from twisted.internet.interfaces import (
    IHalfCloseableProtocol,
    IProtocol,
    IPushProducer,
    IReactorTime,
    ITCPTransport,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ztnagw.http.chunked import LAST_CHUNK, ChunkedDecoder, encodeChunk
from ztnagw.http.errors import REASONS, HTTPParseError
from ztnagw.http.headers import (
    FIELD_VALUE_BYTES,
    Headers,
    checkName,
    checkValue,
)
from ztnagw.http.interfaces import (
    IBodyConsumer,
    IBodySource,
    IErrorPageRenderer,
    IRequestHandler,
)
from ztnagw.http.limits import ServerLimits
from ztnagw.http.parser import RequestHead, checkNewHeadBytes, parseRequestHead

__all__ = [
    "BodyRelay",
    "HTTPServerFactory",
    "HTTPServerProtocol",
    "PlainTextErrorPages",
    "Request",
    "Response",
    "ServerConnection",
    "ServerLimits",
]

_log = Logger()

# Reading states of a connection.
_HEAD = 0  # waiting for (the rest of) a request head
_BODY = 1  # reading the current request's body
_AWAIT = 2  # body complete; waiting for the response to finish
_UPGRADE = 3  # an Upgrade request's head was handed over; not parsing further
_TAKEN = 4  # the connection belongs to another protocol now
_LINGER = 5  # response sent, closing: reading and discarding for a while
_CLOSED = 6

# Reasons to pause reading from the transport (a bit mask: reading resumes
# only when none is left).
_PAUSE_BODY = 1
_PAUSE_PIPELINE = 2
_PAUSE_UPGRADE = 4

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_OWN_FIELDS = frozenset({b"content-length", b"transfer-encoding", b"connection"})
_MAX_EMPTY_LINES = 8


def _checkReason(reason: bytes) -> bytes:
    if type(reason) is not bytes or reason.translate(None, FIELD_VALUE_BYTES):
        raise ValueError(f"invalid reason phrase {reason!r}")
    return reason


def _checkedPairs(
    headers: Headers | Iterable[tuple[bytes, bytes]],
) -> list[tuple[bytes, bytes]]:
    if isinstance(headers, Headers):
        return headers._pairs
    return [(checkName(name), checkValue(value)) for name, value in headers]


@implementer(IErrorPageRenderer)
class PlainTextErrorPages:
    """
    The default error pages: the status line and the reason, as plain text.
    """

    def renderError(self, status: int, reason: bytes, detail: str) -> tuple[bytes, bytes]:
        """
        @see: L{IErrorPageRenderer.renderError}
        """
        body = b"%d %s\n%s\n" % (status, reason, detail.encode("utf-8", "replace"))
        return b"text/plain; charset=utf-8", body


class ServerConnection:
    """
    What the gateway may want to know about one client connection.

    @ivar transport: the connection's transport (for a TLS listener, the TLS
        transport: C{getPeerCertificate()} gives the device certificate).
    @ivar peer: the client's address.
    @ivar host: the local (VIP) address.
    @ivar state: free for the application (for example the device verdict
        captured at the handshake); the HTTP layer never touches it.
    @ivar requestsServed: how many requests were completely served on this
        connection so far.
    """

    __slots__ = ("transport", "peer", "host", "state", "requestsServed")

    def __init__(self, transport: object) -> None:
        self.transport = transport
        self.peer = transport.getPeer()  # type: ignore[attr-defined]
        self.host = transport.getHost()  # type: ignore[attr-defined]
        self.state: object = None
        self.requestsServed = 0


@implementer(IPushProducer)
class _RequestBodyProducer:
    """
    Lets a request body's consumer pause reading from the client.
    """

    __slots__ = ("_request",)

    def __init__(self, request: Request) -> None:
        self._request = request

    def pauseProducing(self) -> None:
        """
        See L{twisted.internet.interfaces.IPushProducer.pauseProducing}.
        """
        self._request._pauseBody()

    def resumeProducing(self) -> None:
        """
        See L{twisted.internet.interfaces.IPushProducer.resumeProducing}.
        """
        self._request._resumeBody()

    def stopProducing(self) -> None:
        """
        See L{twisted.internet.interfaces.IPushProducer.stopProducing}.
        """
        self._request._stopBody()


@implementer(IBodySource)
class Request:
    """
    One request received by L{HTTPServerProtocol}, handed to the handler as
    soon as its head is complete.

    The head attributes are those of L{RequestHead}: C{method}, C{target},
    C{version}, C{headers}, C{bodyLength}, C{keepAlive},
    C{expectContinue}, C{upgrade}, C{host}, C{path}.

    @ivar connection: the L{ServerConnection} it arrived on.
    @ivar response: where the answer is written.
    @ivar trailers: the trailer fields of a chunked body, once it is
        complete, else C{None}.
    """

    __slots__ = (
        "method",
        "target",
        "version",
        "headers",
        "bodyLength",
        "keepAlive",
        "expectContinue",
        "upgrade",
        "host",
        "path",
        "connection",
        "response",
        "trailers",
        "_protocol",
        "_consumer",
        "_pending",
        "_pendingSize",
        "_paused",
        "_bodyDone",
        "_bodyFailure",
        "_endDelivered",
        "_discarding",
        "_continueSent",
        "_delivered",
    )

    def __init__(self, head: RequestHead, protocol: HTTPServerProtocol) -> None:
        self.method = head.method
        self.target = head.target
        self.version = head.version
        self.headers = head.headers
        self.bodyLength = head.bodyLength
        self.keepAlive = head.keepAlive
        self.expectContinue = head.expectContinue
        self.upgrade = head.upgrade
        self.host = head.host
        self.path = head.path
        self.connection = protocol.connection
        self.trailers: Headers | None = None
        self._protocol = protocol
        self._consumer: IBodyConsumer | None = None
        self._pending: deque[bytes] = deque()
        self._pendingSize = 0
        self._paused = False
        self._bodyDone = head.bodyLength == 0
        self._bodyFailure: Failure | None = None
        self._endDelivered = False
        self._discarding = False
        self._continueSent = False
        self._delivered = False
        self.response = Response(self, protocol)

    def __repr__(self) -> str:
        return f"<Request {self.method!r} {self.target!r} {self.version!r}>"

    # The body, as an IBodySource.

    def deliverBody(self, consumer: IBodyConsumer) -> None:
        """
        Start delivering the body to C{consumer} (see L{IBodySource}).

        For a request with C{Expect: 100-continue}, this is when
        C{100 Continue} is sent (unless a final response was written).

        @raise RuntimeError: the body was already delivered or given up.
        """
        if self._delivered:
            raise RuntimeError("the request body can be delivered only once")
        self._delivered = True
        self._consumer = consumer
        if (
            self.expectContinue
            and not self._continueSent
            and not self._bodyDone
            and not self.response._headWritten
            and self._protocol._request is self
        ):
            self._continueSent = True
            self._protocol.transport.write(_CONTINUE)
            self._protocol._bodyClockStarts()
        consumer.bodyStarted(_RequestBodyProducer(self))
        if self._discarding:
            consumer.bodyFailed(
                Failure(RuntimeError("the request body was already given up"))
            )
            self._consumer = None
        elif self._bodyFailure is not None:
            self._consumer = None
            consumer.bodyFailed(self._bodyFailure)
        else:
            self._flush()

    def _bodyData(self, data: bytes) -> None:
        if self._discarding:
            return
        consumer = self._consumer
        if consumer is not None and not self._paused and not self._pending:
            consumer.bodyDataReceived(data)
            return
        self._pending.append(data)
        self._pendingSize += len(data)
        if self._paused or self._pendingSize >= self._protocol._limits.bodyBufferSize:
            self._protocol._pause(_PAUSE_BODY)

    def _bodyEnd(self, trailers: Headers | None) -> None:
        self._bodyDone = True
        self.trailers = trailers
        if self._consumer is not None and not self._paused and not self._pending:
            self._endDelivered = True
            consumer, self._consumer = self._consumer, None
            consumer.bodyFinished()

    def _bodyError(self, reason: Failure) -> None:
        if self._bodyDone:
            return
        self._bodyDone = True
        self._bodyFailure = reason
        self._pending.clear()
        self._pendingSize = 0
        consumer, self._consumer = self._consumer, None
        if consumer is not None and not self._discarding:
            consumer.bodyFailed(reason)

    def _flush(self) -> None:
        pending = self._pending
        while pending and not self._paused and self._consumer is not None:
            data = pending.popleft()
            self._pendingSize -= len(data)
            self._consumer.bodyDataReceived(data)
        if (
            not pending
            and self._bodyDone
            and not self._endDelivered
            and self._consumer is not None
            and not self._paused
        ):
            self._endDelivered = True
            consumer, self._consumer = self._consumer, None
            if self._bodyFailure is not None:
                consumer.bodyFailed(self._bodyFailure)
            else:
                consumer.bodyFinished()
        if not self._paused and self._pendingSize < self._protocol._limits.bodyBufferSize:
            if self._protocol._request is self:
                self._protocol._resume(_PAUSE_BODY)

    def _pauseBody(self) -> None:
        if self._consumer is None or self._paused:
            return
        self._paused = True
        if self._protocol._request is self and not self._bodyDone:
            self._protocol._pause(_PAUSE_BODY)

    def _resumeBody(self) -> None:
        if not self._paused:
            return
        self._paused = False
        self._flush()

    def _stopBody(self) -> None:
        # The consumer gives up the body (an upstream that answered early):
        # nothing more is delivered.  Reading stays paused until the
        # response is finished; then the rest is discarded or the
        # connection closed.
        self._discarding = True
        self._consumer = None
        self._pending.clear()
        self._pendingSize = 0
        if self._protocol._request is self and not self._bodyDone:
            self._protocol._pause(_PAUSE_BODY)

    def _discard(self, reason: Failure) -> None:
        # Nobody will read the rest of the body: a consumer still attached
        # learns that it will not be complete.
        consumer, self._consumer = self._consumer, None
        self._discarding = True
        self._pending.clear()
        self._pendingSize = 0
        if consumer is not None and not self._endDelivered:
            self._endDelivered = True
            consumer.bodyFailed(reason)

    # Tunnels.

    def takeOver(self, protocol: IProtocol) -> None:
        """
        Hand the connection to C{protocol} after an Upgrade: it is connected
        to the transport and first receives, in order, every byte the client
        sent after this request's head; then everything else.

        The handler writes the C{101} first (L{Response.writeInformational}).

        @raise RuntimeError: this is not the current Upgrade request, or a
            final response was written.
        """
        self._protocol._takeOver(self, protocol)


class Response:
    """
    The answer to one L{Request}; framing is chosen by the layer.

    The layer owns the C{Content-Length}, C{Transfer-Encoding} and
    C{Connection} fields: any given to L{writeHead} are dropped (a
    C{Connection: close} among them is honoured).  A known C{length} is sent
    as C{Content-Length}; an unknown one is chunked for HTTP/1.1 and
    close-delimited for HTTP/1.0.  Responses to C{HEAD} and C{204}/C{304}
    responses never carry a body: data written to them is dropped.

    Once the connection is gone (or the layer answered with an error), the
    methods do nothing; L{notifyFinish} tells when that happens.
    """

    __slots__ = (
        "_request",
        "_protocol",
        "_headWritten",
        "_finished",
        "_abandoned",
        "_noBody",
        "_chunked",
        "_remaining",
        "_keepAlive",
        "_producer",
        "_waiters",
        "status",
    )

    def __init__(self, request: Request, protocol: HTTPServerProtocol) -> None:
        self._request = request
        self._protocol = protocol
        self._headWritten = False
        self._finished = False
        self._abandoned = False
        self._noBody = False
        self._chunked = False
        self._remaining: int | None = None
        self._keepAlive = False
        self._producer: object = None
        self._waiters: list[Deferred[None]] | None = None
        self.status: int | None = None

    @property
    def headWritten(self) -> bool:
        """
        Whether the final response head was written.
        """
        return self._headWritten

    @property
    def finished(self) -> bool:
        """
        Whether the response is complete (or abandoned).
        """
        return self._finished or self._abandoned

    def writeInformational(
        self,
        status: int,
        reason: bytes,
        headers: Headers | Iterable[tuple[bytes, bytes]] = (),
    ) -> None:
        """
        Write an interim (1xx) response, such as C{101 Switching Protocols}
        before L{Request.takeOver}.  Fields are written as given.

        @raise ValueError: not a 1xx status, a 101 for a request that did not
            ask for an Upgrade, or an HTTP/1.0 client.
        @raise RuntimeError: the final head was already written.
        """
        if self._abandoned:
            return
        if self._headWritten:
            raise RuntimeError("the final response head was already written")
        if type(status) is not int or not 100 <= status <= 199:
            raise ValueError(f"not an interim status: {status!r}")
        if self._request.version != b"HTTP/1.1":
            raise ValueError("no interim responses to an HTTP/1.0 client")
        if status == 101 and self._request.upgrade is None:
            raise ValueError("101 answers only an Upgrade request")
        head = b"HTTP/1.1 %d %s\r\n%s\r\n" % (
            status,
            _checkReason(reason),
            b"".join([n + b": " + v + b"\r\n" for n, v in _checkedPairs(headers)]),
        )
        if status == 100:
            self._request._continueSent = True
        self._protocol.transport.write(head)

    def _head(
        self,
        status: int,
        reason: bytes,
        headers: Headers | Iterable[tuple[bytes, bytes]],
        length: int | None,
    ) -> bytes:
        if self._abandoned:
            return b""
        if self._headWritten:
            raise RuntimeError("the response head was already written")
        if type(status) is not int or not 200 <= status <= 599:
            raise ValueError(f"not a final status: {status!r}")
        if length is not None and (type(length) is not int or length < 0):
            raise ValueError(f"invalid length {length!r}")
        _checkReason(reason)
        request = self._request
        protocol = self._protocol
        keepAlive = request.keepAlive
        parts = [b"HTTP/1.1 %d %s\r\n" % (status, reason)]
        append = parts.append
        for name, value in _checkedPairs(headers):
            lower = name.lower()
            if lower in _OWN_FIELDS:
                if lower == b"connection" and b"close" in {
                    token.strip(b" \t").lower() for token in value.split(b",")
                }:
                    keepAlive = False
                continue
            append(name + b": " + value + b"\r\n")
        noBody = request.method == b"HEAD" or status == 204 or status == 304
        if status == 204:
            if length:
                raise ValueError("a 204 response has no body")
        elif length is not None:
            append(b"Content-Length: %d\r\n" % length)
            self._remaining = 0 if noBody else length
        elif not noBody:
            if request.version == b"HTTP/1.1":
                append(b"Transfer-Encoding: chunked\r\n")
                self._chunked = True
            else:
                keepAlive = False
        if keepAlive and not protocol._mayKeepAlive(request):
            keepAlive = False
        if not keepAlive:
            append(b"Connection: close\r\n\r\n")
        elif request.version == b"HTTP/1.0":
            append(b"Connection: keep-alive\r\n\r\n")
        else:
            append(b"\r\n")
        self._noBody = noBody
        self._keepAlive = keepAlive
        self._headWritten = True
        self.status = status
        return b"".join(parts)

    def writeHead(
        self,
        status: int,
        reason: bytes,
        headers: Headers | Iterable[tuple[bytes, bytes]] = (),
        length: int | None = None,
    ) -> None:
        """
        Write the final response head.

        @param status: 200 to 599.
        @param reason: the reason phrase.
        @param headers: L{Headers}, or C{(name, value)} pairs (checked).
        @param length: the body length, or C{None} if unknown.
        @raise ValueError: an invalid status, reason, field or length.
        @raise RuntimeError: the head was already written.
        """
        head = self._head(status, reason, headers, length)
        if head:
            self._protocol.transport.write(head)

    def respond(
        self,
        status: int,
        reason: bytes,
        headers: Headers | Iterable[tuple[bytes, bytes]] = (),
        body: bytes = b"",
    ) -> None:
        """
        Write a complete response with a body in hand, in one transport
        write, and finish it.
        """
        head = self._head(status, reason, headers, len(body))
        if not head:
            return
        if self._noBody or not body:
            self._protocol.transport.write(head)
        else:
            self._remaining = 0
            self._protocol.transport.write(head + body)
        self._finish()

    def write(self, data: bytes) -> None:
        """
        Write body data.

        @raise RuntimeError: no head was written, or the response finished.
        @raise ValueError: more data than the declared length (the
            connection is aborted: the client sees a truncated response).
        """
        if self._abandoned:
            return
        if not self._headWritten or self._finished:
            raise RuntimeError("write() needs a written head and an unfinished response")
        if not data or self._noBody:
            return
        transport = self._protocol.transport
        if self._chunked:
            transport.writeSequence(encodeChunk(data))
            return
        remaining = self._remaining
        if remaining is not None:
            if len(data) > remaining:
                self.abort()
                raise ValueError("body longer than the declared Content-Length")
            self._remaining = remaining - len(data)
        transport.write(data)

    def finish(self) -> None:
        """
        The response is complete.

        @raise RuntimeError: no head was written, or already finished.
        @raise ValueError: less data than the declared length was written;
            the connection is aborted so the client sees the truncation.
        """
        if self._abandoned:
            return
        if not self._headWritten or self._finished:
            raise RuntimeError("finish() needs a written head and an unfinished response")
        if self._chunked:
            self._protocol.transport.write(LAST_CHUNK)
        elif self._remaining:
            self.abort()
            raise ValueError("response finished before its declared Content-Length")
        self._finish()

    def _finish(self) -> None:
        self._finished = True
        self._unregister()
        waiters, self._waiters = self._waiters, None
        if waiters:
            for waiter in waiters:
                waiter.callback(None)
        self._protocol._responseFinished(self._request)

    def abort(self) -> None:
        """
        Give up: close the connection at once, so the client sees an
        incomplete response (never a clean end).  Does nothing once the
        response is finished.
        """
        if self._finished or self._abandoned:
            return
        reason = Failure(ConnectionAborted("response aborted"))
        self._abandon(reason)
        self._protocol._abort(self._request, reason)

    def _abandon(self, reason: Failure) -> None:
        if self._finished or self._abandoned:
            return
        self._abandoned = True
        self._unregister()
        waiters, self._waiters = self._waiters, None
        if waiters:
            for waiter in waiters:
                waiter.errback(reason)

    def notifyFinish(self) -> Deferred[None]:
        """
        A L{Deferred} that fires with C{None} when the response is finished,
        or fails if the connection goes away (or the layer answers with an
        error) first: the signal to abort the upstream request.
        """
        if self._finished:
            return succeed(None)
        d: Deferred[None] = Deferred()
        if self._abandoned:
            d.errback(Failure(ConnectionAborted("response abandoned")))
            return d
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(d)
        return d

    def registerProducer(self, producer: object, streaming: bool = True) -> None:
        """
        Register C{producer} with the client transport, so that a slow
        client pauses it.
        """
        if self._abandoned or self._finished:
            producer.stopProducing()  # type: ignore[attr-defined]
            return
        self._producer = producer
        self._protocol.transport.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        """
        Unregister the producer given to L{registerProducer}.
        """
        self._unregister()

    def _unregister(self) -> None:
        if self._producer is not None:
            self._producer = None
            self._protocol.transport.unregisterProducer()


@implementer(IBodyConsumer)
class BodyRelay:
    """
    Relay a body (an upstream response body) into a L{Response}, with
    backpressure: a slow client pauses the body's producer; a failed body
    aborts the response so the client sees truncation.
    """

    __slots__ = ("_response",)

    def __init__(self, response: Response) -> None:
        """
        @param response: a response whose head was written.
        """
        self._response = response

    def bodyStarted(self, producer: IPushProducer) -> None:
        """
        @see: L{IBodyConsumer.bodyStarted}
        """
        self._response.registerProducer(producer, True)

    def bodyDataReceived(self, data: bytes) -> None:
        """
        @see: L{IBodyConsumer.bodyDataReceived}
        """
        self._response.write(data)

    def bodyFinished(self) -> None:
        """
        @see: L{IBodyConsumer.bodyFinished}
        """
        self._response.unregisterProducer()
        self._response.finish()

    def bodyFailed(self, reason: Failure) -> None:
        """
        @see: L{IBodyConsumer.bodyFailed}
        """
        self._response.abort()


@implementer(IHalfCloseableProtocol)
class HTTPServerProtocol(Protocol):
    """
    A strict HTTP/1.1 server connection calling an L{IRequestHandler}.

    It is half-closeable so that, after L{Request.takeOver}, a peer's
    half-close (a TCP FIN, or a TLS close_notify) reaches a half-closeable
    new protocol as such; before that, a half-close ends the connection once
    what was written has been sent.

    @ivar connection: the L{ServerConnection}, once connected.
    """

    def __init__(
        self,
        handler: IRequestHandler,
        clock: IReactorTime,
        limits: ServerLimits = ServerLimits(),
        errorPages: IErrorPageRenderer | None = None,
    ) -> None:
        """
        @param handler: called with each request.
        @param clock: the reactor's time (timeouts).
        @param limits: the bounds to enforce.
        @param errorPages: renders the layer's own error responses.
        """
        self._handler = handler
        self._clock = clock
        self._limits = limits
        self._errorPages = errorPages if errorPages is not None else PlainTextErrorPages()
        self._state = _HEAD
        self._buffer = b""
        self._headScanned = 0
        self._lineSeen = False
        self._driving = False
        self._pauses = 0
        self._request: Request | None = None
        self._decoder: ChunkedDecoder | None = None
        self._bodyRemaining = 0
        self._bodyTotal = 0
        self._tunnel: IProtocol | None = None
        self._timer: object = None
        self._idleStart = 0.0
        self._headStart = 0.0
        self._lastBodyTime = 0.0
        self._lingerStart = 0.0
        self._lingerBytes = 0
        self.connection: ServerConnection | None = None

    # Connection events.

    def connectionMade(self) -> None:
        """
        Set C{TCP_NODELAY} (responses are small and latency matters) and
        start the idle timer.
        """
        transport = self.transport
        if ITCPTransport.providedBy(transport):
            try:
                transport.setTcpNoDelay(True)
            except (OSError, AttributeError):
                # Not a real socket (or already closed): nothing to tune.
                pass
        self.connection = ServerConnection(transport)
        self._idleStart = self._clock.seconds()
        self._touchTimer()

    def dataReceived(self, data: bytes) -> None:
        """
        Parse what can be parsed; buffer the rest (bounded).
        """
        state = self._state
        if state == _TAKEN:
            self._tunnel.dataReceived(data)  # type: ignore[union-attr]
            return
        if state == _CLOSED or not data:
            return
        if state == _LINGER:
            self._lingerBytes += len(data)
            if self._lingerBytes > self._limits.maxLingerBytes:
                self._close()
            return
        if self._buffer:
            self._buffer += data
        else:
            self._buffer = data
            if state == _HEAD:
                self._headStart = self._clock.seconds()
        self._drive()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """
        Tell the current request's body consumer and response waiters (or
        the protocol that took the connection over).
        """
        previous = self._state
        self._state = _CLOSED
        self._cancelTimer()
        if previous == _TAKEN:
            self._tunnel.connectionLost(reason)  # type: ignore[union-attr]
            return
        request, self._request = self._request, None
        if request is not None:
            request._bodyError(reason)
            request.response._abandon(reason)

    def readConnectionLost(self) -> None:
        """
        The peer will send nothing more.  A protocol that took the
        connection over and is half-closeable hears it as such; otherwise
        the connection closes once what was written is sent (no further
        request can arrive, and a body in progress is truncated).
        """
        if self._state == _TAKEN:
            tunnel = IHalfCloseableProtocol(self._tunnel, None)
            if tunnel is not None:
                tunnel.readConnectionLost()
                return
        if self._state != _CLOSED:
            self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        """
        Our side's half-close completed; only a half-closeable protocol
        that took the connection over cares.
        """
        if self._state == _TAKEN:
            tunnel = IHalfCloseableProtocol(self._tunnel, None)
            if tunnel is not None:
                tunnel.writeConnectionLost()

    # Parsing.

    def _drive(self) -> None:
        if self._driving:
            return
        self._driving = True
        try:
            while self._buffer:
                state = self._state
                if state == _HEAD:
                    if not self._readHead():
                        break
                elif state == _BODY:
                    data, self._buffer = self._buffer, b""
                    self._readBody(data)
                else:
                    break
        finally:
            self._driving = False
        if (
            (self._state == _AWAIT or self._state == _UPGRADE)
            and len(self._buffer) > self._limits.maxPipelineBuffer
        ):
            self._pause(_PAUSE_PIPELINE)

    def _readHead(self) -> bool:
        buffer = self._buffer
        if buffer[:2] == b"\r\n":
            # RFC 9112 section 2.2: ignore empty lines before a request
            # line (some clients send one after a POST body); a few only.
            skip = 0
            while buffer.startswith(b"\r\n", skip) and skip < 2 * _MAX_EMPTY_LINES:
                skip += 2
            buffer = buffer[skip:]
            self._buffer = buffer
            self._headScanned = 0
            if not buffer:
                return False
        # Only the bytes that arrived since the last look are searched.
        scanned = self._headScanned
        end = buffer.find(b"\r\n\r\n", scanned - 3 if scanned > 3 else 0)
        limits = self._limits
        if end < 0:
            try:
                self._checkPartialHead(buffer, scanned)
            except HTTPParseError as e:
                self._error(e.status, e.detail)
                return False
            self._headScanned = len(buffer)
            self._touchTimer()
            return False
        self._buffer = buffer[end + 4 :]
        self._headScanned = 0
        self._lineSeen = False
        try:
            head = parseRequestHead(buffer[:end], limits)
        except HTTPParseError as e:
            self._error(e.status, e.detail)
            return False
        self._startRequest(head)
        return True

    def _checkPartialHead(self, buffer: bytes, scanned: int) -> None:
        limits = self._limits
        if len(buffer) > limits.maxHeadBytes + 3:
            raise HTTPParseError(431, "request head too large")
        if not self._lineSeen:
            if buffer.find(b"\r\n", scanned - 1 if scanned else 0) >= 0:
                self._lineSeen = True
            elif len(buffer) > limits.maxRequestLineLength + 1:
                raise HTTPParseError(414, "request line too long")
        checkNewHeadBytes(buffer, scanned)

    def _startRequest(self, head: RequestHead) -> None:
        request = Request(head, self)
        self._request = request
        if head.upgrade is not None:
            self._state = _UPGRADE
            self._pause(_PAUSE_UPGRADE)
        elif head.bodyLength == 0:
            self._state = _AWAIT
        else:
            self._state = _BODY
            self._bodyTotal = 0
            if head.bodyLength is None:
                limits = self._limits
                self._decoder = ChunkedDecoder(
                    limits.maxChunkExtensionLength,
                    limits.maxTrailerBytes,
                    limits.maxHeaderCount,
                )
            else:
                self._decoder = None
                self._bodyRemaining = head.bodyLength
            self._bodyClockStarts()
        try:
            self._handler.requestReceived(request)
        except Exception:
            _log.failure("request handler failed for {request!r}", request=request)
            if self._request is request and self._state != _CLOSED:
                if request.response._headWritten:
                    request.response.abort()
                else:
                    self._error(500, "the request could not be handled")

    def _readBody(self, data: bytes) -> None:
        request = self._request
        assert request is not None
        self._lastBodyTime = self._clock.seconds()
        decoder = self._decoder
        if decoder is None:
            remaining = self._bodyRemaining
            if len(data) <= remaining:
                body, rest = data, b""
            else:
                body, rest = data[:remaining], data[remaining:]
            self._bodyRemaining = remaining - len(body)
            if body:
                request._bodyData(body)
            if self._request is not request or self._state != _BODY:
                return
            if self._bodyRemaining == 0:
                self._buffer = rest
                self._bodyComplete(request, None)
            return
        try:
            rest = decoder.feed(data, self._chunkedData)
        except HTTPParseError as e:
            self._bodyFailed(request, e.status, e.detail)
            return
        if self._request is not request or self._state != _BODY:
            return
        if rest is not None:
            self._buffer = rest
            self._decoder = None
            self._bodyComplete(request, decoder.trailers)

    def _chunkedData(self, data: bytes) -> None:
        maxBody = self._limits.maxBodyLength
        if maxBody is not None:
            self._bodyTotal += len(data)
            if self._bodyTotal > maxBody:
                raise HTTPParseError(413, "request body too large")
        request = self._request
        if request is not None and self._state == _BODY:
            request._bodyData(data)

    def _bodyComplete(self, request: Request, trailers: Headers | None) -> None:
        self._state = _AWAIT
        self._resume(_PAUSE_BODY)
        request._bodyEnd(trailers)
        if (
            self._request is request
            and self._state == _AWAIT
            and request.response._finished
        ):
            self._requestDone(request)

    def _bodyFailed(self, request: Request, status: int, detail: str) -> None:
        request._bodyError(Failure(HTTPParseError(status, detail)))
        self._error(status, detail)

    def _bodyClockStarts(self) -> None:
        self._lastBodyTime = self._clock.seconds()
        self._touchTimer()

    # Answers.

    def _mayKeepAlive(self, request: Request) -> bool:
        """
        Whether the connection can stay open after the response to
        C{request} that is being written now.
        """
        if request.upgrade is not None:
            # A refused Upgrade: what follows the head may already be data
            # for the other protocol; never parse it as requests.
            return False
        if self._state != _BODY:
            return self._state == _AWAIT
        if request.expectContinue and not request._continueSent:
            # The client may or may not send the body: ambiguous, close.
            return False
        return (
            self._decoder is None
            and self._bodyRemaining <= self._limits.maxDiscardLength
        )

    def _responseFinished(self, request: Request) -> None:
        if self._request is not request:
            return
        state = self._state
        if state == _BODY:
            if request.response._keepAlive:
                # A small remainder of a body nobody reads: discard it and
                # keep the connection.
                request._discard(
                    Failure(ConnectionAborted("response finished before the body"))
                )
                self._resume(_PAUSE_BODY)
                self._touchTimer()
                return
            self._linger()
            return
        if state == _UPGRADE:
            self._linger()
            return
        if state == _AWAIT:
            if request.response._keepAlive:
                self._requestDone(request)
            elif self._buffer:
                self._linger()
            else:
                self._close()

    def _requestDone(self, request: Request) -> None:
        self.connection.requestsServed += 1  # type: ignore[union-attr]
        self._request = None
        self._state = _HEAD
        now = self._clock.seconds()
        self._idleStart = self._headStart = now
        self._resume(_PAUSE_PIPELINE | _PAUSE_BODY)
        if self._buffer:
            self._drive()
        self._touchTimer()

    def _error(self, status: int, detail: str) -> None:
        if self._state == _CLOSED or self._state == _TAKEN:
            return
        request, self._request = self._request, None
        reason = Failure(HTTPParseError(status, detail))
        if request is not None:
            request._bodyError(reason)
            response = request.response
            if response._headWritten:
                response._abandon(reason)
                self._state = _CLOSED
                self._cancelTimer()
                self.transport.abortConnection()
                return
            response._abandon(reason)
        phrase = REASONS.get(status, b"Error")
        try:
            contentType, body = self._errorPages.renderError(status, phrase, detail)
            checkValue(contentType)
        except Exception:
            _log.failure("error page renderer failed")
            contentType, body = PlainTextErrorPages().renderError(status, phrase, detail)
        self.transport.write(
            b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
            b"X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n%s"
            % (status, phrase, contentType, len(body), body)
        )
        self._linger()

    def _abort(self, request: Request, reason: Failure) -> None:
        if self._state == _CLOSED or self._state == _TAKEN:
            return
        if self._request is request:
            self._request = None
            request._bodyError(reason)
        self._state = _CLOSED
        self._cancelTimer()
        self.transport.abortConnection()

    def _linger(self) -> None:
        # The client may still be sending (a body we will not read, early
        # tunnel data): closing now could make the kernel answer with a
        # reset that destroys the response before the client reads it.
        # Keep reading and discarding for a while, then close.
        request, self._request = self._request, None
        if request is not None and not request._bodyDone:
            request._discard(Failure(ConnectionAborted("response sent, closing")))
        self._state = _LINGER
        self._lingerBytes = len(self._buffer)
        self._buffer = b""
        self._lingerStart = self._clock.seconds()
        if self._pauses:
            self._pauses = 0
            self.transport.resumeProducing()
        self._touchTimer()

    def _close(self) -> None:
        if self._state == _CLOSED:
            return
        self._state = _CLOSED
        self._cancelTimer()
        self._buffer = b""
        self.transport.loseConnection()
        # A client that stops reading would keep the connection forever.
        self._timer = self._clock.callLater(
            self._limits.closeTimeout, self.transport.abortConnection
        )

    # Tunnels.

    def _takeOver(self, request: Request, protocol: IProtocol) -> None:
        if self._request is not request or self._state != _UPGRADE:
            raise RuntimeError("takeOver() needs the current Upgrade request")
        if request.response._headWritten:
            raise RuntimeError("a final response was already written")
        self._state = _TAKEN
        self._tunnel = protocol
        self._request = None
        self._cancelTimer()
        self.connection.requestsServed += 1  # type: ignore[union-attr]
        request.response._finished = True
        waiters, request.response._waiters = request.response._waiters, None
        if waiters:
            for waiter in waiters:
                waiter.callback(None)
        early, self._buffer = self._buffer, b""
        if self._pauses:
            # Resuming first is safe: nothing is read before we return to
            # the reactor, and a pause by the new protocol must win.
            self._pauses = 0
            self.transport.resumeProducing()
        protocol.makeConnection(self.transport)
        if early and self._state == _TAKEN:
            protocol.dataReceived(early)

    # Reading pauses and timers.

    def _pause(self, reason: int) -> None:
        if not self._pauses and self._state != _CLOSED:
            self.transport.pauseProducing()
        self._pauses |= reason

    def _resume(self, reasons: int) -> None:
        if self._pauses & reasons:
            self._pauses &= ~reasons
            if not self._pauses and self._state != _CLOSED:
                self.transport.resumeProducing()
                if self._state == _BODY:
                    self._bodyClockStarts()

    def _deadline(self) -> float | None:
        state = self._state
        limits = self._limits
        if state == _HEAD:
            if self._buffer:
                return self._headStart + limits.headTimeout
            return self._idleStart + limits.idleTimeout
        if state == _BODY:
            request = self._request
            if self._pauses or (
                request is not None
                and request.expectContinue
                and not request._continueSent
                and not request._discarding
            ):
                return None
            return self._lastBodyTime + limits.bodyTimeout
        if state == _LINGER:
            return self._lingerStart + limits.lingerTimeout
        return None

    def _touchTimer(self) -> None:
        # One timer per connection, re-armed lazily: most requests never
        # touch the reactor's timer queue.
        deadline = self._deadline()
        if deadline is None:
            return
        timer = self._timer
        if timer is None:
            self._timer = self._clock.callLater(
                max(0.0, deadline - self._clock.seconds()), self._timeout
            )
        elif timer.getTime() > deadline:  # type: ignore[attr-defined]
            timer.reset(max(0.0, deadline - self._clock.seconds()))  # type: ignore[attr-defined]

    def _cancelTimer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():  # type: ignore[attr-defined]
            timer.cancel()  # type: ignore[attr-defined]

    def _timeout(self) -> None:
        self._timer = None
        deadline = self._deadline()
        if deadline is None:
            return
        now = self._clock.seconds()
        if now < deadline:
            self._timer = self._clock.callLater(deadline - now, self._timeout)
            return
        state = self._state
        if state == _HEAD:
            if self._buffer:
                self._error(408, "request head not received in time")
            else:
                self._close()
        elif state == _BODY:
            request = self._request
            assert request is not None
            self._bodyFailed(request, 408, "request body not received in time")
        else:
            self._close()


class HTTPServerFactory(Factory):
    """
    Builds L{HTTPServerProtocol}s sharing one handler, clock and limits.
    """

    noisy = False

    def __init__(
        self,
        handler: IRequestHandler,
        clock: IReactorTime,
        limits: ServerLimits = ServerLimits(),
        errorPages: IErrorPageRenderer | None = None,
    ) -> None:
        """
        @see: L{HTTPServerProtocol.__init__}
        """
        self.handler = handler
        self.clock = clock
        self.limits = limits
        self.errorPages = errorPages

    def buildProtocol(self, addr: object) -> HTTPServerProtocol:
        """
        A new connection's protocol.
        """
        protocol = HTTPServerProtocol(self.handler, self.clock, self.limits, self.errorPages)
        protocol.factory = self
        return protocol
