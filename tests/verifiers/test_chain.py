from __future__ import annotations

import pytest

from fastapi_authgate import (
    AuthContext,
    AuthenticationError,
    ChainVerifier,
    ConfigurationError,
    Credentials,
)


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
