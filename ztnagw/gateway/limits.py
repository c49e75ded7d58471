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
    counted from the TCP accept, by the client's address.  A connection
    beyond the limit is closed as soon as it is made: the gateway reads
    nothing from it and spends no handshake on it.
  - B{Per device} (C{max-connections-per-device}): counted by the device
    UID of a certificate issued by an EMS CA, at the first request of a
    connection (the handshake has told who it is by then); a connection
    beyond the limit is answered 429 and closed.  Certificates that do not
    chain to an EMS CA never count, so that nobody can exhaust a device's
    allowance with a forged certificate naming its UID.

A connection holds its slot for as long as its TCP connection lives,
including a C{tls=0} tunnel's, which outlives the TLS layer.  Nothing has
to remember to give a slot back: a slot refers to its TCP connection
weakly, and the counts of a source or a device are pruned of ended
connections whenever they reach the limit (and all of them every
L{SWEEP_INTERVAL} seconds, so that memory stays bounded).  This works
with whatever listens for the VIP (one process, or worker processes on
inherited sockets): the VIP's HTTP factory
(L{VipHTTPFactory<ztnagw.gateway.proxy.VipHTTPFactory>}) asks
L{ConnectionLimits.admitSource} for each new connection and tells
L{ConnectionLimits.opened} once it is made; L{DeviceLimitedHandler} counts
devices.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable

from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from zope.interface import implementer

from ztnagw.blockpage import renderErrorPage
from ztnagw.http.interfaces import IRequestHandler
from ztnagw.tls.server import HandshakeFacts, HandshakeIncomplete, NotVerifiedHere, handshakeFacts

__all__ = ["DEFAULT_LIMIT", "ConnectionLimits", "DeviceLimitedHandler", "RefusedConnection", "tcpOf"]

_log = Logger()

#: The per-source and per-device limit of a VIP without an access proxy
#: (the configuration's default for those that have one).
DEFAULT_LIMIT = 2048

#: Seconds between two log lines about one refused source or device.
LOG_INTERVAL = 60.0

#: Seconds between two sweeps of every count for ended connections.
SWEEP_INTERVAL = 10.0


def tcpOf(transport: Any) -> Any:
    """
    The TCP connection under an application's transport: the transport
    itself, or what a protocol wrapper (the TLS layer) wraps.
    """
    if hasattr(transport, "wrappedProtocol"):
        return transport.transport
    return transport


class _Slot:
    """
    What one connection holds: its source, its device once known, and a
    weak reference to its TCP connection (alive while it is connected).
    """

    __slots__ = ("source", "uid", "judged", "_tcp")

    def __init__(self, source: str, tcp: Any) -> None:
        self.source = source
        self.uid: str | None = None
        self.judged = False
        self._tcp = weakref.ref(tcp)

    @property
    def alive(self) -> bool:
        """
        Whether the TCP connection is still connected.
        """
        tcp = self._tcp()
        return tcp is not None and bool(getattr(tcp, "connected", False))


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
        self._bySource: dict[str, list[_Slot]] = {}
        self._byDevice: dict[str, list[_Slot]] = {}
        self._slots: weakref.WeakKeyDictionary[Any, _Slot] = weakref.WeakKeyDictionary()
        self._lastSweep = clock.seconds()
        self._logged: dict[str, float] = {}
        self.refusedSources = 0
        self.refusedDevices = 0

    def sourceCount(self, source: str) -> int:
        """
        The connections C{source} holds now.
        """
        return self._live(self._bySource, source)

    def deviceCount(self, uid: str) -> int:
        """
        The connections device C{uid} holds now.
        """
        return self._live(self._byDevice, uid)

    # Sources.

    def admitSource(self, source: str) -> bool:
        """
        Whether a new connection from C{source} may be accepted (it is
        counted by L{opened} once made).
        """
        if not self.perSource:
            return True
        held = self._bySource.get(source)
        if held is None or len(held) < self.perSource or self._live(self._bySource, source) < self.perSource:
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

    def opened(self, transport: Any, source: str) -> None:
        """
        A connection from C{source} was made; C{transport} is its
        application's transport (the TLS layer).
        """
        self._sweep()
        if transport in self._slots:
            return
        slot = _Slot(source, tcpOf(transport))
        self._slots[transport] = slot
        self._bySource.setdefault(source, []).append(slot)

    # Devices.

    def undecided(self, transport: Any) -> bool:
        """
        Whether the connection of C{transport} still has to be counted
        against its device (its first request has not been seen), so that
        later requests cost nothing.
        """
        slot = self._slots.get(transport)
        return slot is not None and not slot.judged

    def admitDevice(self, transport: Any, uid: str | None) -> bool:
        """
        Count the connection of C{transport} against device C{uid} (C{None}:
        it has no device), once; whether it is within the device's limit.
        A connection L{opened} was not told of is not counted.
        """
        slot = self._slots.get(transport)
        if slot is None or slot.judged:
            # Unknown, or counted already (a TLS connection has one
            # device for its whole life).
            return True
        if uid is None:
            slot.judged = True
            return True
        if self.perDevice:
            held = self._byDevice.get(uid)
            if held is not None and len(held) >= self.perDevice and self._live(self._byDevice, uid) >= self.perDevice:
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
        slot.judged = True
        self._byDevice.setdefault(uid, []).append(slot)
        return True

    # Bookkeeping.

    @staticmethod
    def _live(index: dict[str, list[_Slot]], key: str) -> int:
        """
        Prune C{key}'s connections that ended; how many remain.
        """
        held = index.get(key)
        if held is None:
            return 0
        alive = [slot for slot in held if slot.alive]
        if alive:
            index[key] = alive
        else:
            del index[key]
        return len(alive)

    def _sweep(self) -> None:
        """
        Prune every count (at most once per L{SWEEP_INTERVAL}), so that
        sources and devices that never come back are forgotten.
        """
        now = self._clock.seconds()
        if now - self._lastSweep < SWEEP_INTERVAL:
            return
        self._lastSweep = now
        for index in (self._bySource, self._byDevice):
            for key in list(index):
                self._live(index, key)

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


class RefusedConnection(Protocol):
    """
    The protocol of a connection over its source's limit: it closes the
    connection as soon as it is made, before any byte is read (under TLS,
    before the handshake).
    """

    def makeConnection(self, transport: Any) -> None:
        """
        Close at once.
        """
        Protocol.makeConnection(self, transport)
        transport.abortConnection()


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
        if not self.limits.undecided(transport):
            self.handler.requestReceived(request)
            return
        try:
            presented = self._handshakeFactsOf(transport).presented
        except (NotVerifiedHere, HandshakeIncomplete):
            # The handler refuses what it cannot judge.
            presented = None
        uid = presented.uid if presented is not None and presented.problem is None else None
        if not self.limits.admitDevice(transport, uid):
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
