"""
Tests for L{ztnagw.ems.tokens}: enrollment tokens in a real registry.
"""

from __future__ import annotations

import os

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from ztnagw.ems.tokens import (
    ACTIVE,
    EXPIRED,
    REVOKED,
    USED,
    TokenError,
    TokenRefused,
    createToken,
    findToken,
    formatDuration,
    hashSecret,
    listTokens,
    parseDuration,
    parseToken,
    recordUse,
    revokeToken,
    tokenUses,
    verifyToken,
)
from ztnagw.registry.sqlite import SQLiteEndpointStore

NOW = 1_800_000_000.0
UID = "9A016B5A6E914B42AD4168C066EB04CA"


class TokenStoreCase(SynchronousTestCase):
    """
    A registry in a temporary directory.
    """

    def setUp(self) -> None:
        self.path = os.path.join(os.path.abspath(self.mktemp()), "registry.sqlite")
        self.store = SQLiteEndpointStore(self.path)
        self.addCleanup(self.store.close)

    def create(self, **kwargs: object) -> tuple[object, str]:
        """
        Create a token at L{NOW}.
        """
        with self.store.transaction() as t:
            return createToken(t.cursor, NOW, **kwargs)  # type: ignore[arg-type]

    def verify(self, text: str, now: float = NOW) -> object:
        """
        Verify C{text} at C{now}.
        """
        with self.store.transaction() as t:
            return verifyToken(t.cursor, text, now)

    def find(self, tokenId: str) -> object:
        """
        The stored token C{tokenId}.
        """
        with self.store.transaction() as t:
            return findToken(t.cursor, tokenId)

    def use(self, text: str, now: float = NOW) -> None:
        """
        Verify and use C{text} once.
        """
        with self.store.transaction() as t:
            token = verifyToken(t.cursor, text, now)
            recordUse(t.cursor, token, UID, "01", now, "192.0.2.1")


class CreateTests(TokenStoreCase):
    """
    Creating tokens.
    """

    def test_shownOnceStoredHashed(self) -> None:
        """
        The token text has the format C{zt1.<id>.<secret>}; the registry
        holds the secret's SHA-256 and never the secret itself.
        """
        token, text = self.create(tags=["Lab"], uses=3, user="alice")
        prefix, tokenId, secret = text.split(".")
        self.assertEqual((prefix, tokenId), ("zt1", token.id))  # type: ignore[attr-defined]
        with open(self.path, "rb") as f:
            raw = f.read()
        self.assertNotIn(secret.encode("ascii"), raw)
        _, secretBytes = parseToken(text)
        with self.store.transaction() as t:
            (stored,) = t.cursor.execute("SELECT secretHash FROM emsTokens").fetchone()
        self.assertEqual(stored, hashSecret(secretBytes))
        self.assertEqual(token.tags, {"Lab"})  # type: ignore[attr-defined]
        self.assertEqual(token.status(NOW), ACTIVE)  # type: ignore[attr-defined]

    def test_distinct(self) -> None:
        """
        Tokens are random: two tokens never share an id or a secret.
        """
        texts = {self.create()[1] for _ in range(20)}
        self.assertEqual(len(texts), 20)
        self.assertEqual(len({t.split(".")[1] for t in texts}), 20)

    def test_refused(self) -> None:
        """
        Bad tags, use counts, UIDs, lifetimes and user names are refused.
        """
        for kwargs in (
            {"tags": ["has space"]},
            {"tags": ["all_registered_clients"]},
            {"uses": 0},
            {"uses": True},
            {"uid": "abc"},
            {"uid": UID, "uses": 2},
            {"lifetime": 0},
            {"lifetime": 400 * 86400.0},
            {"user": ""},
            {"user": "a\nb"},
        ):
            self.assertRaises(TokenError, self.create, **kwargs)
        with self.store.transaction() as t:
            self.assertEqual(listTokens(t.cursor), [])


class VerifyTests(TokenStoreCase):
    """
    What makes a presented token unusable, and what the client is told.
    """

    def test_valid(self) -> None:
        """
        A fresh token verifies.
        """
        token, text = self.create()
        self.assertEqual(self.verify(text).id, token.id)  # type: ignore[attr-defined]

    def test_wrongSecretSameAsUnknown(self) -> None:
        """
        A wrong secret, an unknown id and garbage all give
        C{token-invalid}, counted as a guess, with the same message.
        """
        token, text = self.create()
        prefix, tokenId, secret = text.split(".")
        wrong = f"{prefix}.{tokenId}.{'A' * 43}"
        unknown = f"{prefix}.{'0' * 12}.{secret}"
        messages = set()
        for candidate in (wrong, unknown):
            error = self.assertRaises(TokenRefused, self.verify, candidate)
            self.assertEqual((error.code, error.guess), ("token-invalid", True))
            messages.add(error.message)
        self.assertEqual(len(messages), 1)
        for garbage in ("", "zt1", "zt1.x.y", text + "x", text.upper()):
            error = self.assertRaises(TokenRefused, self.verify, garbage)
            self.assertEqual(error.code, "token-invalid")

    def test_reuse(self) -> None:
        """
        A single-use token works once; then C{token-used}, not a guess.
        """
        _, text = self.create()
        self.use(text)
        error = self.assertRaises(TokenRefused, self.verify, text)
        self.assertEqual((error.code, error.guess), ("token-used", False))

    def test_limitedUses(self) -> None:
        """
        A token for three enrollments allows three, records each, then stops.
        """
        token, text = self.create(uses=3)
        for _ in range(3):
            self.use(text)
        self.assertRaises(TokenRefused, self.verify, text)
        with self.store.transaction() as t:
            self.assertEqual(len(tokenUses(t.cursor, token.id)), 3)  # type: ignore[attr-defined]
            self.assertEqual(findToken(t.cursor, token.id).status(NOW), USED)  # type: ignore[attr-defined]

    def test_useCannotPassLimit(self) -> None:
        """
        Counting a use beyond the limit is refused by the registry itself
        (two enrollments racing for the last use cannot both commit).
        """
        _, text = self.create()
        with self.store.transaction() as t:
            token = verifyToken(t.cursor, text, NOW)
            recordUse(t.cursor, token, UID, "01", NOW, None)
            error = self.assertRaises(TokenRefused, recordUse, t.cursor, token, UID, "02", NOW, None)
        self.assertEqual(error.code, "token-used")

    def test_expiry(self) -> None:
        """
        A token works until its lifetime ends, not after.
        """
        _, text = self.create(lifetime=3600.0)
        self.verify(text, NOW + 3599)
        error = self.assertRaises(TokenRefused, self.verify, text, NOW + 3600)
        self.assertEqual(error.code, "token-expired")

    def test_never(self) -> None:
        """
        A token without a lifetime does not expire.
        """
        token, text = self.create(lifetime=None)
        self.assertIsNone(token.expiresAt)  # type: ignore[attr-defined]
        self.verify(text, NOW + 10 * 365 * 86400)

    def test_revoked(self) -> None:
        """
        A revoked token is refused; revoking twice says so.
        """
        token, text = self.create(uses=5)
        with self.store.transaction() as t:
            revoked, changed = revokeToken(t.cursor, token.id, NOW)  # type: ignore[attr-defined]
        self.assertTrue(changed)
        self.assertEqual(revoked.status(NOW), REVOKED)
        error = self.assertRaises(TokenRefused, self.verify, text)
        self.assertEqual(error.code, "token-revoked")
        with self.store.transaction() as t:
            self.assertFalse(revokeToken(t.cursor, text, NOW)[1])
            self.assertRaises(TokenError, revokeToken, t.cursor, "0" * 12, NOW)
            self.assertRaises(TokenError, findToken, t.cursor, "nonsense")

    def test_statusOrder(self) -> None:
        """
        Revoked wins over used, used over expired.
        """
        token, text = self.create(lifetime=10.0)
        self.use(text)
        self.assertEqual(self.find(token.id).status(NOW + 20), USED)  # type: ignore[attr-defined]
        with self.store.transaction() as t:
            revokeToken(t.cursor, token.id, NOW)  # type: ignore[attr-defined]
        self.assertEqual(self.find(token.id).status(NOW + 20), REVOKED)  # type: ignore[attr-defined]
        _, other = self.create(lifetime=10.0)
        self.assertEqual(
            self.find(other.split(".")[1]).status(NOW + 20), EXPIRED
        )


class ParseTests(SynchronousTestCase):
    """
    Token text and durations.
    """

    @given(st.text(max_size=80))
    def test_anyText(self, text: str) -> None:
        """
        Any text is a token (id and 32-byte secret) or C{token-invalid}.
        """
        try:
            tokenId, secret = parseToken(text)
        except TokenRefused as e:
            self.assertEqual(e.code, "token-invalid")
        else:
            self.assertEqual((len(tokenId), len(secret)), (12, 32))

    @given(st.binary(min_size=32, max_size=32), st.from_regex(r"[0-9a-f]{12}", fullmatch=True))
    def test_roundTrip(self, secret: bytes, tokenId: str) -> None:
        """
        Every id and secret reads back from its text.
        """
        import base64

        text = f"zt1.{tokenId}.{base64.urlsafe_b64encode(secret).rstrip(b'=').decode()}"
        self.assertEqual(parseToken(text), (tokenId, secret))
        self.assertEqual(parseToken(f"  {text}\n"), (tokenId, secret))

    def test_durations(self) -> None:
        """
        Units s, m, h, d, w, run together; never is no limit.
        """
        self.assertEqual(parseDuration("90s"), 90)
        self.assertEqual(parseDuration("30m"), 1800)
        self.assertEqual(parseDuration("24h"), 86400)
        self.assertEqual(parseDuration("1d12h"), 129600)
        self.assertEqual(parseDuration("2W"), 1209600)
        self.assertIsNone(parseDuration("never"))
        for text in ("", "0s", "10", "h", "1x", "1h 2m", "-1h", "1.5h", "1h1"):
            self.assertRaises(ValueError, parseDuration, text)

    @given(st.integers(1, 10**8))
    def test_durationRoundTrip(self, seconds: int) -> None:
        """
        Every whole number of seconds is written as a duration that reads
        back the same.
        """
        self.assertEqual(parseDuration(formatDuration(seconds)), seconds)

    @given(st.text(max_size=20))
    def test_anyDuration(self, text: str) -> None:
        """
        Any text is a positive duration, never, or a L{ValueError}.
        """
        try:
            value = parseDuration(text)
        except ValueError:
            return
        self.assertTrue(value is None or value > 0)
