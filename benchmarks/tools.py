# -*- test-case-name: tests.benchmarks.test_tools -*-
"""
Small purpose-built load tools that no Debian package provides.

  - C{echo}: the tunnels' real server: echoes every byte (many thousands of
    idle connections at once).
  - C{latency}: tunnel setup latency, connect to a forwarder (ztnagw-forward
    or a stunnel client) and time until the first byte comes back through the
    echo server; sequential, so that each sample is one whole setup.
  - C{hold}: opens many connections to a gateway and keeps them idle (HTTPS
    after one keep-alive request, a TFACP tunnel after its C{101}, or a
    plain TLS tunnel to a stunnel server), so that the harness can read the
    gateway's memory per idle connection.  It is driven over stdin/stdout
    (C{open N} / C{quit}) so that the harness can measure at 1,000 and then at
    10,000 without opening the first thousand twice.

They are written on asyncio and the standard library's C{ssl}, not on
Twisted, on purpose: the tools that measure ztnagw do not share its code or
its TLS binding.  Run as C{python -m benchmarks.tools COMMAND ...}; each
prints one JSON line on standard output.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import ssl
import sys
import time
from typing import Sequence


def percentile(samples: Sequence[float], fraction: float) -> float:
    """
    The C{fraction} percentile of C{samples} (nearest rank).

    @raise ValueError: no samples, or a fraction outside [0, 1].
    """
    if not samples:
        raise ValueError("no samples")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError("the fraction must be within 0 and 1")
    ordered = sorted(samples)
    rank = max(1, int(-(-fraction * len(ordered) // 1)))
    return ordered[rank - 1]


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def runEcho(port: int) -> None:
    """
    Echo every byte received on 127.0.0.1:C{port}, for ever.
    """
    server = await asyncio.start_server(_echo, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


def measureSetup(port: int, count: int, timeout: float) -> dict[str, float | int]:
    """
    Connect to 127.0.0.1:C{port} C{count} times in turn; each time send one
    byte and wait for it to come back.

    @return: C{count}, C{p50Ms}, C{p99Ms}, C{meanMs}, C{failures}.
    """
    samples: list[float] = []
    failures = 0
    for _ in range(count):
        start = time.perf_counter()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                s.sendall(b"x")
                if s.recv(1) != b"x":
                    failures += 1
                    continue
        except OSError:
            failures += 1
            continue
        samples.append((time.perf_counter() - start) * 1000.0)
    result: dict[str, float | int] = {"count": len(samples), "failures": failures}
    if samples:
        result.update(
            p50Ms=percentile(samples, 0.5),
            p99Ms=percentile(samples, 0.99),
            meanMs=sum(samples) / len(samples),
        )
    return result


def tfacpRequest(host: str, port: int, destination: str, destinationPort: int, tls: bool) -> bytes:
    """
    The tunnel-open request FortiClient sends (reference: fortios-ztna.md
    §2.2).
    """
    return (
        f"GET /tcp?address={destination}&port={destinationPort}&tls={1 if tls else 0} HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        "User-Agent: Forticlient\r\n"
        "Accept: */*\r\n"
        "Upgrade: tcp-forwarding/1.0\r\n"
        "Connection: Upgrade\r\n"
        "\r\n"
    ).encode("ascii")


class HoldError(Exception):
    """
    A held connection could not be set up as asked.
    """


async def _readHead(reader: asyncio.StreamReader) -> tuple[int, dict[bytes, bytes]]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise HoldError(f"not an HTTP response: {lines[0]!r}")
    headers = {}
    for line in lines[1:]:
        if b":" in line:
            name, value = line.split(b":", 1)
            headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers


async def _holdOne(mode: str, port: int, context: ssl.SSLContext, path: str, echoPort: int) -> asyncio.StreamWriter:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="127.0.0.1")
    if mode == "https":
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode("ascii"))
        status, headers = await _readHead(reader)
        if status != 200:
            raise HoldError(f"HTTPS request answered {status}")
        await reader.readexactly(int(headers.get(b"content-length", b"0")))
    else:
        if mode == "tfacp":
            writer.write(tfacpRequest("127.0.0.1", port, "127.0.0.1", echoPort, tls=True))
            status, _ = await _readHead(reader)
            if status != 101:
                raise HoldError(f"tunnel request answered {status}")
        writer.write(b"x")
        if await reader.readexactly(1) != b"x":
            raise HoldError("the tunnel did not echo")
    return writer


async def runHold(
    mode: str,
    port: int,
    certificate: str,
    key: str,
    ca: str,
    path: str,
    echoPort: int,
    concurrency: int,
    commands: asyncio.StreamReader | None = None,
) -> None:
    """
    Serve C{open N} / C{quit} commands from standard input: each C{open N}
    opens connections until C{N} are held, then prints a JSON line.
    """
    context = ssl.create_default_context(cafile=ca)
    context.load_cert_chain(certificate, key)
    held: list[asyncio.StreamWriter] = []
    loop = asyncio.get_running_loop()
    if commands is None:
        commands = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(commands), sys.stdin)
    while line := (await commands.readline()).decode().split():
        if line[0] == "quit":
            break
        if line[0] != "open" or len(line) != 2 or not line[1].isdigit():
            print(json.dumps({"error": f"unknown command {' '.join(line)!r}"}), flush=True)
            continue
        target = int(line[1])
        start = time.perf_counter()
        failures: list[str] = []
        gate = asyncio.Semaphore(concurrency)

        async def one() -> None:
            async with gate:
                try:
                    held.append(await asyncio.wait_for(_holdOne(mode, port, context, path, echoPort), 30))
                except (OSError, HoldError, asyncio.TimeoutError, asyncio.IncompleteReadError, ssl.SSLError) as e:
                    failures.append(f"{type(e).__name__}: {e}")

        await asyncio.gather(*(one() for _ in range(max(0, target - len(held)))))
        print(
            json.dumps(
                {
                    "held": len(held),
                    "failures": len(failures),
                    "firstFailure": failures[0] if failures else None,
                    "seconds": time.perf_counter() - start,
                }
            ),
            flush=True,
        )
    for writer in held:
        writer.close()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tools")
    commands = parser.add_subparsers(dest="command", required=True)
    echo = commands.add_parser("echo", help="echo server on 127.0.0.1")
    echo.add_argument("--port", type=int, required=True)
    latency = commands.add_parser("latency", help="tunnel setup latency")
    latency.add_argument("--port", type=int, required=True)
    latency.add_argument("--count", type=int, default=200)
    latency.add_argument("--timeout", type=float, default=10.0)
    hold = commands.add_parser("hold", help="hold idle connections (commands on stdin)")
    hold.add_argument("--mode", choices=("https", "tfacp", "tls"), required=True)
    hold.add_argument("--port", type=int, required=True)
    hold.add_argument("--cert", required=True)
    hold.add_argument("--key", required=True)
    hold.add_argument("--ca", required=True)
    hold.add_argument("--path", default="/1k")
    hold.add_argument("--echo-port", type=int, default=0)
    hold.add_argument("--concurrency", type=int, default=32)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """
    Run one tool.
    """
    options = _parser().parse_args(argv)
    if options.command == "echo":
        asyncio.run(runEcho(options.port))
    elif options.command == "latency":
        print(json.dumps(measureSetup(options.port, options.count, options.timeout)), flush=True)
    else:
        asyncio.run(
            runHold(
                options.mode,
                options.port,
                options.cert,
                options.key,
                options.ca,
                options.path,
                options.echo_port,
                options.concurrency,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
