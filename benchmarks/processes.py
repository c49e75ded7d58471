# -*- test-case-name: tests.benchmarks.test_processes -*-
"""
Starting and stopping the benchmark's processes.

A benchmark run starts a dozen servers (origin, proxies, tunnel ends, load
generators).  Every one of them must be stopped at the end, also when the
run fails or the user presses Ctrl-C, and none may outlive the harness: each
is started in its own session (so that its whole process group can be
signalled) and recorded in a L{ProcessGroup}, whose L{ProcessGroup.stopAll}
the harness runs in a C{finally} block and from its signal handlers.

Each process can be pinned to a CPU set (C{taskset}) and gets a raised
C{RLIMIT_NOFILE}, so that 10,000 idle connections fit.
"""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import time
from typing import Callable, Mapping, Sequence

from attrs import define, field

#: File descriptors allowed to every process the benchmark starts (10,000
#: tunnels take two descriptors each in a relay, plus listeners and logs).
OPEN_FILES = 65536


class ProcessFailed(Exception):
    """
    A benchmark process exited too early or never became ready.
    """


def raiseOpenFileLimit(wanted: int = OPEN_FILES) -> int:
    """
    Raise this process's C{RLIMIT_NOFILE} (soft and, when allowed, hard)
    to C{wanted}; children inherit it.

    @return: the soft limit now in force.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else max(soft, min(wanted, hard))
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, max(hard, wanted)))
        return wanted
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target


def freePort() -> int:
    """
    A TCP port on 127.0.0.1 that the kernel says is free now.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def waitForPort(port: int, timeout: float, alive: Callable[[], bool] = lambda: True) -> None:
    """
    Wait until something accepts TCP connections on 127.0.0.1:C{port}.

    @param alive: called between attempts; when it returns false the wait
        ends at once (the server died).
    @raise ProcessFailed: not listening within C{timeout} seconds, or dead.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise ProcessFailed(f"the process meant to listen on port {port} exited")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise ProcessFailed(f"nothing listens on 127.0.0.1:{port} after {timeout:g} s")


def processTree(pid: int) -> list[int]:
    """
    C{pid} and all its descendants (read from C{/proc}).
    """
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name may hold blanks and parentheses: split after it.
        fields = stat[stat.rfind(")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, ()))
    return tree


def rssKiB(pid: int, includeChildren: bool = True) -> int:
    """
    Resident memory of C{pid} (and its descendants), in KiB.

    @raise ProcessFailed: the process does not exist.
    """
    total = 0
    pids = processTree(pid) if includeChildren else [pid]
    for each in pids:
        try:
            with open(f"/proc/{each}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            if each == pid:
                raise ProcessFailed(f"process {pid} is gone")
    return total


@define
class Started:
    """
    One started process.

    @ivar name: what the harness calls it (used in messages and log names).
    @ivar process: the running process.
    @ivar logPath: where its standard output and error go.
    """

    name: str
    process: subprocess.Popen[bytes]
    logPath: str

    @property
    def pid(self) -> int:
        """
        The process id.
        """
        return self.process.pid

    def alive(self) -> bool:
        """
        Whether it still runs.
        """
        return self.process.poll() is None

    def logTail(self, size: int = 3000) -> str:
        """
        The end of its log, for error messages.
        """
        try:
            with open(self.logPath, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - size))
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""


def _limits() -> None:
    # Runs in the child between fork and exec.
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (OPEN_FILES, OPEN_FILES))
    except (ValueError, OSError):
        pass


@define
class ProcessGroup:
    """
    The processes of one benchmark run; L{stopAll} ends every one.

    @ivar logDirectory: where each process's output is written
        (C{<name>.log}).
    """

    logDirectory: str
    started: list[Started] = field(factory=list)

    def start(
        self,
        name: str,
        argv: Sequence[str],
        cpus: str | None = None,
        environment: Mapping[str, str] | None = None,
        cwd: str | None = None,
        pipes: bool = False,
    ) -> Started:
        """
        Start C{argv} in a new session, its output in C{<name>.log}.

        @param cpus: a C{taskset} CPU list (C{"0"}, C{"1-3"}); C{None} to let
            the kernel place it.
        @param environment: variables added to the harness's environment.
        @param pipes: give it a standard input and output the harness
            reads and writes (its standard error still goes to the log).
        """
        command = list(argv)
        if cpus is not None:
            command = ["taskset", "-c", cpus] + command
        env = dict(os.environ)
        env.update(environment or {})
        logPath = os.path.join(self.logDirectory, name + ".log")
        with open(logPath, "ab") as log:
            process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE if pipes else subprocess.DEVNULL,
                stdout=subprocess.PIPE if pipes else log,
                stderr=log if pipes else subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,
                preexec_fn=_limits,
            )
        started = Started(name=name, process=process, logPath=logPath)
        self.started.append(started)
        return started

    def startServer(
        self,
        name: str,
        argv: Sequence[str],
        port: int,
        cpus: str | None = None,
        environment: Mapping[str, str] | None = None,
        cwd: str | None = None,
        timeout: float = 20.0,
    ) -> Started:
        """
        Start a server and wait until it listens on C{port}.

        @raise ProcessFailed: it exited or did not listen in time; the
            message holds the end of its log.
        """
        started = self.start(name, argv, cpus, environment, cwd)
        try:
            waitForPort(port, timeout, started.alive)
        except ProcessFailed as e:
            self.stop(started)
            raise ProcessFailed(f"{name}: {e}\n--- {started.logPath} ---\n{started.logTail()}") from None
        return started

    def run(
        self,
        name: str,
        argv: Sequence[str],
        timeout: float,
        cpus: str | None = None,
        environment: Mapping[str, str] | None = None,
    ) -> str:
        """
        Run a command to its end (a load generator) and return its
        standard output; its standard error goes to C{<name>.log}.

        @raise ProcessFailed: it failed or ran past C{timeout} seconds (it is
            killed then).
        """
        command = list(argv)
        if cpus is not None:
            command = ["taskset", "-c", cpus] + command
        env = dict(os.environ)
        env.update(environment or {})
        logPath = os.path.join(self.logDirectory, name + ".log")
        with open(logPath, "ab") as log:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                env=env,
                start_new_session=True,
                preexec_fn=_limits,
            )
            started = Started(name=name, process=process, logPath=logPath)
            self.started.append(started)
            try:
                output, _ = process.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.stop(started)
                raise ProcessFailed(f"{name} ran past {timeout:g} s and was stopped") from None
            finally:
                if started in self.started and process.poll() is not None:
                    self.started.remove(started)
        text = output.decode("utf-8", "replace")
        if process.returncode != 0:
            raise ProcessFailed(
                f"{name} failed with status {process.returncode}:\n{text[-2000:]}\n"
                f"--- {logPath} ---\n{started.logTail()}"
            )
        return text

    def stop(self, started: Started, grace: float = 5.0) -> None:
        """
        Stop one process and its process group: SIGTERM, then SIGKILL after
        C{grace} seconds.
        """
        if started in self.started:
            self.started.remove(started)
        process = started.process
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        # Whatever is left of the group (workers, forked children) goes too.
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass

    def stopAll(self) -> None:
        """
        Stop every process still running, the last started first.
        """
        while self.started:
            self.stop(self.started[-1])


def cpuSeconds(pid: int, includeChildren: bool = True) -> float:
    """
    CPU time (user + system) used so far by C{pid} (and its living
    descendants), in seconds.
    """
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for each in processTree(pid) if includeChildren else [pid]:
        try:
            with open(f"/proc/{each}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        # Fields 14 and 15 of stat(5) (utime, stime), counted after the name.
        total += int(fields[11]) + int(fields[12])
    return total / ticks
