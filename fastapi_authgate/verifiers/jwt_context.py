"""From verified JWT claims to the :class:`AuthContext` a route receives.

:class:`~fastapi_authgate.verifiers.jwks.JWKSVerifier` checks a token; what its claims *mean*
differs by issuer: torii names the session ``sid`` and adds ``environment_id``, InAI puts roles
and permissions in two lists and the user's e-mail in ``email``. So the verifier takes a
:data:`~fastapi_authgate.protocols.ContextBuilder`, a plain callable
``(claims, credential) -> AuthContext``, and calls it once per freshly verified token (a repeated
token is answered from the verifier's cache without calling it again). The helpers here read
claims the way the default builder does, so a provider's builder stays a few lines:

.. code-block:: python

    def inai_context(claims, credential):
        return AuthContext(
            subject=claims["sub"],
            provider="inai",
            credential=credential,
            scopes=claim_scopes(claims, ("roles", "permissions")),
            session_id=claim_str(claims, "sid"),
            claims=claims,
            expires_at=claim_expiry(claims),
            user=User(id=claims["sub"], email=claim_str(claims, "email")),
        )

The claims a builder receives have passed every check (signature, ``exp``/``nbf``/``iat``,
``iss``, ``aud``, ``sub`` a non-empty string) and are read-only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from fastapi_authgate.context import AuthContext, CredentialKind, _is_frozen, freeze_mapping
from fastapi_authgate.protocols import ContextBuilder

__all__ = [
    "DEFAULT_SCOPE_CLAIMS",
    "claim_expiry",
    "claim_scopes",
    "claim_str",
    "frozen_scope_context_builder",
    "scope_context_builder",
]

DEFAULT_SCOPE_CLAIMS: tuple[str, ...] = ("scope", "scp", "permissions")
"""Claims read as scopes by default: OAuth's space-separated ``scope``, Azure's ``scp``, Auth0's
``permissions``."""


_NO_SCOPES: frozenset[str] = frozenset()
# Equal scope sets are shared: tokens of one client carry the same scopes, and every cached
# context would otherwise keep its own copy. And the set a lone ``scope`` string makes is
# remembered by its text, so a fresh token of a known client skips the split and the set.
# Both bounded, and only fed by verified claims.
_shared_scopes: dict[frozenset[str], frozenset[str]] = {}
_scopes_of_text: dict[str, frozenset[str]] = {}
_SHARED_SCOPES_MAX = 1024


def claim_scopes(claims: Mapping[str, Any], names: Iterable[str]) -> frozenset[str]:
    """The scopes granted by the claims ``names``: a space-separated string or a list of strings.

    Non-string list items and empty strings are ignored; a claim of any other type grants nothing.
    """
    found: list[str] | None = None
    text: str | None = None  # the one string claim, while it is the only scope claim seen
    for name in names:
        value = claims.get(name)
        if value is None:
            continue
        if type(value) is str:
            if found is None and text is None:
                text = value
                continue
            items = value.split()
        elif isinstance(value, list | tuple):  # a FrozenList once claims are frozen
            items = [item for item in value if type(item) is str and item]
        else:
            continue
        if text is not None:
            items = text.split() + items
            text = None
        if found is None:
            found = items
        else:
            found.extend(items)
    if text is not None:
        known = _scopes_of_text.get(text)
        if known is not None:
            return known
        scopes = _shared(text.split())
        if len(_scopes_of_text) < _SHARED_SCOPES_MAX:
            _scopes_of_text[text] = scopes
        return scopes
    return _shared(found)


def _shared(found: list[str] | None) -> frozenset[str]:
    if not found:
        return _NO_SCOPES
    scopes = frozenset(found)
    shared = _shared_scopes.get(scopes)
    if shared is not None:
        return shared
    if len(_shared_scopes) < _SHARED_SCOPES_MAX:
        _shared_scopes[scopes] = scopes
    return scopes


def claim_str(claims: Mapping[str, Any], name: str) -> str | None:
    """The claim ``name`` when it is a non-empty string, else ``None`` (never another type)."""
    value = claims.get(name)
    return value if type(value) is str and value else None


def claim_expiry(claims: Mapping[str, Any]) -> datetime | None:
    """``exp`` as an aware UTC datetime (the verifier has checked it is a timestamp in range)."""
    exp = claims.get("exp")
    if exp is None:
        return None
    return datetime.fromtimestamp(exp, tz=UTC)


def scope_context_builder(
    provider: str, scope_claims: Iterable[str] = DEFAULT_SCOPE_CLAIMS
) -> ContextBuilder:
    """The default builder: ``sub``, ``sid`` as the session, scopes from ``scope_claims``.

    Args:
        provider: the name put in :attr:`AuthContext.provider`.
        scope_claims: claims whose values become :attr:`AuthContext.scopes`.
    """
    build = frozen_scope_context_builder(provider, scope_claims)

    def build_any(claims: Mapping[str, Any], credential: CredentialKind) -> AuthContext:
        if type(claims) is not MappingProxyType or not _is_frozen(claims):
            claims = freeze_mapping(claims)
        return build(claims, credential)

    return build_any


def frozen_scope_context_builder(
    provider: str, scope_claims: Iterable[str] = DEFAULT_SCOPE_CLAIMS
) -> ContextBuilder:
    """:func:`scope_context_builder` for claims already deep-frozen (:func:`freeze_claims`).

    What :class:`~fastapi_authgate.verifiers.jwks.JWKSVerifier` uses by default: it freezes the
    payload it decoded itself, so checking again would only cost time. Never hand it claims that
    did not come from :func:`~fastapi_authgate.context.freeze_claims`.
    """
    names = tuple(scope_claims)
    trusted = AuthContext._from_verified
    utc = UTC
    timestamp = datetime.fromtimestamp

    def build(claims: Mapping[str, Any], credential: CredentialKind) -> AuthContext:
        sid = claims.get("sid")
        exp = claims.get("exp")
        return trusted(
            claims["sub"],
            provider,
            credential,
            claim_scopes(claims, names),
            sid if type(sid) is str and sid else None,
            claims,
            timestamp(exp, utc) if exp is not None else None,
        )

    return build
