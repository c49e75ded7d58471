"""
A real server that answers every connection with bytes that are not HTTP,
in a thread of the test process.
"""

from __future__ import annotations

import socket
import threading

#: What it sends: an SSH banner where an HTTP status line belongs.
GARBAGE = b"SSH-2.0-OpenSSH_9.2\r\n\x00\xff garbage \r\n\r\n"


class GarbageServer:
    """
    Listens on 127.0.0.1:C{port}; answers each connection's first bytes
    with L{GARBAGE} and closes it.

    @ivar connections: how many connections it accepted.
    """

    def __init__(self, port: int) -> None:
        self.connections = 0
        self._socket = socket.socket()
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", port))
        self._socket.listen(16)
        self._socket.settimeout(0.2)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stopped.is_set():
            try:
                connection, _ = self._socket.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.connections += 1
            with connection:
                connection.settimeout(5)
                try:
                    connection.recv(65536)
                    connection.sendall(GARBAGE)
                except OSError:
                    pass

    def stop(self) -> None:
        """
        Stop listening.
        """
        self._stopped.set()
        self._thread.join(5)
        self._socket.close()
