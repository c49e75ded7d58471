# -*- test-case-name: tests.ems.test_tagging -*-
"""
Rule tags: the posture tags a device has because of what it reported.

FortiClient EMS tags endpoints with "Zero Trust tagging rules" (OS, user,
on-net, file present, vulnerabilities...); a FortiGate sees the result as
C{EMS<id>_ZTNA_<tag>} and policies match it.  ztnagw's EMS does the same
with the tagging rules of each C{config endpoint-control fctems} entry
(C{config tagging-rule}) and the facts its agent reports (telemetry).

Rule tags are I{derived}, never stored: L{ruleTags} is a pure function of
the rules and the endpoint record, evaluated by the access decision for
every request, so that a rule change (configuration) or a new report
(telemetry) changes the decision at once, and a device can never keep a tag
its facts no longer earn.  Manual tags (C{ztnagw endpoint tag}) and token
tags are stored on the record and added by the caller
(L{ztnagw.access.deviceTags}).

Evaluation never fails: a comparison with a fact that is missing or
malformed is false (see L{ztnagw.ems.conditions}; C{negate} inverts it),
and a rule without conditions tags no device.
"""

from __future__ import annotations

from typing import Iterable, Mapping

from ztnagw.config.model import TaggingCondition, TaggingRule
from ztnagw.ems.conditions import (
    TEXT_OPERATORS,
    globMatches,
    osFamily,
    textMatches,
    versionMatches,
)
from ztnagw.registry.record import EndpointRecord

__all__ = ["conditionHolds", "ruleMatches", "ruleTags"]


def conditionHolds(condition: TaggingCondition, record: EndpointRecord) -> bool:
    """
    Whether one condition holds for the device C{record} describes: the
    comparison its type and options describe, inverted by C{negate}.
    """
    return _compares(condition, record) != condition.negate


def _compares(condition: TaggingCondition, record: EndpointRecord) -> bool:
    # A condition missing the option its type needs (possible only for a
    # model built in Python) compares false.
    kind = condition.type
    if kind == "os":
        family = osFamily(record.osType)
        return family is not None and family == condition.os
    if kind in ("os-version", "client-version"):
        reported = record.osVersion if kind == "os-version" else record.clientVersion
        return condition.version is not None and versionMatches(
            condition.versionOperator, reported, condition.version
        )
    if kind in ("user", "host-name"):
        if condition.pattern is None:
            return False
        if kind == "user":
            return globMatches(condition.pattern, record.user)
        return globMatches(condition.pattern, record.hostName, caseSensitive=False)
    if kind == "on-net":
        return condition.onNet is not None and record.onNet == condition.onNet
    if kind == "fact":
        return _factCompares(condition, record.facts)
    return False


def _factCompares(condition: TaggingCondition, facts: Mapping[str, str]) -> bool:
    if condition.fact is None:
        return False
    reported = facts.get(condition.fact)
    operator = condition.factOperator
    if operator == "exists":
        return reported is not None
    if operator == "absent":
        return reported is None
    if operator in TEXT_OPERATORS:
        return condition.factValue is not None and textMatches(
            operator, reported, condition.factValue
        )
    return condition.factVersion is not None and versionMatches(
        operator, reported, condition.factVersion
    )


def ruleMatches(rule: TaggingRule, record: EndpointRecord) -> bool:
    """
    Whether C{rule} tags the device C{record} describes: the rule is
    enabled, has conditions, and all of them (C{match-logic and}) or one of
    them (C{or}) hold.
    """
    if not rule.status or not rule.conditions:
        return False
    results = (conditionHolds(c, record) for c in rule.conditions.values())
    if rule.matchLogic == "or":
        return any(results)
    return all(results)


def ruleTags(
    rules: Mapping[str, TaggingRule] | Iterable[TaggingRule],
    record: EndpointRecord | None,
) -> frozenset[str]:
    """
    The tags tagging rules give a device.

    @param rules: the tagging rules of the EMS that registered the device
        (C{config.emsConnectors[emsId].taggingRules}, or its values).
    @param record: the device's endpoint record; C{None} (no record) gets no
        tags.
    @return: the tag names (without the C{EMS<id>_ZTNA_} prefix).
    """
    if record is None:
        return frozenset()
    values = rules.values() if isinstance(rules, Mapping) else rules
    return frozenset(
        rule.tag
        for rule in values
        if rule.tag is not None and ruleMatches(rule, record)
    )
