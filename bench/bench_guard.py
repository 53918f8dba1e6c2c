"""Guard throughput, side by side in one process, as ratios.

Routes (all return the same plain dict the same way, so only the guard differs):

- ``bare``          no dependency
- ``noop``          a no-op ``SecurityBase`` dependency: FastAPI's own floor for any guard
- ``noop_scopes``   the same no-op also taking ``SecurityScopes``: the floor for a scope-aware guard
- ``noop_copy``     a second app identical to ``noop``: how far two identical apps differ in this
                    run, the resolution of every ratio below (objects land elsewhere in memory)
- ``cached``        ``require_user`` with a repeated RS256 token (verified-token cache hit)
- ``fresh_rs256``   ``require_user`` (default settings) with a fresh RS256 token on every request
- ``full_rs256``    ``fresh_rs256`` with the verifier's token cache already full of other tokens
                    (a server that has run a while: each fresh token makes room for itself)
- ``nocache_rs256`` ``fresh_rs256`` with the token cache off (``token_cache_size=0``): what
                    keeping a fresh token's entry costs, the price of every later hit
- ``fresh_es256``   the same with ES256
- ``sig_rs256``     a guard that only checks the fresh token's RSA signature with ``cryptography``
                    (key loaded once; no claims): the floor for any real verification
- ``sig_es256``     the same for ES256
- ``pyjwt_rs256``   the careful PyJWT dependency: ``HTTPBearer``, the key object loaded once,
                    ``jwt.decode(token, key, algorithms=[...], audience=..., issuer=...)``
- ``pyjwt_es256``   the same for ES256
- ``pyjwks_rs256``  the usual PyJWT + ``PyJWKClient`` dependency (looks the key up per call)

Fresh tokens are minted ahead (distinct ``jti``), and every route walks the pool with its own
counter across rounds, so no token reaches a route twice. Then the verification alone, outside
FastAPI: ``JWKSVerifier.verify`` on fresh tokens against ``cryptography``'s raw check.

Run: ``.venv/bin/python -m bench.bench_guard`` (add ``--quick`` for a short run, or ``--rounds N``
for more rounds than 31: a round of a fast route lasts about 15 ms, one pause of the machine can
slow it by a third, and the median's spread shrinks only with the square root of the rounds).
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
import statistics
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from fastapi import FastAPI, Security
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer, SecurityScopes
from fastapi.security.base import SecurityBase
from starlette.requests import HTTPConnection

from bench._apps import one_route_app
from bench._driver import Headers, measure, print_table, ratio
from fastapi_authgate import AuthGate, Credentials, require_user
from fastapi_authgate.providers.dev import DevIssuer
from fastapi_authgate.verifiers.jwks import JWKSVerifier

ISSUER = "https://bench.example"
AUDIENCE = "https://api.bench.example"
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


def _b64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


class SignatureOnlyGuard(SecurityBase):
    """Only the signature check, with ``cryptography`` directly: no parsing, no claims."""

    def __init__(self, public_key: Any, alg: str) -> None:
        self.model = HTTPBearerModel()
        self.scheme_name = "SignatureOnly"
        self.public_key = public_key
        self.es = alg.startswith("ES")

    async def __call__(self, request: HTTPConnection) -> None:
        token = request.headers["authorization"][7:]
        signing_input, _, signature = token.rpartition(".")
        raw = _b64(signature)
        if self.es:
            half = len(raw) // 2
            der = encode_dss_signature(
                int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big")
            )
            self.public_key.verify(der, signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        else:
            self.public_key.verify(raw, signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())


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


def mint(issuer: DevIssuer, count: int) -> list[Headers]:
    """``count`` distinct tokens (fresh ``jti`` each), as request headers."""
    return [
        [
            (
                b"authorization",
                b"Bearer " + issuer.issue("bench-user", scopes=["read"], ttl=3600).encode(),
            )
        ]
        for _ in range(count)
    ]


def careful_pyjwt(public_key: Any, alg: str) -> Callable[..., Any]:
    """What a careful user writes: the key loaded once, every check named explicitly."""
    bearer = HTTPBearer()

    async def pyjwt_user(
        credentials: HTTPAuthorizationCredentials = Security(bearer),
    ) -> dict[str, Any]:
        return jwt.decode(
            credentials.credentials,
            public_key,
            algorithms=[alg],
            audience=AUDIENCE,
            issuer=ISSUER,
            options={"require": ["exp", "iss", "aud", "sub"]},
        )

    return pyjwt_user


def full_gate(issuer: DevIssuer) -> AuthGate:
    """A default gate whose token cache is already full of other tokens, as in a server that has
    run for a while: every fresh token then makes room by dropping the oldest entry."""
    verifier = issuer.verifier()
    size: int = inspect.signature(JWKSVerifier).parameters["token_cache_size"].default
    fillers = [Credentials(bearer=issuer.issue(f"filler-{i}", ttl=3600)) for i in range(size)]

    async def fill() -> None:
        for credentials in fillers:
            await verifier.verify(credentials)

    asyncio.run(fill())
    assert verifier._cache is not None and len(verifier._cache) == size
    return AuthGate(verifier)


def build(pool_size: int) -> tuple[dict[str, tuple[FastAPI, str]], dict[str, list[Headers]], Any]:
    rs = DevIssuer(algorithm="RS256", issuer=ISSUER, audience=AUDIENCE)
    es = DevIssuer(algorithm="ES256", issuer=ISSUER, audience=AUDIENCE)
    rs_key = jwt.PyJWK(rs.jwks["keys"][0]).key
    es_key = jwt.PyJWK(es.jwks["keys"][0]).key
    jwks_client = jwt.PyJWKClient(serve_jwks(rs.jwks))
    pyjwks_bearer = HTTPBearer()

    async def pyjwks_user(
        credentials: HTTPAuthorizationCredentials = Security(pyjwks_bearer),
    ) -> dict[str, Any]:
        key = jwks_client.get_signing_key_from_jwt(credentials.credentials)
        return jwt.decode(
            credentials.credentials,
            key.key,
            algorithms=["RS256"],
            audience=AUDIENCE,
            issuer=ISSUER,
            options={"require": ["exp", "iss", "aud", "sub"]},
        )

    def gate(issuer: DevIssuer = rs) -> AuthGate:
        return AuthGate(issuer.verifier())

    apps: dict[str, tuple[FastAPI, str]] = {
        "bare": (one_route_app(gate()), "repeat"),
        "noop": (one_route_app(gate(), NoopGuard(), as_parameter=True), "repeat"),
        "noop_scopes": (one_route_app(gate(), NoopScopesGuard(), as_parameter=True), "repeat"),
        "noop_copy": (one_route_app(gate(), NoopGuard(), as_parameter=True), "repeat"),
        "cached": (one_route_app(gate(), require_user, as_parameter=True), "repeat"),
        "fresh_rs256": (one_route_app(gate(), require_user, as_parameter=True), "rs"),
        "full_rs256": (one_route_app(full_gate(rs), require_user, as_parameter=True), "rs"),
        "nocache_rs256": (
            one_route_app(
                AuthGate(rs.verifier(token_cache_size=0)), require_user, as_parameter=True
            ),
            "rs",
        ),
        "sig_rs256": (
            one_route_app(gate(), SignatureOnlyGuard(rs_key, "RS256"), as_parameter=True),
            "rs",
        ),
        "pyjwt_rs256": (
            one_route_app(gate(), careful_pyjwt(rs_key, "RS256"), as_parameter=True),
            "rs",
        ),
        "pyjwks_rs256": (one_route_app(gate(), pyjwks_user, as_parameter=True), "rs"),
        "fresh_es256": (one_route_app(gate(es), require_user, as_parameter=True), "es"),
        "sig_es256": (
            one_route_app(gate(es), SignatureOnlyGuard(es_key, "ES256"), as_parameter=True),
            "es",
        ),
        "pyjwt_es256": (
            one_route_app(gate(es), careful_pyjwt(es_key, "ES256"), as_parameter=True),
            "es",
        ),
    }
    pools = {"rs": mint(rs, pool_size), "es": mint(es, pool_size)}
    pools["repeat"] = pools["rs"][:1]
    return apps, pools, (rs, pools["rs"], rs_key)


def verification_alone(issuer: DevIssuer, pool: list[Headers], public_key: Any, n: int) -> float:
    """Cost of ``verify`` on fresh tokens over cryptography's raw verify of them; median of 5."""
    tokens = [headers[0][1][7:].decode() for headers in pool[:n]]
    credentials = [Credentials(bearer=token) for token in tokens]
    raw_parts = []
    for token in tokens:
        signing_input, _, signature = token.rpartition(".")
        raw_parts.append((_b64(signature), signing_input.encode()))

    async def ours() -> float:
        verifier = issuer.verifier()  # a new one each time: every token is a cache miss
        start = time.perf_counter()
        for creds in credentials:
            await verifier.verify(creds)
        return time.perf_counter() - start

    def raw() -> float:
        start = time.perf_counter()
        for sig, data in raw_parts:
            public_key.verify(sig, data, padding.PKCS1v15(), hashes.SHA256())
        return time.perf_counter() - start

    ratios = []
    for _ in range(5):
        ratios.append(asyncio.run(ours()) / raw())
    return statistics.median(ratios)


def per_request(results: dict[str, list[float]], name: str, base: str) -> list[float]:
    """Per round: seconds per request of ``name`` minus that of ``base``."""
    return [1 / a - 1 / b for a, b in zip(results[name], results[base], strict=True)]


def excess_ratio(results: dict[str, list[float]], alg: str, fresh: str = "fresh") -> float:
    """(fresh - repeated) / (signature only - no-op), per round, median."""
    ours = per_request(results, f"{fresh}_{alg}", "cached")
    floor = per_request(results, f"sig_{alg}", "noop")
    return statistics.median(a / b for a, b in zip(ours, floor, strict=True))


def main() -> None:
    quick = "--quick" in sys.argv
    per_round, rounds = (200, 11) if quick else (300, 31)
    if "--rounds" in sys.argv:
        rounds = int(sys.argv[sys.argv.index("--rounds") + 1])
    warmup = max(50, per_round // 10)
    apps, pools, (rs, rs_pool, rs_key) = build(warmup + per_round * rounds)

    def walker(pool: list[Headers]) -> Callable[[int], Headers]:
        if len(pool) == 1:
            return lambda _i: pool[0]
        position = iter(range(len(pool)))  # one counter per route, across rounds
        return lambda _i: pool[next(position)]

    routes = [(name, app, "/r", walker(pools[pool])) for name, (app, pool) in apps.items()]
    results = measure(routes, requests_per_round=per_round, rounds=rounds)
    print_table(results)
    print()
    figures = [
        (
            "careful PyJWT / require_user, fresh RS256",
            ratio(results, "fresh_rs256", "pyjwt_rs256"),
            ">= 1.45",
        ),
        (
            "careful PyJWT / require_user, fresh ES256",
            ratio(results, "fresh_es256", "pyjwt_es256"),
            "",
        ),
        (
            "PyJWKClient dep / require_user, fresh RS256",
            ratio(results, "fresh_rs256", "pyjwks_rs256"),
            "",
        ),
        ("(fresh - repeated) / (sig only - noop), RS256", excess_ratio(results, "rs256"), "<= 1.6"),
        ("(fresh - repeated) / (sig only - noop), ES256", excess_ratio(results, "es256"), ""),
        (
            "careful PyJWT / require_user, RS256, cache full",
            ratio(results, "full_rs256", "pyjwt_rs256"),
            "",
        ),
        (
            "(full - repeated) / (sig only - noop), RS256",
            excess_ratio(results, "rs256", fresh="full"),
            "",
        ),
        (
            "careful PyJWT / require_user, RS256, cache off",
            ratio(results, "nocache_rs256", "pyjwt_rs256"),
            "",
        ),
        (
            "(cache off - repeated) / (sig - noop), RS256",
            excess_ratio(results, "rs256", fresh="nocache"),
            "",
        ),
        ("require_user repeated / noop guard", ratio(results, "cached", "noop"), ">= 0.97"),
        (
            "identical no-op apps, copy / first (resolution)",
            ratio(results, "noop_copy", "noop"),
            "",
        ),
    ]
    for label, value, target in figures:
        print(f"{label:<48}: {value:.3f}  {'(target ' + target + ')' if target else ''}")
    alone = verification_alone(rs, rs_pool, rs_key, 300 if quick else 1000)
    print(f"{'verify() fresh RS256 / raw RSA verify (tight loop)':<48}: {alone:.2f}")


if __name__ == "__main__":
    main()
