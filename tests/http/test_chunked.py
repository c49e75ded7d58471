"""
Tests for L{ztnagw.http.chunked}.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from ztnagw.http.chunked import LAST_CHUNK, ChunkedDecoder, encodeChunk
from ztnagw.http.errors import HTTPParseError
from ztnagw.http.headers import Headers


def _decode(pieces: list[bytes], decoder: ChunkedDecoder | None = None) -> tuple[bytes, bytes | None, ChunkedDecoder]:
    """
    Feed C{pieces} to a decoder; return the body, what followed it, and the decoder.
    """
    if decoder is None:
        decoder = ChunkedDecoder()
    out: list[bytes] = []
    rest = None
    for piece in pieces:
        if rest is not None:
            rest += piece
        else:
            rest = decoder.feed(piece, out.append)
    return b"".join(out), rest, decoder


def _splits(data: bytes, cuts: list[int]) -> list[bytes]:
    """
    C{data} cut at the positions C{cuts} (modulo its length).
    """
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:])] or [b""]


class ChunkedDecoderTests(SynchronousTestCase):
    """
    L{ChunkedDecoder} accepts exactly the RFC 9112 chunked coding.
    """

    @given(
        st.lists(st.binary(min_size=1, max_size=300), max_size=8),
        st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
        st.binary(max_size=20),
        st.booleans(),
    )
    def test_roundTrip(self, chunks: list[bytes], cuts: list[int], after: bytes, upper: bool) -> None:
        """
        Random chunks, encoded (with extensions and trailers sometimes) and
        fed in random pieces, decode to the same body; the bytes after the
        body are returned untouched.
        """
        encoded = b""
        for i, chunk in enumerate(chunks):
            size = b"%x" % len(chunk)
            if upper:
                size = size.upper()
            ext = b";name=value" if i % 2 else b""
            encoded += size + ext + b"\r\n" + chunk + b"\r\n"
        encoded += b"0\r\nX-Trailer: t\r\n\r\n" if upper else LAST_CHUNK
        body, rest, decoder = _decode(_splits(encoded + after, cuts))
        self.assertEqual(body, b"".join(chunks))
        self.assertEqual(rest, after)
        self.assertTrue(decoder.finished)
        self.assertEqual(
            decoder.trailers,
            Headers([(b"X-Trailer", b"t")]) if upper else Headers(),
        )

    def test_encodeChunk(self) -> None:
        """
        L{encodeChunk} produces what the decoder reads.
        """
        encoded = b"".join(encodeChunk(b"x" * 300)) + LAST_CHUNK
        self.assertEqual(_decode([encoded])[0], b"x" * 300)

    def test_malformed(self) -> None:
        """
        Everything lenient parsers accept and smugglers use is refused.
        """
        bad = [
            b"0x5\r\nhello\r\n0\r\n\r\n",
            b" 5\r\nhello\r\n0\r\n\r\n",
            b"+5\r\nhello\r\n0\r\n\r\n",
            b"5_0\r\n",
            b"-1\r\n",
            b"5 \r\nhello\r\n0\r\n\r\n",
            b"\r\nhello\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"5\r\nhello\r\r\n",
            b"1" * 17 + b"\r\n",
            b"5;" + b"e" * 2000 + b"\r\n",
            b"5;a\x00b\r\nhello\r\n",
            b"5\r\nhello\r\n0\r\nBad Trailer: x\r\n\r\n",
            b"5\r\nhello\r\n0\r\nX: a\x00\r\n\r\n",
            b"5\r\nhello\r\n0\r\n" + b"X: " + b"v" * 9000,
        ]
        for raw in bad:
            for pieces in ([raw], [raw[i : i + 1] for i in range(len(raw))]):
                with self.assertRaises(HTTPParseError, msg=repr(raw)) as caught:
                    _decode(pieces)
                self.assertEqual(caught.exception.status, 400)

    def test_maxDigits(self) -> None:
        """
        Sixteen hex digits are accepted (with leading zeros); the size is
        not limited here (the server enforces body limits).
        """
        body, rest, decoder = _decode([b"0000000000000003\r\nabc\r\n0\r\n\r\n"])
        self.assertEqual((body, rest), (b"abc", b""))

    def test_extensionWithSpace(self) -> None:
        """
        Whitespace before an extension's semicolon is allowed (BWS).
        """
        body, rest, decoder = _decode([b"3 ;x=1\r\nabc\r\n0\r\n\r\n"])
        self.assertEqual(body, b"abc")

    def test_bodyPiecesAreSlicesOfReads(self) -> None:
        """
        A chunk larger than a read is passed on one piece per read.
        """
        decoder = ChunkedDecoder()
        out: list[bytes] = []
        decoder.feed(b"a\r\n01234", out.append)
        decoder.feed(b"56789\r\n", out.append)
        self.assertEqual(out, [b"01234", b"56789"])
