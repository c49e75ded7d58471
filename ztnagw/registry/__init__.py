# -*- test-case-name: tests.registry.test_open -*-
"""
The endpoint registry: what the gateway knows about enrolled devices.

Each C{config endpoint-control fctems} entry has its own registry, named by
its C{registry} option (a URL).  L{openStore} is the one place that turns
that URL into a store, so that the daemon and the admin command always agree
on which file holds a given EMS's devices.
"""

from __future__ import annotations

import os

from ztnagw.registry.interfaces import IEndpointStore, RegistryUnavailable

#: The registry of an fctems entry that does not set C{registry}.
DEFAULT_REGISTRY = "sqlite:"

#: File name of the embedded registry inside C{<state-dir>/ems<id>/}.
SQLITE_FILE_NAME = "registry.sqlite"

_SUPPORTED = (
    "supported: 'sqlite:' (the embedded registry in the state directory) "
    "and 'sqlite:PATH' (an SQLite file, relative to the state directory)"
)


def registryPath(url: str, stateDir: str, emsId: int) -> str:
    """
    The file that an embedded registry URL names.

    @param url: C{"sqlite:"} or C{"sqlite:<path>"}.
    @param stateDir: the gateway's state directory (C{state-dir}).
    @param emsId: the fctems entry's id.
    @raise RegistryUnavailable: C{url} is not an embedded registry URL.
    """
    scheme, colon, rest = url.partition(":")
    if not colon or scheme.lower() != "sqlite":
        # Only the scheme is repeated: the rest of a database URL may hold a
        # password.
        shown = f"{scheme}:" if colon else "a URL without a scheme"
        raise RegistryUnavailable(
            f"registry {shown} is not supported; {_SUPPORTED}"
        )
    if not rest:
        return os.path.join(stateDir, f"ems{emsId}", SQLITE_FILE_NAME)
    return os.path.join(stateDir, rest)


def openStore(url: str, stateDir: str, emsId: int) -> IEndpointStore:
    """
    Open the registry of one EMS.

    @param url: the fctems entry's C{registry}: C{"sqlite:"} for
        C{<stateDir>/ems<emsId>/registry.sqlite}, C{"sqlite:<path>"} for
        another file (relative paths are taken from C{stateDir}).
    @param stateDir: the gateway's state directory.
    @param emsId: the fctems entry's id.
    @return: the open store; the caller closes it.
    @raise RegistryUnavailable: the URL names an unsupported kind of
        registry, or the store cannot be opened (permission, not a
        database, damaged, from a newer ztnagw); the message says which.
    """
    from ztnagw.registry.sqlite import SQLiteEndpointStore

    return SQLiteEndpointStore(registryPath(url, stateDir, emsId))
