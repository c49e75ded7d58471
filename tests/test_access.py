"""
Tests for L{ztnagw.access}: the access decision, without sockets.
"""

from __future__ import annotations

import datetime
import ipaddress
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from ztnagw import errors
from ztnagw.access import (
    FIREWALL_POLICY,
    PROXY_POLICY,
    PolicySet,
    RequestFacts,
    decide,
    deviceTags,
    looksManageable,
)
from ztnagw.config import loads
from ztnagw.config.model import ClientCertificateSettings
from ztnagw.config.schema import EmsTag
from ztnagw.device import VERDICT_ERRORS, DeviceVerdict, VerdictKind
from ztnagw.registry.record import EndpointRecord

UID = "9A016B5A6E914B42AD4168C066EB04CA"

_HEAD = """
config system interface
    edit "port3"
        set ip 10.0.3.10 255.255.255.0
        set role wan
    next
    edit "port4"
        set ip 10.0.4.10 255.255.255.0
        set role wan
    next
end
config vpn certificate local
    edit "gw"
        set certificate-file "gw.crt"
        set private-key-file "gw.key"
        set auto-generate enable
    next
end
config endpoint-control fctems
    edit 1
        set status enable
        set server "10.0.3.10"
        set https-port 8013
        set serial-number "FCTEMS8825007278"
    next
end
config firewall address
    edit "clients"
        set subnet 10.0.3.0 255.255.255.0
    next
    edit "servers"
        set subnet 10.88.0.0 255.255.0.0
    next
    edit "client-host"
        set type fqdn
        set fqdn "client.example.com"
    next
end
config firewall schedule recurring
    edit "nights"
        set day sunday monday tuesday wednesday thursday friday saturday
        set start 22:00
        set end 06:00
    next
end
config firewall vip
    edit "VIP-A"
        set type access-proxy
        set server-type https
        set extip 10.0.3.10
        set extintf "port3"
        set extport 11443
        set ssl-certificate "gw"
    next
    edit "VIP-B"
        set type access-proxy
        set server-type https
        set extip 10.0.3.10
        set extintf "port3"
        set extport 12443
        set ssl-certificate "gw"
    next
    edit "VIP-C"
        set type access-proxy
        set server-type https
        set extip 10.0.4.10
        set extintf "port4"
        set extport 11443
        set ssl-certificate "gw"
    next
end
config firewall access-proxy
    edit "AP-A"
        set vip "VIP-A"
        config api-gateway
            edit 1
                config realservers
                    edit 1
                        set ip 10.88.0.3
                    next
                end
            next
        end
    next
    edit "AP-C"
        set vip "VIP-C"
        config api-gateway
            edit 1
                config realservers
                    edit 1
                        set ip 10.88.0.3
                    next
                end
            next
        end
    next
end
"""


def policySet(policies: str) -> PolicySet:
    """
    Compile the policies in C{policies} (CLI text) on top of a small
    deployment with VIPs A, B (same address as A, other port) and C.
    """
    return PolicySet.fromConfig(loads(_HEAD + policies, baseDirectory="/nonexistent"))


def firewallPolicy(id: int, **options: str) -> str:
    """
    CLI text of one firewall policy, with walkthrough-like defaults.
    """
    values = {
        "srcintf": '"port3"',
        "dstintf": '"any"',
        "action": "accept",
        "srcaddr": '"all"',
        "dstaddr": '"VIP-A"',
        "schedule": '"always"',
    }
    values.update(options)
    body = "".join(f"        set {k} {v}\n" for k, v in values.items())
    return f"    edit {id}\n{body}    next\n"


def firewallPolicies(*policies: str) -> str:
    """
    A C{config firewall policy} block.
    """
    return "config firewall policy\n" + "".join(policies) + "end\n"


def record(**kwargs: Any) -> EndpointRecord:
    """
    A registered, valid device record.
    """
    values: dict[str, Any] = dict(uid=UID, certSerial="01", emsSerial="FCTEMS8825007278")
    values.update(kwargs)
    return EndpointRecord(**values)


def verdict(kind: VerdictKind = VerdictKind.VALID, device: EndpointRecord | None = None) -> DeviceVerdict:
    """
    A device verdict of C{kind}.
    """
    if device is None and kind is VerdictKind.VALID:
        device = record()
    return DeviceVerdict(
        kind=kind,
        error=VERDICT_ERRORS[kind],
        record=device,
        reason=f"verdict {kind.value}",
        presented=None,
    )


SETTINGS = ClientCertificateSettings(clientCert=True, emptyCertAction="block", userAgentDetect=True)
NOON = datetime.datetime(2026, 11, 26, 12, 0)


def facts(**kwargs: Any) -> RequestFacts:
    """
    Facts of a request on VIP-A from 10.0.3.2 at noon by a valid device
    without tags, unless overridden.
    """
    values: dict[str, Any] = dict(
        vip="VIP-A",
        sourceIp=ipaddress.IPv4Address("10.0.3.2"),
        destinationIp=ipaddress.IPv4Address("10.0.3.10"),
        when=NOON,
        clientCertificate=SETTINGS,
        verdict=verdict(),
        userAgents=(b"curl/7.88.1",),
    )
    values.update(kwargs)
    if "deviceTags" not in values and values["verdict"] is not None and values["verdict"].record:
        values["deviceTags"] = deviceTags(values["verdict"].record, 1)
    return RequestFacts(**values)


def tagged(*tags: str) -> dict[str, Any]:
    """
    Facts keyword arguments for a valid device carrying C{tags}.
    """
    device = record(tags=frozenset(tags))
    return dict(verdict=verdict(device=device), deviceTags=deviceTags(device, 1))


WALKTHROUGH = policySet(firewallPolicies(firewallPolicy(9, name='"Access-WS1-ZTNA"', logtraffic="all")))


class ClientCertificateTests(SynchronousTestCase):
    """
    The client-certificate part of the decision, as the walkthrough's three
    examples show it.
    """

    def test_validDevice(self) -> None:
        """
        A valid device is allowed by the walkthrough's policy 9, and the
        decision names the policy and the device.
        """
        decision = decide(WALKTHROUGH, facts())
        self.assertTrue(decision.allowed)
        self.assertIsNone(decision.error)
        self.assertEqual(decision.policy.kind, FIREWALL_POLICY)
        self.assertEqual(decision.policy.id, 9)
        self.assertEqual(decision.policy.name, "Access-WS1-ZTNA")
        self.assertEqual(decision.policy.logTraffic, "all")
        self.assertEqual(decision.device.uid, UID)

    def test_example1EmptyCertificateBlocked(self) -> None:
        """
        Example 1: C{client-cert enable} + C{empty-cert-action block}, no
        certificate: 002.
        """
        decision = decide(WALKTHROUGH, facts(verdict=verdict(VerdictKind.NO_CERTIFICATE)))
        self.assertFalse(decision.allowed)
        self.assertEqual(decision.error, errors.EMPTY_CERTIFICATE)

    def test_example2EmptyCertificateAccepted(self) -> None:
        """
        Example 2: C{empty-cert-action accept}, no certificate: admitted
        anonymously by a policy that needs no tag.
        """
        settings = ClientCertificateSettings(True, "accept", True)
        decision = decide(
            WALKTHROUGH,
            facts(verdict=verdict(VerdictKind.NO_CERTIFICATE), clientCertificate=settings),
        )
        self.assertTrue(decision.allowed)
        self.assertIsNone(decision.device)

    def test_example3ClientCertDisabled(self) -> None:
        """
        Example 3: C{client-cert disable}: no certificate was asked for
        (no verdict); the client is admitted anonymously.
        """
        settings = ClientCertificateSettings(False, "block", True)
        decision = decide(WALKTHROUGH, facts(verdict=None, clientCertificate=settings))
        self.assertTrue(decision.allowed)
        self.assertIsNone(decision.device)

    def test_acceptUnmanageable(self) -> None:
        """
        C{accept-unmanageable}: a client without certificate whose
        User-Agent names FortiClient or the forwarder gets 003; a browser
        or curl is admitted as unmanageable; with C{user-agent-detect
        disable} every such client counts as unmanageable.
        """
        detect = ClientCertificateSettings(True, "accept-unmanageable", True)
        noDetect = ClientCertificateSettings(True, "accept-unmanageable", False)
        empty = verdict(VerdictKind.NO_CERTIFICATE)
        for agent in (b"Forticlient", b"ztnagw-forward/0.1.0", b"Mozilla FortiClient/7.4"):
            decision = decide(
                WALKTHROUGH, facts(verdict=empty, clientCertificate=detect, userAgents=(agent,))
            )
            self.assertEqual(decision.error, errors.MANAGEABLE_WITHOUT_CERTIFICATE, agent)
            self.assertTrue(decide(
                WALKTHROUGH, facts(verdict=empty, clientCertificate=noDetect, userAgents=(agent,))
            ).allowed)
        browser = decide(
            WALKTHROUGH,
            facts(verdict=empty, clientCertificate=detect, userAgents=(b"Mozilla/5.0",)),
        )
        self.assertTrue(browser.allowed)
        self.assertFalse(browser.manageable)

    def test_badCertificateNeverAnonymous(self) -> None:
        """
        A presented certificate that is not acceptable denies with the
        verdict's code, even where a missing certificate would be accepted.
        """
        settings = ClientCertificateSettings(True, "accept", True)
        for kind, error in [
            (VerdictKind.INVALID, errors.INVALID_CERTIFICATE),
            (VerdictKind.SERIAL_MISMATCH, errors.INVALID_CERTIFICATE),
            (VerdictKind.UNKNOWN, errors.UNKNOWN_DEVICE),
            (VerdictKind.REGISTRY_UNAVAILABLE, errors.UNKNOWN_DEVICE),
            (VerdictKind.REVOKED, errors.CERTIFICATE_REVOKED),
            (VerdictKind.QUARANTINED, errors.TAG_DENY),
            (VerdictKind.OFFLINE, errors.DEVICE_OFFLINE),
        ]:
            decision = decide(WALKTHROUGH, facts(verdict=verdict(kind, record()), clientCertificate=settings))
            self.assertFalse(decision.allowed, kind)
            self.assertEqual(decision.error, error, kind)
            self.assertEqual(decision.reason, f"verdict {kind.value}")


class PolicyMatchingTests(SynchronousTestCase):
    """
    Policies are evaluated in order, first match wins, each criterion
    counts.
    """

    def test_noPolicy(self) -> None:
        """
        Without any policy for the VIP the answer is 061.
        """
        decision = decide(WALKTHROUGH, facts(vip="VIP-C", destinationIp=ipaddress.IPv4Address("10.0.4.10")))
        self.assertEqual(decision.error, errors.NO_POLICY)

    def test_sourceAddress(self) -> None:
        """
        C{srcaddr} is matched against the client's address.
        """
        policies = policySet(firewallPolicies(firewallPolicy(1, srcaddr='"clients"')))
        self.assertTrue(decide(policies, facts()).allowed)
        outside = decide(policies, facts(sourceIp=ipaddress.IPv4Address("192.0.2.1")))
        self.assertEqual(outside.error, errors.NO_POLICY)

    def test_sourceInterface(self) -> None:
        """
        C{srcintf} is matched against the VIP's C{extintf}; C{any}
        matches every interface.
        """
        policies = policySet(firewallPolicies(firewallPolicy(1, srcintf='"port4"', dstaddr='"VIP-A" "VIP-C"')))
        self.assertEqual(decide(policies, facts()).error, errors.NO_POLICY)
        onC = facts(vip="VIP-C", destinationIp=ipaddress.IPv4Address("10.0.4.10"))
        self.assertTrue(decide(policies, onC).allowed)
        anyInterface = policySet(firewallPolicies(firewallPolicy(1, srcintf='"any"')))
        self.assertTrue(decide(anyInterface, facts()).allowed)

    def test_vipByName(self) -> None:
        """
        A VIP named in C{dstaddr} stands for requests on that VIP, not for
        its address: VIP-B shares VIP-A's address but a policy for VIP-A
        does not apply to it.
        """
        onB = facts(vip="VIP-B")
        self.assertEqual(decide(WALKTHROUGH, onB).error, errors.NO_POLICY)
        everywhere = policySet(firewallPolicies(firewallPolicy(1, **{"ztna-status": "enable"})))
        self.assertTrue(decide(everywhere, facts()).allowed)
        self.assertEqual(decide(everywhere, onB).error, errors.NO_POLICY)

    def test_ztnaStatusPolicyAppliesEverywhere(self) -> None:
        """
        A firewall policy with C{ztna-status enable} applies to every VIP;
        its C{dstaddr} is matched against the destination address.
        """
        policies = policySet(firewallPolicies(firewallPolicy(
            1, srcintf='"any"', dstaddr='"servers"', **{"ztna-status": "enable"}
        )))
        toServer = facts(vip="VIP-C", destinationIp=ipaddress.IPv4Address("10.88.0.3"))
        self.assertTrue(decide(policies, toServer).allowed)
        elsewhere = facts(vip="VIP-C", destinationIp=ipaddress.IPv4Address("10.99.0.3"))
        self.assertEqual(decide(policies, elsewhere).error, errors.NO_POLICY)

    def test_schedule(self) -> None:
        """
        A policy applies only while its schedule is active.
        """
        policies = policySet(firewallPolicies(firewallPolicy(1, schedule='"nights"')))
        self.assertEqual(decide(policies, facts()).error, errors.NO_POLICY)
        late = facts(when=datetime.datetime(2026, 11, 26, 23, 30))
        self.assertTrue(decide(policies, late).allowed)

    def test_firstMatchWins(self) -> None:
        """
        The first matching policy decides; a deny policy gives 062.
        """
        denyFirst = policySet(firewallPolicies(
            firewallPolicy(5, action="deny", srcaddr='"clients"'),
            firewallPolicy(6),
        ))
        decision = decide(denyFirst, facts())
        self.assertEqual(decision.error, errors.POLICY_DENY)
        self.assertEqual(decision.policy.id, 5)
        other = decide(denyFirst, facts(sourceIp=ipaddress.IPv4Address("192.0.2.1")))
        self.assertTrue(other.allowed)
        self.assertEqual(other.policy.id, 6)

    def test_disabledPolicyIgnored(self) -> None:
        """
        A disabled policy never matches.
        """
        policies = policySet(firewallPolicies(firewallPolicy(5, action="deny", status="disable"), firewallPolicy(6)))
        self.assertEqual(decide(policies, facts()).policy.id, 6)

    def test_proxyPolicyAfterFirewallPolicies(self) -> None:
        """
        Proxy-policies apply to the VIPs of the access proxies they name,
        after every firewall policy.
        """
        proxy = (
            "config firewall proxy-policy\n    edit 1\n        set proxy access-proxy\n"
            '        set access-proxy "AP-C"\n        set srcintf "port4"\n'
            '        set srcaddr "all"\n        set dstaddr "all"\n        set action accept\n'
            '        set schedule "always"\n    next\nend\n'
        )
        policies = policySet(firewallPolicies(firewallPolicy(1)) + proxy)
        onC = decide(policies, facts(vip="VIP-C", destinationIp=ipaddress.IPv4Address("10.0.4.10")))
        self.assertTrue(onC.allowed)
        self.assertEqual(onC.policy.kind, PROXY_POLICY)
        self.assertEqual(decide(policies, facts()).policy.kind, FIREWALL_POLICY)
        self.assertEqual(decide(policies, facts(vip="VIP-B")).error, errors.NO_POLICY)

    def test_unresolvedFqdnNeverMatches(self) -> None:
        """
        A policy whose C{srcaddr} is an FQDN matches only addresses it
        resolved to; an FQDN not resolved yet matches nothing.
        """
        policies = policySet(firewallPolicies(firewallPolicy(1, srcaddr='"client-host"')))
        self.assertEqual(policies.fqdns(), frozenset({"client.example.com"}))
        self.assertEqual(decide(policies, facts()).error, errors.NO_POLICY)
        resolved = {"client.example.com": [ipaddress.IPv4Address("10.0.3.2")]}
        self.assertTrue(decide(policies, facts(), resolved).allowed)


class TagTests(SynchronousTestCase):
    """
    Posture tags: C{ztna-ems-tag}, match logic, negation, and the codes
    064 and 065.
    """

    def tagPolicies(self, *policies: str) -> PolicySet:
        """
        Compile firewall policies.
        """
        return policySet(firewallPolicies(*policies))

    def test_orLogic(self) -> None:
        """
        With C{or} (the default) any one of the tags admits the device.
        """
        policies = self.tagPolicies(firewallPolicy(1, **{"ztna-ems-tag": '"EMS1_ZTNA_a" "EMS1_ZTNA_b"'}))
        self.assertTrue(decide(policies, facts(**tagged("b"))).allowed)
        missing = decide(policies, facts(**tagged("c")))
        self.assertEqual(missing.error, errors.TAGS_MISSING)
        self.assertEqual(missing.policy.id, 1)

    def test_andLogic(self) -> None:
        """
        With C{and} every tag is needed; one of two gives 065.
        """
        policies = self.tagPolicies(firewallPolicy(
            1, **{"ztna-ems-tag": '"EMS1_ZTNA_a" "EMS1_ZTNA_b"', "ztna-tags-match-logic": "and"}
        ))
        self.assertTrue(decide(policies, facts(**tagged("a", "b"))).allowed)
        self.assertEqual(decide(policies, facts(**tagged("a"))).error, errors.TAGS_MISSING)

    def test_secondaryTags(self) -> None:
        """
        C{ztna-ems-tag-secondary} is a second group, also required.
        """
        policies = self.tagPolicies(firewallPolicy(
            1, **{"ztna-ems-tag": '"EMS1_ZTNA_a"', "ztna-ems-tag-secondary": '"EMS1_ZTNA_s"'}
        ))
        self.assertTrue(decide(policies, facts(**tagged("a", "s"))).allowed)
        self.assertEqual(decide(policies, facts(**tagged("a"))).error, errors.TAGS_MISSING)

    def test_builtinTag(self) -> None:
        """
        Every registered device has C{all_registered_clients}.
        """
        policies = self.tagPolicies(firewallPolicy(1, **{"ztna-ems-tag": '"EMS1_ZTNA_all_registered_clients"'}))
        self.assertTrue(decide(policies, facts()).allowed)

    def test_negatedTagExcludes(self) -> None:
        """
        With C{ztna-ems-tag-negate enable} the policy matches devices
        without the tags; a device with one is excluded: 064 when nothing
        else matches.
        """
        policies = self.tagPolicies(firewallPolicy(
            1, **{"ztna-ems-tag": '"EMS1_ZTNA_risky"', "ztna-ems-tag-negate": "enable"}
        ))
        self.assertTrue(decide(policies, facts(**tagged("fine"))).allowed)
        self.assertEqual(decide(policies, facts(**tagged("risky"))).error, errors.TAG_DENY)

    def test_denyByTag(self) -> None:
        """
        A deny policy that matched on tags denies with 064.
        """
        policies = self.tagPolicies(
            firewallPolicy(1, action="deny", **{"ztna-ems-tag": '"EMS1_ZTNA_risky"'}),
            firewallPolicy(2),
        )
        decision = decide(policies, facts(**tagged("risky")))
        self.assertEqual(decision.error, errors.TAG_DENY)
        self.assertEqual(decision.policy.id, 1)
        self.assertTrue(decide(policies, facts(**tagged("fine"))).allowed)

    def test_laterMatchBeatsNearMiss(self) -> None:
        """
        A policy missed only for tags does not stop evaluation: a later
        policy that matches decides.
        """
        policies = self.tagPolicies(
            firewallPolicy(1, **{"ztna-ems-tag": '"EMS1_ZTNA_admin"'}),
            firewallPolicy(2, action="deny"),
        )
        self.assertEqual(decide(policies, facts()).error, errors.POLICY_DENY)

    def test_tagsOfAnotherEms(self) -> None:
        """
        A tag is qualified by its EMS: the same name from another EMS does
        not count.
        """
        policies = self.tagPolicies(firewallPolicy(1, **{"ztna-ems-tag": '"EMS1_ZTNA_a"'}))
        device = record(tags=frozenset({"a"}))
        foreign = facts(verdict=verdict(device=device), deviceTags=deviceTags(device, 2))
        self.assertEqual(decide(policies, foreign).error, errors.TAGS_MISSING)

    def test_anonymousNeverMatchesTagPolicies(self) -> None:
        """
        An anonymous client has no tags: neither a tag policy nor a negated
        tag policy admits it.
        """
        settings = ClientCertificateSettings(True, "accept", True)
        anonymous = dict(verdict=verdict(VerdictKind.NO_CERTIFICATE), clientCertificate=settings)
        for options in (
            {"ztna-ems-tag": '"EMS1_ZTNA_a"'},
            {"ztna-ems-tag": '"EMS1_ZTNA_a"', "ztna-ems-tag-negate": "enable"},
        ):
            decision = decide(self.tagPolicies(firewallPolicy(1, **options)), facts(**anonymous))
            self.assertEqual(decision.error, errors.TAGS_MISSING, options)


class DeviceTagsTests(SynchronousTestCase):
    """
    L{deviceTags} and L{looksManageable}.
    """

    def test_deviceTags(self) -> None:
        """
        Assigned tags, rule tags and the built-in tag, qualified by EMS.
        """
        self.assertEqual(
            deviceTags(record(tags=frozenset({"a"})), 3, ["r"]),
            frozenset({EmsTag(3, "a"), EmsTag(3, "r"), EmsTag(3, "all_registered_clients")}),
        )

    def test_looksManageable(self) -> None:
        """
        The User-Agent markers are found case-insensitively in any value.
        """
        self.assertTrue(looksManageable([b"x", b"FORTICLIENT"]))
        self.assertFalse(looksManageable([b"curl/8", b"\xff\xfe"]))
        self.assertFalse(looksManageable([]))


_KINDS = st.sampled_from(list(VerdictKind))
_ACTIONS = st.sampled_from(["block", "accept", "accept-unmanageable"])


class DecisionPropertyTests(SynchronousTestCase):
    """
    Whatever the facts, the decision is well formed.
    """

    @given(
        kind=st.one_of(st.none(), _KINDS),
        clientCert=st.booleans(),
        action=_ACTIONS,
        detect=st.booleans(),
        source=st.integers(0, 2**32 - 1),
        hour=st.integers(0, 23),
        vip=st.sampled_from(["VIP-A", "VIP-B", "VIP-C", "unknown"]),
        tags=st.frozensets(st.sampled_from(["a", "b", "risky"])),
        agent=st.binary(max_size=20),
    )
    def test_wellFormed(self, kind, clientCert, action, detect, source, hour, vip, tags, agent) -> None:
        """
        A decision never raises; a denial always carries a code; an
        allowed request always names an accepting policy; an invalid device
        is never allowed.
        """
        policies = _PROPERTY_POLICIES
        device = record(tags=tags)
        decision = decide(
            policies,
            RequestFacts(
                vip=vip,
                sourceIp=ipaddress.IPv4Address(source),
                destinationIp=ipaddress.IPv4Address("10.0.3.10"),
                when=datetime.datetime(2026, 11, 26, hour, 0),
                clientCertificate=ClientCertificateSettings(clientCert, action, detect),
                verdict=None if kind is None else verdict(kind, device),
                userAgents=(agent,),
                deviceTags=deviceTags(device, 1),
            ),
        )
        if decision.allowed:
            self.assertIsNone(decision.error)
            self.assertIsNotNone(decision.policy)
            if clientCert and kind is not None:
                self.assertIn(kind, (VerdictKind.VALID, VerdictKind.NO_CERTIFICATE))
        else:
            self.assertIsNotNone(decision.error)
            self.assertIn(decision.error, errors.ALL.values())


_PROPERTY_POLICIES = policySet(firewallPolicies(
    firewallPolicy(1, action="deny", **{"ztna-ems-tag": '"EMS1_ZTNA_risky"'}),
    firewallPolicy(2, schedule='"nights"', **{"ztna-ems-tag": '"EMS1_ZTNA_a"'}),
    firewallPolicy(3, srcaddr='"clients"', **{"ztna-ems-tag": '"EMS1_ZTNA_b"'}),
    firewallPolicy(4, srcaddr='"clients"', dstaddr='"VIP-B"'),
))
