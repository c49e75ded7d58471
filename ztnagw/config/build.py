# -*- test-case-name: tests.config.test_build -*-
"""
Syntax tree to typed model: every value parsed, every reference resolved,
every cross-object rule checked, every problem reported.

The builder is generic: it learns which objects and options exist, their
types, defaults and conditions from the declarations in
L{ztnagw.config.model}.  What cannot be declared (references to other
objects, address-group loops, client-certificate precedence, certificate
material, rules spanning several objects) is checked afterwards on the
assembled model, in L{_Checker}.

An operator fixing a configuration wants to see all its problems at once,
so nothing stops at the first error: every problem is collected, with its
C{file:line}, and the configuration is rejected with all of them
(L{ConfigurationRejected}).  An object whose own options are invalid is
left out of the model but its name stays known, so that references to it
do not add misleading errors.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from typing import Any, Iterable, Sequence

from attrs import field, frozen

from ztnagw.config.certificates import (
    CertificateProblem,
    checkLocalCertificateShape,
    isPendingGeneration,
    loadCaCertificate,
    loadLocalCertificate,
)
from ztnagw.config.model import (
    BUILTIN_NAMES,
    BUILTINS,
    AccessProxy,
    Address,
    ApiGateway,
    Config,
    ConflictingSettings,
    FirewallPolicy,
    ProxyPolicy,
    RealServer,
    SystemGlobal,
    Vip,
    VirtualHost,
    settingSources,
)
from ztnagw.config.schema import (
    ConfigObject,
    Context,
    EmsTags,
    FrozenMap,
    Key,
    Option,
    Reference,
    ReferenceList,
    Table,
    ValueProblem,
    checkNotEncrypted,
    keyOf,
    optionsOf,
    shown,
    tablesOf,
)
from ztnagw.config.tree import (
    ConfigBlock,
    ConfigError,
    ConfigurationRejected,
    Document,
    EditBlock,
    Location,
    SetStatement,
    Statement,
    UnsetStatement,
)
from ztnagw.keyfiles import privateFileProblem

__all__ = ["buildConfig"]

#: At most this many names are listed when saying which exist.
_LISTED = 12


def buildConfig(
    document: Document,
    baseDirectory: str,
    configFile: str | None = None,
) -> Config:
    """
    Make the model of a parsed configuration.

    This may read files (certificates and keys named by the
    configuration): call it before the reactor runs or in a thread.

    @param baseDirectory: the directory a relative C{state-dir} is
        resolved against.
    @param configFile: the file the document was read from, if any; when
        it holds inline private keys, it must be readable by its owner
        only.
    @raise ConfigurationRejected: with every problem found.
    """
    return _Builder(document, os.path.abspath(baseDirectory), configFile).build()


@frozen
class _Found:
    """
    An object as found in the text, valid or not: enough to check its
    references even when its other options keep it out of the model.

    @ivar values: its option values (defaults for the invalid ones), by
        CLI name.
    @ivar locations: where each explicit option was set.
    """

    description: str
    objectClass: type
    values: dict[str, object] = field(eq=False)
    locations: dict[str, Location] = field(eq=False)
    location: Location | None = field(eq=False)


class _Builder:
    """
    One build of one document.
    """

    def __init__(self, document: Document, baseDirectory: str, configFile: str | None) -> None:
        self.document = document
        self.baseDirectory = baseDirectory
        self.configFile = configFile
        self.errors: list[ConfigError] = []
        self.warnings: list[ConfigError] = []
        # Every name defined in each Config table, valid or not.
        self.defined: dict[str, dict[object, Location | None]] = {}
        # Every object found, valid or not, for the reference checks.
        self.found: list[_Found] = []

    def error(self, location: Location | None, message: str) -> None:
        """
        Record a problem that rejects the configuration.
        """
        self.errors.append(ConfigError(location, message))

    def warning(self, location: Location | None, message: str) -> None:
        """
        Record something accepted but worth saying.
        """
        self.warnings.append(ConfigError(location, message))

    # ------------------------------------------------------------ structure

    def build(self) -> Config:
        """
        Build and check the whole configuration.

        @raise ConfigurationRejected: with every problem found.
        """
        topLevel = {t.path: t for t in tablesOf(Config)}
        blocks: dict[tuple[str, ...], list[ConfigBlock]] = {}
        for block in self.document.blocks:
            if block.path in topLevel:
                blocks.setdefault(block.path, []).append(block)
            else:
                self._unknownBlock(block, topLevel)

        systemTable = topLevel[("system", "global")]
        context = Context(self.baseDirectory, SystemGlobal().stateDir)
        systemGlobal = self._buildSingleton(systemTable, blocks.get(systemTable.path, []), context)
        if systemGlobal is None:
            systemGlobal = SystemGlobal()
        context = Context(self.baseDirectory, systemGlobal.stateDir)

        values: dict[str, Any] = {"systemGlobal": systemGlobal}
        for table in tablesOf(Config):
            if table.singleton:
                continue
            statements = [s for b in blocks.get(table.path, []) for s in b.statements]
            entries, defined = self._buildTable(table, statements, "", context, None, None)
            builtins = BUILTINS.get(table.attribute, {})
            merged = {k: v for k, v in builtins.items() if k not in defined}
            merged.update(entries)
            values[table.attribute] = FrozenMap(merged)
            self.defined[table.attribute] = {**{k: None for k in builtins}, **defined}

        config = Config(source=self.document.source, **values)
        _Checker(self, config).check()
        if self.errors:
            raise ConfigurationRejected(_sorted(self.errors))
        return Config(
            source=self.document.source,
            warnings=tuple(_sorted(self.warnings)),
            **values,
        )

    def _unknownBlock(self, block: ConfigBlock, topLevel: dict[tuple[str, ...], Table]) -> None:
        written = " ".join(block.path)
        known = [" ".join(p) for p in topLevel]
        close = difflib.get_close_matches(written, known, n=1, cutoff=0.7)
        hint = f" (did you mean config {close[0]}?)" if close else ""
        self.error(
            block.location,
            f"config {shown(written, 80)[1:-1]} is not supported by ztnagw{hint}; "
            "supported: " + ", ".join(f"config {k}" for k in known),
        )

    def _buildSingleton(
        self, table: Table, blocks: Sequence[ConfigBlock], context: Context
    ) -> ConfigObject | None:
        statements: list[Statement] = []
        for block in blocks:
            for statement in block.statements:
                if isinstance(statement, EditBlock):
                    self.error(
                        statement.location,
                        f"config {table.title} holds options directly, not "
                        "entries; remove the edit/next lines",
                    )
                else:
                    statements.append(statement)
        location = blocks[0].location if blocks else None
        return self._buildObject(
            table.objectClass, statements, table.title, location, context, None, None, {}
        )

    def _buildTable(
        self,
        table: Table,
        statements: Sequence[Statement],
        parentDescription: str,
        context: Context,
        parentClass: type | None,
        parentValues: dict[str, object] | None,
    ) -> tuple[dict[object, ConfigObject], dict[object, Location | None]]:
        """
        Build the entries of one table.

        @param parentClass: the class of the entry holding a nested table.
        @param parentValues: that entry's option values, by CLI name (what
            conditions on the enclosing object read).

        @return: the valid entries, and the keys of all entries with their
            locations.
        """
        title = f"{parentDescription} {table.title}".strip()
        key = keyOf(table.objectClass)
        assert key is not None
        entries: dict[object, ConfigObject] = {}
        defined: dict[object, Location | None] = {}
        for statement in statements:
            if not isinstance(statement, EditBlock):
                what = (
                    f"config {statement.path[0]}"
                    if isinstance(statement, ConfigBlock)
                    else f"{type(statement).__name__[:-9].lower()} {statement.option}"
                )
                self.error(
                    statement.location,
                    f"{title}: '{shown(what, 60)[1:-1]}' outside an entry; config "
                    f"{table.title} is a table: write its entries as edit <key> ... next",
                )
                continue
            try:
                keyValue = key.parse(statement.key.text)
            except ValueProblem as problem:
                self.error(
                    statement.location,
                    f"{title}: edit {shown(statement.key.text)}: {problem.message}",
                )
                continue
            description = f"{title} {_renderKey(key, keyValue)}"
            if keyValue in defined:
                first = defined[keyValue]
                self.error(
                    statement.location,
                    f"{description} is defined twice (first at line "
                    f"{first.line if first else '?'}); merge the two entries",
                )
                continue
            if keyValue in BUILTIN_NAMES.get(table.attribute, ()):
                self.error(
                    statement.location,
                    f"{description}: {shown(str(keyValue))} is a built-in name and "
                    "cannot be defined; choose another name",
                )
                continue
            defined[keyValue] = statement.location
            obj = self._buildObject(
                table.objectClass,
                statement.statements,
                description,
                statement.location,
                context,
                parentClass,
                parentValues,
                {key.attribute: keyValue},
            )
            if obj is not None:
                entries[keyValue] = obj
        return entries, defined

    def _unknownOption(
        self, cls: type, statement: SetStatement | UnsetStatement, description: str
    ) -> None:
        options = [o.cliName for o in optionsOf(cls)]
        tables = [f"config {t.title}" for t in tablesOf(cls)]
        close = difflib.get_close_matches(statement.option, options, n=1, cutoff=0.75)
        hint = f" (did you mean {close[0]}?)" if close else ""
        extra = getattr(cls, "unknownOptionHint", None)
        extra = f"; {extra}" if extra else ""
        self.error(
            statement.location,
            f"{description}: unknown option {shown(statement.option)}{hint}{extra}; "
            "supported: " + ", ".join(options + tables),
        )

    def _buildObject(
        self,
        cls: type,
        statements: Sequence[Statement],
        description: str,
        location: Location | None,
        context: Context,
        parentClass: type | None,
        parentValues: dict[str, object] | None,
        key: dict[str, object],
    ) -> ConfigObject | None:
        """
        Build one object from the statements of its C{edit} (or singleton
        C{config}) block.

        @return: the object, or C{None} if its own options had errors
            (reported).
        """
        declared = {o.cliName: o for o in optionsOf(cls)}
        nestedTables = {t.path: t for t in tablesOf(cls)}
        seen: dict[str, SetStatement | UnsetStatement] = {}
        nested: dict[tuple[str, ...], list[Statement]] = {}
        valid = True
        for statement in statements:
            if isinstance(statement, (SetStatement, UnsetStatement)):
                if statement.option not in declared:
                    # Reported; the object itself can still be built and
                    # checked, so that its other problems show too.
                    self._unknownOption(cls, statement, description)
                    continue
                previous = seen.get(statement.option)
                if previous is not None:
                    verb = "set" if isinstance(statement, SetStatement) else "unset"
                    self.warning(
                        statement.location,
                        f"{description}: {statement.option} is {verb} again "
                        f"(first at line {_line(previous.location)}); the last "
                        "statement wins",
                    )
                seen[statement.option] = statement
            elif isinstance(statement, ConfigBlock):
                if statement.path in nestedTables:
                    nested.setdefault(statement.path, []).extend(statement.statements)
                else:
                    supported = ", ".join(f"config {t.title}" for t in nestedTables.values())
                    self.error(
                        statement.location,
                        f"{description}: config {shown(' '.join(statement.path))[1:-1]} "
                        "is not supported here; "
                        + (
                            f"supported: {supported}"
                            if supported
                            else "this object has no tables"
                        ),
                    )
            else:
                self.error(
                    statement.location,
                    f"{description}: edit {shown(statement.key.text)} outside a "
                    "table; entries belong in a config block",
                )

        values: dict[str, object] = {}
        explicit: set[str] = set()
        locations: dict[str, Location] = {}
        failed: set[str] = set()
        for cliName, declaration in declared.items():
            statement = seen.get(cliName)
            value = declaration.default
            if isinstance(statement, SetStatement):
                words = [word.text for word in statement.values]
                try:
                    if declaration.secret:
                        checkNotEncrypted(words)
                    parsed = declaration.valueType.parse(words, context)
                except ValueProblem as problem:
                    self.error(statement.location, f"{description}: {cliName}: {problem.message}")
                    failed.add(cliName)
                    valid = False
                else:
                    if parsed is not None and parsed != ():
                        value = parsed
                        explicit.add(cliName)
                        if statement.location is not None:
                            locations[cliName] = statement.location
            values[cliName] = value

        for cliName, declaration in declared.items():
            if cliName in explicit and declaration.refused is not None:
                self.error(
                    locations.get(cliName, location),
                    f"{description}: {cliName}: {declaration.refused}",
                )
            condition = declaration.when
            if cliName in explicit and condition is not None and condition.option not in failed:
                source = parentValues if condition.parent else values
                if source is not None and not condition.holds(source):
                    controlling = _controlling(cls, parentClass, condition)
                    actual = " ".join(controlling.valueType.render(source[condition.option]))
                    self.error(
                        locations.get(cliName, location),
                        f"{description}: {cliName} applies only when "
                        f"{condition.describe(controlling.valueType)}, but "
                        f"{condition.subject()} is {actual}; remove it",
                    )
            needed = declaration.required or (
                declaration.requiredWhen is not None
                and declaration.requiredWhen.option not in failed
                and declaration.requiredWhen.holds(values)
            )
            if needed and cliName not in explicit and cliName not in failed:
                why = ""
                if declaration.requiredWhen is not None and not declaration.required:
                    controlling = _controlling(cls, parentClass, declaration.requiredWhen)
                    why = f" when {declaration.requiredWhen.describe(controlling.valueType)}"
                hint = declaration.missingHint or (
                    f"set {cliName} to {declaration.valueType.describe()}"
                )
                self.error(location, f"{description}: {cliName} is required{why}; {hint}")
                valid = False

        self.found.append(_Found(description, cls, values, locations, location))
        children: dict[str, object] = {}
        for path, table in nestedTables.items():
            entries, _ = self._buildTable(
                table, nested.get(path, []), description, context, cls, values
            )
            children[table.attribute] = FrozenMap(entries)

        if not valid:
            return None
        arguments = {declared[c].attribute: v for c, v in values.items()}
        arguments.update(children)
        arguments.update(key)
        return cls(
            explicit=frozenset(explicit),
            location=location,
            optionLocations=FrozenMap(locations),
            **arguments,
        )


def _controlling(cls: type, parentClass: type | None, condition: Any) -> Option:
    # The declaration of the option a condition reads, on the object or on
    # the object holding its table.
    owner = parentClass if condition.parent is not None else cls
    assert owner is not None
    for declaration in optionsOf(owner):
        if declaration.cliName == condition.option:
            return declaration
    raise KeyError(condition.option)  # pragma: no cover (declarations are checked by tests)


def _line(location: Location | None) -> str:
    return "?" if location is None else str(location.line)


def _renderKey(key: Key, value: object) -> str:
    return str(value) if key.numeric else shown(str(value), 80)


def _sorted(errors: Iterable[ConfigError]) -> list[ConfigError]:
    def order(error: ConfigError) -> tuple[int, str, int]:
        if error.location is None:
            return (1, "", 0)
        return (0, error.location.path, error.location.line)

    return sorted(errors, key=order)


def _describe(table: Table, key: object, parent: str = "") -> str:
    keyDeclaration = keyOf(table.objectClass)
    assert keyDeclaration is not None
    return f"{parent} {table.title} {_renderKey(keyDeclaration, key)}".strip()


_TABLES = {t.attribute: t for t in tablesOf(Config)}

#: The tables whose entries have names (not numbers).
_NAMED = frozenset(
    t.attribute
    for t in _TABLES.values()
    if not t.singleton and not keyOf(t.objectClass).numeric  # type: ignore[union-attr]
)


class _Checker:
    """
    The rules that span objects, checked on the assembled model (which
    holds only the objects whose own options are valid).
    """

    def __init__(self, builder: _Builder, config: Config) -> None:
        self.builder = builder
        self.config = config
        self.error = builder.error
        self.warning = builder.warning

    def check(self) -> None:
        """
        Check every rule, recording each problem with the builder.
        """
        for found in self.builder.found:
            self._references(found)
        self._addressRules()
        self._groupLoops()
        self._schedules()
        self._certificates()
        self._vips()
        self._accessProxies()
        self._clientCertificates()
        self._policies()
        self._emsConnectors()

    # ----------------------------------------------------------- references

    def _references(self, found: _Found) -> None:
        for declaration in optionsOf(found.objectClass):
            valueType = declaration.valueType
            if not isinstance(valueType, (Reference, ReferenceList)):
                continue
            if declaration.refused is not None:
                continue
            value = found.values[declaration.cliName]
            for name in valueType.names(value):  # type: ignore[arg-type]
                self._resolve(found, declaration, valueType, name)

    def _resolve(
        self,
        found: _Found,
        declaration: Option,
        valueType: Reference | ReferenceList,
        name: str,
    ) -> None:
        description = found.description
        if name in valueType.builtinNames:
            return
        defined = self.builder.defined
        if any(name in defined.get(t, {}) for t in valueType.targets):
            return
        where = found.locations.get(declaration.cliName, found.location)
        elsewhere = [
            t
            for t, names in defined.items()
            if t not in valueType.targets and name in names and t in _NAMED
        ]
        if elsewhere:
            table = _TABLES[elsewhere[0]]
            self.error(
                where,
                f"{description}: {declaration.cliName}: {shown(name)} is a "
                f"config {table.title} entry, not {_a(valueType.noun)}",
            )
            return
        candidates = [
            str(k)
            for t in valueType.targets
            for k in defined.get(t, {})
        ]
        tables = ", ".join(f"config {_TABLES[t].title}" for t in valueType.targets)
        if candidates:
            close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.75)
            hint = f" (did you mean {shown(close[0])}?)" if close else ""
            listed = ", ".join(shown(c) for c in candidates[:_LISTED])
            if len(candidates) > _LISTED:
                listed += ", ..."
            defined_ = f"defined: {listed}"
        else:
            hint = ""
            defined_ = "none is defined"
        extra = ""
        if valueType.builtinNames:
            extra = " (or " + ", ".join(valueType.builtinNames) + ")"
        self.error(
            where,
            f"{description}: {declaration.cliName}: no {valueType.noun} named "
            f"{shown(name)}{hint} in {tables}{extra}; {defined_}",
        )

    # ------------------------------------------------------------ addresses

    def _addressRules(self) -> None:
        for name, address in self.config.addresses.items():
            if address.builtin or address.type != "iprange":
                continue
            start, end = address.startIp, address.endIp
            if start is not None and end is not None and start > end:
                self.error(
                    address.whereSet("end-ip"),
                    f"firewall address {shown(name)}: end-ip {address.endIp} is "
                    f"before start-ip {address.startIp}",
                )

    def _groupLoops(self) -> None:
        groups = self.config.addressGroups
        reported: set[str] = set()

        def visit(name: str, path: list[str]) -> None:
            group = groups.get(name)
            if group is None:
                return
            for member in group.member + group.excludeMember:
                if member in path:
                    loop = path[path.index(member):] + [member]
                    first = loop[0]
                    if first not in reported:
                        reported.update(loop)
                        self.error(
                            groups[first].whereSet("member"),
                            f"firewall addrgrp {shown(first)}: contains itself: "
                            + " -> ".join(shown(n) for n in loop),
                        )
                    continue
                if member in groups and member not in done:
                    visit(member, path + [member])
            done.add(name)

        done: set[str] = set()
        for name in groups:
            if name not in done:
                visit(name, [name])

    # ------------------------------------------------------------ schedules

    def _schedules(self) -> None:
        for name, schedule in self.config.onetimeSchedules.items():
            start, end = schedule.start, schedule.end
            if start is not None and end is not None and end <= start:
                self.error(
                    schedule.whereSet("end"),
                    f"firewall schedule onetime {shown(name)}: end is not after start",
                )
        for name, recurring in self.config.recurringSchedules.items():
            if not recurring.builtin and not recurring.day:
                self.warning(
                    recurring.location,
                    f"firewall schedule recurring {shown(name)}: day is none, "
                    "so the schedule is never active",
                )

    # --------------------------------------------------------- certificates

    def _certificates(self) -> None:
        inlineKey: tuple[str, Location | None] | None = None
        for name, entry in self.config.localCertificates.items():
            description = f"vpn certificate local {shown(name)}"
            if entry.privateKey is not None and inlineKey is None:
                inlineKey = (name, entry.whereSet("private-key"))
            shape = checkLocalCertificateShape(entry)
            for problem in shape:
                self.error(entry.whereSet(problem.option), f"{description}: {problem.message}")
            if shape or isPendingGeneration(entry):
                continue
            try:
                loadLocalCertificate(entry)
            except CertificateProblem as problem:
                self.error(entry.whereSet(problem.option), f"{description}: {problem.message}")
        if inlineKey is not None and self.builder.configFile is not None:
            try:
                problem = privateFileProblem(self.builder.configFile)
            except OSError as e:
                problem = f"cannot be examined ({e.strerror})"
            if problem is not None:
                self.error(
                    inlineKey[1],
                    f"vpn certificate local {shown(inlineKey[0])}: the "
                    "configuration holds an inline private key, but the "
                    f"configuration file {problem}",
                )
        for name, ca in self.config.caCertificates.items():
            try:
                loadCaCertificate(ca)
            except CertificateProblem as problem:
                self.error(
                    ca.whereSet(problem.option),
                    f"vpn certificate ca {shown(name)}: {problem.message}",
                )

    # ---------------------------------------------------------------- VIPs

    def _vips(self) -> None:
        listening: dict[tuple[ipaddress.IPv4Address, int], str] = {}
        for name, vip in self.config.vips.items():
            description = f"firewall vip {shown(name)}"
            order = ("tls-1.0", "tls-1.1", "tls-1.2", "tls-1.3")
            if order.index(vip.sslMinVersion) > order.index(vip.sslMaxVersion):
                self.error(
                    vip.whereSet("ssl-max-version"),
                    f"{description}: ssl-max-version {vip.sslMaxVersion} is "
                    f"below ssl-min-version {vip.sslMinVersion}",
                )
            if self.config.accessProxyOf(name) is None and name in self.config.vips:
                self.warning(
                    vip.location,
                    f"{description}: no access proxy uses this VIP, so it "
                    "answers every request with error 021",
                )
            if not vip.status or vip.extip is None or vip.extport is None:
                continue
            for (ip, port), other in listening.items():
                if port != vip.extport:
                    continue
                unspecified = ipaddress.IPv4Address(0)
                if ip == vip.extip or unspecified in (ip, vip.extip):
                    self.error(
                        vip.whereSet("extport"),
                        f"{description}: {vip.extip}:{vip.extport} overlaps "
                        f"firewall vip {shown(other)} ({ip}:{port}); two "
                        "enabled VIPs cannot listen on the same address and port",
                    )
                    break
            else:
                listening[(vip.extip, vip.extport)] = name

    def _accessProxies(self) -> None:
        users: dict[str, str] = {}
        for name, accessProxy in self.config.accessProxies.items():
            description = f"firewall access-proxy {shown(name)}"
            if accessProxy.vip is not None:
                if accessProxy.vip in users:
                    self.error(
                        accessProxy.whereSet("vip"),
                        f"{description}: VIP {shown(accessProxy.vip)} is already "
                        f"used by firewall access-proxy {shown(users[accessProxy.vip])}; "
                        "one access proxy per VIP",
                    )
                else:
                    users[accessProxy.vip] = name
            if not accessProxy.apiGateways:
                self.warning(
                    accessProxy.location,
                    f"{description}: no api-gateway, so every request is "
                    "answered with error 021",
                )
            for gatewayId, gateway in accessProxy.apiGateways.items():
                self._apiGateway(f"{description} api-gateway {gatewayId}", gateway)

    def _apiGateway(self, description: str, gateway: ApiGateway) -> None:
        if gateway.urlMapType == "regex":
            try:
                re.compile(gateway.urlMap)
            except (re.error, RecursionError, OverflowError) as e:
                self.error(
                    gateway.whereSet("url-map"),
                    f"{description}: url-map {shown(gateway.urlMap)} is not a "
                    f"valid regular expression ({e})",
                )
        if gateway.service == "tcp-forwarding" and gateway.ldbMethod == "http-host":
            self.error(
                gateway.whereSet("ldb-method"),
                f"{description}: ldb-method http-host needs service http or "
                "https: a tunnel has no Host to choose by; use static, "
                "round-robin, weighted or first-alive",
            )
        if not gateway.realServers:
            self.warning(
                gateway.location,
                f"{description}: no real servers, so every request it takes is "
                "answered with error 022",
            )
        for serverId, server in gateway.realServers.items():
            self._realServer(f"{description} realservers {serverId}", gateway, server)

    def _realServer(self, description: str, gateway: ApiGateway, server: RealServer) -> None:
        addresses = self.config.addresses
        tcp = gateway.service == "tcp-forwarding"
        if server.addrType == "ip":
            unspecified = server.ip == ipaddress.IPv4Address(0)
            if server.address is not None and not unspecified:
                self.error(
                    server.whereSet("ip"),
                    f"{description}: set ip or address, not both",
                )
            elif server.address is None and unspecified:
                self.error(
                    server.location,
                    f"{description}: addr-type ip needs ip (a real address, not "
                    "0.0.0.0) or address",
                )
            elif server.address is not None:
                fqdns = self._fqdnMembers(server.address)
                if fqdns:
                    self.error(
                        server.whereSet("address"),
                        f"{description}: address {shown(server.address)} "
                        f"contains the fqdn address {shown(fqdns[0])}; use "
                        "addr-type fqdn for a DNS name",
                    )
        else:
            if server.address is None:
                if not (tcp and server.domain is not None):
                    needed = (
                        "address naming an fqdn address, or domain"
                        if tcp
                        else "address naming an fqdn address"
                    )
                    self.error(server.location, f"{description}: addr-type fqdn needs {needed}")
            elif server.address in addresses:
                address = addresses[server.address]
                if address.type != "fqdn":
                    self.error(
                        server.whereSet("address"),
                        f"{description}: addr-type fqdn needs an fqdn address, "
                        f"but {shown(server.address)} has type {address.type}",
                    )
            elif server.address in self.config.addressGroups:
                self.error(
                    server.whereSet("address"),
                    f"{description}: addr-type fqdn needs an fqdn address, not "
                    f"the address group {shown(server.address)}",
                )
        if server.domain is not None and server.addrType == "ip" and server.address is not None:
            if self._known(server.address) and self.config.singleAddress(server.address) is None:
                self.error(
                    server.whereSet("domain"),
                    f"{description}: with domain, address must name one host (a "
                    "/32 subnet or a one-address range): this real server is a "
                    f"member of the pool for the names under {shown(server.domain)} "
                    "and needs one address to connect to; use ip, or give the "
                    "subnet a real server of its own",
                )
        if (
            tcp
            and server.healthCheck
            and server.mappedport
            and not any(server.port in ports for ports in server.mappedport)
        ):
            self.warning(
                server.whereSet("health-check"),
                f"{description}: its health checks probe port {server.port}, "
                "which is not one of its mappedport (set port to one the server "
                "listens on)",
            )
        if server.healthCheck and server.healthCheckProto == "ping" and "health-check-proto" not in server.optionLocations:
            # An explicit ping is refused by its value type; the default
            # must be too, or every server of the pool would be marked
            # down by a check that can never be sent.
            from ztnagw.gateway.health import icmpProblem

            problem = icmpProblem()
            if problem is not None:
                self.error(
                    server.whereSet("health-check"),
                    f"{description}: health-check-proto is ping by default, and ping "
                    f"cannot be used on this machine: {problem}; set "
                    "health-check-proto tcp-connect or http",
                )
        if tcp and server.healthCheck and not self._namesOneHost(server):
            self.error(
                server.whereSet("health-check"),
                f"{description}: health-check needs a real server naming one host "
                "(ip, an address of one host, or an fqdn address): a subnet, a "
                "group or a domain alone has no one host to check",
            )

    def _namesOneHost(self, server: RealServer) -> bool:
        if server.addrType == "ip":
            assert server.ip != ipaddress.IPv4Address(0) or server.address is not None
            # A dangling name is reported on its own.
            return self.config.realServerAddress(server) is not None or not self._known(server.address)  # type: ignore[arg-type]
        return server.address is not None

    def _known(self, name: str) -> bool:
        return name in self.config.addresses or name in self.config.addressGroups

    def _fqdnMembers(self, name: str) -> list[str]:
        try:
            leaves = self.config.addressSet([name]).leaves()
        except (KeyError, ValueError):
            # Dangling names and loops are reported on their own.
            return []
        return [
            leaf.name
            for leaf in leaves
            if isinstance(leaf, Address) and leaf.type == "fqdn"
        ]

    # ----------------------------------------------- client certificates

    def _clientCertificates(self) -> None:
        """
        The precedence rule of L{Config.clientCertificateSettings}: a VIP
        and its access proxy must not disagree, and an explicit
        C{empty-cert-action} must be able to take effect.
        """
        config = self.config
        for kind, table in (
            ("firewall vip", config.vips),
            ("firewall access-proxy", config.accessProxies),
            ("firewall access-proxy-virtual-host", config.virtualHosts),
        ):
            for name, obj in table.items():
                if obj.clientCert is False and obj.emptyCertAction is not None:
                    self.error(
                        obj.whereSet("empty-cert-action"),
                        f"{kind} {shown(name)}: empty-cert-action is not "
                        "configurable with client-cert disable (FortiOS); "
                        "remove it",
                    )
        # Every (VIP, virtual host) pair requests can arrive on, and which
        # objects' empty-cert-action takes effect in at least one.
        effective: set[int] = set()
        candidates: dict[int, tuple[str, ConfigObject]] = {}
        for vipName, vip in config.vips.items():
            accessProxy = config.accessProxyOf(vipName)
            hosts: list[VirtualHost | None] = [None]
            if accessProxy is not None:
                for gateway in accessProxy.apiGateways.values():
                    if gateway.virtualHost in config.virtualHosts:
                        hosts.append(config.virtualHosts[gateway.virtualHost])
            try:
                for cliName in ("client-cert", "empty-cert-action", "user-agent-detect"):
                    settingSources(cliName, vip, accessProxy, None)
            except ConflictingSettings as conflict:
                assert accessProxy is not None
                self.error(
                    accessProxy.whereSet(conflict.option),
                    f"firewall access-proxy {shown(accessProxy.name)}: "
                    f"{conflict.option} differs from the one of its firewall vip "
                    f"{shown(vipName)} (line {_line(vip.whereSet(conflict.option))}); "
                    "set it in one place (FortiOS 7.6: the VIP)",
                )
                continue
            for host in hosts:
                level, sources = settingSources("empty-cert-action", vip, accessProxy, host)
                certLevel, certSources = settingSources("client-cert", vip, accessProxy, host)
                clientCert = certSources[0].clientCert if certLevel else True
                for source in sources:
                    candidates.setdefault(id(source), (self._kindOf(source), source))
                    if clientCert:
                        effective.add(id(source))
        for key, (kind, source) in candidates.items():
            if key in effective or source.clientCert is False:  # type: ignore[attr-defined]
                continue
            name = source.name  # type: ignore[attr-defined]
            self.error(
                source.whereSet("empty-cert-action"),
                f"{kind} {shown(name)}: empty-cert-action never takes "
                "effect, because client certificates are disabled (client-cert "
                "disable) wherever it applies; remove it",
            )

    @staticmethod
    def _kindOf(obj: ConfigObject) -> str:
        if isinstance(obj, Vip):
            return "firewall vip"
        if isinstance(obj, AccessProxy):
            return "firewall access-proxy"
        return "firewall access-proxy-virtual-host"

    # ------------------------------------------------------------- policies

    def _policies(self) -> None:
        config = self.config
        tables: tuple[tuple[str, FrozenMap[int, Any]], ...] = (
            ("firewall policy", config.policies),
            ("firewall proxy-policy", config.proxyPolicies),
        )
        for table, policies in tables:
            for policyId, policy in policies.items():
                description = f"{table} {policyId}"
                self._tags(description, policy)
                if isinstance(policy, FirewallPolicy):
                    vips = [n for n in policy.dstaddr if n in config.vips]
                    namedVip = any(n in self.builder.defined["vips"] for n in policy.dstaddr)
                    if not vips and not namedVip and not policy.ztnaStatus and policy.dstaddr:
                        self.error(
                            policy.whereSet("dstaddr"),
                            f"{description}: ztnagw is not a packet firewall: a "
                            "firewall policy must name an access-proxy VIP in "
                            "dstaddr (a ZTNA policy) or have ztna-status enable",
                        )

    def _tags(self, description: str, policy: FirewallPolicy | ProxyPolicy) -> None:
        configured = self.builder.defined["emsConnectors"]
        for declaration in optionsOf(type(policy)):
            if not isinstance(declaration.valueType, EmsTags):
                continue
            for tag in getattr(policy, declaration.attribute):
                if tag.emsId not in configured:
                    ids = ", ".join(str(i) for i in configured) or "none"
                    self.error(
                        policy.whereSet(declaration.cliName),
                        f"{description}: {declaration.cliName}: {tag} names EMS "
                        f"{tag.emsId}, but there is no config endpoint-control "
                        f"fctems entry {tag.emsId} (configured: {ids})",
                    )

    # ------------------------------------------------------------------ EMS

    def _emsConnectors(self) -> None:
        config = self.config
        listeners: dict[tuple[str, int], str] = {}
        for vipName, vip in config.vips.items():
            if vip.status and vip.extip is not None and vip.extport is not None:
                listeners[(str(vip.extip), vip.extport)] = f"firewall vip {shown(vipName)}"
        for emsId, ems in config.emsConnectors.items():
            description = f"endpoint-control fctems {emsId}"
            if ems.caCertificate is not None and ems.caCertificate in config.localCertificates:
                entry = config.localCertificates[ems.caCertificate]
                if entry.autoGenerate:
                    self.error(
                        ems.whereSet("ca-certificate"),
                        f"{description}: ca-certificate {shown(ems.caCertificate)} "
                        "has auto-generate enable, but the EMS CA cannot be "
                        "issued by itself; give its files, or unset "
                        "ca-certificate to use the CA of 'ztnagw ems init'",
                    )
                elif not checkLocalCertificateShape(entry):
                    try:
                        material = loadLocalCertificate(entry)
                    except CertificateProblem:
                        pass  # reported with the certificate
                    else:
                        if not _isCA(material.certificate):
                            self.error(
                                ems.whereSet("ca-certificate"),
                                f"{description}: ca-certificate "
                                f"{shown(ems.caCertificate)} is not a CA "
                                "certificate (basic constraints CA:TRUE)",
                            )
            if not ems.status or ems.server is None:
                continue
            for (host, port), other in listeners.items():
                overlaps = host == ems.server or "0.0.0.0" in (host, ems.server)
                if port == ems.httpsPort and overlaps:
                    self.error(
                        ems.whereSet("https-port"),
                        f"{description}: {ems.server}:{ems.httpsPort} is also "
                        f"where {other} listens; the EMS listener needs its own "
                        "address and port",
                    )
                    break
            else:
                listeners[(ems.server, ems.httpsPort)] = description


def _isCA(certificate: Any) -> bool:
    from cryptography import x509

    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        return False
    return bool(constraints.value.ca)


def _a(noun: str) -> str:
    return ("an " if noun[:1] in "aeiouAEIOU" else "a ") + noun
