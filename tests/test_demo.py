"""
Tests for L{ztnagw.demo}: the pieces of C{ztnagw demo} (the whole command
runs in C{tests.integration.test_https_demo}).
"""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from ztnagw.config import loads
from ztnagw.demo import DemoPorts, HeadersPage, choosePorts, demoConfiguration, instructions


class ConfigurationTests(SynchronousTestCase):
    """
    Tests for L{demoConfiguration}.
    """

    def test_valid(self) -> None:
        """
        The demo's configuration loads: two VIPs in front of the web
        server, the second without certificate requests, one logging
        policy for both.
        """
        config = loads(demoConfiguration(DemoPorts(11443, 11444, 18080, 18013)))
        self.assertEqual(sorted(config.vips), ["ZTNA-DEMO", "ZTNA-OPEN"])
        self.assertTrue(config.clientCertificateSettings("ZTNA-DEMO").clientCert)
        self.assertFalse(config.clientCertificateSettings("ZTNA-OPEN").clientCert)
        self.assertEqual(config.policies[1].logtraffic, "all")
        self.assertEqual(config.emsConnectors[1].httpsPort, 18013)
        server = config.accessProxies["ZTNA-OPEN"].apiGateways[1].realServers[1]
        self.assertEqual(server.port, 18080)


class PortsTests(SynchronousTestCase):
    """
    Tests for L{choosePorts}.
    """

    def test_distinct(self) -> None:
        """
        Four different ports.
        """
        ports = choosePorts(0)
        self.assertEqual(len({ports.vip, ports.openVip, ports.web, ports.ems}), 4)


class HeadersPageTests(SynchronousTestCase):
    """
    Tests for L{HeadersPage}.
    """

    def test_plainText(self) -> None:
        """
        curl gets the request it sent, as text.
        """
        request = DummyRequest([b""])
        request.requestHeaders.addRawHeader(b"X-Forwarded-For", b"127.0.0.1")
        body = HeadersPage().render(request).decode()
        self.assertIn("internal web server", body)
        self.assertIn("X-Forwarded-For: 127.0.0.1", body)

    def test_htmlEscaped(self) -> None:
        """
        A browser gets HTML in which the request's text is escaped.
        """
        request = DummyRequest([b""])
        request.requestHeaders.addRawHeader(b"Accept", b"text/html")
        request.requestHeaders.addRawHeader(b"X-Evil", b"<script>")
        body = HeadersPage().render(request).decode()
        self.assertIn("&lt;script&gt;", body)
        self.assertNotIn("<script>", body)


class InstructionsTests(SynchronousTestCase):
    """
    Tests for L{instructions}.
    """

    def test_examples(self) -> None:
        """
        The three examples are there with their ports and files.
        """
        text = instructions("/d", DemoPorts(1, 2, 3, 4), "UID")
        self.assertIn(f"--cert {os.path.join('/d', 'device.crt')}", text)
        self.assertIn("https://127.0.0.1:1/", text)
        self.assertIn("https://127.0.0.1:2/", text)
        self.assertIn("002", text)
        self.assertIn("ztnagw endpoint revoke UID", text)
