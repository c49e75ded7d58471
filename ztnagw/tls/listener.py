# -*- test-case-name: tests.tls.test_listener -*-
"""
Listening and connecting with ztnagw's TLS transport.

Twisted's C{listenSSL}, C{startTLS} and C{wrapServerTLS}/C{wrapClientTLS}
hard-code Twisted's own TLS protocol class, and C{listenSSL} even puts TLS
inside the TCP transport.  Half-close and dropping TLS need our
L{TLSProtocol<ztnagw.tls.transport.TLSProtocol>} between a plain TCP
connection and the application, so every TLS socket of ztnagw is made here:
a plain TCP listener or connection whose factory is a
L{TLSFactory<ztnagw.tls.transport.TLSFactory>} wrapping the application's.

Several worker processes sharing one port (C{SO_REUSEPORT}) will need a
listener over an adopted socket; it wraps the application factory with
L{tlsServerFactory} exactly as L{listenTLS} does.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import (
    IListeningPort,
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
    IProtocol,
    IProtocolFactory,
    IReactorTCP,
    IReactorTime,
)

from ztnagw.tls.transport import TLSFactory, TLSProtocol

#: The listen backlog when none is given (Twisted's default).
DEFAULT_BACKLOG = 50


def tlsServerFactory(
    creator: IOpenSSLServerConnectionCreator,
    factory: IProtocolFactory,
    clock: IReactorTime,
) -> TLSFactory:
    """
    Wrap an application factory so that its connections are TLS server
    connections made by C{creator}.
    """
    return TLSFactory(creator, False, factory, clock)


def listenTLS(
    reactor: Any,
    port: int,
    interface: str,
    creator: IOpenSSLServerConnectionCreator,
    factory: IProtocolFactory,
    backlog: int = DEFAULT_BACKLOG,
) -> IListeningPort:
    """
    Accept TLS connections on C{interface}:C{port}.

    Accepted connections get C{TCP_NODELAY} and C{SO_KEEPALIVE}.

    @param reactor: an L{IReactorTCP} and L{IReactorTime} provider.
    @param port: the TCP port; 0 lets the kernel choose.
    @param interface: the address to bind (C{"::"} for every address).
    @param creator: makes each connection's server side (usually a
        L{ztnagw.tls.server.ServerConnectionCreator}).
    @param factory: the application factory.
    @param backlog: the listen queue length.
    @return: the listening port.
    """
    tcp: IReactorTCP = reactor
    return tcp.listenTCP(
        port,
        tlsServerFactory(creator, factory, reactor),
        backlog=backlog,
        interface=interface,
    )


def connectTLS(
    reactor: Any,
    host: str,
    port: int,
    creator: IOpenSSLClientConnectionCreator,
    factory: IProtocolFactory,
    timeout: float = 30,
) -> Deferred[IProtocol]:
    """
    Open a TLS connection to C{host}:C{port} (a name is resolved without
    blocking; IPv4 and IPv6 addresses are tried as by
    L{HostnameEndpoint}).

    @param reactor: the reactor.
    @param creator: makes the client side (see L{ztnagw.tls.client}); it
        decides what server certificate is acceptable.
    @param factory: the application factory.
    @param timeout: seconds to wait for the TCP connection.
    @return: a Deferred firing with the application protocol once TCP is
        connected (the TLS handshake then runs; an application that must
        know when it is done provides
        L{IHandshakeListener<twisted.internet.interfaces.IHandshakeListener>}).
    """
    endpoint = HostnameEndpoint(reactor, host, port, timeout=timeout)
    connecting = endpoint.connect(TLSFactory(creator, True, factory, reactor))

    def application(tls: TLSProtocol) -> IProtocol:
        return tls.wrappedProtocol

    return connecting.addCallback(application)
