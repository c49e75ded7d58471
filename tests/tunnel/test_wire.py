"""
Tests for L{ztnagw.tunnel.wire}: the tunnel request, its query, host and
port rules, and refusals as the forwarder reads them.
"""

from __future__ import annotations

import ipaddress
import json

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from ztnagw.http.headers import Headers
from ztnagw.http.parser import ResponseHead, parseRequestHead
from ztnagw.tunnel.wire import (
    TunnelQueryError,
    TunnelTarget,
    isTunnelRequest,
    parseHost,
    parseHostPort,
    parsePort,
    parseRefusal,
    parseTunnelTarget,
    tunnelRequest,
)


class TargetTests(SynchronousTestCase):
    """
    L{parseTunnelTarget} reads FortiClient's query strictly.
    """

    def test_forticlient(self) -> None:
        """
        The query FortiClient sends.
        """
        self.assertEqual(
            parseTunnelTarget(b"/tcp?address=10.0.0.5&port=3389&tls=1"),
            TunnelTarget("10.0.0.5", 3389, True),
        )

    def test_unencrypted(self) -> None:
        """
        C{tls=0} asks for the tunnel without TLS after the C{101}.
        """
        self.assertFalse(parseTunnelTarget(b"/tcp?address=db&port=5432&tls=0").encrypted)

    def test_tlsDefault(self) -> None:
        """
        Without C{tls}, the tunnel stays encrypted.
        """
        self.assertTrue(parseTunnelTarget(b"/tcp?port=22&address=h").encrypted)

    def test_name(self) -> None:
        """
        A host name is kept in lower case, without a final dot.
        """
        self.assertEqual(
            parseTunnelTarget(b"/tcp?address=DB.Corp.Example.&port=5432").host,
            "db.corp.example",
        )

    def test_escapes(self) -> None:
        """
        Values may be %-escaped (an IPv6 address with escaped colons).
        """
        target = parseTunnelTarget(b"/tcp?address=%5B2001%3Adb8%3A%3A1%5D&port=%32%32")
        self.assertEqual(target, TunnelTarget("2001:db8::1", 22))

    def test_unknownIgnored(self) -> None:
        """
        Parameters ztnagw does not know are ignored.
        """
        self.assertEqual(
            parseTunnelTarget(b"/tcp?address=h&port=1&udp=0&x="),
            TunnelTarget("h", 1),
        )

    def assertRefused(self, path: bytes, words: str) -> None:
        """
        C{path} is refused with a message containing C{words}.
        """
        e = self.assertRaises(TunnelQueryError, parseTunnelTarget, path)
        self.assertIn(words, str(e))

    def test_missing(self) -> None:
        """
        C{address} and C{port} are required.
        """
        self.assertRefused(b"/tcp?port=22", "no address")
        self.assertRefused(b"/tcp?address=h", "no port")
        self.assertRefused(b"/tcp", "no query")
        self.assertRefused(b"/tcp?", "no query")

    def test_duplicates(self) -> None:
        """
        Each known parameter at most once.
        """
        self.assertRefused(b"/tcp?address=a&address=b&port=1", "address more than once")
        self.assertRefused(b"/tcp?address=a&port=1&port=1", "port more than once")
        self.assertRefused(b"/tcp?address=a&port=1&tls=1&tls=1", "tls more than once")

    def test_badPorts(self) -> None:
        """
        Ports are 1 to 65535 in plain decimal.
        """
        for port in (b"0", b"65536", b"22a", b"-1", b"+22", b"", b"022", b"%20%32", b"1e3"):
            self.assertRefused(b"/tcp?address=h&port=" + port, "port")

    def test_badAddresses(self) -> None:
        """
        A line break, a blank, a control character, a malformed escape or
        something that is neither an address nor a host name is refused.
        """
        for address in (
            b"h%0D%0AX-Injected:%20yes",
            b"h%20ost",
            b"h%00",
            b"h%zz",
            b"h%4",
            b"",
            b"a..b",
            b"-a",
            b"127.1",
            b"0x7f000001",
            b"10.0.0.256",
            b"fe80::1%25eth0",
            b"%C3%A9t%C3%A9",
            b"a" * 64,
            b"[10.0.0.1]",
            b"host:22",
        ):
            self.assertRefused(b"/tcp?port=1&address=" + address, "address")

    def test_badTls(self) -> None:
        """
        C{tls} is 0 or 1.
        """
        self.assertRefused(b"/tcp?address=h&port=1&tls=yes", "tls must be")

    def test_notNameValue(self) -> None:
        """
        Every parameter is C{NAME=VALUE}.
        """
        self.assertRefused(b"/tcp?address=h&port=1&tls", "NAME=VALUE")
        self.assertRefused(b"/tcp?address=h&&port=1", "NAME=VALUE")

    def test_tooMany(self) -> None:
        """
        The number of parameters is bounded.
        """
        self.assertRefused(b"/tcp?address=h&port=1" + b"&x=1" * 15, "more than 16")

    def test_path(self) -> None:
        """
        Only C{/tcp} asks for a tunnel.
        """
        self.assertRefused(b"/tcpx?address=h&port=1", "GET /tcp")
        self.assertRefused(b"/TCP?address=h&port=1", "GET /tcp")

    @given(st.binary(max_size=300))
    def test_anyQuery(self, query: bytes) -> None:
        """
        Any query gives a target or a L{TunnelQueryError}, nothing else.
        """
        try:
            target = parseTunnelTarget(b"/tcp?" + query)
        except TunnelQueryError as e:
            self.assertTrue(str(e))
        else:
            self.assertTrue(1 <= target.port <= 65535)
            self.assertEqual(parseHost(target.host), target.host)

    @given(
        st.lists(
            st.sampled_from(
                [b"address=", b"port=", b"tls=", b"h", b"1", b"0", b"&", b"%", b"2", b"%41", b"=", b"::", b"."]
            ),
            max_size=20,
        )
    )
    def test_anyNearQuery(self, pieces: list[bytes]) -> None:
        """
        Queries built from the pieces of real ones give a target or a
        L{TunnelQueryError}.
        """
        try:
            parseTunnelTarget(b"/tcp?" + b"".join(pieces))
        except TunnelQueryError:
            pass


_LABEL = st.from_regex(r"\A[a-z][a-z0-9-]{0,10}[a-z0-9]\Z")
_HOSTS = st.one_of(
    st.ip_addresses().map(str),
    st.lists(_LABEL, min_size=1, max_size=4).map(".".join),
)


class RoundTripTests(SynchronousTestCase):
    """
    What the forwarder asks for is what the gateway reads.
    """

    @given(_HOSTS, st.integers(1, 65535), st.booleans())
    def test_query(self, host: str, port: int, encrypted: bool) -> None:
        """
        L{TunnelTarget.query} parses back to the same target.
        """
        target = TunnelTarget(parseHost(host), port, encrypted)
        self.assertEqual(parseTunnelTarget(target.query()), target)

    @given(_HOSTS, st.integers(1, 65535))
    def test_request(self, host: str, port: int) -> None:
        """
        L{tunnelRequest} is a request the gateway's HTTP parser accepts as
        a tunnel request for the same target.
        """
        target = TunnelTarget(parseHost(host), port)
        request = tunnelRequest(target, b"gw.example:443", b"ztnagw-forward/1")
        self.assertTrue(request.endswith(b"\r\n\r\n"))
        head = parseRequestHead(request[:-4])
        self.assertTrue(isTunnelRequest(head.method, head.path, head.upgrade))
        self.assertEqual(parseTunnelTarget(head.path), target)
        self.assertEqual(head.headers.get(b"accept"), b"application/json")
        self.assertEqual(head.headers.get(b"user-agent"), b"ztnagw-forward/1")

    @given(_HOSTS, st.integers(1, 65535))
    def test_hostPort(self, host: str, port: int) -> None:
        """
        L{TunnelTarget.hostPort} is read back by L{parseHostPort}.
        """
        target = TunnelTarget(parseHost(host), port)
        self.assertEqual(parseHostPort(target.hostPort()), (target.host, port))


class HostTests(SynchronousTestCase):
    """
    L{parseHost}, L{parsePort} and L{parseHostPort}.
    """

    def test_addresses(self) -> None:
        """
        Addresses come back in canonical form, IPv6 without brackets.
        """
        self.assertEqual(parseHost("10.0.0.5"), "10.0.0.5")
        self.assertEqual(parseHost("[2001:DB8:0::1]"), "2001:db8::1")
        self.assertEqual(parseHost("2001:db8::1"), "2001:db8::1")
        self.assertEqual(TunnelTarget("2001:db8::1", 1).address, ipaddress.ip_address("2001:db8::1"))
        self.assertIsNone(TunnelTarget("db", 1).address)

    def test_names(self) -> None:
        """
        Names may hold digits, dashes and underscores, and a numeric label
        that is not the last.
        """
        for name in ("localhost", "a-b.example", "win_host.corp", "10.0.0.5.nip.io", "x1"):
            self.assertEqual(parseHost(name), name)

    @given(st.text(max_size=80))
    def test_anyHost(self, text: str) -> None:
        """
        Any text is a canonical host or a L{ValueError}.
        """
        try:
            host = parseHost(text)
        except ValueError as e:
            self.assertTrue(str(e))
        else:
            self.assertEqual(parseHost(host), host)
            self.assertTrue(host.isascii())
            self.assertNotIn(" ", host)

    def test_hostPort(self) -> None:
        """
        C{HOST:PORT}, with IPv6 in brackets.
        """
        self.assertEqual(parseHostPort("db:5432"), ("db", 5432))
        self.assertEqual(parseHostPort("[::1]:22"), ("::1", 22))
        for bad in ("db", "::1:22", "[::1]22", "db:", ":22", "db:0", "[::1"):
            self.assertRaises(ValueError, parseHostPort, bad)

    def test_ports(self) -> None:
        """
        Ports are plain decimal from 1 to 65535.
        """
        self.assertEqual(parsePort("65535"), 65535)
        for bad in ("0", "65536", "", " 1", "1.0", "٣"):
            self.assertRaises(ValueError, parsePort, bad)

    def test_isTunnelRequest(self) -> None:
        """
        A tunnel request is C{GET /tcp} upgrading to C{tcp-forwarding/1.0}.
        """
        self.assertTrue(isTunnelRequest(b"GET", b"/tcp?a=b", b"tcp-forwarding/1.0"))
        self.assertTrue(isTunnelRequest(b"GET", b"/tcp", b"websocket, TCP-Forwarding/1.0"))
        self.assertFalse(isTunnelRequest(b"POST", b"/tcp", b"tcp-forwarding/1.0"))
        self.assertFalse(isTunnelRequest(b"GET", b"/tcpx", b"tcp-forwarding/1.0"))
        self.assertFalse(isTunnelRequest(b"GET", b"/tcp", b"websocket"))
        self.assertFalse(isTunnelRequest(b"GET", b"/tcp", None))


def head(status: int, reason: bytes, *fields: tuple[bytes, bytes]) -> ResponseHead:
    """
    A response head.
    """
    return ResponseHead(
        version=b"HTTP/1.1", status=status, reason=reason, headers=Headers(fields), keepAlive=False
    )


class RefusalTests(SynchronousTestCase):
    """
    L{parseRefusal}: what the forwarder prints when a tunnel is refused.
    """

    def test_blockPage(self) -> None:
        """
        ztnagw's JSON block page: the code from the header, the message
        ztnagw knows for it, the detail from the body.
        """
        body = json.dumps(
            {"error": {"code": "063", "message": "x", "detail": "revoked on Monday"}}
        ).encode()
        refusal = parseRefusal(
            head(403, b"Forbidden", (b"X-ZTNA-Error", b"063"), (b"Content-Type", b"application/json; charset=utf-8")),
            body,
        )
        self.assertEqual(
            refusal.describe(),
            "blocked by gateway: 063 client certificate revoked (revoked on Monday)",
        )

    def test_headerOnly(self) -> None:
        """
        A code in the header is enough (an HTML page, as FortiOS sends).
        """
        refusal = parseRefusal(
            head(403, b"Forbidden", (b"X-ZTNA-Error", b"066"), (b"Content-Type", b"text/html")),
            b"<html>...</html>",
        )
        self.assertEqual(refusal.describe(), "blocked by gateway: 066 no device information for this client")

    def test_gatewayError(self) -> None:
        """
        An error without a ZTNA code (a malformed request).
        """
        body = json.dumps({"error": {"status": 400, "title": "Bad Request", "detail": "port: 'x' is not a port number"}}).encode()
        refusal = parseRefusal(head(400, b"Bad Request", (b"Content-Type", b"application/json")), body)
        self.assertIsNone(refusal.code)
        self.assertEqual(
            refusal.describe(),
            "gateway refused the tunnel: 400 Bad Request (port: 'x' is not a port number)",
        )

    def test_unknownCode(self) -> None:
        """
        A code ztnagw does not know keeps the gateway's words.
        """
        body = json.dumps({"error": {"code": "099", "message": "something new"}}).encode()
        refusal = parseRefusal(head(403, b"Forbidden", (b"Content-Type", b"application/json")), body)
        self.assertEqual(refusal.describe(), "blocked by gateway: 099 something new")

    def test_hostileText(self) -> None:
        """
        Control characters from the gateway never reach the terminal.
        """
        body = json.dumps({"error": {"title": "\x1b[2J\r\nowned", "detail": "a\u202eb"}}).encode()
        refusal = parseRefusal(head(500, b"Err", (b"Content-Type", b"application/json")), body)
        self.assertNotIn("\x1b", refusal.describe())
        self.assertNotIn("\n", refusal.describe())
        self.assertNotIn("\u202e", refusal.describe())

    @given(st.binary(max_size=200), st.sampled_from([b"application/json", b"text/html", b""]), st.binary(max_size=5))
    def test_anyBody(self, body: bytes, contentType: bytes, code: bytes) -> None:
        """
        Whatever the gateway sends, the refusal is described on one line.
        """
        fields = [(b"Content-Type", contentType)] if contentType else []
        try:
            fields.append((b"X-ZTNA-Error", code))
            response = head(403, b"Forbidden", *fields)
        except ValueError:
            response = head(403, b"Forbidden")
        line = parseRefusal(response, body).describe()
        self.assertNotIn("\n", line)
