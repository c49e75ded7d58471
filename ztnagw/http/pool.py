# -*- test-case-name: tests.http.test_pool -*-
"""
Upstream requests for the gateway: L{UpstreamPool.request} sends one
request to a real server over a kept-alive connection when one is idle, or
a new one (TCP, or TLS through C{TLSMemoryBIOFactory}) made with the
injected reactor.

A pooled connection may have been closed by the server while idle; the
request then fails before any response byte.  The pool re-sends it once on
a fresh connection when that is safe (an idempotent method and no body byte
sent); otherwise the failure says whether any request byte was sent and
whether any response byte arrived, which is what the gateway's own retry
and 502/504 decisions need.
"""

from __future__ import annotations

from typing import Iterable

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionRefusedError, TimeoutError
from twisted.internet.interfaces import IPushProducer, IReactorTCP, IReactorTime
from twisted.internet.protocol import ClientFactory
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from zope.interface import implementer

from ztnagw.http.client import (
    PoolSettings,
    UpstreamConnection,
    UpstreamKey,
    UpstreamResponse,
    _Exchange,
)
from ztnagw.http.errors import ConnectFailed, ConnectRefused, ConnectTimeout, UpstreamError
from ztnagw.http.headers import TOKEN_BYTES, Headers, checkName, checkValue
from ztnagw.http.interfaces import IBodySource

__all__ = ["PoolSettings", "UpstreamKey", "UpstreamPool", "BytesBody"]

_TARGET_BYTES = bytes(range(0x21, 0x7F))
_DROPPED = frozenset({b"content-length", b"transfer-encoding", b"expect"})
# Methods whose requests are expected to carry a body: an empty one is
# announced with Content-Length: 0 (RFC 9110 section 8.6).
_BODY_METHODS = frozenset({b"POST", b"PUT", b"PATCH"})


class _ConnectionFactory(ClientFactory):
    """
    Builds the connection for one exchange and reports connection failures.
    """
    noisy = False

    def __init__(self, pool: UpstreamPool, exchange: _Exchange) -> None:
        self._pool = pool
        self._exchange = exchange

    def buildProtocol(self, addr: object) -> UpstreamConnection:
        """
        Build the connection's protocol.
        """
        connection = UpstreamConnection(self._pool, self._exchange.key, self._exchange)
        connection.factory = self
        self._pool._connections.add(connection)
        return connection

    def clientConnectionFailed(self, connector: object, reason: Failure) -> None:
        """
        Fail the exchange with the error matching C{reason}.
        """
        exchange = self._exchange
        exchange.connector = None
        if exchange.deferred is None:
            return
        if reason.check(ConnectionRefusedError):
            error: UpstreamError = ConnectRefused(
                f"connection refused by {exchange.key.host}:{exchange.key.port}"
            )
        elif reason.check(TimeoutError):
            error = ConnectTimeout(
                f"connection to {exchange.key.host}:{exchange.key.port} timed out"
            )
        else:
            error = ConnectFailed(
                f"cannot connect to {exchange.key.host}:{exchange.key.port}: "
                f"{reason.getErrorMessage()}"
            )
        self._pool._connectFailed(exchange, error)


class UpstreamPool:
    """
    Keep-alive upstream connections, per L{UpstreamKey}.

    @ivar settings: the pool's L{PoolSettings}.
    @ivar clock: the reactor (timers).
    """

    def __init__(self, reactor: IReactorTCP, settings: PoolSettings = PoolSettings()) -> None:
        """
        @param reactor: provides C{IReactorTCP} and C{IReactorTime}.
        @param settings: limits and timeouts.
        """
        self._reactor = reactor
        self.clock: IReactorTime = reactor  # type: ignore[assignment]
        self.settings = settings
        self._idle: dict[UpstreamKey, list[UpstreamConnection]] = {}
        self._connections: set[UpstreamConnection] = set()

    def request(
        self,
        key: UpstreamKey,
        method: bytes,
        target: bytes,
        headers: Headers | Iterable[tuple[bytes, bytes]],
        body: IBodySource | None = None,
    ) -> Deferred[UpstreamResponse]:
        """
        Send a request upstream.

        @param key: the real server.
        @param method: the method token.
        @param target: the request-target (origin-form normally).
        @param headers: the fields to send, C{Host} included; hop-by-hop
            fields should already be removed (see
            L{ztnagw.http.headers.withoutHopByHop}), except C{Connection} and
            C{Upgrade} for an Upgrade request.  C{Content-Length},
            C{Transfer-Encoding} and C{Expect} are dropped: the framing is
            chosen here from C{body.bodyLength} (chunked when unknown), and
            C{100-continue} is handled with the client by the server side.
        @param body: the request body, streamed with backpressure as the
            upstream socket accepts it; C{None} for no body.
        @return: fires with the response (its head; the body is delivered
            with C{deliverBody}), or fails with an L{UpstreamError}.
            Cancelling it abandons the request.
        @raise ValueError: an invalid method, target or field, or no
            C{Host}.
        """
        if type(method) is not bytes or not method or method.translate(None, TOKEN_BYTES):
            raise ValueError(f"invalid method {method!r}")
        if type(target) is not bytes or not target or target.translate(None, _TARGET_BYTES):
            raise ValueError(f"invalid request target {target!r}")
        if isinstance(headers, Headers):
            pairs = headers._pairs
        else:
            pairs = [(checkName(name), checkValue(value)) for name, value in headers]
        parts = [b"%s %s HTTP/1.1\r\n" % (method, target)]
        hasHost = False
        upgrade = False
        connectionTokens: set[bytes] = set()
        for name, value in pairs:
            lower = name.lower()
            if lower in _DROPPED:
                continue
            if lower == b"host":
                if hasHost:
                    raise ValueError("several Host fields")
                hasHost = True
            elif lower == b"connection":
                connectionTokens.update(
                    t.strip(b" \t").lower() for t in value.split(b",")
                )
            elif lower == b"upgrade":
                upgrade = True
            parts.append(name + b": " + value + b"\r\n")
        if not hasHost:
            raise ValueError("upstream requests need a Host field")
        bodyLength = body.bodyLength if body is not None else 0
        if bodyLength is None:
            parts.append(b"Transfer-Encoding: chunked\r\n")
        elif bodyLength or method in _BODY_METHODS:
            parts.append(b"Content-Length: %d\r\n" % bodyLength)
        if bodyLength == 0:
            body = None
        parts.append(b"\r\n")
        exchange = _Exchange(
            self,
            key,
            method,
            b"".join(parts),
            body,
            bodyLength,
            upgrade and b"upgrade" in connectionTokens,
            b"close" in connectionTokens,
        )
        d: Deferred[UpstreamResponse] = Deferred(canceller=exchange.cancel)
        exchange.deferred = d
        connection = self._takeIdle(key)
        if connection is not None:
            connection.send(exchange, reused=True)
        else:
            self._connect(exchange)
        return d

    def idleCount(self, key: UpstreamKey) -> int:
        """
        How many idle connections to C{key} are kept.
        """
        return len(self._idle.get(key, ()))

    def closeIdle(self) -> None:
        """
        Close every idle connection (at shutdown).
        """
        idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                connection._close()

    def _takeIdle(self, key: UpstreamKey) -> UpstreamConnection | None:
        connections = self._idle.get(key)
        while connections:
            # The most recently used connection first: it is the least
            # likely to have been closed by the server.
            connection = connections.pop()
            if connection._isIdle():
                if not connections:
                    del self._idle[key]
                return connection
        if connections is not None:
            self._idle.pop(key, None)
        return None

    def _connect(self, exchange: _Exchange) -> None:
        key = exchange.key
        factory = _ConnectionFactory(self, exchange)
        wrapped: ClientFactory = factory
        if key.tls is not None:
            wrapped = TLSMemoryBIOFactory(key.tls, True, factory)
        exchange.connector = self._reactor.connectTCP(
            key.host, key.port, wrapped, timeout=self.settings.connectTimeout
        )

    def _connectFailed(self, exchange: _Exchange, error: UpstreamError) -> None:
        exchange.fail(error)

    def _retry(self, exchange: _Exchange) -> None:
        exchange.retried = True
        exchange.responseStarted = False
        self._connect(exchange)

    def _release(self, connection: UpstreamConnection) -> None:
        connections = self._idle.setdefault(connection.key, [])
        if len(connections) >= self.settings.maxIdlePerKey:
            if not connections:
                del self._idle[connection.key]
            connection._close()
            return
        connections.append(connection)

    def _forget(self, connection: UpstreamConnection) -> None:
        self._connections.discard(connection)
        connections = self._idle.get(connection.key)
        if connections and connection in connections:
            connections.remove(connection)
            if not connections:
                del self._idle[connection.key]


@implementer(IBodySource)
class BytesBody:
    """
    A request body already in memory, as an L{IBodySource}.
    """

    def __init__(self, data: bytes) -> None:
        """
        @param data: the whole body.
        """
        self._data = data
        self.bodyLength = len(data)

    def deliverBody(self, consumer: object) -> None:
        """
        @see: L{IBodySource.deliverBody}
        """
        consumer.bodyStarted(_NoProducer())  # type: ignore[attr-defined]
        if self._data:
            consumer.bodyDataReceived(self._data)  # type: ignore[attr-defined]
        consumer.bodyFinished()  # type: ignore[attr-defined]


@implementer(IPushProducer)
class _NoProducer:
    """
    The producer of a body already in memory: nothing to pause.
    """
    def pauseProducing(self) -> None:
        """
        See L{twisted.internet.interfaces.IPushProducer.pauseProducing}.
        """
        pass

    def resumeProducing(self) -> None:
        """
        See L{twisted.internet.interfaces.IPushProducer.resumeProducing}.
        """
        pass

    def stopProducing(self) -> None:
        """
        See L{twisted.internet.interfaces.IPushProducer.stopProducing}.
        """
        pass
