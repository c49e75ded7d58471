# -*- test-case-name: tests.test_workers_privileges -*-
"""
Doing the start-up work as the user the gateway will run as.

C{twistd --uid U --gid G ztnagw} starts as root so that VIPs can listen on
ports below 1024, and drops to U:G right after binding
(C{privilegedStartService}).  But the start-up work before it (reading the
configuration and certificates, creating the EMS CA, the registry and
generated certificates in the state directory: L{ztnagw.startup}) would
run as root too, and leave files in the state directory that the gateway,
once U, can no longer write (the registry) — a daemon that starts and then
fails on its first enrollment.

So L{startupIdentity} runs that work with the I{effective} user, group and
supplementary groups of U:G, exactly those twistd switches to: every file
the gateway creates belongs to U from the first start, and a file U cannot
read stops the start with the reason, instead of working only until the
first restart without root.  The real user stays root, so the identity is
restored afterwards for binding.
"""

from __future__ import annotations

import os
import pwd
from contextlib import contextmanager
from typing import Any, Iterator

__all__ = ["startupIdentity", "twistdIdentity"]


def twistdIdentity(options: Any) -> tuple[int | None, int | None]:
    """
    The user and group twistd will switch to after C{privilegedStartService}
    (its C{--uid}/C{--gid}, by name or number), found in the plugin
    options' parent; C{(None, None)} when it keeps its identity.

    @param options: the plugin's options (their C{parent} is twistd's).
    """
    parent = getattr(options, "parent", None)
    if parent is None:
        return None, None
    try:
        uid, gid = parent["uid"], parent["gid"]
    except KeyError:
        return None, None
    if uid is not None and gid is None:
        gid = pwd.getpwuid(uid).pw_gid
    return uid, gid


def _groupsOf(uid: int, gid: int) -> list[int]:
    # The groups initgroups(3) gives the user, as twistd's switchUID does.
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        return [gid]
    return os.getgrouplist(name, gid)


@contextmanager
def startupIdentity(uid: int | None, gid: int | None, system: Any = os) -> Iterator[None]:
    """
    Run the block as C{uid}:C{gid} (effective ids and supplementary
    groups) when this process is root and is to become them; otherwise
    change nothing.

    @param uid: the user twistd will switch to, or C{None}.
    @param gid: its group, or C{None}.
    @param system: where C{geteuid}, C{seteuid}, ... come from (L{os};
        tests give a fake).
    """
    if (uid is None and gid is None) or system.geteuid() != 0:
        yield
        return
    savedGid = system.getegid()
    savedGroups = system.getgroups()
    # Order matters: groups while still root, the user last; and back in
    # reverse, the user first (only root may change groups).
    if gid is not None:
        system.setgroups(_groupsOf(uid, gid) if uid is not None else [gid])
        system.setegid(gid)
    if uid is not None:
        system.seteuid(uid)
    try:
        yield
    finally:
        if uid is not None:
            system.seteuid(0)
        if gid is not None:
            system.setegid(savedGid)
            system.setgroups(savedGroups)
