from __future__ import annotations

import json

import pytest

from fastapi_authgate.errors import (
    AuthenticationError,
    AuthGateError,
    AuthorizationError,
    NotAuthenticatedError,
    ProviderError,
    RateLimitExceeded,
)
from fastapi_authgate.responses import bearer_challenge, error_response, websocket_close


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (NotAuthenticatedError(), 401, "not_authenticated"),
        (AuthenticationError(), 401, "invalid_token"),
        (AuthorizationError(required=["admin"]), 403, "insufficient_scope"),
        (RateLimitExceeded(retry_after=2.1), 429, "rate_limited"),
        (ProviderError(retry_after=0.2), 503, "provider_unavailable"),
    ],
)
def test_status_and_body(exc: AuthGateError, status: int, code: str) -> None:
    response = error_response(exc, realm="api")
    assert response.status_code == status
    assert json.loads(bytes(response.body)) == {"detail": exc.description, "error": code}
    assert response.headers["content-type"] == "application/json"


def test_retry_after_is_a_whole_number_of_at_least_one() -> None:
    assert (
        error_response(RateLimitExceeded(retry_after=2.1), realm="api").headers["retry-after"]
        == "3"
    )
    assert (
        error_response(RateLimitExceeded(retry_after=0), realm="api").headers["retry-after"] == "1"
    )
    assert error_response(ProviderError(retry_after=0.2), realm="api").headers["retry-after"] == "1"


def test_rate_limit_headers_are_passed_on() -> None:
    exc = RateLimitExceeded(retry_after=3, headers={"RateLimit": '"a";r=0;t=3'})
    response = error_response(exc, realm="api")
    assert response.headers["ratelimit"] == '"a";r=0;t=3'


def test_challenge_never_carries_quotes_or_control_characters() -> None:
    exc = AuthenticationError('bad "kid"\r\nX-Injected: 1')
    challenge = error_response(exc, realm="api").headers["www-authenticate"]
    assert "\r" not in challenge and "\n" not in challenge
    assert (
        challenge
        == 'Bearer realm="api", error="invalid_token", error_description="bad kidX-Injected: 1"'
    )


def test_challenge_without_error_has_only_realm() -> None:
    assert bearer_challenge("api") == 'Bearer realm="api"'
    assert bearer_challenge("api", error="insufficient_scope", scopes=("a", "b")) == (
        'Bearer realm="api", error="insufficient_scope", scope="a b"'
    )


def test_websocket_codes() -> None:
    assert websocket_close(AuthenticationError())[0] == 1008
    assert websocket_close(AuthorizationError())[0] == 1008
    assert websocket_close(RateLimitExceeded())[0] == 1013
    assert websocket_close(ProviderError())[0] == 1013
