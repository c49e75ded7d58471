# -*- test-case-name: tests.http.test_chunked -*-
"""
Strict, incremental decoding of the chunked transfer coding (RFC 9112
section 7.1), shared by the server (request bodies) and the upstream client
(response bodies).

Lenient chunk parsing is a classic request-smuggling door: C{int(x, 16)}
alone accepts C{"0x1f"}, C{" 1f"}, C{"+1f"} and C{"1_f"}, a missing CRLF
after chunk data lets two parsers disagree on where the body ends, and an
unbounded size line or trailer is a memory attack.  This decoder accepts
only hex digits (at most 16), bounded extensions, the CRLF after every
chunk, and a bounded trailer section parsed like header fields.
"""

from __future__ import annotations

from typing import Callable

from ztnagw.http.errors import HTTPParseError
from ztnagw.http.headers import FIELD_VALUE_BYTES, Headers
from ztnagw.http.parser import parseFieldLines

_HEX = b"0123456789abcdefABCDEF"
_MAX_SIZE_DIGITS = 16

_SIZE = 0
_DATA = 1
_DATA_END = 2
_TRAILER = 3
_DONE = 4


class ChunkedDecoder:
    """
    Decode a chunked body fed in arbitrary pieces.

    @ivar trailers: the trailer fields, once the body is complete.
    @ivar finished: whether the last chunk and trailer section were read.
    """

    __slots__ = (
        "_state",
        "_buffer",
        "_remaining",
        "_maxExtension",
        "_maxTrailerBytes",
        "_maxTrailerCount",
        "trailers",
        "finished",
    )

    def __init__(
        self,
        maxExtensionLength: int = 1024,
        maxTrailerBytes: int = 8192,
        maxTrailerCount: int = 100,
    ) -> None:
        """
        @param maxExtensionLength: longest chunk extension accepted.
        @param maxTrailerBytes: largest trailer section accepted.
        @param maxTrailerCount: most trailer fields accepted.
        """
        self._state = _SIZE
        self._buffer = b""
        self._remaining = 0
        self._maxExtension = maxExtensionLength
        self._maxTrailerBytes = maxTrailerBytes
        self._maxTrailerCount = maxTrailerCount
        self.trailers: Headers | None = None
        self.finished = False

    def feed(self, data: bytes, deliver: Callable[[bytes], object]) -> bytes | None:
        """
        Decode C{data}, passing each piece of body data to C{deliver}.

        @return: C{None} while the body is incomplete; once it is complete,
            the bytes that followed it in C{data} (possibly empty).
        @raise HTTPParseError: the coding is malformed (status 400).
        """
        if self._state == _DONE:
            return data
        if self._buffer:
            data = self._buffer + data
            self._buffer = b""
        pos = 0
        end = len(data)
        while pos < end:
            state = self._state
            if state == _DATA:
                remaining = self._remaining
                available = end - pos
                if available <= remaining:
                    # The common case for large chunks: the whole rest of the
                    # read is data; hand it on without a copy when possible.
                    deliver(data if pos == 0 else data[pos:])
                    self._remaining = remaining - available
                    if self._remaining == 0:
                        self._state = _DATA_END
                    return None
                deliver(data[pos : pos + remaining])
                pos += remaining
                self._remaining = 0
                self._state = _DATA_END
            elif state == _SIZE:
                eol = data.find(b"\r\n", pos)
                if eol < 0:
                    rest = data[pos:]
                    if len(rest) > _MAX_SIZE_DIGITS + self._maxExtension + 2:
                        raise HTTPParseError(400, "chunk-size line too long")
                    if b"\n" in rest:
                        raise HTTPParseError(400, "bare LF in chunk-size line")
                    self._buffer = rest
                    return None
                self._sizeLine(data[pos:eol])
                pos = eol + 2
            elif state == _DATA_END:
                if end - pos < 2:
                    rest = data[pos:]
                    if rest != b"\r":
                        raise HTTPParseError(400, "chunk data not followed by CRLF")
                    self._buffer = rest
                    return None
                if data[pos : pos + 2] != b"\r\n":
                    raise HTTPParseError(400, "chunk data not followed by CRLF")
                pos += 2
                self._state = _SIZE
            else:
                return self._trailer(data, pos)
        return None

    def _sizeLine(self, line: bytes) -> None:
        size, semicolon, extension = line.partition(b";")
        stripped = size.rstrip(b" \t")
        if (
            not stripped
            or len(stripped) > _MAX_SIZE_DIGITS
            or stripped.translate(None, _HEX)
        ):
            raise HTTPParseError(400, f"invalid chunk size {size[:32]!r}")
        if semicolon:
            if len(extension) > self._maxExtension:
                raise HTTPParseError(400, "chunk extension too long")
            if extension.translate(None, FIELD_VALUE_BYTES):
                raise HTTPParseError(400, "invalid byte in chunk extension")
        elif len(stripped) != len(size):
            raise HTTPParseError(400, "whitespace after chunk size")
        length = int(stripped, 16)
        if length:
            self._remaining = length
            self._state = _DATA
        else:
            self._state = _TRAILER

    def _trailer(self, data: bytes, pos: int) -> bytes | None:
        if data.startswith(b"\r\n", pos):
            self._finish(Headers._trusted([], {}))
            return data[pos + 2 :]
        end = data.find(b"\r\n\r\n", pos)
        if end < 0:
            rest = data[pos:]
            if len(rest) > self._maxTrailerBytes:
                raise HTTPParseError(400, "trailer section too large")
            self._buffer = rest
            return None
        block = data[pos:end]
        if len(block) > self._maxTrailerBytes:
            raise HTTPParseError(400, "trailer section too large")
        self._finish(parseFieldLines(block, self._maxTrailerCount))
        return data[end + 4 :]

    def _finish(self, trailers: Headers) -> None:
        self.trailers = trailers
        self.finished = True
        self._state = _DONE


def encodeChunk(data: bytes) -> list[bytes]:
    """
    The pieces of one chunk carrying C{data} (non-empty), for
    C{transport.writeSequence}: no copy of C{data} is made here.
    """
    return [b"%x\r\n" % len(data), data, b"\r\n"]


#: The last chunk with an empty trailer section.
LAST_CHUNK = b"0\r\n\r\n"
