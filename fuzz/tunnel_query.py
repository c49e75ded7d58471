"""
Coverage-guided fuzzing of the tunnel request with atheris: each input is
the query of FortiClient's C{GET /tcp?...} upgrade request, sent through a
VIP's real front end.

    pip install -e '.[fuzz]'
    python fuzz/tunnel_query.py -dict=fuzz/tunnel.dict -max_total_time=60

The run stops at the first query that is answered with anything but a
refusal, a denial or a 502, that makes the gateway try a destination the
configuration does not admit, or that makes it log a failure.  The query
parser alone is checked too: it accepts or raises L{TunnelQueryError},
nothing else.
"""

from __future__ import annotations

import sys

import atheris

import _harness  # noqa: F401  (puts the repository on sys.path)

with atheris.instrument_imports(include=["ztnagw"]):
    from tests.fuzz.frontend import ALLOWED_STATUSES, FrontEnd, allowedDestination, feed
    from ztnagw.tunnel.wire import TunnelQueryError, parseTunnelTarget


def testOneInput(data: bytes) -> None:
    """
    Send one query; raise on any broken property.
    """
    try:
        parseTunnelTarget(b"/tcp?" + data)
    except TunnelQueryError:
        pass
    request = (
        b"GET /tcp?" + data + b" HTTP/1.1\r\nHost: 127.0.0.1:443\r\nUser-Agent: Forticlient\r\n"
        b"Upgrade: tcp-forwarding/1.0\r\nConnection: Upgrade\r\n\r\n"
    )
    frontEnd = FrontEnd()
    statuses, transport, failures = feed(frontEnd, request, [], False)
    if failures.events:
        raise AssertionError(failures.describe())
    if not set(statuses) <= ALLOWED_STATUSES:
        raise AssertionError(f"statuses {statuses} for {data[:200]!r}")
    for host, port in frontEnd.attempts:
        if not allowedDestination(host, port):
            raise AssertionError(f"connection to {host}:{port} for {data[:200]!r}")


def main() -> None:
    """
    Run the fuzzer with libFuzzer's command line.
    """
    atheris.Setup(sys.argv, testOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
