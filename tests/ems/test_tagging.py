"""
Tests for L{ztnagw.ems.tagging} and the C{config tagging-rule} objects it
evaluates.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from ztnagw.config import ConfigurationRejected, loads
from ztnagw.config.model import TaggingCondition, TaggingRule
from ztnagw.config.schema import FrozenMap
from ztnagw.ems.conditions import OS_FAMILIES, VERSION_OPERATORS
from ztnagw.ems.tagging import conditionHolds, ruleMatches, ruleTags
from ztnagw.registry.record import EndpointRecord

_UID = "9A016B5A6E914B42AD4168C066EB04CA"


def _config(rules: str) -> str:
    return f"""
config endpoint-control fctems
    edit 1
        set status enable
        set server "127.0.0.1"
        set serial-number "FCTEMS0000000001"
        config tagging-rule
{rules}
        end
    next
end
"""


def _rules(text: str) -> FrozenMap[str, TaggingRule]:
    return loads(_config(text)).emsConnectors[1].taggingRules


def _record(**kwargs: object) -> EndpointRecord:
    return EndpointRecord(uid=_UID, certSerial="01", **kwargs)  # type: ignore[arg-type]


_LINUX_PATCHED = """
            edit "linux-patched"
                set tag "Linux-Patched"
                config rules
                    edit 1
                        set type os
                        set os linux
                    next
                    edit 2
                        set type os-version
                        set version-operator ge
                        set version "22.04"
                    next
                end
            next
"""


class ConfigurationTests(SynchronousTestCase):
    """
    Tagging rules are written in the CLI syntax and checked when the
    configuration loads.
    """

    def test_loaded(self) -> None:
        """
        A rule and its conditions load into the model, defaults filled in.
        """
        rules = _rules(_LINUX_PATCHED)
        rule = rules["linux-patched"]
        self.assertEqual(rule.tag, "Linux-Patched")
        self.assertEqual(rule.matchLogic, "and")
        self.assertTrue(rule.status)
        self.assertEqual(rule.conditions[1].os, "linux")
        self.assertEqual(rule.conditions[2].version, "22.04")
        self.assertEqual(rule.conditions[2].versionOperator, "ge")

    def _errors(self, text: str) -> str:
        error = self.assertRaises(ConfigurationRejected, loads, _config(text))
        return "\n".join(str(e) for e in error.errors)

    def test_showRoundTrip(self) -> None:
        """
        C{config show} writes tagging rules back in a form that loads to the
        same configuration.
        """
        from ztnagw.config.printer import show

        config = loads(_config(_LINUX_PATCHED + """
            edit "facts"
                set tag "F"
                set match-logic or
                config rules
                    edit 1
                        set type fact
                        set fact "av.age"
                        set fact-operator le
                        set fact-version "3"
                        set negate enable
                    next
                    edit 2
                        set type host-name
                        set pattern "*.corp example"
                    next
                end
            next
"""))
        self.assertEqual(loads(show(config)), config)

    def test_optionOfAnotherType(self) -> None:
        """
        An option that does not belong to the condition's type is refused,
        and the type's own option is required.
        """
        errors = self._errors(
            """
            edit "r"
                set tag "t"
                config rules
                    edit 1
                        set type user
                        set version "1.0"
                    next
                end
            next
"""
        )
        self.assertIn("version applies only when type is os-version or client-version", errors)
        self.assertIn("pattern is required when type is user or host-name", errors)

    def test_factOperands(self) -> None:
        """
        A fact compared as text needs fact-value, as a version
        fact-version (a version), and exists takes neither.
        """
        errors = self._errors(
            """
            edit "r"
                set tag "t"
                config rules
                    edit 1
                        set type fact
                        set fact "av.age"
                        set fact-operator le
                        set fact-version "three"
                    next
                    edit 2
                        set type fact
                        set fact "edr"
                        set fact-value "x"
                    next
                    edit 3
                        set type fact
                        set fact "bad name"
                    next
                end
            next
"""
        )
        self.assertIn('fact-version: "three" is not dot-separated numbers', errors)
        self.assertIn("fact-value applies only when fact-operator is eq, ne or glob", errors)
        self.assertIn('fact: "bad name" is not a fact name', errors)

    def test_tagName(self) -> None:
        """
        The tag must be a valid tag name, and not the built-in one.
        """
        errors = self._errors(
            """
            edit "a"
                set tag "has space"
            next
            edit "b"
                set tag "all_registered_clients"
            next
            edit "c"
            next
"""
        )
        self.assertIn("not a valid tag name", errors)
        self.assertIn("is built in", errors)
        self.assertIn("tag is required", errors)


class RuleTagsTests(SynchronousTestCase):
    """
    L{ruleTags} gives the tags whose rules the record's facts meet.
    """

    def test_allConditions(self) -> None:
        """
        With match-logic and, every condition must hold.
        """
        rules = _rules(_LINUX_PATCHED)
        self.assertEqual(
            ruleTags(rules, _record(osType="Linux", osVersion="24.04")),
            {"Linux-Patched"},
        )
        self.assertEqual(ruleTags(rules, _record(osType="Linux", osVersion="20.04")), set())
        self.assertEqual(ruleTags(rules, _record(osType="Windows", osVersion="24.04")), set())
        self.assertEqual(ruleTags(rules, _record(osType="Linux")), set())

    def test_anyCondition(self) -> None:
        """
        With match-logic or, one condition is enough.
        """
        rules = _rules(
            """
            edit "trusted"
                set tag "Trusted"
                set match-logic or
                config rules
                    edit 1
                        set type on-net
                        set on-net enable
                    next
                    edit 2
                        set type host-name
                        set pattern "*.CORP.example"
                    next
                end
            next
"""
        )
        self.assertEqual(ruleTags(rules, _record(onNet=True)), {"Trusted"})
        self.assertEqual(ruleTags(rules, _record(hostName="pc1.corp.EXAMPLE")), {"Trusted"})
        self.assertEqual(ruleTags(rules, _record(hostName="pc1.home")), set())

    def test_facts(self) -> None:
        """
        Facts are compared as text, as versions, or for presence.
        """
        rules = _rules(
            """
            edit "encrypted"
                set tag "Encrypted"
                config rules
                    edit 1
                        set type fact
                        set fact "disk.root-encrypted"
                        set fact-operator eq
                        set fact-value "true"
                    next
                end
            next
            edit "fresh-av"
                set tag "Fresh-AV"
                config rules
                    edit 1
                        set type fact
                        set fact "av.signature-age-days"
                        set fact-operator le
                        set fact-version "3"
                    next
                end
            next
            edit "edr"
                set tag "EDR"
                config rules
                    edit 1
                        set type fact
                        set fact "edr.agent"
                    next
                end
            next
            edit "no-edr"
                set tag "No-EDR"
                config rules
                    edit 1
                        set type fact
                        set fact "edr.agent"
                        set fact-operator absent
                    next
                end
            next
"""
        )
        record = _record(
            facts={"disk.root-encrypted": "true", "av.signature-age-days": "12"}
        )
        self.assertEqual(ruleTags(rules, record), {"Encrypted", "No-EDR"})
        record = _record(facts={"av.signature-age-days": "2", "edr.agent": "falcon"})
        self.assertEqual(ruleTags(rules, record), {"Fresh-AV", "EDR"})

    def test_userAndClient(self) -> None:
        """
        User patterns are case-sensitive; client versions compare as
        versions.
        """
        rules = _rules(
            """
            edit "ops"
                set tag "Ops"
                config rules
                    edit 1
                        set type user
                        set pattern "ops-*"
                    next
                    edit 2
                        set type client-version
                        set version-operator gt
                        set version "0.9"
                    next
                end
            next
"""
        )
        self.assertEqual(ruleTags(rules, _record(user="ops-bob", clientVersion="0.10.0")), {"Ops"})
        self.assertEqual(ruleTags(rules, _record(user="OPS-bob", clientVersion="1.0")), set())
        self.assertEqual(ruleTags(rules, _record(user="ops-bob", clientVersion="0.9")), set())

    def test_negate(self) -> None:
        """
        A negated condition holds when the comparison does not, including
        for a device that did not report the fact.
        """
        rules = _rules(
            """
            edit "outdated"
                set tag "Outdated"
                config rules
                    edit 1
                        set type os-version
                        set version "10.0.19045"
                        set negate enable
                    next
                end
            next
"""
        )
        self.assertEqual(ruleTags(rules, _record(osVersion="10.0.17763")), {"Outdated"})
        self.assertEqual(ruleTags(rules, _record()), {"Outdated"})
        self.assertEqual(ruleTags(rules, _record(osVersion="10.0.22631")), set())

    def test_disabledOrEmpty(self) -> None:
        """
        A disabled rule, and a rule without conditions, tag no device.
        """
        rules = _rules(
            """
            edit "off"
                set tag "Off"
                set status disable
                config rules
                    edit 1
                        set type on-net
                        set on-net disable
                    next
                end
            next
            edit "empty"
                set tag "Empty"
            next
"""
        )
        self.assertEqual(ruleTags(rules, _record()), set())

    def test_noRecord(self) -> None:
        """
        No record, no tags.
        """
        self.assertEqual(ruleTags(_rules(_LINUX_PATCHED), None), set())


# Hypothesis: conditions of every type, rules made of them, and records with
# arbitrary reported facts.

_FACT_NAMES = st.sampled_from(["a", "b.c", "disk.root-encrypted"])
_VERSION = st.lists(st.integers(0, 30), min_size=1, max_size=4).map(
    lambda n: ".".join(map(str, n))
)
_REPORTED = st.one_of(st.none(), _VERSION, st.text(max_size=12))


@st.composite
def conditions(draw: st.DrawFn) -> TaggingCondition:
    """
    A valid condition of any type.
    """
    kind = draw(st.sampled_from(["os", "os-version", "client-version", "user", "host-name", "on-net", "fact"]))
    values: dict[str, object] = {"id": draw(st.integers(1, 100)), "type": kind}
    values["negate"] = draw(st.booleans())
    if kind == "os":
        values["os"] = draw(st.sampled_from(OS_FAMILIES))
    elif kind in ("os-version", "client-version"):
        values["versionOperator"] = draw(st.sampled_from(list(VERSION_OPERATORS)))
        values["version"] = draw(_VERSION)
    elif kind in ("user", "host-name"):
        values["pattern"] = draw(st.sampled_from(["*", "a*", "?", "ab", "A*", "[ab]*"]))
    elif kind == "on-net":
        values["onNet"] = draw(st.booleans())
    else:
        values["fact"] = draw(_FACT_NAMES)
        operator = draw(st.sampled_from(["exists", "absent", "eq", "ne", "glob", "lt", "le", "gt", "ge"]))
        values["factOperator"] = operator
        if operator in ("eq", "ne", "glob"):
            values["factValue"] = draw(st.sampled_from(["true", "*", "1", ""]))
        elif operator not in ("exists", "absent"):
            values["factVersion"] = draw(_VERSION)
    return TaggingCondition(**values)  # type: ignore[arg-type]


@st.composite
def rules(draw: st.DrawFn, name: str) -> TaggingRule:
    """
    A rule with up to four conditions.
    """
    found = draw(st.lists(conditions(), max_size=4, unique_by=lambda c: c.id))
    return TaggingRule(
        name=name,
        tag=draw(st.sampled_from(["T1", "T2", "T3"])),
        status=draw(st.booleans()),
        matchLogic=draw(st.sampled_from(["and", "or"])),
        conditions=FrozenMap({c.id: c for c in found}),
    )


ruleSets = st.lists(st.sampled_from(["r1", "r2", "r3", "r4"]), unique=True, max_size=4).flatmap(
    lambda names: st.tuples(*(rules(name) for name in names))
)

records = st.builds(
    lambda osType, osVersion, clientVersion, user, hostName, onNet, facts: _record(
        osType=osType,
        osVersion=osVersion,
        clientVersion=clientVersion,
        user=user,
        hostName=hostName,
        onNet=onNet,
        facts=facts,
    ),
    st.one_of(st.none(), st.sampled_from(["Linux", "macOS", "Windows 11", "Android"]), st.text(max_size=10)),
    _REPORTED,
    _REPORTED,
    st.one_of(st.none(), st.text(max_size=6)),
    st.one_of(st.none(), st.text(max_size=6)),
    st.booleans(),
    st.dictionaries(_FACT_NAMES, _REPORTED.filter(lambda v: v is not None), max_size=3),  # type: ignore[arg-type]
)


class RuleTagsPropertyTests(SynchronousTestCase):
    """
    Properties of rule tags over any rules and any reported facts.
    """

    @given(ruleSets, records)
    def test_definition(self, ruleSet: tuple[TaggingRule, ...], record: EndpointRecord) -> None:
        """
        A tag is given exactly when an enabled rule with conditions for it
        has all (and) or any (or) of its conditions holding.
        """
        expected = set()
        for rule in ruleSet:
            results = [conditionHolds(c, record) for c in rule.conditions.values()]
            if not rule.status or not results:
                continue
            if (all(results) if rule.matchLogic == "and" else any(results)):
                expected.add(rule.tag)
        self.assertEqual(ruleTags(ruleSet, record), expected)
        self.assertEqual(
            ruleTags({r.name: r for r in ruleSet}, record), ruleTags(ruleSet, record)
        )

    @given(conditions(), records)
    def test_negation(self, condition: TaggingCondition, record: EndpointRecord) -> None:
        """
        Negating a condition inverts it, whatever the device reported.
        """
        import attrs

        flipped = attrs.evolve(condition, negate=not condition.negate)
        self.assertEqual(conditionHolds(flipped, record), not conditionHolds(condition, record))

    @given(ruleSets, ruleSets, records)
    def test_union(
        self, first: tuple[TaggingRule, ...], second: tuple[TaggingRule, ...], record: EndpointRecord
    ) -> None:
        """
        Rules add tags independently: more rules never take a tag away.
        """
        self.assertEqual(
            ruleTags(first + second, record), ruleTags(first, record) | ruleTags(second, record)
        )

    @given(ruleSets, records)
    def test_onlyRuleTags(self, ruleSet: tuple[TaggingRule, ...], record: EndpointRecord) -> None:
        """
        Only tags of enabled rules with conditions appear.
        """
        allowed = {r.tag for r in ruleSet if r.status and r.conditions}
        self.assertTrue(ruleTags(ruleSet, record) <= allowed)
        for rule in ruleSet:
            if not rule.status or not rule.conditions:
                self.assertFalse(ruleMatches(rule, record))
