# -*- test-case-name: tests.config.test_addresses -*-
"""
What a list of address names stands for, and whether an IP address is in
it.

Policies name addresses, address groups (which may nest and exclude) and
VIPs.  The access decision needs one question answered, "is this client
address in C{srcaddr}?", without knowing about groups.  L{addressSet}
flattens names into an L{AddressSet} once; L{AddressSet.contains} answers
the question as a pure function.  FQDN addresses need DNS, which is I/O:
the caller resolves the names that L{AddressSet.fqdns} lists (without
blocking the reactor) and passes the answers in, so this module never does
I/O and never guesses.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Iterable, Mapping

from attrs import frozen

if TYPE_CHECKING:  # pragma: no cover
    from ztnagw.config.model import Address, Config, Vip

__all__ = [
    "AddressSet",
    "AddressTerm",
    "UnresolvedAddress",
    "addressContains",
    "addressSet",
    "leafContains",
]

#: DNS answers: for each FQDN, its addresses (empty when it did not resolve).
Resolved = Mapping[str, Iterable[ipaddress.IPv4Address]]


class UnresolvedAddress(LookupError):
    """
    Membership depends on an FQDN address that the caller did not resolve.

    @ivar fqdn: the name.
    """

    def __init__(self, fqdn: str) -> None:
        super().__init__(f"the address of {fqdn} is needed but was not resolved")
        self.fqdn = fqdn


def leafContains(
    leaf: "Address | Vip", ip: ipaddress.IPv4Address, resolved: Resolved
) -> bool:
    """
    Whether one address object (not a group) contains C{ip}.

    A subnet contains its addresses, a range its addresses from start to
    end included, an FQDN the addresses it resolved to, and a VIP its
    C{extip} (every address, for 0.0.0.0).

    @raise UnresolvedAddress: C{leaf} is an FQDN address missing from
        C{resolved}.
    """
    from ztnagw.config.model import Vip

    if isinstance(leaf, Vip):
        return leaf.extip is not None and (
            leaf.extip == ip or leaf.extip == ipaddress.IPv4Address(0)
        )
    if leaf.type == "ipmask":
        return ip in leaf.subnet
    if leaf.type == "iprange":
        return (
            leaf.startIp is not None
            and leaf.endIp is not None
            and leaf.startIp <= ip <= leaf.endIp
        )
    assert leaf.fqdn is not None
    if leaf.fqdn not in resolved:
        raise UnresolvedAddress(leaf.fqdn)
    return ip in set(resolved[leaf.fqdn])


def _anyContains(
    leaves: "tuple[Address | Vip, ...]", ip: ipaddress.IPv4Address, resolved: Resolved
) -> bool:
    # Leaves that need no DNS answer first, so that the answer does not
    # depend on the order of the names: an unresolved FQDN matters only
    # when nothing else decides.
    missing: str | None = None
    for leaf in leaves:
        fqdn = getattr(leaf, "fqdn", None)
        if getattr(leaf, "type", None) == "fqdn" and fqdn not in resolved:
            missing = missing or fqdn
            continue
        if leafContains(leaf, ip, resolved):
            return True
    if missing is not None:
        raise UnresolvedAddress(missing)
    return False


@frozen
class AddressTerm:
    """
    Addresses in any of C{include} and not in C{exclude}.
    """

    include: "tuple[Address | Vip, ...]"
    exclude: "AddressSet"


@frozen
class AddressSet:
    """
    A flattened set of addresses: the union of its terms.  Groups are
    gone: every leaf is an L{Address} (subnet, range or FQDN) or a VIP,
    and group exclusions became the terms' C{exclude} sets.
    """

    terms: tuple[AddressTerm, ...] = ()

    def contains(
        self, ip: ipaddress.IPv4Address, resolved: Resolved | None = None
    ) -> bool:
        """
        Whether C{ip} is in the set.

        @param resolved: the addresses of the FQDNs in L{fqdns}.
        @raise UnresolvedAddress: the answer depends on an FQDN missing
            from C{resolved} (no other address decided it).  Resolve every
            name in L{fqdns} first; an FQDN that does not resolve maps to
            no address.
        """
        answers: Resolved = {} if resolved is None else resolved
        for term in self.terms:
            if _anyContains(term.include, ip, answers):
                if not term.exclude.contains(ip, answers):
                    return True
        return False

    def fqdns(self) -> frozenset[str]:
        """
        The FQDNs that L{contains} may need resolved.
        """
        names: set[str] = set()
        for term in self.terms:
            for leaf in term.include:
                fqdn = getattr(leaf, "fqdn", None)
                if getattr(leaf, "type", None) == "fqdn" and fqdn is not None:
                    names.add(fqdn)
            names |= term.exclude.fqdns()
        return frozenset(names)

    def leaves(self) -> "tuple[Address | Vip, ...]":
        """
        Every included leaf, in order, without repetition (exclusions
        aside).
        """
        seen: dict[int, object] = {}
        for term in self.terms:
            for leaf in term.include:
                seen.setdefault(id(leaf), leaf)
        return tuple(seen.values())  # type: ignore[arg-type]


def addressSet(config: "Config", names: Iterable[str]) -> AddressSet:
    """
    Flatten address, group and VIP names into an L{AddressSet}.

    @raise KeyError: a name is none of these (a loaded configuration
        never has one).
    @raise ValueError: a group contains itself (a loaded configuration
        never has one).
    """
    return _flatten(config, tuple(names), ())


def _flatten(config: "Config", names: tuple[str, ...], path: tuple[str, ...]) -> AddressSet:
    terms: list[AddressTerm] = []
    plain: list[object] = []
    empty = AddressSet()

    def flushPlain() -> None:
        if plain:
            terms.append(AddressTerm(tuple(plain), empty))  # type: ignore[arg-type]
            plain.clear()

    for name in names:
        if name in config.addresses:
            plain.append(config.addresses[name])
        elif name in config.vips:
            plain.append(config.vips[name])
        elif name in config.addressGroups:
            if name in path:
                raise ValueError(
                    "address group loop: " + " -> ".join(path + (name,))
                )
            group = config.addressGroups[name]
            members = _flatten(config, group.member, path + (name,))
            if group.exclude and group.excludeMember:
                excluded = _flatten(config, group.excludeMember, path + (name,))
                for term in members.terms:
                    terms.append(
                        AddressTerm(
                            term.include,
                            AddressSet(term.exclude.terms + excluded.terms),
                        )
                    )
            else:
                for term in members.terms:
                    if term.exclude.terms:
                        flushPlain()
                        terms.append(term)
                    else:
                        plain.extend(term.include)
        else:
            raise KeyError(name)
    flushPlain()
    return AddressSet(tuple(terms))


def addressContains(
    config: "Config",
    names: Iterable[str],
    ip: ipaddress.IPv4Address,
    resolved: Resolved | None = None,
) -> bool:
    """
    Whether C{ip} is in the addresses, groups and VIPs called C{names}.

    A shortcut for C{config.addressSet(names).contains(ip, resolved)};
    callers that test many addresses against one policy should keep the
    L{AddressSet}.

    @raise UnresolvedAddress: see L{AddressSet.contains}.
    """
    return addressSet(config, names).contains(ip, resolved)
