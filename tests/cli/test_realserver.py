"""
Tests for L{ztnagw.cli.realserver}: the layout of C{ztnagw diagnose
realserver list}.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from ztnagw.cli.realserver import formatRealServers

ENTRY = {
    "vip": "VIP", "accessProxy": "AP", "apiGateway": 1, "service": "http", "ldbMethod": "round-robin",
    "persistence": "none", "realServer": 1, "address": "10.0.0.1", "port": 80, "status": "active",
    "weight": 1, "healthCheck": "http", "state": "down", "serving": False, "since": 75.0,
    "detail": "HTTP 503 for /", "checks": 9, "failures": 3, "holddown": 30,
}


class FormatTests(SynchronousTestCase):
    """
    L{formatRealServers}.
    """

    def test_layout(self) -> None:
        """
        One line per api-gateway, one per real server with its health, and
        a summary.
        """
        other = dict(ENTRY, realServer=2, address="10.0.0.2", healthCheck=None, state="up", serving=True,
                     since=None, detail=None)
        self.assertEqual(
            formatRealServers([ENTRY, other]).splitlines(),
            [
                "vip=VIP access-proxy=AP api-gateway=1 service=http ldb-method=round-robin persistence=none",
                "    realserver 1: 10.0.0.1:80 status=active weight=1 health-check=http state=down "
                'serving=no since=75s checks=9 failures=3 holddown=30s last="HTTP 503 for /"',
                "    realserver 2: 10.0.0.2:80 status=active weight=1 health-check=disable state=up serving=yes",
                "real servers: 2; serving: 1; not serving: 1",
            ],
        )

    def test_tunnelPoolMember(self) -> None:
        """
        A tcp-forwarding pool member shows the destination names it serves
        (its C{domain}).
        """
        member = dict(ENTRY, service="tcp-forwarding", domain="*.db.corp", port=5432, healthCheck=None,
                      state="up", serving=True, since=None, detail=None)
        self.assertEqual(
            formatRealServers([member]).splitlines()[1],
            "    realserver 1: domain=*.db.corp 10.0.0.1:5432 status=active weight=1 "
            "health-check=disable state=up serving=yes",
        )
