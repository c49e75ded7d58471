"""
Tests for L{ztnagw.blockpage}: block pages, gateway error pages and the
choice of representation.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from html.parser import HTMLParser

from hypothesis import given, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from ztnagw import errors
from ztnagw.blockpage import (
    GATEWAY_ERRORS,
    HTML,
    JSON,
    MEDIA_TYPES,
    TEXT,
    BlockFacts,
    chooseMediaType,
    renderBlockPage,
    renderErrorPage,
    subtitleFor,
)

#: A request time: 2025-01-10 12:00:01 UTC.
WHEN = 1736510401.75

#: A device certificate serial as FortiOS prints it.
SERIAL = "2B8D4FF0E71FE7E064288FE1B4F87E25232092D0"

ACCEPT = {HTML: None, JSON: b"application/json", TEXT: b"text/plain"}

anyText = st.text(alphabet=st.characters(codec=None, exclude_categories=()))
hostileText = st.one_of(
    anyText,
    st.binary(),
    st.text(alphabet="<>\"&'\r\n\x00\u202e\U0001f600", min_size=1000),
)


def fullFacts(**changes: object) -> BlockFacts:
    """
    Facts with every field known, with C{changes}.
    """
    values: dict[str, object] = dict(
        error=errors.CERTIFICATE_REVOKED,
        requestTime=WHEN,
        uid="9A016B5A6E914B42AD4168C066EB04CA",
        certSerial=SERIAL,
        destination="https://app.example.com/wiki",
        emsSerial="FCTEMS8822001975",
        tenantId="0" * 32,
        clientIp="198.51.100.7",
        policyId=4,
        sessionId=1001,
        user="alice",
        detail="The certificate was revoked.",
    )
    values.update(changes)
    return BlockFacts(**values)  # type: ignore[arg-type]


def headerDict(headers: list[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    """
    The headers by name, checking that none is repeated.
    """
    names = [name.lower() for name, value in headers]
    assert len(names) == len(set(names)), names
    return {name.lower(): value for name, value in headers}


class _Collector(HTMLParser):
    """
    Collect the tags and text of an HTML page.

    @ivar tags: the start tags, in order.
    @ivar text: every piece of text, in order.
    @ivar tagged: each piece of text with the tag it is in.
    """

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []
        self.tagged: list[tuple[str, str]] = []

    def handle_starttag(
        self, tag: str, attrs: list[tuple[str, str | None]]
    ) -> None:
        """
        Keep the tag.
        """
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        """
        Keep the text.
        """
        self.text.append(data)
        self.tagged.append((self.tags[-1] if self.tags else "", data))

    def definitions(self) -> dict[str, str]:
        """
        The page's C{<dt>}/C{<dd>} pairs.
        """
        terms = [data for tag, data in self.tagged if tag == "dt"]
        values = [data for tag, data in self.tagged if tag == "dd"]
        assert len(terms) == len(values)
        return dict(zip(terms, values))


def parseHtml(body: bytes) -> _Collector:
    """
    Parse a page.
    """
    collector = _Collector()
    collector.feed(body.decode("utf-8"))
    collector.close()
    return collector


#: The only tags a page may contain: no script, no link, no image.
PAGE_TAGS = {"html", "head", "meta", "title", "style", "body", "main", "h1"}
PAGE_TAGS |= {"p", "dl", "dt", "dd"}


class EveryCodeTests(SynchronousTestCase):
    """
    Every ZTNA error code has a block page in all three representations.
    """

    def test_html(self) -> None:
        """
        The HTML page has the category as title and heading, the category's
        subtitle, C{Error Code: NNN} and the message.
        """
        for error in errors.ALL.values():
            status, headers, body = renderBlockPage(
                fullFacts(error=error), None
            )
            self.assertEqual(status, error.httpStatus)
            self.assertEqual(
                headerDict(headers)[b"x-ztna-error"], error.code.encode()
            )
            page = parseHtml(body)
            text = page.text
            self.assertEqual(text[0], error.category)  # <title>
            self.assertIn(error.category, text[2:])  # <h1>
            self.assertIn(subtitleFor(error), text)
            self.assertIn(f"Error Code: {error.code}", text)
            self.assertIn(error.message, text)
            self.assertTrue(set(page.tags) <= PAGE_TAGS)

    def test_json(self) -> None:
        """
        The JSON body names the code, category, message and status.
        """
        for error in errors.ALL.values():
            status, headers, body = renderBlockPage(
                fullFacts(error=error), b"application/json"
            )
            self.assertEqual(status, error.httpStatus)
            document = json.loads(body)
            self.assertEqual(
                {
                    k: document["error"][k]
                    for k in ("code", "category", "message", "status")
                },
                {
                    "code": error.code,
                    "category": error.category,
                    "message": error.message,
                    "status": error.httpStatus,
                },
            )

    def test_text(self) -> None:
        """
        The plain text body starts with the category, subtitle and code.
        """
        for error in errors.ALL.values():
            status, headers, body = renderBlockPage(
                fullFacts(error=error), b"text/plain"
            )
            lines = body.decode("utf-8").splitlines()
            self.assertEqual(
                lines[:5],
                [
                    error.category,
                    subtitleFor(error),
                    "",
                    f"Error Code: {error.code}",
                    error.message,
                ],
            )

    def test_subtitles(self) -> None:
        """
        Every category FortiOS defines has its own subtitle.
        """
        subtitles = {subtitleFor(error) for error in errors.ALL.values()}
        categories = {error.category for error in errors.ALL.values()}
        self.assertEqual(len(subtitles), len(categories))
        self.assertNotIn("The ZTNA gateway refused this request.", subtitles)

    def test_headers(self) -> None:
        """
        Every representation is sent with its content type and charset,
        its length, no-store, nosniff, a CSP that forbids loading anything,
        and C{Vary: Accept}.
        """
        for mediaType, accept in ACCEPT.items():
            status, headers, body = renderBlockPage(fullFacts(), accept)
            fields = headerDict(headers)
            self.assertEqual(
                fields[b"content-type"], f"{mediaType}; charset=utf-8".encode()
            )
            self.assertEqual(
                fields[b"content-length"], str(len(body)).encode()
            )
            self.assertEqual(fields[b"cache-control"], b"no-store")
            self.assertEqual(fields[b"x-content-type-options"], b"nosniff")
            self.assertEqual(fields[b"vary"], b"Accept")
            self.assertTrue(
                fields[b"content-security-policy"].startswith(
                    b"default-src 'none'; "
                )
            )
            for name, value in headers:
                self.assertNotRegex(value, rb"[\r\n\x00]")


class BlockPageContentTests(SynchronousTestCase):
    """
    The facts on a block page.
    """

    def test_jsonFacts(self) -> None:
        """
        The JSON body carries every known fact, typed, and the request time
        in ISO 8601 UTC.
        """
        status, headers, body = renderBlockPage(
            fullFacts(), b"application/json"
        )
        self.assertEqual(
            json.loads(body),
            {
                "error": {
                    "code": "063",
                    "category": "ZTNA Policy Deny",
                    "message": "client certificate revoked",
                    "status": 403,
                    "detail": "The certificate was revoked.",
                    "user": "alice",
                    "certificateSerial": SERIAL,
                    "deviceUid": "9A016B5A6E914B42AD4168C066EB04CA",
                    "destination": "https://app.example.com/wiki",
                    "emsSerial": "FCTEMS8822001975",
                    "emsTenantId": "0" * 32,
                    "policyId": 4,
                    "clientIp": "198.51.100.7",
                    "sessionId": 1001,
                    "requestTime": "2025-01-10T12:00:01Z",
                }
            },
        )

    def test_htmlFacts(self) -> None:
        """
        The HTML page lists the facts under FortiOS's labels.
        """
        status, headers, body = renderBlockPage(fullFacts(), None)
        self.assertEqual(
            parseHtml(body).definitions(),
            {
                "Detail": "The certificate was revoked.",
                "User": "alice",
                "Certificate Information": SERIAL,
                "Device Information": "9A016B5A6E914B42AD4168C066EB04CA",
                "Destination": "https://app.example.com/wiki",
                "EMS Information": "FCTEMS8822001975, tenant " + "0" * 32,
                "Policy ID": "4",
                "Client IP": "198.51.100.7",
                "Session ID": "1001",
                "Request Time": "2025-01-10 12:00:01 UTC",
            },
        )

    def test_unknownFactsLeftOut(self) -> None:
        """
        Facts that are not known are not shown at all.
        """
        facts = BlockFacts(errors.EMPTY_CERTIFICATE, WHEN)
        status, headers, body = renderBlockPage(facts, b"text/plain")
        text = body.decode()
        self.assertNotIn("Device Information", text)
        self.assertNotIn("EMS Information", text)
        self.assertIn("Request Time: 2025-01-10 12:00:01 UTC", text)
        document = json.loads(renderBlockPage(facts, b"application/json")[2])
        self.assertEqual(
            set(document["error"]),
            {"code", "category", "message", "status", "requestTime"},
        )

    def test_emsSerialOnly(self) -> None:
        """
        The EMS row shows what is known of the EMS.
        """
        body = renderBlockPage(
            BlockFacts(errors.DEVICE_OFFLINE, WHEN, emsSerial="FCTEMS1"),
            b"text/plain",
        )[2]
        self.assertIn("EMS Information: FCTEMS1\n", body.decode())

    def test_styleHash(self) -> None:
        """
        The CSP allows exactly the page's inline style, by its hash.
        """
        status, headers, body = renderBlockPage(fullFacts(), None)
        [style] = re.findall(rb"<style>(.*?)</style>", body)
        digest = base64.b64encode(hashlib.sha256(style).digest())
        self.assertIn(
            b"style-src 'sha256-" + digest + b"'",
            headerDict(headers)[b"content-security-policy"],
        )

    def test_small(self) -> None:
        """
        A page with every fact is well under 4 KiB.
        """
        for accept in ACCEPT.values():
            self.assertLess(len(renderBlockPage(fullFacts(), accept)[2]), 2048)

    def test_factsChecked(self) -> None:
        """
        Facts are checked: a real error, a finite time, an address, ids.
        """
        self.assertRaises(TypeError, BlockFacts, "063", WHEN)
        self.assertRaises(ValueError, fullFacts, requestTime=float("nan"))
        self.assertRaises(ValueError, fullFacts, requestTime=1e20)
        self.assertRaises(ValueError, fullFacts, clientIp="<script>")
        self.assertRaises(ValueError, fullFacts, policyId=-1)
        self.assertRaises(ValueError, fullFacts, sessionId=True)
        self.assertEqual(
            fullFacts(clientIp="::ffff:10.0.0.1").clientIp, "10.0.0.1"
        )
        self.assertEqual(fullFacts(clientIp=b"::1").clientIp, "::1")


class HostileValueTests(SynchronousTestCase):
    """
    Values from the network are escaped, bounded and never break a page.
    """

    def test_scriptEscaped(self) -> None:
        """
        Markup and quotes in a destination are shown as text.
        """
        hostile = "\"><script>alert(1)</script><img src=x onerror=y>'"
        body = renderBlockPage(fullFacts(destination=hostile), None)[2]
        self.assertNotIn(b"<script", body)
        self.assertNotIn(b"<img", body)
        self.assertIn(b"&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;", body)
        self.assertIn(hostile, parseHtml(body).text)

    def test_undecodableBytes(self) -> None:
        """
        Bytes that are not UTF-8 are shown as U+FFFD.
        """
        facts = fullFacts(uid=b"\xff\xfeABC", destination=b"host\xc3")
        self.assertEqual(
            (facts.uid, facts.destination), ("\ufffd\ufffdABC", "host\ufffd")
        )
        body = renderBlockPage(facts, b"text/plain")[2]
        self.assertIn("Device Information: \ufffd\ufffdABC", body.decode())

    def test_noForgedLines(self) -> None:
        """
        CR, LF and other invisible characters in a value are shown as
        escapes: a hostile Host cannot add lines to the text page or hide
        text with bidi overrides.
        """
        hostile = "a.example\r\nError Code: 000\u202eevil\x00"
        page = renderBlockPage(fullFacts(destination=hostile), b"text/plain")
        body = page[2].decode()
        self.assertIn(
            "Destination: a.example\\x0d\\x0aError Code: 000"
            "\\u202eevil\\x00\n",
            body,
        )
        self.assertEqual(
            [l for l in body.splitlines() if l.startswith("Error Code:")],
            ["Error Code: 063"],
        )

    def test_truncated(self) -> None:
        """
        A very long value is cut, with an ellipsis.
        """
        body = renderBlockPage(
            fullFacts(destination="x" * 10000), b"text/plain"
        )[2].decode()
        [line] = [l for l in body.splitlines() if l.startswith("Destination")]
        self.assertEqual(line, "Destination: " + "x" * 159 + "\u2026")

    @given(
        st.fixed_dictionaries(
            {
                key: hostileText
                for key in (
                    "uid",
                    "certSerial",
                    "destination",
                    "emsSerial",
                    "tenantId",
                    "user",
                    "detail",
                )
            }
        )
    )
    def test_anyValues(self, values: dict[str, str | bytes]) -> None:
        """
        Whatever the values, every representation renders, the HTML page
        stays under 4 KiB with no tag of its own, the JSON parses, and the
        text page has a fixed number of lines.
        """
        facts = fullFacts(**values)
        html = renderBlockPage(facts, None)[2]
        self.assertLess(len(html), 4096)
        self.assertTrue(set(parseHtml(html).tags) <= PAGE_TAGS)
        json.loads(renderBlockPage(facts, b"application/json")[2])
        text = renderBlockPage(facts, b"text/plain")[2].decode("utf-8")
        self.assertEqual(len(text.splitlines()), 17)


class NegotiationTests(SynchronousTestCase):
    """
    L{chooseMediaType} reads C{Accept} like RFC 9110 says.
    """

    def assertChooses(self, accept: bytes | None, mediaType: str) -> None:
        """
        C{accept} chooses C{mediaType}.
        """
        self.assertEqual(chooseMediaType(accept), mediaType, accept)

    def test_defaultHtml(self) -> None:
        """
        No C{Accept}, an empty one, curl's C{*/*} and a browser's choose
        HTML.
        """
        self.assertChooses(None, HTML)
        self.assertChooses(b"", HTML)
        self.assertChooses(b"*/*", HTML)
        self.assertChooses(
            b"text/html,application/xhtml+xml,application/xml;q=0.9,"
            b"image/avif,image/webp,*/*;q=0.8",
            HTML,
        )

    def test_json(self) -> None:
        """
        Clients that name JSON get JSON, even with a wildcard beside it.
        """
        self.assertChooses(b"application/json", JSON)
        self.assertChooses(b"application/json, text/plain, */*", JSON)
        self.assertChooses(b"application/*", JSON)
        self.assertChooses(b"Application/JSON", JSON)
        self.assertChooses(b"text/html;q=0.4, application/json;q=0.5", JSON)

    def test_text(self) -> None:
        """
        Clients that want plain text get it.
        """
        self.assertChooses(b"text/plain", TEXT)
        self.assertChooses(b"text/plain, */*;q=0.1", TEXT)
        self.assertChooses(b"text/plain;charset=utf-8;q=1.000", TEXT)

    def test_preferences(self) -> None:
        """
        Equal choices follow the server's preference: HTML, JSON, text; a
        type refused with C{q=0} is never chosen, even through a wildcard.
        """
        self.assertChooses(b"text/*", HTML)
        self.assertChooses(b"text/plain, text/html", HTML)
        self.assertChooses(b"text/plain, application/json", JSON)
        self.assertChooses(b"text/html;q=0, */*", JSON)
        self.assertChooses(
            b"*/*;q=0.5, text/html;q=0, application/json;q=0", TEXT
        )

    def test_nothingAcceptable(self) -> None:
        """
        When nothing offered is acceptable, the page is still sent, as HTML.
        """
        self.assertChooses(b"image/png", HTML)
        self.assertChooses(b"*/*;q=0", HTML)

    def test_malformedIgnored(self) -> None:
        """
        Ranges with a bad q-value or a bad media range are ignored.
        """
        self.assertChooses(b"application/json;q=2", HTML)
        self.assertChooses(b"application/json;q=0.5000", HTML)
        self.assertChooses(b"application/json;q=abc, text/plain", TEXT)
        self.assertChooses(b"*/json", HTML)
        self.assertChooses(b"json", HTML)
        self.assertChooses(b"application/json;q=-1", HTML)

    def test_extensionsAfterQuality(self) -> None:
        """
        Parameters after the q-value are extensions and do not change it.
        """
        self.assertChooses(
            b"application/json;q=0.9;q=0, text/html;q=0.8", JSON
        )

    def test_strings(self) -> None:
        """
        A C{str} header is read like its bytes.
        """
        self.assertChooses("application/json", JSON)  # type: ignore[arg-type]

    @given(st.binary())
    def test_anyBytes(self, accept: bytes) -> None:
        """
        Any C{Accept} value chooses one of the three types, never raising.
        """
        self.assertIn(chooseMediaType(accept), MEDIA_TYPES)

    @given(
        st.lists(
            st.tuples(
                st.sampled_from(
                    [
                        "text/html",
                        "application/json",
                        "text/plain",
                        "image/png",
                        "text/*",
                        "*/*",
                    ]
                ),
                st.sampled_from(["", ";q=0", ";q=0.3", ";q=0.7", ";q=1"]),
            ),
            max_size=6,
        )
    )
    def test_qualityWins(self, ranges: list[tuple[str, str]]) -> None:
        """
        The chosen type is never less acceptable than another type, by the
        quality of the most specific range naming each.
        """
        accept = ", ".join(r + q for r, q in ranges).encode()
        chosen = chooseMediaType(accept)

        def quality(mediaType: str) -> float:
            kind = mediaType.split("/")[0]
            for pattern in (mediaType, f"{kind}/*", "*/*"):
                qualities = [
                    float(q[3:]) if q else 1.0
                    for r, q in ranges
                    if r == pattern
                ]
                if qualities:
                    return max(qualities)
            return 0.0

        best = max(quality(m) for m in MEDIA_TYPES)
        if best > 0:
            self.assertEqual(quality(chosen), best, accept)
        else:
            self.assertEqual(chosen, HTML)


class ErrorPageTests(SynchronousTestCase):
    """
    L{renderErrorPage} renders the gateway's own errors like block pages,
    without a ZTNA code.
    """

    def test_everyGatewayError(self) -> None:
        """
        Each of the gateway's errors renders in the three representations
        with its status and words, and no C{X-ZTNA-Error}.
        """
        for error in GATEWAY_ERRORS.values():
            for mediaType, accept in ACCEPT.items():
                status, headers, body = renderErrorPage(
                    error.status, error.title, error.detail, accept
                )
                fields = headerDict(headers)
                self.assertEqual(status, error.status)
                self.assertNotIn(b"x-ztna-error", fields)
                self.assertEqual(
                    fields[b"content-length"], str(len(body)).encode()
                )
                self.assertTrue(
                    fields[b"content-type"].startswith(mediaType.encode())
                )
                if mediaType == JSON:
                    self.assertEqual(
                        json.loads(body),
                        {
                            "error": {
                                "status": error.status,
                                "title": error.title,
                                "detail": error.detail,
                            }
                        },
                    )
                elif mediaType == HTML:
                    text = parseHtml(body).text
                    self.assertEqual(text[0], error.title)
                    self.assertIn(f"HTTP Status: {error.status}", text)
                    self.assertIn(error.detail, text)
                else:
                    lines = body.decode().splitlines()
                    self.assertEqual(lines[0], error.title)
                    self.assertIn(f"HTTP Status: {error.status}", lines)
                    self.assertIn(error.detail, lines)

    def test_statusesRequired(self) -> None:
        """
        The gateway's error table covers the statuses it produces itself.
        """
        self.assertEqual(
            sorted(GATEWAY_ERRORS),
            [400, 408, 413, 414, 421, 431, 501, 502, 504, 505],
        )
        self.assertIn("other certificate rules", GATEWAY_ERRORS[421].detail)

    def test_badStatus(self) -> None:
        """
        Only error statuses have error pages.
        """
        for status in (200, 399, 600):
            self.assertRaises(
                ValueError, renderErrorPage, status, "x", "y", None
            )
        self.assertRaises(TypeError, renderErrorPage, "502", "x", "y", None)

    @given(hostileText, hostileText)
    def test_hostile(self, title: str | bytes, detail: str | bytes) -> None:
        """
        A title or detail from elsewhere is escaped and bounded.
        """
        body = renderErrorPage(502, title, detail, None)[2]
        self.assertLess(len(body), 4096)
        self.assertTrue(set(parseHtml(body).tags) <= PAGE_TAGS)
        text = renderErrorPage(502, title, detail, b"text/plain")[2]
        self.assertEqual(len(text.decode().splitlines()), 7)
