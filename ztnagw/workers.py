# -*- test-case-name: tests.test_workers -*-
"""
One worker process of a gateway that uses several cores (C{config system
global} / C{set workers N}).

A CPython process runs on one core, so the gateway runs N copies of
itself, each a complete L{GatewayService<ztnagw.service.GatewayService>}
(VIPs, EMS listeners, its own registry index) on the same ports, under a
supervisor (L{ztnagw.supervisor}).  This module is what runs inside each
copy (C{python -m ztnagw.workers --worker N}), and what both sides agree
on:

  - L{WorkerPlan}: everything a worker starts from.  The supervisor reads
    the configuration and prepares the gateway once (L{ztnagw.startup}),
    before it drops privileges, and gives every worker that very result on
    its standard input (L{encodePlan}, L{readPlan}).  So every worker, and
    every worker restarted hours later, serves exactly what the others
    serve, even if the files changed since; no worker ever creates or
    renews a certificate; and a worker needs no access to the private key
    files.  The pipe is the worker's own, written only by its parent.

  - L{listenAddresses}: every address the gateway listens on.  The
    supervisor binds one C{SO_REUSEPORT} socket per address for each
    worker and hands it down as a descriptor (L{InheritedSocket}); the
    worker checks it is what it should be and accepts on it
    (L{InheritedListeners}).

  - L{WorkerLogDestination}: a worker's traffic and event log lines carry
    its id (C{workerid}); its C{twisted.logger} events go to the supervisor
    as records on its standard output (L{formatRecord}), and the supervisor
    writes them to the daemon's log tagged with the worker id.

The standard input stays open after the plan: when it ends, the
supervisor is gone, and the worker stops rather than serve on unsupervised.
"""

from __future__ import annotations

import argparse
import atexit
import io
import ipaddress
import os
import pickle
import signal
import socket
import struct
import sys
from typing import IO, Any, Callable, Iterable, Sequence

from attrs import field, frozen
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import (
    IListeningPort,
    IOpenSSLServerConnectionCreator,
    IProtocolFactory,
)
from twisted.logger import ILogObserver, Logger, LogLevel, eventAsJSON
from zope.interface import implementer

from ztnagw.config.schema import FrozenMap
from ztnagw.logs.interfaces import ILogDestination
from ztnagw.logs.line import LogLine

__all__ = [
    "FIRST_SOCKET_FD",
    "READY_KEY",
    "InheritedListeners",
    "InheritedSocket",
    "LINE_FIELDS",
    "LINE_RECORD",
    "ListenAddress",
    "PlanError",
    "RecordWriter",
    "WorkerLogDestination",
    "WorkerPlan",
    "decodePlan",
    "encodePlan",
    "formatRecord",
    "listenAddresses",
    "main",
    "readPlan",
    "withWorkerId",
]

_log = Logger()

#: The descriptor number of a worker's first inherited listening socket;
#: 0, 1 and 2 are its plan and control pipe, its log records and its
#: stderr.
FIRST_SOCKET_FD = 3

#: The key of the log event by which a worker tells the supervisor it
#: serves.
READY_KEY = "ztnagwWorkerReady"

#: The log field naming the worker that wrote a line.
WORKER_FIELD = "workerid"

#: The largest plan a worker accepts (a plan holds a configuration and its
#: certificates: kilobytes, not megabytes).
MAX_PLAN_SIZE = 64 << 20

_LENGTH = struct.Struct(">Q")

#: What starts a compact record (a traffic or event log line) on a
#: worker's descriptor 1; its fields are separated by L{LINE_FIELDS}.
LINE_RECORD = "\x1d"
LINE_FIELDS = "\x1f"

#: The format of the events L{ztnagw.logs.LoggerLogDestination} emits.
_LINE_FORMAT = "{ztnaLogLine}"

_PRIVATE_KEY_TYPES = (
    ec.EllipticCurvePrivateKey,
    rsa.RSAPrivateKey,
    ed25519.Ed25519PrivateKey,
    ed448.Ed448PrivateKey,
    dsa.DSAPrivateKey,
)


class PlanError(Exception):
    """
    A worker's plan or inherited sockets are not what they must be; the
    message says what.
    """


@frozen
class ListenAddress:
    """
    An address the gateway listens on.

    @ivar host: the address literal (C{extip} of a VIP, the bind address of
        an EMS listener).
    @ivar port: the TCP port.
    @ivar what: what listens there, for messages (C{"VIP MAIN"},
        C{"EMS 1"}).
    """

    host: str
    port: int
    what: str

    def key(self) -> tuple[str, int]:
        """
        The address in a canonical spelling (C{::0} and C{::} are one
        address), to match a request to listen with a socket.
        """
        return _canonical(self.host), self.port


def _canonical(host: str) -> str:
    return str(ipaddress.ip_address(host))


def listenAddresses(prepared: Any) -> list[ListenAddress]:
    """
    Every address the gateway described by C{prepared} listens on: each
    enabled VIP's C{extip}:C{extport}, then each enabled EMS listener's
    address and C{https-port}, in that order.

    @param prepared: a L{PreparedGateway<ztnagw.startup.PreparedGateway>}.
    @raise PlanError: two of them are the same address (with one process
        the second could not listen; with C{SO_REUSEPORT} it would
        silently share the first's connections).
    """
    from ztnagw.startup import enabledEms

    config = prepared.config
    addresses = [
        ListenAddress(str(vip.extip), vip.extport, f"VIP {vip.name}")
        for vip in config.vips.values()
        if vip.status
    ]
    addresses += [
        ListenAddress(prepared.emsListeners[ems.id].bindAddress, ems.httpsPort, f"EMS {ems.id}")
        for ems in enabledEms(config)
    ]
    seen: dict[tuple[str, int], ListenAddress] = {}
    for address in addresses:
        if address.port != 0 and address.key() in seen:
            first = seen[address.key()]
            raise PlanError(
                f"{first.what} and {address.what} both listen on "
                f"{address.host}:{address.port}; give each its own port"
            )
        seen[address.key()] = address
    return addresses


@frozen
class InheritedSocket:
    """
    A listening socket a worker got from its supervisor.

    @ivar address: what it is bound to.
    @ivar fileDescriptor: its descriptor number in the worker.
    """

    address: ListenAddress
    fileDescriptor: int


@frozen
class WorkerPlan:
    """
    What a worker process starts from (see the module docstring).

    @ivar workerId: this worker's id, 1 to C{workers}.
    @ivar workers: how many workers the gateway runs.
    @ivar configPath: the configuration file the supervisor read, for logs.
    @ivar prepared: the supervisor's
        L{PreparedGateway<ztnagw.startup.PreparedGateway>}, private keys
        included (never printed).
    @ivar sockets: the listening sockets handed down, one per
        L{listenAddresses} entry.
    """

    workerId: int
    workers: int
    configPath: str | None
    prepared: Any = field(repr=False, eq=False)
    sockets: tuple[InheritedSocket, ...]


def _loadCertificate(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def _loadPrivateKey(pem: bytes) -> Any:
    return serialization.load_pem_private_key(pem, password=None)


class _PlanPickler(pickle.Pickler):
    """
    Pickles a plan; certificates and private keys (which do not pickle)
    travel as PEM, and the configuration's immutable tables
    (L{FrozenMap<ztnagw.config.schema.FrozenMap>}, which refuse the
    attribute assignment default unpickling does) as their items.
    """

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, FrozenMap):
            return FrozenMap, (list(obj.items()),)
        if isinstance(obj, x509.Certificate):
            return _loadCertificate, (obj.public_bytes(serialization.Encoding.PEM),)
        if isinstance(obj, _PRIVATE_KEY_TYPES):
            pem = obj.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            return _loadPrivateKey, (pem,)
        return NotImplemented


def encodePlan(plan: WorkerPlan) -> bytes:
    """
    The bytes a supervisor writes to a worker's standard input: an 8-byte
    big-endian length, then the pickled plan.

    Pickle is safe here only because both ends are the same program and
    the pipe is private to the two processes; never read a plan from
    anywhere else.

    @raise PlanError: something in the plan cannot be sent.
    """
    buffer = io.BytesIO()
    try:
        _PlanPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(plan)
    except (pickle.PicklingError, TypeError, AttributeError) as e:
        raise PlanError(f"the prepared gateway cannot be sent to workers: {e}") from e
    payload = buffer.getvalue()
    return _LENGTH.pack(len(payload)) + payload


def decodePlan(data: bytes) -> WorkerPlan:
    """
    The plan L{encodePlan} made (the length prefix included).

    @raise PlanError: C{data} is not one whole plan.
    """
    if len(data) < _LENGTH.size:
        raise PlanError("the plan ended before its length")
    (length,) = _LENGTH.unpack_from(data)
    if length != len(data) - _LENGTH.size:
        raise PlanError(
            f"the plan is {len(data) - _LENGTH.size} bytes long, its header says {length}"
        )
    try:
        plan = pickle.loads(data[_LENGTH.size :])
    except Exception as e:
        raise PlanError(f"the plan cannot be read: {e}") from e
    if not isinstance(plan, WorkerPlan):
        raise PlanError(f"the plan is a {type(plan).__name__}, not a WorkerPlan")
    return plan


def readPlan(stream: IO[bytes]) -> WorkerPlan:
    """
    Read one plan from a worker's standard input.  Blocks: call it before
    the reactor runs.

    @raise PlanError: the stream ended early or holds no plan.
    """
    header = _readExactly(stream, _LENGTH.size)
    (length,) = _LENGTH.unpack(header)
    if length > MAX_PLAN_SIZE:
        raise PlanError(f"the plan claims {length} bytes, more than {MAX_PLAN_SIZE}")
    return decodePlan(header + _readExactly(stream, length))


def _readExactly(stream: IO[bytes], count: int) -> bytes:
    chunks = []
    remaining = count
    while remaining:
        chunk = stream.read(remaining)
        if not chunk:
            raise PlanError(
                f"the supervisor's pipe ended {remaining} bytes before the end of the plan"
            )
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def withWorkerId(line: LogLine, workerId: int) -> LogLine:
    """
    C{line} with a C{workerid} field after its header (after C{vd}, or
    at the end when it has none).
    """
    fields = list(line.fields)
    names = [name for name, _ in fields]
    position = names.index("vd") + 1 if "vd" in names else len(fields)
    fields.insert(position, (WORKER_FIELD, workerId))
    return LogLine(tuple(fields))


@implementer(ILogDestination)
class WorkerLogDestination:
    """
    A log destination that adds the worker's id (C{workerid}) to every
    line before passing it on, so that lines several workers append to one
    file say which process served the session.
    """

    def __init__(self, destination: ILogDestination, workerId: int) -> None:
        """
        @param destination: where the lines go.
        @param workerId: the id to add.
        """
        self._destination = destination
        self._workerId = workerId

    def emit(self, line: LogLine) -> None:
        """
        Pass C{line}, tagged, on.
        """
        self._destination.emit(withWorkerId(line, self._workerId))

    def reopen(self) -> None:
        """
        Reopen the destination.
        """
        self._destination.reopen()

    def close(self) -> None:
        """
        Close the destination.
        """
        self._destination.close()


def formatRecord(event: dict[str, Any]) -> str:
    """
    How a worker writes a log event for its supervisor: a traffic or event
    log line (one per request: the hot path) as a compact record of level,
    time, namespace and text (C{GS level US time US namespace US line LF});
    any other event as JSON (C{RS json LF}, as
    L{jsonFileLogObserver<twisted.logger.jsonFileLogObserver>} writes it).

    A log line never holds a control character (its values are escaped),
    so it cannot end or split a compact record; one that does anyway goes
    as JSON.
    """
    line = event.get("ztnaLogLine")
    level = event.get("log_level")
    if (
        event.get("log_format") == _LINE_FORMAT
        and isinstance(line, str)
        and "\n" not in line
        and LINE_FIELDS not in line
        and getattr(level, "name", None) is not None
    ):
        return (
            f"{LINE_RECORD}{level.name}{LINE_FIELDS}{event.get('log_time', 0.0)!r}"
            f"{LINE_FIELDS}{event.get('log_namespace', '-')}{LINE_FIELDS}{line}\n"
        )
    return f"\x1e{eventAsJSON(event)}\n"


@implementer(ILogObserver)
class RecordWriter:
    """
    Writes a worker's log events for its supervisor, a reactor turn's
    worth at a time.

    Under load a worker logs a traffic line per request; written one by
    one, each costs a write here and a wake-up and a read in the
    supervisor.  So records are gathered and written together at the end
    of the reactor's turn (or at 64 KiB).  Events of level C{warn} and
    above, and every event while the reactor is not running (start-up,
    shut-down), are written at once, with everything before them: what a
    worker says before it dies is never held back.
    """

    #: Bytes gathered before they are written regardless.
    limit = 1 << 16

    def __init__(self, output: IO[str], clock: Any) -> None:
        """
        @param output: the supervisor's pipe (descriptor 1).
        @param clock: the reactor (its C{running} and C{callLater}).
        """
        self._output = output
        self._clock = clock
        self._pending: list[str] = []
        self._size = 0
        self._scheduled: Any = None

    def __call__(self, event: dict[str, Any]) -> None:
        """
        Take one event.
        """
        record = formatRecord(event)
        self._pending.append(record)
        self._size += len(record)
        level = event.get("log_level")
        urgent = isinstance(level, type(LogLevel.warn)) and level >= LogLevel.warn
        if urgent or self._size >= self.limit or not getattr(self._clock, "running", False):
            self.flush()
        elif self._scheduled is None:
            self._scheduled = self._clock.callLater(0, self.flush)

    def flush(self) -> None:
        """
        Write everything gathered.
        """
        if self._scheduled is not None and self._scheduled.active():
            self._scheduled.cancel()
        self._scheduled = None
        if not self._pending:
            return
        pending, self._pending, self._size = self._pending, [], 0
        self._output.write("".join(pending))
        self._output.flush()


def _boundAddress(fileDescriptor: int) -> tuple[socket.AddressFamily, tuple[str, int]]:
    """
    The family and address of a listening TCP socket, without taking the
    descriptor over.

    @raise PlanError: it is not a listening TCP socket.
    """
    try:
        sock = socket.socket(fileno=fileDescriptor)
    except OSError as e:
        raise PlanError(f"descriptor {fileDescriptor} is not a socket: {e.strerror or e}") from e
    try:
        if sock.type != socket.SOCK_STREAM or sock.family not in (socket.AF_INET, socket.AF_INET6):
            raise PlanError(f"descriptor {fileDescriptor} is not a TCP socket")
        if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            raise PlanError(f"descriptor {fileDescriptor} is not listening")
        name = sock.getsockname()
        return sock.family, (_canonical(name[0]), name[1])
    finally:
        # The descriptor stays the caller's: the socket object must not
        # close it when collected.
        sock.detach()


class InheritedListeners:
    """
    The listening sockets a worker got from its supervisor, handed to the
    VIPs and EMS listeners that ask for their address.

    L{listen} is called like L{ztnagw.tls.listener.listenTLS}, so it is
    what L{GatewayService<ztnagw.service.GatewayService>} is given instead.
    """

    def __init__(
        self,
        sockets: Iterable[InheritedSocket],
        adopt: Callable[..., IListeningPort] | None = None,
        close: Callable[[int], None] = os.close,
        paused: bool = False,
    ) -> None:
        """
        @param sockets: the sockets, by the plan.
        @param adopt: accepts on one (L{ztnagw.tls.listener.adoptTLS}).
        @param close: closes a descriptor (L{os.close}).
        @param paused: whether ports start without accepting, until
            L{resume}: connections wait in the socket's queue meanwhile.
        """
        if adopt is None:
            from ztnagw.tls.listener import adoptTLS as adopt
        self._adopt = adopt
        self._close = close
        self._paused = paused
        self._ports: list[Any] = []
        self._unused: dict[tuple[str, int], InheritedSocket] = {
            inherited.address.key(): inherited for inherited in sockets
        }

    def resume(self) -> None:
        """
        Start accepting on every port adopted while paused.
        """
        self._paused = False
        ports, self._ports = self._ports, []
        for port in ports:
            if port.connected:
                port.startReading()

    def listen(
        self,
        reactor: Any,
        port: int,
        interface: str,
        creator: IOpenSSLServerConnectionCreator,
        factory: IProtocolFactory,
        backlog: int = 0,
    ) -> IListeningPort:
        """
        Accept TLS connections on the inherited socket bound to
        C{interface}:C{port}.  C{backlog} is the supervisor's business: it
        listened already.

        @raise CannotListenError: no socket was handed down for that
            address, or the descriptor is not a listening socket bound to
            it (the worker must not serve anything else).
        """
        key = (_canonical(interface), port)
        inherited = self._unused.pop(key, None)
        if inherited is None:
            raise CannotListenError(interface, port, "the supervisor handed down no socket for it")
        try:
            family, bound = _boundAddress(inherited.fileDescriptor)
            if bound != key:
                raise PlanError(
                    f"descriptor {inherited.fileDescriptor} is bound to "
                    f"{bound[0]}:{bound[1]}, not {interface}:{port}"
                )
        except PlanError as e:
            self._close(inherited.fileDescriptor)
            raise CannotListenError(interface, port, str(e)) from e
        port = self._adopt(reactor, inherited.fileDescriptor, family, creator, factory)
        if self._paused:
            # A Twisted port is a file descriptor of the reactor: not
            # reading it is not accepting (as Twisted does itself when out
            # of descriptors).
            port.stopReading()  # type: ignore[attr-defined]
            self._ports.append(port)
        return port

    def closeUnused(self) -> list[ListenAddress]:
        """
        Close every socket nobody asked for (the supervisor keeps its own
        copy; this worker must not hold one it does not serve), and say
        which.
        """
        unused, self._unused = self._unused, {}
        for inherited in unused.values():
            self._close(inherited.fileDescriptor)
        return [inherited.address for inherited in unused.values()]


def _arguments(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m ztnagw.workers",
        description="One worker process of ztnagw; started by the gateway's supervisor "
        "(twistd ztnagw with set workers N), which writes its plan to the standard input.",
    )
    parser.add_argument("--worker", type=int, required=True, metavar="ID", help="this worker's id")
    return parser.parse_args(list(argv))


def _fail(message: str) -> None:
    sys.stderr.write(f"ztnagw worker: {message}\n")
    sys.stderr.flush()
    raise SystemExit(1)


def main(argv: Sequence[str] | None = None) -> None:
    """
    Run one worker: read the plan from the standard input, serve until
    SIGTERM or until the supervisor goes away.  Log events go to the
    standard output as records for the supervisor (L{formatRecord});
    anything else a library prints goes to the standard error, which the
    supervisor logs line by line.

    Exits with status 1 when the plan or the sockets are unusable or the
    gateway cannot start; the supervisor counts that as a failed start.
    """
    options = _arguments(sys.argv[1:] if argv is None else argv)
    # Descriptor 1 carries log records only: keep a private copy of it
    # and point 1 (and Python's sys.stdout) at stderr, so that a stray
    # print can never corrupt a record.
    records = os.fdopen(os.dup(1), "w", encoding="utf-8", errors="replace")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        plan = readPlan(sys.stdin.buffer)
    except PlanError as e:
        _fail(f"no plan from the supervisor: {e}")
    if plan.workerId != options.worker:
        _fail(f"the plan is for worker {plan.workerId}, this is worker {options.worker}")
    _serve(plan, records)


def _serve(plan: WorkerPlan, records: IO[str]) -> None:
    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner

    from ztnagw.service import GatewayService
    from ztnagw.startup import StartupFailed

    writer = RecordWriter(records, reactor)
    atexit.register(writer.flush)
    globalLogBeginner.beginLoggingTo([writer], redirectStandardIO=False)
    # Accept only once the registry indexes are loaded: a worker started
    # again under load finds connections waiting in its queue, and must not
    # refuse their devices for not knowing them yet.
    listeners = InheritedListeners(plan.sockets, paused=True)
    try:
        service = GatewayService(
            plan.prepared,
            reactor,
            configPath=plan.configPath,
            workerId=plan.workerId,
            workers=plan.workers,
            listen=listeners.listen,
        )
        service.privilegedStartService()
        service.startService()
    except StartupFailed as e:
        _log.critical("Worker {workerId} cannot start: {error}", workerId=plan.workerId, error=e)
        raise SystemExit(1)
    except Exception:
        _log.failure("Worker {workerId} cannot start", workerId=plan.workerId)
        raise SystemExit(1)
    for address in listeners.closeUnused():
        _log.warn(
            "Worker {workerId}: nothing listens on {host}:{port} ({what}); its socket is closed",
            workerId=plan.workerId,
            host=address.host,
            port=address.port,
            what=address.what,
        )
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    _watchSupervisor(reactor, plan.workerId)

    def serving(_: object) -> None:
        listeners.resume()
        _log.info(
            "Worker {workerId} serving (pid {pid})",
            workerId=plan.workerId,
            pid=os.getpid(),
            **{READY_KEY: True},
        )

    def running() -> None:
        # Ctrl-C on a gateway in the foreground reaches every process of
        # the group: the supervisor, not the terminal, orders the workers
        # to stop.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        service.whenRegistriesLoaded().addCallback(serving).addErrback(
            lambda f: _log.failure("Worker {workerId} cannot serve", f, workerId=plan.workerId)
        )

    reactor.callWhenRunning(running)
    reactor.run()


def _watchSupervisor(reactor: Any, workerId: int) -> None:
    """
    Stop the worker when its standard input ends: the supervisor closed
    it, or died.
    """
    from twisted.internet import abstract, fdesc

    class SupervisorPipe(abstract.FileDescriptor):
        """
        The read end of the supervisor's pipe; nothing comes after the
        plan, so only its end matters.
        """

        def fileno(self) -> int:
            """
            Standard input.
            """
            return 0

        def doRead(self) -> Any:
            """
            Drop anything read; report the end.
            """
            return fdesc.readFromFD(0, lambda data: None)

        def connectionLost(self, reason: Any) -> None:
            """
            The supervisor is gone: stop.
            """
            abstract.FileDescriptor.connectionLost(self, reason)
            if reactor.running:
                _log.warn(
                    "Worker {workerId}: the supervisor is gone; stopping", workerId=workerId
                )
                reactor.stop()

    fdesc.setNonBlocking(0)
    SupervisorPipe(reactor).startReading()


if __name__ == "__main__":
    # Run as -m, this file is the module __main__; the plan's classes are
    # those of ztnagw.workers, so the worker must run from that module.
    from ztnagw.workers import main as _main

    _main()
