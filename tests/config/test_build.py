"""
Tests for L{ztnagw.config.build} through L{ztnagw.config.load} and
L{ztnagw.config.loads}: what a configuration means, and every error it can
be rejected with, each named by C{file:line}.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import uuid

from twisted.trial.unittest import SynchronousTestCase

from ztnagw.config import ConfigurationRejected, load, loads
from ztnagw.config.model import EmsTag, PortRange

from tests.config.helpers import (
    CERTIFICATE,
    MINIMAL,
    ROOT,
    errors,
    joined,
    lineOf,
)
from tests.config.helpers import load as loadParts

#: The three CLI blocks of the FortiGate walkthrough, exactly as printed
#: there (no indentation).
WALKTHROUGH_BLOCKS = (
    """config firewall vip
edit "ZTNA-WS1"
set uuid 7d54bf6a-c894-51f0-489a-986b6702da86
set type access-proxy
set server-type https
set extip 10.0.3.10
set extintf "port3"
set extport 11443
set ssl-certificate "mylabfound-wildcard"
next
end""",
    """config firewall access-proxy
edit "ZTNA-WS1"
set vip "ZTNA-WS1"
config api-gateway
edit 1
config realservers
edit 1
set addr-type fqdn
set address "ws1.mylabfound.com"
set port 11443
next
end
next
end
next
end""",
    """config firewall policy
edit 9
set name "Access-WS1-ZTNA"
set srcintf "port3"
set dstintf "any"
set action accept
set srcaddr "all"
set dstaddr "ZTNA-WS1"
set schedule "always"
set logtraffic all
set nat enable
next
end""",
)


class ShippedConfigurationTests(SynchronousTestCase):
    """
    The configurations in C{etc/} load and mean what their comments say.
    """

    def test_walkthrough(self) -> None:
        """
        C{etc/walkthrough.conf} is the walkthrough's deployment.
        """
        config = load(os.path.join(ROOT, "etc", "walkthrough.conf"))
        vip = config.vips["ZTNA-WS1"]
        self.assertEqual(vip.uuid, uuid.UUID("7d54bf6a-c894-51f0-489a-986b6702da86"))
        self.assertEqual(vip.extip, ipaddress.IPv4Address("10.0.3.10"))
        self.assertEqual((vip.extintf, vip.extport), ("port3", 11443))
        self.assertEqual(vip.sslCertificate, ("mylabfound-wildcard",))
        self.assertEqual(config.interfaces["port3"].role, "wan")
        self.assertEqual(config.interfaces["port2"].role, "dmz")
        server = config.accessProxies["ZTNA-WS1"].apiGateways[1].realServers[1]
        self.assertEqual((server.addrType, server.address, server.port), ("fqdn", "ws1.mylabfound.com", 11443))
        self.assertEqual(config.addresses["ws1.mylabfound.com"].fqdn, "ws1.mylabfound.com")
        policy = config.policies[9]
        self.assertEqual(
            (policy.name, policy.action, policy.dstaddr, policy.schedule, policy.logtraffic, policy.nat),
            ("Access-WS1-ZTNA", "accept", ("ZTNA-WS1",), "always", "all", True),
        )
        ems = config.emsConnectors[1]
        self.assertEqual((ems.status, ems.serialNumber), (True, "FCTEMS8825007278"))
        self.assertTrue(config.localCertificates["mylabfound-wildcard"].autoGenerate)
        self.assertEqual(config.systemGlobal.stateDir, "/var/lib/ztnagw")
        self.assertEqual(config.warnings, ())

    def test_walkthroughBlocksVerbatim(self) -> None:
        """
        The walkthrough's three CLI blocks appear unchanged in
        C{etc/walkthrough.conf}.
        """
        with open(os.path.join(ROOT, "etc", "walkthrough.conf")) as f:
            text = f.read()
        for block in WALKTHROUGH_BLOCKS:
            self.assertIn(block, text)

    def test_loopback(self) -> None:
        """
        C{etc/ztnagw.conf} runs the same deployment on the loopback
        interface, with its state in C{etc/state}, on unprivileged ports.
        """
        config = load(os.path.join(ROOT, "etc", "ztnagw.conf"))
        self.assertEqual(config.systemGlobal.stateDir, os.path.join(ROOT, "etc", "state"))
        (vip,) = config.vips.values()
        self.assertEqual(vip.extip, ipaddress.IPv4Address("127.0.0.1"))
        self.assertGreater(vip.extport, 1023)
        (ems,) = config.emsConnectors.values()
        self.assertEqual(ems.server, "127.0.0.1")
        self.assertGreater(ems.httpsPort, 1023)
        servers = [
            server
            for proxy in config.accessProxies.values()
            for gateway in proxy.apiGateways.values()
            for server in gateway.realServers.values()
        ]
        self.assertEqual([s.ip for s in servers], [ipaddress.IPv4Address("127.0.0.1")])

    def test_noPrivateKeyCommitted(self) -> None:
        """
        No file in C{etc/} holds a private key (C{etc/state}, where a
        gateway started with C{etc/ztnagw.conf} keeps its generated keys, is
        not part of the repository).
        """
        for directory, subdirectories, files in os.walk(os.path.join(ROOT, "etc")):
            if directory == os.path.join(ROOT, "etc"):
                subdirectories[:] = [d for d in subdirectories if d != "state"]
            for name in files:
                with open(os.path.join(directory, name), "rb") as f:
                    self.assertNotIn(b"PRIVATE KEY", f.read(), name)


class ValueTests(SynchronousTestCase):
    """
    Values become Python values, defaults are filled in, explicit options
    are known.
    """

    def test_minimal(self) -> None:
        """
        A minimal configuration gets FortiOS's defaults (and ztnagw's own
        where documented).
        """
        config = loadParts(self, MINIMAL)
        vip = config.vips["vip"]
        self.assertEqual(vip.sslMinVersion, "tls-1.2")
        self.assertEqual(vip.sslMaxVersion, "tls-1.3")
        self.assertIsNone(vip.clientCert)
        self.assertTrue(vip.status)
        gateway = config.accessProxies["proxy"].apiGateways[1]
        self.assertEqual(
            (gateway.urlMap, gateway.urlMapType, gateway.service, gateway.ldbMethod),
            ("/", "sub-string", "https", "static"),
        )
        self.assertEqual(gateway.httpCookieAge, 60)
        server = gateway.realServers[1]
        self.assertEqual(
            (server.addrType, server.port, server.weight, server.status, server.verifyCert),
            ("ip", 443, 1, "active", True),
        )
        self.assertEqual(config.policies[1].logtraffic, "utm")
        self.assertEqual(config.systemGlobal.hostname, "ztnagw")
        self.assertEqual(config.systemGlobal.workers, 1)

    def test_explicit(self) -> None:
        """
        Each object knows which options were set, and where.
        """
        text = joined(MINIMAL)
        config = loads(text, "test.conf", self.mktemp())
        vip = config.vips["vip"]
        self.assertEqual(
            vip.explicit,
            {"type", "server-type", "extip", "extintf", "extport", "ssl-certificate"},
        )
        self.assertEqual(vip.whereSet("extport").line, lineOf(text, "set extport"))
        self.assertEqual(vip.location.line, lineOf(text, 'edit "vip"'))
        self.assertEqual(vip.location.path, "test.conf")

    def test_unsetRestoresDefault(self) -> None:
        """
        C{unset} returns an option to its default; it is no longer
        explicit.
        """
        config = loadParts(
            self,
            MINIMAL,
            """
            config firewall vip
                edit "other"
                    set type access-proxy
                    set server-type https
                    set extip 192.0.2.2
                    set extintf "any"
                    set extport 443
                    set ssl-certificate "cert"
                    set ssl-min-version tls-1.3
                    unset ssl-min-version
                next
            end
            """,
        )
        vip = config.vips["other"]
        self.assertEqual(vip.sslMinVersion, "tls-1.2")
        self.assertNotIn("ssl-min-version", vip.explicit)

    def test_setTwiceLastWins(self) -> None:
        """
        An option set twice in one entry takes the last value, as in
        FortiOS, with a warning naming both lines.
        """
        text = joined(
            MINIMAL,
            """
            config firewall address
                edit "net"
                    set subnet 10.0.0.0/8
                    set subnet 10.1.0.0/16
                next
            end
            """,
        )
        config = loads(text, "test.conf", self.mktemp())
        self.assertEqual(config.addresses["net"].subnet, ipaddress.IPv4Network("10.1.0.0/16"))
        first = lineOf(text, "set subnet 10.0")
        self.assertEqual(
            [str(w) for w in config.warnings],
            [
                f"test.conf:{first + 1}: firewall address \"net\": subnet is set "
                f"again (first at line {first}); the last statement wins"
            ],
        )

    def test_addressForms(self) -> None:
        """
        Subnets are written C{a.b.c.d m.m.m.m} (as FortiOS prints them) or
        C{a.b.c.d/n}; ranges and names have their own options.
        """
        config = loadParts(
            self,
            """
            config firewall address
                edit "a"
                    set subnet 10.0.0.0 255.255.0.0
                next
                edit "b"
                    set subnet 10.0.0.0/16
                next
                edit "c"
                    set type iprange
                    set start-ip 10.0.0.5
                    set end-ip 10.0.0.9
                next
                edit "d"
                    set type fqdn
                    set fqdn "ws1.example.com"
                next
            end
            """,
        )
        addresses = config.addresses
        self.assertEqual(addresses["a"].subnet, ipaddress.IPv4Network("10.0.0.0/16"))
        self.assertEqual(addresses["b"].subnet, addresses["a"].subnet)
        self.assertEqual(
            (addresses["c"].startIp, addresses["c"].endIp),
            (ipaddress.IPv4Address("10.0.0.5"), ipaddress.IPv4Address("10.0.0.9")),
        )
        self.assertEqual(addresses["d"].fqdn, "ws1.example.com")

    def test_builtins(self) -> None:
        """
        The addresses C{all} and C{none} and the schedule C{always} exist
        without definition; C{all} can be redefined.
        """
        config = loadParts(self, MINIMAL)
        self.assertEqual(config.addresses["all"].subnet, ipaddress.IPv4Network("0.0.0.0/0"))
        self.assertEqual(config.addresses["none"].subnet, ipaddress.IPv4Network("0.0.0.0/32"))
        self.assertEqual(len(config.recurringSchedules["always"].day), 7)
        redefined = loadParts(
            self,
            """
            config firewall address
                edit "all"
                    set subnet 10.0.0.0/8
                next
            end
            """,
        )
        self.assertEqual(redefined.addresses["all"].subnet, ipaddress.IPv4Network("10.0.0.0/8"))
        self.assertFalse(redefined.addresses["all"].builtin)

    def test_policyOrder(self) -> None:
        """
        Policies are kept in configuration order (evaluation order), not
        in id order.
        """
        config = loadParts(
            self,
            MINIMAL,
            """
            config firewall policy
                edit 7
                    set srcintf "any"
                    set dstintf "any"
                    set srcaddr "all"
                    set dstaddr "vip"
                    set schedule "always"
                next
                edit 3
                    set srcintf "any"
                    set dstintf "any"
                    set srcaddr "all"
                    set dstaddr "vip"
                    set schedule "always"
                next
            end
            """,
        )
        self.assertEqual(list(config.policies), [1, 7, 3])

    def test_statePaths(self) -> None:
        """
        A relative C{state-dir} is relative to the configuration file's
        directory; relative certificate files are relative to the state
        directory; absolute paths stay as given.
        """
        base = self.mktemp()
        config = loads(
            joined(
                """
                config system global
                    set state-dir "state"
                end
                config vpn certificate local
                    edit "a"
                        set certificate-file "a.crt"
                        set private-key-file "/elsewhere/a.key"
                        set auto-generate enable
                    next
                end
                """
            ),
            "x.conf",
            base,
        )
        stateDir = os.path.join(os.path.abspath(base), "state")
        self.assertEqual(config.systemGlobal.stateDir, stateDir)
        certificate = config.localCertificates["a"]
        self.assertEqual(certificate.certificateFile, os.path.join(stateDir, "a.crt"))
        self.assertEqual(certificate.privateKeyFile, "/elsewhere/a.key")

    def test_loadFileRelative(self) -> None:
        """
        L{load} resolves a relative C{state-dir} against the file's own
        directory, wherever the current directory is.
        """
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        path = os.path.join(directory, "g.conf")
        with open(path, "w") as f:
            f.write('config system global\n    set state-dir "s"\nend\n')
        self.assertEqual(load(path).systemGlobal.stateDir, os.path.join(directory, "s"))
        self.assertEqual(load(path).source, path)

    def test_schedulesAndTags(self) -> None:
        """
        Times, dates, days and tag names become Python values.
        """
        config = loadParts(
            self,
            MINIMAL,
            """
            config firewall schedule recurring
                edit "work"
                    set start 08:00
                    set end 17:30
                    set day monday friday
                next
            end
            config firewall schedule onetime
                edit "once"
                    set start 08:00 2025/01/31
                    set end "17:00 2025/02/01"
                next
            end
            config endpoint-control fctems
                edit 2
                    set name "ems"
                next
            end
            config firewall proxy-policy
                edit 4
                    set proxy access-proxy
                    set access-proxy "proxy"
                    set srcaddr "all"
                    set dstaddr "all"
                    set schedule "work"
                    set ztna-ems-tag "EMS2_ZTNA_Domain-Users" "EMS2_ZTNA_all_registered_clients"
                    set ztna-tags-match-logic and
                next
            end
            """,
        )
        work = config.recurringSchedules["work"]
        self.assertEqual((work.start, work.end), (datetime.time(8, 0), datetime.time(17, 30)))
        self.assertEqual(work.day, ("monday", "friday"))
        once = config.onetimeSchedules["once"]
        self.assertEqual(once.start, datetime.datetime(2025, 1, 31, 8, 0))
        self.assertEqual(once.end, datetime.datetime(2025, 2, 1, 17, 0))
        policy = config.proxyPolicies[4]
        self.assertEqual(
            policy.ztnaEmsTag,
            (EmsTag(2, "Domain-Users"), EmsTag(2, "all_registered_clients")),
        )
        self.assertEqual(str(policy.ztnaEmsTag[0]), "EMS2_ZTNA_Domain-Users")

    def test_tcpForwarding(self) -> None:
        """
        A tcp-forwarding api-gateway's real servers take mapped ports and
        wildcard domains.
        """
        config = loadParts(
            self,
            MINIMAL,
            """
            config firewall access-proxy
                edit "tunnels"
                    set vip "vip2"
                    config api-gateway
                        edit 1
                            set service tcp-forwarding
                            config realservers
                                edit 1
                                    set ip 10.0.0.7
                                    set port 22
                                    set mappedport 22 8000-8080
                                next
                                edit 2
                                    set addr-type fqdn
                                    set domain "*.corp.example"
                                next
                            end
                        next
                    end
                next
            end
            config firewall vip
                edit "vip2"
                    set type access-proxy
                    set server-type https
                    set extip 192.0.2.1
                    set extintf "any"
                    set extport 8443
                    set ssl-certificate "cert"
                next
            end
            """,
        )
        servers = config.accessProxies["tunnels"].apiGateways[1].realServers
        self.assertEqual(servers[1].mappedport, (PortRange(22, 22), PortRange(8000, 8080)))
        self.assertIn(8080, servers[1].mappedport[1])
        self.assertEqual(servers[2].domain, "*.corp.example")


class ErrorTests(SynchronousTestCase):
    """
    Every problem is reported as C{file:line: object: what is wrong; what is
    allowed}, and all problems are reported at once.
    """

    def assertError(self, parts: tuple[str, ...], fragment: str, message: str, occurrence: int = 1) -> None:
        """
        The configuration made of C{parts} is rejected with exactly
        C{message} on the line holding C{fragment}, among its errors.
        """
        text = joined(*parts)
        found = errors(self, *parts)
        expected = f"test.conf:{lineOf(text, fragment, occurrence)}: {message}"
        self.assertIn(expected, found)

    def test_unknownOption(self) -> None:
        """
        A misspelt option is an error that suggests the right one and lists
        the supported options.
        """
        parts = (MINIMAL.replace("set ssl-certificate", "set ssl-certficate"),)
        found = errors(self, *parts)
        line = lineOf(joined(*parts), "ssl-certficate")
        unknown = [e for e in found if "unknown option" in e]
        self.assertEqual(len(unknown), 1, found)
        self.assertTrue(
            unknown[0].startswith(
                f'test.conf:{line}: firewall vip "vip": unknown option '
                '"ssl-certficate" (did you mean ssl-certificate?); supported: '
                "uuid, comment, type, server-type, extip"
            ),
            found,
        )

    def test_unknownBlock(self) -> None:
        """
        A configuration block ztnagw does not implement is an error listing
        those it does.
        """
        self.assertError(
            ("config firewall ssl-ssh-profile\nend",),
            "ssl-ssh-profile",
            "config firewall ssl-ssh-profile is not supported by ztnagw; "
            "supported: config system global, config system interface, "
            "config vpn certificate ca, config vpn certificate local, config "
            "endpoint-control fctems, config user local, config user group, "
            "config firewall address, config firewall addrgrp, config "
            "firewall schedule recurring, config firewall schedule onetime, "
            "config firewall vip, config firewall access-proxy-virtual-host, "
            "config firewall access-proxy, config web-proxy profile, config "
            "firewall policy, config firewall proxy-policy",
        )

    def test_danglingReference(self) -> None:
        """
        A name that nothing defines is an error naming the kind of object
        wanted and the names that exist.
        """
        self.assertError(
            (MINIMAL.replace('set ssl-certificate "cert"', 'set ssl-certificate "crt"'),),
            'ssl-certificate "crt"',
            'firewall vip "vip": ssl-certificate: no local certificate named '
            '"crt" (did you mean "cert"?) in config vpn certificate local; '
            'defined: "cert"',
        )

    def test_wrongKindOfObject(self) -> None:
        """
        A name defined in another table says what it is.
        """
        self.assertError(
            (MINIMAL.replace('set srcaddr "all"', 'set srcaddr "always"'),),
            'srcaddr "always"',
            'firewall policy 1: srcaddr: "always" is a config firewall '
            "schedule recurring entry, not an address or address group",
        )

    def test_port(self) -> None:
        """
        Ports are 1 to 65535.
        """
        for port in ("0", "65536", "-1", "443x", "0x1bb"):
            self.assertError(
                (MINIMAL.replace("set extport 443", f"set extport {port}"),),
                "set extport",
                f'firewall vip "vip": extport: {port} '
                + (
                    "is out of range; use an integer from 1 to 65535"
                    if port in ("0", "65536", "-1")
                    else "is not an integer; use an integer from 1 to 65535"
                ),
            )

    def test_enum(self) -> None:
        """
        A value outside an option's list is an error listing the allowed
        values; a FortiOS value ztnagw does not implement says so.
        """
        self.assertError(
            (MINIMAL.replace("set action accept", "set action allow"),),
            "set action",
            "firewall policy 1: action: allow is not allowed; use accept or deny",
        )
        self.assertError(
            (
                MINIMAL.replace(
                    "edit 1\n                config realservers",
                    "edit 1\n                set service samlsp\n                config realservers",
                ),
            ),
            "samlsp",
            'firewall access-proxy "proxy" api-gateway 1: service: samlsp is not '
            "supported by ztnagw (SAML authentication is not implemented); use "
            "https, http or tcp-forwarding",
        )

    def test_ipForms(self) -> None:
        """
        Addresses must be dotted quads; subnets need a contiguous mask and
        no host bits.
        """
        cases = {
            "set extip 10.0.0.256": 'firewall vip "vip": extip: 10.0.0.256 is not an IPv4 address (a.b.c.d)',
            "set extip 10.0.0.1/24": 'firewall vip "vip": extip: 10.0.0.1/24 is not an IPv4 address (a.b.c.d)',
            "set extip 010.0.0.1": 'firewall vip "vip": extip: 010.0.0.1 is not an IPv4 address (a.b.c.d)',
        }
        for statement, message in cases.items():
            self.assertError(
                (MINIMAL.replace("set extip 192.0.2.1", statement),), "set extip", message
            )
        address = """
            config firewall address
                edit "net"
                    set subnet {}
                next
            end
            """
        for subnet, message in {
            "10.0.0.1 255.255.255.0": "10.0.0.1/24 has host bits set (FortiOS: "
            "invalid subnet); the network is 10.0.0.0 255.255.255.0",
            "10.0.0.0 255.0.255.0": "255.0.255.0 is not a netmask (ones followed "
            "by zeros, such as 255.255.255.0)",
            "10.0.0.0/33": "/33 is not a prefix length (0-32) or netmask",
            "10.0.0.0": "10.0.0.0 has no mask; write a.b.c.d m.m.m.m or a.b.c.d/n",
        }.items():
            self.assertError(
                (address.format(subnet),),
                "set subnet",
                f'firewall address "net": subnet: {message}',
            )

    def test_allAtOnce(self) -> None:
        """
        Every problem is reported, in line order, not only the first.
        """
        text = MINIMAL.replace("set extport 443", "set extport 0").replace(
            "set action accept", "set action allow"
        ).replace('set vip "vip"', 'set vip "vip9"')
        found = errors(self, text)
        lines = [int(e.split(":")[1]) for e in found]
        self.assertEqual(len(found), 3, found)
        self.assertEqual(lines, sorted(lines))

    def test_editTwice(self) -> None:
        """
        An entry defined twice is an error (merging silently could hide a
        copy-and-paste mistake).
        """
        part = """
            config firewall address
                edit "net"
                    set subnet 10.0.0.0/8
                next
                edit "net"
                    set subnet 10.0.0.0/16
                next
            end
            """
        self.assertError(
            (part,),
            'edit "net"',
            'firewall address "net" is defined twice (first at line 2); merge '
            "the two entries",
            occurrence=2,
        )

    def test_editKeys(self) -> None:
        """
        Numeric tables want numbers in range; FortiOS's interactive C{edit
        0} is explained.
        """
        self.assertError(
            ("config firewall policy\n    edit 0\n    next\nend",),
            "edit 0",
            "firewall policy: edit \"0\": 0 is out of range; use an integer "
            "from 1 to 4294967294 (FortiOS's 'edit 0' picks a free number "
            "interactively; a file names it)",
        )
        self.assertError(
            ("config endpoint-control fctems\n    edit 8\n    next\nend",),
            "edit 8",
            'endpoint-control fctems: edit "8": 8 is out of range; use an '
            "integer from 1 to 7",
        )
        self.assertError(
            ('config firewall policy\n    edit "web"\n    next\nend',),
            "edit",
            'firewall policy: edit "web": "web" is not an entry number; use an '
            "integer from 1 to 4294967294",
        )

    def test_structure(self) -> None:
        """
        Options directly in a table, entries in a singleton and tables
        where none belongs are errors.
        """
        self.assertError(
            ("config firewall address\n    set subnet 10.0.0.0/8\nend",),
            "set subnet",
            "firewall address: 'set subnet' outside an entry; config firewall "
            "address is a table: write its entries as edit <key> ... next",
        )
        self.assertError(
            ('config system global\n    edit "x"\n    next\nend',),
            "edit",
            "config system global holds options directly, not entries; remove "
            "the edit/next lines",
        )
        self.assertError(
            ('config firewall access-proxy\n    edit "p"\n        set vip "v"\n'
             "        config realservers\n        end\n    next\nend",),
            "config realservers",
            'firewall access-proxy "p": config realservers is not supported '
            "here; supported: config api-gateway",
        )

    def test_builtinInterface(self) -> None:
        """
        C{any} is built in and cannot be defined.
        """
        self.assertError(
            ('config system interface\n    edit "any"\n    next\nend',),
            'edit "any"',
            'system interface "any": "any" is a built-in name and cannot be '
            "defined; choose another name",
        )

    def test_vipType(self) -> None:
        """
        A VIP must say it is an access-proxy VIP: FortiOS's default type is
        not implemented.
        """
        self.assertError(
            (MINIMAL.replace("        set type access-proxy\n", ""),),
            'edit "vip"',
            'firewall vip "vip": type is required; FortiOS\'s default type, '
            "static-nat, is not implemented (ztnagw only implements "
            "access-proxy VIPs): set type access-proxy",
        )
        self.assertError(
            (MINIMAL.replace("set type access-proxy", "set type static-nat"),),
            "set type",
            'firewall vip "vip": type: static-nat is not supported by ztnagw '
            "(ztnagw only implements access-proxy VIPs); use access-proxy",
        )

    def test_required(self) -> None:
        """
        A required option that is missing is named, with what to give.
        """
        self.assertError(
            (MINIMAL.replace('        set schedule "always"\n', ""),),
            "edit 1",
            "firewall policy 1: schedule is required; set schedule to the name "
            "of a schedule",
            occurrence=3,
        )

    def test_optionForAnotherType(self) -> None:
        """
        Options that do not apply to an object's type are errors, not
        silently ignored.
        """
        self.assertError(
            (
                """
                config firewall address
                    edit "name"
                        set type fqdn
                        set fqdn "a.example"
                        set subnet 10.0.0.0/8
                    next
                end
                """,
            ),
            "set subnet",
            'firewall address "name": subnet applies only when type is ipmask, '
            "but type is fqdn; remove it",
        )

    def test_groupLoop(self) -> None:
        """
        An address group that contains itself, directly or not, is an
        error showing the loop.
        """
        self.assertError(
            (
                """
                config firewall addrgrp
                    edit "a"
                        set member "b"
                    next
                    edit "b"
                        set member "all" "a"
                    next
                end
                """,
            ),
            'set member "b"',
            'firewall addrgrp "a": contains itself: "a" -> "b" -> "a"',
        )

    def test_sameListener(self) -> None:
        """
        Two enabled VIPs cannot listen on the same address and port
        (0.0.0.0 overlaps every address); a disabled one may.
        """
        second = """
            config firewall vip
                edit "vip2"
                    set type access-proxy
                    set server-type https
                    set extip {}
                    set extintf "any"
                    set extport 443
                    set ssl-certificate "cert"
                    {}
                next
            end
            """
        for extip in ("192.0.2.1", "0.0.0.0"):
            self.assertError(
                (MINIMAL, second.format(extip, "")),
                "set extport 443",
                f'firewall vip "vip2": {extip}:443 overlaps firewall vip "vip" '
                "(192.0.2.1:443); two enabled VIPs cannot listen on the same "
                "address and port",
                occurrence=2,
            )
        loadParts(self, MINIMAL, second.format("192.0.2.1", "set status disable"))

    def test_oneAccessProxyPerVip(self) -> None:
        """
        Two access proxies cannot share a VIP.
        """
        self.assertError(
            (MINIMAL, 'config firewall access-proxy\n    edit "p2"\n        set vip "vip"\n    next\nend'),
            'set vip "vip"',
            'firewall access-proxy "p2": VIP "vip" is already used by firewall '
            'access-proxy "proxy"; one access proxy per VIP',
            occurrence=2,
        )

    def test_regex(self) -> None:
        """
        A regex url-map is compiled at load; a bad one is an error.
        """
        self.assertError(
            (
                MINIMAL.replace(
                    "edit 1\n                config realservers",
                    'edit 1\n                set url-map-type regex\n                set url-map "/a(b"\n                config realservers',
                ),
            ),
            "set url-map ",
            'firewall access-proxy "proxy" api-gateway 1: url-map "/a(b" is not '
            "a valid regular expression (missing ), unterminated subpattern at "
            "position 2)",
        )

    def test_realServerAddress(self) -> None:
        """
        A real server needs an address that fits its addr-type.
        """
        base = MINIMAL.replace("set ip 10.0.0.1", "{}")
        prefix = 'firewall access-proxy "proxy" api-gateway 1 realservers 1: '
        addresses = """
            config firewall address
                edit "host"
                    set subnet 10.0.0.9/32
                next
                edit "name"
                    set type fqdn
                    set fqdn "ws.example"
                next
            end
            config firewall addrgrp
                edit "group"
                    set member "host" "name"
                next
            end
            """
        for statements, fragment, message in [
            ("set port 80", "edit 1\n", "addr-type ip needs ip (a real address, not 0.0.0.0) or address"),
            ('set address "host"\n                        set ip 10.0.0.1', "set ip", "set ip or address, not both"),
            ('set address "group"', "set address", 'address "group" contains the fqdn address "name"; use addr-type fqdn for a DNS name'),
            ("set addr-type fqdn", "edit 1\n", "addr-type fqdn needs address naming an fqdn address"),
            ('set addr-type fqdn\n                        set address "host"', "set address", 'addr-type fqdn needs an fqdn address, but "host" has type ipmask'),
            ('set addr-type fqdn\n                        set address "group"', "set address", 'addr-type fqdn needs an fqdn address, not the address group "group"'),
            ("set addr-type fqdn\n                        set ip 10.0.0.1", "set ip", "ip applies only when addr-type is ip, but addr-type is fqdn; remove it"),
        ]:
            parts = (base.format(statements), addresses)
            text = joined(*parts)
            found = errors(self, *parts)
            if fragment == "edit 1\n":
                line = lineOf(text, "config realservers") + 1
            else:
                line = lineOf(text, fragment.strip(), 1)
            self.assertIn(f"test.conf:{line}: {prefix}{message}", found)
        loadParts(self, base.format('set addr-type fqdn\n                        set address "name"'), addresses)

    def test_serviceOptions(self) -> None:
        """
        TCP-forwarding options on an HTTP(S) api-gateway, and HTTP options
        on a TCP-forwarding one, are errors.
        """
        prefix = 'firewall access-proxy "proxy" api-gateway 1 realservers 1: '
        for option in ("set mappedport 22", 'set domain "a.example"', "set tunnel-encryption enable", "set type tcp-forwarding"):
            name = option.split()[1]
            self.assertError(
                (MINIMAL.replace("set ip 10.0.0.1", f"set ip 10.0.0.1\n                        {option}"),),
                option,
                f"{prefix}{name} applies only when the api-gateway's service is "
                f"tcp-forwarding, but the api-gateway's service is https; remove it",
            )
        tcp = MINIMAL.replace(
            "edit 1\n                config realservers",
            "edit 1\n                set service tcp-forwarding\n                config realservers",
        )
        self.assertError(
            (tcp.replace("set ip 10.0.0.1", 'set ip 10.0.0.1\n                        set http-host "x"'),),
            "http-host",
            f"{prefix}http-host applies only when the api-gateway's service is "
            "http or https, but the api-gateway's service is tcp-forwarding; remove it",
        )
        self.assertError(
            (tcp.replace("set service tcp-forwarding", "set service tcp-forwarding\n                set persistence http-cookie"),),
            "persistence",
            'firewall access-proxy "proxy" api-gateway 1: persistence applies '
            "only when service is http or https, but service is tcp-forwarding; "
            "remove it",
        )

    def test_tunnelPools(self) -> None:
        """
        On a tcp-forwarding api-gateway, C{domain} with C{ip} or an address
        of one host loads (a pool member for the names under the domain);
        with an address of several hosts it is refused, since the pool
        needs one address to connect to.
        """
        tcp = MINIMAL.replace(
            "edit 1\n                config realservers",
            "edit 1\n                set service tcp-forwarding\n                config realservers",
        )
        addresses = """
            config firewall address
                edit "one"
                    set subnet 10.0.0.9/32
                next
                edit "lab"
                    set subnet 10.0.0.0/24
                next
            end
            """
        domain = '\n                        set domain "*.corp.example"'
        config = loadParts(self, tcp.replace("set ip 10.0.0.1", "set ip 10.0.0.1" + domain))
        server = config.accessProxies["proxy"].apiGateways[1].realServers[1]
        self.assertEqual((server.addrType, server.ip, server.domain), ("ip", ipaddress.IPv4Address("10.0.0.1"), "*.corp.example"))
        loadParts(self, tcp.replace("set ip 10.0.0.1", 'set address "one"' + domain), addresses)
        self.assertError(
            (tcp.replace("set ip 10.0.0.1", 'set address "lab"' + domain), addresses),
            "set domain",
            'firewall access-proxy "proxy" api-gateway 1 realservers 1: with '
            "domain, address must name one host (a /32 subnet or a one-address "
            "range): this real server is a member of the pool for the names "
            'under "*.corp.example" and needs one address to connect to; use ip, '
            "or give the subnet a real server of its own",
        )

    def test_tunnelHealthCheck(self) -> None:
        """
        A health check needs one host to check: on a tcp-forwarding real
        server given by a subnet or by a domain alone it is refused; one
        that would probe a port outside the server's C{mappedport} is
        warned about.
        """
        tcp = MINIMAL.replace(
            "edit 1\n                config realservers",
            "edit 1\n                set service tcp-forwarding\n                config realservers",
        )
        addresses = """
            config firewall address
                edit "lab"
                    set subnet 10.0.0.0/24
                next
            end
            """
        check = "\n                        set health-check enable\n                        set health-check-proto tcp-connect"
        message = (
            'firewall access-proxy "proxy" api-gateway 1 realservers 1: '
            "health-check needs a real server naming one host (ip, an address of "
            "one host, or an fqdn address): a subnet, a group or a domain alone "
            "has no one host to check"
        )
        for statements, extra in [
            ('set address "lab"', addresses),
            ('set addr-type fqdn\n                        set domain "*.corp.example"', ""),
        ]:
            self.assertError(
                (tcp.replace("set ip 10.0.0.1", statements + check), extra),
                "set health-check enable",
                message,
            )
        config = loadParts(self, tcp.replace("set ip 10.0.0.1", "set ip 10.0.0.1" + check))
        self.assertEqual(config.warnings, ())
        mapped = "set ip 10.0.0.1\n                        set mappedport 5432 6379" + check
        config = loadParts(self, tcp.replace("set ip 10.0.0.1", mapped))
        self.assertEqual(
            [w.message for w in config.warnings],
            [
                'firewall access-proxy "proxy" api-gateway 1 realservers 1: its '
                "health checks probe port 443, which is not one of its mappedport "
                "(set port to one the server listens on)"
            ],
        )
        config = loadParts(self, tcp.replace("set ip 10.0.0.1", mapped + "\n                        set port 6379"))
        self.assertEqual(config.warnings, ())

    def test_pingRefusedWhereImpossible(self) -> None:
        """
        On a machine where the gateway cannot send ICMP echo requests, a
        health check with C{health-check-proto ping}, given or by default,
        is refused at the line that asks for it: it could only mark every
        server down.
        """
        from ztnagw.gateway import health

        self.patch(health, "_icmpProblem", ["[Errno 1] Operation not permitted"])
        byDefault = MINIMAL.replace(
            "set ip 10.0.0.1", "set ip 10.0.0.1\n                        set health-check enable"
        )
        self.assertError(
            (byDefault, ""),
            "set health-check enable",
            'firewall access-proxy "proxy" api-gateway 1 realservers 1: '
            "health-check-proto is ping by default, and ping cannot be used on "
            "this machine: [Errno 1] Operation not permitted; set "
            "health-check-proto tcp-connect or http",
        )
        explicit = byDefault.replace(
            "set health-check enable", "set health-check enable\n                        set health-check-proto ping"
        )
        self.assertError(
            (explicit, ""),
            "set health-check-proto ping",
            'firewall access-proxy "proxy" api-gateway 1 realservers 1: '
            "health-check-proto: ping cannot be used on this machine: [Errno 1] "
            "Operation not permitted; use tcp-connect or http",
        )
        loadParts(self, byDefault.replace("set health-check enable", "set health-check enable\n                        set health-check-proto tcp-connect"))

    def test_tunnelHttpHost(self) -> None:
        """
        C{ldb-method http-host} on a tcp-forwarding api-gateway is refused:
        a tunnel has no Host.
        """
        tcp = MINIMAL.replace(
            "edit 1\n                config realservers",
            "edit 1\n                set service tcp-forwarding\n                set ldb-method http-host\n                config realservers",
        )
        self.assertError(
            (tcp,),
            "set ldb-method",
            'firewall access-proxy "proxy" api-gateway 1: ldb-method http-host '
            "needs service http or https: a tunnel has no Host to choose by; use "
            "static, round-robin, weighted or first-alive",
        )

    def test_notPacketFirewall(self) -> None:
        """
        A firewall policy that is not a ZTNA policy is refused; naming a VIP
        or ztna-status enable makes it one.
        """
        text = MINIMAL.replace('set dstaddr "vip"', 'set dstaddr "all"')
        self.assertError(
            (text,),
            "set dstaddr",
            "firewall policy 1: ztnagw is not a packet firewall: a firewall "
            "policy must name an access-proxy VIP in dstaddr (a ZTNA policy) or "
            "have ztna-status enable",
        )
        loadParts(self, text.replace('set dstaddr "all"', 'set dstaddr "all"\n        set ztna-status enable'))

    def test_usersRefused(self) -> None:
        """
        Policies naming users or groups are refused until user
        authentication exists.
        """
        users = """
            config user local
                edit "bob"
                    set passwd "secret"
                next
            end
            config user group
                edit "staff"
                    set member "bob"
                next
            end
            """
        for option in ('set users "bob"', 'set groups "staff"'):
            name = option.split()[1]
            self.assertError(
                (MINIMAL.replace("set action accept", f"set action accept\n        {option}"), users),
                option,
                f"firewall policy 1: {name}: user authentication is not "
                "implemented yet; remove users/groups",
            )

    def test_tags(self) -> None:
        """
        Tag names must be C{EMS<id>_ZTNA_<tag>} with a configured EMS id.
        """
        ems = "config endpoint-control fctems\n    edit 1\n    next\nend"
        self.assertError(
            (MINIMAL.replace("set action accept", 'set action accept\n        set ztna-ems-tag "EMS2_ZTNA_x"'), ems),
            "ztna-ems-tag",
            "firewall policy 1: ztna-ems-tag: EMS2_ZTNA_x names EMS 2, but there "
            "is no config endpoint-control fctems entry 2 (configured: 1)",
        )
        self.assertError(
            (MINIMAL.replace("set action accept", 'set action accept\n        set ztna-ems-tag "FCTEMS8825007278_x"'), ems),
            "ztna-ems-tag",
            'firewall policy 1: ztna-ems-tag: "FCTEMS8825007278_x" is not a ZTNA '
            "tag name; write EMS<id>_ZTNA_<tag>, <id> being a fctems id (1-7)",
        )

    def test_clientCertificateConflict(self) -> None:
        """
        A VIP and its access proxy setting one client-certificate option
        differently is an error naming both lines.
        """
        text = MINIMAL.replace(
            'set ssl-certificate "cert"', 'set ssl-certificate "cert"\n        set client-cert enable'
        ).replace('set vip "vip"', 'set vip "vip"\n        set client-cert disable')
        vipLine = lineOf(joined(text), "set client-cert enable")
        self.assertError(
            (text,),
            "set client-cert disable",
            'firewall access-proxy "proxy": client-cert differs from the one of '
            f'its firewall vip "vip" (line {vipLine}); set it in one place '
            "(FortiOS 7.6: the VIP)",
        )

    def test_emptyCertActionWithoutCertificates(self) -> None:
        """
        C{empty-cert-action} is not configurable with C{client-cert
        disable} (FortiOS), nor where it could never take effect.
        """
        self.assertError(
            (MINIMAL.replace('set ssl-certificate "cert"', 'set ssl-certificate "cert"\n        set client-cert disable\n        set empty-cert-action accept'),),
            "empty-cert-action",
            'firewall vip "vip": empty-cert-action is not configurable with '
            "client-cert disable (FortiOS); remove it",
        )
        self.assertError(
            (
                MINIMAL.replace('set ssl-certificate "cert"', 'set ssl-certificate "cert"\n        set client-cert disable').replace(
                    'set vip "vip"', 'set vip "vip"\n        set empty-cert-action accept'
                ),
            ),
            "empty-cert-action",
            'firewall access-proxy "proxy": empty-cert-action never takes effect, '
            "because client certificates are disabled (client-cert disable) "
            "wherever it applies; remove it",
        )

    def test_ems(self) -> None:
        """
        An enabled EMS needs its serial number and server; ranges and forms
        are checked; options of a FortiGate's EMS connector are explained.
        """
        self.assertError(
            ("config endpoint-control fctems\n    edit 1\n        set status enable\n    next\nend",),
            "edit 1",
            "endpoint-control fctems 1: server is required when status is "
            "enable; set server to a DNS name or an IPv4 address",
        )
        self.assertError(
            ('config endpoint-control fctems\n    edit 1\n        set serial-number "FCT123"\n    next\nend',),
            "serial-number",
            'endpoint-control fctems 1: serial-number: "FCT123" is not an EMS '
            "serial number, FCTEMS followed by 10 digits",
        )
        self.assertError(
            ("config endpoint-control fctems\n    edit 1\n        set out-of-sync-threshold 5\n    next\nend",),
            "out-of-sync",
            "endpoint-control fctems 1: out-of-sync-threshold: 5 is out of "
            "range; use an integer from 10 to 3600",
        )
        found = errors(self, "config endpoint-control fctems\n    edit 1\n        set pull-tags enable\n    next\nend")
        self.assertTrue(
            found[0].startswith(
                'test.conf:3: endpoint-control fctems 1: unknown option '
                '"pull-tags"; ztnagw is its own EMS, so the options for '
                "connecting to a FortiClient EMS do not apply; supported: name, "
            ),
            found,
        )

    def test_emsListener(self) -> None:
        """
        The EMS listener cannot take a VIP's address and port.
        """
        self.assertError(
            (
                MINIMAL,
                "config endpoint-control fctems\n    edit 1\n        set status enable\n"
                '        set server "192.0.2.1"\n        set https-port 443\n'
                '        set serial-number "FCTEMS0000000001"\n    next\nend',
            ),
            "https-port",
            'endpoint-control fctems 1: 192.0.2.1:443 is also where firewall vip '
            '"vip" listens; the EMS listener needs its own address and port',
        )

    def test_emsCaCertificate(self) -> None:
        """
        The EMS CA certificate must name a local certificate that can be a
        CA.
        """
        self.assertError(
            (CERTIFICATE, 'config endpoint-control fctems\n    edit 1\n        set ca-certificate "nope"\n    next\nend'),
            "ca-certificate",
            'endpoint-control fctems 1: ca-certificate: no local certificate '
            'named "nope" in config vpn certificate local; defined: "cert"',
        )
        self.assertError(
            (CERTIFICATE, 'config endpoint-control fctems\n    edit 1\n        set ca-certificate "cert"\n    next\nend'),
            "ca-certificate",
            'endpoint-control fctems 1: ca-certificate "cert" has auto-generate '
            "enable, but the EMS CA cannot be issued by itself; give its files, "
            "or unset ca-certificate to use the CA of 'ztnagw ems init'",
        )

    def test_schedules(self) -> None:
        """
        A one-time schedule must end after it starts; times and dates are
        checked; a recurring schedule without days is accepted with a
        warning (it is never active).
        """
        self.assertError(
            ('config firewall schedule onetime\n    edit "o"\n        set start 10:00 2025/01/02\n'
             "        set end 10:00 2025/01/01\n    next\nend",),
            "set end",
            'firewall schedule onetime "o": end is not after start',
        )
        self.assertError(
            ('config firewall schedule onetime\n    edit "o"\n        set start 10:00 2025/02/30\n'
             "        set end 10:00 2025/03/01\n    next\nend",),
            "set start",
            'firewall schedule onetime "o": start: 2025/02/30 is not a date of the calendar',
        )
        self.assertError(
            ('config firewall schedule recurring\n    edit "r"\n        set start 24:00\n    next\nend',),
            "set start",
            'firewall schedule recurring "r": start: 24:00 is not a time of day (hh:mm, 00:00-23:59)',
        )
        self.assertError(
            ('config firewall schedule recurring\n    edit "r"\n        set day monday none\n    next\nend',),
            "set day",
            'firewall schedule recurring "r": day: none is not a day (none stands '
            "alone); use days among sunday monday tuesday wednesday thursday "
            "friday saturday, or none",
        )
        config = loadParts(self, 'config firewall schedule recurring\n    edit "r"\n    next\nend')
        self.assertEqual(
            [w.message for w in config.warnings],
            ['firewall schedule recurring "r": day is none, so the schedule is never active'],
        )

    def test_tlsVersions(self) -> None:
        """
        ssl-max-version cannot be below ssl-min-version; SSL 3.0 is
        refused.
        """
        self.assertError(
            (MINIMAL.replace('set ssl-certificate "cert"', 'set ssl-certificate "cert"\n        set ssl-min-version tls-1.3\n        set ssl-max-version tls-1.2'),),
            "ssl-max-version",
            'firewall vip "vip": ssl-max-version tls-1.2 is below ssl-min-version tls-1.3',
        )
        self.assertError(
            (MINIMAL.replace('set ssl-certificate "cert"', 'set ssl-certificate "cert"\n        set ssl-min-version ssl-3.0'),),
            "ssl-min-version",
            'firewall vip "vip": ssl-min-version: ssl-3.0 is not supported by '
            "ztnagw (SSL 3.0 is broken); use tls-1.0, tls-1.1, tls-1.2 or tls-1.3",
        )

    def test_iprange(self) -> None:
        """
        A range must not end before it starts.
        """
        self.assertError(
            ('config firewall address\n    edit "r"\n        set type iprange\n'
             "        set start-ip 10.0.0.9\n        set end-ip 10.0.0.1\n    next\nend",),
            "end-ip",
            'firewall address "r": end-ip 10.0.0.1 is before start-ip 10.0.0.9',
        )

    def test_valueCount(self) -> None:
        """
        A single-valued option given several values says to quote.
        """
        self.assertError(
            ('config firewall vip\n    edit "v"\n        set comment two words\n    next\nend',),
            "comment",
            'firewall vip "v": comment: takes one value, not 2 (quote a value '
            "that contains blanks)",
        )

    def test_hostileValuesShownSafely(self) -> None:
        """
        Values in messages cannot forge lines: control characters are
        escaped and long values cut.
        """
        found = errors(self, 'config firewall vip\n    edit "v"\n        set extport "1\n2\x1b"\n    next\nend')
        message = [e for e in found if "extport" in e][0]
        self.assertNotIn("\n", message)
        self.assertNotIn("\x1b", message)
        self.assertIn('"1\\n2\\x1b" is not an integer', message)
        found = errors(self, 'config firewall vip\n    edit "v"\n        set extintf "' + "x" * 500 + '"\n    next\nend')
        self.assertLess(max(len(e) for e in found), 1000)

    def test_rejectedCarriesAll(self) -> None:
        """
        L{ConfigurationRejected} carries the errors as values, each with
        its location, and its text lists them one per line.
        """
        rejected = self.assertRaises(
            ConfigurationRejected,
            loads,
            "config firewall vip\n    edit \"v\"\n        set extport 0\n    next\nend\n",
            "x.conf",
        )
        # type, server-type, extip, extintf and ssl-certificate are missing;
        # extport is wrong.
        self.assertEqual([e.location.line for e in rejected.errors], [2, 2, 2, 2, 2, 3])
        self.assertEqual(str(rejected).count("\n"), len(rejected.errors) - 1)
