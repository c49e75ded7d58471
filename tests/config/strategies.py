"""
Hypothesis strategies for the configuration model, derived from the
schema declarations: values of each value type, option statements of each
model class, and whole valid configurations.

L{configurations} draws a syntax tree of a valid configuration: objects of
every kind, each option given or not, references that resolve and the
cross-object rules respected.  Options the generator does not have to
arrange (most of them) are drawn from their declared value type, so an
option added to the model is exercised without a change here.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
from functools import lru_cache
from typing import Any, Callable

from hypothesis import strategies as st

from ztnagw.config import model
from ztnagw.config.schema import (
    DAYS,
    Choice,
    DateTime,
    Days,
    EmsTag,
    EmsTags,
    FilePath,
    Flag,
    HostName,
    Integer,
    InterfaceAddress,
    IPv4,
    Option,
    Password,
    PortRange,
    PortRanges,
    Reference,
    ReferenceList,
    Subnet,
    Text,
    TimeOfDay,
    Uuid,
    optionsOf,
)
from ztnagw.config.tree import (
    ConfigBlock,
    Document,
    EditBlock,
    Location,
    SetStatement,
    Statement,
    Word,
)

#: Printable text with the characters quoting must handle.
_TEXT_ALPHABET = st.characters(
    codec="utf-8",
    exclude_categories=("Cs", "Cc"),
)

names = st.text(
    alphabet=st.sampled_from("abcXYZ019-_. \"'#\\é"), min_size=1, max_size=12
).filter(lambda s: s.strip() == s)


def _text(valueType: Text) -> st.SearchStrategy[str]:
    if valueType.pattern is not None:
        strategy = st.from_regex(valueType.pattern, fullmatch=True).filter(
            lambda s: not re.search("[\x00-\x1f\x7f]", s)
        )
    else:
        strategy = st.text(alphabet=_TEXT_ALPHABET, min_size=1, max_size=40)
    if valueType.maxLength is not None:
        limit = valueType.maxLength
        strategy = strategy.filter(lambda s: len(s) <= limit)
    return strategy


def _hostname(valueType: HostName) -> st.SearchStrategy[str]:
    label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
    name = st.lists(label, min_size=1, max_size=4).map(".".join).filter(
        lambda s: not re.fullmatch("[0-9.]+", s)
    )
    if valueType.wildcard:
        name = st.one_of(name, name.map(lambda s: "*." + s))
    if valueType.allowAddress:
        name = st.one_of(name, st.ip_addresses(v=4).map(str))
    return name


def _minute(moment: datetime.datetime) -> datetime.datetime:
    return moment.replace(second=0, microsecond=0)


def _portRanges() -> st.SearchStrategy[tuple[PortRange, ...]]:
    def ordered(pair: tuple[int, int]) -> PortRange:
        return PortRange(min(pair), max(pair))

    one = st.tuples(st.integers(1, 65535), st.integers(1, 65535)).map(ordered)
    return st.lists(one, min_size=1, max_size=4, unique=True).map(tuple)


@lru_cache(maxsize=None)
def valuesOf(valueType: Any) -> st.SearchStrategy[Any] | None:
    """
    Valid Python values of a value type, or C{None} for types whose values
    the configuration generator must arrange itself (references, files,
    PEM material, tags).
    """
    if isinstance(valueType, Flag):
        return st.booleans()
    if isinstance(valueType, Choice):
        return st.sampled_from(valueType.choices)
    if isinstance(valueType, Integer):
        return st.integers(valueType.minimum, valueType.maximum)
    if isinstance(valueType, Text):
        # PEM material and checked text (registry URLs) are arranged by the
        # configuration generator.
        if valueType.multiline or valueType.check is not None:
            return None
        return _text(valueType)
    if isinstance(valueType, Password):
        return st.text(alphabet=_TEXT_ALPHABET, min_size=1, max_size=20)
    if isinstance(valueType, IPv4):
        addresses = st.ip_addresses(v=4)
        if not valueType.allowUnspecified:
            addresses = addresses.filter(lambda a: int(a) != 0)
        return addresses
    if isinstance(valueType, Subnet):
        return st.builds(
            lambda a, n: ipaddress.IPv4Network((a, n), strict=False),
            st.ip_addresses(v=4),
            st.integers(0, 32),
        )
    if isinstance(valueType, InterfaceAddress):
        return st.builds(
            lambda a, n: ipaddress.IPv4Interface((a, n)),
            st.ip_addresses(v=4),
            st.integers(0, 32),
        )
    if isinstance(valueType, TimeOfDay):
        return st.builds(datetime.time, st.integers(0, 23), st.integers(0, 59))
    if isinstance(valueType, DateTime):
        return st.datetimes(
            min_value=datetime.datetime(2000, 1, 1), max_value=datetime.datetime(2099, 12, 31)
        ).map(_minute)
    if isinstance(valueType, Days):
        return st.sets(st.sampled_from(DAYS)).map(lambda days: tuple(d for d in DAYS if d in days))
    if isinstance(valueType, Uuid):
        return st.uuids()
    if isinstance(valueType, PortRanges):
        return _portRanges()
    if isinstance(valueType, HostName):
        return _hostname(valueType)
    if isinstance(valueType, (Reference, ReferenceList, FilePath, EmsTags)):
        return None
    raise AssertionError(f"no strategy for {valueType!r}")


def wordsOf(declaration: Option, value: Any) -> tuple[Word, ...]:
    """
    The words of C{set <option> ...} for C{value}.
    """
    quoted = declaration.valueType.quoted
    return tuple(Word(w, quoted) for w in declaration.valueType.render(value))


class _Lines:
    """
    Gives each generated statement a distinct line number, so that every
    error of a mutated configuration can be checked to have a location.
    """

    def __init__(self) -> None:
        self.line = 0

    def __call__(self) -> Location:
        self.line += 1
        return Location("generated.conf", self.line)


@st.composite
def _options(
    draw: Callable[[st.SearchStrategy[Any]], Any],
    cls: type,
    fixed: dict[str, Any],
    lines: _Lines,
    parentValues: dict[str, Any] | None = None,
    skip: frozenset[str] = frozenset(),
) -> tuple[list[Statement], dict[str, Any]]:
    """
    The C{set} statements of one object: C{fixed} options (CLI name to
    Python value) as given, and each other option drawn or left out.

    @param skip: options never drawn (the generator's concern).
    @return: the statements and every option's value (defaults included).
    """
    values: dict[str, Any] = {}
    chosen: dict[str, Any] = {}
    for declaration in optionsOf(cls):
        name = declaration.cliName
        if name in fixed:
            if fixed[name] is not None:
                chosen[name] = fixed[name]
            continue
        if name in skip:
            continue
        strategy = valuesOf(declaration.valueType)
        if strategy is None:
            continue
        if draw(st.integers(0, 3)) == 0:
            chosen[name] = draw(strategy)
    for declaration in optionsOf(cls):
        values[declaration.cliName] = chosen.get(declaration.cliName, declaration.default)
    # Required options are always given.
    for declaration in optionsOf(cls):
        name = declaration.cliName
        if name in chosen or name in fixed or name in skip:
            continue
        needed = declaration.required or (
            declaration.requiredWhen is not None and declaration.requiredWhen.holds(values)
        )
        strategy = valuesOf(declaration.valueType)
        if needed and strategy is not None:
            chosen[name] = values[name] = draw(strategy)
    statements: list[Statement] = []
    for declaration in optionsOf(cls):
        name = declaration.cliName
        if name not in chosen:
            continue
        condition = declaration.when
        if condition is not None:
            source = parentValues if condition.parent else values
            if source is None or not condition.holds(source):
                values[name] = declaration.default
                continue
        statements.append(SetStatement(name, wordsOf(declaration, chosen[name]), lines()))
    # Second pass: a value dropped above may have changed a condition that
    # an earlier option depended on; drop those too.
    kept = []
    for statement in statements:
        assert isinstance(statement, SetStatement)
        declaration = next(o for o in optionsOf(cls) if o.cliName == statement.option)
        condition = declaration.when
        if condition is not None:
            source = parentValues if condition.parent else values
            if source is None or not condition.holds(source):
                values[statement.option] = declaration.default
                continue
        kept.append(statement)
    return kept, values


def _edit(key: str | int, statements: list[Statement], lines: _Lines) -> EditBlock:
    word = Word(str(key), quoted=isinstance(key, str))
    return EditBlock(word, tuple(statements), lines())


def _block(path: tuple[str, ...], statements: list[Statement], lines: _Lines) -> ConfigBlock:
    return ConfigBlock(path, tuple(statements), lines())


_RESERVED = frozenset({"any", "all", "none", "always"})


def _uniqueNames(draw: Any, count: int, taken: set[str]) -> list[str]:
    result = []
    for _ in range(count):
        name = draw(names)
        # A suffix instead of a filter: filtering would make a new strategy
        # per draw, which is slow.
        if name in taken or name in _RESERVED:
            name = f"{name}{len(taken)}"
        taken.add(name)
        result.append(name)
    return result


@st.composite
def configurations(draw: Callable[[st.SearchStrategy[Any]], Any], pem: list[tuple[str, str]]) -> Document:
    """
    The syntax tree of a valid configuration.

    @param pem: certificate and key pairs (PEM text) for inline local
        certificates.
    """
    lines = _Lines()
    blocks: list[ConfigBlock] = []
    taken: set[str] = set()

    # system global: state-dir is relative or absolute but never exists,
    # so that auto-generated certificates are always still to come.
    statements, _ = draw(_options(model.SystemGlobal, {}, lines, skip=frozenset({"state-dir"})))
    if draw(st.booleans()):
        statements.append(
            SetStatement("state-dir", (Word(draw(st.sampled_from(["state", "/nonexistent/ztnagw"])), True),), lines())
        )
    blocks.append(_block(("system", "global"), statements, lines))

    interfaces = _uniqueNames(draw, draw(st.integers(0, 3)), taken)
    if interfaces:
        edits = []
        for name in interfaces:
            statements, _ = draw(_options(model.Interface, {}, lines))
            edits.append(_edit(name, statements, lines))
        blocks.append(_block(("system", "interface"), edits, lines))
    interfaceNames = st.sampled_from(interfaces + ["any"])

    certificates = _uniqueNames(draw, draw(st.integers(1, 3)), taken)
    edits = []
    for name in certificates:
        if pem and draw(st.booleans()):
            certificate, key = draw(st.sampled_from(pem))
            fixed: dict[str, Any] = {"certificate": certificate, "private-key": key, "auto-generate": None}
        else:
            fixed = {
                "certificate-file": name + ".crt",
                "private-key-file": "keys/" + name + ".key",
                "auto-generate": True,
            }
        statements, _ = draw(_options(model.LocalCertificate, fixed, lines, skip=frozenset({"password"})))
        edits.append(_edit(name, statements, lines))
    blocks.append(_block(("vpn", "certificate", "local"), edits, lines))

    caNames = _uniqueNames(draw, draw(st.integers(0, 1)) if pem else 0, taken)
    if caNames:
        edits = []
        for name in caNames:
            statements, _ = draw(_options(model.CaCertificate, {}, lines))
            statements.append(SetStatement("ca", (Word(pem[0][0], True),), lines()))
            edits.append(_edit(name, statements, lines))
        blocks.append(_block(("vpn", "certificate", "ca"), edits, lines))

    # EMS listeners are on 127.0.0.x, VIPs on 192.0.2.x: they never meet.
    emsIds = sorted(draw(st.sets(st.integers(1, 7), max_size=3)))
    if emsIds:
        edits = []
        for number, emsId in enumerate(emsIds):
            fixed: dict[str, Any] = {"server": None}
            statements, values = draw(_options(model.EmsConnector, fixed, lines, skip=frozenset({"server", "registry"})))
            if values["status"]:
                statements.append(SetStatement("server", (Word(f"127.0.0.{number + 1}", True),), lines()))
                if "serial-number" not in [s.option for s in statements]:  # type: ignore[union-attr]
                    statements.append(SetStatement("serial-number", (Word(f"FCTEMS{emsId:010d}", True),), lines()))
            if draw(st.booleans()):
                statements.append(SetStatement("registry", (Word(draw(st.sampled_from(["sqlite:", "sqlite:other.db"])), True),), lines()))
            edits.append(_edit(emsId, statements, lines))
        blocks.append(_block(("endpoint-control", "fctems"), edits, lines))

    users = _uniqueNames(draw, draw(st.integers(0, 2)), taken)
    if users:
        edits = []
        for name in users:
            statements, _ = draw(_options(model.LocalUser, {"passwd": draw(names)}, lines))
            edits.append(_edit(name, statements, lines))
        blocks.append(_block(("user", "local"), edits, lines))
        groupNames = _uniqueNames(draw, draw(st.integers(0, 2)), taken)
        if groupNames:
            edits = []
            for name in groupNames:
                members = tuple(draw(st.lists(st.sampled_from(users), unique=True, max_size=2)))
                statements, _ = draw(_options(model.UserGroup, {"member": members or None}, lines, skip=frozenset({"member"})))
                if members:
                    statements.append(SetStatement("member", tuple(Word(m, True) for m in members), lines()))
                edits.append(_edit(name, statements, lines))
            blocks.append(_block(("user", "group"), edits, lines))

    addresses = _uniqueNames(draw, draw(st.integers(0, 4)), taken)
    fqdnAddresses: list[str] = []
    plainAddresses: list[str] = ["all", "none"]
    if addresses:
        edits = []
        for name in addresses:
            kind = draw(st.sampled_from(["ipmask", "iprange", "fqdn"]))
            fixed = {"type": kind, "associated-interface": None}
            if kind == "iprange":
                low, high = sorted(draw(st.lists(st.ip_addresses(v=4), min_size=2, max_size=2)))
                fixed.update({"start-ip": low, "end-ip": high})
                plainAddresses.append(name)
            elif kind == "fqdn":
                fixed["fqdn"] = draw(_hostname(HostName()))
                fqdnAddresses.append(name)
            else:
                plainAddresses.append(name)
            if kind == "ipmask" and draw(st.booleans()):
                fixed["type"] = None
            statements, _ = draw(_options(model.Address, fixed, lines))
            if interfaces and draw(st.booleans()):
                statements.append(SetStatement("associated-interface", (Word(draw(st.sampled_from(interfaces)), True),), lines()))
            edits.append(_edit(name, statements, lines))
        blocks.append(_block(("firewall", "address"), edits, lines))

    groups = _uniqueNames(draw, draw(st.integers(0, 3)), taken)
    plainGroups: list[str] = []
    if groups:
        edits = []
        for name in groups:
            # Members only among what is defined before: no loops.
            pool = plainAddresses + plainGroups + fqdnAddresses
            members = tuple(draw(st.lists(st.sampled_from(pool), min_size=1, max_size=3, unique=True)))
            statements, values = draw(
                _options(model.AddressGroup, {"member": members}, lines, skip=frozenset({"exclude-member"}))
            )
            if values["exclude"]:
                excluded = tuple(draw(st.lists(st.sampled_from(pool), min_size=1, max_size=2, unique=True)))
                statements.append(SetStatement("exclude-member", tuple(Word(m, True) for m in excluded), lines()))
            edits.append(_edit(name, statements, lines))
            if not any(m in fqdnAddresses for m in members):
                plainGroups.append(name)
        blocks.append(_block(("firewall", "addrgrp"), edits, lines))

    schedules = ["always"]
    recurring = _uniqueNames(draw, draw(st.integers(0, 2)), taken)
    if recurring:
        edits = []
        for name in recurring:
            statements, _ = draw(_options(model.RecurringSchedule, {"day": draw(st.sampled_from([("monday",), ("sunday", "saturday")]))}, lines))
            edits.append(_edit(name, statements, lines))
        blocks.append(_block(("firewall", "schedule", "recurring"), edits, lines))
        schedules += recurring
    onetime = _uniqueNames(draw, draw(st.integers(0, 2)), taken)
    if onetime:
        edits = []
        for name in onetime:
            start = draw(valuesOf(DateTime()))  # type: ignore[arg-type]
            end = start + datetime.timedelta(minutes=draw(st.integers(1, 10**6)))
            statements, _ = draw(_options(model.OnetimeSchedule, {"start": start, "end": end}, lines))
            edits.append(_edit(name, statements, lines))
        blocks.append(_block(("firewall", "schedule", "onetime"), edits, lines))
        schedules += onetime

    vips = _uniqueNames(draw, draw(st.integers(0, 3)), taken)
    vipCertificateOwner: dict[str, str] = {}
    if vips:
        edits = []
        for number, name in enumerate(vips):
            fixed = {
                "type": "access-proxy",
                "server-type": "https",
                "extip": ipaddress.IPv4Address(f"192.0.2.{number + 1}"),
                "extport": draw(st.integers(1, 65535)),
                "extintf": draw(interfaceNames),
                "ssl-certificate": tuple(draw(st.lists(st.sampled_from(certificates), min_size=1, max_size=2, unique=True))),
            }
            versions = sorted(draw(st.lists(st.sampled_from(["tls-1.0", "tls-1.1", "tls-1.2", "tls-1.3"]), min_size=2, max_size=2)))
            if draw(st.booleans()):
                fixed["ssl-min-version"], fixed["ssl-max-version"] = versions
            else:
                fixed["ssl-min-version"] = fixed["ssl-max-version"] = None
            fixed.update(_clientCertificateOptions(draw) if draw(st.booleans()) else _NO_CLIENT_CERT)
            vipCertificateOwner[name] = "vip" if any(fixed[k] is not None for k in _NO_CLIENT_CERT) else "proxy"
            statements, _ = draw(_options(model.Vip, fixed, lines))
            edits.append(_edit(name, statements, lines))
        blocks.append(_block(("firewall", "vip"), edits, lines))

    hosts = _uniqueNames(draw, draw(st.integers(0, 2)), taken)
    if hosts:
        edits = []
        for name in hosts:
            fixed = {
                "ssl-certificate": tuple(draw(st.lists(st.sampled_from(certificates), max_size=2, unique=True))) or None,
            }
            fixed.update(_clientCertificateOptions(draw))
            statements, _ = draw(_options(model.VirtualHost, fixed, lines))
            edits.append(_edit(name, statements, lines))
        blocks.append(_block(("firewall", "access-proxy-virtual-host"), edits, lines))

    proxies: list[str] = []
    if vips:
        edits = []
        for vip in draw(st.lists(st.sampled_from(vips), unique=True)):
            name = _uniqueNames(draw, 1, taken)[0]
            proxies.append(name)
            fixed = {"vip": vip}
            if vipCertificateOwner[vip] == "proxy":
                fixed.update(_clientCertificateOptions(draw))
            else:
                fixed.update(_NO_CLIENT_CERT)
            statements, _ = draw(_options(model.AccessProxy, fixed, lines))
            gateways = []
            for gatewayId in sorted(draw(st.sets(st.integers(1, 2**32 - 1), min_size=1, max_size=2))):
                gatewayFixed: dict[str, Any] = {
                    "service": draw(st.sampled_from(["https", "http", "tcp-forwarding"])),
                    "virtual-host": draw(st.sampled_from(hosts)) if hosts and draw(st.booleans()) else None,
                    "url-map-type": "sub-string",
                }
                if draw(st.booleans()):
                    gatewayFixed["url-map-type"] = "regex"
                    gatewayFixed["url-map"] = draw(st.sampled_from(["^/app/.*", "/a|/b", "[0-9]+$"]))
                if gatewayFixed["service"] == "tcp-forwarding":
                    # A tunnel has no Host for ldb-method http-host.
                    gatewayFixed["ldb-method"] = draw(
                        st.sampled_from([None, "static", "round-robin", "weighted", "first-alive"])
                    )
                gatewayStatements, gatewayValues = draw(_options(model.ApiGateway, gatewayFixed, lines))
                servers = []
                for serverId in sorted(draw(st.sets(st.integers(1, 2**32 - 1), min_size=1, max_size=2))):
                    servers.append(_edit(serverId, draw(_realServer(gatewayValues, fqdnAddresses, plainAddresses + plainGroups, lines)), lines))
                if servers:
                    gatewayStatements.append(_block(("realservers",), servers, lines))
                gateways.append(_edit(gatewayId, gatewayStatements, lines))
            if gateways:
                statements.append(_block(("api-gateway",), gateways, lines))
            edits.append(_edit(name, statements, lines))
        if edits:
            blocks.append(_block(("firewall", "access-proxy"), edits, lines))

    allAddresses = plainAddresses + fqdnAddresses + groups
    tagPool = [EmsTag(i, t) for i in emsIds for t in ("all_registered_clients", "Domain-Users", "a/b", "Low Risk")]
    for path, cls in ((("firewall", "policy"), model.FirewallPolicy), (("firewall", "proxy-policy"), model.ProxyPolicy)):
        if cls is model.ProxyPolicy and not proxies:
            continue
        ids = draw(st.lists(st.integers(1, 2**32 - 2), unique=True, max_size=3))
        if not ids:
            continue
        edits = []
        for policyId in ids:
            fixed = {
                "srcaddr": tuple(draw(st.lists(st.sampled_from(allAddresses), min_size=1, max_size=2, unique=True))),
                "dstaddr": tuple(draw(st.lists(st.sampled_from(allAddresses + vips), min_size=1, max_size=2, unique=True))),
                "schedule": draw(st.sampled_from(schedules)),
                "srcintf": tuple(draw(st.lists(interfaceNames, min_size=1, max_size=2, unique=True))),
            }
            if cls is model.FirewallPolicy:
                fixed["dstintf"] = tuple(draw(st.lists(interfaceNames, min_size=1, max_size=2, unique=True)))
                if not any(a in vips for a in fixed["dstaddr"]):
                    fixed["ztna-status"] = True
            else:
                fixed["proxy"] = "access-proxy"
                fixed["access-proxy"] = tuple(draw(st.lists(st.sampled_from(proxies), min_size=1, max_size=2, unique=True)))
            for tagOption in ("ztna-ems-tag", "ztna-ems-tag-secondary"):
                if any(o.cliName == tagOption for o in optionsOf(cls)):
                    tags = tuple(draw(st.lists(st.sampled_from(tagPool), unique=True, max_size=2))) if tagPool else ()
                    fixed[tagOption] = tags or None
            statements, _ = draw(_options(cls, fixed, lines, skip=frozenset({"users", "groups"})))
            edits.append(_edit(policyId, statements, lines))
        blocks.append(_block(path, edits, lines))

    return Document(tuple(blocks), source="generated.conf")


_NO_CLIENT_CERT = {"client-cert": None, "empty-cert-action": None, "user-agent-detect": None}


def _clientCertificateOptions(draw: Any) -> dict[str, Any]:
    """
    Client-certificate options that satisfy the precedence rules: an
    C{empty-cert-action} only where C{client-cert enable} is explicit on
    the same object, so that it always takes effect somewhere.
    """
    clientCert = draw(st.sampled_from([None, True, False]))
    emptyCertAction = None
    if clientCert is True:
        emptyCertAction = draw(st.sampled_from([None, "accept", "block", "accept-unmanageable"]))
    return {
        "client-cert": clientCert,
        "empty-cert-action": emptyCertAction,
        "user-agent-detect": draw(st.sampled_from([None, True, False])),
    }


@st.composite
def _realServer(
    draw: Callable[[st.SearchStrategy[Any]], Any],
    gateway: dict[str, Any],
    fqdnAddresses: list[str],
    ipAddresses: list[str],
    lines: _Lines,
) -> list[Statement]:
    tcp = gateway["service"] == "tcp-forwarding"
    kinds = ["ip"]
    if fqdnAddresses or tcp:
        kinds.append("fqdn")
    kind = draw(st.sampled_from(kinds))
    fixed: dict[str, Any] = {"addr-type": kind, "address": None, "ip": None, "domain": None}
    if kind == "ip":
        choices = ["ip"] + (["address"] if len(ipAddresses) > 2 else [])
        if draw(st.sampled_from(choices)) == "ip":
            fixed["ip"] = draw(st.ip_addresses(v=4).filter(lambda a: int(a) != 0))
        else:
            fixed["address"] = draw(st.sampled_from([a for a in ipAddresses if a not in ("all", "none")] or ["all"]))
        if tcp and fixed["ip"] is not None and draw(st.booleans()):
            # A pool member for the names under a domain.
            fixed["domain"] = draw(_hostname(HostName(wildcard=True)))
    else:
        if fqdnAddresses and (not tcp or draw(st.booleans())):
            fixed["address"] = draw(st.sampled_from(fqdnAddresses))
        if tcp and (fixed["address"] is None or draw(st.booleans())):
            fixed["domain"] = draw(_hostname(HostName(wildcard=True)))
    if tcp and fixed["ip"] is None and (kind == "ip" or fixed["address"] is None):
        # A subnet, a group or a domain alone has no one host to check.
        fixed["health-check"] = None
    statements, _ = draw(_options(model.RealServer, fixed, lines, gateway))
    return statements
