"""
The TCP forwarding access proxy end to end: the real daemon, the real
C{ztnagw-forward} (enrolled with the real EMS), test real servers, on
127.0.0.1.  Modes (C{-L}, rules, C{--stdio}, C{-D}), both encryption
choices, half-close, early data, every denial code as the forwarder prints
it, a revoked device losing its tunnel mid-transfer, FortiClient's request
replayed byte for byte.
"""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
import struct
import subprocess
import time

from cryptography import x509
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks

from tests.integration.test_tunnel_harness import (
    TunnelCase,
    connect,
    readAll,
)
from tests.support import pki
from ztnagw.forwarder.tunnel import Backoff, Gateway, TunnelOpener, TunnelRefused
from ztnagw.tls.client import pinnedClientCreator, spkiFingerprint
from ztnagw.tunnel.wire import TunnelTarget


class ForwardingTests(TunnelCase):
    """
    C{-L}, rules and C{--stdio}, both encryption choices.
    """

    def test_forward(self) -> None:
        """
        C{-L} with and without encryption: what the application sends right
        away (before the tunnel exists) arrives; an application that shuts
        down its write side still receives the whole answer; the forwarder
        and the gateway each log one line per tunnel, with the bytes.
        """
        forwarder = self.forwarder(
            "-L", f"0:127.0.0.1:{self.port('answer')}",
            "--rules", self.rules(),
        )
        encrypted, unencrypted = forwarder.listening(2)
        payload = os.urandom(5 << 20)
        expected = b"%d %s\n" % (len(payload), hashlib.sha256(payload).hexdigest().encode())
        for port in (encrypted, unencrypted):
            with connect(port) as sock:
                sock.sendall(payload)
                sock.shutdown(socket.SHUT_WR)
                self.assertEqual(readAll(sock), expected)
        lines = forwarder.waitFor(r"tunnel \d+ .* closed after", count=2)
        self.assertIn("(tls)", lines[0].string)
        self.assertIn("(tls=0)", lines[1].string)
        self.assertIn(f"{len(payload)} bytes sent, {len(expected)} bytes received", lines[0].string)
        deadline = time.monotonic() + 10
        while len(self.trafficLines()) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        line = self.trafficLines()[0]
        self.assertIn(f'service="tcp/{self.port("answer")}"', line)
        self.assertIn(f"lanin={len(payload)} ", line)
        self.assertIn(f"wanin={len(expected)} ", line)
        self.assertIn('action="accept"', line)
        self.assertIn("realserverid=1 ", line)
        self.assertIn('policyname="tunnels"', line)
        self.assertIn(f'clientdeviceid="{self.uid}"', line)

    def rules(self) -> str:
        """
        A rules file with one unencrypted rule to the answering server.
        """
        path = os.path.join(self.base, "rules.ini")
        with open(path, "w") as f:
            f.write(
                f"[answer-clear]\ndestination = 127.0.0.1:{self.port('answer')}\n"
                "listen = 0\nencryption = off\n"
            )
        return path

    def test_stdio(self) -> None:
        """
        C{--stdio}: the tunnel is the process's standard input and output;
        the process ends when it does.
        """
        forwarder = self.forwarder("--stdio", f"127.0.0.1:{self.port('answer')}", stdin=subprocess.PIPE)
        output, _ = forwarder.process.communicate(b"question", timeout=60)
        self.assertEqual(
            output, b"8 %s\n" % hashlib.sha256(b"question").hexdigest().encode()
        )
        self.assertEqual(forwarder.process.returncode, 0)

    def test_earlyData(self) -> None:
        """
        Bytes an application sends at once, before the gateway answered,
        reach the real server first and in order.
        """
        forwarder = self.forwarder("-L", f"0:127.0.0.1:{self.port('echo')}")
        (port,) = forwarder.listening()
        with connect(port) as sock:
            first = os.urandom(200_000)
            sock.sendall(first)
            second = os.urandom(1000)
            sock.sendall(second)
            sock.shutdown(socket.SHUT_WR)
            self.assertEqual(readAll(sock), first + second)

    def test_socks(self) -> None:
        """
        C{-D}: a SOCKS5 client names an allowed destination (by address or
        by name) and is tunnelled there; a forbidden one is refused with
        "not allowed", a name that does not resolve with "host
        unreachable".
        """
        forwarder = self.forwarder("-D", "0")
        (socksPort,) = forwarder.listening()
        echo = self.port("echo")
        for address in (b"\x01" + socket.inet_aton("127.0.0.1"), b"\x03\x09localhost"):
            with connect(socksPort) as sock:
                reply = socksConnect(sock, address, echo)
                self.assertEqual(reply, 0)
                sock.sendall(b"through socks")
                sock.shutdown(socket.SHUT_WR)
                self.assertEqual(readAll(sock), b"through socks")
        for address, port, expected in (
            (b"\x01" + socket.inet_aton("127.0.0.4"), echo, 0x02),
            (b"\x01" + socket.inet_aton("127.0.0.1"), 9, 0x02),
            (b"\x03\x0fnothing.invalid", echo, 0x04),
        ):
            with connect(socksPort) as sock:
                self.assertEqual(socksConnect(sock, address, port), expected, address)
        forwarder.waitFor("blocked by gateway: 062")
        forwarder.waitFor("blocked by gateway: 022")
        forwarder.waitFor("blocked by gateway: 023")

    def test_forticlient(self) -> None:
        """
        FortiClient's request, byte for byte, with the enrolled device's
        certificate: C{101}, then the tunnel.
        """
        request = (
            b"GET /tcp?address=127.0.0.1&port=%d&tls=1 HTTP/1.1\r\n"
            b"Host: 127.0.0.1:%d\r\n"
            b"User-Agent: Forticlient\r\n"
            b"Accept: */*\r\n"
            b"Upgrade: tcp-forwarding/1.0\r\n"
            b"Connection: Upgrade\r\n"
            b"Cookie:\r\n"
            b"Authorization: Basic\r\n"
            b"\r\n"
        ) % (self.port("echo"), self.vipPort)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(os.path.join(self.profileDirectory(), "ca.crt"))
        context.check_hostname = False
        context.load_cert_chain(
            os.path.join(self.profileDirectory(), "device.crt"),
            os.path.join(self.profileDirectory(), "device.key"),
        )
        with connect(self.vipPort) as raw, context.wrap_socket(raw) as tls:
            tls.sendall(request)
            answer = b""
            while b"\r\n\r\n" not in answer:
                answer += tls.recv(4096)
            self.assertTrue(answer.startswith(b"HTTP/1.1 101 Switching Protocols\r\n"), answer)
            tls.sendall(b"hello from FortiClient")
            echoed = b""
            while len(echoed) < 22:
                echoed += tls.recv(4096)
            self.assertEqual(echoed, b"hello from FortiClient")


def socksConnect(sock: socket.socket, address: bytes, port: int) -> int:
    """
    Negotiate SOCKS5 (no authentication) and send C{CONNECT}; the reply
    code.
    """
    sock.sendall(b"\x05\x01\x00")
    assert sock.recv(2) == b"\x05\x00"
    sock.sendall(b"\x05\x01\x00" + address + struct.pack("!H", port))
    reply = b""
    while len(reply) < 10:
        chunk = sock.recv(10 - len(reply))
        if not chunk:
            break
        reply += chunk
    return reply[1]


class DenialTests(TunnelCase):
    """
    Every ZTNA code a tunnel can be refused with, as the forwarder prints
    it; the application's connection is closed, the forwarder keeps
    running.
    """

    def refused(self, forwarder: object, port: int, code: str) -> None:
        """
        A connection to C{port} is closed without data, and the forwarder
        says C{blocked by gateway: CODE}.
        """
        with connect(port) as sock:
            sock.sendall(b"anyone?")
            self.assertEqual(readAll(sock), b"")
        forwarder.waitFor(f"blocked by gateway: {code} ")  # type: ignore[attr-defined]

    def test_policyAndDestination(self) -> None:
        """
        061 (no policy), 062 (deny policy), 064 (negated tag the device
        has), 065 (missing tag), 022 (not a real server, and tls=0 to a
        real server that requires encryption), 023 (no such name).
        """
        echo = self.port("echo")
        cases = [
            (f"0:127.0.0.3:{echo}", "061"),
            (f"0:127.0.0.4:{echo}", "062"),
            (f"0:127.0.0.6:{echo}", "064"),
            (f"0:127.0.0.5:{echo}", "065"),
            ("0:127.0.0.1:9", "022"),
            (f"0:nothing.invalid:{echo}", "023"),
        ]
        arguments = [a for spec, _ in cases for a in ("-L", spec)]
        forwarder = self.forwarder(*arguments)
        ports = forwarder.listening(len(cases))
        for port, (spec, code) in zip(ports, cases):
            self.refused(forwarder, port, code)
        clear = self.forwarder("--encryption", "off", "-L", "0:127.0.0.2:7")
        (port,) = clear.listening()
        self.refused(clear, port, "022")
        clear.waitFor("requires an encrypted tunnel")

    def test_device(self) -> None:
        """
        001 (a certificate from another CA), 066 (an EMS certificate of a
        device the registry does not know), 067 (a registered device that
        never reported), 063 (revoked), 064 (quarantined).
        """
        echo = self.port("echo")
        spec = f"0:127.0.0.1:{echo}"
        authority = self.emsAuthority()
        stranger = pki.makeDevice(pki.makeCA("not the EMS", keySlot=31), pki.DEVICE_UID)
        unknown = pki.makeDevice(authority, "0123456789ABCDEF0123456789ABCDEF", keySlot=32)
        silent = pki.makeDevice(authority, "FEDCBA9876543210FEDCBA9876543210", keySlot=33)
        certificate = os.path.join(self.base, "silent.crt")
        with open(certificate, "wb") as f:
            f.write(silent.certificatePem())
        self.admin("endpoint", "register", "--cert", certificate)
        for issued, name, code in ((stranger, "stranger", "001"), (unknown, "unknown", "066"), (silent, "silent", "067")):
            forwarder = self.forwarder("-L", spec, *self.identity(issued, name), profile=None)
            (port,) = forwarder.listening()
            self.refused(forwarder, port, code)
        forwarder = self.forwarder("-L", spec)
        (port,) = forwarder.listening()
        self.admin("endpoint", "quarantine", self.uid)
        time.sleep(1.5)
        self.refused(forwarder, port, "064")
        self.admin("endpoint", "unquarantine", self.uid)
        self.admin("endpoint", "revoke", self.uid)
        time.sleep(1.5)
        self.refused(forwarder, port, "063")

    @inlineCallbacks
    def test_noCertificate(self) -> Deferred[None]:  # type: ignore[misc]
        """
        002: the forwarder's opener without a client certificate.
        """
        with open(os.path.join(self.stateDir, "gw.crt"), "rb") as f:
            gateway = x509.load_pem_x509_certificate(f.read())
        opener = TunnelOpener(
            reactor,
            Gateway("127.0.0.1", self.vipPort),
            pinnedClientCreator("127.0.0.1", spkiFingerprint(gateway)),
            b"ztnagw-forward/test",
            retryFor=0,
            backoff=Backoff(),
        )
        error = yield self.assertFailure(
            opener.open(TunnelTarget("127.0.0.1", self.port("echo"))), TunnelRefused
        )
        self.assertEqual(str(error), "blocked by gateway: 002 no client certificate was presented (The browser or client sent no device certificate.)")


class RevocationTests(TunnelCase):
    """
    A device revoked mid-transfer loses its tunnel within a second.
    """

    def test_revokeMidTransfer(self) -> None:
        """
        While bytes flow through a tunnel, C{ztnagw endpoint revoke} ends it
        within a second; the gateway logs why.
        """
        forwarder = self.forwarder("-L", f"0:127.0.0.1:{self.port('echo')}")
        (port,) = forwarder.listening()
        sock = connect(port)
        self.addCleanup(sock.close)
        block = os.urandom(64 << 10)
        sock.sendall(block)
        received = 0
        while received < len(block):
            received += len(sock.recv(1 << 16))
        sock.settimeout(0.05)
        self.admin("endpoint", "revoke", self.uid)
        revoked = time.monotonic()
        closedAt = None
        while time.monotonic() - revoked < 5:
            try:
                sock.sendall(block)
                data = sock.recv(1 << 16)
            except socket.timeout:
                continue
            except OSError:
                closedAt = time.monotonic()
                break
            if not data:
                closedAt = time.monotonic()
                break
        self.assertIsNotNone(closedAt, "the tunnel is still open 5 s after the revocation")
        self.assertLess(closedAt - revoked, 1.0)
        self.assertIn('logid="9900069901"', self.daemon.log())
