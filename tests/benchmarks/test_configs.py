"""
Tests for L{benchmarks.configs}: the settings that make the comparison fair
are in every generated configuration, and ztnagw's configuration loads.
"""

from __future__ import annotations

import os
import re

from twisted.trial.unittest import SynchronousTestCase

from benchmarks import configs
from benchmarks.pki import makeBenchPki

_ADDRESS = re.compile(r"\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b")


class ConfigTests(SynchronousTestCase):
    """
    Tests for the configuration generators.
    """

    def setUp(self) -> None:
        self.directory = os.path.abspath(self.mktemp())
        self.pki = makeBenchPki(os.path.join(self.directory, "pki"))

    def assertLoopbackOnly(self, text: str) -> None:
        """
        Every IPv4 address in C{text} is 127.0.0.1 (or a netmask).
        """
        addresses = set(_ADDRESS.findall(text)) - {"255.0.0.0"}
        self.assertEqual(addresses, {"127.0.0.1"})

    def test_nginxProxy(self) -> None:
        """
        nginx runs one worker, requires and verifies the client certificate
        against the bench CA, keeps upstream connections alive and logs the
        client's subject and whether the session was resumed.
        """
        text = configs.proxyNginx(self.directory, self.pki, 8443, 8080, openFiles=20000)
        self.assertIn("worker_processes 1;", text)
        self.assertIn("ssl_verify_client on;", text)
        self.assertIn(f"ssl_client_certificate {self.pki.ca.certificate};", text)
        self.assertIn("keepalive 64;", text)
        self.assertIn('proxy_set_header Connection "";', text)
        self.assertIn("proxy_http_version 1.1;", text)
        self.assertIn("$ssl_client_s_dn", text)
        self.assertIn("$ssl_session_reused", text)
        self.assertIn("listen 127.0.0.1:8443 ssl", text)
        self.assertIn("worker_rlimit_nofile 20000;", text)
        self.assertLoopbackOnly(text)

    def test_origin(self) -> None:
        """
        The origin serves the document root over plain HTTP on loopback,
        one worker.
        """
        text = configs.originNginx(self.directory, "/srv/www", 8080)
        self.assertIn("root /srv/www;", text)
        self.assertIn("listen 127.0.0.1:8080", text)
        self.assertNotIn("ssl", text)
        self.assertIn("worker_processes 1;", text)
        self.assertLoopbackOnly(text)

    def test_haproxy(self) -> None:
        """
        HAProxy runs one thread, requires the client certificate, reuses
        server connections, logs subject and resumption, and asks for no
        more connections than the descriptor limit allows.
        """
        text = configs.haproxy(self.directory, self.pki, 8443, 8080, openFiles=20000)
        self.assertIn("nbthread 1", text)
        self.assertIn(f"ca-file {self.pki.ca.certificate} verify required", text)
        self.assertIn("http-reuse always", text)
        self.assertIn("ssl_c_s_dn", text)
        self.assertIn("ssl_fc_is_resumed", text)
        maxconns = {int(n) for n in re.findall(r"^\s+maxconn (\d+)$", text, re.M)}
        self.assertTrue(maxconns)
        self.assertLessEqual(2 * max(maxconns), 20000)
        self.assertLoopbackOnly(text)

    def test_stunnel(self) -> None:
        """
        The stunnel server requires and verifies the device certificate;
        the client presents it and checks the server's; each service is
        written.
        """
        server = configs.stunnelServer(self.pki, {"echo": (9001, 7), "iperf": (9002, 5201)})
        self.assertIn("requireCert = yes", server)
        self.assertIn("verifyChain = yes", server)
        self.assertIn("accept = 127.0.0.1:9001\nconnect = 127.0.0.1:7\n", server)
        self.assertIn("accept = 127.0.0.1:9002\nconnect = 127.0.0.1:5201\n", server)
        client = configs.stunnelClient(self.pki, {"echo": (9101, 9001)})
        self.assertIn("client = yes", client)
        self.assertIn(f"cert = {self.pki.devices[0].files.certificate}", client)
        self.assertIn("checkIP = 127.0.0.1", client)
        self.assertLoopbackOnly(server + client)

    def test_ztnagwLoads(self) -> None:
        """
        ztnagw's own loader accepts the generated configuration: one VIP,
        the origin behind an http api-gateway, the tunnel ports behind a
        tcp-forwarding one, the bench CA as EMS CA, the workers asked for.
        """
        from ztnagw.config import load

        state = os.path.join(self.directory, "state")
        os.makedirs(state)
        ports = configs.ZtnagwPorts(vip=8443, ems=8444, origin=8080, tunnelPorts=(7000, 5201))
        text = configs.ztnagwConfig(state, self.pki, ports, workers=2)
        path = os.path.join(self.directory, "ztnagw.conf")
        with open(path, "w") as f:
            f.write(text)
        loaded = load(path)
        accessProxy = loaded.accessProxies["BENCH"]
        # Every load comes from 127.0.0.1 with one device: no connection
        # limit may cap figure 6's 10,000 idle connections.
        self.assertEqual((accessProxy.maxConnectionsPerSource, accessProxy.maxConnectionsPerDevice), (0, 0))
        self.assertIn("set workers 2", text)
        self.assertIn("set mappedport 7000 5201", text)
        self.assertIn('set ca-certificate "bench-ca"', text)
        self.assertLoopbackOnly(text)

    def test_ztnagwNeedsTunnelPort(self) -> None:
        """
        A configuration without a tunnel port is refused.
        """
        ports = configs.ZtnagwPorts(vip=8443, ems=8444, origin=8080, tunnelPorts=())
        self.assertRaises(ValueError, configs.ztnagwConfig, "/tmp/x", self.pki, ports)
