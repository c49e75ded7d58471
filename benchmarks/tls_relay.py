"""
Bulk throughput through a TLS-terminating loopback relay, with and without
write aggregation in L{ztnagw.tls.transport.TLSProtocol}.

A micro-benchmark beside the side-by-side one: the measurement behind the choice
documented in C{docs/tls.md}.  Three processes: a TLS client, the relay
(TLS in, plain TCP out, producers registered both ways, as the gateway's
tunnel relays) and a plain TCP backend.  Run from the repository root::

    python -m benchmarks.tls_relay [MiB] [runs]

It prints MB/s and the relay's CPU seconds per GiB for uploads (client to
backend) and downloads (backend to client), aggregation off and on.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

CHUNK = 64 * 1024


def _cpuSeconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def backend(mode: str, size: int) -> None:
    """
    Plain TCP: swallow C{size} bytes and close (upload), or send them and
    close (download).
    """
    from twisted.internet import reactor
    from twisted.internet.protocol import Factory, Protocol

    class Sink(Protocol):
        count = 0

        def dataReceived(self, data: bytes) -> None:
            self.count += len(data)
            if self.count >= size:
                self.transport.loseConnection()

    class Source(Protocol):
        def connectionMade(self) -> None:
            self.left = size
            self.transport.registerProducer(self, False)

        def resumeProducing(self) -> None:
            if self.left <= 0:
                self.transport.unregisterProducer()
                self.transport.loseConnection()
                return
            block = BLOCK[: min(CHUNK, self.left)]
            self.left -= len(block)
            self.transport.write(block)

        def stopProducing(self) -> None:
            self.left = 0

    BLOCK = os.urandom(CHUNK)
    factory = Factory.forProtocol(Sink if mode == "upload" else Source)
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    print(port.getHost().port, flush=True)
    reactor.run()


def relay(backendPort: int, aggregate: bool) -> None:
    """
    TLS in (ztnagw's server side), plain TCP out, producers both ways.
    """
    from twisted.internet import reactor
    from twisted.internet.protocol import ClientFactory, Factory, Protocol

    from tests.tls.loopback import GATEWAY, serverCertificate, verifier
    from ztnagw.tls.client import spkiFingerprint
    from ztnagw.tls.server import ServerConnectionCreator
    from ztnagw.tls.transport import TLSFactory

    class Outbound(Protocol):
        def connectionMade(self) -> None:
            inbound = self.factory.inbound
            self.peer = inbound
            inbound.peer = self
            self.transport.registerProducer(inbound.transport, True)
            inbound.transport.registerProducer(self.transport, True)
            inbound.transport.resumeProducing()

        def dataReceived(self, data: bytes) -> None:
            self.peer.transport.write(data)

        def connectionLost(self, reason: object = None) -> None:
            self.peer.transport.unregisterProducer()
            self.peer.transport.loseConnection()

    class Inbound(Protocol):
        peer: Outbound | None = None

        def connectionMade(self) -> None:
            self.transport.pauseProducing()
            outbound = ClientFactory.forProtocol(Outbound)
            outbound.inbound = self  # type: ignore[attr-defined]
            reactor.connectTCP("127.0.0.1", backendPort, outbound)

        def dataReceived(self, data: bytes) -> None:
            assert self.peer is not None
            self.peer.transport.write(data)

        def connectionLost(self, reason: object = None) -> None:
            if self.peer is not None:
                self.peer.transport.unregisterProducer()
                self.peer.transport.loseConnection()

    creator = ServerConnectionCreator(
        serverCertificate(GATEWAY), verifier(clock=reactor), clientCertificate=False
    )
    factory = TLSFactory(
        creator, False, Factory.forProtocol(Inbound), reactor, aggregateWrites=aggregate
    )
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    # Test keys are made per process: the client learns the relay's by pin.
    print(port.getHost().port, spkiFingerprint(GATEWAY.certificate).hex(), flush=True)
    reactor.run()


def client(mode: str, relayPort: int, pin: str, size: int) -> None:
    """
    TLS client: upload C{size} bytes or download them; print the seconds
    from connection to the end.
    """
    from twisted.internet import reactor
    from twisted.internet.protocol import Factory, Protocol

    from ztnagw.tls.client import pinnedClientCreator
    from ztnagw.tls.listener import connectTLS

    block = os.urandom(CHUNK)
    started = time.monotonic()

    class Uploader(Protocol):
        def connectionMade(self) -> None:
            self.left = size
            self.transport.registerProducer(self, False)

        def resumeProducing(self) -> None:
            if self.left <= 0:
                return
            chunk = block[: min(CHUNK, self.left)]
            self.left -= len(chunk)
            self.transport.write(chunk)
            if self.left <= 0:
                self.transport.unregisterProducer()

        def stopProducing(self) -> None:
            self.left = 0

        def connectionLost(self, reason: object = None) -> None:
            print(time.monotonic() - started, flush=True)
            reactor.stop()

    class Downloader(Protocol):
        count = 0

        def dataReceived(self, data: bytes) -> None:
            self.count += len(data)

        def connectionLost(self, reason: object = None) -> None:
            assert self.count == size, (self.count, size)
            print(time.monotonic() - started, flush=True)
            reactor.stop()

    creator = pinnedClientCreator("127.0.0.1", bytes.fromhex(pin))
    protocol = Uploader if mode == "upload" else Downloader
    connectTLS(reactor, "127.0.0.1", relayPort, creator, Factory.forProtocol(protocol))
    reactor.run()


def smallWrites(turns: int = 20000) -> None:
    """
    In memory: the server's CPU per reactor turn and the bytes on the wire
    when a turn writes a few small pieces (an HTTP response: head, body,
    chunk terminator; or ten 64-byte messages), aggregation off and on.
    """
    from twisted.internet.protocol import Factory
    from twisted.internet.task import Clock
    from twisted.test import iosim

    from tests.tls.loopback import GATEWAY, Recorder, serverCertificate, verifier
    from ztnagw.tls.client import pinnedClientCreator, spkiFingerprint
    from ztnagw.tls.server import ServerConnectionCreator
    from ztnagw.tls.transport import TLSFactory

    for pieces in ([200, 1024, 5], [64] * 10):
        for aggregate in (False, True):
            clock = Clock()
            creator = ServerConnectionCreator(
                serverCertificate(GATEWAY),
                verifier(clock=clock),
                clientCertificate=False,
            )
            pinned = pinnedClientCreator(
                "gateway.test", spkiFingerprint(GATEWAY.certificate)
            )
            serverFactory = TLSFactory(
                creator,
                False,
                Factory.forProtocol(Recorder),
                clock,
                aggregateWrites=aggregate,
            )
            clientFactory = TLSFactory(
                pinned, True, Factory.forProtocol(Recorder), clock
            )
            _, server, pump = iosim.connectedServerAndClient(
                lambda: serverFactory.buildProtocol(None),
                lambda: clientFactory.buildProtocol(None),
                clock=clock,
            )
            pump.flush()
            data = [b"x" * n for n in pieces]
            wire = 0
            started = time.process_time()
            for _ in range(turns):
                for piece in data:
                    server.write(piece)
                clock.advance(0)
                wire += len(pump.serverIO.getOutBuffer())
            spent = time.process_time() - started
            print(
                f"{len(pieces):2} writes, {sum(pieces):4} B per turn, aggregation "
                f"{'on ' if aggregate else 'off'}: {spent / turns * 1e6:5.1f} us, "
                f"{wire / turns:.0f} B on the wire",
                flush=True,
            )


def _spawn(*arguments: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "benchmarks.tls_relay", *arguments],
        stdout=subprocess.PIPE,
        text=True,
    )


def measure(mode: str, aggregate: bool, size: int) -> tuple[float, float]:
    """
    One transfer.

    @return: MB/s end to end and relay CPU seconds per GiB.
    """
    back = _spawn("backend", mode, str(size))
    backPort = back.stdout.readline().strip()  # type: ignore[union-attr]
    middle = _spawn("relay", backPort, "1" if aggregate else "0")
    relayPort, pin = middle.stdout.readline().split()  # type: ignore[union-attr]
    before = _cpuSeconds(middle.pid)
    front = _spawn("client", mode, relayPort, pin, str(size))
    seconds = float(front.stdout.readline())  # type: ignore[union-attr]
    front.wait()
    cpu = _cpuSeconds(middle.pid) - before
    for process in (middle, back):
        process.terminate()
        process.wait()
    return size / seconds / 1e6, cpu * (1 << 30) / size


def main(arguments: list[str]) -> None:
    """
    Run the measurements, or one role (when started by them).
    """
    if arguments and arguments[0] == "backend":
        return backend(arguments[1], int(arguments[2]))
    if arguments and arguments[0] == "relay":
        return relay(int(arguments[1]), arguments[2] == "1")
    if arguments and arguments[0] == "client":
        return client(arguments[1], int(arguments[2]), arguments[3], int(arguments[4]))
    smallWrites()
    size = int(arguments[0] if arguments else 1024) << 20
    runs = int(arguments[1]) if len(arguments) > 1 else 3
    for mode in ("upload", "download"):
        for aggregate in (False, True):
            results = [measure(mode, aggregate, size) for _ in range(runs)]
            speeds = ", ".join(f"{r[0]:.0f}" for r in results)
            cpus = ", ".join(f"{r[1]:.2f}" for r in results)
            print(
                f"{mode:8} aggregation {'on ' if aggregate else 'off'}: "
                f"MB/s {speeds}; relay CPU s/GiB {cpus}",
                flush=True,
            )


if __name__ == "__main__":
    main(sys.argv[1:])
