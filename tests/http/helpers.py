"""
Shared helpers for the HTTP layer tests: a handler that records requests,
a body consumer that records what it gets, and in-memory connections.
"""

from __future__ import annotations

from typing import Callable

from twisted.internet.interfaces import IPushProducer
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from zope.interface import implementer

from ztnagw.http.interfaces import IBodyConsumer, IRequestHandler
from ztnagw.http.limits import ServerLimits
from ztnagw.http.server import HTTPServerProtocol, Request


@implementer(IRequestHandler)
class RecordingHandler:
    """
    Records requests; optionally answers each with C{answer(request)}.
    """

    def __init__(self, answer: Callable[[Request], object] | None = None) -> None:
        """
        Set up empty records.
        """
        self.requests: list[Request] = []
        self.answer = answer

    def requestReceived(self, request: Request) -> None:
        """
        See L{ztnagw.http.interfaces.IRequestHandler.requestReceived}.
        """
        self.requests.append(request)
        if self.answer is not None:
            self.answer(request)


def answerOK(request: Request) -> None:
    """
    Answer with C{200} and the path as the body.
    """
    request.response.respond(200, b"OK", [(b"Content-Type", b"text/plain")], request.path)


@implementer(IBodyConsumer)
class Collector:
    """
    An L{IBodyConsumer} that records everything.
    """

    def __init__(self) -> None:
        """
        Set up empty records.
        """
        self.producer: IPushProducer | None = None
        self.chunks: list[bytes] = []
        self.finished = False
        self.failure: Failure | None = None
        self.events: list[str] = []

    @property
    def data(self) -> bytes:
        """
        Everything received so far.
        """
        return b"".join(self.chunks)

    def bodyStarted(self, producer: IPushProducer) -> None:
        """
        See L{ztnagw.http.interfaces.IBodyConsumer.bodyStarted}.
        """
        self.events.append("started")
        self.producer = producer

    def bodyDataReceived(self, data: bytes) -> None:
        """
        See L{ztnagw.http.interfaces.IBodyConsumer.bodyDataReceived}.
        """
        assert data, "empty body piece"
        assert not self.finished and self.failure is None
        self.chunks.append(data)

    def bodyFinished(self) -> None:
        """
        See L{ztnagw.http.interfaces.IBodyConsumer.bodyFinished}.
        """
        assert not self.finished and self.failure is None
        self.events.append("finished")
        self.finished = True

    def bodyFailed(self, reason: Failure) -> None:
        """
        See L{ztnagw.http.interfaces.IBodyConsumer.bodyFailed}.
        """
        assert not self.finished and self.failure is None
        self.events.append("failed")
        self.failure = reason


class TrackingTransport(StringTransport):
    """
    A L{StringTransport} that counts pause and resume calls and records
    whether reading is paused.
    """

    def __init__(self) -> None:
        """
        Set up empty records.
        """
        super().__init__()
        self.readingPaused = False
        self.aborted = False

    def pauseProducing(self) -> None:
        """
        See L{twisted.internet.interfaces.IPushProducer.pauseProducing}.
        """
        self.readingPaused = True
        super().pauseProducing()

    def resumeProducing(self) -> None:
        """
        See L{twisted.internet.interfaces.IPushProducer.resumeProducing}.
        """
        self.readingPaused = False
        super().resumeProducing()

    def abortConnection(self) -> None:
        """
        Record the abort.
        """
        self.aborted = True
        super().abortConnection()


def connectServer(
    handler: IRequestHandler,
    limits: ServerLimits = ServerLimits(),
    clock: MemoryReactorClock | None = None,
) -> tuple[HTTPServerProtocol, TrackingTransport, MemoryReactorClock]:
    """
    A server protocol connected to a L{TrackingTransport}.
    """
    if clock is None:
        clock = MemoryReactorClock()
    protocol = HTTPServerProtocol(handler, clock, limits)
    transport = TrackingTransport()
    protocol.makeConnection(transport)
    return protocol, transport, clock


def statusOf(output: bytes) -> int:
    """
    The status code of the first response in C{output}.
    """
    return int(output[9:12])


@implementer(IPushProducer)
class StreamingSource:
    """
    An L{ztnagw.http.interfaces.IBodySource} fed by the test, recording the
    pause, resume and stop calls of its consumer.
    """

    def __init__(self, bodyLength: int | None) -> None:
        """
        Set up empty records.
        """
        self.bodyLength = bodyLength
        self.consumer = None
        self.paused = False
        self.stopped = False

    def deliverBody(self, consumer) -> None:
        """
        See L{ztnagw.http.interfaces.IBodySource.deliverBody}.
        """
        self.consumer = consumer
        consumer.bodyStarted(self)

    def pauseProducing(self) -> None:
        """
        See L{twisted.internet.interfaces.IPushProducer.pauseProducing}.
        """
        self.paused = True

    def resumeProducing(self) -> None:
        """
        See L{twisted.internet.interfaces.IPushProducer.resumeProducing}.
        """
        self.paused = False

    def stopProducing(self) -> None:
        """
        See L{twisted.internet.interfaces.IPushProducer.stopProducing}.
        """
        self.stopped = True


def connectUpstream(reactor: MemoryReactorClock, index: int = -1):
    """
    Complete the connection attempt C{reactor.tcpClients[index]} with a
    L{TrackingTransport}; return the protocol and the transport.
    """
    host, port, factory, timeout, bindAddress = reactor.tcpClients[index]
    protocol = factory.buildProtocol(None)
    transport = TrackingTransport()
    protocol.makeConnection(transport)
    return protocol, transport


@implementer(IRequestHandler)
class ProxyHandler:
    """
    The smallest reverse proxy: every request to one upstream key, bodies
    relayed both ways with backpressure, as the gateway will do it.

    @ivar relayed: per request, bytes of request body passed upstream.
    """

    def __init__(self, pool, key, onRequestBody=None, onResponseBody=None) -> None:
        """
        Set up empty records.
        """
        self.pool = pool
        self.key = key
        self.onRequestBody = onRequestBody
        self.onResponseBody = onResponseBody

    def requestReceived(self, request: Request) -> None:
        """
        See L{ztnagw.http.interfaces.IRequestHandler.requestReceived}.
        """
        from ztnagw.http.headers import withoutHopByHop
        from ztnagw.http.server import BodyRelay

        body = request if request.bodyLength != 0 else None
        if body is not None and self.onRequestBody is not None:
            body = _CountingSource(request, self.onRequestBody)
        d = self.pool.request(
            self.key, request.method, request.target, withoutHopByHop(request.headers), body
        )
        response = request.response

        def gotResponse(upstream) -> None:
            response.writeHead(
                upstream.status, upstream.reason, withoutHopByHop(upstream.headers), upstream.length
            )
            consumer = BodyRelay(response)
            if self.onResponseBody is not None:
                consumer = _CountingConsumer(consumer, self.onResponseBody)
            upstream.deliverBody(consumer)

        def failed(reason: Failure) -> None:
            if not response.headWritten:
                response.respond(502, b"Bad Gateway", (), reason.getErrorMessage().encode())
            else:
                response.abort()

        d.addCallbacks(gotResponse, failed)
        response.notifyFinish().addErrback(lambda f: d.cancel())


class _CountingSource:
    """
    An L{IBodySource} counting the body bytes of another as they pass.
    """
    def __init__(self, source, count) -> None:
        """
        Set up empty records.
        """
        self._source = source
        self.bodyLength = source.bodyLength
        self._count = count

    def deliverBody(self, consumer) -> None:
        """
        See L{ztnagw.http.interfaces.IBodySource.deliverBody}.
        """
        self._source.deliverBody(_CountingConsumer(consumer, self._count))


@implementer(IBodyConsumer)
class _CountingConsumer:
    """
    An L{IBodyConsumer} counting the bytes it passes on.
    """
    def __init__(self, consumer, count) -> None:
        """
        Set up empty records.
        """
        self._consumer = consumer
        self._count = count

    def bodyStarted(self, producer) -> None:
        """
        See L{ztnagw.http.interfaces.IBodyConsumer.bodyStarted}.
        """
        self._consumer.bodyStarted(producer)

    def bodyDataReceived(self, data: bytes) -> None:
        """
        See L{ztnagw.http.interfaces.IBodyConsumer.bodyDataReceived}.
        """
        self._count(len(data))
        self._consumer.bodyDataReceived(data)

    def bodyFinished(self) -> None:
        """
        See L{ztnagw.http.interfaces.IBodyConsumer.bodyFinished}.
        """
        self._consumer.bodyFinished()

    def bodyFailed(self, reason: Failure) -> None:
        """
        See L{ztnagw.http.interfaces.IBodyConsumer.bodyFailed}.
        """
        self._consumer.bodyFailed(reason)
