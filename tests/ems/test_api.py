"""
Tests for L{ztnagw.ems.api}: strict JSON and device reports.
"""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from ztnagw.ems.api import (
    MAX_DEPTH,
    ApiError,
    DeviceReport,
    JsonErrorPages,
    errorBody,
    parseDeviceReport,
    parseJsonObject,
)


class JsonTests(SynchronousTestCase):
    """
    Request bodies are one JSON object, strictly.
    """

    def test_object(self) -> None:
        """
        An object is read.
        """
        self.assertEqual(parseJsonObject(b'{"a": [1, {"b": true}]}'), {"a": [1, {"b": True}]})

    def refused(self, data: bytes) -> str:
        error = self.assertRaises(ApiError, parseJsonObject, data)
        self.assertEqual((error.status, error.code), (400, "bad-request"))
        return error.message

    def test_refused(self) -> None:
        """
        Not UTF-8, not JSON, not an object, a key twice, NaN or infinite
        numbers: each is a 400 with a message.
        """
        self.assertIn("UTF-8", self.refused(b'{"a": "\xff"}'))
        self.assertIn("not valid JSON", self.refused(b"{"))
        self.assertIn("must be a JSON object", self.refused(b"[1]"))
        self.assertIn("twice", self.refused(b'{"a": 1, "a": 2}'))
        self.assertIn("NaN", self.refused(b'{"a": NaN}'))
        self.refused(b'{"a": 1e999}')
        self.refused(b'{"a": -Infinity}')
        self.refused(b"")

    def test_depth(self) -> None:
        """
        Nesting deeper than the limit is refused before parsing; brackets
        inside strings do not count.
        """
        deep = b'{"a":' * (MAX_DEPTH + 1) + b"1" + b"}" * (MAX_DEPTH + 1)
        self.assertIn("nested", self.refused(deep))
        self.refused(b"[" * 100000)
        fine = {"a": "[[[[[[[[{{{{{{{{\\\"[[[["}
        self.assertEqual(parseJsonObject(json.dumps(fine).encode()), fine)

    @given(st.binary(max_size=200))
    def test_anyBytes(self, data: bytes) -> None:
        """
        Any bytes are an object or an L{ApiError}.
        """
        try:
            value = parseJsonObject(data)
        except ApiError as e:
            self.assertEqual(e.status, 400)
        else:
            self.assertIsInstance(value, dict)

    @given(
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=5),
            lambda children: st.lists(children, max_size=3)
            | st.dictionaries(st.text(max_size=5), children, max_size=3),
            max_leaves=10,
        )
    )
    def test_anyJson(self, value: object) -> None:
        """
        Any JSON value within the depth limit reads back equal when it is
        an object, and is refused otherwise.
        """
        data = json.dumps(value).encode()
        try:
            parsed = parseJsonObject(data)
        except ApiError:
            return
        self.assertEqual(parsed, value)

    def test_errorPages(self) -> None:
        """
        The HTTP layer's own errors are JSON with a code.
        """
        contentType, body = JsonErrorPages().renderError(413, b"Content Too Large", "too big")
        self.assertEqual(contentType, b"application/json")
        self.assertEqual(json.loads(body), {"error": {"code": "body-too-large", "message": "too big"}})
        self.assertEqual(
            json.loads(errorBody("device-refused", "no", "063")),
            {"error": {"code": "device-refused", "message": "no", "ztnaCode": "063"}},
        )


class DeviceReportTests(SynchronousTestCase):
    """
    Device reports are checked field by field.
    """

    def test_full(self) -> None:
        """
        Every field is read; addresses are normalised; facts become text.
        """
        report = parseDeviceReport(
            {
                "hostName": "pc1",
                "osType": "Linux",
                "osVersion": "12",
                "clientVersion": "0.1.0",
                "user": "alice",
                "ips": ["192.0.2.7", "2001:DB8::1", "192.0.2.7"],
                "macs": ["AA-BB-CC-DD-EE-FF", "aa:bb:cc:dd:ee:ff"],
                "facts": {"disk.root-encrypted": True, "av.age": 3, "edr": "falcon"},
            }
        )
        self.assertEqual(report.ips, ("192.0.2.7", "2001:db8::1"))
        self.assertEqual(report.macs, ("aa:bb:cc:dd:ee:ff",))
        self.assertEqual(report.facts, {"disk.root-encrypted": "true", "av.age": "3", "edr": "falcon"})
        self.assertEqual(parseDeviceReport(report.toJson()), report)

    def test_empty(self) -> None:
        """
        Every field is optional.
        """
        self.assertEqual(parseDeviceReport({}), DeviceReport())

    def test_refused(self) -> None:
        """
        Unknown fields, wrong types, control characters, bad addresses and
        too many items are 400s naming the field.
        """
        cases = [
            ({"hostname": "x"}, "unknown field 'hostname'"),
            ({"hostName": 5}, "'hostName' must be text"),
            ({"user": "a\nb"}, "control characters"),
            ({"osType": "x" * 65}, "longer than 64"),
            ({"ips": ["300.1.1.1"]}, "not an IP address"),
            ({"ips": "192.0.2.1"}, "must be a list"),
            ({"ips": ["192.0.2.1"] * 33}, "more than 32"),
            ({"macs": ["aa:bb"]}, "not a MAC address"),
            ({"facts": []}, "must be an object"),
            ({"facts": {"bad name": "x"}}, "not a fact name"),
            ({"facts": {"a": 1.5}}, "must be text"),
            ({"facts": {"a": "x" * 256}}, "at most 255"),
            ({"facts": {f"f{i}": "x" for i in range(65)}}, "more than 64"),
        ]
        for value, expected in cases:
            error = self.assertRaises(ApiError, parseDeviceReport, value)
            self.assertIn(expected, error.message)
            self.assertEqual(error.code, "bad-request")
        self.assertRaises(ApiError, parseDeviceReport, [])

    @given(
        st.dictionaries(
            st.sampled_from(["hostName", "osType", "ips", "macs", "facts", "user", "x"]),
            st.none() | st.text(max_size=10) | st.integers() | st.lists(st.text(max_size=20), max_size=3)
            | st.dictionaries(st.text(max_size=8), st.text(max_size=8) | st.integers(), max_size=3),
            max_size=5,
        )
    )
    def test_anyObject(self, value: dict) -> None:
        """
        Any object is a report or an L{ApiError}, never another exception.
        """
        try:
            parseDeviceReport(value)
        except ApiError as e:
            self.assertEqual(e.status, 400)
