# -*- test-case-name: tests.ems.test_token_cli -*-
"""
C{ztnagw token}: the enrollment tokens devices enroll with.

C{token create} makes a token and prints it once, with the command its
user runs to enroll (the EMS URL and the pin of the EMS listener's key),
C{token list} shows every token without a secret (there is none to show:
only hashes are stored), C{token show} one token and the devices it
enrolled, C{token revoke} stops a token from enrolling anything more.  See
C{docs/ems.md}, "Enrollment tokens".

Tokens live in the registry of the chosen C{fctems} entry; the commands
open it directly (they may block, like every admin command).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from typing import IO, TYPE_CHECKING, Any, Callable

from ztnagw.cli._common import CommandFailed, addRegistryOptions, openRegistry, runCommand
from ztnagw.ems.ca import authorityFiles
from ztnagw.ems.listener import emsUrl, readListenerPin
from ztnagw.ems.tokens import (
    ACTIVE,
    EnrollmentToken,
    TokenError,
    createToken,
    findToken,
    formatDuration,
    listTokens,
    parseDuration,
    revokeToken,
    tokenToJson,
    tokenUses,
)
from ztnagw.registry.interfaces import RegistryUnavailable
from ztnagw.registry.record import isUid
from ztnagw.registry.validation import tagNameProblem

if TYPE_CHECKING:  # pragma: no cover
    from ztnagw.config.model import EmsConnector
    from ztnagw.registry.interfaces import IEndpointStore


def _tag(text: str) -> str:
    problem = tagNameProblem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return text


def _uid(text: str) -> str:
    uid = text.strip().upper()
    if not isUid(uid):
        raise argparse.ArgumentTypeError(f"{text!r} is not a FortiClient UID (32 hex digits)")
    return uid


def _uses(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of enrollments") from None
    if value < 1:
        raise argparse.ArgumentTypeError("a token allows at least one enrollment")
    return value


def _duration(text: str) -> float | None:
    try:
        return parseDuration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _when(moment: float | None, now: float) -> str:
    if moment is None:
        return "never"
    stamp = datetime.datetime.fromtimestamp(moment, datetime.timezone.utc)
    delta = moment - now
    relative = f"in {formatDuration(delta)}" if delta > 0 else f"{formatDuration(-delta)} ago"
    return f"{stamp:%Y-%m-%d %H:%M} UTC ({relative})"


class TokenCommands:
    """
    The bodies of the C{ztnagw token} commands, over one registry.
    """

    def __init__(
        self,
        store: "IEndpointStore",
        ems: "EmsConnector",
        stateDir: str,
        out: IO[str],
        clock: Callable[[], float] = time.time,
    ) -> None:
        """
        @param store: the EMS's registry.
        @param ems: the C{fctems} entry.
        @param stateDir: the state directory (where the listener's
            certificate, and so its pin, is).
        @param out: where the output goes.
        @param clock: the current POSIX time.
        """
        self._store = store
        self._ems = ems
        self._stateDir = stateDir
        self._out = out
        self._clock = clock

    def _print(self, line: str = "") -> None:
        self._out.write(line + "\n")

    def _enrollHint(self) -> dict[str, Any]:
        """
        How a device reaches this EMS: its URL, and the pin of the listener
        key (once the gateway has made it) or the CA file.
        """
        server = self._ems.server or "127.0.0.1"
        pin = readListenerPin(self._stateDir, self._ems.id)
        caFile = authorityFiles(self._stateDir, self._ems.id).certificate
        return {
            "ems": emsUrl(server, self._ems.httpsPort),
            "pin": pin,
            "caFile": caFile if os.path.exists(caFile) else None,
        }

    def create(
        self,
        tags: list[str],
        uses: int,
        lifetime: float | None,
        user: str | None,
        uid: str | None,
        comment: str | None,
        asJson: bool = False,
    ) -> int:
        """
        C{token create}: make a token and print it once.
        """
        now = self._clock()
        try:
            with self._store.transaction() as transaction:
                token, text = createToken(
                    transaction.cursor,
                    now,
                    tags=tags,
                    uses=uses,
                    lifetime=lifetime,
                    user=user,
                    uid=uid,
                    comment=comment,
                )
        except TokenError as e:
            raise CommandFailed(str(e))
        hint = self._enrollHint()
        if asJson:
            result = tokenToJson(token, now)
            result["token"] = text
            result["enroll"] = hint
            self._print(json.dumps(result, indent=2))
            return 0
        self._print(
            f"Enrollment token for EMS {self._ems.id} ({self._ems.serialNumber}); it is "
            "shown once and not stored:"
        )
        self._print()
        self._print(f"    {text}")
        self._print()
        self._describe(token, now)
        self._print()
        if hint["pin"] is not None:
            verify = f"--pin {hint['pin']}"
        elif hint["caFile"] is not None:
            verify = f"--ca-file {hint['caFile']}"
            self._print(
                "The EMS listener has no certificate yet (the gateway makes it at its "
                "first start; then this command prints its pin).  Until then, give "
                "the device a copy of the CA certificate:"
            )
        else:
            verify = "--pin <the pin the gateway logs at start>"
        self._print("Enroll a device with:")
        self._print()
        self._print(f"    ztnagw-forward enroll --ems {hint['ems']} {verify} --token {text}")
        return 0

    def _describe(self, token: EnrollmentToken, now: float) -> None:
        rows = [
            ("id", token.id),
            ("status", token.status(now)),
            ("uses", f"{token.usesCount} of {token.usesAllowed}"),
            ("expires", _when(token.expiresAt, now)),
            ("tags", ", ".join(sorted(token.tags)) or "-"),
            ("user", token.user or "-"),
            ("uid", token.uid or "-"),
            ("created", _when(token.createdAt, now)),
        ]
        if token.revokedAt is not None:
            rows.append(("revoked", _when(token.revokedAt, now)))
        if token.comment:
            rows.append(("comment", token.comment))
        for name, value in rows:
            self._print(f"  {name + ':':<10} {value}")

    def list(self, showAll: bool = False, asJson: bool = False) -> int:
        """
        C{token list}: every usable token (every token with C{--all}),
        never a secret.
        """
        now = self._clock()
        with self._store.transaction() as transaction:
            tokens = listTokens(transaction.cursor)
        if not showAll:
            tokens = [t for t in tokens if t.status(now) == ACTIVE]
        if asJson:
            self._print(json.dumps([tokenToJson(t, now) for t in tokens], indent=2))
            return 0
        if not tokens:
            self._print("No tokens." if showAll else "No usable tokens (--all shows the others).")
            return 0
        rows = [["ID", "STATUS", "USES", "EXPIRES", "TAGS", "USER", "UID", "COMMENT"]]
        for token in tokens:
            expires = (
                "never"
                if token.expiresAt is None
                else datetime.datetime.fromtimestamp(token.expiresAt, datetime.timezone.utc).strftime(
                    "%Y-%m-%d %H:%M"
                )
            )
            rows.append(
                [
                    token.id,
                    token.status(now),
                    f"{token.usesCount}/{token.usesAllowed}",
                    expires,
                    ",".join(sorted(token.tags)) or "-",
                    token.user or "-",
                    token.uid or "-",
                    token.comment or "",
                ]
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            self._print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
        return 0

    def show(self, tokenId: str, asJson: bool = False) -> int:
        """
        C{token show}: one token and the devices it enrolled.
        """
        now = self._clock()
        try:
            with self._store.transaction() as transaction:
                token = findToken(transaction.cursor, tokenId)
                uses = tokenUses(transaction.cursor, token.id)
        except TokenError as e:
            raise CommandFailed(str(e))
        if asJson:
            result = tokenToJson(token, now)
            result["enrolled"] = [
                {"uid": uid, "certSerial": serial, "at": at, "sourceIp": source}
                for uid, serial, at, source in uses
            ]
            self._print(json.dumps(result, indent=2))
            return 0
        self._describe(token, now)
        self._print(f"  {'enrolled:':<10} {len(uses)} enrollment(s)")
        for uid, serial, at, source in uses:
            self._print(f"    {uid}  serial {serial}  {_when(at, now)}  from {source or '?'}")
        return 0

    def revoke(self, tokenId: str) -> int:
        """
        C{token revoke}: the token enrolls nothing more.
        """
        try:
            with self._store.transaction() as transaction:
                token, revoked = revokeToken(transaction.cursor, tokenId, self._clock())
        except TokenError as e:
            raise CommandFailed(str(e))
        if revoked:
            self._print(
                f"Revoked token {token.id}; the {token.usesCount} device(s) it enrolled "
                "keep their certificates (ztnagw endpoint revoke UID revokes one)."
            )
        else:
            self._print(f"Token {token.id} was already revoked.")
        return 0


def _withCommands(body: Callable[[TokenCommands, argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(arguments: argparse.Namespace) -> int:
        store, ems, config = openRegistry(arguments)
        try:
            commands = TokenCommands(store, ems, config.systemGlobal.stateDir, sys.stdout)
            return body(commands, arguments)
        except RegistryUnavailable as e:
            raise CommandFailed(f"the registry failed: {e}")
        finally:
            store.close()

    return lambda arguments: runCommand(run, arguments)


def addCommands(subparsers: argparse._SubParsersAction) -> None:
    """
    Register C{ztnagw token} and its subcommands.
    """
    token = subparsers.add_parser(
        "token",
        help="enrollment tokens: create, list, show, revoke",
        description="Enrollment tokens let devices enroll with an fctems entry's EMS.",
    )
    commands = token.add_subparsers(title="commands", metavar="COMMAND", required=True)

    create = commands.add_parser(
        "create",
        help="make a token and print it once",
        description="Make an enrollment token and print it, with the command that "
        "enrolls a device.  The token is shown once: only its hash is stored.",
    )
    create.add_argument(
        "--tag", metavar="TAG", action="append", default=[], type=_tag,
        help="tag for the devices it enrolls (repeatable); policies see EMS<id>_ZTNA_<TAG>",
    )
    create.add_argument(
        "--uses", metavar="N", type=_uses, default=1,
        help="how many devices it may enroll (default 1)",
    )
    create.add_argument(
        "--expires", metavar="DURATION", type=_duration, default=24 * 3600.0,
        help="how long it works: 30m, 24h, 7d, 1d12h... or never (default 24h)",
    )
    create.add_argument("--user", metavar="NAME", help="the user recorded for the devices it enrolls")
    create.add_argument(
        "--uid", metavar="UID", type=_uid,
        help="enroll only this device: to re-enroll a known device that lost its "
        "certificate, or to give a new one this UID (one use)",
    )
    create.add_argument("--comment", metavar="TEXT", help="a note shown by token list")
    create.add_argument("--json", action="store_true", help="print a JSON object")
    addRegistryOptions(create)
    create.set_defaults(
        func=_withCommands(
            lambda c, a: c.create(a.tag, a.uses, a.expires, a.user, a.uid, a.comment, a.json)
        )
    )

    listing = commands.add_parser(
        "list", help="list tokens (never a secret)",
        description="List the usable tokens (with --all, also the used, expired and revoked ones).",
    )
    listing.add_argument("--all", action="store_true", help="also used, expired and revoked tokens")
    listing.add_argument("--json", action="store_true", help="print a JSON array")
    addRegistryOptions(listing)
    listing.set_defaults(func=_withCommands(lambda c, a: c.list(a.all, a.json)))

    show = commands.add_parser(
        "show", help="show a token and the devices it enrolled",
        description="Show a token and the devices it enrolled.",
    )
    show.add_argument("id", metavar="ID", help="the token id (as token list shows it)")
    show.add_argument("--json", action="store_true", help="print a JSON object")
    addRegistryOptions(show)
    show.set_defaults(func=_withCommands(lambda c, a: c.show(a.id, a.json)))

    revoke = commands.add_parser(
        "revoke", help="stop a token from enrolling devices",
        description="Revoke a token: it enrolls nothing more.  Devices it enrolled keep "
        "their certificates.",
    )
    revoke.add_argument("id", metavar="ID", help="the token id (as token list shows it)")
    addRegistryOptions(revoke)
    revoke.set_defaults(func=_withCommands(lambda c, a: c.revoke(a.id)))
