# -*- test-case-name: tests.test_control -*-
"""
The control channel: how the C{ztnagw} admin command asks the running
daemon about what only the daemon knows (the health of real servers: the
checks run in the daemon, and their state is nowhere on disk).

Most admin commands work on files (the configuration, the registry) and the
daemon learns of their changes; some questions have no file to read.  For
those, the daemon listens on a UNIX socket, C{<state-dir>/control/ztnagw.sock}:

  - B{Owner only.}  The socket is created mode 0600 inside a directory of
    mode 0700 (so that no other user can reach it even in the instant
    between C{bind} and C{chmod}), and every connection's peer credentials
    (C{SO_PEERCRED}) must be the daemon's own user or root; anyone else is
    answered with an error and disconnected.
  - B{A tiny protocol.}  One request per connection: one line of JSON,
    C{{"command": "<name>", "arguments": {...}}}; one line of JSON back,
    C{{"ok": true, "result": ...}} or C{{"ok": false, "error": "<why>"}};
    then the daemon closes.  Lines are at most 64 KiB.  Unknown commands,
    malformed requests and failing commands are errors, never silence.
  - B{Commands are registered} (L{ControlService.register}) by the parts of
    the daemon that own the answers; a command is a function of the
    arguments returning a JSON-able value or a Deferred of one.  The names
    are words separated by blanks, like the CLI's (C{realserver list}).

The admin side is L{ask}: blocking (the admin command is short-lived),
with a timeout, and with messages that say what to do when the daemon does
not run.
"""

from __future__ import annotations

import json
import os
import socket
import struct
from typing import Any, Callable

from twisted.application.service import Service
from twisted.internet.defer import maybeDeferred
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure

__all__ = [
    "CONTROL_SOCKET",
    "ControlError",
    "ControlService",
    "ask",
    "socketPath",
]

_log = Logger()

#: The socket, relative to the state directory.
CONTROL_SOCKET = os.path.join("control", "ztnagw.sock")

#: The longest request or answer line.
MAX_LINE = 65536

Command = Callable[[dict], Any]  # type: ignore[type-arg]


class ControlError(Exception):
    """
    The daemon could not be asked, or answered with an error; the message
    says why.
    """


def socketPath(stateDir: str) -> str:
    """
    The control socket of the gateway whose state directory is
    C{stateDir}.
    """
    return os.path.join(stateDir, CONTROL_SOCKET)


#: The longest path C{bind}/C{connect} take for a UNIX socket (Linux: 108
#: bytes with the final NUL).
_MAX_PATH = 107


class _Reachable:
    """
    A UNIX socket path short enough for C{bind} and C{connect}: the path
    itself, or, for a deep state directory, the same file reached through
    an open descriptor of its directory (C{/proc/self/fd/N/NAME}).
    """

    def __init__(self, path: str) -> None:
        self._fd: int | None = None
        self.path = path
        if len(os.fsencode(path)) > _MAX_PATH and os.path.isdir("/proc/self/fd"):
            self._fd = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY)
            self.path = f"/proc/self/fd/{self._fd}/{os.path.basename(path)}"

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def _peerUid(transport: Any) -> int | None:
    try:
        sock = transport.getHandle()
        data = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except (AttributeError, OSError):
        return None
    _, uid, _ = struct.unpack("3i", data)
    return uid


class _ControlProtocol(LineOnlyReceiver):
    delimiter = b"\n"
    MAX_LENGTH = MAX_LINE

    def __init__(self, service: ControlService) -> None:
        self._service = service
        self._answered = False

    def connectionMade(self) -> None:
        uid = _peerUid(self.transport)
        if uid is None or uid not in (0, os.getuid()):
            self._answer({"ok": False, "error": "only the gateway's own user may use its control channel"})

    def lineReceived(self, line: bytes) -> None:
        if self._answered:
            return
        try:
            request = json.loads(line)
            command = request["command"]
            arguments = request.get("arguments", {})
            if not isinstance(command, str) or not isinstance(arguments, dict):
                raise TypeError("command must be a string and arguments an object")
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            self._answer({"ok": False, "error": f"malformed request: {e}"})
            return
        function = self._service.commands.get(command)
        if function is None:
            known = ", ".join(sorted(self._service.commands)) or "none"
            self._answer({"ok": False, "error": f"unknown command {command!r} (known: {known})"})
            return
        maybeDeferred(function, arguments).addCallbacks(
            lambda result: self._answer({"ok": True, "result": result}),
            lambda failure: self._failed(command, failure),
        )

    def lineLengthExceeded(self, line: bytes) -> None:
        self._answer({"ok": False, "error": f"request longer than {MAX_LINE} bytes"})

    def _failed(self, command: str, failure: Failure) -> None:
        _log.failure("control command {command!r} failed", failure, command=command)
        self._answer({"ok": False, "error": f"{command} failed: {failure.getErrorMessage()}"})

    def _answer(self, answer: dict) -> None:  # type: ignore[type-arg]
        if self._answered:
            return
        self._answered = True
        try:
            data = json.dumps(answer, separators=(",", ":")).encode("utf-8")
        except (TypeError, ValueError) as e:
            data = json.dumps({"ok": False, "error": f"unanswerable: {e}"}).encode("utf-8")
        self.transport.write(data + b"\n")
        self.transport.loseConnection()


class ControlService(Service):
    """
    Listens on the control socket while the gateway runs.

    @ivar commands: the registered commands, by name.
    """

    def __init__(self, stateDir: str, reactor: Any) -> None:
        """
        @param stateDir: the gateway's state directory.
        @param reactor: an C{IReactorUNIX} provider.
        """
        self.setName("control")
        self.path = socketPath(stateDir)
        self._reactor = reactor
        self._port: Any = None
        self._reachable: _Reachable | None = None
        self.commands: dict[str, Command] = {}

    def register(self, name: str, function: Command) -> None:
        """
        Answer command C{name} with C{function(arguments)}.

        @raise ValueError: a command of that name exists.
        """
        if name in self.commands:
            raise ValueError(f"control command {name!r} is already registered")
        self.commands[name] = function

    def startService(self) -> None:
        """
        Listen.  A socket file left by a gateway that is gone is replaced;
        one a running gateway answers on is not.

        @raise OSError: the socket cannot be made.
        """
        directory = os.path.dirname(self.path)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        os.chmod(directory, 0o700)
        if os.path.exists(self.path):
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            reachable = _Reachable(self.path)
            try:
                probe.connect(reachable.path)
            except OSError:
                os.unlink(self.path)
            else:
                raise OSError(f"another gateway answers on {self.path}")
            finally:
                probe.close()
                reachable.close()
        factory = Factory.forProtocol(lambda: _ControlProtocol(self))
        factory.noisy = False
        # The directory stays open while listening: Twisted removes the
        # socket through the path it bound.
        reachable = _Reachable(self.path)
        try:
            self._port = self._reactor.listenUNIX(reachable.path, factory, mode=0o600, wantPID=False)
        except BaseException:
            reachable.close()
            raise
        self._reachable = reachable
        Service.startService(self)

    def stopService(self) -> Any:
        """
        Stop listening and remove the socket.
        """
        Service.stopService(self)
        port, self._port = self._port, None
        if port is None:
            return None

        def removed(result: object) -> object:
            try:
                os.unlink(self.path)
            except OSError:
                pass
            reachable, self._reachable = self._reachable, None
            if reachable is not None:
                reachable.close()
            return result

        return maybeDeferred(port.stopListening).addBoth(removed)


def ask(stateDir: str, command: str, arguments: dict | None = None, timeout: float = 10.0) -> Any:  # type: ignore[type-arg]
    """
    Ask the running gateway (blocking; for the admin command).

    @return: the command's result.
    @raise ControlError: the gateway does not run, does not answer in time,
        or answered with an error.
    """
    path = socketPath(stateDir)
    request = json.dumps({"command": command, "arguments": arguments or {}}).encode("utf-8") + b"\n"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            reachable = _Reachable(path)
        except FileNotFoundError:
            raise ControlError(f"the gateway is not running (no control socket {path})")
        try:
            sock.connect(reachable.path)
        except FileNotFoundError:
            raise ControlError(f"the gateway is not running (no control socket {path})")
        except ConnectionRefusedError:
            raise ControlError(f"the gateway is not running (nothing answers on {path})")
        except PermissionError:
            raise ControlError(f"permission denied on {path}: run as the gateway's user or root")
        finally:
            reachable.close()
        sock.sendall(request)
        data = b""
        while not data.endswith(b"\n"):
            piece = sock.recv(65536)
            if not piece:
                break
            data += piece
            if len(data) > 64 * MAX_LINE:
                raise ControlError("the gateway's answer is too long")
    except socket.timeout:
        raise ControlError(f"the gateway did not answer within {timeout:g} s")
    except OSError as e:
        raise ControlError(f"cannot talk to the gateway on {path}: {e.strerror or e}")
    finally:
        sock.close()
    try:
        answer = json.loads(data)
    except ValueError:
        raise ControlError("the gateway's answer is not JSON")
    if not isinstance(answer, dict) or "ok" not in answer:
        raise ControlError("the gateway's answer is malformed")
    if not answer["ok"]:
        raise ControlError(str(answer.get("error", "the gateway refused the request")))
    return answer.get("result")
