"""The verified-token cache at the end of a key set's life, under a flood over real sockets.

Cached tokens live no longer than the keys they were checked with. When that life ends under
load, every request with a cached token misses at once: the refetch must stay a single flight,
each request must still get its answer (200 while the key is published, 401 once it is retired),
and nothing may be answered from an entry older than the keys.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI, Security

from fastapi_authgate import AuthContext, AuthGate, require_user
from fastapi_authgate._jose import public_jwk
from fastapi_authgate.verifiers.jwks import JWKSVerifier
from tests.conftest import FixedClock
from tests.fakes.issuer import FakeIssuer
from tests.servers import serve
from tests.tokens import TokenIssuer, build_valid_token, private_jwk

pytestmark = pytest.mark.anyio

AUDIENCE = "api://test"
FLOOD = 300


async def test_a_flood_at_the_end_of_a_key_sets_life_fetches_once(clock: FixedClock) -> None:
    with FakeIssuer().running() as issuer:
        issuer.cache_control = "max-age=60"
        verifier = JWKSVerifier(
            jwks_url=issuer.jwks_url, issuer=issuer.issuer, audience=AUDIENCE, clock=clock
        )
        gate = AuthGate(verifier)
        app = FastAPI()
        gate.install(app)

        @app.get("/me")
        async def me(auth: AuthContext = Security(require_user)) -> dict[str, str]:
            return {"sub": auth.subject}

        minter = TokenIssuer(iss=issuer.issuer, audience=AUDIENCE, clock=clock)
        token = build_valid_token(minter, exp=int(clock()) + 86_400)
        headers = {"Authorization": f"Bearer {token}"}
        limits = httpx.Limits(max_connections=150, max_keepalive_connections=0)

        async def flood(load: httpx.AsyncClient) -> list[httpx.Response]:
            return await asyncio.wait_for(
                asyncio.gather(*(load.get("/me", headers=headers) for _ in range(FLOOD))),
                timeout=120,
            )

        with serve(app) as url:
            async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as load:
                assert (await load.get("/me", headers=headers)).status_code == 200
                assert issuer.jwks_hits == 1

                issuer.delay = 0.3  # a slow refetch: the flood piles up behind it
                clock.advance(60)  # the key set's life ends; the key is still published
                answers = await flood(load)
                assert [a.status_code for a in answers] == [200] * FLOOD
                assert issuer.jwks_hits == 2  # one refetch for the whole flood

                issuer.rotate(public_jwk(private_jwk("RS256", "rsa-3")))  # the key is retired
                clock.advance(60)
                answers = await flood(load)
                assert [a.status_code for a in answers] == [401] * FLOOD
                assert all(
                    a.headers["www-authenticate"].startswith('Bearer realm="api"')
                    and 'error="invalid_token"' in a.headers["www-authenticate"]
                    for a in answers
                )
                assert issuer.jwks_hits == 3
        await gate.aclose()
