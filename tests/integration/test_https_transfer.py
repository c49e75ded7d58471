"""
Streaming through the HTTPS access proxy: 1 GiB each way with the
gateway's memory bounded, and a slow client that does not make the gateway
buffer; with the real daemon, curl and a real backend.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import threading
import time

from twisted.trial.unittest import TestCase

from tests.integration.httpsbackend import PATTERN
from tests.integration.httpsfixture import Gateway, sampleRss

GIB = 1 << 30
MIB = 1 << 20

#: What the gateway's resident memory may grow by while it relays.
RSS_BOUND = 64 * MIB


class TransferTests(TestCase):
    """
    Bodies stream with backpressure both ways.
    """

    def setUp(self) -> None:
        self.gateway = Gateway(self.mktemp())
        self.gateway.start()
        self.addCleanup(self.gateway.stop)
        self.device = self.gateway.issueDevice()
        # One request first, so that the baseline includes what serving
        # any request allocates.
        self.assertEqual(self.gateway.curl("MAIN", "/bytes?n=100000", self.device)[0], 200)

    def measured(self, command: str) -> tuple[subprocess.CompletedProcess, int]:
        """
        Run a shell pipeline while sampling the daemon's RSS; return its
        result and how much the RSS grew at most.
        """
        baseline = self.gateway.rss()
        stop = threading.Event()
        peaks = [baseline]
        sampler = sampleRss(self.gateway, stop, peaks)
        try:
            result = subprocess.run(["sh", "-c", command], capture_output=True, timeout=300)
        finally:
            stop.set()
            sampler.join()
        return result, peaks[0] - baseline

    def _curl(self, path: str) -> str:
        g = self.gateway
        return (
            f"curl -sS --fail --cacert {g.ca} --cert {self.device.certificate} "
            f"--key {self.device.key} https://127.0.0.1:{g.ports['MAIN']}{path}"
        )

    def test_upload(self) -> None:
        """
        1 GiB uploaded (chunked, from a pipe) arrives whole, and the
        gateway's RSS grows by less than 64 MiB meanwhile.
        """
        result, growth = self.measured(f"head -c {GIB} /dev/zero | {self._curl('/sink')} -T -")
        self.assertEqual(result.returncode, 0, result.stderr)
        expected = hashlib.sha256()
        zeros = bytes(MIB)
        for _ in range(GIB // MIB):
            expected.update(zeros)
        self.assertEqual(json.loads(result.stdout), {"length": GIB, "sha256": expected.hexdigest()})
        self.assertLess(growth, RSS_BOUND)

    def test_download(self) -> None:
        """
        1 GiB downloaded arrives whole and correct, and the gateway's RSS
        grows by less than 64 MiB meanwhile.
        """
        result, growth = self.measured(f"{self._curl(f'/bytes?n={GIB}')} | sha256sum")
        self.assertEqual(result.returncode, 0, result.stderr)
        expected = hashlib.sha256()
        for _ in range(GIB // len(PATTERN)):
            expected.update(PATTERN)
        self.assertEqual(result.stdout.split()[0].decode(), expected.hexdigest())
        self.assertLess(growth, RSS_BOUND)

    def test_slowClient(self) -> None:
        """
        A client that stops reading pauses the real server: while it
        sleeps, the backend has written only what the socket buffers on
        the way hold, and the gateway's memory does not grow.
        """
        g = self.gateway
        baseline = g.rss()
        sock = g.tlsClient("MAIN", self.device)
        self.addCleanup(sock.close)
        sock.sendall(b"GET /bytes?n=%d HTTP/1.1\r\nHost: gw\r\n\r\n" % (512 * MIB))
        received = 0
        while received < MIB:
            received += len(sock.recv(65536))
        time.sleep(2)
        sent = g.backendStats()["sent"]
        self.assertLess(sent, 64 * MIB)
        self.assertLess(g.rss() - baseline, RSS_BOUND)
        # Reading again resumes the flow.
        while received < 16 * MIB:
            received += len(sock.recv(65536))
        self.assertGreater(g.backendStats()["sent"], sent)
