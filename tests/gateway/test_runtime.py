"""
Tests for L{ztnagw.gateway.runtime} and L{ztnagw.gateway.vip}: the VIPs
the daemon listens on and the log files it keeps.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from ztnagw.config import loads
from ztnagw.gateway.runtime import AccessProxyService, LogFilesService, logDestinations
from ztnagw.gateway.vip import certificateDNSNames
from ztnagw.logs import FileLogDestination, LoggerLogDestination, LogFormat, LogWriter
from ztnagw.logs.testing import MemoryLogDestination
from ztnagw.startup import StartupFailed, prepare
from ztnagw.tls.server import DeviceCertificateVerifier, ServerConnectionCreator
from tests.gateway.fakes import ACCESS_PROXY, CONFIG, POLICY, MemoryIndex, TableResolver
from tests.support.pki import makeCA, makeServer


class FakePort:
    """
    A listening port that records being stopped.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.stopped = False

    def getHost(self) -> IPv4Address:
        """
        The bound address.
        """
        return IPv4Address("TCP", "127.0.0.1", self.port)

    def stopListening(self) -> None:
        """
        Record the stop.
        """
        self.stopped = True


class FakeReactor(Clock):
    """
    A clock that runs calls from threads at once.
    """

    def callFromThread(self, f: Any, *args: Any, **kwargs: Any) -> None:
        """
        Run C{f} now.
        """
        f(*args, **kwargs)


def _prepared(test: SynchronousTestCase, extra: str = "", accessProxy: str = ACCESS_PROXY, system: str = "") -> Any:
    state = test.mktemp()
    os.makedirs(state)
    text = f'config system global\n    set state-dir "{os.path.abspath(state)}"\n{system}end\n' + CONFIG.replace("#EMS#", "") + accessProxy + extra + POLICY
    return prepare(loads(text))


class AccessProxyServiceTests(SynchronousTestCase):
    """
    Tests for L{AccessProxyService}.
    """

    def _service(self, prepared: Any) -> tuple[AccessProxyService, list[tuple[Any, ...]]]:
        listened: list[tuple[Any, ...]] = []

        def listen(reactor: Any, port: int, interface: str, creator: Any, factory: Any) -> FakePort:
            listened.append((port, interface, creator, factory))
            return FakePort(port)

        clock = FakeReactor()
        index = MemoryIndex()
        verifier = DeviceCertificateVerifier(
            {1: prepared.authorities[1].certificate}, {1: index}, {1: prepared.config.emsConnectors[1]}, clock
        )
        writer = LogWriter(clock, [MemoryLogDestination()])
        service = AccessProxyService(
            prepared, clock, {1: index}, verifier, writer, resolver=TableResolver(),
            tunnelHandler=lambda reactor, resolver: None, listen=listen,
        )
        return service, listened

    def test_enabledVipsListen(self) -> None:
        """
        Each enabled VIP listens on its address and port with its own TLS
        creator; a disabled one does not.
        """
        extra = """
config firewall vip
    edit "off"
        set type access-proxy
        set server-type https
        set extip 127.0.0.1
        set extintf "lo"
        set extport 444
        set ssl-certificate "gw"
        set status disable
    next
end
"""
        service, listened = self._service(_prepared(self, extra))
        service.startService()
        [(port, interface, creator, factory)] = listened
        self.assertEqual((port, interface), (443, "127.0.0.1"))
        self.assertIsInstance(creator, ServerConnectionCreator)
        self.assertEqual(list(service.vips), ["vip"])
        service.stopService()
        self.assertTrue(all(isinstance(v.port, (type(None),)) for v in service.vips.values()))

    def test_httpsNeedsCA(self) -> None:
        """
        A real server over https with verify-cert enable and no CA stops
        the start with the reason.
        """
        accessProxy = ACCESS_PROXY.replace("set service http\n", "set service https\n", 1)
        error = self.assertRaises(StartupFailed, self._service, _prepared(self, accessProxy=accessProxy))
        self.assertIn("vpn certificate ca", str(error))


class LogDestinationsTests(SynchronousTestCase):
    """
    Tests for L{logDestinations}.
    """

    def test_default(self) -> None:
        """
        Without log-file, lines go to twistd's log only.
        """
        [only] = logDestinations(loads(CONFIG.replace("#EMS#", "")))
        self.assertIsInstance(only, LoggerLogDestination)

    def test_file(self) -> None:
        """
        log-file adds a file with log-format, created 0600.
        """
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        text = (
            f'config system global\n    set state-dir "{directory}"\n    set log-file "traffic.log"\n'
            "    set log-format json\nend\n" + CONFIG.replace("#EMS#", "")
        )
        twistd, file = logDestinations(loads(text, baseDirectory=directory))
        self.assertIsInstance(file, FileLogDestination)
        self.assertEqual(file.path, os.path.join(directory, "traffic.log"))
        self.assertEqual(file.logFormat, LogFormat.JSON)
        self.assertEqual(os.stat(file.path).st_mode & 0o777, 0o600)
        file.close()

    def test_unopenable(self) -> None:
        """
        A log file that cannot be opened stops the start.
        """
        text = (
            'config system global\n    set log-file "/nonexistent/dir/x.log"\nend\n'
            + CONFIG.replace("#EMS#", "")
        )
        error = self.assertRaises(StartupFailed, logDestinations, loads(text))
        self.assertIn("log-file", str(error))


class LogFilesServiceTests(SynchronousTestCase):
    """
    Tests for L{LogFilesService}.
    """

    def test_sighup(self) -> None:
        """
        SIGHUP reopens the files; stopping restores the previous handler
        and closes them.
        """
        destination = MemoryLogDestination()
        writer = LogWriter(Clock(), [destination])
        previous = signal.getsignal(signal.SIGHUP)
        service = LogFilesService(writer, FakeReactor())
        service.startService()
        try:
            os.kill(os.getpid(), signal.SIGHUP)
            self.assertEqual(destination.reopened, 1)
        finally:
            service.stopService()
        self.assertEqual(signal.getsignal(signal.SIGHUP), previous)
        self.assertEqual(destination.closed, 1)


class CertificateNamesTests(SynchronousTestCase):
    """
    Tests for L{certificateDNSNames}.
    """

    def test_names(self) -> None:
        """
        The DNS names of the SAN, not its addresses.
        """
        server = makeServer(makeCA(), names=("a.test", "*.b.test"), ipAddresses=("127.0.0.1",))
        self.assertEqual(certificateDNSNames(server.certificate), ["a.test", "*.b.test"])
        self.assertEqual(certificateDNSNames(makeCA().certificate), [])
