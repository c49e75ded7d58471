"""
WebSockets through the HTTPS access proxy with the real daemon, a real
WebSocket client and server (the C{websockets} library: a maintained,
independent implementation with a blocking API that suits tests driving a
separate daemon process): the upgrade is relayed after the access
decision, messages flow both ways, the socket outlives the timeouts meant
for plain requests while idle, and a revoked device loses it within a
second.
"""

from __future__ import annotations

import threading
import time

from twisted.trial.unittest import TestCase
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect
from websockets.sync.server import serve

from tests.integration.poolsgateway import PoolGateway
from tests.support.daemon import freePort

GATEWAYS = """
            edit 1
                set service http
                set response-timeout 1
                set idle-timeout 30
                config realservers
                    edit 1
                        set ip 127.0.0.1
                        set port {WS}
                    next
                end
            next
"""


class WebSocketTests(TestCase):
    """
    A WebSocket echo server behind the gateway.
    """

    def setUp(self) -> None:
        port = freePort()

        def echo(websocket) -> None:
            try:
                for message in websocket:
                    websocket.send(message)
            except ConnectionClosed:
                pass

        self.server = serve(echo, "127.0.0.1", port)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.addCleanup(self.server.shutdown)
        self.gateway = PoolGateway(self.mktemp(), GATEWAYS, WS=port)
        self.gateway.start()
        self.addCleanup(self.gateway.stop)
        self.device = self.gateway.issueDevice()

    def _connect(self, device):
        return connect(
            f"wss://127.0.0.1:{self.gateway.vipPort}/chat",
            ssl=self.gateway.context(device),
            open_timeout=10,
            ping_interval=None,
        )

    def test_idleThenRevoked(self) -> None:
        """
        Echo works, survives 3 s of silence (longer than the access
        proxy's http-keepalive-timeout of 2 s and the api-gateway's
        response-timeout of 1 s), and ends within a second of the device's
        revocation; one traffic line records the session.
        """
        with self._connect(self.device) as websocket:
            websocket.send("hello")
            self.assertEqual(websocket.recv(timeout=5), "hello")
            websocket.send(b"\x00" * 100000)
            self.assertEqual(websocket.recv(timeout=5), b"\x00" * 100000)
            time.sleep(3)
            websocket.send("still here")
            self.assertEqual(websocket.recv(timeout=5), "still here")
            result = self.gateway.admin("endpoint", "revoke", self.device.uid)
            self.assertEqual(result.returncode, 0, result.stderr)
            revoked = time.monotonic()
            with self.assertRaises((ConnectionClosed, TimeoutError, OSError)):
                websocket.recv(timeout=5)
            self.assertLess(time.monotonic() - revoked, 1.5)
        time.sleep(0.3)
        lines = [line for line in self.gateway.lines("0005000024") if line.get("url") == "/chat"]
        self.assertEqual([line["action"] for line in lines], ["close"])

    def test_noCertificate(self) -> None:
        """
        A client without a device certificate never reaches the WebSocket
        server: the access decision refuses the upgrade (002).
        """
        from websockets.exceptions import InvalidStatus

        with self.assertRaises(InvalidStatus) as caught:
            self._connect(None)
        self.assertEqual(caught.exception.response.headers["X-ZTNA-Error"], "002")
