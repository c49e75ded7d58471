# -*- test-case-name: tests.http.test_client -*-
"""
The failures of the HTTP layer, as specific exception classes.

The gateway answers differently to each (a malformed request gets the status
the parser chose; an upstream that refused the connection is a 502, one that
did not answer in time a 504; a request may be re-sent only when no byte of
it reached the real server), so every failure says what it is and what had
already happened on the wire.
"""

from __future__ import annotations

#: Reason phrases for the statuses the HTTP layer produces itself.
REASONS: dict[int, bytes] = {
    100: b"Continue",
    101: b"Switching Protocols",
    200: b"OK",
    204: b"No Content",
    304: b"Not Modified",
    400: b"Bad Request",
    403: b"Forbidden",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    413: b"Content Too Large",
    414: b"URI Too Long",
    417: b"Expectation Failed",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    501: b"Not Implemented",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
    505: b"HTTP Version Not Supported",
}


class HTTPParseError(ValueError):
    """
    A message head or body that violates HTTP/1.1 framing rules.

    @ivar status: the status a server answers with (400, 408, 413, 414, 417,
        431, 501, 505...); meaningless for responses, which have no one to
        answer.
    @ivar detail: a short human-readable explanation.
    """

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status} {detail}")
        self.status = status
        self.detail = detail


class UpstreamError(Exception):
    """
    An upstream (real server) request failed.

    @ivar requestSent: whether any byte of the request was handed to the
        upstream connection.  When false the request can always be re-sent.
    @ivar responseStarted: whether any byte of a response had arrived.
    """

    requestSent: bool = False
    responseStarted: bool = False

    def __init__(
        self, detail: str, requestSent: bool = False, responseStarted: bool = False
    ) -> None:
        super().__init__(detail)
        self.requestSent = requestSent
        self.responseStarted = responseStarted

    def __str__(self) -> str:
        return (
            f"{self.args[0]} (request sent: {self.requestSent}, "
            f"response started: {self.responseStarted})"
        )


class ConnectFailed(UpstreamError):
    """
    The connection to the real server could not be made (or its TLS
    handshake failed); nothing was sent.
    """


class ConnectRefused(ConnectFailed):
    """
    The real server refused the TCP connection.
    """


class ConnectTimeout(ConnectFailed):
    """
    The connection (TCP, and TLS when configured) was not ready in time.
    """


class ResponseTimeout(UpstreamError):
    """
    The response head did not arrive in time after the request was sent.
    """


class UpstreamProtocolError(UpstreamError):
    """
    The real server sent something that is not valid HTTP/1.1.
    """


class UpstreamConnectionLost(UpstreamError):
    """
    The upstream connection closed before a complete response head.
    """


class TruncatedBody(UpstreamError):
    """
    A body ended before its declared length or last chunk.
    """


class RequestBodyFailed(UpstreamError):
    """
    The request body the caller was relaying failed (for example the client
    went away mid-upload), so the upstream request was abandoned.
    """
