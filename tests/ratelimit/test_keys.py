"""How buckets are named: per issuer, from templates under mounts, one Cluster slot per caller."""

from __future__ import annotations

import httpx
import pytest
from fastapi import Depends, FastAPI

from fastapi_authgate import AuthContext, AuthenticationError, AuthGate, Credentials, rate_limited
from fastapi_authgate.errors import ConfigurationError
from fastapi_authgate.ratelimit.limiter import RateLimiter
from tests.conftest import FixedClock
from tests.ratelimit.support import REDIS_URL, bearer, build_app
from tests.servers import serve

pytestmark = pytest.mark.anyio


class TwoIssuerVerifier:
    """``<issuer>:<subject>`` tokens; the same subject exists at both issuers."""

    provider = "jwks"

    async def verify(self, credentials: Credentials) -> AuthContext | None:
        if credentials.bearer is None:
            return None
        issuer, _, subject = credentials.bearer.partition(".")
        if issuer == "main":
            return AuthContext(
                subject=subject,
                provider="jwks",
                credential="bearer",
                claims={"iss": "https://main"},
            )
        if issuer == "partner":
            return AuthContext(
                subject=subject,
                provider="jwks",
                credential="bearer",
                claims={"iss": "https://partner"},
            )
        if issuer == "other":  # another provider, no iss claim
            return AuthContext(subject=subject, provider="other", credential="bearer")
        raise AuthenticationError("The token signature is invalid")


async def test_user_buckets_are_per_issuer_and_provider(clock: FixedClock) -> None:
    """#12 item 8: a partner issuer's ``alice`` cannot lock out the main issuer's ``alice``."""
    gate = AuthGate(TwoIssuerVerifier(), limiter=RateLimiter(clock=clock))
    app = FastAPI()
    gate.install(app)

    @app.get("/u", dependencies=[Depends(rate_limited("1/minute", key="user"))])
    async def user_route() -> dict[str, bool]:
        return {"ok": True}

    transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 1))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        partner = [(await client.get("/u", headers=bearer("partner.alice"))).status_code]
        partner.append((await client.get("/u", headers=bearer("partner.alice"))).status_code)
        main = (await client.get("/u", headers=bearer("main.alice"))).status_code
        other = (await client.get("/u", headers=bearer("other.alice"))).status_code
        again = (await client.get("/u", headers=bearer("main.alice"))).status_code
    assert partner == [200, 429]
    assert (main, other, again) == (200, 200, 429)


async def test_metadata_fallback_to_the_subject_is_per_issuer_too(clock: FixedClock) -> None:
    gate = AuthGate(TwoIssuerVerifier(), limiter=RateLimiter(clock=clock))
    app = FastAPI()
    gate.install(app)

    @app.get("/m", dependencies=[Depends(rate_limited("1/minute", key="metadata:org"))])
    async def metadata_route() -> dict[str, bool]:
        return {"ok": True}

    transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 1))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        statuses = [
            (await client.get("/m", headers=bearer(token))).status_code
            for token in ("partner.alice", "main.alice", "main.alice")
        ]
    assert statuses == [200, 200, 429]


def _mounted_app(limiter: RateLimiter) -> FastAPI:
    gate = AuthGate(TwoIssuerVerifier(), limiter=limiter)
    outer = FastAPI()
    gate.install(outer)
    limit = rate_limited("2/minute")
    for version in ("v1", "v2"):
        sub = FastAPI()
        gate.install(sub)  # handlers inside the sub-application too

        @sub.get("/items", dependencies=[Depends(limit)])
        async def items() -> dict[str, bool]:
            return {"ok": True}

        outer.mount(f"/{version}/{{tenant}}", sub)
    return outer


def test_a_mount_with_a_path_parameter_is_one_bucket_not_one_per_value(
    clock: FixedClock,
) -> None:
    """#12 item 9: names come from templates, so picking a new tenant value is no fresh quota."""
    with serve(_mounted_app(RateLimiter(clock=clock))) as url:
        statuses = [
            httpx.get(f"{url}/v1/{tenant}/items").status_code
            for tenant in ("acme", "globex", "initech", "x" * 40)
        ]
        # Another template is another bucket, even with the same dependency object.
        other_mount = httpx.get(f"{url}/v2/acme/items").status_code
    assert statuses == [200, 200, 429, 429]
    assert other_mount == 200


def test_hash_tag_escapes_braces_injectively() -> None:
    from fastapi_authgate.ratelimit.limiter import hash_tag

    assert hash_tag("rl:GET /users/{id}:ip:1.2.3.4") == "{rl:GET /users/%7Bid%7D:ip:1.2.3.4}"
    assert hash_tag("plain") == "{plain}"
    assert hash_tag("a}b") != hash_tag("a%7Db")
    assert hash_tag("a%7Db") == "{a%257Db}"


@pytest.mark.redis
async def test_each_caller_of_a_templated_route_has_its_own_cluster_slot(
    redis_prefix: str,
) -> None:
    """#12 item 19: ``/users/{id}`` must not close the hash tag early (one slot for everyone)."""
    crc = pytest.importorskip("redis.crc")
    from fastapi_authgate.ratelimit.redis_store import RedisStore

    store = RedisStore.from_url(REDIS_URL, prefix=redis_prefix)
    limiter = RateLimiter(store, store_timeout=5)
    app, _ = build_app(limiter, [])

    @app.get("/users/{user_id}", dependencies=[Depends(rate_limited("10/minute;100/hour"))])
    async def user(user_id: int) -> dict[str, int]:
        return {"id": user_id}

    try:
        for peer in ("198.51.100.7", "203.0.113.200"):
            transport = httpx.ASGITransport(app=app, client=(peer, 1))
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                assert (await client.get("/users/1")).status_code == 200
                assert (await client.get("/users/2")).status_code == 200
        found = await store.client.keys(redis_prefix + "*")
        keys = sorted(k.decode() if isinstance(k, bytes) else k for k in found)
    finally:
        await limiter.aclose()
    assert len(keys) == 4  # two rules for each of two callers
    tags: dict[str, set[int]] = {}
    for key in keys:
        start = key.index("{")
        tag = key[start + 1 : key.index("}", start)]
        assert "/users/%7Buser_id%7D" in tag  # the whole template is inside the tag
        tags.setdefault(tag, set()).add(crc.key_slot(key.encode()))
    assert len(tags) == 2  # one tag per caller ...
    slots = [next(iter(s)) for s in tags.values() if len(s) == 1]
    assert len(slots) == 2  # ... all rules of a caller in one slot ...
    assert slots[0] != slots[1]  # ... and the two callers in different slots


def test_a_store_prefix_with_braces_is_refused() -> None:
    pytest.importorskip("redis")
    from fastapi_authgate.ratelimit.redis_store import RedisStore

    with pytest.raises(ConfigurationError, match="braces"):
        RedisStore.from_url(REDIS_URL, prefix="app{1}:")
