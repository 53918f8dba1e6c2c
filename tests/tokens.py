"""Case-named token builders, signed by python-jose (through ``_jose.sign``), PyJWT and joserfc.

Three independent implementations sign the valid cases, which proves the verifier interoperates
with what real issuers emit. The malformed cases are assembled byte by byte by :func:`compact`,
which signs with ``cryptography`` directly, so each case is refused for the one defect it carries
and not for a bad signature.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal

import jwt as pyjwt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from joserfc import jwt as rfc_jwt
from joserfc.jwk import ECKey as RfcECKey
from joserfc.jwk import RSAKey as RfcRSAKey
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from fastapi_authgate._jose import JoseKey, generate_private_jwk, public_jwk, sign

Library = Literal["jose", "pyjwt", "joserfc"]

RSA_KID = "rsa-1"
EC_KID = "ec-1"
MISSING: Any = object()
"""Pass as a claim value to leave that claim out."""


@cache
def private_jwk(alg: str, kid: str) -> dict[str, Any]:
    """A private JWK, generated once per ``(alg, kid)`` for the whole test run."""
    return generate_private_jwk(alg, kid=kid)


def rsa_jwk() -> dict[str, Any]:
    return private_jwk("RS256", RSA_KID)


def ec_jwk() -> dict[str, Any]:
    return private_jwk("ES256", EC_KID)


def attacker_jwk(alg: str = "RS256", kid: str = RSA_KID) -> dict[str, Any]:
    """A key the issuer never published, carrying whatever ``kid`` the attacker likes."""
    return {**private_jwk(alg, "attacker"), "kid": kid}


@cache
def rsa1024_jwk(kid: str = "rsa-1024") -> dict[str, Any]:
    """A weak RSA key (1024 bits), which the verifier must refuse to use."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    data: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(key))
    return {**data, "kid": kid, "alg": "RS256", "use": "sig"}


def default_jwks() -> dict[str, Any]:
    """The JWKS the fake issuer serves by default: one RSA and one EC key."""
    return {"keys": [public_jwk(rsa_jwk()), public_jwk(ec_jwk())]}


@dataclass
class TokenIssuer:
    """What a token should claim: issuer, audience and the time it is minted at."""

    iss: str
    audience: str | None = "api://test"
    clock: Callable[[], float] = time.time
    sub: str = "user-1"
    ttl: int = 300
    extra: dict[str, Any] = field(default_factory=dict)

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(self.clock())
        claims: dict[str, Any] = {
            "iss": self.iss,
            "sub": self.sub,
            "iat": now,
            "nbf": now,
            "exp": now + self.ttl,
            "scope": "read write",
            **self.extra,
        }
        if self.audience is not None:
            claims["aud"] = self.audience
        claims.update(overrides)
        return {name: value for name, value in claims.items() if value is not MISSING}


# ------------------------------------------------------------------------------- raw assembly


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def segment(part: Mapping[str, Any] | bytes | str) -> str:
    """A JSON object, or raw bytes/text taken as they are, as one base64url segment."""
    if isinstance(part, Mapping):
        return b64(json.dumps(part, separators=(",", ":")).encode())
    return b64(part.encode() if isinstance(part, str) else part)


@cache
def _loaded(kind: str, jwk_json: str) -> Any:
    """A JWK loaded once per run by the named library (loading a private key is slow)."""
    jwk = json.loads(jwk_json)
    if kind == "jose":
        return JoseKey.from_jwk(jwk)
    if kind == "joserfc":
        return (RfcRSAKey if jwk["kty"] == "RSA" else RfcECKey).import_key(jwk)
    return (RSAAlgorithm if jwk["kty"] == "RSA" else ECAlgorithm).from_jwk(jwk)


def load(kind: Literal["jose", "pyjwt", "joserfc"], jwk: Mapping[str, Any]) -> Any:
    material = dict(jwk) if kind == "jose" else {k: v for k, v in jwk.items() if k != "kid"}
    return _loaded(kind, json.dumps(material, sort_keys=True))


def raw_signature(signing_input: bytes, jwk: Mapping[str, Any], alg: str) -> bytes:
    """Sign with ``cryptography`` directly (PyJWT only converts the JWK)."""
    digest = {"256": hashes.SHA256(), "384": hashes.SHA384(), "512": hashes.SHA512()}[alg[2:]]
    if alg.startswith("RS"):
        rsa_key: Any = load("pyjwt", jwk)
        return rsa_key.sign(signing_input, padding.PKCS1v15(), digest)  # type: ignore[no-any-return]
    if alg.startswith("ES"):
        ec_key: Any = load("pyjwt", jwk)
        r, s = decode_dss_signature(ec_key.sign(signing_input, ec.ECDSA(digest)))
        size = (ec_key.curve.key_size + 7) // 8
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    raise ValueError(alg)


def compact(
    header: Mapping[str, Any] | bytes | str,
    payload: Mapping[str, Any] | bytes | str,
    *,
    jwk: Mapping[str, Any] | None = None,
    alg: str = "RS256",
) -> str:
    """Assemble ``header.payload.signature``, signed with ``jwk`` (default: the issuer's RSA)."""
    signing_input = segment(header) + "." + segment(payload)
    signature = raw_signature(signing_input.encode(), jwk or rsa_jwk(), alg)
    return signing_input + "." + b64(signature)


def header(alg: str = "RS256", kid: str | None = RSA_KID, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"alg": alg, "typ": "JWT", **extra}
    if kid is not None:
        data["kid"] = kid
    return data


# ------------------------------------------------------------------------------ case builders


def build_valid_token(
    issuer: TokenIssuer, *, alg: str = "RS256", library: Library = "jose", **claims: Any
) -> str:
    """A token the verifier must accept, signed by the chosen library with the issuer's key."""
    jwk = rsa_jwk() if alg.startswith("RS") else ec_jwk()
    payload = issuer.claims(**claims)
    if library == "jose":
        return sign(payload, load("jose", {**jwk, "alg": alg}))
    if library == "pyjwt":
        key = load("pyjwt", jwk)
        return pyjwt.encode(payload, key, algorithm=alg, headers={"kid": jwk["kid"]})
    rfc_key = load("joserfc", jwk)
    return rfc_jwt.encode({"alg": alg, "kid": jwk["kid"]}, payload, rfc_key, algorithms=[alg])


def build_expired_token(issuer: TokenIssuer, *, ago: int = 3600) -> str:
    now = int(issuer.clock())
    return build_valid_token(issuer, iat=now - ago - 60, nbf=now - ago - 60, exp=now - ago)


def build_not_yet_valid_token(issuer: TokenIssuer, *, ahead: int = 3600) -> str:
    return build_valid_token(issuer, nbf=int(issuer.clock()) + ahead)


def build_future_iat_token(issuer: TokenIssuer, *, ahead: int = 3600) -> str:
    return build_valid_token(issuer, iat=int(issuer.clock()) + ahead)


def build_wrong_issuer_token(issuer: TokenIssuer) -> str:
    return build_valid_token(issuer, iss="https://evil.example")


def build_wrong_audience_token(issuer: TokenIssuer) -> str:
    return build_valid_token(issuer, aud="api://someone-else")


def build_wrong_key_token(issuer: TokenIssuer, *, kid: str = RSA_KID) -> str:
    """Signed by a key the issuer never published, claiming the issuer's ``kid``."""
    return compact(header(kid=kid), issuer.claims(), jwk=attacker_jwk(kid=kid))


def build_unknown_kid_token(issuer: TokenIssuer, *, kid: str = "no-such-key") -> str:
    return compact(header(kid=kid), issuer.claims(), jwk=attacker_jwk(kid=kid))


def build_none_alg_token(issuer: TokenIssuer, *, spelling: str = "none") -> str:
    """Unsigned (empty signature), ``alg`` spelled as given."""
    return segment(header(alg=spelling)) + "." + segment(issuer.claims()) + "."


def build_hs256_confusion_token(issuer: TokenIssuer) -> str:
    """HMAC-SHA256 keyed with the issuer's RSA public key PEM: the classic key-confusion forgery."""
    public: Any = load("pyjwt", public_jwk(rsa_jwk()))
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = segment(header(alg="HS256")) + "." + segment(issuer.claims())
    mac = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64(mac)


def build_tampered_token(issuer: TokenIssuer) -> str:
    """A valid token whose payload was swapped after signing (the signature no longer fits)."""
    head, _, sig = build_valid_token(issuer).split(".")
    return head + "." + segment(issuer.claims(sub="admin")) + "." + sig


def build_jwe_token() -> str:
    """Five parts, as an encrypted JWT (JWE compact serialization) has."""
    return ".".join(
        [segment({"alg": "RSA-OAEP", "enc": "A256GCM"}), b64(b"k" * 32), b64(b"iv"), "", b64(b"t")]
    )
