"""
Identity toward real servers with the real daemon: a web-proxy profile's
header actions and the gateway's signed identity assertion, verified by an
independent library (PyJWT) with the JWKS fetched from the gateway, as an
upstream application would.
"""

from __future__ import annotations

import json

import jwt
from twisted.trial.unittest import TestCase

from tests.integration.poolsgateway import Backend, PoolGateway

GATEWAYS = """
            edit 1
                set service http
                config realservers
                    edit 1
                        set ip 127.0.0.1
                        set port {A}
                    next
                end
            next
"""

PROFILES = """
config web-proxy profile
    edit "ids"
        set header-client-ip add
        set header-x-forwarded-client-cert add
        set header-x-authenticated-user add
        set identity-assertion enable
        config headers
            edit 1
                set name "X-Device"
                set content "$device-uid"
            next
        end
    next
end
"""


class IdentityTests(TestCase):
    """
    What a real server behind the gateway learns about the client.
    """

    def setUp(self) -> None:
        self.backend = Backend("A")
        self.backend.start()
        self.addCleanup(self.backend.stop)
        self.gateway = PoolGateway(
            self.mktemp(), GATEWAYS, profiles=PROFILES, policyExtra='        set webproxy-profile "ids"', A=self.backend.port
        )
        self.gateway.start()
        self.addCleanup(self.gateway.stop)
        self.device = self.gateway.issueDevice()

    def test_assertionVerified(self) -> None:
        """
        The real server gets the profile's fields and a JWT that PyJWT
        verifies with the gateway's JWKS (fetched from the VIP without a
        device certificate), audience the request's host; the client's
        forged copies never arrive.
        """
        status, _, body = self.gateway.get(
            "/app",
            self.device,
            host="App.Test",
            headers={"X-ZTNA-Identity": "forged", "X-Authenticated-User": "admin", "Client-IP": "6.6.6.6"},
        )
        self.assertEqual(status, 200)
        headers = json.loads(body)["headers"]
        fields: dict[str, list[str]] = {}
        for name, value in headers:
            fields.setdefault(name.lower(), []).append(value)
        self.assertEqual(fields["client-ip"], ["127.0.0.1"])
        self.assertNotIn("x-authenticated-user", fields)
        self.assertEqual(fields["x-device"], [self.device.uid])
        self.assertTrue(fields["x-forwarded-client-cert"][0].startswith("Hash="))
        [token] = fields["x-ztna-identity"]
        status, found, jwks = self.gateway.get("/.well-known/ztnagw/jwks.json", None, host="anything")
        self.assertEqual(status, 200)
        client = jwt.PyJWKSet.from_dict(json.loads(jwks))
        key = client[jwt.get_unverified_header(token)["kid"]]
        claims = jwt.decode(token, key.key, algorithms=["ES256"], audience="app.test",
                            options={"require": ["exp", "iat", "aud", "iss", "sub"]})
        self.assertEqual(claims["sub"], self.device.uid)
        self.assertEqual(claims["policy_id"], 1)
        self.assertLessEqual(claims["exp"] - claims["iat"], 60)
        self.assertIn("EMS1_ZTNA_all_registered_clients", claims["tags"])
        with self.assertRaises(jwt.InvalidAudienceError):
            jwt.decode(token, key.key, algorithms=["ES256"], audience="other.test")
