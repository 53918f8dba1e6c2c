"""Adversarial tokens against a real app: the gate in front, the fake issuer's JWKS over real HTTP.

Every case asserts the exact status and the ``WWW-Authenticate`` error code, and that nothing the
client sent (token, ``kid``) is echoed back. None may ever be a 500.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Security

from fastapi_authgate import AuthContext, AuthGate, require_user
from fastapi_authgate._jose import public_jwk
from fastapi_authgate.verifiers.jwks import JWKSVerifier
from tests.fakes.issuer import FakeIssuer
from tests.tokens import (
    EC_KID,
    MISSING,
    RSA_KID,
    TokenIssuer,
    attacker_jwk,
    b64,
    build_expired_token,
    build_future_iat_token,
    build_hs256_confusion_token,
    build_jwe_token,
    build_none_alg_token,
    build_not_yet_valid_token,
    build_tampered_token,
    build_unknown_kid_token,
    build_valid_token,
    build_wrong_audience_token,
    build_wrong_issuer_token,
    build_wrong_key_token,
    compact,
    default_jwks,
    ec_jwk,
    header,
    private_jwk,
    rsa1024_jwk,
    segment,
)

AUDIENCE = "api://adversarial"
P384_KID = "ec-384-claims-es256"
WEAK_KID = "rsa-1024"


def issuer_jwks() -> dict[str, Any]:
    """The issuer's keys plus two it should never use: a P-384 key posing as ES256 and RSA 1024."""
    p384 = {**public_jwk(private_jwk("ES384", P384_KID)), "alg": "ES256"}
    return {"keys": [*default_jwks()["keys"], p384, public_jwk(rsa1024_jwk(WEAK_KID))]}


@pytest.fixture(scope="module")
def issuer() -> Iterator[FakeIssuer]:
    with FakeIssuer(issuer_jwks()).running() as fake:
        yield fake


@pytest.fixture
def minter(issuer: FakeIssuer) -> TokenIssuer:
    return TokenIssuer(iss=issuer.issuer, audience=AUDIENCE)


def build_app(issuer: FakeIssuer) -> tuple[FastAPI, JWKSVerifier]:
    verifier = JWKSVerifier(jwks_url=issuer.jwks_url, issuer=issuer.issuer, audience=AUDIENCE)
    gate = AuthGate(verifier=verifier, realm="api")
    app = FastAPI()
    gate.install(app)

    @app.get("/me")
    async def me(auth: AuthContext = Security(require_user)) -> dict[str, str]:
        return {"sub": auth.subject, "credential": auth.credential}

    return app, verifier


@pytest.fixture
async def client(issuer: FakeIssuer) -> AsyncIterator[httpx.AsyncClient]:
    issuer.reset(issuer_jwks())
    app, verifier = build_app(issuer)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
        yield http
    await verifier.aclose()


Builder = Callable[[TokenIssuer], str]


@dataclass(frozen=True)
class Case:
    """One request: a token, where it goes, and the answer it must get."""

    name: str
    token: Builder
    status: int = 401
    error: str | None = "invalid_token"
    scheme: str = "Bearer"
    cookie: bool = False
    secret: str | None = None  # text that must never be echoed back
    why: str | None = None  # part of the expected error_description

    def __str__(self) -> str:
        return self.name


def claims(**overrides: Any) -> Builder:
    return lambda m: build_valid_token(m, **overrides)


def raw(head: Any, payload: Callable[[TokenIssuer], Any], **kwargs: Any) -> Builder:
    return lambda m: compact(head, payload(m), **kwargs)


def resign(mutate: Callable[[str], str]) -> Builder:
    return lambda m: mutate(build_valid_token(m))


def with_signature(sig: Callable[[bytes], bytes]) -> Builder:
    def build(m: TokenIssuer) -> str:
        import base64

        head, body, signature = build_valid_token(m).split(".")
        raw_sig = base64.urlsafe_b64decode(signature + "==")
        return f"{head}.{body}.{b64(sig(raw_sig))}"

    return build


def _flip_bit(sig: bytes) -> bytes:
    return bytes([sig[0] ^ 0x01]) + sig[1:]


def _der_es256(m: TokenIssuer) -> str:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from jwt.algorithms import ECAlgorithm

    signing_input = segment(header("ES256", EC_KID)) + "." + segment(m.claims())
    key: Any = ECAlgorithm.from_jwk(ec_jwk())
    return signing_input + "." + b64(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))


def _dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"))


LONG_KID = "k" * 4000
TRAVERSAL_KID = "../../../../etc/passwd"
SQL_KID = "' OR '1'='1' --"
ATTACKER_URL = "https://attacker.example/jwks.json"

CASES = [
    # --- accepted --------------------------------------------------------------------------
    Case("valid-jose-rs256", claims(), 200, None),
    Case("valid-jose-es256", lambda m: build_valid_token(m, alg="ES256"), 200, None),
    Case("valid-pyjwt-rs256", lambda m: build_valid_token(m, library="pyjwt"), 200, None),
    Case(
        "valid-pyjwt-es256", lambda m: build_valid_token(m, alg="ES256", library="pyjwt"), 200, None
    ),
    Case("valid-joserfc-rs256", lambda m: build_valid_token(m, library="joserfc"), 200, None),
    Case(
        "valid-joserfc-es256",
        lambda m: build_valid_token(m, alg="ES256", library="joserfc"),
        200,
        None,
    ),
    Case("lowercase-bearer-scheme", claims(), 200, None, scheme="bearer"),
    Case("valid-cookie", claims(), 200, None, cookie=True),
    Case("aud-list-with-ours", claims(aud=["other", AUDIENCE]), 200, None),
    Case("expired-within-leeway", lambda m: build_expired_token(m, ago=10), 200, None),
    Case("typ-at+jwt", raw(header(typ="at+jwt"), lambda m: m.claims()), 200, None),
    # --- time claims -------------------------------------------------------------------------
    Case("expired", build_expired_token, why="expired"),
    Case("expired-past-leeway", lambda m: build_expired_token(m, ago=31), why="expired"),
    Case("nbf-in-future", build_not_yet_valid_token, why="not valid yet"),
    Case("iat-in-future", build_future_iat_token, why="future"),
    Case("exp-string", claims(exp="9999999999"), why="expiry is invalid"),
    Case("exp-null", claims(exp=None), why="expiry is invalid"),
    Case("exp-bool", claims(exp=True), why="expiry is invalid"),
    Case(
        "exp-inf",
        raw(header(), lambda m: _dumps(m.claims(exp=0)).replace('"exp":0', '"exp":1e999')),
        why="expiry is invalid",
    ),
    Case("exp-nan-literal", raw(header(), lambda m: '{"sub":"u","exp":NaN}')),
    Case("exp-huge", claims(exp=10**20)),
    Case("exp-missing", claims(exp=MISSING), why="no expiry"),
    Case("nbf-string", claims(nbf="0")),
    Case("iat-list", claims(iat=[1])),
    # --- subject, issuer, audience ----------------------------------------------------------
    Case("sub-missing", claims(sub=MISSING), why="subject"),
    Case("sub-empty", claims(sub="")),
    Case("sub-number", claims(sub=12345)),
    Case("sub-object", claims(sub={"id": "admin"})),
    Case("iss-wrong", build_wrong_issuer_token),
    Case("iss-missing", claims(iss=MISSING), why="issuer"),
    Case("iss-number", claims(iss=1)),
    Case("iss-trailing-slash", lambda m: build_valid_token(m, iss=m.iss + "/")),
    Case("aud-wrong", build_wrong_audience_token, why="audience"),
    Case("aud-list-without-ours", claims(aud=["a", "b"])),
    Case("aud-missing", claims(aud=MISSING)),
    Case("aud-number", claims(aud=7)),
    # --- algorithm attacks -------------------------------------------------------------------
    Case("alg-none", build_none_alg_token, why="Unsigned"),
    Case("alg-None", lambda m: build_none_alg_token(m, spelling="None")),
    Case("alg-NONE", lambda m: build_none_alg_token(m, spelling="NONE")),
    Case("alg-none-with-signature", resign(lambda t: segment(header("none")) + t[t.index(".") :])),
    Case("alg-missing", raw({"typ": "JWT", "kid": RSA_KID}, lambda m: m.claims())),
    Case("alg-number", raw({"alg": 256, "kid": RSA_KID}, lambda m: m.claims())),
    Case("alg-RS512-not-allowed", raw(header("RS512"), lambda m: m.claims(), alg="RS512")),
    Case("alg-PS256", resign(lambda t: segment(header("PS256")) + t[t.index(".") :])),
    Case("hs256-key-confusion", build_hs256_confusion_token, why="algorithm"),
    Case("es256-header-on-rsa-kid", resign(lambda t: segment(header("ES256")) + t[t.index(".") :])),
    Case("rs256-header-on-ec-kid", raw(header("RS256", EC_KID), lambda m: m.claims())),
    Case("es256-der-signature", _der_es256),
    Case(
        "es256-signed-by-p384-key",
        raw(
            header("ES256", P384_KID),
            lambda m: m.claims(),
            jwk=private_jwk("ES384", P384_KID),
            alg="ES256",
        ),
    ),
    Case(
        "rsa-1024-key-in-jwks",
        raw(header("RS256", WEAK_KID), lambda m: m.claims(), jwk=rsa1024_jwk(WEAK_KID)),
    ),
    # --- keys and kids ---------------------------------------------------------------------
    Case("signed-by-other-key", build_wrong_key_token, why="signature"),
    Case("unknown-kid", build_unknown_kid_token, secret="no-such-key", why="key is unknown"),
    Case(
        "kid-path-traversal",
        lambda m: build_unknown_kid_token(m, kid=TRAVERSAL_KID),
        secret=TRAVERSAL_KID,
    ),
    Case("kid-sql", lambda m: build_unknown_kid_token(m, kid=SQL_KID), secret="OR '1'"),
    Case("kid-very-long", lambda m: build_unknown_kid_token(m, kid=LONG_KID), secret=LONG_KID),
    Case("kid-number", raw({"alg": "RS256", "kid": 1}, lambda m: m.claims())),
    Case("kid-missing-several-keys", raw(header(kid=None), lambda m: m.claims())),
    Case(
        "jku-injection",
        raw(
            header(kid="attacker", jku=ATTACKER_URL),
            lambda m: m.claims(),
            jwk=attacker_jwk(kid="attacker"),
        ),
        secret="attacker.example",
    ),
    Case(
        "x5u-injection",
        raw(header(kid="attacker", x5u=ATTACKER_URL), lambda m: m.claims(), jwk=attacker_jwk()),
    ),
    Case(
        "jwk-header-injection",
        raw(
            header(jwk=public_jwk(attacker_jwk())),
            lambda m: m.claims(),
            jwk=attacker_jwk(),
        ),
    ),
    Case(
        "x5c-injection",
        raw(
            header(x5c=["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"]),
            lambda m: m.claims(),
            jwk=attacker_jwk(),
        ),
    ),
    # --- header extensions -------------------------------------------------------------------
    Case(
        "crit-unknown",
        raw({**header(crit=["urn:evil"]), "urn:evil": 1}, lambda m: m.claims()),
        why="critical",
    ),
    Case("crit-empty", raw(header(crit=[]), lambda m: m.claims())),
    Case("b64-false", raw(header(b64=False, crit=["b64"]), lambda m: m.claims())),
    Case("b64-false-without-crit", raw(header(b64=False), lambda m: m.claims())),
    Case("enc-in-header", raw(header(enc="A256GCM"), lambda m: m.claims())),
    # --- structure -----------------------------------------------------------------------------
    Case("jwe-five-parts", lambda m: build_jwe_token(), why="Encrypted"),
    Case("two-parts", resign(lambda t: t.rsplit(".", 1)[0])),
    Case("four-parts", resign(lambda t: t + ".AAAA")),
    Case("one-part", lambda m: "eyJhbGciOiJSUzI1NiJ9"),
    Case("empty-segments", lambda m: ".."),
    Case("padding-equals", resign(lambda t: t + "==")),
    Case(
        "non-base64url-plus-slash", resign(lambda t: t.replace("-", "+").replace("_", "/") + "+/")
    ),
    Case("header-not-json", raw("not json at all", lambda m: m.claims())),
    Case("header-json-array", raw('["alg","RS256"]', lambda m: m.claims())),
    Case("header-json-string", raw('"RS256"', lambda m: m.claims())),
    Case("payload-json-array", raw(header(), lambda m: "[1,2,3]")),
    Case("payload-not-json", raw(header(), lambda m: "sub=admin")),
    Case("payload-invalid-utf8", raw(header(), lambda m: b"\xff\xfe\xfd")),
    Case("payload-bom", raw(header(), lambda m: "\ufeff" + json.dumps(m.claims()))),
    Case(
        "duplicate-sub",
        raw(header(), lambda m: _dumps(m.claims())[:-1] + ',"sub":"admin"}'),
        why="malformed",
    ),
    Case("duplicate-alg", raw('{"alg":"RS256","kid":"rsa-1","alg":"none"}', lambda m: m.claims())),
    Case("depth-bomb-100k", lambda m: segment(header()) + "." + segment("[" * 100_000) + ".AAAA"),
    Case(
        "depth-bomb-within-cap", raw(header(), lambda m: "[" * 2500 + "]" * 2500), why="malformed"
    ),
    Case("huge-valid-token", claims(padding="x" * 9000), why="too large"),
    # --- signatures ----------------------------------------------------------------------------
    Case("signature-truncated", with_signature(lambda s: s[:-16])),
    Case("signature-empty", resign(lambda t: t.rsplit(".", 1)[0] + ".")),
    Case("signature-flipped-bit", with_signature(_flip_bit)),
    Case("signature-zeroes", with_signature(lambda s: bytes(len(s)))),
    Case("signature-doubled", with_signature(lambda s: s + s)),
    Case("payload-tampered", build_tampered_token, why="signature"),
    # --- transport -----------------------------------------------------------------------------
    Case("unicode-junk", lambda m: "ünïcødé.☃.💥"),
    Case("bearer-empty-token", lambda m: ""),
    Case("bearer-whitespace-token", lambda m: "   "),
    Case("forged-cookie", build_wrong_key_token, cookie=True),
    Case("garbage-cookie", lambda m: "not-a-token", cookie=True),
    Case("expired-cookie", build_expired_token, cookie=True, why="expired"),
    Case("basic-scheme-only", claims(), 401, None, scheme="Basic"),
]


def test_enough_cases() -> None:
    assert len(CASES) >= 60
    assert len({case.name for case in CASES}) == len(CASES)


@pytest.mark.anyio
@pytest.mark.parametrize("case", CASES, ids=str)
async def test_adversarial_token(
    case: Case, client: httpx.AsyncClient, minter: TokenIssuer
) -> None:
    token = case.token(minter)
    headers: dict[str, Any] = {}
    if case.cookie:
        headers["Cookie"] = f"authgate_session={token}"
    else:
        headers["Authorization"] = f"{case.scheme} {token}".encode()
    response = await client.get("/me", headers=headers)
    assert response.status_code == case.status, response.text
    if case.status == 200:
        assert response.json() == {
            "sub": "user-1",
            "credential": "cookie" if case.cookie else "bearer",
        }
        return
    body = response.json()
    challenge = response.headers["www-authenticate"]
    if case.error is None:
        assert challenge == 'Bearer realm="api"'
        assert body["error"] == "not_authenticated"
    else:
        assert challenge.startswith(f'Bearer realm="api", error="{case.error}", error_description=')
        assert body["error"] == case.error
    if case.why is not None:
        assert case.why in body["detail"]
    echoed = challenge + response.text
    if len(token) > 16:
        assert token not in echoed and token[-16:] not in echoed
    if case.secret is not None:
        assert case.secret not in echoed


@pytest.mark.anyio
async def test_no_credential_is_a_plain_challenge(client: httpx.AsyncClient) -> None:
    response = await client.get("/me")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="api"'


@pytest.mark.anyio
async def test_issuer_down_is_503_with_retry_after(
    issuer: FakeIssuer, client: httpx.AsyncClient, minter: TokenIssuer
) -> None:
    issuer.mode = "error"
    response = await client.get(
        "/me", headers={"Authorization": f"Bearer {build_valid_token(minter)}"}
    )
    assert response.status_code == 503
    assert int(response.headers["retry-after"]) >= 1
    assert response.json()["error"] == "provider_unavailable"
    assert "www-authenticate" not in response.headers


@pytest.mark.anyio
async def test_forged_kid_flood_over_http_is_throttled(
    issuer: FakeIssuer, client: httpx.AsyncClient, minter: TokenIssuer
) -> None:
    for index in range(50):
        token = build_unknown_kid_token(minter, kid=f"forged-{index}")
        response = await client.get("/me", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401
    assert issuer.jwks_hits <= 2
