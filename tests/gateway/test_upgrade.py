"""
Tests for L{ztnagw.gateway.upgrade}: which 101s are relayed, and with
which fields.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from ztnagw.gateway.upgrade import acceptedUpgrade, switchingPairs, upgradePairs
from ztnagw.http.headers import Headers


def fields(*pairs: tuple[bytes, bytes]) -> Headers:
    """
    Header fields from pairs.
    """
    headers = Headers()
    for name, value in pairs:
        headers.add(name, value)
    return headers


class AcceptedTests(SynchronousTestCase):
    """
    L{acceptedUpgrade}.
    """

    def test_offered(self) -> None:
        """
        A protocol the client offered is accepted, case ignored.
        """
        self.assertEqual(acceptedUpgrade(b"websocket", fields((b"Upgrade", b"WebSocket"))), b"WebSocket")
        self.assertEqual(acceptedUpgrade(b"h2c, websocket", fields((b"Upgrade", b"websocket"))), b"websocket")

    def test_notOffered(self) -> None:
        """
        Another protocol, several, or none: refused.
        """
        self.assertIsNone(acceptedUpgrade(b"websocket", fields((b"Upgrade", b"h2c"))))
        self.assertIsNone(acceptedUpgrade(b"websocket", fields((b"Upgrade", b"websocket, h2c"))))
        self.assertIsNone(acceptedUpgrade(b"websocket", fields()))
        self.assertIsNone(
            acceptedUpgrade(b"websocket", fields((b"Upgrade", b"websocket"), (b"Upgrade", b"websocket")))
        )

    def test_pairs(self) -> None:
        """
        The request carries Connection: Upgrade and the client's Upgrade;
        the relayed 101 drops the server's hop-by-hop fields and puts the
        switch back.
        """
        self.assertEqual(upgradePairs(b"websocket"), [(b"Connection", b"Upgrade"), (b"Upgrade", b"websocket")])
        response = fields(
            (b"Upgrade", b"websocket"),
            (b"Connection", b"Upgrade, X-Secret"),
            (b"X-Secret", b"1"),
            (b"Keep-Alive", b"timeout=5"),
            (b"Sec-WebSocket-Accept", b"abc"),
        )
        self.assertEqual(
            switchingPairs(response, b"websocket"),
            [(b"Sec-WebSocket-Accept", b"abc"), (b"Upgrade", b"websocket"), (b"Connection", b"Upgrade")],
        )
