"""
Attacks of a malicious HTTP client on the access proxy: request smuggling,
oversized heads, forward-proxy abuse, Host and SNI games, header
injection, C{Expect} and pipelining, sent byte for byte on a TLS
connection with a valid device certificate (the attacker is an enrolled
device: the worst case for the HTTP layer, whose parsing comes before
everything else).

The gateway re-serialises every request it forwards, so a disagreement
between two parsers needs the gateway to accept something ambiguous;
every ambiguous framing below is refused with a small error response and
a close, and the real server receives nothing.
"""

from __future__ import annotations

import json

from tests.security.cases import attack
from tests.security.fixture import AttackCase

_HOST = b"Host: 127.0.0.1\r\n"


def post(fields: bytes, body: bytes = b"", target: bytes = b"/smuggle", version: bytes = b"HTTP/1.1") -> bytes:
    """
    A POST with C{fields} (CRLF-terminated lines) and C{body} after the
    head.
    """
    return b"POST " + target + b" " + version + b"\r\n" + _HOST + fields + b"\r\n" + body


#: Behind each smuggling attempt: the request a desynchronised real
#: server would see as a second one.
_SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


class HTTPTests(AttackCase):
    """
    Each attack is answered with its status and (unless the connection
    may go on) a close, and nothing of it reaches the real server.
    """

    def assertAnswered(self, cases: dict[str, tuple[bytes, int]], closed: bool = True, **options: object) -> None:
        """
        Each of C{cases} (name: bytes sent, status expected) gets that one
        response (announcing the close when C{closed}), and nothing
        reaches a real server.
        """
        g = self.gateway
        device = options.pop("device", g.good)
        for name, (data, status) in cases.items():
            g.resetBackends()
            exchange = g.exchange(data, device=device, timeout=5, responses=1, **options)  # type: ignore[arg-type]
            self.assertEqual([r.status for r in exchange.responses], [status], (name, exchange))
            if closed:
                self.assertEqual(exchange.response.header("connection"), "close", (name, exchange))
            self.assertNothingReached()

    @attack(
        "http",
        "request smuggling: Content-Length with Transfer-Encoding, TE obfuscations (list, xchunked, "
        "space before colon, vertical tab, twice, obs-fold, quoted, in HTTP/1.0)",
        "400 (501 for an unknown coding) and close; nothing reaches the real server",
    )
    def test_transferEncoding(self) -> None:
        """
        Every framing that two parsers could read differently is refused.
        """
        self.assertAnswered(
            {
                "CL+TE": (post(b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n" + _SMUGGLED), 400),
                "TE+CL": (post(b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n", b"0\r\n\r\n" + _SMUGGLED), 400),
                "TE list": (post(b"Transfer-Encoding: chunked, identity\r\n", b"0\r\n\r\n"), 400),
                "TE identity, chunked": (post(b"Transfer-Encoding: identity, chunked\r\n", b"0\r\n\r\n"), 400),
                "TE xchunked": (post(b"Transfer-Encoding: xchunked\r\n", b"0\r\n\r\n"), 501),
                "TE space before colon": (post(b"Transfer-Encoding : chunked\r\n", b"0\r\n\r\n"), 400),
                "TE vertical tab": (post(b"Transfer-Encoding:\x0bchunked\r\n", b"0\r\n\r\n"), 400),
                "TE twice": (post(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"), 400),
                "TE obs-fold": (post(b"Transfer-Encoding:\r\n chunked\r\n", b"0\r\n\r\n"), 400),
                "TE quoted": (post(b'Transfer-Encoding: "chunked"\r\n', b"0\r\n\r\n"), 400),
                "TE in HTTP/1.0": (post(b"Transfer-Encoding: chunked\r\n", b"0\r\n\r\n", version=b"HTTP/1.0"), 400),
            }
        )
        self.gateway.checkServing(self)

    @attack(
        "http",
        "request smuggling: two Content-Lengths (equal or not), a list, +N, hex, negative, 20 digits",
        "400 and close; nothing reaches the real server",
    )
    def test_contentLength(self) -> None:
        """
        Only one plain decimal C{Content-Length} is a length.
        """
        self.assertAnswered(
            {
                "equal twice": (post(b"Content-Length: 3\r\nContent-Length: 3\r\n", b"abc"), 400),
                "different twice": (post(b"Content-Length: 3\r\nContent-Length: 47\r\n", b"abc" + _SMUGGLED), 400),
                "list": (post(b"Content-Length: 3, 3\r\n", b"abc"), 400),
                "plus": (post(b"Content-Length: +3\r\n", b"abc"), 400),
                "hex": (post(b"Content-Length: 0x3\r\n", b"abc"), 400),
                "negative": (post(b"Content-Length: -1\r\n"), 400),
                "20 digits": (post(b"Content-Length: 99999999999999999999\r\n"), 400),
            }
        )
        self.gateway.checkServing(self)

    @attack(
        "http",
        "request smuggling: bare LF line ends, bare CR, chunk-size overflow (17+ hex digits), 0x/negative "
        "chunk sizes, LF in a chunk extension, chunk data without its CRLF",
        "400 and close; nothing reaches the real server",
    )
    def test_lineEndsAndChunks(self) -> None:
        """
        Line ends are CRLF only and chunk framing is exact.
        """
        chunked = b"Transfer-Encoding: chunked\r\n"
        self.assertAnswered(
            {
                "bare LF": (b"GET /x HTTP/1.1\nHost: 127.0.0.1\n\n", 400),
                "bare LF in a field": (b"GET /x HTTP/1.1\r\nHost: 127.0.0.1\nX: y\r\n\r\n", 400),
                "bare CR": (b"GET /x HTTP/1.1\r\nHost: 127.0.0.1\rX: y\r\n\r\n", 400),
                "chunk-size overflow": (post(chunked, b"1" + b"0" * 16 + b"3\r\nabc\r\n0\r\n\r\n"), 400),
                "chunk-size 0x": (post(chunked, b"0x3\r\nabc\r\n0\r\n\r\n"), 400),
                "chunk-size negative": (post(chunked, b"-3\r\nabc\r\n0\r\n\r\n"), 400),
                "LF in chunk extension": (post(chunked, b"3;a\nb\r\nabc\r\n0\r\n\r\n"), 400),
                "chunk without CRLF": (post(chunked, b"3\r\nabc" + _SMUGGLED + b"0\r\n\r\n"), 400),
            }
        )
        self.gateway.checkServing(self)

    @attack(
        "http",
        "oversized head (40 KB field), 120 fields, 9,000-byte URL",
        "431, 431, 414 and close; nothing reaches the real server",
    )
    def test_oversized(self) -> None:
        """
        The access proxy's C{http-max-*} limits hold.
        """
        self.assertAnswered(
            {
                "big field": (b"GET /x HTTP/1.1\r\n" + _HOST + b"X-A: " + b"a" * 40000 + b"\r\n\r\n", 431),
                "many fields": (b"GET /x HTTP/1.1\r\n" + _HOST + b"".join(b"X-%d: a\r\n" % i for i in range(120)) + b"\r\n", 431),
                "long URL": (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n" + _HOST + b"\r\n", 414),
            }
        )
        self.gateway.checkServing(self)

    @attack(
        "http",
        "open forward proxy: CONNECT to an internal address; absolute-form target naming another host",
        "405, 400; nothing reaches any server (an absolute-form target naming the gateway itself goes to the "
        "configured real server, never to the named one)",
    )
    def test_forwardProxy(self) -> None:
        """
        The gateway never connects where the client says: C{CONNECT} is
        refused, an absolute-form target must name the C{Host}, and even
        one naming a real server's own address and port is served by the
        api-gateway's configured real server for its path.
        """
        g = self.gateway
        raw = f"127.0.0.2:{g.ports['raw']}".encode()
        self.assertAnswered(
            {
                "CONNECT": (b"CONNECT " + raw + b" HTTP/1.1\r\nHost: " + raw + b"\r\n\r\n", 405),
                "CONNECT without device": (b"CONNECT " + raw + b" HTTP/1.1\r\nHost: " + raw + b"\r\n\r\n", 405),
                "absolute-form, other host": (b"GET http://" + raw + b"/x HTTP/1.1\r\n" + _HOST + b"\r\n", 400),
                "absolute-form https, other host": (b"GET https://app.test/x HTTP/1.1\r\n" + _HOST + b"\r\n", 400),
            }
        )
        g.resetBackends()
        control = f"127.0.0.1:{g.ports['control']}".encode()
        exchange = g.exchange(
            b"GET http://" + control + b"/stats HTTP/1.1\r\nHost: " + control + b"\r\nConnection: close\r\n\r\n",
            device=g.good,
            responses=1,
        )
        self.assertEqual(exchange.response.status, 200)
        self.assertEqual(json.loads(exchange.response.body)["target"], "/stats")
        self.assertEqual(g.backendStats()["http"]["requests"], ["GET /stats"])
        g.checkServing(self)

    @attack(
        "http",
        "missing Host, two Host fields, Host naming another virtual host than SNI (both ways)",
        "400, 400, 421; nothing reaches the real server",
    )
    def test_host(self) -> None:
        """
        A request names exactly one host, and a client cannot use the
        TLS server name of a virtual host without a certificate request
        to reach one that requires a certificate, nor the other way.
        """
        g = self.gateway
        self.assertAnswered(
            {
                "no Host": (b"GET /x HTTP/1.1\r\n\r\n", 400),
                "two Hosts": (b"GET /x HTTP/1.1\r\nHost: open.test\r\nHost: app.test\r\n\r\n", 400),
            }
        )
        self.assertAnswered(
            {"SNI open.test, Host app.test": (b"GET /x HTTP/1.1\r\nHost: app.test\r\n\r\n", 421)},
            device=None,
            closed=False,
            serverName="open.test",
        )
        self.assertAnswered(
            {"SNI app.test, Host open.test": (b"GET /x HTTP/1.1\r\nHost: open.test\r\n\r\n", 421)},
            closed=False,
            serverName="app.test",
        )
        self.assertAnswered(
            {"no SNI, Host open.test": (b"GET /x HTTP/1.1\r\nHost: open.test\r\n\r\n", 421)},
            device=None,
            closed=False,
        )
        g.checkServing(self)

    @attack(
        "http",
        "header injection: CR, NUL or a control character in a field value; a space in a field name; "
        "CRLF encoded in the path",
        "400 and close; nothing reaches the real server",
    )
    def test_headerInjection(self) -> None:
        """
        A field value cannot carry a line break or NUL to the real server,
        in any encoding.
        """
        self.assertAnswered(
            {
                "CR in value": (b"GET /x HTTP/1.1\r\n" + _HOST + b"X-A: b\rInjected: 1\r\n\r\n", 400),
                "NUL in value": (b"GET /x HTTP/1.1\r\n" + _HOST + b"X-A: b\x00c\r\n\r\n", 400),
                "escape in value": (b"GET /x HTTP/1.1\r\n" + _HOST + b"X-A: b\x1bc\r\n\r\n", 400),
                "space in name": (b"GET /x HTTP/1.1\r\n" + _HOST + b"X A: b\r\n\r\n", 400),
            }
        )
        self.assertAnswered(
            {"CRLF encoded in the path": (b"GET /x%0d%0aInjected:%201 HTTP/1.1\r\n" + _HOST + b"\r\n", 400)},
            closed=False,
        )
        self.gateway.checkServing(self)

    @attack(
        "http",
        "Expect: 100-continue from a client without a certificate; an unknown expectation",
        "403 (002) without 100 Continue, then close, the body never read or forwarded; 417",
    )
    def test_expect(self) -> None:
        """
        A refused request never gets C{100 Continue} (which would invite
        its body), and the connection is closed after the refusal; an
        allowed one gets it when the real server is ready, and its body
        arrives once.
        """
        g = self.gateway
        g.resetBackends()
        head = post(b"Expect: 100-continue\r\nContent-Length: 1000000\r\nAccept: application/json\r\n")
        exchange = g.exchange(head, device=None, timeout=5)
        self.assertEqual([r.status for r in exchange.responses], [403], exchange)
        self.assertEqual(exchange.response.ztnaError, "002")
        self.assertTrue(exchange.closed)
        self.assertNothingReached()
        self.assertAnswered({"417": (post(b"Expect: 200-ok\r\nContent-Length: 3\r\n", b"abc"), 417)})
        g.resetBackends()
        body = b"x" * 1000
        sock = g.connect(device=g.good)
        self.addCleanup(sock.close)
        sock.sendall(post(b"Expect: 100-continue\r\nContent-Length: 1000\r\nConnection: close\r\n", target=b"/continued"))
        self.assertTrue(sock.recv(65536).startswith(b"HTTP/1.1 100 Continue\r\n"))
        sock.sendall(body)
        data = b""
        while True:
            piece = sock.recv(65536)
            if not piece:
                break
            data += piece
        self.assertTrue(data.startswith(b"HTTP/1.1 200 "), data)
        self.assertEqual(g.backendStats()["http"]["requests"], ["POST /continued"])
        g.checkServing(self)

    @attack(
        "http",
        "pipelining: allowed, refused (021) and allowed requests in one write; a body that holds a request",
        "answered in order (200, 404, 200, 200); only the allowed requests reach the real server, the body as a body",
    )
    def test_pipelining(self) -> None:
        """
        Pipelined requests are answered one after the other, each decided
        on its own; a request written inside another's body stays body.
        """
        g = self.gateway
        g.resetBackends()
        smuggledBody = _SMUGGLED
        data = (
            b"GET /first HTTP/1.1\r\n" + _HOST + b"\r\n"
            + b"GET /admin HTTP/1.1\r\nHost: prefix.test\r\nAccept: application/json\r\n\r\n"
            + b"POST /third HTTP/1.1\r\n" + _HOST + b"Content-Length: %d\r\n\r\n" % len(smuggledBody) + smuggledBody
            + b"GET /fourth HTTP/1.1\r\n" + _HOST + b"Connection: close\r\n\r\n"
        )
        exchange = g.exchange(data, device=g.good, timeout=10, responses=4)
        self.assertEqual([r.status for r in exchange.responses], [200, 404, 200, 200], exchange)
        self.assertEqual(exchange.responses[1].ztnaError, "021")
        self.assertEqual(
            [json.loads(r.body)["target"] for i, r in enumerate(exchange.responses) if i != 1],
            ["/first", "/third", "/fourth"],
        )
        self.assertEqual(g.backendStats()["http"]["requests"], ["GET /first", "POST /third", "GET /fourth"])
        g.checkServing(self)
