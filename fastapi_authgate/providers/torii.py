"""torii: its end-user JWTs checked against the issuer's JWKS, and its backend REST API.

Wire format: the torii section of ``providers/WIRE.md`` (``torii-backend-sdk.txt`` is the spec).

Tokens are JWS (RS256 or ES256) with keys at ``<issuer>/.well-known/jwks.json``; the shared
:class:`~fastapi_authgate.verifiers.jwks.JWKSVerifier` checks them, so keys are fetched once,
cached, and refetched (throttled, single flight) when torii rotates to a ``kid`` we have not seen:
no round trip per request. Our context: ``subject`` and ``user.id`` are ``sub`` (the user id),
``session_id`` is ``sid``, and ``environment_id`` and ``email_verified`` (the SDK's
``environmentId`` and ``emailVerified``) are in ``claims`` and in ``user.metadata``. Chosen here:
those three claims must have their documented types or the token is refused; the issuer's
trailing ``/`` is dropped; ``AUTHGATE_TORII__ENVIRONMENT_ID`` optionally pins one environment,
so a development environment's token cannot open production.

:class:`ToriiClient` calls ``/v1/users`` and ``/v1/users/{id}/sessions`` with
``Authorization: Bearer <secret key>`` through :mod:`fastapi_authgate._http` (one deadline, no
redirects, capped bodies). What we chose where the documents are silent:

* every status answer (3xx, 4xx, 5xx) raises :class:`ToriiAPIError` with ``status``, ``code``,
  ``message``, ``body`` and ``provider_retry_after``; a timeout, a refused connection or a body
  that is not the documented JSON raises :class:`~fastapi_authgate.errors.ProviderError`. Both are
  ``ProviderError``, so one ``except`` catches every failure and an unhandled one answers 503;
* ``users.update`` sends only the fields it was given: a value sets, ``None`` sends JSON ``null``
  (torii clears the field), an omitted argument (:data:`UNSET`) is absent from the body. The same
  holds for the optional fields of ``users.create``;
* ids are sent as one percent-encoded path segment; ``""``, ``"."`` and ``".."`` are refused, so
  an id taken from a request can never walk the path to another endpoint;
* a plain ``http://`` API URL is refused unless it is this machine, since the secret key would
  travel in clear text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from fastapi_authgate._http import check_base_url
from fastapi_authgate.context import AuthContext, CredentialKind, User
from fastapi_authgate.errors import AuthenticationError, ConfigurationError
from fastapi_authgate.protocols import ContextBuilder, Verifier
from fastapi_authgate.providers.torii_client import (
    DEFAULT_API_URL,
    ToriiAPIError,
    ToriiClient,
    ToriiSessions,
    ToriiUsers,
    check_secret_key,
)
from fastapi_authgate.providers.torii_models import (
    UNSET,
    Address,
    ToriiSession,
    ToriiUser,
    ToriiUserPage,
    Unset,
)
from fastapi_authgate.settings import AuthGateSettings
from fastapi_authgate.verifiers.jwks import JWKSVerifier
from fastapi_authgate.verifiers.jwt_context import (
    DEFAULT_SCOPE_CLAIMS,
    claim_expiry,
    claim_scopes,
    claim_str,
)

__all__ = [
    "DEFAULT_API_URL",
    "UNSET",
    "Address",
    "ToriiAPIError",
    "ToriiClient",
    "ToriiSession",
    "ToriiSessions",
    "ToriiUser",
    "ToriiUserPage",
    "ToriiUsers",
    "Unset",
    "client_from_settings",
    "torii_context_builder",
    "torii_verifier",
    "verifier_from_settings",
]


def torii_context_builder(*, environment_id: str | None = None) -> ContextBuilder:
    """Turns verified torii claims into an :class:`AuthContext` (see the module docstring).

    ``subject`` and ``user.id`` are ``sub``, ``session_id`` is ``sid``; ``environment_id`` and
    ``email_verified`` stay in ``claims`` and are also in ``user.metadata``. A token whose
    ``sid``, ``environment_id`` or ``email_verified`` has the wrong type is refused (401), and so
    is one from another environment when ``environment_id`` is pinned.
    """

    def build(claims: Mapping[str, Any], credential: CredentialKind) -> AuthContext:
        sid = claims.get("sid")
        if sid is not None and (type(sid) is not str or not sid):
            raise AuthenticationError("The token's session id is malformed")
        environment = claims.get("environment_id")
        if environment is not None and (type(environment) is not str or not environment):
            raise AuthenticationError("The token's environment is malformed")
        if environment_id is not None and environment != environment_id:
            raise AuthenticationError("The token belongs to another torii environment")
        email_verified = claims.get("email_verified", False)
        if type(email_verified) is not bool:
            raise AuthenticationError("The token's email_verified claim is malformed")
        subject: str = claims["sub"]
        return AuthContext(
            subject=subject,
            provider="torii",
            credential=credential,
            scopes=claim_scopes(claims, DEFAULT_SCOPE_CLAIMS),
            session_id=sid,
            claims=claims,
            expires_at=claim_expiry(claims),
            user=User(
                id=subject,
                email=claim_str(claims, "email"),
                metadata={"environment_id": environment, "email_verified": email_verified},
            ),
        )

    return build


def torii_verifier(
    *,
    issuer: str,
    audience: str | Iterable[str] | None = None,
    environment_id: str | None = None,
    **options: Any,
) -> JWKSVerifier:
    """A verifier for one torii issuer's end-user JWTs (keys at ``<issuer>/.well-known/jwks.json``).

    Args:
        issuer: the issuer URL from the torii dashboard (``https://acme.torii.so``); a trailing
            ``/`` is dropped, and tokens must carry exactly this ``iss``.
        audience: the ``aud`` value(s) to require, when the issuer is configured with one.
        environment_id: accept only tokens of this torii environment (``environment_id``).
        **options: further :class:`JWKSVerifier` arguments (``leeway``, ``clock``,
            ``session_cookie``, ``http_client``, cache and cooldown settings).

    Raises:
        ConfigurationError: a missing or non-https issuer, or a bad option.
    """
    base = check_base_url(issuer, "AUTHGATE_TORII__ISSUER")
    options.setdefault("algorithms", ("RS256", "ES256"))
    return JWKSVerifier(
        jwks_url=base + "/.well-known/jwks.json",
        issuer=base,
        audience=audience,
        provider="torii",
        context_builder=torii_context_builder(environment_id=environment_id),
        **options,
    )


def verifier_from_settings(settings: AuthGateSettings) -> Verifier:
    """The torii verifier for ``AUTHGATE_PROVIDER=torii``.

    Reads ``AUTHGATE_TORII__ISSUER`` (required), ``AUTHGATE_TORII__AUDIENCE`` (else
    ``AUTHGATE_AUDIENCE``) and ``AUTHGATE_TORII__ENVIRONMENT_ID``, plus the generic JWKS and
    token-cache settings. A secret key, when set, is checked here too, so a malformed one fails
    at startup rather than on the first call.

    Raises:
        ConfigurationError: naming the first missing or bad variable.
    """
    torii = settings.torii
    if not torii.issuer:
        raise ConfigurationError(
            "AUTHGATE_PROVIDER=torii needs AUTHGATE_TORII__ISSUER (the issuer URL from the "
            "torii dashboard, e.g. https://acme.torii.so)"
        )
    if torii.secret_key is not None:
        check_secret_key(torii.secret_key)
    if torii.api_url is not None:
        check_base_url(torii.api_url, "AUTHGATE_TORII__API_URL")
    audience = torii.audience or settings.audience or None
    return torii_verifier(
        issuer=torii.issuer,
        audience=audience,
        environment_id=torii.environment_id,
        leeway=settings.leeway_seconds,
        session_cookie=settings.session_cookie,
        token_cache_size=settings.token_cache_size,
        max_token_bytes=settings.max_token_bytes,
        cache_ttl=settings.jwks_cache_seconds,
        refetch_cooldown=settings.jwks_refetch_cooldown_seconds,
        fetch_deadline=settings.jwks_timeout_seconds,
    )


def client_from_settings(settings: AuthGateSettings | None = None) -> ToriiClient:
    """A :class:`ToriiClient` from ``AUTHGATE_TORII__SECRET_KEY`` and ``AUTHGATE_TORII__API_URL``.

    Raises:
        ConfigurationError: the secret key is missing or malformed, or the URL is bad.
    """
    settings = settings if settings is not None else AuthGateSettings()
    torii = settings.torii
    if torii.secret_key is None:
        raise ConfigurationError("the torii client needs AUTHGATE_TORII__SECRET_KEY")
    return ToriiClient(secret_key=torii.secret_key, api_url=torii.api_url or DEFAULT_API_URL)
