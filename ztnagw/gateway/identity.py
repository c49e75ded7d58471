# -*- test-case-name: tests.gateway.test_identity -*-
"""
What real servers learn about the client: the header actions of a
C{config web-proxy profile}, and the gateway's signed identity assertion.

A real server behind a ZTNA gateway trusts what the gateway tells it, so
the gateway must be the only one telling it anything.  The rules, for every
request relayed (L{IdentityHeaders.requestPairs}):

  1. Every client copy of an identity field is removed: C{Client-IP},
     C{X-Forwarded-Client-Cert}, C{Front-End-Https},
     C{X-Authenticated-User}, C{X-Authenticated-Groups}, the identity
     assertion's header (C{X-ZTNA-Identity} and any name a profile
     configures), and the C{X-Forwarded-*}/C{Forwarded} fields the proxy
     sets itself.  FortiOS's C{pass} forwards the client's copy; ztnagw never
     does (a client could otherwise name itself any user), so C{pass} means
     "ztnagw's default for that field".
  2. The profile of the policy that accepted the request (its
     C{webproxy-profile}; a firewall policy may name one too, a ztnagw
     extension; no profile: every action is C{pass}) decides the rest:
       - C{header-x-forwarded-for}: C{pass}/C{add} send the client's address
         (ztnagw's default), C{remove} sends none;
       - C{header-client-ip} C{add}: C{Client-IP: <address>};
       - C{header-x-forwarded-client-cert} C{add}: C{X-Forwarded-Client-Cert:
         Hash=<sha256>;Subject="<subject>";URI=<uid>;Cert="<url-encoded
         PEM>"} (Envoy's layout) when a device certificate was presented;
       - C{header-front-end-https} C{add}: C{Front-End-Https: On};
       - C{header-x-authenticated-user}/C{-groups} C{add}: the authenticated
         user and groups, when there are (no request has them until user
         authentication is implemented: nothing is sent then);
       - C{config headers}: fields added to or removed from requests or
         responses, with C{$client-ip}, C{$user} and the ztnagw extensions
         C{$device-uid}, C{$device-tags}, C{$cert-serial} and
         C{$device-user} replaced.
  3. With C{identity-assertion enable}, a JWT (RFC 7519) signed with ES256
     by the gateway's key, in C{identity-assertion-header}: claims C{iss}
     (C{ztnagw:<hostname>}), C{aud} (the request's host, lower case, no
     port: a real server checks that it is its own name), C{sub} and
     C{device_uid} (the UID), C{cert_serial}, C{tags} (as policies name
     them), C{policy_id}, C{api_gateway_id}, C{user} and C{groups} when
     known, C{iat}, C{nbf}, C{exp} (C{iat} + C{identity-assertion-ttl}) and
     a random C{jti}.

The public keys are served as a JWKS (RFC 7517) at L{JWKS_PATH} on every
VIP, by the gateway itself, before any matching or access decision: a
C{GET} or C{HEAD} of exactly that path (any query, any host) never reaches
a real server and needs no device certificate.

Keys (L{IdentityKeys}): every C{*.key} file (PEM, P-256) of
C{<state-dir>/identity/} is published; the newest signs.  The first start
creates one, mode 0600.  The key id is the RFC 7638 thumbprint.  To rotate:
add a new key file (C{openssl genpkey -algorithm EC -pkeyopt
ec_paramgen_curve:P-256 -out <state-dir>/identity/<name>.key}, mode 0600)
and restart; real servers that fetch the JWKS learn the new key while the
old one still verifies the tokens in flight; delete the old file once the
longest C{identity-assertion-ttl} has passed, and restart.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import urllib.parse
import uuid as _uuid
from typing import Iterable, Sequence

from attrs import frozen
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from ztnagw.config.model import Config, WebProxyProfile
from ztnagw.gateway.persistence import createOnce
from ztnagw.gateway.pool import hostOf
from ztnagw.keyfiles import privateFileProblem

__all__ = [
    "DEFAULT_IDENTITY_HEADER",
    "IDENTITY_FIELDS",
    "JWKS_PATH",
    "IdentityHeaders",
    "IdentityKeys",
    "IdentityUnavailable",
    "RequestIdentity",
    "isJwksRequest",
]

#: Where the public keys are served on every VIP.
JWKS_PATH = b"/.well-known/ztnagw/jwks.json"

#: The identity assertion's header unless a profile names another.
DEFAULT_IDENTITY_HEADER = "X-ZTNA-Identity"

#: Fields that say who the client is; a client's copy never reaches a real
#: server.
IDENTITY_FIELDS = frozenset(
    {
        b"client-ip",
        b"x-forwarded-client-cert",
        b"front-end-https",
        b"x-authenticated-user",
        b"x-authenticated-groups",
        DEFAULT_IDENTITY_HEADER.lower().encode("ascii"),
    }
)

#: The directory of the identity keys, in the state directory.
KEY_DIRECTORY = "identity"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def isJwksRequest(method: bytes, path: bytes) -> bool:
    """
    Whether a request asks for the gateway's JWKS: C{GET} or C{HEAD} of
    L{JWKS_PATH}, with any query.
    """
    return method in (b"GET", b"HEAD") and path.split(b"?", 1)[0] == JWKS_PATH


@frozen
class _Key:
    kid: str
    key: ec.EllipticCurvePrivateKey
    jwk: dict  # type: ignore[type-arg]


def _jwk(public: ec.EllipticCurvePublicKey) -> tuple[str, dict]:  # type: ignore[type-arg]
    numbers = public.public_numbers()
    x = _b64(numbers.x.to_bytes(32, "big"))
    y = _b64(numbers.y.to_bytes(32, "big"))
    # RFC 7638: the thumbprint of the required members, in order.
    canonical = json.dumps({"crv": "P-256", "kty": "EC", "x": x, "y": y}, separators=(",", ":"), sort_keys=True)
    kid = _b64(hashlib.sha256(canonical.encode("ascii")).digest())
    return kid, {"kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": kid, "alg": "ES256", "use": "sig"}


class IdentityUnavailable(Exception):
    """
    An identity assertion is asked for and cannot be made: the request
    must not go out without it.
    """


class IdentityKeys:
    """
    The gateway's identity keys (see the module docstring).

    @ivar kid: the key id of the signing key.
    """

    def __init__(self, keys: Sequence[ec.EllipticCurvePrivateKey]) -> None:
        """
        @param keys: the keys, the signing one first.
        @raise ValueError: no key, or one not on P-256.
        """
        if not keys:
            raise ValueError("no identity key")
        loaded = []
        for key in keys:
            if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
                raise ValueError("identity keys are P-256 (ES256) keys")
            kid, jwk = _jwk(key.public_key())
            loaded.append(_Key(kid, key, jwk))
        self._keys = loaded
        self.kid = loaded[0].kid
        self._jwks = json.dumps({"keys": [k.jwk for k in loaded]}, separators=(",", ":")).encode("ascii")

    @classmethod
    def load(cls, stateDir: str) -> IdentityKeys:
        """
        The keys of C{<stateDir>/identity/}, one created (mode 0600) when
        there is none.  Reads files: call it before the reactor runs.

        @raise OSError: a key file cannot be read, is readable by others, or
            is not a P-256 private key.
        """
        directory = os.path.join(stateDir, KEY_DIRECTORY)
        names = sorted(n for n in os.listdir(directory) if n.endswith(".key")) if os.path.isdir(directory) else []
        if not names:
            key = ec.generate_private_key(ec.SECP256R1())
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            createOnce(os.path.join(directory, "identity.key"), pem)
            names = ["identity.key"]
        found = []
        for name in names:
            path = os.path.join(directory, name)
            problem = privateFileProblem(path)
            if problem is not None:
                raise OSError(f"{path}: {problem}")
            with open(path, "rb") as f:
                data = f.read()
            try:
                key = serialization.load_pem_private_key(data, None)
            except (ValueError, TypeError) as e:
                raise OSError(f"{path}: not an unencrypted PEM private key ({e})")
            if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
                raise OSError(f"{path}: identity keys are P-256 (ES256) EC keys")
            found.append((os.stat(path).st_mtime, name, key))
        # The newest signs (the name breaks ties, so the choice is stable).
        found.sort(key=lambda item: (item[0], item[1]), reverse=True)
        return cls([key for _, _, key in found])

    def jwks(self) -> bytes:
        """
        The JWKS document: every public key.
        """
        return self._jwks

    def sign(self, claims: dict) -> bytes:  # type: ignore[type-arg]
        """
        A compact JWS (ES256) of C{claims} with the signing key.
        """
        header = {"alg": "ES256", "typ": "JWT", "kid": self.kid}
        signingInput = (
            _b64(json.dumps(header, separators=(",", ":")).encode("utf-8"))
            + "."
            + _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode("utf-8"))
        ).encode("ascii")
        der = self._keys[0].key.sign(signingInput, ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return signingInput + b"." + _b64(r.to_bytes(32, "big") + s.to_bytes(32, "big")).encode("ascii")


@frozen
class RequestIdentity:
    """
    What the gateway knows about the client of one accepted request.

    @ivar clientIp: the client's address.
    @ivar uid: the device UID, when a device certificate was presented.
    @ivar certSerial: its serial.
    @ivar certificate: the device certificate itself.
    @ivar tags: the device's tags, as policies name them.
    @ivar user: the authenticated user, when there is one.
    @ivar groups: the authenticated user's groups.
    @ivar deviceUser: the user the device's agent reported.
    @ivar policyId: the policy that accepted the request.
    @ivar apiGatewayId: the api-gateway that serves it.
    """

    clientIp: str
    uid: str | None = None
    certSerial: str | None = None
    certificate: x509.Certificate | None = None
    tags: tuple[str, ...] = ()
    user: str | None = None
    groups: tuple[str, ...] = ()
    deviceUser: str | None = None
    policyId: int | None = None
    apiGatewayId: int | None = None


def _xfcc(certificate: x509.Certificate, uid: str | None) -> bytes:
    pem = certificate.public_bytes(serialization.Encoding.PEM)
    parts = [
        "Hash=" + certificate.fingerprint(hashes.SHA256()).hex(),
        'Subject="' + certificate.subject.rfc4514_string().replace('"', '\\"') + '"',
    ]
    if uid:
        parts.append("URI=" + uid)
    parts.append('Cert="' + urllib.parse.quote(pem.decode("ascii"), safe="") + '"')
    return ";".join(parts).encode("ascii")


def _expand(content: str, identity: RequestIdentity) -> str:
    values = {
        "$client-ip": identity.clientIp,
        "$user": identity.user or "",
        "$device-uid": identity.uid or "",
        "$device-tags": ",".join(identity.tags),
        "$cert-serial": identity.certSerial or "",
        "$device-user": identity.deviceUser or "",
    }
    # Longest names first, so that $user does not eat $user-something.
    for name in sorted(values, key=len, reverse=True):
        content = content.replace(name, values[name])
    return content


def _value(text: str) -> bytes:
    # Header values are bytes without CR, LF or NUL; anything else a
    # reported value could hold is dropped rather than sent broken.
    return "".join(c for c in text if c >= " " and c != "\x7f").encode("utf-8", "replace")


class IdentityHeaders:
    """
    The identity rules of the process (see the module docstring): the
    profiles of the configuration and the identity keys.
    """

    def __init__(self, config: Config, keys: IdentityKeys | None, issuer: str) -> None:
        """
        @param keys: the identity keys; without them a request whose
            profile asks for an assertion fails (L{IdentityUnavailable}).
        @param issuer: the C{iss} claim.
        """
        self._config = config
        self.keys = keys
        self._issuer = issuer
        names = set(IDENTITY_FIELDS)
        for profile in config.webProxyProfiles.values():
            names.add(profile.identityAssertionHeader.lower().encode("ascii"))
        self.removed = frozenset(names)

    def profileOf(self, policyKind: str | None, policyId: int | None) -> WebProxyProfile | None:
        """
        The web-proxy profile of the policy that accepted a request.
        """
        from ztnagw.logs import PROXY_POLICY

        if policyId is None:
            return None
        table = self._config.proxyPolicies if policyKind == PROXY_POLICY else self._config.policies
        policy = table.get(policyId)
        name = getattr(policy, "webproxyProfile", None)
        return self._config.webProxyProfiles.get(name) if name else None

    def requestPairs(
        self,
        pairs: Iterable[tuple[bytes, bytes]],
        profile: WebProxyProfile | None,
        identity: RequestIdentity,
        host: bytes | None,
        now: float,
    ) -> list[tuple[bytes, bytes]]:
        """
        The fields of a request for its real server: C{pairs} (already
        relayed by the proxy's rules) with the identity rules applied.
        """
        removed = self.removed
        out = [(n, v) for n, v in pairs if n.lower() not in removed]
        if profile is None:
            return out
        if profile.headerXForwardedFor == "remove":
            out = [(n, v) for n, v in out if n.lower() != b"x-forwarded-for"]
        if profile.headerClientIp == "add":
            out.append((b"Client-IP", identity.clientIp.encode("ascii")))
        if profile.headerXForwardedClientCert == "add" and identity.certificate is not None:
            out.append((b"X-Forwarded-Client-Cert", _xfcc(identity.certificate, identity.uid)))
        if profile.headerFrontEndHttps == "add":
            out.append((b"Front-End-Https", b"On"))
        if profile.headerXAuthenticatedUser == "add" and identity.user:
            out.append((b"X-Authenticated-User", _value(identity.user)))
        if profile.headerXAuthenticatedGroups == "add" and identity.groups:
            out.append((b"X-Authenticated-Groups", _value(",".join(identity.groups))))
        out = _custom(out, profile, identity, "request")
        if profile.identityAssertion:
            if self.keys is None:
                raise IdentityUnavailable("the gateway has no identity key to sign the assertion")
            token = self.keys.sign(self.claims(profile, identity, host, now))
            out.append((profile.identityAssertionHeader.encode("ascii"), token))
        return out

    def responsePairs(
        self,
        pairs: Iterable[tuple[bytes, bytes]],
        profile: WebProxyProfile | None,
        identity: RequestIdentity,
    ) -> list[tuple[bytes, bytes]]:
        """
        The fields of a response for the client, with the profile's
        C{add-to-response} and C{remove-from-response} headers applied.
        """
        out = list(pairs)
        if profile is None or not profile.headers:
            return out
        return _custom(out, profile, identity, "response")

    def claims(
        self,
        profile: WebProxyProfile,
        identity: RequestIdentity,
        host: bytes | None,
        now: float,
    ) -> dict:  # type: ignore[type-arg]
        """
        The claims of an identity assertion (see the module docstring).
        """
        issued = int(now)
        claims: dict = {  # type: ignore[type-arg]
            "iss": self._issuer,
            "aud": hostOf(host) or "",
            "iat": issued,
            "nbf": issued,
            "exp": issued + profile.identityAssertionTtl,
            "jti": _uuid.uuid4().hex,
            "tags": list(identity.tags),
        }
        if identity.uid is not None:
            claims["sub"] = identity.uid
            claims["device_uid"] = identity.uid
        if identity.certSerial is not None:
            claims["cert_serial"] = identity.certSerial
        if identity.policyId is not None:
            claims["policy_id"] = identity.policyId
        if identity.apiGatewayId is not None:
            claims["api_gateway_id"] = identity.apiGatewayId
        if identity.user:
            claims["user"] = identity.user
        if identity.groups:
            claims["groups"] = list(identity.groups)
        return claims


def _custom(
    pairs: list[tuple[bytes, bytes]],
    profile: WebProxyProfile,
    identity: RequestIdentity,
    direction: str,
) -> list[tuple[bytes, bytes]]:
    for header in profile.headers.values():
        if header.name is None:
            continue
        action = header.action
        name = header.name.encode("ascii")
        lower = name.lower()
        if action == f"remove-from-{direction}":
            pairs = [(n, v) for n, v in pairs if n.lower() != lower]
            continue
        if action != f"add-to-{direction}":
            continue
        text = _expand(header.content or "", identity)
        value = _value(text)
        if header.base64Encoding:
            value = base64.b64encode(text.encode("utf-8"))
        present = any(n.lower() == lower for n, _ in pairs)
        if header.addOption == "new":
            pairs = [(n, v) for n, v in pairs if n.lower() != lower]
        elif header.addOption == "new-on-not-found" and present:
            continue
        pairs.append((name, value))
    return pairs
