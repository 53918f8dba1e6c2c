"""Where providers meet the rest of the gate.

A remote provider's cached answers belong to one account even in a shared Redis; Qyzar's limiter
counts IPv6 callers by network, as ``rate_limited(key="ip")`` does; and every provider's base URL
follows one rule: https, unless the host is this machine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI

from fastapi_authgate import AuthContext, AuthGate, require_user
from fastapi_authgate.errors import ConfigurationError
from fastapi_authgate.providers.qyzar import QyzarSessionVerifier
from fastapi_authgate.providers.tiun import TiunVerifier
from fastapi_authgate.qyzar_dependencies import qyzar_rate_limited
from fastapi_authgate.settings import AuthGateSettings
from fastapi_authgate.testing import FakeTiun
from fastapi_authgate.verifiers.remote_store import RedisResultStore
from tests.providers.qyzar_support import Served, qyzar, served_qyzar
from tests.ratelimit.support import REDIS_URL
from tests.servers import serve

__all__ = ["qyzar", "served_qyzar"]


# --- tiun: a shared (Redis) cache keeps accounts apart -----------------------------------------


class _TiunByKey:
    """tiun as it is: one host, many merchants; the API key picks whose users are asked about."""

    def __init__(self, *fakes: FakeTiun) -> None:
        self.fakes = {fake.api_key.encode(): fake for fake in fakes}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        key = b""
        for name, value in scope.get("headers", ()):
            if name == b"x-tiun-api-key":
                key = value
        fake = self.fakes.get(key) or next(iter(self.fakes.values()))
        await fake.app(scope, receive, send)


def _tiun_app(verifier: TiunVerifier) -> FastAPI:
    gate = AuthGate(verifier)
    app = FastAPI()
    gate.install(app)

    @app.get("/me")
    async def me(auth: AuthContext = Depends(require_user)) -> dict[str, object]:
        return {"subject": auth.subject, "scopes": sorted(auth.scopes)}

    return app


@pytest.mark.anyio
async def test_tiun_shared_cache_entry_of_one_api_key_is_not_accepted_under_another(
    redis_prefix: str,
) -> None:
    """Two apps (two tiun merchants, two API keys) share one Redis, as AUTHGATE_REDIS_URL does.

    A token tiun verified for merchant A must not be accepted by merchant B without asking tiun
    with B's key: tiun does not know A's user under B's key (isAuthenticated: false -> 401).
    """
    import redis.asyncio as aioredis

    merchant_a = FakeTiun("live")
    merchant_b = FakeTiun("live")
    token = merchant_a.issue_token("u_a", email="a@example.com", product_access=["pro"])
    with serve(_TiunByKey(merchant_a, merchant_b)) as url:
        client_a = aioredis.Redis.from_url(REDIS_URL)
        client_b = aioredis.Redis.from_url(REDIS_URL)
        app_a = TiunVerifier(
            merchant_a.api_key,
            environment="live",
            api_url=url,
            store=RedisResultStore(client_a, prefix=redis_prefix, close_client=True),
        )
        app_b = TiunVerifier(
            merchant_b.api_key,
            environment="live",
            api_url=url,
            store=RedisResultStore(client_b, prefix=redis_prefix, close_client=True),
        )
        try:
            headers = {"Authorization": f"Bearer {token}"}
            transport_a = httpx.ASGITransport(app=_tiun_app(app_a))
            async with httpx.AsyncClient(transport=transport_a, base_url="http://a") as http:
                assert (await http.get("/me", headers=headers)).status_code == 200
            transport_b = httpx.ASGITransport(app=_tiun_app(app_b))
            async with httpx.AsyncClient(transport=transport_b, base_url="http://b") as http:
                answer = await http.get("/me", headers=headers)
            assert merchant_b.calls == 1, "merchant B never asked tiun with its own key"
            assert answer.status_code == 401, answer.text
        finally:
            await app_a.aclose()
            await app_b.aclose()


# --- qyzar_rate_limited: IPv6 callers are counted by network, as key="ip" counts them ----------


@pytest.fixture
async def qyzar_limited_gate(qyzar: Served) -> AsyncIterator[tuple[AuthGate, FastAPI]]:
    gate = AuthGate(QyzarSessionVerifier(qyzar.client()))
    app = FastAPI()
    gate.install(app)

    @app.get("/limited", dependencies=[Depends(qyzar_rate_limited("2/minute"))])
    async def limited() -> dict[str, bool]:
        return {"ok": True}

    yield gate, app
    await gate.aclose()


@pytest.mark.anyio
async def test_qyzar_rate_limit_groups_ipv6_like_the_gates_own_ip_key(
    qyzar_limited_gate: tuple[AuthGate, FastAPI],
) -> None:
    """One subscriber holds a whole /64; rotating the low bits must not buy a fresh bucket.

    ``rate_limited(key="ip")`` groups IPv6 by /64 (ClientIPResolver.key); the Qyzar rate limit
    on the same gate sends the exact address, so a client with a /64 is never limited.
    """
    _gate, app = qyzar_limited_gate
    statuses = []
    for host in range(1, 6):
        transport = httpx.ASGITransport(app=app, client=(f"2001:db8:1:2::{host:x}", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://app.test") as http:
            statuses.append((await http.get("/limited")).status_code)
    assert statuses[:2] == [200, 200]
    assert statuses[2:] == [429, 429, 429], statuses


# --- plain http to a remote provider is refused (secrets and passwords would travel in clear) ---


def test_qyzar_plain_http_to_a_remote_host_is_refused_at_startup() -> None:
    """tiun and torii refuse it; Qyzar only logs a warning and sends the project secret in clear."""
    settings = AuthGateSettings(
        provider="qyzar",
        qyzar={  # type: ignore[arg-type]
            "api_url": "http://qyzar.example.com",
            "project_id": "proj_1",
            "project_secret": "s" * 40,
        },
    )
    with pytest.raises(ConfigurationError, match="AUTHGATE_QYZAR__API_URL"):
        AuthGate.from_settings(settings)


def test_inai_plain_http_api_url_to_a_remote_host_is_refused_at_startup() -> None:
    """InAI's client carries users' passwords, refresh and access tokens to this URL."""
    from fastapi_authgate.providers.inai import verifier_from_settings

    settings = AuthGateSettings(
        provider="inai",
        inai={  # type: ignore[arg-type]
            "publishable_key": "pk_live_abcdefgh1234",
            "api_url": "http://apiauth.example.com",
            "issuer": "https://apiauth.inai.dev",
        },
    )
    with pytest.raises(ConfigurationError, match="AUTHGATE_INAI__API_URL"):
        verifier_from_settings(settings)
