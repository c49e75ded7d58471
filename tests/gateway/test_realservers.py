"""
Tests for L{ztnagw.gateway.realservers}: which real server serves a
request, and how it is reached.
"""

from __future__ import annotations

import ipaddress

from twisted.trial.unittest import SynchronousTestCase

from ztnagw.gateway.realservers import (
    NoUsableRealServer,
    RealServerConfigurationError,
    RealServerRouter,
)
from ztnagw.gateway.resolver import NameNotResolved
from ztnagw.tls.client import ClientCreatorCache
from tests.gateway.fakes import TableResolver, config
from tests.support.pki import makeCA


def _proxy(service: str, servers: str) -> str:
    return f"""
config firewall address
    edit "one"
        set subnet 10.9.9.9 255.255.255.255
    next
    edit "net"
        set subnet 10.9.0.0 255.255.0.0
    next
    edit "name"
        set type fqdn
        set fqdn "Real.Test"
    next
end
config firewall access-proxy
    edit "proxy"
        set vip "vip"
        config api-gateway
            edit 1
                set service {service}
                config realservers
{servers}
                end
            next
        end
    next
end
"""


def _router(service: str, servers: str, resolver: TableResolver | None = None, cas: tuple = ()) -> tuple[RealServerRouter, object]:
    cfg = config(accessProxy=_proxy(service, servers))
    router = RealServerRouter(cfg, resolver or TableResolver(), ClientCreatorCache(), cas)
    return router, cfg.accessProxies["proxy"].apiGateways[1]


class ChooseTests(SynchronousTestCase):
    """
    Tests for L{RealServerRouter.chooseRealServer}.
    """

    def test_firstActive(self) -> None:
        """
        The first active server serves; standby and disabled ones wait.
        """
        router, gateway = _router("http", """
                    edit 1
                        set ip 10.0.0.1
                        set status standby
                    next
                    edit 2
                        set ip 10.0.0.2
                        set status disable
                    next
                    edit 3
                        set ip 10.0.0.3
                        set port 8080
                    next
""")
        route = self.successResultOf(router.chooseRealServer(gateway))
        self.assertEqual((route.realServer.id, str(route.address), route.port), (3, "10.0.0.3", 8080))
        self.assertEqual(route.hostHeader, b"10.0.0.3:8080")
        self.assertIsNone(route.key.tls)

    def test_standby(self) -> None:
        """
        Without an active server, the first standby one serves.
        """
        router, gateway = _router("http", """
                    edit 1
                        set ip 10.0.0.1
                        set status standby
                        set port 80
                    next
""")
        route = self.successResultOf(router.chooseRealServer(gateway))
        self.assertEqual(route.hostHeader, b"10.0.0.1")

    def test_none(self) -> None:
        """
        No usable server: 022's exception.  An address naming a whole
        subnet is not one host.
        """
        router, gateway = _router("http", """
                    edit 1
                        set address "net"
                    next
""")
        self.failureResultOf(router.chooseRealServer(gateway), NoUsableRealServer)
        self.flushLoggedErrors()

    def test_singleAddress(self) -> None:
        """
        An address object of one host is that host.
        """
        router, gateway = _router("http", """
                    edit 1
                        set address "one"
                        set port 80
                    next
""")
        self.assertEqual(str(self.successResultOf(router.chooseRealServer(gateway)).address), "10.9.9.9")

    def test_fqdn(self) -> None:
        """
        An FQDN server is resolved when needed; its name is the Host.
        """
        server = """
                    edit 1
                        set addr-type fqdn
                        set address "name"
                        set port 8443
                        set translate-host disable
                    next
                    edit 2
                        set ip 10.0.0.2
                        set http-host "intranet.test"
                    next
"""
        router, gateway = _router("http", server, TableResolver({"real.test": ["10.7.7.7", "10.7.7.8"]}))
        route = self.successResultOf(router.chooseRealServer(gateway))
        self.assertEqual((str(route.address), route.name), ("10.7.7.7", "real.test"))
        self.assertIsNone(route.hostHeader)
        router, gateway = _router("http", server)
        self.failureResultOf(router.chooseRealServer(gateway), NameNotResolved)

    def test_httpHost(self) -> None:
        """
        C{http-host} is sent as it is.
        """
        router, gateway = _router("http", """
                    edit 1
                        set ip 10.0.0.2
                        set http-host "intranet.test:81"
                    next
""")
        self.assertEqual(self.successResultOf(router.chooseRealServer(gateway)).hostHeader, b"intranet.test:81")


class TLSTests(SynchronousTestCase):
    """
    C{service https} real servers.
    """

    SERVER = """
                    edit 1
                        set ip 10.0.0.1
                    next
"""

    def test_verifyNeedsCA(self) -> None:
        """
        C{verify-cert enable} (the default) without a CA stops the gateway
        with an explanation.
        """
        error = self.assertRaises(RealServerConfigurationError, _router, "https", self.SERVER)
        self.assertIn("config vpn certificate ca", str(error))
        self.assertIn("real server 1", str(error))

    def test_verified(self) -> None:
        """
        With a CA, the route carries a TLS creator for the server's
        address; C{verify-cert disable} needs none.
        """
        router, gateway = _router("https", self.SERVER, cas=(makeCA().certificate,))
        route = self.successResultOf(router.chooseRealServer(gateway))
        self.assertIsNotNone(route.key.tls)
        self.assertEqual(route.hostHeader, b"10.0.0.1")
        router, gateway = _router("https", self.SERVER.replace("set ip 10.0.0.1", "set ip 10.0.0.1\n                        set verify-cert disable"))
        self.assertIsNotNone(self.successResultOf(router.chooseRealServer(gateway)).key.tls)

    def test_oneCreatorPerServer(self) -> None:
        """
        Requests to one server share one creator (the pool keys on it).
        """
        router, gateway = _router("https", self.SERVER, cas=(makeCA().certificate,))
        first = self.successResultOf(router.chooseRealServer(gateway))
        second = self.successResultOf(router.chooseRealServer(gateway))
        self.assertEqual(first.key, second.key)
        self.assertIsInstance(first.address, ipaddress.IPv4Address)
