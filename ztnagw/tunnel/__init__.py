# -*- test-case-name: tests.tunnel -*-
"""
What both ends of a TCP forwarding tunnel share: the wire protocol that
opens a tunnel (L{ztnagw.tunnel.wire}) and the byte relay that carries it
(L{ztnagw.tunnel.relay}).

The gateway (C{ztnagw.gateway.tunnel}) and the forwarder
(C{ztnagw.forwarder}) are two halves of one protocol; keeping the request
format, its parser, the refusal format and the relay in one place means
the two halves cannot drift apart.  See C{docs/tfacp.md}.
"""
