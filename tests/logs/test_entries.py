"""
Tests for L{ztnagw.logs.entries}: the fields, their order and their checks.
"""

from __future__ import annotations

import datetime
import ipaddress
import json

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from ztnagw.errors import CERTIFICATE_REVOKED, NO_APPLICATION, POLICY_DENY
from ztnagw.logs.entries import (
    ACCEPT,
    DENY,
    DEVICE_ENROLLED,
    DEVICE_SESSION_ENDED,
    EVENT_KINDS,
    HTTPS,
    MANAGEABLE,
    REAL_SERVER_DOWN,
    ZTNA_GATEWAY_MATCH_FAILURE,
    ZTNA_POLICY_DENIED,
    EventKind,
    EventLog,
    TrafficLog,
    tunnelService,
)
from ztnagw.logs.interfaces import ILogEntry
from ztnagw.logs.line import LogLine, LogTime, parseKeyValue, splitTags

#: A ZTNA traffic log line printed by FortiOS 7.4 (TCP forwarding of RDP),
#: from the FortiOS 7.4.7 administration guide, "ZTNA application gateway
#: with SAML and MFA using FortiAuthenticator example".
FORTIOS_SAMPLE = (
    'date=2023-05-09 time=01:14:34 eventtime=1683620074907124357 tz="-0700" '
    'logid="0005000024" type="traffic" subtype="ztna" level="notice" '
    'vd="root" srcip=10.0.3.2 srcport=17556 srcintf="port3" '
    'srcintfrole="wan" dstcountry="Reserved" srccountry="Reserved" '
    'dstip=10.88.0.1 dstport=3389 dstintf="port2" dstintfrole="dmz" '
    'sessionid=142359 service="RDP" proxyapptype="http" proto=6 '
    'action="accept" policyid=1 policytype="proxy-policy" '
    'poluuid="08a04362-ee38-51ed-77fa-737e2656f04a" policyname="ZTNA-Rule" '
    'duration=85 user="tsmith" group="ztna-saml-users" gatewayid=3 '
    'vip="ZTNA-access" accessproxy="ZTNA-access" '
    'clientdevicemanageable="manageable" wanin=0 rcvdbyte=0 wanout=0 '
    'lanin=3639 sentbyte=3639 lanout=3797 appcat="unscanned"'
)

SAMPLE_TIME = LogTime(1683620074907124357, -7 * 3600)
UTC_TIME = LogTime.fromSeconds(1736510401.0, datetime.timezone.utc)


def keyValue(entry: TrafficLog | EventLog, when: LogTime = UTC_TIME) -> str:
    """
    Spell C{entry} as a C{key=value} line stamped C{when}.
    """
    return LogLine.fromEntry(when, entry.logFields()).keyValue()


def sampleEntry(**changes: object) -> TrafficLog:
    """
    The entry FortiOS logged as L{FORTIOS_SAMPLE}, with C{changes}.
    """
    values: dict[str, object] = dict(
        srcIp="10.0.3.2",
        srcPort=17556,
        srcIntf="port3",
        srcIntfRole="wan",
        dstIp="10.88.0.1",
        dstPort=3389,
        dstIntf="port2",
        dstIntfRole="dmz",
        sessionId=142359,
        service="RDP",
        action=ACCEPT,
        policyId=1,
        policyUuid="08a04362-ee38-51ed-77fa-737e2656f04a",
        policyName="ZTNA-Rule",
        duration=85,
        user="tsmith",
        group="ztna-saml-users",
        apiGatewayId=3,
        vip="ZTNA-access",
        accessProxy="ZTNA-access",
        manageable=MANAGEABLE,
        lanIn=3639,
        lanOut=3797,
    )
    values.update(changes)
    return TrafficLog(**values)  # type: ignore[arg-type]


class TrafficLogFormatTests(SynchronousTestCase):
    """
    L{TrafficLog} lines read like FortiOS's.
    """

    def test_fortiosSample(self) -> None:
        """
        The session of a FortiOS sample line is logged exactly as FortiOS
        logged it: same fields, same order, same spelling.
        """
        self.assertEqual(keyValue(sampleEntry(), SAMPLE_TIME), FORTIOS_SAMPLE)

    def test_everyField(self) -> None:
        """
        With everything known, ztnagw's own fields follow the FortiOS device
        fields and precede the byte counters; C{rcvdbyte} repeats C{wanin}
        and C{sentbyte} repeats C{lanin}, as in FortiOS.
        """
        entry = TrafficLog(
            srcIp="203.0.113.5",
            srcPort=50123,
            srcIntf="wan1",
            srcIntfRole="wan",
            dstIp="192.0.2.10",
            dstPort=443,
            dstIntf="lan",
            dstIntfRole="lan",
            sessionId=1001,
            service=HTTPS,
            action=ACCEPT,
            policyId=3,
            policyName="ZTNA-web",
            duration=12.9,
            apiGatewayId=2,
            realServerId=1,
            vip="ZTNA-VIP",
            accessProxy="ZTNA-AP",
            uid="9A016B5A6E914B42AD4168C066EB04CA",
            manageable=MANAGEABLE,
            tags={"EMS1_ZTNA_Domain-Users", "EMS1_CLASS_High"},
            emsSerial="FCTEMS8822001975",
            certSerial="2B8D4FF0E71FE7E0",
            hostname="app.example.com",
            url="/index.html",
            lanIn=3639,
            lanOut=3797,
            wanIn=3500,
            wanOut=3400,
        )
        self.assertEqual(
            keyValue(entry),
            "date=2025-01-10 time=12:00:01 eventtime=1736510401000000000 "
            'tz="+0000" logid="0005000024" type="traffic" subtype="ztna" '
            'level="notice" vd="root" srcip=203.0.113.5 srcport=50123 '
            'srcintf="wan1" srcintfrole="wan" dstcountry="Reserved" '
            'srccountry="Reserved" dstip=192.0.2.10 dstport=443 '
            'dstintf="lan" dstintfrole="lan" sessionid=1001 service="HTTPS" '
            'proxyapptype="http" proto=6 action="accept" policyid=3 '
            'policytype="proxy-policy" policyname="ZTNA-web" duration=12 '
            'gatewayid=2 realserverid=1 vip="ZTNA-VIP" accessproxy="ZTNA-AP" '
            'clientdeviceid="9A016B5A6E914B42AD4168C066EB04CA" '
            'clientdevicemanageable="manageable" '
            'clientdevicetags="EMS1_CLASS_High/EMS1_ZTNA_Domain-Users" '
            'clientdeviceems="FCTEMS8822001975" '
            'clientcertsn="2B8D4FF0E71FE7E0" hostname="app.example.com" '
            'url="/index.html" wanin=3500 rcvdbyte=3500 wanout=3400 '
            'lanin=3639 sentbyte=3639 lanout=3797 appcat="unscanned"',
        )

    def test_denial(self) -> None:
        """
        A denied request carries its ZTNA error code and message, and no
        real-server fields.
        """
        entry = TrafficLog(
            srcIp="198.51.100.7",
            srcPort=40000,
            sessionId=7,
            service=HTTPS,
            action=DENY,
            uid="9A016B5A6E914B42AD4168C066EB04CA",
            ztnaError=CERTIFICATE_REVOKED,
            detail="revoked by admin",
            lanIn=517,
            lanOut=1024,
        )
        self.assertEqual(
            keyValue(entry),
            "date=2025-01-10 time=12:00:01 eventtime=1736510401000000000 "
            'tz="+0000" logid="0005000024" type="traffic" subtype="ztna" '
            'level="notice" vd="root" srcip=198.51.100.7 srcport=40000 '
            'srccountry="Reserved" sessionid=7 service="HTTPS" '
            'proxyapptype="http" proto=6 action="deny" '
            'policytype="proxy-policy" duration=0 '
            'clientdeviceid="9A016B5A6E914B42AD4168C066EB04CA" '
            'ztnaerror="063" ztnadetail="revoked by admin" '
            'msg="client certificate revoked" wanin=0 rcvdbyte=0 wanout=0 '
            'lanin=517 sentbyte=517 lanout=1024 appcat="unscanned"',
        )

    def test_globalAddressHasNoCountry(self) -> None:
        """
        ztnagw has no GeoIP database: a public address gets no country
        field rather than a wrong one.
        """
        line = keyValue(sampleEntry(srcIp="8.8.8.8"))
        self.assertNotIn("srccountry", line)
        self.assertIn('dstcountry="Reserved"', line)

    def test_json(self) -> None:
        """
        The JSON spelling of a traffic line has the same fields, typed.
        """
        line = LogLine.fromEntry(
            SAMPLE_TIME, sampleEntry(tags=["EMS1_ZTNA_a"]).logFields()
        )
        decoded = json.loads(line.json())
        self.assertEqual(
            list(decoded),
            [key for key, value in parseKeyValue(line.keyValue())],
        )
        self.assertEqual(decoded["sessionid"], 142359)
        self.assertEqual(decoded["srcip"], "10.0.3.2")
        self.assertEqual(decoded["clientdevicetags"], ["EMS1_ZTNA_a"])
        self.assertEqual(decoded["eventtime"], 1683620074907124357)

    def test_interface(self) -> None:
        """
        Traffic and event entries provide L{ILogEntry}.
        """
        self.assertTrue(verifyObject(ILogEntry, sampleEntry()))
        self.assertTrue(verifyObject(ILogEntry, EventLog(REAL_SERVER_DOWN)))


class TrafficLogValueTests(SynchronousTestCase):
    """
    L{TrafficLog} checks and normalises its values on construction.
    """

    def test_tunnelService(self) -> None:
        """
        A tunnel's service is C{tcp/<port>}, as FortiOS names unnamed
        services.
        """
        self.assertEqual(tunnelService(9443), "tcp/9443")
        for bad in (0, 65536, -1):
            self.assertRaises(ValueError, tunnelService, bad)

    def test_mappedAddress(self) -> None:
        """
        An IPv4 client seen on a dual-stack socket is logged as IPv4.
        """
        entry = sampleEntry(srcIp="::ffff:10.0.3.2")
        self.assertEqual(entry.srcIp, ipaddress.IPv4Address("10.0.3.2"))

    def test_scopeDropped(self) -> None:
        """
        The scope of a link-local address (free text that could hold a
        space) is not logged.
        """
        entry = sampleEntry(srcIp="fe80::1%x srcip=1.2.3.4")
        self.assertIn(" srcip=fe80::1 ", keyValue(entry))

    def test_badAddress(self) -> None:
        """
        Something that is not an address is refused.
        """
        self.assertRaises(ValueError, sampleEntry, srcIp="10.0.0.1 x=1")
        self.assertRaises(ValueError, sampleEntry, dstIp="example.com")

    def test_bytesDecoded(self) -> None:
        """
        Network bytes are accepted; bytes that are not UTF-8 are kept as
        visible C{\\xHH} text.
        """
        entry = sampleEntry(hostname=b"caf\xc3\xa9.example", url=b"/\xff")
        self.assertEqual(
            (entry.hostname, entry.url), ("café.example", "/\\xff")
        )
        self.assertEqual(sampleEntry(srcIp=b"10.0.0.1").srcIp.version, 4)

    def test_hostileHost(self) -> None:
        """
        A hostile C{Host} header or user name cannot add fields or lines.
        """
        hostile = 'x" action="accept"\n date=2020-01-01 user="admin\x00'
        line = keyValue(sampleEntry(hostname=hostile, user=hostile))
        self.assertNotIn("\n", line)
        fields = dict(parseKeyValue(line))
        self.assertEqual(fields["hostname"], hostile)
        self.assertEqual(fields["user"], hostile)
        self.assertEqual(fields["action"], "accept")
        self.assertEqual(
            [key for key, value in parseKeyValue(line)].count("action"), 1
        )

    def test_ranges(self) -> None:
        """
        Ports, ids and counters are range-checked; booleans and negative
        numbers are refused.
        """
        for changes in (
            {"srcPort": 65536},
            {"srcPort": -1},
            {"srcPort": None},
            {"sessionId": 2**32},
            {"lanIn": -1},
            {"duration": -1},
            {"duration": float("nan")},
        ):
            self.assertRaises(ValueError, sampleEntry, **changes)
        for changes in (
            {"srcPort": True},
            {"policyId": "1"},
            {"duration": "1"},
        ):
            self.assertRaises(TypeError, sampleEntry, **changes)

    def test_vocabulary(self) -> None:
        """
        Actions, levels, policy types and manageability are FortiOS words.
        """
        for changes in (
            {"action": "allow"},
            {"level": "info"},
            {"policyType": "proxy"},
            {"manageable": "yes"},
        ):
            self.assertRaises(ValueError, sampleEntry, **changes)

    def test_errorType(self) -> None:
        """
        The ZTNA error must be one of L{ztnagw.errors}' values.
        """
        self.assertRaises(TypeError, sampleEntry, ztnaError="063")

    def test_tags(self) -> None:
        """
        Tags are logged sorted and once each; a lone string is refused (it
        would be logged one letter per tag).
        """
        entry = sampleEntry(tags=["b", "a", "b"])
        self.assertEqual(entry.tags, ("a", "b"))
        fields = dict(parseKeyValue(keyValue(entry)))
        self.assertEqual(splitTags(fields["clientdevicetags"]), ("a", "b"))
        self.assertRaises(TypeError, sampleEntry, tags="EMS1_ZTNA_a")

    def test_noTagsNoField(self) -> None:
        """
        A device without tags has no C{clientdevicetags} field.
        """
        self.assertNotIn("clientdevicetags", keyValue(sampleEntry()))


class EventLogTests(SynchronousTestCase):
    """
    L{EventLog} lines.
    """

    def test_policyDenied(self) -> None:
        """
        A FortiOS 60511 event: C{utm}/C{ztna}, warning, with C{desc}, the
        session and the device, and the ZTNA error's message.
        """
        entry = EventLog(
            ZTNA_POLICY_DENIED,
            srcIp="198.51.100.7",
            srcPort=40000,
            dstIp="203.0.113.1",
            dstPort=443,
            sessionId=7,
            service=HTTPS,
            policyId=4,
            action=DENY,
            apiGatewayId=1,
            vip="ZTNA-VIP",
            accessProxy="ZTNA-AP",
            uid="9A016B5A6E914B42AD4168C066EB04CA",
            tags=["EMS1_ZTNA_Contractors"],
            ztnaError=POLICY_DENY,
        )
        self.assertEqual(
            keyValue(entry),
            "date=2025-01-10 time=12:00:01 eventtime=1736510401000000000 "
            'tz="+0000" logid="2100060511" type="utm" subtype="ztna" '
            'eventtype="ztna-policy-match" level="warning" vd="root" '
            'desc="Connection is blocked because proxy-policy action is '
            'deny." srcip=198.51.100.7 srcport=40000 dstip=203.0.113.1 '
            'dstport=443 sessionid=7 proto=6 service="HTTPS" policyid=4 '
            'action="deny" gatewayid=1 vip="ZTNA-VIP" accessproxy="ZTNA-AP" '
            'clientdeviceid="9A016B5A6E914B42AD4168C066EB04CA" '
            'clientdevicetags="EMS1_ZTNA_Contractors" ztnaerror="062" '
            'msg="denied by a ZTNA policy"',
        )
        self.assertEqual(entry.level, "warning")

    def test_gatewayMatchFailure(self) -> None:
        """
        A FortiOS 60522 event carries the host that matched nothing.
        """
        entry = EventLog(
            ZTNA_GATEWAY_MATCH_FAILURE,
            srcIp="198.51.100.7",
            hostname="nope.example.com",
            url="/",
            ztnaError=NO_APPLICATION,
        )
        fields = parseKeyValue(keyValue(entry))
        self.assertEqual(
            fields[4:],
            [
                ("logid", "2100060522"),
                ("type", "utm"),
                ("subtype", "ztna"),
                ("eventtype", "ztna-error"),
                ("level", "warning"),
                ("vd", "root"),
                ("desc", "Unable to match an API-gateway."),
                ("srcip", "198.51.100.7"),
                ("hostname", "nope.example.com"),
                ("url", "/"),
                ("ztnaerror", "021"),
                ("msg", "no application matches this request"),
            ],
        )

    def test_ownEvent(self) -> None:
        """
        ztnagw's own events are C{event}/C{ztna} with C{logdesc}; an
        explicit message wins over the error's.
        """
        entry = EventLog(
            DEVICE_SESSION_ENDED,
            sessionId=9,
            uid="9A016B5A6E914B42AD4168C066EB04CA",
            ztnaError=CERTIFICATE_REVOKED,
            msg="certificate revoked while the tunnel was open",
        )
        fields = dict(parseKeyValue(keyValue(entry)))
        self.assertEqual(fields["type"], "event")
        self.assertEqual(fields["logid"], "9900069901")
        self.assertEqual(
            fields["logdesc"],
            "A session was ended because its device's registry record "
            "changed.",
        )
        self.assertEqual(fields["ztnaerror"], "063")
        self.assertEqual(
            fields["msg"], "certificate revoked while the tunnel was open"
        )
        self.assertNotIn("proto", fields)
        self.assertNotIn("desc", fields)

    def test_enrollment(self) -> None:
        """
        An enrollment event names the device, its certificate serial and
        its EMS.
        """
        entry = EventLog(
            DEVICE_ENROLLED,
            srcIp="198.51.100.7",
            uid="9A016B5A6E914B42AD4168C066EB04CA",
            certSerial="01AB",
            emsSerial="FCTEMS0000000001",
            user="alice",
        )
        fields = dict(parseKeyValue(keyValue(entry)))
        self.assertEqual(
            (
                fields["clientdeviceid"],
                fields["clientcertsn"],
                fields["clientdeviceems"],
                fields["user"],
            ),
            (
                "9A016B5A6E914B42AD4168C066EB04CA",
                "01AB",
                "FCTEMS0000000001",
                "alice",
            ),
        )
        self.assertNotIn("msg", fields)

    def test_kinds(self) -> None:
        """
        Event kinds have unique ten-digit ids: FortiOS's under its ZTNA
        category 21, ztnagw's under 99 with message ids 69901 to 69999.
        """
        self.assertEqual(
            len(EVENT_KINDS), len({k.name for k in EVENT_KINDS.values()})
        )
        for logId, kind in EVENT_KINDS.items():
            self.assertEqual(logId, kind.logId)
            if kind.logType == "utm":
                self.assertEqual(logId[:4], "2100")
                self.assertTrue(kind.name.startswith("LOG_ID_ZTNA_"))
            else:
                self.assertEqual(logId[:4], "9900")
                self.assertTrue(69901 <= int(logId[4:]) <= 69999)
                self.assertTrue(kind.name.startswith("LOG_ID_ZTNAGW_"))

    def test_kindChecked(self) -> None:
        """
        An event kind needs a ten-digit id, a known type and a known level.
        """
        self.assertRaises(
            ValueError, EventKind, "123", "X", "event", "x", "notice", "x"
        )
        self.assertRaises(
            ValueError,
            EventKind,
            "9900069999",
            "X",
            "traffic",
            "x",
            "notice",
            "x",
        )
        self.assertRaises(
            ValueError, EventKind, "9900069999", "X", "event", "x", "loud", "x"
        )
