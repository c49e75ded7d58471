"""
Real-server pools with the real daemon: load balancing, a real server
killed mid-run marked down by its health check (traffic moves, an event is
logged, C{ztnagw diagnose realserver list} shows it), its return after the
hold-down, failover to a standby server and back, and the retry of an
idempotent request on another server.
"""

from __future__ import annotations

import json
import time

from twisted.trial.unittest import TestCase

from tests.integration.poolsgateway import Backend, PoolGateway, waitFor

GATEWAYS = """
            edit 2
                set service http
                set url-map "/standby"
                set ldb-method first-alive
                config realservers
                    edit 1
                        set ip 127.0.0.1
                        set port {C}
                        set health-check enable
                        set health-check-proto tcp-connect
                        set health-check-interval 1
                        set health-check-timeout 1
                        set health-check-fall 1
                        set health-check-rise 1
                        set holddown-time 2
                    next
                    edit 2
                        set ip 127.0.0.1
                        set port {D}
                        set status standby
                    next
                end
            next
            edit 3
                set service http
                set url-map "/retry"
                set ldb-method round-robin
                config realservers
                    edit 1
                        set ip 127.0.0.1
                        set port {CLOSED}
                    next
                    edit 2
                        set ip 127.0.0.1
                        set port {B}
                    next
                end
            next
            edit 1
                set service http
                set ldb-method round-robin
                config realservers
                    edit 1
                        set ip 127.0.0.1
                        set port {A}
                        set health-check enable
                        set health-check-proto http
                        set health-check-http-path "/health"
                        set health-check-interval 1
                        set health-check-timeout 1
                        set health-check-fall 1
                        set health-check-rise 1
                        set holddown-time 2
                    next
                    edit 2
                        set ip 127.0.0.1
                        set port {B}
                        set health-check enable
                        set health-check-proto tcp-connect
                        set health-check-interval 1
                    next
                end
            next
"""


class PoolTests(TestCase):
    """
    The pools of one daemon.
    """

    def setUp(self) -> None:
        from tests.support.daemon import freePort

        self.backends = {name: Backend(name) for name in "ABCD"}
        for backend in self.backends.values():
            backend.start()
            self.addCleanup(backend.stop)
        ports = {name: b.port for name, b in self.backends.items()}
        self.gateway = PoolGateway(self.mktemp(), GATEWAYS, CLOSED=freePort(), **ports)
        self.gateway.start()
        self.addCleanup(self.gateway.stop)
        self.device = self.gateway.issueDevice()

    def served(self, path: str = "/", count: int = 1) -> list[str]:
        """
        Which backend answered each of C{count} requests.
        """
        out = []
        for _ in range(count):
            status, _, body = self.gateway.get(path, self.device)
            self.assertEqual(status, 200, body)
            out.append(json.loads(body)["server"])
        return out

    def realServers(self) -> str:
        """
        What C{ztnagw diagnose realserver list} prints.
        """
        result = self.gateway.admin("diagnose", "realserver", "list")
        self.assertEqual(result.returncode, 0, result.stderr)
        return result.stdout.decode()

    def test_killedAndBack(self) -> None:
        """
        Round-robin uses both servers; one killed is marked down by its
        health check (event, diagnose) and every request goes to the other;
        back, it serves again only after its hold-down.
        """
        self.assertEqual(sorted(self.served(count=4)), ["A", "A", "B", "B"])
        self.backends["A"].stop()
        waitFor(lambda: self.gateway.lines("9900069903"), what="the down event")
        [down] = self.gateway.lines("9900069903")
        self.assertEqual((down["gatewayid"], down["realserverid"]), ("1", "1"))
        self.assertIn("down", down["msg"])
        self.assertEqual(self.served(count=4), ["B", "B", "B", "B"])
        listing = self.realServers()
        self.assertIn("realserver 1: 127.0.0.1:%d" % self.backends["A"].port, listing)
        self.assertRegex(listing, r"realserver 1: \S+ .*state=down serving=no")
        self.backends["A"].start()
        waitFor(lambda: "state=holddown" in self.realServers(), what="the hold-down")
        self.assertEqual(self.served(count=2), ["B", "B"])
        waitFor(lambda: self.gateway.lines("9900069902"), what="the up event")
        self.assertEqual(sorted(self.served(count=4)), ["A", "A", "B", "B"])

    def test_standby(self) -> None:
        """
        The standby server serves only while the active one is down.
        """
        self.assertEqual(self.served("/standby", 2), ["C", "C"])
        self.backends["C"].stop()
        waitFor(lambda: "state=down" in self.realServers(), what="C down")
        self.assertEqual(self.served("/standby", 2), ["D", "D"])
        self.backends["C"].start()
        waitFor(lambda: len(self.gateway.lines("9900069902")) >= 1, what="C up")
        self.assertEqual(self.served("/standby", 2), ["C", "C"])

    def test_retry(self) -> None:
        """
        A GET whose server refuses the connection is answered by the other
        server; a POST is not re-sent (502).
        """
        self.assertEqual(self.served("/retry", 4), ["B", "B", "B", "B"])
        statuses = [self.gateway.get("/retry", self.device, method="POST", body=b"x")[0] for _ in range(2)]
        self.assertIn(502, statuses)
