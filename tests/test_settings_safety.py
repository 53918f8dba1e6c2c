"""A careless operator's configuration fails at startup, naming the variable (#12: 5, 6, 20).

* item 5: ``AUTHGATE_PROVIDER=jwks`` needs ``AUTHGATE_ISSUER`` and ``AUTHGATE_AUDIENCE`` unless an
  ``AUTHGATE_UNSAFE_*`` opt-out says otherwise; a token carrying ``aud`` is refused when no
  audience is configured; ``AUTHGATE_TOKEN_TYPE`` checks the JOSE ``typ`` (RFC 9068 ``at+jwt``);
* item 6: the development issuer is refused when a real provider's settings are present;
* item 20: every bad setting's message names its variable.
"""

from __future__ import annotations

from typing import Any

import pytest

from fastapi_authgate import AuthGate, ConfigurationError
from fastapi_authgate._jose import public_jwk
from fastapi_authgate.context import Credentials
from fastapi_authgate.errors import AuthenticationError
from fastapi_authgate.verifiers.jwks import JWKSVerifier
from tests.conftest import FixedClock
from tests.tokens import RSA_KID, TokenIssuer, compact, header, rsa_jwk

ISSUER = "https://login.example.com/"
AUDIENCE = "https://api.example.com"


def jwks_env(monkeypatch: pytest.MonkeyPatch, **extra: str) -> None:
    monkeypatch.setenv("AUTHGATE_PROVIDER", "jwks")
    monkeypatch.setenv("AUTHGATE_JWKS_URL", "https://login.example.com/jwks.json")
    for name, value in extra.items():
        monkeypatch.setenv(f"AUTHGATE_{name}", value)


# ------------------------------------------------------------------------------------ item 5


def test_jwks_needs_an_issuer(monkeypatch: pytest.MonkeyPatch) -> None:
    jwks_env(monkeypatch, AUDIENCE=AUDIENCE)
    with pytest.raises(ConfigurationError, match="needs AUTHGATE_ISSUER") as info:
        AuthGate.from_settings()
    assert "AUTHGATE_UNSAFE_ANY_ISSUER" in str(info.value)


def test_jwks_needs_an_audience(monkeypatch: pytest.MonkeyPatch) -> None:
    jwks_env(monkeypatch, ISSUER=ISSUER)
    with pytest.raises(ConfigurationError, match="needs AUTHGATE_AUDIENCE") as info:
        AuthGate.from_settings()
    assert "AUTHGATE_UNSAFE_ANY_AUDIENCE" in str(info.value)


def test_unsafe_opt_outs_are_explicit_and_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    jwks_env(monkeypatch, UNSAFE_ANY_ISSUER="true", UNSAFE_ANY_AUDIENCE="true")
    gate = AuthGate.from_settings()
    assert gate.verifier.provider == "jwks"
    assert "AUTHGATE_UNSAFE_ANY_ISSUER is set" in caplog.text
    assert "AUTHGATE_UNSAFE_ANY_AUDIENCE is set" in caplog.text


def static_verifier(clock: FixedClock, **kwargs: Any) -> JWKSVerifier:
    options: dict[str, Any] = {"issuer": ISSUER, "clock": clock}
    options.update(kwargs)
    return JWKSVerifier.from_jwks({"keys": [public_jwk(rsa_jwk())]}, **options)


@pytest.mark.anyio
async def test_a_token_for_some_audience_is_refused_without_a_configured_audience(
    clock: FixedClock,
) -> None:
    minter = TokenIssuer(iss=ISSUER, audience="https://another-api.example.com", clock=clock)
    token = compact(header(), minter.claims())
    with pytest.raises(AuthenticationError, match="audience this API does not accept"):
        await static_verifier(clock).verify(Credentials(bearer=token))
    lax = static_verifier(clock, unsafe_any_audience=True)
    assert await lax.verify(Credentials(bearer=token)) is not None
    # a token without aud still passes a verifier without an audience
    plain = compact(header(), TokenIssuer(iss=ISSUER, audience=None, clock=clock).claims())
    assert await static_verifier(clock).verify(Credentials(bearer=plain)) is not None


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("typ", "accepted"),
    [
        ("at+jwt", True),
        ("AT+JWT", True),
        ("application/at+jwt", True),
        ("JWT", False),
        (None, False),
        (7, False),
    ],
)
async def test_token_type_check(clock: FixedClock, typ: Any, accepted: bool) -> None:
    verifier = static_verifier(clock, audience=AUDIENCE, token_type="at+jwt")
    minter = TokenIssuer(iss=ISSUER, audience=AUDIENCE, clock=clock)
    head: dict[str, Any] = {"alg": "RS256", "kid": RSA_KID}
    if typ is not None:
        head["typ"] = typ
    token = compact(head, minter.claims())
    if accepted:
        assert await verifier.verify(Credentials(bearer=token)) is not None
    else:
        with pytest.raises(AuthenticationError, match="token type is not accepted"):
            await verifier.verify(Credentials(bearer=token))


def test_token_type_setting_reaches_the_verifier(monkeypatch: pytest.MonkeyPatch) -> None:
    jwks_env(monkeypatch, ISSUER=ISSUER, AUDIENCE=AUDIENCE, TOKEN_TYPE="application/at+jwt")
    gate = AuthGate.from_settings()
    assert isinstance(gate.verifier, JWKSVerifier)
    assert gate.verifier._token_type == "at+jwt"


# ------------------------------------------------------------------------------------ item 6


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("AUTHGATE_JWKS_URL", "https://login.example.com/jwks.json"),
        ("AUTHGATE_ISSUER", ISSUER),
        ("AUTHGATE_QYZAR__PROJECT_ID", "proj_1"),
        ("AUTHGATE_QYZAR__PROJECT_SECRET", "qs_secret"),
        ("AUTHGATE_TORII__SECRET_KEY", "sk_live_abcdefghijklmnop"),
        ("AUTHGATE_TIUN__API_KEY", "tiun-key"),
        ("AUTHGATE_TIUN__ENVIRONMENT", "live"),
        ("AUTHGATE_INAI__PUBLISHABLE_KEY", "pk_live_123"),
        ("AUTHGATE_INAI__JWKS_URL", "https://apiauth.inai.dev/.well-known/jwks.json"),
    ],
)
@pytest.mark.parametrize("provider", [None, "dev"])
def test_dev_issuer_with_a_real_providers_settings_is_refused(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, provider: str | None
) -> None:
    if provider is not None:
        monkeypatch.setenv("AUTHGATE_PROVIDER", provider)
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError, match=variable) as info:
        AuthGate.from_settings()
    assert "development issuer" in str(info.value)
    assert value not in str(info.value)  # a secret's value never reaches the message


def test_dev_issuer_with_its_own_settings_is_fine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTHGATE_AUDIENCE", "api://dev")
    monkeypatch.setenv("AUTHGATE_REALM", "dev")
    monkeypatch.setenv("AUTHGATE_INAI__API_URL", "")  # empty counts as unset
    gate = AuthGate.from_settings()
    assert gate.dev_issuer is not None and gate.dev_issuer.audience == "api://dev"


# ----------------------------------------------------------------------------------- item 20


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("AUTHGATE_ALGORITHMS", "none"),
        ("AUTHGATE_ALGORITHMS", "RS256,HS256"),
        ("AUTHGATE_ALGORITHMS", "[bad json"),
        ("AUTHGATE_ALGORITHMS", ""),
        ("AUTHGATE_MAX_TOKEN_BYTES", "10"),
        ("AUTHGATE_TOKEN_CACHE_SIZE", "-1"),
        ("AUTHGATE_JWKS_CACHE_SECONDS", "-5"),
        ("AUTHGATE_JWKS_REFETCH_COOLDOWN_SECONDS", "-1"),
        ("AUTHGATE_JWKS_TIMEOUT_SECONDS", "0"),
        ("AUTHGATE_JWKS_URL", "ftp://login.example.com/jwks.json"),
        ("AUTHGATE_ISSUER", ""),
        ("AUTHGATE_AUDIENCE", '["", "x"]'),
        ("AUTHGATE_TOKEN_TYPE", "application/"),
        ("AUTHGATE_UNSAFE_ANY_AUDIENCE", "perhaps"),
        ("AUTHGATE_TRUSTED_PROXIES", "not-an-ip"),
    ],
)
def test_every_bad_setting_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    defaults = {
        "AUTHGATE_PROVIDER": "jwks",
        "AUTHGATE_JWKS_URL": "https://login.example.com/jwks.json",
        "AUTHGATE_ISSUER": ISSUER,
        "AUTHGATE_AUDIENCE": AUDIENCE,
    }
    for name, default in defaults.items():
        monkeypatch.setenv(name, default)
    monkeypatch.setenv(variable, value)
    if variable == "AUTHGATE_ISSUER":  # an empty issuer is "unset": the requirement names it
        monkeypatch.setenv("AUTHGATE_JWKS_URL", "https://login.example.com/jwks.json")
    with pytest.raises(ConfigurationError) as info:
        AuthGate.from_settings()
    assert variable in str(info.value)


def test_algorithms_none_is_named_even_for_the_dev_issuer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTHGATE_ALGORITHMS", "none")
    with pytest.raises(ConfigurationError, match="AUTHGATE_ALGORITHMS"):
        AuthGate.from_settings()
