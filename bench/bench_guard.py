"""Guard throughput, side by side in one process, as ratios.

Routes (all return the same plain dict the same way, so only the guard differs):

- ``bare``          no dependency
- ``noop``          a no-op ``SecurityBase`` dependency: FastAPI's own floor for any guard
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
from fastapi import Depends, FastAPI, Security
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.base import SecurityBase
from starlette.requests import HTTPConnection

from bench._driver import Headers, measure, ratio
from fastapi_authgate import AuthContext, AuthDependency, AuthGate, Credentials, require_user
from fastapi_authgate.providers.dev import DevIssuer

BODY = {"ok": True}


class NoopGuard(SecurityBase):
    """FastAPI's floor: a security dependency that does nothing."""

    def __init__(self) -> None:
        self.model = HTTPBearerModel()
        self.scheme_name = "Noop"

    async def __call__(self, request: HTTPConnection) -> None:
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


def build() -> tuple[FastAPI, dict[str, Headers], Any]:
    rs = DevIssuer(algorithm="RS256", issuer="https://bench.example")
    es = DevIssuer(algorithm="ES256", issuer="https://bench.example")
    rs_token = rs.issue("bench-user", scopes=["read"], ttl=3600)
    es_token = es.issue("bench-user", scopes=["read"], ttl=3600)

    app = FastAPI()
    AuthGate(rs.verifier()).install(app)
    rs256_uncached = AuthDependency(gate=AuthGate(rs.verifier(token_cache_size=0)))
    es256_uncached = AuthDependency(gate=AuthGate(es.verifier(token_cache_size=0)))

    public_key = jwt.PyJWK(rs.jwks["keys"][0]).key
    raw_guard = RawRSAGuard(public_key)
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

    @app.get("/bare")
    async def bare() -> dict[str, bool]:
        return BODY

    @app.get("/noop", dependencies=[Depends(NoopGuard())])
    async def noop() -> dict[str, bool]:
        return BODY

    @app.get("/cached")
    async def cached(auth: AuthContext = Depends(require_user)) -> dict[str, bool]:
        return BODY

    @app.get("/rs256")
    async def rs256(auth: AuthContext = Depends(rs256_uncached)) -> dict[str, bool]:
        return BODY

    @app.get("/es256")
    async def es256(auth: AuthContext = Depends(es256_uncached)) -> dict[str, bool]:
        return BODY

    @app.get("/raw_rsa", dependencies=[Depends(raw_guard)])
    async def raw_rsa() -> dict[str, bool]:
        return BODY

    @app.get("/pyjwt")
    async def pyjwt_route(claims: dict[str, Any] = Depends(pyjwt_user)) -> dict[str, bool]:
        return BODY

    headers = {
        "rs": [(b"authorization", f"Bearer {rs_token}".encode())],
        "es": [(b"authorization", f"Bearer {es_token}".encode())],
    }
    verifier = rs.verifier(token_cache_size=0)
    return app, headers, (verifier, rs_token, public_key)


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
    app, headers, (verifier, rs_token, public_key) = build()
    rs, es = headers["rs"], headers["es"]
    routes = [
        ("bare", "/bare", lambda i: rs),
        ("noop", "/noop", lambda i: rs),
        ("cached", "/cached", lambda i: rs),
        ("rs256", "/rs256", lambda i: rs),
        ("es256", "/es256", lambda i: es),
        ("raw_rsa", "/raw_rsa", lambda i: rs),
        ("pyjwt", "/pyjwt", lambda i: rs),
    ]
    results = measure(
        app, routes, requests_per_round=300 if quick else 1500, rounds=3 if quick else 7
    )
    print(f"{'route':<10} {'req/s (median)':>15} {'x bare':>8} {'x noop':>8}")
    for name, _, _ in routes:
        rps = statistics.median(results[name])
        print(
            f"{name:<10} {rps:>15,.0f} {ratio(results, name, 'bare'):>8.3f}"
            f" {ratio(results, name, 'noop'):>8.3f}"
        )
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
