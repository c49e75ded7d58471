# -*- test-case-name: tests.gateway.test_proxy -*-
"""
The seams of the access proxy.

Two parts of the gateway are written separately from the HTTPS request
handler and plugged into it: the TCP forwarding tunnel (L{ITunnelHandler},
which gets every FortiClient C{GET /tcp} upgrade request together with the
same per-request context the HTTPS proxy uses, so that both run the one
authorize path), and name resolution (L{IResolver}, which tests replace with
a table and which the daemon implements without blocking the reactor).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zope.interface import Interface

if TYPE_CHECKING:  # pragma: no cover
    import ipaddress

    from twisted.internet.defer import Deferred

    from ztnagw.gateway.context import RequestContext
    from ztnagw.http.server import Request


class ITunnelHandler(Interface):
    """
    Serves the TCP forwarding access proxy's tunnel requests: FortiClient's
    C{GET /tcp?address=HOST&port=N&tls=1} with C{Upgrade:
    tcp-forwarding/1.0} (see L{ztnagw.gateway.proxy.isTunnelRequest}).
    """

    def handleTunnelRequest(request: Request, context: RequestContext) -> None:
        """
        Answer one tunnel request, now or later.

        The handler checks the destination, authorizes with
        C{context.authorize(...)} (the same decision as an HTTPS request),
        then either refuses with C{context.deny(request, ...)} (a block page
        instead of the C{101}) or connects, writes the C{101} and takes the
        connection over with C{request.takeOver(...)}.  It writes its own
        traffic log line (C{context.logTraffic(...)}) and registers the
        tunnel as a live session (C{context.openSession(...)}).

        @param request: the request; its head is complete and it has no
            body (the HTTP layer refuses an Upgrade request with one).
        @param context: the connection and request facts and the shared
            authorize path.
        """


class IResolver(Interface):
    """
    Turns host names into IPv4 addresses without blocking the reactor.
    """

    def resolve(name: str) -> Deferred[tuple[ipaddress.IPv4Address, ...]]:
        """
        The IPv4 addresses of C{name}, in the resolver's order.  An IPv4
        literal resolves to itself.

        @return: a Deferred that fires with at least one address, or fails
            with L{ztnagw.gateway.resolver.NameNotResolved} saying why.
        """

    def cached(name: str) -> tuple[ipaddress.IPv4Address, ...] | None:
        """
        The answer for C{name} known now, without waiting: the addresses of
        a fresh successful lookup, C{()} for a fresh failed one, C{None}
        when nothing fresh is known.
        """
