"""
The FortiGate walkthrough's three examples, with the real daemon, curl and
C{openssl s_client}.
"""

from __future__ import annotations

import json

from twisted.trial.unittest import TestCase

from tests.integration.httpsfixture import Gateway, opensslHandshake


class WalkthroughTests(TestCase):
    """
    The walkthrough: certificate, no certificate, C{client-cert disable}.
    """

    def setUp(self) -> None:
        self.gateway = Gateway(self.mktemp())
        self.gateway.start()
        self.addCleanup(self.gateway.stop)

    def test_examples(self) -> None:
        """
        Example 1: a registered device's certificate opens the page.
        Example 2: without a certificate, the block page with 002 (HTML for
        curl, JSON when asked); with C{empty-cert-action accept}, the page.
        Example 3: the VIP with C{client-cert disable} sends no certificate
        request and serves the page.  Every request is in the traffic log.
        """
        g = self.gateway
        device = g.issueDevice()
        status, _, body, _ = g.curl("MAIN", "/headers", device)
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["target"], "/headers")

        status, fields, body, _ = g.curl("MAIN", "/headers")
        self.assertEqual((status, fields["x-ztna-error"]), (403, ["002"]))
        self.assertIn(b"Invalid ZTNA Certificate", body)
        self.assertIn(b"Error Code: 002", body)
        status, fields, body, _ = g.curl("MAIN", "/", arguments=["-H", "Accept: application/json"])
        self.assertEqual(json.loads(body)["error"]["code"], "002")

        status, _, _, _ = g.curl("ACCEPT", "/headers")
        self.assertEqual(status, 200)

        status, _, body, _ = g.curl("OPEN", "/headers")
        self.assertEqual(status, 200)

        lines = g.trafficLines()
        actions = [(line["vip"], line["action"], line.get("ztnaerror")) for line in lines]
        self.assertIn(("MAIN", "accept", None), actions)
        self.assertIn(("MAIN", "deny", "002"), actions)
        self.assertIn(("OPEN", "accept", None), actions)
        accepted = [line for line in lines if line["vip"] == "MAIN" and line["action"] == "accept"][0]
        self.assertEqual(accepted["clientdeviceid"], device.uid)
        self.assertEqual(accepted["policyname"], "main")

    def test_certificateRequest(self) -> None:
        """
        A VIP that asks for certificates names the EMS CA in its request
        (so that browsers offer the right certificate); one with
        C{client-cert disable}, and a virtual host with it chosen by SNI,
        ask for none.
        """
        g = self.gateway
        asking = opensslHandshake(g.ports["MAIN"])
        self.assertIn("Acceptable client certificate CA names", asking)
        self.assertIn("ztnagw EMS CA FCTEMS8825007278", asking)
        self.assertIn("No client certificate CA names sent", opensslHandshake(g.ports["OPEN"]))
        self.assertIn(
            "No client certificate CA names sent",
            opensslHandshake(g.ports["MAIN"], serverName="open.test"),
        )
