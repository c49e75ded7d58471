# -*- test-case-name: tests.forwarder.test_rules -*-
"""
What the forwarder listens on and where each connection is tunnelled: the
C{-L} option and the rules file.

FortiClient keeps "ZTNA connection rules" (a name, the destination
C{host:port}, the gateway, encryption on or off, a local port); users of
ztnagw write the same thing either on the command line, ssh-style
(C{-L [BIND:]LPORT:DEST:DPORT}), or in a rules file, an INI file with one
section per rule::

    # Options in [defaults] apply to every rule that does not set them.
    [defaults]
    gateway = gw.example.com:443

    [ssh-jump]
    destination = 10.88.0.5:22
    listen = 2222

    [payroll-db]
    destination = db.corp.example:5432
    listen = 127.0.0.1:15432
    encryption = off
    gateway = gw2.example.com:8443

Keys: C{destination} (required), C{listen} (required: C{[BIND:]PORT}),
C{gateway} (else the one given with C{--gateway} or in the profile),
C{encryption} (C{on} or C{off}; default C{on}).  Anything else is an error
with the line it is on: a misspelt key must not silently change where
traffic goes.

Both forms give the same L{ForwardRule}.  Listening addresses are checked
here too: loopback by default, anything else only when the user said so
(L{checkListenAddress}).
"""

from __future__ import annotations

import configparser
import ipaddress

from attrs import frozen

from ztnagw.tunnel.wire import TunnelTarget, parseHost, parseHostPort, parsePort

__all__ = [
    "ForwardRule",
    "ListenAddress",
    "RuleError",
    "checkListenAddress",
    "parseForwardSpec",
    "parseGateway",
    "parseListenAddress",
    "parseRules",
    "splitColons",
]

#: Keys a rule may set.
RULE_KEYS = frozenset({"destination", "listen", "gateway", "encryption"})
#: Keys the C{[defaults]} section may set.
DEFAULT_KEYS = frozenset({"gateway", "encryption"})

_ON = {"on": True, "enable": True, "yes": True, "true": True, "1": True}
_OFF = {"off": False, "disable": False, "no": False, "false": False, "0": False}


class RuleError(ValueError):
    """
    A forwarding rule (command line or rules file) is wrong; the message
    says where and why.
    """


@frozen
class ListenAddress:
    """
    A local address to accept application connections on.

    @ivar host: an IP address (C{127.0.0.1}, C{::1}, C{0.0.0.0}...).
    @ivar port: the TCP port; 0 lets the system choose.
    """

    host: str
    port: int

    @property
    def isLoopback(self) -> bool:
        """
        Whether only this machine can connect.
        """
        return ipaddress.ip_address(self.host).is_loopback

    def __str__(self) -> str:
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


@frozen
class ForwardRule:
    """
    Listen on L{listen}; tunnel each connection to L{destination} through
    L{gateway}.

    @ivar name: how logs name the rule.
    @ivar listen: where to accept connections.
    @ivar destination: where to tunnel them, with the encryption choice.
    @ivar gateway: C{(host, port)} of the gateway, or C{None} for the
        default gateway.
    """

    name: str
    listen: ListenAddress
    destination: TunnelTarget
    gateway: tuple[str, int] | None = None


def splitColons(text: str) -> list[str]:
    """
    Split C{text} at colons outside square brackets (so that
    C{[::1]:22} is two parts).

    @raise RuleError: unbalanced brackets.
    """
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for character in text:
        if character == "[":
            depth += 1
            if depth > 1:
                raise RuleError(f"{text!r}: nested '['")
        elif character == "]":
            depth -= 1
            if depth < 0:
                raise RuleError(f"{text!r}: ']' without '['")
        if character == ":" and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(character)
    if depth != 0:
        raise RuleError(f"{text!r}: '[' without ']'")
    parts.append("".join(current))
    return parts


def _bindHost(text: str) -> str:
    if text in ("localhost", ""):
        return "127.0.0.1"
    if text == "*":
        return "0.0.0.0"
    try:
        host = parseHost(text)
    except ValueError as e:
        raise RuleError(f"listen address: {e}") from None
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise RuleError(
            f"listen address {text!r}: give an IP address (or localhost), not a "
            "host name"
        ) from None
    return host


def _listenPort(text: str) -> int:
    if text == "0":
        return 0
    try:
        return parsePort(text)
    except ValueError as e:
        raise RuleError(f"listen port: {e}") from None


def parseListenAddress(text: str) -> ListenAddress:
    """
    Read C{[BIND:]PORT}: C{2222}, C{127.0.0.1:2222}, C{[::1]:2222},
    C{localhost:2222}, C{*:2222} (every address).  Without C{BIND}, the
    address is C{127.0.0.1}.  Port 0 lets the system choose.

    @raise RuleError: malformed, or a host name other than C{localhost}
        (names are not resolved for listening).
    """
    parts = splitColons(text)
    if len(parts) == 1:
        return ListenAddress("127.0.0.1", _listenPort(parts[0]))
    if len(parts) == 2:
        return ListenAddress(_bindHost(parts[0]), _listenPort(parts[1]))
    raise RuleError(f"{text!r} is not [BIND:]PORT")


def _destination(text: str, encrypted: bool) -> TunnelTarget:
    try:
        host, port = parseHostPort(text)
    except ValueError as e:
        raise RuleError(f"destination: {e}") from None
    return TunnelTarget(host, port, encrypted)


def parseGateway(text: str) -> tuple[str, int]:
    """
    Read the gateway's C{HOST:PORT}.

    @raise RuleError: malformed.
    """
    try:
        return parseHostPort(text)
    except ValueError as e:
        raise RuleError(f"gateway: {e}") from None


def parseForwardSpec(text: str, encrypted: bool = True) -> ForwardRule:
    """
    Read an ssh-style C{-L [BIND:]LPORT:DEST:DPORT}.

    @param encrypted: the encryption choice for the tunnel.
    @raise RuleError: malformed.
    """
    parts = splitColons(text)
    if len(parts) == 3:
        listen = ListenAddress("127.0.0.1", _listenPort(parts[0]))
    elif len(parts) == 4:
        listen = ListenAddress(_bindHost(parts[0]), _listenPort(parts[1]))
    else:
        raise RuleError(f"-L {text!r} is not [BIND:]LPORT:DEST:DPORT")
    destination = _destination(f"{parts[-2]}:{parts[-1]}", encrypted)
    return ForwardRule(name=f"-L {text}", listen=listen, destination=destination)


def checkListenAddress(listen: ListenAddress, allowRemote: bool) -> None:
    """
    Refuse a listening address other machines can reach unless the user
    allowed it: whoever connects to a forwarder uses the device's identity.

    @raise RuleError: refused; the message names the flag.
    """
    if not allowRemote and not listen.isLoopback:
        raise RuleError(
            f"{listen} is reachable from other machines, which could then use "
            "this device's access; listen on 127.0.0.1 (the default), or give "
            "--allow-remote-clients"
        )


def _flag(value: str, where: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _ON:
        return _ON[lowered]
    if lowered in _OFF:
        return _OFF[lowered]
    raise RuleError(f"{where}: encryption must be on or off, not {value!r}")


def parseRules(text: str, source: str = "<rules>") -> list[ForwardRule]:
    """
    Read a rules file (see the module docstring).

    @param source: the file's name, for messages.
    @raise RuleError: anything wrong; the message names the file, the rule
        and, where possible, the line.
    """
    parser = configparser.ConfigParser(
        interpolation=None,
        strict=True,
        empty_lines_in_values=False,
        default_section="\x00none",
    )
    # Keys are compared in lower case; values are kept as written.
    try:
        parser.read_string(text, source=source)
    except configparser.Error as e:
        message = " ".join(str(e).split())
        raise RuleError(f"{source}: {message}") from None
    defaults: dict[str, str] = {}
    if parser.has_section("defaults"):
        for key, value in parser.items("defaults"):
            if key not in DEFAULT_KEYS:
                raise RuleError(
                    f"{source}: [defaults]: unknown key {key!r} (known: "
                    f"{', '.join(sorted(DEFAULT_KEYS))})"
                )
            defaults[key] = value
    rules = []
    for name in parser.sections():
        if name == "defaults":
            continue
        where = f"{source}: [{name}]"
        values = dict(parser.items(name))
        for key in values:
            if key not in RULE_KEYS:
                raise RuleError(
                    f"{where}: unknown key {key!r} (known: {', '.join(sorted(RULE_KEYS))})"
                )
        for required in ("destination", "listen"):
            if not values.get(required, "").strip():
                raise RuleError(f"{where}: {required} is required")
        encryptionText = values.get("encryption", defaults.get("encryption", "on"))
        encrypted = _flag(encryptionText, where)
        gatewayText = values.get("gateway", defaults.get("gateway"))
        try:
            destination = _destination(values["destination"].strip(), encrypted)
            listen = parseListenAddress(values["listen"].strip())
            gateway = None if gatewayText is None else parseGateway(gatewayText.strip())
        except RuleError as e:
            raise RuleError(f"{where}: {e}") from None
        rules.append(ForwardRule(name=name, listen=listen, destination=destination, gateway=gateway))
    if not rules:
        raise RuleError(f"{source}: no rules (a rule is a [NAME] section)")
    return rules
