"""require_client_token and qyzar_rate_limited in a real app, against the fake Qyzar over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI

from fastapi_authgate import AuthContext, AuthGate, require_session, require_user
from fastapi_authgate.providers.qyzar import QyzarSessionVerifier, create_client_token
from fastapi_authgate.qyzar_dependencies import (
    ClientTokenDependency,
    QyzarClientToken,
    qyzar_rate_limited,
    require_client_token,
)
from fastapi_authgate.ratelimit.limiter import RateLimiter
from tests.conftest import FixedClock
from tests.providers.qyzar_support import Served, qyzar, served_qyzar

__all__ = ["qyzar", "served_qyzar"]

pytestmark = pytest.mark.anyio

online_client_token = ClientTokenDependency(online=True)


def build_app(gate: AuthGate) -> FastAPI:
    app = FastAPI()
    gate.install(app)

    @app.get("/token")
    async def token(found: QyzarClientToken = Depends(require_client_token)) -> dict[str, Any]:
        return {"session_id": found.session_id, "metadata": dict(found.metadata)}

    @app.get("/token-online")
    async def token_online(
        found: QyzarClientToken = Depends(online_client_token),
    ) -> dict[str, Any]:
        return {"session_id": found.session_id}

    @app.get("/me")
    async def me(auth: AuthContext = Depends(require_user)) -> dict[str, str]:
        return {"subject": auth.subject}

    @app.get("/session")
    async def session(auth: AuthContext = Depends(require_session)) -> dict[str, str]:
        return {"subject": auth.subject}

    @app.get("/limited", dependencies=[Depends(qyzar_rate_limited("2/minute"))])
    async def limited() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/project-limit", dependencies=[Depends(qyzar_rate_limited())])
    async def project_limit() -> dict[str, bool]:
        return {"ok": True}

    @app.get(
        "/by-email",
        dependencies=[
            Depends(
                qyzar_rate_limited(
                    "5/minute",
                    metadata_fields=["email"],
                    metadata=lambda conn, auth: {"tenant": "acme"},
                )
            )
        ],
    )
    async def by_email() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/local", dependencies=[Depends(qyzar_rate_limited("1/minute"))])
    async def local() -> dict[str, bool]:
        return {"ok": True}

    @app.get(
        "/forced-local",
        dependencies=[Depends(qyzar_rate_limited("1/minute", on_qyzar_down="local"))],
    )
    async def forced_local() -> dict[str, bool]:
        return {"ok": True}

    return app


@pytest.fixture
async def make_app(
    qyzar: Served, clock: FixedClock
) -> AsyncIterator[Callable[..., httpx.AsyncClient]]:
    gates: list[AuthGate] = []

    def make(**gate_options: Any) -> httpx.AsyncClient:
        gate = AuthGate(QyzarSessionVerifier(qyzar.client(), clock=clock), **gate_options)
        gates.append(gate)
        transport = httpx.ASGITransport(app=build_app(gate))
        return httpx.AsyncClient(transport=transport, base_url="http://app.test")

    yield make
    for gate in gates:
        await gate.aclose()


async def test_client_token_offline_from_header_or_bearer(
    qyzar: Served, make_app: Callable[..., httpx.AsyncClient]
) -> None:
    session = qyzar.fake.create_session()
    async with qyzar.client() as client:
        minted = await client.create_client_token(
            session_id=session.session_id,
            session_token=session.session_token,
            metadata={"identifier": "u1"},
        )
    qyzar.fake.calls.clear()
    async with make_app() as app:
        by_header = await app.get("/token", headers={"x-qyzar-client-token": minted.client_token})
        by_bearer = await app.get(
            "/token", headers={"authorization": f"Bearer {minted.client_token}"}
        )
    for answer in (by_header, by_bearer):
        assert answer.status_code == 200
        assert answer.json() == {"session_id": session.session_id, "metadata": {"identifier": "u1"}}
    assert qyzar.fake.calls["token-verify"] == 0  # checked offline


async def test_client_token_online(
    qyzar: Served, make_app: Callable[..., httpx.AsyncClient]
) -> None:
    minted = create_client_token(qyzar.fake.project_secret, qyzar.fake.project_id)
    async with make_app() as app:
        answer = await app.get(
            "/token-online", headers={"x-qyzar-client-token": minted.client_token}
        )
        forged = await app.get(
            "/token-online", headers={"x-qyzar-client-token": minted.client_token + "x"}
        )
    assert answer.status_code == 200 and answer.json() == {"session_id": None}
    assert forged.status_code == 401
    assert qyzar.fake.calls["token-verify"] == 2


async def test_bad_client_tokens(qyzar: Served, make_app: Callable[..., httpx.AsyncClient]) -> None:
    secret, project = qyzar.fake.project_secret, qyzar.fake.project_id
    expired = create_client_token(secret, project, ttl=1, now=1_000_000_000).client_token
    other = create_client_token(secret, "proj_other").client_token
    good = create_client_token(secret, project).client_token
    async with make_app() as app:
        missing = await app.get("/token")
        assert missing.status_code == 401
        assert "error=" not in missing.headers["www-authenticate"]
        for token in (expired, other, good[:-3] + "abc", "not-a-jwt"):
            answer = await app.get("/token", headers={"x-qyzar-client-token": token})
            assert answer.status_code == 401, token
            assert 'error="invalid_token"' in answer.headers["www-authenticate"]
        two = await app.get(
            "/token",
            headers={"x-qyzar-client-token": good, "authorization": f"Bearer {other}"},
        )
        assert two.status_code == 401


async def test_a_client_token_is_never_a_user_or_a_session(
    qyzar: Served, make_app: Callable[..., httpx.AsyncClient]
) -> None:
    session = qyzar.fake.create_session(identifier="alice")
    minted = create_client_token(
        qyzar.fake.project_secret, qyzar.fake.project_id, session_id=session.session_id
    ).client_token
    async with make_app() as app:
        for path in ("/me", "/session"):
            for headers in (
                {"authorization": f"Bearer {minted}"},
                {"x-qyzar-client-token": minted},
                {
                    "x-qyzar-client-token": minted,
                    "cookie": f"qyzar_session_id={session.session_id}",
                },
            ):
                assert (await app.get(path, headers=headers)).status_code == 401
        # while the same app's session cookies still work
        assert (await app.get("/me", headers={"cookie": session.cookie_header})).status_code == 200


async def test_rate_limit_allows_then_refuses_with_draft_headers(
    qyzar: Served, make_app: Callable[..., httpx.AsyncClient]
) -> None:
    async with make_app() as app:
        answers = [
            await app.get("/limited", headers={"x-forwarded-for": "1.2.3.4"}) for _ in range(3)
        ]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[0].headers["ratelimit-policy"] == '"qyzar";q=2;w=60'
    assert answers[0].headers["ratelimit"].startswith('"qyzar";r=1;t=')
    refused = answers[2]
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["ratelimit"].startswith('"qyzar";r=0;')
    assert refused.json()["error"] == "rate_limited"
    sent = qyzar.fake.requests[-1].body
    assert sent["settingsOverride"] == {"limit": 2, "windowSeconds": 60}
    assert sent["ip"] == "127.0.0.1"  # no trusted proxy: the forwarded header is ignored


async def test_project_settings_without_an_override(
    qyzar: Served, make_app: Callable[..., httpx.AsyncClient]
) -> None:
    async with make_app() as app:
        answer = await app.get("/project-limit")
    assert answer.status_code == 200
    assert answer.headers["ratelimit-policy"] == f'"qyzar";q={qyzar.fake.limit}'
    assert "settingsOverride" not in qyzar.fake.requests[-1].body


async def test_the_client_ip_follows_the_trusted_proxy_rules(
    qyzar: Served, make_app: Callable[..., httpx.AsyncClient]
) -> None:
    async with make_app(trusted_proxies=["127.0.0.1"]) as app:
        answer = await app.get("/limited", headers={"x-forwarded-for": "6.6.6.6, 203.0.113.9"})
    assert answer.status_code == 200
    assert qyzar.fake.requests[-1].body["ip"] == "203.0.113.9"


async def test_metadata_fields_come_from_the_verified_session(
    qyzar: Served, make_app: Callable[..., httpx.AsyncClient]
) -> None:
    session = qyzar.fake.create_session(metadata={"email": "a@x.io"})
    async with make_app() as app:
        signed_in = await app.get("/by-email", headers={"cookie": session.cookie_header})
        anonymous = await app.get("/by-email")
    assert signed_in.status_code == anonymous.status_code == 200
    bodies = [r.body for r in qyzar.fake.requests if r.route == "rate-limit-check"]
    assert bodies[0]["metadata"] == {"email": "a@x.io", "tenant": "acme"}
    assert bodies[1]["metadata"] == {"tenant": "acme"}


@pytest.mark.parametrize(("mode", "expected"), [("open", [200, 200]), ("closed", [503, 503])])
async def test_qyzar_down_follows_the_limiter_failure_mode(
    qyzar: Served,
    make_app: Callable[..., httpx.AsyncClient],
    mode: str,
    expected: list[int],
) -> None:
    qyzar.fake.fail(503, route="rate-limit-check")
    async with make_app(limiter=RateLimiter(failure_mode=mode)) as app:  # type: ignore[arg-type]
        answers = [await app.get("/local") for _ in range(2)]
    assert [a.status_code for a in answers] == expected
    if mode == "closed":
        assert "retry-after" in answers[0].headers


async def test_qyzar_down_local_enforces_the_rule_in_process(
    qyzar: Served, make_app: Callable[..., httpx.AsyncClient]
) -> None:
    qyzar.fake.fail(502, route="rate-limit-check")
    async with make_app() as app:
        answers = [await app.get("/forced-local") for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 429]
    assert "retry-after" in answers[1].headers
    qyzar.fake.reset()
