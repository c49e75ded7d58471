"""
Tests for L{ztnagw.gateway.matching}: virtual hosts, url-maps, services and
SNI names.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from ztnagw.config import loads
from ztnagw.gateway.matching import (
    HTTP_SERVICES,
    TCP_FORWARDING,
    AccessProxyMatcher,
    SNITable,
    matchablePath,
    normalizeHost,
    sniPattern,
    wildcardPattern,
)

_CONFIG = """
config vpn certificate local
    edit "vip-cert"
        set certificate-file "v.crt"
        set private-key-file "v.key"
        set auto-generate enable
    next
    edit "extra-cert"
        set certificate-file "x.crt"
        set private-key-file "x.key"
        set auto-generate enable
    next
    edit "app-cert"
        set certificate-file "a.crt"
        set private-key-file "a.key"
        set auto-generate enable
    next
end
config firewall access-proxy-virtual-host
    edit "substring"
        set host "example.com"
    next
    edit "app"
        set host "app.example.com"
        set ssl-certificate "app-cert"
    next
    edit "wild"
        set host "*.corp.test"
        set host-type wildcard
    next
    edit "middle"
        set host "www.*.test"
        set host-type wildcard
    next
    edit "unused"
        set host "unused.test"
    next
end
config firewall vip
    edit "vip"
        set type access-proxy
        set server-type https
        set extip 192.0.2.1
        set extintf "any"
        set extport 443
        set ssl-certificate "vip-cert" "extra-cert"
    next
end
config firewall access-proxy
    edit "proxy"
        set vip "vip"
        config api-gateway
            edit 1
                set url-map "/api"
                set virtual-host "app"
                config realservers
                    edit 1
                        set ip 10.0.0.1
                    next
                end
            next
            edit 2
                set url-map "/tcp"
                set service tcp-forwarding
                set virtual-host "app"
                config realservers
                    edit 1
                        set ip 10.0.0.2
                    next
                end
            next
            edit 3
                set virtual-host "app"
                set service http
                config realservers
                    edit 1
                        set ip 10.0.0.3
                    next
                end
            next
            edit 4
                set virtual-host "substring"
                config realservers
                    edit 1
                        set ip 10.0.0.4
                    next
                end
            next
            edit 5
                set url-map "/static/*.css"
                set url-map-type wildcard
                set virtual-host "wild"
                config realservers
                    edit 1
                        set ip 10.0.0.5
                    next
                end
            next
            edit 6
                set url-map "^/v[0-9]+/"
                set url-map-type regex
                set virtual-host "wild"
                config realservers
                    edit 1
                        set ip 10.0.0.6
                    next
                end
            next
            edit 7
                set virtual-host "middle"
                config realservers
                    edit 1
                        set ip 10.0.0.7
                    next
                end
            next
            edit 8
                set url-map "/default"
                config realservers
                    edit 1
                        set ip 10.0.0.8
                    next
                end
            next
        end
    next
end
config firewall policy
    edit 1
        set srcintf "any"
        set dstintf "any"
        set srcaddr "all"
        set dstaddr "vip"
        set action accept
        set schedule "always"
    next
end
"""


def _matcher() -> AccessProxyMatcher:
    config = loads(_CONFIG)
    return AccessProxyMatcher(config, config.accessProxies["proxy"])


class NormalizeHostTests(SynchronousTestCase):
    """
    Tests for L{normalizeHost}.
    """

    def test_portCaseAndDot(self) -> None:
        """
        The port, the case and one final dot do not matter.
        """
        self.assertEqual(normalizeHost(b"WWW.Example.COM.:8443"), "www.example.com")

    def test_ipv6(self) -> None:
        """
        An IPv6 literal loses its brackets and port.
        """
        self.assertEqual(normalizeHost(b"[2001:DB8::1]:443"), "2001:db8::1")

    def test_none(self) -> None:
        """
        No Host (HTTP/1.0) is the empty name, which no virtual host has.
        """
        self.assertEqual(normalizeHost(None), "")

    @given(st.binary(max_size=100))
    def test_anyBytes(self, value: bytes) -> None:
        """
        Any value normalises without failing, to lower-case text without a
        port suffix.
        """
        result = normalizeHost(value)
        self.assertIsInstance(result, str)
        self.assertEqual(result, result.lower())

    @given(
        st.from_regex(r"[a-z0-9-]{1,20}(\.[a-z0-9-]{1,20}){0,3}", fullmatch=True),
        st.integers(1, 65535),
    )
    def test_portIgnored(self, name: str, port: int) -> None:
        """
        A name with or without a port normalises to the same name.
        """
        self.assertEqual(normalizeHost(f"{name}:{port}".encode()), normalizeHost(name.encode()))
        self.assertEqual(normalizeHost(name.encode()), name)


class MatchablePathTests(SynchronousTestCase):
    """
    Tests for L{matchablePath}.
    """

    def test_queryDropped(self) -> None:
        """
        The query is not part of what url-maps see.
        """
        self.assertEqual(matchablePath(b"/a/b?c=/api"), "/a/b")

    def test_unreservedDecoded(self) -> None:
        """
        Percent-encoded unreserved characters are the same path: a client
        cannot escape C{/api} by writing C{/%61pi}.
        """
        self.assertEqual(matchablePath(b"/%61%70%69/x"), "/api/x")

    def test_reservedKept(self) -> None:
        """
        An encoded slash or NUL is another path, and stays encoded.
        """
        self.assertEqual(matchablePath(b"/a%2Fb%00"), "/a%2Fb%00")

    def test_brokenEscapes(self) -> None:
        """
        A percent sign without two hex digits stays as it is.
        """
        self.assertEqual(matchablePath(b"/a%2"), "/a%2")
        self.assertEqual(matchablePath(b"/a%zz%"), "/a%zz%")

    @given(st.binary(max_size=200))
    def test_anyBytes(self, value: bytes) -> None:
        """
        Any target gives text without the query, never longer than the
        target.
        """
        result = matchablePath(value)
        self.assertNotIn("?", result)
        self.assertLessEqual(len(result), len(value))

    @given(st.text(alphabet="abcXYZ019-._~/", max_size=50))
    def test_encodingUnreservedIsIdentity(self, path: str) -> None:
        """
        Encoding any unreserved character does not change what url-maps
        see.
        """
        encoded = "".join(
            f"%{ord(c):02X}" if c != "/" and i % 2 else c for i, c in enumerate(path)
        )
        self.assertEqual(matchablePath(encoded.encode()), path)


class WildcardTests(SynchronousTestCase):
    """
    Tests for L{wildcardPattern}.
    """

    def test_star(self) -> None:
        """
        C{*} stands for any run of characters, dots and slashes included.
        """
        pattern = wildcardPattern("/a/*.css", ignoreCase=False)
        self.assertTrue(pattern.fullmatch("/a/b/c.css"))
        self.assertFalse(pattern.fullmatch("/a/b.cssx"))

    def test_question(self) -> None:
        """
        C{?} stands for exactly one character.
        """
        pattern = wildcardPattern("a?c", ignoreCase=False)
        self.assertTrue(pattern.fullmatch("abc"))
        self.assertFalse(pattern.fullmatch("ac"))

    def test_literals(self) -> None:
        """
        Regular-expression characters are literal.
        """
        self.assertTrue(wildcardPattern("a.b(c)", ignoreCase=False).fullmatch("a.b(c)"))
        self.assertFalse(wildcardPattern("a.b", ignoreCase=False).fullmatch("axb"))


class VirtualHostTests(SynchronousTestCase):
    """
    Tests for L{AccessProxyMatcher.virtualHostFor}.
    """

    def test_exactWins(self) -> None:
        """
        A virtual host whose host is exactly the request's wins over an
        earlier sub-string one that also matches.
        """
        self.assertEqual(_matcher().virtualHostFor(b"app.example.com").name, "app")

    def test_substring(self) -> None:
        """
        A sub-string host matches any name containing it.
        """
        self.assertEqual(_matcher().virtualHostFor(b"www.example.com:443").name, "substring")

    def test_wildcard(self) -> None:
        """
        A wildcard host matches whole names, anywhere the star is.
        """
        matcher = _matcher()
        self.assertEqual(matcher.virtualHostFor(b"a.b.corp.test").name, "wild")
        self.assertEqual(matcher.virtualHostFor(b"www.x.test").name, "middle")
        self.assertIsNone(matcher.virtualHostFor(b"corp.test"))

    def test_unusedNotCandidate(self) -> None:
        """
        A virtual host no api-gateway of the access proxy names is not a
        candidate.
        """
        self.assertIsNone(_matcher().virtualHostFor(b"unused.test"))

    def test_none(self) -> None:
        """
        No match is the default virtual host.
        """
        self.assertIsNone(_matcher().virtualHostFor(b"10.0.0.1"))


class MatchTests(SynchronousTestCase):
    """
    Tests for L{AccessProxyMatcher.match}.
    """

    def _id(self, host: bytes, path: bytes, services: frozenset[str] = HTTP_SERVICES) -> int | None:
        match = _matcher().match(host, path, services)
        return None if match is None else match.apiGateway.id

    def test_orderWithinVirtualHost(self) -> None:
        """
        Api-gateways of the virtual host are tried in configuration order:
        C{/api} goes to 1, everything else of the host to 3.
        """
        self.assertEqual(self._id(b"app.example.com", b"/api/x"), 1)
        self.assertEqual(self._id(b"app.example.com", b"/other"), 3)

    def test_serviceMustFit(self) -> None:
        """
        A tcp-forwarding api-gateway never serves a proxied request, and a
        tunnel request finds only tcp-forwarding ones.
        """
        self.assertEqual(self._id(b"app.example.com", b"/tcp?address=a"), 3)
        self.assertEqual(self._id(b"app.example.com", b"/tcp?address=a", TCP_FORWARDING), 2)

    def test_wildcardAndRegex(self) -> None:
        """
        Wildcard url-maps match the whole path; regex ones anywhere unless
        anchored.
        """
        self.assertEqual(self._id(b"x.corp.test", b"/static/a/b.css"), 5)
        self.assertEqual(self._id(b"x.corp.test", b"/v2/items"), 6)
        self.assertIsNone(self._id(b"x.corp.test", b"/api/v2/items"))
        self.assertIsNone(self._id(b"x.corp.test", b"/static/a.js"))

    def test_noFallBack(self) -> None:
        """
        When the Host names a virtual host, the default virtual host's
        api-gateways are not tried.
        """
        self.assertIsNone(self._id(b"x.corp.test", b"/default"))
        self.assertEqual(self._id(b"192.0.2.1", b"/default/x"), 8)
        self.assertIsNone(self._id(b"192.0.2.1", b"/"))

    def test_noAccessProxy(self) -> None:
        """
        A VIP without an access proxy matches nothing.
        """
        self.assertIsNone(AccessProxyMatcher(loads(_CONFIG), None).match(b"a", b"/", HTTP_SERVICES))

    def test_encodedPath(self) -> None:
        """
        An encoded unreserved character does not dodge a url-map.
        """
        self.assertEqual(self._id(b"app.example.com", b"/%61pi"), 1)


class SNITests(SynchronousTestCase):
    """
    Tests for L{SNITable} and L{sniPattern}.
    """

    def _table(self) -> SNITable:
        return SNITable.forVip(
            _matcher(),
            ("vip-cert", "extra-cert"),
            lambda name: {"extra-cert": ["extra.test", "*.extra.test", "app.example.com"]}[name],
        )

    def test_patterns(self) -> None:
        """
        Exact names and one-label wildcards can be SNI patterns; other
        wildcards cannot.
        """
        self.assertEqual(sniPattern("App.Example.com"), "app.example.com")
        self.assertEqual(sniPattern("*.corp.test"), "*.corp.test")
        self.assertIsNone(sniPattern("www.*.test"))
        self.assertIsNone(sniPattern(None))

    def test_virtualHosts(self) -> None:
        """
        Each candidate virtual host with a usable pattern gets its own
        certificate, else the VIP's default.
        """
        table = self._table()
        app = table.lookup("APP.example.com")
        self.assertEqual((app.virtualHost, app.certificate), ("app", "app-cert"))
        wild = table.lookup("x.corp.test")
        self.assertEqual((wild.virtualHost, wild.certificate), ("wild", "vip-cert"))
        self.assertIsNone(table.lookup("x.y.corp.test"))

    def test_vipCertificates(self) -> None:
        """
        The VIP's further certificates answer for their own names; a name a
        virtual host already claimed stays the virtual host's.
        """
        table = self._table()
        self.assertEqual(table.lookup("extra.test").certificate, "extra-cert")
        self.assertIsNone(table.lookup("extra.test").virtualHost)
        self.assertEqual(table.lookup("a.extra.test").certificate, "extra-cert")
        self.assertEqual(table.lookup("app.example.com").virtualHost, "app")

    def test_noName(self) -> None:
        """
        No server name, or an unknown one, gets the default.
        """
        table = self._table()
        self.assertIsNone(table.lookup(None))
        self.assertIsNone(table.lookup("unknown.test"))
