# -*- test-case-name: tests.benchmarks.test_machine -*-
"""
What the benchmark needs from the machine, and what it records about it.

A figure means nothing without the machine and the versions it was taken
with, and a fresh machine lacks the peers: L{ensureTools} installs the
missing ones from Debian packages (as root, with C{apt-get}), and
L{machineFacts} / L{versions} describe CPU, memory, kernel and every
program measured.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
from typing import Callable, Mapping, Sequence

#: Program the benchmark runs → the Debian package that provides it.
TOOLS: Mapping[str, str] = {
    "nginx": "nginx",
    "haproxy": "haproxy",
    "stunnel4": "stunnel4",
    "wrk": "wrk",
    "iperf3": "iperf3",
    "gcc": "gcc",
    "taskset": "util-linux",
    "curl": "curl",
}

#: Files the shim's compilation needs → their Debian package.
HEADERS: Mapping[str, str] = {"/usr/include/openssl/ssl.h": "libssl-dev"}


class ToolsMissing(Exception):
    """
    Programs the benchmark needs are missing and could not be installed.
    """


def missingPackages(
    which: Callable[[str], str | None] = shutil.which, exists: Callable[[str], bool] = os.path.exists
) -> list[str]:
    """
    The Debian packages to install, in a stable order, without repeats.
    """
    wanted = [package for program, package in TOOLS.items() if which(program) is None]
    wanted += [package for path, package in HEADERS.items() if not exists(path)]
    return sorted(set(wanted))


def ensureTools(log: Callable[[str], None] = print) -> None:
    """
    Install the missing packages with C{apt-get}.

    @raise ToolsMissing: some are missing and this process is not root, or
        C{apt-get} failed.
    """
    packages = missingPackages()
    if not packages:
        return
    if os.geteuid() != 0:
        raise ToolsMissing(
            "missing Debian packages: " + " ".join(packages) + " (run as root, or: sudo apt-get install "
            + " ".join(packages) + ")"
        )
    log("Installing " + " ".join(packages) + " with apt-get ...")
    environment = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", *packages]):
        done = subprocess.run(command, env=environment, capture_output=True, text=True)
        if done.returncode != 0:
            raise ToolsMissing(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    # Debian starts nginx and HAProxy as services when it installs them;
    # the benchmark runs its own, on its own ports, and does not need them.
    for service in ("nginx", "haproxy"):
        if service in packages:
            subprocess.run(["systemctl", "stop", service], capture_output=True)
    still = missingPackages()
    if still:
        raise ToolsMissing("still missing after apt-get: " + " ".join(still))


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def machineFacts() -> dict[str, object]:
    """
    CPU model, core count, memory, kernel and operating system.
    """
    cpuinfo = _read("/proc/cpuinfo")
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    memory = re.search(r"^MemTotal:\s*(\d+) kB", _read("/proc/meminfo"), re.M)
    osRelease = re.search(r'^PRETTY_NAME="?([^"\n]+)', _read("/etc/os-release"), re.M)
    return {
        "cpu": model.group(1).strip() if model else platform.processor() or "unknown",
        "cores": os.cpu_count(),
        "memory": f"{int(memory.group(1)) / 1024 / 1024:.1f} GiB" if memory else "unknown",
        "kernel": platform.release(),
        "os": osRelease.group(1) if osRelease else platform.platform(),
    }


def _firstLine(argv: Sequence[str], pattern: str) -> str:
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "not found"
    found = re.search(pattern, done.stdout + done.stderr)
    return found.group(1) if found else "unknown"


def versions(python: str = sys.executable) -> dict[str, str]:
    """
    The version of every program measured or used to measure.
    """
    import OpenSSL
    import twisted

    import ztnagw

    return {
        "ztnagw": getattr(ztnagw, "__version__", "unknown"),
        "python": f"{platform.python_implementation()} {platform.python_version()} ({python})",
        "twisted": twisted.__version__,
        "pyOpenSSL": OpenSSL.__version__,
        "OpenSSL (ztnagw)": OpenSSL.SSL.SSLeay_version(OpenSSL.SSL.SSLEAY_VERSION).decode(),
        "OpenSSL (system: peers, wrk)": _firstLine(["openssl", "version"], r"OpenSSL (\S+)"),
        "nginx": _firstLine(["nginx", "-v"], r"nginx/(\S+)"),
        "haproxy": _firstLine(["haproxy", "-v"], r"version (\S+)"),
        "stunnel": _firstLine(["stunnel4", "-version"], r"stunnel (\S+)"),
        "wrk": _firstLine(["wrk", "-v"], r"wrk (\S+)"),
        "iperf3": _firstLine(["iperf3", "-v"], r"iperf (\S+)"),
    }
