# -*- test-case-name: tests.security.test_tunnel -*-
"""
Run C{twistd} with the reactor's name resolver pointed at a test DNS
server: C{python -m tests.security.resolving DNSPORT TWISTD-ARGUMENTS...}.

The tunnel attacks need a host name that resolves to a forbidden address
(the gateway's own loopback ports), and the daemon resolves names with
the reactor's resolver (C{getaddrinfo}, hence C{/etc/hosts}, which a test
must not edit).  Twisted's resolver is pluggable
(L{IReactorPluggableResolver}): this launcher installs a
L{twisted.names.client.Resolver} that asks only the DNS server of
L{tests.security.backends} on 127.0.0.1, then runs twistd exactly as the
command line would.  The daemon's code is unchanged; only the name
service it is given differs, as an operator's C{/etc/resolv.conf} would.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> None:
    """
    Install the resolver, then run twistd with the remaining arguments.
    """
    from twisted.internet import reactor
    from twisted.names import client
    from twisted.scripts.twistd import run

    port = int(argv[0])
    reactor.installResolver(client.Resolver(servers=[("127.0.0.1", port)]))  # type: ignore[attr-defined]
    sys.argv = ["twistd", *argv[1:]]
    run()


if __name__ == "__main__":
    main(sys.argv[1:])
