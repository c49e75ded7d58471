# -*- test-case-name: tests.gateway.test_matching -*-
"""
Which api-gateway serves a request: matching by virtual host (the HTTP
C{Host}), url-map and service, and which virtual host a TLS server name
(SNI) stands for.

FortiOS picks the virtual host first and the api-gateway second: its log
says "failed to match an API-gateway with vhost(name/hostname:...)", naming
the virtual host it had already chosen (C{_def_virtual_host_} when the Host
matched none).  ztnagw does the same, with these rules (C{docs/gateway.md}):

  1. B{Virtual host.}  The candidates are the virtual hosts that the access
     proxy's api-gateways name.  The request's C{Host} is normalised (port
     and one final dot removed, lower case).  A virtual host whose C{host}
     equals it wins; otherwise the first candidate, in the order of
     C{config firewall access-proxy-virtual-host}, whose pattern matches:
     C{host-type sub-string} when the Host contains C{host},
     C{host-type wildcard} when it matches C{host} as a whole with C{*}
     standing for any run of characters and C{?} for one.  No candidate
     matches: the default virtual host, served by the api-gateways that
     name no virtual host.
  2. B{Api-gateway.}  Among the api-gateways of that virtual host, in
     configuration order, the first whose service fits (C{http}/C{https}
     for a proxied request, C{tcp-forwarding} for a tunnel request) and
     whose url-map matches the path decides.  There is no fall-back to
     another virtual host: the rules of the virtual host the Host named
     apply, or none.
  3. B{url-map}, against the path without the query, with percent-encoded
     unreserved characters decoded (RFC 3986 section 6.2.2.2 says they are
     the same path): C{sub-string} when the path contains it,
     C{wildcard} when the path matches it as a whole (C{*}, C{?}),
     C{regex} when the regular expression matches anywhere in the path
     (anchor it with C{^} and C{$} as needed).

SNI cannot carry every virtual host: a sub-string host matches names that
are not known in advance.  L{SNITable} lists, per access proxy, the names a
TLS client can ask for: each candidate virtual host whose C{host} is an
exact DNS name or a one-label wildcard (C{*.example.com}); the first virtual
host with a given pattern owns it.  Any other name gets the VIP's default
certificate and certificate request, and a request whose C{Host} then names
a virtual host with other client-certificate settings is refused with 421
(L{ztnagw.gateway.context.RequestContext.misdirected}).
"""

from __future__ import annotations

import re
from typing import Callable, Iterable, Sequence

from attrs import frozen

from ztnagw.config.model import AccessProxy, ApiGateway, Config, VirtualHost
from ztnagw.tls.server import parseHostPattern

__all__ = [
    "HTTP_SERVICES",
    "TCP_FORWARDING",
    "AccessProxyMatcher",
    "Match",
    "SNIName",
    "SNITable",
    "matchablePath",
    "normalizeHost",
    "wildcardPattern",
]

#: Services a proxied HTTP request can be served by.
HTTP_SERVICES = frozenset({"http", "https"})
#: The service of a TCP forwarding tunnel request.
TCP_FORWARDING = frozenset({"tcp-forwarding"})

_UNRESERVED = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
)
_HEX = frozenset(b"0123456789abcdefABCDEF")


def normalizeHost(host: bytes | str | None) -> str:
    """
    The host name a C{Host} value names, as virtual hosts are matched: the
    port removed, brackets of an IPv6 literal removed, one final dot
    removed, lower case.  C{None} (no Host, HTTP/1.0) is C{""}.

    Never fails: bytes are read as ISO-8859-1, so every value normalises
    to something, which simply matches no virtual host when it is nonsense.
    """
    if host is None:
        return ""
    text = host.decode("iso-8859-1") if isinstance(host, bytes) else host
    text = text.strip().lower()
    if text.startswith("["):
        end = text.find("]")
        text = text[1:end] if end >= 0 else text[1:]
    else:
        name, colon, port = text.rpartition(":")
        if colon and port.isdigit() and ":" not in name:
            text = name
    if text.endswith("."):
        text = text[:-1]
    return text


def matchablePath(path: bytes) -> str:
    """
    The path url-maps are matched against: the request's path and query
    without the query, percent-encoded unreserved characters decoded, read
    as ISO-8859-1 (never fails).  Other escapes (C{%2F}, C{%00}...) stay as
    they are: they mean something else than the character.
    """
    query = path.find(b"?")
    if query >= 0:
        path = path[:query]
    if b"%" in path:
        out = bytearray()
        i = 0
        size = len(path)
        while i < size:
            byte = path[i]
            if (
                byte == 0x25
                and i + 2 < size
                and path[i + 1] in _HEX
                and path[i + 2] in _HEX
            ):
                value = int(path[i + 1 : i + 3], 16)
                if value in _UNRESERVED:
                    out.append(value)
                    i += 3
                    continue
            out.append(byte)
            i += 1
        path = bytes(out)
    return path.decode("iso-8859-1")


def wildcardPattern(pattern: str, ignoreCase: bool) -> re.Pattern[str]:
    """
    Compile a FortiOS wildcard (C{*}: any run of characters, C{?}: one
    character, everything else literal) into a regular expression that
    must match a whole string.
    """
    parts = []
    for character in pattern:
        if character == "*":
            parts.append(".*")
        elif character == "?":
            parts.append(".")
        else:
            parts.append(re.escape(character))
    return re.compile("".join(parts), re.DOTALL | (re.IGNORECASE if ignoreCase else 0))


def _hostMatcher(virtualHost: VirtualHost) -> Callable[[str], bool]:
    host = (virtualHost.host or "").lower()
    if host.endswith("."):
        host = host[:-1]
    if virtualHost.hostType == "wildcard":
        compiled = wildcardPattern(host, ignoreCase=True)
        return lambda name: compiled.fullmatch(name) is not None
    return lambda name: host in name


def _pathMatcher(apiGateway: ApiGateway) -> Callable[[str], bool]:
    urlMap = apiGateway.urlMap
    kind = apiGateway.urlMapType
    if kind == "regex":
        compiled = re.compile(urlMap)
        return lambda path: compiled.search(path) is not None
    if kind == "wildcard":
        wildcard = wildcardPattern(urlMap, ignoreCase=False)
        return lambda path: wildcard.fullmatch(path) is not None
    return lambda path: urlMap in path


@frozen
class Match:
    """
    The api-gateway that serves a request.

    @ivar apiGateway: the api-gateway.
    @ivar virtualHost: the virtual host the Host matched, or C{None} for the
        default virtual host.
    """

    apiGateway: ApiGateway
    virtualHost: VirtualHost | None

    @property
    def virtualHostName(self) -> str | None:
        """
        The name of L{virtualHost}, or C{None}.
        """
        return None if self.virtualHost is None else self.virtualHost.name


@frozen
class _Route:
    apiGateway: ApiGateway
    matchesPath: Callable[[str], bool]


@frozen
class _HostRule:
    virtualHost: VirtualHost
    exact: str
    matches: Callable[[str], bool]


class AccessProxyMatcher:
    """
    The matching rules of one access proxy, compiled once.

    @ivar accessProxy: the access proxy, or C{None} for a VIP that has none
        (nothing matches).
    """

    def __init__(self, config: Config, accessProxy: AccessProxy | None) -> None:
        """
        @param config: the configuration (for the virtual hosts' order).
        @param accessProxy: the access proxy to match for.
        """
        self.accessProxy = accessProxy
        apiGateways = list(accessProxy.apiGateways.values()) if accessProxy else []
        named = {a.virtualHost for a in apiGateways if a.virtualHost is not None}
        self._hosts = tuple(
            _HostRule(v, _exactHost(v), _hostMatcher(v))
            for v in config.virtualHosts.values()
            if v.name in named
        )
        self._routes: dict[str | None, list[_Route]] = {}
        for apiGateway in apiGateways:
            self._routes.setdefault(apiGateway.virtualHost, []).append(
                _Route(apiGateway, _pathMatcher(apiGateway))
            )

    @property
    def virtualHosts(self) -> tuple[VirtualHost, ...]:
        """
        The candidate virtual hosts, in configuration order.
        """
        return tuple(rule.virtualHost for rule in self._hosts)

    def virtualHostFor(self, host: bytes | str | None) -> VirtualHost | None:
        """
        The virtual host a C{Host} value names (rule 1 of the module
        docstring), or C{None} for the default virtual host.
        """
        name = normalizeHost(host)
        for rule in self._hosts:
            if rule.exact == name:
                return rule.virtualHost
        for rule in self._hosts:
            if rule.matches(name):
                return rule.virtualHost
        return None

    def match(
        self, host: bytes | str | None, path: bytes, services: Iterable[str]
    ) -> Match | None:
        """
        The api-gateway that serves a request for C{host} and C{path} with
        one of C{services}, or C{None} (error 021).
        """
        virtualHost = self.virtualHostFor(host)
        routes = self._routes.get(None if virtualHost is None else virtualHost.name, ())
        if not routes:
            return None
        wanted = frozenset(services)
        matchable = matchablePath(path)
        for route in routes:
            if route.apiGateway.service in wanted and route.matchesPath(matchable):
                return Match(route.apiGateway, virtualHost)
        return None

    def apiGateways(self, services: Iterable[str]) -> tuple[ApiGateway, ...]:
        """
        The api-gateways with one of C{services}, in configuration order.
        """
        wanted = frozenset(services)
        if self.accessProxy is None:
            return ()
        return tuple(
            a for a in self.accessProxy.apiGateways.values() if a.service in wanted
        )


def _exactHost(virtualHost: VirtualHost) -> str:
    host = (virtualHost.host or "").lower()
    return host[:-1] if host.endswith(".") else host


@frozen
class SNIName:
    """
    One TLS server name pattern a VIP answers with its own certificate.

    @ivar pattern: an exact name or C{*.parent} (see
        L{ztnagw.tls.server.parseHostPattern}).
    @ivar virtualHost: the virtual host it stands for, or C{None} for an
        extra certificate of the VIP itself.
    @ivar certificate: the C{vpn certificate local} name to present.
    """

    pattern: str
    virtualHost: str | None
    certificate: str


def sniPattern(host: str | None) -> str | None:
    """
    The SNI pattern a virtual host's C{host} can be, or C{None} when it
    cannot be one (a sub-string or a wildcard other than one whole first
    label).
    """
    if not host:
        return None
    try:
        return parseHostPattern(host)
    except ValueError:
        return None


class SNITable:
    """
    The TLS server names of one VIP and what each stands for, looked up as
    L{ztnagw.tls.server.ServerConnectionCreator} does: an exact name first,
    then a wildcard for exactly one more label.

    @ivar names: the patterns, in the order they were claimed.
    """

    def __init__(self, names: Sequence[SNIName]) -> None:
        """
        @param names: the patterns; a pattern given twice keeps its first
            owner.
        """
        seen: dict[str, SNIName] = {}
        for name in names:
            seen.setdefault(name.pattern, name)
        self.names: tuple[SNIName, ...] = tuple(seen.values())
        self._exact = {n.pattern: n for n in self.names if not n.pattern.startswith("*.")}
        self._wildcards = {n.pattern[2:]: n for n in self.names if n.pattern.startswith("*.")}

    def lookup(self, serverName: str | None) -> SNIName | None:
        """
        The entry a client asking for C{serverName} gets, or C{None} (the
        VIP's default certificate).
        """
        if not serverName:
            return None
        name = serverName.lower().removesuffix(".")
        found = self._exact.get(name)
        if found is not None:
            return found
        first, dot, parent = name.partition(".")
        if first and dot:
            return self._wildcards.get(parent)
        return None

    @classmethod
    def forVip(
        cls,
        matcher: AccessProxyMatcher,
        vipCertificates: Sequence[str],
        certificateNames: Callable[[str], Iterable[str]],
    ) -> SNITable:
        """
        The SNI names of a VIP: its virtual hosts first (each with its own
        first certificate, else the VIP's), then the DNS names of the VIP's
        certificates after its first (the default).

        @param matcher: the VIP's access proxy's rules.
        @param vipCertificates: the VIP's C{ssl-certificate} names.
        @param certificateNames: the DNS names (SAN) a certificate is valid
            for, by certificate name.
        """
        names: list[SNIName] = []
        default = vipCertificates[0] if vipCertificates else None
        for virtualHost in matcher.virtualHosts:
            pattern = sniPattern(virtualHost.host)
            if pattern is None:
                continue
            certificate = (
                virtualHost.sslCertificate[0] if virtualHost.sslCertificate else default
            )
            if certificate is not None:
                names.append(SNIName(pattern, virtualHost.name, certificate))
        for certificate in vipCertificates[1:]:
            for dnsName in certificateNames(certificate):
                pattern = sniPattern(dnsName)
                if pattern is not None:
                    names.append(SNIName(pattern, None, certificate))
        return cls(names)
