"""
Run a program with the kernel's memory-deny-write-execute policy
(C{PR_SET_MDWE}, Linux 6.3+), which is what systemd's
C{MemoryDenyWriteExecute=yes} enforces (there with a seccomp filter): no
mapping may be both writable and executable, nor become executable later.

    python -m tests.posture.mdwe PROGRAM ARGUMENTS...

The policy is inherited across C{fork} and kept across C{execve}, so the
program and its children run under it.  C{--check} instead reports whether
a writable and executable mapping is refused in this process once the
policy is set (it proves the policy is really enforced here).
"""

from __future__ import annotations

import ctypes
import mmap
import os
import sys

PR_SET_MDWE = 65
PR_GET_MDWE = 66
PR_MDWE_REFUSE_EXEC_GAIN = 1


def enable() -> None:
    """
    Set the policy on this process.

    @raise OSError: the kernel does not support it.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl(PR_SET_MDWE): {os.strerror(errno)}")


def writableExecutableRefused() -> bool:
    """
    Whether a writable and executable anonymous mapping is refused.
    """
    try:
        mapping = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    except PermissionError:
        return True
    mapping.close()
    return False


def main() -> None:
    """
    Set the policy, then run the program (or check the policy).
    """
    enable()
    if sys.argv[1:] == ["--check"]:
        print("refused" if writableExecutableRefused() else "allowed")
        return
    os.execv(sys.argv[1], sys.argv[1:])


if __name__ == "__main__":
    main()
