"""Every QyzarClient method maps every way Qyzar can fail into the same QyzarError."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from fastapi_authgate.providers.qyzar import QyzarClient, QyzarError, QyzarSecretError
from tests.providers.qyzar_support import Served, client, qyzar, served_qyzar

__all__ = ["client", "qyzar", "served_qyzar"]

pytestmark = pytest.mark.anyio

Call = Callable[[QyzarClient], Awaitable[Any]]

METHODS: dict[str, tuple[str, Call]] = {
    "verify_session_from_cookies": (
        "session-verify",
        lambda c: c.verify_session_from_cookies("qyzar_session_id=s; qyzar_session_token=t"),
    ),
    "verify_session": (
        "session-verify",
        lambda c: c.verify_session(session_id="s", session_token="t"),
    ),
    "create_client_token": ("token", lambda c: c.create_client_token()),
    "verify_client_token": ("token-verify", lambda c: c.verify_client_token("a.b.c")),
    "get_extra_metadata": ("extra-metadata", lambda c: c.get_extra_metadata(session_id="s")),
    "patch_extra_metadata": (
        "extra-metadata",
        lambda c: c.patch_extra_metadata(session_id="s", email=None),
    ),
    "check_rate_limit": ("rate-limit-check", lambda c: c.check_rate_limit(ip="1.2.3.4")),
    "log_user_api_request": (
        "request-logs",
        lambda c: c.log_user_api_request(events={"method": "GET", "path": "/", "status": 200}),
    ),
    "log_attempted_login": (
        "ato-login-attempt",
        lambda c: c.log_attempted_login(session_id="s", identifier="alice"),
    ),
    "add_ato_trusted_identifier": (
        "ato-add-identifier",
        lambda c: c.add_ato_trusted_identifier(session_id="s", identifier="alice"),
    ),
}

FAILURES = ["bad_secret", "unknown_project", "429", "500", "garbage", "redirect", "timeout"]


@pytest.mark.parametrize("failure", FAILURES)
@pytest.mark.parametrize("method", sorted(METHODS))
async def test_every_method_maps_every_failure(
    qyzar: Served, client: QyzarClient, method: str, failure: str
) -> None:
    route, invoke = METHODS[method]
    fake = qyzar.fake
    if failure == "bad_secret":
        fake.fail(401, body={"error": "invalid_project_secret"}, route=route)
    elif failure == "unknown_project":
        fake.fail(404, body={"error": "unknown_project"}, route=route)
    elif failure == "429":
        fake.fail(429, body={"error": "rate_limited"}, retry_after=9, route=route)
    elif failure == "500":
        fake.fail(500, route=route)
    elif failure == "garbage":
        fake.garbage(route=route)
    elif failure == "redirect":
        fake.redirect("http://127.0.0.1:9/elsewhere", route=route)
    else:
        fake.hang(5, route=route)
    target = client
    if failure == "timeout":
        target = qyzar.client(timeout=0.5)
    try:
        with pytest.raises(QyzarError) as caught:
            await invoke(target)
    finally:
        if target is not client:
            await target.aclose()
        fake.reset()
    error = caught.value
    # it went upstream once (a loaded machine may hit the short deadline before it arrives)
    assert fake.calls[route] == 1 or (failure == "timeout" and fake.calls[route] == 0)
    assert isinstance(error, QyzarSecretError) == (failure in ("bad_secret", "unknown_project"))
    assert fake.project_secret not in f"{error} {error!r} {error.description}"
    expected_status = {
        "bad_secret": 401,
        "unknown_project": 404,
        "429": 429,
        "500": 500,
        "garbage": None,
        "redirect": 302,
        "timeout": None,
    }[failure]
    assert error.status == expected_status
    if failure == "429":
        assert error.retry_after == 9
