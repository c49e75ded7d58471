# -*- test-case-name: tests.forwarder.test_socks -*-
"""
A local SOCKS5 server (RFC 1928) for C{ztnagw-forward -D}: the destination
of each tunnel comes from the application's SOCKS request, so one
forwarder serves every internal host the gateway allows, without a rule per
destination (a browser, C{curl --socks5-hostname}, C{ssh -o
ProxyCommand='nc -X 5 ...'}).

Only what a forwarder needs: the C{CONNECT} command, the "no
authentication" method (the server listens on loopback: the user's own
programs are its clients), and the three address types (IPv4, domain name,
IPv6).  Domain names are not resolved here: they are passed to the gateway,
which resolves them inside the protected network.  Anything else gets the
RFC's refusal code and a close.

The parser (L{parseGreeting}, L{parseRequest}) is pure and incremental:
given what has arrived, it returns what it understood and how many bytes
that took, C{None} if more is needed, or raises L{SocksError} with the
reply code to send.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import Callable

from attrs import frozen

from ztnagw.tunnel.relay import CLIENT, DEFAULT_BUFFER_LIMIT, RelayEnd
from ztnagw.tunnel.wire import TunnelTarget, parseHost

__all__ = [
    "SocksConnection",
    "SocksError",
    "SocksRequest",
    "parseGreeting",
    "parseRequest",
    "reply",
]

VERSION = 5
NO_AUTHENTICATION = 0x00
NO_ACCEPTABLE_METHOD = 0xFF
CONNECT = 0x01
IPV4 = 0x01
DOMAIN = 0x03
IPV6 = 0x04

# Reply codes (RFC 1928 section 6).
SUCCEEDED = 0x00
GENERAL_FAILURE = 0x01
NOT_ALLOWED = 0x02
NETWORK_UNREACHABLE = 0x03
HOST_UNREACHABLE = 0x04
CONNECTION_REFUSED = 0x05
COMMAND_NOT_SUPPORTED = 0x07
ADDRESS_TYPE_NOT_SUPPORTED = 0x08

#: What each reply code means, for logs.
REPLY_MEANINGS = {
    SUCCEEDED: "succeeded",
    GENERAL_FAILURE: "general failure",
    NOT_ALLOWED: "connection not allowed by ruleset",
    NETWORK_UNREACHABLE: "network unreachable",
    HOST_UNREACHABLE: "host unreachable",
    CONNECTION_REFUSED: "connection refused",
    COMMAND_NOT_SUPPORTED: "command not supported",
    ADDRESS_TYPE_NOT_SUPPORTED: "address type not supported",
}


class SocksError(Exception):
    """
    A SOCKS message that cannot be served.

    @ivar code: the reply code to send (or L{NO_ACCEPTABLE_METHOD} for a
        greeting).
    @ivar detail: what was wrong, for the log.
    """

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@frozen
class SocksRequest:
    """
    A C{CONNECT} request.

    @ivar host: the destination, canonical (see
        L{ztnagw.tunnel.wire.parseHost}).
    @ivar port: the destination port.
    """

    host: str
    port: int

    def target(self, encrypted: bool = True) -> TunnelTarget:
        """
        The tunnel destination it asks for.
        """
        return TunnelTarget(self.host, self.port, encrypted)


def parseGreeting(data: bytes) -> tuple[tuple[int, ...], int] | None:
    """
    Read the client's greeting: version 5 and the methods it offers.

    @return: the methods and the greeting's length, or C{None} if it is
        not complete yet.
    @raise SocksError: not SOCKS5, or no method offered.
    """
    if not data:
        return None
    if data[0] != VERSION:
        raise SocksError(NO_ACCEPTABLE_METHOD, f"not a SOCKS5 client (version byte {data[0]})")
    if len(data) < 2:
        return None
    count = data[1]
    if count == 0:
        raise SocksError(NO_ACCEPTABLE_METHOD, "the client offers no authentication method")
    if len(data) < 2 + count:
        return None
    return tuple(data[2 : 2 + count]), 2 + count


def parseRequest(data: bytes) -> tuple[SocksRequest, int] | None:
    """
    Read a request.

    @return: the request and its length, or C{None} if it is not complete
        yet.
    @raise SocksError: a malformed request, another command than
        C{CONNECT}, an unknown address type, or a destination the tunnel
        protocol cannot carry (port 0, a name that is not a host name).
    """
    if len(data) < 4:
        if data and data[0] != VERSION:
            raise SocksError(GENERAL_FAILURE, f"bad version byte {data[0]} in the request")
        return None
    version, command, reserved, addressType = data[0], data[1], data[2], data[3]
    if version != VERSION:
        raise SocksError(GENERAL_FAILURE, f"bad version byte {version} in the request")
    if reserved != 0:
        raise SocksError(GENERAL_FAILURE, "the reserved byte of the request is not zero")
    if command != CONNECT:
        raise SocksError(
            COMMAND_NOT_SUPPORTED, f"only CONNECT is supported, not command {command}"
        )
    if addressType == IPV4:
        end = 4 + 4
        if len(data) < end + 2:
            return None
        host = str(ipaddress.IPv4Address(data[4:end]))
    elif addressType == IPV6:
        end = 4 + 16
        if len(data) < end + 2:
            return None
        host = str(ipaddress.IPv6Address(data[4:end]))
    elif addressType == DOMAIN:
        if len(data) < 5:
            return None
        length = data[4]
        end = 5 + length
        if len(data) < end + 2:
            return None
        raw = data[5:end]
        try:
            host = parseHost(raw.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            raise SocksError(
                HOST_UNREACHABLE, f"{raw[:80]!r} is not a host name"
            ) from None
    else:
        raise SocksError(ADDRESS_TYPE_NOT_SUPPORTED, f"unknown address type {addressType}")
    (port,) = struct.unpack("!H", data[end : end + 2])
    if port == 0:
        raise SocksError(HOST_UNREACHABLE, "port 0 cannot be connected to")
    return SocksRequest(host, port), end + 2


def reply(code: int) -> bytes:
    """
    A reply with C{code}.  The bound address is reported as
    C{0.0.0.0:0}: the real connection is made by the gateway, far away.
    """
    return bytes([VERSION, code, 0, IPV4, 0, 0, 0, 0, 0, 0])


#: The SOCKS states of a connection.
_GREETING = 0
_REQUEST = 1
_WAITING = 2
_RELAYING = 3
_CLOSED = 4


class SocksConnection(RelayEnd):
    """
    One application connection to the SOCKS server: it negotiates, asks
    its owner for a tunnel, then becomes the client end of the relay.

    Bytes the application sends after its request and before the reply
    are kept (bounded) and go through the tunnel first.

    @ivar request: the request, once read.
    @ivar failure: why the negotiation failed, when it did (for the log).
    """

    def __init__(
        self,
        onRequest: Callable[[SocksConnection, SocksRequest], None],
        bufferLimit: int = DEFAULT_BUFFER_LIMIT,
        maxNegotiation: int = 1024,
    ) -> None:
        """
        @param onRequest: called once with a complete C{CONNECT} request;
            the owner answers with L{succeeded} (then starts the relay) or
            L{refuse}.
        @param bufferLimit: see L{RelayEnd}.
        @param maxNegotiation: the most bytes a greeting and request may
            take.
        """
        super().__init__(CLIENT, bufferLimit)
        self._onRequest = onRequest
        self._maxNegotiation = maxNegotiation
        self._state = _GREETING
        self._buffer = b""
        self.request: SocksRequest | None = None
        self.failure: str | None = None

    def dataReceived(self, data: bytes) -> None:
        """
        Negotiate; afterwards, what arrives is tunnel data.
        """
        if self._state >= _WAITING:
            if self._state != _CLOSED:
                super().dataReceived(data)
            return
        self._buffer += data
        if len(self._buffer) > self._maxNegotiation:
            self._fail(GENERAL_FAILURE, "the SOCKS negotiation is too long")
            return
        try:
            if self._state == _GREETING:
                greeting = parseGreeting(self._buffer)
                if greeting is None:
                    return
                methods, used = greeting
                if NO_AUTHENTICATION not in methods:
                    raise SocksError(
                        NO_ACCEPTABLE_METHOD,
                        "the client requires authentication; this server offers "
                        "none (it listens for this machine only)",
                    )
                self._buffer = self._buffer[used:]
                self._state = _REQUEST
                self.transport.write(bytes([VERSION, NO_AUTHENTICATION]))  # type: ignore[union-attr]
            parsed = parseRequest(self._buffer)
            if parsed is None:
                return
        except SocksError as e:
            self._fail(e.code, e.detail, greeting=self._state == _GREETING)
            return
        request, used = parsed
        rest, self._buffer = self._buffer[used:], b""
        self.request = request
        self._state = _WAITING
        if rest:
            super().dataReceived(rest)
        self._onRequest(self, request)

    def readConnectionLost(self) -> None:
        """
        The application finished sending; during the negotiation that ends
        the connection.
        """
        if self._state < _WAITING:
            self._state = _CLOSED
            self.failure = "the client closed during the SOCKS negotiation"
            self.transport.loseConnection()  # type: ignore[union-attr]
            return
        super().readConnectionLost()

    def _fail(self, code: int, detail: str, greeting: bool = False) -> None:
        self.failure = detail
        self._state = _CLOSED
        if greeting:
            self.transport.write(bytes([VERSION, code]))  # type: ignore[union-attr]
        else:
            self.transport.write(reply(code))  # type: ignore[union-attr]
        self.transport.loseConnection()  # type: ignore[union-attr]

    def succeeded(self) -> None:
        """
        The tunnel is open: tell the application.  The owner starts the
        relay next.
        """
        if self._state != _WAITING:
            return
        self._state = _RELAYING
        self.transport.write(reply(SUCCEEDED))  # type: ignore[union-attr]

    def refuse(self, code: int) -> None:
        """
        The tunnel could not be opened: send reply C{code} and close.
        """
        if self._state != _WAITING:
            return
        self._state = _CLOSED
        self.transport.write(reply(code))  # type: ignore[union-attr]
        self.transport.loseConnection()  # type: ignore[union-attr]
