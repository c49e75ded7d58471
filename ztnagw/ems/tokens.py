# -*- test-case-name: tests.ems.test_tokens -*-
"""
Enrollment tokens: the proof that a device may enroll.

FortiClient EMS lets an administrator require "user verification" before a
device registers; in ztnagw, a device enrolls only with a token that an
administrator created (C{ztnagw token create}) and handed to its user.  A
token is printed once and never stored: the registry keeps its id, the
SHA-256 of its secret, and what it allows (how many enrollments, until
when, which tags and user the enrolled devices get, and, for a token made
to re-enroll a known device, its UID).

A token reads C{zt1.<id>.<secret>}: C{<id>} (12 hex digits) finds the
token's row, and C{<secret>} (32 random bytes, base64url) is hashed and
compared with the stored hash with C{hmac.compare_digest}.  A fast hash is
enough here, unlike for passwords: the secret has 256 bits of entropy, so
there is no dictionary to try and no way to search the hash's preimages,
however fast the hash; a slow hash would only cost the EMS CPU time per
enrollment attempt, which a token guesser could turn against it.

Tokens share the registry database with endpoint records
(L{ztnagw.registry.schema} migration 2), so that using a token and writing
the record it enrolls are one transaction: a crash can never leave one
without the other.  The functions here that take a C{cursor} run inside
such a transaction (L{ztnagw.registry.sqlite.StoreTransaction}); they block
on SQLite and belong in a thread or in the admin command.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import sqlite3
from typing import Any, Iterable

from attrs import field, frozen

from ztnagw.registry.record import isUid
from ztnagw.registry.validation import tagNameProblem

__all__ = [
    "ACTIVE",
    "EXPIRED",
    "REVOKED",
    "USED",
    "EnrollmentToken",
    "TokenError",
    "TokenRefused",
    "createToken",
    "findToken",
    "formatDuration",
    "hashSecret",
    "listTokens",
    "newTokenText",
    "parseDuration",
    "parseToken",
    "recordUse",
    "revokeToken",
    "tokenToJson",
    "tokenUses",
    "verifyToken",
]

#: The first part of every token: the format's name and version.
PREFIX = "zt1"

_ID_BYTES = 6
_SECRET_BYTES = 32
_TOKEN = re.compile(
    rf"\A{PREFIX}\.([0-9a-f]{{{_ID_BYTES * 2}}})\.([A-Za-z0-9_-]{{43}})\Z"
)
_ID = re.compile(rf"\A[0-9a-f]{{{_ID_BYTES * 2}}}\Z")

#: The longest life a token may be given: a year.
MAX_LIFETIME = 366 * 24 * 3600.0

#: The most enrollments one token may allow.
MAX_USES = 100000

#: A token's states, as C{ztnagw token list} shows them.
ACTIVE = "active"
EXPIRED = "expired"
USED = "used"
REVOKED = "revoked"

_COLUMNS = (
    "id",
    "tags",
    "user",
    "uid",
    "usesAllowed",
    "usesCount",
    "createdAt",
    "expiresAt",
    "revokedAt",
    "lastUsedAt",
    "comment",
)
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM emsTokens"


class TokenError(ValueError):
    """
    A token cannot be created, found or revoked as asked; the message says
    why.
    """


class TokenRefused(Exception):
    """
    A presented token does not allow an enrollment.

    @ivar code: the stable error code the EMS API answers with:
        C{token-invalid} (malformed, unknown, or a wrong secret: the
        client is told nothing more), C{token-expired}, C{token-used},
        C{token-revoked} (said only to a client that proved it holds the
        secret).
    @ivar message: a sentence for the client.
    @ivar guess: whether the attempt counts against the client's address
        (anything but a genuine token that is no longer usable).
    """

    def __init__(self, code: str, message: str, guess: bool) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.guess = guess


@frozen
class EnrollmentToken:
    """
    A token as the registry holds it (never its secret).

    @ivar id: the token's id, the part of the token that is not secret.
    @ivar tags: tags every device enrolled with it gets (stored on the
        record).
    @ivar user: the user name recorded for devices enrolled with it, if
        set (it then wins over what the device reports).
    @ivar uid: the one device it may enroll, when made to re-enroll a
        known device (C{--uid}).
    @ivar usesAllowed: how many enrollments it allows.
    @ivar usesCount: how many it was used for.
    @ivar createdAt: when it was made (POSIX seconds).
    @ivar expiresAt: when it stops working, or C{None} for never.
    @ivar revokedAt: when it was revoked, if it was.
    @ivar lastUsedAt: when it was last used, if it was.
    @ivar comment: the administrator's note.
    """

    id: str
    tags: frozenset[str] = field(converter=frozenset)
    user: str | None
    uid: str | None
    usesAllowed: int
    usesCount: int
    createdAt: float
    expiresAt: float | None
    revokedAt: float | None = None
    lastUsedAt: float | None = None
    comment: str | None = None

    def status(self, now: float) -> str:
        """
        L{ACTIVE}, L{REVOKED}, L{USED} or L{EXPIRED} at C{now}, the first
        that applies from the end.
        """
        if self.revokedAt is not None:
            return REVOKED
        if self.usesCount >= self.usesAllowed:
            return USED
        if self.expiresAt is not None and now >= self.expiresAt:
            return EXPIRED
        return ACTIVE


def hashSecret(secret: bytes) -> bytes:
    """
    What the registry keeps of a token's secret: its SHA-256.
    """
    return hashlib.sha256(secret).digest()


def newTokenText() -> tuple[str, bytes, str]:
    """
    Make a new token.

    @return: its id, its secret and the token as the user types it.
    """
    tokenId = secrets.token_hex(_ID_BYTES)
    secret = secrets.token_bytes(_SECRET_BYTES)
    text = f"{PREFIX}.{tokenId}.{base64.urlsafe_b64encode(secret).rstrip(b'=').decode('ascii')}"
    return tokenId, secret, text


def parseToken(text: str) -> tuple[str, bytes]:
    """
    Split a token into its id and secret.

    @raise TokenRefused: it is not a token (code C{token-invalid}).
    """
    match = _TOKEN.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise TokenRefused(
            "token-invalid",
            f"this is not an enrollment token (they read {PREFIX}.<id>.<secret>)",
            guess=True,
        )
    secret = base64.urlsafe_b64decode(match.group(2) + "=")
    if len(secret) != _SECRET_BYTES:
        raise TokenRefused("token-invalid", "the enrollment token is malformed", guess=True)
    return match.group(1), secret


# The cost of one comparison when the id is unknown: the same work as for a
# known one, so that timing does not tell ids apart.
_NO_HASH = hashSecret(b"")


def verifyToken(cursor: sqlite3.Cursor, text: str, now: float) -> EnrollmentToken:
    """
    Check a presented token inside an enrollment transaction.

    @param cursor: a cursor of the transaction (the token's row is read in
        it, so that a concurrent enrollment cannot use the same last use).
    @param now: the current POSIX time.
    @return: the usable token.
    @raise TokenRefused: it is malformed, unknown, has another secret,
        was revoked, is used up or has expired.
    """
    tokenId, secret = parseToken(text)
    row = cursor.execute(
        f"SELECT {', '.join(_COLUMNS)}, secretHash FROM emsTokens WHERE id = ?", (tokenId,)
    ).fetchone()
    stored = _NO_HASH if row is None else row[-1]
    matches = hmac.compare_digest(hashSecret(secret), stored)
    if row is None or not matches:
        raise TokenRefused(
            "token-invalid",
            "the enrollment token is not valid; check that it was copied whole",
            guess=True,
        )
    token = _fromRow(row[:-1])
    status = token.status(now)
    if status == REVOKED:
        raise TokenRefused("token-revoked", "the enrollment token was revoked", guess=False)
    if status == USED:
        raise TokenRefused(
            "token-used",
            f"the enrollment token was already used ({token.usesCount} of "
            f"{token.usesAllowed} enrollments); ask for a new one",
            guess=False,
        )
    if status == EXPIRED:
        raise TokenRefused(
            "token-expired", "the enrollment token has expired; ask for a new one", guess=False
        )
    return token


def recordUse(
    cursor: sqlite3.Cursor,
    token: EnrollmentToken,
    uid: str,
    certSerial: str,
    now: float,
    sourceIp: str | None,
) -> None:
    """
    Count one enrollment against C{token}, inside the transaction that
    writes the enrolled record.

    @raise TokenRefused: the token was used up meanwhile (the row's check
        constraint refuses the increment).
    """
    try:
        cursor.execute(
            "UPDATE emsTokens SET usesCount = usesCount + 1, lastUsedAt = ? WHERE id = ?",
            (float(now), token.id),
        )
    except sqlite3.IntegrityError:
        raise TokenRefused("token-used", "the enrollment token was already used", guess=False)
    cursor.execute(
        "INSERT INTO emsTokenUses (tokenId, uid, certSerial, usedAt, sourceIp) "
        "VALUES (?, ?, ?, ?, ?)",
        (token.id, uid, certSerial, float(now), sourceIp),
    )


def _fromRow(row: tuple) -> EnrollmentToken:
    values = dict(zip(_COLUMNS, row))
    values["tags"] = frozenset(json.loads(values["tags"]))
    return EnrollmentToken(**values)


def _checkTags(tags: Iterable[str]) -> frozenset[str]:
    checked = frozenset(tags)
    for tag in sorted(checked):
        problem = tagNameProblem(tag)
        if problem is not None:
            raise TokenError(problem)
    return checked


def createToken(
    cursor: sqlite3.Cursor,
    now: float,
    tags: Iterable[str] = (),
    uses: int = 1,
    lifetime: float | None = 24 * 3600.0,
    user: str | None = None,
    uid: str | None = None,
    comment: str | None = None,
) -> tuple[EnrollmentToken, str]:
    """
    Make a token and store it (its hash), inside a transaction.

    @param tags: tags for the devices it enrolls.
    @param uses: how many enrollments it allows (1 to L{MAX_USES}).
    @param lifetime: seconds until it expires, or C{None} for never.
    @param user: the user recorded for the devices it enrolls.
    @param uid: the only device it may enroll (re-enrollment of a known
        UID, or a UID chosen for a new one); it then allows one use.
    @return: the stored token and its text, which is shown once and kept
        nowhere.
    @raise TokenError: a value is not allowed.
    """
    checkedTags = _checkTags(tags)
    if isinstance(uses, bool) or not isinstance(uses, int) or not 1 <= uses <= MAX_USES:
        raise TokenError(f"a token allows 1 to {MAX_USES} enrollments, not {uses!r}")
    if uid is not None:
        if not isUid(uid):
            raise TokenError(f"{uid!r} is not a FortiClient UID (32 upper-case hex digits)")
        if uses != 1:
            raise TokenError("a token for one UID allows exactly one enrollment")
    if lifetime is not None and not 0 < lifetime <= MAX_LIFETIME:
        raise TokenError(
            f"a token lives between 1 second and {formatDuration(MAX_LIFETIME)}, "
            "or never expires"
        )
    if user is not None and (not user or len(user) > 255 or re.search("[\x00-\x1f\x7f]", user)):
        raise TokenError("the user name must be 1 to 255 printable characters")
    if comment is not None and (len(comment) > 255 or re.search("[\x00-\x1f\x7f]", comment)):
        raise TokenError("the comment must be at most 255 printable characters")
    while True:
        tokenId, secret, text = newTokenText()
        token = EnrollmentToken(
            id=tokenId,
            tags=checkedTags,
            user=user,
            uid=uid,
            usesAllowed=uses,
            usesCount=0,
            createdAt=float(now),
            expiresAt=None if lifetime is None else float(now) + lifetime,
            comment=comment,
        )
        try:
            cursor.execute(
                "INSERT INTO emsTokens (id, secretHash, tags, user, uid, usesAllowed, "
                "usesCount, createdAt, expiresAt, comment) "
                "VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, ?)",
                (
                    token.id,
                    hashSecret(secret),
                    json.dumps(sorted(token.tags)),
                    user,
                    uid,
                    uses,
                    token.createdAt,
                    token.expiresAt,
                    comment,
                ),
            )
        except sqlite3.IntegrityError:
            # 48 random bits: an id that is already taken is rare; draw again.
            if cursor.execute("SELECT 1 FROM emsTokens WHERE id = ?", (tokenId,)).fetchone():
                continue
            raise
        return token, text


def listTokens(cursor: sqlite3.Cursor) -> list[EnrollmentToken]:
    """
    Every token, oldest first.
    """
    rows = cursor.execute(f"{_SELECT} ORDER BY createdAt, id").fetchall()
    return [_fromRow(row) for row in rows]


def findToken(cursor: sqlite3.Cursor, tokenId: str) -> EnrollmentToken:
    """
    The token with id C{tokenId} (or the whole token text).

    @raise TokenError: no such token.
    """
    tokenId = _idOf(tokenId)
    row = cursor.execute(f"{_SELECT} WHERE id = ?", (tokenId,)).fetchone()
    if row is None:
        raise TokenError(f"no token with id {tokenId}")
    return _fromRow(row)


def _idOf(text: str) -> str:
    text = text.strip()
    if _ID.match(text):
        return text
    match = _TOKEN.match(text)
    if match is not None:
        return match.group(1)
    raise TokenError(
        f"{text!r} is not a token id ({_ID_BYTES * 2} hex digits, as 'ztnagw token "
        "list' shows)"
    )


def revokeToken(cursor: sqlite3.Cursor, tokenId: str, now: float) -> tuple[EnrollmentToken, bool]:
    """
    Revoke a token: it enrolls nothing more.  Devices it already enrolled
    are not affected (revoke them with C{ztnagw endpoint revoke}).

    @return: the token, and whether this call revoked it (C{False} if it
        already was).
    @raise TokenError: no such token.
    """
    token = findToken(cursor, tokenId)
    if token.revokedAt is not None:
        return token, False
    cursor.execute("UPDATE emsTokens SET revokedAt = ? WHERE id = ?", (float(now), token.id))
    return findToken(cursor, token.id), True


def tokenUses(cursor: sqlite3.Cursor, tokenId: str) -> list[tuple[str, str, float, str | None]]:
    """
    The enrollments a token was used for: (UID, certificate serial, time,
    source address), oldest first.
    """
    return [
        tuple(row)  # type: ignore[misc]
        for row in cursor.execute(
            "SELECT uid, certSerial, usedAt, sourceIp FROM emsTokenUses WHERE tokenId = ? "
            "ORDER BY usedAt, rowid",
            (_idOf(tokenId),),
        )
    ]


_DURATION = re.compile(r"([0-9]{1,6})([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parseDuration(text: str) -> float | None:
    """
    Read a duration as people write it: C{90s}, C{30m}, C{24h}, C{7d},
    C{2w}, or several run together (C{1d12h}); C{never} for no limit.

    @return: seconds, or C{None} for C{never}.
    @raise ValueError: anything else, or zero.
    """
    stripped = text.strip().lower()
    if stripped == "never":
        return None
    position = 0
    total = 0
    for match in _DURATION.finditer(stripped):
        if match.start() != position:
            break
        total += int(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if not stripped or position != len(stripped):
        raise ValueError(
            f"{text!r} is not a duration; write a number and a unit (s, m, h, d, "
            "w), such as 30m, 24h, 7d or 1d12h, or never"
        )
    if total == 0:
        raise ValueError(f"{text!r} is no time at all")
    return float(total)


def formatDuration(seconds: float) -> str:
    """
    Write a duration the way L{parseDuration} reads it, largest units
    first (C{1d12h}).
    """
    remaining = int(seconds)
    if remaining <= 0:
        return "0s"
    parts = []
    for unit in ("w", "d", "h", "m", "s"):
        size = _UNITS[unit]
        if remaining >= size:
            parts.append(f"{remaining // size}{unit}")
            remaining %= size
    return "".join(parts)


def tokenToJson(token: EnrollmentToken, now: float) -> dict[str, Any]:
    """
    A token as C{token list --json} shows it (never a secret: there is
    none to show).
    """
    return {
        "id": token.id,
        "status": token.status(now),
        "tags": sorted(token.tags),
        "user": token.user,
        "uid": token.uid,
        "usesAllowed": token.usesAllowed,
        "usesCount": token.usesCount,
        "createdAt": token.createdAt,
        "expiresAt": token.expiresAt,
        "revokedAt": token.revokedAt,
        "lastUsedAt": token.lastUsedAt,
        "comment": token.comment,
    }
