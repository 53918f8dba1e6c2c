"""InAI: ES256 access tokens checked against InAI's JWKS, plus the backend client.

Wire format: WIRE.md, "InAI" (``inai-backend.txt`` is the document). Tokens are ES256 JWS whose
keys are published at ``https://apiauth.inai.dev/.well-known/jwks.json``
(``AUTHGATE_INAI__JWKS_URL`` overrides). Claims: ``sub``, ``iat``, ``exp``, ``email``, ``type``
(``app_user`` or ``platform``), ``org_id``/``org_role`` when an organization is active, ``roles``
and ``permissions`` (lists of strings), ``iss`` when configured. Where the documents are silent we
chose:

* **only ES256**: a token with any other ``alg`` is refused before a key is looked up, so an
  HS256 or RS256 token never causes a JWKS fetch;
* keys are cached **5 minutes** as the document says (``AUTHGATE_JWKS_CACHE_SECONDS``), whatever
  ``Cache-Control`` the JWKS carries;
* the document's "on signature failure, retry with fresh keys" is kept, but **behind the same
  cooldown and single flight as unknown ``kid`` values**
  (``AUTHGATE_JWKS_REFETCH_COOLDOWN_SECONDS``): a flood of forged signatures costs at most one
  JWKS fetch per cooldown, and a key rotated under the same ``kid`` is accepted after one
  refetch;
* only ``type: "app_user"`` tokens are accepted by default: a platform administrator's token is
  for InAI's own console, not for an application's API (``token_types`` widens it);
* a token without ``type`` is refused; ``iss`` is checked when ``AUTHGATE_INAI__ISSUER`` is set
  and ``aud`` when ``AUTHGATE_INAI__AUDIENCE`` is.

The context: ``subject`` = ``sub``; ``scopes`` = ``roles`` plus ``permissions`` (so
``Security(require_user, scopes=["admin"])`` works); ``user`` = ``User(id, email, metadata=
{"org_id", "org_role", "type"})``; the claims stay in ``claims``. :func:`auth_object` gives the
document's auth object (``userId``, ``email``, ``orgId``, ``orgRole``, ``roles``, ``permissions``)
from a context, and :func:`build_auth_object_from_token` verifies a token outside a request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final

import httpx

from fastapi_authgate.context import AuthContext, CredentialKind, Credentials, User
from fastapi_authgate.errors import AuthenticationError, ConfigurationError
from fastapi_authgate.protocols import Clock, ContextBuilder, Verifier
from fastapi_authgate.providers.inai_client import DEFAULT_API_URL, InAIAuthClient
from fastapi_authgate.providers.inai_models import (
    InAIApiKey,
    InAIApplication,
    InAIApplicationStats,
    InAIAuthError,
    InAITokens,
    InAIUser,
    InAIUsersPage,
    LoginResult,
    MFARequired,
)
from fastapi_authgate.settings import AuthGateSettings
from fastapi_authgate.verifiers.jwks import JWKSVerifier
from fastapi_authgate.verifiers.jwt_context import claim_str

__all__ = [
    "DEFAULT_API_URL",
    "DEFAULT_JWKS_URL",
    "InAIApiKey",
    "InAIApplication",
    "InAIApplicationStats",
    "InAIAuthClient",
    "InAIAuthError",
    "InAIAuthObject",
    "InAITokens",
    "InAIUser",
    "InAIUsersPage",
    "LoginResult",
    "MFARequired",
    "auth_object",
    "build_auth_object_from_token",
    "client_from_settings",
    "inai_context_builder",
    "inai_verifier",
    "verifier_from_settings",
]

logger = logging.getLogger(__name__)

DEFAULT_JWKS_URL: Final = "https://apiauth.inai.dev/.well-known/jwks.json"
PROVIDER: Final = "inai"
_TOKEN_TYPES: Final = frozenset({"app_user", "platform"})


def _strings(value: Any) -> tuple[str, ...]:
    if isinstance(value, list | tuple):  # FrozenList (deep-frozen claims) is a list
        return tuple(item for item in value if type(item) is str and item)
    return ()


def inai_context_builder(token_types: Iterable[str] = ("app_user",)) -> ContextBuilder:
    """The claims → :class:`AuthContext` mapping of InAI tokens, accepting ``token_types``.

    Raises:
        ConfigurationError: a token type other than ``app_user``/``platform``, or none.
    """
    accepted = frozenset(token_types)
    if not accepted or not accepted <= _TOKEN_TYPES:
        raise ConfigurationError("InAI token_types must be a subset of app_user, platform")

    def build(claims: Mapping[str, Any], credential: CredentialKind) -> AuthContext:
        # Runs once per freshly verified token, so it reads each claim once and hands read-only
        # views straight to the dataclasses (a MappingProxyType is not copied again).
        get = claims.get
        kind = get("type")
        if type(kind) is not str or kind not in accepted:
            raise AuthenticationError("The token type is not accepted")
        metadata: dict[str, str] = {"type": kind}
        org_id, org_role, email = get("org_id"), get("org_role"), get("email")
        if type(org_id) is str and org_id:
            metadata["org_id"] = org_id
        if type(org_role) is str and org_role:
            metadata["org_role"] = org_role
        subject: str = claims["sub"]
        return AuthContext(
            subject=subject,
            provider=PROVIDER,
            credential=credential,
            scopes=frozenset(_strings(get("roles")) + _strings(get("permissions"))),
            claims=claims,
            expires_at=datetime.fromtimestamp(claims["exp"], tz=UTC),
            user=User(
                id=subject,
                email=email if type(email) is str and email else None,
                metadata=MappingProxyType(metadata),
            ),
        )

    return build


def inai_verifier(
    *,
    jwks_url: str = DEFAULT_JWKS_URL,
    issuer: str | None = None,
    audience: str | Iterable[str] | None = None,
    token_types: Iterable[str] = ("app_user",),
    leeway: float = 30,
    cache_seconds: float = 300,
    refetch_cooldown: float = 30,
    fetch_deadline: float = 5,
    token_cache_size: int = 10_000,
    max_token_bytes: int = 8192,
    session_cookie: str | None = None,
    clock: Clock = time.time,
    http_client: httpx.AsyncClient | None = None,
) -> JWKSVerifier:
    """A :class:`JWKSVerifier` for InAI tokens (see the module docstring for what it checks).

    Args:
        jwks_url: InAI's JWKS (``AUTHGATE_INAI__JWKS_URL``).
        issuer: the ``iss`` tokens must carry, when InAI is configured to send one.
        audience: the ``aud`` value(s) required, when InAI is configured to send one.
        token_types: the ``type`` claims accepted (``app_user``, ``platform``).
        leeway: clock skew allowed on ``exp``/``iat``, at most 300 s.
        cache_seconds: how long fetched keys are used before the next fetch (the document: 300).
        refetch_cooldown: least seconds between fetches caused by unknown ``kid`` values or
            failed signatures.
        fetch_deadline: overall seconds for one JWKS fetch.
        token_cache_size: verified tokens remembered until their ``exp`` (0 disables).
        max_token_bytes: longer tokens are refused before parsing.
        session_cookie: a cookie holding the access token when there is no bearer token.
        clock: returns UNIX seconds; injected in tests.
        http_client: a shared client (then not closed by the verifier).

    Raises:
        ConfigurationError: a JWKS URL that is not http(s), or values out of range.
    """
    if not isinstance(jwks_url, str) or not jwks_url.startswith(("https://", "http://")):
        raise ConfigurationError("the InAI JWKS URL must be http(s) (AUTHGATE_INAI__JWKS_URL)")
    return JWKSVerifier(
        jwks_url=jwks_url,
        issuer=issuer,
        audience=audience,
        algorithms=("ES256",),
        leeway=leeway,
        clock=clock,
        provider=PROVIDER,
        session_cookie=session_cookie,
        token_cache_size=token_cache_size,
        max_token_bytes=max_token_bytes,
        cache_ttl=cache_seconds,
        min_cache_ttl=cache_seconds,
        max_cache_ttl=cache_seconds,
        refetch_cooldown=refetch_cooldown,
        fetch_deadline=fetch_deadline,
        http_client=http_client,
        context_builder=inai_context_builder(token_types),
        refetch_on_bad_signature=True,
    )


def _publishable_key(settings: AuthGateSettings) -> str:
    key = settings.inai.publishable_key
    if not key:
        raise ConfigurationError(
            "AUTHGATE_PROVIDER=inai needs AUTHGATE_INAI__PUBLISHABLE_KEY (pk_live_… or pk_test_…)"
        )
    return key


def verifier_from_settings(settings: AuthGateSettings) -> Verifier:
    """The InAI verifier for ``AUTHGATE_PROVIDER=inai``.

    Raises:
        ConfigurationError: ``AUTHGATE_INAI__PUBLISHABLE_KEY`` missing or malformed, or
            ``AUTHGATE_INAI__JWKS_URL``/``AUTHGATE_INAI__API_URL`` not an http(s) URL.
    """
    client_from_settings(settings)  # validates the key and the API URL now, at startup
    inai = settings.inai
    if inai.issuer is None and not inai.audience:
        logger.warning(
            "AUTHGATE_PROVIDER=inai without AUTHGATE_INAI__ISSUER or AUTHGATE_INAI__AUDIENCE: any "
            "token signed by the InAI JWKS is accepted, whichever InAI application it was "
            "issued for; set one of them if your InAI project puts iss or aud in its tokens"
        )
    return inai_verifier(
        jwks_url=inai.jwks_url or DEFAULT_JWKS_URL,
        issuer=inai.issuer,
        audience=inai.audience or None,
        leeway=settings.leeway_seconds,
        cache_seconds=settings.jwks_cache_seconds,
        refetch_cooldown=settings.jwks_refetch_cooldown_seconds,
        fetch_deadline=settings.jwks_timeout_seconds,
        token_cache_size=settings.token_cache_size,
        max_token_bytes=settings.max_token_bytes,
        session_cookie=settings.session_cookie,
    )


def client_from_settings(settings: AuthGateSettings) -> InAIAuthClient:
    """An :class:`InAIAuthClient` from ``AUTHGATE_INAI__PUBLISHABLE_KEY`` and ``__API_URL``.

    Raises:
        ConfigurationError: the key is missing or malformed, or the URL is not http(s).
    """
    return InAIAuthClient(
        publishable_key=_publishable_key(settings),
        api_url=settings.inai.api_url or DEFAULT_API_URL,
    )


@dataclass(frozen=True, slots=True)
class InAIAuthObject:
    """The document's auth object: who the token's user is, in which organization, with what."""

    user_id: str
    email: str | None
    org_id: str | None
    org_role: str | None
    roles: tuple[str, ...]
    permissions: tuple[str, ...]
    token_type: str | None


def auth_object(context: AuthContext) -> InAIAuthObject:
    """The InAI auth object of a context built by the InAI verifier (``userId``, ``orgId``, ...)."""
    claims = context.claims
    return InAIAuthObject(
        user_id=context.subject,
        email=claim_str(claims, "email"),
        org_id=claim_str(claims, "org_id"),
        org_role=claim_str(claims, "org_role"),
        roles=_strings(claims.get("roles")),
        permissions=_strings(claims.get("permissions")),
        token_type=claim_str(claims, "type"),
    )


async def build_auth_object_from_token(token: str, jwks: Verifier) -> InAIAuthObject | None:
    """Verify ``token`` outside a request: its auth object, or ``None`` when it is not valid.

    ``jwks`` is the verifier (from :func:`inai_verifier`) that holds the keys; share one across
    calls so the keys are fetched once. Mirrors the document's ``buildAuthObjectFromToken``,
    except that an unreachable InAI is not folded into ``None``.

    Raises:
        ProviderError: InAI's keys cannot be fetched and none are cached.
    """
    try:
        context = await jwks.verify(Credentials(bearer=token))
    except AuthenticationError:
        return None
    return auth_object(context) if context is not None else None
