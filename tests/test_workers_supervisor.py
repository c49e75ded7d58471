"""
Tests for L{ztnagw.supervisor}: starting, restarting, giving up on and
stopping worker processes, passing signals on, relaying their logs; the
workers' sockets.

The process logic runs against a fake launcher and a L{MemoryReactorClock}:
a "worker" is a fake transport the test ends, or makes say it serves, when
it wants.
"""

from __future__ import annotations

import errno
import signal
import socket
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.error import ProcessDone, ProcessExitedAlready, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel, eventAsJSON, formatEvent, formatEventAsClassicLogText, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from ztnagw.supervisor import (
    GatewaySupervisor,
    IWorkerLauncher,
    ProcessWorkerLauncher,
    RestartPolicy,
    WorkerOutput,
    WorkerSockets,
    WorkerSupervisor,
    workerCount,
)
from ztnagw.workers import FIRST_SOCKET_FD, READY_KEY, ListenAddress, decodePlan, formatRecord


class FakeWorker:
    """
    The transport of a fake worker process.

    @ivar signals: the signals sent to it.
    """

    def __init__(self, pid: int, protocol: ProcessProtocol) -> None:
        self.pid: int | None = pid
        self.protocol = protocol
        self.signals: list[int] = []
        self.exited = False

    def signalProcess(self, number: int) -> None:
        """
        Record C{number}; a worker that exited raises, as a real one does.
        """
        if self.exited:
            raise ProcessExitedAlready()
        self.signals.append(number)

    def say(self, event: dict[str, Any]) -> None:
        """
        Write C{event} as a JSON log record on descriptor 1.
        """
        self.protocol.childDataReceived(1, ("\x1e" + eventAsJSON(event) + "\n").encode("utf-8"))

    def serve(self) -> None:
        """
        Say it serves, as a worker does once it listens.
        """
        self.say(
            {
                "log_namespace": "ztnagw.workers",
                "log_level": LogLevel.info,
                "log_format": "Worker serving",
                "log_time": 0.0,
                READY_KEY: True,
            }
        )

    def end(self, exitCode: int | None = 1, signalNumber: int | None = None) -> None:
        """
        End the process: a status or a signal.
        """
        self.exited = True
        if exitCode == 0 and signalNumber is None:
            reason = Failure(ProcessDone(0))
        else:
            reason = Failure(ProcessTerminated(exitCode, signalNumber))
        self.protocol.processEnded(reason)


@implementer(IWorkerLauncher)
class FakeLauncher:
    """
    Launches L{FakeWorker}s.

    @ivar launched: each launch, as C{(workerId, worker)}, in order.
    @ivar failNext: how many launches to fail with an L{OSError}.
    """

    def __init__(self) -> None:
        self.launched: list[tuple[int, FakeWorker]] = []
        self.failNext = 0
        self._pid = 1000

    def launch(self, workerId: int, protocol: ProcessProtocol) -> FakeWorker:
        """
        A new fake worker.
        """
        if self.failNext:
            self.failNext -= 1
            raise OSError(errno.EAGAIN, "Resource temporarily unavailable")
        self._pid += 1
        worker = FakeWorker(self._pid, protocol)
        self.launched.append((workerId, worker))
        return worker

    def latest(self, workerId: int) -> FakeWorker:
        """
        The last worker launched for C{workerId}.
        """
        return [worker for launched, worker in self.launched if launched == workerId][-1]


class SupervisorCase(SynchronousTestCase):
    """
    A supervisor of 3 fake workers, its clock, and what it logs and stops.
    """

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.launcher = FakeLauncher()
        self.events: list[dict[str, Any]] = []
        self.stops: list[None] = []
        self.policy = RestartPolicy(initialDelay=0.5, maximumDelay=3.0, giveUpAfter=4, stableAfter=10.0)
        self.supervisor = WorkerSupervisor(
            self.clock,
            3,
            self.launcher,
            policy=self.policy,
            stopGrace=5.0,
            stopGateway=lambda: self.stops.append(None),
            observer=self.events.append,
            installSignalHandler=False,
        )

    def startAll(self) -> dict[int, FakeWorker]:
        """
        Start the supervisor and have worker 1 serve, so that all start.
        """
        self.supervisor.startService()
        self.launcher.latest(1).serve()
        return {workerId: self.launcher.latest(workerId) for workerId in (1, 2, 3)}


class StartTests(SupervisorCase):
    """
    Starting workers.
    """

    def test_launcher(self) -> None:
        """
        L{FakeLauncher} provides L{IWorkerLauncher}, as
        L{ProcessWorkerLauncher} does.
        """
        verifyObject(IWorkerLauncher, self.launcher)

    def test_firstAlone(self) -> None:
        """
        Worker 1 starts alone; the others start once it serves, so that
        what a first start creates in the state directory is created by
        one process.
        """
        self.supervisor.startService()
        self.assertEqual([workerId for workerId, _ in self.launcher.launched], [1])
        self.launcher.latest(1).serve()
        self.assertEqual([workerId for workerId, _ in self.launcher.launched], [1, 2, 3])
        self.assertEqual(self.supervisor.serving(), [1])
        self.assertEqual(self.supervisor.pids(), {1: 1001, 2: 1002, 3: 1003})

    def test_othersStartOnce(self) -> None:
        """
        When worker 1 is restarted and serves again, the others are not
        started a second time.
        """
        workers = self.startAll()
        workers[1].end(signalNumber=signal.SIGKILL)
        self.clock.advance(0.5)
        self.launcher.latest(1).serve()
        self.assertEqual(
            [workerId for workerId, _ in self.launcher.launched], [1, 2, 3, 1]
        )

    def test_serving(self) -> None:
        """
        L{WorkerSupervisor.serving} lists the workers that said they serve.
        """
        workers = self.startAll()
        workers[3].serve()
        self.assertEqual(self.supervisor.serving(), [1, 3])


class RestartTests(SupervisorCase):
    """
    Restarting workers that exit.
    """

    def test_crashAfterServingLong(self) -> None:
        """
        A worker that served longer than C{stableAfter} and then dies is
        started again after C{initialDelay}, with the same id; the others
        are left alone.
        """
        workers = self.startAll()
        workers[2].serve()
        self.clock.advance(60)
        workers[2].end(signalNumber=signal.SIGKILL)
        self.assertEqual(self.supervisor.pids(), {1: 1001, 3: 1003})
        self.clock.advance(0.4)
        self.assertEqual(len(self.launcher.launched), 3)
        self.clock.advance(0.1)
        self.assertEqual(self.launcher.launched[-1][0], 2)
        self.assertEqual(self.supervisor.pids(), {1: 1001, 2: 1004, 3: 1003})
        self.assertEqual(workers[1].signals + workers[3].signals, [])

    def test_backoff(self) -> None:
        """
        Each failure in a row doubles the delay, up to C{maximumDelay}.
        """
        self.startAll()
        delays = []
        for _ in range(3):
            worker = self.launcher.latest(2)
            worker.end(exitCode=1)
            [call] = self.clock.getDelayedCalls()
            delays.append(call.getTime() - self.clock.seconds())
            self.clock.advance(delays[-1])
        self.assertEqual(delays, [0.5, 1.0, 2.0])
        self.assertEqual(self.policy.delay(3), 2.0)
        self.assertEqual(self.policy.delay(4), 3.0)
        self.assertEqual(self.policy.delay(40), 3.0)

    def test_stableResetsFailures(self) -> None:
        """
        A worker that fails twice, then serves for C{stableAfter} seconds
        and dies, is restarted after C{initialDelay} again.
        """
        self.startAll()
        for _ in range(2):
            self.launcher.latest(3).end()
            self.clock.advance(10)
        worker = self.launcher.latest(3)
        worker.serve()
        self.clock.advance(10)
        worker.end(signalNumber=signal.SIGSEGV)
        [call] = self.clock.getDelayedCalls()
        self.assertEqual(call.getTime() - self.clock.seconds(), 0.5)

    def test_serveBrieflyIsAFailure(self) -> None:
        """
        A worker that serves, but for less than C{stableAfter} seconds,
        still counts a failure.
        """
        self.startAll()
        worker = self.launcher.latest(3)
        worker.end()
        self.clock.advance(0.5)
        worker = self.launcher.latest(3)
        worker.serve()
        self.clock.advance(9)
        worker.end()
        [call] = self.clock.getDelayedCalls()
        self.assertEqual(call.getTime() - self.clock.seconds(), 1.0)

    def test_cleanExitRestarted(self) -> None:
        """
        A worker that exits with status 0 on its own (no worker should) is
        restarted too.
        """
        workers = self.startAll()
        workers[2].end(exitCode=0)
        self.clock.advance(0.5)
        self.assertEqual(self.launcher.launched[-1][0], 2)

    def test_launchFailure(self) -> None:
        """
        A worker that cannot even be launched counts a failure and is
        tried again later.
        """
        self.launcher.failNext = 1
        self.supervisor.startService()
        self.assertEqual(self.launcher.launched, [])
        self.clock.advance(0.5)
        self.assertEqual([workerId for workerId, _ in self.launcher.launched], [1])

    def test_exitsLogged(self) -> None:
        """
        Each exit is logged with the worker's id, pid and how it ended.
        """
        messages: list[str] = []
        from twisted.logger import globalLogPublisher

        def observe(event: dict[str, Any]) -> None:
            if event.get("log_namespace") == "ztnagw.supervisor":
                messages.append(formatEventAsClassicLogText(event) or "")

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        workers = self.startAll()
        workers[2].end(signalNumber=signal.SIGKILL)
        workers[3].end(exitCode=3)
        text = "".join(messages)
        self.assertIn("Worker 2 (pid 1002) was killed by SIGKILL", text)
        self.assertIn("Worker 3 (pid 1003) exited with status 3", text)
        self.assertIn("Restarting worker 2 in 0.5 s", text)


class GiveUpTests(SupervisorCase):
    """
    A worker that cannot start is not restarted forever.
    """

    def test_giveUp(self) -> None:
        """
        After C{giveUpAfter} failures in a row the supervisor restarts no
        more, stops the gateway once and sets exit status 1.
        """
        self.supervisor.startService()
        for attempt in range(4):
            self.assertEqual(self.stops, [])
            self.launcher.latest(1).end(exitCode=1)
            self.clock.advance(10)
        self.assertEqual(self.stops, [None])
        self.assertEqual(self.supervisor.exitStatus, 1)
        self.assertEqual(len(self.launcher.launched), 4)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_secondGiveUpStopsOnce(self) -> None:
        """
        Two workers given up on stop the gateway once (stopping a stopped
        reactor raises).
        """
        self.startAll()
        for _ in range(4):
            for workerId in (2, 3):
                worker = self.launcher.latest(workerId)
                if not worker.exited:
                    worker.end()
            self.clock.advance(10)
        self.assertEqual(self.stops, [None])
        self.assertEqual(self.supervisor.exitStatus, 1)

    def test_givingUpStopsTheOthers(self) -> None:
        """
        The gateway's stop then stops the other workers as usual.
        """
        workers = self.startAll()
        for _ in range(4):
            self.launcher.latest(3).end()
            self.clock.advance(10)
        stopping = self.supervisor.stopService()
        self.assertEqual(workers[1].signals, [signal.SIGTERM])
        self.assertEqual(workers[2].signals, [signal.SIGTERM])
        workers[1].end(exitCode=0)
        workers[2].end(exitCode=0)
        self.successResultOf(stopping)


class SignalTests(SupervisorCase):
    """
    Signals passed on to workers.
    """

    def test_reopenLogs(self) -> None:
        """
        L{WorkerSupervisor.reopenLogs} (SIGHUP) sends SIGHUP to every
        running worker, and to no exited one.
        """
        workers = self.startAll()
        workers[2].end()
        self.supervisor.reopenLogs()
        self.assertEqual(workers[1].signals, [signal.SIGHUP])
        self.assertEqual(workers[2].signals, [])
        self.assertEqual(workers[3].signals, [signal.SIGHUP])

    def test_exitedMeanwhile(self) -> None:
        """
        A worker that exited before its end was reported is skipped.
        """
        workers = self.startAll()
        workers[2].exited = True
        self.supervisor.reopenLogs()
        self.assertEqual(workers[1].signals, [signal.SIGHUP])

    def test_sighupHandler(self) -> None:
        """
        While it runs, a supervisor that installs its handler answers
        SIGHUP (by passing it on from the reactor thread); stopped, it puts
        the previous handler back.
        """
        previous = signal.getsignal(signal.SIGHUP)
        fromThread: list[Any] = []
        self.clock.callFromThread = lambda f, *a: fromThread.append(f) or f(*a)  # type: ignore[attr-defined]
        supervisor = WorkerSupervisor(
            self.clock, 1, self.launcher, stopGateway=lambda: None, observer=self.events.append
        )
        supervisor.startService()
        try:
            handler = signal.getsignal(signal.SIGHUP)
            self.assertNotEqual(handler, previous)
            handler(signal.SIGHUP, None)  # type: ignore[operator]
            self.assertEqual(fromThread, [supervisor.reopenLogs])
            self.assertEqual(self.launcher.latest(1).signals, [signal.SIGHUP])
        finally:
            self.launcher.latest(1).exited = True
            supervisor.stopService()
        self.assertEqual(signal.getsignal(signal.SIGHUP), previous)


class StopTests(SupervisorCase):
    """
    Stopping every worker.
    """

    def test_terminate(self) -> None:
        """
        Stopping sends SIGTERM to every worker and fires once all exited;
        none is restarted.
        """
        workers = self.startAll()
        stopping = self.supervisor.stopService()
        for worker in workers.values():
            self.assertEqual(worker.signals, [signal.SIGTERM])
        workers[1].end(exitCode=0)
        workers[3].end(exitCode=0)
        self.assertNoResult(stopping)
        workers[2].end(signalNumber=signal.SIGTERM)
        self.successResultOf(stopping)
        self.clock.advance(60)
        self.assertEqual(len(self.launcher.launched), 3)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_killAfterGrace(self) -> None:
        """
        A worker still running after the grace period gets SIGKILL.
        """
        workers = self.startAll()
        stopping = self.supervisor.stopService()
        workers[1].end(exitCode=0)
        workers[2].end(exitCode=0)
        self.clock.advance(4.9)
        self.assertEqual(workers[3].signals, [signal.SIGTERM])
        self.clock.advance(0.1)
        self.assertEqual(workers[3].signals, [signal.SIGTERM, signal.SIGKILL])
        self.assertNoResult(stopping)
        workers[3].end(signalNumber=signal.SIGKILL)
        self.successResultOf(stopping)

    def test_pendingRestartCancelled(self) -> None:
        """
        A restart waiting for its delay does not happen after the stop.
        """
        workers = self.startAll()
        workers[2].end()
        stopping = self.supervisor.stopService()
        for workerId in (1, 3):
            workers[workerId].end(exitCode=0)
        self.successResultOf(stopping)
        self.clock.advance(60)
        self.assertEqual(len(self.launcher.launched), 3)

    def test_nothingRunning(self) -> None:
        """
        With every worker gone, stopping is done at once.
        """
        self.supervisor.startService()
        self.launcher.latest(1).end()
        self.successResultOf(self.supervisor.stopService())

    def test_othersNotStartedAfterStop(self) -> None:
        """
        Worker 1 saying it serves while the gateway stops starts no other
        worker.
        """
        self.supervisor.startService()
        self.supervisor.stopService()
        self.launcher.latest(1).serve()
        self.assertEqual(len(self.launcher.launched), 1)


class RelayTests(SupervisorCase):
    """
    The workers' log events reach the daemon's log, tagged.
    """

    def test_tagged(self) -> None:
        """
        An event keeps its text, level and time; its system names the
        worker, and it carries C{workerId}.
        """
        workers = self.startAll()
        workers[2].say(
            {
                "log_namespace": "ztnagw.gateway.vip",
                "log_level": LogLevel.warn,
                "log_format": "VIP {vip} is {state}",
                "vip": "MAIN",
                "state": "up",
                "log_time": 1234.5,
            }
        )
        [event] = [e for e in self.events if e.get("vip") == "MAIN"]
        self.assertEqual(event["workerId"], 2)
        self.assertIs(event["log_level"], LogLevel.warn)
        self.assertEqual(event["log_time"], 1234.5)
        self.assertEqual(event["log_system"], "worker2 ztnagw.gateway.vip#warn")
        self.assertIn("[worker2 ztnagw.gateway.vip#warn] VIP MAIN is up", formatEventAsClassicLogText(event) or "")

    def test_legacySystem(self) -> None:
        """
        An event that names its own system (Twisted's legacy log) keeps it
        behind the worker's name.
        """
        workers = self.startAll()
        workers[1].say({"log_system": "HTTPChannel,3,127.0.0.1", "log_format": "x", "log_level": LogLevel.info})
        self.assertEqual(self.events[-1]["log_system"], "worker1 HTTPChannel,3,127.0.0.1")

    def test_forgedLevel(self) -> None:
        """
        A record without a real level or time gets info and the
        supervisor's time; it is still relayed.
        """
        workers = self.startAll()
        self.clock.advance(7)
        workers[1].protocol.childDataReceived(1, b'\x1e{"log_format": "x", "log_level": "loud", "log_time": "now"}\n')
        self.assertIs(self.events[-1]["log_level"], LogLevel.info)
        self.assertEqual(self.events[-1]["log_time"], 7)

    def test_readyOnlyFromRunning(self) -> None:
        """
        The ready record of a worker counts for its own process only: a
        record relayed after it exited does not make it serving.
        """
        workers = self.startAll()
        workers[2].end()
        workers[2].serve()
        self.assertNotIn(2, self.supervisor.serving())


def _record(event: dict[str, Any]) -> bytes:
    return ("\x1e" + eventAsJSON(event) + "\n").encode("utf-8")


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for point in points + [len(data)]:
        pieces.append(data[last:point])
        last = point
    return pieces


class WorkerOutputTests(SynchronousTestCase):
    """
    L{WorkerOutput}, the parser of what a worker writes.
    """

    def collect(self, maximum: int = 1 << 20) -> tuple[WorkerOutput, list[dict[str, Any]], list[tuple[str, int]]]:
        """
        A parser and what it found.
        """
        events: list[dict[str, Any]] = []
        texts: list[tuple[str, int]] = []
        return WorkerOutput(events.append, lambda text, fd: texts.append((text, fd)), maximum), events, texts

    @given(
        st.lists(st.text(max_size=40), max_size=6),
        st.lists(st.text(alphabet=st.characters(blacklist_characters="\n\x1e"), max_size=30), max_size=4),
        st.lists(st.integers(min_value=0), max_size=12),
    )
    def test_anyPieces(self, messages: list[str], lines: list[str], cuts: list[int]) -> None:
        """
        Whatever pieces the pipes deliver, every record is one event with
        its fields, and every stderr line one text, in order.
        """
        output, events, texts = self.collect()
        records = b"".join(_record({"log_format": "{m}", "m": m, "n": n}) for n, m in enumerate(messages))
        errors = b"".join(line.encode("utf-8") + b"\n" for line in lines)
        for piece in _split(records, cuts):
            output.received(1, piece)
        for piece in _split(errors, cuts):
            output.received(2, piece)
        output.ended()
        self.assertEqual([(e["m"], e["n"]) for e in events], [(m, n) for n, m in enumerate(messages)])
        self.assertEqual(texts, [(line, 2) for line in lines if line.strip("\x1e")])

    @given(st.binary(max_size=300), st.lists(st.integers(min_value=0), max_size=8))
    def test_anyBytes(self, data: bytes, cuts: list[int]) -> None:
        """
        Any bytes at all are parsed without an error, and nothing is lost
        silently: each non-blank line is an event or a text.
        """
        output, events, texts = self.collect(maximum=64)
        for piece in _split(data, cuts):
            output.received(1, piece)
        output.ended()
        for event in events:
            self.assertIsInstance(event, dict)
        for text, fd in texts:
            self.assertEqual(fd, 1)
            self.assertIsInstance(text, str)
        if data.strip(b" \t\r\n\x1e") and not events:
            self.assertTrue(texts)

    @given(
        st.text(max_size=200),
        st.sampled_from(list(LogLevel.iterconstants())),
        st.floats(min_value=0, max_value=2e9, allow_nan=False),
        st.text(alphabet="abcdefghijklmnopqrstuvwxyz._", min_size=1, max_size=30),
        st.lists(st.integers(min_value=0), max_size=6),
    )
    def test_logLines(self, text: str, level: Any, when: float, namespace: str, cuts: list[int]) -> None:
        """
        A traffic or event log line, written by a worker as
        L{formatRecord} writes it (compact, or JSON when its text holds a
        control character), reaches the supervisor with its text, level,
        time and namespace, whatever pieces the pipe delivers.
        """
        output, events, texts = self.collect()
        event = {
            "log_format": "{ztnaLogLine}",
            "ztnaLogLine": text,
            "log_level": level,
            "log_time": when,
            "log_namespace": namespace,
        }
        data = formatRecord(dict(event)).encode("utf-8")
        for piece in _split(data, cuts):
            output.received(1, piece)
        output.ended()
        self.assertEqual(texts, [])
        [received] = events
        self.assertEqual(
            (received["ztnaLogLine"], received["log_level"], received["log_time"], received["log_namespace"]),
            (text, level, when, namespace),
        )
        self.assertEqual(formatEventAsClassicLogText(received, lambda t: "T"), formatEventAsClassicLogText(event, lambda t: "T"))

    def test_compactWhenPlain(self) -> None:
        """
        A plain log line travels compact (no JSON to encode and decode per
        request); other events as JSON.
        """
        line = formatRecord({"log_format": "{ztnaLogLine}", "ztnaLogLine": 'a="b"', "log_level": LogLevel.info, "log_time": 1.5, "log_namespace": "n"})
        self.assertEqual(line, '\x1dinfo\x1f1.5\x1fn\x1fa="b"\n')
        other = formatRecord({"log_format": "x {a}", "a": 1, "log_level": LogLevel.info})
        self.assertTrue(other.startswith("\x1e{"))

    def test_badCompact(self) -> None:
        """
        A compact record with a bad level, time or field count is passed
        on as text.
        """
        output, events, texts = self.collect()
        output.received(1, b"\x1dloud\x1f1\x1fn\x1fx\n\x1dinfo\x1fnow\x1fn\x1fx\n\x1dinfo\x1f1\n\x1d\xff\n")
        self.assertEqual(events, [])
        self.assertEqual(len(texts), 4)

    def test_notJson(self) -> None:
        """
        A record that is not JSON (or not an object) is passed on as text.
        """
        output, events, texts = self.collect()
        output.received(1, b"\x1ehello\n\x1e[1, 2]\n")
        self.assertEqual(events, [])
        self.assertEqual(texts, [("\x1ehello", 1), ("\x1e[1, 2]", 1)])

    def test_bounded(self) -> None:
        """
        A line longer than the maximum is passed on in pieces marked as
        cut: a worker cannot make the supervisor buffer without bound.
        """
        output, events, texts = self.collect(maximum=10)
        output.received(2, b"a" * 25)
        self.assertEqual(texts, [("a" * 10 + " [cut]", 2), ("a" * 10 + " [cut]", 2)])
        output.received(2, b"\n")
        self.assertEqual(texts[-1], ("aaaaa", 2))

    def test_endFlushes(self) -> None:
        """
        What is left unterminated when the worker ends is passed on.
        """
        output, events, texts = self.collect()
        output.received(2, b"Traceback (most recent")
        output.ended()
        self.assertEqual(texts, [("Traceback (most recent", 2)])


class WorkerCountTests(SynchronousTestCase):
    """
    L{workerCount}.
    """

    def test_given(self) -> None:
        """
        A positive number is taken as it is.
        """
        self.assertEqual(workerCount(3, lambda: 16), 3)

    def test_perCpu(self) -> None:
        """
        0 means one per CPU this process may run on (at least one).
        """
        self.assertEqual(workerCount(0, lambda: 16), 16)
        self.assertEqual(workerCount(0, lambda: 0), 1)
        self.assertGreaterEqual(workerCount(0), 1)


class WorkerSocketsTests(TestCase):
    """
    L{WorkerSockets} binds real C{SO_REUSEPORT} sockets on 127.0.0.1.
    """

    def test_perWorker(self) -> None:
        """
        Each worker gets one listening socket per address, all on the same
        port; a port given as 0 is chosen by the kernel once.
        """
        addresses = [ListenAddress("127.0.0.1", 0, "VIP A"), ListenAddress("127.0.0.1", 0, "EMS 1")]
        sockets = WorkerSockets(addresses, 3)
        sockets.bind()
        self.addCleanup(sockets.close)
        ports = sockets.ports()
        self.assertEqual(len(set(ports)), 2)
        for workerId in (1, 2, 3):
            socks = sockets.forWorker(workerId)
            self.assertEqual([s.getsockname()[1] for s in socks], ports)
            for sock in socks:
                self.assertEqual(sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT), 1)
                self.assertEqual(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN), 1)
        self.assertEqual(len({s.fileno() for w in (1, 2, 3) for s in sockets.forWorker(w)}), 6)

    def test_inUse(self) -> None:
        """
        An address something already listens on is refused, with a message
        that names it, and nothing stays bound.
        """
        other = socket.socket()
        self.addCleanup(other.close)
        other.bind(("127.0.0.1", 0))
        other.listen(1)
        port = other.getsockname()[1]
        free = socket.socket()
        free.bind(("127.0.0.1", 0))
        freePort = free.getsockname()[1]
        free.close()
        sockets = WorkerSockets(
            [ListenAddress("127.0.0.1", freePort, "VIP A"), ListenAddress("127.0.0.1", port, "VIP B")], 2
        )
        error = self.assertRaises(OSError, sockets.bind)
        self.assertEqual(error.errno, errno.EADDRINUSE)
        self.assertIn(f"VIP B cannot listen on 127.0.0.1:{port}", str(error))
        # VIP A's sockets were closed: its port is free again.
        probe = socket.socket()
        self.addCleanup(probe.close)
        probe.bind(("127.0.0.1", freePort))

    def test_otherGatewayRefused(self) -> None:
        """
        A second gateway's sockets, C{SO_REUSEPORT} as they are, are not
        allowed to join the first one's port.
        """
        first = WorkerSockets([ListenAddress("127.0.0.1", 0, "VIP A")], 2)
        first.bind()
        self.addCleanup(first.close)
        [port] = first.ports()
        second = WorkerSockets([ListenAddress("127.0.0.1", port, "VIP A")], 2)
        error = self.assertRaises(OSError, second.bind)
        self.assertEqual(error.errno, errno.EADDRINUSE)

    def test_close(self) -> None:
        """
        Closed, the sockets release the port.
        """
        sockets = WorkerSockets([ListenAddress("127.0.0.1", 0, "VIP A")], 2)
        sockets.bind()
        [port] = sockets.ports()
        sockets.close()
        probe = socket.socket()
        self.addCleanup(probe.close)
        probe.bind(("127.0.0.1", port))
        probe.listen(1)


class SpawnRecorder(MemoryReactorClock):
    """
    A memory reactor that records C{spawnProcess}.
    """

    def __init__(self) -> None:
        MemoryReactorClock.__init__(self)
        self.spawned: list[dict[str, Any]] = []

    def spawnProcess(self, protocol: Any, executable: str, args: list[str], env: Any = None, childFDs: Any = None, **kw: Any) -> Any:
        """
        Record the call; return a transport that records what is written.
        """
        record: dict[str, Any] = {"executable": executable, "args": args, "env": env, "childFDs": childFDs, "written": []}
        self.spawned.append(record)

        class Transport:
            pid = 4242

            def writeToChild(self, fd: int, data: bytes) -> None:
                record["written"].append((fd, data))

        return Transport()


class ProcessWorkerLauncherTests(TestCase):
    """
    L{ProcessWorkerLauncher} starts C{python -m ztnagw.workers}.
    """

    def test_launch(self) -> None:
        """
        The worker gets its own sockets as descriptors 3, 4, ..., pipes on
        0, 1, 2, its id on its command line and its plan on its standard
        input.
        """
        from tests.test_workers import preparedGateway

        prepared = preparedGateway(self.mktemp())
        addresses = [ListenAddress("127.0.0.1", 0, "VIP A"), ListenAddress("127.0.0.1", 0, "EMS 1")]
        sockets = WorkerSockets(addresses, 2)
        sockets.bind()
        self.addCleanup(sockets.close)
        reactor = SpawnRecorder()
        launcher = ProcessWorkerLauncher(reactor, prepared, 2, sockets, "/etc/ztnagw.conf", "/usr/bin/python3", {"A": "b"})
        verifyObject(IWorkerLauncher, launcher)
        transport = launcher.launch(2, ProcessProtocol())
        self.assertEqual(transport.pid, 4242)
        [spawned] = reactor.spawned
        self.assertEqual(spawned["args"], ["/usr/bin/python3", "-m", "ztnagw.workers", "--worker", "2"])
        self.assertEqual(spawned["env"], {"A": "b"})
        mine = [s.fileno() for s in sockets.forWorker(2)]
        self.assertEqual(
            spawned["childFDs"],
            {0: "w", 1: "r", 2: "r", FIRST_SOCKET_FD: mine[0], FIRST_SOCKET_FD + 1: mine[1]},
        )
        [(fd, data)] = spawned["written"]
        self.assertEqual(fd, 0)
        plan = decodePlan(data)
        self.assertEqual((plan.workerId, plan.workers, plan.configPath), (2, 2, "/etc/ztnagw.conf"))
        self.assertEqual(
            [(s.address.what, s.fileDescriptor) for s in plan.sockets],
            [("VIP A", FIRST_SOCKET_FD), ("EMS 1", FIRST_SOCKET_FD + 1)],
        )


class GatewaySupervisorTests(TestCase):
    """
    L{GatewaySupervisor}: sockets bound before privileges are dropped,
    closed after the workers stopped.
    """

    def test_lifecycle(self) -> None:
        """
        C{privilegedStartService} binds, C{startService} starts worker 1,
        C{stopService} stops the workers and then closes the sockets.
        """
        from tests.test_workers import preparedGateway

        prepared = preparedGateway(self.mktemp())
        clock = MemoryReactorClock()
        launcher = FakeLauncher()
        sockets = WorkerSockets([ListenAddress("127.0.0.1", 0, "VIP A")], 2)
        service = GatewaySupervisor(
            prepared, clock, 2, sockets=sockets, launcher=launcher,
            stopGateway=lambda: None, installSignalHandler=False, observer=lambda e: None,
        )
        service.privilegedStartService()
        [port] = sockets.ports()
        self.assertEqual(launcher.launched, [])
        service.startService()
        self.assertEqual([w for w, _ in launcher.launched], [1])
        stopping = service.stopService()
        self.assertEqual(sockets.ports(), [port])
        launcher.latest(1).end(exitCode=0)
        self.successResultOf(stopping)
        self.assertEqual(sockets.ports(), [])

    def test_bindFailure(self) -> None:
        """
        An address that cannot be bound stops the daemon (status 1) with the
        reason logged.
        """
        from tests.test_workers import preparedGateway

        prepared = preparedGateway(self.mktemp())
        other = socket.socket()
        self.addCleanup(other.close)
        other.bind(("127.0.0.1", 0))
        other.listen(1)
        sockets = WorkerSockets([ListenAddress("127.0.0.1", other.getsockname()[1], "VIP A")], 2)
        service = GatewaySupervisor(prepared, MemoryReactorClock(), 2, sockets=sockets, launcher=FakeLauncher())
        events: list[dict] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        error = self.assertRaises(SystemExit, service.privilegedStartService)
        self.assertEqual(error.code, 1)
        self.assertIn("VIP A cannot listen on", " ".join(formatEvent(e) for e in events))
