"""
Tests for L{benchmarks.tools}: the percentile, the tunnel request, and the
echo server, setup-latency client and connection holder run for real
against each other on loopback for a second.
"""

from __future__ import annotations

import json
import os
import socketserver
import ssl
import subprocess
import sys
import threading

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from benchmarks.pki import makeBenchPki
from benchmarks.processes import ProcessGroup, freePort
from benchmarks.tools import measureSetup, percentile, tfacpRequest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class PercentileTests(SynchronousTestCase):
    """
    Tests for L{percentile}.
    """

    @given(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1), st.floats(0, 1))
    def test_isASample(self, samples, fraction) -> None:
        """
        The percentile is one of the samples, and at least as many samples
        lie at or below it as the fraction asks.
        """
        value = percentile(samples, fraction)
        self.assertIn(value, samples)
        self.assertGreaterEqual(sum(1 for s in samples if s <= value), fraction * len(samples) - 1e-9)

    def test_known(self) -> None:
        """
        Nearest rank: p50 of 1..100 is 50, p99 is 99, p100 is 100.
        """
        samples = list(range(100, 0, -1))
        self.assertEqual(percentile(samples, 0.5), 50)
        self.assertEqual(percentile(samples, 0.99), 99)
        self.assertEqual(percentile(samples, 1.0), 100)

    def test_refused(self) -> None:
        """
        No samples, or a fraction outside [0, 1], is an error.
        """
        self.assertRaises(ValueError, percentile, [], 0.5)
        self.assertRaises(ValueError, percentile, [1.0], 1.5)


class RequestTests(SynchronousTestCase):
    """
    Tests for L{tfacpRequest}.
    """

    def test_request(self) -> None:
        """
        The request is FortiClient's: GET /tcp with address, port and tls,
        and the tcp-forwarding upgrade.
        """
        request = tfacpRequest("127.0.0.1", 443, "127.0.0.1", 22, tls=False)
        self.assertTrue(request.startswith(b"GET /tcp?address=127.0.0.1&port=22&tls=0 HTTP/1.1\r\n"))
        self.assertIn(b"\r\nUpgrade: tcp-forwarding/1.0\r\nConnection: Upgrade\r\n", request)
        self.assertTrue(request.endswith(b"\r\n\r\n"))


class LiveTests(SynchronousTestCase):
    """
    The tools against each other, for real, on loopback.
    """

    def setUp(self) -> None:
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        self.directory = directory
        self.group = ProcessGroup(directory)
        self.addCleanup(self.group.stopAll)
        self.echoPort = freePort()
        self.group.startServer(
            "echo",
            [sys.executable, "-m", "benchmarks.tools", "echo", "--port", str(self.echoPort)],
            self.echoPort,
            cwd=ROOT,
        )

    def test_setupLatency(self) -> None:
        """
        Twenty setups through the echo server all succeed, with p50 ≤ p99.
        """
        result = measureSetup(self.echoPort, 20, timeout=5)
        self.assertEqual((result["count"], result["failures"]), (20, 0))
        self.assertLessEqual(result["p50Ms"], result["p99Ms"])

    def test_setupFailures(self) -> None:
        """
        Connections that fail are counted, not timed.
        """
        result = measureSetup(freePort(), 3, timeout=1)
        self.assertEqual((result["count"], result["failures"]), (0, 3))

    def test_holdTls(self) -> None:
        """
        The holder opens and keeps mTLS connections (each checked by an
        echoed byte) to a server that requires its certificate, and counts
        those it cannot make.
        """
        pki = makeBenchPki(os.path.join(self.directory, "pki"))
        device = pki.devices[0]
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pki.server.certificate, pki.server.key)
        context.load_verify_locations(pki.ca.certificate)
        context.verify_mode = ssl.CERT_REQUIRED
        subjects: list[str] = []

        class Echo(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                try:
                    with context.wrap_socket(self.request, server_side=True) as tls:
                        subjects.append(dict(x[0] for x in tls.getpeercert()["subject"])["commonName"])
                        while data := tls.recv(1024):
                            tls.sendall(data)
                except (OSError, ssl.SSLError):
                    pass

        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Echo)
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        self.addCleanup(thread.join, 10)
        self.addCleanup(server.server_close)
        self.addCleanup(server.shutdown)
        holder = subprocess.run(
            [sys.executable, "-m", "benchmarks.tools", "hold", "--mode", "tls",
             "--port", str(server.server_address[1]),
             "--cert", device.files.certificate, "--key", device.files.key, "--ca", pki.ca.certificate],
            input="open 5\nopen 8\nquit\n",
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
        answers = [json.loads(line) for line in holder.stdout.splitlines()]
        self.assertEqual([(a["held"], a["failures"]) for a in answers], [(5, 0), (8, 0)])
        self.assertEqual(subjects, [device.uid] * 8)

    def test_holdCountsFailures(self) -> None:
        """
        Connections that cannot be made (here: no TLS at the other end) are
        counted as failures, and the holder goes on answering.
        """
        pki = makeBenchPki(os.path.join(self.directory, "pki"))
        device = pki.devices[0]
        holder = subprocess.run(
            [sys.executable, "-m", "benchmarks.tools", "hold", "--mode", "tls", "--port", str(self.echoPort),
             "--cert", device.files.certificate, "--key", device.files.key, "--ca", pki.ca.certificate],
            input="open 3\nbogus\nquit\n",
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
        answers = [json.loads(line) for line in holder.stdout.splitlines()]
        self.assertEqual((answers[0]["held"], answers[0]["failures"]), (0, 3))
        self.assertIn("unknown command", answers[1]["error"])
