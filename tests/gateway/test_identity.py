"""
Tests for L{ztnagw.gateway.identity}: identity keys, JWKS and tokens.
"""

from __future__ import annotations

import json
import os
import stat
import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from twisted.trial.unittest import SynchronousTestCase

from ztnagw.gateway.identity import IdentityKeys, isJwksRequest
from ztnagw.keyfiles import writePrivateFile


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


class KeyTests(SynchronousTestCase):
    """
    L{IdentityKeys}.
    """

    def test_created(self) -> None:
        """
        The first start creates one key, mode 0600; the next start loads
        the same.
        """
        directory = self.mktemp()
        keys = IdentityKeys.load(directory)
        path = os.path.join(directory, "identity", "identity.key")
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        self.assertEqual(IdentityKeys.load(directory).kid, keys.kid)

    def test_rotation(self) -> None:
        """
        Every key is published; the newest signs; tokens verify with PyJWT
        against the JWKS.
        """
        directory = self.mktemp()
        old = IdentityKeys.load(directory)
        newer = ec.generate_private_key(ec.SECP256R1())
        path = os.path.join(directory, "identity", "next.key")
        writePrivateFile(path, _pem(newer))
        os.utime(path, (time.time() + 10, time.time() + 10))
        keys = IdentityKeys.load(directory)
        self.assertNotEqual(keys.kid, old.kid)
        published = jwt.PyJWKSet.from_dict(json.loads(keys.jwks()))
        self.assertEqual(sorted(k.key_id for k in published.keys), sorted([keys.kid, old.kid]))
        token = keys.sign({"sub": "x", "aud": "a"})
        self.assertEqual(jwt.get_unverified_header(token)["kid"], keys.kid)
        claims = jwt.decode(token, published[keys.kid].key, algorithms=["ES256"], audience="a")
        self.assertEqual(claims["sub"], "x")

    def test_wrongCurve(self) -> None:
        """
        A key that is not P-256 is refused.
        """
        directory = self.mktemp()
        writePrivateFile(os.path.join(directory, "identity", "p384.key"), _pem(ec.generate_private_key(ec.SECP384R1())))
        self.assertRaises(OSError, IdentityKeys.load, directory)

    def test_jwksPath(self) -> None:
        """
        Only GET and HEAD of exactly the JWKS path (any query) are the
        gateway's.
        """
        self.assertTrue(isJwksRequest(b"GET", b"/.well-known/ztnagw/jwks.json"))
        self.assertTrue(isJwksRequest(b"HEAD", b"/.well-known/ztnagw/jwks.json?x=1"))
        self.assertFalse(isJwksRequest(b"POST", b"/.well-known/ztnagw/jwks.json"))
        self.assertFalse(isJwksRequest(b"GET", b"/.well-known/ztnagw/jwks.jsonx"))
        self.assertFalse(isJwksRequest(b"GET", b"/app/.well-known/ztnagw/jwks.json"))
