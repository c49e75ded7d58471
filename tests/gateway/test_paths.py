"""
Tests for L{ztnagw.gateway.paths}: the gateway and a normalising real
server must read a request path the same way (security finding F1: a
url-map restricting C{/public/} let C{/public/../admin} reach C{/admin} on
nginx).
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from ztnagw.gateway.matching import matchablePath
from ztnagw.gateway.paths import AmbiguousPath, normalizePath


def serverView(path: bytes) -> bytes:
    """
    How a normalising real server (nginx) reads a path: every escape
    decoded (C{%2F} included), empty segments merged, dot segments
    removed.
    """
    path = path.split(b"?", 1)[0]
    out = bytearray()
    i = 0
    while i < len(path):
        if path[i] == 0x25 and i + 2 < len(path) + 0 and len(path[i + 1 : i + 3]) == 2:
            out.append(int(path[i + 1 : i + 3], 16))
            i += 3
        else:
            out.append(path[i])
            i += 1
    segments: list[bytes] = []
    pieces = bytes(out).split(b"/")[1:]
    directory = False
    for piece in pieces:
        if piece in (b"", b"."):
            directory = True
        elif piece == b"..":
            if segments:
                segments.pop()
            directory = True
        else:
            segments.append(piece)
            directory = False
    return b"/" + b"/".join(segments) + (b"/" if directory and segments else b"")


class NormalizeTests(SynchronousTestCase):
    """
    L{normalizePath} normalises what has one meaning and refuses the rest.
    """

    def assertNormal(self, path: bytes, expected: bytes) -> None:
        self.assertEqual(normalizePath(path), expected)

    def assertRefused(self, path: bytes, why: str) -> None:
        error = self.assertRaises(AmbiguousPath, normalizePath, path)
        self.assertIn(why, str(error))

    def test_dotSegments(self) -> None:
        """
        Dot segments are removed, literal or percent-encoded in any case;
        C{..} above the root stays at the root; a final dot segment leaves
        a directory.
        """
        self.assertNormal(b"/public/../admin", b"/admin")
        self.assertNormal(b"/public/%2e%2e/admin", b"/admin")
        self.assertNormal(b"/public/%2E%2e/admin", b"/admin")
        self.assertNormal(b"/public/.%2e/admin", b"/admin")
        self.assertNormal(b"/public/./../admin", b"/admin")
        self.assertNormal(b"/../../etc/passwd", b"/etc/passwd")
        self.assertNormal(b"/a/b/..", b"/a/")
        self.assertNormal(b"/a/.", b"/a/")
        self.assertNormal(b"/..", b"/")

    def test_emptySegments(self) -> None:
        """
        Empty segments are merged, before dot segments are removed (as
        nginx reads C{/public//../admin}: C{/admin}); a final slash stays.
        """
        self.assertNormal(b"//admin/public/", b"/admin/public/")
        self.assertNormal(b"/public//../admin", b"/admin")
        self.assertNormal(b"/a///b/", b"/a/b/")
        self.assertNormal(b"/", b"/")

    def test_encoding(self) -> None:
        """
        Unreserved characters are decoded, other escapes upper-cased; an
        encoded slash is kept; the query is never changed.
        """
        self.assertNormal(b"/%7euser/%41%62c", b"/~user/Abc")
        self.assertNormal(b"/api/projects/group%2fproject", b"/api/projects/group%2Fproject")
        self.assertNormal(b"/caf%c3%a9", b"/caf%C3%A9")
        self.assertNormal(b"/a/../b?x=/../%2e%2e&y", b"/b?x=/../%2e%2e&y")
        self.assertNormal(b"/a;jsessionid=1/b", b"/a;jsessionid=1/b")
        self.assertNormal(b"/100%25", b"/100%25")
        self.assertNormal(b"*", b"*")

    def test_refused(self) -> None:
        """
        Paths that servers read in different ways are refused, each with
        its reason.
        """
        self.assertRefused(b"/public/..%2Fadmin", "a dot segment behind an encoded slash")
        self.assertRefused(b"/public%2F..%2Fadmin", "a dot segment behind an encoded slash")
        self.assertRefused(b"/public/..;/admin", "a dot segment with parameters")
        self.assertRefused(b"/public/.;x/admin", "a dot segment with parameters")
        self.assertRefused(b"/public/%00/../admin", "an encoded control character or NUL")
        self.assertRefused(b"/public/%0d%0aX:1", "an encoded control character or NUL")
        self.assertRefused(b"/public/%c0%ae%c0%ae/admin", "not UTF-8")
        self.assertRefused(b"/public/%ff", "not UTF-8")
        self.assertRefused(b"/public\\..\\admin", "a backslash")
        self.assertRefused(b"/public/..%5cadmin", "a backslash")
        self.assertRefused(b"/public/%252e%252e/admin", "a double percent-encoding")
        self.assertRefused(b"/public/%zz", "malformed percent-encoding")
        self.assertRefused(b"/public/%2", "malformed percent-encoding")
        self.assertRefused(b"public", "no leading /")

    @given(
        st.lists(
            st.sampled_from(
                [
                    b"public", b"admin", b"a", b".", b"..", b"", b"%2e", b"%2E%2e", b".%2e", b"%2f",
                    b"x%2Fy", b"%41", b"%7e", b"a;b", b"..;", b"%00", b"%c0%ae", b"%25", b"%252e",
                    b"%5c", b"%zz", b"%e2%82%ac", b"%2e%2e%2f", b"~", b"-_",
                ]
            ),
            max_size=8,
        ),
        st.sampled_from([b"", b"?", b"?a=/../b", b"?%2e"]),
    )
    def test_sameResource(self, segments: list[bytes], query: bytes) -> None:
        """
        For every path it accepts, the result is already normal
        (normalising again changes nothing), has no dot or empty segment
        left for a real server to interpret, keeps the query, and names
        for a normalising server the same resource as the original path;
        what the url-map matches is what that server reads.
        """
        path = b"/" + b"/".join(segments) + query
        try:
            result = normalizePath(path)
        except AmbiguousPath:
            return
        self.assertEqual(normalizePath(result), result)
        self.assertTrue(result.startswith(b"/"))
        self.assertTrue(result.endswith(query))
        pieces = result[: len(result) - len(query)].split(b"/")[1:]
        for piece in pieces[:-1]:
            self.assertNotIn(piece, (b"", b".", b".."))
        self.assertNotIn(pieces[-1], (b".", b".."))
        self.assertEqual(serverView(result), serverView(path))
        if b"%" not in result:
            self.assertEqual(matchablePath(result).encode("iso-8859-1"), serverView(result))

    @given(st.binary(max_size=64).map(lambda b: bytes(0x21 + c % 94 for c in b)))
    def test_anyTarget(self, tail: bytes) -> None:
        """
        Any path the HTTP layer can hand over (printable ASCII) is either
        refused with L{AmbiguousPath} or normalised to a path that starts
        with C{/}; nothing else is raised.
        """
        try:
            result = normalizePath(b"/" + tail)
        except AmbiguousPath:
            return
        self.assertTrue(result.startswith(b"/"))
