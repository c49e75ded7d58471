"""
Tests for L{ztnagw.gateway.persistence}: signed persistence cookies.
"""

from __future__ import annotations

import os
import stat

import attrs
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from ztnagw.gateway.persistence import CookiePersistence, loadPersistenceKey
from ztnagw.http.headers import Headers
from tests.gateway.test_pool import makePool


def cookieHeaders(value: bytes) -> Headers:
    """
    Request fields carrying C{value} as the only cookie field.
    """
    headers = Headers()
    headers.add(b"Cookie", value)
    return headers


class CookieTests(SynchronousTestCase):
    """
    L{GatewayPersistence}.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.pool = makePool("round-robin", [{}, {}])
        self.apiGateway = attrs.evolve(self.pool.apiGateway, persistence="http-cookie", httpCookieAge=1)
        self.persistence = CookiePersistence(b"k" * 32, self.clock).forApiGateway(self.apiGateway, "VIP")

    def test_none(self) -> None:
        """
        Without C{persistence http-cookie} there is no persistence.
        """
        self.assertIsNone(CookiePersistence(b"k" * 32, self.clock).forApiGateway(self.pool.apiGateway, "VIP"))

    def test_roundTrip(self) -> None:
        """
        A cookie binds to the member it was made for, and names no address.
        """
        members = self.pool.members
        value = self.persistence.value(members[1])
        self.assertNotIn(b"10.0.0", value)
        self.assertIs(self.persistence.verify(value, members), members[1])
        self.assertIsNone(self.persistence.verify(value, members[:1]))

    def test_expired(self) -> None:
        """
        A cookie older than C{http-cookie-age} binds nothing.
        """
        value = self.persistence.value(self.pool.members[0])
        self.clock.advance(61)
        self.assertIsNone(self.persistence.verify(value, self.pool.members))

    def test_forged(self) -> None:
        """
        A cookie with a changed expiry, another key or another generation
        binds nothing; neither does garbage.
        """
        members = self.pool.members
        value = self.persistence.value(members[0])
        expiry, _, mac = value.partition(b".")
        self.assertIsNone(self.persistence.verify(b"%d.%s" % (int(expiry) + 3600, mac), members))
        other = CookiePersistence(b"x" * 32, self.clock).forApiGateway(self.apiGateway, "VIP")
        self.assertIsNone(other.verify(value, members))
        regenerated = CookiePersistence(b"k" * 32, self.clock).forApiGateway(
            attrs.evolve(self.apiGateway, httpCookieGeneration=1), "VIP"
        )
        self.assertIsNone(regenerated.verify(value, members))
        for garbage in (b"", b".", b"1." + b"A" * 22 + b"=", b"x.y", b"9" * 40 + b"." + mac):
            self.assertIsNone(self.persistence.verify(garbage, members))

    def test_bound(self) -> None:
        """
        L{GatewayPersistence.bound} finds the member among the candidates
        from the request's C{Cookie} fields.
        """
        members = self.pool.members
        value = self.persistence.value(members[1])
        find = self.persistence.bound(cookieHeaders(b"a=1; FGTServer=" + value + b"; b=2"))
        self.assertIs(find(members), members[1])
        self.assertIsNone(find(members[:1]))

    def test_strip(self) -> None:
        """
        The gateway's cookie is removed from what the real server gets.
        """
        pairs = [(b"Host", b"a"), (b"Cookie", b"a=1; FGTServer=1.x; b=2"), (b"Cookie", b"FGTServer=2.y")]
        self.assertEqual(self.persistence.strip(pairs), [(b"Host", b"a"), (b"Cookie", b"a=1; b=2")])

    def test_notShared(self) -> None:
        """
        With C{http-cookie-share disable} the cookie is the api-gateway's
        own.
        """
        persistence = CookiePersistence(b"k" * 32, self.clock).forApiGateway(
            attrs.evolve(self.apiGateway, httpCookieShare="disable"), "VIP"
        )
        self.assertEqual(persistence.cookieName, b"FGTServer-1")
        self.assertIsNone(persistence.verify(self.persistence.value(self.pool.members[0]), self.pool.members))


class KeyTests(SynchronousTestCase):
    """
    L{loadPersistenceKey}.
    """

    def test_createdOnce(self) -> None:
        """
        The key is created mode 0600 at the first start and kept.
        """
        directory = self.mktemp()
        first = loadPersistenceKey(directory)
        self.assertEqual(len(first), 32)
        self.assertEqual(stat.S_IMODE(os.stat(os.path.join(directory, "persistence.key")).st_mode), 0o600)
        self.assertEqual(loadPersistenceKey(directory), first)

    def test_readableByOthers(self) -> None:
        """
        A key others can read is refused.
        """
        directory = self.mktemp()
        loadPersistenceKey(directory)
        os.chmod(os.path.join(directory, "persistence.key"), 0o644)
        self.assertRaises(OSError, loadPersistenceKey, directory)

    def test_firstCreatorWins(self) -> None:
        """
        L{createOnce} never replaces a key another process made first, and
        leaves no temporary file.
        """
        from ztnagw.gateway.persistence import createOnce

        directory = self.mktemp()
        first = loadPersistenceKey(directory)
        createOnce(os.path.join(directory, "persistence.key"), b"y" * 32)
        self.assertEqual(loadPersistenceKey(directory), first)
        self.assertEqual(os.listdir(directory), ["persistence.key"])
