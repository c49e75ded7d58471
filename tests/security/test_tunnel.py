"""
Attacks on the TCP forwarding access proxy with a valid device: malformed
tunnel requests, destinations that are not real servers (the gateway's
own ports, a name that resolves to a forbidden address), a client that
goes silent after the C{101}, a destination that never answers.

The TUN access proxy's real servers are 127.0.0.2 on the recording
servers' ports, and any name under C{*.tunnel.test} on the recording echo
port and on the gateway's own VIP and EMS ports (127.0.0.1); its only
policy admits the destination address 127.0.0.2.  Names resolve through
the test DNS server (L{tests.security.resolving}): C{good.tunnel.test} is
127.0.0.2, C{evil.tunnel.test} is 127.0.0.1.  The resolved address is
what the policy sees and what is connected, so a name admitted by a
domain real server cannot lead to the gateway itself.
"""

from __future__ import annotations

import json
import time
from urllib.parse import quote

from tests.security.cases import attack
from tests.security.fixture import TUNNEL_IDLE_TIMEOUT, AttackCase, Exchange


class TunnelTests(AttackCase):
    """
    Tunnel requests that must not open a tunnel, and tunnels that must not
    hold the gateway.
    """

    def tunnel(self, query: str, timeout: float = 10.0) -> Exchange:
        """
        Send a tunnel request (as the forwarder does) with C{query} on
        the TUN VIP; return what came back (a refusal or the C{101}).
        """
        g = self.gateway
        request = (
            f"GET /tcp?{query} HTTP/1.1\r\nHost: 127.0.0.1:{g.ports['TUN']}\r\n"
            "Upgrade: tcp-forwarding/1.0\r\nConnection: Upgrade\r\nAccept: application/json\r\n"
            "User-Agent: ztnagw-forward/attack\r\n\r\n"
        ).encode("latin-1")
        return g.exchange(request, vip="TUN", device=g.good, timeout=timeout, responses=1)

    def assertRefused(self, cases: dict[str, str], status: int, code: str | None) -> None:
        """
        Each query of C{cases} is refused with C{status} (and ZTNA C{code}),
        and no real server gets a connection.
        """
        for name, query in cases.items():
            exchange = self.tunnel(query)
            response = exchange.response
            self.assertEqual((response.status, response.ztnaError), (status, code), (name, query, response))
            self.assertNothingReached()

    @attack(
        "tunnel",
        "malformed tunnel query: missing or duplicate address/port, port 0/65536/+22/022/non-numeric, "
        "CRLF, space or NUL in the address, numeric host names (127.1, 0x7f000002), userinfo",
        "400 with a sentence; no connection to any real server",
    )
    def test_malformedQuery(self) -> None:
        """
        The tunnel query is parsed strictly; every violation is a 400.
        """
        raw = self.gateway.ports["raw"]
        self.assertRefused(
            {
                "no address": f"port={raw}",
                "no port": "address=127.0.0.2",
                "two addresses": f"address=127.0.0.2&address=127.0.0.1&port={raw}",
                "two ports": f"address=127.0.0.2&port={raw}&port=22",
                "port 0": "address=127.0.0.2&port=0",
                "port 65536": "address=127.0.0.2&port=65536",
                "port +22": "address=127.0.0.2&port=%2B22",
                "port 022": "address=127.0.0.2&port=022",
                "port name": "address=127.0.0.2&port=ssh",
                "CRLF in address": f"address=127.0.0.2%0d%0aX:1&port={raw}",
                "space in address": f"address=127.0.0.2%20&port={raw}",
                "NUL in address": f"address=127.0.0.2%00.tunnel.test&port={raw}",
                "127.1": f"address=127.1&port={raw}",
                "hex address": f"address=0x7f000002&port={raw}",
                "userinfo": f"address={quote('a@127.0.0.2')}&port={raw}",
                "tls=2": f"address=127.0.0.2&port={raw}&tls=2",
            },
            400,
            None,
        )
        self.gateway.checkServing(self)

    @attack(
        "tunnel",
        "destinations outside the real servers: the gateway's own VIP and EMS ports, an unlisted port of a "
        "real server's address, IPv6 loopback",
        "061 (no policy admits 127.0.0.1), 022 (not a real server); nothing connected",
    )
    def test_outsideRealServers(self) -> None:
        """
        A tunnel reaches only a real server's address and port that a
        policy admits: never the gateway's own listeners, never another
        port of a real server's host.
        """
        g = self.gateway
        self.assertRefused(
            {
                "own VIP": f"address=127.0.0.1&port={g.ports['WEB']}",
                "own EMS listener": f"address=127.0.0.1&port={g.ports['EMS']}",
                "own tunnel VIP": f"address=127.0.0.1&port={g.ports['TUN']}",
            },
            403,
            "061",
        )
        self.assertRefused(
            {
                "other port of a real server's host": f"address=127.0.0.2&port={g.ports['nginx']}",
                "IPv6 loopback": f"address=%3A%3A1&port={g.ports['raw']}",
            },
            502,
            "022",
        )
        g.checkServing(self)

    @attack(
        "tunnel",
        "a name under an admitted domain (`*.tunnel.test`) that resolves to the gateway's own address; "
        "a name that does not resolve",
        "061: the resolved address is what the policy sees and what would be connected; 023",
    )
    def test_nameToForbiddenAddress(self) -> None:
        """
        C{evil.tunnel.test} is admitted by name (domain real server, its
        port in C{mappedport}) but resolves to 127.0.0.1, which no policy
        admits: refused with 061 and nothing connected, whichever port.  A
        name with no address is 023.  C{good.tunnel.test}, resolving to
        the real servers' address, opens a tunnel (the DNS path works).
        """
        g = self.gateway
        self.assertRefused(
            {
                "evil to VIP": f"address=evil.tunnel.test&port={g.ports['WEB']}",
                "evil to EMS": f"address=evil.tunnel.test&port={g.ports['EMS']}",
                "evil to echo port": f"address=evil.tunnel.test&port={g.ports['raw']}",
                "evil, upper case": f"address=EVIL.Tunnel.Test&port={g.ports['WEB']}",
                "evil, final dot": f"address=evil.tunnel.test.&port={g.ports['WEB']}",
            },
            403,
            "061",
        )
        self.assertRefused({"no such name": f"address=missing.tunnel.test&port={g.ports['raw']}"}, 502, "023")
        exchange = self.tunnel(f"address=good.tunnel.test&port={g.ports['raw']}", timeout=5)
        self.assertEqual(exchange.response.status, 101)
        g.checkServing(self)

    @attack(
        "tunnel",
        "a client that opens a tunnel and never sends after the 101",
        f"the tunnel is held like an idle session, then closed by the api-gateway's idle-timeout "
        f"({TUNNEL_IDLE_TIMEOUT} s here; none by default), logged as timeout; others served",
    )
    def test_silentClient(self) -> None:
        """
        A silent tunnel costs one connection to the real server (no byte
        crosses) until the idle timeout ends it; the gateway logs it.
        """
        g = self.gateway
        sock = g.connect(vip="TUN", device=g.good)
        self.addCleanup(sock.close)
        sock.sendall(
            (
                f"GET /tcp?address=127.0.0.2&port={g.ports['silent']}&tls=1 HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{g.ports['TUN']}\r\nUpgrade: tcp-forwarding/1.0\r\nConnection: Upgrade\r\n\r\n"
            ).encode()
        )
        head = sock.recv(4096)
        self.assertTrue(head.startswith(b"HTTP/1.1 101 "), head)
        opened = time.monotonic()
        g.checkServing(self)
        sock.settimeout(TUNNEL_IDLE_TIMEOUT + 10)
        try:
            self.assertEqual(sock.recv(4096), b"")
        except ConnectionError:
            pass
        self.assertGreaterEqual(time.monotonic() - opened, TUNNEL_IDLE_TIMEOUT - 0.5)
        stats = g.backendStats()["silent"]
        self.assertEqual((stats["connections"], stats["received"]), (1, 0))
        deadline = time.monotonic() + 5
        while True:
            lines = [l for l in g.trafficLines() if l.get("dstport") == str(g.ports["silent"])]
            if lines or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.assertEqual([l["action"] for l in lines], ["timeout"])
        g.checkServing(self)

    @attack(
        "tunnel",
        "a destination that never answers (its SYNs dropped)",
        "022 after the api-gateway's connect-timeout (2 s here), logged as ip-conn; others served",
    )
    def test_silentDestination(self) -> None:
        """
        A real server that never answers the connection attempt costs the
        client its connect timeout and nothing more.
        """
        g = self.gateway
        started = time.monotonic()
        exchange = self.tunnel(f"address=127.0.0.2&port={g.ports['blackhole']}")
        response = exchange.response
        self.assertEqual((response.status, response.ztnaError), (502, "022"))
        self.assertIn("did not answer within 2 s", json.loads(response.body)["error"]["detail"])
        self.assertGreaterEqual(time.monotonic() - started, 1.5)
        lines = [l for l in g.trafficLines() if l.get("dstport") == str(g.ports["blackhole"])]
        self.assertEqual([l["action"] for l in lines], ["ip-conn"])
        self.assertNothingReached()
        g.checkServing(self)
