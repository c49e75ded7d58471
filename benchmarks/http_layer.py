"""
Micro-benchmark of ztnagw's HTTP/1.1 layer.

Modes:

  - C{parse}: requests fed to L{HTTPServerProtocol} over an in-memory
    transport, answered with 1 KiB: the Python cost of parse + respond,
    no sockets.
  - C{direct}: a server process (pinned to one core) answering 1 KiB over
    plain TCP on 127.0.0.1; the client, in another process on the other
    core, keeps N keep-alive connections busy (optionally pipelined).
  - C{proxy}: the same, but the server is a proxy that forwards every request
    through L{UpstreamPool} to a backend server in the same process (so the
    proxy and the backend share one core).

Run from the repository root::

    python benchmarks/http_layer.py --mode parse
    python benchmarks/http_layer.py --mode direct --connections 32 --seconds 5
    python benchmarks/http_layer.py --mode proxy --connections 32 --seconds 5
    python benchmarks/http_layer.py --mode proxy --wrk    # wrk as the client
    python benchmarks/http_layer.py --mode proxy-separate --wrk --tls

Only loopback addresses are used; every run stops by itself.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

BODY = b"x" * 1024
REQUEST = b"GET /bench HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"


def _handlers():
    """
    The benchmark's handler classes (imported late, after CPU pinning).
    """
    from twisted.python.failure import Failure
    from zope.interface import implementer

    from ztnagw.http.headers import withoutHopByHop
    from ztnagw.http.interfaces import IRequestHandler
    from ztnagw.http.server import BodyRelay

    @implementer(IRequestHandler)
    class Answer1K:
        def requestReceived(self, request):
            """
            See L{ztnagw.http.interfaces.IRequestHandler.requestReceived}.
            """
            request.response.respond(200, b"OK", [(b"Content-Type", b"text/plain")], BODY)

    @implementer(IRequestHandler)
    class Proxy:
        def __init__(self, pool, key):
            self.pool = pool
            self.key = key

        def requestReceived(self, request):
            """
            See L{ztnagw.http.interfaces.IRequestHandler.requestReceived}.
            """
            response = request.response
            d = self.pool.request(
                self.key,
                request.method,
                request.target,
                withoutHopByHop(request.headers),
                request if request.bodyLength != 0 else None,
            )

            def relay(upstream):
                response.writeHead(
                    upstream.status,
                    upstream.reason,
                    withoutHopByHop(upstream.headers),
                    upstream.length,
                )
                upstream.deliverBody(BodyRelay(response))

            def failed(reason: Failure):
                if response.headWritten:
                    response.abort()
                else:
                    response.respond(502, b"Bad Gateway")

            d.addCallbacks(relay, failed)

    return Answer1K, Proxy


def benchParse(count: int) -> None:
    """
    Parse and answer C{count} pipelined requests in memory.
    """
    from twisted.internet.task import Clock

    from ztnagw.http.server import HTTPServerProtocol

    Answer1K, Proxy = _handlers()

    class NullTransport:
        disconnecting = False

        def write(self, data):
            """
            Discard.
            """
            pass

        def writeSequence(self, data):
            """
            Discard.
            """
            pass

        def getPeer(self):
            """
            No address.
            """
            return None

        def getHost(self):
            """
            No address.
            """
            return None

        def pauseProducing(self):
            """
            See L{twisted.internet.interfaces.IPushProducer.pauseProducing}.
            """
            pass

        def resumeProducing(self):
            """
            See L{twisted.internet.interfaces.IPushProducer.resumeProducing}.
            """
            pass

        def loseConnection(self):
            """
            Ignore.
            """
            pass

    protocol = HTTPServerProtocol(Answer1K(), Clock())
    protocol.makeConnection(NullTransport())
    batch = REQUEST * 100
    started = time.perf_counter()
    for i in range(count // 100):
        protocol.dataReceived(batch)
    elapsed = time.perf_counter() - started
    served = protocol.connection.requestsServed
    print(f"parse+respond: {served} requests in {elapsed:.3f} s: {served / elapsed:,.0f} req/s "
          f"({elapsed / served * 1e6:.1f} us/request)")


def _selfSignedOptions():
    """
    TLS server options with a throwaway self-signed P-256 certificate.
    """
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    from twisted.internet.ssl import PrivateCertificate

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    pem = certificate.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return PrivateCertificate.loadPEM(pem).options()


def serve(mode: str, core: int, backendPort: int | None, tls: bool = False) -> None:
    """
    Run the server side (pinned to C{core}) and print its port.
    """
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {core})
    from twisted.internet import reactor

    from ztnagw.http.client import UpstreamKey
    from ztnagw.http.pool import UpstreamPool
    from ztnagw.http.server import HTTPServerFactory

    Answer1K, Proxy = _handlers()
    if mode == "direct":
        handler = Answer1K()
    else:
        if backendPort is None:
            backend = reactor.listenTCP(
                0, HTTPServerFactory(Answer1K(), reactor), interface="127.0.0.1"
            )
            backendPort = backend.getHost().port
        handler = Proxy(UpstreamPool(reactor), UpstreamKey("127.0.0.1", backendPort))
    factory = HTTPServerFactory(handler, reactor)
    if tls:
        from twisted.protocols.tls import TLSMemoryBIOFactory

        factory = TLSMemoryBIOFactory(_selfSignedOptions(), False, factory)
    port = reactor.listenTCP(0, factory, interface="127.0.0.1", backlog=512)
    print(port.getHost().port, flush=True)
    # Stop by ourselves even if the client never says so.
    reactor.callLater(300, reactor.stop)
    import threading

    def watchStdin():
        sys.stdin.read()
        reactor.callFromThread(reactor.stop)

    threading.Thread(target=watchStdin, daemon=True).start()
    reactor.run()


def load(port: int, connections: int, depth: int, seconds: float) -> None:
    """
    Keep C{connections} connections busy with C{depth} requests in flight
    each for C{seconds}; print the rate.
    """
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    from twisted.internet import reactor
    from twisted.internet.protocol import ClientFactory, Protocol

    state = {"responses": 0, "counting": False, "size": None, "errors": 0}

    class Client(Protocol):
        def connectionMade(self):
            """
            The connection is up: send what this side sends first.
            """
            self.buffer = 0
            self.transport.setTcpNoDelay(True)
            self.transport.write(REQUEST * depth)

        def dataReceived(self, data):
            size = state["size"]
            if size is None:
                self.first = getattr(self, "first", b"") + data
                end = self.first.find(b"\r\n\r\n")
                if end < 0:
                    return
                if not self.first.startswith(b"HTTP/1.1 200 "):
                    state["errors"] += 1
                size = state["size"] = end + 4 + len(BODY)
                data = self.first
            self.buffer += len(data)
            done, self.buffer = divmod(self.buffer, size)
            if done:
                if state["counting"]:
                    state["responses"] += done
                self.transport.write(REQUEST * done)

        def connectionLost(self, reason):
            if state["counting"]:
                state["errors"] += 1

    class Factory(ClientFactory):
        protocol = Client

    # Connect one first so that the response size is known.
    for i in range(connections):
        reactor.connectTCP("127.0.0.1", port, Factory())

    def start():
        state["counting"] = True
        state["started"] = time.perf_counter()
        reactor.callLater(seconds, stop)

    def stop():
        elapsed = time.perf_counter() - state["started"]
        state["counting"] = False
        print(
            f"{state['responses']} responses in {elapsed:.2f} s: "
            f"{state['responses'] / elapsed:,.0f} req/s "
            f"({connections} connections, {depth} in flight each, errors {state['errors']})"
        )
        reactor.stop()

    reactor.callLater(1.0, start)  # warm-up
    reactor.run()


def main() -> None:
    """
    Parse the command line and run the chosen benchmark.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--mode", choices=["parse", "direct", "proxy", "proxy-separate"], default="direct",
        help="proxy-separate: the backend runs in its own process, on the client's core",
    )
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--depth", type=int, default=1, help="pipelined requests per connection")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument(
        "--wrk", action="store_true", help="load with wrk (pinned to core 0) instead"
    )
    parser.add_argument(
        "--tls", action="store_true",
        help="the measured server speaks TLS (self-signed; needs --wrk)",
    )
    parser.add_argument("--serve", choices=["direct", "proxy"], help=argparse.SUPPRESS)
    parser.add_argument("--core", type=int, default=(os.cpu_count() or 1) - 1, help=argparse.SUPPRESS)
    parser.add_argument("--backend-port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.core, args.backend_port, args.tls)
        return
    if args.mode == "parse":
        benchParse(args.count)
        return

    def start(*extra: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), *extra],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )

    servers = []
    if args.mode == "proxy-separate":
        servers.append(start("--serve", "direct", "--core", "0"))
        backendPort = servers[-1].stdout.readline().strip().decode()
        servers.append(
            start("--serve", "proxy", "--backend-port", backendPort, *(["--tls"] if args.tls else []))
        )
    else:
        servers.append(start("--serve", args.mode, *(["--tls"] if args.tls else [])))
    server = servers[-1]
    try:
        port = int(server.stdout.readline())
        if args.wrk:
            subprocess.run(
                ["taskset", "-c", "0", "wrk", "-t1", f"-c{args.connections}",
                 f"-d{int(args.seconds)}s",
                 f"{'https' if args.tls else 'http'}://127.0.0.1:{port}/bench"],
                check=True,
            )
        else:
            load(port, args.connections, args.depth, args.seconds)
    finally:
        for server in servers:
            server.stdin.close()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()


if __name__ == "__main__":
    main()
