"""
Tunnel pools with the real daemon and the real forwarder: two echo servers
behind one destination name (real servers with C{domain} and an address)
share its tunnels; one killed is marked down by its health check (event,
C{ztnagw diagnose realserver list}) and new tunnels go to the other.
"""

from __future__ import annotations

import socket
import socketserver
import threading
from collections import Counter

from twisted.trial.unittest import TestCase

from tests.integration.poolsgateway import PoolGateway, waitFor
from tests.integration.test_tunnel_harness import Forwarder
from tests.support.daemon import environment, freePort

#: One tcp-forwarding api-gateway: echo.pool.test on port {PORT} is
#: served by 127.0.0.1 and 127.0.0.2, round-robin, each health-checked
#: every second.
GATEWAYS = """
            edit 1
                set service tcp-forwarding
                set ldb-method round-robin
                config realservers
                    edit 1
                        set ip 127.0.0.1
                        set domain "echo.pool.test"
                        set port {PORT}
                        set health-check enable
                        set health-check-proto tcp-connect
                        set health-check-interval 1
                        set health-check-timeout 1
                        set health-check-fall 1
                        set health-check-rise 1
                        set holddown-time 2
                    next
                    edit 2
                        set ip 127.0.0.2
                        set domain "echo.pool.test"
                        set port {PORT}
                        set health-check enable
                        set health-check-proto tcp-connect
                        set health-check-interval 1
                    next
                end
            next
"""


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock = self.request
        try:
            sock.sendall(self.server.label.encode() + b"\n")  # type: ignore[attr-defined]
            while True:
                data = sock.recv(65536)
                if not data:
                    return
                sock.sendall(data)
        except OSError:
            # Health checks connect and reset: not news.
            return


class EchoServer:
    """
    A threaded TCP server that first sends its label and a newline, then
    echoes; it can be stopped (a real server that dies).
    """

    def __init__(self, label: str, host: str, port: int) -> None:
        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.label = label
        self._server = socketserver.ThreadingTCPServer((host, port), _Echo)
        self._server.daemon_threads = True
        self._server.label = label  # type: ignore[attr-defined]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """
        Stop listening (idempotent).
        """
        server, self._server = self._server, None  # type: ignore[assignment]
        if server is not None:
            server.shutdown()
            server.server_close()


class TunnelPoolTests(TestCase):
    """
    The pool of one destination name, through the forwarder.
    """

    timeout = 120

    def setUp(self) -> None:
        port = freePort()
        self.servers = {
            "A": EchoServer("A", "127.0.0.1", port),
            "B": EchoServer("B", "127.0.0.2", port),
        }
        for server in self.servers.values():
            self.addCleanup(server.stop)
        self.port = port
        self.gateway = PoolGateway(self.mktemp(), GATEWAYS, PORT=port)
        self.gateway.start()
        self.addCleanup(self.gateway.stop)
        device = self.gateway.issueDevice()
        self.forwarder = Forwarder(
            [
                "-L", f"0:echo.pool.test:{port}",
                "--cert", device.certificate, "--key", device.key, "--ca", self.gateway.ca,
                "--gateway", f"127.0.0.1:{self.gateway.vipPort}",
            ],
            environment(),
        )
        self.addCleanup(self.forwarder.stop)
        [self.local] = self.forwarder.listening()

    def served(self, count: int) -> list[str]:
        """
        Open C{count} tunnels one after the other; which echo server
        answered each (each also echoes a line back).
        """
        labels = []
        for number in range(count):
            with socket.create_connection(("127.0.0.1", self.local), timeout=30) as sock:
                stream = sock.makefile("rb")
                label = stream.readline().decode().strip()
                line = f"tunnel {number}\n".encode()
                sock.sendall(line)
                self.assertEqual(stream.readline(), line)
                labels.append(label)
        return labels

    def test_balancedThenFailover(self) -> None:
        """
        Round-robin spreads tunnels to the name over both servers; one
        killed is marked down by its health check (event and diagnose),
        after which every new tunnel goes to the other, and the traffic log
        names the member.
        """
        self.assertEqual(Counter(self.served(4)), Counter({"A": 2, "B": 2}))
        self.servers["A"].stop()
        waitFor(lambda: self.gateway.lines("9900069903"), what="the down event")
        [down] = self.gateway.lines("9900069903")
        self.assertEqual((down["gatewayid"], down["realserverid"]), ("1", "1"))
        listing = self.gateway.admin("diagnose", "realserver", "list")
        self.assertEqual(listing.returncode, 0, listing.stderr)
        text = listing.stdout.decode()
        self.assertIn("service=tcp-forwarding ldb-method=round-robin", text)
        self.assertRegex(text, rf"realserver 1: domain=echo\.pool\.test 127\.0\.0\.1:{self.port} .*state=down serving=no")
        self.assertRegex(text, rf"realserver 2: domain=echo\.pool\.test 127\.0\.0\.2:{self.port} .*state=up serving=yes")
        self.assertEqual(self.served(4), ["B", "B", "B", "B"])

        def tunnels() -> list[dict[str, str]]:
            return [
                line
                for line in self.gateway.lines("0005000024")
                if line.get("service") == f"tcp/{self.port}"
            ]

        waitFor(lambda: len(tunnels()) >= 8, what="eight tunnel lines")
        self.assertEqual(
            [(line["realserverid"], line["dstip"]) for line in tunnels()[-4:]],
            [("2", "127.0.0.2")] * 4,
        )
