"""AUTHGATE_PROVIDER=tiun: startup checks, environments, the example app, a cache in Redis."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient

from fastapi_authgate import AuthGate, Credentials
from fastapi_authgate.errors import ConfigurationError, ProviderError
from fastapi_authgate.providers.tiun import (
    LIVE_API_URL,
    SANDBOX_API_URL,
    TiunVerifier,
    verifier_from_settings,
)
from fastapi_authgate.settings import AuthGateSettings
from fastapi_authgate.testing import FakeTiun
from fastapi_authgate.verifiers.remote_store import RedisResultStore
from tests.ratelimit.support import REDIS_URL, redis_answers
from tests.servers import serve


@pytest.fixture(scope="module")
def live_server() -> Iterator[tuple[FakeTiun, str]]:
    fake = FakeTiun("live")
    with serve(fake.app) as url:
        yield fake, url


def test_a_missing_key_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTHGATE_PROVIDER", "tiun")
    with pytest.raises(ConfigurationError, match="AUTHGATE_TIUN__API_KEY"):
        AuthGate.from_settings()


def test_a_bad_environment_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTHGATE_PROVIDER", "tiun")
    monkeypatch.setenv("AUTHGATE_TIUN__API_KEY", "k")
    monkeypatch.setenv("AUTHGATE_TIUN__ENVIRONMENT", "production")
    with pytest.raises(ConfigurationError, match="AUTHGATE_TIUN__ENVIRONMENT"):
        AuthGate.from_settings()


@pytest.mark.parametrize(
    ("environment", "url"),
    [("live", SANDBOX_API_URL), ("sandbox", LIVE_API_URL), ("sandbox", "https://API.tiun.live/")],
)
def test_a_url_of_the_other_environment_is_refused(environment: str, url: str) -> None:
    with pytest.raises(ConfigurationError, match="AUTHGATE_TIUN__ENVIRONMENT"):
        TiunVerifier("k", environment=environment, api_url=url)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "url",
    [
        "http://tiun-proxy.internal",
        "ftp://api.tiun.live",
        "https://",
        "https://u:p@proxy.example",
        "https://proxy.example/?x=1",
    ],
)
def test_unsafe_urls_are_refused(url: str) -> None:
    with pytest.raises(ConfigurationError, match="AUTHGATE_TIUN__API_URL"):
        TiunVerifier("k", environment="live", api_url=url)


@pytest.mark.parametrize("key", ["", " ", "has space", "new\nline", "é"])
def test_unusable_keys_are_refused_without_echoing_them(key: str) -> None:
    with pytest.raises(ConfigurationError, match="AUTHGATE_TIUN__API_KEY") as raised:
        TiunVerifier(key)
    assert key.strip() == "" or key not in str(raised.value)


def test_base_urls_follow_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert TiunVerifier("k", environment="live").api_url == LIVE_API_URL
    assert TiunVerifier("k").api_url == SANDBOX_API_URL  # sandbox unless told otherwise
    assert TiunVerifier("k", environment="live", api_url="http://127.0.0.1:9").api_url == (
        "http://127.0.0.1:9"
    )
    monkeypatch.setenv("AUTHGATE_PROVIDER", "tiun")
    monkeypatch.setenv("AUTHGATE_TIUN__API_KEY", "super-secret-key")
    monkeypatch.setenv("AUTHGATE_TIUN__ENVIRONMENT", "live")
    monkeypatch.setenv("AUTHGATE_TIUN__CACHE_SECONDS", "12")
    monkeypatch.setenv("AUTHGATE_TIUN__TIMEOUT_SECONDS", "1.5")
    gate = AuthGate.from_settings()
    verifier = gate.verifier
    assert isinstance(verifier, TiunVerifier)
    assert verifier.api_url == LIVE_API_URL and verifier.cache.ttl == 12
    assert verifier._timeout == 1.5 and verifier.cache.store is None
    assert "super-secret-key" not in repr(verifier)


def test_the_example_app_switches_to_tiun(
    monkeypatch: pytest.MonkeyPatch, live_server: tuple[FakeTiun, str]
) -> None:
    fake, url = live_server
    monkeypatch.setenv("AUTHGATE_PROVIDER", "tiun")
    monkeypatch.setenv("AUTHGATE_TIUN__API_KEY", fake.api_key)
    monkeypatch.setenv("AUTHGATE_TIUN__ENVIRONMENT", "live")
    monkeypatch.setenv("AUTHGATE_TIUN__API_URL", url)
    from example_app.main import create_app

    token = fake.issue_token("ex_1", product_access=["pro"])
    with TestClient(create_app()) as client:
        me = client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200
        assert me.json()["subject"] == "ex_1" and me.json()["provider"] == "tiun"
        assert client.get("/api/me").status_code == 401
        assert client.post("/dev/token", json={"sub": "x"}).status_code in (404, 405)
        admin = client.get("/api/admin", headers={"Authorization": f"Bearer {token}"})
        assert admin.status_code == 403


@pytest.mark.anyio
@pytest.mark.redis
async def test_workers_share_answers_through_redis(
    monkeypatch: pytest.MonkeyPatch, live_server: tuple[FakeTiun, str]
) -> None:
    if not redis_answers():
        pytest.skip("no Redis server answers on 127.0.0.1:6379")
    pytest.importorskip("redis.asyncio", reason="the [redis] extra is not installed")
    fake, url = live_server
    fake.reset()
    settings = AuthGateSettings(
        provider="tiun",
        redis_url=REDIS_URL,  # type: ignore[arg-type]
        tiun={"api_key": fake.api_key, "environment": "live", "api_url": url},  # type: ignore[arg-type]
    )
    workers = [verifier_from_settings(settings) for _ in range(2)]
    token = fake.issue_token("shared_1")
    store = workers[0].cache.store
    assert isinstance(store, RedisResultStore)
    try:
        first = await workers[0].verify(Credentials(bearer=token))
        second = await workers[1].verify(Credentials(bearer=token))
        assert first is not None and second is not None and first.subject == second.subject
        assert fake.calls == 1
        hex_key = workers[0].cache.namespace + ":" + workers[0].cache.key(token).hex()
        stored = await store.client.get(store.prefix + hex_key)
        assert stored is not None and token.encode() not in stored
    finally:
        await store.client.delete(store.prefix + hex_key)  # type: ignore[attr-defined]
        for worker in workers:
            await worker.aclose()


def test_mock_transport_redirect_to_another_host_is_not_followed() -> None:
    """Even a client built to follow redirects is not allowed to: _http refuses any 3xx."""
    hosts: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        return httpx.Response(302, headers={"Location": "https://evil.example/steal"})

    async def run() -> None:
        client = httpx.AsyncClient(transport=httpx.MockTransport(handler), follow_redirects=True)
        verifier = TiunVerifier("k", environment="live", http_client=client)
        token = FakeTiun("live").issue_token("u")
        try:
            with pytest.raises(ProviderError):
                await verifier.verify(Credentials(bearer=token))
        finally:
            await verifier.aclose()
            await client.aclose()

    asyncio.run(run())
    assert hosts == ["api.tiun.live"]


def test_a_redis_url_without_the_extra_fails_at_startup(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("redis", "redis.asyncio", "redis.exceptions"):
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "fastapi_authgate.ratelimit.redis_store", raising=False)
    settings = AuthGateSettings(
        provider="tiun",
        redis_url=REDIS_URL,  # type: ignore[arg-type]
        tiun={"api_key": "k", "environment": "live"},  # type: ignore[arg-type]
    )
    with pytest.raises(ConfigurationError, match=r"fastapi-authgate\[redis\]"):
        verifier_from_settings(settings)
