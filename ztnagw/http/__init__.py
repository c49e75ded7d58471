# -*- test-case-name: tests.http -*-
"""
ztnagw's own HTTP/1.1 layer: a strict server protocol, an upstream client
with a keep-alive connection pool, and the pieces they share (header
fields, head parsing, chunked coding).

The gateway needs request bodies streamed upstream with backpressure, tunnel
takeovers that lose no byte, smuggling defences under its own control, and
little Python work per request; twisted.web and Agent give none of these
(see C{docs/http.md}).  Everything here is plain Twisted protocols.
"""

from ztnagw.http.client import PoolSettings, UpstreamKey, UpstreamResponse
from ztnagw.http.errors import (
    ConnectFailed,
    ConnectRefused,
    ConnectTimeout,
    HTTPParseError,
    RequestBodyFailed,
    ResponseTimeout,
    TruncatedBody,
    UpstreamConnectionLost,
    UpstreamError,
    UpstreamProtocolError,
)
from ztnagw.http.headers import Headers, InvalidHeader, withoutHopByHop
from ztnagw.http.interfaces import (
    IBodyConsumer,
    IBodySource,
    IErrorPageRenderer,
    IRequestHandler,
)
from ztnagw.http.limits import ServerLimits
from ztnagw.http.pool import BytesBody, UpstreamPool
from ztnagw.http.server import (
    BodyRelay,
    HTTPServerFactory,
    HTTPServerProtocol,
    PlainTextErrorPages,
    Request,
    Response,
    ServerConnection,
)

__all__ = [
    "BodyRelay",
    "BytesBody",
    "ConnectFailed",
    "ConnectRefused",
    "ConnectTimeout",
    "HTTPParseError",
    "HTTPServerFactory",
    "HTTPServerProtocol",
    "Headers",
    "IBodyConsumer",
    "IBodySource",
    "IErrorPageRenderer",
    "IRequestHandler",
    "InvalidHeader",
    "PlainTextErrorPages",
    "PoolSettings",
    "Request",
    "RequestBodyFailed",
    "Response",
    "ResponseTimeout",
    "ServerConnection",
    "ServerLimits",
    "TruncatedBody",
    "UpstreamConnectionLost",
    "UpstreamError",
    "UpstreamKey",
    "UpstreamPool",
    "UpstreamProtocolError",
    "UpstreamResponse",
    "withoutHopByHop",
]
