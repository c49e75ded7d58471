# -*- test-case-name: tests.gateway.test_persistence -*-
"""
Cookie persistence (C{persistence http-cookie}): a client keeps going to
the real server it was first sent to.

The gateway adds a cookie to the response of a request it sent to a real
server, and a later request that carries the cookie goes to that server
again when it may serve (L{ztnagw.gateway.pool}); one that names a server
that is down, disabled or on standby while an active server is up falls
back to the method.  The cookie is C{FGTServer} (FortiOS's name), or
C{FGTServer-<id>} with C{http-cookie-share disable}, and its value is

    C{<expiry>.<mac>}

where C{expiry} is the POSIX second the cookie stops counting (C{0} for a
cookie without C{Max-Age}: C{http-cookie-age 0}) and C{mac} the first 16
bytes of HMAC-SHA256, base64url, over the expiry, the
C{http-cookie-generation}, the scope and the real server's name and port.
The value names no server: the gateway finds the member whose MAC matches
(pools are small), so a client can neither read internal addresses from it
nor forge one to pick a server, and an old cookie stops counting when it
expires or the generation changes.  The scope is the VIP (C{http-cookie-share
same-ip}: api-gateways of the VIP with the same real server honour each
other's cookie) or the VIP and the api-gateway (C{disable}).

The key is 32 random bytes in C{<state-dir>/persistence.key}, created mode
0600 at the first start (L{loadPersistenceKey}); several gateways sharing
cookies share the file.  The gateway's cookie is removed from the request
before it goes to the real server.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from typing import Callable, Sequence

from ztnagw.config.model import ApiGateway
from ztnagw.gateway.pool import Member
from ztnagw.http.headers import Headers
from ztnagw.keyfiles import privateFileProblem, writePrivateFile

__all__ = [
    "COOKIE_NAME",
    "CookiePersistence",
    "GatewayPersistence",
    "loadPersistenceKey",
]

#: The cookie's name (with C{-<api-gateway id>} when not shared).
COOKIE_NAME = b"FGTServer"

#: The key file, in the state directory.
KEY_FILE = "persistence.key"


def createOnce(path: str, data: bytes) -> None:
    """
    Create the private file C{path} (mode 0600) holding C{data}, unless
    it exists: several worker processes starting at once all end up with
    the one file the first of them made.

    @raise OSError: it cannot be written.
    """
    temporary = f"{path}.{os.getpid()}.new"
    writePrivateFile(temporary, data)
    try:
        os.link(temporary, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(temporary)


def loadPersistenceKey(stateDir: str) -> bytes:
    """
    The persistence key of C{stateDir}, created (mode 0600) when missing.
    Reads or writes a file: call it before the reactor runs.

    @raise OSError: it cannot be read or written, or other users can read
        it.
    """
    path = os.path.join(stateDir, KEY_FILE)
    if not os.path.exists(path):
        createOnce(path, os.urandom(32))
    problem = privateFileProblem(path)
    if problem is not None:
        raise OSError(f"{path}: {problem}")
    with open(path, "rb") as f:
        key = f.read()
    if len(key) < 32:
        raise OSError(f"{path}: a persistence key is 32 bytes, this one is {len(key)}")
    return key


def _cookies(headers: Headers) -> list[tuple[bytes, bytes]]:
    pairs = []
    for value in headers.getAll(b"cookie"):
        for part in value.split(b";"):
            name, equals, content = part.strip().partition(b"=")
            if equals:
                pairs.append((name.strip(), content.strip()))
    return pairs


class GatewayPersistence:
    """
    The cookie persistence of one api-gateway on one VIP.

    @ivar cookieName: the cookie's name.
    """

    def __init__(self, key: bytes, clock: object, apiGateway: ApiGateway, vipName: str) -> None:
        self._key = key
        self._clock = clock
        self._apiGateway = apiGateway
        shared = apiGateway.httpCookieShare == "same-ip"
        self.cookieName = COOKIE_NAME if shared else COOKIE_NAME + b"-%d" % apiGateway.id
        self._scope = vipName.encode("utf-8") if shared else b"%s/%d" % (vipName.encode("utf-8"), apiGateway.id)

    def _mac(self, expiry: int, member: Member) -> bytes:
        message = b"ztnagw-persistence|%s|%d|%d|%s:%d" % (
            self._scope,
            self._apiGateway.httpCookieGeneration,
            expiry,
            member.name.encode("utf-8"),
            member.realServer.port,
        )
        digest = hmac.new(self._key, message, hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(digest).rstrip(b"=")

    def value(self, member: Member) -> bytes:
        """
        A fresh cookie value binding to C{member}.
        """
        age = self._apiGateway.httpCookieAge
        expiry = 0 if age == 0 else int(self._clock.seconds()) + age * 60  # type: ignore[attr-defined]
        return b"%d.%s" % (expiry, self._mac(expiry, member))

    def bound(self, headers: Headers) -> Callable[[Sequence[Member]], Member | None]:
        """
        What L{RealServerPool.choose<ztnagw.gateway.pool.RealServerPool.choose>}
        calls to find the member the request's cookie binds it to.
        """
        values = [v for n, v in _cookies(headers) if n == self.cookieName]

        def find(candidates: Sequence[Member]) -> Member | None:
            for value in values:
                member = self.verify(value, candidates)
                if member is not None:
                    return member
            return None

        return find

    def verify(self, value: bytes, candidates: Sequence[Member]) -> Member | None:
        """
        The member of C{candidates} cookie C{value} binds to, or C{None}
        (malformed, expired, of another generation or key, or naming no
        candidate).
        """
        expiryText, dot, mac = value.partition(b".")
        if not dot or not expiryText.isdigit() or len(expiryText) > 12 or len(mac) != 22:
            return None
        expiry = int(expiryText)
        if expiry != 0 and expiry < self._clock.seconds():  # type: ignore[attr-defined]
            return None
        found = None
        for member in candidates:
            # Every candidate is compared, in constant time each.
            if hmac.compare_digest(self._mac(expiry, member), mac):
                found = member
        return found

    def setCookie(self, member: Member, host: bytes | None) -> bytes:
        """
        The C{Set-Cookie} value binding a client to C{member}.

        @param host: the request's C{Host} (for
            C{http-cookie-domain-from-host}).
        """
        apiGateway = self._apiGateway
        parts = [self.cookieName + b"=" + self.value(member)]
        parts.append(b"Path=" + (apiGateway.httpCookiePath or "/").encode("ascii", "replace"))
        domain: bytes | None = None
        if apiGateway.httpCookieDomainFromHost and host:
            from ztnagw.gateway.pool import hostOf

            name = hostOf(host)
            domain = name.encode("ascii", "replace") if name else None
        elif apiGateway.httpCookieDomain:
            domain = apiGateway.httpCookieDomain.encode("ascii", "replace")
        if domain:
            parts.append(b"Domain=" + domain)
        if apiGateway.httpCookieAge:
            parts.append(b"Max-Age=%d" % (apiGateway.httpCookieAge * 60))
        if apiGateway.httpsCookieSecure:
            parts.append(b"Secure")
        parts.append(b"HttpOnly")
        return b"; ".join(parts)

    def isValidFor(self, headers: Headers, member: Member) -> bool:
        """
        Whether the request already carries a valid cookie for C{member}
        (then no new one is sent).
        """
        return any(
            self.verify(v, (member,)) is member
            for n, v in _cookies(headers)
            if n == self.cookieName
        )

    def strip(self, pairs: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        """
        C{pairs} (request fields) without the gateway's cookie: it is not
        the real server's.
        """
        out = []
        prefix = self.cookieName + b"="
        for name, value in pairs:
            if name.lower() != b"cookie":
                out.append((name, value))
                continue
            kept = [p.strip() for p in value.split(b";") if not p.strip().startswith(prefix)]
            kept = [p for p in kept if p]
            if kept:
                out.append((name, b"; ".join(kept)))
        return out


class CookiePersistence:
    """
    The cookie persistence of every api-gateway of the process, with the
    key of the state directory.
    """

    def __init__(self, key: bytes, clock: object) -> None:
        """
        @param key: the persistence key (L{loadPersistenceKey}).
        @param clock: the reactor's clock.
        """
        self._key = key
        self._clock = clock
        self._cache: dict[tuple[int, str], GatewayPersistence] = {}

    def forApiGateway(self, apiGateway: ApiGateway, vipName: str) -> GatewayPersistence | None:
        """
        The persistence of C{apiGateway} on VIP C{vipName}, or C{None}
        without C{persistence http-cookie}.
        """
        if apiGateway.persistence != "http-cookie":
            return None
        cacheKey = (id(apiGateway), vipName)
        found = self._cache.get(cacheKey)
        if found is None:
            found = GatewayPersistence(self._key, self._clock, apiGateway, vipName)
            self._cache[cacheKey] = found
        return found
