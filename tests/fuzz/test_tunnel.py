"""
Fuzz tests of the tunnel request (FortiClient's C{GET /tcp?address=&port=}
with C{Upgrade: tcp-forwarding/1.0}) through a VIP's real front end: any
query and any upgrade head is refused, or leads to a connection attempt to
one of the api-gateway's real servers and nowhere else.

L{tests.tunnel.test_wire} fuzzes the query parser alone; this goes through
the HTTP layer, the access decision, the resolver and the destination
check, where a parser that accepts too much would turn into an open proxy.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tests.fuzz.frontend import ALLOWED_STATUSES, FrontEnd, allowedDestination, feed

_HOSTS = [
    b"10.88.0.5", b"10.1.0.66", b"10.1.0.7", b"127.0.0.1", b"0.0.0.0", b"localhost", b"db.corp.example",
    b"ssh.corp.example", b"x.corp.example", b"corp.example", b"10.88.0.5.", b"010.088.000.005", b"0x0a.0.0.1",
    b"[::1]", b"::ffff:10.88.0.5", b"10.88.0.5%0d%0a", b"10.88.0.5%20", b"%31%30.88.0.5", b"", b"a" * 300,
]
_PORTS = [b"22", b"5432", b"6379", b"1521", b"3389", b"8080", b"0", b"65536", b"-1", b"22 ", b"+22", b"0x16",
          b"022", b"99999999999999999999", b"", b"%32%32"]

_parameter = st.one_of(
    st.tuples(st.just(b"address"), st.sampled_from(_HOSTS) | st.binary(max_size=10)),
    st.tuples(st.just(b"port"), st.sampled_from(_PORTS) | st.binary(max_size=6)),
    st.tuples(st.just(b"tls"), st.sampled_from([b"0", b"1", b"2", b""])),
    st.tuples(st.sampled_from([b"ADDRESS", b"Port", b"x", b"", b"address%00"]), st.binary(max_size=6)),
).map(lambda pair: pair[0] + b"=" + pair[1])

#: Destinations the configuration admits.
_VALID = [(b"10.88.0.5", b"22"), (b"x.corp.example", b"5432"), (b"10.1.0.7", b"3389"), (b"db.corp.example", b"1521")]

#: A query shaped like FortiClient's (address, port, tls, in this order):
#: an admitted destination whose address or port may be swapped for a
#: hostile one, so that most queries sit right at the edge of validity.
_nearValid = st.tuples(
    st.sampled_from(_VALID),
    st.one_of(st.none(), st.none(), st.sampled_from(_HOSTS)),
    st.one_of(st.none(), st.none(), st.sampled_from(_PORTS)),
    st.sampled_from([b"", b"&tls=0", b"&tls=1"]),
).map(
    lambda t: b"address=" + (t[1] if t[1] is not None else t[0][0])
    + b"&port=" + (t[2] if t[2] is not None else t[0][1]) + t[3]
)

_queries = _nearValid | _nearValid | st.lists(_parameter, max_size=5).map(b"&".join) | st.binary(max_size=60)

_upgrades = st.sampled_from(
    [b"tcp-forwarding/1.0", b"tcp-forwarding/1.0", b"tcp-forwarding/1.0", b"TCP-Forwarding/1.0", b"tcp-forwarding/2.0", b"websocket", b"tcp-forwarding/1.0, h2c"]
)


class TunnelRequestTests(SynchronousTestCase):
    """
    Hostile tunnel requests.
    """

    @settings(max_examples=400)
    @given(_queries, _upgrades, st.binary(max_size=40), st.booleans(), st.lists(st.integers(0, 400), max_size=4))
    def test_anyQuery(self, query: bytes, upgrade: bytes, early: bytes, withCertificate: bool, cuts: list[int]) -> None:
        """
        Whatever the query, the upgrade token and the bytes sent early
        behind the request: the answers are refusals (or 502 for a refused
        real server), and the only connections tried are to destinations
        the configuration allows.
        """
        data = (
            b"GET /tcp?" + query + b" HTTP/1.1\r\nHost: 127.0.0.1:443\r\nUser-Agent: Forticlient\r\n"
            b"Upgrade: " + upgrade + b"\r\nConnection: Upgrade\r\n\r\n" + early
        )
        frontEnd = FrontEnd(withCertificate)
        statuses, transport, failures = feed(frontEnd, data, cuts, False)
        self.assertEqual(failures.events, [], failures.describe())
        self.assertLessEqual(set(statuses), ALLOWED_STATUSES)
        self.assertTrue(transport.disconnecting)
        for host, port in frontEnd.attempts:
            self.assertTrue(allowedDestination(host, port), (host, port, query))
        if not withCertificate:
            self.assertEqual(frontEnd.attempts, [])

    def test_attemptsRecorded(self) -> None:
        """
        A valid request is tried against its real server, which the fuzz
        refuses: 502, so the property above is not vacuous.
        """
        frontEnd = FrontEnd()
        statuses, transport, failures = feed(
            frontEnd,
            b"GET /tcp?address=10.88.0.5&port=22 HTTP/1.1\r\nHost: h\r\n"
            b"Upgrade: tcp-forwarding/1.0\r\nConnection: Upgrade\r\n\r\n",
            [],
            False,
        )
        self.assertEqual(frontEnd.attempts, [("10.88.0.5", 22)])
        self.assertEqual(statuses, [502])

    def test_allowedDestination(self) -> None:
        """
        The oracle of the property agrees with the configuration on a few
        cases.
        """
        self.assertTrue(allowedDestination("10.1.0.7", 3389))
        self.assertFalse(allowedDestination("10.1.0.66", 3389))
        self.assertFalse(allowedDestination("10.88.0.5", 23))
        self.assertFalse(allowedDestination("127.0.0.1", 443))
