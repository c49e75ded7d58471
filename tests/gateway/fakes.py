"""
Fakes and shared set-up for the gateway's unit tests: an in-memory
registry index that tells its subscribers, a resolver answering from a
table, and a small configuration with one EMS, one VIP and its access proxy.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Callable, Iterable, Mapping

from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer

from ztnagw.config import Config, loads
from ztnagw.device import PresentedCertificate
from ztnagw.gateway.interfaces import IResolver
from ztnagw.gateway.resolver import NameNotResolved
from ztnagw.registry.interfaces import IEndpointIndex
from ztnagw.registry.record import EndpointRecord, canonicalSerial
from ztnagw.tls.server import HandshakeFacts
from tests.support.pki import DEVICE_UID, Issued, makeCA, makeDevice

if TYPE_CHECKING:  # pragma: no cover
    from ztnagw.gateway.context import AccessGate, RequestContext, VipSite
    from ztnagw.logs.testing import MemoryLogDestination

#: The EMS serial number of the test configuration's EMS 1.
EMS_SERIAL = "FCTEMS8825007278"


@implementer(IEndpointIndex)
class MemoryIndex:
    """
    An endpoint index held in a dict, changed by the test.

    @ivar healthy: what L{IEndpointIndex.healthy} says.
    """

    def __init__(self, records: Iterable[EndpointRecord] = ()) -> None:
        self.healthy = True
        self._records = {r.uid: r for r in records}
        self._observers: list[Callable[[str, EndpointRecord | None], None]] = []

    def lookup(self, uid: str) -> EndpointRecord | None:
        """
        See L{IEndpointIndex.lookup}.
        """
        return self._records.get(uid)

    def records(self) -> list[EndpointRecord]:
        """
        See L{IEndpointIndex.records}.
        """
        return list(self._records.values())

    def subscribe(
        self, observer: Callable[[str, EndpointRecord | None], None]
    ) -> Callable[[], None]:
        """
        See L{IEndpointIndex.subscribe}.
        """
        self._observers.append(observer)
        return lambda: self._observers.remove(observer) if observer in self._observers else None

    @property
    def subscribers(self) -> int:
        """
        How many observers are subscribed.
        """
        return len(self._observers)

    def put(self, record: EndpointRecord) -> None:
        """
        Store C{record} and tell the subscribers.
        """
        self._records[record.uid] = record
        for observer in list(self._observers):
            observer(record.uid, record)

    def delete(self, uid: str) -> None:
        """
        Remove C{uid}'s record and tell the subscribers.
        """
        self._records.pop(uid, None)
        for observer in list(self._observers):
            observer(uid, None)


@implementer(IResolver)
class TableResolver:
    """
    Answers names from a table; a name not in it does not resolve.

    @ivar asked: every name resolved, in order.
    """

    def __init__(self, table: Mapping[str, Iterable[str]] | None = None) -> None:
        self.table = {
            name: tuple(ipaddress.IPv4Address(a) for a in addresses)
            for name, addresses in (table or {}).items()
        }
        self.asked: list[str] = []
        self.pending: dict[str, Deferred[tuple[ipaddress.IPv4Address, ...]]] = {}
        self.hold = False

    def resolve(self, name: str) -> Deferred[tuple[ipaddress.IPv4Address, ...]]:
        """
        See L{IResolver.resolve}; with C{hold} set, the answer waits until
        L{release}.
        """
        self.asked.append(name)
        try:
            return succeed((ipaddress.IPv4Address(name),))
        except ValueError:
            pass
        if self.hold:
            d: Deferred[tuple[ipaddress.IPv4Address, ...]] = Deferred()
            self.pending[name] = d
            return d
        return self._answer(name)

    def _answer(self, name: str) -> Deferred[tuple[ipaddress.IPv4Address, ...]]:
        addresses = self.table.get(name)
        if not addresses:
            return fail(NameNotResolved(name, "no such name"))
        return succeed(addresses)

    def release(self, name: str) -> None:
        """
        Answer a held lookup.
        """
        d = self.pending.pop(name)
        self._answer(name).chainDeferred(d)

    def cached(self, name: str) -> tuple[ipaddress.IPv4Address, ...] | None:
        """
        See L{IResolver.cached}.
        """
        return self.table.get(name)


#: A configuration: EMS 1; VIP "vip" on 127.0.0.1:443 with access proxy
#: "proxy"; api-gateway 1 (http) to 127.0.0.1:8080 for every request of the
#: default virtual host; virtual host "open" (client-cert disable) with
#: api-gateway 2; virtual host "tagged" with api-gateway 3; policy 1
#: allows everything with logtraffic all.
CONFIG = """
config system interface
    edit "lo"
        set ip 127.0.0.1 255.0.0.0
        set role lan
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
        set server "127.0.0.1"
        set https-port 18013
        set serial-number "FCTEMS8825007278"
        set out-of-sync-threshold 60
#EMS#
    next
end
config firewall access-proxy-virtual-host
    edit "open"
        set host "open.test"
        set client-cert disable
    next
    edit "accept"
        set host "accept.test"
        set empty-cert-action accept
    next
end
config firewall vip
    edit "vip"
        set type access-proxy
        set server-type https
        set extip 127.0.0.1
        set extintf "lo"
        set extport 443
        set ssl-certificate "gw"
    next
end
"""

#: The access proxy of L{CONFIG} (a test may give its own instead).
ACCESS_PROXY = """
config firewall access-proxy
    edit "proxy"
        set vip "vip"
        config api-gateway
            edit 1
                set service http
                config realservers
                    edit 1
                        set ip 127.0.0.1
                        set port 8080
                    next
                end
            next
            edit 2
                set service http
                set virtual-host "open"
                config realservers
                    edit 1
                        set ip 127.0.0.1
                        set port 8081
                    next
                end
            next
            edit 3
                set service http
                set virtual-host "accept"
                config realservers
                    edit 1
                        set ip 127.0.0.1
                        set port 8082
                    next
                end
            next
        end
    next
end
"""

#: The policies of L{CONFIG} (a test may give its own instead).
POLICY = """
config firewall policy
    edit 1
        set name "allow"
        set srcintf "any"
        set dstintf "any"
        set srcaddr "all"
        set dstaddr "vip"
        set action accept
        set schedule "always"
        set logtraffic all
    next
end
"""


def config(
    policies: str = POLICY, extra: str = "", ems: str = "", accessProxy: str = ACCESS_PROXY
) -> Config:
    """
    L{CONFIG} with C{accessProxy}, C{extra} and C{policies} appended and
    C{ems} text (tagging rules) inside the EMS entry.
    """
    return loads(CONFIG.replace("#EMS#", ems) + accessProxy + extra + policies)


_CA: list[Issued] = []


def emsCA() -> Issued:
    """
    The EMS CA of the tests (made once per process).
    """
    if not _CA:
        _CA.append(makeCA("ztnagw EMS CA FCTEMS8825007278", keySlot=7))
    return _CA[0]


def device(uid: str = DEVICE_UID, serial: int = 0x1D3D0710258CF569) -> Issued:
    """
    A device certificate issued by L{emsCA}.
    """
    return makeDevice(emsCA(), uid, serial=serial)


def presented(issued: Issued | None = None, emsId: int | None = 1, problem: str | None = None) -> PresentedCertificate:
    """
    What a handshake captures for C{issued} (a device certificate by
    default).
    """
    leaf = (issued or device()).certificate
    return PresentedCertificate.fromLeaf(leaf, emsId, problem)


def record(issued: Issued | None = None, **changes: object) -> EndpointRecord:
    """
    The registered, always-online record of C{issued}'s device.
    """
    issued = issued or device()
    values: dict[str, object] = dict(
        uid=issued.certificate.subject.rfc4514_string().split("=", 1)[1],
        certSerial=canonicalSerial(issued.serial),
        emsSerial=EMS_SERIAL,
        staticPresence=True,
    )
    values.update(changes)
    return EndpointRecord(**values)  # type: ignore[arg-type]


def handshake(
    presentedCertificate: PresentedCertificate | None = None,
    serverName: str | None = None,
    requested: bool = True,
) -> HandshakeFacts:
    """
    Handshake facts of a connection.
    """
    return HandshakeFacts(
        presented=presentedCertificate,
        serverName=serverName,
        clientCertificateRequested=requested,
        tlsVersion="TLSv1.3",
        cipher="TLS_AES_256_GCM_SHA384",
        verdict=None,
    )


def makeGate(
    cfg: Config, index: MemoryIndex, clock: object
) -> tuple["AccessGate", "MemoryLogDestination"]:
    """
    The authorize path over C{cfg} and one EMS index, logging to memory
    (UTC time stamps).
    """
    import datetime

    from ztnagw.access import PolicySet
    from ztnagw.device import judgeDevice
    from ztnagw.gateway.context import AccessGate
    from ztnagw.logs import LogWriter
    from ztnagw.logs.testing import MemoryLogDestination

    destination = MemoryLogDestination()
    writer = LogWriter(clock, [destination], timeZone=datetime.timezone.utc)  # type: ignore[arg-type]
    ems = {1: cfg.emsConnectors[1]}

    def judge(presentedCertificate: PresentedCertificate | None) -> object:
        return judgeDevice(presentedCertificate, {1: index}, ems, clock.seconds())  # type: ignore[attr-defined]

    gate = AccessGate(cfg, PolicySet.fromConfig(cfg), judge, clock, writer, {1: index})  # type: ignore[arg-type]
    return gate, destination


def makeSite(cfg: Config, vipName: str = "vip") -> "VipSite":
    """
    What VIP C{vipName} of C{cfg} serves (its extra certificates have no
    names).
    """
    from ztnagw.gateway.context import VipSite
    from ztnagw.gateway.matching import AccessProxyMatcher, SNITable

    vip = cfg.vips[vipName]
    accessProxy = cfg.accessProxyOf(vipName)
    matcher = AccessProxyMatcher(cfg, accessProxy)
    return VipSite(vip, accessProxy, matcher, SNITable.forVip(matcher, vip.sslCertificate, lambda name: ()))


def makeContext(
    gate: "AccessGate",
    site: "VipSite",
    facts: HandshakeFacts,
    source: str = "127.0.0.1",
    received: float | None = None,
) -> "RequestContext":
    """
    The context of one request from C{source}:50000 to the VIP.
    """
    from ztnagw.gateway.context import RequestContext

    return RequestContext(
        site=site,
        handshake=facts,
        sourceIp=ipaddress.IPv4Address(source),
        sourcePort=50000,
        localIp=site.vip.extip,  # type: ignore[arg-type]
        localPort=site.vip.extport,  # type: ignore[arg-type]
        sessionId=gate.newSessionId(),
        received=gate._clock.seconds() if received is None else received,
        gate=gate,
    )
