# -*- test-case-name: tests.gateway.test_context -*-
"""
The one authorize path of the access proxy, shared by HTTPS requests,
TCP forwarding tunnels and live sessions.

Both proxies must answer "may this client reach this application?" the same
way, and FortiOS shows the answer the same way in both: a block page with
the ZTNA error code, a traffic log line, an event for a policy denial.  So
everything between "a request arrived on a VIP" and "relay it" lives here,
once:

  - L{RequestContext}: the facts of one request on one connection (the
    VIP and its access proxy, what the TLS handshake captured, the client's
    address, the session number, the arrival time) and the operations on
    them: L{RequestContext.authorize} (judge the device again, compute its
    tags, make the access decision), L{RequestContext.deny} (answer with
    the block page and log it), L{RequestContext.logTraffic},
    L{RequestContext.openSession} (register a live session) and
    L{RequestContext.misdirected} (the SNI/Host rule).
  - L{AccessGate}: the collaborators those operations need (the policies,
    the device verifier, the tagging rules, the DNS answers for policy
    addresses, the log writer, the live-session tracker), one per process.
  - L{Authorization}: what one decision was made from and what it said.

The device is judged for every request, never only at the handshake: TLS
resumption would skip the verify callback, and the registry changes under a
keep-alive connection (L{ztnagw.device} explains why there is one judge).
"""

from __future__ import annotations

import datetime
import functools
import ipaddress
from typing import Callable, Iterable, Mapping

import attrs
from attrs import frozen
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ztnagw import errors
from ztnagw.access import (
    Decision,
    PolicySet,
    RequestFacts,
    Resolved,
    decide,
    deviceTags,
    looksManageable,
)
from ztnagw.blockpage import BlockFacts, Page, renderBlockPage
from ztnagw.config.model import (
    AccessProxy,
    ClientCertificateSettings,
    Config,
    Vip,
)
from ztnagw.config.schema import EmsTag
from ztnagw.device import DeviceVerdict, PresentedCertificate, VerdictKind
from ztnagw.ems.tagging import ruleTags
from ztnagw.errors import ZtnaError
from ztnagw.gateway.matching import AccessProxyMatcher, SNITable
from ztnagw.gateway.sessions import LiveSession, SessionTracker
from ztnagw.http.errors import REASONS
from ztnagw.logs import (
    CLOSE,
    DENY,
    DEVICE_SESSION_ENDED,
    HTTPS,
    MANAGEABLE,
    UNMANAGEABLE,
    ZTNA_GATEWAY_MATCH_FAILURE,
    ZTNA_POLICY_DENIED,
    EventKind,
    EventLog,
    LogWriter,
    TrafficLog,
)
from ztnagw.registry.interfaces import IEndpointIndex
from ztnagw.registry.record import EndpointRecord
from ztnagw.tls.server import HandshakeFacts

__all__ = [
    "AccessGate",
    "Authorization",
    "RequestContext",
    "SessionLabel",
    "VipSite",
    "userDetail",
]

_log = Logger()

_ANY = ipaddress.IPv4Address(0)


@frozen
class Authorization:
    """
    One access decision and everything it was made from.

    @ivar decision: the answer.
    @ivar facts: the facts it was made from (a live session is decided
        again from them, with the device judged anew).
    @ivar settings: the client-certificate settings in effect.
    @ivar presented: the client certificate the handshake captured, or
        C{None}.
    @ivar verdict: the device verdict judged for this decision, or C{None}
        when no certificate was asked for (C{client-cert disable}).
    @ivar virtualHost: the virtual host whose settings applied, or C{None}.
    """

    decision: Decision
    facts: RequestFacts
    settings: ClientCertificateSettings
    presented: PresentedCertificate | None
    verdict: DeviceVerdict | None
    virtualHost: str | None = None

    @property
    def allowed(self) -> bool:
        """
        Whether the request may go through.
        """
        return self.decision.allowed

    @property
    def record(self) -> EndpointRecord | None:
        """
        The device's endpoint record, when the registry had one.
        """
        if self.decision.device is not None:
            return self.decision.device
        return self.verdict.record if self.verdict is not None else None

    @property
    def emsId(self) -> int | None:
        """
        The EMS whose CA issued the presented certificate, if any.
        """
        return self.presented.emsId if self.presented is not None else None

    @property
    def uid(self) -> str | None:
        """
        The device UID as presented (it may come from a certificate that
        failed validation), or C{None}.
        """
        if self.presented is not None and self.presented.uid is not None:
            return self.presented.uid
        record = self.record
        return record.uid if record is not None else None

    @property
    def tagNames(self) -> tuple[str, ...]:
        """
        The device's tags as policies name them (C{EMS1_ZTNA_x}), sorted;
        empty for an anonymous client.
        """
        if self.verdict is None or not self.verdict.valid:
            return ()
        return _tagNames(self.facts.deviceTags)


#: How many entries the per-process caches of this module hold at most.
_CACHE_LIMIT = 4096


@functools.lru_cache(maxsize=_CACHE_LIMIT)
def _tagNames(tags: frozenset[EmsTag]) -> tuple[str, ...]:
    # Sorted tag names by tag set: a device's tags are the same frozenset
    # request after request (see AccessGate.deviceTags), and the names are
    # needed for every traffic line.
    return tuple(sorted(str(tag) for tag in tags))


#: What the client reads under each error, beyond the code's message, when
#: the device verdict says why.  Never internal facts: those go to the
#: log's ztnadetail.
_VERDICT_DETAILS: Mapping[VerdictKind, str] = {
    VerdictKind.REGISTRY_UNAVAILABLE: "Device information is not available right "
    "now; try again in a moment.",
    VerdictKind.UNKNOWN: "This device is not registered with the gateway.",
    VerdictKind.SERIAL_MISMATCH: "This device certificate is not the one "
    "enrolled for the device; use its current certificate.",
    VerdictKind.REVOKED: "The device certificate has been revoked.",
    VerdictKind.QUARANTINED: "This device is quarantined.",
    VerdictKind.OFFLINE: "This device has not reported to the gateway recently.",
}

_ERROR_DETAILS: Mapping[str, str] = {
    errors.EMPTY_CERTIFICATE.code: "The browser or client sent no device certificate.",
    errors.MANAGEABLE_WITHOUT_CERTIFICATE.code: "This client identifies itself as "
    "a managed device but sent no device certificate.",
    errors.TAG_DENY.code: "A posture tag of this device is denied by the policy.",
    errors.TAGS_MISSING.code: "This device lacks a posture tag the policy requires.",
}


def userDetail(error: ZtnaError, verdict: DeviceVerdict | None) -> str | None:
    """
    The sentence a block page shows under C{error}: what the user can act
    on, never internal facts (addresses, registry errors, policy names).

    @param verdict: the device verdict behind the error, if any.
    """
    if verdict is not None and verdict.error == error:
        if verdict.kind is VerdictKind.INVALID and verdict.presented is not None:
            problem = verdict.presented.problem
            if problem:
                return f"The device certificate was refused: {problem}."
        detail = _VERDICT_DETAILS.get(verdict.kind)
        if detail is not None:
            return detail
    return _ERROR_DETAILS.get(error.code)


@frozen
class VipSite:
    """
    What a VIP serves, compiled once: the VIP, its access proxy, the
    matching rules and the SNI names.

    @ivar vip: the VIP.
    @ivar accessProxy: its access proxy, or C{None} (every request: 021).
    @ivar matcher: the access proxy's matching rules.
    @ivar sni: the VIP's TLS server names.
    """

    vip: Vip
    accessProxy: AccessProxy | None
    matcher: AccessProxyMatcher
    sni: SNITable


@frozen
class SessionLabel:
    """
    What the log says about a live session when the tracker ends it.

    @ivar sessionId: the session number (the traffic log's C{sessionid}).
    @ivar srcIp: the client's address.
    @ivar srcPort: the client's port.
    @ivar service: C{HTTPS}, C{HTTP} or C{tcp/<port>}.
    @ivar vip: the VIP's name.
    @ivar accessProxy: the access proxy's name.
    @ivar apiGatewayId: the api-gateway, when one was matched.
    @ivar realServerId: the real server, when one was used.
    @ivar dstIp: the real server's address, when known.
    @ivar dstPort: the real server's port, when known.
    """

    sessionId: int
    srcIp: ipaddress.IPv4Address
    srcPort: int
    service: str
    vip: str
    accessProxy: str | None = None
    apiGatewayId: int | None = None
    realServerId: int | None = None
    dstIp: ipaddress.IPv4Address | None = None
    dstPort: int | None = None


def localTime(seconds: float) -> datetime.datetime:
    """
    C{seconds} as the naive local time that schedules are written in.
    """
    return datetime.datetime.fromtimestamp(seconds)


class AccessGate:
    """
    The collaborators of the authorize path, one per gateway process.

    @ivar config: the configuration, fixed for the gate's life (a new
        configuration means a new gate: per-request results derived from it
        are remembered).
    @ivar policySet: the compiled policies.
    @ivar sessions: the live-session tracker (re-decisions come back here).
    @ivar logWriter: where traffic and event lines go.
    """

    def __init__(
        self,
        config: Config,
        policySet: PolicySet,
        judge: Callable[[PresentedCertificate | None], DeviceVerdict],
        clock: IReactorTime,
        logWriter: LogWriter,
        indexes: Mapping[int, IEndpointIndex],
        resolved: Callable[[], Resolved] = lambda: {},
    ) -> None:
        """
        @param config: the configuration.
        @param policySet: the compiled policies (L{PolicySet.fromConfig}).
        @param judge: judges a presented certificate now
            (L{ztnagw.tls.server.DeviceCertificateVerifier.judge}).
        @param clock: the reactor's clock.
        @param logWriter: the log writer.
        @param indexes: the registry index of each enabled EMS (the session
            tracker listens to them).
        @param resolved: the current DNS answers for the FQDN addresses the
            policies name (L{PolicySet.fqdns}).
        """
        self.config = config
        self.policySet = policySet
        self.logWriter = logWriter
        self._judge = judge
        self._clock = clock
        self._resolved = resolved
        self._settings: dict[tuple[str, str | None], ClientCertificateSettings] = {}
        thresholds = {
            ems.id: float(ems.outOfSyncThreshold)
            for ems in config.emsConnectors.values()
            if ems.status
        }
        self.sessions = SessionTracker(
            clock, indexes, thresholds, self.reauthorize, self._reportEnded
        )
        self._nextSession = 0
        # Per-request work that depends only on values that are replaced,
        # never changed, when they change (records, the configuration):
        # remembered by identity, emptied when full.
        self._tags: dict[tuple[int, str], tuple[EndpointRecord, frozenset[EmsTag]]] = {}
        self._interfaces: dict[ipaddress.IPv4Address | None, tuple[str | None, str | None]] = {}
        self._sourceInterfaces: dict[str, tuple[str | None, str | None]] = {}

    def newSessionId(self) -> int:
        """
        A fresh session number (the traffic log's C{sessionid}, also shown
        on block pages), unique in this process until it wraps at 2**32.
        """
        self._nextSession = self._nextSession % 0xFFFFFFFF + 1
        return self._nextSession

    def clientCertificateSettings(
        self, vipName: str, virtualHost: str | None
    ) -> ClientCertificateSettings:
        """
        The client-certificate settings in effect for VIP C{vipName} and
        virtual host C{virtualHost} (see
        L{Config.clientCertificateSettings}).
        """
        key = (vipName, virtualHost)
        settings = self._settings.get(key)
        if settings is None:
            settings = self.config.clientCertificateSettings(vipName, virtualHost)
            self._settings[key] = settings
        return settings

    def deviceTags(self, verdict: DeviceVerdict | None) -> frozenset[EmsTag]:
        """
        The tags of the device behind C{verdict}, as policies name them:
        assigned tags, tags its EMS's tagging rules give it, and
        C{all_registered_clients}.  Empty unless the device is valid.

        This is the one place tags are computed (L{ztnagw.access.deviceTags}
        with L{ztnagw.ems.tagging.ruleTags}).
        """
        if verdict is None or not verdict.valid or verdict.record is None:
            return frozenset()
        presented = verdict.presented
        if presented is None or presented.emsId is None:
            return frozenset()
        record = verdict.record
        # Tags are a function of the record and the configuration only: a
        # registry change replaces the record, which is then judged anew.
        key = (presented.emsId, record.uid)
        cached = self._tags.get(key)
        if cached is not None and cached[0] is record:
            return cached[1]
        ems = self.config.emsConnectors.get(presented.emsId)
        rules = ems.taggingRules if ems is not None else {}
        tags = deviceTags(record, presented.emsId, ruleTags(rules, record))
        if len(self._tags) >= _CACHE_LIMIT:
            self._tags.clear()
        self._tags[key] = (record, tags)
        return tags

    def authorize(
        self,
        vip: Vip,
        presented: PresentedCertificate | None,
        sourceIp: ipaddress.IPv4Address,
        destinationIp: ipaddress.IPv4Address,
        virtualHost: str | None,
        userAgents: Iterable[bytes],
    ) -> Authorization:
        """
        Judge the device and decide one request now.

        @param vip: the VIP the client connected to.
        @param presented: the certificate its connection presented.
        @param sourceIp: the client's address.
        @param destinationIp: what policies' C{dstaddr} is matched against
            (the VIP's address for HTTPS, the resolved destination for a
            tunnel).
        @param virtualHost: the virtual host whose client-certificate
            settings apply, or C{None}.
        @param userAgents: the request's C{User-Agent} values.
        """
        settings = self.clientCertificateSettings(vip.name, virtualHost)
        verdict = self._judge(presented) if settings.clientCert else None
        facts = RequestFacts(
            vip=vip.name,
            sourceIp=sourceIp,
            destinationIp=destinationIp,
            when=localTime(self._clock.seconds()),
            clientCertificate=settings,
            verdict=verdict,
            userAgents=tuple(userAgents),
            deviceTags=self.deviceTags(verdict),
        )
        return Authorization(
            decision=decide(self.policySet, facts, self._resolved()),
            facts=facts,
            settings=settings,
            presented=presented,
            verdict=verdict,
            virtualHost=virtualHost,
        )

    def reauthorize(self, authorization: Authorization) -> Authorization:
        """
        Decide again, now, what C{authorization} decided: the same facts,
        the device judged anew (registry, tags, online status) and the
        current time (schedules).
        """
        settings = authorization.settings
        verdict = self._judge(authorization.presented) if settings.clientCert else None
        facts = attrs.evolve(
            authorization.facts,
            when=localTime(self._clock.seconds()),
            verdict=verdict,
            deviceTags=self.deviceTags(verdict),
        )
        return attrs.evolve(
            authorization,
            decision=decide(self.policySet, facts, self._resolved()),
            facts=facts,
            verdict=verdict,
        )

    def emsSerialOf(self, authorization: Authorization | None, presented: PresentedCertificate | None) -> tuple[str | None, str | None]:
        """
        The EMS serial number and tenant id to show for a client: its
        record's, else those of the EMS whose CA issued its certificate.
        """
        record = authorization.record if authorization is not None else None
        if record is not None:
            return record.emsSerial or None, record.tenantId
        if presented is not None and presented.emsId is not None:
            ems = self.config.emsConnectors.get(presented.emsId)
            if ems is not None:
                return ems.serialNumber, ems.tenantId
        return None, None

    def interfaceFor(self, address: ipaddress.IPv4Address | None) -> tuple[str | None, str | None]:
        """
        The configured interface whose subnet holds C{address}, and its
        role, for the log's C{dstintf}; C{(None, None)} when none does.
        """
        found = self._interfaces.get(address)
        if found is not None:
            return found
        found = (None, None)
        if address is not None:
            for interface in self.config.interfaces.values():
                if interface.ip.ip != _ANY and address in interface.ip.network:
                    found = (interface.name, interface.role)
                    break
        if len(self._interfaces) >= _CACHE_LIMIT:
            self._interfaces.clear()
        self._interfaces[address] = found
        return found

    def _sourceInterface(self, vip: Vip) -> tuple[str | None, str | None]:
        # The log's srcintf and srcintfrole: the VIP's extintf.
        found = self._sourceInterfaces.get(vip.name)
        if found is None:
            srcIntf = vip.extintf if vip.extintf and vip.extintf != "any" else None
            srcRole = None
            if srcIntf is not None and srcIntf in self.config.interfaces:
                srcRole = self.config.interfaces[srcIntf].role
            found = self._sourceInterfaces[vip.name] = (srcIntf, srcRole)
        return found

    def trafficEntry(
        self,
        context: RequestContext,
        authorization: Authorization | None,
        *,
        action: str,
        service: str,
        error: ZtnaError | None = None,
        detail: str | None = None,
        hostname: bytes | str | None = None,
        url: bytes | str | None = None,
        apiGatewayId: int | None = None,
        realServerId: int | None = None,
        dstIp: ipaddress.IPv4Address | None = None,
        dstPort: int | None = None,
        lanIn: int = 0,
        lanOut: int = 0,
        wanIn: int = 0,
        wanOut: int = 0,
        userAgents: Iterable[bytes] = (),
    ) -> TrafficLog:
        """
        The traffic log line of one request or tunnel, every ZTNA field
        filled that is known.
        """
        vip = context.vip
        srcIntf, srcRole = self._sourceInterface(vip)
        dstIntf, dstRole = self.interfaceFor(dstIp)
        presented = context.handshake.presented
        policy = authorization.decision.policy if authorization is not None else None
        if authorization is not None:
            manageable = authorization.decision.manageable
        else:
            manageable = presented is not None or looksManageable(userAgents)
        emsSerial, _ = self.emsSerialOf(authorization, presented)
        if authorization is not None:
            uid = authorization.uid
            tags = authorization.tagNames
        else:
            uid = presented.uid if presented is not None else None
            tags = ()
        return TrafficLog(
            srcIp=context.sourceIp,
            srcPort=context.sourcePort,
            sessionId=context.sessionId,
            service=service,
            action=action,
            srcIntf=srcIntf,
            srcIntfRole=srcRole,
            dstIp=dstIp,
            dstPort=dstPort,
            dstIntf=dstIntf,
            dstIntfRole=dstRole,
            policyId=policy.id if policy is not None else None,
            policyType=policy.kind if policy is not None else None,
            policyUuid=policy.uuid if policy is not None else None,
            policyName=policy.name if policy is not None else None,
            duration=max(0.0, self._clock.seconds() - context.received),
            apiGatewayId=apiGatewayId,
            realServerId=realServerId,
            vip=vip.name,
            accessProxy=context.accessProxy.name if context.accessProxy else None,
            uid=uid,
            manageable=MANAGEABLE if manageable else UNMANAGEABLE,
            tags=tags,
            emsSerial=emsSerial,
            certSerial=presented.certSerial if presented is not None else None,
            hostname=hostname,
            url=url,
            ztnaError=error,
            detail=detail,
            lanIn=lanIn,
            lanOut=lanOut,
            wanIn=wanIn,
            wanOut=wanOut,
        )

    def logTraffic(
        self,
        context: RequestContext,
        authorization: Authorization | None,
        entry: TrafficLog,
    ) -> bool:
        """
        Write C{entry} if the configuration asks for it: a blocked request
        when the access proxy has C{log-blocked-traffic enable} (with the
        FortiOS event for a policy denial or a failed api-gateway match),
        an allowed one when its policy has C{logtraffic all}.

        Blocked means refused: C{action deny}, or any entry that carries a
        ZTNA error code, whatever its action says about how it ended
        (C{dns} for 023, C{ip-conn} for a real server that could not be
        reached, C{close} for a session the gateway ended).  Such a line is
        governed by C{log-blocked-traffic}, never by the policy's
        C{logtraffic}: a refusal must not depend on the policy that the
        request would have matched.

        @return: whether a line was written.
        """
        if entry.action == DENY or entry.ztnaError is not None:
            accessProxy = context.accessProxy
            if accessProxy is not None and not accessProxy.logBlockedTraffic:
                return False
            self.logWriter.write(entry)
            error = entry.ztnaError
            if error == errors.POLICY_DENY:
                self.logWriter.write(_eventFrom(entry, ZTNA_POLICY_DENIED))
            elif error == errors.NO_APPLICATION:
                self.logWriter.write(_eventFrom(entry, ZTNA_GATEWAY_MATCH_FAILURE))
            return True
        policy = authorization.decision.policy if authorization is not None else None
        if policy is not None and policy.logTraffic == "all":
            self.logWriter.write(entry)
            return True
        return False

    def blockPage(
        self,
        context: RequestContext,
        error: ZtnaError,
        acceptHeader: bytes | None,
        authorization: Authorization | None = None,
        destination: bytes | str | None = None,
        detail: str | None = None,
    ) -> Page:
        """
        The block page for a request denied with C{error}.

        @param detail: what the user reads under the message; by default
            L{userDetail} of the error and the device verdict.
        """
        presented = context.handshake.presented
        verdict = authorization.verdict if authorization is not None else None
        emsSerial, tenantId = self.emsSerialOf(authorization, presented)
        policy = authorization.decision.policy if authorization is not None else None
        uid = authorization.uid if authorization is not None else (
            presented.uid if presented is not None else None
        )
        return renderBlockPage(
            BlockFacts(
                error=error,
                requestTime=context.received,
                uid=uid,
                certSerial=presented.certSerial if presented is not None else None,
                destination=destination,
                emsSerial=emsSerial,
                tenantId=tenantId,
                clientIp=context.sourceIp,
                policyId=policy.id if policy is not None else None,
                sessionId=context.sessionId,
                detail=detail if detail is not None else userDetail(error, verdict),
            ),
            acceptHeader,
        )

    def openSession(
        self,
        context: RequestContext,
        authorization: Authorization,
        close: Callable[[Authorization], None],
        label: SessionLabel,
    ) -> LiveSession | None:
        """
        Register a live session of the device behind C{authorization}.

        @return: the session, or C{None} when there is no device to follow
            (an anonymous client, or a denial).
        """
        record = authorization.record
        emsId = authorization.emsId
        if not authorization.allowed or record is None or emsId is None:
            return None
        return self.sessions.register(emsId, record.uid, authorization, close, label)

    def _reportEnded(self, session: LiveSession, authorization: Authorization) -> None:
        label = session.label
        if not isinstance(label, SessionLabel):
            return
        policy = authorization.decision.policy or session.authorization.decision.policy
        presented = authorization.presented
        emsSerial, _ = self.emsSerialOf(authorization, presented)
        self.logWriter.write(
            EventLog(
                kind=DEVICE_SESSION_ENDED,
                srcIp=label.srcIp,
                srcPort=label.srcPort,
                dstIp=label.dstIp,
                dstPort=label.dstPort,
                sessionId=label.sessionId,
                service=label.service,
                policyId=policy.id if policy is not None else None,
                action=CLOSE,
                apiGatewayId=label.apiGatewayId,
                realServerId=label.realServerId,
                vip=label.vip,
                accessProxy=label.accessProxy,
                uid=authorization.uid,
                tags=session.authorization.tagNames,
                emsSerial=emsSerial,
                certSerial=presented.certSerial if presented is not None else None,
                ztnaError=authorization.decision.error,
                detail=authorization.decision.reason,
            )
        )
        _log.info(
            "Ended live session {sessionId} of device {uid}: {reason}",
            sessionId=label.sessionId,
            uid=authorization.uid,
            reason=authorization.decision.reason,
        )


def _eventFrom(entry: TrafficLog, kind: EventKind) -> EventLog:
    return EventLog(
        kind=kind,
        srcIp=entry.srcIp,
        srcPort=entry.srcPort,
        srcIntf=entry.srcIntf,
        srcIntfRole=entry.srcIntfRole,
        dstIp=entry.dstIp,
        dstPort=entry.dstPort,
        sessionId=entry.sessionId,
        service=entry.service,
        policyId=entry.policyId,
        action=entry.action,
        apiGatewayId=entry.apiGatewayId,
        vip=entry.vip,
        accessProxy=entry.accessProxy,
        uid=entry.uid,
        tags=entry.tags,
        emsSerial=entry.emsSerial,
        certSerial=entry.certSerial,
        hostname=entry.hostname,
        url=entry.url,
        ztnaError=entry.ztnaError,
        detail=entry.detail,
    )


@frozen
class RequestContext:
    """
    One request on one VIP connection, with the shared authorize path.

    Made by the HTTPS request handler for every request, and handed to the
    tunnel handler (L{ztnagw.gateway.interfaces.ITunnelHandler}) for tunnel
    requests.

    @ivar site: what the VIP serves.
    @ivar handshake: what the connection's TLS handshake captured.
    @ivar sourceIp: the client's address.
    @ivar sourcePort: the client's port.
    @ivar localIp: the address the client connected to (the VIP's
        C{extip}, or the connection's own address when that is 0.0.0.0):
        HTTPS requests are decided with it as destination.
    @ivar localPort: the port the client connected to.
    @ivar sessionId: this request's session number.
    @ivar received: when the request head arrived (POSIX seconds).
    @ivar gate: the process's authorize path.
    """

    site: VipSite
    handshake: HandshakeFacts
    sourceIp: ipaddress.IPv4Address
    sourcePort: int
    localIp: ipaddress.IPv4Address
    localPort: int
    sessionId: int
    received: float
    gate: AccessGate

    @property
    def vip(self) -> Vip:
        """
        The VIP.
        """
        return self.site.vip

    @property
    def accessProxy(self) -> AccessProxy | None:
        """
        The VIP's access proxy, or C{None}.
        """
        return self.site.accessProxy

    @property
    def matcher(self) -> AccessProxyMatcher:
        """
        The access proxy's matching rules.
        """
        return self.site.matcher

    @property
    def sniVirtualHost(self) -> str | None:
        """
        The virtual host the TLS server name (SNI) chose, whose
        client-certificate settings the handshake applied; C{None} for the
        VIP's own.
        """
        entry = self.site.sni.lookup(self.handshake.serverName)
        return entry.virtualHost if entry is not None else None

    def settings(self, virtualHost: str | None) -> ClientCertificateSettings:
        """
        The client-certificate settings of C{virtualHost} on this VIP.
        """
        return self.gate.clientCertificateSettings(self.vip.name, virtualHost)

    def misdirected(self, virtualHost: str | None) -> bool:
        """
        Whether a request for C{virtualHost} must be refused with 421: its
        client-certificate settings differ from those of the virtual host
        the TLS server name chose, which the handshake applied (so a client
        cannot name a host without certificate rules in SNI and another in
        C{Host}).
        """
        return self.settings(virtualHost) != self.settings(self.sniVirtualHost)

    def authorize(
        self,
        virtualHost: str | None,
        userAgents: Iterable[bytes] = (),
        destinationIp: ipaddress.IPv4Address | None = None,
    ) -> Authorization:
        """
        Judge the device again and make the access decision for this
        request (see L{AccessGate.authorize}).

        @param virtualHost: the virtual host matched, or C{None}.
        @param userAgents: the request's C{User-Agent} values.
        @param destinationIp: the destination policies see; the VIP's
            address by default (HTTPS requests).
        """
        return self.gate.authorize(
            self.vip,
            self.handshake.presented,
            self.sourceIp,
            self.localIp if destinationIp is None else destinationIp,
            virtualHost,
            userAgents,
        )

    def deny(
        self,
        request: object,
        error: ZtnaError,
        authorization: Authorization | None = None,
        *,
        detail: str | None = None,
        logDetail: str | None = None,
        destination: bytes | str | None = None,
        service: str = HTTPS,
        action: str = DENY,
        **logFields: object,
    ) -> TrafficLog:
        """
        Refuse C{request} with the block page of C{error} (status, body in
        the representation its C{Accept} asks for, C{X-ZTNA-Error}), and
        log it.

        @param request: the L{ztnagw.http.server.Request} to answer.
        @param authorization: the decision that denied it, if one was made.
        @param detail: what the user reads (default: L{userDetail}).
        @param logDetail: the reason for the log's C{ztnadetail} (default:
            the decision's reason).
        @param destination: what the client asked for (an URL, C{host:port}).
        @param service: the log's C{service}.
        @param action: the log's C{action} (C{deny}, or C{dns} for 023...).
        @param logFields: more fields of L{AccessGate.trafficEntry}.
        @return: the traffic log entry (written or not, as configured).
        """
        headers = request.headers  # type: ignore[attr-defined]
        status, pageHeaders, body = self.gate.blockPage(
            self,
            error,
            headers.get(b"accept"),
            authorization,
            destination,
            detail,
        )
        response = request.response  # type: ignore[attr-defined]
        if not response.headWritten and not response.finished:
            response.respond(status, REASONS.get(status, b"Error"), pageHeaders, body)
        if logDetail is None and authorization is not None and not authorization.allowed:
            logDetail = authorization.decision.reason
        entry = self.gate.trafficEntry(
            self,
            authorization,
            action=action,
            service=service,
            error=error,
            detail=logDetail,
            lanOut=len(body),
            userAgents=headers.getAll(b"user-agent"),
            **logFields,  # type: ignore[arg-type]
        )
        self.gate.logTraffic(self, authorization, entry)
        return entry

    def logTraffic(self, authorization: Authorization | None, **fields: object) -> TrafficLog:
        """
        Log one request or tunnel that was allowed (or ended otherwise than
        by a denial), as configured (C{logtraffic all}).

        @param fields: the fields of L{AccessGate.trafficEntry} (C{action}
            and C{service} are required).
        @return: the entry (written or not).
        """
        entry = self.gate.trafficEntry(self, authorization, **fields)  # type: ignore[arg-type]
        self.gate.logTraffic(self, authorization, entry)
        return entry

    def openSession(
        self,
        authorization: Authorization,
        close: Callable[[Authorization], None],
        service: str = HTTPS,
        **labelFields: object,
    ) -> LiveSession | None:
        """
        Register a live session for this request's device (see
        L{AccessGate.openSession}).

        @param close: ends the session, given the authorization that denied
            it.
        @param service: the log's C{service} for it.
        @param labelFields: more fields of L{SessionLabel} (C{apiGatewayId},
            C{realServerId}, C{dstIp}, C{dstPort}).
        """
        label = SessionLabel(
            sessionId=self.sessionId,
            srcIp=self.sourceIp,
            srcPort=self.sourcePort,
            service=service,
            vip=self.vip.name,
            accessProxy=self.accessProxy.name if self.accessProxy else None,
            **labelFields,  # type: ignore[arg-type]
        )
        return self.gate.openSession(self, authorization, close, label)
