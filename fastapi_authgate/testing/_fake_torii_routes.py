"""The routes of :class:`~fastapi_authgate.testing.fake_torii.FakeTorii`, kept apart from its knobs.

They follow the torii section of ``providers/WIRE.md``: errors are ``{"error", "message"}`` with
401 for a bad key, 404 for an unknown user, 400/409/422 for bad input.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

if TYPE_CHECKING:
    from fastapi_authgate.testing.fake_torii import FakeTorii

__all__ = ["add_routes", "iso"]

_PATCHABLE = frozenset({"name", "phone", "address"})


def iso(moment: float) -> str:
    """UNIX seconds as ISO 8601 in UTC with a ``Z``, as torii's ``*At`` fields."""
    return datetime.fromtimestamp(moment, tz=UTC).isoformat().replace("+00:00", "Z")


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status)


async def _json_object(request: Request) -> dict[str, Any] | None:
    try:
        body = json.loads(await request.body() or b"null")
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def add_routes(app: FastAPI, fake: FakeTorii) -> None:
    """Mount the issuer documents and the ``/v1`` API of ``fake`` on ``app``."""

    def unauthorized(request: Request) -> JSONResponse | None:
        if fake.authorized(request):
            return None
        return _error(401, "invalid_secret_key", "The secret key is missing or wrong")

    def user_or_404(user_id: str) -> dict[str, Any] | JSONResponse:
        user = fake.users.get(user_id)
        if user is None:
            return _error(404, "user_not_found", "No user with this id")
        return user

    def stamp(user: dict[str, Any]) -> None:
        user["updatedAt"] = iso(fake.clock())

    @app.get("/.well-known/jwks.json")
    async def jwks() -> dict[str, Any]:
        return fake.jwks

    @app.get("/.well-known/openid-configuration")
    async def discovery() -> dict[str, Any]:
        return {
            "issuer": fake.issuer,
            "jwks_uri": fake.issuer.rstrip("/") + "/.well-known/jwks.json",
            "id_token_signing_alg_values_supported": [fake.algorithm],
        }

    @app.get("/v1/users")
    async def list_users(request: Request) -> Response:
        if (refused := unauthorized(request)) is not None:
            return refused
        raw_limit = request.query_params.get("limit", "50")
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 100:
            return _error(400, "invalid_limit", "limit must be from 1 to 100")
        limit = int(raw_limit)
        ids = list(fake.users)
        cursor = request.query_params.get("cursor")
        start = 0
        if cursor is not None:
            if not cursor.startswith("c_") or cursor[2:] not in fake.users:
                return _error(400, "invalid_cursor", "Unknown cursor")
            start = ids.index(cursor[2:]) + 1
        chunk = ids[start : start + limit]
        more = start + limit < len(ids)
        return JSONResponse(
            {
                "data": [copy.deepcopy(fake.users[i]) for i in chunk],
                "nextCursor": "c_" + chunk[-1] if more and chunk else None,
            }
        )

    @app.post("/v1/users", status_code=201)
    async def create_user(request: Request) -> Response:
        if (refused := unauthorized(request)) is not None:
            return refused
        body = await _json_object(request)
        if body is None:
            return _error(400, "invalid_body", "The body must be a JSON object")
        email = body.get("email")
        if not isinstance(email, str) or "@" not in email:
            return _error(422, "invalid_email", "email is required")
        if unknown := set(body) - _PATCHABLE - {"email"}:
            return _error(422, "unknown_field", f"unknown fields: {sorted(unknown)}")
        if any(user["email"] == email for user in fake.users.values()):
            return _error(409, "email_taken", "A user with this email exists")
        user = fake.add_user(email, **{k: v for k, v in body.items() if k in _PATCHABLE})
        return JSONResponse(copy.deepcopy(user), status_code=201)

    @app.get("/v1/users/{user_id}")
    async def get_user(user_id: str, request: Request) -> Response:
        if (refused := unauthorized(request)) is not None:
            return refused
        user = user_or_404(user_id)
        return user if isinstance(user, Response) else JSONResponse(copy.deepcopy(user))

    @app.patch("/v1/users/{user_id}")
    async def update_user(user_id: str, request: Request) -> Response:
        if (refused := unauthorized(request)) is not None:
            return refused
        user = user_or_404(user_id)
        if isinstance(user, Response):
            return user
        body = await _json_object(request)
        if body is None:
            return _error(400, "invalid_body", "The body must be a JSON object")
        if unknown := set(body) - _PATCHABLE:
            return _error(422, "unknown_field", f"unknown fields: {sorted(unknown)}")
        for name, value in body.items():  # a value sets, null clears, an absent key stays
            user[name] = value
        stamp(user)
        return JSONResponse(copy.deepcopy(user))

    @app.post("/v1/users/{user_id}/ban")
    async def ban_user(user_id: str, request: Request) -> Response:
        if (refused := unauthorized(request)) is not None:
            return refused
        user = user_or_404(user_id)
        if isinstance(user, Response):
            return user
        user["banned"] = True
        stamp(user)
        return JSONResponse(copy.deepcopy(user))

    @app.get("/v1/users/{user_id}/sessions")
    async def list_sessions(user_id: str, request: Request) -> Response:
        if (refused := unauthorized(request)) is not None:
            return refused
        user = user_or_404(user_id)
        if isinstance(user, Response):
            return user
        mine = [dict(s) for s in fake.sessions.values() if s["userId"] == user_id]
        return JSONResponse({"data": mine})

    @app.post("/v1/users/{user_id}/sessions/revoke-all")
    async def revoke_all(user_id: str, request: Request) -> Response:
        if (refused := unauthorized(request)) is not None:
            return refused
        user = user_or_404(user_id)
        if isinstance(user, Response):
            return user
        revoked = 0
        for session in fake.sessions.values():
            if session["userId"] == user_id and session["status"] == "active":
                session["status"] = "revoked"
                revoked += 1
        return JSONResponse({"revoked": revoked})
