"""Schemathesis against the example app's own OpenAPI document: no input earns a 5xx.

Every operation is fuzzed three ways: with no credential, with a valid bearer token (admin scope,
so guarded routes run to the end) and with a valid session cookie. Whatever the generated path,
query, headers and body, the app must answer below 500, every 401 must carry an RFC 6750
``WWW-Authenticate`` challenge and every 429 an integer ``Retry-After``. Schemathesis' own
``not_a_server_error`` check runs too. ``AUTHGATE_FUZZ_EXAMPLES`` raises the number of cases per
operation for a longer run (the default keeps CI well under two minutes).
"""

from __future__ import annotations

import os
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is in the [test] extra")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402

from example_app.main import create_app  # noqa: E402
from fastapi_authgate.testing import DevIssuer  # noqa: E402

EXAMPLES = int(os.environ.get("AUTHGATE_FUZZ_EXAMPLES", "25"))

app = create_app()
schema = schemathesis.openapi.from_asgi("/openapi.json", app)
_issuer = app.state.authgate.dev_issuer
assert isinstance(_issuer, DevIssuer)
BEARER = _issuer.issue(sub="fuzzer", scopes=["admin", "read"], ttl=3600)
SESSION = _issuer.issue(sub="fuzzer", scopes=["read"], ttl=3600, sid="sess_fuzz")
COOKIE = app.state.authgate.session_cookie

CREDENTIALS: dict[str, dict[str, Any]] = {
    "anonymous": {},
    "bearer": {"headers": {"Authorization": f"Bearer {BEARER}"}},
    "cookie": {"cookies": {COOKIE: SESSION}},
}


def _assert_clear_answer(case: Any, response: Any) -> None:
    status = response.status_code
    assert status < 500, f"{case.method} {case.formatted_path} answered {status}"
    if status == 401:
        challenge = response.headers.get("www-authenticate")
        assert challenge, "a 401 without WWW-Authenticate"
        value = challenge[0] if isinstance(challenge, list) else challenge
        assert value.startswith("Bearer realm="), value
    if status == 429:
        retry = response.headers.get("retry-after")
        assert retry, "a 429 without Retry-After"
        value = retry[0] if isinstance(retry, list) else retry
        assert value.isdigit() and int(value) >= 1, value


@pytest.mark.parametrize("who", sorted(CREDENTIALS))
@schema.parametrize()  # type: ignore[untyped-decorator]
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_no_input_gets_a_server_error(case: Any, who: str) -> None:
    extra = CREDENTIALS[who]
    headers = {**(case.headers or {}), **extra.get("headers", {})}
    cookies = {**(case.cookies or {}), **extra.get("cookies", {})}
    response = case.call(headers=headers, cookies=cookies)
    _assert_clear_answer(case, response)
    case.validate_response(response, checks=[not_a_server_error])


@pytest.mark.parametrize(("who", "path"), [("bearer", "/api/admin"), ("cookie", "/api/session")])
def test_the_fuzzing_credentials_really_authenticate(who: str, path: str) -> None:
    """Fuzzing "with a valid credential" means nothing if the credential is refused."""
    from fastapi.testclient import TestClient

    extra = CREDENTIALS[who]
    with TestClient(app, cookies=extra.get("cookies")) as client:
        response = client.get(path, headers=extra.get("headers"))
    assert response.status_code == 200, response.text
    assert response.json()["subject"] == "fuzzer"
