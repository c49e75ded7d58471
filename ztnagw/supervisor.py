# -*- test-case-name: tests.test_workers_supervisor -*-
"""
The supervisor of a gateway that runs several worker processes (C{config
system global} / C{set workers N}, N > 1).

With several workers, C{twistd ztnagw} serves nothing itself.  It:

  1. prepares the gateway once, as with one process (L{ztnagw.tap});
  2. binds, in C{privilegedStartService} (so before twistd drops
     privileges: ports below 1024 work with C{--uid}), one C{SO_REUSEPORT}
     socket per listening address I{for each worker}
     (L{WorkerSockets}).  Each worker thus has an accept queue of its own,
     and the kernel spreads new connections over the workers by a hash of
     their addresses.  The supervisor keeps its copy of every socket: a
     worker that dies leaves its queue in place, and the connections
     waiting there are served by its successor instead of being reset;
  3. starts the workers (C{python -m ztnagw.workers --worker N},
     L{ProcessWorkerLauncher}), each with its plan on its standard input
     and its sockets as descriptors 3, 4, ... (see L{ztnagw.workers}).
     Worker 1 starts alone, the others once it serves: whatever a gateway
     creates in its state directory at its first start (keys, the
     registry's tables) is then created once, by one process;
  4. restarts a worker that exits (L{WorkerSupervisor}), after a delay
     that doubles while it keeps failing soon after its start
     (L{RestartPolicy}); a worker that cannot start at all is given up
     after a few attempts, and then the whole gateway stops with exit
     status 1 rather than serve on with part of its capacity and a hidden
     fault;
  5. relays each worker's log events to the daemon's log, tagged with its
     id (L{WorkerOutput});
  6. passes SIGHUP (log files reopened) to every worker, and on SIGTERM
     stops them all: SIGTERM to each, SIGKILL to those still running after
     a grace period, and exits once every one is gone.

The workers do not talk to each other: each keeps its own registry index
current from the shared store, and what cannot be shared is documented in
C{docs/operations.md}.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from typing import Any, Callable, Mapping, Sequence

from attrs import define, field, frozen
from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ProcessExitedAlready, ReactorNotRunning
from twisted.internet.interfaces import IDelayedCall, IProcessTransport
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import (
    ILogObserver,
    InvalidLogLevelError,
    Logger,
    LogLevel,
    eventFromJSON,
    globalLogPublisher,
)
from twisted.python.failure import Failure
from zope.interface import Interface, implementer

from ztnagw.service import stopForListenError
from ztnagw.tls.listener import DEFAULT_BACKLOG, checkPortFree, reusePortSocket
from ztnagw.workers import (
    FIRST_SOCKET_FD,
    LINE_FIELDS,
    LINE_RECORD,
    READY_KEY,
    InheritedSocket,
    ListenAddress,
    WorkerPlan,
    encodePlan,
    listenAddresses,
)

__all__ = [
    "GatewaySupervisor",
    "IWorkerLauncher",
    "ProcessWorkerLauncher",
    "RestartPolicy",
    "WorkerOutput",
    "WorkerSockets",
    "WorkerSupervisor",
    "workerCount",
]

_log = Logger()

#: Seconds a stopping worker is given to finish before it is killed.
STOP_GRACE = 10.0

#: The longest log record or stderr line relayed whole; longer ones are
#: cut (a worker cannot make the supervisor buffer without bound).
MAX_RECORD = 1 << 20


def workerCount(configured: int, cpus: Callable[[], int] | None = None) -> int:
    """
    How many worker processes C{set workers} asks for: the number given,
    or for 0 one per CPU this process may run on.
    """
    if configured > 0:
        return configured
    if cpus is None:
        cpus = _usableCpus
    return max(1, cpus())


def _usableCpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@frozen
class RestartPolicy:
    """
    When a worker that exited is started again.

    A worker that ran for C{stableAfter} seconds after it said it serves
    is restarted after C{initialDelay}.  One that failed sooner (or never
    got to serve) counts a failure; each further failure in a row doubles
    the delay (up to C{maximumDelay}), and at C{giveUpAfter} failures in a
    row the supervisor gives up: the gateway stops with status 1.

    @ivar initialDelay: seconds before the first restart.
    @ivar maximumDelay: the longest delay.
    @ivar giveUpAfter: failures in a row that end the gateway.
    @ivar stableAfter: seconds of serving after which a worker's exit is
        no longer a failure to start.
    """

    initialDelay: float = 0.5
    maximumDelay: float = 30.0
    giveUpAfter: int = 5
    stableAfter: float = 10.0

    def delay(self, failures: int) -> float:
        """
        Seconds before restarting a worker that failed C{failures} times in
        a row (1 or more).
        """
        return float(min(self.maximumDelay, self.initialDelay * 2 ** max(0, failures - 1)))


class IWorkerLauncher(Interface):
    """
    Starts worker processes (a seam: tests launch fakes).
    """

    def launch(workerId: int, protocol: ProcessProtocol) -> IProcessTransport:
        """
        Start worker C{workerId}.  C{protocol} gets its standard output
        (descriptor 1: log records), its standard error (descriptor 2) and
        its end (C{processEnded}).

        @raise OSError: the process cannot be started.
        """


class WorkerSockets:
    """
    The listening sockets of every worker: one C{SO_REUSEPORT} socket per
    address and worker, bound by L{bind} and kept until L{close}.
    """

    def __init__(
        self,
        addresses: Sequence[ListenAddress],
        workers: int,
        backlog: int = DEFAULT_BACKLOG,
        makeSocket: Callable[[str, int, int], socket.socket] = reusePortSocket,
        checkFree: Callable[[str, int], None] = checkPortFree,
    ) -> None:
        """
        @param addresses: where the gateway listens (L{listenAddresses}).
        @param workers: how many workers.
        @param backlog: each socket's listen queue.
        @param makeSocket: binds one socket (L{reusePortSocket}).
        @param checkFree: refuses an address in use (L{checkPortFree}).
        """
        self.addresses = tuple(addresses)
        self._workers = workers
        self._backlog = backlog
        self._makeSocket = makeSocket
        self._checkFree = checkFree
        self._sockets: dict[int, list[socket.socket]] = {}

    def bind(self) -> None:
        """
        Bind every socket.  An address already in use (by another gateway
        left running, say) is refused rather than shared.

        @raise OSError: one cannot be bound; its message names the address
            and what listens there.  Sockets bound so far are closed.
        """
        try:
            for address in self.addresses:
                port = address.port
                if port != 0:
                    self._checkFree(address.host, port)
                for workerId in range(1, self._workers + 1):
                    sock = self._makeSocket(address.host, port, self._backlog)
                    self._sockets.setdefault(workerId, []).append(sock)
                    # Port 0: the kernel chose for the first; the others join it.
                    port = sock.getsockname()[1]
        except OSError as e:
            self.close()
            raise OSError(
                e.errno,
                f"{address.what} cannot listen on {address.host}:{address.port}: "
                f"{e.strerror or e}",
            ) from e

    def ports(self) -> list[int]:
        """
        The bound port of each address, in order (the kernel's choice for
        a port given as 0).
        """
        return [sock.getsockname()[1] for sock in self._sockets.get(1, [])]

    def forWorker(self, workerId: int) -> list[socket.socket]:
        """
        Worker C{workerId}'s sockets, one per address, in order.
        """
        return list(self._sockets[workerId])

    def close(self) -> None:
        """
        Close every socket (workers still running keep theirs).
        """
        sockets, self._sockets = self._sockets, {}
        for socks in sockets.values():
            for sock in socks:
                sock.close()


@implementer(IWorkerLauncher)
class ProcessWorkerLauncher:
    """
    Starts workers as C{python -m ztnagw.workers --worker N}, with their
    sockets as descriptors 3, 4, ... and their plan on their standard
    input (which stays open: its end tells a worker the supervisor is
    gone).
    """

    def __init__(
        self,
        reactor: Any,
        prepared: Any,
        workers: int,
        sockets: WorkerSockets,
        configPath: str | None = None,
        executable: str = sys.executable,
        environment: Mapping[str, str] | None = None,
    ) -> None:
        """
        @param reactor: an L{IReactorProcess} provider.
        @param prepared: the prepared gateway every worker serves.
        @param workers: how many workers.
        @param sockets: their sockets, bound.
        @param configPath: the configuration file, for the workers' logs.
        @param executable: the Python interpreter.
        @param environment: the workers' environment (this process's by
            default).
        """
        self._reactor = reactor
        self._prepared = prepared
        self._workers = workers
        self._sockets = sockets
        self._configPath = configPath
        self._executable = executable
        self._environment = dict(os.environ if environment is None else environment)

    def plan(self, workerId: int) -> WorkerPlan:
        """
        What worker C{workerId} is given.
        """
        return WorkerPlan(
            workerId=workerId,
            workers=self._workers,
            configPath=self._configPath,
            prepared=self._prepared,
            sockets=tuple(
                InheritedSocket(address, FIRST_SOCKET_FD + n)
                for n, address in enumerate(self._sockets.addresses)
            ),
        )

    def launch(self, workerId: int, protocol: ProcessProtocol) -> IProcessTransport:
        """
        Start worker C{workerId} (see L{IWorkerLauncher.launch}).
        """
        childFDs: dict[int, int | str] = {0: "w", 1: "r", 2: "r"}
        for n, sock in enumerate(self._sockets.forWorker(workerId)):
            childFDs[FIRST_SOCKET_FD + n] = sock.fileno()
        data = encodePlan(self.plan(workerId))
        transport: IProcessTransport = self._reactor.spawnProcess(
            protocol,
            self._executable,
            [self._executable, "-m", "ztnagw.workers", "--worker", str(workerId)],
            env=self._environment,
            childFDs=childFDs,
        )
        transport.writeToChild(0, data)
        return transport


class WorkerOutput:
    """
    Splits what a worker writes into log events (descriptor 1: records
    as L{ztnagw.workers.formatRecord} writes them, JSON or compact) and
    lines (descriptor 2), whatever pieces the pipe delivers them in.

    A record that is not JSON, and one longer than C{maximum} bytes, is
    passed on as text, never dropped silently; a line longer than
    C{maximum} is passed on in pieces of C{maximum} bytes.
    """

    def __init__(
        self,
        onEvent: Callable[[dict[str, Any]], None],
        onText: Callable[[str, int], None],
        maximum: int = MAX_RECORD,
    ) -> None:
        """
        @param onEvent: called with each decoded event.
        @param onText: called with each line that is not an event, and the
            descriptor it came from.
        @param maximum: the longest record or line kept whole.
        """
        self._onEvent = onEvent
        self._onText = onText
        self._maximum = maximum
        self._buffers: dict[int, bytes] = {1: b"", 2: b""}

    def received(self, fd: int, data: bytes) -> None:
        """
        Take C{data} from descriptor C{fd} (1 or 2).
        """
        buffer = self._buffers.get(fd, b"") + data
        while True:
            end = buffer.find(b"\n")
            if end < 0:
                break
            self._complete(fd, buffer[:end])
            buffer = buffer[end + 1 :]
        while len(buffer) > self._maximum:
            self._complete(fd, buffer[: self._maximum], cut=True)
            buffer = buffer[self._maximum :]
        self._buffers[fd] = buffer

    def ended(self) -> None:
        """
        The worker is gone: pass on what is left unterminated.
        """
        for fd, buffer in self._buffers.items():
            if buffer:
                self._complete(fd, buffer)
        self._buffers = {1: b"", 2: b""}

    def _complete(self, fd: int, data: bytes, cut: bool = False) -> None:
        if fd == 1 and not cut and data.startswith(_LINE_RECORD):
            event = _lineEvent(data)
            if event is not None:
                self._onEvent(event)
                return
        elif fd == 1 and not cut:
            record = data[1:] if data.startswith(b"\x1e") else data
            if not record.strip(b" \t\r\x1e"):
                return
            try:
                event = eventFromJSON(record.decode("utf-8"))
            except ValueError:
                event = None
            if isinstance(event, dict):
                self._onEvent(event)
                return
        text = data.decode("utf-8", "replace").rstrip("\r")
        if text.strip("\x1e"):
            self._onText(text + (" [cut]" if cut else ""), fd)


_LINE_RECORD = LINE_RECORD.encode("ascii")


def _lineEvent(data: bytes) -> dict[str, Any] | None:
    """
    The event of a compact record (see L{ztnagw.workers.formatRecord}), or
    C{None} if it is not one.
    """
    try:
        text = data[len(_LINE_RECORD) :].decode("utf-8")
    except UnicodeDecodeError:
        return None
    fields = text.split(LINE_FIELDS, 3)
    if len(fields) != 4:
        return None
    levelName, when, namespace, line = fields
    try:
        level = LogLevel.levelWithName(levelName)
        seconds = float(when)
    except (InvalidLogLevelError, ValueError):
        return None
    return {
        "log_level": level,
        "log_time": seconds,
        "log_namespace": namespace,
        "log_format": "{ztnaLogLine}",
        "ztnaLogLine": line,
    }


class _WorkerProtocol(ProcessProtocol):
    """
    One worker process as its supervisor sees it.
    """

    def __init__(self, supervisor: WorkerSupervisor, workerId: int) -> None:
        self._supervisor = supervisor
        self._workerId = workerId
        self._output = WorkerOutput(
            lambda event: supervisor._workerEvent(workerId, event),
            lambda text, fd: supervisor._workerText(workerId, text, fd),
        )

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        self._output.received(childFD, data)

    def processEnded(self, reason: Failure) -> None:
        self._output.ended()
        self._supervisor._workerEnded(self._workerId, reason)


@define
class _Slot:
    """
    One worker id's state.
    """

    workerId: int
    transport: IProcessTransport | None = None
    pid: int | None = None
    startedAt: float = 0.0
    readyAt: float | None = None
    failures: int = 0
    restart: IDelayedCall | None = None
    kill: IDelayedCall | None = None


def _describeExit(reason: Failure) -> str:
    signalNumber = getattr(reason.value, "signal", None)
    if signalNumber is not None:
        try:
            name = signal.Signals(signalNumber).name
        except ValueError:
            name = f"signal {signalNumber}"
        return f"was killed by {name}"
    return f"exited with status {getattr(reason.value, 'exitCode', None)}"


def _level(value: object) -> Any:
    """
    The log level a relayed event claims, if it is one (info otherwise).
    """
    name = getattr(value, "name", None)
    if isinstance(name, str):
        try:
            level = LogLevel.levelWithName(name)
        except InvalidLogLevelError:
            return LogLevel.info
        if level is value:
            return level
    return LogLevel.info


class WorkerSupervisor(Service):
    """
    Starts the workers, restarts them, passes signals on and stops them
    (see the module docstring).

    @ivar exitStatus: 0, or 1 once the supervisor gave up on a worker; the
        daemon's exit status.
    """

    def __init__(
        self,
        reactor: Any,
        workers: int,
        launcher: IWorkerLauncher,
        policy: RestartPolicy = RestartPolicy(),
        stopGrace: float = STOP_GRACE,
        stopGateway: Callable[[], None] | None = None,
        observer: ILogObserver = globalLogPublisher,
        installSignalHandler: bool = True,
    ) -> None:
        """
        @param reactor: the clock (and C{callFromThread}).
        @param workers: how many workers.
        @param launcher: starts one.
        @param policy: when to restart.
        @param stopGrace: seconds a stopping worker is given before
            SIGKILL.
        @param stopGateway: stops the daemon after giving up
            (C{reactor.stop} by default).
        @param observer: where the workers' log events go (the global log).
        @param installSignalHandler: whether to handle SIGHUP (tests say
            no).
        """
        self._reactor = reactor
        self._launcher = launcher
        self._policy = policy
        self._stopGrace = stopGrace
        self._stopGateway = stopGateway if stopGateway is not None else reactor.stop
        self._observer = observer
        self._installSignalHandler = installSignalHandler
        self._previousHandler: Any = None
        self._slots = {workerId: _Slot(workerId) for workerId in range(1, workers + 1)}
        self._othersStarted = False
        self._stopping = False
        self._stopped: Deferred[None] | None = None
        self.exitStatus = 0
        self.setName("workers")

    # Queries.

    def pids(self) -> dict[int, int]:
        """
        The process id of each running worker, by worker id.
        """
        return {
            slot.workerId: slot.pid
            for slot in self._slots.values()
            if slot.transport is not None and slot.pid is not None
        }

    def serving(self) -> list[int]:
        """
        The ids of the workers that said they serve and still run.
        """
        return [
            slot.workerId
            for slot in self._slots.values()
            if slot.transport is not None and slot.readyAt is not None
        ]

    # Starting.

    def startService(self) -> None:
        """
        Start worker 1 (the others follow once it serves); handle SIGHUP.
        """
        Service.startService(self)
        self._stopping = False
        self._othersStarted = False
        if self._installSignalHandler:
            self._previousHandler = signal.signal(signal.SIGHUP, self._sighup)
        self._start(1)

    def _startOthers(self) -> None:
        if self._othersStarted:
            return
        self._othersStarted = True
        for workerId in sorted(self._slots)[1:]:
            self._start(workerId)

    def _start(self, workerId: int) -> None:
        slot = self._slots[workerId]
        slot.restart = None
        if self._stopping:
            return
        slot.startedAt = self._reactor.seconds()
        slot.readyAt = None
        try:
            transport = self._launcher.launch(workerId, _WorkerProtocol(self, workerId))
        except Exception as e:
            _log.error(
                "Worker {workerId} cannot be started: {error}", workerId=workerId, error=e
            )
            self._failed(slot, f"could not be started ({e})")
            return
        slot.transport = transport
        slot.pid = transport.pid
        _log.info("Worker {workerId} started (pid {pid})", workerId=workerId, pid=slot.pid)

    # What workers say.

    def _workerEvent(self, workerId: int, event: dict[str, Any]) -> None:
        slot = self._slots[workerId]
        if event.get(READY_KEY) is True and slot.transport is not None and slot.readyAt is None:
            slot.readyAt = self._reactor.seconds()
            _log.info("Worker {workerId} (pid {pid}) serving", workerId=workerId, pid=slot.pid)
            if workerId == 1:
                self._startOthers()
        level = _level(event.get("log_level"))
        system = event.get("log_system")
        if not isinstance(system, str) or system == "-":
            system = f"{event.get('log_namespace', '-')}#{level.name}"
        event["log_level"] = level
        event["log_system"] = f"worker{workerId} {system}"
        event["workerId"] = workerId
        if not isinstance(event.get("log_time"), (int, float)):
            event["log_time"] = self._reactor.seconds()
        self._observer(event)

    def _workerText(self, workerId: int, text: str, fd: int) -> None:
        _log.warn(
            "{text}",
            text=text,
            workerId=workerId,
            log_system=f"worker{workerId} {'stderr' if fd == 2 else 'stdout'}",
        )

    # Ends.

    def _workerEnded(self, workerId: int, reason: Failure) -> None:
        slot = self._slots[workerId]
        pid, how = slot.pid, _describeExit(reason)
        slot.transport = None
        slot.pid = None
        if slot.kill is not None and slot.kill.active():
            slot.kill.cancel()
        slot.kill = None
        if self._stopping:
            _log.info("Worker {workerId} (pid {pid}) {how}", workerId=workerId, pid=pid, how=how)
            self._checkStopped()
            return
        now = self._reactor.seconds()
        if slot.readyAt is not None and now - slot.readyAt >= self._policy.stableAfter:
            slot.failures = 0
        _log.error(
            "Worker {workerId} (pid {pid}) {how}", workerId=workerId, pid=pid, how=how
        )
        self._failed(slot, how)

    def _failed(self, slot: _Slot, how: str) -> None:
        slot.failures += 1
        if slot.failures >= self._policy.giveUpAfter:
            self._giveUp(slot, how)
            return
        delay = self._policy.delay(slot.failures)
        _log.warn(
            "Restarting worker {workerId} in {delay:g} s ({failures} failure(s) in a row; "
            "the gateway stops at {limit})",
            workerId=slot.workerId,
            delay=delay,
            failures=slot.failures,
            limit=self._policy.giveUpAfter,
        )
        slot.restart = self._reactor.callLater(delay, self._start, slot.workerId)

    def _giveUp(self, slot: _Slot, how: str) -> None:
        first = self.exitStatus == 0
        _log.critical(
            "Worker {workerId} {how}: {failures} failures in a row, none serving for "
            "{stable:g} s; giving up, the gateway stops (exit status 1). The worker's own "
            "log lines above say why.",
            workerId=slot.workerId,
            how=how,
            failures=slot.failures,
            stable=self._policy.stableAfter,
        )
        self.exitStatus = 1
        if first and not self._stopping:
            try:
                self._stopGateway()
            except ReactorNotRunning:
                pass

    # Signals.

    def _sighup(self, number: int, frame: object) -> None:
        # A signal interrupts whatever the reactor thread was doing; the
        # work waits for the reactor's next turn.
        self._reactor.callFromThread(self.reopenLogs)

    def reopenLogs(self) -> None:
        """
        Pass SIGHUP to every running worker: each reopens its log files.
        """
        count = self._signalAll(signal.SIGHUP)
        _log.info("Reopening log files: SIGHUP passed to {count} worker(s)", count=count)

    def _signalAll(self, number: int) -> int:
        count = 0
        for slot in self._slots.values():
            if slot.transport is not None:
                try:
                    slot.transport.signalProcess(number)
                except ProcessExitedAlready:
                    continue
                count += 1
        return count

    # Stopping.

    def stopService(self) -> Deferred[None]:
        """
        Stop every worker: SIGTERM now, SIGKILL to those still running
        after the grace period.  Fires once every worker has exited.
        """
        Service.stopService(self)
        self._stopping = True
        if self._installSignalHandler and self._previousHandler is not None:
            signal.signal(signal.SIGHUP, self._previousHandler)
            self._previousHandler = None
        for slot in self._slots.values():
            if slot.restart is not None and slot.restart.active():
                slot.restart.cancel()
            slot.restart = None
        running = [slot for slot in self._slots.values() if slot.transport is not None]
        if not running:
            return succeed(None)
        self._stopped = Deferred()
        _log.info("Stopping {count} worker(s)", count=len(running))
        for slot in running:
            assert slot.transport is not None
            try:
                slot.transport.signalProcess(signal.SIGTERM)
            except ProcessExitedAlready:
                pass
            slot.kill = self._reactor.callLater(self._stopGrace, self._kill, slot)
        stopped = self._stopped
        self._checkStopped()
        return stopped

    def _kill(self, slot: _Slot) -> None:
        slot.kill = None
        if slot.transport is None:
            return
        _log.warn(
            "Worker {workerId} (pid {pid}) did not stop within {grace:g} s; killing it",
            workerId=slot.workerId,
            pid=slot.pid,
            grace=self._stopGrace,
        )
        try:
            slot.transport.signalProcess(signal.SIGKILL)
        except ProcessExitedAlready:
            pass

    def _checkStopped(self) -> None:
        if self._stopped is None:
            return
        if any(slot.transport is not None for slot in self._slots.values()):
            return
        stopped, self._stopped = self._stopped, None
        stopped.callback(None)


class GatewaySupervisor(MultiService):
    """
    What C{twistd ztnagw} runs with several workers: the sockets, bound in
    L{privilegedStartService}, and the L{WorkerSupervisor}.

    @ivar sockets: the workers' sockets.
    @ivar workers: the process supervisor.
    """

    def __init__(
        self,
        prepared: Any,
        reactor: Any,
        workers: int,
        configPath: str | None = None,
        sockets: WorkerSockets | None = None,
        launcher: IWorkerLauncher | None = None,
        **supervisorOptions: Any,
    ) -> None:
        """
        @param prepared: the prepared gateway.
        @param reactor: the reactor.
        @param workers: how many workers (2 or more).
        @param configPath: the configuration file, for logs.
        @param sockets: the sockets (by default, for L{listenAddresses}).
        @param launcher: starts workers (by default a
            L{ProcessWorkerLauncher}).
        @param supervisorOptions: passed to L{WorkerSupervisor}.
        @raise ztnagw.workers.PlanError: two listeners share an address.
        """
        MultiService.__init__(self)
        self._prepared = prepared
        self._configPath = configPath
        self._count = workers
        self.sockets = (
            sockets if sockets is not None else WorkerSockets(listenAddresses(prepared), workers)
        )
        if launcher is None:
            launcher = ProcessWorkerLauncher(reactor, prepared, workers, self.sockets, configPath)
        self.workers = WorkerSupervisor(reactor, workers, launcher, **supervisorOptions)
        self.workers.setServiceParent(self)

    def privilegedStartService(self) -> None:
        """
        Bind every worker's sockets (before twistd drops privileges).  An
        address that cannot be bound stops the daemon with the reason.
        """
        with stopForListenError():
            self.sockets.bind()
        for address, port in zip(self.sockets.addresses, self.sockets.ports()):
            _log.info(
                "{what} listening on {host}:{port} ({workers} workers)",
                what=address.what,
                host=address.host,
                port=port,
                workers=self._count,
            )
        MultiService.privilegedStartService(self)

    def startService(self) -> None:
        """
        Say what runs, and start the workers.
        """
        config = self._prepared.config
        _log.info(
            "ztnagw {hostname} starting with {path}: {workers} worker processes",
            hostname=config.systemGlobal.hostname,
            path=self._configPath,
            workers=self._count,
        )
        MultiService.startService(self)

    def stopService(self) -> Deferred[None]:
        """
        Stop the workers, then close the sockets.
        """
        stopping = MultiService.stopService(self)

        def close(result: object) -> object:
            self.sockets.close()
            return result

        return stopping.addBoth(close)
