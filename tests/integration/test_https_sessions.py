"""
Live sessions: a device revoked while its keep-alive connection is open
loses the connection within a second, with the real daemon and the real
admin command.
"""

from __future__ import annotations

import ssl
import time

from twisted.trial.unittest import TestCase

from tests.integration.httpsfixture import Gateway, readResponse

MIB = 1 << 20


def _closedWithin(sock: ssl.SSLSocket, seconds: float) -> float | None:
    """
    How long until the peer closes C{sock} (reading and dropping whatever
    arrives), or C{None} if it stays open for C{seconds}.
    """
    start = time.monotonic()
    sock.settimeout(0.05)
    while time.monotonic() - start < seconds:
        try:
            if not sock.recv(65536):
                return time.monotonic() - start
        except TimeoutError:
            continue
        except (ssl.SSLError, ConnectionError, OSError):
            return time.monotonic() - start
    return None


class LiveSessionTests(TestCase):
    """
    The session tracker ends connections of devices that are no longer
    allowed.
    """

    def setUp(self) -> None:
        self.gateway = Gateway(self.mktemp())
        self.gateway.start()
        self.addCleanup(self.gateway.stop)
        self.device = self.gateway.issueDevice()

    def test_revokedKeepAlive(self) -> None:
        """
        A keep-alive connection that served the device is closed within a
        second of C{ztnagw endpoint revoke}; the device's next request gets
        063; the end is logged with its reason.
        """
        g = self.gateway
        sock = g.tlsClient("MAIN", self.device)
        self.addCleanup(sock.close)
        sock.sendall(b"GET /headers HTTP/1.1\r\nHost: gw\r\n\r\n")
        self.assertEqual(readResponse(sock)[0], 200)
        other = g.tlsClient("MAIN", g.issueDevice())
        self.addCleanup(other.close)
        other.sendall(b"GET /headers HTTP/1.1\r\nHost: gw\r\n\r\n")
        self.assertEqual(readResponse(other)[0], 200)

        result = g.admin("endpoint", "revoke", self.device.uid)
        self.assertEqual(result.returncode, 0, result.stderr)
        closed = _closedWithin(sock, 2.0)
        self.assertIsNotNone(closed)
        self.assertLess(closed, 1.0)

        # The other device's connection is not disturbed.
        other.sendall(b"GET /headers HTTP/1.1\r\nHost: gw\r\n\r\n")
        self.assertEqual(readResponse(other)[0], 200)

        status, fields, _, _ = g.curl("MAIN", "/headers", self.device)
        self.assertEqual((status, fields["x-ztna-error"]), (403, ["063"]))
        [ended] = [line for line in g.trafficLines() if line["logid"] == "9900069901"]
        self.assertEqual((ended["action"], ended["ztnaerror"]), ("close", "063"))
        self.assertEqual(ended["clientdeviceid"], self.device.uid)

    def test_quarantinedDownload(self) -> None:
        """
        A download in progress is cut off within a second when its device
        is quarantined; the client sees the truncation.
        """
        g = self.gateway
        sock = g.tlsClient("MAIN", self.device)
        self.addCleanup(sock.close)
        sock.sendall(b"GET /bytes?n=%d HTTP/1.1\r\nHost: gw\r\n\r\n" % (256 * MIB))
        received = 0
        while received < MIB:
            received += len(sock.recv(65536))
        result = g.admin("endpoint", "quarantine", self.device.uid)
        self.assertEqual(result.returncode, 0, result.stderr)
        closed = _closedWithin(sock, 2.0)
        self.assertIsNotNone(closed)
        self.assertLess(closed, 1.0)
        [line] = [l for l in g.trafficLines() if l.get("url", "").startswith("/bytes")]
        self.assertEqual((line["action"], line["ztnaerror"]), ("close", "064"))
