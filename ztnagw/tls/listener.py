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

Several worker processes share each port (C{set workers N}): the
supervisor binds one C{SO_REUSEPORT} socket per worker and port with
L{reusePortSocket} (before dropping privileges, so ports below 1024 work),
hands each worker its own, and the worker accepts on it with L{adoptTLS},
which wraps the application factory with L{tlsServerFactory} exactly as
L{listenTLS} does.  See L{ztnagw.supervisor}.
"""

from __future__ import annotations

import ipaddress
import os
import socket
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


def addressFamily(host: str) -> socket.AddressFamily:
    """
    The address family of an address literal: C{AF_INET6} for IPv6, else
    C{AF_INET}.

    @raise ValueError: C{host} is not an address literal.
    """
    if ipaddress.ip_address(host).version == 6:
        return socket.AF_INET6
    return socket.AF_INET


def reusePortSocket(host: str, port: int, backlog: int = DEFAULT_BACKLOG) -> socket.socket:
    """
    A listening, non-blocking TCP socket on C{host}:C{port} with
    C{SO_REUSEPORT}: every socket made this way on the same address (by the
    same user) joins one group, each keeping its own accept queue, and the
    kernel spreads new connections over the group by a hash of their
    addresses.

    C{SO_REUSEADDR} is set too, as L{listenTCP
    <twisted.internet.interfaces.IReactorTCP.listenTCP>} does, so a restart
    is not refused while old connections linger in C{TIME_WAIT}.

    @param host: an address literal (C{"0.0.0.0"}, C{"::"} for every
        address).
    @param port: the TCP port; 0 lets the kernel choose (give the chosen
        port to the next sockets of the group).
    @raise OSError: the address cannot be bound (in use without
        C{SO_REUSEPORT}, or a privileged port for an unprivileged user).
    """
    family = addressFamily(host)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def checkPortFree(host: str, port: int) -> None:
    """
    Refuse an address another program already listens on.

    A C{SO_REUSEPORT} socket joins any group of the same user on its
    address: without this check a gateway started twice would silently
    share its VIPs with the stale one.  A probe bound without
    C{SO_REUSEPORT} (but with C{SO_REUSEADDR}, like L{reusePortSocket})
    fails exactly when something listens there.

    @raise OSError: C{EADDRINUSE} if something listens there; any other
        bind error (C{EACCES} for a privileged port) as it is.
    """
    with socket.socket(addressFamily(host), socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))


def adoptTLS(
    reactor: Any,
    fileDescriptor: int,
    family: socket.AddressFamily,
    creator: IOpenSSLServerConnectionCreator,
    factory: IProtocolFactory,
) -> IListeningPort:
    """
    Accept TLS connections on a listening socket made elsewhere (a
    worker's socket, bound by the supervisor).

    Takes C{fileDescriptor} over: the reactor's port works on its own
    duplicate, and C{fileDescriptor} is closed here, success or not, as
    L{AdoptedStreamServerEndpoint
    <twisted.internet.endpoints.AdoptedStreamServerEndpoint>} does.  A
    caller holding it in a L{socket.socket} must pass
    C{sock.detach()}: the object would otherwise close the same number
    again later, by then perhaps another file's.

    Accepted connections are made exactly as by L{listenTLS}.  Stopping
    the port closes only this process's duplicate: the socket stays open
    for the other processes holding it (Twisted does not shut down an
    adopted socket).

    @param reactor: an L{IReactorSocket} and L{IReactorTime} provider.
    @param fileDescriptor: a non-blocking, listening TCP socket.
    @param family: its address family.
    @param creator: makes each connection's server side.
    @param factory: the application factory.
    @return: the listening port.
    """
    try:
        port: IListeningPort = reactor.adoptStreamPort(
            fileDescriptor, family, tlsServerFactory(creator, factory, reactor)
        )
    finally:
        os.close(fileDescriptor)
    return port


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
