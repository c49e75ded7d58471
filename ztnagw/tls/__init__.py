# -*- test-case-name: tests.tls -*-
"""
The TLS layer of ztnagw.

  - L{ztnagw.tls.posture}: versions, suites and options every context shares.
  - L{ztnagw.tls.server}: the server connection creator of every VIP, with
    SNI and the one device-certificate verify callback; L{handshakeFacts
    <ztnagw.tls.server.handshakeFacts>} gives the application what the
    handshake captured.
  - L{ztnagw.tls.certcheck}: what is wrong with a client certificate, in
    words.
  - L{ztnagw.tls.client}: client connection creators (forwarder to gateway,
    enrollment by pin, gateway to real servers).
  - L{ztnagw.tls.transport}: the TLS transport with half-close and
    dropping TLS after a C{101}; the only module that touches private
    Twisted and pyOpenSSL names.
  - L{ztnagw.tls.listener}: listening and connecting with that transport.

See C{docs/tls.md}.
"""
