"""
Tests for L{ztnagw.gateway.context}: the authorize path shared by HTTPS
requests, tunnels and live sessions.
"""

from __future__ import annotations

import json

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from ztnagw import errors
from ztnagw.device import VerdictKind
from ztnagw.gateway.context import RequestContext, userDetail
from ztnagw.http.headers import Headers
from ztnagw.logs.line import parseKeyValue
from tests.gateway.fakes import (
    MemoryIndex,
    config,
    device,
    handshake,
    makeContext,
    makeGate,
    makeSite,
    presented,
    record,
)
from tests.support.pki import DEVICE_UID, makeCA, makeDevice

#: A firewall policy that needs the tag C{Linux} of EMS 1.
_LINUX_POLICY = """
config firewall policy
    edit 1
        set srcintf "any"
        set dstintf "any"
        set srcaddr "all"
        set dstaddr "vip"
        set action accept
        set schedule "always"
        set ztna-ems-tag "EMS1_ZTNA_Linux"
    next
end
"""

#: A tagging rule of EMS 1 that tags Linux devices C{Linux}.
_LINUX_RULE = """
        config tagging-rule
            edit "linux"
                set tag "Linux"
                config rules
                    edit 1
                        set type os
                        set os linux
                    next
                end
            next
        end
"""

class FakeResponse:
    """
    Records what a request's response was given.
    """

    def __init__(self) -> None:
        self.headWritten = False
        self.finished = False
        self.answer: tuple[int, bytes, list[tuple[bytes, bytes]], bytes] | None = None

    def respond(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        """
        Record the answer.
        """
        self.answer = (status, reason, list(headers), body)
        self.headWritten = self.finished = True


class FakeRequest:
    """
    The parts of a request the authorize path reads.
    """

    def __init__(self, *fields: tuple[bytes, bytes]) -> None:
        self.headers = Headers(fields)
        self.response = FakeResponse()


def fields(line: object) -> dict[str, str]:
    """
    The fields of a log line.
    """
    return dict(parseKeyValue(line.keyValue()))  # type: ignore[attr-defined]


class Harness:
    """
    A gate over the test configuration with the test device registered.
    """

    def __init__(self, policies: str | None = None, ems: str = "", extra: str = "", **recordChanges: object) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.index = MemoryIndex([record(**recordChanges)])
        kwargs = {} if policies is None else {"policies": policies}
        self.config = config(ems=ems, extra=extra, **kwargs)
        self.gate, self.logs = makeGate(self.config, self.index, self.clock)
        self.site = makeSite(self.config)

    def context(self, withCertificate: bool = True, serverName: str | None = None, requested: bool = True) -> RequestContext:
        """
        A request's context on a connection that presented the device
        certificate (or none).
        """
        facts = handshake(presented() if withCertificate else None, serverName, requested)
        return makeContext(self.gate, self.site, facts)


class AuthorizeTests(SynchronousTestCase):
    """
    Tests for L{RequestContext.authorize}.
    """

    def test_allowed(self) -> None:
        """
        A valid device matching a policy is allowed by it, with its tags.
        """
        h = Harness()
        authorization = h.context().authorize(None, [b"curl/8"])
        self.assertTrue(authorization.allowed)
        self.assertEqual(authorization.decision.policy.id, 1)
        self.assertEqual(authorization.uid, DEVICE_UID)
        self.assertEqual(authorization.tagNames, ("EMS1_ZTNA_all_registered_clients",))
        self.assertEqual(authorization.facts.destinationIp, h.site.vip.extip)

    def test_noCertificateBlocked(self) -> None:
        """
        No certificate with the default settings: 002.
        """
        authorization = Harness().context(withCertificate=False).authorize(None)
        self.assertEqual(authorization.decision.error, errors.EMPTY_CERTIFICATE)

    def test_virtualHostSettings(self) -> None:
        """
        The settings of the virtual host apply: C{empty-cert-action accept}
        admits the anonymous client, C{client-cert disable} judges no
        device at all.
        """
        h = Harness()
        accepted = h.context(withCertificate=False).authorize("accept")
        self.assertTrue(accepted.allowed)
        self.assertEqual(accepted.verdict.kind, VerdictKind.NO_CERTIFICATE)
        self.assertEqual(accepted.tagNames, ())
        open_ = h.context(withCertificate=False).authorize("open")
        self.assertTrue(open_.allowed)
        self.assertIsNone(open_.verdict)

    def test_judgedPerRequest(self) -> None:
        """
        The device is judged at every request: a revocation between two
        requests of one connection denies the second with 063.
        """
        h = Harness()
        context = h.context()
        self.assertTrue(context.authorize(None).allowed)
        h.index.put(record(revoked=True))
        second = context.authorize(None)
        self.assertEqual(second.decision.error, errors.CERTIFICATE_REVOKED)

    def test_ruleTags(self) -> None:
        """
        Tags from the EMS's tagging rules count in the decision.
        """
        policies, rules = _LINUX_POLICY, _LINUX_RULE
        denied = Harness(policies, ems=rules).context().authorize(None)
        self.assertEqual(denied.decision.error, errors.TAGS_MISSING)
        allowed = Harness(policies, ems=rules, osType="Linux").context().authorize(None)
        self.assertTrue(allowed.allowed)
        self.assertIn("EMS1_ZTNA_Linux", allowed.tagNames)

    def test_tagsFollowTheRecord(self) -> None:
        """
        A device's tags are those of its current record: a tag assigned,
        or a reported fact that a tagging rule matches, counts from the
        next request of the same connection on, and is gone again when
        the record loses it.
        """
        policies, rules = _LINUX_POLICY, _LINUX_RULE
        h = Harness(policies, ems=rules)
        context = h.context()
        self.assertEqual(context.authorize(None).decision.error, errors.TAGS_MISSING)
        h.index.put(record(osType="Linux"))
        allowed = context.authorize(None)
        self.assertTrue(allowed.allowed)
        self.assertIn("EMS1_ZTNA_Linux", allowed.tagNames)
        h.index.put(record(osType="Windows", tags=("audited",)))
        again = context.authorize(None)
        self.assertEqual(again.decision.error, errors.TAGS_MISSING)
        self.assertIn("EMS1_ZTNA_audited", again.tagNames)
        self.assertNotIn("EMS1_ZTNA_Linux", again.tagNames)

    def test_reauthorize(self) -> None:
        """
        L{AccessGate.reauthorize} decides the same facts again with the
        device judged now.
        """
        h = Harness()
        first = h.context().authorize(None, [b"ua"])
        h.index.put(record(quarantined=True))
        again = h.gate.reauthorize(first)
        self.assertEqual(again.decision.error, errors.TAG_DENY)
        self.assertEqual(again.facts.userAgents, (b"ua",))


class MisdirectedTests(SynchronousTestCase):
    """
    Tests for L{RequestContext.misdirected}: the SNI/Host rule.
    """

    def test_sniWithoutCertificateHostWithOne(self) -> None:
        """
        SNI naming a host without certificate request, Host naming one
        that requires a certificate: misdirected.
        """
        context = Harness().context(serverName="open.test", requested=False)
        self.assertTrue(context.misdirected(None))
        self.assertFalse(context.misdirected("open"))

    def test_sameSettings(self) -> None:
        """
        Different virtual hosts with the same settings are fine.
        """
        extra = """
config firewall access-proxy-virtual-host
    edit "twin"
        set host "twin.test"
    next
end
"""
        h = Harness(extra=extra)
        self.assertFalse(h.context(serverName="unknown.test").misdirected(None))
        self.assertTrue(h.context().misdirected("accept"))


class DenyTests(SynchronousTestCase):
    """
    Tests for L{RequestContext.deny}: the block page and its log line.
    """

    def test_blockPageAndLog(self) -> None:
        """
        The client gets the block page of the code (status, header, body
        with the session id); one traffic line records the denial.
        """
        h = Harness(revoked=True)
        context = h.context()
        authorization = context.authorize(None)
        request = FakeRequest((b"Accept", b"application/json"), (b"User-Agent", b"curl"))
        context.deny(request, authorization.decision.error, authorization, destination="https://h/x", hostname=b"h", url=b"/x")
        status, reason, headers, body = request.response.answer
        self.assertEqual((status, reason), (403, b"Forbidden"))
        self.assertIn((b"X-ZTNA-Error", b"063"), headers)
        page = json.loads(body)["error"]
        self.assertEqual(page["code"], "063")
        self.assertEqual(page["sessionId"], context.sessionId)
        self.assertEqual(page["deviceUid"], DEVICE_UID)
        self.assertEqual(page["detail"], "The device certificate has been revoked.")
        [line] = h.logs.lines
        logged = fields(line)
        self.assertEqual(logged["action"], "deny")
        self.assertEqual(logged["ztnaerror"], "063")
        self.assertEqual(logged["sessionid"], str(context.sessionId))
        self.assertEqual(logged["clientdeviceid"], DEVICE_UID)
        self.assertEqual(logged["vip"], "vip")
        self.assertEqual(logged["accessproxy"], "proxy")
        self.assertEqual(logged["srcintf"], "lo")
        self.assertEqual(logged["lanout"], str(len(body)))
        self.assertIn("revoked", logged["ztnadetail"])

    def test_blockedTrafficNotLogged(self) -> None:
        """
        With C{log-blocked-traffic disable} a denial writes no line.
        """
        h = Harness()
        h.site = makeSite(config(extra=""))
        context = h.context(withCertificate=False)
        accessProxy = context.accessProxy
        import attrs

        quiet = attrs.evolve(h.site, accessProxy=attrs.evolve(accessProxy, logBlockedTraffic=False))
        context = attrs.evolve(context, site=quiet)
        authorization = context.authorize(None)
        context.deny(FakeRequest(), authorization.decision.error, authorization)
        self.assertEqual(h.logs.lines, [])

    def test_policyDenyEvent(self) -> None:
        """
        A deny policy's denial also writes FortiOS's policy-denied event.
        """
        policies = """
config firewall policy
    edit 7
        set srcintf "any"
        set dstintf "any"
        set srcaddr "all"
        set dstaddr "vip"
        set action deny
        set schedule "always"
    next
end
"""
        h = Harness(policies)
        context = h.context()
        authorization = context.authorize(None)
        context.deny(FakeRequest(), authorization.decision.error, authorization)
        traffic, event = (fields(line) for line in h.logs.lines)
        self.assertEqual(traffic["policyid"], "7")
        self.assertEqual(event["logid"], "2100060511")
        self.assertEqual(event["ztnaerror"], "062")

    def test_noApplicationEvent(self) -> None:
        """
        A 021 writes the api-gateway match failure event.
        """
        h = Harness()
        h.context().deny(FakeRequest(), errors.NO_APPLICATION)
        traffic, event = (fields(line) for line in h.logs.lines)
        self.assertEqual(traffic["ztnaerror"], "021")
        self.assertEqual(event["logid"], "2100060522")

    def test_foreignCertificateDetail(self) -> None:
        """
        An invalid certificate's block page says what was wrong with it,
        in words about the certificate only.
        """
        other = makeDevice(makeCA("another CA"), DEVICE_UID)
        h = Harness()
        facts = handshake(presented(other, emsId=None, problem="not issued by an EMS CA"))
        context = makeContext(h.gate, h.site, facts)
        authorization = context.authorize(None)
        self.assertEqual(authorization.decision.error, errors.INVALID_CERTIFICATE)
        self.assertEqual(
            userDetail(errors.INVALID_CERTIFICATE, authorization.verdict),
            "The device certificate was refused: not issued by an EMS CA.",
        )

    def test_registryErrorsStayInside(self) -> None:
        """
        When the registry cannot be read, the block page says so without
        the internal reason.
        """
        h = Harness()
        h.index.healthy = False
        context = h.context()
        authorization = context.authorize(None)
        request = FakeRequest((b"Accept", b"application/json"))
        context.deny(request, authorization.decision.error, authorization)
        page = json.loads(request.response.answer[3])["error"]
        self.assertEqual(page["code"], "066")
        self.assertNotIn("registry", page["detail"])


class TrafficTests(SynchronousTestCase):
    """
    Tests for L{RequestContext.logTraffic}.
    """

    def test_logtrafficAll(self) -> None:
        """
        An allowed request is logged when its policy says C{logtraffic
        all}, with the policy, the device, the real server and the bytes.
        """
        import ipaddress

        h = Harness()
        context = h.context()
        authorization = context.authorize(None)
        h.clock.advance(3)
        context.logTraffic(
            authorization,
            action="accept",
            service="HTTPS",
            apiGatewayId=1,
            realServerId=1,
            dstIp=ipaddress.IPv4Address("127.0.0.1"),
            dstPort=8080,
            lanIn=10,
            lanOut=20,
            wanIn=30,
            wanOut=40,
        )
        [line] = h.logs.lines
        logged = fields(line)
        self.assertEqual(logged["policyid"], "1")
        self.assertEqual(logged["policyname"], "allow")
        self.assertEqual(logged["policytype"], "policy")
        self.assertEqual(logged["duration"], "3")
        self.assertEqual(logged["dstintf"], "lo")
        self.assertEqual(logged["clientdevicetags"], "EMS1_ZTNA_all_registered_clients")
        self.assertEqual(logged["clientdeviceems"], "FCTEMS8825007278")
        self.assertEqual((logged["lanin"], logged["wanout"]), ("10", "40"))

    def test_logtrafficUtm(self) -> None:
        """
        FortiOS's default C{logtraffic utm} logs no allowed request.
        """
        policies = """
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
        h = Harness(policies)
        context = h.context()
        context.logTraffic(context.authorize(None), action="accept", service="HTTPS")
        self.assertEqual(h.logs.lines, [])


class BlockedTrafficTests(SynchronousTestCase):
    """
    Tests for the rule of L{AccessGate.logTraffic} that an entry carrying
    a ZTNA error code is blocked traffic, whatever its action.
    """

    def quiet(self, h: Harness) -> RequestContext:
        """
        A context on an access proxy with C{log-blocked-traffic disable}.
        """
        import attrs

        context = h.context()
        accessProxy = context.accessProxy
        site = attrs.evolve(h.site, accessProxy=attrs.evolve(accessProxy, logBlockedTraffic=False))
        return attrs.evolve(context, site=site)

    def test_errorWithOtherActionLogged(self) -> None:
        """
        A 023 logged with C{action dns} is written as blocked traffic even
        when the policy that allowed the request does not log allowed
        traffic (C{logtraffic utm}), with its code.
        """
        policies = """
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
        h = Harness(policies)
        context = h.context()
        authorization = context.authorize(None)
        self.assertTrue(authorization.allowed)
        context.logTraffic(authorization, action="dns", service="HTTPS", error=errors.DNS_FAILURE)
        [line] = h.logs.lines
        logged = fields(line)
        self.assertEqual((logged["action"], logged["ztnaerror"]), ("dns", "023"))

    def test_errorWithOtherActionFollowsLogBlockedTraffic(self) -> None:
        """
        With C{log-blocked-traffic disable}, an entry with a code is not
        written although its policy logs all allowed traffic: a refusal
        follows the blocked-traffic setting only.
        """
        h = Harness()
        context = self.quiet(h)
        authorization = context.authorize(None)
        self.assertEqual(authorization.decision.policy.logTraffic, "all")
        context.logTraffic(authorization, action="ip-conn", service="tcp/22", error=errors.NO_REAL_SERVER)
        self.assertEqual(h.logs.lines, [])

    def test_allowedWithoutErrorStillLogged(self) -> None:
        """
        The rule leaves allowed traffic alone: an entry without a code and
        with an action other than C{deny} follows the policy's
        C{logtraffic}, also when blocked traffic is not logged.
        """
        h = Harness()
        context = self.quiet(h)
        context.logTraffic(context.authorize(None), action="client-rst", service="HTTPS")
        [line] = h.logs.lines
        self.assertEqual(fields(line)["action"], "client-rst")


class SessionTests(SynchronousTestCase):
    """
    Tests for L{RequestContext.openSession}.
    """

    def test_revokedSessionEnds(self) -> None:
        """
        A registered session is closed when its device is revoked, and the
        end is logged with the reason.
        """
        h = Harness()
        h.gate.sessions.start()
        context = h.context()
        closed = []
        session = context.openSession(context.authorize(None), closed.append)
        self.assertIsNotNone(session)
        h.index.put(record(revoked=True))
        [denial] = closed
        self.assertEqual(denial.decision.error, errors.CERTIFICATE_REVOKED)
        [line] = h.logs.lines
        logged = fields(line)
        self.assertEqual(logged["logid"], "9900069901")
        self.assertEqual(logged["action"], "close")
        self.assertEqual(logged["ztnaerror"], "063")
        self.assertEqual(logged["sessionid"], str(context.sessionId))

    def test_anonymousNoSession(self) -> None:
        """
        An anonymous client has no device to follow.
        """
        h = Harness()
        context = h.context(withCertificate=False)
        self.assertIsNone(context.openSession(context.authorize("accept"), lambda a: None))

    def test_sessionIds(self) -> None:
        """
        Session numbers are unique and positive.
        """
        h = Harness()
        ids = {h.context().sessionId for _ in range(100)}
        self.assertEqual(len(ids), 100)
        self.assertNotIn(0, ids)
