"""
Tests for L{ztnagw.config.addresses}: what address names stand for.
"""

from __future__ import annotations

from ipaddress import IPv4Address as A

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from ztnagw.config.addresses import AddressSet, UnresolvedAddress, addressContains

from tests.config.helpers import MINIMAL, load

ADDRESSES = """
config firewall address
    edit "lan"
        set subnet 10.0.0.0/8
    next
    edit "range"
        set type iprange
        set start-ip 192.168.1.10
        set end-ip 192.168.1.20
    next
    edit "web"
        set type fqdn
        set fqdn "web.example"
    next
    edit "printer"
        set subnet 10.1.2.3/32
    next
end
config firewall addrgrp
    edit "inner"
        set member "range" "web"
    next
    edit "outer"
        set member "inner" "lan"
    next
    edit "lan-but-printers"
        set member "lan"
        set exclude enable
        set exclude-member "printer"
    next
    edit "nested-exclusion"
        set member "lan-but-printers" "range"
    next
end
"""


class AddressSetTests(SynchronousTestCase):
    """
    Names become a flat set; membership is a pure function.
    """

    def setUp(self) -> None:
        self.config = load(self, MINIMAL, ADDRESSES)

    def test_leaves(self) -> None:
        """
        Subnets contain their addresses, ranges theirs (ends included),
        built-in C{all} everything and C{none} nothing a packet can have.
        """
        config = self.config
        self.assertTrue(addressContains(config, ["lan"], A("10.200.0.1")))
        self.assertFalse(addressContains(config, ["lan"], A("11.0.0.1")))
        self.assertTrue(addressContains(config, ["range"], A("192.168.1.10")))
        self.assertTrue(addressContains(config, ["range"], A("192.168.1.20")))
        self.assertFalse(addressContains(config, ["range"], A("192.168.1.21")))
        self.assertTrue(addressContains(config, ["all"], A("203.0.113.9")))
        self.assertFalse(addressContains(config, ["none"], A("203.0.113.9")))

    def test_fqdn(self) -> None:
        """
        An FQDN address contains what it resolved to; the caller resolves
        the names L{AddressSet.fqdns} lists, and an unresolved one is an
        error, not a guess.
        """
        addresses = self.config.addressSet(["web", "lan"])
        self.assertEqual(addresses.fqdns(), {"web.example"})
        self.assertTrue(addresses.contains(A("10.0.0.1")))
        resolved = {"web.example": [A("198.51.100.7")]}
        self.assertTrue(addresses.contains(A("198.51.100.7"), resolved))
        self.assertFalse(addresses.contains(A("198.51.100.8"), resolved))
        self.assertFalse(addresses.contains(A("198.51.100.7"), {"web.example": []}))
        error = self.assertRaises(UnresolvedAddress, addresses.contains, A("198.51.100.7"))
        self.assertEqual(error.fqdn, "web.example")

    def test_nestedGroups(self) -> None:
        """
        Groups within groups are flattened.
        """
        addresses = self.config.addressSet(["outer"])
        self.assertEqual([leaf.name for leaf in addresses.leaves()], ["range", "web", "lan"])
        self.assertTrue(addresses.contains(A("192.168.1.15"), {"web.example": []}))

    def test_exclusion(self) -> None:
        """
        Excluded members are subtracted, also inside another group.
        """
        for name in ("lan-but-printers", "nested-exclusion"):
            addresses = self.config.addressSet([name])
            self.assertTrue(addresses.contains(A("10.1.2.4")))
            self.assertFalse(addresses.contains(A("10.1.2.3")), name)
        self.assertTrue(self.config.addressSet(["nested-exclusion"]).contains(A("192.168.1.10")))
        # Naming the printer beside the group brings it back.
        self.assertTrue(self.config.addressSet(["lan-but-printers", "printer"]).contains(A("10.1.2.3")))

    def test_vip(self) -> None:
        """
        A VIP stands for its external address.
        """
        self.assertTrue(addressContains(self.config, ["vip"], A("192.0.2.1")))
        self.assertFalse(addressContains(self.config, ["vip"], A("192.0.2.2")))

    def test_unknown(self) -> None:
        """
        An unknown name raises L{KeyError} (a loaded configuration has
        none).
        """
        self.assertRaises(KeyError, self.config.addressSet, ["nope"])

    def test_empty(self) -> None:
        """
        No names: nothing is contained.
        """
        self.assertFalse(AddressSet().contains(A("10.0.0.1")))
        self.assertEqual(AddressSet().fqdns(), frozenset())

    @given(st.ip_addresses(v=4))
    def test_groupIsUnion(self, ip: A) -> None:
        """
        A group without exclusion contains exactly what its members
        contain.
        """
        resolved = {"web.example": [A("10.0.0.1")]}
        config = self.config
        self.assertEqual(
            addressContains(config, ["outer"], ip, resolved),
            any(addressContains(config, [m], ip, resolved) for m in ("range", "web", "lan")),
        )
        self.assertEqual(
            addressContains(config, ["lan-but-printers"], ip),
            addressContains(config, ["lan"], ip) and not addressContains(config, ["printer"], ip),
        )
