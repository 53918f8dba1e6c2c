"""Qyzar: the server helper's client, its offline crypto module and the session verifier.

Wire format: ``providers/WIRE.md``, Qyzar section; the modules beside this one say what we chose
where it is silent:

* :mod:`~fastapi_authgate.providers.qyzar_client`: :class:`QyzarClient`, every method of the
  Node ``QyzarServer`` over HTTP;
* :mod:`~fastapi_authgate.providers.qyzar_results`: its frozen result types and
  :class:`QyzarError`;
* :mod:`~fastapi_authgate.providers.qyzar_tokens`: client tokens minted and checked offline.
"""

from __future__ import annotations

from fastapi_authgate.errors import ConfigurationError
from fastapi_authgate.protocols import Verifier
from fastapi_authgate.providers.qyzar_client import QyzarClient, SecretResolver
from fastapi_authgate.providers.qyzar_cookies import (
    SESSION_ID_COOKIE,
    SESSION_TOKEN_COOKIE,
    UNSET,
    Unset,
    session_pair,
)
from fastapi_authgate.providers.qyzar_results import (
    ClientTokenVerification,
    ExtraMetadata,
    LoginAttempt,
    LoginHistory,
    QyzarError,
    QyzarSecretError,
    RateLimitCheck,
    RequestEvent,
    RequestLogReceipt,
    SessionVerification,
    TrustedIdentifiers,
)
from fastapi_authgate.providers.qyzar_tokens import (
    DEFAULT_CLIENT_TOKEN_TTL,
    ClientToken,
    ClientTokenClaims,
    InvalidMetadataError,
    ProjectSecret,
    create_client_token,
    normalize_client_token_metadata,
    verify_client_token,
)
from fastapi_authgate.settings import AuthGateSettings

__all__ = [
    "ClientToken",
    "ClientTokenClaims",
    "ClientTokenVerification",
    "DEFAULT_CLIENT_TOKEN_TTL",
    "ExtraMetadata",
    "InvalidMetadataError",
    "LoginAttempt",
    "LoginHistory",
    "ProjectSecret",
    "QyzarClient",
    "QyzarError",
    "QyzarSecretError",
    "RateLimitCheck",
    "RequestEvent",
    "RequestLogReceipt",
    "SESSION_ID_COOKIE",
    "SESSION_TOKEN_COOKIE",
    "SecretResolver",
    "SessionVerification",
    "TrustedIdentifiers",
    "UNSET",
    "Unset",
    "create_client_token",
    "normalize_client_token_metadata",
    "session_pair",
    "verifier_from_settings",
    "verify_client_token",
]


def verifier_from_settings(settings: AuthGateSettings) -> Verifier:
    """The Qyzar session verifier from ``AUTHGATE_QYZAR__*``; not available yet.

    Raises:
        ConfigurationError: always, until the session verifier lands.
    """
    raise ConfigurationError(
        "AUTHGATE_PROVIDER=qyzar is not supported by this version yet (only QyzarClient is); "
        "use 'dev' or 'jwks'"
    )
