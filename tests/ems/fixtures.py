"""
A running EMS listener in the test process, for tests that talk to it over
real sockets (the EMS API, the forwarder's enrollment and agent).

L{RunningEms} assembles what the daemon assembles for one C{fctems} entry
(CA, listener certificate, registry with its index, the shared verifier,
L{ztnagw.ems.service.EmsService}) on 127.0.0.1 with a port the kernel
chose, in a temporary state directory, with the real reactor.
"""

from __future__ import annotations

import os
from typing import Any

from attrs import frozen
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks

from ztnagw.ems.ca import ensureCertificateAuthority
from ztnagw.ems.listener import ensureListenerCertificate
from ztnagw.ems.service import EmsService
from ztnagw.ems.stores import SharedStore
from ztnagw.ems.tokens import createToken
from ztnagw.logs.entries import EventLog
from ztnagw.registry.index import EndpointIndex
from ztnagw.registry.sqlite import SQLiteEndpointStore
from ztnagw.tls.server import DeviceCertificateVerifier


@frozen
class EmsSettings:
    """
    The C{fctems} entry the fixture runs.
    """

    id: int = 1
    serialNumber: str = "FCTEMS8825007278"
    tenantId: str = "0" * 32
    httpsPort: int = 0
    outOfSyncThreshold: int = 10
    server: str = "127.0.0.1"
    caCertificate: str | None = None


class RunningEms:
    """
    An EMS listener on 127.0.0.1.

    @ivar events: the event logs it wrote.
    @ivar port: the port it listens on, once started.
    @ivar pin: the listener's pin.
    @ivar ca: its CA.
    @ivar store: a registry connection for the test's own checks.
    """

    def __init__(
        self,
        stateDir: str,
        settings: EmsSettings = EmsSettings(),
        enroller: Any = None,
        pollInterval: float = 0.05,
    ) -> None:
        self.stateDir = stateDir
        self.settings = settings
        self.ca = ensureCertificateAuthority(stateDir, settings, "gw1")  # type: ignore[arg-type]
        self.listener = ensureListenerCertificate(stateDir, settings.id, settings.server, self.ca, "gw1")
        self.pin = self.listener.pin
        self.path = os.path.join(stateDir, f"ems{settings.id}", "registry.sqlite")
        self.shared = SharedStore(lambda: SQLiteEndpointStore(self.path))
        self.index = EndpointIndex(self.shared.acquire, reactor, pollInterval=pollInterval)
        self.verifier = DeviceCertificateVerifier(
            {settings.id: self.ca.trustedCertificates()},
            {settings.id: self.index},
            {settings.id: settings},
            reactor,
        )
        self.events: list[EventLog] = []
        self.service = EmsService(
            reactor,
            settings,
            self.ca,
            self.listener,
            self.index,
            self.verifier,
            self.shared.acquire,
            lambda address: address == "127.0.0.1",
            self.events.append,
            ("127.0.0.1:11443",),
            port=0,
            enroller=enroller,
        )
        self.store = self.shared.acquire()
        self.port = 0

    @property
    def url(self) -> str:
        """
        The EMS URL.
        """
        return f"https://127.0.0.1:{self.port}"

    @inlineCallbacks
    def start(self) -> Any:
        """
        Load the index and listen.
        """
        yield self.index.start()
        self.service.startService()
        self.port = self.service.port.getHost().port

    @inlineCallbacks
    def stop(self) -> Any:
        """
        Stop listening and close everything.
        """
        yield self.service.stopService()
        yield self.index.stop()
        self.store.close()
        # Let the aborted connections' ends finish closing.
        from twisted.internet.task import deferLater

        yield deferLater(reactor, 0.01, lambda: None)

    def token(self, **kwargs: Any) -> str:
        """
        Create a token now; its text.
        """
        with self.store.transaction() as t:
            return createToken(t.cursor, reactor.seconds(), **kwargs)[1]

    def waitForRecord(self, uid: str, predicate: Any, timeout: float = 5.0) -> Deferred[None]:
        """
        Fire once the index holds a record for C{uid} for which
        C{predicate(record)} is true (the index polls the store).
        """
        from twisted.internet.task import deferLater

        deadline = reactor.seconds() + timeout

        def holds() -> bool:
            record = self.index.lookup(uid)
            return record is not None and bool(predicate(record))

        @inlineCallbacks
        def wait() -> Any:
            while not holds():
                if reactor.seconds() > deadline:
                    raise AssertionError("the index never reached the expected state")
                yield deferLater(reactor, 0.02, lambda: None)

        return wait()


def caFile(ems: RunningEms, directory: str) -> str:
    """
    Write the EMS CA certificate to a file, as an administrator hands it out.
    """
    path = os.path.join(directory, "ems-ca.pem")
    os.makedirs(directory, exist_ok=True)
    with open(path, "wb") as f:
        f.write(ems.ca.certificatePem())
    return path
