"""
Tests for L{ztnagw.ems.csr}.
"""

from __future__ import annotations

import base64

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tests.support.pki import makeCA, makeCSR, newKey, newRSAKey
from ztnagw.ems.csr import (
    MAX_REQUEST_SIZE,
    SigningRequest,
    SigningRequestRejected,
    parseCertificateSigningRequest,
)
from ztnagw.ems.keys import publicKeyBytes


def _pem(request: x509.CertificateSigningRequest) -> bytes:
    return request.public_bytes(serialization.Encoding.PEM)


def _der(request: x509.CertificateSigningRequest) -> bytes:
    return request.public_bytes(serialization.Encoding.DER)


def _tlv(tag: int, body: bytes) -> bytes:
    # A DER tag-length-value, enough to assemble a request by hand.
    if len(body) < 0x80:
        length = bytes([len(body)])
    else:
        size = len(body).to_bytes((len(body).bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(size)]) + size
    return bytes([tag]) + length + body


def _signedWith(key: object, digest: hashes.HashAlgorithm | None) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "device")])
    )
    return _der(builder.sign(key, digest))  # type: ignore[arg-type]


class ParseTests(SynchronousTestCase):
    """
    Well-formed requests with accepted keys are parsed into their public
    key.
    """

    def test_pem(self) -> None:
        """
        A PEM request yields its public key, a description and its DER.
        """
        request, key = makeCSR(key=newKey(20))
        parsed = parseCertificateSigningRequest(_pem(request))
        self.assertIsInstance(parsed, SigningRequest)
        self.assertEqual(
            publicKeyBytes(parsed.publicKey), publicKeyBytes(key.public_key())
        )
        self.assertEqual(parsed.keyDescription, "EC P-256")
        self.assertEqual(parsed.der, _der(request))

    def test_der(self) -> None:
        """
        A DER request is parsed the same as its PEM form.
        """
        request, _ = makeCSR(key=newKey(20))
        self.assertEqual(
            parseCertificateSigningRequest(_der(request)),
            parseCertificateSigningRequest(_pem(request)),
        )

    def test_rsa(self) -> None:
        """
        An RSA 2048 request is accepted.
        """
        request, _ = makeCSR(key=newRSAKey(2048))
        self.assertEqual(
            parseCertificateSigningRequest(_pem(request)).keyDescription, "RSA 2048"
        )

    def test_newLabelAndWhiteSpace(self) -> None:
        """
        The older C{NEW CERTIFICATE REQUEST} label, CRLF line ends and white
        space around the block are accepted.
        """
        request, _ = makeCSR(key=newKey(20))
        pem = _pem(request).replace(b"CERTIFICATE REQUEST", b"NEW CERTIFICATE REQUEST")
        pem = b"\n  " + pem.replace(b"\n", b"\r\n") + b"\r\n\n"
        self.assertEqual(parseCertificateSigningRequest(pem).der, _der(request))


class RefusalTests(SynchronousTestCase):
    """
    Every malformed, tampered or unacceptable request is refused with
    L{SigningRequestRejected} and a message that says why.
    """

    def assertRejected(self, data: bytes, *fragments: str) -> str:
        """
        Assert that C{data} is rejected with a message containing every
        fragment.

        @return: the message.
        """
        error = self.assertRaises(
            SigningRequestRejected, parseCertificateSigningRequest, data
        )
        for fragment in fragments:
            self.assertIn(fragment, error.message)
        self.assertEqual(str(error), error.message)
        return error.message

    def test_tamperedSignedPart(self) -> None:
        """
        Flipping any bit of the signed part of a request makes it fail:
        either it no longer parses, or its signature no longer verifies.
        """
        request, _ = makeCSR(key=newKey(20))
        der = _der(request)
        start = der.index(request.tbs_certrequest_bytes)
        end = start + len(request.tbs_certrequest_bytes)
        signatureFailures = 0
        for index in range(start, end):
            for bit in range(8):
                tampered = bytearray(der)
                tampered[index] ^= 1 << bit
                message = self.assertRejected(bytes(tampered))
                if "signature does not verify" in message:
                    signatureFailures += 1
        # Flips in the key are caught as a malformed key; the others must
        # have reached the signature check.
        self.assertGreater(signatureFailures, 0)

    def test_tamperedSubject(self) -> None:
        """
        A request whose subject was changed after signing is refused as
        altered.
        """
        request, _ = makeCSR("aaaa", key=newKey(20))
        tampered = _der(request).replace(b"aaaa", b"aaab")
        self.assertRejected(tampered, "signature does not verify")

    def test_weakRsa(self) -> None:
        """
        An RSA 1024 request is refused as too weak.
        """
        request, _ = makeCSR(key=newRSAKey(1024))
        self.assertRejected(_pem(request), "RSA key of 1024 bits is too weak")

    def test_dsa(self) -> None:
        """
        A DSA request is refused.
        """
        self.assertRejected(
            _signedWith(dsa.generate_private_key(2048), hashes.SHA256()),
            "DSA 2048 keys are not accepted",
        )

    def test_p192(self) -> None:
        """
        A P-192 request is refused, where the library can make one.
        """
        try:
            key = ec.generate_private_key(ec.SECP192R1())
        except Exception as e:
            raise self.skipTest(f"P-192 is not available: {e}")
        self.assertRejected(_signedWith(key, hashes.SHA256()), "secp192r1")

    def test_ed25519(self) -> None:
        """
        An Ed25519 request is refused.
        """
        key = ed25519.Ed25519PrivateKey.generate()
        self.assertRejected(_signedWith(key, None), "Ed25519 keys are not accepted")

    def test_sha1(self) -> None:
        """
        A request signed with SHA-1 is refused, naming the digest.
        """
        # The library no longer signs requests with SHA-1; assemble one from
        # a SHA-1 signature over a real request body.
        request, key = makeCSR(key=newKey(20))
        body = request.tbs_certrequest_bytes
        signature = key.sign(body, ec.ECDSA(hashes.SHA1()))
        ecdsaWithSha1 = _tlv(0x30, bytes.fromhex("06072a8648ce3d0401"))
        der = _tlv(0x30, body + ecdsaWithSha1 + _tlv(0x03, b"\x00" + signature))
        self.assertRejected(der, "signed with SHA1", "SHA-256")

    def test_empty(self) -> None:
        """
        Empty or blank data is refused as empty.
        """
        self.assertRejected(b"", "empty")
        self.assertRejected(b" \n\t", "empty")

    def test_garbage(self) -> None:
        """
        Data that is neither PEM nor DER is refused.
        """
        self.assertRejected(b"hello", "neither PEM nor DER")

    def test_badDer(self) -> None:
        """
        Data that starts like DER but is not a request is refused.
        """
        self.assertRejected(b"\x30\x03\x02\x01\x01", "not a well-formed")
        ca = makeCA(keySlot=21)
        self.assertRejected(
            ca.certificate.public_bytes(serialization.Encoding.DER), "not a well-formed"
        )

    def test_trailingData(self) -> None:
        """
        A DER request followed by anything is refused.
        """
        request, _ = makeCSR(key=newKey(20))
        self.assertRejected(_der(request) + b"\x00", "not a well-formed")

    def test_oversize(self) -> None:
        """
        Data larger than L{MAX_REQUEST_SIZE} is refused before any parsing,
        naming both sizes.
        """
        request, _ = makeCSR(key=newKey(20))
        big = _pem(request) + b" " * (MAX_REQUEST_SIZE + 1)
        self.assertRejected(big, str(len(big)), str(MAX_REQUEST_SIZE))

    def test_twoRequests(self) -> None:
        """
        Two requests in one PEM text are refused.
        """
        one, _ = makeCSR(key=newKey(20))
        two, _ = makeCSR(key=newKey(22))
        self.assertRejected(_pem(one) + _pem(two), "holds 2 PEM blocks")

    def test_otherBlocks(self) -> None:
        """
        A certificate, or a request sent with its private key, is refused.
        """
        ca = makeCA(keySlot=21)
        self.assertRejected(ca.certificatePem(), "is a CERTIFICATE, not")
        request, key = makeCSR(key=newKey(20))
        keyPem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        self.assertRejected(_pem(request) + keyPem, "holds 2 PEM blocks")

    def test_textAround(self) -> None:
        """
        Text before or after the block is refused.
        """
        request, _ = makeCSR(key=newKey(20))
        self.assertRejected(b"Subject: x\n" + _pem(request), "text around")
        self.assertRejected(_pem(request) + b"trailer", "text around")

    def test_badBase64(self) -> None:
        """
        A block whose body is not base64 is refused.
        """
        self.assertRejected(
            b"-----BEGIN CERTIFICATE REQUEST-----\n!!!!\n"
            b"-----END CERTIFICATE REQUEST-----\n",
            "not valid base64",
        )

    def test_unterminated(self) -> None:
        """
        A block without its END line is refused.
        """
        request, _ = makeCSR(key=newKey(20))
        pem = _pem(request)
        self.assertRejected(pem[: pem.index(b"-----END")], "no matching END")

    def test_notBytes(self) -> None:
        """
        Text instead of bytes is a programming error.
        """
        request, _ = makeCSR(key=newKey(20))
        self.assertRaises(
            TypeError, parseCertificateSigningRequest, _pem(request).decode("ascii")
        )


def _armored(body: bytes) -> bytes:
    return (
        b"-----BEGIN CERTIFICATE REQUEST-----\n"
        + base64.encodebytes(body)
        + b"-----END CERTIFICATE REQUEST-----\n"
    )


# Built once: hypothesis needs the same input on every run of an example,
# and each ECDSA signature differs.
_FIXED_REQUEST = _der(makeCSR(key=newKey(20))[0])


class ArbitraryInputTests(SynchronousTestCase):
    """
    Whatever the bytes, the parser either returns a request or raises
    L{SigningRequestRejected}: never another exception.
    """

    def _parseOrReject(self, data: bytes) -> None:
        try:
            parseCertificateSigningRequest(data)
        except SigningRequestRejected:
            pass

    @given(st.binary(max_size=2048))
    def test_arbitraryBytes(self, data: bytes) -> None:
        """
        Arbitrary bytes are rejected with our error.
        """
        self.assertRaises(SigningRequestRejected, parseCertificateSigningRequest, data)

    @given(st.binary(max_size=1024).map(lambda b: b"\x30" + b))
    def test_derLike(self, data: bytes) -> None:
        """
        Bytes that start like DER are rejected with our error.
        """
        self.assertRaises(SigningRequestRejected, parseCertificateSigningRequest, data)

    @given(st.binary(max_size=1024).map(_armored))
    def test_armoredBytes(self, data: bytes) -> None:
        """
        Arbitrary bytes in a well-formed PEM block are rejected with our
        error.
        """
        self.assertRaises(SigningRequestRejected, parseCertificateSigningRequest, data)

    @given(st.data())
    def test_mutatedRequest(self, data: st.DataObject) -> None:
        """
        A valid request truncated, extended or with bytes overwritten
        anywhere (signature included) is handled without any other
        exception.
        """
        der = bytearray(_FIXED_REQUEST)
        cut = data.draw(st.integers(0, len(der)))
        der = der[:cut] + data.draw(st.binary(max_size=16))
        for _ in range(data.draw(st.integers(0, 4))):
            if not der:
                break
            index = data.draw(st.integers(0, len(der) - 1))
            der[index] = data.draw(st.integers(0, 255))
        self._parseOrReject(bytes(der))
        self._parseOrReject(_armored(bytes(der)))
