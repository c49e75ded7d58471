"""
How the HTTPS access proxy relays: header rules, repeated fields, chunked
bodies both ways, HEAD, keep-alive to real servers, a real server that
resets mid-body, log rotation; with the real daemon, a real backend and
curl.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess

from twisted.trial.unittest import TestCase

from tests.integration.httpsfixture import Gateway


class RelayTests(TestCase):
    """
    Relaying allowed requests.
    """

    def setUp(self) -> None:
        self.gateway = Gateway(self.mktemp())
        self.gateway.start()
        self.addCleanup(self.gateway.stop)
        self.device = self.gateway.issueDevice()

    def test_headers(self) -> None:
        """
        The real server gets the client's repeated fields in order, no
        hop-by-hop field (nor one named in Connection), and the gateway's
        own X-Forwarded-* instead of the client's spoofed ones; the client
        gets repeated response fields.
        """
        g = self.gateway
        status, _, body, _ = g.curl(
            "MAIN",
            "/headers",
            self.device,
            arguments=[
                "-H", "X-Forwarded-For: 6.6.6.6",
                "-H", "X-Real-IP: 6.6.6.6",
                "-H", "Forwarded: for=6.6.6.6",
                "-H", "Cookie: a=1",
                "-H", "X-Note: one",
                "-H", "X-Note: two",
                "-H", "Connection: X-Secret",
                "-H", "X-Secret: s",
            ],
        )
        self.assertEqual(status, 200)
        received = json.loads(body)["headers"]
        names = [name.lower() for name, _ in received]
        self.assertEqual([v for n, v in received if n.lower() == "x-forwarded-for"], ["127.0.0.1"])
        self.assertEqual([v for n, v in received if n.lower() == "x-forwarded-proto"], ["https"])
        self.assertEqual([v for n, v in received if n.lower() == "x-note"], ["one", "two"])
        for absent in ("x-real-ip", "forwarded", "connection", "x-secret"):
            self.assertNotIn(absent, names)
        self.assertEqual(dict((n.lower(), v) for n, v in received)["host"], f"127.0.0.1:{g.ports['BACKEND']}")
        status, fields, _, _ = g.curl("MAIN", "/cookies", self.device)
        self.assertEqual(fields["set-cookie"], ["a=1", "b=2"])

    def test_chunkedBothWays(self) -> None:
        """
        A chunked upload arrives whole; a chunked response stays chunked.
        """
        g = self.gateway
        data = os.urandom(300_000)
        status, _, body, _ = g.curl("MAIN", "/sink", self.device, arguments=["-T", "-"], stdin=data)
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body), {"length": len(data), "sha256": hashlib.sha256(data).hexdigest()})
        status, fields, body, _ = g.curl("MAIN", "/chunked?n=200000", self.device)
        self.assertEqual(fields["transfer-encoding"], ["chunked"])
        self.assertEqual(len(body), 200000)

    def test_head(self) -> None:
        """
        HEAD gets the length the real server announces, and no body.
        """
        status, fields, body, _ = self.gateway.curl("MAIN", "/bytes?n=12345", self.device, arguments=["-I"])
        self.assertEqual((status, fields["content-length"], body), (200, ["12345"], b""))

    def test_keepAlive(self) -> None:
        """
        Requests on one client connection reuse one real-server connection,
        and a real server's Connection: close does not close the client's.
        """
        g = self.gateway
        before = g.backendStats()["connections"]
        port = g.ports["MAIN"]
        url = f"https://127.0.0.1:{port}"
        result = subprocess.run(
            ["curl", "-sS", "-v", "--cacert", g.ca, "--cert", self.device.certificate,
             "--key", self.device.key, f"{url}/headers", f"{url}/headers", f"{url}/close", f"{url}/headers"],
            capture_output=True,
            timeout=60,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stderr.count(b"Connected to 127.0.0.1"), 1, result.stderr)
        # Two connections to the real server: the first until its
        # Connection: close, then a new one; plus the stats requests.
        self.assertEqual(g.backendStats()["connections"] - before, 3)

    def test_resetMidBody(self) -> None:
        """
        A real server that resets in the middle of a body makes the client
        see a truncated response (curl fails), not a clean end.
        """
        status, _, body, code = self.gateway.curl("MAIN", "/reset?n=100000", self.device)
        self.assertEqual(status, 200)
        self.assertNotEqual(code, 0)
        self.assertLess(len(body), 200000)
        [line] = [l for l in self.gateway.trafficLines() if l.get("url") == "/reset?n=100000"]
        self.assertEqual(line["action"], "server-rst")

    def test_logRotation(self) -> None:
        """
        After logrotate moved the log file away, SIGHUP makes the daemon
        write to a new one, created private.
        """
        g = self.gateway
        g.curl("MAIN", "/headers", self.device)
        os.rename(g.trafficLog, g.trafficLog + ".1")
        assert g.daemon.process is not None
        g.daemon.process.send_signal(signal.SIGHUP)
        g.waitForLog("Reopening log files")
        g.curl("MAIN", "/headers", self.device)
        self.assertEqual(os.stat(g.trafficLog).st_mode & 0o777, 0o600)
        self.assertEqual(len(g.trafficLines()), 1)

    def test_httpsRealServer(self) -> None:
        """
        A real server over HTTPS is verified against the configured CA and
        its address; one whose certificate does not name what the gateway
        expects (here its http-host) is refused with 502.
        """
        g = self.gateway
        status, _, body, _ = g.curl("MAIN", "/headers", self.device, host="secure.test")
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["target"], "/headers")
        status, fields, _, _ = g.curl("MAIN", "/headers", self.device, host="forged.test")
        self.assertEqual(status, 502)
        [line] = [l for l in g.trafficLines() if l.get("hostname", "").startswith("forged.test")]
        self.assertEqual(line["action"], "ip-conn")
        self.assertIn("elsewhere.test", line["ztnadetail"])
