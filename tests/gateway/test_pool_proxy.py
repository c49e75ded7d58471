"""
Tests for what pools change in the HTTPS request handler
(L{ztnagw.gateway.proxy} with L{ztnagw.gateway.pool}): retry once on
another server, persistence cookies, header actions and identity
assertions toward real servers, WebSocket and other upgrades, the JWKS.
"""

from __future__ import annotations

import json

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from twisted.trial.unittest import SynchronousTestCase

from ztnagw.gateway.identity import IdentityKeys
from ztnagw.http.errors import ConnectRefused
from tests.gateway.fakes import DEVICE_UID
from tests.gateway.test_proxy import Harness, head, requestHead

POOL = """
config firewall access-proxy
    edit "proxy"
        set vip "vip"
        config api-gateway
            edit 1
                set service http
                set ldb-method round-robin
                #OPTIONS#
                config realservers
                    edit 1
                        set ip 127.0.0.1
                        set port 8001
                    next
                    edit 2
                        set ip 127.0.0.1
                        set port 8002
                    next
                end
            next
        end
    next
end
"""

PROFILE_POLICY = """
config web-proxy profile
    edit "ids"
#PROFILE#
    next
end
config firewall policy
    edit 1
        set name "allow"
        set srcintf "any"
        set dstintf "any"
        set srcaddr "all"
        set dstaddr "vip"
        set action accept
        set schedule "always"
        set logtraffic all
        set webproxy-profile "ids"
    next
end
"""


def harness(options: str = "", profile: str | None = None, keys: IdentityKeys | None = None) -> Harness:
    """
    A handler over a two-server round-robin pool, with the keys set.
    """
    policies = None if profile is None else PROFILE_POLICY.replace("#PROFILE#", profile)
    kwargs = {} if policies is None else {"policies": policies}
    h = Harness(accessProxy=POOL.replace("#OPTIONS#", options), **kwargs)
    h.router.useKeys(b"k" * 32, keys or IdentityKeys([ec.generate_private_key(ec.SECP256R1())]), h.reactor)
    return h


GET = b"GET /page HTTP/1.1\r\nHost: app.test\r\n\r\n"


def fail(h: Harness, index: int = -1) -> None:
    """
    Fail the gateway's connection attempt C{index} (connection refused).
    """
    from twisted.internet.error import ConnectionRefusedError
    from twisted.python.failure import Failure

    _, _, factory, _, _ = h.reactor.tcpClients[index]
    factory.clientConnectionFailed(None, Failure(ConnectionRefusedError()))


class RetryTests(SynchronousTestCase):
    """
    A request that cannot reach its server goes once to another one.
    """

    def test_idempotentRetried(self) -> None:
        """
        A GET whose server refuses the connection goes to the next server;
        the client sees only that server's answer.
        """
        h = harness()
        protocol, transport = h.connect()
        protocol.dataReceived(GET)
        self.assertEqual(h.reactor.tcpClients[-1][1], 8001)
        fail(h)
        self.assertEqual(h.reactor.tcpClients[-1][1], 8002)
        upstream, _ = h.upstream()
        upstream.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        status, _, body = head(transport.value())
        self.assertEqual((status, body), (200, b"ok"))
        [line] = h.traffic()
        self.assertEqual((line["action"], line["realserverid"]), ("accept", "2"))

    def test_retriedOnce(self) -> None:
        """
        When the second server fails too, the client gets 502.
        """
        h = harness()
        protocol, transport = h.connect()
        protocol.dataReceived(GET)
        fail(h)
        fail(h)
        self.assertEqual(len(h.reactor.tcpClients), 2)
        self.assertEqual(head(transport.value())[0], 502)

    def test_postNotRetried(self) -> None:
        """
        A POST is never sent to another server: 502.
        """
        h = harness()
        protocol, transport = h.connect()
        protocol.dataReceived(b"POST /form HTTP/1.1\r\nHost: app.test\r\nContent-Length: 2\r\n\r\nhi")
        fail(h)
        self.assertEqual(len(h.reactor.tcpClients), 1)
        self.assertEqual(head(transport.value())[0], 502)

    def test_sentNotRetried(self) -> None:
        """
        Once the request was written to a server, a failure is not retried.
        """
        h = harness()
        protocol, transport = h.connect()
        protocol.dataReceived(GET)
        upstream, upstreamTransport = h.upstream()
        upstream.connectionLost(__import__("twisted.python.failure", fromlist=["Failure"]).Failure(ConnectRefused("x")))
        self.assertEqual(len(h.reactor.tcpClients), 1)
        self.assertEqual(head(transport.value())[0], 502)


class PersistenceTests(SynchronousTestCase):
    """
    C{persistence http-cookie} through the handler.
    """

    def _exchange(self, h: Harness, request: bytes) -> tuple[int, dict, int]:
        protocol, transport = h.connect()
        protocol.dataReceived(request)
        port = h.reactor.tcpClients[-1][1]
        upstream, upstreamTransport = h.upstream()
        self.sent = requestHead(upstreamTransport.value())[1]
        upstream.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        status, found, _ = head(transport.value())
        return status, found, port

    def test_cookieBinds(self) -> None:
        """
        The first response sets a signed cookie; requests that carry it go
        to the same server (round-robin notwithstanding) and get no new
        cookie; the cookie is not passed to the real server.
        """
        h = harness("set persistence http-cookie\n                set https-cookie-secure enable")
        _, found, port = self._exchange(h, GET)
        [cookie] = found[b"set-cookie"]
        self.assertIn(b"Secure", cookie)
        self.assertIn(b"HttpOnly", cookie)
        self.assertIn(b"Max-Age=3600", cookie)
        value = cookie.split(b";")[0]
        self.assertTrue(value.startswith(b"FGTServer="))
        for _ in range(3):
            _, found, again = self._exchange(
                h, b"GET /page HTTP/1.1\r\nHost: app.test\r\nCookie: a=1; " + value + b"\r\n\r\n"
            )
            self.assertEqual(again, port)
            self.assertNotIn(b"set-cookie", found)
            self.assertEqual([v for n, v in self.sent if n == b"Cookie"], [b"a=1"])

    def test_forgedCookie(self) -> None:
        """
        A cookie not signed by the gateway binds nothing: the method
        chooses and a real cookie is set.
        """
        h = harness("set persistence http-cookie")
        ports = []
        for _ in range(2):
            _, found, port = self._exchange(
                h, b"GET / HTTP/1.1\r\nHost: a\r\nCookie: FGTServer=0.AAAAAAAAAAAAAAAAAAAAAA\r\n\r\n"
            )
            ports.append(port)
            self.assertIn(b"set-cookie", found)
        self.assertEqual(ports, [8001, 8002])

    def test_downFallsBack(self) -> None:
        """
        A cookie naming a server that is down falls back to the method.
        """
        h = harness("set persistence http-cookie")
        _, found, port = self._exchange(h, GET)
        value = found[b"set-cookie"][0].split(b";")[0]
        pool = h.router.pool(h.config.accessProxies["proxy"].apiGateways[1])
        member = pool.member(1 if port == 8001 else 2)
        object.__setattr__(member.realServer, "healthCheck", True)
        member.health.state = "down"
        _, found, again = self._exchange(h, b"GET / HTTP/1.1\r\nHost: a\r\nCookie: " + value + b"\r\n\r\n")
        self.assertNotEqual(again, port)
        self.assertIn(b"set-cookie", found)


class HeaderTests(SynchronousTestCase):
    """
    Header actions and the identity assertion toward real servers.
    """

    def _sent(self, h: Harness, request: bytes) -> list[tuple[bytes, bytes]]:
        protocol, transport = h.connect()
        protocol.dataReceived(request)
        _, upstreamTransport = h.upstream()
        return requestHead(upstreamTransport.value())[1]

    FORGED = (
        b"GET / HTTP/1.1\r\nHost: App.Test:443\r\nClient-IP: 6.6.6.6\r\n"
        b"X-Authenticated-User: admin\r\nX-ZTNA-Identity: forged\r\nX-Custom-Id: x\r\n"
        b"X-Forwarded-Client-Cert: forged\r\nFront-End-Https: Off\r\n\r\n"
    )

    def test_defaultsStripClientCopies(self) -> None:
        """
        Without a profile, every client copy of an identity field is
        removed and only X-Forwarded-* are set.
        """
        h = harness()
        sent = self._sent(h, self.FORGED)
        names = [n.lower() for n, _ in sent]
        for name in (b"client-ip", b"x-authenticated-user", b"x-ztna-identity", b"x-forwarded-client-cert",
                     b"front-end-https"):
            self.assertNotIn(name, names)
        self.assertIn((b"X-Forwarded-For", b"192.168.1.1"), sent)

    def test_addActions(self) -> None:
        """
        C{add} sends the gateway's values; C{config headers} expand the
        dynamic values; the client's copies never pass.
        """
        h = harness(profile="""        set header-client-ip add
        set header-x-forwarded-client-cert add
        set header-front-end-https add
        set header-x-authenticated-user add
        config headers
            edit 1
                set name "X-Device"
                set content "$device-uid $client-ip [$user]"
            next
            edit 2
                set name "X-Tags"
                set content "$device-tags"
                set base64-encoding enable
            next
            edit 3
                set name "X-Custom-Id"
                set action remove-from-request
            next
        end""")
        sent = dict(self._sent(h, self.FORGED))
        self.assertEqual(sent[b"Client-IP"], b"192.168.1.1")
        self.assertEqual(sent[b"Front-End-Https"], b"On")
        self.assertTrue(sent[b"X-Forwarded-Client-Cert"].startswith(b"Hash="))
        self.assertIn(b"URI=" + DEVICE_UID.encode(), sent[b"X-Forwarded-Client-Cert"])
        self.assertNotIn(b"X-Authenticated-User", sent)
        self.assertEqual(sent[b"X-Device"], DEVICE_UID.encode() + b" 192.168.1.1 []")
        self.assertIn(b"all_registered_clients", __import__("base64").b64decode(sent[b"X-Tags"]))
        self.assertNotIn(b"X-Custom-Id", sent)

    def test_removeForwardedFor(self) -> None:
        """
        C{header-x-forwarded-for remove} sends no X-Forwarded-For.
        """
        h = harness(profile="        set header-x-forwarded-for remove")
        sent = self._sent(h, GET)
        self.assertNotIn(b"x-forwarded-for", [n.lower() for n, _ in sent])

    def test_responseHeaders(self) -> None:
        """
        C{add-to-response} and C{remove-from-response} change what the
        client gets.
        """
        h = harness(profile="""        config headers
            edit 1
                set name "X-Frame-Options"
                set content "DENY"
                set action add-to-response
            next
            edit 2
                set name "Server"
                set action remove-from-response
            next
        end""")
        protocol, transport = h.connect()
        protocol.dataReceived(GET)
        upstream, _ = h.upstream()
        upstream.dataReceived(b"HTTP/1.1 200 OK\r\nServer: secret/1.0\r\nContent-Length: 0\r\n\r\n")
        _, found, _ = head(transport.value())
        self.assertEqual(found[b"x-frame-options"], [b"DENY"])
        self.assertNotIn(b"server", found)

    def test_identityAssertion(self) -> None:
        """
        With C{identity-assertion enable}, the real server gets a JWT that
        an independent library (PyJWT) verifies with the JWKS the gateway
        serves, with the device's claims and the request's host as
        audience; the client's copy is gone.
        """
        keys = IdentityKeys([ec.generate_private_key(ec.SECP256R1())])
        h = harness(profile="        set identity-assertion enable\n        set identity-assertion-ttl 30", keys=keys)
        sent = self._sent(h, self.FORGED)
        [token] = [v for n, v in sent if n.lower() == b"x-ztna-identity"]
        protocol, transport = h.connect()
        protocol.dataReceived(b"GET /.well-known/ztnagw/jwks.json HTTP/1.1\r\nHost: x\r\n\r\n")
        status, found, body = head(transport.value())
        self.assertEqual((status, found[b"content-type"]), (200, [b"application/jwk-set+json"]))
        jwks = jwt.PyJWKSet.from_dict(json.loads(body))
        header = jwt.get_unverified_header(token)
        [key] = [k for k in jwks.keys if k.key_id == header["kid"]]
        now = h.reactor.seconds()
        claims = jwt.decode(
            token, key.key, algorithms=["ES256"], audience="app.test", options={"verify_exp": False}
        )
        self.assertEqual(claims["sub"], DEVICE_UID)
        self.assertEqual(claims["device_uid"], DEVICE_UID)
        self.assertEqual(claims["policy_id"], 1)
        self.assertEqual(claims["api_gateway_id"], 1)
        self.assertEqual((claims["iat"], claims["exp"]), (int(now), int(now) + 30))
        self.assertEqual(claims["iss"], "ztnagw:" + h.config.systemGlobal.hostname)
        self.assertIn("EMS1_ZTNA_all_registered_clients", claims["tags"])
        with self.assertRaises(jwt.InvalidAudienceError):
            jwt.decode(token, key.key, algorithms=["ES256"], audience="other.test", options={"verify_exp": False})


WS = (
    b"GET /chat HTTP/1.1\r\nHost: app.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
SWITCH = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
)


def lost(*protocols: object) -> None:
    """
    Deliver the end of the connections the gateway aborted.
    """
    from twisted.internet.error import ConnectionAborted
    from twisted.python.failure import Failure

    for protocol in protocols:
        protocol.connectionLost(Failure(ConnectionAborted()))  # type: ignore[attr-defined]


class UpgradeTests(SynchronousTestCase):
    """
    WebSockets (any Upgrade) through the handler.
    """

    def _switched(self, h: Harness):
        protocol, transport = h.connect()
        protocol.dataReceived(WS)
        upstream, upstreamTransport = h.upstream()
        line, pairs = requestHead(upstreamTransport.value())
        self.assertIn((b"Upgrade", b"websocket"), pairs)
        self.assertIn((b"Connection", b"Upgrade"), pairs)
        self.assertIn((b"Sec-WebSocket-Key", b"dGhlIHNhbXBsZSBub25jZQ=="), pairs)
        upstream.dataReceived(SWITCH + b"early")
        return protocol, transport, upstream, upstreamTransport

    def test_relayed(self) -> None:
        """
        The 101 is relayed; bytes then flow both ways, those the server
        sent with its 101 first; the idle timeout of plain requests no
        longer applies, the api-gateway's idle-timeout does; one traffic
        line at the end.
        """
        h = harness("set idle-timeout 600")
        protocol, transport, upstream, upstreamTransport = self._switched(h)
        status, found, rest = head(transport.value())
        self.assertEqual(status, 101)
        self.assertEqual(found[b"upgrade"], [b"websocket"])
        self.assertEqual(found[b"sec-websocket-accept"], [b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="])
        self.assertEqual(rest, b"early")
        upstreamTransport.clear()
        protocol.dataReceived(b"\x81\x05hello")
        self.assertEqual(upstreamTransport.value(), b"\x81\x05hello")
        h.reactor.advance(500)
        self.assertFalse(transport.aborted)
        self.assertEqual(h.traffic(), [])
        h.reactor.advance(101)
        self.assertTrue(transport.aborted)
        self.assertTrue(upstreamTransport.aborted)
        lost(protocol, upstream)
        [line] = h.traffic()
        self.assertEqual((line["action"], line["lanin"]), ("timeout", "7"))

    def test_maxLifetime(self) -> None:
        """
        C{max-lifetime} ends an upgraded connection however busy it is.
        """
        h = harness("set max-lifetime 60")
        protocol, transport, upstream, upstreamTransport = self._switched(h)
        for _ in range(7):
            h.reactor.advance(9.9)
            protocol.dataReceived(b"x")
        self.assertTrue(transport.aborted)
        lost(protocol, upstream)
        [line] = h.traffic()
        self.assertEqual(line["action"], "timeout")

    def test_revoked(self) -> None:
        """
        A device revoked while its WebSocket is open loses it at once.
        """
        h = harness()
        protocol, transport, upstream, upstreamTransport = self._switched(h)
        from tests.gateway.fakes import record

        h.index.put(record(revoked=True))
        self.assertTrue(transport.aborted)
        self.assertTrue(upstreamTransport.aborted)
        lost(protocol, upstream)
        [line] = h.traffic()
        self.assertEqual(line["action"], "close")

    def test_refused(self) -> None:
        """
        A real server that does not switch is relayed as a plain response.
        """
        h = harness()
        protocol, transport = h.connect()
        protocol.dataReceived(WS)
        upstream, _ = h.upstream()
        upstream.dataReceived(b"HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\n\r\n")
        self.assertEqual(head(transport.value())[0], 426)

    def test_otherProtocol(self) -> None:
        """
        A 101 to a protocol the client did not offer is a 502.
        """
        h = harness()
        protocol, transport = h.connect()
        protocol.dataReceived(WS)
        upstream, upstreamTransport = h.upstream()
        upstream.dataReceived(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n")
        self.assertEqual(head(transport.value())[0], 502)
        self.assertTrue(upstreamTransport.aborted)
