"""
Tests for L{ztnagw.gateway.proxy}: the HTTPS access proxy's request
handler, with the real HTTP layer and upstream pool over in-memory
transports.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from ztnagw.gateway.context import RequestContext
from ztnagw.gateway.interfaces import ITunnelHandler
from ztnagw.gateway.proxy import (
    FORWARDING_FIELDS,
    AccessProxyHandler,
    GatewayErrorPages,
    UpstreamPools,
    VipHTTPFactory,
    isTunnelRequest,
    serverLimits,
    upstreamHeaders,
)
from ztnagw.gateway.realservers import RealServerRouter
from ztnagw.gateway.tunnel import TunnelHandler
from ztnagw.http.headers import Headers
from ztnagw.http.server import Request
from ztnagw.logs.line import parseKeyValue
from ztnagw.tls.client import ClientCreatorCache
from tests.gateway.fakes import (
    MemoryIndex,
    TableResolver,
    config,
    handshake,
    makeGate,
    makeSite,
    presented,
    record,
)
from tests.http.helpers import TrackingTransport, connectUpstream
from tests.support.pki import DEVICE_UID

GET = b"GET /page?q=1 HTTP/1.1\r\nHost: gw.test\r\nUser-Agent: curl/8\r\n\r\n"

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello"


@implementer(ITunnelHandler)
class RecordingTunnels:
    """
    Records the tunnel requests it is given.
    """

    def __init__(self) -> None:
        self.requests: list[tuple[Request, RequestContext]] = []

    def handleTunnelRequest(self, request: Request, context: RequestContext) -> None:
        """
        Record the call.
        """
        self.requests.append((request, context))


def fields(line: object) -> dict[str, str]:
    """
    The fields of a log line.
    """
    return dict(parseKeyValue(line.keyValue()))  # type: ignore[attr-defined]


def head(output: bytes) -> tuple[int, dict[bytes, list[bytes]], bytes]:
    """
    The status, fields (lower-case names) and the rest of the first
    response in C{output}.
    """
    top, _, rest = output.partition(b"\r\n\r\n")
    lines = top.split(b"\r\n")
    found: dict[bytes, list[bytes]] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        found.setdefault(name.strip().lower(), []).append(value.strip())
    return int(lines[0][9:12]), found, rest


def requestHead(data: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """
    The request line and fields of an upstream request.
    """
    top = data.partition(b"\r\n\r\n")[0]
    lines = top.split(b"\r\n")
    pairs = []
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        pairs.append((name, value.strip()))
    return lines[0], pairs


class Harness:
    """
    A VIP's request handler over the test configuration, with the device
    registered and its certificate presented.
    """

    def __init__(self, policies: str | None = None, extra: str = "", resolver: TableResolver | None = None,
                 tunnels: Any = None, accessProxy: str | None = None, **recordChanges: object) -> None:
        self.reactor = MemoryReactorClock()
        self.reactor.advance(1_700_000_000)
        self.index = MemoryIndex([record(**recordChanges)])
        kwargs: dict[str, str] = {} if policies is None else {"policies": policies}
        if accessProxy is not None:
            kwargs["accessProxy"] = accessProxy
        self.config = config(extra=extra, **kwargs)
        self.gate, self.logs = makeGate(self.config, self.index, self.reactor)
        self.gate.sessions.start()
        self.site = makeSite(self.config)
        self.resolver = resolver or TableResolver()
        self.router = RealServerRouter(self.config, self.resolver, ClientCreatorCache(), ())
        self.pools = UpstreamPools(self.reactor)
        self.facts = handshake(presented())
        self.handler = AccessProxyHandler(
            self.site,
            self.gate,
            self.router,
            self.pools,
            self.reactor,
            TunnelHandler(self.reactor, self.resolver) if tunnels is None else tunnels,
            handshakeFactsOf=lambda transport: self.facts,
        )
        self.factory = VipHTTPFactory(self.handler, self.reactor, serverLimits(self.site.accessProxy), GatewayErrorPages())

    def connect(self) -> tuple[Any, TrackingTransport]:
        """
        A client connection.
        """
        protocol = self.factory.buildProtocol(None)
        transport = TrackingTransport()
        protocol.makeConnection(transport)
        return protocol, transport

    def upstream(self, index: int = -1) -> tuple[Any, TrackingTransport]:
        """
        Complete the gateway's connection attempt to the real server.
        """
        return connectUpstream(self.reactor, index)

    def traffic(self) -> list[dict[str, str]]:
        """
        The traffic log lines so far.
        """
        return [fields(line) for line in self.logs.lines if fields(line)["logid"] == "0005000024"]


class UpstreamHeadersTests(SynchronousTestCase):
    """
    Tests for L{upstreamHeaders}.
    """

    def test_rules(self) -> None:
        """
        Hop-by-hop fields (and those named in Connection) go; client copies
        of forwarding fields go even when named in Connection; repeated
        fields stay in order; the gateway's fields come last and Host
        first.
        """
        headers = Headers(
            [
                (b"Host", b"gw.test"),
                (b"Connection", b"keep-alive, X-Secret"),
                (b"X-Secret", b"1"),
                (b"Keep-Alive", b"timeout=5"),
                (b"Accept", b"a"),
                (b"X-Forwarded-For", b"6.6.6.6"),
                (b"Forwarded", b"for=6.6.6.6"),
                (b"X-Real-IP", b"6.6.6.6"),
                (b"Accept", b"b"),
                (b"TE", b"trailers"),
            ]
        )
        pairs = upstreamHeaders(headers, "192.0.2.7", b"gw.test", b"10.0.0.1:8080")
        self.assertEqual(
            pairs,
            [
                (b"Host", b"10.0.0.1:8080"),
                (b"Accept", b"a"),
                (b"Accept", b"b"),
                (b"X-Forwarded-For", b"192.0.2.7"),
                (b"X-Forwarded-Proto", b"https"),
                (b"X-Forwarded-Host", b"gw.test"),
            ],
        )

    def test_keepHost(self) -> None:
        """
        Without a translated Host, the client's is kept.
        """
        pairs = upstreamHeaders(Headers([(b"Host", b"a.test")]), "192.0.2.7", b"a.test", None)
        self.assertEqual(pairs[0], (b"Host", b"a.test"))

    @given(
        st.lists(
            st.tuples(
                st.sampled_from(
                    [b"X-Forwarded-For", b"x-forwarded-proto", b"X-FORWARDED-HOST", b"Forwarded",
                     b"X-Real-Ip", b"Connection", b"Accept", b"Cookie", b"Host", b"Upgrade"]
                ),
                st.from_regex(rb"[A-Za-z0-9 ,=.;-]{0,20}", fullmatch=True).map(lambda v: v.strip()),
            ),
            max_size=15,
        )
    )
    def test_neverTrustsClient(self, pairs: list[tuple[bytes, bytes]]) -> None:
        """
        Whatever the client sends, the real server gets exactly one of each
        forwarding field, the gateway's, and one Host.
        """
        out = upstreamHeaders(Headers(pairs), "192.0.2.7", b"gw.test", b"real.test")
        names = [name.lower() for name, _ in out]
        self.assertEqual(names.count(b"host"), 1)
        for name in FORWARDING_FIELDS[:3]:
            self.assertEqual(names.count(name), 1)
        for name in FORWARDING_FIELDS[3:]:
            self.assertNotIn(name, names)
        self.assertIn((b"X-Forwarded-For", b"192.0.2.7"), out)
        self.assertNotIn(b"connection", names)
        self.assertNotIn(b"upgrade", names)


class TunnelDispatchTests(SynchronousTestCase):
    """
    Tunnel requests go to the tunnel handler.
    """

    TUNNEL = (
        b"GET /tcp?address=10.0.0.1&port=22&tls=1 HTTP/1.1\r\nHost: gw.test\r\n"
        b"User-Agent: Forticlient\r\nUpgrade: tcp-forwarding/1.0\r\nConnection: Upgrade\r\n\r\n"
    )

    def test_recognised(self) -> None:
        """
        Only C{GET /tcp} with the tcp-forwarding upgrade is a tunnel request.
        """
        from ztnagw.http.parser import parseRequestHead
        from ztnagw.http.limits import ServerLimits

        def parse(data: bytes) -> Any:
            return parseRequestHead(data.partition(b"\r\n\r\n")[0], ServerLimits())

        self.assertTrue(isTunnelRequest(parse(self.TUNNEL)))
        self.assertFalse(isTunnelRequest(parse(self.TUNNEL.replace(b"/tcp?", b"/tcpx?"))))
        self.assertFalse(isTunnelRequest(parse(self.TUNNEL.replace(b"tcp-forwarding/1.0", b"websocket"))))
        self.assertFalse(isTunnelRequest(parse(GET)))

    def test_handedOver(self) -> None:
        """
        The tunnel handler gets the request and its context; nothing is
        answered for it.
        """
        tunnels = RecordingTunnels()
        h = Harness(tunnels=tunnels)
        protocol, transport = h.connect()
        protocol.dataReceived(self.TUNNEL)
        [(request, context)] = tunnels.requests
        self.assertEqual(request.path, b"/tcp?address=10.0.0.1&port=22&tls=1")
        self.assertEqual(context.vip.name, "vip")
        self.assertEqual(context.handshake.presented.uid, DEVICE_UID)
        self.assertEqual(str(context.sourceIp), "192.168.1.1")
        self.assertTrue(context.authorize(None).allowed)
        self.assertEqual(transport.value(), b"")

    def test_withoutService(self) -> None:
        """
        An access proxy without a tcp-forwarding api-gateway answers a
        tunnel request with 021.
        """
        h = Harness()
        protocol, transport = h.connect()
        protocol.dataReceived(self.TUNNEL)
        status, found, _ = head(transport.value())
        self.assertEqual((status, found[b"x-ztna-error"]), (404, [b"021"]))


class ProxyTests(SynchronousTestCase):
    """
    Allowed requests are relayed.
    """

    def test_relayed(self) -> None:
        """
        The real server gets the request with the gateway's header rules;
        the client gets the response without hop-by-hop fields, on a
        connection that stays open even when the real server closes its
        own; one traffic line says so.
        """
        h = Harness()
        protocol, transport = h.connect()
        protocol.dataReceived(
            b"GET /page?q=1 HTTP/1.1\r\nHost: gw.test\r\nUser-Agent: curl/8\r\n"
            b"X-Forwarded-For: 6.6.6.6\r\nCookie: a=1\r\nCookie: b=2\r\n\r\n"
        )
        [(host, port, _, timeout, _)] = h.reactor.tcpClients
        self.assertEqual((host, port, timeout), ("127.0.0.1", 8080, 10.0))
        upstream, upstreamTransport = h.upstream()
        line, pairs = requestHead(upstreamTransport.value())
        self.assertEqual(line, b"GET /page?q=1 HTTP/1.1")
        self.assertEqual(pairs[0], (b"Host", b"127.0.0.1:8080"))
        self.assertIn((b"X-Forwarded-For", b"192.168.1.1"), pairs)
        self.assertNotIn((b"X-Forwarded-For", b"6.6.6.6"), pairs)
        self.assertEqual([v for n, v in pairs if n == b"Cookie"], [b"a=1", b"b=2"])
        upstream.dataReceived(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n"
            b"Set-Cookie: x=1\r\nSet-Cookie: y=2\r\n\r\nhello"
        )
        status, found, rest = head(transport.value())
        self.assertEqual(status, 200)
        self.assertNotIn(b"connection", found)
        self.assertEqual(found[b"set-cookie"], [b"x=1", b"y=2"])
        self.assertEqual(rest, b"hello")
        self.assertFalse(transport.disconnecting)
        [logged] = h.traffic()
        self.assertEqual(logged["action"], "accept")
        self.assertEqual(logged["service"], "HTTP")
        self.assertEqual(logged["gatewayid"], "1")
        self.assertEqual(logged["realserverid"], "1")
        self.assertEqual((logged["dstip"], logged["dstport"]), ("127.0.0.1", "8080"))
        self.assertEqual(logged["clientdeviceid"], DEVICE_UID)
        self.assertEqual((logged["wanin"], logged["lanout"]), ("5", "5"))
        self.assertEqual(logged["url"], "/page?q=1")

    def test_keepAliveRedecided(self) -> None:
        """
        The next request on a keep-alive connection is decided again: a
        device revoked in between gets 063 for it.
        """
        h = Harness()
        protocol, transport = h.connect()
        protocol.dataReceived(GET)
        upstream, _ = h.upstream()
        upstream.dataReceived(OK)
        h.gate.sessions.stop()
        h.index.put(record(revoked=True))
        transport.clear()
        protocol.dataReceived(GET)
        status, found, _ = head(transport.value())
        self.assertEqual((status, found[b"x-ztna-error"]), (403, [b"063"]))
        self.assertEqual(len(h.reactor.tcpClients), 1)

    def test_upstreamReused(self) -> None:
        """
        A second request reuses the kept-alive upstream connection.
        """
        h = Harness()
        protocol, transport = h.connect()
        protocol.dataReceived(GET)
        upstream, upstreamTransport = h.upstream()
        upstream.dataReceived(OK)
        upstreamTransport.clear()
        protocol.dataReceived(GET)
        self.assertEqual(len(h.reactor.tcpClients), 1)
        self.assertTrue(upstreamTransport.value().startswith(b"GET /page"))

    def test_requestBodyStreamed(self) -> None:
        """
        A request body goes upstream as it arrives, counted in the log;
        chunked stays chunked.
        """
        h = Harness()
        protocol, transport = h.connect()
        protocol.dataReceived(
            b"POST /up HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
        )
        upstream, upstreamTransport = h.upstream()
        self.assertIn(b"Transfer-Encoding: chunked\r\n", upstreamTransport.value())
        self.assertTrue(upstreamTransport.value().endswith(b"5\r\nhello\r\n"))
        protocol.dataReceived(b"6\r\n world\r\n0\r\n\r\n")
        self.assertTrue(upstreamTransport.value().endswith(b"6\r\n world\r\n0\r\n\r\n"))
        upstream.dataReceived(b"HTTP/1.1 204 No Content\r\n\r\n")
        [logged] = h.traffic()
        self.assertEqual((logged["lanin"], logged["wanout"]), ("11", "11"))

    def test_slowClientPausesUpstream(self) -> None:
        """
        The response body's producer is registered with the client
        transport: a client that does not read pauses the real server.
        """
        h = Harness()
        protocol, transport = h.connect()
        protocol.dataReceived(GET)
        upstream, upstreamTransport = h.upstream()
        upstream.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello")
        self.assertIsNotNone(transport.producer)
        transport.producer.pauseProducing()
        self.assertTrue(upstreamTransport.readingPaused)
        transport.producer.resumeProducing()
        self.assertFalse(upstreamTransport.readingPaused)

    def test_upstreamResetMidBody(self) -> None:
        """
        A real server that drops the connection mid-body makes the client
        see truncation (an aborted connection), never a clean end.
        """
        h = Harness()
        protocol, transport = h.connect()
        protocol.dataReceived(GET)
        upstream, _ = h.upstream()
        upstream.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello")
        from twisted.internet.error import ConnectionLost

        upstream.connectionLost(Failure(ConnectionLost()))
        self.assertTrue(transport.aborted)
        [logged] = h.traffic()
        self.assertEqual(logged["action"], "server-rst")

    def test_clientGone(self) -> None:
        """
        A client that goes away mid-response aborts the upstream request.
        """
        h = Harness()
        protocol, transport = h.connect()
        protocol.dataReceived(GET)
        upstream, upstreamTransport = h.upstream()
        upstream.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello")
        from twisted.internet.error import ConnectionLost

        protocol.connectionLost(Failure(ConnectionLost()))
        self.assertTrue(upstreamTransport.disconnecting)
        [logged] = h.traffic()
        self.assertEqual(logged["action"], "client-rst")

    def test_clientGoneBeforeResponse(self) -> None:
        """
        A client that goes away while the gateway waits for the response
        head abandons the upstream request.
        """
        h = Harness()
        protocol, transport = h.connect()
        protocol.dataReceived(GET)
        upstream, upstreamTransport = h.upstream()
        from twisted.internet.error import ConnectionLost

        protocol.connectionLost(Failure(ConnectionLost()))
        self.assertTrue(upstreamTransport.disconnecting)

    def test_refused(self) -> None:
        """
        A real server that refuses the connection gives a 502 page.
        """
        h = Harness()
        protocol, transport = h.connect()
        protocol.dataReceived(GET)
        from twisted.internet.error import ConnectionRefusedError

        _, _, factory, _, _ = h.reactor.tcpClients[0]
        factory.clientConnectionFailed(None, Failure(ConnectionRefusedError()))
        status, _, _ = head(transport.value())
        self.assertEqual(status, 502)
        [logged] = h.traffic()
        self.assertEqual(logged["action"], "ip-conn")

    def test_responseTimeout(self) -> None:
        """
        A real server that does not answer in time gives a 504 page.
        """
        h = Harness()
        protocol, transport = h.connect()
        protocol.dataReceived(GET)
        h.upstream()
        h.reactor.advance(61)
        status, _, _ = head(transport.value())
        self.assertEqual(status, 504)
        self.assertEqual(h.traffic()[0]["action"], "timeout")

    def test_idleTimeout(self) -> None:
        """
        A response that stalls for idle-timeout is cut off.
        """
        h = Harness()
        protocol, transport = h.connect()
        protocol.dataReceived(GET)
        upstream, upstreamTransport = h.upstream()
        upstream.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello")
        h.reactor.advance(299)
        self.assertFalse(transport.aborted)
        h.reactor.advance(2)
        self.assertTrue(transport.aborted)
        self.assertTrue(upstreamTransport.disconnecting)
        self.assertEqual(h.traffic()[0]["action"], "timeout")


class DenialTests(SynchronousTestCase):
    """
    Requests that are not relayed.
    """

    def test_noCertificate(self) -> None:
        """
        No certificate: the block page with 002, no upstream connection.
        """
        h = Harness()
        h.facts = handshake(None)
        protocol, transport = h.connect()
        protocol.dataReceived(GET)
        status, found, body = head(transport.value())
        self.assertEqual((status, found[b"x-ztna-error"]), (403, [b"002"]))
        self.assertIn(b"Error Code: 002", body)
        self.assertEqual(h.reactor.tcpClients, [])
        self.assertEqual(h.traffic()[0]["ztnaerror"], "002")

    def test_noApplication(self) -> None:
        """
        A Host naming a virtual host without a matching api-gateway: 021.
        """
        extra = """
config firewall access-proxy-virtual-host
    edit "other"
        set host "other.test"
    next
end
config firewall access-proxy
    edit "proxy"
        set vip "vip"
        config api-gateway
            edit 1
                set service http
                set url-map "/only"
                set virtual-host "other"
                config realservers
                    edit 1
                        set ip 127.0.0.1
                        set port 8080
                    next
                end
            next
        end
    next
end
"""
        h = Harness(accessProxy=extra)
        protocol, transport = h.connect()
        protocol.dataReceived(GET.replace(b"gw.test", b"other.test"))
        status, found, _ = head(transport.value())
        self.assertEqual((status, found[b"x-ztna-error"]), (404, [b"021"]))

    def test_misdirected(self) -> None:
        """
        SNI naming the virtual host without certificates, Host naming the
        default one: 421, and nothing is decided or relayed.
        """
        h = Harness()
        h.facts = handshake(None, serverName="open.test", requested=False)
        protocol, transport = h.connect()
        protocol.dataReceived(GET)
        status, _, body = head(transport.value())
        self.assertEqual(status, 421)
        self.assertEqual(h.reactor.tcpClients, [])

    def test_clientCertDisable(self) -> None:
        """
        The virtual host with C{client-cert disable}, asked for in SNI and
        Host: relayed without a certificate.
        """
        h = Harness()
        h.facts = handshake(None, serverName="open.test", requested=False)
        protocol, transport = h.connect()
        protocol.dataReceived(GET.replace(b"gw.test", b"open.test"))
        [(host, port, _, _, _)] = h.reactor.tcpClients
        self.assertEqual(port, 8081)

    def test_noRealServer(self) -> None:
        """
        An api-gateway whose real servers are all disabled: 022.
        """
        extra = """
config firewall access-proxy
    edit "proxy"
        set vip "vip"
        config api-gateway
            edit 1
                set service http
                config realservers
                    edit 1
                        set ip 127.0.0.1
                        set status disable
                    next
                end
            next
        end
    next
end
"""
        h = Harness(accessProxy=extra)
        protocol, transport = h.connect()
        protocol.dataReceived(GET)
        status, found, _ = head(transport.value())
        self.assertEqual((status, found[b"x-ztna-error"]), (502, [b"022"]))

    def test_dnsFailure(self) -> None:
        """
        A real server whose name does not resolve: 023; one that does is
        connected to by address, with its name as Host.
        """
        extra = """
config firewall address
    edit "ws1"
        set type fqdn
        set fqdn "ws1.test"
    next
end
config firewall access-proxy
    edit "proxy"
        set vip "vip"
        config api-gateway
            edit 1
                set service http
                config realservers
                    edit 1
                        set addr-type fqdn
                        set address "ws1"
                        set port 80
                    next
                end
            next
        end
    next
end
"""
        h = Harness(accessProxy=extra)
        protocol, transport = h.connect()
        protocol.dataReceived(GET)
        status, found, _ = head(transport.value())
        self.assertEqual((status, found[b"x-ztna-error"]), (502, [b"023"]))
        self.assertEqual(h.traffic()[0]["action"], "dns")
        h2 = Harness(accessProxy=extra, resolver=TableResolver({"ws1.test": ["10.1.2.3"]}))
        protocol, transport = h2.connect()
        protocol.dataReceived(GET)
        [(host, port, _, _, _)] = h2.reactor.tcpClients
        self.assertEqual((host, port), ("10.1.2.3", 80))
        _, upstreamTransport = h2.upstream()
        self.assertIn(b"\r\nHost: ws1.test\r\n", upstreamTransport.value())

    def test_jsonBlockPage(self) -> None:
        """
        A client that asks for JSON gets the block page as JSON.
        """
        h = Harness(revoked=True)
        protocol, transport = h.connect()
        protocol.dataReceived(GET.replace(b"\r\n\r\n", b"\r\nAccept: application/json\r\n\r\n"))
        _, _, body = head(transport.value())
        self.assertEqual(json.loads(body)["error"]["code"], "063")


class LiveSessionTests(SynchronousTestCase):
    """
    The session tracker closes a revoked device's connections.
    """

    def test_idleConnectionClosed(self) -> None:
        """
        A keep-alive connection that served the device is closed when the
        device is revoked, and the end is logged.
        """
        h = Harness()
        protocol, transport = h.connect()
        protocol.dataReceived(GET)
        upstream, _ = h.upstream()
        upstream.dataReceived(OK)
        self.assertFalse(transport.disconnecting)
        h.index.put(record(revoked=True))
        self.assertTrue(transport.disconnecting)
        events = [fields(line) for line in h.logs.lines if fields(line)["logid"] == "9900069901"]
        self.assertEqual(events[0]["ztnaerror"], "063")

    def test_activeResponseCut(self) -> None:
        """
        A response in progress is cut off when its device is quarantined.
        """
        h = Harness()
        protocol, transport = h.connect()
        protocol.dataReceived(GET)
        upstream, upstreamTransport = h.upstream()
        upstream.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello")
        h.index.put(record(quarantined=True))
        self.assertTrue(transport.aborted)
        self.assertTrue(upstreamTransport.disconnecting)
        [logged] = h.traffic()
        self.assertEqual((logged["action"], logged["ztnaerror"]), ("close", "064"))

    def test_closedConnectionForgotten(self) -> None:
        """
        A closed connection's session is forgotten.
        """
        h = Harness()
        protocol, transport = h.connect()
        protocol.dataReceived(GET)
        upstream, _ = h.upstream()
        upstream.dataReceived(OK)
        self.assertEqual(len(h.gate.sessions), 1)
        protocol.connectionLost(Failure(Exception("gone")))
        self.assertEqual(len(h.gate.sessions), 0)


class LimitsTests(SynchronousTestCase):
    """
    Tests for L{serverLimits} and L{UpstreamPools}.
    """

    def test_fromAccessProxy(self) -> None:
        """
        The access proxy's options become the HTTP layer's limits.
        """
        extra = """
config firewall access-proxy
    edit "proxy"
        set vip "vip"
        set http-header-timeout 5
        set http-keepalive-timeout 7
        set http-max-header-size 2048
        set http-max-header-count 9
        set http-max-url-length 100
    next
end
"""
        limits = serverLimits(config(accessProxy=extra).accessProxies["proxy"])
        self.assertEqual(
            (limits.headTimeout, limits.idleTimeout, limits.maxHeadBytes, limits.maxHeaderCount,
             limits.maxRequestLineLength),
            (5.0, 7.0, 2048, 9, 132),
        )

    def test_poolsByTimeouts(self) -> None:
        """
        Api-gateways with the same timeouts share a pool.
        """
        cfg = config()
        pools = UpstreamPools(MemoryReactorClock())
        gateways = list(cfg.accessProxies["proxy"].apiGateways.values())
        self.assertIs(pools.forApiGateway(gateways[0]), pools.forApiGateway(gateways[1]))
        self.assertEqual(pools.forApiGateway(gateways[0]).settings.maxIdlePerKey, 64)
