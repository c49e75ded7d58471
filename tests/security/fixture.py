"""
The gateway the attack tests attack: the real daemon (C{twistd -n
ztnagw}), started through L{tests.security.resolving} so that its names
resolve through the test DNS server, in front of recording real servers
(L{tests.security.backends}) and an nginx real server that normalises
paths its own way.

It reuses the integration plumbing (L{tests.support.daemon},
L{tests.support.pki}); what is its own is a configuration built for
attacks (two VIPs, url-maps in front of nginx, a TCP forwarding access
proxy whose policies only admit the real servers' address, tight limits
and timeouts), real servers that record every byte before parsing it,
and clients that send bytes no well-behaved client library would.

Starting a daemon takes seconds, so the attack modules share one
L{SecurityGateway} (L{sharedGateway}), stopped when the test process
exits; each test resets the real servers' records first, and ends by
showing that the daemon still serves a legitimate device.  Tests that
break the registry start a gateway of their own.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from typing import Any, Iterable, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from twisted.trial.unittest import TestCase

from ztnagw.config import load
from ztnagw.registry import openStore
from ztnagw.registry.record import EndpointRecord, canonicalSerial
from ztnagw.startup import prepare
from tests.security.backends import REAL_SERVER_ADDRESS
from tests.support import pki
from tests.support.daemon import Daemon, environment, freePort, runAdmin

#: The EMS serial number of the configuration.
EMS_SERIAL = "FCTEMS8825007278"

#: Where a legitimate client connects from while an attack comes from
#: 127.0.0.1 (per-source limits count source addresses).
BYSTANDER_SOURCE = "127.0.0.3"

#: Limits of the WEB access proxy (low, so that attacks reach them).
PER_SOURCE_LIMIT = 64
PER_DEVICE_LIMIT = 16
HEADER_TIMEOUT = 5
KEEPALIVE_TIMEOUT = 10
#: Seconds a tunnel may stay silent both ways (the api-gateway's
#: idle-timeout; none by default for tunnels).
TUNNEL_IDLE_TIMEOUT = 4

_CONFIG = """\
config system global
    set hostname "gw-security"
    set state-dir "state"
    set log-file "traffic.log"
end
config system interface
    edit "lo"
        set ip 127.0.0.1 255.0.0.0
        set role lan
    next
end
config vpn certificate local
    edit "gateway"
        set certificate-file "gateway.crt"
        set private-key-file "gateway.key"
        set auto-generate enable
    next
end
config endpoint-control fctems
    edit 1
        set status enable
        set server "127.0.0.1"
        set https-port {EMS}
        set serial-number "{emsSerial}"
        set out-of-sync-threshold 10
    next
end
config firewall address
    edit "real-servers"
        set subnet {realServers} 255.255.255.255
    next
end
config firewall access-proxy-virtual-host
    edit "app"
        set host "app.test"
        set ssl-certificate "gateway"
    next
    edit "open"
        set host "open.test"
        set ssl-certificate "gateway"
        set client-cert disable
    next
    edit "paths"
        set host "paths.test"
        set ssl-certificate "gateway"
    next
    edit "prefix"
        set host "prefix.test"
        set ssl-certificate "gateway"
    next
    edit "slow"
        set host "slow.test"
        set ssl-certificate "gateway"
    next
end
config firewall vip
    edit "WEB"
        set type access-proxy
        set server-type https
        set extip 127.0.0.1
        set extintf "lo"
        set extport {WEB}
        set ssl-certificate "gateway"
    next
    edit "TUN"
        set type access-proxy
        set server-type https
        set extip 127.0.0.1
        set extintf "lo"
        set extport {TUN}
        set ssl-certificate "gateway"
    next
end
config firewall access-proxy
    edit "WEB"
        set vip "WEB"
        set http-header-timeout {headerTimeout}
        set http-keepalive-timeout {keepaliveTimeout}
{webLimits}        config api-gateway
            edit 1
                set service http
                config realservers
                    edit 1
                        set ip {realServers}
                        set port {http}
                    next
                end
            next
            edit 2
                set service http
                set virtual-host "app"
                config realservers
                    edit 1
                        set ip {realServers}
                        set port {http}
                    next
                end
            next
            edit 3
                set service http
                set virtual-host "open"
                config realservers
                    edit 1
                        set ip {realServers}
                        set port {http}
                    next
                end
            next
            edit 4
                set service http
                set virtual-host "paths"
                set url-map "/public/"
                config realservers
                    edit 1
                        set ip {realServers}
                        set port {nginx}
                    next
                end
            next
            edit 5
                set service http
                set virtual-host "prefix"
                set url-map "/public/*"
                set url-map-type wildcard
                config realservers
                    edit 1
                        set ip {realServers}
                        set port {nginx}
                    next
                end
            next
            edit 6
                set service http
                set virtual-host "slow"
                set idle-timeout 3
                config realservers
                    edit 1
                        set ip {realServers}
                        set port {http}
                    next
                end
            next
        end
    next
    edit "TUN"
        set vip "TUN"
        config api-gateway
            edit 1
                set service tcp-forwarding
                set connect-timeout 2
                set idle-timeout {tunnelIdle}
                config realservers
                    edit 1
                        set ip {realServers}
                        set mappedport {raw} {silent} {blackhole}
                    next
                    edit 2
                        set addr-type fqdn
                        set domain "*.tunnel.test"
                        set mappedport {raw} {WEB} {EMS}
                    next
                end
            next
        end
    next
end
config firewall policy
    edit 1
        set name "web"
        set srcintf "any"
        set dstintf "any"
        set srcaddr "all"
        set dstaddr "WEB"
        set action accept
        set schedule "always"
        set logtraffic all
    next
end
config firewall proxy-policy
    edit 2
        set name "tunnels"
        set proxy access-proxy
        set access-proxy "TUN"
        set srcaddr "all"
        set dstaddr "real-servers"
        set action accept
        set schedule "always"
        set logtraffic all
    next
end
"""

_NGINX = """\
worker_processes 1;
master_process off;
daemon off;
pid {directory}/nginx.pid;
error_log {directory}/nginx-error.log;
events {{ worker_connections 256; }}
http {{
    log_format record '$request_uri $uri';
    access_log {directory}/nginx-access.log record;
    client_body_temp_path {directory}/nginx-body;
    proxy_temp_path {directory}/nginx-proxy;
    fastcgi_temp_path {directory}/nginx-fastcgi;
    uwsgi_temp_path {directory}/nginx-uwsgi;
    scgi_temp_path {directory}/nginx-scgi;
    server {{
        listen {address}:{port};
        location /public/ {{ return 200 "public $uri\\n"; }}
        location /admin {{ return 200 "admin $uri\\n"; }}
        location / {{ return 404 "none $uri\\n"; }}
    }}
}}
"""


class Response:
    """
    One HTTP response as a raw client read it.

    @ivar status: the status code.
    @ivar headers: the fields, names lower-cased, repeated ones kept.
    @ivar body: the body (de-chunked).
    """

    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name: str) -> str | None:
        """
        The first value of field C{name}, or C{None}.
        """
        for key, value in self.headers:
            if key == name:
                return value
        return None

    @property
    def ztnaError(self) -> str | None:
        """
        The C{X-ZTNA-Error} field: the block page's code.
        """
        return self.header("x-ztna-error")

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.headers!r} {self.body[:200]!r}>"


def parseResponses(data: bytes) -> tuple[list[Response], bytes]:
    """
    The complete responses at the start of C{data} (bodies framed by
    C{Content-Length} or chunked; a 1xx or a 101 has none), and what is
    left after them.
    """
    responses = []
    while True:
        end = data.find(b"\r\n\r\n")
        if end < 0:
            return responses, data
        lines = data[:end].split(b"\r\n")
        status = int(lines[0].split()[1])
        headers = []
        for line in lines[1:]:
            name, _, value = line.decode("latin-1").partition(":")
            headers.append((name.strip().lower(), value.strip()))
        rest = data[end + 4 :]
        fields = dict(headers)
        if status < 200:
            body = b""
        elif fields.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                lineEnd = rest.find(b"\r\n")
                if lineEnd < 0:
                    return responses, data
                size = int(rest[:lineEnd].split(b";")[0], 16)
                if len(rest) < lineEnd + 2 + size + 2:
                    return responses, data
                body += rest[lineEnd + 2 : lineEnd + 2 + size]
                rest = rest[lineEnd + 2 + size + 2 :]
                if size == 0:
                    break
        else:
            length = int(fields.get("content-length", "0"))
            if len(rest) < length:
                return responses, data
            body, rest = rest[:length], rest[length:]
        responses.append(Response(status, headers, body))
        data = rest
        if status == 101:
            return responses, data


class Exchange:
    """
    What a raw client got for the bytes it sent.

    @ivar responses: the complete responses, in order.
    @ivar rest: bytes after them (a truncated response, tunnel data).
    @ivar closed: whether the gateway closed the connection (rather than
        the client giving up after its timeout).
    @ivar seconds: how long it took.
    """

    def __init__(self, responses: list[Response], rest: bytes, closed: bool, seconds: float) -> None:
        self.responses = responses
        self.rest = rest
        self.closed = closed
        self.seconds = seconds

    @property
    def response(self) -> Response:
        """
        The only response.

        @raise AssertionError: there was not exactly one.
        """
        if len(self.responses) != 1:
            raise AssertionError(f"expected one response, got {self.responses!r} (rest {self.rest[:200]!r})")
        return self.responses[0]

    def __repr__(self) -> str:
        return f"<Exchange {self.responses!r} rest={self.rest[:100]!r} closed={self.closed}>"


class Device:
    """
    A device certificate (with its chain) and key on disk.

    @ivar uid: the UID its record has (not necessarily what the
        certificate says: attacks present certificates that lie).
    @ivar serial: the certificate's serial number.
    @ivar certificate: the file with the certificate (and the chain sent
        with it).
    @ivar key: the key file.
    """

    def __init__(self, uid: str, serial: int, certificate: str, key: str) -> None:
        self.uid = uid
        self.serial = serial
        self.certificate = certificate
        self.key = key


class SecurityGateway:
    """
    The daemon under attack, its real servers and its devices (see the
    module docstring).

    @ivar ports: the ports of the VIPs (C{WEB}, C{TUN}), the EMS
        listener (C{EMS}), nginx and the real servers of
        L{tests.security.backends}.
    @ivar good: a registered device that is always allowed (the
        bystander whose requests must keep succeeding).
    """

    def __init__(self, directory: str, webLimits: str | None = None) -> None:
        """
        @param directory: where everything lives (created).
        @param webLimits: C{set} lines for the WEB access proxy (the
            connection limits by default).
        """
        self.directory = os.path.abspath(directory)
        os.makedirs(self.directory, exist_ok=True)
        self._backends: subprocess.Popen | None = None
        self._nginx: subprocess.Popen | None = None
        self.ports: dict[str, int] = {}
        self.configPath = os.path.join(self.directory, "gateway.conf")
        self.trafficLog = os.path.join(self.directory, "traffic.log")
        self.webLimits = webLimits if webLimits is not None else (
            f"        set max-connections-per-source {PER_SOURCE_LIMIT}\n"
            f"        set max-connections-per-device {PER_DEVICE_LIMIT}\n"
        )
        self.daemon = _ResolvingDaemon(self.configPath, self.directory)
        self._devices = 0
        self._checks = 0

    # Processes.

    def start(self) -> None:
        """
        Start the real servers, nginx and the daemon; wait until the daemon
        listens and its registry is loaded; register L{good}.
        """
        self._startBackends()
        self._startNginx()
        for name in ("WEB", "TUN", "EMS"):
            self.ports[name] = freePort()
        with open(self.configPath, "w") as f:
            f.write(
                _CONFIG.format(
                    emsSerial=EMS_SERIAL,
                    realServers=REAL_SERVER_ADDRESS,
                    headerTimeout=HEADER_TIMEOUT,
                    keepaliveTimeout=KEEPALIVE_TIMEOUT,
                    tunnelIdle=TUNNEL_IDLE_TIMEOUT,
                    webLimits=self.webLimits,
                    **self.ports,
                )
            )
        # The daemon's start-up code makes the EMS CA; making it here first
        # lets the tests issue certificates before the daemon runs.
        self.prepared = prepare(load(self.configPath))
        self.stateDir = os.path.join(self.directory, "state")
        self.caPath = os.path.join(self.stateDir, "ems1", "ca.crt")
        self.emsCA = self._emsAuthority()
        self.good = self.issueDevice()
        self.daemon.dnsPort = self.ports["dns"]
        self.daemon.start(waitPorts=[self.ports["WEB"], self.ports["TUN"], self.ports["EMS"]])
        self.waitForLog("registry loaded")

    def _startBackends(self) -> None:
        self._backends = subprocess.Popen(
            [sys.executable, "-m", "tests.security.backends"],
            stdout=subprocess.PIPE,
            env=environment(),
        )
        assert self._backends.stdout is not None
        while True:
            line = self._backends.stdout.readline().decode().strip()
            if not line:
                raise RuntimeError("the test real servers did not start")
            if line == "ready":
                break
            name, port = line.split()
            self.ports[name] = int(port)

    def _startNginx(self) -> None:
        directory = os.path.join(self.directory, "nginx")
        os.makedirs(directory, exist_ok=True)
        self.ports["nginx"] = freePort()
        self.nginxLog = os.path.join(directory, "nginx-access.log")
        path = os.path.join(directory, "nginx.conf")
        with open(path, "w") as f:
            f.write(_NGINX.format(directory=directory, address=REAL_SERVER_ADDRESS, port=self.ports["nginx"]))
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        self._nginx = subprocess.Popen(
            [nginx, "-c", path, "-p", directory], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection((REAL_SERVER_ADDRESS, self.ports["nginx"]), timeout=1):
                    return
            except OSError:
                if self._nginx.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("nginx did not start")
                time.sleep(0.05)

    def stop(self) -> None:
        """
        Stop the daemon, nginx and the real servers.
        """
        self.daemon.stop()
        for process in (self._nginx, self._backends):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self._nginx = self._backends = None

    def rss(self) -> int:
        """
        The daemon's resident set size, in bytes.
        """
        assert self.daemon.process is not None
        with open(f"/proc/{self.daemon.process.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def alive(self) -> bool:
        """
        Whether the daemon process still runs.
        """
        process = self.daemon.process
        return process is not None and process.poll() is None

    def waitForLog(self, text: str, timeout: float = 20.0) -> None:
        """
        Wait until the daemon's log holds C{text}.
        """
        deadline = time.monotonic() + timeout
        while text not in self.daemon.log():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{text!r} never appeared in the log:\n{self.daemon.log()[-4000:]}")
            time.sleep(0.05)

    def admin(self, *arguments: str) -> subprocess.CompletedProcess:
        """
        Run C{ztnagw ARGUMENTS --config <this gateway's configuration>}.
        """
        return runAdmin(list(arguments), config=self.configPath)

    # The real servers.

    def _control(self, command: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", self.ports["control"]), timeout=10) as s:
            s.sendall(command + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                piece = s.recv(1 << 20)
                if not piece:
                    break
                data += piece
        return data

    def backendStats(self) -> dict[str, Any]:
        """
        What each recording real server received since the last
        L{resetBackends}: C{{"http"|"raw"|"silent": {"connections",
        "received", "requests", "raw"}}}.
        """
        return json.loads(self._control(b"stats"))

    def resetBackends(self) -> None:
        """
        Forget what the real servers received so far (nginx's log is read
        by position instead: see L{nginxLines}).
        """
        self._control(b"reset")

    def nginxLines(self) -> list[str]:
        """
        nginx's access log so far: C{<request_uri> <uri>} per request.
        """
        if not os.path.exists(self.nginxLog):
            return []
        with open(self.nginxLog, encoding="latin-1") as f:
            return [line.rstrip("\n") for line in f]

    # Devices.

    def _emsAuthority(self) -> pki.Issued:
        directory = os.path.join(self.stateDir, "ems1")
        with open(os.path.join(directory, "ca.crt"), "rb") as f:
            certificate = x509.load_pem_x509_certificate(f.read())
        with open(os.path.join(directory, "ca.key"), "rb") as f:
            key = serialization.load_pem_private_key(f.read(), password=None)
        return pki.Issued(certificate, key)  # type: ignore[arg-type]

    def newUid(self) -> str:
        """
        A fresh UID (32 upper-case hex digits).
        """
        return os.urandom(16).hex().upper()

    def writeDevice(self, uid: str, issued: pki.Issued, chain: Sequence[pki.Issued] = ()) -> Device:
        """
        Write a certificate (followed by C{chain}) and its key for the
        clients to present.
        """
        self._devices += 1
        base = os.path.join(self.directory, f"device{self._devices}")
        with open(base + ".crt", "wb") as f:
            f.write(issued.certificatePem() + b"".join(c.certificatePem() for c in chain))
        fd = os.open(base + ".key", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(issued.keyPem())
        return Device(uid, issued.serial, base + ".crt", base + ".key")

    def issueDevice(self, uid: str | None = None, register: bool = True, **record: Any) -> Device:
        """
        A device certificate as the EMS issues it, registered (always
        online, unless C{record} says otherwise) unless C{register} is
        false.

        @param record: L{EndpointRecord} fields for its record.
        """
        uid = uid or self.newUid()
        device = self.writeDevice(uid, pki.makeDevice(self.emsCA, uid))
        if register:
            self.register(uid, device.serial, **record)
        return device

    def register(self, uid: str, serial: int, **record: Any) -> None:
        """
        Record C{uid} with C{serial} in the registry (replacing any record
        of that UID), and wait for a running daemon to see it.

        @param record: more L{EndpointRecord} fields (C{staticPresence}
            defaults to true: always online).
        """
        self.registerAll([(uid, serial, record)])

    def registerAll(self, entries: Iterable[tuple[str, int, dict[str, Any]]]) -> None:
        """
        L{register} several records in one transaction, then wait once.
        """
        config = self.prepared.config
        store = openStore(config.emsConnectors[1].registry, config.systemGlobal.stateDir, 1)
        try:
            with store.transaction() as transaction:
                for uid, serial, record in entries:
                    fields = {"staticPresence": True, **record}
                    transaction.put(
                        EndpointRecord(uid=uid, certSerial=canonicalSerial(serial), emsSerial=EMS_SERIAL, **fields)
                    )
        finally:
            store.close()
        self.settle()

    def settle(self) -> None:
        """
        Give the running daemon time to apply a registry change: its index
        polls the store every 0.25 s.
        """
        if self.alive():
            time.sleep(0.6)

    # Clients.

    def tlsContext(self, device: Device | None = None) -> ssl.SSLContext:
        """
        A client TLS context that trusts the gateway (the EMS CA issued its
        certificate) and presents C{device}.
        """
        context = ssl.create_default_context(cafile=self.caPath)
        context.check_hostname = False
        if device is not None:
            context.load_cert_chain(device.certificate, device.key)
        return context

    def connect(
        self,
        vip: str = "WEB",
        device: Device | None = None,
        serverName: str | None = None,
        source: str | None = None,
        timeout: float = 10.0,
    ) -> ssl.SSLSocket:
        """
        A TLS connection to a VIP, handshake done.

        @param serverName: the SNI name (none by default).
        @param source: the local address to connect from.
        """
        raw = socket.create_connection(
            ("127.0.0.1", self.ports[vip]),
            timeout=timeout,
            source_address=(source, 0) if source is not None else None,
        )
        return self.tlsContext(device).wrap_socket(raw, server_hostname=serverName)

    def exchange(
        self,
        data: bytes | Iterable[bytes],
        vip: str = "WEB",
        device: Device | None = None,
        serverName: str | None = None,
        source: str | None = None,
        timeout: float = 10.0,
        responses: int | None = None,
    ) -> Exchange:
        """
        Send C{data} (bytes, or pieces sent one after the other) on a new
        TLS connection, then read until the gateway closes the connection,
        C{responses} complete responses arrived, or C{timeout} seconds
        passed.
        """
        started = time.monotonic()
        sock = self.connect(vip, device, serverName, source, timeout)
        closed = False
        received = b""
        try:
            pieces = [data] if isinstance(data, bytes) else list(data)
            for piece in pieces:
                try:
                    sock.sendall(piece)
                except OSError:
                    break
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if responses is not None and len(parseResponses(received)[0]) >= responses:
                    break
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    piece = sock.recv(1 << 16)
                except (socket.timeout, TimeoutError):
                    break
                except (ssl.SSLError, ConnectionError):
                    closed = True
                    break
                if not piece:
                    closed = True
                    break
                received += piece
        finally:
            sock.close()
        parsed, rest = parseResponses(received)
        return Exchange(parsed, rest, closed, time.monotonic() - started)

    def request(
        self,
        path: str = "/",
        host: str = "127.0.0.1",
        device: Device | None = None,
        method: str = "GET",
        headers: Sequence[tuple[str, str]] = (),
        vip: str = "WEB",
        serverName: str | None = None,
        source: str | None = None,
        timeout: float = 10.0,
    ) -> Response:
        """
        One well-formed request (C{Connection: close}); its response.
        """
        lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Accept: application/json", "Connection: close"]
        lines += [f"{name}: {value}" for name, value in headers]
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return self.exchange(data, vip, device, serverName, source, timeout, responses=1).response

    def curl(self, arguments: Sequence[str], timeout: float = 30) -> subprocess.CompletedProcess:
        """
        Run curl with the EMS CA trusted (the gateway's certificate comes
        from it) and C{arguments}.
        """
        command = ["curl", "-sS", "--cacert", self.caPath, "--max-time", str(int(timeout))] + list(arguments)
        return subprocess.run(command, capture_output=True, timeout=timeout + 10)

    def trafficLines(self) -> list[dict[str, str]]:
        """
        The traffic log file's lines, as field dictionaries.
        """
        from ztnagw.logs.line import parseKeyValue

        if not os.path.exists(self.trafficLog):
            return []
        with open(self.trafficLog, encoding="utf-8") as f:
            return [dict(parseKeyValue(line.rstrip("\n"))) for line in f if line.strip()]

    # What every attack test ends with.

    def checkServing(self, test: TestCase, source: str | None = BYSTANDER_SOURCE) -> float:
        """
        Assert that the daemon still serves a legitimate device: a request
        of L{good} reaches the HTTP real server and is answered 200.

        @return: how long the request took, in seconds.
        """
        self._checks += 1
        target = f"/bystander/{self._checks}"
        started = time.monotonic()
        response = self.request(target, device=self.good, source=source)
        seconds = time.monotonic() - started
        test.assertEqual(response.status, 200, response)
        test.assertEqual(json.loads(response.body)["target"], target)
        test.assertTrue(self.alive(), "the daemon exited")
        return seconds


class _ResolvingDaemon(Daemon):
    """
    A L{Daemon} whose names resolve through the test DNS server
    (L{tests.security.resolving}).

    @ivar dnsPort: the DNS server's UDP port on 127.0.0.1.
    """

    dnsPort = 0

    def start(self, waitPorts: Sequence[int] = ()) -> None:
        """
        See L{Daemon.start}.
        """
        self._logFile = open(self.logPath, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.security.resolving", str(self.dnsPort)]
            + ["-n", "--pidfile=", "--logfile=-", "ztnagw", "--config", self.configPath],
            stdout=self._logFile,
            stderr=subprocess.STDOUT,
            env=environment(),
        )
        try:
            for port in waitPorts:
                self._waitPort(port)
        except BaseException:
            self.stop()
            raise


_shared: SecurityGateway | None = None


def sharedGateway() -> SecurityGateway:
    """
    The gateway the attack modules share, started on first use and
    stopped when the test process exits.  A daemon that died (which an
    attack test reports as its failure) is replaced for the next test.
    """
    global _shared
    if _shared is not None and not _shared.alive():
        _shared.stop()
        _shared = None
    if _shared is None:
        gateway = SecurityGateway(tempfile.mkdtemp(prefix="ztnagw-security-"))
        try:
            gateway.start()
        except BaseException:
            gateway.stop()
            raise
        atexit.register(_stopShared, gateway)
        _shared = gateway
    return _shared


def _stopShared(gateway: SecurityGateway) -> None:
    gateway.stop()
    shutil.rmtree(gateway.directory, ignore_errors=True)


class AttackCase(TestCase):
    """
    A test that attacks the shared gateway: the real servers' records are
    reset before it, so that "nothing reached a real server" means nothing
    during this test.

    @ivar gateway: the shared L{SecurityGateway}.
    """

    timeout = 120

    def setUp(self) -> None:
        self.gateway = sharedGateway()
        self.gateway.resetBackends()

    def assertNothingReached(self) -> None:
        """
        No real server received anything since the test began but the
        bystander's requests (L{SecurityGateway.checkServing}): the HTTP
        real server's bytes are exactly those requests, the tunnel real
        servers got no connection (nginx: see the path tests).
        """
        stats = self.gateway.backendStats()
        http = stats["http"]
        others = [r for r in http["requests"] if not _BYSTANDER_REQUEST.fullmatch(r)]
        leftover = _BYSTANDER_HEAD.sub("", "".join(http["raw"]))
        self.assertEqual((others, leftover), ([], ""), "the http real server received more than the bystander's requests")
        for name in ("raw", "silent"):
            record = stats[name]
            self.assertEqual(
                (record["connections"], record["received"]),
                (0, 0),
                f"the {name} real server received: {record['raw']!r}",
            )


#: What the bystander's requests look like at the real server.
_BYSTANDER_REQUEST = re.compile(r"GET /bystander/\d+")
_BYSTANDER_HEAD = re.compile(r"GET /bystander/\d+ HTTP/1\.1\r\n(?:[^\r\n]+\r\n)*\r\n")
