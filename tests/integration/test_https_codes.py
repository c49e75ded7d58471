"""
Every ZTNA error code the HTTPS access proxy gives, with the real daemon,
the real admin command and curl.
"""

from __future__ import annotations

import json
import os

from twisted.trial.unittest import TestCase

from tests.integration.httpsfixture import Device, Gateway
from tests.support.pki import makeCA, makeDevice


class CodeTests(TestCase):
    """
    Each denial carries its code in the status, the C{X-ZTNA-Error} field,
    the page and the traffic log.
    """

    def setUp(self) -> None:
        self.gateway = Gateway(self.mktemp())
        self.gateway.start()
        self.addCleanup(self.gateway.stop)

    def assertCode(self, code: str, status: int, vip: str, path: str = "/headers",
                   device: Device | None = None, host: str | None = None) -> dict:
        """
        A request gets the block page of C{code} with C{status}; return its
        JSON form.
        """
        got, fields, body, _ = self.gateway.curl(
            vip, path, device, host, ["-H", "Accept: application/json"]
        )
        self.assertEqual((got, fields.get("x-ztna-error")), (status, [code]), body)
        page = json.loads(body)["error"]
        self.assertEqual(page["code"], code)
        return page

    def test_certificates(self) -> None:
        """
        001 for a certificate from another CA and for the old certificate
        of a device enrolled again (same UID, new serial); 066 for a valid
        certificate of an unregistered device; 063 once the device is
        revoked with C{ztnagw endpoint revoke}; 064 once quarantined.
        """
        g = self.gateway
        device = g.issueDevice()
        stranger = makeDevice(makeCA("another CA"), device.uid)
        path, keyPath = stranger.writeTo(g.directory, "stranger")
        page = self.assertCode("001", 403, "MAIN", device=Device(device.uid, stranger.serial, path, keyPath))
        self.assertIn("not issued by an EMS CA", page["detail"])

        reissued = g.issueDevice(uid=device.uid)
        self.assertEqual(g.curl("MAIN", "/headers", reissued)[0], 200)
        page = self.assertCode("001", 403, "MAIN", device=device)
        self.assertIn("not the one enrolled", page["detail"])

        self.assertCode("066", 403, "MAIN", device=g.issueDevice(register=False))

        result = g.admin("endpoint", "revoke", reissued.uid)
        self.assertEqual(result.returncode, 0, result.stderr)
        g.settle()
        self.assertCode("063", 403, "MAIN", device=reissued)

        other = g.issueDevice()
        self.assertEqual(g.admin("endpoint", "quarantine", other.uid).returncode, 0)
        g.settle()
        page = self.assertCode("064", 403, "MAIN", device=other)
        self.assertEqual(page["detail"], "This device is quarantined.")

        lines = [line for line in g.trafficLines() if line["action"] == "deny"]
        self.assertEqual(
            [line["ztnaerror"] for line in lines], ["001", "001", "066", "063", "064"]
        )

    def test_policies(self) -> None:
        """
        061 where no policy applies, 062 from a deny policy (with its event),
        065 without a required tag (and the page once the tag is added),
        064 from a negated tag.
        """
        g = self.gateway
        device = g.issueDevice()
        self.assertCode("061", 403, "NOPOL", device=device)
        page = self.assertCode("062", 403, "DENY", device=device)
        self.assertEqual(page["policyId"], 4)
        self.assertCode("065", 403, "TAGS", device=device)
        self.assertEqual(g.admin("endpoint", "tag", device.uid, "add", "Finance").returncode, 0)
        g.settle()
        self.assertEqual(g.curl("TAGS", "/headers", device)[0], 200)
        self.assertEqual(g.curl("NEG", "/headers", device)[0], 200)
        self.assertEqual(g.admin("endpoint", "tag", device.uid, "add", "Blocked").returncode, 0)
        g.settle()
        self.assertCode("064", 403, "NEG", device=device)
        events = [line for line in g.trafficLines() if line["logid"] == "2100060511"]
        self.assertEqual([e["policyid"] for e in events], ["4"])

    def test_applications(self) -> None:
        """
        021 when no api-gateway matches (with its event), 022 when the
        api-gateway has no usable real server, 023 when its real server's
        name does not resolve; 502 for a real server that refuses, 504 for
        one that does not answer in time.
        """
        g = self.gateway
        device = g.issueDevice()
        self.assertCode("021", 404, "MAIN", "/elsewhere", device, host="app.test")
        self.assertEqual(g.curl("MAIN", "/only/here", device, host="app.test")[0], 404)
        self.assertCode("022", 502, "MAIN", device=device, host="gone.test")
        self.assertCode("023", 502, "MAIN", device=device, host="dns.test")
        status, fields, _, _ = g.curl("MAIN", "/", device, host="refused.test")
        self.assertEqual(status, 502)
        self.assertNotIn("x-ztna-error", fields)
        status, _, _, _ = g.curl("MAIN", "/never", device, host="slow.test")
        self.assertEqual(status, 504)
        lines = g.trafficLines()
        self.assertIn("2100060522", [line["logid"] for line in lines])
        actions = {line.get("hostname", "").split(":")[0]: line["action"] for line in lines if line["logid"] == "0005000024"}
        self.assertEqual(actions["refused.test"], "ip-conn")
        self.assertEqual(actions["slow.test"], "timeout")
        self.assertEqual(actions["dns.test"], "dns")

    def test_misdirected(self) -> None:
        """
        A client that names the virtual host without certificate rules in
        SNI and another host in Host gets 421, not the other host.
        """
        g = self.gateway
        status, _, body, _ = g.curl(
            "MAIN", "/headers", host="open.test", arguments=["-H", "Host: 127.0.0.1"]
        )
        self.assertEqual(status, 421)
        status, _, _, _ = g.curl("MAIN", "/headers", host="open.test")
        self.assertEqual(status, 200)
        self.assertTrue(os.path.exists(g.trafficLog))
