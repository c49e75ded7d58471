"""
Tests for L{ztnagw.workers}: the plan a worker starts from, the sockets
it inherits, its log lines tagged with its id; and the parts of
L{ztnagw.service.GatewayService} a worker uses.
"""

from __future__ import annotations

import io
import ipaddress
import os
import socket
import sys
from typing import Any

from attrs import evolve
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from ztnagw.config import load
from ztnagw.logs import HTTPS, TrafficLog
from ztnagw.logs.interfaces import ILogDestination
from ztnagw.logs.line import LogLine, LogTime, Token, parseKeyValue
from ztnagw.startup import prepare
from ztnagw.workers import (
    MAX_PLAN_SIZE,
    InheritedListeners,
    InheritedSocket,
    ListenAddress,
    PlanError,
    RecordWriter,
    WorkerLogDestination,
    WorkerPlan,
    decodePlan,
    encodePlan,
    formatRecord,
    listenAddresses,
    readPlan,
    withWorkerId,
)

CONFIG = """
config system global
    set hostname "gw-test"
    set state-dir "state"
    set log-file "traffic.log"
    set workers 2
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
        set https-port {ems}
        set serial-number "FCTEMS8825007278"
    next
end
config firewall address
    edit "lan"
        set subnet 10.0.0.0 255.0.0.0
    next
end
config firewall schedule recurring
    edit "office"
        set day monday tuesday
        set start 08:00
        set end 18:00
    next
end
config firewall access-proxy-virtual-host
    edit "app"
        set host "app.test"
        set ssl-certificate "gateway"
    next
end
config firewall vip
    edit "MAIN"
        set type access-proxy
        set server-type https
        set extip 127.0.0.1
        set extintf "lo"
        set extport {main}
        set ssl-certificate "gateway"
    next
    edit "OTHER"
        set type access-proxy
        set server-type https
        set extip 127.0.0.1
        set extintf "lo"
        set extport {other}
        set ssl-certificate "gateway"
    next
    edit "OFF"
        set type access-proxy
        set server-type https
        set extip 127.0.0.1
        set extintf "lo"
        set extport {off}
        set ssl-certificate "gateway"
        set status disable
    next
end
config firewall access-proxy
    edit "MAIN"
        set vip "MAIN"
        config api-gateway
            edit 1
                set service http
                set virtual-host "app"
                set url-map "/app"
                config realservers
                    edit 1
                        set ip 10.0.0.5
                        set port 8080
                    next
                end
            next
        end
    next
end
config firewall policy
    edit 1
        set name "main"
        set srcintf "any"
        set dstintf "any"
        set srcaddr "all"
        set dstaddr "MAIN"
        set action accept
        set schedule "office"
        set ztna-ems-tag "EMS1_ZTNA_Finance"
    next
end
"""


def preparedGateway(
    directory: str, main: int = 10443, other: int = 10444, ems: int = 10013, off: int = 10445
) -> Any:
    """
    A prepared gateway of two enabled VIPs, one disabled VIP and one EMS,
    in a new directory.  With C{ems} equal to C{main}, VIP MAIN listens on
    127.0.0.2 instead.
    """
    directory = os.path.abspath(directory)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "gateway.conf")
    text = CONFIG.format(main=main, other=other, ems=ems, off=off)
    if ems == main:
        text = text.replace(f"set extip 127.0.0.1\n        set extintf \"lo\"\n        set extport {main}", f"set extip 127.0.0.2\n        set extintf \"lo\"\n        set extport {main}", 1)
    with open(path, "w") as f:
        f.write(text)
    return prepare(load(path))


class PlanTests(TestCase):
    """
    The plan a supervisor sends to each worker.
    """

    def setUp(self) -> None:
        self.prepared = preparedGateway(self.mktemp())

    def plan(self) -> WorkerPlan:
        """
        Worker 2's plan, with two inherited sockets.
        """
        addresses = listenAddresses(self.prepared)
        return WorkerPlan(
            workerId=2,
            workers=4,
            configPath="/etc/ztnagw/gateway.conf",
            prepared=self.prepared,
            sockets=tuple(InheritedSocket(a, 3 + n) for n, a in enumerate(addresses)),
        )

    def test_roundTrip(self) -> None:
        """
        A worker reads the very configuration, certificates and keys the
        supervisor prepared.
        """
        plan = self.plan()
        copy = decodePlan(encodePlan(plan))
        self.assertEqual(copy, plan)
        prepared = copy.prepared
        self.assertEqual(prepared.config, self.prepared.config)
        self.assertEqual(prepared.realServerTrust, self.prepared.realServerTrust)
        for name, material in self.prepared.certificates.items():
            self.assertEqual(prepared.certificates[name].certificate, material.certificate)
            self.assertEqual(prepared.certificates[name].chain, material.chain)
            self.assertEqual(
                prepared.certificates[name].key.private_numbers(), material.key.private_numbers()
            )
        for emsId, authority in self.prepared.authorities.items():
            self.assertEqual(prepared.authorities[emsId], authority)
            self.assertEqual(
                prepared.authorities[emsId].privateKey.private_numbers(),
                authority.privateKey.private_numbers(),
            )
        for emsId, listener in self.prepared.emsListeners.items():
            self.assertEqual(prepared.emsListeners[emsId], listener)
            self.assertEqual(prepared.emsListeners[emsId].pin, listener.pin)

    def test_readPlan(self) -> None:
        """
        L{readPlan} reads one plan from a stream that delivers it in
        pieces, and leaves what follows.
        """

        class Trickle(io.RawIOBase):
            def __init__(self, data: bytes) -> None:
                self.data = data

            def readable(self) -> bool:
                return True

            def readinto(self, buffer: Any) -> int:
                size = min(7, len(buffer))
                chunk, self.data = self.data[:size], self.data[size:]
                buffer[: len(chunk)] = chunk
                return len(chunk)

        stream = Trickle(encodePlan(self.plan()) + b"more")
        self.assertEqual(readPlan(stream).workerId, 2)  # type: ignore[arg-type]
        self.assertEqual(stream.data, b"more")

    def test_truncated(self) -> None:
        """
        A pipe that ends inside the plan is a L{PlanError} saying so.
        """
        data = encodePlan(self.plan())
        for end in (0, 5, 8, len(data) - 1):
            error = self.assertRaises(PlanError, readPlan, io.BytesIO(data[:end]))
            self.assertIn("ended", str(error))

    def test_tooLarge(self) -> None:
        """
        A length beyond L{MAX_PLAN_SIZE} is refused before reading it.
        """
        header = (MAX_PLAN_SIZE + 1).to_bytes(8, "big")
        self.assertRaises(PlanError, readPlan, io.BytesIO(header))

    def test_notAPlan(self) -> None:
        """
        A well-framed pickle of something else is refused.
        """
        import pickle

        payload = pickle.dumps({"a": 1})
        data = len(payload).to_bytes(8, "big") + payload
        error = self.assertRaises(PlanError, decodePlan, data)
        self.assertIn("not a WorkerPlan", str(error))

    def test_keysNotPrinted(self) -> None:
        """
        A plan's C{repr} shows no private key.
        """
        self.assertNotIn("prepared", repr(self.plan()))


class DecodeTests(SynchronousTestCase):
    """
    L{decodePlan} on arbitrary bytes.
    """

    @given(st.binary(max_size=200))
    def test_anyBytes(self, data: bytes) -> None:
        """
        Any bytes are a plan or a L{PlanError}, never another exception.
        """
        try:
            decodePlan(data)
        except PlanError:
            pass

    @given(st.binary(max_size=200))
    def test_anyFramedBytes(self, payload: bytes) -> None:
        """
        Any framed payload that is not a pickled plan is a L{PlanError}.
        """
        data = len(payload).to_bytes(8, "big") + payload
        self.assertRaises(PlanError, decodePlan, data)


class ListenAddressesTests(TestCase):
    """
    L{listenAddresses}.
    """

    def test_enabledOnly(self) -> None:
        """
        Every enabled VIP, then every enabled EMS listener; a disabled VIP
        listens nowhere.
        """
        prepared = preparedGateway(self.mktemp(), main=10443, other=10444, ems=10013)
        self.assertEqual(
            listenAddresses(prepared),
            [
                ListenAddress("127.0.0.1", 10443, "VIP MAIN"),
                ListenAddress("127.0.0.1", 10444, "VIP OTHER"),
                ListenAddress("127.0.0.1", 10013, "EMS 1"),
            ],
        )

    def test_duplicate(self) -> None:
        """
        Two listeners on one address are refused: with C{SO_REUSEPORT} the
        second would silently share the first's connections.
        """
        prepared = preparedGateway(self.mktemp(), ems=10443, main=10443, other=10444)
        # The configuration cannot say it (it refuses an EMS server on a
        # VIP's address and port), but a server name can resolve to one.
        [vip] = [v for v in prepared.config.vips.values() if v.name == "MAIN"]
        listener = prepared.emsListeners[1]
        prepared = evolve(prepared, emsListeners={1: evolve(listener, bindAddress=str(vip.extip))})
        error = self.assertRaises(PlanError, listenAddresses, prepared)
        self.assertIn("VIP MAIN and EMS 1 both listen on 127.0.0.2:10443", str(error))

    def test_disabledMayShare(self) -> None:
        """
        A disabled VIP may name a port an enabled one uses.
        """
        prepared = preparedGateway(self.mktemp(), main=10443, off=10443)
        self.assertEqual(len(listenAddresses(prepared)), 3)

    def test_canonical(self) -> None:
        """
        Addresses are matched in canonical form.
        """
        self.assertEqual(ListenAddress("::0", 1, "a").key(), ListenAddress("::", 1, "b").key())


_TIME = LogTime.fromSeconds(1736510401.0)

_fieldNames = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=12).filter(
    lambda name: name != "workerid"
)
_fieldValues = st.one_of(st.integers(min_value=0, max_value=2**32), st.text(max_size=20))


class WorkerLogTests(SynchronousTestCase):
    """
    Log lines carry the worker's id.
    """

    def line(self) -> LogLine:
        """
        A traffic log line as the writer stamps it.
        """
        entry = TrafficLog(srcIp="203.0.113.5", srcPort=50123, sessionId=1, service=HTTPS, action="accept")
        return LogLine.fromEntry(_TIME, entry.logFields(), "gw")

    def test_afterVd(self) -> None:
        """
        C{workerid} follows C{vd}: the header says which device, which
        virtual domain, which worker.
        """
        tagged = withWorkerId(self.line(), 3)
        names = [name for name, _ in tagged.fields]
        self.assertEqual(names[names.index("vd") + 1], "workerid")
        self.assertIn(" vd=\"root\" workerid=3 srcip=203.0.113.5 ", tagged.keyValue())
        self.assertEqual(tagged.jsonObject()["workerid"], 3)

    @given(st.lists(st.tuples(_fieldNames, _fieldValues), max_size=8), st.integers(min_value=1, max_value=1024))
    def test_anyLine(self, fields: list[tuple[str, Any]], workerId: int) -> None:
        """
        Whatever the line, the tag is added once and every other field
        stays, in order.
        """
        line = LogLine(tuple(fields))
        tagged = withWorkerId(line, workerId)
        self.assertEqual([f for f in tagged.fields if f[0] != "workerid"], fields)
        self.assertEqual([v for n, v in tagged.fields if n == "workerid"], [workerId])
        self.assertEqual(dict(parseKeyValue(tagged.keyValue()))["workerid"], str(workerId))

    def test_destination(self) -> None:
        """
        L{WorkerLogDestination} tags every line, and passes reopen and
        close on.
        """
        calls: list[Any] = []

        class Recorder:
            def emit(self, line: LogLine) -> None:
                calls.append(line)

            def reopen(self) -> None:
                calls.append("reopen")

            def close(self) -> None:
                calls.append("close")

        destination = WorkerLogDestination(Recorder(), 2)  # type: ignore[arg-type]
        verifyObject(ILogDestination, destination)
        destination.emit(self.line())
        destination.reopen()
        destination.close()
        self.assertEqual(calls[0].get("workerid"), 2)
        self.assertEqual(calls[1:], ["reopen", "close"])

    def test_token(self) -> None:
        """
        A line whose header has no C{vd} gets the tag at its end.
        """
        line = LogLine((("date", Token("2025-01-10")), ("msg", "x")))
        self.assertEqual(withWorkerId(line, 1).fields[-1], ("workerid", 1))


class RecordWriterTests(SynchronousTestCase):
    """
    L{RecordWriter} gathers a reactor turn's records.
    """

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.clock.running = True
        self.output = io.StringIO()
        self.writer = RecordWriter(self.output, self.clock)

    def event(self, text: str, level: Any = None) -> dict[str, Any]:
        """
        A log line event.
        """
        from twisted.logger import LogLevel

        return {
            "log_format": "{ztnaLogLine}",
            "ztnaLogLine": text,
            "log_level": level or LogLevel.info,
            "log_time": 1.0,
            "log_namespace": "n",
        }

    def test_turn(self) -> None:
        """
        Records are written together at the end of the reactor's turn.
        """
        self.writer(self.event("a"))
        self.writer(self.event("b"))
        self.assertEqual(self.output.getvalue(), "")
        self.clock.advance(0)
        self.assertEqual(self.output.getvalue(), formatRecord(self.event("a")) + formatRecord(self.event("b")))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_urgent(self) -> None:
        """
        A warning is written at once, with what came before it.
        """
        from twisted.logger import LogLevel

        self.writer(self.event("a"))
        self.writer(self.event("b", LogLevel.warn))
        self.assertEqual(self.output.getvalue().count("\n"), 2)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_notRunning(self) -> None:
        """
        Before the reactor runs (and after), records are written at once.
        """
        self.clock.running = False
        self.writer(self.event("a"))
        self.assertEqual(self.output.getvalue(), formatRecord(self.event("a")))

    def test_limit(self) -> None:
        """
        64 KiB gathered are written without waiting for the turn's end.
        """
        self.writer(self.event("x" * (RecordWriter.limit + 1)))
        self.assertTrue(self.output.getvalue())


class FakePort:
    """
    What a fake listen returns.
    """

    def __init__(self, host: str, port: int) -> None:
        self._address = IPv4Address("TCP", host, port)

    def getHost(self) -> IPv4Address:
        return self._address

    def stopListening(self) -> None:
        pass


@implementer(IOpenSSLServerConnectionCreator)
class Creator:
    """
    A TLS server side that is never asked for a connection.
    """

    def serverConnectionForTLS(self, protocol: Any) -> Any:
        raise AssertionError("no connection expected")


class InheritedListenersTests(TestCase):
    """
    L{InheritedListeners} hands each listener its inherited socket.
    """

    def listening(self, host: str = "127.0.0.1") -> tuple[int, int]:
        """
        A descriptor of a new listening socket and its port.
        """
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        sock.bind((host, 0))
        sock.listen(1)
        port = sock.getsockname()[1]
        fd = sock.detach()
        self.addCleanup(_closeQuietly, fd)
        return fd, port

    def test_adopt(self) -> None:
        """
        C{listen} adopts the socket bound to the address asked for, with
        its family; the reactor works on a duplicate and the inherited
        descriptor is closed.
        """
        fd, port = self.listening()
        memory = MemoryReactorClock()
        listeners = InheritedListeners([InheritedSocket(ListenAddress("127.0.0.1", port, "VIP A"), fd)])
        factory = object()
        listeners.listen(memory, port, "127.0.0.1", Creator(), factory)  # type: ignore[arg-type]
        [(adopted, family, tls)] = memory.adoptedPorts
        self.assertEqual((adopted, family), (fd, socket.AF_INET))
        self.assertIs(tls.wrappedFactory, factory)
        self.assertRaises(OSError, os.fstat, fd)

    def test_ipv6(self) -> None:
        """
        An IPv6 socket is adopted as C{AF_INET6}, whatever spelling of the
        address the listener asks with.
        """
        fd, port = self.listening("::1")
        adopted: list[Any] = []
        listeners = InheritedListeners(
            [InheritedSocket(ListenAddress("::1", port, "VIP A"), fd)],
            adopt=lambda *args: adopted.append(args),
        )
        listeners.listen(None, port, "0:0::1", None, None)  # type: ignore[arg-type]
        self.assertEqual(adopted[0][1:3], (fd, socket.AF_INET6))

    def test_unknownAddress(self) -> None:
        """
        A listener whose address was not handed down cannot listen.
        """
        listeners = InheritedListeners([])
        error = self.assertRaises(CannotListenError, listeners.listen, None, 443, "127.0.0.1", None, None)
        self.assertIn("handed down no socket", str(error))

    def test_wrongSocket(self) -> None:
        """
        A descriptor bound elsewhere than its address says is refused (and
        closed): a worker serves only what it should.
        """
        fd, port = self.listening()
        closed: list[int] = []
        listeners = InheritedListeners(
            [InheritedSocket(ListenAddress("127.0.0.1", port + 1 if port < 65535 else 1, "VIP A"), fd)],
            adopt=lambda *args: self.fail("adopted"),
            close=closed.append,
        )
        wanted = port + 1 if port < 65535 else 1
        error = self.assertRaises(CannotListenError, listeners.listen, None, wanted, "127.0.0.1", None, None)
        self.assertIn(f"bound to 127.0.0.1:{port}", str(error))
        self.assertEqual(closed, [fd])

    def test_notListening(self) -> None:
        """
        A descriptor that is not a listening TCP socket is refused.
        """
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        fd = sock.detach()
        self.addCleanup(_closeQuietly, fd)
        listeners = InheritedListeners(
            [InheritedSocket(ListenAddress("127.0.0.1", port, "VIP A"), fd)], close=lambda fd: None
        )
        error = self.assertRaises(CannotListenError, listeners.listen, None, port, "127.0.0.1", None, None)
        self.assertIn("not listening", str(error))
        read, write = os.pipe()
        self.addCleanup(_closeQuietly, read)
        self.addCleanup(_closeQuietly, write)
        listeners = InheritedListeners(
            [InheritedSocket(ListenAddress("127.0.0.1", port, "VIP A"), read)], close=lambda fd: None
        )
        error = self.assertRaises(CannotListenError, listeners.listen, None, port, "127.0.0.1", None, None)
        self.assertIn("not a socket", str(error))

    def test_paused(self) -> None:
        """
        Paused, adopted ports do not accept until L{InheritedListeners.resume}
        (a worker waits for its registry indexes); connections wait in the
        socket's queue meanwhile.
        """
        fd, port = self.listening()
        calls: list[str] = []

        class Port:
            connected = True

            def stopReading(self) -> None:
                calls.append("stop")

            def startReading(self) -> None:
                calls.append("start")

        listeners = InheritedListeners(
            [InheritedSocket(ListenAddress("127.0.0.1", port, "VIP A"), fd)],
            adopt=lambda *args: Port(),
            paused=True,
        )
        listeners.listen(None, port, "127.0.0.1", None, None)  # type: ignore[arg-type]
        self.assertEqual(calls, ["stop"])
        listeners.resume()
        self.assertEqual(calls, ["stop", "start"])
        listeners.resume()
        self.assertEqual(calls, ["stop", "start"])

    def test_closeUnused(self) -> None:
        """
        Sockets nobody asked for are closed and named.
        """
        closed: list[int] = []
        address = ListenAddress("127.0.0.1", 1, "VIP A")
        listeners = InheritedListeners([InheritedSocket(address, 17)], close=closed.append)
        self.assertEqual(listeners.closeUnused(), [address])
        self.assertEqual(closed, [17])
        self.assertEqual(listeners.closeUnused(), [])


def _closeQuietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


class GatewayServiceWorkerTests(TestCase):
    """
    What L{ztnagw.service.GatewayService} does differently in a worker.
    """

    def service(self, workerId: int | None) -> tuple[Any, list[tuple[int, str]]]:
        """
        A gateway service over a memory reactor whose listeners are
        recorded, not bound.
        """
        from ztnagw.service import GatewayService

        directory = self.mktemp()
        prepared = preparedGateway(directory)
        listened: list[tuple[int, str]] = []

        def listen(reactor: Any, port: int, interface: str, creator: Any, factory: Any) -> FakePort:
            listened.append((port, interface))
            return FakePort(interface, port)

        service = GatewayService(prepared, MemoryReactorClock(), workerId=workerId, workers=2, listen=listen)
        self.addCleanup(service.logWriter.close)
        return service, listened

    def test_listen(self) -> None:
        """
        Every VIP and EMS listener listens through the given C{listen}, in
        C{privilegedStartService} (before twistd drops privileges).
        """
        service, listened = self.service(2)
        for child in service:
            if child.name.startswith("ems") or child.name == "access-proxy":
                child.privilegedStartService()
        self.assertEqual(sorted(listened), [(10013, "127.0.0.1"), (10443, "127.0.0.1"), (10444, "127.0.0.1")])
        self.assertEqual(
            sorted((p, h) for p, h in listened),
            sorted((a.port, a.host) for a in listenAddresses(service.prepared)),
        )

    def test_tagged(self) -> None:
        """
        A worker's log lines carry C{workerid}; the single process's
        carry none.
        """
        entry = TrafficLog(srcIp="203.0.113.5", srcPort=50123, sessionId=1, service=HTTPS, action="accept")
        for workerId, expected in ((2, "2"), (None, None)):
            service, _ = self.service(workerId)
            service.logWriter.write(entry)
            path = service.prepared.config.systemGlobal.logFile
            with open(path) as f:
                [line] = f.read().splitlines()
            self.assertEqual(dict(parseKeyValue(line)).get("workerid"), expected)

    def test_presenceOnce(self) -> None:
        """
        Only worker 1 (or the single process) logs devices going offline
        and back, so that each change is logged once.
        """
        for workerId, expected in ((None, True), (1, True), (2, False)):
            service, _ = self.service(workerId)
            self.assertIs(service.emsServices[1]._monitorPresence, expected)
            self.assertEqual(service.workerId, workerId)


class FakeIndex:
    """
    An index whose first load the test finishes.
    """

    def __init__(self) -> None:
        self.loading: Deferred[None] = Deferred()

    def start(self) -> Deferred[None]:
        return self.loading

    def records(self) -> list[Any]:
        return []


class RegistryServiceTests(SynchronousTestCase):
    """
    L{ztnagw.service.RegistryService.whenLoaded}.
    """

    def test_loaded(self) -> None:
        """
        It fires once the first load worked.
        """
        from ztnagw.service import RegistryService

        index = FakeIndex()
        service = RegistryService(index, 1)  # type: ignore[arg-type]
        self.failureResultOf(service.whenLoaded(), RuntimeError)
        service.startService()
        waiting = service.whenLoaded()
        self.assertNoResult(waiting)
        index.loading.callback(None)
        self.assertIsNone(self.successResultOf(waiting))

    def test_failed(self) -> None:
        """
        It fires too when the first load failed (the gateway then refuses
        devices with a code rather than leave them waiting).
        """
        from ztnagw.service import RegistryService

        index = FakeIndex()
        service = RegistryService(index, 1)  # type: ignore[arg-type]
        service.startService()
        waiting = service.whenLoaded()
        index.loading.errback(OSError("disk gone"))
        self.assertIsNone(self.successResultOf(waiting))
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)


class AddressTests(SynchronousTestCase):
    """
    Addresses in plans.
    """

    @given(st.ip_addresses(), st.integers(min_value=0, max_value=65535))
    def test_key(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> None:
        """
        Any spelling of an address has one key.
        """
        spellings = {str(address), address.exploded}
        keys = {ListenAddress(s, port, "x").key() for s in spellings}
        self.assertEqual(keys, {(str(address), port)})


class MakeServiceTests(TestCase):
    """
    L{ztnagw.tap.makeService} chooses between one process and a
    supervisor by C{set workers}.
    """

    def options(self, workers: str) -> Any:
        """
        Plugin options for a configuration with C{set workers} C{workers}.
        """
        from ztnagw.tap import Options

        directory = os.path.abspath(self.mktemp())
        preparedGateway(directory)
        path = os.path.join(directory, "gateway.conf")
        with open(path) as f:
            text = f.read().replace("set workers 2", f"set workers {workers}")
        with open(path, "w") as f:
            f.write(text)
        options = Options()
        options.parseOptions(["--config", path])
        return options

    def test_one(self) -> None:
        """
        C{workers 1}: the single-process gateway, as without the option.
        """
        from ztnagw.service import GatewayService
        from ztnagw.tap import makeService

        service = makeService(self.options("1"))
        self.addCleanup(service.logWriter.close)  # type: ignore[attr-defined]
        self.assertIsInstance(service, GatewayService)
        self.assertIsNone(service.workerId)  # type: ignore[attr-defined]

    def test_several(self) -> None:
        """
        C{workers 3}: a supervisor of three workers, whose sockets are bound
        only in C{privilegedStartService}.
        """
        from ztnagw.supervisor import GatewaySupervisor
        from ztnagw.tap import makeService

        service = makeService(self.options("3"))
        self.assertIsInstance(service, GatewaySupervisor)
        self.assertEqual(len(service.workers._slots), 3)  # type: ignore[attr-defined]
        self.assertEqual(service.sockets.ports(), [])  # type: ignore[attr-defined]
        self.assertEqual(
            [a.what for a in service.sockets.addresses],  # type: ignore[attr-defined]
            ["VIP MAIN", "VIP OTHER", "EMS 1"],
        )

    def test_perCpu(self) -> None:
        """
        C{workers 0}: one per CPU this process may run on.
        """
        from ztnagw.supervisor import GatewaySupervisor
        from ztnagw.tap import makeService

        cpus = len(os.sched_getaffinity(0))
        service = makeService(self.options("0"))
        if cpus == 1:
            self.addCleanup(service.logWriter.close)  # type: ignore[attr-defined]
            self.assertNotIsInstance(service, GatewaySupervisor)
        else:
            self.assertEqual(len(service.workers._slots), cpus)  # type: ignore[attr-defined]

    def test_workerWouldFail(self) -> None:
        """
        What a worker would refuse (here a log file that cannot be opened)
        stops the supervisor's start at once, with the reason.
        """
        from ztnagw.tap import makeService

        options = self.options("2")
        os.makedirs(os.path.join(os.path.dirname(options["config"]), "traffic.log"))
        stderr = io.StringIO()
        self.patch(sys, "stderr", stderr)
        error = self.assertRaises(SystemExit, makeService, options)
        self.assertEqual(error.code, 1)
        self.assertIn("log-file", stderr.getvalue())
        self.assertIn("cannot open it", stderr.getvalue())
