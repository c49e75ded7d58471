# -*- test-case-name: tests.http.test_server -*-
"""
The limits and timeouts of the HTTP server side, in one value object.

Every bound a hostile client could otherwise push (head size, header count,
chunk extensions, how slowly it may send, how much it may pipeline) is
written down here with a safe default, so the gateway's configuration can
tighten or loosen them in one place and the documentation has one table to
point at.
"""

from __future__ import annotations

from attrs import field, frozen, validators

_positiveInt = [validators.instance_of(int), validators.gt(0)]
_positiveNumber = [validators.instance_of((int, float)), validators.gt(0)]


@frozen
class ServerLimits:
    """
    Bounds for L{ztnagw.http.server.HTTPServerProtocol}.

    @ivar maxRequestLineLength: longest request line, in bytes (longer: 414).
    @ivar maxHeadBytes: longest request head (request line and header
        fields), in bytes (longer: 431).
    @ivar maxHeaderCount: most header fields in one request (more: 431).
    @ivar maxChunkExtensionLength: longest chunk extension of a chunk-size
        line, in bytes (longer: 400).
    @ivar maxTrailerBytes: largest trailer section of a chunked body, in
        bytes (larger: 400); its fields also count against
        C{maxHeaderCount}.
    @ivar maxBodyLength: largest request body, in bytes, or C{None} for no
        limit (larger: 413 when known from C{Content-Length}, otherwise the
        body fails when it passes the limit).
    @ivar headTimeout: seconds from the first byte of a request head to its
        end (slowloris; then 408 and close).
    @ivar idleTimeout: seconds a connection may wait for the first byte of a
        request, between requests or before the first (then it is closed
        without a response).
    @ivar bodyTimeout: seconds without a request body byte while the server
        is reading the body (then 408, or an abort if the response has
        started).  Time during which the server itself paused reading does
        not count.
    @ivar bodyBufferSize: request body bytes buffered before the handler
        takes the body, or while its consumer is paused, before reading from
        the client pauses.
    @ivar maxPipelineBuffer: bytes of following requests buffered while one
        request is served, or of early data behind an Upgrade request, before
        reading from the client pauses.
    @ivar maxDiscardLength: when a response is complete but the client is
        still sending a request body of known length, a remainder up to this
        size is read and discarded so the connection can be kept alive; a
        larger (or chunked) remainder closes the connection.
    @ivar lingerTimeout: seconds to keep reading and discarding before
        closing a connection whose client may still be sending, so that a
        TCP reset does not destroy the response before the client reads it.
    @ivar maxLingerBytes: bytes discarded while lingering before closing
        anyway.
    @ivar closeTimeout: seconds a closing connection may take to flush what
        was written to it (a client that stops reading) before it is
        aborted.
    """

    maxRequestLineLength: int = field(default=8192, validator=_positiveInt)
    maxHeadBytes: int = field(default=32768, validator=_positiveInt)
    maxHeaderCount: int = field(default=100, validator=_positiveInt)
    maxChunkExtensionLength: int = field(default=1024, validator=_positiveInt)
    maxTrailerBytes: int = field(default=8192, validator=_positiveInt)
    maxBodyLength: int | None = field(
        default=None,
        validator=validators.optional([validators.instance_of(int), validators.ge(0)]),
    )
    headTimeout: float = field(default=20.0, validator=_positiveNumber)
    idleTimeout: float = field(default=60.0, validator=_positiveNumber)
    bodyTimeout: float = field(default=30.0, validator=_positiveNumber)
    bodyBufferSize: int = field(default=65536, validator=_positiveInt)
    maxPipelineBuffer: int = field(default=65536, validator=_positiveInt)
    maxDiscardLength: int = field(default=65536, validator=_positiveInt)
    lingerTimeout: float = field(default=2.0, validator=_positiveNumber)
    maxLingerBytes: int = field(default=1048576, validator=_positiveInt)
    closeTimeout: float = field(default=15.0, validator=_positiveNumber)
