"""
Tests for L{ztnagw.gateway.tunnel}: the gateway's answer to tunnel
requests, step by step, in memory (real HTTP layer, memory reactor).
"""

from __future__ import annotations

import ipaddress

from twisted.internet.address import IPv4Address
from twisted.internet.error import (
    ConnectionDone,
    ConnectionLost,
    ConnectionRefusedError,
    TimeoutError,
)
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from tests.gateway.fakes import (
    MemoryIndex,
    TableResolver,
    handshake,
    makeContext,
    makeGate,
    makeSite,
    presented,
    record,
)
from tests.tunnel.fakes import HalfCloseTransport
from ztnagw import errors
from ztnagw.config import loads
from ztnagw.gateway.tunnel import TunnelHandler, isDeviceDenial
from ztnagw.http.interfaces import IRequestHandler
from ztnagw.http.server import HTTPServerProtocol
from ztnagw.logs.line import parseKeyValue

#: The request FortiClient sends, byte for byte (FortiClient 7.x, from its
#: fortitcs log): empty Cookie, bare Authorization.
FORTICLIENT = (
    b"GET /tcp?address=10.88.0.5&port=22&tls=1 HTTP/1.1\r\n"
    b"Host: 127.0.0.1:443\r\n"
    b"User-Agent: Forticlient\r\n"
    b"Accept: */*\r\n"
    b"Upgrade: tcp-forwarding/1.0\r\n"
    b"Connection: Upgrade\r\n"
    b"Cookie:\r\n"
    b"Authorization: Basic\r\n"
    b"\r\n"
)

CONFIG = """
config system interface
    edit "lo"
        set ip 127.0.0.1 255.0.0.0
        set role lan
    next
    edit "lab"
        set ip 10.88.0.1 255.255.0.0
        set role dmz
    next
end
config vpn certificate local
    edit "gw"
        set certificate-file "gw.crt"
        set private-key-file "gw.key"
        set auto-generate enable
    next
end
config endpoint-control fctems
    edit 1
        set status enable
        set server "127.0.0.1"
        set https-port 18013
        set serial-number "FCTEMS8825007278"
    next
end
config firewall address
    edit "rdp-hosts"
        set subnet 10.1.0.0 255.255.255.0
    next
    edit "db.corp.example"
        set type fqdn
        set fqdn "db.corp.example"
    next
end
config firewall vip
    edit "vip"
        set type access-proxy
        set server-type https
        set extip 127.0.0.1
        set extintf "lo"
        set extport 443
        set ssl-certificate "gw"
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
                        set ip 127.0.0.1
                        set port 8080
                    next
                end
            next
            edit 7
                set service tcp-forwarding
                set connect-timeout 3
#IDLE#
                config realservers
                    edit 1
                        set ip 10.88.0.5
                        set port 22
                    next
                    edit 2
                        set addr-type fqdn
                        set domain "*.corp.example"
                        set mappedport 5432 6379
                    next
                    edit 3
                        set address "rdp-hosts"
                        set port 3389
                        set tunnel-encryption enable
                    next
                    edit 4
                        set addr-type fqdn
                        set address "db.corp.example"
                        set port 1521
                    next
                end
            next
        end
    next
end
"""

ALLOW = """
config firewall address
    edit "rdp-one"
        set subnet 10.1.0.66 255.255.255.255
    next
end
config firewall proxy-policy
    edit 1
        set name "deny-one"
        set proxy access-proxy
        set access-proxy "proxy"
        set srcaddr "all"
        set dstaddr "rdp-one"
        set action deny
        set schedule "always"
    next
    edit 2
        set name "tunnels"
        set proxy access-proxy
        set access-proxy "proxy"
        set srcaddr "all"
        set dstaddr "all"
        set action accept
        set schedule "always"
        set logtraffic all
    next
end
"""


def fields(line: object) -> dict[str, str]:
    """
    The fields of a log line.
    """
    return dict(parseKeyValue(line.keyValue()))  # type: ignore[attr-defined]


@implementer(IRequestHandler)
class Dispatcher:
    """
    What the HTTPS proxy does for a tunnel request: build the context and
    hand the request over.
    """

    def __init__(self, test: TunnelTestCase) -> None:
        self.test = test

    def requestReceived(self, request: object) -> None:
        """
        Hand C{request} to the tunnel handler.
        """
        test = self.test
        facts = handshake(presented() if test.withCertificate else None)
        test.context = makeContext(test.gate, test.site, facts)
        test.handler.handleTunnelRequest(request, test.context)


class TunnelTestCase(SynchronousTestCase):
    """
    A tunnel handler over the test configuration, a registered device, a
    resolver table, and a client connection with the real HTTP layer.
    """

    idle = ""
    policies = ALLOW

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.reactor.advance(1_700_000_000)
        self.index = MemoryIndex([record()])
        self.config = loads(CONFIG.replace("#IDLE#", self.idle) + self.policies)
        self.gate, self.logs = makeGate(self.config, self.index, self.reactor)
        self.gate.sessions.start()
        self.site = makeSite(self.config)
        self.resolver = TableResolver(
            {
                "ssh.corp.example": ["10.88.0.5"],
                "git.corp.example": ["10.77.0.9", "10.77.0.10"],
                "db.corp.example": ["10.66.0.3"],
                "outside.example": ["192.0.2.1"],
            }
        )
        self.handler = TunnelHandler(self.reactor, self.resolver)
        self.withCertificate = True
        self.http = HTTPServerProtocol(Dispatcher(self), self.reactor)
        self.transport = HalfCloseTransport()
        self.http.makeConnection(self.transport)

    def ask(self, query: bytes, extra: bytes = b"", accept: bytes = b"application/json") -> None:
        """
        Send a tunnel request for C{query} (and C{extra} bytes behind it).
        """
        self.http.dataReceived(
            b"GET /tcp?" + query + b" HTTP/1.1\r\nHost: 127.0.0.1:443\r\n"
            b"User-Agent: ztnagw-forward/1\r\nAccept: " + accept + b"\r\n"
            b"Upgrade: tcp-forwarding/1.0\r\nConnection: Upgrade\r\n\r\n" + extra
        )

    def answer(self) -> bytes:
        """
        What the client was sent so far; forget it.
        """
        value = self.transport.value()
        self.transport.clear()
        return value

    def connectUpstream(self) -> tuple[object, HalfCloseTransport]:
        """
        Complete the last upstream connection attempt.
        """
        host, port, factory, timeout, bind = self.reactor.tcpClients[-1]
        protocol = factory.buildProtocol(IPv4Address("TCP", host, port))
        transport = HalfCloseTransport()
        protocol.makeConnection(transport)
        return protocol, transport

    def refusal(self) -> tuple[int, bytes]:
        """
        The status and C{X-ZTNA-Error} of the answer (no connection was
        attempted).
        """
        self.assertEqual(self.reactor.tcpClients, [])
        response = self.answer()
        status = int(response[9:12])
        code = b""
        for line in response.split(b"\r\n"):
            if line.lower().startswith(b"x-ztna-error:"):
                code = line.split(b":", 1)[1].strip()
        return status, code

    def lastLog(self) -> dict[str, str]:
        """
        The last log line's fields.
        """
        return fields(self.logs.lines[-1])


class AcceptedTests(TunnelTestCase):
    """
    Tunnels that go through.
    """

    def test_forticlient(self) -> None:
        """
        FortiClient's request, byte for byte, is accepted: the gateway
        connects to the real server with the api-gateway's connect timeout
        and answers C{101} with the upgrade token.
        """
        self.http.dataReceived(FORTICLIENT)
        self.assertEqual(self.answer(), b"")
        host, port, factory, timeout, bind = self.reactor.tcpClients[0]
        self.assertEqual((host, port, timeout), ("10.88.0.5", 22, 3))
        self.connectUpstream()
        self.assertEqual(
            self.answer(),
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: tcp-forwarding/1.0\r\n"
            b"Connection: Upgrade\r\n\r\n",
        )
        self.assertEqual(len(self.handler.tunnels), 1)

    def test_relay(self) -> None:
        """
        After the C{101} bytes flow both ways; bytes the client sent right
        behind its request reach the real server first; when both sides are
        done, one traffic log line tells the tunnel.
        """
        self.ask(b"address=10.88.0.5&port=22&tls=1", extra=b"early bytes|")
        server, serverTransport = self.connectUpstream()
        self.answer()
        server.dataReceived(b"SSH-2.0-real\r\n")  # type: ignore[attr-defined]
        self.http.dataReceived(b"late bytes")
        self.assertEqual(serverTransport.value(), b"early bytes|late bytes")
        self.assertEqual(self.answer(), b"SSH-2.0-real\r\n")
        (relay,) = self.handler.tunnels
        relay.client.readConnectionLost()
        self.assertTrue(serverTransport.writeClosed)
        server.readConnectionLost()  # type: ignore[attr-defined]
        self.reactor.advance(12)
        relay.client.connectionLost(Failure(ConnectionDone()))
        server.connectionLost(Failure(ConnectionDone()))  # type: ignore[attr-defined]
        self.assertEqual(self.handler.tunnels, set())
        log = self.lastLog()
        self.assertEqual(log["service"], "tcp/22")
        self.assertEqual(log["action"], "accept")
        self.assertEqual(log["dstip"], "10.88.0.5")
        self.assertEqual(log["dstport"], "22")
        self.assertEqual(log["dstintf"], "lab")
        self.assertEqual((log["gatewayid"], log["realserverid"]), ("7", "1"))
        self.assertEqual((log["lanin"], log["wanout"]), ("22", "22"))
        self.assertEqual((log["wanin"], log["lanout"]), ("14", "14"))
        self.assertEqual(log["duration"], "12")
        self.assertEqual(log["policyid"], "2")
        self.assertEqual(log["url"], "/tcp?address=10.88.0.5&port=22&tls=1")

    def test_domainByName(self) -> None:
        """
        A name under a real server's domain, on a mapped port, is resolved
        by the gateway and the resolved address is connected to.
        """
        self.ask(b"address=git.corp.example&port=6379")
        host, port = self.reactor.tcpClients[0][:2]
        self.assertEqual((host, port), ("10.77.0.9", 6379))

    def test_nameOfIpServer(self) -> None:
        """
        A name that resolves to an C{ip} real server's address is as good
        as the address.
        """
        self.ask(b"address=ssh.corp.example&port=22")
        self.assertEqual(self.reactor.tcpClients[0][:2], ("10.88.0.5", 22))

    def test_fqdnServer(self) -> None:
        """
        An address an fqdn real server's name resolves to is admitted.
        """
        self.ask(b"address=10.66.0.3&port=1521")
        self.assertEqual(self.reactor.tcpClients[0][:2], ("10.66.0.3", 1521))

    def test_unencryptedWithoutTls(self) -> None:
        """
        C{tls=0} on a connection without TLS (no TLS to drop) relays as
        usual.
        """
        self.ask(b"address=10.88.0.5&port=22&tls=0")
        self.connectUpstream()
        self.assertIn(b"101 Switching Protocols", self.answer())


class RefusedTests(TunnelTestCase):
    """
    Each step's refusal, with its code, instead of the C{101}.
    """

    def test_badQuery(self) -> None:
        """
        A malformed query is a C{400} saying what is wrong.
        """
        self.ask(b"address=10.88.0.5&port=0")
        response = self.answer()
        self.assertTrue(response.startswith(b"HTTP/1.1 400 Bad Request\r\n"))
        self.assertIn(b"port", response)
        self.assertEqual(self.reactor.tcpClients, [])

    def test_duplicate(self) -> None:
        """
        A parameter given twice is a C{400}.
        """
        self.ask(b"address=10.88.0.5&address=10.1.0.1&port=22")
        self.assertIn(b"more than once", self.answer())

    def test_device(self) -> None:
        """
        A revoked device is refused with 063 before its destination is even
        looked up.
        """
        self.index.put(record(revoked=True))
        self.ask(b"address=ssh.corp.example&port=22")
        self.assertEqual(self.refusal(), (403, b"063"))
        self.assertEqual(self.resolver.asked, [])
        log = self.lastLog()
        self.assertEqual((log["action"], log["ztnaerror"], log["service"]), ("deny", "063", "tcp/22"))

    def test_noCertificate(self) -> None:
        """
        No certificate (empty-cert-action block): 002.
        """
        self.withCertificate = False
        self.ask(b"address=10.88.0.5&port=22")
        self.assertEqual(self.refusal(), (403, b"002"))

    def test_dns(self) -> None:
        """
        A name that does not resolve: 023, logged with action C{dns} (as
        for a proxied request) and as blocked traffic.
        """
        self.ask(b"address=nowhere.corp.example&port=22")
        self.assertEqual(self.refusal(), (502, b"023"))
        log = self.lastLog()
        self.assertEqual((log["action"], log["ztnaerror"]), ("dns", "023"))

    def test_notRealServer(self) -> None:
        """
        An address, a port or a name outside the real servers: 022.
        """
        for query in (
            b"address=10.88.0.6&port=22",
            b"address=10.88.0.5&port=23",
            b"address=outside.example&port=5432",
            b"address=git.corp.example&port=22",
            b"address=2001:db8::1&port=22",
        ):
            self.setUp()
            self.ask(query)
            self.assertEqual(self.refusal(), (502, b"022"), query)

    def test_policy(self) -> None:
        """
        The policies see the resolved destination: a deny policy on it
        gives 062, with the destination in the log.
        """
        self.ask(b"address=10.1.0.66&port=3389")
        self.assertEqual(self.refusal(), (403, b"062"))
        log = self.lastLog()
        self.assertEqual((log["dstip"], log["policyid"]), ("10.1.0.66", "1"))

    def test_tunnelEncryption(self) -> None:
        """
        C{tls=0} to a real server with C{tunnel-encryption enable}: 022,
        with a sentence saying to turn encryption on.
        """
        self.ask(b"address=10.1.0.7&port=3389&tls=0")
        response = self.transport.value()
        self.assertEqual(self.refusal(), (502, b"022"))
        self.assertIn(b"requires an encrypted tunnel", response)
        self.ask(b"address=10.1.0.7&port=3389&tls=1")

    def test_connectRefused(self) -> None:
        """
        A real server that refuses the connection: 022, action C{ip-conn}.
        """
        self.ask(b"address=10.88.0.5&port=22")
        factory = self.reactor.tcpClients[0][2]
        factory.clientConnectionFailed(None, Failure(ConnectionRefusedError()))
        response = self.answer()
        self.assertIn(b"X-ZTNA-Error: 022", response)
        self.assertIn(b"refused the connection", response)
        self.assertEqual(self.lastLog()["action"], "ip-conn")

    def test_connectTimeout(self) -> None:
        """
        One that does not answer: 022, saying how long the gateway waited.
        """
        self.ask(b"address=10.88.0.5&port=22")
        factory = self.reactor.tcpClients[0][2]
        factory.clientConnectionFailed(None, Failure(TimeoutError()))
        self.assertIn(b"did not answer within 3 s", self.answer())

    def test_clientLeaves(self) -> None:
        """
        A client that leaves while the gateway connects makes it give up
        the connection.
        """
        self.ask(b"address=10.88.0.5&port=22")
        connector = self.reactor.connectors[0]
        self.http.connectionLost(Failure(ConnectionLost()))
        self.assertTrue(connector.stoppedConnecting)


class DeviceDenialTests(SynchronousTestCase):
    """
    L{isDeviceDenial}.
    """

    def test_kinds(self) -> None:
        """
        Denials without a deciding policy are the device's, except "no
        policy matched".
        """
        from ztnagw.access import Decision, PolicyReference

        class A:
            def __init__(self, decision: Decision) -> None:
                self.decision = decision

        policy = PolicyReference("policy", 1, None, None, "all")
        self.assertTrue(isDeviceDenial(A(Decision(False, errors.CERTIFICATE_REVOKED, "r"))))  # type: ignore[arg-type]
        self.assertTrue(isDeviceDenial(A(Decision(False, errors.TAG_DENY, "quarantined"))))  # type: ignore[arg-type]
        self.assertFalse(isDeviceDenial(A(Decision(False, errors.NO_POLICY, "none"))))  # type: ignore[arg-type]
        self.assertFalse(isDeviceDenial(A(Decision(False, errors.TAG_DENY, "tag", policy=policy))))  # type: ignore[arg-type]
        self.assertFalse(isDeviceDenial(A(Decision(True, None, "ok"))))  # type: ignore[arg-type]


class LiveTests(TunnelTestCase):
    """
    A tunnel is a live session; an idle timeout applies when configured.
    """

    idle = "                set idle-timeout 30"

    def open(self) -> tuple[object, HalfCloseTransport]:
        """
        Open a tunnel to 10.88.0.5:22.
        """
        self.ask(b"address=10.88.0.5&port=22")
        server, serverTransport = self.connectUpstream()
        self.answer()
        return server, serverTransport

    def test_revoked(self) -> None:
        """
        Revoking the device closes its tunnel at once; the traffic log says
        C{close}, and an event tells why.
        """
        server, serverTransport = self.open()
        self.index.put(record(revoked=True))
        self.assertTrue(serverTransport.aborted)
        self.assertTrue(self.transport.aborted)
        (relay,) = self.handler.tunnels
        relay.client.connectionLost(Failure(ConnectionLost()))
        relay.server.connectionLost(Failure(ConnectionLost()))
        kinds = [fields(line).get("logid") for line in self.logs.lines]
        self.assertIn("9900069901", kinds)
        self.assertEqual(self.lastLog()["action"], "close")

    def test_idle(self) -> None:
        """
        C{idle-timeout 30} closes a tunnel through which nothing moved for
        30 s.
        """
        server, serverTransport = self.open()
        self.reactor.advance(29)
        self.assertFalse(serverTransport.aborted)
        self.reactor.advance(2)
        self.assertTrue(serverTransport.aborted)
