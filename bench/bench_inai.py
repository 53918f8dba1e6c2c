"""InAI guard throughput, side by side in one process, as ratios.

Routes (all return the same plain dict the same way, so only the guard differs):

- ``bare``   no dependency
- ``noop``   a no-op ``SecurityBase`` dependency: FastAPI's own floor for any guard
- ``inai``   ``require_user`` behind the InAI verifier (ES256 only, keys fetched once from a
             loopback JWKS), token cache **off**: every request parses and verifies the token and
             builds the InAI context (roles and permissions as scopes, user, organization)
- ``pyjwt``  the strongest plain baseline: ``HTTPBearer`` plus ``jwt.decode`` of the same ES256
             token with the public key **preloaded** (no JWKS client, no lookup), requiring
             ``exp`` and ``sub``

Every request carries the same token. Run: ``.venv/bin/python -m bench.bench_inai``
(``--quick`` for a short run).
"""

from __future__ import annotations

import sys
from typing import Any

import jwt
from fastapi import FastAPI, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from bench._apps import one_route_app
from bench._driver import measure, print_table, ratio
from bench.bench_guard import NoopGuard, serve_jwks
from fastapi_authgate import AuthGate, require_user
from fastapi_authgate.providers.inai import inai_verifier
from fastapi_authgate.testing import FakeInAI


def build() -> tuple[dict[str, FastAPI], str]:
    fake = FakeInAI()
    token = fake.issue(
        "u_bench",
        email="bench@example.com",
        org_id="org_1",
        roles=["admin"],
        permissions=["read", "write"],
        ttl=3600,
    )
    jwks_url = serve_jwks(fake.jwks)
    # the keys are fetched once, by the driver's warm-up request, as in production
    verifier = inai_verifier(jwks_url=jwks_url, token_cache_size=0)

    public_key = jwt.PyJWK(fake.jwks["keys"][0]).key
    bearer = HTTPBearer()

    async def pyjwt_user(
        credentials: HTTPAuthorizationCredentials = Security(bearer),
    ) -> dict[str, Any]:
        return jwt.decode(
            credentials.credentials,
            public_key,
            algorithms=["ES256"],
            options={"require": ["exp", "sub"]},
        )

    gate = AuthGate(verifier)
    apps = {
        "bare": one_route_app(gate),
        "noop": one_route_app(gate, NoopGuard(), as_parameter=True),
        "inai": one_route_app(gate, require_user, as_parameter=True),
        "pyjwt": one_route_app(gate, pyjwt_user, as_parameter=True),
    }
    return apps, token


def main() -> None:
    quick = "--quick" in sys.argv
    apps, token = build()
    headers = [(b"authorization", f"Bearer {token}".encode())]
    routes = [(name, app, "/r", lambda i: headers) for name, app in apps.items()]
    results = measure(routes, requests_per_round=200 if quick else 400, rounds=15 if quick else 41)
    print_table(results)
    print()
    print(
        f"InAI ES256 uncached / PyJWT ES256 (preloaded key): {ratio(results, 'inai', 'pyjwt'):.3f}"
        "  (target >= 1.3)"
    )


if __name__ == "__main__":
    main()
