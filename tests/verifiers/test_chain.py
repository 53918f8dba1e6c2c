from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fastapi import FastAPI, Security
from fastapi.testclient import TestClient

from fastapi_authgate import (
    AuthContext,
    AuthenticationError,
    AuthGate,
    ChainVerifier,
    ConfigurationError,
    Credentials,
    require_user,
)
from fastapi_authgate.providers.dev import DevIssuer


class Recognising:
    def __init__(self, provider: str, accepts: str | None, rejects: str | None = None) -> None:
        self.provider = provider
        self.accepts = accepts
        self.rejects = rejects
        self.calls = 0

    async def verify(self, credentials: Credentials) -> AuthContext | None:
        self.calls += 1
        if credentials.bearer == self.rejects:
            raise AuthenticationError("The token has expired")
        if credentials.bearer == self.accepts:
            return AuthContext(subject="u", provider=self.provider, credential="bearer")
        return None


@pytest.mark.anyio
async def test_first_recogniser_answers() -> None:
    first, second = Recognising("a", "t1"), Recognising("b", "t2")
    chain = ChainVerifier([first, second])
    ctx = await chain.verify(Credentials(bearer="t2"))
    assert ctx is not None and ctx.provider == "b"
    ctx = await chain.verify(Credentials(bearer="t1"))
    assert ctx is not None and ctx.provider == "a"
    assert second.calls == 1


@pytest.mark.anyio
async def test_rejection_is_final_and_does_not_fall_through() -> None:
    strict, lenient = Recognising("a", None, rejects="t"), Recognising("b", "t")
    with pytest.raises(AuthenticationError):
        await ChainVerifier([strict, lenient]).verify(Credentials(bearer="t"))
    assert lenient.calls == 0


@pytest.mark.anyio
async def test_nobody_recognises() -> None:
    assert await ChainVerifier([Recognising("a", "x")]).verify(Credentials(bearer="y")) is None


def test_empty_chain_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        ChainVerifier([])


def _two_gate_apps() -> tuple[Any, Any, DevIssuer]:
    """A chain [strict, lenient] for one issuer, and the lenient verifier also serving a gate of
    its own (an internal API that takes any audience): the careless but plausible config."""
    issuer = DevIssuer(issuer="https://id.example", audience="https://api.example")
    strict = issuer.verifier(audience="https://api.example")
    lenient = issuer.verifier(audience=None, unsafe_any_audience=True)
    public, internal = FastAPI(), FastAPI()
    AuthGate(ChainVerifier([strict, lenient])).install(public)
    AuthGate(lenient).install(internal)
    for app in (public, internal):

        @app.get("/me")
        async def me(auth: AuthContext = Security(require_user)) -> dict[str, str]:
            return {"sub": auth.subject}

    return public, internal, issuer


def test_a_later_childs_cache_never_overrules_an_earlier_child() -> None:
    """The strict child recognises the token (its issuer) and refuses its audience; that answer is
    final on the fast path too, even after the lenient child cached the token for another gate."""
    public, internal, issuer = _two_gate_apps()
    token = issuer.issue("u", aud="https://internal.example")
    bearer = {"Authorization": f"Bearer {token}"}
    with TestClient(public) as pub, TestClient(internal) as inner:
        assert pub.get("/me", headers=bearer).status_code == 401
        assert inner.get("/me", headers=bearer).json() == {"sub": "u"}  # now in lenient's cache
        for _ in range(3):
            refused = pub.get("/me", headers=bearer)
            assert refused.status_code == 401
            assert refused.headers["www-authenticate"].startswith("Bearer")


def test_a_later_childs_cache_answers_for_another_issuer() -> None:
    """The fast path still serves the second child's tokens when the first child's issuer is a
    different one (the chain's purpose: several issuers), so they are verified once."""
    first = DevIssuer(issuer="https://a.example", audience="https://api.example")
    second = DevIssuer(issuer="https://b.example", audience="https://api.example")
    later = second.verifier()
    chain = ChainVerifier([first.verifier(), later])
    token = second.issue("u").encode()
    assert chain.cached_bearer(token) is None
    context = asyncio.run(chain.verify(Credentials(bearer=token.decode())))
    assert context is not None and chain.cached_bearer(token) is context


def test_no_later_cache_behind_a_child_that_may_recognise_anything() -> None:
    """A first child that is not an issuer-bound JWKS verifier might recognise any token, so a
    later child's cached answer is never taken without asking it."""
    later_issuer = DevIssuer(issuer="https://b.example", audience="https://api.example")
    later = later_issuer.verifier()
    token = later_issuer.issue("u").encode()
    asyncio.run(later.verify(Credentials(bearer=token.decode())))
    assert later.cached_bearer(token) is not None
    chain = ChainVerifier([Recognising("a", None), later])
    assert chain.cached_bearer(token) is None
    unbound = DevIssuer(audience="https://api.example").verifier(issuer=None)
    assert ChainVerifier([unbound, later]).cached_bearer(token) is None


def test_a_later_childs_cache_never_takes_a_token_too_long_for_an_earlier_child() -> None:
    """An earlier child refuses a token over its ``max_token_bytes`` whatever its issuer, so a later
    child's cached answer for such a token is not taken either (the chain would refuse it)."""
    first = DevIssuer(issuer="https://a.example", audience="https://api.example")
    second = DevIssuer(issuer="https://b.example", audience="https://api.example")
    later = second.verifier()
    token = second.issue("u", padding="x" * 600)
    asyncio.run(later.verify(Credentials(bearer=token)))
    assert later.cached_bearer(token.encode()) is not None
    short = first.verifier(max_token_bytes=len(token) - 1)
    assert ChainVerifier([short, later]).cached_bearer(token.encode()) is None
    with pytest.raises(AuthenticationError, match="too large"):
        asyncio.run(ChainVerifier([short, later]).verify(Credentials(bearer=token)))
    roomy = first.verifier(max_token_bytes=len(token))
    assert ChainVerifier([roomy, later]).cached_bearer(token.encode()) is not None
