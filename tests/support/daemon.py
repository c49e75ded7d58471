"""
Run the real gateway daemon (C{twistd -n ztnagw}) and the real admin
command in tests.

Integration tests start the daemon as a separate process on 127.0.0.1, on
ports the kernel picked, talk to it with real clients, and stop it with
SIGTERM.  This module holds the plumbing so that each test says only what
it checks.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from typing import Sequence

_TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def binary(name: str) -> list[str]:
    """
    The command line that runs console script C{name} of this environment:
    the installed script next to the interpreter when there is one, else
    the module (so tests also run from an uninstalled checkout).
    """
    candidate = os.path.join(os.path.dirname(sys.executable), name)
    if os.path.exists(candidate):
        return [candidate]
    modules = {
        "ztnagw": ["-m", "ztnagw"],
        "ztnagw-forward": ["-m", "ztnagw.forwarder"],
        "twistd": ["-c", "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"],
    }
    return [sys.executable, *modules[name]]


def environment() -> dict[str, str]:
    """
    The environment for child processes: this checkout first on the
    import path, so the code under test is what runs.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [_TOP] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    )
    return env


def freePort() -> int:
    """
    A TCP port on 127.0.0.1 that nothing listens on right now.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def waitForPort(port: int, host: str = "127.0.0.1", timeout: float = 20.0) -> None:
    """
    Wait until something accepts connections on C{host:port}.

    @raise TimeoutError: nothing did within C{timeout} seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port}")
            time.sleep(0.05)


def runAdmin(arguments: Sequence[str], config: str | None = None, input: bytes | None = None) -> subprocess.CompletedProcess:
    """
    Run the C{ztnagw} admin command and wait for it.

    @param config: passed as C{--config} after the subcommand words when
        given.
    """
    command = binary("ztnagw") + list(arguments)
    if config is not None:
        command += ["--config", config]
    return subprocess.run(
        command, input=input, capture_output=True, env=environment(), timeout=120
    )


class Daemon:
    """
    One C{twistd -n ztnagw} process.

    @ivar logPath: where its log goes.
    """

    def __init__(self, configPath: str, directory: str) -> None:
        self.configPath = configPath
        self.logPath = os.path.join(directory, "twistd.log")
        self.process: subprocess.Popen | None = None

    def start(self, waitPorts: Sequence[int] = ()) -> None:
        """
        Start the daemon and wait until each of C{waitPorts} accepts
        connections.

        @raise RuntimeError: the daemon exited instead; its log is in the
            message.
        """
        self._logFile = open(self.logPath, "ab")
        self.process = subprocess.Popen(
            binary("twistd")
            + ["-n", "--pidfile=", "--logfile=-", "ztnagw", "--config", self.configPath],
            stdout=self._logFile,
            stderr=subprocess.STDOUT,
            env=environment(),
        )
        try:
            for port in waitPorts:
                self._waitPort(port)
        except BaseException:
            self.stop()
            raise

    def _waitPort(self, port: int) -> None:
        deadline = time.monotonic() + 30
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"the daemon exited:\n{self.log()}")
            try:
                waitForPort(port, timeout=0.2)
                return
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the daemon never listened on {port}:\n{self.log()}")

    def log(self) -> str:
        """
        Everything the daemon logged so far.
        """
        with open(self.logPath, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self, timeout: float = 20.0) -> int | None:
        """
        Send SIGTERM and wait for the exit status (SIGKILL after
        C{timeout}).
        """
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._logFile.close()
        status = self.process.returncode
        self.process = None
        return status

    def kill(self) -> None:
        """
        SIGKILL the daemon, as a crash would end it.
        """
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self._logFile.close()
            self.process = None
