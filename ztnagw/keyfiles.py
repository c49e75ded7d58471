# -*- test-case-name: tests.test_keyfiles -*-
"""
Private key files: written so that no other user can ever read them, and
refused when someone else can.

Keys are created with mode 0600 from the first byte (C{os.open} with the
mode, never C{chmod} after writing, which would leave a window) and
replaced atomically (write a temporary file in the same directory, fsync,
rename), so a crash never leaves a half-written key.  Every part of ztnagw
that writes a key (EMS CA, gateway certificates, the forwarder's device
profile) goes through L{writePrivateFile}; every part that loads one checks
it with L{privateFileProblem}.
"""

from __future__ import annotations

import os
import stat


def writePrivateFile(path: str, data: bytes) -> None:
    """
    Atomically write C{data} to C{path} with mode 0600.

    Missing parent directories are created with mode 0700.

    @raise OSError: the file cannot be written; nothing is left behind.
    """
    _writeAtomically(path, data, 0o600)


def writePublicFile(path: str, data: bytes) -> None:
    """
    Atomically write a file that may be world-readable (a certificate).
    """
    _writeAtomically(path, data, 0o644)


def _writeAtomically(path: str, data: bytes, mode: int) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    temporary = os.path.join(
        directory, f".{os.path.basename(path)}.{os.getpid()}.tmp"
    )
    # The mode is given at creation: a chmod afterwards would leave a window
    # in which the secret is readable.
    fd = os.open(
        temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode
    )
    try:
        # The umask may have narrowed the mode (a certificate must stay
        # readable by the unprivileged processes that verify with it).
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
    _fsyncDirectory(directory)


def _fsyncDirectory(directory: str) -> None:
    # The rename is durable only once the directory entry is on disk.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def privateFileProblem(path: str) -> str | None:
    """
    Why C{path} must not be trusted to hold a secret, or C{None} if it is
    fine.

    A secret file must be a regular file readable by no one but its owner
    (no group or other permission bits at all).

    @raise OSError: the file cannot be examined (missing, no permission).
    """
    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):
        return f"{path} is not a regular file"
    loose = info.st_mode & 0o077
    if loose:
        return (
            f"{path} is accessible by other users (mode "
            f"{stat.S_IMODE(info.st_mode):04o}); run: chmod 600 {path}"
        )
    return None
