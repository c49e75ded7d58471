# -*- test-case-name: tests.benchmarks.test_wrk -*-
"""
wrk as the HTTPS load generator, made to present a client certificate.

wrk is the fastest Debian-packaged HTTP load generator, but it cannot
present a client certificate.  L{buildShim} compiles C{shim.c} (an
C{LD_PRELOAD} wrapper of C{SSL_new}/C{SSL_clear}) once per run; L{wrkCommand}
builds the command line and environment that load it; L{parseWrkOutput}
reads the exact figures that C{report.lua} prints (wrk's own summary is
rounded to three digits and mixes units).
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Sequence

from attrs import frozen

HERE = os.path.dirname(os.path.abspath(__file__))
SHIM_SOURCE = os.path.join(HERE, "shim.c")
REPORT_SCRIPT = os.path.join(HERE, "report.lua")
MARKER = "BENCHJSON "


class LoadGeneratorError(Exception):
    """
    The load generator did not produce a usable result (it failed, or its
    output did not hold the figures).
    """


@frozen
class WrkResult:
    """
    The figures of one wrk run.

    @ivar requests: completed requests.
    @ivar seconds: the run's duration.
    @ivar bytes: bytes read (heads and bodies).
    @ivar errors: C{connect}, C{read}, C{write}, C{status} (non-2xx/3xx) and
        C{timeout} counts.
    @ivar latencyUs: C{p50}, C{p90}, C{p99}, C{max} and C{mean} latency in
        microseconds.
    """

    requests: int
    seconds: float
    bytes: int
    errors: dict[str, int]
    latencyUs: dict[str, float]

    @property
    def requestsPerSecond(self) -> float:
        """
        Completed requests per second.
        """
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def failures(self) -> int:
        """
        Every request that failed: connection errors, timeouts and
        responses with a status other than 2xx/3xx.
        """
        return sum(self.errors.values())


def parseWrkOutput(output: str) -> WrkResult:
    """
    Read the line that C{report.lua} printed.

    @param output: wrk's standard output.
    @raise LoadGeneratorError: no such line, or it does not hold every
        figure.
    """
    for line in output.splitlines():
        if line.startswith(MARKER):
            try:
                data = json.loads(line[len(MARKER):])
                errors = {k: int(data["errors"][k]) for k in ("connect", "read", "write", "status", "timeout")}
                latency = {k: float(data["latencyUs"][k]) for k in ("p50", "p90", "p99", "max", "mean")}
                result = WrkResult(
                    requests=int(data["requests"]),
                    seconds=int(data["durationUs"]) / 1e6,
                    bytes=int(data["bytes"]),
                    errors=errors,
                    latencyUs=latency,
                )
            except (ValueError, KeyError, TypeError) as e:
                raise LoadGeneratorError(f"wrk's report line is malformed: {line!r} ({e})") from e
            if result.requests < 0 or result.seconds < 0 or result.bytes < 0:
                raise LoadGeneratorError(f"wrk's report line holds negative figures: {line!r}")
            return result
    raise LoadGeneratorError("wrk printed no report line; its output was:\n" + output[-2000:])


def buildShim(directory: str, compiler: str = "gcc") -> str:
    """
    Compile the client-certificate shim into C{directory}.

    @return: the path of the shared object.
    @raise LoadGeneratorError: the compiler failed.
    """
    target = os.path.join(directory, "client-cert-shim.so")
    command = [compiler, "-shared", "-fPIC", "-O2", "-Wall", "-o", target, SHIM_SOURCE, "-ldl", "-lssl", "-lcrypto"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise LoadGeneratorError(f"cannot compile {SHIM_SOURCE}:\n{done.stderr}")
    return target


@frozen
class WrkCommand:
    """
    A wrk invocation: its argument vector and extra environment.
    """

    argv: tuple[str, ...]
    environment: dict[str, str]


def wrkCommand(
    url: str,
    connections: int,
    seconds: float,
    shim: str | None,
    certificate: str | None,
    key: str | None,
    threads: int = 1,
    headers: Sequence[str] = (),
    timeoutSeconds: float = 5.0,
    wrk: str = "wrk",
) -> WrkCommand:
    """
    The command that loads C{url}.

    @param shim: the client-certificate shim; C{None} for no client
        certificate (plain HTTP, or a server that does not ask).
    @param headers: extra request header lines (C{"Connection: close"} makes
        every request a new connection).
    @raise ValueError: a shim without certificate and key, or figures that
        wrk cannot take.
    """
    if connections < threads or threads < 1:
        raise ValueError("wrk needs at least one connection per thread")
    if seconds < 1:
        raise ValueError("wrk runs for whole seconds, at least one")
    environment: dict[str, str] = {}
    if shim is not None:
        if certificate is None or key is None:
            raise ValueError("the client-certificate shim needs a certificate and a key")
        environment = {"LD_PRELOAD": shim, "BENCH_CLIENT_CERT": certificate, "BENCH_CLIENT_KEY": key}
    argv = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{int(round(seconds))}s",
        f"--timeout={int(max(1, round(timeoutSeconds)))}s",
        "-s",
        REPORT_SCRIPT,
    ]
    for header in headers:
        argv += ["-H", header]
    argv.append(url)
    return WrkCommand(argv=tuple(argv), environment=environment)
