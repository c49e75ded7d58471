"""
Path tricks against url-maps, with a real server that normalises paths its
own way (nginx): an api-gateway whose url-map restricts a virtual host to
C{/public/} must never let a request reach nginx's C{/admin}.

The gateway's rule (L{ztnagw.gateway.paths}): it normalises the path
before matching and forwards the normalised path; paths servers read in
different ways are refused with 400.  Finding F1 of C{docs/security.md}:
before that rule, every dot-segment trick below reached C{/admin}.
"""

from __future__ import annotations

import time

from tests.security.cases import attack
from tests.security.fixture import AttackCase

#: Paths that name /admin (or something else outside /public/) to a
#: normalising server while containing "/public/" as sent.
_NORMALISED = (
    "/public/../admin",
    "/public/%2e%2e/admin",
    "/public/%2E%2E/admin",
    "/public/.%2e/admin",
    "/public/./../admin",
    "/public//../admin",
    "/public/x/../../admin",
)

#: Paths without a single meaning: refused with 400, whatever the url-map.
_AMBIGUOUS = (
    "/public/..%2Fadmin",
    "/public/..%2fadmin",
    "/public%2F..%2Fadmin",
    "/public/..;/admin",
    "/public/%00/../admin",
    "/public/%c0%ae%c0%ae/admin",
    "/public/%c0%af../admin",
    "/public/..%5cadmin",
    "/public/%252e%252e/admin",
    "/public/%zz",
)


class PathTests(AttackCase):
    """
    Path tricks on the C{paths.test} virtual host (url-map C{/public/},
    sub-string, FortiOS's default type) and C{prefix.test} (url-map
    C{/public/*}, wildcard), both in front of nginx.
    """

    def nginxSince(self, mark: int, expected: int = 0) -> list[str]:
        """
        What nginx logged since line C{mark}: C{<request_uri> <uri>}.
        nginx writes a request's line after sending its response, so this
        waits for C{expected} lines (at most 5 s), and with none expected
        gives late lines a moment to appear.
        """
        deadline = time.monotonic() + 5
        if not expected:
            time.sleep(0.3)
        while True:
            lines = self.gateway.nginxLines()[mark:]
            if len(lines) >= expected or time.monotonic() > deadline:
                return lines
            time.sleep(0.05)

    def assertNeverAdmin(self, lines: list[str], responses: list[object]) -> None:
        """
        nginx never served its C{/admin} location.
        """
        for line in lines:
            self.assertFalse(line.split(" ", 1)[-1].startswith("/admin"), line)
        for response in responses:
            self.assertFalse(getattr(response, "body", b"").startswith(b"admin"), response)

    @attack(
        "paths",
        "dot segments hidden in an allowed prefix (`/public/../admin`, `%2e%2e`, `.%2e`, `//..`)",
        "normalised before matching: 404 (021), the real server never sees the original path",
    )
    def test_dotSegments(self) -> None:
        """
        Each dot-segment form is normalised to a path outside C{/public/}:
        no api-gateway matches (021) and nginx receives nothing.
        """
        g = self.gateway
        mark = len(g.nginxLines())
        responses = []
        for host in ("paths.test", "prefix.test"):
            for path in _NORMALISED:
                response = g.request(path, host=host, device=g.good)
                responses.append(response)
                self.assertEqual((response.status, response.ztnaError), (404, "021"), (host, path, response))
        self.assertEqual(self.nginxSince(mark), [])
        self.assertNeverAdmin([], responses)
        self.assertNothingReached()
        g.checkServing(self)

    @attack(
        "paths",
        "encoded slash or backslash around `..`, `..;`, NUL, overlong UTF-8, double encoding, bad escapes",
        "400 (ambiguous path), nothing reaches the real server",
    )
    def test_ambiguous(self) -> None:
        """
        Each path without a single meaning is refused with 400 and a
        sentence naming the problem; nginx receives nothing.
        """
        g = self.gateway
        mark = len(g.nginxLines())
        for host in ("paths.test", "prefix.test"):
            for path in _AMBIGUOUS:
                response = g.request(path, host=host, device=g.good)
                self.assertEqual(response.status, 400, (host, path, response))
                self.assertIn(b"ambiguous", response.body, (host, path))
        self.assertEqual(self.nginxSince(mark), [])
        self.assertNothingReached()
        g.checkServing(self)

    @attack(
        "paths",
        "allowed paths written oddly (`/public/./a`, `/public//a`, `%41`, `/public/a/../b`)",
        "served, and the real server gets the normalised path the url-map judged",
    )
    def test_normalisedForwarded(self) -> None:
        """
        A path that stays inside C{/public/} once normalised is served,
        and nginx receives exactly the normalised path (so that it has
        nothing left to interpret).
        """
        g = self.gateway
        mark = len(g.nginxLines())
        cases = {
            "/public/./a": "/public/a",
            "/public//a": "/public/a",
            "/public/%61%62": "/public/ab",
            "/public/a/../b": "/public/b",
            "/public/caf%c3%a9": "/public/caf%C3%A9",
        }
        for host in ("paths.test", "prefix.test"):
            for path, forwarded in cases.items():
                response = g.request(path, host=host, device=g.good)
                self.assertEqual(response.status, 200, (host, path, response))
                self.assertTrue(response.body.startswith(b"public /public/"), response)
        received = [line.split(" ", 1)[0] for line in self.nginxSince(mark, 2 * len(cases))]
        self.assertEqual(received, list(cases.values()) * 2)
        self.assertNeverAdmin(self.nginxSince(mark), [])
        g.checkServing(self)

    @attack(
        "paths",
        "a sub-string url-map matched elsewhere in the path (`/admin/public/`)",
        "served: sub-string is FortiOS's documented meaning; a wildcard `/public/*` refuses it (021)",
    )
    def test_subStringIsNotAPrefix(self) -> None:
        """
        FortiOS's default url-map type is sub-string: C{/admin/public/}
        contains C{/public/} and is served by C{paths.test} (this is the
        configured meaning, documented in C{docs/security.md}); the
        wildcard url-map C{/public/*} of C{prefix.test} is a prefix and
        refuses it with 021.
        """
        g = self.gateway
        mark = len(g.nginxLines())
        response = g.request("/admin/public/", host="prefix.test", device=g.good)
        self.assertEqual((response.status, response.ztnaError), (404, "021"))
        self.assertEqual(self.nginxSince(mark), [])
        response = g.request("/admin/public/", host="paths.test", device=g.good)
        self.assertEqual(response.status, 200)
        self.assertEqual(self.nginxSince(mark, 1), ["/admin/public/ /admin/public/"])
        g.checkServing(self)
