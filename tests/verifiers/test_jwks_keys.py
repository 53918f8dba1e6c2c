"""KeyManager regressions: one malformed JWKS entry is skipped, never a crash for every request."""

from __future__ import annotations

import base64
import logging
from typing import Any

import httpx
import pytest

from fastapi_authgate._jose import KeySet, generate_private_jwk, public_jwk
from fastapi_authgate.context import Credentials
from fastapi_authgate.verifiers.jwks import JWKSVerifier
from tests.conftest import FixedClock
from tests.tokens import TokenIssuer, build_valid_token, ec_jwk

ISSUER = "https://idp.example"
PEM = (
    b"-----BEGIN PUBLIC KEY-----\n"
    + b"MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE" * 2
    + b"\n-----END PUBLIC KEY-----\n"
)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@pytest.mark.anyio
@pytest.mark.parametrize("crv", [["P-256"], {"name": "P-256"}])
async def test_unhashable_crv_skips_that_key_only(
    crv: Any, clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    bad = {**public_jwk(ec_jwk()), "kid": "bad", "crv": crv}
    jwks = {"keys": [bad, public_jwk(ec_jwk())]}

    def serve(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=jwks)

    client = httpx.AsyncClient(transport=httpx.MockTransport(serve))
    verifier = JWKSVerifier(
        jwks_url=ISSUER + "/jwks", issuer=ISSUER, audience=None, http_client=client, clock=clock
    )
    minter = TokenIssuer(iss=ISSUER, audience=None, clock=clock)
    with caplog.at_level(logging.WARNING, logger="fastapi_authgate"):
        context = await verifier.verify(Credentials(bearer=build_valid_token(minter, alg="ES256")))
    assert context is not None and context.subject == minter.sub
    assert "JWKS key #0 skipped" in caplog.text
    await client.aclose()


def test_pem_text_is_never_an_hmac_secret() -> None:
    good = generate_private_jwk("HS256", kid="good")
    pem_secret = {"kty": "oct", "kid": "pem", "alg": "HS256", "k": b64url(PEM)}
    keys = KeySet.from_jwks({"keys": [pem_secret, good]}, frozenset({"HS256"}))
    assert len(keys) == 1
    assert keys.find("pem", "HS256") is None
    found = keys.find("good", "HS256")
    assert found is not None and found.kid == "good"
