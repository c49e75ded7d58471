"""
Tests for L{ztnagw.forwarder.socks}: the SOCKS5 parser and the server side
of one SOCKS connection.
"""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tests.tunnel.fakes import HalfCloseTransport
from ztnagw.forwarder import socks
from ztnagw.forwarder.socks import (
    SocksConnection,
    SocksError,
    SocksRequest,
    parseGreeting,
    parseRequest,
    reply,
)
from ztnagw.tunnel.wire import TunnelTarget


def connect(addressType: int, address: bytes, port: int, command: int = socks.CONNECT) -> bytes:
    """
    A SOCKS5 request.
    """
    if addressType == socks.DOMAIN:
        address = bytes([len(address)]) + address
    return bytes([5, command, 0, addressType]) + address + struct.pack("!H", port)


class ParserTests(SynchronousTestCase):
    """
    L{parseGreeting} and L{parseRequest}.
    """

    def test_greeting(self) -> None:
        """
        A greeting is version 5 and the methods offered.
        """
        self.assertEqual(parseGreeting(b"\x05\x02\x00\x02rest"), ((0, 2), 4))
        self.assertIsNone(parseGreeting(b"\x05\x02\x00"))
        self.assertIsNone(parseGreeting(b""))

    def test_badGreeting(self) -> None:
        """
        Another version, or no method, is refused.
        """
        e = self.assertRaises(SocksError, parseGreeting, b"\x04\x01\x00\x16")
        self.assertEqual(e.code, socks.NO_ACCEPTABLE_METHOD)
        self.assertRaises(SocksError, parseGreeting, b"\x05\x00")

    def test_addressTypes(self) -> None:
        """
        IPv4, domain and IPv6 destinations.
        """
        self.assertEqual(
            parseRequest(connect(socks.IPV4, bytes([10, 0, 0, 5]), 22)),
            (SocksRequest("10.0.0.5", 22), 10),
        )
        self.assertEqual(
            parseRequest(connect(socks.DOMAIN, b"DB.corp", 5432)),
            (SocksRequest("db.corp", 5432), 7 + 7),
        )
        self.assertEqual(
            parseRequest(connect(socks.IPV6, bytes(15) + b"\x01", 80)),
            (SocksRequest("::1", 80), 22),
        )

    def test_incomplete(self) -> None:
        """
        Every proper prefix of a request asks for more.
        """
        for request in (
            connect(socks.IPV4, bytes(4), 1),
            connect(socks.DOMAIN, b"host", 1),
            connect(socks.IPV6, bytes(16), 1),
        ):
            for size in range(len(request)):
                self.assertIsNone(parseRequest(request[:size]))

    def test_refusals(self) -> None:
        """
        Other commands, unknown address types, names that are not host
        names and port 0 get the RFC's codes.
        """
        for request, code in (
            (connect(socks.IPV4, bytes(4), 1, command=2), socks.COMMAND_NOT_SUPPORTED),
            (connect(socks.IPV4, bytes(4), 1, command=3), socks.COMMAND_NOT_SUPPORTED),
            (b"\x05\x01\x00\x09" + bytes(8), socks.ADDRESS_TYPE_NOT_SUPPORTED),
            (connect(socks.DOMAIN, b"a b\r\n", 1), socks.HOST_UNREACHABLE),
            (connect(socks.DOMAIN, b"\xc3\xa9t\xc3\xa9", 1), socks.HOST_UNREACHABLE),
            (connect(socks.DOMAIN, b"", 1), socks.HOST_UNREACHABLE),
            (connect(socks.IPV4, bytes(4), 0), socks.HOST_UNREACHABLE),
            (b"\x04\x01\x00\x01" + bytes(6), socks.GENERAL_FAILURE),
            (b"\x05\x01\x01\x01" + bytes(6), socks.GENERAL_FAILURE),
        ):
            e = self.assertRaises(SocksError, parseRequest, request)
            self.assertEqual(e.code, code, request)

    def test_reply(self) -> None:
        """
        Replies name 0.0.0.0:0 as the bound address.
        """
        self.assertEqual(reply(0), b"\x05\x00\x00\x01\x00\x00\x00\x00\x00\x00")

    @given(st.binary(max_size=300))
    def test_anyBytes(self, data: bytes) -> None:
        """
        Any bytes are a request, a need for more, or a L{SocksError} with a
        reply code.
        """
        for parse in (parseGreeting, parseRequest):
            try:
                parsed = parse(data)
            except SocksError as e:
                self.assertIn(e.code, list(socks.REPLY_MEANINGS) + [socks.NO_ACCEPTABLE_METHOD])
            else:
                if parsed is not None:
                    self.assertLessEqual(parsed[1], len(data))

    @given(
        st.one_of(
            st.ip_addresses(v=4).map(lambda a: (socks.IPV4, a.packed)),
            st.ip_addresses(v=6).map(lambda a: (socks.IPV6, a.packed)),
            st.from_regex(r"\A[a-z]{1,20}(\.[a-z]{1,20}){0,3}\Z").map(lambda n: (socks.DOMAIN, n.encode())),
        ),
        st.integers(1, 65535),
        st.binary(max_size=10),
    )
    def test_requests(self, destination: tuple[int, bytes], port: int, extra: bytes) -> None:
        """
        Well-formed requests parse to their destination, and say how long
        they were whatever follows.
        """
        addressType, address = destination
        request = connect(addressType, address, port)
        parsed = parseRequest(request + extra)
        assert parsed is not None
        self.assertEqual(parsed[1], len(request))
        self.assertEqual(parsed[0].port, port)


class ConnectionTests(SynchronousTestCase):
    """
    L{SocksConnection}: the negotiation, then the relay end.
    """

    def setUp(self) -> None:
        self.requests: list[SocksRequest] = []
        self.connection = SocksConnection(lambda c, r: self.requests.append(r))
        self.transport = HalfCloseTransport()
        self.connection.makeConnection(self.transport)

    def test_negotiation(self) -> None:
        """
        The server chooses "no authentication", reads the request and asks
        its owner; the success reply follows L{SocksConnection.succeeded}.
        Bytes sent early wait in the relay end.
        """
        self.connection.dataReceived(b"\x05\x01\x00")
        self.assertEqual(self.transport.value(), b"\x05\x00")
        self.connection.dataReceived(connect(socks.DOMAIN, b"db", 5432) + b"early")
        self.assertEqual(self.requests, [SocksRequest("db", 5432)])
        self.assertEqual(self.requests[0].target(False), TunnelTarget("db", 5432, False))
        self.connection.succeeded()
        self.assertEqual(self.transport.value(), b"\x05\x00" + reply(0))
        self.assertEqual(self.connection._takePending(), [b"early"])
        self.assertEqual(self.connection.received, 5)

    def test_byteByByte(self) -> None:
        """
        The negotiation may arrive one byte at a time.
        """
        for byte in b"\x05\x01\x00" + connect(socks.IPV4, bytes([10, 0, 0, 1]), 22):
            self.connection.dataReceived(bytes([byte]))
        self.assertEqual(self.requests, [SocksRequest("10.0.0.1", 22)])

    def test_authenticationRequired(self) -> None:
        """
        A client that requires authentication is told no method is
        acceptable.
        """
        self.connection.dataReceived(b"\x05\x01\x02")
        self.assertEqual(self.transport.value(), b"\x05\xff")
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.requests, [])

    def test_refuse(self) -> None:
        """
        L{SocksConnection.refuse} answers with the code and closes.
        """
        self.connection.dataReceived(b"\x05\x01\x00" + connect(socks.IPV4, bytes(4), 1))
        self.connection.refuse(socks.NOT_ALLOWED)
        self.assertEqual(self.transport.value()[2:], reply(socks.NOT_ALLOWED))
        self.assertTrue(self.transport.disconnecting)

    def test_badRequest(self) -> None:
        """
        A request that cannot be served gets its code and a close.
        """
        self.connection.dataReceived(b"\x05\x01\x00" + connect(socks.IPV4, bytes(4), 1, command=2))
        self.assertEqual(self.transport.value()[2:], reply(socks.COMMAND_NOT_SUPPORTED))
        self.assertTrue(self.transport.disconnecting)
        self.assertIn("only CONNECT", self.connection.failure or "")

    def test_tooLong(self) -> None:
        """
        The negotiation is bounded.
        """
        self.connection.dataReceived(b"\x05\xff" + b"\x01" * 2000)
        self.assertTrue(self.transport.disconnecting)

    def test_closedEarly(self) -> None:
        """
        A client that stops sending during the negotiation is closed.
        """
        self.connection.dataReceived(b"\x05")
        self.connection.readConnectionLost()
        self.assertTrue(self.transport.disconnecting)
