# -*- test-case-name: tests.config.test_schema -*-
"""
The declarative machinery of the configuration model.

Every object a configuration can hold is an C{attrs} frozen class in
L{ztnagw.config.model}; each of its fields that is a CLI option carries an
L{Option} in its metadata (CLI name, value type, default, whether it is a
FortiOS option or a ztnagw extension, when it is meaningful, help text).
One generic builder (L{ztnagw.config.build}) reads configurations through
these declarations, one generic printer (L{ztnagw.config.printer}) writes them
back, and the option reference in C{docs/configuration.md} is generated
from them (L{ztnagw.config.reference}).  Adding an option is therefore one
declaration; nothing else has to learn about it.

The value types below turn the words of a C{set} statement into Python
values (C{enable}/C{disable} into C{bool}, ports into C{int}, addresses into
C{ipaddress} objects...) and back.  Each refuses anything else with a
L{ValueProblem} that says what is allowed.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import uuid
from typing import Any, Callable, ClassVar, Iterator, Mapping, Sequence, TypeVar

import attrs
from attrs import field, frozen
from zope.interface import Attribute, Interface, implementer

from ztnagw.config.tree import Location, Word

__all__ = [
    "EXTENSION",
    "FORTIOS",
    "Condition",
    "ConfigObject",
    "Context",
    "EmsTag",
    "FrozenMap",
    "IValueType",
    "Key",
    "Option",
    "PortRange",
    "Table",
    "ValueProblem",
    "camelCase",
    "idKey",
    "keyOf",
    "nameKey",
    "option",
    "optionsOf",
    "shown",
    "singleton",
    "table",
    "tablesOf",
    "valuesOf",
]

#: L{Option.origin} of an option FortiOS has, with FortiOS's meaning.
FORTIOS = "FortiOS"

#: L{Option.origin} of an option only ztnagw has.
EXTENSION = "ztnagw"

_SCHEMA = "ztnagw.config"

K = TypeVar("K")
V = TypeVar("V")


class FrozenMap(Mapping[K, V]):
    """
    An immutable, hashable, ordered mapping: the tables of the model.

    Unlike C{dict}, equality takes order into account: policies are
    evaluated in configuration order, so two configurations listing the
    same policies in another order are different configurations.
    """

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[K, V] | Sequence[tuple[K, V]] = ()) -> None:
        object.__setattr__(self, "_items", dict(items))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("FrozenMap is immutable")

    def __getitem__(self, key: K) -> V:
        return self._items[key]

    def __iter__(self) -> Iterator[K]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return list(self.items()) == list(other.items())
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __hash__(self) -> int:
        return hash(tuple(self._items.items()))

    def __repr__(self) -> str:
        return f"FrozenMap({self._items!r})"

    def __reduce__(self) -> tuple[type, tuple[list[tuple[K, V]]]]:
        # Copying and pickling would otherwise set _items on a blank
        # instance, which __setattr__ forbids.
        return (FrozenMap, (list(self._items.items()),))


class ValueProblem(Exception):
    """
    A value cannot be used for an option.

    @ivar message: what is wrong and what is allowed instead, as a phrase
        the builder prefixes with the object and option concerned.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@frozen
class Context:
    """
    What some value types need to know besides the words.

    @ivar configDirectory: the directory relative C{state-dir} values are
        resolved against (the configuration file's directory).
    @ivar stateDir: the state directory, against which relative
        certificate and key file names are resolved.
    """

    configDirectory: str
    stateDir: str


def shown(text: str, limit: int = 60) -> str:
    """
    Quote user text for an error message: invisible characters made
    visible and long text shortened, so that a hostile value can neither
    forge lines in a log nor flood it.
    """
    if len(text) > limit:
        text = text[:limit] + "..."
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(ascii(ch)[1:-1])
    return '"' + "".join(out) + '"'


def _shownWord(text: str) -> str:
    # A value in a message: bare when it is a plain word, quoted otherwise.
    if text and re.fullmatch(r"[A-Za-z0-9_.:/@*+-]{1,60}", text):
        return text
    return shown(text)


def camelCase(cliName: str) -> str:
    """
    The Python attribute name of a CLI option: C{ssl-certificate} is
    C{sslCertificate}.
    """
    head, *rest = cliName.split("-")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _one(words: Sequence[str]) -> str:
    if len(words) != 1:
        raise ValueProblem(
            f"takes one value, not {len(words)} (quote a value that "
            "contains blanks)"
        )
    return words[0]


def _listing(choices: Sequence[str]) -> str:
    choices = list(choices)
    if len(choices) == 1:
        return choices[0]
    return ", ".join(choices[:-1]) + " or " + choices[-1]


_CONTROL = re.compile("[\x00-\x1f\x7f]")


def _plainText(text: str, what: str = "value") -> str:
    if _CONTROL.search(text):
        raise ValueProblem(
            f"{shown(text)} contains control characters; a {what} must be "
            "one line of printable text"
        )
    return text


# ---------------------------------------------------------------- value types


class IValueType(Interface):
    """
    How the words of a C{set} statement become an option's Python value,
    and back.  Every option declares one; a new kind of value is a new
    provider of this interface.
    """

    quoted = Attribute(
        "Whether C{show} writes the value in quotes (names and text, as "
        "FortiOS does) or bare (keywords, numbers, addresses)."
    )
    pythonType = Attribute("The Python type of the values, for the documentation.")

    def parse(words: Sequence[str], context: Context) -> object:
        """
        The value the words of C{set <option> <words>...} stand for.

        @param context: what relative paths are resolved against.
        @return: the value; C{None} (or an empty tuple) for an empty word,
            which means "no value" as in FortiOS.
        @raise ValueProblem: the words are not a value of this type; the
            message says what is allowed.
        """

    def render(value: object) -> tuple[str, ...]:
        """
        The words that L{parse} reads back as C{value}.
        """

    def describe() -> str:
        """
        What values are allowed, in words, for messages and the
        documentation (C{"an integer from 1 to 65535"}).
        """


@implementer(IValueType)
@frozen
class Flag:
    """
    C{enable} or C{disable}, as C{True} or C{False}.
    """

    quoted: ClassVar[bool] = False
    pythonType: ClassVar[str] = "bool"

    def parse(self, words: Sequence[str], context: Context) -> bool:
        word = _one(words)
        if word == "enable":
            return True
        if word == "disable":
            return False
        raise ValueProblem(f"{_shownWord(word)} is not allowed; use enable or disable")

    def render(self, value: bool) -> tuple[str, ...]:
        return ("enable" if value else "disable",)

    def describe(self) -> str:
        return "enable or disable"


@implementer(IValueType)
@frozen
class Choice:
    """
    One word from a fixed list, kept as the CLI spelling.

    @ivar choices: what ztnagw supports.
    @ivar unsupported: values FortiOS has but ztnagw refuses, each with the
        reason given to the user.
    """

    choices: tuple[str, ...]
    unsupported: Mapping[str, str] = field(factory=dict, eq=False)

    quoted: ClassVar[bool] = False
    pythonType: ClassVar[str] = "str"

    def parse(self, words: Sequence[str], context: Context) -> str:
        word = _one(words)
        if word in self.choices:
            return word
        if word in self.unsupported:
            raise ValueProblem(
                f"{word} is not supported by ztnagw ({self.unsupported[word]}); "
                f"use {self.describe()}"
            )
        raise ValueProblem(f"{_shownWord(word)} is not allowed; use {self.describe()}")

    def render(self, value: str) -> tuple[str, ...]:
        return (value,)

    def describe(self) -> str:
        return _listing(self.choices)


@implementer(IValueType)
@frozen
class Integer:
    """
    A decimal integer in a range.
    """

    minimum: int
    maximum: int

    quoted: ClassVar[bool] = False
    pythonType: ClassVar[str] = "int"

    def parse(self, words: Sequence[str], context: Context) -> int:
        word = _one(words)
        # int() would also take blanks, underscores, '+' and thousands of
        # digits (which it refuses with its own error); only plain decimal
        # digits are a FortiOS integer.
        if not re.fullmatch(r"-?[0-9]{1,20}", word):
            raise ValueProblem(
                f"{_shownWord(word)} is not an integer; use {self.describe()}"
            )
        value = int(word)
        if not self.minimum <= value <= self.maximum:
            raise ValueProblem(f"{value} is out of range; use {self.describe()}")
        return value

    def render(self, value: int) -> tuple[str, ...]:
        return (str(value),)

    def describe(self) -> str:
        return f"an integer from {self.minimum} to {self.maximum}"


@implementer(IValueType)
@frozen
class Text:
    """
    A string.  An empty string means "no value", as in FortiOS.

    @ivar maxLength: the longest value allowed, if any.
    @ivar pattern: a regular expression the whole value must match.
    @ivar patternHelp: what C{pattern} allows, in words.
    @ivar multiline: whether line breaks are allowed (inline PEM).
    @ivar check: a further check, raising L{ValueProblem}.
    """

    maxLength: int | None = None
    pattern: str | None = None
    patternHelp: str | None = None
    multiline: bool = False
    check: Callable[[str], None] | None = field(default=None, eq=False)

    quoted: ClassVar[bool] = True
    pythonType: ClassVar[str] = "str"

    def parse(self, words: Sequence[str], context: Context) -> str | None:
        word = _one(words)
        if word == "":
            return None
        if self.multiline:
            if _CONTROL.search(word.replace("\n", "").replace("\r", "").replace("\t", "")):
                raise ValueProblem("contains control characters")
        else:
            _plainText(word)
        if self.maxLength is not None and len(word) > self.maxLength:
            raise ValueProblem(
                f"is {len(word)} characters long; the limit is {self.maxLength}"
            )
        if self.pattern is not None and not re.fullmatch(self.pattern, word):
            raise ValueProblem(f"{shown(word)} is not {self.patternHelp}")
        if self.check is not None:
            self.check(word)
        return word

    def render(self, value: str) -> tuple[str, ...]:
        return (value,)

    def describe(self) -> str:
        if self.patternHelp is not None:
            return self.patternHelp
        if self.multiline:
            return "PEM text, quoted (line breaks kept)"
        if self.maxLength is not None:
            return f"text of at most {self.maxLength} characters"
        return "text"


#: The first word of an encrypted (or redacted) secret.
ENCRYPTED = "ENC"


def checkNotEncrypted(words: Sequence[str]) -> None:
    """
    Refuse a secret written in FortiOS's encrypted form, C{ENC <data>}
    (or redacted by C{ztnagw config show}).

    @raise ValueProblem: it is.
    """
    if len(words) == 2 and words[0] == ENCRYPTED:
        raise ValueProblem(
            "is encrypted (ENC ...): a value encrypted by a FortiGate, or "
            "redacted by 'ztnagw config show', cannot be read; give it in clear"
        )


@implementer(IValueType)
@frozen
class Password:
    """
    A password, in clear.  FortiOS writes stored passwords encrypted
    (C{ENC ...}) with a key only FortiOS knows; ztnagw cannot read those.
    """

    quoted: ClassVar[bool] = True
    pythonType: ClassVar[str] = "str"

    def parse(self, words: Sequence[str], context: Context) -> str | None:
        checkNotEncrypted(words)
        word = _one(words)
        if word == "":
            return None
        return _plainText(word, "password")

    def render(self, value: str) -> tuple[str, ...]:
        return (value,)

    def describe(self) -> str:
        return "a password in clear"


_NAME_LIMIT = 79


def _checkName(word: str, noun: str) -> str:
    if word == "":
        raise ValueProblem(f"an empty {noun} name is not allowed")
    _plainText(word, "name")
    if len(word) > _NAME_LIMIT:
        raise ValueProblem(
            f"{shown(word)} is longer than {_NAME_LIMIT} characters"
        )
    return word


@implementer(IValueType)
@frozen
class Reference:
    """
    The name of another object.  The builder checks that it exists in one
    of C{targets}.

    @ivar targets: the L{Config} tables the name may come from.
    @ivar noun: what the name designates, for messages.
    @ivar builtinNames: names that need no definition (C{any}).
    """

    targets: tuple[str, ...]
    noun: str
    builtinNames: tuple[str, ...] = ()

    quoted: ClassVar[bool] = True
    pythonType: ClassVar[str] = "str"
    isList: ClassVar[bool] = False

    def parse(self, words: Sequence[str], context: Context) -> str | None:
        word = _one(words)
        if word == "":
            return None
        return _checkName(word, self.noun)

    def render(self, value: str) -> tuple[str, ...]:
        return (value,)

    def describe(self) -> str:
        return f"the name of {_article(self.noun)}"

    def names(self, value: str | None) -> tuple[str, ...]:
        """
        The names a value of this type refers to.
        """
        return () if value is None else (value,)


@implementer(IValueType)
@frozen
class ReferenceList:
    """
    One or more names of other objects, without repetition.
    """

    targets: tuple[str, ...]
    noun: str
    builtinNames: tuple[str, ...] = ()

    quoted: ClassVar[bool] = True
    pythonType: ClassVar[str] = "tuple[str, ...]"
    isList: ClassVar[bool] = True

    def parse(self, words: Sequence[str], context: Context) -> tuple[str, ...]:
        if list(words) == [""]:
            return ()
        names = tuple(_checkName(word, self.noun) for word in words)
        _noRepeats(names)
        return names

    def render(self, value: tuple[str, ...]) -> tuple[str, ...]:
        return value

    def describe(self) -> str:
        return f"one or more {self.noun} names"

    def names(self, value: tuple[str, ...]) -> tuple[str, ...]:
        """
        The names a value of this type refers to.
        """
        return value


def _article(noun: str) -> str:
    return ("an " if noun[:1] in "aeiouAEIOU" else "a ") + noun


def _noRepeats(values: Sequence[object]) -> None:
    seen: set[object] = set()
    for value in values:
        if value in seen:
            raise ValueProblem(f"lists {value} twice")
        seen.add(value)


@implementer(IValueType)
@frozen
class IPv4:
    """
    One IPv4 address, as C{ipaddress.IPv4Address}.
    """

    allowUnspecified: bool = True

    quoted: ClassVar[bool] = False
    pythonType: ClassVar[str] = "IPv4Address"

    def parse(self, words: Sequence[str], context: Context) -> ipaddress.IPv4Address:
        word = _one(words)
        address = _address(word)
        if not self.allowUnspecified and address == ipaddress.IPv4Address(0):
            raise ValueProblem("0.0.0.0 is not allowed; give a real address")
        return address

    def render(self, value: ipaddress.IPv4Address) -> tuple[str, ...]:
        return (str(value),)

    def describe(self) -> str:
        return "an IPv4 address (a.b.c.d)"


def _address(text: str) -> ipaddress.IPv4Address:
    # ipaddress refuses leading zeros, which some tools read as octal.
    if not re.fullmatch(r"[0-9.]{7,15}", text):
        raise ValueProblem(f"{_shownWord(text)} is not an IPv4 address (a.b.c.d)")
    try:
        return ipaddress.IPv4Address(text)
    except ValueError:
        raise ValueProblem(f"{_shownWord(text)} is not an IPv4 address (a.b.c.d)")


def _prefixOfMask(mask: ipaddress.IPv4Address) -> int:
    bits = int(mask)
    inverted = bits ^ 0xFFFFFFFF
    # A netmask is ones then zeros: its inverse plus one is a power of two.
    if inverted & (inverted + 1):
        raise ValueProblem(
            f"{mask} is not a netmask (ones followed by zeros, such as "
            "255.255.255.0)"
        )
    return 32 - inverted.bit_length()


def _addressAndPrefix(words: Sequence[str]) -> tuple[ipaddress.IPv4Address, int]:
    if len(words) == 2:
        return _address(words[0]), _prefixOfMask(_address(words[1]))
    word = _one(words)
    if "/" not in word:
        raise ValueProblem(
            f"{_shownWord(word)} has no mask; write a.b.c.d m.m.m.m or a.b.c.d/n"
        )
    text, _, mask = word.partition("/")
    address = _address(text)
    if re.fullmatch(r"[0-9]{1,2}", mask) and int(mask) <= 32:
        return address, int(mask)
    if re.fullmatch(r"[0-9.]{7,15}", mask):
        return address, _prefixOfMask(_address(mask))
    raise ValueProblem(f"/{_shownWord(mask)} is not a prefix length (0-32) or netmask")


@implementer(IValueType)
@frozen
class Subnet:
    """
    An IPv4 network, written C{a.b.c.d m.m.m.m} (as FortiOS prints it) or
    C{a.b.c.d/n}; as C{ipaddress.IPv4Network}.  Host bits must be zero.
    """

    quoted: ClassVar[bool] = False
    pythonType: ClassVar[str] = "IPv4Network"

    def parse(self, words: Sequence[str], context: Context) -> ipaddress.IPv4Network:
        address, prefix = _addressAndPrefix(words)
        network = ipaddress.IPv4Network((address, prefix), strict=False)
        if network.network_address != address:
            raise ValueProblem(
                f"{address}/{prefix} has host bits set (FortiOS: invalid "
                f"subnet); the network is {network.network_address} "
                f"{network.netmask}"
            )
        return network

    def render(self, value: ipaddress.IPv4Network) -> tuple[str, ...]:
        return (str(value.network_address), str(value.netmask))

    def describe(self) -> str:
        return "an IPv4 network (a.b.c.d m.m.m.m or a.b.c.d/n)"


@implementer(IValueType)
@frozen
class InterfaceAddress:
    """
    An interface's address and netmask, as C{ipaddress.IPv4Interface}.
    """

    quoted: ClassVar[bool] = False
    pythonType: ClassVar[str] = "IPv4Interface"

    def parse(self, words: Sequence[str], context: Context) -> ipaddress.IPv4Interface:
        address, prefix = _addressAndPrefix(words)
        return ipaddress.IPv4Interface((address, prefix))

    def render(self, value: ipaddress.IPv4Interface) -> tuple[str, ...]:
        return (str(value.ip), str(value.netmask))

    def describe(self) -> str:
        return "an IPv4 address and netmask (a.b.c.d m.m.m.m or a.b.c.d/n)"


_TIME = re.compile(r"([01]?[0-9]|2[0-3]):([0-5][0-9])")


def _time(text: str) -> datetime.time:
    match = _TIME.fullmatch(text)
    if match is None:
        raise ValueProblem(f"{_shownWord(text)} is not a time of day (hh:mm, 00:00-23:59)")
    return datetime.time(int(match.group(1)), int(match.group(2)))


@implementer(IValueType)
@frozen
class TimeOfDay:
    """
    C{hh:mm}, as C{datetime.time}.
    """

    quoted: ClassVar[bool] = False
    pythonType: ClassVar[str] = "datetime.time"

    def parse(self, words: Sequence[str], context: Context) -> datetime.time:
        return _time(_one(words))

    def render(self, value: datetime.time) -> tuple[str, ...]:
        return (f"{value.hour:02d}:{value.minute:02d}",)

    def describe(self) -> str:
        return "a time of day (hh:mm)"


@implementer(IValueType)
@frozen
class DateTime:
    """
    C{hh:mm yyyy/mm/dd} as FortiOS prints it (two words, or one quoted), as
    a naive C{datetime.datetime} in the gateway's local time.
    """

    quoted: ClassVar[bool] = False
    pythonType: ClassVar[str] = "datetime.datetime"

    def parse(self, words: Sequence[str], context: Context) -> datetime.datetime:
        if len(words) == 1:
            words = words[0].split()
        if len(words) != 2:
            raise ValueProblem("is not a date and time; write hh:mm yyyy/mm/dd")
        time = _time(words[0])
        match = re.fullmatch(r"([0-9]{4})/([0-9]{1,2})/([0-9]{1,2})", words[1])
        if match is None:
            raise ValueProblem(f"{_shownWord(words[1])} is not a date (yyyy/mm/dd)")
        try:
            date = datetime.date(*(int(part) for part in match.groups()))
        except ValueError:
            raise ValueProblem(f"{_shownWord(words[1])} is not a date of the calendar")
        return datetime.datetime.combine(date, time)

    def render(self, value: datetime.datetime) -> tuple[str, ...]:
        return (
            f"{value.hour:02d}:{value.minute:02d}",
            f"{value.year:04d}/{value.month:02d}/{value.day:02d}",
        )

    def describe(self) -> str:
        return "a date and time (hh:mm yyyy/mm/dd)"


#: The days of the week, in FortiOS's order and spelling.
DAYS = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")


@implementer(IValueType)
@frozen
class Days:
    """
    Days of the week (C{sunday} ... C{saturday}), or C{none}; as a tuple
    in the order of the week.
    """

    quoted: ClassVar[bool] = False
    pythonType: ClassVar[str] = "tuple[str, ...]"

    def parse(self, words: Sequence[str], context: Context) -> tuple[str, ...]:
        if list(words) == ["none"]:
            return ()
        for word in words:
            if word not in DAYS:
                extra = " (none stands alone)" if word == "none" else ""
                raise ValueProblem(
                    f"{_shownWord(word)} is not a day{extra}; use {self.describe()}"
                )
        _noRepeats(words)
        return tuple(day for day in DAYS if day in words)

    def render(self, value: tuple[str, ...]) -> tuple[str, ...]:
        return value if value else ("none",)

    def describe(self) -> str:
        return "days among " + " ".join(DAYS) + ", or none"


@implementer(IValueType)
@frozen
class Uuid:
    """
    An object's UUID, as C{uuid.UUID}.
    """

    quoted: ClassVar[bool] = False
    pythonType: ClassVar[str] = "uuid.UUID"

    def parse(self, words: Sequence[str], context: Context) -> uuid.UUID:
        word = _one(words)
        if not re.fullmatch(
            r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
            r"[0-9a-fA-F]{12}",
            word,
        ):
            raise ValueProblem(
                f"{_shownWord(word)} is not a UUID "
                "(xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)"
            )
        return uuid.UUID(word)

    def render(self, value: uuid.UUID) -> tuple[str, ...]:
        return (str(value),)

    def describe(self) -> str:
        return "a UUID"


@frozen
class PortRange:
    """
    A port, or an inclusive range of ports.
    """

    low: int
    high: int

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.low <= port <= self.high

    def __str__(self) -> str:
        return str(self.low) if self.low == self.high else f"{self.low}-{self.high}"


@implementer(IValueType)
@frozen
class PortRanges:
    """
    One or more ports or C{N-M} ranges, as a tuple of L{PortRange}.
    """

    quoted: ClassVar[bool] = False
    pythonType: ClassVar[str] = "tuple[PortRange, ...]"

    def parse(self, words: Sequence[str], context: Context) -> tuple[PortRange, ...]:
        ranges = []
        for word in words:
            match = re.fullmatch(r"([0-9]{1,5})(?:-([0-9]{1,5}))?", word)
            if match is None:
                raise ValueProblem(
                    f"{_shownWord(word)} is not a port or port range; use "
                    f"{self.describe()}"
                )
            low = int(match.group(1))
            high = int(match.group(2) or low)
            for port in (low, high):
                if not 1 <= port <= 65535:
                    raise ValueProblem(f"port {port} is out of range 1-65535")
            if high < low:
                raise ValueProblem(f"range {word} ends before it starts")
            ranges.append(PortRange(low, high))
        _noRepeats(ranges)
        return tuple(ranges)

    def render(self, value: tuple[PortRange, ...]) -> tuple[str, ...]:
        return tuple(str(r) for r in value)

    def describe(self) -> str:
        return "one or more ports (1-65535) or ranges N-M"


@frozen
class EmsTag:
    """
    A posture tag as policies name it: C{EMS<emsId>_ZTNA_<tag>}.

    @ivar emsId: the C{config endpoint-control fctems} entry.
    @ivar tag: the tag name given by that EMS.
    """

    emsId: int
    tag: str

    #: The tag every device registered with an EMS has.
    ALL_REGISTERED: ClassVar[str] = "all_registered_clients"

    def __str__(self) -> str:
        return f"EMS{self.emsId}_ZTNA_{self.tag}"


_VISIBLE = r"[^\s\x00-\x1f\x7f]"
_TAG = re.compile(rf"EMS([1-7])_ZTNA_({_VISIBLE}(?:[^\x00-\x1f\x7f]{{0,62}}{_VISIBLE})?)")


@implementer(IValueType)
@frozen
class EmsTags:
    """
    One or more tag names C{EMS<id>_ZTNA_<tag>}, as a tuple of L{EmsTag}.
    The builder checks that each C{<id>} is a configured EMS.
    """

    quoted: ClassVar[bool] = True
    pythonType: ClassVar[str] = "tuple[EmsTag, ...]"

    def parse(self, words: Sequence[str], context: Context) -> tuple[EmsTag, ...]:
        if list(words) == [""]:
            return ()
        tags = []
        for word in words:
            # EMS tag names may hold blanks; only control characters and
            # surrounding blanks are refused.
            match = _TAG.fullmatch(word)
            if match is None:
                raise ValueProblem(
                    f"{shown(word)} is not a ZTNA tag name; write "
                    "EMS<id>_ZTNA_<tag>, <id> being a fctems id (1-7)"
                )
            tags.append(EmsTag(int(match.group(1)), match.group(2)))
        _noRepeats(tags)
        return tuple(tags)

    def render(self, value: tuple[EmsTag, ...]) -> tuple[str, ...]:
        return tuple(str(tag) for tag in value)

    def describe(self) -> str:
        return "one or more tag names EMS<id>_ZTNA_<tag>"


@implementer(IValueType)
@frozen
class FilePath:
    """
    A file or directory name; a relative one is resolved against the
    configuration file's directory (C{relativeTo="config"}) or the state
    directory (C{relativeTo="state"}), and the model holds the absolute
    result.
    """

    relativeTo: str

    quoted: ClassVar[bool] = True
    pythonType: ClassVar[str] = "str"

    def parse(self, words: Sequence[str], context: Context) -> str | None:
        word = _one(words)
        if word == "":
            return None
        _plainText(word, "file name")
        base = context.configDirectory if self.relativeTo == "config" else context.stateDir
        return os.path.normpath(os.path.join(base, word))

    def render(self, value: str) -> tuple[str, ...]:
        return (value,)

    def describe(self) -> str:
        base = (
            "the configuration file's directory"
            if self.relativeTo == "config"
            else "the state directory"
        )
        return f"a path (relative to {base})"


_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
HOSTNAME = rf"{_LABEL}(?:\.{_LABEL})*\.?"


@implementer(IValueType)
@frozen
class HostName:
    """
    A DNS name (or, with C{allowAddress}, an IPv4 address), as C{str}.
    """

    allowAddress: bool = False
    wildcard: bool = False

    quoted: ClassVar[bool] = True
    pythonType: ClassVar[str] = "str"

    def parse(self, words: Sequence[str], context: Context) -> str | None:
        word = _one(words)
        if word == "":
            return None
        if self.allowAddress and re.fullmatch(r"[0-9.]+", word):
            return str(_address(word))
        pattern = HOSTNAME
        if self.wildcard:
            pattern = rf"(?:\*\.)?{HOSTNAME}"
        if len(word) > 253 or not re.fullmatch(pattern, word) or re.fullmatch(r"[0-9.]+", word):
            raise ValueProblem(f"{shown(word)} is not {self.describe()}")
        return word

    def render(self, value: str) -> tuple[str, ...]:
        return (value,)

    def describe(self) -> str:
        text = "a DNS name"
        if self.wildcard:
            text = "a DNS name, optionally starting with *."
        if self.allowAddress:
            text += " or an IPv4 address"
        return text


# ---------------------------------------------------------------- declarations


@frozen
class Condition:
    """
    When an option is meaningful (or required): another option of the
    same object (or, with C{parent}, of the enclosing object) has one of
    C{values}.

    @ivar parent: what the enclosing object is called (C{"api-gateway"}),
        when the option read is the enclosing object's.
    """

    option: str
    values: tuple[object, ...]
    parent: str | None = None

    def holds(self, values: Mapping[str, object]) -> bool:
        """
        Whether the condition holds for C{values}, keyed by CLI name.
        """
        return values.get(self.option) in self.values

    def subject(self) -> str:
        """
        The option read, named for a message (C{the api-gateway's service}).
        """
        if self.parent is None:
            return self.option
        return f"the {self.parent}'s {self.option}"

    def describe(self, valueType: Any) -> str:
        """
        The condition in words, values written as in the CLI.
        """
        written = [" ".join(valueType.render(v)) for v in self.values]
        return f"{self.subject()} is {_listing(written)}"


@frozen
class Option:
    """
    The declaration of one CLI option.

    @ivar cliName: its name in the CLI (C{ssl-certificate}).
    @ivar valueType: how its words become a value and back.
    @ivar default: the value when not set; C{None} for no value.
    @ivar required: whether a value must be given.
    @ivar requiredWhen: required only when this holds.
    @ivar when: meaningful only when this holds; setting it otherwise is
        an error.
    @ivar origin: L{FORTIOS} or L{EXTENSION}.
    @ivar help: one sentence for the reference documentation.
    @ivar defaultHelp: what no value means, when it means something other
        than nothing (inherited settings).
    @ivar missingHint: what the error for a missing required value adds.
    @ivar refused: when set, giving the option a value is an error with this
        message (FortiOS options ztnagw parses but does not implement yet).
    @ivar secret: the value is a private key or password: C{show} can
        leave it out, and FortiOS's encrypted form (C{ENC ...}) is refused
        with an explanation.
    @ivar attribute: the Python attribute, filled in by L{optionsOf}.
    """

    cliName: str
    valueType: Any
    default: object = None
    required: bool = False
    requiredWhen: Condition | None = None
    when: Condition | None = None
    origin: str = FORTIOS
    help: str = ""
    defaultHelp: str | None = None
    missingHint: str | None = None
    refused: str | None = None
    secret: bool = False
    attribute: str = ""

    def renderDefault(self) -> str | None:
        """
        The default as written in the CLI, or C{None} for no value.
        """
        if self.default is None:
            return None
        return " ".join(self.valueType.render(self.default))


@frozen
class Key:
    """
    The declaration of a table's key: a name (C{edit "ZTNA-WS1"}) or a
    numeric id (C{edit 9}).
    """

    numeric: bool
    minimum: int = 1
    maximum: int = 4294967295
    attribute: str = ""

    def parse(self, text: str) -> str | int:
        """
        The key of an C{edit}.

        @raise ValueProblem: not a valid key.
        """
        if not self.numeric:
            return _checkName(text, "entry")
        if not re.fullmatch(r"[0-9]{1,10}", text):
            raise ValueProblem(
                f"{shown(text)} is not an entry number; use an integer from "
                f"{self.minimum} to {self.maximum}"
            )
        value = int(text)
        if not self.minimum <= value <= self.maximum:
            hint = ""
            if value == 0:
                hint = " (FortiOS's 'edit 0' picks a free number interactively; a file names it)"
            raise ValueProblem(
                f"{value} is out of range; use an integer from {self.minimum} "
                f"to {self.maximum}{hint}"
            )
        return value

    def render(self, value: str | int) -> Word:
        """
        The key as an C{edit} writes it (names quoted, as FortiOS does).
        """
        if self.numeric:
            return Word(str(value))
        return Word(str(value), quoted=True)


@frozen
class Table:
    """
    The declaration of a table (C{config firewall vip}, or nested
    C{config api-gateway}) or of a singleton (C{config system global}).

    @ivar path: the words after C{config}.
    @ivar objectClass: the class of its entries.
    @ivar singleton: whether it holds options directly instead of entries.
    @ivar attribute: the Python attribute, filled in by L{tablesOf}.
    """

    path: tuple[str, ...]
    objectClass: type
    singleton: bool = False
    attribute: str = ""

    @property
    def title(self) -> str:
        """
        The path as one string, C{firewall vip}.
        """
        return " ".join(self.path)


def option(
    cliName: str,
    valueType: Any,
    *,
    default: object = None,
    required: bool = False,
    requiredWhen: Condition | None = None,
    when: Condition | None = None,
    origin: str = FORTIOS,
    help: str = "",
    defaultHelp: str | None = None,
    missingHint: str | None = None,
    refused: str | None = None,
    secret: bool = False,
) -> Any:
    """
    Declare an attrs field that is a CLI option (see L{Option}).
    """
    declaration = Option(
        cliName=cliName,
        valueType=valueType,
        default=default,
        required=required,
        requiredWhen=requiredWhen,
        when=when,
        origin=origin,
        help=help,
        defaultHelp=defaultHelp,
        missingHint=missingHint,
        refused=refused,
        secret=secret,
    )
    return field(default=default, metadata={_SCHEMA: declaration})


def nameKey() -> Any:
    """
    Declare the attrs field holding an entry's name.
    """
    return field(metadata={_SCHEMA: Key(numeric=False)})


def idKey(minimum: int = 1, maximum: int = 4294967295) -> Any:
    """
    Declare the attrs field holding an entry's numeric id.
    """
    return field(metadata={_SCHEMA: Key(numeric=True, minimum=minimum, maximum=maximum)})


def table(
    path: tuple[str, ...] | str,
    objectClass: type,
    builtins: Callable[[], FrozenMap[Any, Any]] | None = None,
) -> Any:
    """
    Declare an attrs field holding a table of C{objectClass} entries (a
    L{FrozenMap} in configuration order).

    @param builtins: makes the table's built-in entries, which every value
        of the field gets (first) unless it defines an entry of the same
        key.
    """
    if isinstance(path, str):
        path = (path,)
    if builtins is None:
        return field(
            factory=FrozenMap,
            converter=FrozenMap,
            metadata={_SCHEMA: Table(path=path, objectClass=objectClass)},
        )
    made = builtins

    def withBuiltins(entries: Mapping[Any, Any] = FrozenMap()) -> FrozenMap[Any, Any]:
        """
        C{entries} after the built-in entries they do not redefine.
        """
        merged = {k: v for k, v in made().items() if k not in entries}
        merged.update(entries)
        return FrozenMap(merged)

    return field(
        factory=withBuiltins,
        converter=withBuiltins,
        metadata={_SCHEMA: Table(path=path, objectClass=objectClass)},
    )


def singleton(path: tuple[str, ...], objectClass: type) -> Any:
    """
    Declare an attrs field holding a singleton object (C{config system
    global}).
    """
    return field(
        factory=objectClass,
        metadata={_SCHEMA: Table(path=path, objectClass=objectClass, singleton=True)},
    )


_declarations: dict[type, tuple[tuple[Option, ...], tuple[Table, ...], Key | None]] = {}


def _declared(cls: type) -> tuple[tuple[Option, ...], tuple[Table, ...], Key | None]:
    cached = _declarations.get(cls)
    if cached is not None:
        return cached
    options: list[Option] = []
    tables: list[Table] = []
    key: Key | None = None
    for attribute in attrs.fields(cls):
        declaration = attribute.metadata.get(_SCHEMA)
        if isinstance(declaration, Option):
            options.append(attrs.evolve(declaration, attribute=attribute.name))
        elif isinstance(declaration, Table):
            tables.append(attrs.evolve(declaration, attribute=attribute.name))
        elif isinstance(declaration, Key):
            key = attrs.evolve(declaration, attribute=attribute.name)
    result = (tuple(options), tuple(tables), key)
    _declarations[cls] = result
    return result


def optionsOf(cls: type) -> tuple[Option, ...]:
    """
    The options declared on a model class, in declaration order (which is
    the order C{show} prints them in).
    """
    return _declared(cls)[0]


def tablesOf(cls: type) -> tuple[Table, ...]:
    """
    The tables (and singletons) declared on a model class.
    """
    return _declared(cls)[1]


def valuesOf(obj: object) -> dict[str, object]:
    """
    The option values of a model object, keyed by CLI name (what
    L{Condition.holds} reads).
    """
    return {o.cliName: getattr(obj, o.attribute) for o in optionsOf(type(obj))}


def keyOf(cls: type) -> Key | None:
    """
    The key declared on a model class, or C{None} for a singleton.
    """
    return _declared(cls)[2]


@frozen(kw_only=True)
class ConfigObject:
    """
    What every object of the model has besides its options: where it was
    defined and which options were set explicitly.  None of this takes part
    in equality: two objects saying the same thing are equal wherever they
    were written.

    @ivar explicit: the CLI names of the options set explicitly (C{show}
        prints only those by default), or C{None} for an object made in
        Python, whose options count as explicit when they differ from
        their default.
    @ivar location: where its C{edit} (or C{config}) starts.
    @ivar optionLocations: where each explicit option was set.
    @ivar builtin: whether the object exists without definition (the
        C{all} address, the C{always} schedule); C{show} omits it.
    """

    explicit: frozenset[str] | None = field(default=None, eq=False, repr=False)
    location: Location | None = field(default=None, eq=False, repr=False)
    optionLocations: FrozenMap[str, Location] = field(
        factory=FrozenMap, eq=False, repr=False
    )
    builtin: bool = field(default=False, eq=False, repr=False)

    def isExplicit(self, cliName: str) -> bool:
        """
        Whether option C{cliName} was set explicitly.
        """
        if self.explicit is not None:
            return cliName in self.explicit
        for declared in optionsOf(type(self)):
            if declared.cliName == cliName:
                return getattr(self, declared.attribute) != declared.default
        return False

    def whereSet(self, cliName: str) -> Location | None:
        """
        Where option C{cliName} was set, else where the object starts.
        """
        return self.optionLocations.get(cliName, self.location)
