"""Cookies: only the ones a verifier reads, each at most once, and none when a bearer is present.

Over real HTTP (uvicorn on loopback). Cookie tossing: a sibling subdomain (or a man in the middle
on plain http) can add a second cookie of the same name; browsers send both, in an order the
server cannot trust, so a duplicate of a cookie we read is malformed (401), never "last wins".
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI

from fastapi_authgate import AuthContext, AuthGate, optional_user, require_user
from fastapi_authgate.errors import AuthenticationError
from fastapi_authgate.providers.dev import DevIssuer
from tests.servers import serve
from tests.test_dependencies import TableVerifier

ISSUER = DevIssuer()
BIG_HEAD = 256 * 1024  # uvicorn's h11 default caps a request head at 16 KiB; httptools allows more


def app_for(verifier: Any) -> FastAPI:
    app = FastAPI()
    AuthGate(verifier).install(app)

    @app.get("/me")
    async def me(auth: AuthContext = Depends(require_user)) -> dict[str, Any]:
        return {"subject": auth.subject, "credential": auth.credential}

    @app.get("/maybe")
    async def maybe(auth: AuthContext | None = Depends(optional_user)) -> dict[str, Any]:
        return {"subject": auth.subject if auth else None}

    return app


@pytest.mark.parametrize("verifier", [ISSUER.verifier(), TableVerifier()], ids=["jwks", "table"])
def test_a_duplicated_session_cookie_is_malformed(verifier: Any) -> None:
    _, victim = ISSUER.new_session("victim")
    _, attacker = ISSUER.new_session("attacker")
    with serve(app_for(verifier)) as base, httpx.Client(base_url=base) as client:
        for headers in (
            [("Cookie", f"authgate_session={attacker}; authgate_session={victim}")],
            [("Cookie", f"authgate_session={attacker}"), ("Cookie", f"authgate_session={victim}")],
            [("Cookie", "authgate_session=sess; other=1; authgate_session=sess")],
        ):
            refused = client.get("/me", headers=headers)
            assert refused.status_code == 401, refused.text
            assert refused.json()["error"] == "invalid_token"
            assert 'error="invalid_token"' in refused.headers["www-authenticate"]
            assert client.get("/maybe", headers=headers).status_code == 401


def test_one_session_cookie_and_duplicated_other_cookies_are_fine() -> None:
    _, token = ISSUER.new_session("alice")
    with serve(app_for(ISSUER.verifier())) as base, httpx.Client(base_url=base) as client:
        headers = [("Cookie", f"_ga=1; _ga=2; authgate_session={token}; theme=dark")]
        assert client.get("/me", headers=headers).json() == {
            "subject": "alice",
            "credential": "cookie",
        }


def test_a_huge_unrelated_cookie_header_does_not_refuse_a_bearer_or_an_anonymous_caller() -> None:
    huge = [("Cookie", "tracking=" + "x" * 40_000 + "; prefs=" + "y" * 20_000)]
    token = ISSUER.issue("alice")
    app = app_for(ISSUER.verifier())
    with (
        serve(app, h11_max_incomplete_event_size=BIG_HEAD) as base,
        httpx.Client(base_url=base) as client,
    ):
        with_bearer = client.get("/me", headers=[*huge, ("Authorization", f"Bearer {token}")])
        assert with_bearer.json() == {"subject": "alice", "credential": "bearer"}
        assert client.get("/maybe", headers=huge).json() == {"subject": None}
        assert client.get("/me", headers=huge).json()["error"] == "not_authenticated"


def test_a_bearer_wins_and_its_cookies_are_not_even_parsed() -> None:
    token = ISSUER.issue("alice")
    _, victim = ISSUER.new_session("victim")
    duplicated = f"authgate_session={victim}; authgate_session={victim}"
    with serve(app_for(ISSUER.verifier())) as base, httpx.Client(base_url=base) as client:
        headers = [("Cookie", duplicated), ("Authorization", f"Bearer {token}")]
        assert client.get("/me", headers=headers).json()["subject"] == "alice"


def test_read_cookies_reads_only_what_is_asked() -> None:
    from fastapi_authgate.credentials import read_cookies

    values = ['a=1; authgate_session="q\\"t"; b', "c=3"]
    assert read_cookies(values, ("authgate_session",)) == {"authgate_session": 'q"t'}
    assert read_cookies(values, None) == {"a": "1", "authgate_session": 'q"t', "c": "3"}
    assert read_cookies(values, ()) == {}
    assert read_cookies(["a=1; a=2"], None) == {"a": "2"}  # not ours: Starlette's last-wins
    with pytest.raises(AuthenticationError):
        read_cookies(["a=1; a=2"], None, unique=("a",))
    with pytest.raises(AuthenticationError):
        read_cookies(["s=" + "x" * 20_000], ("s",))
