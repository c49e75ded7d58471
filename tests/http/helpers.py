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
        self.requests: list[Request] = []
        self.answer = answer

    def requestReceived(self, request: Request) -> None:
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
        self.producer: IPushProducer | None = None
        self.chunks: list[bytes] = []
        self.finished = False
        self.failure: Failure | None = None
        self.events: list[str] = []

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)

    def bodyStarted(self, producer: IPushProducer) -> None:
        self.events.append("started")
        self.producer = producer

    def bodyDataReceived(self, data: bytes) -> None:
        assert data, "empty body piece"
        assert not self.finished and self.failure is None
        self.chunks.append(data)

    def bodyFinished(self) -> None:
        assert not self.finished and self.failure is None
        self.events.append("finished")
        self.finished = True

    def bodyFailed(self, reason: Failure) -> None:
        assert not self.finished and self.failure is None
        self.events.append("failed")
        self.failure = reason


class TrackingTransport(StringTransport):
    """
    A L{StringTransport} that counts pause and resume calls and records
    whether reading is paused.
    """

    def __init__(self) -> None:
        super().__init__()
        self.readingPaused = False
        self.aborted = False

    def pauseProducing(self) -> None:
        self.readingPaused = True
        super().pauseProducing()

    def resumeProducing(self) -> None:
        self.readingPaused = False
        super().resumeProducing()

    def abortConnection(self) -> None:
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
        self.bodyLength = bodyLength
        self.consumer = None
        self.paused = False
        self.stopped = False

    def deliverBody(self, consumer) -> None:
        self.consumer = consumer
        consumer.bodyStarted(self)

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False

    def stopProducing(self) -> None:
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
