# -*- test-case-name: tests.ems.test_cli -*-
"""
C{ztnagw ems}: administer the EMS role's certificate authority.

C{ztnagw ems init} creates the CA of an C{fctems} entry before the gateway
first starts (the daemon would create it too, but an operator usually wants
to see and record the fingerprint first), rotates it (C{--rotate}) and
retires the replaced one once devices have enrolled again
(C{--retire-previous}).  See C{docs/ems.md}.

The private key is never printed: only the subject, the SHA-256
fingerprint and the file paths.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from functools import partial
from typing import TYPE_CHECKING, Callable, TextIO

from ztnagw.cli._common import (
    CommandFailed,
    addRegistryOptions,
    loadConfiguration,
    runCommand,
    selectEms,
)
from ztnagw.ems.ca import (
    AuthorityFiles,
    CertificateAuthorityError,
    EmsCertificateAuthority,
    authorityFiles,
    createCertificateAuthority,
    ensureCertificateAuthority,
    hasCertificateAuthority,
    loadCertificateAuthority,
    retirePreviousCertificateAuthority,
    rotateCertificateAuthority,
    storeCertificateAuthority,
)
from ztnagw.ems.keys import fingerprint

if TYPE_CHECKING:  # pragma: no cover
    from ztnagw.config.model import Config, EmsConnector


def addCommands(subparsers: argparse._SubParsersAction) -> None:
    """
    Register C{ztnagw ems} and its subcommands.
    """
    ems = subparsers.add_parser(
        "ems",
        help="the EMS role: its certificate authority",
        description="Administer the EMS role of the gateway.",
    )
    commands = ems.add_subparsers(title="commands", metavar="COMMAND", required=True)
    init = commands.add_parser(
        "init",
        help="create (or rotate) the EMS certificate authority",
        description="Create the certificate authority of an fctems entry in the "
        "state directory, or rotate it.  An existing CA is never overwritten "
        "without --rotate.",
    )
    addRegistryOptions(init)
    init.add_argument(
        "--all",
        action="store_true",
        help="every enabled fctems entry; entries that already have a CA are "
        "left as they are",
    )
    action = init.add_mutually_exclusive_group()
    action.add_argument(
        "--rotate",
        action="store_true",
        help="replace the existing CA; the replaced one stays trusted until "
        "--retire-previous",
    )
    action.add_argument(
        "--retire-previous",
        action="store_true",
        help="stop trusting the CA replaced by the last rotation",
    )
    init.set_defaults(func=partial(runCommand, initCommand))


def initCommand(
    arguments: argparse.Namespace,
    loadConfig: Callable[[argparse.Namespace], "Config"] = loadConfiguration,
    out: TextIO | None = None,
    now: datetime.datetime | None = None,
) -> int:
    """
    The body of C{ztnagw ems init}.

    @param arguments: the parsed command line.
    @param loadConfig: loads the configuration C{arguments} name.
    @param out: where the report goes; standard output by default.
    @param now: the current time; the clock by default.
    @return: the exit status.
    @raise CommandFailed: the configuration, the chosen entry or the CA
        does not allow what was asked; the message says why.
    """
    if out is None:
        out = sys.stdout
    config = loadConfig(arguments)
    stateDir = config.systemGlobal.stateDir
    hostname = config.systemGlobal.hostname or ""
    rotate = getattr(arguments, "rotate", False)
    retire = getattr(arguments, "retire_previous", False)
    try:
        if getattr(arguments, "all", False):
            if getattr(arguments, "ems", None) is not None:
                raise CommandFailed("choose either --ems ID or --all, not both")
            if rotate or retire:
                raise CommandFailed(
                    "--rotate and --retire-previous work on one EMS at a time; "
                    "choose it with --ems ID"
                )
            return _initAll(config, stateDir, hostname, out, now)
        ems = selectEms(config, getattr(arguments, "ems", None))
        if ems.caCertificate is not None:
            raise CommandFailed(
                f"EMS {ems.id} uses the CA {ems.caCertificate!r} from 'config vpn "
                f"certificate local' (set ca-certificate); ztnagw neither creates "
                f"nor rotates it"
            )
        if rotate:
            return _rotate(ems, stateDir, hostname, out, now)
        if retire:
            return _retire(ems, stateDir, out)
        return _create(ems, stateDir, hostname, out, now)
    except CertificateAuthorityError as e:
        raise CommandFailed(str(e)) from None
    except OSError as e:
        where = e.filename or stateDir
        raise CommandFailed(f"{where}: {e.strerror or e}") from None


def _describe(ems: "EmsConnector") -> str:
    if ems.serialNumber:
        return f"EMS {ems.id} ({ems.serialNumber})"
    return f"EMS {ems.id}"


def _printAuthority(
    ca: EmsCertificateAuthority, files: AuthorityFiles, out: TextIO
) -> None:
    validUntil = ca.certificate.not_valid_after_utc
    print(f"  subject:      {ca.subject}", file=out)
    print(f"  SHA-256:      {ca.fingerprint}", file=out)
    print(f"  valid until:  {validUntil:%Y-%m-%d} UTC", file=out)
    print(f"  certificate:  {files.certificate}", file=out)
    # The path only: the key itself is never printed.
    print(f"  private key:  {files.key} (mode 0600)", file=out)


def _create(
    ems: "EmsConnector",
    stateDir: str,
    hostname: str,
    out: TextIO,
    now: datetime.datetime | None,
) -> int:
    files = authorityFiles(stateDir, ems.id)
    if hasCertificateAuthority(stateDir, ems.id):
        try:
            loaded = loadCertificateAuthority(stateDir, ems.id)
        except CertificateAuthorityError:
            existing = ""
        else:
            existing = f" (SHA-256 {loaded.fingerprint})"
        raise CommandFailed(
            f"{_describe(ems)} already has a certificate authority in "
            f"{files.directory}{existing}; it is never overwritten.  To replace "
            f"it, run: ztnagw ems init --ems {ems.id} --rotate"
        )
    ca = storeCertificateAuthority(
        createCertificateAuthority(ems.serialNumber or "", hostname, now),
        stateDir,
        ems.id,
    )
    print(f"{_describe(ems)}: created the certificate authority", file=out)
    _printAuthority(ca, files, out)
    return 0


def _initAll(
    config: "Config",
    stateDir: str,
    hostname: str,
    out: TextIO,
    now: datetime.datetime | None,
) -> int:
    enabled = [ems for _, ems in sorted(config.emsConnectors.items()) if ems.status]
    if not enabled:
        raise CommandFailed(
            "no enabled 'config endpoint-control fctems' entry in the " "configuration"
        )
    for ems in enabled:
        if ems.caCertificate is not None:
            print(
                f"{_describe(ems)}: uses ca-certificate {ems.caCertificate!r} "
                f"from 'config vpn certificate local'; nothing to create",
                file=out,
            )
            continue
        existed = hasCertificateAuthority(stateDir, ems.id)
        ca = ensureCertificateAuthority(stateDir, ems, hostname, now)
        if existed:
            print(
                f"{_describe(ems)}: already has a certificate authority; kept", file=out
            )
        else:
            print(f"{_describe(ems)}: created the certificate authority", file=out)
        _printAuthority(ca, authorityFiles(stateDir, ems.id), out)
    return 0


def _rotate(
    ems: "EmsConnector",
    stateDir: str,
    hostname: str,
    out: TextIO,
    now: datetime.datetime | None,
) -> int:
    ca = rotateCertificateAuthority(
        stateDir, ems.id, ems.serialNumber or "", hostname, now
    )
    files = authorityFiles(stateDir, ems.id)
    print(
        f"{_describe(ems)}: rotated the certificate authority; the new one:", file=out
    )
    _printAuthority(ca, files, out)
    print(
        f"The previous CA (SHA-256 {fingerprint(ca.previous[0])}) is kept in "
        f"{files.previousDirectory} and still trusted.\n"
        f"Restart the gateway, let every device enroll again, then run:\n"
        f"  ztnagw ems init --ems {ems.id} --retire-previous",
        file=out,
    )
    return 0


def _retire(ems: "EmsConnector", stateDir: str, out: TextIO) -> int:
    retired = retirePreviousCertificateAuthority(stateDir, ems.id)
    print(
        f"{_describe(ems)}: retired the previous certificate authority "
        f"{retired.subject.rfc4514_string()} (SHA-256 {fingerprint(retired)}).\n"
        f"Restart the gateway: devices with certificates it issued are then "
        f"refused.",
        file=out,
    )
    return 0
