"""
The real daemon with real-server pools, for the pools, WebSocket and
identity integration tests: a configuration of one VIP whose api-gateways
use pools of real servers run by the test itself (small threaded HTTP
servers that say who they are and echo the fields they got, and a
WebSocket echo server), device certificates from the daemon's EMS CA.
"""

from __future__ import annotations

import datetime
import http.server
import json
import os
import socketserver
import ssl
import threading
import time
import urllib.request
from typing import Any

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
from tests.integration.httpsfixture import Device
from tests.support.daemon import Daemon, freePort, runAdmin

HEAD = """
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
config firewall vip
    edit "VIP"
        set type access-proxy
        set server-type https
        set extip 127.0.0.1
        set extintf "lo"
        set extport {VIP}
        set ssl-certificate "gateway"
    next
end
config firewall access-proxy
    edit "AP"
        set vip "VIP"
        set http-keepalive-timeout 2
        config api-gateway
{gateways}
        end
    next
end
{profiles}
config firewall policy
    edit 1
        set name "allow"
        set srcintf "any"
        set dstintf "any"
        set srcaddr "all"
        set dstaddr "VIP"
        set action accept
        set schedule "always"
        set logtraffic all
{policyExtra}
    next
end
"""


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = json.dumps(
            {"server": self.server.label, "path": self.path, "headers": [list(p) for p in self.headers.items()]}  # type: ignore[attr-defined]
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = _answer
    do_POST = _answer

    def log_message(self, *args: Any) -> None:
        pass


class Backend:
    """
    A threaded HTTP server on 127.0.0.1 that answers every request with
    JSON naming itself and the fields it got; it can be stopped and
    started again on the same port (a real server that dies and comes
    back).
    """

    def __init__(self, label: str, port: int | None = None) -> None:
        self.label = label
        self.port = port or freePort()
        self._server: socketserver.TCPServer | None = None

    def start(self) -> None:
        """
        Listen (again).
        """
        server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), _Handler)
        server.daemon_threads = True
        # Health checks and aborted relays reset connections: not news.
        server.handle_error = lambda request, address: None  # type: ignore[method-assign]
        server.label = self.label  # type: ignore[attr-defined]
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """
        Stop listening and close.
        """
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()


class PoolGateway:
    """
    One daemon over C{gateways} (the api-gateway entries) in
    C{directory}.
    """

    def __init__(self, directory: str, gateways: str, profiles: str = "", policyExtra: str = "", **ports: int) -> None:
        self.directory = os.path.abspath(directory)
        os.makedirs(self.directory, exist_ok=True)
        self.vipPort = freePort()
        self.configPath = os.path.join(self.directory, "gateway.conf")
        self.trafficLog = os.path.join(self.directory, "traffic.log")
        text = HEAD.format(
            EMS=freePort(), VIP=self.vipPort, gateways=gateways.format(**ports),
            profiles=profiles, policyExtra=policyExtra,
        )
        with open(self.configPath, "w") as f:
            f.write(text)
        self.prepared = prepare(load(self.configPath))
        self.ca = os.path.join(self.directory, "state", "ems1", "ca.crt")
        self.daemon = Daemon(self.configPath, self.directory)
        self._devices = 0

    def start(self) -> None:
        """
        Start the daemon and wait for its VIP and registry.
        """
        self.daemon.start(waitPorts=[self.vipPort])
        deadline = time.monotonic() + 15
        while "registry loaded" not in self.daemon.log():
            if time.monotonic() > deadline:
                raise RuntimeError(self.daemon.log())
            time.sleep(0.05)

    def stop(self) -> None:
        """
        Stop the daemon.
        """
        self.daemon.stop()

    def admin(self, *arguments: str) -> Any:
        """
        Run the admin command with this gateway's configuration.
        """
        return runAdmin(list(arguments), config=self.configPath)

    def issueDevice(self) -> Device:
        """
        A registered device certificate from the daemon's EMS CA.
        """
        self._devices += 1
        uid = newUid()
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
        config = self.prepared.config
        ems = config.emsConnectors[1]
        store = openStore(ems.registry, config.systemGlobal.stateDir, 1)
        try:
            with store.transaction() as transaction:
                transaction.put(
                    EndpointRecord(
                        uid=uid,
                        certSerial=canonicalSerial(serial),
                        emsSerial=ems.serialNumber or "",
                        staticPresence=True,
                    )
                )
        finally:
            store.close()
        time.sleep(0.6)
        return Device(uid, serial, base + ".crt", base + ".key")

    def context(self, device: Device | None) -> ssl.SSLContext:
        """
        A client TLS context trusting the gateway, with C{device}'s
        certificate.
        """
        context = ssl.create_default_context(cafile=self.ca)
        context.check_hostname = False
        if device is not None:
            context.load_cert_chain(device.certificate, device.key)
        return context

    def get(self, path: str, device: Device | None, host: str = "app.test", method: str = "GET",
            headers: dict[str, str] | None = None, body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
        """
        One request through the VIP (a fresh connection).
        """
        request = urllib.request.Request(
            f"https://127.0.0.1:{self.vipPort}{path}", method=method, data=body, headers={"Host": host, **(headers or {})}
        )
        try:
            with urllib.request.urlopen(request, context=self.context(device), timeout=30) as response:
                return response.status, dict(response.headers.items()), response.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers.items()), e.read()

    def lines(self, logid: str) -> list[dict[str, str]]:
        """
        The log file's lines with C{logid}.
        """
        from ztnagw.logs.line import parseKeyValue

        if not os.path.exists(self.trafficLog):
            return []
        with open(self.trafficLog, encoding="utf-8") as f:
            found = [dict(parseKeyValue(line.rstrip("\n"))) for line in f if line.strip()]
        return [line for line in found if line.get("logid") == logid]


def waitFor(predicate: Any, timeout: float = 15.0, what: str = "condition") -> None:
    """
    Wait (polling) until C{predicate()} is true.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)
