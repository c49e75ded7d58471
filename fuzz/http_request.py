"""
Coverage-guided fuzzing of a VIP's HTTP front end (the real server
protocol, the access-proxy and tunnel handlers) with atheris.

    pip install -e '.[fuzz]'
    python fuzz/http_request.py -dict=fuzz/http.dict -max_total_time=60

Each input is sent on a new connection, cut into pieces; the run stops at
the first input that gets a status other than a refusal, a denial or a 502,
leaves the connection open once every timeout has passed, makes a
connection attempt the configuration does not allow, or makes the gateway
log a failure.  Findings become regression tests in C{tests/fuzz/}.
"""

from __future__ import annotations

import sys

import atheris

import _harness  # noqa: F401  (puts the repository on sys.path)

with atheris.instrument_imports(include=["ztnagw"]):
    from tests.fuzz.frontend import ALLOWED_STATUSES, FrontEnd, allowedDestination, feed


def testOneInput(data: bytes) -> None:
    """
    Send one input; raise on any broken property.
    """
    cuts, rest = _harness.cutsAndRest(data)
    frontEnd = FrontEnd(withCertificate=bool(data[:1]) and data[0] & 0x80 == 0)
    statuses, transport, failures = feed(frontEnd, rest, cuts, False)
    if failures.events:
        raise AssertionError(failures.describe())
    if not set(statuses) <= ALLOWED_STATUSES:
        raise AssertionError(f"statuses {statuses} for {rest[:200]!r}")
    if not transport.disconnecting:
        raise AssertionError(f"connection left open for {rest[:200]!r}")
    for host, port in frontEnd.attempts:
        if not allowedDestination(host, port):
            raise AssertionError(f"connection to {host}:{port} for {rest[:200]!r}")


def main() -> None:
    """
    Run the fuzzer with libFuzzer's command line.
    """
    atheris.Setup(sys.argv, testOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
