"""
Resource-exhaustion attackers, run as a process of their own so that the
test process stays free to measure the legitimate client:

    python -m tests.security.attackers MODE JSON-OPTIONS

Each runs for a bounded time against 127.0.0.1, then prints one JSON line
of what it saw:

  - C{flood}: opens C{count} TCP connections from one source address and
    holds them for C{hold} seconds, sending nothing; reports how many the
    gateway closed at once (refused at accept), how many it kept, and how
    many of those it closed while they were held (idle timeout);
  - C{slowloris}: keeps C{count} TLS connections (spread over C{sources})
    each trickling a request head, one header line every C{interval}
    seconds; when the gateway closes one, records what it answered (408)
    and opens another, until C{duration} passes;
  - C{slowread}: C{count} TLS connections with a device certificate each
    ask for a large response and never read it; reports how each ended
    (closed by the gateway, or still open at the end) and what status it
    got.

Everything is asyncio, so that hundreds of connections cost one thread.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import sys
import time
from typing import Any


def _context(options: dict[str, Any]) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=options["ca"])
    context.check_hostname = False
    if options.get("certificate"):
        context.load_cert_chain(options["certificate"], options["key"])
    return context


async def flood(options: dict[str, Any]) -> dict[str, Any]:
    """
    Open and hold plain TCP connections from one source.
    """
    loop = asyncio.get_running_loop()
    sockets = []
    for _ in range(options["count"]):
        sock = socket.socket()
        sock.setblocking(False)
        sock.bind((options["source"], 0))
        try:
            await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", options["port"])), 5)
        except (OSError, asyncio.TimeoutError):
            sock.close()
            continue
        sockets.append(sock)
    # The gateway closes a refused connection at once: give it a moment,
    # then see which ones reached end of file.
    await asyncio.sleep(options.get("settle", 1.0))
    closed = sum(1 for sock in sockets if _isClosed(sock))
    held = [sock for sock in sockets if not _isClosed(sock)]
    # Then hold them, sending nothing, and see which the gateway ends.
    await asyncio.sleep(options.get("hold", 0))
    closedLater = sum(1 for sock in held if _isClosed(sock))
    for sock in sockets:
        sock.close()
    return {"connected": len(sockets), "refused": closed, "held": len(held), "closedLater": closedLater}


def _isClosed(sock: socket.socket) -> bool:
    """
    Whether the peer closed or reset a non-blocking socket (it has nothing
    to read before end of file: the gateway never sends first).
    """
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


async def _slowConnection(options: dict[str, Any], source: str, deadline: float, results: dict[str, Any]) -> None:
    context = _context(options)
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    "127.0.0.1", options["port"], ssl=context, local_addr=(source, 0), server_hostname=None
                ),
                10,
            )
        except (OSError, asyncio.TimeoutError, ssl.SSLError):
            results["failedConnects"] += 1
            await asyncio.sleep(0.5)
            continue
        results["opened"] += 1
        results["concurrent"] += 1
        results["maxConcurrent"] = max(results["maxConcurrent"], results["concurrent"])
        try:
            writer.write(b"GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            await writer.drain()
            line = 0
            while time.monotonic() < deadline:
                try:
                    answer = await asyncio.wait_for(reader.read(4096), options["interval"])
                except asyncio.TimeoutError:
                    line += 1
                    writer.write(b"X-Slow-%d: %d\r\n" % (line, line))
                    await writer.drain()
                    continue
                if answer.startswith(b"HTTP/1.1 408"):
                    results["timedOut"] += 1
                elif answer:
                    results["otherAnswers"].append(answer[:40].decode("latin-1"))
                results["closedByGateway"] += 1
                break
        except (OSError, ssl.SSLError, ConnectionError):
            results["closedByGateway"] += 1
        finally:
            results["concurrent"] -= 1
            writer.close()


async def slowloris(options: dict[str, Any]) -> dict[str, Any]:
    """
    Trickle request heads on many TLS connections until the deadline.
    """
    results: dict[str, Any] = {
        "opened": 0,
        "concurrent": 0,
        "maxConcurrent": 0,
        "timedOut": 0,
        "closedByGateway": 0,
        "failedConnects": 0,
        "otherAnswers": [],
    }
    deadline = time.monotonic() + options["duration"]
    sources = options["sources"]
    tasks = [
        asyncio.create_task(_slowConnection(options, sources[n % len(sources)], deadline, results))
        for n in range(options["count"])
    ]
    await asyncio.gather(*tasks)
    results["otherAnswers"] = results["otherAnswers"][:5]
    return results


async def _slowReader(options: dict[str, Any], source: str, results: dict[str, Any]) -> None:
    context = _context(options)
    started = time.monotonic()
    try:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", options["port"], ssl=context, local_addr=(source, 0), server_hostname=None, limit=1024
        )
    except (OSError, ssl.SSLError):
        results["failedConnects"] += 1
        return
    writer.transport.set_write_buffer_limits(0)
    # Read nothing beyond the status line: the socket's receive buffer
    # fills, and the gateway can send no more.
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    writer.write(
        b"GET /big?n=%d HTTP/1.1\r\nHost: %s\r\n\r\n" % (options["bytes"], options["host"].encode())
    )
    await writer.drain()
    status = "none"
    try:
        head = await asyncio.wait_for(reader.read(12), 10)
        status = head[9:12].decode("latin-1") or "closed"
        writer.transport.pause_reading()
        # Wait, reading nothing, until the gateway closes or time is up.
        deadline = started + options["duration"]
        while time.monotonic() < deadline and not writer.transport.is_closing():
            if reader.at_eof() or reader.exception() is not None:
                break
            await asyncio.sleep(0.1)
        transport = writer.transport
        closed = transport.is_closing() or reader.at_eof()
        if not closed:
            # Peek at the socket: a gateway that closed makes it readable
            # with end of file after the buffered data.
            transport.resume_reading()
            try:
                while True:
                    data = await asyncio.wait_for(reader.read(1 << 20), 0.5)
                    if not data:
                        closed = True
                        break
            except asyncio.TimeoutError:
                # Data stopped without an end: the gateway still holds it.
                pass
            except (ConnectionError, ssl.SSLError):
                closed = True
    except (ConnectionError, ssl.SSLError, asyncio.TimeoutError):
        closed = True
    results["statuses"][status] = results["statuses"].get(status, 0) + 1
    if closed:
        results["closedByGateway"] += 1
        results["closedAfter"].append(round(time.monotonic() - started, 1))
    else:
        results["stillOpen"] += 1
    writer.close()


async def slowread(options: dict[str, Any]) -> dict[str, Any]:
    """
    Ask for large responses and never read them.
    """
    results: dict[str, Any] = {
        "statuses": {},
        "closedByGateway": 0,
        "stillOpen": 0,
        "failedConnects": 0,
        "closedAfter": [],
    }
    sources = options["sources"]
    await asyncio.gather(
        *(_slowReader(options, sources[n % len(sources)], results) for n in range(options["count"]))
    )
    results["closedAfter"] = sorted(results["closedAfter"])[:: max(1, len(results["closedAfter"]) // 5)]
    return results


MODES = {"flood": flood, "slowloris": slowloris, "slowread": slowread}


def main(argv: list[str]) -> None:
    """
    Run one attacker and print its results.
    """
    mode, options = argv[0], json.loads(argv[1])
    results = asyncio.run(MODES[mode](options))
    sys.stdout.write(json.dumps(results) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
