# -*- test-case-name: tests.forwarder.test_tunnel -*-
"""
Opening a tunnel through the gateway: the forwarder's side of TFACP.

For each application connection the forwarder opens its own mutual-TLS
connection to the access-proxy VIP (with the device certificate; the
gateway's certificate checked against the profile's CA and the gateway's
name), sends C{GET /tcp?address=...&port=...&tls=...} with
C{Upgrade: tcp-forwarding/1.0}, and reads the answer:

  - C{101 Switching Protocols}: the connection now carries the tunnel.
    With C{tls=1} it stays inside TLS; with C{tls=0} TLS is dropped right
    after the C{101} (L{TLSProtocol.freezeTLS
    <ztnagw.tls.transport.TLSProtocol.freezeTLS>} in the very call that
    completes the head, then C{dropTLS}), and the bytes behind the C{101}
    are raw.  Either way the result is a connected server
    L{RelayEnd<ztnagw.tunnel.relay.RelayEnd>} holding any bytes that came
    with the C{101}.
  - anything else: a refusal, read with
    L{parseRefusal<ztnagw.tunnel.wire.parseRefusal>} into L{TunnelRefused}
    (C{blocked by gateway: 063 client certificate revoked}).  Refusals are
    final.

A gateway that cannot be reached (refused or timed-out TCP connection, a
connection dropped before any answer) is retried with exponential backoff
for a while.  The backoff is shared by all tunnels to one gateway
(L{Backoff}): during an outage, new connections wait their turn instead of
hammering the gateway.  A certificate the forwarder does not accept is not
retried: it is a configuration problem or an attack.
"""

from __future__ import annotations

import random
from typing import Any, Callable

from attrs import frozen
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import (
    ConnectError,
    ConnectingCancelledError,
    ConnectionDone,
    TimeoutError,
)
from twisted.internet.interfaces import (
    IDelayedCall,
    IHalfCloseableProtocol,
    IHandshakeListener,
    IOpenSSLClientConnectionCreator,
    IReactorTime,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ztnagw.http.errors import HTTPParseError
from ztnagw.http.parser import (
    FRAMING_CHUNKED,
    FRAMING_LENGTH,
    FRAMING_NONE,
    parseResponseHead,
    responseFraming,
)
from ztnagw.tls.client import ServerCertificateRejected
from ztnagw.tls.listener import connectTLS
from ztnagw.tls.transport import TLSDropRefused
from ztnagw.tunnel.relay import DEFAULT_BUFFER_LIMIT, SERVER, RelayEnd
from ztnagw.tunnel.wire import (
    MAX_REFUSAL_BODY,
    UPGRADE_TOKEN,
    TunnelRefusal,
    TunnelTarget,
    parseRefusal,
    tunnelRequest,
)

__all__ = [
    "Backoff",
    "Gateway",
    "GatewayUnreachable",
    "TunnelFailed",
    "TunnelOpener",
    "TunnelRefused",
]

_log = Logger()

#: The longest response head accepted from a gateway.
MAX_HEAD = 64 * 1024


class TunnelRefused(Exception):
    """
    The gateway refused the tunnel.

    @ivar refusal: what it said.
    """

    def __init__(self, refusal: TunnelRefusal) -> None:
        super().__init__(refusal.describe())
        self.refusal = refusal


class TunnelFailed(Exception):
    """
    The tunnel could not be opened for a reason retrying will not fix (the
    gateway's certificate was refused, the gateway broke the protocol or
    did not answer in time); the message says why.
    """


class GatewayUnreachable(Exception):
    """
    The gateway could not be reached (after retrying, when the opener
    retries); the message says why.
    """


@frozen
class Gateway:
    """
    Where tunnels are opened.

    @ivar host: the gateway's host name or address, as connected to.
    @ivar port: its port (the VIP's C{extport}).
    @ivar serverName: the name its certificate must carry (and the TLS
        SNI); by default L{host}.
    """

    host: str
    port: int
    serverName: str | None = None

    @property
    def authority(self) -> bytes:
        """
        The C{Host} field value for requests to it.
        """
        host = self.serverName or self.host
        if ":" in host:
            host = f"[{host}]"
        return f"{host}:{self.port}".encode("ascii")

    def __str__(self) -> str:
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


class Backoff:
    """
    How long new attempts to reach one gateway wait after failures: nothing
    while it answers; after the first failure C{initial} seconds, doubling
    with each further failure up to C{maximum}, with 20% jitter so that
    waiting connections do not return together.  One success resets it.
    """

    def __init__(
        self,
        initial: float = 0.5,
        maximum: float = 10.0,
        randomness: Callable[[], float] = random.random,
    ) -> None:
        """
        @param initial: the first delay.
        @param maximum: the longest delay.
        @param randomness: a source of numbers in [0, 1) (tests fix it).
        """
        self.initial = initial
        self.maximum = maximum
        self.failures = 0
        self._random = randomness

    def delay(self) -> float:
        """
        How long the next attempt waits.
        """
        if self.failures == 0:
            return 0.0
        base = min(self.maximum, self.initial * 2 ** (self.failures - 1))
        return base * (0.8 + 0.4 * self._random())

    def failed(self) -> None:
        """
        An attempt failed.
        """
        self.failures = min(self.failures + 1, 64)

    def succeeded(self) -> None:
        """
        An attempt reached the gateway.
        """
        self.failures = 0


def _describe(reason: Failure) -> str:
    value = reason.value
    if isinstance(value, TimeoutError):
        return "connection timed out"
    text = " ".join(str(value).split()) or type(value).__name__
    return text[:300]


@implementer(IHalfCloseableProtocol, IHandshakeListener)
class _TunnelRequester(Protocol):
    """
    The application protocol of one connection to the gateway: it asks for
    the tunnel, reads the answer, and then passes every event to the server
    L{RelayEnd}.

    @ivar result: fires with the L{RelayEnd}, or fails with
        L{TunnelRefused}, L{TunnelFailed} or L{GatewayUnreachable}.
    """

    def __init__(self, target: TunnelTarget, request: bytes, bufferLimit: int) -> None:
        self._target = target
        self._request = request
        self._bufferLimit = bufferLimit
        self._buffer = b""
        self._head: Any = None
        self._framing = FRAMING_NONE
        self._remaining = 0
        self._handshakeDone = False
        self._answered = False
        self._end: RelayEnd | None = None
        self.result: Deferred[RelayEnd] = Deferred()

    def connectionMade(self) -> None:
        """
        Ask for the tunnel (TLS sends it once the handshake is done).
        """
        self.transport.write(self._request)  # type: ignore[union-attr]

    def handshakeCompleted(self) -> None:
        """
        Note that TLS is up: a loss after this point is not "unreachable".
        """
        self._handshakeDone = True

    def dataReceived(self, data: bytes) -> None:
        """
        Read the answer; after a C{101}, pass data to the relay end.
        """
        end = self._end
        if end is not None:
            end.dataReceived(data)
            return
        if self.result.called:
            return
        self._answered = True
        self._buffer += data
        try:
            if self._head is None:
                self._readHead()
            if self._head is not None and not self.result.called:
                self._readBody(ended=False)
        except HTTPParseError as e:
            self._fail(TunnelFailed(f"the gateway's answer is not HTTP: {e.detail}"))

    def _readHead(self) -> None:
        while True:
            index = self._buffer.find(b"\r\n\r\n")
            if index < 0:
                if len(self._buffer) > MAX_HEAD:
                    raise HTTPParseError(502, "response head too large")
                return
            block, self._buffer = self._buffer[:index], self._buffer[index + 4 :]
            head = parseResponseHead(block)
            if head.status == 101:
                self._switch(head)
                return
            if head.status < 200:
                # An interim response (100, 103): the answer follows.
                continue
            self._head = head
            self._framing, self._remaining = responseFraming(head, b"GET")
            return

    def _switch(self, head: Any) -> None:
        upgrade = head.headers.get(b"upgrade") or b""
        if upgrade.strip().lower() != UPGRADE_TOKEN:
            raise HTTPParseError(502, f"101 to {upgrade[:40]!r}, not {UPGRADE_TOKEN!r}")
        rest, self._buffer = self._buffer, b""
        end = RelayEnd(SERVER, self._bufferLimit)
        tls = self.transport
        if self._target.encrypted:
            self._end = end
            end.makeConnection(tls)
            if rest:
                end.dataReceived(rest)
        else:
            if rest:
                # The 101 must be the gateway's last TLS record: TLS data
                # after it cannot be told apart from the raw stream.
                raise HTTPParseError(502, "TLS data after the 101 of a tls=0 tunnel")
            try:
                tls.freezeTLS()  # type: ignore[union-attr]
                self._end = end
                tls.dropTLS(end)  # type: ignore[union-attr]
            except (TLSDropRefused, AttributeError) as e:
                self._end = None
                self._fail(TunnelFailed(f"cannot switch the connection to raw TCP: {e}"))
                return
        self.result.callback(end)

    def _readBody(self, ended: bool) -> None:
        framing = self._framing
        body = self._buffer
        if framing == FRAMING_LENGTH:
            if len(body) < self._remaining and not ended and len(body) < MAX_REFUSAL_BODY:
                return
            body = body[: self._remaining]
        elif framing == FRAMING_NONE:
            body = b""
        elif not ended and len(body) < MAX_REFUSAL_BODY:
            # Close-delimited or chunked: ztnagw sends a length; wait for
            # the close for others (a chunked body is only read at the end,
            # and only for its code: the header carries it).
            return
        if framing == FRAMING_CHUNKED:
            body = b""
        self._fail(TunnelRefused(parseRefusal(self._head, body[:MAX_REFUSAL_BODY])))

    def _fail(self, error: Exception) -> None:
        if not self.result.called:
            self.result.errback(Failure(error))
        if self.transport is not None and self._end is None:
            self.transport.loseConnection()

    def readConnectionLost(self) -> None:
        """
        The gateway finished sending (TLS C{close_notify}).
        """
        end = self._end
        if end is not None:
            end.readConnectionLost()
            return
        self._ended()
        self.transport.loseConnection()  # type: ignore[union-attr]

    def writeConnectionLost(self) -> None:
        """
        Our half-close went out.
        """
        end = self._end
        if end is not None:
            end.writeConnectionLost()

    def _ended(self) -> None:
        if self.result.called:
            return
        if self._head is not None:
            self._readBody(ended=True)
        elif self._answered:
            self._fail(TunnelFailed("the gateway closed the connection in the middle of its answer"))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """
        Pass the loss on, or turn it into the opening's failure.
        """
        end = self._end
        if end is not None:
            end.connectionLost(reason)
            return
        self._ended()
        if self.result.called:
            return
        if reason.check(ServerCertificateRejected):
            error: Exception = TunnelFailed(str(reason.value))
        elif self._handshakeDone and not reason.check(ConnectionDone):
            error = GatewayUnreachable(f"connection lost before the answer: {_describe(reason)}")
        elif self._handshakeDone:
            error = GatewayUnreachable("the gateway closed the connection without answering")
        else:
            error = GatewayUnreachable(f"TLS handshake failed: {_describe(reason)}")
        self.result.errback(Failure(error))


class TunnelOpener:
    """
    Opens tunnels through one gateway.
    """

    def __init__(
        self,
        reactor: Any,
        gateway: Gateway,
        creator: IOpenSSLClientConnectionCreator,
        userAgent: bytes,
        connectTimeout: float = 10.0,
        answerTimeout: float = 30.0,
        retryFor: float = 30.0,
        backoff: Backoff | None = None,
        bufferLimit: int = DEFAULT_BUFFER_LIMIT,
    ) -> None:
        """
        @param reactor: an C{IReactorTCP} and C{IReactorTime} provider.
        @param gateway: where to connect.
        @param creator: the TLS client side (device certificate, the
            gateway's certificate check).
        @param userAgent: the C{User-Agent} of tunnel requests.
        @param connectTimeout: seconds for the TCP connection.
        @param answerTimeout: seconds from the TCP connection to the
            gateway's answer (TLS handshake, the gateway's own connection to
            the real server).
        @param retryFor: how long to keep retrying an unreachable gateway
            for one tunnel; 0 for one attempt.
        @param backoff: the delays between attempts, shared with other
            openers of the same gateway; a new one by default.
        @param bufferLimit: the bound of the server end's buffer before the
            relay starts.
        """
        self.reactor = reactor
        self.gateway = gateway
        self._creator = creator
        self._userAgent = userAgent
        self._connectTimeout = connectTimeout
        self._answerTimeout = answerTimeout
        self._retryFor = retryFor
        self.backoff = backoff if backoff is not None else Backoff()
        self._bufferLimit = bufferLimit

    def open(self, target: TunnelTarget) -> Deferred[RelayEnd]:
        """
        Open a tunnel to C{target}.

        @return: a Deferred firing with the connected server end (bytes that
            came with the C{101} are in it), or failing with
            L{TunnelRefused}, L{TunnelFailed} or L{GatewayUnreachable}.
            Cancelling it gives up (the connection, if any, is aborted).
        """
        return _Opening(self, target).start()

    def _attempt(self, target: TunnelTarget) -> tuple[Deferred[object], _TunnelRequester]:
        request = tunnelRequest(target, self.gateway.authority, self._userAgent)
        requester = _TunnelRequester(target, request, self._bufferLimit)
        factory = Factory.forProtocol(lambda: requester)  # type: ignore[arg-type, return-value]
        factory.noisy = False
        connecting = connectTLS(
            self.reactor,
            self.gateway.host,
            self.gateway.port,
            self._creator,
            factory,
            timeout=self._connectTimeout,
        )
        return connecting, requester


class _Opening:
    """
    One tunnel's attempts to reach the gateway.
    """

    def __init__(self, opener: TunnelOpener, target: TunnelTarget) -> None:
        self._opener = opener
        self._target = target
        self._clock: IReactorTime = opener.reactor
        self._started = self._clock.seconds()
        self._attempts = 0
        self._timer: IDelayedCall | None = None
        self._answerTimer: IDelayedCall | None = None
        self._connecting: Deferred[object] | None = None
        self._requester: _TunnelRequester | None = None
        self._cancelled = False
        self._result: Deferred[RelayEnd] = Deferred(self._cancel)

    def start(self) -> Deferred[RelayEnd]:
        self._schedule(self._opener.backoff.delay())
        return self._result

    def _schedule(self, delay: float) -> None:
        if delay <= 0:
            self._attempt()
        else:
            self._timer = self._clock.callLater(delay, self._attempt)

    def _attempt(self) -> None:
        self._timer = None
        if self._cancelled:
            return
        self._attempts += 1
        connecting, requester = self._opener._attempt(self._target)
        self._connecting = connecting
        self._requester = requester
        connecting.addCallbacks(self._connected, self._connectFailed)
        requester.result.addCallbacks(self._succeeded, self._failed)

    def _connected(self, protocol: object) -> None:
        self._connecting = None
        if not self._result.called:
            self._answerTimer = self._clock.callLater(
                self._opener._answerTimeout, self._noAnswer
            )

    def _noAnswer(self) -> None:
        self._answerTimer = None
        requester = self._requester
        if requester is not None and not requester.result.called:
            requester.result.errback(
                Failure(
                    TunnelFailed(
                        f"the gateway did not answer within "
                        f"{self._opener._answerTimeout:g} s"
                    )
                )
            )
            if requester.transport is not None:
                requester.transport.abortConnection()

    def _connectFailed(self, reason: Failure) -> None:
        self._connecting = None
        if self._cancelled or reason.check(CancelledError, ConnectingCancelledError):
            return
        requester = self._requester
        if requester is not None and not requester.result.called:
            if reason.check(ConnectError, TimeoutError):
                message = f"cannot connect: {_describe(reason)}"
            else:
                message = _describe(reason)
            requester.result.errback(Failure(GatewayUnreachable(message)))

    def _stopAnswerTimer(self) -> None:
        if self._answerTimer is not None and self._answerTimer.active():
            self._answerTimer.cancel()
        self._answerTimer = None

    def _succeeded(self, end: RelayEnd) -> None:
        self._stopAnswerTimer()
        self._opener.backoff.succeeded()
        if self._cancelled or self._result.called:
            # Cancelled meanwhile: nobody wants this tunnel.
            end.abort()
            return
        self._result.callback(end)

    def _failed(self, reason: Failure) -> None:
        self._stopAnswerTimer()
        if self._cancelled or self._result.called:
            return
        if not reason.check(GatewayUnreachable):
            if reason.check(TunnelRefused):
                # The gateway answered: it is reachable.
                self._opener.backoff.succeeded()
            self._result.errback(reason)
            return
        backoff = self._opener.backoff
        backoff.failed()
        delay = backoff.delay()
        elapsed = self._clock.seconds() - self._started
        if elapsed + delay > self._opener._retryFor:
            attempts = "1 attempt" if self._attempts == 1 else f"{self._attempts} attempts"
            self._result.errback(
                Failure(
                    GatewayUnreachable(
                        f"gateway {self._opener.gateway} unreachable after {attempts}: "
                        f"{reason.getErrorMessage()}"
                    )
                )
            )
            return
        _log.debug(
            "gateway {gateway} unreachable ({why}); retrying in {delay:.1f} s",
            gateway=str(self._opener.gateway),
            why=reason.getErrorMessage(),
            delay=delay,
        )
        self._schedule(delay)

    def _cancel(self, result: Deferred[RelayEnd]) -> None:
        self._cancelled = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self._stopAnswerTimer()
        if self._connecting is not None:
            self._connecting.cancel()
        requester = self._requester
        if requester is not None:
            if requester.transport is not None and requester._end is None:
                requester.transport.abortConnection()
            elif requester._end is not None:
                requester._end.abort()
