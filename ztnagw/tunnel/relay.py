# -*- test-case-name: tests.tunnel.test_relay -*-
"""
The byte relay of a tunnel: one implementation for both ends.

A tunnel has three legs: the application to the forwarder, the forwarder to
the gateway (TLS, or raw TCP after a C{tls=0} switch), the gateway to the
real server.  The forwarder relays between the first two, the gateway
between the last two, and both need the same properties, so they use this
module:

  - B{Backpressure both ways.}  Each end's transport is registered as the
    streaming producer of the other's: a full socket buffer on one side
    pauses reading on the other, so memory stays bounded by the transports'
    own buffers whatever the speeds.  Data is written as it arrives; the
    relay copies nothing.
  - B{Half-close end to end.}  Ends are L{IHalfCloseableProtocol}s: when one
    side finishes sending (a TCP FIN, or a TLS C{close_notify} through
    L{ztnagw.tls.transport.TLSProtocol}), the relay finishes the other
    side's write direction the same way and keeps relaying the other
    direction.  A client that shuts down its write side still receives the
    whole reply.  The connections close once both directions are done.
  - B{Failures travel.}  A connection lost with an error (a reset) aborts
    the other side, so a truncated stream is never mistaken for a complete
    one.
  - B{Bounded buffering before the tunnel exists.}  An end can be connected
    before its peer (the application's connection is accepted before the
    gateway answers): what it receives meanwhile is kept up to a bound,
    then its reading is paused.
  - B{TCP keep-alive} on every socket (dead peers are noticed after about
    two minutes of silence on a broken path), an optional idle timeout, and
    an account of bytes each way and of how the relay ended, for the
    traffic log and the forwarder's log line.

Ends are called the I{client} (the side that asked for the tunnel: the
application at the forwarder, the forwarder at the gateway) and the
I{server} (the gateway at the forwarder, the real server at the gateway).
"""

from __future__ import annotations

import socket
from typing import Any

from attrs import frozen
from twisted.internet import tcp
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IDelayedCall, IHalfCloseableProtocol, IReactorTime
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from ztnagw.tls.transport import TLSProtocol

__all__ = [
    "CLIENT",
    "CLOSED",
    "COMPLETED",
    "DEFAULT_BUFFER_LIMIT",
    "IDLE_TIMEOUT",
    "Relay",
    "RelayEnd",
    "RelayResult",
    "SERVER",
    "failed",
    "tuneSocket",
]

CLIENT = "client"
SERVER = "server"

#: Both sides finished (cleanly or not, without anyone forcing it).
COMPLETED = "completed"
#: The relay's owner closed it (L{Relay.close}).
CLOSED = "closed"
#: Nothing moved for the idle timeout.
IDLE_TIMEOUT = "idle-timeout"


def failed(side: str) -> str:
    """
    The outcome of a relay ended by C{side}'s connection failing (a reset,
    an abort): C{"client-failed"} or C{"server-failed"}.
    """
    return f"{side}-failed"


#: Bytes an end keeps while it has no peer, before its reading is paused.
DEFAULT_BUFFER_LIMIT = 256 * 1024

#: TCP keep-alive: first probe after this many idle seconds...
KEEPALIVE_IDLE = 60
#: ...then one every this many seconds...
KEEPALIVE_INTERVAL = 15
#: ...and the connection is dead after this many unanswered probes.
KEEPALIVE_COUNT = 4


def _socketOf(transport: Any) -> socket.socket | None:
    # A TLS transport wraps the TCP one (its getHandle() is the OpenSSL
    # connection); walk down to the socket.
    for _ in range(4):
        if transport is None:
            return None
        getHandle = getattr(type(transport), "getHandle", None)
        if getHandle is not None:
            handle = transport.getHandle()
            if isinstance(handle, socket.socket):
                return handle
        transport = getattr(transport, "transport", None)
        if not hasattr(type(transport), "write"):
            return None
    return None


def tuneSocket(transport: Any) -> None:
    """
    Turn on TCP keep-alive (probing after L{KEEPALIVE_IDLE} seconds of
    silence, not the kernel's two hours) and C{TCP_NODELAY} (interactive
    tunnels such as SSH must not wait for Nagle) on the socket under
    C{transport}, if there is one (standard I/O has none).
    """
    sock = _socketOf(transport)
    if sock is None:
        return
    options = [
        (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
        (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),
    ]
    for name, value in (
        ("TCP_KEEPIDLE", KEEPALIVE_IDLE),
        ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL),
        ("TCP_KEEPCNT", KEEPALIVE_COUNT),
    ):
        number = getattr(socket, name, None)
        if number is not None:
            options.append((socket.IPPROTO_TCP, number, value))
    for level, option, value in options:
        try:
            sock.setsockopt(level, option, value)
        except OSError:
            # A socket that is already closing, or an option this kernel
            # lacks: keep-alive is an optimisation of failure detection.
            pass


#: Bytes read from a relayed TCP socket at once (Twisted reads 64 KiB):
#: fewer, larger reads and writes move a bulk stream with less Python work
#: per MiB.  Memory is not held: a read returns what the socket had.
READ_SIZE = 2**18


def tuneReading(transport: Any) -> None:
    """
    Set a relayed connection up for bulk reading: the TCP connection under
    C{transport} reads up to L{READ_SIZE} bytes at a time, and a TLS
    transport delivers what one read decrypts to in one piece
    (L{TLSProtocol.coalesceReceived
    <ztnagw.tls.transport.TLSProtocol.coalesceReceived>}: a relay never
    switches TLS off afterwards).  Other transports are left alone.
    """
    if isinstance(transport, TLSProtocol):
        transport.coalesceReceived = True
        transport = transport.transport
    if isinstance(transport, tcp.Connection):
        transport.bufferSize = READ_SIZE


@frozen
class RelayResult:
    """
    How a relay went.

    @ivar clientIn: bytes received from the client.
    @ivar clientOut: bytes sent to the client.
    @ivar serverIn: bytes received from the server.
    @ivar serverOut: bytes sent to the server.
    @ivar started: when the relay started (the clock's seconds).
    @ivar ended: when both connections were gone.
    @ivar outcome: L{COMPLETED}, L{CLOSED}, L{IDLE_TIMEOUT} or
        L{failed}C{(side)}.
    @ivar reason: one line saying how it ended, for logs
        (C{"client finished first"}, C{"server connection lost: ..."}).
    """

    clientIn: int
    clientOut: int
    serverIn: int
    serverOut: int
    started: float
    ended: float
    outcome: str
    reason: str

    @property
    def duration(self) -> float:
        """
        Seconds from start to end.
        """
        return max(0.0, self.ended - self.started)


def _describe(reason: Failure) -> str:
    value = reason.value
    text = str(value).strip() or type(value).__name__
    return text.splitlines()[0][:200]


@implementer(IHalfCloseableProtocol)
class RelayEnd(Protocol):
    """
    One connection of a relay.

    Until L{Relay.start} joins it to its peer, received data is kept (up
    to C{bufferLimit} bytes, then reading pauses), and an end of input or
    a lost connection is remembered; all of it is passed on at the start.

    @ivar side: L{CLIENT} or L{SERVER}.
    @ivar received: bytes received so far.
    @ivar sent: bytes written so far.
    @ivar readClosed: the peer of this connection finished sending.
    @ivar writeClosed: this relay finished sending on this connection.
    @ivar lostReason: why the connection was lost, once it was.
    """

    def __init__(self, side: str, bufferLimit: int = DEFAULT_BUFFER_LIMIT) -> None:
        """
        @param side: L{CLIENT} or L{SERVER}.
        @param bufferLimit: see the class docstring.
        """
        if side not in (CLIENT, SERVER):
            raise ValueError(f"not a side: {side!r}")
        self.side = side
        self.received = 0
        self.sent = 0
        self.readClosed = False
        self.writeClosed = False
        self.lostReason: Failure | None = None
        self._relay: Relay | None = None
        self._bufferLimit = bufferLimit
        self._pending: list[bytes] = []
        self._pendingSize = 0
        self._pausedForBuffer = False
        self._producing: bool = False
        self._lostWaiters: list[Deferred[None]] = []

    def __repr__(self) -> str:
        return f"<RelayEnd {self.side} received={self.received} sent={self.sent}>"

    def connectionMade(self) -> None:
        """
        Turn on keep-alive and C{TCP_NODELAY}; read in bulk.
        """
        tuneSocket(self.transport)
        tuneReading(self.transport)

    def dataReceived(self, data: bytes) -> None:
        """
        Pass C{data} to the peer, or keep it until there is one.
        """
        self.received += len(data)
        relay = self._relay
        if relay is not None:
            relay._forward(self, data)
            return
        self._pending.append(data)
        self._pendingSize += len(data)
        if self._pendingSize > self._bufferLimit and not self._pausedForBuffer:
            self._pausedForBuffer = True
            self.transport.pauseProducing()  # type: ignore[union-attr]

    def readConnectionLost(self) -> None:
        """
        The other side finished sending.
        """
        if self.readClosed:
            return
        self.readClosed = True
        if self._relay is not None:
            self._relay._readEnded(self)

    def writeConnectionLost(self) -> None:
        """
        Our half-close went out; nothing to do.
        """

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """
        Remember why; tell the relay, or whoever waits for the loss.
        """
        self.lostReason = reason
        waiters, self._lostWaiters = self._lostWaiters, []
        for waiter in waiters:
            waiter.callback(None)
        if self._relay is not None:
            self._relay._lost(self, reason)

    def notifyLost(self) -> Deferred[None]:
        """
        A Deferred that fires (with C{None}; the reason is L{lostReason})
        when the connection is lost, at once if it already is.  For the
        owner of an end that is not joined yet: the application may give up
        while the tunnel opens.
        """
        if self.lostReason is not None:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._lostWaiters.append(waiter)
        return waiter

    def abort(self) -> None:
        """
        Close this connection at once, whatever it holds (for an owner that
        gives up before the relay starts).
        """
        if self.lostReason is None and self.transport is not None:
            self.transport.abortConnection()

    def _write(self, data: bytes) -> None:
        self.sent += len(data)
        self.transport.write(data)  # type: ignore[union-attr]

    def _takePending(self) -> list[bytes]:
        pending, self._pending = self._pending, []
        self._pendingSize = 0
        return pending


class Relay:
    """
    Joins a client and a server L{RelayEnd}.

    @ivar client: the client end.
    @ivar server: the server end.
    """

    def __init__(
        self,
        clock: IReactorTime,
        client: RelayEnd,
        server: RelayEnd,
        idleTimeout: float | None = None,
    ) -> None:
        """
        @param clock: the reactor's time.
        @param client: the client end, connected.
        @param server: the server end, connected.
        @param idleTimeout: close the relay after this many seconds without
            a byte in either direction; C{None} for never.
        """
        if client.side != CLIENT or server.side != SERVER:
            raise ValueError("a relay joins a client end and a server end")
        if idleTimeout is not None and idleTimeout <= 0:
            raise ValueError("an idle timeout must be positive")
        self.client = client
        self.server = server
        self._clock = clock
        self._idleTimeout = idleTimeout
        self._idleTimer: IDelayedCall | None = None
        self._lastActivity = 0.0
        self._started: float | None = None
        self._outcome: str | None = None
        self._reason: str | None = None
        self._firstFinished: str | None = None
        self._result: RelayResult | None = None
        self._waiters: list[Deferred[RelayResult]] = []

    def _peer(self, end: RelayEnd) -> RelayEnd:
        return self.server if end is self.client else self.client

    # Starting.

    def start(self) -> None:
        """
        Join the ends: pass on what each received before, then relay.

        @raise RuntimeError: the relay was already started, or an end
            belongs to another relay.
        """
        if self._started is not None:
            raise RuntimeError("the relay is already started")
        for end in (self.client, self.server):
            if end._relay is not None:
                raise RuntimeError(f"{end!r} already belongs to a relay")
        now = self._clock.seconds()
        self._started = now
        self._lastActivity = now
        self.client._relay = self
        self.server._relay = self
        for end in (self.client, self.server):
            pending = end._takePending()
            peer = self._peer(end)
            if pending and peer.lostReason is None:
                for data in pending:
                    peer._write(data)
        # Each side's reading is paused while the other cannot take more.
        for end in (self.client, self.server):
            peer = self._peer(end)
            if end.lostReason is None and peer.lostReason is None and not end.readClosed:
                peer.transport.registerProducer(end.transport, True)  # type: ignore[union-attr]
                end._producing = True
        for end in (self.client, self.server):
            if end._pausedForBuffer:
                end._pausedForBuffer = False
                if end.lostReason is None:
                    end.transport.resumeProducing()  # type: ignore[union-attr]
        if self._idleTimeout is not None:
            self._idleTimer = self._clock.callLater(self._idleTimeout, self._idleCheck)
        # What happened before the start happens now, in order.
        for end in (self.client, self.server):
            if end.readClosed and self._result is None:
                self._readEnded(end)
        for end in (self.client, self.server):
            if end.lostReason is not None and self._result is None:
                self._lost(end, end.lostReason)

    # Events.

    def _forward(self, end: RelayEnd, data: bytes) -> None:
        if self._idleTimeout is not None:
            self._lastActivity = self._clock.seconds()
        peer = self._peer(end)
        if peer.lostReason is None:
            peer._write(data)

    def _stopProducing(self, end: RelayEnd) -> None:
        # end's transport no longer feeds its peer: unregister it, or the
        # peer's transport would hold its close until the producer resumed.
        if end._producing:
            end._producing = False
            peer = self._peer(end)
            if peer.lostReason is None:
                peer.transport.unregisterProducer()  # type: ignore[union-attr]

    def _readEnded(self, end: RelayEnd) -> None:
        if self._firstFinished is None:
            self._firstFinished = end.side
        self._stopProducing(end)
        peer = self._peer(end)
        if peer.lostReason is None and not peer.writeClosed:
            peer.writeClosed = True
            peer.transport.loseWriteConnection()  # type: ignore[union-attr]
        if end.readClosed and peer.readClosed:
            for each in (self.client, self.server):
                self._stopProducing(each)
                if each.lostReason is None:
                    each.transport.loseConnection()  # type: ignore[union-attr]

    def _lost(self, end: RelayEnd, reason: Failure) -> None:
        peer = self._peer(end)
        # Once both directions of a connection were finished, how it went
        # away (a pipe closed by a departing reader, a reset after the
        # FINs) loses nothing.
        clean = reason.check(ConnectionDone) is not None or (end.readClosed and end.writeClosed)
        self._stopProducing(end)
        self._stopProducing(peer)
        if not clean and self._outcome is None:
            self._outcome = failed(end.side)
            self._reason = f"{end.side} connection lost: {_describe(reason)}"
        if peer.lostReason is None:
            if not clean:
                peer.transport.abortConnection()  # type: ignore[union-attr]
            else:
                if not end.readClosed:
                    end.readClosed = True
                    if self._firstFinished is None:
                        self._firstFinished = end.side
                # What end sent is on its way to peer; what peer still
                # sends has nowhere to go.
                peer.transport.loseConnection()  # type: ignore[union-attr]
            return
        self._finish()

    def _finish(self) -> None:
        if self._result is not None:
            return
        if self._idleTimer is not None and self._idleTimer.active():
            self._idleTimer.cancel()
        self._idleTimer = None
        outcome = self._outcome or COMPLETED
        reason = self._reason
        if reason is None:
            first = self._firstFinished or CLIENT
            reason = f"{first} finished first"
        assert self._started is not None
        self._result = RelayResult(
            clientIn=self.client.received,
            clientOut=self.client.sent,
            serverIn=self.server.received,
            serverOut=self.server.sent,
            started=self._started,
            ended=self._clock.seconds(),
            outcome=outcome,
            reason=reason,
        )
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(self._result)

    def _idleCheck(self) -> None:
        self._idleTimer = None
        assert self._idleTimeout is not None
        idle = self._clock.seconds() - self._lastActivity
        if idle < self._idleTimeout:
            self._idleTimer = self._clock.callLater(
                self._idleTimeout - idle, self._idleCheck
            )
            return
        self._abort(IDLE_TIMEOUT, f"idle for {self._idleTimeout:g} s")

    # The owner's controls.

    @property
    def result(self) -> RelayResult | None:
        """
        How the relay ended, once both connections are gone.
        """
        return self._result

    def whenDone(self) -> Deferred[RelayResult]:
        """
        A Deferred that fires with the L{RelayResult} once both
        connections are gone.
        """
        if self._result is not None:
            return succeed(self._result)
        waiter: Deferred[RelayResult] = Deferred()
        self._waiters.append(waiter)
        return waiter

    def close(self, reason: str) -> None:
        """
        End the relay now: both connections are aborted, whatever they
        still hold (a device lost its right to the tunnel).

        @param reason: why, for the result.
        """
        self._abort(CLOSED, reason)

    def finish(self) -> None:
        """
        End the relay cleanly now: both connections are closed after what
        they were already given (a TLS leg with C{close_notify}), as when
        both sides finish.  For an owner whose application went away
        without a word (ssh hangs up on its C{ProxyCommand}).
        """
        if self._result is not None:
            return
        for end in (self.client, self.server):
            self._stopProducing(end)
        for end in (self.client, self.server):
            if end.lostReason is None:
                end.transport.loseConnection()  # type: ignore[union-attr]

    def _abort(self, outcome: str, reason: str) -> None:
        if self._result is not None:
            return
        if self._outcome is None:
            self._outcome = outcome
            self._reason = reason
        for end in (self.client, self.server):
            self._stopProducing(end)
        for end in (self.client, self.server):
            if end.lostReason is None:
                end.transport.abortConnection()  # type: ignore[union-attr]
