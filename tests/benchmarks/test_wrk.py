"""
Tests for L{benchmarks.wrk}: the report parser, the command line, the
client-certificate shim, and wrk itself against a local server for a
second.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from benchmarks.wrk import MARKER, REPORT_SCRIPT, LoadGeneratorError, buildShim, parseWrkOutput, wrkCommand

_counts = st.integers(min_value=0, max_value=10**12)


def _line(requests: int, durationUs: int, size: int, errors: list[int], latency: list[int]) -> str:
    return MARKER + json.dumps(
        {
            "requests": requests,
            "durationUs": durationUs,
            "bytes": size,
            "errors": dict(zip(("connect", "read", "write", "status", "timeout"), errors)),
            "latencyUs": dict(zip(("p50", "p90", "p99", "max", "mean"), latency)),
        }
    )


class ParseTests(SynchronousTestCase):
    """
    Tests for L{parseWrkOutput}.
    """

    @given(
        _counts,
        st.integers(min_value=1, max_value=10**9),
        _counts,
        st.lists(_counts, min_size=5, max_size=5),
        st.lists(_counts, min_size=5, max_size=5),
        st.text(alphabet=st.characters(blacklist_characters="\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")),
    )
    def test_roundTrip(self, requests, durationUs, size, errors, latency, noise) -> None:
        """
        Whatever wrk prints around it, the report line's figures are read
        exactly.
        """
        output = f"Running 5s test\n{noise}\n" + _line(requests, durationUs, size, errors, latency) + "\nRequests/sec: 1\n"
        result = parseWrkOutput(output)
        self.assertEqual(result.requests, requests)
        self.assertEqual(result.seconds, durationUs / 1e6)
        self.assertEqual(result.bytes, size)
        self.assertEqual(result.failures, sum(errors))
        self.assertEqual(result.latencyUs["p99"], latency[2])
        self.assertAlmostEqual(result.requestsPerSecond, requests / (durationUs / 1e6))

    @given(st.text())
    def test_anyTextEitherParsesOrRaises(self, text) -> None:
        """
        Arbitrary output never raises anything but L{LoadGeneratorError}.
        """
        try:
            parseWrkOutput(text)
        except LoadGeneratorError:
            pass

    def test_noReport(self) -> None:
        """
        Output without the report line (wrk failed) is an error that quotes
        the output.
        """
        error = self.assertRaises(LoadGeneratorError, parseWrkOutput, "unable to connect to 127.0.0.1:1\n")
        self.assertIn("unable to connect", str(error))

    def test_missingField(self) -> None:
        """
        A report line without every figure is an error.
        """
        self.assertRaises(LoadGeneratorError, parseWrkOutput, MARKER + '{"requests": 1}')

    def test_negative(self) -> None:
        """
        Negative figures are refused.
        """
        self.assertRaises(LoadGeneratorError, parseWrkOutput, _line(-1, 1, 1, [0] * 5, [0] * 5))


class CommandTests(SynchronousTestCase):
    """
    Tests for L{wrkCommand}.
    """

    def test_shimEnvironment(self) -> None:
        """
        With the shim, the command preloads it and names the certificate
        and key.
        """
        command = wrkCommand("https://127.0.0.1:1/1k", 50, 5, "/x/shim.so", "/x/c.crt", "/x/c.key")
        self.assertEqual(
            command.environment,
            {"LD_PRELOAD": "/x/shim.so", "BENCH_CLIENT_CERT": "/x/c.crt", "BENCH_CLIENT_KEY": "/x/c.key"},
        )
        self.assertEqual(command.argv[-1], "https://127.0.0.1:1/1k")
        self.assertIn("-c50", command.argv)
        self.assertIn("-d5s", command.argv)
        self.assertIn(REPORT_SCRIPT, command.argv)

    def test_headers(self) -> None:
        """
        Extra headers are passed with -H; without the shim nothing is
        preloaded.
        """
        command = wrkCommand("http://127.0.0.1:1/", 2, 1, None, None, None, headers=["Connection: close"])
        self.assertEqual(command.environment, {})
        index = command.argv.index("-H")
        self.assertEqual(command.argv[index + 1], "Connection: close")

    def test_shimNeedsCertificate(self) -> None:
        """
        The shim without certificate or key is refused (the load generator
        must never run without the certificate it is meant to present).
        """
        self.assertRaises(ValueError, wrkCommand, "https://127.0.0.1:1/", 2, 1, "/x/shim.so", None, "/x/k")

    def test_bounds(self) -> None:
        """
        Fewer connections than threads, or less than a second, are refused.
        """
        self.assertRaises(ValueError, wrkCommand, "http://127.0.0.1:1/", 1, 1, None, None, None, threads=2)
        self.assertRaises(ValueError, wrkCommand, "http://127.0.0.1:1/", 1, 0.2, None, None, None)


class _Answer(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        """
        Answer 1 KiB.
        """
        self.send_response(200)
        self.send_header("Content-Length", "1024")
        self.end_headers()
        self.wfile.write(b"x" * 1024)

    def log_message(self, *args: object) -> None:
        """
        Quiet.
        """


class LiveTests(SynchronousTestCase):
    """
    wrk and the shim for real, on loopback, for about a second.
    """

    def setUp(self) -> None:
        if shutil.which("wrk") is None or shutil.which("gcc") is None:
            raise SkipTest("wrk and gcc are needed (python -m benchmarks installs them)")

    def test_wrkAgainstLocalServer(self) -> None:
        """
        One second of wrk against a local server yields requests, without
        errors, read through the report script.
        """
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        self.addCleanup(thread.join, 10)
        self.addCleanup(server.server_close)
        self.addCleanup(server.shutdown)
        command = wrkCommand(f"http://127.0.0.1:{server.server_address[1]}/", 2, 1, None, None, None)
        done = subprocess.run(command.argv, capture_output=True, text=True, timeout=30)
        result = parseWrkOutput(done.stdout)
        self.assertGreater(result.requests, 0)
        self.assertEqual(result.errors["status"], 0)
        self.assertGreater(result.latencyUs["p99"], 0)

    def test_shimFailsClosed(self) -> None:
        """
        The compiled shim aborts a program that creates a TLS connection
        when the certificate variables are missing, instead of letting it
        run without a certificate.
        """
        shim = buildShim(self._dir())
        # A listener that never answers: wrk connects, then makes its TLS
        # connection object, which is where the shim steps in.
        listener = socket.socket()
        self.addCleanup(listener.close)
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        done = subprocess.run(
            ["wrk", "-t1", "-c1", "-d1s", f"https://127.0.0.1:{listener.getsockname()[1]}/"],
            capture_output=True,
            text=True,
            timeout=30,
            env={k: v for k, v in os.environ.items() if not k.startswith("BENCH_")} | {"LD_PRELOAD": shim},
        )
        self.assertNotEqual(done.returncode, 0)
        self.assertIn("BENCH_CLIENT_CERT and BENCH_CLIENT_KEY must be set", done.stderr)

    def _dir(self) -> str:
        path = self.mktemp()
        os.makedirs(path)
        return path
