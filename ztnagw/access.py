# -*- test-case-name: tests.test_access -*-
"""
The access decision: may this request (or tunnel) go through, and if not,
which ZTNA error code says why.

Both proxies, the HTTPS access proxy and the TCP forwarding access proxy,
ask the same question, and they must get the same answer for the same
facts.  So the answer is one pure function, L{decide}, of the facts
(L{RequestFacts}: the device verdict, the client's address, the VIP, the
destination, the time...) and of the policies compiled from the
configuration (L{PolicySet}).  It does no I/O, reads no clock and keeps no
state, which lets the tests walk through every case without sockets.

The order of the checks, first to last (FortiOS's, as far as it is
documented; docs/error-codes.md lists the codes):

  1. The client certificate.  With C{client-cert disable} none is asked
     for and the client is anonymous.  Without a certificate,
     C{empty-cert-action} decides: C{block} denies with 002, C{accept}
     admits the client anonymously, C{accept-unmanageable} admits it only
     if it does not look manageable (the User-Agent rule in
     C{docs/error-codes.md}), else 003.  A certificate that is presented
     must be valid and its device acceptable (the device verdict: 001,
     063, 064, 066, 067); a bad certificate never falls back to anonymous
     access.
  2. The policies that apply to the VIP, firewall (simple ZTNA) policies
     first and then proxy-policies, each list in configuration order.  The
     first policy whose every criterion matches decides: C{accept} allows,
     C{deny} denies with 062 (064 when the policy matched on tags).
  3. No policy matched: 061, unless a policy failed to match only because
     of its tags, in which case the first such policy tells the code: 065
     when the device lacks the tags it requires, 064 when a negated tag
     excluded it.

An anonymous client has no tags: a policy with tag criteria (negated or
not) never matches it.
"""

from __future__ import annotations

import datetime
import ipaddress
from typing import Iterable, Mapping

from attrs import frozen

from ztnagw import errors
from ztnagw.config.addresses import AddressSet, UnresolvedAddress, leafContains
from ztnagw.config.model import (
    ClientCertificateSettings,
    Config,
    FirewallPolicy,
    OnetimeSchedule,
    ProxyPolicy,
    RecurringSchedule,
    Vip,
)
from ztnagw.config.schedules import isActive
from ztnagw.config.schema import EmsTag
from ztnagw.device import DeviceVerdict, VerdictKind
from ztnagw.errors import ZtnaError
from ztnagw.registry.record import ALL_REGISTERED_CLIENTS, EndpointRecord

#: DNS answers for the FQDN addresses policies name (see
#: L{PolicySet.fqdns}).
Resolved = Mapping[str, Iterable[ipaddress.IPv4Address]]

#: Lower-case substrings of a User-Agent that mark a manageable client
#: (C{docs/error-codes.md}, "the manageable device rule").
MANAGEABLE_USER_AGENTS = ("forticlient", "ztnagw-forward", "ztnagw-agent")

FIREWALL_POLICY = "policy"
PROXY_POLICY = "proxy-policy"


@frozen
class RequestFacts:
    """
    Everything the decision looks at about one request or tunnel.

    @ivar vip: the name of the VIP the client connected to.
    @ivar sourceIp: the client's address.
    @ivar destinationIp: the address the client asked for: the VIP's own
        address for an HTTPS request, the (resolved) destination of a
        tunnel.  Policies' C{dstaddr} is matched against it, and a
        C{dstaddr} that names the VIP matches every request on that VIP.
    @ivar when: the time of the request; schedules are in local time.
    @ivar clientCertificate: the client-certificate settings in effect
        (C{client-cert}, C{empty-cert-action}, C{user-agent-detect}).
    @ivar verdict: the device verdict judged for this request, or C{None}
        when no certificate was asked for (C{client-cert disable}).
    @ivar userAgents: every C{User-Agent} value of the request, for the
        manageable-device rule.
    @ivar deviceTags: the device's posture tags, with the EMS that set
        them (see L{deviceTags}); ignored for an anonymous client.
    """

    vip: str
    sourceIp: ipaddress.IPv4Address
    destinationIp: ipaddress.IPv4Address
    when: datetime.datetime
    clientCertificate: ClientCertificateSettings
    verdict: DeviceVerdict | None
    userAgents: tuple[bytes, ...] = ()
    deviceTags: frozenset[EmsTag] = frozenset()


@frozen
class PolicyReference:
    """
    The policy a decision was made by, as logs and block pages name it.

    @ivar kind: L{FIREWALL_POLICY} or L{PROXY_POLICY}.
    @ivar id: the policy id.
    @ivar name: its name, if it has one.
    @ivar uuid: its uuid as text, if it has one.
    @ivar logTraffic: its C{logtraffic} setting (C{all}, C{utm},
        C{disable}).
    """

    kind: str
    id: int
    name: str | None
    uuid: str | None
    logTraffic: str


@frozen
class Decision:
    """
    The answer for one request.

    @ivar allowed: whether the request may go through.
    @ivar error: the ZTNA error of a denial; C{None} when allowed.
    @ivar reason: one line for the logs saying why (for a denial, more
        specific than the error's message).
    @ivar policy: the policy that decided, when one did.
    @ivar device: the device's record, when it has one (an anonymous
        client has none).
    @ivar manageable: whether the client counts as a managed device (it
        presented a certificate, or looks manageable without one).
    """

    allowed: bool
    error: ZtnaError | None
    reason: str
    policy: PolicyReference | None = None
    device: EndpointRecord | None = None
    manageable: bool = True


def deviceTags(
    record: EndpointRecord, emsId: int, ruleTags: Iterable[str] = ()
) -> frozenset[EmsTag]:
    """
    The tags a device has, as policies name them.

    @param record: the device's endpoint record (its assigned tags).
    @param emsId: the EMS that issued the device's certificate.
    @param ruleTags: tags that tagging rules derived from the device's
        reported facts.
    """
    names = set(record.tags)
    names.update(ruleTags)
    names.add(ALL_REGISTERED_CLIENTS)
    return frozenset(EmsTag(emsId, name) for name in names)


def looksManageable(userAgents: Iterable[bytes]) -> bool:
    """
    The manageable-device rule: whether any of the request's User-Agent
    values names FortiClient or the ztnagw forwarder.
    """
    for value in userAgents:
        text = value.decode("iso-8859-1").lower()
        if any(marker in text for marker in MANAGEABLE_USER_AGENTS):
            return True
    return False


@frozen
class CompiledPolicy:
    """
    One policy, with its names resolved once so that matching a request is
    cheap.

    @ivar reference: how logs name it.
    @ivar accept: its action is C{accept}.
    @ivar sourceInterfaces: its C{srcintf}; C{None} for C{any}.
    @ivar sourceAddresses: its C{srcaddr}.
    @ivar destinationAddresses: its C{dstaddr}.
    @ivar vips: the VIPs it applies to, or C{None} for every VIP (a
        firewall policy with C{ztna-status enable}).
    @ivar schedule: when it applies.
    @ivar tags: C{ztna-ems-tag}.
    @ivar secondaryTags: C{ztna-ems-tag-secondary} (firewall policies).
    @ivar matchAll: C{ztna-tags-match-logic and}.
    @ivar negate: C{ztna-ems-tag-negate}.
    """

    reference: PolicyReference
    accept: bool
    sourceInterfaces: frozenset[str] | None
    sourceAddresses: AddressSet
    destinationAddresses: AddressSet
    vips: frozenset[str] | None
    schedule: RecurringSchedule | OnetimeSchedule
    tags: tuple[EmsTag, ...]
    secondaryTags: tuple[EmsTag, ...]
    matchAll: bool
    negate: bool

    @property
    def hasTagCriteria(self) -> bool:
        """
        Whether the policy looks at tags at all.
        """
        return bool(self.tags or self.secondaryTags)

    def tagsSatisfied(self, tags: frozenset[EmsTag]) -> bool:
        """
        Whether a device with C{tags} meets the policy's tag criteria
        (negation applied).  A policy without tag criteria is always met.
        """
        if not self.hasTagCriteria:
            return True
        met = True
        if self.tags:
            if self.matchAll:
                met = all(tag in tags for tag in self.tags)
            else:
                met = any(tag in tags for tag in self.tags)
        if met and self.secondaryTags:
            met = any(tag in tags for tag in self.secondaryTags)
        return not met if self.negate else met


def _uuidText(policy: FirewallPolicy | ProxyPolicy) -> str | None:
    return None if policy.uuid is None else str(policy.uuid)


def _interfaces(names: tuple[str, ...]) -> frozenset[str] | None:
    if "any" in names:
        return None
    return frozenset(names)


def _vipsNamedIn(config: Config, names: Iterable[str]) -> frozenset[str]:
    return frozenset(
        leaf.name for leaf in config.addressSet(names).leaves() if isinstance(leaf, Vip)
    )


def compileFirewallPolicy(config: Config, policy: FirewallPolicy) -> CompiledPolicy:
    """
    Compile a firewall (simple ZTNA) policy.  It applies to the VIPs its
    C{dstaddr} names, or to every VIP when C{ztna-status} is enabled.
    """
    schedule = config.schedule(policy.schedule) if policy.schedule else None
    assert schedule is not None, "a loaded configuration has a schedule"
    return CompiledPolicy(
        reference=PolicyReference(
            FIREWALL_POLICY, policy.id, policy.name, _uuidText(policy), policy.logtraffic
        ),
        accept=policy.action == "accept",
        sourceInterfaces=_interfaces(policy.srcintf),
        sourceAddresses=config.addressSet(policy.srcaddr),
        destinationAddresses=config.addressSet(policy.dstaddr),
        vips=None if policy.ztnaStatus else _vipsNamedIn(config, policy.dstaddr),
        schedule=schedule,
        tags=policy.ztnaEmsTag,
        secondaryTags=policy.ztnaEmsTagSecondary,
        matchAll=policy.ztnaTagsMatchLogic == "and",
        negate=policy.ztnaEmsTagNegate,
    )


def compileProxyPolicy(config: Config, policy: ProxyPolicy) -> CompiledPolicy:
    """
    Compile a proxy-policy (full ZTNA rule).  It applies to the VIPs of the
    access proxies it names.
    """
    schedule = config.schedule(policy.schedule) if policy.schedule else None
    assert schedule is not None, "a loaded configuration has a schedule"
    vips = frozenset(
        config.accessProxies[name].vip
        for name in policy.accessProxy
        if config.accessProxies[name].vip is not None
    )
    return CompiledPolicy(
        reference=PolicyReference(
            PROXY_POLICY, policy.id, policy.name, _uuidText(policy), policy.logtraffic
        ),
        accept=policy.action == "accept",
        sourceInterfaces=_interfaces(policy.srcintf) if policy.srcintf else None,
        sourceAddresses=config.addressSet(policy.srcaddr),
        destinationAddresses=config.addressSet(policy.dstaddr),
        vips=vips,  # type: ignore[arg-type]
        schedule=schedule,
        tags=policy.ztnaEmsTag,
        secondaryTags=(),
        matchAll=policy.ztnaTagsMatchLogic == "and",
        negate=policy.ztnaEmsTagNegate,
    )


@frozen
class PolicySet:
    """
    The enabled policies of a configuration, compiled, in evaluation order,
    with what the decision needs to know about each VIP.

    @ivar policies: firewall policies then proxy-policies, each in
        configuration order; disabled ones left out.
    @ivar vipInterfaces: the C{extintf} of each VIP: the interface a
        request on that VIP arrives on.
    """

    policies: tuple[CompiledPolicy, ...]
    vipInterfaces: Mapping[str, str]

    @classmethod
    def fromConfig(cls, config: Config) -> "PolicySet":
        """
        Compile the policies of C{config}.
        """
        compiled = [
            compileFirewallPolicy(config, p) for p in config.policies.values() if p.status
        ]
        compiled += [
            compileProxyPolicy(config, p) for p in config.proxyPolicies.values() if p.status
        ]
        return cls(
            policies=tuple(compiled),
            vipInterfaces={
                name: vip.extintf or "any" for name, vip in config.vips.items()
            },
        )

    def fqdns(self) -> frozenset[str]:
        """
        The FQDN addresses the policies refer to: the caller keeps them
        resolved (without blocking) and passes the answers to L{decide}.
        """
        names: set[str] = set()
        for policy in self.policies:
            names |= policy.sourceAddresses.fqdns()
            names |= policy.destinationAddresses.fqdns()
        return frozenset(names)

    def forVip(self, vip: str) -> tuple[CompiledPolicy, ...]:
        """
        The policies that apply to requests on VIP C{vip}, in order.
        """
        return tuple(p for p in self.policies if p.vips is None or vip in p.vips)


def _destinationMatches(
    addresses: AddressSet,
    vip: str,
    destination: ipaddress.IPv4Address,
    resolved: Resolved,
) -> bool:
    # Like AddressSet.contains, except that a VIP in dstaddr stands for
    # "requests on this VIP", not for its address: two VIPs may share an
    # address on different ports.
    for term in addresses.terms:
        for leaf in term.include:
            if isinstance(leaf, Vip):
                matched = leaf.name == vip
            else:
                matched = leafContains(leaf, destination, resolved)
            if matched:
                if not _destinationMatches(term.exclude, vip, destination, resolved):
                    return True
                break
    return False


def _deny(error: ZtnaError, reason: str, **kwargs: object) -> Decision:
    return Decision(allowed=False, error=error, reason=reason, **kwargs)  # type: ignore[arg-type]


def decide(
    policySet: PolicySet, facts: RequestFacts, resolved: Resolved | None = None
) -> Decision:
    """
    Decide one request.

    @param policySet: the compiled policies.
    @param facts: what is known about the request.
    @param resolved: the current DNS answers for L{PolicySet.fqdns}; an
        FQDN that is missing (never resolved) makes any policy that needs
        it fail to match, never match by accident.
    @return: the decision; never raises for any facts.
    """
    answers: Resolved = resolved or {}
    settings = facts.clientCertificate
    verdict = facts.verdict
    device: EndpointRecord | None = None
    manageable = True

    if not settings.clientCert or verdict is None:
        anonymous = True
        manageable = looksManageable(facts.userAgents)
    elif verdict.kind is VerdictKind.NO_CERTIFICATE:
        action = settings.emptyCertAction
        manageable = settings.userAgentDetect and looksManageable(facts.userAgents)
        if action == "accept":
            anonymous = True
        elif action == "accept-unmanageable" and not manageable:
            anonymous = True
        elif action == "accept-unmanageable":
            return _deny(
                errors.MANAGEABLE_WITHOUT_CERTIFICATE,
                "no client certificate from a client that identifies itself as "
                "a managed device",
                manageable=True,
            )
        else:
            return _deny(
                errors.EMPTY_CERTIFICATE,
                "no client certificate (empty-cert-action block)",
                manageable=manageable,
            )
    elif not verdict.valid:
        error = verdict.error or errors.INVALID_CERTIFICATE
        return _deny(error, verdict.reason, device=verdict.record)
    else:
        anonymous = False
        device = verdict.record

    tags: frozenset[EmsTag] = frozenset() if anonymous else facts.deviceTags
    arrival = policySet.vipInterfaces.get(facts.vip, "any")
    nearMiss: tuple[ZtnaError, str, CompiledPolicy] | None = None

    for policy in policySet.forVip(facts.vip):
        try:
            if not _criteriaMatch(policy, facts, arrival, answers):
                continue
        except UnresolvedAddress:
            continue
        if policy.hasTagCriteria and (anonymous or not policy.tagsSatisfied(tags)):
            if nearMiss is None:
                if policy.negate and not anonymous:
                    nearMiss = (
                        errors.TAG_DENY,
                        f"{_name(policy)} excludes the device by its tags",
                        policy,
                    )
                else:
                    nearMiss = (
                        errors.TAGS_MISSING,
                        f"{_name(policy)} requires tags the "
                        + ("anonymous client cannot have" if anonymous else "device lacks"),
                        policy,
                    )
            continue
        if policy.accept:
            return Decision(
                allowed=True,
                error=None,
                reason=f"allowed by {_name(policy)}",
                policy=policy.reference,
                device=device,
                manageable=manageable,
            )
        if policy.hasTagCriteria:
            return _deny(
                errors.TAG_DENY,
                f"denied by {_name(policy)}, which matched the device's tags",
                policy=policy.reference,
                device=device,
                manageable=manageable,
            )
        return _deny(
            errors.POLICY_DENY,
            f"denied by {_name(policy)}",
            policy=policy.reference,
            device=device,
            manageable=manageable,
        )

    if nearMiss is not None:
        error, reason, policy = nearMiss
        return _deny(
            error, reason, policy=policy.reference, device=device, manageable=manageable
        )
    return _deny(
        errors.NO_POLICY,
        f"no ZTNA policy matches a request from {facts.sourceIp} on VIP {facts.vip}",
        device=device,
        manageable=manageable,
    )


def _name(policy: CompiledPolicy) -> str:
    reference = policy.reference
    label = f"{reference.kind} {reference.id}"
    if reference.name:
        label += f" ({reference.name})"
    return label


def _criteriaMatch(
    policy: CompiledPolicy, facts: RequestFacts, arrival: str, resolved: Resolved
) -> bool:
    # Everything but the tags; cheapest checks first.
    if policy.sourceInterfaces is not None and arrival not in policy.sourceInterfaces:
        return False
    if not isActive(policy.schedule, facts.when):
        return False
    if not policy.sourceAddresses.contains(facts.sourceIp, resolved):
        return False
    return _destinationMatches(
        policy.destinationAddresses, facts.vip, facts.destinationIp, resolved
    )
