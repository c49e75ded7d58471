"""
The TCP forwarding access proxy under load, end to end (real daemon, real
forwarder, 127.0.0.1): 1 GiB each way through one tunnel with identical
SHA-256 and bounded memory in both processes, and 1,000 tunnels held open
at once.
"""

from __future__ import annotations

import hashlib
import socket

from tests.integration.test_tunnel_harness import (
    PeakMemory,
    TunnelCase,
    connect,
    readAll,
    stream,
    streamDigest,
)

GiB = 1 << 30
MiB = 1 << 20

#: The most either process may grow while 1 GiB goes through.
MEMORY_BOUND = 64 * MiB


class BulkTests(TunnelCase):
    """
    Large transfers through one tunnel.
    """

    def test_oneGiBEachWay(self) -> None:
        """
        1 GiB uploaded and 1 GiB downloaded through a C{tls=1} tunnel arrive
        with the SHA-256 they left with; neither the gateway nor the
        forwarder grows by more than 64 MiB meanwhile (backpressure all the
        way: nothing is buffered whole).
        """
        forwarder = self.forwarder(
            "-L", f"0:127.0.0.1:{self.port('answer')}",
            "-L", f"0:127.0.0.1:{self.port('source')}",
        )
        upload, download = forwarder.listening(2)
        with connect(upload) as sock:
            # A first tunnel, so that both processes are warm.
            sock.sendall(b"warm-up")
            sock.shutdown(socket.SHUT_WR)
            readAll(sock)
        assert self.daemon.process is not None
        memory = PeakMemory([self.daemon.process.pid, forwarder.pid])
        baseline = dict(memory.peaks)
        try:
            with connect(upload, timeout=120) as sock:
                for piece in stream(7, GiB):
                    sock.sendall(piece)
                sock.shutdown(socket.SHUT_WR)
                answer = readAll(sock)
            self.assertEqual(answer, b"%d %s\n" % (GiB, streamDigest(7, GiB).encode()))
            with connect(download, timeout=120) as sock:
                sock.sendall(b"%d 8\n" % GiB)
                digest = hashlib.sha256()
                count = 0
                while True:
                    chunk = sock.recv(1 << 18)
                    if not chunk:
                        break
                    count += len(chunk)
                    digest.update(chunk)
            self.assertEqual(count, GiB)
            self.assertEqual(digest.hexdigest(), streamDigest(8, GiB))
        finally:
            peaks = memory.stop()
        for pid, peak in peaks.items():
            self.assertLess(
                peak - baseline[pid],
                MEMORY_BOUND,
                f"process {pid} grew from {baseline[pid] >> 20} MiB to {peak >> 20} MiB",
            )


class ConcurrencyTests(TunnelCase):
    """
    Many tunnels at once.
    """

    def test_thousandTunnels(self) -> None:
        """
        1,000 tunnels opened together and held open all carry data; then
        they all close, and the forwarder logs 1,000 ends.
        """
        forwarder = self.forwarder("-L", f"0:127.0.0.1:{self.port('echo')}")
        (port,) = forwarder.listening()
        sockets: list[socket.socket] = []
        try:
            for batch in range(20):
                opened = [connect(port, timeout=60) for _ in range(50)]
                for index, sock in enumerate(opened):
                    sock.sendall(b"%04d" % (batch * 50 + index))
                for index, sock in enumerate(opened):
                    self.assertEqual(_read(sock, 4), b"%04d" % (batch * 50 + index))
                sockets += opened
            self.assertEqual(len(sockets), 1000)
            # Every one of them is still open and relaying.
            for index, sock in enumerate(sockets):
                sock.sendall(b"again %04d" % index)
            for index, sock in enumerate(sockets):
                self.assertEqual(_read(sock, 10), b"again %04d" % index)
        finally:
            for sock in sockets:
                sock.close()
        forwarder.waitFor(r"closed after", count=1000, timeout=60)


def _read(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data
