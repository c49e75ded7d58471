# -*- test-case-name: tests.http.test_server -*-
"""
The seams of the HTTP layer.

The gateway plugs its request handling into the server through
L{IRequestHandler}, and relays bodies in both directions with one small
piece of code because a request body (server side) and a response body
(upstream side) are both an L{IBodySource}, and a response being written
(server side) and a request being sent upstream are both fed through an
L{IBodyConsumer}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zope.interface import Attribute, Interface

if TYPE_CHECKING:  # pragma: no cover
    from twisted.internet.interfaces import IPushProducer
    from twisted.python.failure import Failure

    from ztnagw.http.server import Request


class IBodyConsumer(Interface):
    """
    Receives a body as it arrives.

    Calls come in this order: L{bodyStarted} once, then any number of
    L{bodyDataReceived}, then exactly one of L{bodyFinished} or
    L{bodyFailed}.
    """

    def bodyStarted(producer: IPushProducer) -> None:
        """
        The body starts; C{producer} pauses and resumes its delivery (and
        reading from the connection it comes from), and C{stopProducing}
        gives up the rest of it.  A little data may still arrive after
        C{pauseProducing} (a TLS record already decrypted); accept it.
        """

    def bodyDataReceived(data: bytes) -> None:
        """
        The next piece of the body (never empty).
        """

    def bodyFinished() -> None:
        """
        The body is complete, exactly as framed by the sender.
        """

    def bodyFailed(reason: Failure) -> None:
        """
        The body will not be complete: the connection was lost or the
        framing was violated.  A relay must make the next hop see a
        truncated message, never a clean end.
        """


class IBodySource(Interface):
    """
    A body that can be delivered once to an L{IBodyConsumer}.
    """

    bodyLength = Attribute(
        "The body length in bytes, or None when unknown (chunked or "
        "close-delimited)."
    )

    def deliverBody(consumer: IBodyConsumer) -> None:
        """
        Deliver the body to C{consumer}, starting with
        C{consumer.bodyStarted}; buffered data may be delivered before this
        returns.  May be called once.
        """


class IRequestHandler(Interface):
    """
    The application behind an L{ztnagw.http.server.HTTPServerProtocol}.
    """

    def requestReceived(request: Request) -> None:
        """
        A request head is complete; its body (if any) has not been read.

        The handler answers through C{request.response} (now or later), takes
        the body with C{request.deliverBody}, or, for an Upgrade request,
        hands the connection over with C{request.takeOver}.  Exceptions are
        logged and answered with 500 (or an abort once the response began).
        """


class IErrorPageRenderer(Interface):
    """
    Renders the error responses the HTTP layer sends by itself (400, 408,
    413, 414, 417, 431, 500, 501, 505...).
    """

    def renderError(status: int, reason: bytes, detail: str) -> tuple[bytes, bytes]:
        """
        @param status: the status code.
        @param reason: its reason phrase.
        @param detail: why the request was refused, for humans.
        @return: C{(contentType, body)}.
        """
