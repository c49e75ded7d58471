"""
Plumbing for the TFACP integration tests (C{test_tunnel_*}): the real
daemon with a TCP forwarding access proxy and an EMS, a device enrolled
with the real C{ztnagw-forward enroll}, real forwarder processes, and test
real servers in a process of their own.  No tests here.

Run as a program, the module is that real-server process::

    python -m tests.integration.test_tunnel_harness

It listens on 127.0.0.1 (ports chosen by the kernel) and prints one line
per service, C{KIND PORT}, then serves until killed:

  - C{echo}: sends back what it receives; finishes sending when its client
    does (half-close);
  - C{answer}: reads until its client finishes sending, then answers
    C{<count> <sha256>} of what it read, and closes;
  - C{source}: reads one line C{<count> <seed>} and sends C{count} bytes of
    L{stream}C{(seed)} (with backpressure), then closes.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import resource
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from typing import Iterator

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from twisted.trial.unittest import TestCase

from tests.support import pki
from tests.support.daemon import Daemon, binary, environment, freePort, runAdmin

KINDS = ("echo", "answer", "source")

#: The EMS serial number of the test configuration.
EMS_SERIAL = "FCTEMS8825007278"

#: The block L{stream} repeats.
_BLOCK = 1 << 20


def stream(seed: int, count: int) -> Iterator[bytes]:
    """
    C{count} bytes, derived from C{seed}, in pieces of at most 1 MiB (a
    random block repeated: cheap to make, and any shift or loss changes its
    hash).
    """
    block = random.Random(seed).randbytes(_BLOCK)
    left = count
    while left > 0:
        piece = block[: min(left, _BLOCK)]
        left -= len(piece)
        yield piece


def streamDigest(seed: int, count: int) -> str:
    """
    The SHA-256 of L{stream}C{(seed, count)}.
    """
    digest = hashlib.sha256()
    for piece in stream(seed, count):
        digest.update(piece)
    return digest.hexdigest()


def raiseFileLimit(wanted: int = 16384) -> None:
    """
    Raise this process's open-file limit (children inherit it).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


# ---------------------------------------------------------------- backends


def _serve() -> None:
    from twisted.internet import reactor
    from twisted.internet.interfaces import IHalfCloseableProtocol
    from twisted.internet.protocol import Factory, Protocol
    from zope.interface import implementer

    raiseFileLimit()

    @implementer(IHalfCloseableProtocol)
    class Echo(Protocol):
        def dataReceived(self, data: bytes) -> None:
            self.transport.write(data)

        def readConnectionLost(self) -> None:
            self.transport.loseConnection()

        def writeConnectionLost(self) -> None:
            pass

    @implementer(IHalfCloseableProtocol)
    class Answer(Protocol):
        def connectionMade(self) -> None:
            self.count = 0
            self.digest = hashlib.sha256()

        def dataReceived(self, data: bytes) -> None:
            self.count += len(data)
            self.digest.update(data)

        def readConnectionLost(self) -> None:
            self.transport.write(b"%d %s\n" % (self.count, self.digest.hexdigest().encode()))
            self.transport.loseConnection()

        def writeConnectionLost(self) -> None:
            pass

    @implementer(IHalfCloseableProtocol)
    class Source(Protocol):
        def connectionMade(self) -> None:
            self.line = b""
            self.pieces: Iterator[bytes] | None = None

        def dataReceived(self, data: bytes) -> None:
            if self.pieces is not None:
                return
            self.line += data
            if b"\n" in self.line:
                count, seed = self.line.split(b"\n", 1)[0].split()
                self.pieces = stream(int(seed), int(count))
                self.transport.registerProducer(self, False)

        def resumeProducing(self) -> None:
            assert self.pieces is not None
            piece = next(self.pieces, None)
            if piece is None:
                self.transport.unregisterProducer()
                self.transport.loseConnection()
                return
            self.transport.write(piece)

        def pauseProducing(self) -> None:
            pass

        def stopProducing(self) -> None:
            self.pieces = iter(())

        def readConnectionLost(self) -> None:
            pass

        def writeConnectionLost(self) -> None:
            pass

    for kind, protocol in (("echo", Echo), ("answer", Answer), ("source", Source)):
        port = reactor.listenTCP(0, Factory.forProtocol(protocol), backlog=2048, interface="127.0.0.1")
        sys.stdout.write(f"{kind} {port.getHost().port}\n")
    sys.stdout.flush()
    reactor.run()


class Backends:
    """
    The test real servers, in their own process.

    @ivar ports: the port of each kind.
    """

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.test_tunnel_harness"],
            stdout=subprocess.PIPE,
            env=environment(),
        )
        self.ports: dict[str, int] = {}
        assert self.process.stdout is not None
        for _ in KINDS:
            line = self.process.stdout.readline().decode()
            if not line:
                raise RuntimeError("the test real servers did not start")
            kind, port = line.split()
            self.ports[kind] = int(port)

    def stop(self) -> None:
        """
        Stop the process.
        """
        self.process.kill()
        self.process.wait()


# ---------------------------------------------------------------- forwarder


class Forwarder:
    """
    A C{ztnagw-forward} process, its standard error read as it comes.

    @ivar lines: what it printed on standard error so far.
    """

    def __init__(self, arguments: list[str], env: dict[str, str], stdin: int | None = None) -> None:
        self.process = subprocess.Popen(
            binary("ztnagw-forward") + arguments,
            stdin=stdin if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for raw in self.process.stderr:
            with self._changed:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def waitFor(self, pattern: str, timeout: float = 30.0, count: int = 1) -> list[re.Match[str]]:
        """
        Wait until C{count} lines matching C{pattern} were printed.

        @raise AssertionError: they were not within C{timeout} seconds (or
            the process ended); the message holds what it printed.
        """
        expression = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                matches = [m for m in map(expression.search, self.lines) if m]
                if len(matches) >= count:
                    return matches
                left = deadline - time.monotonic()
                if left <= 0 or (self.process.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(
                        f"no {count} line(s) matching {pattern!r}:\n" + "\n".join(self.lines)
                    )
                self._changed.wait(min(left, 0.5))

    def listening(self, count: int = 1) -> list[int]:
        """
        Wait for the forwarder to listen; the ports of its C{-L}/rules
        listeners and SOCKS servers, in the order it printed them.
        """
        matches = self.waitFor(r"(?:forwarding|SOCKS5 server on) \S+:(\d+)", count=count)
        return [int(m.group(1)) for m in matches]

    @property
    def pid(self) -> int:
        """
        The process id.
        """
        return self.process.pid

    def stop(self, timeout: float = 20.0) -> int:
        """
        SIGTERM; wait; the exit status.
        """
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(5)
        return self.process.returncode


# ---------------------------------------------------------------- daemon


def configuration(stateDir: str, vipPort: int, emsPort: int, ports: list[int], threshold: int = 180) -> str:
    """
    The test gateway: one EMS; one VIP on 127.0.0.1:C{vipPort} whose
    access proxy has one tcp-forwarding api-gateway.  Real servers:
    127.0.0.1 and the name C{localhost} on C{ports}; 127.0.0.2:7 with
    C{tunnel-encryption enable}.  Proxy-policies: 127.0.0.4 denied (062);
    127.0.0.5 needs tag C{NeedTag} (065); 127.0.0.6 for devices without
    tag C{Banned} (064 for those with it); 127.0.0.1 and 127.0.0.2 allowed
    with traffic logged; nothing else (061).
    """
    mapped = " ".join(str(p) for p in ports)
    return textwrap.dedent(
        f"""\
        config system global
            set hostname "gw1"
            set state-dir "{stateDir}"
        end
        config system interface
            edit "lo"
                set ip 127.0.0.1 255.0.0.0
                set role lan
            next
        end
        config vpn certificate local
            edit "gw"
                set certificate-file "gw.crt"
                set private-key-file "gw.key"
                set auto-generate enable
            next
        end
        config endpoint-control fctems
            edit 1
                set status enable
                set server "127.0.0.1"
                set https-port {emsPort}
                set serial-number "{EMS_SERIAL}"
                set out-of-sync-threshold {threshold}
            next
        end
        config firewall address
            edit "served"
                set type iprange
                set start-ip 127.0.0.1
                set end-ip 127.0.0.2
            next
            edit "denied"
                set subnet 127.0.0.4 255.255.255.255
            next
            edit "tagged"
                set subnet 127.0.0.5 255.255.255.255
            next
            edit "unbanned"
                set subnet 127.0.0.6 255.255.255.255
            next
        end
        config firewall vip
            edit "vip"
                set type access-proxy
                set server-type https
                set extip 127.0.0.1
                set extintf "lo"
                set extport {vipPort}
                set ssl-certificate "gw"
            next
        end
        config firewall access-proxy
            edit "proxy"
                set vip "vip"
                config api-gateway
                    edit 1
                        set service tcp-forwarding
                        set url-map "/tcp"
                        config realservers
                            edit 1
                                set ip 127.0.0.1
                                set mappedport {mapped}
                            next
                            edit 2
                                set addr-type fqdn
                                set domain "localhost"
                                set mappedport {mapped}
                            next
                            edit 3
                                set ip 127.0.0.2
                                set port 7
                                set tunnel-encryption enable
                            next
                        end
                    next
                end
            next
        end
        config firewall proxy-policy
            edit 1
                set name "denied"
                set proxy access-proxy
                set access-proxy "proxy"
                set srcaddr "all"
                set dstaddr "denied"
                set action deny
                set schedule "always"
            next
            edit 2
                set name "tagged"
                set proxy access-proxy
                set access-proxy "proxy"
                set srcaddr "all"
                set dstaddr "tagged"
                set ztna-ems-tag "EMS1_ZTNA_NeedTag"
                set action accept
                set schedule "always"
            next
            edit 3
                set name "unbanned"
                set proxy access-proxy
                set access-proxy "proxy"
                set srcaddr "all"
                set dstaddr "unbanned"
                set ztna-ems-tag "EMS1_ZTNA_Banned"
                set ztna-ems-tag-negate enable
                set action accept
                set schedule "always"
            next
            edit 4
                set name "tunnels"
                set proxy access-proxy
                set access-proxy "proxy"
                set srcaddr "all"
                set dstaddr "served"
                set action accept
                set schedule "always"
                set logtraffic all
            next
        end
        """
    )


class TunnelCase(TestCase):
    """
    A daemon with the test configuration, the test real servers, and an
    enrolled device (profile C{default}).

    @cvar servicePorts: more ports real servers use (besides the test
        real servers').
    """

    servicePorts: tuple[int, ...] = ()
    timeout = 300

    def setUp(self) -> None:
        raiseFileLimit()
        self.base = os.path.abspath(self.mktemp())
        os.makedirs(self.base)
        self.backends = Backends()
        self.addCleanup(self.backends.stop)
        self.stateDir = os.path.join(self.base, "state")
        self.vipPort = freePort()
        self.emsPort = freePort()
        ports = sorted(set(self.backends.ports.values()) | set(self.servicePorts))
        self.configPath = os.path.join(self.base, "ztnagw.conf")
        with open(self.configPath, "w") as f:
            f.write(configuration(self.stateDir, self.vipPort, self.emsPort, ports))
        self.daemon = Daemon(self.configPath, self.base)
        self.daemon.start(waitPorts=[self.vipPort, self.emsPort])
        self.addCleanup(self.daemon.stop)
        self.env = environment()
        self.env["XDG_CONFIG_HOME"] = os.path.join(self.base, "config")
        self.uid = self.enroll("default", "--tag", "Banned")
        self.forwarders: list[Forwarder] = []
        self.addCleanup(self._stopForwarders)

    def _stopForwarders(self) -> None:
        for forwarder in self.forwarders:
            forwarder.stop()

    def admin(self, *arguments: str) -> str:
        """
        Run C{ztnagw ARGUMENTS --config ...}; it must succeed; its output.
        """
        result = runAdmin(list(arguments), config=self.configPath)
        self.assertEqual(result.returncode, 0, result.stderr.decode())
        return result.stdout.decode()

    def enroll(self, profile: str, *tokenOptions: str) -> str:
        """
        Enroll a device into C{profile} with a fresh token; its UID.
        """
        created = json.loads(self.admin("token", "create", "--json", *tokenOptions))
        result = subprocess.run(
            binary("ztnagw-forward")
            + ["enroll", "--ems", f"https://127.0.0.1:{self.emsPort}", "--token", created["token"],
               "--pin", created["enroll"]["pin"], "--profile", profile],
            capture_output=True,
            env=self.env,
            timeout=60,
        )
        self.assertEqual(result.returncode, 0, result.stderr.decode())
        with open(os.path.join(self.profileDirectory(profile), "profile.json")) as f:
            return str(json.load(f)["uid"])

    def profileDirectory(self, name: str = "default") -> str:
        """
        Where profile C{name} lives.
        """
        return os.path.join(self.base, "config", "ztnagw-forward", name)

    def forwarder(self, *arguments: str, profile: str | None = "default", stdin: int | None = None) -> Forwarder:
        """
        Start C{ztnagw-forward ARGUMENTS} towards the VIP (stopped at the
        end of the test).
        """
        command = list(arguments) + ["--gateway", f"127.0.0.1:{self.vipPort}"]
        if profile is not None:
            command += ["--profile", profile]
        forwarder = Forwarder(command, self.env, stdin)
        self.forwarders.append(forwarder)
        return forwarder

    def port(self, kind: str) -> int:
        """
        The port of a test real server.
        """
        return self.backends.ports[kind]

    def emsAuthority(self) -> pki.Issued:
        """
        The daemon's EMS CA, with its key (read from the state directory).
        """
        directory = os.path.join(self.stateDir, "ems1")
        with open(os.path.join(directory, "ca.crt"), "rb") as f:
            certificate = x509.load_pem_x509_certificate(f.read())
        with open(os.path.join(directory, "ca.key"), "rb") as f:
            key = serialization.load_pem_private_key(f.read(), password=None)
        return pki.Issued(certificate, key)  # type: ignore[arg-type]

    def identity(self, issued: pki.Issued, name: str) -> list[str]:
        """
        Write C{issued} as a certificate and key file; the forwarder
        options that use it (and the EMS CA to check the gateway).
        """
        directory = os.path.join(self.base, name)
        os.makedirs(directory, exist_ok=True)
        certificate, key = issued.writeTo(directory, name)
        os.chmod(key, 0o600)
        ca = os.path.join(self.profileDirectory(), "ca.crt")
        return ["--cert", certificate, "--key", key, "--ca", ca]

    def trafficLines(self) -> list[str]:
        """
        The traffic log lines of tunnels the daemon logged so far.
        """
        return [
            line
            for line in self.daemon.log().splitlines()
            if 'logid="0005000024"' in line and 'service="tcp/' in line
        ]


def connect(port: int, timeout: float = 30.0) -> socket.socket:
    """
    A TCP connection to 127.0.0.1:C{port}.
    """
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def readAll(sock: socket.socket) -> bytes:
    """
    Read until the peer finishes sending.
    """
    chunks = []
    while True:
        chunk = sock.recv(1 << 16)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def rss(pid: int) -> int:
    """
    The resident set size of process C{pid}, in bytes.
    """
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


class PeakMemory:
    """
    Samples the resident set size of processes until stopped; the largest
    seen for each.
    """

    def __init__(self, pids: list[int], interval: float = 0.05) -> None:
        self.peaks = {pid: rss(pid) for pid in pids}
        self._stop = threading.Event()
        self._interval = interval
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(self._interval):
            for pid in self.peaks:
                try:
                    self.peaks[pid] = max(self.peaks[pid], rss(pid))
                except (OSError, AssertionError):
                    pass

    def stop(self) -> dict[int, int]:
        """
        Stop sampling; the peaks.
        """
        self._stop.set()
        self._thread.join()
        return self.peaks


if __name__ == "__main__":
    _serve()
