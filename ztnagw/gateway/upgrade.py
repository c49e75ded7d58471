# -*- test-case-name: tests.gateway.test_upgrade -*-
"""
WebSockets and every other HTTP/1.1 C{Upgrade} through the HTTPS access
proxy.

An C{Upgrade} request (other than FortiClient's C{tcp-forwarding/1.0},
which the TCP forwarding access proxy answers) is matched, authorized and
routed like any request (L{ztnagw.gateway.proxy}); it then goes to the real
server with its C{Upgrade} and C{Connection: Upgrade} fields (every other
hop-by-hop field removed as usual).  When the real server answers C{101
Switching Protocols} with a protocol the client offered, the gateway relays
the 101 (hop-by-hop fields removed, C{Upgrade} and C{Connection: Upgrade}
put back) and both connections become one byte stream: the project's one
relay (L{ztnagw.tunnel.relay}: backpressure both ways, half-close, failures
travel).  Any other answer is relayed as an ordinary response (the client's
connection then closes: bytes after a refused Upgrade request may be data
of the protocol it asked for).

An upgraded connection is long-lived by nature, so the timeouts meant for
plain requests (C{response-timeout}, the access proxy's
C{http-keepalive-timeout}) stop applying at the 101.  What applies instead,
per api-gateway: C{idle-timeout} (no byte in either direction; 300 s by
default for http/https, enough for the usual WebSocket pings of 30-60 s)
and C{max-lifetime} (the whole connection; none by default, because the
device is decided again whenever its record changes).  The connection stays
the device's live session: a device revoked, quarantined or untagged loses
it at once.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from ztnagw.http.headers import Headers, withoutHopByHop
from ztnagw.logs import ACCEPT, CLIENT_RST, CLOSE, SERVER_RST, TIMEOUT
from ztnagw.tunnel.relay import (
    CLIENT,
    CLOSED,
    COMPLETED,
    IDLE_TIMEOUT,
    SERVER,
    Relay,
    RelayEnd,
    RelayResult,
    failed,
)

__all__ = [
    "ACTIONS",
    "UpgradedConnection",
    "acceptedUpgrade",
    "switchingPairs",
    "upgradePairs",
]

_log = Logger()

#: The traffic log's C{action} for each way an upgraded connection ends.
ACTIONS = {
    COMPLETED: ACCEPT,
    CLOSED: CLOSE,
    IDLE_TIMEOUT: TIMEOUT,
    failed(CLIENT): CLIENT_RST,
    failed(SERVER): SERVER_RST,
}


def _tokens(value: bytes) -> list[bytes]:
    return [t.strip(b" \t").lower() for t in value.split(b",") if t.strip(b" \t")]


def upgradePairs(upgrade: bytes) -> list[tuple[bytes, bytes]]:
    """
    The fields that carry a client's Upgrade request to the real server.

    @param upgrade: the client's C{Upgrade} value.
    """
    return [(b"Connection", b"Upgrade"), (b"Upgrade", upgrade)]


def acceptedUpgrade(offered: bytes, response: Headers) -> bytes | None:
    """
    The protocol a C{101} switches to, when it is one the client offered
    (RFC 9110 section 7.8), else C{None}.

    @param offered: the client's C{Upgrade} value.
    @param response: the C{101}'s fields.
    """
    values = response.getAll(b"upgrade")
    if len(values) != 1:
        return None
    chosen = _tokens(values[0])
    if len(chosen) != 1 or chosen[0] not in _tokens(offered):
        return None
    return values[0].strip(b" \t")


def switchingPairs(response: Headers, protocol: bytes) -> list[tuple[bytes, bytes]]:
    """
    The fields of the C{101} relayed to the client: the real server's,
    hop-by-hop ones removed, then C{Upgrade} and C{Connection: Upgrade}.
    """
    pairs = list(withoutHopByHop(response).pairs())
    pairs.append((b"Upgrade", protocol))
    pairs.append((b"Connection", b"Upgrade"))
    return pairs


class UpgradedConnection:
    """
    A client connection joined to its real server after a C{101}.

    @ivar relay: the byte relay.
    """

    def __init__(
        self,
        clock: Any,
        request: Any,
        upstream: Any,
        idleTimeout: float,
        maxLifetime: float,
        ended: Callable[[RelayResult], None],
    ) -> None:
        """
        Take both connections over and start relaying.  The caller has
        written the C{101}.

        @param request: the client's request (L{ztnagw.http.server.Request}).
        @param upstream: the real server's C{101}
            (L{ztnagw.http.client.UpstreamResponse}).
        @param idleTimeout: seconds without a byte before closing; 0: never.
        @param maxLifetime: seconds in all before closing; 0: never.
        @param ended: called with the relay's result when both connections
            are gone.
        """
        self._clock = clock
        client = RelayEnd(CLIENT)
        server = RelayEnd(SERVER)
        request.takeOver(client)
        upstream.takeOver(server)
        self.relay = Relay(clock, client, server, idleTimeout=idleTimeout or None)
        self._lifetime: IDelayedCall | None = None
        self.relay.start()
        if maxLifetime > 0:
            self._lifetime = clock.callLater(maxLifetime, self._expired, maxLifetime)
        self.relay.whenDone().addCallback(self._done, ended)

    def _expired(self, maxLifetime: float) -> None:
        self._lifetime = None
        self.relay.close(f"open for {maxLifetime:g} s (max-lifetime)")

    def _done(self, result: RelayResult, ended: Callable[[RelayResult], None]) -> None:
        timer, self._lifetime = self._lifetime, None
        if timer is not None and timer.active():
            timer.cancel()
        ended(result)

    def close(self, reason: str) -> None:
        """
        End the connection now (both sides aborted).
        """
        self.relay.close(reason)
