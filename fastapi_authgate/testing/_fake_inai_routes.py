"""The 26 REST routes of the fake InAI Auth API (see :mod:`fastapi_authgate.testing.fake_inai`)."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

if TYPE_CHECKING:
    from fastapi_authgate.testing.fake_inai import FakeInAI, FakeInAIAccount

__all__ = ["Answer", "add_routes"]

_APP = "/api/v1/auth"
_PLATFORM = "/api/platform/auth"
_APPS = "/api/platform/applications"


class Answer(Exception):
    """Stop a route with an error answer ``{"error", "message"}``."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.response: Response = JSONResponse(
            {"error": error, "message": message}, status_code=status
        )


async def _json(request: Request, *required: str) -> dict[str, Any]:
    body = await request.json()
    if not isinstance(body, dict):
        raise Answer(400, "invalid_body", "the body must be a JSON object")
    for name in required:
        if not isinstance(body.get(name), str) or not body[name]:
            raise Answer(400, "validation_error", f"{name} is required")
    return body


def add_routes(app: FastAPI, fake: FakeInAI) -> None:
    """Declare every route of the document's table on ``app``."""

    def auth_routes(base: str, platform: bool) -> None:
        @app.post(f"{base}/login")
        async def login(request: Request) -> dict[str, Any]:
            body = await _json(request, "email", "password")
            account = fake.accounts.get(fake._account_key(body["email"], platform))
            if account is None or not secrets.compare_digest(account.password, body["password"]):
                raise Answer(401, "invalid_credentials", "wrong email or password")
            if account.mfa_code is not None:
                ticket = "mfa_" + secrets.token_urlsafe(16)
                fake._mfa[ticket] = fake._account_key(account.email, platform)
                return {"mfa_required": True, "mfa_token": ticket}
            return fake._tokens(account)

        @app.post(f"{base}/mfa/challenge")
        async def mfa(request: Request) -> dict[str, Any]:
            body = await _json(request, "mfa_token", "code")
            key = fake._mfa.get(body["mfa_token"])
            account = fake.accounts.get(key) if key else None
            if account is None:
                raise Answer(401, "invalid_mfa_token", "unknown or used MFA token")
            if account.mfa_code is None or body["code"] != account.mfa_code:
                raise Answer(401, "invalid_mfa_code", "wrong code")
            del fake._mfa[body["mfa_token"]]
            return fake._tokens(account)

        @app.post(f"{base}/refresh")
        async def refresh(request: Request) -> dict[str, Any]:
            body = await _json(request, "refresh_token")
            key = fake._refresh.pop(body["refresh_token"], None)  # rotated: single use
            account = fake.accounts.get(key) if key else None
            if account is None or account.platform != platform:
                raise Answer(401, "invalid_refresh_token", "unknown or revoked refresh token")
            return fake._tokens(account)

        @app.post(f"{base}/logout", status_code=204)
        async def logout(request: Request) -> Response:
            body = await _json(request, "refresh_token")
            fake._refresh.pop(body["refresh_token"], None)
            return Response(status_code=204)

        @app.get(f"{base}/me")
        async def me(request: Request) -> dict[str, Any]:
            account = fake._bearer(request, "platform" if platform else "app_user")
            if isinstance(account, dict):
                raise Answer(404, "user_not_found", "no such user")
            return {"data": account.public()}

    auth_routes(_APP, False)
    auth_routes(_PLATFORM, True)

    @app.post(f"{_APP}/register", status_code=201)
    async def register(request: Request) -> dict[str, Any]:
        body = await _json(request, "email", "password")
        if fake._account_key(body["email"], False) in fake.accounts:
            raise Answer(409, "email_taken", "this email is already registered")
        if len(body["password"]) < 8:
            raise Answer(422, "weak_password", "passwords need at least 8 characters")
        account = fake.add_account(body["email"], body["password"])
        account.first_name, account.last_name = body.get("firstName"), body.get("lastName")
        ticket = "ve_" + secrets.token_urlsafe(16)
        fake._verify[ticket] = fake._account_key(account.email, False)
        fake.outbox.append({"to": account.email, "kind": "verify_email", "token": ticket})
        return fake._tokens(account)

    @app.post(f"{_APP}/active-organization")
    async def active_organization(request: Request) -> dict[str, Any]:
        account = fake._bearer(request, "app_user")
        body = await _json(request, "organization_id")
        if isinstance(account, dict) or body["organization_id"] not in account.organizations:
            raise Answer(403, "not_a_member", "the user is not a member of this organization")
        account.active_org = body["organization_id"]
        return fake._tokens(account)

    @app.post(f"{_APP}/forgot-password")
    async def forgot_password(request: Request) -> dict[str, Any]:
        body = await _json(request, "email")
        key = fake._account_key(body["email"], False)
        if key in fake.accounts:  # the answer is the same either way: no account probing
            ticket = "rp_" + secrets.token_urlsafe(16)
            fake._reset[ticket] = key
            fake.outbox.append({"to": body["email"].lower(), "kind": "reset", "token": ticket})
        return {"message": "if the address is known, a mail is on its way"}

    @app.post(f"{_APP}/reset-password")
    async def reset_password(request: Request) -> dict[str, Any]:
        body = await _json(request, "token", "password")
        key = fake._reset.pop(body["token"], None)
        if key is None or key not in fake.accounts:
            raise Answer(400, "invalid_reset_token", "unknown or used reset token")
        fake.accounts[key].password = body["password"]
        return {"message": "password changed"}

    @app.post(f"{_APP}/verify-email")
    async def verify_email(request: Request) -> dict[str, Any]:
        body = await _json(request, "token")
        key = fake._verify.pop(body["token"], None)
        if key is None or key not in fake.accounts:
            raise Answer(400, "invalid_verification_token", "unknown or used token")
        fake.accounts[key].email_verified = True
        return {"message": "email verified"}

    def application(request: Request, app_id: str) -> dict[str, Any]:
        fake._bearer(request, "platform")
        found = fake.applications.get(app_id)
        if found is None:
            raise Answer(404, "application_not_found", "no such application")
        return found

    @app.get(_APPS)
    async def list_applications(request: Request) -> dict[str, Any]:
        fake._bearer(request, "platform")
        return {"data": list(fake.applications.values())}

    @app.post(_APPS, status_code=201)
    async def create_application(request: Request) -> dict[str, Any]:
        fake._bearer(request, "platform")
        body = await _json(request, "name", "slug")
        if any(a["slug"] == body["slug"] for a in fake.applications.values()):
            raise Answer(409, "slug_taken", "an application already has this slug")
        app_id = "app_" + secrets.token_hex(6)
        created = {"id": app_id, "name": body["name"], "slug": body["slug"]}
        fake.applications[app_id] = created
        fake.app_users[app_id] = []
        fake.api_keys[app_id] = {}
        return {"data": created}

    @app.get(_APPS + "/{app_id}")
    async def get_application(request: Request, app_id: str) -> dict[str, Any]:
        return {"data": application(request, app_id)}

    @app.patch(_APPS + "/{app_id}")
    async def update_application(request: Request, app_id: str) -> dict[str, Any]:
        found = application(request, app_id)
        body = await _json(request)
        found.update({k: v for k, v in body.items() if k in ("name", "slug") and type(v) is str})
        return {"data": found}

    @app.get(_APPS + "/{app_id}/stats")
    async def stats(request: Request, app_id: str) -> dict[str, Any]:
        application(request, app_id)
        users = fake.app_users[app_id]
        active = sum(1 for key in fake.api_keys[app_id].values() if not key.get("revoked"))
        return {"data": {"totalUsers": len(users), "activeApiKeys": active}}

    @app.get(_APPS + "/{app_id}/users")
    async def list_users(
        request: Request,
        app_id: str,
        environmentId: str | None = None,
        page: int = 1,
        limit: int = 20,
    ) -> dict[str, Any]:
        application(request, app_id)
        if page < 1 or not 1 <= limit <= 100:
            raise Answer(400, "validation_error", "page >= 1 and 1 <= limit <= 100")
        users = [u for u in fake.app_users[app_id] if environmentId in (None, u.environment_id)]
        chunk = users[(page - 1) * limit : page * limit]
        return {
            "data": [u.public() for u in chunk],
            "total": len(users),
            "page": page,
            "limit": limit,
        }

    @app.post(_APPS + "/{app_id}/users", status_code=201)
    async def create_user(request: Request, app_id: str) -> dict[str, Any]:
        application(request, app_id)
        body = await _json(request, "email", "password", "environmentId")
        if any(u.email == body["email"].lower() for u in fake.app_users[app_id]):
            raise Answer(409, "email_taken", "this email is already registered")
        account: FakeInAIAccount = fake.add_account(body["email"], body["password"])
        account.environment_id = body["environmentId"]
        fake.app_users[app_id].append(account)
        return {"data": account.public()}

    @app.get(_APPS + "/{app_id}/api-keys")
    async def list_keys(
        request: Request, app_id: str, environmentId: str | None = None
    ) -> dict[str, Any]:
        application(request, app_id)
        keys = [
            {k: v for k, v in key.items() if k != "key"}
            for key in fake.api_keys[app_id].values()
            if not key.get("revoked") and environmentId in (None, key["environmentId"])
        ]
        return {"data": keys}

    @app.post(_APPS + "/{app_id}/api-keys", status_code=201)
    async def create_key(request: Request, app_id: str) -> dict[str, Any]:
        application(request, app_id)
        body = await _json(request, "name", "environmentId")
        key_id = "key_" + secrets.token_hex(6)
        created = {
            "id": key_id,
            "name": body["name"],
            "environmentId": body["environmentId"],
            "key": "sk_" + secrets.token_urlsafe(24),
        }
        fake.api_keys[app_id][key_id] = created
        return {"data": created}

    @app.delete(_APPS + "/{app_id}/api-keys/{key_id}", status_code=204)
    async def revoke_key(request: Request, app_id: str, key_id: str) -> Response:
        application(request, app_id)
        key = fake.api_keys[app_id].get(key_id)
        if key is None or key.get("revoked"):
            raise Answer(404, "api_key_not_found", "no such API key")
        key["revoked"] = True
        return Response(status_code=204)

    @app.post(_APPS + "/{app_id}/rotate-keys")
    async def rotate(request: Request, app_id: str) -> dict[str, Any]:
        application(request, app_id)
        await _json(request, "environmentId")
        fresh = "pk_test_" + secrets.token_hex(12)
        fake.publishable_keys.add(fresh)
        return {"publishableKey": fresh}
