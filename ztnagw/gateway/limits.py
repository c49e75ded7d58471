# -*- test-case-name: tests.gateway.test_limits -*-
"""
Per-source and per-device connection limits for the VIPs.

A gateway in front of internal services faces the whole network: one
host opening thousands of connections (a flood, a slowloris that trickles
request heads, a client that never reads) must not take the gateway away
from everyone else, and neither must one enrolled device whose certificate
is used from many places at once.  The HTTP layer's head and idle timeouts
bound how I{long} a connection can be held; this module bounds how
I{many} one source or one device can hold at a time.  The security
battery found neither bound (C{docs/security.md}, finding F2).

  - B{Per source} (C{max-connections-per-source} of the access proxy):
    counted from the TCP accept, before any TLS work, by the client's
    address.  A connection beyond the limit is closed at once: the
    gateway spends no handshake on it.
  - B{Per device} (C{max-connections-per-device}): counted by the device
    UID of a certificate issued by an EMS CA, at the first request of a
    connection (the handshake has told who it is by then); a connection
    beyond the limit is answered 429 and closed.  Certificates that do not
    chain to an EMS CA never count, so that nobody can exhaust a device's
    allowance with a forged certificate naming its UID.

A slot is held for the life of the TCP connection.  L{LimitedTLSFactory}
(the VIP's TLS factory) takes it when a connection is made and gives it
back when the TLS layer lets the connection go: at its end, or when a
C{tls=0} tunnel drops TLS.  In the second case the TCP connection lives on
without TLS, so the slot stays taken until that connection is gone (a
sweep at most once a second notices it), and raw tunnels count like any
other connection.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from ztnagw.blockpage import renderErrorPage
from ztnagw.http.interfaces import IRequestHandler
from ztnagw.tls.server import HandshakeFacts, HandshakeIncomplete, NotVerifiedHere, handshakeFacts
from ztnagw.tls.transport import TLSFactory

__all__ = ["DEFAULT_LIMIT", "ConnectionLimits", "DeviceLimitedHandler", "LimitedTLSFactory", "limitedListener"]

_log = Logger()

#: The per-source and per-device limit of a VIP without an access proxy
#: (the configuration's default for those that have one).
DEFAULT_LIMIT = 2048

#: Seconds between two log lines about one refused source or device.
LOG_INTERVAL = 60.0

#: Seconds between two sweeps of connections that dropped TLS.
SWEEP_INTERVAL = 1.0


class _Slot:
    """
    What one connection holds: its source, and its device once known.
    """

    __slots__ = ("source", "uid", "tcp")

    def __init__(self, source: str) -> None:
        self.source = source
        self.uid: str | None = None
        self.tcp: Any = None


class ConnectionLimits:
    """
    The connection counts of one VIP, and its limits (0: no limit).

    @ivar perSource: connections one client address may hold.
    @ivar perDevice: connections one device may hold.
    @ivar refusedSources: connections closed at accept so far.
    @ivar refusedDevices: connections answered 429 so far.
    """

    def __init__(self, clock: IReactorTime, vipName: str, perSource: int, perDevice: int) -> None:
        """
        @param clock: the reactor's clock (log pacing, sweeps).
        @param vipName: the VIP, for the log.
        @param perSource: see L{perSource}.
        @param perDevice: see L{perDevice}.
        """
        self._clock = clock
        self._vip = vipName
        self.perSource = perSource
        self.perDevice = perDevice
        self._bySource: dict[str, int] = {}
        self._byDevice: dict[str, int] = {}
        self._slots: dict[object, _Slot] = {}
        self._detached: list[_Slot] = []
        self._lastSweep = 0.0
        self._logged: dict[str, float] = {}
        self.refusedSources = 0
        self.refusedDevices = 0

    def sourceCount(self, source: str) -> int:
        """
        The connections C{source} holds now.
        """
        self._sweep()
        return self._bySource.get(source, 0)

    def deviceCount(self, uid: str) -> int:
        """
        The connections device C{uid} holds now.
        """
        self._sweep()
        return self._byDevice.get(uid, 0)

    # Sources.

    def admitSource(self, source: str) -> bool:
        """
        Whether a new connection from C{source} may be accepted (it is
        counted by L{opened}).
        """
        if not self.perSource:
            return True
        self._sweep()
        if self._bySource.get(source, 0) < self.perSource:
            return True
        self.refusedSources += 1
        self._logRefusal(
            f"source {source}",
            "VIP {vip}: closing connections from {source}, which holds "
            "{limit} (max-connections-per-source)",
            source=source,
            limit=self.perSource,
        )
        return False

    def opened(self, connection: object, source: str) -> None:
        """
        A connection from C{source} was accepted (Twisted's TLS wrapper
        says so twice: counted once).
        """
        if connection in self._slots:
            return
        self._slots[connection] = _Slot(source)
        self._bySource[source] = self._bySource.get(source, 0) + 1

    def released(self, connection: object, tcp: Any) -> None:
        """
        The TLS layer let C{connection} go.  If its TCP connection C{tcp}
        still lives (TLS was dropped for a raw tunnel), its slot is kept
        until it ends.
        """
        slot = self._slots.pop(connection, None)
        if slot is None:
            return
        if tcp is not None and getattr(tcp, "connected", False):
            slot.tcp = tcp
            self._detached.append(slot)
            return
        self._free(slot)

    # Devices.

    def admitDevice(self, connection: object, uid: str) -> bool:
        """
        Count C{connection} against device C{uid}, once; whether it is
        within the device's limit.  A connection this object does not
        know (not made by a L{LimitedTLSFactory}) is not counted.
        """
        slot = self._slots.get(connection)
        if slot is None or slot.uid is not None:
            # Unknown, or counted already (a TLS connection has one
            # device for its whole life).
            return True
        if self.perDevice:
            self._sweep()
            if self._byDevice.get(uid, 0) >= self.perDevice:
                self.refusedDevices += 1
                self._logRefusal(
                    f"device {uid}",
                    "VIP {vip}: refusing connections of device {uid}, which "
                    "holds {limit} (max-connections-per-device)",
                    uid=uid,
                    limit=self.perDevice,
                )
                return False
        slot.uid = uid
        self._byDevice[uid] = self._byDevice.get(uid, 0) + 1
        return True

    # Bookkeeping.

    def _free(self, slot: _Slot) -> None:
        self._decrement(self._bySource, slot.source)
        if slot.uid is not None:
            self._decrement(self._byDevice, slot.uid)
        slot.tcp = None

    @staticmethod
    def _decrement(counts: dict[str, int], key: str) -> None:
        left = counts.get(key, 0) - 1
        if left > 0:
            counts[key] = left
        else:
            counts.pop(key, None)

    def _sweep(self) -> None:
        """
        Free the slots of raw connections that have ended (at most once
        per L{SWEEP_INTERVAL}).
        """
        if not self._detached:
            return
        now = self._clock.seconds()
        if now - self._lastSweep < SWEEP_INTERVAL:
            return
        self._lastSweep = now
        alive = []
        for slot in self._detached:
            if getattr(slot.tcp, "connected", False):
                alive.append(slot)
            else:
                self._free(slot)
        self._detached = alive

    def _logRefusal(self, key: str, format: str, **fields: object) -> None:
        """
        Log a refusal, at most once per L{LOG_INTERVAL} for each source or
        device: a flood must not flood the log too.
        """
        now = self._clock.seconds()
        last = self._logged.get(key)
        if last is not None and now - last < LOG_INTERVAL:
            return
        if len(self._logged) > 4096:
            self._logged.clear()
        self._logged[key] = now
        _log.warn(format, vip=self._vip, **fields)


class LimitedTLSFactory(TLSFactory):
    """
    A VIP's TLS server factory that enforces its L{ConnectionLimits}: a
    connection from a source over its limit is closed at accept (no
    protocol is built), and every accepted connection holds a slot until
    the TLS layer lets it go.
    """

    def __init__(self, creator: Any, wrappedFactory: Any, clock: IReactorTime, limits: ConnectionLimits) -> None:
        """
        @param creator: makes each connection's TLS server side.
        @param wrappedFactory: the VIP's HTTP factory.
        @param clock: the reactor.
        @param limits: the VIP's limits and counts.
        """
        super().__init__(creator, False, wrappedFactory, clock)
        self.limits = limits

    def buildProtocol(self, addr: Any) -> Any:
        """
        A protocol for a new connection, or C{None} (Twisted then closes
        the socket at once) when its source holds its limit.
        """
        source = getattr(addr, "host", None)
        if source is not None and not self.limits.admitSource(source):
            return None
        return super().buildProtocol(addr)

    def registerProtocol(self, protocol: Any) -> None:
        """
        The connection is made: it takes a slot.
        """
        super().registerProtocol(protocol)
        self.limits.opened(protocol, protocol.getPeer().host)

    def unregisterProtocol(self, protocol: Any) -> None:
        """
        The TLS layer lets the connection go: at its end, or when TLS is
        dropped for a raw tunnel (the slot then waits for the TCP
        connection's end).
        """
        super().unregisterProtocol(protocol)
        self.limits.released(protocol, protocol.transport)


@implementer(IRequestHandler)
class DeviceLimitedHandler:
    """
    A VIP's request handler behind the per-device limit: the first
    request of a connection counts it against its device (a certificate
    issued by an EMS CA); a device over its limit gets 429 and the
    connection is closed.  Other requests go to the access proxy's
    handler unchanged.
    """

    def __init__(
        self,
        handler: IRequestHandler,
        limits: ConnectionLimits,
        handshakeFactsOf: Callable[[object], HandshakeFacts] = handshakeFacts,
    ) -> None:
        """
        @param handler: the access proxy's handler.
        @param limits: the VIP's limits and counts.
        @param handshakeFactsOf: what a connection's handshake captured
            (tests replace it).
        """
        self.handler = handler
        self.limits = limits
        self._handshakeFactsOf = handshakeFactsOf

    def requestReceived(self, request: Any) -> None:
        """
        @see: L{IRequestHandler.requestReceived}
        """
        transport = request.connection.transport
        try:
            presented = self._handshakeFactsOf(transport).presented
        except (NotVerifiedHere, HandshakeIncomplete):
            # The handler refuses what it cannot judge.
            presented = None
        if (
            presented is not None
            and presented.problem is None
            and presented.uid is not None
            and not self.limits.admitDevice(transport, presented.uid)
        ):
            status, headers, body = renderErrorPage(
                429,
                "Too Many Requests",
                f"This device already holds {self.limits.perDevice} connections "
                "to this gateway; close some and try again.",
                request.headers.get(b"accept"),
            )
            request.response.respond(
                status, b"Too Many Requests", list(headers) + [(b"Connection", b"close")], body
            )
            return
        self.handler.requestReceived(request)


def limitedListener(limits: ConnectionLimits) -> Callable[..., Any]:
    """
    A function with L{ztnagw.tls.listener.listenTLS}'s signature that
    listens with a L{LimitedTLSFactory} enforcing C{limits}.
    """
    from ztnagw.tls.listener import DEFAULT_BACKLOG

    def listen(reactor: Any, port: int, interface: str, creator: Any, factory: Any, backlog: int = DEFAULT_BACKLOG) -> Any:
        return reactor.listenTCP(
            port, LimitedTLSFactory(creator, factory, reactor, limits), backlog=backlog, interface=interface
        )

    return listen
