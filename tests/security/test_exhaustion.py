"""
Resource exhaustion: connection floods, slowloris, slow readers, and one
device holding many connections.  The gateway must bound what one source
or one device can hold (C{max-connections-per-source} 64 and
C{max-connections-per-device} 16 on the attacked access proxy), end what
its head and idle timeouts say (C{http-header-timeout} 5 s,
C{http-keepalive-timeout} 10 s, the slow virtual host's C{idle-timeout} 3
s), and keep serving a legitimate client, whose latency is measured
during each attack and written to the results table.

The attackers run in a process of their own (L{tests.security.attackers});
the bystander connects from another loopback address (127.0.0.3), as a
client elsewhere on the network would.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from typing import Any

from tests.security.cases import attack, measure
from tests.security.fixture import (
    HEADER_TIMEOUT,
    KEEPALIVE_TIMEOUT,
    PER_DEVICE_LIMIT,
    PER_SOURCE_LIMIT,
    AttackCase,
    parseResponses,
)
from tests.support.daemon import environment


class ExhaustionTests(AttackCase):
    """
    Attacks on the gateway's connections, memory and time.
    """

    timeout = 180

    def underAttack(self, mode: str, options: dict[str, Any], limit: float = 90) -> tuple[dict[str, Any], list[float]]:
        """
        Run an attacker; meanwhile make bystander requests one after the
        other (each must succeed).

        @return: the attacker's results and the bystander's latencies in
            seconds.
        """
        g = self.gateway
        options = {"port": g.ports["WEB"], "ca": g.caPath, **options}
        attacker = subprocess.Popen(
            [sys.executable, "-m", "tests.security.attackers", mode, json.dumps(options)],
            stdout=subprocess.PIPE,
            env=environment(),
        )
        self.addCleanup(lambda: attacker.poll() is None and attacker.kill())
        latencies = []
        started = time.monotonic()
        # Let the attack build up before measuring.
        time.sleep(1.0)
        while attacker.poll() is None:
            self.assertLess(time.monotonic() - started, limit, "the attacker never finished")
            latencies.append(g.checkServing(self))
            time.sleep(0.2)
        output, _ = attacker.communicate()
        self.assertEqual(attacker.returncode, 0)
        self.assertTrue(latencies, "no bystander request during the attack")
        return json.loads(output), latencies

    def recordLatency(self, latencies: list[float]) -> None:
        """
        Write the bystander's latency (median and worst) to the results.
        """
        measure(
            self.id(),
            "bystander latency",
            f"median {statistics.median(latencies) * 1000:.0f} ms, "
            f"max {max(latencies) * 1000:.0f} ms over {len(latencies)} requests",
        )

    @attack(
        "exhaustion",
        "connection flood from one source: 500 TCP connections held open, sending nothing",
        f"{PER_SOURCE_LIMIT} kept (max-connections-per-source), the rest closed at accept; the kept ones closed by "
        f"the {KEEPALIVE_TIMEOUT} s idle timeout; others served",
    )
    def test_flood(self) -> None:
        """
        One source opens 500 connections and holds them: the gateway keeps
        exactly its per-source limit and closes the rest at once, closes
        the kept ones when they stay silent past the keep-alive timeout,
        serves a client from elsewhere throughout, and serves the flooding
        address again once its connections are gone.
        """
        g = self.gateway
        baseline = g.checkServing(self)
        results, latencies = self.underAttack(
            "flood", {"count": 500, "source": "127.0.0.1", "hold": KEEPALIVE_TIMEOUT + 3}
        )
        # A few connection attempts may fail outright while the accept
        # queue is full of refused ones; every one that connected counts.
        self.assertGreaterEqual(results["connected"], 450, results)
        self.assertEqual(results["held"], PER_SOURCE_LIMIT, results)
        self.assertEqual(results["refused"], results["connected"] - PER_SOURCE_LIMIT, results)
        self.assertEqual(results["closedLater"], PER_SOURCE_LIMIT, results)
        self.recordLatency(latencies)
        measure(self.id(), "baseline latency", f"{baseline * 1000:.0f} ms")
        measure(self.id(), "connections refused at accept", results["refused"])
        self.assertNothingReached()
        g.checkServing(self, source="127.0.0.1")

    @attack(
        "exhaustion",
        "slowloris: 500 TLS connections from 10 addresses trickling request heads for 20 s",
        f"each answered 408 and closed {HEADER_TIMEOUT} s after its head began (http-header-timeout); others served",
    )
    def test_slowloris(self) -> None:
        """
        Slow request heads are cut off by the head timeout (408), however
        steadily they trickle; the bystander is served throughout and no
        trickled request reaches the real server.
        """
        g = self.gateway
        sources = [f"127.0.1.{n}" for n in range(1, 11)]
        results, latencies = self.underAttack(
            "slowloris", {"count": 500, "sources": sources, "interval": 1.0, "duration": 20}
        )
        self.assertGreaterEqual(results["opened"], 500, results)
        self.assertGreater(results["timedOut"], 0, results)
        self.assertEqual(results["otherAnswers"], [], results)
        self.assertEqual(results["failedConnects"], 0, results)
        self.recordLatency(latencies)
        measure(self.id(), "slow heads cut off with 408", results["timedOut"])
        measure(self.id(), "most slow connections open at once", results["maxConcurrent"])
        stats = g.backendStats()["http"]
        self.assertEqual([r for r in stats["requests"] if "/slow" in r], [])
        g.checkServing(self)

    @attack(
        "exhaustion",
        "slow readers: one device asks for 64 MiB 24 times and reads nothing",
        f"{PER_DEVICE_LIMIT} served (per-device limit; 429 for the rest), each cut by the 3 s idle-timeout; "
        "memory stays bounded; others served",
    )
    def test_slowRead(self) -> None:
        """
        A device that asks for large responses and never reads them holds
        at most its per-device limit of connections (the others get 429),
        the stalled ones are ended by the api-gateway's idle timeout, the
        real server is paused rather than buffered (the daemon's memory
        barely grows), and the bystander is served throughout.
        """
        g = self.gateway
        reader = g.issueDevice()
        before = g.rss()
        results, latencies = self.underAttack(
            "slowread",
            {
                "count": 24,
                "sources": ["127.0.0.1"],
                "bytes": 64 << 20,
                "host": "slow.test",
                "duration": 12,
                "certificate": reader.certificate,
                "key": reader.key,
            },
        )
        growth = g.rss() - before
        self.assertEqual(results["statuses"], {"200": PER_DEVICE_LIMIT, "429": 24 - PER_DEVICE_LIMIT}, results)
        self.assertEqual(results["closedByGateway"], 24, results)
        self.assertLess(growth, 64 << 20)
        self.recordLatency(latencies)
        measure(self.id(), "daemon RSS growth", f"{growth / (1 << 20):.1f} MiB")
        g.checkServing(self)

    @attack(
        "exhaustion",
        "one device holds many keep-alive connections from many addresses (plus forged ones naming its UID)",
        f"{PER_DEVICE_LIMIT} allowed (max-connections-per-device), the next 429 and closed; forged certificates "
        "use none of its allowance",
    )
    def test_perDevice(self) -> None:
        """
        A device may hold at most its limit of connections, from any
        address; the next one is answered 429 and closed, and reaches no
        real server.  Forged certificates naming the device's UID are
        refused (001) without using its allowance; once the device closes
        a connection, it may open another.
        """
        g = self.gateway
        device = g.issueDevice()
        from tests.support import pki

        forgedCA = pki.makeCA("forger")
        forged = g.writeDevice(device.uid, pki.makeDevice(forgedCA, device.uid))
        held = []
        self.addCleanup(lambda: [s.close() for s in held])
        for n in range(20):
            sock = g.connect(device=forged, source=f"127.0.2.{n + 1}")
            held.append(sock)
            sock.sendall(b"GET /forged HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            self.assertEqual(self.readResponse(sock).status, 403)
        for n in range(PER_DEVICE_LIMIT):
            sock = g.connect(device=device, source=f"127.0.3.{n + 1}")
            held.append(sock)
            sock.sendall(b"GET /held HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            self.assertEqual(self.readResponse(sock).status, 200)
        g.resetBackends()
        exchange = g.exchange(
            b"GET /one-too-many HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n\r\n",
            device=device,
            source="127.0.4.1",
        )
        self.assertEqual(exchange.response.status, 429)
        self.assertTrue(exchange.closed)
        self.assertNothingReached()
        held.pop(-1).close()
        deadline = time.monotonic() + 5
        while True:
            response = g.request("/again", device=device, source="127.0.4.2")
            if response.status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.assertEqual(response.status, 200)
        g.checkServing(self)

    def readResponse(self, sock: Any) -> Any:
        """
        Read one response from a blocking socket.
        """
        data = b""
        while True:
            responses, _ = parseResponses(data)
            if responses:
                return responses[0]
            piece = sock.recv(65536)
            if not piece:
                raise AssertionError(f"closed before a response: {data!r}")
            data += piece
