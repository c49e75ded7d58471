"""
The HTTPS access proxy as the integration tests run it: the real daemon
(C{twistd -n ztnagw}) with a configuration of several VIPs, the real
backend process (L{tests.integration.httpsbackend}), device certificates
issued by the daemon's own EMS CA and registered in its registry, and real
clients (curl, C{openssl s_client}, Python's C{ssl} for what curl cannot
do).

Each test gets its own daemon, directory and ports, so tests never see each
other's registry changes.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from typing import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from ztnagw.config import load
from ztnagw.ems.csr import parseCertificateSigningRequest
from ztnagw.ems.identifiers import newSerial, newUid
from ztnagw.ems.keys import certificatePem, newPrivateKey, privateKeyPem
from ztnagw.ems.signing import issueDeviceCertificate
from ztnagw.registry import openStore
from ztnagw.registry.record import EndpointRecord, canonicalSerial
from ztnagw.startup import prepare
from tests.support.daemon import Daemon, environment, freePort, runAdmin
from tests.support.pki import makeCA, makeServer

#: The VIPs of the test configuration, each on its own port.
VIPS = ("MAIN", "OPEN", "ACCEPT", "TAGS", "NEG", "DENY", "NOPOL")

#: Virtual hosts of the MAIN VIP and what they are for.
VIRTUAL_HOSTS = (
    "open.test",
    "app.test",
    "gone.test",
    "dns.test",
    "slow.test",
    "refused.test",
    "secure.test",
    "forged.test",
)

_TEMPLATE = """
config system global
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
        set serial-number "FCTEMS8825007278"
    next
end
config vpn certificate ca
    edit "backend-ca"
        set ca-file "{backendCA}"
    next
end
config firewall address
    edit "missing"
        set type fqdn
        set fqdn "nonexistent.invalid"
    next
end
config firewall access-proxy-virtual-host
    edit "open"
        set host "open.test"
        set ssl-certificate "gateway"
        set client-cert disable
    next
    edit "app"
        set host "app.test"
        set ssl-certificate "gateway"
    next
    edit "gone"
        set host "gone.test"
        set ssl-certificate "gateway"
    next
    edit "dns"
        set host "dns.test"
        set ssl-certificate "gateway"
    next
    edit "slow"
        set host "slow.test"
        set ssl-certificate "gateway"
    next
    edit "refused"
        set host "refused.test"
        set ssl-certificate "gateway"
    next
    edit "secure"
        set host "secure.test"
        set ssl-certificate "gateway"
    next
    edit "forged"
        set host "forged.test"
        set ssl-certificate "gateway"
    next
end
config firewall vip
{vips}
end
config firewall access-proxy
    edit "MAIN"
        set vip "MAIN"
        config api-gateway
            edit 1
                set service http
                config realservers
                    edit 1
                        set ip 127.0.0.1
                        set port {BACKEND}
                    next
                end
            next
            edit 2
                set service http
                set virtual-host "open"
                config realservers
                    edit 1
                        set ip 127.0.0.1
                        set port {BACKEND}
                    next
                end
            next
            edit 3
                set service http
                set virtual-host "app"
                set url-map "/only"
                config realservers
                    edit 1
                        set ip 127.0.0.1
                        set port {BACKEND}
                    next
                end
            next
            edit 4
                set service http
                set virtual-host "gone"
                config realservers
                    edit 1
                        set ip 127.0.0.1
                        set port {BACKEND}
                        set status disable
                    next
                end
            next
            edit 5
                set service http
                set virtual-host "dns"
                config realservers
                    edit 1
                        set addr-type fqdn
                        set address "missing"
                        set port {BACKEND}
                    next
                end
            next
            edit 6
                set service http
                set virtual-host "slow"
                set response-timeout 2
                config realservers
                    edit 1
                        set ip 127.0.0.1
                        set port {BACKEND}
                    next
                end
            next
            edit 7
                set service http
                set virtual-host "refused"
                config realservers
                    edit 1
                        set ip 127.0.0.1
                        set port {CLOSED}
                    next
                end
            next
            edit 8
                set service https
                set virtual-host "secure"
                config realservers
                    edit 1
                        set ip 127.0.0.1
                        set port {TLSBACKEND}
                    next
                end
            next
            edit 9
                set service https
                set virtual-host "forged"
                config realservers
                    edit 1
                        set ip 127.0.0.1
                        set port {TLSBACKEND}
                        set http-host "elsewhere.test"
                    next
                end
            next
        end
    next
{otherProxies}
end
config firewall policy
    edit 1
        set name "main"
        set srcintf "any"
        set dstintf "any"
        set srcaddr "all"
        set dstaddr "MAIN" "OPEN" "ACCEPT"
        set action accept
        set schedule "always"
        set logtraffic all
    next
    edit 2
        set name "finance-only"
        set srcintf "any"
        set dstintf "any"
        set srcaddr "all"
        set dstaddr "TAGS"
        set action accept
        set schedule "always"
        set ztna-ems-tag "EMS1_ZTNA_Finance"
    next
    edit 3
        set name "not-blocked"
        set srcintf "any"
        set dstintf "any"
        set srcaddr "all"
        set dstaddr "NEG"
        set action accept
        set schedule "always"
        set ztna-ems-tag "EMS1_ZTNA_Blocked"
        set ztna-ems-tag-negate enable
    next
    edit 4
        set name "denied"
        set srcintf "any"
        set dstintf "any"
        set srcaddr "all"
        set dstaddr "DENY"
        set action deny
        set schedule "always"
    next
end
"""

_VIP = """    edit "{name}"
        set type access-proxy
        set server-type https
        set extip 127.0.0.1
        set extintf "lo"
        set extport {port}
        set ssl-certificate "gateway"
{extra}    next"""

_PROXY = """    edit "{name}"
        set vip "{name}"
        config api-gateway
            edit 1
                set service http
                config realservers
                    edit 1
                        set ip 127.0.0.1
                        set port {backend}
                    next
                end
            next
        end
    next"""


class Device:
    """
    A device certificate and its key on disk.

    @ivar uid: its UID.
    @ivar serial: its serial number.
    @ivar certificate: the certificate file.
    @ivar key: the key file.
    """

    def __init__(self, uid: str, serial: int, certificate: str, key: str) -> None:
        self.uid = uid
        self.serial = serial
        self.certificate = certificate
        self.key = key


class Gateway:
    """
    One daemon with its backend and its devices (see the module
    docstring).

    @ivar ports: the port of each VIP, by name, and of C{BACKEND}, C{EMS}.
    """

    def __init__(self, directory: str) -> None:
        self.directory = os.path.abspath(directory)
        os.makedirs(self.directory, exist_ok=True)
        self.ports = {name: freePort() for name in VIPS + ("BACKEND", "TLSBACKEND", "EMS", "CLOSED")}
        self.configPath = os.path.join(self.directory, "gateway.conf")
        self.trafficLog = os.path.join(self.directory, "traffic.log")
        self.daemon = Daemon(self.configPath, self.directory)
        self.backends: list[subprocess.Popen] = []
        # The HTTPS real server's certificate, from a CA of its own that the
        # configuration trusts (vpn certificate ca).
        backendCA = makeCA("backend CA")
        self.backendCA, _ = backendCA.writeTo(self.directory, "backend-ca")
        self.backendCertificate, self.backendKey = makeServer(
            backendCA, names=("real.test",), ipAddresses=("127.0.0.1",)
        ).writeTo(self.directory, "backend")
        self._devices = 0
        extras = {
            "OPEN": "        set client-cert disable\n",
            "ACCEPT": "        set empty-cert-action accept\n",
        }
        vips = "\n".join(
            _VIP.format(name=name, port=self.ports[name], extra=extras.get(name, "")) for name in VIPS
        )
        others = "\n".join(_PROXY.format(name=name, backend=self.ports["BACKEND"]) for name in VIPS[1:])
        text = _TEMPLATE.format(vips=vips, otherProxies=others, backendCA=self.backendCA, **self.ports)
        with open(self.configPath, "w") as f:
            f.write(text)
        # The daemon's own start-up code makes the EMS CA and the gateway
        # certificate; making them here first lets the test issue devices.
        self.prepared = prepare(load(self.configPath))
        self.ca = os.path.join(self.directory, "state", "ems1", "ca.crt")

    # Processes.

    def start(self) -> None:
        """
        Start the backend and the daemon; wait until every VIP listens and
        the registry is loaded.
        """
        for arguments in (
            [str(self.ports["BACKEND"])],
            [str(self.ports["TLSBACKEND"]), self.backendCertificate, self.backendKey],
        ):
            backend = subprocess.Popen(
                [sys.executable, "-m", "tests.integration.httpsbackend", *arguments],
                stdout=subprocess.PIPE,
                env=environment(),
            )
            self.backends.append(backend)
            assert backend.stdout is not None
            if backend.stdout.readline().strip() != b"ready":
                raise RuntimeError("the backend did not start")
        self.daemon.start(waitPorts=[self.ports[name] for name in VIPS])
        self.waitForLog("registry loaded")

    def stop(self) -> None:
        """
        Stop the daemon and the backend.
        """
        self.daemon.stop()
        backends, self.backends = self.backends, []
        for backend in backends:
            backend.terminate()
            backend.wait(10)

    def waitForLog(self, text: str, timeout: float = 15.0) -> None:
        """
        Wait until the daemon's log holds C{text}.
        """
        deadline = time.monotonic() + timeout
        while text not in self.daemon.log():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{text!r} never appeared in the log:\n{self.daemon.log()}")
            time.sleep(0.05)

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

    # Devices.

    def issueDevice(self, uid: str | None = None, register: bool = True, tags: Sequence[str] = ()) -> Device:
        """
        A device certificate from the daemon's EMS CA, registered (always
        online) unless C{register} is false.
        """
        self._devices += 1
        uid = uid or newUid()
        key = newPrivateKey()
        request = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, uid)]))
            .sign(key, hashes.SHA256())
        )
        serial = newSerial()
        certificate = issueDeviceCertificate(
            self.prepared.authorities[1],
            parseCertificateSigningRequest(request.public_bytes(serialization.Encoding.PEM)),
            uid,
            serial,
            datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5),
        )
        base = os.path.join(self.directory, f"device{self._devices}")
        with open(base + ".crt", "wb") as f:
            f.write(certificatePem(certificate))
        fd = os.open(base + ".key", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(privateKeyPem(key))
        device = Device(uid, serial, base + ".crt", base + ".key")
        if register:
            self.register(device, tags)
        return device

    def register(self, device: Device, tags: Sequence[str] = ()) -> None:
        """
        Record C{device} in the registry (replacing any record of its UID).
        """
        config = self.prepared.config
        ems = config.emsConnectors[1]
        store = openStore(ems.registry, config.systemGlobal.stateDir, 1)
        try:
            with store.transaction() as transaction:
                transaction.put(
                    EndpointRecord(
                        uid=device.uid,
                        certSerial=canonicalSerial(device.serial),
                        emsSerial=ems.serialNumber or "",
                        tags=frozenset(tags),
                        staticPresence=True,
                    )
                )
        finally:
            store.close()
        self.settle()

    def settle(self) -> None:
        """
        Give a running daemon time to apply a registry change: its index
        polls the store every 0.25 s.
        """
        if self.daemon.process is not None:
            time.sleep(0.6)

    def admin(self, *arguments: str) -> subprocess.CompletedProcess:
        """
        Run C{ztnagw ARGUMENTS --config <this gateway's configuration>}.
        """
        return runAdmin(list(arguments), config=self.configPath)

    # Clients.

    def curl(
        self,
        vip: str,
        path: str = "/",
        device: Device | None = None,
        host: str | None = None,
        arguments: Sequence[str] = (),
        stdin: bytes | None = None,
        timeout: float = 60,
    ) -> tuple[int, dict[str, list[str]], bytes, int]:
        """
        Run curl against a VIP.

        @param host: a name to ask for in SNI and Host (resolved to
            127.0.0.1 with C{--resolve}).
        @return: the last response's status, its fields (lower-case
            names), its body, and curl's exit status.
        """
        port = self.ports[vip]
        name = host or "127.0.0.1"
        command = ["curl", "-sS", "-i", "--cacert", self.ca, "--max-time", str(int(timeout))]
        if host is not None:
            command += ["--resolve", f"{host}:{port}:127.0.0.1"]
        if device is not None:
            command += ["--cert", device.certificate, "--key", device.key]
        command += list(arguments)
        command.append(f"https://{name}:{port}{path}")
        result = subprocess.run(command, input=stdin, capture_output=True, timeout=timeout + 10)
        status, fields, body = parseResponses(result.stdout)
        return status, fields, body, result.returncode

    def trafficLines(self) -> list[dict[str, str]]:
        """
        The lines of the traffic log file, as field dictionaries.
        """
        from ztnagw.logs.line import parseKeyValue

        if not os.path.exists(self.trafficLog):
            return []
        with open(self.trafficLog, encoding="utf-8") as f:
            return [dict(parseKeyValue(line.rstrip("\n"))) for line in f if line.strip()]

    def tlsClient(self, vip: str, device: Device | None = None, serverName: str | None = None) -> ssl.SSLSocket:
        """
        A TLS connection to a VIP with Python's C{ssl} (for keep-alive and
        slow-reading clients).
        """
        context = ssl.create_default_context(cafile=self.ca)
        context.check_hostname = serverName is not None
        if device is not None:
            context.load_cert_chain(device.certificate, device.key)
        raw = socket.create_connection(("127.0.0.1", self.ports[vip]), timeout=30)
        return context.wrap_socket(raw, server_hostname=serverName)

    def backendStats(self) -> dict[str, int]:
        """
        The backend's counters, asked for directly (not through the
        gateway).
        """
        with socket.create_connection(("127.0.0.1", self.ports["BACKEND"]), timeout=10) as s:
            s.sendall(b"GET /stats HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                piece = s.recv(65536)
                if not piece:
                    break
                data += piece
        return json.loads(data.partition(b"\r\n\r\n")[2])


def parseResponses(output: bytes) -> tuple[int, dict[str, list[str]], bytes]:
    """
    The last response of curl's C{-i} output: status, fields, body.
    """
    status, fields, rest = 0, {}, output
    while rest.startswith(b"HTTP/"):
        head, _, rest = rest.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        fields = {}
        for line in lines[1:]:
            name, _, value = line.decode("latin-1").partition(":")
            fields.setdefault(name.strip().lower(), []).append(value.strip())
        if not 100 <= status <= 199:
            break
    return status, fields, rest


def readResponse(sock: ssl.SSLSocket) -> tuple[int, dict[str, str], bytes]:
    """
    Read one response with a Content-Length body from a blocking socket.
    """
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        if not piece:
            raise ConnectionError("closed before a response head")
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    fields = {}
    for line in lines[1:]:
        name, _, value = line.decode("latin-1").partition(":")
        fields[name.strip().lower()] = value.strip()
    length = int(fields.get("content-length", "0"))
    while len(body) < length:
        piece = sock.recv(65536)
        if not piece:
            raise ConnectionError("closed inside a body")
        body += piece
    return int(lines[0].split()[1]), fields, body


def opensslHandshake(port: int, serverName: str | None = None, tls12: bool = True) -> str:
    """
    What C{openssl s_client} says about a handshake with a VIP (without a
    client certificate).
    """
    command = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}"]
    if serverName is not None:
        command += ["-servername", serverName]
    if tls12:
        command.append("-tls1_2")
    result = subprocess.run(command, input=b"", capture_output=True, timeout=30)
    return result.stdout.decode("latin-1") + result.stderr.decode("latin-1")


def sampleRss(gateway: Gateway, stop: threading.Event, peaks: list[int]) -> threading.Thread:
    """
    Sample the daemon's RSS every 20 ms until C{stop} is set, keeping the
    highest value in C{peaks[0]}.
    """

    def sample() -> None:
        while not stop.is_set():
            try:
                peaks[0] = max(peaks[0], gateway.rss())
            except (OSError, RuntimeError):
                return
            time.sleep(0.02)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    return thread


def fieldsOf(text: str) -> dict[str, str]:
    """
    The fields of one log line given as text.
    """
    from ztnagw.logs.line import parseKeyValue

    return dict(parseKeyValue(text))

