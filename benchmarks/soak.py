# -*- test-case-name: tests.soak.test_soak -*-
"""
The soak: the real daemon under a bounded, mixed, steady load for minutes,
to find what only time finds (descriptor leaks, memory growth, errors that
appear once in thousands of requests).

    python -m benchmarks.soak --duration 600        # the default: 10 minutes
    python -m benchmarks.soak --duration 60 --json report.json

The load, all on 127.0.0.1, from threads of this process:

  - HTTPS requests of enrolled devices through a VIP, on new and
    keep-alive connections, and requests without a certificate (002);
  - tunnels (TFACP): open, one request through to the real server, close;
  - enrollments through the EMS API (a token with many uses), each new
    device used at once, and revocations of some of them with the admin
    command, after which their requests must get 063.

At the end the report gives the daemon's open descriptors and resident
memory at the start (after a warm-up, once its caches are filled) and at
the end (once every client connection is closed), and the errors by kind.
It passes when the descriptors are back to the baseline, memory grew by
less than 10 %, and the only errors are the intended denials (002 without
a certificate, 063 after a revocation).

Everything stops by itself: each loop checks the deadline, and every
socket has a timeout.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable

from attrs import asdict, field, frozen
from cryptography.hazmat.primitives.asymmetric import ec

#: How long a soak runs by default, in seconds.
DEFAULT_DURATION = 600.0

#: Memory growth that fails the soak, as a fraction of the baseline.
MAX_RSS_GROWTH = 0.10

#: Error kinds that are the intended outcome of what the soak does: 002
#: without a certificate, 063 for a revoked device, and a revoked device's
#: connection that the revocation closed before its request was answered
#: (a running gateway ends the live sessions of a device it revokes).
INTENDED = frozenset({"denied-002", "denied-063", "closed-revoked"})

#: Idle keep-alive connections the gateway keeps per real server
#: (L{ztnagw.gateway.proxy.UpstreamPools}): how many there are at a moment
#: depends on how many requests ran at once just before, so they are
#: counted apart from the other descriptors, and only their bound is
#: checked.
MAX_POOLED = 64

#: Seconds within which a running daemon applies a registry change
#: (docs/ems.md); a revoked device's request later than that must get 063.
APPLY_BOUND = 1.0

_TUNNEL_GATEWAY = """            edit 90
                set service tcp-forwarding
                config realservers
                    edit 1
                        set ip 127.0.0.1
                        set port {backend}
                    next
                end
            next
"""


@frozen
class Sample:
    """
    The daemon's resources at one moment.

    @ivar fds: open file descriptors.
    @ivar rss: resident set size, in bytes.
    @ivar targets: what each descriptor is open on (C{socket:[inode]},
        a path...), to tell what a leak is.
    @ivar pooled: how many of the descriptors are connections to a real
        server (idle keep-alive connections of the gateway's pools).
    """

    fds: int
    rss: int
    targets: tuple[str, ...] = ()
    pooled: int = 0

    @property
    def ownFds(self) -> int:
        """
        The descriptors other than pooled real-server connections.
        """
        return self.fds - self.pooled


@frozen
class SoakReport:
    """
    What a soak measured.

    @ivar duration: seconds of load.
    @ivar operations: completed operations by kind.
    @ivar errors: failures by kind (intended denials included).
    @ivar start: the resources after the warm-up.
    @ivar end: the resources after the load, all clients gone.
    @ivar revocationLatencies: for each revocation, seconds from the admin
        command's success to the daemon's first 063 for the device.
    @ivar examples: the first occurrence of each error kind, described.
    """

    duration: float
    operations: dict[str, int]
    errors: dict[str, int]
    start: Sample
    end: Sample
    revocationLatencies: tuple[float, ...] = ()
    examples: dict[str, str] = field(factory=dict)

    @property
    def unintendedErrors(self) -> dict[str, int]:
        """
        The errors that are not intended denials.
        """
        return {kind: n for kind, n in self.errors.items() if kind not in INTENDED}

    @property
    def rssGrowth(self) -> float:
        """
        Memory growth as a fraction of the baseline.
        """
        return (self.end.rss - self.start.rss) / self.start.rss

    @property
    def problems(self) -> list[str]:
        """
        Why the soak fails; empty when it passes.
        """
        found = []
        if self.end.ownFds > self.start.ownFds:
            extra = collections.Counter(self.end.targets) - collections.Counter(self.start.targets)
            found.append(
                f"descriptors (without pooled real-server connections): {self.start.ownFds} at the start, "
                f"{self.end.ownFds} at the end "
                f"(more: {', '.join(sorted(extra.elements()))})"
            )
        if self.end.pooled > MAX_POOLED:
            found.append(f"{self.end.pooled} pooled real-server connections (bound {MAX_POOLED})")
        if self.rssGrowth >= MAX_RSS_GROWTH:
            found.append(f"memory grew by {self.rssGrowth:.1%} (limit {MAX_RSS_GROWTH:.0%})")
        if self.unintendedErrors:
            found.append(f"unintended errors: {self.unintendedErrors}")
        for kind in ("https", "tunnel", "enroll", "revoke"):
            if not self.operations.get(kind):
                found.append(f"no {kind} operation completed")
        return found

    def toJson(self) -> dict[str, Any]:
        """
        The report as JSON.
        """
        value = asdict(self)
        value["rssGrowth"] = round(self.rssGrowth, 4)
        value["problems"] = self.problems
        return value

    def describe(self) -> str:
        """
        The report, readable.
        """
        lines = [
            f"soak: {self.duration:.0f} s",
            "operations: " + ", ".join(f"{k}={v}" for k, v in sorted(self.operations.items())),
            "errors: " + (", ".join(f"{k}={v}" for k, v in sorted(self.errors.items())) or "none"),
            f"descriptors: {self.start.ownFds} -> {self.end.ownFds}, "
            f"and pooled real-server connections: {self.start.pooled} -> {self.end.pooled}",
            "revocation applied after: "
            + (
                f"median {sorted(self.revocationLatencies)[len(self.revocationLatencies) // 2]:.2f} s, "
                f"max {max(self.revocationLatencies):.2f} s"
                if self.revocationLatencies
                else "-"
            ),
            f"RSS: {self.start.rss / 2**20:.1f} MiB -> {self.end.rss / 2**20:.1f} MiB ({self.rssGrowth:+.1%})",
            "result: " + ("PASS" if not self.problems else "FAIL: " + "; ".join(self.problems)),
        ]
        for kind, example in sorted(self.examples.items()):
            if kind not in INTENDED:
                lines.append(f"  {kind}, first: {example}")
        return "\n".join(lines)


def _socketsTo(ports: frozenset[int]) -> set[str]:
    """
    The inodes of this machine's TCP sockets connected to one of C{ports}.
    """
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    remotePort = int(fields[2].rsplit(":", 1)[1], 16)
                    if remotePort in ports:
                        inodes.add(fields[9])
        except OSError:
            continue
    return inodes


def sample(pid: int, realServerPorts: frozenset[int] = frozenset()) -> Sample:
    """
    The resources of process C{pid} now.

    @param realServerPorts: the ports of the real servers, whose
        connections are counted as pooled.
    """
    targets = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            targets.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            continue
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                upstream = _socketsTo(realServerPorts)
                pooled = sum(1 for t in targets if t.startswith("socket:[") and t[8:-1] in upstream)
                return Sample(
                    fds=len(targets), rss=int(line.split()[1]) * 1024, targets=tuple(sorted(targets)), pooled=pooled
                )
    raise RuntimeError(f"process {pid} has no VmRSS")


class _Counts:
    """
    Thread-safe counters, with the first example of each kind.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.values: collections.Counter[str] = collections.Counter()
        self.examples: dict[str, str] = {}

    def add(self, kind: str, example: str | None = None) -> None:
        with self._lock:
            self.values[kind] += 1
            if example is not None:
                self.examples.setdefault(kind, example)

    def clear(self) -> None:
        with self._lock:
            self.values.clear()
            self.examples.clear()


def _readResponse(stream: Any) -> tuple[int, dict[str, str], bytes]:
    """
    One response from a file object over a socket: status, fields and body
    (the gateway's answers and the test backend's always have a length).
    """
    statusLine = stream.readline()
    if not statusLine:
        raise ConnectionError("connection closed before a response")
    status = int(statusLine.split()[1])
    fields: dict[str, str] = {}
    while True:
        line = stream.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        fields[name.strip().lower()] = value.strip()
    length = int(fields.get("content-length", "0"))
    body = stream.read(length) if length else b""
    return status, fields, body


class Soak:
    """
    One soak run against a daemon the soak starts itself (see the module
    docstring).
    """

    def __init__(self, directory: str, duration: float, warmup: float | None = None) -> None:
        from tests.integration.httpsfixture import Gateway

        self.duration = duration
        self.warmup = warmup if warmup is not None else min(60.0, max(5.0, duration / 10))
        self.gateway = Gateway(directory)
        with open(self.gateway.configPath) as f:
            text = f.read()
        anchor = '                        set http-host "elsewhere.test"\n                    next\n                end\n            next\n'
        if anchor not in text:
            raise RuntimeError("the integration configuration changed: update benchmarks/soak.py")
        text = text.replace(anchor, anchor + _TUNNEL_GATEWAY.format(backend=self.gateway.ports["BACKEND"]), 1)
        with open(self.gateway.configPath, "w") as f:
            f.write(text)
        self.operations = _Counts()
        self.errors = _Counts()
        self._deadline = 0.0
        self._devices: list[tuple[str, str, str]] = []
        self._revoked: list[tuple[float, tuple[str, str, str]]] = []
        self._lock = threading.Lock()
        self.revocationLatencies: list[float] = []

    # Clients.

    def _context(self, device: tuple[str, str, str] | None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.gateway.ca)
        context.check_hostname = False
        if device is not None:
            context.load_cert_chain(device[1], device[2])
        return context

    def _connect(self, device: tuple[str, str, str] | None, port: int | None = None) -> ssl.SSLSocket:
        raw = socket.create_connection(("127.0.0.1", port or self.gateway.ports["MAIN"]), timeout=15)
        return self._context(device).wrap_socket(raw, server_hostname="127.0.0.1")

    def _get(self, device: tuple[str, str, str] | None, requests: int = 1) -> list[tuple[int, dict[str, str]]]:
        answers = []
        with self._connect(device) as connection:
            stream = connection.makefile("rb")
            for _ in range(requests):
                connection.sendall(b"GET /headers HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n\r\n")
                status, fields, _ = _readResponse(stream)
                answers.append((status, fields))
                if fields.get("connection", "").lower() == "close":
                    break
            stream.close()
        return answers

    def _record(self, kind: str, answers: list[tuple[int, dict[str, str]]], expected: str | None) -> None:
        """
        Count C{answers}: each is the operation C{kind} when it is a 200 and
        nothing else was expected, else an error by its code or status.
        """
        for status, fields in answers:
            code = fields.get("x-ztna-error")
            if status == 200 and expected is None:
                self.operations.add(kind)
            elif code is not None and code == expected:
                self.errors.add(f"denied-{code}")
            else:
                self.errors.add(f"{kind}-{status}-{code or 'none'}", f"{fields} at {time.time():.3f}")

    def _guard(self, kind: str, work: Callable[[], None]) -> None:
        try:
            work()
        except Exception as e:  # noqa: BLE001  (every failure is counted, by kind)
            self.errors.add(f"{kind}-{type(e).__name__}", f"{e!r} at {time.time():.3f}")

    # Loops.

    def _httpsLoop(self) -> None:
        turn = 0
        while time.monotonic() < self._deadline:
            turn += 1
            with self._lock:
                device = self._devices[turn % len(self._devices)] if self._devices else None
                revoked = self._revoked[turn % len(self._revoked)][1] if self._revoked else None
            if device is not None:
                self._guard("https", lambda: self._record("https", self._get(device, 1 + turn % 5), None))
            if turn % 4 == 0:
                self._guard("https", lambda: self._record("https", self._get(None), "002"))
            if revoked is not None and turn % 3 == 0:
                self._guard("https", lambda: self._record("https", self._get(revoked), "063"))

    def _tunnelLoop(self) -> None:
        backend = self.gateway.ports["BACKEND"]

        def tunnel(device: tuple[str, str, str]) -> None:
            with self._connect(device) as connection:
                stream = connection.makefile("rb")
                connection.sendall(
                    b"GET /tcp?address=127.0.0.1&port=%d&tls=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    b"User-Agent: ztnagw-soak\r\nUpgrade: tcp-forwarding/1.0\r\nConnection: Upgrade\r\n\r\n"
                    % backend
                )
                status, fields, _ = _readResponse(stream)
                if status != 101:
                    self._record("tunnel", [(status, fields)], None)
                    return
                connection.sendall(b"GET /headers HTTP/1.1\r\nHost: backend\r\nConnection: close\r\n\r\n")
                inner, innerFields, body = _readResponse(stream)
                self._record("tunnel", [(inner, innerFields)], None)
                stream.close()

        turn = 0
        while time.monotonic() < self._deadline:
            turn += 1
            with self._lock:
                device = self._devices[turn % len(self._devices)] if self._devices else None
            if device is None:
                time.sleep(0.1)
                continue
            self._guard("tunnel", lambda: tunnel(device))

    def _enrollLoop(self, token: str) -> None:
        from tests.fuzz.ems import REPORT
        from ztnagw.ems.keys import privateKeyPem
        from ztnagw.forwarder.enroll import makeRequest

        number = 0
        while time.monotonic() < self._deadline:
            number += 1
            key = ec.generate_private_key(ec.SECP256R1())
            body = json.dumps(makeRequest(key, token, _report(REPORT), None)).encode()
            started = time.monotonic()

            def enroll() -> None:
                with self._connect(None, self.gateway.ports["EMS"]) as connection:
                    connection.sendall(
                        b"POST /api/v1/enroll HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                        b"Content-Length: %d\r\n\r\n" % len(body) + body
                    )
                    stream = connection.makefile("rb")
                    status, fields, answer = _readResponse(stream)
                    stream.close()
                if status != 200:
                    self.errors.add(f"enroll-{status}", answer.decode("utf-8", "replace")[:300])
                    return
                enrolled = json.loads(answer)
                # Named by UID: the loop's numbers start again after the
                # warm-up, and a revoked device must keep its own files.
                base = os.path.join(self.gateway.directory, f"soak-{enrolled['uid']}")
                with open(base + ".crt", "w") as f:
                    f.write(enrolled["certificate"])
                fd = os.open(base + ".key", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(privateKeyPem(key))
                device = (enrolled["uid"], base + ".crt", base + ".key")
                self.operations.add("enroll")
                # Usable at once: the API answered once the index held it.
                self._record("https", self._get(device), None)
                if number % 4 == 0:
                    result = subprocess.run(
                        _admin() + ["endpoint", "revoke", device[0], "--config", self.gateway.configPath],
                        capture_output=True,
                        timeout=60,
                    )
                    if result.returncode != 0:
                        self.errors.add("revoke-failed")
                        return
                    revokedAt = time.monotonic()
                    self.operations.add("revoke")
                    # How long until the daemon applies it: its requests
                    # get 063 from then on.
                    while True:
                        try:
                            [(status, fields)] = self._get(device)
                        except (ConnectionError, ssl.SSLError):
                            self.errors.add("closed-revoked")
                            if time.monotonic() - revokedAt > 10:
                                self.errors.add("revocation-never-applied")
                                return
                            continue
                        latency = time.monotonic() - revokedAt
                        if fields.get("x-ztna-error") == "063":
                            break
                        if latency > 10:
                            self.errors.add("revocation-never-applied")
                            return
                        time.sleep(0.02)
                    self.revocationLatencies.append(latency)
                    if latency > APPLY_BOUND:
                        self.errors.add("revocation-late")
                    with self._lock:
                        self._revoked.append((revokedAt, device))
                else:
                    with self._lock:
                        self._devices.append(device)
                        # A bounded working set: older devices rest.
                        del self._devices[:-20]

            self._guard("enroll", enroll)
            # About one enrollment every two seconds.
            time.sleep(max(0.0, 2.0 - (time.monotonic() - started)))

    # The run.

    def run(self) -> SoakReport:
        """
        Start the daemon, warm up, load it for C{duration} seconds, let it
        settle, and report.
        """
        g = self.gateway
        g.start()
        try:
            result = g.admin("token", "create", "--json", "--uses", "1000")
            if result.returncode != 0:
                raise RuntimeError(result.stderr.decode())
            token = json.loads(result.stdout)["token"]
            pid = g.daemon.process.pid  # type: ignore[union-attr]
            realServers = frozenset({g.ports["BACKEND"], g.ports["TLSBACKEND"]})
            first = g.issueDevice()
            self._devices.append((first.uid, first.certificate, first.key))
            loops = [self._httpsLoop, self._httpsLoop, self._tunnelLoop, lambda: self._enrollLoop(token)]

            def load(seconds: float) -> None:
                self._deadline = time.monotonic() + seconds
                threads = [threading.Thread(target=loop, daemon=True) for loop in loops]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join(seconds + 120)

            # Warm-up: the same load, not counted, then the baseline.
            load(self.warmup)
            self.operations.clear()
            self.errors.clear()
            del self.revocationLatencies[:]
            time.sleep(3)
            start = sample(pid, realServers)
            began = time.monotonic()
            load(self.duration)
            duration = time.monotonic() - began
            # Every client connection is closed; the daemon closes its
            # upstream connections when they idle out.
            deadline = time.monotonic() + 30
            end = sample(pid, realServers)
            while end.ownFds > start.ownFds and time.monotonic() < deadline:
                time.sleep(1)
                end = sample(pid, realServers)
            return SoakReport(
                duration=duration,
                operations=dict(self.operations.values),
                errors=dict(self.errors.values),
                start=start,
                end=end,
                revocationLatencies=tuple(self.revocationLatencies),
                examples=dict(self.errors.examples),
            )
        finally:
            g.stop()


def _report(value: dict[str, Any]) -> Any:
    from ztnagw.ems.api import parseDeviceReport

    return parseDeviceReport(value)


def _admin() -> list[str]:
    from tests.support.daemon import binary

    return binary("ztnagw")


def main(argv: list[str] | None = None) -> int:
    """
    Run a soak; print the report; exit 0 when it passes.
    """
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=DEFAULT_DURATION, help="seconds of load (default 600)")
    parser.add_argument("--warmup", type=float, default=None, help="seconds of warm-up before the baseline")
    parser.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    parser.add_argument("--directory", help="where the daemon's files go (default: a temporary directory)")
    options = parser.parse_args(argv)
    directory = options.directory or tempfile.mkdtemp(prefix="ztnagw-soak-")
    report = Soak(os.path.join(directory, "gateway"), options.duration, options.warmup).run()
    print(report.describe())
    if options.json:
        with open(options.json, "w") as f:
            json.dump(report.toJson(), f, indent=2)
    return 0 if not report.problems else 1


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.exit(main())
