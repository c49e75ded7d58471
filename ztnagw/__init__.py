"""
ztnagw: an open-source zero-trust access gateway on Twisted.

The package re-implements a FortiGate-style ZTNA access proxy (an HTTPS
reverse proxy and a TCP forwarding access proxy) that admits a request only
after checking the device certificate against the endpoint registry, the
ZTNA policy and the device's posture tags.  See C{docs/architecture.md}.
"""

__version__ = "0.1.0"
