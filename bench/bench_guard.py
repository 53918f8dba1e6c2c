"""Guard throughput, side by side in one process, as ratios.

Routes (all return the same plain dict the same way, so only the guard differs):

- ``bare``          no dependency
- ``noop``          a no-op ``SecurityBase`` dependency: FastAPI's own floor for any guard
- ``noop_scopes``   the same no-op also taking ``SecurityScopes``: the floor for a scope-aware guard
- ``cached``        ``require_user`` with a repeated RS256 token (verified-token cache on)
- ``rs256``         ``require_user`` semantics, token cache off, RS256
- ``es256``         the same with ES256
- ``raw_rsa``       a guard that only runs ``cryptography``'s RSA signature check on the token
- ``pyjwt``         a plain PyJWT + ``PyJWKClient`` dependency (``HTTPBearer`` + ``jwt.decode``)

Then the verification alone, outside FastAPI: ``JWKSVerifier.verify`` with the cache off against
``cryptography``'s raw RSA verify of the same token.

Run: ``.venv/bin/python -m bench.bench_guard`` (add ``--quick`` for a short run).
"""

from __future__ import annotations

import asyncio
import base64
import json
import statistics
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from fastapi import FastAPI, Security
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer, SecurityScopes
from fastapi.security.base import SecurityBase
from starlette.requests import HTTPConnection

from bench._apps import one_route_app
from bench._driver import Headers, measure, print_table, ratio
from fastapi_authgate import AuthGate, Credentials, require_user
from fastapi_authgate.providers.dev import DevIssuer

BODY = {"ok": True}


class NoopGuard(SecurityBase):
    """FastAPI's floor: a security dependency that does nothing."""

    def __init__(self) -> None:
        self.model = HTTPBearerModel()
        self.scheme_name = "Noop"

    async def __call__(self, request: HTTPConnection) -> None:
        return None


class NoopScopesGuard(SecurityBase):
    """The floor for a scope-aware guard: a no-op that asks FastAPI for ``SecurityScopes``."""

    def __init__(self) -> None:
        self.model = HTTPBearerModel()
        self.scheme_name = "NoopScopes"

    async def __call__(self, request: HTTPConnection, security_scopes: SecurityScopes) -> None:
        return None


class RawRSAGuard(SecurityBase):
    """Only the signature check, with ``cryptography`` directly: no parsing, no claims."""

    def __init__(self, public_key: Any) -> None:
        self.model = HTTPBearerModel()
        self.scheme_name = "RawRSA"
        self.public_key = public_key

    async def __call__(self, request: HTTPConnection) -> None:
        token = request.headers["authorization"][7:]
        signing_input, _, signature = token.rpartition(".")
        self.public_key.verify(
            base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)),
            signing_input.encode(),
            padding.PKCS1v15(),
            hashes.SHA256(),
        )


def serve_jwks(jwks: dict[str, Any]) -> str:
    """A loopback JWKS endpoint for PyJWKClient (it fetches once, then caches)."""
    body = json.dumps(jwks).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/jwks.json"


def build() -> tuple[dict[str, FastAPI], dict[str, Headers], Any]:
    rs = DevIssuer(algorithm="RS256", issuer="https://bench.example")
    es = DevIssuer(algorithm="ES256", issuer="https://bench.example")
    rs_token = rs.issue("bench-user", scopes=["read"], ttl=3600)
    es_token = es.issue("bench-user", scopes=["read"], ttl=3600)

    public_key = jwt.PyJWK(rs.jwks["keys"][0]).key
    jwks_client = jwt.PyJWKClient(serve_jwks(rs.jwks))
    pyjwt_bearer = HTTPBearer()

    async def pyjwt_user(
        credentials: HTTPAuthorizationCredentials = Security(pyjwt_bearer),
    ) -> dict[str, Any]:
        key = jwks_client.get_signing_key_from_jwt(credentials.credentials)
        return jwt.decode(
            credentials.credentials,
            key.key,
            algorithms=["RS256"],
            issuer="https://bench.example",
            options={"require": ["exp", "iss", "sub"]},
        )

    def gate(verifier: Any = None) -> AuthGate:
        return AuthGate(verifier or rs.verifier())

    apps = {
        "bare": one_route_app(gate()),
        "noop": one_route_app(gate(), NoopGuard(), as_parameter=True),
        "noop_scopes": one_route_app(gate(), NoopScopesGuard(), as_parameter=True),
        "cached": one_route_app(gate(), require_user, as_parameter=True),
        "rs256": one_route_app(
            gate(rs.verifier(token_cache_size=0)), require_user, as_parameter=True
        ),
        "es256": one_route_app(
            gate(es.verifier(token_cache_size=0)), require_user, as_parameter=True
        ),
        "raw_rsa": one_route_app(gate(), RawRSAGuard(public_key), as_parameter=True),
        "pyjwt": one_route_app(gate(), pyjwt_user, as_parameter=True),
    }
    headers = {
        "rs": [(b"authorization", f"Bearer {rs_token}".encode())],
        "es": [(b"authorization", f"Bearer {es_token}".encode())],
    }
    verifier = rs.verifier(token_cache_size=0)
    return apps, headers, (verifier, rs_token, public_key)


def verification_alone(verifier: Any, token: str, public_key: Any, n: int) -> float:
    """Cost of ``verify`` (cache off) over the cost of cryptography's raw verify; median of 5."""
    credentials = Credentials(bearer=token)
    signing_input, _, signature = token.rpartition(".")
    sig = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    data = signing_input.encode()

    async def ours() -> float:
        start = time.perf_counter()
        for _ in range(n):
            await verifier.verify(credentials)
        return time.perf_counter() - start

    def raw() -> float:
        start = time.perf_counter()
        for _ in range(n):
            public_key.verify(sig, data, padding.PKCS1v15(), hashes.SHA256())
        return time.perf_counter() - start

    ratios = []
    for _ in range(5):
        ratios.append(asyncio.run(ours()) / raw())
    return statistics.median(ratios)


def main() -> None:
    quick = "--quick" in sys.argv
    apps, headers, (verifier, rs_token, public_key) = build()
    rs, es = headers["rs"], headers["es"]
    routes = [
        (name, app, "/r", (lambda i, h=(es if name == "es256" else rs): h))
        for name, app in apps.items()
    ]
    results = measure(routes, requests_per_round=200 if quick else 400, rounds=15 if quick else 41)
    print_table(results)
    print()
    print(
        f"cached / noop guard          : {ratio(results, 'cached', 'noop'):.3f}  (target >= 0.95)"
    )
    print(
        f"cached / bare route          : {ratio(results, 'cached', 'bare'):.3f}  (target >= 0.85)"
    )
    print(f"uncached RS256 / PyJWT dep   : {ratio(results, 'rs256', 'pyjwt'):.3f}  (target >= 1.5)")
    print(f"uncached RS256 / raw-RSA guard: {ratio(results, 'rs256', 'raw_rsa'):.3f}")
    alone = verification_alone(verifier, rs_token, public_key, 300 if quick else 2000)
    print(f"verify() cost / raw RSA verify cost: {alone:.2f}  (target <= 2.0)")


if __name__ == "__main__":
    main()
