# -*- test-case-name: tests.gateway -*-
"""
The access proxy itself: what happens between a client's TLS connection to
a VIP and the real server behind it.

A request arrives on a VIP (L{ztnagw.gateway.vip}); it is matched to an
api-gateway by its virtual host, url-map and service
(L{ztnagw.gateway.matching}); the device behind the connection is judged
again and the access decision made, through the one authorize path that the
HTTPS proxy and the TCP forwarding tunnel share (L{ztnagw.gateway.context});
a real server is chosen (L{ztnagw.gateway.realservers}, names resolved
without blocking by L{ztnagw.gateway.resolver}); the request is relayed with
backpressure both ways (L{ztnagw.gateway.proxy}), or refused with a block
page carrying the ZTNA error code; one traffic log line records it; and the
live-session tracker (L{ztnagw.gateway.sessions}) ends the connections of a
device the registry stops admitting.  L{ztnagw.gateway.runtime} puts these
together for the daemon.  See C{docs/gateway.md}.
"""
