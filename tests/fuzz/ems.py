"""
The EMS API of one C{fctems} entry assembled in memory for fuzzing: the
real L{ztnagw.ems.service.EmsApi} behind the real HTTP server protocol,
with its real CA, enroller and SQLite registry in a temporary state
directory, and registry work run at once instead of in a thread, so that a
hypothesis example is complete when C{dataReceived} returns.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Callable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet.defer import succeed
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure

from ztnagw.ems.api import DeviceReport, JsonErrorPages
from ztnagw.ems.ca import ensureCertificateAuthority
from ztnagw.ems.enrollment import Enroller
from ztnagw.ems.service import EmsApi
from ztnagw.ems.telemetry import TelemetryWriter
from ztnagw.ems.tokens import createToken
from ztnagw.http.limits import ServerLimits
from ztnagw.http.server import HTTPServerProtocol
from ztnagw.registry.sqlite import SQLiteEndpointStore
from ztnagw.tls.server import DeviceCertificateVerifier
from tests.ems.fakes import FakeEmsConnector
from tests.fuzz.frontend import LoggedFailures
from tests.tunnel.fakes import HalfCloseTransport


class InlineReactor(MemoryReactorClock):
    """
    A memory reactor whose C{callFromThread} runs the call at once (the
    work it hands back comes from L{InlineThreadPool}, on this thread).
    """

    def callFromThread(self, f: Callable[..., object], *args: object, **kwargs: object) -> None:
        """
        Run C{f} now.
        """
        f(*args, **kwargs)


class InlineThreadPool:
    """
    A thread pool that runs each call at once, on the calling thread.
    """

    def callInThreadWithCallback(
        self, onResult: Callable[[bool, object], None], f: Callable[..., object], *args: object, **kwargs: object
    ) -> None:
        """
        Run C{f} and report its result or failure to C{onResult}.
        """
        try:
            result = f(*args, **kwargs)
        except BaseException:
            onResult(False, Failure())
        else:
            onResult(True, result)

    def callInThread(self, f: Callable[..., object], *args: object, **kwargs: object) -> None:
        """
        Run C{f} now.
        """
        f(*args, **kwargs)


def makeCsr() -> str:
    """
    A valid CSR (PEM) as the forwarder makes it.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ztnagw-forward")]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode("ascii")


#: A device report as the forwarder sends it.
REPORT = DeviceReport(hostName="pc1", osType="Linux", osVersion="12", user="alice", facts={"a": "1"}).toJson()


class InMemoryEms:
    """
    One EMS API over a fresh state directory.

    @ivar token: the text of a token with many uses, so that fuzz inputs
        built around it can really enroll.
    @ivar csr: a valid CSR.
    @ivar store: the registry, for the test's own checks.
    """

    def __init__(self, stateDir: str) -> None:
        self.reactor = InlineReactor()
        self.reactor.advance(time.time())
        self.pool = InlineThreadPool()
        settings = FakeEmsConnector(1)
        self.ca = ensureCertificateAuthority(stateDir, settings, "gw1")  # type: ignore[arg-type]
        self.store = SQLiteEndpointStore(os.path.join(stateDir, "registry.sqlite"))
        with self.store.transaction() as t:
            self.token = createToken(t.cursor, self.reactor.seconds(), uses=1000)[1]
        self.csr = makeCsr()
        self.events: list[object] = []
        verifier = DeviceCertificateVerifier({1: self.ca.trustedCertificates()}, {}, {1: settings}, self.reactor)  # type: ignore[dict-item]
        self.api = EmsApi(
            self.reactor,
            1,
            settings.serialNumber,
            "0" * 32,
            self.ca,
            Enroller(self.ca, settings.serialNumber, "0" * 32),
            TelemetryWriter(self.reactor, lambda: self.store, self.pool),
            verifier,
            lambda: succeed(self.store),
            lambda address: False,
            10.0,
            self.events.append,
            threadpool=self.pool,
        )

    def close(self) -> None:
        """
        Close the registry.
        """
        self.store.close()

    def exchange(
        self, data: bytes, cuts: list[int] = (), head: bool = False  # type: ignore[assignment]
    ) -> tuple[list[tuple[int, Any]], LoggedFailures]:
        """
        Send C{data} (cut at C{cuts}) on a new connection to the API, then
        close the client's side and let every timeout pass.

        @param head: C{data} is a C{HEAD} request (its answer has no body).

        @return: each answer's status and parsed JSON body, and the failures
            logged meanwhile.
        """
        from tests.fuzz.frontend import QUIESCE

        protocol = HTTPServerProtocol(self.api, self.reactor, ServerLimits(maxBodyLength=65536), JsonErrorPages())
        transport = HalfCloseTransport()
        with LoggedFailures() as failures:
            protocol.makeConnection(transport)
            previous = 0
            for cut in sorted({c % (len(data) + 1) for c in cuts}) + [len(data)]:
                if transport.disconnecting:
                    break
                if data[previous:cut]:
                    protocol.dataReceived(data[previous:cut])
                previous = cut
            for _ in range(10):
                self.reactor.advance(QUIESCE / 10)
            protocol.connectionLost(Failure(ConnectionError("closed")))
        return readAnswers(transport.value(), head), failures


def readAnswers(output: bytes, head: bool = False) -> list[tuple[int, Any]]:
    """
    The statuses and JSON bodies of the responses in C{output}.

    @param head: the answers are to C{HEAD} requests: bodies are announced
        but not sent, and C{None} stands for them.

    @raise AssertionError: a response is not a complete JSON answer.
    """
    answers = []
    rest = output
    while rest:
        top, separator, after = rest.partition(b"\r\n\r\n")
        if not separator or not top.startswith(b"HTTP/1.1 "):
            raise AssertionError(f"not a response: {rest[:100]!r}")
        status = int(top[9:12])
        length = None
        contentType = None
        for line in top.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
            elif name.strip().lower() == b"content-type":
                contentType = value.strip()
        if status == 100:
            rest = after
            continue
        if length is None or contentType != b"application/json":
            raise AssertionError(f"answer without a length or not JSON: {top!r}")
        if head:
            answers.append((status, None))
            rest = after
            continue
        answers.append((status, json.loads(after[:length])))
        rest = after[length:]
    return answers


def enrollRequest(body: bytes, contentType: bytes = b"application/json", path: bytes = b"/api/v1/enroll") -> bytes:
    """
    An enrollment request carrying C{body}.
    """
    return (
        b"POST " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: " + contentType
        + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    )
