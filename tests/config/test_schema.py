"""
Tests for L{ztnagw.config.schema}: the value types (each a parser, so each
with hypothesis tests), the declarations of the model, and L{FrozenMap}.
"""

from __future__ import annotations

import copy
import datetime
import ipaddress
import pickle
import uuid

import attrs
from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from ztnagw.config import model
from ztnagw.config.model import Config
from ztnagw.config.schema import (
    EXTENSION,
    FORTIOS,
    Choice,
    Context,
    DateTime,
    Days,
    EmsTag,
    EmsTags,
    FilePath,
    Flag,
    FrozenMap,
    HostName,
    IValueType,
    Integer,
    InterfaceAddress,
    IPv4,
    Key,
    PortRange,
    PortRanges,
    Reference,
    ReferenceList,
    Subnet,
    Text,
    TimeOfDay,
    Uuid,
    ValueProblem,
    camelCase,
    keyOf,
    optionsOf,
    shown,
    tablesOf,
)

from tests.config.strategies import valuesOf

_CONTEXT = Context("/etc/ztnagw", "/var/lib/ztnagw")

#: Every value type the model uses, found through the declarations.
_TYPES: list[object] = []


def _classes(cls: type = Config) -> list[type]:
    found = []
    for table in tablesOf(cls):
        found.append(table.objectClass)
        found.extend(_classes(table.objectClass))
    return found


for _cls in _classes():
    for _declaration in optionsOf(_cls):
        if _declaration.valueType not in _TYPES:
            _TYPES.append(_declaration.valueType)

_GENERATED = [t for t in _TYPES if valuesOf(t) is not None]


def _parse(valueType: object, words: list[str]) -> object:
    return valueType.parse(words, _CONTEXT)  # type: ignore[attr-defined]


def _problem(case: SynchronousTestCase, valueType: object, words: list[str]) -> str:
    return case.assertRaises(ValueProblem, _parse, valueType, words).message


class RoundTripTests(SynchronousTestCase):
    """
    Every value type reads back what it writes, and refuses anything it
    cannot read with L{ValueProblem}, never another exception.
    """

    @given(st.data())
    def test_roundTrip(self, data: st.DataObject) -> None:
        """
        C{parse(render(v)) == v} for every value of every value type.
        """
        valueType = data.draw(st.sampled_from(_GENERATED))
        value = data.draw(valuesOf(valueType))  # type: ignore[arg-type]
        self.assertEqual(_parse(valueType, list(valueType.render(value))), value)  # type: ignore[attr-defined]

    @given(
        st.sampled_from(_TYPES),
        st.lists(
            st.one_of(
                st.text(max_size=30),
                st.sampled_from(["enable", "0", "65535", "10.0.0.1", "10.0.0.0/8", "255.255.255.0", "00:00", "2025/01/01", "EMS1_ZTNA_a", "1-2"]),
            ),
            min_size=1,
            max_size=3,
        ),
    )
    def test_anyWords(self, valueType: object, words: list[str]) -> None:
        """
        Any words are either a value (which then renders and reads back
        equal) or a L{ValueProblem} with a one-line message.
        """
        try:
            value = _parse(valueType, words)
        except ValueProblem as problem:
            self.assertNotIn("\n", problem.message)
            self.assertTrue(problem.message)
        else:
            if value is not None and value != ():
                self.assertEqual(_parse(valueType, list(valueType.render(value))), value)  # type: ignore[attr-defined]


class ValueTypeTests(SynchronousTestCase):
    """
    What each value type accepts and the messages it refuses with.
    """

    def test_flag(self) -> None:
        """
        C{enable} and C{disable} only.
        """
        self.assertIs(_parse(Flag(), ["enable"]), True)
        self.assertIs(_parse(Flag(), ["disable"]), False)
        self.assertEqual(_problem(self, Flag(), ["Enable"]), "Enable is not allowed; use enable or disable")
        self.assertEqual(
            _problem(self, Flag(), ["enable", "disable"]),
            "takes one value, not 2 (quote a value that contains blanks)",
        )

    def test_choice(self) -> None:
        """
        A choice refuses other values with the list; unsupported FortiOS
        values with the reason.
        """
        choice = Choice(("a", "b", "c"), unsupported={"d": "not here"})
        self.assertEqual(_parse(choice, ["b"]), "b")
        self.assertEqual(_problem(self, choice, ["x"]), "x is not allowed; use a, b or c")
        self.assertEqual(_problem(self, choice, ["d"]), "d is not supported by ztnagw (not here); use a, b or c")

    def test_integer(self) -> None:
        """
        Plain decimal digits only: no blanks, underscores, signs other than
        minus, or huge numbers.
        """
        port = Integer(1, 65535)
        self.assertEqual(_parse(port, ["443"]), 443)
        for word in (" 443", "4_43", "+443", "1e3", "٤٤٣", "9" * 30):
            self.assertIn("is not an integer", _problem(self, port, [word]))

    def test_text(self) -> None:
        """
        Text is one line; empty means no value; limits and patterns apply.
        """
        text = Text(maxLength=3)
        self.assertIsNone(_parse(text, [""]))
        self.assertEqual(_problem(self, text, ["abcd"]), "is 4 characters long; the limit is 3")
        self.assertIn("control characters", _problem(self, Text(), ["a\nb"]))
        self.assertEqual(_parse(Text(multiline=True), ["a\r\nb\n"]), "a\r\nb\n")

    def test_references(self) -> None:
        """
        Names are one line, at most 79 characters; lists have no
        repetition; an empty word is no value.
        """
        reference = ReferenceList(("addresses",), "address")
        self.assertEqual(_parse(reference, ["a", "b"]), ("a", "b"))
        self.assertEqual(_parse(reference, [""]), ())
        self.assertEqual(_problem(self, reference, ["a", "a"]), "lists a twice")
        self.assertIn("longer than 79", _problem(self, reference, ["x" * 80]))
        self.assertIsNone(_parse(Reference(("vips",), "VIP"), [""]))

    def test_masks(self) -> None:
        """
        Networks and interface addresses take a dotted mask or a prefix
        length; a network refuses host bits, an interface address keeps
        them.
        """
        self.assertEqual(_parse(Subnet(), ["10.1.0.0", "255.255.0.0"]), ipaddress.IPv4Network("10.1.0.0/16"))
        self.assertEqual(_parse(Subnet(), ["10.1.0.0/255.255.0.0"]), ipaddress.IPv4Network("10.1.0.0/16"))
        self.assertEqual(_parse(Subnet(), ["0.0.0.0", "0.0.0.0"]), ipaddress.IPv4Network("0.0.0.0/0"))
        self.assertEqual(_parse(InterfaceAddress(), ["10.1.2.3/16"]), ipaddress.IPv4Interface("10.1.2.3/16"))
        # A host mask (the inverse of a netmask) is not a netmask.
        self.assertIn("is not a netmask", _problem(self, Subnet(), ["10.0.0.0", "0.0.0.255"]))
        self.assertEqual(Subnet().render(ipaddress.IPv4Network("10.0.0.0/8")), ("10.0.0.0", "255.0.0.0"))

    def test_ipv4(self) -> None:
        """
        Dotted quads only; 0.0.0.0 can be refused.
        """
        self.assertEqual(_parse(IPv4(), ["192.0.2.1"]), ipaddress.IPv4Address("192.0.2.1"))
        for word in ("192.0.2", "::1", "192.0.2.1 ", "0x7f.0.0.1"):
            self.assertIn("is not an IPv4 address", _problem(self, IPv4(), [word]))
        self.assertIn("0.0.0.0 is not allowed", _problem(self, IPv4(allowUnspecified=False), ["0.0.0.0"]))

    def test_times(self) -> None:
        """
        Times of day and dates as FortiOS writes them.
        """
        self.assertEqual(_parse(TimeOfDay(), ["8:05"]), datetime.time(8, 5))
        self.assertEqual(TimeOfDay().render(datetime.time(8, 5)), ("08:05",))
        self.assertEqual(_parse(DateTime(), ["08:05 2024/02/29"]), datetime.datetime(2024, 2, 29, 8, 5))
        self.assertIn("not a date of the calendar", _problem(self, DateTime(), ["08:05", "2023/02/29"]))
        self.assertIn("is not a date and time", _problem(self, DateTime(), ["08:05"]))

    def test_days(self) -> None:
        """
        Days in any order come out in week order; C{none} is no day.
        """
        self.assertEqual(_parse(Days(), ["saturday", "sunday"]), ("sunday", "saturday"))
        self.assertEqual(_parse(Days(), ["none"]), ())
        self.assertEqual(Days().render(()), ("none",))
        self.assertEqual(_problem(self, Days(), ["monday", "monday"]), "lists monday twice")

    def test_uuid(self) -> None:
        """
        The canonical UUID form only.
        """
        value = uuid.UUID("7d54bf6a-c894-51f0-489a-986b6702da86")
        self.assertEqual(_parse(Uuid(), [str(value).upper()]), value)
        self.assertIn("is not a UUID", _problem(self, Uuid(), [value.hex]))

    def test_portRanges(self) -> None:
        """
        Ports and ranges, in order, without repetition.
        """
        self.assertEqual(_parse(PortRanges(), ["22", "8000-8080"]), (PortRange(22, 22), PortRange(8000, 8080)))
        self.assertEqual(_problem(self, PortRanges(), ["90-80"]), "range 90-80 ends before it starts")
        self.assertEqual(_problem(self, PortRanges(), ["0"]), "port 0 is out of range 1-65535")
        self.assertIn(80, PortRange(80, 90))
        self.assertNotIn(91, PortRange(80, 90))

    def test_tags(self) -> None:
        """
        Tags are C{EMS<1-7>_ZTNA_<tag>}.
        """
        self.assertEqual(_parse(EmsTags(), ["EMS7_ZTNA_a-b"]), (EmsTag(7, "a-b"),))
        self.assertIn("is not a ZTNA tag name", _problem(self, EmsTags(), ["EMS8_ZTNA_a"]))
        self.assertIn("is not a ZTNA tag name", _problem(self, EmsTags(), ["EMS1_CLASS_a"]))

    def test_paths(self) -> None:
        """
        Relative paths resolve against the configuration's directory or the
        state directory; absolute ones stay.
        """
        self.assertEqual(_parse(FilePath("config"), ["s/../t"]), "/etc/ztnagw/t")
        self.assertEqual(_parse(FilePath("state"), ["k.pem"]), "/var/lib/ztnagw/k.pem")
        self.assertEqual(_parse(FilePath("state"), ["/k.pem"]), "/k.pem")

    def test_hostNames(self) -> None:
        """
        DNS names; wildcards and addresses only where allowed.
        """
        self.assertEqual(_parse(HostName(), ["ws1.example.com"]), "ws1.example.com")
        self.assertIn("is not a DNS name", _problem(self, HostName(), ["*.example.com"]))
        self.assertEqual(_parse(HostName(wildcard=True), ["*.example.com"]), "*.example.com")
        self.assertIn("is not a DNS name", _problem(self, HostName(), ["10.0.0.1"]))
        self.assertEqual(_parse(HostName(allowAddress=True), ["10.0.0.1"]), "10.0.0.1")
        self.assertIn("is not a DNS name", _problem(self, HostName(), ["-a.example"]))

    def test_keys(self) -> None:
        """
        Numeric keys are in range; names are not empty.
        """
        self.assertEqual(Key(numeric=True, minimum=1, maximum=7).parse("7"), 7)
        self.assertRaises(ValueProblem, Key(numeric=True).parse, "1.0")
        self.assertRaises(ValueProblem, Key(numeric=False).parse, "")
        self.assertEqual(Key(numeric=False).parse("a b"), "a b")

    def test_shown(self) -> None:
        """
        Text in messages is quoted, escaped and cut.
        """
        self.assertEqual(shown('a"b\n'), '"a\\"b\\n"')
        self.assertEqual(shown("x" * 100, limit=5), '"xxxxx..."')


class DeclarationTests(SynchronousTestCase):
    """
    The declarations of the model are consistent.
    """

    def test_valueTypes(self) -> None:
        """
        Every value type provides L{IValueType}.
        """
        for valueType in _TYPES:
            self.assertTrue(verifyObject(IValueType, valueType), valueType)

    def test_camelCase(self) -> None:
        """
        Every option's attribute is the camelCase of its CLI name.
        """
        for cls in _classes():
            for declaration in optionsOf(cls):
                self.assertEqual(declaration.attribute, camelCase(declaration.cliName), cls)

    def test_documented(self) -> None:
        """
        Every option has help text and an origin; every class a docstring.
        """
        for cls in _classes():
            self.assertTrue(cls.__doc__, cls)
            for declaration in optionsOf(cls):
                self.assertTrue(declaration.help, (cls, declaration.cliName))
                self.assertIn(declaration.origin, (FORTIOS, EXTENSION))

    def test_defaults(self) -> None:
        """
        Every default is a value its type reads back.
        """
        for cls in _classes():
            for declaration in optionsOf(cls):
                if declaration.default is None or declaration.default == ():
                    continue
                words = list(declaration.valueType.render(declaration.default))
                self.assertEqual(_parse(declaration.valueType, words), declaration.default, declaration)

    def test_conditions(self) -> None:
        """
        Conditions read options that exist, with values those options can
        have.
        """
        for cls in _classes():
            for declaration in optionsOf(cls):
                for condition in (declaration.when, declaration.requiredWhen):
                    if condition is None:
                        continue
                    owner = model.ApiGateway if condition.parent else cls
                    (controlling,) = [o for o in optionsOf(owner) if o.cliName == condition.option]
                    for value in condition.values:
                        words = list(controlling.valueType.render(value))
                        self.assertEqual(_parse(controlling.valueType, words), value)

    def test_references(self) -> None:
        """
        References name tables of the configuration.
        """
        tables = {t.attribute for t in tablesOf(Config)}
        for cls in _classes():
            for declaration in optionsOf(cls):
                if isinstance(declaration.valueType, (Reference, ReferenceList)):
                    self.assertTrue(set(declaration.valueType.targets) <= tables, declaration)

    def test_keys(self) -> None:
        """
        Every table entry has a key; the singleton has none.
        """
        for table in tablesOf(Config):
            self.assertEqual(keyOf(table.objectClass) is None, table.singleton, table)

    def test_frozen(self) -> None:
        """
        Model objects are frozen and compare equal whatever their
        locations.
        """
        address = model.Address(name="a")
        self.assertRaises(attrs.exceptions.FrozenInstanceError, setattr, address, "name", "b")
        self.assertEqual(address, attrs.evolve(address, explicit=frozenset({"type"})))
        self.assertEqual(hash(Config()), hash(Config()))


class FrozenMapTests(SynchronousTestCase):
    """
    L{FrozenMap} is an ordered, immutable, hashable mapping.
    """

    def test_mapping(self) -> None:
        """
        It reads like a dict, in insertion order.
        """
        table = FrozenMap({2: "b", 1: "a"})
        self.assertEqual(list(table), [2, 1])
        self.assertEqual(table[1], "a")
        self.assertEqual(len(table), 2)
        self.assertIn(2, table)
        self.assertEqual(dict(table), {1: "a", 2: "b"})

    def test_orderMatters(self) -> None:
        """
        Two maps with the same items in another order differ (policies are
        evaluated in order).
        """
        self.assertNotEqual(FrozenMap({1: "a", 2: "b"}), FrozenMap({2: "b", 1: "a"}))
        self.assertEqual(FrozenMap({1: "a"}), FrozenMap([(1, "a")]))
        self.assertEqual(hash(FrozenMap({1: "a"})), hash(FrozenMap({1: "a"})))

    def test_immutable(self) -> None:
        """
        It cannot be changed.
        """
        table = FrozenMap({1: "a"})

        def assign() -> None:
            """
            Try to change the map.
            """
            table[1] = "b"  # type: ignore[index]

        self.assertRaises(TypeError, assign)
        self.assertRaises(AttributeError, setattr, table, "_items", {})

    def test_copyAndPickle(self) -> None:
        """
        It survives C{copy.deepcopy} and C{pickle} (a model holding it can
        be copied or handed to another process), order included, and the
        copy is still immutable.
        """
        table = FrozenMap({2: FrozenMap({"x": 1}), 1: "a"})
        for copied in (copy.deepcopy(table), pickle.loads(pickle.dumps(table))):
            self.assertEqual(copied, table)
            self.assertEqual(list(copied), [2, 1])
            self.assertIsInstance(copied[2], FrozenMap)
            self.assertRaises(AttributeError, setattr, copied, "_items", {})
