"""
Running helper programs of the test suite (the registry writer, the admin
command) as separate processes, from the repository being tested.
"""

from __future__ import annotations

import os
import subprocess
import sys

import ztnagw

#: The directory holding the C{ztnagw} and C{tests} packages under test.
REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(ztnagw.__file__)))


def childEnvironment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """
    The environment for a child Python that must import this checkout's
    C{ztnagw} and C{tests} (not an installed copy).
    """
    environment = dict(os.environ)
    path = environment.get("PYTHONPATH")
    environment["PYTHONPATH"] = REPOSITORY + (os.pathsep + path if path else "")
    if extra:
        environment.update(extra)
    return environment


def startPython(*arguments: str, **kwargs: object) -> subprocess.Popen:
    """
    Start C{python arguments...} in the repository with pipes for its
    output.
    """
    return subprocess.Popen(
        [sys.executable, *arguments],
        cwd=REPOSITORY,
        env=childEnvironment(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,  # type: ignore[arg-type]
    )


def startWriter(path: str, *arguments: str) -> subprocess.Popen:
    """
    Start L{tests.registry.writer} on the registry at C{path} and wait
    until it says C{ready}.

    @raise AssertionError: the writer failed to start.
    """
    process = startPython("-m", "tests.registry.writer", path, *arguments)
    assert process.stdout is not None
    line = process.stdout.readline()
    if line.strip() != "ready":
        process.kill()
        _, errors = process.communicate(timeout=10)
        raise AssertionError(f"writer did not start: {line!r} {errors}")
    return process
