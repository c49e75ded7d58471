"""
Attacks on the EMS listener, which faces clients without a certificate:
guessing enrollment tokens, and hostile certificate requests and JSON.

"Nothing reaches the real server" means here: no device is recorded, no
token is used, and the genuine token sent along with a hostile request
still enrolls a device afterwards.
"""

from __future__ import annotations

import base64
import hmac
import json
import os
import socket
import ssl
import subprocess
import time
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID

from ztnagw.ems import tokens
from ztnagw.registry.sqlite import SQLiteEndpointStore
from tests.security.cases import attack, measure
from tests.security.fixture import AttackCase, Response, parseResponses
from tests.support import pki


def csrPem(key: Any = None, digest: Any = None) -> str:
    """
    A certificate signing request, PEM.
    """
    key = key or pki.newKey()
    request = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "device")])
    )
    return request.sign(key, digest if digest is not None else hashes.SHA256()).public_bytes(
        serialization.Encoding.PEM
    ).decode("ascii")


class EnrollmentTests(AttackCase):
    """
    The enrollment API under attack.
    """

    def post(self, body: bytes, source: str = "127.0.0.1", contentType: bytes = b"application/json",
             method: bytes = b"POST") -> Response:
        """
        Send C{body} to C{/api/v1/enroll} from C{source}; the response.
        """
        g = self.gateway
        raw = socket.create_connection(("127.0.0.1", g.ports["EMS"]), timeout=10, source_address=(source, 0))
        context = ssl.create_default_context(cafile=g.caPath)
        context.check_hostname = False
        sock = context.wrap_socket(raw)
        try:
            sock.sendall(
                method + b" /api/v1/enroll HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: " + contentType
                + b"\r\nAccept: application/json\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(body)
            )
            try:
                sock.sendall(body)
            except OSError:
                pass
            data = b""
            while not parseResponses(data)[0]:
                try:
                    piece = sock.recv(65536)
                except (OSError, ssl.SSLError):
                    break
                if not piece:
                    break
                data += piece
        finally:
            sock.close()
        [response] = parseResponses(data)[0]
        return response

    def enroll(self, token: str, csr: str | None = None, source: str = "127.0.0.1", **extra: Any) -> Response:
        """
        An enrollment request with C{token}.
        """
        body = {"token": token, "csr": csr if csr is not None else csrPem(), **extra}
        return self.post(json.dumps(body).encode(), source)

    def sha1CSR(self) -> str:
        """
        A CSR signed with ECDSA-SHA1 (cryptography refuses to make one;
        OpenSSL's command does).
        """
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        key = os.path.join(directory, "key.pem")
        with open(key, "wb") as f:
            f.write(pki.newKey().private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ))
        result = subprocess.run(
            ["openssl", "req", "-new", "-sha1", "-key", key, "-subj", "/CN=d"], capture_output=True, check=True
        )
        return result.stdout.decode("ascii")

    def errorCode(self, response: Response) -> str:
        """
        The EMS API's error code of a refusal.
        """
        return json.loads(response.body)["error"]["code"]

    def newToken(self) -> str:
        """
        A fresh one-use token from the admin command.
        """
        result = self.gateway.admin("token", "create", "--json")
        self.assertEqual(result.returncode, 0, result.stderr)
        return json.loads(result.stdout)["token"]

    def tokenUses(self, token: str) -> int:
        """
        How many enrollments C{token} made, as the admin command shows it.
        """
        result = self.gateway.admin("token", "list", "--all", "--json")
        self.assertEqual(result.returncode, 0, result.stderr)
        tokenId = token.split(".")[1]
        [entry] = [t for t in json.loads(result.stdout) if t["id"] == tokenId]
        return int(entry["usesCount"])

    def deviceCount(self) -> int:
        """
        How many devices the registry holds.
        """
        result = self.gateway.admin("endpoint", "list", "--json")
        self.assertEqual(result.returncode, 0, result.stderr)
        return len(json.loads(result.stdout))

    @attack(
        "enrollment",
        "token guessing: wrong secrets for a real token id, and unknown ids, from one address",
        "401 token-invalid for the first 10, then 429 with Retry-After, even for the genuine token; "
        "another address enrolls with it",
    )
    def test_guessing(self) -> None:
        """
        Failed attempts are counted per source: after 10, the source gets
        429 before any registry work, even with the genuine token; the
        token stays unused and enrolls from elsewhere.
        """
        token = self.newToken()
        prefix, tokenId, _ = token.split(".")
        devices = self.deviceCount()
        source = "127.0.5.1"
        answers = []
        for n in range(12):
            secret = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
            guess = f"{prefix}.{tokenId if n % 2 else os.urandom(6).hex()}.{secret}"
            answers.append(self.enroll(guess, source=source))
        statuses = [a.status for a in answers]
        self.assertEqual(statuses, [401] * 10 + [429] * 2)
        self.assertEqual({self.errorCode(a) for a in answers[:10]}, {"token-invalid"})
        self.assertTrue(int(answers[-1].header("retry-after") or "0") > 0)
        refused = self.enroll(token, source=source)
        self.assertEqual((refused.status, self.errorCode(refused)), (429, "too-many-attempts"))
        self.assertEqual(self.tokenUses(token), 0)
        self.assertEqual(self.deviceCount(), devices)
        measure(self.id(), "failed attempts before 429", statuses.index(429))
        enrolled = self.enroll(token, source="127.0.5.2")
        self.assertEqual(enrolled.status, 200, enrolled)
        self.assertEqual(self.tokenUses(token), 1)
        self.gateway.checkServing(self)

    @attack(
        "enrollment",
        "timing: comparing a guessed secret with a stored one, for a known and an unknown token id",
        "one constant-time comparison of SHA-256 digests (hmac.compare_digest) either way; verified on the code",
    )
    def test_constantTime(self) -> None:
        """
        The secret is compared as a digest with C{hmac.compare_digest},
        once, whether the id exists or not (an unknown id is compared with
        a digest of the same length), so neither the secret nor the
        existence of an id leaks through timing.  (Timing itself cannot be
        measured reliably on a shared machine; the code path is what is
        checked.)
        """
        store = SQLiteEndpointStore(os.path.join(os.path.abspath(self.mktemp()), "registry.sqlite"))
        self.addCleanup(store.close)
        with store.transaction() as t:
            _, text = tokens.createToken(t.cursor, time.time())
        prefix, tokenId, _ = text.split(".")
        compared: list[tuple[bytes, bytes]] = []
        original = hmac.compare_digest

        def spy(a: bytes, b: bytes) -> bool:
            compared.append((a, b))
            return original(a, b)

        self.patch(tokens.hmac, "compare_digest", spy)
        wrong = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
        for guess in (f"{prefix}.{tokenId}.{wrong}", f"{prefix}.{os.urandom(6).hex()}.{wrong}"):
            with store.transaction() as t:
                self.assertRaises(tokens.TokenRefused, tokens.verifyToken, t.cursor, guess, time.time())
        self.assertEqual(len(compared), 2)
        self.assertEqual({(len(a), len(b)) for a, b in compared}, {(32, 32)})
        self.gateway.checkServing(self)

    @attack(
        "enrollment",
        "hostile certificate requests with a genuine token: over 16 KiB, garbage, two CSRs, a private key "
        "appended, altered signature, SHA-1, Ed25519, RSA-1024",
        "400 csr-rejected, the token not used, no device recorded",
    )
    def test_hostileCSR(self) -> None:
        """
        Each bad CSR is refused with its reason, and the genuine token sent
        with it is not used up: it enrolls a device afterwards.
        """
        token = self.newToken()
        devices = self.deviceCount()
        good = csrPem()
        key = pki.newKey()
        keyPem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        body = good.splitlines()
        altered = "\n".join(body[:3] + [body[3][:10] + ("A" if body[3][10] != "A" else "B") + body[3][11:]] + body[4:]) + "\n"
        cases = {
            "over 16 KiB": "-----BEGIN CERTIFICATE REQUEST-----\n" + "QUFB\n" * 4200 + "-----END CERTIFICATE REQUEST-----\n",
            "garbage": "-----BEGIN CERTIFICATE REQUEST-----\nnot base64 at all\n-----END CERTIFICATE REQUEST-----\n",
            "two CSRs": good + csrPem(),
            "private key appended": good + keyPem,
            "altered signature": altered,
            "SHA-1": self.sha1CSR(),
            "Ed25519": x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "d")]))
            .sign(ed25519.Ed25519PrivateKey.generate(), None)
            .public_bytes(serialization.Encoding.PEM)
            .decode(),
            "RSA-1024": csrPem(pki.newRSAKey(1024)),
            "empty": "",
        }
        for name, csr in cases.items():
            response = self.enroll(token, csr)
            self.assertEqual(response.status, 400, (name, response))
            self.assertIn(self.errorCode(response), ("csr-rejected", "bad-request"), name)
        self.assertEqual(self.tokenUses(token), 0)
        self.assertEqual(self.deviceCount(), devices)
        self.assertEqual(self.enroll(token, good).status, 200)
        self.gateway.checkServing(self)

    @attack(
        "enrollment",
        "malformed JSON with a genuine token: not JSON, not UTF-8, duplicate keys, NaN, nested 5 deep, an array, "
        "unknown or mistyped fields, a 100 KiB body, text/plain, GET",
        "400 bad-request (413, 415, 405 for the last three), the token not used, no device recorded",
    )
    def test_malformedJson(self) -> None:
        """
        Nothing but one strict JSON object of known fields is read; every
        other body is refused before the token is used.
        """
        token = self.newToken()
        devices = self.deviceCount()
        csr = json.dumps(csrPem())
        quoted = json.dumps(token)
        cases: dict[str, tuple[bytes, int, dict[str, Any]]] = {
            "not JSON": (b"token=" + token.encode(), 400, {}),
            "not UTF-8": (b'{"token": ' + quoted.encode() + b', "csr": ' + csr.encode() + b', "x": "\xff"}', 400, {}),
            "duplicate key": (('{"token": %s, "token": %s, "csr": %s}' % (quoted, quoted, csr)).encode(), 400, {}),
            "NaN": (('{"token": %s, "csr": %s, "device": {"facts": NaN}}' % (quoted, csr)).encode(), 400, {}),
            "nested 5 deep": (
                ('{"token": %s, "csr": %s, "device": {"facts": {"a": [[[["x"]]]]}}}' % (quoted, csr)).encode(),
                400,
                {},
            ),
            "array": (("[%s, %s]" % (quoted, csr)).encode(), 400, {}),
            "unknown field": (('{"token": %s, "csr": %s, "admin": true}' % (quoted, csr)).encode(), 400, {}),
            "mistyped field": (('{"token": %s, "csr": %s, "uid": 42}' % (quoted, csr)).encode(), 400, {}),
            "control character": (('{"token": %s, "csr": %s, "device": {"hostName": "a\\u0000b"}}' % (quoted, csr)).encode(), 400, {}),
            "100 KiB": (('{"token": %s, "csr": %s, "pad": "%s"}' % (quoted, csr, "a" * 100000)).encode(), 413, {}),
            "text/plain": (('{"token": %s, "csr": %s}' % (quoted, csr)).encode(), 415, {"contentType": b"text/plain"}),
            "GET": (b"", 405, {"method": b"GET"}),
        }
        for name, (body, status, options) in cases.items():
            response = self.post(body, **options)
            self.assertEqual(response.status, status, (name, response))
        self.assertEqual(self.tokenUses(token), 0)
        self.assertEqual(self.deviceCount(), devices)
        self.assertEqual(self.enroll(token).status, 200)
        self.gateway.checkServing(self)
